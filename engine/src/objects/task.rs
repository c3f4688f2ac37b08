//! Per-task state: registers and xsave area, signal mask, actions and
//! queues, sigaltstack, itimers and POSIX timers, rlimits, personality,
//! umask, cwd and root, prctl bits, credentials, rseq and the
//! clear-child-tid address; oom_score_adj (set from outside at the task's
//! first stop), loginuid and membarrier registrations (set by the
//! restorer: the kernel takes both only from the task itself).
//!
//! Not restored: the parent-death signal and the exit signal of the root
//! task (its parent changes: crtools restores it with SIGCHLD), and the
//! time left of a relative sleep without a `rem` pointer (usleep): no file
//! or call shows it, so that sleep restarts with its full time. A POSIX
//! timer with a non-zero overrun count is refused (nothing can set it).
//!
//! Dump: registers and queues through ptrace, in-task state through the
//! parasite, the rest from /proc. Restore: the restorer blob sets what the
//! task must set itself; registers, xsave and the final mask are set by the
//! engine through ptrace when the blob stops (see `restore`).
use crate::error::{Context, Error, Result};
use crate::image::core::{
    Creds, Itimer, Itimers, MembarrierRegs, PosixTimer, PrctlBits, ProcessCore, RestartSleep, Rlimit, Rseq, SaFlags,
    SigAction, SigAltStack, Siginfo, SsFlags, TaskState, ThreadCore,
};
use crate::image::RawStr;
use crate::infect::Parasite;
use crate::proc;
use crate::restore::plan::PlanBuilder;
use crate::sys::ptrace::{self, UserRegs, NT_X86_XSTATE};
use crate::sys::Pid;
use restorer_plan as rp;
use std::os::unix::ffi::OsStrExt;

const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;
const EINTR: i64 = -4;
const NR_RESTART_SYSCALL: u64 = 219;
/// Offset of XSTATE_BV in the xsave header.
const XSTATE_BV_OFFSET: usize = 512;
/// Room for the largest xsave area a CPU reports (AMX needs ~11 KiB).
const XSAVE_MAX: usize = 64 * 1024;
/// RLIM_NLIMITS.
const NLIMITS: u32 = 16;

/// Rewrites a syscall-restart state the way the kernel would when it
/// resumes the task without running a handler, so the restored task
/// re-executes the syscall (see arch_do_signal_or_restart).
///
/// The restart block of `-ERESTART_RESTARTBLOCK` lives in the kernel and is
/// lost: the syscall is restarted from its original arguments (a relative
/// sleep sleeps its full time again). A task already inside
/// `restart_syscall` gets `-EINTR`, as the original syscall is unknown.
pub fn rewrite_restart(regs: &mut UserRegs) {
    if (regs.orig_rax as i64) < 0 {
        return;
    }
    match regs.rax as i64 {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK => {
            if regs.orig_rax == NR_RESTART_SYSCALL {
                regs.rax = EINTR as u64;
            } else {
                regs.rax = regs.orig_rax;
                regs.rip -= 2;
            }
        }
        _ => {}
    }
    // Nothing is pending any more: the kernel must not touch these again.
    regs.orig_rax = u64::MAX;
}

const NR_NANOSLEEP: u64 = 35;
const NR_CLOCK_NANOSLEEP: u64 = 230;
const TIMER_ABSTIME: u64 = 1;
const CLOCK_MONOTONIC: i32 = 1;

/// The relative sleep a seized thread was in, with the time it had left,
/// from its registers before [`rewrite_restart`]: nanosleep or a relative
/// clock_nanosleep that the stop interrupted with `-ERESTART_RESTARTBLOCK`.
/// The kernel wrote the time left to the sleep's `rem` when the stop
/// interrupted it. Without a `rem` (usleep passes none) the time left is
/// nowhere to be read: the sleep restarts with its full time (None).
pub fn restart_sleep(tid: Pid, regs: &UserRegs) -> Result<Option<RestartSleep>> {
    if regs.rax as i64 != ERESTART_RESTARTBLOCK {
        return Ok(None);
    }
    let (clock, rmtp) = match regs.orig_rax {
        NR_NANOSLEEP => (CLOCK_MONOTONIC, regs.rsi),
        NR_CLOCK_NANOSLEEP if regs.rsi & TIMER_ABSTIME == 0 => (regs.rdi as i32, regs.r10),
        _ => return Ok(None),
    };
    if rmtp == 0 {
        log::debug!(task = tid.0; "thread {tid}: relative sleep without rem: restarts with its full time");
        return Ok(None);
    }
    let b = crate::sys::process_vm::read_vec(tid, rmtp, 16).ctx(tid, "read the sleep's time left")?;
    if b.len() < 16 {
        return Err(Error::task(tid, "short read of the sleep's time left"));
    }
    let sec = i64::from_ne_bytes(b[0..8].try_into().expect("8 bytes"));
    let nsec = i64::from_ne_bytes(b[8..16].try_into().expect("8 bytes"));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Error::task(tid, format!("the sleep's time left is not a time: {sec} s {nsec} ns")));
    }
    Ok(Some(RestartSleep { clock, remaining_ns: sec as u64 * 1_000_000_000 + nsec as u64, rmtp }))
}

