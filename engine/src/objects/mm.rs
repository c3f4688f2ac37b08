//! The address space: VMAs and their page data.
//!
//! Dump: VMAs from /proc/pid/smaps (VmFlags included), page presence from
//! /proc/pid/pagemap, contents with batched process_vm_readv by a few
//! worker threads, each through its own bounded buffer, written at offsets
//! reserved in order in the pages image (see [`PageDumper`]). Not stored: pages that are
//! neither present nor swapped, pages of private file mappings that are
//! still the file's (pagemap's file bit), and all-zero pages of anonymous
//! memory (they read back as zero). MAP_SHARED anonymous memory is read
//! from the shmem object itself (map_files, SEEK_DATA), so pages another
//! sharer touched are not missed.
//!
//! Guard regions (MADV_GUARD_INSTALL; pagemap bit 58) hold no data: they
//! are recorded as PE_GUARD pagemap entries and installed again. Locked
//! VMAs (`lo`, `lf`), madvise state and the whole address space's settings
//! (mlockall's MCL_FUTURE, seen on the parasite's own fresh mapping; THP
//! disabling and KSM merge-any by remote prctl) are recorded and re-applied
//! by the restorer: locks after the task's rlimits are set, so they are
//! taken within its own RLIMIT_MEMLOCK (or fail by name).
//!
//! Restore: VMAs become the plan's VMA table; page runs become PageRuns that
//! the restorer preads straight into place. A shared file mapping whose file
//! was opened for writing (`mw`) is opened read-write again, whatever its
//! protection now, so it can be mprotect'ed writable after restore. The
//! `gu` hint (VM_MAYBE_GUARD) follows the kernel's own merging and is not
//! reproduced VMA by VMA.
use crate::error::{Context, Error, Result};
use crate::image::mm::{MapFlags, MmEntry, MmFlags, Prot, Vma, VmaKind, VmaStatus};
use crate::image::pagemap::{data_offsets, PagemapEntry, PagemapFlags};
use crate::image::pages::PagesWriter;
use crate::image::RawStr;
use crate::proc::maps::MapKind;
use crate::proc::pagemap::{Pagemap, PagemapEntry as PmEntry};
use crate::proc::smaps::{SmapsEntry, VmFlags};
use crate::proc::{self, stat::Stat};
use crate::restore::plan::PlanBuilder;
use crate::sys::process_vm::{self, IoVec, IOV_MAX};
use crate::sys::Pid;
use restorer_plan as rp;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

/// Page size.
pub const PAGE: u64 = 4096;
/// Bytes of page data held in memory at once while dumping.
pub const DUMP_BUFFER: usize = 4 << 20;

/// What is being done with one VMA's pages.
pub fn needs_data(v: &Vma) -> bool {
    match v.kind {
        VmaKind::Anon | VmaKind::Stack | VmaKind::Heap | VmaKind::SharedAnon => true,
        VmaKind::File | VmaKind::Memfd | VmaKind::GhostFile => !v.flags.contains(MapFlags::MAP_SHARED),
        // Header and events, read into place before the ring is made again.
        VmaKind::AioRing => true,
        _ => false,
    }
}

/// Records whether a private mapping of a file (regular, deleted or memfd)
/// has its file opened for writing (see [`VmaStatus::VMA_FILE_WRITE`]).
pub fn note_file_mode(pid: Pid, v: &mut Vma) -> Result<()> {
    if !matches!(v.kind, VmaKind::File | VmaKind::GhostFile | VmaKind::Memfd) || v.flags.contains(MapFlags::MAP_SHARED)
    {
        return Ok(());
    }
    if proc::map_files::writable(pid, v.start, v.end).ctx(pid, "read the mode of a mapped file")? {
        v.status |= VmaStatus::VMA_FILE_WRITE;
    }
    Ok(())
}

/// Converts one smaps entry to an image VMA, refusing kinds this version
/// cannot restore (naming them).
pub fn vma_from_smaps(pid: Pid, e: &SmapsEntry) -> Result<Option<Vma>> {
    let m = &e.map;
    let shared = m.perms.shared();
    let range = format!("{:#x}-{:#x}", m.start, m.end);
    let unsupported = |what: &str| Err(Error::refuse(pid, format!("VMA {range} ({what}): not supported yet")));
    if e.vm_flags.contains(VmFlags::UM) {
        // Its missing pages are somewhere else (a lazy-pages server, or the
        // task's own fault handler): pagemap shows holes where data is.
        return Err(Error::refuse(
            pid,
            format!(
                "VMA {range} is registered with a userfaultfd in missing mode (a lazy restore whose pages are \
                 still coming in, or the task's own userfaultfd): its missing pages are not in the task; dump \
                 once a lazy restore is complete (its server has written stats-lazy.img)"
            ),
        ));
    }
    let kind = match &m.kind {
        MapKind::Vsyscall => return Ok(None),
        MapKind::Anonymous | MapKind::AnonNamed(_) if shared => VmaKind::SharedAnon,
        MapKind::Anonymous | MapKind::AnonNamed(_) => VmaKind::Anon,
        MapKind::SharedAnon | MapKind::AnonShmemNamed(_) => VmaKind::SharedAnon,
        MapKind::Heap => VmaKind::Heap,
        MapKind::Stack => VmaKind::Stack,
        MapKind::Vdso => VmaKind::Vdso,
        MapKind::Vvar => VmaKind::Vvar,
        MapKind::VvarVclock => VmaKind::VvarVclock,
        // The context's header is read by objects::aio.
        MapKind::AioRing => VmaKind::AioRing,
        // Dumped as a ghost file (objects::reg_file) with its data.
        MapKind::File if m.deleted => VmaKind::GhostFile,
        MapKind::File => VmaKind::File,
        // The memfd itself is dumped once, as a file object (objects::memfd).
        MapKind::Memfd(_) => VmaKind::Memfd,
        // The segment is dumped once, by objects::sysv_shm.
        MapKind::SysvShm { .. } => VmaKind::SysvShm,
        // MAP_HUGETLB memory: anonymous, its page size recorded (objects::hugetlb).
        MapKind::AnonHugepage if shared => VmaKind::SharedAnon,
        MapKind::AnonHugepage => VmaKind::Anon,
        MapKind::AnonInode(n) => return unsupported(&format!("anon_inode:{}", String::from_utf8_lossy(n))),
        MapKind::Uprobes => return unsupported("[uprobes]"),
        MapKind::OtherPseudo(n) => return unsupported(&format!("[{}]", String::from_utf8_lossy(n))),
    };
    let vf = e.vm_flags;
    // Flags that change what the mapping is and that restore does not make
    // again: refused rather than restored as something else.
    if let Some(u) = e.unknown_vm_flags.first() {
        return unsupported(&format!("VmFlags {u:?}, unknown to this version"));
    }
    for (f, what) in [
        (VmFlags::SL, "sealed (mseal)"),
        (VmFlags::SS, "a shadow stack"),
        (VmFlags::BT, "BTI-guarded"),
        (VmFlags::MT, "MTE-tagged"),
    ] {
        if vf.contains(f) {
            return unsupported(what);
        }
    }
    if let (MapKind::SysvShm { key }, true) = (&m.kind, vf.contains(VmFlags::HT)) {
        return unsupported(&format!("SysV shared memory segment {} (key {key:#x}) is hugetlb (SHM_HUGETLB)", m.inode));
    }
    let huge_page_size = match (&m.kind, vf.contains(VmFlags::HT)) {
        (MapKind::AnonHugepage, true) => {
            let size = e.kernel_page_size_kb().unwrap_or(0) << 10;
            if !super::hugetlb::valid_size(size) || !m.start.is_multiple_of(size) || !m.end.is_multiple_of(size) {
                return Err(Error::task(
                    pid,
                    format!("VMA {range} (hugetlb): KernelPageSize {size} bytes is not usable"),
                ));
            }
            size
        }
        (MapKind::Memfd(n), true) => {
            return unsupported(&format!("hugetlb memfd {}", String::from_utf8_lossy(n)));
        }
        (_, true) => return unsupported("hugetlb memory of a hugetlbfs file"),
        (MapKind::AnonHugepage, false) => return unsupported("/anon_hugepage without VmFlags ht"),
        _ => 0,
    };
    let mut prot = Prot::empty();
    prot.set(Prot::PROT_READ, m.perms.read());
    prot.set(Prot::PROT_WRITE, m.perms.write());
    prot.set(Prot::PROT_EXEC, m.perms.exec());
    let mut flags = match (shared, vf.contains(VmFlags::DP)) {
        (true, _) => MapFlags::MAP_SHARED,
        // Droppable memory (MAP_DROPPABLE: its pages may be freed under
        // memory pressure) is anonymous and private by nature.
        (false, true) if kind == VmaKind::Anon => MapFlags::MAP_DROPPABLE,
        (false, true) => return unsupported("droppable, not anonymous"),
        (false, false) => MapFlags::MAP_PRIVATE,
    };
    if !matches!(kind, VmaKind::File | VmaKind::Memfd | VmaKind::GhostFile | VmaKind::AioRing | VmaKind::SysvShm) {
        flags |= MapFlags::MAP_ANONYMOUS;
    }
    if huge_page_size != 0 {
        flags |= MapFlags::MAP_HUGETLB;
    }
    if vf.contains(VmFlags::GD) {
        flags |= MapFlags::MAP_GROWSDOWN;
    }
    if vf.contains(VmFlags::NR) {
        flags |= MapFlags::MAP_NORESERVE;
    }
    let mut status = VmaStatus::VMA_REGULAR;
    for (f, s) in [
        (VmFlags::DC, VmaStatus::VMA_DONTFORK),
        (VmFlags::WF, VmaStatus::VMA_WIPEONFORK),
        (VmFlags::HG, VmaStatus::VMA_HUGEPAGE),
        (VmFlags::NH, VmaStatus::VMA_NOHUGEPAGE),
        (VmFlags::DD, VmaStatus::VMA_DONTDUMP),
        (VmFlags::LO, VmaStatus::VMA_LOCKED),
        (VmFlags::MG, VmaStatus::VMA_MERGEABLE),
        (VmFlags::AC, VmaStatus::VMA_ACCOUNTED),
        (VmFlags::LF, VmaStatus::VMA_LOCKONFAULT),
        (VmFlags::SR, VmaStatus::VMA_SEQUENTIAL),
        (VmFlags::RR, VmaStatus::VMA_RANDOM),
    ] {
        if vf.contains(f) {
            status |= s;
        }
    }
    // A shared file mapping may become writable again only if its file was
    // opened for writing; restore opens it the same way.
    if shared && vf.contains(VmFlags::MW) {
        status |= VmaStatus::VMA_MAYWRITE;
    }
    let sysv = kind == VmaKind::SysvShm;
    if sysv {
        // shmat gives VM_MAYWRITE unless SHM_RDONLY, and VM_EXEC with SHM_EXEC:
        // an executable VMA is attached so (mprotect keeps VM_MAYEXEC either way).
        status -= VmaStatus::VMA_MAYWRITE;
        status.set(VmaStatus::VMA_SHM_RDONLY, !vf.contains(VmFlags::MW));
        status.set(VmaStatus::VMA_SHM_EXEC, m.perms.exec());
    }
    let is_file = matches!(kind, VmaKind::File | VmaKind::Memfd | VmaKind::GhostFile | VmaKind::SysvShm);
    Ok(Some(Vma {
        mempolicy: None,
        start: m.start,
        end: m.end,
        prot,
        flags,
        kind,
        status,
        path: if is_file { Some(RawStr(m.path.as_os_str().as_bytes().to_vec())) } else { None },
        dev: ((m.dev_major as u64) << 20) | m.dev_minor as u64,
        inode: m.inode,
        pgoff: if is_file || kind == VmaKind::SharedAnon { m.offset } else { 0 },
        // The segment's inode number is its shmid (ipc/shm.c newseg).
        shmid: if sysv { m.inode } else { 0 },
        cow_from: 0,
        huge_page_size,
    }))
}

const PR_GET_THP_DISABLE: u64 = 42;
const PR_GET_MEMORY_MERGE: u64 = 68;
const PR_GET_MDWE: u64 = 66;
const EINVAL: i64 = 22;

/// Settings of the infected task's whole address space: mlockall's
/// MCL_FUTURE (the mm's `def_flags`, which no file shows: the parasite's
/// own region, mapped by the task, carries them as VM_LOCKED and
/// VM_LOCKONFAULT), PR_SET_MEMORY_MERGE and PR_SET_THP_DISABLE (both read
/// with a remote prctl), PR_SET_MDWE (memory-deny-write-execute, likewise).
/// Also gives the task's smaps without the parasite
/// region, for the VMA list, when the region is a VMA of its own (smaps
/// walks every page table: on a large process reading it twice was a
/// large part of the frozen time); None when the region merged with a
/// neighbour (smaps is read again once the parasite is gone).
pub fn dump_mm_settings(p: &mut crate::infect::Parasite<'_>) -> Result<MmSettings> {
    let pid = p.pid();
    let mut flags = MmFlags::empty();
    let probe = p.scratch();
    let smaps = proc::smaps::read(pid).ctx(pid, "read smaps")?;
    let at = smaps
        .iter()
        .position(|e| e.map.start <= probe && probe < e.map.end)
        .ok_or_else(|| Error::task(pid, "the parasite region is not in smaps"))?;
    let region = &smaps[at];
    if region.vm_flags.contains(VmFlags::LO) {
        flags |= MmFlags::MCL_FUTURE;
        if region.vm_flags.contains(VmFlags::LF) {
            flags |= MmFlags::MCL_ONFAULT;
        }
    }
    // NUMA memory policies, of the thread and of every VMA.
    const VSYSCALL: u64 = 0xffff_ffff_ff60_0000;
    let addrs: Vec<u64> = std::iter::once(parasite_proto::THREAD_POLICY)
        .chain(smaps.iter().enumerate().filter(|&(i, e)| i != at && e.map.start < VSYSCALL).map(|(_, e)| e.map.start))
        .collect();
    let mut policies = MemPolicies::default();
    let got = match p.mempolicies(&addrs) {
        // A kernel without NUMA: no policy to keep.
        Err(e) if e.cause_errno() == Some(crate::sys::Errno::ENOSYS) => Vec::new(),
        r => r.ctx(pid, "read NUMA memory policies")?,
    };
    for (&a, pol) in addrs.iter().zip(got) {
        let Some(pol) = mempolicy(pol.mode, &pol.nodes) else { continue };
        if a == parasite_proto::THREAD_POLICY {
            policies.thread = Some(pol);
        } else {
            policies.vmas.insert(a, pol);
        }
    }
    policies.first_vma_own = addrs.get(1).is_some_and(|a| policies.vmas.contains_key(a));
    let rest = without_region(smaps, p.base(), p.base() + p.size() as u64);
    let mut prctl = |op: u64, what: &str| -> Result<i64> {
        let r = p.remote_syscall(crate::sys::Sysno::prctl, [op, 0, 0, 0, 0, 0]).ctx(pid, what)?;
        match r {
            r if r >= 0 => Ok(r),
            // Not built into this kernel (KSM): not in use either.
            r if r == -EINVAL => Ok(0),
            r => Err(Error::task(pid, format!("{what}: {}", crate::sys::Errno::new(-r as i32)))),
        }
    };
    let thp = prctl(PR_GET_THP_DISABLE, "PR_GET_THP_DISABLE")? as u32;
    if prctl(PR_GET_MEMORY_MERGE, "PR_GET_MEMORY_MERGE")? != 0 {
        flags |= MmFlags::MERGE_ANY;
    }
    let mdwe = prctl(PR_GET_MDWE, "PR_GET_MDWE")? as u32;
    Ok(MmSettings { flags, thp, mdwe, smaps: rest, policies })
}

