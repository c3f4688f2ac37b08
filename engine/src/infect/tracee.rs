//! One seized thread.
//!
//! ptrace is per thread: every call on a [`Tracee`] must come from the thread
//! that seized it. The type is therefore `!Send`.
use super::{InfectError, Result};
use crate::sys::ptrace::{self, SigInfo, UserRegs, PTRACE_EVENT_STOP, PTRACE_O_TRACESYSGOOD};
use crate::sys::wait::{self, WaitStatus};
use crate::sys::Sysno;
use crate::sys::{Errno, Pid};
use std::marker::PhantomData;

const SIGTRAP: i32 = 5;
/// si_code of a signal the kernel raised itself (our int3's SIGTRAP).
const SI_KERNEL: i32 = 0x80;
const SIGSTOP: i32 = 19;
const SIGTSTP: i32 = 20;
const SIGTTIN: i32 = 21;
const SIGTTOU: i32 = 22;
const SIGCHLD: i32 = 17;
const SIGCONT: i32 = 18;
const SIGURG: i32 = 23;
const SIGWINCH: i32 = 28;

const EINTR: i64 = 4;
const ERESTARTNOHAND: i64 = 514;

/// How long a seized task may take to reach its interrupt stop (CRIU
/// gives up freezing after 10 s too).
const SEIZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What `pid` waits in, from /proc (empty if unknown).
fn wchan(pid: Pid) -> String {
    std::fs::read_to_string(crate::proc::pid_path(pid, "wchan")).unwrap_or_default()
}
const NR_RT_SIGTIMEDWAIT: u64 = 128;
const NR_EPOLL_WAIT: u64 = 232;
const NR_EPOLL_PWAIT: u64 = 281;
const NR_EPOLL_PWAIT2: u64 = 441;

/// Whether `regs` (at a syscall's exit) belong to a call that returns
/// -EINTR on any wake-up with a signal pending and that has no timeout:
/// epoll_wait/epoll_pwait (timeout -1), epoll_pwait2 (timeout NULL),
/// rt_sigtimedwait without a timeout (sigwaitinfo).
///
/// epoll_pwait's own mask is no obstacle: until the task leaves the call it
/// runs with that mask and the caller's sits in saved_sigmask
/// (TIF_RESTORE_SIGMASK), which PTRACE_GETSIGMASK reports; the cure's
/// PTRACE_SETSIGMASK puts it back as the current mask (clearing the flag)
/// and the restarted call saves it again.
fn waits_forever(regs: &UserRegs) -> bool {
    match regs.orig_rax {
        NR_EPOLL_WAIT | NR_EPOLL_PWAIT => regs.r10 as i32 == -1,
        NR_EPOLL_PWAIT2 => regs.r10 == 0,
        NR_RT_SIGTIMEDWAIT => regs.rdx == 0,
        _ => false,
    }
}

/// How the task was found when it was seized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopState {
    /// It was running (or sleeping in a syscall).
    Running,
    /// It was in group-stop (SIGSTOP and friends) already.
    Stopped(i32),
}

/// A thread seized with PTRACE_SEIZE and currently in a ptrace stop.
pub struct Tracee {
    pid: Pid,
    state: StopState,
    /// Signals that arrived while we held the task and that we suppressed;
    /// they are sent again when the task is released.
    deferred: Vec<i32>,
    /// SIGTRAPs that were not ours and that we took off the queues while
    /// injected code ran (see [`Tracee::put_back_sigtraps`]).
    stolen: Vec<SigInfo>,
    detached: bool,
    /// Seized with PTRACE_O_SUSPEND_SECCOMP: its filters do not apply.
    seccomp_suspended: bool,
    _not_send: PhantomData<*const ()>,
}

/// The SIGTRAPs queued for a thread (and its process) at one moment: a
/// standard signal is queued at most once per queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuedTraps {
    /// In the thread's own queue.
    pub thread: Option<SigInfo>,
    /// In the process-wide queue.
    pub shared: Option<SigInfo>,
}