/// Rebuilds the restart block of a sleep found by [`restart_sleep`] in the
/// stopped, restored thread `t`: it runs a relative clock_nanosleep of the
/// time left (with the same clock and `rem`) from `scratch` (16 writable,
/// executable bytes and 16 more for the time), which the engine
/// interrupts. The kernel then holds that sleep's expiry in the thread's
/// restart block, exactly as after the dump's own interruption. `regs` are
/// the thread's final registers (at its syscall instruction, as
/// [`rewrite_restart`] left them): they become a restart_syscall there, or
/// a return of 0 after it if the sleep ran out meanwhile.
pub fn rearm_sleep(
    t: &mut crate::infect::Tracee,
    sleep: &RestartSleep,
    scratch: u64,
    regs: &mut UserRegs,
) -> Result<()> {
    use crate::sys::wait::{self, WaitStatus};
    let tid = t.pid();
    let saved = t.regs().ctx(tid, "read registers")?;
    // The interrupted sleep writes its time left to `rem`: put back what
    // the dump left there.
    let rem = crate::sys::process_vm::read_vec(tid, sleep.rmtp, 16).ctx(tid, "read the sleep's rem")?;
    let ts = [(sleep.remaining_ns / 1_000_000_000) as i64, (sleep.remaining_ns % 1_000_000_000) as i64];
    let mut code = [0u8; 32];
    code[..3].copy_from_slice(&[0x0f, 0x05, 0xcc]); // syscall; int3
    code[16..24].copy_from_slice(&ts[0].to_ne_bytes());
    code[24..32].copy_from_slice(&ts[1].to_ne_bytes());
    crate::sys::process_vm::write_all(tid, scratch, &code).ctx(tid, "write the sleep's code")?;
    let mut r = saved;
    r.rip = scratch;
    r.orig_rax = u64::MAX;
    r.eflags &= !((1 << 8) | (1 << 10));
    (r.rax, r.rdi, r.rsi, r.rdx, r.r10) = (NR_CLOCK_NANOSLEEP, sleep.clock as i64 as u64, 0, scratch + 16, sleep.rmtp);
    t.set_regs(&r).ctx(tid, "PTRACE_SETREGS")?;
    let stop = |what: &str| -> Result<u32> {
        match wait::wait4(tid, wait::WALL).ctx(tid, what)? {
            Some((_, WaitStatus::Stopped { event, .. })) => Ok(event),
            other => Err(Error::task(tid, format!("{what}: unexpected {other:?}"))),
        }
    };
    let mut tries = 0;
    let finished = loop {
        ptrace::cont(tid, 0).ctx(tid, "PTRACE_CONT into the sleep")?;
        // Time to enter the syscall; an interrupt that comes first just
        // stops it before, and it goes round again.
        std::thread::sleep(std::time::Duration::from_micros(200));
        ptrace::interrupt(tid).ctx(tid, "PTRACE_INTERRUPT the sleep")?;
        let event = stop("wait for the sleep's stop")?;
        let now = t.regs().ctx(tid, "read registers")?;
        if event == 0 {
            // On the int3: the sleep ran out first. The interrupt is still
            // pending: take its stop (nothing runs in between).
            ptrace::cont(tid, 0).ctx(tid, "PTRACE_CONT")?;
            stop("wait for the interrupt")?;
            if now.rip != scratch + 3 || now.rax != 0 {
                return Err(Error::task(
                    tid,
                    format!("rebuilding its sleep: trap at {:#x}, rax {:#x}", now.rip, now.rax),
                ));
            }
            break true;
        }
        if now.orig_rax == NR_CLOCK_NANOSLEEP && now.rax as i64 == ERESTART_RESTARTBLOCK {
            break false;
        }
        tries += 1;
        if tries > 1000 {
            return Err(Error::task(tid, format!("rebuilding its sleep: stuck at {:#x} rax {:#x}", now.rip, now.rax)));
        }
        // Stopped before entering the syscall: let it enter.
    };
    t.set_regs(&saved).ctx(tid, "PTRACE_SETREGS")?;
    crate::sys::process_vm::write_all(tid, sleep.rmtp, &rem).ctx(tid, "write the sleep's rem back")?;
    if finished {
        regs.rax = 0;
        regs.rip += 2;
    } else {
        regs.rax = NR_RESTART_SYSCALL;
    }
    Ok(())
}

