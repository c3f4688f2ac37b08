//! Signals: kill(2), tgkill(2), rt_sigqueueinfo(2), rt_tgsigqueueinfo(2),
//! rt_sigprocmask(2), rt_sigaction(2), sigaltstack(2); signal numbers as
//! in signal(7).
//!
//! # Invariants
//! - Signal numbers are `i32` in 1..=64 ([`SIGRTMAX`]); a [`SigSet`] keeps
//!   signal `n` in bit `n - 1`, the kernel's 8-byte `sigset_t`.
//! - The mask calls act on the calling *thread*; sigaction acts on the
//!   whole process.
//! - Installing a handler is `unsafe` (the kernel will jump to an address);
//!   setting SIG_DFL / SIG_IGN is safe.
use super::ptrace::SigInfo;
use super::{Errno, Pid, Result, Sysno};
use linux_raw_sys::general as lg;

pub use parasite_proto::KSigAction;
/// Kernel `stack_t` as sigaltstack(2) reports it.
pub use parasite_proto::SigAltStackReply as SigAltStack;

const _: () = assert!(core::mem::size_of::<KSigAction>() == core::mem::size_of::<lg::kernel_sigaction>());
const _: () = assert!(core::mem::size_of::<SigAltStack>() == core::mem::size_of::<lg::sigaltstack>());
const _: () = assert!(core::mem::offset_of!(SigAltStack, size) == core::mem::offset_of!(lg::sigaltstack, ss_size));

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGQUIT: i32 = 3;
pub const SIGILL: i32 = 4;
pub const SIGTRAP: i32 = 5;
pub const SIGABRT: i32 = 6;
pub const SIGBUS: i32 = 7;
pub const SIGFPE: i32 = 8;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGSEGV: i32 = 11;
pub const SIGUSR2: i32 = 12;
pub const SIGPIPE: i32 = 13;
pub const SIGALRM: i32 = 14;
pub const SIGTERM: i32 = 15;
pub const SIGSTKFLT: i32 = 16;
pub const SIGCHLD: i32 = 17;
pub const SIGCONT: i32 = 18;
pub const SIGSTOP: i32 = 19;
pub const SIGTSTP: i32 = 20;
pub const SIGTTIN: i32 = 21;
pub const SIGTTOU: i32 = 22;
pub const SIGURG: i32 = 23;
pub const SIGXCPU: i32 = 24;
pub const SIGXFSZ: i32 = 25;
pub const SIGVTALRM: i32 = 26;
pub const SIGPROF: i32 = 27;
pub const SIGWINCH: i32 = 28;
pub const SIGIO: i32 = 29;
pub const SIGPWR: i32 = 30;
pub const SIGSYS: i32 = 31;
/// First real-time signal as the kernel numbers it (glibc reserves 32..34).
pub const SIGRTMIN: i32 = lg::SIGRTMIN as i32;
/// Last signal.
pub const SIGRTMAX: i32 = 64;
/// Number of signals (`_NSIG`).
pub const NSIG: usize = 64;

/// sa_handler value: default action.
pub const SIG_DFL: u64 = 0;
/// sa_handler value: ignore.
pub const SIG_IGN: u64 = 1;

pub const SA_NOCLDSTOP: u64 = lg::SA_NOCLDSTOP as u64;
pub const SA_NOCLDWAIT: u64 = lg::SA_NOCLDWAIT as u64;
pub const SA_SIGINFO: u64 = lg::SA_SIGINFO as u64;
pub const SA_RESTORER: u64 = lg::SA_RESTORER as u64;
pub const SA_ONSTACK: u64 = lg::SA_ONSTACK as u64;
pub const SA_RESTART: u64 = lg::SA_RESTART as u64;
pub const SA_NODEFER: u64 = lg::SA_NODEFER as u64;
pub const SA_RESETHAND: u64 = lg::SA_RESETHAND as u64;

pub const SS_ONSTACK: i32 = lg::SS_ONSTACK as i32;
pub const SS_DISABLE: i32 = lg::SS_DISABLE as i32;
pub const SS_AUTODISARM: i32 = lg::SS_AUTODISARM as i32;

