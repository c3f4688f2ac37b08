//! Process attributes and kernel probes: prlimit64(2) (getrlimit(2)),
//! kcmp(2), memfd_create(2), userfaultfd(2) with ioctl_userfaultfd(2)
//! UFFDIO_API, the PAGEMAP_SCAN ioctl of /proc/pid/pagemap (Linux 6.7,
//! Documentation/admin-guide/mm/pagemap.rst), prctl(2) split per operation,
//! personality(2), umask(2), getpid(2)/gettid(2)/getppid(2), getpgid(2),
//! getsid(2), setsid(2), setpgid(2), getresuid(2), getresgid(2),
//! setresuid(2), setresgid(2), getgroups(2), setgroups(2), capget(2)/capset(2),
//! uname(2), clock_gettime(2), nanosleep(2), sched_yield(2), getrandom(2),
//! exit_group(2).
//!
//! # Invariants
//! - One typed function per prctl/ioctl operation; kernel constant names
//!   are kept.
//! - Calls that cannot fail return plain values (getpid, umask, ...).
//! - Operations that rewrite this process's memory map (PR_SET_MM) are
//!   `unsafe fn`: they change what the kernel believes about addresses Rust
//!   code may rely on (brk, stack, auxv).
use super::{retry_eintr, Errno, Pid, Result, Sysno};
use linux_raw_sys::general as lg;
use linux_raw_sys::prctl as lpr;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn owned(r: usize) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

// ---------------------------------------------------------------- rlimits

pub const RLIMIT_CPU: u32 = lg::RLIMIT_CPU;
pub const RLIMIT_FSIZE: u32 = lg::RLIMIT_FSIZE;
pub const RLIMIT_DATA: u32 = lg::RLIMIT_DATA;
pub const RLIMIT_STACK: u32 = lg::RLIMIT_STACK;
pub const RLIMIT_CORE: u32 = lg::RLIMIT_CORE;
pub const RLIMIT_RSS: u32 = lg::RLIMIT_RSS;
pub const RLIMIT_NPROC: u32 = lg::RLIMIT_NPROC;
pub const RLIMIT_NOFILE: u32 = lg::RLIMIT_NOFILE;
pub const RLIMIT_MEMLOCK: u32 = lg::RLIMIT_MEMLOCK;
pub const RLIMIT_AS: u32 = lg::RLIMIT_AS;
pub const RLIMIT_LOCKS: u32 = lg::RLIMIT_LOCKS;
pub const RLIMIT_SIGPENDING: u32 = lg::RLIMIT_SIGPENDING;
pub const RLIMIT_MSGQUEUE: u32 = lg::RLIMIT_MSGQUEUE;
pub const RLIMIT_NICE: u32 = lg::RLIMIT_NICE;
pub const RLIMIT_RTPRIO: u32 = lg::RLIMIT_RTPRIO;
pub const RLIMIT_RTTIME: u32 = lg::RLIMIT_RTTIME;
/// Number of resources (RLIM_NLIMITS).
pub const RLIM_NLIMITS: u32 = 16;
/// "No limit" (the 64-bit RLIM64_INFINITY).
pub const RLIM_INFINITY: u64 = !0;

/// Kernel `struct rlimit64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rlimit {
    /// Soft limit.
    pub cur: u64,
    /// Hard limit.
    pub max: u64,
}
const _: () = assert!(core::mem::size_of::<Rlimit>() == core::mem::size_of::<lg::rlimit64>());

/// prlimit64(pid, resource, new, &old): returns the old limit; `Pid(0)` is
/// the calling process. Other processes need CAP_SYS_RESOURCE or same creds.
pub fn prlimit64(pid: Pid, resource: u32, new: Option<&Rlimit>) -> Result<Rlimit> {
    let mut old = Rlimit::default();
    let newp = new.map_or(0, |n| n as *const Rlimit as usize);
    // SAFETY: the kernel reads one rlimit64 from `new` (if given) and writes one to `old`.
    unsafe {
        syscalls::syscall4(Sysno::prlimit64, pid.0 as usize, resource as usize, newp, &mut old as *mut Rlimit as usize)
    }?;
    Ok(old)
}

/// The limit of `resource` for `pid`.
pub fn get_rlimit(pid: Pid, resource: u32) -> Result<Rlimit> {
    prlimit64(pid, resource, None)
}

/// Sets the limit of `resource` for `pid`.
pub fn set_rlimit(pid: Pid, resource: u32, lim: &Rlimit) -> Result<()> {
    prlimit64(pid, resource, Some(lim)).map(drop)
}

// ---------------------------------------------------------------- kcmp

/// What [`kcmp`] compares (`KCMP_*`, linux/kcmp.h; not in linux-raw-sys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum KcmpType {
    /// KCMP_FILE: open file descriptions behind fd idx1 of pid1 and idx2 of pid2.
    File = 0,
    /// KCMP_VM: address spaces.
    Vm = 1,
    /// KCMP_FILES: descriptor tables.
    Files = 2,
    /// KCMP_FS: fs info (root, cwd, umask).
    Fs = 3,
    /// KCMP_SIGHAND: signal handler tables.
    Sighand = 4,
    /// KCMP_IO: I/O contexts.
    Io = 5,
    /// KCMP_SYSVSEM: SysV semaphore undo lists.
    Sysvsem = 6,
    /// KCMP_EPOLL_TFD: a file of pid1 against a target registered in an epoll of pid2.
    EpollTfd = 7,
}

/// kcmp(2)'s answer: the kernel orders objects by (scrambled) pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KcmpOrder {
    /// 0: the same object.
    Equal,
    /// 1: the first is "less".
    Less,
    /// 2: the first is "greater".
    Greater,
    /// 3: different, and the kernel will not say how they order.
    Unordered,
}

/// Kernel `struct kcmp_epoll_slot`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KcmpEpollSlot {
    /// The epoll descriptor (in pid2).
    pub efd: u32,
    /// The target descriptor number as registered.
    pub tfd: u32,
    /// Which of several registrations of `tfd` (0 for the first).
    pub toff: u32,
}
const _: () = assert!(core::mem::size_of::<KcmpEpollSlot>() == 12);

fn kcmp_raw(pid1: Pid, pid2: Pid, ty: KcmpType, idx1: usize, idx2: usize) -> Result<KcmpOrder> {
    // SAFETY: for KCMP_EPOLL_TFD idx2 points at a KcmpEpollSlot the kernel
    // only reads (see kcmp_epoll_tfd); for the others both are plain numbers.
    let r = unsafe { syscalls::syscall5(Sysno::kcmp, pid1.0 as usize, pid2.0 as usize, ty as usize, idx1, idx2) }?;
    Ok(match r {
        0 => KcmpOrder::Equal,
        1 => KcmpOrder::Less,
        2 => KcmpOrder::Greater,
        _ => KcmpOrder::Unordered,
    })
}

/// kcmp(pid1, pid2, type, 0, 0) for the per-task objects (not File/EpollTfd).
pub fn kcmp(pid1: Pid, pid2: Pid, ty: KcmpType) -> Result<KcmpOrder> {
    if matches!(ty, KcmpType::File | KcmpType::EpollTfd) {
        return Err(Errno::EINVAL);
    }
    kcmp_raw(pid1, pid2, ty, 0, 0)
}

