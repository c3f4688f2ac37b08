//! The restore pipeline (orchestration only).
//!
//! 1. Read and validate every image (inventory checksums, pids, the vDSO
//!    layout, files that must still be the same, sessions and groups that
//!    can be rebuilt) before touching the system.
//! 2. Build each task's restorer plan and pick its region for blob, plan
//!    and stacks, overlapping neither crtools' mappings nor the task's.
//! 3. clone3 the root with set_tid = its dumped pid; the engine seizes it
//!    with PTRACE_O_TRACEFORK|TRACECLONE|EXITKILL and releases it. Still
//!    running crtools' code, each task sets up its session and group, forks
//!    its children with their pids (so parents and sessions are right; the
//!    tracer attaches them automatically), then maps its region, copies the
//!    blob and plan there and jumps in. Zombies exit at once with their
//!    status, for their parents to reap.
//! 4. Each blob rebuilds its task, creates its threads (each stops on a
//!    trap) and stops on its own trap. When every task and thread is there,
//!    the engine checks the reports, sets registers, xsave state and masks
//!    with ptrace, unmaps the regions with remote syscalls and lets the
//!    whole tree go at once.
//!
//! Any failure kills every task created so far: nothing half-restored is
//! left running (PTRACE_O_EXITKILL covers crtools itself dying on the way).
mod fork;
pub mod lazy;
pub mod plan;
pub mod sessions;
pub mod validate;

use sessions::Session;

use crate::blobs;
use crate::error::{Context, Error, Result};
use crate::image::core::{CoreEntry, TaskState};
use crate::image::files::FdinfoEntry;
use crate::image::mm::{MmEntry, Vma, VmaKind};
use crate::image::pagemap::{PagemapEntry, PagemapHead};
use crate::image::pages::PagesReader;
use crate::image::pstree::PstreeEntry;
use crate::image::{kinds, ImageDirReader};
use crate::infect::Tracee;
use crate::objects::{clone_share, files, mm, sysv_shm, task, thread};
use crate::proc;
use crate::sys::ptrace::{self, UserRegs, NT_X86_XSTATE};
use crate::sys::wait::{self, WaitStatus};
use crate::sys::{Errno, Pid, Sysno};
use plan::PlanBuilder;
use restorer_plan as rp;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PAGE: u64 = 4096;
/// Highest user address + 1 with 4-level page tables.
const TASK_SIZE: u64 = 0x7fff_ffff_f000;
/// Lowest address we would put the region at.
const MIN_REGION_ADDR: u64 = 0x1000_0000;
/// How long to wait for a dumped pid to become free.
const PID_WAIT: Duration = Duration::from_secs(10);
/// How long the whole tree may take to reach its traps.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);
const SIGTRAP: usize = 5;
const SIGCHLD: i32 = 17;

/// What `crtools restore` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Root task to restore (`-t`): the images must hold it as their root.
    /// `None`: the root the images hold.
    pub pid: Option<Pid>,
    /// Image directory (`-D`).
    pub dir: PathBuf,
    /// `-d`: return once the tree runs instead of waiting for the root.
    pub detach: bool,
    /// `-j`: restore a shell job: join crtools' session and process group,
    /// and connect its terminal descriptors to crtools' terminal.
    pub shell_job: bool,
    /// `-x`/`--ext-unix-sk`: reconnect unix sockets whose peer was outside
    /// the dumped tree (images without such sockets need not say it).
    pub ext_unix_sk: bool,
    /// `--inherit-fd fd[N]:KEY`: crtools' own descriptor N stands in for the
    /// dumped file KEY (`pipe:[INODE]`, `socket:[INODE]` or a path).
    pub inherit_fds: Vec<(i32, String)>,
    /// `-l`/`--file-locks`: take the dumped locks and leases again (images
    /// that hold some are refused without it).
    pub file_locks: bool,
    /// `--tcp-established`: restore established TCP connections (images
    /// that hold some are refused without it).
    pub tcp_established: bool,
    /// `--tcp-close`: TCP connections in the images come back closed.
    pub tcp_close: bool,
    /// `--action-script`: scripts run at pre-restore, post-restore and
    /// post-resume.
    pub action_scripts: Vec<PathBuf>,
    /// `-n`: the namespaces the images must hold (None: whatever they hold;
    /// each is made again for the root either way).
    pub namespaces: Option<crate::objects::ns::Namespaces>,
    /// `--lazy-pages`: how to start the lazy-pages server (see [`lazy`]).
    pub lazy_pages: Option<lazy::ServerCommand>,
}

/// Everything read from the images for one task.
struct TaskImages {
    pstree: PstreeEntry,
    /// Leader first, then the other threads in pstree order.
    cores: Vec<CoreEntry>,
    mm: MmEntry,
    vmas: Vec<Vma>,
    pagemap_head: PagemapHead,
    pagemap: Vec<PagemapEntry>,
    fds: Vec<FdinfoEntry>,
}

impl TaskImages {
    fn process(&self) -> &crate::image::core::ProcessCore {
        self.cores[0].process.as_ref().expect("checked when read")
    }
}

fn read_task(dir: &ImageDirReader, pstree: &PstreeEntry) -> Result<TaskImages> {
    let pid = Pid(pstree.pid as i32);
    let e = |what: &str| {
        let what = what.to_string();
        move |err: crate::image::ImageError| Error::task(pid, format!("{what}: {err}"))
    };
    let mut cores = Vec::with_capacity(pstree.threads.len());
    if pstree.threads.first() != Some(&pstree.pid) {
        return Err(Error::task(pid, "pstree entry does not list the leader first"));
    }
    for &tid in &pstree.threads {
        let (core, _) =
            dir.open_image::<kinds::Core>(Some(tid)).map_err(e("core"))?.collect_entries().map_err(e("core"))?;
        if core.tid != tid {
            return Err(Error::task(pid, format!("core-{tid}.img describes thread {}", core.tid)));
        }
        if (tid == pstree.pid) != core.process.is_some() {
            return Err(Error::task(pid, format!("core-{tid}.img: process state misplaced")));
        }
        cores.push(core);
    }
    let zombie = cores[0].process.as_ref().map(|p| p.state == TaskState::Zombie).unwrap_or(false);
    if zombie {
        return Ok(TaskImages {
            pstree: pstree.clone(),
            cores,
            mm: MmEntry::default(),
            vmas: Vec::new(),
            pagemap_head: PagemapHead::default(),
            pagemap: Vec::new(),
            fds: Vec::new(),
        });
    }
    let id = Some(pstree.pid);
    let (mm, vmas) = dir.open_image::<kinds::Mm>(id).map_err(e("mm"))?.collect_entries().map_err(e("mm"))?;
    let (pagemap_head, pagemap) =
        dir.open_image::<kinds::Pagemap>(id).map_err(e("pagemap"))?.collect_entries().map_err(e("pagemap"))?;
    let (_, fdinfo): ((), Vec<FdinfoEntry>) =
        dir.open_image::<kinds::Fdinfo>(id).map_err(e("fdinfo"))?.collect_entries().map_err(e("fdinfo"))?;
    Ok(TaskImages { pstree: pstree.clone(), cores, mm, vmas, pagemap_head, pagemap, fds: fdinfo })
}

/// The vDSO areas of this process, in address order: a forked child has
/// them at the same place.
fn own_vdso() -> Result<Vec<(VmaKind, u64, u64)>> {
    let me = Pid(std::process::id() as i32);
    let maps = proc::maps::read(me).ctx_global("read own maps")?;
    Ok(maps
        .iter()
        .filter_map(|m| {
            let k = match m.kind {
                proc::maps::MapKind::Vdso => VmaKind::Vdso,
                proc::maps::MapKind::Vvar => VmaKind::Vvar,
                proc::maps::MapKind::VvarVclock => VmaKind::VvarVclock,
                _ => return None,
            };
            Some((k, m.start, m.end - m.start))
        })
        .collect())
}

/// The address ranges the engine's own mappings and every task's VMAs
/// take: where the engine must not put what the tree inherits.
fn busy_ranges(tasks: &[TaskImages]) -> Result<Vec<(u64, u64)>> {
    let me = Pid(std::process::id() as i32);
    let mut busy: Vec<(u64, u64)> =
        proc::maps::read(me).ctx_global("read own maps")?.iter().map(|m| (m.start, m.end)).collect();
    busy.extend(tasks.iter().flat_map(|t| t.vmas.iter().map(|v| (v.start, v.end))));
    Ok(busy)
}

/// Picks the highest free range of `size` bytes, avoiding `busy` ranges.
fn pick_region(mut busy: Vec<(u64, u64)>, size: u64) -> Option<u64> {
    busy.sort();
    let mut top = TASK_SIZE;
    for &(s, e) in busy.iter().rev() {
        if e <= top && top - e >= size + 2 * PAGE {
            let start = (top - size - PAGE) & !(PAGE - 1);
            if start >= MIN_REGION_ADDR {
                return Some(start);
            }
        }
        top = top.min(s);
    }
    if top >= MIN_REGION_ADDR + size + PAGE {
        return Some((top - size - PAGE) & !(PAGE - 1));
    }
    None
}

