//! SysV shared memory segments attached by the tree (shmget(2), shmat(2),
//! shmctl(2), sysvipc(7)).
//!
//! Dump: every `/SYSV<key> (deleted)` VMA is a [`VmaKind::SysvShm`] VMA
//! whose inode is the segment's shmid (ipc/shm.c names the segment's shmem
//! inode so). Each segment is dumped once (`ipc-shm.img`): key, mode,
//! owner and creator, size, SHM_DEST (marked for removal: the kernel shows
//! its key as 0 then) and SHM_LOCKED from `/proc/sysvipc/shm`, and its
//! contents, read while the tree is frozen through a read-only description
//! of the segment's shmem file opened by `/proc/<pid>/map_files` of its
//! first VMA (so the engine does not attach it: nattch, atime and lpid
//! stay as they were), holes skipped with SEEK_DATA/SEEK_HOLE, through
//! one bounded buffer into `pages-<SYSV_SHM_PAGES_ID>.img`. Each VMA
//! records its offset in the segment (`pgoff`) and how it was attached
//! (VMA_SHM_RDONLY, VMA_SHM_EXEC).
//!
//! Refused, naming the segment: a segment attached by processes outside
//! the tree (its nattch, the number of VMAs mapping it anywhere, is more
//! than the tree's VMAs), hugetlb segments (objects::mm), a segment that is
//! not the one crtools' IPC namespace lists under that id (attached in
//! another IPC namespace), and an attachment partly unmapped or moved
//! (its VMAs must cover the whole segment from offset 0, as shmat made it).
//!
//! Restore, before the tree is forked ([`create_all`]): each segment is
//! made again with its shmid (kernel.shm_next_id, then shmget with
//! IPC_CREAT|IPC_EXCL, by a thread running with the creator's ids so cuid
//! and cgid come back; the id obtained is checked), filled, given its
//! owner and mode (IPC_SET) and locked again if it was. A segment that
//! still holds the id with nattch 0 and the same key and size is the
//! leftover of this very dump (its tree was killed, the segment outlived
//! it) and is removed first; any other segment holding the id or the key
//! fails the restore by name. Each task's restorer attaches the segment at
//! its address with its flags (restorer_plan::VmaKind::SysvShm). Once every
//! task is on its trap, [`Segments::complete`] checks that every segment
//! has the nattch it had and marks for removal those that were. A failed
//! restore removes every segment it made.
use crate::error::{Error, Result};
use crate::image::ipc::{IpcPermEntry, ShmRun, ShmSegEntry, SYSV_SHM_PAGES_ID};
use crate::image::mm::{Vma, VmaKind, VmaStatus};
use crate::image::{kinds, ImageDir, ImageDirReader, ImageKind};
use crate::proc::sysvipc::ShmSegment;
use crate::sys::fs::{self, Whence};
use crate::sys::ipc;
use crate::sys::{Errno, Pid};
use restorer_plan as rp;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

const PAGE: u64 = 4096;
/// Buffer for contents: memory use does not grow with a segment's size.
const CHUNK: usize = 4 << 20;
const SHM_NEXT_ID: &str = "kernel/shm_next_id";

/// A segment seen in the tree during a dump.
struct Seen {
    /// The key in the VMAs' name (kept by the kernel after IPC_RMID).
    name_key: u32,
    /// Size of its shmem file.
    file_size: u64,
    /// A read-only description of the shmem file.
    src: OwnedFd,
    /// VMAs of the tree that map it.
    vmas: u64,
    /// The first task and VMA seen attaching it.
    first: (Pid, u64, u64),
}

/// The segments of a dump, filled task by task.
#[derive(Default)]
pub struct ShmDump {
    seen: BTreeMap<i32, Seen>,
    /// Built by [`ShmDump::finish`].
    entries: Vec<ShmSegEntry>,
}

fn seg_name(shmid: i32, key: u32) -> String {
    format!("SysV shared memory segment {shmid} (key {key:#x})")
}