/// kcmp(pid1, pid2, KCMP_FILE, fd1, fd2).
pub fn kcmp_file(pid1: Pid, fd1: RawFd, pid2: Pid, fd2: RawFd) -> Result<KcmpOrder> {
    kcmp_raw(pid1, pid2, KcmpType::File, fd1 as usize, fd2 as usize)
}

/// kcmp(pid1, pid2, KCMP_EPOLL_TFD, fd1, &slot): is fd1 of pid1 the file
/// registered as `slot` in an epoll of pid2?
pub fn kcmp_epoll_tfd(pid1: Pid, fd1: RawFd, pid2: Pid, slot: &KcmpEpollSlot) -> Result<KcmpOrder> {
    kcmp_raw(pid1, pid2, KcmpType::EpollTfd, fd1 as usize, slot as *const KcmpEpollSlot as usize)
}

// ---------------------------------------------------------------- memfd

bitflags::bitflags! {
    /// memfd_create(2) flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MemfdFlags: u32 {
        const MFD_CLOEXEC = lg::MFD_CLOEXEC;
        const MFD_ALLOW_SEALING = lg::MFD_ALLOW_SEALING;
        const MFD_HUGETLB = lg::MFD_HUGETLB;
        const MFD_NOEXEC_SEAL = lg::MFD_NOEXEC_SEAL;
        const MFD_EXEC = lg::MFD_EXEC;
        // MFD_HUGE_* size encodings live in bits 26..32.
        const _ = !0;
    }
}

/// memfd_create(name, flags). `name` (at most 249 bytes, shown as
/// "memfd:name" in /proc) must not contain NUL.
pub fn memfd_create(name: &str, flags: MemfdFlags) -> Result<OwnedFd> {
    let n = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the kernel reads the NUL-terminated name.
    unsafe { syscalls::syscall2(Sysno::memfd_create, n.as_ptr() as usize, flags.bits() as usize) }.map(owned)
}

// ---------------------------------------------------------------- userfaultfd

bitflags::bitflags! {
    /// userfaultfd(2) flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct UffdFlags: u32 {
        /// Only user-mode faults (no CAP_SYS_PTRACE / vm.unprivileged_userfaultfd needed).
        const UFFD_USER_MODE_ONLY = lg::UFFD_USER_MODE_ONLY;
        const O_CLOEXEC = lg::O_CLOEXEC;
        const O_NONBLOCK = lg::O_NONBLOCK;
    }
}

/// The UFFDIO_API version.
pub const UFFD_API: u64 = lg::UFFD_API as u64;
pub const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = lg::UFFD_FEATURE_PAGEFAULT_FLAG_WP as u64;
pub const UFFD_FEATURE_EVENT_FORK: u64 = lg::UFFD_FEATURE_EVENT_FORK as u64;
pub const UFFD_FEATURE_EVENT_REMAP: u64 = lg::UFFD_FEATURE_EVENT_REMAP as u64;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = lg::UFFD_FEATURE_EVENT_REMOVE as u64;
pub const UFFD_FEATURE_MISSING_HUGETLBFS: u64 = lg::UFFD_FEATURE_MISSING_HUGETLBFS as u64;
pub const UFFD_FEATURE_MISSING_SHMEM: u64 = lg::UFFD_FEATURE_MISSING_SHMEM as u64;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = lg::UFFD_FEATURE_EVENT_UNMAP as u64;
pub const UFFD_FEATURE_SIGBUS: u64 = lg::UFFD_FEATURE_SIGBUS as u64;
pub const UFFD_FEATURE_THREAD_ID: u64 = lg::UFFD_FEATURE_THREAD_ID as u64;
pub const UFFD_FEATURE_MINOR_HUGETLBFS: u64 = lg::UFFD_FEATURE_MINOR_HUGETLBFS as u64;
pub const UFFD_FEATURE_MINOR_SHMEM: u64 = lg::UFFD_FEATURE_MINOR_SHMEM as u64;
pub const UFFD_FEATURE_EXACT_ADDRESS: u64 = lg::UFFD_FEATURE_EXACT_ADDRESS as u64;
pub const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = lg::UFFD_FEATURE_WP_HUGETLBFS_SHMEM as u64;
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = lg::UFFD_FEATURE_WP_UNPOPULATED as u64;
pub const UFFD_FEATURE_POISON: u64 = lg::UFFD_FEATURE_POISON as u64;
pub const UFFD_FEATURE_WP_ASYNC: u64 = lg::UFFD_FEATURE_WP_ASYNC as u64;
pub const UFFD_FEATURE_MOVE: u64 = lg::UFFD_FEATURE_MOVE as u64;

/// The answer of UFFDIO_API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UffdApi {
    /// UFFD_FEATURE_* bits the kernel supports (or enabled, when requested).
    pub features: u64,
    /// Bit `_UFFDIO_x` set for each ioctl available on the descriptor.
    pub ioctls: u64,
}

/// userfaultfd(flags).
pub fn userfaultfd(flags: UffdFlags) -> Result<OwnedFd> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall1(Sysno::userfaultfd, flags.bits() as usize) }.map(owned)
}

/// ioctl(UFFDIO_API) with the wanted `features` (0: just probe). Must be
/// the first ioctl on a new userfaultfd; the kernel fails with EINVAL when
/// a requested feature is missing.
pub fn uffdio_api(fd: BorrowedFd<'_>, features: u64) -> Result<UffdApi> {
    let mut api = lg::uffdio_api { api: UFFD_API, features, ioctls: 0 };
    // SAFETY: the kernel reads and writes one struct uffdio_api.
    unsafe {
        syscalls::syscall3(
            Sysno::ioctl,
            fd.as_raw_fd() as usize,
            linux_raw_sys::ioctl::UFFDIO_API as usize,
            &mut api as *mut lg::uffdio_api as usize,
        )
    }?;
    Ok(UffdApi { features: api.features, ioctls: api.ioctls })
}

// ---------------------------------------------------------------- PAGEMAP_SCAN

pub use lg::{
    PAGE_IS_FILE, PAGE_IS_GUARD, PAGE_IS_HUGE, PAGE_IS_PFNZERO, PAGE_IS_PRESENT, PAGE_IS_SOFT_DIRTY, PAGE_IS_SWAPPED,
    PAGE_IS_WPALLOWED, PAGE_IS_WRITTEN, PM_SCAN_CHECK_WPASYNC, PM_SCAN_WP_MATCHING,
};

/// `_IOWR('f', 16, struct pm_scan_arg)`.
pub const PAGEMAP_SCAN: u32 = ioc_iowr(b'f' as u32, 16, core::mem::size_of::<lg::pm_scan_arg>() as u32);
const _: () = assert!(core::mem::size_of::<lg::pm_scan_arg>() == 96);

const fn ioc_iowr(ty: u32, nr: u32, size: u32) -> u32 {
    (3 << 30) | (size << 16) | (ty << 8) | nr
}

/// Kernel `struct page_region`: `[start, end)` whose pages share `categories`
/// (masked by the scan's return_mask).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}
const _: () = assert!(core::mem::size_of::<PageRegion>() == core::mem::size_of::<lg::page_region>());

