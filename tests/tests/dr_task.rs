//! Dump and restore of one process: the task-state half (signals, timers,
//! descriptors, limits, error paths). Memory is covered by dr_memory.rs.
//!
//! Every test starts a `victim_task`, which reports through a log file and
//! takes its commands as signals (SIGUSR1: check your state and append a
//! verdict line). Each test body runs under a watchdog so a hang fails the
//! test instead of blocking the run; every task a test started is killed by
//! pid and reaped.
use engine::dump::{dump, DumpOptions};
use engine::restore::{restore, RestoreOptions};
use engine::sys::Pid;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim_task");
/// How long a victim may take to answer one command on a loaded machine.
const ANSWER: Duration = Duration::from_secs(20);

/// Pids started by each running test, killed if its watchdog fires.
static PIDS: Mutex<Vec<(String, i32)>> = Mutex::new(Vec::new());

fn register(test: &str, pid: i32) {
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).push((test.to_string(), pid));
}

fn unregister(pid: i32) {
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, p)| *p != pid);
}

/// Runs `body` on its own thread (ptrace is per thread, so dump and restore
/// of one test stay on it); fails the test after `secs` seconds.
fn run(test: &'static str, secs: u64, body: impl FnOnce(&Cx) + Send + 'static) {
    if !require_root() {
        return;
    }
    crtools_tests::with_watchdog(
        test,
        secs,
        move || body(&Cx { test }),
        || {
            let pids: Vec<i32> = PIDS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(t, _)| t == test)
                .map(|&(_, p)| p)
                .collect();
            for p in &pids {
                // SAFETY: kill by pid of a task this test started.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            format!("killed {pids:?}")
        },
    );
}

fn require_root() -> bool {
    crtools_tests::require_root()
}

/// The test's context.
struct Cx {
    test: &'static str,
}

use crtools_tests::Scratch;

/// A victim task: first our child, after restore a child of the engine
/// (that is, of this process). Killed and reaped on drop.
struct Task {
    pid: i32,
    child: Option<Child>,
    log: PathBuf,
    /// The words after "ready PID".
    ready: Vec<String>,
}

