//! Every fault point of `crtools check --faults`, one after the other, on a
//! victim that checks itself: a dump failing at any point leaves the victim
//! running with its memory, pending signals, descriptors and timers as they
//! were, no parasite mapping, no inventory; a restore failing at any point
//! leaves no task behind and every pid free. A failing point is exit
//! status 1 (failure), never 3 (refusal).
//!
//! The victim is this test binary itself, run with `FAULT_VICTIM=<log>`
//! (see [`victim`]): two threads (libtest's main thread waits for the test
//! thread), 8 MiB of patterned memory, a blocked SIGUSR2 pending for its thread, a pipe
//! holding 5 bytes, a file at offset 3, ITIMER_REAL and a POSIX timer far
//! in the future. On SIGHUP it checks all of it and appends a verdict line
//! to its log.
mod common;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");
const MEM: usize = 8 << 20;

static mut HUP: bool = false;

/// The tests of this file run one at a time: they reap children by pid
/// and one reaps any dead child (see the churn test).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" fn on_hup(_: i32) {
    // SAFETY: a plain store, read by the victim's loop.
    unsafe { std::ptr::write_volatile(&raw mut HUP, true) };
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// The victim's body (run as `FAULT_VICTIM=<log> <this test> --exact victim`).
fn victim_main(log: &str) -> ! {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut logf = std::fs::OpenOptions::new().append(true).create(true).open(log).unwrap();
    let mem: Vec<u8> = (0..MEM).map(pattern).collect();
    let file_path = format!("{log}.data");
    std::fs::write(&file_path, b"0123456789").unwrap();
    let file = std::fs::File::open(&file_path).unwrap();
    let mut fds = [0i32; 2];
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: plain libc calls on valid, local arguments.
    unsafe {
        assert_eq!(libc::lseek(file.as_raw_fd(), 3, libc::SEEK_SET), 3);
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        assert_eq!(libc::write(fds[1], b"hello".as_ptr() as *const _, 5), 5);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()), 0);
        libc::signal(libc::SIGHUP, on_hup as *const () as usize);
        let it = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 500, tv_usec: 0 },
            it_value: libc::timeval { tv_sec: 1000, tv_usec: 0 },
        };
        assert_eq!(libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()), 0);
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = libc::SIGUSR2;
        assert_eq!(libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer), 0);
        let ts = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: 2000, tv_nsec: 0 },
        };
        assert_eq!(libc::timer_settime(timer, 0, &ts, std::ptr::null_mut()), 0);
    }
    // SAFETY: gettid has no arguments.
    let tid = unsafe { libc::gettid() };
    writeln!(logf, "ready {} {tid}", std::process::id()).unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(5));
        // SAFETY: see on_hup.
        if !unsafe { std::ptr::read_volatile(&raw const HUP) } {
            continue;
        }
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(&raw mut HUP, false) };
        let mut bad = Vec::new();
        if let Some(i) = (0..MEM).find(|&i| mem[i] != pattern(i)) {
            bad.push(format!("memory differs at {i}"));
        }
        // SAFETY: plain libc calls on valid, local arguments.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut set);
            if libc::sigismember(&set, libc::SIGUSR2) != 1 {
                bad.push("SIGUSR2 not pending".into());
            }
            let mut n: i32 = 0;
            if libc::ioctl(fds[0], libc::FIONREAD, &mut n) != 0 || n != 5 {
                bad.push(format!("pipe holds {n} bytes"));
            }
            if libc::lseek(file.as_raw_fd(), 0, libc::SEEK_CUR) != 3 {
                bad.push("file offset moved".into());
            }
            let mut it: libc::itimerval = std::mem::zeroed();
            libc::getitimer(libc::ITIMER_REAL, &mut it);
            if it.it_interval.tv_sec != 500 || !(900..=1000).contains(&it.it_value.tv_sec) {
                bad.push(format!("itimer {}/{}", it.it_value.tv_sec, it.it_interval.tv_sec));
            }
            let mut ts: libc::itimerspec = std::mem::zeroed();
            if libc::timer_gettime(timer, &mut ts) != 0 || !(1900..=2000).contains(&ts.it_value.tv_sec) {
                bad.push(format!("posix timer {}", ts.it_value.tv_sec));
            }
        }
        let verdict = if bad.is_empty() { "ok".to_string() } else { bad.join("; ") };
        writeln!(logf, "check {verdict}").unwrap();
    }
}