/// si_code for rt_sigqueueinfo-style signals.
pub const SI_QUEUE: i32 = lg::SI_QUEUE;
/// si_code of kill(2).
pub const SI_USER: i32 = lg::SI_USER as i32;
/// si_code of tgkill(2).
pub const SI_TKILL: i32 = lg::SI_TKILL;

static NAMES: [&str; 64] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
    "SIGRTMIN",
    "SIGRTMIN+1",
    "SIGRTMIN+2",
    "SIGRTMIN+3",
    "SIGRTMIN+4",
    "SIGRTMIN+5",
    "SIGRTMIN+6",
    "SIGRTMIN+7",
    "SIGRTMIN+8",
    "SIGRTMIN+9",
    "SIGRTMIN+10",
    "SIGRTMIN+11",
    "SIGRTMIN+12",
    "SIGRTMIN+13",
    "SIGRTMIN+14",
    "SIGRTMIN+15",
    "SIGRTMAX-16",
    "SIGRTMAX-15",
    "SIGRTMAX-14",
    "SIGRTMAX-13",
    "SIGRTMAX-12",
    "SIGRTMAX-11",
    "SIGRTMAX-10",
    "SIGRTMAX-9",
    "SIGRTMAX-8",
    "SIGRTMAX-7",
    "SIGRTMAX-6",
    "SIGRTMAX-5",
    "SIGRTMAX-4",
    "SIGRTMAX-3",
    "SIGRTMAX-2",
    "SIGRTMAX-1",
    "SIGRTMAX",
];

/// The name of signal `n` ("SIGKILL", "SIGRTMIN+3"), or "SIG?" out of range.
pub fn signal_name(n: i32) -> &'static str {
    if (1..=SIGRTMAX).contains(&n) {
        NAMES[(n - 1) as usize]
    } else {
        "SIG?"
    }
}

/// A kernel signal set (64 signals).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SigSet(pub u64);

impl SigSet {
    /// No signal.
    pub const fn empty() -> SigSet {
        SigSet(0)
    }
    /// Every signal.
    pub const fn full() -> SigSet {
        SigSet(!0)
    }
    fn bit(sig: i32) -> u64 {
        if (1..=SIGRTMAX).contains(&sig) {
            1u64 << (sig - 1)
        } else {
            0
        }
    }
    /// Adds `sig` (out-of-range numbers are ignored).
    pub fn add(&mut self, sig: i32) -> &mut Self {
        self.0 |= Self::bit(sig);
        self
    }
    /// Removes `sig`.
    pub fn remove(&mut self, sig: i32) -> &mut Self {
        self.0 &= !Self::bit(sig);
        self
    }
    /// Whether `sig` is in the set.
    pub fn contains(&self, sig: i32) -> bool {
        Self::bit(sig) != 0 && self.0 & Self::bit(sig) != 0
    }
    /// The raw mask.
    pub fn bits(self) -> u64 {
        self.0
    }
    /// The signals in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = i32> {
        (1..=SIGRTMAX).filter(move |&s| self.contains(s))
    }
}

/// kill(pid, sig). `Pid(0)` and negative pids address process groups as in kill(2).
pub fn kill(pid: Pid, sig: i32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall2(Sysno::kill, pid.0 as usize, sig as usize) }.map(drop)
}

/// tgkill(tgid, tid, sig): a signal to one thread.
pub fn tgkill(tgid: Pid, tid: Pid, sig: i32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall3(Sysno::tgkill, tgid.0 as usize, tid.0 as usize, sig as usize) }.map(drop)
}

/// rt_sigqueueinfo(tgid, sig, info): queue `info` to a process. The kernel
/// refuses si_code >= 0 (other than SI_USER-like forgeries) unless sent to self.
pub fn rt_sigqueueinfo(tgid: Pid, sig: i32, info: &SigInfo) -> Result<()> {
    // SAFETY: the kernel reads one siginfo_t from `info`.
    unsafe {
        syscalls::syscall3(Sysno::rt_sigqueueinfo, tgid.0 as usize, sig as usize, info as *const SigInfo as usize)
    }
    .map(drop)
}

/// rt_tgsigqueueinfo(tgid, tid, sig, info): queue `info` to one thread.
pub fn rt_tgsigqueueinfo(tgid: Pid, tid: Pid, sig: i32, info: &SigInfo) -> Result<()> {
    // SAFETY: the kernel reads one siginfo_t from `info`.
    unsafe {
        syscalls::syscall4(
            Sysno::rt_tgsigqueueinfo,
            tgid.0 as usize,
            tid.0 as usize,
            sig as usize,
            info as *const SigInfo as usize,
        )
    }
    .map(drop)
}