/// The attachments of one task's SysV VMAs: each must begin at offset 0
/// and continue without gaps up to the segment's size rounded to pages
/// (`size` gives it, by shmid). Returns, per VMA index, whether it starts
/// an attachment.
fn attachments(vmas: &[Vma], size: impl Fn(i32) -> Option<u64>) -> std::result::Result<Vec<(usize, bool)>, String> {
    let mut out = Vec::new();
    // The open attachment: (shmid, its end address, its end in the segment).
    let mut open: Option<(u64, u64, u64)> = None;
    let close = |open: &mut Option<(u64, u64, u64)>| -> std::result::Result<(), String> {
        if let Some((id, _, off)) = open.take() {
            let want = size(id as i32).map(|s| s.div_ceil(PAGE) * PAGE);
            if want != Some(off) {
                return Err(format!(
                    "an attachment of segment {id} covers {off:#x} bytes of it, not the whole segment \
                     (partly unmapped or moved)"
                ));
            }
        }
        Ok(())
    };
    for (i, v) in vmas.iter().enumerate() {
        if v.kind != VmaKind::SysvShm {
            continue;
        }
        let continues = matches!(open, Some((id, end, off)) if id == v.shmid && end == v.start && off == v.pgoff);
        if continues {
            let o = open.as_mut().expect("open");
            o.1 = v.end;
            o.2 += v.end - v.start;
            out.push((i, false));
            continue;
        }
        close(&mut open)?;
        if v.pgoff != 0 {
            return Err(format!(
                "VMA {:#x}-{:#x} maps segment {} from offset {:#x}: partly unmapped or moved attachment",
                v.start, v.end, v.shmid, v.pgoff
            ));
        }
        open = Some((v.shmid, v.end, v.end - v.start));
        out.push((i, true));
    }
    close(&mut open)?;
    Ok(out)
}

/// Records the SysV VMAs of `pid` (shmid already set from the inode),
/// opening each new segment's shmem file through map_files.
pub fn dump_mapped(pid: Pid, vmas: &[Vma], out: &mut ShmDump) -> Result<()> {
    for v in vmas.iter().filter(|v| v.kind == VmaKind::SysvShm) {
        let shmid = v.shmid as i32;
        let name_key = v
            .path
            .as_ref()
            .and_then(|p| p.as_bytes().strip_prefix(b"/SYSV"))
            .and_then(|k| std::str::from_utf8(k.get(..8)?).ok())
            .and_then(|k| u32::from_str_radix(k, 16).ok())
            .unwrap_or(0);
        if let Some(s) = out.seen.get_mut(&shmid) {
            s.vmas += 1;
            continue;
        }
        let what = seg_name(shmid, name_key);
        let f = crate::proc::map_files::open(pid, v.start, v.end)
            .map_err(|e| Error::task(pid, format!("{what}: open its map_files entry: {e}")))?;
        let src: OwnedFd = f.into();
        let st = fs::fstat(src.as_fd()).map_err(|e| Error::task(pid, format!("{what}: fstat: {e}")))?;
        out.seen
            .insert(shmid, Seen { name_key, file_size: st.size as u64, src, vmas: 1, first: (pid, v.start, v.end) });
    }
    let sizes: BTreeMap<i32, u64> = out.seen.iter().map(|(&id, s)| (id, s.file_size)).collect();
    attachments(vmas, |id| sizes.get(&id).copied())
        .map_err(|e| Error::refuse(pid, format!("SysV shared memory: {e}")))?;
    Ok(())
}

