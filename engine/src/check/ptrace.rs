//! Probes that trace or read a child: ptrace requests, the xsave regset,
//! process_vm_readv, map_files, rseq, seccomp, /proc children.
use super::util::{errno_why, io_why, read_maps, status_field, Child, PTRACE_HINTS};
use crate::sys::signal::{self, SIGSTOP, SIGTRAP, SIGUSR1, SIGUSR2};
use crate::sys::wait::{self, WaitStatus};
use crate::sys::{process_vm, ptrace};
use std::io::Read;

/// PTRACE_SEIZE + PTRACE_INTERRUPT: the stop shows as PTRACE_EVENT_STOP; then detach.
pub fn probe_ptrace_seize() -> Result<String, String> {
    let child = Child::spawn()?;
    let sig = child.seize_and_stop(0)?;
    ptrace::detach(child.pid(), 0).map_err(|e| errno_why("PTRACE_DETACH", e, PTRACE_HINTS))?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.pid()))
        .map_err(|e| io_why("reading the child's /proc status", &e))?;
    let tracer = status_field(&status, "TracerPid").unwrap_or_default();
    if tracer != "0" {
        return Err(format!("after PTRACE_DETACH the child still has TracerPid {tracer}"));
    }
    if sig != SIGTRAP {
        return Err(format!("PTRACE_EVENT_STOP came with {}, expected SIGTRAP", signal::signal_name(sig)));
    }
    Ok("interrupt stop is PTRACE_EVENT_STOP (SIGTRAP), detached".to_string())
}

/// PTRACE_GETSIGMASK / PTRACE_SETSIGMASK round trip, original mask restored.
pub fn probe_ptrace_sigmask() -> Result<String, String> {
    let child = Child::spawn()?;
    child.seize_and_stop(0)?;
    let pid = child.pid();
    let orig = ptrace::get_sigmask(pid).map_err(|e| errno_why("PTRACE_GETSIGMASK", e, PTRACE_HINTS))?;
    let want = orig ^ (1u64 << (SIGUSR1 - 1));
    ptrace::set_sigmask(pid, want).map_err(|e| errno_why("PTRACE_SETSIGMASK", e, PTRACE_HINTS))?;
    let got = ptrace::get_sigmask(pid).map_err(|e| errno_why("PTRACE_GETSIGMASK", e, PTRACE_HINTS))?;
    ptrace::set_sigmask(pid, orig).map_err(|e| errno_why("PTRACE_SETSIGMASK", e, PTRACE_HINTS))?;
    if got != want {
        return Err(format!("PTRACE_SETSIGMASK {want:#x} read back as {got:#x}"));
    }
    Ok(format!("mask {orig:#x}, set {want:#x} read back, restored"))
}

/// PTRACE_PEEKSIGINFO: a blocked SIGUSR1 sent to the process shows in the
/// shared queue, a blocked SIGUSR2 sent to the thread in the per-thread
/// queue, and peeking leaves both queued.
pub fn probe_ptrace_peeksiginfo() -> Result<String, String> {
    let child = Child::spawn()?;
    child.seize_and_stop(0)?;
    let pid = child.pid();
    // Blocked, so they stay queued while the child is stopped; the child is
    // killed afterwards anyway.
    let block = (1u64 << (SIGUSR1 - 1)) | (1u64 << (SIGUSR2 - 1));
    ptrace::set_sigmask(pid, block).map_err(|e| errno_why("PTRACE_SETSIGMASK", e, PTRACE_HINTS))?;
    signal::kill(pid, SIGUSR1).map_err(|e| errno_why("kill SIGUSR1", e, &[]))?;
    signal::tgkill(pid, pid, SIGUSR2).map_err(|e| errno_why("tgkill SIGUSR2", e, &[]))?;
    let peek = |flags: u32, what: &str| {
        ptrace::peek_all_siginfo(pid, flags)
            .map_err(|e| errno_why(&format!("PTRACE_PEEKSIGINFO ({what})"), e, PTRACE_HINTS))
    };
    let private = peek(0, "per-thread")?;
    let shared = peek(ptrace::PEEKSIGINFO_SHARED, "shared")?;
    let signos = |v: &[ptrace::SigInfo]| v.iter().map(|s| s.signo()).collect::<Vec<_>>();
    if signos(&private) != [SIGUSR2] || signos(&shared) != [SIGUSR1] {
        return Err(format!(
            "queued SIGUSR2 (thread) and SIGUSR1 (process), peeked per-thread {:?} and shared {:?}",
            signos(&private),
            signos(&shared)
        ));
    }
    if peek(ptrace::PEEKSIGINFO_SHARED, "shared")?.len() != 1 {
        return Err("peeking dequeued the signal".to_string());
    }
    Ok("sees a queued SIGUSR2 (per-thread) and SIGUSR1 (shared), leaves them queued".to_string())
}

