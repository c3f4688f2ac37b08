//! `core-<tid>.img`: one per thread. The head ([`CoreEntry`]) holds the
//! thread's CPU and signal state and, in the thread-group leader's image
//! only, the process-wide state ([`ProcessCore`]). The image has no entries.
//!
//! Invariants: `sigactions` has one entry per signal 1..=64 (index is the
//! signal number minus one); siginfo blobs are the kernel's 128-byte
//! `siginfo_t`, kept raw so every union member survives; signal sets are
//! kernel `sigset_t` words (bit n-1 stands for signal n).
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::{serde_bits, signal_node, sigset_node, RawStr};
use crate::sys::ptrace::UserRegs;

/// Size of a kernel `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;
/// Number of signals with a sigaction.
pub const NSIG: usize = 64;

macro_rules! gp_regs {
    ($($r:ident),* $(,)?) => {
        /// General registers: the 27 words of x86_64 `user_regs_struct`, same order.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct GpRegs { $(pub $r: u64,)* }

        impl From<&UserRegs> for GpRegs {
            fn from(u: &UserRegs) -> Self { GpRegs { $($r: u.$r,)* } }
        }
        impl From<&GpRegs> for UserRegs {
            fn from(g: &GpRegs) -> Self { UserRegs { $($r: g.$r,)* } }
        }
        impl Describe for GpRegs {
            fn describe(&self) -> Node {
                Obj::new() $(.addr(stringify!($r), self.$r))* .done()
            }
        }
    };
}
gp_regs!(
    r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss,
    fs_base, gs_base, ds, es, fs, gs,
);

/// FPU/SSE/AVX state: the `NT_X86_XSTATE` regset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xsave {
    /// XSTATE_BV/XCR0 mask of the features present in `area`.
    pub xfeatures: u64,
    /// The raw xsave area.
    pub area: Vec<u8>,
}

bitflags::bitflags! {
    /// `sa_flags`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SaFlags: u64 {
        const SA_NOCLDSTOP = 0x0000_0001;
        const SA_NOCLDWAIT = 0x0000_0002;
        const SA_SIGINFO = 0x0000_0004;
        const SA_UNSUPPORTED = 0x0000_0400;
        const SA_EXPOSE_TAGBITS = 0x0000_0800;
        const SA_RESTORER = 0x0400_0000;
        const SA_ONSTACK = 0x0800_0000;
        const SA_RESTART = 0x1000_0000;
        const SA_NODEFER = 0x4000_0000;
        const SA_RESETHAND = 0x8000_0000;
    }
}

bitflags::bitflags! {
    /// `ss_flags` of `sigaltstack`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SsFlags: u32 {
        const SS_ONSTACK = 1;
        const SS_DISABLE = 2;
        const SS_AUTODISARM = 1 << 31;
    }
}
bitflags::bitflags! {
    /// membarrier(2) registrations of an address space, as the
    /// `MEMBARRIER_CMD_REGISTER_*` command bits (what
    /// MEMBARRIER_CMD_GET_REGISTRATIONS reports).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct MembarrierRegs: u32 {
        const REGISTER_GLOBAL_EXPEDITED = 1 << 2;
        const REGISTER_PRIVATE_EXPEDITED = 1 << 4;
        const REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = 1 << 6;
        const REGISTER_PRIVATE_EXPEDITED_RSEQ = 1 << 8;
    }
}
serde_bits!(SaFlags: u64, SsFlags: u32, MembarrierRegs: u32);

/// Membership in one cgroup hierarchy (a line of /proc/pid/cgroup).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// Hierarchy id at dump (0: cgroup v2); ids change across boots.
    pub hierarchy: u32,
    /// Controllers of the hierarchy ("" for v2, "memory", "name=systemd").
    pub controllers: String,
    /// Path from the cgroup namespace root.
    pub path: RawStr,
}