impl ShmDump {
    /// With the tree's IPC namespace dumped (`-n ipc`; called on a thread
    /// in that namespace, before [`ShmDump::finish`]): every segment of the
    /// namespace that no task of the tree attaches is dumped too, opened
    /// through a short read-only attachment of crtools' own (which sets
    /// its atime, dtime and lpid: the kernel gives no other way in).
    /// Hugetlb segments are refused by name.
    pub fn add_unattached(&mut self, root: Pid) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let table = crate::proc::sysvipc::read_shm().map_err(|e| Error::new(format!("read /proc/sysvipc/shm: {e}")))?;
        for seg in table.iter() {
            if self.seen.contains_key(&seg.shmid) {
                continue;
            }
            let what = seg_name(seg.shmid, seg.key as u32);
            // SAFETY: the kernel picks a free range; only this function
            // refers to it, and detaches it before returning.
            let at = unsafe { ipc::shmat(seg.shmid, 0, ipc::SHM_RDONLY) }
                .map_err(|x| Error::task(root, format!("{what}: attach it to read it: {x}")))?;
            let len = seg.size.div_ceil(PAGE).max(1) * PAGE;
            let me = crate::sys::misc::getpid();
            let f = crate::proc::map_files::open(me, at, at + len);
            // SAFETY: our own attachment, which nothing refers to.
            let _ = unsafe { ipc::shmdt(at) };
            let f = f.map_err(|x| Error::task(root, format!("{what}: open it: {x}")))?;
            let md = f.metadata().map_err(|x| Error::task(root, format!("{what}: stat: {x}")))?;
            if md.blksize() > PAGE {
                return Err(Error::refuse(
                    root,
                    format!("{what} of the tree's IPC namespace is a hugetlb segment (SHM_HUGETLB): not supported"),
                ));
            }
            log::debug!("{what}: in the tree's IPC namespace, attached by no task of the tree");
            self.seen.insert(
                seg.shmid,
                Seen { name_key: seg.key as u32, file_size: md.size(), src: f.into(), vmas: 0, first: (root, 0, 0) },
            );
        }
        Ok(())
    }

    /// Once every task is dumped: reads `/proc/sysvipc/shm` and checks each
    /// segment is the one crtools' IPC namespace lists under its id and is
    /// attached by the tree only.
    pub fn finish(&mut self) -> Result<()> {
        if self.seen.is_empty() {
            return Ok(());
        }
        let table = crate::proc::sysvipc::read_shm().map_err(|e| Error::new(format!("read /proc/sysvipc/shm: {e}")))?;
        for (&shmid, s) in &self.seen {
            let (pid, start, end) = s.first;
            let what = seg_name(shmid, s.name_key);
            let Some(seg) = table.iter().find(|t| t.shmid == shmid) else {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "{what} attached at {start:#x}-{end:#x} is not in crtools' IPC namespace: \
                         attached in another IPC namespace, not supported"
                    ),
                ));
            };
            let removed = seg.mode & ipc::SHM_DEST != 0;
            let key_ok = if removed { seg.key == 0 } else { seg.key as u32 == s.name_key };
            if !key_ok || seg.size != s.file_size {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "{what} attached at {start:#x}-{end:#x} is not the segment {shmid} of crtools' IPC \
                         namespace (key {:#x}, {} bytes): attached in another IPC namespace, not supported",
                        seg.key as u32, seg.size
                    ),
                ));
            }
            if seg.nattch != s.vmas {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "{what} is attached {} times, {} of them by the dumped tree: \
                         processes outside the tree attach it",
                        seg.nattch, s.vmas
                    ),
                ));
            }
            self.entries.push(entry(seg, removed));
        }
        Ok(())
    }

    /// Writes `ipc-shm.img` and the segments' data (when there are any).
    pub fn write_images(&self, img: &ImageDir) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let w = |e: crate::image::ImageError| Error::new(format!("write SysV shared memory images: {e}"));
        let mut pages = img.create_pages(SYSV_SHM_PAGES_ID).map_err(w)?;
        let mut buf = Vec::new();
        let mut entries = self.entries.clone();
        for e in entries.iter_mut() {
            let s = &self.seen[&e.perm.id];
            let what = seg_name(e.perm.id, s.name_key);
            let err = |step: &str, x: Errno| Error::new(format!("{what}: {step}: {x}"));
            let end = e.size.div_ceil(PAGE) * PAGE;
            let mut off = 0u64;
            while off < end {
                let start = match fs::lseek(s.src.as_fd(), off as i64, Whence::Data) {
                    Ok(x) => x & !(PAGE - 1),
                    Err(Errno::ENXIO) => break,
                    Err(x) => return Err(err("SEEK_DATA", x)),
                };
                let hole = fs::lseek(s.src.as_fd(), start as i64, Whence::Hole).map_err(|x| err("SEEK_HOLE", x))?;
                let stop = hole.div_ceil(PAGE).saturating_mul(PAGE).min(end);
                if start >= stop {
                    break;
                }
                e.runs.push(ShmRun { offset: start, len: stop - start, pages_off: pages.pages_written() * PAGE });
                buf.resize(CHUNK, 0);
                let mut at = start;
                while at < stop {
                    let n = ((stop - at) as usize).min(CHUNK);
                    let got = fs::pread_full(s.src.as_fd(), &mut buf[..n], at).map_err(|x| err("read", x))?;
                    buf[got..n].fill(0);
                    pages.write_pages(&buf[..n]).map_err(w)?;
                    at += n as u64;
                }
                off = stop;
            }
            log::debug!("{what}: {} bytes, {} runs of data", e.size, e.runs.len());
        }
        pages.finish().map_err(w)?;
        let mut f = img.create_image::<kinds::IpcShm>(None, &()).map_err(w)?;
        for e in &entries {
            f.write(e).map_err(w)?;
        }
        f.finish().map(drop).map_err(w)
    }
}

