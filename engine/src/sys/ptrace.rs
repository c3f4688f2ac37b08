//! ptrace(2), one typed function per request.
//!
//! Only PTRACE_SEIZE-style tracing is offered: it never sends the tracee a
//! SIGSTOP, and group-stops show up as PTRACE_EVENT_STOP (see ptrace(2),
//! "PTRACE_SEIZE" and "Group-stop").
use super::{Errno, Pid, Result, Sysno};
use linux_raw_sys::ptrace as lp;

pub use lp::{
    PTRACE_EVENT_CLONE, PTRACE_EVENT_EXEC, PTRACE_EVENT_EXIT, PTRACE_EVENT_FORK, PTRACE_EVENT_STOP, PTRACE_EVENT_VFORK,
    PTRACE_O_EXITKILL, PTRACE_O_TRACECLONE, PTRACE_O_TRACEEXEC, PTRACE_O_TRACEEXIT, PTRACE_O_TRACEFORK,
    PTRACE_O_TRACESYSGOOD, PTRACE_O_TRACEVFORK,
};

/// PTRACE_O_SUSPEND_SECCOMP: the tracee's seccomp filters do not apply
/// while it is traced with this option (needs CAP_SYS_ADMIN).
pub const PTRACE_O_SUSPEND_SECCOMP: u32 = 1 << 21;

/// NT_PRSTATUS: the general registers regset.
pub const NT_PRSTATUS: u32 = 1;
/// NT_X86_XSTATE: the xsave area regset.
pub const NT_X86_XSTATE: u32 = 0x202;
/// Flag for [`peek_siginfo`]: read the shared (process-wide) queue.
pub const PEEKSIGINFO_SHARED: u32 = lp::PTRACE_PEEKSIGINFO_SHARED;

/// x86_64 `struct user_regs_struct` (sys/user.h); linux-raw-sys lacks it.
/// PTRACE_GETREGS fills exactly these 27 words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}
const _: () = assert!(core::mem::size_of::<UserRegs>() == 27 * 8);

/// Kernel `siginfo_t`, kept as 128 raw bytes with typed accessors for the
/// common header. Images store the raw bytes so every union member survives.
#[repr(C, align(8))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigInfo(pub [u8; 128]);
const _: () = assert!(core::mem::size_of::<SigInfo>() == core::mem::size_of::<linux_raw_sys::general::siginfo>());

impl Default for SigInfo {
    fn default() -> Self {
        SigInfo([0; 128])
    }
}

impl SigInfo {
    fn i32_at(&self, off: usize) -> i32 {
        i32::from_ne_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
    /// si_signo.
    pub fn signo(&self) -> i32 {
        self.i32_at(0)
    }
    /// si_errno.
    pub fn errno(&self) -> i32 {
        self.i32_at(4)
    }
    /// si_code.
    pub fn code(&self) -> i32 {
        self.i32_at(8)
    }
    /// si_pid (for kill/sigqueue/SIGCHLD style signals).
    pub fn pid(&self) -> i32 {
        self.i32_at(16)
    }
}

impl core::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SigInfo {{ signo: {}, code: {}, errno: {} }}", self.signo(), self.code(), self.errno())
    }
}

#[repr(C)]
struct PeekSigInfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}
const _: () = assert!(core::mem::size_of::<PeekSigInfoArgs>() == core::mem::size_of::<lp::ptrace_peeksiginfo_args>());

#[repr(C)]
struct IoVec {
    base: *mut u8,
    len: usize,
}

/// # Safety
/// `addr` and `data` must be what the request expects; the kernel writes at
/// most the documented size for the request through `data`.
unsafe fn ptrace(req: u32, pid: Pid, addr: usize, data: usize) -> Result<usize> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { syscalls::syscall4(Sysno::ptrace, req as usize, pid.0 as usize, addr, data) }
}

/// PTRACE_SEIZE with `options` (PTRACE_O_*).
pub fn seize(pid: Pid, options: u32) -> Result<()> {
    // SAFETY: SEIZE takes no memory arguments; data is the option mask.
    unsafe { ptrace(lp::PTRACE_SEIZE, pid, 0, options as usize) }.map(drop)
}

