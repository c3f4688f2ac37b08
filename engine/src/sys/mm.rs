//! Address-space calls of this process: mmap(2), munmap(2), mprotect(2),
//! mremap(2), madvise(2), mincore(2).
//!
//! # Invariants
//! - Addresses are `u64` (x86_64 user addresses), lengths `usize`.
//! - The raw calls that can change or destroy memory Rust code may still use
//!   (`mmap` with MAP_FIXED, `munmap`, `mprotect`, `mremap`, destructive
//!   `madvise`) are `unsafe fn`: the caller proves that no live Rust
//!   reference points into the range touched.
//! - [`Mapping`] is the safe way to get scratch memory: it is always
//!   readable and writable, owned by the value, and unmapped on drop.
use super::{Errno, Result, Sysno};
use linux_raw_sys::general as lg;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The page size on x86_64.
pub const PAGE_SIZE: usize = 4096;

bitflags::bitflags! {
    /// `PROT_*` protection bits for mmap/mprotect.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ProtFlags: u32 {
        const PROT_READ = lg::PROT_READ;
        const PROT_WRITE = lg::PROT_WRITE;
        const PROT_EXEC = lg::PROT_EXEC;
        const PROT_SEM = lg::PROT_SEM;
        const PROT_GROWSDOWN = lg::PROT_GROWSDOWN;
        const PROT_GROWSUP = lg::PROT_GROWSUP;
    }
}

impl ProtFlags {
    /// PROT_NONE (no access).
    pub const PROT_NONE: ProtFlags = ProtFlags::empty();
}

bitflags::bitflags! {
    /// `MAP_*` flags for mmap.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MapFlags: u32 {
        const MAP_SHARED = lg::MAP_SHARED;
        const MAP_PRIVATE = lg::MAP_PRIVATE;
        const MAP_SHARED_VALIDATE = lg::MAP_SHARED_VALIDATE;
        const MAP_FIXED = lg::MAP_FIXED;
        const MAP_ANONYMOUS = lg::MAP_ANONYMOUS;
        const MAP_32BIT = lg::MAP_32BIT;
        const MAP_GROWSDOWN = lg::MAP_GROWSDOWN;
        const MAP_DENYWRITE = lg::MAP_DENYWRITE;
        const MAP_EXECUTABLE = lg::MAP_EXECUTABLE;
        const MAP_LOCKED = lg::MAP_LOCKED;
        const MAP_NORESERVE = lg::MAP_NORESERVE;
        const MAP_POPULATE = lg::MAP_POPULATE;
        const MAP_NONBLOCK = lg::MAP_NONBLOCK;
        const MAP_STACK = lg::MAP_STACK;
        const MAP_HUGETLB = lg::MAP_HUGETLB;
        const MAP_SYNC = lg::MAP_SYNC;
        const MAP_FIXED_NOREPLACE = lg::MAP_FIXED_NOREPLACE;
        // MAP_HUGE_* size encodings live in bits 26..32.
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// `MREMAP_*` flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MremapFlags: u32 {
        const MREMAP_MAYMOVE = lg::MREMAP_MAYMOVE;
        const MREMAP_FIXED = lg::MREMAP_FIXED;
        const MREMAP_DONTUNMAP = lg::MREMAP_DONTUNMAP;
    }
}

/// An madvise(2) advice value (`MADV_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Advice(pub u32);