/// How [`sigprocmask`] combines the set with the current mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SigmaskHow {
    /// SIG_BLOCK: add the set.
    Block = 0,
    /// SIG_UNBLOCK: remove the set.
    Unblock = 1,
    /// SIG_SETMASK: replace the mask.
    SetMask = 2,
}

/// rt_sigprocmask(how, set, &old, 8) for the calling thread; returns the old
/// mask. With `set: None` only reads. SIGKILL and SIGSTOP can never be blocked.
pub fn sigprocmask(how: SigmaskHow, set: Option<&SigSet>) -> Result<SigSet> {
    let mut old = SigSet::empty();
    let set_ptr = set.map_or(0, |s| s as *const SigSet as usize);
    // SAFETY: the kernel reads 8 bytes from `set` (if given) and writes 8 to `old`.
    unsafe { syscalls::syscall4(Sysno::rt_sigprocmask, how as usize, set_ptr, &mut old as *mut SigSet as usize, 8) }?;
    Ok(old)
}

/// The calling thread's blocked mask.
pub fn get_sigmask() -> Result<SigSet> {
    sigprocmask(SigmaskHow::Block, None)
}

/// The disposition of `sig` in this process.
pub fn get_sigaction(sig: i32) -> Result<KSigAction> {
    let mut old = KSigAction::default();
    // SAFETY: act is NULL; the kernel writes one kernel sigaction to `old`.
    unsafe { syscalls::syscall4(Sysno::rt_sigaction, sig as usize, 0, &mut old as *mut KSigAction as usize, 8) }?;
    Ok(old)
}

/// Installs `act` for `sig` in this process; returns the previous action.
///
/// # Safety
/// A handler other than SIG_DFL/SIG_IGN is an address the kernel jumps to on
/// delivery: it must be a valid `extern "C"` handler for the chosen flags
/// (SA_SIGINFO or not) and, on x86_64, `act.restorer` with SA_RESTORER must
/// point at code that issues rt_sigreturn.
pub unsafe fn set_sigaction(sig: i32, act: &KSigAction) -> Result<KSigAction> {
    let mut old = KSigAction::default();
    // SAFETY: the kernel reads one kernel sigaction from `act` and writes one
    // to `old`; the handler's validity is the caller's contract.
    unsafe {
        syscalls::syscall4(
            Sysno::rt_sigaction,
            sig as usize,
            act as *const KSigAction as usize,
            &mut old as *mut KSigAction as usize,
            8,
        )
    }?;
    Ok(old)
}

/// Sets `sig` to SIG_DFL or SIG_IGN (`ignore`), keeping no mask or flags;
/// returns the previous action.
pub fn set_sig_disposition(sig: i32, ignore: bool) -> Result<KSigAction> {
    let act = KSigAction { handler: if ignore { SIG_IGN } else { SIG_DFL }, flags: 0, restorer: 0, mask: 0 };
    // SAFETY: SIG_DFL and SIG_IGN are not addresses: nothing will be jumped to.
    unsafe { set_sigaction(sig, &act) }
}

/// The x86_64 signal return trampoline a handler installed with
/// SA_RESTORER returns through.
#[unsafe(naked)]
unsafe extern "C" fn sigreturn_trampoline() {
    core::arch::naked_asm!("mov eax, 15", "syscall", "ud2");
}

/// Installs `handler` for `sig` with SA_RESTART (interrupted system calls
/// restart) and every other signal left unblocked; returns the previous
/// action.
///
/// # Safety
/// `handler` runs on any thread at any moment: it must be async-signal-safe.
pub unsafe fn catch(sig: i32, handler: extern "C" fn(i32)) -> Result<KSigAction> {
    let act = KSigAction {
        handler: handler as *const () as u64,
        flags: SA_RESTART | SA_RESTORER,
        restorer: sigreturn_trampoline as *const () as u64,
        mask: 0,
    };
    // SAFETY: the handler and the trampoline are valid code for these
    // flags; the handler's safety is the caller's contract.
    unsafe { set_sigaction(sig, &act) }
}

