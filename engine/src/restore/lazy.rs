//! Lazy pages (`restore --lazy-pages`): the tree runs before its memory is
//! all in place, and a server copies the pages in, each on its first touch
//! or in the background, until none is left.
//!
//! - The engine leaves out of the restorer's reads the pages of the plain
//!   private anonymous VMAs that hold enough data (`mm::lazy_eligible`),
//!   and sends their runs (address, length, stripe, offset in the task's
//!   pages image) to the server before any task exists ([`LazyPlan`]).
//! - Each restorer registers those VMAs, whole, with a new userfaultfd in
//!   missing mode and sends it, with its pid, over a socket every task
//!   inherits (step "lazy pages"). The VMAs' other pages were never
//!   present: a touch of one is answered with the zero page.
//! - The server is crtools itself run again (`crtools lazy-pages-server`,
//!   a command `--help` does not list), in its own session, so it outlives
//!   a detached restore. It answers faults with UFFDIO_COPY of an aligned
//!   window around the page (UFFDIO_ZEROPAGE for a page the images do not
//!   hold), and between faults copies the rest in 1 MiB runs. A VMA set's
//!   userfaultfd is closed once all its pages are in: the kernel then
//!   forgets the registration, and the task runs as if restored at once.
//! - The address space may change while pages wait: the userfaultfd asks
//!   for fork (the child gets its own userfaultfd and the same waiting
//!   pages), mremap (waiting pages move), MADV_DONTNEED/REMOVE and munmap
//!   (waiting pages are dropped: the task reads zeros there, as it would).
//!   While such an event is not read, UFFDIO_COPY fails with EAGAIN; the
//!   server reads the events first and tries again, so it never copies
//!   into a range the task has just emptied or moved.
//! - The page data is checked against the inventory in the server, in the
//!   background (the engine checks everything else before the tree runs,
//!   as without lazy pages). A mismatch kills the restored tasks.
//!
//! The restored tasks depend on the server until it has copied the last
//! page: if it is killed before, the kernel drops the registrations and
//! the pages not copied yet read as zeros. The server protects itself from
//! the OOM killer and from its old terminal (setsid), and logs how long
//! the restore took to be complete.
use crate::error::{Context, Error, Result};
use crate::image::pagemap::PagemapHead;
use crate::image::ImageDirReader;
use crate::sys::event::{self, PollFd, POLLIN};
use crate::sys::uffd::{self, Event, MSG_SIZE};
use crate::sys::{Errno, Pid};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

const PAGE: u64 = 4096;
/// What one fault brings in: the aligned window around the page, within
/// its run (fewer faults for a task that walks its memory).
const FAULT_WINDOW: u64 = 64 * 1024;
/// What one background copy brings in (then faults are looked at again).
const BACKGROUND_CHUNK: u64 = 1 << 20;
/// The descriptor number the server finds its socket at.
pub const SERVER_SOCK_FD: RawFd = 3;
/// What the server answers once it holds every task's userfaultfd.
const READY: &[u8] = b"ready";
/// The server's command name (not listed by `--help`).
pub const SERVER_COMMAND: &str = "lazy-pages-server";

/// One run of pages the server copies in: `len` bytes at `vaddr`, from
/// `file_off` of stripe `stripe` of the task's pages image in source
/// `source` (see [`LazyTask::sources`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyRun {
    pub vaddr: u64,
    pub len: u64,
    pub source: u8,
    pub stripe: u8,
    pub file_off: u64,
}

/// Where a task's pages image is: the dump's own directory (`dir` None)
/// or a parent dump's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazySource {
    pub dir: Option<PathBuf>,
    /// The task's pagemap head there.
    pub head: PagemapHead,
}

/// A task whose pages are lazy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyTask {
    pub pid: i32,
    /// Its pages images: the dump's first, then parent dumps' (checked
    /// by the engine already, before anything was made).
    pub sources: Vec<LazySource>,
    pub runs: Vec<LazyRun>,
}

/// What the engine tells the server before the tree is made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyPlan {
    pub tasks: Vec<LazyTask>,
}

/// How to start the server: the crtools executable and the global options
/// it gets before its command (log level and file).
#[derive(Clone, Debug)]
pub struct ServerCommand {
    pub exe: PathBuf,
    pub args: Vec<std::ffi::OsString>,
}

