//! Native AIO contexts: io_setup(2), io_submit(2), io_getevents(2).
//!
//! A context is a ring the kernel maps into the address space
//! (`/[aio] (deleted)` in maps) and shares with the program: a header
//! (`struct aio_ring` in fs/aio.c: id, nr, head, tail, magic, features,
//! header length) followed by `nr` completion events. The ring's address is
//! the context id (`aio_context_t`) the program holds; `id` is the context's
//! slot in the address space's table, which the kernel finds it by.
//!
//! Dump: each ring VMA becomes a [`VmaKind::AioRing`] whose pages (header
//! and events, reaped or not) are dumped like anonymous memory, and an
//! [`AioRing`] record of the mm head keeps the header as it was. A ring
//! whose header is not the layout this code knows, that was resized,
//! partly unmapped or mprotect'ed, is refused by name.
//!
//! Restore: the ring's pages are read into an ordinary mapping at the
//! ring's address; the restorer blob then creates each context with
//! io_setup in slot order (placeholders for free slots, so each gets its
//! dumped `id`), moves the kernel's tail where it was with requests that
//! complete at once, copies the events, sets the head and moves the new
//! ring onto the old address with mremap (the kernel follows a moved ring:
//! the program's context id keeps working). See `restorer_plan::AioRing`.
//!
//! Requests still in flight (submitted, not completed) cannot be restored.
//! One that completes during the dump moves the tail, which [`recheck`]
//! sees once the pages are dumped: the dump is refused. One that stays
//! pending (an IOCB_CMD_POLL waiting for its file) is not seen: the kernel
//! counts requests only inside the context (`reqs_available` and per-CPU
//! caches), nothing under /proc shows them, and every in-task probe
//! (io_cancel, requests of our own) would change the ring. Such a request
//! is lost by a restore: its completion never comes (see README).
use crate::error::{Context, Error, Result};
use crate::image::mm::{AioRing, MmEntry, Prot, Vma, VmaKind};
use crate::restore::plan::PlanBuilder;
use crate::sys::Pid;
use restorer_plan as rp;

/// `AIO_RING_MAGIC`.
pub const AIO_RING_MAGIC: u32 = 0xa10a_10a1;
/// `AIO_RING_COMPAT_FEATURES`.
pub const AIO_RING_COMPAT_FEATURES: u32 = 1;
/// `AIO_RING_INCOMPAT_FEATURES`.
pub const AIO_RING_INCOMPAT_FEATURES: u32 = 0;
/// `sizeof(struct aio_ring)`: the header before the events.
pub const AIO_RING_HEADER: u32 = 32;
/// `sizeof(struct io_event)`.
pub const IO_EVENT: u32 = 32;
const PAGE: u64 = 4096;
/// Highest context slot a restore recreates (the kernel's table grows by
/// fours; slots past this mean thousands of contexts).
pub const MAX_AIO_ID: u32 = 4095;

/// Bytes of a ring with `nr` event slots (the kernel fills whole pages).
pub fn ring_len(nr: u32) -> u64 {
    (AIO_RING_HEADER as u64 + nr as u64 * IO_EVENT as u64).div_ceil(PAGE) * PAGE
}

/// Event slots of a ring of `len` bytes.
pub fn ring_nr(len: u64) -> u64 {
    len.saturating_sub(AIO_RING_HEADER as u64) / IO_EVENT as u64
}

/// The event slots io_setup(`nr_events`) gives on a kernel with
/// `possible_cpus` possible CPUs (`ioctx_alloc` and `aio_setup_ring`):
/// at least four per CPU, doubled (per-CPU caches hold half), two more for
/// the head/tail overlap, rounded up to whole pages.
pub fn kernel_ring_nr(nr_events: u32, possible_cpus: u32) -> u64 {
    let events = (nr_events as u64).max(possible_cpus as u64 * 4) * 2 + 2;
    ring_nr(ring_len_for_events(events))
}

fn ring_len_for_events(events: u64) -> u64 {
    (AIO_RING_HEADER as u64 + events * IO_EVENT as u64).div_ceil(PAGE) * PAGE
}

