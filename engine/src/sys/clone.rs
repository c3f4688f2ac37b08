//! Process creation and namespaces: clone3(2) (also clone(2) for the
//! fork fallback), unshare(2), setns(2); namespace flags as in namespaces(7).
//!
//! # Invariants
//! - [`clone3`] here is fork-like only: it refuses CLONE_VM, CLONE_THREAD,
//!   CLONE_SIGHAND, CLONE_VFORK and a new stack, because a child that shares
//!   (or jumps to a fresh) stack cannot return into Rust code. Thread-style
//!   clones belong to the restorer blob, which has its own assembly entry;
//!   it can still use [`CloneArgs`] (`as_bytes`) to lay out the argument.
//! - The child side of a fork in a multi-threaded program is a copy with one
//!   thread: locks held by other threads (allocator, stdout, logger) stay
//!   locked forever. That is why [`clone3`] and [`fork`] are `unsafe`: in
//!   [`CloneResult::Child`] the caller may only do async-signal-safe work
//!   (signal-safety(7)) — the raw wrappers of this `sys` module, no heap
//!   allocation, no `std` I/O, no logging, no panics — and must end with
//!   [`crate::sys::misc::exit_group`] or execve.
//! - The parent gets its pidfd (CLONE_PIDFD) as an `OwnedFd`.
use super::{Errno, Pid, Result, Sysno};
use linux_raw_sys::general as lg;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

bitflags::bitflags! {
    /// `CLONE_*` flags for clone3, unshare and setns.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct CloneFlags: u64 {
        const CLONE_VM = lg::CLONE_VM as u64;
        const CLONE_FS = lg::CLONE_FS as u64;
        const CLONE_FILES = lg::CLONE_FILES as u64;
        const CLONE_SIGHAND = lg::CLONE_SIGHAND as u64;
        const CLONE_PIDFD = lg::CLONE_PIDFD as u64;
        const CLONE_PTRACE = lg::CLONE_PTRACE as u64;
        const CLONE_VFORK = lg::CLONE_VFORK as u64;
        const CLONE_PARENT = lg::CLONE_PARENT as u64;
        const CLONE_THREAD = lg::CLONE_THREAD as u64;
        const CLONE_NEWNS = lg::CLONE_NEWNS as u64;
        const CLONE_SYSVSEM = lg::CLONE_SYSVSEM as u64;
        const CLONE_SETTLS = lg::CLONE_SETTLS as u64;
        const CLONE_PARENT_SETTID = lg::CLONE_PARENT_SETTID as u64;
        const CLONE_CHILD_CLEARTID = lg::CLONE_CHILD_CLEARTID as u64;
        const CLONE_UNTRACED = lg::CLONE_UNTRACED as u64;
        const CLONE_CHILD_SETTID = lg::CLONE_CHILD_SETTID as u64;
        const CLONE_NEWCGROUP = lg::CLONE_NEWCGROUP as u64;
        const CLONE_NEWUTS = lg::CLONE_NEWUTS as u64;
        const CLONE_NEWIPC = lg::CLONE_NEWIPC as u64;
        const CLONE_NEWUSER = lg::CLONE_NEWUSER as u64;
        const CLONE_NEWPID = lg::CLONE_NEWPID as u64;
        const CLONE_NEWNET = lg::CLONE_NEWNET as u64;
        const CLONE_IO = lg::CLONE_IO as u64;
        const CLONE_NEWTIME = lg::CLONE_NEWTIME as u64;
        const CLONE_CLEAR_SIGHAND = lg::CLONE_CLEAR_SIGHAND;
        const CLONE_INTO_CGROUP = lg::CLONE_INTO_CGROUP;
    }
}

impl CloneFlags {
    /// Every namespace flag (CLONE_NEW*).
    pub const ALL_NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
        .union(CloneFlags::CLONE_NEWCGROUP)
        .union(CloneFlags::CLONE_NEWUTS)
        .union(CloneFlags::CLONE_NEWIPC)
        .union(CloneFlags::CLONE_NEWUSER)
        .union(CloneFlags::CLONE_NEWPID)
        .union(CloneFlags::CLONE_NEWNET)
        .union(CloneFlags::CLONE_NEWTIME);
}

