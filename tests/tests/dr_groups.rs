//! A process group whose leader is gone survives dump and restore: a helper
//! recreates the group during restore and leaves no trace (no extra child,
//! no zombie, the group id unused by any process afterwards).
use engine::dump::{dump, DumpOptions};
use engine::restore::{restore, RestoreOptions};
use engine::sys::Pid;
use std::time::{Duration, Instant};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

fn wait_for(log: &std::path::Path, pat: &str, n: usize) -> Vec<String> {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<String> = text.lines().filter(|l| l.starts_with(pat)).map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no {n} {pat:?} lines in {text:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn field(line: &str, key: &str) -> i32 {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|v| v.parse().ok()).unwrap_or(-1)
}

#[test]
fn group_without_its_leader_survives() {
    if !crtools_tests::require_root() {
        return;
    }
    // SAFETY: prctl on this process: orphans of the victim re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = std::env::temp_dir().join(format!("crtools-dr-groups-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let mut p = std::process::Command::new(VICTIM).arg("orphan-group").arg(&log).spawn().unwrap();
    let pid = p.id() as i32;
    let ready = wait_for(&log, "ready", 1);
    let a = field(&ready[0], "a=");
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let b: i32 = kids.trim().parse().expect("one child");
    // Killed and reaped whatever happens (a failed wait or assert too).
    struct Kill(i32, i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: killing and reaping this test's victims, by pid.
            unsafe {
                libc::kill(self.1, libc::SIGKILL);
                libc::kill(self.0, libc::SIGKILL);
                libc::waitpid(self.0, std::ptr::null_mut(), libc::WNOHANG);
                libc::waitpid(self.1, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
    }
    let _kill = Kill(pid, b);
    // SAFETY: signalling our victims.
    unsafe {
        libc::kill(pid, libc::SIGUSR1);
        libc::kill(b, libc::SIGUSR1);
    }
    let before = wait_for(&log, "status", 2);

    let img = dir.join("img");
    dump(&DumpOptions {
        pid: Pid(pid),
        dir: img.clone(),
        leave_stopped: false,
        shell_job: false,
        evasive_devices: false,
        ..Default::default()
    })
    .expect("dump");
    let _ = p.wait();
    // SAFETY: reaping B, re-parented to us when P died.
    unsafe { libc::waitpid(b, std::ptr::null_mut(), 0) };
    restore(&RestoreOptions { pid: Some(Pid(pid)), dir: img, detach: true, shell_job: false, ..Default::default() })
        .expect("restore");
    std::thread::sleep(Duration::from_millis(200));
    let kids_after = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let helper_alive = std::path::Path::new(&format!("/proc/{a}")).exists();
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGUSR1);
        libc::kill(b, libc::SIGUSR1);
    }
    let after = wait_for(&log, "status", 4);
    // SAFETY: killing and reaping the restored tree (ours as subreaper).
    unsafe {
        libc::kill(b, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        libc::waitpid(b, std::ptr::null_mut(), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);

    let by =
        |lines: &[String], who: &str| lines.iter().rev().find(|l| l.contains(&format!("who={who}"))).cloned().unwrap();
    for who in ["P", "B"] {
        let (x, y) = (by(&before, who), by(&after[2..], who));
        for k in ["pid=", "ppid=", "pgid=", "sid="] {
            assert_eq!(field(&x, k), field(&y, k), "{who} {k}: {x} -> {y}");
        }
    }
    assert_eq!(field(&by(&after[2..], "B"), "pgid="), a, "B is still in A's group");
    assert_eq!(kids_after.trim(), b.to_string(), "P's only child is B (no helper, no zombie)");
    assert!(!helper_alive, "the helper with A's pid is gone");
}

fn status_of(pid: i32, tid: i32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn tids(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_thread_of_an_unprivileged_process_keeps_its_credentials() {
    use std::os::unix::process::CommandExt;
    if !crtools_tests::require_root() {
        return;
    }
    // SAFETY: prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = std::env::temp_dir().join(format!("crtools-dr-creds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = dir.join("log");
    let mut p =
        std::process::Command::new(VICTIM).arg("threads").arg(&log).arg("3").uid(4242).gid(4343).spawn().unwrap();
    let pid = p.id() as i32;
    wait_for(&log, "ready", 1);
    let before: Vec<(String, String, String)> = tids(pid)
        .into_iter()
        .map(|t| (status_of(pid, t, "Uid:"), status_of(pid, t, "Gid:"), status_of(pid, t, "CapEff:")))
        .collect();
    assert_eq!(before.len(), 4);
    let img = dir.join("img");
    dump(&DumpOptions {
        pid: Pid(pid),
        dir: img.clone(),
        leave_stopped: false,
        shell_job: false,
        evasive_devices: false,
        ..Default::default()
    })
    .expect("dump");
    let _ = p.wait();
    restore(&RestoreOptions { pid: Some(Pid(pid)), dir: img, detach: true, shell_job: false, ..Default::default() })
        .expect("restore");
    let after: Vec<(String, String, String)> = tids(pid)
        .into_iter()
        .map(|t| (status_of(pid, t, "Uid:"), status_of(pid, t, "Gid:"), status_of(pid, t, "CapEff:")))
        .collect();
    // SAFETY: signalling our restored victim.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let verdict = wait_for(&log, "status", 1);
    // SAFETY: killing and reaping it.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(after, before, "uid, gid and effective capabilities of every thread");
    assert!(before.iter().all(|b| b.0.starts_with("4242 ")), "{before:?}");
    assert!(verdict[0].contains(" ok "), "{verdict:?}");
}