/// The churning victim: forks a child (which exits at once) and starts a
/// thread (which exits at once) continuously, reaping the children; on
/// SIGHUP it logs `check forks=N threads=M`.
fn churn_main(log: &str) -> ! {
    use std::io::Write;
    let mut logf = std::fs::OpenOptions::new().append(true).create(true).open(log).unwrap();
    // SAFETY: installing a handler that only stores to a static.
    unsafe { libc::signal(libc::SIGHUP, on_hup as *const () as usize) };
    writeln!(logf, "ready {}", std::process::id()).unwrap();
    let (mut forks, mut threads) = (0u64, 0u64);
    loop {
        // SAFETY: the child only calls async-signal-safe functions.
        match unsafe { libc::fork() } {
            // SAFETY: as above: usleep and _exit only.
            0 => unsafe {
                libc::usleep(500);
                libc::_exit(0)
            },
            p if p > 0 => forks += 1,
            _ => {}
        }
        if std::thread::Builder::new().spawn(|| std::thread::sleep(Duration::from_micros(300))).is_ok() {
            threads += 1;
        }
        // SAFETY: reaping our own children.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        std::thread::sleep(Duration::from_millis(1));
        // SAFETY: see on_hup.
        if unsafe { std::ptr::read_volatile(&raw const HUP) } {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(&raw mut HUP, false) };
            writeln!(logf, "check forks={forks} threads={threads}").unwrap();
        }
    }
}

/// Not a test on its own: the victims' entry point (see the module doc).
/// The parasite regions a dump log names (`parasite at 0xBASE (LEN bytes)`),
/// as [start, end) ranges.
fn parasite_regions(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter_map(|l| l.split(": parasite at 0x").nth(1))
        .filter_map(|r| {
            let (base, rest) = r.split_once(" (")?;
            let len: u64 = rest.split_once(" bytes")?.0.parse().ok()?;
            let base = u64::from_str_radix(base, 16).ok()?;
            Some((base, base + len))
        })
        .collect()
}

/// Whether the /proc/pid/maps line `l` lies inside one of `regions`.
fn in_regions(l: &str, regions: &[(u64, u64)]) -> bool {
    let Some((a, b)) = l.split_whitespace().next().and_then(|r| r.split_once('-')) else { return false };
    let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { return false };
    regions.iter().any(|&(s, e)| a >= s && b <= e)
}

#[test]
fn victim() {
    if let Ok(log) = std::env::var("FAULT_VICTIM_CHURN") {
        churn_main(&log);
    }
    if let Ok(log) = std::env::var("FAULT_VICTIM") {
        victim_main(&log);
    }
}

