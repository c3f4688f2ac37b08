//! The dump pipeline (orchestration only): check what can be dumped, seize,
//! collect the task's state (ptrace, parasite, /proc), cure, stream memory,
//! write the images and the inventory, then kill the task or leave it
//! stopped.
//!
//! Invariant: until the inventory is written, every failure resumes the task
//! exactly as it was (registers, signal mask, code, mappings): the
//! [`Parasite`] and [`Tracee`] guards cure and detach on every exit path.
use crate::error::{Context, Error, Result};
use crate::image::core::CoreEntry;
use crate::image::kinds;
use crate::image::pagemap::PagemapHead;
use crate::image::pstree::PstreeEntry;
use crate::image::ImageDir;
use crate::infect::{Parasite, Tracee};
use crate::objects::{files, mm, task};
use crate::proc;
use crate::sys::Pid;
use std::path::PathBuf;

/// What `crtools dump` was asked to do.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    /// Root of the tree (`-t`).
    pub pid: Pid,
    /// Image directory (`-D`).
    pub dir: PathBuf,
    /// `-s`: leave the task stopped instead of killing it.
    pub leave_stopped: bool,
}

/// What a finished dump measured.
#[derive(Clone, Debug, Default)]
pub struct DumpStats {
    /// Pages written.
    pub pages: u64,
    /// VMAs recorded.
    pub vmas: usize,
    /// Descriptors recorded.
    pub fds: usize,
}

/// Dumps the task `opts.pid`.
pub fn dump(opts: &DumpOptions) -> Result<DumpStats> {
    let pid = opts.pid;
    let status = proc::status::read(pid).ctx(pid, "read status")?;
    if status.tgid != pid.0 {
        return Err(Error::task(pid, format!("is a thread of {}; give the process id", status.tgid)));
    }
    if status.threads > 1 {
        return Err(Error::task(
            pid,
            format!("has {} threads: multi-threaded dump is not supported yet", status.threads),
        ));
    }
    let children = proc::task::children(pid).ctx(pid, "list children")?;
    if !children.is_empty() {
        return Err(Error::task(
            pid,
            format!("has children {children:?}: dumping a process tree is not supported yet"),
        ));
    }
    if matches!(status.state, proc::stat::TaskState::Zombie | proc::stat::TaskState::Dead) {
        return Err(Error::task(pid, "is a zombie: nothing to dump"));
    }
    // Create the directory before touching the task: an unwritable
    // directory fails here with the task untouched.
    let img = ImageDir::create(&opts.dir).ctx_global("image directory")?;
    img.set_root_pid(pid.0 as u32);

    log::info!("dumping task {pid} into {}", opts.dir.display());
    let mut tracee = Tracee::seize(pid).ctx(pid, "seize")?;
    log::debug!("task {pid}: seized ({:?})", tracee.state());
    let stat = proc::stat::read(pid).ctx(pid, "read stat")?;
    let status = proc::status::read(pid).ctx(pid, "read status")?;

    let (thread, mut process, fds, brk) = {
        let mut p = Parasite::infect(&mut tracee).ctx(pid, "infect")?;
        let thread = task::dump_thread_with(&mut p, &status)?;
        let process = task::dump_process_with(&mut p, &status)?;
        let brk = p.misc().ctx(pid, "read brk")?.brk;
        let mut next_id = 1;
        let fds = files::dump(pid, p.control_fd(), &mut next_id)?;
        p.cure().ctx(pid, "cure")?;
        (thread, process, fds, brk)
    };
    log::debug!("task {pid}: in-task state collected, parasite removed");
    if matches!(tracee.state(), crate::infect::StopState::Stopped(_)) {
        // Found in group-stop: restored stopped too.
        process.state = crate::image::core::TaskState::Stopped;
    }

    let smaps = proc::smaps::read(pid).ctx(pid, "read smaps")?;
    let mut vmas = Vec::with_capacity(smaps.len());
    for e in &smaps {
        if let Some(v) = mm::vma_from_smaps(pid, e)? {
            vmas.push(v);
        }
    }
    let head = mm::dump_mm_head(pid, &stat, brk)?;

    let pages_id = 1;
    let mut pages = img.create_pages(pages_id).ctx(pid, "create the pages image")?;
    let mut dumper = mm::PageDumper::new(pid, &mut pages);
    dumper.dump_vmas(&vmas)?;
    let nr_pages = dumper.nr_pages;
    let pagemap = dumper.into_entries();
    pages.finish().ctx(pid, "finish the pages image")?;
    log::info!("task {pid}: {} VMAs, {nr_pages} pages dumped", vmas.len());

    let w = |e: crate::image::ImageError| Error::task(pid, format!("write images: {e}"));
    let tid = pid.0 as u32;
    let core = CoreEntry { tid, thread, process: Some(process) };
    img.create_image::<kinds::Core>(Some(tid), &core).map_err(w)?.finish().map_err(w)?;
    let mut f = img.create_image::<kinds::Mm>(Some(tid), &head).map_err(w)?;
    for v in &vmas {
        f.write(v).map_err(w)?;
    }
    f.finish().map_err(w)?;
    let mut f = img.create_image::<kinds::Pagemap>(Some(tid), &PagemapHead { pages_id }).map_err(w)?;
    for e in &pagemap {
        f.write(e).map_err(w)?;
    }
    f.finish().map_err(w)?;
    let mut f = img.create_image::<kinds::Fdinfo>(Some(tid), &()).map_err(w)?;
    for e in &fds.fds {
        f.write(e).map_err(w)?;
    }
    f.finish().map_err(w)?;
    let mut f = img.create_image::<kinds::Files>(None, &()).map_err(w)?;
    for e in &fds.files {
        f.write(e).map_err(w)?;
    }
    f.finish().map_err(w)?;
    let mut f = img.create_image::<kinds::RegFiles>(None, &()).map_err(w)?;
    for e in &fds.reg {
        f.write(e).map_err(w)?;
    }
    f.finish().map_err(w)?;
    let entry = PstreeEntry {
        pid: tid,
        ppid: stat.ppid as u32,
        pgid: stat.pgrp as u32,
        sid: stat.session as u32,
        threads: vec![tid],
    };
    let mut f = img.create_image::<kinds::Pstree>(None, &()).map_err(w)?;
    f.write(&entry).map_err(w)?;
    f.finish().map_err(w)?;
    img.finish().map_err(w)?;
    log::info!("task {pid}: images complete");

    let stats = DumpStats { pages: nr_pages, vmas: vmas.len(), fds: fds.fds.len() };
    if opts.leave_stopped {
        tracee.detach_stopped().ctx(pid, "leave stopped")?;
        log::info!("task {pid}: left stopped");
    } else {
        tracee.kill().ctx(pid, "kill after dump")?;
        log::info!("task {pid}: killed");
    }
    Ok(stats)
}
