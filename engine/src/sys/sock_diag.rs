//! The sock_diag netlink interface (sock_diag(7)): netlink framing,
//! unix_diag dumps decoded into [`UnixDiag`] and inet_diag dumps (TCP,
//! UDP, UDP-Lite over IPv4 and IPv6) into [`InetDiag`], packet_diag dumps
//! (AF_PACKET) into [`PacketDiag`].
//!
//! Messages are built by hand from the uapi layouts (linux/netlink.h,
//! linux/sock_diag.h, linux/unix_diag.h, linux/inet_diag.h, linux/packet_diag.h); linux-raw-sys's netlink module is
//! not enabled in this build. Parsing is pure and unit-tested; a malformed
//! reply is an error, never a panic.
use super::socket::{self, MsgFlags, SockFlags, SockType, AF_NETLINK, AF_UNIX};
use super::{Errno, Result};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub const NETLINK_SOCK_DIAG: u32 = 4;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
pub const NLMSG_HDRLEN: usize = 16;
/// INET_DIAG_NOCOOKIE / UNIX: match any socket cookie.
pub const NOCOOKIE: u32 = !0;

/// A netlink request: nlmsghdr (len, type, flags, seq, pid 0) + payload.
pub fn nl_request(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + payload.len()) as u32;
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// The messages of a reply: (type, payload); EBADMSG when malformed.
pub fn nl_messages(buf: &[u8]) -> Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes"));
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return Err(Errno::EBADMSG);
        }
        out.push((ty, &buf[off + NLMSG_HDRLEN..off + len]));
        off += (len + 3) & !3;
    }
    Ok(out)
}

/// The errno of an NLMSG_ERROR payload (0 is an ack).
pub fn nl_error(payload: &[u8]) -> Errno {
    let e = payload.get(..4).map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
    Errno::new(-e)
}

/// A NETLINK_SOCK_DIAG socket.
pub fn open() -> Result<OwnedFd> {
    socket::socket(AF_NETLINK, SockType::SOCK_RAW, SockFlags::SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
}

/// Sends `req` and collects the SOCK_DIAG_BY_FAMILY payloads of the reply,
/// until NLMSG_DONE (dumps) or the first message (exact requests).
pub fn query(nl: BorrowedFd<'_>, req: &[u8], dump: bool) -> Result<Vec<Vec<u8>>> {
    socket::send(nl, req, MsgFlags::empty())?;
    let mut buf = vec![0u8; 32 << 10];
    let mut found = Vec::new();
    // A dump arrives in batches of a few KiB; cap the rounds so a
    // misbehaving kernel cannot keep us forever.
    for _ in 0..1_000_000 {
        let n = socket::recv(nl, &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(Errno::ECONNRESET);
        }
        for (ty, payload) in nl_messages(&buf[..n])? {
            match ty {
                SOCK_DIAG_BY_FAMILY => {
                    found.push(payload.to_vec());
                    if !dump {
                        return Ok(found);
                    }
                }
                NLMSG_DONE => return Ok(found),
                NLMSG_ERROR => return Err(nl_error(payload)),
                _ => {}
            }
        }
    }
    Err(Errno::EOVERFLOW)
}

// linux/unix_diag.h
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_ICONS: u32 = 0x08;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UDIAG_SHOW_UID: u32 = 0x40;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
const UNIX_DIAG_UID: u16 = 7;

/// TCP_ESTABLISHED: a connected unix socket.
pub const STATE_ESTABLISHED: u8 = 1;
/// TCP_CLOSE: not connected (and not listening).
pub const STATE_CLOSE: u8 = 7;
/// TCP_LISTEN.
pub const STATE_LISTEN: u8 = 10;

/// What unix_diag says about one unix socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub ty: u8,
    /// TCP_* state.
    pub state: u8,
    /// Socket inode.
    pub ino: u32,
    /// Bound name as `sun_path` bytes (abstract: leading NUL); empty when unbound.
    pub name: Vec<u8>,
    /// Inode and device of the bound file (pathname sockets).
    pub vfs: Option<(u32, u32)>,
    /// Peer's socket inode (0: none).
    pub peer: u32,
    /// Listening sockets: inodes of connections not accepted yet, oldest first.
    pub icons: Vec<u32>,
    /// (rqueue, wqueue): listening sockets: (backlog length, max backlog);
    /// others: (bytes queued for reading, bytes in flight to the peer).
    pub rqlen: Option<(u32, u32)>,
    /// RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2).
    pub shutdown: u8,
    /// Owner's uid.
    pub uid: Option<u32>,
}

