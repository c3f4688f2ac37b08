//! Packet sockets (packet(7), AF_PACKET), as tcpdump and DHCP clients hold
//! them: type (SOCK_RAW or SOCK_DGRAM), the protocol they receive, the
//! interface they are bound to (by index, its name checked at restore),
//! the SOL_PACKET options getsockopt reads back (PACKET_VERSION,
//! PACKET_RESERVE, PACKET_AUXDATA, PACKET_ORIGDEV, PACKET_LOSS,
//! PACKET_VNET_HDR and PACKET_VNET_HDR_SZ, PACKET_TIMESTAMP,
//! PACKET_TX_HAS_OFF, PACKET_QDISC_BYPASS, PACKET_IGNORE_OUTGOING), the
//! copy threshold and the memberships (PACKET_ADD_MEMBERSHIP: multicast,
//! promiscuous, all-multicast, unicast, with their counts), which only
//! packet_diag (sock_diag(7)) shows, socket-level options and a classic
//! filter (SO_GET_FILTER).
//!
//! Restore makes the socket in the engine with protocol 0 (it receives
//! nothing yet), gives it its options, memberships and filter, and only
//! then binds it to its protocol and interface: no frame reaches it
//! unfiltered.
//!
//! Refused by name: a mapped or configured ring (PACKET_RX_RING,
//! PACKET_TX_RING: its memory is in the task's address space and its
//! frames' status words would have to be rebuilt), a fanout group
//! (PACKET_FANOUT: the group's other members and its balancing state are
//! not the socket's), an eBPF filter, frames queued for reading (MSG_PEEK
//! reaches only the first, and a frame sent again on the interface would
//! leave the host or reach every other packet socket), a pending error.
//! PACKET_STATISTICS is not read (reading it resets it): the counters start
//! afresh.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::files::OpenFlags;
use crate::image::packet_sk::{PacketMembership, PacketSkEntry};
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::inet;
use crate::sys::socket::{self as sk, PacketAddr, SockFlags, SockType, AF_PACKET};
use crate::sys::{sock_diag, Pid};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// SOL_PACKET.
const SOL_PACKET: u32 = 263;
const PACKET_ADD_MEMBERSHIP: u32 = 1;
const PACKET_COPY_THRESH: u32 = 7;
/// The SOL_PACKET integer options getsockopt reads back, in the order they
/// are set again: PACKET_VERSION (10), PACKET_RESERVE (12),
/// PACKET_AUXDATA (8), PACKET_ORIGDEV (9), PACKET_LOSS (14),
/// PACKET_VNET_HDR (15) then PACKET_VNET_HDR_SZ (24, which VNET_HDR
/// resets), PACKET_TIMESTAMP (17), PACKET_TX_HAS_OFF (19),
/// PACKET_QDISC_BYPASS (20), PACKET_IGNORE_OUTGOING (23).
const PACKET_OPTS: &[u32] = &[10, 12, 8, 9, 14, 15, 24, 17, 19, 20, 23];
/// Integer socket-level options kept where they differ from a fresh
/// socket's, besides `inet_sk::SOCK_EXTRA`: SO_SNDBUF (7), SO_RCVBUF (8),
/// SO_PRIORITY (12), SO_RCVLOWAT (18), SO_MARK (36).
const SOCK_INTS: &[u32] = &[7, 8, 12, 18, 36];
const SO_SNDBUF: u32 = 7;
const SO_RCVBUF: u32 = 8;