/// The smallest nr_events that makes a ring of `nr` slots (when the
/// per-CPU minimum does not make it bigger): what the program asked for is
/// kept nowhere the kernel shows, and the smallest counts least against
/// the system's aio-max-nr.
pub fn nr_req_for(nr: u32) -> u32 {
    let pages = ring_len(nr) / PAGE;
    if pages <= 1 {
        return 1;
    }
    // More events than one page less holds.
    let smaller = ring_nr((pages - 1) * PAGE);
    (smaller.saturating_sub(2) / 2 + 1) as u32
}

/// Reads the header of every AIO ring among `vmas` (the task is frozen),
/// refusing rings this code cannot give back exactly.
pub fn dump(pid: Pid, vmas: &[Vma]) -> Result<Vec<AioRing>> {
    let mut out = Vec::new();
    for v in vmas.iter().filter(|v| v.kind == VmaKind::AioRing) {
        let refuse = |what: String| Error::refuse(pid, format!("AIO context {:#x}: {what}", v.start));
        if v.prot != Prot::PROT_READ | Prot::PROT_WRITE {
            let names: Vec<&str> = v.prot.iter_names().map(|(n, _)| n).collect();
            let prot = if names.is_empty() { "PROT_NONE".to_string() } else { names.join("|") };
            return Err(refuse(format!("its ring was mprotect'ed to {prot}: not supported")));
        }
        let h = crate::sys::process_vm::read_vec(pid, v.start, AIO_RING_HEADER as usize)
            .ctx(pid, &format!("read the header of AIO ring {:#x}", v.start))?;
        if h.len() != AIO_RING_HEADER as usize {
            return Err(Error::task(pid, format!("short read of the header of AIO ring {:#x}", v.start)));
        }
        let w = |i: usize| u32::from_ne_bytes(h[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        let ring = AioRing {
            addr: v.start,
            len: v.end - v.start,
            id: w(0),
            nr: w(1),
            head: w(2),
            tail: w(3),
            magic: w(4),
            compat_features: w(5),
            incompat_features: w(6),
            header_length: w(7),
            nr_req: 0,
        };
        if ring.magic != AIO_RING_MAGIC
            || ring.compat_features != AIO_RING_COMPAT_FEATURES
            || ring.incompat_features != AIO_RING_INCOMPAT_FEATURES
            || ring.header_length != AIO_RING_HEADER
        {
            return Err(refuse(format!(
                "unknown ring layout (magic {:#x}, features {}/{}, header {} bytes)",
                ring.magic, ring.compat_features, ring.incompat_features, ring.header_length
            )));
        }
        if ring.nr == 0 || ring_len(ring.nr) != ring.len || ring_nr(ring.len) != ring.nr as u64 {
            return Err(refuse(format!(
                "a ring of {} bytes for {} events: partly unmapped or moved apart",
                ring.len, ring.nr
            )));
        }
        // head is the program's to write; the kernel reads it modulo nr,
        // a restore would not bring such a value back.
        if ring.head >= ring.nr || ring.tail >= ring.nr {
            return Err(refuse(format!("head {} or tail {} outside its {} events", ring.head, ring.tail, ring.nr)));
        }
        if ring.id > MAX_AIO_ID {
            return Err(refuse(format!("context slot {} (more than {} contexts)", ring.id, MAX_AIO_ID + 1)));
        }
        if out.iter().any(|r: &AioRing| r.id == ring.id) {
            return Err(refuse(format!("two rings claim context slot {}", ring.id)));
        }
        log::debug!(task = pid.0; "task {pid}: AIO context {:#x}: {} events, head {}, tail {}, {} to reap",
            ring.addr, ring.nr, ring.head, ring.tail, ring.pending());
        out.push(AioRing { nr_req: nr_req_for(ring.nr), ..ring });
    }
    Ok(out)
}

/// Reads the rings' headers again once their pages are dumped (the task
/// still frozen): only the kernel moves a tail then, when a request that
/// was in flight completes. Such a context is refused by name.
pub fn recheck(pid: Pid, rings: &[AioRing]) -> Result<()> {
    for r in rings {
        let h = crate::sys::process_vm::read_vec(pid, r.addr, 16)
            .ctx(pid, &format!("read the header of AIO ring {:#x} again", r.addr))?;
        let word = |i: usize| h.get(i * 4..i * 4 + 4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
        let (head, tail) = (word(2), word(3));
        if head != Some(r.head) || tail != Some(r.tail) {
            return Err(Error::refuse(
                pid,
                format!(
                    "AIO context {:#x}: completions arrived while the task was frozen (tail {} then {:?}): \
                     it has requests in flight, which cannot be restored",
                    r.addr, r.tail, tail
                ),
            ));
        }
    }
    Ok(())
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`), which
/// sets the kernel's smallest ring.
pub fn possible_cpus() -> Result<u32> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").ctx_global("read the possible CPUs")?;
    parse_cpu_list(s.trim()).ok_or_else(|| Error::new(format!("bad CPU list {:?}", s.trim())))
}

/// Counts the CPUs of a list like `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let a = part.parse::<u32>().ok()?;
                (a, a)
            }
        };
        if b < a {
            return None;
        }
        n = n.checked_add(b - a + 1)?;
    }
    Some(n)
}

