//! Iterative dumps: write tracking between dumps and the parent chain.
//!
//! Tracking works without soft-dirty bits. A pre-dump creates a
//! userfaultfd in each task's mm (the syscall runs in the task through the
//! parasite; the engine takes the descriptor with pidfd_getfd and closes
//! the task's copy), asks for `UFFD_FEATURE_WP_ASYNC |
//! UFFD_FEATURE_WP_UNPOPULATED`, registers the task's private anonymous
//! writable VMAs in write-protect mode and protects them while the tree is
//! frozen, before their pages are read. From then on the kernel unprotects
//! a page on its first write by itself, and PAGEMAP_SCAN reports it as
//! `PAGE_IS_WRITTEN`. The next dump of the chain (pre-dump or dump) reads
//! the written pages, takes the others from its parent ("in parent" pagemap
//! entries) and, for a pre-dump, protects the written pages again in the
//! same scan (`PM_SCAN_WP_MATCHING`).
//!
//! The userfaultfds must outlive the pre-dump: a small process,
//! `crtools-memtrack`, holds them, listening on an abstract unix socket
//! named after the images directory, until the next dump of the chain
//! takes them (SCM_RIGHTS) ([`hand_over`], [`take_over`]). Closing the last
//! descriptor of a userfaultfd unregisters its ranges and drops the
//! protection (VM_UFFD_WP, smaps "uw"): the final dump, a failed dump and
//! `-s` close theirs; killing the tracker releases the tree as well.
//!
//! Exactness: a page is taken from the parent only if it is in a VMA this
//! chain registered (same range, still "uw" in smaps, same task start
//! time: no exec, no remap, no pid reuse), present, not the zero page and
//! not written since the parent, and the parent holds data for it. Anything
//! else is dumped again, or, when it is absent or unwritten where the
//! parent had nothing, is a hole as before. An unwritten page seen as
//! swapped where the parent had data is read again: a page the program
//! dropped with MADV_DONTNEED leaves a marker that PAGEMAP_SCAN reports as
//! swapped, and it reads back as zero.
use crate::error::{Context, Error, Result};
use crate::image::chain::TrackedTask;
use crate::image::kinds;
use crate::image::mm::{MapFlags, Prot, Vma, VmaKind};
use crate::image::pagemap::{data_offsets, PagemapEntry, PagemapFlags, PagemapHead};
use crate::image::{ImageDirReader, ImageKind};
use crate::sys::socket::{self as sk, SockFlags, SockType, UnixAddr, AF_UNIX};
use crate::sys::uffd::{self, PageRegion, ScanQuery};
use crate::sys::{Errno, Pid};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The userfaultfd features tracking needs.
pub const FEATURES: u64 = (uffd::UFFD_FEATURE_WP_ASYNC | uffd::UFFD_FEATURE_WP_UNPOPULATED) as u64;

/// Longest parent chain followed (pre-dumps on top of each other).
pub const MAX_CHAIN: usize = 64;

const PAGE: u64 = 4096;
const O_CLOEXEC: u64 = 0o2000000;
const O_NONBLOCK: u64 = 0o4000;
const PAGE_IS_PFNZERO: u64 = linux_raw_sys::general::PAGE_IS_PFNZERO as u64;
const PAGE_IS_GUARD: u64 = linux_raw_sys::general::PAGE_IS_GUARD as u64;
const WRITTEN: u64 = uffd::PAGE_IS_WRITTEN as u64;
const PRESENT: u64 = uffd::PAGE_IS_PRESENT as u64;
const SWAPPED: u64 = uffd::PAGE_IS_SWAPPED as u64;

/// A VMA whose writes are tracked: private anonymous memory (heap
/// included), readable and writable, not growing down. Everything else is
/// dumped in full every time.
pub fn trackable(v: &Vma) -> bool {
    still_tracked(v) && v.prot.contains(Prot::PROT_WRITE)
}

/// Whether a VMA the chain registered is still read by way of its
/// tracking: a [`trackable`] one, or one made read-only since (one that
/// lost PROT_READ is read through /proc/pid/mem in full).
pub fn still_tracked(v: &Vma) -> bool {
    matches!(v.kind, VmaKind::Anon | VmaKind::Heap)
        && !v.is_hugetlb()
        && !v.flags.intersects(MapFlags::MAP_SHARED | MapFlags::MAP_GROWSDOWN | MapFlags::MAP_DROPPABLE)
        && v.prot.contains(Prot::PROT_READ)
}