fn entry(seg: &ShmSegment, removed: bool) -> ShmSegEntry {
    ShmSegEntry {
        perm: IpcPermEntry {
            id: seg.shmid,
            key: seg.key,
            mode: seg.mode & 0o777,
            uid: seg.uid,
            gid: seg.gid,
            cuid: seg.cuid,
            cgid: seg.cgid,
        },
        size: seg.size,
        nattch: seg.nattch,
        removed,
        locked: seg.mode & ipc::SHM_LOCKED != 0,
        runs: Vec::new(),
    }
}

/// The restorer flags of SysV VMA `v` of `pid` (whose VMAs are `vmas`).
pub fn plan_flags(pid: Pid, vmas: &[Vma], v: &Vma) -> Result<u32> {
    // The whole structure was checked with the images ([`check_vmas`]).
    let mut flags = 0;
    if v.pgoff == 0 {
        flags |= rp::VF_SHM_ATTACH;
        if v.status.contains(VmaStatus::VMA_SHM_RDONLY) {
            flags |= rp::VF_SHM_RDONLY;
        }
        if v.status.contains(VmaStatus::VMA_SHM_EXEC) {
            flags |= rp::VF_SHM_EXEC;
        }
    } else {
        // A continuation: the VMA right before it must be of the same attachment.
        let prev = vmas.iter().rev().find(|w| w.end <= v.start);
        let ok = matches!(prev, Some(w) if w.kind == VmaKind::SysvShm && w.shmid == v.shmid && w.end == v.start
            && w.pgoff + (w.end - w.start) == v.pgoff);
        if !ok {
            return Err(Error::task(
                pid,
                format!("SysV VMA {:#x}-{:#x} of segment {} continues no attachment", v.start, v.end, v.shmid),
            ));
        }
    }
    Ok(flags)
}

/// The segments a restore made, removed again unless the restore succeeds.
#[derive(Default)]
pub struct Segments {
    entries: Vec<ShmSegEntry>,
    /// Ids made so far.
    made: Vec<i32>,
    /// Set once the restore succeeded.
    done: std::cell::Cell<bool>,
    /// Set once the segments removed at dump are marked again.
    made_removed: std::cell::Cell<bool>,
    /// The engine's own attachment of each segment made, held until the
    /// tree has attached them: with kernel.shm_rmid_forced set, a segment
    /// goes as soon as nothing is attached to it.
    holds: std::cell::RefCell<Vec<u64>>,
    /// Made in the new IPC namespace of this root (`-n ipc`): checked
    /// there, and not removed by id from crtools' own if the restore fails
    /// (the namespace goes with the killed tree).
    ns: Option<Pid>,
}

impl Segments {
    fn let_go(&self) {
        for at in self.holds.borrow_mut().drain(..) {
            // SAFETY: an attachment of the engine's own that nothing refers to.
            if let Err(e) = unsafe { ipc::shmdt(at) } {
                log::warn!("detach a SysV shared memory segment at {at:#x}: {e}");
            }
        }
    }
}