impl Advice {
    pub const MADV_NORMAL: Advice = Advice(lg::MADV_NORMAL);
    pub const MADV_RANDOM: Advice = Advice(lg::MADV_RANDOM);
    pub const MADV_SEQUENTIAL: Advice = Advice(lg::MADV_SEQUENTIAL);
    pub const MADV_WILLNEED: Advice = Advice(lg::MADV_WILLNEED);
    /// Drops the pages: private anonymous memory reads back as zeroes.
    pub const MADV_DONTNEED: Advice = Advice(lg::MADV_DONTNEED);
    pub const MADV_FREE: Advice = Advice(lg::MADV_FREE);
    pub const MADV_REMOVE: Advice = Advice(lg::MADV_REMOVE);
    pub const MADV_DONTFORK: Advice = Advice(lg::MADV_DONTFORK);
    pub const MADV_DOFORK: Advice = Advice(lg::MADV_DOFORK);
    pub const MADV_MERGEABLE: Advice = Advice(lg::MADV_MERGEABLE);
    pub const MADV_UNMERGEABLE: Advice = Advice(lg::MADV_UNMERGEABLE);
    pub const MADV_HUGEPAGE: Advice = Advice(lg::MADV_HUGEPAGE);
    pub const MADV_NOHUGEPAGE: Advice = Advice(lg::MADV_NOHUGEPAGE);
    pub const MADV_DONTDUMP: Advice = Advice(lg::MADV_DONTDUMP);
    pub const MADV_DODUMP: Advice = Advice(lg::MADV_DODUMP);
    pub const MADV_WIPEONFORK: Advice = Advice(lg::MADV_WIPEONFORK);
    pub const MADV_KEEPONFORK: Advice = Advice(lg::MADV_KEEPONFORK);
    pub const MADV_COLD: Advice = Advice(lg::MADV_COLD);
    pub const MADV_PAGEOUT: Advice = Advice(lg::MADV_PAGEOUT);
    pub const MADV_POPULATE_READ: Advice = Advice(lg::MADV_POPULATE_READ);
    pub const MADV_POPULATE_WRITE: Advice = Advice(lg::MADV_POPULATE_WRITE);
    pub const MADV_COLLAPSE: Advice = Advice(lg::MADV_COLLAPSE);
    pub const MADV_GUARD_INSTALL: Advice = Advice(lg::MADV_GUARD_INSTALL);
    pub const MADV_GUARD_REMOVE: Advice = Advice(lg::MADV_GUARD_REMOVE);
}

