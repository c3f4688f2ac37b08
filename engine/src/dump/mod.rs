//! The dump pipeline (orchestration only): seize the tree, collect each
//! task's state (ptrace, parasite, /proc), cure, stream memory, write the
//! images and the inventory, then kill the tree or leave it stopped.
//!
//! Invariant: until the inventory is written, every failure resumes every
//! task exactly as it was (registers, signal mask, code, mappings): the
//! [`Parasite`] and [`Tracee`] guards cure and detach on every exit path.
use crate::error::{Context, Error, Result};
use crate::image::core::{CoreEntry, ProcessCore, TaskState};
use crate::image::kinds;
use crate::image::pagemap::PagemapHead;
use crate::image::pstree::PstreeEntry;
use crate::image::ImageDir;
use crate::infect::tree::{seize_tree, SeizedTask};
use crate::infect::{Parasite, StopState};
use crate::objects::{cgroup, clone_share, file_lock, files, mem_track, mm, ns, task, thread};

mod predump;
use crate::proc;
use crate::sys::Pid;
pub use predump::{pre_dump, PreDumpOptions};
use std::path::PathBuf;

/// What `crtools dump` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    /// Root of the tree (`-t`).
    pub pid: Pid,
    /// Image directory (`-D`).
    pub dir: PathBuf,
    /// `-s`: leave the tasks stopped instead of killing them.
    pub leave_stopped: bool,
    /// `-j`: the tree is a shell job; its terminal comes from outside.
    pub shell_job: bool,
    /// `--evasive-devices`: a device node that is gone may be replaced by
    /// any other node of the same device.
    pub evasive_devices: bool,
    /// `-x`/`--ext-unix-sk`: unix sockets whose peer is outside the tree
    /// are dumped, to be reconnected to the peer's address at restore.
    pub ext_unix_sk: bool,
    /// `--link-remap`: an unlinked file still linked elsewhere is linked
    /// back under a temporary name until restore.
    pub link_remap: bool,
    /// `--ghost-limit`: the most data of an unlinked file copied into the
    /// images (None: 1 MiB).
    pub ghost_limit: Option<u64>,
    /// `-l`/`--file-locks`: locks and leases are dumped (and taken again
    /// at restore) instead of refused.
    pub file_locks: bool,
    /// `--tcp-established`: established TCP connections are dumped (in
    /// repair mode) instead of refused.
    pub tcp_established: bool,
    /// `--tcp-close`: TCP connections are dumped as closed sockets (not
    /// checkpointed; the killed tree closes them).
    pub tcp_close: bool,
    /// `--skip-in-flight`: connections in a listener's accept queue are
    /// left out instead of refused.
    pub skip_in_flight: bool,
    /// `--action-script`: scripts run at pre-dump and post-dump.
    pub action_scripts: Vec<PathBuf>,
    /// `--prev-images-dir`: the parent dump (a pre-dump), relative to `dir`.
    pub parent: Option<String>,
    /// `--track-mem`: take from the parent the pages not written since.
    pub track_mem: bool,
    /// `-n`: the namespaces of the tree dumped with it (the root's; every
    /// task must share them).
    pub namespaces: ns::Namespaces,
}

/// Default `--ghost-limit`.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;

/// What a finished dump measured.
#[derive(Clone, Debug, Default)]
pub struct DumpStats {
    /// Processes dumped (zombies included).
    pub tasks: usize,
    /// Threads dumped.
    pub threads: usize,
    /// Pages written.
    pub pages: u64,
    /// Pages left to the parent dump.
    pub pages_skipped_parent: u64,
    /// VMAs recorded.
    pub vmas: usize,
    /// Descriptors recorded.
    pub fds: usize,
    /// Pages of the VMAs that hold data, looked at.
    pub pages_scanned: u64,
    /// Reading and writing pages: wall time, the tasks' overlapping
    /// copies counted once.
    pub memdump: std::time::Duration,
    /// Writing pages.
    pub memwrite: std::time::Duration,
    /// How long the tree was frozen.
    pub frozen: std::time::Duration,
}

