//! Remote syscalls: run one syscall in a stopped task's context.
//!
//! ```text
//!   saved = code at (rip & !7) .. +16      (two aligned words)
//!   code[rip..rip+3] = 0f 05 cc            syscall; int3
//!   regs = { rip, rax = nr, rdi.. = args, orig_rax = -1, TF = DF = 0 }
//!   PTRACE_CONT  ->  SIGTRAP stop at rip + 3   ->  rax = result
//!   restore code and registers
//! ```
//!
//! `orig_rax = -1` keeps the kernel's syscall-restart logic away from the
//! injected registers when the task was stopped inside an interrupted
//! syscall; the saved registers keep their restart state and the syscall
//! restarts normally once they are put back.
use super::{InfectError, Result, Tracee};
use crate::sys::ptrace::{self, UserRegs};
use crate::sys::Sysno;

const SYSCALL_INT3: [u8; 3] = [0x0f, 0x05, 0xcc];
const EFLAGS_TF: u64 = 1 << 8;
const EFLAGS_DF: u64 = 1 << 10;

/// Registers to enter injected code with: `base` with the instruction
/// pointer and arguments replaced, no pending syscall, TF and DF clear.
pub(crate) fn entry_regs(base: &UserRegs, rip: u64) -> UserRegs {
    let mut r = *base;
    r.rip = rip;
    r.orig_rax = u64::MAX;
    r.eflags &= !(EFLAGS_TF | EFLAGS_DF);
    r
}

/// Where a thread other than the one the parasite serves runs system
/// calls without a harm window (the blob's `thread_call`, see
/// [`Tracee::thread_syscalls`]), from [`super::Parasite::thread_call`].
#[derive(Clone, Copy, Debug)]
pub struct ThreadCall {
    /// The blob's `syscall` followed by its own resume.
    pub gadget: u64,
    /// The blob's word that holds the address of `cure`.
    pub cure_ptr: u64,
    /// Room for a `ThreadCure` in the parasite's region.
    pub cure: u64,
    /// A page of the parasite's region the calls may write into.
    pub scratch: u64,
}

/// [`entry_regs`] for system call `nr` with `args` at `rip`.
fn call_regs(base: &UserRegs, rip: u64, nr: Sysno, args: [u64; 6]) -> UserRegs {
    let mut r = entry_regs(base, rip);
    r.rax = nr as u64;
    r.rdi = args[0];
    r.rsi = args[1];
    r.rdx = args[2];
    r.r10 = args[3];
    r.r8 = args[4];
    r.r9 = args[5];
    r
}

