//! Victim for the task-state dump/restore tests (tests/tests/dr_task.rs).
//!
//! `victim_task LOG FEATURE[,FEATURE...] [ARG]`
//!
//! Becomes a session leader, points stdio at /dev/null, closes every
//! inherited descriptor above 2, sets up the state of each feature, appends
//! "ready PID [extra words]" to LOG and then loops. Commands arrive as
//! signals:
//! - SIGUSR1: check every feature and append one line
//!   `check N verdict=ok|bad key=value ...` (a key whose value starts with
//!   `bad` made the verdict bad);
//! - SIGTERM: append "exiting" and exit with code 42.
//!
//! Features:
//! - `sleep`: (ARG = milliseconds) sleeps once in nanosleep right after
//!   "ready", then appends `slept r=R errno=E ms=ELAPSED want=ARG`;
//! - `pause`: calls pause() once right after "ready", then appends
//!   `paused r=R errno=E usr1=0|1` (a handler ran: SIGUSR1 makes it return);
//! - `sigact`: SIGHUP handler (SA_SIGINFO|SA_RESTART, mask {SIGINT,SIGQUIT})
//!   and a SIGTRAP handler (SA_SIGINFO|SA_NODEFER, mask {SIGUSR2}); the
//!   check compares both sigactions with what they were at setup, raises
//!   SIGTRAP to see its handler run, and reports the siginfo of the last
//!   SIGHUP as `hup=signo:code:pid:value`;
//! - `altstack`: a sigaltstack and a SIGWINCH handler with SA_ONSTACK; the
//!   check compares sigaltstack() with the setup and reports whether the
//!   last SIGWINCH handler since the previous check ran on the stack
//!   (`onstack=yes|bad...|none`);
//!   SIGURG runs a handler on the stack that appends "urg-start", sleeps
//!   1.5 s and appends "urg-end onstack=yes|no";
//! - `pending`: SIGUSR2 and SIGRTMIN+2 blocked, SIGUSR2 queued once (value
//!   111) and SIGRTMIN+2 twice (222, 333) with sigqueue; the first check
//!   verifies both are pending, unblocks them and reports the values the
//!   handlers saw (`usr2=111 rt=222,333`); SIGRTMIN+3 is sent to the thread
//!   with tgkill (private pending), reported as `rt3=count:code:pid`;
//! - `timers`: ITIMER_REAL every 10 ms (SIGALRM counter) and a periodic
//!   CLOCK_MONOTONIC POSIX timer (SIGRTMIN+4, value 0xabc) whose id is not 0
//!   (a first timer is created and deleted); the check reports both
//!   counters, the timer id and timer_gettime on it; `timers_blocked` is
//!   the same with SIGALRM and the POSIX timer's signal blocked and pending
//!   until the first check (the kernel leaves ITIMER_REAL unarmed while its
//!   signal is pending);
//! - `thread_timer`: see [`ThreadTimer`];
//! - `ghost`: (ARG = a directory) DIR/ghost, sparse (1 GiB: 100 bytes at
//!   0, 50 at 2 MiB), opened O_RDWR at offset 1234, dup'ed, then unlinked;
//!   DIR/linked, a second link DIR/linked2, opened twice and unlinked (so only
//!   DIR/linked2 leads to it); DIR/log opened O_WRONLY|O_APPEND. Items
//!   `ghost` (contents, size, offset, shared by the dup, still unlinked,
//!   same name), `linked` (the same inode as DIR/linked2), `log` (appends),
//!   `cwd` (DIR/wd, mode 0751, removed while it is the working directory),
//!   `cwd_fd` (DIR/wd open as a descriptor too: the same directory as the
//!   working directory), `gone_tree` (DIR/tree/sub and the file
//!   DIR/tree/file open, then DIR/tree removed with all of it),
//!   `tree_linked` (DIR/tree2/file, linked as DIR/elsewhere too, open,
//!   then DIR/tree2 removed: the same file as DIR/elsewhere),
//!   `symlink` (DIR/sym, a symlink to "target", open O_PATH|O_NOFOLLOW),
//!   `gone_dir` (DIR/gone-dir, 0711, open and removed), `ghost_maps` (the
//!   ghost file mapped shared and private, written through both),
//!   `linked_map` (DIR/m/mapped, linked as DIR/elsewhere-mapped too,
//!   mapped shared, closed and unlinked from DIR/m: the mapping and
//!   DIR/elsewhere-mapped are one file);
//! - `files`: (ARG = a directory) files with known flags, offsets and
//!   numbers, fd 100, a dup pair, /dev/null and a directory descriptor;
//!   the extra word of "ready" is the fd of ARG/app (O_WRONLY|O_APPEND);
//! - `limits`: lowered RLIMIT_NOFILE and RLIMIT_CORE (soft and hard), umask
//!   027, cwd (ARG = a directory, or /) and the name `vt-limits`;
//! - `creds`: (set up last) supplementary groups, distinct real/effective/
//!   saved gids and uids (not root), chosen capability sets, no_new_privs,
//!   child_subreaper and ADDR_NO_RANDOMIZE; the check compares them all;
//! - `pipe`: a pipe (an unsupported descriptor kind); its fds are the extra
//!   words of "ready"; `socket`: the same with two connected raw IPv6 sockets on the loopback, a packet queued on them (refused);
//! - `flock`, `posix_lock` (write, bytes 10..29), `ofd_lock` (read, bytes
//!   10..29): ARG/locked opened read-write and locked; `lease`: ARG/leased
//!   opened read-only with a read lease; the extra word is the fd;
//!   `mapped_flock`: ARG/mapped (one page) mapped shared, locked with
//!   flock(LOCK_EX) and closed: the lock is held through the mapping alone
//!   (the JVM's hsperfdata file); the extra word is the mapping's address;
//! - `oom_loginuid`: oom_score_adj 400, coredump_filter 0x7d and loginuid 4242 (extra word
//!   `loginuid-set` or `loginuid-refused`); the check reports both;
//! - `membarrier`: registered for private expedited, private expedited
//!   sync-core and global expedited (extra word `regs=` what
//!   MEMBARRIER_CMD_GET_REGISTRATIONS says); the check runs the commands;
//! - `newtime`, `newpid`: unshare(CLONE_NEWTIME / CLONE_NEWPID);
//! - `clone_files`, `clone_vm`: a child cloned with CLONE_FILES / CLONE_VM
//!   (no CLONE_THREAD) that dies with the victim; its pid is the extra word;
//! - `thread`: a second thread that sleeps; its tid is the extra word;
//!   `thread_files`, `thread_fs`: the same thread after unshare(CLONE_FILES
//!   / CLONE_FS);
//! - `vfork`: after "ready", a child cloned with CLONE_VM|CLONE_VFORK that
//!   waits forever (its parent waits for it in clone), then
//!   `vfork-returned CHILD`;
//! - `sleep_rem`: (ARG = milliseconds) like `sleep`, with a `rem` pointer
//!   (so the kernel records the time left when the sleep is interrupted);
//!   appends `slept_rem r=R errno=E ms=ELAPSED want=ARG`;
//! - `thread_securebits`: a second thread sets its own securebits
//!   (SECBIT_KEEP_CAPS|SECBIT_NO_SETUID_FIXUP) and keeps publishing what
//!   PR_GET_SECUREBITS says; the check compares (`thread_securebits=`) and
//!   that the main thread's stayed 0 (`main_securebits=`);
//! - `fsids`: setfsuid(1234) and setfsgid(4321) on the main thread (root);
//!   the check reads them back (`fsids=`);
//! - `timer_overrun`: a 1 ms CLOCK_MONOTONIC POSIX timer whose signal
//!   (SIGRTMIN+5, blocked) is taken with sigtimedwait after 30 ms, so
//!   timer_getoverrun reports about 29; the extra word is `overrun=N`;
//! - `trap_pending`: a SIGTRAP handler (it must never run), SIGTRAP blocked
//!   and queued twice with sigqueue-style values: to the process (0x7777)
//!   and to the thread (0x8888, rt_tgsigqueueinfo). Each check takes both
//!   off with sigtimedwait, verifies them (`trap=ok`: thread's first, then
//!   the process's, each SI_QUEUE from our pid with its value, no third)
//!   and queues them again the same way for the next check;
//! - `trap_thread`: (with `trap_pending`) a second thread with SIGTRAP
//!   queued to itself (value 0x9999); on each check it takes its own off
//!   with sigtimedwait, verifies it and queues it again (`trap_thread=ok`);
//! - `seccomp`: no_new_privs and two seccomp filters for every thread
//!   (TSYNC): uname fails with errno 77, getppid with errno 78 (the second
//!   installed with SECCOMP_FILTER_FLAG_LOG); the check calls both and
//!   reads each thread's Seccomp and Seccomp_filters (`seccomp=ok`);
//! - `mdwe`: prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN); the check reads
//!   it back and sees a writable, executable mapping refused (`mdwe=ok`);
//! - `sched`: the main thread at nice 5 with I/O priority best-effort 6 and
//!   a timer slack of 123456 ns; a second thread SCHED_BATCH at nice 3, I/O
//!   priority idle and 777000 ns of slack, holding a robust mutex; the
//!   main thread pinned to the last CPU it may use, the other to the
//!   first. Each check compares all of them (`sched_main= sched_thread=
//!   affinity_main= affinity_thread=`); from the
//!   second check on, the thread is first told to exit still holding the
//!   mutex, and the main thread must then get it with EOWNERDEAD (the
//!   kernel walks the dead thread's robust list): `robust=ok`.
//!
//! Every check also verifies a memory buffer and that a counter kept in the
//! main loop kept counting (`mem=ok loop=ok`).
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::SeqCst};

