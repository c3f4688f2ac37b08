//! `/proc/<pid>/timers`: the process's POSIX timers (timer_create(2)), see
//! proc_pid_timers(5).
//!
//! Format (`show_timer()` in fs/proc/base.c), four lines per timer:
//! ```text
//! ID: %d
//! signal: %d/%px          (signal number / sigev_value pointer, 16 hex digits)
//! notify: %s/%s.%d        (signal|none|thread / pid|tid . target)
//! ClockID: %d
//! ```
//!
//! # Invariants
//! - Blocks must be complete and in this order; an empty file means no
//!   timers.
//! - `notify: signal/tid.N` is SIGEV_THREAD_ID (glibc's SIGEV_THREAD also
//!   appears as this, since it is emulated with a helper thread).
//! - The expiry and overrun are not in this file; they come from the
//!   parasite (timer_gettime inside the task).

use super::{num, ProcError, Result};
use crate::sys::Pid;

const FILE: &str = "timers";

/// `sigev_notify` as printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyKind {
    /// `signal`: SIGEV_SIGNAL (or SIGEV_THREAD_ID with `tid`).
    Signal,
    /// `none`: SIGEV_NONE.
    None,
    /// `thread`: SIGEV_THREAD (never set by glibc, which emulates it).
    Thread,
}

/// One POSIX timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PosixTimer {
    /// Timer id as returned by timer_create.
    pub id: i32,
    /// Signal delivered on expiry (0 for SIGEV_NONE).
    pub signo: i32,
    /// `sigev_value.sival_ptr`.
    pub sival_ptr: u64,
    /// How it notifies.
    pub notify: NotifyKind,
    /// Notification goes to one thread (SIGEV_THREAD_ID, `tid`) rather
    /// than the process (`pid`).
    pub thread_id_target: bool,
    /// The target pid or tid.
    pub target: i32,
    /// Clock id (CLOCK_REALTIME = 0, ...; negative for CPU-time clocks).
    pub clock_id: i32,
}

impl PosixTimer {
    /// `sigev_notify` as the kernel stores it (SIGEV_THREAD_ID = 4 or'ed in).
    pub fn sigev_notify(&self) -> i32 {
        let base = match self.notify {
            NotifyKind::Signal => 0,
            NotifyKind::None => 1,
            NotifyKind::Thread => 2,
        };
        if self.thread_id_target {
            base | 4
        } else {
            base
        }
    }
}

fn value<'a>(line: Option<(usize, &'a str)>, key: &str) -> Result<(usize, &'a str)> {
    let (i, l) = line.ok_or_else(|| ProcError::malformed(FILE, format!("truncated: {key} missing")))?;
    let v = l
        .strip_prefix(key)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(|| ProcError::malformed(FILE, format!("want {key}:, got {l:?}")).at_line(i + 1))?;
    Ok((i, v.trim()))
}

/// Parses a `timers` file.
pub fn parse(text: &str) -> Result<Vec<PosixTimer>> {
    let mut out = Vec::new();
    let mut it = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    while let Some(first) = it.next() {
        let (i, v) = value(Some(first), "ID")?;
        let id = num::dec_i32(FILE, "ID", v).map_err(|e| e.at_line(i + 1))?;

        let (i, v) = value(it.next(), "signal")?;
        let at = |e: ProcError| e.at_line(i + 1);
        let (sig, ptr) =
            v.split_once('/').ok_or_else(|| at(ProcError::malformed(FILE, "signal: want signo/pointer")))?;
        let signo = num::dec_i32(FILE, "signal", sig).map_err(at)?;
        let sival_ptr = num::hex_u64(FILE, "signal", ptr).map_err(at)?;

        let (i, v) = value(it.next(), "notify")?;
        let at = |e: ProcError| e.at_line(i + 1);
        let (kind, rest) =
            v.split_once('/').ok_or_else(|| at(ProcError::malformed(FILE, "notify: want kind/pid.N")))?;
        let notify = match kind {
            "signal" => NotifyKind::Signal,
            "none" => NotifyKind::None,
            "thread" => NotifyKind::Thread,
            _ => return Err(at(ProcError::malformed(FILE, format!("notify: unknown kind {kind:?}")))),
        };
        let (who, n) =
            rest.split_once('.').ok_or_else(|| at(ProcError::malformed(FILE, "notify: want pid.N or tid.N")))?;
        let thread_id_target = match who {
            "pid" => false,
            "tid" => true,
            _ => return Err(at(ProcError::malformed(FILE, format!("notify: unknown target {who:?}")))),
        };
        let target = num::dec_i32(FILE, "notify", n).map_err(at)?;

        let (i, v) = value(it.next(), "ClockID")?;
        let clock_id = num::dec_i32(FILE, "ClockID", v).map_err(|e| e.at_line(i + 1))?;

        out.push(PosixTimer { id, signo, sival_ptr, notify, thread_id_target, target, clock_id });
    }
    Ok(out)
}

