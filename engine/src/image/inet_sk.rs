//! `inetsk.img`: IPv4 and IPv6 sockets (TCP, UDP), one entry per socket
//! the tree holds a descriptor of: addresses, state, options, datagrams
//! queued for reading, and for a TCP connection dumped with
//! `--tcp-established` (established or half-closed: its state says where
//! its FINs are) its repair state (sequence numbers, both queues,
//! negotiated options, window).
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;

/// An IPv4 or IPv6 socket address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SkAddr {
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u32,
    /// Address bytes (IPv4: the first 4).
    pub addr: [u8; 16],
    /// Port.
    pub port: u16,
    /// IPv6 flow info.
    pub flowinfo: u32,
    /// IPv6 scope id.
    pub scope_id: u32,
}

impl SkAddr {
    /// As the syscall layer's address.
    pub fn to_sys(self) -> crate::sys::inet::InetAddr {
        crate::sys::inet::InetAddr {
            family: self.family,
            addr: self.addr,
            port: self.port,
            flowinfo: self.flowinfo,
            scope_id: self.scope_id,
        }
    }

    /// From the syscall layer's address.
    pub fn from_sys(a: crate::sys::inet::InetAddr) -> SkAddr {
        SkAddr { family: a.family, addr: a.addr, port: a.port, flowinfo: a.flowinfo, scope_id: a.scope_id }
    }
}

impl std::fmt::Display for SkAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_sys().fmt(f)
    }
}

/// Socket options users set; each is set again at restore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetSkOpts {
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub broadcast: bool,
    pub keepalive: bool,
    pub oobinline: bool,
    pub dontroute: bool,
    /// SO_LINGER: seconds when on.
    pub linger: Option<i32>,
    pub priority: i32,
    pub mark: u32,
    /// SO_BINDTODEVICE interface name (empty: none).
    pub bind_dev: Vec<u8>,
    /// SO_RCVBUF / SO_SNDBUF as getsockopt reports them, when they differ
    /// from a fresh socket's (set by the user).
    pub rcvbuf: Option<u32>,
    pub sndbuf: Option<u32>,
    /// (seconds, microseconds).
    pub rcvtimeo: (i64, i64),
    pub sndtimeo: (i64, i64),
    pub rcvlowat: i32,
    /// SO_PEEK_OFF (-1: off).
    pub peek_off: i32,
    /// Classic socket filter (SO_ATTACH_FILTER): (code, jt, jf, k).
    pub filter: Vec<(u16, u8, u8, u32)>,
    /// SO_LOCK_FILTER.
    pub lock_filter: bool,
    /// IP_TOS / IPV6_TCLASS.
    pub tos: i32,
    /// IP_TTL / IPV6_UNICAST_HOPS (-1: default).
    pub ttl: i32,
    /// IP_FREEBIND / IPV6_FREEBIND.
    pub freebind: bool,
    /// IPV6_V6ONLY (IPv6 sockets).
    pub v6only: bool,
    /// TCP options.
    pub nodelay: bool,
    pub cork: bool,
    pub keepidle: i32,
    pub keepintvl: i32,
    pub keepcnt: i32,
    pub user_timeout: u32,
    /// TCP_MAXSEG set by the user (unconnected sockets), 0: none.
    pub maxseg: u32,
    /// TCP_DEFER_ACCEPT (9), TCP_FASTOPEN (23), TCP_NOTSENT_LOWAT (25)
    /// where they differ from a fresh socket's: (option, value).
    pub tcp_extra: Vec<(u32, i32)>,
    /// Integer options with no field of their own, socket-level
    /// (SO_TIMESTAMP*, SO_ZEROCOPY, SO_BUSY_POLL, ...) and IP-level
    /// (IP_RECVERR, IP_PKTINFO, multicast TTL and loop, ...), where they
    /// differ from a fresh socket's: (level, option, value).
    pub ip_extra: Vec<(u32, u32, i32)>,
    /// TCP_CONGESTION when it is not the system's default.
    pub congestion: Option<String>,
    /// TCP_MD5SIG keys.
    pub md5: Vec<TcpMd5Key>,
    /// Options kept as bytes: IP_OPTIONS, IP_MULTICAST_IF and the IPv6
    /// sticky headers (hop-by-hop, routing, destination options): (level,
    /// option, value).
    pub raw: Vec<(u32, u32, Vec<u8>)>,
    /// Multicast groups the socket joined.
    pub mcast: Vec<McastMembership>,
}

