//! epoll (see epoll(7)): every watch with its events mask (EPOLLET,
//! EPOLLONESHOT, EPOLLEXCLUSIVE, EPOLLWAKEUP included) and user data, from
//! fdinfo `tfd:` lines.
//!
//! An epoll item is keyed by the watched file *and* the fd number it was
//! added under, and holds no reference on the file. Dump matches each
//! watch to a description the tree holds with kcmp(KCMP_EPOLL_TFD), once
//! every task is dumped ([`finish_dump`]): the fd number may since have
//! been closed or reused in the owner's table (the description is then
//! held under another number or by another task), the same description may
//! be watched under two numbers, and the watched file may be another epoll.
//! A watched file that no task holds is kept alive only by something else
//! (a mapping, a message in flight): refused by name.
//!
//! Restore creates each epoll in the engine after every other kind (its
//! targets exist by then) and adds the watches in a helper child of the
//! engine: it puts each target description at the watch's own fd number
//! in its copy of the descriptor table and calls EPOLL_CTL_ADD, so the
//! item gets the same (file, number) key; the child then exits, and the
//! items stay with the epoll, which the tree inherits. A watch on a
//! description that only exists once the tree does (a pidfd of a task of
//! the tree), or on a signalfd (whose poll hooks into the signal handlers
//! of the task that adds the watch), is added afterwards, by remote
//! syscalls in the first task holding the epoll ([`add_late`]), with the
//! same care for the number.
//!
//! Readiness: adding a watch polls its target, so whatever is ready (data
//! in a pipe or socket, a nonzero eventfd, unread timer ticks) is reported
//! again after restore. For an edge-triggered item whose edge was already
//! taken by epoll_wait before the dump but whose condition still holds
//! (the data still unread), the restored item reports it once more: one
//! extra wakeup, which edge-triggered readers handle (they read until
//! EAGAIN), never a lost one.
//!
//! A disabled EPOLLONESHOT item (it fired; its mask holds no events until
//! EPOLL_CTL_MOD) cannot simply be added again: EPOLL_CTL_ADD always adds
//! EPOLLERR|EPOLLHUP, and the item would report those. The helper adds it
//! first, alone in its set, with every event its target has now, and
//! takes that event with epoll_wait: the kernel disables it exactly as
//! the program saw it. A target with no event at all (a full pipe with no
//! reader...) cannot fire: its item comes back armed for EPOLLERR and
//! EPOLLHUP only.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::events::{EpollEntry, EpollWatch};
use crate::image::files::{FdKind, FdinfoEntry, OpenFlags};
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::event::{self, EpollEvent};
use crate::sys::misc::{kcmp_epoll_tfd, KcmpEpollSlot, KcmpOrder};
use crate::sys::{fs, Pid};
use std::os::fd::{AsFd, RawFd};

/// Dumps one epoll instance (its watches are matched in [`finish_dump`]).
pub fn dump(
    _cx: &FdCtx,
    pid: Pid,
    fd: i32,
    _target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    out.ev.epoll.push(EpollEntry { id, flags, watches: Vec::new() });
    out.ev.epoll_pending.push((pid, fd, id, info.epoll_targets.clone()));
    Ok(())
}

/// A description the tree holds: its kind, device and inode, and the
/// first (task, fd) holding it.
pub struct Candidate {
    /// Kind.
    pub kind: FdKind,
    /// Device (stat encoding).
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// A task holding it.
    pub pid: Pid,
    /// Its fd number there.
    pub fd: i32,
    /// The file object id.
    pub id: u32,
}