/// One task, ready to be forked.
struct Prepared {
    pid: Pid,
    /// Exit status (wait format) of a zombie.
    zombie: Option<i32>,
    /// The signal its parent gets when it ends (SIGCHLD for the root).
    exit_signal: i32,
    session: Session,
    /// Forked by its parent before the parent's own session step.
    early: bool,
    children: Vec<usize>,
    image: Vec<u8>,
    region: u64,
    region_size: u64,
    plan_addr: u64,
    stack_top: u64,
    /// Its pages image, stripe by stripe.
    pages: Vec<PagesReader>,
    /// The numbers its stripes take in the task (see `pages_src`).
    pages_target: Vec<i32>,
    late_pages: Vec<rp::PageRun>,
    /// Pages in parent dumps, written like the late pages.
    parent_pages: Vec<crate::objects::mem_track::ParentRuns>,
    /// Stack (and scratch page) of each created thread, in core order.
    thread_stacks: Vec<u64>,
    /// Group helpers this task forks first (pids = the groups' ids).
    helpers: Vec<Pid>,
    /// Session helpers this task forks (pids = the sessions' ids), each
    /// with the tasks it forks (see `sessions::SessionPlan`).
    session_helpers: Vec<(Pid, Vec<usize>)>,
    /// Terminal steps before the restorer (controlling terminal, foreground group).
    tty: crate::objects::tty::TaskTty,
    /// Descriptors opened once the tree exists.
    late_files: files::LateFiles,
    /// CLONE_FILES / CLONE_FS when it shares its parent's (see
    /// objects::clone_share).
    clone_flags: crate::sys::clone::CloneFlags,
    /// -1, or the pipe it waits on, sharing a descriptor table, until the
    /// group's first task has put its files in place.
    share_wait: i32,
    /// The pages image descriptor above every number of the tree (one
    /// task's restorer closing its low descriptors must not take another's).
    pages_src: Vec<OwnedFd>,
    /// The first of a shared descriptor table's group: the engine closes
    /// its helper descriptors from this number up once the group is done.
    close_helpers: Option<i32>,
    /// What the lazy-pages server copies in (`--lazy-pages`).
    lazy: mm::Lazy,
}

/// How a task takes part in a shared descriptor table or fs information.
struct ShareArgs {
    files: clone_share::Role,
    fs: clone_share::Role,
    /// The owner's end of the group's go pipe (-1 for none), and how many wait on it.
    go_fd: i32,
    go_count: u32,
    /// The lowest descriptor number above everything the tree uses.
    high_base: i32,
    /// A free thread id for the task's pages helper (see [`HelperTids`]), or 0.
    helper_tid: i32,
    /// The socket to the lazy-pages server, or -1 (no lazy pages).
    lazy_sock: i32,
}

/// Page data in odd stripes, at least, for a task's restorer to read them
/// on a second thread (thread creation and exit cost tens of microseconds).
const PAGES_HELPER_MIN: u64 = 16 << 20;

/// Thread ids for the restorers' pages helpers: free numbers outside the
/// tree's pids and tids, from the top of the pid range down (the kernel
/// hands out low numbers first, until it wraps).
struct HelperTids {
    next: i32,
    avoid: std::collections::HashSet<i32>,
}

impl HelperTids {
    fn new(tasks: &[TaskImages]) -> HelperTids {
        let pid_max = crate::proc::pid_max().min(i32::MAX as u64) as i32;
        let avoid = tasks.iter().flat_map(|t| t.pstree.threads.iter().map(|&x| x as i32)).collect();
        HelperTids { next: pid_max - 1, avoid }
    }

    /// The next free one; 0 when none is found after a few tries (the
    /// restorer then reads every stripe itself).
    fn take(&mut self) -> i32 {
        for _ in 0..64 {
            let t = self.next;
            if t <= 300 {
                return 0;
            }
            self.next -= 1;
            if !self.avoid.contains(&t) && !std::path::Path::new(&format!("/proc/{t}")).exists() {
                return t;
            }
        }
        0
    }
}

/// Builds the plan of a live task.
#[allow(clippy::too_many_arguments)]
fn prepare(
    dir: &ImageDirReader,
    t: &TaskImages,
    is_root: bool,
    busy_self: &[(u64, u64)],
    vdso: &[(VmaKind, u64, u64)],
    from_engine: mm::Inheritance<'_>,
    opened: &files::Opened,
    share: &ShareArgs,
) -> Result<Prepared> {
    let pid = Pid(t.pstree.pid as i32);
    let member = share.files == clone_share::Role::Member;
    let process = t.process();
    let mut b = PlanBuilder::new();
    // The root's parent at restore is crtools, not the parent it had.
    task::plan(&mut b, pid, &t.cores[0].thread, process, !is_root)?;
    // A member of a shared table leaves it to the group's first task.
    let late_files = if member { files::LateFiles::default() } else { files::plan(&mut b, pid, &t.fds, opened)? };
    let mut lazy = mm::Lazy::default();
    let lazy_out = (share.lazy_sock >= 0).then_some(&mut lazy);
    let late_pages = mm::plan(&mut b, pid, &t.mm, &t.vmas, &t.pagemap, vdso, from_engine, opened, lazy_out)?;
    b.plan.lazy_sock = share.lazy_sock;
    crate::objects::aio::plan(&mut b, pid, &t.mm, &t.vmas)?;
    let pages = dir.open_task_pages(&t.pagemap_head).ctx(pid, "open the pages image")?;
    let max_fd = t.fds.iter().map(|f| f.fd as i32).max().unwrap_or(2).max(2);
    let mut pages_src = Vec::with_capacity(pages.len());
    let mut pages_target = Vec::with_capacity(pages.len());
    b.plan.pages_fds = [-1; rp::MAX_STRIPES];
    for (k, p) in pages.iter().enumerate() {
        let src = crate::sys::fs::fcntl_dupfd_cloexec(p.fd(), share.high_base)
            .map_err(|e| Error::task(pid, format!("move the pages image above fd {}: {e}", share.high_base)))?;
        // A member of a shared table keeps it where it is: the number is
        // the group's, and the owner's restorer does not close it. Others
        // take the numbers right above the task's own (below `high_base`).
        let target = if member { src.as_raw_fd() } else { max_fd + 1 + k as i32 };
        b.plan.pages_fds[k] = target;
        pages_target.push(target);
        pages_src.push(src);
    }
    b.plan.helper_fd_min = max_fd + 1;
    if member {
        b.plan.flags |= rp::F_SHARED_FILES;
    }
    if share.files != clone_share::Role::Own {
        b.plan.flags |= rp::F_KEEP_HELPERS;
    }
    if share.fs == clone_share::Role::Member {
        b.plan.flags |= rp::F_SHARED_FS;
    }
    b.plan.share_go_fd = share.go_fd;
    b.plan.share_go_count = share.go_count;
    b.plan.task_size = TASK_SIZE;
    b.plan.fault_step = crate::fault::blob_step();
    // NUMA memory policies: the leader's own, then each VMA's.
    let mut pols = Vec::new();
    if let Some(p) = &t.cores[0].thread.mempolicy {
        pols.push(mm::plan_mempolicy(pid, p, 0, 0)?);
    }
    for v in t.vmas.iter() {
        if let Some(p) = &v.mempolicy {
            pols.push(mm::plan_mempolicy(pid, p, v.start, v.end - v.start)?);
        }
    }
    b.plan.mempolicies = b.add_table(&pols);

    let nthreads = t.cores.len() as u64 - 1;
    let odd_bytes: u64 =
        t.pagemap.iter().filter(|e| e.has_data() && e.stripe % 2 == 1).map(|e| e.nr_pages as u64 * PAGE).sum();
    let helper = share.helper_tid != 0 && odd_bytes >= PAGES_HELPER_MIN;
    let blob_len = blobs::restorer::MEM_SIZE as u64;
    let plan_off = (blob_len + PAGE - 1) & !(PAGE - 1);
    // The thread table is appended after the size is known: reserve it.
    let arena_len =
        ((b.size() as u64 + std::mem::size_of::<rp::ThreadEntry>() as u64 * nthreads + 64) + PAGE - 1) & !(PAGE - 1);
    let stacks_off = plan_off + arena_len + PAGE;
    let stacks = nthreads + helper as u64;
    let region_size = stacks_off + stacks * rp::THREAD_STACK + PAGE + rp::STACK_SIZE as u64;
    let mut busy: Vec<(u64, u64)> = busy_self.to_vec();
    busy.extend(t.vmas.iter().map(|v| (v.start, v.end)));
    let region = pick_region(busy, region_size).ok_or_else(|| Error::task(pid, "no free range for the restorer"))?;
    let mut threads = Vec::with_capacity(t.cores.len() - 1);
    for (i, c) in t.cores[1..].iter().enumerate() {
        threads.push(rp::ThreadEntry {
            tid: c.tid as i32,
            failed_step: 0,
            stack: region + stacks_off + i as u64 * rp::THREAD_STACK,
            ret: 0,
            creds: task::plan_creds(Pid(c.tid as i32), &c.thread.creds)?,
            mempolicy: match &c.thread.mempolicy {
                Some(p) => mm::plan_mempolicy(Pid(c.tid as i32), p, 0, 0)?,
                None => rp::MemPolicy::default(),
            },
        });
    }
    b.plan.threads = b.add_table(&threads);
    if helper {
        b.plan.pages_helper_tid = share.helper_tid;
        b.plan.pages_helper_stack = region + stacks_off + nthreads * rp::THREAD_STACK;
    }
    b.plan.region_start = region;
    b.plan.region_end = region + region_size;
    let arena = b.finish();
    if arena.len() as u64 > arena_len {
        return Err(Error::task(pid, "restore plan outgrew its reservation"));
    }
    let mut image =
        blobs::relocate(blobs::restorer::IMAGE, blobs::restorer::MEM_SIZE, blobs::restorer::RELOCS, region).bytes;
    image.resize(plan_off as usize, 0);
    image.extend_from_slice(&arena);
    log::debug!(task = pid.0; "task {pid}: restorer region {region:#x}-{:#x}, plan {} bytes", region + region_size, arena.len());
    Ok(Prepared {
        pid,
        zombie: None,
        exit_signal: SIGCHLD,
        session: Session::Inherit,
        early: false,
        children: Vec::new(),
        image,
        region,
        region_size,
        plan_addr: region + plan_off,
        stack_top: (region + region_size - 64) & !15,
        pages_target,
        pages,
        late_pages,
        // Filled by the caller from the parent chain.
        parent_pages: Vec::new(),
        thread_stacks: threads.iter().map(|t| t.stack).collect(),
        helpers: Vec::new(),
        session_helpers: Vec::new(),
        tty: Default::default(),
        late_files,
        clone_flags: crate::sys::clone::CloneFlags::empty(),
        share_wait: -1,
        pages_src,
        close_helpers: (share.files == clone_share::Role::Owner).then_some(max_fd + 1),
        lazy,
    })
}

