//! The restore plan: what the engine lays out in memory for the restorer blob.
//!
//! The restorer is the last stage of restore inside each task. The engine
//! builds one region per task at an address that overlaps neither the
//! engine's own mappings nor any of the task's target mappings, and enters
//! the blob at offset 0 with `rdi` = the [`Plan`] and `rsp` at the top of the
//! region's stack. Every struct here is `#[repr(C)]` and pointer-free: tables
//! and strings are referenced by offsets from the plan's own address, so the
//! arena is built in the engine and copied into place unchanged.
//!
//! ```text
//!   region ─────────► +----------------------------+
//!                     | restorer blob (relocated)  |
//!   plan ───────────► +----------------------------+
//!                     | Plan (fixed part)          |
//!                     | Vma[vmas.nr]               |
//!                     | PageRun[runs.nr]           |
//!                     | FileEntry[files.nr]        |
//!                     | SigInfo[sigs.nr]           |
//!                     | strings (NUL-terminated)   |
//!                     +----------------------------+
//!                     | stack, grows down          |
//!   region end ─────► +----------------------------+
//! ```
//!
//! The restorer runs the steps in [`Step`] order, recording the current one
//! in [`Plan::failure`]. On failure it fills in the errno and stops on its
//! `int3` with `failure.ret < 0`: the engine reads the plan back and kills
//! the task (its address space is gone by then). On success it closes its
//! helper descriptors and stops on the same `int3` with `failure.ret == 0`;
//! the engine then sets the registers, the xsave state and the signal mask
//! with ptrace, unmaps the region and lets the task go.
#![no_std]

use core::mem::{offset_of, size_of};

/// Most stripes a task's pages image has (the engine's
/// `image::pagemap::MAX_STRIPES`).
pub const MAX_STRIPES: usize = 8;

/// The userfaultfd features a lazy-pages restorer asks for (see
/// [`Plan::lazy`]): UFFD_FEATURE_EVENT_FORK, EVENT_REMAP, EVENT_REMOVE,
/// EVENT_UNMAP (the server's view of the address space stays right) and
/// THREAD_ID (a fault names its thread). The engine checks the bits
/// against the kernel headers.
pub const LAZY_UFFD_FEATURES: u64 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 8);

/// Magic in [`Plan::magic`].
pub const MAGIC: u32 = 0x5245_5354; // "REST"
/// Layout version; engine and blob are built together, the check catches a
/// blob from another build.
pub const VERSION: u32 = 17;
/// Bytes of stack at the end of the region.
pub const STACK_SIZE: usize = 64 * 1024;
/// Number of signals.
pub const NSIG: usize = 64;
/// Number of rlimits (RLIM_NLIMITS).
pub const NLIMITS: usize = 16;
/// Most vDSO-like areas ([vvar], [vvar_vclock], [vdso], ...).
pub const MAX_VDSO: usize = 4;

/// A table in the arena: `nr` entries starting `off` bytes after the plan.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Offset from the plan.
    pub off: u64,
    /// Number of entries (or bytes, for strings).
    pub nr: u64,
}

/// A NUL-terminated string in the arena, `off` bytes after the plan; 0 = none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Str {
    /// Offset from the plan, 0 for "no string".
    pub off: u64,
}

/// How a VMA is recreated.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaKind {
    /// MAP_PRIVATE|MAP_ANONYMOUS, pages from the image.
    AnonPrivate = 1,
    /// MAP_SHARED|MAP_ANONYMOUS, pages from the image.
    AnonShared = 2,
    /// MAP_PRIVATE of a file; modified pages from the image.
    FilePrivate = 3,
    /// MAP_SHARED of a file; contents are the file's.
    FileShared = 4,
    /// A SysV shared memory attachment (segment [`Vma::shm_id`], made and
    /// filled by the engine before the tree was forked): the VMA with
    /// [`VF_SHM_ATTACH`] attaches the whole segment with shmat at
    /// `start - pgoff`; the VMAs after it that continue it (split by
    /// mprotect or madvise) are covered by that attachment.
    SysvShm = 5,
}