/// A unix_diag request for every unix socket of this network namespace.
pub fn unix_dump_request(seq: u32) -> Vec<u8> {
    // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2].
    let mut req = vec![AF_UNIX as u8, 0, 0, 0];
    let show =
        UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID;
    for w in [!0u32, 0, show, NOCOOKIE, NOCOOKIE] {
        req.extend_from_slice(&w.to_ne_bytes());
    }
    nl_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, &req)
}

/// Decodes one unix_diag_msg with its attributes.
pub fn parse_unix(p: &[u8]) -> Result<UnixDiag> {
    // struct unix_diag_msg: family, type, state, pad, ino, cookie[2].
    if p.len() < 16 || p[0] != AF_UNIX as u8 {
        return Err(Errno::EBADMSG);
    }
    let u32_at = |b: &[u8], i: usize| -> Result<u32> {
        b.get(i..i + 4).map(|w| u32::from_ne_bytes(w.try_into().expect("4 bytes"))).ok_or(Errno::EBADMSG)
    };
    let mut d = UnixDiag { ty: p[1], state: p[2], ino: u32_at(p, 4)?, ..Default::default() };
    for (ty, a) in attrs(p, 16)? {
        match ty {
            UNIX_DIAG_NAME => {
                // A pathname ends at its NUL (binders may count it); an
                // abstract name is every byte.
                let end =
                    if a.first() == Some(&0) { a.len() } else { a.iter().position(|&c| c == 0).unwrap_or(a.len()) };
                d.name = a[..end].to_vec()
            }
            UNIX_DIAG_VFS => d.vfs = Some((u32_at(a, 0)?, u32_at(a, 4)?)),
            UNIX_DIAG_PEER => d.peer = u32_at(a, 0)?,
            UNIX_DIAG_ICONS => {
                d.icons = a.chunks_exact(4).map(|w| u32::from_ne_bytes(w.try_into().expect("4 bytes"))).collect()
            }
            UNIX_DIAG_RQLEN => d.rqlen = Some((u32_at(a, 0)?, u32_at(a, 4)?)),
            UNIX_DIAG_SHUTDOWN => d.shutdown = *a.first().ok_or(Errno::EBADMSG)?,
            UNIX_DIAG_UID => d.uid = Some(u32_at(a, 0)?),
            _ => {}
        }
    }
    Ok(d)
}

/// Every unix socket of this network namespace, by inode.
pub fn unix_sockets() -> Result<HashMap<u32, UnixDiag>> {
    let nl = open()?;
    let replies = query(nl.as_fd(), &unix_dump_request(1), true)?;
    let mut out = HashMap::with_capacity(replies.len());
    for r in replies {
        let d = parse_unix(&r)?;
        out.insert(d.ino, d);
    }
    Ok(out)
}

// linux/inet_diag.h
const INET_DIAG_INFO: u8 = 2;
const INET_DIAG_SHUTDOWN: u16 = 8;
const INET_DIAG_MD5SIG: u16 = 18;
const INET_DIAG_SKV6ONLY: u16 = 11;
const INET_DIAG_MARK: u16 = 15;
/// Length of `struct inet_diag_msg` before its attributes.
const INET_DIAG_MSG_LEN: usize = 72;

