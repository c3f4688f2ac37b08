//! Victim program for the integration tests: sets up well-known state,
//! prints "ready ..." on stdout and then behaves according to its mode.
//!
//! Modes:
//! - `counter`: SIGUSR1 handler (SA_SIGINFO|SA_RESTART, mask SIGUSR2),
//!   SIGUSR2 blocked, a sigaltstack, ITIMER_REAL armed far in the future;
//!   spins in user code incrementing a counter and checksumming memory.
//!   Every command line read from stdin is answered: `status` prints
//!   "counter=N sum=ok|bad".
//! - `sleeper MS`: nanosleep(MS) then prints "slept ELAPSED_MS".
//! - `reader`: blocks in read(0) and prints "got <line>".
//! - `blocked read|sleep MS|futex|epoll|epoll_pwait|waitpid|sigsuspend`: blocks in one system call
//!   and reports how it ended (see [`blocked`]).
use std::io::Write;

extern "C" fn on_usr1(_sig: i32, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {}

fn now_ms() -> u128 {
    std::time::Instant::now().elapsed().as_millis()
}

fn setup_signals() -> (usize, usize) {
    // SAFETY: plain libc calls on zeroed, correctly sized structs.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaddset(&mut sa.sa_mask, libc::SIGUSR2);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);

        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()), 0);

        let stack = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
        let ss = libc::stack_t { ss_sp: stack.as_mut_ptr() as *mut _, ss_flags: 0, ss_size: stack.len() };
        assert_eq!(libc::sigaltstack(&ss, std::ptr::null_mut()), 0);

        let it = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 500, tv_usec: 0 },
            it_value: libc::timeval { tv_sec: 1000, tv_usec: 0 },
        };
        assert_eq!(libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()), 0);
        (on_usr1 as *const () as usize, stack.as_ptr() as usize)
    }
}

fn stdin_ready() -> bool {
    let mut p = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

fn read_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_string()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("counter");
    let mut out = std::io::stdout();
    match mode {
        "counter" => {
            let (handler, altstack) = setup_signals();
            let exe = std::fs::File::open("/proc/self/exe").unwrap();
            use std::os::fd::IntoRawFd;
            // SAFETY: dup2 onto an unused descriptor number.
            unsafe { libc::dup2(exe.into_raw_fd(), 100) };
            let data: Vec<u64> = (0..1 << 16).map(|i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
            let expect: u64 = data.iter().fold(0, |a, &x| a.wrapping_add(x));
            writeln!(out, "ready {} {handler:#x} {altstack:#x}", std::process::id()).unwrap();
            out.flush().unwrap();
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter + 1);
                if counter.is_multiple_of(1 << 20) && stdin_ready() {
                    let Some(cmd) = read_line() else { return };
                    if cmd == "status" {
                        let sum: u64 = data.iter().fold(0, |a, &x| a.wrapping_add(x));
                        let ok = if sum == expect { "ok" } else { "bad" };
                        writeln!(out, "counter={counter} sum={ok}").unwrap();
                        out.flush().unwrap();
                    }
                }
            }
        }
        "sleeper" => {
            let ms: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let start = std::time::Instant::now();
            writeln!(out, "ready {}", std::process::id()).unwrap();
            out.flush().unwrap();
            let ts = libc::timespec { tv_sec: (ms / 1000) as i64, tv_nsec: ((ms % 1000) * 1_000_000) as i64 };
            // SAFETY: valid timespec; no remainder wanted.
            let r = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            writeln!(out, "slept {} r={r}", start.elapsed().as_millis()).unwrap();
        }
        "reader" => {
            writeln!(out, "ready {}", std::process::id()).unwrap();
            out.flush().unwrap();
            let mut buf = [0u8; 256];
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(0, buf.as_mut_ptr() as *mut _, buf.len()) };
            let got = if n > 0 {
                String::from_utf8_lossy(&buf[..n as usize]).trim_end().to_string()
            } else {
                format!("error {n}")
            };
            writeln!(out, "got {got}").unwrap();
        }
        "blocked" => blocked(&args[2..]),
        "ticker" => ticker(&args[2..]),
        "threads" => threads(&args[2..]),
        "forest" => forest(&args[2..]),
        "orphan-group" => orphan_group(&args[2..]),
        other => {
            let _ = now_ms();
            eprintln!("victim: unknown mode {other}");
            std::process::exit(2);
        }
    }
}