/// One target mapping.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Vma {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// File offset in bytes (file mappings).
    pub pgoff: u64,
    /// A [`VmaKind`] as u32.
    pub kind: u32,
    /// Final PROT_* bits.
    pub prot: u32,
    /// Extra mmap flags (MAP_GROWSDOWN, MAP_NORESERVE, MAP_HUGETLB with its
    /// MAP_HUGE_* page size in bits 26..32, ...).
    pub map_flags: u32,
    /// open(2) flags for the backing file (file mappings).
    pub open_flags: u32,
    /// Backing file path (file mappings).
    pub path: Str,
    /// madvise(2) advice to apply after mapping, as a bit set of
    /// [`ADV_DONTFORK`], [`ADV_WIPEONFORK`], [`ADV_HUGEPAGE`], [`ADV_NOHUGEPAGE`], [`ADV_DONTDUMP`].
    pub advice: u32,
    /// [`VF_FINAL_PROT`] bits.
    pub flags: u32,
    /// [`VmaKind::AnonShared`] only: 0 for a private object of its own,
    /// mapped plainly at offset 0; else the size of the shared memory object,
    /// created once (for the first VMA with this [`Vma::shm_id`]) and mapped
    /// at `pgoff` by every VMA with the same id.
    pub shm_size: u64,
    /// Shared memory object id (see [`Vma::shm_size`]), 0 for none.
    pub shm_id: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// Where the object is already mapped, inherited from the engine (an
    /// object several processes share, created and filled once before the
    /// tree was forked), or 0: then the blob creates it.
    ///
    /// For [`VmaKind::AnonPrivate`]: the engine's private copy of memory
    /// that tasks of the tree still share copy-on-write, moved into place
    /// with mremap (so the pages stay shared), or 0.
    pub shm_addr: u64,
}

/// [`Vma::flags`]: map with the final protection right away instead of
/// read-write first: the VMA is private, not writable and was not accounted
/// (VM_ACCOUNT) in the dumped task, and a writable mapping would be (and
/// would then neither match nor merge like the original). The plan holds no
/// page runs for it: the engine writes its pages through /proc/pid/mem.
pub const VF_FINAL_PROT: u32 = 1;

/// [`Vma::flags`]: with a [`VmaKind::AnonPrivate`] VMA moved in from the
/// engine's copy at [`Vma::shm_addr`], that copy holds all its pages: the
/// plan has no page runs for it.
pub const VF_FILLED: u32 = 2;

/// [`Vma::map_flags`] of a [`VmaKind::AnonShared`] VMA: a private mapping
/// of the object (MAP_PRIVATE's own bit), whose page runs are its own
/// copies written over the object's data.
pub const MAP_PRIVATE_SHM: u32 = 0x02;

/// [`Vma::flags`]: a [`VmaKind::SysvShm`] VMA that starts an attachment.
pub const VF_SHM_ATTACH: u32 = 4;
/// [`Vma::flags`]: with [`VF_SHM_ATTACH`], attach read-only (SHM_RDONLY).
pub const VF_SHM_RDONLY: u32 = 8;
/// [`Vma::flags`]: with [`VF_SHM_ATTACH`], attach executable (SHM_EXEC).
pub const VF_SHM_EXEC: u32 = 16;

/// [`Vma::flags`]: a file VMA whose open file description holds a flock
/// lock (and no descriptor does): the restorer takes it (LOCK_SH, or
/// LOCK_EX with [`VF_FLOCK_EX`]) on the file it opens for the mapping.
pub const VF_FLOCK: u32 = 32;
/// [`Vma::flags`]: with [`VF_FLOCK`], an exclusive lock.
pub const VF_FLOCK_EX: u32 = 64;

/// Most ranges of [`Plan::keep`].
pub const MAX_KEEP: usize = 256;

