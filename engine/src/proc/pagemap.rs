//! `/proc/<pid>/pagemap`, see proc_pid_pagemap(5) and
//! Documentation/admin-guide/mm/pagemap.rst.
//!
//! The file holds one little-endian (native, x86_64) 64-bit entry per
//! virtual page: entry `n` at byte offset `8 * n` describes the page at
//! address `n * PAGE_SIZE`.
//!
//! Entry bits read: 0-54 PFN when present (zero without CAP_SYS_ADMIN), or
//! when swapped bits 0-4 swap type and 5-54 swap offset; 55 soft-dirty;
//! 56 exclusively mapped; 57 userfaultfd write-protected; 58 guard region
//! (Linux 6.15+); 61 file page or shared anonymous; 62 swapped; 63 present.
//!
//! # Invariants
//! - [`Pagemap`] opens the file once (the kernel checks access at open) and
//!   reads it with positioned reads (`pread`): no seeks, no shared file
//!   offset to keep track of.
//! - Reads go through a bounded internal buffer ([`Pagemap::BATCH`]
//!   entries), not one read per page and not one allocation per range.
//! - A short read (addresses past the end of the user address space) stops
//!   the read; the count of entries filled is returned.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::maps::PAGE_SIZE;
use super::{ProcError, Result};
use crate::sys::Pid;

const FILE: &str = "pagemap";

/// Bits 0-54: page frame number.
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;
/// Bit 55: soft-dirty (since last clear_refs write of 4).
pub const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Bit 56: page exclusively mapped (mapcount 1).
pub const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;
/// Bit 57: pte is userfaultfd write-protected.
pub const PM_UFFD_WP: u64 = 1 << 57;
/// Bit 58: pte is a guard region (MADV_GUARD_INSTALL, Linux 6.15+).
pub const PM_GUARD_REGION: u64 = 1 << 58;
/// Bit 61: file-backed page or shared anonymous page.
pub const PM_FILE: u64 = 1 << 61;
/// Bit 62: page is swapped out.
pub const PM_SWAP: u64 = 1 << 62;
/// Bit 63: page is present in RAM.
pub const PM_PRESENT: u64 = 1 << 63;
/// Bits 0-4 of a swapped entry: swap type.
pub const PM_SWAP_TYPE_MASK: u64 = 0x1f;
/// Bits of a swapped entry's offset field, after shifting by 5.
pub const PM_SWAP_OFFSET_SHIFT: u32 = 5;

/// One pagemap entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PagemapEntry(pub u64);

impl PagemapEntry {
    /// Bit 63: present in RAM.
    pub fn present(self) -> bool {
        self.0 & PM_PRESENT != 0
    }
    /// Bit 62: swapped out.
    pub fn swapped(self) -> bool {
        self.0 & PM_SWAP != 0
    }
    /// Bit 61: a file page or shared anonymous (shmem) page.
    pub fn file_or_shared_anon(self) -> bool {
        self.0 & PM_FILE != 0
    }
    /// Bit 58: a guard region installed with MADV_GUARD_INSTALL.
    pub fn guard_region(self) -> bool {
        self.0 & PM_GUARD_REGION != 0
    }
    /// Bit 57: userfaultfd write-protected.
    pub fn uffd_wp(self) -> bool {
        self.0 & PM_UFFD_WP != 0
    }
    /// Bit 56: exclusively mapped by this process.
    pub fn exclusive(self) -> bool {
        self.0 & PM_MMAP_EXCLUSIVE != 0
    }
    /// Bit 55: soft-dirty.
    pub fn soft_dirty(self) -> bool {
        self.0 & PM_SOFT_DIRTY != 0
    }
    /// The PFN of a present page (0 when the reader lacks CAP_SYS_ADMIN).
    pub fn pfn(self) -> Option<u64> {
        self.present().then_some(self.0 & PM_PFN_MASK)
    }
    /// Swap type of a swapped page.
    pub fn swap_type(self) -> Option<u64> {
        (self.swapped() && !self.present()).then_some(self.0 & PM_SWAP_TYPE_MASK)
    }
    /// Swap offset of a swapped page.
    pub fn swap_offset(self) -> Option<u64> {
        (self.swapped() && !self.present()).then_some((self.0 & PM_PFN_MASK) >> PM_SWAP_OFFSET_SHIFT)
    }
    /// The page holds data worth dumping: present or swapped.
    pub fn has_data(self) -> bool {
        self.0 & (PM_PRESENT | PM_SWAP) != 0
    }
}

/// Decodes native-endian entries from `bytes` (a whole number of 8-byte
/// entries) into `out`; returns how many were decoded (the smaller of the
/// two counts). Trailing bytes that do not make a whole entry are ignored.
pub fn parse_entries(bytes: &[u8], out: &mut [u64]) -> usize {
    let mut n = 0;
    for (chunk, slot) in bytes.chunks_exact(8).zip(out.iter_mut()) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *slot = u64::from_ne_bytes(b);
        n += 1;
    }
    n
}

/// An open `/proc/<pid>/pagemap`.
#[derive(Debug)]
pub struct Pagemap {
    pid: Pid,
    file: File,
    buf: Vec<u8>,
}

impl Pagemap {
    /// Entries read per `pread`.
    pub const BATCH: usize = 4096;

    /// Opens `/proc/<pid>/pagemap`. The kernel checks ptrace-read access at
    /// open time.
    pub fn open(pid: Pid) -> Result<Pagemap> {
        let file = File::open(super::pid_path(pid, FILE)).map_err(|e| ProcError::io(pid, FILE, e))?;
        Ok(Pagemap { pid, file, buf: Vec::new() })
    }