/// Reads the xsave area; its size is what this CPU and kernel report.
pub fn read_xsave(pid: Pid) -> Result<crate::image::core::Xsave> {
    let mut buf = vec![0u8; XSAVE_MAX];
    let n = ptrace::get_regset(pid, NT_X86_XSTATE, &mut buf).ctx(pid, "PTRACE_GETREGSET NT_X86_XSTATE")?;
    buf.truncate(n);
    // Kept per thread until its image is written: not 64 KiB each.
    buf.shrink_to_fit();
    let xfeatures = buf
        .get(XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .unwrap_or(0);
    Ok(crate::image::core::Xsave { xfeatures, area: buf })
}

/// A thread's scheduling policy, real-time priority, nice value, I/O
/// priority and timer slack.
pub fn sched_of(pid: Pid, tid: Pid) -> Result<crate::image::core::Sched> {
    let st = proc::stat::read_thread(pid, tid).ctx(tid, "read stat")?;
    let ioprio = crate::sys::misc::ioprio_get(tid).ctx(tid, "ioprio_get")?;
    // /proc/TID/timerslack_ns answers for any thread, not only a leader.
    let slack = proc::read_text(tid, "timerslack_ns").ctx(tid, "read timerslack_ns")?;
    let timerslack_ns =
        slack.trim().parse().map_err(|_| Error::task(tid, format!("timerslack_ns: {:?}", slack.trim())))?;
    let cpus = crate::sys::misc::sched_getaffinity(tid).ctx(tid, "sched_getaffinity")?;
    // With SCHED_RESET_ON_FORK, which stat leaves out.
    let policy = crate::sys::misc::sched_getscheduler(tid).ctx(tid, "sched_getscheduler")?;
    if policy & !SCHED_RESET_ON_FORK != st.policy {
        return Err(Error::task(tid, format!("changed its policy while dumped ({} then {policy:#x})", st.policy)));
    }
    Ok(crate::image::core::Sched {
        policy,
        rt_priority: st.rt_priority,
        nice: st.nice as i32,
        ioprio,
        timerslack_ns,
        cpus,
    })
}

const SCHED_RESET_ON_FORK: u32 = 0x4000_0000;

/// Gives thread `tid` its dumped scheduling (from the engine: no injection).
pub fn restore_sched(tid: Pid, s: &crate::image::core::Sched) -> Result<()> {
    crate::sys::misc::set_thread_scheduler(tid, s.policy, s.rt_priority).ctx(tid, "sched_setscheduler")?;
    crate::sys::misc::set_thread_nice(tid, s.nice).ctx(tid, "setpriority")?;
    // Always: 0 (none set) too, or the thread keeps what it inherited from
    // crtools (which may itself run under ionice).
    if crate::sys::misc::ioprio_get(tid).ctx(tid, "ioprio_get")? != s.ioprio {
        crate::sys::misc::ioprio_set(tid, s.ioprio).ctx(tid, "ioprio_set")?;
    }
    // Exactly the dumped CPUs: a CPU this machine lacks (or the restoring
    // crtools may not use) is an error naming them, not a narrower mask.
    if !s.cpus.is_empty() {
        let list = crate::image::core::cpu_list(&s.cpus);
        crate::sys::misc::sched_setaffinity(tid, &s.cpus)
            .map_err(|e| Error::task(tid, format!("sched_setaffinity to CPUs {list}: {e}")))?;
        let now = crate::sys::misc::sched_getaffinity(tid).ctx(tid, "sched_getaffinity")?;
        if now != s.cpus {
            return Err(Error::task(
                tid,
                format!("ran on CPUs {list}, can run only on {} here", crate::image::core::cpu_list(&now)),
            ));
        }
    }
    // Images of format 5 and older hold no timer slack (0): leave the
    // inherited one.
    if s.timerslack_ns != 0 {
        let now = proc::read_text(tid, "timerslack_ns").ctx(tid, "read timerslack_ns")?;
        if now.trim() != s.timerslack_ns.to_string() {
            std::fs::write(proc::pid_path(tid, "timerslack_ns"), s.timerslack_ns.to_string())
                .ctx(tid, "write timerslack_ns")?;
        }
    }
    Ok(())
}

/// SECCOMP_RET_USER_NOTIF: the filter hands the system call to a
/// supervisor holding a listener descriptor.
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;

/// The seccomp filters of stopped thread `tid`, oldest first. A filter
/// that hands system calls to a user-space supervisor (SECCOMP_RET_USER_NOTIF
/// in one of its return instructions) is refused: its listener is not
/// restored.
pub fn seccomp_of(pid: Pid, tid: Pid) -> Result<Vec<crate::image::core::SeccompFilter>> {
    let mut out = Vec::new();
    for index in 0.. {
        let insns = match crate::sys::ptrace::seccomp_get_filter(tid, index) {
            Ok(i) => i,
            // Past the oldest filter, or none at all.
            Err(crate::sys::Errno::ENOENT) => break,
            Err(crate::sys::Errno::EINVAL) if index == 0 => break,
            Err(e) => return Err(Error::task(tid, format!("PTRACE_SECCOMP_GET_FILTER {index}: {e}"))),
        };
        let flags = crate::sys::ptrace::seccomp_get_flags(tid, index)
            .map_err(|e| Error::task(tid, format!("PTRACE_SECCOMP_GET_METADATA {index}: {e}")))?;
        // BPF_RET | BPF_K: the action is in k, the high half of the word.
        if insns.iter().any(|&i| i & 0xffff == 0x06 && ((i >> 32) as u32) & 0xffff_0000 == SECCOMP_RET_USER_NOTIF) {
            let who = if tid == pid { String::new() } else { format!("thread {tid}: ") };
            return Err(Error::refuse(
                pid,
                format!("{who}seccomp filter {index} hands system calls to a supervisor (SECCOMP_RET_USER_NOTIF): not supported"),
            ));
        }
        out.push(crate::image::core::SeccompFilter { flags: flags as u32, insns });
    }
    out.reverse();
    Ok(out)
}

/// A thread's robust futex list, if it registered one.
pub fn robust_list_of(tid: Pid) -> Result<Option<crate::image::core::RobustList>> {
    let (head, len) = crate::sys::misc::get_robust_list(tid).ctx(tid, "get_robust_list")?;
    Ok((head != 0).then_some(crate::image::core::RobustList { head, len }))
}

/// The restorer's form of a thread's credentials.
pub fn plan_creds(pid: Pid, c: &Creds) -> Result<rp::Creds> {
    if c.groups.len() > 32 {
        return Err(Error::refuse(pid, format!("{} supplementary groups; at most 32 are supported", c.groups.len())));
    }
    let mut out = rp::Creds {
        uid: [c.uid, c.euid, c.suid],
        gid: [c.gid, c.egid, c.sgid],
        ngroups: c.groups.len() as u32,
        cap_eff: c.cap_eff,
        cap_prm: c.cap_prm,
        cap_inh: c.cap_inh,
        cap_bnd: c.cap_bnd,
        cap_amb: c.cap_amb,
        securebits: c.securebits,
        fsuid: c.fsuid,
        fsgid: c.fsgid,
        ..Default::default()
    };
    out.groups[..c.groups.len()].copy_from_slice(&c.groups);
    Ok(out)
}

/// Credentials as /proc/pid/status shows them, plus what only prctl tells.
pub fn creds_from_status(status: &proc::status::Status, securebits: u32, no_new_privs: bool) -> Creds {
    Creds {
        uid: status.uid[0],
        euid: status.uid[1],
        suid: status.uid[2],
        fsuid: status.uid[3],
        gid: status.gid[0],
        egid: status.gid[1],
        sgid: status.gid[2],
        fsgid: status.gid[3],
        groups: status.groups.clone(),
        cap_inh: status.cap_inh,
        cap_prm: status.cap_prm,
        cap_eff: status.cap_eff,
        cap_bnd: status.cap_bnd,
        cap_amb: status.cap_amb,
        securebits,
        no_new_privs,
    }
}

fn siginfos(list: Vec<ptrace::SigInfo>) -> Vec<Siginfo> {
    list.into_iter().map(|s| Siginfo(s.0.to_vec())).collect()
}

/// The loginuid the restorer must write: none when the new task has it
/// already. It is per thread: every task of the tree inherits the one of
/// the crtools thread that restores (plans are built on it, it forks the root).
fn plan_loginuid(b: &mut PlanBuilder, pid: Pid, want: Option<u32>) -> Result<()> {
    let own = match std::fs::read_to_string("/proc/thread-self/loginuid") {
        Ok(t) => Some(proc::misc::parse_loginuid(&t).ctx_global("crtools' own loginuid")?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::new(format!("read crtools' own loginuid: {e}"))),
    };
    match (want, own) {
        (None, _) => {}
        (Some(w), Some(o)) if w == o => {}
        (Some(w), Some(_)) => b.plan.loginuid = b.add_str(w.to_string().as_bytes()),
        (Some(w), None) if w == proc::misc::AUDIT_UID_UNSET => {}
        (Some(w), None) => {
            return Err(Error::task(pid, format!("loginuid {w} cannot be restored: this kernel has no audit support")))
        }
    }
    Ok(())
}

/// Thread state of a seized thread (registers rewritten for restart).
/// The speculation control a thread set with PR_SET_SPECULATION_CTRL (a
/// mitigation of its own, as /proc shows it), or None: restore does not
/// set it again (a restored task has its restorer's), so it is refused
/// rather than lost.
pub fn prctl_speculation(status: &proc::status::Status) -> Option<String> {
    let ssb = status.speculation_store_bypass.as_deref();
    let ib = status.other.get("SpeculationIndirectBranch").map(String::as_str);
    if let Some(v @ ("thread mitigated" | "thread force mitigated")) = ssb {
        return Some(format!("Speculation_Store_Bypass: {v}"));
    }
    if let Some(v @ ("conditional disabled" | "conditional force disabled")) = ib {
        return Some(format!("SpeculationIndirectBranch: {v}"));
    }
    None
}

/// Refuses thread `tid` if it set its own speculation control (see
/// [`prctl_speculation`]).
pub fn refuse_prctl_speculation(tid: Pid, status: &proc::status::Status) -> Result<()> {
    match prctl_speculation(status) {
        Some(what) => Err(Error::refuse(
            tid,
            format!("has speculation control set with PR_SET_SPECULATION_CTRL ({what}): not restored yet"),
        )),
        None => Ok(()),
    }
}

pub fn dump_thread_with(p: &mut Parasite<'_>, status: &proc::status::Status) -> Result<ThreadCore> {
    let pid = p.pid();
    refuse_prctl_speculation(pid, status)?;
    let mut regs = p.orig_regs();
    let sleep = restart_sleep(pid, &regs)?;
    rewrite_restart(&mut regs);
    // ptrace reads need the task stopped (the parasite serves running).
    let (xsave, rseq) = p.with_task_stopped(|pid| (read_xsave(pid), ptrace::get_rseq_config(pid))).ctx(pid, "stop")?;
    let xsave = xsave?;
    let sigmask = p.orig_sigmask();
    // As queued before infection: the parasite's traps take a SIGTRAP off
    // the queue until the cure.
    let pending = siginfos(p.orig_pending().0.to_vec());
    let ss = p.sigaltstack().ctx(pid, "read sigaltstack")?;
    let misc = p.misc().ctx(pid, "read prctl state")?;
    let rseq = match rseq {
        Ok(c) if c.rseq_abi_pointer != 0 => {
            Some(Rseq { ptr: c.rseq_abi_pointer, len: c.rseq_abi_size, sig: c.signature })
        }
        Ok(_) => None,
        Err(e) => return Err(Error::task(pid, format!("PTRACE_GET_RSEQ_CONFIGURATION: {e}"))),
    };
    let comm = proc::misc::comm(pid).ctx(pid, "read comm")?;
    let creds = creds_from_status(status, misc.securebits as u32, misc.no_new_privs != 0);
    let sched = sched_of(pid, pid)?;
    let robust_list = robust_list_of(pid)?;
    let seccomp = p.with_task_stopped(|pid| seccomp_of(pid, pid)).ctx(pid, "stop")??;
    Ok(ThreadCore {
        sched,
        regs: (&regs).into(),
        xsave,
        sigmask,
        sigaltstack: SigAltStack { sp: ss.sp, flags: SsFlags::from_bits_retain(ss.flags as u32), size: ss.size },
        pending,
        comm: RawStr(comm),
        creds,
        clear_child_tid: misc.tid_address,
        rseq,
        robust_list,
        seccomp,
        sleep,
        mempolicy: None,
    })
}

/// The task's resource limits: prlimit64, or /proc/pid/limits when
/// prlimit64 is refused (a task of another uid, without CAP_SYS_RESOURCE).
fn read_rlimits(pid: Pid) -> Result<Vec<Rlimit>> {
    let mut out = Vec::new();
    for res in 0..NLIMITS {
        match crate::sys::misc::get_rlimit(pid, res) {
            Ok(r) => out.push(Rlimit { resource: res, cur: r.cur, max: r.max }),
            Err(crate::sys::Errno::EPERM) => {
                let text = std::fs::read_to_string(proc::pid_path(pid, "limits")).ctx(pid, "read limits")?;
                return parse_limits(&text).map_err(|e| Error::task(pid, format!("/proc/{pid}/limits: {e}")));
            }
            Err(e) => return Err(Error::task(pid, format!("prlimit64 of resource {res}: {e}"))),
        }
    }
    Ok(out)
}

/// Parses /proc/pid/limits: after the header, one line per resource in
/// RLIMIT_* order, "%-25s %-20s %-20s %-10s" (name, soft, hard, unit).
pub fn parse_limits(text: &str) -> std::result::Result<Vec<Rlimit>, String> {
    let value = |w: Option<&str>| -> std::result::Result<u64, String> {
        match w {
            Some("unlimited") => Ok(u64::MAX),
            Some(n) => n.parse().map_err(|_| format!("bad limit {n:?}")),
            None => Err("missing limit".into()),
        }
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().skip(1).enumerate().take(NLIMITS as usize) {
        let rest = line.get(26..).ok_or_else(|| format!("short line {line:?}"))?;
        let mut w = rest.split_whitespace();
        let cur = value(w.next())?;
        let max = value(w.next())?;
        out.push(Rlimit { resource: i as u32, cur, max });
    }
    if out.len() != NLIMITS as usize {
        return Err(format!("{} limits, expected {NLIMITS}", out.len()));
    }
    Ok(out)
}

/// Process-wide state of a seized thread-group leader.
pub fn dump_process_with(p: &mut Parasite<'_>, status: &proc::status::Status) -> Result<ProcessCore> {
    let pid = p.pid();
    let acts = p.sigactions().ctx(pid, "read sigactions")?;
    let sigactions = acts
        .actions
        .iter()
        .map(|a| SigAction {
            handler: a.handler,
            flags: SaFlags::from_bits_retain(a.flags),
            restorer: a.restorer,
            mask: a.mask,
        })
        .collect();
    let it = p.itimers().ctx(pid, "read itimers")?;
    let conv = |t: &parasite_proto::ITimerVal| Itimer {
        interval_sec: t.interval_sec as u64,
        interval_usec: t.interval_usec as u64,
        value_sec: t.value_sec as u64,
        value_usec: t.value_usec as u64,
    };
    let itimers = Itimers { real: conv(&it.timers[0]), virt: conv(&it.timers[1]), prof: conv(&it.timers[2]) };

    let listed = proc::timers::read(pid).ctx(pid, "read /proc timers")?;
    let ids: Vec<i32> = listed.iter().map(|t| t.id).collect();
    let states = p.posix_timers(&ids).ctx(pid, "read POSIX timers")?;
    let posix_timers: Vec<PosixTimer> = listed
        .iter()
        .zip(states)
        .map(|(l, s)| PosixTimer {
            id: l.id,
            clock: l.clock_id,
            sigev_notify: l.sigev_notify(),
            signo: l.signo,
            sigev_value: l.sival_ptr,
            notify_tid: l.target as u32,
            interval_sec: s.interval_sec as u64,
            interval_nsec: s.interval_nsec as u64,
            value_sec: s.value_sec as u64,
            value_nsec: s.value_nsec as u64,
            overrun: s.overrun as i32,
        })
        .collect();

    // timer_getoverrun reports the overruns counted when the timer's last
    // signal was delivered; no call sets it (timer_settime resets it to 0),
    // so a non-zero count would silently read 0 after restore.
    if let Some(t) = posix_timers.iter().find(|t| t.overrun != 0) {
        return Err(Error::refuse(
            pid,
            format!(
                "POSIX timer {}: its overrun count ({}, timer_getoverrun) cannot be set again at restore",
                t.id, t.overrun
            ),
        ));
    }
    let shared_pending = siginfos(p.orig_pending().1.to_vec());
    let rlimits = read_rlimits(pid)?;
    let misc = p.misc().ctx(pid, "read prctl state")?;
    let dir = |what: &str, t: proc::PathTarget| {
        if t.deleted {
            return Err(Error::refuse(pid, format!("{what} {} was removed: cannot restore it", t.path.display())));
        }
        Ok(RawStr(t.path.as_os_str().as_bytes().to_vec()))
    };
    // A removed working directory comes back as an empty directory
    // (a removed directory is empty), removed again once the tree runs.
    let cwd_target = proc::misc::cwd(pid).ctx(pid, "read cwd")?;
    let cwd_removed = if cwd_target.deleted {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(proc::pid_path(pid, "cwd")).ctx(pid, "stat cwd")?;
        // The /proc directory of a task that has exited: nothing can make
        // it again (zdtm unhashed_proc).
        if cwd_target.path.starts_with("/proc") {
            return Err(Error::refuse(
                pid,
                format!(
                    "its working directory {} belonged to a task that has exited: cannot make it again",
                    cwd_target.path.display()
                ),
            ));
        }
        Some((m.mode(), m.uid(), m.gid()))
    } else {
        None
    };
    let cwd = RawStr(cwd_target.path.as_os_str().as_bytes().to_vec());
    let root = dir("root directory", proc::misc::root(pid).ctx(pid, "read root")?)?;
    Ok(ProcessCore {
        sigactions,
        itimers,
        posix_timers,
        shared_pending,
        rlimits,
        personality: misc.personality,
        umask: status.umask.unwrap_or(0o022),
        prctl: PrctlBits {
            dumpable: misc.dumpable as u32,
            pdeathsig: misc.pdeathsig,
            child_subreaper: misc.child_subreaper != 0,
        },
        state: TaskState::Alive,
        exit_status: None,
        cwd,
        root,
        oom_score_adj: read_oom_score_adj(pid)?,
        coredump_filter: Some(read_coredump_filter(pid)?),
        // Filled in by the caller: they need the threads or the tracee.
        loginuid: None,
        membarrier: MembarrierRegs::empty(),
        cgroups: Vec::new(),
        cwd_removed,
        exit_signal: proc::stat::read(pid).ctx(pid, "read stat")?.exit_signal,
        stop_signal: 0,
        xcomp_perm: 0,
    })
}

/// Makes an empty directory for every removed working directory of the
/// tree (where it was, or next to it when that name is taken again) and
/// points the tasks' `cwd` at it; the directories made go again when the
/// result is dropped (the tree runs, or the restore failed).
/// `kept`: removed directories the files restore made already (open as
/// descriptors too), by where they were: the same directories.
pub fn make_removed_cwds<'a>(
    processes: impl Iterator<Item = (Pid, &'a mut ProcessCore)>,
    kept: &std::collections::HashMap<std::path::PathBuf, std::path::PathBuf>,
) -> Result<super::files::MadeDirs> {
    let mut made = super::files::MadeDirs::default();
    let mut by_path: std::collections::HashMap<Vec<u8>, std::path::PathBuf> = Default::default();
    for (pid, p) in processes {
        let Some((mode, uid, gid)) = p.cwd_removed else { continue };
        let orig = p.cwd.as_bytes().to_vec();
        let dir = match by_path.get(&orig) {
            Some(d) => d.clone(),
            None if kept.contains_key(std::path::Path::new(p.cwd.as_os_str())) => {
                let d = kept[std::path::Path::new(p.cwd.as_os_str())].clone();
                made.0.push(d.clone());
                by_path.insert(orig, d.clone());
                d
            }
            None => {
                let path = std::path::PathBuf::from(p.cwd.as_os_str());
                // Removed with its parents: they are made again for a moment.
                super::files::make_missing_parents(&path, &mut made.0).map_err(|m| Error::task(pid, m))?;
                let d = match std::fs::create_dir(&path) {
                    Ok(()) => path,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        let alt = path.with_file_name(format!(".{name}.crtools-cwd.{}", std::process::id()));
                        std::fs::create_dir(&alt).map_err(|e| {
                            Error::task(pid, format!("make {} for its removed working directory: {e}", alt.display()))
                        })?;
                        alt
                    }
                    Err(e) => {
                        return Err(Error::task(
                            pid,
                            format!("make {} again for its removed working directory: {e}", path.display()),
                        ))
                    }
                };
                made.0.push(d.clone());
                use std::os::unix::fs::PermissionsExt;
                std::os::unix::fs::chown(&d, Some(uid), Some(gid)).ctx(pid, "chown its working directory")?;
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode & 0o7777))
                    .ctx(pid, "chmod its working directory")?;
                by_path.insert(orig, d.clone());
                d
            }
        };
        p.cwd = RawStr(dir.as_os_str().as_bytes().to_vec());
    }
    Ok(made)
}