/// [`Vma::advice`]: MADV_DONTFORK.
pub const ADV_DONTFORK: u32 = 1;
/// [`Vma::advice`]: MADV_WIPEONFORK.
pub const ADV_WIPEONFORK: u32 = 2;
/// [`Vma::advice`]: MADV_HUGEPAGE.
pub const ADV_HUGEPAGE: u32 = 4;
/// [`Vma::advice`]: MADV_NOHUGEPAGE.
pub const ADV_NOHUGEPAGE: u32 = 8;
/// [`Vma::advice`]: MADV_DONTDUMP.
pub const ADV_DONTDUMP: u32 = 16;
/// [`Vma::advice`]: MADV_MERGEABLE (KSM).
pub const ADV_MERGEABLE: u32 = 32;
/// [`Vma::advice`]: mlock the VMA once the task's rlimits are set.
pub const ADV_LOCKED: u32 = 64;
/// [`Vma::advice`]: with [`ADV_LOCKED`], lock with MLOCK_ONFAULT.
pub const ADV_LOCKONFAULT: u32 = 128;
/// [`Vma::advice`]: MADV_SEQUENTIAL.
pub const ADV_SEQUENTIAL: u32 = 256;
/// [`Vma::advice`]: MADV_RANDOM.
pub const ADV_RANDOM: u32 = 512;

/// A run of pages to read from the pages image straight into place.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageRun {
    /// Target address, page aligned.
    pub vaddr: u64,
    /// Bytes (multiple of the page size).
    pub len: u64,
    /// Offset of the data in the pages image's stripe `stripe`.
    pub file_off: u64,
    /// Which of [`Plan::pages_fds`] holds it.
    pub stripe: u32,
    pub _pad: u32,
}

/// One descriptor to reopen.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileEntry {
    /// The descriptor number.
    pub fd: i32,
    /// The inherited descriptor (above every number the task uses) that
    /// holds the open file description: dup3()ed onto `fd`.
    pub src: i32,
    /// FD_CLOEXEC for this descriptor.
    pub cloexec: u32,
}

/// One vDSO-like area to move from where this kernel put it to where the
/// dumped task had it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsoMove {
    /// Current start in the restored task.
    pub from: u64,
    /// Target start.
    pub to: u64,
    /// Size in bytes.
    pub len: u64,
}

/// Kernel `struct sigaction` for rt_sigaction on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// Handler (0 = SIG_DFL, 1 = SIG_IGN).
    pub handler: u64,
    /// sa_flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// sa_mask.
    pub mask: u64,
}

/// Kernel `struct itimerval`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ITimer {
    /// it_interval sec.
    pub interval_sec: i64,
    /// it_interval usec.
    pub interval_usec: i64,
    /// it_value sec.
    pub value_sec: i64,
    /// it_value usec.
    pub value_usec: i64,
}

/// One POSIX timer to recreate with its original id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PosixTimer {
    /// Timer id the task knows.
    pub id: i32,
    /// Clock id.
    pub clock: i32,
    /// sigev_notify (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID).
    pub notify: i32,
    /// sigev_signo.
    pub signo: i32,
    /// sigev_value.
    pub value: u64,
    /// Thread for SIGEV_THREAD_ID.
    pub notify_tid: i32,
    /// Overrun count at dump (informational).
    pub overrun: i32,
    /// Remaining time: sec, nsec.
    pub value_sec: i64,
    /// Remaining nsec.
    pub value_nsec: i64,
    /// Interval sec.
    pub interval_sec: i64,
    /// Interval nsec.
    pub interval_nsec: i64,
}

/// Kernel `struct rlimit64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rlimit {
    /// Soft limit.
    pub cur: u64,
    /// Hard limit.
    pub max: u64,
}

/// Kernel `struct prctl_mm_map` (PR_SET_MM_MAP), auxv and exe_fd filled by the blob.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: u64,
    pub auxv_size: u32,
    pub exe_fd: u32,
}