/// What inet_diag says about one TCP or UDP socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InetDiag {
    /// AF_INET or AF_INET6.
    pub family: u8,
    /// TCP_* state (UDP: 1 connected, 7 not).
    pub state: u8,
    /// Local port (host order).
    pub sport: u16,
    /// Remote port (host order).
    pub dport: u16,
    /// Local address bytes (IPv4: the first 4).
    pub src: [u8; 16],
    /// Remote address bytes.
    pub dst: [u8; 16],
    /// Bound device index (0: none).
    pub ifindex: u32,
    /// Listening sockets: connections waiting to be accepted; others:
    /// bytes queued for reading.
    pub rqueue: u32,
    /// Listening sockets: the backlog limit; others: bytes in the send queue.
    pub wqueue: u32,
    /// Owner's uid.
    pub uid: u32,
    /// Socket inode (0: not held by any file, e.g. still in an accept queue).
    pub ino: u32,
    /// RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2).
    pub shutdown: u8,
    /// IPV6_V6ONLY (IPv6 sockets).
    pub v6only: Option<bool>,
    /// SO_MARK.
    pub mark: Option<u32>,
    /// TCP_MD5SIG keys (listed to a reader with CAP_NET_ADMIN).
    pub md5: Vec<Md5Key>,
}

/// One TCP_MD5SIG key as inet_diag lists it (`struct tcp_diag_md5sig`):
/// the peer it applies to (an address and prefix) and the key itself. The
/// kernel does not list a key's interface (TCP_MD5SIG_FLAG_IFINDEX).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Md5Key {
    /// AF_INET or AF_INET6 (an IPv4 key of an IPv6 socket: AF_INET).
    pub family: u8,
    pub prefixlen: u8,
    /// The address bytes (IPv4: the first 4).
    pub addr: [u8; 16],
    pub key: Vec<u8>,
}

/// Size of `struct tcp_diag_md5sig`.
const MD5SIG_LEN: usize = 100;

fn parse_md5(a: &[u8]) -> Result<Vec<Md5Key>> {
    if !a.len().is_multiple_of(MD5SIG_LEN) {
        return Err(Errno::EBADMSG);
    }
    a.chunks(MD5SIG_LEN)
        .map(|k| {
            let len = u16::from_ne_bytes([k[2], k[3]]) as usize;
            let key = k[20..].get(..len).ok_or(Errno::EBADMSG)?.to_vec();
            Ok(Md5Key { family: k[0], prefixlen: k[1], addr: k[4..20].try_into().expect("16 bytes"), key })
        })
        .collect()
}

/// An inet_diag request (`struct inet_diag_req_v2`) for every socket of
/// `family` and `protocol` (IPPROTO_TCP, IPPROTO_UDP, ...) in this network
/// namespace.
pub fn inet_dump_request(seq: u32, family: u8, protocol: u8) -> Vec<u8> {
    // family, protocol, ext, pad, states, then a zeroed inet_diag_sockid
    // (ports, addresses, interface) whose cookie says "any".
    // INET_DIAG_INFO: with it come the protocol's extras (TCP: MD5SIG
    // keys, for a reader with CAP_NET_ADMIN).
    let ext = if protocol == 6 { 1 << (INET_DIAG_INFO - 1) } else { 0 };
    let mut req = vec![family, protocol, ext, 0];
    req.extend_from_slice(&(!0u32).to_ne_bytes());
    req.extend_from_slice(&[0u8; 40]);
    req.extend_from_slice(&NOCOOKIE.to_ne_bytes());
    req.extend_from_slice(&NOCOOKIE.to_ne_bytes());
    nl_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, &req)
}