/// `/proc/<pid>/oom_score_adj`.
pub fn read_oom_score_adj(pid: Pid) -> Result<i32> {
    proc::misc::oom_score_adj(pid).ctx(pid, "read oom_score_adj")
}

/// Sets `/proc/<pid>/oom_score_adj` from outside (lowering it needs
/// CAP_SYS_RESOURCE); left alone when it is right already.
/// `/proc/pid/coredump_filter`: which mappings a core dump of the process
/// holds (bits of the mm, kept while the restorer replaces its mappings).
pub fn read_coredump_filter(pid: Pid) -> Result<u32> {
    let t = proc::read_text(pid, "coredump_filter").ctx(pid, "read coredump_filter")?;
    u32::from_str_radix(t.trim(), 16).map_err(|_| Error::task(pid, format!("coredump_filter: {:?}", t.trim())))
}

/// Sets `/proc/pid/coredump_filter` to `value` if it is not that already.
pub fn restore_coredump_filter(pid: Pid, value: u32) -> Result<()> {
    if read_coredump_filter(pid)? == value {
        return Ok(());
    }
    std::fs::write(proc::pid_path(pid, "coredump_filter"), format!("{value:#x}"))
        .map_err(|e| Error::task(pid, format!("set coredump_filter to {value:#x}: {e}")))
}

