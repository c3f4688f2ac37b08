//! Hugetlb memory (MAP_HUGETLB): anonymous private and shared mappings.
//!
//! Dump: a hugetlb VMA is an ordinary anonymous one (objects::mm) that
//! also records its huge page size (smaps `KernelPageSize`, VmFlags `ht`).
//! Its page data stays in 4 KiB pagemap units: pagemap reports hugetlb
//! memory per 4 KiB entry and process_vm_readv reads it; shared objects are
//! read from their hugetlbfs file like other shared memory (holes read
//! back as zeros without allocating a page). As for any anonymous memory,
//! 4 KiB pages that are all zeros are not stored, so a huge page that
//! holds only zeros is not populated again after restore.
//!
//! Restore: mappings are made with MAP_HUGETLB and the MAP_HUGE_* size
//! ([`map_flags`]), at the same address. A restored task that touches a
//! hugetlb page when the pool has none left gets SIGBUS: so before
//! anything is created, [`check_pool`] makes sure the pool of each size can
//! give what the restore takes (see [`needs`]), and refuses the restore,
//! naming the size and the counts, if it cannot.
//!
//! Pool files: Documentation/admin-guide/mm/hugetlbpage.rst
//! (`/sys/kernel/mm/hugepages/hugepages-<size>kB/`).
use crate::error::{Error, Result};
use crate::image::mm::{MapFlags, Vma, VmaKind};
use crate::image::pagemap::PagemapEntry;
use crate::sys::Pid;
use std::collections::{BTreeMap, BTreeSet};

/// Base page size.
const PAGE: u64 = 4096;
/// `MAP_HUGE_SHIFT`: the log2 of the huge page size goes in bits 26..32.
pub const MAP_HUGE_SHIFT: u32 = linux_raw_sys::general::MAP_HUGE_SHIFT;

/// The mmap flags that make hugetlb memory of `size` bytes per page:
/// MAP_HUGETLB with the MAP_HUGE_* encoding of the size.
pub fn map_flags(size: u64) -> u32 {
    MapFlags::MAP_HUGETLB.bits() | (size.trailing_zeros() << MAP_HUGE_SHIFT)
}

/// A huge page size the image may hold: a power of two above 4 KiB, at
/// most 16 GiB (x86_64 has 2 MiB and 1 GiB).
pub fn valid_size(size: u64) -> bool {
    size.is_power_of_two() && size > PAGE && size <= 16 << 30
}

/// Size as the kernel names its pool directory (`2048kB`).
pub fn size_name(size: u64) -> String {
    format!("{}kB", size >> 10)
}

/// The pool of one huge page size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    /// `free_hugepages`: pages not in use (reserved ones included).
    pub free: u64,
    /// `resv_hugepages`: free pages promised to mappings already made.
    pub resv: u64,
    /// `nr_overcommit_hugepages`: surplus pages the kernel may add.
    pub overcommit: u64,
    /// `surplus_hugepages`: surplus pages added so far.
    pub surplus: u64,
}

impl Pool {
    /// Reads the pool of `size`-byte pages; None if this kernel has no
    /// such page size.
    pub fn read(size: u64) -> std::io::Result<Option<Pool>> {
        let dir = std::path::PathBuf::from(format!("/sys/kernel/mm/hugepages/hugepages-{}", size_name(size)));
        if !dir.exists() {
            return Ok(None);
        }
        let num = |f: &str| -> std::io::Result<u64> {
            let text = std::fs::read_to_string(dir.join(f))?;
            text.trim().parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{f}: {e}")))
        };
        Ok(Some(Pool {
            free: num("free_hugepages")?,
            resv: num("resv_hugepages")?,
            overcommit: num("nr_overcommit_hugepages")?,
            surplus: num("surplus_hugepages")?,
        }))
    }

    /// Pages new reservations and faults may still take (the kernel's
    /// hugetlb_acct_memory: free but not reserved, plus the surplus pages
    /// it may still allocate).
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.resv) + self.overcommit.saturating_sub(self.surplus)
    }
}

/// What one task's images say about its hugetlb memory.
pub struct TaskMem<'a> {
    pub pid: Pid,
    pub vmas: &'a [Vma],
    pub pagemap: &'a [PagemapEntry],
}

