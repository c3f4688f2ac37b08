//! Helpers shared by the integration tests: start victims, read their
//! lines, and always kill and reap them (by pid, never by name).
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A running victim program started by a test.
pub struct Victim {
    /// The child process.
    pub child: Child,
    /// Its stdin.
    pub stdin: Option<ChildStdin>,
    /// Its stdout, line buffered.
    pub stdout: BufReader<ChildStdout>,
    /// The words of its "ready ..." line after "ready".
    pub ready: Vec<String>,
}

impl Victim {
    /// Starts `exe` with `args` and waits for its "ready" line.
    ///
    /// The victim leads a process group of its own in the test's session:
    /// its group is then not orphaned (its parent, the test, is in another
    /// group of the same session), so job-control stops such as SIGTSTP
    /// stop it even when the test itself runs in an orphaned group (a
    /// detached CI job), where the kernel discards them.
    pub fn start(exe: &str, args: &[&str]) -> Victim {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(exe)
            .args(args)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start victim");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut v = Victim { child, stdin, stdout, ready: Vec::new() };
        let line = v.line();
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("ready"), "victim said {line:?}");
        v.ready = words.map(str::to_string).collect();
        v
    }

    /// The victim's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads one line from the victim's stdout.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        self.stdout.read_line(&mut s).expect("read victim stdout");
        s.trim_end().to_string()
    }

    /// Sends one line to the victim's stdin, in one write(2).
    ///
    /// `writeln!` on the unbuffered ChildStdin issues one write per format
    /// piece ("ping", then "\n"): a victim that reads once and exits could
    /// take the first and be gone before the second (EPIPE).
    pub fn send(&mut self, line: &str) {
        let w = self.stdin.as_mut().expect("stdin");
        w.write_all(format!("{line}\n").as_bytes()).expect("write victim stdin");
        w.flush().unwrap();
    }

    /// Waits for the victim to exit; returns its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads /proc/<pid>/maps as a string.
pub fn maps(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps")
}

/// Skips the calling test unless we are root (ptrace of a child works as
/// any user, but later tests need CAP_SYS_ADMIN and friends).
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

/// The common start of a victim program: its own session, stdio on
/// /dev/null and no descriptor inherited from whoever started it (the test
/// harness's pipes would make it undumpable). Call before any thread exists.
pub fn detach_from_harness() {
    // SAFETY: plain libc calls on our own descriptors, single-threaded.
    unsafe {
        libc::setsid();
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        libc::dup2(null, 0);
        libc::dup2(null, 1);
        libc::dup2(null, 2);
        if null > 2 {
            libc::close(null);
        }
    }
}

/// A scratch directory under the system temp dir, removed on drop:
/// `victim.log`, `images/` and `data/` of one test.
pub struct Scratch {
    /// The directory.
    pub root: std::path::PathBuf,
}

impl Scratch {
    /// A fresh directory named after the suite and the test.
    pub fn new(suite: &str, test: &str) -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let root = std::env::temp_dir().join(format!(
            "crtools-{suite}-{test}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(root.join("data")).expect("create scratch");
        Scratch { root }
    }
    /// The victim's log file.
    pub fn log(&self) -> std::path::PathBuf {
        self.root.join("victim.log")
    }
    /// The image directory.
    pub fn images(&self) -> std::path::PathBuf {
        self.root.join("images")
    }
    /// Room for the victim's own files.
    pub fn data(&self) -> std::path::PathBuf {
        self.root.join("data")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs `body` on its own thread (ptrace is per thread, so one test's dump
/// and restore stay on it). If the body fails, or has not ended after
/// `secs` seconds, calls `on_failure` (kill the test's tasks, by pid; a
/// failed assertion must not leave them running) and fails the test with
/// what it says; after a timeout the body gets 30 s to unwind first.
pub fn with_watchdog(name: &str, secs: u64, body: impl FnOnce() + Send + 'static, on_failure: impl FnOnce() -> String) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::Builder::new()
        .name(format!("dr-{name}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let _ = tx.send(());
            if let Err(p) = r {
                std::panic::resume_unwind(p);
            }
        })
        .expect("spawn test body");
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(()) => {
            if let Err(p) = h.join() {
                let what = on_failure();
                eprintln!("{name}: failed ({what})");
                std::panic::resume_unwind(p);
            }
        }
        Err(_) => {
            let what = on_failure();
            let _ = rx.recv_timeout(std::time::Duration::from_secs(30));
            panic!("{name}: timed out after {secs} s ({what})");
        }
    }
}