thread_local! {
    /// Extra words for the "ready" line.
    static EXTRA: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

static USR1: AtomicBool = AtomicBool::new(false);
static TERM: AtomicBool = AtomicBool::new(false);

static HUP_SIGNO: AtomicI32 = AtomicI32::new(0);
static HUP_CODE: AtomicI32 = AtomicI32::new(0);
static HUP_PID: AtomicI32 = AtomicI32::new(0);
static HUP_VALUE: AtomicU64 = AtomicU64::new(0);

static TRAPS: AtomicU64 = AtomicU64::new(0);
static TRAP_CODE: AtomicI32 = AtomicI32::new(0);
static RT3_N: AtomicUsize = AtomicUsize::new(0);
static RT3_CODE: AtomicI32 = AtomicI32::new(0);
static RT3_PID: AtomicI32 = AtomicI32::new(0);

static ALT_LO: AtomicUsize = AtomicUsize::new(0);
static ALT_HI: AtomicUsize = AtomicUsize::new(0);
/// Address of a local of the last SIGWINCH handler run (0: none).
static WINCH_LOCAL: AtomicUsize = AtomicUsize::new(0);
static WINCH_SS_FLAGS: AtomicI32 = AtomicI32::new(-1);

static USR2_VALUES: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static USR2_N: AtomicUsize = AtomicUsize::new(0);
static RT_VALUES: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static RT_N: AtomicUsize = AtomicUsize::new(0);

static ALRM_N: AtomicU64 = AtomicU64::new(0);
static PTIMER_N: AtomicU64 = AtomicU64::new(0);
static PTIMER_BAD: AtomicU64 = AtomicU64::new(0);
static PTIMER_ID: AtomicI32 = AtomicI32::new(-1);

fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

fn si_value(info: *const libc::siginfo_t) -> u64 {
    // SAFETY: the kernel passed a valid siginfo; si_value is valid for
    // SI_QUEUE and SI_TIMER, the only codes the callers look at.
    unsafe { (*info).si_value().sival_ptr as u64 }
}

extern "C" fn on_flag(sig: i32) {
    match sig {
        libc::SIGUSR1 => USR1.store(true, SeqCst),
        libc::SIGTERM => TERM.store(true, SeqCst),
        libc::SIGALRM => {
            ALRM_N.fetch_add(1, SeqCst);
        }
        _ => {}
    }
}

extern "C" fn on_hup(sig: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: valid siginfo from the kernel.
    let (code, pid) = unsafe { ((*info).si_code, (*info).si_pid()) };
    HUP_SIGNO.store(sig, SeqCst);
    HUP_CODE.store(code, SeqCst);
    HUP_PID.store(pid, SeqCst);
    HUP_VALUE.store(si_value(info), SeqCst);
}

extern "C" fn on_trap(_: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: valid siginfo from the kernel.
    TRAP_CODE.store(unsafe { (*info).si_code }, SeqCst);
    TRAPS.fetch_add(1, SeqCst);
}

extern "C" fn on_rt3(_: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: valid siginfo from the kernel.
    let (code, pid) = unsafe { ((*info).si_code, (*info).si_pid()) };
    RT3_CODE.store(code, SeqCst);
    RT3_PID.store(pid, SeqCst);
    RT3_N.fetch_add(1, SeqCst);
}

/// The log's descriptor, for handlers that write to it with write(2).
static LOG_FD: AtomicI32 = AtomicI32::new(-1);

fn raw_log(msg: &[u8]) {
    // SAFETY: write(2) is async-signal-safe; a bad fd just fails.
    unsafe { libc::write(LOG_FD.load(SeqCst), msg.as_ptr() as *const _, msg.len()) };
}

/// A long handler on the alternate stack: the dump happens while it sleeps.
extern "C" fn on_urg(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let local = 0u8;
    raw_log(b"urg-start\n");
    let mut ts = libc::timespec { tv_sec: 1, tv_nsec: 500_000_000 };
    // SAFETY: nanosleep with valid timespecs; it is async-signal-safe.
    while unsafe { libc::nanosleep(&ts, &mut ts) } != 0 {}
    let at = std::hint::black_box(&local) as *const u8 as usize;
    let on = (ALT_LO.load(SeqCst)..ALT_HI.load(SeqCst)).contains(&at);
    raw_log(if on { b"urg-end onstack=yes\n" } else { b"urg-end onstack=no\n" });
}

extern "C" fn on_winch(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let local = 0u8;
    let mut ss: libc::stack_t = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: 0, ss_size: 0 };
    // SAFETY: querying only.
    unsafe { libc::sigaltstack(std::ptr::null(), &mut ss) };
    WINCH_SS_FLAGS.store(ss.ss_flags, SeqCst);
    WINCH_LOCAL.store(std::hint::black_box(&local) as *const u8 as usize, SeqCst);
}

extern "C" fn on_queued(sig: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let v = si_value(info);
    let (vals, n) = if sig == libc::SIGUSR2 { (&USR2_VALUES, &USR2_N) } else { (&RT_VALUES, &RT_N) };
    let i = n.fetch_add(1, SeqCst);
    if i < vals.len() {
        vals[i].store(v, SeqCst);
    }
}

extern "C" fn on_ptimer(_: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: valid siginfo from the kernel.
    let code = unsafe { (*info).si_code };
    if code != libc::SI_TIMER || si_value(info) != 0xabc {
        PTIMER_BAD.fetch_add(1, SeqCst);
    }
    PTIMER_N.fetch_add(1, SeqCst);
}

static TRAP_HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_trap_pending(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    TRAP_HANDLED.fetch_add(1, SeqCst);
}

static TRAP_THREAD_REQ: AtomicBool = AtomicBool::new(false);
/// 0: no answer yet, 1: ok, else the value or error it found.
static TRAP_THREAD_ANSWER: AtomicU64 = AtomicU64::new(0);

/// `trap_thread`: see the module doc.
struct TrapThread;

impl TrapThread {
    const VALUE: u64 = 0x9999;

    fn setup() -> TrapThread {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            TrapPending::queue_to_thread(tid, Self::VALUE);
            tx.send(()).unwrap();
            loop {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if !TRAP_THREAD_REQ.load(SeqCst) {
                    continue;
                }
                // Our own queue is looked at before the process's.
                let got = TrapPending::take_one();
                let me = std::process::id() as i32;
                let answer = match got {
                    Some((libc::SIGTRAP, libc::SI_QUEUE, pid, v)) if pid == me && v == Self::VALUE => 1,
                    Some((_, _, _, v)) => v.max(2),
                    None => 2,
                };
                TrapPending::queue_to_thread(tid, Self::VALUE);
                TRAP_THREAD_ANSWER.store(answer, SeqCst);
                TRAP_THREAD_REQ.store(false, SeqCst);
            }
        });
        rx.recv().unwrap();
        TrapThread
    }

    fn check(&self, it: &mut Items) {
        TRAP_THREAD_ANSWER.store(0, SeqCst);
        TRAP_THREAD_REQ.store(true, SeqCst);
        let start = now();
        while TRAP_THREAD_ANSWER.load(SeqCst) == 0 && start.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let a = TRAP_THREAD_ANSWER.load(SeqCst);
        it.expect("trap_thread", a == 1, || format!("{a:#x}"));
    }
}

/// `trap_pending`: see the module doc.
struct TrapPending;

impl TrapPending {
    const SHARED: usize = 0x7777;
    const THREAD: usize = 0x8888;

    fn setup() -> TrapPending {
        install(libc::SIGTRAP, on_trap_pending as *const () as usize, libc::SA_SIGINFO, &[]);
        let set = sigset(&[libc::SIGTRAP]);
        // SAFETY: plain libc call on a valid set.
        unsafe { assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()), 0) };
        Self::queue();
        TrapPending
    }

    /// Queues SIGTRAP to the process and to this thread, SI_QUEUE with values.
    fn queue() {
        // SAFETY: plain libc calls.
        unsafe {
            let val = libc::sigval { sival_ptr: Self::SHARED as *mut _ };
            assert_eq!(libc::sigqueue(libc::getpid(), libc::SIGTRAP, val), 0, "sigqueue SIGTRAP");
            Self::queue_to_thread(libc::gettid(), Self::THREAD as u64);
        }
    }

    /// Queues SIGTRAP to thread `tid` (the caller) with SI_QUEUE and `value`.
    fn queue_to_thread(tid: i32, value: u64) {
        // SAFETY: plain libc calls; the siginfo is a zeroed local.
        unsafe {
            let me = libc::getpid();
            let mut si: [u64; 16] = [0; 16];
            let words = si.as_mut_ptr() as *mut i32;
            *words = libc::SIGTRAP; // si_signo
            *words.add(2) = libc::SI_QUEUE; // si_code
            *words.add(4) = me; // si_pid
            *words.add(5) = libc::getuid() as i32; // si_uid
            si[3] = value; // si_value
            let r = libc::syscall(libc::SYS_rt_tgsigqueueinfo, me, tid, libc::SIGTRAP, si.as_ptr());
            assert_eq!(r, 0, "rt_tgsigqueueinfo SIGTRAP");
        }
    }

    /// Takes one SIGTRAP off the queues (the thread's first): signo, code,
    /// pid, value.
    fn take_one() -> Option<(i32, i32, i32, u64)> {
        let set = sigset(&[libc::SIGTRAP]);
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid set, siginfo and timeout.
        let (r, code, pid, v) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::sigtimedwait(&set, &mut info, &zero);
            (r, info.si_code, info.si_pid(), si_value(&info))
        };
        (r >= 0).then_some((r, code, pid, v))
    }

    fn check(&self, it: &mut Items) {
        let mut got = Vec::new();
        for _ in 0..3 {
            match Self::take_one() {
                Some(g) => got.push(g),
                None => break,
            }
        }
        let me = std::process::id() as i32;
        let want = vec![
            (libc::SIGTRAP, libc::SI_QUEUE, me, Self::THREAD as u64),
            (libc::SIGTRAP, libc::SI_QUEUE, me, Self::SHARED as u64),
        ];
        it.expect("trap", got == want, || format!("{got:x?}"));
        it.expect("trap_handler", TRAP_HANDLED.load(SeqCst) == 0, || format!("ran{}", TRAP_HANDLED.load(SeqCst)));
        Self::queue();
    }
}

fn install(sig: i32, handler: usize, flags: i32, mask: &[i32]) {
    // SAFETY: zeroed sigaction filled in field by field.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = flags;
        libc::sigemptyset(&mut sa.sa_mask);
        for &s in mask {
            libc::sigaddset(&mut sa.sa_mask, s);
        }
        assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0, "sigaction {sig}");
    }
}

fn query_action(sig: i32) -> (usize, i32, Vec<i32>) {
    // SAFETY: querying only.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut sa);
        let mask = (1..65).filter(|&s| libc::sigismember(&sa.sa_mask, s) == 1).collect();
        (sa.sa_sigaction, sa.sa_flags, mask)
    }
}

fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Result of one check item.
struct Items(Vec<(String, String)>);

impl Items {
    fn put(&mut self, k: &str, v: impl Into<String>) {
        self.0.push((k.to_string(), v.into()));
    }
    fn expect(&mut self, k: &str, ok: bool, detail: impl FnOnce() -> String) {
        let v = if ok { "ok".to_string() } else { format!("bad:{}", detail().replace(' ', "_")) };
        self.put(k, v);
    }
}

struct SigAct {
    expect: (usize, i32, Vec<i32>),
    trap: (usize, i32, Vec<i32>),
}

impl SigAct {
    fn setup() -> SigAct {
        install(
            libc::SIGHUP,
            on_hup as *const () as usize,
            libc::SA_SIGINFO | libc::SA_RESTART,
            &[libc::SIGINT, libc::SIGQUIT],
        );
        // SIGTRAP is special at restore: the blob's own trap would reset it.
        install(libc::SIGTRAP, on_trap as *const () as usize, libc::SA_SIGINFO | libc::SA_NODEFER, &[libc::SIGUSR2]);
        SigAct { expect: query_action(libc::SIGHUP), trap: query_action(libc::SIGTRAP) }
    }
    fn check(&self, it: &mut Items) {
        let now = query_action(libc::SIGHUP);
        let e = &self.expect;
        it.expect("sigaction", now == *e, || format!("{now:x?}!={e:x?}"));
        let flags_ok = e.1 & libc::SA_SIGINFO != 0 && e.1 & libc::SA_RESTART != 0;
        it.expect("sa_flags", flags_ok, || format!("{:#x}", e.1));
        it.expect("sa_mask", e.2 == [libc::SIGINT, libc::SIGQUIT], || format!("{:?}", e.2));
        let trap = query_action(libc::SIGTRAP);
        let t = &self.trap;
        it.expect("sigtrap_action", trap == *t, || format!("{trap:x?}!={t:x?}"));
        if trap == *t {
            let before = TRAPS.load(SeqCst);
            // SAFETY: our handler for SIGTRAP is installed (checked above).
            unsafe { libc::raise(libc::SIGTRAP) };
            let ran = TRAPS.load(SeqCst) == before + 1 && TRAP_CODE.load(SeqCst) == libc::SI_TKILL;
            it.expect("sigtrap_handler", ran, || {
                format!("traps={},code={}", TRAPS.load(SeqCst), TRAP_CODE.load(SeqCst))
            });
        }
        it.put(
            "hup",
            format!(
                "{}:{}:{}:{}",
                HUP_SIGNO.load(SeqCst),
                HUP_CODE.load(SeqCst),
                HUP_PID.load(SeqCst),
                HUP_VALUE.load(SeqCst)
            ),
        );
    }
}

