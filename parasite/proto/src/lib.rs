//! The protocol between the engine and the parasite blob.
//!
//! The engine maps one region in the victim and lays it out as below. The
//! blob is entered at `entry` with `rdi` = address of the [`Header`] in the
//! args area and `rsp` = top of the stack area; it runs one command, writes
//! the answer into the args area and stops on the `int3` that follows the
//! call in its entry stub. Two commands go that way ([`Cmd::Init`], which
//! connects the control socket, and [`Cmd::Daemon`]); from then on the
//! blob serves commands from the socket, the task running, and cures the
//! task by itself if the socket closes under it (see [`CureInfo`]).
//!
//! ```text
//!   base ───────────► +----------------------------+
//!                     | blob: .text .rodata .data  |  relocated by the engine
//!                     | .bss (zeroed)              |  for `base` before upload
//!   base+args_off ──► +----------------------------+
//!                     | Header (cmd, ret)          |
//!                     | payload (one of the structs|
//!                     | below, by command)         |
//!   base+cure_off ──► +----------------------------+
//!                     | CureInfo (self-cure)       |
//!   base+stack_off ─► +----------------------------+
//!                     | stack, grows down          |
//!   base+size ──────► +----------------------------+
//! ```
//!
//! Every struct is `#[repr(C)]`, holds no pointers that the blob would
//! dereference without the engine having put them there, and has its layout
//! pinned by `const` assertions so engine and blob can never disagree.
#![no_std]

use core::mem::{offset_of, size_of};

/// Magic in [`Header::magic`]; the blob refuses any call without it.
pub const MAGIC: u32 = 0x5041_5241; // "PARA"

/// Bytes reserved for the args area (header + payload).
pub const ARGS_SIZE: usize = 16 * 1024;
/// Offset of the payload inside the args area.
pub const PAYLOAD_OFFSET: usize = 64;
/// Bytes reserved for the blob's stack.
pub const STACK_SIZE: usize = 64 * 1024;
/// Most descriptors one [`Cmd::SendFds`] call passes (kernel SCM_MAX_FD is 253).
pub const MAX_FDS: usize = 64;
/// Number of signals with a sigaction slot (1..=64).
pub const NSIG: usize = 64;

/// Commands the parasite understands.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Connect the control socket to the engine ([`InitArgs`]).
    Init = 1,
    /// getpid()/gettid() ([`PidReply`]).
    GetPid = 2,
    /// sigaltstack(NULL, &old) ([`SigAltStackReply`]).
    SigAltStack = 3,
    /// rt_sigaction(sig, NULL, &old) for every signal ([`SigActionsReply`]).
    SigActions = 4,
    /// getitimer for REAL, VIRTUAL and PROF ([`ITimersReply`]).
    ITimers = 5,
    /// Send the listed descriptors over the control socket ([`SendFdsArgs`]).
    SendFds = 6,
    /// Close the control socket.
    Fini = 7,
    /// brk, tid address, prctl and personality state ([`MiscReply`]).
    Misc = 8,
    /// timer_gettime/timer_getoverrun of the listed ids ([`TimersArgs`] in, [`TimersReply`] out).
    Timers = 9,
    /// Serve commands from the control socket until it closes ([`DaemonArgs`]);
    /// when it closes without the engine having taken the task back (the
    /// engine died), cure the task from inside (see [`CureInfo`]). Never
    /// returns once the loop runs.
    Daemon = 10,
    /// One system call with raw arguments ([`SyscallArgs`]); its result is
    /// the header's `ret`.
    Syscall = 11,
    /// get_mempolicy of the calling thread and of the VMAs at the listed
    /// addresses ([`MemPolicyArgs`] in, [`MemPolicyReply`] out).
    MemPolicy = 12,
}

