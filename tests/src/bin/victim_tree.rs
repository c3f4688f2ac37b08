//! Victim for the process-tree dump/restore tests (tests/tests/dr_tree.rs).
//!
//! `victim_tree LOG MODE [ARG...]`
//!
//! The root becomes a session leader, points stdio at /dev/null, closes
//! every inherited descriptor above 2, opens LOG with O_APPEND (inherited by
//! the whole tree: one open file shared by every process, which the dump
//! accepts) and builds the tree of MODE. Each process, once its threads
//! run, appends one line `ready pid=P ppid=PP pgid=G sid=S role=R tids=T,..`
//! (plus words of its mode). On SIGUSR1 a process checks itself and appends
//! `check pid=P ppid=PP pgid=G sid=S role=R tids=T,.. [fields] verdict=ok|bad`
//! (its worker threads must all make progress with intact thread-locals,
//! stacks and tids). Every line is written with a single write(2).
//!
//! Modes:
//! - `cloneshare DIR`: root chdirs to DIR/cwd (umask 027) and holds DIR/data
//!   at `fd=` with its offset at 5; it clones f with CLONE_FILES|SIGCHLD
//!   and s with CLONE_FS|SIGCHLD (raw clone, single-threaded). Each check
//!   reports `fd_off= cwd= umask= probe=` (probe: fd 100 is `none`,
//!   `cloexec` or `open`) before acting: f opens DIR/data at fd 100 with
//!   O_CLOEXEC when it has none, root closes fd 100 when it has one, s
//!   moves between DIR/cwd (umask 027) and DIR/cwd/sub (umask 077);
//! - `cloneshare-siblings`: root clones a1 and a2 with CLONE_FILES, then
//!   unshares its own table (a layout restore cannot fork);
//! - `tree`: root -> a -> a1, root -> b; 3 threads each (two workers pass a
//!   token with a mutex and a condition variable);
//! - `zombie`: root -> z1 (leader of its own group, exit 7), z2 (killed by
//!   SIGTERM), z3 (cloned with exit signal SIGURG, exit 5), live -> lz
//!   (exit 3); nobody reaps before the first check, which reaps them
//!   (`z1=exit:7 z2=sig:15 z3=exit:5`, `lz=exit:3`);
//! - `session`: root (session leader) -> c1 (leader of group c1) -> g (group
//!   c1), g2 (group root); root -> c2 (group c1); root -> c3 -> s (leader of
//!   a new session) -> s1;
//! - `stopped`: root -> s (3 threads); the test stops s;
//! - `shm`: a MAP_SHARED anonymous page, a MAP_PRIVATE anonymous page and a
//!   heap box, all written before root forks child; at each check a process
//!   writes its round number into its slot of all three and reports the
//!   other's slots (`shm_other= priv_other= heap_other=`);
//! - `forker`: root forks a child every 2 ms that sleeps 0-4 ms and exits
//!   with 42, and reaps them; the check reports `forks= reaped= bad=`;
//! - `pingpong`: one process; threads ping and pong alternate on a
//!   mutex/condvar; thread joiner sits in pthread_join on thread sleeper,
//!   which waits on a condvar until the second check tells it to exit;
//!   the check reports `exchanges= order= joined=`;
//! - `deathsig`: root (child subreaper, reaps and logs `reaped pid= how=`)
//!   -> m -> p (PR_SET_PDEATHSIG SIGUSR2, logs `deathsig pid= ppid=`);
//! - `cow N MIB`: root fills MIB MiB of private anonymous memory with a
//!   pattern, then forks children c0..c(N-1) that never write it (their
//!   pages stay shared copy-on-write with root's); every check of every
//!   process reads two words of each page back (`cow=ok|bad:..`);
//! - `holder WHAT [PATH]`: root -> a -> a1 (2 threads each); a1 holds a
//!   pipe (WHAT=pipe), an eventfd (WHAT=eventfd) or PATH opened
//!   O_WRONLY|O_APPEND (WHAT=file).
//! - `ipc DIR [uffd]`: root -> c, sharing what root opened before the
//!   fork: DIR/shared (O_RDWR; each check reports the shared offset `off=`
//!   and then moves it by one, and `nonblock=` of a pipe end root made
//!   non-blocking after the fork), a pipe root->c holding 3000 bytes and a
//!   pipe c->root of capacity 256 KiB holding 100000 bytes, both written
//!   before ready; a packet-mode pipe (O_DIRECT) root->c with packets of
//!   10, 200 and 4000 bytes; the FIFO DIR/fifo opened by root read-only,
//!   by c write-only and read-write, holding "fifo-data" written by c, and
//!   DIR/gone-fifo (0640, "ghost-fifo" in it) which root unlinked; c
//!   holds /proc/self/stat open. The first check of each side reads what
//!   is in flight for it and reports `data=ok|bad:..`; `proc=` is c's
//!   /proc/self/stat naming its own pid. With `uffd`, c also holds a
//!   userfaultfd (which crtools does not dump).
//! - `unix DIR`: root listens on DIR/srv (stream, mode 0640) and has
//!   accepted c1 (bound to DIR/c1.sock) and c2; c3's connection waits in
//!   the backlog; root also listens on DIR/moved, bound as DIR/moved.tmp
//!   and renamed (`moved=ok|bad:..`: a client connects and is accepted).
//!   Before ready: c1 sent "from-c1" on its connection and
//!   root sent "to-c1"; c1 sent datagrams to root's DIR/dg (SO_PASSCRED)
//!   from DIR/dg1 (10 and 7000 bytes) and from an unnamed socket (5 bytes)
//!   in between, and one to root's abstract socket; root and c2 share a
//!   seqpacket pair with records queued both ways (c2's first one carries
//!   the read end of a pipe holding "scm-pipe", which c2 closed), c2's side
//!   shut down for writing; c1 holds a dgram socketpair with a message queued and a
//!   stream socket bound to DIR/gone, whose file it unlinked; c3 also has
//!   a datagram socket connected to DIR/dg (`dgpeer=`); c4 connected, sent
//!   "bye" and exited, root keeps the accepted end. The first
//!   check of each reads everything and reports `data=ok|bad:WHY`.
//! - `pipeline DIR`: root -> p | m | c through two pipes of 1 MiB: p writes
//!   6 MiB of a known pattern (`written=`), m copies the first MiB at once
//!   and the rest once DIR/go exists, c reads once DIR/go exists and
//!   reports `got= sum= done=` (FNV-1a of what it read, true at EOF).
//! - `sysvshm`: root -> child sharing two SysV shared memory segments:
//!   A (key 0x5e000000|pid, 3 pages + 100 bytes, mode 0640, owner set to
//!   1234:4321 with IPC_SET) and B (IPC_PRIVATE, 16 pages, a few never
//!   touched, the middle 4 pages mprotect'ed read-only in root before the
//!   fork, marked removed with IPC_RMID once attached), both filled with a
//!   pattern before the fork; child also attaches A read-only. At each
//!   check a process writes its round into its slot of page 0 of A and B
//!   and reports the other's (`a_other= b_other=`, child also `ro_other=`
//!   read through its read-only attachment), the segments' ids, key, mode,
//!   owner, creator, nattch and SHM_DEST seen with IPC_STAT (`a_id= a_key=
//!   a_mode= a_owner= a_cuid= a_nattch= b_id= b_key= b_nattch= b_dest=`),
//!   whether each attachment is at its address with its protections and
//!   `mw` (`maps=ok|bad:..`), and `data=ok|bad:..` for every other byte.
//! - `pty [canon|sharedtty|stopped]`: root holds the master of pty A, whose slave
//!   is the controlling terminal of c (a session leader: root -> c -> c1,
//!   c1 leading its own group, the terminal's foreground group); c sets it
//!   non-canonical without echo, 40x132, exclusive, writes "from-slave\n"
//!   and 6000 letters (not read by root), root writes "typed-input" (not
//!   read by c1), then c opens /dev/tty. Root also holds the master of a locked pty B and
//!   both ends of a pty C in packet mode with "packet-out" queued for the
//!   master. The first check of root reads A and C (`data=ok|bad:..`), of
//!   c1 the input (`input=ok|bad:..`); root and c report the indices
//!   (`idx=`), c reports `sid_ok= fg_ok= devtty= winsize= lflag=`, root
//!   `pkt= lock=`. With `canon`, c stays canonical and root writes a
//!   line, an end of file (^D) and a partial line, which c1 checks; with
//!   `sharedtty`, c opens /dev/tty before forking c1, which shares it;
//!   with `stopped`, c stops the terminal's output (tcflow TCOOFF); crtools
//!   refuses both.
//! - `events DIR`: root -> c. Root holds an eventfd in EFD_SEMAPHORE mode
//!   (count 3) and a counter eventfd holding 2^32+5; a periodic timerfd
//!   (50 ms) left unread for 300 ms before ready and an absolute
//!   CLOCK_REALTIME one-shot an hour ahead with TFD_TIMER_CANCEL_ON_SET; a
//!   signalfd for SIGWINCH and SIGRTMIN+3 with SIGWINCH and two queued
//!   SIGRTMIN+3 (value 42) pending; an inotify instance (non-blocking)
//!   with watches 2 (DIR/w/sub) and 3 (DIR/w, IN_CREATE); a sparse memfd
//!   ("evmem", 2 MiB, "hello" at 0 and "world" at 1 MiB, F_SEAL_SHRINK)
//!   whose description c shares; a pidfd of c (c holds one of root). Its
//!   event loop (every 2 ms) polls an outer epoll watching an inner one,
//!   which watches a pipe from c (EPOLLET), a stream socketpair end (c
//!   has the other), an eventfd c adds 1 to, under two numbers of which
//!   the first was closed after the add, and a 20 ms periodic timerfd. c
//!   writes a sequence number to the pipe and the socket every 5 ms. The
//!   first check of root reports `sem=` (reads until EAGAIN), `cnt=`,
//!   `tp1=` (unread ticks) and `tp2=` (a later read), `tabs=`
//!   (seconds left), `sfd=` (signals read), `ino=` (after creating
//!   DIR/w/after); every check of root reports the loop's `pseq= useq=
//!   evsum= tticks= seqok=`, `mem=` (memfd contents) and `moff=` (the
//!   shared offset, moved by one), and `pidfd=` (its pidfd reaches c);
//!   c reports `moff=` and `pidfd=` likewise. Also: a 12 MiB memfd after a
//!   3 MiB hole (`big=`), the memfd mapped shared (c inherits it; root
//!   writes a round number, c reports `mapseen=`) and private with a
//!   copied page (`mapok= privok=`), a memfd c only maps (`maponly=`), a
//!   non-blocking pidfd of root that c inherits (`selfpfd= selfnb=
//!   selfcloexec=`), a CLOCK_BOOTTIME_ALARM timer an hour ahead
//!   (`talarm=`), an epoll on the signalfd woken by a signal raised after
//!   restore (`sfdep=`), and a set with every epoll flag, a fired one-shot
//!   item and a watch on c's pidfd (`pidmod=`: EPOLL_CTL_MOD finds it).
//! - `pidzombie`: root -> z, which exits with 5 at once; root holds a
//!   pidfd of z, the zombie, and its first check reports `zpoll=` (the
//!   pidfd is readable) and `zstatus=` (waitid(P_PIDFD) reaps it).
//! - `fanotify DIR`: one process with a fanotify group (non-blocking)
//!   marking DIR/f (inode mark, FAN_CLOSE_WRITE, FAN_OPEN ignored and
//!   surviving modification) and the mount at DIR/m (FAN_CLOSE_WRITE; the
//!   test mounted a tmpfs there). Its first check writes DIR/f and
//!   DIR/m/x and reports the events read as `fan=NAME,..`.
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

static LOG_FD: AtomicI32 = AtomicI32::new(-1);
static USR1: AtomicBool = AtomicBool::new(false);
static USR2: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: i32) {
    USR1.store(true, SeqCst);
}

extern "C" fn on_usr2(_: i32) {
    USR2.store(true, SeqCst);
}

/// Appends one line to the log with a single write.
fn log(line: String) {
    let mut b = line.into_bytes();
    b.push(b'\n');
    // SAFETY: writing a local buffer to our log descriptor.
    let n = unsafe { libc::write(LOG_FD.load(SeqCst), b.as_ptr() as *const _, b.len()) };
    assert_eq!(n, b.len() as isize, "short log write");
}

fn ids() -> String {
    // SAFETY: plain getters without preconditions.
    unsafe {
        format!("pid={} ppid={} pgid={} sid={}", libc::getpid(), libc::getppid(), libc::getpgid(0), libc::getsid(0))
    }
}