struct AltStack {
    sp: usize,
    size: usize,
}

impl AltStack {
    fn setup() -> AltStack {
        let size = 64 * 1024;
        let stack = Box::leak(vec![0u8; size].into_boxed_slice());
        let sp = stack.as_mut_ptr() as usize;
        ALT_LO.store(sp, SeqCst);
        ALT_HI.store(sp + size, SeqCst);
        let ss = libc::stack_t { ss_sp: sp as *mut _, ss_flags: 0, ss_size: size };
        // SAFETY: the stack is leaked, so it lives forever.
        assert_eq!(unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) }, 0);
        install(libc::SIGWINCH, on_winch as *const () as usize, libc::SA_SIGINFO | libc::SA_ONSTACK, &[]);
        let flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        install(libc::SIGURG, on_urg as *const () as usize, flags, &[]);
        AltStack { sp, size }
    }
    fn check(&self, it: &mut Items) {
        let mut ss = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: -1, ss_size: 0 };
        // SAFETY: querying only.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut ss) };
        let same = ss.ss_sp as usize == self.sp && ss.ss_size == self.size && ss.ss_flags == 0;
        it.expect("altstack", same, || {
            format!("sp={:#x},size={},flags={}", ss.ss_sp as usize, ss.ss_size, ss.ss_flags)
        });
        let (h, f, _) = query_action(libc::SIGWINCH);
        it.expect("winch_action", h == on_winch as *const () as usize && f & libc::SA_ONSTACK != 0, || {
            format!("{h:#x}/{f:#x}")
        });
        // Each check reports the handler runs since the previous one.
        let local = WINCH_LOCAL.swap(0, SeqCst);
        let v = if local == 0 {
            "none".to_string()
        } else if (self.sp..self.sp + self.size).contains(&local) && WINCH_SS_FLAGS.load(SeqCst) == libc::SS_ONSTACK {
            "yes".to_string()
        } else {
            format!("bad:local={local:#x},flags={}", WINCH_SS_FLAGS.load(SeqCst))
        };
        it.put("onstack", v);
    }
}

struct Pending {
    unblocked: bool,
}

impl Pending {
    fn setup() -> Pending {
        let rt = sigrtmin() + 2;
        let flags = libc::SA_SIGINFO | libc::SA_RESTART;
        install(libc::SIGUSR2, on_queued as *const () as usize, flags, &[]);
        install(rt, on_queued as *const () as usize, flags, &[]);
        install(rt + 1, on_rt3 as *const () as usize, flags, &[]);
        let set = sigset(&[libc::SIGUSR2, rt, rt + 1]);
        // SAFETY: plain libc calls on valid arguments.
        unsafe {
            assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()), 0);
            let me = libc::getpid();
            for (sig, v) in [(libc::SIGUSR2, 111usize), (rt, 222), (rt, 333)] {
                let val = libc::sigval { sival_ptr: v as *mut _ };
                assert_eq!(libc::sigqueue(me, sig, val), 0, "sigqueue {sig}");
            }
            // A thread-directed one: private pending, SI_TKILL.
            assert_eq!(libc::syscall(libc::SYS_tgkill, me, libc::gettid(), rt + 1), 0, "tgkill");
        }
        Pending { unblocked: false }
    }
    fn check(&mut self, it: &mut Items) {
        let rt = sigrtmin() + 2;
        if !self.unblocked {
            // SAFETY: querying only.
            let (usr2, rtp) = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut set);
                (libc::sigismember(&set, libc::SIGUSR2) == 1, libc::sigismember(&set, rt) == 1)
            };
            // SAFETY: querying only.
            let rt3 = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut set);
                libc::sigismember(&set, rt + 1) == 1
            };
            it.expect("pending_before", usr2 && rtp && rt3, || format!("usr2={usr2},rt={rtp},rt3={rt3}"));
            it.expect("delivered_before", USR2_N.load(SeqCst) == 0 && RT_N.load(SeqCst) == 0, || {
                format!("usr2={},rt={}", USR2_N.load(SeqCst), RT_N.load(SeqCst))
            });
            let set = sigset(&[libc::SIGUSR2, rt, rt + 1]);
            // SAFETY: plain libc call; the handlers run on return.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
            self.unblocked = true;
        }
        let list = |vals: &[AtomicU64; 4], n: &AtomicUsize| {
            let n = n.load(SeqCst).min(4);
            vals[..n].iter().map(|v| v.load(SeqCst).to_string()).collect::<Vec<_>>().join(",")
        };
        it.put("usr2", list(&USR2_VALUES, &USR2_N));
        it.put("rt", list(&RT_VALUES, &RT_N));
        it.put("rt3", format!("{}:{}:{}", RT3_N.load(SeqCst), RT3_CODE.load(SeqCst), RT3_PID.load(SeqCst)));
    }
}

struct Timers {
    id: i32,
    /// SIGALRM is blocked and pending until the first check.
    alrm_blocked: bool,
}

fn timer_gettime(id: i32) -> Result<[i64; 4], i32> {
    let mut spec = [0i64; 4];
    // SAFETY: raw timer_gettime with a 32-byte itimerspec buffer.
    let r = unsafe { libc::syscall(libc::SYS_timer_gettime, id as libc::c_long, spec.as_mut_ptr()) };
    if r == 0 {
        Ok(spec)
    } else {
        Err(errno())
    }
}

impl Timers {
    fn setup(alrm_blocked: bool) -> Timers {
        let sig = sigrtmin() + 4;
        install(libc::SIGALRM, on_flag as *const () as usize, libc::SA_RESTART, &[]);
        install(sig, on_ptimer as *const () as usize, libc::SA_SIGINFO | libc::SA_RESTART, &[]);
        // SAFETY: raw timer syscalls with correctly laid out arguments.
        let id = unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_SIGNAL;
            sev.sigev_signo = sig;
            sev.sigev_value = libc::sigval { sival_ptr: 0xabc as *mut _ };
            let mut first: i32 = -1;
            let r = libc::syscall(libc::SYS_timer_create, libc::CLOCK_MONOTONIC, &sev as *const _, &mut first);
            assert_eq!(r, 0, "timer_create");
            let mut id: i32 = -1;
            let r = libc::syscall(libc::SYS_timer_create, libc::CLOCK_MONOTONIC, &sev as *const _, &mut id);
            assert_eq!(r, 0, "timer_create");
            assert_eq!(libc::syscall(libc::SYS_timer_delete, first as libc::c_long), 0);
            // 10 ms period, first expiry after 10 ms.
            let spec: [i64; 4] = [0, 10_000_000, 0, 10_000_000];
            let r = libc::syscall(
                libc::SYS_timer_settime,
                id as libc::c_long,
                0,
                spec.as_ptr(),
                std::ptr::null_mut::<i64>(),
            );
            assert_eq!(r, 0, "timer_settime");
            let it = libc::itimerval {
                it_interval: libc::timeval { tv_sec: 0, tv_usec: 10_000 },
                it_value: libc::timeval { tv_sec: 0, tv_usec: 10_000 },
            };
            assert_eq!(libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()), 0);
            id
        };
        PTIMER_ID.store(id, SeqCst);
        if alrm_blocked {
            // A pending SIGALRM leaves ITIMER_REAL unarmed until it is
            // dequeued; a pending POSIX timer signal is the timer's own
            // preallocated one, with the timer waiting to be re-armed.
            let set = sigset(&[libc::SIGALRM, sig]);
            // SAFETY: plain libc calls on a local set.
            unsafe {
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                loop {
                    let mut p: libc::sigset_t = std::mem::zeroed();
                    libc::sigpending(&mut p);
                    if libc::sigismember(&p, libc::SIGALRM) == 1 && libc::sigismember(&p, sig) == 1 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        }
        Timers { id, alrm_blocked }
    }
    fn check(&mut self, it: &mut Items) {
        if self.alrm_blocked {
            self.alrm_blocked = false;
            let set = sigset(&[libc::SIGALRM, sigrtmin() + 4]);
            // SAFETY: plain libc call; the handler runs on return.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        }
        it.put("alarms", ALRM_N.load(SeqCst).to_string());
        it.put("ptimer", PTIMER_N.load(SeqCst).to_string());
        it.expect("ptimer_info", PTIMER_BAD.load(SeqCst) == 0, || PTIMER_BAD.load(SeqCst).to_string());
        it.put("timer_id", self.id.to_string());
        match timer_gettime(self.id) {
            Ok(s) => it.expect("timer_gettime", s[0] == 0 && s[1] == 10_000_000, || format!("{s:?}")),
            Err(e) => it.put("timer_gettime", format!("bad:errno{e}")),
        }
        let mut v = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_value: libc::timeval { tv_sec: 0, tv_usec: 0 },
        };
        // SAFETY: querying only.
        unsafe { libc::getitimer(libc::ITIMER_REAL, &mut v) };
        it.expect("itimer_interval", v.it_interval.tv_sec == 0 && v.it_interval.tv_usec == 10_000, || {
            format!("{}.{:06}", v.it_interval.tv_sec, v.it_interval.tv_usec)
        });
    }
}

/// One descriptor the `files` feature expects.
struct FdExpect {
    name: &'static str,
    fd: i32,
    path: String,
    accmode: i32,
    append: bool,
    cloexec: bool,
    nonblock: bool,
    /// Offset, or None for descriptors without a meaningful one.
    pos: Option<i64>,
}

/// `thread_timer`: a POSIX timer signalling one thread (SIGEV_THREAD_ID,
/// as glibc's SIGEV_THREAD timers do) every 5 ms; that thread takes the
/// signals with sigwaitinfo and counts them (`thread_timer=ok`: the count
/// grows during the check).
struct ThreadTimer {
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ThreadTimer {
    fn setup() -> ThreadTimer {
        let sig = sigrtmin() + 6;
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = count.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // The process blocks it too: it is only ever taken by that thread.
        let set = sigset(&[sig]);
        // SAFETY: plain libc call on a local set.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            loop {
                // SAFETY: waiting on a local set.
                if unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) } == sig {
                    c.fetch_add(1, SeqCst);
                }
            }
        });
        let tid = rx.recv().unwrap();
        // SAFETY: raw timer syscalls with correctly laid out arguments.
        unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = sig;
            sev.sigev_notify_thread_id = tid;
            let mut id: i32 = -1;
            let r = libc::syscall(libc::SYS_timer_create, libc::CLOCK_MONOTONIC, &sev as *const _, &mut id);
            assert_eq!(r, 0, "timer_create SIGEV_THREAD_ID");
            let spec: [i64; 4] = [0, 5_000_000, 0, 5_000_000];
            let r = libc::syscall(
                libc::SYS_timer_settime,
                id as libc::c_long,
                0,
                spec.as_ptr(),
                std::ptr::null_mut::<i64>(),
            );
            assert_eq!(r, 0, "timer_settime");
        }
        ThreadTimer { count }
    }

    fn check(&self, it: &mut Items) {
        let a = self.count.load(SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let b = self.count.load(SeqCst);
        it.expect("thread_timer", b > a + 5, || format!("{a}->{b}"));
    }
}

