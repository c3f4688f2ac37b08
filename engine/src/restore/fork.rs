//! Creating the tree: each task is forked with its pid (clone3 set_tid, or
//! ns_last_pid where clone3 has none), still running crtools' own code
//! ([`child_main`]): it sets up its session and group, forks its group
//! helpers and children, then maps its restorer region and jumps in.
//! Zombies end at once the way they ended; group helpers lead their group
//! until the engine kills them.
//!
//! Everything here after a fork runs in the child of a possibly
//! multi-threaded process: raw syscalls on memory prepared before the
//! fork only, no allocation, no locks.
use super::{Prepared, Session, PID_WAIT, SIGCHLD};
use crate::blobs;
use crate::error::{Context, Error, Result};
use crate::infect::Tracee;
use crate::sys::clone::{clone3, CloneArgs, CloneFlags, CloneResult};
use crate::sys::ptrace;
use crate::sys::wait;
use crate::sys::{Errno, Pid};
use restorer_plan as rp;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// /proc/sys/kernel/ns_last_pid, opened before any fork for the fallback of
/// [`fork_exact`] (-1 when it cannot be opened).
static NS_LAST_PID_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Set when a fork had to go through ns_last_pid: another process forking
/// in between can make a child get the wrong pid, which it then gives up
/// (it exits by itself, its parent reaps it and tries again).
static FALLBACK_USED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the tree is being forked through ns_last_pid (see [`fork_exact`]).
pub(super) fn used_fallback() -> bool {
    FALLBACK_USED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set when fault injection asks to behave as without clone3 set_tid.
static NO_SET_TID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Opens ns_last_pid for [`fork_exact`]; the file stays open for the run.
fn open_ns_last_pid() {
    if crate::fault::hit(crate::fault::Fault::RestoreNoSetTid) {
        NO_SET_TID.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    use std::os::fd::IntoRawFd;
    if NS_LAST_PID_FD.load(std::sync::atomic::Ordering::Relaxed) < 0 {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/proc/sys/kernel/ns_last_pid") {
            NS_LAST_PID_FD.store(f.into_raw_fd(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Forks a child with pid `pid` (sharing what `flags` say: CLONE_FILES,
/// CLONE_FS): clone3 with set_tid, or, on kernels without it, by writing
/// `pid - 1` to ns_last_pid right before a fork (the child checks it got
/// the pid and gives up if not; nothing shared then).
///
/// # Safety
/// As for [`clone3`]: the child may only do async-signal-safe work. This
/// function itself allocates nothing.
unsafe fn fork_exact(pid: Pid, exit_signal: i32, flags: CloneFlags) -> std::result::Result<CloneResult, Errno> {
    let tids = [pid];
    let args = CloneArgs::new(flags).exit_signal(exit_signal).set_tid(&tids);
    if !NO_SET_TID.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: forwarded to the caller's contract.
        match unsafe { clone3(&args) } {
            // No clone3, or no set_tid in it.
            Err(Errno::ENOSYS) | Err(Errno::E2BIG) => {}
            r => return r,
        }
    }
    let fd = NS_LAST_PID_FD.load(std::sync::atomic::Ordering::Relaxed);
    // fork() gives SIGCHLD only and shares nothing: the rest needs clone3.
    if fd < 0 || exit_signal != SIGCHLD || !flags.is_empty() {
        return Err(Errno::ENOSYS);
    }
    // (In the engine: tells run_tree that wrong-pid children may show up.)
    FALLBACK_USED.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut buf = [0u8; 12];
    let mut n = buf.len();
    let mut v = (pid.0 - 1) as u32;
    loop {
        n -= 1;
        buf[n] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // SAFETY: the descriptor was opened before any fork and is never closed.
    let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    crate::sys::fs::pwrite(file, &buf[n..], 0)?;
    // SAFETY: forwarded to the caller's contract.
    match unsafe { crate::sys::clone::fork() }? {
        CloneResult::Child if crate::sys::misc::getpid() != pid => crate::sys::misc::exit_group(EXIT_WRONG_PID),
        CloneResult::Parent { child, .. } if child != pid => {
            // Someone else took the pid first: the wrong child exits by itself.
            let _ = wait::wait4(child, wait::WALL);
            Err(Errno::EEXIST)
        }
        r => Ok(r),
    }
}

/// Why `pid` cannot be created, when no task has it but a process keeps it
/// in use as the id of its process group or session (the dumped task led
/// it and that process, outside the tree, stayed in it).
pub(super) fn held_pid(pid: Pid) -> Option<Error> {
    if crate::proc::stat::read(pid).is_ok() {
        return None;
    }
    let (holder, what) = crate::proc::misc::find_id_holder(pid)?;
    Some(Error::task(
        pid,
        format!(
            "cannot be created again: process {holder}, outside the tree, is still in the {what} {pid} \
             the task led at dump; the pid is free once that process leaves it or exits"
        ),
    ))
}

/// Forks the root with its pid, in new namespaces of the kinds `ns`
/// names. It blocks on `go` until the engine has seized it, then runs
/// [`child_main`].
pub(super) fn spawn_root(all: &[Prepared], go: &OwnedFd, ns: CloneFlags) -> Result<Tracee> {
    let pid = all[0].pid;
    let deadline = Instant::now() + PID_WAIT;
    open_ns_last_pid();
    loop {
        // SAFETY: the child runs only `child_main`, which makes raw syscalls
        // on memory prepared before the fork and never returns.
        match unsafe { fork_exact(pid, SIGCHLD, ns) } {
            Ok(CloneResult::Child) => {
                let mut msg = [0u8; 16];
                match crate::sys::fs::read(go.as_fd(), &mut msg) {
                    Ok(16) => {}
                    _ => crate::sys::misc::exit_group(101),
                }
                // SAFETY: see child_main's contract; all inputs were built before the fork.
                unsafe { child_main(all, 0, &msg) }
            }
            Ok(CloneResult::Parent { child, .. }) => {
                if child != pid {
                    let _ = crate::sys::signal::kill(child, 9);
                    return Err(Error::task(pid, format!("clone3 gave pid {child}")));
                }
                break;
            }
            Err(Errno::EEXIST) => {
                if let Some(e) = held_pid(pid) {
                    return Err(e);
                }
                if Instant::now() > deadline {
                    return Err(Error::task(pid, "pid is in use by another process"));
                }
                // The dumped task may still be dying or waiting to be reaped.
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::task(pid, format!("create the task with its pid (clone3 set_tid): {e}"))),
        }
    }
    // Seccomp filters the restorer installs stay suspended for the engine's
    // work that follows (inherited by every task and thread forked from
    // here) until it lets the tree go.
    let opts = ptrace::PTRACE_O_EXITKILL | ptrace::PTRACE_O_TRACEFORK | ptrace::PTRACE_O_TRACECLONE;
    let t = match Tracee::seize_with(pid, opts | ptrace::PTRACE_O_SUSPEND_SECCOMP) {
        Ok(t) => Ok(t),
        Err(_) => {
            log::info!(task = pid.0; "seccomp filters cannot be suspended (no CAP_SYS_ADMIN): restored ones apply at once");
            Tracee::seize_with(pid, opts)
        }
    }
    .ctx(pid, "seize the new task");
    if t.is_err() {
        let _ = crate::sys::signal::kill(pid, 9);
        let _ = wait::wait4(pid, wait::WALL);
    }
    t
}

/// Exit codes of a task that fails before its restorer runs.
const EXIT_GO: i32 = 101;
const EXIT_MAP: i32 = 102;
const EXIT_DUP: i32 = 103;
const EXIT_SESSION: i32 = 104;
pub(super) const EXIT_FORK: i32 = 105;
/// A child that got another pid than asked through ns_last_pid (some other
/// process forked in between), giving it up: it may be a pid the tree
/// expects for another task, which is created once this one is reaped.
pub(super) const EXIT_WRONG_PID: i32 = 107;
const EXIT_TTY: i32 = 106;
const EXIT_SHARE: i32 = 108;

pub(super) fn exit_reason(code: i32) -> &'static str {
    match code {
        EXIT_GO => "lost the engine before starting",
        EXIT_MAP => "could not map its restorer region",
        EXIT_DUP => "could not place the pages image descriptor",
        EXIT_SESSION => "could not set up its session or process group",
        EXIT_FORK => "could not create a child with its pid",
        EXIT_WRONG_PID => "got another pid than asked and gave it up",
        EXIT_TTY => "could not get its controlling terminal or foreground group back",
        EXIT_SHARE => "lost the task whose descriptor table it shares before that one set it up",
        _ => "exited",
    }
}

/// Forks the children of `all[idx]` that are forked before its session
/// step (`early`) or after it, each continuing in [`child_main`].
///
/// # Safety
/// As [`child_main`]: in a child of clone3, raw syscalls only.
unsafe fn fork_children(all: &[Prepared], idx: usize, rseq: &[u8; 16], early: bool) {
    // SAFETY: under this function's contract.
    unsafe { fork_these(all, all[idx].children.iter().copied().filter(|&c| all[c].early == early), rseq) }
}

/// Forks the tasks `kids` of `all`, each continuing in [`child_main`].
///
/// # Safety
/// As [`child_main`]: in a child of clone3, raw syscalls only.
unsafe fn fork_these(all: &[Prepared], kids: impl Iterator<Item = usize>, rseq: &[u8; 16]) {
    use crate::sys::misc::exit_group;
    for c in kids {
        if crate::fault::hit_in_child(crate::fault::Fault::RestoreFork) {
            exit_group(EXIT_FORK);
        }
        let mut tries = 0;
        loop {
            // SAFETY: the child continues in child_main, under the same contract.
            match unsafe { fork_exact(all[c].pid, all[c].exit_signal, all[c].clone_flags) } {
                // SAFETY: as above.
                Ok(CloneResult::Child) => unsafe { child_main(all, c, rseq) },
                Ok(CloneResult::Parent { child, .. }) => {
                    // The shell's way: the parent makes a group leader too,
                    // so its siblings forked next find the group.
                    if all[c].session == Session::SetPgid(0) {
                        let _ = crate::sys::misc::setpgid(child, child);
                    }
                    break;
                }
                // Every pid was seen free before the tree was forked: a
                // pid taken now is a child given up after a wrong-pid fork
                // (reaped by the engine at once), or something the engine
                // names once this task has failed (see held_child_pid).
                Err(Errno::EEXIST) if tries < 150 => {
                    tries += 1;
                    let _ = crate::sys::misc::nanosleep(Duration::from_millis(20));
                }
                Err(_) => exit_group(EXIT_FORK),
            }
        }
    }
}

/// A forked task's side, still in crtools' code: session, children, then
/// the restorer.
///
/// # Safety
/// Runs right after clone3 in the child: only raw syscalls on memory built
/// before the fork; never returns.
unsafe fn child_main(all: &[Prepared], idx: usize, rseq: &[u8; 16]) -> ! {
    use crate::sys::misc::exit_group;
    use crate::sys::mm::{MapFlags, ProtFlags};
    let me = &all[idx];
    // Children forked before this task's setsid stay in its old session.
    // SAFETY: under this function's contract.
    unsafe { fork_children(all, idx, rseq, true) };
    let r = match me.session {
        Session::Inherit => Ok(()),
        Session::SetSid => crate::sys::misc::setsid().map(drop),
        Session::SetPgid(0) => crate::sys::misc::setpgid(Pid(0), Pid(0)),
        // The group's leader may be a task of another branch that is
        // still on its way: wait a little for the group to exist.
        Session::SetPgid(pgid) => {
            let mut r = crate::sys::misc::setpgid(Pid(0), Pid(pgid));
            for _ in 0..250 {
                if r != Err(Errno::EPERM) {
                    break;
                }
                let _ = crate::sys::misc::nanosleep(Duration::from_millis(8));
                r = crate::sys::misc::setpgid(Pid(0), Pid(pgid));
            }
            r
        }
    };
    if r.is_err() {
        exit_group(EXIT_SESSION);
    }
    terminal(&me.tty);
    // A zombie ends in its own group: one that led a group leads it again.
    if let Some(status) = me.zombie {
        become_zombie(status);
    }
    // Sessions whose leader is gone: a helper with the leader's pid makes
    // it again, forks its members and exits; they come to this task, a
    // subreaper (as it was when they were adopted; its own setting comes
    // back with the rest of its state).
    for (sid, kids) in &me.session_helpers {
        if crate::sys::misc::set_child_subreaper(true).is_err() {
            exit_group(EXIT_SESSION);
        }
        // SAFETY: the helper only calls setsid, forks (child_main) and exits.
        match unsafe { fork_exact(*sid, SIGCHLD, CloneFlags::empty()) } {
            Ok(CloneResult::Child) => {
                if crate::sys::misc::setsid().is_err() {
                    exit_group(EXIT_SESSION);
                }
                // SAFETY: under this function's contract.
                unsafe { fork_these(all, kids.iter().copied(), rseq) };
                exit_group(0);
            }
            Ok(CloneResult::Parent { .. }) => loop {
                match crate::sys::wait::wait4(*sid, crate::sys::wait::WALL) {
                    Ok(Some((_, crate::sys::wait::WaitStatus::Exited(0)))) => break,
                    Ok(Some((
                        _,
                        crate::sys::wait::WaitStatus::Exited(_) | crate::sys::wait::WaitStatus::Signaled(..),
                    ))) => exit_group(EXIT_SESSION),
                    Ok(_) => continue,
                    Err(_) => exit_group(EXIT_SESSION),
                }
            },
            Err(_) => exit_group(EXIT_FORK),
        }
    }
    for &h in &me.helpers {
        // SAFETY: the helper only calls setpgid and sleeps.
        match unsafe { fork_exact(h, SIGCHLD, CloneFlags::empty()) } {
            Ok(CloneResult::Child) => group_helper(),
            Ok(CloneResult::Parent { .. }) => {
                // Members forked next must find the group.
                let mut tries = 0;
                while crate::sys::misc::getpgid(h) != Ok(h) {
                    tries += 1;
                    if tries > 1000 {
                        exit_group(EXIT_SESSION);
                    }
                    let _ = crate::sys::misc::nanosleep(Duration::from_millis(5));
                }
            }
            Err(_) => exit_group(EXIT_FORK),
        }
    }
    // SAFETY: under this function's contract.
    unsafe { fork_children(all, idx, rseq, false) };
    if me.share_wait >= 0 {
        // The table is shared: nothing of ours may open a descriptor (the
        // restorer opens a few for a moment) while the group's first task
        // closes and dup3()s its numbers. It says when it is done.
        // SAFETY: inherited from the engine, above every number of the tree.
        let go = unsafe { std::os::fd::BorrowedFd::borrow_raw(me.share_wait) };
        let mut b = [0u8; 1];
        loop {
            match crate::sys::fs::read(go, &mut b) {
                Ok(1) => break,
                Err(Errno::EINTR) => continue,
                _ => exit_group(EXIT_SHARE),
            }
        }
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces anything.
    let got = unsafe {
        crate::sys::mm::mmap(
            me.region,
            me.region_size as usize,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE | ProtFlags::PROT_EXEC,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED_NOREPLACE,
            None,
            0,
        )
    };
    if got != Ok(me.region) {
        exit_group(EXIT_MAP);
    }
    // SAFETY: the region was just mapped, writable, and is image.len() long at least.
    unsafe { std::ptr::copy_nonoverlapping(me.image.as_ptr(), me.region as *mut u8, me.image.len()) };
    // The engine's rseq registration (inherited by every copy), to be dropped before the unmap.
    // SAFETY: plan_addr points at the Plan just copied into the region.
    let plan = unsafe { &mut *(me.plan_addr as *mut rp::Plan) };
    plan.cur_rseq_ptr = u64::from_ne_bytes(rseq[0..8].try_into().unwrap_or([0; 8]));
    plan.cur_rseq_len = u32::from_ne_bytes(rseq[8..12].try_into().unwrap_or([0; 4]));
    plan.cur_rseq_sig = u32::from_ne_bytes(rseq[12..16].try_into().unwrap_or([0; 4]));
    for (fd, &target) in me.pages_src.iter().zip(&me.pages_target) {
        let fd = fd.as_fd();
        if fd.as_raw_fd() != target {
            // SAFETY: the target number is above every descriptor the task
            // will have, and below every one the engine holds for the tree.
            match unsafe { crate::sys::fs::dup3(fd, target, crate::sys::fs::OpenFlags::empty()) } {
                Ok(fd) => std::mem::forget(fd),
                Err(_) => exit_group(EXIT_DUP),
            }
        }
    }
    // SAFETY: blob mapped executable at region, stack inside the region.
    unsafe { crate::sys::arch::jump_to_blob(me.region + blobs::restorer::ENTRY as u64, me.plan_addr, me.stack_top) }
}

/// The terminal steps of a task whose session and group are set: a session
/// leader takes its controlling terminal back, a task that had given it up
/// does again, the first task of a foreground group makes it that (with
/// SIGTTOU blocked: a background group asking gets it otherwise; the
/// restorer sets the dumped mask).
fn terminal(t: &crate::objects::tty::TaskTty) {
    use crate::sys::misc::exit_group;
    use std::os::fd::BorrowedFd;
    if t.set_ctty >= 0 {
        // SAFETY: inherited from the engine, open until the restorer closes it.
        let fd = unsafe { BorrowedFd::borrow_raw(t.set_ctty) };
        if crate::sys::tty::set_ctty(fd, false).is_err() {
            exit_group(EXIT_TTY);
        }
    }
    if t.notty >= 0 {
        // SAFETY: as above.
        let fd = unsafe { BorrowedFd::borrow_raw(t.notty) };
        if crate::sys::tty::notty(fd).is_err() {
            exit_group(EXIT_TTY);
        }
    }
    if t.fg >= 0 {
        let mut set = crate::sys::signal::SigSet::empty();
        set.add(SIGTTOU);
        let _ = crate::sys::signal::sigprocmask(crate::sys::signal::SigmaskHow::Block, Some(&set));
        // SAFETY: as above.
        let fd = unsafe { BorrowedFd::borrow_raw(t.fg) };
        if crate::sys::tty::set_pgrp(fd, Pid(t.fg_pgid)).is_err() && !t.fg_optional {
            exit_group(EXIT_TTY);
        }
    }
}

const SIGTTOU: i32 = 22;

/// A group helper: leads its process group until the engine kills it.
fn group_helper() -> ! {
    if crate::sys::misc::setpgid(Pid(0), Pid(0)).is_err() {
        crate::sys::misc::exit_group(EXIT_SESSION);
    }
    loop {
        let _ = crate::sys::misc::nanosleep(Duration::from_secs(3600));
    }
}

/// Ends this process the way the dumped zombie ended (wait status `status`).
fn become_zombie(status: i32) -> ! {
    use crate::sys::misc::exit_group;
    let sig = status & 0x7f;
    if sig == 0 {
        exit_group((status >> 8) & 0xff);
    }
    // Die by the same signal, without a core file.
    let _ = crate::sys::misc::set_rlimit(
        Pid(0),
        crate::sys::misc::RLIMIT_CORE,
        &crate::sys::misc::Rlimit { cur: 0, max: 0 },
    );
    let _ = crate::sys::signal::set_sig_disposition(sig, false);
    let mut set = crate::sys::signal::SigSet::empty();
    set.add(sig);
    let _ = crate::sys::signal::sigprocmask(crate::sys::signal::SigmaskHow::Unblock, Some(&set));
    let _ = crate::sys::signal::kill(crate::sys::misc::getpid(), sig);
    exit_group(128 + sig)
}
