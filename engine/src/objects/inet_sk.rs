//! IPv4 and IPv6 sockets (ip(7), ipv6(7), tcp(7), udp(7), udplite(7)): TCP
//! listening, bound and unbound sockets, connections with
//! `--tcp-established` (established or half-closed), UDP and UDP-Lite
//! sockets bound or connected with the datagrams queued for them, and the
//! options users set.
//!
//! Dump: inet_diag (sock_diag(7)) is asked once, with the tree frozen, for
//! every TCP and UDP socket of crtools' network namespace (state, backlog,
//! accept queue, shutdown); sockets no hash table holds (unbound, bound and
//! not listening) are not listed and are read from the socket alone. Each
//! socket is duplicated into the engine (pidfd_getfd) and read there:
//! addresses, options, and for UDP the receive queue, peeked datagram by
//! datagram through SO_PEEK_OFF (put back as the task had it).
//!
//! A TCP connection is refused, naming its endpoints, unless
//! `--tcp-established`: it is then put into repair mode (TCP_REPAIR) and its
//! sequence numbers, both queues (unread bytes; written bytes not
//! acknowledged, and which of them were never sent), negotiated options
//! (MSS, window scaling, SACK, timestamps) and window are read. It stays in
//! repair mode while the tree is killed: closing a socket in repair mode
//! sends neither FIN nor RST. If the dump fails or runs with `-s`, repair
//! mode is switched off again (without a window probe) and SO_REUSEADDR,
//! which leaving repair mode clears, is put back.
//!
//! Restore, in the engine before the tree is forked: listeners first (bound
//! and listening with their backlog), then bound and unbound sockets, then
//! repaired connections: each is created in repair mode (which lets it
//! share its listener's port), bound to its local address and "connected"
//! to its peer without a handshake, given its options, queues, window and
//! timestamp clock (the whole send queue counts as sent: see
//! `repair_connection`).
//!
//! Half-closed connections (FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, LAST-ACK,
//! CLOSING) are built the same way as if established, with the sequence
//! numbers before the FINs (a FIN takes one), and then taken to their
//! state as TCP itself would: the FIN the task sent is queued by
//! shutdown(SHUT_WR) with the send queue selected (so it counts as sent,
//! not transmitted again), and the FIN (or the acknowledgement of its
//! own FIN) the peer once sent is handed to the socket as that segment,
//! built here and sent through a raw socket with crtools' packet mark
//! (`FORGED_MARK`), the only mark the new socket's filter lets through
//! while it is silent. Order follows the state's history: CLOSING sent its
//! FIN before it received one, LAST-ACK after. The state reached is
//! checked. Segments are checked against the connection's MD5 keys, which
//! a forged one lacks: a half-closed connection with TCP_MD5SIG keys is
//! refused (but in FIN-WAIT-1, which needs no forged segment). TIME-WAIT connections have no descriptor and are not dumped;
//! a connection still opening (SYN-SENT) is held silent in repair mode
//! at dump and its initial sequence number read; restored, it is bound to
//! its port with that number and connects again once every task exists:
//! its SYN (the same one, for the peer) goes out and the handshake
//! completes when the peer answers. SYN-RECV has no descriptor.
//!
//! A connection that ended (CLOSE: both FINs exchanged, or reset, or
//! refused, its error read) and is still held needs no
//! `--tcp-established`: it talks to nobody. What the task has not read of
//! it is read in repair mode at dump (left at once again), and it is
//! rebuilt like LAST-ACK, then the peer's acknowledgement of its FIN is
//! forged too: it ends the way TCP ends it (CLOSE, both directions shut,
//! its peer's name still in SO_PEERNAME, no error pending, nothing left in
//! TIME-WAIT).
//!
//! UDP queues are refilled from the datagrams' senders
//! (a restored socket bound to the sender's address, or a temporary one),
//! then UDP sockets connect. Once every task exists, repaired connections
//! leave repair mode (an established one sends a window probe, which makes
//! the peer answer) and get their options.
//!
//! Not handled, refused by name:
//! half-closed ones with TCP_MD5SIG keys (but FIN-WAIT-1), connections waiting in a
//! listener's accept queue, a connection that ended (CLOSE) with an error
//! the task has not read (SO_ERROR cannot be read without taking it), a
//! corked UDP socket or one with data held back by MSG_MORE (or
//! still in the transmit path after a few seconds), an eBPF socket filter
//! (it cannot be read back); a queued datagram whose sender address cannot
//! be bound again fails the restore. Raw and ping sockets are `raw_sk`'s,
//! packet sockets `packet_sk`'s (they reuse the option reading and setting
//! here).
//!
//! Keeping connections silent while the tree is down (the network lock of
//! crtools' own namespace): from the moment a connection enters repair
//! mode at dump, a classic socket filter that drops every segment is
//! attached to it, so it neither takes data nor answers while it is read.
//! Once the tree is dead, crtools hands the repaired sockets to a small
//! detached process (`crtools-inetlk`, [`hand_over`]) that holds them: the
//! connection stays in the kernel's tables, so a peer outside the tree that
//! sends meets a silent socket (it retransmits, backing off) instead of a
//! closed port (which would answer with a reset). `crtools restore` of the
//! same image directory asks that process for them ([`unlock`]): it sends
//! them back and exits. Each one still in its dumped state (nothing
//! reached it) is the restored connection itself ([`adopt_held`]): it
//! never leaves the kernel's tables, so there is no moment in which a
//! segment of its peer meets a closed port and is answered with a reset.
//! The others are closed (silently: repair mode) before the sockets are
//! created again, each new one dropping every segment but crtools' own
//! forged ones until it goes live.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::files::OpenFlags;
use crate::image::inet_sk::{
    proto_text, state_text, Datagram, InetSkEntry, InetSkOpts, McastMembership, SkAddr, TcpMd5Key, TcpStream,
};
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::inet::{self as inet, SOL_IP, SOL_IPV6, SOL_TCP};
use crate::sys::socket::{self as sk, MsgFlags, SockFlags, SockType, UnixAddr, AF_INET, AF_INET6, AF_UNIX, SOL_SOCKET};
use crate::sys::{sock_diag, Errno, Pid};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

const TCP_ESTABLISHED: u32 = 1;
const TCP_FIN_WAIT1: u32 = 4;
const TCP_FIN_WAIT2: u32 = 5;
const TCP_CLOSE: u32 = 7;
const TCP_SYN_SENT: u32 = 2;
const TCP_CLOSE_WAIT: u32 = 8;
const TCP_LAST_ACK: u32 = 9;
const TCP_LISTEN: u32 = 10;
const TCP_CLOSING: u32 = 11;
const RCV_SHUTDOWN: u8 = 1;
const SEND_SHUTDOWN: u8 = 2;
/// How long a UDP socket's sent datagrams may take to leave the host
/// before what is left counts as held back.
const UDP_DRAIN: std::time::Duration = std::time::Duration::from_secs(3);
/// Largest UDP payload plus room: a peek never truncates a datagram.
const UDP_BUF: usize = 65536;

/// Whether `proto` (sockfs' `system.sockprotoname`) is a kind this module
/// dumps.
pub fn handles(proto: &str) -> bool {
    matches!(proto, "TCP" | "TCPv6" | "UDP" | "UDPv6" | "UDP-Lite" | "UDPLITEv6")
}

/// Whether `proto` is UDP or UDP-Lite (the same datagram semantics).
fn is_udp(proto: u32) -> bool {
    proto == inet::IPPROTO_UDP || proto == inet::IPPROTO_UDPLITE
}

/// Where a connection's FINs are, by its state: the states crtools
/// checkpoints (None: any other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fins {
    /// The task shut its sending side: a FIN follows its send queue.
    sent: bool,
    /// ... and the peer acknowledged it (FIN-WAIT-2).
    acked: bool,
    /// The peer's FIN arrived: the receive queue ends with it.
    received: bool,
}

impl Fins {
    fn of(state: u32) -> Option<Fins> {
        let f = |sent, acked, received| Some(Fins { sent, acked, received });
        match state {
            TCP_ESTABLISHED => f(false, false, false),
            TCP_FIN_WAIT1 => f(true, false, false),
            TCP_FIN_WAIT2 => f(true, true, false),
            TCP_CLOSE_WAIT => f(false, false, true),
            TCP_LAST_ACK | TCP_CLOSING => f(true, false, true),
            // Ended, and still held: rebuilt the way LAST-ACK ends.
            TCP_CLOSE => f(true, true, true),
            _ => None,
        }
    }

    /// Whether restoring the state takes a segment forged as the peer's.
    fn forged(self) -> bool {
        self.acked || self.received
    }
}

/// A connection crtools put into repair mode at dump: its copy, whether
/// the socket had SO_REUSEADDR (leaving repair mode clears it), and the
/// filter it had before crtools attached one that drops every segment.
#[derive(Debug)]
pub struct Repaired {
    fd: OwnedFd,
    reuseaddr: bool,
    /// Its own classic filter (empty: none); None: crtools attached none.
    filter: Option<Vec<inet::SockFilter>>,
}

/// A classic BPF program of one instruction, `ret #0`: every segment is
/// dropped before TCP sees it, so the connection neither takes data nor
/// answers (no ACK, no RST): its peer sees a pause and retransmits.
const DROP_ALL: [inet::SockFilter; 1] = [(0x06, 0, 0, 0)];

/// The packet mark (SO_MARK) of the segments crtools forges as a peer's
/// to take a restored connection to its state ("CRtf").
const FORGED_MARK: u32 = 0x4352_7466;

/// What a restored connection runs until it goes live: like [`DROP_ALL`],
/// except for segments with crtools' mark (`ld mark; jeq FORGED_MARK;
/// ret accept; ret drop`). Segments from the network arrive unmarked
/// (unless the host's own netfilter rules mark them so).
const SILENT: [inet::SockFilter; 4] =
    [(0x20, 0, 0, inet::SKF_AD_MARK_LOAD), (0x15, 0, 1, FORGED_MARK), (0x06, 0, 0, u32::MAX), (0x06, 0, 0, 0)];

/// Switches repair mode off again on every connection in `held` (the tree
/// lives on: a failed dump, or `-s`), without a window probe, and gives it
/// its own filter back.
pub fn repair_off(held: &mut Vec<Repaired>) {
    for r in held.drain(..) {
        let fd = r.fd.as_fd();
        let _ = inet::set_opt_int(fd, SOL_TCP, inet::TCP_REPAIR_QUEUE, inet::TCP_NO_QUEUE);
        if let Err(e) = sk::set_tcp_repair(fd, sk::TCP_REPAIR_OFF_NO_WP) {
            log::warn!("switch a TCP connection out of repair mode: {e}");
        }
        if r.reuseaddr {
            let _ = inet::set_opt_int(fd, SOL_SOCKET, inet::SO_REUSEADDR, 1);
        }
        let back = match r.filter.as_deref() {
            None => Ok(()),
            Some([]) => inet::detach_filter(fd),
            Some(own) => inet::attach_filter(fd, own),
        };
        if let Err(e) = back {
            log::warn!("give a TCP connection its socket filter back: {e}");
        }
    }
}

/// The lock of the connections of one dump: an abstract unix socket named
/// after the image directory (device and inode).
fn lock_addr(dir: &Path) -> Option<UnixAddr> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(dir).ok()?;
    UnixAddr::new_abstract(format!("crtools-inet-lock-{}-{}", md.dev(), md.ino()).as_bytes()).ok()
}

/// After a dump that killed the tree: the connections it holds in repair
/// mode (each dropping every segment) are handed to a small process of
/// their own, which keeps them until `crtools restore` of the same image
/// directory asks it to let go ([`unlock`]). While it holds them, a peer
/// outside the tree sees its segments go unanswered (a pause), never a
/// reset; when it lets go, the sockets close silently (repair mode).
/// Failing here does not fail the dump: the connections then close now.
pub fn hand_over(dir: &Path, held: &mut Vec<Repaired>) {
    if held.is_empty() {
        return;
    }
    if let Err(e) = try_hand_over(dir, held) {
        log::warn!(
            "keep the dumped TCP connections silent until restore: {e}; they close now, \
             and a peer outside the tree that sends before the restore gets a reset"
        );
    }
    held.clear();
}

fn try_hand_over(dir: &Path, held: &[Repaired]) -> std::result::Result<(), String> {
    let addr = lock_addr(dir).ok_or("no name for the lock")?;
    let l =
        sk::socket(AF_UNIX, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0).map_err(|e| format!("socket: {e}"))?;
    if let Err(Errno::EADDRINUSE) = sk::bind(l.as_fd(), &addr) {
        // A keeper of an earlier dump into this directory: it lets go.
        unlock(dir);
        sk::bind(l.as_fd(), &addr).map_err(|e| format!("bind the lock: {e}"))?;
    }
    sk::listen(l.as_fd(), 4).map_err(|e| format!("listen: {e}"))?;
    let null = crate::sys::fs::openat(None, "/dev/null", crate::sys::fs::OpenFlags::O_RDWR, 0)
        .map_err(|e| format!("/dev/null: {e}"))?;
    let dirfd = super::keeper::open_dir(dir)?;
    let mut keep: Vec<u32> = held.iter().map(|r| r.fd.as_raw_fd() as u32).collect();
    keep.extend([l.as_raw_fd() as u32, null.as_raw_fd() as u32, dirfd.as_raw_fd() as u32]);
    // The ranges of descriptors the helper closes, computed here: the child
    // of fork may not allocate.
    let gaps = crate::sys::fs::gaps_between(keep);
    let conns: Vec<i32> = held.iter().map(|r| r.fd.as_raw_fd()).collect();
    // SAFETY: the child only makes raw syscalls through the sys wrappers,
    // allocates nothing and ends with exit_group (keeper never returns).
    match unsafe { crate::sys::clone::fork() }.map_err(|e| format!("fork: {e}"))? {
        crate::sys::clone::CloneResult::Child => {
            // It outlives crtools: the stop signals must end it.
            crate::interrupt::forget();
            keeper(l.as_fd(), null.as_fd(), dirfd.as_fd(), &gaps, &conns)
        }
        crate::sys::clone::CloneResult::Parent { child, .. } => {
            log::info!(
                "{} TCP connection(s) held silent by process {child} until `crtools restore` of {}",
                held.len(),
                dir.display()
            );
            Ok(())
        }
    }
}