struct Ghost {
    dir: String,
    fd: i32,
    dup: i32,
    linked: i32,
    /// DIR/linked opened a second time (another description).
    linked_again: i32,
    log: i32,
    /// DIR/sym (a symlink to "target") opened O_PATH|O_NOFOLLOW.
    sym: i32,
    /// DIR/gone-dir (0711), opened, then removed.
    gone_dir: i32,
    wd_fd: i32,
    tree_sub: i32,
    tree_file: i32,
    tree_linked: i32,
    /// The ghost file mapped shared (a 'Z' written at 20480 through it)
    /// and private (a 'P' written at 0, the file keeps its byte).
    shared_map: usize,
    private_map: usize,
    /// DIR/m/mapped mapped shared (one page), linked as
    /// DIR/elsewhere-mapped, then unlinked from DIR/m and closed.
    linked_map: usize,
}

fn ghost_bytes() -> (Vec<u8>, Vec<u8>) {
    ((0..100u32).map(|i| (i * 3) as u8).collect(), (0..50u32).map(|i| (200 - i) as u8).collect())
}

impl Ghost {
    const SIZE: i64 = 1 << 30;
    const FAR: i64 = 2 << 20;

    fn setup(dir: &str) -> Ghost {
        let (a, b) = ghost_bytes();
        let g = format!("{dir}/ghost");
        // SAFETY: plain libc calls on descriptors this function opens.
        unsafe {
            let fd = open(&g, libc::O_RDWR | libc::O_CREAT);
            assert_eq!(libc::pwrite(fd, a.as_ptr() as *const _, a.len(), 0), 100);
            assert_eq!(libc::pwrite(fd, b.as_ptr() as *const _, b.len(), Self::FAR), 50);
            assert_eq!(libc::ftruncate(fd, Self::SIZE), 0);
            libc::lseek(fd, 1234, libc::SEEK_SET);
            let dup = libc::dup(fd);
            std::fs::remove_file(&g).unwrap();
            let map = |flags: i32| {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    Self::SIZE as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    fd,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED, "mmap the ghost file");
                p as usize
            };
            let shared_map = map(libc::MAP_SHARED);
            *((shared_map + 20480) as *mut u8) = b'Z';
            let private_map = map(libc::MAP_PRIVATE);
            *(private_map as *mut u8) = b'P';
            std::fs::write(format!("{dir}/linked"), b"linked file").unwrap();
            std::fs::hard_link(format!("{dir}/linked"), format!("{dir}/linked2")).unwrap();
            let linked = open(&format!("{dir}/linked"), libc::O_RDWR);
            // A second description of it: linked back once for both.
            let linked_again = open(&format!("{dir}/linked"), libc::O_RDONLY);
            std::fs::remove_file(format!("{dir}/linked")).unwrap();
            let log = open(&format!("{dir}/log"), libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT);
            assert_eq!(libc::write(log, b"one\n".as_ptr() as *const _, 4), 4);
            // A working directory that is removed while we are in it.
            let wd = format!("{dir}/wd");
            std::fs::create_dir(&wd).unwrap();
            std::fs::set_permissions(&wd, std::os::unix::fs::PermissionsExt::from_mode(0o751)).unwrap();
            std::os::unix::fs::symlink("target", format!("{dir}/sym")).unwrap();
            let sym = open(&format!("{dir}/sym"), libc::O_PATH | libc::O_NOFOLLOW);
            let gd = format!("{dir}/gone-dir");
            std::fs::create_dir(&gd).unwrap();
            std::fs::set_permissions(&gd, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
            let gone_dir = open(&gd, libc::O_RDONLY | libc::O_DIRECTORY);
            std::fs::remove_dir(&gd).unwrap();
            let wd_fd = open(&wd, libc::O_RDONLY | libc::O_DIRECTORY);
            // A directory tree removed with what the task holds in it.
            std::fs::create_dir_all(format!("{dir}/tree/sub")).unwrap();
            std::fs::write(format!("{dir}/tree/file"), b"in a removed tree").unwrap();
            let tree_sub = open(&format!("{dir}/tree/sub"), libc::O_RDONLY | libc::O_DIRECTORY);
            let tree_file = open(&format!("{dir}/tree/file"), libc::O_RDONLY);
            std::fs::remove_dir_all(format!("{dir}/tree")).unwrap();
            std::fs::create_dir(format!("{dir}/tree2")).unwrap();
            std::fs::write(format!("{dir}/tree2/file"), b"linked elsewhere").unwrap();
            std::fs::hard_link(format!("{dir}/tree2/file"), format!("{dir}/elsewhere")).unwrap();
            let tree_linked = open(&format!("{dir}/tree2/file"), libc::O_RDONLY);
            std::fs::remove_dir_all(format!("{dir}/tree2")).unwrap();
            std::fs::create_dir(format!("{dir}/m")).unwrap();
            std::fs::write(format!("{dir}/m/mapped"), [b'm'; 4096]).unwrap();
            std::fs::hard_link(format!("{dir}/m/mapped"), format!("{dir}/elsewhere-mapped")).unwrap();
            let mfd = open(&format!("{dir}/m/mapped"), libc::O_RDWR);
            let lm =
                libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, mfd, 0);
            assert_ne!(lm, libc::MAP_FAILED, "mmap DIR/m/mapped");
            libc::close(mfd);
            std::fs::remove_file(format!("{dir}/m/mapped")).unwrap();
            std::env::set_current_dir(&wd).unwrap();
            std::fs::remove_dir(&wd).unwrap();
            Ghost {
                linked_map: lm as usize,
                dir: dir.to_string(),
                fd,
                dup,
                linked,
                linked_again,
                log,
                sym,
                gone_dir,
                wd_fd,
                tree_sub,
                tree_file,
                tree_linked,
                shared_map,
                private_map,
            }
        }
    }

    fn check(&self, it: &mut Items) {
        let (a, b) = ghost_bytes();
        // SAFETY: plain libc calls on this feature's descriptors and local buffers.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstat(self.fd, &mut st);
            let pos = libc::lseek(self.dup, 0, libc::SEEK_CUR);
            let mut ba = vec![0u8; 100];
            let mut bb = vec![0u8; 50];
            let mut hole = vec![1u8; 4096];
            libc::pread(self.fd, ba.as_mut_ptr() as *mut _, 100, 0);
            libc::pread(self.fd, bb.as_mut_ptr() as *mut _, 50, Self::FAR);
            libc::pread(self.fd, hole.as_mut_ptr() as *mut _, 4096, 1 << 20);
            let link = std::fs::read_link(format!("/proc/self/fd/{}", self.fd)).unwrap_or_default();
            let want_link = format!("{}/ghost (deleted)", self.dir);
            let ok = ba == a
                && bb == b
                && hole.iter().all(|&c| c == 0)
                && st.st_size == Self::SIZE
                && st.st_nlink == 0
                && pos == 1234
                && link.to_string_lossy() == want_link;
            it.expect("ghost", ok, || {
                format!(
                    "size={} nlink={} pos={pos} link={} data={}",
                    st.st_size,
                    st.st_nlink,
                    link.display(),
                    ba == a && bb == b
                )
            });
            let mut l: libc::stat = std::mem::zeroed();
            libc::fstat(self.linked, &mut l);
            let other = std::fs::metadata(format!("{}/linked2", self.dir));
            use std::os::unix::fs::MetadataExt;
            let same = other.as_ref().map(|m| m.ino() == l.st_ino).unwrap_or(false);
            let mut l2: libc::stat = std::mem::zeroed();
            libc::fstat(self.linked_again, &mut l2);
            let same = same && l2.st_ino == l.st_ino;
            it.expect("linked", same && l.st_nlink == 1, || format!("ino={} nlink={}", l.st_ino, l.st_nlink));
            let w = libc::write(self.log, b"two\n".as_ptr() as *const _, 4);
            it.expect("log", w == 4, || format!("w={w}"));
            let cwd = std::fs::read_link("/proc/self/cwd").unwrap_or_default();
            let mut c: libc::stat = std::mem::zeroed();
            libc::stat(c".".as_ptr(), &mut c);
            let ok = cwd.to_string_lossy() == format!("{}/wd (deleted)", self.dir)
                && c.st_mode & 0o7777 == 0o751
                && c.st_nlink == 0;
            it.expect("cwd", ok, || format!("{}_mode={:o}_nlink={}", cwd.display(), c.st_mode, c.st_nlink));
            let mut w: libc::stat = std::mem::zeroed();
            libc::fstat(self.wd_fd, &mut w);
            let wl = std::fs::read_link(format!("/proc/self/fd/{}", self.wd_fd)).unwrap_or_default();
            let ok = w.st_dev == c.st_dev && w.st_ino == c.st_ino && wl == cwd;
            it.expect("cwd_fd", ok, || format!("ino={}_cwd_ino={}_{}", w.st_ino, c.st_ino, wl.display()));
            let sl = std::fs::read_link(format!("/proc/self/fd/{}", self.tree_sub)).unwrap_or_default();
            let fl = std::fs::read_link(format!("/proc/self/fd/{}", self.tree_file)).unwrap_or_default();
            let mut t: libc::stat = std::mem::zeroed();
            libc::fstat(self.tree_sub, &mut t);
            let mut buf = [0u8; 64];
            let n = libc::pread(self.tree_file, buf.as_mut_ptr() as *mut _, 64, 0);
            let ok = sl.to_string_lossy() == format!("{}/tree/sub (deleted)", self.dir)
                && fl.to_string_lossy() == format!("{}/tree/file (deleted)", self.dir)
                && t.st_nlink == 0
                && t.st_mode & libc::S_IFMT == libc::S_IFDIR
                && n == 17
                && &buf[..17] == b"in a removed tree";
            it.expect("gone_tree", ok, || format!("{}_{}_n={n}", sl.display(), fl.display()));
            let mut k: libc::stat = std::mem::zeroed();
            libc::fstat(self.tree_linked, &mut k);
            let other = std::fs::metadata(format!("{}/elsewhere", self.dir));
            let same = other.as_ref().map(|m| m.ino() == k.st_ino).unwrap_or(false);
            it.expect("tree_linked", same && k.st_nlink == 1, || format!("ino={} nlink={}", k.st_ino, k.st_nlink));
            let mut buf = [0u8; 64];
            let n = libc::readlinkat(self.sym, c"".as_ptr(), buf.as_mut_ptr() as *mut _, buf.len());
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstatat(self.sym, c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH);
            let ok = n == 6 && &buf[..6] == b"target" && st.st_mode & libc::S_IFMT == libc::S_IFLNK;
            it.expect("symlink", ok, || format!("n={n}_mode={:o}", st.st_mode));
            let mut d: libc::stat = std::mem::zeroed();
            libc::fstat(self.gone_dir, &mut d);
            let link = std::fs::read_link(format!("/proc/self/fd/{}", self.gone_dir)).unwrap_or_default();
            let ok = d.st_mode & libc::S_IFMT == libc::S_IFDIR
                && d.st_mode & 0o7777 == 0o711
                && d.st_nlink == 0
                && link.to_string_lossy() == format!("{}/gone-dir (deleted)", self.dir);
            it.expect("gone_dir", ok, || format!("mode={:o}_nlink={}_{}", d.st_mode, d.st_nlink, link.display()));
            // The mappings: shared with the file, private with its own page.
            let mut z = [0u8; 1];
            libc::pread(self.fd, z.as_mut_ptr() as *mut _, 1, 20480);
            let sm = std::slice::from_raw_parts(self.shared_map as *const u8, 100);
            let pm = std::slice::from_raw_parts(self.private_map as *const u8, 100);
            let mut f0 = [0u8; 1];
            libc::pread(self.fd, f0.as_mut_ptr() as *mut _, 1, 0);
            let ok = z[0] == b'Z'
                && *((self.shared_map + 20480) as *const u8) == b'Z'
                && sm == &a[..]
                && pm[0] == b'P'
                && pm[1..] == a[1..]
                && f0[0] == a[0];
            // And still shared: a write through the mapping reaches the file.
            *((self.shared_map + 40960) as *mut u8) = b'Y';
            let mut y = [0u8; 1];
            libc::pread(self.fd, y.as_mut_ptr() as *mut _, 1, 40960);
            *((self.shared_map + 40960) as *mut u8) = 0;
            it.expect("ghost_maps", ok && y[0] == b'Y', || format!("z={}_p={}_f0={}_y={}", z[0], pm[0], f0[0], y[0]));
            // One file: what is written through the mapping is in
            // DIR/elsewhere-mapped, and what is written there shows
            // through the mapping.
            let other = format!("{}/elsewhere-mapped", self.dir);
            let lm = self.linked_map as *mut u8;
            *lm = b'1';
            let seen = std::fs::read(&other).unwrap_or_default();
            let f = std::fs::OpenOptions::new().write(true).open(&other);
            let wrote = f.and_then(|f| std::os::unix::fs::FileExt::write_at(&f, b"2", 1)).is_ok();
            let back = *lm.add(1);
            let mut ms: libc::stat = std::mem::zeroed();
            let name = std::fs::read_dir("/proc/self/map_files").ok().and_then(|d| {
                d.flatten().find(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.split('-').next())
                        .and_then(|a| usize::from_str_radix(a, 16).ok())
                        == Some(self.linked_map)
                })
            });
            let same = name.is_some_and(|e| {
                libc::stat(self::c(&e.path().to_string_lossy()).as_ptr(), &mut ms) == 0
                    && std::fs::metadata(&other).is_ok_and(|m| m.ino() == ms.st_ino)
            });
            let ok = seen.first() == Some(&b'1') && wrote && back == b'2' && same && ms.st_nlink == 1;
            it.expect("linked_map", ok, || {
                format!("seen={:?}_wrote={wrote}_back={back}_same={same}_nlink={}", seen.first(), ms.st_nlink)
            });
            *lm = b'm';
            *lm.add(1) = b'm';
        }
    }
}

