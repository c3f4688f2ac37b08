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

/// ioctl(`req`) on a userfaultfd with `arg`, a live uffdio_* structure of
/// the request's type that the kernel reads and may write.
fn uffd_ioctl<T>(fd: BorrowedFd<'_>, req: u32, arg: &mut T) -> Result<usize> {
    // SAFETY: `arg` is a live, exclusively borrowed structure of the type
    // `req` takes; the kernel reads and writes only that structure.
    unsafe { syscalls::syscall3(Sysno::ioctl, fd.as_raw_fd() as usize, req as usize, arg as *mut T as usize) }
}

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
    uffd_ioctl(fd, li::UFFDIO_API, &mut a)?;
    Ok(a.features)
}

/// ioctl(UFFDIO_REGISTER) of `[start, start + len)` in write-protect mode.
pub fn register_wp(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<()> {
    let mut r = lg::uffdio_register {
        range: lg::uffdio_range { start, len },
        mode: lg::UFFDIO_REGISTER_MODE_WP as u64,
        ioctls: 0,
    };
    uffd_ioctl(fd, li::UFFDIO_REGISTER, &mut r)?;
    Ok(())
}

/// ioctl(UFFDIO_WRITEPROTECT): protects (or unprotects) `[start, start + len)`.
pub fn writeprotect(fd: BorrowedFd<'_>, start: u64, len: u64, protect: bool) -> Result<()> {
    let mut w = lg::uffdio_writeprotect {
        range: lg::uffdio_range { start, len },
        mode: if protect { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 },
    };
    uffd_ioctl(fd, li::UFFDIO_WRITEPROTECT, &mut w)?;
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

// The features the restorer's lazy-pages userfaultfd asks for (fork,
// mremap, MADV_DONTNEED/MADV_REMOVE, munmap events, so that the server
// always knows which addresses wait for which page; thread ids), as the
// kernel headers spell them.
const _: () = assert!(
    restorer_plan::LAZY_UFFD_FEATURES
        == (lg::UFFD_FEATURE_EVENT_FORK
            | lg::UFFD_FEATURE_EVENT_REMAP
            | lg::UFFD_FEATURE_EVENT_REMOVE
            | lg::UFFD_FEATURE_EVENT_UNMAP
            | lg::UFFD_FEATURE_THREAD_ID) as u64
);

/// One message read from a userfaultfd (`struct uffd_msg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A missing page at `addr` was touched (the thread waits).
    PageFault { addr: u64, write: bool, tid: i32 },
    /// The mm forked: `ufd` is a new descriptor, now ours, for the child.
    Fork { ufd: i32 },
    /// mremap moved `[from, from + len)` to `to`.
    Remap { from: u64, to: u64, len: u64 },
    /// `[start, end)` was emptied (MADV_DONTNEED, MADV_REMOVE).
    Remove { start: u64, end: u64 },
    /// `[start, end)` was unmapped.
    Unmap { start: u64, end: u64 },
    /// An event this version does not know.
    Other(u8),
}

/// Size of `struct uffd_msg`.
pub const MSG_SIZE: usize = 32;
const _: () = assert!(std::mem::size_of::<lg::uffd_msg>() == MSG_SIZE);

impl Event {
    /// Decodes one `struct uffd_msg`.
    pub fn parse(m: &[u8; MSG_SIZE]) -> Event {
        let w = |i: usize| u64::from_ne_bytes(m[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes"));
        match m[0] as u32 {
            lg::UFFD_EVENT_PAGEFAULT => {
                Event::PageFault {
                    addr: w(1),
                    write: w(0) & lg::UFFD_PAGEFAULT_FLAG_WRITE as u64 != 0,
                    // feat.ptid (UFFD_FEATURE_THREAD_ID; 0 without it).
                    tid: w(2) as u32 as i32,
                }
            }
            lg::UFFD_EVENT_FORK => Event::Fork { ufd: w(0) as u32 as i32 },
            lg::UFFD_EVENT_REMAP => Event::Remap { from: w(0), to: w(1), len: w(2) },
            lg::UFFD_EVENT_REMOVE => Event::Remove { start: w(0), end: w(1) },
            lg::UFFD_EVENT_UNMAP => Event::Unmap { start: w(0), end: w(1) },
            e => Event::Other(e as u8),
        }
    }
}

/// Reads the messages waiting on a non-blocking userfaultfd into `buf`;
/// returns how many (0: none now).
pub fn read_events(fd: BorrowedFd<'_>, buf: &mut [[u8; MSG_SIZE]]) -> Result<usize> {
    // SAFETY: `buf` is writable for its whole length; the kernel writes
    // whole messages only.
    let r = unsafe {
        syscalls::syscall3(Sysno::read, fd.as_raw_fd() as usize, buf.as_mut_ptr() as usize, buf.len() * MSG_SIZE)
    };
    match r {
        Ok(n) => Ok(n / MSG_SIZE),
        Err(super::Errno::EAGAIN) => Ok(0),
        Err(e) => Err(e),
    }
}

/// ioctl(UFFDIO_COPY): copies `src` to `dst` in the userfaultfd's mm and
/// wakes the threads waiting there. On failure, the errno and the bytes
/// copied before it (EEXIST: the page at `dst + copied` is present).
pub fn copy(fd: BorrowedFd<'_>, dst: u64, src: &[u8]) -> std::result::Result<(), (super::Errno, u64)> {
    let mut c = lg::uffdio_copy { dst, src: src.as_ptr() as u64, len: src.len() as u64, mode: 0, copy: 0 };
    // (The kernel reads `src.len()` bytes at `c.src`, borrowed here.)
    let r = uffd_ioctl(fd, li::UFFDIO_COPY, &mut c);
    r.map(|_| ()).map_err(|e| (e, c.copy.max(0) as u64))
}

/// ioctl(UFFDIO_ZEROPAGE) of `[start, start + len)`, waking the waiters.
pub fn zeropage(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<()> {
    let mut z = lg::uffdio_zeropage { range: lg::uffdio_range { start, len }, mode: 0, zeropage: 0 };
    uffd_ioctl(fd, li::UFFDIO_ZEROPAGE, &mut z)?;
    Ok(())
}

/// ioctl(UFFDIO_WAKE): wakes the threads waiting in `[start, start + len)`
/// (their page came in some other way).
pub fn wake(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<()> {
    let mut r = lg::uffdio_range { start, len };
    uffd_ioctl(fd, li::UFFDIO_WAKE, &mut r)?;
    Ok(())
}