/// The keeper: detached, stdio on /dev/null, every other descriptor but the
/// connections and the lock closed; waits for a restore to connect, then
/// closes the connections, says so with its pid, and exits.
fn keeper(l: BorrowedFd<'_>, null: BorrowedFd<'_>, dir: BorrowedFd<'_>, gaps: &[(u32, u32)], conns: &[i32]) -> ! {
    super::keeper::detach(null, gaps, b"crtools-inetlk");
    let c = super::keeper::accept_taker(l, dir);
    // The connections go back to the restore, which closes each just
    // before it creates it again: no moment without a socket.
    let mut msg = [0u8; 5];
    msg[0] = b'x';
    msg[1..].copy_from_slice(&crate::sys::misc::getpid().0.to_ne_bytes());
    let mut fds = [c.as_fd(); sk::SCM_MAX_FD];
    for chunk in conns.chunks(sk::SCM_MAX_FD) {
        for (slot, &fd) in fds.iter_mut().zip(chunk) {
            // SAFETY: the connection stays open until exit_group.
            *slot = unsafe { BorrowedFd::borrow_raw(fd) };
        }
        if sk::send_fds(c.as_fd(), &msg, &fds[..chunk.len()]).is_err() {
            crate::sys::misc::exit_group(1);
        }
    }
    // Its own copies go before the restore sees the end of the stream
    // (exit would close `c` first, being the lower number): then the
    // restore's are the last ones.
    for &fd in conns {
        // SAFETY: owned by no value used again in this child.
        let _ = unsafe { crate::sys::fs::close_range(fd as u32, fd as u32, crate::sys::fs::CloseRangeFlags::empty()) };
    }
    crate::sys::misc::exit_group(0)
}

/// At restore: the keeper of this image directory's connections, if one
/// runs, gives them back (still in repair mode, dropping every segment)
/// and exits; the caller closes each just before creating it again.
pub fn unlock(dir: &Path) -> Vec<OwnedFd> {
    let mut held = Vec::new();
    let Some(addr) = lock_addr(dir) else { return held };
    let Ok(s) = sk::socket(AF_UNIX, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0) else { return held };
    if sk::connect(s.as_fd(), &addr).is_err() {
        return held;
    }
    let mut pid = None;
    loop {
        let mut msg = [0u8; 5];
        match sk::recv_fds(s.as_fd(), &mut msg, sk::SCM_MAX_FD) {
            Ok((5, fds)) if msg[0] == b'x' => {
                pid = Some(Pid(i32::from_ne_bytes(msg[1..5].try_into().expect("4 bytes"))));
                held.extend(fds);
            }
            Ok((0, _)) => break,
            Ok(_) | Err(_) => {
                log::warn!("the keeper of the dumped TCP connections answered badly");
                break;
            }
        }
    }
    if let Some(pid) = pid {
        // Our child when the dump ran in this process (or we are its
        // subreaper): reaped here, so nothing else sees it end.
        let _ = crate::sys::wait::wait4(pid, crate::sys::wait::WALL);
        log::info!("{} TCP connection(s) held by process {pid} since the dump are back", held.len());
    }
    held
}

pub(crate) fn ends(local: Option<SkAddr>, peer: Option<SkAddr>) -> String {
    let l = local.map_or("(unbound)".to_string(), |a| a.to_string());
    match peer {
        Some(p) => format!("{l} -> {p}"),
        None => l,
    }
}

/// Dumps one TCP or UDP socket a task holds.
pub fn dump(
    cx: &FdCtx,
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
    let family = sk::get_so_domain(s.as_fd()).unwrap_or(0);
    let proto = sk::get_so_protocol(s.as_fd()).unwrap_or(0);
    let ty = sk::get_so_type(s.as_fd()).map(|t| t.0).unwrap_or(0);
    let what = format!("fd {fd}: {} socket:[{ino}]", proto_text(family, proto));
    let e = |msg: String| Error::task(pid, format!("{what}: {msg}"));
    // What this version does not checkpoint exactly: a refusal (nothing
    // changed), not a failure.
    let r = |msg: String| Error::refuse(pid, format!("{what}: {msg}"));
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    if let Err(Errno::EACCES) = inet::get_filter(s.as_fd()) {
        return Err(r("has an eBPF socket filter: it cannot be read back".into()));
    }
    if out.inet_diag.is_none() {
        // Once, with the whole tree frozen.
        out.inet_diag = Some(sock_diag::inet_sockets().map_err(|err| e(format!("inet_diag: {err}")))?);
    }
    let diag = out.inet_diag.as_ref().expect("just read").get(&ino).cloned();
    let local = inet::local_addr(s.as_fd()).map_err(|err| e(format!("getsockname: {err}")))?;
    let local = (local.port != 0 || !local.is_any()).then(|| SkAddr::from_sys(local));
    let peer = match inet::peer_addr(s.as_fd()) {
        Ok(a) => Some(SkAddr::from_sys(a)),
        Err(Errno::ENOTCONN) => None,
        Err(err) => return Err(e(format!("getpeername: {err}"))),
    };
    let opts = read_opts(s.as_fd(), family, ty, proto, peer.is_some()).map_err(e)?;
    let mut entry = InetSkEntry {
        id,
        ino,
        family,
        ty,
        proto,
        state: TCP_CLOSE,
        flags,
        local,
        peer,
        backlog: 0,
        shutdown: diag.as_ref().map_or(0, |d| d.shutdown),
        opts,
        tcp: None,
        queue: Vec::new(),
    };
    if ty != SockType::SOCK_STREAM.0 {
        entry.opts.mcast = multicast_memberships(pid, s.as_fd());
    }
    if proto == inet::IPPROTO_TCP {
        const TCP_ULP: u32 = 31;
        let ulp = sk::get_sockopt_bytes(s.as_fd(), SOL_TCP, TCP_ULP, 16).unwrap_or_default();
        let ulp = String::from_utf8_lossy(ulp.split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
        if !ulp.is_empty() {
            return Err(r(format!("runs the upper-layer protocol {ulp:?} (TCP_ULP): not supported")));
        }
        entry.opts.md5 = diag.as_ref().map_or_else(Vec::new, |d| {
            d.md5
                .iter()
                .map(|k| TcpMd5Key {
                    family: k.family as u32,
                    addr: k.addr,
                    prefixlen: k.prefixlen,
                    key: k.key.clone(),
                })
                .collect()
        });
    }
    for &(_, name, v) in entry.opts.ip_extra.iter().filter(|o| o.0 == SOL_SOCKET) {
        if let Some(m) = unrestorable_sock_int(name, v) {
            return Err(r(m));
        }
    }
    // Whatever holds option memory that the socket made again with every
    // option crtools restores would not hold is state crtools cannot read
    // back: refused (e.g. a TCP_MD5SIG key of a socket inet_diag does not
    // list, zerocopy notifications not read yet, an anycast address).
    let (mine, again) = optmem_compared(s.as_fd(), &entry).map_err(|m| e(format!("option memory: {m}")))?;
    // A source list's room is the kernel's (it grows in blocks, or comes
    // exact from MCAST_MSFILTER) and cannot be read: where there is one,
    // the socket made again may hold more, never less.
    let sources = entry.opts.mcast.iter().any(|m| !m.sources.is_empty());
    if mine != again && !(sources && mine < again) {
        return Err(r(format!(
            "holds {mine} bytes of option memory where the same socket made again holds {again}: \
             it has state crtools cannot read back (a TCP_MD5SIG key inet_diag does not list, \
             MSG_ZEROCOPY notifications not read yet, an anycast address joined, ...)"
        )));
    }
    match proto {
        inet::IPPROTO_TCP => {
            let state = inet::tcp_info(s.as_fd()).map_err(|err| e(format!("TCP_INFO: {err}")))?.state as u32;
            entry.state = state;
            match state {
                TCP_LISTEN => {
                    let d = diag.ok_or_else(|| e("listening, but inet_diag does not list it".into()))?;
                    if d.rqueue > 0 && cx.skip_in_flight {
                        log::info!(
                            task = pid.0;
                            "task {pid}: {what}: {} connection(s) in the accept queue of {} skipped (--skip-in-flight)",
                            d.rqueue,
                            ends(local, None)
                        );
                    } else if d.rqueue > 0 {
                        return Err(r(format!(
                            "listening on {}: {} connection(s) wait in its accept queue, not accepted yet: \
                             restoring them is not supported yet (--skip-in-flight leaves them out)",
                            ends(local, None),
                            d.rqueue
                        )));
                    }
                    entry.backlog = d.wqueue;
                }
                TCP_CLOSE => {
                    // A connection that ended (both FINs, a reset, a
                    // refused connect) and is still held keeps what the
                    // task has not read of it, its end of stream and its
                    // peer's name (SO_PEERNAME; getpeername says ENOTCONN).
                    // One never connected has no segments counted; one
                    // disconnected (AF_UNSPEC) has no peer: either is a
                    // fresh socket.
                    let (segs_in, segs_out) = inet::tcp_segs(s.as_fd()).map_err(|err| e(format!("TCP_INFO: {err}")))?;
                    let ended = if segs_in > 0 || segs_out > 0 {
                        match inet::so_peername(s.as_fd(), family) {
                            Ok(p) => Some(SkAddr::from_sys(p)),
                            Err(Errno::ENOTCONN) => None,
                            Err(err) => return Err(e(format!("SO_PEERNAME: {err}"))),
                        }
                    } else {
                        None
                    };
                    if let Some(p) = ended {
                        let conn = format!("TCP connection {} (ended: CLOSE)", ends(local, Some(p)));
                        let ready = crate::sys::event::poll_now(s.as_raw_fd(), crate::sys::event::POLLIN)
                            .map_err(|err| e(format!("{conn}: poll: {err}")))?;
                        if ready & crate::sys::event::POLLERR != 0 {
                            return Err(r(format!(
                                "{conn}: holds an error the task has not read yet (a reset, a refused \
                                 connect, a timeout): reading it (SO_ERROR) would take it from the task; \
                                 not supported"
                            )));
                        }
                        entry.peer = Some(p);
                        entry.tcp = Some(dump_ended(s.as_fd(), &entry.opts).map_err(|m| e(format!("{conn}: {m}")))?);
                    }
                }
                st if cx.tcp_close && (st == TCP_ESTABLISHED || st == TCP_SYN_SENT || Fins::of(st).is_some()) => {
                    // Not checkpointed: the killed tree closes it.
                    log::debug!(task = pid.0; "task {pid}: {what}: {} {}: dumped closed (--tcp-close)", state_text(st), ends(local, peer));
                    close_entry(&mut entry);
                }
                TCP_ESTABLISHED if !cx.tcp_established => {
                    return Err(r(format!(
                        "established TCP connection {}: dump with --tcp-established to checkpoint it",
                        ends(local, peer)
                    )));
                }
                st if Fins::of(st).is_some() && !cx.tcp_established => {
                    return Err(r(format!(
                        "TCP connection {} in state {}: dump with --tcp-established to checkpoint it",
                        ends(local, peer),
                        state_text(st)
                    )));
                }
                st if Fins::of(st).is_some() => {
                    let conn = |st: u32| format!("TCP connection {} ({})", ends(local, peer), state_text(st));
                    let (st, t) = dump_stream(s, &entry.opts, out).map_err(|m| e(format!("{}: {m}", conn(st))))?;
                    let fins = Fins::of(st).expect("dump_stream checks the state");
                    if fins.forged() && !entry.opts.md5.is_empty() {
                        return Err(r(format!(
                            "{}: has TCP_MD5SIG keys, and restoring this state takes a segment \
                             crtools cannot sign: not supported",
                            conn(st)
                        )));
                    }
                    entry.state = st;
                    entry.tcp = Some(t);
                }
                TCP_SYN_SENT => {
                    // Its peer has no name yet: inet_diag knows where it goes.
                    let to = diag.as_ref().filter(|d| d.dport != 0).map(|d| SkAddr {
                        family: d.family as u32,
                        addr: d.dst,
                        port: d.dport,
                        flowinfo: 0,
                        scope_id: 0,
                    });
                    let conn = format!("TCP connection {} (SYN-SENT)", ends(local, to));
                    if !cx.tcp_established {
                        return Err(r(format!("{conn}: dump with --tcp-established to checkpoint it")));
                    }
                    let (Some(_), Some(_)) = (local, to) else {
                        return Err(e(format!("{conn}: without both addresses")));
                    };
                    let snd_seq = dump_syn_sent(s, &entry.opts, out).map_err(|m| e(format!("{conn}: {m}")))?;
                    entry.peer = to;
                    entry.tcp = Some(TcpStream { snd_seq, ..Default::default() });
                }
                st => {
                    // A connection still opening has no peer name yet:
                    // inet_diag knows where it goes.
                    let to = peer.or_else(|| {
                        let d = diag.as_ref().filter(|d| d.dport != 0)?;
                        Some(SkAddr { family: d.family as u32, addr: d.dst, port: d.dport, flowinfo: 0, scope_id: 0 })
                    });
                    return Err(r(format!(
                        "TCP connection {} in state {}: not supported (only SYN-SENT, ESTABLISHED, \
                         FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, LAST-ACK and CLOSING connections are)",
                        ends(local, to),
                        state_text(st)
                    )));
                }
            }
        }
        p if is_udp(p) => {
            if peer.is_some() {
                entry.state = TCP_ESTABLISHED;
            }
            if inet::get_opt_int(s.as_fd(), inet::SOL_UDP, inet::UDP_CORK).unwrap_or(0) != 0 {
                return Err(r(format!("UDP socket {} is corked (UDP_CORK): not supported", ends(local, peer))));
            }
            // SIOCOUTQ counts what is held back (MSG_MORE) and what was
            // sent but not freed yet (a qdisc, a neighbour being resolved):
            // the latter drains while the tree is frozen, the former not.
            let deadline = std::time::Instant::now() + UDP_DRAIN;
            let mut pending = inet::queue_ioctl(s.as_fd(), inet::SIOCOUTQ).unwrap_or(0);
            while pending > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
                pending = inet::queue_ioctl(s.as_fd(), inet::SIOCOUTQ).unwrap_or(0);
            }
            if pending > 0 {
                return Err(r(format!(
                    "UDP socket {} holds {pending} bytes not sent yet after {} ms (held back with MSG_MORE, \
                     or stuck in the transmit path, e.g. an unresolved neighbour): not supported",
                    ends(local, peer),
                    UDP_DRAIN.as_millis()
                )));
            }
            entry.queue =
                peek_datagrams(s.as_fd(), family).map_err(|m| if m.contains("not supported") { r(m) } else { e(m) })?;
        }
        other => return Err(r(format!("protocol {other}: not supported yet"))),
    }
    log::debug!(
        task = pid.0;
        "task {pid}: {what}: {} {}{}",
        state_text(entry.state),
        ends(entry.local, entry.peer),
        if entry.queue.is_empty() { String::new() } else { format!(", {} datagrams queued", entry.queue.len()) }
    );
    out.inet.push(entry);
    Ok(())
}

