//! The hand-written syscall layer: the only place in the engine that issues
//! raw syscalls.
//!
//! # Rules
//! - Every call returns `Result<T, Errno>`; out-parameters become return values.
//! - Multiplexed calls (ptrace, prctl, fcntl, ioctl) are split into one typed
//!   function per operation.
//! - Descriptors are `OwnedFd`/`BorrowedFd`; pids are [`Pid`], never bare ints
//!   in public signatures.
//! - Syscall numbers come from the `syscalls` crate, kernel structs and
//!   constants from `linux-raw-sys` where it has them; structs it lacks are
//!   defined here with their size asserted (and cross-checked against the
//!   `libc` crate in tests).
//!
//! # Safety
//! Each wrapper states once, in its `// SAFETY:` line, why the kernel only
//! reads or writes memory that the Rust signature hands it. Wrappers that
//! act on another task's memory (process_vm_writev, ptrace pokes) are safe
//! for *this* process; what they do to the other task is the caller's duty.

pub use syscalls::{Errno, Sysno};

pub mod arch;
pub mod clone;
pub mod event;
pub mod fs;
pub mod inet;
pub mod ipc;
pub mod misc;
pub mod mm;
pub mod pidfd;
pub mod process_vm;
pub mod ptrace;
pub mod signal;
pub mod sock_diag;
pub mod socket;
pub mod tty;
pub mod uffd;
pub mod wait;

/// Result of a syscall wrapper.
pub type Result<T> = core::result::Result<T, Errno>;

/// A process or thread id as the kernel sees it in the caller's pid namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(pub i32);

impl Pid {
    /// The raw id.
    pub fn raw(self) -> i32 {
        self.0
    }
}

impl core::fmt::Display for Pid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Retries `f` while it fails with EINTR.
pub fn retry_eintr<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match f() {
            Err(e) if e == Errno::EINTR => continue,
            r => return r,
        }
    }
}