fn gettid() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Forks; the child runs `f`, which never returns.
fn fork(f: impl FnOnce()) -> i32 {
    // SAFETY: every caller forks while the process has one thread.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        f();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// Blocks the test's command signals in the calling thread.
fn block_commands() {
    // SAFETY: a zeroed sigset filled with sigaddset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

thread_local! {
    static MINE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static PATTERN: std::cell::RefCell<[u64; 32]> = const { std::cell::RefCell::new([0; 32]) };
}

/// Worker threads of one process: each counts in a thread-local, keeps a
/// counter on its stack and a pattern in a thread-local array, and passes a
/// token around a mutex/condvar ring.
struct Workers {
    counters: Arc<Vec<AtomicU64>>,
    tids: Arc<Vec<AtomicU64>>,
    bad: Arc<AtomicBool>,
    passes: Arc<AtomicU64>,
    main_tid: u64,
}

impl Workers {
    fn spawn(n: usize) -> Workers {
        let w = Workers {
            counters: Arc::new((0..n).map(|_| AtomicU64::new(0)).collect()),
            tids: Arc::new((0..n).map(|_| AtomicU64::new(0)).collect()),
            bad: Arc::new(AtomicBool::new(false)),
            passes: Arc::new(AtomicU64::new(0)),
            main_tid: gettid(),
        };
        let ring = Arc::new((Mutex::new(0usize), Condvar::new()));
        for i in 0..n {
            let (counters, tids, bad, ring, passes) =
                (w.counters.clone(), w.tids.clone(), w.bad.clone(), ring.clone(), w.passes.clone());
            std::thread::spawn(move || {
                block_commands();
                let tid = gettid();
                MINE.with(|m| m.set(tid << 32));
                PATTERN.with(|p| p.borrow_mut().iter_mut().enumerate().for_each(|(k, x)| *x = tid ^ k as u64));
                tids[i].store(tid, SeqCst);
                let mut on_stack: u64 = 0;
                loop {
                    let (lock, cv) = &*ring;
                    let mut turn = lock.lock().unwrap();
                    while *turn != i {
                        turn = cv.wait(turn).unwrap();
                    }
                    *turn = (i + 1) % n;
                    passes.fetch_add(1, SeqCst);
                    cv.notify_all();
                    drop(turn);
                    let v = MINE.with(|m| {
                        m.set(m.get() + 1);
                        m.get()
                    });
                    let pattern_ok = PATTERN.with(|p| p.borrow().iter().enumerate().all(|(k, &x)| x == tid ^ k as u64));
                    on_stack += 1;
                    if v >> 32 != tid
                        || v & 0xffff_ffff != on_stack
                        || gettid() != tid
                        || !pattern_ok
                        || counters[i].load(SeqCst) + 1 != on_stack
                    {
                        bad.store(true, SeqCst);
                    }
                    counters[i].store(on_stack, SeqCst);
                    sleep_ms(2);
                }
            });
        }
        while w.tids.iter().any(|t| t.load(SeqCst) == 0) {
            sleep_ms(2);
        }
        w
    }

    fn tids(&self) -> String {
        let mut v = vec![self.main_tid.to_string()];
        v.extend(self.tids.iter().map(|t| t.load(SeqCst).to_string()));
        v.join(",")
    }

    /// Every worker moves within 300 ms, the ring turns, nothing went wrong,
    /// and /proc/self/task lists all our threads.
    fn check(&self, fields: &mut Vec<String>) -> bool {
        let n = self.counters.len();
        let ok_tasks = {
            let mut listed: Vec<u64> = std::fs::read_dir("/proc/self/task")
                .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
                .unwrap_or_default();
            listed.sort();
            // Ours must all be there (a mode may have threads of its own).
            self.tids().split(',').all(|s| listed.contains(&s.parse().unwrap()))
        };
        let mut moving = true;
        let mut ring = true;
        if n > 0 {
            let p0 = self.passes.load(SeqCst);
            let start: Vec<u64> = self.counters.iter().map(|c| c.load(SeqCst)).collect();
            let mut moved = vec![false; n];
            for _ in 0..60 {
                sleep_ms(5);
                for (k, c) in self.counters.iter().enumerate() {
                    if c.load(SeqCst) != start[k] {
                        moved[k] = true;
                    }
                }
                if moved.iter().all(|m| *m) && self.passes.load(SeqCst) > p0 + n as u64 {
                    break;
                }
            }
            moving = moved.iter().all(|m| *m);
            ring = self.passes.load(SeqCst) > p0 + n as u64;
        }
        let tls = !self.bad.load(SeqCst);
        fields.push(format!("threads={} moving={moving} ring={ring} tls={tls} tasks={ok_tasks}", n + 1));
        moving && ring && tls && ok_tasks
    }
}

/// Adds fields to a check; false makes the verdict bad.
type CheckHook<'a> = Box<dyn FnMut(&mut Vec<String>) -> bool + 'a>;

/// What a process does besides answering checks.
#[derive(Default)]
struct Hooks<'a> {
    /// Extra words of the ready line.
    ready: Vec<String>,
    /// Called every loop turn (about every 2 ms).
    tick: Option<Box<dyn FnMut() + 'a>>,
    /// Adds fields to a check; false makes the verdict bad.
    check: Option<CheckHook<'a>>,
}

/// Spawns `threads - 1` workers, says ready and serves checks forever.
fn serve(role: &str, threads: usize, mut hooks: Hooks) -> ! {
    // VICTIM_THREADS raises every process's thread count (scripts/soak.sh).
    let more = std::env::var("VICTIM_THREADS").ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let threads = threads.max(more);
    let w = Workers::spawn(threads.saturating_sub(1));
    let mut ready = format!("ready {} role={role} tids={}", ids(), w.tids());
    for r in &hooks.ready {
        ready.push(' ');
        ready.push_str(r);
    }
    log(ready);
    loop {
        sleep_ms(2);
        if let Some(t) = hooks.tick.as_mut() {
            t();
        }
        if USR1.swap(false, SeqCst) {
            let mut fields = Vec::new();
            let mut ok = w.check(&mut fields);
            if let Some(c) = hooks.check.as_mut() {
                ok &= c(&mut fields);
            }
            log(format!(
                "check {} role={role} tids={} {} verdict={}",
                ids(),
                w.tids(),
                fields.join(" "),
                if ok { "ok" } else { "bad" }
            ));
        }
    }
}

/// Blocks (or unblocks) `sig` in the calling thread.
fn block(sig: i32, on: bool) {
    // SAFETY: a local signal set passed to pthread_sigmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(if on { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK }, &set, std::ptr::null_mut());
    }
}

fn plain(role: &str, threads: usize) -> ! {
    serve(role, threads, Hooks::default())
}

/// "exit:N", "sig:N" or what went wrong, after waitpid(pid, WNOHANG).
fn reap(pid: i32) -> String {
    let mut st = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if r == 0 {
        return "notyet".into();
    }
    if r < 0 {
        return format!("err:{}", std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    how(st)
}

/// [`reap`] for a child whose exit signal is not SIGCHLD (__WALL).
fn reap_clone(pid: i32) -> String {
    let mut st = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG | libc::__WALL) };
    if r <= 0 {
        return format!("err:{r}");
    }
    how(st)
}

fn how(st: i32) -> String {
    if libc::WIFEXITED(st) {
        format!("exit:{}", libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        format!("sig:{}", libc::WTERMSIG(st))
    } else {
        format!("other:{st:#x}")
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn wait_zombie(pid: i32) {
    while !is_zombie(pid) {
        sleep_ms(2);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let log_path = args.get(1).expect("victim_tree LOG MODE");
    let mode = args.get(2).map(String::as_str).unwrap_or("tree");
    // SAFETY: plain libc calls; the handlers only store to atomics.
    unsafe {
        libc::setsid();
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        libc::dup2(null, 0);
        libc::dup2(null, 1);
        libc::dup2(null, 2);
        if null > 2 {
            libc::close(null);
        }
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as usize);
    }
    let path = std::ffi::CString::new(log_path.as_str()).unwrap();
    // SAFETY: opening a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT, 0o600) };
    assert!(fd >= 0, "open log");
    LOG_FD.store(fd, SeqCst);
    match mode {
        "tree" => {
            fork(|| {
                fork(|| plain("a1", 3));
                plain("a", 3)
            });
            fork(|| plain("b", 3));
            plain("root", 3)
        }
        "zombie" => zombie(),
        "session" => session(),
        "stopped" => {
            fork(|| {
                // Its own group, with its parent in another group of the
                // same session: not orphaned, so terminal stop signals
                // (SIGTSTP) stop it.
                // SAFETY: setpgid on ourselves.
                unsafe { libc::setpgid(0, 0) };
                // SIGTSTP blocked in the leader and in the workers made
                // after it; one thread made first does not block it (it
                // takes the stop: a Ctrl-Z'd vim's timer thread blocks it).
                block(libc::SIGTSTP, true);
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    block(libc::SIGTSTP, false);
                    tx.send(()).unwrap();
                    loop {
                        sleep_ms(1000);
                    }
                });
                rx.recv().unwrap();
                plain("s", 3)
            });
            plain("root", 1)
        }
        "shm" => shm(),
        "forker" => forker(),
        "pingpong" => pingpong(),
        "deathsig" => deathsig(),
        "holder" => holder(&args[3..]),
        "cow" => cow(&args[3..]),
        "ipc" => ipc(&args[3..]),
        "unix" => unix(&args[3..]),
        "pty" => pty(&args[3..]),
        "pipeline" => pipeline(&args[3..]),
        "events" => events(&args[3..]),
        "fanotify" => fanotify(&args[3..]),
        "pidzombie" => pidzombie(),
        "sysvshm" => sysvshm(),
        "cloneshare" => cloneshare(&args[3..]),
        "cloneshare-siblings" => cloneshare_siblings(),
        other => {
            log(format!("error unknown mode {other}"));
            std::process::exit(2);
        }
    }
}

fn zombie() -> ! {
    let z1 = fork(|| {
        // SAFETY: leading a process group of its own, then leaving at once
        // with a chosen status.
        unsafe {
            libc::setpgid(0, 0);
            libc::_exit(7)
        }
    });
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack) whose parent is
    // told of its end with SIGURG (ignored by default), not SIGCHLD.
    let z3 = unsafe { libc::syscall(libc::SYS_clone, libc::SIGURG as libc::c_long, 0, 0, 0, 0) } as i32;
    assert!(z3 >= 0, "clone with exit signal SIGURG");
    if z3 == 0 {
        // SAFETY: leaving at once.
        unsafe { libc::_exit(5) }
    }
    let z2 = fork(|| {
        // SAFETY: default action for SIGTERM, then send it to ourselves.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
        loop {
            sleep_ms(100);
        }
    });
    fork(|| {
        let lz = fork(|| {
            // SAFETY: as above.
            unsafe { libc::_exit(3) }
        });
        wait_zombie(lz);
        let hooks = Hooks {
            ready: vec![format!("lz={lz}")],
            check: Some(Box::new(move |f: &mut Vec<String>| {
                f.push(format!("lz={}", reap(lz)));
                true
            })),
            ..Default::default()
        };
        serve("live", 1, hooks)
    });
    wait_zombie(z1);
    wait_zombie(z2);
    wait_zombie(z3);
    let hooks = Hooks {
        ready: vec![format!("z1={z1} z2={z2} z3={z3}")],
        check: Some(Box::new(move |f: &mut Vec<String>| {
            f.push(format!("z1={} z2={} z3={}", reap(z1), reap(z2), reap_clone(z3)));
            true
        })),
        ..Default::default()
    };
    serve("root", 2, hooks)
}

fn session() -> ! {
    // SAFETY: getpid has no preconditions.
    let root = unsafe { libc::getpid() };
    let c1 = fork(|| {
        // SAFETY: setpgid on ourselves.
        unsafe { libc::setpgid(0, 0) };
        fork(|| plain("g", 1));
        fork(|| {
            // SAFETY: joining the root's group, in our session.
            assert_eq!(unsafe { libc::setpgid(0, root) }, 0);
            plain("g2", 1)
        });
        plain("c1", 2)
    });
    // SAFETY: the shell's way: both sides set the group, whoever is first.
    unsafe { libc::setpgid(c1, c1) };
    let c2 = fork(|| {
        // SAFETY: joining c1's group (it exists: the parent made it).
        assert_eq!(unsafe { libc::setpgid(0, c1) }, 0);
        plain("c2", 1)
    });
    // SAFETY: as above.
    unsafe { libc::setpgid(c2, c1) };
    fork(|| {
        fork(|| {
            // SAFETY: a new session of our own.
            assert!(unsafe { libc::setsid() } > 0);
            fork(|| plain("s1", 1));
            plain("s", 2)
        });
        plain("c3", 1)
    });
    plain("root", 2)
}

fn shm() -> ! {
    const INIT: u64 = 100;
    // SAFETY: fresh anonymous mappings of one page each.
    let (shared, private) = unsafe {
        let s = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(s != libc::MAP_FAILED && p != libc::MAP_FAILED);
        (s as *mut u64, p as *mut u64)
    };
    // A second object of three pages: the parent keeps pages 0 and 1, the
    // child pages 1 and 2, so each process maps a part the other does not.
    // SAFETY: a fresh anonymous mapping.
    let split = unsafe {
        let s = libc::mmap(
            std::ptr::null_mut(),
            3 * 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(s != libc::MAP_FAILED);
        s as *mut u64
    };
    let heap: &'static mut [u64; 2] = Box::leak(Box::new([INIT; 2]));
    let heap = heap.as_mut_ptr();
    // Slot 0: the parent's, slot 1: the child's.
    for k in 0..2 {
        // SAFETY: in-bounds writes to our own pages and box.
        unsafe {
            split.add(512 + k).write_volatile(INIT);
            shared.add(k).write_volatile(INIT);
            private.add(k).write_volatile(INIT);
            heap.add(k).write_volatile(INIT);
        }
    }
    let role = move |me: usize| -> ! {
        // Page 2*(1-me) is the other's alone: unmapped here; page 2*me is
        // ours alone: filled with a pattern only we can check.
        let (mine, theirs) = (2 * me, 2 * (1 - me));
        let pattern = |i: usize| 0x5a5a_0000_0000_0000u64 | ((me as u64) << 32) | i as u64;
        // SAFETY: pages of the mapping made above; unmapping one we never use again.
        unsafe {
            assert_eq!(libc::munmap(split.add(theirs * 512).cast(), 4096), 0);
            for i in 0..512 {
                split.add(mine * 512 + i).write_volatile(pattern(i));
            }
        }
        let mut round = 0u64;
        let hooks = Hooks {
            check: Some(Box::new(move |f: &mut Vec<String>| {
                round += 1;
                let other = 1 - me;
                // SAFETY: in-bounds accesses to pages and a box that live forever.
                unsafe {
                    shared.add(me).write_volatile(round);
                    private.add(me).write_volatile(round);
                    heap.add(me).write_volatile(round);
                    split.add(512 + me).write_volatile(round);
                    let own_ok = (0..512).all(|i| split.add(mine * 512 + i).read_volatile() == pattern(i));
                    f.push(format!(
                        "round={round} shm_other={} priv_other={} heap_other={} split_other={} split_own_ok={}",
                        shared.add(other).read_volatile(),
                        private.add(other).read_volatile(),
                        heap.add(other).read_volatile(),
                        split.add(512 + other).read_volatile(),
                        own_ok as u8
                    ));
                }
                true
            })),
            ..Default::default()
        };
        serve(if me == 0 { "parent" } else { "child" }, 1, hooks)
    };
    fork(move || role(1));
    role(0)
}

fn forker() -> ! {
    let forks = std::cell::Cell::new(0u64);
    let reaped = std::cell::Cell::new(0u64);
    let bad = std::cell::Cell::new(0u64);
    let last_bad = std::cell::RefCell::new(String::new());
    let mut turn = 0u64;
    let hooks = Hooks {
        tick: Some(Box::new(|| {
            turn += 1;
            let ms = turn % 5;
            fork(move || {
                sleep_ms(ms);
                // SAFETY: leaving the child with a chosen status.
                unsafe { libc::_exit(42) }
            });
            forks.set(forks.get() + 1);
            loop {
                let mut st = 0;
                // SAFETY: reaping our own children.
                let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
                if r <= 0 {
                    break;
                }
                reaped.set(reaped.get() + 1);
                if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 42) {
                    bad.set(bad.get() + 1);
                    *last_bad.borrow_mut() = format!("{r}:{}", how(st));
                }
            }
        })),
        check: Some(Box::new(|f: &mut Vec<String>| {
            f.push(format!("forks={} reaped={} bad={} last_bad={}", forks.get(), reaped.get(), bad.get(), {
                let l = last_bad.borrow();
                if l.is_empty() {
                    "none".to_string()
                } else {
                    l.clone()
                }
            }));
            bad.get() == 0
        })),
        ..Default::default()
    };
    serve("root", 1, hooks)
}