/// Matches every watch of every epoll to a dumped description.
pub fn finish_dump(out: &mut FileImages, cands: &[Candidate]) -> Result<()> {
    for (pid, efd, id, targets) in std::mem::take(&mut out.ev.epoll_pending) {
        let mut watches = Vec::with_capacity(targets.len());
        for (i, t) in targets.iter().enumerate() {
            // Which of the registrations under this number it is, in the
            // kernel's order (fdinfo prints that order too).
            let toff = targets[..i].iter().filter(|o| o.tfd == t.tfd).count() as u32;
            let slot = KcmpEpollSlot { efd: efd as u32, tfd: t.tfd as u32, toff };
            let dev = t.sdev.map(event::kdev_to_dev);
            let mut found = None;
            for c in cands {
                if t.ino.is_some_and(|ino| ino != c.ino) || dev.is_some_and(|d| d != c.dev) {
                    continue;
                }
                match kcmp_epoll_tfd(c.pid, c.fd, pid, &slot) {
                    Ok(KcmpOrder::Equal) => {
                        found = Some(c);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(Error::task(pid, format!("fd {efd}: epoll: kcmp with watch on fd {}: {e}", t.tfd)))
                    }
                }
            }
            let Some(c) = found else {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "fd {efd}: epoll watches fd {} (inode {}), a file no task of the tree holds a descriptor of",
                        t.tfd,
                        t.ino.unwrap_or(0)
                    ),
                ));
            };
            watches.push(EpollWatch { tfd: t.tfd, target: c.id, events: t.events, data: t.data });
        }
        log::debug!(task = pid.0; "task {pid}: fd {efd}: epoll with {} watches", watches.len());
        if let Some(e) = out.ev.epoll.iter_mut().find(|e| e.id == id) {
            e.watches = watches;
        }
    }
    Ok(())
}

/// One EPOLL_CTL_ADD for the helper child.
#[derive(Clone, Copy)]
struct Add {
    ep: RawFd,
    tfd: RawFd,
    target: RawFd,
    ev: EpollEvent,
}

/// Creates every epoll instance and adds its watches.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    if images.ev.epoll.is_empty() {
        return Ok(());
    }
    for e in &images.ev.epoll {
        let what = format!("epoll (file {})", e.id);
        let fd = event::epoll_create1(event::EPOLL_CLOEXEC)
            .map_err(|er| Error::new(format!("{what}: epoll_create1: {er}")))?;
        fs::fcntl_setfl(fd.as_fd(), fs::OpenFlags::from_bits_retain(e.flags.bits()))
            .map_err(|er| Error::new(format!("{what}: set its flags: {er}")))?;
        out.add(e.id, fd);
    }
    // Every description the adds use must sit above every number they
    // put a target at, so the child clobbers none of them.
    let top = images.ev.epoll.iter().flat_map(|e| e.watches.iter().map(|w| w.tfd)).max().unwrap_or(0);
    out.place(top + 1)?;
    let mut adds = Vec::new();
    for e in &images.ev.epoll {
        let ep = out.raw(e.id).expect("just added");
        // A signalfd polls the signals of whoever adds it, and a late
        // description does not exist yet: an epoll watching one gets all
        // its watches in the task (so its fired one-shot items can still
        // be fired alone, first).
        let in_task = e.watches.iter().any(|w| {
            images.kind_of(w.target) == Some(FdKind::Signalfd) || (out.raw(w.target).is_none() && out.is_late(w.target))
        });
        if in_task {
            for w in &e.watches {
                out.late_epoll.push(LateWatch {
                    ep: e.id,
                    tfd: w.tfd,
                    target: w.target,
                    ev: EpollEvent { events: w.events, data: w.data },
                    done: false,
                });
            }
            continue;
        }
        for w in &e.watches {
            let target = out.raw(w.target).ok_or_else(|| {
                Error::new(format!(
                    "{}: epoll watches fd {} (file {}), which was not restored",
                    cx.who(e.id),
                    w.tfd,
                    w.target
                ))
            })?;
            adds.push(Add { ep, tfd: w.tfd, target, ev: EpollEvent { events: w.events, data: w.data } });
        }
    }
    if adds.is_empty() {
        return Ok(());
    }
    run_adds(&adds).map_err(|(i, e)| {
        let a = adds[i];
        let owner = images.ev.epoll.iter().find(|e| e.watches.iter().any(|w| w.tfd == a.tfd)).map(|e| e.id);
        Error::new(format!(
            "{}: epoll: add the watch on fd {} (events {:#x}): {e}",
            owner.map(|id| cx.who(id)).unwrap_or_default(),
            a.tfd,
            { a.ev.events }
        ))
    })
}

/// EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE: what a fired
/// one-shot item keeps.
const EP_PRIVATE_BITS: u32 = (1 << 29) | (1 << 30) | (1 << 31) | (1 << 28);
const EPOLLONESHOT: u32 = 1 << 30;

fn disabled_oneshot(ev: u32) -> bool {
    ev & EPOLLONESHOT != 0 && ev & !EP_PRIVATE_BITS == 0
}

/// In the helper child: puts the target at its number and adds the watch
/// (a disabled one-shot item with what its target has now, to be fired).
fn add_one(a: &Add) -> crate::sys::Result<()> {
    event::dup3_raw(a.target, a.tfd)?;
    let mut ev = a.ev;
    if disabled_oneshot(ev.events) {
        // Every poll bit (EPOLLIN .. EPOLLRDHUP, EPOLLERR, EPOLLHUP).
        let have = event::poll_now(a.tfd, 0x3fff)?;
        ev.events |= have as u32;
    }
    // SAFETY: the number is an epoll of the engine's (inherited by this
    // short-lived child); the borrow lasts for this call.
    let ep = unsafe { std::os::fd::BorrowedFd::borrow_raw(a.ep) };
    event::epoll_ctl_add(ep, a.tfd, &ev)
}

/// Runs the adds in a child of the engine; on failure, which add and why.
fn run_adds(adds: &[Add]) -> std::result::Result<(), (usize, String)> {
    use crate::sys::clone::{fork, CloneResult};
    let fail = |m: String| (0usize, m);
    let (r, w) =
        fs::pipe2(fs::OpenFlags::O_CLOEXEC | fs::OpenFlags::O_NONBLOCK).map_err(|e| fail(format!("pipe2: {e}")))?;
    // SAFETY: the child only makes raw syscalls (dup3, epoll_ctl, write)
    // on memory prepared before the fork, then exit_group.
    let child = match unsafe { fork() }.map_err(|e| fail(format!("fork a helper: {e}")))? {
        CloneResult::Child => {
            // Disabled one-shot items first, each set's alone, fired at once.
            let first = |a: &Add| disabled_oneshot(a.ev.events);
            let order = adds
                .iter()
                .enumerate()
                .filter(|(_, a)| first(a))
                .chain(adds.iter().enumerate().filter(|(_, a)| !first(a)));
            let fire = || {
                let mut buf = [EpollEvent::default(); 64];
                for b in adds.iter().filter(|b| first(b)) {
                    // SAFETY: as in add_one.
                    let ep = unsafe { std::os::fd::BorrowedFd::borrow_raw(b.ep) };
                    while let Ok(1..) = event::epoll_wait_now(ep, &mut buf) {}
                }
            };
            let mut fired = false;
            for (i, a) in order {
                if !first(a) && !fired {
                    fired = true;
                    fire();
                }
                let r = add_one(a);
                if let Err(e) = r {
                    let mut msg = [0u8; 8];
                    msg[..4].copy_from_slice(&(i as u32).to_ne_bytes());
                    msg[4..].copy_from_slice(&(e.into_raw()).to_ne_bytes());
                    let _ = fs::write(w.as_fd(), &msg);
                    crate::sys::misc::exit_group(1);
                }
            }
            if !fired {
                fire();
            }
            crate::sys::misc::exit_group(0)
        }
        CloneResult::Parent { child, .. } => child,
    };
    drop(w);
    let status = crate::sys::wait::wait4(child, crate::sys::wait::WALL)
        .map_err(|e| fail(format!("wait for the helper: {e}")))?;
    let mut msg = [0u8; 8];
    if let Ok(8) = fs::read(r.as_fd(), &mut msg) {
        let i = u32::from_ne_bytes(msg[..4].try_into().expect("4 bytes")) as usize;
        let e = crate::sys::Errno::new(i32::from_ne_bytes(msg[4..].try_into().expect("4 bytes")));
        return Err((i.min(adds.len() - 1), e.to_string()));
    }
    match status {
        Some((_, crate::sys::wait::WaitStatus::Exited(0))) => Ok(()),
        st => Err(fail(format!("the helper ended with {st:?}"))),
    }
}