/// Objects shared by the whole dump.
#[derive(Default)]
struct Shared {
    files: files::DumpFiles,
    fd_cx: files::FdCtx,
    /// Pids of the tree, to tell its own sessions from outside ones.
    pids: Vec<Pid>,
    /// Pids of the tree's tasks that have children in it.
    parents: std::collections::HashSet<Pid>,
    pstree: Vec<PstreeEntry>,
    /// Descriptor tables and fs information shared between processes.
    sharing: clone_share::Sharing,
    stats: DumpStats,
    /// When the last task's pages counted in `stats.memdump` were done.
    mem_until: Option<std::time::Instant>,
    /// Page frames of the tasks dumped so far (pages children still share).
    frames: std::collections::HashMap<Pid, mm::Frames>,
    /// The parent dump (`--prev-images-dir`, `--track-mem`).
    parent: Option<mem_track::Parent>,
    /// Userfaultfds taken from the parent's tracker, held until the end
    /// (closing them unregisters the tree's VMAs).
    uffds: Vec<(Pid, std::os::fd::OwnedFd)>,
    /// SysV shared memory segments the tree attached.
    shm: crate::objects::sysv_shm::ShmDump,
    /// What the tasks dumped so far stored of shared anonymous memory.
    shmem_stored: mm::ShmemStored,
}

