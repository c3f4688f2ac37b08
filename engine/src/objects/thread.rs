//! Threads other than the thread-group leader.
//!
//! Dump: a seized thread's registers, xsave state, mask and private queue
//! through ptrace; its sigaltstack and clear-child-tid address through
//! remote syscalls in the thread itself, with a scratch page of the
//! parasite's region (mapped in the shared address space) for the answers.
//!
//! Restore: the restorer blob creates each thread with its tid (clone3
//! set_tid) on a small stack in the region, where it stops on a trap. The
//! engine then gives it its registers and xsave state, and sets its
//! per-thread state with remote syscalls in the thread (set_tid_address,
//! sigaltstack, rseq, its robust futex list, PR_SET_NAME, its private
//! pending signals), using its
//! stack area in the region as scratch; its mask is set last.
//!
//! Signals stay blocked in a thread while it runs injected syscalls: a
//! handler must never run from an injection site.
use crate::error::{Context, Error, Result};
use crate::image::core::{Rseq, SigAltStack, Siginfo, SsFlags, ThreadCore};
use crate::image::RawStr;
use crate::infect::inject::ThreadCall;
use crate::infect::Tracee;
use crate::proc;
use crate::sys::ptrace::{self, UserRegs, NT_X86_XSTATE};
use crate::sys::{process_vm, Pid, Sysno};

const PR_SET_NAME: u64 = 15;
const PR_GET_TID_ADDRESS: u64 = 40;
const PR_GET_SECUREBITS: u64 = 27;

/// Whether thread `tid`'s own NUMA memory policy is the default, as the
/// first line of its numa_maps tells (a VMA without a policy of its own
/// shows the thread's) when the first VMA has none (`first_vma_own`
/// false); false when that cannot be told.
fn thread_policy_is_default(pid: Pid, tid: Pid, first_vma_own: bool) -> bool {
    if first_vma_own {
        return false;
    }
    use std::io::Read;
    let mut b = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(proc::pid_path(pid, &format!("task/{}/numa_maps", tid.0))) else {
        return false;
    };
    let n = f.read(&mut b).unwrap_or(0);
    let line = b[..n].split(|&c| c == b'\n').next().unwrap_or(&[]);
    line.split(|&c| c == b' ').nth(1) == Some(b"default".as_slice())
}