/// One `struct sigaction` (kernel layout: handler, flags, restorer, mask).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    /// Handler address, or 0 (SIG_DFL) / 1 (SIG_IGN).
    pub handler: u64,
    pub flags: SaFlags,
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// `stack_t` of `sigaltstack`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAltStack {
    pub sp: u64,
    pub flags: SsFlags,
    pub size: u64,
}

/// One `struct itimerval`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Itimer {
    pub interval_sec: u64,
    pub interval_usec: u64,
    pub value_sec: u64,
    pub value_usec: u64,
}

/// The three interval timers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Itimers {
    pub real: Itimer,
    pub virt: Itimer,
    pub prof: Itimer,
}

/// One POSIX timer (`timer_create`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    pub id: i32,
    /// `CLOCK_*`.
    pub clock: i32,
    /// `SIGEV_*`.
    pub sigev_notify: i32,
    pub signo: i32,
    /// `sigev_value` (pointer or int, raw).
    pub sigev_value: u64,
    /// Target thread for `SIGEV_THREAD_ID`.
    pub notify_tid: u32,
    pub interval_sec: u64,
    pub interval_nsec: u64,
    /// Time remaining until the next expiry.
    pub value_sec: u64,
    pub value_nsec: u64,
    pub overrun: i32,
}

/// A raw kernel `siginfo_t` (128 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Siginfo(pub Vec<u8>);

impl Default for Siginfo {
    fn default() -> Self {
        Siginfo(vec![0; SIGINFO_SIZE])
    }
}

impl Siginfo {
    fn word(&self, i: usize) -> i32 {
        self.0.get(i * 4..i * 4 + 4).map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// `si_signo`.
    pub fn signo(&self) -> i32 {
        self.word(0)
    }
    /// `si_errno`.
    pub fn errno(&self) -> i32 {
        self.word(1)
    }
    /// `si_code`.
    pub fn code(&self) -> i32 {
        self.word(2)
    }
}

/// One resource limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*`.
    pub resource: u32,
    pub cur: u64,
    pub max: u64,
}

/// Credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    /// `SECBIT_*`.
    pub securebits: u32,
    pub no_new_privs: bool,
}

/// Registered rseq area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rseq {
    pub ptr: u64,
    pub len: u32,
    pub sig: u32,
}

/// Process attributes set with prctl.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrctlBits {
    /// `PR_GET_DUMPABLE` (0, 1, 2).
    pub dumpable: u32,
    /// `PR_GET_PDEATHSIG` signal (0 = none).
    pub pdeathsig: i32,
    /// `PR_GET_CHILD_SUBREAPER`.
    pub child_subreaper: bool,
}

/// State of the task when it was dumped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Running or sleeping: resumed after restore.
    #[default]
    Alive,
    /// In a group stop: left stopped after restore.
    Stopped,
    /// A zombie: recreated as one with its exit status.
    Zombie,
}

/// Per-thread state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadCore {
    pub regs: GpRegs,
    pub xsave: Xsave,
    /// Blocked signals.
    pub sigmask: u64,
    pub sigaltstack: SigAltStack,
    /// Signals pending for this thread only.
    pub pending: Vec<Siginfo>,
    /// `comm` (up to 15 bytes).
    pub comm: RawStr,
    pub creds: Creds,
    /// `set_tid_address` value.
    pub clear_child_tid: u64,
    pub rseq: Option<Rseq>,
    /// Robust futex list (format version 6).
    pub robust_list: Option<RobustList>,
    /// Seccomp filters, oldest first (format version 7).
    pub seccomp: Vec<SeccompFilter>,
    /// Scheduling: policy, real-time priority, nice value, I/O priority,
    /// timer slack.
    pub sched: Sched,
    /// A relative sleep the dump interrupted, to go on for the time it
    /// had left (format version 5).
    pub sleep: Option<RestartSleep>,
    /// Its NUMA memory policy (set_mempolicy), none for the default
    /// (format version 11).
    pub mempolicy: Option<super::mm::MemPolicy>,
}

