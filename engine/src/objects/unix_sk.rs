//! Unix sockets (unix(7)): stream, datagram and seqpacket; unbound,
//! bound to a path or an abstract name; socketpairs, listening sockets
//! with their backlog, accepted connections with their names; what is
//! queued for each to read, with message boundaries, senders' addresses
//! and credentials; shutdown state and the options users set.
//!
//! Dump: unix_diag (sock_diag(7)) is asked once, with the tree frozen, for
//! every unix socket: type, state, name, bound file, peer, backlog, queue
//! lengths, shutdown. Each socket a task holds is duplicated into the
//! engine (pidfd_getfd) and its receive queue is read without consuming
//! it: MSG_PEEK stepping through SO_PEEK_OFF, which is put back to what the
//! task had. Connections waiting in a backlog are recorded with their
//! listener. Once every task is dumped, a socket whose peer is outside the
//! tree is refused, naming the peer, unless `--ext-unix-sk` says to
//! reconnect it to the peer's address at restore.
//!
//! Restore, in the engine before the tree is forked: listeners are bound
//! (a stale socket file of the dead listener is replaced; the file gets the
//! dumped mode and owner) and listen; connected pairs are made by connect
//! and accept when one side has a name (so both keep their names and
//! getpeername answers as before; a closed listener is stood in for by a
//! temporary one at its name), by socketpair otherwise; backlog
//! connections are connected and left unaccepted, oldest first. Once the
//! tree exists (so senders' credentials name live pids), the queues are
//! refilled from the right senders (datagrams from a socket bound to the
//! sender's address), datagram sockets connect to their peers, shutdown
//! state and options are set.
//!
//! Descriptors in flight (SCM_RIGHTS) are received into crtools by the
//! peek, dumped as file objects of their own (or found to be descriptions
//! a task holds too), and sent again with their message.
//!
//! Credentials: the kernel records who called socketpair, listen or
//! connect (SO_PEERCRED, SO_PEERGROUPS). Each of those calls is made by a
//! short-lived child with that pid (clone3 set_tid, before the tree exists)
//! and those ids, so the records are the same; a connection waiting in a
//! backlog and a reconnect to a peer outside the tree are made as the task
//! that held the socket. A pid another process holds at restore fails the
//! restore, naming it. Known difference: SO_PEERPIDFD names that child,
//! gone, not the task with the same pid.
//!
//! Not read back or refused by name: bytes queued on a connection still in a backlog (the kernel gives no
//! way to read them without accepting it), names bound relative to a
//! working directory, zero-length datagrams.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::files::OpenFlags;
use crate::image::unix_sk::{name_text, PeerCred, QueuedMsg, UnixSkEntry, UnixSkOpts};
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::sock_diag::{self, UnixDiag, STATE_ESTABLISHED, STATE_LISTEN};
use crate::sys::socket::{self as sk, MsgFlags, SockFlags, SockType, UCred, UnixAddr, AF_UNIX};
use crate::sys::{Errno, Pid};
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::rc::Rc;

const SOCK_DGRAM: u32 = 2;
const RCV_SHUTDOWN: u8 = 1;
const SEND_SHUTDOWN: u8 = 2;
/// Largest message the queue reader takes at once; bigger ones are read again
/// with a buffer of their size.
const PEEK_BUF: usize = 256 * 1024;

fn is_path_name(name: &[u8]) -> bool {
    !name.is_empty() && name[0] != 0
}

/// Dumps one unix socket a task holds.
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
    let what = format!("fd {fd}: unix socket:[{ino}]");
    let e = |msg: String| Error::task(pid, format!("{what}: {msg}"));
    if out.unix_diag.is_none() {
        // Once, with the whole tree frozen.
        let all = sock_diag::unix_sockets().map_err(|err| e(format!("unix_diag: {err}")))?;
        out.unix_diag = Some(all);
    }
    let diag = out.unix_diag.as_ref().expect("just read");
    let d =
        diag.get(&ino).cloned().ok_or_else(|| e("unix_diag does not know it (another network namespace?)".into()))?;
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let s = super::files::take_fd(pid, fd)?;
    // Bound relative to the binder's working directory then (postfix's
    // master binds public/ and private/ so): found from the holder's.
    let rel_dir = if is_path_name(&d.name) && d.name[0] != b'/' {
        Some(relative_dir(pid, &d).map_err(|m| Error::refuse(pid, format!("{what}: {m}")))?)
    } else {
        None
    };
    let BoundFile { unlinked, attrs: file_attrs, moved_to } = bound_file(&d, rel_dir.as_deref()).map_err(e)?;
    let opts = read_opts(s.as_fd()).map_err(|err| e(format!("read its options: {err}")))?;
    let ext_peer = if d.state == STATE_ESTABLISHED || (d.ty as u32 == SOCK_DGRAM && d.peer != 0) {
        match sk::getpeername_unix(s.as_fd()) {
            Ok(a) => Some(a.path_bytes().to_vec()),
            Err(Errno::ENOTCONN) => None,
            Err(err) => return Err(e(format!("getpeername: {err}"))),
        }
    } else {
        None
    };
    let mut entry = UnixSkEntry {
        id,
        ino,
        ty: d.ty as u32,
        state: d.state as u32,
        flags,
        name: d.name.clone(),
        unlinked,
        file_attrs,
        moved_to,
        rel_dir,
        peer: d.peer,
        ext_peer,
        backlog: 0,
        icons: Vec::new(),
        shutdown: d.shutdown,
        opts,
        queue: Vec::new(),
        peer_cred: peer_cred(s.as_fd()).map_err(|err| e(format!("SO_PEERCRED: {err}")))?,
        holder: holder_cred(pid).map_err(e)?,
    };
    if d.state == STATE_LISTEN {
        entry.backlog = d.rqlen.map(|r| r.1).unwrap_or(128);
        entry.icons = d.icons.clone();
        for &icon in &d.icons {
            // unix_diag names each waiting connection by an inode: the
            // connection's own on some kernels, its client's on others.
            // Either way, bytes sent on it and not read show: as what the
            // connection holds, or as what its client has in flight.
            let unread = diag.get(&icon).and_then(|c| c.rqlen).map(|(r, w)| r as u64 + w as u64).unwrap_or(0);
            if unread > 0 {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "{what}: a connection waiting in its backlog (socket:[{icon}]) holds bytes not read yet: \
                         the kernel cannot read them back without accepting it"
                    ),
                ));
            }
        }
    } else if d.ty as u32 == SOCK_DGRAM || d.state == STATE_ESTABLISHED {
        // (An unconnected stream socket has no queue to read.)
        let entry_idx = out.unix.len();
        for (k, (msg, fds)) in peek_queue(s.as_fd(), &d, entry.opts.passcred).map_err(e)?.into_iter().enumerate() {
            entry.queue.push(msg);
            // Dumped as files of their own once this socket is recorded.
            out.inflight.extend(fds.into_iter().map(|fd| super::files::InFlight { fd, entry: entry_idx, msg: k }));
        }
    }
    out.unix_owner.insert(ino, (pid, fd));
    log::debug!(task = pid.0; "task {pid}: {what}: {} {}, {} queued", crate::image::unix_sk::type_text(entry.ty), name_text(&entry.name), entry.queue.len());
    out.unix.push(entry);
    let _ = cx;
    Ok(())
}