/// PTRACE_INTERRUPT: stop a seized tracee (reports PTRACE_EVENT_STOP).
pub fn interrupt(pid: Pid) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { ptrace(lp::PTRACE_INTERRUPT, pid, 0, 0) }.map(drop)
}

/// PTRACE_CONT, delivering `sig` (0 for none).
pub fn cont(pid: Pid, sig: i32) -> Result<()> {
    // SAFETY: no memory arguments; data is a signal number.
    unsafe { ptrace(lp::PTRACE_CONT, pid, 0, sig as usize) }.map(drop)
}

/// PTRACE_SYSCALL: resume until the next syscall entry or exit, delivering `sig`.
pub fn syscall(pid: Pid, sig: i32) -> Result<()> {
    // SAFETY: no memory arguments; data is a signal number.
    unsafe { ptrace(lp::PTRACE_SYSCALL, pid, 0, sig as usize) }.map(drop)
}

/// PTRACE_LISTEN: let a tracee in group-stop wait for SIGCONT while traced.
pub fn listen(pid: Pid) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { ptrace(lp::PTRACE_LISTEN, pid, 0, 0) }.map(drop)
}

/// PTRACE_DETACH, delivering `sig` (0 for none).
pub fn detach(pid: Pid, sig: i32) -> Result<()> {
    // SAFETY: no memory arguments; data is a signal number.
    unsafe { ptrace(lp::PTRACE_DETACH, pid, 0, sig as usize) }.map(drop)
}

/// PTRACE_SETOPTIONS.
pub fn set_options(pid: Pid, options: u32) -> Result<()> {
    // SAFETY: no memory arguments; data is the option mask.
    unsafe { ptrace(lp::PTRACE_SETOPTIONS, pid, 0, options as usize) }.map(drop)
}

/// PTRACE_GETEVENTMSG.
pub fn get_event_msg(pid: Pid) -> Result<u64> {
    let mut msg = 0u64;
    // SAFETY: the kernel writes one unsigned long to `msg`.
    unsafe { ptrace(lp::PTRACE_GETEVENTMSG, pid, 0, &mut msg as *mut u64 as usize) }?;
    Ok(msg)
}

/// PTRACE_GETREGS.
pub fn get_regs(pid: Pid) -> Result<UserRegs> {
    let mut regs = UserRegs::default();
    // SAFETY: the kernel writes one user_regs_struct, which UserRegs mirrors.
    unsafe { ptrace(lp::PTRACE_GETREGS, pid, 0, &mut regs as *mut UserRegs as usize) }?;
    Ok(regs)
}

/// PTRACE_SETREGS.
pub fn set_regs(pid: Pid, regs: &UserRegs) -> Result<()> {
    // SAFETY: the kernel reads one user_regs_struct.
    unsafe { ptrace(lp::PTRACE_SETREGS, pid, 0, regs as *const UserRegs as usize) }.map(drop)
}

/// PTRACE_GETREGSET for note type `nt` into `buf`; returns the bytes filled.
pub fn get_regset(pid: Pid, nt: u32, buf: &mut [u8]) -> Result<usize> {
    let mut iov = IoVec { base: buf.as_mut_ptr(), len: buf.len() };
    // SAFETY: the kernel writes at most iov.len bytes to buf and updates iov.len.
    unsafe { ptrace(lp::PTRACE_GETREGSET, pid, nt as usize, &mut iov as *mut IoVec as usize) }?;
    Ok(iov.len)
}

/// PTRACE_SETREGSET for note type `nt` from `buf`.
pub fn set_regset(pid: Pid, nt: u32, buf: &[u8]) -> Result<()> {
    let mut iov = IoVec { base: buf.as_ptr() as *mut u8, len: buf.len() };
    // SAFETY: for SETREGSET the kernel only reads iov.len bytes from buf.
    unsafe { ptrace(lp::PTRACE_SETREGSET, pid, nt as usize, &mut iov as *mut IoVec as usize) }.map(drop)
}

/// PTRACE_GETSIGINFO: the siginfo of the signal that caused the current stop.
pub fn get_siginfo(pid: Pid) -> Result<SigInfo> {
    let mut si = SigInfo::default();
    // SAFETY: the kernel writes one siginfo_t (128 bytes).
    unsafe { ptrace(lp::PTRACE_GETSIGINFO, pid, 0, &mut si as *mut SigInfo as usize) }?;
    Ok(si)
}

