//! IPv4 and IPv6 raw sockets (raw(7), ipv6(7)) and ICMP "ping" sockets
//! (icmp(7): SOCK_DGRAM with IPPROTO_ICMP / IPPROTO_ICMPV6), as `ping`
//! holds them: protocol, bound address (a ping socket's port is its echo
//! identifier) and device, connected peer, the options inet sockets keep
//! (read and set again by `inet_sk`'s code) and the raw ones: IP_HDRINCL,
//! IP_NODEFRAG, ICMP_FILTER, ICMPV6_FILTER, IPV6_CHECKSUM, IPV6_HDRINCL,
//! kept where they differ from a fresh socket of the same kind.
//!
//! Restore makes the socket in the engine (crtools needs CAP_NET_RAW for a
//! raw one; a ping one needs crtools' group in net.ipv4.ping_group_range,
//! which the dump checks by making one), gives it its options, binds it to
//! its address (a ping socket to the same identifier) and connects it.
//!
//! Refused by name: packets queued for reading and a pending error or
//! error-queue entry (IP_RECVERR). A raw socket has no SO_PEEK_OFF, so
//! MSG_PEEK reaches only the first packet of its queue; and a packet sent
//! again to the socket's address would reach every raw socket of that
//! protocol on the host and the kernel's own ICMP handling too (an echo
//! request would be answered again): not exact. The error queue cannot be
//! read without consuming it. Sockets whose option memory is more than
//! the same socket made again holds (state crtools cannot read) are
//! refused as in `inet_sk`.
use super::files::{FdCtx, FileImages, Opened};
use super::inet_sk;
use crate::error::{Error, Result};
use crate::image::files::OpenFlags;
use crate::image::inet_sk::{InetSkEntry, SkAddr};
use crate::image::raw_sk::{kind_text, RawSkEntry};
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::inet::{self as inet, SOL_IP, SOL_IPV6};
use crate::sys::socket::{self as sk, SockFlags, SockType, AF_INET6, SOL_SOCKET};
use crate::sys::{Errno, Pid};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// A connected socket's state in the socket tables.
const TCP_ESTABLISHED: u8 = 1;

/// Whether `proto` (sockfs' `system.sockprotoname`) is a kind this module
/// dumps.
pub fn handles(proto: &str) -> bool {
    matches!(proto, "RAW" | "RAWv6" | "PING" | "PINGv6")
}

/// (level, option, longest value) of the raw-socket options kept as bytes
/// where they differ from a fresh socket's (an option a kind does not
/// have is refused by the kernel on both sides and skipped).
const RAW_OPTS: &[(u32, u32, usize)] = &[
    (SOL_IP, inet::IP_HDRINCL, 4),
    (SOL_IP, inet::IP_NODEFRAG, 4),
    (inet::SOL_RAW, inet::ICMP_FILTER, 4),
    (inet::SOL_ICMPV6, inet::ICMPV6_FILTER, 32),
    (SOL_IPV6, inet::IPV6_CHECKSUM, 4),
    (SOL_IPV6, inet::IPV6_HDRINCL, 4),
];

/// The entry as an inet socket, for `inet_sk`'s option code.
fn as_inet(u: &RawSkEntry) -> InetSkEntry {
    InetSkEntry {
        id: u.id,
        ino: u.ino,
        family: u.family,
        ty: u.ty,
        proto: u.proto,
        state: 7,
        flags: u.flags,
        local: u.local,
        peer: u.peer,
        opts: u.opts.clone(),
        ..Default::default()
    }
}

fn ends(u: &RawSkEntry) -> String {
    let l = u.local.map_or("(unbound)".to_string(), |a| a.to_string());
    match u.peer {
        Some(p) => format!("{l} -> {p}"),
        None => l,
    }
}