/// Checks the page data `names` on a thread of its own (the tree is
/// released only once it passed).
fn verify_pages(dir: &Path, names: Vec<String>) -> Result<std::thread::JoinHandle<Result<()>>> {
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("verify-pages".into())
        .spawn(move || -> Result<()> {
            let d = ImageDirReader::open(&dir).ctx_global("open images")?;
            for n in &names {
                d.verify(n).ctx_global("verify images")?;
            }
            Ok(())
        })
        .ctx_global("start the page-data check")
}

/// Restores the tree; returns the root's exit status when not detached.
pub fn restore(opts: &RestoreOptions) -> Result<i32> {
    let started = Instant::now();
    crate::fault::init();
    let dir = ImageDirReader::open(&opts.dir).ctx_global("open images")?;
    // A pre-dump is refused, and pages "in parent" need every parent now.
    let mut chain = crate::objects::mem_track::Chain::open(&dir)?;
    // Every image but the page data is checked now; page data (nearly all
    // the bytes) is checked by a second thread while the tree is built, and
    // the tree is released only once that check passed (see run_tree).
    let mut pages_names = Vec::new();
    for e in dir.images() {
        if e.kind == crate::image::ImageKind::Pages {
            pages_names.push(e.name.clone());
        } else {
            dir.verify(&e.name).ctx_global("verify images")?;
        }
    }
    // With lazy pages, the server checks the page data of the tasks it
    // serves: the check starts once the plans say which those are.
    let mut verifier = match opts.lazy_pages {
        Some(_) => None,
        None => Some(verify_pages(&opts.dir, pages_names.clone())?),
    };
    let ge = |what: &'static str| move |err: crate::image::ImageError| Error::new(format!("{what}: {err}"));
    let (_, tree): ((), Vec<PstreeEntry>) =
        dir.open_image::<kinds::Pstree>(None).map_err(ge("pstree"))?.collect_entries().map_err(ge("pstree"))?;
    let file_images = files::FileImages::read(&dir)?;
    if let (Some(l), false) = (file_images.locks.first(), opts.file_locks) {
        return Err(Error::refuse(
            Pid(l.pid as i32),
            format!("fd {}: the images hold its {}: restore with --file-locks", l.fd, l.kind_name()),
        ));
    }
    let namespaces = crate::objects::ns::NsImages::read(&dir)?;
    namespaces.check_asked(opts.namespaces)?;
    let pids: Vec<u32> = tree.iter().map(|t| t.pid).collect();
    let Some(first) = tree.first() else { return Err(Error::new("the images hold no task")) };
    let root = opts.pid.unwrap_or(Pid(first.pid as i32));
    if first.pid != root.0 as u32 {
        if tree.iter().any(|t| t.pid == root.0 as u32) {
            return Err(Error::new(format!("pid {root} is not the root of the dumped tree (the root is {})", pids[0])));
        }
        return Err(Error::new(format!("pid {root} is not in the images (they hold {pids:?})")));
    }
    // Nothing is created yet.
    crate::scripts::run(&opts.action_scripts, "pre-restore", &opts.dir, Some(root))?;
    let mut tasks: Vec<TaskImages> = tree.iter().map(|t| read_task(&dir, t)).collect::<Result<_>>()?;
    validate::check_tasks(&tasks, TASK_SIZE)?;
    // Hugetlb pages come from a pool: enough of them, or nothing is made.
    let huge: Vec<_> = tasks
        .iter()
        .map(|t| crate::objects::hugetlb::TaskMem { pid: Pid(t.pstree.pid as i32), vmas: &t.vmas, pagemap: &t.pagemap })
        .collect();
    crate::objects::hugetlb::check_pool(&huge)?;
    drop(huge);
    let shm_segments = sysv_shm::read(&dir)?;
    sysv_shm::check_vmas(&shm_segments, tasks.iter().map(|t| (Pid(t.pstree.pid as i32), t.vmas.as_slice())))?;
    let mut fd_cx = files::FdCtx {
        shell_job: opts.shell_job,
        ext_unix_sk: opts.ext_unix_sk,
        tcp_established: opts.tcp_established,
        tcp_close: opts.tcp_close,
        images_dir: Some(opts.dir.clone()),
        inherit_fds: opts.inherit_fds.clone(),
        tree_tids: tree.iter().flat_map(|t| t.threads.iter().copied()).collect(),
        removed_cwds: tasks
            .iter()
            .filter_map(|t| t.cores.first()?.process.as_ref())
            .filter(|p| p.cwd_removed.is_some())
            .map(|p| std::path::PathBuf::from(p.cwd.as_os_str()))
            .collect(),
        ..Default::default()
    };
    for t in tasks.iter().rev() {
        for f in &t.fds {
            fd_cx.owners.insert(f.id, (Pid(t.pstree.pid as i32), f.fd));
        }
    }
    if opts.shell_job {
        fd_cx.tty_path = crate::objects::tty::own_terminal();
    }
    if !file_images.tty.is_empty() && opts.shell_job && fd_cx.tty_path.is_none() {
        return Err(Error::new("the images hold a shell job's terminal, but crtools is not running on a terminal"));
    }
    for t in &tasks {
        let st = t.process().state;
        if !matches!(st, TaskState::Alive | TaskState::Stopped | TaskState::Zombie) {
            return Err(Error::refuse(Pid(t.pstree.pid as i32), format!("task state {st:?} cannot be restored yet")));
        }
        // Only a stop signal: the release hands it to the task.
        if !matches!(t.process().stop_signal, 0 | 19..=22) {
            return Err(Error::task(
                Pid(t.pstree.pid as i32),
                format!("stop signal {} in the images is not a stop signal", t.process().stop_signal),
            ));
        }
    }
    if tasks[0].process().state == TaskState::Zombie {
        return Err(Error::task(root, "the root task is a zombie"));
    }

    // Children in creation order: group leaders before the members.
    let index: BTreeMap<u32, usize> = tasks.iter().enumerate().map(|(i, t)| (t.pstree.pid, i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate().skip(1) {
        let p = index.get(&t.pstree.ppid).ok_or_else(|| {
            Error::task(Pid(t.pstree.pid as i32), format!("parent {} is not in the images", t.pstree.ppid))
        })?;
        children[*p].push(i);
    }
    for c in children.iter_mut() {
        c.sort_by_key(|&i| (tasks[i].pstree.pgid != tasks[i].pstree.pid, tasks[i].pstree.pid));
    }
    let mut order = Vec::with_capacity(tasks.len());
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(children[i].iter().rev());
    }
    if order.len() != tasks.len() {
        return Err(Error::new("the pstree image is not a tree"));
    }
    let sessions::SessionPlan { sessions, helpers: group_helpers, early, session_helpers } =
        sessions::plan_sessions(&tasks, &order, opts.shell_job)?;
    // Tasks a session helper forks instead of their parent.
    let by_helper: BTreeSet<usize> = session_helpers.iter().flat_map(|h| h.2.iter().copied()).collect();

    crate::fault::check(crate::fault::Fault::RestoreImagesRead)?;
    // Every pid and tid of the tree must be free before anything is
    // created (unix sockets are made by children with the pids they
    // recorded, the tree's own among them).
    for &(_, pgid) in &group_helpers {
        wait_gone(Pid(pgid as i32))?;
    }
    for &(_, sid, _) in &session_helpers {
        wait_gone(Pid(sid as i32))?;
    }
    for t in &tasks {
        for &tid in &t.pstree.threads {
            wait_gone(Pid(tid as i32))?;
        }
    }
    // Shared memory between processes: created and filled here, once; the
    // whole tree inherits it (before reading our own maps: it is busy).
    let (shared_objects, inherited) = create_shared_objects(&dir, &tasks)?;
    // Private memory tasks still share copy-on-write: one copy, inherited too.
    let (cow_copies, cow) = create_cow_copies(&dir, &tasks)?;
    crate::fault::check(crate::fault::Fault::RestoreSharedMemory)?;
    // SysV segments with their ids, before the tree that attaches them;
    // removed again if the restore fails.
    // In a new IPC namespace they are made once the root has made it.
    let (mut segments, shm_in_ns) = if namespaces.kinds().contains(crate::objects::ns::Namespaces::IPC) {
        (sysv_shm::Segments::default(), shm_segments)
    } else {
        (sysv_shm::create_all(&dir, shm_segments)?, Vec::new())
    };
    crate::fault::check(crate::fault::Fault::RestoreSysvShm)?;
    // Every open file description, once, for the tree to inherit above
    // every descriptor number a task uses (and its pages descriptor).
    let mut opened = files::open_all(&fd_cx, &file_images)?;
    // Removed directories made again above ghosts: they go last, after the
    // working directories inside them (dropped after `removed_cwds`).
    let _made_parents = files::MadeDirs(std::mem::take(&mut opened.made_parents));
    // Removed working directories get an empty stand-in until the tree runs
    // (the same directory as a removed one open by that name, kept by
    // open_all); from here on they go whatever happens.
    let removed_cwds = task::make_removed_cwds(
        tasks.iter_mut().filter_map(|t| Some((Pid(t.pstree.pid as i32), t.cores[0].process.as_mut()?))),
        &std::mem::take(&mut opened.kept_dirs),
    )?;
    let tables: Vec<(Pid, &[FdinfoEntry])> =
        tasks.iter().map(|t| (Pid(t.pstree.pid as i32), t.fds.as_slice())).collect();
    files::check_late_sharing(&opened, &tables)?;
    let top_fd = tasks.iter().flat_map(|t| t.fds.iter().map(|f| f.fd as i32)).max().unwrap_or(2).max(2);
    raise_nofile(top_fd)?;
    // Descriptors the engine holds for the tree go above every number a
    // task has or gives its pages image's stripes (from its own highest
    // plus one): no task's dup of them can land on another.
    let high_base = top_fd + 1 + rp::MAX_STRIPES as i32;
    opened.place(high_base)?;
    let roles = clone_share::restore_roles(&tree)?;
    let gos = share_pipes(&tasks, &roles, high_base)?;

    let tasks = tasks;
    // The socket to the lazy-pages server, which starts once the plans
    // say what is lazy, before any task exists.
    let mut lazy_server = opts.lazy_pages.as_ref().map(|_| lazy::Server::new()).transpose()?;
    let lazy_sock = match lazy_server.as_mut() {
        Some(s) => s.place(high_base)?,
        None => -1,
    };
    // Every plan, before touching anything.
    let me = Pid(std::process::id() as i32);
    let busy_self: Vec<(u64, u64)> =
        proc::maps::read(me).ctx_global("read own maps")?.iter().map(|m| (m.start, m.end)).collect();
    let vdso = own_vdso()?;
    let mut helper_tids = HelperTids::new(&tasks);
    let mut prepared = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        let pid = Pid(t.pstree.pid as i32);
        let mut p = match t.process().exit_status {
            Some(status) if t.process().state == TaskState::Zombie => Prepared {
                pid,
                zombie: Some(status),
                exit_signal: SIGCHLD,
                session: Session::Inherit,
                early: false,
                children: Vec::new(),
                image: Vec::new(),
                region: 0,
                region_size: 0,
                plan_addr: 0,
                stack_top: 0,
                pages: Vec::new(),
                pages_target: Vec::new(),
                late_pages: Vec::new(),
                parent_pages: Vec::new(),
                thread_stacks: Vec::new(),
                helpers: Vec::new(),
                session_helpers: Vec::new(),
                tty: Default::default(),
                late_files: files::LateFiles::default(),
                clone_flags: crate::sys::clone::CloneFlags::empty(),
                share_wait: -1,
                pages_src: Vec::new(),
                close_helpers: None,
                lazy: mm::Lazy::default(),
            },
            _ => {
                let from_engine = mm::Inheritance { shm: &inherited, cow: &cow };
                let (files_role, fs_role) = roles[i];
                let go = gos.get(&t.pstree.files_with);
                let owner_go = go.filter(|_| files_role == clone_share::Role::Owner);
                let share = ShareArgs {
                    files: files_role,
                    fs: fs_role,
                    go_fd: owner_go.map_or(-1, |g| g.1.as_raw_fd()),
                    go_count: owner_go.map_or(0, |g| g.2),
                    high_base,
                    helper_tid: helper_tids.take(),
                    lazy_sock,
                };
                let mut p = prepare(&dir, t, i == 0, &busy_self, &vdso, from_engine, &opened, &share)?;
                p.parent_pages = chain.resolve(pid, &t.pagemap)?;
                use crate::sys::clone::CloneFlags;
                if files_role == clone_share::Role::Member {
                    p.clone_flags |= CloneFlags::CLONE_FILES;
                    p.share_wait = go.map_or(-1, |g| g.0.as_raw_fd());
                }
                if fs_role == clone_share::Role::Member {
                    p.clone_flags |= CloneFlags::CLONE_FS;
                }
                p
            }
        };
        p.session = sessions[i];
        p.early = early[i];
        // The root's parent is crtools, not the one it had: it gets SIGCHLD.
        p.exit_signal = if i == 0 { SIGCHLD } else { t.process().exit_signal };
        p.children = children[i].iter().copied().filter(|c| !by_helper.contains(c)).collect();
        p.helpers = group_helpers.iter().filter(|h| h.0 == i).map(|h| Pid(h.1 as i32)).collect();
        p.session_helpers =
            session_helpers.iter().filter(|h| h.0 == i).map(|h| (Pid(h.1 as i32), h.2.clone())).collect();
        prepared.push(p);
    }
    let ids: Vec<crate::objects::tty::TaskIds> = tasks
        .iter()
        .map(|t| crate::objects::tty::TaskIds {
            pid: t.pstree.pid,
            ppid: t.pstree.ppid,
            sid: t.pstree.sid,
            pgid: t.pstree.pgid,
            zombie: t.process().state == TaskState::Zombie,
        })
        .collect();
    if let (Some(server), Some(cmd)) = (lazy_server.as_mut(), &opts.lazy_pages) {
        let mut plan = lazy::LazyPlan::default();
        let mut lazy_names = HashSet::new();
        let mut lazy_bytes = 0;
        for (t, p) in tasks.iter().zip(prepared.iter_mut()).filter(|(_, p)| !p.lazy.vmas.is_empty()) {
            for id in t.pagemap_head.ids() {
                lazy_names.insert(dir.name_of(crate::image::ImageKind::Pages, Some(id)).ctx(p.pid, "pages image")?);
            }
            let task = lazy::task(p.pid, &t.pagemap_head, &p.lazy, &mut p.parent_pages);
            lazy_bytes += task.runs.iter().map(|r| r.len).sum::<u64>();
            plan.tasks.push(task);
        }
        log::info!("lazy pages: {} MiB of {} tasks left to the server", lazy_bytes >> 20, plan.tasks.len());
        // A pid it takes is not one the tree needs.
        let mut avoid: HashSet<i32> = tasks.iter().flat_map(|t| t.pstree.threads.iter().map(|&x| x as i32)).collect();
        avoid.extend(group_helpers.iter().map(|h| h.1 as i32));
        avoid.extend(session_helpers.iter().map(|h| h.1 as i32));
        server.start(cmd, &opts.dir, &avoid, &plan)?;
        verifier =
            Some(verify_pages(&opts.dir, pages_names.into_iter().filter(|n| !lazy_names.contains(n)).collect())?);
    }
    let ttys = crate::objects::tty::plan_tasks(&file_images, &ids, &order, &opened, opts.shell_job)?;
    for (p, tty) in prepared.iter_mut().zip(ttys) {
        p.tty = tty;
    }

    let job_terminal = match &fd_cx.tty_path {
        Some(path) => crate::objects::tty::JobTerminal::apply(path, &file_images.tty)?,
        None => None,
    };
    crate::fault::check(crate::fault::Fault::RestorePlans)?;
    crate::fault::check(crate::fault::Fault::RestoreFork)?;
    let (go_r, go_w) = crate::sys::fs::pipe2(crate::sys::fs::OpenFlags::O_CLOEXEC).ctx_global("pipe")?;
    let forking = Instant::now();
    let t_root = fork::spawn_root(&prepared, &go_r, namespaces.clone_flags())?;
    drop(go_r);
    let mut tracees: BTreeMap<Pid, Tracee> = BTreeMap::new();
    tracees.insert(root, t_root);
    // The root waits for the go: its new namespaces get what they held
    // before any task runs in them.
    let ns_ready = namespaces.restore(root, &dir, shm_in_ns).map(|made| {
        if let Some(made) = made {
            segments = made;
        }
    });
    let post_restore = || {
        // The lazy-pages server holds every lazy task's pages before any
        // task runs.
        if let Some(s) = lazy_server.as_ref() {
            s.wait_ready()?;
        }
        // Every task attached its segments: the removed ones are marked again.
        segments.complete()?;
        crate::scripts::run(&opts.action_scripts, "post-restore", &opts.dir, Some(root))
    };
    let mut result = ns_ready
        .and_then(|_| run_tree(&tasks, &prepared, &mut tracees, &go_w, &mut verifier, &mut opened, &post_restore));
    if let Some(v) = verifier.take() {
        // An earlier failure: a bad page image is its likely cause, say so.
        if let Ok(Err(bad)) = v.join() {
            result = Err(bad);
        }
    }
    if let Err(e) = result {
        for p in &prepared {
            for &h in &p.helpers {
                let _ = crate::sys::signal::kill(h, 9);
            }
        }
        kill_all(tracees, &tasks);
        return Err(e);
    }
    if let Some(t) = job_terminal {
        let pgids: Vec<i32> = tasks.iter().map(|t| t.pstree.pgid as i32).collect();
        t.tell_resize(&pgids);
        t.keep();
    }
    if let Some(s) = lazy_server {
        s.release();
    }
    drop(shared_objects);
    drop(cow_copies);
    segments.restored();
    opened.restored();
    drop(opened);
    drop(gos);
    drop(removed_cwds);
    let us = |d: Duration| d.as_micros() as u64;
    let stats = crate::image::stats::RestoreStatsEntry {
        prepare_time: us(forking - started),
        forking_time: us(forking.elapsed()),
        restore_time: us(started.elapsed()),
        pages_restored: tasks
            .iter()
            .flat_map(|t| {
                t.pagemap
                    .iter()
                    .filter(|e| e.has_data() || e.flags.contains(crate::image::pagemap::PagemapFlags::PE_PARENT))
                    .map(|e| e.nr_pages as u64)
            })
            .sum(),
    };
    // The tree runs already: a failure here is only reported.
    if let Err(e) = crate::image::dir::write_side_image::<kinds::StatsRestore>(&opts.dir, &stats) {
        log::warn!("write stats-restore.img: {e}");
    }
    // A shell job runs on crtools' own terminal now: informative lines
    // there would land in the middle of its screen (-v 2 shows them).
    let level = if fd_cx.tty_path.is_some() { log::Level::Debug } else { log::Level::Info };
    log::log!(
        level,
        "restored {} tasks, {} threads",
        tasks.len(),
        tasks.iter().map(|t| t.pstree.threads.len()).sum::<usize>()
    );
    // The tree runs: a failing post-resume script is reported, not undone.
    if let Err(e) = crate::scripts::run(&opts.action_scripts, "post-resume", &opts.dir, Some(root)) {
        log::error!("{e}");
    }
    if opts.detach {
        return Ok(0);
    }
    // The tree runs on its own now: while crtools waits for its root, a
    // stop signal ends crtools at once, as it would any program.
    crate::interrupt::forget();
    if let Some(sig) = crate::interrupt::received() {
        log::info!(
            "{} came while the tree was being released: not waiting for it",
            crate::sys::signal::signal_name(sig)
        );
        return Ok(0);
    }
    // A shell job on crtools' terminal: a stop of the job (Ctrl-Z) stops
    // crtools too, so that the shell that runs crtools gets its terminal
    // back; its fg or bg continues the job the same way.
    let job = match (&fd_cx.tty_path, opts.shell_job) {
        (Some(path), true) => crate::objects::tty::JobControl::open(path),
        _ => None,
    };
    let options = if job.is_some() { wait::WUNTRACED } else { 0 };
    loop {
        match wait::wait4(root, options).ctx(root, "wait for the restored task")? {
            Some((_, WaitStatus::Exited(c))) => return Ok(c),
            Some((_, WaitStatus::Signaled(s, _))) => return Ok(128 + s),
            Some((_, WaitStatus::Stopped { sig, .. })) => {
                if let Some(j) = &job {
                    j.job_stopped(root, sig);
                }
            }
            _ => continue,
        }
    }
}