    /// The task this pagemap belongs to.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The open file, for the PAGEMAP_SCAN ioctl.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.file.as_fd()
    }

    /// Fills `out` with the entries of the pages of `[start, end)` (both
    /// page aligned), at most `out.len()` of them, starting with the page at
    /// `start`. Returns the number of entries written, which is smaller than
    /// both only if the kernel returned fewer (end of the address space).
    pub fn read_range(&mut self, start: u64, end: u64, out: &mut [u64]) -> Result<usize> {
        if !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) || end < start {
            return Err(ProcError::malformed(FILE, format!("bad range {start:#x}-{end:#x}")).with_pid(self.pid));
        }
        let pages = ((end - start) / PAGE_SIZE).min(out.len() as u64) as usize;
        let out = &mut out[..pages];
        if self.buf.len() < Self::BATCH * 8 {
            self.buf.resize(Self::BATCH * 8, 0);
        }
        let mut done = 0usize;
        while done < pages {
            let want = (pages - done).min(Self::BATCH);
            let off = (start / PAGE_SIZE + done as u64)
                .checked_mul(8)
                .ok_or_else(|| ProcError::malformed(FILE, "offset overflow").with_pid(self.pid))?;
            let buf = &mut self.buf[..want * 8];
            let mut got = 0usize;
            while got < buf.len() {
                match self.file.read_at(&mut buf[got..], off + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(ProcError::io(self.pid, FILE, e)),
                }
            }
            let n = parse_entries(&buf[..got - got % 8], &mut out[done..]);
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
    }

    /// The entry of the page holding `addr`.
    pub fn entry(&mut self, addr: u64) -> Result<PagemapEntry> {
        let page = addr - addr % PAGE_SIZE;
        let mut one = [0u64; 1];
        let n = self.read_range(page, page + PAGE_SIZE, &mut one)?;
        if n == 0 {
            return Err(ProcError::malformed(FILE, format!("no entry for {addr:#x}")).with_pid(self.pid));
        }
        Ok(PagemapEntry(one[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_bits() {
        let e = PagemapEntry(PM_PRESENT | PM_MMAP_EXCLUSIVE | PM_SOFT_DIRTY | 0x1234);
        assert!(e.present() && e.exclusive() && e.soft_dirty() && e.has_data());
        assert!(!e.swapped() && !e.file_or_shared_anon() && !e.uffd_wp() && !e.guard_region());
        assert_eq!(e.pfn(), Some(0x1234));
        assert_eq!(e.swap_type(), None);

        // Swapped: type 3, offset 0xabcde.
        let e = PagemapEntry(PM_SWAP | (0xabcde << 5) | 3 | PM_UFFD_WP);
        assert!(e.swapped() && !e.present() && e.uffd_wp() && e.has_data());
        assert_eq!(e.pfn(), None);
        assert_eq!(e.swap_type(), Some(3));
        assert_eq!(e.swap_offset(), Some(0xabcde));

        let e = PagemapEntry(PM_FILE | PM_PRESENT);
        assert!(e.file_or_shared_anon());
        assert_eq!(e.pfn(), Some(0));
        let hole = PagemapEntry(0);
        assert!(!hole.has_data());
        assert!(PagemapEntry(PM_GUARD_REGION).guard_region());
        assert_eq!(PM_PFN_MASK.count_ones(), 55);
    }

    #[test]
    fn decode_bytes() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(PM_PRESENT | 7).to_ne_bytes());
        bytes.extend_from_slice(&PM_SWAP.to_ne_bytes());
        bytes.extend_from_slice(&[1, 2, 3]); // truncated tail ignored
        let mut out = [0u64; 4];
        assert_eq!(parse_entries(&bytes, &mut out), 2);
        assert_eq!(out[0], PM_PRESENT | 7);
        assert_eq!(out[1], PM_SWAP);
        let mut small = [0u64; 1];
        assert_eq!(parse_entries(&bytes, &mut small), 1);
        assert_eq!(parse_entries(&[], &mut out), 0);
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        let mut pm = Pagemap::open(me).unwrap();
        let mut local = [0u8; 64];
        local[0] = 1;
        let local = std::hint::black_box(&mut local);
        let addr = local.as_ptr() as u64;
        let e = pm.entry(addr).unwrap();
        assert!(e.present(), "{e:?}");
        assert!(!e.file_or_shared_anon());
        // We run as root: the PFN is visible.
        assert!(e.pfn().unwrap() != 0);

        // A heap buffer of several batches: touched pages are present.
        let pages = Pagemap::BATCH + 3;
        let mut v = vec![0u8; (pages + 1) * PAGE_SIZE as usize];
        let base = (v.as_ptr() as u64).next_multiple_of(PAGE_SIZE);
        let off = (base - v.as_ptr() as u64) as usize;
        for i in 0..pages {
            v[off + i * PAGE_SIZE as usize] = 1;
        }
        let v = std::hint::black_box(v);
        let mut out = vec![0u64; pages + 10];
        let n = pm.read_range(base, base + pages as u64 * PAGE_SIZE, &mut out).unwrap();
        assert_eq!(n, pages);
        assert!(out[..n].iter().all(|&x| PagemapEntry(x).present()));
        // The buffer bounds the count.
        let n = pm.read_range(base, base + pages as u64 * PAGE_SIZE, &mut out[..5]).unwrap();
        assert_eq!(n, 5);
        drop(v);

        // Past the end of the user address space the kernel returns nothing.
        let top = 0xffff_ffff_ff60_0000u64;
        let n = pm.read_range(top, top + PAGE_SIZE, &mut out).unwrap();
        assert!(n <= 1);
        assert!(pm.read_range(1, 4096, &mut out).is_err());
        assert!(pm.read_range(8192, 4096, &mut out).is_err());
        assert_eq!(pm.pid(), me);
    }
}