impl Drop for Segments {
    fn drop(&mut self) {
        self.let_go();
        if self.done.get() || self.ns.is_some() {
            return;
        }
        for &id in &self.made {
            if self.made_removed.get() && self.entries.iter().any(|e| e.perm.id == id && e.removed) {
                continue;
            }
            if let Err(e) = ipc::shm_rmid(id) {
                log::warn!("remove SysV shared memory segment {id} after the failed restore: {e}");
            }
        }
    }
}

impl Segments {
    /// Once every task has attached its segments (all on their traps):
    /// checks each segment's nattch against the dump's and marks for
    /// removal those that were.
    pub fn complete(&self) -> Result<()> {
        self.let_go();
        let check = |entries: &[ShmSegEntry]| -> Result<()> {
            for e in entries {
                let what = seg_name(e.perm.id, e.perm.key as u32);
                let st = ipc::shm_stat(e.perm.id).map_err(|x| Error::new(format!("{what}: IPC_STAT: {x}")))?;
                if st.nattch != e.nattch {
                    return Err(Error::new(format!(
                        "{what}: attached {} times after restore, {} at dump",
                        st.nattch, e.nattch
                    )));
                }
            }
            for e in entries.iter().filter(|e| e.removed) {
                ipc::shm_rmid(e.perm.id)
                    .map_err(|x| Error::new(format!("{}: IPC_RMID: {x}", seg_name(e.perm.id, e.perm.key as u32))))?;
            }
            Ok(())
        };
        match self.ns {
            Some(root) => {
                let entries = &self.entries;
                super::ipc_ns::in_ipc_ns(root, || check(entries))?
            }
            None => check(&self.entries)?,
        }
        // From here the removed ones go with their last attachment; a
        // later failure kills the tree and removes the others (Drop, which
        // does not touch ids released already: they may be reused).
        self.made_removed.set(true);
        Ok(())
    }

    /// These segments were made in the IPC namespace of `root`.
    pub fn in_ns(mut self, root: Pid) -> Segments {
        self.ns = Some(root);
        self
    }

    /// The restore succeeded: the segments stay.
    pub fn restored(self) {
        self.done.set(true);
    }
}

/// Reads `ipc-shm.img` (absent: no segments).
pub fn read(dir: &ImageDirReader) -> Result<Vec<ShmSegEntry>> {
    if !dir.contains(ImageKind::IpcShm, None) {
        return Ok(Vec::new());
    }
    let e = |err: crate::image::ImageError| Error::new(format!("ipc-shm: {err}"));
    let entries = dir.open_image::<kinds::IpcShm>(None).map_err(e)?.collect_entries().map_err(e)?.1;
    for s in &entries {
        if s.perm.id < 0 || s.size == 0 || s.perm.mode > 0o777 {
            let (id, size, mode) = (s.perm.id, s.size, s.perm.mode);
            return Err(Error::new(format!("ipc-shm: bad segment {id} ({size} bytes, mode {mode:o})")));
        }
    }
    Ok(entries)
}

/// Checks that the tasks' SysV VMAs name segments of the images.
pub fn check_vmas<'a>(entries: &[ShmSegEntry], tasks: impl Iterator<Item = (Pid, &'a [Vma])>) -> Result<()> {
    for (pid, vmas) in tasks {
        for v in vmas.iter().filter(|v| v.kind == VmaKind::SysvShm) {
            if !entries.iter().any(|e| e.perm.id as u64 == v.shmid) {
                return Err(Error::task(
                    pid,
                    format!("VMA {:#x}-{:#x} attaches SysV segment {}, which the images lack", v.start, v.end, v.shmid),
                ));
            }
        }
        let sizes = |id: i32| entries.iter().find(|e| e.perm.id == id).map(|e| e.size);
        attachments(vmas, sizes).map_err(|e| Error::task(pid, format!("SysV shared memory: {e}")))?;
    }
    Ok(())
}