impl QueuedTraps {
    /// The SIGTRAPs in the two queues `thread` and `shared` (PEEKSIGINFO lists).
    pub fn of(thread: &[SigInfo], shared: &[SigInfo]) -> QueuedTraps {
        let trap = |l: &[SigInfo]| l.iter().find(|s| s.signo() == SIGTRAP).copied();
        QueuedTraps { thread: trap(thread), shared: trap(shared) }
    }
}

impl Tracee {
    /// Seizes `pid` and waits until it is in a ptrace stop.
    ///
    /// Signals delivered before the interrupt trap are passed on to the task
    /// as the kernel would have delivered them (their handlers run before the
    /// task stops), so nothing is lost.
    pub fn seize(pid: Pid) -> Result<Tracee> {
        Self::seize_with(pid, 0)
    }

    /// [`Tracee::seize`] with PTRACE_O_* options (PTRACE_O_TRACESYSGOOD is
    /// always added: a syscall stop must not look like a SIGTRAP).
    pub fn seize_with(pid: Pid, options: u32) -> Result<Tracee> {
        ptrace::seize(pid, options | PTRACE_O_TRACESYSGOOD).map_err(|e| InfectError::errno(pid, "PTRACE_SEIZE", e))?;
        let mut t = Tracee::adopted(pid);
        if let Err(e) = ptrace::interrupt(pid) {
            t.detached = true;
            let _ = ptrace::detach(pid, 0);
            return Err(InfectError::errno(pid, "PTRACE_INTERRUPT", e));
        }
        for _ in 0..64 {
            let st = match wait::wait_pid_timeout(pid, SEIZE_TIMEOUT) {
                Ok(Some(st)) => st,
                Ok(None) => {
                    // It never stops (uninterruptible sleep: a FUSE or NFS
                    // server that does not answer, maybe one of the tree's
                    // own, frozen already): the tree is let go rather than
                    // held frozen for ever. PTRACE_DETACH needs a stopped
                    // task; this one is let go when crtools exits.
                    t.detached = true;
                    let st = crate::proc::stat::read(pid).ok();
                    let how = st.map_or_else(String::new, |s| format!(" (state {:?}, wchan {})", s.state, wchan(pid)));
                    return Err(InfectError::unexpected(
                        pid,
                        "seize",
                        format!("did not stop within {} s{how}", SEIZE_TIMEOUT.as_secs()),
                    ));
                }
                Err(e) => {
                    t.detached = true;
                    return Err(InfectError::errno(pid, "wait for the seize stop", e));
                }
            };
            match st {
                WaitStatus::Stopped { sig, event } if event == PTRACE_EVENT_STOP => {
                    // A group-stop shows up as an event stop with the stop signal.
                    if matches!(sig, SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU) {
                        t.state = StopState::Stopped(sig);
                    } else {
                        t.undo_spurious_eintr()?;
                    }
                    return Ok(t);
                }
                WaitStatus::Stopped { sig, event: 0 } => {
                    // Signal-delivery-stop before our interrupt: deliver it.
                    ptrace::cont(pid, sig).map_err(|e| InfectError::errno(pid, "PTRACE_CONT", e))?;
                }
                WaitStatus::Stopped { .. } => {
                    ptrace::cont(pid, 0).map_err(|e| InfectError::errno(pid, "PTRACE_CONT", e))?;
                }
                WaitStatus::Exited(code) => {
                    t.detached = true;
                    return Err(InfectError::unexpected(pid, "seize", format!("exited with {code}")));
                }
                WaitStatus::Signaled(sig, _) => {
                    t.detached = true;
                    return Err(InfectError::unexpected(pid, "seize", format!("killed by signal {sig}")));
                }
                WaitStatus::Continued => {}
            }
        }
        Err(InfectError::unexpected(pid, "seize", "task never reached the interrupt stop"))
    }

