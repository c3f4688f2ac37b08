//! Probes of single kernel interfaces of this process: kcmp, memfd,
//! userfaultfd, PAGEMAP_SCAN, PR_SET_MM_MAP_SIZE, pty ioctls.
use super::util::{errno_why, io_why};
use crate::sys::misc::{self, KcmpOrder, KcmpType, MemfdFlags, UffdFlags};
use crate::sys::mm::Mapping;
use crate::sys::Errno;
use std::os::fd::{AsFd, AsRawFd};

const PAGE: u64 = 4096;

/// KCMP_FILE says two dup'ed descriptors share one open file description
/// and two opens do not; KCMP_VM says we share our own address space.
pub fn probe_kcmp() -> Result<String, String> {
    let me = misc::getpid();
    let hints = &[
        (Errno::ENOSYS, "kernel without CONFIG_KCMP (or CONFIG_CHECKPOINT_RESTORE)"),
        (Errno::EPERM, "kcmp needs ptrace access to both tasks"),
    ];
    let a = std::fs::File::open("/proc/self/stat").map_err(|e| io_why("opening a file", &e))?;
    let dup = a.try_clone().map_err(|e| io_why("dup", &e))?;
    let other = std::fs::File::open("/proc/self/stat").map_err(|e| io_why("opening a file", &e))?;
    let same =
        misc::kcmp_file(me, a.as_raw_fd(), me, dup.as_raw_fd()).map_err(|e| errno_why("kcmp KCMP_FILE", e, hints))?;
    if same != KcmpOrder::Equal {
        return Err(format!("KCMP_FILE on two dup'ed descriptors says {same:?}, not Equal"));
    }
    let diff =
        misc::kcmp_file(me, a.as_raw_fd(), me, other.as_raw_fd()).map_err(|e| errno_why("kcmp KCMP_FILE", e, hints))?;
    if diff == KcmpOrder::Equal {
        return Err("KCMP_FILE says two separate opens are the same file description".to_string());
    }
    let vm = misc::kcmp(me, me, KcmpType::Vm).map_err(|e| errno_why("kcmp KCMP_VM", e, hints))?;
    if vm != KcmpOrder::Equal {
        return Err(format!("KCMP_VM of this process with itself says {vm:?}"));
    }
    Ok("KCMP_FILE: dup'ed fds equal, separate opens differ; KCMP_VM equal on self".to_string())
}

/// memfd_create with sealing; the file shows as "memfd:<name>".
pub fn probe_memfd() -> Result<String, String> {
    let fd = misc::memfd_create("crtools-check", MemfdFlags::MFD_CLOEXEC | MemfdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| errno_why("memfd_create", e, &[]))?;
    crate::sys::fs::write_all(fd.as_fd(), b"crtools").map_err(|e| errno_why("write to a memfd", e, &[]))?;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| io_why("readlink /proc/self/fd/<memfd>", &e))?;
    let link = link.to_string_lossy().into_owned();
    if !link.starts_with("/memfd:crtools-check") {
        return Err(format!("the memfd shows as {link:?}, not /memfd:crtools-check"));
    }
    crate::sys::fs::fcntl_add_seals(fd.as_fd(), crate::sys::fs::SealFlags::F_SEAL_GROW)
        .map_err(|e| errno_why("F_ADD_SEALS on a memfd", e, &[]))?;
    Ok(format!("memfd_create with sealing, shows as {link}"))
}

/// memfd_create with MFD_HUGETLB (memfds backed by huge pages).
pub fn probe_memfd_hugetlb() -> Result<String, String> {
    misc::memfd_create("crtools-check", MemfdFlags::MFD_CLOEXEC | MemfdFlags::MFD_HUGETLB)
        .map_err(|e| errno_why("memfd_create MFD_HUGETLB", e, &[(Errno::EINVAL, "kernel without CONFIG_HUGETLBFS")]))?;
    Ok("memfd_create MFD_HUGETLB".to_string())
}

