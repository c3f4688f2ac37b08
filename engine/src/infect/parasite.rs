//! The parasite: loaded into a seized task, it runs commands in the task's
//! own context (see `parasite_proto` for the region layout and commands).
//!
//! Life cycle: [`Parasite::infect`] → commands → [`Parasite::cure`]. While
//! infected, every signal but SIGTRAP is blocked in the task: blocking
//! SIGTRAP would make the kernel reset its handler when the blob's `int3`
//! fires (force_sig_info), changing the task's sigaction behind its back.
use super::{inject, InfectError, Result, Tracee};
use crate::blobs;
use crate::sys::process_vm;
use crate::sys::ptrace::UserRegs;
use crate::sys::Sysno;
use parasite_proto as proto;
use std::mem::size_of;

const PAGE: usize = 4096;
const SIGTRAP: u64 = 5;
const PROT_RWX: u64 = 0x7;
const MAP_PRIVATE_ANON: u64 = 0x02 | 0x20;

fn page_up(n: usize) -> usize {
    (n + PAGE - 1) & !(PAGE - 1)
}

/// Offsets inside the remote region.
#[derive(Clone, Copy, Debug)]
struct Layout {
    args: usize,
    stack_top: usize,
    size: usize,
}

impl Layout {
    fn new() -> Layout {
        let args = page_up(blobs::parasite::MEM_SIZE);
        let stack = args + page_up(proto::ARGS_SIZE);
        let size = stack + proto::STACK_SIZE;
        Layout { args, stack_top: size - 64, size }
    }
}

/// A task with the parasite loaded.
pub struct Parasite<'t> {
    tracee: &'t mut Tracee,
    orig_regs: UserRegs,
    orig_mask: u64,
    base: u64,
    layout: Layout,
    cured: bool,
}