    /// Our PTRACE_INTERRUPT wakes a sleeping task with TIF_SIGPENDING set and
    /// no signal to deliver; most sleeping calls then return a restart code
    /// and resume, but a few return -EINTR outright (ep_poll, do_sigtimedwait
    /// check signal_pending() and never restart; signal(7) lists them for
    /// stop/continue). For those waiting without a timeout, -EINTR is turned
    /// into -ERESTARTNOHAND at the interrupt stop: the call restarts unless a
    /// handler runs on the way out, in which case the kernel itself turns it
    /// back into -EINTR. A call with a timeout keeps its -EINTR: restarting
    /// it would wait the whole timeout again.
    ///
    /// Only at the interrupt stop of a task that was running: there, with
    /// orig_rax still the call's number, the task is on that call's own way
    /// out (a handler that already ran would have reset orig_rax with
    /// rt_sigreturn), so any signal behind the -EINTR is still pending and is
    /// delivered exactly as before.
    ///
    /// Not when a signal that does something on delivery is pending: it may
    /// be what ended the call (the kernel answers a stop signal with -EINTR
    /// too, after SIGCONT), so the call must end the same way.
    fn undo_spurious_eintr(&mut self) -> Result<()> {
        let mut regs = self.regs()?;
        if regs.rax as i64 != -EINTR || !waits_forever(&regs) {
            return Ok(());
        }
        let st = crate::proc::status::read(self.pid)
            .map_err(|e| InfectError::unexpected(self.pid, "read status", e.to_string()))?;
        let bit = |sig: i32| 1u64 << (sig - 1);
        // SIG_DFL of these does nothing on delivery.
        let default_ignored = bit(SIGCHLD) | bit(SIGCONT) | bit(SIGURG) | bit(SIGWINCH);
        let inert = st.sig_ign | (default_ignored & !st.sig_cgt);
        if (st.sig_pnd | st.shd_pnd) & !st.sig_blk & !inert != 0 {
            return Ok(());
        }
        regs.rax = -ERESTARTNOHAND as u64;
        log::debug!(task = self.pid.0; "task {}: syscall {} interrupted by the seize: restarts", self.pid, regs.orig_rax);
        self.set_regs(&regs)
    }

    /// Takes over a task or thread that ptrace attached automatically
    /// (PTRACE_O_TRACEFORK/TRACECLONE) and whose first stop was already
    /// waited for.
    pub fn adopted(pid: Pid) -> Tracee {
        Tracee {
            pid,
            state: StopState::Running,
            deferred: Vec::new(),
            stolen: Vec::new(),
            detached: false,
            seccomp_suspended: false,
            _not_send: PhantomData,
        }
    }

    /// Whether the thread's seccomp filters are suspended while we trace it.
    pub fn seccomp_suspended(&self) -> bool {
        self.seccomp_suspended
    }

    /// [`Tracee::seize`] with its seccomp filters suspended
    /// (PTRACE_O_SUSPEND_SECCOMP) where crtools may do that (CAP_SYS_ADMIN,
    /// not under seccomp itself), as plain [`Tracee::seize`] otherwise.
    pub fn seize_suspending_seccomp(pid: Pid) -> Result<Tracee> {
        match Self::seize_with(pid, ptrace::PTRACE_O_SUSPEND_SECCOMP) {
            Ok(mut t) => {
                t.seccomp_suspended = true;
                Ok(t)
            }
            Err(InfectError { step: "PTRACE_SEIZE", cause: super::Cause::Errno(Errno::EPERM), .. }) => Self::seize(pid),
            Err(e) => Err(e),
        }
    }

    /// The thread id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// How the task was found.
    pub fn state(&self) -> StopState {
        self.state
    }