/// The calling thread's alternate signal stack.
pub fn get_sigaltstack() -> Result<SigAltStack> {
    let mut old = SigAltStack::default();
    // SAFETY: ss is NULL; the kernel writes one stack_t to `old`.
    unsafe { syscalls::syscall2(Sysno::sigaltstack, 0, &mut old as *mut SigAltStack as usize) }?;
    Ok(old)
}

/// Checks that `n` is a valid signal number.
pub fn check_signal(n: i32) -> Result<i32> {
    if (1..=SIGRTMAX).contains(&n) {
        Ok(n)
    } else {
        Err(Errno::EINVAL)
    }
}

/// signalfd4(2) with a new descriptor: `mask` (bit `n - 1` for signal `n`),
/// `flags` O_NONBLOCK and O_CLOEXEC (SFD_NONBLOCK, SFD_CLOEXEC).
pub fn signalfd(mask: u64, flags: u32) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: the kernel reads one 8-byte sigset_t from `mask`.
    let fd =
        unsafe { syscalls::syscall4(Sysno::signalfd4, usize::MAX, &mask as *const u64 as usize, 8, flags as usize) }?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn numbers_match_libc() {
        let pairs = [
            (SIGHUP, libc::SIGHUP),
            (SIGINT, libc::SIGINT),
            (SIGQUIT, libc::SIGQUIT),
            (SIGILL, libc::SIGILL),
            (SIGTRAP, libc::SIGTRAP),
            (SIGABRT, libc::SIGABRT),
            (SIGBUS, libc::SIGBUS),
            (SIGFPE, libc::SIGFPE),
            (SIGKILL, libc::SIGKILL),
            (SIGUSR1, libc::SIGUSR1),
            (SIGSEGV, libc::SIGSEGV),
            (SIGUSR2, libc::SIGUSR2),
            (SIGPIPE, libc::SIGPIPE),
            (SIGALRM, libc::SIGALRM),
            (SIGTERM, libc::SIGTERM),
            (SIGSTKFLT, libc::SIGSTKFLT),
            (SIGCHLD, libc::SIGCHLD),
            (SIGCONT, libc::SIGCONT),
            (SIGSTOP, libc::SIGSTOP),
            (SIGTSTP, libc::SIGTSTP),
            (SIGTTIN, libc::SIGTTIN),
            (SIGTTOU, libc::SIGTTOU),
            (SIGURG, libc::SIGURG),
            (SIGXCPU, libc::SIGXCPU),
            (SIGXFSZ, libc::SIGXFSZ),
            (SIGVTALRM, libc::SIGVTALRM),
            (SIGPROF, libc::SIGPROF),
            (SIGWINCH, libc::SIGWINCH),
            (SIGIO, libc::SIGIO),
            (SIGPWR, libc::SIGPWR),
            (SIGSYS, libc::SIGSYS),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(ours, theirs);
        }
        assert_eq!(SIGRTMAX, libc::SIGRTMAX());
        assert_eq!(SA_SIGINFO as i32, libc::SA_SIGINFO);
        assert_eq!(SA_RESTART as i32, libc::SA_RESTART);
        assert_eq!(SA_ONSTACK as i32, libc::SA_ONSTACK);
        assert_eq!(SA_RESTORER as i32, 0x0400_0000);
        assert_eq!(SS_DISABLE, libc::SS_DISABLE);
        assert_eq!(SI_QUEUE, libc::SI_QUEUE);
        assert_eq!(SigmaskHow::SetMask as i32, libc::SIG_SETMASK);
        assert_eq!(SigmaskHow::Block as i32, libc::SIG_BLOCK);
        assert_eq!(SigmaskHow::Unblock as i32, libc::SIG_UNBLOCK);
    }

    #[test]
    fn layouts_match_libc() {
        assert_eq!(size_of::<SigAltStack>(), size_of::<libc::stack_t>());
        assert_eq!(offset_of!(SigAltStack, flags), offset_of!(libc::stack_t, ss_flags));
        assert_eq!(offset_of!(SigAltStack, size), offset_of!(libc::stack_t, ss_size));
        assert_eq!(size_of::<KSigAction>(), 32);
        assert_eq!(offset_of!(KSigAction, mask), offset_of!(lg::kernel_sigaction, sa_mask));
        assert_eq!(offset_of!(KSigAction, restorer), offset_of!(lg::kernel_sigaction, sa_restorer));
    }

    #[test]
    fn names() {
        assert_eq!(signal_name(SIGKILL), "SIGKILL");
        assert_eq!(signal_name(SIGSYS), "SIGSYS");
        assert_eq!(signal_name(SIGRTMIN), "SIGRTMIN");
        assert_eq!(signal_name(SIGRTMIN + 3), "SIGRTMIN+3");
        assert_eq!(signal_name(SIGRTMAX - 1), "SIGRTMAX-1");
        assert_eq!(signal_name(SIGRTMAX), "SIGRTMAX");
        assert_eq!(signal_name(0), "SIG?");
        assert_eq!(signal_name(65), "SIG?");
    }

    #[test]
    fn sigset_ops() {
        let mut s = SigSet::empty();
        s.add(SIGUSR1).add(SIGRTMAX);
        assert!(s.contains(SIGUSR1) && s.contains(SIGRTMAX) && !s.contains(SIGUSR2));
        assert_eq!(s.0, (1 << 9) | (1 << 63));
        s.remove(SIGUSR1);
        assert!(!s.contains(SIGUSR1));
        assert!(!s.contains(0) && !s.contains(65));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![SIGRTMAX]);
    }

    #[test]
    fn sigprocmask_roundtrip_on_this_thread() {
        let mut s = SigSet::empty();
        s.add(SIGWINCH);
        let old = sigprocmask(SigmaskHow::Block, Some(&s)).unwrap();
        let now = get_sigmask().unwrap();
        assert!(now.contains(SIGWINCH));
        // Cross-check with libc's pthread_sigmask.
        // SAFETY: plain libc calls on a local sigset_t.
        unsafe {
            let mut cur: libc::sigset_t = core::mem::zeroed();
            assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut cur), 0);
            assert_eq!(libc::sigismember(&cur, libc::SIGWINCH), 1);
        }
        sigprocmask(SigmaskHow::SetMask, Some(&old)).unwrap();
        assert_eq!(get_sigmask().unwrap(), old);
    }

    #[test]
    fn sigaction_and_altstack_reads() {
        // SIGKILL's action is always SIG_DFL.
        assert_eq!(get_sigaction(SIGKILL).unwrap().handler, SIG_DFL);
        let prev = get_sigaction(SIGURG).unwrap();
        let old = set_sig_disposition(SIGURG, true).unwrap();
        assert_eq!(old.handler, prev.handler);
        assert_eq!(get_sigaction(SIGURG).unwrap().handler, SIG_IGN);
        // SAFETY: restoring the exact action read before.
        unsafe { set_sigaction(SIGURG, &prev) }.unwrap();
        assert_eq!(get_sigaction(SIGKILL).map(drop), Ok(()));
        assert!(set_sig_disposition(SIGKILL, true).is_err());
        let ss = get_sigaltstack().unwrap();
        assert!(ss.flags & SS_ONSTACK == 0);
    }

    #[test]
    fn queue_to_self() {
        // Blocked SIGRTMIN+5, queued to this thread, then found pending and dropped.
        let sig = SIGRTMIN + 5;
        let mut s = SigSet::empty();
        s.add(sig);
        let old = sigprocmask(SigmaskHow::Block, Some(&s)).unwrap();
        let mut si = SigInfo::default();
        si.0[0..4].copy_from_slice(&sig.to_ne_bytes());
        si.0[8..12].copy_from_slice(&SI_QUEUE.to_ne_bytes());
        let me = Pid(std::process::id() as i32);
        // SAFETY: gettid takes no arguments.
        let tid = Pid(unsafe { libc::gettid() });
        rt_tgsigqueueinfo(me, tid, sig, &si).unwrap();
        tgkill(me, tid, 0).unwrap();
        kill(me, 0).unwrap();
        // SAFETY: sigtimedwait on a local set with zero timeout consumes the signal.
        unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            let ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            assert_eq!(libc::sigtimedwait(&set, core::ptr::null_mut(), &ts), sig);
        }
        sigprocmask(SigmaskHow::SetMask, Some(&old)).unwrap();
        assert_eq!(check_signal(0), Err(Errno::EINVAL));
    }
}