struct Files {
    list: Vec<FdExpect>,
    dup: (i32, i32),
    dir_fd: i32,
    dir: String,
    app_fd: i32,
    app_size: i64,
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

fn open(path: &str, flags: i32) -> i32 {
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c(path).as_ptr(), flags, 0o600) };
    assert!(fd >= 0, "open {path}: errno {}", errno());
    fd
}

impl Files {
    fn setup(dir: &str) -> Files {
        let p = |n: &str| format!("{dir}/{n}");
        std::fs::write(p("rw"), b"0123456789").unwrap();
        std::fs::write(p("ro"), b"abcdefghij").unwrap();
        std::fs::write(p("app"), b"start\n").unwrap();
        std::fs::write(p("hundred"), b"HUNDRED-HUNDRED").unwrap();
        std::fs::write(p("dup"), b"dupdupdupdup").unwrap();
        let mut list = Vec::new();
        // SAFETY: plain libc calls on descriptors this function opened.
        unsafe {
            let rw = open(&p("rw"), libc::O_RDWR | libc::O_NONBLOCK);
            libc::lseek(rw, 4, libc::SEEK_SET);
            list.push(FdExpect {
                name: "rw",
                fd: rw,
                path: p("rw"),
                accmode: libc::O_RDWR,
                append: false,
                cloexec: false,
                nonblock: true,
                pos: Some(4),
            });
            let ro = open(&p("ro"), libc::O_RDONLY | libc::O_CLOEXEC);
            let mut b = [0u8; 3];
            assert_eq!(libc::read(ro, b.as_mut_ptr() as *mut _, 3), 3);
            list.push(FdExpect {
                name: "ro",
                fd: ro,
                path: p("ro"),
                accmode: libc::O_RDONLY,
                append: false,
                cloexec: true,
                nonblock: false,
                pos: Some(3),
            });
            let app = open(&p("app"), libc::O_WRONLY | libc::O_APPEND);
            assert_eq!(libc::write(app, b"x".as_ptr() as *const _, 1), 1);
            list.push(FdExpect {
                name: "app",
                fd: app,
                path: p("app"),
                accmode: libc::O_WRONLY,
                append: true,
                cloexec: false,
                nonblock: false,
                pos: Some(7),
            });
            let h = open(&p("hundred"), libc::O_RDWR);
            assert_eq!(libc::dup2(h, 100), 100);
            libc::close(h);
            libc::lseek(100, 7, libc::SEEK_SET);
            list.push(FdExpect {
                name: "fd100",
                fd: 100,
                path: p("hundred"),
                accmode: libc::O_RDWR,
                append: false,
                cloexec: false,
                nonblock: false,
                pos: Some(7),
            });
            let d1 = open(&p("dup"), libc::O_RDWR);
            let d2 = libc::dup(d1);
            assert!(d2 >= 0);
            libc::lseek(d1, 2, libc::SEEK_SET);
            for (name, fd) in [("dup1", d1), ("dup2", d2)] {
                list.push(FdExpect {
                    name,
                    fd,
                    path: p("dup"),
                    accmode: libc::O_RDWR,
                    append: false,
                    cloexec: false,
                    nonblock: false,
                    pos: Some(2),
                });
            }
            // Opened with O_TRUNC: restore must not truncate it again.
            std::fs::write(p("trunc"), b"old contents").unwrap();
            let tr = open(&p("trunc"), libc::O_WRONLY | libc::O_TRUNC);
            assert_eq!(libc::write(tr, b"abc".as_ptr() as *const _, 3), 3);
            list.push(FdExpect {
                name: "trunc",
                fd: tr,
                path: p("trunc"),
                accmode: libc::O_WRONLY,
                append: false,
                cloexec: false,
                nonblock: false,
                pos: Some(3),
            });
            let null = open("/dev/null", libc::O_WRONLY | libc::O_CLOEXEC);
            list.push(FdExpect {
                name: "null",
                fd: null,
                path: "/dev/null".into(),
                accmode: libc::O_WRONLY,
                append: false,
                cloexec: true,
                nonblock: false,
                pos: None,
            });
            let dfd = open(dir, libc::O_RDONLY | libc::O_DIRECTORY);
            list.push(FdExpect {
                name: "dir",
                fd: dfd,
                path: dir.to_string(),
                accmode: libc::O_RDONLY,
                append: false,
                cloexec: false,
                nonblock: false,
                pos: None,
            });
            EXTRA.with(|e| e.borrow_mut().push(app.to_string()));
            Files { list, dup: (d1, d2), dir_fd: dfd, dir: dir.to_string(), app_fd: app, app_size: 7 }
        }
    }