/// The netlink attributes (type without its flag bits, payload) after the
/// fixed part of a message, `start` bytes; an attribute that overruns the
/// message is an error.
fn attrs(p: &[u8], start: usize) -> Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut off = start;
    while off + 4 <= p.len() {
        let len = u16::from_ne_bytes([p[off], p[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([p[off + 2], p[off + 3]]) & 0x3fff;
        if len < 4 || off + len > p.len() {
            return Err(Errno::EBADMSG);
        }
        out.push((ty, &p[off + 4..off + len]));
        off += (len + 3) & !3;
    }
    Ok(out)
}

/// Decodes one inet_diag_msg with its attributes.
pub fn parse_inet(p: &[u8]) -> Result<InetDiag> {
    if p.len() < INET_DIAG_MSG_LEN {
        return Err(Errno::EBADMSG);
    }
    let u32_at = |i: usize| u32::from_ne_bytes(p[i..i + 4].try_into().expect("4 bytes"));
    let mut d = InetDiag {
        family: p[0],
        state: p[1],
        sport: u16::from_be_bytes([p[4], p[5]]),
        dport: u16::from_be_bytes([p[6], p[7]]),
        ifindex: u32_at(40),
        rqueue: u32_at(56),
        wqueue: u32_at(60),
        uid: u32_at(64),
        ino: u32_at(68),
        ..Default::default()
    };
    d.src.copy_from_slice(&p[8..24]);
    d.dst.copy_from_slice(&p[24..40]);
    for (ty, a) in attrs(p, INET_DIAG_MSG_LEN)? {
        match ty {
            INET_DIAG_SHUTDOWN => d.shutdown = *a.first().ok_or(Errno::EBADMSG)?,
            INET_DIAG_MD5SIG => d.md5 = parse_md5(a)?,
            INET_DIAG_SKV6ONLY => d.v6only = Some(*a.first().ok_or(Errno::EBADMSG)? != 0),
            INET_DIAG_MARK => {
                d.mark = Some(u32::from_ne_bytes(a.get(..4).ok_or(Errno::EBADMSG)?.try_into().expect("4 bytes")))
            }
            _ => {}
        }
    }
    Ok(d)
}

/// Every TCP and UDP socket (IPv4 and IPv6) of this network namespace that
/// a file holds, by inode.
pub fn inet_sockets() -> Result<HashMap<u32, InetDiag>> {
    let nl = open()?;
    let mut out = HashMap::new();
    let mut seq = 1;
    for family in [socket::AF_INET as u8, socket::AF_INET6 as u8] {
        for proto in [6u8, 17, 136] {
            seq += 1;
            let replies = match query(nl.as_fd(), &inet_dump_request(seq, family, proto), true) {
                Ok(r) => r,
                // No diag module for this protocol (udplite_diag is optional).
                Err(Errno::ENOENT) if proto == 136 => continue,
                Err(e) => return Err(e),
            };
            for r in replies {
                let d = parse_inet(&r)?;
                if d.ino != 0 {
                    out.insert(d.ino, d);
                }
            }
        }
    }
    Ok(out)
}

// linux/packet_diag.h
const PACKET_SHOW_INFO: u32 = 0x01;
const PACKET_SHOW_MCLIST: u32 = 0x02;
const PACKET_SHOW_RING_CFG: u32 = 0x04;
const PACKET_SHOW_FANOUT: u32 = 0x08;
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_MCLIST: u16 = 1;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;
const PACKET_DIAG_FANOUT: u16 = 4;
/// sizeof(struct packet_diag_msg).
const PACKET_DIAG_MSG_LEN: usize = 16;
/// sizeof(struct packet_diag_mclist): index, count, type, alen, addr[32].
const PACKET_DIAG_MCLIST_LEN: usize = 44;

/// One membership of a packet socket (PACKET_ADD_MEMBERSHIP), as
/// `struct packet_diag_mclist` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketMc {
    /// Interface index.
    pub ifindex: u32,
    /// How many times it was added.
    pub count: u32,
    /// PACKET_MR_MULTICAST (0), PACKET_MR_PROMISC (1), PACKET_MR_ALLMULTI
    /// (2), PACKET_MR_UNICAST (3).
    pub ty: u16,
    /// The link-layer address (`alen` bytes).
    pub addr: Vec<u8>,
}

/// What packet_diag says about one packet socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketDiag {
    /// SOCK_RAW or SOCK_DGRAM.
    pub ty: u8,
    /// The protocol it is bound to, host order (ETH_P_ALL 3, ...).
    pub num: u16,
    pub ino: u32,
    /// `struct packet_diag_info`: interface index, TPACKET version,
    /// reserve, copy threshold, timestamp source, PDI_* flags.
    pub ifindex: u32,
    pub version: u32,
    pub reserve: u32,
    pub copy_thresh: u32,
    pub tstamp: u32,
    pub flags: u32,
    /// Memberships.
    pub mclist: Vec<PacketMc>,
    /// A mapped or configured RX / TX ring (PACKET_RX_RING/TX_RING).
    pub rx_ring: bool,
    pub tx_ring: bool,
    /// PACKET_FANOUT: group id | type << 16 | flags << 16.
    pub fanout: Option<u32>,
}