/// The features that matter to C/R, by name, as the userfaultfd probe prints them.
const UFFD_FEATURES: &[(u64, &str)] = &[
    (misc::UFFD_FEATURE_PAGEFAULT_FLAG_WP, "WP"),
    (misc::UFFD_FEATURE_EVENT_FORK, "EVENT_FORK"),
    (misc::UFFD_FEATURE_EVENT_REMAP, "EVENT_REMAP"),
    (misc::UFFD_FEATURE_EVENT_REMOVE, "EVENT_REMOVE"),
    (misc::UFFD_FEATURE_EVENT_UNMAP, "EVENT_UNMAP"),
    (misc::UFFD_FEATURE_MISSING_HUGETLBFS, "MISSING_HUGETLBFS"),
    (misc::UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM"),
    (misc::UFFD_FEATURE_THREAD_ID, "THREAD_ID"),
    (misc::UFFD_FEATURE_WP_UNPOPULATED, "WP_UNPOPULATED"),
    (misc::UFFD_FEATURE_WP_ASYNC, "WP_ASYNC"),
    (misc::UFFD_FEATURE_MOVE, "MOVE"),
];

/// A userfaultfd with UFFDIO_API done; returns the API answer and whether
/// only user-mode faults could be had.
fn uffd_api(features: u64) -> Result<(misc::UffdApi, bool), String> {
    let flags = UffdFlags::O_CLOEXEC | UffdFlags::O_NONBLOCK;
    let hints = &[
        (Errno::ENOSYS, "kernel without CONFIG_USERFAULTFD"),
        (Errno::EPERM, "needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1"),
    ];
    let (fd, user_only) = match misc::userfaultfd(flags) {
        Ok(fd) => (fd, false),
        Err(Errno::EPERM) => (
            misc::userfaultfd(flags | UffdFlags::UFFD_USER_MODE_ONLY)
                .map_err(|e| errno_why("userfaultfd(UFFD_USER_MODE_ONLY)", e, hints))?,
            true,
        ),
        Err(e) => return Err(errno_why("userfaultfd", e, hints)),
    };
    let api = misc::uffdio_api(fd.as_fd(), features).map_err(|e| {
        errno_why("UFFDIO_API", e, &[(Errno::EINVAL, "the kernel lacks a requested feature or this API version")])
    })?;
    Ok((api, user_only))
}

/// userfaultfd + UFFDIO_API (lazy restore, page-server post-copy).
pub fn probe_userfaultfd() -> Result<String, String> {
    let (api, user_only) = uffd_api(0)?;
    let names: Vec<&str> = UFFD_FEATURES.iter().filter(|(b, _)| api.features & b != 0).map(|(_, n)| *n).collect();
    let mode = if user_only { " (user-mode faults only)" } else { "" };
    Ok(format!("UFFDIO_API ok{mode}, features {:#x} incl. {}", api.features, names.join(" ")))
}

/// Write-protect faults with async resolution (UFFD_FEATURE_WP_ASYNC): the
/// dirty tracking that replaces soft-dirty; both features are enabled on a
/// fresh descriptor to prove the kernel accepts them.
pub fn probe_uffd_wp() -> Result<String, String> {
    let want = misc::UFFD_FEATURE_PAGEFAULT_FLAG_WP | misc::UFFD_FEATURE_WP_ASYNC;
    let (probe, _) = uffd_api(0)?;
    let lacking: Vec<&str> =
        [(misc::UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP"), (misc::UFFD_FEATURE_WP_ASYNC, "WP_ASYNC")]
            .iter()
            .filter(|(b, _)| probe.features & b == 0)
            .map(|(_, n)| *n)
            .collect();
    if !lacking.is_empty() {
        return Err(format!("UFFDIO_API does not offer UFFD_FEATURE_{}", lacking.join(" or UFFD_FEATURE_")));
    }
    let (api, _) = uffd_api(want)?;
    if api.features & want != want {
        return Err(format!("enabling WP|WP_ASYNC gave features {:#x}", api.features));
    }
    Ok("UFFD_FEATURE_PAGEFAULT_FLAG_WP and UFFD_FEATURE_WP_ASYNC enabled".to_string())
}

/// PAGEMAP_SCAN on /proc/self/pagemap over four fresh pages: page 0 and 2
/// written, page 3 read (zero page), page 1 untouched.
pub fn probe_pagemap_scan() -> Result<String, String> {
    use misc::{PageRegion, PmScan, PAGE_IS_PFNZERO, PAGE_IS_PRESENT};
    let pm = std::fs::File::open("/proc/self/pagemap").map_err(|e| io_why("opening /proc/self/pagemap", &e))?;
    let mut m = Mapping::anonymous(4 * PAGE as usize).map_err(|e| errno_why("mmap of scratch pages", e, &[]))?;
    let base = m.addr();
    {
        let pages = std::hint::black_box(m.as_mut_slice());
        pages[0] = 1;
        pages[2 * PAGE as usize] = 1;
        let r = pages[3 * PAGE as usize];
        std::hint::black_box(r);
    }
    let scan = PmScan {
        start: base,
        end: base + 4 * PAGE,
        category_mask: u64::from(PAGE_IS_PRESENT),
        return_mask: u64::from(PAGE_IS_PRESENT | PAGE_IS_PFNZERO),
        ..Default::default()
    };
    let mut out = [PageRegion::default(); 8];
    let (n, walk_end) = misc::pagemap_scan(pm.as_fd(), &scan, &mut out).map_err(|e| {
        errno_why("ioctl PAGEMAP_SCAN", e, &[(Errno::ENOTTY, "kernel older than 6.7 (no PAGEMAP_SCAN)")])
    })?;
    let got: Vec<(u64, u64, u64)> =
        out[..n].iter().map(|r| ((r.start - base) / PAGE, (r.end - base) / PAGE, r.categories)).collect();
    let present = u64::from(PAGE_IS_PRESENT);
    let zero = u64::from(PAGE_IS_PRESENT | PAGE_IS_PFNZERO);
    if got != [(0, 1, present), (2, 3, present), (3, 4, zero)] || walk_end != base + 4 * PAGE {
        return Err(format!("expected pages 0 and 2 present and 3 PFNZERO, the scan reported (page ranges) {got:?}"));
    }
    Ok("finds written pages as PAGE_IS_PRESENT, a read one as PAGE_IS_PFNZERO, skips the untouched one".to_string())
}

/// PR_SET_MM_MAP_SIZE answers the size of `struct prctl_mm_map` (the
/// restorer sets the mm fields in one PR_SET_MM_MAP).
pub fn probe_prctl_set_mm() -> Result<String, String> {
    let size = misc::prctl_mm_map_size().map_err(|e| {
        errno_why(
            "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)",
            e,
            &[(Errno::EINVAL, "kernel without CONFIG_CHECKPOINT_RESTORE (no PR_SET_MM_MAP)")],
        )
    })?;
    // What the restorer blob passes.
    let ours = core::mem::size_of::<restorer_plan::MmMap>();
    if size as usize != ours {
        return Err(format!("the kernel's struct prctl_mm_map is {size} bytes, ours {ours}"));
    }
    Ok(format!("struct prctl_mm_map is {size} bytes, as we build it"))
}

/// A new pty answers the ioctls its dump and restore use: index, packet
/// mode, lock, the peer slave (TIOCGPTPEER, Linux 4.13), the terminal's
/// device number (TIOCGDEV), exclusive mode (TIOCGEXCL, Linux 3.8) and
/// TIOCSTI, which puts a canonical-mode reader's queue back.
pub fn probe_pty() -> Result<String, String> {
    use crate::sys::fs::{self, OpenFlags};
    use crate::sys::tty;
    let m =
        fs::openat(None, "/dev/ptmx", OpenFlags::O_RDWR | OpenFlags::O_CLOEXEC | OpenFlags::from_bits_retain(0o400), 0)
            .map_err(|e| errno_why("open /dev/ptmx", e, &[]))?;
    let n = tty::get_ptn(m.as_fd()).map_err(|e| errno_why("TIOCGPTN", e, &[]))?;
    tty::get_pkt(m.as_fd()).map_err(|e| errno_why("TIOCGPKT", e, &[]))?;
    tty::get_ptlck(m.as_fd()).map_err(|e| errno_why("TIOCGPTLCK", e, &[]))?;
    tty::set_ptlck(m.as_fd(), false).map_err(|e| errno_why("TIOCSPTLCK", e, &[]))?;
    let s = tty::open_peer(m.as_fd(), (OpenFlags::O_RDWR | OpenFlags::O_CLOEXEC).bits() | 0o400)
        .map_err(|e| errno_why("TIOCGPTPEER", e, &[(Errno::EINVAL, "kernel older than 4.13")]))?;
    let dev = tty::get_dev(s.as_fd()).map_err(|e| errno_why("TIOCGDEV", e, &[]))?;
    tty::get_excl(s.as_fd()).map_err(|e| errno_why("TIOCGEXCL", e, &[]))?;
    tty::sti(s.as_fd(), b'x').map_err(|e| {
        errno_why("TIOCSTI", e, &[(Errno::EIO, "dev.tty.legacy_tiocsti is 0 and crtools lacks CAP_SYS_ADMIN")])
    })?;
    Ok(format!("/dev/pts/{n}, device {}:{}", dev >> 8 & 0xfff, (dev & 0xff) | (dev >> 12 & 0xfff00)))
}