/// Creates a userfaultfd in the infected task's mm and takes it: the task
/// keeps no descriptor of it. The handshake asks for [`FEATURES`].
pub fn create_in(p: &mut crate::infect::Parasite<'_>) -> Result<OwnedFd> {
    let pid = p.pid();
    let flags = O_CLOEXEC | O_NONBLOCK | uffd::UFFD_USER_MODE_ONLY as u64;
    let r = p.remote_syscall(crate::sys::Sysno::userfaultfd, [flags, 0, 0, 0, 0, 0]).ctx(pid, "userfaultfd")?;
    if r < 0 {
        return Err(Error::task(pid, format!("userfaultfd in the task: {}", Errno::new(-r as i32))));
    }
    let taken = super::files::take_fd(pid, r as i32);
    // The task's copy goes whatever happened: it must not keep one.
    let closed = p.remote_syscall(crate::sys::Sysno::close, [r as u64, 0, 0, 0, 0, 0]).ctx(pid, "close")?;
    let fd = taken?;
    if closed < 0 {
        return Err(Error::task(pid, format!("close the task's userfaultfd: {}", Errno::new(-closed as i32))));
    }
    let got = uffd::api(fd.as_fd(), FEATURES).ctx(pid, "UFFDIO_API")?;
    if got & FEATURES != FEATURES {
        return Err(Error::task(pid, "userfaultfd without WP_ASYNC and WP_UNPOPULATED"));
    }
    Ok(fd)
}

/// Registers `[start, end)` for asynchronous write-protect and protects
/// every page of it (populated or not).
pub fn arm(fd: BorrowedFd<'_>, start: u64, end: u64) -> std::result::Result<(), Errno> {
    uffd::register_wp(fd, start, end - start)?;
    uffd::writeprotect(fd, start, end - start, true)
}

/// Every region PAGEMAP_SCAN reports for `[start, end)`.
pub fn scan(
    pagemap: BorrowedFd<'_>,
    start: u64,
    end: u64,
    q: ScanQuery,
) -> std::result::Result<Vec<PageRegion>, Errno> {
    let mut out = Vec::new();
    let mut buf = vec![uffd::EMPTY_REGION; super::mm::scratch_len(start, end, 4096)];
    let mut at = start;
    while at < end {
        let (n, walk_end) = uffd::pagemap_scan(pagemap, at, end, q, &mut buf)?;
        out.extend_from_slice(&buf[..n]);
        if walk_end <= at {
            return Err(Errno::EIO);
        }
        at = walk_end;
    }
    Ok(out)
}

/// How the pages of one tracked VMA are dumped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Read and stored (zero pages are still left out).
    Data,
    /// Left to the parent ("in parent").
    Parent,
}

/// The pages of `[start, end)` to dump or take from the parent, in address
/// order, from a PAGEMAP_SCAN of the VMA (present or swapped pages, with
/// their written, present, swapped, zero-page and guard categories) and
/// what the parent holds. Pages not listed are holes.
pub fn classify(regions: &[PageRegion], parent: &ParentIndex) -> Vec<(u64, u64, Take)> {
    let mut out: Vec<(u64, u64, Take)> = Vec::new();
    let mut push = |s: u64, e: u64, t: Take| {
        if s >= e {
            return;
        }
        match out.last_mut() {
            Some(l) if l.1 == s && l.2 == t => l.1 = e,
            _ => out.push((s, e, t)),
        }
    };
    for r in regions {
        let c = r.categories;
        if c & (PAGE_IS_GUARD | PAGE_IS_PFNZERO) != 0 || c & (PRESENT | SWAPPED) == 0 {
            continue;
        }
        if c & WRITTEN != 0 {
            push(r.start, r.end, Take::Data);
            continue;
        }
        for (s, e, held) in parent.split(r.start, r.end) {
            match (held, c & PRESENT != 0) {
                // Unwritten since the parent, which holds it.
                (true, true) => push(s, e, Take::Parent),
                // A marker of a dropped page or a page swapped out: read it.
                (true, false) => push(s, e, Take::Data),
                // The parent had nothing here: when in doubt, read it
                // (a zero page is left out as always).
                (false, true) => push(s, e, Take::Data),
                // Unwritten where the parent had nothing: still nothing.
                (false, false) => {}
            }
        }
    }
    out
}