/// SO_PEERCRED with SO_PEERGROUPS; None when the socket has none (pid 0).
fn peer_cred(s: BorrowedFd<'_>) -> crate::sys::Result<Option<PeerCred>> {
    let c = sk::get_so_peercred(s)?;
    if c.pid == 0 {
        return Ok(None);
    }
    let groups = match sk::get_so_peergroups(s) {
        Ok(g) => g,
        Err(Errno::ENODATA) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(Some(PeerCred { pid: c.pid, uid: c.uid, gid: c.gid, groups }))
}

/// The credentials task `pid` would give a socket it connects.
fn holder_cred(pid: Pid) -> std::result::Result<Option<PeerCred>, String> {
    let st = crate::proc::status::read(pid).map_err(|e| format!("read status: {e}"))?;
    Ok(Some(PeerCred { pid: st.tgid, uid: st.uid[1], gid: st.gid[1], groups: st.groups }))
}

/// What became of a pathname socket's file.
#[derive(Debug, Default)]
struct BoundFile {
    /// Gone from its name and not found in the same directory.
    unlinked: bool,
    /// Its mode, uid and gid.
    attrs: Option<(u32, u32, u32)>,
    /// Renamed: where it is now.
    moved_to: Option<Vec<u8>>,
}

/// The directory in which the relative name of socket `d` of task `pid`
/// leads to its file: the task's working directory (the binder's when it
/// bound, as far as anything shows). A connection accepted from such a
/// listener carries the name too; it is resolved as its listener's.
fn relative_dir(pid: Pid, d: &UnixDiag) -> std::result::Result<Vec<u8>, String> {
    let name = String::from_utf8_lossy(&d.name).into_owned();
    let cwd = std::fs::read_link(crate::proc::pid_path(pid, "cwd"))
        .map_err(|e| format!("bound to the relative path {name}: read the task's working directory: {e}"))?;
    let cwd = cwd.into_os_string().into_vec();
    if d.state == STATE_ESTABLISHED && d.ty as u32 != SOCK_DGRAM {
        return Ok(cwd);
    }
    let found = std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(&joined(&cwd, &d.name)))
        .ok()
        .zip(d.vfs)
        .is_some_and(|(m, (vino, vdev))| m.ino() as u32 == vino && kernel_dev(m.dev()) == vdev);
    if !found {
        return Err(format!(
            "bound to the relative path {name}, which does not lead to its socket file from the task's working \
             directory {}: not supported",
            String::from_utf8_lossy(&cwd)
        ));
    }
    Ok(cwd)
}

/// `dir`/`name`: where a relative name leads from `dir`.
fn joined(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Whether a pathname socket's file is still at its name (from `rel_dir`
/// when relative), renamed within its directory or gone, and the file's
/// mode and owner.
fn bound_file(d: &UnixDiag, rel_dir: Option<&[u8]>) -> std::result::Result<BoundFile, String> {
    if !is_path_name(&d.name) {
        return Ok(BoundFile::default());
    }
    // A connected stream socket's name may be its listener's (accepted
    // connections share the listener's name and file): its file is not
    // its own to recreate or remove.
    if d.state == STATE_ESTABLISHED && d.ty as u32 != SOCK_DGRAM {
        return Ok(BoundFile::default());
    }
    let Some((vino, vdev)) = d.vfs else { return Ok(BoundFile::default()) };
    let is_it = |m: &std::fs::Metadata| m.ino() as u32 == vino && kernel_dev(m.dev()) == vdev;
    let attrs = |m: &std::fs::Metadata| Some((m.mode(), m.uid(), m.gid()));
    let full = rel_dir.map(|r| joined(r, &d.name)).unwrap_or_else(|| d.name.clone());
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&full));
    if let Some(m) = std::fs::symlink_metadata(path).ok().filter(is_it) {
        return Ok(BoundFile { attrs: attrs(&m), ..Default::default() });
    }
    if rel_dir.is_some() {
        // relative_dir found it there.
        return Err(format!("the socket file {} went away during the dump", path.display()));
    }
    // Bound to one name and renamed to another in the same directory?
    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| !t.is_socket()).unwrap_or(true) {
                continue;
            }
            if let Some(m) = e.metadata().ok().filter(is_it) {
                return Ok(BoundFile {
                    attrs: attrs(&m),
                    moved_to: Some(e.path().into_os_string().into_vec()),
                    unlinked: false,
                });
            }
        }
    }
    Ok(BoundFile { unlinked: true, ..Default::default() })
}

use std::os::unix::ffi::OsStrExt;

/// The kernel's internal dev_t (major << 20 | minor, what unix_diag
/// reports) of a `st_dev`.
fn kernel_dev(st_dev: u64) -> u32 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    ((major << 20) | (minor & 0xf_ffff)) as u32
}

fn read_opts(s: BorrowedFd<'_>) -> crate::sys::Result<UnixSkOpts> {
    Ok(UnixSkOpts {
        passcred: sk::get_sol_socket_int(s, sk::SO_PASSCRED)? != 0,
        passsec: sk::get_sol_socket_int(s, sk::SO_PASSSEC)? != 0,
        rcvbuf: sk::get_sol_socket_int(s, sk::SO_RCVBUF)? as u32,
        sndbuf: sk::get_sol_socket_int(s, sk::SO_SNDBUF)? as u32,
        rcvtimeo: sk::get_sol_socket_timeval(s, sk::SO_RCVTIMEO)?,
        sndtimeo: sk::get_sol_socket_timeval(s, sk::SO_SNDTIMEO)?,
        peek_off: sk::get_sol_socket_int(s, sk::SO_PEEK_OFF)?,
        rcvlowat: sk::get_sol_socket_int(s, sk::SO_RCVLOWAT)?,
    })
}

/// Reads the receive queue of `s` without consuming it; SO_PEEK_OFF is put
/// back as it was, whatever happens.
/// A queue as read: each message with the descriptions in flight with it
/// (crtools' own copies, received by the peek).
type Peeked = Vec<(QueuedMsg, Vec<OwnedFd>)>;

fn peek_queue(s: BorrowedFd<'_>, d: &UnixDiag, passcred: bool) -> std::result::Result<Peeked, String> {
    let old = sk::get_sol_socket_int(s, sk::SO_PEEK_OFF).map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
    let r = peek_from_start(s, d, passcred);
    let back = sk::set_sol_socket_int(s, sk::SO_PEEK_OFF, old);
    let q = r?;
    back.map_err(|e| format!("put SO_PEEK_OFF back: {e}"))?;
    Ok(q)
}