/// The option memory of socket `s` and of a fresh socket of the same kind
/// given what restore gives it that holds option memory: its filter, the
/// options kept as bytes, TCP_MD5SIG keys.
pub(crate) fn optmem_compared(s: BorrowedFd<'_>, u: &InetSkEntry) -> std::result::Result<(u32, u32), String> {
    let mine = inet::optmem(s).map_err(|e| format!("SO_MEMINFO: {e}"))?;
    let fresh = sk::socket(u.family, SockType(u.ty), SockFlags::SOCK_CLOEXEC, u.proto)
        .map_err(|e| format!("a fresh socket to compare with: {e}"))?;
    let f = fresh.as_fd();
    if !u.opts.filter.is_empty() {
        inet::attach_filter(f, &u.opts.filter).map_err(|e| format!("SO_ATTACH_FILTER on a fresh socket: {e}"))?;
    }
    for (level, name, v) in &u.opts.raw {
        sk::set_sockopt_bytes(f, *level, *name, v)
            .map_err(|e| format!("option {level}/{name} on a fresh socket: {e}"))?;
    }
    add_md5_keys(f, u)?;
    join_groups(f, u)?;
    Ok((mine, inet::optmem(f).map_err(|e| format!("SO_MEMINFO: {e}"))?))
}

/// Gives socket `fd` the TCP_MD5SIG keys of `u`.
fn add_md5_keys(fd: BorrowedFd<'_>, u: &InetSkEntry) -> std::result::Result<(), String> {
    for k in &u.opts.md5 {
        let a = SkAddr { family: k.family, addr: k.addr, port: 0, flowinfo: 0, scope_id: 0 }.to_sys();
        inet::add_md5_key(fd, u.family, &a, k.prefixlen, &k.key)
            .map_err(|e| format!("TCP_MD5SIG key for {}/{}: {e}", a.ip_text(), k.prefixlen))?;
    }
    Ok(())
}

/// The options a fresh socket of the same kind reports, to tell values the
/// user set from defaults.
fn fresh_defaults(family: u32, ty: u32, proto: u32) -> Option<(i32, i32, i32)> {
    let f = sk::socket(family, SockType(ty), SockFlags::SOCK_CLOEXEC, proto).ok()?;
    let rcv = sk::get_sol_socket_int(f.as_fd(), sk::SO_RCVBUF).ok()?;
    let snd = sk::get_sol_socket_int(f.as_fd(), sk::SO_SNDBUF).ok()?;
    let ttl = if family == AF_INET6 {
        inet::get_opt_int(f.as_fd(), SOL_IPV6, inet::IPV6_UNICAST_HOPS).ok()?
    } else {
        inet::get_opt_int(f.as_fd(), SOL_IP, inet::IP_TTL).ok()?
    };
    Some((rcv, snd, ttl))
}