fn pingpong() -> ! {
    // (value, quit): ping makes it odd, pong even.
    let pp = Arc::new((Mutex::new(0u64), Condvar::new()));
    let disorder = Arc::new(AtomicBool::new(false));
    for side in 0..2u64 {
        let (pp, disorder) = (pp.clone(), disorder.clone());
        std::thread::spawn(move || {
            block_commands();
            let mut last = None;
            loop {
                let (lock, cv) = &*pp;
                let mut v = lock.lock().unwrap();
                while *v % 2 != side {
                    v = cv.wait(v).unwrap();
                }
                if let Some(l) = last {
                    if *v != l + 2 {
                        disorder.store(true, SeqCst);
                    }
                }
                *v += 1;
                last = Some(*v - 1);
                cv.notify_all();
                drop(v);
                sleep_ms(1);
            }
        });
    }
    let quit = Arc::new((Mutex::new(false), Condvar::new()));
    let joined = Arc::new(AtomicBool::new(false));
    let sleeper = {
        let quit = quit.clone();
        std::thread::spawn(move || {
            block_commands();
            let (lock, cv) = &*quit;
            let mut q = lock.lock().unwrap();
            while !*q {
                q = cv.wait(q).unwrap();
            }
        })
    };
    {
        let joined = joined.clone();
        std::thread::spawn(move || {
            block_commands();
            sleeper.join().unwrap();
            joined.store(true, SeqCst);
        });
    }
    let mut checks = 0u64;
    let hooks = Hooks {
        check: Some(Box::new(move |f: &mut Vec<String>| {
            checks += 1;
            let read = || *pp.0.lock().unwrap();
            let v0 = read();
            sleep_ms(300);
            let v1 = read();
            let mut ok = v1 > v0 + 10 && !disorder.load(SeqCst);
            if checks == 2 {
                // Wake the sleeper: its exit must wake the joiner.
                *quit.0.lock().unwrap() = true;
                quit.1.notify_all();
                for _ in 0..200 {
                    if joined.load(SeqCst) {
                        break;
                    }
                    sleep_ms(5);
                }
            }
            let j = joined.load(SeqCst);
            ok &= j == (checks >= 2);
            f.push(format!("exchanges={} order={} joined={j}", v1 - v0, !disorder.load(SeqCst)));
            ok
        })),
        ..Default::default()
    };
    serve("pingpong", 1, hooks)
}

fn deathsig() -> ! {
    // SAFETY: prctl on ourselves.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    fork(|| {
        fork(|| {
            // SAFETY: prctl on ourselves; the handler only stores to an atomic.
            unsafe {
                libc::signal(libc::SIGUSR2, on_usr2 as *const () as usize);
                assert_eq!(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR2, 0, 0, 0), 0);
            }
            let hooks = Hooks {
                tick: Some(Box::new(|| {
                    if USR2.swap(false, SeqCst) {
                        log(format!("deathsig {}", ids()));
                    }
                })),
                check: Some(Box::new(|f: &mut Vec<String>| {
                    let mut sig = 0;
                    // SAFETY: prctl writing one int.
                    unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut i32) };
                    f.push(format!("pdeathsig={sig}"));
                    true
                })),
                ..Default::default()
            };
            serve("p", 1, hooks)
        });
        plain("m", 1)
    });
    let hooks = Hooks {
        tick: Some(Box::new(|| loop {
            let mut st = 0;
            // SAFETY: reaping our children (and orphans given to us).
            let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            log(format!("reaped pid={r} how={}", how(st)));
        })),
        check: Some(Box::new(|f: &mut Vec<String>| {
            let mut v = 0;
            // SAFETY: prctl writing one int.
            unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut v as *mut i32) };
            f.push(format!("subreaper={v}"));
            true
        })),
        ..Default::default()
    };
    serve("t", 1, hooks)
}

fn holder(args: &[String]) -> ! {
    let what = args.first().cloned().unwrap_or_default();
    let path = args.get(1).cloned();
    fork(move || {
        fork(move || {
            let extra = match what.as_str() {
                "pipe" => {
                    let mut p = [0; 2];
                    // SAFETY: pipe writes two ints.
                    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
                    format!("pipe={},{}", p[0], p[1])
                }
                "uffd" => format!("uffd={}", userfaultfd()),
                "pidfd-out" => format!("pidfd={}", pidfd_open(1)),
                "inotifyq" => {
                    let d = path.expect("holder inotifyq DIR");
                    // SAFETY: inotify calls on a NUL-terminated path.
                    let fd = unsafe {
                        let fd = libc::inotify_init1(0);
                        assert!(libc::inotify_add_watch(fd, cpath(&d).as_ptr(), libc::IN_CREATE) > 0);
                        fd
                    };
                    std::fs::File::create(format!("{d}/queued")).unwrap();
                    format!("inotify={fd}")
                }
                "inotify-gone" => {
                    // A watch on a file unlinked since, still open (so the
                    // inode and the watch live on); its events read.
                    let f = format!("{}/watched", path.expect("holder inotify-gone DIR"));
                    let keep = std::fs::File::create(&f).unwrap();
                    // SAFETY: inotify calls on a NUL-terminated path.
                    let fd = unsafe {
                        let fd = libc::inotify_init1(libc::IN_NONBLOCK);
                        assert!(libc::inotify_add_watch(fd, cpath(&f).as_ptr(), libc::IN_MODIFY) > 0);
                        fd
                    };
                    std::fs::remove_file(&f).unwrap();
                    let mut buf = [0u8; 4096];
                    // SAFETY: reading the queue into a local buffer.
                    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
                    std::mem::forget(keep);
                    format!("inotify={fd}")
                }
                "file" => {
                    let c = std::ffi::CString::new(path.expect("holder file PATH")).unwrap();
                    // SAFETY: opening a NUL-terminated path.
                    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT, 0o600) };
                    assert!(fd >= 0);
                    format!("file={fd}")
                }
                other => panic!("holder: {other}?"),
            };
            serve("a1", 2, Hooks { ready: vec![extra], ..Default::default() })
        });
        plain("a", 2)
    });
    plain("root", 2)
}

/// A userfaultfd (user-mode faults only: no privilege needed).
fn userfaultfd() -> i32 {
    // SAFETY: userfaultfd has no memory arguments.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | 1) } as i32;
    assert!(fd >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
    fd
}

fn cpath(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

fn pipe_with(flags: i32) -> (i32, i32) {
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two ints.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), flags) }, 0, "pipe2");
    (p[0], p[1])
}

fn write_all(fd: i32, b: &[u8]) {
    // SAFETY: writing a local buffer.
    let n = unsafe { libc::write(fd, b.as_ptr() as *const _, b.len()) };
    assert_eq!(n, b.len() as isize, "write to fd {fd}");
}

/// Reads until EAGAIN or EOF from a non-blocking descriptor; with `packets`
/// reads one buffer at a time and returns the lengths too.
fn drain(fd: i32) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut lens = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut _, buf.len()) };
        if n <= 0 {
            break;
        }
        lens.push(n as usize);
        out.extend_from_slice(&buf[..n as usize]);
    }
    (out, lens)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn getfl(fd: i32) -> i32 {
    // SAFETY: fcntl without pointers.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

/// Reports the shared offset of `fd` and moves it by one.
fn offset_step(fd: i32, f: &mut Vec<String>) {
    // SAFETY: lseek without pointers.
    let off = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    // SAFETY: as above.
    unsafe { libc::lseek(fd, 1, libc::SEEK_CUR) };
    f.push(format!("off={off}"));
}

fn ipc(args: &[String]) -> ! {
    let dir = args.first().expect("ipc DIR").clone();
    let with_uffd = args.get(1).map(String::as_str) == Some("uffd");
    let shared = format!("{dir}/shared");
    let fifo = format!("{dir}/fifo");
    // SAFETY: plain libc calls on NUL-terminated paths.
    let file = unsafe { libc::open(cpath(&shared).as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600) };
    assert!(file >= 0);
    write_all(file, b"0123456789");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::mkfifo(cpath(&fifo).as_ptr(), 0o600) }, 0, "mkfifo");
    // Read-only and non-blocking: does not wait for a writer.
    // SAFETY: as above.
    let fifo_r = unsafe { libc::open(cpath(&fifo).as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
    assert!(fifo_r >= 0);
    // A FIFO unlinked while open, holding data, mode 0640.
    let gone = format!("{dir}/gone-fifo");
    // SAFETY: plain libc calls on NUL-terminated paths.
    let gone_fd = unsafe {
        assert_eq!(libc::mkfifo(cpath(&gone).as_ptr(), 0o640), 0, "mkfifo");
        libc::chmod(cpath(&gone).as_ptr(), 0o640);
        libc::open(cpath(&gone).as_ptr(), libc::O_RDWR | libc::O_NONBLOCK)
    };
    assert!(gone_fd >= 0);
    write_all(gone_fd, b"ghost-fifo");
    std::fs::remove_file(&gone).unwrap();
    let gone_link = format!("{gone} (deleted)");
    let (down_r, down_w) = pipe_with(0);
    let (up_r, up_w) = pipe_with(0);
    // SAFETY: fcntl without pointers.
    assert_eq!(unsafe { libc::fcntl(up_w, libc::F_SETPIPE_SZ, 256 * 1024) }, 256 * 1024);
    let (pk_r, pk_w) = pipe_with(libc::O_DIRECT);
    let (nb_r, _nb_w) = pipe_with(0);
    let down = pattern(3000, 1);
    let up = pattern(100_000, 2);
    let packets = [10usize, 200, 4000];
    let (down2, up2) = (down.clone(), up.clone());
    let c = fork(move || {
        let (down, up) = (down2, up2);
        // SAFETY: closing our copies of the other side's ends.
        unsafe {
            libc::close(down_w);
            libc::close(up_r);
            libc::close(pk_w);
        }
        // SAFETY: plain libc calls on NUL-terminated paths.
        let fifo_w = unsafe { libc::open(cpath(&fifo).as_ptr(), libc::O_WRONLY) };
        // SAFETY: as above.
        let fifo_rw = unsafe { libc::open(cpath(&fifo).as_ptr(), libc::O_RDWR) };
        assert!(fifo_w >= 0 && fifo_rw >= 0);
        write_all(fifo_w, b"fifo-data");
        write_all(up_w, &up);
        // SAFETY: opening a NUL-terminated path.
        let proc_fd = unsafe { libc::open(c"/proc/self/stat".as_ptr(), libc::O_RDONLY) };
        assert!(proc_fd >= 0);
        let ev = if with_uffd { userfaultfd() } else { -1 };
        // SAFETY: fcntl without pointers.
        unsafe {
            libc::fcntl(down_r, libc::F_SETFL, libc::O_NONBLOCK);
            libc::fcntl(pk_r, libc::F_SETFL, libc::O_NONBLOCK | libc::O_DIRECT);
        }
        let mut first = true;
        let hooks = Hooks {
            ready: vec![format!("uffd={ev}")],
            check: Some(Box::new(move |f: &mut Vec<String>| {
                offset_step(file, f);
                let nonblock = getfl(nb_r) & libc::O_NONBLOCK != 0;
                f.push(format!("nonblock={nonblock}"));
                let mut buf = [0u8; 512];
                // SAFETY: pread into a local buffer.
                let n = unsafe { libc::pread(proc_fd, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
                // SAFETY: getpid has no preconditions.
                let me = unsafe { libc::getpid() };
                let proc_ok = n > 0 && String::from_utf8_lossy(&buf[..n as usize]).starts_with(&format!("{me} ("));
                f.push(format!("proc={proc_ok}"));
                if first {
                    first = false;
                    let (d, _) = drain(down_r);
                    let (p, lens) = drain(pk_r);
                    let want: Vec<u8> = packets.iter().flat_map(|&l| pattern(l, 3)).collect();
                    let verdict = if d != down {
                        format!("bad:down:{}", d.len())
                    } else if p != want || lens != packets {
                        format!("bad:packets:{lens:?}")
                    } else {
                        "ok".into()
                    };
                    f.push(format!("data={verdict}"));
                }
                proc_ok && nonblock
            })),
            ..Default::default()
        };
        serve("c", 1, hooks)
    });
    let _ = c;
    // SAFETY: closing our copies of the child's ends.
    unsafe {
        libc::close(down_r);
        libc::close(up_w);
        libc::close(pk_r);
    }
    write_all(down_w, &down);
    for &l in &packets {
        write_all(pk_w, &pattern(l, 3));
    }
    // After the fork: the child sees it through the shared description.
    // SAFETY: fcntl without pointers.
    unsafe { libc::fcntl(nb_r, libc::F_SETFL, libc::O_NONBLOCK) };
    // SAFETY: fcntl without pointers.
    unsafe { libc::fcntl(up_r, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut first = true;
    let hooks = Hooks {
        check: Some(Box::new(move |f: &mut Vec<String>| {
            offset_step(file, f);
            // SAFETY: fcntl without pointers.
            let cap = unsafe { libc::fcntl(up_r, libc::F_GETPIPE_SZ) };
            f.push(format!("cap={cap}"));
            if first {
                first = false;
                // The child wrote its part before saying ready.
                let (u, _) = drain(up_r);
                let (ff, _) = drain(fifo_r);
                let (gf, _) = drain(gone_fd);
                // SAFETY: fstat into a zeroed stat.
                let (nlink, mode) = unsafe {
                    let mut st: libc::stat = std::mem::zeroed();
                    libc::fstat(gone_fd, &mut st);
                    (st.st_nlink, st.st_mode & 0o777)
                };
                let link = std::fs::read_link(format!("/proc/self/fd/{gone_fd}")).unwrap_or_default();
                let verdict =
                    if gf != b"ghost-fifo" || nlink != 0 || mode != 0o640 || link.to_string_lossy() != gone_link {
                        format!("bad:gone-fifo:{}:{nlink}:{mode:o}:{}", String::from_utf8_lossy(&gf), link.display())
                    } else if u != up {
                        format!("bad:up:{}", u.len())
                    } else if ff != b"fifo-data" {
                        format!("bad:fifo:{}", String::from_utf8_lossy(&ff))
                    } else {
                        "ok".into()
                    };
                f.push(format!("data={verdict}"));
            }
            cap == 256 * 1024
        })),
        ..Default::default()
    };
    serve("root", 1, hooks)
}

fn sun(path: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; zeroed is valid.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as u16;
    let b = path.as_bytes();
    let abs = b.first() == Some(&b'@');
    for (i, c) in b.iter().enumerate() {
        a.sun_path[i] = if abs && i == 0 { 0 } else { *c as libc::c_char };
    }
    let len = 2 + b.len() + usize::from(!abs);
    (a, len as libc::socklen_t)
}

fn usock(ty: i32) -> i32 {
    // SAFETY: socket has no memory arguments.
    let fd = unsafe { libc::socket(libc::AF_UNIX, ty, 0) };
    assert!(fd >= 0, "socket");
    fd
}

fn ubind(fd: i32, path: &str) {
    let (a, l) = sun(path);
    // SAFETY: a valid sockaddr_un of length l.
    assert_eq!(unsafe { libc::bind(fd, &a as *const _ as *const libc::sockaddr, l) }, 0, "bind {path}");
}

fn uconnect(fd: i32, path: &str) {
    let (a, l) = sun(path);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::connect(fd, &a as *const _ as *const libc::sockaddr, l) }, 0, "connect {path}");
}

fn usendto(fd: i32, data: &[u8], path: &str) {
    let (a, l) = sun(path);
    // SAFETY: as above, data is a local buffer.
    let n = unsafe {
        libc::sendto(fd, data.as_ptr() as *const _, data.len(), 0, &a as *const _ as *const libc::sockaddr, l)
    };
    assert_eq!(n, data.len() as isize, "sendto {path}");
}

/// A socket name as text (`@x` abstract, `-` unnamed).
fn name_of(a: &libc::sockaddr_un, l: libc::socklen_t) -> String {
    let n = (l as usize).saturating_sub(2);
    if n == 0 {
        return "-".into();
    }
    let b: Vec<u8> = a.sun_path[..n].iter().map(|&c| c as u8).collect();
    if b[0] == 0 {
        format!("@{}", String::from_utf8_lossy(&b[1..]))
    } else {
        String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or(&[])).into_owned()
    }
}

fn sock_name(fd: i32, peer: bool) -> String {
    // SAFETY: zeroed sockaddr_un; the kernel writes at most l bytes.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut l = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: as above.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, &mut a as *mut _ as *mut libc::sockaddr, &mut l)
        } else {
            libc::getsockname(fd, &mut a as *mut _ as *mut libc::sockaddr, &mut l)
        }
    };
    if r != 0 {
        return format!("err{}", std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    name_of(&a, l)
}

/// Reads every message queued (non-blocking): (sender, bytes, creds pid,
/// descriptors received).
#[allow(clippy::type_complexity)]
fn recv_all(fd: i32) -> Vec<(String, Vec<u8>, i32, Vec<i32>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: zeroed plain data; the kernel fills them within their sizes.
        let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        let mut ctl = [0u64; 16];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut _, iov_len: buf.len() };
        // SAFETY: as above.
        let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
        m.msg_name = &mut a as *mut _ as *mut _;
        m.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as u32;
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.as_mut_ptr() as *mut _;
        m.msg_controllen = std::mem::size_of_val(&ctl);
        // SAFETY: the msghdr points at live local buffers.
        let n = unsafe { libc::recvmsg(fd, &mut m, libc::MSG_DONTWAIT) };
        if n < 0 {
            break;
        }
        let mut pid = 0;
        let mut fds = Vec::new();
        // SAFETY: walking the control buffer the kernel filled.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&m);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                    pid = (*(libc::CMSG_DATA(c) as *const libc::ucred)).pid;
                }
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                    let p = libc::CMSG_DATA(c) as *const i32;
                    fds.extend((0..n).map(|i| *p.add(i)));
                }
                c = libc::CMSG_NXTHDR(&m, c);
            }
        }
        out.push((name_of(&a, m.msg_namelen), buf[..n as usize].to_vec(), pid, fds));
        if n == 0 {
            break;
        }
    }
    out
}