/// The pages a parent dump holds for one task, directly or further up its
/// chain: sorted, merged `[start, end)` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentIndex(Vec<(u64, u64)>);

impl ParentIndex {
    /// From the parent's pagemap entries.
    pub fn from_pagemap(entries: &[PagemapEntry]) -> Self {
        let mut r: Vec<(u64, u64)> = entries
            .iter()
            .filter(|e| e.has_data() || e.flags.contains(PagemapFlags::PE_PARENT))
            .map(|e| (e.vaddr, e.vaddr + e.nr_pages as u64 * PAGE))
            .collect();
        r.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
        for (s, e) in r {
            match out.last_mut() {
                Some(l) if l.1 >= s => l.1 = l.1.max(e),
                _ => out.push((s, e)),
            }
        }
        ParentIndex(out)
    }

    /// `[start, end)` cut where the parent's holdings begin or end: (start,
    /// end, held) pieces in order.
    pub fn split(&self, start: u64, end: u64) -> Vec<(u64, u64, bool)> {
        let mut out = Vec::new();
        let mut at = start;
        let i = self.0.partition_point(|r| r.1 <= start);
        for &(s, e) in &self.0[i..] {
            if s >= end {
                break;
            }
            if s > at {
                out.push((at, s, false));
            }
            let (a, b) = (s.max(at), e.min(end));
            out.push((a, b, true));
            at = b;
        }
        if at < end {
            out.push((at, end, false));
        }
        out
    }
}

/// What the parent of a dump gives it: its path, the tasks it tracks, and
/// the userfaultfds its tracker held.
pub struct Parent {
    /// As given (`--prev-images-dir`), relative to the images directory.
    pub rel: String,
    tracked: HashMap<u32, TrackedTask>,
    uffds: HashMap<Pid, OwnedFd>,
    /// What the parent holds of each tracked task, read before the tree
    /// is frozen (a pagemap of a large process takes a while to read).
    held: HashMap<u32, ParentIndex>,
}

/// One task's tracking for this dump.
pub struct TaskTrack {
    /// Tracked VMAs (exact ranges) whose unwritten pages the parent holds.
    pub vmas: Vec<(u64, u64)>,
    /// What the parent holds for the task.
    pub parent: ParentIndex,
    /// Re-protect written pages while scanning (a pre-dump: tracking goes on).
    pub rearm: bool,
}

/// The parent directory of `images_dir` named by `rel` (relative to it).
pub fn parent_path(images_dir: &Path, rel: &str) -> Result<PathBuf> {
    if rel.is_empty() || Path::new(rel).is_absolute() {
        return Err(Error::new(format!("--prev-images-dir {rel:?}: give a path relative to the images directory")));
    }
    Ok(images_dir.join(rel))
}

impl Parent {
    /// Opens the parent dump `rel` of `images_dir` and takes the
    /// userfaultfds from its tracker (none if it is gone: every page is then
    /// dumped in full, and the log says so).
    pub fn open(images_dir: &Path, rel: &str) -> Result<Parent> {
        let path = parent_path(images_dir, rel)?;
        let dir = ImageDirReader::open(&path)
            .map_err(|e| Error::new(format!("parent images (--prev-images-dir {rel}): {e}")))?;
        let w = |e: crate::image::ImageError| Error::new(format!("parent images: {e}"));
        let tracked = if dir.contains(ImageKind::Chain, None) {
            let (_, t) = dir.open_image::<kinds::Chain>(None).map_err(w)?.collect_entries().map_err(w)?;
            t.into_iter().map(|t: TrackedTask| (t.pid, t)).collect()
        } else {
            HashMap::new()
        };
        let mut held = HashMap::new();
        for &pid in tracked.keys() {
            let w = |e: crate::image::ImageError| Error::new(format!("parent images: pagemap of {pid}: {e}"));
            let (_, pm): (_, Vec<PagemapEntry>) =
                dir.open_image::<kinds::Pagemap>(Some(pid)).map_err(w)?.collect_entries().map_err(w)?;
            held.insert(pid, ParentIndex::from_pagemap(&pm));
        }
        let uffds = take_over(&path);
        if uffds.is_empty() {
            log::warn!(
                "no write tracker for {} (it ended, or the parent tracked nothing): every page is dumped in full",
                path.display()
            );
        }
        Ok(Parent { rel: rel.to_string(), tracked, uffds, held })
    }