impl Cx {
    /// Starts `victim_task LOG FEATURES [ARG]` and waits for its "ready" line.
    fn start(&self, s: &Scratch, features: &str, arg: Option<&str>) -> Task {
        let mut cmd = Command::new(VICTIM);
        cmd.arg(s.log()).arg(features);
        if let Some(a) = arg {
            cmd.arg(a);
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("start victim");
        let pid = child.id() as i32;
        register(self.test, pid);
        let mut t = Task { pid, child: Some(child), log: s.log(), ready: Vec::new() };
        let line = t.wait_line(|l| l.starts_with("ready "), "the ready line");
        let mut words = line.split_whitespace().skip(1);
        assert_eq!(words.next(), Some(pid.to_string().as_str()), "ready line {line:?}");
        t.ready = words.map(str::to_string).collect();
        t
    }
}

/// One `check` line, parsed.
#[derive(Debug)]
struct Check {
    line: String,
    kv: HashMap<String, String>,
}

impl Check {
    fn get(&self, k: &str) -> &str {
        self.kv.get(k).map(String::as_str).unwrap_or_else(|| panic!("no {k} in {:?}", self.line))
    }
    fn num(&self, k: &str) -> u64 {
        self.get(k).parse().unwrap_or_else(|_| panic!("{k} is not a number in {:?}", self.line))
    }
    fn assert_ok(&self) {
        assert_eq!(self.get("verdict"), "ok", "victim's verdict: {}", self.line);
    }
    fn assert_item(&self, k: &str, want: &str) {
        assert_eq!(self.get(k), want, "{k} in {}", self.line);
    }
}

impl Task {
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Waits for a log line matching `pred`; fails with the log after [`ANSWER`].
    fn wait_line(&self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + ANSWER;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            if Instant::now() > deadline {
                panic!("task {}: no {what} within {ANSWER:?}; log:\n{}", self.pid, self.lines().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill by pid of a task this test started.
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0, "kill({}, {sig})", self.pid);
    }

    /// Asks for a check (SIGUSR1) and returns the new verdict line.
    fn check(&self) -> Check {
        let before = self.lines().iter().filter(|l| l.starts_with("check ")).count();
        self.signal(libc::SIGUSR1);
        let deadline = Instant::now() + ANSWER;
        loop {
            let checks: Vec<String> = self.lines().into_iter().filter(|l| l.starts_with("check ")).collect();
            if checks.len() > before {
                let line = checks[before].clone();
                let kv = line
                    .split_whitespace()
                    .filter_map(|w| w.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                return Check { line, kv };
            }
            if Instant::now() > deadline {
                panic!("task {}: no check answer within {ANSWER:?}; log:\n{}", self.pid, self.lines().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Reaps our child after the dump killed it, so its pid is free.
    fn reap_dumped(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The dump may have reaped it already (we are its tracer's
            // process): ECHILD then.
            let _ = c.wait();
        }
        wait_gone(self.pid);
    }

    /// The task is now the restored one, a child of this process.
    fn restored(&mut self) {
        self.child = None;
    }

    fn status_field(&self, key: &str) -> String {
        status_field(self.pid, key).unwrap_or_else(|| panic!("task {}: no {key} in status", self.pid))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: kill by pid of a task this test started.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        match self.child.take() {
            Some(mut c) => {
                let _ = c.wait();
            }
            None => {
                let mut st = 0;
                // SAFETY: reaping our own child by pid.
                unsafe { libc::waitpid(self.pid, &mut st, libc::__WALL) };
            }
        }
        unregister(self.pid);
    }
}

fn status_field(pid: i32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
}

/// Waits until `pid` no longer exists.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + ANSWER;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "pid {pid} still exists");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn do_dump(pid: i32, dir: &Path, leave_stopped: bool) -> Result<(), String> {
    dump(&DumpOptions {
        pid: Pid(pid),
        dir: dir.to_path_buf(),
        leave_stopped,
        shell_job: false,
        evasive_devices: false,
        ..Default::default()
    })
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn do_restore(pid: i32, dir: &Path) -> Result<(), String> {
    restore(&RestoreOptions {
        pid: Some(Pid(pid)),
        dir: dir.to_path_buf(),
        detach: true,
        shell_job: false,
        ..Default::default()
    })
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Dumps `t` (killing it), reaps it and restores it detached.
fn dump_and_restore(t: &mut Task, s: &Scratch) {
    do_dump(t.pid, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
    t.reap_dumped();
    do_restore(t.pid, &s.images()).unwrap_or_else(|e| panic!("restore: {e}"));
    t.restored();
}

/// Asserts the task runs on untraced and not stopped.
fn assert_running_untraced(t: &Task) {
    assert_eq!(t.status_field("TracerPid"), "0", "task {} is still traced", t.pid);
    let state = t.status_field("State");
    assert!(!state.starts_with('T') && !state.starts_with('t'), "task {} is stopped: {state}", t.pid);
}

/// The syscall the task sleeps in (first field of /proc/pid/syscall).
fn current_syscall(pid: i32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

#[test]
fn nanosleep_continues_after_restore() {
    run("nanosleep", 90, |cx| {
        let s = Scratch::new("dr_task", "nanosleep");
        let want = 1500;
        let mut t = cx.start(&s, "sleep", Some(&want.to_string()));
        // Be sure it is inside the sleep (clock_nanosleep or nanosleep).
        let deadline = Instant::now() + ANSWER;
        while !matches!(current_syscall(t.pid), Some(230) | Some(35)) {
            assert!(Instant::now() < deadline, "victim never entered nanosleep");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(!t.lines().iter().any(|l| l.starts_with("slept")), "slept before the dump: test too slow");
        dump_and_restore(&mut t, &s);
        let line = t.wait_line(|l| l.starts_with("slept "), "slept line");
        let kv: HashMap<&str, &str> = line.split_whitespace().filter_map(|w| w.split_once('=')).collect();
        assert_eq!(kv["r"], "0", "nanosleep after restore: {line}");
        let ms: u64 = kv["ms"].parse().unwrap();
        assert!(ms >= want, "slept only {ms} ms of {want}: {line}");
        let c = t.check();
        c.assert_ok();
    });
}

/// A 2 s relative sleep (with a `rem` pointer) dumped after about 1 s
/// ends about 1 s after restore: the restart block is rebuilt with the
/// time it had left, not the full time again.
#[test]
fn nanosleep_resumes_with_the_time_left() {
    run("nanosleep_rem", 90, |cx| {
        let s = Scratch::new("dr_task", "nanosleep_rem");
        let want = 2000u64;
        let mut t = cx.start(&s, "sleep_rem", Some(&want.to_string()));
        let deadline = Instant::now() + ANSWER;
        while !matches!(current_syscall(t.pid), Some(230) | Some(35)) {
            assert!(Instant::now() < deadline, "victim never entered nanosleep");
            std::thread::sleep(Duration::from_millis(5));
        }
        let entered = Instant::now();
        std::thread::sleep(Duration::from_millis(1000));
        assert!(!t.lines().iter().any(|l| l.starts_with("slept_rem")), "slept before the dump: test too slow");
        do_dump(t.pid, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        let slept_before = entered.elapsed().as_millis() as u64;
        t.reap_dumped();
        do_restore(t.pid, &s.images()).unwrap_or_else(|e| panic!("restore: {e}"));
        let restored = Instant::now();
        t.restored();
        let line = t.wait_line(|l| l.starts_with("slept_rem "), "slept_rem line");
        let after = restored.elapsed().as_millis() as u64;
        let left = want.saturating_sub(slept_before);
        assert!(line.starts_with("slept_rem r=0 "), "after restore: {line}");
        // The time left, give or take scheduling; far from the full 2 s.
        assert!(
            after + 150 >= left && after < left + 600,
            "slept {after} ms after restore, {left} ms were left: {line}"
        );
        t.check().assert_ok();
    });
}

/// Credentials that are per thread: a worker's own securebits, and the
/// main thread's file-system uid and gid apart from its effective ones.
#[test]
fn thread_securebits_and_fsids() {
    run("thread_creds", 90, |cx| {
        let s = Scratch::new("dr_task", "thread_creds");
        let mut t = cx.start(&s, "thread_securebits,fsids", None);
        let c = t.check();
        c.assert_ok();
        c.assert_item("thread_securebits", "ok");
        c.assert_item("fsids", "ok");
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_ok();
        c.assert_item("thread_securebits", "ok");
        c.assert_item("main_securebits", "ok");
        c.assert_item("fsids", "ok");
    });
}

/// A task found inside restart_syscall (its nanosleep was interrupted once
/// already, here by a `dump -s`) has its restart block in the kernel only:
/// the restored task gets a clean EINTR from the sleep (documented in
/// `objects::task::rewrite_restart`), not garbage, and runs on.
#[test]
fn nanosleep_inside_restart_syscall_gets_eintr() {
    run("restart_syscall", 90, |cx| {
        let s = Scratch::new("dr_task", "restart_syscall");
        let want = 3000;
        let mut t = cx.start(&s, "sleep", Some(&want.to_string()));
        let deadline = Instant::now() + ANSWER;
        while !matches!(current_syscall(t.pid), Some(230) | Some(35)) {
            assert!(Instant::now() < deadline, "victim never entered nanosleep");
            std::thread::sleep(Duration::from_millis(5));
        }
        let first = s.root.join("first");
        do_dump(t.pid, &first, true).unwrap_or_else(|e| panic!("dump -s: {e}"));
        t.signal(libc::SIGCONT);
        while current_syscall(t.pid) != Some(libc::SYS_restart_syscall) {
            assert!(Instant::now() < deadline, "victim never went on in restart_syscall");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!t.lines().iter().any(|l| l.starts_with("slept")), "slept before the dump: test too slow");
        dump_and_restore(&mut t, &s);
        let line = t.wait_line(|l| l.starts_with("slept "), "slept line");
        assert!(line.starts_with(&format!("slept r=-1 errno={} ", libc::EINTR)), "after restore: {line}");
        t.check().assert_ok();
    });
}

#[test]
fn pause_is_restarted_after_restore() {
    run("pause", 90, |cx| {
        let s = Scratch::new("dr_task", "pause");
        let mut t = cx.start(&s, "pause", None);
        let deadline = Instant::now() + ANSWER;
        while current_syscall(t.pid) != Some(libc::SYS_pause) {
            assert!(Instant::now() < deadline, "victim never entered pause");
            std::thread::sleep(Duration::from_millis(5));
        }
        dump_and_restore(&mut t, &s);
        // pause() goes on: it must not return before a handler runs.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!t.lines().iter().any(|l| l.starts_with("paused")), "pause returned by itself: {:?}", t.lines());
        assert_eq!(current_syscall(t.pid), Some(libc::SYS_pause), "not in pause after restore");
        t.signal(libc::SIGUSR1);
        let line = t.wait_line(|l| l.starts_with("paused "), "paused line");
        assert_eq!(line, format!("paused r=-1 errno={} usr1=1", libc::EINTR));
    });
}

#[test]
fn sigaction_survives_and_handler_gets_siginfo() {
    run("sigaction", 90, |cx| {
        let s = Scratch::new("dr_task", "sigaction");
        let mut t = cx.start(&s, "sigact", None);
        let c = t.check();
        c.assert_ok();
        c.assert_item("hup", "0:0:0:0");
        dump_and_restore(&mut t, &s);
        // SAFETY: sigqueue by pid of our task.
        let r = unsafe { libc::sigqueue(t.pid, libc::SIGHUP, libc::sigval { sival_ptr: 0x1234 as *mut _ }) };
        assert_eq!(r, 0);
        let c = t.check();
        c.assert_ok();
        c.assert_item("sigaction", "ok");
        c.assert_item("sigtrap_action", "ok");
        c.assert_item("sigtrap_handler", "ok");
        c.assert_item("hup", &format!("{}:{}:{}:{}", libc::SIGHUP, libc::SI_QUEUE, std::process::id(), 0x1234));
    });
}

#[test]
fn pending_signals_survive_with_their_values() {
    run("pending", 90, |cx| {
        let s = Scratch::new("dr_task", "pending");
        let mut t = cx.start(&s, "pending", None);
        // Shared pending: SIGUSR2 (12) and SIGRTMIN+2 (36) are queued.
        let shd = u64::from_str_radix(&t.status_field("ShdPnd"), 16).unwrap();
        assert_eq!(shd & (1 << 11 | 1 << 35), 1 << 11 | 1 << 35, "ShdPnd {shd:#x} before dump");
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_item("pending_before", "ok");
        c.assert_item("delivered_before", "ok");
        c.assert_item("usr2", "111");
        c.assert_item("rt", "222,333");
        c.assert_item("rt3", &format!("1:{}:{}", libc::SI_TKILL, t.pid));
        c.assert_ok();
    });
}

#[test]
fn sigaltstack_survives_and_is_used() {
    run("altstack", 90, |cx| {
        let s = Scratch::new("dr_task", "altstack");
        let mut t = cx.start(&s, "altstack", None);
        t.signal(libc::SIGWINCH);
        let c = t.check();
        c.assert_ok();
        c.assert_item("onstack", "yes");
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_item("altstack", "ok");
        c.assert_item("onstack", "none");
        t.signal(libc::SIGWINCH);
        let c2 = t.check();
        c2.assert_ok();
        c2.assert_item("onstack", "yes");
    });
}

/// Dumped while a handler sleeps on the alternate stack: after restore the
/// handler finishes on that stack and returns into the main loop.
#[test]
fn dump_inside_a_handler_on_the_altstack() {
    run("in_handler", 90, |cx| {
        let s = Scratch::new("dr_task", "in_handler");
        let mut t = cx.start(&s, "altstack", None);
        t.signal(libc::SIGURG);
        t.wait_line(|l| l == "urg-start", "urg-start line");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!t.lines().iter().any(|l| l.starts_with("urg-end")), "handler ended before the dump: test too slow");
        dump_and_restore(&mut t, &s);
        let line = t.wait_line(|l| l.starts_with("urg-end"), "urg-end line");
        assert_eq!(line, "urg-end onstack=yes");
        let c = t.check();
        c.assert_ok();
        c.assert_item("altstack", "ok");
    });
}

#[test]
fn itimer_and_posix_timer_keep_firing() {
    run("timers", 90, |cx| {
        let s = Scratch::new("dr_task", "timers");
        let mut t = cx.start(&s, "timers", None);
        std::thread::sleep(Duration::from_millis(100));
        let c0 = t.check();
        c0.assert_ok();
        let id = c0.get("timer_id").to_string();
        assert_ne!(id, "0", "the victim should use a timer id other than 0");
        dump_and_restore(&mut t, &s);
        let c1 = t.check();
        c1.assert_ok();
        assert_eq!(c1.get("timer_id"), id);
        c1.assert_item("timer_gettime", "ok");
        std::thread::sleep(Duration::from_millis(300));
        let c2 = t.check();
        c2.assert_ok();
        assert!(c2.num("alarms") > c1.num("alarms"), "ITIMER_REAL stopped: {} then {}", c1.line, c2.line);
        assert!(c2.num("ptimer") > c1.num("ptimer"), "POSIX timer stopped: {} then {}", c1.line, c2.line);
        assert!(c1.num("alarms") >= c0.num("alarms"));
    });
}

/// A POSIX timer that signals one thread (SIGEV_THREAD_ID, what glibc's
/// SIGEV_THREAD timers use and vim holds): made again once that thread
/// exists, it goes on signalling it.
#[test]
fn thread_directed_posix_timer_keeps_firing() {
    run("thread_timer", 90, |cx| {
        let s = Scratch::new("dr_task", "thread_timer");
        let mut t = cx.start(&s, "thread_timer", None);
        t.check().assert_item("thread_timer", "ok");
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_item("thread_timer", "ok");
        c.assert_ok();
    });
}

#[test]
fn itimer_with_pending_sigalrm_keeps_firing() {
    run("timers_pending", 90, |cx| {
        let s = Scratch::new("dr_task", "timers_pending");
        let mut t = cx.start(&s, "timers_blocked", None);
        let pnd = u64::from_str_radix(&t.status_field("ShdPnd"), 16).unwrap();
        assert_ne!(pnd & 1 << (libc::SIGALRM - 1), 0, "SIGALRM is not pending before the dump");
        let rt = libc::SIGRTMIN() + 4;
        assert_ne!(pnd & 1 << (rt - 1), 0, "the POSIX timer's signal is not pending before the dump");
        dump_and_restore(&mut t, &s);
        // The first check unblocks SIGALRM.
        let c1 = t.check();
        c1.assert_item("itimer_interval", "ok");
        std::thread::sleep(Duration::from_millis(300));
        let c2 = t.check();
        c2.assert_ok();
        assert!(c2.num("alarms") > c1.num("alarms") + 1, "ITIMER_REAL stopped: {} then {}", c1.line, c2.line);
        assert!(c2.num("ptimer") > c1.num("ptimer") + 1, "POSIX timer stopped: {} then {}", c1.line, c2.line);
        c2.assert_item("ptimer_info", "ok");
    });
}

#[test]
fn open_files_keep_offsets_flags_and_numbers() {
    run("files", 90, |cx| {
        let s = Scratch::new("dr_task", "files");
        let data = s.data().to_string_lossy().into_owned();
        let mut t = cx.start(&s, "files", Some(&data));
        let c = t.check();
        c.assert_ok();
        dump_and_restore(&mut t, &s);
        let c = t.check();
        let items = ["rw", "ro", "app", "fd100", "dup1", "dup2", "trunc", "null", "dir"];
        for k in items.iter().chain(&["dup_shared", "dir_works", "trunc_size", "append_works"]) {
            c.assert_item(k, "ok");
        }
        c.assert_ok();
    });
}

/// An unlinked sparse file (1 GiB, 150 bytes of data), open twice and mapped shared and private, comes back
/// with its contents, holes, size, offset and shared description, still
/// unlinked, under its old name; the images hold only its data. A file
/// unlinked from its path but linked elsewhere is linked back with
/// --link-remap and is the same inode after restore, with no link-remap
/// name left over, and so is one mapped shared with no descriptor left; a log that grew since the dump is no obstacle; a
/// removed working directory is a removed working directory again.
#[test]
fn unlinked_files_come_back() {
    run("ghost", 90, |cx| {
        let s = Scratch::new("dr_task", "ghost");
        let data = s.data().to_string_lossy().into_owned();
        let mut t = cx.start(&s, "ghost", Some(&data));
        t.check().assert_ok();
        let err = do_dump(t.pid, &s.images(), false).expect_err("a file linked elsewhere needs --link-remap");
        assert!(err.contains("--link-remap") && err.contains("linked"), "unclear error: {err}");
        assert_running_untraced(&t);
        let leftovers = |what: &str| {
            let names: Vec<String> = std::fs::read_dir(s.data())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.contains("crtools"))
                .collect();
            assert!(names.is_empty(), "{what}: left in the data directory: {names:?}");
        };
        leftovers("after the failed dump");
        dump(&DumpOptions { pid: Pid(t.pid), dir: s.images(), link_remap: true, ..Default::default() })
            .unwrap_or_else(|e| panic!("dump: {e}"));
        t.reap_dumped();
        let image_bytes: u64 =
            std::fs::read_dir(s.images()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(image_bytes < 2 << 20, "the sparse ghost file cost {image_bytes} bytes of images");
        // The log grows while the task is down.
        std::fs::OpenOptions::new().append(true).open(s.data().join("log")).unwrap().write_all(b"other\n").unwrap();
        do_restore(t.pid, &s.images()).unwrap_or_else(|e| panic!("restore: {e}"));
        t.restored();
        let c = t.check();
        c.assert_item("ghost", "ok");
        c.assert_item("linked", "ok");
        c.assert_item("log", "ok");
        c.assert_item("cwd", "ok");
        c.assert_item("cwd_fd", "ok");
        c.assert_item("gone_tree", "ok");
        c.assert_item("tree_linked", "ok");
        c.assert_item("symlink", "ok");
        c.assert_item("gone_dir", "ok");
        c.assert_item("ghost_maps", "ok");
        c.assert_item("linked_map", "ok");
        c.assert_ok();
        leftovers("after restore");
        assert!(!s.data().join("wd").exists(), "the stand-in working directory was left behind");
        assert!(!s.data().join("tree").exists(), "the removed tree made again was left behind");
        assert!(!s.data().join("ghost").exists(), "the ghost file was left linked");
    });
}

/// An unlinked file with more data than --ghost-limit is refused by name.
#[test]
fn ghost_file_above_the_limit_is_refused() {
    run("ghost_limit", 90, |cx| {
        let s = Scratch::new("dr_task", "ghost_limit");
        let data = s.data().to_string_lossy().into_owned();
        let t = cx.start(&s, "ghost", Some(&data));
        let err = dump(&DumpOptions {
            pid: Pid(t.pid),
            dir: s.images(),
            link_remap: true,
            ghost_limit: Some(100),
            ..Default::default()
        })
        .map(|_| ())
        .expect_err("150 bytes of data is above a limit of 100");
        // A refusal (exit code 3), not a failure: the object is named.
        assert!(err.refused, "not a refusal: {err}");
        let err = err.to_string();
        assert!(err.contains("ghost") && err.contains("--ghost-limit"), "unclear error: {err}");
        assert_running_untraced(&t);
        t.check().assert_ok();
    });
}

#[test]
fn rlimits_umask_cwd_and_name_survive() {
    run("limits", 90, |cx| {
        let s = Scratch::new("dr_task", "limits");
        let data = s.data().to_string_lossy().into_owned();
        let mut t = cx.start(&s, "limits", Some(&data));
        let c = t.check();
        c.assert_ok();
        dump_and_restore(&mut t, &s);
        let c = t.check();
        for k in ["nofile", "core", "umask", "cwd", "comm"] {
            c.assert_item(k, "ok");
        }
        c.assert_ok();
    });
}

#[test]
fn credentials_and_prctl_bits_survive() {
    run("creds", 90, |cx| {
        let s = Scratch::new("dr_task", "creds");
        let mut t = cx.start(&s, "sigact,creds", None);
        let c = t.check();
        c.assert_ok();
        assert!(t.status_field("Uid").starts_with("4000\t4001\t4002"), "uids before dump: {}", t.status_field("Uid"));
        dump_and_restore(&mut t, &s);
        let c = t.check();
        for k in ["uids", "gids", "groups", "caps", "no_new_privs", "subreaper", "personality"] {
            c.assert_item(k, "ok");
        }
        c.assert_ok();
    });
}

#[test]
fn stopped_task_is_restored_stopped() {
    run("stopped", 90, |cx| {
        let s = Scratch::new("dr_task", "stopped");
        let mut t = cx.start(&s, "sigact,timers", None);
        t.signal(libc::SIGSTOP);
        let deadline = Instant::now() + ANSWER;
        while !t.status_field("State").starts_with('T') {
            assert!(Instant::now() < deadline, "victim did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        dump_and_restore(&mut t, &s);
        std::thread::sleep(Duration::from_millis(100));
        let state = t.status_field("State");
        assert!(state.starts_with('T'), "a task stopped at dump runs after restore: {state}");
        assert_eq!(t.status_field("TracerPid"), "0");
        t.signal(libc::SIGCONT);
        t.check().assert_ok();
        assert_running_untraced(&t);
    });
}

#[test]
fn leave_stopped_keeps_the_original_intact() {
    run("leave_stopped", 90, |cx| {
        let s = Scratch::new("dr_task", "leave_stopped");
        let data = s.data().to_string_lossy().into_owned();
        let t = cx.start(&s, "sigact,altstack,timers,files", Some(&data));
        do_dump(t.pid, &s.images(), true).unwrap_or_else(|e| panic!("dump -s: {e}"));
        assert!(s.images().join("inventory.img").exists(), "no inventory after dump -s");
        std::thread::sleep(Duration::from_millis(100));
        let state = t.status_field("State");
        assert!(state.starts_with('T'), "task is not stopped after dump -s: {state}");
        assert_eq!(t.status_field("TracerPid"), "0", "task is still traced after dump -s");
        t.signal(libc::SIGCONT);
        let c = t.check();
        c.assert_ok();
        assert_running_untraced(&t);
    });
}

#[test]
fn dump_into_unwritable_directory_fails_cleanly() {
    run("unwritable", 90, |cx| {
        let s = Scratch::new("dr_task", "unwritable");
        let t = cx.start(&s, "sigact,timers", None);
        let file = s.root.join("a-file");
        std::fs::write(&file, b"not a directory").unwrap();
        let dir = file.join("images");
        let err = do_dump(t.pid, &dir, false).expect_err("dump under a regular file must fail");
        eprintln!("expected error: {err}");
        assert!(err.contains("image directory") || err.contains(&dir.display().to_string()), "unclear error: {err}");
        assert_running_untraced(&t);
        let c = t.check();
        c.assert_ok();
        assert_running_untraced(&t);
    });
}

/// A pipe whose both ends the task holds works after restore (the pipe
/// tests proper, with data in flight, are in dr_tree).
#[test]
fn pipe_held_by_the_task_works_after_restore() {
    run("pipe", 90, |cx| {
        let s = Scratch::new("dr_task", "pipe");
        let mut t = cx.start(&s, "pipe,sigact,timers", None);
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_ok();
        c.assert_item("pipe", "ok");
    });
}

#[test]
fn unsupported_socket_fails_cleanly_and_a_stopped_task_stays_stopped() {
    run("unsupported_socket", 90, |cx| {
        let s = Scratch::new("dr_task", "unsupported_socket");
        let t = cx.start(&s, "socket,sigact", None);
        let fd = t.ready[0].clone();
        t.signal(libc::SIGSTOP);
        let deadline = Instant::now() + ANSWER;
        while !t.status_field("State").starts_with('T') {
            assert!(Instant::now() < deadline, "victim did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        let err = do_dump(t.pid, &s.images(), false).expect_err("dump of a socket must fail");
        eprintln!("expected error: {err}");
        assert!(err.contains(&t.pid.to_string()), "error does not name the pid: {err}");
        assert!(err.contains(&format!("fd {fd}")), "error does not name fd {fd}: {err}");
        assert!(err.contains("socket"), "error does not name the kind: {err}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(t.status_field("State").starts_with('T'), "a stopped task was resumed by a failed dump");
        assert_eq!(t.status_field("TracerPid"), "0");
        t.signal(libc::SIGCONT);
        let c = t.check();
        c.assert_ok();
        c.assert_item("pipe", "ok");
        assert_running_untraced(&t);
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn assert_restore_fails(pid: i32, dir: &Path, what: &str, expect: &[&str]) {
    let err = do_restore(pid, dir).expect_err(what);
    eprintln!("expected error: {err}");
    for e in expect {
        assert!(err.contains(e), "{what}: error {err:?} does not mention {e:?}");
    }
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "{what}: pid {pid} left behind");
}

#[test]
fn corrupt_or_wrong_images_are_refused() {
    run("corrupt", 120, |cx| {
        let s = Scratch::new("dr_task", "corrupt");
        let mut t = cx.start(&s, "sigact", None);
        do_dump(t.pid, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        t.reap_dumped();
        let pid = t.pid;

        let flipped = s.root.join("flipped");
        copy_dir(&s.images(), &flipped);
        let pages = flipped.join(format!("pages-{pid}.img"));
        let mut bytes = std::fs::read(&pages).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(&pages, &bytes).unwrap();
        let name = format!("pages-{pid}.img");
        assert_restore_fails(pid, &flipped, "flipped byte in the pages image", &[name.as_str()]);

        let truncated = s.root.join("truncated");
        copy_dir(&s.images(), &truncated);
        let core = truncated.join(format!("core-{pid}.img"));
        let len = std::fs::metadata(&core).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&core).unwrap().set_len(len / 2).unwrap();
        assert_restore_fails(pid, &truncated, "truncated core image", &[&format!("core-{pid}.img")]);

        // A pid that is not in the images.
        let other = pid + 1_000_000;
        let err = do_restore(other, &s.images()).expect_err("restore of a pid not in the images");
        eprintln!("expected error: {err}");
        assert!(err.contains(&other.to_string()) && err.contains("not in the images"), "unclear error: {err}");

        // A directory without an inventory.
        let partial = s.root.join("partial");
        copy_dir(&s.images(), &partial);
        std::fs::remove_file(partial.join("inventory.img")).unwrap();
        assert_restore_fails(pid, &partial, "no inventory", &["inventory"]);
        let empty = s.root.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_restore_fails(pid, &empty, "empty directory", &["inventory"]);

        // The intact images still restore: the failures were the corruption's.
        do_restore(pid, &s.images()).unwrap_or_else(|e| panic!("restore of the intact images: {e}"));
        t.restored();
        t.check().assert_ok();
    });
}

/// Sets or clears FS_IMMUTABLE_FL on `path`.
fn set_immutable(path: &Path, on: bool) -> std::io::Result<()> {
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
    const FS_IMMUTABLE_FL: libc::c_long = 0x10;
    let f = std::fs::File::open(path)?;
    use std::os::fd::AsRawFd;
    let mut flags: libc::c_long = 0;
    // SAFETY: the ioctls read and write one long.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        flags = if on { flags | FS_IMMUTABLE_FL } else { flags & !FS_IMMUTABLE_FL };
        if libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A file that cannot be opened at restore: the error names the task, the
/// descriptor and the file, no task is left with the pid, and the same
/// images restore once the file can be opened again.
#[test]
fn unopenable_file_fails_restore_and_leaves_nothing() {
    run("restorer_failure", 90, |cx| {
        let s = Scratch::new("dr_task", "restorer_failure");
        let data = s.data().to_string_lossy().into_owned();
        let mut t = cx.start(&s, "files", Some(&data));
        do_dump(t.pid, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        t.reap_dumped();
        // The victim holds data/app open O_WRONLY|O_APPEND: an immutable
        // file passes every check the engine makes, but cannot be opened
        // for writing, even by root.
        let app = s.data().join("app");
        if let Err(e) = set_immutable(&app, true) {
            eprintln!("skipped: cannot make a file immutable here: {e}");
            return;
        }
        let r = do_restore(t.pid, &s.images());
        set_immutable(&app, false).expect("clear the immutable flag");
        let err = r.expect_err("restore must fail on an immutable file");
        eprintln!("expected error: {err}");
        assert!(err.contains(&app.display().to_string()), "error does not name the file: {err}");
        assert!(err.contains(&format!("fd {}", t.ready[0])), "error does not name the fd: {err}");
        assert!(err.contains(&t.pid.to_string()), "error does not name the pid: {err}");
        assert!(!Path::new(&format!("/proc/{}", t.pid)).exists(), "a half-restored task was left behind");
        // Nothing was consumed: the same images restore now.
        do_restore(t.pid, &s.images()).unwrap_or_else(|e| panic!("restore: {e}"));
        t.restored();
        t.check().assert_ok();
    });
}

/// A file that changed size after the dump is refused before anything is
/// created, naming the file; put back, the same images restore.
#[test]
fn changed_file_is_refused() {
    run("changed_file", 90, |cx| {
        let s = Scratch::new("dr_task", "changed_file");
        let data = s.data().to_string_lossy().into_owned();
        let mut t = cx.start(&s, "files", Some(&data));
        do_dump(t.pid, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        t.reap_dumped();
        let rw = s.data().join("rw");
        let before = std::fs::read(&rw).unwrap();
        std::fs::write(&rw, b"0123456789 and more").unwrap();
        let err = do_restore(t.pid, &s.images()).expect_err("restore over a changed file");
        eprintln!("expected error: {err}");
        assert!(err.contains(&rw.display().to_string()) && err.contains("size"), "unclear error: {err}");
        assert!(!Path::new(&format!("/proc/{}", t.pid)).exists(), "a task was left behind");
        std::fs::write(&rw, &before).unwrap();
        do_restore(t.pid, &s.images()).unwrap_or_else(|e| panic!("restore: {e}"));
        t.restored();
        t.check().assert_ok();
    });
}

#[test]
fn restore_without_detach_returns_exit_status() {
    run("exit_status", 90, |cx| {
        let s = Scratch::new("dr_task", "exit_status");
        let mut t = cx.start(&s, "sigact,timers", None);
        do_dump(t.pid, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        t.reap_dumped();
        let pid = t.pid;
        let dir = s.images();
        let waiter = std::thread::spawn(move || {
            restore(&RestoreOptions { pid: Some(Pid(pid)), dir, detach: false, shell_job: false, ..Default::default() })
                .map_err(|e| e.to_string())
        });
        t.restored();
        // Restored: the victim's name is back and the engine has let go.
        let deadline = Instant::now() + ANSWER;
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "victim_task" && status_field(pid, "TracerPid").as_deref() == Some("0") {
                break;
            }
            assert!(!waiter.is_finished(), "restore returned early: {:?}", waiter.join());
            assert!(Instant::now() < deadline, "task {pid} was not restored in time");
            std::thread::sleep(Duration::from_millis(10));
        }
        t.check().assert_ok();
        t.signal(libc::SIGTERM);
        let code = waiter.join().expect("restore thread");
        assert_eq!(code, Ok(42), "restore's result");
        t.wait_line(|l| l == "exiting", "exiting line");
    });
}

/// A victim holding a lock or a lease (`feature`, on the file `file` of its
/// data directory): the dump fails naming the task, the fd, the file and
/// the lock (`kind`); the victim runs on, untraced, and still holds it.
/// With --file-locks the lock is dumped and held again after restore.
fn lock_is_refused(test: &'static str, feature: &'static str, file: &'static str, kind: &'static str) {
    run(test, 90, move |cx| {
        use std::os::unix::fs::MetadataExt;
        let s = Scratch::new("dr_task", test);
        let t = cx.start(&s, &format!("{feature},sigact"), Some(s.data().to_str().unwrap()));
        let fd = t.ready[0].clone();
        let path = s.data().join(file);
        let ino = std::fs::metadata(&path).unwrap().ino();
        let held =
            || engine::proc::locks::read_all().unwrap().into_iter().filter(|l| l.ino == ino && !l.waiter).count();
        assert_eq!(held(), 1, "the victim does not hold its lock");
        let err = do_dump(t.pid, &s.images(), false).expect_err("dump of a lock holder must fail");
        eprintln!("expected error: {err}");
        for want in [t.pid.to_string(), format!("fd {fd} "), path.display().to_string(), kind.to_string()] {
            assert!(err.contains(&want), "error does not name {want:?}: {err}");
        }
        assert!(!s.images().join("inventory.img").exists(), "a failed dump wrote an inventory");
        assert_running_untraced(&t);
        assert_eq!(held(), 1, "the lock is gone after the failed dump");
        t.check().assert_ok();
        assert_running_untraced(&t);
        // With --file-locks it is dumped, and held again after restore,
        // by the same task, excluding everyone else.
        let mut t = t;
        dump(&DumpOptions { pid: Pid(t.pid), dir: s.root.join("locked"), file_locks: true, ..Default::default() })
            .unwrap_or_else(|e| panic!("dump --file-locks: {e}"));
        t.reap_dumped();
        let err = do_restore(t.pid, &s.root.join("locked")).expect_err("images with locks need --file-locks");
        assert!(err.contains("--file-locks"), "unclear error: {err}");
        restore(&RestoreOptions {
            pid: Some(Pid(t.pid)),
            dir: s.root.join("locked"),
            detach: true,
            file_locks: true,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("restore --file-locks: {e}"));
        t.restored();
        let after: Vec<_> =
            engine::proc::locks::read_all().unwrap().into_iter().filter(|l| l.ino == ino && !l.waiter).collect();
        assert_eq!(after.len(), 1, "locks on the file after restore: {after:?}");
        if feature == "posix_lock" {
            assert_eq!(after[0].pid, t.pid, "the POSIX lock's owner");
        }
        assert!(after[0].describe().contains(kind.split(" on ").next().unwrap()), "{:?}", after[0]);
        if feature != "lease" {
            assert!(conflicts(&path), "another process could take a conflicting lock after restore");
        }
        t.check().assert_ok();
    });
}

/// Whether this process fails to take a lock that conflicts with the
/// victims' (a write flock, a write POSIX lock on byte 15).
fn conflicts(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    // SAFETY: flock and fcntl on our own descriptor with a local struct.
    unsafe {
        if libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 {
            // No flock conflict: try a byte-range one.
            libc::flock(f.as_raw_fd(), libc::LOCK_UN);
            let mut l: libc::flock = std::mem::zeroed();
            l.l_type = libc::F_WRLCK as i16;
            l.l_whence = libc::SEEK_SET as i16;
            l.l_start = 15;
            l.l_len = 1;
            return libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &l) != 0;
        }
        true
    }
}

#[test]
fn flock_is_refused_or_restored_with_file_locks() {
    lock_is_refused("flock", "flock", "locked", "write flock lock");
}

#[test]
fn posix_lock_is_refused_or_restored_with_file_locks() {
    lock_is_refused("posix_lock", "posix_lock", "locked", "write POSIX (fcntl) lock on bytes 10..29");
}

#[test]
fn ofd_lock_is_refused_or_restored_with_file_locks() {
    lock_is_refused("ofd_lock", "ofd_lock", "locked", "read OFD lock on bytes 10..29");
}

#[test]
fn lease_is_refused_or_restored_with_file_locks() {
    lock_is_refused("lease", "lease", "leased", "read lease");
}

/// A flock lock held through a file mapping alone (the file mapped, locked
/// and closed, as the JVM does with its hsperfdata file): refused without
/// --file-locks, naming the file; with it the mapping holds the lock again
/// after restore (it was dumped and restored without it before).
#[test]
fn flock_held_through_a_mapping_is_held_again() {
    run("mapped_flock", 90, |cx| {
        use std::os::unix::fs::MetadataExt;
        let s = Scratch::new("dr_task", "mapped_flock");
        let t = cx.start(&s, "mapped_flock,sigact", Some(s.data().to_str().unwrap()));
        let path = s.data().join("mapped");
        let ino = std::fs::metadata(&path).unwrap().ino();
        let held =
            || engine::proc::locks::read_all().unwrap().into_iter().filter(|l| l.ino == ino && !l.waiter).count();
        let fds_on = |pid: i32| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .filter(|e| std::fs::read_link(e.as_ref().unwrap().path()).ok().as_deref() == Some(path.as_path()))
                .count()
        };
        assert_eq!(held(), 1, "the victim does not hold its lock");
        assert_eq!(fds_on(t.pid), 0, "the victim still has the file open");
        let err = do_dump(t.pid, &s.images(), false).expect_err("dump of a lock holder must fail");
        for want in [path.display().to_string(), "write flock lock".into(), "--file-locks".into()] {
            assert!(err.contains(&want), "error does not name {want:?}: {err}");
        }
        assert_running_untraced(&t);
        assert_eq!(held(), 1, "the lock is gone after the failed dump");
        // The refused dump took its images back: the same directory takes
        // the next one.
        let left: Vec<_> = std::fs::read_dir(s.images())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".img"))
            .collect();
        assert!(left.is_empty(), "the refused dump left images behind: {left:?}");
        let mut t = t;
        dump(&DumpOptions { pid: Pid(t.pid), dir: s.images(), file_locks: true, ..Default::default() })
            .unwrap_or_else(|e| panic!("dump --file-locks: {e}"));
        t.reap_dumped();
        assert_eq!(held(), 0, "the dumped victim's lock outlived it");
        restore(&RestoreOptions {
            pid: Some(Pid(t.pid)),
            dir: s.images(),
            detach: true,
            file_locks: true,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("restore --file-locks: {e}"));
        t.restored();
        assert_eq!(held(), 1, "the lock is not held after restore");
        assert!(conflicts(&path), "another process could take a conflicting lock after restore");
        assert_eq!(fds_on(t.pid), 0, "the restored victim has the file open");
        t.check().assert_ok();
    });
}

#[test]
fn oom_score_adj_coredump_filter_and_loginuid_survive() {
    run("oom_loginuid", 90, |cx| {
        let s = Scratch::new("dr_task", "oom_loginuid");
        let mut t = cx.start(&s, "oom_loginuid,sigact", None);
        if t.ready.first().map(String::as_str) != Some("loginuid-set") {
            eprintln!("skipped: this kernel does not let the victim set its loginuid ({:?})", t.ready);
            return;
        }
        let c = t.check();
        c.assert_ok();
        c.assert_item("loginuid", "4242");
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_ok();
        c.assert_item("oom_score_adj", "ok");
        c.assert_item("coredump_filter", "ok");
        c.assert_item("loginuid", "4242");
        let adj = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", t.pid)).unwrap();
        assert_eq!(adj.trim(), "400");
        // crtools itself kept its own.
        let own = std::fs::read_to_string("/proc/self/loginuid").unwrap();
        assert_ne!(own.trim(), "4242");
    });
}

/// When the kernel refuses the dumped loginuid, the restore fails naming
/// it. Provoked on this test's own thread (loginuid and capabilities are
/// per thread, and the restored tree inherits them from the thread that
/// restores): it sets a loginuid of its own and drops CAP_AUDIT_CONTROL
/// from its effective set, so changing a set loginuid is refused.
#[test]
fn refused_loginuid_fails_the_restore_by_name() {
    run("loginuid_refused", 90, |cx| {
        let s = Scratch::new("dr_task", "loginuid_refused");
        let mut t = cx.start(&s, "oom_loginuid,sigact", None);
        if t.ready.first().map(String::as_str) != Some("loginuid-set") {
            eprintln!("skipped: this kernel does not let the victim set its loginuid ({:?})", t.ready);
            return;
        }
        do_dump(t.pid, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        t.reap_dumped();
        let own = std::fs::read_to_string("/proc/thread-self/loginuid").unwrap();
        if own.trim() == "4294967295" && std::fs::write("/proc/thread-self/loginuid", "1000").is_err() {
            eprintln!("skipped: cannot give this thread a loginuid");
            return;
        }
        const CAP_AUDIT_CONTROL: u32 = 30;
        let mut hdr = [0x2008_0522u32, 0];
        let mut data = [0u32; 6];
        // SAFETY: capget/capset of this thread with the v3 header and two data words per set.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_capget, hdr.as_mut_ptr(), data.as_mut_ptr()), 0);
            data[0] &= !(1 << CAP_AUDIT_CONTROL);
            assert_eq!(libc::syscall(libc::SYS_capset, hdr.as_mut_ptr(), data.as_ptr()), 0);
        }
        assert_restore_fails(t.pid, &s.images(), "restore with a refused loginuid", &["loginuid", "EPERM"]);
        // SAFETY: as above; the permitted set still holds it.
        unsafe {
            data[0] |= 1 << CAP_AUDIT_CONTROL;
            assert_eq!(libc::syscall(libc::SYS_capset, hdr.as_mut_ptr(), data.as_ptr()), 0);
        }
    });
}

#[test]
fn membarrier_registrations_survive() {
    run("membarrier", 90, |cx| {
        let s = Scratch::new("dr_task", "membarrier");
        let mut t = cx.start(&s, "membarrier,sigact", None);
        assert!(t.ready.iter().any(|w| w.starts_with("regs=")), "ready line {:?}", t.ready);
        t.check().assert_ok();
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_ok();
        for k in ["membarrier_regs", "membarrier_private", "membarrier_sync_core", "membarrier_global"] {
            c.assert_item(k, "ok");
        }
    });
}

/// Per-thread scheduling (policy, nice, I/O priority, timer slack, CPU
/// affinity) comes back for each thread; a thread's robust futex list is registered again,
/// so a thread that dies holding a robust mutex after restore hands it on
/// with EOWNERDEAD instead of leaving its waiters blocked for ever.
#[test]
fn scheduling_and_robust_futexes_survive() {
    run("sched", 90, |cx| {
        let s = Scratch::new("dr_task", "sched");
        let mut t = cx.start(&s, "sched,sigact", None);
        let c = t.check();
        c.assert_ok();
        for k in ["sched_main", "sched_thread", "affinity_main", "affinity_thread"] {
            c.assert_item(k, "ok");
        }
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_ok();
        for k in ["sched_main", "sched_thread", "affinity_main", "affinity_thread"] {
            c.assert_item(k, "ok");
        }
        c.assert_item("robust", "ok");
    });
}

/// Seccomp filters come back for every thread, with their order and flags:
/// the filtered system calls still fail with the filters' errors, and the
/// dump ran with them suspended (the parasite's own calls were not
/// filtered).
#[test]
fn seccomp_filters_survive() {
    run("seccomp", 90, |cx| {
        let s = Scratch::new("dr_task", "seccomp");
        let mut t = cx.start(&s, "thread,seccomp,sigact", None);
        t.check().assert_item("seccomp", "ok");
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_ok();
        c.assert_item("seccomp", "ok");
    });
}

/// Memory-deny-write-execute (PR_SET_MDWE) stays set: after restore the
/// process still cannot map memory writable and executable (the parasite
/// and restorer work within it).
#[test]
fn memory_deny_write_execute_survives() {
    run("mdwe", 90, |cx| {
        let s = Scratch::new("dr_task", "mdwe");
        let mut t = cx.start(&s, "mdwe,sigact", None);
        t.check().assert_item("mdwe", "ok");
        dump_and_restore(&mut t, &s);
        let c = t.check();
        c.assert_ok();
        c.assert_item("mdwe", "ok");
    });
}

#[test]
fn namespaces_for_children_are_refused() {
    run("ns_for_children", 90, |cx| {
        for (feature, flag, kind) in [("newtime", "CLONE_NEWTIME", "time"), ("newpid", "CLONE_NEWPID", "pid")] {
            let s = Scratch::new("dr_task", feature);
            let t = cx.start(&s, &format!("{feature},sigact"), None);
            let err = do_dump(t.pid, &s.images(), false).expect_err("dump must fail");
            eprintln!("expected error: {err}");
            for want in [t.pid.to_string(), flag.to_string(), format!("{kind} namespace")] {
                assert!(err.contains(&want), "error does not name {want:?}: {err}");
            }
            assert_running_untraced(&t);
            t.check().assert_ok();
        }
    });
}

#[test]
fn processes_sharing_kernel_objects_are_refused() {
    run("clone_share", 90, |cx| {
        // (A shared descriptor table is restored: dr_tree's cloneshare tests.)
        for (feature, what, flag) in [("clone_vm", "address space", "CLONE_VM")] {
            let s = Scratch::new("dr_task", feature);
            let t = cx.start(&s, &format!("{feature},sigact"), None);
            let child: i32 = t.ready[0].parse().unwrap();
            register("clone_share", child);
            let err = do_dump(t.pid, &s.images(), false).expect_err("dump must fail");
            eprintln!("expected error: {err}");
            for want in [t.pid.to_string(), child.to_string(), what.to_string(), flag.to_string()] {
                assert!(err.contains(&want), "error does not name {want:?}: {err}");
            }
            assert_running_untraced(&t);
            assert_eq!(status_field(child, "TracerPid").as_deref(), Some("0"), "child {child} left traced");
            let state = status_field(child, "State").unwrap();
            assert!(state.starts_with('S') || state.starts_with('R'), "child {child} is {state}");
            t.check().assert_ok();
            drop(t);
            // It dies with its parent (PR_SET_PDEATHSIG).
            wait_gone(child);
            unregister(child);
        }
    });
}

#[test]
fn thread_with_its_own_descriptor_table_or_fs_is_refused() {
    run("thread_unshare", 90, |cx| {
        for (feature, what, flag) in
            [("thread_files", "descriptor table", "CLONE_FILES"), ("thread_fs", "fs information", "CLONE_FS")]
        {
            let s = Scratch::new("dr_task", feature);
            let t = cx.start(&s, &format!("{feature},sigact"), None);
            let tid = &t.ready[0];
            let err = do_dump(t.pid, &s.images(), false).expect_err("dump must fail");
            eprintln!("expected error: {err}");
            for want in [t.pid.to_string(), format!("thread {tid}"), what.to_string(), flag.to_string()] {
                assert!(err.contains(&want), "error does not name {want:?}: {err}");
            }
            assert_running_untraced(&t);
            t.check().assert_ok();
        }
    });
}

#[test]
fn vfork_parent_and_child_are_refused() {
    run("vfork", 90, |cx| {
        let s = Scratch::new("dr_task", "vfork");
        let t = cx.start(&s, "vfork,sigact", None);
        let deadline = Instant::now() + ANSWER;
        let child = loop {
            let c = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", t.pid)).unwrap_or_default();
            if let Some(c) = c.split_whitespace().next() {
                break c.parse::<i32>().unwrap();
            }
            assert!(Instant::now() < deadline, "no vfork child");
            std::thread::sleep(Duration::from_millis(5));
        };
        register("vfork", child);
        while current_syscall(t.pid) != Some(libc::SYS_clone) {
            assert!(Instant::now() < deadline, "victim never waited in clone");
            std::thread::sleep(Duration::from_millis(5));
        }
        let err = do_dump(t.pid, &s.images(), false).expect_err("dump must fail");
        eprintln!("expected error: {err}");
        for want in [t.pid.to_string(), child.to_string(), "CLONE_VM|CLONE_VFORK".into()] {
            assert!(err.contains(&want), "error does not name {want:?}: {err}");
        }
        assert_eq!(t.status_field("TracerPid"), "0");
        assert_eq!(status_field(child, "TracerPid").as_deref(), Some("0"));
        // The parent goes on once its child is gone.
        // SAFETY: kill by pid of a task this test started.
        unsafe { libc::kill(child, libc::SIGKILL) };
        t.wait_line(|l| l.starts_with("vfork-returned "), "vfork-returned line");
        unregister(child);
        assert_running_untraced(&t);
        t.check().assert_ok();
    });
}

/// timer_getoverrun's count cannot be set again: a timer with one is
/// refused by name, the task left running.
#[test]
fn posix_timer_overrun_is_refused_by_name() {
    run("timer_overrun", 90, |cx| {
        let s = Scratch::new("dr_task", "timer_overrun");
        let t = cx.start(&s, "timer_overrun,sigact", None);
        let n = t.ready.iter().find_map(|w| w.strip_prefix("overrun=")).expect("overrun word").to_string();
        assert_ne!(n, "0", "the timer has no overruns");
        let err = do_dump(t.pid, &s.images(), false).expect_err("dump of a timer with overruns must fail");
        eprintln!("expected error: {err}");
        for want in [t.pid.to_string(), "POSIX timer".into(), "overrun count".into(), format!("({n},")] {
            assert!(err.contains(&want), "error does not name {want:?}: {err}");
        }
        assert!(!s.images().join("inventory.img").exists(), "a failed dump wrote an inventory");
        assert_running_untraced(&t);
        t.check().assert_ok();
    });
}

/// A fresh cgroup under this process's own cgroup of one hierarchy (v2
/// for `""`), removed on drop.
struct TestCgroup {
    dir: PathBuf,
    /// Its path as /proc/pid/cgroup shows it.
    path: PathBuf,
    controllers: &'static str,
}

impl TestCgroup {
    /// Creates it, or says why it cannot be done here.
    fn create(controllers: &'static str, name: &str) -> Result<TestCgroup, String> {
        let what = if controllers.is_empty() { "cgroup v2".to_string() } else { format!("cgroup v1 {controllers}") };
        let me = engine::proc::cgroup::read(Pid(std::process::id() as i32)).map_err(|e| e.to_string())?;
        let line = me
            .iter()
            .find(|l| if controllers.is_empty() { l.is_v2() } else { l.controllers == controllers })
            .ok_or_else(|| format!("no {what} hierarchy"))?;
        let mounts = engine::objects::cgroup::Mounts::read().map_err(|e| e.to_string())?;
        let base = mounts.dir_of(controllers, &line.path).ok_or_else(|| format!("{what} is not mounted"))?;
        let dir = base.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(TestCgroup { dir, path: line.path.join(name), controllers })
    }

    fn enter(&self, pid: i32, file: &str) {
        std::fs::write(self.dir.join(file), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", self.dir.display()));
    }

    /// The line /proc/pid/cgroup shows for a member.
    fn line(&self) -> String {
        format!(":{}:{}", self.controllers, self.path.display())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // A killed member may take a moment to leave.
        for _ in 0..200 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

fn cgroup_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("crtools-{test}-{}-{nanos:x}", std::process::id())
}

/// The v2 and one v1 test cgroup that can be made here (at least one),
/// or None after printing why not.
fn test_cgroups(test: &str) -> Option<Vec<TestCgroup>> {
    let name = cgroup_name(test);
    let mut out = Vec::new();
    let mut why = Vec::new();
    for c in ["", "pids"] {
        match TestCgroup::create(c, &name) {
            Ok(g) => out.push(g),
            Err(e) => why.push(e),
        }
    }
    if out.is_empty() {
        eprintln!("skipped: no cgroup to test with: {}", why.join("; "));
        return None;
    }
    for w in &why {
        eprintln!("note: {w}; tested without it");
    }
    Some(out)
}

#[test]
fn cgroup_membership_is_restored() {
    run("cgroup", 90, |cx| {
        let Some(groups) = test_cgroups("cgroup") else { return };
        let s = Scratch::new("dr_task", "cgroup");
        let mut t = cx.start(&s, "sigact,thread", None);
        for g in &groups {
            g.enter(t.pid, "cgroup.procs");
        }
        let before = std::fs::read_to_string(format!("/proc/{}/cgroup", t.pid)).unwrap();
        for g in &groups {
            assert!(before.contains(&g.line()), "victim not in {}: {before}", g.line());
        }
        dump_and_restore(&mut t, &s);
        let after = std::fs::read_to_string(format!("/proc/{}/cgroup", t.pid)).unwrap();
        assert_eq!(after, before, "cgroups after restore");
        let tid = &t.ready[0];
        let thread = std::fs::read_to_string(format!("/proc/{}/task/{tid}/cgroup", t.pid)).unwrap();
        assert_eq!(thread, before, "cgroups of thread {tid} after restore");
        t.check().assert_ok();
        drop(t);
    });
}

#[test]
fn restore_into_a_removed_cgroup_fails_by_name() {
    run("cgroup_gone", 90, |cx| {
        let Some(mut groups) = test_cgroups("cgroup_gone") else { return };
        let s = Scratch::new("dr_task", "cgroup_gone");
        let mut t = cx.start(&s, "sigact", None);
        let g = groups.remove(0);
        g.enter(t.pid, "cgroup.procs");
        drop(groups);
        do_dump(t.pid, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        t.reap_dumped();
        let path = g.path.display().to_string();
        drop(g);
        assert_restore_fails(t.pid, &s.images(), "restore into a removed cgroup", &[&path, "no longer exists"]);
        t.child = None;
    });
}

#[test]
fn thread_in_another_cgroup_is_refused() {
    run("cgroup_thread", 90, |cx| {
        // Only v1 hierarchies take single threads of a domain process.
        let g = match TestCgroup::create("pids", &cgroup_name("cgroup_thread")) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        let s = Scratch::new("dr_task", "cgroup_thread");
        let t = cx.start(&s, "sigact,thread", None);
        let tid: i32 = t.ready[0].parse().unwrap();
        g.enter(tid, "tasks");
        let err = do_dump(t.pid, &s.images(), false).expect_err("dump must fail");
        eprintln!("expected error: {err}");
        for want in [t.pid.to_string(), format!("thread {tid}"), g.path.display().to_string()] {
            assert!(err.contains(&want), "error does not name {want:?}: {err}");
        }
        assert_running_untraced(&t);
        t.check().assert_ok();
        drop(t);
    });
}

/// SigPnd (thread) and ShdPnd (process) of `t` have SIGTRAP.
fn assert_sigtrap_queued(t: &Task, when: &str) {
    let bit = 1u64 << (libc::SIGTRAP - 1);
    for key in ["SigPnd", "ShdPnd"] {
        let v = u64::from_str_radix(&t.status_field(key), 16).unwrap();
        assert_ne!(v & bit, 0, "{when}: {key} {v:#x} lost SIGTRAP");
    }
}

#[test]
fn pending_sigtrap_survives_a_failed_dump() {
    run("trap_failed", 90, |cx| {
        let s = Scratch::new("dr_task", "trap_failed");
        // The raw socket (unsupported) fails the dump while the parasite is
        // in: descriptors are collected by the parasite.
        let t = cx.start(&s, "trap_pending,trap_thread,socket", None);
        assert_sigtrap_queued(&t, "before the dump");
        let err = do_dump(t.pid, &s.images(), false).expect_err("dump of a raw socket must fail");
        assert!(err.contains("socket"), "{err}");
        assert_running_untraced(&t);
        assert_sigtrap_queued(&t, "after the failed dump");
        let c = t.check();
        c.assert_item("trap", "ok");
        c.assert_item("trap_thread", "ok");
        c.assert_ok();
        // Twice: the second dump meets the SIGTRAPs the check queued again.
        do_dump(t.pid, &s.images(), false).expect_err("dump of a raw socket must fail");
        let c = t.check();
        c.assert_item("trap", "ok");
        c.assert_item("trap_thread", "ok");
        c.assert_ok();
    });
}

#[test]
fn pending_sigtrap_survives_dump_s() {
    run("trap_leave_stopped", 90, |cx| {
        let s = Scratch::new("dr_task", "trap_leave_stopped");
        let t = cx.start(&s, "trap_pending,trap_thread", None);
        do_dump(t.pid, &s.images(), true).unwrap_or_else(|e| panic!("dump -s: {e}"));
        assert!(t.status_field("State").starts_with('T'), "not stopped after dump -s");
        assert_sigtrap_queued(&t, "after dump -s");
        t.signal(libc::SIGCONT);
        let c = t.check();
        c.assert_item("trap", "ok");
        c.assert_item("trap_thread", "ok");
        c.assert_ok();
        assert_running_untraced(&t);
    });
}

#[test]
fn pending_sigtrap_survives_dump_and_restore() {
    run("trap_restore", 90, |cx| {
        let s = Scratch::new("dr_task", "trap_restore");
        let mut t = cx.start(&s, "trap_pending,trap_thread", None);
        dump_and_restore(&mut t, &s);
        assert_running_untraced(&t);
        assert_sigtrap_queued(&t, "after restore");
        let c = t.check();
        c.assert_item("trap", "ok");
        c.assert_item("trap_thread", "ok");
        c.assert_ok();
    });
}