    /// Whether a SIGSTOP reached the task while injected code ran: it was
    /// kept from stopping it then and is sent again at the release.
    pub fn stop_deferred(&self) -> bool {
        self.deferred.contains(&SIGSTOP)
    }

    /// General registers.
    pub fn regs(&self) -> Result<UserRegs> {
        ptrace::get_regs(self.pid).map_err(|e| InfectError::errno(self.pid, "PTRACE_GETREGS", e))
    }

    /// Sets the general registers.
    pub fn set_regs(&self, regs: &UserRegs) -> Result<()> {
        ptrace::set_regs(self.pid, regs).map_err(|e| InfectError::errno(self.pid, "PTRACE_SETREGS", e))
    }

    /// The blocked signal mask.
    pub fn sigmask(&self) -> Result<u64> {
        ptrace::get_sigmask(self.pid).map_err(|e| InfectError::errno(self.pid, "PTRACE_GETSIGMASK", e))
    }

    /// Sets the blocked signal mask.
    pub fn set_sigmask(&self, mask: u64) -> Result<()> {
        ptrace::set_sigmask(self.pid, mask).map_err(|e| InfectError::errno(self.pid, "PTRACE_SETSIGMASK", e))
    }

    /// Resumes the task with the current registers and waits for the trap of
    /// injected code at `expect` (the address after its `int3`; 0: the first
    /// trap of ours wherever it is); returns the registers there. Any other
    /// stop is reported as an error after the task is put back into a ptrace
    /// stop, except SIGSTOP-like signals, which are deferred to the release,
    /// and SIGTRAPs that are not ours, which are taken off the queue and kept
    /// to be queued again by [`Tracee::put_back_sigtraps`].
    pub(crate) fn run_until_trap(&mut self, step: &'static str, expect: u64) -> Result<UserRegs> {
        let pid = self.pid;
        ptrace::cont(pid, 0).map_err(|e| InfectError::errno(pid, step, e))?;
        loop {
            let st = wait::wait_pid(pid).map_err(|e| InfectError::errno(pid, step, e))?;
            match st {
                WaitStatus::Stopped { sig: SIGTRAP, event: 0 } => {
                    let regs = self.regs()?;
                    let si = ptrace::get_siginfo(pid).map_err(|e| InfectError::errno(pid, "PTRACE_GETSIGINFO", e))?;
                    // Our int3 raises SIGTRAP with SI_KERNEL. A SIGTRAP that was
                    // already queued absorbs it (a standard signal is queued once),
                    // so the stop at our trap may carry the other one's siginfo.
                    let ours = si.code() == SI_KERNEL;
                    if regs.rip == expect || (expect == 0 && ours) {
                        if !ours {
                            self.stolen.push(si);
                        }
                        return Ok(regs);
                    }
                    // Someone's SIGTRAP, dequeued before our trap (we unblocked
                    // it): keep it off the task for now and run on.
                    log::debug!(task = pid.0; "task {pid}: took a pending SIGTRAP (code {}) off the queue", si.code());
                    self.stolen.push(si);
                    ptrace::cont(pid, 0).map_err(|e| InfectError::errno(pid, step, e))?;
                }
                WaitStatus::Stopped { sig, event: 0 } if matches!(sig, SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU) => {
                    self.deferred.push(sig);
                    ptrace::cont(pid, 0).map_err(|e| InfectError::errno(pid, step, e))?;
                }
                WaitStatus::Stopped { sig, event: 0 } => {
                    // A synchronous fault in injected code: the task is in
                    // signal-delivery-stop and the signal will be discarded.
                    let regs = self.regs().ok();
                    return Err(InfectError::unexpected(
                        pid,
                        step,
                        format!("signal {sig} at rip {:#x}", regs.map(|r| r.rip).unwrap_or(0)),
                    ));
                }
                WaitStatus::Stopped { .. } => {
                    ptrace::cont(pid, 0).map_err(|e| InfectError::errno(pid, step, e))?;
                }
                WaitStatus::Exited(c) => {
                    self.detached = true;
                    return Err(InfectError::unexpected(pid, step, format!("exited with {c}")));
                }
                WaitStatus::Signaled(s, _) => {
                    self.detached = true;
                    return Err(InfectError::unexpected(pid, step, format!("killed by signal {s}")));
                }
                WaitStatus::Continued => {}
            }
        }
    }