    /// The tracker's userfaultfd of `pid`, taken out (the caller keeps it
    /// open while the task is dumped, and passes it on or closes it).
    pub fn take_uffd(&mut self, pid: Pid) -> Option<OwnedFd> {
        self.uffds.remove(&pid)
    }

    /// Closes every userfaultfd not taken: their tasks are tracked no more.
    pub fn release_rest(&mut self) {
        self.uffds.clear();
    }

    /// The tracking of `pid` for this dump: the parent's tracked VMAs that
    /// are still the same (exact range, still registered), if the task is
    /// the same one (start time) and its userfaultfd came back. None: the
    /// task's pages are dumped in full (logged).
    pub fn task_track(
        &self,
        pid: Pid,
        starttime: u64,
        have_uffd: bool,
        smaps: &[crate::proc::smaps::SmapsEntry],
        rearm: bool,
    ) -> Result<Option<TaskTrack>> {
        let uw = |s: u64, e: u64| {
            smaps
                .iter()
                .any(|m| m.map.start == s && m.map.end == e && m.vm_flags.contains(crate::proc::smaps::VmFlags::UW))
        };
        Ok(self.track_with(pid, starttime, have_uffd, rearm, true, uw))
    }

    /// The tracking of `pid` as far as /proc/pid/maps tells (exact ranges,
    /// readable private memory), quietly: for a final dump's first look
    /// (see [`super::mm::PageDumper::dump_early`]), before smaps is read.
    /// Whether each VMA is still registered is left to PAGEMAP_SCAN
    /// (PM_SCAN_CHECK_WPASYNC), and smaps confirms it all afterwards.
    pub fn task_track_early(
        &self,
        pid: Pid,
        starttime: u64,
        maps: &[crate::proc::maps::MapEntry],
    ) -> Option<TaskTrack> {
        use crate::proc::maps::MapPerms;
        let same = |s: u64, e: u64| {
            maps.iter().any(|m| {
                m.start == s && m.end == e && m.perms.contains(MapPerms::READ) && !m.perms.contains(MapPerms::SHARED)
            })
        };
        self.track_with(pid, starttime, true, false, false, same)
    }

    fn track_with(
        &self,
        pid: Pid,
        starttime: u64,
        have_uffd: bool,
        rearm: bool,
        say: bool,
        same: impl Fn(u64, u64) -> bool,
    ) -> Option<TaskTrack> {
        let Some(t) = self.tracked.get(&(pid.0 as u32)) else {
            if say {
                log::info!(task = pid.0; "task {pid}: not tracked by the parent; its pages are dumped in full");
            }
            return None;
        };
        if !have_uffd {
            if say {
                log::warn!(task = pid.0; "task {pid}: its write tracker is gone; its pages are dumped in full");
            }
            return None;
        }
        if t.starttime != starttime {
            if say {
                log::warn!(task = pid.0; "task {pid}: not the task the parent dumped (start time); dumped in full");
            }
            return None;
        }
        let mut vmas = Vec::new();
        for &(s, e) in &t.vmas {
            if same(s, e) {
                vmas.push((s, e));
            } else if say {
                log::info!(task = pid.0; "task {pid}: VMA {s:#x}-{e:#x} changed since the parent; dumped in full");
            }
        }
        let parent = self.held.get(&(pid.0 as u32)).cloned().unwrap_or_default();
        Some(TaskTrack { vmas, parent, rearm })
    }
}

/// The abstract socket name of the tracker of `dir` (by device and inode).
fn track_addr(dir: &Path) -> Option<UnixAddr> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(dir).ok()?;
    UnixAddr::new_abstract(format!("crtools-memtrack-{}-{}", md.dev(), md.ino()).as_bytes()).ok()
}

/// After a pre-dump: the tree's userfaultfds go to a small detached
/// process of their own, `crtools-memtrack`, which holds them until the
/// next dump of the chain takes them ([`take_over`]). Failing here loses
/// the tracking (the next dump is then a full one), not the pre-dump.
pub fn hand_over(dir: &Path, fds: Vec<(Pid, OwnedFd)>) {
    if fds.is_empty() {
        return;
    }
    match try_hand_over(dir, &fds) {
        Ok(child) => log::info!(
            "writes of {} task(s) tracked by process {child} until the next dump with --prev-images-dir {}",
            fds.len(),
            dir.display()
        ),
        Err(e) => log::warn!("keep tracking writes after the pre-dump: {e}; the next dump is a full one"),
    }
}