/// The smaps entries of a task as they are once the parasite region
/// `[base, end)` is unmapped. The region is one VMA or more (its code and
/// its data are mapped with different protections): those are removed.
/// When the kernel merged a part of it into a neighbouring anonymous VMA
/// (same flags, protection and policy: the region was mapped right next
/// to it), the merged entry keeps the neighbour's part or parts, with its
/// flags, which merging requires to be equal; their page counts still
/// include the region's (nothing reads them). None for any other shape:
/// smaps is read again then.
fn without_region(smaps: Vec<SmapsEntry>, base: u64, end: u64) -> Option<Vec<SmapsEntry>> {
    let mut out = Vec::with_capacity(smaps.len());
    for e in smaps {
        if e.map.end <= base || end <= e.map.start {
            out.push(e);
            continue;
        }
        if base <= e.map.start && e.map.end <= end {
            continue;
        }
        let anon_private =
            e.map.inode == 0 && e.map.offset == 0 && !e.map.perms.contains(crate::proc::maps::MapPerms::SHARED);
        if !anon_private {
            return None;
        }
        if e.map.start < base {
            let mut left = e.clone();
            left.map.end = base;
            out.push(left);
        }
        if end < e.map.end {
            let mut right = e;
            right.map.start = end;
            out.push(right);
        }
    }
    Some(out)
}

/// What [`dump_mm_settings`] reads with the parasite in place.
pub struct MmSettings {
    pub flags: MmFlags,
    /// PR_GET_THP_DISABLE.
    pub thp: u32,
    /// PR_GET_MDWE.
    pub mdwe: u32,
    /// The task's smaps without the parasite region (None: read it again).
    pub smaps: Option<Vec<proc::smaps::SmapsEntry>>,
    pub policies: MemPolicies,
}

/// The NUMA memory policies of a task other than the default: its leader
/// thread's, and its VMAs' by start address.
#[derive(Default)]
pub struct MemPolicies {
    pub thread: Option<crate::image::mm::MemPolicy>,
    pub vmas: HashMap<u64, crate::image::mm::MemPolicy>,
    /// The first VMA has one (numa_maps cannot show a thread's then).
    pub first_vma_own: bool,
}

/// A policy of the images as the restorer applies it: to `[start, start +
/// len)`, or (len 0) to the thread itself.
pub fn plan_mempolicy(pid: Pid, p: &crate::image::mm::MemPolicy, start: u64, len: u64) -> Result<rp::MemPolicy> {
    if p.nodes.len() > rp::NODEMASK_WORDS || p.mode == 0 {
        return Err(Error::task(
            pid,
            format!("a NUMA memory policy of the images is not one ({} words)", p.nodes.len()),
        ));
    }
    let mut nodes = [0u64; rp::NODEMASK_WORDS];
    nodes[..p.nodes.len()].copy_from_slice(&p.nodes);
    Ok(rp::MemPolicy { start, len, mode: p.mode, _pad: 0, nodes })
}

/// A policy get_mempolicy(2) reported, as the images keep it: None for
/// the default; the node mask without its trailing empty words.
pub fn mempolicy(mode: i32, nodes: &[u64]) -> Option<crate::image::mm::MemPolicy> {
    if mode == 0 {
        return None;
    }
    let used = nodes.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
    Some(crate::image::mm::MemPolicy { mode, nodes: nodes[..used].to_vec() })
}

/// A NUMA memory policy as set_mempolicy(2) names it: its mode, flags and
/// nodes, e.g. `MPOL_INTERLEAVE|MPOL_F_STATIC_NODES nodes 0-1`.
pub fn describe_mempolicy(mode: i32, nodes: &[u64]) -> String {
    const MODES: [&str; 7] = [
        "MPOL_DEFAULT",
        "MPOL_PREFERRED",
        "MPOL_BIND",
        "MPOL_INTERLEAVE",
        "MPOL_LOCAL",
        "MPOL_PREFERRED_MANY",
        "MPOL_WEIGHTED_INTERLEAVE",
    ];
    let flags =
        [(1 << 15, "MPOL_F_STATIC_NODES"), (1 << 14, "MPOL_F_RELATIVE_NODES"), (1 << 13, "MPOL_F_NUMA_BALANCING")];
    let base = mode & 0xff;
    let mut s = MODES.get(base as usize).map_or_else(|| format!("mode {base}"), |m| m.to_string());
    for (bit, name) in flags {
        if mode & bit != 0 {
            s.push('|');
            s.push_str(name);
        }
    }
    let set: Vec<usize> = (0..nodes.len() * 64).filter(|&n| nodes[n / 64] >> (n % 64) & 1 != 0).collect();
    if !set.is_empty() {
        let mut runs: Vec<String> = Vec::new();
        let mut i = 0;
        while i < set.len() {
            let mut j = i;
            while j + 1 < set.len() && set[j + 1] == set[j] + 1 {
                j += 1;
            }
            runs.push(if i == j { set[i].to_string() } else { format!("{}-{}", set[i], set[j]) });
            i = j + 1;
        }
        s.push_str(" nodes ");
        s.push_str(&runs.join(","));
    }
    s
}

/// The mm fields, auxv and exe of a task; `settings` (flags, THP disable,
/// MDWE) from [`dump_mm_settings`].
pub fn dump_mm_head(pid: Pid, stat: &Stat, brk: u64, settings: (MmFlags, u32, u32)) -> Result<MmEntry> {
    let auxv_bytes = std::fs::read(proc::pid_path(pid, "auxv")).ctx(pid, "read auxv")?;
    let auxv = auxv_bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
    let exe = std::fs::read_link(proc::pid_path(pid, "exe")).ctx(pid, "read the exe link")?;
    let l = &stat.mm;
    Ok(MmEntry {
        start_code: l.start_code,
        end_code: l.end_code,
        start_data: l.start_data,
        end_data: l.end_data,
        start_brk: l.start_brk,
        brk,
        start_stack: l.start_stack,
        arg_start: l.arg_start,
        arg_end: l.arg_end,
        env_start: l.env_start,
        env_end: l.env_end,
        auxv,
        exe_file: Some(RawStr(exe.as_os_str().as_bytes().to_vec())),
        flags: settings.0,
        thp_disable: settings.1,
        aio: Vec::new(),
        mdwe: settings.2,
    })
}

/// Streams page data of `vmas` to `pages`, returning the pagemap entries.
///
/// The calling thread walks pagemap and cuts the data into chunks of at
/// most [`CHUNK`] bytes; [`workers`] threads each read a chunk with one
/// process_vm_readv into their own buffer, leave out its zero pages, and
/// write it with one pwritev at the offset it reserved. A task with more
/// than [`STRIPE_RUN`] chunks has its pages striped over one image per
/// worker (runs of [`STRIPE_RUN`] chunks in turn, see [`stripe_of`]): two
/// writers of one file wait for each other on its inode lock, two files
/// are written side by side. Within a stripe, reservations (and so the
/// pagemap entries and the file's checksum) follow the chunks' order, the
/// copies run side by side. Memory stays bounded by
/// `workers() * CHUNK`, whatever the size of the task.
pub struct PageDumper<'a> {
    pid: Pid,
    /// Where reservations and entries go; shared with the workers.
    sink: std::sync::Arc<Sink>,
    /// The workers' channel.
    tx: JobTx,
    /// Chunks handed out so far (the next chunk's sequence number).
    seq: u64,
    /// Buffer of the calling thread (shared memory, PROT_NONE pages).
    buf: Vec<u8>,
    /// Pending remote ranges for the next chunk, with their zero-skip policy.
    iov: Vec<IoVec>,
    pending: usize,
    skip_zero: bool,
    /// Guard regions found (MADV_GUARD_INSTALL), in address order.
    guards: Vec<PagemapEntry>,
    /// Pages still shared copy-on-write with an ancestor (PE_COW).
    cow: Vec<PagemapEntry>,
    /// The ancestors' frames, to find pages still shared with them.
    ancestors: Option<(&'a HashMap<Pid, Frames>, Pid)>,
    /// This task's frames, for its children.
    frames: Frames,
    /// Whether to record them (the task has children in the tree).
    track_frames: bool,
    /// Write tracking since a parent dump (iterative dumps).
    track: Option<&'a super::mem_track::TaskTrack>,
    /// Pages left to the parent (PE_PARENT).
    parent: Vec<PagemapEntry>,
    /// Their number.
    skipped: u64,
    /// Ranges of MAP_SHARED anonymous objects earlier tasks of the dump
    /// stored already (see [`ShmemStored`]).
    shmem: Option<&'a mut ShmemStored>,
    /// Chunks held back until [`PendingPages::start`] (see
    /// [`PageDumper::live`]); None: handed to the workers at once.
    held: Option<Vec<Job>>,
    /// The only VMAs to dump (by range), if set.
    only: Option<&'a [(u64, u64)]>,
    /// Tracked VMAs dumped early (see [`PageDumper::dump_early`]).
    early: Vec<(u64, u64)>,
    /// Whether the pending ranges are read through /proc/pid/mem (see
    /// [`PageDumper::queue_unpinned`]).
    unpinned: bool,
}

/// A task's tracked VMAs dumped before the rest of the task (see
/// [`PageDumper::dump_early`]): the dump goes on with
/// [`PageDumper::resume`]. Dropped instead, it waits for the chunks it
/// handed out.
pub struct EarlyPages {
    sink: Option<std::sync::Arc<Sink>>,
    seq: u64,
    guards: Vec<PagemapEntry>,
    parent: Vec<PagemapEntry>,
    skipped: u64,
    /// The VMAs dumped.
    pub done: Vec<(u64, u64)>,
    /// When their walk began.
    pub started: std::time::Instant,
}

impl EarlyPages {
    /// Checks the VMAs dumped early against the task's VMAs from smaps
    /// and its tracking as verified by them: each still tracked, private
    /// anonymous and readable (nothing of it can change while the task
    /// is frozen; a mismatch fails the dump).
    pub fn check(&self, track: Option<&super::mem_track::TaskTrack>, vmas: &[Vma]) -> Result<()> {
        let pid = self.sink.as_ref().map_or(Pid(0), |s| s.pid);
        for &(s, e) in &self.done {
            let fits = track.is_some_and(|t| t.vmas.contains(&(s, e)))
                && vmas.iter().any(|v| (v.start, v.end) == (s, e) && super::mem_track::still_tracked(v));
            if !fits {
                return Err(Error::task(pid, format!("VMA {s:#x}-{e:#x} changed while the task was frozen")));
            }
        }
        Ok(())
    }
}

impl Drop for EarlyPages {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            drop(sink.idle());
        }
    }
}

/// The ranges (object offsets) of each MAP_SHARED anonymous object, by
/// (device, inode), whose pages a task dumped before stored: a VMA of
/// another task over a stored range needs no copy of its own (restore fills
/// each object it creates from every task that maps it).
pub type ShmemStored = HashMap<(u64, u64), Vec<(u64, u64)>>;

/// Whether `[start, end)` lies inside the union of `ranges`.
fn covered_by(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    let mut sorted: Vec<(u64, u64)> = ranges.to_vec();
    sorted.sort_unstable();
    let mut at = start;
    for (s, e) in sorted {
        if s > at {
            break;
        }
        at = at.max(e);
        if at >= end {
            return true;
        }
    }
    at >= end
}

/// Bytes of page data one worker reads and writes at once.
pub const CHUNK: usize = 2 << 20;

/// Worker threads copying pages: one per CPU this process may use, at most
/// two (their buffers make crtools' memory). `CRTOOLS_DUMP_WORKERS=N`
/// overrides it, for measurements.
pub fn workers() -> usize {
    if let Some(n) = std::env::var("CRTOOLS_DUMP_WORKERS").ok().and_then(|v| v.parse::<usize>().ok()) {
        return n.clamp(1, 8);
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 2)
}

/// Chunks in a row that go to one stripe of a task's pages image.
pub const STRIPE_RUN: u64 = 4;

/// The stripe of chunk `seq` of a task dumped in `stripes` stripes, and the
/// chunk's place in that stripe's order.
pub fn stripe_of(seq: u64, stripes: usize) -> (usize, u64) {
    let run = seq / STRIPE_RUN;
    let n = stripes.max(1) as u64;
    ((run % n) as usize, (run / n) * STRIPE_RUN + seq % STRIPE_RUN)
}

/// One chunk: remote ranges read together, written together.
pub struct Job {
    sink: std::sync::Arc<Sink>,
    seq: u64,
    /// Its stripe (see [`stripe_of`]).
    stripe: usize,
    iov: Vec<IoVec>,
    total: usize,
    skip_zero: bool,
    /// Read through /proc/pid/mem (see [`PageDumper::queue_unpinned`]).
    unpinned: bool,
}

/// The pages image (its stripes) as the workers share it.
struct Sink {
    pid: Pid,
    state: std::sync::Mutex<SinkState>,
    /// Signalled whenever a stripe's `next` moves.
    turn: std::sync::Condvar,
    /// Stripes the pages are written in at most (1: one image).
    stripes: usize,
    /// The task's /proc/pid/mem, opened for the first chunk read through it.
    mem: std::sync::OnceLock<std::fs::File>,
    /// A chunk that cannot be read is left out and its ranges recorded
    /// (the task runs while its pages are copied), instead of failing.
    tolerant: bool,
    /// For a task that runs while its pages are read: a pidfd of it. A
    /// chunk read is kept only if the task has not exited once it is read
    /// (process_vm_readv goes by pid: after an exit the pid may name
    /// another process).
    alive: Option<std::os::fd::OwnedFd>,
}