/// A watch added by remote syscalls in the first task that holds the
/// epoll, after every task opened its late descriptions: every watch of an
/// epoll that watches a description existing only once the tree does (a
/// pidfd of a task of the tree) or a signalfd (whose poll registers on the
/// adding task's signal handlers: added by the engine's helper it would
/// never wake up).
#[derive(Debug)]
pub struct LateWatch {
    /// The epoll's file object id.
    pub ep: u32,
    /// The number it was added under.
    pub tfd: i32,
    /// The watched file object id.
    pub target: u32,
    /// Events and data.
    pub ev: EpollEvent,
    /// Added.
    pub done: bool,
}

const F_DUPFD: u64 = 0;
const F_GETFD: u64 = 1;
const O_CLOEXEC: u64 = 0o2000000;

/// Adds, in the task `t` (on its final trap; `scratch`: writable memory of
/// its restorer plan), the late watches of the epolls it holds: the target
/// (its own, or taken from the task that opened it with pidfd_getfd) is
/// put at the watch's number for EPOLL_CTL_ADD, and whatever the task has
/// at that number is put back afterwards.
pub fn add_late(
    t: &mut crate::infect::Tracee,
    scratch: u64,
    fds: &[FdinfoEntry],
    opened: &mut Opened,
    seen: &super::files::LateSeen,
    holders: &std::collections::BTreeMap<u32, (Pid, i32)>,
) -> Result<()> {
    use crate::error::Context;
    use crate::sys::Sysno;
    let pid = t.pid();
    // Scratch layout: epoll_event at +0, pollfd at +16, events out at +64.
    let (ev_at, poll_at, out_at) = (scratch, scratch + 16, scratch + 64);
    let mut eps: Vec<u32> = opened.late_epoll.iter().filter(|w| !w.done).map(|w| w.ep).collect();
    eps.dedup();
    for ep_id in eps {
        let Some(e) = fds.iter().find(|f| f.id == ep_id) else { continue };
        let epfd = e.fd as u64;
        // Fired one-shot items first, alone in the set, then fired.
        let mut order: Vec<usize> = (0..opened.late_epoll.len())
            .filter(|&i| opened.late_epoll[i].ep == ep_id && !opened.late_epoll[i].done)
            .collect();
        order.sort_by_key(|&i| !disabled_oneshot(opened.late_epoll[i].ev.events));
        let mut fired = false;
        for i in order {
            let w = &opened.late_epoll[i];
            let oneshot = disabled_oneshot(w.ev.events);
            let what = format!("fd {}: epoll watch on fd {} (file {})", e.fd, w.tfd, w.target);
            let mut sys = |nr: Sysno, a: [u64; 6], step: &'static str| -> Result<u64> {
                t.remote_syscall_ok(nr, a, step).ctx(pid, &format!("{what}: {step}"))
            };
            if !oneshot && !fired {
                fired = true;
                while sys(Sysno::epoll_wait, [epfd, out_at, 64, 0, 0, 0], "epoll_wait")? > 0 {}
            }
            let own = fds.iter().find(|f| f.id == w.target).map(|f| (pid, f.fd as i32));
            let (opid, ofd) = own
                .or_else(|| seen.get(w.target))
                .or_else(|| holders.get(&w.target).copied())
                .ok_or_else(|| Error::task(pid, format!("{what}: no task holds its target")))?;
            // The target in this task, under some number.
            let (src, fetched) = if opid == pid {
                (ofd as u64, false)
            } else {
                let pfd = sys(Sysno::pidfd_open, [opid.0 as u64, 0, 0, 0, 0, 0], "pidfd_open")?;
                let got = sys(Sysno::pidfd_getfd, [pfd, ofd as u64, 0, 0, 0, 0], "pidfd_getfd");
                sys(Sysno::close, [pfd, 0, 0, 0, 0, 0], "close")?;
                (got?, true)
            };
            let tfd = w.tfd as u64;
            let mut saved = None;
            if src != tfd {
                // What the task has at that number, kept aside meanwhile.
                if let Ok(fl) = sys(Sysno::fcntl, [tfd, F_GETFD, 0, 0, 0, 0], "F_GETFD") {
                    let aside = sys(Sysno::fcntl, [tfd, F_DUPFD, 0, 0, 0, 0], "F_DUPFD")?;
                    saved = Some((aside, fl));
                }
                sys(Sysno::dup3, [src, tfd, 0, 0, 0, 0], "dup3")?;
            }
            let mut events = w.ev.events;
            if oneshot {
                // With every event its target has now, to fire at once.
                let mut pfd = [0u8; 8];
                pfd[..4].copy_from_slice(&(tfd as i32).to_ne_bytes());
                pfd[4..6].copy_from_slice(&0x3fffu16.to_ne_bytes());
                crate::sys::process_vm::write_all(pid, poll_at, &pfd).ctx(pid, "write a pollfd")?;
                sys(Sysno::poll, [poll_at, 1, 0, 0, 0, 0], "poll")?;
                let back = crate::sys::process_vm::read_vec(pid, poll_at + 6, 2).ctx(pid, "read a pollfd")?;
                events |= u16::from_ne_bytes([back[0], back[1]]) as u32;
            }
            let mut ev = [0u8; 12];
            ev[..4].copy_from_slice(&events.to_ne_bytes());
            ev[4..].copy_from_slice(&{ w.ev.data }.to_ne_bytes());
            crate::sys::process_vm::write_all(pid, ev_at, &ev).ctx(pid, "write an epoll_event")?;
            let added = sys(Sysno::epoll_ctl, [epfd, event::EPOLL_CTL_ADD as u64, tfd, ev_at, 0, 0], "epoll_ctl");
            if src != tfd {
                match saved {
                    Some((aside, fl)) => {
                        let cl = if fl & 1 != 0 { O_CLOEXEC } else { 0 };
                        sys(Sysno::dup3, [aside, tfd, cl, 0, 0, 0], "dup3 back")?;
                        sys(Sysno::close, [aside, 0, 0, 0, 0, 0], "close")?;
                    }
                    None => {
                        sys(Sysno::close, [tfd, 0, 0, 0, 0, 0], "close")?;
                    }
                }
            }
            if fetched {
                sys(Sysno::close, [src, 0, 0, 0, 0, 0], "close")?;
            }
            added?;
            log::debug!(task = pid.0; "task {pid}: {what} added");
            opened.late_epoll[i].done = true;
        }
        if !fired {
            let what = format!("fd {}: epoll", e.fd);
            while t.remote_syscall_ok(Sysno::epoll_wait, [epfd, out_at, 64, 0, 0, 0], "epoll_wait").ctx(pid, &what)? > 0
            {
            }
        }
    }
    Ok(())
}

/// Fails if a late watch found no task holding its epoll.
pub fn check_late_done(opened: &Opened) -> Result<()> {
    match opened.late_epoll.iter().find(|w| !w.done) {
        Some(w) => Err(Error::new(format!(
            "epoll (file {}): its watch on fd {} (file {}) was not added: no task holds the epoll",
            w.ep, w.tfd, w.target
        ))),
        None => Ok(()),
    }
}