/// Makes every segment of the images again, with its id, contents, owner
/// and mode, before the tree is forked.
pub fn create_all(dir: &ImageDirReader, entries: Vec<ShmSegEntry>) -> Result<Segments> {
    let mut out = Segments::default();
    if entries.is_empty() {
        return Ok(out);
    }
    let pages = dir.open_pages(SYSV_SHM_PAGES_ID).map_err(|e| Error::new(format!("SysV shared memory data: {e}")))?;
    let table = crate::proc::sysvipc::read_shm().map_err(|e| Error::new(format!("read /proc/sysvipc/shm: {e}")))?;
    for e in &entries {
        let what = seg_name(e.perm.id, e.perm.key as u32);
        if let Some(t) = table.iter().find(|t| t.shmid == e.perm.id) {
            if t.nattch == 0 && t.key == e.perm.key && t.size == e.size && t.mode & ipc::SHM_DEST == 0 {
                // The dumped tree was killed and its segment outlived it.
                log::info!("{what}: the dumped segment is still there, unattached: removed, made again");
                ipc::shm_rmid(e.perm.id).map_err(|x| Error::new(format!("{what}: remove the leftover: {x}")))?;
            } else {
                return Err(Error::new(format!(
                    "{what}: id {} is taken by another segment (key {:#x}, {} bytes, {} attached, creator pid {})",
                    e.perm.id, t.key as u32, t.size, t.nattch, t.cpid
                )));
            }
        }
        if e.perm.key != ipc::IPC_PRIVATE {
            if let Some(t) = table.iter().find(|t| t.key == e.perm.key && t.shmid != e.perm.id) {
                return Err(Error::new(format!(
                    "{what}: key {:#x} is taken by segment {} ({} bytes, {} attached, creator pid {})",
                    e.perm.key as u32, t.shmid, t.size, t.nattch, t.cpid
                )));
            }
        }
        let id = make(e, &what)?;
        out.made.push(id);
        if id != e.perm.id {
            return Err(Error::new(format!(
                "{what}: made with id {id}: another segment was made in between, or the id is taken"
            )));
        }
        // SAFETY: without an address the kernel picks a free range; only
        // the engine's own code refers to it, until let_go.
        let at = unsafe { ipc::shmat(e.perm.id, 0, 0) }.map_err(|x| Error::new(format!("{what}: shmat: {x}")))?;
        out.holds.borrow_mut().push(at);
        fill(e, at, &what, pages.fd())?;
        ipc::shm_set(id, e.perm.uid, e.perm.gid, e.perm.mode)
            .map_err(|x| Error::new(format!("{what}: IPC_SET: {x}")))?;
        if e.locked {
            ipc::shm_lock(id).map_err(|x| Error::new(format!("{what}: SHM_LOCK: {x}")))?;
        }
        log::debug!("{what}: made again, {} bytes", e.size);
    }
    out.entries = entries;
    Ok(out)
}

/// shmget with the dumped id, as the dumped creator.
fn make(e: &ShmSegEntry, what: &str) -> Result<i32> {
    // Made owner-only: IPC_SET gives the dumped mode once it is filled.
    let flags = ipc::IPC_CREAT | ipc::IPC_EXCL | 0o600;
    make_with_id(&e.perm, SHM_NEXT_ID, what, || {
        ipc::shmget(e.perm.key, e.size, flags).map_err(|x| format!("shmget: {x}"))
    })
}

/// Makes one SysV IPC object (segment, message queue or semaphore set)
/// with `get`, under its dumped id and as its dumped creator: the
/// namespace's next-id knob `next_id` (kernel/shm_next_id, msg_next_id,
/// sem_next_id) is armed first. Returns the id made, which the caller
/// checks against `p.id` (a segment of crtools' own namespace made under
/// another id must still be removed). A creation that fails may leave the
/// knob armed: the kernel takes no -1 back (its minimum is 0), and the next
/// object made in that namespace gets the id.
pub(crate) fn make_with_id(
    p: &IpcPermEntry,
    next_id: &str,
    what: &str,
    get: impl Fn() -> std::result::Result<i32, String> + Sync,
) -> Result<i32> {
    let path = format!("/proc/sys/{next_id}");
    std::fs::write(&path, p.id.to_string()).map_err(|x| Error::new(format!("{what}: write {path}: {x}")))?;
    as_creator(p.cuid, p.cgid, get).map_err(|x| Error::new(format!("{what}: {x}")))
}