/// Dumps one raw or ping socket a task holds.
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
    let ino = ino as u32;
    let s = super::files::take_fd(pid, fd)?;
    let s = s.as_fd();
    let family = sk::get_so_domain(s).unwrap_or(0);
    let proto = sk::get_so_protocol(s).unwrap_or(0);
    let ty = sk::get_so_type(s).map(|t| t.0).unwrap_or(0);
    let ping = ty == SockType::SOCK_DGRAM.0;
    let what = format!("fd {fd}: {} socket:[{ino}] (protocol {proto})", kind_text(family, ty));
    let e = |msg: String| Error::task(pid, format!("{what}: {msg}"));
    let r = |msg: String| Error::refuse(pid, format!("{what}: {msg}"));
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    // Restore makes it again in crtools, and its options are told from a
    // fresh one's: crtools must be allowed one.
    let fresh = match sk::socket(family, SockType(ty), SockFlags::SOCK_CLOEXEC, proto) {
        Ok(f) => f,
        Err(err) => {
            let why = if ping {
                " (ping sockets are allowed to the groups of net.ipv4.ping_group_range only)"
            } else {
                " (raw sockets need CAP_NET_RAW)"
            };
            return Err(r(format!("crtools cannot make such a socket to restore it: {err}{why}")));
        }
    };
    let ev = crate::sys::event::poll_now(s.as_raw_fd(), crate::sys::event::POLLIN)
        .map_err(|err| e(format!("poll: {err}")))?;
    if ev & crate::sys::event::POLLIN != 0 {
        let n = inet::queue_ioctl(s, inet::SIOCINQ).unwrap_or(0);
        return Err(r(format!(
            "has packets queued for reading (the first of {n} bytes): not supported (MSG_PEEK reaches only \
             the first one, and one sent again would reach every socket of its protocol and the kernel's \
             own ICMP handling)"
        )));
    }
    if ev & crate::sys::event::POLLERR != 0 {
        return Err(r("has a pending error or error-queue entries (IP_RECVERR): they cannot be read \
             without consuming them; not supported"
            .into()));
    }
    let local = inet::local_addr(s).map_err(|err| e(format!("getsockname: {err}")))?;
    // A raw socket's "port" is its protocol: it is bound by its address
    // alone. A ping socket's is its echo identifier.
    let local = (!local.is_any() || (ping && local.port != 0)).then(|| SkAddr::from_sys(local));
    // getpeername answers only for a peer with a port, which a raw or ping
    // peer has not: the socket table shows it.
    let table = match (family == AF_INET6, ping) {
        (false, false) => "raw",
        (true, false) => "raw6",
        (false, true) => "icmp",
        (true, true) => "icmp6",
    };
    // A ping socket is in the table once bound or connected (it has an
    // echo identifier then): one that is neither is not.
    let row = match crate::proc::net::sock_row(pid, table, ino as u64) {
        Some(row) => Some(row),
        None if ping && local.is_none() => None,
        None => return Err(e(format!("/proc/net/{table} does not list it"))),
    };
    let peer = match inet::peer_addr(s) {
        Ok(a) => Some(SkAddr::from_sys(a)),
        Err(Errno::ENOTCONN) => match row {
            Some(row) if row.state == TCP_ESTABLISHED => {
                Some(SkAddr { family, addr: row.rem, port: row.rem_port, flowinfo: 0, scope_id: 0 })
            }
            _ => None,
        },
        Err(err) => return Err(e(format!("getpeername: {err}"))),
    };
    let mut opts = inet_sk::read_opts(s, family, ty, proto, peer.is_some()).map_err(|m| {
        if m.contains("eBPF") {
            r(m)
        } else {
            e(m)
        }
    })?;
    for &(_, name, v) in opts.ip_extra.iter().filter(|o| o.0 == SOL_SOCKET) {
        if let Some(m) = inet_sk::unrestorable_sock_int(name, v) {
            return Err(r(m));
        }
    }
    opts.mcast = inet_sk::multicast_memberships(pid, s);
    let mut raw_opts = Vec::new();
    for &(level, name, max) in RAW_OPTS {
        if let Ok(v) = sk::get_sockopt_bytes(s, level, name, max) {
            if sk::get_sockopt_bytes(fresh.as_fd(), level, name, max).ok().as_ref() != Some(&v) {
                raw_opts.push((level, name, v));
            }
        }
    }
    let entry = RawSkEntry { id, ino, family, ty, proto, flags, local, peer, opts, raw_opts };
    let (mine, again) = inet_sk::optmem_compared(s, &as_inet(&entry)).map_err(|m| e(format!("option memory: {m}")))?;
    let sources = entry.opts.mcast.iter().any(|m| !m.sources.is_empty());
    if mine != again && !(sources && mine < again) {
        return Err(r(format!(
            "holds {mine} bytes of option memory where the same socket made again holds {again}: \
             it has state crtools cannot read back"
        )));
    }
    log::debug!(task = pid.0; "task {pid}: {what}: {}", ends(&entry));
    out.raw.push(entry);
    Ok(())
}

/// Options that must be in place before bind. A raw socket has its
/// protocol as its number from the start, and the kernel takes
/// IPV6_V6ONLY only before a socket has one: a ping socket's.
fn pre_bind(fd: BorrowedFd<'_>, u: &RawSkEntry) -> std::result::Result<(), String> {
    let v6only = u.family == AF_INET6 && u.ty == SockType::SOCK_DGRAM.0;
    super::inet_sk::pre_bind_opts(fd, u.family, &u.opts, v6only, false)
}

/// Makes every raw and ping socket of the images again.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for u in &images.raw {
        if out.has(u.id) {
            continue; // --inherit-fd
        }
        let err = |m: String| {
            Error::new(format!(
                "{}: {} socket:[{}] (protocol {}) {}: {m}",
                cx.who(u.id),
                kind_text(u.family, u.ty),
                u.ino,
                u.proto,
                ends(u)
            ))
        };
        let s = sk::socket(u.family, SockType(u.ty), SockFlags::SOCK_CLOEXEC, u.proto)
            .map_err(|e| err(format!("socket: {e}")))?;
        let fd = s.as_fd();
        pre_bind(fd, u).map_err(err)?;
        if let Some(a) = u.local {
            inet::bind(fd, &a.to_sys()).map_err(|e| {
                err(match e {
                    Errno::EADDRINUSE => format!("bind to {a}: its echo identifier is taken by another socket now"),
                    e => format!("bind to {a}: {e}"),
                })
            })?;
        }
        if let Some(p) = u.peer {
            inet::connect(fd, &p.to_sys()).map_err(|e| err(format!("connect to {p}: {e}")))?;
        }
        inet_sk::set_opts(fd, &as_inet(u)).map_err(err)?;
        for (level, name, v) in &u.raw_opts {
            sk::set_sockopt_bytes(fd, *level, *name, v).map_err(|e| err(format!("option {level}/{name}: {e}")))?;
        }
        let status = crate::sys::fs::OpenFlags::from_bits_retain((u.flags & OpenFlags::O_NONBLOCK).bits());
        crate::sys::fs::fcntl_setfl(fd, status).map_err(|e| err(format!("F_SETFL: {e}")))?;
        out.add(u.id, s);
    }
    Ok(())
}