fn try_hand_over(dir: &Path, fds: &[(Pid, OwnedFd)]) -> std::result::Result<Pid, String> {
    let addr = track_addr(dir).ok_or("no name for the tracker")?;
    let l =
        sk::socket(AF_UNIX, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0).map_err(|e| format!("socket: {e}"))?;
    if let Err(Errno::EADDRINUSE) = sk::bind(l.as_fd(), &addr) {
        // The tracker of an earlier pre-dump into this directory lets go.
        drop(take_over(dir));
        sk::bind(l.as_fd(), &addr).map_err(|e| format!("bind the tracker's socket: {e}"))?;
    }
    sk::listen(l.as_fd(), 4).map_err(|e| format!("listen: {e}"))?;
    let null = crate::sys::fs::openat(None, "/dev/null", crate::sys::fs::OpenFlags::O_RDWR, 0)
        .map_err(|e| format!("/dev/null: {e}"))?;
    let dirfd = super::keeper::open_dir(dir)?;
    let mut keep: Vec<u32> = fds.iter().map(|(_, f)| f.as_raw_fd() as u32).collect();
    keep.push(dirfd.as_raw_fd() as u32);
    keep.extend([l.as_raw_fd() as u32, null.as_raw_fd() as u32]);
    // The ranges of descriptors the helper closes, computed here: the child
    // of fork may not allocate.
    let gaps = crate::sys::fs::gaps_between(keep);
    let held: Vec<(i32, i32)> = fds.iter().map(|(p, f)| (p.0, f.as_raw_fd())).collect();
    // SAFETY: the child only makes raw syscalls through the sys wrappers,
    // allocates nothing and ends with exit_group (tracker never returns).
    match unsafe { crate::sys::clone::fork() }.map_err(|e| format!("fork: {e}"))? {
        crate::sys::clone::CloneResult::Child => {
            // It outlives crtools: the stop signals must end it.
            crate::interrupt::forget();
            tracker(l.as_fd(), null.as_fd(), dirfd.as_fd(), &gaps, &held)
        }
        crate::sys::clone::CloneResult::Parent { child, .. } => Ok(child),
    }
}

/// The tracker: detached, stdio on /dev/null, every other descriptor but
/// the userfaultfds and its socket closed; waits for the next dump to
/// connect, sends it each (pid, userfaultfd), closes its copies and exits.
fn tracker(
    l: BorrowedFd<'_>,
    null: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    gaps: &[(u32, u32)],
    held: &[(i32, i32)],
) -> ! {
    super::keeper::detach(null, gaps, b"crtools-memtrack");
    let c = super::keeper::accept_taker(l, dir);
    let me = crate::sys::misc::getpid().0;
    for &(pid, fd) in held {
        let mut msg = [0u8; 9];
        msg[0] = b'u';
        msg[1..5].copy_from_slice(&pid.to_ne_bytes());
        msg[5..].copy_from_slice(&me.to_ne_bytes());
        // SAFETY: the descriptor stays open until exit_group.
        let f = unsafe { BorrowedFd::borrow_raw(fd) };
        if sk::send_fds(c.as_fd(), &msg, &[f]).is_err() {
            crate::sys::misc::exit_group(1);
        }
    }
    // Its copies go before the dump sees the end of the stream: the dump's
    // are then the last ones.
    for &(_, fd) in held {
        // SAFETY: owned by no value used again in this child.
        let _ = unsafe { crate::sys::fs::close_range(fd as u32, fd as u32, crate::sys::fs::CloseRangeFlags::empty()) };
    }
    crate::sys::misc::exit_group(0)
}

/// Takes the userfaultfds from the tracker of `dir`, which then exits;
/// empty if none runs.
pub fn take_over(dir: &Path) -> HashMap<Pid, OwnedFd> {
    let mut out = HashMap::new();
    let Some(addr) = track_addr(dir) else { return out };
    let Ok(s) = sk::socket(AF_UNIX, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0) else { return out };
    if sk::connect(s.as_fd(), &addr).is_err() {
        return out;
    }
    let mut tracker = None;
    loop {
        let mut msg = [0u8; 9];
        match sk::recv_fds(s.as_fd(), &mut msg, 1) {
            Ok((9, mut fds)) if msg[0] == b'u' && fds.len() == 1 => {
                let pid = Pid(i32::from_ne_bytes(msg[1..5].try_into().expect("4 bytes")));
                tracker = Some(Pid(i32::from_ne_bytes(msg[5..9].try_into().expect("4 bytes"))));
                out.insert(pid, fds.remove(0));
            }
            Ok((0, _)) => break,
            Ok(_) | Err(_) => {
                log::warn!("the write tracker of {} answered badly", dir.display());
                break;
            }
        }
    }
    if let Some(t) = tracker {
        // Our child when the pre-dump ran in this process: reaped here, so
        // nothing else (a restore waiting for its tree) sees it end.
        let _ = crate::sys::wait::wait4(t, crate::sys::wait::WALL);
    }
    log::info!("took the write tracking of {} task(s) from the tracker of {}", out.len(), dir.display());
    out
}

