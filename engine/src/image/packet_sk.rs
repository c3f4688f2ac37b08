//! `packetsk.img`: packet sockets (packet(7), AF_PACKET): type, protocol,
//! bound interface, PACKET_* options, memberships, socket-level options
//! and a classic filter.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;

/// One membership (PACKET_ADD_MEMBERSHIP).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketMembership {
    /// Interface index, and its name at dump (checked at restore).
    pub ifindex: u32,
    pub ifname: String,
    /// PACKET_MR_MULTICAST (0), PACKET_MR_PROMISC (1), PACKET_MR_ALLMULTI
    /// (2), PACKET_MR_UNICAST (3).
    pub ty: u16,
    /// How many times it was added (each is dropped once).
    pub count: u32,
    /// Link-layer address.
    pub addr: Vec<u8>,
}

/// One packet socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketSkEntry {
    /// File object id.
    pub id: u32,
    /// Socket inode at dump.
    pub ino: u32,
    /// SOCK_RAW (3) or SOCK_DGRAM (2).
    pub ty: u32,
    /// The protocol it receives (ETH_P_*, host order; 0: none).
    pub proto: u16,
    /// Status flags of the open file description.
    pub flags: OpenFlags,
    /// Interface it is bound to (0: every interface), and its name at
    /// dump, checked at restore.
    pub ifindex: u32,
    pub ifname: String,
    /// SOL_PACKET integer options where they differ from a fresh socket's:
    /// (option, value), in the order they are set again.
    pub opts: Vec<(u32, i32)>,
    /// PACKET_COPY_THRESH (write-only; packet_diag shows it).
    pub copy_thresh: u32,
    /// Memberships.
    pub mclist: Vec<PacketMembership>,
    /// Integer socket-level options where they differ from a fresh
    /// socket's (SO_TIMESTAMP*, SO_MARK, SO_PRIORITY, SO_RCVLOWAT, buffer
    /// sizes, ...): (option, value).
    pub sock_opts: Vec<(u32, i32)>,
    /// SO_RCVTIMEO / SO_SNDTIMEO: (seconds, microseconds).
    pub rcvtimeo: (i64, i64),
    pub sndtimeo: (i64, i64),
    /// Classic socket filter (SO_ATTACH_FILTER): (code, jt, jf, k).
    pub filter: Vec<(u16, u8, u8, u32)>,
    /// SO_LOCK_FILTER.
    pub lock_filter: bool,
}

impl Describe for PacketSkEntry {
    fn describe(&self) -> Node {
        let mc: Vec<String> = self
            .mclist
            .iter()
            .map(|m| {
                let a: Vec<String> = m.addr.iter().map(|b| format!("{b:02x}")).collect();
                let ty = match m.ty {
                    0 => "multicast",
                    1 => "promisc",
                    2 => "allmulti",
                    3 => "unicast",
                    _ => "?",
                };
                format!("{ty}@{}({}) x{} {}", m.ifname, m.ifindex, m.count, a.join(":"))
            })
            .collect();
        Obj::new()
            .f("id", self.id)
            .f("ino", self.ino)
            .f("type", if self.ty == 2 { "SOCK_DGRAM" } else { "SOCK_RAW" })
            .f("protocol", format!("{:#06x}", self.proto))
            .d("flags", &self.flags)
            .f(
                "interface",
                if self.ifindex == 0 { "any".to_string() } else { format!("{} ({})", self.ifname, self.ifindex) },
            )
            .f("packet_opts", format!("{:?}", self.opts))
            .f("copy_thresh", self.copy_thresh)
            .f("memberships", mc.join(", "))
            .f("sock_opts", format!("{:?}", self.sock_opts))
            .f("rcvtimeo", format!("{}.{:06}", self.rcvtimeo.0, self.rcvtimeo.1))
            .f("sndtimeo", format!("{}.{:06}", self.sndtimeo.0, self.sndtimeo.1))
            .f("filter", format!("{} insns lock={}", self.filter.len(), self.lock_filter))
            .done()
    }
}