/// The go pipes of the shared descriptor tables, by owner pid: (read end,
/// write end, number of members), both ends at `base` or above. Checks
/// the groups too: a member's descriptors are its owner's, and a group
/// sharing fs information is not chrooted (its first task's chroot would
/// change the paths the others still open while they are restored).
fn share_pipes(
    tasks: &[TaskImages],
    roles: &[(clone_share::Role, clone_share::Role)],
    base: i32,
) -> Result<BTreeMap<u32, (OwnedFd, OwnedFd, u32)>> {
    use clone_share::Role;
    let by_pid: BTreeMap<u32, &TaskImages> = tasks.iter().map(|t| (t.pstree.pid, t)).collect();
    let mut gos = BTreeMap::new();
    for (t, &(files_role, fs_role)) in tasks.iter().zip(roles) {
        let pid = Pid(t.pstree.pid as i32);
        if files_role == Role::Member {
            let owner = by_pid[&t.pstree.files_with];
            let key = |f: &FdinfoEntry| (f.fd, f.id, f.cloexec);
            let mine: BTreeSet<_> = t.fds.iter().map(key).collect();
            let theirs: BTreeSet<_> = owner.fds.iter().map(key).collect();
            if mine != theirs {
                return Err(Error::task(
                    pid,
                    format!(
                        "shares the descriptor table of task {} but the images list other descriptors",
                        owner.pstree.pid
                    ),
                ));
            }
            if let std::collections::btree_map::Entry::Vacant(v) = gos.entry(owner.pstree.pid) {
                let (r, w) = crate::sys::fs::pipe2(crate::sys::fs::OpenFlags::O_CLOEXEC).ctx_global("pipe")?;
                let r = crate::sys::fs::fcntl_dupfd_cloexec(r.as_fd(), base).ctx_global("move a pipe up")?;
                let w = crate::sys::fs::fcntl_dupfd_cloexec(w.as_fd(), base).ctx_global("move a pipe up")?;
                v.insert((r, w, 0));
            }
            gos.get_mut(&owner.pstree.pid).expect("just made").2 += 1;
        }
        if fs_role != Role::Own {
            let root = t.process().root.as_bytes();
            if !root.is_empty() && root != b"/" {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "shares its fs information (CLONE_FS) with other processes and is chrooted to {}: \
                         not restored yet",
                        t.process().root.as_os_str().to_string_lossy()
                    ),
                ));
            }
        }
    }
    Ok(gos)
}