/// One level of a parent chain at restore: a parent dump and the pagemap
/// of each task asked so far.
struct Level {
    dir: ImageDirReader,
    rel: PathBuf,
    pagemaps: HashMap<u32, LevelPagemap>,
}

/// A task's pagemap in one level: its head (the stripes of its pages
/// image) and its ranges with where their pages are.
type LevelPagemap = (PagemapHead, Vec<(u64, u64, Slot)>);

/// Where a range of a level's pagemap is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// In this stripe of the level's pages image, at this offset.
    Data(u8, u64),
    /// In the next level.
    Parent,
}

/// Page runs of one parent level: its pages image and the runs to write.
pub struct ParentRuns {
    /// The level's images directory.
    pub dir: PathBuf,
    /// The task's pagemap head there (its pages image's stripes).
    pub head: PagemapHead,
    /// The level's pages image of the task, stripe by stripe.
    pub pages: Vec<crate::image::pages::PagesReader>,
    /// (vaddr, len, offset in the pages image, stripe).
    pub runs: Vec<restorer_plan::PageRun>,
}

/// The parent chain of a dump being restored.
pub struct Chain {
    levels: Vec<Level>,
}

impl Chain {
    /// Opens every parent of `dir` (none if it has no chain image);
    /// refuses a pre-dump, a missing parent and a chain longer than
    /// [`MAX_CHAIN`].
    pub fn open(dir: &ImageDirReader) -> Result<Chain> {
        let mut levels = Vec::new();
        let mut cur_path = dir.path().to_path_buf();
        let mut head = read_head(dir)?;
        if head.as_ref().is_some_and(|h| h.pre_dump) {
            return Err(Error::new(format!(
                "{} holds a pre-dump (memory only): restore the dump made on top of it (--prev-images-dir)",
                dir.path().display()
            )));
        }
        while let Some(rel) = head.and_then(|h| h.parent) {
            if levels.len() >= MAX_CHAIN {
                return Err(Error::new(format!("parent chain longer than {MAX_CHAIN} dumps")));
            }
            let path = parent_path(&cur_path, &rel)?;
            let d = ImageDirReader::open(&path).map_err(|e| {
                Error::new(format!(
                    "the parent images {rel:?} of {} (pages marked in parent are there): {e}",
                    cur_path.display()
                ))
            })?;
            d.verify_all().map_err(|e| Error::new(format!("parent images {}: {e}", path.display())))?;
            head = read_head(&d)?;
            cur_path = path.clone();
            levels.push(Level { dir: d, rel: path, pagemaps: HashMap::new() });
        }
        Ok(Chain { levels })
    }

    /// True when the dump has no parent.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// The runs of `pid`'s "in parent" entries, level by level, with each
    /// level's pages image; an entry no level holds fails (naming it).
    pub fn resolve(&mut self, pid: Pid, pagemap: &[PagemapEntry]) -> Result<Vec<ParentRuns>> {
        let wanted: Vec<(u64, u64)> = pagemap
            .iter()
            .filter(|e| e.flags.contains(PagemapFlags::PE_PARENT))
            .map(|e| (e.vaddr, e.vaddr + e.nr_pages as u64 * PAGE))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        if self.levels.is_empty() {
            return Err(Error::task(pid, "pages are marked in parent, but the dump has no parent"));
        }
        let mut out = Vec::new();
        let mut todo = wanted;
        for k in 0..self.levels.len() {
            if todo.is_empty() {
                break;
            }
            let (head, idx) = self.level_pagemap(k, pid)?;
            let (runs, rest) = resolve_level(&idx, &todo).map_err(|(s, e)| {
                Error::task(
                    pid,
                    format!(
                        "pages {s:#x}-{e:#x} are marked in parent, but {} holds none of them",
                        self.levels[k].rel.display()
                    ),
                )
            })?;
            if !runs.is_empty() {
                let pages = self.levels[k]
                    .dir
                    .open_task_pages(&head)
                    .map_err(|e| Error::task(pid, format!("parent pages image: {e}")))?;
                out.push(ParentRuns { dir: self.levels[k].dir.path().to_path_buf(), head, pages, runs });
            }
            todo = rest;
        }
        if let Some(&(s, e)) = todo.first() {
            return Err(Error::task(pid, format!("pages {s:#x}-{e:#x} are in parent, but the chain ends")));
        }
        Ok(out)
    }