/// A seized child's group-stop: SIGSTOP shows as a signal-delivery-stop,
/// injecting it gives a PTRACE_EVENT_STOP with SIGSTOP, and PTRACE_LISTEN
/// lets it sit in the stop (how stopped tasks are dumped as stopped).
pub fn probe_ptrace_group_stop() -> Result<String, String> {
    let child = Child::spawn()?;
    let pid = child.pid();
    ptrace::seize(pid, ptrace::PTRACE_O_EXITKILL).map_err(|e| errno_why("PTRACE_SEIZE", e, PTRACE_HINTS))?;
    signal::kill(pid, SIGSTOP).map_err(|e| errno_why("kill SIGSTOP", e, &[]))?;
    let wait = || wait::wait_pid(pid).map_err(|e| errno_why("wait4", e, &[]));
    match wait()? {
        WaitStatus::Stopped { sig, event: 0 } if sig == SIGSTOP => {}
        other => return Err(format!("after SIGSTOP wait4 reported {other:?}, not its signal-delivery-stop")),
    }
    ptrace::cont(pid, SIGSTOP).map_err(|e| errno_why("PTRACE_CONT SIGSTOP", e, PTRACE_HINTS))?;
    match wait()? {
        WaitStatus::Stopped { sig, event } if sig == SIGSTOP && event == ptrace::PTRACE_EVENT_STOP => {}
        other => return Err(format!("injected SIGSTOP gave {other:?}, not a group-stop PTRACE_EVENT_STOP")),
    }
    ptrace::listen(pid).map_err(|e| errno_why("PTRACE_LISTEN", e, PTRACE_HINTS))?;
    Ok("SIGSTOP group-stop reported as PTRACE_EVENT_STOP, PTRACE_LISTEN accepted".to_string())
}

/// pidfd_open on a child and pidfd_send_signal(0) through it.
pub fn probe_pidfd() -> Result<String, String> {
    use crate::sys::pidfd::{pidfd_open, pidfd_send_signal, PidfdFlags, PidfdSignalFlags};
    use std::os::fd::AsFd;
    let child = Child::spawn()?;
    let pfd = pidfd_open(child.pid(), PidfdFlags::empty()).map_err(|e| errno_why("pidfd_open", e, &[]))?;
    pidfd_send_signal(pfd.as_fd(), 0, None, PidfdSignalFlags::empty())
        .map_err(|e| errno_why("pidfd_send_signal(0)", e, &[]))?;
    Ok("pidfd_open and pidfd_send_signal(0) on a child".to_string())
}