/// The state of a seized non-leader thread `t` of process `pid`, its
/// system calls run through the parasite's `at`;
/// `first_vma_own`: whether the task's first VMA has a NUMA memory policy
/// of its own.
pub fn dump(t: &mut Tracee, pid: Pid, at: &ThreadCall, first_vma_own: bool) -> Result<ThreadCore> {
    let tid = t.pid();
    let mut regs = t.regs().ctx(tid, "read registers")?;
    let sleep = super::task::restart_sleep(tid, &regs)?;
    super::task::rewrite_restart(&mut regs);
    let xsave = super::task::read_xsave(tid)?;
    let sigmask = t.sigmask().ctx(tid, "read the signal mask")?;
    let pending: Vec<Siginfo> = ptrace::peek_all_siginfo(tid, 0)
        .ctx(tid, "PTRACE_PEEKSIGINFO")?
        .into_iter()
        .map(|s| Siginfo(s.0.to_vec()))
        .collect();
    // Per thread, like every credential; NUMA policy asked only when
    // numa_maps does not already show the default (a call costs more).
    let scratch = at.scratch;
    let want_policy = !thread_policy_is_default(pid, tid, first_vma_own);
    let mut calls = vec![
        (Sysno::prctl, [PR_GET_SECUREBITS, 0, 0, 0, 0, 0]),
        (Sysno::sigaltstack, [0, scratch, 0, 0, 0, 0]),
        (Sysno::prctl, [PR_GET_TID_ADDRESS, scratch + 64, 0, 0, 0, 0]),
    ];
    if want_policy {
        calls.push((Sysno::get_mempolicy, [scratch + 1024, scratch + 1032, 1024, 0, 0, 0]));
    }
    let got = t.thread_syscalls(at, &calls).ctx(tid, "system calls in the thread")?;
    for (r, name) in got.iter().zip(["PR_GET_SECUREBITS", "sigaltstack", "PR_GET_TID_ADDRESS"]) {
        if (-4095..0).contains(r) {
            return Err(Error::task(tid, format!("{name}: {}", crate::sys::Errno::new(-*r as i32))));
        }
    }
    let securebits = got[0] as u32;
    let mempolicy = match got.get(3) {
        None => None,
        Some(0) => {
            let pol = process_vm::read_vec(tid, scratch + 1024, 8 + 128).ctx(tid, "read scratch")?;
            if pol.len() < 8 + 128 {
                return Err(Error::task(tid, "short read of the scratch page"));
            }
            let mode = i32::from_ne_bytes(pol[0..4].try_into().expect("4 bytes"));
            let nodes: Vec<u64> =
                pol[8..].chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
            super::mm::mempolicy(mode, &nodes)
        }
        // A kernel without NUMA: no policy to keep.
        Some(-38) => None, // ENOSYS
        Some(r) => return Err(Error::task(tid, format!("get_mempolicy: {}", crate::sys::Errno::new(-*r as i32)))),
    };
    let b = process_vm::read_vec(tid, scratch, 72).ctx(tid, "read scratch")?;
    if b.len() < 72 {
        return Err(Error::task(tid, "short read of the scratch page"));
    }
    let w = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let ss = SigAltStack { sp: w(0), flags: SsFlags::from_bits_retain(w(8) as u32), size: w(16) };
    let ctid = w(64);
    let rseq = match ptrace::get_rseq_config(tid) {
        Ok(c) if c.rseq_abi_pointer != 0 => {
            Some(Rseq { ptr: c.rseq_abi_pointer, len: c.rseq_abi_size, sig: c.signature })
        }
        Ok(_) => None,
        Err(e) => return Err(Error::task(tid, format!("PTRACE_GET_RSEQ_CONFIGURATION: {e}"))),
    };
    let comm = std::fs::read(proc::pid_path(pid, &format!("task/{}/comm", tid.0))).ctx(tid, "read comm")?;
    let comm = comm.strip_suffix(b"\n").unwrap_or(&comm).to_vec();
    let status = proc::status::read_thread(pid, tid).ctx(tid, "read status")?;
    super::task::refuse_prctl_speculation(tid, &status)?;
    let no_new_privs = status.no_new_privs.unwrap_or(false);
    let creds = super::task::creds_from_status(&status, securebits, no_new_privs);
    let sched = super::task::sched_of(pid, tid)?;
    let robust_list = super::task::robust_list_of(tid)?;
    let seccomp = super::task::seccomp_of(pid, tid)?;
    Ok(ThreadCore {
        sched,
        regs: (&regs).into(),
        xsave,
        sigmask,
        sigaltstack: ss,
        pending,
        comm: RawStr(comm),
        creds,
        clear_child_tid: ctid,
        rseq,
        robust_list,
        seccomp,
        sleep,
        mempolicy,
    })
}