/// `ticker LOG [MEM_MIB]`: a detached counter for dump/restore tests.
///
/// Becomes a session leader, points stdio at /dev/null, appends
/// "tick N" lines to LOG every 50 ms, and on SIGUSR1 appends
/// "status pid=P ticks=N mem=ok|bad" after checking MEM_MIB MiB of
/// pseudo-random memory word by word.
fn ticker(args: &[String]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static USR1: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_usr1(_: i32) {
        USR1.store(true, Ordering::SeqCst);
    }
    let log = args.first().expect("ticker LOG [MEM_MIB]");
    let mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    crtools_tests::detach_from_harness();
    // SAFETY: plain libc calls; the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as usize);
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open log");
    let words = mib * (1 << 20) / 8;
    let seed = |i: usize| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
    let mem: Vec<u64> = (0..words).map(seed).collect();
    f.write_all(format!("ready {}\n", std::process::id()).as_bytes()).unwrap();
    let mut ticks = 0u64;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        ticks += 1;
        f.write_all(format!("tick {ticks}\n").as_bytes()).unwrap();
        if USR1.swap(false, Ordering::SeqCst) {
            let ok = mem.iter().enumerate().all(|(i, &w)| w == seed(i));
            f.write_all(
                format!("status pid={} ticks={ticks} mem={}\n", std::process::id(), if ok { "ok" } else { "bad" })
                    .as_bytes(),
            )
            .unwrap();
        }
    }
}

/// `threads LOG N`: like `ticker`, with N extra threads that each count in
/// a thread-local and pass a token around a mutex/condvar ring. On SIGUSR1
/// the main thread appends "status pid=P threads=N ok|bad ..." after
/// checking that every thread's tid, thread-local and counter are right.
fn threads(args: &[String]) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    static USR1: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_usr1(_: i32) {
        USR1.store(true, Ordering::SeqCst);
    }
    thread_local! {
        static MINE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let log = args.first().expect("threads LOG N");
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    crtools_tests::detach_from_harness();
    // SAFETY: plain libc calls; the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as usize);
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open log");
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let tids: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let bad = Arc::new(AtomicBool::new(false));
    let ring = Arc::new((Mutex::new(0usize), Condvar::new()));
    let passes = Arc::new(AtomicU64::new(0));
    for i in 0..n {
        let (counters, tids, bad, ring, passes) =
            (counters.clone(), tids.clone(), bad.clone(), ring.clone(), passes.clone());
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u64;
            tids[i].store(tid, Ordering::SeqCst);
            MINE.with(|m| m.set(tid * 1000));
            loop {
                // Wait for the token, pass it on.
                let (lock, cv) = &*ring;
                let mut turn = lock.lock().unwrap();
                while *turn != i {
                    turn = cv.wait(turn).unwrap();
                }
                *turn = (i + 1) % n;
                passes.fetch_add(1, Ordering::SeqCst);
                cv.notify_all();
                drop(turn);
                let v = MINE.with(|m| {
                    m.set(m.get() + 1);
                    m.get()
                });
                // SAFETY: as above.
                if v / 1000 != tid || unsafe { libc::gettid() } as u64 != tid {
                    bad.store(true, Ordering::SeqCst);
                }
                counters[i].fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
    }
    while tids.iter().any(|t| t.load(Ordering::SeqCst) == 0) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let list: Vec<String> = tids.iter().map(|t| t.load(Ordering::SeqCst).to_string()).collect();
    f.write_all(format!("ready {} tids={}\n", std::process::id(), list.join(",")).as_bytes()).unwrap();
    let mut last: Vec<u64> = vec![0; n];
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if USR1.swap(false, Ordering::SeqCst) {
            // Every thread must make progress within a second.
            let start: Vec<u64> = counters.iter().map(|c| c.load(Ordering::SeqCst)).collect();
            let p0 = passes.load(Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(500));
            let moving = counters.iter().zip(&start).all(|(c, s)| c.load(Ordering::SeqCst) > *s);
            let ring_moving = passes.load(Ordering::SeqCst) > p0;
            let grew = counters.iter().zip(&last).all(|(c, l)| c.load(Ordering::SeqCst) >= *l);
            last = counters.iter().map(|c| c.load(Ordering::SeqCst)).collect();
            let ok = moving && ring_moving && grew && !bad.load(Ordering::SeqCst);
            let list: Vec<String> = tids.iter().map(|t| t.load(Ordering::SeqCst).to_string()).collect();
            // One write: the test may read the log at any moment.
            let line = format!(
                "status pid={} threads={} tids={} {} moving={moving} ring={ring_moving} tls={}\n",
                std::process::id(),
                n,
                list.join(","),
                if ok { "ok" } else { "bad" },
                !bad.load(Ordering::SeqCst)
            );
            f.write_all(line.as_bytes()).unwrap();
        }
    }
}

