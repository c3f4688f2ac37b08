//! Probes about address spaces: the vDSO layout, pagemap, soft-dirty.
use super::util::{errno_why, human_size, io_why, read_maps};
use crate::sys::mm::Mapping;
use std::os::unix::fs::FileExt;

const PAGE: usize = 4096;
/// pagemap(5) entry bits.
const PM_PRESENT: u64 = 1 << 63;
const PM_SOFT_DIRTY: u64 = 1 << 55;
const PM_GUARD_REGION: u64 = 1 << 58;
const PM_PFN_MASK: u64 = (1 << 55) - 1;

/// The special mappings the restorer must place (vDSO and its data pages),
/// in address order with their sizes.
pub fn probe_vdso_layout() -> Result<String, String> {
    let maps = read_maps("self")?;
    let special: Vec<_> = maps
        .iter()
        .filter(|m| matches!(m.name.as_str(), "[vdso]" | "[vsyscall]") || m.name.starts_with("[vvar"))
        .collect();
    if !special.iter().any(|m| m.name == "[vdso]") {
        return Err("no [vdso] mapping in /proc/self/maps".to_string());
    }
    let parts: Vec<String> = special.iter().map(|m| format!("{} {}", m.name, human_size(m.end - m.start))).collect();
    let around: Vec<_> = special.iter().filter(|m| m.name != "[vsyscall]").collect();
    let contiguous = around.windows(2).all(|w| w[0].end == w[1].start);
    let mut s = parts.join(", ");
    if around.len() > 1 {
        s.push_str(if contiguous { " (contiguous)" } else { " (not contiguous)" });
    }
    Ok(s)
}

/// One private anonymous page of our own, untouched by anything else.
struct ScratchPage(Mapping);

impl ScratchPage {
    fn new() -> Result<ScratchPage, String> {
        Mapping::anonymous(PAGE).map(ScratchPage).map_err(|e| errno_why("mmap of a scratch page", e, &[]))
    }
    fn addr(&self) -> u64 {
        self.0.addr()
    }
    /// Writes to the page. Its address escapes through `black_box`, so the
    /// store cannot be moved past the next syscall.
    fn dirty(&mut self, v: u8) {
        let page = std::hint::black_box(self.0.as_mut_slice());
        page[0] = v;
        std::hint::black_box(page);
    }
}

/// One pagemap(5) entry of this process.
fn pagemap_entry(pm: &std::fs::File, addr: u64) -> Result<u64, String> {
    let mut e = [0u8; 8];
    pm.read_exact_at(&mut e, addr / PAGE as u64 * 8).map_err(|e| io_why("reading /proc/self/pagemap", &e))?;
    Ok(u64::from_le_bytes(e))
}

/// /proc/self/pagemap: a touched page reads as present.
pub fn probe_pagemap() -> Result<String, String> {
    let pm = std::fs::File::open("/proc/self/pagemap").map_err(|e| io_why("opening /proc/self/pagemap", &e))?;
    let mut page = ScratchPage::new()?;
    page.dirty(1);
    let e = pagemap_entry(&pm, page.addr())?;
    if e & PM_PRESENT == 0 {
        return Err(format!("a touched page reads as not present (entry {e:#x})"));
    }
    let pfn = if e & PM_PFN_MASK != 0 { "PFNs visible" } else { "PFNs hidden (needs CAP_SYS_ADMIN)" };
    Ok(format!("touched page present, {pfn}"))
}