/// A relative nanosleep/clock_nanosleep the dump interrupted: the kernel
/// keeps its expiry in the thread's restart block and restarts it with
/// restart_syscall; restore rebuilds that block with the time left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartSleep {
    /// The clock it sleeps on (CLOCK_MONOTONIC for nanosleep).
    pub clock: i32,
    /// Nanoseconds it had left (what the kernel wrote to its `rem`).
    pub remaining_ns: u64,
    /// Its `rem` pointer (the restarted sleep writes there again if interrupted).
    pub rmtp: u64,
}

impl Describe for RestartSleep {
    fn describe(&self) -> Node {
        Obj::new()
            .f("clock", clock_name(self.clock))
            .f("remaining_ns", self.remaining_ns)
            .addr("rmtp", self.rmtp)
            .done()
    }
}

/// A thread's scheduling parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sched {
    /// SCHED_OTHER (0), SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE...,
    /// with SCHED_RESET_ON_FORK (0x40000000) ORed in where the thread has it.
    pub policy: u32,
    /// Real-time priority (FIFO/RR).
    pub rt_priority: u32,
    /// Nice value, -20..=19.
    pub nice: i32,
    /// I/O priority (ioprio_get; 0: none set, the default).
    pub ioprio: u32,
    /// Timer slack in nanoseconds (PR_GET_TIMERSLACK).
    pub timerslack_ns: u64,
    /// CPU affinity mask (sched_getaffinity; CPU n is bit n % 64 of word
    /// n / 64; empty: not recorded) (format version 8).
    pub cpus: Vec<u64>,
}

impl Describe for Sched {
    fn describe(&self) -> Node {
        Obj::new()
            .f("policy", self.policy)
            .f("rt_priority", self.rt_priority)
            .f("nice", self.nice as i64)
            .f("ioprio", format!("{:#x}", self.ioprio))
            .f("timerslack_ns", self.timerslack_ns)
            .f("cpus", cpu_list(&self.cpus))
            .done()
    }
}

/// One seccomp filter (SECCOMP_SET_MODE_FILTER) as installed: its flags
/// (SECCOMP_FILTER_FLAG_LOG) and classic BPF program, one `struct
/// sock_filter` per u64 (code, jt, jf, k in memory order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompFilter {
    pub flags: u32,
    pub insns: Vec<u64>,
}

impl Describe for SeccompFilter {
    fn describe(&self) -> Node {
        Obj::new().f("flags", format!("{:#x}", self.flags)).f("instructions", self.insns.len() as u64).done()
    }
}

/// A CPU mask as a list (`0-3,6`).
pub fn cpu_list(mask: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let on = |n: usize| mask.get(n / 64).is_some_and(|w| w & (1 << (n % 64)) != 0);
    let mut n = 0;
    while n < mask.len() * 64 {
        if on(n) {
            let start = n;
            while n + 1 < mask.len() * 64 && on(n + 1) {
                n += 1;
            }
            out.push(if start == n { start.to_string() } else { format!("{start}-{n}") });
        }
        n += 1;
    }
    out.join(",")
}

/// A thread's robust futex list as it registered it (set_robust_list): the
/// kernel walks it when the thread dies, to wake the waiters of the robust
/// mutexes it held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobustList {
    pub head: u64,
    pub len: u64,
}

impl Describe for RobustList {
    fn describe(&self) -> Node {
        Obj::new().addr("head", self.head).f("len", self.len).done()
    }
}