/// The AIO part of a task's restore plan: the contexts in slot order with
/// placeholders. Checks the records against the VMAs and that this kernel
/// makes rings of the dumped sizes.
pub fn plan(b: &mut PlanBuilder, pid: Pid, head: &MmEntry, vmas: &[Vma]) -> Result<()> {
    if head.aio.is_empty() {
        if let Some(v) = vmas.iter().find(|v| v.kind == VmaKind::AioRing) {
            return Err(Error::task(pid, format!("AIO ring VMA {:#x} without its context record", v.start)));
        }
        return Ok(());
    }
    let cpus = possible_cpus()?;
    let mut rings: Vec<&AioRing> = head.aio.iter().collect();
    rings.sort_by_key(|r| r.id);
    let mut table = Vec::new();
    for r in &rings {
        let bad = |what: String| Error::task(pid, format!("AIO context {:#x}: {what}", r.addr));
        if !vmas.iter().any(|v| v.kind == VmaKind::AioRing && v.start == r.addr && v.end - v.start == r.len) {
            return Err(bad("no ring VMA of its size at its address".into()));
        }
        if r.nr == 0 || ring_len(r.nr) != r.len || r.head >= r.nr || r.tail >= r.nr || r.id > MAX_AIO_ID {
            return Err(bad(format!(
                "inconsistent record (nr {}, head {}, tail {}, id {})",
                r.nr, r.head, r.tail, r.id
            )));
        }
        if r.nr_req == 0 || r.nr_req > r.nr {
            return Err(bad(format!("nr_req {} for {} events", r.nr_req, r.nr)));
        }
        if table.iter().any(|t: &rp::AioRing| t.addr != 0 && (t.id == r.id || t.addr == r.addr)) {
            return Err(bad(format!("context slot {} or its address listed twice", r.id)));
        }
        let made = kernel_ring_nr(r.nr_req, cpus);
        if made != r.nr as u64 {
            return Err(Error::refuse(
                pid,
                format!(
                    "AIO context {:#x}: this kernel ({cpus} possible CPUs) makes a ring of {made} events ({} bytes) \
                     for io_setup({}), the dumped ring had {} events ({} bytes): it cannot be recreated",
                    r.addr,
                    ring_len(made.min(u32::MAX as u64) as u32),
                    r.nr_req,
                    r.nr,
                    r.len
                ),
            ));
        }
        // Placeholders for the free slots before this one.
        for id in table.len() as u32..r.id {
            table.push(rp::AioRing { nr_req: 1, id, ..Default::default() });
        }
        table.push(rp::AioRing {
            addr: r.addr,
            len: r.len,
            nr_req: r.nr_req,
            nr: r.nr,
            id: r.id,
            head: r.head,
            tail: r.tail,
            _pad: 0,
            ctx: 0,
        });
    }
    b.plan.aio = b.add_table(&table);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_follow_the_kernel() {
        // io_setup(10) on 2 CPUs: 16 events doubled + 2 = 34, one page: 127 slots.
        assert_eq!(kernel_ring_nr(10, 2), 127);
        // io_setup(200): 402 events, 4 pages: 511 slots.
        assert_eq!(kernel_ring_nr(200, 2), 511);
        assert_eq!(ring_len(127), 4096);
        assert_eq!(ring_len(511), 4 * 4096);
        assert_eq!(ring_nr(4 * 4096), 511);
        // More possible CPUs make a bigger smallest ring.
        assert_eq!(kernel_ring_nr(10, 64), ring_nr(5 * 4096));
    }

    #[test]
    fn nr_req_gives_the_same_ring_and_is_the_smallest() {
        for cpus in [1u32, 2, 4] {
            for asked in 1..3000u32 {
                let nr = kernel_ring_nr(asked, cpus) as u32;
                let req = nr_req_for(nr);
                assert!(req <= asked.max(1), "asked {asked}, nr {nr}, req {req}");
                assert_eq!(kernel_ring_nr(req, cpus), nr as u64, "asked {asked} on {cpus} cpus");
                if req > 1 {
                    assert_ne!(kernel_ring_nr(req - 1, 1), nr as u64, "req {req} is not the smallest");
                }
            }
        }
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    fn ring(id: u32, addr: u64) -> AioRing {
        AioRing {
            addr,
            len: 4096,
            id,
            nr: 127,
            head: 3,
            tail: 5,
            magic: AIO_RING_MAGIC,
            compat_features: 1,
            incompat_features: 0,
            header_length: 32,
            nr_req: 1,
        }
    }

    fn ring_vma(addr: u64) -> Vma {
        Vma {
            start: addr,
            end: addr + 4096,
            prot: Prot::PROT_READ | Prot::PROT_WRITE,
            kind: VmaKind::AioRing,
            ..Default::default()
        }
    }

    #[test]
    fn plan_orders_by_slot_with_placeholders() {
        if possible_cpus().map(|c| kernel_ring_nr(1, c) != 127).unwrap_or(true) {
            return; // a machine whose smallest ring is bigger
        }
        let head = MmEntry { aio: vec![ring(3, 0x20000), ring(1, 0x10000)], ..Default::default() };
        let vmas = vec![ring_vma(0x10000), ring_vma(0x20000)];
        let mut b = PlanBuilder::new();
        plan(&mut b, Pid(1), &head, &vmas).unwrap();
        assert_eq!(b.plan.aio.nr, 4);
        let t = b.plan.aio;
        let arena = b.finish();
        // The table follows the fixed part: read it back.
        let entries: Vec<rp::AioRing> = (0..t.nr as usize)
            .map(|i| {
                let at = t.off as usize + i * std::mem::size_of::<rp::AioRing>();
                let bytes = &arena[at..at + std::mem::size_of::<rp::AioRing>()];
                // SAFETY: the arena holds `nr` AioRing entries (plain data) at `off`, in bounds (sliced).
                unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const rp::AioRing) }
            })
            .collect();
        let ids: Vec<(u32, u64)> = entries.iter().map(|e| (e.id, e.addr)).collect();
        assert_eq!(ids, vec![(0, 0), (1, 0x10000), (2, 0), (3, 0x20000)]);
        assert_eq!((entries[1].head, entries[1].tail, entries[1].nr), (3, 5, 127));
    }

    #[test]
    fn plan_checks_records() {
        let vmas = vec![ring_vma(0x10000)];
        let mut b = PlanBuilder::new();
        let head = MmEntry { aio: vec![ring(0, 0x30000)], ..Default::default() };
        let e = plan(&mut b, Pid(1), &head, &vmas).unwrap_err().to_string();
        assert!(e.contains("no ring VMA"), "{e}");
        let mut r = ring(0, 0x10000);
        r.tail = 127;
        let head = MmEntry { aio: vec![r], ..Default::default() };
        let e = plan(&mut b, Pid(1), &head, &vmas).unwrap_err().to_string();
        assert!(e.contains("inconsistent"), "{e}");
        let e = plan(&mut b, Pid(1), &MmEntry::default(), &vmas).unwrap_err().to_string();
        assert!(e.contains("without its context record"), "{e}");
        if possible_cpus().map(|c| kernel_ring_nr(1, c) == 127).unwrap_or(false) {
            let head = MmEntry { aio: vec![ring(0, 0x10000), ring(1, 0x10000)], ..Default::default() };
            let e = plan(&mut b, Pid(1), &head, &vmas).unwrap_err().to_string();
            assert!(e.contains("listed twice"), "{e}");
        }
        // A ring this kernel would make bigger for the same request: refused clearly.
        let mut r = ring(0, 0x10000);
        r.nr_req = 127;
        let head = MmEntry { aio: vec![r], ..Default::default() };
        let e = plan(&mut b, Pid(1), &head, &vmas).unwrap_err();
        assert!(e.refused, "{e}");
        assert!(e.to_string().contains("cannot be recreated") && e.to_string().contains("127 events"), "{e}");
    }
}