/// Reads `/proc/<pid>/timers`.
pub fn read(pid: Pid) -> Result<Vec<PosixTimer>> {
    let text = super::read_text(pid, FILE)?;
    parse(&text).map_err(|e| e.with_pid(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VICTIM: &str = include_str!("testdata/victim.timers");

    #[test]
    fn captured_victim() {
        let t = parse(VICTIM).unwrap();
        assert_eq!(t.len(), 3);
        // Listed newest first.
        assert_eq!(t[0].id, 2);
        assert_eq!(t[0].notify, NotifyKind::None);
        assert_eq!(t[0].clock_id, 7); // CLOCK_BOOTTIME
        assert_eq!(t[0].sigev_notify(), 1);
        assert_eq!(t[1].signo, 35); // SIGRTMIN+1 as glibc numbers it
        assert!(t[1].thread_id_target);
        assert_eq!(t[1].sigev_notify(), 4);
        assert_eq!(t[1].clock_id, 1);
        assert_eq!(t[2].signo, 12);
        assert_eq!(t[2].sival_ptr, 0xdeadbeef);
        assert_eq!(t[2].notify, NotifyKind::Signal);
        assert!(!t[2].thread_id_target);
        assert_eq!(t[2].target, t[1].target);
        assert_eq!(t[2].clock_id, 0);
    }

    #[test]
    fn hand_made() {
        assert!(parse("").unwrap().is_empty());
        let t = parse("ID: 7\nsignal: 14/ffff888000000000\nnotify: thread/pid.1\nClockID: -6\n").unwrap();
        assert_eq!(t[0].notify, NotifyKind::Thread);
        assert_eq!(t[0].sival_ptr, 0xffff888000000000);
        assert_eq!(t[0].clock_id, -6);
        assert_eq!(t[0].sigev_notify(), 2);
    }

    #[test]
    fn malformed_is_error() {
        let cases = [
            "ID: 1\n",
            "ID: x\nsignal: 1/0\nnotify: signal/pid.1\nClockID: 0\n",
            "ID: 1\nsignal: 1\nnotify: signal/pid.1\nClockID: 0\n",
            "ID: 1\nsignal: 1/zz\nnotify: signal/pid.1\nClockID: 0\n",
            "ID: 1\nsignal: 1/0\nnotify: bogus/pid.1\nClockID: 0\n",
            "ID: 1\nsignal: 1/0\nnotify: signal/pgid.1\nClockID: 0\n",
            "ID: 1\nsignal: 1/0\nnotify: signal/pid1\nClockID: 0\n",
            "ID: 1\nsignal: 1/0\nnotify: signal\nClockID: 0\n",
            "ID: 1\nsignal: 1/0\nClockID: 0\nnotify: signal/pid.1\n",
            "ID: 1\nsignal: 1/0\nnotify: signal/pid.1\n",
            "garbage\n",
        ];
        for c in cases {
            assert!(parse(c).is_err(), "{c:?}");
        }
        let e = parse("ID: 1\nsignal: 1/0\nnotify: x/pid.1\nClockID: 0\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        for cut in 0..VICTIM.len() {
            let r = parse(&VICTIM[..cut]);
            // Only cuts that end exactly on a block boundary parse.
            if let Ok(t) = r {
                assert!(t.len() < 3 || cut >= VICTIM.len() - 1);
            }
        }
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        let mut sev: libc::sigevent = zeroed_sigevent();
        sev.sigev_notify = libc::SIGEV_NONE;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: sev and id are valid for the duration of the call.
        let rc = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) };
        assert_eq!(rc, 0);
        let t = read(me);
        // SAFETY: id was returned by timer_create above.
        unsafe { libc::timer_delete(id) };
        let t = t.unwrap();
        let raw = id as usize as i32;
        assert!(t.iter().any(|x| x.id == raw && x.notify == NotifyKind::None && x.clock_id == 1), "{t:?}");
    }

    fn zeroed_sigevent() -> libc::sigevent {
        // SAFETY: sigevent is a plain C struct for which all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}