/// A packet_diag request (`struct packet_diag_req`) for every packet socket
/// of this network namespace.
pub fn packet_dump_request(seq: u32) -> Vec<u8> {
    let mut req = vec![socket::AF_PACKET as u8, 0, 0, 0];
    req.extend_from_slice(&0u32.to_ne_bytes());
    let show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT;
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&NOCOOKIE.to_ne_bytes());
    req.extend_from_slice(&NOCOOKIE.to_ne_bytes());
    nl_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, &req)
}

/// Decodes one packet_diag_msg with its attributes.
pub fn parse_packet(p: &[u8]) -> Result<PacketDiag> {
    if p.len() < PACKET_DIAG_MSG_LEN {
        return Err(Errno::EBADMSG);
    }
    let u32_at = |b: &[u8], i: usize| -> Result<u32> {
        Ok(u32::from_ne_bytes(b.get(i..i + 4).ok_or(Errno::EBADMSG)?.try_into().expect("4 bytes")))
    };
    let mut d =
        PacketDiag { ty: p[1], num: u16::from_ne_bytes([p[2], p[3]]), ino: u32_at(p, 4)?, ..Default::default() };
    for (ty, a) in attrs(p, PACKET_DIAG_MSG_LEN)? {
        match ty {
            PACKET_DIAG_INFO => {
                d.ifindex = u32_at(a, 0)?;
                d.version = u32_at(a, 4)?;
                d.reserve = u32_at(a, 8)?;
                d.copy_thresh = u32_at(a, 12)?;
                d.tstamp = u32_at(a, 16)?;
                d.flags = u32_at(a, 20)?;
            }
            PACKET_DIAG_MCLIST => {
                for m in a.chunks_exact(PACKET_DIAG_MCLIST_LEN) {
                    let alen = (u16::from_ne_bytes([m[10], m[11]]) as usize).min(32);
                    d.mclist.push(PacketMc {
                        ifindex: u32_at(m, 0)?,
                        count: u32_at(m, 4)?,
                        ty: u16::from_ne_bytes([m[8], m[9]]),
                        addr: m[12..12 + alen].to_vec(),
                    });
                }
            }
            PACKET_DIAG_RX_RING => d.rx_ring = true,
            PACKET_DIAG_TX_RING => d.tx_ring = true,
            PACKET_DIAG_FANOUT => d.fanout = Some(u32_at(a, 0)?),
            _ => {}
        }
    }
    Ok(d)
}

