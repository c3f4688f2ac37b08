//! `rawsk.img`: IPv4 and IPv6 raw sockets (SOCK_RAW) and ICMP "ping"
//! sockets (SOCK_DGRAM with IPPROTO_ICMP / IPPROTO_ICMPV6): protocol,
//! bound address and device, connected peer, the options of inet sockets
//! and the raw ones (IP_HDRINCL, ICMP_FILTER, ICMPV6_FILTER,
//! IPV6_CHECKSUM, ...).
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;
use super::inet_sk::{opts_text, InetSkOpts, SkAddr};

/// One raw or ping socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawSkEntry {
    /// File object id.
    pub id: u32,
    /// Socket inode at dump.
    pub ino: u32,
    /// AF_INET or AF_INET6.
    pub family: u32,
    /// SOCK_RAW (3), or SOCK_DGRAM (2) for a ping socket.
    pub ty: u32,
    /// IPPROTO_* (a ping socket: IPPROTO_ICMP 1 or IPPROTO_ICMPV6 58).
    pub proto: u32,
    /// Status flags of the open file description.
    pub flags: OpenFlags,
    /// Bound address (None: not bound). A ping socket's port is its ICMP
    /// echo identifier; a raw socket's is its protocol (not bound by it).
    pub local: Option<SkAddr>,
    /// Connected peer.
    pub peer: Option<SkAddr>,
    /// The options inet sockets keep.
    pub opts: InetSkOpts,
    /// Raw-socket options where they differ from a fresh socket of the same
    /// kind, as bytes: IP_HDRINCL, IP_NODEFRAG, ICMP_FILTER, ICMPV6_FILTER,
    /// IPV6_CHECKSUM, IPV6_HDRINCL: (level, option, value).
    pub raw_opts: Vec<(u32, u32, Vec<u8>)>,
}

/// "RAW", "RAWv6", "PING", "PINGv6" (the kernel's protocol names).
pub fn kind_text(family: u32, ty: u32) -> &'static str {
    match (family == 10, ty == 2) {
        (false, false) => "RAW",
        (true, false) => "RAWv6",
        (false, true) => "PING",
        (true, true) => "PINGv6",
    }
}

impl Describe for RawSkEntry {
    fn describe(&self) -> Node {
        let mut raw = String::new();
        for (level, name, v) in &self.raw_opts {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            raw += &format!("{}{level}/{name}={hex}", if raw.is_empty() { "" } else { " " });
        }
        Obj::new()
            .f("id", self.id)
            .f("ino", self.ino)
            .f("kind", kind_text(self.family, self.ty))
            .f("protocol", self.proto)
            .d("flags", &self.flags)
            .f("local", self.local.map(|a| a.to_string()))
            .f("peer", self.peer.map(|a| a.to_string()))
            .f("opts", opts_text(&self.opts, self.proto))
            .f("raw_opts", raw)
            .done()
    }
}