/// Runs `f` with effective ids `cuid`:`cgid` (so what it creates has them
/// as creator): at once if crtools has them, else on a thread of its own
/// that takes them (raw syscalls: for that thread only).
pub(crate) fn as_creator<T: Send>(
    cuid: u32,
    cgid: u32,
    f: impl Fn() -> std::result::Result<T, String> + Sync,
) -> std::result::Result<T, String> {
    let (uid, gid) = (crate::sys::misc::getresuid(), crate::sys::misc::getresgid());
    if matches!((uid, gid), (Ok(u), Ok(g)) if (u.effective, g.effective) == (cuid, cgid)) {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::sys::misc::setresgid(None, Some(cgid), None).map_err(|x| format!("become group {cgid}: {x}"))?;
            crate::sys::misc::setresuid(None, Some(cuid), None).map_err(|x| format!("become user {cuid}: {x}"))?;
            f().map_err(|x| format!("as {cuid}:{cgid}: {x}"))
        })
        .join()
        .unwrap_or_else(|_| Err("the creating thread panicked".into()))
    })
}

/// Writes the segment's data from the pages image, through its shmem file
/// (opened from a short attachment of ours, detached at once).
/// Writes segment `e`'s contents through the engine's attachment at `at`.
fn fill(e: &ShmSegEntry, at: u64, what: &str, pages: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    if e.runs.is_empty() {
        return Ok(());
    }
    let err = |step: &str, x: Errno| Error::new(format!("{what}: {step}: {x}"));
    let len = e.size.div_ceil(PAGE) * PAGE;
    let rw = std::fs::OpenOptions::new().read(true).write(true).clone();
    let f = crate::proc::map_files::open_with(crate::sys::misc::getpid(), at, at + len, &rw);
    let f: OwnedFd = f.map_err(|x| Error::new(format!("{what}: open its shmem file: {x}")))?.into();
    let mut buf = vec![0u8; CHUNK];
    for r in &e.runs {
        // Never past the size (the last page's tail is not the segment's).
        let end = (r.offset.saturating_add(r.len)).min(e.size);
        let mut at = r.offset;
        while at < end {
            let n = ((end - at) as usize).min(CHUNK);
            let got = fs::pread_full(pages, &mut buf[..n], r.pages_off + (at - r.offset))
                .map_err(|x| err("read its data", x))?;
            if got != n {
                return Err(Error::new(format!("{what}: the pages image is short")));
            }
            fs::pwrite_all(f.as_fd(), &buf[..n], at).map_err(|x| err("write its contents", x))?;
            at += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64, shmid: u64, pgoff: u64) -> Vma {
        Vma { start, end, kind: VmaKind::SysvShm, shmid, pgoff, ..Default::default() }
    }

    #[test]
    fn attachments_must_cover_their_segment() {
        let size = |_| Some(0x3000);
        let split = [vma(0x1000, 0x2000, 5, 0), vma(0x2000, 0x4000, 5, 0x1000), vma(0x9000, 0xc000, 5, 0)];
        assert_eq!(attachments(&split, size).unwrap(), vec![(0, true), (1, false), (2, true)]);
        // The tail unmapped, the head unmapped, a gap.
        assert!(attachments(&[vma(0x1000, 0x2000, 5, 0)], size).is_err());
        assert!(attachments(&[vma(0x2000, 0x4000, 5, 0x1000)], size).is_err());
        assert!(attachments(&[vma(0x1000, 0x2000, 5, 0), vma(0x3000, 0x5000, 5, 0x1000)], size).is_err());
        // Size rounded up to pages.
        assert!(attachments(&[vma(0x1000, 0x3000, 7, 0)], |_| Some(0x1001)).is_ok());
    }
}