/// A shared hugetlb object as [`needs`] counts it.
struct Object {
    /// Huge page size.
    page: u64,
    /// Its size: the furthest any VMA maps.
    size: u64,
    /// Every VMA mapping it was made with MAP_NORESERVE.
    noreserve: bool,
    /// Huge pages holding data, by index in the object.
    filled: BTreeSet<u64>,
}

/// Huge pages of each size (bytes) the restore takes from the pool:
///
/// - a mapping made without MAP_NORESERVE reserves all its pages when it
///   is made (private: the VMA; shared: the whole object, once, whoever
///   maps it);
/// - one with MAP_NORESERVE takes only the pages that are filled: the huge
///   pages holding stored data (a shared object's counted once).
pub fn needs(tasks: &[TaskMem<'_>]) -> Result<BTreeMap<u64, u64>> {
    let mut out: BTreeMap<u64, u64> = BTreeMap::new();
    let mut objects: BTreeMap<(u64, u64), Object> = BTreeMap::new();
    for t in tasks {
        let data: Vec<(u64, u64)> =
            t.pagemap.iter().filter(|e| e.has_data()).map(|e| (e.vaddr, e.vaddr + e.nr_pages as u64 * PAGE)).collect();
        for v in t.vmas.iter().filter(|v| v.is_hugetlb()) {
            let hps = v.huge_page_size;
            if !valid_size(hps)
                || !v.start.is_multiple_of(hps)
                || !v.end.is_multiple_of(hps)
                || !v.pgoff.is_multiple_of(hps)
            {
                return Err(Error::task(
                    t.pid,
                    format!("hugetlb VMA {:#x}-{:#x}: bad huge page size {hps:#x} or alignment", v.start, v.end),
                ));
            }
            if !matches!(v.kind, VmaKind::Anon | VmaKind::SharedAnon) {
                return Err(Error::task(
                    t.pid,
                    format!("VMA {:#x}-{:#x}: a {} mapping cannot be hugetlb", v.start, v.end, v.kind.name()),
                ));
            }
            let noreserve = v.flags.contains(MapFlags::MAP_NORESERVE);
            // Huge pages of the VMA holding data, by index from its start.
            let mut filled = BTreeSet::new();
            for &(s, e) in &data {
                let (s, e) = (s.max(v.start), e.min(v.end));
                if s < e {
                    filled.extend((s - v.start) / hps..=(e - 1 - v.start) / hps);
                }
            }
            match v.kind {
                VmaKind::SharedAnon => {
                    let o = objects.entry((v.dev, v.inode)).or_insert(Object {
                        page: hps,
                        size: 0,
                        noreserve: true,
                        filled: BTreeSet::new(),
                    });
                    if o.page != hps {
                        return Err(Error::task(
                            t.pid,
                            format!("hugetlb object {} mapped with two page sizes", v.inode),
                        ));
                    }
                    o.size = o.size.max(v.pgoff + (v.end - v.start));
                    o.noreserve &= noreserve;
                    o.filled.extend(filled.into_iter().map(|i| i + v.pgoff / hps));
                }
                _ => {
                    let n = if noreserve { filled.len() as u64 } else { (v.end - v.start) / hps };
                    *out.entry(hps).or_default() += n;
                }
            }
        }
    }
    for o in objects.into_values() {
        let n = if o.noreserve { o.filled.len() as u64 } else { o.size / o.page };
        *out.entry(o.page).or_default() += n;
    }
    out.retain(|_, n| *n > 0);
    Ok(out)
}

/// Refuses the restore, before anything is created, if the pool of some
/// huge page size cannot give what [`needs`] counts.
pub fn check_pool(tasks: &[TaskMem<'_>]) -> Result<()> {
    for (hps, n) in needs(tasks)? {
        let name = size_name(hps);
        let pool = Pool::read(hps)
            .map_err(|e| Error::new(format!("read the pool of {name} huge pages: {e}")))?
            .ok_or_else(|| {
                Error::new(format!("the images hold hugetlb memory of {name} pages; this kernel has no such page size"))
            })?;
        log::debug!("hugetlb {name}: the restore needs {n} pages, the pool has {pool:?}");
        if pool.available() < n {
            return Err(Error::new(format!(
                "hugetlb: the restore needs {n} free huge pages of {name}, the pool has {} \
                 (free_hugepages {}, resv_hugepages {}, overcommit {} of which {} used): \
                 raise /sys/kernel/mm/hugepages/hugepages-{name}/nr_hugepages",
                pool.available(),
                pool.free,
                pool.resv,
                pool.overcommit,
                pool.surplus
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::mm::{Prot, VmaStatus};
    use crate::image::pagemap::PagemapFlags;

    const HUGE: u64 = 2 << 20;

    fn vma(start: u64, pages: u64, kind: VmaKind, flags: MapFlags) -> Vma {
        Vma {
            start,
            end: start + pages * HUGE,
            prot: Prot::PROT_READ | Prot::PROT_WRITE,
            flags,
            kind,
            status: VmaStatus::VMA_REGULAR,
            dev: 15,
            inode: start,
            huge_page_size: HUGE,
            ..Default::default()
        }
    }

    fn pe(vaddr: u64, nr: u32) -> PagemapEntry {
        PagemapEntry::new(vaddr, nr, PagemapFlags::PE_PRESENT)
    }

    #[test]
    fn flags_encode_the_page_size() {
        assert_eq!(map_flags(2 << 20), 0x40000 | (21 << 26));
        assert_eq!(map_flags(1 << 30), 0x40000 | (30 << 26));
        assert!(valid_size(2 << 20) && valid_size(1 << 30) && !valid_size(4096) && !valid_size(3 << 20));
        assert_eq!(size_name(2 << 20), "2048kB");
    }

    #[test]
    fn needs_count_reservations_and_filled_pages() {
        let a = 0x4000_0000;
        let private = vma(a, 4, VmaKind::Anon, MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS);
        let lazy = vma(
            a + 8 * HUGE,
            4,
            VmaKind::Anon,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_NORESERVE,
        );
        let mut shared = vma(
            a + 16 * HUGE,
            3,
            VmaKind::SharedAnon,
            MapFlags::MAP_SHARED | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_NORESERVE,
        );
        shared.inode = 77;
        // Two 4 KiB pages in the first huge page of `lazy`, one straddling
        // its 2nd and 3rd; shared: huge page 0 in one task, 2 in the other.
        let pm1 = [pe(a, 1), pe(a + 8 * HUGE, 2), pe(a + 10 * HUGE - PAGE, 2), pe(a + 16 * HUGE, 1)];
        let pm2 = [pe(a + 18 * HUGE + PAGE, 1), pe(a + 16 * HUGE, 1)];
        let v1 = [private.clone(), lazy, shared.clone()];
        let v2 = [shared.clone()];
        let tasks =
            [TaskMem { pid: Pid(1), vmas: &v1, pagemap: &pm1 }, TaskMem { pid: Pid(2), vmas: &v2, pagemap: &pm2 }];
        // 4 reserved + 3 filled + 2 of the object.
        assert_eq!(needs(&tasks).unwrap().into_iter().collect::<Vec<_>>(), vec![(HUGE, 9)]);
        // Without MAP_NORESERVE the whole object is reserved, once.
        shared.flags -= MapFlags::MAP_NORESERVE;
        let v2 = [shared];
        let tasks =
            [TaskMem { pid: Pid(1), vmas: &v1, pagemap: &pm1 }, TaskMem { pid: Pid(2), vmas: &v2, pagemap: &pm2 }];
        assert_eq!(needs(&tasks).unwrap()[&HUGE], 10);
        let mut bad = private;
        bad.start += PAGE;
        let v = [bad];
        assert!(needs(&[TaskMem { pid: Pid(1), vmas: &v, pagemap: &[] }]).is_err());
        // Only anonymous memory is hugetlb here.
        let file = Vma { kind: VmaKind::File, ..v1[0].clone() };
        let v = [file];
        assert!(needs(&[TaskMem { pid: Pid(1), vmas: &v, pagemap: &[] }]).is_err());
    }

    #[test]
    fn available_pages() {
        let p = Pool { free: 10, resv: 4, overcommit: 3, surplus: 1 };
        assert_eq!(p.available(), 8);
        assert_eq!(Pool { free: 1, resv: 2, ..Default::default() }.available(), 0);
    }
}