/// Process-wide state (leader's image only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCore {
    /// One per signal 1..=64.
    pub sigactions: Vec<SigAction>,
    pub itimers: Itimers,
    pub posix_timers: Vec<PosixTimer>,
    /// Signals pending for the whole thread group.
    pub shared_pending: Vec<Siginfo>,
    pub rlimits: Vec<Rlimit>,
    /// `personality(0xffffffff)`.
    pub personality: u32,
    pub umask: u32,
    pub prctl: PrctlBits,
    pub state: TaskState,
    /// Exit status of a zombie (as `wait` reports it).
    pub exit_status: Option<i32>,
    /// Working directory, as the dumper's root sees it.
    pub cwd: RawStr,
    /// Root directory, as the dumper's root sees it (`/` unless chrooted).
    pub root: RawStr,
    /// `/proc/pid/oom_score_adj`, -1000..=1000.
    pub oom_score_adj: i32,
    /// `/proc/pid/coredump_filter` (format version 9; None in older images).
    pub coredump_filter: Option<u32>,
    /// `/proc/pid/loginuid` (4294967295: never set); `None` without audit.
    pub loginuid: Option<u32>,
    /// membarrier(2) registrations.
    pub membarrier: MembarrierRegs,
    /// cgroup membership, one entry per hierarchy (threads are in their
    /// process's cgroups: checked at dump).
    pub cgroups: Vec<Cgroup>,
    /// The working directory had been removed: (mode, uid, gid) of it.
    /// Restore makes an empty directory for it and removes it once the
    /// tree runs.
    pub cwd_removed: Option<(u32, u32, u32)>,
    /// The signal its parent gets when it ends (/proc/pid/stat field 38;
    /// 17 = SIGCHLD, 0 = none); format version 5.
    pub exit_signal: i32,
    /// The signal that stopped a task in group-stop (SIGSTOP, SIGTSTP,
    /// SIGTTIN or SIGTTOU; 0 when not stopped); format version 10.
    pub stop_signal: i32,
    /// The xsave features the process may use (ARCH_GET_XCOMP_PERM; 0 where
    /// the kernel has no such call): the dynamic ones (AMX tile data, bit
    /// 18) were asked for with ARCH_REQ_XCOMP_PERM and are asked for again
    /// at restore (without them a restored AMX user gets SIGILL); format
    /// version 12.
    pub xcomp_perm: u64,
}

/// Head of a core image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreEntry {
    /// Thread id.
    pub tid: u32,
    pub thread: ThreadCore,
    /// Present in the thread-group leader's image only.
    pub process: Option<ProcessCore>,
}

const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability set shown by capability names.
pub fn caps_node(mask: u64) -> Node {
    Node::bitmask(mask, |b| CAP_NAMES.get(b as usize).map(|n| Cow::Borrowed(*n)))
}

/// `RLIMIT_*` name.
pub fn rlimit_name(r: u32) -> Cow<'static, str> {
    const N: [&str; 16] = [
        "RLIMIT_CPU",
        "RLIMIT_FSIZE",
        "RLIMIT_DATA",
        "RLIMIT_STACK",
        "RLIMIT_CORE",
        "RLIMIT_RSS",
        "RLIMIT_NPROC",
        "RLIMIT_NOFILE",
        "RLIMIT_MEMLOCK",
        "RLIMIT_AS",
        "RLIMIT_LOCKS",
        "RLIMIT_SIGPENDING",
        "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE",
        "RLIMIT_RTPRIO",
        "RLIMIT_RTTIME",
    ];
    N.get(r as usize).map_or_else(|| Cow::Owned(format!("rlimit {r}")), |n| Cow::Borrowed(*n))
}

fn clock_name(c: i32) -> Node {
    const N: [&str; 12] = [
        "CLOCK_REALTIME",
        "CLOCK_MONOTONIC",
        "CLOCK_PROCESS_CPUTIME_ID",
        "CLOCK_THREAD_CPUTIME_ID",
        "CLOCK_MONOTONIC_RAW",
        "CLOCK_REALTIME_COARSE",
        "CLOCK_MONOTONIC_COARSE",
        "CLOCK_BOOTTIME",
        "CLOCK_REALTIME_ALARM",
        "CLOCK_BOOTTIME_ALARM",
        "",
        "CLOCK_TAI",
    ];
    match usize::try_from(c).ok().and_then(|i| N.get(i)).filter(|n| !n.is_empty()) {
        Some(n) => Node::Str((*n).to_owned()),
        None => Node::I64(c as i64),
    }
}

