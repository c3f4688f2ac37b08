//! Socket probes: TCP_REPAIR and the sock_diag netlink interface.
//!
//! The netlink messages are built by hand from the uapi layouts
//! (linux/netlink.h, linux/sock_diag.h, linux/unix_diag.h,
//! linux/inet_diag.h); only the fields these probes use are decoded.
use super::util::errno_why;
use crate::sys::sock_diag::{self, nl_request, NLM_F_DUMP, NLM_F_REQUEST, NOCOOKIE, SOCK_DIAG_BY_FAMILY};
use crate::sys::socket::{self, SockFlags, SockType, AF_INET, AF_UNIX};
use crate::sys::{fs, Errno};
use std::os::fd::{AsFd, BorrowedFd};

/// TCP_REPAIR on and off on a fresh TCP socket.
pub fn probe_tcp_repair() -> Result<String, String> {
    let s = socket::socket(AF_INET, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0)
        .map_err(|e| errno_why("socket(AF_INET, SOCK_STREAM)", e, &[]))?;
    let hints = &[(Errno::EPERM, "TCP_REPAIR needs CAP_NET_ADMIN"), (Errno::ENOPROTOOPT, "kernel without TCP_REPAIR")];
    socket::set_tcp_repair(s.as_fd(), socket::TCP_REPAIR_ON).map_err(|e| errno_why("TCP_REPAIR 1", e, hints))?;
    socket::set_tcp_repair(s.as_fd(), socket::TCP_REPAIR_OFF).map_err(|e| errno_why("TCP_REPAIR 0", e, hints))?;
    Ok("TCP_REPAIR switched on and off".to_string())
}

const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u32 = 10;

/// [`sock_diag::query`] with the errno explained.
fn diag_query(nl: BorrowedFd<'_>, req: &[u8], dump: bool, what: &str) -> Result<Vec<Vec<u8>>, String> {
    sock_diag::query(nl, req, dump).map_err(|e| {
        errno_why(
            what,
            e,
            &[
                (Errno::ENOENT, "no such socket, or the diag module for this family is missing"),
                (Errno::EINVAL, "the kernel does not know this diag request"),
                (Errno::EBADMSG, "malformed netlink reply"),
            ],
        )
    })
}

/// NETLINK_SOCK_DIAG answers: unix_diag finds one of our own sockets by
/// inode, inet_diag dumps listening TCP sockets.
pub fn probe_sock_diag() -> Result<String, String> {
    let nl = sock_diag::open().map_err(|e| errno_why("socket(AF_NETLINK, NETLINK_SOCK_DIAG)", e, &[]))?;
    let (a, _b) = socket::socketpair(AF_UNIX, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0)
        .map_err(|e| errno_why("socketpair", e, &[]))?;
    let ino = fs::fstat(a.as_fd()).map_err(|e| errno_why("fstat of a socket", e, &[]))?.ino as u32;

    // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2].
    let mut req = vec![AF_UNIX as u8, 0, 0, 0];
    for w in [!0u32, ino, 0, NOCOOKIE, NOCOOKIE] {
        req.extend_from_slice(&w.to_ne_bytes());
    }
    let msg = nl_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, &req);
    let got = diag_query(nl.as_fd(), &msg, false, "unix_diag exact lookup")?;
    // struct unix_diag_msg: family, type, state, pad, ino, cookie[2].
    let got_ino = got.first().and_then(|p| p.get(4..8)).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
    if got_ino != Some(ino) {
        return Err(format!("unix_diag answered inode {got_ino:?} for our socket {ino}"));
    }

    // struct inet_diag_req_v2: family, protocol, ext, pad, states, then a
    // zeroed 48-byte inet_diag_sockid (cookie NOCOOKIE) for a full dump.
    let mut req = vec![AF_INET as u8, IPPROTO_TCP, 0, 0];
    req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    req.extend_from_slice(&[0u8; 40]);
    req.extend_from_slice(&NOCOOKIE.to_ne_bytes());
    req.extend_from_slice(&NOCOOKIE.to_ne_bytes());
    let msg = nl_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 2, &req);
    let listening = diag_query(nl.as_fd(), &msg, true, "inet_diag TCP dump")?;
    Ok(format!("unix_diag found our socket by inode, inet_diag lists {} listening TCP sockets", listening.len()))
}

/// inet_diag lists a listener's TCP_MD5SIG keys (what a dump reads them
/// from).
pub fn probe_tcp_md5_diag() -> Result<String, String> {
    use crate::sys::inet::{add_md5_key, bind, local_addr, InetAddr};
    let l = socket::socket(AF_INET, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0)
        .map_err(|e| errno_why("socket(AF_INET, SOCK_STREAM)", e, &[]))?;
    add_md5_key(l.as_fd(), AF_INET, &InetAddr::v4([127, 0, 0, 77], 0), 32, b"crtools-check")
        .map_err(|e| errno_why("TCP_MD5SIG", e, &[(Errno::ENOPROTOOPT, "kernel without CONFIG_TCP_MD5SIG")]))?;
    bind(l.as_fd(), &InetAddr::v4([127, 0, 0, 1], 0)).map_err(|e| errno_why("bind", e, &[]))?;
    socket::listen(l.as_fd(), 1).map_err(|e| errno_why("listen", e, &[]))?;
    let port = local_addr(l.as_fd()).map_err(|e| errno_why("getsockname", e, &[]))?.port;
    let ino = fs::fstat(l.as_fd()).map_err(|e| errno_why("fstat of a socket", e, &[]))?.ino as u32;
    let all = sock_diag::inet_sockets().map_err(|e| errno_why("inet_diag dump", e, &[]))?;
    match all.get(&ino) {
        Some(d) if d.md5.iter().any(|k| k.key == b"crtools-check") => {
            Ok(format!("a listener's key listed (port {port}, {} key)", d.md5.len()))
        }
        Some(_) => Err("inet_diag lists the listener without its key (needs CAP_NET_ADMIN)".into()),
        None => Err("inet_diag does not list the listener".into()),
    }
}

/// packet_diag lists our own packet socket (a dump reads memberships,
/// rings and fanout from it).
pub fn probe_packet_diag() -> Result<String, String> {
    const AF_PACKET: u32 = 17;
    let s = socket::socket(AF_PACKET, SockType::SOCK_DGRAM, SockFlags::SOCK_CLOEXEC, 0)
        .map_err(|e| errno_why("socket(AF_PACKET)", e, &[(Errno::EPERM, "packet sockets need CAP_NET_RAW")]))?;
    let ino = fs::fstat(s.as_fd()).map_err(|e| errno_why("fstat of a socket", e, &[]))?.ino as u32;
    let all = sock_diag::packet_sockets()
        .map_err(|e| errno_why("packet_diag dump", e, &[(Errno::ENOENT, "kernel without CONFIG_PACKET_DIAG")]))?;
    if all.contains_key(&ino) {
        Ok(format!("lists our packet socket (inode {ino}) among {}", all.len()))
    } else {
        Err(format!("packet_diag does not list our packet socket (inode {ino})"))
    }
}