/// pidfd_getfd duplicates a child's descriptor (its stdin, /dev/null).
pub fn probe_pidfd_getfd() -> Result<String, String> {
    use crate::sys::pidfd::{pidfd_getfd, pidfd_open, PidfdFlags};
    use std::os::fd::AsFd;
    let child = Child::spawn()?;
    let pfd = pidfd_open(child.pid(), PidfdFlags::empty()).map_err(|e| errno_why("pidfd_open", e, &[]))?;
    let fd = pidfd_getfd(pfd.as_fd(), 0)
        .map_err(|e| errno_why("pidfd_getfd", e, &[(crate::sys::Errno::EPERM, "needs ptrace access to the target")]))?;
    let ours = crate::sys::fs::fstat(fd.as_fd()).map_err(|e| errno_why("fstat", e, &[]))?;
    let null = std::fs::metadata("/dev/null").map_err(|e| io_why("stat /dev/null", &e))?;
    use std::os::unix::fs::MetadataExt;
    if (ours.dev, ours.ino) != (null.dev(), null.ino()) {
        return Err("the descriptor from pidfd_getfd is not the child's stdin (/dev/null)".to_string());
    }
    Ok("duplicated the child's stdin".to_string())
}

/// XCR0 bits by name (Intel SDM vol. 1, 13.1). Supervisor-only states never
/// appear in XCR0 and are not listed.
const XFEATURES: &[(u32, &str)] = &[
    (0, "x87"),
    (1, "SSE"),
    (2, "AVX"),
    (3, "MPX-BNDREGS"),
    (4, "MPX-BNDCSR"),
    (5, "AVX-512-opmask"),
    (6, "AVX-512-ZMM_Hi256"),
    (7, "AVX-512-Hi16_ZMM"),
    (9, "PKRU"),
    (17, "AMX-TILECFG"),
    (18, "AMX-TILEDATA"),
    (19, "APX"),
];

/// "x87|SSE|AVX|AVX-512|PKRU|AMX" for an XCR0 value; groups are merged when
/// all their bits are set, unknown bits are shown as `bit<N>`.
pub fn xfeature_names(mask: u64) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut rest = mask;
    let groups: &[(u64, &str)] = &[(0b11 << 3, "MPX"), (0b111 << 5, "AVX-512"), (0b11 << 17, "AMX")];
    for bit in 0..64u32 {
        let b = 1u64 << bit;
        if rest & b == 0 {
            continue;
        }
        if let Some((g, gname)) = groups.iter().find(|(g, _)| g & b != 0) {
            if mask & g == *g {
                names.push(gname.to_string());
                rest &= !g;
                continue;
            }
        }
        rest &= !b;
        match XFEATURES.iter().find(|(n, _)| *n == bit) {
            Some((_, n)) => names.push(n.to_string()),
            None => names.push(format!("bit{bit}")),
        }
    }
    names.join("|")
}

/// Offset of the software-reserved bytes in the fxsave area. For ptrace's
/// NT_X86_XSTATE the kernel puts XCR0 in the first u64 there
/// (USER_XSTATE_XCR0_WORD in arch/x86/include/asm/user.h); the
/// `_fpx_sw_bytes` layout (magic1, extended_size, xfeatures, ...) is what
/// signal frames carry, not ptrace.
const SW_RESERVED: usize = 464;
/// The xsave header (xstate_bv, xcomp_bv) follows the 512-byte legacy area.
const XSAVE_HEADER: usize = 512;