/// The zero page's PFN: private pages that map it are holes, not data.
/// Two read-faulted pages of a fresh anonymous mapping must show the same
/// present PFN.
pub fn probe_zero_page() -> Result<String, String> {
    let pm = std::fs::File::open("/proc/self/pagemap").map_err(|e| io_why("opening /proc/self/pagemap", &e))?;
    let m = Mapping::anonymous(2 * PAGE).map_err(|e| errno_why("mmap of two scratch pages", e, &[]))?;
    let pages = std::hint::black_box(m.as_slice());
    let sum = u32::from(pages[0]) + u32::from(pages[PAGE]);
    std::hint::black_box(sum);
    let a = pagemap_entry(&pm, m.addr())?;
    let b = pagemap_entry(&pm, m.addr() + PAGE as u64)?;
    if a & PM_PRESENT == 0 || b & PM_PRESENT == 0 {
        return Err("read-faulted anonymous pages are not present (no zero page mapping?)".to_string());
    }
    let (pa, pb) = (a & PM_PFN_MASK, b & PM_PFN_MASK);
    if pa == 0 {
        return Err("PFNs are hidden in pagemap (needs CAP_SYS_ADMIN)".to_string());
    }
    if pa != pb {
        return Err(format!("two read-faulted pages have different PFNs {pa:#x} and {pb:#x}"));
    }
    // /proc/kpageflags (root only) names the zero page: KPF_ZERO_PAGE, bit 24.
    let mut flags = [0u8; 8];
    let kpf = std::fs::File::open("/proc/kpageflags").and_then(|f| f.read_exact_at(&mut flags, pa * 8));
    match kpf {
        Ok(()) if u64::from_le_bytes(flags) & (1 << 24) == 0 => {
            Err(format!("PFN {pa:#x} of a read-faulted page is not KPF_ZERO_PAGE in /proc/kpageflags"))
        }
        Ok(()) => Ok(format!("zero page PFN {pa:#x} (KPF_ZERO_PAGE in kpageflags)")),
        Err(_) => Ok(format!("zero page PFN {pa:#x}")),
    }
}

/// Guard regions (MADV_GUARD_INSTALL, Linux 6.13+) and their pagemap bit
/// 58 (Linux 6.14+): the dump finds guards by that bit and installs them
/// again at restore.
pub fn probe_guard_regions() -> Result<String, String> {
    let pm = std::fs::File::open("/proc/self/pagemap").map_err(|e| io_why("opening /proc/self/pagemap", &e))?;
    let m = Mapping::anonymous(2 * PAGE).map_err(|e| errno_why("mmap of two scratch pages", e, &[]))?;
    let guard = m.addr() + PAGE as u64;
    // SAFETY: our own scratch mapping, never touched through its second page.
    unsafe { crate::sys::mm::madvise(guard, PAGE, crate::sys::mm::Advice::MADV_GUARD_INSTALL) }
        .map_err(|e| errno_why("MADV_GUARD_INSTALL", e, &[]))?;
    let (plain, marked) = (pagemap_entry(&pm, m.addr())?, pagemap_entry(&pm, guard)?);
    if plain & PM_GUARD_REGION != 0 || marked & PM_GUARD_REGION == 0 {
        return Err(format!(
            "pagemap bit 58 does not mark the guard page (entries {plain:#x}, {marked:#x}): guards would be lost"
        ));
    }
    Ok("MADV_GUARD_INSTALL works, pagemap bit 58 marks guard pages".to_string())
}

/// PR_GET_MDWE answers: a task's memory-deny-write-execute setting can be
/// read (dumped) and set again (Linux 6.3).
pub fn probe_mdwe() -> Result<String, String> {
    match crate::sys::misc::get_mdwe() {
        Ok(v) => Ok(format!("PR_GET_MDWE works (crtools' own flags: {v:#x})")),
        Err(e) => Err(errno_why(
            "prctl(PR_GET_MDWE)",
            e,
            &[(crate::sys::Errno::EINVAL, "kernel before 6.3: no task can be under memory-deny-write-execute")],
        )),
    }
}