/// What a PAGEMAP_SCAN asks (the pointer fields of `pm_scan_arg` are filled
/// from [`pagemap_scan`]'s output slice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmScan {
    /// PM_SCAN_WP_MATCHING, PM_SCAN_CHECK_WPASYNC.
    pub flags: u64,
    /// Range to walk, page aligned.
    pub start: u64,
    pub end: u64,
    /// Stop after this many matching pages (0: no limit).
    pub max_pages: u64,
    /// PAGE_IS_* bits whose sense is inverted before matching.
    pub category_inverted: u64,
    /// A page matches when all of these are set (after inversion) ...
    pub category_mask: u64,
    /// ... and at least one of these (0: no condition).
    pub category_anyof_mask: u64,
    /// PAGE_IS_* bits reported in each region.
    pub return_mask: u64,
}

/// ioctl(PAGEMAP_SCAN) on an open /proc/pid/pagemap. Fills `out` and returns
/// (regions filled, walk_end): when `walk_end < scan.end` the walk stopped
/// early (out full or max_pages reached) and can resume from walk_end.
pub fn pagemap_scan(pagemap: BorrowedFd<'_>, scan: &PmScan, out: &mut [PageRegion]) -> Result<(usize, u64)> {
    let mut arg = lg::pm_scan_arg {
        size: core::mem::size_of::<lg::pm_scan_arg>() as u64,
        flags: scan.flags,
        start: scan.start,
        end: scan.end,
        walk_end: 0,
        vec: out.as_mut_ptr() as u64,
        vec_len: out.len() as u64,
        max_pages: scan.max_pages,
        category_inverted: scan.category_inverted,
        category_mask: scan.category_mask,
        category_anyof_mask: scan.category_anyof_mask,
        return_mask: scan.return_mask,
    };
    // SAFETY: the kernel reads and updates `arg` and writes at most
    // vec_len page_region entries into `out`.
    let n = unsafe {
        syscalls::syscall3(
            Sysno::ioctl,
            pagemap.as_raw_fd() as usize,
            PAGEMAP_SCAN as usize,
            &mut arg as *mut lg::pm_scan_arg as usize,
        )
    }?;
    Ok((n, arg.walk_end))
}

// ---------------------------------------------------------------- prctl

/// # Safety
/// The arguments must be what `option` expects; pointer arguments must be
/// valid for what the kernel reads or writes there.
unsafe fn prctl(option: u32, a2: usize, a3: usize, a4: usize, a5: usize) -> Result<usize> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { syscalls::syscall5(Sysno::prctl, option as usize, a2, a3, a4, a5) }
}

/// Length of a task name buffer including the NUL (TASK_COMM_LEN).
pub const TASK_COMM_LEN: usize = 16;

/// PR_SET_NAME: the calling thread's comm (truncated to 15 bytes by the kernel).
pub fn set_name(name: &[u8]) -> Result<()> {
    if name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    let mut buf = [0u8; TASK_COMM_LEN];
    let n = name.len().min(TASK_COMM_LEN - 1);
    buf[..n].copy_from_slice(&name[..n]);
    // SAFETY: the kernel reads at most 16 bytes of the NUL-terminated buf.
    unsafe { prctl(lpr::PR_SET_NAME, buf.as_ptr() as usize, 0, 0, 0) }.map(drop)
}

/// PR_GET_NAME: the calling thread's comm, without the NUL.
pub fn get_name() -> Result<Vec<u8>> {
    let mut buf = [0u8; TASK_COMM_LEN];
    // SAFETY: the kernel writes at most 16 bytes into buf.
    unsafe { prctl(lpr::PR_GET_NAME, buf.as_mut_ptr() as usize, 0, 0, 0) }?;
    let n = buf.iter().position(|&b| b == 0).unwrap_or(TASK_COMM_LEN);
    Ok(buf[..n].to_vec())
}

/// PR_GET_DUMPABLE (0, 1 or 2 = SUID_DUMP_ROOT).
pub fn get_dumpable() -> Result<u32> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_GET_DUMPABLE, 0, 0, 0, 0) }.map(|v| v as u32)
}

/// PR_SET_DUMPABLE (0 or 1).
pub fn set_dumpable(v: u32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_SET_DUMPABLE, v as usize, 0, 0, 0) }.map(drop)
}

/// PR_GET_NO_NEW_PRIVS.
pub fn get_no_new_privs() -> Result<bool> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) }.map(|v| v != 0)
}

/// PR_SET_NO_NEW_PRIVS (irreversible, inherited by children).
pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.map(drop)
}

/// PR_GET_PDEATHSIG of the calling thread (0: none).
pub fn get_pdeathsig() -> Result<i32> {
    let mut sig = 0i32;
    // SAFETY: the kernel writes one int into sig.
    unsafe { prctl(lpr::PR_GET_PDEATHSIG, &mut sig as *mut i32 as usize, 0, 0, 0) }?;
    Ok(sig)
}

/// PR_SET_PDEATHSIG: signal to get when the parent *thread* dies (0: none).
pub fn set_pdeathsig(sig: i32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_SET_PDEATHSIG, sig as usize, 0, 0, 0) }.map(drop)
}

/// PR_GET_CHILD_SUBREAPER.
pub fn get_child_subreaper() -> Result<bool> {
    let mut v = 0i32;
    // SAFETY: the kernel writes one int into v.
    unsafe { prctl(lpr::PR_GET_CHILD_SUBREAPER, &mut v as *mut i32 as usize, 0, 0, 0) }?;
    Ok(v != 0)
}

/// PR_SET_CHILD_SUBREAPER: orphaned descendants are re-parented to us.
pub fn set_child_subreaper(on: bool) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_SET_CHILD_SUBREAPER, on as usize, 0, 0, 0) }.map(drop)
}

/// PR_CAPBSET_READ: is `cap` in the bounding set?
pub fn capbset_read(cap: u32) -> Result<bool> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_CAPBSET_READ, cap as usize, 0, 0, 0) }.map(|v| v != 0)
}

/// PR_GET_SECUREBITS.
pub fn get_securebits() -> Result<u32> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_GET_SECUREBITS, 0, 0, 0, 0) }.map(|v| v as u32)
}

/// PR_SET_SECUREBITS (CAP_SETPCAP).
pub fn set_securebits(bits: u32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_SET_SECUREBITS, bits as usize, 0, 0, 0) }.map(drop)
}

/// PR_CAP_AMBIENT / PR_CAP_AMBIENT_IS_SET.
pub fn cap_ambient_is_set(cap: u32) -> Result<bool> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_CAP_AMBIENT, lpr::PR_CAP_AMBIENT_IS_SET as usize, cap as usize, 0, 0) }.map(|v| v != 0)
}

/// PR_CAP_AMBIENT / PR_CAP_AMBIENT_RAISE.
pub fn cap_ambient_raise(cap: u32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_CAP_AMBIENT, lpr::PR_CAP_AMBIENT_RAISE as usize, cap as usize, 0, 0) }.map(drop)
}

/// PR_SET_PTRACER argument: any process may trace us (Yama).
pub const PR_SET_PTRACER_ANY: u64 = !0;

/// PR_SET_PTRACER (Yama only; EINVAL without it): `pid` 0 clears,
/// [`PR_SET_PTRACER_ANY`] allows everyone.
pub fn set_ptracer(pid: u64) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { prctl(lpr::PR_SET_PTRACER, pid as usize, 0, 0, 0) }.map(drop)
}