fn file_mode(path: &str) -> u32 {
    std::fs::metadata(path).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777).unwrap_or(0)
}

fn unix(args: &[String]) -> ! {
    let dir = args.first().expect("unix DIR").clone();
    let srv = format!("{dir}/srv");
    let dg = format!("{dir}/dg");
    let abs = format!("@crtools-victim-{}", std::process::id());
    let l = usock(libc::SOCK_STREAM);
    ubind(l, &srv);
    std::fs::set_permissions(&srv, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    // SAFETY: listen without pointers.
    assert_eq!(unsafe { libc::listen(l, 8) }, 0);
    // A listener bound to a temporary name, its file then renamed into
    // place (and given mode 0604), as servers replace a socket atomically.
    let moved = format!("{dir}/moved");
    let ml = usock(libc::SOCK_STREAM);
    ubind(ml, &format!("{moved}.tmp"));
    // SAFETY: listen without pointers.
    assert_eq!(unsafe { libc::listen(ml, 8) }, 0);
    std::fs::set_permissions(format!("{moved}.tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o604)).unwrap();
    std::fs::rename(format!("{moved}.tmp"), &moved).unwrap();
    let d = usock(libc::SOCK_DGRAM);
    ubind(d, &dg);
    let one: i32 = 1;
    // SAFETY: setsockopt with a local int.
    unsafe { libc::setsockopt(d, libc::SOL_SOCKET, libc::SO_PASSCRED, &one as *const _ as *const _, 4) };
    let ad = usock(libc::SOCK_DGRAM);
    ubind(ad, &abs);
    let mut sp = [0; 2];
    // SAFETY: socketpair writes two ints.
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, sp.as_mut_ptr()) }, 0);
    let (sp_root, sp_c2) = (sp[0], sp[1]);
    let dir1 = dir.clone();
    let (dg1, abs1, srv1) = (dg.clone(), abs.clone(), srv.clone());
    let c1_pid = fork(move || {
        let c = usock(libc::SOCK_STREAM);
        ubind(c, &format!("{dir1}/c1.sock"));
        uconnect(c, &srv1);
        write_all(c, b"from-c1");
        let n = usock(libc::SOCK_DGRAM);
        ubind(n, &format!("{dir1}/dg1"));
        let u = usock(libc::SOCK_DGRAM);
        usendto(n, &[b'a'; 10], &dg1);
        usendto(u, &[b'b'; 5], &dg1);
        usendto(n, &[b'c'; 7000], &dg1);
        usendto(u, b"abstract", &abs1);
        let mut pair = [0; 2];
        // SAFETY: socketpair writes two ints.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, pair.as_mut_ptr()) }, 0);
        write_all(pair[1], b"to-self");
        let gone = usock(libc::SOCK_STREAM);
        let gone_path = format!("{dir1}/gone");
        ubind(gone, &gone_path);
        std::fs::remove_file(&gone_path).unwrap();
        // Its connection names its listener's maker, its pair itself.
        let creds_then = format!("{}|{}|{}", peercred(c), peercred(pair[0]), peercred(pair[1]));
        let mut first = true;
        let want_gone = gone_path.clone();
        let hooks = Hooks {
            check: Some(Box::new(move |f: &mut Vec<String>| {
                let names = format!("{}|{}", sock_name(c, false), sock_name(gone, false));
                let names_ok = names == format!("{}|{want_gone}", format!("{}/c1.sock", dir1.clone()).as_str());
                f.push(format!("names={names_ok}"));
                let creds_now = format!("{}|{}|{}", peercred(c), peercred(pair[0]), peercred(pair[1]));
                f.push(format!(
                    "creds={}",
                    if creds_now == creds_then { "ok".into() } else { format!("bad:{creds_then}->{creds_now}") }
                ));
                if first {
                    first = false;
                    // SAFETY: fcntl without pointers.
                    unsafe { libc::fcntl(c, libc::F_SETFL, libc::O_NONBLOCK) };
                    let got = recv_all(c);
                    let self_msg = recv_all(pair[0]);
                    let v = if got.len() != 1 || got[0].1 != b"to-c1" {
                        format!("bad:conn:{got:?}")
                    } else if self_msg.len() != 1 || self_msg[0].1 != b"to-self" {
                        format!("bad:pair:{self_msg:?}")
                    } else {
                        "ok".into()
                    };
                    f.push(format!("data={v}"));
                }
                names_ok
            })),
            ..Default::default()
        };
        serve("c1", 1, hooks)
    });
    let (c1_conn, _) = accept_one(l);
    write_all(c1_conn, b"to-c1");
    let srv2 = srv.clone();
    let c2_pid = fork(move || {
        let c = usock(libc::SOCK_STREAM);
        uconnect(c, &srv2);
        // The first record carries the read end of a pipe holding
        // "scm-pipe"; only the message holds that end afterwards.
        let (pr, pw) = pipe_with(0);
        write_all(pw, b"scm-pipe");
        send_with_fd(sp_c2, b"seven77", pr);
        // SAFETY: closing our copy: the end is in flight only.
        unsafe { libc::close(pr) };
        let r = [b'x'; 70];
        // SAFETY: sending a local buffer.
        assert_eq!(unsafe { libc::send(sp_c2, r.as_ptr() as *const _, r.len(), 0) }, r.len() as isize);
        // SAFETY: shutdown without pointers.
        unsafe { libc::shutdown(sp_c2, libc::SHUT_WR) };
        let mut first = true;
        let hooks = Hooks {
            check: Some(Box::new(move |f: &mut Vec<String>| {
                if first {
                    first = false;
                    // SAFETY: fcntl without pointers.
                    unsafe { libc::fcntl(sp_c2, libc::F_SETFL, libc::O_NONBLOCK) };
                    let got: Vec<usize> = recv_all(sp_c2).iter().map(|m| m.1.len()).collect();
                    f.push(format!(
                        "data={}",
                        if got == [3, 100, 2000] { "ok".to_string() } else { format!("bad:{got:?}") }
                    ));
                }
                let _ = c;
                true
            })),
            ..Default::default()
        };
        serve("c2", 1, hooks)
    });
    let (_c2_conn, _) = accept_one(l);
    // A client that says "bye" and goes: root keeps the accepted end, with
    // the bytes and the end of the stream queued.
    let srv4 = srv.clone();
    let c4 = fork(move || {
        // Other effective ids and groups (file system ids stay root's:
        // the socket file is 0640).
        let groups = [4242u32, 4243];
        // SAFETY: credential calls with local values.
        unsafe {
            assert_eq!(libc::setgroups(2, groups.as_ptr()), 0);
            assert_eq!(libc::setresgid(0, 4242, 0), 0);
            assert_eq!(libc::setresuid(0, 65534, 0), 0);
            libc::setfsuid(0);
        }
        let c = usock(libc::SOCK_STREAM);
        uconnect(c, &srv4);
        write_all(c, b"bye");
    });
    let (gone_conn, _) = accept_one(l);
    // SAFETY: reaping our own child, which exits at once.
    unsafe { libc::waitpid(c4, std::ptr::null_mut(), 0) };
    for n in [3usize, 100, 2000] {
        let r = vec![b'r'; n];
        // SAFETY: sending a local buffer.
        assert_eq!(unsafe { libc::send(sp_root, r.as_ptr() as *const _, n, 0) }, n as isize);
    }
    let srv3 = srv.clone();
    let dg3 = dg.clone();
    let c3 = fork(move || {
        let c = usock(libc::SOCK_STREAM);
        uconnect(c, &srv3);
        // A datagram client connected to the socket c1 sends to as well.
        let u = usock(libc::SOCK_DGRAM);
        uconnect(u, &dg3);
        let hooks = Hooks {
            check: Some(Box::new(move |f: &mut Vec<String>| {
                let p = sock_name(c, true);
                f.push(format!("peer={}", if p.ends_with("/srv") { "srv" } else { &p }));
                let dp = sock_name(u, true);
                f.push(format!("dgpeer={}", if dp.ends_with("/dg") { "dg" } else { &dp }));
                p.ends_with("/srv") && dp.ends_with("/dg")
            })),
            ..Default::default()
        };
        serve("c3", 1, hooks)
    });
    let _ = c2_pid;
    // What the kernel recorded: c1 and the gone c4 connected, root made the
    // seqpacket pair and listens.
    let creds_then = [c1_conn, gone_conn, sp_root, l].map(peercred).join("|");
    let want_c4 = format!("{c4}/65534/4242/[4242, 4243]");
    // The check of root runs when the test asks; c3's connection is left
    // in the backlog until then.
    let mut first = true;
    let dir0 = dir.clone();
    let hooks = Hooks {
        check: Some(Box::new(move |f: &mut Vec<String>| {
            let peer = sock_name(c1_conn, true);
            let names_ok = peer == format!("{dir0}/c1.sock") && sock_name(c1_conn, false) == srv;
            f.push(format!("c1peer={names_ok}"));
            let mode_ok = file_mode(&srv) == 0o640;
            f.push(format!("srvmode={mode_ok}"));
            // The renamed listener answers at its new path, keeps its
            // bound name and the file its mode.
            let c = usock(libc::SOCK_STREAM);
            let (a, alen) = sun(&moved);
            // SAFETY: connect with a local address.
            let connected = unsafe { libc::connect(c, &a as *const _ as *const libc::sockaddr, alen) } == 0;
            let accepted = connected && {
                // SAFETY: accept without an address.
                let fd = unsafe { libc::accept(ml, std::ptr::null_mut(), std::ptr::null_mut()) };
                // SAFETY: closing descriptors we own.
                unsafe { libc::close(fd) };
                fd >= 0
            };
            // SAFETY: closing a descriptor we own.
            unsafe { libc::close(c) };
            let name = sock_name(ml, false);
            let moved_ok = accepted && name == format!("{moved}.tmp") && file_mode(&moved) == 0o604;
            f.push(format!(
                "moved={}",
                if moved_ok {
                    "ok".to_string()
                } else {
                    format!("bad:{connected}:{accepted}:{name}:{:o}", file_mode(&moved))
                }
            ));
            let creds_now = [c1_conn, gone_conn, sp_root, l].map(peercred).join("|");
            let creds_ok = creds_now == creds_then && creds_then.contains(&want_c4);
            f.push(format!("creds={}", if creds_ok { "ok".into() } else { format!("bad:{creds_then}->{creds_now}") }));
            if first {
                first = false;
                // SAFETY: fcntl without pointers.
                unsafe {
                    libc::fcntl(c1_conn, libc::F_SETFL, libc::O_NONBLOCK);
                    libc::fcntl(l, libc::F_SETFL, libc::O_NONBLOCK);
                    libc::fcntl(sp_root, libc::F_SETFL, libc::O_NONBLOCK);
                }
                let conn = recv_all(c1_conn);
                // SAFETY: fcntl without pointers.
                unsafe { libc::fcntl(gone_conn, libc::F_SETFL, libc::O_NONBLOCK) };
                let gone: Vec<Vec<u8>> = recv_all(gone_conn).into_iter().map(|m| m.1).collect();
                let dgrams: Vec<(String, usize, i32)> = recv_all(d)
                    .into_iter()
                    .map(|(n, b, p, _)| (n.rsplit('/').next().unwrap_or("").to_string(), b.len(), p))
                    .collect();
                let want = vec![
                    ("dg1".to_string(), 10, c1_pid),
                    ("-".to_string(), 5, c1_pid),
                    ("dg1".to_string(), 7000, c1_pid),
                ];
                let abstract_msgs = recv_all(ad);
                let recs = recv_all(sp_root);
                let records: Vec<usize> = recs.iter().map(|m| m.1.len()).collect();
                let scm = match recs.first().map(|m| m.3.as_slice()) {
                    Some(&[fd]) => {
                        // SAFETY: fcntl without pointers.
                        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
                        drain(fd).0
                    }
                    _ => Vec::new(),
                };
                let pending = accept_one(l);
                let v = if conn.len() != 1 || conn[0].1 != b"from-c1" {
                    format!("bad:conn:{conn:?}")
                } else if dgrams != want {
                    format!("bad:dgrams:{dgrams:?}")
                } else if abstract_msgs.len() != 1 || abstract_msgs[0].1 != b"abstract" {
                    format!("bad:abstract:{abstract_msgs:?}")
                } else if records != [7, 70, 0] {
                    format!("bad:records:{records:?}")
                } else if gone != [b"bye".to_vec(), Vec::new()] || sock_name(gone_conn, false) != srv {
                    format!("bad:gone:{gone:?}")
                } else if scm != b"scm-pipe" {
                    format!("bad:scm:{}", String::from_utf8_lossy(&scm))
                } else if pending.0 < 0 || pending.1 != "-" {
                    format!("bad:pending:{pending:?}")
                } else if !peercred(pending.0).starts_with(&format!("{c3}/0/0/")) {
                    format!("bad:pending-creds:{}", peercred(pending.0))
                } else {
                    "ok".into()
                };
                f.push(format!("data={v}"));
            }
            names_ok && mode_ok
        })),
        ..Default::default()
    };
    serve("root", 1, hooks)
}