/// The engine's handle on a started server. Dropped without
/// [`Server::release`] (the restore failed), it kills the server.
pub struct Server {
    child: Option<std::process::Child>,
    /// The tasks' end of the socket, once placed for inheritance.
    task_end: Option<OwnedFd>,
    /// The server's end, until it is started.
    server_end: Option<OwnedFd>,
    /// The plan sent has tasks: the server answers [`READY`].
    serving: bool,
}

impl Server {
    /// The socket the tasks will send their userfaultfds over (the server
    /// starts once the plans say it has work: [`Server::start`]).
    pub fn new() -> Result<Server> {
        use crate::sys::socket::{socketpair, SockFlags, SockType};
        let (task_end, server_end) =
            socketpair(linux_raw_sys::net::AF_UNIX, SockType::SOCK_SEQPACKET, SockFlags::SOCK_CLOEXEC, 0)
                .ctx_global("socketpair for the lazy-pages server")?;
        Ok(Server { child: None, task_end: Some(task_end), server_end: Some(server_end), serving: false })
    }

    /// Starts the server for the images in `dir` with `plan`, unless the
    /// plan is empty; its pid is none of `avoid` (the pids the tree is
    /// about to take).
    pub fn start(&mut self, cmd: &ServerCommand, dir: &Path, avoid: &HashSet<i32>, plan: &LazyPlan) -> Result<()> {
        let theirs = self.server_end.take().expect("started once");
        if plan.tasks.is_empty() {
            log::info!("lazy pages: no mapping large enough, nothing is lazy");
            return Ok(());
        }
        let dir = std::path::absolute(dir).ctx_global("the images directory")?;
        let bytes = postcard::to_allocvec(plan).map_err(|e| Error::new(format!("encode the lazy-pages plan: {e}")))?;
        for _ in 0..16 {
            let mut c = std::process::Command::new(&cmd.exe);
            c.args(&cmd.args)
                .arg(SERVER_COMMAND)
                .arg("-D")
                .arg(&dir)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let raw = theirs.as_raw_fd();
            // SAFETY: the closure runs in the forked child before execve and
            // makes one raw syscall (dup3), which is async-signal-safe.
            unsafe {
                use std::os::unix::process::CommandExt;
                c.pre_exec(move || {
                    event::dup3_raw(raw, SERVER_SOCK_FD)
                        .map_err(|e| std::io::Error::from_raw_os_error(e.into_raw()))?;
                    // Nothing else of crtools' descriptors: the tree's files
                    // (a listening socket, a pipe's write end) must not stay
                    // open in the server.
                    event::close_from_raw(SERVER_SOCK_FD + 1)
                        .map_err(|e| std::io::Error::from_raw_os_error(e.into_raw()))
                });
            }
            let mut child = c.spawn().map_err(|e| Error::new(format!("start the lazy-pages server: {e}")))?;
            let pid = child.id() as i32;
            if avoid.contains(&pid) {
                // It took a pid the tree needs: another one.
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            log::info!("lazy pages: served by pid {pid}");
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped");
            self.child = Some(child);
            stdin.write_all(&bytes).map_err(|e| Error::new(format!("send the lazy-pages plan: {e}")))?;
            self.serving = true;
            return Ok(());
        }
        Err(Error::new("start the lazy-pages server: every pid it got is one the tree needs"))
    }

    /// Moves the tasks' end of the socket to `base` or above (where the
    /// tree inherits the engine's descriptors); returns its number.
    pub fn place(&mut self, base: RawFd) -> Result<RawFd> {
        let fd = self.task_end.take().expect("placed once");
        let moved = crate::sys::fs::fcntl_dupfd_cloexec(fd.as_fd(), base)
            .map_err(|e| Error::new(format!("move the lazy-pages socket above fd {base}: {e}")))?;
        let n = moved.as_raw_fd();
        self.task_end = Some(moved);
        Ok(n)
    }

    /// Waits (up to 10 s) until the server says it holds every task's
    /// userfaultfd and their pages images are open: before that, a tree
    /// let go could find its pages missing for good (a server that died
    /// drops the registrations, and the pages read as zeros).
    pub fn wait_ready(&self) -> Result<()> {
        let Some(sock) = self.task_end.as_ref().filter(|_| self.serving) else { return Ok(()) };
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new("the lazy-pages server did not take the tasks' pages in 10 s"));
            }
            let ready = event::poll_for(sock.as_raw_fd(), POLLIN, left.as_millis().clamp(1, 1000) as i32)
                .ctx_global("wait for the lazy-pages server")?;
            if ready == 0 {
                continue;
            }
            let mut b = [0u8; 8];
            let n = crate::sys::socket::recv(sock.as_fd(), &mut b, crate::sys::socket::MsgFlags::empty())
                .ctx_global("hear from the lazy-pages server")?;
            return match &b[..n] {
                READY => Ok(()),
                _ => Err(Error::new("the lazy-pages server ended before it took the tasks' pages")),
            };
        }
    }

    /// The restore succeeded: the server goes on by itself.
    pub fn release(mut self) {
        self.task_end = None;
        // Not waited for: it ends when the last page is in.
        self.child = None;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The server's view of one task: its own lazy runs, and the runs of
/// its parent dumps' pages inside its lazy VMAs, which leave `parents`
/// (the engine writes the rest late, as without lazy pages).
pub fn task(
    pid: Pid,
    head: &PagemapHead,
    lazy: &crate::objects::mm::Lazy,
    parents: &mut [crate::objects::mem_track::ParentRuns],
) -> LazyTask {
    let mut sources = vec![LazySource { dir: None, head: head.clone() }];
    let mut runs: Vec<LazyRun> = lazy
        .runs
        .iter()
        .map(|r| LazyRun { vaddr: r.vaddr, len: r.len, source: 0, stripe: r.stripe as u8, file_off: r.file_off })
        .collect();
    for p in parents.iter_mut() {
        let source = sources.len() as u8;
        let (inside, outside) = split_runs(&p.runs, &lazy.vmas);
        if inside.is_empty() {
            continue;
        }
        p.runs = outside;
        runs.extend(inside.iter().map(|r| LazyRun {
            vaddr: r.vaddr,
            len: r.len,
            source,
            stripe: r.stripe as u8,
            file_off: r.file_off,
        }));
        let dir = std::path::absolute(&p.dir).unwrap_or_else(|_| p.dir.clone());
        sources.push(LazySource { dir: Some(dir), head: p.head.clone() });
    }
    LazyTask { pid: pid.0, sources, runs }
}

/// `runs` cut at the edges of `ranges` (sorted, disjoint): the parts
/// inside one, and the parts outside all.
fn split_runs(
    runs: &[restorer_plan::PageRun],
    ranges: &[[u64; 2]],
) -> (Vec<restorer_plan::PageRun>, Vec<restorer_plan::PageRun>) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    let part = |r: &restorer_plan::PageRun, s: u64, e: u64| restorer_plan::PageRun {
        vaddr: s,
        len: e - s,
        file_off: r.file_off + (s - r.vaddr),
        stripe: r.stripe,
        _pad: 0,
    };
    for r in runs {
        let end = r.vaddr + r.len;
        let mut at = r.vaddr;
        for &[s, e] in ranges.iter().filter(|&&[s, e]| s < end && e > r.vaddr) {
            if s > at {
                outside.push(part(r, at, s));
            }
            let (a, b) = (s.max(at), e.min(end));
            inside.push(part(r, a, b));
            at = b;
        }
        if at < end {
            outside.push(part(r, at, end));
        }
    }
    (inside, outside)
}