/// One multicast group a socket joined, with its source filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct McastMembership {
    /// AF_INET or AF_INET6 (of the group, not of the socket).
    pub family: u32,
    pub ifindex: u32,
    /// Group address bytes (IPv4: the first 4).
    pub group: [u8; 16],
    /// MCAST_INCLUDE (1) or MCAST_EXCLUDE (0).
    pub fmode: u32,
    /// Sources included or excluded, address bytes.
    pub sources: Vec<[u8; 16]>,
}

/// One TCP_MD5SIG key: the peers it applies to and the key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpMd5Key {
    /// AF_INET or AF_INET6 (an IPv4 key of an IPv6 socket is AF_INET).
    pub family: u32,
    /// Address bytes (IPv4: the first 4).
    pub addr: [u8; 16],
    /// Prefix length of the peers' addresses the key covers.
    pub prefixlen: u8,
    pub key: Vec<u8>,
}

/// What TCP_REPAIR reads of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpStream {
    /// Next sequence number to send (write_seq; after the connection's FIN
    /// once it shut its sending side: a FIN takes one).
    pub snd_seq: u32,
    /// Next sequence number expected (rcv_nxt; after the peer's FIN once
    /// it arrived).
    pub rcv_seq: u32,
    /// Bytes received and not read yet (before the peer's FIN, if any).
    pub inq: Vec<u8>,
    /// Bytes written and not acknowledged yet (sent or not; before the
    /// connection's FIN, if any).
    pub outq: Vec<u8>,
    /// How many bytes at the end of `outq` were not sent when the dump read
    /// them (informative: restore sends the whole queue as sent).
    pub unsent: u32,
    /// MSS clamp.
    pub mss: u32,
    /// Window scaling negotiated: (send, receive) shifts.
    pub wscale: Option<(u8, u8)>,
    pub sack: bool,
    pub timestamps: bool,
    /// TCP_TIMESTAMP (the connection's timestamp clock).
    pub tsval: u32,
    /// TCP_REPAIR_WINDOW: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup.
    pub window: Option<[u32; 5]>,
}

/// A datagram queued for a UDP socket to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datagram {
    /// Its sender.
    pub from: SkAddr,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// One IPv4/IPv6 socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetSkEntry {
    /// File object id.
    pub id: u32,
    /// Socket inode at dump.
    pub ino: u32,
    /// AF_INET or AF_INET6.
    pub family: u32,
    /// SOCK_STREAM (1) or SOCK_DGRAM (2).
    pub ty: u32,
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub proto: u32,
    /// TCP_* state (1 established/connected, 7 closed, 10 listening; a
    /// repaired connection: 1, 4 FIN-WAIT-1, 5 FIN-WAIT-2, 8 CLOSE-WAIT,
    /// 9 LAST-ACK, 11 CLOSING, or 7 for one that ended and is still held).
    pub state: u32,
    /// Status flags of the open file description.
    pub flags: OpenFlags,
    /// Bound address (None: never bound).
    pub local: Option<SkAddr>,
    /// Connected peer.
    pub peer: Option<SkAddr>,
    /// Listening sockets: the backlog limit.
    pub backlog: u32,
    /// RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2).
    pub shutdown: u8,
    /// Options.
    pub opts: InetSkOpts,
    /// TCP connections: established or closing (`--tcp-established`), or
    /// ended and still held (state 7).
    pub tcp: Option<TcpStream>,
    /// UDP: datagrams queued for reading, oldest first.
    pub queue: Vec<Datagram>,
}

/// A TCP state's name.
pub fn state_text(state: u32) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN-SENT",
        3 => "SYN-RECV",
        4 => "FIN-WAIT-1",
        5 => "FIN-WAIT-2",
        6 => "TIME-WAIT",
        7 => "CLOSE",
        8 => "CLOSE-WAIT",
        9 => "LAST-ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW-SYN-RECV",
        _ => "?",
    }
}

/// Where a connection in `state` has its FINs, for `crtools show`.
pub fn fins_text(state: u32) -> &'static str {
    match state {
        1 => "none",
        4 => "sent, not acknowledged",
        5 => "sent and acknowledged",
        8 => "received",
        9 | 11 => "received; sent, not acknowledged",
        7 => "received; sent and acknowledged (ended)",
        _ => "?",
    }
}

/// "TCP", "UDPv6", ...
pub fn proto_text(family: u32, proto: u32) -> String {
    let p = match proto {
        6 => "TCP",
        17 => "UDP",
        136 => "UDP-Lite",
        _ => "IP",
    };
    if family == 10 {
        format!("{p}v6")
    } else {
        p.to_string()
    }
}

impl Describe for Datagram {
    fn describe(&self) -> Node {
        Obj::new()
            .f("from", self.from.to_string())
            .f("bytes", self.data.len() as u64)
            .f("data", Node::Bytes(self.data.clone()))
            .done()
    }
}