impl Cmd {
    /// Decodes a raw command number.
    pub const fn from_raw(raw: u32) -> Option<Cmd> {
        Some(match raw {
            1 => Cmd::Init,
            2 => Cmd::GetPid,
            3 => Cmd::SigAltStack,
            4 => Cmd::SigActions,
            5 => Cmd::ITimers,
            6 => Cmd::SendFds,
            7 => Cmd::Fini,
            8 => Cmd::Misc,
            9 => Cmd::Timers,
            10 => Cmd::Daemon,
            11 => Cmd::Syscall,
            12 => Cmd::MemPolicy,
            _ => return None,
        })
    }
}

/// Most addresses one [`Cmd::MemPolicy`] call asks about.
pub const MAX_POLICIES: usize = 64;
/// Words of a NUMA node mask (1024 nodes, the kernel's largest).
pub const NODEMASK_WORDS: usize = 16;
/// [`MemPolicyArgs::addrs`] entry asking for the thread's own policy.
pub const THREAD_POLICY: u64 = u64::MAX;

/// [`Cmd::MemPolicy`] arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemPolicyArgs {
    /// Entries in use in `addrs`.
    pub nr: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// Addresses inside VMAs (get_mempolicy with MPOL_F_ADDR), or
    /// [`THREAD_POLICY`].
    pub addrs: [u64; MAX_POLICIES],
}

/// One policy as get_mempolicy(2) reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemPolicy {
    /// Mode and its flags (MPOL_F_STATIC_NODES, ...); 0 = MPOL_DEFAULT.
    pub mode: i32,
    /// Reserved, zero.
    pub _pad: u32,
    /// Node mask.
    pub nodes: [u64; NODEMASK_WORDS],
}

/// [`Cmd::MemPolicy`] reply: one policy per address asked.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemPolicyReply {
    pub policies: [MemPolicy; MAX_POLICIES],
}

/// Start of the args area.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Header {
    /// Must be [`MAGIC`].
    pub magic: u32,
    /// A [`Cmd`] as u32.
    pub cmd: u32,
    /// 0 on success, or a negative errno from the failing syscall.
    pub ret: i64,
    /// Which step of the command failed (command specific, 0 when none).
    pub failed_step: u32,
    /// Commands over the control socket: payload bytes the answer carries.
    pub reply_len: u32,
}

/// Bytes of the args area a command over the control socket may use: the
/// last 4 KiB are the engine's scratch page for other threads.
pub const SOCKET_MSG_MAX: usize = ARGS_SIZE - 4096;

/// Bytes reserved for [`CureInfo`] (its own area of the region).
pub const CURE_SIZE: usize = 4096;

/// [`Cmd::Daemon`] arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DaemonArgs {
    /// Address of the [`CureInfo`] in the task.
    pub cure: u64,
}

/// [`Cmd::Syscall`] arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallArgs {
    pub nr: u64,
    pub args: [u64; 6],
}

/// Registers to resume the task with, in the order the blob pops them:
/// the task's own at infection, with an interrupted system call already
/// set up to restart (rip back on the `syscall`, rax its number), as the
/// kernel would have on the way out of the stop.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResumeRegs {
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
    pub rflags: u64,
    pub rsp: u64,
    pub rip: u64,
}

/// What a thread other than the served one puts back by itself if the
/// engine dies while it runs a system call in the parasite's region (the
/// blob's `thread_call`): its blocked mask and its registers (in
/// [`ResumeRegs`] form). The engine writes it before it points the
/// thread there, and its address into the blob's `thread_cure_ptr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCure {
    pub mask: u64,
    pub regs: ResumeRegs,
}
const _: () = assert!(offset_of!(ThreadCure, regs) == 8 && size_of::<ThreadCure>() == 152);
/// Where the engine puts the [`ThreadCure`]: this many bytes before the
/// end of the args area (above the scratch words the thread calls fill).
pub const THREAD_CURE_FROM_END: usize = 256;