/// Pages waiting in one address space: start -> (end, where from (source
/// << 8 | stripe), offset of the start in that stripe), ranges disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    map: BTreeMap<u64, (u64, u16, u64)>,
}

impl Waiting {
    fn from_runs(runs: &[LazyRun]) -> Waiting {
        let mut w = Waiting::default();
        for r in runs.iter().filter(|r| r.len > 0) {
            w.map.insert(r.vaddr, (r.vaddr + r.len, (r.source as u16) << 8 | r.stripe as u16, r.file_off));
        }
        w
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.map.iter().map(|(s, (e, _, _))| e - s).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Cuts the range holding `at` in two there.
    fn split(&mut self, at: u64) {
        let Some((&s, &(e, k, off))) = self.map.range(..at).next_back() else { return };
        if e > at {
            self.map.insert(s, (at, k, off));
            self.map.insert(at, (e, k, off + (at - s)));
        }
    }

    /// Takes `[start, end)` out; returns what was waiting there.
    pub fn take(&mut self, start: u64, end: u64) -> Vec<(u64, u64, u16, u64)> {
        self.split(start);
        self.split(end);
        let keys: Vec<u64> = self.map.range(start..end).map(|(&s, _)| s).collect();
        keys.into_iter()
            .map(|s| {
                let (e, k, off) = self.map.remove(&s).expect("key just listed");
                (s, e, k, off)
            })
            .collect()
    }

    /// Puts back what [`Waiting::take`] gave.
    fn put(&mut self, s: u64, e: u64, k: u16, off: u64) {
        if e > s {
            self.map.insert(s, (e, k, off));
        }
    }

    /// mremap moved `[from, from + len)` to `to`.
    pub fn remap(&mut self, from: u64, to: u64, len: u64) {
        let moved = self.take(from, from + len);
        self.take(to, to + len);
        for (s, e, k, off) in moved {
            self.put(s - from + to, e - from + to, k, off);
        }
    }

    /// The range holding the page at `addr`, if it waits.
    fn holding(&self, addr: u64) -> Option<(u64, u64)> {
        let (&s, &(e, _, _)) = self.map.range(..=addr).next_back()?;
        (addr < e).then_some((s, e))
    }

    /// The first waiting range, at most `max` bytes of it.
    fn first(&self, max: u64) -> Option<(u64, u64)> {
        let (&s, &(e, _, _)) = self.map.iter().next()?;
        Some((s, e.min(s + max)))
    }
}

/// One address space the server serves.
struct Mm {
    uffd: OwnedFd,
    /// The restored task it came from (a forked child's is its parent's).
    task: usize,
    pid: i32,
    waiting: Waiting,
    /// The address space is gone (the task exited or was killed).
    gone: bool,
    /// The process it is, when known: the restored task's own pid; for a
    /// child forked since (its pid is not in the fork event), the process
    /// of the first thread that faulted in it.
    own_pid: Option<i32>,
}

/// What happened to a copy.
enum Copied {
    Done,
    /// An event must be read first (EAGAIN): what was not copied waits.
    Later,
    /// The address space is gone.
    Gone,
}

/// Counters for the final log line.
#[derive(Default)]
struct Counts {
    faults: u64,
    fault_pages: u64,
    zero_pages: u64,
    background_pages: u64,
    forks: u64,
}

/// `crtools lazy-pages-server -D DIR`: reads the plan from stdin, the
/// tasks' userfaultfds from [`SERVER_SOCK_FD`], and serves until every
/// page is in. Returns once done (an error: the restored tasks were
/// killed or are gone).
pub fn serve(dir: &Path) -> Result<()> {
    let started = Instant::now();
    let _ = crate::sys::misc::setsid();
    // It holds pages the tasks cannot do without.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let plan: LazyPlan = {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::io::stdin().lock().read_to_end(&mut bytes).ctx_global("read the lazy-pages plan")?;
        postcard::from_bytes(&bytes).map_err(|e| Error::new(format!("decode the lazy-pages plan: {e}")))?
    };
    if plan.tasks.is_empty() {
        return Ok(());
    }
    // SAFETY: the engine put the socket at this number for us (pre_exec).
    let sock = unsafe { OwnedFd::from_raw_fd(SERVER_SOCK_FD) };
    let images = ImageDirReader::open(dir).ctx_global("open images")?;
    let mut pages = Vec::with_capacity(plan.tasks.len());
    for t in &plan.tasks {
        let mut sources = Vec::with_capacity(t.sources.len());
        for src in &t.sources {
            let opened = match &src.dir {
                None => images.open_task_pages(&src.head),
                Some(d) => ImageDirReader::open(d).and_then(|d| d.open_task_pages(&src.head)),
            };
            sources.push(opened.ctx(Pid(t.pid), "open the pages image")?);
        }
        pages.push(sources);
    }
    let verifier = {
        let dir = dir.to_path_buf();
        let heads: Vec<(i32, PagemapHead)> = plan
            .tasks
            .iter()
            .flat_map(|t| t.sources.iter().filter(|s| s.dir.is_none()).map(|s| (t.pid, s.head.clone())))
            .collect();
        std::thread::Builder::new()
            .name("verify-pages".into())
            .spawn(move || -> Result<()> {
                let d = ImageDirReader::open(&dir).ctx_global("open images")?;
                for (pid, head) in heads {
                    for mut r in d.open_task_pages(&head).ctx(Pid(pid), "open the pages image")? {
                        r.verify().ctx(Pid(pid), "verify its pages image")?;
                    }
                }
                Ok(())
            })
            .ctx_global("start the page-data check")?
    };
    let mut s = Serving {
        plan: &plan,
        pages,
        mms: Vec::new(),
        counts: Counts::default(),
        buf: vec![0u8; BACKGROUND_CHUNK as usize],
        next: 0,
    };
    if let Err(e) = serve_loop(&mut s, &sock, verifier, started) {
        // The tasks must not run on without their pages (closing the
        // userfaultfds would make them read zeros): they go.
        s.kill_all();
        return Err(Error::new(format!("the restored tasks were killed: {e}")));
    }
    let c = &s.counts;
    let stats = crate::image::stats::LazyStatsEntry {
        complete_time: started.elapsed().as_micros() as u64,
        faults: c.faults,
        pages_on_fault: c.fault_pages,
        pages_background: c.background_pages,
        zero_pages: c.zero_pages,
        forks: c.forks,
    };
    // The tree has its pages: a failure here is only reported.
    if let Err(e) = crate::image::dir::write_side_image::<crate::image::kinds::StatsLazy>(dir, &stats) {
        log::warn!("write stats-lazy.img: {e}");
    }
    log::info!(
        "lazy pages: all in place {} ms after the server started: {} pages on {} faults, {} in the background, {} \
         zero pages, {} forks followed",
        started.elapsed().as_millis(),
        c.fault_pages,
        c.faults,
        c.background_pages,
        c.zero_pages,
        c.forks
    );
    Ok(())
}