struct SinkState {
    /// The stripes begun, stripe 0 (the pages image itself) first.
    stripes: Vec<StripeState>,
    /// Chunks handed out and not written yet.
    unfinished: u64,
    nr_pages: u64,
    write_time: std::time::Duration,
    /// The first failure; later chunks are skipped.
    failed: Option<Error>,
    /// Remote ranges of chunks a tolerant sink could not read.
    lost: Vec<(u64, u64)>,
}

/// One stripe's image as the workers share it.
struct StripeState {
    /// Taken by [`PendingPages::wait`] once every chunk is written.
    pages: Option<PagesWriter>,
    /// A duplicate of its descriptor, for pwritev outside the lock.
    fd: std::sync::Arc<std::os::fd::OwnedFd>,
    name: std::sync::Arc<str>,
    /// The place (see [`stripe_of`]) of the chunk whose turn it is to reserve.
    next: u64,
    /// Its pagemap entries, in file order.
    entries: Vec<PagemapEntry>,
}

impl StripeState {
    fn new(pid: Pid, pages: PagesWriter) -> Result<Self> {
        let fd = pages.fd().try_clone_to_owned().ctx(pid, "dup the pages image")?;
        let name = pages.name().into();
        Ok(StripeState { pages: Some(pages), fd: std::sync::Arc::new(fd), name, next: 0, entries: Vec::new() })
    }
}

/// Stripes a task's pages image is written in: one per worker on a tmpfs,
/// one elsewhere. Measured here (1 GiB, two workers): into tmpfs, two
/// stripes were faster than one file; into ext4 on the virtual disk, twice
/// as slow (perf: a quarter of the time spinning in rwsem_spin_on_owner,
/// the page cache copy itself 2.5 times slower). `CRTOOLS_DUMP_STRIPES=N`
/// overrides it, for measurements.
fn stripes_for(pages: &PagesWriter) -> usize {
    if let Some(n) = std::env::var("CRTOOLS_DUMP_STRIPES").ok().and_then(|v| v.parse::<usize>().ok()) {
        return n.clamp(1, crate::image::pagemap::MAX_STRIPES);
    }
    if crate::sys::fs::on_tmpfs(pages.fd()).unwrap_or(false) {
        workers()
    } else {
        1
    }
}

impl Sink {
    fn new(pid: Pid, pages: PagesWriter) -> Result<Self> {
        let stripes = stripes_for(&pages);
        let state = SinkState {
            stripes: vec![StripeState::new(pid, pages)?],
            unfinished: 0,
            nr_pages: 0,
            write_time: std::time::Duration::ZERO,
            failed: None,
            lost: Vec::new(),
        };
        let turn = std::sync::Condvar::new();
        Ok(Sink {
            pid,
            state: std::sync::Mutex::new(state),
            turn,
            stripes,
            mem: std::sync::OnceLock::new(),
            tolerant: false,
            alive: None,
        })
    }

    /// The stripe of chunk `seq`, its image created if it is the stripe's
    /// first chunk (stripes begin in order).
    fn stripe(&self, seq: u64) -> Result<usize> {
        let (k, _) = stripe_of(seq, self.stripes);
        let mut st = self.lock();
        while st.stripes.len() <= k {
            let id = crate::image::pagemap::stripe_image_id(self.pid.0 as u32, st.stripes.len() as u8);
            let first = st.stripes[0].pages.as_ref().ok_or_else(|| Error::task(self.pid, "pages image taken"))?;
            let pages = first.sibling(id).ctx(self.pid, "create a stripe of the pages image")?;
            st.stripes.push(StripeState::new(self.pid, pages)?);
        }
        Ok(k)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `data` as read from the task, unless the task is no longer the one
    /// the pid named when the dump began (see `alive`).
    fn same_task<'d>(&self, data: Result<&'d [u8]>) -> Result<&'d [u8]> {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.alive else { return data };
        let d = data?;
        match crate::sys::event::poll_now(fd.as_raw_fd(), crate::sys::event::POLLIN) {
            Ok(0) => Ok(d),
            Ok(_) => Err(Error::task(self.pid, "exited while its pages were read")),
            Err(e) => Err(Error::task(self.pid, format!("poll its pidfd: {e}"))),
        }
    }

    /// Waits until every chunk handed out is finished; the state, locked.
    fn idle(&self) -> std::sync::MutexGuard<'_, SinkState> {
        let mut st = self.lock();
        while st.unfinished > 0 {
            st = self.turn.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st
    }

    /// Hands chunk `job` (of this sink) to the workers through `tx`.
    fn hand_out(&self, tx: &JobQueue, job: Job) -> Result<()> {
        self.lock().unfinished += 1;
        if tx.send(job).is_err() {
            self.done();
            return Err(Error::task(self.pid, "the page workers are gone"));
        }
        Ok(())
    }

    /// One handed-out chunk is finished (written, skipped or failed).
    fn done(&self) {
        self.lock().unfinished -= 1;
        self.turn.notify_all();
    }

    /// Appends chunk `seq`'s page data to its stripe `stripe`: `data`
    /// (whole pages, read from `iov` in order), without its zero pages if
    /// `skip_zero`, or records `read`'s failure. Waits for the chunks before
    /// it in the stripe to reserve their room, writes outside the lock.
    fn commit(&self, seq: u64, stripe: usize, iov: &[IoVec], data: Result<&[u8]>, skip_zero: bool) {
        // Runs of pages to store: (vaddr, offset in data, length).
        let mut runs: Vec<(u64, usize, usize)> = Vec::new();
        let mut crc = super::super::image::crc32c::Crc32c::new();
        let mut len = 0usize;
        if let Ok(data) = &data {
            let mut off = 0usize;
            let pg = PAGE as usize;
            for r in iov {
                for i in 0..(r.len as usize / pg) {
                    let at = off + i * pg;
                    let page = &data[at..at + pg];
                    if skip_zero && is_zero(page) {
                        continue;
                    }
                    // Checksummed while the page is in the first-level cache.
                    crc.update(page);
                    len += pg;
                    let vaddr = r.base + (i * pg) as u64;
                    match runs.last_mut() {
                        Some(l) if l.1 + l.2 == at && l.0 + l.2 as u64 == vaddr => l.2 += pg,
                        _ => runs.push((vaddr, at, pg)),
                    }
                }
                off += r.len as usize;
            }
        }
        let (_, place) = stripe_of(seq, self.stripes);
        let (off, fd, name) = {
            let mut st = self.lock();
            // (After a failure, a chunk before this one may never come.)
            while st.stripes[stripe].next != place && st.failed.is_none() {
                st = self.turn.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.stripes[stripe].next += 1;
            self.turn.notify_all();
            if st.failed.is_some() {
                return;
            }
            let data = match data {
                Ok(d) => d,
                Err(e) if self.tolerant => {
                    log::debug!(task = self.pid.0; "task {}: chunk {seq} left out: {e}", self.pid);
                    st.lost.extend(iov.iter().map(|r| (r.base, r.base + r.len)));
                    return;
                }
                Err(e) => {
                    st.failed = Some(e);
                    return;
                }
            };
            let reserved = match st.stripes[stripe].pages.as_mut() {
                Some(p) => p.reserve(len as u64, crc.value()),
                None => Ok(0),
            };
            let off = match reserved {
                Ok(off) => off,
                Err(e) => {
                    st.failed = Some(Error::task(self.pid, format!("write pages: {e}")));
                    return;
                }
            };
            let out = &mut st.stripes[stripe];
            let (fd, name) = (out.fd.clone(), out.name.clone());
            let mut added = 0u64;
            for &(vaddr, _, n) in &runs {
                let nr = (n as u64 / PAGE) as u32;
                match out.entries.last_mut() {
                    Some(last)
                        if last.vaddr + last.nr_pages as u64 * PAGE == vaddr && last.nr_pages < u32::MAX - nr =>
                    {
                        last.nr_pages += nr
                    }
                    _ => out.entries.push(PagemapEntry {
                        vaddr,
                        nr_pages: nr,
                        flags: PagemapFlags::PE_PRESENT,
                        stripe: stripe as u8,
                    }),
                }
                added += nr as u64;
            }
            st.nr_pages += added;
            ((off, data), fd, name)
        };
        let (off, data) = off;
        let t = std::time::Instant::now();
        let mut done = off;
        // Runs next to each other in the buffer are one piece to write.
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for &(_, o, n) in &runs {
            match merged.last_mut() {
                Some(l) if l.0 + l.1 == o => l.1 += n,
                _ => merged.push((o, n)),
            }
        }
        // At most IOV_MAX pieces per pwritev.
        for group in merged.chunks(IOV_MAX) {
            let pieces: Vec<&[u8]> = group.iter().map(|&(o, n)| &data[o..o + n]).collect();
            let bytes: usize = group.iter().map(|r| r.1).sum();
            use std::os::fd::AsFd;
            if let Err(e) = PagesWriter::write_reserved(fd.as_fd(), &name, &pieces, done) {
                let mut st = self.lock();
                st.failed.get_or_insert(Error::task(self.pid, format!("write pages: {e}")));
                return;
            }
            done += bytes as u64;
        }
        self.lock().write_time += t.elapsed();
    }
}

/// Chunks queued for the workers at most: 128 MiB of pages to read, so
/// that the walk of a tree's next task goes on while they copy this one's
/// (a queued chunk holds only its list of ranges).
const QUEUED_CHUNKS: usize = 64;

/// The chunks handed to the workers. A worker takes the oldest chunk of
/// an image (a stripe of a task's) no other worker is busy with, if there
/// is one, else the oldest: two workers writing one file only wait for
/// each other on its inode lock (and spin doing so), two files are written
/// side by side. Chunks of one image are still taken in order (the oldest
/// of it first).
struct JobQueue {
    st: std::sync::Mutex<QueueState>,
    /// Signalled when a chunk is queued or the queue closes.
    ready: std::sync::Condvar,
    /// Signalled when a chunk is taken.
    room: std::sync::Condvar,
    /// Chunks queued at most (the producer waits beyond).
    cap: usize,
}

#[derive(Default)]
struct QueueState {
    jobs: std::collections::VecDeque<Job>,
    closed: bool,
    /// The images (see [`image_key`]) workers are busy with.
    busy: Vec<(usize, usize)>,
}

/// A handle on the workers' queue.
type JobTx = std::sync::Arc<JobQueue>;