/// `forest LOG PROCS THREADS MIB`: a session leader that forks PROCS-1
/// children; each process runs THREADS-1 extra spinning-and-sleeping
/// threads and holds MIB MiB of checksummed memory. On SIGUSR1 each process
/// appends "status pid=P mem=ok|bad"; the root says "ready" once all are up.
fn forest(args: &[String]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static USR1: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_usr1(_: i32) {
        USR1.store(true, Ordering::SeqCst);
    }
    let log = args.first().expect("forest LOG PROCS THREADS MIB").clone();
    let procs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let mib: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    crtools_tests::detach_from_harness();
    // SAFETY: plain libc calls; the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as usize);
    }
    let mut index = 0;
    for i in 1..procs {
        // SAFETY: fork before any thread exists in this process.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            index = i;
            break;
        }
    }
    let seed = move |i: usize| (i as u64 ^ (index as u64) << 40).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let words = mib * (1 << 20) / 8;
    let mem: Vec<u64> = (0..words).map(seed).collect();
    for _ in 1..threads {
        std::thread::spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_millis(20));
        });
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open log");
    // Each line in one write(2): hundreds of processes append at once.
    f.write_all(format!("up {}\n", std::process::id()).as_bytes()).unwrap();
    if index == 0 {
        // Ready once every process said "up".
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().filter(|l| l.starts_with("up ")).count() >= procs {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        f.write_all(format!("ready {}\n", std::process::id()).as_bytes()).unwrap();
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if USR1.swap(false, Ordering::SeqCst) {
            let ok = mem.iter().enumerate().all(|(i, &w)| w == seed(i));
            let line = format!("status pid={} mem={}\n", std::process::id(), if ok { "ok" } else { "bad" });
            f.write_all(line.as_bytes()).unwrap();
        }
    }
}