/// Serves until every page is in (or every task is gone).
fn serve_loop(
    s: &mut Serving<'_>,
    sock: &OwnedFd,
    verifier: std::thread::JoinHandle<Result<()>>,
    started: Instant,
) -> Result<()> {
    let plan = s.plan;
    let by_pid: HashMap<i32, usize> = plan.tasks.iter().enumerate().map(|(i, t)| (t.pid, i)).collect();
    // Tests hold the background copy back to see the events on pages
    // still waiting (CRTOOLS_LAZY_BACKGROUND_AFTER_MS).
    let background_from = started
        + std::env::var("CRTOOLS_LAZY_BACKGROUND_AFTER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(std::time::Duration::ZERO, std::time::Duration::from_millis);
    let mut reported = HashSet::new();
    let mut sock_open = true;
    let mut told = false;
    let mut verifier = Some(verifier);
    loop {
        if let Some(v) = verifier.take_if(|v| v.is_finished()) {
            v.join().map_err(|_| Error::new("the page-data check panicked")).and_then(|r| r)?;
            log::debug!("lazy pages: page data checked");
        }
        let all_in = reported.len() == plan.tasks.len() || !sock_open;
        // Done once every page is in, the check passed, and the socket's
        // other ends are closed: the tasks close theirs before their last
        // trap, the engine its own once it let the tree go. A server that
        // ended before would be one more child the engine's wait for the
        // tree meets.
        if !sock_open && s.mms.is_empty() && verifier.is_none() {
            break;
        }
        let mut fds: Vec<PollFd> = Vec::with_capacity(s.mms.len() + 1);
        fds.push(PollFd { fd: if sock_open { sock.as_raw_fd() } else { -1 }, events: POLLIN, revents: 0 });
        fds.extend(s.mms.iter().map(|m| PollFd { fd: m.uffd.as_raw_fd(), events: POLLIN, revents: 0 }));
        // Background work to do: do not wait. Else wait for a fault, a
        // task's descriptor, or (only the check is left) a while.
        let held = background_from.saturating_duration_since(Instant::now());
        let timeout = match (s.mms.is_empty(), held.is_zero()) {
            (false, true) => 0,
            (false, false) => held.as_millis().clamp(1, 100) as i32,
            (true, _) if all_in => 20,
            (true, _) => 100,
        };
        event::poll(&mut fds, timeout).ctx_global("poll the lazy-pages descriptors")?;
        if fds[0].revents != 0 {
            sock_open = s.accept(sock.as_fd(), &by_pid, &mut reported)?;
            if reported.len() == plan.tasks.len() && !told {
                // The engine lets the tree go only after this.
                crate::sys::socket::send(sock.as_fd(), READY, crate::sys::socket::MsgFlags::empty())
                    .ctx_global("tell the engine the pages are served")?;
                told = true;
            }
        }
        let ready: Vec<bool> = fds[1..].iter().map(|p| p.revents != 0).collect();
        let mut any_event = false;
        for (i, r) in ready.into_iter().enumerate().rev() {
            if r {
                any_event = true;
                s.events(i)?;
            }
        }
        if !any_event && held.is_zero() {
            s.background()?;
        }
        s.retire();
    }
    Ok(())
}

struct Serving<'a> {
    plan: &'a LazyPlan,
    /// By task, source and stripe.
    pages: Vec<Vec<Vec<crate::image::pages::PagesReader>>>,
    mms: Vec<Mm>,
    counts: Counts,
    buf: Vec<u8>,
    /// Where the background copy looks next (round robin over `mms`).
    next: usize,
}