    /// Resumes the task (PTRACE_CONT) without waiting: it runs injected
    /// code that serves the engine until [`Tracee::interrupt_running`].
    pub(crate) fn run_free(&mut self, step: &'static str) -> Result<()> {
        ptrace::cont(self.pid, 0).map_err(|e| InfectError::errno(self.pid, step, e))
    }

    /// While the task runs free: handles one stop it reached, if any, without
    /// waiting, as [`Tracee::run_until_trap`] does (a stop signal is deferred,
    /// a SIGTRAP is taken off and kept, the task runs on); a fault, a trap of
    /// the injected code itself or the task's end is an error.
    pub(crate) fn poll_running(&mut self, step: &'static str, trap: u64) -> Result<()> {
        let pid = self.pid;
        let Some((_, st)) =
            wait::wait4(pid, wait::WALL | wait::WNOHANG).map_err(|e| InfectError::errno(pid, step, e))?
        else {
            return Ok(());
        };
        self.running_stop(st, step, trap).map(drop)
    }

    /// One stop of a task running free: Ok(true) at an event stop (the
    /// task stays stopped), Ok(false) when it was handled and the task runs on.
    fn running_stop(&mut self, st: WaitStatus, step: &'static str, trap: u64) -> Result<bool> {
        let pid = self.pid;
        let cont = |pid| ptrace::cont(pid, 0).map_err(|e| InfectError::errno(pid, step, e));
        match st {
            WaitStatus::Stopped { sig: SIGTRAP, event: 0 } => {
                let regs = self.regs()?;
                if regs.rip == trap {
                    return Err(InfectError::unexpected(pid, step, "the injected code left its loop"));
                }
                let si = ptrace::get_siginfo(pid).map_err(|e| InfectError::errno(pid, "PTRACE_GETSIGINFO", e))?;
                log::debug!(task = pid.0; "task {pid}: took a pending SIGTRAP (code {}) off the queue", si.code());
                self.stolen.push(si);
                cont(pid)?;
                Ok(false)
            }
            WaitStatus::Stopped { sig, event: 0 } if matches!(sig, SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU) => {
                self.deferred.push(sig);
                cont(pid)?;
                Ok(false)
            }
            WaitStatus::Stopped { sig, event: 0 } => {
                let regs = self.regs().ok();
                Err(InfectError::unexpected(
                    pid,
                    step,
                    format!("signal {sig} at rip {:#x}", regs.map(|r| r.rip).unwrap_or(0)),
                ))
            }
            WaitStatus::Stopped { event, .. } if event == PTRACE_EVENT_STOP => Ok(true),
            WaitStatus::Stopped { .. } => {
                cont(pid)?;
                Ok(false)
            }
            WaitStatus::Exited(c) => {
                self.detached = true;
                Err(InfectError::unexpected(pid, step, format!("exited with {c}")))
            }
            WaitStatus::Signaled(s, _) => {
                self.detached = true;
                Err(InfectError::unexpected(pid, step, format!("killed by signal {s}")))
            }
            WaitStatus::Continued => Ok(false),
        }
    }

    /// Stops a task running free (PTRACE_INTERRUPT) and waits for the stop;
    /// stops on the way are handled as in [`Tracee::poll_running`].
    pub(crate) fn interrupt_running(&mut self, step: &'static str, trap: u64) -> Result<()> {
        let pid = self.pid;
        ptrace::interrupt(pid).map_err(|e| InfectError::errno(pid, step, e))?;
        loop {
            let st = wait::wait_pid(pid).map_err(|e| InfectError::errno(pid, step, e))?;
            if self.running_stop(st, step, trap)? {
                return Ok(());
            }
        }
    }