/// The name of interface `ifindex` (sysfs).
fn if_name(ifindex: u32) -> Option<String> {
    for d in std::fs::read_dir("/sys/class/net").ok()?.flatten() {
        let idx = std::fs::read_to_string(d.path().join("ifindex")).ok();
        if idx.and_then(|s| s.trim().parse::<u32>().ok()) == Some(ifindex) {
            return Some(d.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// The index of interface `name` (sysfs).
fn if_index(name: &str) -> Option<u32> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?.trim().parse().ok()
}

/// Dumps one packet socket a task holds.
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
    let what = format!("fd {fd}: packet socket:[{ino}]");
    let e = |m: String| Error::task(pid, format!("{what}: {m}"));
    let r = |m: String| Error::refuse(pid, format!("{what}: {m}"));
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let s = super::files::take_fd(pid, fd)?;
    let s = s.as_fd();
    let ty = sk::get_so_type(s).map_err(|err| e(format!("SO_TYPE: {err}")))?.0;
    // The obsolete SOCK_PACKET kind binds to a device by name, with the
    // protocol it was made with (its address is no sockaddr_ll).
    const SOCK_PACKET: u32 = 10;
    if ty == SOCK_PACKET {
        return Err(r("is of the obsolete kind SOCK_PACKET: not supported".into()));
    }
    if out.packet_diag.is_none() {
        // Once, with the whole tree frozen.
        out.packet_diag = Some(sock_diag::packet_sockets().map_err(|err| e(format!("packet_diag: {err}")))?);
    }
    let d = out
        .packet_diag
        .as_ref()
        .expect("just read")
        .get(&ino)
        .cloned()
        .ok_or_else(|| e("packet_diag does not list it".into()))?;
    if d.rx_ring || d.tx_ring {
        let which = match (d.rx_ring, d.tx_ring) {
            (true, true) => "PACKET_RX_RING and PACKET_TX_RING rings",
            (true, false) => "a PACKET_RX_RING ring",
            _ => "a PACKET_TX_RING ring",
        };
        return Err(r(format!("has {which} (TPACKET_V{}): not supported", d.version + 1)));
    }
    if let Some(f) = d.fanout {
        return Err(r(format!(
            "is in fanout group {} (PACKET_FANOUT type {}, flags {:#x}): not supported",
            f & 0xffff,
            (f >> 16) & 0xff,
            f >> 24
        )));
    }
    let filter = match inet::get_filter(s) {
        Ok(f) => f,
        Err(crate::sys::Errno::EACCES) => return Err(r("has an eBPF socket filter: it cannot be read back".into())),
        Err(err) => return Err(e(format!("SO_GET_FILTER: {err}"))),
    };
    let ev = crate::sys::event::poll_now(s.as_raw_fd(), crate::sys::event::POLLIN)
        .map_err(|err| e(format!("poll: {err}")))?;
    if ev & crate::sys::event::POLLIN != 0 {
        return Err(r("has frames queued for reading: not supported (MSG_PEEK reaches only the first, and a \
             frame sent again would leave the host or reach every other packet socket)"
            .into()));
    }
    if ev & crate::sys::event::POLLERR != 0 {
        return Err(r("has a pending error: it cannot be read without consuming it; not supported".into()));
    }
    let addr = sk::getsockname(s)
        .map_err(|err| e(format!("getsockname: {err}")))?
        .as_packet()
        .ok_or_else(|| e("getsockname: not a packet address".into()))?;
    let ifindex = addr.ifindex.max(0) as u32;
    let name = |i: u32| if_name(i).ok_or_else(|| e(format!("interface {i}: no such interface in sysfs")));
    let ifname = if ifindex == 0 { String::new() } else { name(ifindex)? };
    let fresh = sk::socket(AF_PACKET, SockType(ty), SockFlags::SOCK_CLOEXEC, 0)
        .map_err(|err| e(format!("a fresh packet socket to compare with: {err}")))?;
    let fresh = fresh.as_fd();
    let mut opts = Vec::new();
    for &o in PACKET_OPTS {
        if let Ok(v) = inet::get_opt_int(s, SOL_PACKET, o) {
            if inet::get_opt_int(fresh, SOL_PACKET, o).ok() != Some(v) {
                opts.push((o, v));
            }
        }
    }
    let mut sock_opts = Vec::new();
    for o in SOCK_INTS.iter().copied().chain(super::inet_sk::SOCK_EXTRA.iter().map(|&(_, o)| o)) {
        if let Ok(v) = sk::get_sol_socket_int(s, o) {
            if sk::get_sol_socket_int(fresh, o).ok() != Some(v) {
                if let Some(m) = super::inet_sk::unrestorable_sock_int(o, v) {
                    return Err(r(m));
                }
                sock_opts.push((o, v));
            }
        }
    }
    let mut mclist = Vec::new();
    for m in &d.mclist {
        mclist.push(PacketMembership {
            ifindex: m.ifindex,
            ifname: name(m.ifindex)?,
            ty: m.ty,
            count: m.count,
            addr: m.addr.clone(),
        });
    }
    let entry = PacketSkEntry {
        id,
        ino,
        ty,
        proto: addr.protocol,
        flags,
        ifindex,
        ifname,
        opts,
        copy_thresh: d.copy_thresh,
        mclist,
        sock_opts,
        rcvtimeo: sk::get_sol_socket_timeval(s, sk::SO_RCVTIMEO).map_err(|err| e(format!("SO_RCVTIMEO: {err}")))?,
        sndtimeo: sk::get_sol_socket_timeval(s, sk::SO_SNDTIMEO).map_err(|err| e(format!("SO_SNDTIMEO: {err}")))?,
        filter,
        lock_filter: sk::get_sol_socket_int(s, inet::SO_LOCK_FILTER).unwrap_or(0) != 0,
    };
    log::debug!(
        task = pid.0;
        "task {pid}: {what}: protocol {:#06x} on {}",
        entry.proto,
        if ifindex == 0 { "any interface" } else { &entry.ifname }
    );
    out.packet.push(entry);
    Ok(())
}

/// `struct packet_mreq` (a longer address: `packet_mreq_max`).
fn mreq(m: &PacketMembership) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&(m.ifindex as i32).to_ne_bytes());
    b.extend_from_slice(&m.ty.to_ne_bytes());
    b.extend_from_slice(&(m.addr.len() as u16).to_ne_bytes());
    b.extend_from_slice(&m.addr);
    b.resize(b.len().max(16), 0);
    b
}

