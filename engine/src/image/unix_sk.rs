//! `unixsk.img`: unix sockets, one entry per socket the tree holds a
//! descriptor of, each with what is queued for it to read; a listening
//! socket lists the connections waiting in its backlog.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;

/// Socket options users set (SOL_SOCKET).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixSkOpts {
    /// SO_PASSCRED.
    pub passcred: bool,
    /// SO_PASSSEC.
    pub passsec: bool,
    /// SO_RCVBUF as getsockopt reports it (twice what was set).
    pub rcvbuf: u32,
    /// SO_SNDBUF as getsockopt reports it.
    pub sndbuf: u32,
    /// SO_RCVTIMEO (seconds, microseconds).
    pub rcvtimeo: (i64, i64),
    /// SO_SNDTIMEO (seconds, microseconds).
    pub sndtimeo: (i64, i64),
    /// SO_PEEK_OFF (-1: off).
    pub peek_off: i32,
    /// SO_RCVLOWAT.
    pub rcvlowat: i32,
}

/// One message (datagram, seqpacket record) or chunk (stream) queued for a
/// socket to read, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMsg {
    /// The bytes.
    pub data: Vec<u8>,
    /// The sender's address (`sun_path` bytes; datagram sockets; empty:
    /// unnamed sender).
    pub from: Vec<u8>,
    /// SCM_CREDENTIALS (pid, uid, gid) when the socket passes credentials.
    pub creds: Option<(i32, u32, u32)>,
    /// SCM_RIGHTS: the file objects (ids) in flight with it, in order.
    pub fds: Vec<u32>,
}

/// One unix socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixSkEntry {
    /// File object id.
    pub id: u32,
    /// Socket inode at dump.
    pub ino: u32,
    /// SOCK_STREAM (1), SOCK_DGRAM (2) or SOCK_SEQPACKET (5).
    pub ty: u32,
    /// TCP_* state: 1 connected, 7 unconnected, 10 listening.
    pub state: u32,
    /// Status flags of the open file description.
    pub flags: OpenFlags,
    /// Bound name (`sun_path` bytes; abstract: leading NUL; empty: unbound).
    pub name: Vec<u8>,
    /// A pathname socket whose file was unlinked while the socket lived.
    pub unlinked: bool,
    /// Mode, uid and gid of the socket file (pathname sockets).
    pub file_attrs: Option<(u32, u32, u32)>,
    /// Where the socket file is now when it was renamed after bind (in the
    /// same directory: bound to a temporary name, then moved into place,
    /// as servers do to replace a socket atomically). Restore binds to
    /// `name` and renames the file there.
    pub moved_to: Option<Vec<u8>>,
    /// Bound to a relative name: the directory it resolves in (the
    /// holder's working directory at dump, where its file was found).
    /// Restore binds from there, so the name stays relative, and reaches
    /// the file through it.
    pub rel_dir: Option<Vec<u8>>,
    /// Peer socket inode (0: none).
    pub peer: u32,
    /// The peer is outside the dump (`--ext-unix-sk`): its address.
    pub ext_peer: Option<Vec<u8>>,
    /// Listening sockets: the backlog limit.
    pub backlog: u32,
    /// Listening sockets: inodes of the connections not accepted yet, oldest first.
    pub icons: Vec<u32>,
    /// RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2).
    pub shutdown: u8,
    /// Options.
    pub opts: UnixSkOpts,
    /// What is queued for this socket to read.
    pub queue: Vec<QueuedMsg>,
    /// SO_PEERCRED and SO_PEERGROUPS: who made the connection, as the
    /// kernel recorded it (a listener: who called listen). None: not set.
    pub peer_cred: Option<PeerCred>,
    /// The task that held the socket at dump, with its effective ids: who
    /// connects it again where the kernel keeps no record (a connection
    /// still waiting in a backlog, a peer outside the tree).
    pub holder: Option<PeerCred>,
}

/// Process credentials as a unix socket records them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCred {
    /// Process id (its thread group).
    pub pid: i32,
    /// Effective uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl std::fmt::Display for PeerCred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid={} uid={} gid={} groups={:?}", self.pid, self.uid, self.gid, self.groups)
    }
}

/// A `sun_path` as text: `@name` for abstract, the path, or `(unnamed)`.
pub fn name_text(name: &[u8]) -> String {
    match name {
        [] => "(unnamed)".into(),
        [0, rest @ ..] => format!("@{}", String::from_utf8_lossy(rest)),
        _ => String::from_utf8_lossy(name).into_owned(),
    }
}

/// A socket type's name.
pub fn type_text(ty: u32) -> &'static str {
    match ty {
        1 => "SOCK_STREAM",
        2 => "SOCK_DGRAM",
        5 => "SOCK_SEQPACKET",
        _ => "?",
    }
}

impl Describe for QueuedMsg {
    fn describe(&self) -> Node {
        let mut o = Obj::new().f("bytes", self.data.len() as u64);
        if !self.from.is_empty() {
            o = o.f("from", name_text(&self.from));
        }
        if let Some((pid, uid, gid)) = self.creds {
            o = o.f("creds", format!("pid={pid} uid={uid} gid={gid}"));
        }
        if !self.fds.is_empty() {
            o = o.f("scm_rights", format!("files {:?}", self.fds));
        }
        o.f("data", Node::Bytes(self.data.clone())).done()
    }
}

impl Describe for UnixSkEntry {
    fn describe(&self) -> Node {
        let state = match self.state {
            1 => "connected",
            7 => "unconnected",
            10 => "listening",
            _ => "?",
        };
        let o = &self.opts;
        let mut n = Obj::new()
            .f("id", self.id)
            .f("ino", self.ino)
            .f("type", type_text(self.ty))
            .f("state", state)
            .d("flags", &self.flags)
            .f("name", name_text(&self.name));
        if self.unlinked {
            n = n.f("unlinked", true);
        }
        if let Some((mode, uid, gid)) = self.file_attrs {
            n = n.f("file", format!("{} uid={uid} gid={gid}", super::reg_files::mode_text(mode)));
        }
        if let Some(m) = &self.moved_to {
            n = n.f("moved_to", name_text(m));
        }
        if let Some(d) = &self.rel_dir {
            n = n.f("relative_to", name_text(d));
        }
        n = n.f("peer", self.peer);
        if let Some(p) = &self.ext_peer {
            n = n.f("external_peer", name_text(p));
        }
        if self.state == 10 {
            n = n.f("backlog", self.backlog).f("pending", format!("{:?}", self.icons));
        }
        if let Some(c) = &self.peer_cred {
            n = n.f("peer_cred", c.to_string());
        }
        if let Some(c) = &self.holder {
            n = n.f("holder", c.to_string());
        }
        n.f("shutdown", self.shutdown as u64)
            .f(
                "opts",
                format!(
                    "passcred={} passsec={} rcvbuf={} sndbuf={} rcvtimeo={}.{:06} sndtimeo={}.{:06} peek_off={} rcvlowat={}",
                    o.passcred,
                    o.passsec,
                    o.rcvbuf,
                    o.sndbuf,
                    o.rcvtimeo.0,
                    o.rcvtimeo.1,
                    o.sndtimeo.0,
                    o.sndtimeo.1,
                    o.peek_off,
                    o.rcvlowat
                ),
            )
            .d("queue", &self.queue)
            .done()
    }
}