    /// Resumes with PTRACE_SYSCALL up to the syscall's entry, then its exit,
    /// and returns the registers at the exit. No signal is raised: the task
    /// must have every signal it could receive blocked, SIGTRAP included, or
    /// a queued one is delivered on the way; SIGSTOP (which cannot be
    /// blocked) is deferred to the release.
    pub(crate) fn run_to_syscall_exit(&mut self) -> Result<UserRegs> {
        let pid = self.pid;
        for stop in ["syscall entry", "syscall exit"] {
            ptrace::syscall(pid, 0).map_err(|e| InfectError::errno(pid, "PTRACE_SYSCALL", e))?;
            loop {
                match wait::wait_pid(pid).map_err(|e| InfectError::errno(pid, stop, e))? {
                    // PTRACE_O_TRACESYSGOOD marks syscall stops with 0x80.
                    WaitStatus::Stopped { sig, event: 0 } if sig == SIGTRAP | 0x80 => break,
                    WaitStatus::Stopped { sig, event: 0 } if matches!(sig, SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU) => {
                        self.deferred.push(sig);
                        ptrace::syscall(pid, 0).map_err(|e| InfectError::errno(pid, "PTRACE_SYSCALL", e))?;
                    }
                    // A task resumed from group-stop reports it again on its way
                    // out (PTRACE_EVENT_STOP) before it reaches the syscall.
                    WaitStatus::Stopped { event, .. } if event != 0 => {
                        ptrace::syscall(pid, 0).map_err(|e| InfectError::errno(pid, "PTRACE_SYSCALL", e))?;
                    }
                    WaitStatus::Exited(c) => {
                        self.detached = true;
                        return Err(InfectError::unexpected(pid, stop, format!("exited with {c}")));
                    }
                    WaitStatus::Signaled(s, _) => {
                        self.detached = true;
                        return Err(InfectError::unexpected(pid, stop, format!("killed by signal {s}")));
                    }
                    st => {
                        return Err(InfectError::unexpected(pid, stop, format!("unexpected stop {st:?}")));
                    }
                }
            }
        }
        self.regs()
    }

    /// The SIGTRAPs queued now for this thread and, with `shared`, its process.
    pub fn queued_sigtraps(&self, shared: bool) -> Result<QueuedTraps> {
        let pid = self.pid;
        let peek =
            |flags| ptrace::peek_all_siginfo(pid, flags).map_err(|e| InfectError::errno(pid, "PTRACE_PEEKSIGINFO", e));
        let thread = peek(0)?;
        let shared = if shared { peek(ptrace::PEEKSIGINFO_SHARED)? } else { Vec::new() };
        Ok(QueuedTraps::of(&thread, &shared))
    }