    fn check(&self, it: &mut Items) {
        for e in &self.list {
            // SAFETY: fcntl/lseek on numbers only; a missing fd gives -1.
            let (fl, fdfl, pos) = unsafe {
                (
                    libc::fcntl(e.fd, libc::F_GETFL),
                    libc::fcntl(e.fd, libc::F_GETFD),
                    libc::lseek(e.fd, 0, libc::SEEK_CUR),
                )
            };
            let link = std::fs::read_link(format!("/proc/self/fd/{}", e.fd))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".into());
            let mut bad = Vec::new();
            if fl < 0 {
                bad.push(format!("fd{}_closed", e.fd));
            } else {
                if fl & libc::O_ACCMODE != e.accmode {
                    bad.push(format!("accmode={:#o}", fl & libc::O_ACCMODE));
                }
                if (fl & libc::O_APPEND != 0) != e.append {
                    bad.push(format!("append={}", fl & libc::O_APPEND != 0));
                }
                if (fl & libc::O_NONBLOCK != 0) != e.nonblock {
                    bad.push(format!("nonblock={}", fl & libc::O_NONBLOCK != 0));
                }
                if (fdfl & libc::FD_CLOEXEC != 0) != e.cloexec {
                    bad.push(format!("cloexec={}", fdfl & libc::FD_CLOEXEC != 0));
                }
                if let Some(p) = e.pos {
                    if pos != p {
                        bad.push(format!("pos={pos}"));
                    }
                }
                if link != e.path {
                    bad.push(format!("path={link}"));
                }
            }
            let detail = bad.join(",");
            it.expect(e.name, bad.is_empty(), || detail);
        }
        // SAFETY: lseek/fstat/openat/write/ftruncate on this feature's descriptors.
        unsafe {
            // A dup pair shares one offset.
            let (a, b) = self.dup;
            libc::lseek(a, 9, libc::SEEK_SET);
            let seen = libc::lseek(b, 0, libc::SEEK_CUR);
            libc::lseek(a, 2, libc::SEEK_SET);
            it.expect("dup_shared", seen == 9, || format!("other_at={seen}"));
            // The directory descriptor works as one.
            let mut st: libc::stat = std::mem::zeroed();
            let isdir = libc::fstat(self.dir_fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let f = libc::openat(self.dir_fd, c"ro".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if f >= 0 {
                libc::close(f);
            }
            it.expect("dir_works", isdir && f >= 0, || format!("isdir={isdir},openat={f}"));
            // O_APPEND writes at the end, whatever the offset; then put the size back.
            libc::lseek(self.app_fd, 0, libc::SEEK_SET);
            let w = libc::write(self.app_fd, b"y".as_ptr() as *const _, 1);
            let size = std::fs::metadata(format!("{}/app", self.dir)).map(|m| m.len() as i64).unwrap_or(-1);
            let at = libc::lseek(self.app_fd, 0, libc::SEEK_CUR);
            libc::ftruncate(self.app_fd, self.app_size);
            libc::lseek(self.app_fd, self.app_size, libc::SEEK_SET);
            let tsize = std::fs::metadata(format!("{}/trunc", self.dir)).map(|m| m.len() as i64).unwrap_or(-1);
            it.expect("trunc_size", tsize == 3, || tsize.to_string());
            it.expect("append_works", w == 1 && size == self.app_size + 1 && at == size, || {
                format!("w={w},size={size},at={at}")
            });
        }
    }
}

struct Limits {
    cwd: String,
}

const NOFILE: (u64, u64) = (200, 300);
const CORE: (u64, u64) = (512 * 1024, 1024 * 1024);

impl Limits {
    fn setup(cwd: &str) -> Limits {
        // SAFETY: plain libc calls with valid arguments.
        unsafe {
            for (res, (cur, max)) in [(libc::RLIMIT_NOFILE, NOFILE), (libc::RLIMIT_CORE, CORE)] {
                let rl = libc::rlimit { rlim_cur: cur, rlim_max: max };
                assert_eq!(libc::setrlimit(res, &rl), 0, "setrlimit {res}: errno {}", errno());
            }
            libc::umask(0o027);
            assert_eq!(libc::chdir(c(cwd).as_ptr()), 0, "chdir {cwd}");
            assert_eq!(libc::prctl(libc::PR_SET_NAME, c"vt-limits".as_ptr()), 0);
        }
        Limits { cwd: std::env::current_dir().unwrap().to_string_lossy().into_owned() }
    }
    fn check(&self, it: &mut Items) {
        for (name, res, want) in [("nofile", libc::RLIMIT_NOFILE, NOFILE), ("core", libc::RLIMIT_CORE, CORE)] {
            let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: querying only.
            unsafe { libc::getrlimit(res, &mut rl) };
            it.expect(name, (rl.rlim_cur, rl.rlim_max) == want, || format!("{}/{}", rl.rlim_cur, rl.rlim_max));
        }
        // SAFETY: umask is read by setting it and putting it back.
        let m = unsafe {
            let m = libc::umask(0o077);
            libc::umask(m);
            m
        };
        it.expect("umask", m == 0o027, || format!("{m:o}"));
        let cwd = std::env::current_dir().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        it.expect("cwd", cwd == self.cwd, || cwd.clone());
        let mut name = [0u8; 16];
        // SAFETY: PR_GET_NAME writes at most 16 bytes.
        unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
        let n = name.iter().position(|&b| b == 0).unwrap_or(16);
        let name = String::from_utf8_lossy(&name[..n]).into_owned();
        it.expect("comm", name == "vt-limits", || name.clone());
    }
}

/// Credentials and prctl bits the `creds` feature sets.
#[derive(Debug, PartialEq, Eq)]
struct CredState {
    uid: [u32; 3],
    gid: [u32; 3],
    groups: Vec<u32>,
    caps: [String; 3],
    no_new_privs: i32,
    subreaper: i32,
    personality: i32,
}

fn cred_state() -> CredState {
    let mut uid = [0u32; 3];
    let mut gid = [0u32; 3];
    let mut groups = vec![0u32; 64];
    let mut subreaper: i32 = -1;
    // SAFETY: plain libc queries into locals of the right size.
    let (n, no_new_privs, personality) = unsafe {
        libc::getresuid(&mut uid[0], &mut uid[1], &mut uid[2]);
        libc::getresgid(&mut gid[0], &mut gid[1], &mut gid[2]);
        let n = libc::getgroups(groups.len() as i32, groups.as_mut_ptr());
        libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut subreaper as *mut i32);
        (n, libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), libc::personality(0xffff_ffff))
    };
    groups.truncate(n.max(0) as usize);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap =
        |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string()).unwrap_or_default();
    CredState {
        uid,
        gid,
        groups,
        caps: [cap("CapEff:"), cap("CapPrm:"), cap("CapInh:")],
        no_new_privs,
        subreaper,
        personality,
    }
}

struct Creds {
    expect: CredState,
}

impl Creds {
    fn setup() -> Creds {
        // SAFETY: plain libc calls with valid arguments.
        unsafe {
            let groups = [4242u32, 4343];
            assert_eq!(libc::setgroups(groups.len(), groups.as_ptr()), 0, "setgroups");
            assert_eq!(libc::setresgid(4100, 4101, 4102), 0, "setresgid");
            // Keep the permitted set across the uid change, then drop the bit again.
            assert_eq!(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0), 0);
            assert_eq!(libc::setresuid(4000, 4001, 4002), 0, "setresuid");
            assert_eq!(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0), 0);
            // Effective: CAP_KILL (5) and CAP_NET_BIND_SERVICE (10); inheritable: CAP_KILL.
            let hdr = [0x2008_0522u32, 0];
            let mut data = [0u32; 6];
            assert_eq!(libc::syscall(libc::SYS_capget, hdr.as_ptr(), data.as_mut_ptr()), 0, "capget");
            data[0] = 1 << 5 | 1 << 10;
            data[2] = 1 << 5;
            data[3] = 0;
            data[5] = 0;
            assert_eq!(libc::syscall(libc::SYS_capset, hdr.as_ptr(), data.as_ptr()), 0, "capset: errno {}", errno());
            assert_eq!(libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            assert!(libc::personality(0x0040000) >= 0, "personality");
        }
        Creds { expect: cred_state() }
    }
    fn check(&self, it: &mut Items) {
        let now = cred_state();
        let e = &self.expect;
        it.expect("uids", now.uid == e.uid, || format!("{:?}", now.uid));
        it.expect("gids", now.gid == e.gid, || format!("{:?}", now.gid));
        it.expect("groups", now.groups == e.groups, || format!("{:?}", now.groups));
        it.expect("caps", now.caps == e.caps, || format!("{:?}", now.caps));
        it.expect("no_new_privs", now.no_new_privs == 1, || now.no_new_privs.to_string());
        it.expect("subreaper", now.subreaper == 1, || now.subreaper.to_string());
        it.expect("personality", now.personality == e.personality, || format!("{:#x}", now.personality));
    }
}

struct Pipe {
    r: i32,
    w: i32,
}

impl Pipe {
    /// Two raw IPv6 sockets (protocol 253, for experiments) on the loopback
    /// connected to each other: a kind of socket crtools does not dump
    /// (UDP and UDP-Lite are dumped now). IPv6 raw sockets read no header.
    fn raw_pair() -> Pipe {
        // SAFETY: plain socket calls on local sockaddr_in6 values.
        unsafe {
            let a = libc::socket(libc::AF_INET6, libc::SOCK_RAW, 253);
            let b = libc::socket(libc::AF_INET6, libc::SOCK_RAW, 253);
            assert!(a >= 0 && b >= 0);
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_addr.s6_addr[15] = 1;
            let len = std::mem::size_of::<libc::sockaddr_in6>() as u32;
            for s in [a, b] {
                assert_eq!(libc::bind(s, &sa as *const _ as *const libc::sockaddr, len), 0);
                assert_eq!(libc::connect(s, &sa as *const _ as *const libc::sockaddr, len), 0);
            }
            // A packet queued on both (each takes every packet of protocol
            // 253 from ::1): what makes a raw socket refused now. Each check
            // reads one and sends one, so one stays queued.
            assert_eq!(libc::write(b, b"ping".as_ptr() as *const _, 4), 4);
            Pipe { r: a, w: b }
        }
    }
}

impl Pipe {
    fn setup() -> Pipe {
        let mut p = [0i32; 2];
        // SAFETY: pipe writes two descriptors.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        Pipe { r: p[0], w: p[1] }
    }
    fn check(&self, it: &mut Items) {
        let mut b = [0u8; 4];
        // SAFETY: I/O on this feature's pipe.
        let (w, r) = unsafe {
            (libc::write(self.w, b"ping".as_ptr() as *const _, 4), libc::read(self.r, b.as_mut_ptr() as *mut _, 4))
        };
        it.expect("pipe", w == 4 && r == 4 && &b == b"ping", || format!("w={w},r={r}"));
    }
}

/// The kernel-state features: locks, oom_score_adj/loginuid, membarrier,
/// namespaces for children, processes sharing objects.
struct KernelState {
    oom_loginuid: bool,
    membarrier: Option<i64>,
}

const LOGINUID: u32 = 4242;
// membarrier(2) commands.
const MB_GLOBAL_EXPEDITED: i32 = 1 << 1;
const MB_REGISTER_GLOBAL_EXPEDITED: i32 = 1 << 2;
const MB_PRIVATE_EXPEDITED: i32 = 1 << 3;
const MB_REGISTER_PRIVATE_EXPEDITED: i32 = 1 << 4;
const MB_PRIVATE_EXPEDITED_SYNC_CORE: i32 = 1 << 5;
const MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: i32 = 1 << 6;
const MB_GET_REGISTRATIONS: i32 = 1 << 9;

fn membarrier(cmd: i32) -> i64 {
    // SAFETY: membarrier takes plain integers.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
}

/// A child made by clone(2) with `flags`: it dies with its parent and
/// otherwise only waits in raw pause(2) syscalls (with CLONE_VM it shares
/// the parent's memory and TLS, so it touches neither).
extern "C" fn clone_child(_: *mut libc::c_void) -> i32 {
    // SAFETY: raw syscalls without memory arguments: prctl(PR_SET_PDEATHSIG,
    // SIGKILL) and pause(), forever.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") libc::SYS_prctl => _, in("rdi") libc::PR_SET_PDEATHSIG,
            in("rsi") libc::SIGKILL, lateout("rcx") _, lateout("r11") _, options(nostack));
        loop {
            std::arch::asm!("syscall", inlateout("rax") libc::SYS_pause => _, lateout("rcx") _, lateout("r11") _,
                options(nostack));
        }
    }
}

fn clone_with(flags: i32) -> i32 {
    let stack = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: the child runs clone_child on its own leaked stack.
    let pid =
        unsafe { libc::clone(clone_child, top as *mut libc::c_void, flags | libc::SIGCHLD, std::ptr::null_mut()) };
    assert!(pid > 0, "clone: {}", std::io::Error::last_os_error());
    pid
}

/// A filter: system call `nr` fails with `errno`, everything else runs.
fn errno_filter(nr: i64, errno: u32) -> [u64; 4] {
    let insn = |code: u16, jt: u8, jf: u8, k: u32| -> u64 {
        code as u64 | (jt as u64) << 16 | (jf as u64) << 24 | (k as u64) << 32
    };
    [
        insn(0x20, 0, 0, 0),                   // ld [0]: the system call number
        insn(0x15, 0, 1, nr as u32),           // jeq nr
        insn(0x06, 0, 0, 0x0005_0000 | errno), // ret ERRNO(errno)
        insn(0x06, 0, 0, 0x7fff_0000),         // ret ALLOW
    ]
}

/// The `seccomp` feature (see the module docs).
fn install_seccomp() {
    const SECCOMP_SET_MODE_FILTER: i64 = 1;
    const TSYNC: i64 = 1;
    const LOG: i64 = 2;
    // SAFETY: prctl with integers; seccomp reads a sock_fprog pointing at a
    // local program.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        for (nr, errno, flags) in [(libc::SYS_uname, 77, TSYNC), (libc::SYS_getppid, 78, TSYNC | LOG)] {
            let prog = errno_filter(nr, errno);
            let fprog: [u64; 2] = [prog.len() as u64, prog.as_ptr() as u64];
            let r = libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, fprog.as_ptr());
            assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
        }
    }
}