/// Lets crtools hold descriptors up to `top` + the tree's objects: the
/// soft RLIMIT_NOFILE goes up to the hard one (the restored tasks get
/// their own limits back in their restorer).
fn raise_nofile(top: i32) -> Result<()> {
    use crate::sys::misc::{get_rlimit, set_rlimit, Rlimit, RLIMIT_NOFILE};
    let me = Pid(0);
    let lim = get_rlimit(me, RLIMIT_NOFILE).ctx_global("getrlimit(RLIMIT_NOFILE)")?;
    if lim.cur < lim.max {
        set_rlimit(me, RLIMIT_NOFILE, &Rlimit { cur: lim.max, max: lim.max }).ctx_global("setrlimit(RLIMIT_NOFILE)")?;
    }
    if (top as u64) >= lim.max {
        return Err(Error::new(format!("descriptor {top} is above crtools' own RLIMIT_NOFILE ({})", lim.max)));
    }
    Ok(())
}

/// Maps and fills every MAP_SHARED anonymous object that several tasks
/// share, for the tree to inherit.
#[allow(clippy::type_complexity)]
fn create_shared_objects(
    dir: &ImageDirReader,
    tasks: &[TaskImages],
) -> Result<(Vec<crate::sys::mm::Mapping>, std::collections::HashMap<(u64, u64), mm::Inherited>)> {
    let lists: Vec<&[Vma]> = tasks.iter().map(|t| t.vmas.as_slice()).collect();
    let mut maps = Vec::new();
    let mut inherited = std::collections::HashMap::new();
    let objects = mm::shared_between(&lists);
    if objects.is_empty() {
        return Ok((maps, inherited));
    }
    // Where no task maps anything: a task maps its own VMAs over whatever
    // is there, and an object it inherits must stay whole until it maps it
    // (the restorer finds it by its exact range).
    let mut busy = busy_ranges(tasks)?;
    for (key, size) in objects {
        let t = tasks
            .iter()
            .find(|t| t.vmas.iter().any(|v| v.kind == VmaKind::SharedAnon && (v.dev, v.inode) == key))
            .expect("shared_between found it in a task");
        let pid = Pid(t.pstree.pid as i32);
        // Hugetlb objects are made as such, with their page size; one
        // that every mapping made without reserving pages reserves none.
        let vmas = || t.vmas.iter().filter(|v| v.kind == VmaKind::SharedAnon && (v.dev, v.inode) == key);
        let mut extra = crate::sys::mm::MapFlags::empty();
        if let Some(v) = vmas().find(|v| v.is_hugetlb()) {
            extra = crate::sys::mm::MapFlags::from_bits_retain(crate::objects::hugetlb::map_flags(v.huge_page_size));
            if vmas().all(|v| v.flags.contains(crate::image::mm::MapFlags::MAP_NORESERVE)) {
                extra |= crate::sys::mm::MapFlags::MAP_NORESERVE;
            }
        }
        // Hugetlb objects need their page size's alignment: room for it.
        let align = vmas().find(|v| v.is_hugetlb()).map(|v| v.huge_page_size).unwrap_or(4096).max(4096);
        let len = size.next_multiple_of(align);
        let at = pick_region(busy.clone(), len + align)
            .map(|a| a.next_multiple_of(align))
            .ok_or_else(|| Error::task(pid, "no room for a shared memory object"))?;
        let mut m =
            crate::sys::mm::Mapping::anonymous_shared_at(at, size as usize, extra).ctx(pid, "map shared memory")?;
        busy.push((at, at + len));
        // Each task stored the parts no task before it had (and mapping
        // different parts, tasks may each hold a different one): fill from
        // all of them.
        for t in
            tasks.iter().filter(|t| t.vmas.iter().any(|v| v.kind == VmaKind::SharedAnon && (v.dev, v.inode) == key))
        {
            let pid = Pid(t.pstree.pid as i32);
            let pages = dir.open_task_pages(&t.pagemap_head).ctx(pid, "open the pages image")?;
            let fds: Vec<_> = pages.iter().map(|p| p.fd()).collect();
            mm::fill_object(pid, m.as_mut_slice(), key, &t.vmas, &t.pagemap, &fds)?;
        }
        log::debug!("shared memory object {key:x?}: {size} bytes at {:#x}", m.addr());
        inherited.insert(key, mm::Inherited { addr: m.addr(), size });
        maps.push(m);
    }
    Ok((maps, inherited))
}