/// Kernel `struct clone_args` (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloneArgsRaw {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}
const _: () = assert!(core::mem::size_of::<CloneArgsRaw>() == lg::CLONE_ARGS_SIZE_VER2 as usize);
const _: () = assert!(core::mem::size_of::<CloneArgsRaw>() == core::mem::size_of::<lg::clone_args>());
const _: () = assert!(core::mem::offset_of!(CloneArgsRaw, set_tid) == core::mem::offset_of!(lg::clone_args, set_tid));
const _: () = assert!(core::mem::offset_of!(CloneArgsRaw, cgroup) == core::mem::offset_of!(lg::clone_args, cgroup));

/// The most nested pid namespaces set_tid can address (MAX_PID_NS_LEVEL).
pub const MAX_SET_TID: usize = 32;

/// A clone3 argument builder. The borrowed set_tid array and cgroup
/// descriptor live at least as long as the builder.
#[derive(Clone, Copy, Debug)]
pub struct CloneArgs<'a> {
    raw: CloneArgsRaw,
    _borrows: PhantomData<(&'a [Pid], BorrowedFd<'a>)>,
}

impl<'a> CloneArgs<'a> {
    /// Arguments with `flags`, exit signal SIGCHLD and nothing else.
    pub fn new(flags: CloneFlags) -> CloneArgs<'a> {
        let raw =
            CloneArgsRaw { flags: flags.bits(), exit_signal: super::signal::SIGCHLD as u64, ..Default::default() };
        CloneArgs { raw, _borrows: PhantomData }
    }
    /// Adds flags.
    pub fn flags(mut self, flags: CloneFlags) -> Self {
        self.raw.flags |= flags.bits();
        self
    }
    /// Asks for a pidfd of the child (CLONE_PIDFD), returned by [`clone3`].
    pub fn pidfd(self) -> Self {
        self.flags(CloneFlags::CLONE_PIDFD)
    }
    /// Signal sent to the parent when the child dies (0: none).
    pub fn exit_signal(mut self, sig: i32) -> Self {
        self.raw.exit_signal = sig as u64;
        self
    }
    /// CLONE_CHILD_SETTID / CLONE_CHILD_CLEARTID address (in the child's memory).
    pub fn child_tid(mut self, addr: u64) -> Self {
        self.raw.child_tid = addr;
        self
    }
    /// CLONE_PARENT_SETTID address (the kernel stores the child's tid there).
    pub fn parent_tid(mut self, addr: u64) -> Self {
        self.raw.parent_tid = addr;
        self
    }
    /// New stack (lowest address and size). [`clone3`] refuses it; for blobs.
    pub fn stack(mut self, addr: u64, size: u64) -> Self {
        self.raw.stack = addr;
        self.raw.stack_size = size;
        self
    }
    /// CLONE_SETTLS value (the child's fs_base).
    pub fn tls(mut self, addr: u64) -> Self {
        self.raw.flags |= CloneFlags::CLONE_SETTLS.bits();
        self.raw.tls = addr;
        self
    }
    /// Exact pids for the child, innermost pid namespace first (needs
    /// CAP_SYS_ADMIN in each of those namespaces' owning user namespaces).
    pub fn set_tid(mut self, pids: &'a [Pid]) -> Self {
        self.raw.set_tid = pids.as_ptr() as u64;
        self.raw.set_tid_size = pids.len() as u64;
        self
    }
    /// Starts the child in the cgroup open at `dir` (CLONE_INTO_CGROUP).
    pub fn cgroup(mut self, dir: BorrowedFd<'a>) -> Self {
        self.raw.flags |= CloneFlags::CLONE_INTO_CGROUP.bits();
        self.raw.cgroup = dir.as_raw_fd() as u64;
        self
    }
    /// The raw structure (the `pidfd` field is filled in by [`clone3`]).
    pub fn raw(&self) -> &CloneArgsRaw {
        &self.raw
    }
    /// The raw structure as bytes, to copy into another address space.
    pub fn as_bytes(&self) -> [u8; 88] {
        let r = &self.raw;
        let words = [
            r.flags,
            r.pidfd,
            r.child_tid,
            r.parent_tid,
            r.exit_signal,
            r.stack,
            r.stack_size,
            r.tls,
            r.set_tid,
            r.set_tid_size,
            r.cgroup,
        ];
        let mut out = [0u8; 88];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        out
    }
}