pub fn restore_oom_score_adj(pid: Pid, value: i32) -> Result<()> {
    if read_oom_score_adj(pid)? == value {
        return Ok(());
    }
    std::fs::write(proc::pid_path(pid, "oom_score_adj"), value.to_string())
        .map_err(|e| Error::task(pid, format!("set oom_score_adj to {value}: {e}")))
}

/// A task's security label (LSM: AppArmor profile, SELinux context...), as
/// /proc/TID/attr/current shows it; None without a module that labels
/// tasks (the file then answers EINVAL).
fn lsm_label(tid: Pid) -> Result<Option<String>> {
    match std::fs::read(proc::pid_path(tid, "attr/current")) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            Ok(Some(s.trim_end_matches(['\n', '\0']).to_string()))
        }
        Err(e) if matches!(e.raw_os_error(), Some(22) | Some(2)) => Ok(None),
        Err(e) => Err(Error::task(tid, format!("read attr/current: {e}"))),
    }
}

/// Why a task labelled `theirs` cannot be restored by crtools labelled
/// `ours`, if it cannot: restored tasks carry crtools' own label, and
/// giving them another is not done yet. A task confined differently would
/// come back unconfined or confined as crtools is.
fn label_refusal(theirs: &Option<String>, ours: &Option<String>) -> Option<String> {
    (theirs != ours).then(|| {
        format!(
            "runs under the security label {:?} (crtools runs under {:?}): restoring LSM labels is not supported",
            theirs.as_deref().unwrap_or("none"),
            ours.as_deref().unwrap_or("none")
        )
    })
}