/// SO_PEERCRED and SO_PEERGROUPS of `fd`: "pid/uid/gid/groups".
fn peercred(fd: i32) -> String {
    let mut c = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut l = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the kernel writes at most l bytes into c.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, &mut c as *mut _ as *mut _, &mut l) };
    let mut g = [0u32; 16];
    let mut gl = 64 as libc::socklen_t;
    // SAFETY: the kernel writes at most gl bytes into g.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERGROUPS, g.as_mut_ptr() as *mut _, &mut gl) };
    let groups = if r == 0 { &g[..gl as usize / 4] } else { &[][..] };
    format!("{}/{}/{}/{groups:?}", c.pid, c.uid, c.gid)
}

/// Sends `data` with `fd` as SCM_RIGHTS.
fn send_with_fd(sock: i32, data: &[u8], fd: i32) {
    let mut ctl = [0u64; 4];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    // SAFETY: a zeroed msghdr pointing at local buffers; CMSG macros stay
    // inside ctl, which has room for one descriptor.
    unsafe {
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.as_mut_ptr() as *mut _;
        m.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(&m);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        *(libc::CMSG_DATA(c) as *mut i32) = fd;
        assert_eq!(libc::sendmsg(sock, &m, 0), data.len() as isize, "sendmsg SCM_RIGHTS");
    }
}

/// accept4 on a listening socket: (fd or -1, the peer's name).
fn accept_one(l: i32) -> (i32, String) {
    // SAFETY: zeroed sockaddr_un; the kernel writes at most len bytes.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: as above.
    let fd = unsafe { libc::accept4(l, &mut a as *mut _ as *mut libc::sockaddr, &mut len, 0) };
    if fd < 0 {
        return (-1, format!("err{}", std::io::Error::last_os_error().raw_os_error().unwrap_or(0)));
    }
    (fd, name_of(&a, len))
}

/// Byte `i` of the pipeline's stream.
fn stream_byte(i: u64) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 12)) as u8
}

fn fnv(sum: u64, b: &[u8]) -> u64 {
    b.iter().fold(sum, |h, &c| (h ^ c as u64).wrapping_mul(0x100_0000_01b3))
}

fn wait_file(path: &str) {
    while !std::path::Path::new(path).exists() {
        sleep_ms(5);
    }
}

/// Copies `from` to `to` until EOF or `limit` bytes; returns the bytes copied.
fn copy_fd(from: i32, to: i32, limit: u64) -> u64 {
    let mut buf = vec![0u8; 65536];
    let mut done = 0u64;
    while done < limit {
        let want = buf.len().min((limit - done) as usize);
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(from, buf.as_mut_ptr() as *mut _, want) };
        if n <= 0 {
            break;
        }
        write_all(to, &buf[..n as usize]);
        done += n as u64;
    }
    done
}

fn pipeline(args: &[String]) -> ! {
    const TOTAL: u64 = 6 << 20;
    let dir = args.first().expect("pipeline DIR").clone();
    let go = format!("{dir}/go");
    let (r1, w1) = pipe_with(0);
    let (r2, w2) = pipe_with(0);
    for fd in [w1, w2] {
        // SAFETY: fcntl without pointers.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20) }, 1 << 20);
    }
    let close = |fds: &[i32]| {
        for &fd in fds {
            // SAFETY: closing our copies of ends this process does not use.
            unsafe { libc::close(fd) };
        }
    };
    fork(move || {
        close(&[r1, r2, w2]);
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut at = 0u64;
            while at < TOTAL {
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = stream_byte(at + k as u64);
                }
                write_all(w1, &buf);
                at += buf.len() as u64;
                w.store(at, SeqCst);
            }
            // SAFETY: closing our write end: the reader sees EOF.
            unsafe { libc::close(w1) };
        });
        let hooks = Hooks {
            check: Some(Box::new(move |f: &mut Vec<String>| {
                f.push(format!("written={}", written.load(SeqCst)));
                true
            })),
            ..Default::default()
        };
        serve("p", 1, hooks)
    });
    let go_m = go.clone();
    fork(move || {
        close(&[w1, r2]);
        let copied = Arc::new(AtomicU64::new(0));
        let c2 = copied.clone();
        std::thread::spawn(move || {
            let mut n = copy_fd(r1, w2, 1 << 20);
            c2.store(n, SeqCst);
            wait_file(&go_m);
            n += copy_fd(r1, w2, u64::MAX);
            c2.store(n, SeqCst);
            // SAFETY: closing our write end: the consumer sees EOF.
            unsafe { libc::close(w2) };
        });
        let hooks = Hooks {
            check: Some(Box::new(move |f: &mut Vec<String>| {
                f.push(format!("copied={}", copied.load(SeqCst)));
                true
            })),
            ..Default::default()
        };
        serve("m", 1, hooks)
    });
    let go_c = go.clone();
    fork(move || {
        close(&[r1, w1, w2]);
        let state = Arc::new(Mutex::new((0u64, 0xcbf2_9ce4_8422_2325u64, false)));
        let st = state.clone();
        std::thread::spawn(move || {
            wait_file(&go_c);
            let mut buf = vec![0u8; 65536];
            loop {
                // SAFETY: reading into a local buffer.
                let n = unsafe { libc::read(r2, buf.as_mut_ptr() as *mut _, buf.len()) };
                let mut g = st.lock().unwrap();
                if n <= 0 {
                    g.2 = true;
                    break;
                }
                g.0 += n as u64;
                g.1 = fnv(g.1, &buf[..n as usize]);
            }
        });
        let hooks = Hooks {
            check: Some(Box::new(move |f: &mut Vec<String>| {
                let g = state.lock().unwrap();
                f.push(format!("got={} sum={:x} done={}", g.0, g.1, g.2));
                true
            })),
            ..Default::default()
        };
        serve("c", 1, hooks)
    });
    close(&[r1, w1, r2, w2]);
    plain("root", 1)
}