/// `connected`: the socket has a peer (the kernel then tunes some options
/// itself, and they are not the user's).
pub(crate) fn read_opts(
    s: BorrowedFd<'_>,
    family: u32,
    ty: u32,
    proto: u32,
    connected: bool,
) -> std::result::Result<InetSkOpts, String> {
    let int = |level: u32, name: u32, what: &str| -> std::result::Result<i32, String> {
        inet::get_opt_int(s, level, name).map_err(|e| format!("read {what}: {e}"))
    };
    let (rcv0, snd0, ttl0) = fresh_defaults(family, ty, proto).unwrap_or((-1, -1, -1));
    let six = family == AF_INET6;
    let filter = match inet::get_filter(s) {
        Ok(f) => f,
        Err(Errno::EACCES) => return Err("has an eBPF socket filter: it cannot be read back".into()),
        Err(e) => return Err(format!("read its socket filter: {e}")),
    };
    let rcvbuf = int(SOL_SOCKET, sk::SO_RCVBUF, "SO_RCVBUF")?;
    let sndbuf = int(SOL_SOCKET, sk::SO_SNDBUF, "SO_SNDBUF")?;
    let ttl = if six {
        int(SOL_IPV6, inet::IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS")?
    } else {
        int(SOL_IP, inet::IP_TTL, "IP_TTL")?
    };
    let mut o = InetSkOpts {
        reuseaddr: int(SOL_SOCKET, inet::SO_REUSEADDR, "SO_REUSEADDR")? != 0,
        reuseport: int(SOL_SOCKET, inet::SO_REUSEPORT, "SO_REUSEPORT")? != 0,
        broadcast: int(SOL_SOCKET, inet::SO_BROADCAST, "SO_BROADCAST")? != 0,
        keepalive: int(SOL_SOCKET, inet::SO_KEEPALIVE, "SO_KEEPALIVE")? != 0,
        oobinline: int(SOL_SOCKET, inet::SO_OOBINLINE, "SO_OOBINLINE")? != 0,
        dontroute: int(SOL_SOCKET, inet::SO_DONTROUTE, "SO_DONTROUTE")? != 0,
        linger: inet::get_linger(s).map_err(|e| format!("read SO_LINGER: {e}"))?,
        priority: int(SOL_SOCKET, inet::SO_PRIORITY, "SO_PRIORITY")?,
        mark: int(SOL_SOCKET, inet::SO_MARK, "SO_MARK")? as u32,
        bind_dev: inet::get_bound_device(s).map_err(|e| format!("read SO_BINDTODEVICE: {e}"))?,
        rcvbuf: (rcvbuf != rcv0).then_some(rcvbuf as u32),
        sndbuf: (sndbuf != snd0).then_some(sndbuf as u32),
        rcvtimeo: sk::get_sol_socket_timeval(s, sk::SO_RCVTIMEO).map_err(|e| format!("read SO_RCVTIMEO: {e}"))?,
        sndtimeo: sk::get_sol_socket_timeval(s, sk::SO_SNDTIMEO).map_err(|e| format!("read SO_SNDTIMEO: {e}"))?,
        rcvlowat: int(SOL_SOCKET, sk::SO_RCVLOWAT, "SO_RCVLOWAT")?,
        peek_off: int(SOL_SOCKET, sk::SO_PEEK_OFF, "SO_PEEK_OFF").unwrap_or(-1),
        lock_filter: int(SOL_SOCKET, inet::SO_LOCK_FILTER, "SO_LOCK_FILTER")? != 0,
        filter,
        tos: if six { int(SOL_IPV6, inet::IPV6_TCLASS, "IPV6_TCLASS")? } else { int(SOL_IP, inet::IP_TOS, "IP_TOS")? },
        ttl: if ttl != ttl0 { ttl } else { -1 },
        freebind: if six {
            int(SOL_IPV6, inet::IPV6_FREEBIND, "IPV6_FREEBIND")? != 0
        } else {
            int(SOL_IP, inet::IP_FREEBIND, "IP_FREEBIND")? != 0
        },
        v6only: six && int(SOL_IPV6, inet::IPV6_V6ONLY, "IPV6_V6ONLY")? != 0,
        ..Default::default()
    };
    // IP-level options with no field of their own, where they differ from
    // a fresh socket of the same kind (an option the kernel does not report
    // for this kind is skipped on both sides).
    let fresh = sk::socket(family, SockType(ty), SockFlags::SOCK_CLOEXEC, proto)
        .map_err(|e| format!("a fresh socket to compare with: {e}"))?;
    let v6_list: &[(u32, u32)] = if six { IPV6_EXTRA } else { &[] };
    for &(level, name) in SOCK_EXTRA.iter().chain(IP_EXTRA).chain(v6_list) {
        // The kernel refuses multicast options on stream sockets.
        let multicast = matches!((level, name), (SOL_IP, 33 | 34 | 49) | (SOL_IPV6, 17..=19));
        if multicast && ty == SockType::SOCK_STREAM.0 {
            continue;
        }
        if let Ok(v) = inet::get_opt_int(s, level, name) {
            if inet::get_opt_int(fresh.as_fd(), level, name).ok() != Some(v) {
                o.ip_extra.push((level, name, v));
            }
        }
    }
    // SO_BUF_LOCK (Linux 5.14): setting a buffer size locks it, and the
    // restore sets sizes (and enlarges a connection's buffers to refill
    // its queues), so the dumped locks are always set again, last.
    if let Ok(v) = inet::get_opt_int(s, SOL_SOCKET, SO_BUF_LOCK) {
        o.ip_extra.push((SOL_SOCKET, SO_BUF_LOCK, v));
    }
    // UDP-Lite's checksum coverage, the same way.
    if proto == inet::IPPROTO_UDPLITE && ty == SockType::SOCK_DGRAM.0 {
        for name in [inet::UDPLITE_SEND_CSCOV, inet::UDPLITE_RECV_CSCOV] {
            let v = int(inet::SOL_UDPLITE, name, "UDPLITE_SEND/RECV_CSCOV")?;
            if inet::get_opt_int(fresh.as_fd(), inet::SOL_UDPLITE, name).ok() != Some(v) {
                o.ip_extra.push((inet::SOL_UDPLITE, name, v));
            }
        }
    }
    // Options read as bytes, the same way.
    // A raw socket of protocol TCP has no TCP options.
    let tcp = proto == inet::IPPROTO_TCP && ty == SockType::SOCK_STREAM.0;
    let raw_v6: &[(u32, u32, usize)] = if six { RAW_V6 } else { &[] };
    let raw_tcp: &[(u32, u32, usize)] = if tcp { RAW_TCP } else { &[] };
    for &(level, name, max) in RAW_IP.iter().chain(raw_v6).chain(raw_tcp) {
        if let Ok(v) = sk::get_sockopt_bytes(s, level, name, max) {
            if sk::get_sockopt_bytes(fresh.as_fd(), level, name, max).ok().as_ref() != Some(&v) {
                o.raw.push((level, name, v));
            }
        }
    }
    if tcp {
        o.nodelay = int(SOL_TCP, inet::TCP_NODELAY, "TCP_NODELAY")? != 0;
        o.cork = int(SOL_TCP, inet::TCP_CORK, "TCP_CORK")? != 0;
        o.keepidle = int(SOL_TCP, inet::TCP_KEEPIDLE, "TCP_KEEPIDLE")?;
        o.keepintvl = int(SOL_TCP, inet::TCP_KEEPINTVL, "TCP_KEEPINTVL")?;
        o.keepcnt = int(SOL_TCP, inet::TCP_KEEPCNT, "TCP_KEEPCNT")?;
        o.user_timeout = int(SOL_TCP, inet::TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT")? as u32;
        // The rest where it differs from a fresh socket of the same kind.
        for (name, what) in [
            (TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT"),
            (TCP_FASTOPEN, "TCP_FASTOPEN"),
            (TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT"),
        ] {
            let v = int(SOL_TCP, name, what)?;
            if inet::get_opt_int(fresh.as_fd(), SOL_TCP, name).ok() != Some(v) {
                o.tcp_extra.push((name, v));
            }
        }
        // A listener's or an unconnected socket's window clamp is the
        // user's (inherited by accepted connections), kept where set. A
        // connection's is the kernel's or the user's, with no telling them
        // apart (receive buffer tuning moves both): always kept, and set
        // again once the restored connection is live, so it is the same
        // whoever set it.
        let v = int(SOL_TCP, TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP")?;
        if connected || inet::get_opt_int(fresh.as_fd(), SOL_TCP, TCP_WINDOW_CLAMP).ok() != Some(v) {
            o.tcp_extra.push((TCP_WINDOW_CLAMP, v));
        }
        let cc = |fd: BorrowedFd<'_>| {
            sk::get_sockopt_bytes(fd, SOL_TCP, TCP_CONGESTION, 16)
                .map(|b| String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or(&[])).into_owned())
        };
        let mine = cc(s).map_err(|e| format!("read TCP_CONGESTION: {e}"))?;
        if cc(fresh.as_fd()).ok().as_deref() != Some(mine.as_str()) {
            o.congestion = Some(mine);
        }
    }
    Ok(o)
}

/// The multicast groups the socket joined, with their source filters.
/// Asks MCAST_MSFILTER for every group some socket of the namespace
/// joined (/proc/net/igmp, igmp6): the kernel answers only for a member.
pub(crate) fn multicast_memberships(pid: Pid, s: BorrowedFd<'_>) -> Vec<McastMembership> {
    let (v4, v6) = crate::proc::net::joined_groups(pid);
    let groups = v4
        .into_iter()
        .map(|(i, g)| (i, inet::InetAddr::v4(g.to_ne_bytes(), 0)))
        .chain(v6.into_iter().map(|(i, g)| (i, inet::InetAddr::v6(g, 0))));
    let mut out = Vec::new();
    for (ifindex, g) in groups {
        if out.iter().any(|m: &McastMembership| m.ifindex == ifindex && m.family == g.family && m.group == g.addr) {
            continue;
        }
        if let Some((fmode, sources)) = inet::mcast_filter(s, ifindex, &g) {
            out.push(McastMembership {
                family: g.family,
                ifindex,
                group: g.addr,
                fmode,
                sources: sources.iter().map(|a| a.addr).collect(),
            });
        }
    }
    out
}

/// Joins the groups of `u` again, with their source filters.
pub(crate) fn join_groups(fd: BorrowedFd<'_>, u: &InetSkEntry) -> std::result::Result<(), String> {
    for m in &u.opts.mcast {
        let at = |a: [u8; 16]| SkAddr { family: m.family, addr: a, port: 0, flowinfo: 0, scope_id: 0 }.to_sys();
        let g = at(m.group);
        let sources: Vec<inet::InetAddr> = m.sources.iter().map(|&a| at(a)).collect();
        inet::mcast_join(fd, m.ifindex, &g, m.fmode, &sources)
            .map_err(|e| format!("join multicast group {} on interface {}: {e}", g.ip_text(), m.ifindex))?;
    }
    Ok(())
}

/// SO_BUF_LOCK: which buffer sizes the kernel may no longer tune.
const SO_BUF_LOCK: u32 = 72;

/// (level, option) of the integer socket-level options kept where set:
/// SO_NO_CHECK, SO_PASSCRED, SO_TIMESTAMP, SO_PASSSEC, SO_TIMESTAMPNS, SO_TIMESTAMPING
/// (its flags), SO_RXQ_OVFL, SO_WIFI_STATUS, SO_NOFCS,
/// SO_SELECT_ERR_QUEUE, SO_BUSY_POLL, SO_MAX_PACING_RATE, SO_ZEROCOPY,
/// SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW, SO_PREFER_BUSY_POLL,
/// SO_BUSY_POLL_BUDGET, SO_RCVMARK, SO_PASSPIDFD. (SO_INCOMING_CPU is
/// the kernel's: it follows the traffic.)
pub(crate) const SOCK_EXTRA: &[(u32, u32)] = &[
    (SOL_SOCKET, 11),
    (SOL_SOCKET, 16),
    (SOL_SOCKET, 29),
    (SOL_SOCKET, 34),
    (SOL_SOCKET, 35),
    (SOL_SOCKET, 37),
    (SOL_SOCKET, 40),
    (SOL_SOCKET, 41),
    (SOL_SOCKET, 43),
    (SOL_SOCKET, 45),
    (SOL_SOCKET, 46),
    (SOL_SOCKET, 47),
    (SOL_SOCKET, 60),
    (SOL_SOCKET, 63),
    (SOL_SOCKET, 64),
    (SOL_SOCKET, 69),
    (SOL_SOCKET, 70),
    (SOL_SOCKET, 75),
    (SOL_SOCKET, 76),
];

/// Why a socket-level integer option of [`SOCK_EXTRA`] with value `v`
/// cannot be set again as it is, if it cannot: SO_TIMESTAMPING bound to a
/// PTP clock (SOF_TIMESTAMPING_BIND_PHC) keeps the clock's index outside
/// the flags, and would come back bound to clock 0.
pub(crate) fn unrestorable_sock_int(name: u32, v: i32) -> Option<String> {
    const SO_TIMESTAMPING: u32 = 37;
    const SOF_TIMESTAMPING_BIND_PHC: i32 = 1 << 15;
    (name == SO_TIMESTAMPING && v & SOF_TIMESTAMPING_BIND_PHC != 0)
        .then(|| "SO_TIMESTAMPING is bound to a PTP clock (SOF_TIMESTAMPING_BIND_PHC): not supported".to_string())
}

/// (level, option, longest value) of the options kept as bytes where they
/// differ from a fresh socket's: IP_OPTIONS, IP_MULTICAST_IF (its
/// address: an interface chosen by index alone reads back as 0.0.0.0).
const RAW_IP: &[(u32, u32, usize)] = &[(SOL_IP, 4, 40), (SOL_IP, 32, 4)];
/// IPv6 sticky headers: IPV6_HOPOPTS, IPV6_RTHDRDSTOPTS, IPV6_RTHDR,
/// IPV6_DSTOPTS (a header is at most 256 units of 8 bytes).
const RAW_V6: &[(u32, u32, usize)] =
    &[(SOL_IPV6, 54, 2048), (SOL_IPV6, 55, 2048), (SOL_IPV6, 57, 2048), (SOL_IPV6, 59, 2048)];
/// TCP_FASTOPEN_KEY: a socket's own keys (a fresh one reports the
/// namespace's).
const RAW_TCP: &[(u32, u32, usize)] = &[(SOL_TCP, 33, 32)];

/// (level, option) of the integer IP options kept where set: IP_PKTINFO,
/// IP_MTU_DISCOVER, IP_RECVERR, IP_RECVTTL, IP_RECVTOS, IP_TRANSPARENT,
/// IP_RECVORIGDSTADDR, IP_BIND_ADDRESS_NO_PORT, IP_MULTICAST_TTL,
/// IP_MULTICAST_LOOP, IP_MULTICAST_ALL, IP_UNICAST_IF.
const IP_EXTRA: &[(u32, u32)] = &[
    (SOL_IP, 8),
    (SOL_IP, 10),
    (SOL_IP, 11),
    (SOL_IP, 12),
    (SOL_IP, 13),
    (SOL_IP, 19),
    (SOL_IP, 20),
    (SOL_IP, 24),
    (SOL_IP, 33),
    (SOL_IP, 34),
    (SOL_IP, 49),
    (SOL_IP, 50),
];
/// The same for IPv6 sockets: IPV6_MULTICAST_IF, IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP,
/// IPV6_MTU_DISCOVER, IPV6_RECVERR, IPV6_RECVPKTINFO, IPV6_RECVHOPLIMIT,
/// IPV6_RECVTCLASS, IPV6_RECVORIGDSTADDR, IPV6_TRANSPARENT, IPV6_UNICAST_IF.
const IPV6_EXTRA: &[(u32, u32)] = &[
    (SOL_IPV6, 17),
    (SOL_IPV6, 18),
    (SOL_IPV6, 19),
    (SOL_IPV6, 23),
    (SOL_IPV6, 25),
    (SOL_IPV6, 49),
    (SOL_IPV6, 51),
    (SOL_IPV6, 66),
    (SOL_IPV6, 74),
    (SOL_IPV6, 75),
    (SOL_IPV6, 76),
];

const TCP_DEFER_ACCEPT: u32 = 9;
const TCP_WINDOW_CLAMP: u32 = 10;
const TCP_CONGESTION: u32 = 13;
const TCP_FASTOPEN: u32 = 23;
const TCP_NOTSENT_LOWAT: u32 = 25;

/// Reads a connection in repair mode (left on: see the module docs): its
/// state, as it is once nothing reaches it any more, and its stream.
/// `peek_off` is the task's SO_PEEK_OFF, put back after reading.
/// Puts a connection into repair mode and keeps it silent from now on
/// (see [`DROP_ALL`]; a locked filter stays), held in `out` to be let go
/// or handed over with the dump's end; a descriptor of it to read it.
fn hold_in_repair(s: OwnedFd, o: &InetSkOpts, out: &mut FileImages) -> std::result::Result<OwnedFd, String> {
    let (reuseaddr, own_filter) = (o.reuseaddr, o.filter.clone());
    let fd = s.as_fd();
    match sk::set_tcp_repair(fd, sk::TCP_REPAIR_ON) {
        Ok(()) => {}
        Err(Errno::EPERM) => return Err("TCP_REPAIR needs CAP_NET_ADMIN".into()),
        Err(e) => return Err(format!("TCP_REPAIR: {e}")),
    }
    let fdc = s.try_clone().map_err(|e| format!("dup: {e}"))?;
    let filter = match inet::attach_filter(fd, &DROP_ALL) {
        Ok(()) => Some(own_filter),
        Err(e) => {
            log::warn!("cannot keep the connection silent (SO_ATTACH_FILTER: {e})");
            None
        }
    };
    out.inet_repair.push(Repaired { fd: s, reuseaddr, filter });
    Ok(fdc)
}

/// A connection still opening (SYN-SENT), held silent so that a SYN-ACK
/// arriving now cannot complete it behind the dump's back: its initial
/// sequence number plus one (write_seq).
fn dump_syn_sent(s: OwnedFd, o: &InetSkOpts, out: &mut FileImages) -> std::result::Result<u32, String> {
    let fdc = hold_in_repair(s, o, out)?;
    let fd = fdc.as_fd();
    let state = inet::tcp_info(fd).map_err(|e| format!("TCP_INFO: {e}"))?.state as u32;
    if state != TCP_SYN_SENT {
        return Err(format!("changed to state {} while being dumped", state_text(state)));
    }
    inet::set_opt_int(fd, SOL_TCP, inet::TCP_REPAIR_QUEUE, inet::TCP_SEND_QUEUE)
        .map_err(|e| format!("TCP_REPAIR_QUEUE: {e}"))?;
    Ok(inet::get_opt_int(fd, SOL_TCP, inet::TCP_QUEUE_SEQ).map_err(|e| format!("TCP_QUEUE_SEQ: {e}"))? as u32)
}

/// The receive queue of a connection in repair mode: its next sequence
/// number expected and what the task has not read yet (peeked from the
/// start, whatever the task's SO_PEEK_OFF, which is put back).
fn repair_recv_queue(fd: BorrowedFd<'_>, peek_off: i32) -> std::result::Result<(u32, Vec<u8>), String> {
    inet::set_opt_int(fd, SOL_TCP, inet::TCP_REPAIR_QUEUE, inet::TCP_RECV_QUEUE)
        .map_err(|e| format!("TCP_REPAIR_QUEUE: {e}"))?;
    let rcv_seq =
        inet::get_opt_int(fd, SOL_TCP, inet::TCP_QUEUE_SEQ).map_err(|e| format!("TCP_QUEUE_SEQ: {e}"))? as u32;
    let inq_len = inet::queue_ioctl(fd, inet::SIOCINQ).map_err(|e| format!("SIOCINQ: {e}"))? as usize;
    if peek_off >= 0 {
        // A peek would start at the task's offset: from the start instead.
        sk::set_sol_socket_int(fd, sk::SO_PEEK_OFF, -1).map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
    }
    let inq = peek_all(fd, inq_len);
    if peek_off >= 0 {
        sk::set_sol_socket_int(fd, sk::SO_PEEK_OFF, peek_off).map_err(|e| format!("put SO_PEEK_OFF back: {e}"))?;
    }
    let inq = inq.map_err(|e| format!("read its receive queue: {e}"))?;
    if inq.len() != inq_len {
        return Err(format!("read {} of the {inq_len} bytes in its receive queue", inq.len()));
    }
    Ok((rcv_seq, inq))
}

/// A connection that ended (CLOSE) and is still held: its receive queue
/// and sequence numbers, read in repair mode, which it leaves again at
/// once (nothing reaches a connection that ended: there is nothing to
/// keep silent). Its send queue is empty or was discarded by a reset: the
/// task cannot see it.
fn dump_ended(fd: BorrowedFd<'_>, o: &InetSkOpts) -> std::result::Result<TcpStream, String> {
    match sk::set_tcp_repair(fd, sk::TCP_REPAIR_ON) {
        Ok(()) => {}
        Err(Errno::EPERM) => return Err("TCP_REPAIR needs CAP_NET_ADMIN".into()),
        Err(e) => return Err(format!("TCP_REPAIR: {e}")),
    }
    let read = || -> std::result::Result<TcpStream, String> {
        let info = inet::tcp_info(fd).map_err(|e| format!("TCP_INFO: {e}"))?;
        if info.state as u32 != TCP_CLOSE {
            return Err(format!("changed to state {} while being dumped", state_text(info.state as u32)));
        }
        let get = |name: u32, what: &str| inet::get_opt_int(fd, SOL_TCP, name).map_err(|e| format!("{what}: {e}"));
        let mss = get(inet::TCP_MAXSEG, "TCP_MAXSEG")? as u32;
        let (rcv_seq, inq) = repair_recv_queue(fd, o.peek_off)?;
        inet::set_opt_int(fd, SOL_TCP, inet::TCP_REPAIR_QUEUE, inet::TCP_SEND_QUEUE)
            .map_err(|e| format!("TCP_REPAIR_QUEUE: {e}"))?;
        let snd_seq = get(inet::TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ")? as u32;
        Ok(TcpStream {
            snd_seq,
            rcv_seq,
            inq,
            mss,
            wscale: (info.options & inet::TCPI_OPT_WSCALE != 0).then(|| (info.snd_wscale(), info.rcv_wscale())),
            sack: info.options & inet::TCPI_OPT_SACK != 0,
            timestamps: info.options & inet::TCPI_OPT_TIMESTAMPS != 0,
            tsval: get(inet::TCP_TIMESTAMP, "TCP_TIMESTAMP")? as u32,
            ..Default::default()
        })
    };
    let r = read();
    let _ = inet::set_opt_int(fd, SOL_TCP, inet::TCP_REPAIR_QUEUE, inet::TCP_NO_QUEUE);
    let off = sk::set_tcp_repair(fd, sk::TCP_REPAIR_OFF_NO_WP).map_err(|e| format!("leave repair mode: {e}"));
    // Leaving repair mode clears SO_REUSEADDR.
    if o.reuseaddr {
        inet::set_opt_int(fd, SOL_SOCKET, inet::SO_REUSEADDR, 1).map_err(|e| format!("put SO_REUSEADDR back: {e}"))?;
    }
    off?;
    r
}

fn dump_stream(s: OwnedFd, o: &InetSkOpts, out: &mut FileImages) -> std::result::Result<(u32, TcpStream), String> {
    let fdc = hold_in_repair(s, o, out)?;
    let fd = fdc.as_fd();
    let info = inet::tcp_info(fd).map_err(|e| format!("TCP_INFO: {e}"))?;
    let state = info.state as u32;
    let Some(fins) = Fins::of(state).filter(|_| state != TCP_CLOSE) else {
        return Err(format!("changed to state {} while being dumped", state_text(state)));
    };
    let get = |name: u32, what: &str| inet::get_opt_int(fd, SOL_TCP, name).map_err(|e| format!("{what}: {e}"));
    let queue = |q: i32| {
        inet::set_opt_int(fd, SOL_TCP, inet::TCP_REPAIR_QUEUE, q).map_err(|e| format!("TCP_REPAIR_QUEUE: {e}"))
    };
    let mss = get(inet::TCP_MAXSEG, "TCP_MAXSEG")? as u32;
    let ioctl = |req: usize, what: &str| inet::queue_ioctl(fd, req).map_err(|e| format!("{what}: {e}"));
    // The receive queue: what the task has not read yet.
    let (rcv_seq, inq) = repair_recv_queue(fd, o.peek_off)?;
    // The send queue: written, not acknowledged (sent or not). The
    // sequence numbers and lengths count a FIN not acknowledged yet; a
    // peek gives the bytes alone.
    queue(inet::TCP_SEND_QUEUE)?;
    let snd_seq = get(inet::TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ")? as u32;
    let fin_queued = (fins.sent && !fins.acked) as usize;
    let outq_len = (ioctl(inet::SIOCOUTQ, "SIOCOUTQ")? as usize).saturating_sub(fin_queued);
    let unsent = ioctl(inet::SIOCOUTQNSD, "SIOCOUTQNSD")?;
    let outq = peek_all(fd, outq_len).map_err(|e| format!("read its send queue: {e}"))?;
    if outq.len() != outq_len {
        return Err(format!("read {} of the {outq_len} bytes in its send queue", outq.len()));
    }
    queue(inet::TCP_NO_QUEUE)?;
    let window = inet::get_repair_window(fd).map_err(|e| format!("TCP_REPAIR_WINDOW: {e}"))?;
    let tsval = get(inet::TCP_TIMESTAMP, "TCP_TIMESTAMP")? as u32;
    let wscale = (info.options & inet::TCPI_OPT_WSCALE != 0).then(|| (info.snd_wscale(), info.rcv_wscale()));
    Ok((
        state,
        TcpStream {
            snd_seq,
            rcv_seq,
            unsent: unsent.min(outq.len() as u32),
            inq,
            outq,
            mss,
            wscale,
            sack: info.options & inet::TCPI_OPT_SACK != 0,
            timestamps: info.options & inet::TCPI_OPT_TIMESTAMPS != 0,
            tsval,
            window: Some([window.snd_wl1, window.snd_wnd, window.max_window, window.rcv_wnd, window.rcv_wup]),
        },
    ))
}

/// One MSG_PEEK of up to `len` bytes (a repair queue is read whole by one
/// call).
fn peek_all(fd: BorrowedFd<'_>, len: usize) -> crate::sys::Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; len];
    let n = sk::recv(fd, &mut buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT)?;
    buf.truncate(n);
    Ok(buf)
}

/// Reads the datagrams queued on a UDP socket without consuming them;
/// SO_PEEK_OFF is put back as it was, whatever happens.
fn peek_datagrams(s: BorrowedFd<'_>, family: u32) -> std::result::Result<Vec<Datagram>, String> {
    let old = sk::get_sol_socket_int(s, sk::SO_PEEK_OFF).map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
    let r = peek_datagrams_from_start(s, family);
    let back = sk::set_sol_socket_int(s, sk::SO_PEEK_OFF, old);
    let q = r?;
    back.map_err(|e| format!("put SO_PEEK_OFF back: {e}"))?;
    Ok(q)
}

fn peek_datagrams_from_start(s: BorrowedFd<'_>, family: u32) -> std::result::Result<Vec<Datagram>, String> {
    if inet::queue_ioctl(s, inet::SIOCINQ).unwrap_or(0) == 0 && !has_datagram(s) {
        return Ok(Vec::new());
    }
    sk::set_sol_socket_int(s, sk::SO_PEEK_OFF, 0).map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
    let mut q = Vec::new();
    let mut buf = vec![0u8; UDP_BUF];
    let flags = (MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC).bits();
    for _ in 0..10_000_000 {
        let (n, from) = match inet::recv_from(s, &mut buf, flags) {
            Ok(r) => r,
            Err(Errno::EAGAIN) => break,
            Err(e) => return Err(format!("read its queue: {e}")),
        };
        if n == 0 {
            return Err("a zero-length datagram is queued: not supported yet".into());
        }
        if n > buf.len() {
            return Err(format!("a queued datagram of {n} bytes is larger than UDP allows"));
        }
        let from =
            from.filter(|a| a.family == family || a.family == AF_INET).ok_or("a queued datagram has no sender")?;
        q.push(Datagram { from: SkAddr::from_sys(from), data: buf[..n].to_vec() });
    }
    Ok(q)
}

/// Whether a datagram (maybe empty) is queued.
fn has_datagram(s: BorrowedFd<'_>) -> bool {
    let mut b = [0u8; 1];
    inet::recv_from(s, &mut b, (MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT).bits()).is_ok()
}

/// Creates every TCP and UDP socket of the images in the engine.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    let mut socks: Vec<InetSkEntry> = images.inet.iter().filter(|u| !out.has(u.id)).cloned().collect();
    if socks.is_empty() {
        return Ok(());
    }
    let name = |u: &InetSkEntry| {
        format!(
            "{} ({} socket:[{}], {} {})",
            cx.who(u.id),
            proto_text(u.family, u.proto),
            u.ino,
            state_text(u.state),
            ends(u.local, u.peer)
        )
    };
    let err = |u: &InetSkEntry, msg: String| Error::new(format!("{}: {msg}", name(u)));
    if cx.tcp_close {
        for u in socks.iter_mut().filter(|u| u.tcp.is_some() && u.state != TCP_CLOSE) {
            log::debug!("{}: restored closed (--tcp-close)", name(u));
            close_entry(u);
        }
    }
    // (One that ended talks to nobody: it needs no --tcp-established.)
    if let Some(u) = socks.iter().find(|u| u.tcp.is_some() && u.state != TCP_CLOSE) {
        if !cx.tcp_established {
            return Err(Error::refuse_global(format!("{}: a TCP connection: restore with --tcp-established", name(u))));
        }
    }
    // Before anything is touched: a connection in a state crtools does not
    // build is a bad image.
    if let Some(u) = socks.iter().find(|u| {
        u.tcp.is_some() && (u.proto != inet::IPPROTO_TCP || (Fins::of(u.state).is_none() && u.state != TCP_SYN_SENT))
    }) {
        return Err(err(u, "a repaired connection in a state crtools does not restore".into()));
    }
    // The dump's connections, held silent since, come back. Each still in
    // its dumped state is the restored connection itself: it never leaves
    // the kernel's tables, so no segment of its peer meets a closed port.
    // The others are closed (silently: repair mode) before sockets are
    // created, and built from the image.
    let mut held = cx.images_dir.as_deref().map(unlock).unwrap_or_default();
    continue_clocks(&held, &mut socks);
    let mut adopted = adopt_held(&mut held, &socks);
    // Listeners first: a repaired connection on the same port must not
    // keep a listener without SO_REUSEADDR from binding.
    let rank = |u: &InetSkEntry| match (u.state, u.tcp.is_some()) {
        (TCP_LISTEN, _) => 0,
        (_, false) => 1,
        (_, true) => 2,
    };
    let mut order: Vec<&InetSkEntry> = socks.iter().collect();
    order.sort_by_key(|u| rank(u));
    drop(held);
    let shared = shared_ports(&socks);
    let mut made: HashMap<u32, OwnedFd> = HashMap::new();
    for u in order {
        if let Some(fd) = adopted.remove(&u.id) {
            log::debug!("{}: the connection held since the dump", name(u));
            made.insert(u.id, fd);
            continue;
        }
        let fd = sk::socket(u.family, SockType(u.ty), SockFlags::SOCK_CLOEXEC, u.proto)
            .map_err(|e| err(u, format!("socket: {e}")))?;
        // Bound beside others to the same port with neither SO_REUSEPORT
        // nor SO_REUSEADDR now: it had SO_REUSEPORT when it bound, and
        // cleared it since (it stays in the group; zdtm
        // socket-tcp-reuseport). Bound with it, then cleared again.
        let rejoin = u.tcp.is_none() && !u.opts.reuseport && !u.opts.reuseaddr && shared.contains(&port_key(u));
        if rejoin {
            let mut again = u.clone();
            again.opts.reuseport = true;
            create(fd.as_fd(), &again).map_err(|m| err(u, m))?;
            inet::set_opt_int(fd.as_fd(), SOL_SOCKET, inet::SO_REUSEPORT, 0)
                .map_err(|e| err(u, format!("clear SO_REUSEPORT: {e}")))?;
        } else {
            create(fd.as_fd(), u).map_err(|m| err(u, m))?;
        }
        made.insert(u.id, fd);
    }
    // Queued datagrams, from their senders, before any UDP socket connects
    // (a connected socket takes datagrams from its peer only).
    let mut temps: HashMap<(u32, SkAddr), Option<OwnedFd>> = HashMap::new();
    for u in socks.iter().filter(|u| !u.queue.is_empty()) {
        refill(u, &socks, &made, &mut temps).map_err(|m| err(u, m))?;
    }
    drop(temps);
    for u in &socks {
        let fd = made[&u.id].as_fd();
        if is_udp(u.proto) {
            if let Some(p) = u.peer {
                inet::connect(fd, &p.to_sys()).map_err(|e| err(u, format!("connect to {p}: {e}")))?;
            }
        }
        if u.tcp.is_none() {
            set_opts(fd, u).map_err(|m| err(u, m))?;
            shutdown(fd, u).map_err(|m| err(u, m))?;
        }
        let status = crate::sys::fs::OpenFlags::from_bits_retain((u.flags & OpenFlags::O_NONBLOCK).bits());
        crate::sys::fs::fcntl_setfl(fd, status).map_err(|e| err(u, format!("F_SETFL: {e}")))?;
    }
    for u in &socks {
        let fd = made.remove(&u.id).expect("made above");
        out.add(u.id, fd);
    }
    // Once every task exists: repaired connections go live.
    let repaired: Vec<InetSkEntry> = socks.into_iter().filter(|u| u.tcp.is_some()).collect();
    if !repaired.is_empty() {
        let names: Vec<String> = repaired.iter().map(name).collect();
        out.defer(Box::new(move |opened: &Opened| {
            for (u, n) in repaired.iter().zip(&names) {
                let fd = opened.get(u.id).ok_or_else(|| Error::new(format!("{n}: was not created")))?;
                go_live(fd, u).map_err(|m| Error::new(format!("{n}: {m}")))?;
            }
            Ok(())
        }));
    }
    Ok(())
}

/// The held connections that are the image's connections, unchanged
/// since the dump (same ends, same state, still in repair mode and silent,
/// filter not locked), taken out of `held` by the image's id. Nothing
/// reached them since they were read (their filter dropped every segment,
/// the task was gone): their queues, sequence numbers, window and options
/// are the image's. A connection still opening is built again (it
/// connects anew).
fn adopt_held(held: &mut Vec<OwnedFd>, socks: &[InetSkEntry]) -> HashMap<u32, OwnedFd> {
    let mut adopted = HashMap::new();
    for fd in std::mem::take(held) {
        let f = fd.as_fd();
        let same = |u: &&InetSkEntry| -> bool {
            let (Ok(l), Ok(p), Ok(info)) = (inet::local_addr(f), inet::peer_addr(f), inet::tcp_info(f)) else {
                return false;
            };
            u.tcp.is_some()
                && u.state != TCP_SYN_SENT
                && u.local == Some(SkAddr::from_sys(l))
                && u.peer == Some(SkAddr::from_sys(p))
                && info.state as u32 == u.state
                && inet::get_opt_int(f, SOL_TCP, inet::TCP_REPAIR).is_ok_and(|r| r == 1)
                && inet::get_opt_int(f, SOL_SOCKET, inet::SO_LOCK_FILTER).is_ok_and(|l| l == 0)
        };
        match socks.iter().find(same) {
            Some(u) if !adopted.contains_key(&u.id) => {
                adopted.insert(u.id, fd);
            }
            _ => held.push(fd),
        }
    }
    adopted
}

/// A held connection's timestamp clock kept running (and it may have
/// retransmitted while held): the restored one continues from where the
/// held one is, or its peer would drop its segments as old (PAWS).
fn continue_clocks(held: &[OwnedFd], socks: &mut [InetSkEntry]) {
    for fd in held {
        let fd = fd.as_fd();
        let (Ok(l), Ok(p), Ok(ts)) =
            (inet::local_addr(fd), inet::peer_addr(fd), inet::get_opt_int(fd, SOL_TCP, inet::TCP_TIMESTAMP))
        else {
            continue;
        };
        let (l, p) = (SkAddr::from_sys(l), SkAddr::from_sys(p));
        for u in socks.iter_mut().filter(|u| u.local == Some(l) && u.peer == Some(p)) {
            if let Some(t) = u.tcp.as_mut() {
                if (ts as u32).wrapping_sub(t.tsval) as i32 > 0 {
                    t.tsval = ts as u32;
                }
            }
        }
    }
}

/// What sockets sharing a port have in common: family, protocol, local
/// address and port.
fn port_key(u: &InetSkEntry) -> (u32, u32, Option<SkAddr>) {
    (u.family, u.proto, u.local)
}

/// The ports that more than one socket (not a connection) is bound to.
fn shared_ports(socks: &[InetSkEntry]) -> std::collections::HashSet<(u32, u32, Option<SkAddr>)> {
    let mut seen = std::collections::HashSet::new();
    let mut shared = std::collections::HashSet::new();
    for u in socks.iter().filter(|u| u.tcp.is_none() && u.local.is_some_and(|a| a.port != 0)) {
        if !seen.insert(port_key(u)) {
            shared.insert(port_key(u));
        }
    }
    shared
}

/// Options that must be in place before bind.
fn pre_bind(fd: BorrowedFd<'_>, u: &InetSkEntry) -> std::result::Result<(), String> {
    pre_bind_opts(fd, u.family, &u.opts, u.family == AF_INET6, true)
}

/// The options of `o` that must be in place before a socket of `family`
/// binds (shared with raw and ping sockets): IPV6_V6ONLY where the kernel
/// still takes it (`v6only`), free bind, SO_REUSEADDR (`reuseaddr`) and
/// SO_REUSEPORT, the bound device, the mark and the buffer sizes.
pub(crate) fn pre_bind_opts(
    fd: BorrowedFd<'_>,
    family: u32,
    o: &InetSkOpts,
    v6only: bool,
    reuseaddr: bool,
) -> std::result::Result<(), String> {
    let set = |level: u32, name: u32, v: i32, what: &str| {
        inet::set_opt_int(fd, level, name, v).map_err(|e| format!("{what}: {e}"))
    };
    if v6only {
        set(SOL_IPV6, inet::IPV6_V6ONLY, o.v6only as i32, "IPV6_V6ONLY")?;
    }
    if o.freebind {
        if family == AF_INET6 {
            set(SOL_IPV6, inet::IPV6_FREEBIND, 1, "IPV6_FREEBIND")?;
        } else {
            set(SOL_IP, inet::IP_FREEBIND, 1, "IP_FREEBIND")?;
        }
    }
    if reuseaddr && o.reuseaddr {
        set(SOL_SOCKET, inet::SO_REUSEADDR, 1, "SO_REUSEADDR")?;
    }
    if o.reuseport {
        set(SOL_SOCKET, inet::SO_REUSEPORT, 1, "SO_REUSEPORT")?;
    }
    if !o.bind_dev.is_empty() {
        inet::set_opt_bytes(fd, SOL_SOCKET, inet::SO_BINDTODEVICE, &o.bind_dev)
            .map_err(|e| format!("SO_BINDTODEVICE {}: {e}", String::from_utf8_lossy(&o.bind_dev)))?;
    }
    if o.mark != 0 {
        set(SOL_SOCKET, inet::SO_MARK, o.mark as i32, "SO_MARK")?;
    }
    // Buffer sizes before any queue is refilled (getsockopt reported
    // twice what was set; FORCE: not capped by rmem_max/wmem_max).
    if let Some(b) = o.rcvbuf {
        sk::set_so_rcvbufforce(fd, b / 2).map_err(|e| format!("SO_RCVBUFFORCE: {e}"))?;
    }
    if let Some(b) = o.sndbuf {
        sk::set_so_sndbufforce(fd, b / 2).map_err(|e| format!("SO_SNDBUFFORCE: {e}"))?;
    }
    Ok(())
}

/// Creates the socket's binding and state: bound, listening, or a repaired
/// connection with its queues.
fn create(fd: BorrowedFd<'_>, u: &InetSkEntry) -> std::result::Result<(), String> {
    // Before any segment: a peer that signs expects every one signed.
    add_md5_keys(fd, u)?;
    if let (Some(t), TCP_SYN_SENT) = (&u.tcp, u.state) {
        return prepare_syn_sent(fd, u, t);
    }
    if let Some(t) = &u.tcp {
        // Silent until it goes live, but for crtools' own segments (SILENT).
        inet::attach_filter(fd, &SILENT).map_err(|e| format!("SO_ATTACH_FILTER: {e}"))?;
        pre_bind(fd, u)?;
        // After SO_REUSEADDR: repair mode's forced reuse (sharing the
        // listener's port) is what SO_REUSEADDR would overwrite.
        sk::set_tcp_repair(fd, sk::TCP_REPAIR_ON).map_err(|e| format!("TCP_REPAIR: {e}"))?;
        return repair_connection(fd, u, t);
    }
    pre_bind(fd, u)?;
    if u.proto == inet::IPPROTO_TCP && !u.opts.reuseaddr {
        // Connections the dead tree closed may linger in TIME-WAIT on this
        // port; they would keep it from binding. Its own value is set
        // again below (set_opts): only the bind sees this one.
        inet::set_opt_int(fd, SOL_SOCKET, inet::SO_REUSEADDR, 1).map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    }
    if let Some(a) = u.local {
        match inet::bind(fd, &a.to_sys()) {
            // Bound while free bind was on, which it cleared since (zdtm
            // sk-freebind-false): bound the same way, then cleared again.
            Err(crate::sys::Errno::EADDRNOTAVAIL) if !u.opts.freebind => {
                let (level, name) =
                    if u.family == AF_INET6 { (SOL_IPV6, inet::IPV6_FREEBIND) } else { (SOL_IP, inet::IP_FREEBIND) };
                let set = |v: i32| inet::set_opt_int(fd, level, name, v).map_err(|e| format!("free bind: {e}"));
                set(1)?;
                inet::bind(fd, &a.to_sys()).map_err(|e| format!("bind to {a} (free bind): {e}"))?;
                set(0)?;
            }
            r => r.map_err(|e| format!("bind to {a}: {e}"))?,
        }
    }
    if u.state == TCP_LISTEN {
        sk::listen(fd, u.backlog as i32).map_err(|e| format!("listen: {e}"))?;
    }
    Ok(())
}

/// A connection that was opening: bound to its local address, with its
/// initial sequence number, to connect (and send its SYN again, the same
/// one for the peer) once every task exists ([`go_live`]).
fn prepare_syn_sent(fd: BorrowedFd<'_>, u: &InetSkEntry, t: &TcpStream) -> std::result::Result<(), String> {
    let Some(local) = u.local else { return Err("a connection without its local address".into()) };
    pre_bind(fd, u)?;
    // Repair mode: the sequence number can be set, and the port taken even
    // from a connection of the dead tree lingering on it.
    sk::set_tcp_repair(fd, sk::TCP_REPAIR_ON).map_err(|e| format!("TCP_REPAIR: {e}"))?;
    inet::bind(fd, &local.to_sys()).map_err(|e| format!("bind to {local}: {e}"))?;
    let set =
        |name: u32, v: i32, what: &str| inet::set_opt_int(fd, SOL_TCP, name, v).map_err(|e| format!("{what}: {e}"));
    set(inet::TCP_REPAIR_QUEUE, inet::TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE")?;
    // write_seq counts the SYN: the initial sequence number is one less,
    // and connect outside repair mode starts from it.
    set(inet::TCP_QUEUE_SEQ, t.snd_seq.wrapping_sub(1) as i32, "TCP_QUEUE_SEQ (send)")?;
    sk::set_tcp_repair(fd, sk::TCP_REPAIR_OFF).map_err(|e| format!("leave repair mode: {e}"))
}

/// Builds a connection in repair mode: as if established, with the
/// sequence numbers before its FINs, then taken to its state.
fn repair_connection(fd: BorrowedFd<'_>, u: &InetSkEntry, t: &TcpStream) -> std::result::Result<(), String> {
    let (Some(local), Some(peer)) = (u.local, u.peer) else {
        return Err("a connection without both addresses".into());
    };
    let fins = Fins::of(u.state).ok_or("a connection in a state crtools does not restore")?;
    // A FIN takes one sequence number; the dump's numbers count the FINs
    // already sent and received.
    let snd_seq = t.snd_seq.wrapping_sub(fins.sent as u32);
    let rcv_seq = t.rcv_seq.wrapping_sub(fins.received as u32);
    let snd_una = snd_seq.wrapping_sub(t.outq.len() as u32);
    let set =
        |name: u32, v: i32, what: &str| inet::set_opt_int(fd, SOL_TCP, name, v).map_err(|e| format!("{what}: {e}"));
    set(inet::TCP_REPAIR_QUEUE, inet::TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE")?;
    set(inet::TCP_QUEUE_SEQ, rcv_seq.wrapping_sub(t.inq.len() as u32) as i32, "TCP_QUEUE_SEQ (receive)")?;
    set(inet::TCP_REPAIR_QUEUE, inet::TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE")?;
    set(inet::TCP_QUEUE_SEQ, snd_una as i32, "TCP_QUEUE_SEQ (send)")?;
    inet::bind(fd, &local.to_sys()).map_err(|e| format!("bind to {local}: {e}"))?;
    // The MSS the connection computes at connect comes from this clamp (the
    // repair option below comes too late for it: segments would stay at
    // the 536-byte default). TCP_MAXSEG takes at most 32767; it is cleared
    // again once connected.
    set(inet::TCP_MAXSEG, t.mss.clamp(88, 32767) as i32, "TCP_MAXSEG")?;
    // In repair mode connect sends nothing: the socket is ESTABLISHED at once.
    inet::connect(fd, &peer.to_sys()).map_err(|e| format!("connect to {peer} in repair mode: {e}"))?;
    set(inet::TCP_MAXSEG, 0, "TCP_MAXSEG")?;
    let mut opts = vec![(inet::TCPOPT_MSS, t.mss)];
    if let Some((snd, rcv)) = t.wscale {
        opts.push((inet::TCPOPT_WINDOW, snd as u32 | (rcv as u32) << 16));
    }
    if t.sack {
        opts.push((inet::TCPOPT_SACK_PERM, 0));
    }
    if t.timestamps {
        opts.push((inet::TCPOPT_TIMESTAMP, 0));
    }
    inet::set_repair_options(fd, &opts).map_err(|e| format!("TCP_REPAIR_OPTIONS: {e}"))?;
    set(inet::TCP_REPAIR_QUEUE, inet::TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE")?;
    write_queue(fd, &t.inq, u.opts.rcvbuf, sk::set_so_rcvbufforce)
        .map_err(|e| format!("refill its receive queue: {e}"))?;
    // The whole send queue goes back as sent (to be retransmitted as the
    // peer's window allows), not only what was sent at the moment the
    // dump read it: the kernel may transmit more of it afterwards (pacing,
    // small-queue tasklets run in repair mode too), and a restored socket
    // that had not sent bytes its peer acknowledges drops every segment of
    // the peer ("ACK of unsent data"), a deadlock.
    set(inet::TCP_REPAIR_QUEUE, inet::TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE")?;
    write_queue(fd, &t.outq, u.opts.sndbuf, sk::set_so_sndbufforce)
        .map_err(|e| format!("refill its send queue: {e}"))?;
    set(inet::TCP_REPAIR_QUEUE, inet::TCP_NO_QUEUE, "TCP_REPAIR_QUEUE")?;
    if let Some(w) = t.window {
        let mut w =
            inet::TcpRepairWindow { snd_wl1: w[0], snd_wnd: w[1], max_window: w[2], rcv_wnd: w[3], rcv_wup: w[4] };
        if fins.received {
            // The window the dump read starts after the peer's FIN: one
            // earlier, and one larger, it has room for that FIN again.
            w.rcv_wup = w.rcv_wup.wrapping_sub(1);
            w.rcv_wnd = w.rcv_wnd.saturating_add(1);
        }
        inet::set_repair_window(fd, &w).map_err(|e| format!("TCP_REPAIR_WINDOW: {e}"))?;
    }
    if t.timestamps {
        set(inet::TCP_TIMESTAMP, t.tsval as i32, "TCP_TIMESTAMP")?;
    }
    if fins.sent || fins.received {
        close_half(fd, u, t, fins, (snd_seq, rcv_seq, snd_una))?;
    }
    Ok(())
}

/// Takes a connection rebuilt as established to its half-closed state.
/// The last argument: its next sequence number to send and to receive and
/// its oldest unacknowledged one, all before the FINs.
fn close_half(
    fd: BorrowedFd<'_>,
    u: &InetSkEntry,
    t: &TcpStream,
    fins: Fins,
    (snd_seq, rcv_seq, snd_una): (u32, u32, u32),
) -> std::result::Result<(), String> {
    let (Some(local), Some(peer)) = (u.local, u.peer) else {
        return Err("a connection without both addresses".into());
    };
    // The window the peer advertised, as its header carries it.
    let window = match (t.window, t.wscale) {
        (Some(w), Some((snd, _))) => (w[1] >> snd.min(14)).min(65535) as u16,
        (Some(w), None) => w[1].min(65535) as u16,
        (None, _) => 65535,
    };
    let send_fin = || -> std::result::Result<(), String> {
        // With the send queue selected the FIN counts as sent: it is not
        // transmitted now (the peer may have it), and retransmitted after
        // the timeout if the peer does not acknowledge it.
        let set = |q: i32| {
            inet::set_opt_int(fd, SOL_TCP, inet::TCP_REPAIR_QUEUE, q).map_err(|e| format!("TCP_REPAIR_QUEUE: {e}"))
        };
        set(inet::TCP_SEND_QUEUE)?;
        let r = sk::shutdown(fd, sk::SHUT_WR).map_err(|e| format!("queue its FIN (shutdown): {e}"));
        set(inet::TCP_NO_QUEUE)?;
        r
    };
    // The peer's FIN, acknowledging what the peer had acknowledged.
    let receive_fin = || {
        forge_segment(peer, local, rcv_seq, snd_una, TH_FIN | TH_ACK, window)
            .map_err(|e| format!("its peer's FIN: {e}"))
    };
    if u.state == TCP_LAST_ACK || u.state == TCP_CLOSE {
        // It received the FIN first, then closed (an ended connection is
        // rebuilt that way: it reaches CLOSE when its FIN is acknowledged,
        // with no error pending and nothing left behind in TIME-WAIT).
        receive_fin()?;
        send_fin()?;
    } else {
        if fins.sent {
            send_fin()?;
        }
        if fins.received {
            receive_fin()?;
        }
    }
    if fins.acked {
        // The peer's acknowledgement of the FIN (after its own FIN, if it
        // sent one: that took a sequence number).
        let seq = rcv_seq.wrapping_add(fins.received as u32);
        forge_segment(peer, local, seq, snd_seq.wrapping_add(1), TH_ACK, window)
            .map_err(|e| format!("its peer's acknowledgement of its FIN: {e}"))?;
    }
    // A forged segment is usually handled before sendto returns (local
    // delivery runs when the sender's softirqs do), not always: wait a
    // little for the state, never accept another one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let now = inet::tcp_info(fd).map_err(|e| format!("TCP_INFO: {e}"))?.state as u32;
        if now == u.state {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("reached state {} instead of {}", state_text(now), state_text(u.state)));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

const TH_FIN: u8 = 0x01;
const TH_ACK: u8 = 0x10;

/// Sends a TCP segment without data or options from `src` to `dst` (a
/// local address), with crtools' mark, through a raw socket.
fn forge_segment(
    src: SkAddr,
    dst: SkAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> std::result::Result<(), String> {
    let pkt = tcp_segment(&src, &dst, seq, ack, flags, window).ok_or("addresses of different families")?;
    send_raw(&pkt, &dst)
}

/// Sends the whole IP packet `pkt` (made by [`ip_packet`]) to `dst` (a
/// local address), with crtools' mark, through a raw socket.
fn send_raw(pkt: &[u8], dst: &SkAddr) -> std::result::Result<(), String> {
    let v6 = pkt[0] >> 4 == 6;
    let family = if v6 { AF_INET6 } else { AF_INET };
    let r = sk::socket(family, SockType::SOCK_RAW, SockFlags::SOCK_CLOEXEC, inet::IPPROTO_RAW)
        .map_err(|e| format!("raw socket: {e}"))?;
    if v6 {
        inet::set_opt_int(r.as_fd(), SOL_IPV6, inet::IPV6_HDRINCL, 1).map_err(|e| format!("IPV6_HDRINCL: {e}"))?;
    }
    inet::set_opt_int(r.as_fd(), SOL_SOCKET, inet::SO_MARK, FORGED_MARK as i32).map_err(|e| format!("SO_MARK: {e}"))?;
    let mut to = dst.to_sys();
    to.port = 0;
    if !v6 && to.family == AF_INET6 {
        // A v4-mapped address: the packet is IPv4.
        to = inet::InetAddr::v4(to.addr[12..16].try_into().expect("4 bytes"), 0);
    }
    let n = inet::send_to(r.as_fd(), pkt, 0, Some(&to)).map_err(|e| format!("send: {e}"))?;
    if n != pkt.len() {
        return Err(format!("sent {n} of {} bytes", pkt.len()));
    }
    Ok(())
}

/// The IPv4 address of `a` (an IPv4 one, or an IPv6 one mapping it).
fn v4_of(a: &SkAddr) -> Option<[u8; 4]> {
    match a.family {
        AF_INET => Some(a.addr[..4].try_into().expect("4 bytes")),
        AF_INET6 if a.addr[..10] == [0; 10] && a.addr[10..12] == [0xff, 0xff] => {
            Some(a.addr[12..16].try_into().expect("4 bytes"))
        }
        _ => None,
    }
}

/// A TCP segment from `src` to `dst` with its IP header (IPv4 when both
/// addresses are, or map, IPv4 ones): no options, no data, checksummed
/// (the kernel fills in the IPv4 header's checksum, length and id).
fn tcp_segment(src: &SkAddr, dst: &SkAddr, seq: u32, ack: u32, flags: u8, window: u16) -> Option<Vec<u8>> {
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&src.port.to_be_bytes());
    tcp.extend_from_slice(&dst.port.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, flags]);
    tcp.extend_from_slice(&window.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    ip_packet(src, dst, inet::IPPROTO_TCP as u8, tcp, 16)
}

/// A UDP (or, with `lite`, UDP-Lite) header and `data` from `src` to `dst`,
/// its checksum left to [`ip_packet`]. UDP-Lite's length field is the
/// checksum coverage: 0, the whole datagram, which every receiver's
/// UDPLITE_RECV_CSCOV accepts (the sender's own coverage is not kept with
/// a queued datagram, and the receiver cannot see it).
fn udp_datagram(src: &SkAddr, dst: &SkAddr, data: &[u8], lite: bool) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + data.len());
    udp.extend_from_slice(&src.port.to_be_bytes());
    udp.extend_from_slice(&dst.port.to_be_bytes());
    let len = if lite { 0 } else { (8 + data.len()) as u16 };
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    udp
}

/// The IP packet carrying the transport header and payload `l4` of
/// protocol `proto` from `src` to `dst` (IPv4 when both addresses are, or
/// map, IPv4 ones), with the transport checksum at `csum_at` in `l4`
/// computed over the pseudo-header (the kernel fills in the IPv4 header's
/// checksum, length and id).
fn ip_packet(src: &SkAddr, dst: &SkAddr, proto: u8, mut l4: Vec<u8>, csum_at: usize) -> Option<Vec<u8>> {
    let mut pseudo = Vec::with_capacity(40 + l4.len());
    let mut pkt = Vec::with_capacity(40 + l4.len());
    match (v4_of(src), v4_of(dst)) {
        (Some(s), Some(d)) => {
            pseudo.extend_from_slice(&s);
            pseudo.extend_from_slice(&d);
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            // Version 4, 5 words; length, id and checksum are the kernel's.
            pkt.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0]);
            pkt.extend_from_slice(&s);
            pkt.extend_from_slice(&d);
        }
        (None, None) if src.family == AF_INET6 && dst.family == AF_INET6 => {
            pseudo.extend_from_slice(&src.addr);
            pseudo.extend_from_slice(&dst.addr);
            pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
            pkt.extend_from_slice(&[0x60, 0, 0, 0]);
            pkt.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            pkt.extend_from_slice(&[proto, 64]);
            pkt.extend_from_slice(&src.addr);
            pkt.extend_from_slice(&dst.addr);
        }
        _ => return None,
    }
    pseudo.extend_from_slice(&l4);
    let mut sum = !ones_complement_sum(&pseudo);
    if (proto == inet::IPPROTO_UDP as u8 || proto == inet::IPPROTO_UDPLITE as u8) && sum == 0 {
        // UDP sends a zero sum as all ones (zero means none); UDP-Lite, which
        // has no "none", does the same.
        sum = 0xffff;
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
    pkt.extend_from_slice(&l4);
    Some(pkt)
}

/// The Internet checksum's one's complement sum of `b` (RFC 1071).
fn ones_complement_sum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Writes `data` into the selected repair queue. The restored buffer may
/// hold less of it than the dumped one did (memory is counted per
/// segment, and they are cut differently): it is then made larger
/// (`force`: SO_RCVBUFFORCE or SO_SNDBUFFORCE) and set back to `size` (as
/// the socket reported it, twice what is set) once the queue is full; a
/// socket whose size was the kernel's default keeps the larger one.
/// Never blocks: nothing frees buffer space in repair mode.
fn write_queue(
    fd: BorrowedFd<'_>,
    mut data: &[u8],
    size: Option<u32>,
    force: fn(BorrowedFd<'_>, u32) -> crate::sys::Result<()>,
) -> std::result::Result<(), String> {
    let mut room = 0u64;
    while !data.is_empty() {
        match sk::send(fd, data, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return Err(Errno::EIO.to_string()),
            Ok(n) => data = &data[n..],
            // The send queue waits for room (EAGAIN); the receive queue
            // refuses what does not fit (ENOMEM).
            Err(Errno::EAGAIN) | Err(Errno::ENOMEM) => {
                room = (room * 2).max(data.len() as u64 * 4 + (1 << 20));
                if room > 1 << 30 {
                    return Err(format!("{} bytes do not fit in its buffer", data.len()));
                }
                force(fd, room as u32).map_err(|e| format!("make its buffer larger: {e}"))?;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    if room > 0 {
        if let Some(b) = size {
            force(fd, b / 2).map_err(|e| format!("set its buffer size back: {e}"))?;
        }
    }
    Ok(())
}

/// Leaves repair mode (an established connection sends a window probe,
/// which makes the peer answer), sets options.
fn go_live(fd: BorrowedFd<'_>, u: &InetSkEntry) -> std::result::Result<(), String> {
    if u.state == TCP_SYN_SENT {
        let Some(peer) = u.peer else { return Err("a connection without its peer".into()) };
        set_opts(fd, u)?;
        // Connected without blocking whatever the task's own flag (set
        // again right after): the SYN goes out, the handshake completes
        // when the peer answers, as it would have.
        let status = crate::sys::fs::OpenFlags::from_bits_retain((u.flags & OpenFlags::O_NONBLOCK).bits());
        crate::sys::fs::fcntl_setfl(fd, crate::sys::fs::OpenFlags::O_NONBLOCK).map_err(|e| format!("F_SETFL: {e}"))?;
        match inet::connect(fd, &peer.to_sys()) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => return Err(format!("connect to {peer}: {e}")),
        }
        return crate::sys::fs::fcntl_setfl(fd, status).map_err(|e| format!("F_SETFL: {e}"));
    }
    // Segments reach it again (its own filter, if it had one, is set below).
    match inet::detach_filter(fd) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(format!("SO_DETACH_FILTER: {e}")),
    }
    // (A held connection may still have a queue selected from its dump.)
    inet::set_opt_int(fd, SOL_TCP, inet::TCP_REPAIR_QUEUE, inet::TCP_NO_QUEUE)
        .map_err(|e| format!("TCP_REPAIR_QUEUE: {e}"))?;
    sk::set_tcp_repair(fd, sk::TCP_REPAIR_OFF).map_err(|e| format!("leave repair mode: {e}"))?;
    set_opts(fd, u)?;
    shutdown(fd, u)
}

/// The options set after the socket has its state.
pub(crate) fn set_opts(fd: BorrowedFd<'_>, u: &InetSkEntry) -> std::result::Result<(), String> {
    let o = &u.opts;
    let set = |level: u32, name: u32, v: i32, what: &str| {
        inet::set_opt_int(fd, level, name, v).map_err(|e| format!("{what}: {e}"))
    };
    // Leaving repair mode clears SO_REUSEADDR: set it (again).
    set(SOL_SOCKET, inet::SO_REUSEADDR, o.reuseaddr as i32, "SO_REUSEADDR")?;
    set(SOL_SOCKET, inet::SO_BROADCAST, o.broadcast as i32, "SO_BROADCAST")?;
    set(SOL_SOCKET, inet::SO_KEEPALIVE, o.keepalive as i32, "SO_KEEPALIVE")?;
    set(SOL_SOCKET, inet::SO_OOBINLINE, o.oobinline as i32, "SO_OOBINLINE")?;
    set(SOL_SOCKET, inet::SO_DONTROUTE, o.dontroute as i32, "SO_DONTROUTE")?;
    set(SOL_SOCKET, inet::SO_PRIORITY, o.priority, "SO_PRIORITY")?;
    inet::set_linger(fd, o.linger).map_err(|e| format!("SO_LINGER: {e}"))?;
    sk::set_sol_socket_timeval(fd, sk::SO_RCVTIMEO, o.rcvtimeo).map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    sk::set_sol_socket_timeval(fd, sk::SO_SNDTIMEO, o.sndtimeo).map_err(|e| format!("SO_SNDTIMEO: {e}"))?;
    set(SOL_SOCKET, sk::SO_RCVLOWAT, o.rcvlowat, "SO_RCVLOWAT")?;
    if o.peek_off >= 0 {
        set(SOL_SOCKET, sk::SO_PEEK_OFF, o.peek_off, "SO_PEEK_OFF")?;
    }
    if u.family == AF_INET6 {
        set(SOL_IPV6, inet::IPV6_TCLASS, o.tos, "IPV6_TCLASS")?;
        if o.ttl >= 0 {
            set(SOL_IPV6, inet::IPV6_UNICAST_HOPS, o.ttl, "IPV6_UNICAST_HOPS")?;
        }
    } else {
        set(SOL_IP, inet::IP_TOS, o.tos, "IP_TOS")?;
        if o.ttl >= 0 {
            set(SOL_IP, inet::IP_TTL, o.ttl, "IP_TTL")?;
        }
    }
    for &(level, name, v) in &o.ip_extra {
        inet::set_opt_int(fd, level, name, v).map_err(|e| format!("option {level}/{name}={v}: {e}"))?;
    }
    for (level, name, v) in &o.raw {
        sk::set_sockopt_bytes(fd, *level, *name, v).map_err(|e| format!("option {level}/{name}: {e}"))?;
    }
    join_groups(fd, u)?;
    if u.proto == inet::IPPROTO_TCP && u.ty == SockType::SOCK_STREAM.0 {
        set(SOL_TCP, inet::TCP_NODELAY, o.nodelay as i32, "TCP_NODELAY")?;
        set(SOL_TCP, inet::TCP_CORK, o.cork as i32, "TCP_CORK")?;
        set(SOL_TCP, inet::TCP_KEEPIDLE, o.keepidle, "TCP_KEEPIDLE")?;
        set(SOL_TCP, inet::TCP_KEEPINTVL, o.keepintvl, "TCP_KEEPINTVL")?;
        set(SOL_TCP, inet::TCP_KEEPCNT, o.keepcnt, "TCP_KEEPCNT")?;
        set(SOL_TCP, inet::TCP_USER_TIMEOUT, o.user_timeout as i32, "TCP_USER_TIMEOUT")?;
        for &(name, v) in &o.tcp_extra {
            set(SOL_TCP, name, v, "TCP option")?;
        }
        if let Some(cc) = &o.congestion {
            sk::set_sockopt_bytes(fd, SOL_TCP, TCP_CONGESTION, cc.as_bytes())
                .map_err(|e| format!("TCP_CONGESTION {cc}: {e}"))?;
        }
    }
    if !o.filter.is_empty() {
        inet::attach_filter(fd, &o.filter).map_err(|e| format!("SO_ATTACH_FILTER: {e}"))?;
        if o.lock_filter {
            set(SOL_SOCKET, inet::SO_LOCK_FILTER, 1, "SO_LOCK_FILTER")?;
        }
    }
    Ok(())
}

/// What `--tcp-close` makes of a TCP connection: a socket that is closed
/// both ways, as one whose connection ended (recv gives 0, poll POLLHUP,
/// send EPIPE), with its options but neither address nor queues. CRIU's
/// --tcp-close gives the same.
pub(crate) fn close_entry(u: &mut InetSkEntry) {
    u.state = TCP_CLOSE;
    u.tcp = None;
    u.local = None;
    u.peer = None;
    u.queue.clear();
    u.shutdown = RCV_SHUTDOWN | SEND_SHUTDOWN;
}

/// shutdown(2) as the socket had it (a TCP connection's sending side is in
/// its state; only the receiving side is a flag). A closed TCP socket has
/// no state to keep it: both flags are set (shutdown says ENOTCONN, but
/// sets them).
fn shutdown(fd: BorrowedFd<'_>, u: &InetSkEntry) -> std::result::Result<(), String> {
    let mut how = u.shutdown & (RCV_SHUTDOWN | SEND_SHUTDOWN);
    if u.proto == inet::IPPROTO_TCP && u.ty == SockType::SOCK_STREAM.0 && u.state != TCP_CLOSE {
        how &= RCV_SHUTDOWN;
    }
    let how = match how {
        0 => return Ok(()),
        RCV_SHUTDOWN => sk::SHUT_RD,
        SEND_SHUTDOWN => sk::SHUT_WR,
        _ => sk::SHUT_RDWR,
    };
    match sk::shutdown(fd, how) {
        Ok(()) | Err(Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(format!("shutdown: {e}")),
    }
}

/// Puts a UDP socket's queued datagrams back, each sent from its sender's
/// address.
fn refill(
    u: &InetSkEntry,
    socks: &[InetSkEntry],
    made: &HashMap<u32, OwnedFd>,
    temps: &mut HashMap<(u32, SkAddr), Option<OwnedFd>>,
) -> std::result::Result<(), String> {
    let Some(local) = u.local else {
        return Err("datagrams are queued on a socket without an address".into());
    };
    let mut to = local;
    if to.to_sys().is_any() {
        // Bound to the wildcard: any local address reaches it.
        to.addr = if u.family == AF_INET6 {
            let mut l = [0u8; 16];
            l[15] = 1;
            l
        } else {
            let mut l = [0u8; 16];
            l[..4].copy_from_slice(&[127, 0, 0, 1]);
            l
        };
    }
    for m in &u.queue {
        let mut from = m.from;
        if from.family == AF_INET && u.family == AF_INET6 {
            // Shown to an IPv6 socket as v4-mapped.
            from = mapped(from);
        }
        let sender = socks
            .iter()
            .find(|s| s.proto == u.proto && s.id != u.id && s.local.map(|l| same_addr(&l, &from)) == Some(true))
            .map(|s| made[&s.id].as_fd());
        let sender = match sender {
            Some(s) => Some(s),
            None => {
                if let std::collections::hash_map::Entry::Vacant(slot) = temps.entry((u.proto, from)) {
                    let t = sk::socket(from.family, SockType::SOCK_DGRAM, SockFlags::SOCK_CLOEXEC, u.proto)
                        .map_err(|e| format!("socket: {e}"))?;
                    if from.family == AF_INET6 {
                        let _ = inet::set_opt_int(t.as_fd(), SOL_IPV6, inet::IPV6_V6ONLY, 0);
                    }
                    // The sender still holds its port (a client waiting for
                    // the answer), or the address is another host's: the
                    // datagram is forged from it instead.
                    let bound = inet::bind(t.as_fd(), &from.to_sys());
                    if let Err(e) = &bound {
                        log::debug!(
                            "a datagram queued from {from}: no socket of ours can send from there ({e}): forged"
                        );
                    }
                    slot.insert(bound.ok().map(|_| t));
                }
                temps[&(u.proto, from)].as_ref().map(|t| t.as_fd())
            }
        };
        match sender {
            Some(sender) => {
                let n = inet::send_to(sender, &m.data, MsgFlags::MSG_DONTWAIT.bits(), Some(&to.to_sys()))
                    .map_err(|e| format!("put back a datagram from {from}: {e}"))?;
                if n != m.data.len() {
                    return Err(format!("put back a datagram from {from}: sent {n} of {} bytes", m.data.len()));
                }
            }
            None => {
                let lite = u.proto == inet::IPPROTO_UDPLITE;
                let pkt = ip_packet(&from, &to, u.proto as u8, udp_datagram(&from, &to, &m.data, lite), 6)
                    .ok_or_else(|| format!("a datagram queued from {from}: addresses of different families"))?;
                send_raw(&pkt, &to).map_err(|e| format!("put back a datagram from {from} (forged): {e}"))?;
            }
        }
    }
    // Wait until the kernel has queued them all (loopback delivers at once).
    Ok(())
}

fn mapped(a: SkAddr) -> SkAddr {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&a.addr[..4]);
    SkAddr { family: AF_INET6, addr: m, port: a.port, flowinfo: 0, scope_id: 0 }
}

fn same_addr(a: &SkAddr, b: &SkAddr) -> bool {
    a.family == b.family && a.addr == b.addr && a.port == b.port
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> SkAddr {
        SkAddr::from_sys(inet::InetAddr::v4(a, port))
    }

    /// Whether the TCP checksum of `pkt` verifies against its pseudo-header.
    fn checksum_ok(pkt: &[u8]) -> bool {
        let (pseudo_addrs, tcp) = if pkt[0] >> 4 == 4 { (&pkt[12..20], &pkt[20..]) } else { (&pkt[8..40], &pkt[40..]) };
        let mut all = pseudo_addrs.to_vec();
        all.extend_from_slice(&[0, 6]);
        all.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        all.extend_from_slice(tcp);
        // The IPv6 pseudo-header's 32-bit length and zero padding sum the same.
        ones_complement_sum(&all) == 0xffff
    }

    #[test]
    fn forged_datagrams_are_well_formed() {
        let mut lo6 = [0u8; 16];
        lo6[15] = 1;
        let v6 = |port| SkAddr::from_sys(inet::InetAddr::v6(lo6, port));
        for (src, dst) in [(v4([127, 0, 0, 1], 40000), v4([127, 0, 0, 1], 53)), (v6(40000), v6(53))] {
            for (data, lite) in
                [&b"odd"[..], &[0xffu8; 1000][..], &[][..]].into_iter().flat_map(|d| [(d, false), (d, true)])
            {
                let proto = if lite { 136 } else { 17 };
                let pkt = ip_packet(&src, &dst, proto, udp_datagram(&src, &dst, data, lite), 6).unwrap();
                let (addrs, udp) =
                    if pkt[0] >> 4 == 4 { (&pkt[12..20], &pkt[20..]) } else { (&pkt[8..40], &pkt[40..]) };
                assert_eq!(&udp[8..], data);
                // UDP-Lite's length field is its coverage: 0, all of it.
                let len = if lite { 0 } else { 8 + data.len() };
                assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, len);
                assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 40000);
                let mut all = addrs.to_vec();
                all.extend_from_slice(&[0, proto]);
                all.extend_from_slice(&(udp.len() as u16).to_be_bytes());
                all.extend_from_slice(udp);
                assert_eq!(ones_complement_sum(&all), 0xffff, "checksum of {} bytes", data.len());
                assert_ne!(&udp[6..8], &[0, 0], "a zero sum means none");
            }
        }
        assert!(ip_packet(
            &v4([127, 0, 0, 1], 1),
            &SkAddr::from_sys(inet::InetAddr::v6([0; 16], 1)),
            17,
            vec![0; 8],
            6
        )
        .is_none());
    }

    #[test]
    fn forged_segments_are_well_formed() {
        let pkt = tcp_segment(&v4([10, 0, 0, 2], 4321), &v4([127, 0, 0, 1], 80), 0x0102_0304, 0xa0b0_c0d0, 0x11, 512)
            .unwrap();
        assert_eq!(pkt.len(), 40);
        assert_eq!(pkt[0], 0x45);
        assert_eq!(pkt[9], 6);
        assert_eq!(&pkt[12..16], &[10, 0, 0, 2]);
        assert_eq!(&pkt[16..20], &[127, 0, 0, 1]);
        let tcp = &pkt[20..];
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 4321);
        assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 80);
        assert_eq!(&tcp[4..8], &[1, 2, 3, 4]);
        assert_eq!(&tcp[8..12], &[0xa0, 0xb0, 0xc0, 0xd0]);
        assert_eq!((tcp[12], tcp[13]), (0x50, 0x11));
        assert_eq!(u16::from_be_bytes([tcp[14], tcp[15]]), 512);
        assert!(checksum_ok(&pkt));
        // A v4-mapped pair is IPv4 on the wire.
        let mapped = |a: [u8; 4], port| {
            let mut m = [0u8; 16];
            m[10..12].copy_from_slice(&[0xff, 0xff]);
            m[12..].copy_from_slice(&a);
            SkAddr { family: AF_INET6, addr: m, port, flowinfo: 0, scope_id: 0 }
        };
        let m =
            tcp_segment(&mapped([10, 0, 0, 2], 4321), &mapped([127, 0, 0, 1], 80), 0x0102_0304, 0xa0b0_c0d0, 0x11, 512);
        assert_eq!(m.as_deref(), Some(&pkt[..]));
        // IPv6.
        let mut lo = [0u8; 16];
        lo[15] = 1;
        let six = |port| SkAddr { family: AF_INET6, addr: lo, port, flowinfo: 0, scope_id: 0 };
        let p6 = tcp_segment(&six(1), &six(2), 7, 9, 0x10, 65535).unwrap();
        assert_eq!(p6.len(), 60);
        assert_eq!(p6[0] >> 4, 6);
        assert_eq!((p6[6], u16::from_be_bytes([p6[4], p6[5]])), (6, 20));
        assert!(checksum_ok(&p6));
        // Mixed families: no segment.
        assert!(tcp_segment(&six(1), &v4([127, 0, 0, 1], 2), 0, 0, 0x10, 0).is_none());
    }

    #[test]
    fn fins_by_state() {
        assert_eq!(Fins::of(TCP_ESTABLISHED).map(Fins::forged), Some(false));
        assert_eq!(Fins::of(TCP_FIN_WAIT1).map(Fins::forged), Some(false));
        for st in [TCP_FIN_WAIT2, TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING, TCP_CLOSE] {
            assert_eq!(Fins::of(st).map(Fins::forged), Some(true), "{}", state_text(st));
        }
        assert_eq!(Fins::of(TCP_CLOSE), Some(Fins { sent: true, acked: true, received: true }));
        for st in [2, 3, 6, TCP_LISTEN, 12] {
            assert!(Fins::of(st).is_none(), "{}", state_text(st));
        }
    }
}