/// Refuses a task any of whose threads `tids` carries another security
/// label than crtools itself.
pub fn refuse_foreign_label(pid: Pid, tids: &[Pid]) -> Result<()> {
    let ours = lsm_label(crate::sys::misc::getpid())?;
    for &tid in tids {
        if let Some(why) = label_refusal(&lsm_label(tid)?, &ours) {
            let who = if tid == pid { String::new() } else { format!("thread {tid} ") };
            return Err(Error::refuse(pid, format!("{who}{why}")));
        }
    }
    Ok(())
}

/// The loginuid of process `pid`. It is per thread (inherited at clone);
/// the restorer sets it once before creating the threads, so threads with
/// another loginuid than their process are refused by name.
pub fn read_loginuid(pid: Pid, tids: &[Pid]) -> Result<Option<u32>> {
    let own = proc::misc::loginuid(pid).ctx(pid, "read loginuid")?;
    for &tid in tids.iter().filter(|&&t| t != pid) {
        let file = format!("task/{tid}/loginuid");
        let theirs = proc::read_text(pid, &file)
            .and_then(|t| proc::misc::parse_loginuid(&t))
            .ctx(pid, &format!("read the loginuid of thread {tid}"))?;
        if Some(theirs) != own {
            return Err(Error::refuse(
                pid,
                format!(
                    "thread {tid} has loginuid {theirs}, its process {}: per-thread loginuids are not restored yet",
                    own.map_or_else(|| "none".into(), |u| u.to_string())
                ),
            ));
        }
    }
    Ok(own)
}

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: u64 = 1 << 3;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 1 << 5;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ: u64 = 1 << 7;
const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;
const EPERM: i64 = 1;
const EINVAL: i64 = 22;
const ENOSYS: i64 = 38;