/// 6000 letters: more output than n_tty holds (4095; the pty driver
/// buffers 8 KiB more), no newline (ONLCR would
/// change it).
fn big_output() -> Vec<u8> {
    (0..6000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

fn ioctl_int(fd: i32, req: libc::c_ulong) -> i32 {
    let mut v = 0i32;
    // SAFETY: requests that write one int.
    unsafe { libc::ioctl(fd, req, &mut v) };
    v
}

/// A new pty master (unlocked unless `locked`) and its index.
fn open_pty(locked: bool) -> (i32, u32) {
    // SAFETY: plain libc calls on our own descriptors.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0, "posix_openpt");
        if !locked {
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
        }
        (m, ioctl_int(m, libc::TIOCGPTN as libc::c_ulong) as u32)
    }
}

fn nonblock(fd: i32) {
    // SAFETY: fcntl without pointers.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
}

fn pty(args: &[String]) -> ! {
    let variant = args.first().map(String::as_str).unwrap_or("");
    let canon = variant == "canon";
    let shared_tty = variant == "sharedtty";
    let (ma, a) = open_pty(false);
    let (mb, b) = open_pty(true);
    let (mc, c_idx) = open_pty(false);
    // SAFETY: opening the slave of C, both ends ours.
    let sc = unsafe { libc::open(cpath(&format!("/dev/pts/{c_idx}")).as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    assert!(sc >= 0);
    // SAFETY: TIOCPKT reads one int.
    unsafe { libc::ioctl(mc, libc::TIOCPKT, &1i32) };
    write_all(sc, b"packet-out");
    let idx = format!("idx={a},{b},{c_idx}");
    let (sync_r, sync_w) = pipe_with(0);
    let idx2 = idx.clone();
    fork(move || {
        // SAFETY: closing root's descriptors in the child.
        unsafe {
            for fd in [ma, mb, mc, sc, sync_r] {
                libc::close(fd);
            }
            libc::setsid();
        }
        let name = format!("/dev/pts/{a}");
        // A session leader without a terminal opening one gets it as its
        // controlling terminal.
        // SAFETY: opening a NUL-terminated path.
        let s = unsafe { libc::open(cpath(&name).as_ptr(), libc::O_RDWR) };
        assert!(s >= 0);
        // SAFETY: termios calls on our terminal.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            libc::tcgetattr(s, &mut t);
            t.c_lflag &= !libc::ECHO;
            if !canon {
                t.c_lflag &= !libc::ICANON;
            }
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            t.c_cc[libc::VERASE] = 8;
            libc::tcsetattr(s, libc::TCSANOW, &t);
            let ws = libc::winsize { ws_row: 40, ws_col: 132, ws_xpixel: 0, ws_ypixel: 0 };
            libc::ioctl(s, libc::TIOCSWINSZ, &ws);
            libc::ioctl(s, libc::TIOCEXCL);
        }
        write_all(s, b"from-slave\n");
        if variant == "memfd" {
            // A mapped memfd beside the controlling terminal: the engine's
            // ids of the two once collided (one replaced the other).
            // SAFETY: a new memfd, sized and mapped shared; the mapping
            // stays for the task's life.
            unsafe {
                let m = libc::memfd_create(c"beside-ctty".as_ptr(), 0);
                assert!(m >= 0 && libc::ftruncate(m, 4096) == 0);
                let p =
                    libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, m, 0);
                assert!(p != libc::MAP_FAILED);
                *(p as *mut u8) = 7;
                libc::close(m);
            }
        }
        // More than n_tty holds: the rest waits in the driver's buffer.
        write_all(s, &big_output());
        if variant == "stopped" {
            // SAFETY: flow control on our terminal.
            unsafe { libc::tcflow(s, libc::TCOOFF) };
        }
        let early_tty = if shared_tty {
            // SAFETY: opening a NUL-terminated path; c1 inherits it.
            unsafe { libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR) }
        } else {
            -1
        };
        let c1 = fork(move || {
            // SAFETY: job control calls on our terminal; SIGTTOU ignored
            // while a background group takes the foreground.
            unsafe {
                libc::close(sync_w);
                libc::setpgid(0, 0);
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(s, libc::getpid());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            }
            // The foreground group reads the terminal (c's group is
            // orphaned: its reads fail with EIO).
            let mut first = true;
            let hooks = Hooks {
                check: Some(Box::new(move |f: &mut Vec<String>| {
                    if !first {
                        return true;
                    }
                    first = false;
                    nonblock(s);
                    let got = if canon {
                        // A line, an end of file, and a partial line that
                        // a newline put in with TIOCSTI completes.
                        let mut reads = Vec::new();
                        let mut buf = [0u8; 256];
                        for k in 0..4 {
                            if k == 3 {
                                // SAFETY: TIOCSTI reads one byte.
                                unsafe { libc::ioctl(s, libc::TIOCSTI, c"\n".as_ptr()) };
                            }
                            // SAFETY: reading into a local buffer.
                            let n = unsafe { libc::read(s, buf.as_mut_ptr() as *mut _, buf.len()) };
                            reads.push(if n < 0 {
                                "EAGAIN".to_string()
                            } else {
                                format!("{:?}", String::from_utf8_lossy(&buf[..n as usize]))
                            });
                        }
                        reads.join("|")
                    } else {
                        String::from_utf8_lossy(&drain(s).0).into_owned()
                    };
                    let want = if canon { r#""typed-line\n"|""|EAGAIN|"part\n""# } else { "typed-input" };
                    let ok = got == want;
                    f.push(format!("input={}", if ok { "ok".into() } else { format!("bad:{}", got.escape_debug()) }));
                    ok
                })),
                ..Default::default()
            };
            serve("c1", 1, hooks)
        });
        // SAFETY: waiting for c1 to take the foreground.
        while unsafe { libc::tcgetpgrp(s) } != c1 {
            sleep_ms(1);
        }
        let tty = if early_tty >= 0 {
            early_tty
        } else {
            // SAFETY: opening a NUL-terminated path.
            unsafe { libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR) }
        };
        assert!(tty >= 0, "open /dev/tty");
        write_all(sync_w, b"k");
        // SAFETY: closing the sync pipe.
        unsafe { libc::close(sync_w) };
        let hooks = Hooks {
            ready: vec![idx2.clone()],
            check: Some(Box::new(move |f: &mut Vec<String>| {
                // SAFETY: terminal getters on our descriptors.
                let (sid, fg, ws, lflag, tty_ok, excl) = unsafe {
                    let mut ws: libc::winsize = std::mem::zeroed();
                    libc::ioctl(tty, libc::TIOCGWINSZ, &mut ws);
                    let mut t: libc::termios = std::mem::zeroed();
                    libc::tcgetattr(s, &mut t);
                    (
                        libc::tcgetsid(s),
                        libc::tcgetpgrp(tty),
                        (ws.ws_row, ws.ws_col),
                        t.c_lflag & (libc::ICANON | libc::ECHO),
                        libc::isatty(tty) == 1,
                        ioctl_int(s, libc::TIOCGEXCL as libc::c_ulong),
                    )
                };
                let mut name_buf = [0u8; 64];
                // SAFETY: ttyname_r writes a NUL-terminated name into the buffer.
                unsafe { libc::ttyname_r(s, name_buf.as_mut_ptr() as *mut libc::c_char, name_buf.len()) };
                let tname = std::ffi::CStr::from_bytes_until_nul(&name_buf)
                    .map(|c| c.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // SAFETY: getpid has no preconditions.
                let me = unsafe { libc::getpid() };
                let sid_ok = sid == me;
                let fg_ok = fg == c1;
                f.push(format!(
                    "{idx2} sid_ok={sid_ok} fg_ok={fg_ok} devtty={tty_ok} winsize={}x{} lflag={lflag:o} excl={excl} ttyname={tname}",
                    ws.0, ws.1
                ));
                sid_ok && fg_ok && tty_ok && tname == name
            })),
            ..Default::default()
        };
        serve("c", 1, hooks)
    });
    // SAFETY: closing the child's end; waiting for it to be set up.
    unsafe {
        libc::close(sync_w);
        let mut k = [0u8; 1];
        assert_eq!(libc::read(sync_r, k.as_mut_ptr() as *mut _, 1), 1);
        libc::close(sync_r);
    }
    write_all(
        ma,
        match variant {
            "canon" => b"typed-line\n\x04part",
            _ => b"typed-input",
        },
    );
    let mut first = true;
    let hooks = Hooks {
        ready: vec![idx.clone()],
        check: Some(Box::new(move |f: &mut Vec<String>| {
            let pkt = ioctl_int(mc, libc::TIOCGPKT as libc::c_ulong);
            let lock = ioctl_int(mb, libc::TIOCGPTLCK as libc::c_ulong);
            f.push(format!("{idx} pkt={pkt} lock={lock}"));
            let mut ok = pkt == 1 && lock == 1;
            if first {
                first = false;
                nonblock(ma);
                nonblock(mc);
                let (d, _) = drain(ma);
                let (p, _) = drain(mc);
                let want_a: Vec<u8> = b"from-slave\r\n".iter().copied().chain(big_output()).collect();
                let verdict = if d != want_a {
                    format!("bad:a:{}:{}", d.len(), String::from_utf8_lossy(&d[..d.len().min(40)]).escape_debug())
                } else if p != b"\0packet-out" {
                    format!("bad:c:{}", String::from_utf8_lossy(&p).escape_debug())
                } else {
                    "ok".into()
                };
                ok &= verdict == "ok";
                f.push(format!("data={verdict}"));
            }
            ok
        })),
        ..Default::default()
    };
    serve("root", 1, hooks)
}

fn ev_read(fd: i32) -> Result<u64, i32> {
    let mut v = 0u64;
    // SAFETY: reading 8 bytes into a local.
    let n = unsafe { libc::read(fd, &mut v as *mut u64 as *mut _, 8) };
    if n == 8 {
        Ok(v)
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

fn ev_write(fd: i32, v: u64) {
    // SAFETY: writing 8 bytes from a local.
    let n = unsafe { libc::write(fd, &v as *const u64 as *const _, 8) };
    assert_eq!(n, 8, "eventfd write");
}

fn epoll_add(ep: i32, fd: i32, events: u32, data: u64) {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: the kernel reads one epoll_event.
    assert_eq!(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }, 0, "epoll_ctl");
}

fn pidfd_open(pid: i32) -> i32 {
    // SAFETY: pidfd_open has no memory arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(fd >= 0, "pidfd_open");
    fd
}

/// "ok" when the pidfd reaches `want` (signal 0) and its fdinfo names it.
fn pidfd_check(fd: i32, want: i32) -> String {
    // SAFETY: signal 0 through a pidfd: a permission and existence check.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, 0, std::ptr::null::<u8>(), 0) };
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let pid = info.lines().find_map(|l| l.strip_prefix("Pid:")).map(|v| v.trim().to_string()).unwrap_or_default();
    if r != 0 {
        format!("bad:send:{}", std::io::Error::last_os_error())
    } else if pid != want.to_string() {
        format!("bad:pid:{pid}")
    } else {
        "ok".into()
    }
}

/// Reports the shared memfd offset, then moves it by one.
fn memfd_step(fd: i32, f: &mut Vec<String>) {
    // SAFETY: lseek and write on our own descriptor.
    unsafe {
        let off = libc::lseek(fd, 0, libc::SEEK_CUR);
        f.push(format!("moff={off}"));
        libc::lseek(fd, 1, libc::SEEK_CUR);
    }
}

fn events(args: &[String]) -> ! {
    let dir = args.first().expect("events DIR").clone();
    let wdir = format!("{dir}/w");
    std::fs::create_dir_all(format!("{wdir}/sub")).unwrap();
    // SAFETY: plain libc calls with local buffers; the process has one thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGWINCH);
        libc::sigaddset(&mut set, libc::SIGRTMIN() + 3);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: creating descriptors without memory arguments.
    let (sem, cnt) =
        unsafe { (libc::eventfd(3, libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK), libc::eventfd(0, libc::EFD_NONBLOCK)) };
    assert!(sem >= 0 && cnt >= 0);
    ev_write(cnt, (1u64 << 32) + 5);
    // The memfd, shared with c by inheritance.
    // SAFETY: NUL-terminated name.
    let mem = unsafe { libc::memfd_create(c"evmem".as_ptr(), libc::MFD_ALLOW_SEALING) };
    assert!(mem >= 0);
    // SAFETY: plain calls on our memfd with local buffers.
    unsafe {
        assert_eq!(libc::ftruncate(mem, 2 << 20), 0);
        assert_eq!(libc::pwrite(mem, b"hello".as_ptr() as *const _, 5, 0), 5);
        assert_eq!(libc::pwrite(mem, b"world".as_ptr() as *const _, 5, 1 << 20), 5);
        assert_eq!(libc::fcntl(mem, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK), 0);
    }
    // A bigger one, 12 MiB of data and a hole, across the dump's buffer.
    // SAFETY: NUL-terminated name.
    let big = unsafe { libc::memfd_create(c"evbig".as_ptr(), 0) };
    assert!(big >= 0);
    let big_data: Vec<u8> = (0..12u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    // SAFETY: pwrite from a local buffer.
    let n = unsafe { libc::pwrite(big, big_data.as_ptr() as *const _, big_data.len(), 3 << 20) };
    assert_eq!(n, big_data.len() as isize);
    let big_sum = fnv(0xcbf2_9ce4_8422_2325, &big_data);
    drop(big_data);
    // Mapped writable, then sealed against future writes: the mapping
    // stays writable, write(2) does not.
    // SAFETY: creating, sizing, mapping and sealing our own memfd.
    let (fw, fwmap) = unsafe {
        let fd = libc::memfd_create(c"evfw".as_ptr(), libc::MFD_ALLOW_SEALING);
        assert_eq!(libc::ftruncate(fd, 4096), 0);
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let p = libc::mmap(std::ptr::null_mut(), 4096, rw, libc::MAP_SHARED, fd, 0) as *mut u8;
        assert!(p as isize != -1);
        assert_eq!(libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_FUTURE_WRITE), 0);
        (fd, p as usize)
    };
    // Not executable, sealed so (MFD_NOEXEC_SEAL, Linux 6.3).
    // SAFETY: NUL-terminated name.
    let nx = unsafe { libc::memfd_create(c"evnx".as_ptr(), 0x8) };
    assert!(nx >= 0, "MFD_NOEXEC_SEAL: {}", std::io::Error::last_os_error());
    // Mapped too: shared (c inherits it) and private (a copied page).
    // SAFETY: mapping our memfd; the mappings live as long as the process.
    let (shm, pmap) = unsafe {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let shm = libc::mmap(std::ptr::null_mut(), 2 << 20, rw, libc::MAP_SHARED, mem, 0) as *mut u8;
        let pmap = libc::mmap(std::ptr::null_mut(), 8192, rw, libc::MAP_PRIVATE, mem, 0) as *mut u8;
        assert!(shm as isize != -1 && pmap as isize != -1);
        std::ptr::copy_nonoverlapping(b"PRIV".as_ptr(), pmap, 4);
        (shm as usize, pmap as usize)
    };
    let (pr, pw) = pipe_with(libc::O_NONBLOCK);
    let mut sp = [0i32; 2];
    // SAFETY: socketpair writes two ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0, sp.as_mut_ptr()) };
    assert_eq!(r, 0);
    // SAFETY: eventfd without memory arguments.
    let evk = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(evk >= 0);
    // SAFETY: getpid has no preconditions.
    let root_pid = unsafe { libc::getpid() };
    // A pidfd of root, non-blocking, that c inherits: one description.
    // SAFETY: pidfd_open has no memory arguments.
    let selfpfd = unsafe { libc::syscall(libc::SYS_pidfd_open, root_pid, libc::O_NONBLOCK) } as i32;
    assert!(selfpfd >= 0);
    // SAFETY: fcntl without pointers: inherited across exec too.
    unsafe { libc::fcntl(selfpfd, libc::F_SETFD, 0) };
    let c = fork(move || {
        // SAFETY: closing our copies of root's ends.
        unsafe {
            libc::close(pr);
            libc::close(sp[0]);
        }
        let pfd = pidfd_open(root_pid);
        // A memfd only mapped: no descriptor left.
        // SAFETY: creating, mapping and closing our own memfd.
        let only = unsafe {
            let fd = libc::memfd_create(c"maponly".as_ptr(), 0);
            assert_eq!(libc::ftruncate(fd, 4096), 0);
            let rw = libc::PROT_READ | libc::PROT_WRITE;
            let p = libc::mmap(std::ptr::null_mut(), 4096, rw, libc::MAP_SHARED, fd, 0) as *mut u8;
            assert!(p as isize != -1);
            std::ptr::copy_nonoverlapping(b"only".as_ptr(), p, 4);
            libc::close(fd);
            p as usize
        };
        let mut seq = 0u32;
        let mut last = std::time::Instant::now();
        let hooks = Hooks {
            ready: vec![format!("pidfd={pfd} selfpfd={selfpfd}")],
            tick: Some(Box::new(move || {
                if last.elapsed() >= Duration::from_millis(5) {
                    last = std::time::Instant::now();
                    seq += 1;
                    write_all(pw, &seq.to_ne_bytes());
                    write_all(sp[1], &seq.to_ne_bytes());
                    ev_write(evk, 1);
                }
            })),
            check: Some(Box::new(move |f: &mut Vec<String>| {
                memfd_step(mem, f);
                let p = pidfd_check(pfd, root_pid);
                f.push(format!("pidfd={p}"));
                let shared = pidfd_check(selfpfd, root_pid);
                let nb = getfl(selfpfd) & libc::O_NONBLOCK != 0;
                // SAFETY: fcntl without pointers.
                let cloexec = unsafe { libc::fcntl(selfpfd, libc::F_GETFD) } & libc::FD_CLOEXEC != 0;
                f.push(format!("selfpfd={shared} selfnb={nb} selfcloexec={cloexec}"));
                // SAFETY: reading our own live mappings.
                let (seen, only_ok) = unsafe {
                    (*((shm + 200) as *const u8), std::slice::from_raw_parts(only as *const u8, 4) == b"only")
                };
                let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
                f.push(format!("mapseen={seen} maponly={}", only_ok && maps.contains("/memfd:maponly")));
                p == "ok" && only_ok
            })),
        };
        serve("c", 1, hooks)
    });
    // SAFETY: closing our copies of c's ends.
    unsafe {
        libc::close(pw);
        libc::close(sp[1]);
    }
    let cfd = pidfd_open(c);
    // Timers: periodic 50 ms (left unread) and absolute an hour ahead.
    // SAFETY: timerfd calls with local itimerspecs.
    let (tp, tabs, tk) = unsafe {
        let tp = libc::timerfd_create(libc::CLOCK_MONOTONIC, 0);
        let per = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 },
            it_value: libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 },
        };
        assert_eq!(libc::timerfd_settime(tp, 0, &per, std::ptr::null_mut()), 0);
        let tabs = libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK);
        let mut now: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        let abs = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: now.tv_sec + 3600, tv_nsec: 0 },
        };
        let fl = libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET;
        assert_eq!(libc::timerfd_settime(tabs, fl, &abs, std::ptr::null_mut()), 0);
        let tk = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK);
        let k = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 },
            it_value: libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 },
        };
        assert_eq!(libc::timerfd_settime(tk, 0, &k, std::ptr::null_mut()), 0);
        (tp, tabs, tk)
    };
    // An alarm clock timer, relative, an hour ahead.
    // SAFETY: timerfd calls with a local itimerspec.
    let talarm = unsafe {
        let t = libc::timerfd_create(libc::CLOCK_BOOTTIME_ALARM, libc::TFD_NONBLOCK);
        assert!(t >= 0, "CLOCK_BOOTTIME_ALARM: {}", std::io::Error::last_os_error());
        let h = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: 3600, tv_nsec: 0 },
        };
        assert_eq!(libc::timerfd_settime(t, 0, &h, std::ptr::null_mut()), 0);
        t
    };
    // Signals pending for the signalfd.
    // SAFETY: signalfd with a local mask; kill and sigqueue to ourselves.
    let sfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGWINCH);
        libc::sigaddset(&mut set, libc::SIGRTMIN() + 3);
        let sfd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK);
        assert!(sfd >= 0);
        libc::kill(libc::getpid(), libc::SIGWINCH);
        for _ in 0..2 {
            libc::sigqueue(libc::getpid(), libc::SIGRTMIN() + 3, libc::sigval { sival_ptr: 42usize as *mut _ });
        }
        sfd
    };
    // inotify: wd 1 on w removed, 2 on w/sub, 3 on w again.
    // SAFETY: inotify calls on NUL-terminated paths.
    let ino = unsafe {
        let ino = libc::inotify_init1(libc::IN_NONBLOCK);
        assert!(ino >= 0);
        let w = cpath(&wdir);
        let sub = cpath(&format!("{wdir}/sub"));
        assert_eq!(libc::inotify_add_watch(ino, w.as_ptr(), libc::IN_CREATE), 1);
        assert_eq!(libc::inotify_add_watch(ino, sub.as_ptr(), libc::IN_DELETE | libc::IN_ONLYDIR), 2);
        assert_eq!(libc::inotify_rm_watch(ino, 1), 0);
        assert_eq!(libc::inotify_add_watch(ino, w.as_ptr(), libc::IN_CREATE), 3);
        // Drop the IN_IGNORED event of the removed watch: nothing queued.
        let mut buf = [0u8; 256];
        libc::read(ino, buf.as_mut_ptr() as *mut _, buf.len());
        ino
    };
    // The epoll sets: inner watches the pipe (ET), the socket, the eventfd
    // under two numbers (the first then closed) and the 20 ms timer.
    // SAFETY: epoll_create1 and dup without memory arguments.
    let (ep, outer, evk2) =
        unsafe { (libc::epoll_create1(0), libc::epoll_create1(libc::EPOLL_CLOEXEC), libc::dup(evk)) };
    assert!(ep >= 0 && outer >= 0 && evk2 >= 0);
    epoll_add(ep, pr, (libc::EPOLLIN | libc::EPOLLET) as u32, 1);
    epoll_add(ep, sp[0], libc::EPOLLIN as u32, 2);
    epoll_add(ep, evk, libc::EPOLLIN as u32, 3);
    epoll_add(ep, evk2, libc::EPOLLIN as u32, 4);
    epoll_add(ep, tk, libc::EPOLLIN as u32, 5);
    epoll_add(outer, ep, libc::EPOLLIN as u32, 9);
    // SAFETY: closing a number the epoll still watches (evk2 keeps the file).
    unsafe { libc::close(evk) };
    // A set nobody waits on again, with every flag: its one-shot item on
    // the ready counter fires once now and stays disabled.
    // SAFETY: epoll_create1 without memory arguments.
    let ep3 = unsafe { libc::epoll_create1(0) };
    assert!(ep3 >= 0);
    epoll_add(ep3, cnt, (libc::EPOLLIN | libc::EPOLLONESHOT) as u32, 0x1122334455667788);
    let flags = libc::EPOLLIN | libc::EPOLLET | libc::EPOLLEXCLUSIVE | libc::EPOLLWAKEUP;
    epoll_add(ep3, sem, flags as u32, u64::MAX);
    epoll_add(ep3, sfd, (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP) as u32, 7);
    epoll_add(ep3, tabs, libc::EPOLLOUT as u32, 8);
    // And c's pidfd (opened only once the tree exists at restore).
    epoll_add(ep3, cfd, libc::EPOLLIN as u32, 9);
    // A set watching only the signalfd: it must wake up for a signal
    // raised after restore.
    // SAFETY: epoll_create1 without memory arguments.
    let eps = unsafe { libc::epoll_create1(0) };
    assert!(eps >= 0);
    epoll_add(eps, sfd, libc::EPOLLIN as u32, 1);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: epoll_wait into a local array.
    let n = unsafe { libc::epoll_wait(ep3, evs.as_mut_ptr(), 8, 0) };
    assert!(n >= 1, "ep3: {n}");
    // Unread ticks pile up.
    sleep_ms(300);

    #[derive(Default)]
    struct Loop {
        pseq: u32,
        useq: u32,
        evsum: u64,
        tticks: u64,
        seqok: bool,
        pbuf: Vec<u8>,
        ubuf: Vec<u8>,
    }
    let st = std::rc::Rc::new(std::cell::RefCell::new(Loop { seqok: true, ..Default::default() }));
    fn take_seqs(buf: &mut Vec<u8>, last: &mut u32, ok: &mut bool) {
        while buf.len() >= 4 {
            let v = u32::from_ne_bytes(buf[..4].try_into().unwrap());
            buf.drain(..4);
            if v != *last + 1 {
                *ok = false;
            }
            *last = v;
        }
    }
    fn read_some(fd: i32, out: &mut Vec<u8>) {
        let mut b = [0u8; 4096];
        loop {
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(fd, b.as_mut_ptr() as *mut _, b.len()) };
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&b[..n as usize]);
        }
    }
    let st2 = st.clone();
    let tick = move || {
        let mut s = st2.borrow_mut();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: epoll_wait into a local array.
        let n = unsafe { libc::epoll_wait(outer, evs.as_mut_ptr(), 8, 0) };
        if n <= 0 {
            return;
        }
        // SAFETY: as above.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 8, 0) };
        for e in &evs[..n.max(0) as usize] {
            let s = &mut *s;
            match e.u64 {
                1 => {
                    read_some(pr, &mut s.pbuf);
                    take_seqs(&mut s.pbuf, &mut s.pseq, &mut s.seqok);
                }
                2 => {
                    read_some(sp[0], &mut s.ubuf);
                    take_seqs(&mut s.ubuf, &mut s.useq, &mut s.seqok);
                }
                3 | 4 => s.evsum += ev_read(evk2).unwrap_or(0),
                5 => s.tticks += ev_read(tk).unwrap_or(0),
                _ => s.seqok = false,
            }
        }
    };
    let mut first = true;
    let hooks = Hooks {
        ready: vec![format!(
            "pidfd={cfd} sem={sem} tp={tp} ep={ep} outer={outer} ep3={ep3} ino={ino} tabs={tabs} talarm={talarm}"
        )],
        tick: Some(Box::new(tick)),
        check: Some(Box::new(move |f: &mut Vec<String>| {
            let mut ok = true;
            if first {
                first = false;
                let mut sems = Vec::new();
                loop {
                    match ev_read(sem) {
                        Ok(v) => sems.push(v.to_string()),
                        Err(e) => {
                            sems.push(if e == libc::EAGAIN { "EAGAIN".into() } else { format!("err{e}") });
                            break;
                        }
                    }
                    if sems.len() > 5 {
                        break;
                    }
                }
                f.push(format!("sem={}", sems.join(",")));
                f.push(format!("cnt={}", ev_read(cnt).map(|v| v.to_string()).unwrap_or_else(|e| format!("err{e}"))));
                let t1 = ev_read(tp).unwrap_or(0);
                let t2 = ev_read(tp).unwrap_or(0);
                f.push(format!("tp1={t1} tp2={t2}"));
                // SAFETY: timerfd_gettime into a local.
                let left = unsafe {
                    let mut cur: libc::itimerspec = std::mem::zeroed();
                    libc::timerfd_gettime(tabs, &mut cur);
                    cur.it_value.tv_sec
                };
                f.push(format!("tabs={left}"));
                // SAFETY: timerfd_gettime into a local.
                let aleft = unsafe {
                    let mut cur: libc::itimerspec = std::mem::zeroed();
                    libc::timerfd_gettime(talarm, &mut cur);
                    cur.it_value.tv_sec
                };
                f.push(format!("talarm={aleft}"));
                let mut sigs = Vec::new();
                loop {
                    // SAFETY: reading one signalfd_siginfo into a local.
                    let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
                    let sz = std::mem::size_of::<libc::signalfd_siginfo>();
                    // SAFETY: as above.
                    let n = unsafe { libc::read(sfd, &mut si as *mut _ as *mut _, sz) };
                    if n as usize != sz {
                        break;
                    }
                    if si.ssi_signo as i32 == libc::SIGWINCH {
                        sigs.push("WINCH".to_string());
                    } else {
                        sigs.push(format!("RT3:{}", si.ssi_ptr));
                    }
                }
                f.push(format!("sfd={}", sigs.join(",")));
                let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 2];
                // SAFETY: raise a blocked signal, epoll_wait into a local
                // array, read the signal back into a local siginfo.
                let (quiet, woke) = unsafe {
                    let quiet = libc::epoll_wait(eps, evs.as_mut_ptr(), 2, 0);
                    libc::kill(libc::getpid(), libc::SIGWINCH);
                    let woke = libc::epoll_wait(eps, evs.as_mut_ptr(), 2, 100);
                    let mut si: libc::signalfd_siginfo = std::mem::zeroed();
                    libc::read(sfd, &mut si as *mut _ as *mut _, std::mem::size_of::<libc::signalfd_siginfo>());
                    (quiet, woke)
                };
                f.push(format!("sfdep={quiet},{woke}"));
                let _ = std::fs::File::create(format!("{wdir}/after"));
                let mut buf = [0u8; 512];
                // SAFETY: reading into a local buffer.
                let n = unsafe { libc::read(ino, buf.as_mut_ptr() as *mut _, buf.len()) };
                let got = if n >= 16 {
                    let wd = i32::from_ne_bytes(buf[0..4].try_into().unwrap());
                    let mask = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
                    let len = u32::from_ne_bytes(buf[12..16].try_into().unwrap()) as usize;
                    let name = String::from_utf8_lossy(&buf[16..16 + len]).trim_end_matches('\0').to_string();
                    format!("{wd}:{mask:x}:{name}")
                } else {
                    format!("none:{n}")
                };
                f.push(format!("ino={got}"));
                // The watch on the pidfd is keyed by this very description
                // and number: EPOLL_CTL_MOD finds it.
                let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 9 };
                // SAFETY: the kernel reads one epoll_event.
                let r = unsafe { libc::epoll_ctl(ep3, libc::EPOLL_CTL_MOD, cfd, &mut ev) };
                f.push(format!("pidmod={r}"));
            }
            let s = st.borrow();
            f.push(format!("pseq={} useq={} evsum={} tticks={} seqok={}", s.pseq, s.useq, s.evsum, s.tticks, s.seqok));
            ok &= s.seqok;
            let mut buf = [0u8; 5];
            // SAFETY: pread into local buffers.
            let mem_ok = unsafe {
                libc::pread(mem, buf.as_mut_ptr() as *mut _, 5, 0) == 5 && &buf == b"hello" && {
                    libc::pread(mem, buf.as_mut_ptr() as *mut _, 5, 1 << 20) == 5 && &buf == b"world"
                }
            } && std::fs::metadata(format!("/proc/self/fd/{mem}")).map(|m| m.len()).unwrap_or(0) == 2 << 20
                && std::fs::read_link(format!("/proc/self/fd/{mem}"))
                    .map(|l| l.to_string_lossy().starts_with("/memfd:evmem"))
                    .unwrap_or(false)
                // SAFETY: F_GET_SEALS without pointers.
                && unsafe { libc::fcntl(mem, libc::F_GET_SEALS) } == libc::F_SEAL_SHRINK;
            f.push(format!("mem={mem_ok}"));
            ok &= mem_ok;
            let mut b = vec![0u8; 15 << 20];
            // SAFETY: pread into a local buffer.
            let n = unsafe { libc::pread(big, b.as_mut_ptr() as *mut _, b.len(), 0) };
            let big_ok = n == 15 << 20
                && b[..3 << 20].iter().all(|&x| x == 0)
                && fnv(0xcbf2_9ce4_8422_2325, &b[3 << 20..]) == big_sum;
            f.push(format!("big={big_ok}"));
            ok &= big_ok;
            // SAFETY: a write through our own writable mapping, a pread and
            // a write(2) with local buffers, fcntl without pointers.
            let fw_ok = unsafe {
                *(fwmap as *mut u8) = b'M';
                let mut b = [0u8; 1];
                libc::pread(fw, b.as_mut_ptr() as *mut _, 1, 0);
                let w = libc::write(fw, b"x".as_ptr() as *const _, 1);
                b[0] == b'M' && w == -1 && libc::fcntl(fw, libc::F_GET_SEALS) == libc::F_SEAL_FUTURE_WRITE
            };
            f.push(format!("futurewrite={fw_ok}"));
            ok &= fw_ok;
            use std::os::unix::fs::PermissionsExt;
            let nx_mode = std::fs::metadata(format!("/proc/self/fd/{nx}")).map(|m| m.permissions().mode() & 0o777);
            // SAFETY: fcntl without pointers.
            let nx_seals = unsafe { libc::fcntl(nx, libc::F_GET_SEALS) };
            f.push(format!("noexec={:o},{nx_seals:#x}", nx_mode.unwrap_or(0)));
            // The shared mapping and the descriptor are one file; the
            // private mapping keeps its own page over the file's.
            // SAFETY: our own live mappings; pread into a local.
            let (map_ok, priv_ok, now) = unsafe {
                let sh = std::slice::from_raw_parts(shm as *const u8, 2 << 20);
                let pm = std::slice::from_raw_parts(pmap as *const u8, 8192);
                let round = *(shm as *const u8).add(200);
                *(shm as *mut u8).add(200) = round.wrapping_add(1);
                let mut b = [0u8; 1];
                libc::pread(mem, b.as_mut_ptr() as *mut _, 1, 200);
                (
                    &sh[..5] == b"hello" && &sh[1 << 20..(1 << 20) + 5] == b"world" && b[0] == round.wrapping_add(1),
                    &pm[..5] == b"PRIVo" && pm[4096..4100] == [0; 4],
                    round.wrapping_add(1),
                )
            };
            f.push(format!("mapok={map_ok} privok={priv_ok} mapround={now}"));
            ok &= map_ok && priv_ok;
            memfd_step(mem, f);
            let p = pidfd_check(cfd, c);
            f.push(format!("pidfd={p}"));
            ok && p == "ok"
        })),
    };
    serve("root", 1, hooks)
}