/// Dumps the tree rooted at `opts.pid`.
pub fn dump(opts: &DumpOptions) -> Result<DumpStats> {
    let pid = opts.pid;
    let started = std::time::Instant::now();
    crate::fault::init();
    let status = proc::status::read(pid).ctx(pid, "read status")?;
    if status.tgid != pid.0 {
        return Err(Error::task(pid, format!("is a thread of {}; give the process id", status.tgid)));
    }
    if matches!(status.state, proc::stat::TaskState::Zombie | proc::stat::TaskState::Dead) {
        if status.threads > 1 {
            // pthread_exit in the main thread: the process runs on.
            return Err(Error::refuse(
                pid,
                format!("its leader thread has exited while {} other thread(s) run: not supported", status.threads - 1),
            ));
        }
        return Err(Error::task(pid, "is a zombie: nothing to dump"));
    }
    // A root in a session it does not lead can come back only inside that
    // same session (which a restore elsewhere cannot join), so a dump that
    // kills it could leave nothing to restore: as CRIU does, it takes
    // --shell-job (restored, it joins the session of the crtools that
    // restores it), or its session leader dumped with it.
    let stat = proc::stat::read(pid).ctx(pid, "read stat")?;
    if stat.session != pid.0 && !opts.shell_job {
        return Err(Error::refuse(
            pid,
            format!(
                "is not a session leader (its session {} is not dumped with it): dump it with --shell-job, \
                 or dump the tree of its session leader",
                stat.session
            ),
        ));
    }
    // Create the directory before touching any task: an unwritable
    // directory fails here with the tree untouched.
    let parent = match (&opts.parent, opts.track_mem) {
        (Some(rel), true) => Some(mem_track::parent_path(&opts.dir, rel).map(|_| rel.clone())?),
        (Some(_), false) => {
            return Err(Error::new("--prev-images-dir needs --track-mem (the pages come from the write tracking)"))
        }
        (None, _) => None,
    };
    let unsupported = opts.namespaces - ns::Namespaces::SUPPORTED;
    if !unsupported.is_empty() {
        return Err(Error::refuse_global(format!("dumping {} namespaces is not supported yet", unsupported.names())));
    }
    let img = ImageDir::create(&opts.dir).ctx_global("image directory")?;
    img.set_root_pid(pid.0 as u32);
    // The parent's tracker hands its userfaultfds over before the tree is
    // frozen; they stay open until the dump is over, whatever happens.
    let parent = parent.map(|rel| mem_track::Parent::open(&opts.dir, &rel)).transpose()?;

    crate::scripts::run(&opts.action_scripts, "pre-dump", &opts.dir, Some(pid))?;
    log::info!("dumping the tree of {pid} into {}", opts.dir.display());
    // A thread waiting in vfork cannot be frozen: look before seizing.
    clone_share::refuse_vfork_waiters(pid)?;
    let frozen_at = std::time::Instant::now();
    let mut tree = seize_tree(pid).map_err(|e| e.into_error(pid, "seize the tree"))?;
    log::info!(
        "seized {} tasks, {} threads",
        tree.tasks.len(),
        tree.tasks.iter().map(|t| t.threads.len()).sum::<usize>()
    );
    let mut shared = Shared { parent, ..Default::default() };
    shared.fd_cx.shell_job = opts.shell_job;
    shared.fd_cx.evasive_devices = opts.evasive_devices;
    shared.fd_cx.ext_unix_sk = opts.ext_unix_sk;
    shared.fd_cx.link_remap = opts.link_remap;
    shared.fd_cx.ghost_limit = opts.ghost_limit.unwrap_or(DEFAULT_GHOST_LIMIT);
    shared.pids = tree.tasks.iter().map(|t| t.pid).collect();
    shared.parents = tree.tasks.iter().map(|t| t.ppid).collect();
    shared.fd_cx.file_locks = opts.file_locks;
    // Pidfds may refer to any task or thread of the tree.
    shared.fd_cx.tree_tids = tree
        .tasks
        .iter()
        .flat_map(|t| std::iter::once(t.pid.0 as u32).chain(t.threads.iter().map(|th| th.pid().0 as u32)))
        .collect();
    shared.fd_cx.tcp_established = opts.tcp_established;
    shared.fd_cx.tcp_close = opts.tcp_close;
    shared.fd_cx.skip_in_flight = opts.skip_in_flight;
    let proc_locks = file_lock::read_in_background()?;
    shared.sharing = refuse_tree(&tree, opts.file_locks, opts.namespaces)?;
    // Each task's pages are copied by the pool while the next task is
    // infected; its pagemap image is written once they are all written.
    let pool = mm::PagePool::new()?;
    let mut pending = std::collections::VecDeque::new();
    for task in tree.tasks.iter_mut() {
        if let Some(p) = dump_task(&img, task, &mut shared, &pool)? {
            pending.push_back(p);
        }
        // Bounded: each pending task holds its pages image open.
        while pending.len() > MAX_PENDING {
            finish_pages(&img, pending.pop_front().expect("not empty"), &mut shared)?;
        }
    }
    while let Some(p) = pending.pop_front() {
        finish_pages(&img, p, &mut shared)?;
    }
    drop(pool);
    // The namespaces of -n, and the SysV segments (every one of a dumped
    // IPC namespace, or those the tasks attach).
    ns::dump(pid, opts.namespaces, &img, &mut shared.shm)?;

    // Sessions and groups restore could not make again: refused now, the
    // tree untouched, rather than found out once it is dead.
    crate::restore::sessions::check_restorable(&shared.pstree, opts.shell_job)
        .map_err(|e| Error::refuse_global(format!("{e} (restore could not rebuild the tree's sessions and groups)")))?;
    // A process outside the tree still in a group or session a task of the
    // tree leads keeps that id, and so that task's pid, taken: restore
    // could not make the task again while it lives. Refused now rather than
    // found out once the tree is dead (with -s the tree lives on anyway).
    if !opts.leave_stopped {
        let tree: std::collections::BTreeSet<i32> = shared.pstree.iter().map(|e| e.pid as i32).collect();
        let led: std::collections::BTreeSet<i32> =
            shared.pstree.iter().filter(|e| e.pgid == e.pid || e.sid == e.pid).map(|e| e.pid as i32).collect();
        if let Some((who, id, what)) = proc::misc::outside_member(&led, &tree) {
            return Err(Error::refuse(
                Pid(id),
                format!(
                    "leads the {what} {id}, which process {who} outside the tree is in: restore could not \
                     make the task again while that process lives (dump it too, or the whole {what})"
                ),
            ));
        }
    }
    crate::objects::tty::finish_dump(&shared.fd_cx, &mut shared.files.images, &shared.pids)?;
    let w = |e: crate::image::ImageError| Error::new(format!("write images: {e}"));
    files::finish_dump(&shared.fd_cx, &mut shared.files)?;
    let proc_locks = file_lock::join(proc_locks)?;
    if opts.file_locks {
        file_lock::check_recorded(&shared.pids, &mut shared.files.images.locks, &proc_locks)?;
    } else {
        file_lock::refuse_listed(&shared.pids, &proc_locks)?;
    }
    shared.files.images.write(&img)?;
    shared.shm.write_images(&img)?;
    if let Some(p) = &shared.parent {
        let head = crate::image::chain::ChainHead { parent: Some(p.rel.clone()), pre_dump: false };
        img.create_image::<kinds::Chain>(None, &head).map_err(w)?.finish().map_err(w)?;
    }
    let mut f = img.create_image::<kinds::Pstree>(None, &()).map_err(w)?;
    for e in &shared.pstree {
        f.write(e).map_err(w)?;
    }
    f.finish().map_err(w)?;
    crate::fault::check(crate::fault::Fault::DumpBeforeInventory)?;
    img.finish().map_err(w)?;
    // A failure before the first task is killed or let go: the images are
    // taken back (no inventory) and the tree resumes as it was.
    let release =
        if opts.leave_stopped { crate::fault::Fault::DumpLeaveStopped } else { crate::fault::Fault::DumpKill };
    if let Err(e) = crate::fault::check(release)
        .and_then(|_| crate::scripts::run(&opts.action_scripts, "post-dump", &opts.dir, Some(pid)))
    {
        crate::image::dir::withdraw(&opts.dir).map_err(w)?;
        return Err(e);
    }
    shared.files.commit();
    log::info!("images complete");

    // Write tracking ends with the dump: closing the userfaultfds
    // unregisters the tree's VMAs (no "uw" left on a tree left stopped). A
    // tree about to be killed keeps them until it is dead: unprotecting its
    // memory first would only lengthen its frozen time.
    if opts.leave_stopped {
        shared.uffds.clear();
        if let Some(p) = shared.parent.as_mut() {
            p.release_rest();
        }
    }
    if opts.leave_stopped {
        // The tree lives on: its connections leave repair mode. Otherwise
        // they stay in it until the tree is dead, so closing sends nothing.
        shared.files.release_repair();
    }
    log::debug!("releasing the tree after {} us frozen", frozen_at.elapsed().as_micros());
    // Children first, so no parent sees a child die before it dies itself.
    // Killed: SIGKILL goes to every task while all are held in their ptrace
    // stops (none runs its own code again), which ends the frozen time;
    // then they are reaped (a large address space takes a while to free).
    let mut dying = Vec::new();
    for task in tree.tasks.into_iter().rev() {
        let tpid = task.pid;
        for mut t in task.threads.into_iter().rev() {
            if opts.leave_stopped {
                // One found stopped stays stopped by the same signal.
                let sig = match t.state() {
                    StopState::Stopped(sig) => sig,
                    StopState::Running => SIGSTOP,
                };
                t.detach_stopped(sig).ctx(tpid, "leave stopped")?;
            } else {
                t.send_kill().ctx(tpid, "kill after dump")?;
                dying.push((tpid, t));
            }
        }
    }
    shared.stats.frozen = frozen_at.elapsed();
    for (tpid, t) in dying {
        t.reap().ctx(tpid, "wait for the killed task")?;
    }
    if !opts.leave_stopped {
        // The tree is dead: its connections stay silent until restore.
        crate::objects::inet_sk::hand_over(&opts.dir, &mut shared.files.images.inet_repair);
    }
    shared.uffds.clear();
    if let Some(p) = shared.parent.as_mut() {
        p.release_rest();
    }
    log::info!("tree of {pid}: {}", if opts.leave_stopped { "left stopped" } else { "killed" });
    // The dump is complete already: a failure here is only reported.
    let stats = write_stats(&opts.dir, &shared.stats, started);
    log::info!(
        "frozen for {} us, pages in {} us ({} us writing)",
        stats.frozen_time,
        stats.memdump_time,
        stats.memwrite_time
    );
    Ok(shared.stats)
}