fn sigev_name(n: i32) -> Node {
    match n {
        0 => "SIGEV_SIGNAL".into(),
        1 => "SIGEV_NONE".into(),
        2 => "SIGEV_THREAD".into(),
        4 => "SIGEV_THREAD_ID".into(),
        other => Node::I64(other as i64),
    }
}

fn limit(v: u64) -> Node {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.into()
    }
}

fn handler_node(h: u64) -> Node {
    match h {
        0 => "SIG_DFL".into(),
        1 => "SIG_IGN".into(),
        a => Node::addr(a),
    }
}

impl Describe for Xsave {
    fn describe(&self) -> Node {
        Obj::new()
            .f("xfeatures", Node::hex(self.xfeatures))
            .f("size", Node::Size(self.area.len() as u64))
            .f("area", Node::Bytes(self.area.clone()))
            .done()
    }
}

impl Describe for SigAction {
    fn describe(&self) -> Node {
        Obj::new()
            .f("handler", handler_node(self.handler))
            .d("flags", &self.flags)
            .addr("restorer", self.restorer)
            .f("mask", sigset_node(self.mask))
            .done()
    }
}

impl Describe for SigAltStack {
    fn describe(&self) -> Node {
        Obj::new().addr("sp", self.sp).d("flags", &self.flags).f("size", Node::Size(self.size)).done()
    }
}

impl Describe for Itimer {
    fn describe(&self) -> Node {
        Obj::new()
            .f("interval", format!("{}.{:06}", self.interval_sec, self.interval_usec))
            .f("value", format!("{}.{:06}", self.value_sec, self.value_usec))
            .done()
    }
}

impl Describe for Itimers {
    fn describe(&self) -> Node {
        Obj::new().d("real", &self.real).d("virtual", &self.virt).d("prof", &self.prof).done()
    }
}

impl Describe for PosixTimer {
    fn describe(&self) -> Node {
        Obj::new()
            .f("id", self.id)
            .f("clock", clock_name(self.clock))
            .f("sigev_notify", sigev_name(self.sigev_notify))
            .f("signo", signal_node(self.signo))
            .f("sigev_value", Node::hex(self.sigev_value))
            .f("notify_tid", self.notify_tid)
            .f("interval", format!("{}.{:09}", self.interval_sec, self.interval_nsec))
            .f("remaining", format!("{}.{:09}", self.value_sec, self.value_nsec))
            .f("overrun", self.overrun)
            .done()
    }
}

impl Describe for Siginfo {
    fn describe(&self) -> Node {
        Obj::new()
            .f("signo", signal_node(self.signo()))
            .f("errno", self.errno())
            .f("code", self.code())
            .f("raw", Node::Bytes(self.0.clone()))
            .done()
    }
}

impl Describe for Rlimit {
    fn describe(&self) -> Node {
        Obj::new()
            .f("resource", rlimit_name(self.resource).into_owned())
            .f("cur", limit(self.cur))
            .f("max", limit(self.max))
            .done()
    }
}

impl Describe for Creds {
    fn describe(&self) -> Node {
        Obj::new()
            .f("uid", self.uid)
            .f("euid", self.euid)
            .f("suid", self.suid)
            .f("fsuid", self.fsuid)
            .f("gid", self.gid)
            .f("egid", self.egid)
            .f("sgid", self.sgid)
            .f("fsgid", self.fsgid)
            .f("groups", Node::Array(self.groups.iter().map(|&g| g.into()).collect()))
            .f("cap_inh", caps_node(self.cap_inh))
            .f("cap_prm", caps_node(self.cap_prm))
            .f("cap_eff", caps_node(self.cap_eff))
            .f("cap_bnd", caps_node(self.cap_bnd))
            .f("cap_amb", caps_node(self.cap_amb))
            .f("securebits", Node::hex(self.securebits as u64))
            .f("no_new_privs", self.no_new_privs)
            .done()
    }
}