/// Every packet socket of this network namespace, by inode (ENOENT: the
/// kernel has no packet_diag).
pub fn packet_sockets() -> Result<HashMap<u32, PacketDiag>> {
    let nl = open()?;
    let mut out = HashMap::new();
    for r in query(nl.as_fd(), &packet_dump_request(1), true)? {
        let d = parse_packet(&r)?;
        out.insert(d.ino, d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netlink_framing() {
        let m = nl_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 7, &[1, 2, 3, 4]);
        assert_eq!(m.len(), 20);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 20);
        let mut two = m.clone();
        two.extend_from_slice(&nl_request(NLMSG_DONE, 0, 7, &[]));
        let msgs = nl_messages(&two).unwrap();
        assert_eq!(msgs, vec![(SOCK_DIAG_BY_FAMILY, &[1u8, 2, 3, 4][..]), (NLMSG_DONE, &[][..])]);
        assert!(nl_messages(&m[..18]).is_err());
        let mut bad = m.clone();
        bad[0] = 200;
        assert!(nl_messages(&bad).is_err());
        assert_eq!(nl_error(&(-2i32).to_ne_bytes()), Errno::ENOENT);
    }

    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(data);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    #[test]
    fn unix_diag_message() {
        let mut m = vec![AF_UNIX as u8, 1, STATE_LISTEN, 0];
        m.extend_from_slice(&77u32.to_ne_bytes());
        m.extend_from_slice(&[0xff; 8]);
        m.extend(attr(UNIX_DIAG_NAME, b"/run/x.sock\0"));
        m.extend(attr(UNIX_DIAG_VFS, &[5, 0, 0, 0, 9, 0, 0, 0]));
        m.extend(attr(UNIX_DIAG_ICONS, &[1, 0, 0, 0, 2, 0, 0, 0]));
        m.extend(attr(UNIX_DIAG_RQLEN, &[2, 0, 0, 0, 128, 0, 0, 0]));
        m.extend(attr(UNIX_DIAG_SHUTDOWN, &[3]));
        m.extend(attr(UNIX_DIAG_UID, &1000u32.to_ne_bytes()));
        m.extend(attr(99, b"ignored"));
        let d = parse_unix(&m).unwrap();
        assert_eq!(d.ino, 77);
        assert_eq!(d.ty, 1);
        assert_eq!(d.state, STATE_LISTEN);
        assert_eq!(d.name, b"/run/x.sock");
        assert_eq!(d.vfs, Some((5, 9)));
        assert_eq!(d.icons, vec![1, 2]);
        assert_eq!(d.rqlen, Some((2, 128)));
        assert_eq!(d.shutdown, 3);
        assert_eq!(d.uid, Some(1000));
        // Truncated anywhere: an error or a shorter answer, never a panic.
        for n in 0..m.len() {
            let _ = parse_unix(&m[..n]);
        }
        let mut bad = m.clone();
        bad[16] = 200;
        assert_eq!(parse_unix(&bad), Err(Errno::EBADMSG));
        assert_eq!(parse_unix(&m[..10]), Err(Errno::EBADMSG));
    }

    #[test]
    fn finds_our_own_socketpair() {
        let (a, b) = socket::socketpair(AF_UNIX, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0).unwrap();
        let ia = super::super::fs::fstat(a.as_fd()).unwrap().ino as u32;
        let ib = super::super::fs::fstat(b.as_fd()).unwrap().ino as u32;
        let all = match unix_sockets() {
            Ok(all) => all,
            Err(e) => {
                eprintln!("skipped: no unix_diag here: {e}");
                return;
            }
        };
        assert_eq!(all[&ia].peer, ib);
        assert_eq!(all[&ib].peer, ia);
        assert_eq!(all[&ia].state, STATE_ESTABLISHED);
    }

    #[test]
    fn inet_diag_message() {
        let mut m = vec![socket::AF_INET6 as u8, STATE_LISTEN, 0, 0];
        m.extend_from_slice(&8080u16.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes());
        let mut src = [0u8; 16];
        src[15] = 1;
        m.extend_from_slice(&src);
        m.extend_from_slice(&[0u8; 16]);
        m.extend_from_slice(&3u32.to_ne_bytes()); // if
        m.extend_from_slice(&[0xff; 8]); // cookie
        m.extend_from_slice(&0u32.to_ne_bytes()); // expires
        m.extend_from_slice(&2u32.to_ne_bytes()); // rqueue
        m.extend_from_slice(&128u32.to_ne_bytes()); // wqueue
        m.extend_from_slice(&1000u32.to_ne_bytes()); // uid
        m.extend_from_slice(&4242u32.to_ne_bytes()); // inode
        assert_eq!(m.len(), INET_DIAG_MSG_LEN);
        m.extend(attr(INET_DIAG_SHUTDOWN, &[2]));
        m.extend(attr(INET_DIAG_SKV6ONLY, &[1]));
        m.extend(attr(INET_DIAG_MARK, &7u32.to_ne_bytes()));
        let mut md5 = vec![socket::AF_INET as u8, 24, 5, 0, 10, 1, 2, 0];
        md5.resize(20, 0);
        md5.extend_from_slice(b"hello");
        md5.resize(MD5SIG_LEN, 0);
        m.extend(attr(INET_DIAG_MD5SIG, &md5));
        m.extend(attr(99, b"ignored"));
        let d = parse_inet(&m).unwrap();
        assert_eq!(d.md5.len(), 1);
        assert_eq!((d.md5[0].family, d.md5[0].prefixlen, &d.md5[0].addr[..4]), (2, 24, &[10, 1, 2, 0][..]));
        assert_eq!(d.md5[0].key, b"hello");
        assert_eq!((d.family, d.state, d.sport, d.dport), (socket::AF_INET6 as u8, STATE_LISTEN, 8080, 0));
        assert_eq!(d.src, src);
        assert_eq!((d.ifindex, d.rqueue, d.wqueue, d.uid, d.ino), (3, 2, 128, 1000, 4242));
        assert_eq!((d.shutdown, d.v6only, d.mark), (2, Some(true), Some(7)));
        for n in 0..m.len() {
            let _ = parse_inet(&m[..n]);
        }
        assert_eq!(parse_inet(&m[..71]), Err(Errno::EBADMSG));
        let mut bad = m.clone();
        bad[INET_DIAG_MSG_LEN] = 200;
        assert_eq!(parse_inet(&bad), Err(Errno::EBADMSG));
        let req = inet_dump_request(5, socket::AF_INET as u8, 6);
        assert_eq!(req.len(), NLMSG_HDRLEN + 56);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()) as usize, req.len());
    }

    #[test]
    fn finds_our_own_tcp_listener() {
        use super::super::inet::{add_md5_key, bind, local_addr, InetAddr};
        let l = socket::socket(socket::AF_INET, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0).unwrap();
        add_md5_key(l.as_fd(), socket::AF_INET, &InetAddr::v4([127, 0, 0, 9], 0), 32, b"secret").unwrap();
        bind(l.as_fd(), &InetAddr::v4([127, 0, 0, 1], 0)).unwrap();
        socket::listen(l.as_fd(), 17).unwrap();
        let port = local_addr(l.as_fd()).unwrap().port;
        let ino = super::super::fs::fstat(l.as_fd()).unwrap().ino as u32;
        let all = match inet_sockets() {
            Ok(all) => all,
            Err(e) => {
                eprintln!("skipped: no inet_diag here: {e}");
                return;
            }
        };
        let d = &all[&ino];
        assert_eq!((d.state, d.sport, d.wqueue, d.rqueue), (STATE_LISTEN, port, 17, 0));
        assert_eq!(&d.src[..4], &[127, 0, 0, 1]);
        // Listed to a reader with CAP_NET_ADMIN.
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0) {
            assert_eq!(d.md5.len(), 1, "{d:?}");
            assert_eq!(
                (&d.md5[0].addr[..4], d.md5[0].prefixlen, &d.md5[0].key[..]),
                (&[127, 0, 0, 9][..], 32, &b"secret"[..])
            );
        }
    }
    #[test]
    fn packet_diag_parse() {
        let mut p = vec![17u8, 3, 0xb5, 0x88];
        p.extend_from_slice(&42u32.to_ne_bytes());
        p.extend_from_slice(&[0xff; 8]);
        // PACKET_DIAG_INFO
        p.extend_from_slice(&(4u16 + 24).to_ne_bytes());
        p.extend_from_slice(&0u16.to_ne_bytes());
        for v in [1u32, 2, 4, 0, 0, 3] {
            p.extend_from_slice(&v.to_ne_bytes());
        }
        // PACKET_DIAG_MCLIST with one promiscuous membership
        p.extend_from_slice(&(4u16 + 44).to_ne_bytes());
        p.extend_from_slice(&1u16.to_ne_bytes());
        p.extend_from_slice(&1u32.to_ne_bytes());
        p.extend_from_slice(&2u32.to_ne_bytes());
        p.extend_from_slice(&1u16.to_ne_bytes());
        p.extend_from_slice(&6u16.to_ne_bytes());
        p.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        p.extend_from_slice(&[0; 26]);
        // PACKET_DIAG_FANOUT
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&4u16.to_ne_bytes());
        p.extend_from_slice(&0x0001_0007u32.to_ne_bytes());
        let d = parse_packet(&p).unwrap();
        assert_eq!((d.ty, d.num, d.ino, d.ifindex, d.version, d.reserve, d.flags), (3, 0x88b5, 42, 1, 2, 4, 3));
        assert_eq!(d.mclist, vec![PacketMc { ifindex: 1, count: 2, ty: 1, addr: vec![1, 2, 3, 4, 5, 6] }]);
        assert_eq!(d.fanout, Some(0x0001_0007));
        assert!(!d.rx_ring && !d.tx_ring);
        assert!(parse_packet(&p[..10]).is_err());
        let mut bad = p.clone();
        bad[16] = 200;
        assert!(parse_packet(&bad).is_err());
    }
}