/// One native AIO context to create again (io_setup(2)), in the order of
/// the context table's slots: the kernel gives a new context the first free
/// slot, so creating them in slot order, with placeholders for the slots
/// that were free, gives each its dumped `id`.
///
/// The blob makes the context, brings the kernel's tail to the dumped one
/// (completions of writes to /dev/null, which complete at once), copies the
/// dumped events from the ring's pages (read into an ordinary mapping at
/// [`AioRing::addr`]), sets the head and moves the new ring there with
/// mremap, which the kernel follows (the context id is the ring's address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AioRing {
    /// The dumped ring's address (the program's context id), holding the
    /// dumped ring's pages; 0 for a placeholder, destroyed once every
    /// context exists.
    pub addr: u64,
    /// Bytes of the ring mapping.
    pub len: u64,
    /// nr_events for io_setup.
    pub nr_req: u32,
    /// Event slots the new ring must have (`struct aio_ring`'s nr).
    pub nr: u32,
    /// The slot (`struct aio_ring`'s id) the new context must get.
    pub id: u32,
    /// Head to set.
    pub head: u32,
    /// Tail the kernel must reach.
    pub tail: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// Written by the blob: the context io_setup made.
    pub ctx: u64,
}

/// [`Failure::ret`] of the AIO step when the kernel made a ring that differs
/// from the dumped one (its size or slot): -ERANGE.
pub const AIO_MISMATCH: i64 = -34;

/// Restorer steps, reported in [`Failure::step`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Validate = 1,
    Signals = 2,
    Session = 3,
    Unmap = 4,
    Vdso = 5,
    Personality = 6,
    MapVma = 7,
    ReadPages = 8,
    Protect = 9,
    Files = 10,
    Cwd = 11,
    SigActions = 12,
    ITimers = 13,
    PosixTimers = 14,
    Rlimits = 15,
    Prctl = 16,
    MmMap = 17,
    AltStack = 18,
    Rseq = 19,
    PendingSignals = 20,
    Creds = 21,
    Threads = 23,
    LoginUid = 24,
    Membarrier = 25,
    Guards = 26,
    Mlock = 27,
    MmFlags = 28,
    Aio = 29,
    RobustList = 30,
    Mdwe = 31,
    Seccomp = 32,
    MemPolicy = 33,
    LazyPages = 34,
    Finish = 22,
}

impl Step {
    /// Human name of a raw step number.
    pub fn name(raw: u32) -> &'static str {
        match raw {
            1 => "validate the plan",
            2 => "block signals",
            3 => "session and process group",
            4 => "unmap the engine's address space",
            5 => "move the vDSO areas",
            6 => "personality",
            7 => "map a VMA",
            8 => "read pages into place",
            9 => "mprotect/madvise a VMA",
            10 => "reopen files",
            11 => "chdir/chroot",
            12 => "sigactions",
            13 => "itimers",
            14 => "POSIX timers",
            15 => "rlimits",
            16 => "prctl state",
            17 => "PR_SET_MM_MAP",
            18 => "sigaltstack",
            19 => "rseq",
            30 => "set_robust_list",
            31 => "PR_SET_MDWE (memory-deny-write-execute)",
            32 => "install seccomp filters",
            33 => "NUMA memory policies (mbind, set_mempolicy)",
            34 => "lazy pages (userfaultfd, registration, hand-over to the server)",
            20 => "queue pending signals",
            21 => "credentials",
            23 => "create threads",
            24 => "set loginuid (/proc/self/loginuid)",
            25 => "membarrier registrations",
            26 => "install guard regions (MADV_GUARD_INSTALL)",
            27 => "mlock (within the task's RLIMIT_MEMLOCK)",
            28 => "address-space settings (mlockall, THP, KSM)",
            29 => "AIO contexts (io_setup, ring contents, mremap into place)",
            22 => "finish",
            _ => "unknown step",
        }
    }
}

/// Bytes of stack each created thread gets inside the region (it only
/// runs the trap that hands it to the engine).
pub const THREAD_STACK: u64 = 16 * 1024;

/// One thread the restorer creates (besides the one it runs on). The new
/// thread sets its own credentials (they are per thread) before its trap
/// and reports here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadEntry {
    /// The thread id to create it with (clone3 set_tid).
    pub tid: i32,
    /// Which credentials step failed (see the blob), 0 for none.
    pub failed_step: u32,
    /// Lowest address of its stack in the region ([`THREAD_STACK`] bytes).
    pub stack: u64,
    /// 0, or the negative errno of the failed step.
    pub ret: i64,
    /// The thread's credentials.
    pub creds: Creds,
    /// Its NUMA memory policy (mode 0: the default), set by itself first.
    pub mempolicy: MemPolicy,
}

