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