impl Tracee {
    /// Runs `calls` one after the other in this thread (not the one the
    /// parasite serves) through the parasite's `thread_call`, with every
    /// signal blocked; returns their raw results. No code is patched and
    /// nothing is left to crtools' survival: the thread's mask and
    /// registers are written into the region first, and whenever the
    /// thread's own are not in place it stands at that `syscall` or right
    /// after it, where a dead crtools lets it run on into the blob's resume,
    /// which puts both back (an interrupted system call set up to restart).
    pub fn thread_syscalls(&mut self, at: &ThreadCall, calls: &[(Sysno, [u64; 6])]) -> Result<Vec<i64>> {
        let pid = self.pid();
        let saved = self.regs()?;
        let mask = self.sigmask()?;
        let cure = parasite_proto::ThreadCure { mask, regs: super::parasite::resume_regs(&saved) };
        // SAFETY: ThreadCure is repr(C) plain data without implicit padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &cure as *const parasite_proto::ThreadCure as *const u8,
                std::mem::size_of::<parasite_proto::ThreadCure>(),
            )
        };
        let write = |addr: u64, b: &[u8]| {
            crate::sys::process_vm::write_all(pid, addr, b)
                .map_err(|e| InfectError::errno(pid, "write the thread's cure", e))
        };
        write(at.cure, bytes)?;
        write(at.cure_ptr, &at.cure.to_ne_bytes())?;
        let mut out = Vec::with_capacity(calls.len());
        let mut run = || -> Result<()> {
            for (i, &(nr, args)) in calls.iter().enumerate() {
                let regs = call_regs(&saved, at.gadget, nr, args);
                self.set_regs(&regs)?;
                if i == 0 {
                    // Only once the registers stand at the call, which puts
                    // the mask back.
                    self.set_sigmask(u64::MAX)?;
                    if crate::fault::hit(crate::fault::Fault::DumpDieThreadCall) {
                        log::warn!("injected fault dump-die-thread-call: crtools dies in a system call of {pid}");
                        let _ = crate::sys::signal::kill(crate::sys::misc::getpid(), 9);
                    }
                }
                let after = self.run_to_syscall_exit()?;
                if after.rip != at.gadget + 2 {
                    return Err(InfectError::unexpected(
                        pid,
                        "thread call",
                        format!("syscall exit at {:#x}, expected {:#x}", after.rip, at.gadget + 2),
                    ));
                }
                out.push(after.rax as i64);
            }
            Ok(())
        };
        let r = run();
        // The mask first, the registers last: see above.
        let m = self.set_sigmask(mask);
        let g = self.set_regs(&saved);
        r?;
        m?;
        g?;
        Ok(out)
    }

    /// Runs syscall `nr` with `args` in the task and returns its raw result
    /// (negative errno on failure). Registers and code are restored after.
    pub fn remote_syscall(&mut self, nr: Sysno, args: [u64; 6]) -> Result<i64> {
        let pid = self.pid();
        let saved_regs = self.regs()?;
        let site = saved_regs.rip;
        let aligned = site & !7;
        let at = (site - aligned) as usize;
        // Touch only the words the patch needs: the next one may be unmapped.
        let span = if at + SYSCALL_INT3.len() <= 8 { 8 } else { 16 };
        let saved_code =
            ptrace::peek_bytes(pid, aligned, span).map_err(|e| InfectError::errno(pid, "read code at rip", e))?;
        let mut patched = saved_code.clone();
        patched[at..at + SYSCALL_INT3.len()].copy_from_slice(&SYSCALL_INT3);
        super::harm_window(pid, true, "remote syscall");
        ptrace::poke_bytes(pid, aligned, &patched).map_err(|e| InfectError::errno(pid, "patch code at rip", e))?;

        let regs = call_regs(&saved_regs, site, nr, args);
        let trap = site + SYSCALL_INT3.len() as u64;
        let run = self.set_regs(&regs).and_then(|_| self.run_until_trap("remote syscall", trap));

        // Put code and registers back whatever happened.
        let restore_code = ptrace::poke_bytes(pid, aligned, &saved_code);
        let restore_regs = self.set_regs(&saved_regs);
        if restore_code.is_ok() && restore_regs.is_ok() {
            super::harm_window(pid, false, "remote syscall");
        }
        let after = run?;
        restore_code.map_err(|e| InfectError::errno(pid, "restore code at rip", e))?;
        restore_regs?;
        if after.rip != site + SYSCALL_INT3.len() as u64 {
            return Err(InfectError::unexpected(
                pid,
                "remote syscall",
                format!("trap at {:#x}, expected {:#x}", after.rip, site + 3),
            ));
        }
        Ok(after.rax as i64)
    }

    /// Like [`Tracee::remote_syscall`], but stops at the syscall's exit with
    /// PTRACE_SYSCALL instead of an `int3`: no SIGTRAP is raised, so a
    /// SIGTRAP set to SIG_IGN stays ignored (a trap on an ignored SIGTRAP
    /// makes the kernel reset it to SIG_DFL).
    pub fn remote_syscall_quiet(&mut self, nr: Sysno, args: [u64; 6]) -> Result<i64> {
        let pid = self.pid();
        let saved_regs = self.regs()?;
        let site = saved_regs.rip;
        let aligned = site & !7;
        let at = (site - aligned) as usize;
        let span = if at + 2 <= 8 { 8 } else { 16 };
        let saved_code =
            ptrace::peek_bytes(pid, aligned, span).map_err(|e| InfectError::errno(pid, "read code at rip", e))?;
        let mut patched = saved_code.clone();
        patched[at..at + 2].copy_from_slice(&SYSCALL_INT3[..2]);
        super::harm_window(pid, true, "remote syscall");
        ptrace::poke_bytes(pid, aligned, &patched).map_err(|e| InfectError::errno(pid, "patch code at rip", e))?;
        let regs = call_regs(&saved_regs, site, nr, args);
        let run = self.set_regs(&regs).and_then(|_| self.run_to_syscall_exit());
        let restore_code = ptrace::poke_bytes(pid, aligned, &saved_code);
        let restore_regs = self.set_regs(&saved_regs);
        if restore_code.is_ok() && restore_regs.is_ok() {
            super::harm_window(pid, false, "remote syscall");
        }
        let after = run?;
        restore_code.map_err(|e| InfectError::errno(pid, "restore code at rip", e))?;
        restore_regs?;
        if after.rip != site + 2 {
            return Err(InfectError::unexpected(
                pid,
                "remote syscall",
                format!("syscall exit at {:#x}, expected {:#x}", after.rip, site + 2),
            ));
        }
        Ok(after.rax as i64)
    }

    /// [`Tracee::remote_syscall_quiet`] that turns a negative result into an error.
    pub fn remote_syscall_quiet_ok(&mut self, nr: Sysno, args: [u64; 6], step: &'static str) -> Result<u64> {
        let r = self.remote_syscall_quiet(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(InfectError::errno(self.pid(), step, crate::sys::Errno::new(-r as i32)));
        }
        Ok(r as u64)
    }

    /// [`Tracee::remote_syscall`] that turns a negative result into an error.
    pub fn remote_syscall_ok(&mut self, nr: Sysno, args: [u64; 6], step: &'static str) -> Result<u64> {
        let r = self.remote_syscall(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(InfectError::errno(self.pid(), step, crate::sys::Errno::new(-r as i32)));
        }
        Ok(r as u64)
    }
}