/// The `sched` feature (see the module docs).
struct Sched {
    tid: i32,
    mutex: &'static std::cell::UnsafeCell<libc::pthread_mutex_t>,
    /// Written by the check to let the thread exit (holding the mutex).
    release: i32,
    thread: std::cell::Cell<Option<std::thread::JoinHandle<()>>>,
    /// The CPUs the main thread and the second one are pinned to.
    cpus: (usize, usize),
}

const IOPRIO_WHO_PROCESS: i32 = 1;
const PR_SET_MDWE: i32 = 65;
const PR_GET_MDWE: i32 = 66;
const IOPRIO_BE_6: i64 = (2 << 13) | 6;
const IOPRIO_IDLE: i64 = 3 << 13;

/// The CPUs `tid` may run on (sched_getaffinity), as a list.
fn affinity(tid: i32) -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; the kernel fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: as above; the kernel reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0, "sched_setaffinity");
    }
}

/// CPUs for the `sched` feature's two threads: the last and the first
/// this process may use (the same one on a single CPU).
fn sched_cpus() -> (usize, usize) {
    let all = affinity(0);
    (*all.last().unwrap_or(&0), *all.first().unwrap_or(&0))
}

/// The scheduling a thread is seen with from outside: policy, nice, I/O
/// priority, timer slack.
fn sched_seen(tid: i32) -> (i32, i32, i64, String) {
    // SAFETY: syscalls taking plain integers.
    let (policy, nice, ioprio) = unsafe {
        (
            libc::sched_getscheduler(tid),
            libc::getpriority(libc::PRIO_PROCESS, tid as u32),
            libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid),
        )
    };
    let slack = std::fs::read_to_string(format!("/proc/{tid}/timerslack_ns")).unwrap_or_default();
    (policy, nice, ioprio, slack.trim().to_string())
}

impl Sched {
    fn setup() -> Sched {
        let mutex: &'static std::cell::UnsafeCell<libc::pthread_mutex_t> =
            Box::leak(Box::new(std::cell::UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER)));
        let m = mutex.get() as usize;
        let mut fds = [0; 2];
        // SAFETY: a robust mutex in leaked memory; the thread's own
        // scheduling set through syscalls taking integers; pipe(2) writes
        // two ints.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            assert_eq!(libc::pthread_mutex_init(m as *mut _, &attr), 0);
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            assert_eq!(libc::setpriority(libc::PRIO_PROCESS, 0, 5), 0);
            assert_eq!(libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_BE_6), 0);
            assert_eq!(libc::prctl(libc::PR_SET_TIMERSLACK, 123_456), 0);
        }
        let (main_cpu, thread_cpu) = sched_cpus();
        pin(main_cpu);
        let (tx, rx) = std::sync::mpsc::channel();
        let wait_fd = fds[0];
        let thread = std::thread::spawn(move || {
            // SAFETY: as above, for this thread.
            unsafe {
                let p = libc::sched_param { sched_priority: 0 };
                assert_eq!(libc::sched_setscheduler(0, libc::SCHED_BATCH, &p), 0);
                assert_eq!(libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as u32, 3), 0);
                assert_eq!(libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_IDLE), 0);
                assert_eq!(libc::prctl(libc::PR_SET_TIMERSLACK, 777_000), 0);
                assert_eq!(libc::pthread_mutex_lock(m as *mut _), 0);
            }
            pin(thread_cpu);
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            let mut b = [0u8; 1];
            // SAFETY: reading one byte into a local buffer; then the thread
            // ends with the mutex still locked.
            unsafe { libc::read(wait_fd, b.as_mut_ptr().cast(), 1) };
        });
        let tid = rx.recv().unwrap();
        Sched { tid, mutex, release: fds[1], thread: std::cell::Cell::new(Some(thread)), cpus: (main_cpu, thread_cpu) }
    }

    fn check(&self, it: &mut Items, checks: u64) {
        let me = std::process::id() as i32;
        let main = sched_seen(me);
        let want = (libc::SCHED_OTHER, 5, IOPRIO_BE_6, "123456".to_string());
        it.expect("sched_main", main == want, || format!("{main:?}"));
        let (main_cpu, thread_cpu) = self.cpus;
        let cpus = affinity(me);
        it.expect("affinity_main", cpus == [main_cpu], || format!("{cpus:?}"));
        if let Some(t) = self.thread.take() {
            let th = sched_seen(self.tid);
            let want = (libc::SCHED_BATCH, 3, IOPRIO_IDLE, "777000".to_string());
            it.expect("sched_thread", th == want, || format!("{th:?}"));
            let cpus = affinity(self.tid);
            it.expect("affinity_thread", cpus == [thread_cpu], || format!("{cpus:?}"));
            if checks < 2 {
                self.thread.set(Some(t));
                return;
            }
            // SAFETY: one byte to our own pipe.
            unsafe { libc::write(self.release, b"x".as_ptr().cast(), 1) };
            t.join().unwrap();
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime fills ts; the mutex lives forever.
            let r = unsafe {
                libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
                ts.tv_sec += 3;
                libc::pthread_mutex_timedlock(self.mutex.get(), &ts)
            };
            it.expect("robust", r == libc::EOWNERDEAD, || format!("r{r}"));
        }
    }
}

impl KernelState {
    fn setup(has: &dyn Fn(&str) -> bool, arg: &str) -> KernelState {
        let extra = |w: String| EXTRA.with(|e| e.borrow_mut().push(w));
        let lock_file = || {
            let path = format!("{arg}/locked");
            let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
            let fd = std::os::fd::IntoRawFd::into_raw_fd(f.expect("open the lock file"));
            extra(fd.to_string());
            fd
        };
        let flock = |fd: i32, cmd: i32, ty: i32| {
            // SAFETY: a zeroed flock filled in; fcntl on our own descriptor.
            let r = unsafe {
                let mut l: libc::flock = std::mem::zeroed();
                l.l_type = ty as i16;
                l.l_whence = libc::SEEK_SET as i16;
                l.l_start = 10;
                l.l_len = 20;
                libc::fcntl(fd, cmd, &l)
            };
            assert_eq!(r, 0, "fcntl {cmd}: {}", std::io::Error::last_os_error());
        };
        if has("flock") {
            let fd = lock_file();
            // SAFETY: flock on our own descriptor.
            assert_eq!(unsafe { libc::flock(fd, libc::LOCK_EX) }, 0);
        }
        if has("posix_lock") {
            flock(lock_file(), libc::F_SETLK, libc::F_WRLCK);
        }
        if has("mapped_flock") {
            let path = format!("{arg}/mapped");
            let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
            let f = f.expect("open the mapped file");
            f.set_len(4096).expect("size the mapped file");
            let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
            // SAFETY: a new shared mapping of our own file; flock on our descriptor.
            let at = unsafe {
                let at =
                    libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
                assert_ne!(at, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
                assert_eq!(libc::flock(fd, libc::LOCK_EX), 0);
                at
            };
            drop(f);
            extra(format!("{:#x}", at as usize));
        }
        if has("ofd_lock") {
            flock(lock_file(), libc::F_OFD_SETLK, libc::F_RDLCK);
        }
        if has("lease") {
            let path = format!("{arg}/leased");
            std::fs::write(&path, b"lease").expect("create the leased file");
            let f = std::fs::File::open(&path).expect("open the leased file");
            let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
            extra(fd.to_string());
            // SAFETY: fcntl on our own descriptor.
            let r = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) };
            assert_eq!(r, 0, "F_SETLEASE: {}", std::io::Error::last_os_error());
        }
        let oom_loginuid = has("oom_loginuid");
        if oom_loginuid {
            std::fs::write("/proc/self/oom_score_adj", "400").expect("set oom_score_adj");
            std::fs::write("/proc/self/coredump_filter", "0x7d").expect("set coredump_filter");
            // Reported, not fatal: the test skips when the kernel refuses.
            let r = std::fs::write("/proc/self/loginuid", LOGINUID.to_string());
            extra(if r.is_ok() { "loginuid-set".into() } else { "loginuid-refused".into() });
        }
        let membarrier = has("membarrier").then(|| {
            for cmd in
                [MB_REGISTER_PRIVATE_EXPEDITED, MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, MB_REGISTER_GLOBAL_EXPEDITED]
            {
                assert_eq!(membarrier(cmd), 0, "membarrier {cmd}: {}", std::io::Error::last_os_error());
            }
            let regs = membarrier(MB_GET_REGISTRATIONS);
            extra(format!("regs={regs}"));
            regs
        });
        for (feature, flag) in [("newtime", libc::CLONE_NEWTIME), ("newpid", libc::CLONE_NEWPID)] {
            if has(feature) {
                // SAFETY: unshare with one flag; only future children are affected.
                assert_eq!(unsafe { libc::unshare(flag) }, 0, "unshare: {}", std::io::Error::last_os_error());
            }
        }
        if has("clone_files") {
            extra(clone_with(libc::CLONE_FILES).to_string());
        }
        if has("clone_vm") {
            extra(clone_with(libc::CLONE_VM).to_string());
        }
        for (feature, unshare) in [("thread", 0), ("thread_files", libc::CLONE_FILES), ("thread_fs", libc::CLONE_FS)] {
            if !has(feature) {
                continue;
            }
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                // SAFETY: unshare of this thread's own table or fs information.
                if unshare != 0 && unsafe { libc::unshare(unshare) } != 0 {
                    panic!("unshare: {}", std::io::Error::last_os_error());
                }
                // SAFETY: gettid has no preconditions.
                tx.send(unsafe { libc::gettid() }).unwrap();
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            });
            extra(rx.recv().unwrap().to_string());
        }
        KernelState { oom_loginuid, membarrier }
    }

    fn check(&self, it: &mut Items) {
        if self.oom_loginuid {
            let oom = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
            it.expect("oom_score_adj", oom.trim() == "400", || oom.trim().to_string());
            let cf = std::fs::read_to_string("/proc/self/coredump_filter").unwrap_or_default();
            it.expect("coredump_filter", cf.trim() == "0000007d", || cf.trim().to_string());
            let uid = std::fs::read_to_string("/proc/self/loginuid").unwrap_or_default();
            it.put("loginuid", uid.trim());
        }
        if let Some(regs) = self.membarrier {
            let now = membarrier(MB_GET_REGISTRATIONS);
            it.expect("membarrier_regs", now == regs, || format!("{now}!={regs}"));
            let r = membarrier(MB_PRIVATE_EXPEDITED);
            it.expect("membarrier_private", r == 0, || format!("errno{}", errno()));
            let r = membarrier(MB_PRIVATE_EXPEDITED_SYNC_CORE);
            it.expect("membarrier_sync_core", r == 0, || format!("errno{}", errno()));
            let r = membarrier(MB_GLOBAL_EXPEDITED);
            it.expect("membarrier_global", r == 0, || format!("errno{}", errno()));
        }
    }
}

fn log_line(f: &mut File, line: &str) {
    // One write per line: the test reads the log concurrently.
    let mut s = line.to_string();
    s.push('\n');
    f.write_all(s.as_bytes()).expect("write log");
}