/// The membarrier(2) registrations of the seized task's address space, by
/// a remote membarrier call in the task (registrations are per mm).
///
/// MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3+) reports all four. Older
/// kernels are probed: a private expedited command (plain, SYNC_CORE, RSEQ)
/// fails with EPERM unless the mm registered for it (the probe itself is a
/// harmless barrier). MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED has no such
/// probe: MEMBARRIER_CMD_GLOBAL_EXPEDITED succeeds whether or not the
/// caller registered (registering only makes it a target of other
/// processes' barriers), so before 6.3 that registration goes unseen.
/// The xsave features the process may use (ARCH_GET_XCOMP_PERM, asked in
/// the task: the permission is the process's); 0 where the kernel has no
/// such call.
pub fn dump_xcomp_perm(p: &mut Parasite<'_>) -> Result<u64> {
    const ARCH_GET_XCOMP_PERM: u64 = 0x1022;
    let pid = p.pid();
    let at = p.scratch();
    let r = p
        .remote_syscall(crate::sys::Sysno::arch_prctl, [ARCH_GET_XCOMP_PERM, at, 0, 0, 0, 0])
        .ctx(pid, "remote arch_prctl")?;
    if r < 0 {
        return Ok(0);
    }
    let b = crate::sys::process_vm::read_vec(pid, at, 8).ctx(pid, "read scratch")?;
    Ok(b.get(..8).map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes"))))
}

/// The xsave feature restore asks ARCH_REQ_XCOMP_PERM for (the dynamic
/// one the dumped process was permitted: AMX tile data, 18), or 0.
pub fn xcomp_request(perm: u64) -> u32 {
    const XFEATURE_XTILEDATA: u32 = 18;
    if perm & (1 << XFEATURE_XTILEDATA) != 0 {
        XFEATURE_XTILEDATA
    } else {
        0
    }
}

pub fn dump_membarrier(p: &mut Parasite<'_>) -> Result<MembarrierRegs> {
    let pid = p.pid();
    let mut call =
        |cmd: u64| p.remote_syscall(crate::sys::Sysno::membarrier, [cmd, 0, 0, 0, 0, 0]).ctx(pid, "remote membarrier");
    let r = call(MEMBARRIER_CMD_GET_REGISTRATIONS)?;
    if r >= 0 {
        return Ok(MembarrierRegs::from_bits_retain(r as u32));
    }
    if r == -ENOSYS {
        return Ok(MembarrierRegs::empty());
    }
    if r != -EINVAL {
        return Err(Error::task(
            pid,
            format!("MEMBARRIER_CMD_GET_REGISTRATIONS: {}", crate::sys::Errno::new(-r as i32)),
        ));
    }
    let mut regs = MembarrierRegs::empty();
    for (probe, reg) in [
        (MEMBARRIER_CMD_PRIVATE_EXPEDITED, MembarrierRegs::REGISTER_PRIVATE_EXPEDITED),
        (MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, MembarrierRegs::REGISTER_PRIVATE_EXPEDITED_SYNC_CORE),
        (MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MembarrierRegs::REGISTER_PRIVATE_EXPEDITED_RSEQ),
    ] {
        match call(probe)? {
            0 => regs |= reg,
            // Not registered, or not supported here (so not registered).
            r if r == -EPERM || r == -EINVAL => {}
            r => {
                return Err(Error::task(
                    pid,
                    format!("membarrier probe {probe:#x}: {}", crate::sys::Errno::new(-r as i32)),
                ))
            }
        }
    }
    Ok(regs)
}

/// Fills the plan with the in-task state of `thread` and `process`.
/// `restore_pdeathsig` is false for the root task, whose parent at restore
/// (crtools) is not the parent it had.
pub fn plan(
    b: &mut PlanBuilder,
    pid: Pid,
    thread: &ThreadCore,
    process: &ProcessCore,
    restore_pdeathsig: bool,
) -> Result<()> {
    let p = &mut b.plan;
    p.pid = pid.0;
    p.personality = process.personality;
    p.umask = process.umask;
    p.dumpable = process.prctl.dumpable;
    p.pdeathsig = if restore_pdeathsig { process.prctl.pdeathsig as u32 } else { 0 };
    if process.prctl.child_subreaper {
        p.flags |= rp::F_CHILD_SUBREAPER;
    }
    if thread.creds.no_new_privs {
        p.flags |= rp::F_NO_NEW_PRIVS;
    }
    // The working directory must still be one (checked now, before the
    // task exists); a root other than ours means the task was chrooted.
    for (what, path) in [("working directory", &process.cwd), ("root directory", &process.root)] {
        if path.as_bytes().is_empty() {
            continue;
        }
        match std::fs::metadata(path.as_os_str()) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::task(pid, format!("{what} {} is no longer a directory", path.to_string_lossy())))
            }
            Err(e) => return Err(Error::task(pid, format!("{what} {}: {e}", path.to_string_lossy()))),
        }
    }
    if !process.cwd.as_bytes().is_empty() {
        b.plan.cwd = b.add_str(process.cwd.as_bytes());
    }
    if !process.root.as_bytes().is_empty() && process.root.as_bytes() != b"/" {
        b.plan.root = b.add_str(process.root.as_bytes());
    }
    b.plan.membarrier = process.membarrier.bits();
    b.plan.xcomp_req = xcomp_request(process.xcomp_perm);
    plan_loginuid(b, pid, process.loginuid)?;
    // Seccomp filters, for the blob to install with TSYNC (BPF_MAXINSNS is
    // 4096 per filter).
    let mut words = Vec::new();
    for f in &thread.seccomp {
        if f.insns.is_empty() || f.insns.len() > 4096 {
            return Err(Error::task(pid, format!("a seccomp filter of {} instructions", f.insns.len())));
        }
        words.push(((f.flags as u64) << 32) | f.insns.len() as u64);
        words.extend_from_slice(&f.insns);
    }
    b.plan.seccomp = b.add_table(&words);
    let p = &mut b.plan;
    let comm = thread.comm.as_bytes();
    let n = comm.len().min(15);
    p.comm = [0; 16];
    p.comm[..n].copy_from_slice(&comm[..n]);

    if process.sigactions.len() != rp::NSIG {
        return Err(Error::task(pid, format!("core image has {} sigactions, expected 64", process.sigactions.len())));
    }
    p.sigactions_valid = 0;
    for (i, a) in process.sigactions.iter().enumerate() {
        let sig = i + 1;
        if sig == 9 || sig == 19 {
            continue;
        }
        p.sigactions[i] =
            rp::SigAction { handler: a.handler, flags: a.flags.bits(), restorer: a.restorer, mask: a.mask };
        p.sigactions_valid |= 1 << i;
    }
    for (slot, t) in p.itimers.iter_mut().zip([&process.itimers.real, &process.itimers.virt, &process.itimers.prof]) {
        *slot = rp::ITimer {
            interval_sec: t.interval_sec as i64,
            interval_usec: t.interval_usec as i64,
            value_sec: t.value_sec as i64,
            value_usec: t.value_usec as i64,
        };
    }
    // A periodic ITIMER_REAL whose SIGALRM is pending is not armed: the
    // kernel re-arms it when the signal is dequeued, and getitimer reports
    // a zero value meanwhile. setitimer with a zero value would disarm it
    // for good (and clear the interval), so arm it one interval ahead; the
    // pending SIGALRM itself is queued again with the other signals.
    let real = &mut p.itimers[0];
    if real.value_sec == 0 && real.value_usec == 0 && (real.interval_sec != 0 || real.interval_usec != 0) {
        real.value_sec = real.interval_sec;
        real.value_usec = real.interval_usec;
    }
    p.rlimits_valid = 0;
    for r in &process.rlimits {
        if (r.resource as usize) < rp::NLIMITS {
            p.rlimits[r.resource as usize] = rp::Rlimit { cur: r.cur, max: r.max };
            p.rlimits_valid |= 1 << r.resource;
        }
    }
    p.altstack_sp = thread.sigaltstack.sp;
    p.altstack_flags = thread.sigaltstack.flags.bits();
    p.altstack_size = thread.sigaltstack.size;
    p.clear_child_tid = thread.clear_child_tid;
    if let Some(r) = &thread.rseq {
        p.flags |= rp::F_RSEQ;
        p.rseq_ptr = r.ptr;
        p.rseq_len = r.len;
        p.rseq_sig = r.sig;
    }
    if let Some(r) = &thread.robust_list {
        p.robust_head = r.head;
        p.robust_len = r.len;
    }

    // Always set: identities, capabilities (all sets) and securebits are
    // per thread and must be exactly the dumped ones, even for root.
    p.flags |= rp::F_CREDS;
    p.creds = plan_creds(pid, &thread.creds)?;

    let timers: Vec<rp::PosixTimer> = process
        .posix_timers
        .iter()
        .map(|t| rp::PosixTimer {
            id: t.id,
            clock: t.clock,
            notify: t.sigev_notify,
            signo: t.signo,
            value: t.sigev_value,
            notify_tid: t.notify_tid as i32,
            overrun: t.overrun,
            value_sec: t.value_sec as i64,
            value_nsec: t.value_nsec as i64,
            interval_sec: t.interval_sec as i64,
            interval_nsec: t.interval_nsec as i64,
        })
        .collect();
    b.plan.timers = b.add_table(&timers);
    let raw = |v: &[Siginfo]| -> Result<Vec<[u8; 128]>> {
        v.iter()
            .map(|s| {
                s.0.as_slice()
                    .try_into()
                    .map_err(|_| Error::task(pid, format!("pending siginfo of {} bytes, expected 128", s.0.len())))
            })
            .collect()
    };
    let shared = raw(&process.shared_pending)?;
    let private = raw(&thread.pending)?;
    b.plan.sigs_shared = b.add_table(&shared);
    b.plan.sigs_private = b.add_table(&private);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amx_permission_is_asked_for_again() {
        // x87, SSE, AVX and AVX-512 state: static, nothing to ask.
        assert_eq!(xcomp_request(0xe7), 0);
        // ... with AMX tile config and data (17, 18): tile data asked for.
        assert_eq!(xcomp_request(0xe7 | 1 << 17 | 1 << 18), 18);
        assert_eq!(xcomp_request(0), 0);
    }

    #[test]
    fn speculation_control_a_thread_set_is_named() {
        let base = std::fs::read_to_string("/proc/self/status").unwrap();
        let with = |ssb: &str, ib: &str| {
            let text: String = base
                .lines()
                .filter(|l| !l.starts_with("Speculation"))
                .chain([
                    format!("Speculation_Store_Bypass:\t{ssb}").as_str(),
                    &format!("SpeculationIndirectBranch:\t{ib}"),
                ])
                .map(|l| format!("{l}\n"))
                .collect();
            prctl_speculation(&proc::status::parse(&text).unwrap())
        };
        assert_eq!(with("thread vulnerable", "conditional enabled"), None);
        assert_eq!(with("vulnerable", "always enabled"), None);
        assert_eq!(with("globally mitigated", "always disabled"), None);
        assert_eq!(
            with("thread mitigated", "conditional enabled").as_deref(),
            Some("Speculation_Store_Bypass: thread mitigated")
        );
        assert_eq!(
            with("thread force mitigated", "unknown").as_deref(),
            Some("Speculation_Store_Bypass: thread force mitigated")
        );
        assert_eq!(
            with("not vulnerable", "conditional force disabled").as_deref(),
            Some("SpeculationIndirectBranch: conditional force disabled")
        );
    }

    #[test]
    fn other_security_labels_are_refused() {
        let aa = |s: &str| Some(s.to_string());
        assert_eq!(label_refusal(&None, &None), None);
        assert_eq!(label_refusal(&aa("unconfined"), &aa("unconfined")), None);
        let why = label_refusal(&aa("/usr/sbin/tcpdump (enforce)"), &aa("unconfined")).unwrap();
        assert!(why.contains("/usr/sbin/tcpdump (enforce)") && why.contains("unconfined"), "{why}");
        assert!(label_refusal(&aa("system_u:system_r:httpd_t:s0"), &None).is_some());
    }

    #[test]
    fn limits_file_agrees_with_prlimit() {
        let me = Pid(std::process::id() as i32);
        let text = std::fs::read_to_string(proc::pid_path(me, "limits")).unwrap();
        let parsed = parse_limits(&text).unwrap();
        for r in &parsed {
            let l = crate::sys::misc::get_rlimit(me, r.resource).unwrap();
            assert_eq!((r.cur, r.max), (l.cur, l.max), "resource {}", r.resource);
        }
        assert!(parse_limits("header\nMax cpu time              12 x\n").is_err());
    }

    #[test]
    fn restart_states_are_rewritten() {
        let mut r = UserRegs { orig_rax: 230, rax: ERESTART_RESTARTBLOCK as u64, rip: 0x1002, ..Default::default() };
        rewrite_restart(&mut r);
        assert_eq!((r.rax, r.rip, r.orig_rax), (230, 0x1000, u64::MAX));
        let mut r = UserRegs {
            orig_rax: NR_RESTART_SYSCALL,
            rax: ERESTART_RESTARTBLOCK as u64,
            rip: 0x1002,
            ..Default::default()
        };
        rewrite_restart(&mut r);
        assert_eq!((r.rax, r.rip), (EINTR as u64, 0x1002));
        let mut r = UserRegs { orig_rax: 0, rax: 5, rip: 0x1002, ..Default::default() };
        rewrite_restart(&mut r);
        assert_eq!((r.rax, r.rip), (5, 0x1002));
    }
}