/// Which side of a fork-like clone we are on.
#[derive(Debug)]
pub enum CloneResult {
    /// In the parent: the child's pid (in the caller's pid namespace) and
    /// its pidfd when CLONE_PIDFD was asked for.
    Parent { child: Pid, pidfd: Option<OwnedFd> },
    /// In the child. See the module docs for what it may do.
    Child,
}

/// clone3(args): a fork-like child.
///
/// Fails with EINVAL for CLONE_VM, CLONE_THREAD, CLONE_SIGHAND, CLONE_VFORK
/// or a stack (see the module docs), or a set_tid longer than [`MAX_SET_TID`].
///
/// # Safety
/// In [`CloneResult::Child`] the caller runs in a single-threaded copy of a
/// possibly multi-threaded process: it must only make async-signal-safe
/// calls (raw `sys` wrappers; no allocation, locks, `std` I/O, logging or
/// panics) and must end with `exit_group` or execve, never return into code
/// that assumes the parent's threads exist. With CLONE_SETTLS the child's
/// thread-local storage moves to `tls`, which must be valid for it.
/// `child_tid`/`parent_tid` addresses must be valid writable `i32`s for the
/// side that the kernel writes them in.
pub unsafe fn clone3(args: &CloneArgs<'_>) -> Result<CloneResult> {
    let forbidden =
        CloneFlags::CLONE_VM | CloneFlags::CLONE_THREAD | CloneFlags::CLONE_SIGHAND | CloneFlags::CLONE_VFORK;
    if args.raw.flags & forbidden.bits() != 0 || args.raw.stack != 0 || args.raw.set_tid_size > MAX_SET_TID as u64 {
        return Err(Errno::EINVAL);
    }
    let mut raw = args.raw;
    let mut pidfd: i32 = -1;
    let want_pidfd = raw.flags & CloneFlags::CLONE_PIDFD.bits() != 0;
    if want_pidfd {
        raw.pidfd = &mut pidfd as *mut i32 as u64;
    }
    // SAFETY: the kernel reads `raw` (88 bytes) and the set_tid array it
    // points to (borrowed by `args`), writes the pidfd into `pidfd` and the
    // tids where the caller said; no new stack is used, so both sides return
    // here on their own copy of this frame. The child's conduct is the
    // caller's contract.
    let r = unsafe {
        syscalls::syscall2(Sysno::clone3, &raw as *const CloneArgsRaw as usize, core::mem::size_of::<CloneArgsRaw>())
    }?;
    if r == 0 {
        return Ok(CloneResult::Child);
    }
    let pidfd = if want_pidfd && pidfd >= 0 {
        // SAFETY: the kernel installed this new descriptor for the parent.
        Some(unsafe { OwnedFd::from_raw_fd(pidfd) })
    } else {
        None
    };
    Ok(CloneResult::Parent { child: Pid(r as i32), pidfd })
}

/// fork(): clone3 with only SIGCHLD, falling back to clone(2) where clone3
/// is filtered (some seccomp profiles answer ENOSYS).
///
/// # Safety
/// As for [`clone3`]: the child may only do async-signal-safe work.
pub unsafe fn fork() -> Result<CloneResult> {
    // SAFETY: forwarded to the caller's contract.
    match unsafe { clone3(&CloneArgs::new(CloneFlags::empty())) } {
        Err(Errno::ENOSYS) => {
            // clone(flags, newsp, parent_tid, child_tid, tls) on x86_64.
            // SAFETY: no new stack and no tid pointers: a plain fork.
            let r = unsafe { syscalls::syscall5(Sysno::clone, super::signal::SIGCHLD as usize, 0, 0, 0, 0) }?;
            Ok(if r == 0 { CloneResult::Child } else { CloneResult::Parent { child: Pid(r as i32), pidfd: None } })
        }
        r => r,
    }
}

/// unshare(flags): new namespaces (and unshared fs/files/sysvsem) for the
/// calling thread's process. CLONE_NEWPID only affects children created later.
pub fn unshare(flags: CloneFlags) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall1(Sysno::unshare, flags.bits() as usize) }.map(drop)
}