/// Finishes a thread the restorer created: `t` stopped on the thread trap,
/// `scratch` is a writable page of the region.
pub fn finish(t: &mut Tracee, pid: Pid, core: &ThreadCore, scratch: u64) -> Result<()> {
    let tid = t.pid();
    let mut regs: UserRegs = (&core.regs).into();
    regs.orig_rax = u64::MAX;
    if let Some(sleep) = &core.sleep {
        super::task::rearm_sleep(t, sleep, scratch, &mut regs)?;
    }
    t.set_regs(&regs).ctx(tid, "PTRACE_SETREGS")?;
    // The created thread inherited the blob's mask: everything but SIGTRAP.
    t.remote_syscall_ok(Sysno::set_tid_address, [core.clear_child_tid, 0, 0, 0, 0, 0], "set_tid_address")
        .ctx(tid, "set_tid_address")?;
    let ss = core.sigaltstack;
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(&ss.sp.to_ne_bytes());
    bytes.extend_from_slice(&(ss.flags.bits() as u64).to_ne_bytes());
    bytes.extend_from_slice(&ss.size.to_ne_bytes());
    process_vm::write_all(tid, scratch, &bytes).ctx(tid, "write scratch")?;
    t.remote_syscall_ok(Sysno::sigaltstack, [scratch, 0, 0, 0, 0, 0], "sigaltstack").ctx(tid, "sigaltstack")?;
    let mut name = [0u8; 16];
    let n = core.comm.as_bytes().len().min(15);
    name[..n].copy_from_slice(&core.comm.as_bytes()[..n]);
    process_vm::write_all(tid, scratch, &name).ctx(tid, "write scratch")?;
    t.remote_syscall_ok(Sysno::prctl, [PR_SET_NAME, scratch, 0, 0, 0, 0], "PR_SET_NAME").ctx(tid, "PR_SET_NAME")?;
    if let Some(r) = &core.rseq {
        t.remote_syscall_ok(Sysno::rseq, [r.ptr, r.len as u64, 0, r.sig as u64, 0, 0], "rseq").ctx(tid, "rseq")?;
    }
    if let Some(r) = &core.robust_list {
        t.remote_syscall_ok(Sysno::set_robust_list, [r.head, r.len, 0, 0, 0, 0], "set_robust_list")
            .ctx(tid, "set_robust_list")?;
    }
    for si in &core.pending {
        if si.0.len() != 128 {
            return Err(Error::task(tid, "pending siginfo is not 128 bytes"));
        }
        if si.signo() == SIGTRAP {
            continue; // queued last, see below
        }
        process_vm::write_all(tid, scratch, &si.0).ctx(tid, "write scratch")?;
        let signo = si.signo() as u64;
        t.remote_syscall_ok(
            Sysno::rt_tgsigqueueinfo,
            [pid.0 as u64, tid.0 as u64, signo, scratch, 0, 0],
            "queue a signal",
        )
        .ctx(tid, "rt_tgsigqueueinfo")?;
    }
    // After our last trap, which would take it, and with every signal
    // blocked so that it stays queued: the thread's pending SIGTRAP.
    t.set_sigmask(u64::MAX).ctx(tid, "PTRACE_SETSIGMASK")?;
    queue_sigtraps(t, pid, &core.pending, false, scratch)?;
    ptrace::set_regset(tid, NT_X86_XSTATE, &core.xsave.area).ctx(tid, "PTRACE_SETREGSET NT_X86_XSTATE")?;
    super::task::restore_sched(tid, &core.sched)?;
    t.set_sigmask(core.sigmask).ctx(tid, "PTRACE_SETSIGMASK")?;
    Ok(())
}

const SIGTRAP: i32 = 5;

/// Queues the SIGTRAPs of `pending` in thread `t` of `pid` (the process's
/// queue with `shared`, from the leader) with PTRACE_SYSCALL-stopped remote
/// syscalls: no trap of ours may follow, it would take the signal. The
/// thread must have SIGTRAP blocked; `scratch` holds 128 bytes.
pub fn queue_sigtraps(t: &mut Tracee, pid: Pid, pending: &[Siginfo], shared: bool, scratch: u64) -> Result<()> {
    let tid = t.pid();
    for si in pending.iter().filter(|s| s.signo() == SIGTRAP) {
        process_vm::write_all(tid, scratch, &si.0).ctx(tid, "write scratch")?;
        let (nr, args) = if shared {
            (Sysno::rt_sigqueueinfo, [pid.0 as u64, SIGTRAP as u64, scratch, 0, 0, 0])
        } else {
            (Sysno::rt_tgsigqueueinfo, [pid.0 as u64, tid.0 as u64, SIGTRAP as u64, scratch, 0, 0])
        };
        t.remote_syscall_quiet_ok(nr, args, "queue a SIGTRAP").ctx(tid, "queue the pending SIGTRAP")?;
    }
    Ok(())
}
