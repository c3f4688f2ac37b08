//! Socket probes: TCP_REPAIR and the sock_diag netlink interface.
//!
//! The netlink messages are built by hand from the uapi layouts
//! (linux/netlink.h, linux/sock_diag.h, linux/unix_diag.h,
//! linux/inet_diag.h); only the fields these probes use are decoded.
use super::util::errno_why;
use crate::sys::socket::{self, MsgFlags, SockFlags, SockType, AF_INET, AF_NETLINK, AF_UNIX};
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

// linux/netlink.h and linux/sock_diag.h (linux-raw-sys's netlink module is
// not enabled in this build).
const NETLINK_SOCK_DIAG: u32 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_HDRLEN: usize = 16;
/// INET_DIAG_NOCOOKIE: match any socket cookie.
const NOCOOKIE: u32 = !0;
const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u32 = 10;

/// A netlink request: nlmsghdr (len, type, flags, seq, pid 0) + payload.
fn nl_request(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
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

/// One netlink message of a reply: (type, payload).
fn nl_messages(buf: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes"));
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return Err(format!("malformed netlink reply (message length {len})"));
        }
        out.push((ty, &buf[off + NLMSG_HDRLEN..off + len]));
        off += (len + 3) & !3;
    }
    Ok(out)
}

/// The errno of an NLMSG_ERROR payload (0 is an ack).
fn nl_error(payload: &[u8]) -> Errno {
    let e = payload.get(..4).map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
    Errno::new(-e)
}

/// Sends `req` and collects the SOCK_DIAG_BY_FAMILY payloads of the reply,
/// until NLMSG_DONE (dumps) or the first message (exact requests).
fn diag_query(nl: BorrowedFd<'_>, req: &[u8], dump: bool, what: &str) -> Result<Vec<Vec<u8>>, String> {
    socket::send(nl, req, MsgFlags::empty()).map_err(|e| errno_why(&format!("{what}: send"), e, &[]))?;
    let mut buf = vec![0u8; 32 << 10];
    let mut found = Vec::new();
    // A dump arrives in batches of a few KiB; cap the rounds so a
    // misbehaving kernel cannot keep the probe forever.
    for _ in 0..10_000 {
        let n =
            socket::recv(nl, &mut buf, MsgFlags::empty()).map_err(|e| errno_why(&format!("{what}: recv"), e, &[]))?;
        if n == 0 {
            return Err(format!("{what}: the netlink socket closed"));
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
                NLMSG_ERROR => {
                    let e = nl_error(payload);
                    return Err(errno_why(
                        what,
                        e,
                        &[
                            (Errno::ENOENT, "no such socket, or the diag module for this family is missing"),
                            (Errno::EINVAL, "the kernel does not know this diag request"),
                        ],
                    ));
                }
                _ => {}
            }
        }
    }
    Err(format!("{what}: no end of dump"))
}

/// NETLINK_SOCK_DIAG answers: unix_diag finds one of our own sockets by
/// inode, inet_diag dumps listening TCP sockets.
pub fn probe_sock_diag() -> Result<String, String> {
    let nl = socket::socket(AF_NETLINK, SockType::SOCK_RAW, SockFlags::SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        .map_err(|e| errno_why("socket(AF_NETLINK, NETLINK_SOCK_DIAG)", e, &[]))?;
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
}