    fn level_pagemap(&mut self, k: usize, pid: Pid) -> Result<LevelPagemap> {
        let l = &mut self.levels[k];
        if let Some(v) = l.pagemaps.get(&(pid.0 as u32)) {
            return Ok(v.clone());
        }
        let w = |e: crate::image::ImageError| Error::task(pid, format!("parent pagemap: {e}"));
        let (head, pm): (PagemapHead, Vec<PagemapEntry>) =
            l.dir.open_image::<kinds::Pagemap>(Some(pid.0 as u32)).map_err(w)?.collect_entries().map_err(w)?;
        crate::image::pagemap::check_stripes(&head, &pm)
            .map_err(|m| Error::task(pid, format!("parent pagemap in {}: {m}", l.rel.display())))?;
        let idx = slots(&pm);
        l.pagemaps.insert(pid.0 as u32, (head.clone(), idx.clone()));
        Ok((head, idx))
    }
}

fn read_head(dir: &ImageDirReader) -> Result<Option<crate::image::chain::ChainHead>> {
    if !dir.contains(ImageKind::Chain, None) {
        return Ok(None);
    }
    let w = |e: crate::image::ImageError| Error::new(format!("chain image: {e}"));
    let (h, _): (_, Vec<TrackedTask>) =
        dir.open_image::<kinds::Chain>(None).map_err(w)?.collect_entries().map_err(w)?;
    Ok(Some(h))
}

/// A pagemap as sorted ranges with where their pages are.
fn slots(pm: &[PagemapEntry]) -> Vec<(u64, u64, Slot)> {
    let mut out: Vec<(u64, u64, Slot)> = data_offsets(pm)
        .map(|(e, off)| (e.vaddr, e.vaddr + e.nr_pages as u64 * PAGE, Slot::Data(e.stripe, off)))
        .collect();
    for e in pm.iter().filter(|e| e.flags.contains(PagemapFlags::PE_PARENT)) {
        out.push((e.vaddr, e.vaddr + e.nr_pages as u64 * PAGE, Slot::Parent));
    }
    out.sort_by_key(|r| r.0);
    out
}