/// PTRACE_SETSIGINFO.
pub fn set_siginfo(pid: Pid, si: &SigInfo) -> Result<()> {
    // SAFETY: the kernel reads one siginfo_t.
    unsafe { ptrace(lp::PTRACE_SETSIGINFO, pid, 0, si as *const SigInfo as usize) }.map(drop)
}

/// PTRACE_PEEKSIGINFO: copies queued siginfos, starting at `off`, without
/// dequeuing them. `flags` is 0 (per-thread queue) or [`PEEKSIGINFO_SHARED`].
/// Returns how many entries of `out` were filled.
pub fn peek_siginfo(pid: Pid, off: u64, flags: u32, out: &mut [SigInfo]) -> Result<usize> {
    let args = PeekSigInfoArgs { off, flags, nr: out.len().min(i32::MAX as usize) as i32 };
    // SAFETY: the kernel writes at most args.nr siginfo_t entries to out.
    unsafe { ptrace(lp::PTRACE_PEEKSIGINFO, pid, &args as *const PeekSigInfoArgs as usize, out.as_mut_ptr() as usize) }
}

/// Reads a whole queue (per-thread or shared) with PTRACE_PEEKSIGINFO.
pub fn peek_all_siginfo(pid: Pid, flags: u32) -> Result<Vec<SigInfo>> {
    let mut all = Vec::new();
    let mut chunk = [SigInfo::default(); 32];
    loop {
        let n = peek_siginfo(pid, all.len() as u64, flags, &mut chunk)?;
        all.extend_from_slice(&chunk[..n]);
        if n < chunk.len() {
            return Ok(all);
        }
    }
}

/// PTRACE_GETSIGMASK: the blocked signal mask (64 signals).
pub fn get_sigmask(pid: Pid) -> Result<u64> {
    let mut mask = 0u64;
    // SAFETY: addr is the size of the mask (8); the kernel writes 8 bytes.
    unsafe { ptrace(lp::PTRACE_GETSIGMASK, pid, 8, &mut mask as *mut u64 as usize) }?;
    Ok(mask)
}

/// PTRACE_SETSIGMASK. The kernel silently keeps SIGKILL and SIGSTOP unblocked.
pub fn set_sigmask(pid: Pid, mask: u64) -> Result<()> {
    // SAFETY: addr is the size of the mask (8); the kernel reads 8 bytes.
    unsafe { ptrace(lp::PTRACE_SETSIGMASK, pid, 8, &mask as *const u64 as usize) }.map(drop)
}

/// PTRACE_PEEKDATA: one word of the tracee's memory.
pub fn peek_data(pid: Pid, addr: u64) -> Result<u64> {
    let mut word = 0u64;
    // The raw syscall stores the word through `data` (the glibc wrapper hides this).
    // SAFETY: the kernel writes one word to `word`.
    unsafe { ptrace(lp::PTRACE_PEEKDATA, pid, addr as usize, &mut word as *mut u64 as usize) }?;
    Ok(word)
}

/// PTRACE_POKEDATA: writes one word; works on read-only text (FOLL_FORCE).
pub fn poke_data(pid: Pid, addr: u64, word: u64) -> Result<()> {
    // SAFETY: no memory of this process is touched.
    unsafe { ptrace(lp::PTRACE_POKEDATA, pid, addr as usize, word as usize) }.map(drop)
}

/// Reads `len` bytes of the tracee at `addr` with PEEKDATA (slow; for code
/// patches, where process_vm_readv may be refused by page protections).
pub fn peek_bytes(pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len + 8);
    let mut a = addr;
    while out.len() < len {
        out.extend_from_slice(&peek_data(pid, a)?.to_le_bytes());
        a += 8;
    }
    out.truncate(len);
    Ok(out)
}

/// Writes `data` at `addr` with PEEK/POKEDATA, preserving bytes of the last
/// word beyond the data.
pub fn poke_bytes(pid: Pid, addr: u64, data: &[u8]) -> Result<()> {
    for (i, chunk) in data.chunks(8).enumerate() {
        let a = addr + 8 * i as u64;
        let word = if chunk.len() == 8 {
            u64::from_le_bytes(chunk.try_into().expect("8 bytes"))
        } else {
            let mut w = peek_data(pid, a)?.to_le_bytes();
            w[..chunk.len()].copy_from_slice(chunk);
            u64::from_le_bytes(w)
        };
        poke_data(pid, a, word)?;
    }
    Ok(())
}