fn fanotify(args: &[String]) -> ! {
    let dir = args.first().expect("fanotify DIR").clone();
    let file = format!("{dir}/f");
    std::fs::write(&file, b"x").unwrap();
    // SAFETY: fanotify calls on NUL-terminated paths.
    let fan = unsafe {
        let fan = libc::fanotify_init(libc::FAN_CLASS_NOTIF | libc::FAN_NONBLOCK, libc::O_RDONLY as u32);
        assert!(fan >= 0, "fanotify_init: {}", std::io::Error::last_os_error());
        let f = cpath(&file);
        let m = cpath(&format!("{dir}/m"));
        assert_eq!(libc::fanotify_mark(fan, libc::FAN_MARK_ADD, libc::FAN_CLOSE_WRITE, libc::AT_FDCWD, f.as_ptr()), 0);
        let ign = libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORED_MASK | libc::FAN_MARK_IGNORED_SURV_MODIFY;
        assert_eq!(libc::fanotify_mark(fan, ign, libc::FAN_OPEN, libc::AT_FDCWD, f.as_ptr()), 0);
        let mnt = libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT;
        assert_eq!(libc::fanotify_mark(fan, mnt, libc::FAN_CLOSE_WRITE, libc::AT_FDCWD, m.as_ptr()), 0);
        fan
    };
    let mut first = true;
    let hooks = Hooks {
        ready: vec![format!("fan={fan}")],
        check: Some(Box::new(move |f: &mut Vec<String>| {
            if !first {
                return true;
            }
            first = false;
            std::fs::write(&file, b"y").unwrap();
            std::fs::write(format!("{dir}/m/x"), b"z").unwrap();
            let mut buf = [0u8; 4096];
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(fan, buf.as_mut_ptr() as *mut _, buf.len()) };
            let mut names = Vec::new();
            let mut at = 0usize;
            while n > 0 && at + 24 <= n as usize {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                let mask = u64::from_ne_bytes(buf[at + 8..at + 16].try_into().unwrap());
                let fd = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
                // SAFETY: closing the event's descriptor.
                unsafe { libc::close(fd) };
                let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                names.push(format!("{name}:{mask:x}"));
                at += len.max(24);
            }
            f.push(format!("fan={}", names.join(",")));
            true
        })),
        ..Default::default()
    };
    serve("root", 1, hooks)
}

fn pidzombie() -> ! {
    let z = fork(|| {
        // SAFETY: leaving at once with status 5.
        unsafe { libc::_exit(5) }
    });
    wait_zombie(z);
    let pfd = pidfd_open(z);
    let mut first = true;
    let hooks = Hooks {
        ready: vec![format!("z={z} pidfd={pfd}")],
        check: Some(Box::new(move |f: &mut Vec<String>| {
            if !first {
                return true;
            }
            first = false;
            let mut p = libc::pollfd { fd: pfd, events: libc::POLLIN, revents: 0 };
            // SAFETY: poll of one local pollfd; waitid into a local siginfo.
            let (n, r, st) = unsafe {
                let n = libc::poll(&mut p, 1, 0);
                let mut si: libc::siginfo_t = std::mem::zeroed();
                let r = libc::waitid(libc::P_PIDFD, pfd as libc::id_t, &mut si, libc::WEXITED);
                (n, r, si.si_status())
            };
            f.push(format!("zpoll={n} zstatus={}", if r == 0 { st.to_string() } else { format!("err{r}") }));
            n == 1 && r == 0 && st == 5
        })),
        ..Default::default()
    };
    serve("root", 1, hooks)
}