/// Refusals that concern the tree as a whole or that must come before any
/// task is touched: namespaces, file locks and leases, kernel objects
/// shared between processes.
/// Returns the descriptor tables and fs information processes share.
fn refuse_tree(
    tree: &crate::infect::tree::SeizedTree,
    file_locks: bool,
    namespaces: ns::Namespaces,
) -> Result<clone_share::Sharing> {
    let live: Vec<Pid> = tree.tasks.iter().filter(|t| t.zombie.is_none()).map(|t| t.pid).collect();
    let root = tree.tasks[0].pid;
    for t in tree.tasks.iter().filter(|t| t.zombie.is_none()) {
        ns::refuse_foreign(t.pid, root, namespaces)?;
        if !file_locks {
            file_lock::refuse_held(t.pid)?;
        }
        let tids: Vec<Pid> = t.threads.iter().map(|th| th.pid()).collect();
        clone_share::refuse_unshared_threads(t.pid, &tids)?;
    }
    let parents: Vec<Pid> = tree.tasks.iter().filter(|t| t.zombie.is_none()).map(|t| t.ppid).collect();
    clone_share::sharing(&live, &parents)
}

const SIGSTOP: i32 = 19;

/// Tasks whose pages may still be in the copy pool at once.
const MAX_PENDING: usize = 8;