/// PTRACE_GETREGSET NT_X86_XSTATE: size of the xsave area and XCR0.
pub fn probe_regset_xstate() -> Result<String, String> {
    let child = Child::spawn()?;
    child.seize_and_stop(0)?;
    let mut buf = vec![0u8; 64 << 10];
    let n = ptrace::get_regset(child.pid(), ptrace::NT_X86_XSTATE, &mut buf)
        .map_err(|e| errno_why("PTRACE_GETREGSET NT_X86_XSTATE", e, PTRACE_HINTS))?;
    if n < XSAVE_HEADER + 64 {
        return Err(format!("xstate regset is only {n} bytes (no xsave header)"));
    }
    let word = |off: usize| u64::from_le_bytes(buf[off..off + 8].try_into().expect("8 bytes"));
    let xcr0 = word(SW_RESERVED);
    let xstate_bv = word(XSAVE_HEADER);
    if xcr0 & 0b11 != 0b11 {
        return Err(format!("XCR0 word in sw_reserved is {xcr0:#x}: x87|SSE missing, layout not understood"));
    }
    if xstate_bv & !xcr0 != 0 {
        return Err(format!("xstate_bv {xstate_bv:#x} has bits outside XCR0 {xcr0:#x}"));
    }
    let mut detail = format!("{n} bytes, XCR0 {xcr0:#x} {}", xfeature_names(xcr0));
    // CPUID.(EAX=0Dh,ECX=0).EBX: bytes needed for the features enabled in
    // XCR0; the regset should be exactly that big.
    let cpuid = std::arch::x86_64::__cpuid_count(0xd, 0);
    if cpuid.ebx as usize != n {
        detail.push_str(&format!(" (CPUID says {} bytes)", cpuid.ebx));
    }
    Ok(detail)
}

/// The first mapping of a process, which for an ELF executable starts with
/// the ELF header.
fn first_mapping(pid: crate::sys::Pid) -> Result<super::util::MapLine, String> {
    let maps = read_maps(&pid.to_string())?;
    maps.into_iter()
        .find(|m| m.offset == 0 && m.perms.starts_with('r') && m.name.starts_with('/'))
        .ok_or_else(|| "the child has no readable file mapping at offset 0".to_string())
}

/// process_vm_readv of a child's memory: its executable's ELF header.
pub fn probe_process_vm_readv() -> Result<String, String> {
    let child = Child::spawn()?;
    let m = first_mapping(child.pid())?;
    let len = (m.end - m.start).min(4096) as usize;
    let got = process_vm::read_vec(child.pid(), m.start, len).map_err(|e| {
        errno_why(
            "process_vm_readv",
            e,
            &[(crate::sys::Errno::EPERM, "not permitted to read another process (needs ptrace access)")],
        )
    })?;
    if got.len() != len {
        return Err(format!("process_vm_readv copied {} of {len} bytes", got.len()));
    }
    if !got.starts_with(b"\x7fELF") {
        return Err(format!("bytes read at {:#x} are not the ELF header of {}", m.start, m.name));
    }
    Ok(format!("read {len} bytes at {:#x} (ELF header of the child's executable)", m.start))
}

/// /proc/<pid>/map_files: listable, and an entry opens and reads.
pub fn probe_map_files() -> Result<String, String> {
    let child = Child::spawn()?;
    let m = first_mapping(child.pid())?;
    let dir = format!("/proc/{}/map_files", child.pid());
    let entries = std::fs::read_dir(&dir).map_err(|e| io_why("listing /proc/<pid>/map_files", &e))?.count();
    let entry = format!("{dir}/{:x}-{:x}", m.start, m.end);
    let target = std::fs::read_link(&entry).map_err(|e| io_why("readlink on a map_files entry", &e))?;
    let mut f = std::fs::File::open(&entry).map_err(|e| {
        let hint = "opening map_files entries needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE";
        match e.raw_os_error() {
            Some(n) if n == crate::sys::Errno::EPERM.into_raw() => format!("opening a map_files entry: EPERM: {hint}"),
            _ => io_why("opening a map_files entry", &e),
        }
    })?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).map_err(|e| io_why("reading through a map_files entry", &e))?;
    if &magic != b"\x7fELF" {
        return Err(format!("map_files entry for {} does not read as its file", target.display()));
    }
    Ok(format!("{entries} entries, opened and read {}", target.display()))
}

/// PTRACE_GET_RSEQ_CONFIGURATION on a child (glibc >= 2.35 registers rseq).
pub fn probe_rseq() -> Result<String, String> {
    let child = Child::spawn()?;
    child.seize_and_stop(0)?;
    let c = ptrace::get_rseq_config(child.pid())
        .map_err(|e| errno_why("PTRACE_GET_RSEQ_CONFIGURATION", e, PTRACE_HINTS))?;
    if c.rseq_abi_pointer == 0 {
        Ok("works; the child has no rseq area registered".to_string())
    } else {
        Ok(format!(
            "child's rseq area at {:#x}, {} bytes, signature {:#x}",
            c.rseq_abi_pointer, c.rseq_abi_size, c.signature
        ))
    }
}

