//! Seize, freeze and infect tasks; the dump code never pokes registers itself.
//!
//! Modelled on CRIU's compel:
//! - [`Tracee`] seizes one thread with PTRACE_SEIZE, stops it with
//!   PTRACE_INTERRUPT and resumes or detaches it;
//! - [`Tracee::remote_syscall`] runs one syscall in the task's context by
//!   patching `syscall; int3` at its RIP (see [`inject`]);
//! - [`Parasite`] maps a region in the task, uploads the parasite blob,
//!   runs commands in the task's context and finally cures the task:
//!   registers, signal mask, code and mappings are exactly as before.
//!
//! Invariants: every path out of an infected state, including errors and
//! drops, restores the registers, the blocked mask and the patched code; a
//! task is never left with the parasite mapped once [`Parasite`] is gone.
use crate::sys::{Errno, Pid};

pub mod inject;
pub mod parasite;
pub mod tracee;
pub mod tree;

pub use parasite::Parasite;

/// Logs (at debug level) that a window opens or closes in which crtools
/// dying (SIGKILL) would harm task `pid`: its code is patched or its
/// registers point into injected code, and the kernel's automatic detach
/// at the tracer's exit would let it run that. Nothing can close such a
/// window from outside; the kill stress test (cli/tests/fault_points.rs)
/// reads these lines to tell a kill inside one from any other.
pub(crate) fn harm_window(pid: Pid, open: bool, what: &str) {
    log::debug!(task = pid.0; "task {pid}: harm window {} ({what})", if open { "open" } else { "closed" });
}
pub use tracee::{QueuedTraps, StopState, Tracee};

/// What went wrong while seizing or infecting a task.
#[derive(Debug)]
pub struct InfectError {
    /// The task.
    pub pid: Pid,
    /// The step that failed, e.g. "PTRACE_SEIZE" or "remote mmap".
    pub step: &'static str,
    /// Why.
    pub cause: Cause,
}

/// The cause of an [`InfectError`].
#[derive(Debug)]
pub enum Cause {
    /// A syscall (local or remote) failed.
    Errno(Errno),
    /// The task stopped or exited in a way the protocol does not expect.
    Unexpected(String),
    /// The task is in a state crtools does not checkpoint (a refusal).
    Refused(String),
}

impl InfectError {
    pub(crate) fn errno(pid: Pid, step: &'static str, e: Errno) -> Self {
        InfectError { pid, step, cause: Cause::Errno(e) }
    }
    pub(crate) fn unexpected(pid: Pid, step: &'static str, what: impl Into<String>) -> Self {
        InfectError { pid, step, cause: Cause::Unexpected(what.into()) }
    }
    pub(crate) fn refused(pid: Pid, step: &'static str, what: impl Into<String>) -> Self {
        InfectError { pid, step, cause: Cause::Refused(what.into()) }
    }
    /// As an error of `what` for task `pid`, a refusal if it is one.
    pub fn into_error(self, pid: Pid, what: &str) -> crate::error::Error {
        let msg = format!("{what}: {self}");
        match self.cause {
            Cause::Refused(_) => crate::error::Error::refuse(pid, msg),
            _ => crate::error::Error::task(pid, msg),
        }
    }
}

impl std::fmt::Display for InfectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Cause::Errno(e) => write!(f, "task {}: {} failed: {}", self.pid, self.step, e),
            Cause::Unexpected(w) | Cause::Refused(w) => write!(f, "task {}: {}: {}", self.pid, self.step, w),
        }
    }
}

impl std::error::Error for InfectError {}

/// Result of this module.
pub type Result<T> = std::result::Result<T, InfectError>;