/// Maps and fills the engine's copy of every area of private memory that
/// tasks share copy-on-write with an ancestor (its provider), at an
/// address none of the tasks maps anything at, for the tree to inherit.
fn create_cow_copies(
    dir: &ImageDirReader,
    tasks: &[TaskImages],
) -> Result<(Vec<crate::sys::mm::Mapping>, mm::CowAreas)> {
    let areas = mm::cow_areas(tasks.iter().map(|t| t.vmas.as_slice()));
    let mut out = mm::CowAreas::default();
    let mut maps = Vec::new();
    if areas.is_empty() {
        return Ok((maps, out));
    }
    let mut busy = busy_ranges(tasks)?;
    for (provider, start, end) in areas {
        let pid = Pid(provider as i32);
        let t = tasks
            .iter()
            .find(|t| t.pstree.pid == provider)
            .ok_or_else(|| Error::task(pid, "shares memory with its descendants but is not in the images"))?;
        let v = t.vmas.iter().find(|v| (v.start, v.end) == (start, end)).ok_or_else(|| {
            Error::task(pid, format!("VMA {start:#x}-{end:#x} shared with its descendants is not in its images"))
        })?;
        let len = end - start;
        let at = pick_region(busy.clone(), len).ok_or_else(|| Error::task(pid, "no room for a shared copy"))?;
        let noreserve = v.flags.contains(crate::image::mm::MapFlags::MAP_NORESERVE);
        let mut m = crate::sys::mm::Mapping::anonymous_at(at, len as usize, noreserve)
            .ctx(pid, "map the copy of memory it shares")?;
        let pages = dir.open_task_pages(&t.pagemap_head).ctx(pid, "open the pages image")?;
        let fds: Vec<_> = pages.iter().map(|p| p.fd()).collect();
        mm::fill_cow(pid, m.as_mut_slice(), start, end, &t.pagemap, &fds)?;
        log::debug!(task = provider; "task {provider}: {start:#x}-{end:#x} shared with descendants, copy at {at:#x}");
        busy.push((at, at + len));
        out.addr.insert((provider, start, end), at);
        maps.push(m);
    }
    Ok((maps, out))
}

/// Why `parent` could not create a child with its pid, when the reason is
/// a process outside the tree that keeps the pid in use (see
/// [`fork::held_pid`]).
fn held_child_pid(all: &[Prepared], parent: Pid) -> Option<Error> {
    let me = all.iter().find(|p| p.pid == parent)?;
    me.children
        .iter()
        .map(|&c| all[c].pid)
        .chain(me.helpers.iter().copied())
        .chain(me.session_helpers.iter().flat_map(|h| std::iter::once(h.0).chain(h.1.iter().map(|&c| all[c].pid))))
        .find_map(fork::held_pid)
}