/// A task dumped but for its pages, which the pool is still copying.
struct PendingTask {
    pid: Pid,
    pages: mm::PendingPages,
    /// Since the walk began (memdump_time).
    mem_started: std::time::Instant,
    /// Threads and VMAs, for the log line.
    threads: usize,
    vmas: usize,
    /// Its AIO contexts as dumped, checked again once the pages are.
    aio: Vec<crate::image::mm::AioRing>,
}

/// Waits for a task's pages, then writes its pagemap image and completes
/// its pages image. Gives the ranges a live dumper could not read (see
/// [`mm::PageDumper::live`]; always none for a frozen task).
fn finish_pages(img: &ImageDir, t: PendingTask, shared: &mut Shared) -> Result<Vec<(u64, u64)>> {
    let pid = t.pid;
    let w = |e: crate::image::ImageError| Error::task(pid, format!("write images: {e}"));
    shared.stats.pages_skipped_parent += t.pages.skipped;
    let mm::CopiedPages { entries: pagemap, nr_pages, pages, write_time, lost } = t.pages.wait()?;
    crate::objects::aio::recheck(pid, &t.aio)?;
    // Tasks' copies overlap (the next is infected while the pool copies
    // this one's); they start in this order: the union of their spans.
    let now = std::time::Instant::now();
    let from = shared.mem_until.map_or(t.mem_started, |u| u.max(t.mem_started));
    shared.stats.memdump += now.saturating_duration_since(from);
    shared.mem_until = Some(now);
    shared.stats.memwrite += write_time;
    let mut head = PagemapHead { pages_id: pid.0 as u32, stripes: Vec::new() };
    for (k, p) in pages.into_iter().enumerate() {
        shared.stats.memwrite += p.write_time;
        p.finish().ctx(pid, "finish the pages image")?;
        if k > 0 {
            head.stripes.push(crate::image::pagemap::stripe_image_id(pid.0 as u32, k as u8));
        }
    }
    crate::fault::check(crate::fault::Fault::DumpAfterPages)?;
    let mut f = img.create_image::<kinds::Pagemap>(Some(pid.0 as u32), &head).map_err(w)?;
    for e in &pagemap {
        f.write(e).map_err(w)?;
    }
    f.finish().map_err(w)?;
    shared.stats.pages += nr_pages;
    log::info!(task = pid.0; "task {pid}: {} threads, {} VMAs, {nr_pages} pages", t.threads, t.vmas);
    Ok(lost)
}