/// The single-value PR_SET_MM sub-options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PrSetMm {
    StartCode = lpr::PR_SET_MM_START_CODE,
    EndCode = lpr::PR_SET_MM_END_CODE,
    StartData = lpr::PR_SET_MM_START_DATA,
    EndData = lpr::PR_SET_MM_END_DATA,
    StartStack = lpr::PR_SET_MM_START_STACK,
    StartBrk = lpr::PR_SET_MM_START_BRK,
    Brk = lpr::PR_SET_MM_BRK,
    ArgStart = lpr::PR_SET_MM_ARG_START,
    ArgEnd = lpr::PR_SET_MM_ARG_END,
    EnvStart = lpr::PR_SET_MM_ENV_START,
    EnvEnd = lpr::PR_SET_MM_ENV_END,
}

pub use lpr::{
    PR_SET_MM_ARG_END, PR_SET_MM_ARG_START, PR_SET_MM_AUXV, PR_SET_MM_BRK, PR_SET_MM_END_CODE, PR_SET_MM_END_DATA,
    PR_SET_MM_ENV_END, PR_SET_MM_ENV_START, PR_SET_MM_EXE_FILE, PR_SET_MM_MAP, PR_SET_MM_MAP_SIZE, PR_SET_MM_START_BRK,
    PR_SET_MM_START_CODE, PR_SET_MM_START_DATA, PR_SET_MM_START_STACK,
};

/// prctl(PR_SET_MM, opt, value) (CAP_SYS_RESOURCE).
///
/// # Safety
/// Changes the kernel's view of this process's memory layout (brk, stack,
/// argument and environment areas); the caller vouches that nothing in
/// this process relies on the old values (normally only the restorer
/// does this, just before jumping into the restored task).
pub unsafe fn set_mm(opt: PrSetMm, value: u64) -> Result<()> {
    // SAFETY: no memory is passed; the layout contract is the caller's.
    unsafe { prctl(lpr::PR_SET_MM, opt as usize, value as usize, 0, 0) }.map(drop)
}

/// PR_GET_MDWE: this process's memory-deny-write-execute flags.
pub fn get_mdwe() -> Result<u32> {
    const PR_GET_MDWE: u32 = 66;
    // SAFETY: prctl with integer arguments only.
    unsafe { prctl(PR_GET_MDWE, 0, 0, 0, 0) }.map(|v| v as u32)
}

/// PR_SET_MM_MAP_SIZE: the size of `struct prctl_mm_map` the kernel expects.
pub fn prctl_mm_map_size() -> Result<u32> {
    let mut size = 0u32;
    // SAFETY: the kernel writes one unsigned int into size.
    unsafe { prctl(lpr::PR_SET_MM, lpr::PR_SET_MM_MAP_SIZE as usize, &mut size as *mut u32 as usize, 0, 0) }?;
    Ok(size)
}

// ---------------------------------------------------------------- personality, umask, ids

/// personality(2) flag: disable ASLR.
pub const ADDR_NO_RANDOMIZE: u32 = 0x0040000;
/// personality(2) flag: READ_IMPLIES_EXEC.
pub const READ_IMPLIES_EXEC: u32 = 0x0400000;
/// The Linux execution domain.
pub const PER_LINUX: u32 = 0;

/// The current personality.
pub fn get_personality() -> Result<u32> {
    // SAFETY: 0xffffffff only queries.
    unsafe { syscalls::syscall1(Sysno::personality, 0xffff_ffff) }.map(|v| v as u32)
}

/// Sets the personality; returns the previous one.
pub fn set_personality(p: u32) -> Result<u32> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall1(Sysno::personality, p as usize) }.map(|v| v as u32)
}

/// umask(mask): returns the previous mask (always succeeds). There is no
/// read-only query; /proc/pid/status has a Umask line.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: no memory arguments; umask cannot fail.
    unsafe { syscalls::syscall1(Sysno::umask, (mask & 0o777) as usize) }.map_or(0, |v| v as u32)
}

fn infallible(nr: Sysno) -> i32 {
    // SAFETY: argument-less id queries; they cannot fail.
    unsafe { syscalls::syscall0(nr) }.map_or(-1, |v| v as i32)
}

/// getpid().
pub fn getpid() -> Pid {
    Pid(infallible(Sysno::getpid))
}

/// gettid() of the calling thread.
pub fn gettid() -> Pid {
    Pid(infallible(Sysno::gettid))
}

/// getppid() (0 when the parent is outside our pid namespace).
pub fn getppid() -> Pid {
    Pid(infallible(Sysno::getppid))
}

/// getpgid(pid) (`Pid(0)`: the caller).
pub fn getpgid(pid: Pid) -> Result<Pid> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall1(Sysno::getpgid, pid.0 as usize) }.map(|v| Pid(v as i32))
}

/// getsid(pid) (`Pid(0)`: the caller).
pub fn getsid(pid: Pid) -> Result<Pid> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall1(Sysno::getsid, pid.0 as usize) }.map(|v| Pid(v as i32))
}

/// setsid(): new session; returns its id.
pub fn setsid() -> Result<Pid> {
    // SAFETY: no arguments.
    unsafe { syscalls::syscall0(Sysno::setsid) }.map(|v| Pid(v as i32))
}

/// setpgid(pid, pgid) (0s mean the caller / pgid = pid).
pub fn setpgid(pid: Pid, pgid: Pid) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall2(Sysno::setpgid, pid.0 as usize, pgid.0 as usize) }.map(drop)
}

/// Real, effective and saved ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResIds {
    pub real: u32,
    pub effective: u32,
    pub saved: u32,
}

fn getres(nr: Sysno) -> Result<ResIds> {
    let (mut r, mut e, mut s) = (0u32, 0u32, 0u32);
    // SAFETY: the kernel writes one id into each of r, e, s.
    unsafe {
        syscalls::syscall3(nr, &mut r as *mut u32 as usize, &mut e as *mut u32 as usize, &mut s as *mut u32 as usize)
    }?;
    Ok(ResIds { real: r, effective: e, saved: s })
}

/// getresuid().
pub fn getresuid() -> Result<ResIds> {
    getres(Sysno::getresuid)
}

/// getresgid().
pub fn getresgid() -> Result<ResIds> {
    getres(Sysno::getresgid)
}

fn id_arg(v: Option<u32>) -> usize {
    v.map_or(u32::MAX as usize, |v| v as usize)
}

/// setresuid(r, e, s) for the calling *thread* (raw syscall: no glibc
/// broadcast to other threads); `None` keeps a value.
pub fn setresuid(r: Option<u32>, e: Option<u32>, s: Option<u32>) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall3(Sysno::setresuid, id_arg(r), id_arg(e), id_arg(s)) }.map(drop)
}

/// setresgid(r, e, s) for the calling thread; `None` keeps a value.
pub fn setresgid(r: Option<u32>, e: Option<u32>, s: Option<u32>) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall3(Sysno::setresgid, id_arg(r), id_arg(e), id_arg(s)) }.map(drop)
}

