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
    writeln!(f, "ready {}", std::process::id()).unwrap();
    let mut ticks = 0u64;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        ticks += 1;
        writeln!(f, "tick {ticks}").unwrap();
        if USR1.swap(false, Ordering::SeqCst) {
            let ok = mem.iter().enumerate().all(|(i, &w)| w == seed(i));
            writeln!(f, "status pid={} ticks={ticks} mem={}", std::process::id(), if ok { "ok" } else { "bad" })
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
    writeln!(f, "ready {} tids={}", std::process::id(), list.join(",")).unwrap();
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
            writeln!(
                f,
                "status pid={} threads={} tids={} {} moving={moving} ring={ring_moving} tls={}",
                std::process::id(),
                n,
                list.join(","),
                if ok { "ok" } else { "bad" },
                !bad.load(Ordering::SeqCst)
            )
            .unwrap();
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
    writeln!(f, "up {}", std::process::id()).unwrap();
    if index == 0 {
        // Ready once every process said "up".
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().filter(|l| l.starts_with("up ")).count() >= procs {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        writeln!(f, "ready {}", std::process::id()).unwrap();
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if USR1.swap(false, Ordering::SeqCst) {
            let ok = mem.iter().enumerate().all(|(i, &w)| w == seed(i));
            writeln!(f, "status pid={} mem={}", std::process::id(), if ok { "ok" } else { "bad" }).unwrap();
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
        writeln!(f, "ready {} a={a}", std::process::id()).unwrap();
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if USR1.swap(false, Ordering::SeqCst) {
            // SAFETY: plain getters.
            let (ppid, pgid, sid) = unsafe { (libc::getppid(), libc::getpgid(0), libc::getsid(0)) };
            writeln!(f, "status who={who} pid={} ppid={ppid} pgid={pgid} sid={sid}", std::process::id()).unwrap();
        }
    }
}
