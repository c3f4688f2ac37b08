//! `netlink-sk.img`: netlink sockets (protocol, port id, multicast groups,
//! connected destination, options).
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;

/// One netlink socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetlinkSkEntry {
    /// File object id.
    pub id: u32,
    /// Socket inode at dump.
    pub ino: u32,
    /// SOCK_RAW or SOCK_DGRAM.
    pub ty: u32,
    /// NETLINK_* protocol (NETLINK_ROUTE 0, NETLINK_AUDIT 9, ...).
    pub protocol: u32,
    /// Status flags of the open file description.
    pub flags: OpenFlags,
    /// Port id it is bound to (0: not bound).
    pub portid: u32,
    /// Multicast groups it is in (1-based numbers).
    pub groups: Vec<u32>,
    /// Connected destination: (port id, groups mask).
    pub dst: Option<(u32, u32)>,
    /// SOL_NETLINK options set: (option, value).
    pub opts: Vec<(u32, i32)>,
    /// SO_RCVBUF and SO_SNDBUF as getsockopt reports them.
    pub bufs: (u32, u32),
}

impl Describe for NetlinkSkEntry {
    fn describe(&self) -> Node {
        let mut o = Obj::new()
            .f("id", self.id)
            .f("ino", self.ino)
            .f("type", if self.ty == 3 { "SOCK_RAW" } else { "SOCK_DGRAM" })
            .f("protocol", self.protocol)
            .d("flags", &self.flags)
            .f("portid", self.portid)
            .f("groups", format!("{:?}", self.groups));
        if let Some((p, g)) = self.dst {
            o = o.f("dst", format!("portid {p} groups {g:#x}"));
        }
        o.f("opts", format!("{:?}", self.opts)).f("rcvbuf", self.bufs.0).f("sndbuf", self.bufs.1).done()
    }
}