/// Words of a NUMA node mask in a [`MemPolicy`] (1024 nodes).
pub const NODEMASK_WORDS: usize = 16;

/// [`ThreadEntry::failed_step`] when a created thread's set_mempolicy fails.
pub const THREAD_MEMPOLICY_STEP: u32 = 100;

/// One NUMA memory policy: for `[start, start + len)` (mbind), or with
/// `len` 0 for the thread applying it (set_mempolicy).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemPolicy {
    pub start: u64,
    pub len: u64,
    /// Mode with its flags, as set_mempolicy(2) takes it.
    pub mode: i32,
    /// Reserved, zero.
    pub _pad: u32,
    pub nodes: [u64; NODEMASK_WORDS],
}

/// Progress and failure report, inside the plan.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// Always [`MAGIC`].
    pub magic: u32,
    /// A [`Step`] as u32.
    pub step: u32,
    /// Negative errno of the failing syscall.
    pub ret: i64,
    /// Step detail: the VMA start, fd number, signal, resource... or 0.
    pub detail: u64,
}

/// [`Plan::flags`]: call setsid() first.
pub const F_SETSID: u32 = 1;
/// [`Plan::flags`]: setpgid(0, pgid).
pub const F_SETPGID: u32 = 2;
/// [`Plan::flags`]: PR_SET_NO_NEW_PRIVS.
pub const F_NO_NEW_PRIVS: u32 = 4;
/// [`Plan::flags`]: PR_SET_CHILD_SUBREAPER.
pub const F_CHILD_SUBREAPER: u32 = 8;
/// [`Plan::flags`]: restore rseq.
pub const F_RSEQ: u32 = 16;
/// [`Plan::flags`]: PR_SET_MM_MAP.
pub const F_MM_MAP: u32 = 32;
/// [`Plan::flags`]: set credentials.
pub const F_CREDS: u32 = 64;
/// [`Plan::flags`]: the task shares its parent's descriptor table (forked
/// with CLONE_FILES): another task of the group reopens the files, this one
/// leaves the table alone (no close, no dup3).
pub const F_SHARED_FILES: u32 = 128;
/// [`Plan::flags`]: the task shares its parent's fs information (forked
/// with CLONE_FS): no chdir, chroot or umask of its own.
pub const F_SHARED_FS: u32 = 256;
/// [`Plan::flags`]: keep the helper descriptors at the end: the table is
/// shared and the engine closes them once every task of the group is done.
pub const F_KEEP_HELPERS: u32 = 512;

/// [`Plan::mm_flags`]: mlockall(MCL_FUTURE).
pub const MM_MCL_FUTURE: u32 = 1;
/// [`Plan::mm_flags`]: with [`MM_MCL_FUTURE`], MCL_ONFAULT.
pub const MM_MCL_ONFAULT: u32 = 2;
/// [`Plan::mm_flags`]: prctl(PR_SET_MEMORY_MERGE, 1).
pub const MM_MERGE_ANY: u32 = 4;

/// Credentials to set last.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: [u32; 3],
    pub gid: [u32; 3],
    pub ngroups: u32,
    pub groups: [u32; 32],
    /// File-system uid (setfsuid), after the other uids.
    pub fsuid: u32,
    /// Capability sets, two 32-bit words each: effective, permitted, inheritable.
    pub cap_eff: u64,
    pub cap_prm: u64,
    pub cap_inh: u64,
    /// Bounding set (capabilities outside it are dropped).
    pub cap_bnd: u64,
    /// Ambient set (raised last).
    pub cap_amb: u64,
    /// PR_SET_SECUREBITS value.
    pub securebits: u32,
    /// File-system gid (setfsgid), after the other gids.
    pub fsgid: u32,
}