/// A SIGTRAP to queue again at a self-cure (our traps took it off).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QueuedTrap {
    /// 0: this thread's queue (rt_tgsigqueueinfo); 1: the process's
    /// (rt_sigqueueinfo).
    pub shared: u32,
    pub _pad: u32,
    /// The siginfo it had.
    pub info: [u8; 128],
}

/// Flag of [`CureInfo::flags`]: put `sigtrap` back as SIGTRAP's action.
pub const CURE_SIGTRAP_ACTION: u32 = 1;
/// [`CureInfo::magic`] once the engine wrote it.
pub const CURE_MAGIC: u32 = 0x4355_5245; // "CURE"

/// What the blob needs to cure the task by itself when the engine is gone:
/// written by the engine before [`Cmd::Daemon`] starts, updated while it
/// runs. The blob cannot unmap the region it runs from (nothing in the
/// task would be left to return through); it names it instead.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CureInfo {
    pub magic: u32,
    pub flags: u32,
    /// The task's blocked mask at infection.
    pub mask: u64,
    pub regs: ResumeRegs,
    /// SIGTRAP's action to put back (with [`CURE_SIGTRAP_ACTION`]).
    pub sigtrap: KSigAction,
    /// Entries of `traps` in use.
    pub nr_traps: u32,
    /// The process (for rt_sigqueueinfo) and this thread.
    pub tgid: i32,
    pub tid: i32,
    pub _pad: u32,
    pub traps: [QueuedTrap; 2],
    /// The parasite region, to name it.
    pub base: u64,
    pub size: u64,
}

/// [`Cmd::Init`]: abstract unix address of the engine's control socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct InitArgs {
    /// Bytes of `addr` in use (sun_path bytes, abstract: starts with 0).
    pub addr_len: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// sun_path.
    pub addr: [u8; 108],
}

/// [`Cmd::GetPid`] answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PidReply {
    /// getpid() in the task's own pid namespace.
    pub pid: i32,
    /// gettid().
    pub tid: i32,
}

/// [`Cmd::SigAltStack`] answer (kernel `stack_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAltStackReply {
    /// ss_sp.
    pub sp: u64,
    /// ss_flags (SS_ONSTACK, SS_DISABLE, SS_AUTODISARM).
    pub flags: i32,
    /// Padding as in the kernel struct.
    pub _pad: u32,
    /// ss_size.
    pub size: u64,
}

/// Kernel `struct sigaction` as rt_sigaction sees it on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KSigAction {
    /// sa_handler / sa_sigaction (0 = SIG_DFL, 1 = SIG_IGN).
    pub handler: u64,
    /// sa_flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// sa_mask (64 signals).
    pub mask: u64,
}

/// [`Cmd::SigActions`] answer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SigActionsReply {
    /// Bit `n-1` set when signal `n` was read (SIGKILL and SIGSTOP are not).
    pub valid: u64,
    /// Slot `n-1` holds signal `n`.
    pub actions: [KSigAction; NSIG],
}

/// Kernel `struct itimerval`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ITimerVal {
    /// it_interval.tv_sec.
    pub interval_sec: i64,
    /// it_interval.tv_usec.
    pub interval_usec: i64,
    /// it_value.tv_sec.
    pub value_sec: i64,
    /// it_value.tv_usec.
    pub value_usec: i64,
}

/// [`Cmd::ITimers`] answer: ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ITimersReply {
    /// Indexed by the ITIMER_* number.
    pub timers: [ITimerVal; 3],
}

/// [`Cmd::SendFds`] arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SendFdsArgs {
    /// Descriptors in use in `fds`.
    pub nr: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// The task's descriptors to send, in order.
    pub fds: [i32; MAX_FDS],
}