/// Splits `want` over one level: runs of pages it holds, and the ranges it
/// sends further up. Err: a range it holds nothing for.
#[allow(clippy::type_complexity)]
fn resolve_level(
    idx: &[(u64, u64, Slot)],
    want: &[(u64, u64)],
) -> std::result::Result<(Vec<restorer_plan::PageRun>, Vec<(u64, u64)>), (u64, u64)> {
    let mut runs = Vec::new();
    let mut up = Vec::new();
    for &(s, e) in want {
        let mut at = s;
        let i = idx.partition_point(|r| r.1 <= s);
        for &(rs, re, slot) in &idx[i..] {
            if at >= e {
                break;
            }
            if rs > at {
                return Err((at, rs.min(e)));
            }
            let (a, b) = (at, re.min(e));
            match slot {
                Slot::Data(stripe, off) => runs.push(restorer_plan::PageRun {
                    vaddr: a,
                    len: b - a,
                    file_off: off + (a - rs),
                    stripe: stripe as u32,
                    _pad: 0,
                }),
                Slot::Parent => up.push((a, b)),
            }
            at = b;
        }
        if at < e {
            return Err((at, e));
        }
    }
    Ok((runs, up))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pe(vaddr: u64, nr: u32, flags: PagemapFlags) -> PagemapEntry {
        PagemapEntry::new(vaddr, nr, flags)
    }
    fn reg(start: u64, end: u64, categories: u64) -> PageRegion {
        PageRegion { start, end, categories }
    }

    #[test]
    fn parent_index_merges_and_splits() {
        let idx = ParentIndex::from_pagemap(&[
            pe(0x3000, 2, PagemapFlags::PE_PRESENT),
            pe(0x1000, 1, PagemapFlags::PE_PARENT),
            pe(0x2000, 1, PagemapFlags::PE_PRESENT),
            pe(0x8000, 1, PagemapFlags::PE_GUARD),
        ]);
        assert_eq!(idx, ParentIndex(vec![(0x1000, 0x5000)]));
        assert_eq!(idx.split(0x0, 0x6000), vec![(0x0, 0x1000, false), (0x1000, 0x5000, true), (0x5000, 0x6000, false)]);
        assert_eq!(idx.split(0x2000, 0x3000), vec![(0x2000, 0x3000, true)]);
        assert_eq!(idx.split(0x6000, 0x7000), vec![(0x6000, 0x7000, false)]);
    }

    #[test]
    fn classification_is_exact() {
        let parent = ParentIndex(vec![(0x10000, 0x20000)]);
        let regions = [
            // Written: read.
            reg(0x10000, 0x11000, PRESENT | WRITTEN),
            // Unwritten, present, held by the parent: in parent.
            reg(0x11000, 0x14000, PRESENT),
            // The zero page and a guard: holes.
            reg(0x14000, 0x15000, PRESENT | PAGE_IS_PFNZERO),
            reg(0x15000, 0x16000, SWAPPED | WRITTEN | PAGE_IS_GUARD),
            // Unwritten but not present (a dropped page's marker, or swap): read.
            reg(0x16000, 0x17000, SWAPPED),
            // Straddling the parent's end: in parent, then read (in doubt).
            reg(0x1f000, 0x21000, PRESENT),
            // Unwritten swapped where the parent had nothing: a hole.
            reg(0x30000, 0x31000, SWAPPED),
        ];
        assert_eq!(
            classify(&regions, &parent),
            vec![
                (0x10000, 0x11000, Take::Data),
                (0x11000, 0x14000, Take::Parent),
                (0x16000, 0x17000, Take::Data),
                (0x1f000, 0x20000, Take::Parent),
                (0x20000, 0x21000, Take::Data),
            ]
        );
    }

    #[test]
    fn chain_resolution_follows_levels() {
        // Level 1: data for 0x1000..0x3000 (file offsets 0, 0x1000), parent for 0x3000..0x5000.
        let l1 = slots(&[
            pe(0x1000, 2, PagemapFlags::PE_PRESENT),
            pe(0x3000, 2, PagemapFlags::PE_PARENT),
            pe(0x9000, 1, PagemapFlags::PE_PRESENT),
        ]);
        let (runs, up) = resolve_level(&l1, &[(0x2000, 0x4000)]).unwrap();
        assert_eq!(
            runs,
            vec![restorer_plan::PageRun { vaddr: 0x2000, len: 0x1000, file_off: 0x1000, stripe: 0, _pad: 0 }]
        );
        assert_eq!(up, vec![(0x3000, 0x4000)]);
        let (runs, up) = resolve_level(&l1, &[(0x9000, 0xa000)]).unwrap();
        assert_eq!(
            runs,
            vec![restorer_plan::PageRun { vaddr: 0x9000, len: 0x1000, file_off: 0x2000, stripe: 0, _pad: 0 }]
        );
        assert!(up.is_empty());
        // A range the level does not cover is an error naming it.
        assert_eq!(resolve_level(&l1, &[(0x5000, 0x6000)]), Err((0x5000, 0x6000)));
        assert_eq!(resolve_level(&l1, &[(0x8000, 0xa000)]), Err((0x8000, 0x9000)));
    }

    #[test]
    fn trackable_vmas() {
        let anon = Vma {
            start: 0x1000,
            end: 0x9000,
            prot: Prot::PROT_READ | Prot::PROT_WRITE,
            flags: MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS,
            kind: VmaKind::Anon,
            ..Default::default()
        };
        assert!(trackable(&anon));
        let mut ro = anon.clone();
        ro.prot = Prot::PROT_READ;
        let mut shared = anon.clone();
        shared.flags = MapFlags::MAP_SHARED | MapFlags::MAP_ANONYMOUS;
        shared.kind = VmaKind::SharedAnon;
        let mut stack = anon.clone();
        stack.kind = VmaKind::Stack;
        stack.flags |= MapFlags::MAP_GROWSDOWN;
        let mut file = anon.clone();
        file.kind = VmaKind::File;
        assert!(!trackable(&ro) && !trackable(&shared) && !trackable(&stack) && !trackable(&file));
    }
}
