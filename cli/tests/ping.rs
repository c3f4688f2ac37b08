//! `ping` (iputils-ping) through the `crtools` binary: a running `ping -i
//! 0.2 127.0.0.1` (a raw ICMP socket with its ICMP filter as root, or a
//! ping socket where net.ipv4.ping_group_range allows one) is dumped,
//! killed and restored, and its output goes on with increasing icmp_seq
//! numbers. Skipped when ping is not installed.
mod common;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");

/// The icmp_seq numbers of the replies in `out`, in order.
fn seqs(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("icmp_seq=")))
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn wait_replies(log: &Path, n: usize) -> Vec<u64> {
    let t = Instant::now();
    loop {
        let s = seqs(&std::fs::read_to_string(log).unwrap_or_default());
        if s.len() >= n {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{} replies of {n}", s.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[test]
fn running_ping_goes_on_with_increasing_icmp_seq() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(ping) = ["/usr/bin/ping", "/bin/ping"].into_iter().find(|p| Path::new(p).is_file()) else {
        eprintln!("skipped: ping (iputils-ping) is not installed");
        return;
    };
    // SAFETY: prctl with integer arguments; the restored ping re-parents to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = std::env::temp_dir().join(format!("crtools-ping-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("ping.out");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(ping);
    cmd.args(["-i", "0.2", "127.0.0.1"]).stdin(Stdio::null()).stdout(out).stderr(Stdio::null());
    common::detached(&mut cmd);
    let pid = cmd.spawn().expect("start ping").id() as i32;
    let kill = |p: i32| {
        // SAFETY: killing the ping this test started (or restored).
        unsafe { libc::kill(p, libc::SIGKILL) };
    };
    let before = wait_replies(&log, 3);
    let images = dir.join("images");
    let d = Command::new(CRTOOLS).args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).output().unwrap();
    if !d.status.success() {
        kill(pid);
        panic!("dump: {}", String::from_utf8_lossy(&d.stderr));
    }
    let t = Instant::now();
    while !gone(pid) {
        assert!(t.elapsed() < Duration::from_secs(10), "ping {pid} still runs after the dump");
        let mut st = 0;
        // SAFETY: reaping our children.
        unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut st = 0;
    // SAFETY: reaping the dumped ping, our child: its pid is free again.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    let at_dump = seqs(&std::fs::read_to_string(&log).unwrap()).len();
    let r = Command::new(CRTOOLS).args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    assert!(r.status.success(), "restore: {}", String::from_utf8_lossy(&r.stderr));
    let after = wait_replies(&log, at_dump + 5);
    kill(pid);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(after.len() > before.len());
    assert!(after.windows(2).all(|w| w[0] < w[1]), "icmp_seq does not increase:\n{text}");
    assert!(after[at_dump] > after[at_dump - 1], "{text}");
    assert!(!text.contains("Unreachable") && !text.contains("error"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