/// The fixed part of the arena.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Must be [`MAGIC`].
    pub magic: u32,
    /// Must be [`VERSION`].
    pub version: u32,
    /// Bytes of the whole arena (fixed part + tables + strings).
    pub size: u64,
    /// The region holding blob, arena and stack: kept while everything else is unmapped.
    pub region_start: u64,
    /// End of that region.
    pub region_end: u64,
    /// Highest address the unmap step covers (TASK_SIZE).
    pub task_size: u64,
    /// F_* bits.
    pub flags: u32,
    /// Descriptors of the pages image's stripes (kept until the end; -1:
    /// none).
    pub pages_fds: [i32; MAX_STRIPES],
    /// Lowest helper descriptor; everything from here up is closed at the end.
    pub helper_fd_min: i32,
    /// 0, or the thread id of a short-lived thread that reads the runs of
    /// the odd stripes while the task reads the even ones (clone3 set_tid,
    /// a number the engine found free and outside the tree's). Left 0 by
    /// the restorer when it could not create it (it read them itself).
    pub pages_helper_tid: i32,
    /// Set while the helper runs; the kernel clears it (CLONE_CHILD_CLEARTID)
    /// and wakes the futex when the helper exits.
    pub pages_helper_running: u32,
    /// Lowest address of the helper's stack in the region ([`THREAD_STACK`] bytes).
    pub pages_helper_stack: u64,
    /// 0, or the helper's failed pread (negative errno).
    pub pages_helper_ret: i64,
    /// The address it failed at.
    pub pages_helper_detail: u64,
    /// 0, or a [`Step`] at which the restorer fails with ECANCELED as soon
    /// as it reaches it (fault injection: `CRTOOLS_FAULT=restore-blob-*`).
    pub fault_step: u32,
    /// rseq registration inherited from the engine (unregistered first).
    pub cur_rseq_ptr: u64,
    /// Its length.
    pub cur_rseq_len: u32,
    /// Its signature.
    pub cur_rseq_sig: u32,
    /// Process group for F_SETPGID.
    pub pgid: i32,
    /// personality(2) value.
    pub personality: u32,
    /// umask.
    pub umask: u32,
    /// PR_SET_DUMPABLE value.
    pub dumpable: u32,
    /// PR_SET_PDEATHSIG value.
    pub pdeathsig: u32,
    /// Number of vDSO moves used.
    pub nr_vdso: u32,
    /// vDSO areas to move.
    pub vdso: [VdsoMove; MAX_VDSO],
    /// Task name (PR_SET_NAME), NUL-padded.
    pub comm: [u8; 16],
    /// Working directory.
    pub cwd: Str,
    /// Root directory (chroot) or none.
    pub root: Str,
    /// Executable for PR_SET_MM_MAP's exe_fd, or none.
    pub exe: Str,
    /// PR_SET_MM_MAP fields (auxv offset relative to the plan in `auxv`).
    pub mm: MmMap,
    /// auxv words: Table of u64.
    pub auxv: Table,
    /// Bit n-1 set: restore the action of signal n.
    pub sigactions_valid: u64,
    /// Signal actions.
    pub sigactions: [SigAction; NSIG],
    /// ITIMER_REAL, VIRTUAL, PROF.
    pub itimers: [ITimer; 3],
    /// Bit n set: restore rlimit n.
    pub rlimits_valid: u32,
    /// Reserved, zero.
    pub _pad1: u32,
    /// Resource limits.
    pub rlimits: [Rlimit; NLIMITS],
    /// sigaltstack: sp, flags, size.
    pub altstack_sp: u64,
    /// ss_flags.
    pub altstack_flags: u32,
    /// Reserved, zero.
    pub _pad2: u32,
    /// ss_size.
    pub altstack_size: u64,
    /// set_tid_address value.
    pub clear_child_tid: u64,
    /// rseq area.
    pub rseq_ptr: u64,
    /// rseq area length.
    pub rseq_len: u32,
    /// rseq signature.
    pub rseq_sig: u32,
    /// Robust futex list head (0: none registered).
    pub robust_head: u64,
    /// Its registered length.
    pub robust_len: u64,
    /// Credentials (F_CREDS).
    pub creds: Creds,
    /// The task's pid and tid, for queueing signals.
    pub pid: i32,
    /// -1, or a pipe the tasks sharing this one's descriptor table wait on
    /// before they start: [`Plan::share_go_count`] bytes are written to it
    /// once the files are in place.
    pub share_go_fd: i32,
    /// Vma table.
    pub vmas: Table,
    /// PageRun table.
    pub runs: Table,
    /// FileEntry table.
    pub files: Table,
    /// PosixTimer table.
    pub timers: Table,
    /// Private pending signals: 128-byte siginfo each.
    pub sigs_private: Table,
    /// Shared pending signals: 128-byte siginfo each.
    pub sigs_shared: Table,
    /// ThreadEntry table: the other threads, created with their tids.
    pub threads: Table,
    /// Address ranges `[start, end)` (pairs of u64) the unmap step keeps
    /// besides the region and the vDSO areas: inherited objects.
    pub keep: Table,
    /// MEMBARRIER_CMD_REGISTER_* commands to issue (their bits), 0 for none.
    pub membarrier: u32,
    /// Bytes to write to [`Plan::share_go_fd`] (one per waiting task).
    pub share_go_count: u32,
    /// loginuid to write to /proc/self/loginuid (decimal text), or none.
    pub loginuid: Str,
    /// Guard regions to install: `[start, end)` pairs of u64.
    pub guards: Table,
    /// Ranges of VMAs moved in from a copy (see [`Vma::shm_addr`]) that this
    /// task does not share: dropped (MADV_DONTNEED) before its pages are
    /// read: `[start, end)` pairs of u64.
    pub zap: Table,
    /// MM_* bits.
    pub mm_flags: u32,
    /// What PR_GET_THP_DISABLE reported at dump (0: nothing to set); the
    /// blob sets it and checks that PR_GET_THP_DISABLE says it again.
    pub thp_disable: u32,
    /// PR_SET_MDWE flags (0: none), set last: no mapping may become
    /// writable and executable after it.
    pub mdwe: u32,
    /// An xsave feature to ask ARCH_REQ_XCOMP_PERM for (18, AMX tile data)
    /// before any thread is made, or 0.
    pub xcomp_req: u32,
    /// AioRing table: the native AIO contexts, placeholders included.
    pub aio: Table,
    /// Seccomp filters to install, oldest first, as u64 words: per filter a
    /// header `flags << 32 | instruction count`, then its instructions
    /// (`struct sock_filter`, one word each). Installed with TSYNC, for
    /// every thread.
    pub seccomp: Table,
    /// MemPolicy table: NUMA memory policies, applied before the pages are
    /// read (so they land as the policy places them).
    pub mempolicies: Table,
    /// Lazy pages (`restore --lazy-pages`): `[start, end)` pairs of u64,
    /// whole private anonymous VMAs whose pages the lazy-pages server
    /// copies in (on first touch or in the background) instead of the
    /// restorer. The restorer registers them (missing mode) with a new
    /// userfaultfd once its own runs are read, and sends that descriptor
    /// with its pid over [`Plan::lazy_sock`].
    pub lazy: Table,
    /// The socket to the lazy-pages server (an inherited helper
    /// descriptor), or -1.
    pub lazy_sock: i32,
    /// Reserved, zero.
    pub _pad3: u32,
    /// Progress and failure details, written by the blob.
    pub failure: Failure,
}

const _: () = {
    assert!(size_of::<Table>() == 16);
    assert!(size_of::<Vma>() == 80);
    assert!(size_of::<PageRun>() == 32);
    assert!(size_of::<FileEntry>() == 12);
    assert!(size_of::<SigAction>() == 32);
    assert!(size_of::<ITimer>() == 32);
    assert!(size_of::<PosixTimer>() == 64);
    assert!(size_of::<Rlimit>() == 16);
    assert!(size_of::<MmMap>() == 104);
    assert!(size_of::<Failure>() == 24);
    assert!(size_of::<AioRing>() == 48);
    assert!(offset_of!(AioRing, ctx) == 40);
    assert!(size_of::<ThreadEntry>() == 24 + size_of::<Creds>() + size_of::<MemPolicy>());
    assert!(size_of::<MemPolicy>() == 24 + 8 * NODEMASK_WORDS);
    assert!(offset_of!(Plan, magic) == 0);
    assert!(size_of::<Plan>().is_multiple_of(8));
};