fn peek_from_start(s: BorrowedFd<'_>, d: &UnixDiag, passcred: bool) -> std::result::Result<Peeked, String> {
    let dgram = d.ty as u32 != SockType::SOCK_STREAM.0;
    let mut q = Vec::new();
    let mut off: usize = 0;
    let mut buf = vec![0u8; PEEK_BUF];
    let set_off = |off: usize| {
        let v = i32::try_from(off).map_err(|_| "more than 2 GiB queued".to_string())?;
        sk::set_sol_socket_int(s, sk::SO_PEEK_OFF, v).map_err(|e| format!("SO_PEEK_OFF: {e}"))
    };
    set_off(0)?;
    let mut flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    if dgram {
        flags |= MsgFlags::MSG_TRUNC;
    }
    for _ in 0..10_000_000 {
        let m = match sk::recv_msg(s, &mut buf, flags) {
            Ok(m) => m,
            Err(Errno::EAGAIN) => break,
            Err(e) => return Err(format!("read its queue: {e}")),
        };
        if m.len == 0 {
            if d.ty as u32 == SOCK_DGRAM {
                return Err("a zero-length datagram is queued: not supported yet".into());
            }
            // A stream or seqpacket socket whose peer shut down: the end.
            break;
        }
        if dgram && m.len > buf.len() {
            // Read it again whole, from where it starts.
            buf.resize(m.len, 0);
            set_off(off)?;
            continue;
        }
        let n = m.len.min(buf.len());
        let msg = QueuedMsg {
            data: buf[..n].to_vec(),
            from: if d.ty as u32 == SOCK_DGRAM { m.from.path_bytes().to_vec() } else { Vec::new() },
            creds: if passcred { m.creds.map(|c| (c.pid, c.uid, c.gid)) } else { None },
            fds: Vec::new(),
        };
        q.push((msg, m.fds));
        off += n;
    }
    if !dgram {
        let want = d.rqlen.map(|r| r.0 as usize).unwrap_or(off);
        if want != off {
            return Err(format!("read {off} of the {want} bytes queued"));
        }
    }
    Ok(q)
}

/// Once every task is dumped: a socket whose peer is outside the tree is
/// refused by name unless `--ext-unix-sk`.
pub fn finish_dump(cx: &FdCtx, images: &mut FileImages) -> Result<()> {
    let inos: std::collections::HashSet<u32> = images.unix.iter().map(|u| u.ino).collect();
    let waiting = backlog_clients(&images.unix);
    let owners = &images.unix_owner;
    let who = |ino: u32| match owners.get(&ino) {
        Some((pid, fd)) => (*pid, format!("fd {fd}: unix socket:[{ino}]")),
        None => (Pid(0), format!("unix socket:[{ino}]")),
    };
    for u in images.unix.iter_mut() {
        if u.state == STATE_LISTEN as u32 {
            for &icon in &u.icons {
                if !waiting.values().any(|&i| i == icon) && !cx.ext_unix_sk {
                    return Err(Error::refuse_global(format!(
                        "a connection to {} waiting in a backlog (socket:[{icon}]) comes from outside the dumped tree \
                         (--ext-unix-sk restores it with a client that has gone away)",
                        name_text(&u.name)
                    )));
                }
            }
            continue;
        }
        // A client whose connection waits in a backlog is restored with it.
        let outside = u.peer != 0 && !inos.contains(&u.peer) && !waiting.contains_key(&u.ino);
        if !outside {
            u.ext_peer = None;
            continue;
        }
        let (pid, what) = who(u.ino);
        let peer_name = u.ext_peer.as_deref().map(name_text).unwrap_or_else(|| "(unnamed)".into());
        // A relative name leads nowhere known from crtools (its directory
        // was the peer's).
        let relative = |p: &[u8]| is_path_name(p) && p[0] != b'/';
        let named = u.ext_peer.as_ref().is_some_and(|p| !p.is_empty() && !relative(p));
        // Only a socket that connected out to a named peer can connect again.
        let accepted = is_path_name(&u.name) || (!u.name.is_empty() && u.ty != SOCK_DGRAM);
        if !cx.ext_unix_sk || !named || (accepted && u.ty != SOCK_DGRAM && u.name == *u.ext_peer.as_ref().unwrap()) {
            let hint = if cx.ext_unix_sk {
                "its peer cannot be reached again by address"
            } else {
                "dump with --ext-unix-sk to reconnect it at restore"
            };
            return Err(Error::refuse(
                pid,
                format!("{what}: its peer socket:[{}] ({peer_name}) is outside the dumped tree: {hint}", u.peer),
            ));
        }
        if u.ty != SOCK_DGRAM && !u.queue.is_empty() {
            return Err(Error::refuse(
                pid,
                format!(
                    "{what}: {} bytes from its peer outside the tree ({peer_name}) are queued: they cannot be sent again",
                    u.queue.iter().map(|m| m.data.len()).sum::<usize>()
                ),
            ));
        }
        log::info!("{what}: peer {peer_name} outside the tree: reconnected at restore (--ext-unix-sk)");
    }
    // A datagram is put back from its sender's name: from the tree's socket
    // bound there, or from a stand-in bound to it, which a relative name
    // cannot have (the directory it was relative to is the sender's).
    for u in images.unix.iter().filter(|u| u.ty == SOCK_DGRAM) {
        let orphan = u
            .queue
            .iter()
            .find(|m| is_path_name(&m.from) && m.from[0] != b'/' && !images.unix.iter().any(|s| s.name == m.from));
        if let Some(m) = orphan {
            let (pid, what) = who(u.ino);
            return Err(Error::refuse(
                pid,
                format!(
                    "{what}: a datagram is queued from {}, a name relative to its sender's working directory, and \
                     no socket of the tree is bound to it: it could not be sent again from that name",
                    name_text(&m.from)
                ),
            ));
        }
    }
    Ok(())
}

/// The tree's clients whose connection waits in a backlog: client inode
/// -> the backlog's inode for it (the connection's or the client's own,
/// depending on the kernel).
fn backlog_clients(socks: &[UnixSkEntry]) -> HashMap<u32, u32> {
    let mut out = HashMap::new();
    for l in socks.iter().filter(|l| l.state == STATE_LISTEN as u32) {
        for &icon in &l.icons {
            if let Some(c) = socks.iter().find(|c| c.state != STATE_LISTEN as u32 && (c.ino == icon || c.peer == icon))
            {
                out.insert(c.ino, icon);
            }
        }
    }
    out
}

// ------------------------------------------------------------------ restore

fn sock_type(ty: u32) -> SockType {
    SockType(ty)
}

fn new_socket(ty: u32) -> crate::sys::Result<OwnedFd> {
    sk::socket(AF_UNIX, sock_type(ty), SockFlags::SOCK_CLOEXEC, 0)
}