/// setfsuid(uid) for the calling thread. The kernel answers with the
/// previous fsuid whether or not it changed it: read it back to know.
pub fn setfsuid(uid: u32) -> u32 {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall1(Sysno::setfsuid, uid as usize) }.unwrap_or(usize::MAX) as u32
}

/// getgroups(): the supplementary groups.
pub fn getgroups() -> Result<Vec<u32>> {
    loop {
        // SAFETY: size 0 only counts.
        let n = unsafe { syscalls::syscall2(Sysno::getgroups, 0, 0) }?;
        let mut v = vec![0u32; n];
        // SAFETY: the kernel writes at most n ids into v.
        match unsafe { syscalls::syscall2(Sysno::getgroups, n, v.as_mut_ptr() as usize) } {
            Ok(m) => {
                v.truncate(m);
                return Ok(v);
            }
            // The list grew between the two calls.
            Err(Errno::EINVAL) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// setgroups(groups) for the calling thread (CAP_SETGID).
pub fn setgroups(groups: &[u32]) -> Result<()> {
    // SAFETY: the kernel reads groups.len() ids.
    unsafe { syscalls::syscall2(Sysno::setgroups, groups.len(), groups.as_ptr() as usize) }.map(drop)
}

// ---------------------------------------------------------------- capabilities

/// The capability sets of a thread (bit n = capability n), v3 (64 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// _LINUX_CAPABILITY_VERSION_3.
pub const LINUX_CAPABILITY_VERSION_3: u32 = lg::_LINUX_CAPABILITY_VERSION_3;
pub use lg::{
    CAP_CHECKPOINT_RESTORE, CAP_NET_ADMIN, CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_RESOURCE,
};

/// capget for thread `tid` (`Pid(0)`: the caller).
pub fn capget(tid: Pid) -> Result<Capabilities> {
    let mut hdr = lg::__user_cap_header_struct { version: LINUX_CAPABILITY_VERSION_3, pid: tid.0 };
    let mut data = [lg::__user_cap_data_struct { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: the kernel reads the header and writes two data structs (v3).
    unsafe {
        syscalls::syscall2(
            Sysno::capget,
            &mut hdr as *mut lg::__user_cap_header_struct as usize,
            data.as_mut_ptr() as usize,
        )
    }?;
    let join = |lo: u32, hi: u32| (lo as u64) | ((hi as u64) << 32);
    Ok(Capabilities {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// capset for the calling thread.
pub fn capset(caps: &Capabilities) -> Result<()> {
    let mut hdr = lg::__user_cap_header_struct { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (el, eh) = split(caps.effective);
    let (pl, ph) = split(caps.permitted);
    let (il, ih) = split(caps.inheritable);
    let data = [
        lg::__user_cap_data_struct { effective: el, permitted: pl, inheritable: il },
        lg::__user_cap_data_struct { effective: eh, permitted: ph, inheritable: ih },
    ];
    // SAFETY: the kernel reads the header and two data structs.
    unsafe {
        syscalls::syscall2(
            Sysno::capset,
            &mut hdr as *mut lg::__user_cap_header_struct as usize,
            data.as_ptr() as usize,
        )
    }
    .map(drop)
}

// ---------------------------------------------------------------- uname, time, random, exit

/// What uname(2) reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Utsname {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
    pub domainname: String,
}

impl Utsname {
    /// (major, minor) from the release string ("6.18.0-..." -> (6, 18)).
    pub fn kernel_version(&self) -> Option<(u32, u32)> {
        let mut it = self.release.split(|c: char| !c.is_ascii_digit());
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
}

/// The uname(2) struct as the kernel fills it.
fn raw_uname() -> Result<linux_raw_sys::system::new_utsname> {
    let mut u = core::mem::MaybeUninit::<linux_raw_sys::system::new_utsname>::zeroed();
    // SAFETY: the kernel writes one struct new_utsname.
    unsafe { syscalls::syscall1(Sysno::uname, u.as_mut_ptr() as usize) }?;
    // SAFETY: zero-initialised, then filled by the kernel; all fields are bytes.
    Ok(unsafe { u.assume_init() })
}

/// A uname(2) field's bytes, up to its NUL.
fn uts_bytes(f: &[core::ffi::c_char; 65]) -> Vec<u8> {
    f.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect()
}

/// uname().
pub fn uname() -> Result<Utsname> {
    let u = raw_uname()?;
    let s = |f: &[core::ffi::c_char; 65]| String::from_utf8_lossy(&uts_bytes(f)).into_owned();
    Ok(Utsname {
        sysname: s(&u.sysname),
        nodename: s(&u.nodename),
        release: s(&u.release),
        version: s(&u.version),
        machine: s(&u.machine),
        domainname: s(&u.domainname),
    })
}

/// The host and NIS domain names of the calling thread's UTS namespace,
/// as the bytes the kernel holds.
pub fn uts_names() -> Result<(Vec<u8>, Vec<u8>)> {
    let u = raw_uname()?;
    Ok((uts_bytes(&u.nodename), uts_bytes(&u.domainname)))
}

/// sethostname(2) in the calling thread's UTS namespace.
pub fn sethostname(name: &[u8]) -> Result<()> {
    // SAFETY: the kernel reads `name.len()` bytes of `name`.
    unsafe { syscalls::syscall2(Sysno::sethostname, name.as_ptr() as usize, name.len()) }.map(drop)
}

/// setdomainname(2) in the calling thread's UTS namespace.
pub fn setdomainname(name: &[u8]) -> Result<()> {
    // SAFETY: the kernel reads `name.len()` bytes of `name`.
    unsafe { syscalls::syscall2(Sysno::setdomainname, name.as_ptr() as usize, name.len()) }.map(drop)
}

/// A clock id for [`clock_gettime`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClockId(pub u32);

impl ClockId {
    pub const CLOCK_REALTIME: ClockId = ClockId(lg::CLOCK_REALTIME);
    pub const CLOCK_MONOTONIC: ClockId = ClockId(lg::CLOCK_MONOTONIC);
    pub const CLOCK_PROCESS_CPUTIME_ID: ClockId = ClockId(lg::CLOCK_PROCESS_CPUTIME_ID);
    pub const CLOCK_THREAD_CPUTIME_ID: ClockId = ClockId(lg::CLOCK_THREAD_CPUTIME_ID);
    pub const CLOCK_MONOTONIC_RAW: ClockId = ClockId(lg::CLOCK_MONOTONIC_RAW);
    pub const CLOCK_REALTIME_COARSE: ClockId = ClockId(lg::CLOCK_REALTIME_COARSE);
    pub const CLOCK_MONOTONIC_COARSE: ClockId = ClockId(lg::CLOCK_MONOTONIC_COARSE);
    pub const CLOCK_BOOTTIME: ClockId = ClockId(lg::CLOCK_BOOTTIME);
    pub const CLOCK_TAI: ClockId = ClockId(lg::CLOCK_TAI);
}

/// Kernel `struct __kernel_timespec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}
const _: () = assert!(core::mem::size_of::<Timespec>() == core::mem::size_of::<lg::__kernel_timespec>());

impl Timespec {
    /// As a Duration (negative values clamp to zero).
    pub fn as_duration(&self) -> std::time::Duration {
        if self.sec < 0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::new(self.sec as u64, self.nsec.clamp(0, 999_999_999) as u32)
    }
}

/// clock_gettime(clock) (a real syscall, not the vDSO).
pub fn clock_gettime(clock: ClockId) -> Result<Timespec> {
    let mut ts = Timespec::default();
    // SAFETY: the kernel writes one timespec.
    unsafe { syscalls::syscall2(Sysno::clock_gettime, clock.0 as usize, &mut ts as *mut Timespec as usize) }?;
    Ok(ts)
}

/// nanosleep for `d`, resuming after signal interruptions.
pub fn nanosleep(d: std::time::Duration) -> Result<()> {
    let mut req = Timespec { sec: d.as_secs().min(i64::MAX as u64) as i64, nsec: d.subsec_nanos() as i64 };
    loop {
        let mut rem = Timespec::default();
        // SAFETY: the kernel reads req and writes rem.
        match unsafe {
            syscalls::syscall2(Sysno::nanosleep, &req as *const Timespec as usize, &mut rem as *mut Timespec as usize)
        } {
            Err(Errno::EINTR) => req = rem,
            r => return r.map(drop),
        }
    }
}

/// sched_yield().
pub fn sched_yield() {
    // SAFETY: no arguments; cannot fail.
    let _ = unsafe { syscalls::syscall0(Sysno::sched_yield) };
}

bitflags::bitflags! {
    /// getrandom(2) flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GrndFlags: u32 {
        const GRND_NONBLOCK = lg::GRND_NONBLOCK;
        const GRND_RANDOM = lg::GRND_RANDOM;
        const GRND_INSECURE = lg::GRND_INSECURE;
    }
}

/// getrandom(buf, flags): returns the bytes filled (may be short for big buffers).
pub fn getrandom(buf: &mut [u8], flags: GrndFlags) -> Result<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    retry_eintr(|| unsafe {
        syscalls::syscall3(Sysno::getrandom, buf.as_mut_ptr() as usize, buf.len(), flags.bits() as usize)
    })
}

/// exit_group(code): ends every thread of the process at once, running no
/// Rust or libc cleanup (no atexit, no buffered-output flush). Meant for
/// forked children (see [`crate::sys::clone`]).
pub fn exit_group(code: i32) -> ! {
    // SAFETY: exit_group does not return and touches no memory.
    let _ = unsafe { syscalls::syscall1(Sysno::exit_group, code as usize) };
    // The kernel never returns from exit_group; spin rather than invoke
    // anything that is not async-signal-safe.
    #[allow(clippy::empty_loop)]
    loop {}
}

/// setpriority(PRIO_PROCESS, tid, nice): a thread's nice value (Linux keeps
/// it per thread).
pub fn set_thread_nice(tid: Pid, nice: i32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall3(Sysno::setpriority, 0, tid.0 as usize, nice as isize as usize) }.map(drop)
}

/// get_robust_list(tid): the head of a thread's robust futex list and
/// the length it registered (0, 0 when it registered none).
pub fn get_robust_list(tid: Pid) -> Result<(u64, u64)> {
    let (mut head, mut len) = (0usize, 0usize);
    // SAFETY: the kernel writes one pointer to `head` and one size_t to `len`.
    unsafe {
        syscalls::syscall3(
            Sysno::get_robust_list,
            tid.0 as usize,
            &mut head as *mut usize as usize,
            &mut len as *mut usize as usize,
        )
    }?;
    Ok((head as u64, len as u64))
}

const IOPRIO_WHO_PROCESS: usize = 1;

/// ioprio_get(IOPRIO_WHO_PROCESS, tid): a thread's I/O priority (0: none set).
pub fn ioprio_get(tid: Pid) -> Result<u32> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall2(Sysno::ioprio_get, IOPRIO_WHO_PROCESS, tid.0 as usize) }.map(|v| v as u32)
}

/// ioprio_set(IOPRIO_WHO_PROCESS, tid, prio).
pub fn ioprio_set(tid: Pid, prio: u32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall3(Sysno::ioprio_set, IOPRIO_WHO_PROCESS, tid.0 as usize, prio as usize) }.map(drop)
}

/// sched_getaffinity(tid): the CPUs a thread may run on, as a mask of
/// 64-bit words (CPU n is bit n % 64 of word n / 64).
pub fn sched_getaffinity(tid: Pid) -> Result<Vec<u64>> {
    // Room for 8192 CPUs; the kernel says how many bytes it wrote.
    let mut mask = vec![0u64; 128];
    // SAFETY: the kernel writes at most the buffer's size in bytes.
    let n = unsafe {
        syscalls::syscall3(Sysno::sched_getaffinity, tid.0 as usize, mask.len() * 8, mask.as_mut_ptr() as usize)
    }?;
    mask.truncate(n.div_ceil(8));
    while mask.last() == Some(&0) {
        mask.pop();
    }
    Ok(mask)
}

/// sched_setaffinity(tid, mask).
pub fn sched_setaffinity(tid: Pid, mask: &[u64]) -> Result<()> {
    // SAFETY: the kernel reads `mask.len() * 8` bytes from the slice.
    unsafe { syscalls::syscall3(Sysno::sched_setaffinity, tid.0 as usize, mask.len() * 8, mask.as_ptr() as usize) }
        .map(drop)
}

/// sched_getscheduler(tid): the policy, with SCHED_RESET_ON_FORK (which
/// /proc/PID/stat does not show) ORed in.
pub fn sched_getscheduler(tid: Pid) -> Result<u32> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall1(Sysno::sched_getscheduler, tid.0 as usize) }.map(|v| v as u32)
}

/// sched_setscheduler(tid, policy, {rt_priority}).
pub fn set_thread_scheduler(tid: Pid, policy: u32, rt_priority: u32) -> Result<()> {
    let param = rt_priority as i32;
    // SAFETY: the kernel reads one struct sched_param (an int) from `param`.
    unsafe {
        syscalls::syscall3(Sysno::sched_setscheduler, tid.0 as usize, policy as usize, &param as *const i32 as usize)
    }
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs;
    use crate::sys::mm::{Mapping, PAGE_SIZE};
    use crate::sys::socket;
    use core::mem::{offset_of, size_of};
    use std::os::fd::AsFd;

    fn me() -> Pid {
        Pid(std::process::id() as i32)
    }

    #[test]
    fn constants_and_layouts_match_libc() {
        assert_eq!(RLIMIT_NOFILE, libc::RLIMIT_NOFILE);
        assert_eq!(RLIMIT_STACK, libc::RLIMIT_STACK);
        assert_eq!(RLIMIT_AS, libc::RLIMIT_AS);
        assert_eq!(RLIMIT_RTTIME, libc::RLIMIT_RTTIME);
        assert_eq!(RLIM_NLIMITS, 16);
        assert_eq!(RLIM_INFINITY, libc::RLIM_INFINITY);
        assert_eq!(size_of::<Rlimit>(), size_of::<libc::rlimit64>());
        assert_eq!(offset_of!(Rlimit, max), offset_of!(libc::rlimit64, rlim_max));
        assert_eq!(MemfdFlags::MFD_CLOEXEC.bits(), libc::MFD_CLOEXEC);
        assert_eq!(MemfdFlags::MFD_ALLOW_SEALING.bits(), libc::MFD_ALLOW_SEALING);
        assert_eq!(MemfdFlags::MFD_NOEXEC_SEAL.bits(), libc::MFD_NOEXEC_SEAL);
        assert_eq!(MemfdFlags::MFD_EXEC.bits(), libc::MFD_EXEC);
        assert_eq!(UffdFlags::O_CLOEXEC.bits() as i32, libc::O_CLOEXEC);
        assert_eq!(lpr::PR_SET_NAME as i32, libc::PR_SET_NAME);
        assert_eq!(lpr::PR_SET_MM as i32, libc::PR_SET_MM);
        assert_eq!(PR_SET_MM_MAP as i32, libc::PR_SET_MM_MAP);
        assert_eq!(PR_SET_MM_MAP_SIZE as i32, libc::PR_SET_MM_MAP_SIZE);
        assert_eq!(PR_SET_MM_EXE_FILE as i32, libc::PR_SET_MM_EXE_FILE);
        assert_eq!(PrSetMm::Brk as i32, libc::PR_SET_MM_BRK);
        assert_eq!(PrSetMm::EnvEnd as i32, libc::PR_SET_MM_ENV_END);
        assert_eq!(lpr::PR_SET_PTRACER as i32, libc::PR_SET_PTRACER);
        assert_eq!(lpr::PR_SET_CHILD_SUBREAPER as i32, libc::PR_SET_CHILD_SUBREAPER);
        assert_eq!(lpr::PR_CAP_AMBIENT as i32, libc::PR_CAP_AMBIENT);
        assert_eq!(lpr::PR_CAP_AMBIENT_IS_SET as i32, libc::PR_CAP_AMBIENT_IS_SET);
        assert_eq!(lpr::PR_CAPBSET_READ as i32, libc::PR_CAPBSET_READ);
        assert_eq!(lpr::PR_GET_SECUREBITS as i32, libc::PR_GET_SECUREBITS);
        assert_eq!(lpr::PR_GET_NO_NEW_PRIVS as i32, libc::PR_GET_NO_NEW_PRIVS);
        assert_eq!(size_of::<lpr::prctl_mm_map>(), 104);
        assert_eq!(ADDR_NO_RANDOMIZE as i32, libc::ADDR_NO_RANDOMIZE);
        assert_eq!(READ_IMPLIES_EXEC as i32, libc::READ_IMPLIES_EXEC);
        // libc has no CAP_* numbers: check against linux/capability.h values.
        assert_eq!((CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_CHECKPOINT_RESTORE), (19, 21, 40));
        assert_eq!(LINUX_CAPABILITY_VERSION_3, 0x2008_0522);
        assert_eq!(ClockId::CLOCK_MONOTONIC.0 as i32, libc::CLOCK_MONOTONIC);
        assert_eq!(ClockId::CLOCK_BOOTTIME.0 as i32, libc::CLOCK_BOOTTIME);
        assert_eq!(size_of::<Timespec>(), size_of::<libc::timespec>());
        assert_eq!(GrndFlags::GRND_NONBLOCK.bits(), libc::GRND_NONBLOCK);
        assert_eq!(size_of::<linux_raw_sys::system::new_utsname>(), size_of::<libc::utsname>());
        assert_eq!(size_of::<KcmpEpollSlot>(), 12);
        // PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg): uapi fs.h value.
        assert_eq!(PAGEMAP_SCAN, 0xC060_6610);
        assert_eq!(size_of::<PageRegion>(), 24);
        // UFFDIO_API = _IOWR(0xAA, 0x3F, struct uffdio_api).
        assert_eq!(linux_raw_sys::ioctl::UFFDIO_API, ioc_iowr(0xAA, 0x3F, 24));
        assert_eq!(size_of::<lg::uffdio_api>(), 24);
    }

    #[test]
    fn prlimit_matches_getrlimit() {
        let ours = get_rlimit(Pid(0), RLIMIT_NOFILE).unwrap();
        // SAFETY: getrlimit writes one struct rlimit.
        let theirs = unsafe {
            let mut r: libc::rlimit = core::mem::zeroed();
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
            r
        };
        assert_eq!((ours.cur, ours.max), (theirs.rlim_cur, theirs.rlim_max));
        assert_eq!(get_rlimit(me(), RLIMIT_NOFILE).unwrap(), ours);
        // Setting the same value back is a harmless round trip.
        set_rlimit(Pid(0), RLIMIT_NOFILE, &ours).unwrap();
        assert_eq!(get_rlimit(Pid(0), 99), Err(Errno::EINVAL));
    }

    #[test]
    fn memfd_roundtrip_and_seals() {
        let fd = memfd_create("crtools-test", MemfdFlags::MFD_CLOEXEC | MemfdFlags::MFD_ALLOW_SEALING).unwrap();
        fs::write_all(fd.as_fd(), b"checkpoint").unwrap();
        let mut buf = [0u8; 5];
        assert_eq!(fs::pread(fd.as_fd(), &mut buf, 5).unwrap(), 5);
        assert_eq!(&buf, b"point");
        let link = fs::readlinkat(None, format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert!(link.to_string_lossy().starts_with("/memfd:crtools-test"), "{link:?}");
        fs::fcntl_add_seals(fd.as_fd(), fs::SealFlags::F_SEAL_GROW).unwrap();
        assert!(fs::fcntl_get_seals(fd.as_fd()).unwrap().contains(fs::SealFlags::F_SEAL_GROW));
        assert_eq!(fs::pwrite(fd.as_fd(), b"x", 100), Err(Errno::EPERM));
        match memfd_create("noexec", MemfdFlags::MFD_CLOEXEC | MemfdFlags::MFD_NOEXEC_SEAL) {
            Ok(f) => assert!(fs::fcntl_get_seals(f.as_fd()).unwrap().contains(fs::SealFlags::F_SEAL_EXEC)),
            Err(e) => eprintln!("MFD_NOEXEC_SEAL unsupported: {e}"),
        }
        assert_eq!(memfd_create("a\0b", MemfdFlags::empty()).map(drop), Err(Errno::EINVAL));
    }

    #[test]
    fn kcmp_on_passed_fd() {
        let (a, b) =
            socket::socketpair(socket::AF_UNIX, socket::SockType::SOCK_STREAM, socket::SockFlags::SOCK_CLOEXEC, 0)
                .unwrap();
        let f = std::fs::File::open("/proc/self/comm").unwrap();
        let g = std::fs::File::open("/proc/self/comm").unwrap();
        socket::send_fds(a.as_fd(), b"f", &[f.as_fd()]).unwrap();
        let mut buf = [0u8; 1];
        let (_, fds) = socket::recv_fds(b.as_fd(), &mut buf, 1).unwrap();
        assert_eq!(fds.len(), 1);
        match kcmp_file(me(), f.as_raw_fd(), me(), fds[0].as_raw_fd()) {
            Err(Errno::ENOSYS) => {
                eprintln!("kcmp not available (CONFIG_KCMP); skipped");
                return;
            }
            r => assert_eq!(r.unwrap(), KcmpOrder::Equal),
        }
        // A separate open() is a different file description.
        let other = kcmp_file(me(), f.as_raw_fd(), me(), g.as_raw_fd()).unwrap();
        assert!(matches!(other, KcmpOrder::Less | KcmpOrder::Greater | KcmpOrder::Unordered));
        assert_eq!(kcmp(me(), me(), KcmpType::Vm).unwrap(), KcmpOrder::Equal);
        assert_eq!(kcmp(me(), me(), KcmpType::Files).unwrap(), KcmpOrder::Equal);
        assert_eq!(kcmp(me(), me(), KcmpType::File), Err(Errno::EINVAL));
        assert_eq!(kcmp_file(me(), f.as_raw_fd(), me(), 100_000), Err(Errno::EBADF));
    }

    #[test]
    fn userfaultfd_api_probe() {
        let fd = match userfaultfd(UffdFlags::O_CLOEXEC | UffdFlags::O_NONBLOCK | UffdFlags::UFFD_USER_MODE_ONLY) {
            Ok(fd) => fd,
            Err(e @ (Errno::EPERM | Errno::ENOSYS | Errno::EINVAL)) => {
                eprintln!("userfaultfd unavailable here ({e}); probe skipped");
                return;
            }
            Err(e) => panic!("userfaultfd: {e}"),
        };
        let api = uffdio_api(fd.as_fd(), 0).unwrap();
        // UFFDIO_API's own bit is always reported.
        assert!(api.ioctls & (1 << lg::_UFFDIO_API) != 0, "{api:?}");
        eprintln!(
            "uffd features {:#x}: WP {} WP_ASYNC {}",
            api.features,
            api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP != 0,
            api.features & UFFD_FEATURE_WP_ASYNC != 0
        );
        // A second UFFDIO_API on the same descriptor is refused.
        assert_eq!(uffdio_api(fd.as_fd(), 0), Err(Errno::EINVAL));
    }

    #[test]
    fn pagemap_scan_finds_touched_pages() {
        let mut m = Mapping::anonymous(4 * PAGE_SIZE).unwrap();
        m.as_mut_slice()[0] = 1;
        m.as_mut_slice()[2 * PAGE_SIZE] = 1;
        let pm = fs::openat(None, "/proc/self/pagemap", fs::OpenFlags::O_RDONLY | fs::OpenFlags::O_CLOEXEC, 0).unwrap();
        let scan = PmScan {
            start: m.addr(),
            end: m.addr() + m.len() as u64,
            category_mask: PAGE_IS_PRESENT as u64,
            return_mask: PAGE_IS_PRESENT as u64,
            ..Default::default()
        };
        let mut out = [PageRegion::default(); 8];
        let (n, walk_end) = match pagemap_scan(pm.as_fd(), &scan, &mut out) {
            Err(e @ (Errno::ENOTTY | Errno::EINVAL)) => {
                eprintln!("PAGEMAP_SCAN unsupported ({e}); skipped");
                return;
            }
            r => r.unwrap(),
        };
        let a = m.addr();
        let p = PAGE_SIZE as u64;
        let pres = PAGE_IS_PRESENT as u64;
        assert_eq!(
            &out[..n],
            &[
                PageRegion { start: a, end: a + p, categories: pres },
                PageRegion { start: a + 2 * p, end: a + 3 * p, categories: pres }
            ]
        );
        assert_eq!(walk_end, a + 4 * p);
    }

    #[test]
    fn prctl_ops() {
        // Each test runs on its own thread: the name change stays on it.
        set_name(b"crtools-prctl-test-long").unwrap();
        assert_eq!(get_name().unwrap(), b"crtools-prctl-t");
        let d = get_dumpable().unwrap();
        set_dumpable(d.min(1)).unwrap();
        assert!(get_dumpable().unwrap() <= 2);
        let nnp = get_no_new_privs().unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        assert_eq!(nnp, field("NoNewPrivs:").unwrap() == "1");
        set_pdeathsig(crate::sys::signal::SIGUSR2).unwrap();
        assert_eq!(get_pdeathsig().unwrap(), crate::sys::signal::SIGUSR2);
        set_pdeathsig(0).unwrap();
        let sub = get_child_subreaper().unwrap();
        set_child_subreaper(sub).unwrap();
        let bnd = u64::from_str_radix(&field("CapBnd:").unwrap(), 16).unwrap();
        assert_eq!(capbset_read(CAP_SYS_ADMIN).unwrap(), bnd & (1 << CAP_SYS_ADMIN) != 0);
        let amb = u64::from_str_radix(&field("CapAmb:").unwrap(), 16).unwrap();
        assert_eq!(cap_ambient_is_set(CAP_SYS_PTRACE).unwrap(), amb & (1 << CAP_SYS_PTRACE) != 0);
        let _ = get_securebits().unwrap();
        match set_ptracer(0) {
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(e) => panic!("PR_SET_PTRACER: {e}"),
        }
        assert_eq!(prctl_mm_map_size().unwrap() as usize, size_of::<lpr::prctl_mm_map>());
        let eff = u64::from_str_radix(&field("CapEff:").unwrap(), 16).unwrap();
        let caps = capget(Pid(0)).unwrap();
        assert_eq!(caps.effective, eff);
        // capset to the current sets is always allowed.
        capset(&caps).unwrap();
    }

    #[test]
    fn ids_and_process_attributes() {
        assert_eq!(getpid(), me());
        // SAFETY: plain libc id queries.
        unsafe {
            assert_eq!(gettid().0, libc::gettid());
            assert_eq!(getppid().0, libc::getppid());
            assert_eq!(getpgid(Pid(0)).unwrap().0, libc::getpgid(0));
            assert_eq!(getsid(Pid(0)).unwrap().0, libc::getsid(0));
            let u = getresuid().unwrap();
            assert_eq!((u.real, u.effective), (libc::getuid(), libc::geteuid()));
            let g = getresgid().unwrap();
            assert_eq!((g.real, g.effective), (libc::getgid(), libc::getegid()));
            let n = libc::getgroups(0, core::ptr::null_mut());
            assert_eq!(getgroups().unwrap().len(), n as usize);
        }
        setresuid(None, None, None).unwrap();
        setresgid(None, None, None).unwrap();
        let p = get_personality().unwrap();
        assert_eq!(set_personality(p).unwrap(), p);
        // 0o022, the usual default, so that files other tests create meanwhile keep their modes.
        let old = umask(0o022);
        assert_eq!(umask(old), 0o022);
        let u = uname().unwrap();
        assert_eq!(u.sysname, "Linux");
        assert_eq!(u.machine, "x86_64");
        assert!(u.kernel_version().unwrap() >= (4, 0));
        let t0 = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap();
        nanosleep(std::time::Duration::from_millis(2)).unwrap();
        sched_yield();
        let t1 = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap();
        assert!(t1.as_duration() >= t0.as_duration() + std::time::Duration::from_millis(2));
        let mut r = [0u8; 32];
        assert_eq!(getrandom(&mut r, GrndFlags::empty()).unwrap(), 32);
        assert!(r.iter().any(|&b| b != 0));
    }

    #[test]
    fn exit_group_in_forked_child() {
        // SAFETY: the child only calls exit_group.
        match unsafe { crate::sys::clone::fork() }.unwrap() {
            crate::sys::clone::CloneResult::Child => exit_group(42),
            crate::sys::clone::CloneResult::Parent { child, .. } => {
                let st = crate::sys::wait::wait_pid(child).unwrap();
                assert_eq!(st, crate::sys::wait::WaitStatus::Exited(42));
            }
        }
    }
}
