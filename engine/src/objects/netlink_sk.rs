//! Netlink sockets (netlink(7)), as daemons hold them (audit, route,
//! uevent listeners): protocol, the port id they are bound to, their
//! multicast groups, a connected destination and the SOL_NETLINK options.
//!
//! Restore makes the socket in the engine with the same protocol, binds it
//! to the same port id (the kernel gives a process's first socket its
//! pid: free again when the dumped process is gone) and joins the groups.
//! Messages queued for the socket came from the kernel or another process
//! and cannot be sent again as theirs: a socket with messages waiting is
//! refused by name, and left as it was.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::files::OpenFlags;
use crate::image::netlink_sk::NetlinkSkEntry;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::socket::{self as sk, MsgFlags, NetlinkAddr, SockFlags, SockType, AF_NETLINK};
use crate::sys::{Errno, Pid};
use std::os::fd::AsFd;

/// SOL_NETLINK options kept: PKTINFO, BROADCAST_ERROR, NO_ENOBUFS,
/// LISTEN_ALL_NSID, CAP_ACK, EXT_ACK, GET_STRICT_CHK.
const OPTS: &[u32] = &[3, 4, 5, 8, 10, 11, 12];

/// Dumps one netlink socket a task holds.
pub fn dump(
    _cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    let FdTarget::Socket(ino) = *target else {
        return Err(Error::task(pid, format!("fd {fd}: not a socket")));
    };
    let what = format!("fd {fd}: netlink socket:[{ino}]");
    let e = |m: String| Error::task(pid, format!("{what}: {m}"));
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let s = super::files::take_fd(pid, fd)?;
    let s = s.as_fd();
    let ty = sk::get_so_type(s).map_err(|err| e(format!("SO_TYPE: {err}")))?.0;
    let protocol = sk::get_so_protocol(s).map_err(|err| e(format!("SO_PROTOCOL: {err}")))?;
    let local = sk::getsockname(s).map_err(|err| e(format!("getsockname: {err}")))?;
    let local = local.as_netlink().ok_or_else(|| e("getsockname: not a netlink address".into()))?;
    let dst = match sk::getpeername(s) {
        Ok(a) => a.as_netlink().filter(|a| a.portid != 0 || a.groups != 0).map(|a| (a.portid, a.groups)),
        Err(_) => None,
    };
    let groups = sk::netlink_groups(s).map_err(|err| e(format!("NETLINK_LIST_MEMBERSHIPS: {err}")))?;
    let mut opts = Vec::new();
    for &o in OPTS {
        match sk::get_sol_netlink_int(s, o) {
            Ok(v) if v != 0 => opts.push((o, v)),
            Ok(_) | Err(Errno::ENOPROTOOPT) => {}
            Err(err) => return Err(e(format!("netlink option {o}: {err}"))),
        }
    }
    // Anything waiting to be read? (Peeking takes nothing.)
    let mut one = [0u8; 1];
    match sk::recv(s, &mut one, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC) {
        Err(Errno::EAGAIN) => {}
        Ok(_) => {
            return Err(Error::refuse(
                pid,
                format!("{what} (protocol {protocol}) has messages waiting: they cannot be sent again as the kernel's"),
            ))
        }
        Err(err) => return Err(e(format!("look at its queue: {err}"))),
    }
    let bufs = (
        sk::get_sol_socket_int(s, sk::SO_RCVBUF).map_err(|err| e(format!("SO_RCVBUF: {err}")))? as u32,
        sk::get_sol_socket_int(s, sk::SO_SNDBUF).map_err(|err| e(format!("SO_SNDBUF: {err}")))? as u32,
    );
    out.netlink.push(NetlinkSkEntry {
        id,
        ino: ino as u32,
        ty,
        protocol,
        flags,
        portid: local.portid,
        groups,
        dst,
        opts,
        bufs,
    });
    Ok(())
}

/// Makes every netlink socket of the images again.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for n in &images.netlink {
        if out.has(n.id) {
            continue; // --inherit-fd
        }
        let e = |m: String| {
            Error::new(format!("{}: netlink socket:[{}] (protocol {}): {m}", cx.who(n.id), n.ino, n.protocol))
        };
        let s = sk::socket(AF_NETLINK, SockType(n.ty), SockFlags::SOCK_CLOEXEC, n.protocol)
            .map_err(|err| e(format!("socket: {err}")))?;
        let fd = s.as_fd();
        // Groups above 32 are joined one by one below.
        let low = n.groups.iter().filter(|&&g| g <= 32).fold(0u32, |m, &g| m | 1 << (g - 1));
        if n.portid != 0 || low != 0 {
            sk::bind_netlink(fd, &NetlinkAddr { portid: n.portid, groups: low }).map_err(|err| {
                e(match err {
                    Errno::EADDRINUSE => format!("its port id {} is taken by another socket now", n.portid),
                    err => format!("bind to port id {}: {err}", n.portid),
                })
            })?;
        }
        for &g in n.groups.iter().filter(|&&g| g > 32) {
            sk::netlink_add_membership(fd, g).map_err(|err| e(format!("join group {g}: {err}")))?;
        }
        if let Some((p, g)) = n.dst {
            sk::connect_netlink(fd, &NetlinkAddr { portid: p, groups: g })
                .map_err(|err| e(format!("connect: {err}")))?;
        }
        for &(o, v) in &n.opts {
            sk::set_sol_netlink_int(fd, o, v).map_err(|err| e(format!("netlink option {o}: {err}")))?;
        }
        if sk::get_sol_socket_int(fd, sk::SO_RCVBUF).ok() != Some(n.bufs.0 as i32) {
            sk::set_so_rcvbufforce(fd, n.bufs.0 / 2).map_err(|err| e(format!("SO_RCVBUF: {err}")))?;
        }
        if sk::get_sol_socket_int(fd, sk::SO_SNDBUF).ok() != Some(n.bufs.1 as i32) {
            sk::set_so_sndbufforce(fd, n.bufs.1 / 2).map_err(|err| e(format!("SO_SNDBUF: {err}")))?;
        }
        let status = crate::sys::fs::OpenFlags::from_bits_retain((n.flags & OpenFlags::O_NONBLOCK).bits());
        crate::sys::fs::fcntl_setfl(fd, status).map_err(|err| e(format!("F_SETFL: {err}")))?;
        out.add(n.id, s);
    }
    Ok(())
}