/// Soft-dirty tracking: after `clear_refs 4` the bit is 0, after a write 1.
/// Without CONFIG_MEM_SOFT_DIRTY the kernel accepts the clear but never sets
/// bit 55, which this tells apart from a clear that does not work.
pub fn probe_soft_dirty() -> Result<String, String> {
    let pm = std::fs::File::open("/proc/self/pagemap").map_err(|e| io_why("opening /proc/self/pagemap", &e))?;
    let mut page = ScratchPage::new()?;
    page.dirty(1);
    let fresh = pagemap_entry(&pm, page.addr())?;
    // clear_refs of this process only: clears soft-dirty bits and
    // write-protects our pages so the next write faults and sets the bit.
    std::fs::write("/proc/self/clear_refs", b"4").map_err(|e| io_why("writing 4 to /proc/self/clear_refs", &e))?;
    let cleared = pagemap_entry(&pm, page.addr())?;
    page.dirty(2);
    let written = pagemap_entry(&pm, page.addr())?;
    if written & PM_PRESENT == 0 {
        return Err(format!("the scratch page is not present after a write (entry {written:#x})"));
    }
    let sd = |e: u64| e & PM_SOFT_DIRTY != 0;
    soft_dirty_verdict(sd(fresh), sd(cleared), sd(written))
}

/// Write tracking for pre-dumps without soft-dirty: a userfaultfd with
/// WP_ASYNC and WP_UNPOPULATED registered on a scratch mapping, and
/// PAGEMAP_SCAN finding exactly the page written after protection (and
/// protecting it again with PM_SCAN_WP_MATCHING).
pub fn probe_uffd_wp_tracking() -> Result<String, String> {
    use crate::sys::uffd;
    use std::os::fd::AsFd;
    let fd = uffd::userfaultfd(uffd::UFFD_USER_MODE_ONLY | 0o2000000 | 0o4000)
        .map_err(|e| errno_why("userfaultfd", e, &[]))?;
    let want = crate::objects::mem_track::FEATURES;
    let got =
        uffd::api(fd.as_fd(), want).map_err(|e| errno_why("UFFDIO_API with WP_ASYNC and WP_UNPOPULATED", e, &[]))?;
    if got & want != want {
        return Err(format!("userfaultfd lacks WP_ASYNC or WP_UNPOPULATED (features {got:#x})"));
    }
    let mut m = Mapping::anonymous(4 * PAGE).map_err(|e| errno_why("mmap of scratch pages", e, &[]))?;
    let (start, end) = (m.addr(), m.addr() + 4 * PAGE as u64);
    std::hint::black_box(m.as_mut_slice())[0] = 1;
    crate::objects::mem_track::arm(fd.as_fd(), start, end)
        .map_err(|e| errno_why("registering and write-protecting a scratch mapping", e, &[]))?;
    // Page 2 is written after protection (it was never populated).
    std::hint::black_box(m.as_mut_slice())[2 * PAGE] = 1;
    let pm = std::fs::File::open("/proc/self/pagemap").map_err(|e| io_why("opening /proc/self/pagemap", &e))?;
    let q = |wp: bool| uffd::ScanQuery {
        flags: (uffd::PM_SCAN_CHECK_WPASYNC | if wp { uffd::PM_SCAN_WP_MATCHING } else { 0 }) as u64,
        category_mask: uffd::PAGE_IS_WRITTEN as u64,
        anyof_mask: 0,
        return_mask: uffd::PAGE_IS_WRITTEN as u64,
    };
    let scan = |wp| {
        crate::objects::mem_track::scan(pm.as_fd(), start, end, q(wp))
            .map_err(|e| errno_why("PAGEMAP_SCAN with PM_SCAN_CHECK_WPASYNC", e, &[]))
    };
    let first = scan(true)?;
    let second = scan(false)?;
    let written: Vec<(u64, u64)> =
        first.iter().map(|r| ((r.start - start) / PAGE as u64, (r.end - start) / PAGE as u64)).collect();
    if written != [(2, 3)] || !second.is_empty() {
        return Err(format!("PAGEMAP_SCAN saw written pages {written:?} (expected page 2), then {} region(s) after protecting them again", second.len()));
    }
    Ok("userfaultfd WP_ASYNC + WP_UNPOPULATED, PAGEMAP_SCAN finds and re-protects written pages".to_string())
}