impl Describe for TcpStream {
    fn describe(&self) -> Node {
        let mut o = Obj::new()
            .f("snd_seq", self.snd_seq)
            .f("rcv_seq", self.rcv_seq)
            .f("mss", self.mss)
            .f("sack", self.sack)
            .f("timestamps", self.timestamps)
            .f("tsval", self.tsval);
        if let Some((s, r)) = self.wscale {
            o = o.f("wscale", format!("snd={s} rcv={r}"));
        }
        if let Some(w) = self.window {
            o = o.f(
                "window",
                format!("snd_wl1={} snd_wnd={} max_window={} rcv_wnd={} rcv_wup={}", w[0], w[1], w[2], w[3], w[4]),
            );
        }
        o.f("unsent", self.unsent)
            .f("inq", Node::Bytes(self.inq.clone()))
            .f("outq", Node::Bytes(self.outq.clone()))
            .done()
    }
}

impl Describe for InetSkEntry {
    fn describe(&self) -> Node {
        let o = &self.opts;
        let mut n = Obj::new()
            .f("id", self.id)
            .f("ino", self.ino)
            .f("proto", proto_text(self.family, self.proto))
            .f("state", state_text(self.state))
            .d("flags", &self.flags)
            .f("local", self.local.map(|a| a.to_string()))
            .f("peer", self.peer.map(|a| a.to_string()));
        if self.state == 10 {
            n = n.f("backlog", self.backlog);
        }
        let opts = opts_text(o, self.proto);
        n = n.f("shutdown", self.shutdown as u64).f("opts", opts);
        if let Some(t) = &self.tcp {
            n = n.f("fins", fins_text(self.state)).d("tcp", t);
        }
        if !self.queue.is_empty() {
            n = n.d("queue", &self.queue);
        }
        n.done()
    }
}

/// The options of a socket as `crtools show` prints them (`proto`: its
/// IPPROTO_*, TCP adds its own).
pub fn opts_text(o: &InetSkOpts, proto: u32) -> String {
    let mut opts = format!(
        "reuseaddr={} reuseport={} broadcast={} keepalive={} oobinline={} priority={} mark={} tos={} ttl={} \
             freebind={} v6only={} rcvtimeo={}.{:06} sndtimeo={}.{:06} rcvlowat={} peek_off={}",
        o.reuseaddr,
        o.reuseport,
        o.broadcast,
        o.keepalive,
        o.oobinline,
        o.priority,
        o.mark,
        o.tos,
        o.ttl,
        o.freebind,
        o.v6only,
        o.rcvtimeo.0,
        o.rcvtimeo.1,
        o.sndtimeo.0,
        o.sndtimeo.1,
        o.rcvlowat,
        o.peek_off
    );
    if let Some(l) = o.linger {
        opts += &format!(" linger={l}");
    }
    if !o.bind_dev.is_empty() {
        opts += &format!(" bindtodevice={}", String::from_utf8_lossy(&o.bind_dev));
    }
    if let Some(b) = o.rcvbuf {
        opts += &format!(" rcvbuf={b}");
    }
    if let Some(b) = o.sndbuf {
        opts += &format!(" sndbuf={b}");
    }
    if proto == 6 {
        opts += &format!(
                " nodelay={} cork={} keepidle={} keepintvl={} keepcnt={} user_timeout={} maxseg={} tcp_extra={:?} congestion={}",
                o.nodelay,
                o.cork,
                o.keepidle,
                o.keepintvl,
                o.keepcnt,
                o.user_timeout,
                o.maxseg,
                o.tcp_extra,
                o.congestion.as_deref().unwrap_or("default")
            );
    }
    if !o.ip_extra.is_empty() {
        opts += &format!(" ip_extra={:?}", o.ip_extra);
    }
    for k in &o.md5 {
        let a = SkAddr { family: k.family, addr: k.addr, port: 0, flowinfo: 0, scope_id: 0 };
        // The key itself is a secret: its length only.
        opts += &format!(" md5sig={}/{}:{}-byte-key", a.to_sys().ip_text(), k.prefixlen, k.key.len());
    }
    for m in &o.mcast {
        let g = SkAddr { family: m.family, addr: m.group, port: 0, flowinfo: 0, scope_id: 0 };
        opts += &format!(
            " mcast={}@{}:{}{}",
            g.to_sys().ip_text(),
            m.ifindex,
            if m.fmode == 1 { "include" } else { "exclude" },
            m.sources.len()
        );
    }
    for (level, name, v) in &o.raw {
        opts += &format!(" raw({level}/{name})={}-bytes", v.len());
    }
    if !o.filter.is_empty() {
        opts += &format!(" filter={} insns lock={}", o.filter.len(), o.lock_filter);
    }
    opts
}