impl JobQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`, waiting while the queue is full; gives it back if the
    /// workers are gone.
    fn send(&self, job: Job) -> std::result::Result<(), Job> {
        let mut st = self.lock();
        while st.jobs.len() >= self.cap && !st.closed {
            st = self.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.closed {
            return Err(job);
        }
        st.jobs.push_back(job);
        self.ready.notify_one();
        Ok(())
    }

    /// The next chunk for a worker, None once the queue is closed and empty.
    fn take(&self) -> Option<Job> {
        let mut st = self.lock();
        loop {
            let free = st.jobs.iter().position(|j| !st.busy.contains(&image_key(j)));
            if let Some(job) = st.jobs.remove(free.unwrap_or(0)) {
                st.busy.push(image_key(&job));
                self.room.notify_one();
                return Some(job);
            }
            if st.closed {
                return None;
            }
            st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A worker is done with `job`.
    fn finished(&self, job: &Job) {
        let mut st = self.lock();
        if let Some(i) = st.busy.iter().position(|&k| k == image_key(job)) {
            st.busy.swap_remove(i);
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
        self.room.notify_all();
    }
}

/// The image `job` is written to: its sink's address and its stripe.
fn image_key(job: &Job) -> (usize, usize) {
    (std::sync::Arc::as_ptr(&job.sink) as usize, job.stripe)
}

/// A worker: reads and writes the chunks it takes until the queue closes.
fn work(jobs: &JobQueue) {
    // A window aligned to its size, so that it is one transparent huge page
    // (fewer TLB misses in both copies); the rest is never touched and costs
    // no memory.
    let mut area = vec![0u8; 2 * CHUNK];
    let at = area.as_ptr().align_offset(CHUNK).min(CHUNK);
    let buf = &mut area[at..at + CHUNK];
    while let Some(job) = jobs.take() {
        let read = match (job.unpinned, job.sink.mem.get()) {
            (true, Some(mem)) => read_chunk_unpinned(job.sink.pid, mem, &mut buf[..job.total], &job.iov),
            _ => read_chunk(job.sink.pid, &mut buf[..job.total], &job.iov),
        };
        let data = job.sink.same_task(read);
        job.sink.commit(job.seq, job.stripe, &job.iov, data, job.skip_zero);
        jobs.finished(&job);
        job.sink.done();
    }
}

/// The worker threads of a whole dump: one task's pages are copied while
/// the next task is infected and walked (ptrace stays on the calling
/// thread; process_vm_readv and pwritev need no tracer).
pub struct PagePool {
    tx: Option<JobTx>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A way to hand chunks to a [`PagePool`]'s workers from another thread.
pub struct Sender(JobTx);

impl PagePool {
    /// For [`PageDumper::with_sender`].
    pub fn sender(&self, pid: Pid) -> Result<Sender> {
        self.tx.clone().map(Sender).ok_or_else(|| Error::task(pid, "the page workers are gone"))
    }

    /// Starts [`workers`] threads.
    pub fn new() -> Result<Self> {
        let n = workers();
        let q = std::sync::Arc::new(JobQueue {
            st: Default::default(),
            ready: std::sync::Condvar::new(),
            room: std::sync::Condvar::new(),
            cap: QUEUED_CHUNKS,
        });
        let mut pool = PagePool { tx: Some(q.clone()), threads: Vec::with_capacity(n) };
        for i in 0..n {
            let q = q.clone();
            let t = std::thread::Builder::new()
                .name(format!("pages-{i}"))
                .stack_size(256 << 10)
                .spawn(move || work(&q))
                .map_err(|e| Error::new(format!("start a page worker: {e}")))?;
            pool.threads.push(t);
        }
        Ok(pool)
    }
}

impl Drop for PagePool {
    fn drop(&mut self) {
        // Closing the queue ends the workers once it is empty.
        if let Some(q) = self.tx.take() {
            q.close();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A task's pages still being copied by the pool: [`PendingPages::wait`]
/// gives the pagemap entries and the pages image once they are written.
pub struct PendingPages {
    sink: std::sync::Arc<Sink>,
    guards: Vec<PagemapEntry>,
    /// Entries without data: shared with an ancestor, or in the parent dump.
    cow: Vec<PagemapEntry>,
    /// Pages left to the parent dump.
    pub skipped: u64,
    /// Chunks not handed to the workers yet, and their channel.
    held: Vec<Job>,
    tx: JobTx,
}

/// A task's pages once copied: [`PendingPages::wait`].
pub struct CopiedPages {
    /// The pagemap entries, in pages-file order, then the guard regions
    /// and the pages shared with an ancestor or left to the parent dump,
    /// which hold no data.
    pub entries: Vec<PagemapEntry>,
    /// Pages written.
    pub nr_pages: u64,
    /// The pages image, then its further stripes (see [`stripe_of`]).
    pub pages: Vec<PagesWriter>,
    /// Time the workers spent writing them.
    pub write_time: std::time::Duration,
    /// Remote ranges that could not be read (a tolerant dumper only: the
    /// task unmapped them while it ran); nothing of them is stored.
    pub lost: Vec<(u64, u64)>,
}

impl PendingPages {
    /// Hands the held chunks to the workers (see [`PageDumper::live`]);
    /// blocks while their queue is full.
    pub fn start(&mut self) -> Result<()> {
        for job in std::mem::take(&mut self.held) {
            self.sink.hand_out(&self.tx, job)?;
        }
        Ok(())
    }

    /// Waits for the task's chunks (handing out held ones first).
    pub fn wait(mut self) -> Result<CopiedPages> {
        let started = self.start();
        let mut st = self.sink.idle();
        if let Some(e) = st.failed.take() {
            return Err(e);
        }
        started?;
        let mut entries = Vec::new();
        let mut pages = Vec::with_capacity(st.stripes.len());
        for out in st.stripes.iter_mut() {
            entries.append(&mut out.entries);
            pages.push(out.pages.take().ok_or_else(|| Error::task(self.sink.pid, "pages image taken twice"))?);
        }
        let (nr_pages, write_time) = (st.nr_pages, st.write_time);
        let lost = std::mem::take(&mut st.lost);
        drop(st);
        entries.append(&mut self.guards);
        entries.append(&mut self.cow);
        Ok(CopiedPages { entries, nr_pages, pages, write_time, lost })
    }
}

/// Reads the remote ranges `iov` of `pid` into `buf` (their total length)
/// through its /proc/pid/mem `mem` (see [`PageDumper::queue_unpinned`]).
fn read_chunk_unpinned<'b>(pid: Pid, mem: &std::fs::File, buf: &'b mut [u8], iov: &[IoVec]) -> Result<&'b [u8]> {
    let mut off = 0usize;
    for r in iov {
        let n = r.len as usize;
        mem.read_exact_at(&mut buf[off..off + n], r.base).ctx(
            pid,
            &format!("read {:#x} (+{n} bytes, mapped by another process too) through /proc/pid/mem", r.base),
        )?;
        off += n;
    }
    Ok(buf)
}

/// Reads the remote ranges `iov` of `pid` into `buf` (their total length).
fn read_chunk<'b>(pid: Pid, buf: &'b mut [u8], iov: &[IoVec]) -> Result<&'b [u8]> {
    let total = buf.len();
    let n = process_vm::read(pid, buf, iov).ctx(pid, "process_vm_readv")?;
    if n != total {
        return Err(Error::task(pid, format!("process_vm_readv read {n} of {total} bytes")));
    }
    Ok(buf)
}

impl<'a> PageDumper<'a> {
    /// A dumper writing to `pages` through the workers of `pool`.
    pub fn new(pid: Pid, pages: PagesWriter, pool: &PagePool) -> Result<Self> {
        Self::with_sender(pid, pages, pool.sender(pid)?)
    }

    /// A dumper writing to `pages` through the workers `tx` feeds (from
    /// another thread than the pool's owner: [`PagePool::sender`]).
    pub fn with_sender(pid: Pid, pages: PagesWriter, tx: Sender) -> Result<Self> {
        Ok(Self::on(std::sync::Arc::new(Sink::new(pid, pages)?), tx.0))
    }

    fn on(sink: std::sync::Arc<Sink>, tx: JobTx) -> Self {
        PageDumper {
            pid: sink.pid,
            sink,
            tx,
            seq: 0,
            buf: Vec::new(),
            iov: Vec::new(),
            pending: 0,
            skip_zero: true,
            guards: Vec::new(),
            cow: Vec::new(),
            ancestors: None,
            frames: Frames::default(),
            track_frames: true,
            track: None,
            parent: Vec::new(),
            skipped: 0,
            shmem: None,
            held: None,
            only: None,
            early: Vec::new(),
            unpinned: false,
        }
    }

    /// Goes on with a dump begun by [`PageDumper::dump_early`]: the VMAs
    /// it dumped are left out of [`PageDumper::dump_vmas`].
    pub fn resume(mut early: EarlyPages, pool: &PagePool) -> Result<Self> {
        let pid = early.sink.as_ref().expect("resumed once").pid;
        // (Failing here, `early` still waits for its chunks when dropped.)
        let tx = pool.sender(pid)?.0;
        let mut d = Self::on(early.sink.take().expect("resumed once"), tx);
        d.seq = early.seq;
        d.guards = std::mem::take(&mut early.guards);
        d.parent = std::mem::take(&mut early.parent);
        d.skipped = early.skipped;
        d.early = std::mem::take(&mut early.done);
        d.track_frames = false;
        Ok(d)
    }

    /// Dumps, before anything else of the task, the tracked VMAs (see
    /// [`PageDumper::with_track`]) that are still registered for
    /// write tracking: a final dump copies them while the parasite works
    /// and smaps is read. Those whose scan fails are left to
    /// [`PageDumper::dump_vmas`].
    pub fn dump_early(mut self) -> (EarlyPages, Result<()>) {
        let started = std::time::Instant::now();
        let r = (|| {
            let Some(t) = self.track else { return Ok(()) };
            let mut pm = Pagemap::open(self.pid).ctx(self.pid, "open pagemap")?;
            for &range in &t.vmas {
                if self.dump_tracked(&mut pm, range, t)?.is_ok() {
                    self.early.push(range);
                }
            }
            self.flush()
        })();
        let early = EarlyPages {
            sink: Some(self.sink),
            seq: self.seq,
            guards: self.guards,
            parent: self.parent,
            skipped: self.skipped,
            done: self.early,
            started,
        };
        (early, r)
    }

    /// For a task that runs again before its pages are read (pre-dump):
    /// the chunks are held until [`PendingPages::start`], and a chunk that
    /// cannot be read then is left out and reported
    /// ([`CopiedPages::lost`]) instead of failing the dump. Only private
    /// readable memory is read this way (see [`PageDumper::only`]).
    pub fn live(mut self) -> Result<Self> {
        let pidfd = crate::sys::pidfd::pidfd_open(self.pid, crate::sys::pidfd::PidfdFlags::empty())
            .ctx(self.pid, "pidfd_open")?;
        self.held = Some(Vec::new());
        let sink = std::sync::Arc::get_mut(&mut self.sink).expect("no chunk handed out yet");
        sink.tolerant = true;
        sink.alive = Some(pidfd);
        Ok(self)
    }

    /// Dumps only the VMAs whose ranges are in `ranges`, and no guard
    /// regions (a pre-dump stores only what write tracking covers).
    pub fn only(mut self, ranges: &'a [(u64, u64)]) -> Self {
        self.only = Some(ranges);
        self
    }

    /// Leaves out the pages of shared anonymous objects that earlier tasks
    /// stored, and records what this one stores, in `stored`.
    pub fn with_shmem(mut self, stored: &'a mut ShmemStored) -> Self {
        self.shmem = Some(stored);
        self
    }

    /// Takes from the parent dump the unwritten pages of the VMAs `track`
    /// lists (see [`super::mem_track`]).
    pub fn with_track(mut self, track: Option<&'a super::mem_track::TaskTrack>) -> Self {
        self.track = track;
        self
    }

    /// Looks for pages still shared copy-on-write with the task's parent
    /// `ppid` (or further up), whose frames are in `frames`.
    pub fn with_ancestors(mut self, frames: &'a HashMap<Pid, Frames>, ppid: Pid) -> Self {
        self.ancestors = Some((frames, ppid));
        self
    }

    /// Records this task's page frames for its children's dumps only if
    /// `children` (a task without children in the tree needs none: memory
    /// stays flat).
    pub fn with_children(mut self, children: bool) -> Self {
        self.track_frames = children;
        self
    }

    /// Dumps every VMA that holds page data; sets `cow_from` of VMAs that
    /// share pages with an ancestor.
    /// The copies go on in the pool: [`PageDumper::finish`] hands them over.
    pub fn dump_vmas(&mut self, vmas: &mut [Vma]) -> Result<()> {
        check_private_shmem(self.pid, vmas)?;
        let mut pm = Pagemap::open(self.pid).ctx(self.pid, "open pagemap")?;
        if let Some(only) = self.only {
            for v in vmas.iter_mut().filter(|v| only.contains(&(v.start, v.end))) {
                if v.kind == VmaKind::SharedAnon || v.kind == VmaKind::AioRing || !v.prot.contains(Prot::PROT_READ) {
                    return Err(Error::task(
                        self.pid,
                        format!("VMA {:#x}-{:#x} is not private memory", v.start, v.end),
                    ));
                }
                self.dump_private(&mut pm, v)?;
            }
            return self.flush();
        }
        for v in vmas.iter() {
            // A tracked VMA's guards come with its PAGEMAP_SCAN (one page
            // table walk fewer in the frozen time of a final dump).
            if !self.tracked(v) {
                self.find_guards(&mut pm, v)?;
            }
        }
        self.walk(&mut pm, vmas)
    }

    /// Whether `v` is one of the VMAs write tracking covers since the parent.
    fn tracked(&self, v: &Vma) -> bool {
        self.track.is_some_and(|t| t.vmas.contains(&(v.start, v.end))) && super::mem_track::still_tracked(v)
    }

    /// Walks the VMAs, handing chunks to the workers through `tx`.
    fn walk(&mut self, pm: &mut Pagemap, vmas: &mut [Vma]) -> Result<()> {
        for v in vmas.iter_mut().filter(|v| needs_data(v)) {
            if v.kind == VmaKind::SharedAnon && v.flags.contains(MapFlags::MAP_SHARED) {
                self.dump_shmem(v)?;
            } else if v.kind == VmaKind::AioRing {
                // The ring's pages are the kernel's (pagemap calls them
                // file pages) and always there: all of them, like anonymous memory.
                self.set_policy(true)?;
                self.queue(v.start, v.end - v.start)?;
            } else {
                self.dump_private(pm, v)?;
            }
            if self.sink.lock().failed.is_some() {
                break;
            }
        }
        self.flush()
    }

    /// The parent's frames of VMA `v` if it may share pages with them: an
    /// ancestor's data for exactly this range, with room left in both the
    /// providing ancestor's and this task's lists of kept areas.
    fn cow_source(&self, v: &Vma) -> Option<&'a VmaFrames> {
        let (all, ppid) = self.ancestors?;
        let pf = all.get(&ppid)?.vmas.get(&(v.start, v.end))?;
        let provider = all.get(&Pid(pf.provider as i32))?;
        let used = provider.provided.len() + usize::from(!provider.provided.contains(&(v.start, v.end)));
        (cow_eligible(v) && used <= MAX_COW_AREAS && self.frames.received < MAX_COW_AREAS).then_some(pf)
    }

    /// Pages of a private VMA: stored, or (root only sees page frame
    /// numbers) left to an ancestor's copy when it is the same frame at the
    /// same address, never written by either since the fork.
    fn dump_private(&mut self, pm: &mut Pagemap, v: &mut Vma) -> Result<()> {
        if v.flags.contains(MapFlags::MAP_DROPPABLE) {
            // The kernel may free droppable pages whenever it likes, so the
            // program cannot rely on them; they come back empty, as with
            // CRIU (zdtm maps11 expects exactly that).
            return Ok(());
        }
        if self.early.contains(&(v.start, v.end)) {
            return Ok(());
        }
        if let Some(t) = self.track.filter(|_| self.tracked(v)) {
            let Err(e) = self.dump_tracked(pm, (v.start, v.end), t)? else { return Ok(()) };
            log::warn!(task = self.pid.0; "task {}: PAGEMAP_SCAN of {:#x}-{:#x}: {e}; dumped in full", self.pid, v.start, v.end);
            if self.only.is_none() {
                self.find_guards(pm, v)?;
            }
        }
        let source = self.cow_source(v);
        let mut own = VmaFrames { provider: self.pid.0 as u32, pages: Vec::new() };
        let before = self.cow.len();
        let r = self.dump_private_pages(pm, v, source, &mut own);
        if let Some(src) = source {
            if self.cow.len() > before {
                v.cow_from = src.provider;
                self.frames.received += 1;
                self.frames.used.insert((src.provider, v.start, v.end));
            }
        }
        if cow_eligible(v) && !own.pages.is_empty() {
            // A VMA that receives shares only what its provider holds.
            if v.cow_from != 0 {
                own.provider = v.cow_from;
            }
            self.frames.vmas.insert((v.start, v.end), own);
        }
        r
    }

    /// Pages of a VMA tracked since the parent dump: written ones are read,
    /// unwritten ones the parent holds are left to it. The scan's error
    /// when it fails (the VMA is not what the tracking registered): dump it
    /// in full then.
    fn dump_tracked(
        &mut self,
        pm: &mut Pagemap,
        v: (u64, u64),
        t: &super::mem_track::TaskTrack,
    ) -> Result<std::result::Result<(), crate::sys::Errno>> {
        let (start, end) = v;
        use crate::sys::uffd as u;
        let q = u::ScanQuery {
            flags: u::PM_SCAN_CHECK_WPASYNC as u64,
            category_mask: 0,
            anyof_mask: (u::PAGE_IS_PRESENT | u::PAGE_IS_SWAPPED) as u64,
            return_mask: (u::PAGE_IS_WRITTEN
                | u::PAGE_IS_PRESENT
                | u::PAGE_IS_SWAPPED
                | linux_raw_sys::general::PAGE_IS_PFNZERO
                | linux_raw_sys::general::PAGE_IS_GUARD) as u64,
        };
        let regions = match super::mem_track::scan(pm.fd(), start, end, q) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if t.rearm {
            // Written pages are protected again for the next dump, in the
            // same frozen moment their contents are read.
            let q = u::ScanQuery {
                flags: (u::PM_SCAN_CHECK_WPASYNC | u::PM_SCAN_WP_MATCHING) as u64,
                category_mask: u::PAGE_IS_WRITTEN as u64,
                anyof_mask: 0,
                return_mask: u::PAGE_IS_WRITTEN as u64,
            };
            super::mem_track::scan(pm.fd(), start, end, q)
                .map_err(|e| Error::task(self.pid, format!("protect {:#x}-{:#x} again: {e}", start, end)))?;
        }
        if self.only.is_none() {
            for r in regions.iter().filter(|r| r.categories & linux_raw_sys::general::PAGE_IS_GUARD as u64 != 0) {
                self.add_guard(r.start, ((r.end - r.start) / PAGE) as u32, start);
            }
        }
        self.set_policy(true)?;
        for (s, e, take) in super::mem_track::classify(&regions, &t.parent) {
            match take {
                super::mem_track::Take::Data => self.queue(s, e - s)?,
                super::mem_track::Take::Parent => {
                    let nr = ((e - s) / PAGE) as u32;
                    self.skipped += nr as u64;
                    match self.parent.last_mut() {
                        Some(l) if l.vaddr + l.nr_pages as u64 * PAGE == s => l.nr_pages += nr,
                        _ => self.parent.push(PagemapEntry::new(s, nr, PagemapFlags::PE_PARENT)),
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Records `nr` guard pages at `vaddr` of the VMA starting at
    /// `vma_start`, joined to the last entry if they follow it in the VMA.
    fn add_guard(&mut self, vaddr: u64, nr: u32, vma_start: u64) {
        match self.guards.last_mut() {
            Some(g) if g.vaddr + g.nr_pages as u64 * PAGE == vaddr && vaddr != vma_start => g.nr_pages += nr,
            _ => self.guards.push(PagemapEntry::new(vaddr, nr, PagemapFlags::PE_GUARD)),
        }
    }

    /// Records the guard regions of `v`: pagemap marks them (bit 58, also
    /// reported as swapped); process_vm_readv cannot read past them.
    fn find_guards(&mut self, pm: &mut Pagemap, v: &Vma) -> Result<()> {
        if matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall) {
            return Ok(());
        }
        let mut ents = vec![0u64; scratch_len(v.start, v.end, 16384)];
        for (start, end) in populated(pm, v.start, v.end, linux_raw_sys::general::PAGE_IS_GUARD as u64) {
            let mut addr = start;
            while addr < end {
                let n = pm.read_range(addr, end, &mut ents).ctx(self.pid, "read pagemap")?;
                if n == 0 {
                    break;
                }
                for (i, &e) in ents[..n].iter().enumerate() {
                    if !PmEntry(e).guard_region() {
                        continue;
                    }
                    self.add_guard(addr + i as u64 * PAGE, 1, v.start);
                }
                addr += n as u64 * PAGE;
            }
        }
        Ok(())
    }

    fn dump_private_pages(
        &mut self,
        pm: &mut Pagemap,
        v: &Vma,
        source: Option<&VmaFrames>,
        own: &mut VmaFrames,
    ) -> Result<()> {
        // Of a private mapping of a file (or of a shared memory object),
        // only the pages written since (anonymous copies); the rest is the
        // object's.
        let anon = !matches!(v.kind, VmaKind::File | VmaKind::Memfd | VmaKind::GhostFile | VmaKind::SharedAnon);
        if !v.prot.contains(Prot::PROT_READ) {
            return self.dump_unreadable(pm, v, anon);
        }
        self.set_policy(anon)?;
        let track = self.track_frames && cow_eligible(v);
        // Runs of (address, first frame, pages, shared with the ancestor).
        let mut seen: Vec<(u64, u64, u64, bool)> = Vec::new();
        let mut ents = vec![0u64; scratch_len(v.start, v.end, 16384)];
        let any = (crate::sys::uffd::PAGE_IS_PRESENT | crate::sys::uffd::PAGE_IS_SWAPPED) as u64;
        for (from, to) in populated(pm, v.start, v.end, any) {
            let mut addr = from;
            while addr < to {
                let n = pm.read_range(addr, to, &mut ents).ctx(self.pid, "read pagemap")?;
                if n == 0 {
                    break;
                }
                // What each page is: 0 nothing, 1 data, 2 the ancestor's,
                // 3 data mapped by another process too (see read_unpinned).
                let what = |i: usize| -> u8 {
                    let e = PmEntry(ents[i]);
                    let shared = match (source, e.present().then(|| e.pfn()).flatten()) {
                        (Some(src), Some(pfn)) if pfn != 0 => src.has(addr + i as u64 * PAGE, pfn),
                        _ => false,
                    };
                    if shared {
                        2
                    } else if wanted(e, anon) && e.present() && !e.exclusive() {
                        3
                    } else if wanted(e, anon) {
                        1
                    } else {
                        0
                    }
                };
                let mut i = 0;
                while i < n {
                    let k = what(i);
                    let s = i;
                    while i < n && what(i) == k {
                        i += 1;
                    }
                    let (start, len) = (addr + s as u64 * PAGE, (i - s) as u64 * PAGE);
                    match k {
                        1 => self.queue(start, len)?,
                        3 => self.queue_unpinned(start, len)?,
                        2 => {
                            let nr = (i - s) as u32;
                            match self.cow.last_mut() {
                                Some(c) if c.vaddr + c.nr_pages as u64 * PAGE == start && start != v.start => {
                                    c.nr_pages += nr
                                }
                                _ => self.cow.push(PagemapEntry::new(start, nr, PagemapFlags::PE_COW)),
                            }
                        }
                        _ => {}
                    }
                    if track {
                        for (j, &e) in ents.iter().enumerate().take(i).skip(s) {
                            let e = PmEntry(e);
                            if let Some(pfn) = e.present().then(|| e.pfn()).flatten().filter(|&p| p != 0) {
                                let (a, sh) = (addr + j as u64 * PAGE, k == 2);
                                match seen.last_mut() {
                                    Some(r) if r.3 == sh && r.0 + r.2 * PAGE == a && r.1 + r.2 == pfn => r.2 += 1,
                                    _ => seen.push((a, pfn, 1, sh)),
                                }
                            }
                        }
                    }
                }
                addr += n as u64 * PAGE;
            }
        }
        // A VMA that received pages passes on only those (its provider's
        // copy holds nothing else); one that shared nothing provides its own.
        let received = seen.iter().any(|p| p.3);
        own.pages = seen.into_iter().filter(|p| p.3 || !received).map(|p| (p.0, p.1, p.2)).collect();
        Ok(())
    }

    /// Queues `[start, start + len)` of private memory whose pages another
    /// process maps too (copy-on-write after fork, KSM), to be read through
    /// /proc/pid/mem. process_vm_readv pins what it reads, and pinning an
    /// anonymous page that is not exclusive makes the kernel unshare it
    /// first: the task would get a copy of every such page (its memory
    /// grows), and a hugetlb page with the pool empty is taken from the
    /// child sharing it instead (which dies of SIGBUS on its next touch:
    /// zdtm maps10). /proc/pid/mem takes a reference without pinning.
    fn queue_unpinned(&mut self, start: u64, len: u64) -> Result<()> {
        if self.sink.mem.get().is_none() {
            let f = std::fs::File::open(proc::pid_path(self.pid, "mem")).ctx(self.pid, "open /proc/pid/mem")?;
            let _ = self.sink.mem.set(f);
        }
        self.queue_as(start, len, true)
    }

    /// Pages of VMAs without PROT_READ: process_vm_readv honours protections,
    /// /proc/pid/mem reads with FOLL_FORCE.
    fn dump_unreadable(&mut self, pm: &mut Pagemap, v: &Vma, anon: bool) -> Result<()> {
        self.flush()?;
        self.skip_zero = anon;
        let mem = std::fs::File::open(proc::pid_path(self.pid, "mem")).ctx(self.pid, "open /proc/pid/mem")?;
        let mut ents = vec![0u64; scratch_len(v.start, v.end, 4096)];
        let mut page = vec![0u8; PAGE as usize];
        let any = (crate::sys::uffd::PAGE_IS_PRESENT | crate::sys::uffd::PAGE_IS_SWAPPED) as u64;
        for (from, to) in populated(pm, v.start, v.end, any) {
            let mut addr = from;
            while addr < to {
                let n = pm.read_range(addr, to, &mut ents).ctx(self.pid, "read pagemap")?;
                if n == 0 {
                    break;
                }
                for (i, &e) in ents[..n].iter().enumerate() {
                    if wanted(PmEntry(e), anon) {
                        let a = addr + i as u64 * PAGE;
                        let r = mem.read_exact_at(&mut page, a);
                        let what = format!("read page {a:#x} of a PROT_NONE VMA");
                        self.emit(a, r.map(|()| &page[..]).ctx(self.pid, &what));
                    }
                }
                addr += n as u64 * PAGE;
            }
        }
        Ok(())
    }

    /// MAP_SHARED anonymous memory, read from the shmem object.
    fn dump_shmem(&mut self, v: &Vma) -> Result<()> {
        let len = v.end - v.start;
        let key = (v.dev, v.inode);
        if let Some(stored) = self.shmem.as_deref_mut() {
            let ranges = stored.entry(key).or_default();
            if covered_by(ranges, v.pgoff, v.pgoff + len) {
                return Ok(());
            }
            ranges.push((v.pgoff, v.pgoff + len));
        }
        self.set_policy(true)?;
        let f = proc::map_files::open(self.pid, v.start, v.end).ctx(self.pid, "open map_files of shared memory")?;
        // Readable mappings are read by the workers like private memory
        // (only where the object holds data: a read of a hole would give
        // the object a page); others through the object itself.
        let readable = v.prot.contains(Prot::PROT_READ);
        if !readable {
            self.flush()?;
        }
        let mut off = 0u64;
        use std::os::fd::AsFd;
        while off < len {
            let file_off = v.pgoff + off;
            let data = match crate::sys::fs::lseek(f.as_fd(), file_off as i64, crate::sys::fs::Whence::Data) {
                Ok(d) => d,
                Err(e) if e == crate::sys::Errno::ENXIO => break,
                Err(e) => return Err(Error::task(self.pid, format!("SEEK_DATA in shared memory: {e}"))),
            };
            if data >= v.pgoff + len {
                break;
            }
            let hole = crate::sys::fs::lseek(f.as_fd(), data as i64, crate::sys::fs::Whence::Hole)
                .ctx(self.pid, "SEEK_HOLE in shared memory")?
                .min(v.pgoff + len);
            let mut at = data & !(PAGE - 1);
            if readable {
                self.queue(v.start + (at - v.pgoff), hole - at)?;
                off = hole - v.pgoff;
                continue;
            }
            while at < hole {
                let chunk = ((hole - at) as usize).min(CHUNK);
                let mut data = std::mem::take(&mut self.buf);
                data.resize(CHUNK, 0);
                let r = f.read_exact_at(&mut data[..chunk], at).ctx(self.pid, "read shared memory");
                let vaddr = v.start + (at - v.pgoff);
                self.emit(vaddr, r.map(|()| &data[..chunk]));
                self.buf = data;
                at += chunk as u64;
            }
            off = hole - v.pgoff;
        }
        Ok(())
    }

    fn set_policy(&mut self, skip_zero: bool) -> Result<()> {
        if self.skip_zero != skip_zero {
            self.flush()?;
            self.skip_zero = skip_zero;
        }
        Ok(())
    }

    fn queue(&mut self, addr: u64, len: u64) -> Result<()> {
        self.queue_as(addr, len, false)
    }

    /// Queues a range read through /proc/pid/mem (`unpinned`) or not; a
    /// chunk holds ranges of one kind.
    fn queue_as(&mut self, mut addr: u64, mut len: u64, unpinned: bool) -> Result<()> {
        if self.unpinned != unpinned {
            self.flush()?;
            self.unpinned = unpinned;
        }
        while len > 0 {
            if self.iov.len() == IOV_MAX || self.pending == CHUNK {
                self.flush()?;
            }
            let room = (CHUNK - self.pending) as u64;
            let take = len.min(room);
            self.iov.push(IoVec { base: addr, len: take });
            self.pending += take as usize;
            addr += take;
            len -= take;
        }
        Ok(())
    }

    /// Hands the queued ranges to a worker as one chunk.
    fn flush(&mut self) -> Result<()> {
        if self.iov.is_empty() {
            return Ok(());
        }
        crate::fault::check(crate::fault::Fault::DumpPageBatch)?;
        let job = Job {
            sink: self.sink.clone(),
            seq: self.seq,
            stripe: self.sink.stripe(self.seq)?,
            iov: std::mem::take(&mut self.iov),
            total: std::mem::take(&mut self.pending),
            skip_zero: self.skip_zero,
            unpinned: self.unpinned,
        };
        self.seq += 1;
        match self.held.as_mut() {
            Some(held) => {
                held.push(job);
                Ok(())
            }
            None => self.sink.hand_out(&self.tx, job),
        }
    }

    /// Stores pages read here (`data`, at `vaddr`), in order with the
    /// chunks handed out before, skipping zero pages if asked; a read
    /// failure fails the dump.
    fn emit(&mut self, vaddr: u64, data: Result<&[u8]>) {
        // Held chunks come first: this would wait for them for ever.
        debug_assert!(self.held.is_none(), "pages read in place by a live dumper");
        let len = data.as_ref().map(|d| d.len()).unwrap_or(0) as u64;
        let seq = self.seq;
        self.seq += 1;
        match self.sink.stripe(seq) {
            Ok(stripe) => self.sink.commit(seq, stripe, &[IoVec { base: vaddr, len }], data, self.skip_zero),
            Err(e) => {
                self.sink.lock().failed.get_or_insert(e);
            }
        }
    }

    /// The pages still being copied, and the task's frames for its
    /// children (complete already: they come from pagemap).
    pub fn finish(mut self) -> (PendingPages, Frames) {
        self.cow.append(&mut self.parent);
        // Those of tracked VMAs were found during the walk.
        self.guards.sort_unstable_by_key(|g| g.vaddr);
        let pending = PendingPages {
            sink: self.sink,
            guards: self.guards,
            cow: self.cow,
            skipped: self.skipped,
            held: self.held.unwrap_or_default(),
            tx: self.tx,
        };
        (pending, self.frames)
    }
}

/// What the tree inherits from the engine's own mappings: MAP_SHARED
/// anonymous objects and copies of private memory shared copy-on-write.
#[derive(Clone, Copy, Debug)]
pub struct Inheritance<'a> {
    /// Shared objects by (device, inode).
    pub shm: &'a HashMap<(u64, u64), Inherited>,
    /// Private copies.
    pub cow: &'a CowAreas,
}

/// The engine's copies of private memory that tasks share copy-on-write:
/// (providing task, VMA start, end) -> where the engine mapped it.
#[derive(Debug, Default)]
pub struct CowAreas {
    /// Addresses by (provider pid, start, end).
    pub addr: HashMap<(u32, u64, u64), u64>,
}

/// Every area a task of the tree receives: (provider pid, start, end).
pub fn cow_areas<'v>(tasks: impl Iterator<Item = &'v [Vma]>) -> std::collections::BTreeSet<(u32, u64, u64)> {
    tasks.flat_map(|vmas| vmas.iter().filter(|v| v.cow_from != 0).map(|v| (v.cow_from, v.start, v.end))).collect()
}

/// Fills `dst`, the engine's copy of `[start, end)` of the providing task,
/// from its pagemap and pages image.
pub fn fill_cow(
    pid: Pid,
    dst: &mut [u8],
    start: u64,
    end: u64,
    pagemap: &[PagemapEntry],
    pages: &[std::os::fd::BorrowedFd<'_>],
) -> Result<()> {
    for (e, off) in data_offsets(pagemap) {
        let len = e.nr_pages as u64 * PAGE;
        let (s, x) = (start.max(e.vaddr), end.min(e.vaddr + len));
        if s < x {
            let buf = &mut dst[(s - start) as usize..(x - start) as usize];
            read_stored(pid, pages, e.stripe, buf, off + (s - e.vaddr))?;
        }
    }
    Ok(())
}

/// Reads `buf` from offset `off` of stripe `stripe` of a task's pages image.
fn read_stored(pid: Pid, pages: &[std::os::fd::BorrowedFd<'_>], stripe: u8, buf: &mut [u8], off: u64) -> Result<()> {
    let fd = *pages
        .get(stripe as usize)
        .ok_or_else(|| Error::task(pid, format!("no stripe {stripe} of its pages image")))?;
    let got = crate::sys::fs::pread_full(fd, buf, off).ctx(pid, "read the pages image")?;
    if got != buf.len() {
        return Err(Error::task(pid, "the pages image is shorter than its pagemap"));
    }
    Ok(())
}

/// Most areas one task may keep from an ancestor, or provide to its
/// descendants (the restorer keeps each one mapped through its unmap step).
pub const MAX_COW_AREAS: usize = 64;

/// The page frames of a task's private anonymous VMAs, by VMA range, so
/// that its children's dump finds the pages they still share with it.
#[derive(Debug, Default)]
pub struct Frames {
    vmas: HashMap<(u64, u64), VmaFrames>,
    /// VMAs this task receives from an ancestor.
    received: usize,
    /// Areas (provider, start, end) this task uses.
    used: std::collections::BTreeSet<(u32, u64, u64)>,
    /// Areas of this task that descendants use.
    provided: std::collections::BTreeSet<(u64, u64)>,
}

impl Frames {
    /// Records that a child uses the areas of `child`: each provider then
    /// keeps its temporary copy for it.
    pub fn note_used(all: &mut HashMap<Pid, Frames>, child: &Frames) {
        for &(provider, s, e) in &child.used {
            if let Some(p) = all.get_mut(&Pid(provider as i32)) {
                p.provided.insert((s, e));
            }
        }
    }
}

/// The frames of one VMA and whose pages image holds their data.
#[derive(Debug, Default)]
pub struct VmaFrames {
    /// Pid of the task whose image holds the data (this task or an ancestor).
    provider: u32,
    /// Runs of pages at consecutive addresses in consecutive frames:
    /// (address, first page frame number, pages), in address order.
    pages: Vec<(u64, u64, u64)>,
}

impl VmaFrames {
    fn has(&self, addr: u64, pfn: u64) -> bool {
        let i = self.pages.partition_point(|p| p.0 <= addr);
        let Some(&(a, f, n)) = i.checked_sub(1).map(|i| &self.pages[i]) else { return false };
        let k = (addr - a) / PAGE;
        k < n && f + k == pfn
    }
}

/// A VMA whose pages may be shared with a relative's: private anonymous,
/// readable and writable (or accounted), not a stack, not hugetlb (each
/// task's copy is stored and restored on its own).
fn cow_eligible(v: &Vma) -> bool {
    v.kind == VmaKind::Anon
        && !v.is_hugetlb()
        && !v.flags.contains(MapFlags::MAP_SHARED)
        && !v.flags.contains(MapFlags::MAP_GROWSDOWN)
        && v.prot.contains(Prot::PROT_READ)
        && (v.prot.contains(Prot::PROT_WRITE) || v.status.contains(VmaStatus::VMA_ACCOUNTED))
}

/// The runs of `[start, end)` that hold a page of categories `mask`
/// (PAGEMAP_SCAN: one call for what would be millions of pagemap entries,
/// so a large reservation with little in it costs little); the whole range
/// where the kernel cannot scan it, for the page-by-page walk to decide.
fn populated(pm: &Pagemap, start: u64, end: u64, mask: u64) -> Vec<(u64, u64)> {
    let q = crate::sys::uffd::ScanQuery { flags: 0, category_mask: 0, anyof_mask: mask, return_mask: mask };
    match super::mem_track::scan(pm.fd(), start, end, q) {
        Ok(regions) => {
            let mut out: Vec<(u64, u64)> = Vec::new();
            for r in regions {
                match out.last_mut() {
                    Some(l) if l.1 == r.start => l.1 = r.end,
                    _ => out.push((r.start, r.end)),
                }
            }
            out
        }
        Err(_) => vec![(start, end)],
    }
}

/// Entries of a scratch buffer for the pages of `[start, end)`: at most
/// `max`, and no more than the range holds. A buffer sized for the largest
/// case costs the small VMAs of a real process (hundreds of libraries) an
/// mmap, page faults and an munmap with a TLB shootdown each.
pub(crate) fn scratch_len(start: u64, end: u64, max: usize) -> usize {
    (end.saturating_sub(start) / PAGE).clamp(1, max as u64) as usize
}

/// A page to store: present or swapped (a guard marker is not), and for
/// private mappings an anonymous (written) page rather than the file's own.
fn wanted(e: PmEntry, anon: bool) -> bool {
    (e.present() || e.swapped()) && !e.guard_region() && (anon || !e.file_or_shared_anon())
}

fn is_zero(page: &[u8]) -> bool {
    let (pre, words, post) = {
        // SAFETY: u64 has no invalid bit patterns; align_to splits correctly.
        unsafe { page.align_to::<u64>() }
    };
    pre.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
}

/// VMA, page-run and vDSO parts of the restore plan. `current_vdso` is
/// where this kernel put the vDSO areas in the restored process.
// One task's memory with the two kinds of object it inherits from the
// engine (shared anonymous memory, memfds): a context struct would only
// rename these.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    b: &mut PlanBuilder,
    pid: Pid,
    head: &MmEntry,
    vmas: &[Vma],
    pagemap: &[PagemapEntry],
    current_vdso: &[(VmaKind, u64, u64)],
    from_engine: Inheritance<'_>,
    opened: &super::files::Opened,
    mut lazy: Option<&mut Lazy>,
) -> Result<Vec<rp::PageRun>> {
    let Inheritance { shm: inherited, cow } = from_engine;
    let mut table = Vec::new();
    let mut dumped_vdso = Vec::new();
    let mut shm = shm_objects(vmas);
    let mut keep: Vec<[u64; 2]> = Vec::new();
    for v in vmas.iter().filter(|v| v.kind == VmaKind::SharedAnon) {
        if let Some(obj) = inherited.get(&(v.dev, v.inode)) {
            let next = shm.len() as u32 + 1;
            let e = shm.entry((v.dev, v.inode)).or_insert((next, obj.size));
            e.1 = obj.size;
            if !keep.contains(&[obj.addr, obj.addr + obj.size]) {
                keep.push([obj.addr, obj.addr + obj.size]);
            }
        }
    }
    // Private memory still shared with relatives: the engine's copy is
    // moved into place (by the task providing it, and by those receiving
    // it, which then drop what they do not share).
    let mut moved: HashMap<(u64, u64), (u64, bool)> = HashMap::new();
    let mut zap: Vec<[u64; 2]> = Vec::new();
    for v in vmas.iter().filter(|v| v.kind == VmaKind::Anon) {
        let (key, receiver) = if v.cow_from != 0 {
            ((v.cow_from, v.start, v.end), true)
        } else {
            ((pid.0 as u32, v.start, v.end), false)
        };
        let Some(&temp) = cow.addr.get(&key) else {
            if receiver {
                return Err(Error::task(
                    pid,
                    format!("VMA {:#x}-{:#x}: the copy shared with task {} is missing", v.start, v.end, v.cow_from),
                ));
            }
            continue;
        };
        moved.insert((v.start, v.end), (temp, receiver));
        keep.push([temp, temp + (v.end - v.start)]);
        if receiver {
            let mut at = v.start;
            let mut shared: Vec<&PagemapEntry> = pagemap
                .iter()
                .filter(|e| e.flags.contains(PagemapFlags::PE_COW) && e.vaddr >= v.start && e.vaddr < v.end)
                .collect();
            shared.sort_by_key(|e| e.vaddr);
            for e in shared {
                if e.vaddr > at {
                    zap.push([at, e.vaddr]);
                }
                at = e.vaddr + e.nr_pages as u64 * PAGE;
            }
            if at < v.end {
                zap.push([at, v.end]);
            }
        }
    }
    if keep.len() > rp::MAX_KEEP {
        return Err(Error::task(pid, format!("{} inherited areas to keep, at most {}", keep.len(), rp::MAX_KEEP)));
    }
    b.plan.keep = b.add_table(&keep);
    b.plan.zap = b.add_table(&zap);
    for v in vmas {
        let kind = match v.kind {
            // The dumped ring's pages go to an ordinary mapping, which the
            // new ring replaces (objects::aio).
            VmaKind::Anon | VmaKind::Stack | VmaKind::Heap | VmaKind::AioRing => rp::VmaKind::AnonPrivate,
            VmaKind::SharedAnon => rp::VmaKind::AnonShared,
            VmaKind::File | VmaKind::Memfd | VmaKind::GhostFile if v.flags.contains(MapFlags::MAP_SHARED) => {
                rp::VmaKind::FileShared
            }
            VmaKind::File | VmaKind::Memfd | VmaKind::GhostFile => rp::VmaKind::FilePrivate,
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock => {
                dumped_vdso.push((v.kind, v.start, v.end - v.start));
                continue;
            }
            VmaKind::SysvShm => rp::VmaKind::SysvShm,
            VmaKind::Vsyscall => continue,
        };
        let mut map_flags = 0u32;
        if v.flags.contains(MapFlags::MAP_DROPPABLE) {
            map_flags |= MapFlags::MAP_DROPPABLE.bits();
        }
        if private_shmem(v) {
            map_flags |= rp::MAP_PRIVATE_SHM;
        }
        if v.flags.contains(MapFlags::MAP_GROWSDOWN) {
            map_flags |= MapFlags::MAP_GROWSDOWN.bits();
        }
        if v.flags.contains(MapFlags::MAP_NORESERVE) {
            map_flags |= MapFlags::MAP_NORESERVE.bits();
        }
        if v.is_hugetlb() {
            map_flags |= super::hugetlb::map_flags(v.huge_page_size);
        }
        let mut advice = 0;
        for (s, a) in [
            (VmaStatus::VMA_DONTFORK, rp::ADV_DONTFORK),
            (VmaStatus::VMA_WIPEONFORK, rp::ADV_WIPEONFORK),
            (VmaStatus::VMA_HUGEPAGE, rp::ADV_HUGEPAGE),
            (VmaStatus::VMA_NOHUGEPAGE, rp::ADV_NOHUGEPAGE),
            (VmaStatus::VMA_DONTDUMP, rp::ADV_DONTDUMP),
            (VmaStatus::VMA_MERGEABLE, rp::ADV_MERGEABLE),
            (VmaStatus::VMA_LOCKED, rp::ADV_LOCKED),
            (VmaStatus::VMA_LOCKONFAULT, rp::ADV_LOCKONFAULT),
            (VmaStatus::VMA_SEQUENTIAL, rp::ADV_SEQUENTIAL),
            (VmaStatus::VMA_RANDOM, rp::ADV_RANDOM),
        ] {
            if v.status.contains(s) {
                advice |= a;
            }
        }
        // Under PR_SET_MEMORY_MERGE every VMA is mergeable by itself.
        if head.flags.contains(MmFlags::MERGE_ANY) {
            advice &= !rp::ADV_MERGEABLE;
        }
        // A ring's mapping is the kernel's, with its own flags.
        if v.kind == VmaKind::AioRing {
            advice = 0;
        }
        // Opened for writing if it was (VM_MAYWRITE), not only if the
        // mapping is writable now: mprotect must work again. A private
        // mapping's file, if it was opened so (its map_files mode).
        let rw = (kind == rp::VmaKind::FileShared
            && (v.prot.contains(Prot::PROT_WRITE) || v.status.contains(VmaStatus::VMA_MAYWRITE)))
            || v.status.contains(VmaStatus::VMA_FILE_WRITE);
        let (path, open_flags) = match (&v.path, kind) {
            // The engine's memfd, which the task inherited: reopened
            // through /proc/self/fd, it is the same file.
            _ if v.kind == VmaKind::GhostFile => {
                let raw = opened.raw(super::reg_file::ghost_mapping_id(v.shmid as u32)).ok_or_else(|| {
                    Error::task(
                        pid,
                        format!("VMA {:#x}-{:#x}: its ghost file {} was not made", v.start, v.end, v.shmid),
                    )
                })?;
                (b.add_str(format!("/proc/self/fd/{raw}").as_bytes()), if rw { 2 } else { 0 })
            }
            _ if v.kind == VmaKind::Memfd => {
                let raw = opened.raw(super::memfd::mapping_id(v.shmid as u32)).ok_or_else(|| {
                    Error::task(
                        pid,
                        format!("memfd VMA {:#x}-{:#x}: memfd {} was not restored", v.start, v.end, v.shmid),
                    )
                })?;
                (b.add_str(format!("/proc/self/fd/{raw}").as_bytes()), if rw { 2 } else { 0 })
            }
            (Some(p), rp::VmaKind::FileShared | rp::VmaKind::FilePrivate) => {
                check_mapped_file(pid, v, p)?;
                (b.add_str(p.as_bytes()), if rw { 2 } else { 0 })
            }
            (None, rp::VmaKind::FileShared | rp::VmaKind::FilePrivate) => {
                return Err(Error::task(pid, format!("file VMA {:#x}-{:#x} has no path", v.start, v.end)))
            }
            _ => (rp::Str::default(), 0),
        };
        // A private mapping that was never writable is not accounted; mapping
        // it read-write to fill it would make it so. Map it as it was; its
        // few pages of data (code patched by a debugger or by the parasite's
        // injection) are written later through /proc/pid/mem.
        let private = matches!(kind, rp::VmaKind::AnonPrivate | rp::VmaKind::FilePrivate) || private_shmem(v);
        let mut vflags = 0;
        if private && !v.prot.contains(Prot::PROT_WRITE) && !v.status.contains(VmaStatus::VMA_ACCOUNTED) {
            vflags |= rp::VF_FINAL_PROT;
        }
        let (shm_id, shm_size) = match kind {
            rp::VmaKind::AnonShared => shm.get(&(v.dev, v.inode)).copied().unwrap_or((0, 0)),
            rp::VmaKind::SysvShm => (v.shmid as u32, 0),
            _ => (0, 0),
        };
        if kind == rp::VmaKind::SysvShm {
            vflags |= super::sysv_shm::plan_flags(pid, vmas, v)?;
        }
        if let Some(l) = opened.mapping_lock(pid, v.start) {
            if !matches!(kind, rp::VmaKind::FileShared | rp::VmaKind::FilePrivate) {
                return Err(Error::task(
                    pid,
                    format!("VMA {:#x}-{:#x}: a flock lock on a VMA of no file", v.start, v.end),
                ));
            }
            vflags |= rp::VF_FLOCK | if l.write { rp::VF_FLOCK_EX } else { 0 };
        }
        let shm_addr = match kind {
            rp::VmaKind::AnonShared => inherited.get(&(v.dev, v.inode)).map(|o| o.addr).unwrap_or(0),
            rp::VmaKind::AnonPrivate => match moved.get(&(v.start, v.end)) {
                Some(&(temp, receiver)) => {
                    if !receiver {
                        // Its pages are all in the copy already.
                        vflags |= rp::VF_FILLED;
                    }
                    temp
                }
                None => 0,
            },
            _ => 0,
        };
        table.push(rp::Vma {
            start: v.start,
            end: v.end,
            pgoff: v.pgoff,
            kind: kind as u32,
            prot: v.prot.bits(),
            map_flags,
            open_flags,
            path,
            advice,
            flags: vflags,
            shm_size,
            shm_id,
            _pad: 0,
            shm_addr,
        });
    }
    b.plan.vmas = b.add_table(&table);
    if let Some(l) = opened.mapping_locks(pid).find(|l| !vmas.iter().any(|v| v.start == l.vma)) {
        return Err(Error::task(pid, format!("its {} on the mapping at {:#x}: no such VMA", l.kind_name(), l.vma)));
    }

    let lazy_vma: Vec<bool> = match lazy {
        Some(_) => table.iter().map(|t| lazy_eligible(t, pagemap)).collect(),
        None => vec![false; table.len()],
    };
    let mut runs = Vec::with_capacity(pagemap.len());
    let mut late = Vec::new();
    for (e, off) in data_offsets(pagemap) {
        let len = e.nr_pages as u64 * PAGE;
        let end = e.vaddr + len;
        if !covered(vmas, e.vaddr, end) {
            return Err(Error::task(
                pid,
                format!("pagemap entry {:#x} (+{} pages) lies outside every VMA", e.vaddr, e.nr_pages),
            ));
        }
        // Split at VMA boundaries: pages of VMAs mapped with their final,
        // non-writable protection are written late.
        for (i, t) in table.iter().enumerate().filter(|(_, t)| t.end > e.vaddr && t.start < end) {
            let (s, x) = (t.start.max(e.vaddr), t.end.min(end));
            let run =
                rp::PageRun { vaddr: s, len: x - s, file_off: off + (s - e.vaddr), stripe: e.stripe as u32, _pad: 0 };
            let own_copies = t.map_flags & rp::MAP_PRIVATE_SHM != 0;
            if (t.kind == rp::VmaKind::AnonShared as u32 && t.shm_addr != 0 && !own_copies)
                || t.flags & rp::VF_FILLED != 0
            {
                // Shared with other processes: filled once by the engine.
                continue;
            }
            if t.flags & rp::VF_FINAL_PROT != 0 {
                late.push(run);
            } else if let (true, Some(l)) = (lazy_vma[i], lazy.as_deref_mut()) {
                l.runs.push(run);
            } else {
                runs.push(run);
            }
        }
    }
    b.plan.runs = b.add_table(&runs);
    let lazy_ranges: Vec<[u64; 2]> =
        table.iter().zip(&lazy_vma).filter(|(_, &l)| l).map(|(t, _)| [t.start, t.end]).collect();
    b.plan.lazy = b.add_table(&lazy_ranges);
    if let Some(l) = lazy {
        l.vmas = lazy_ranges;
    }
    let guards: Vec<[u64; 2]> = pagemap
        .iter()
        .filter(|e| e.flags.contains(PagemapFlags::PE_GUARD))
        .map(|e| [e.vaddr, e.vaddr + e.nr_pages as u64 * PAGE])
        .collect();
    b.plan.guards = b.add_table(&guards);
    b.plan.mm_flags = 0;
    for (f, m) in [
        (MmFlags::MCL_FUTURE, rp::MM_MCL_FUTURE),
        (MmFlags::MCL_ONFAULT, rp::MM_MCL_ONFAULT),
        (MmFlags::MERGE_ANY, rp::MM_MERGE_ANY),
    ] {
        if head.flags.contains(f) {
            b.plan.mm_flags |= m;
        }
    }
    b.plan.thp_disable = head.thp_disable;
    b.plan.mdwe = head.mdwe;

    // The vDSO areas: this kernel's must look exactly like the dumped ones
    // (same kinds, sizes and relative placement) for the vDSO code, which
    // finds its data pages by fixed offsets, to work where it was. A task
    // that had unmapped them all gets none: the restorer keeps only what
    // the plan lists.
    if !dumped_vdso.is_empty() && dumped_vdso.len() != current_vdso.len()
        || dumped_vdso.iter().zip(current_vdso).any(|(d, c)| d.0 != c.0 || d.2 != c.2)
    {
        return Err(Error::task(
            pid,
            format!("vDSO layout differs: dumped {dumped_vdso:x?}, this kernel {current_vdso:x?}"),
        ));
    }
    if dumped_vdso.len() > rp::MAX_VDSO {
        return Err(Error::task(pid, "too many vDSO areas"));
    }
    if let (Some(d0), Some(c0)) = (dumped_vdso.first(), current_vdso.first()) {
        let delta = d0.1.wrapping_sub(c0.1);
        if dumped_vdso.iter().zip(current_vdso).any(|(d, c)| d.1.wrapping_sub(c.1) != delta) {
            return Err(Error::task(pid, "vDSO areas moved apart since the dump"));
        }
    }
    b.plan.nr_vdso = dumped_vdso.len().min(current_vdso.len()) as u32;
    for (i, (d, c)) in dumped_vdso.iter().zip(current_vdso).enumerate() {
        b.plan.vdso[i] = rp::VdsoMove { from: c.1, to: d.1, len: d.2 };
    }

    let m = &mut b.plan.mm;
    *m = rp::MmMap {
        start_code: head.start_code,
        end_code: head.end_code,
        start_data: head.start_data,
        end_data: head.end_data,
        start_brk: head.start_brk,
        brk: head.brk,
        start_stack: head.start_stack,
        arg_start: head.arg_start,
        arg_end: head.arg_end,
        env_start: head.env_start,
        env_end: head.env_end,
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX,
    };
    b.plan.flags |= rp::F_MM_MAP;
    b.plan.auxv = b.add_table(&head.auxv);
    if let Some(exe) = &head.exe_file {
        b.plan.exe = b.add_str(exe.as_bytes());
    }
    Ok(late)
}

/// What [`plan`] leaves to the lazy-pages server (restore --lazy-pages).
#[derive(Debug, Default)]
pub struct Lazy {
    /// The runs of this dump's pages image it copies in.
    pub runs: Vec<rp::PageRun>,
    /// The VMAs the restorer registers, `[start, end)`: their pages in a
    /// parent dump are lazy too.
    pub vmas: Vec<[u64; 2]>,
}

/// Least page data a VMA holds for its pages to be left to the lazy-pages
/// server: smaller ones (stacks, small data) are read at once, which
/// costs less than the faults they would take when the task starts.
pub const LAZY_MIN: u64 = 256 * 1024;

/// Whether the pages of VMA `t` may be copied in lazily (restore
/// --lazy-pages): a plain private anonymous VMA (read-write, mapped by
/// the task itself, not locked, not wiped on fork, no guard regions, not
/// droppable, growing down or of huge pages (UFFDIO_COPY takes whole huge
/// pages there)) holding at least [`LAZY_MIN`] of page data (in this dump
/// or in a parent dump). A userfaultfd in missing mode
/// then stands for exactly what the restorer would have read.
fn lazy_eligible(t: &rp::Vma, pagemap: &[PagemapEntry]) -> bool {
    let plain = t.kind == rp::VmaKind::AnonPrivate as u32
        && t.shm_addr == 0
        && t.flags & (rp::VF_FILLED | rp::VF_FINAL_PROT) == 0
        && t.prot == (Prot::PROT_READ | Prot::PROT_WRITE).bits()
        && t.advice & (rp::ADV_LOCKED | rp::ADV_WIPEONFORK) == 0
        && t.map_flags & (MapFlags::MAP_DROPPABLE | MapFlags::MAP_GROWSDOWN | MapFlags::MAP_HUGETLB).bits() == 0;
    if !plain {
        return false;
    }
    let mut data = 0;
    for e in pagemap.iter().filter(|e| e.vaddr < t.end && e.vaddr + e.nr_pages as u64 * PAGE > t.start) {
        if e.flags.contains(PagemapFlags::PE_GUARD) {
            return false;
        }
        if e.has_data() || e.flags.contains(PagemapFlags::PE_PARENT) {
            data += (e.vaddr + e.nr_pages as u64 * PAGE).min(t.end) - e.vaddr.max(t.start);
        }
    }
    data > 0 && data >= lazy_min()
}

/// [`LAZY_MIN`], or `CRTOOLS_LAZY_MIN_KIB` (tests: every eligible VMA
/// lazy with 0).
fn lazy_min() -> u64 {
    static MIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var("CRTOOLS_LAZY_MIN_KIB").ok().and_then(|v| v.parse::<u64>().ok()).map_or(LAZY_MIN, |k| k * 1024)
    })
}

/// Writes the page runs [`plan`] left out (VMAs mapped without write
/// permission) from the pages image into the stopped, restored task through
/// /proc/pid/mem, which breaks copy-on-write like a debugger's write and
/// leaves the VMA as it is.
pub fn write_late_pages(pid: Pid, pages: &[std::os::fd::BorrowedFd<'_>], runs: &[rp::PageRun]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open(proc::pid_path(pid, "mem"))
        .ctx(pid, "open /proc/pid/mem for writing")?;
    let mut buf = vec![0u8; DUMP_BUFFER];
    for r in runs {
        let mut done = 0u64;
        while done < r.len {
            let n = ((r.len - done) as usize).min(buf.len());
            read_stored(pid, pages, r.stripe as u8, &mut buf[..n], r.file_off + done)?;
            mem.write_all_at(&buf[..n], r.vaddr + done)
                .ctx(pid, &format!("write pages at {:#x} through /proc/pid/mem", r.vaddr + done))?;
            done += n as u64;
        }
    }
    Ok(())
}

/// A MAP_SHARED anonymous object several processes of the tree share: the
/// engine creates and fills it once, before forking the tree, so every
/// task inherits it and maps it where it had it.
#[derive(Clone, Copy, Debug)]
pub struct Inherited {
    /// Where the engine mapped it.
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// A private mapping of a shared anonymous memory object (made through
/// /proc/pid/map_files): restore maps it privately from the object again
/// and writes its own copied pages over it, so the object's data must be
/// stored through a shared mapping of the same task covering that part.
fn private_shmem(v: &Vma) -> bool {
    v.kind == VmaKind::SharedAnon && !v.flags.contains(MapFlags::MAP_SHARED)
}

fn check_private_shmem(pid: Pid, vmas: &[Vma]) -> Result<()> {
    for v in vmas.iter().filter(|v| private_shmem(v)) {
        let parts: Vec<(u64, u64)> = vmas
            .iter()
            .filter(|w| w.kind == VmaKind::SharedAnon && !private_shmem(w) && (w.dev, w.inode) == (v.dev, v.inode))
            .map(|w| (w.pgoff, w.pgoff + (w.end - w.start)))
            .collect();
        if !covered_by(&parts, v.pgoff, v.pgoff + (v.end - v.start)) {
            return Err(Error::refuse(
                pid,
                format!(
                    "VMA {:#x}-{:#x}: a private mapping of shared anonymous memory (inode {}) of which the \
                     task maps no shared part covering it: not supported",
                    v.start, v.end, v.inode
                ),
            ));
        }
    }
    Ok(())
}

/// The MAP_SHARED anonymous objects (by device and inode) found in more
/// than one task, with their size (the largest extent any VMA maps).
pub fn shared_between(tasks: &[&[Vma]]) -> BTreeMap<(u64, u64), u64> {
    let mut seen: BTreeMap<(u64, u64), (usize, u64, usize)> = BTreeMap::new();
    for (i, vmas) in tasks.iter().enumerate() {
        for v in vmas.iter().filter(|v| v.kind == VmaKind::SharedAnon) {
            let e = seen.entry((v.dev, v.inode)).or_insert((i, 0, 0));
            e.1 = e.1.max(v.pgoff + (v.end - v.start));
            if e.0 != i {
                e.2 += 1;
            }
        }
    }
    seen.into_iter().filter(|(_, (_, _, others))| *others > 0).map(|(k, (_, size, _))| (k, size)).collect()
}

/// Fills object `key` (mapped as `dst`) from a task that maps it: its
/// `vmas`, `pagemap` and pages image.
pub fn fill_object(
    pid: Pid,
    dst: &mut [u8],
    key: (u64, u64),
    vmas: &[Vma],
    pagemap: &[PagemapEntry],
    pages: &[std::os::fd::BorrowedFd<'_>],
) -> Result<()> {
    for (e, off) in data_offsets(pagemap) {
        let len = e.nr_pages as u64 * PAGE;
        let end = e.vaddr + len;
        for v in vmas.iter().filter(|v| v.kind == VmaKind::SharedAnon && !private_shmem(v) && (v.dev, v.inode) == key) {
            let (s, x) = (v.start.max(e.vaddr), v.end.min(end));
            if s >= x {
                continue;
            }
            let obj = (v.pgoff + (s - v.start)) as usize;
            let n = (x - s) as usize;
            let buf = dst
                .get_mut(obj..obj + n)
                .ok_or_else(|| Error::task(pid, format!("shared memory at {s:#x} lies outside its object")))?;
            read_stored(pid, pages, e.stripe, buf, off + (s - e.vaddr))?;
        }
    }
    Ok(())
}

/// MAP_SHARED anonymous objects that need more than a plain mapping at
/// offset 0: mapped by several VMAs, or at a non-zero offset. Keyed by the
/// object's (device, inode), valued (id, size in bytes), ids from 1.
fn shm_objects(vmas: &[Vma]) -> HashMap<(u64, u64), (u32, u64)> {
    let mut groups: BTreeMap<(u64, u64), Vec<&Vma>> = Default::default();
    for v in vmas.iter().filter(|v| v.kind == VmaKind::SharedAnon) {
        groups.entry((v.dev, v.inode)).or_default().push(v);
    }
    let mut out = HashMap::new();
    for (key, vs) in groups {
        if vs.len() == 1 && vs[0].pgoff == 0 && !private_shmem(vs[0]) {
            continue;
        }
        let size = vs.iter().map(|v| v.pgoff + (v.end - v.start)).max().unwrap_or(0);
        let id = out.len() as u32 + 1;
        out.insert(key, (id, size));
    }
    out
}

/// True when `[start, end)` lies in VMAs that hold page data, without gaps
/// (a run may span adjacent VMAs). `vmas` is in address order.
fn covered(vmas: &[Vma], start: u64, end: u64) -> bool {
    let mut at = start;
    for v in vmas.iter().filter(|v| v.end > start && v.start < end) {
        if v.start > at || !needs_data(v) {
            return false;
        }
        at = v.end;
        if at >= end {
            return true;
        }
    }
    false
}

/// A file that backs a mapping must still be the file that was mapped.
fn check_mapped_file(pid: Pid, v: &Vma, path: &RawStr) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path.as_os_str())
        .map_err(|e| Error::task(pid, format!("mapped file {}: {e}", path.to_string_lossy())))?;
    if md.ino() != v.inode {
        return Err(Error::task(
            pid,
            format!(
                "mapped file {} changed since the dump (inode {} now, {} then)",
                path.to_string_lossy(),
                md.ino(),
                v.inode
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_pages_only_for_plain_anonymous_memory_with_data() {
        let plain = rp::Vma {
            start: 0x10_0000,
            end: 0x50_0000,
            pgoff: 0,
            kind: rp::VmaKind::AnonPrivate as u32,
            prot: (Prot::PROT_READ | Prot::PROT_WRITE).bits(),
            map_flags: (MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS).bits(),
            open_flags: 0,
            path: rp::Str { off: 0 },
            advice: 0,
            flags: 0,
            shm_size: 0,
            shm_id: 0,
            _pad: 0,
            shm_addr: 0,
        };
        let data = [PagemapEntry::new(0x10_0000, 0x100, PagemapFlags::empty())];
        let parent = [PagemapEntry::new(0x10_0000, 0x100, PagemapFlags::PE_PARENT)];
        assert!(lazy_eligible(&plain, &data));
        assert!(lazy_eligible(&plain, &parent), "pages in a parent dump are lazy too");
        assert!(!lazy_eligible(&plain, &[]), "no data");
        let small = [PagemapEntry::new(0x10_0000, 4, PagemapFlags::empty())];
        assert!(!lazy_eligible(&plain, &small), "below LAZY_MIN");
        let huge = rp::Vma { map_flags: plain.map_flags | MapFlags::MAP_HUGETLB.bits(), ..plain };
        assert!(!lazy_eligible(&huge, &data), "UFFDIO_COPY takes whole huge pages");
        let wiped = rp::Vma { advice: rp::ADV_WIPEONFORK, ..plain };
        assert!(!lazy_eligible(&wiped, &data));
        let ro = rp::Vma { prot: Prot::PROT_READ.bits(), ..plain };
        assert!(!lazy_eligible(&ro, &data));
        let guarded = [PagemapEntry::new(0x10_0000, 1, PagemapFlags::PE_GUARD), data[0]];
        assert!(!lazy_eligible(&plain, &guarded));
    }

    #[test]
    fn mempolicies_are_named_as_set_mempolicy_takes_them() {
        assert_eq!(describe_mempolicy(0, &[0; 16]), "MPOL_DEFAULT");
        assert_eq!(describe_mempolicy(3, &[1]), "MPOL_INTERLEAVE nodes 0");
        assert_eq!(describe_mempolicy(2 | 1 << 15, &[0b1011_0110]), "MPOL_BIND|MPOL_F_STATIC_NODES nodes 1-2,4-5,7");
        assert_eq!(describe_mempolicy(6, &[0, 1 << 63, 1]), "MPOL_WEIGHTED_INTERLEAVE nodes 127-128");
        assert_eq!(describe_mempolicy(9, &[]), "mode 9");
    }

    #[test]
    fn shared_ranges_cover_only_their_union() {
        let r = [(0x3000, 0x5000), (0, 0x2000), (0x2000, 0x3000)];
        assert!(covered_by(&r, 0, 0x5000));
        assert!(covered_by(&r, 0x1000, 0x4000));
        assert!(!covered_by(&r, 0x1000, 0x6000));
        assert!(!covered_by(&[(0, 0x1000), (0x2000, 0x3000)], 0, 0x3000));
        assert!(!covered_by(&[], 0, 0x1000));
    }

    const MMFLAGS: &[u8] = include_bytes!("../proc/testdata/mmflags.smaps");

    #[test]
    fn smaps_flags_become_vma_status() {
        let smaps = proc::smaps::parse(MMFLAGS).unwrap();
        let vmas: Vec<Vma> = smaps.iter().filter_map(|e| vma_from_smaps(Pid(1), e).unwrap()).collect();
        let onfault = &vmas[2];
        assert!(onfault.status.contains(VmaStatus::VMA_LOCKED | VmaStatus::VMA_LOCKONFAULT));
        assert!(vmas[4].status.contains(VmaStatus::VMA_LOCKED) && !vmas[4].status.contains(VmaStatus::VMA_LOCKONFAULT));
        assert!(vmas[6].status.contains(VmaStatus::VMA_MERGEABLE));
        assert!(vmas[13].status.contains(VmaStatus::VMA_WIPEONFORK));
        // Read-only now, but its file was opened for writing.
        let file = &vmas[17];
        assert_eq!((file.kind, file.prot), (VmaKind::File, Prot::PROT_READ));
        assert!(file.flags.contains(MapFlags::MAP_SHARED) && file.status.contains(VmaStatus::VMA_MAYWRITE));
        // Private mappings are always "mw": not recorded for them.
        assert!(vmas
            .iter()
            .filter(|v| !v.flags.contains(MapFlags::MAP_SHARED))
            .all(|v| !v.status.contains(VmaStatus::VMA_MAYWRITE)));
    }

    #[test]
    fn a_parasite_region_merged_into_a_neighbour_is_taken_out() {
        let text = b"10000-20000 r-xp 00000000 08:01 42 /bin/x\n\
VmFlags: rd ex mr mw me\n\
7f0000000000-7f0000030000 rw-p 00000000 00:00 0 \n\
Rss: 12 kB\n\
VmFlags: rd wr mr mw me ac\n\
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]\n\
VmFlags: rd wr mr mw me gd ac\n";
        let smaps = proc::smaps::parse(text).unwrap();
        let ranges = |v: &[SmapsEntry]| v.iter().map(|e| (e.map.start, e.map.end)).collect::<Vec<_>>();
        // Its own VMA: removed.
        let own = without_region(smaps.clone(), 0x7f00_0000_0000, 0x7f00_0003_0000).unwrap();
        assert_eq!(ranges(&own), [(0x10000, 0x20000), (0x7ffc_0000_0000, 0x7ffc_0002_1000)]);
        // At the end of a neighbour, at its start, in its middle.
        for (base, end, want) in [
            (0x7f00_0001_0000, 0x7f00_0003_0000, vec![(0x7f00_0000_0000, 0x7f00_0001_0000)]),
            (0x7f00_0000_0000, 0x7f00_0001_0000, vec![(0x7f00_0001_0000, 0x7f00_0003_0000)]),
            (
                0x7f00_0001_0000,
                0x7f00_0002_0000,
                vec![(0x7f00_0000_0000, 0x7f00_0001_0000), (0x7f00_0002_0000, 0x7f00_0003_0000)],
            ),
        ] {
            let rest = without_region(smaps.clone(), base, end).unwrap();
            let mut all = vec![(0x10000, 0x20000)];
            all.extend(want);
            all.push((0x7ffc_0000_0000, 0x7ffc_0002_1000));
            assert_eq!(ranges(&rest), all, "{base:#x}-{end:#x}");
            assert!(rest.iter().skip(1).take(rest.len() - 2).all(|e| e.vm_flags == smaps[1].vm_flags));
        }
        // Code and data: two VMAs, the data merged with the next one.
        let two = proc::smaps::parse(
            b"7f0000000000-7f0000010000 r-xp 00000000 00:00 0 \n\
VmFlags: rd ex mr mw me\n\
7f0000010000-7f0000040000 rw-p 00000000 00:00 0 \n\
VmFlags: rd wr mr mw me ac\n",
        )
        .unwrap();
        let rest = without_region(two, 0x7f00_0000_0000, 0x7f00_0001_7000).unwrap();
        assert_eq!(ranges(&rest), [(0x7f00_0001_7000, 0x7f00_0004_0000)]);
        // A file mapping never merges with it: read again.
        assert!(without_region(smaps.clone(), 0x11000, 0x12000).is_none());
    }

    #[test]
    fn frames_and_cow_eligibility() {
        let f = VmaFrames { provider: 7, pages: vec![(0x1000, 50, 2), (0x5000, 9, 1)] };
        assert!(f.has(0x1000, 50) && f.has(0x2000, 51) && f.has(0x5000, 9));
        assert!(!f.has(0x2000, 52) && !f.has(0x3000, 51) && !f.has(0x3000, 52) && !f.has(0x6000, 10));
        let anon = Vma {
            start: 0x1000,
            end: 0x9000,
            prot: Prot::PROT_READ | Prot::PROT_WRITE,
            flags: MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS,
            kind: VmaKind::Anon,
            status: VmaStatus::VMA_REGULAR | VmaStatus::VMA_ACCOUNTED,
            ..Default::default()
        };
        assert!(cow_eligible(&anon));
        let mut stack = anon.clone();
        stack.flags |= MapFlags::MAP_GROWSDOWN;
        let mut none = anon.clone();
        none.prot = Prot::empty();
        let mut shared = anon.clone();
        shared.kind = VmaKind::SharedAnon;
        assert!(!cow_eligible(&stack) && !cow_eligible(&none) && !cow_eligible(&shared));
        let e = PagemapEntry::new(0x1000, 8, PagemapFlags::PE_COW);
        assert!(!e.has_data());
        let areas = cow_areas([&[Vma { cow_from: 7, ..anon.clone() }][..], &[anon][..]].into_iter());
        assert_eq!(areas.into_iter().collect::<Vec<_>>(), vec![(7, 0x1000, 0x9000)]);
    }

    #[test]
    fn hugetlb_anonymous_keeps_its_page_size_memfd_is_refused() {
        let text = b"7f0000000000-7f0000200000 rw-p 00000000 00:0f 4096   /anon_hugepage (deleted)\n\
              KernelPageSize:     2048 kB\nVmFlags: rd wr mr mw me de ht \n\
              7fc000000000-7fc080000000 rw-s 40000000 00:0f 4097   /anon_hugepage (deleted)\n\
              KernelPageSize:  1048576 kB\nVmFlags: rd wr sh mr mw me ms de nr ht \n";
        let smaps = proc::smaps::parse(text).unwrap();
        let v: Vec<Vma> = smaps.iter().map(|e| vma_from_smaps(Pid(9), e).unwrap().unwrap()).collect();
        assert_eq!((v[0].kind, v[0].huge_page_size), (VmaKind::Anon, 2 << 20));
        assert!(v[0].flags.contains(MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_HUGETLB));
        assert_eq!(
            (v[1].kind, v[1].huge_page_size, v[1].pgoff, v[1].inode),
            (VmaKind::SharedAnon, 1 << 30, 1 << 30, 4097)
        );
        assert!(v[1].flags.contains(MapFlags::MAP_SHARED | MapFlags::MAP_NORESERVE | MapFlags::MAP_HUGETLB));
        assert!(needs_data(&v[0]) && needs_data(&v[1]) && !cow_eligible(&v[0]));
        let memfd = b"7f0000400000-7f0000600000 rw-s 00000000 00:01 77   /memfd:huge (deleted)\n\
              KernelPageSize:     2048 kB\nVmFlags: rd wr sh mr mw me ms de ht \n";
        let smaps = proc::smaps::parse(memfd).unwrap();
        let e = vma_from_smaps(Pid(9), &smaps[0]).unwrap_err();
        assert!(e.refused && e.to_string().contains("task 9") && e.to_string().contains("hugetlb memfd huge"), "{e}");
    }

    #[test]
    fn sysv_attachments_record_their_segment_and_flags() {
        let text = b"7f0000000000-7f0000003000 rw-s 00000000 00:01 32769   /SYSV5e00beef (deleted)\n\
              VmFlags: rd wr sh mr mw me ms sd \n\
              7f0000003000-7f0000004000 r--s 00003000 00:01 32769   /SYSV5e00beef (deleted)\n\
              VmFlags: rd mr mw me ms sd \n\
              7f0000010000-7f0000012000 r-xs 00000000 00:01 5   /SYSV00000000 (deleted)\n\
              VmFlags: rd ex mr me ms sd \n";
        let smaps = proc::smaps::parse(text).unwrap();
        let v: Vec<Vma> = smaps.iter().map(|e| vma_from_smaps(Pid(9), e).unwrap().unwrap()).collect();
        assert!(v.iter().all(|v| v.kind == VmaKind::SysvShm && !v.status.contains(VmaStatus::VMA_MAYWRITE)));
        assert_eq!((v[0].shmid, v[1].shmid, v[1].pgoff, v[2].shmid), (32769, 32769, 0x3000, 5));
        assert!(!v[0].status.intersects(VmaStatus::VMA_SHM_RDONLY | VmaStatus::VMA_SHM_EXEC));
        // Made read-only by mprotect, still attached writable.
        assert!(!v[1].status.contains(VmaStatus::VMA_SHM_RDONLY));
        assert!(v[2].status.contains(VmaStatus::VMA_SHM_RDONLY | VmaStatus::VMA_SHM_EXEC));
        assert!(!needs_data(&v[0]));
        let huge = b"7f0000000000-7f0000200000 rw-s 00000000 00:0f 77   /SYSV00001234 (deleted)\n\
              KernelPageSize:     2048 kB\nVmFlags: rd wr sh mr mw me ms de ht \n";
        let smaps = proc::smaps::parse(huge).unwrap();
        let e = vma_from_smaps(Pid(9), &smaps[0]).unwrap_err();
        assert!(e.refused && e.to_string().contains("segment 77 (key 0x1234)"), "{e}");
    }

    #[test]
    fn guards_are_not_data() {
        let guard = PmEntry(crate::proc::pagemap::PM_GUARD_REGION | (1 << 62));
        assert!(!wanted(guard, true) && !wanted(guard, false));
        let g = PagemapEntry::new(0x1000, 2, PagemapFlags::PE_GUARD);
        assert!(!g.has_data());
    }
}