impl Serving<'_> {
    /// Takes the userfaultfds tasks sent; false once the socket is closed.
    fn accept(
        &mut self,
        sock: BorrowedFd<'_>,
        by_pid: &HashMap<i32, usize>,
        reported: &mut HashSet<i32>,
    ) -> Result<bool> {
        let mut b = [0u8; 4];
        let (n, mut fds) = match crate::sys::socket::recv_fds(sock, &mut b, 1) {
            Ok(r) => r,
            Err(Errno::EAGAIN) => return Ok(true),
            Err(e) => return Err(Error::new(format!("receive a task's userfaultfd: {e}"))),
        };
        if n == 0 && fds.is_empty() {
            return Ok(false);
        }
        let pid = i32::from_ne_bytes(b);
        let (Some(&task), Some(uffd)) = (by_pid.get(&pid), fds.pop()) else {
            return Err(Error::task(Pid(pid), "sent the lazy-pages server no userfaultfd, or is not in its plan"));
        };
        reported.insert(pid);
        let waiting = Waiting::from_runs(&self.plan.tasks[task].runs);
        log::debug!(task = pid; "lazy pages: task {pid} waits for {} KiB", waiting.bytes() / 1024);
        self.mms.push(Mm { uffd, task, pid, waiting, gone: false, own_pid: Some(pid) });
        Ok(true)
    }

    /// Drops the address spaces with nothing left to copy: closing the
    /// userfaultfd ends the registration.
    fn retire(&mut self) {
        self.mms.retain(|m| {
            if m.waiting.is_empty() && !m.gone {
                log::debug!(task = m.pid; "lazy pages: task {} (or a child) has all its pages", m.pid);
            }
            !m.waiting.is_empty()
        });
    }

    /// Reads and handles what waits on `mms[i]`'s userfaultfd (a fork
    /// appends the child's; nothing is removed before [`Serving::retire`]).
    fn events(&mut self, i: usize) -> Result<()> {
        let mut msgs = [[0u8; MSG_SIZE]; 16];
        let mut retry = Vec::new();
        loop {
            let n = match uffd::read_events(self.mms[i].uffd.as_fd(), &mut msgs) {
                Ok(n) => n,
                Err(e) => {
                    log::debug!(task = self.mms[i].pid; "lazy pages: read events: {e}: the task is gone");
                    self.mms[i].waiting = Waiting::default();
                    self.mms[i].gone = true;
                    break;
                }
            };
            if n == 0 {
                break;
            }
            for m in &msgs[..n] {
                let ev = Event::parse(m);
                match ev {
                    Event::PageFault { addr, tid, .. } => {
                        if self.mms[i].own_pid.is_none() && tid > 0 {
                            // A child forked since: its process, for the
                            // smaps of its own forks.
                            self.mms[i].own_pid = crate::proc::status::read(Pid(tid)).ok().map(|s| s.tgid);
                        }
                        retry.push(addr & !(PAGE - 1))
                    }
                    Event::Fork { ufd } => {
                        // SAFETY: the kernel installed this descriptor for us.
                        let uffd = unsafe { OwnedFd::from_raw_fd(ufd) };
                        let m = &self.mms[i];
                        let mut child = Mm {
                            uffd,
                            task: m.task,
                            pid: m.pid,
                            waiting: m.waiting.clone(),
                            gone: false,
                            own_pid: None,
                        };
                        // A VMA wiped on fork (MADV_WIPEONFORK, set since
                        // the restore) starts empty in the child: nothing
                        // of the images goes there.
                        // (The parent waits in fork until this event is read,
                        // its mmap lock released: its smaps can be read. The
                        // child is not in its list of children yet.)
                        match m.own_pid {
                            Some(parent) => {
                                for (s, e) in wiped_on_fork(parent) {
                                    child.waiting.take(s, e);
                                }
                            }
                            None => log::debug!(
                                "lazy pages: a fork in a child of task {} that never faulted: its MADV_WIPEONFORK \
                                 areas are not known",
                                m.pid
                            ),
                        }
                        self.counts.forks += 1;
                        self.mms.push(child);
                    }
                    Event::Remap { from, to, len } => self.mms[i].waiting.remap(from, to, len),
                    Event::Remove { start, end } | Event::Unmap { start, end } => {
                        self.mms[i].waiting.take(start, end);
                    }
                    Event::Other(e) => log::debug!("lazy pages: event {e:#x} ignored"),
                }
            }
        }
        // Faults last: the events before them are in the map now.
        for addr in retry {
            self.fault(i, addr)?;
        }
        Ok(())
    }

    /// Answers a fault at the page `addr` of `mms[i]`.
    fn fault(&mut self, i: usize, addr: u64) -> Result<()> {
        self.counts.faults += 1;
        match self.mms[i].waiting.holding(addr) {
            Some((s, e)) => {
                let w0 = (addr & !(FAULT_WINDOW - 1)).max(s);
                let w1 = ((addr & !(FAULT_WINDOW - 1)) + FAULT_WINDOW).min(e);
                let n = (w1 - w0) / PAGE;
                match self.copy(i, w0, w1)? {
                    Copied::Done => self.counts.fault_pages += n,
                    Copied::Later => {
                        // An event came in between: it is read next, and the
                        // thread faults again if the page still waits.
                    }
                    Copied::Gone => return Ok(()),
                }
            }
            None => match uffd::zeropage(self.mms[i].uffd.as_fd(), addr, PAGE) {
                Ok(()) => self.counts.zero_pages += 1,
                Err(Errno::EEXIST) | Err(Errno::EAGAIN) => {}
                Err(Errno::ESRCH) | Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(Error::task(Pid(self.mms[i].pid), format!("UFFDIO_ZEROPAGE at {addr:#x}: {e}"))),
            },
        }
        // Whatever happened, nobody stays asleep on a page that is in (an
        // EEXIST), or on one the next event read will decide.
        let _ = uffd::wake(self.mms[i].uffd.as_fd(), addr, PAGE);
        Ok(())
    }

    /// Copies the waiting pages of `[start, end)` (inside one waiting
    /// range) into `mms[i]`.
    fn copy(&mut self, i: usize, start: u64, end: u64) -> Result<Copied> {
        let mm = &mut self.mms[i];
        let parts = mm.waiting.take(start, end);
        for (pi, &(s, e, k, off)) in parts.iter().enumerate() {
            let len = (e - s) as usize;
            let buf = &mut self.buf[..len];
            let task = &self.plan.tasks[mm.task];
            let (source, stripe) = ((k >> 8) as usize, (k & 0xff) as usize);
            let fd = self.pages[mm.task]
                .get(source)
                .and_then(|s| s.get(stripe))
                .ok_or_else(|| Error::task(Pid(task.pid), format!("no stripe {stripe} of pages image {source}")))?
                .fd();
            let got = crate::sys::fs::pread_full(fd, buf, off).ctx(Pid(task.pid), "read the pages image")?;
            if got != len {
                return Err(Error::task(Pid(task.pid), "the pages image is shorter than its pagemap"));
            }
            let mut done = 0u64;
            // After an ENOENT: the range is not inside one registered VMA
            // (split since by mprotect or madvise, or partly unmapped), so
            // one page at a time; a page that still has none is one nothing
            // waits for (dropping the whole range dropped pages that then
            // read as zeros).
            let mut by_page = false;
            while done < len as u64 {
                let upto = if by_page { done + PAGE } else { len as u64 };
                match uffd::copy(mm.uffd.as_fd(), s + done, &buf[done as usize..upto as usize]) {
                    Ok(()) => done = upto,
                    // Present already (the task wrote it through a syscall
                    // that faulted it in another way): skip that page.
                    Err((Errno::EEXIST, n)) => done += n + PAGE,
                    Err((Errno::ENOENT, n)) if !by_page => {
                        done += n;
                        by_page = true;
                    }
                    Err((Errno::ENOENT, _)) => done += PAGE,
                    Err((Errno::EAGAIN, n)) => {
                        done += n;
                        mm.waiting.put(s + done, e, k, off + done);
                        for &(s2, e2, k2, off2) in &parts[pi + 1..] {
                            mm.waiting.put(s2, e2, k2, off2);
                        }
                        return Ok(Copied::Later);
                    }
                    Err((Errno::ESRCH, _)) => {
                        log::debug!(task = mm.pid; "lazy pages: an address space of task {} is gone", mm.pid);
                        mm.waiting = Waiting::default();
                        mm.gone = true;
                        return Ok(Copied::Gone);
                    }
                    Err((e, _)) => {
                        return Err(Error::task(Pid(mm.pid), format!("UFFDIO_COPY at {:#x}: {e}", s + done)));
                    }
                }
            }
        }
        Ok(Copied::Done)
    }

    /// Copies the next background chunk.
    fn background(&mut self) -> Result<()> {
        if self.mms.is_empty() {
            return Ok(());
        }
        let i = self.next % self.mms.len();
        self.next = self.next.wrapping_add(1);
        if let Some((s, e)) = self.mms[i].waiting.first(BACKGROUND_CHUNK) {
            if let Copied::Done = self.copy(i, s, e)? {
                self.counts.background_pages += (e - s) / PAGE;
            }
        }
        Ok(())
    }

    /// Nothing restored may run on (the page data is not what was dumped,
    /// or the server cannot go on): the restored tasks and every
    /// descendant of theirs (children forked since hold waiting pages
    /// too) are killed.
    fn kill_all(&self) {
        let roots: Vec<i32> = self.plan.tasks.iter().map(|t| t.pid).collect();
        for pid in descendants(&roots) {
            let _ = crate::sys::signal::kill(Pid(pid), 9);
        }
        for &pid in &roots {
            let _ = crate::sys::signal::kill(Pid(pid), 9);
        }
    }
}

