//! Process descriptors: pidfd_open(2), pidfd_send_signal(2), pidfd_getfd(2).
//!
//! # Invariants
//! - A pidfd names one process (or, with PIDFD_THREAD, one thread) for its
//!   whole life: unlike a [`Pid`] it cannot be recycled, so signals sent
//!   through it never hit a stranger.
//! - pidfd_getfd needs PTRACE_MODE_ATTACH_REALCREDS over the target (being its
//!   tracer, or root); the new descriptor is always close-on-exec.
use super::ptrace::SigInfo;
use super::{Pid, Result, Sysno};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

bitflags::bitflags! {
    /// pidfd_open(2) flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PidfdFlags: u32 {
        /// Waits through this pidfd do not block (equal to O_NONBLOCK).
        const PIDFD_NONBLOCK = linux_raw_sys::general::O_NONBLOCK;
        /// The pidfd names a thread, not a thread group (equal to O_EXCL; Linux 6.9).
        const PIDFD_THREAD = linux_raw_sys::general::O_EXCL;
    }
}

bitflags::bitflags! {
    /// pidfd_send_signal(2) scope flags (Linux 6.9).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PidfdSignalFlags: u32 {
        const PIDFD_SIGNAL_THREAD = 1 << 0;
        const PIDFD_SIGNAL_THREAD_GROUP = 1 << 1;
        const PIDFD_SIGNAL_PROCESS_GROUP = 1 << 2;
    }
}

/// pidfd_open(pid, flags).
pub fn pidfd_open(pid: Pid, flags: PidfdFlags) -> Result<OwnedFd> {
    // SAFETY: no memory arguments.
    let fd = unsafe { syscalls::syscall2(Sysno::pidfd_open, pid.0 as usize, flags.bits() as usize) }?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(pidfd, sig, info, flags). `info: None` behaves like
/// kill(2) (si_code SI_USER); signal 0 only checks that the process lives.
pub fn pidfd_send_signal(
    pidfd: BorrowedFd<'_>,
    sig: i32,
    info: Option<&SigInfo>,
    flags: PidfdSignalFlags,
) -> Result<()> {
    let info = info.map_or(0, |i| i as *const SigInfo as usize);
    // SAFETY: the kernel reads one siginfo_t from `info` when it is non-NULL.
    unsafe {
        syscalls::syscall4(
            Sysno::pidfd_send_signal,
            pidfd.as_raw_fd() as usize,
            sig as usize,
            info,
            flags.bits() as usize,
        )
    }
    .map(drop)
}

/// pidfd_getfd(pidfd, targetfd, 0): a duplicate of descriptor `targetfd`
/// of the process behind `pidfd` (close-on-exec).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, targetfd: RawFd) -> Result<OwnedFd> {
    // SAFETY: no memory arguments.
    let fd = unsafe { syscalls::syscall3(Sysno::pidfd_getfd, pidfd.as_raw_fd() as usize, targetfd as usize, 0) }?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn flags_match_libc() {
        assert_eq!(PidfdFlags::PIDFD_NONBLOCK.bits(), libc::PIDFD_NONBLOCK);
        assert_eq!(PidfdFlags::PIDFD_THREAD.bits(), libc::O_EXCL as u32);
        assert_eq!(PidfdFlags::PIDFD_NONBLOCK.bits(), libc::O_NONBLOCK as u32);
    }

    #[test]
    fn pidfd_on_self() {
        let me = Pid(std::process::id() as i32);
        let pfd = pidfd_open(me, PidfdFlags::empty()).unwrap();
        pidfd_send_signal(pfd.as_fd(), 0, None, PidfdSignalFlags::empty()).unwrap();
        // A thread pidfd for the main thread (pid == tid) on kernels that have it.
        match pidfd_open(me, PidfdFlags::PIDFD_THREAD) {
            Ok(_) | Err(super::super::Errno::EINVAL) => {}
            Err(e) => panic!("PIDFD_THREAD: {e}"),
        }
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let dup = pidfd_getfd(pfd.as_fd(), file.as_raw_fd()).unwrap();
        let a = super::super::fs::fstat(file.as_fd()).unwrap();
        let b = super::super::fs::fstat(dup.as_fd()).unwrap();
        assert_eq!((a.dev, a.ino), (b.dev, b.ino));
        let fdflags = super::super::fs::fcntl_getfd(dup.as_fd()).unwrap();
        assert!(fdflags.contains(super::super::fs::FdFlags::FD_CLOEXEC));
    }
}
