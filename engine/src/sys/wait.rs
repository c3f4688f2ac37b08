//! waitid(2) and wait4(2).
//!
//! [`WaitStatus`] decodes the wait4 status word the way ptrace(2) describes
//! it, including PTRACE_EVENT stops (`status >> 16`).
use super::{Pid, Result, Sysno};

/// Wait for children created with CLONE_THREAD-less clone as well ("all").
pub const WALL: i32 = 0x4000_0000;
/// Wait only for children (and tracees) of the calling thread, not of its
/// sibling threads.
pub const WNOTHREAD: i32 = 0x2000_0000;
/// Return at once if nothing changed.
pub const WNOHANG: i32 = 1;
/// Report stopped children (not needed for ptrace stops).
pub const WUNTRACED: i32 = 2;
/// Report continued children.
pub const WCONTINUED: i32 = 8;
/// waitid: wait for exited children.
pub const WEXITED: i32 = 4;
/// waitid: wait for stopped children.
pub const WSTOPPED: i32 = 2;
/// waitid: leave the child waitable.
pub const WNOWAIT: i32 = 0x0100_0000;

/// What a wait4 status word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal (`true`: core dumped).
    Signaled(i32, bool),
    /// Stopped with this signal; `event` is the PTRACE_EVENT_* (0 for a
    /// signal-delivery-stop or a group-stop seen without SEIZE).
    Stopped { sig: i32, event: u32 },
    /// Resumed by SIGCONT.
    Continued,
}

impl WaitStatus {
    /// Decodes a raw wait4 status.
    pub fn from_raw(status: i32) -> WaitStatus {
        let low = status & 0x7f;
        if low == 0 {
            WaitStatus::Exited((status >> 8) & 0xff)
        } else if status == 0xffff {
            WaitStatus::Continued
        } else if status & 0xff == 0x7f {
            WaitStatus::Stopped { sig: (status >> 8) & 0xff, event: ((status >> 16) & 0xff) as u32 }
        } else {
            WaitStatus::Signaled(low, status & 0x80 != 0)
        }
    }
}

/// wait4(pid, &status, options, NULL); `None` under WNOHANG when nothing is ready.
pub fn wait4(pid: Pid, options: i32) -> Result<Option<(Pid, WaitStatus)>> {
    let mut status = 0i32;
    // SAFETY: the kernel writes one int to `status`; rusage is NULL.
    let r = super::retry_eintr(|| unsafe {
        syscalls::syscall4(Sysno::wait4, pid.0 as usize, &mut status as *mut i32 as usize, options as usize, 0)
    })?;
    if r == 0 {
        return Ok(None);
    }
    Ok(Some((Pid(r as i32), WaitStatus::from_raw(status))))
}

/// Waits for any state change of `pid` (threads included, `__WALL`).
pub fn wait_pid(pid: Pid) -> Result<WaitStatus> {
    loop {
        if let Some((_, st)) = wait4(pid, WALL)? {
            return Ok(st);
        }
    }
}

/// [`wait_pid`] that gives up after `timeout`: `None` when `pid` did not
/// change state in time. Polls (WNOHANG): yields first, a change is
/// usually a matter of microseconds, then sleeps up to a millisecond
/// between looks.
pub fn wait_pid_timeout(pid: Pid, timeout: std::time::Duration) -> Result<Option<WaitStatus>> {
    let start = std::time::Instant::now();
    let mut looks = 0u32;
    loop {
        if let Some((_, st)) = wait4(pid, WALL | WNOHANG)? {
            return Ok(Some(st));
        }
        if start.elapsed() >= timeout {
            return Ok(None);
        }
        looks += 1;
        if looks < 64 {
            super::misc::sched_yield();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(u64::from(looks.min(1000))));
        }
    }
}

/// What waitid(P_PIDFD / P_PID, ..) reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitIdInfo {
    /// si_pid of the child.
    pub pid: Pid,
    /// si_code: CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED, CLD_TRAPPED, CLD_CONTINUED.
    pub code: i32,
    /// si_status: exit code or signal.
    pub status: i32,
}

/// P_PID for [`waitid`].
pub const P_PID: i32 = 1;
/// P_PIDFD for [`waitid`].
pub const P_PIDFD: i32 = 3;

/// waitid(idtype, id, &info, options); `None` when WNOHANG found nothing.
pub fn waitid(idtype: i32, id: i32, options: i32) -> Result<Option<WaitIdInfo>> {
    let mut si = super::ptrace::SigInfo::default();
    // SAFETY: the kernel writes one siginfo_t; rusage is NULL.
    super::retry_eintr(|| unsafe {
        syscalls::syscall5(Sysno::waitid, idtype as usize, id as usize, &mut si as *mut _ as usize, options as usize, 0)
    })?;
    let pid = si.pid();
    if pid == 0 {
        return Ok(None);
    }
    let status = i32::from_ne_bytes(si.0[24..28].try_into().expect("4 bytes"));
    Ok(Some(WaitIdInfo { pid: Pid(pid), code: si.code(), status }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_with_a_deadline_gives_up_and_still_sees_the_change() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("start sleep");
        let pid = Pid(child.id() as i32);
        let t = std::time::Instant::now();
        assert_eq!(wait_pid_timeout(pid, std::time::Duration::from_millis(150)).unwrap(), None);
        assert!(t.elapsed() >= std::time::Duration::from_millis(150));
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
        child.kill().unwrap();
        let st = wait_pid_timeout(pid, std::time::Duration::from_secs(10)).unwrap();
        assert!(matches!(st, Some(WaitStatus::Signaled(9, _))), "{st:?}");
        // Reaped above: std's wait finds nothing left.
        assert!(child.wait().is_err());
    }

    #[test]
    fn decodes_like_libc_macros() {
        let exited = 3 << 8;
        assert_eq!(WaitStatus::from_raw(exited), WaitStatus::Exited(3));
        assert!(libc::WIFEXITED(exited) && libc::WEXITSTATUS(exited) == 3);
        let killed = 9;
        assert_eq!(WaitStatus::from_raw(killed), WaitStatus::Signaled(9, false));
        let stopped = (19 << 8) | 0x7f;
        assert_eq!(WaitStatus::from_raw(stopped), WaitStatus::Stopped { sig: 19, event: 0 });
        assert!(libc::WIFSTOPPED(stopped) && libc::WSTOPSIG(stopped) == 19);
        let event_stop = (128 << 16) | (5 << 8) | 0x7f;
        assert_eq!(WaitStatus::from_raw(event_stop), WaitStatus::Stopped { sig: 5, event: 128 });
        assert_eq!(WaitStatus::from_raw(0xffff), WaitStatus::Continued);
        assert_eq!(WALL, libc::__WALL);
        assert_eq!(WNOWAIT, libc::WNOWAIT);
        assert_eq!(WNOTHREAD, libc::__WNOTHREAD);
    }
}
