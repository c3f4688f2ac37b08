//! `crtools pre-dump`: the memory of the tree, copied while it runs; its
//! writes are tracked from then on (see [`crate::objects::mem_track`]).
//!
//! Steps: take the parent's userfaultfds (if `--prev-images-dir`), freeze
//! the tree, and for each process: a userfaultfd in its mm (created through
//! the parasite, unless the parent's tracker gave one back), its VMAs from
//! smaps, the private anonymous writable ones registered and protected
//! (those the parent tracked and that did not change are scanned instead:
//! written pages are found and protected again, the others left to the
//! parent), and the pages to read found. Then the tree runs again and the
//! pages are read while it runs: a page written since it was protected is
//! marked written, so a copy of it that is stale or torn is replaced by the
//! next dump of the chain. A VMA that is gone when its pages are read is
//! left out of the chain (the next dump takes it in full). Only tracked
//! VMAs are copied: the next dump takes every other page afresh anyway.
//! Last, the userfaultfds go to the tracker process. A pre-dump writes
//! `mm-<pid>.img` (the VMAs as they were), `pagemap-<pid>.img`,
//! `pages-<pid>.img`, `pstree.img` and `chain.img` (parent, tracked VMAs);
//! it cannot be restored by itself.
//!
//! Any failure resumes the tree as it was (if it still is frozen); the
//! userfaultfds taken or made so far are closed (unregistered): the next
//! dump of the chain is then a full one.
use super::{finish_pages, PendingTask, Shared};
use crate::error::{Context, Error, Result};
use crate::image::chain::{ChainHead, TrackedTask};
use crate::image::kinds;
use crate::image::pstree::PstreeEntry;
use crate::image::ImageDir;
use crate::infect::tree::seize_tree;
use crate::infect::Parasite;
use crate::objects::{clone_share, mem_track, mm};
use crate::proc;
use crate::sys::Pid;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

/// What `crtools pre-dump` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct PreDumpOptions {
    /// Root of the tree (`-t`).
    pub pid: Pid,
    /// Image directory (`-D`).
    pub dir: PathBuf,
    /// `--prev-images-dir`: the previous pre-dump, relative to `dir`.
    pub parent: Option<String>,
}

