//! Fault injection (CRTOOLS_FAULT): a dump failing at any step leaves the
//! tree running as it was; a restore failing leaves nothing behind; the
//! ns_last_pid fallback restores the same pids.
mod common;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");

fn crtools(fault: &str, args: &[&str]) -> std::process::Output {
    Command::new(CRTOOLS).args(args).env("CRTOOLS_FAULT", fault).stdin(Stdio::null()).output().expect("run crtools")
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("crtools-fault-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `sh` with two `sleep` children, in its own session; returns it and the
/// children (the caller kills and reaps them with [`end`]).
#[allow(clippy::zombie_processes)]
fn tree() -> (Child, Vec<i32>) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("sleep 1000 & sleep 1000 & wait")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut sh = cmd.spawn().expect("start sh");
    let pid = sh.id();
    let t = Instant::now();
    loop {
        let c = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let kids: Vec<i32> = c.split_whitespace().filter_map(|s| s.parse().ok()).collect();
        if kids.len() == 2 {
            std::thread::sleep(Duration::from_millis(100));
            return (sh, kids);
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = sh.kill();
            let _ = sh.wait();
            panic!("sh did not start its children");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_field(pid: i32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

fn end(sh: &mut Child, kids: &[i32]) {
    // SAFETY: killing and reaping processes this test started (subreaper).
    unsafe {
        for &k in kids {
            libc::kill(k, libc::SIGKILL);
        }
        libc::kill(sh.id() as i32, libc::SIGKILL);
    }
    let _ = sh.wait();
    for &k in kids {
        // SAFETY: as above.
        unsafe { libc::waitpid(k, std::ptr::null_mut(), 0) };
    }
}

fn subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

#[test]
fn a_dump_failing_at_any_step_leaves_the_tree_as_it_was() {
    subreaper();
    for fault in ["dump-infected", "dump-after-pages", "dump-before-inventory"] {
        let dir = tmpdir(fault);
        let (mut sh, kids) = tree();
        let pid = sh.id() as i32;
        let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let out = crtools(fault, &["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
        assert_eq!(out.status.code(), Some(1), "{fault}: dump must fail");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(fault),
            "{fault}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
        for p in std::iter::once(pid).chain(kids.iter().copied()) {
            assert_eq!(status_field(p, "TracerPid:").as_deref(), Some("0"), "{fault}: {p} still traced");
            let st = status_field(p, "State:").unwrap_or_default();
            assert!(st.starts_with('S'), "{fault}: {p} is {st}");
        }
        assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap(), maps_before, "{fault}: maps changed");
        assert!(!dir.join("inventory.img").exists(), "{fault}: an inventory was written");
        // The directory the dump made goes with its images when nothing is
        // left in it; one that stays is no dump.
        if dir.exists() {
            let out = crtools("", &["restore", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("incomplete dump"), "{fault}: restore of a partial dump: {err}");
        }
        // The tree still works: its children still exit normally when told.
        end(&mut sh, &kids);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn restore_failing_at_the_traps_leaves_nothing_and_ns_last_pid_restores_the_same_pids() {
    subreaper();
    let dir = tmpdir("restore");
    let d = dir.to_str().unwrap();
    let (mut sh, kids) = tree();
    let pid = sh.id() as i32;
    let out = crtools("", &["dump", "-D", d, "-t", &pid.to_string()]);
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    let _ = sh.wait();
    for &k in &kids {
        // SAFETY: reaping re-parented children of ours.
        unsafe { libc::waitpid(k, std::ptr::null_mut(), 0) };
    }

    let out = crtools("restore-at-traps", &["restore", "-d", "-D", d, "-t", &pid.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    std::thread::sleep(Duration::from_millis(100));
    for p in std::iter::once(pid).chain(kids.iter().copied()) {
        // Dead, at most a zombie waiting for us (the subreaper).
        let st = status_field(p, "State:");
        assert!(st.as_deref().map(|s| s.starts_with('Z')).unwrap_or(true), "{p} left {st:?}");
        // SAFETY: reaping what is left.
        unsafe { libc::waitpid(p, std::ptr::null_mut(), libc::WNOHANG) };
    }

    let out = crtools("restore-no-set-tid", &["restore", "-d", "-D", d, "-t", &pid.to_string()]);
    assert!(out.status.success(), "restore via ns_last_pid: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(200));
    let comms: Vec<String> = std::iter::once(pid)
        .chain(kids.iter().copied())
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim().to_string())
        .collect();
    for p in kids.iter().copied().chain(std::iter::once(pid)) {
        // SAFETY: killing and reaping the restored tree (ours as subreaper).
        unsafe {
            libc::kill(p, libc::SIGKILL);
            libc::waitpid(p, std::ptr::null_mut(), 0);
        }
    }
    assert_eq!(comms, vec!["sh", "sleep", "sleep"]);
    let _ = std::fs::remove_dir_all(&dir);
}