/// [`Cmd::Misc`] answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MiscReply {
    /// brk(0): the current program break.
    pub brk: u64,
    /// PR_GET_TID_ADDRESS: the clear_child_tid address.
    pub tid_address: u64,
    /// PR_GET_PDEATHSIG.
    pub pdeathsig: i32,
    /// PR_GET_CHILD_SUBREAPER.
    pub child_subreaper: i32,
    /// PR_GET_DUMPABLE.
    pub dumpable: i32,
    /// PR_GET_NO_NEW_PRIVS.
    pub no_new_privs: i32,
    /// PR_GET_SECUREBITS.
    pub securebits: i32,
    /// personality(0xffffffff).
    pub personality: u32,
}

/// Most POSIX timers one [`Cmd::Timers`] call reads.
pub const MAX_TIMERS: usize = 128;

/// [`Cmd::Timers`] arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TimersArgs {
    /// Ids in use in `ids`.
    pub nr: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// Timer ids from /proc/pid/timers.
    pub ids: [i32; MAX_TIMERS],
}

/// One timer's state as timer_gettime(2) and timer_getoverrun(2) report it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerState {
    /// it_interval.tv_sec.
    pub interval_sec: i64,
    /// it_interval.tv_nsec.
    pub interval_nsec: i64,
    /// it_value.tv_sec (remaining).
    pub value_sec: i64,
    /// it_value.tv_nsec.
    pub value_nsec: i64,
    /// timer_getoverrun.
    pub overrun: i64,
}

/// [`Cmd::Timers`] answer: entry `i` for `ids[i]`; the payload area is
/// shared with the arguments, so the blob reads all ids first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TimersReply {
    /// One per requested id.
    pub timers: [TimerState; MAX_TIMERS],
}

// Layouts are part of the protocol: pin them.
const _: () = {
    assert!(size_of::<Header>() == 24);
    assert!(size_of::<Header>() <= PAYLOAD_OFFSET);
    assert!(offset_of!(Header, ret) == 8);
    assert!(size_of::<InitArgs>() == 116);
    assert!(size_of::<KSigAction>() == 32);
    assert!(offset_of!(SigActionsReply, actions) == 8);
    assert!(size_of::<SigActionsReply>() == 8 + 64 * 32);
    assert!(size_of::<SigAltStackReply>() == 24);
    assert!(size_of::<ITimerVal>() == 32);
    assert!(size_of::<ITimersReply>() == 96);
    assert!(size_of::<SendFdsArgs>() == 8 + 4 * MAX_FDS);
    assert!(PAYLOAD_OFFSET + size_of::<SigActionsReply>() <= ARGS_SIZE);
    assert!(PAYLOAD_OFFSET + size_of::<SendFdsArgs>() <= ARGS_SIZE);
    assert!(size_of::<MiscReply>() == 40);
    assert!(size_of::<TimerState>() == 40);
    assert!(PAYLOAD_OFFSET + size_of::<TimersReply>() <= ARGS_SIZE);
    assert!(size_of::<TimersArgs>() == 8 + 4 * MAX_TIMERS);
    assert!(offset_of!(Header, reply_len) == 20);
    assert!(size_of::<SyscallArgs>() == 56);
    assert!(size_of::<ResumeRegs>() == 18 * 8);
    assert!(offset_of!(ResumeRegs, rflags) == 15 * 8);
    assert!(offset_of!(ResumeRegs, rsp) == 16 * 8);
    assert!(offset_of!(ResumeRegs, rip) == 17 * 8);
    assert!(size_of::<QueuedTrap>() == 136);
    assert!(size_of::<CureInfo>() <= CURE_SIZE);
    assert!(PAYLOAD_OFFSET + size_of::<TimersReply>() <= SOCKET_MSG_MAX);
    assert!(PAYLOAD_OFFSET + size_of::<SigActionsReply>() <= SOCKET_MSG_MAX);
    assert!(size_of::<MemPolicy>() == 136);
    assert!(PAYLOAD_OFFSET + size_of::<MemPolicyReply>() <= SOCKET_MSG_MAX);
    assert!(size_of::<MemPolicyArgs>() <= size_of::<MemPolicyReply>());
};