/// bind(2), and when an abstract name is still taken, maybe by a socket of
/// the dumped tree that only the kernel's garbage collector of in-flight
/// descriptors frees (sockets sent over each other in a cycle, zdtm scm06),
/// the collector is set off (by closing a socket that has a descriptor in
/// flight) and the bind tried again for a while.
fn bind_collecting(fd: BorrowedFd<'_>, addr: &UnixAddr) -> crate::sys::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sk::bind(fd, addr) {
            Err(Errno::EADDRINUSE) if addr.path().is_none() && std::time::Instant::now() < deadline => {
                let (a, b) = sk::socketpair(AF_UNIX, SockType::SOCK_DGRAM, SockFlags::SOCK_CLOEXEC, 0)?;
                sk::send_fds(a.as_fd(), b"x", &[a.as_fd()])?;
                drop((a, b));
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Where the files of unlinked sockets are while the sockets are made:
/// each binds at its name, and its file is renamed at once to a name of
/// its own next to it, so that the name is free for what holds it now (a
/// FIFO made there, zdtm fifo_upon_unix_socket01; another socket bound to
/// the same name, zdtm del_standalone_un) and its peers still reach it
/// ([`reach`]). A socket whose directory was removed too binds in one
/// made again for the while (zdtm sk-unix01). The files, then those
/// directories, go once the sockets are complete, or when the restore
/// fails before.
#[derive(Default)]
struct Aliases(HashMap<u32, std::path::PathBuf>, Vec<std::path::PathBuf>);

impl Aliases {
    fn remove_all(&mut self) -> std::result::Result<(), String> {
        let mut first = Ok(());
        let files = self.0.drain().map(|(_, f)| (f, false));
        let dirs = self.1.drain(..).rev().map(|d| (d, true));
        for (path, dir) in files.collect::<Vec<_>>().into_iter().chain(dirs) {
            let r = if dir { std::fs::remove_dir(&path) } else { std::fs::remove_file(&path) };
            if first.is_ok() {
                first = r.map_err(|e| format!("remove {}: {e}", path.display()));
            }
        }
        first
    }

    /// Makes the missing directories above `path` (none exist: they were
    /// removed after the bind), to be removed again.
    fn make_parents(&mut self, path: &std::path::Path) -> std::result::Result<(), String> {
        super::files::make_missing_parents(path, &mut self.1)
    }
}

impl Drop for Aliases {
    fn drop(&mut self) {
        if let Err(e) = self.remove_all() {
            log::warn!("{e}");
        }
    }
}

/// Binds `fd` as socket `u` was bound (an unlinked one: see [`Aliases`]).
fn bind_sock(fd: BorrowedFd<'_>, u: &UnixSkEntry, aliases: &RefCell<Aliases>) -> std::result::Result<(), String> {
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&u.name));
    let alias = path.with_file_name(format!(".crt-u.{}", u.ino));
    // An alias too long for an address, or a name some file has already:
    // the socket's file stays at its name until the sockets are complete
    // (the name must be free then).
    let exists = |p: &std::path::Path| std::fs::symlink_metadata(p).is_ok();
    if let Some(dir) = &u.rel_dir {
        // In place at dump (relative_dir looked): bound from there again.
        if dir.first() != Some(&b'/') || u.name.first() == Some(&b'/') {
            return Err(format!("the images bind {} relative to {}: refusing", name_text(&u.name), name_text(dir)));
        }
        return bind_name_in(fd, u.ty, &u.name, Some(dir));
    }
    if !u.unlinked || !is_path_name(&u.name) || alias.as_os_str().len() >= 108 || exists(&alias) {
        return bind_name(fd, u.ty, &u.name);
    }
    aliases.borrow_mut().make_parents(path)?;
    let aside = path.with_file_name(format!(".crt-a.{}", u.ino));
    if exists(&aside) {
        return Err(format!("{} is in the way of setting {} aside", aside.display(), path.display()));
    }
    let occupied = std::fs::symlink_metadata(path).is_ok();
    if occupied {
        std::fs::rename(path, &aside).map_err(|e| format!("set {} aside: {e}", path.display()))?;
    }
    let r = bind_name(fd, u.ty, &u.name).and_then(|()| {
        std::fs::rename(path, &alias).map_err(|e| format!("rename the socket file to {}: {e}", alias.display()))
    });
    if occupied {
        let back = std::fs::rename(&aside, path).map_err(|e| format!("put {} back: {e}", path.display()));
        r.clone().and(back)?;
    }
    r?;
    aliases.borrow_mut().0.insert(u.ino, alias);
    Ok(())
}

/// The address through which socket `u` is reached while the sockets are
/// made: its name, or its file's alias (see [`Aliases`]).
fn reach(u: &UnixSkEntry, made: &Made) -> std::result::Result<UnixAddr, String> {
    let aliases = made.aliases.borrow();
    let full = fs_name(u);
    let name = aliases.0.get(&u.ino).map(|a| a.as_os_str().as_bytes()).unwrap_or(&full);
    UnixAddr::from_path_bytes(name).map_err(|e| format!("address {}: {e}", name_text(name)))
}

/// Binds `fd` to `name`; a stale socket file at a path (nobody bound to it
/// any more) is replaced; anything else in the way is an error.
fn bind_name(fd: BorrowedFd<'_>, ty: u32, name: &[u8]) -> std::result::Result<(), String> {
    bind_name_in(fd, ty, name, None)
}

/// [`bind_name`] for a name relative to `rel_dir` (None: an absolute or
/// abstract name): bound from that directory, so that the name stays
/// relative.
fn bind_name_in(fd: BorrowedFd<'_>, ty: u32, name: &[u8], rel_dir: Option<&[u8]>) -> std::result::Result<(), String> {
    let addr = UnixAddr::from_path_bytes(name).map_err(|e| format!("address {}: {e}", name_text(name)))?;
    let bind = |fd| match rel_dir {
        Some(dir) => bind_from(fd, &addr, dir),
        None => bind_collecting(fd, &addr),
    };
    match bind(fd) {
        Ok(()) => return Ok(()),
        Err(Errno::EADDRINUSE) if is_path_name(name) => {}
        Err(e) => return Err(format!("bind to {}: {e}", name_text(name))),
    }
    let full = rel_dir.map(|d| joined(d, name)).unwrap_or_else(|| name.to_vec());
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&full));
    replaceable(path, ty)?;
    std::fs::remove_file(path).map_err(|e| format!("remove the stale socket file {}: {e}", path.display()))?;
    bind(fd).map_err(|e| format!("bind to {}: {e}", name_text(name)))
}

/// Binds `fd` to the relative `addr` from directory `dir`: in a child that
/// changes to it (crtools' own working directory stays; the child shares
/// the socket through its copy of the descriptor table).
fn bind_from(fd: BorrowedFd<'_>, addr: &UnixAddr, dir: &[u8]) -> crate::sys::Result<()> {
    use crate::sys::clone::{clone3, CloneArgs, CloneFlags, CloneResult};
    let cdir = std::ffi::CString::new(dir).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the child only makes raw system calls on data prepared here
    // (no allocation, lock or I/O) and ends with exit_group.
    match unsafe { clone3(&CloneArgs::new(CloneFlags::empty())) }? {
        CloneResult::Child => {
            let r = crate::sys::fs::chdir(&cdir).and_then(|()| sk::bind(fd, addr));
            crate::sys::misc::exit_group(r.err().map_or(0, |e| e.into_raw()))
        }
        CloneResult::Parent { child, .. } => match crate::sys::wait::wait4(child, crate::sys::wait::WALL)? {
            Some((_, crate::sys::wait::WaitStatus::Exited(0))) => Ok(()),
            Some((_, crate::sys::wait::WaitStatus::Exited(e))) => Err(Errno::new(e)),
            _ => Err(Errno::ECHILD),
        },
    }
}

/// Where socket `u`'s name leads in the file system: from its directory
/// when it is relative.
fn fs_name(u: &UnixSkEntry) -> Vec<u8> {
    match &u.rel_dir {
        Some(d) if is_path_name(&u.name) => joined(d, &u.name),
        _ => u.name.clone(),
    }
}