/// Pre-dumps the tree rooted at `opts.pid`.
pub fn pre_dump(opts: &PreDumpOptions) -> Result<super::DumpStats> {
    let pid = opts.pid;
    let started = std::time::Instant::now();
    crate::fault::init();
    let status = proc::status::read(pid).ctx(pid, "read status")?;
    if status.tgid != pid.0 {
        return Err(Error::task(pid, format!("is a thread of {}; give the process id", status.tgid)));
    }
    if let Some(rel) = &opts.parent {
        mem_track::parent_path(&opts.dir, rel)?;
    }
    let img = ImageDir::create(&opts.dir).ctx_global("image directory")?;
    img.set_root_pid(pid.0 as u32);
    let parent = opts.parent.as_ref().map(|rel| mem_track::Parent::open(&opts.dir, rel)).transpose()?;
    log::info!("pre-dumping the memory of the tree of {pid} into {}", opts.dir.display());
    clone_share::refuse_vfork_waiters(pid)?;
    let frozen_at = std::time::Instant::now();
    let tree = seize_tree(pid).map_err(|e| e.into_error(pid, "seize the tree"))?;
    let mut shared = Shared { parent, ..Default::default() };
    let live: Vec<Pid> = tree.tasks.iter().filter(|t| t.zombie.is_none()).map(|t| t.pid).collect();
    // One mm per process: a userfaultfd per task would otherwise be shared.
    // (Shared descriptor tables and fs information do not matter here.)
    let parents: Vec<Pid> = tree.tasks.iter().filter(|t| t.zombie.is_none()).map(|t| t.ppid).collect();
    clone_share::sharing(&live, &parents)?;
    let pool = mm::PagePool::new()?;
    let mut pending = Vec::new();
    let mut tracked: Vec<TrackedTask> = Vec::new();
    let mut uffds: Vec<(Pid, OwnedFd)> = Vec::new();
    let mut tree = tree;
    for task in tree.tasks.iter_mut() {
        let tpid = task.pid;
        shared.pstree.push(PstreeEntry {
            pid: tpid.0 as u32,
            ppid: task.ppid.0 as u32,
            pgid: 0,
            sid: 0,
            threads: task.threads.iter().map(|t| t.pid().0 as u32).collect(),
            ..Default::default()
        });
        shared.stats.tasks += 1;
        shared.stats.threads += task.threads.len();
        if task.zombie.is_some() {
            continue;
        }
        let stat = proc::stat::read(tpid).ctx(tpid, "read stat")?;
        let leader = task.threads.first_mut().expect("a live task has its leader");
        let mut uffd = shared.parent.as_mut().and_then(|p| p.take_uffd(tpid));
        if uffd.is_none() {
            let mut p = Parasite::infect(leader).ctx(tpid, "infect")?;
            let made = mem_track::create_in(&mut p);
            p.cure().ctx(tpid, "cure")?;
            uffd = match made {
                Ok(fd) => Some(fd),
                Err(e) => {
                    log::warn!(task = tpid.0; "task {tpid}: no write tracking ({e}); the next dump takes its pages in full");
                    None
                }
            };
        }
        let smaps = proc::smaps::read(tpid).ctx(tpid, "read smaps")?;
        let mut vmas = Vec::with_capacity(smaps.len());
        for e in &smaps {
            if let Some(v) = mm::vma_from_smaps(tpid, e)? {
                vmas.push(v);
            }
        }
        let track = match shared.parent.as_ref() {
            Some(p) => p.task_track(tpid, stat.starttime, uffd.is_some(), &smaps, true)?,
            None => None,
        };
        // Every other trackable VMA is registered and protected now, before
        // its pages are read (the tree is frozen).
        let mut armed = Vec::new();
        if let Some(fd) = uffd.as_ref() {
            for v in vmas.iter().filter(|v| mem_track::trackable(v)) {
                let range = (v.start, v.end);
                if track.as_ref().is_some_and(|t| t.vmas.contains(&range)) {
                    armed.push(range);
                    continue;
                }
                match mem_track::arm(fd.as_fd(), v.start, v.end) {
                    Ok(()) => armed.push(range),
                    Err(e) => log::info!(
                        task = tpid.0;
                        "task {tpid}: VMA {:#x}-{:#x} not tracked (userfaultfd: {e}); the next dump takes it in full",
                        v.start,
                        v.end
                    ),
                }
            }
        }
        let mut head = mm::dump_mm_head(tpid, &stat, 0, (Default::default(), 0, 0))?;
        head.auxv.clear();
        let pages = img.create_pages(tpid.0 as u32).ctx(tpid, "create the pages image")?;
        let mem_started = std::time::Instant::now();
        // Pages are found now and read once the tree runs again: only
        // those of tracked VMAs (the next dump takes every other page
        // afresh), the chunks held until then.
        let mut dumper = mm::PageDumper::new(tpid, pages, &pool)?
            .live()?
            .only(&armed)
            .with_children(false)
            .with_track(track.as_ref());
        let walked = dumper.dump_vmas(&mut vmas);
        let (pages, _) = dumper.finish();
        walked?;
        shared.stats.pages_scanned +=
            vmas.iter().filter(|v| mm::needs_data(v)).map(|v| (v.end - v.start) / 4096).sum::<u64>();
        let w = |e: crate::image::ImageError| Error::task(tpid, format!("write images: {e}"));
        let mut f = img.create_image::<kinds::Mm>(Some(tpid.0 as u32), &head).map_err(w)?;
        for v in &vmas {
            f.write(v).map_err(w)?;
        }
        f.finish().map_err(w)?;
        shared.stats.vmas += vmas.len();
        if let Some(fd) = uffd {
            tracked.push(TrackedTask { pid: tpid.0 as u32, starttime: stat.starttime, vmas: armed });
            uffds.push((tpid, fd));
        }
        pending.push(PendingTask {
            pid: tpid,
            pages,
            mem_started,
            threads: task.threads.len(),
            vmas: vmas.len(),
            aio: Vec::new(),
        });
    }
    // Every tracked page is protected: from here on a write marks it for
    // the next dump, so the tree runs on while its pages are read (a page
    // written meanwhile may be stored torn; the next dump reads it again).
    // Children first, as at dump.
    for task in tree.tasks.into_iter().rev() {
        let tpid = task.pid;
        for t in task.threads.into_iter().rev() {
            t.detach().ctx(tpid, "resume after the pre-dump")?;
        }
    }
    shared.stats.frozen = frozen_at.elapsed();
    log::info!("pre-dump: the tree runs again after {} us frozen; copying its pages", shared.stats.frozen.as_micros());
    for p in pending {
        let tpid = p.pid;
        let lost = finish_pages(&img, p, &mut shared)?;
        if lost.is_empty() {
            continue;
        }
        // Unmapped or moved while it ran: the next dump takes these VMAs
        // in full.
        if let Some(t) = tracked.iter_mut().find(|t| t.pid == tpid.0 as u32) {
            t.vmas.retain(|&(s, e)| {
                let hit = lost.iter().any(|&(ls, le)| ls < e && s < le);
                if hit {
                    log::info!(task = tpid.0; "task {tpid}: VMA {s:#x}-{e:#x} changed while its pages were read; the next dump takes it in full");
                }
                !hit
            });
        }
    }
    drop(pool);
    let w = |e: crate::image::ImageError| Error::new(format!("write images: {e}"));
    let head = ChainHead { parent: opts.parent.clone(), pre_dump: true };
    let mut f = img.create_image::<kinds::Chain>(None, &head).map_err(w)?;
    for t in &tracked {
        f.write(t).map_err(w)?;
    }
    f.finish().map_err(w)?;
    let mut f = img.create_image::<kinds::Pstree>(None, &()).map_err(w)?;
    for e in &shared.pstree {
        f.write(e).map_err(w)?;
    }
    f.finish().map_err(w)?;
    crate::fault::check(crate::fault::Fault::DumpBeforeInventory)?;
    img.finish().map_err(w)?;
    // Tasks the parent tracked and that are gone: their userfaultfds close.
    if let Some(p) = shared.parent.as_mut() {
        p.release_rest();
    }
    mem_track::hand_over(&opts.dir, uffds);
    let stats = super::write_stats(&opts.dir, &shared.stats, started);
    log::info!(
        "pre-dump: frozen for {} us, {} pages written, {} left to the parent",
        stats.frozen_time,
        stats.pages_written,
        stats.pages_skipped_parent
    );
    Ok(shared.stats)
}