    /// Queues again, with its own siginfo, every SIGTRAP of `before` (taken
    /// before injected code ran) that is no longer queued, and a SIGTRAP that
    /// `Tracee::run_until_trap` took off the task after it arrived while we
    /// held it: our traps must not eat a SIGTRAP the task has blocked and
    /// reads later.
    ///
    /// The task must have SIGTRAP blocked now (it is queued, not delivered)
    /// and `scratch` must be 128 writable bytes in it; no trap is raised
    /// (PTRACE_SYSCALL stops). `tgid` is the thread's process: the shared
    /// queue is refilled from the leader only, as rt_sigqueueinfo refuses
    /// kernel si_codes unless the caller's tid is the target pid.
    pub fn put_back_sigtraps(&mut self, tgid: Pid, before: &QueuedTraps, scratch: u64) -> Result<()> {
        let pid = self.pid;
        let leader = tgid == pid;
        let now = self.queued_sigtraps(leader)?;
        let mut todo: Vec<(SigInfo, bool)> = Vec::new();
        if let (Some(si), None) = (before.thread, now.thread) {
            todo.push((si, false));
        }
        if let (Some(si), None, true) = (before.shared, now.shared, leader) {
            todo.push((si, true));
        }
        let mut stolen = std::mem::take(&mut self.stolen);
        // Those of `before` are in `todo` already; one that arrived while we
        // held the task goes to this thread's queue.
        stolen.retain(|s| Some(*s) != before.thread && Some(*s) != before.shared);
        if now.thread.is_none() && before.thread.is_none() {
            if let Some(si) = stolen.pop() {
                todo.push((si, false));
            }
        }
        for si in stolen {
            log::debug!(task = pid.0; "task {pid}: another SIGTRAP (code {}) arrived while held: merged", si.code());
        }
        for (si, shared) in todo {
            crate::sys::process_vm::write_all(pid, scratch, &si.0)
                .map_err(|e| InfectError::errno(pid, "write a SIGTRAP's siginfo", e))?;
            let (nr, args) = if shared {
                (Sysno::rt_sigqueueinfo, [tgid.0 as u64, SIGTRAP as u64, scratch, 0, 0, 0])
            } else {
                (Sysno::rt_tgsigqueueinfo, [tgid.0 as u64, pid.0 as u64, SIGTRAP as u64, scratch, 0, 0])
            };
            self.remote_syscall_quiet_ok(nr, args, "queue the pending SIGTRAP again")?;
            log::debug!(task = pid.0; "task {pid}: pending SIGTRAP queued again ({})", if shared { "shared" } else { "thread" });
        }
        Ok(())
    }

    /// Resumes a task that is about to run the restorer blob and waits for
    /// the blob's trap; returns the registers there.
    pub fn run_restorer(&mut self) -> Result<UserRegs> {
        self.run_until_trap("restorer blob", 0)
    }

    /// Detaches, letting the task run on (or stay stopped if it was found in
    /// group-stop), and re-sends any deferred stop signal.
    pub fn detach(mut self) -> Result<()> {
        self.release()
    }

    /// Detaches as the kernel does when the tracer dies: the task runs on
    /// from where it is, nothing put back, no deferred signal sent again.
    pub(crate) fn let_go(&mut self) -> Result<()> {
        self.detached = true;
        ptrace::detach(self.pid, 0).map_err(|e| InfectError::errno(self.pid, "PTRACE_DETACH", e))
    }