/// Whether the socket file at `path` may be replaced: absent, or a stale
/// socket file nobody is bound to (a dead listener's); anything else in the
/// way is an error naming it.
fn replaceable(path: &std::path::Path, ty: u32) -> std::result::Result<(), String> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if md.mode() & 0o170000 != 0o140000 {
        return Err(format!("{} exists and is not a socket", path.display()));
    }
    // Stale when nobody answers at it.
    let addr = UnixAddr::from_path_bytes(path.as_os_str().as_bytes())
        .map_err(|e| format!("address {}: {e}", path.display()))?;
    let probe = new_socket(ty).map_err(|e| format!("socket: {e}"))?;
    match sk::connect(probe.as_fd(), &addr) {
        Err(Errno::ECONNREFUSED) => Ok(()),
        Ok(()) | Err(Errno::EAGAIN) => Err(format!("{} is in use by another socket", path.display())),
        Err(Errno::EPROTOTYPE) => Err(format!("{} is bound by a socket of another type", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn set_file_attrs(u: &UnixSkEntry) -> std::result::Result<(), String> {
    let (Some((mode, uid, gid)), true) = (u.file_attrs, is_path_name(&u.name)) else { return Ok(()) };
    let full = fs_name(u);
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&full));
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn set_opts(fd: BorrowedFd<'_>, o: &UnixSkOpts, after_queue: bool) -> crate::sys::Result<()> {
    if !after_queue {
        // Doubled by the kernel on set: give half of what was read.
        if o.rcvbuf != 0 && sk::get_sol_socket_int(fd, sk::SO_RCVBUF)? as u32 != o.rcvbuf {
            sk::set_so_rcvbufforce(fd, o.rcvbuf / 2)?;
        }
        if o.sndbuf != 0 && sk::get_sol_socket_int(fd, sk::SO_SNDBUF)? as u32 != o.sndbuf {
            sk::set_so_sndbufforce(fd, o.sndbuf / 2)?;
        }
        return Ok(());
    }
    sk::set_sol_socket_int(fd, sk::SO_PASSSEC, o.passsec as i32)?;
    sk::set_sol_socket_int(fd, sk::SO_PASSCRED, o.passcred as i32)?;
    sk::set_sol_socket_timeval(fd, sk::SO_RCVTIMEO, o.rcvtimeo)?;
    sk::set_sol_socket_timeval(fd, sk::SO_SNDTIMEO, o.sndtimeo)?;
    if o.rcvlowat > 1 {
        sk::set_sol_socket_int(fd, sk::SO_RCVLOWAT, o.rcvlowat)?;
    }
    if o.peek_off >= 0 {
        sk::set_sol_socket_int(fd, sk::SO_PEEK_OFF, o.peek_off)?;
    }
    Ok(())
}

/// The engine's sockets of one restore, shared with the deferred work.
#[derive(Default)]
struct Made {
    /// By inode at dump.
    fds: HashMap<u32, OwnedFd>,
    /// Stand-in peers of connected sockets whose peer had closed: they send
    /// the queued bytes, then close.
    gone_peers: HashMap<u32, OwnedFd>,
    /// Where the files of unlinked sockets are meanwhile.
    aliases: RefCell<Aliases>,
}

/// Creates every unix socket of the images (see the module doc).
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    // A socket given with --inherit-fd is crtools' caller's: it must stand
    // alone in the images (no peer, no backlog in the tree).
    for u in images.unix.iter().filter(|u| out.has(u.id)) {
        if images.unix.iter().any(|o| o.peer == u.ino && o.ino != u.ino)
            || (u.peer != 0 && images.unix.iter().any(|o| o.ino == u.peer))
        {
            return Err(Error::refuse_global(format!(
                "{}: --inherit-fd for unix socket:[{}], which is connected inside the tree: not supported",
                cx.who(u.id),
                u.ino
            )));
        }
    }
    let owned: Vec<UnixSkEntry> = images.unix.iter().filter(|u| !out.has(u.id)).cloned().collect();
    if owned.is_empty() {
        return Ok(());
    }
    let socks = &owned;
    let by_ino: HashMap<u32, &UnixSkEntry> = socks.iter().map(|u| (u.ino, u)).collect();
    let name_of = |u: &UnixSkEntry| format!("{} (unix socket:[{}], {})", cx.who(u.id), u.ino, name_text(&u.name));
    let err = |u: &UnixSkEntry, msg: String| Error::new(format!("{}: {msg}", name_of(u)));
    if !cx.ext_unix_sk {
        if let Some(u) = socks.iter().find(|u| {
            u.ext_peer.as_ref().is_some_and(|p| !p.is_empty()) && !by_ino.contains_key(&u.peer) && u.peer != 0
        }) {
            return Err(err(
                u,
                format!(
                    "its peer {} was outside the dumped tree: restore with --ext-unix-sk to reconnect it",
                    name_text(u.ext_peer.as_deref().unwrap_or_default())
                ),
            ));
        }
    }
    let waiting = backlog_clients(socks);
    let mut made = Made::default();
    let listener_of = |name: &[u8]| socks.iter().find(|l| l.state == STATE_LISTEN as u32 && l.name == name);

    // Listeners.
    for u in socks.iter().filter(|u| u.state == STATE_LISTEN as u32) {
        let fd = new_socket(u.ty).map_err(|e| err(u, format!("socket: {e}")))?;
        bind_sock(fd.as_fd(), u, &made.aliases).map_err(|m| err(u, m))?;
        as_peer(u.peer_cred.as_ref(), Op::Listen(fd.as_fd(), u.backlog as i32)).map_err(|m| err(u, m))?;
        made.fds.insert(u.ino, fd);
    }
    // Connected stream and seqpacket sockets, in pairs.
    for u in socks.iter().filter(|u| u.id != 0 && u.ty != SOCK_DGRAM && u.state == STATE_ESTABLISHED as u32) {
        // Made with the backlog it waits in, below.
        if made.fds.contains_key(&u.ino) || waiting.contains_key(&u.ino) {
            continue;
        }
        let peer = by_ino.get(&u.peer).copied();
        match peer {
            Some(p) => {
                let accepted = accepted_side(u, p, &listener_of).map_err(|m| err(u, m))?;
                match accepted {
                    None => {
                        let (a, b) = pair_as(u, Some(p)).map_err(|m| err(u, m))?;
                        made.fds.insert(u.ino, a);
                        made.fds.insert(p.ino, b);
                    }
                    Some(acc) => {
                        let client = if acc.ino == u.ino { p } else { u };
                        let (c, a) = connect_accept(client, acc, &made, &listener_of).map_err(|m| err(u, m))?;
                        made.fds.insert(client.ino, c);
                        made.fds.insert(acc.ino, a);
                    }
                }
            }
            None => {
                if let Some(addr) = u.ext_peer.as_ref().filter(|_| u.peer != 0) {
                    // --ext-unix-sk: connect to the outside peer's address again.
                    let fd = new_socket(u.ty).map_err(|e| err(u, format!("socket: {e}")))?;
                    if !u.name.is_empty() {
                        bind_sock(fd.as_fd(), u, &made.aliases).map_err(|m| err(u, m))?;
                    }
                    let a = UnixAddr::from_path_bytes(addr).map_err(|e| err(u, format!("peer address: {e}")))?;
                    // As its holder: the peer authenticates who connects.
                    as_peer(u.holder.as_ref(), Op::Connect(fd.as_fd(), &a))
                        .map_err(|m| err(u, format!("connect to {}: {m}", name_text(addr))))?;
                    made.fds.insert(u.ino, fd);
                } else if u.name.is_empty() {
                    // Its peer had closed: a stand-in sends what is queued, then closes.
                    let (a, b) = pair_as(u, None).map_err(|m| err(u, m))?;
                    made.fds.insert(u.ino, a);
                    made.gone_peers.insert(u.ino, b);
                } else {
                    // An accepted connection whose client has gone: a
                    // stand-in client connects (so it is accepted with its
                    // listener's name), sends what is queued, then closes.
                    let stand_in = UnixSkEntry { ty: u.ty, ..Default::default() };
                    let (c, a) = connect_accept(&stand_in, u, &made, &listener_of).map_err(|m| err(u, m))?;
                    made.fds.insert(u.ino, a);
                    made.gone_peers.insert(u.ino, c);
                }
            }
        }
    }
    // Backlogs: each waiting connection connected again, oldest first.
    for l in socks.iter().filter(|u| u.state == STATE_LISTEN as u32) {
        let addr = reach(l, &made).map_err(|m| err(l, m))?;
        for &icon in &l.icons {
            let client = waiting.iter().find(|(_, &i)| i == icon).and_then(|(c, _)| by_ino.get(c).copied());
            let fd = new_socket(l.ty).map_err(|e| err(l, format!("socket: {e}")))?;
            if let Some(c) = client.filter(|c| !c.name.is_empty()) {
                bind_sock(fd.as_fd(), c, &made.aliases).map_err(|m| err(c, m))?;
            }
            // The kernel keeps who connected only on the side not accepted
            // yet, which cannot be read: its client's holder is taken.
            let who = client.and_then(|c| c.holder.as_ref());
            as_peer(who, Op::Connect(fd.as_fd(), &addr))
                .map_err(|m| err(l, format!("connect a waiting connection: {m}")))?;
            match client {
                Some(c) => {
                    made.fds.insert(c.ino, fd);
                }
                // The client is outside the tree (--ext-unix-sk): it has gone away.
                None => drop(fd),
            }
        }
    }
    // Everything else: datagram sockets and unconnected ones.
    for u in socks {
        if made.fds.contains_key(&u.ino) {
            continue;
        }
        let peer = by_ino.get(&u.peer).copied();
        let mutual =
            peer.is_some_and(|p| p.peer == u.ino && u.ty == SOCK_DGRAM && p.name.is_empty() && u.name.is_empty());
        if let (true, Some(p)) = (mutual, peer) {
            let (a, b) = pair_as(u, Some(p)).map_err(|m| err(u, m))?;
            made.fds.insert(u.ino, a);
            made.fds.insert(p.ino, b);
            continue;
        }
        if u.ty == SOCK_DGRAM
            && u.state == STATE_ESTABLISHED as u32
            && u.name.is_empty()
            && peer.is_none()
            && u.ext_peer.is_none()
        {
            // One end of a datagram pair whose other end had closed: a
            // stand-in peer sends what is queued, then closes.
            let (a, b) = pair_as(u, None).map_err(|m| err(u, m))?;
            made.fds.insert(u.ino, a);
            made.gone_peers.insert(u.ino, b);
            continue;
        }
        let fd = new_socket(u.ty).map_err(|e| err(u, format!("socket: {e}")))?;
        if !u.name.is_empty() {
            bind_sock(fd.as_fd(), u, &made.aliases).map_err(|m| err(u, m))?;
        }
        made.fds.insert(u.ino, fd);
    }
    // Files, flags, buffer sizes; descriptions to the tree.
    for u in socks {
        let fd = made.fds.get(&u.ino).ok_or_else(|| err(u, "was not created".into()))?;
        set_file_attrs(u).map_err(|m| err(u, m))?;
        set_opts(fd.as_fd(), &u.opts, false).map_err(|e| err(u, format!("buffer sizes: {e}")))?;
        let status = crate::sys::fs::OpenFlags::from_bits_retain((u.flags & OpenFlags::O_NONBLOCK).bits());
        crate::sys::fs::fcntl_setfl(fd.as_fd(), status).map_err(|e| err(u, format!("F_SETFL: {e}")))?;
        let dup = fd.try_clone().map_err(|e| err(u, format!("dup: {e}")))?;
        out.add(u.id, dup);
    }
    let socks: Vec<UnixSkEntry> = owned.clone();
    let who: HashMap<u32, String> = socks.iter().map(|u| (u.ino, name_of(u))).collect();
    let made = Rc::new(made);
    out.defer(Box::new(move |opened: &Opened| complete(&socks, &made, &who, opened)));
    Ok(())
}

/// A socket operation whose caller the kernel records as the peer's
/// credentials (SO_PEERCRED, SO_PEERGROUPS).
enum Op<'a> {
    /// listen(fd, backlog): what the listener's clients see.
    Listen(BorrowedFd<'a>, i32),
    /// connect(fd, addr): what the accepting side sees.
    Connect(BorrowedFd<'a>, &'a UnixAddr),
    /// socketpair of this type: what both ends see.
    Pair(u32),
}

/// A socketpair for `u` (and its peer `p`, when in the tree) made by the
/// process both recorded.
fn pair_as(u: &UnixSkEntry, p: Option<&UnixSkEntry>) -> std::result::Result<(OwnedFd, OwnedFd), String> {
    if let (Some(a), Some(b)) = (&u.peer_cred, p.and_then(|p| p.peer_cred.as_ref())) {
        if a != b {
            return Err(format!("a socketpair whose ends name different creators ({a} and {b})"));
        }
    }
    as_peer(u.peer_cred.as_ref(), Op::Pair(u.ty))?.ok_or_else(|| "socketpair: no descriptors".to_string())
}

/// Runs `op` as the process `cred` names, so the kernel records the same
/// credentials: in a child made with that pid (clone3 set_tid: before the
/// tree is forked, the tree's pids are free) and those ids and groups. Its
/// pid is gone again once it exits; the socket keeps its number. Without
/// `cred` (none was recorded), crtools does it itself. Returns the pair
/// of a [`Op::Pair`].
fn as_peer(cred: Option<&PeerCred>, op: Op<'_>) -> std::result::Result<Option<(OwnedFd, OwnedFd)>, String> {
    use crate::sys::clone::{clone3, CloneArgs, CloneFlags, CloneResult};
    let Some(cred) = cred else {
        return match op {
            Op::Listen(fd, backlog) => sk::listen(fd, backlog).map(|_| None).map_err(|e| format!("listen: {e}")),
            Op::Connect(fd, addr) => sk::connect(fd, addr).map(|_| None).map_err(|e| e.to_string()),
            Op::Pair(ty) => sk::socketpair(AF_UNIX, sock_type(ty), SockFlags::SOCK_CLOEXEC, 0)
                .map(Some)
                .map_err(|e| format!("socketpair: {e}")),
        };
    };
    let what = || match op {
        Op::Listen(..) => "listen",
        Op::Connect(..) => "connect",
        Op::Pair(_) => "socketpair",
    };
    let flags = crate::sys::fs::OpenFlags::O_CLOEXEC;
    let (answer_r, answer_w) = crate::sys::fs::pipe2(flags).map_err(|e| format!("pipe: {e}"))?;
    let (hold_r, hold_w) = crate::sys::fs::pipe2(flags).map_err(|e| format!("pipe: {e}"))?;
    let tids = [Pid(cred.pid)];
    let args = CloneArgs::new(CloneFlags::empty()).pidfd().set_tid(&tids);
    // A pid outside the tree may still be held by a task of the dumped
    // tree that is dying, or by its zombie: that one goes.
    if crate::proc::stat::read(Pid(cred.pid)).is_ok() {
        crate::restore::wait_gone(Pid(cred.pid)).map_err(|e| format!("its credentials name pid {}: {e}", cred.pid))?;
    }
    // SAFETY: the child only makes raw system calls on data prepared here
    // (no allocation, lock or I/O) and ends with exit_group.
    match unsafe { clone3(&args) } {
        Ok(CloneResult::Child) => {
            // Its copy of the engine's end would keep it waiting forever.
            drop(hold_w);
            drop(answer_r);
            let mut answer = [0i32; 3];
            let r = (|| -> crate::sys::Result<()> {
                // The record holds the effective ids and the groups. Real
                // and saved ids stay root, so the file system ids can too:
                // connecting to a path needs write access to the socket
                // file, which the connector had (its fsuid is not recorded).
                crate::sys::misc::setgroups(&cred.groups)?;
                crate::sys::misc::setresgid(Some(0), Some(cred.gid), Some(0))?;
                crate::sys::misc::setresuid(Some(0), Some(cred.uid), Some(0))?;
                crate::sys::misc::setfsuid(0);
                match op {
                    Op::Listen(fd, backlog) => sk::listen(fd, backlog),
                    Op::Connect(fd, addr) => sk::connect(fd, addr),
                    Op::Pair(ty) => {
                        let (a, b) = sk::socketpair(AF_UNIX, sock_type(ty), SockFlags::SOCK_CLOEXEC, 0)?;
                        answer[1] = std::os::fd::IntoRawFd::into_raw_fd(a);
                        answer[2] = std::os::fd::IntoRawFd::into_raw_fd(b);
                        Ok(())
                    }
                }
            })();
            answer[0] = r.err().map_or(0, |e| e.into_raw());
            let mut bytes = [0u8; 12];
            for (i, w) in answer.iter().enumerate() {
                bytes[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let _ = crate::sys::fs::write(answer_w.as_fd(), &bytes);
            // Alive until the engine took the pair: it closes its end.
            let _ = crate::sys::fs::read(hold_r.as_fd(), &mut [0u8; 1]);
            crate::sys::misc::exit_group(0)
        }
        Ok(CloneResult::Parent { child, pidfd }) => {
            drop(answer_w);
            drop(hold_r);
            let mut bytes = [0u8; 12];
            let n = crate::sys::fs::read(answer_r.as_fd(), &mut bytes).unwrap_or(0);
            let word = |i: usize| i32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
            let out = if n != 12 {
                Err(format!("{} as pid {}: the helper died", what(), cred.pid))
            } else if word(0) != 0 {
                Err(format!("{} as {cred}: {}", what(), Errno::new(word(0))))
            } else if let Op::Pair(_) = op {
                let pidfd = pidfd.ok_or_else(|| "clone3 gave no pidfd".to_string())?;
                let get =
                    |fd| crate::sys::pidfd::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| format!("pidfd_getfd: {e}"));
                get(word(1)).and_then(|a| get(word(2)).map(|b| Some((a, b))))
            } else {
                Ok(None)
            };
            drop(hold_w);
            let _ = crate::sys::wait::wait4(child, crate::sys::wait::WALL);
            out
        }
        Err(Errno::EEXIST) => Err(format!(
            "its credentials name pid {}, which another process holds now: SO_PEERCRED cannot be made the same",
            cred.pid
        )),
        Err(e) => Err(format!("clone3 as pid {}: {e}", cred.pid)),
    }
}

/// Which side of a connected pair was accepted from a listener (it carries
/// the listener's name), or None for a socketpair.
fn accepted_side<'a>(
    u: &'a UnixSkEntry,
    p: &'a UnixSkEntry,
    listener_of: &dyn Fn(&[u8]) -> Option<&'a UnixSkEntry>,
) -> std::result::Result<Option<&'a UnixSkEntry>, String> {
    match (u.name.is_empty(), p.name.is_empty()) {
        (true, true) => Ok(None),
        (false, true) => Ok(Some(u)),
        (true, false) => Ok(Some(p)),
        (false, false) => match (listener_of(&u.name).is_some(), listener_of(&p.name).is_some()) {
            (true, false) => Ok(Some(u)),
            (false, true) => Ok(Some(p)),
            _ => Err(format!(
                "connected to socket:[{}] and both are named ({} and {}): which one was accepted is unknown",
                p.ino,
                name_text(&u.name),
                name_text(&p.name)
            )),
        },
    }
}