/// The soft-dirty verdict from bit 55 of a new page, the page after
/// `clear_refs 4`, and after a write that followed.
fn soft_dirty_verdict(fresh: bool, cleared: bool, written: bool) -> Result<String, String> {
    let b = u8::from;
    let bits = format!("bit 55: new {} / cleared {} / written {}", b(fresh), b(cleared), b(written));
    match (fresh, cleared, written) {
        (_, false, true) => Ok(format!("tracks writes ({bits})")),
        (false, false, false) => {
            Err(format!("pagemap bit 55 is never set: kernel without CONFIG_MEM_SOFT_DIRTY ({bits})"))
        }
        (_, true, _) => Err(format!("clear_refs 4 does not clear the soft-dirty bit ({bits})")),
        _ => Err(format!("a write after clear_refs does not set the soft-dirty bit ({bits})")),
    }
}

/// /proc/sys/kernel/shm_next_id: a restore makes each SysV shared memory
/// segment again with its id. Read only: writing it would pick the next
/// segment's id for whoever creates one.
pub fn probe_sysv_shm_next_id() -> Result<String, String> {
    let path = "/proc/sys/kernel/shm_next_id";
    let v = std::fs::read_to_string(path).map_err(|e| io_why(path, &e))?;
    // Its mode says read-only; the kernel lets CAP_CHECKPOINT_RESTORE
    // write it (checked at open, so opening and closing changes nothing).
    std::fs::OpenOptions::new().write(true).open(path).map_err(|e| {
        format!("{}: not writable here (CAP_CHECKPOINT_RESTORE, CONFIG_CHECKPOINT_RESTORE)", io_why(path, &e))
    })?;
    Ok(format!("{path} is {} and writable by crtools", v.trim()))
}

/// msgrcv(MSG_COPY) (CONFIG_CHECKPOINT_RESTORE): `-n ipc` copies each
/// queued message without taking it. Tried in a private IPC namespace of a
/// thread of ours (nothing shows in the system's), which goes with it.
pub fn probe_sysv_msg_copy() -> Result<String, String> {
    use crate::sys::clone::{unshare, CloneFlags};
    use crate::sys::ipc;
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWIPC).map_err(|e| format!("unshare(CLONE_NEWIPC): {e}"))?;
            let q = ipc::msgget(ipc::IPC_PRIVATE, ipc::IPC_CREAT | 0o600).map_err(|e| format!("msgget: {e}"))?;
            ipc::msgsnd(q, 7, b"crtools").map_err(|e| format!("msgsnd: {e}"))?;
            let mut buf = [0u8; 64];
            let got = ipc::msg_copy(q, 0, &mut buf);
            let left = ipc::msg_stat_index(0).map(|(_, ds)| ds.qnum);
            let _ = ipc::msg_rmid(q);
            match (got, left) {
                (Ok((7, text)), Ok(1)) if text == b"crtools" => {
                    Ok("copies a queued message (type 7) and leaves it queued".to_string())
                }
                (Ok(m), l) => Err(format!("copied {m:?}, queue holds {l:?} messages after")),
                (Err(e), _) => Err(format!("msgrcv(MSG_COPY): {e} (a kernel without CONFIG_CHECKPOINT_RESTORE)")),
            }
        })
        .join()
        .unwrap_or_else(|_| Err("the probe thread panicked".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_dirty_verdicts() {
        // A kernel with CONFIG_MEM_SOFT_DIRTY: new VMAs are soft-dirty,
        // clear_refs clears, the write sets it again.
        assert!(soft_dirty_verdict(true, false, true).unwrap().starts_with("tracks writes"));
        assert!(soft_dirty_verdict(false, false, false).unwrap_err().contains("CONFIG_MEM_SOFT_DIRTY"));
        assert!(soft_dirty_verdict(true, true, true).unwrap_err().contains("does not clear"));
        assert!(soft_dirty_verdict(true, false, false).unwrap_err().contains("does not set"));
    }
}