    /// Detaches and leaves the task in group-stop by stop signal `sig`
    /// (SIGSTOP, or the SIGTSTP, SIGTTIN or SIGTTOU it was stopped by, which
    /// its parent's waitid reports): resumable with SIGCONT, no longer traced.
    ///
    /// Returns once the thread is really in group-stop: the detach only hands
    /// it the signal, and a SIGCONT sent before it acted on that would be
    /// overtaken by it.
    pub fn detach_stopped(mut self, sig: i32) -> Result<()> {
        self.state = StopState::Stopped(sig);
        let pid = self.pid;
        self.release()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match crate::proc::stat::read(pid) {
                Ok(st) if st.state == crate::proc::stat::TaskState::Stopped => return Ok(()),
                Ok(st)
                    if matches!(
                        st.state,
                        crate::proc::stat::TaskState::Zombie | crate::proc::stat::TaskState::Dead
                    ) =>
                {
                    return Ok(())
                }
                Err(e) if e.is_gone() => return Ok(()),
                _ if std::time::Instant::now() > deadline => {
                    return Err(InfectError::unexpected(pid, "leave stopped", "the task did not stop"))
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
    }

    /// Kills the task with SIGKILL and waits until it is dead (its parent
    /// still reaps it).
    pub fn kill(mut self) -> Result<()> {
        self.send_kill()?;
        self.reap()
    }

    /// The first half of [`Tracee::kill`]: SIGKILL sent. A task held in a
    /// ptrace stop never runs its own code again once it is pending.
    pub fn send_kill(&mut self) -> Result<()> {
        match crate::sys::signal::kill(self.pid, 9) {
            // Another thread's kill already took the whole group down.
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(InfectError::errno(self.pid, "kill", e)),
        }
    }

    /// The second half of [`Tracee::kill`]: waits until the task is gone.
    pub fn reap(mut self) -> Result<()> {
        let pid = self.pid;
        loop {
            match wait::wait_pid(pid) {
                Ok(WaitStatus::Exited(_)) | Ok(WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(e) => return Err(InfectError::errno(pid, "wait for the killed task", e)),
            }
        }
        self.detached = true;
        Ok(())
    }

    fn release(&mut self) -> Result<()> {
        if self.detached {
            return Ok(());
        }
        self.detached = true;
        let pid = self.pid;
        // A task found in group-stop stays stopped: detaching with the stop
        // signal puts it back into group-stop. A stop signal that arrived
        // while we held the task is delivered the same way.
        let sig = match self.state {
            StopState::Stopped(sig) => sig,
            StopState::Running => self.deferred.first().copied().unwrap_or(0),
        };
        // Whatever our last stop was (a syscall-exit stop after a quiet remote
        // syscall, a trap), the detach wakes the task with TIF_SIGPENDING set
        // (ptrace_signal_wake_up), so on its way out the kernel runs its
        // restart logic on the registers we put back: an interrupted call
        // restarts (or fails with EINTR under a handler) as it would have.
        // The signal is honoured at a signal-delivery or syscall stop
        // (send_sig), which is where injected code leaves the task.
        ptrace::detach(pid, sig).map_err(|e| InfectError::errno(pid, "PTRACE_DETACH", e))?;
        Ok(())
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            if e.cause_errno() != Some(Errno::ESRCH) {
                log::warn!("{e}");
            }
        }
    }
}

impl InfectError {
    /// The errno, when the cause is one.
    pub fn cause_errno(&self) -> Option<Errno> {
        match self.cause {
            super::Cause::Errno(e) => Some(e),
            super::Cause::Unexpected(_) | super::Cause::Refused(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_untimed_waits_are_restarted() {
        let r = |orig_rax: u64, r10: u64, r8: u64, rdx: u64| UserRegs { orig_rax, r10, r8, rdx, ..Default::default() };
        assert_eq!(NR_EPOLL_WAIT, libc::SYS_epoll_wait as u64);
        assert_eq!(NR_EPOLL_PWAIT, libc::SYS_epoll_pwait as u64);
        assert_eq!(NR_EPOLL_PWAIT2, libc::SYS_epoll_pwait2 as u64);
        assert_eq!(NR_RT_SIGTIMEDWAIT, libc::SYS_rt_sigtimedwait as u64);
        // The timeout is an int: only its low 32 bits count.
        assert!(waits_forever(&r(NR_EPOLL_WAIT, 0xffff_ffff, 0, 0)));
        assert!(!waits_forever(&r(NR_EPOLL_WAIT, 1000, 0, 0)));
        assert!(waits_forever(&r(NR_EPOLL_PWAIT, u64::MAX, 0, 0)));
        assert!(waits_forever(&r(NR_EPOLL_PWAIT, u64::MAX, 0x7000, 0)), "own mask");
        assert!(waits_forever(&r(NR_EPOLL_PWAIT2, 0, 0x7000, 0)));
        assert!(!waits_forever(&r(NR_EPOLL_PWAIT2, 0x7000, 0, 0)), "timeout");
        assert!(waits_forever(&r(NR_RT_SIGTIMEDWAIT, 8, 0, 0)));
        assert!(!waits_forever(&r(NR_RT_SIGTIMEDWAIT, 8, 0, 0x7000)), "timeout");
        assert!(!waits_forever(&r(0, 0, 0, 0)), "read restarts by itself");
    }
}
