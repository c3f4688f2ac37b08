//! Write tracking without soft-dirty bits: userfaultfd(2) in asynchronous
//! write-protect mode and the PAGEMAP_SCAN ioctl on /proc/pid/pagemap.
//!
//! - [userfaultfd(2)], ioctl_userfaultfd(2): a userfaultfd belongs to the mm
//!   of the task that created it; its ioctls act on that mm whoever issues
//!   them. With `UFFD_FEATURE_WP_ASYNC` a write to a write-protected page
//!   is resolved by the kernel itself (the page is unprotected, nobody is
//!   told); `UFFD_FEATURE_WP_UNPOPULATED` makes protection cover pages not
//!   populated yet. Closing the last descriptor unregisters every range and
//!   drops the protection.
//! - PAGEMAP_SCAN (Linux 6.7, fs/proc/task_mmu.c): `PAGE_IS_WRITTEN` is a
//!   page no longer write-protected; `PM_SCAN_WP_MATCHING` protects the
//!   pages it reports again in the same walk; `PM_SCAN_CHECK_WPASYNC` fails
//!   the scan (EPERM) on a VMA that is not registered for asynchronous
//!   write-protect.
//!
//! [userfaultfd(2)]: https://man7.org/linux/man-pages/man2/userfaultfd.2.html
use super::{Result, Sysno};
use linux_raw_sys::general as lg;
use linux_raw_sys::ioctl as li;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub use lg::{
    PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGE_IS_WRITTEN, PM_SCAN_CHECK_WPASYNC, PM_SCAN_WP_MATCHING,
    UFFD_FEATURE_WP_ASYNC, UFFD_FEATURE_WP_UNPOPULATED, UFFD_USER_MODE_ONLY,
};

/// `_IOWR('f', 16, struct pm_scan_arg)`.
pub const PAGEMAP_SCAN: u32 = (3 << 30) | ((std::mem::size_of::<lg::pm_scan_arg>() as u32) << 16) | (0x66 << 8) | 16;

/// `UFFDIO_WRITEPROTECT_MODE_WP`.
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1;

/// One run of pages PAGEMAP_SCAN reports: `[start, end)` and its categories.
pub type PageRegion = lg::page_region;

/// userfaultfd(flags) in this process (the probes of `crtools check`).
pub fn userfaultfd(flags: u32) -> Result<OwnedFd> {
    // SAFETY: no pointer arguments; the result is a new descriptor we own.
    let fd = unsafe { syscalls::syscall1(Sysno::userfaultfd, flags as usize) }?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// ioctl(UFFDIO_API): the handshake asking for `features`; returns the
/// features the kernel grants.
pub fn api(fd: BorrowedFd<'_>, features: u64) -> Result<u64> {
    let mut a = lg::uffdio_api { api: lg::UFFD_API as u64, features, ioctls: 0 };
    // SAFETY: `a` is a live uffdio_api the kernel reads and writes.
    unsafe {
        syscalls::syscall3(Sysno::ioctl, fd.as_raw_fd() as usize, li::UFFDIO_API as usize, &mut a as *mut _ as usize)
    }?;
    Ok(a.features)
}

/// ioctl(UFFDIO_REGISTER) of `[start, start + len)` in write-protect mode.
pub fn register_wp(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<()> {
    let mut r = lg::uffdio_register {
        range: lg::uffdio_range { start, len },
        mode: lg::UFFDIO_REGISTER_MODE_WP as u64,
        ioctls: 0,
    };
    // SAFETY: `r` is a live uffdio_register the kernel reads and writes.
    unsafe {
        syscalls::syscall3(
            Sysno::ioctl,
            fd.as_raw_fd() as usize,
            li::UFFDIO_REGISTER as usize,
            &mut r as *mut _ as usize,
        )
    }?;
    Ok(())
}

/// ioctl(UFFDIO_WRITEPROTECT): protects (or unprotects) `[start, start + len)`.
pub fn writeprotect(fd: BorrowedFd<'_>, start: u64, len: u64, protect: bool) -> Result<()> {
    let mut w = lg::uffdio_writeprotect {
        range: lg::uffdio_range { start, len },
        mode: if protect { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 },
    };
    // SAFETY: `w` is a live uffdio_writeprotect the kernel only reads.
    unsafe {
        syscalls::syscall3(
            Sysno::ioctl,
            fd.as_raw_fd() as usize,
            li::UFFDIO_WRITEPROTECT as usize,
            &mut w as *mut _ as usize,
        )
    }?;
    Ok(())
}

/// What one PAGEMAP_SCAN call looks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanQuery {
    /// `PM_SCAN_*` flags.
    pub flags: u64,
    /// Every one of these categories must be set.
    pub category_mask: u64,
    /// At least one of these (0: no such condition).
    pub anyof_mask: u64,
    /// Categories reported in each region.
    pub return_mask: u64,
}

/// ioctl(PAGEMAP_SCAN) on a /proc/pid/pagemap descriptor over `[start, end)`:
/// fills `out` and returns how many regions it holds and where the walk
/// stopped (`end` when the whole range was seen).
pub fn pagemap_scan(
    pagemap: BorrowedFd<'_>,
    start: u64,
    end: u64,
    q: ScanQuery,
    out: &mut [PageRegion],
) -> Result<(usize, u64)> {
    let mut a = lg::pm_scan_arg {
        size: std::mem::size_of::<lg::pm_scan_arg>() as u64,
        flags: q.flags,
        start,
        end,
        walk_end: 0,
        vec: out.as_mut_ptr() as u64,
        vec_len: out.len() as u64,
        max_pages: 0,
        category_inverted: 0,
        category_mask: q.category_mask,
        category_anyof_mask: q.anyof_mask,
        return_mask: q.return_mask,
    };
    // SAFETY: `a` is live; the kernel writes at most `vec_len` regions into
    // `out`, which outlives the call.
    let n = unsafe {
        syscalls::syscall3(Sysno::ioctl, pagemap.as_raw_fd() as usize, PAGEMAP_SCAN as usize, &mut a as *mut _ as usize)
    }?;
    Ok((n.min(out.len()), a.walk_end))
}

/// An empty region, to size scan buffers.
pub const EMPTY_REGION: PageRegion = PageRegion { start: 0, end: 0, categories: 0 };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers() {
        // The kernel's _IOWR('f', 16, struct pm_scan_arg), 96 bytes.
        assert_eq!(std::mem::size_of::<lg::pm_scan_arg>(), 96);
        assert_eq!(PAGEMAP_SCAN, 0xc060_6610);
        assert_eq!(std::mem::size_of::<PageRegion>(), 24);
    }
}