impl Describe for Rseq {
    fn describe(&self) -> Node {
        Obj::new().addr("ptr", self.ptr).f("len", self.len).f("sig", Node::hex32(self.sig)).done()
    }
}

impl Describe for PrctlBits {
    fn describe(&self) -> Node {
        Obj::new()
            .f("dumpable", self.dumpable)
            .f("pdeathsig", signal_node(self.pdeathsig))
            .f("child_subreaper", self.child_subreaper)
            .done()
    }
}

impl Describe for TaskState {
    fn describe(&self) -> Node {
        Node::Str(
            match self {
                TaskState::Alive => "alive",
                TaskState::Stopped => "stopped",
                TaskState::Zombie => "zombie",
            }
            .to_owned(),
        )
    }
}

impl Describe for ThreadCore {
    fn describe(&self) -> Node {
        Obj::new()
            .d("comm", &self.comm)
            .d("regs", &self.regs)
            .d("xsave", &self.xsave)
            .f("sigmask", sigset_node(self.sigmask))
            .d("sigaltstack", &self.sigaltstack)
            .d("pending", &self.pending)
            .d("creds", &self.creds)
            .addr("clear_child_tid", self.clear_child_tid)
            .d("rseq", &self.rseq)
            .d("robust_list", &self.robust_list)
            .d("seccomp", &self.seccomp)
            .d("sched", &self.sched)
            .d("sleep", &self.sleep)
            .d("mempolicy", &self.mempolicy)
            .done()
    }
}

impl Describe for ProcessCore {
    fn describe(&self) -> Node {
        let sigactions = self
            .sigactions
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut n = a.describe();
                if let Node::Object(f) = &mut n {
                    f.insert(0, ("signal".into(), signal_node(i as i32 + 1)));
                }
                n
            })
            .collect();
        Obj::new()
            .d("state", &self.state)
            .f("exit_status", self.exit_status)
            .f("personality", Node::hex32(self.personality))
            .f("umask", format!("{:04o}", self.umask))
            .f("cwd", self.cwd.to_string_lossy().into_owned())
            .f("root", self.root.to_string_lossy().into_owned())
            .d("prctl", &self.prctl)
            .d("itimers", &self.itimers)
            .d("posix_timers", &self.posix_timers)
            .d("shared_pending", &self.shared_pending)
            .d("rlimits", &self.rlimits)
            .f("sigactions", Node::Array(sigactions))
            .f("oom_score_adj", self.oom_score_adj as i64)
            .f("coredump_filter", self.coredump_filter.map(|f| format!("{f:#x}")).unwrap_or_default())
            .f("loginuid", self.loginuid)
            .d("membarrier", &self.membarrier)
            .d("cgroups", &self.cgroups)
            .f("exit_signal", signal_node(self.exit_signal))
            .f("stop_signal", signal_node(self.stop_signal))
            .f("xcomp_perm", Node::hex(self.xcomp_perm))
            .done()
    }
}

impl Describe for Cgroup {
    fn describe(&self) -> Node {
        let controllers = if self.controllers.is_empty() { "(v2)" } else { self.controllers.as_str() };
        Obj::new()
            .f("hierarchy", self.hierarchy)
            .f("controllers", controllers)
            .f("path", self.path.to_string_lossy().into_owned())
            .done()
    }
}

impl Describe for CoreEntry {
    fn describe(&self) -> Node {
        Obj::new().f("tid", self.tid).d("thread", &self.thread).d("process", &self.process).done()
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_list;

    #[test]
    fn cpu_masks_read_as_lists() {
        assert_eq!(cpu_list(&[0b1011]), "0-1,3");
        assert_eq!(cpu_list(&[0, 1]), "64");
        assert_eq!(cpu_list(&[u64::MAX, 1]), "0-64");
        assert_eq!(cpu_list(&[]), "");
    }
}