/// A victim that forks and starts threads continuously while it is
/// dumped: each dump converges (the tree is frozen task by task until no
/// new task appears) and the restored victim goes on churning, or the
/// dump fails cleanly (exit status 1) and the victim goes on untraced.
#[test]
fn a_victim_forking_and_cloning_continuously_dumps_or_fails_cleanly() {
    if !common_root() {
        return;
    }
    let _serial = serial();
    subreaper();
    let base = scratch("churn");
    let log = base.join("churn.log");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "victim", "--nocapture", "--test-threads=1"])
        .env("FAULT_VICTIM_CHURN", &log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    common::detached(&mut cmd);
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    std::mem::forget(child);
    wait_for(&log, 1, "ready line");
    let check = |what: &str| -> (u64, u64) {
        let n = log_lines(&log).len();
        // SAFETY: signalling our own victim.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        let l = wait_for(&log, n + 1, what);
        let num = |k: &str| -> u64 {
            l.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        (num("forks="), num("threads="))
    };
    let (mut ok, mut failed) = (0, Vec::new());
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(100));
        let dir = base.join(format!("img{round}"));
        let out = crtools("", &["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
        if out.status.success() {
            // SAFETY: reaping the dumped victim (ours, or re-parented to us).
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            // Its children, killed too, are re-parented to us (subreaper):
            // reap them so that their pids are free for the restore.
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(300) {
                // SAFETY: reaping dead children of ours.
                while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL) } > 0 {}
                std::thread::sleep(Duration::from_millis(10));
            }
            let out = crtools("", &["restore", "-d", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
            assert!(out.status.success(), "round {round}: restore: {}", stderr(&out));
            ok += 1;
        } else {
            assert_eq!(out.status.code(), Some(1), "round {round}: {}", stderr(&out));
            assert!(!dir.join("inventory.img").exists());
            failed.push(stderr(&out));
        }
        assert_eq!(status_field(pid, "TracerPid:").as_deref(), Some("0"), "round {round}: traced");
        let a = check("first check");
        std::thread::sleep(Duration::from_millis(200));
        let b = check("second check");
        assert!(b.0 > a.0 + 10 && b.1 > a.1 + 10, "round {round}: not churning any more: {a:?} -> {b:?}");
    }
    eprintln!("churning victim: {ok} of 4 dumps succeeded; failures: {failed:?}");
    assert!(ok >= 1, "no dump of the churning victim succeeded: {failed:?}");
    // SAFETY: killing and reaping our victim.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    let _ = std::fs::remove_dir_all(&base);
}

struct Victim {
    pid: i32,
    log: std::path::PathBuf,
}

/// The complete lines of a victim's log: `writeln!` may reach the file in
/// several writes, so a last line without its newline is still being written.
fn log_lines(log: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let done = text.rfind('\n').map_or("", |i| &text[..i]);
    done.lines().map(str::to_string).collect()
}

fn wait_for(log: &std::path::Path, n: usize, what: &str) -> String {
    let t = Instant::now();
    loop {
        let l = log_lines(log);
        if l.len() >= n {
            return l[n - 1].clone();
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no {what} in {}: {l:?}", log.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Victim {
    fn start(dir: &std::path::Path) -> Victim {
        let log = dir.join("victim.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "victim", "--nocapture", "--test-threads=1"])
            .env("FAULT_VICTIM", &log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        common::detached(&mut cmd);
        let child = cmd.spawn().expect("start the victim");
        let pid = child.id() as i32;
        // Reaped through waitpid by pid (we are its subreaper anyway).
        std::mem::forget(child);
        let line = wait_for(&log, 1, "ready line");
        assert!(line.starts_with(&format!("ready {pid} ")), "{line}");
        let tid: i32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
        // Only the victim's thread blocks SIGUSR2: it is queued to that
        // thread (libtest's main thread would die of it).
        // SAFETY: signalling our own victim.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR2) };
        let v = Victim { pid, log };
        assert_eq!(v.check(), "ok", "victim before any dump");
        v
    }

    /// Asks the victim to check itself; its verdict.
    fn check(&self) -> String {
        let n = log_lines(&self.log).len();
        // SAFETY: signalling our own victim.
        unsafe { libc::kill(self.pid, libc::SIGHUP) };
        wait_for(&self.log, n + 1, "verdict").trim_start_matches("check ").to_string()
    }

    fn tids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn kill(&self) {
        // SAFETY: killing and reaping our own victim.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

fn status_field(pid: i32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

fn crtools(fault: &str, args: &[&str]) -> std::process::Output {
    Command::new(CRTOOLS).args(args).env("CRTOOLS_FAULT", fault).stdin(Stdio::null()).output().expect("run crtools")
}

fn points() -> Vec<String> {
    let out = crtools("", &["check", "--faults"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("crtools-fault-points-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn there_are_at_least_25_points_and_the_readme_lists_them() {
    let p = points();
    assert!(p.len() >= 25, "{p:?}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for n in &p {
        assert!(readme.contains(&format!("`{n}`")), "README does not list {n}");
    }
}

#[test]
fn a_dump_failing_at_any_point_leaves_the_victim_as_it_was() {
    if !common_root() {
        return;
    }
    let _serial = serial();
    subreaper();
    let base = scratch("dump");
    let v = Victim::start(&base);
    let tids = v.tids();
    assert_eq!(tids.len(), 2, "the victim has two threads");
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
    for point in points().iter().filter(|p| p.starts_with("dump-") && !p.starts_with("dump-die-")) {
        let dir = base.join(point);
        let mut args = vec!["dump", "-D", dir.to_str().unwrap(), "-t"];
        let pid = v.pid.to_string();
        args.push(&pid);
        if point == "dump-leave-stopped" {
            args.push("-s");
        }
        let out = crtools(point, &args);
        assert_eq!(out.status.code(), Some(1), "{point}: exit status; {}", stderr(&out));
        assert!(stderr(&out).contains("injected fault"), "{point}: {}", stderr(&out));
        for &t in &tids {
            assert_eq!(status_field(t, "TracerPid:").as_deref(), Some("0"), "{point}: {t} still traced");
            let st = status_field(t, "State:").unwrap_or_default();
            assert!(st.starts_with('S') || st.starts_with('R'), "{point}: {t} is {st}");
        }
        assert_eq!(v.tids(), tids, "{point}: threads changed");
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
        assert_eq!(maps, maps_before, "{point}: maps changed (parasite left?)");
        assert!(!dir.join("inventory.img").exists(), "{point}: an inventory claims a complete dump");
        assert_eq!(v.check(), "ok", "{point}: the victim's own check");
    }
    v.kill();
    let _ = std::fs::remove_dir_all(&base);
}

/// crtools dies (SIGKILL, `dump-die-serving`) while the parasite serves
/// each of the victim's commands: the parasite cures the victim from
/// inside. It runs on untraced with its threads, its own check passes
/// (memory, a pending signal, a pipe's bytes, a file offset, timers), and
/// its maps are as before but for the parasite's region, which code
/// cannot unmap from inside.
#[test]
fn crtools_dying_while_the_parasite_serves_leaves_the_victim_cured() {
    if !common_root() {
        return;
    }
    let _serial = serial();
    subreaper();
    let base = scratch("die");
    let v = Victim::start(&base);
    let tids = v.tids();
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
    let text = dump_killed_at(&v, &base, "dump-die-serving");
    untraced_with(&v, &tids);
    assert_eq!(v.check(), "ok", "the victim's own check; log:\n{text}");
    let regions = parasite_regions(&text);
    assert!(!regions.is_empty(), "no parasite in the log:\n{text}");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
    let left: Vec<&str> = maps.lines().filter(|l| in_regions(l, &regions)).collect();
    // Its code (read-execute) and the rest (read-write): one or two VMAs.
    assert!(matches!(left.len(), 1 | 2), "the parasite's region {regions:x?}: {maps}");
    same_maps_but_parasite(&v, &maps_before, &regions, &base);
    v.kill();
    let _ = std::fs::remove_dir_all(&base);
}

/// crtools dies (SIGKILL, `dump-die-thread-call`) in the middle of a
/// system call it runs in the victim's second thread, that thread's
/// registers and mask (every signal blocked) being the call's: the thread
/// puts both back by itself (the parasite's `thread_call`), the served
/// thread cures itself, and the victim runs on untraced with the same
/// blocked masks, its own check passing and its maps as before but for
/// the parasite's region.
#[test]
fn crtools_dying_in_a_thread_call_leaves_the_thread_as_it_was() {
    if !common_root() {
        return;
    }
    let _serial = serial();
    subreaper();
    let base = scratch("die-thread");
    let v = Victim::start(&base);
    let tids = v.tids();
    assert!(tids.len() > 1, "the victim has no second thread: {tids:?}");
    let blocked = |t: i32| {
        let s = std::fs::read_to_string(format!("/proc/{}/task/{t}/status", v.pid)).unwrap_or_default();
        s.lines().find_map(|l| l.strip_prefix("SigBlk:")).unwrap_or("?").trim().to_string()
    };
    let masks: Vec<String> = tids.iter().map(|&t| blocked(t)).collect();
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
    let text = dump_killed_at(&v, &base, "dump-die-thread-call");
    assert!(text.contains("dump-die-thread-call"), "the fault was not hit:\n{text}");
    untraced_with(&v, &tids);
    // The kernel lets the threads go as crtools dies; the parasite cures
    // the served thread from inside after that. The victim's own check is
    // answered once the cure is over: the masks are compared then.
    assert_eq!(v.check(), "ok", "the victim's own check; log:\n{text}");
    let after: Vec<String> = tids.iter().map(|&t| blocked(t)).collect();
    assert_eq!(after, masks, "blocked masks changed");
    same_maps_but_parasite(&v, &maps_before, &parasite_regions(&text), &base);
    v.kill();
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_restore_failing_at_any_point_leaves_nothing_behind() {
    if !common_root() {
        return;
    }
    let _serial = serial();
    subreaper();
    let base = scratch("restore");
    let v = Victim::start(&base);
    let tids = v.tids();
    let dir = base.join("images");
    let d = dir.to_str().unwrap().to_string();
    let pid = v.pid.to_string();
    let out = crtools("", &["dump", "-D", &d, "-t", &pid]);
    assert!(out.status.success(), "dump: {}", stderr(&out));
    // SAFETY: reaping our killed victim.
    unsafe { libc::waitpid(v.pid, std::ptr::null_mut(), 0) };
    let gone = |tids: &[i32]| {
        let t = Instant::now();
        loop {
            for &t in tids {
                // SAFETY: reaping what is ours (subreaper), by pid.
                unsafe { libc::waitpid(t, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL) };
            }
            let left: Vec<i32> =
                tids.iter().copied().filter(|t| std::path::Path::new(&format!("/proc/{t}")).exists()).collect();
            if left.is_empty() {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(5) {
                return Err(left);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    for point in points().iter().filter(|p| p.starts_with("restore-") && *p != "restore-no-set-tid") {
        let out = crtools(point, &["restore", "-d", "-D", &d, "-t", &pid]);
        assert_eq!(out.status.code(), Some(1), "{point}: exit status; {}", stderr(&out));
        let e = stderr(&out);
        assert!(e.contains("injected fault") || e.contains("ECANCELED"), "{point}: {e}");
        if let Err(left) = gone(&tids) {
            panic!("{point}: tasks left behind: {left:?}");
        }
    }
    // And the images still restore, the victim intact.
    let out = crtools("", &["restore", "-d", "-D", &d, "-t", &pid]);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    assert_eq!(v.check(), "ok", "the restored victim's own check");
    v.kill();
    let _ = std::fs::remove_dir_all(&base);
}

fn common_root() -> bool {
    // SAFETY: getuid has no arguments.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: needs root");
        return false;
    }
    true
}

/// Which tasks a crtools log (-v 2) leaves inside a harm window: code
/// patched or registers in injected code when crtools died (see
/// `engine::infect::harm_window`).
fn open_windows(log: &str) -> Vec<i32> {
    let mut depth: std::collections::BTreeMap<i32, i32> = Default::default();
    for l in log.lines() {
        let Some(rest) = l.split("task ").nth(1) else { continue };
        let Some((pid, tail)) = rest.split_once(": harm window ") else { continue };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        *depth.entry(pid).or_default() += if tail.starts_with("open") { 1 } else { -1 };
    }
    depth.into_iter().filter(|&(_, d)| d > 0).map(|(p, _)| p).collect()
}

/// Dumps the victim into `base`/images with fault point `fault` making
/// crtools SIGKILL itself there: crtools' log (`base`/dump.log).
fn dump_killed_at(v: &Victim, base: &std::path::Path, fault: &str) -> String {
    let (dir, log) = (base.join("images"), base.join("dump.log"));
    let pid = v.pid.to_string();
    let out =
        crtools(fault, &["dump", "-v", "2", "-o", log.to_str().unwrap(), "-D", dir.to_str().unwrap(), "-t", &pid]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "crtools did not die: {}", stderr(&out));
    std::fs::read_to_string(&log).unwrap_or_default()
}

/// Every thread `tids` of the victim is untraced again (the kernel lets
/// them go once their dead tracer is gone) and none came or went.
fn untraced_with(v: &Victim, tids: &[i32]) {
    for &t in tids {
        let deadline = Instant::now() + Duration::from_secs(2);
        while status_field(t, "TracerPid:").as_deref() != Some("0") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(status_field(t, "TracerPid:").as_deref(), Some("0"), "{t} still traced");
    }
    assert_eq!(v.tids(), tids, "threads changed");
}

/// The victim's maps are `before` but for the parasite's `regions`, and
/// the dump into `base`/images left no inventory.
fn same_maps_but_parasite(v: &Victim, before: &str, regions: &[(u64, u64)], base: &std::path::Path) {
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
    let rest: String = maps.lines().filter(|l| !in_regions(l, regions)).map(|l| format!("{l}\n")).collect();
    assert_eq!(rest, before, "maps changed beyond the parasite's region");
    assert!(!base.join("images").join("inventory.img").exists(), "an inventory claims a complete dump");
}

/// A small deterministic generator (xorshift64*), seeded per run.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// What the two stress tests below start from: how many runs
/// (CRTOOLS_KILL_RUNS), the seed of their random moments
/// (CRTOOLS_KILL_SEED, printed so a failure can be replayed), a victim,
/// and how long a dump of it takes here (one that fails just before its
/// inventory), the span the moments are drawn from.
struct Stress {
    runs: u32,
    seed: u64,
    base: std::path::PathBuf,
    v: Victim,
    span: u64,
}

impl Stress {
    fn start(name: &str) -> Stress {
        let runs = std::env::var("CRTOOLS_KILL_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
        let seed = std::env::var("CRTOOLS_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("{name} stress: {runs} runs, CRTOOLS_KILL_SEED={seed}");
        let base = scratch(name);
        let v = Victim::start(&base);
        let t = Instant::now();
        let probe = base.join("probe");
        let out = crtools("dump-before-inventory", &["dump", "-D", probe.to_str().unwrap(), "-t", &v.pid.to_string()]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let span = t.elapsed().as_micros() as u64 + 1;
        Stress { runs, seed, base, v, span }
    }
}

/// crtools killed with SIGKILL at random moments of a dump: the victim
/// runs on as it was (its own check), untraced, with the same maps and
/// threads. The kernel detaches a dead tracer's tracees and lets them run
/// (no PTRACE_O_EXITKILL: a dump never relies on it); what it cannot
/// undo is a kill while the victim's code is patched or its registers
/// point into the parasite: the victim would run injected code untraced.
/// Those runs are recognised from crtools' log (harm window open) and
/// counted, not asserted; see the README. CRTOOLS_KILL_RUNS sets the
/// number of runs (default 12; the long run is 60), CRTOOLS_KILL_SEED the
/// seed.
#[test]
fn crtools_killed_at_random_moments_of_a_dump() {
    if !common_root() {
        return;
    }
    let _serial = serial();
    subreaper();
    let Stress { runs, mut seed, base, mut v, span } = Stress::start("kill");
    let (mut clean, mut in_window, mut complete, mut harmed, mut self_cured) = (0, 0, 0, 0, 0);
    for run in 0..runs {
        let tids = v.tids();
        let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
        let dir = base.join(format!("run{run}"));
        let log = base.join(format!("run{run}.log"));
        // -s: a dump that completes leaves the victim stopped, not killed.
        let mut child = Command::new(CRTOOLS)
            .args(["dump", "-s", "-v", "2", "-o"])
            .arg(&log)
            .arg("-D")
            .arg(&dir)
            .args(["-t", &v.pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = next(&mut seed) % (span + span / 5);
        std::thread::sleep(Duration::from_micros(delay));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let open = open_windows(&text);
        if dir.join("inventory.img").exists() {
            // The dump finished before the kill (-s: the victim is stopped).
            complete += 1;
            // SAFETY: continuing our own victim.
            unsafe { libc::kill(v.pid, libc::SIGCONT) };
        }
        std::thread::sleep(Duration::from_millis(30));
        if !open.is_empty() {
            in_window += 1;
            let last = text.lines().rev().find(|l| l.contains("harm window open")).unwrap_or("");
            eprintln!("run {run}: killed after {delay} us inside a harm window of {open:?} ({status}): {last}");
            let alive = std::path::Path::new(&format!("/proc/{}", v.pid)).exists()
                && !status_field(v.pid, "State:").unwrap_or_default().starts_with('Z');
            let same = alive && std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).ok() == Some(maps_before);
            if !same || v.check() != "ok" {
                // The kernel's limit: start a fresh victim and go on.
                harmed += 1;
                eprintln!("run {run}: the victim was harmed (alive: {alive})");
                v.kill();
                v = Victim::start(&base);
            }
            continue;
        }
        clean += 1;
        for &t in &tids {
            let deadline = Instant::now() + Duration::from_secs(2);
            while status_field(t, "TracerPid:").as_deref() != Some("0") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(status_field(t, "TracerPid:").as_deref(), Some("0"), "run {run} ({delay} us): {t} traced");
        }
        assert_eq!(v.tids(), tids, "run {run} ({delay} us): threads changed");
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
        // Killed while the parasite served commands, the victim cured
        // itself from inside; the one thing it cannot do is unmap the code
        // it runs, so its region stays (the log says where it was mapped).
        let regions = parasite_regions(&text);
        let is_left = |l: &str| in_regions(l, &regions);
        let left: Vec<&str> = maps.lines().filter(|l| is_left(l)).collect();
        if !left.is_empty() {
            self_cured += 1;
            eprintln!("run {run}: killed after {delay} us while the parasite served: cured itself, left {left:?}");
        }
        // One region: its code (read-execute) and the rest (read-write).
        assert!(left.len() <= 2, "run {run} ({delay} us): more than one region left: {left:?}");
        let keep = |m: &str| -> String { m.lines().filter(|l| !is_left(l)).map(|l| format!("{l}\n")).collect() };
        assert_eq!(keep(&maps), keep(&maps_before), "run {run} ({delay} us): maps changed; log:\n{text}");
        assert_eq!(v.check(), "ok", "run {run} ({delay} us): the victim's own check; log:\n{text}");
        let _ = std::fs::remove_dir_all(&dir);
        if !left.is_empty() {
            // A region left next to the next one would merge with it.
            v.kill();
            v = Victim::start(&base);
        }
    }
    eprintln!(
        "kill stress: {runs} runs over {span} us dumps: {clean} outside any harm window (victim intact), \
         {complete} of them after a complete dump, {self_cured} cured by the parasite itself (its region \
         left), {in_window} inside one (kernel limit, counted; the victim harmed in {harmed})"
    );
    v.kill();
    let _ = std::fs::remove_dir_all(&base);
}

/// SIGINT to crtools at random moments of a dump (`-s`, so a dump that
/// completes leaves the victim stopped): unlike SIGKILL, no moment may
/// harm the victim. Each run ends interrupted (exit status 1, no images
/// left) or complete; either way the victim runs on untraced with the
/// same threads and exactly the same maps (the parasite was taken out),
/// and passes its own check. CRTOOLS_KILL_RUNS and CRTOOLS_KILL_SEED as
/// for the kill stress.
#[test]
fn crtools_interrupted_at_random_moments_of_a_dump() {
    if !common_root() {
        return;
    }
    let _serial = serial();
    subreaper();
    let Stress { runs, mut seed, base, v, span } = Stress::start("sigint");
    let (mut interrupted, mut complete, mut early) = (0, 0, 0);
    for run in 0..runs {
        let tids = v.tids();
        let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
        let dir = base.join(format!("run{run}"));
        let mut cmd = Command::new(CRTOOLS);
        cmd.arg("dump").arg("-s").arg("-D").arg(&dir).args(["-t", &v.pid.to_string()]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        // Not SIGINT ignored as the harness may have it (a background
        // job): crtools would leave it ignored.
        // SAFETY: signal() is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let delay = next(&mut seed) % (span + span / 5);
        std::thread::sleep(Duration::from_micros(delay));
        // SAFETY: signalling the crtools this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        match out.status.code() {
            Some(0) => {
                complete += 1;
                assert!(dir.join("inventory.img").exists(), "run {run}: exit 0 without an inventory");
                // SAFETY: continuing our own victim, left stopped by -s.
                unsafe { libc::kill(v.pid, libc::SIGCONT) };
            }
            Some(1) => {
                interrupted += 1;
                assert!(err.contains("interrupted by SIGINT"), "run {run} ({delay} us): {err}");
                let left: Vec<_> = std::fs::read_dir(&dir)
                    .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
                    .unwrap_or_default();
                assert!(left.is_empty(), "run {run} ({delay} us): images left: {left:?}");
            }
            // Before crtools caught the stop signals (it catches them right
            // after parsing its command line, before it makes the image
            // directory): killed before it touched anything.
            None if std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(libc::SIGINT) => {
                assert!(!dir.exists(), "run {run} ({delay} us): killed by SIGINT after it began: {err}");
                early += 1;
            }
            other => panic!("run {run} ({delay} us): crtools ended with {other:?}: {err}"),
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !status_field(v.pid, "State:").unwrap_or_default().starts_with('S') && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for &t in &tids {
            assert_eq!(status_field(t, "TracerPid:").as_deref(), Some("0"), "run {run} ({delay} us): {t} traced");
        }
        assert_eq!(v.tids(), tids, "run {run} ({delay} us): threads changed");
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", v.pid)).unwrap();
        assert_eq!(maps, maps_before, "run {run} ({delay} us): maps changed: {err}");
        assert_eq!(v.check(), "ok", "run {run} ({delay} us): the victim's own check: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!(
        "interrupt stress: {runs} runs over {span} us dumps: {interrupted} interrupted, {complete} complete, \
         {early} killed before crtools began"
    );
    v.kill();
    let _ = std::fs::remove_dir_all(&base);
}
