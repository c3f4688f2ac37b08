//! Infect-and-cure stress under CPU load: victims blocked in read, nanosleep,
//! futex, epoll_wait, epoll_pwait, wait4 and sigsuspend are seized, infected and cured several times
//! each while busy threads keep every CPU loaded, then made to finish their
//! call; each must end exactly as if nothing had happened. The last
//! infection of every other plain victim is abandoned as if crtools died:
//! the parasite cures the victim by itself, which must end its call as
//! exactly.
//!
//! `CRTOOLS_STRESS_ROUNDS` sets the victims per kind (default 3, each
//! infected up to [`INFECTIONS`] times: about 60 infections); the long run
//! is `CRTOOLS_STRESS_ROUNDS=30` (about 600).
use crtools_tests::Victim;
use engine::infect::{Parasite, Tracee};
use engine::sys::Pid;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");
/// Infect/cure cycles per victim before its call is allowed to end.
const INFECTIONS: usize = 3;
/// The sleeper's sleep.
const SLEEP_MS: u64 = 1500;
/// How late a sleep may end on a loaded machine.
const SLACK_MS: u64 = 400;
const NR_RESTART_SYSCALL: i64 = libc::SYS_restart_syscall;

fn rounds() -> usize {
    std::env::var("CRTOOLS_STRESS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: one valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Busy threads on every CPU until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Load {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The syscall `pid` is blocked in (first field of /proc/pid/syscall), once
/// it sleeps; None if it runs or is gone.
fn blocked_in(pid: i32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?.to_string();
    if state != "S" {
        return None;
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Waits until the victim sleeps in one of `nrs`; fails with what it said
/// if it ended its call instead.
fn wait_blocked(v: &mut Victim, nrs: &[i64], what: &str) {
    let pid = v.pid();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(nr) = blocked_in(pid) {
            if nrs.contains(&nr) {
                return;
            }
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
            .unwrap_or(true);
        if zombie || Instant::now() > deadline {
            let said = if zombie { v.line() } else { String::from("(still running)") };
            panic!("{what}: victim {pid} left its call {nrs:?}: {said}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `pid` is in `state` (a letter of /proc/pid/stat).
fn wait_state(pid: i32, state: char, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with(state)) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: victim {pid} never reached state {state}: {s}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Seizes, infects, runs two parasite commands and lets the task go as
/// crtools dying would (`Parasite::abandon`): the parasite cures the task by
/// itself; checks it is back in one of the calls `nrs` with its mask.
fn infect_and_abandon(v: &mut Victim, nrs: &[i64], what: &str) {
    let pid = Pid(v.pid());
    // As /proc shows it blocked in its call (epoll_pwait's and sigsuspend's
    // own masks included): the same once it is back in the call.
    let sig_blk = || {
        std::fs::read_to_string(format!("/proc/{}/status", pid.0))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:").map(|x| u64::from_str_radix(x.trim(), 16).unwrap()))
            .unwrap()
    };
    let mask = sig_blk();
    let mut t = Tracee::seize(pid).unwrap_or_else(|e| panic!("{what}: seize: {e}"));
    {
        let mut p = Parasite::infect(&mut t).unwrap_or_else(|e| panic!("{what}: infect: {e}"));
        assert_eq!(p.get_pid().unwrap_or_else(|e| panic!("{what}: getpid: {e}")).pid, pid.0);
        p.sigactions().unwrap_or_else(|e| panic!("{what}: sigactions: {e}"));
        p.abandon().unwrap_or_else(|e| panic!("{what}: abandon: {e}"));
    }
    drop(t);
    wait_blocked(v, nrs, &format!("{what}: back in its call after curing itself"));
    assert_eq!(sig_blk(), mask, "{what}: mask back after the self-cure");
    INFECTED.fetch_add(1, Ordering::SeqCst);
}

/// Seizes, infects (two parasite commands), cures and detaches `pid`;
/// checks that registers and mask are back. Returns rax at the seize stop.
fn infect_and_cure(pid: Pid, what: &str) -> i64 {
    let mut t = Tracee::seize(pid).unwrap_or_else(|e| panic!("{what}: seize: {e}"));
    let regs = t.regs().unwrap();
    let mask = t.sigmask().unwrap();
    {
        let mut p = Parasite::infect(&mut t).unwrap_or_else(|e| panic!("{what}: infect: {e}"));
        assert_eq!(p.get_pid().unwrap_or_else(|e| panic!("{what}: getpid: {e}")).pid, pid.0);
        p.sigactions().unwrap_or_else(|e| panic!("{what}: sigactions: {e}"));
        p.cure().unwrap_or_else(|e| panic!("{what}: cure: {e}"));
    }
    assert_eq!(t.regs().unwrap(), regs, "{what}: registers back after cure");
    assert_eq!(t.sigmask().unwrap(), mask, "{what}: mask back after cure");
    t.detach().unwrap_or_else(|e| panic!("{what}: detach: {e}"));
    INFECTED.fetch_add(1, Ordering::SeqCst);
    regs.rax as i64
}

/// Infect/cure cycles done.
static INFECTED: AtomicUsize = AtomicUsize::new(0);
/// Victims alive now, killed by the watchdog if the test hangs (a call that
/// restarted where it should have ended leaves its victim blocked).
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// A victim's entry in [`LIVE`] while its test owns it.
struct Live(i32);

impl Live {
    fn add(pid: i32) -> Live {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        Live(pid)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|&p| p != self.0);
    }
}

/// One victim of `kind`: blocked, infected and cured [`INFECTIONS`] times,
/// then made to finish; checks its report.
fn one_victim(kind: &str, round: usize) {
    let what = format!("{kind} #{round}");
    let ms = SLEEP_MS.to_string();
    let args: Vec<&str> = if kind == "sleep" { vec!["blocked", kind, &ms] } else { vec!["blocked", kind] };
    let mut v = Victim::start(VICTIM, &args);
    let pid = v.pid();
    let _live = Live::add(pid);
    let nrs: &[i64] = match kind {
        "read" => &[libc::SYS_read],
        "sleep" => &[libc::SYS_clock_nanosleep, NR_RESTART_SYSCALL],
        "futex" => &[libc::SYS_futex, NR_RESTART_SYSCALL],
        "epoll" | "epoll_pwait" => &[libc::SYS_epoll_wait, libc::SYS_epoll_pwait],
        "waitpid" => &[libc::SYS_wait4],
        "sigsuspend" => &[libc::SYS_rt_sigsuspend],
        _ => unreachable!(),
    };
    // Every third victim is in group-stop (SIGSTOP) while it is infected;
    // for calls that SA_RESTART restarts, every third one gets a SIGUSR1
    // (handler) right before each seize, racing its delivery with our
    // interrupt (a signal-delivery stop, or a stop at the handler's entry).
    let stopped = round % 3 == 1;
    let signalled = round % 3 == 2 && matches!(kind, "read" | "waitpid");
    if round % 3 == 2 && kind.starts_with("epoll") {
        // A SIGTSTP (default action: stop) racing the seize: whether it is
        // acted on before our interrupt or is still pending at it, epoll_wait
        // must end as the kernel ends it for a stop signal: EINTR once the
        // task is continued (not a restart).
        wait_blocked(&mut v, nrs, &what);
        // SAFETY: kill by pid of our own victim.
        unsafe { libc::kill(pid, libc::SIGTSTP) };
        infect_and_cure(Pid(pid), &what);
        wait_state(pid, 'T', &format!("{what}: stopped by its SIGTSTP"));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        assert_eq!(v.line(), "epoll n=-1 events=0x0 tag=0 errno=4 usr2_blocked=0 data=", "{what}");
        assert_eq!(v.wait(), Some(0), "{what}: victim exit");
        return;
    }
    let mut last_release = 0;
    if stopped {
        wait_blocked(&mut v, nrs, &what);
        // SAFETY: kill by pid of our own victim.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        wait_state(pid, 'T', &what);
    }
    for i in 0..INFECTIONS {
        if kind == "sleep" && monotonic_ns() > v_start(&v) + (SLEEP_MS - 200) * 1_000_000 {
            break; // the sleep would end while we hold it: nothing left to interrupt
        }
        if !stopped {
            wait_blocked(&mut v, nrs, &what);
        }
        // Vary where the interrupt lands relative to the victim's wake-ups.
        std::thread::sleep(Duration::from_micros((round * 7 + i * 13) as u64 % 3000));
        if signalled {
            // SAFETY: kill by pid of our own victim.
            unsafe { libc::kill(pid, libc::SIGUSR1) };
        }
        if i == INFECTIONS - 1 && !stopped && !signalled && round.is_multiple_of(2) {
            // The last round of every other plain victim: crtools "dies".
            infect_and_abandon(&mut v, nrs, &what);
            last_release = monotonic_ns();
            continue;
        }
        infect_and_cure(Pid(pid), &what);
        if stopped {
            wait_state(pid, 'T', &format!("{what}: still in group-stop after the cure"));
        }
        last_release = monotonic_ns();
    }
    if stopped {
        // SAFETY: kill by pid of our own victim.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        last_release = monotonic_ns();
        if kind.starts_with("epoll") {
            // The kernel's own answer to a stop signal, with or without us
            // (signal(7)): epoll_wait fails with EINTR once continued.
            assert_eq!(v.line(), "epoll n=-1 events=0x0 tag=0 errno=4 usr2_blocked=0 data=", "{what}");
            assert_eq!(v.wait(), Some(0), "{what}: victim exit");
            return;
        }
    }
    match kind {
        "read" => {
            wait_blocked(&mut v, nrs, &what);
            v.send("ping");
            assert_eq!(v.line(), "read n=5 data=ping errno=0", "{what}");
        }
        "sleep" => {
            let line = v.line();
            let field = |k: &str| -> u64 {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .and_then(|x| x.parse().ok())
                    .unwrap_or_else(|| panic!("{what}: no {k} in {line:?}"))
            };
            assert!(line.starts_with("sleep r=0 "), "{what}: sleep cut short: {line}");
            let (start, end) = (field("start="), field("end="));
            let due = start + SLEEP_MS * 1_000_000;
            assert!(end >= due, "{what}: woke {} ms early", (due - end) / 1_000_000);
            // Not before it was released, but no longer: a restart from the
            // full duration would end a whole sleep after the release.
            let latest = due.max(last_release) + SLACK_MS * 1_000_000;
            assert!(end <= latest, "{what}: woke {} ms late", (end - due.max(last_release)) / 1_000_000);
        }
        "futex" => {
            wait_blocked(&mut v, nrs, &what);
            v.send("wake");
            assert_eq!(v.line(), "futex r=0 errno=0 word=1", "{what}");
        }
        "epoll" | "epoll_pwait" => {
            wait_blocked(&mut v, nrs, &what);
            v.send("ping");
            // epoll_pwait's own mask is gone once it returned.
            assert_eq!(v.line(), "epoll n=1 events=0x1 tag=42 errno=0 usr2_blocked=0 data=ping", "{what}");
        }
        "waitpid" => {
            wait_blocked(&mut v, nrs, &what);
            v.send("exit");
            assert_eq!(v.line(), "waitpid r=ok status=0x700 errno=0", "{what}");
        }
        "sigsuspend" => {
            wait_blocked(&mut v, nrs, &what);
            // SAFETY: kill by pid of our own victim.
            unsafe { libc::kill(pid, libc::SIGUSR2) };
            assert_eq!(v.line(), "sigsuspend r=-1 errno=4 usr2_blocked=1", "{what}");
        }
        _ => unreachable!(),
    }
    assert_eq!(v.wait(), Some(0), "{what}: victim exit");
}

/// The sleeper's start time (CLOCK_MONOTONIC ns) from its ready line.
fn v_start(v: &Victim) -> u64 {
    v.ready.iter().find_map(|w| w.strip_prefix("start=")).and_then(|x| x.parse().ok()).unwrap_or(0)
}

#[test]
fn blocked_victims_resume_exactly_under_load() {
    let rounds = rounds();
    crtools_tests::with_watchdog(
        "infect_stress",
        120 + 15 * rounds as u64,
        move || stress(rounds),
        || {
            let pids = LIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for p in &pids {
                // SAFETY: kill by pid of a victim this test started.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            format!("killed victims {pids:?}")
        },
    );
}

fn stress(rounds: usize) {
    let _load = Load::start();
    let started = Instant::now();
    let kinds = ["read", "sleep", "futex", "epoll", "epoll_pwait", "waitpid", "sigsuspend"];
    // One thread per kind: ptrace is per thread, each seizes its own victims.
    let handles: Vec<_> = kinds
        .iter()
        .map(|&kind| {
            std::thread::Builder::new()
                .name(format!("stress-{kind}"))
                .spawn(move || {
                    for r in 0..rounds {
                        one_victim(kind, r);
                    }
                })
                .expect("spawn")
        })
        .collect();
    let mut failed = Vec::new();
    for (h, kind) in handles.into_iter().zip(kinds) {
        if h.join().is_err() {
            failed.push(kind);
        }
    }
    eprintln!(
        "{} infections of {} victims in {:.1} s",
        INFECTED.load(Ordering::SeqCst),
        rounds * kinds.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "victims misbehaved after infect/cure: {failed:?}");
}