/// Checks that interface `ifindex` is still called `name`.
fn same_interface(ifindex: u32, name: &str) -> std::result::Result<(), String> {
    match if_index(name) {
        Some(i) if i == ifindex => Ok(()),
        Some(i) => Err(format!("interface {name} has index {i} now, not {ifindex}")),
        None => Err(format!("interface {name} (index {ifindex}) is gone")),
    }
}

fn make(fd: BorrowedFd<'_>, u: &PacketSkEntry) -> std::result::Result<(), String> {
    if u.ifindex != 0 {
        same_interface(u.ifindex, &u.ifname)?;
    }
    for &(o, v) in &u.opts {
        inet::set_opt_int(fd, SOL_PACKET, o, v).map_err(|e| format!("SOL_PACKET option {o}={v}: {e}"))?;
    }
    if u.copy_thresh != 0 {
        inet::set_opt_int(fd, SOL_PACKET, PACKET_COPY_THRESH, u.copy_thresh as i32)
            .map_err(|e| format!("PACKET_COPY_THRESH: {e}"))?;
    }
    for &(o, v) in &u.sock_opts {
        // getsockopt reports twice what was set; FORCE is not capped by
        // rmem_max/wmem_max.
        let r = match o {
            SO_RCVBUF => sk::set_so_rcvbufforce(fd, v as u32 / 2),
            SO_SNDBUF => sk::set_so_sndbufforce(fd, v as u32 / 2),
            _ => sk::set_sol_socket_int(fd, o, v),
        };
        r.map_err(|e| format!("socket option {o}={v}: {e}"))?;
    }
    sk::set_sol_socket_timeval(fd, sk::SO_RCVTIMEO, u.rcvtimeo).map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    sk::set_sol_socket_timeval(fd, sk::SO_SNDTIMEO, u.sndtimeo).map_err(|e| format!("SO_SNDTIMEO: {e}"))?;
    for m in &u.mclist {
        same_interface(m.ifindex, &m.ifname)?;
        for _ in 0..m.count {
            sk::set_sockopt_bytes(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq(m))
                .map_err(|e| format!("PACKET_ADD_MEMBERSHIP (type {}) on {}: {e}", m.ty, m.ifname))?;
        }
    }
    if !u.filter.is_empty() {
        inet::attach_filter(fd, &u.filter).map_err(|e| format!("SO_ATTACH_FILTER: {e}"))?;
        if u.lock_filter {
            sk::set_sol_socket_int(fd, inet::SO_LOCK_FILTER, 1).map_err(|e| format!("SO_LOCK_FILTER: {e}"))?;
        }
    }
    // Last: from here on frames reach it, through its filter.
    if u.proto != 0 || u.ifindex != 0 {
        sk::bind_packet(fd, &PacketAddr { protocol: u.proto, ifindex: u.ifindex as i32 })
            .map_err(|e| format!("bind to protocol {:#06x} on interface {}: {e}", u.proto, u.ifindex))?;
    }
    let status = crate::sys::fs::OpenFlags::from_bits_retain((u.flags & OpenFlags::O_NONBLOCK).bits());
    crate::sys::fs::fcntl_setfl(fd, status).map_err(|e| format!("F_SETFL: {e}"))
}

/// Makes every packet socket of the images again.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for u in &images.packet {
        if out.has(u.id) {
            continue; // --inherit-fd
        }
        let err = |m: String| {
            Error::new(format!(
                "{}: packet socket:[{}] (protocol {:#06x}{}): {m}",
                cx.who(u.id),
                u.ino,
                u.proto,
                if u.ifindex == 0 { String::new() } else { format!(" on {}", u.ifname) }
            ))
        };
        // Protocol 0: it receives nothing until bound, once it is complete.
        let s = sk::socket(AF_PACKET, SockType(u.ty), SockFlags::SOCK_CLOEXEC, 0)
            .map_err(|e| err(format!("socket: {e}")))?;
        make(s.as_fd(), u).map_err(err)?;
        out.add(u.id, s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_request_layout() {
        let m = PacketMembership { ifindex: 2, ifname: "eth0".into(), ty: 1, count: 1, addr: vec![] };
        let b = mreq(&m);
        assert_eq!(b.len(), 16);
        assert_eq!(&b[..8], &[2, 0, 0, 0, 1, 0, 0, 0]);
        let m = PacketMembership { addr: vec![1, 0, 0x5e, 0, 0, 1], ..m };
        let b = mreq(&m);
        assert_eq!((b.len(), b[6], &b[8..14]), (16, 6, &[1, 0, 0x5e, 0, 0, 1][..]));
    }
}
