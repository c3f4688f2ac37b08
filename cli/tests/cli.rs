//! The `crtools` binary end to end: exit codes, messages, and a real
//! dump/restore of a plain system program (`sleep`).
mod common;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");

fn crtools(args: &[&str]) -> std::process::Output {
    Command::new(CRTOOLS).args(args).stdin(Stdio::null()).output().expect("run crtools")
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("crtools-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `sleep SECS` in its own session with stdio on /dev/null.
fn sleeper(secs: &str) -> std::process::Child {
    let mut cmd = Command::new("sleep");
    cmd.arg(secs).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    cmd.spawn().expect("start sleep")
}

fn state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next())
}

/// The state of `pid` once it has gone back to sleep: a task resumed by
/// a failed dump runs for a moment (its interrupted sleep restarts)
/// before it sleeps again, so a single look may see it running. Gives
/// up after five seconds and returns the last state seen.
fn settled_state(pid: i32) -> Option<char> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let s = state(pid);
        if s != Some('R') || std::time::Instant::now() > until {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn subreaper() {
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

fn kill_reap(pid: i32) {
    // SAFETY: signalling and reaping a process this test restored.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Whether python3 runs here (the tests using it skip otherwise).
fn have_python3() -> bool {
    let ok = Command::new("python3").arg("-c").arg("pass").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: no python3");
    }
    ok
}

/// `python3 -c script` in its own session, and the first line it prints.
fn python3_started(script: &str) -> (std::process::Child, String) {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().expect("start python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    (child, line)
}

/// What a dump into `dir` said of `script` (python3 in its own session):
/// the script's first line, crtools' exit code and error output, and the
/// state the task settled in afterwards. The task is killed then.
struct DumpOf {
    line: String,
    code: Option<i32>,
    err: String,
    alive: Option<char>,
}

fn dump_of_python3(script: &str, dir: &std::path::Path) -> DumpOf {
    let (mut child, line) = python3_started(script);
    let pid = child.id() as i32;
    let out = crtools(&["dump", "-t", &pid.to_string(), "-D", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let alive = settled_state(pid);
    let _ = child.kill();
    let _ = child.wait();
    DumpOf { line, code: out.status.code(), err, alive }
}

/// Starts `script` (which prints "ready"), dumps it into `dir`/img and
/// restores it detached: its pid.
fn python3_dumped_and_restored(script: &str, dir: &std::path::Path) -> i32 {
    let (mut child, line) = python3_started(script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let img = dir.join("img");
    let o = crtools(&["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    let o = crtools(&["restore", "-d", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    pid
}

/// Sends SIGUSR1 to `pid` and reads what it wrote to `out` in answer.
fn ask(pid: i32, out: &std::path::Path) -> String {
    // SAFETY: signalling the process this test restored.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let t = Instant::now();
    while std::fs::metadata(out).map(|m| m.len()).unwrap_or(0) == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
    std::fs::read_to_string(out).unwrap_or_default()
}

#[test]
fn check_says_looks_good() {
    let out = crtools(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.trim_end().ends_with("Looks good."), "{text}");
    assert!(text.lines().any(|l| l.starts_with("soft-dirty") && l.contains("missing")), "{text}");
}

#[test]
fn restore_of_a_missing_dir_is_one_clear_error() {
    let out = crtools(&["restore", "-D", "/nonexistent-crtools-dir", "-t", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("crtools: error: ") && err.contains("/nonexistent-crtools-dir"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn dump_of_a_missing_pid_fails() {
    let dir = tmpdir("nopid");
    let out = crtools(&["dump", "-D", dir.to_str().unwrap(), "-t", "2147483000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2147483000"));
    // The directory the failed dump made is taken back with its images.
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn sleep_is_dumped_restored_detached_and_keeps_sleeping() {
    subreaper();
    let dir = tmpdir("sleep");
    let mut child = sleeper("1000");
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(200));
    let out = crtools(&["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = child.wait();
    let out = crtools(&["restore", "-d", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(300));
    let st = settled_state(pid);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    kill_reap(pid);
    assert_eq!(st, Some('S'), "restored sleep is sleeping");
    assert_eq!(comm.trim(), "sleep");
    let shown = crtools(&["show", "-D", dir.to_str().unwrap()]);
    assert!(shown.status.success());
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("PROT_READ") && text.contains("sleep"), "{text}");
    // Both runs left their statistics: how long the tree was frozen, pages.
    for (file, field) in [("stats-dump.img", "frozen_time"), ("stats-restore.img", "restore_time")] {
        assert!(text.contains(&format!("== {file}")) && text.contains(field), "{file} not shown: {text}");
    }
    let all = crtools(&["show", "--json", "-D", dir.to_str().unwrap()]);
    let all = String::from_utf8_lossy(&all.stdout);
    assert!(all.contains("\"pages_written\":") && all.trim_end().ends_with("]}"), "{all}");
    let json = crtools(&["show", "--json", "-f", dir.join("pstree.img").to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&json.stdout).contains(&format!("\"pid\":{pid}")),
        "{}",
        String::from_utf8_lossy(&json.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn restore_without_detach_waits_and_returns_the_exit_status() {
    subreaper();
    let dir = tmpdir("wait");
    let mut child = sleeper("2");
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(300));
    let out = crtools(&["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = child.wait();
    let t = Instant::now();
    let out = crtools(&["restore", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    assert!(out.status.success(), "restore: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(t.elapsed() >= Duration::from_millis(500), "restore returned before sleep finished");
    let _ = std::fs::remove_dir_all(&dir);
}

fn ppid_of(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn shell_with_two_children_restores_as_a_tree_with_per_task_logs() {
    subreaper();
    let dir = tmpdir("tree");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("sleep 1000 & sleep 1000 & wait")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut sh = cmd.spawn().expect("start sh");
    let pid = sh.id() as i32;
    let t = Instant::now();
    let kids = loop {
        let c = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let kids: Vec<i32> = c.split_whitespace().filter_map(|s| s.parse().ok()).collect();
        if kids.len() == 2 {
            break kids;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "sh did not start its children");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    let d = dir.to_str().unwrap();
    let out = crtools(&["dump", "-D", d, "-t", &pid.to_string(), "-o", "dump.log", "--log-pid", "-v", "2"]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = sh.wait();
    // The sleeps were re-parented to us (subreaper) when sh died: reap them.
    for k in &kids {
        // SAFETY: reaping children of ours.
        unsafe { libc::waitpid(*k, std::ptr::null_mut(), 0) };
    }
    let out = crtools(&["restore", "-d", "-D", d, "-t", &pid.to_string(), "-o", "restore.log", "--log-pid", "-v", "2"]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(200));
    let ppids: Vec<Option<i32>> = kids.iter().map(|&k| ppid_of(k)).collect();
    let logs: Vec<String> = std::iter::once(pid)
        .chain(kids.iter().copied())
        .map(|p| std::fs::read_to_string(dir.join(format!("restore.log.{p}"))).unwrap_or_default())
        .collect();
    for &k in &kids {
        kill_reap(k);
    }
    kill_reap(pid);
    assert_eq!(ppids, vec![Some(pid), Some(pid)], "children of the restored sh");
    for (p, l) in std::iter::once(pid).chain(kids.iter().copied()).zip(&logs) {
        assert!(l.contains(&format!("task {p}: released")), "restore.log.{p}: {l:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn sig_ign(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("SigIgn:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).unwrap_or(0)
}

#[test]
fn an_ignored_sigtrap_stays_ignored_through_dump_and_restore() {
    subreaper();
    let dir = tmpdir("sigtrap");
    let d = dir.to_str().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("trap '' TRAP; exec sleep 1000").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut sh = cmd.spawn().expect("start sh");
    let pid = sh.id() as i32;
    let t = Instant::now();
    while sig_ign(pid) & (1 << 4) == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "sh never ignored SIGTRAP");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = sig_ign(pid);
    // -s: the task left behind must be as it was.
    let out = crtools(&["dump", "-s", "-D", d, "-t", &pid.to_string()]);
    assert!(out.status.success(), "dump -s: {}", String::from_utf8_lossy(&out.stderr));
    let after_dump = sig_ign(pid);
    let _ = sh.kill();
    let _ = sh.wait();
    let out = crtools(&["restore", "-d", "-D", d, "-t", &pid.to_string()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(100));
    // The restored task was stopped like the one left behind: look, then end it.
    let after_restore = sig_ign(pid);
    kill_reap(pid);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(after_dump, before, "SigIgn of the task left by dump -s");
    assert_eq!(after_restore, before, "SigIgn of the restored task");
}

#[test]
fn a_task_in_another_namespace_is_refused_by_name_and_left_running() {
    let dir = tmpdir("netns");
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "sleep", "1000"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let Ok(mut child) = cmd.spawn() else {
        eprintln!("skipped: no unshare(1)");
        return;
    };
    let pid = child.id() as i32;
    let t = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() != "sleep").unwrap_or(true) {
        assert!(t.elapsed() < Duration::from_secs(5), "unshare did not exec sleep");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = crtools(&["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let st = settled_state(pid);
    let traced = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    // Refused (3), not failed (1): the tree holds what this version does not dump.
    assert_eq!(out.status.code(), Some(3));
    assert!(err.contains("net namespace") && err.contains(&pid.to_string()), "{err}");
    assert_eq!(st, Some('S'), "left running");
    assert!(!traced, "left untraced");
}

fn nice_of(pid: i32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()
}

/// Signal-driven I/O that cannot come back exactly is refused by name,
/// for any kind of descriptor (here a pipe), and the task runs on: O_ASYNC
/// with an F_SETSIG signal (its si_fd would name crtools' descriptor), and
/// a signal owner outside the tree (init).
#[test]
fn signal_driven_io_crtools_cannot_restore_is_refused_by_name_and_left_running() {
    for (setup, want) in [
        (
            "fcntl.fcntl(e, fcntl.F_SETOWN, os.getpid())\n\
             fcntl.fcntl(e, 10, 40)\n\
             fcntl.fcntl(e, fcntl.F_SETFL, fcntl.fcntl(e, fcntl.F_GETFL) | os.O_ASYNC)\n",
            "O_ASYNC with F_SETSIG signal 40",
        ),
        ("fcntl.fcntl(e, fcntl.F_SETOWN, 1)\n", "signal owner (F_SETOWN) is process 1, outside the tree"),
    ] {
        let dir = tmpdir("oasync");
        let ready = dir.with_extension("ready");
        let _ = std::fs::remove_file(&ready);
        let script = format!(
            "import fcntl, os, sys, time\n\
             e, w = os.pipe()\n\
             {setup}\
             open(sys.argv[1], 'w').close()\n\
             time.sleep(600)\n"
        );
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script).arg(&ready).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        common::detached(&mut cmd);
        let Ok(mut child) = cmd.spawn() else {
            eprintln!("skipped: no python3");
            return;
        };
        let pid = child.id() as i32;
        let t = Instant::now();
        while !ready.exists() {
            assert!(t.elapsed() < Duration::from_secs(20), "python did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = crtools(&["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let st = settled_state(pid);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&ready);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains(want) && err.contains("fd 3"), "{err}");
        assert_eq!(st, Some('S'), "left running");
    }
}

#[test]
fn the_nice_value_survives() {
    subreaper();
    let dir = tmpdir("nice");
    let d = dir.to_str().unwrap();
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "7", "sleep", "1000"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().expect("start nice sleep");
    let pid = child.id() as i32;
    let t = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() != "sleep").unwrap_or(true) {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(nice_of(pid), Some(7));
    let out = crtools(&["dump", "-D", d, "-t", &pid.to_string()]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = child.wait();
    let out = crtools(&["restore", "-d", "-D", d, "-t", &pid.to_string()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let nice = nice_of(pid);
    kill_reap(pid);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(nice, Some(7), "nice value after restore");
}

#[test]
fn a_deleted_device_node_comes_back_deleted_or_evasive() {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    subreaper();
    let dir = tmpdir("evasive");
    std::fs::create_dir_all(&dir).unwrap();
    // A private node of the null device (1:3), opened as fd 3, then deleted.
    let node = dir.join("mynull");
    let cpath = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: mknod with a valid path.
    assert_eq!(unsafe { libc::mknod(cpath.as_ptr(), libc::S_IFCHR | 0o640, libc::makedev(1, 3)) }, 0);
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("exec sleep 1000 3<>{}", node.display()));
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().expect("start sleep");
    let pid = child.id() as i32;
    let t = Instant::now();
    while std::fs::read_link(format!("/proc/{pid}/fd/3")).is_err()
        || std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() != "sleep").unwrap_or(true)
    {
        assert!(t.elapsed() < Duration::from_secs(5), "sleep did not start with fd 3");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_file(&node).unwrap();
    let fd3 = || {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/3")).ok();
        let md = std::fs::metadata(format!("/proc/{pid}/fd/3")).ok();
        (link, md.map(|m| (m.file_type().is_char_device(), m.rdev(), m.mode() & 0o777, m.nlink())))
    };
    // Without --evasive-devices: the node is made again, opened, unlinked.
    let img = dir.join("img");
    let out = crtools(&["dump", "-D", img.to_str().unwrap(), "-t", &pid.to_string()]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = child.wait();
    let out = crtools(&["restore", "-d", "-D", img.to_str().unwrap(), "-t", &pid.to_string()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let (link, md) = fd3();
    let want = format!("{} (deleted)", node.display());
    // With it: another node of the device (here /dev/null).
    let img2 = dir.join("img2");
    let out = crtools(&["dump", "--evasive-devices", "-D", img2.to_str().unwrap(), "-t", &pid.to_string()]);
    let dumped = out.status.success();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // SAFETY: reaping the restored sleep, ours as subreaper.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    let restored =
        dumped && crtools(&["restore", "-d", "-D", img2.to_str().unwrap(), "-t", &pid.to_string()]).status.success();
    let (evasive, _) = fd3();
    if restored {
        kill_reap(pid);
    }
    let left = node.exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(link.as_deref(), Some(std::path::Path::new(&want)), "fd 3 after restore");
    assert_eq!(md, Some((true, libc::makedev(1, 3), 0o640, 0)), "fd 3: a deleted node of 1:3, mode 0640");
    assert!(!left, "the node made again was left behind");
    assert!(dumped, "dump --evasive-devices: {err}");
    assert!(restored);
    assert_eq!(evasive.as_deref(), Some(std::path::Path::new("/dev/null")), "fd 3 reopened on another node of 1:3");
}

/// Reads one line from a raw descriptor (byte by byte; the test's pipe).
fn read_line_fd(fd: i32) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a local buffer.
        let n = unsafe { libc::read(fd, b.as_mut_ptr() as *mut _, 1) };
        if n != 1 || b[0] == b'\n' {
            return String::from_utf8_lossy(&out).into_owned();
        }
        out.push(b[0]);
    }
}

/// `sh` writing numbered lines into a pipe whose read end the test holds
/// (outside the dumped tree): `show` names the pipe's outside end, and a
/// restore with `--inherit-fd fd[3]:pipe:[INO]` plugs a new pipe in its
/// place: the restored shell goes on counting into it.
#[test]
fn a_pipe_to_the_outside_is_plugged_in_with_inherit_fd() {
    subreaper();
    let dir = tmpdir("inherit");
    let mut p = [0i32; 2];
    // SAFETY: pipe writes two descriptors.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (r, w) = (p[0], p[1]);
    // SAFETY: fstat into a zeroed stat.
    let ino = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(w, &mut st);
        st.st_ino
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("i=0; while :; do i=$((i+1)); echo \"line $i\"; sleep 0.02; done");
    // SAFETY: dup2 is async-signal-safe; the write end becomes stdout.
    unsafe {
        cmd.pre_exec(move || {
            libc::dup2(w, 1);
            Ok(())
        });
    }
    cmd.stdin(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut sh = cmd.spawn().expect("start sh");
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(w) };
    let pid = sh.id() as i32;
    let mut last = 0u64;
    let mut tree = Vec::new();
    for _ in 0..5 {
        let l = read_line_fd(r);
        last = l.strip_prefix("line ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("sh said {l:?}"));
    }
    let d = dir.to_str().unwrap();
    tree.extend(tree_of(pid));
    let out = crtools(&["dump", "-D", d, "-t", &pid.to_string()]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = sh.wait();
    for &p in &tree[1..] {
        // SAFETY: reaping the dead tree's tasks (a sleep), re-parented to us.
        unsafe { libc::waitpid(p, std::ptr::null_mut(), 0) };
    }
    // sh may have started another sleep between tree_of and the dump:
    // reap whatever of its session was re-parented to us.
    reap_session_orphans(pid);
    // Whatever sh wrote before the dump is still ours to read.
    // SAFETY: fcntl without pointers.
    unsafe { libc::fcntl(r, libc::F_SETFL, libc::O_NONBLOCK) };
    loop {
        let l = read_line_fd(r);
        match l.strip_prefix("line ").and_then(|n| n.parse().ok()) {
            Some(n) => last = n,
            None => break,
        }
    }
    // SAFETY: closing the old read end.
    unsafe { libc::close(r) };
    let show = crtools(&["show", "-D", d, "-f", "pipes-data.img"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains(&format!("--inherit-fd fd[N]:pipe:[{ino}]")), "show does not name the outside end: {text}");
    let mut p2 = [0i32; 2];
    // SAFETY: pipe writes two descriptors.
    assert_eq!(unsafe { libc::pipe2(p2.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (r2, w2) = (p2[0], p2[1]);
    let mut cmd = Command::new(CRTOOLS);
    cmd.args(["restore", "-d", "-D", d, "-t", &pid.to_string(), "--inherit-fd", &format!("fd[3]:pipe:[{ino}]")]);
    // SAFETY: dup2 is async-signal-safe; the new write end becomes fd 3.
    unsafe {
        cmd.pre_exec(move || {
            libc::dup2(w2, 3);
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run crtools");
    // SAFETY: closing our copy of the new write end.
    unsafe { libc::close(w2) };
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let next = read_line_fd(r2);
    let restored = tree_of(pid);
    for p in restored.iter().rev() {
        kill_reap(*p);
    }
    let n: u64 = next.strip_prefix("line ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("sh said {next:?}"));
    assert_eq!(n, last + 1, "the restored shell did not go on counting where it was");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until `path` holds `want` (whole file), up to 15 s.
fn wait_content(path: &std::path::Path, want: &str) -> String {
    let t = Instant::now();
    loop {
        let got = std::fs::read_to_string(path).unwrap_or_default();
        if got == want || t.elapsed() > Duration::from_secs(15) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real program: socat as a unix socket echo server (forking a `cat` per
/// connection) and socat as its client, feeding lines from a FIFO and
/// appending the echoes to a file, all one tree. Lines sent after restore
/// come back through the restored connection.
#[test]
fn socat_echo_server_and_client_survive() {
    if Command::new("socat").arg("-V").stdout(Stdio::null()).status().is_err() {
        eprintln!("skipped: socat is not installed (.ci/run installs it)");
        return;
    }
    subreaper();
    let dir = tmpdir("socat");
    std::fs::create_dir_all(&dir).unwrap();
    let (srv, fifo, out) = (dir.join("srv"), dir.join("in"), dir.join("out"));
    let script = format!(
        "socat UNIX-LISTEN:{srv},fork EXEC:cat & sleep 0.3; exec socat UNIX-CONNECT:{srv} 'PIPE:{fifo},ignoreeof!!OPEN:{out},creat,append'",
        srv = srv.display(),
        fifo = fifo.display(),
        out = out.display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&script).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut sh = cmd.spawn().expect("start socat");
    let pid = sh.id() as i32;
    let t = Instant::now();
    while !fifo.exists() || !srv.exists() || tree_of(pid).len() < 4 {
        assert!(t.elapsed() < Duration::from_secs(10), "socat did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&fifo, "one\n").unwrap();
    assert_eq!(wait_content(&out, "one\n"), "one\n", "no echo before the dump");
    let pids = tree_of(pid);
    let d = dir.join("img");
    let d = d.to_str().unwrap();
    let r = crtools(&["dump", "-D", d, "-t", &pid.to_string()]);
    assert!(r.status.success(), "dump: {}", String::from_utf8_lossy(&r.stderr));
    let _ = sh.wait();
    for &p in &pids[1..] {
        // SAFETY: reaping the dead tree's tasks, re-parented to us (subreaper).
        unsafe { libc::waitpid(p, std::ptr::null_mut(), 0) };
    }
    let r = crtools(&["restore", "-d", "-D", d, "-t", &pid.to_string()]);
    assert!(r.status.success(), "restore: {}", String::from_utf8_lossy(&r.stderr));
    std::fs::write(&fifo, "two\n").unwrap();
    let got = wait_content(&out, "one\ntwo\n");
    for p in pids.iter().rev() {
        kill_reap(*p);
    }
    assert_eq!(got, "one\ntwo\n", "the restored client and server did not echo");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pid` and its descendants, parents first.
/// Reaps our children (re-parented to us, the subreaper) of session `sid`.
fn reap_session_orphans(sid: i32) {
    let me = std::process::id() as i32;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let st = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let f: Vec<&str> = st.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        if f.len() > 3 && f[1] == me.to_string() && f[3] == sid.to_string() {
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(p, std::ptr::null_mut(), 0) };
        }
    }
}

fn tree_of(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        let c = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        out.extend(c.split_whitespace().filter_map(|s| s.parse::<i32>().ok()));
        i += 1;
    }
    out
}

/// `--version` names the version and the image formats this build reads.
#[test]
fn version_names_the_image_formats() {
    let out = crtools(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("crtools {}", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("image formats: inventory ") && text.contains("core "), "{text}");
}

/// A real terminal multiplexer: a tmux server (a daemon with its listening
/// unix socket, a pty pair and a shell inside) is dumped and restored; a
/// new tmux client then talks to the restored server, and the shell in it
/// still has the variable set before the dump.
#[test]
fn tmux_server_and_its_shell_survive() {
    if Command::new("tmux").arg("-V").stdout(Stdio::null()).status().is_err() {
        eprintln!("skipped: tmux is not installed (.ci/run installs it)");
        return;
    }
    subreaper();
    let dir = tmpdir("tmux");
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("tmux.sock");
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    };
    let out = tmux(&["new-session", "-d", "-s", "t", "sh"]);
    assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
    let pane = |want: &str| -> String {
        let t = Instant::now();
        loop {
            let o = tmux(&["capture-pane", "-p", "-t", "t"]);
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if text.contains(want) || t.elapsed() > Duration::from_secs(10) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    tmux(&["send-keys", "-t", "t", "V=before-dump; echo set-$V", "Enter"]);
    assert!(pane("set-before-dump").contains("set-before-dump"), "the shell did not answer");
    let server = String::from_utf8_lossy(&tmux(&["display", "-p", "#{pid}"]).stdout).trim().parse::<i32>().unwrap();
    let pids = tree_of(server);
    let d = dir.join("img");
    let d = d.to_str().unwrap();
    let r = crtools(&["dump", "-D", d, "-t", &server.to_string()]);
    assert!(r.status.success(), "dump: {}", String::from_utf8_lossy(&r.stderr));
    for &p in &pids {
        // SAFETY: reaping the dead server and shell, re-parented to us.
        unsafe { libc::waitpid(p, std::ptr::null_mut(), 0) };
    }
    let r = crtools(&["restore", "-d", "-D", d, "-t", &server.to_string()]);
    assert!(r.status.success(), "restore: {}", String::from_utf8_lossy(&r.stderr));
    tmux(&["send-keys", "-t", "t", "echo after-$V", "Enter"]);
    let text = pane("after-before-dump");
    for p in tree_of(server).iter().rev() {
        kill_reap(*p);
    }
    assert!(text.contains("after-before-dump"), "the restored shell lost its variable:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real message bus: dbus-daemon (a unix socket server with an epoll
/// loop and an audit netlink socket) is dumped and restored; a client
/// (dbus-send) then gets the same answer from the restored bus.
#[test]
fn dbus_daemon_survives() {
    let have = |p: &str| Command::new(p).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !have("dbus-daemon") || !have("dbus-send") {
        eprintln!("skipped: dbus-daemon or dbus-send is not installed (.ci/run installs them)");
        return;
    }
    subreaper();
    let dir = tmpdir("dbus");
    std::fs::create_dir_all(&dir).unwrap();
    let addr = format!("unix:path={}", dir.join("bus").display());
    let mut cmd = Command::new("dbus-daemon");
    cmd.args(["--session", "--nofork", "--address", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut daemon = cmd.spawn().expect("start dbus-daemon");
    let pid = daemon.id() as i32;
    let ask = || {
        Command::new("dbus-send")
            .args(["--session", "--print-reply", "--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.GetId"])
            .env("DBUS_SESSION_BUS_ADDRESS", &addr)
            .output()
            .expect("run dbus-send")
    };
    let t = Instant::now();
    let before = loop {
        let o = ask();
        if o.status.success() {
            break String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the bus does not answer");
        std::thread::sleep(Duration::from_millis(50));
    };
    let d = dir.join("img");
    let d = d.to_str().unwrap();
    let r = crtools(&["dump", "-D", d, "-t", &pid.to_string()]);
    assert!(r.status.success(), "dump: {}", String::from_utf8_lossy(&r.stderr));
    let _ = daemon.wait();
    let r = crtools(&["restore", "-d", "-D", d, "-t", &pid.to_string()]);
    assert!(r.status.success(), "restore: {}", String::from_utf8_lossy(&r.stderr));
    let after = ask();
    kill_reap(pid);
    assert!(after.status.success(), "the restored bus: {}", String::from_utf8_lossy(&after.stderr));
    let id = |s: &str| s.lines().last().unwrap_or("").trim().to_string();
    assert_eq!(id(&String::from_utf8_lossy(&after.stdout)), id(&before), "the bus answers differently");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--action-script`: each script runs at pre-dump and post-dump, then at
/// pre-restore, post-restore and post-resume, with the action, the image
/// directory and the root's pid in its environment; a script that fails
/// post-dump fails the dump (the program runs on, no inventory), one that
/// fails pre-restore fails the restore before anything is created.
#[test]
fn action_scripts_run_at_each_step_and_a_failing_one_fails_it() {
    subreaper();
    let dir = tmpdir("scripts");
    let log = dir.with_extension("log");
    let _ = std::fs::remove_file(&log);
    let script = dir.with_extension("sh");
    std::fs::write(
        &script,
        format!(
            "echo \"$CRTOOLS_SCRIPT_ACTION $CRTOOL_SCRIPT_ACTION $CRTOOLS_INIT_PID $CRTOOLS_IMAGE_DIR\" >> {}\n\
             [ \"$CRTOOLS_SCRIPT_ACTION\" != \"$FAIL_AT\" ]\n",
            log.display()
        ),
    )
    .unwrap();
    let scr = format!("sh {}", script.display());
    let d = dir.to_str().unwrap().to_string();
    let mut child = sleeper("1000");
    let pid = child.id() as i32;
    let pids = pid.to_string();
    let run = |args: &[&str], fail: &str| {
        Command::new(CRTOOLS).args(args).env("FAIL_AT", fail).stdin(Stdio::null()).output().expect("run crtools")
    };
    // Failing at post-dump: the dump fails and the program runs on.
    let out = run(&["dump", "-D", &d, "-t", &pids, "--action-script", &scr], "post-dump");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("post-dump"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(matches!(state(pid), Some('S') | Some('R')), "the program did not run on");
    assert!(!dir.join("inventory.img").exists(), "a failed dump left an inventory");
    let _ = std::fs::remove_dir_all(&dir);
    let out = run(&["dump", "-D", &d, "-t", &pids, "--action-script", &scr], "");
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = child.wait();
    // Failing at pre-restore: nothing is created.
    let out = run(&["restore", "-d", "-D", &d, "-t", &pids, "--action-script", &scr], "pre-restore");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "a failed restore left the task");
    let out = run(&["restore", "-d", "-D", &d, "-t", &pids, "--action-script", &scr], "");
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let alive = matches!(state(pid), Some('S') | Some('R'));
    kill_reap(pid);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&script);
    assert!(alive, "the restored program does not run");
    let steps: Vec<String> = text.lines().map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).collect();
    let want: Vec<String> =
        ["pre-dump", "post-dump", "pre-dump", "post-dump", "pre-restore", "pre-restore", "post-restore", "post-resume"]
            .iter()
            .map(|a| format!("{a} {a} {pid}"))
            .collect();
    assert_eq!(steps, want, "{text}");
    assert!(text.lines().all(|l| l.ends_with(&d)), "image dir: {text}");
}

/// An O_TMPFILE file (MariaDB keeps its temporary files so): its status
/// flags hold O_TMPFILE; it comes back unnamed, with its data and
/// offset, and linkat (AT_SYMLINK_FOLLOW through /proc/self/fd) can
/// still give it a name, as before the dump.
#[test]
fn an_o_tmpfile_file_comes_back_unnamed_and_linkable() {
    subreaper();
    let dir = tmpdir("otmpfile");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let script = format!(
        "import ctypes, os, time\n\
         fd = os.open('{d}', os.O_TMPFILE | os.O_RDWR, 0o640)\n\
         os.write(fd, b'tmpfile-data')\n\
         os.lseek(fd, 3, 0)\n\
         open('{d}/ready', 'w').close()\n\
         while not os.path.exists('{d}/go'):\n\
         \x20   time.sleep(0.05)\n\
         rest = os.read(fd, 100)\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.linkat(-100, b'/proc/self/fd/%d' % fd, -100, b'{d}/named', 0x400)\n\
         assert r == 0, ctypes.get_errno()\n\
         open('{d}/result', 'w').write(rest.decode())\n\
         time.sleep(600)\n"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let Ok(mut child) = cmd.spawn() else {
        eprintln!("skipped: no python3");
        return;
    };
    let pid = child.id() as i32;
    let t = Instant::now();
    while !dir.join("ready").exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "python did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let img = dir.join("img");
    let out = crtools(&["dump", "-D", img.to_str().unwrap(), "-t", &pid.to_string()]);
    if !out.status.success() {
        kill_reap(pid);
        panic!("dump: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = child.wait();
    let out = crtools(&["restore", "-d", "-D", img.to_str().unwrap()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let link = std::fs::read_link(format!("/proc/{pid}/fd/3")).unwrap_or_default();
    std::fs::write(dir.join("go"), "").unwrap();
    let t = Instant::now();
    let result = loop {
        if let Ok(r) = std::fs::read_to_string(dir.join("result")) {
            break r;
        }
        if t.elapsed() > Duration::from_secs(20) {
            kill_reap(pid);
            panic!("the restored python did not answer");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let named = std::fs::read_to_string(dir.join("named")).unwrap_or_default();
    let mode = std::fs::metadata(dir.join("named")).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    kill_reap(pid);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(link.to_string_lossy().ends_with("(deleted)") && link.to_string_lossy().contains("/#"), "{link:?}");
    assert_eq!(result, "file-data", "read from the restored offset");
    assert_eq!(named, "tmpfile-data", "linked by name after restore");
    assert_eq!(mode.unwrap() & 0o7777, 0o640);
}

/// `cat` with its stdin and stdout on pipes this test holds (as a harness
/// does): after dump, kill and restore, the restored cat is on the same two
/// pipes: what it echoed before the dump and the test had not read comes
/// once, and what the test writes after comes back.
#[test]
fn cat_on_the_callers_pipes_keeps_them_after_restore() {
    use std::io::{BufRead, BufReader, Write};
    subreaper();
    let dir = tmpdir("catpipes");
    let d = dir.to_str().unwrap().to_string();
    let mut cmd = Command::new("cat");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().expect("start cat");
    let pid = child.id() as i32;
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    input.write_all(b"one\n").unwrap();
    output.read_line(&mut line).unwrap();
    assert_eq!(line, "one\n");
    // Echoed and not read yet: in flight on stdout at dump.
    input.write_all(b"two\n").unwrap();
    let t = Instant::now();
    let fionread = |fd: i32| {
        let mut n: i32 = 0;
        // SAFETY: FIONREAD writes one int.
        unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
        n
    };
    use std::os::fd::AsRawFd;
    while fionread(output.get_ref().as_raw_fd()) < 4
        || !std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default().contains("pipe")
    {
        assert!(t.elapsed() < Duration::from_secs(10), "cat did not echo and wait for input");
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = crtools(&["dump", "-D", &d, "-t", &pid.to_string()]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = child.wait();
    let out = crtools(&["restore", "-d", "-D", &d]);
    let restored = out.status.success();
    let mut got = String::new();
    if restored {
        input.write_all(b"three\n").unwrap();
        for _ in 0..2 {
            output.read_line(&mut got).unwrap();
        }
    }
    kill_reap(pid);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(restored, "restore: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(got, "two\nthree\n", "cat after restore");
}

/// A task that may open no new descriptor (RLIMIT_NOFILE at its three
/// stdio descriptors, as sshd's pre-auth sandbox does) cannot take the
/// parasite's control socket: the dump fails naming the limit, and the task
/// runs on untraced.
#[test]
fn no_room_for_a_descriptor_is_named() {
    let mut child = sleeper("60");
    let pid = child.id() as i32;
    // Once it runs sleep (the loader opens files).
    let t = Instant::now();
    while state(pid) != Some('S')
        || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n"
    {
        assert!(t.elapsed() < Duration::from_secs(10), "sleep did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let l = libc::rlimit { rlim_cur: 3, rlim_max: 3 };
    // SAFETY: prlimit on our own child with a local struct (lowering needs
    // no privilege).
    assert_eq!(unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &l, std::ptr::null_mut()) }, 0);
    let dir = tmpdir("nofile");
    let out = crtools(&["dump", "-t", &pid.to_string(), "-D", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dumped");
    assert!(err.contains("RLIMIT_NOFILE 3") && err.contains(&pid.to_string()), "{err}");
    assert_eq!(settled_state(pid), Some('S'), "the task does not sleep on");
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(st.contains("TracerPid:\t0\n"), "{st}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// (sid, pgid, ppid) of `pid` from /proc.
fn ids_of(pid: i32) -> Option<(i32, i32, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(3)?.parse().ok()?, f.get(2)?.parse().ok()?, f.get(1)?.parse().ok()?))
}

/// A child forked before its parent's setsid stays in the session (and
/// group) its parent left: restore forks it before the parent's setsid
/// again, and every session, group and parent is as it was.
#[test]
fn a_child_forked_before_its_parents_setsid_keeps_the_old_session() {
    if !have_python3() {
        return;
    }
    subreaper();
    let script = "import os, time\n\
                  a = os.fork()\n\
                  if a == 0:\n    \
                      b = os.fork()\n    \
                      if b == 0:\n        time.sleep(600)\n        os._exit(0)\n    \
                      os.setsid()\n    \
                      print(os.getpid(), b, flush=True)\n    \
                      time.sleep(600)\n    \
                      os._exit(0)\n\
                  time.sleep(600)\n";
    let (mut root, line) = python3_started(script);
    let v: Vec<i32> = line.split_whitespace().map(|w| w.parse().expect("a pid")).collect();
    let (pid, a, b) = (root.id() as i32, v[0], v[1]);
    let before: Vec<_> = [pid, a, b].iter().map(|&p| ids_of(p)).collect();
    assert_eq!(before[2].map(|i| i.0), Some(pid), "the grandchild is not in the root's session: {before:?}");
    assert_eq!(before[1].map(|i| i.0), Some(a), "the child does not lead its session: {before:?}");
    let dir = tmpdir("sessions");
    let out = crtools(&["dump", "-t", &pid.to_string(), "-D", dir.to_str().unwrap()]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = root.wait();
    for p in [a, b] {
        // SAFETY: reaping the killed tasks, re-parented to this subreaper.
        unsafe { libc::waitpid(p, std::ptr::null_mut(), 0) };
    }
    let out = crtools(&["restore", "-d", "-D", dir.to_str().unwrap()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let after: Vec<_> = [pid, a, b].iter().map(|&p| ids_of(p)).collect();
    for p in [b, a, pid] {
        kill_reap(p);
    }
    assert_eq!(after, before, "sessions, groups and parents (root, child, grandchild)");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An orphan its session's leader left behind, adopted by the tree's root
/// (a subreaper): a daemon's double fork under a supervisor. Restore makes
/// the session again through a helper with the leader's pid, which forks
/// the orphan and exits, and the orphan comes back to the root in its
/// session and group.
#[test]
fn an_orphan_adopted_by_a_subreaper_keeps_its_dead_leaders_session() {
    if !have_python3() {
        return;
    }
    subreaper();
    let script = "import ctypes, os, time\n\
                  ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n\
                  r, w = os.pipe()\n\
                  a = os.fork()\n\
                  if a == 0:\n    \
                      os.setsid()\n    \
                      b = os.fork()\n    \
                      if b == 0:\n        time.sleep(600)\n        os._exit(0)\n    \
                      os.write(w, str(b).encode())\n    \
                      os._exit(0)\n\
                  os.waitpid(a, 0)\n\
                  print(a, os.read(r, 32).decode(), flush=True)\n\
                  time.sleep(600)\n";
    let (mut root, line) = python3_started(script);
    let v: Vec<i32> = line.split_whitespace().map(|w| w.parse().expect("a pid")).collect();
    let (pid, a, b) = (root.id() as i32, v[0], v[1]);
    let before = ids_of(b);
    assert_eq!(before, Some((a, a, pid)), "the orphan: (sid, pgid, ppid)");
    let dir = tmpdir("sessions-adopted");
    let out = crtools(&["dump", "-t", &pid.to_string(), "-D", dir.to_str().unwrap()]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = root.wait();
    // SAFETY: reaping the killed orphan, re-parented to this subreaper.
    unsafe { libc::waitpid(b, std::ptr::null_mut(), 0) };
    let out = crtools(&["restore", "-d", "-D", dir.to_str().unwrap()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let after = ids_of(b);
    let helper_gone = state(a).is_none();
    for p in [b, pid] {
        kill_reap(p);
    }
    assert_eq!(after, before, "the orphan's session, group and parent after restore");
    assert!(helper_gone, "the session helper {a} is still there");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One end of a datagram socketpair whose other end closed after sending:
/// what it sent is still queued after restore, and sending back fails as
/// it did (the peer is gone).
#[test]
fn datagram_pair_with_a_closed_end_keeps_its_queue() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("dgram-closed");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import socket, signal, time, os\n\
         a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         b.send(b'hello'); b.send(b'world'); b.close()\n\
         def go(*_):\n    \
             got = [a.recv(100), a.recv(100)]\n    \
             a.setblocking(False)\n    \
             try:\n        a.recv(100); more = 'more'\n    \
             except BlockingIOError:\n        more = 'empty'\n    \
             try:\n        a.send(b'x'); sent = 'sent'\n    \
             except OSError as e:\n        sent = type(e).__name__\n    \
             open('{}', 'w').write(b' '.join(got).decode() + ' ' + more + ' ' + sent)\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "hello world empty ConnectionRefusedError");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A chrooted process (its executable outside the new root) comes back
/// chrooted, in the same root, with the same working directory inside it.
#[test]
fn chrooted_process_survives() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("chroot");
    std::fs::create_dir_all(dir.join("jail/inside")).unwrap();
    std::fs::write(dir.join("jail/marker"), "in the jail").unwrap();
    let out = dir.join("got");
    let script = format!(
        "import os, signal, time\n\
         out = os.open('{}', os.O_WRONLY | os.O_CREAT, 0o600)\n\
         os.chroot('{}'); os.chdir('/inside')\n\
         def go(*_):\n    \
             os.write(out, (os.getcwd() + ' ' + open('/marker').read()).encode())\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display(),
        dir.join("jail").display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(root, dir.join("jail"));
    assert_eq!(got, "/inside in the jail");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A working directory that was the /proc directory of a task that has
/// exited cannot be made again: refused at dump, naming it, and the task
/// runs on (the restore used to fail making /proc/PID).
#[test]
fn a_working_directory_in_proc_of_a_dead_task_is_refused_at_dump() {
    if !have_python3() {
        return;
    }
    let script = "import os, time\n\
                  c = os.fork()\n\
                  if c == 0:\n    time.sleep(600)\n    os._exit(0)\n\
                  os.chdir('/proc/%d' % c)\n\
                  os.kill(c, 9)\n\
                  os.waitpid(c, 0)\n\
                  print(c, flush=True)\n\
                  time.sleep(600)\n";
    let dir = tmpdir("proccwd");
    let DumpOf { line, code, err, alive } = dump_of_python3(script, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let gone: i32 = line.trim().parse().expect("the dead child's pid");
    assert_eq!(code, Some(3), "not refused: {err}");
    assert!(err.contains(&format!("/proc/{gone}")) && err.contains("working directory"), "{err}");
    assert_eq!(alive, Some('S'), "the task does not sleep on");
}

/// A dumped task that led a session (or group) another process, outside
/// the tree, is still in: its pid cannot be made again while that process
/// lives. A dump that kills the tree refuses it (see below); after `-s`
/// and the tree killed by hand, the restore says so at once, naming both,
/// instead of a bare fork failure after seconds.
#[test]
fn a_pid_kept_as_a_group_id_outside_the_tree_is_named_at_restore() {
    if !have_python3() {
        return;
    }
    subreaper();
    // root -> c (leads group c) -> h -> g; h exits: g, in group c, is
    // re-parented to this test, out of root's tree. Dumped once c has
    // reaped h (a zombie h would be in the tree, and after the kill below
    // a zombie of this test that nobody reaps, holding its pid).
    let script = "import os, time\n\
                  r, w = os.pipe()\n\
                  c = os.fork()\n\
                  if c == 0:\n    \
                      os.setpgid(0, 0)\n    \
                      h = os.fork()\n    \
                      if h == 0:\n        \
                          g = os.fork()\n        \
                          if g == 0:\n            time.sleep(600)\n            os._exit(0)\n        \
                          os.write(w, b'%d\\n' % g)\n        \
                          os._exit(0)\n    \
                      os.waitpid(h, 0)\n    \
                      os.write(w, b'reaped\\n')\n    \
                      time.sleep(600)\n    \
                      os._exit(0)\n\
                  data = b''\n\
                  while data.count(b'\\n') < 2:\n    \
                      data += os.read(r, 64)\n\
                  g = int(data.split()[0])\n\
                  os.close(r); os.close(w)\n\
                  print(c, g, flush=True)\n\
                  time.sleep(600)\n";
    let (mut root, line) = python3_started(script);
    let mut it = line.split_whitespace().map(|p| p.parse::<i32>().expect("pids"));
    let (c, g) = (it.next().unwrap(), it.next().unwrap());
    let pid = root.id() as i32;
    let dir = tmpdir("heldpgid");
    let img = dir.to_str().unwrap();
    let out = crtools(&["dump", "-s", "-t", &pid.to_string(), "-D", img]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    for p in [pid, c] {
        // SAFETY: killing the tree this test started, left stopped by -s.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let _ = root.wait();
    // c is reaped by this test (its subreaper) once root is gone.
    let t = Instant::now();
    while state(c).is_some() {
        // SAFETY: reaping children re-parented to this test.
        unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        assert!(t.elapsed() < Duration::from_secs(10), "{c} is not gone");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = crtools(&["restore", "-d", "-D", img]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restored");
    // g is in root's session too: root, forked first, is the one named.
    assert!(
        err.contains(&format!("process {g}")) && err.contains(&format!("session {pid}")),
        "root {pid}, c {c}, g {g}: {err}"
    );
    assert!(state(pid).is_none(), "a restored task is left");
    kill_reap(g);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two datagram sockets bound to abstract names, each sent (in flight) to
/// the other and to itself: after the dump the dead tree's sockets hold
/// each other, and only the kernel's collector of in-flight descriptors
/// frees their names. The restore sets it off and binds them again; the
/// descriptors in flight come out with their names.
#[test]
fn abstract_sockets_in_flight_in_a_cycle_are_restored() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("scm-cycle");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let tag = std::process::id();
    let script = format!(
        "import socket, signal, time\n\
         p = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         for i in range(2):\n    p[i].bind('\\0crtools-cycle-{tag}-%d' % i)\n\
         for i in range(2):\n    \
             for j in range(2):\n        socket.send_fds(p[i], [b'x'], [p[j].fileno()])\n\
         def go(*_):\n    \
             names = []\n    \
             for s in (p[1], p[0]):\n        \
                 for k in range(2):\n            \
                     _, fds, _, _ = socket.recv_fds(s, 10, 1)\n            \
                     t = socket.socket(fileno=fds[0])\n            \
                     names.append(t.getsockname()[1:].decode())\n    \
             open('{}', 'w').write(' '.join(names))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    let want = (0..4).map(|k| format!("crtools-cycle-{tag}-{}", k % 2)).collect::<Vec<_>>().join(" ");
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Unix sockets whose files were unlinked, with their names taken since:
/// a datagram server whose name is a FIFO now (its client connected, a
/// datagram queued), a listener bound to the name another listener holds
/// now, an accepted connection whose listener closed and was unlinked.
/// After restore each is reached as before, the FIFO and the other
/// listener keep the name, and no socket file is left behind. A socket
/// whose directory was removed too is reached, and the directory stays
/// removed.
#[test]
fn unlinked_unix_sockets_whose_names_were_taken_since() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("unix-taken");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let d = dir.display();
    let script = format!(
        "import socket, signal, time, os, stat\n\
         U = socket.AF_UNIX\n\
         p1, p2, p3 = '{d}/s1', '{d}/s2', '{d}/s3'\n\
         srv = socket.socket(U, socket.SOCK_DGRAM); srv.bind(p1)\n\
         cli = socket.socket(U, socket.SOCK_DGRAM); cli.connect(p1)\n\
         os.unlink(p1); os.mkfifo(p1); fifo = os.open(p1, os.O_RDWR)\n\
         cli.send(b'one')\n\
         l1 = socket.socket(U); l1.bind(p2); l1.listen()\n\
         os.rename(p2, p2 + '.t')\n\
         l2 = socket.socket(U); l2.bind(p2); l2.listen()\n\
         os.rename(p2 + '.t', p2)\n\
         l3 = socket.socket(U); l3.bind(p3); l3.listen()\n\
         c3 = socket.socket(U); c3.connect(p3); a3, _ = l3.accept(); l3.close(); os.unlink(p3)\n\
         os.mkdir('{d}/sub'); p4 = '{d}/sub/s4'\n\
         s4 = socket.socket(U, socket.SOCK_DGRAM); s4.bind(p4)\n\
         c4 = socket.socket(U, socket.SOCK_DGRAM); c4.connect(p4); os.unlink(p4); os.rmdir('{d}/sub')\n\
         def go(*_):\n    \
             r = []\n    \
             cli.send(b'two')\n    \
             r += [srv.recv(10).decode(), srv.recv(10).decode(), srv.getsockname()]\n    \
             r.append(stat.S_ISFIFO(os.stat(p1).st_mode))\n    \
             os.write(fifo, b'f'); r.append(os.read(fifo, 1).decode())\n    \
             c = socket.socket(U); c.connect(p2); l1.accept(); r.append('l1')\n    \
             r.append(l2.getsockname())\n    \
             c3.send(b'3'); r.append(a3.recv(1).decode()); r.append(os.path.exists(p3))\n    \
             c4.send(b'4'); r.append(s4.recv(1).decode() + s4.getsockname())\n    \
             r.append(sorted(os.listdir('{d}')))\n    \
             open('{}', 'w').write(' '.join(map(str, r)))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    let want = format!("one two {d}/s1 True f l1 {d}/s2 3 False 4{d}/sub/s4 ['img', 's1', 's2']");
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A task of the tree traced by another process (here its parent, as a
/// debugger would) cannot be seized: the dump says who traces it, and
/// both run on.
#[test]
fn a_traced_task_is_named_with_its_tracer() {
    if !have_python3() {
        return;
    }
    let script = "import os, ctypes, time, signal\n\
                  libc = ctypes.CDLL(None)\n\
                  c = os.fork()\n\
                  if c == 0:\n    \
                      libc.ptrace(0, 0, 0, 0)\n    \
                      os.kill(os.getpid(), signal.SIGSTOP)\n    \
                      time.sleep(600)\n    \
                      os._exit(0)\n\
                  os.waitpid(c, os.WUNTRACED)\n\
                  libc.ptrace(7, c, 0, 0)\n\
                  print(c, flush=True)\n\
                  time.sleep(600)\n";
    let (mut root, line) = python3_started(script);
    let c: i32 = line.trim().parse().expect("the child's pid");
    let pid = root.id() as i32;
    let dir = tmpdir("traced");
    let out = crtools(&["dump", "-t", &pid.to_string(), "-D", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    // A refusal (exit code 3): a traced task is a state crtools does not checkpoint.
    assert_eq!(out.status.code(), Some(3), "not refused: {err}");
    assert!(err.contains(&format!("traced by process {pid}")) && err.contains(&c.to_string()), "{err}");
    for p in [pid, c] {
        assert_eq!(settled_state(p), Some('S'), "{p} does not sleep on");
    }
    kill_reap(c);
    let _ = root.kill();
    let _ = root.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Descriptors open on the task's own namespaces (/proc/self/ns/net, uts,
/// pid, user) come back open on the same namespaces (zdtm proc-self).
#[test]
fn descriptors_on_its_own_namespaces_survive() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("nsfd");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import os, signal, time\n\
         kinds = ['net', 'uts', 'pid', 'user']\n\
         fds = [os.open('/proc/self/ns/' + k, os.O_RDONLY) for k in kinds]\n\
         def go(*_):\n    \
             r = [os.fstat(f).st_ino == os.stat('/proc/self/ns/' + k).st_ino for f, k in zip(fds, kinds)]\n    \
             open('{}', 'w').write(' '.join(map(str, r)))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "True True True True");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A symbolic link opened with O_PATH|O_NOFOLLOW and then removed comes
/// back open on a removed link with the same target (zdtm symlink01).
#[test]
fn a_removed_symbolic_link_open_with_o_path_comes_back() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("symlink");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let d = dir.display();
    let script = format!(
        "import os, signal, time, stat\n\
         os.symlink('/some/where/else', '{d}/link')\n\
         fd = os.open('{d}/link', os.O_PATH | os.O_NOFOLLOW)\n\
         os.unlink('{d}/link')\n\
         def go(*_):\n    \
             st = os.stat(fd)\n    \
             r = [stat.S_ISLNK(st.st_mode), st.st_size, st.st_nlink, os.path.lexists('{d}/link')]\n    \
             open('{}', 'w').write(' '.join(map(str, r)))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "True 16 0 False");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An unlinked file reached through a read-only mount could not be made
/// again there at restore: refused at dump, naming it, the task left
/// running (zdtm ghost_on_rofs).
#[test]
fn an_unlinked_file_on_a_read_only_mount_is_refused_at_dump() {
    if !have_python3() {
        return;
    }
    let dir = tmpdir("rofs");
    let (rw, ro) = (dir.join("rw"), dir.join("ro"));
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    let mount = |args: &[&str]| Command::new("mount").args(args).status().is_ok_and(|s| s.success());
    let (rws, ros) = (rw.to_str().unwrap(), ro.to_str().unwrap());
    if !mount(&["-t", "tmpfs", "crtools-test", rws]) {
        eprintln!("skipped: cannot mount a tmpfs");
        return;
    }
    // The same file system again, read-only.
    let bound = mount(&["--bind", rws, ros]) && mount(&["-o", "remount,bind,ro", ros]);
    std::fs::write(rw.join("f"), "data").unwrap();
    let script = format!(
        "import os, time\n\
         fd = os.open('{ro}/f', os.O_RDONLY)\n\
         os.unlink('{rw}/f')\n\
         print('ready', flush=True)\n\
         time.sleep(600)\n",
        ro = ro.display(),
        rw = rw.display()
    );
    let DumpOf { line, code, err, alive } = dump_of_python3(&script, &dir.join("img"));
    let _ = Command::new("umount").arg(&ro).status();
    let _ = Command::new("umount").arg(&rw).status();
    assert!(bound, "bind-mount read-only");
    assert_eq!(line.trim(), "ready");
    assert_eq!(code, Some(3), "not refused: {err}");
    assert!(err.contains(&format!("{}/f", ro.display())) && err.contains("read-only"), "{err}");
    assert_eq!(alive, Some('S'), "the task does not sleep on");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two TCP listeners sharing a port through SO_REUSEPORT, one of which
/// cleared the option afterwards (it stays in the group): both come back
/// listening on that port with their options, and take its connections
/// between them (zdtm socket-tcp-reuseport).
#[test]
fn a_reuseport_group_comes_back_with_a_member_that_cleared_the_option() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("reuseport");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import socket, signal, time\n\
         S, R = socket.SOL_SOCKET, socket.SO_REUSEPORT\n\
         def lst(port):\n    \
             s = socket.socket(); s.setsockopt(S, R, 1); s.bind(('127.0.0.1', port)); s.listen(16); return s\n\
         a = lst(0); port = a.getsockname()[1]; b = lst(port)\n\
         a.setsockopt(S, R, 0)\n\
         def go(*_):\n    \
             r = [a.getsockopt(S, R), b.getsockopt(S, R), a.getsockname()[1] == port == b.getsockname()[1]]\n    \
             cs = [socket.create_connection(('127.0.0.1', port)) for i in range(8)]\n    \
             time.sleep(0.2)\n    \
             n = 0\n    \
             for s in (a, b):\n        \
                 s.setblocking(False)\n        \
                 while True:\n            \
                     try:\n                s.accept(); n += 1\n            \
                     except BlockingIOError:\n                break\n    \
             r.append(n)\n    \
             open('{}', 'w').write(' '.join(map(str, r)))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "0 1 True 8");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loopback TCP connection with more than 16 MiB queued in its buffers
/// (larger than an image record was allowed to be; zdtm socket-tcpbuf-local)
/// is dumped with --tcp-established and every byte read after restore.
#[test]
fn a_tcp_connection_with_tens_of_megabytes_queued_survives() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("tcpbig");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import socket, signal, time, hashlib\n\
         l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)\n\
         c = socket.socket()\n\
         for s in (c, l):\n    \
             s.setsockopt(socket.SOL_SOCKET, 32, 16 << 20); s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)\n\
         c.connect(l.getsockname()); a, _ = l.accept(); l.close()\n\
         data = bytes((i * 7 + i // 4096) & 255 for i in range(1 << 20)) * 24\n\
         c.setblocking(False)\n\
         sent = 0\n\
         while sent < len(data):\n    \
             try:\n        sent += c.send(data[sent:sent + (1 << 20)])\n    \
             except BlockingIOError:\n        break\n\
         time.sleep(0.3)\n\
         def go(*_):\n    \
             got = bytearray()\n    \
             a.settimeout(2)\n    \
             while len(got) < sent:\n        \
                 b = a.recv(1 << 20)\n        \
                 if not b: break\n        \
                 got += b\n    \
             ok = bytes(got) == data[:sent]\n    \
             open('{}', 'w').write('%s %s' % (sent > (16 << 20), ok))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let (mut child, line) = python3_started(&script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let img = dir.join("img");
    let o = crtools(&["dump", "--tcp-established", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    if !o.status.success() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("dump: {}", String::from_utf8_lossy(&o.stderr));
    }
    let _ = child.wait();
    let o = crtools(&["restore", "--tcp-established", "-d", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "True True");
    let _ = std::fs::remove_dir_all(&dir);
}

/// NUMA memory policies come back: the task's own (with a flag), one
/// set with mbind on two pages of a mapping (its neighbours keep the
/// default), another thread's own (a silent difference before: all came
/// back with the default policy).
#[test]
fn numa_memory_policies_survive() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("numa");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import ctypes, mmap, time, threading, signal\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         mask = ctypes.c_ulong(1)\n\
         def getpol(addr=None):\n    \
             mode, m = ctypes.c_int(), ctypes.c_ulong(0)\n    \
             a, f = (None, 0) if addr is None else (ctypes.c_void_p(addr), 2)\n    \
             assert libc.syscall(239, ctypes.byref(mode), ctypes.byref(m), 64, a, f) == 0\n    \
             return (mode.value, m.value)\n\
         assert libc.syscall(238, 3 | (1 << 15), ctypes.byref(mask), 2) == 0\n\
         m = mmap.mmap(-1, 1 << 20)\n\
         a = ctypes.addressof(ctypes.c_char.from_buffer(m))\n\
         assert libc.syscall(237, ctypes.c_void_p(a + 4096), 8192, 2, ctypes.byref(mask), 2, 0) == 0\n\
         m[0:5] = b'hello'\n\
         tpol, ev, ready = [], threading.Event(), threading.Event()\n\
         def t():\n    \
             assert libc.syscall(238, 1, ctypes.byref(mask), 2) == 0\n    \
             ready.set(); ev.wait(); tpol.append(getpol()); time.sleep(600)\n\
         threading.Thread(target=t, daemon=True).start(); ready.wait()\n\
         def go(*_):\n    \
             ev.set()\n    \
             while not tpol: time.sleep(0.01)\n    \
             r = [getpol(), getpol(a), getpol(a + 4096), getpol(a + 3 * 4096), tpol[0], m[0:5]]\n    \
             open('{}', 'w').write(repr(r))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    // MPOL_INTERLEAVE|MPOL_F_STATIC_NODES, default, MPOL_BIND, default,
    // MPOL_PREFERRED, all on node 0.
    assert_eq!(got, "[(32771, 1), (0, 0), (2, 1), (0, 0), (1, 1), b'hello']");
    let _ = std::fs::remove_dir_all(&dir);
}

/// pidfds of children that have exited and been reaped (two of one child,
/// one of another) come back as pidfds of reaped tasks: no pid in their
/// fdinfo, signals fail with ESRCH, the same task's two still name one
/// task and the other another (zdtm pidfd_dead, pidfd_diffdead).
#[test]
fn pidfds_of_reaped_children_come_back() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("deadpidfd");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import os, signal, time\n\
         def child():\n    \
             c = os.fork()\n    \
             if c == 0:\n        time.sleep(600); os._exit(0)\n    \
             return c\n\
         a, b = child(), child()\n\
         fa1, fa2, fb = os.pidfd_open(a), os.pidfd_open(a), os.pidfd_open(b, os.O_NONBLOCK)\n\
         for c in (a, b):\n    os.kill(c, 9); os.waitpid(c, 0)\n\
         def go(*_):\n    \
             r = []\n    \
             for f in (fa1, fa2, fb):\n        \
                 info = open('/proc/self/fdinfo/%d' % f).read()\n        \
                 r.append([l for l in info.splitlines() if l.startswith('Pid:')][0].split()[1])\n        \
                 try:\n            signal.pidfd_send_signal(f, 0); r.append('sent')\n        \
                 except ProcessLookupError:\n            r.append('ESRCH')\n    \
             ino = [os.fstat(f).st_ino for f in (fa1, fa2, fb)]\n    \
             r += [ino[0] == ino[1], ino[0] != ino[2], bool(os.get_blocking(fb))]\n    \
             open('{}', 'w').write(' '.join(map(str, r)))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "-1 ESRCH -1 ESRCH -1 ESRCH True True False");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With kernel.shm_rmid_forced set (a segment goes as soon as nothing is
/// attached to it), a SysV shared memory segment the task has attached
/// comes back with its contents: the engine holds an attachment of its
/// own until the tree has attached it (the restore failed with IPC_SET:
/// EINVAL, the segment gone once filled).
#[test]
fn sysv_shared_memory_survives_with_shm_rmid_forced() {
    if !have_python3() {
        return;
    }
    const KNOB: &str = "/proc/sys/kernel/shm_rmid_forced";
    struct Knob(String);
    impl Drop for Knob {
        fn drop(&mut self) {
            let _ = std::fs::write(KNOB, &self.0);
        }
    }
    let Ok(old) = std::fs::read_to_string(KNOB) else { return };
    let _knob = Knob(old.trim().to_string());
    if std::fs::write(KNOB, "1").is_err() {
        eprintln!("skipped: cannot set {KNOB}");
        return;
    }
    subreaper();
    let dir = tmpdir("shmrmid");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import ctypes, signal, time\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         libc.shmat.restype = ctypes.c_void_p\n\
         i = libc.shmget(0, 8192, 0o1600)\n\
         p = libc.shmat(i, None, 0)\n\
         ctypes.memmove(p + 4096, b'segment data', 12)\n\
         def go(*_):\n    \
             open('{}', 'w').write(ctypes.string_at(p + 4096, 12).decode())\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "segment data");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tracer_of(pid: i32) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("TracerPid:")).unwrap_or("?").trim().to_string()
}

/// crtools told to stop (SIGINT, SIGTERM, SIGHUP) in the middle of a dump
/// ends it as a failure: the victim runs on untraced with its memory map
/// as it was, and no image is left; in the middle of a restore, nothing
/// it created is left, and the images still restore. The signal is sent
/// by crtools to itself at a chosen step (CRTOOLS_FAULT with
/// CRTOOLS_FAULT_SIGNAL): the handler's path, at known places.
#[test]
fn a_stop_signal_ends_a_dump_or_restore_as_a_failure() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("stopsig");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("answer");
    let script = format!(
        "import signal, sys, time, zlib\n\
         data = bytearray((i * 7) & 0xff for i in range(8 << 20))\n\
         want = zlib.crc32(data)\n\
         def ask(*_):\n    open('{}', 'w').write('ok' if zlib.crc32(data) == want else 'bad')\n\
         signal.signal(signal.SIGUSR1, ask)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let (mut child, line) = python3_started(&script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let img = dir.join("img");
    let maps = || std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let before = maps();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(CRTOOLS);
        cmd.args(args).envs(env.iter().copied()).stdin(Stdio::null());
        // crtools leaves an ignored stop signal ignored (nohup, a
        // background job): these runs must not inherit that from the
        // harness.
        // SAFETY: signal() is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                    libc::signal(s, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        cmd.output().expect("run crtools")
    };
    let pid_s = pid.to_string();
    for (point, sig, name) in [
        ("dump-seize", "2", "SIGINT"),
        ("dump-parasite-cmd:3", "15", "SIGTERM"),
        ("dump-page-batch", "1", "SIGHUP"),
        ("dump-before-inventory", "15", "SIGTERM"),
        ("dump-kill", "2", "SIGINT"),
    ] {
        let o = run(
            &[("CRTOOLS_FAULT", point), ("CRTOOLS_FAULT_SIGNAL", sig)],
            &["dump", "-t", &pid_s, "-D", img.to_str().unwrap()],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{point}: {err}");
        assert!(err.contains(&format!("interrupted by {name}")), "{point}: {err}");
        assert!(matches!(state(pid), Some('S') | Some('R')), "{point}: the victim is {:?}", state(pid));
        assert_eq!(tracer_of(pid), "0", "{point}: the victim is still traced");
        assert_eq!(maps(), before, "{point}: the victim's memory map changed");
        let left: Vec<_> = std::fs::read_dir(&img)
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(left.iter().all(|n| !n.ends_with(".img")), "{point}: images left behind: {left:?}");
    }
    let o = crtools(&["dump", "-t", &pid_s, "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    for (point, sig, name) in [
        ("restore-images-read", "15", "SIGTERM"),
        ("restore-plans", "2", "SIGINT"),
        ("restore-at-traps", "15", "SIGTERM"),
    ] {
        let o = run(
            &[("CRTOOLS_FAULT", point), ("CRTOOLS_FAULT_SIGNAL", sig)],
            &["restore", "-d", "-D", img.to_str().unwrap()],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{point}: {err}");
        assert!(err.contains(&format!("interrupted by {name}")), "{point}: {err}");
        let t = Instant::now();
        while state(pid).is_some() && t.elapsed() < Duration::from_secs(10) {
            // SAFETY: reaping a task of this test's, if it re-parented here.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(state(pid), None, "{point}: a half-restored task is left");
    }
    let o = crtools(&["restore", "-d", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let answer = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(answer, "ok", "the restored victim's memory");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Images a dump killed before it could take them back left behind (no
/// inventory) do not keep the next dump out of the directory: they are
/// removed, and nothing else there is touched.
#[test]
fn leftovers_of_a_killed_dump_make_way_for_the_next() {
    subreaper();
    let dir = tmpdir("leftovers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("core-999999.img"), b"half written").unwrap();
    std::fs::write(dir.join("inventory.img.tmp"), b"half written").unwrap();
    std::fs::write(dir.join("notes.txt"), b"the user's").unwrap();
    let mut child = sleeper("1000");
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(200));
    let out = crtools(&["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    let _ = child.wait();
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.join("core-999999.img").exists() && !dir.join("inventory.img.tmp").exists());
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"the user's");
    let out = crtools(&["restore", "-d", "-D", dir.to_str().unwrap()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    kill_reap(pid);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process outside the tree still in a session (or group) a task of the
/// tree leads keeps that task's pid taken: restore could not make the task
/// again, so a dump that would kill the tree is refused by name and the
/// tree runs on (before, the dump killed it and the restore failed).
#[test]
fn a_group_member_outside_the_tree_is_refused_at_dump() {
    if !have_python3() {
        return;
    }
    subreaper();
    // The root's grandchild outlives its parent and is adopted by this test
    // (a subreaper): it is outside the root's tree, in the root's session.
    let script = "import os, time\n\
                  r, w = os.pipe()\n\
                  a = os.fork()\n\
                  if a == 0:\n    \
                      b = os.fork()\n    \
                      if b == 0:\n        time.sleep(600)\n        os._exit(0)\n    \
                      os.write(w, str(b).encode())\n    \
                      os._exit(0)\n\
                  os.waitpid(a, 0)\n\
                  print(os.read(r, 32).decode(), flush=True)\n\
                  time.sleep(600)\n";
    let (mut root, line) = python3_started(script);
    let b: i32 = line.trim().parse().expect("the grandchild's pid");
    let pid = root.id() as i32;
    assert_eq!(ids_of(b).map(|i| i.0), Some(pid), "the orphan is not in the root's session");
    let dir = tmpdir("outside-member");
    let out = crtools(&["dump", "-t", &pid.to_string(), "-D", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "not refused: {err}");
    assert!(err.contains(&b.to_string()) && err.contains(&pid.to_string()), "{err}");
    assert_eq!(settled_state(pid), Some('S'), "the root does not sleep on");
    assert!(!dir.join("inventory.img").exists());
    for p in [b, pid] {
        kill_reap(p);
    }
    let _ = root.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A POSIX named semaphore stays the one its name leads to: glibc's
/// sem_open maps a temporary file it links as sem.NAME and then unlinks,
/// so the mapping shows a deleted file that is still linked. It was copied
/// as a ghost file: after restore a sem_post by name no longer reached the
/// holder (python's forkserver pools deadlocked).
#[test]
fn a_named_semaphore_stays_shared_with_its_name() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("namedsem");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let name = format!("/crtools-test-sem-{}", std::process::id());
    let lib = "import ctypes\n\
               libc = ctypes.CDLL('libc.so.6', use_errno=True)\n\
               libc.sem_open.restype = ctypes.c_void_p\n\
               libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_uint]\n\
               libc.sem_post.argtypes = [ctypes.c_void_p]\n\
               libc.sem_getvalue.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]\n";
    let script = format!(
        "{lib}import os, signal, time\n\
         s = libc.sem_open(b'{name}', os.O_CREAT | os.O_EXCL, 0o600, 2)\n\
         assert s not in (None, ctypes.c_void_p(-1).value)\n\
         deleted = [l for l in open('/proc/self/maps') if 'sem.' in l and '(deleted)' in l]\n\
         assert deleted, 'glibc maps the semaphore by another name'\n\
         def go(*_):\n    \
             v = ctypes.c_int()\n    \
             libc.sem_getvalue(s, ctypes.byref(v))\n    \
             open('{}', 'w').write(str(v.value))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let post = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "{lib}s = libc.sem_open(b'{name}', 0, 0, 0)\nassert s not in (None, ctypes.c_void_p(-1).value)\n\
             assert libc.sem_post(s) == 0\n"
        ))
        .status()
        .unwrap();
    let got = ask(pid, &out);
    kill_reap(pid);
    let _ = std::fs::remove_file(format!("/dev/shm/sem.{}", &name[1..]));
    assert!(post.success(), "sem_post by name");
    assert_eq!(got, "3", "the holder no longer sees posts made through the semaphore's name");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process with an io_uring SQPOLL ring has a kernel thread (iou-sqp)
/// among its threads that never stops for a tracer: the dump waited for it
/// for ever, the tree frozen. It is refused by name before anything is
/// seized, and the task runs on untouched.
#[test]
fn an_io_uring_kernel_thread_is_refused_before_the_seize() {
    if !have_python3() {
        return;
    }
    let script = "import ctypes, os, time\n\
                  libc = ctypes.CDLL(None, use_errno=True)\n\
                  p = (ctypes.c_uint32 * 30)()\n\
                  p[2] = 2\n\
                  fd = libc.syscall(425, 8, p)\n\
                  if fd < 0: print('no io_uring:', os.strerror(ctypes.get_errno()), flush=True); time.sleep(600)\n\
                  while not any(open('/proc/self/task/%s/comm' % t).read().startswith('iou-sqp') \
                                for t in os.listdir('/proc/self/task')): time.sleep(0.01)\n\
                  print('ready', flush=True)\n\
                  time.sleep(600)\n";
    let (mut child, line) = python3_started(script);
    let pid = child.id() as i32;
    if line.starts_with("no io_uring") {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("skipped: {}", line.trim());
        return;
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let dir = tmpdir("sqpoll");
    let t = Instant::now();
    let out = Command::new(CRTOOLS)
        .args(["dump", "-t", &pid.to_string(), "-D", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    let alive = settled_state(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let maps_after = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(line.trim(), "ready");
    assert_eq!(out.status.code(), Some(3), "not refused ({took:?}): {err}");
    assert!(err.contains("iou-sqp") && err.contains("io_uring"), "{err}");
    assert_eq!(alive, Some('S'), "the task does not sleep on");
    assert!(status.contains("TracerPid:\t0\n"), "{status}");
    assert_eq!(maps, maps_after, "the task's mappings changed");
}

/// The parent-death signal of a child running as another user comes back
/// (the restorer set it before the credentials, whose change clears it:
/// zdtm pdeath_sig).
#[test]
fn the_parent_death_signal_of_another_user_survives() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("pdeathsig");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import ctypes, os, signal, time\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         r, w = os.pipe()\n\
         c = os.fork()\n\
         if c == 0:\n    \
             os.close(r)\n    \
             os.setgid(65534); os.setuid(65534)\n    \
             assert libc.prctl(1, 15, 0, 0, 0) == 0\n    \
             def h(*_):\n        \
                 v = ctypes.c_int()\n        \
                 libc.prctl(2, ctypes.byref(v), 0, 0, 0)\n        \
                 os._exit(v.value)\n    \
             signal.signal(signal.SIGUSR2, h)\n    \
             os.write(w, b'x')\n    \
             while True: time.sleep(1)\n\
         os.close(w)\n\
         os.read(r, 1)\n\
         def go(*_):\n    \
             os.kill(c, signal.SIGUSR2)\n    \
             _, st = os.waitpid(c, 0)\n    \
             open('{}', 'w').write(str(os.WEXITSTATUS(st)))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print(c, flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let (mut root, line) = python3_started(&script);
    let c: i32 = line.trim().parse().expect("the child's pid");
    let pid = root.id() as i32;
    let img = dir.join("img");
    let o = crtools(&["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = root.wait();
    // SAFETY: reaping the killed child, re-parented to us.
    unsafe { libc::waitpid(c, std::ptr::null_mut(), 0) };
    let o = crtools(&["restore", "-d", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let got = ask(pid, &out);
    kill_reap(pid);
    if got != "15" {
        // Its parent-death signal did not end it: not ours to leave.
        // SAFETY: killing the restored child (re-parented to us) by pid.
        unsafe { libc::kill(c, libc::SIGKILL) };
    }
    // SAFETY: reaping that child.
    unsafe { libc::waitpid(c, std::ptr::null_mut(), 0) };
    assert_eq!(got, "15", "the child's parent-death signal");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Datagrams queued on UDP sockets (IPv4 and IPv6) from clients that still
/// hold their ports, waiting for an answer: the restore sent each again
/// from a socket bound to its sender's address, which failed while the
/// client held it (a DNS server under load could not be restored). They
/// are forged from that address now: same data (a big one too), same
/// sender. A UDP-Lite one too (the dump took it, and the restore failed).
#[test]
fn udp_datagrams_from_senders_that_hold_their_ports_come_back() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("udpheld");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import hashlib, os, signal, socket, time\n\
         a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         a.bind(('127.0.0.1', 0))\n\
         a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)\n\
         b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
         b.bind(('::1', 0))\n\
         c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136)\n\
         c.bind(('127.0.0.1', 0))\n\
         def go(*_):\n    \
             r = []\n    \
             for s in (a, b, c):\n        \
                 s.setblocking(False)\n        \
                 while True:\n            \
                     try: d, f = s.recvfrom(70000)\n            \
                     except BlockingIOError: break\n            \
                     r.append((len(d), hashlib.sha256(d).hexdigest()[:12], f[1]))\n    \
             open('{}', 'w').write(repr(r))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', a.getsockname()[1], b.getsockname()[1], c.getsockname()[1], flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let (mut child, line) = python3_started(&script);
    let ports: Vec<u16> = line.split_whitespace().skip(1).map(|p| p.parse().unwrap()).collect();
    let pid = child.id() as i32;
    let c4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let c6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let big: Vec<u8> = (0..60000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    c4.send_to(b"question one", ("127.0.0.1", ports[0])).unwrap();
    c4.send_to(&big, ("127.0.0.1", ports[0])).unwrap();
    c6.send_to(b"question six", ("::1", ports[1])).unwrap();
    let (lite, plite) = udplite_sent(b"question lite", ports[2]);
    let img = dir.join("img");
    let o = crtools(&["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    let o = crtools(&["restore", "-d", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let got = ask(pid, &out);
    kill_reap(pid);
    let sha = |d: &[u8]| {
        let o = Command::new("python3")
            .args(["-c", "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(d)?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let (p4, p6) = (c4.local_addr().unwrap().port(), c6.local_addr().unwrap().port());
    let want = format!(
        "[(12, '{}', {p4}), (60000, '{}', {p4}), (12, '{}', {p6}), (13, '{}', {plite})]",
        sha(b"question one"),
        sha(&big),
        sha(b"question six"),
        sha(b"question lite")
    );
    assert_eq!(got, want);
    drop(lite);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A UDP-Lite socket of the test's bound to 127.0.0.1 that sent `data` to
/// `port` there, and its own port (std has no UDP-Lite sockets).
fn udplite_sent(data: &[u8], port: u16) -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let addr = |port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns, with
    // addresses that live across each call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE);
        assert!(fd >= 0, "UDP-Lite socket: {}", std::io::Error::last_os_error());
        let s = OwnedFd::from_raw_fd(fd);
        let mut me = addr(0);
        assert_eq!(libc::bind(s.as_raw_fd(), (&raw const me).cast(), len), 0, "bind");
        let mut l = len;
        assert_eq!(libc::getsockname(s.as_raw_fd(), (&raw mut me).cast(), &mut l), 0, "getsockname");
        let to = addr(port);
        let n = libc::sendto(s.as_raw_fd(), data.as_ptr().cast(), data.len(), 0, (&raw const to).cast(), len);
        assert_eq!(n, data.len() as isize, "sendto: {}", std::io::Error::last_os_error());
        (s, u16::from_be(me.sin_port))
    }
}

/// Unix sockets bound to a path relative to the binder's working
/// directory (postfix's master binds public/pickup so; refused before)
/// come back relative: the listener's name, the accepted connection's and
/// the client's peer name stay `rel.sock`, queued data survives, and a new
/// client reaches the listener through the file.
#[test]
fn unix_sockets_bound_to_a_relative_path_stay_relative() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("relunix");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import os, signal, socket, time\n\
         os.chdir('{}')\n\
         l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         l.bind('rel.sock')\n\
         l.listen(4)\n\
         c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         c.connect('rel.sock')\n\
         a, _ = l.accept()\n\
         c.sendall(b'queued')\n\
         os.chdir('/')\n\
         def go(*_):\n    \
             n, _ = l.accept()\n    \
             n.sendall(b'hi')\n    \
             r = [l.getsockname(), a.getsockname(), c.getpeername(), a.recv(100)]\n    \
             open('{}', 'w').write(repr(r))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        dir.display(),
        out.display()
    );
    let img = dir.join("img");
    // Its working directory moved on since the bind: the file is not found
    // from there, which is refused by name and leaves the task running.
    let DumpOf { line, code, err, alive } = dump_of_python3(&script, &img);
    assert_eq!(line.trim(), "ready");
    assert_eq!(code, Some(3), "not refused: {err}");
    assert!(err.contains("relative path rel.sock"), "{err}");
    assert_eq!(alive, Some('S'), "the task does not sleep on");
    let _ = std::fs::remove_file(dir.join("rel.sock"));

    let script = script.replace("os.chdir('/')", "pass");
    let (mut child, line) = python3_started(&script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let o = crtools(&["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    let o = crtools(&["restore", "-d", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let mut n = std::os::unix::net::UnixStream::connect(dir.join("rel.sock")).expect("connect through the file");
    let got = ask(pid, &out);
    let mut hi = [0u8; 2];
    n.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let read = std::io::Read::read_exact(&mut n, &mut hi);
    kill_reap(pid);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got, "['rel.sock', 'rel.sock', 'rel.sock', b'queued']");
    assert!(read.is_ok() && &hi == b"hi", "the new client got no answer: {read:?}");
}

/// A UDP socket bound to an address that is not the host's while free
/// bind was on, cleared since (zdtm sk-freebind-false): the restore failed
/// to bind it (EADDRNOTAVAIL). It comes back bound there, free bind off.
#[test]
fn a_socket_bound_with_free_bind_cleared_since_comes_back() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("freebind");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import signal, socket, time\n\
         IP_FREEBIND = 15\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)\n\
         s.bind(('192.0.2.77', 0))\n\
         s.setsockopt(socket.SOL_IP, IP_FREEBIND, 0)\n\
         def go(*_):\n    \
             open('{}', 'w').write(repr((s.getsockname()[0], s.getsockopt(socket.SOL_IP, IP_FREEBIND))))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "('192.0.2.77', 0)");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A unix datagram queued from a sender bound to a relative name that no
/// socket of the tree holds any more (the sender closed): it could only be
/// sent again from a socket bound to that name in the sender's working
/// directory, which the images do not know. The dump took it and the
/// restore failed; the dump refuses it now, naming it, and the task runs on.
#[test]
fn a_datagram_from_a_gone_relative_sender_is_refused_at_dump() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("relgone");
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        "import os, socket, time\n\
         os.chdir('{}')\n\
         r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         r.bind('{}')\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.bind('snd.sock')\n\
         s.sendto(b'from a relative name', '{}')\n\
         s.close()\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        dir.display(),
        dir.join("srv.sock").display(),
        dir.join("srv.sock").display()
    );
    let DumpOf { line, code, err, alive } = dump_of_python3(&script, &dir.join("img"));
    assert_eq!(line.trim(), "ready");
    assert_eq!(code, Some(3), "not refused: {err}");
    assert!(err.contains("queued from snd.sock") && err.contains("relative"), "{err}");
    assert_eq!(alive, Some('S'), "the task does not sleep on");
    assert!(!dir.join("img").exists(), "the refused dump left its directory");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process in a UTS namespace of its own (unshare(CLONE_NEWUTS), then
/// its own host and domain names): refused without -n, naming the option;
/// dumped with `-n uts` and restored into a new UTS namespace with both
/// names, while crtools' own names stay as they were. `show` decodes the
/// namespace image; a restore that asks for another namespace is refused.
#[test]
fn a_uts_namespace_comes_back_with_its_names() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("utsns");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import ctypes, os, signal, socket, time\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         host = os.readlink('/proc/self/ns/uts')\n\
         assert libc.unshare(0x04000000) == 0, ctypes.get_errno()\n\
         socket.sethostname('crtools-uts')\n\
         assert libc.setdomainname(b'crtools.dom', 11) == 0\n\
         def go(*_):\n    \
             r = [socket.gethostname(), open('/proc/sys/kernel/domainname').read().strip(), \
                  os.readlink('/proc/self/ns/uts') != host]\n    \
             open('{}', 'w').write(repr(r))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let img = dir.join("img");
    let DumpOf { line, code, err, alive } = dump_of_python3(&script, &img);
    assert_eq!(line.trim(), "ready");
    assert_eq!(code, Some(3), "not refused: {err}");
    assert!(err.contains("uts namespace") && err.contains("-n uts"), "{err}");
    assert_eq!(alive, Some('S'), "the task does not sleep on");

    let ours = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let (mut child, line) = python3_started(&script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let o = crtools(&["dump", "-n", "uts", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    let o = crtools(&["show", "-f", img.join("utsns.img").to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("crtools-uts") && shown.contains("crtools.dom"), "{shown}");
    let o = crtools(&["restore", "-n", "pid", "-d", "-D", img.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "restore -n pid: {}", String::from_utf8_lossy(&o.stderr));
    let o = crtools(&["restore", "-n", "ipc", "-d", "-D", img.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && err.contains("the uts namespaces"), "restore -n ipc: {err}");
    let o = crtools(&["restore", "-n", "uts", "-d", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "['crtools-uts', 'crtools.dom', True]");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), ours, "crtools' own host name changed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process in an IPC namespace of its own with SysV objects in it: a
/// segment it attaches, one nobody attaches, a message queue with two
/// messages, a semaphore set, a raised kernel.msgmnb and a kernel.sem
/// longer than 32 characters (a sysctl read in pieces came back cut
/// short: the last number lost). Refused without
/// -n ipc; with it, restored into a new IPC namespace with every object
/// under its id with its contents, nothing made in crtools' own namespace.
/// A POSIX message queue in the namespace is refused by name.
#[test]
fn an_ipc_namespace_comes_back_with_its_objects() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("ipcns");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import ctypes, os, signal, time\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         libc.shmat.restype = ctypes.c_void_p\n\
         libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]\n\
         host = os.readlink('/proc/self/ns/ipc')\n\
         assert libc.unshare(0x08000000) == 0, ctypes.get_errno()\n\
         open('/proc/sys/kernel/msgmnb', 'w').write('20000')\n\
         open('/proc/sys/kernel/sem', 'w').write('2000000000 2000000000 2000000000 31999')\n\
         C = 0o1000\n\
         a = libc.shmget(0x1234, 8192, C | 0o640)\n\
         pa = libc.shmat(a, None, 0)\n\
         ctypes.memmove(pa, b'attached segment', 16)\n\
         b = libc.shmget(0x5678, 4096, C | 0o600)\n\
         pb = libc.shmat(b, None, 0)\n\
         ctypes.memmove(pb + 100, b'unattached one', 14)\n\
         libc.shmdt(ctypes.c_void_p(pb))\n\
         class Msg(ctypes.Structure): _fields_ = [('t', ctypes.c_long), ('d', ctypes.c_char * 64)]\n\
         q = libc.msgget(0x9abc, C | 0o600)\n\
         for t, d in ((1, b'first'), (2, b'second message')):\n    \
             m = Msg(t, d)\n    \
             assert libc.msgsnd(q, ctypes.byref(m), len(d), 0) == 0\n\
         s = libc.semget(0xdef0, 2, C | 0o600)\n\
         libc.semctl(s, 0, 16, 3)\n\
         libc.semctl(s, 1, 16, 7)\n\
         MQ\n\
         def go(*_):\n    \
             r = [a, b, q, s, ctypes.string_at(pa, 16)]\n    \
             pb2 = libc.shmat(b, None, 0)\n    \
             r.append(ctypes.string_at(pb2 + 100, 14))\n    \
             libc.shmdt(ctypes.c_void_p(pb2))\n    \
             got = []\n    \
             for _ in range(2):\n        \
                 m = Msg()\n        \
                 n = libc.msgrcv(q, ctypes.byref(m), 64, 0, 0o4000)\n        \
                 got.append((m.t, m.d[:n]))\n    \
             r += [got, [libc.semctl(s, 0, 12), libc.semctl(s, 1, 12)]]\n    \
             r += [open('/proc/sys/kernel/msgmnb').read().strip(), os.readlink('/proc/self/ns/ipc') != host]\n    \
             r.append(open('/proc/sys/kernel/sem').read().split())\n    \
             open('{}', 'w').write(repr(r))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', a, b, q, s, flush=True)\n\
         while True: time.sleep(1)\n",
        out.display()
    );
    let img = dir.join("img");
    let plain = script.replace("MQ", "pass");
    let DumpOf { line, code, err, alive } = dump_of_python3(&plain, &img);
    assert!(line.starts_with("ready"), "{line}");
    assert_eq!(code, Some(3), "not refused: {err}");
    assert!(err.contains("ipc namespace") && err.contains("-n ipc"), "{err}");
    assert_eq!(alive, Some('S'), "the task does not sleep on");

    // A POSIX message queue in it: refused by name with -n ipc too.
    let mq = script.replace("MQ", "assert libc.mq_open(b'/crtools-mq', os.O_CREAT | os.O_RDWR, 0o600, None) >= 0");
    let (mut child, line) = python3_started(&mq);
    assert!(line.starts_with("ready"), "{line}");
    let o = crtools(&["dump", "-n", "ipc", "-t", &child.id().to_string(), "-D", img.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(3) && err.contains("/crtools-mq"), "{err}");
    assert_eq!(settled_state(child.id() as i32), Some('S'), "the task does not sleep on");
    let _ = child.kill();
    let _ = child.wait();

    let host_sysv =
        || ["shm", "msg", "sem"].map(|k| std::fs::read_to_string(format!("/proc/sysvipc/{k}")).unwrap_or_default());
    let before = host_sysv();
    let (mut child, line) = python3_started(&plain);
    let ids: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
    let pid = child.id() as i32;
    let o = crtools(&["dump", "-n", "ipc", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    let o = crtools(&["show", "-f", img.join("ipcns.img").to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("message queue") && shown.contains("semaphore set"), "{shown}");
    let o = crtools(&["restore", "-d", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(host_sysv(), before, "objects were made in crtools' own IPC namespace");
    let got = ask(pid, &out);
    kill_reap(pid);
    let want = format!(
        "[{}, b'attached segment', b'unattached one', [(1, b'first'), (2, b'second message')], [3, 7], '20000', True, \
         ['2000000000', '2000000000', '2000000000', '31999']]",
        ids.join(", ")
    );
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With -n uts, a task of the tree in a UTS namespace of its own below the
/// root's (a child that unshared again) is refused by name: nested
/// namespaces are not dumped. The tree runs on.
#[test]
fn a_nested_uts_namespace_is_refused_by_name() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("utsnested");
    std::fs::create_dir_all(&dir).unwrap();
    let script = "import ctypes, os, time\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         assert libc.unshare(0x04000000) == 0, ctypes.get_errno()\n\
         r, w = os.pipe()\n\
         c = os.fork()\n\
         if c == 0:\n    \
             assert libc.unshare(0x04000000) == 0\n    \
             os.write(w, b'x')\n    \
             time.sleep(600)\n    \
             os._exit(0)\n\
         os.read(r, 1)\n\
         print('ready', c, flush=True)\n\
         time.sleep(600)\n";
    let (mut child, line) = python3_started(script);
    let inner: i32 = line.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("child pid");
    let pid = child.id() as i32;
    let out = crtools(&["dump", "-n", "uts", "-t", &pid.to_string(), "-D", dir.join("img").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let states = (settled_state(pid), settled_state(inner));
    // The root first: its child is then re-parented to us (subreaper).
    let _ = child.kill();
    let _ = child.wait();
    kill_reap(inner);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(3), "not refused: {err}");
    assert!(err.contains(&format!("task {inner}")) && err.contains("nested uts namespaces"), "{err}");
    assert_eq!(states, (Some('S'), Some('S')), "the tree does not sleep on");
}

/// A process with tens of MiB of data dumped into a tmpfs has its pages
/// written in stripes, one image per page worker, side by side
/// (`CRTOOLS_DUMP_WORKERS=3` here): the pagemap's head names them, `show`
/// says which stripe each image is, a missing stripe fails the restore
/// naming it and leaving nothing behind, and the whole restores byte for
/// byte, the odd stripes read by a second thread of the restorer.
#[test]
fn pages_striped_over_several_images_restore_exact() {
    if !have_python3() {
        return;
    }
    subreaper();
    // Stripes are written on a tmpfs only (see the engine's stripes_for).
    let dir = std::path::Path::new("/dev/shm").join(format!("crtools-cli-stripes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("answer");
    let script = format!(
        r#"
import hashlib, signal, sys, time
# 80 MiB that no two pages of which are alike, nor zero.
buf = bytearray(80 << 20)
for i in range(0, len(buf), 4096):
    buf[i:i+8] = (i * 2654435761 + 1).to_bytes(8, "little")
    buf[i+8:i+16] = (i // 4096 + 7).to_bytes(8, "little")
want = hashlib.sha256(buf).hexdigest()
def answer(*_):
    with open({out:?}, "w") as f:
        f.write(("ok " if hashlib.sha256(buf).hexdigest() == want else "bad ") + want)
signal.signal(signal.SIGUSR1, answer)
print("ready", flush=True)
while True:
    time.sleep(1)
"#,
        out = out.to_str().unwrap()
    );
    let (mut child, line) = python3_started(&script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let img = dir.join("img");
    let d = img.to_str().unwrap();
    let o = Command::new(CRTOOLS)
        .args(["dump", "-t", &pid.to_string(), "-D", d])
        .env("CRTOOLS_DUMP_WORKERS", "3")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    let mut pages: Vec<String> = std::fs::read_dir(&img)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pages-"))
        .collect();
    pages.sort();
    assert_eq!(pages.len(), 3, "{pages:?}");
    let head = crtools(&["show", "--json", "-f", img.join(format!("pagemap-{pid}.img")).to_str().unwrap()]);
    let head = String::from_utf8_lossy(&head.stdout);
    let stripe_ids = [pid + (1 << 22), pid + (2 << 22)];
    assert!(head.contains(&format!("\"stripes\":[{},{}]", stripe_ids[0], stripe_ids[1])), "{head}");
    assert!(head.contains("\"stripe\":2"), "no entry in stripe 2: {head}");
    let shown = crtools(&["show", "-D", d]);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains(&format!("== pages-{}.img", stripe_ids[1])) && text.contains("stripe"), "{text}");

    // Without one of its stripes, the restore fails naming it.
    let stripe = img.join(format!("pages-{}.img", stripe_ids[0]));
    let moved = dir.join("moved.img");
    std::fs::rename(&stripe, &moved).unwrap();
    let o = crtools(&["restore", "-d", "-D", d]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(&format!("pages-{}.img", stripe_ids[0])), "{err}");
    assert!(state(pid).is_none(), "a task was left behind");
    std::fs::rename(&moved, &stripe).unwrap();

    let log = dir.join("restore.log");
    let o = crtools(&["restore", "-d", "-D", d, "-v4", "-o", log.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let a = ask(pid, &out);
    kill_reap(pid);
    assert!(a.starts_with("ok "), "the restored memory differs: {a}");
    // Stripe 1 holds more than 16 MiB: a second thread of the restorer read it.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("pages read on two threads"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Private mappings of files keep the mode their file was opened with
/// (the /proc/PID/map_files link shows it: 0600 opened for writing, 0400
/// read-only), for a regular file, a deleted one and a memfd: before, every
/// private mapping came back on a file opened read-only (found by CRIU's
/// zdtm maps00, unlink_mmap00 and memfd02).
#[test]
fn private_file_mappings_keep_their_files_open_mode() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("mapmode");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("got");
    let script = format!(
        "import mmap, os, signal, time\n\
         d = '{dir}'\n\
         for n in ('rw', 'ro', 'gone'):\n    \
             open(os.path.join(d, n), 'wb').write(b'x' * 8192)\n\
         f_rw = open(os.path.join(d, 'rw'), 'r+b')\n\
         f_ro = open(os.path.join(d, 'ro'), 'rb')\n\
         f_gone = open(os.path.join(d, 'gone'), 'r+b')\n\
         mfd = os.memfd_create('crtools-mode')\n\
         os.write(mfd, b'y' * 8192)\n\
         maps = [mmap.mmap(f.fileno(), 8192, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ) \
                 for f in (f_rw, f_ro, f_gone)]\n\
         maps.append(mmap.mmap(mfd, 8192, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ))\n\
         os.unlink(os.path.join(d, 'gone'))\n\
         def modes():\n    \
             r = {{}}\n    \
             for l in open('/proc/self/maps'):\n        \
                 f = l.split()\n        \
                 name = f[5].rsplit('/', 1)[-1] if len(f) > 5 else ''\n        \
                 if name in ('rw', 'ro', 'gone', 'memfd:crtools-mode'):\n            \
                     r[name] = oct(os.lstat('/proc/self/map_files/' + f[0]).st_mode & 0o777)\n    \
             return sorted(r.items())\n\
         before = modes()\n\
         def go(*_):\n    \
             open('{out}', 'w').write(repr([before, modes()]))\n\
         signal.signal(signal.SIGUSR1, go)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(1)\n",
        dir = dir.display(),
        out = out.display()
    );
    let pid = python3_dumped_and_restored(&script, &dir);
    let got = ask(pid, &out);
    kill_reap(pid);
    let want = "[('gone', '0o600'), ('memfd:crtools-mode', '0o600'), ('ro', '0o400'), ('rw', '0o600')]";
    assert_eq!(got, format!("[{want}, {want}]"), "before dump, after restore");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Private_Dirty` of /proc/PID/smaps_rollup, in KiB.
fn private_dirty_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Private_Dirty:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A dump reads pages a process shares copy-on-write with its child
/// without taking them apart: process_vm_readv pins what it reads, and the
/// kernel unshares a pinned anonymous page that is not exclusive, giving
/// the task a copy of each (32 MiB more private memory here; with huge
/// pages and an empty pool, zdtm maps10's child lost its page and died of
/// SIGBUS after a failed dump). Dumped with -s, the tree's private memory
/// stays as it was.
#[test]
fn a_dump_leaves_pages_shared_after_fork_shared() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("cowkeep");
    std::fs::create_dir_all(&dir).unwrap();
    let script = "import os, time\n\
                  buf = bytearray(os.urandom(32 << 20))\n\
                  pid = os.fork()\n\
                  if pid == 0:\n    \
                      while True: time.sleep(1)\n\
                  time.sleep(0.3)\n\
                  print('ready', pid, flush=True)\n\
                  while True: time.sleep(1)\n";
    let (mut child, line) = python3_started(script);
    let pid = child.id() as i32;
    let kid: i32 = line.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("child pid");
    let before = (private_dirty_kib(pid), private_dirty_kib(kid));
    let img = dir.join("img");
    let o = crtools(&["dump", "-s", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    let after = (private_dirty_kib(pid), private_dirty_kib(kid));
    for p in [kid, pid] {
        kill_reap(p);
    }
    let _ = child.wait();
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    assert!(
        after.0 < before.0 + 4096 && after.1 < before.1 + 4096,
        "private memory (KiB, parent and child) grew from {before:?} to {after:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process whose main thread called pthread_exit while another thread
/// runs (its leader a zombie): refused by name (exit code 3), and it runs
/// on (zdtm pthread02 failed with "is a zombie: nothing to dump").
#[test]
fn a_process_whose_leader_thread_exited_is_refused_by_name() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("leaderexit");
    let script = "import ctypes, threading, time\n\
                  libc = ctypes.CDLL(None)\n\
                  def run():\n    \
                      time.sleep(0.2)\n    \
                      print('ready', flush=True)\n    \
                      while True: time.sleep(1)\n\
                  threading.Thread(target=run).start()\n\
                  libc.pthread_exit(None)\n";
    let (mut child, line) = python3_started(script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let out = crtools(&["dump", "-t", &pid.to_string(), "-D", dir.join("img").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(3), "not refused: {err}");
    assert!(err.contains("leader thread has exited") && err.contains("1 other thread"), "{err}");
    assert!(threads.contains("Threads:\t2"), "the process did not run on: {threads}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reader of a file that grew after the dump (tail -f, a log shipper)
/// is restored and reads on from its offset: the bytes appended since.
/// The same file shrunk is still refused (exit 1, naming it).
#[test]
fn a_reader_of_a_file_that_grew_reads_on_after_restore() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("grewlog");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("app.log");
    let out = dir.join("out");
    std::fs::write(&log, b"line 1\nline 2\n").unwrap();
    let script = format!(
        "import signal, time\n\
         f = open({log:?}, 'rb')\n\
         f.read()\n\
         def ask(s, fr):\n    \
             open({out:?}, 'wb').write(f.read())\n\
         signal.signal(signal.SIGUSR1, ask)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(0.05)\n"
    );
    let (mut child, line) = python3_started(&script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let img = dir.join("img");
    let img_s = img.to_str().unwrap();
    let o = crtools(&["dump", "-t", &pid.to_string(), "-D", img_s]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    // Shrunk: refused, the file named.
    std::fs::write(&log, b"line 1\n").unwrap();
    let o = crtools(&["restore", "-d", "-D", img_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("app.log") && err.contains("refusing to restore over a changed file"), "{err}");
    // Grown: restored, and the reader gets what came since.
    std::fs::write(&log, b"line 1\nline 2\nline 3\n").unwrap();
    let o = crtools(&["restore", "-d", "-D", img_s]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let got = ask(pid, &out);
    kill_reap(pid);
    assert_eq!(got, "line 3\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pty slave whose master was closed (a program left behind by an ssh
/// session that ended; zdtm pty04): dumped and made again hung up, at the
/// same index; read gives end of file, write and ioctls EIO, as before the
/// dump (it was refused before).
#[test]
fn a_hung_up_terminal_comes_back_hung_up() {
    if !have_python3() {
        return;
    }
    subreaper();
    let dir = tmpdir("hungup");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let script = format!(
        "import os, signal, time, termios, errno\n\
         m, s = os.openpty()\n\
         name = os.ttyname(s)\n\
         os.close(m)\n\
         def probe():\n    \
             r = []\n    \
             try: r.append('read=%r' % os.read(s, 1))\n    \
             except OSError as e: r.append('read=' + errno.errorcode[e.errno])\n    \
             try: os.write(s, b'x'); r.append('write=ok')\n    \
             except OSError as e: r.append('write=' + errno.errorcode[e.errno])\n    \
             try: termios.tcgetattr(s); r.append('tcgetattr=ok')\n    \
             except termios.error as e: r.append('tcgetattr=' + errno.errorcode[e.args[0]])\n    \
             r.append('link=' + os.readlink('/proc/self/fd/%d' % s).replace(' (deleted)', ''))\n    \
             return ' '.join(r)\n\
         before = probe()\n\
         def ask(sig, fr):\n    \
             open({out:?} + '.tmp', 'w').write(before + '\\n' + probe() + '\\n'); os.rename({out:?} + '.tmp', {out:?})\n\
         signal.signal(signal.SIGUSR1, ask)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(0.05)\n"
    );
    let (mut child, line) = python3_started(&script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let img = dir.join("img");
    let o = crtools(&["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    let o = crtools(&["restore", "-d", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let got = ask(pid, &out);
    kill_reap(pid);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 2, "{got}");
    assert!(lines[0].starts_with("read=b'' write=EIO tcgetattr=EIO link=/dev/pts/"), "{got}");
    assert_eq!(lines[0], lines[1], "before the dump, then after the restore");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A lease being broken (another process opened the file; its holder has
/// not given it up yet) is refused by name (exit code 3), and the holder
/// runs on (zdtm file_lease02-04 failed with exit code 1).
#[test]
fn a_lease_being_broken_is_refused_by_name() {
    if !have_python3() {
        return;
    }
    let dir = tmpdir("leasebreak");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("leased");
    std::fs::write(&file, b"data").unwrap();
    let script = format!(
        "import fcntl, os, signal, time\n\
         signal.signal(signal.SIGIO, signal.SIG_IGN)\n\
         fd = os.open({file:?}, os.O_RDONLY)\n\
         fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(0.05)\n"
    );
    let (mut child, line) = python3_started(&script);
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    // Another open starts the break (the holder ignores the signal).
    use std::os::unix::fs::OpenOptionsExt;
    let breaker = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&file)
        .expect_err("the lease must block a writer");
    assert_eq!(breaker.raw_os_error(), Some(libc::EWOULDBLOCK));
    let out = crtools(&["dump", "-l", "-t", &pid.to_string(), "-D", dir.join("img").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let alive = settled_state(pid);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(3), "not refused: {err}");
    assert!(err.contains("lease is being broken"), "{err}");
    assert_eq!(alive, Some('S'), "the holder does not run on");
    let _ = std::fs::remove_dir_all(&dir);
}