/// Dumps one process of the seized tree; its pages may still be being
/// copied when it returns.
fn dump_task(
    img: &ImageDir,
    task: &mut SeizedTask,
    shared: &mut Shared,
    pool: &mm::PagePool,
) -> Result<Option<PendingTask>> {
    let pid = task.pid;
    let stat = proc::stat::read(pid).ctx(pid, "read stat")?;
    let mut entry = PstreeEntry {
        pid: pid.0 as u32,
        ppid: task.ppid.0 as u32,
        pgid: stat.pgrp as u32,
        sid: stat.session as u32,
        threads: task.threads.iter().map(|t| t.pid().0 as u32).collect(),
        files_with: shared.sharing.files_of(pid),
        fs_with: shared.sharing.fs_of(pid),
    };
    shared.stats.tasks += 1;
    let w = |e: crate::image::ImageError| Error::task(pid, format!("write images: {e}"));
    if let Some(status) = task.zombie {
        let process = ProcessCore {
            state: TaskState::Zombie,
            exit_status: Some(status),
            exit_signal: stat.exit_signal,
            ..Default::default()
        };
        let core = CoreEntry { tid: pid.0 as u32, thread: Default::default(), process: Some(process) };
        img.create_image::<kinds::Core>(Some(pid.0 as u32), &core).map_err(w)?.finish().map_err(w)?;
        entry.threads = vec![pid.0 as u32];
        shared.pstree.push(entry);
        return Ok(None);
    }
    let status = proc::status::read(pid).ctx(pid, "read status")?;
    // Filters (mode 2) are dumped with the threads, the tree seized with
    // them suspended (they would apply to the parasite's system calls);
    // strict mode allows only read, write and exit: nothing to restore it with.
    match status.seccomp {
        Some(0) | None => {}
        Some(2) if task.threads.iter().all(|t| t.seccomp_suspended()) => {}
        Some(2) => {
            return Err(Error::refuse(
                pid,
                "runs under seccomp filters, which crtools can only read and suspend with CAP_SYS_ADMIN",
            ))
        }
        Some(mode) => return Err(Error::refuse(pid, format!("runs in seccomp mode {mode} (strict): not supported"))),
    }
    // A controlling terminal of a session outside the tree is a shell job's.
    if stat.tty_nr != 0 && !shared.pids.contains(&Pid(stat.session)) && !shared.fd_cx.shell_job {
        return Err(Error::refuse(
            pid,
            format!(
                "its controlling terminal {} belongs to session {}, outside the dumped tree: \
                 dump it as a shell job (--shell-job)",
                crate::objects::tty::tty_nr_name(stat.tty_nr),
                stat.session
            ),
        ));
    }
    let (leader, others) = task.threads.split_first_mut().expect("a live task has its leader");
    let stopped = matches!(leader.state(), StopState::Stopped(_));
    let tids: Vec<Pid> = std::iter::once(leader.pid()).chain(others.iter().map(|t| t.pid())).collect();
    task::refuse_foreign_label(pid, &tids)?;
    let (early, have_uffd) = early_pages(img, pid, stat.starttime, shared, pool)?;

    let (mut thread_core, mut process, other_cores, fds, brk, mm_settings) = {
        let mut p = Parasite::infect(leader).ctx(pid, "infect")?;
        let thread_core = task::dump_thread_with(&mut p, &status)?;
        let mut process = task::dump_process_with(&mut p, &status)?;
        process.membarrier = task::dump_membarrier(&mut p)?;
        process.xcomp_perm = task::dump_xcomp_perm(&mut p)?;
        let brk = p.misc().ctx(pid, "read brk")?.brk;
        let mm_settings = mm::dump_mm_settings(&mut p)?;
        let at = p.thread_call();
        let mut other_cores = Vec::with_capacity(others.len());
        for t in others.iter_mut() {
            crate::fault::check(crate::fault::Fault::DumpThread)?;
            other_cores.push(thread::dump(t, pid, &at, mm_settings.policies.first_vma_own)?);
        }
        crate::fault::check(crate::fault::Fault::DumpFds)?;
        let fds = files::dump(&shared.fd_cx, pid, p.control_fd(), &mut shared.files)?;
        crate::fault::check(crate::fault::Fault::DumpInfected)?;
        if crate::fault::hit(crate::fault::Fault::DumpDieServing) {
            log::warn!("injected fault dump-die-serving: crtools dies while the parasite serves task {pid}");
            let _ = crate::sys::signal::kill(crate::sys::misc::getpid(), 9);
        }
        p.cure().ctx(pid, "cure")?;
        (thread_core, process, other_cores, fds, brk, mm_settings)
    };
    log::debug!(task = pid.0; "task {pid}: in-task state collected, parasite removed");
    // The restorer installs the leader's filters for all threads at once.
    if let Some((t, _)) = others.iter().zip(&other_cores).find(|(_, c)| c.seccomp != thread_core.seccomp) {
        return Err(Error::refuse(
            pid,
            format!("thread {} has other seccomp filters than its process: not supported", t.pid()),
        ));
    }
    // A queued SIGSTOP (it cannot be blocked) stops the task the moment it
    // runs, here the parasite's first resume: it is dumped as what it does,
    // group-stop, not as a signal to queue, which would stop the restorer.
    let mut other_cores = other_cores;
    let mut sigstop = leader.stop_deferred() || others.iter().any(|t| t.stop_deferred());
    let lists = std::iter::once(&mut process.shared_pending)
        .chain(std::iter::once(&mut thread_core.pending))
        .chain(other_cores.iter_mut().map(|c| &mut c.pending));
    for l in lists {
        sigstop |= l.iter().any(|s| s.signo() == SIGSTOP);
        l.retain(|s| s.signo() != SIGSTOP);
    }
    if stopped || sigstop {
        // Found in group-stop (or on its way there): restored stopped too,
        // by the same signal (its parent's waitid tells them apart).
        process.state = TaskState::Stopped;
        process.stop_signal = match leader.state() {
            StopState::Stopped(sig) => sig,
            StopState::Running => SIGSTOP,
        };
    }
    process.loginuid = task::read_loginuid(pid, &tids)?;
    crate::fault::check(crate::fault::Fault::DumpProc)?;
    process.cgroups = cgroup::dump(pid, &tids)?;

    crate::fault::check(crate::fault::Fault::DumpProc)?;
    let mm::MmSettings { flags: mm_flags, thp, mdwe, smaps, policies } = mm_settings;
    thread_core.mempolicy = policies.thread;
    let mm_settings = (mm_flags, thp, mdwe);
    let smaps = match smaps {
        Some(s) => s,
        None => proc::smaps::read(pid).ctx(pid, "read smaps")?,
    };
    let mut vmas = Vec::with_capacity(smaps.len());
    for e in &smaps {
        if let Some(mut v) = mm::vma_from_smaps(pid, e)? {
            v.mempolicy = policies.vmas.get(&v.start).cloned();
            mm::note_file_mode(pid, &mut v)?;
            vmas.push(v);
        }
    }
    crate::objects::memfd::dump_mapped(pid, &mut vmas, &mut shared.files.images)?;
    crate::objects::sysv_shm::dump_mapped(pid, &vmas, &mut shared.shm)?;
    crate::objects::reg_file::dump_mapped_ghosts(&shared.fd_cx, pid, &mut vmas, &mut shared.files.images)?;
    let mut head = mm::dump_mm_head(pid, &stat, brk, mm_settings)?;
    head.aio = crate::objects::aio::dump(pid, &vmas)?;
    let track = match shared.parent.as_ref() {
        Some(p) => p.task_track(pid, stat.starttime, have_uffd, &smaps, false)?,
        None => None,
    };
    let (dumper, mem_started) = match early {
        Some(e) => {
            let e = e.join()?;
            log::debug!(task = pid.0; "task {pid}: pages of {} tracked VMA(s) found early", e.done.len());
            e.check(track.as_ref(), &vmas)?;
            let started = e.started;
            (mm::PageDumper::resume(e, pool)?, started)
        }
        None => {
            let pages = img.create_pages(pid.0 as u32).ctx(pid, "create the pages image")?;
            (mm::PageDumper::new(pid, pages, pool)?, std::time::Instant::now())
        }
    };
    let mut dumper = dumper.with_shmem(&mut shared.shmem_stored);
    if shared.parent.is_none() {
        dumper = dumper.with_ancestors(&shared.frames, task.ppid).with_children(shared.parents.contains(&pid));
    } else {
        // Pages shared copy-on-write are not looked for on top of a parent:
        // the parent's pages are not an ancestor's copy.
        dumper = dumper.with_children(false).with_track(track.as_ref());
    }
    let walked = dumper.dump_vmas(&mut vmas);
    let (pending, frames) = dumper.finish();
    if let Err(e) = walked {
        // The chunks already handed out finish before the error returns.
        let _ = pending.wait();
        return Err(e);
    }
    log::debug!(task = pid.0; "task {pid}: pages found, {} left to the parent dump", pending.skipped);
    mm::Frames::note_used(&mut shared.frames, &frames);
    shared.frames.insert(pid, frames);
    shared.stats.pages_scanned +=
        vmas.iter().filter(|v| mm::needs_data(v)).map(|v| (v.end - v.start) / 4096).sum::<u64>();

    let tid = pid.0 as u32;
    let core = CoreEntry { tid, thread: thread_core, process: Some(process) };
    img.create_image::<kinds::Core>(Some(tid), &core).map_err(w)?.finish().map_err(w)?;
    for (t, c) in others.iter().zip(other_cores) {
        let ttid = t.pid().0 as u32;
        let core = CoreEntry { tid: ttid, thread: c, process: None };
        img.create_image::<kinds::Core>(Some(ttid), &core).map_err(w)?.finish().map_err(w)?;
    }
    let mut f = img.create_image::<kinds::Mm>(Some(tid), &head).map_err(w)?;
    for v in &vmas {
        f.write(v).map_err(w)?;
    }
    f.finish().map_err(w)?;
    let mut f = img.create_image::<kinds::Fdinfo>(Some(tid), &()).map_err(w)?;
    for e in &fds {
        f.write(e).map_err(w)?;
    }
    f.finish().map_err(w)?;

    shared.stats.threads += entry.threads.len();
    shared.stats.vmas += vmas.len();
    shared.stats.fds += fds.len();
    shared.pstree.push(entry);
    let aio = head.aio.clone();
    Ok(Some(PendingTask { pid, pages: pending, mem_started, threads: 1 + others.len(), vmas: vmas.len(), aio }))
}