/// Rounds `n` up to a multiple of [`PAGE_SIZE`].
pub const fn page_align_up(n: usize) -> usize {
    (n + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// mmap(addr, len, prot, flags, fd, offset); returns the mapping's address.
/// Pass `fd: None` with MAP_ANONYMOUS.
///
/// # Safety
/// With MAP_FIXED the range `addr..addr+len` is replaced: nothing in it may
/// be referenced by live Rust values. Without MAP_FIXED the call creates a
/// fresh range and is harmless, but the caller owns the returned memory
/// (and must munmap it).
pub unsafe fn mmap(
    addr: u64,
    len: usize,
    prot: ProtFlags,
    flags: MapFlags,
    fd: Option<BorrowedFd<'_>>,
    offset: u64,
) -> Result<u64> {
    let fd = fd.map_or(-1, |f| f.as_raw_fd());
    // SAFETY: the kernel touches only the target range, which the caller vouches for.
    unsafe {
        syscalls::syscall6(
            Sysno::mmap,
            addr as usize,
            len,
            prot.bits() as usize,
            flags.bits() as usize,
            fd as usize,
            offset as usize,
        )
    }
    .map(|a| a as u64)
}

/// Anonymous private mmap at an address of the kernel's choice.
pub fn mmap_anonymous(len: usize, prot: ProtFlags, extra: MapFlags) -> Result<u64> {
    if extra.intersects(MapFlags::MAP_FIXED | MapFlags::MAP_SHARED) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: without MAP_FIXED the kernel picks a free range, so no existing
    // memory changes; MAP_FIXED_NOREPLACE fails rather than replace.
    unsafe { mmap(0, len, prot, MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | extra, None, 0) }
}

/// munmap(addr, len).
///
/// # Safety
/// No live Rust reference may point into `addr..addr+len`.
pub unsafe fn munmap(addr: u64, len: usize) -> Result<()> {
    // SAFETY: the caller guarantees the range is not in use.
    unsafe { syscalls::syscall2(Sysno::munmap, addr as usize, len) }.map(drop)
}

/// mprotect(addr, len, prot).
///
/// # Safety
/// Removing access from memory Rust code still uses makes later accesses fault.
pub unsafe fn mprotect(addr: u64, len: usize, prot: ProtFlags) -> Result<()> {
    // SAFETY: the caller guarantees the new protection suits all users of the range.
    unsafe { syscalls::syscall3(Sysno::mprotect, addr as usize, len, prot.bits() as usize) }.map(drop)
}

/// mremap(old, old_len, new_len, flags, new_addr); returns the new address.
/// `new_addr` is used only with MREMAP_FIXED.
///
/// # Safety
/// The old range moves (or, with MREMAP_FIXED, replaces the target range):
/// no live Rust reference may point into either.
pub unsafe fn mremap(old: u64, old_len: usize, new_len: usize, flags: MremapFlags, new_addr: u64) -> Result<u64> {
    // SAFETY: the caller guarantees neither range is in use.
    unsafe {
        syscalls::syscall5(Sysno::mremap, old as usize, old_len, new_len, flags.bits() as usize, new_addr as usize)
    }
    .map(|a| a as u64)
}

/// madvise(addr, len, advice).
///
/// # Safety
/// Some advice (MADV_DONTNEED, MADV_FREE, MADV_REMOVE, MADV_GUARD_INSTALL)
/// changes the contents or accessibility of the range; the caller vouches
/// that no Rust value relies on them.
pub unsafe fn madvise(addr: u64, len: usize, advice: Advice) -> Result<()> {
    // SAFETY: the caller guarantees the advice is harmless to users of the range.
    unsafe { syscalls::syscall3(Sysno::madvise, addr as usize, len, advice.0 as usize) }.map(drop)
}

/// mincore(addr, len): one byte per page, bit 0 set when resident.
pub fn mincore(addr: u64, len: usize) -> Result<Vec<u8>> {
    let pages = page_align_up(len) / PAGE_SIZE;
    let mut vec = vec![0u8; pages];
    // SAFETY: the kernel writes one byte per page of the range into `vec`,
    // which holds exactly that many; the range itself is only inspected.
    unsafe { syscalls::syscall3(Sysno::mincore, addr as usize, len, vec.as_mut_ptr() as usize) }?;
    Ok(vec)
}

/// A local read-write mapping owned by this value, unmapped on drop.
///
/// Shared mappings are visible to children forked after their creation;
/// the (unsafe) clone functions make the child's use of them the caller's
/// duty.
#[derive(Debug)]
pub struct Mapping {
    addr: u64,
    len: usize,
}

impl Mapping {
    /// A private anonymous zero-filled mapping of `len` bytes (rounded up to pages).
    pub fn anonymous(len: usize) -> Result<Mapping> {
        Self::anon_with(len, MapFlags::MAP_PRIVATE)
    }

    /// A private anonymous zero-filled mapping of `len` bytes at exactly
    /// `addr` (MAP_FIXED_NOREPLACE: EEXIST if anything is there), with
    /// MAP_NORESERVE if `noreserve`.
    pub fn anonymous_at(addr: u64, len: usize, noreserve: bool) -> Result<Mapping> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len);
        let mut flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED_NOREPLACE;
        if noreserve {
            flags |= MapFlags::MAP_NORESERVE;
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let got = unsafe { mmap(addr, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, flags, None, 0) }?;
        if got != addr {
            // Kernels before 4.17 take the flag as a hint.
            // SAFETY: the range was just mapped by this call and nothing else uses it.
            let _ = unsafe { munmap(got, len) };
            return Err(Errno::EEXIST);
        }
        Ok(Mapping { addr, len })
    }

    /// [`Mapping::anonymous_shared_with`] at `addr` exactly (EEXIST if
    /// anything is mapped there). `addr` must be aligned as the mapping's
    /// page size requires.
    pub fn anonymous_shared_at(addr: u64, len: usize, extra: MapFlags) -> Result<Mapping> {
        if len == 0 || extra.intersects(MapFlags::MAP_FIXED | MapFlags::MAP_FIXED_NOREPLACE | MapFlags::MAP_PRIVATE) {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len);
        let flags = MapFlags::MAP_SHARED | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED_NOREPLACE | extra;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let got = unsafe { mmap(addr, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, flags, None, 0) }?;
        if got != addr {
            // SAFETY: the range was just mapped by this call and nothing else uses it.
            let _ = unsafe { munmap(got, len) };
            return Err(Errno::EEXIST);
        }
        Ok(Mapping { addr, len })
    }

    /// A shared anonymous zero-filled mapping (shared with forked children).
    pub fn anonymous_shared(len: usize) -> Result<Mapping> {
        Self::anon_with(len, MapFlags::MAP_SHARED)
    }

    /// A shared anonymous zero-filled mapping with `extra` flags
    /// (MAP_NORESERVE; MAP_HUGETLB with a MAP_HUGE_* size in bits 26..32,
    /// then `len` must be a multiple of that size).
    pub fn anonymous_shared_with(len: usize, extra: MapFlags) -> Result<Mapping> {
        if extra.intersects(MapFlags::MAP_FIXED | MapFlags::MAP_FIXED_NOREPLACE | MapFlags::MAP_PRIVATE) {
            return Err(Errno::EINVAL);
        }
        Self::anon_with(len, MapFlags::MAP_SHARED | extra)
    }

    fn anon_with(len: usize, kind: MapFlags) -> Result<Mapping> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len);
        // SAFETY: no MAP_FIXED: the kernel picks a fresh range.
        let addr = unsafe {
            mmap(0, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, kind | MapFlags::MAP_ANONYMOUS, None, 0)
        }?;
        Ok(Mapping { addr, len })
    }

    /// A read-write MAP_SHARED mapping of `fd` at `offset`.
    ///
    /// # Safety
    /// The file must not shrink below `offset + len` while the mapping lives
    /// (accesses past EOF raise SIGBUS), and others writing the file at the
    /// same time break the exclusivity `as_mut_slice` promises.
    pub unsafe fn shared_file(fd: BorrowedFd<'_>, len: usize, offset: u64) -> Result<Mapping> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len);
        // SAFETY: no MAP_FIXED; the file contract is forwarded to the caller.
        let addr = unsafe {
            mmap(0, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, Some(fd), offset)
        }?;
        Ok(Mapping { addr, len })
    }

    /// Start address.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length in bytes (a multiple of the page size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty mappings cannot be created.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The contents.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the range is mapped read-write for as long as self lives
        // and only reachable through self.
        unsafe { core::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }

    /// The contents, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; &mut self makes the borrow exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
    }

    /// Gives up ownership: the range stays mapped. Returns (addr, len).
    pub fn into_raw(self) -> (u64, usize) {
        let r = (self.addr, self.len);
        core::mem::forget(self);
        r
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is owned by self and no borrow outlives it.
        let _ = unsafe { munmap(self.addr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_libc() {
        assert_eq!(ProtFlags::PROT_READ.bits() as i32, libc::PROT_READ);
        assert_eq!(ProtFlags::PROT_WRITE.bits() as i32, libc::PROT_WRITE);
        assert_eq!(ProtFlags::PROT_EXEC.bits() as i32, libc::PROT_EXEC);
        assert_eq!(MapFlags::MAP_SHARED.bits() as i32, libc::MAP_SHARED);
        assert_eq!(MapFlags::MAP_PRIVATE.bits() as i32, libc::MAP_PRIVATE);
        assert_eq!(MapFlags::MAP_FIXED.bits() as i32, libc::MAP_FIXED);
        assert_eq!(MapFlags::MAP_FIXED_NOREPLACE.bits() as i32, libc::MAP_FIXED_NOREPLACE);
        assert_eq!(MapFlags::MAP_ANONYMOUS.bits() as i32, libc::MAP_ANONYMOUS);
        assert_eq!(MapFlags::MAP_GROWSDOWN.bits() as i32, libc::MAP_GROWSDOWN);
        assert_eq!(MapFlags::MAP_NORESERVE.bits() as i32, libc::MAP_NORESERVE);
        assert_eq!(MapFlags::MAP_POPULATE.bits() as i32, libc::MAP_POPULATE);
        assert_eq!(MapFlags::MAP_STACK.bits() as i32, libc::MAP_STACK);
        assert_eq!(MremapFlags::MREMAP_MAYMOVE.bits() as i32, libc::MREMAP_MAYMOVE);
        assert_eq!(MremapFlags::MREMAP_FIXED.bits() as i32, libc::MREMAP_FIXED);
        assert_eq!(MremapFlags::MREMAP_DONTUNMAP.bits() as i32, libc::MREMAP_DONTUNMAP);
        assert_eq!(Advice::MADV_DONTNEED.0 as i32, libc::MADV_DONTNEED);
        assert_eq!(Advice::MADV_DONTFORK.0 as i32, libc::MADV_DONTFORK);
        assert_eq!(Advice::MADV_WIPEONFORK.0 as i32, libc::MADV_WIPEONFORK);
        assert_eq!(Advice::MADV_HUGEPAGE.0 as i32, libc::MADV_HUGEPAGE);
        assert_eq!(Advice::MADV_NOHUGEPAGE.0 as i32, libc::MADV_NOHUGEPAGE);
        assert_eq!(Advice::MADV_FREE.0 as i32, libc::MADV_FREE);
    }

    #[test]
    fn mmap_mprotect_mremap_munmap() {
        let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        let a = mmap_anonymous(2 * PAGE_SIZE, rw, MapFlags::empty()).unwrap();
        assert_eq!(a % PAGE_SIZE as u64, 0);
        // SAFETY: the test owns this fresh mapping.
        unsafe {
            *(a as *mut u8) = 7;
            assert_eq!(mincore(a, 2 * PAGE_SIZE).unwrap()[0] & 1, 1);
            mprotect(a, PAGE_SIZE, ProtFlags::PROT_READ).unwrap();
            assert_eq!(*(a as *const u8), 7);
            // MAP_FIXED_NOREPLACE over an existing range must fail.
            let noreplace = MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED_NOREPLACE;
            let e = mmap(a, PAGE_SIZE, rw, noreplace, None, 0);
            assert_eq!(e, Err(Errno::EEXIST));
            // mremap works on one VMA only: merge the two halves back.
            mprotect(a, PAGE_SIZE, rw).unwrap();
            let b = mremap(a, 2 * PAGE_SIZE, 4 * PAGE_SIZE, MremapFlags::MREMAP_MAYMOVE, 0).unwrap();
            assert_eq!(*(b as *const u8), 7);
            madvise(b + PAGE_SIZE as u64, PAGE_SIZE, Advice::MADV_DONTNEED).unwrap();
            munmap(b, 4 * PAGE_SIZE).unwrap();
        }
        assert!(mmap_anonymous(PAGE_SIZE, rw, MapFlags::MAP_FIXED).is_err());
    }

    #[test]
    fn mapping_raii() {
        let mut m = Mapping::anonymous(100).unwrap();
        assert_eq!(m.len(), PAGE_SIZE);
        assert!(m.as_slice().iter().all(|&b| b == 0));
        m.as_mut_slice()[99] = 42;
        assert_eq!(m.as_slice()[99], 42);
        let addr = m.addr();
        drop(m);
        // The range is gone: mincore reports ENOMEM for unmapped memory.
        assert_eq!(mincore(addr, PAGE_SIZE), Err(Errno::ENOMEM));
    }
}