/// setns(fd, nstype): joins the namespace open at `fd` (a /proc/pid/ns file)
/// or, for a pidfd, the namespaces named by `nstype`. An empty `nstype`
/// accepts any namespace type for a namespace file.
pub fn setns(fd: BorrowedFd<'_>, nstype: CloneFlags) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall2(Sysno::setns, fd.as_raw_fd() as usize, nstype.bits() as usize) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::wait::{self, WaitStatus};
    use core::mem::{offset_of, size_of};
    use std::os::fd::AsFd;
    use std::sync::Mutex;

    /// Tests that fork run one at a time.
    static FORK_LOCK: Mutex<()> = Mutex::new(());

    /// Exits the child without running any Rust cleanup.
    fn child_exit(code: i32) -> ! {
        // SAFETY: exit_group never returns and touches no memory.
        unsafe {
            let _ = syscalls::syscall1(Sysno::exit_group, code as usize);
        }
        unreachable!()
    }

    /// Reaps `pid`, killing it first if `kill` is set.
    fn reap(pid: Pid, kill: bool) -> WaitStatus {
        if kill {
            let _ = crate::sys::signal::kill(pid, crate::sys::signal::SIGKILL);
        }
        wait::wait_pid(pid).expect("wait")
    }

    #[test]
    fn flags_and_layout_match_libc() {
        assert_eq!(size_of::<CloneArgsRaw>(), size_of::<libc::clone_args>());
        assert_eq!(offset_of!(CloneArgsRaw, exit_signal), offset_of!(libc::clone_args, exit_signal));
        assert_eq!(offset_of!(CloneArgsRaw, tls), offset_of!(libc::clone_args, tls));
        assert_eq!(offset_of!(CloneArgsRaw, set_tid_size), offset_of!(libc::clone_args, set_tid_size));
        assert_eq!(offset_of!(CloneArgsRaw, cgroup), offset_of!(libc::clone_args, cgroup));
        let pairs: &[(CloneFlags, i64)] = &[
            (CloneFlags::CLONE_VM, libc::CLONE_VM as i64),
            (CloneFlags::CLONE_FS, libc::CLONE_FS as i64),
            (CloneFlags::CLONE_FILES, libc::CLONE_FILES as i64),
            (CloneFlags::CLONE_SIGHAND, libc::CLONE_SIGHAND as i64),
            (CloneFlags::CLONE_PIDFD, libc::CLONE_PIDFD as i64),
            (CloneFlags::CLONE_THREAD, libc::CLONE_THREAD as i64),
            (CloneFlags::CLONE_NEWNS, libc::CLONE_NEWNS as i64),
            (CloneFlags::CLONE_SETTLS, libc::CLONE_SETTLS as i64),
            (CloneFlags::CLONE_PARENT_SETTID, libc::CLONE_PARENT_SETTID as i64),
            (CloneFlags::CLONE_CHILD_CLEARTID, libc::CLONE_CHILD_CLEARTID as i64),
            (CloneFlags::CLONE_CHILD_SETTID, libc::CLONE_CHILD_SETTID as i64),
            (CloneFlags::CLONE_NEWCGROUP, libc::CLONE_NEWCGROUP as i64),
            (CloneFlags::CLONE_NEWUTS, libc::CLONE_NEWUTS as i64),
            (CloneFlags::CLONE_NEWIPC, libc::CLONE_NEWIPC as i64),
            (CloneFlags::CLONE_NEWUSER, libc::CLONE_NEWUSER as i64),
            (CloneFlags::CLONE_NEWPID, libc::CLONE_NEWPID as i64),
            (CloneFlags::CLONE_NEWNET, libc::CLONE_NEWNET as i64),
            (CloneFlags::CLONE_NEWTIME, libc::CLONE_NEWTIME as i64),
            // libc declares these two as c_int, truncating them to 0: compare
            // with the uapi values (linux/sched.h) instead.
            (CloneFlags::CLONE_CLEAR_SIGHAND, 0x1_0000_0000),
            (CloneFlags::CLONE_INTO_CGROUP, 0x2_0000_0000),
        ];
        for &(ours, theirs) in pairs {
            assert_eq!(ours.bits() as i64, theirs, "{ours:?}");
        }
    }

    #[test]
    fn builder_fills_fields() {
        let pids = [Pid(1234), Pid(5)];
        let a = CloneArgs::new(CloneFlags::CLONE_NEWPID).pidfd().exit_signal(0).tls(0x1000).set_tid(&pids);
        let r = a.raw();
        assert_eq!(r.flags, (CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_PIDFD | CloneFlags::CLONE_SETTLS).bits());
        assert_eq!((r.exit_signal, r.tls, r.set_tid_size), (0, 0x1000, 2));
        assert_eq!(r.set_tid, pids.as_ptr() as u64);
        let b = a.as_bytes();
        assert_eq!(u64::from_ne_bytes(b[64..72].try_into().unwrap()), r.set_tid);
        // SAFETY: refused before any syscall.
        assert_eq!(unsafe { clone3(&CloneArgs::new(CloneFlags::CLONE_VM)) }.map(drop), Err(Errno::EINVAL));
        let with_stack = CloneArgs::new(CloneFlags::empty()).stack(0x1000, 0x1000);
        // SAFETY: as above.
        assert_eq!(unsafe { clone3(&with_stack) }.map(drop), Err(Errno::EINVAL));
    }

    #[test]
    fn fork_and_clone3_with_pidfd() {
        let _g = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the child only calls exit_group.
        let child = match unsafe { fork() }.unwrap() {
            CloneResult::Child => child_exit(7),
            CloneResult::Parent { child, .. } => child,
        };
        let st = reap(child, false);
        assert_eq!(st, WaitStatus::Exited(7));

        // SAFETY: the child only calls exit_group.
        let (child, pidfd) = match unsafe { clone3(&CloneArgs::new(CloneFlags::empty()).pidfd()) }.unwrap() {
            CloneResult::Child => child_exit(3),
            CloneResult::Parent { child, pidfd } => (child, pidfd),
        };
        let info = pidfd.as_ref().map(|p| wait::waitid(wait::P_PIDFD, p.as_raw_fd(), wait::WEXITED));
        // Reap by pid whenever the pidfd path did not, before asserting.
        let reaped = matches!(info, Some(Ok(Some(_))));
        if !reaped {
            reap(child, true);
        }
        let info = info.expect("no pidfd returned").expect("waitid").expect("child state");
        assert_eq!(info.pid, child);
        assert_eq!(info.status, 3);
    }

    #[test]
    fn clone3_set_tid() {
        let _g = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
        let base = pid_max - 1000 - (std::process::id() as i32 % 5000);
        for want in base..base + 20 {
            if std::path::Path::new(&format!("/proc/{want}")).exists() {
                continue;
            }
            let tids = [Pid(want)];
            // SAFETY: the child only calls exit_group.
            match unsafe { clone3(&CloneArgs::new(CloneFlags::empty()).set_tid(&tids)) } {
                Ok(CloneResult::Child) => child_exit(0),
                Ok(CloneResult::Parent { child, .. }) => {
                    let st = reap(child, false);
                    assert_eq!(child, Pid(want));
                    assert_eq!(st, WaitStatus::Exited(0));
                    return;
                }
                Err(Errno::EEXIST) => continue,
                Err(Errno::EPERM) => {
                    eprintln!("clone3 set_tid needs CAP_SYS_ADMIN; skipped");
                    return;
                }
                Err(e) => panic!("clone3 set_tid: {e}"),
            }
        }
        panic!("no free pid found for set_tid");
    }

    #[test]
    fn unshare_and_setns_in_child() {
        let _g = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let ns = std::fs::File::open("/proc/self/ns/uts").unwrap();
        // SAFETY: the child only makes raw syscalls and exits.
        let child = match unsafe { fork() }.unwrap() {
            CloneResult::Child => {
                let code = match unshare(CloneFlags::CLONE_NEWUTS) {
                    Ok(()) => match setns(ns.as_fd(), CloneFlags::CLONE_NEWUTS) {
                        Ok(()) => 0,
                        Err(e) => 100 + e.into_raw(),
                    },
                    Err(Errno::EPERM) => 1,
                    Err(e) => 200 + e.into_raw().min(50),
                };
                child_exit(code)
            }
            CloneResult::Parent { child, .. } => child,
        };
        let st = reap(child, false);
        match st {
            WaitStatus::Exited(0) => {}
            WaitStatus::Exited(1) => eprintln!("unshare(CLONE_NEWUTS) needs CAP_SYS_ADMIN; skipped"),
            other => panic!("child: {other:?}"),
        }
        // setns into the wrong type is refused.
        assert_eq!(setns(ns.as_fd(), CloneFlags::CLONE_NEWNET), Err(Errno::EINVAL));
    }
}