/// A dump on top of a parent: the pages of `pid`'s tracked VMAs are found
/// and handed to the workers by a thread of their own, while the parasite
/// works and smaps is read (a walk of every page table, which takes about
/// as long as the copy of a large task's written pages). Takes the task's
/// userfaultfd from the parent's tracker (held until the end): that
/// thread, if any, and whether the userfaultfd came back.
fn early_pages(
    img: &ImageDir,
    pid: Pid,
    starttime: u64,
    shared: &mut Shared,
    pool: &mm::PagePool,
) -> Result<(Option<EarlyWalk>, bool)> {
    let Some(parent) = shared.parent.as_mut() else { return Ok((None, false)) };
    let Some(uffd) = parent.take_uffd(pid) else { return Ok((None, false)) };
    shared.uffds.push((pid, uffd));
    let maps = proc::maps::read(pid).ctx(pid, "read maps")?;
    let Some(track) = parent.task_track_early(pid, starttime, &maps) else { return Ok((None, true)) };
    if track.vmas.is_empty() {
        return Ok((None, true));
    }
    let pages = img.create_pages(pid.0 as u32).ctx(pid, "create the pages image")?;
    let tx = pool.sender(pid)?;
    let walk = move || {
        let dumper = mm::PageDumper::with_sender(pid, pages, tx)?.with_children(false).with_track(Some(&track));
        let (early, r) = dumper.dump_early();
        r.map(|()| early)
    };
    let t = std::thread::Builder::new()
        .name("early-pages".into())
        .stack_size(256 << 10)
        .spawn(walk)
        .map_err(|e| Error::task(pid, format!("start the early page walk: {e}")))?;
    Ok((Some(EarlyWalk(Some(t))), true))
}