/// `orphan-group LOG`: a session leader and child subreaper P forks A; A
/// makes its own process group and forks B into it, then exits (P reaps
/// it): B lives on, re-parented to P, in a group whose leader is gone. On
/// SIGUSR1 each of P and B appends "status who=P|B pid= ppid= pgid= sid=".
fn orphan_group(args: &[String]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static USR1: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_usr1(_: i32) {
        USR1.store(true, Ordering::SeqCst);
    }
    let log = args.first().expect("orphan-group LOG").clone();
    crtools_tests::detach_from_harness();
    // SAFETY: plain libc calls in a single-threaded process.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as usize);
    }
    let mut who = "P";
    // SAFETY: single-threaded fork.
    let a = unsafe { libc::fork() };
    if a == 0 {
        // SAFETY: as above.
        unsafe {
            libc::setpgid(0, 0);
            if libc::fork() != 0 {
                libc::_exit(0);
            }
        }
        who = "B";
    } else {
        // SAFETY: reaping our child A.
        unsafe { libc::waitpid(a, std::ptr::null_mut(), 0) };
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open log");
    if who == "P" {
        std::thread::sleep(std::time::Duration::from_millis(200));
        f.write_all(format!("ready {} a={a}\n", std::process::id()).as_bytes()).unwrap();
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if USR1.swap(false, Ordering::SeqCst) {
            // SAFETY: plain getters.
            let (ppid, pgid, sid) = unsafe { (libc::getppid(), libc::getpgid(0), libc::getsid(0)) };
            f.write_all(
                format!("status who={who} pid={} ppid={ppid} pgid={pgid} sid={sid}\n", std::process::id()).as_bytes(),
            )
            .unwrap();
        }
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: one valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn unsafe_zeroed_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all zeroes is the empty set.
    unsafe { std::mem::zeroed() }
}

/// `blocked KIND [MS]`: says "ready PID", blocks in one system call that
/// only the test ends, and prints one line on how it ended, then exits
/// (SIGUSR1 runs an empty SA_RESTART handler):
/// - `read`: read(0) → "read n=N data=LINE errno=E";
/// - `sleep MS`: clock_nanosleep of MS → "sleep r=R start=NS end=NS"
///   (CLOCK_MONOTONIC);
/// - `futex`: FUTEX_WAIT (60 s timeout) on a word a second thread sets and
///   wakes when a line arrives on stdin → "futex r=R errno=E word=W";
/// - `epoll`: epoll_wait(-1) on stdin → "epoll n=N events=HEX tag=T
///   errno=E usr2_blocked=0|1 data=LINE"; `epoll_pwait`: the same with
///   epoll_pwait and a mask of its own (SIGUSR2 blocked while it waits);
/// - `waitpid`: wait4 for a child that exits with 7 once a line arrives on
///   stdin → "waitpid r=ok|R status=S errno=E";
/// - `sigsuspend`: SIGUSR2 blocked, sigsuspend with an empty mask until a
///   SIGUSR2 (handler) → "sigsuspend r=-1 errno=4 usr2_blocked=1" (the
///   mask it had before the call is back).
fn blocked(args: &[String]) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static WORD: AtomicU32 = AtomicU32::new(0);
    let kind = args.first().map(String::as_str).unwrap_or("read");
    // SIGUSR1 runs a handler with SA_RESTART: tests send it to race the seize.
    extern "C" fn on_usr1_restart(_: i32) {}
    // SAFETY: plain libc calls on a zeroed, correctly sized struct.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1_restart as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    let mut out = std::io::stdout();
    let mut buf = [0u8; 256];
    let text = |n: isize, buf: &[u8]| {
        if n > 0 {
            String::from_utf8_lossy(&buf[..n as usize]).trim_end().to_string()
        } else {
            String::new()
        }
    };
    let line = match kind {
        "read" => {
            writeln!(out, "ready {}", std::process::id()).unwrap();
            out.flush().unwrap();
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(0, buf.as_mut_ptr() as *mut _, buf.len()) };
            let e = if n < 0 { errno() } else { 0 };
            format!("read n={n} data={} errno={e}", text(n, &buf))
        }
        "sleep" => {
            let ms: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(500);
            let start = monotonic_ns();
            writeln!(out, "ready {} start={start}", std::process::id()).unwrap();
            out.flush().unwrap();
            let ts = libc::timespec { tv_sec: (ms / 1000) as i64, tv_nsec: ((ms % 1000) * 1_000_000) as i64 };
            // SAFETY: valid timespec; no remainder wanted.
            let r = unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &ts, std::ptr::null_mut()) };
            format!("sleep r={r} start={start} end={}", monotonic_ns())
        }
        "futex" => {
            std::thread::spawn(|| {
                let mut b = [0u8; 64];
                // SAFETY: reading into a local buffer.
                unsafe { libc::read(0, b.as_mut_ptr() as *mut _, b.len()) };
                WORD.store(1, Ordering::SeqCst);
                // SAFETY: FUTEX_WAKE on a static word.
                unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        WORD.as_ptr(),
                        libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                        1,
                        0,
                        0,
                        0,
                    )
                };
            });
            writeln!(out, "ready {}", std::process::id()).unwrap();
            out.flush().unwrap();
            let ts = libc::timespec { tv_sec: 60, tv_nsec: 0 };
            // SAFETY: FUTEX_WAIT on a static word with a valid timeout.
            let r = unsafe {
                libc::syscall(libc::SYS_futex, WORD.as_ptr(), libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, 0, &ts, 0, 0)
            };
            let e = if r < 0 { errno() } else { 0 };
            format!("futex r={r} errno={e} word={}", WORD.load(Ordering::SeqCst))
        }
        "epoll" | "epoll_pwait" => {
            // SAFETY: plain epoll calls on our own descriptors.
            let (n, ev, e) = unsafe {
                let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
                let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 42 };
                assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, 0, &mut ev), 0);
                writeln!(out, "ready {}", std::process::id()).unwrap();
                out.flush().unwrap();
                let mut got = [libc::epoll_event { events: 0, u64: 0 }; 4];
                // epoll_pwait with a mask of its own: SIGUSR2 blocked while it waits.
                let mut own: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut own);
                libc::sigaddset(&mut own, libc::SIGUSR2);
                let n = if kind == "epoll" {
                    libc::epoll_wait(ep, got.as_mut_ptr(), 4, -1)
                } else {
                    libc::epoll_pwait(ep, got.as_mut_ptr(), 4, -1, &own)
                };
                let e = if n < 0 { errno() } else { 0 };
                (n, got[0], e)
            };
            let events = ev.events;
            let tag = ev.u64;
            // SAFETY: reading into a local buffer.
            let r = if n == 1 { unsafe { libc::read(0, buf.as_mut_ptr() as *mut _, buf.len()) } } else { 0 };
            let mut now: libc::sigset_t = unsafe_zeroed_sigset();
            // SAFETY: querying the mask only.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now) };
            // SAFETY: reading a local set.
            let usr2 = unsafe { libc::sigismember(&now, libc::SIGUSR2) };
            format!("epoll n={n} events={events:#x} tag={tag} errno={e} usr2_blocked={usr2} data={}", text(r, &buf))
        }
        "waitpid" => {
            // SAFETY: fork in a single-threaded process; the child only
            // reads, then leaves with _exit.
            let child = unsafe { libc::fork() };
            if child == 0 {
                // SAFETY: as above.
                unsafe {
                    libc::read(0, buf.as_mut_ptr() as *mut _, buf.len());
                    libc::_exit(7);
                }
            }
            writeln!(out, "ready {} child={child}", std::process::id()).unwrap();
            out.flush().unwrap();
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::wait4(child, &mut status, 0, std::ptr::null_mut()) };
            let e = if r < 0 { errno() } else { 0 };
            let r = if r == child { "ok".to_string() } else { r.to_string() };
            format!("waitpid r={r} status={:#x} errno={e}", status)
        }
        "sigsuspend" => {
            // SIGUSR2 blocked but for the wait: its handler ends sigsuspend,
            // which must then put the mask back (SIGUSR2 blocked again).
            extern "C" fn on_usr2(_: i32) {}
            // SAFETY: plain libc calls on zeroed, correctly sized structs.
            let (r, e, blocked) = unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_usr2 as *const () as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR2);
                assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()), 0);
                writeln!(out, "ready {}", std::process::id()).unwrap();
                out.flush().unwrap();
                let mut wait: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut wait);
                let r = libc::sigsuspend(&wait);
                let e = errno();
                let mut now: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now);
                (r, e, libc::sigismember(&now, libc::SIGUSR2))
            };
            format!("sigsuspend r={r} errno={e} usr2_blocked={blocked}")
        }
        other => panic!("victim: unknown blocking call {other}"),
    };
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}