/// Connects a new client to `acc`'s name and accepts it there: from the
/// listener of that name, or a temporary one standing in for a listener
/// that has closed.
fn connect_accept<'a>(
    client: &UnixSkEntry,
    acc: &UnixSkEntry,
    made: &Made,
    listener_of: &dyn Fn(&[u8]) -> Option<&'a UnixSkEntry>,
) -> std::result::Result<(OwnedFd, OwnedFd), String> {
    let acc_path = fs_name(acc);
    let mut addr =
        UnixAddr::from_path_bytes(&acc_path).map_err(|e| format!("address {}: {e}", name_text(&acc.name)))?;
    let temp;
    // A temporary listener's file, where no file was: removed once it has
    // accepted (the listener had closed and its file was unlinked).
    let mut temp_file = None;
    // The client's SO_PEERCRED is a copy of what its listener recorded at
    // listen; the accepted side's is who connected.
    let listener = match listener_of(&acc.name).and_then(|l| made.fds.get(&l.ino).map(|fd| (l, fd))) {
        Some((l, fd)) => {
            addr = reach(l, made)?;
            if let (Some(want), Some(has)) = (&client.peer_cred, &l.peer_cred) {
                if want != has && client.id != 0 {
                    return Err(format!(
                        "connected through its listener socket:[{}] when that listened with other \
                         credentials ({want}, now {has}): not restorable exactly",
                        l.ino
                    ));
                }
            }
            fd.as_fd()
        }
        None => {
            temp = new_socket(acc.ty).map_err(|e| format!("socket: {e}"))?;
            let path = addr.path().map(std::path::Path::to_path_buf);
            if path.as_ref().is_some_and(|p| std::fs::symlink_metadata(p).is_err()) {
                temp_file = path;
            }
            bind_name_in(temp.as_fd(), acc.ty, &acc.name, acc.rel_dir.as_deref())?;
            as_peer(client.peer_cred.as_ref(), Op::Listen(temp.as_fd(), 1))?;
            temp.as_fd()
        }
    };
    let c = new_socket(client.ty).map_err(|e| format!("socket: {e}"))?;
    if !client.name.is_empty() {
        bind_sock(c.as_fd(), client, &made.aliases)?;
    }
    as_peer(acc.peer_cred.as_ref(), Op::Connect(c.as_fd(), &addr))
        .map_err(|m| format!("connect to {}: {m}", name_text(&acc.name)))?;
    let (a, _) = sk::accept4(listener, SockFlags::SOCK_CLOEXEC).map_err(|e| format!("accept: {e}"))?;
    if let Some(p) = temp_file {
        std::fs::remove_file(&p).map_err(|e| format!("unlink the stand-in listener's {}: {e}", p.display()))?;
    }
    Ok((c, a))
}