/// The thread of [`early_pages`]; dropped, it is waited for (and so are
/// the chunks it handed out).
struct EarlyWalk(Option<std::thread::JoinHandle<Result<mm::EarlyPages>>>);

impl EarlyWalk {
    fn join(mut self) -> Result<mm::EarlyPages> {
        let t = self.0.take().expect("joined once");
        t.join().map_err(|_| Error::new("the early page walk panicked"))?
    }
}

impl Drop for EarlyWalk {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

/// Writes stats-dump.img from `s` (a dump or pre-dump that began at
/// `started`); a failure is only reported: the images are complete.
pub(crate) fn write_stats(
    dir: &std::path::Path,
    s: &DumpStats,
    started: std::time::Instant,
) -> crate::image::stats::DumpStatsEntry {
    let us = |d: std::time::Duration| d.as_micros() as u64;
    let stats = crate::image::stats::DumpStatsEntry {
        frozen_time: us(s.frozen),
        memdump_time: us(s.memdump),
        memwrite_time: us(s.memwrite),
        pages_scanned: s.pages_scanned,
        pages_skipped_parent: s.pages_skipped_parent,
        pages_written: s.pages,
        total_time: us(started.elapsed()),
        tasks: s.tasks as u32,
        threads: s.threads as u32,
    };
    if let Err(e) = crate::image::dir::write_side_image::<kinds::StatsDump>(dir, &stats) {
        log::warn!("write stats-dump.img: {e}");
    }
    stats
}