/// The VMAs of `pid` marked MADV_WIPEONFORK now.
fn wiped_on_fork(pid: i32) -> Vec<(u64, u64)> {
    use crate::proc::smaps::VmFlags;
    crate::proc::smaps::read(Pid(pid))
        .map(|v| v.iter().filter(|e| e.vm_flags.contains(VmFlags::WF)).map(|e| (e.map.start, e.map.end)).collect())
        .unwrap_or_default()
}

/// The processes below `roots` in the process tree now.
fn descendants(roots: &[i32]) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if let Ok(st) = crate::proc::stat::read(Pid(pid)) {
                children.entry(st.ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if !out.contains(&c) && !roots.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(runs: &[(u64, u64, u64)]) -> Waiting {
        Waiting::from_runs(
            &runs
                .iter()
                .map(|&(vaddr, len, file_off)| LazyRun { vaddr, len, source: 0, stripe: 0, file_off })
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn take_splits_runs_and_keeps_offsets() {
        let mut x = w(&[(0x10000, 0x4000, 0), (0x20000, 0x2000, 0x4000)]);
        let got = x.take(0x11000, 0x21000);
        assert_eq!(got, vec![(0x11000, 0x14000, 0, 0x1000), (0x20000, 0x21000, 0, 0x4000)]);
        assert_eq!(x, w(&[(0x10000, 0x1000, 0), (0x21000, 0x1000, 0x5000)]));
        assert_eq!(x.bytes(), 0x2000);
    }

    #[test]
    fn remap_moves_waiting_pages_and_drops_the_target() {
        let mut x = w(&[(0x10000, 0x3000, 0x8000), (0x50000, 0x1000, 0)]);
        x.remap(0x11000, 0x50000, 0x2000);
        assert_eq!(x, w(&[(0x10000, 0x1000, 0x8000), (0x50000, 0x2000, 0x9000)]));
    }

    #[test]
    fn parent_runs_split_at_lazy_vmas() {
        let run = |vaddr, len, file_off| restorer_plan::PageRun { vaddr, len, file_off, stripe: 1, _pad: 0 };
        let (inside, outside) =
            split_runs(&[run(0x1000, 0x5000, 0x10000), run(0x9000, 0x1000, 0)], &[[0x2000, 0x3000], [0x4000, 0x8000]]);
        assert_eq!(inside, vec![run(0x2000, 0x1000, 0x11000), run(0x4000, 0x2000, 0x13000)]);
        assert_eq!(outside, vec![run(0x1000, 0x1000, 0x10000), run(0x3000, 0x1000, 0x12000), run(0x9000, 0x1000, 0)]);
    }

    #[test]
    fn holding_and_first() {
        let x = w(&[(0x10000, 0x3000, 0)]);
        assert_eq!(x.holding(0x12000), Some((0x10000, 0x13000)));
        assert_eq!(x.holding(0x13000), None);
        assert_eq!(x.holding(0xf000), None);
        assert_eq!(x.first(0x1000), Some((0x10000, 0x11000)));
    }
}