/// Once every socket is connected and its queue refilled through the
/// files at their names: a file unlinked at dump goes, one renamed after
/// bind is renamed.
fn finish_files(socks: &[UnixSkEntry], made: &Made, err: impl Fn(&UnixSkEntry, String) -> Error) -> Result<()> {
    let mut aliases = made.aliases.borrow_mut();
    for u in socks.iter().filter(|u| u.unlinked && is_path_name(&u.name) && !aliases.0.contains_key(&u.ino)) {
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&u.name));
        std::fs::remove_file(path).map_err(|e| err(u, format!("unlink {}: {e}", path.display())))?;
    }
    aliases.remove_all().map_err(Error::new)?;
    drop(aliases);
    for u in socks.iter().filter(|u| is_path_name(&u.name)) {
        let Some(to) = &u.moved_to else { continue };
        let (from, to) = (std::ffi::OsStr::from_bytes(&u.name), std::path::Path::new(std::ffi::OsStr::from_bytes(to)));
        replaceable(to, u.ty).map_err(|m| err(u, m))?;
        std::fs::rename(from, to).map_err(|e| err(u, format!("rename the socket file to {}: {e}", to.display())))?;
    }
    Ok(())
}

/// With the tree in place: queues, datagram connections, shutdown, options.
fn complete(socks: &[UnixSkEntry], made: &Made, who: &HashMap<u32, String>, opened: &Opened) -> Result<()> {
    let err =
        |u: &UnixSkEntry, msg: String| Error::new(format!("{}: {msg}", who.get(&u.ino).cloned().unwrap_or_default()));
    let by_name: HashMap<&[u8], &UnixSkEntry> =
        socks.iter().filter(|u| !u.name.is_empty()).map(|u| (u.name.as_slice(), u)).collect();
    let mut temps: HashMap<Vec<u8>, OwnedFd> = HashMap::new();
    for u in socks.iter().filter(|u| !u.queue.is_empty()) {
        let dest = made.fds.get(&u.ino).ok_or_else(|| err(u, "was not created".into()))?;
        for m in &u.queue {
            let creds = m.creds.map(|(pid, uid, gid)| UCred { pid, uid, gid });
            let mut rights = Vec::with_capacity(m.fds.len());
            for &id in &m.fds {
                rights.push(opened.get(id).ok_or_else(|| err(u, format!("file {id} in flight was not restored")))?);
            }
            let sent = if u.ty != SOCK_DGRAM {
                let sender = made
                    .fds
                    .get(&u.peer)
                    .or_else(|| made.gone_peers.get(&u.ino))
                    .ok_or_else(|| err(u, "no peer to send its queued bytes".into()))?;
                sk::send_msg(sender.as_fd(), &m.data, None, creds.as_ref(), &rights)
            } else {
                let to = if u.name.is_empty() { None } else { Some(reach(u, made).map_err(|m| err(u, m))?) };
                let sender: BorrowedFd<'_> = if !m.from.is_empty() {
                    match by_name.get(m.from.as_slice()).and_then(|s| made.fds.get(&s.ino)) {
                        Some(s) => s.as_fd(),
                        None => {
                            if is_path_name(&m.from) && m.from[0] != b'/' {
                                // Which directory it was relative to is not known.
                                return Err(err(
                                    u,
                                    format!(
                                        "a datagram queued from {}, a relative name no socket of the tree has: \
                                         not supported",
                                        name_text(&m.from)
                                    ),
                                ));
                            }
                            if !temps.contains_key(&m.from) {
                                let t = new_socket(SOCK_DGRAM).map_err(|e| err(u, format!("socket: {e}")))?;
                                bind_name(t.as_fd(), SOCK_DGRAM, &m.from).map_err(|e| {
                                    err(u, format!("a sender stand-in for {}: {e}", name_text(&m.from)))
                                })?;
                                temps.insert(m.from.clone(), t);
                            }
                            temps[&m.from].as_fd()
                        }
                    }
                } else if to.is_none() {
                    // Its peer, or the stand-in for a peer that had closed.
                    made.fds
                        .get(&u.peer)
                        .or_else(|| made.gone_peers.get(&u.ino))
                        .map(|f| f.as_fd())
                        .ok_or_else(|| err(u, "no peer to send its queue".into()))?
                } else {
                    // An unnamed sender: any unbound socket says the same.
                    if let std::collections::hash_map::Entry::Vacant(v) = temps.entry(Vec::new()) {
                        v.insert(new_socket(SOCK_DGRAM).map_err(|e| err(u, format!("socket: {e}")))?);
                    }
                    temps[&Vec::new()].as_fd()
                };
                sk::send_msg(sender, &m.data, to.as_ref(), creds.as_ref(), &rights)
            };
            match sent {
                Ok(n) if n == m.data.len() => {}
                Ok(n) => return Err(err(u, format!("queued message sent short ({n} of {})", m.data.len()))),
                Err(e) => return Err(err(u, format!("put back its queued data: {e}"))),
            }
        }
        let _ = dest;
    }
    drop(temps);
    // Datagram sockets connect now: a connected socket takes datagrams
    // from its peer only.
    for u in socks.iter().filter(|u| u.ty == SOCK_DGRAM) {
        let fd = &made.fds[&u.ino];
        let target = match (socks.iter().find(|p| p.ino == u.peer && u.peer != 0), &u.ext_peer) {
            (Some(p), _) if p.name.is_empty() => {
                if p.peer != u.ino {
                    return Err(err(u, format!("connected to the unnamed socket:[{}]: not supported yet", p.ino)));
                }
                continue; // a socketpair, connected already
            }
            (Some(p), _) => {
                let a = reach(p, made).map_err(|m| err(u, m))?;
                sk::connect(fd.as_fd(), &a).map_err(|e| err(u, format!("connect to {}: {e}", name_text(&p.name))))?;
                continue;
            }
            (None, Some(a)) if u.peer != 0 && !a.is_empty() => a.clone(),
            _ => continue,
        };
        let a = UnixAddr::from_path_bytes(&target).map_err(|e| err(u, format!("{e}")))?;
        sk::connect(fd.as_fd(), &a).map_err(|e| err(u, format!("connect to {}: {e}", name_text(&target))))?;
    }
    for u in socks {
        let fd = &made.fds[&u.ino];
        let how = match u.shutdown & (RCV_SHUTDOWN | SEND_SHUTDOWN) {
            0 => None,
            RCV_SHUTDOWN => Some(sk::SHUT_RD),
            SEND_SHUTDOWN => Some(sk::SHUT_WR),
            _ => Some(sk::SHUT_RDWR),
        };
        if let (Some(how), false) = (how, made.gone_peers.contains_key(&u.ino)) {
            match sk::shutdown(fd.as_fd(), how) {
                Ok(()) | Err(Errno::ENOTCONN) => {}
                Err(e) => return Err(err(u, format!("shutdown: {e}"))),
            }
        }
        set_opts(fd.as_fd(), &u.opts, true).map_err(|e| err(u, format!("options: {e}")))?;
    }
    finish_files(socks, made, err)
}