impl<'t> Parasite<'t> {
    /// Maps the parasite region in the task and uploads the blob.
    pub fn infect(tracee: &'t mut Tracee) -> Result<Parasite<'t>> {
        let orig_regs = tracee.regs()?;
        let orig_mask = tracee.sigmask()?;
        tracee.set_sigmask(!(1u64 << (SIGTRAP - 1)))?;
        let layout = Layout::new();
        let mapped = tracee.remote_syscall_ok(
            Sysno::mmap,
            [0, layout.size as u64, PROT_RWX, MAP_PRIVATE_ANON, u64::MAX, 0],
            "remote mmap of the parasite region",
        );
        let base = match mapped {
            Ok(b) => b,
            Err(e) => {
                let _ = tracee.set_sigmask(orig_mask);
                return Err(e);
            }
        };
        let p = Parasite { tracee, orig_regs, orig_mask, base, layout, cured: false };
        let blob =
            blobs::relocate(blobs::parasite::IMAGE, blobs::parasite::MEM_SIZE, blobs::parasite::RELOCS, base);
        let pid = p.tracee.pid();
        process_vm::write_all(pid, base, &blob.bytes)
            .map_err(|e| InfectError::errno(pid, "upload the parasite blob", e))?;
        log::debug!("task {pid}: parasite at {:#x} ({} bytes)", base, layout.size);
        Ok(p)
    }

    /// Address of the parasite region in the task.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size of the parasite region.
    pub fn size(&self) -> usize {
        self.layout.size
    }

    /// Runs `cmd` with `payload` (bytes copied in before), returns the
    /// header's ret and `reply_len` bytes of payload read back.
    fn call(&mut self, cmd: proto::Cmd, payload: &[u8], reply_len: usize) -> Result<(i64, u32, Vec<u8>)> {
        let pid = self.tracee.pid();
        let hdr = proto::Header { magic: proto::MAGIC, cmd: cmd as u32, ret: 0, failed_step: 0, _pad: 0 };
        let args_addr = self.base + self.layout.args as u64;
        let mut area = vec![0u8; proto::PAYLOAD_OFFSET + payload.len().max(reply_len)];
        area[..size_of::<proto::Header>()].copy_from_slice(as_bytes(&hdr));
        area[proto::PAYLOAD_OFFSET..proto::PAYLOAD_OFFSET + payload.len()].copy_from_slice(payload);
        process_vm::write_all(pid, args_addr, &area).map_err(|e| InfectError::errno(pid, "write parasite args", e))?;

        let mut regs = inject::entry_regs(&self.orig_regs, self.base + blobs::parasite::ENTRY as u64);
        regs.rdi = args_addr;
        // The stub's `call` pushes the return address: enter 16-byte aligned.
        regs.rsp = (self.base + self.layout.stack_top as u64) & !15;
        self.tracee.set_regs(&regs)?;
        let after = self.tracee.run_until_trap("parasite command")?;
        let trap = self.base + blobs::parasite::TRAP as u64 + 1;
        if after.rip != trap {
            return Err(InfectError::unexpected(
                pid,
                "parasite command",
                format!("{cmd:?} stopped at {:#x}, expected the trap at {trap:#x}", after.rip),
            ));
        }
        let back = process_vm::read_vec(pid, args_addr, proto::PAYLOAD_OFFSET + reply_len)
            .map_err(|e| InfectError::errno(pid, "read parasite reply", e))?;
        if back.len() < proto::PAYLOAD_OFFSET + reply_len {
            return Err(InfectError::unexpected(pid, "read parasite reply", "short read"));
        }
        // SAFETY: Header is plain old data and `back` holds at least its size.
        let h: proto::Header = unsafe { std::ptr::read_unaligned(back.as_ptr() as *const proto::Header) };
        Ok((h.ret, h.failed_step, back[proto::PAYLOAD_OFFSET..].to_vec()))
    }

    fn call_typed<T: Copy>(&mut self, cmd: proto::Cmd, step: &'static str) -> Result<T> {
        let (ret, failed, reply) = self.call(cmd, &[], size_of::<T>())?;
        if ret < 0 {
            let pid = self.tracee.pid();
            log::debug!("task {pid}: parasite {cmd:?} failed at step {failed}");
            return Err(InfectError::errno(pid, step, crate::sys::Errno::new(-ret as i32)));
        }
        // SAFETY: T is one of the protocol's repr(C) plain-data structs and
        // `reply` holds size_of::<T>() bytes written by the blob.
        Ok(unsafe { std::ptr::read_unaligned(reply.as_ptr() as *const T) })
    }

    /// getpid() and gettid() as the task sees them.
    pub fn get_pid(&mut self) -> Result<proto::PidReply> {
        self.call_typed(proto::Cmd::GetPid, "parasite getpid")
    }

    /// The task's sigaltstack.
    pub fn sigaltstack(&mut self) -> Result<proto::SigAltStackReply> {
        self.call_typed(proto::Cmd::SigAltStack, "parasite sigaltstack")
    }

    /// The sigaction of every signal.
    pub fn sigactions(&mut self) -> Result<proto::SigActionsReply> {
        self.call_typed(proto::Cmd::SigActions, "parasite rt_sigaction")
    }

    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
    pub fn itimers(&mut self) -> Result<proto::ITimersReply> {
        self.call_typed(proto::Cmd::ITimers, "parasite getitimer")
    }

    /// Unmaps the parasite and puts registers and signal mask back.
    pub fn cure(mut self) -> Result<()> {
        self.cure_inner()
    }

    fn cure_inner(&mut self) -> Result<()> {
        if self.cured {
            return Ok(());
        }
        self.cured = true;
        let pid = self.tracee.pid();
        // Remote syscalls run at the original rip with the original registers.
        self.tracee.set_regs(&self.orig_regs)?;
        let unmap = self.tracee.remote_syscall_ok(
            Sysno::munmap,
            [self.base, self.layout.size as u64, 0, 0, 0, 0],
            "remote munmap of the parasite region",
        );
        let regs = self.tracee.set_regs(&self.orig_regs);
        let mask = self.tracee.set_sigmask(self.orig_mask);
        unmap?;
        regs?;
        mask?;
        log::debug!("task {pid}: cured");
        Ok(())
    }
}

impl Drop for Parasite<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.cure_inner() {
            log::error!("{e}");
        }
    }
}

fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) plain-data protocol struct without padding that
    // matters (its padding fields are explicit); reading it as bytes is fine.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}