/// PTRACE_O_SUSPEND_SECCOMP is accepted (lets the parasite run inside a
/// seccomp-filtered task).
pub fn probe_seccomp_suspend() -> Result<String, String> {
    let child = Child::spawn()?;
    child.seize_and_stop(0)?;
    ptrace::set_options(child.pid(), ptrace::PTRACE_O_EXITKILL | linux_raw_sys::ptrace::PTRACE_O_SUSPEND_SECCOMP)
        .map_err(|e| {
            errno_why(
                "PTRACE_SETOPTIONS PTRACE_O_SUSPEND_SECCOMP",
                e,
                &[
                    (crate::sys::Errno::EINVAL, "kernel without CONFIG_SECCOMP or CONFIG_CHECKPOINT_RESTORE"),
                    (crate::sys::Errno::EPERM, "needs CAP_SYS_ADMIN in the initial user namespace"),
                ],
            )
        })?;
    Ok("PTRACE_O_SUSPEND_SECCOMP accepted".to_string())
}

/// PTRACE_SECCOMP_GET_FILTER availability. The request exists exactly when
/// the kernel has CONFIG_SECCOMP_FILTER and CONFIG_CHECKPOINT_RESTORE; the
/// syscall layer has no wrapper for it yet, so this infers it from
/// /proc/sys/kernel/seccomp/actions_avail (SECCOMP_FILTER) and
/// PTRACE_O_SUSPEND_SECCOMP (CHECKPOINT_RESTORE).
pub fn probe_seccomp_get_filter() -> Result<String, String> {
    let actions = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").map_err(|e| {
        format!("{} (no CONFIG_SECCOMP_FILTER?)", io_why("reading /proc/sys/kernel/seccomp/actions_avail", &e))
    })?;
    probe_seccomp_suspend()?;
    let filters = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| status_field(&s, "Seccomp_filters"))
        .map(|n| format!(", Seccomp_filters in status ({n} here)"))
        .unwrap_or_default();
    Ok(format!(
        "inferred (SECCOMP_FILTER with actions {}; CHECKPOINT_RESTORE){filters}; not called directly",
        actions.split_whitespace().count()
    ))
}

/// /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN) lists our child;
/// the dump walks the process tree with it.
pub fn probe_proc_children() -> Result<String, String> {
    let child = Child::spawn()?;
    // The children file is per thread: the child was forked by this thread.
    let me = std::fs::read_link("/proc/thread-self").map_err(|e| io_why("readlink /proc/thread-self", &e))?;
    let path = format!("/proc/{}/children", me.display());
    let list = std::fs::read_to_string(&path).map_err(|e| {
        format!("{} (kernel without CONFIG_PROC_CHILDREN?)", io_why("reading /proc/<pid>/task/<tid>/children", &e))
    })?;
    let pid = child.pid().to_string();
    if !list.split_whitespace().any(|p| p == pid) {
        return Err(format!("our child {pid} is not listed in the children file"));
    }
    Ok(format!("lists our child ({} children of this thread)", list.split_whitespace().count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfeatures_group_and_name() {
        assert_eq!(xfeature_names(0x3), "x87|SSE");
        assert_eq!(xfeature_names(0x2e7), "x87|SSE|AVX|AVX-512|PKRU");
        assert_eq!(xfeature_names(0x602e7), "x87|SSE|AVX|AVX-512|PKRU|AMX");
        assert_eq!(xfeature_names(0x27), "x87|SSE|AVX|AVX-512-opmask");
        assert_eq!(xfeature_names(0x1_0000_0003), "x87|SSE|bit32");
    }
}