/// Kernel `struct ptrace_rseq_configuration`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}
const _: () = assert!(core::mem::size_of::<RseqConfig>() == 24);

/// PTRACE_GET_RSEQ_CONFIGURATION: the task's rseq registration.
pub fn get_rseq_config(pid: Pid) -> Result<RseqConfig> {
    let mut c = RseqConfig::default();
    // SAFETY: addr is the buffer size; the kernel writes at most that many bytes.
    let n = unsafe {
        ptrace(
            lp::PTRACE_GET_RSEQ_CONFIGURATION,
            pid,
            core::mem::size_of::<RseqConfig>(),
            &mut c as *mut RseqConfig as usize,
        )
    }?;
    if n < 20 {
        return Err(Errno::EIO);
    }
    Ok(c)
}

/// PTRACE_SECCOMP_GET_FILTER: the instructions (`struct sock_filter`, one
/// u64 each) of the seccomp filter `index` of the stopped tracee (0: the
/// most recently installed); ENOENT past the oldest.
pub fn seccomp_get_filter(pid: Pid, index: usize) -> Result<Vec<u64>> {
    // SAFETY: with a null buffer the kernel only returns the count.
    let n = unsafe { ptrace(lp::PTRACE_SECCOMP_GET_FILTER, pid, index, 0) }?;
    let mut insns = vec![0u64; n];
    // SAFETY: the buffer holds n instructions of 8 bytes, the count the
    // kernel just gave for this filter (a stopped tracee's filters do not change).
    let got = unsafe { ptrace(lp::PTRACE_SECCOMP_GET_FILTER, pid, index, insns.as_mut_ptr() as usize) }?;
    insns.truncate(got);
    Ok(insns)
}

/// PTRACE_SECCOMP_GET_METADATA: the SECCOMP_FILTER_FLAG_* flags filter
/// `index` was installed with (those the kernel keeps: LOG).
pub fn seccomp_get_flags(pid: Pid, index: usize) -> Result<u64> {
    let mut md = [index as u64, 0u64];
    // SAFETY: addr is the size of `struct seccomp_metadata` (two u64), which
    // the kernel reads and fills.
    unsafe { ptrace(lp::PTRACE_SECCOMP_GET_METADATA, pid, 16, md.as_mut_ptr() as usize) }?;
    Ok(md[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn user_regs_matches_libc() {
        assert_eq!(size_of::<UserRegs>(), size_of::<libc::user_regs_struct>());
        assert_eq!(offset_of!(UserRegs, orig_rax), offset_of!(libc::user_regs_struct, orig_rax));
        assert_eq!(offset_of!(UserRegs, rip), offset_of!(libc::user_regs_struct, rip));
        assert_eq!(offset_of!(UserRegs, fs_base), offset_of!(libc::user_regs_struct, fs_base));
        assert_eq!(offset_of!(UserRegs, gs), offset_of!(libc::user_regs_struct, gs));
    }

    #[test]
    fn siginfo_matches_libc() {
        assert_eq!(size_of::<SigInfo>(), size_of::<libc::siginfo_t>());
        let mut si = SigInfo::default();
        si.0[0..4].copy_from_slice(&10i32.to_ne_bytes());
        si.0[8..12].copy_from_slice(&(-6i32).to_ne_bytes());
        assert_eq!(si.signo(), 10);
        assert_eq!(si.code(), -6);
    }

    #[test]
    fn requests_match_libc() {
        assert_eq!(lp::PTRACE_SEIZE as i64, libc::PTRACE_SEIZE as i64);
        assert_eq!(lp::PTRACE_INTERRUPT as i64, libc::PTRACE_INTERRUPT as i64);
        assert_eq!(lp::PTRACE_GETSIGMASK as i64, libc::PTRACE_GETSIGMASK as i64);
        assert_eq!(lp::PTRACE_PEEKSIGINFO as i64, libc::PTRACE_PEEKSIGINFO as i64);
        assert_eq!(NT_PRSTATUS as i64, libc::NT_PRSTATUS as i64);
    }
}