fn detach_from_harness() {
    crtools_tests::detach_from_harness();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: victim_task LOG FEATURE[,FEATURE...] [ARG]");
        std::process::exit(2);
    }
    let log_path = args[1].clone();
    let features: Vec<&str> = args[2].split(',').collect();
    let arg = args.get(3).cloned().unwrap_or_default();
    detach_from_harness();
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("open log");
    LOG_FD.store(std::os::fd::AsRawFd::as_raw_fd(&log), SeqCst);
    install(libc::SIGUSR1, on_flag as *const () as usize, libc::SA_RESTART, &[]);
    install(libc::SIGTERM, on_flag as *const () as usize, libc::SA_RESTART, &[]);

    let has = |f: &str| features.contains(&f);
    let sigact = has("sigact").then(SigAct::setup);
    let altstack = has("altstack").then(AltStack::setup);
    let mut pending = has("pending").then(Pending::setup);
    let mut timers = (has("timers") || has("timers_blocked")).then(|| Timers::setup(has("timers_blocked")));
    let files = has("files").then(|| Files::setup(&arg));
    let ghost = has("ghost").then(|| Ghost::setup(&arg));
    let thread_timer = has("thread_timer").then(ThreadTimer::setup);
    let limits = has("limits").then(|| Limits::setup(if arg.is_empty() { "/" } else { &arg }));
    let pipe = if has("pipe") { Some(Pipe::setup()) } else { has("socket").then(Pipe::raw_pair) };
    let creds = has("creds").then(Creds::setup);
    let trap_pending = has("trap_pending").then(TrapPending::setup);
    let trap_thread = has("trap_thread").then(TrapThread::setup);
    let sleep_ms: Option<u64> = has("sleep").then(|| arg.parse().expect("sleep MS"));
    let sleep_rem_ms: Option<u64> = has("sleep_rem").then(|| arg.parse().expect("sleep_rem MS"));
    let ids = PerThreadIds::setup(has("thread_securebits"), has("fsids"));
    if has("timer_overrun") {
        let n = timer_with_overruns();
        EXTRA.with(|e| e.borrow_mut().push(format!("overrun={n}")));
    }
    let pause = has("pause");
    let kernel = KernelState::setup(&has, &arg);
    let sched = has("sched").then(Sched::setup);
    let seccomp = has("seccomp");
    if seccomp {
        install_seccomp();
    }
    let mdwe = has("mdwe");
    if mdwe {
        // SAFETY: prctl with integer arguments.
        assert_eq!(unsafe { libc::prctl(PR_SET_MDWE, 1, 0, 0, 0) }, 0, "PR_SET_MDWE");
    }

    let words = 1 << 16;
    let seed = |i: usize| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5a5a;
    let mem: Vec<u64> = (0..words).map(seed).collect();

    let mut extra = String::new();
    if let Some(p) = &pipe {
        extra = format!(" {} {}", p.r, p.w);
    }
    EXTRA.with(|e| e.borrow().iter().for_each(|w| extra += &format!(" {w}")));
    log_line(&mut log, &format!("ready {}{extra}", std::process::id()));

    if has("vfork") {
        // Blocks in clone until the child dies.
        let child = clone_with(libc::CLONE_VM | libc::CLONE_VFORK);
        log_line(&mut log, &format!("vfork-returned {child}"));
    }

    if let Some(ms) = sleep_ms {
        let start = now();
        let ts = libc::timespec { tv_sec: (ms / 1000) as i64, tv_nsec: ((ms % 1000) * 1_000_000) as i64 };
        // SAFETY: valid timespec; no remainder wanted.
        let r = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        let e = if r == 0 { 0 } else { errno() };
        log_line(&mut log, &format!("slept r={r} errno={e} ms={} want={ms}", start.elapsed().as_millis()));
    }

    if let Some(ms) = sleep_rem_ms {
        let start = now();
        let ts = libc::timespec { tv_sec: (ms / 1000) as i64, tv_nsec: ((ms % 1000) * 1_000_000) as i64 };
        let mut rem = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid timespecs.
        let r = unsafe { libc::nanosleep(&ts, &mut rem) };
        let e = if r == 0 { 0 } else { errno() };
        log_line(&mut log, &format!("slept_rem r={r} errno={e} ms={} want={ms}", start.elapsed().as_millis()));
    }

    if pause {
        // SAFETY: pause has no preconditions.
        let r = unsafe { libc::pause() };
        let e = errno();
        log_line(&mut log, &format!("paused r={r} errno={e} usr1={}", USR1.load(SeqCst) as u8));
    }

    let mut loops: u64 = 0;
    let mut loops_at_check: u64 = 0;
    let mut checks = 0;
    loop {
        // A short sleep; signals interrupt it, std retries.
        std::thread::sleep(std::time::Duration::from_millis(5));
        loops = std::hint::black_box(loops + 1);
        if TERM.load(SeqCst) {
            log_line(&mut log, "exiting");
            std::process::exit(42);
        }
        if !USR1.swap(false, SeqCst) {
            continue;
        }
        checks += 1;
        let mut it = Items(Vec::new());
        let ok = mem.iter().enumerate().all(|(i, &w)| w == seed(i));
        it.expect("mem", ok, || "checksum".into());
        it.expect("loop", loops > loops_at_check, || format!("{loops}"));
        loops_at_check = loops;
        if let Some(s) = &sigact {
            s.check(&mut it);
        }
        if let Some(s) = &altstack {
            s.check(&mut it);
        }
        if let Some(s) = pending.as_mut() {
            s.check(&mut it);
        }
        if let Some(s) = timers.as_mut() {
            s.check(&mut it);
        }
        if let Some(g) = &ghost {
            g.check(&mut it);
        }
        if let Some(t) = &thread_timer {
            t.check(&mut it);
        }
        if let Some(s) = &files {
            s.check(&mut it);
        }
        if let Some(s) = &limits {
            s.check(&mut it);
        }
        if let Some(s) = &pipe {
            s.check(&mut it);
        }
        if let Some(s) = &creds {
            s.check(&mut it);
        }
        kernel.check(&mut it);
        ids.check(&mut it);
        if let Some(s) = &sched {
            s.check(&mut it, checks);
        }
        if seccomp {
            // SAFETY: system calls with integer arguments or a local buffer.
            let (u, ue, g, ge) = unsafe {
                let mut n: libc::utsname = std::mem::zeroed();
                let u = libc::syscall(libc::SYS_uname, &mut n as *mut libc::utsname);
                let ue = errno();
                let g = libc::syscall(libc::SYS_getppid);
                (u, ue, g, errno())
            };
            let mut threads = Vec::new();
            for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let st = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                let f = |k: &str| st.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
                threads.push((f("Seccomp:"), f("Seccomp_filters:")));
            }
            let all = threads.iter().all(|t| t.0.as_deref() == Some("2") && t.1.as_deref() == Some("2"));
            it.expect("seccomp", u == -1 && ue == 77 && g == -1 && ge == 78 && all && threads.len() >= 2, || {
                format!("{u}/{ue}:{g}/{ge}:{threads:?}")
            });
        }
        if mdwe {
            // SAFETY: prctl with integer arguments; a fresh anonymous mapping
            // (unmapped again if the kernel allowed it).
            let (flags, refused) = unsafe {
                let f = libc::prctl(PR_GET_MDWE, 0, 0, 0, 0);
                let m = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if m != libc::MAP_FAILED {
                    libc::munmap(m, 4096);
                }
                (f, m == libc::MAP_FAILED)
            };
            it.expect("mdwe", flags == 1 && refused, || format!("{flags}:{refused}"));
        }
        if let Some(s) = &trap_thread {
            s.check(&mut it);
        }
        if let Some(s) = &trap_pending {
            s.check(&mut it);
        }
        let good = it.0.iter().all(|(_, v)| !v.starts_with("bad"));
        let body: Vec<String> = it.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        log_line(
            &mut log,
            &format!(
                "check {checks} pid={} verdict={} {}",
                std::process::id(),
                if good { "ok" } else { "bad" },
                body.join(" ")
            ),
        );
    }
}

/// Per-thread credentials: a worker thread's own securebits, the main
/// thread's file-system ids.
struct PerThreadIds {
    securebits: Option<std::sync::Arc<(AtomicU64, AtomicU64)>>,
    fsids: bool,
}

const THREAD_SECUREBITS: u64 = 0x10 | 0x4; // SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP
const FSUID: u32 = 1234;
const FSGID: u32 = 4321;

impl PerThreadIds {
    fn setup(securebits: bool, fsids: bool) -> PerThreadIds {
        let securebits = securebits.then(|| {
            // (generation, value)
            let shared = std::sync::Arc::new((AtomicU64::new(0), AtomicU64::new(u64::MAX)));
            let s = shared.clone();
            std::thread::spawn(move || {
                // SAFETY: plain prctl calls on this thread.
                let r = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, THREAD_SECUREBITS, 0, 0, 0) };
                assert_eq!(r, 0, "PR_SET_SECUREBITS");
                loop {
                    // SAFETY: as above.
                    let v = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
                    s.1.store(v as u64, SeqCst);
                    s.0.fetch_add(1, SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            });
            while shared.0.load(SeqCst) == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            shared
        });
        if fsids {
            // SAFETY: plain calls; root may take any file-system ids.
            unsafe {
                libc::setfsgid(FSGID);
                libc::setfsuid(FSUID);
            }
        }
        PerThreadIds { securebits, fsids }
    }

    fn check(&self, it: &mut Items) {
        if let Some(s) = &self.securebits {
            let gen = s.0.load(SeqCst);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while s.0.load(SeqCst) < gen + 2 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let v = s.1.load(SeqCst);
            let fresh = s.0.load(SeqCst) >= gen + 2;
            it.expect("thread_securebits", fresh && v == THREAD_SECUREBITS, || format!("{v:#x}_fresh:{fresh}"));
            // SAFETY: plain prctl.
            let main = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
            it.expect("main_securebits", main == 0, || format!("{main:#x}"));
        }
        if self.fsids {
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
            let fourth = |key: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(4))
                    .unwrap_or("")
                    .to_string()
            };
            let (u, g) = (fourth("Uid:"), fourth("Gid:"));
            it.expect("fsids", u == FSUID.to_string() && g == FSGID.to_string(), || format!("{u}:{g}"));
        }
    }
}

/// A periodic 1 ms timer whose signal was taken late: its overrun count
/// (timer_getoverrun) stays until its next signal is taken, and that
/// signal stays blocked.
fn timer_with_overruns() -> i32 {
    let sig = libc::SIGRTMIN() + 5;
    // SAFETY: plain libc calls on local structures.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = sig;
        let mut id: libc::timer_t = std::ptr::null_mut();
        assert_eq!(libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id), 0, "timer_create");
        let ms = libc::timespec { tv_sec: 0, tv_nsec: 1_000_000 };
        let spec = libc::itimerspec { it_interval: ms, it_value: ms };
        assert_eq!(libc::timer_settime(id, 0, &spec, std::ptr::null_mut()), 0, "timer_settime");
        std::thread::sleep(std::time::Duration::from_millis(30));
        let wait = libc::timespec { tv_sec: 1, tv_nsec: 0 };
        assert_eq!(libc::sigtimedwait(&set, std::ptr::null_mut(), &wait), sig, "sigtimedwait");
        libc::timer_getoverrun(id)
    }
}
