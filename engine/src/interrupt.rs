//! A dump or restore told to stop (SIGINT from the terminal, SIGTERM from
//! a supervisor or timeout(1), SIGHUP, SIGQUIT) ends the way a failure
//! does instead of dying on the spot: a dump resumes every task as it was
//! and takes its images back, a restore kills what it created. Without
//! this, crtools killed in the middle of a remote system call would leave
//! that task with the registers of the call (see the trust notes in the
//! README), and a restore would leave its tasks to PTRACE_O_EXITKILL.
//!
//! [`catch_stops`] installs a handler that only records the signal;
//! every step of a dump and restore checks it ([`check`], called by
//! `fault::check` at every failure point). A second signal while the first
//! is being handled takes the default action at once.
//!
//! Processes crtools leaves behind (the memory tracker, the connection
//! keeper) call [`forget`] first: they must die of these signals as any
//! process does.
use crate::error::{Error, Result};
use crate::sys::signal::{self, SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

const STOPS: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

/// The stop signal received, 0 for none.
static GOT: AtomicI32 = AtomicI32::new(0);
/// Which of STOPS were ignored (nohup) when crtools started: left so.
static IGNORED: AtomicU8 = AtomicU8::new(0);

extern "C" fn on_stop(sig: i32) {
    if GOT.swap(sig, Ordering::SeqCst) != 0 {
        // Asked twice: the default action now.
        let _ = signal::set_sig_disposition(sig, false);
        let _ = signal::tgkill(crate::sys::misc::getpid(), crate::sys::misc::gettid(), sig);
    }
}

/// Catches the stop signals that are not ignored (see the module docs).
pub fn catch_stops() -> Result<()> {
    for (i, &sig) in STOPS.iter().enumerate() {
        let now = signal::get_sigaction(sig).map_err(|e| Error::new(format!("sigaction: {e}")))?;
        if now.handler == signal::SIG_IGN {
            IGNORED.fetch_or(1 << i, Ordering::Relaxed);
            continue;
        }
        // SAFETY: on_stop only swaps an atomic and makes raw system calls.
        unsafe { signal::catch(sig, on_stop) }.map_err(|e| Error::new(format!("sigaction: {e}")))?;
    }
    Ok(())
}

/// In a process forked from crtools that outlives it: the stop signals
/// get back what they had before [`catch_stops`] (raw system calls only).
pub fn forget() {
    let ignored = IGNORED.load(Ordering::Relaxed);
    for (i, &sig) in STOPS.iter().enumerate() {
        let _ = signal::set_sig_disposition(sig, ignored & (1 << i) != 0);
    }
}

/// The stop signal received so far, if any.
pub fn received() -> Option<i32> {
    match GOT.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// An error once a stop signal was received.
pub fn check() -> Result<()> {
    match received() {
        None => Ok(()),
        Some(s) => Err(Error::new(format!("interrupted by {}", signal::signal_name(s)))),
    }
}