/// The word at index `i` of the `cow` mode's memory.
fn cow_word(i: usize) -> u64 {
    let mut x = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn cow(args: &[String]) -> ! {
    let n: usize = args.first().and_then(|a| a.parse().ok()).expect("cow N MIB");
    let mib: usize = args.get(1).and_then(|a| a.parse().ok()).expect("cow N MIB");
    let len = mib << 20;
    // SAFETY: a fresh private anonymous mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap {mib} MiB");
    let words = p as *mut u64;
    for i in 0..len / 8 {
        // SAFETY: in bounds of the mapping.
        unsafe { words.add(i).write(cow_word(i)) };
    }
    let addr = p as usize;
    let role = move |name: String| -> ! {
        let hooks = Hooks {
            ready: vec![format!("cow_at={addr:#x}")],
            check: Some(Box::new(move |f: &mut Vec<String>| {
                let words = addr as *const u64;
                let per_page = 4096 / 8;
                for pg in 0..len / 4096 {
                    for i in [pg * per_page, pg * per_page + per_page - 1] {
                        // SAFETY: in bounds of the mapping, read only (the page stays shared).
                        let got = unsafe { words.add(i).read_volatile() };
                        if got != cow_word(i) {
                            f.push(format!("cow=bad:word{i}"));
                            return false;
                        }
                    }
                }
                f.push("cow=ok".into());
                true
            })),
            ..Default::default()
        };
        serve(&name, 1, hooks)
    };
    for c in 0..n {
        fork(move || role(format!("c{c}")));
    }
    role("root".into())
}

/// A word of the `sysvshm` pattern.
fn shm_word(tag: u64, i: usize) -> u64 {
    (tag << 56) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// B's pages never touched: they stay holes (and read back as zeros).
fn shm_hole(pg: usize) -> bool {
    pg == 3 || pg == 9 || pg == 15
}

/// The line of /proc/self/smaps for the VMA at `addr`: (perms, has `mw`, inode).
fn shm_vma(addr: usize) -> Option<(String, bool, u64)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut cur: Option<(String, u64)> = None;
    for l in smaps.lines() {
        if let Some(f) = l.strip_prefix("VmFlags:") {
            if let Some((perms, ino)) = cur.take() {
                return Some((perms, f.split_whitespace().any(|w| w == "mw"), ino));
            }
            continue;
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        if let Some((a, b)) = w.first().and_then(|r| r.split_once('-')).filter(|_| w.len() >= 5 && !w[0].ends_with(':'))
        {
            let (a, b) = (usize::from_str_radix(a, 16).unwrap_or(0), usize::from_str_radix(b, 16).unwrap_or(0));
            if a <= addr && addr < b {
                cur = Some((w[1].to_string(), w[4].parse().unwrap_or(0)));
            }
        }
    }
    None
}

fn sysvshm() -> ! {
    const PG: usize = 4096;
    const A_SIZE: usize = 3 * PG + 100;
    const B_PAGES: usize = 16;
    // SAFETY: getpid has no preconditions.
    let key = 0x5e00_0000 | (unsafe { libc::getpid() } & 0xff_ffff);
    // SAFETY: SysV calls on segments of our own; every pointer is an
    // attachment of the size we asked for.
    let (a_id, b_id, a, b) = unsafe {
        let a_id = libc::shmget(key, A_SIZE, libc::IPC_CREAT | libc::IPC_EXCL | 0o640);
        let b_id = libc::shmget(libc::IPC_PRIVATE, B_PAGES * PG, libc::IPC_CREAT | 0o600);
        assert!(a_id >= 0 && b_id >= 0, "shmget: {}", std::io::Error::last_os_error());
        let a = libc::shmat(a_id, std::ptr::null(), 0) as *mut u64;
        let b = libc::shmat(b_id, std::ptr::null(), 0) as *mut u64;
        assert!(a as isize != -1 && b as isize != -1, "shmat");
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        assert_eq!(libc::shmctl(a_id, libc::IPC_STAT, &mut ds), 0);
        ds.shm_perm.uid = 1234;
        ds.shm_perm.gid = 4321;
        assert_eq!(libc::shmctl(a_id, libc::IPC_SET, &mut ds), 0);
        (a_id, b_id, a, b)
    };
    for i in 0..A_SIZE / 8 {
        // SAFETY: inside A.
        unsafe { a.add(i).write_volatile(shm_word(0xa, i)) };
    }
    for pg in (0..B_PAGES).filter(|&p| !shm_hole(p)) {
        for w in 0..PG / 8 {
            let i = pg * PG / 8 + w;
            // SAFETY: inside B.
            unsafe { b.add(i).write_volatile(shm_word(0xb, i)) };
        }
    }
    // Slots 0 and 1 of page 0 of each: root's and child's rounds.
    for k in 0..2 {
        // SAFETY: inside A and B.
        unsafe {
            a.add(k).write_volatile(100);
            b.add(k).write_volatile(100);
        }
    }
    // SAFETY: pages 6..10 of our own attachment of B; then B is marked removed.
    unsafe {
        assert_eq!(libc::mprotect(b.add(6 * PG / 8) as *mut _, 4 * PG, libc::PROT_READ), 0);
        assert_eq!(libc::shmctl(b_id, libc::IPC_RMID, std::ptr::null_mut()), 0);
    }
    let role = move |me: usize, ro: *const u64| -> ! {
        let mut round = 0u64;
        let hooks = Hooks {
            ready: vec![format!("a_id={a_id} b_id={b_id} key={key:#x}")],
            check: Some(Box::new(move |f: &mut Vec<String>| {
                round += 1;
                let other = 1 - me;
                // SAFETY: in-bounds accesses to attachments that live forever.
                let (ao, bo) = unsafe {
                    a.add(me).write_volatile(round);
                    b.add(me).write_volatile(round);
                    (a.add(other).read_volatile(), b.add(other).read_volatile())
                };
                f.push(format!("round={round} a_other={ao} b_other={bo}"));
                if !ro.is_null() {
                    // SAFETY: the read-only attachment of A.
                    let v = unsafe { ro.add(other).read_volatile() };
                    f.push(format!("ro_other={v}"));
                }
                // Every other word as it was written.
                let mut data = String::from("ok");
                for i in 2..A_SIZE / 8 {
                    // SAFETY: inside A.
                    let v = unsafe { a.add(i).read_volatile() };
                    if v != shm_word(0xa, i) {
                        data = format!("bad:a[{i}]={v:#x}");
                        break;
                    }
                }
                for i in 2..B_PAGES * PG / 8 {
                    let want = if shm_hole(i * 8 / PG) { 0 } else { shm_word(0xb, i) };
                    // SAFETY: inside B.
                    let v = unsafe { b.add(i).read_volatile() };
                    if v != want && data == "ok" {
                        data = format!("bad:b[{i}]={v:#x}");
                    }
                }
                // A's tail past its size, up to the page end, reads as zero.
                for i in A_SIZE..4 * PG {
                    // SAFETY: inside the last page of A's attachment.
                    let v = unsafe { (a as *const u8).add(i).read_volatile() };
                    if v != 0 && data == "ok" {
                        data = format!("bad:a_tail[{i}]={v}");
                    }
                }
                // SAFETY: IPC_STAT into zeroed structs.
                let (sa, sb, ra, rb) = unsafe {
                    let mut sa: libc::shmid_ds = std::mem::zeroed();
                    let mut sb: libc::shmid_ds = std::mem::zeroed();
                    let ra = libc::shmctl(a_id, libc::IPC_STAT, &mut sa);
                    let rb = libc::shmctl(b_id, libc::IPC_STAT, &mut sb);
                    (sa, sb, ra, rb)
                };
                f.push(format!(
                    "a_id={a_id} a_stat={ra} a_key={:#x} a_size={} a_mode={:o} a_owner={}:{} a_cuid={}:{} a_nattch={} \
                     b_id={b_id} b_stat={rb} b_key={:#x} b_nattch={} b_dest={}",
                    sa.shm_perm.__key,
                    sa.shm_segsz,
                    sa.shm_perm.mode & 0o777,
                    sa.shm_perm.uid,
                    sa.shm_perm.gid,
                    sa.shm_perm.cuid,
                    sa.shm_perm.cgid,
                    sa.shm_nattch,
                    sb.shm_perm.__key,
                    sb.shm_nattch,
                    sb.shm_perm.mode as u32 & 0o1000 != 0,
                ));
                // Where and how each attachment is mapped.
                let mut maps = String::from("ok");
                let mut want = vec![
                    (a as usize, "rw-s", true, a_id),
                    (b as usize, "rw-s", true, b_id),
                    (b as usize + 6 * PG, "r--s", true, b_id),
                    (b as usize + 10 * PG, "rw-s", true, b_id),
                ];
                if !ro.is_null() {
                    want.push((ro as usize, "r--s", false, a_id));
                }
                for (addr, perms, mw, id) in want {
                    let got = shm_vma(addr);
                    if got != Some((perms.to_string(), mw, id as u64)) && maps == "ok" {
                        maps = format!("bad:{addr:#x}:{got:?}");
                    }
                }
                f.push(format!("data={data} maps={maps}"));
                data == "ok" && maps == "ok" && ra == 0 && rb == 0
            })),
            ..Default::default()
        };
        serve(if me == 0 { "root" } else { "child" }, 1, hooks)
    };
    fork(move || {
        // SAFETY: a read-only attachment of A, placed by the kernel.
        let ro = unsafe { libc::shmat(a_id, std::ptr::null(), libc::SHM_RDONLY) } as *const u64;
        assert!(ro as isize != -1, "shmat read-only");
        role(1, ro)
    });
    role(0, std::ptr::null())
}

/// Clones a child sharing what `flags` say (CLONE_FILES, CLONE_FS) with
/// SIGCHLD as its exit signal; the child runs `f`, which never returns.
/// Like fork, the child gets a copy of the address space and goes on on
/// its copy of the stack.
fn clone_sharing(flags: libc::c_int, f: impl FnOnce()) -> i32 {
    let flags = (flags | libc::SIGCHLD) as libc::c_long;
    // SAFETY: raw clone without CLONE_VM and without a new stack behaves as
    // fork; every caller clones while the process has one thread.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) } as i32;
    assert!(pid >= 0, "clone failed");
    if pid == 0 {
        f();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// The descriptor `cloneshare` probes its shared table with.
const PROBE_FD: i32 = 100;

/// `none`, `cloexec` or `open`: the state of descriptor `fd`.
fn fd_state(fd: i32) -> &'static str {
    // SAFETY: fcntl on a number, no memory involved.
    match unsafe { libc::fcntl(fd, libc::F_GETFD) } {
        r if r < 0 => "none",
        r if r & libc::FD_CLOEXEC != 0 => "cloexec",
        _ => "open",
    }
}

/// The umask from /proc/self/status (reading it with umask(2) would
/// change it for a moment under a process sharing it).
fn status_umask() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
        .unwrap_or_else(|| "?".into())
}

fn cwd_string() -> String {
    std::env::current_dir().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|e| format!("err:{e}"))
}

/// The common fields of a `cloneshare` check; false when the data file's
/// descriptor lost its contents or offset.
fn cloneshare_fields(fd: i32, f: &mut Vec<String>) -> bool {
    let mut buf = [0u8; 16];
    // SAFETY: pread into a local buffer, lseek on a number.
    let (n, off) = unsafe { (libc::pread(fd, buf.as_mut_ptr() as *mut _, 16, 0), libc::lseek(fd, 0, libc::SEEK_CUR)) };
    f.push(format!("fd_off={off} cwd={} umask={} probe={}", cwd_string(), status_umask(), fd_state(PROBE_FD)));
    n == 16 && &buf == b"0123456789abcdef" && off == 5
}

fn cloneshare(args: &[String]) -> ! {
    let dir = std::path::PathBuf::from(args.first().expect("cloneshare DIR"));
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(cwd.join("sub")).expect("mkdir cwd/sub");
    std::env::set_current_dir(&cwd).expect("chdir");
    let data = std::ffi::CString::new(dir.join("data").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain libc calls on a NUL-terminated path and a local buffer.
    let fd = unsafe {
        libc::umask(0o027);
        let fd = libc::open(data.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o600);
        assert!(fd >= 0, "open data");
        assert_eq!(libc::write(fd, b"0123456789abcdef".as_ptr() as *const _, 16), 16);
        libc::lseek(fd, 5, libc::SEEK_SET);
        fd
    };
    let ready = vec![format!("fd={fd} cwd={}", cwd.display())];
    let data_f = data.clone();
    clone_sharing(libc::CLONE_FILES, move || {
        let hooks = Hooks {
            ready: ready_of(fd, &cwd_string()),
            check: Some(Box::new(move |f: &mut Vec<String>| {
                let ok = cloneshare_fields(fd, f);
                if fd_state(PROBE_FD) == "none" {
                    // SAFETY: open a NUL-terminated path, move it to the probe number.
                    unsafe {
                        let p = libc::open(data_f.as_ptr(), libc::O_RDONLY);
                        libc::dup3(p, PROBE_FD, libc::O_CLOEXEC);
                        libc::close(p);
                    }
                }
                ok
            })),
            ..Default::default()
        };
        serve("f", 1, hooks)
    });
    let (home, sub) = (cwd.clone(), cwd.join("sub"));
    clone_sharing(libc::CLONE_FS, move || {
        let hooks = Hooks {
            ready: ready_of(fd, &cwd_string()),
            check: Some(Box::new(move |f: &mut Vec<String>| {
                let ok = cloneshare_fields(fd, f);
                let (to, mask) =
                    if std::env::current_dir().ok().as_ref() == Some(&home) { (&sub, 0o077) } else { (&home, 0o027) };
                // SAFETY: umask has no preconditions.
                unsafe { libc::umask(mask) };
                std::env::set_current_dir(to).is_ok() && ok
            })),
            ..Default::default()
        };
        serve("s", 1, hooks)
    });
    let hooks = Hooks {
        ready,
        check: Some(Box::new(move |f: &mut Vec<String>| {
            let ok = cloneshare_fields(fd, f);
            if fd_state(PROBE_FD) != "none" {
                // SAFETY: closing the probe number.
                unsafe { libc::close(PROBE_FD) };
            }
            ok
        })),
        ..Default::default()
    };
    serve("root", 2, hooks)
}

fn ready_of(fd: i32, cwd: &str) -> Vec<String> {
    vec![format!("fd={fd} cwd={cwd}")]
}

fn cloneshare_siblings() -> ! {
    clone_sharing(libc::CLONE_FILES, || plain("a1", 1));
    clone_sharing(libc::CLONE_FILES, || plain("a2", 1));
    // SAFETY: unshare of our own descriptor table.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_FILES) }, 0, "unshare");
    plain("root", 1)
}