/// Waits until a pid that must be reused is free. A zombie (the dumped
/// task, not reaped yet: PID 1 takes its time) or a dying task is waited
/// for; a live process that holds the pid is an error at once, naming it.
pub(crate) fn wait_gone(pid: Pid) -> Result<()> {
    let deadline = Instant::now() + PID_WAIT;
    let grace = Instant::now() + Duration::from_millis(500);
    loop {
        let stat = match proc::stat::read(pid) {
            Err(e) if e.is_gone() => return Ok(()),
            Err(e) => return Err(Error::task(pid, format!("read its stat: {e}"))),
            Ok(s) => s,
        };
        let zombie = matches!(stat.state, proc::stat::TaskState::Zombie | proc::stat::TaskState::Dead);
        let now = Instant::now();
        if now > deadline || (!zombie && now > grace) {
            return Err(Error::task(
                pid,
                format!(
                    "pid is in use by {} ({}, state {:?})",
                    String::from_utf8_lossy(&stat.comm),
                    if zombie { "a zombie nobody reaps" } else { "a running process" },
                    stat.state
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills every task of the tree that exists (after a failure): nothing
/// half-restored may run. Waiting as the tracer lets each one die.
fn kill_all(tracees: BTreeMap<Pid, Tracee>, tasks: &[TaskImages]) {
    let traced: BTreeSet<Pid> = tracees.keys().copied().collect();
    for t in tracees.into_values() {
        // Not detached: a detach would let a half-restored task run.
        std::mem::forget(t);
    }
    // Only tasks we created: a pid of the images may belong to someone
    // else (the very reason a clone3 failed). Ours are all traced by this
    // thread (attached at their fork); a zombie that exited is gone already.
    let me = crate::sys::misc::gettid();
    let ours = |pid: Pid| proc::status::read(pid).map(|s| s.tracer_pid == me.0).unwrap_or(false);
    let mut left: Vec<Pid> = Vec::new();
    for t in tasks.iter().rev() {
        let pid = Pid(t.pstree.pid as i32);
        if traced.contains(&pid) || ours(pid) {
            let _ = crate::sys::signal::kill(pid, 9);
            // Threads before their leader: a leader is only reaped once
            // its threads are.
            left.extend(t.pstree.threads.iter().rev().map(|&tid| Pid(tid as i32)));
        }
    }
    // Waiting as the tracer lets each one die; bounded, never blocking.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !left.is_empty() {
        left.retain(|&tid| match wait::wait4(tid, wait::WALL | wait::WNOHANG) {
            Ok(None) | Ok(Some((_, WaitStatus::Stopped { .. }))) | Ok(Some((_, WaitStatus::Continued))) => true,
            Ok(Some(_)) | Err(_) => false,
        });
        if Instant::now() > deadline {
            log::warn!("tasks {left:?} did not die after SIGKILL");
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where a stopped thread of the tree is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Running,
    Trap,
    Exited,
}

/// Drives the tree from the root's release until every task and thread
/// is on its trap, then completes and releases all of them.
fn run_tree(
    tasks: &[TaskImages],
    all: &[Prepared],
    tracees: &mut BTreeMap<Pid, Tracee>,
    go: &OwnedFd,
    verifier: &mut Option<std::thread::JoinHandle<Result<()>>>,
    opened: &mut files::Opened,
    before_release: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let root = all[0].pid;
    // What each expected tid is: (task index, is leader).
    let mut expect: BTreeMap<Pid, (usize, bool)> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        for &tid in &t.pstree.threads {
            expect.insert(Pid(tid as i32), (i, tid == t.pstree.pid));
        }
    }
    let mut state: BTreeMap<Pid, At> = expect.keys().map(|&p| (p, At::Running)).collect();
    // Group helpers: (helper, index of the task that forked it).
    let helpers: BTreeMap<Pid, usize> =
        all.iter().enumerate().flat_map(|(i, p)| p.helpers.iter().map(move |&h| (h, i))).collect();
    // Session helpers: they fork their members and exit by themselves.
    let session_helpers: BTreeSet<Pid> = all.iter().flat_map(|p| p.session_helpers.iter().map(|h| h.0)).collect();

    // Each process goes into its cgroups and gets its oom_score_adj at its
    // first stop, before it forks or maps anything (see objects::cgroup).
    let mounts = crate::objects::cgroup::Mounts::read()?;
    let place = |i: usize| -> Result<()> {
        let (pid, process) = (all[i].pid, tasks[i].process());
        crate::fault::check(crate::fault::Fault::RestoreCgroup)?;
        crate::objects::cgroup::restore(pid, &process.cgroups, &mounts)?;
        if let Some(f) = process.coredump_filter {
            task::restore_coredump_filter(pid, f)?;
        }
        task::restore_oom_score_adj(pid, process.oom_score_adj)
    };
    let mut placed: BTreeSet<Pid> = BTreeSet::new();
    place(0)?;
    placed.insert(root);
    let rseq = ptrace::get_rseq_config(root).unwrap_or_default();
    let mut msg = [0u8; 16];
    msg[0..8].copy_from_slice(&rseq.rseq_abi_pointer.to_ne_bytes());
    msg[8..12].copy_from_slice(&rseq.rseq_abi_size.to_ne_bytes());
    msg[12..16].copy_from_slice(&rseq.signature.to_ne_bytes());
    crate::sys::fs::write_all(go.as_fd(), &msg).ctx(root, "release the new task")?;
    ptrace::cont(root, 0).ctx(root, "PTRACE_CONT")?;

    let deadline = Instant::now() + RESTORE_TIMEOUT;
    while state.values().any(|s| *s == At::Running) {
        let Some((pid, st)) =
            wait::wait4(Pid(-1), wait::WALL | wait::WNOHANG | wait::WNOTHREAD).ctx_global("wait for the tree")?
        else {
            if Instant::now() > deadline {
                let late: Vec<Pid> = state.iter().filter(|(_, s)| **s == At::Running).map(|(p, _)| *p).collect();
                return Err(Error::new(format!("restore timed out waiting for {late:?}")));
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        if session_helpers.contains(&pid) {
            match st {
                WaitStatus::Stopped { .. } => {
                    tracees.entry(pid).or_insert_with(|| Tracee::adopted(pid));
                    ptrace::cont(pid, 0).ctx(pid, "PTRACE_CONT")?;
                }
                // Its parent reaps it.
                WaitStatus::Exited(0) => {
                    if let Some(t) = tracees.remove(&pid) {
                        std::mem::forget(t);
                    }
                }
                _ => return Err(Error::task(pid, format!("the helper of session {pid} ended: {st:?}"))),
            }
            continue;
        }
        if helpers.contains_key(&pid) {
            match st {
                WaitStatus::Stopped { .. } => {
                    tracees.entry(pid).or_insert_with(|| Tracee::adopted(pid));
                    ptrace::cont(pid, 0).ctx(pid, "PTRACE_CONT")?;
                }
                _ => return Err(Error::task(pid, format!("the helper of process group {pid} ended: {st:?}"))),
            }
            continue;
        }
        let Some(&(ti, leader)) = expect.get(&pid) else {
            if fork::used_fallback() {
                // A child that got the wrong pid through ns_last_pid (some
                // other process forked in between): it exits by itself and
                // its parent tries again. Let it go.
                if let WaitStatus::Stopped { .. } = st {
                    let _ = ptrace::detach(pid, 0);
                }
                log::debug!("task {pid} got a pid the tree does not have: let go, its parent forks again");
                continue;
            }
            return Err(Error::task(pid, format!("unexpected task in the restored tree ({st:?})")));
        };
        let zombie = all[ti].zombie.is_some();
        // Attached automatically when its parent forked it (or the blob cloned it).
        tracees.entry(pid).or_insert_with(|| Tracee::adopted(pid));
        match st {
            WaitStatus::Stopped { sig: 5, event: 0 } => {
                let regs = tracees[&pid].regs().ctx(pid, "read registers")?;
                let base = all[ti].region;
                let want = base + if leader { blobs::restorer::TRAP } else { blobs::restorer::THREAD_TRAP } as u64 + 1;
                if regs.rip != want {
                    return Err(Error::task(pid, format!("stopped on a trap at {:#x}, expected {want:#x}", regs.rip)));
                }
                let owner = tasks[ti].pstree.pid;
                log::debug!(task = owner; "task {owner}: thread {pid} stopped on its trap, restorer done");
                if leader {
                    // A blob that failed has not created its threads: do
                    // not wait for them.
                    let plan = read_report(&all[ti])?;
                    if plan.pages_helper_stack != 0 {
                        match plan.pages_helper_tid {
                            0 => {
                                log::debug!(task = owner; "task {owner}: pages read on one thread (no helper could be made)")
                            }
                            t => log::debug!(task = owner; "task {owner}: pages read on two threads (helper {t})"),
                        }
                    }
                }
                state.insert(pid, At::Trap);
            }
            WaitStatus::Stopped { sig, event: 0 } if sig == SIGCHLD => {
                // A zombie child announced itself: the parent gets it as usual.
                ptrace::cont(pid, sig).ctx(pid, "PTRACE_CONT")?;
            }
            WaitStatus::Stopped { sig, event: 0 }
                if leader && all[ti].children.iter().any(|&c| all[c].zombie.is_some() && all[c].exit_signal == sig) =>
            {
                // A zombie child's exit signal other than SIGCHLD: its
                // parent had it (or has it pending, restored with the
                // queue) at dump, so this copy is dropped.
                ptrace::cont(pid, 0).ctx(pid, "PTRACE_CONT")?;
            }
            WaitStatus::Stopped { sig, event: 0 } if zombie => {
                // A zombie dying by its signal: let it.
                ptrace::cont(pid, sig).ctx(pid, "PTRACE_CONT")?;
            }
            WaitStatus::Stopped { sig, event: 0 } => {
                let rip = tracees[&pid].regs().map(|r| r.rip).unwrap_or(0);
                return Err(Error::task(pid, format!("got signal {sig} at {rip:#x} while being restored")));
            }
            WaitStatus::Stopped { event, .. } => {
                // Fork/clone events, the first stop of a new task or thread.
                if event == ptrace::PTRACE_EVENT_STOP && leader && !zombie && placed.insert(pid) {
                    place(ti)?;
                }
                ptrace::cont(pid, 0).ctx(pid, "PTRACE_CONT")?;
            }
            WaitStatus::Exited(code) if zombie => {
                let _ = code;
                state.insert(pid, At::Exited);
                if let Some(t) = tracees.remove(&pid) {
                    std::mem::forget(t);
                }
            }
            WaitStatus::Signaled(_, _) if zombie => {
                state.insert(pid, At::Exited);
                if let Some(t) = tracees.remove(&pid) {
                    std::mem::forget(t);
                }
            }
            WaitStatus::Exited(code) if code == fork::EXIT_WRONG_PID && fork::used_fallback() => {
                // Not the task of this pid yet: a child that got it by
                // mistake through ns_last_pid. Its parent reaps it and
                // forks the right one again.
                if let Some(t) = tracees.remove(&pid) {
                    std::mem::forget(t);
                }
                log::debug!("task {pid}: a child that took this pid by mistake gave it up");
            }
            WaitStatus::Exited(code) => {
                if let Some(t) = tracees.remove(&pid) {
                    std::mem::forget(t);
                }
                if code == fork::EXIT_FORK {
                    if let Some(e) = held_child_pid(all, pid) {
                        return Err(e);
                    }
                }
                return Err(Error::task(
                    pid,
                    format!("{} (status {code}) while being restored", fork::exit_reason(code)),
                ));
            }
            WaitStatus::Signaled(sig, _) => {
                if let Some(t) = tracees.remove(&pid) {
                    std::mem::forget(t);
                }
                return Err(Error::task(pid, format!("killed by signal {sig} while being restored")));
            }
            WaitStatus::Continued => {}
        }
    }

    // Nothing runs before the page data is known to be what was dumped.
    if let Some(v) = verifier.take() {
        v.join().map_err(|_| Error::new("the page-data check panicked"))??;
    }
    crate::fault::check(crate::fault::Fault::RestoreAtTraps)?;
    // What needs every task to exist: queued data with its senders'
    // credentials, connections made after the queues are filled.
    opened.complete()?;
    // The groups exist now: their helpers go, reaped by the task that
    // forked them (on its trap, by a remote wait4).
    for (&h, &owner) in &helpers {
        crate::sys::signal::kill(h, 9).ctx(h, "kill the group helper")?;
        if let Some(t) = tracees.remove(&h) {
            std::mem::forget(t);
        }
        let _ = wait::wait4(h, wait::WALL);
        let parent = tracees.get_mut(&all[owner].pid).ok_or_else(|| Error::task(h, "helper's parent not traced"))?;
        parent
            .remote_syscall_ok(Sysno::wait4, [h.0 as u64, 0, wait::WALL as u64, 0, 0, 0], "reap the group helper")
            .ctx(all[owner].pid, "reap the group helper")?;
        log::debug!(task = all[owner].pid.0; "task {}: group helper {h} reaped", all[owner].pid);
    }
    // A process whose first stop went by unnoticed is placed now.
    for (i, p) in all.iter().enumerate() {
        if p.zombie.is_none() && placed.insert(p.pid) {
            place(i)?;
        }
    }
    // Every blob is on its trap: check the reports before changing anything.
    let mut plans = Vec::with_capacity(tasks.len());
    for p in all {
        if p.zombie.is_some() {
            plans.push(None);
            continue;
        }
        let plan = read_report(p)?;
        check_threads(p, &plan)?;
        plans.push(Some(plan));
    }
    let mut late_seen = files::LateSeen::default();
    for (i, t) in tasks.iter().enumerate() {
        let (p, Some(_)) = (&all[i], &plans[i]) else { continue };
        let pid = p.pid;
        let pages: Vec<_> = p.pages.iter().map(|p| p.fd()).collect();
        mm::write_late_pages(pid, &pages, &p.late_pages)?;
        for r in &p.parent_pages {
            let pages: Vec<_> = r.pages.iter().map(|p| p.fd()).collect();
            mm::write_late_pages(pid, &pages, &r.runs)?;
        }
        for (k, core) in t.cores.iter().enumerate().skip(1) {
            let tid = Pid(core.tid as i32);
            let scratch = p.thread_stacks[k - 1];
            let tr = tracees.get_mut(&tid).ok_or_else(|| Error::task(tid, "thread never appeared"))?;
            crate::fault::check(crate::fault::Fault::RestoreThread)?;
            thread::finish(tr, pid, &core.thread, scratch)?;
        }
        let leader = tracees.get_mut(&pid).expect("leader traced");
        files::open_late(leader, p.plan_addr, &p.late_files, &mut late_seen)?;
    }
    // The first (task, fd) holding each description.
    let mut holders = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        for f in &t.fds {
            holders.entry(f.id).or_insert((all[i].pid, f.fd as i32));
        }
    }
    for (i, t) in tasks.iter().enumerate() {
        let (p, Some(plan)) = (&all[i], &plans[i]) else { continue };
        let pid = p.pid;
        let leader = tracees.get_mut(&pid).expect("leader traced");
        // A shared table's members have their owner's descriptors: added once.
        if !p.clone_flags.contains(crate::sys::clone::CloneFlags::CLONE_FILES) {
            crate::objects::epoll::add_late(leader, p.plan_addr, &t.fds, opened, &late_seen, &holders)?;
        }
        if let Some(from) = p.close_helpers {
            // Every restorer of the group is done with the helpers (all
            // are on their traps): the table is the tree's alone now.
            leader
                .remote_syscall_ok(Sysno::close_range, [from as u64, u32::MAX as u64, 0, 0, 0, 0], "close_range")
                .ctx(pid, "close the restore's descriptors in the shared table")?;
        }
        crate::fault::check(crate::fault::Fault::RestoreLeader)?;
        finish_leader(leader, t, p.plan_addr, plan)?;
        log::debug!(
            task = pid.0;
            "task {pid}: registers, xsave state and masks of {} threads set, restorer unmapped",
            t.cores.len()
        );
    }
    crate::objects::epoll::check_late_done(opened)?;
    crate::fault::check(crate::fault::Fault::RestoreRelease)?;
    before_release()?;
    // Release the whole tree: threads, then leaders, children first.
    for (i, t) in tasks.iter().enumerate().rev() {
        if all[i].zombie.is_some() {
            continue;
        }
        let stopped = t.process().state == TaskState::Stopped;
        let stop_signal = match t.process().stop_signal {
            0 => 19, // SIGSTOP
            sig => sig,
        };
        if stopped {
            // The stop signal goes to one thread that does not block it
            // (there is one: a thread took it at dump); it stops the whole
            // group, and the others, detached without a signal, join that
            // stop. Sent to a thread that blocks it, it would only wait in
            // that thread's queue (a Ctrl-Z'd vim: its timer thread blocks
            // SIGTSTP).
            let order = stop_order(&t.pstree.threads, &t.cores, stop_signal);
            for (k, &tid) in order.iter().enumerate() {
                let tr = tracees.remove(&Pid(tid as i32)).expect("traced");
                let sig = if k == 0 { stop_signal } else { 0 };
                tr.detach_stopped(sig).ctx(Pid(tid as i32), "detach stopped")?;
            }
        } else {
            for &tid in t.pstree.threads.iter().rev() {
                let tr = tracees.remove(&Pid(tid as i32)).expect("traced");
                tr.detach().ctx(Pid(tid as i32), "detach")?;
            }
        }
        let pid = t.pstree.pid;
        log::debug!(task = pid; "task {pid}: released{}", if stopped { " (stopped, as dumped)" } else { "" });
    }
    Ok(())
}

/// The order in which the threads of a task restored stopped by `sig` are
/// let go: first the first of them (the leader, if it can) that does not
/// block `sig`, then the others.
fn stop_order(tids: &[u32], cores: &[CoreEntry], sig: i32) -> Vec<u32> {
    let bit = 1u64 << (sig - 1);
    let first = cores.iter().position(|c| c.thread.sigmask & bit == 0).unwrap_or(0);
    let mut order = vec![tids[first]];
    order.extend(tids.iter().enumerate().filter(|&(i, _)| i != first).map(|(_, &t)| t));
    order
}

/// Reads back the created threads' own reports (their credentials).
fn check_threads(p: &Prepared, plan: &rp::Plan) -> Result<()> {
    if plan.threads.nr == 0 {
        return Ok(());
    }
    let size = std::mem::size_of::<rp::ThreadEntry>();
    let len = size * plan.threads.nr as usize;
    let back = crate::sys::process_vm::read_vec(p.pid, p.plan_addr + plan.threads.off, len)
        .ctx(p.pid, "read the threads' reports")?;
    if back.len() < len {
        return Err(Error::task(p.pid, "short read of the threads' reports"));
    }
    for chunk in back.chunks_exact(size) {
        // SAFETY: ThreadEntry is plain data and `chunk` holds exactly one.
        let e: rp::ThreadEntry = unsafe { std::ptr::read_unaligned(chunk.as_ptr() as *const rp::ThreadEntry) };
        if e.ret < 0 && e.failed_step == rp::THREAD_MEMPOLICY_STEP {
            return Err(Error::task(
                Pid(e.tid),
                format!(
                    "set_mempolicy {}: {}",
                    mm::describe_mempolicy(e.mempolicy.mode, &e.mempolicy.nodes),
                    Errno::new(-e.ret as i32)
                ),
            ));
        }
        if e.ret < 0 {
            return Err(Error::task(
                Pid(e.tid),
                format!("setting its credentials failed at step {}: {}", e.failed_step, Errno::new(-e.ret as i32)),
            ));
        }
    }
    Ok(())
}

/// Reads back and checks the restorer's report of a task.
fn read_report(p: &Prepared) -> Result<rp::Plan> {
    let pid = p.pid;
    let back = crate::sys::process_vm::read_vec(pid, p.plan_addr, std::mem::size_of::<rp::Plan>())
        .ctx(pid, "read the restorer's report")?;
    if back.len() < std::mem::size_of::<rp::Plan>() {
        return Err(Error::task(pid, "short read of the restorer's report"));
    }
    // SAFETY: Plan is plain data and `back` holds at least its size.
    let plan: rp::Plan = unsafe { std::ptr::read_unaligned(back.as_ptr() as *const rp::Plan) };
    let f = plan.failure;
    if f.ret < 0 || f.step != rp::Step::Finish as u32 {
        let errno = if f.ret < 0 { Errno::new(-f.ret as i32).to_string() } else { "did not finish".into() };
        // What the detail is depends on the step.
        let detail = match f.step {
            s if s == rp::Step::Files as u32 => format!("fd {}", f.detail),
            s if s == rp::Step::SigActions as u32 || s == rp::Step::PendingSignals as u32 => {
                format!("signal {}", f.detail)
            }
            s if s == rp::Step::Rlimits as u32 => format!("resource {}", f.detail),
            s if s == rp::Step::PosixTimers as u32 => format!("timer {}", f.detail),
            s if s == rp::Step::Threads as u32 => format!("thread {}", f.detail as i64),
            s if s == rp::Step::Aio as u32 && f.ret == rp::AIO_MISMATCH => {
                return Err(Error::task(
                    pid,
                    format!(
                        "restorer failed at step '{}': io_setup made a ring for AIO context {:#x} that differs \
                         from the dumped one (size or context slot): it cannot be recreated",
                        rp::Step::name(f.step),
                        f.detail
                    ),
                ));
            }
            s if s == rp::Step::Aio as u32 => format!("AIO context {:#x}", f.detail),
            _ => format!("detail {:#x}", f.detail),
        };
        return Err(Error::task(
            pid,
            format!("restorer failed at step '{}' ({detail}): {errno}", rp::Step::name(f.step)),
        ));
    }
    Ok(plan)
}

/// Completes the leader of a task whose blob is on its trap (its threads
/// are done already: their stacks are in the region this unmaps).
fn finish_leader(t: &mut Tracee, ti: &TaskImages, plan_addr: u64, plan: &rp::Plan) -> Result<()> {
    let pid = t.pid();
    let core = &ti.cores[0];
    // A SIGCHLD that restoring zombie children or group helpers raised is
    // not the task's: take it off the queue unless one was pending at dump.
    let process = ti.process();
    let had_sigchld = process.shared_pending.iter().chain(&core.thread.pending).any(|s| s.signo() == SIGCHLD);
    if !had_sigchld {
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&(1u64 << (SIGCHLD - 1)).to_ne_bytes());
        b.extend_from_slice(&[0u8; 16]);
        let scratch = plan_addr + 256;
        crate::sys::process_vm::write_all(pid, scratch, &b).ctx(pid, "write scratch")?;
        let r = t
            .remote_syscall(Sysno::rt_sigtimedwait, [scratch, 0, scratch + 8, 8, 0, 0])
            .ctx(pid, "dequeue a stray SIGCHLD")?;
        if r == SIGCHLD as i64 {
            log::debug!(task = pid.0; "task {pid}: dropped the SIGCHLD its restore raised");
        }
    }
    // Registers as dumped (restart states already rewritten at dump).
    let mut target: UserRegs = (&core.thread.regs).into();
    target.orig_rax = u64::MAX;
    if let Some(sleep) = &core.thread.sleep {
        task::rearm_sleep(t, sleep, plan_addr + 512, &mut target)?;
    }
    t.set_regs(&target).ctx(pid, "PTRACE_SETREGS")?;
    // SIGTRAP's action was left alone by the blob (its trap would have reset
    // it); set here and from now on without traps (PTRACE_SYSCALL), which
    // would reset an ignored SIGTRAP again.
    if let Some(a) = process.sigactions.get(SIGTRAP - 1) {
        if a.handler != 0 || a.flags.bits() != 0 || a.mask != 0 {
            let act = [a.handler, a.flags.bits(), a.restorer, a.mask];
            let bytes: Vec<u8> = act.iter().flat_map(|w| w.to_ne_bytes()).collect();
            crate::sys::process_vm::write_all(pid, plan_addr, &bytes).ctx(pid, "write SIGTRAP action")?;
            t.remote_syscall_quiet_ok(
                Sysno::rt_sigaction,
                [SIGTRAP as u64, plan_addr, 0, 8, 0, 0],
                "restore SIGTRAP action",
            )
            .ctx(pid, "restore the SIGTRAP action")?;
        }
    }
    // The pending SIGTRAPs the blob left out: after our last trap, which
    // would take them, with every signal blocked so that they stay queued.
    t.set_sigmask(u64::MAX).ctx(pid, "PTRACE_SETSIGMASK")?;
    thread::queue_sigtraps(t, pid, &process.shared_pending, true, plan_addr)?;
    thread::queue_sigtraps(t, pid, &core.thread.pending, false, plan_addr)?;
    t.remote_syscall_quiet_ok(
        Sysno::munmap,
        [plan.region_start, plan.region_end - plan.region_start, 0, 0, 0, 0],
        "unmap the restorer",
    )
    .ctx(pid, "unmap the restorer")?;
    ptrace::set_regset(pid, NT_X86_XSTATE, &core.thread.xsave.area).ctx(pid, "PTRACE_SETREGSET NT_X86_XSTATE")?;
    task::restore_sched(pid, &core.thread.sched)?;
    t.set_sigmask(core.thread.sigmask).ctx(pid, "PTRACE_SETSIGMASK")?;
    Ok(())
}
