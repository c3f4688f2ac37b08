//! Dump and restore of whole process trees: threads, children, sessions,
//! process groups, zombies, stopped tasks, shared memory, pdeathsig, and
//! the failure paths.
//!
//! Every test starts a `victim_tree` in one of its modes. The processes of
//! the tree report through one log file (O_APPEND, shared by the tree) and
//! check themselves on SIGUSR1. This test process makes itself a child
//! subreaper, so every orphan of a victim tree (and the restored roots) are
//! ours to reap; tests run one at a time (the engine's restore waits for
//! any child). Each test body runs under a watchdog; every task a test saw
//! is killed by pid and reaped.
use engine::dump::{dump, DumpOptions};
use engine::restore::{restore, RestoreOptions};
use engine::sys::Pid;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim_tree");
/// How long a tree may take to answer on a loaded machine.
const ANSWER: Duration = Duration::from_secs(15);

/// One test at a time: restores wait for any child of this process.
static SERIAL: Mutex<()> = Mutex::new(());
/// Pids seen by each running test, killed if its watchdog fires.
static PIDS: Mutex<Vec<(String, i32)>> = Mutex::new(Vec::new());

fn register(test: &str, pid: i32) {
    let mut p = PIDS.lock().unwrap_or_else(|e| e.into_inner());
    if !p.iter().any(|(t, q)| t == test && *q == pid) {
        p.push((test.to_string(), pid));
    }
}

fn unregister(test: &str) {
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).retain(|(t, _)| t != test);
}

/// Runs `body` on its own thread (ptrace is per thread); fails the test
/// after `secs` seconds, killing the test's tasks.
fn run(test: &'static str, secs: u64, body: impl FnOnce(&Cx) + Send + 'static) {
    if !crtools_tests::require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static SUBREAPER: std::sync::Once = std::sync::Once::new();
    SUBREAPER.call_once(|| {
        // SAFETY: prctl on this process.
        assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    });
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
            reap_all();
            format!("killed {pids:?}")
        },
    );
}

/// The test's context.
struct Cx {
    test: &'static str,
}

use crtools_tests::Scratch;

/// One log line: its first word and its key=value pairs.
#[derive(Clone, Debug)]
struct Line {
    raw: String,
    kind: String,
    kv: HashMap<String, String>,
}

impl Line {
    fn parse(raw: &str) -> Line {
        let kind = raw.split_whitespace().next().unwrap_or("").to_string();
        let kv = raw
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Line { raw: raw.to_string(), kind, kv }
    }
    fn get(&self, k: &str) -> &str {
        self.kv.get(k).map(String::as_str).unwrap_or_else(|| panic!("no {k} in {:?}", self.raw))
    }
    fn num(&self, k: &str) -> i64 {
        self.get(k).parse().unwrap_or_else(|_| panic!("{k} is not a number in {:?}", self.raw))
    }
    fn pid(&self) -> i32 {
        self.num("pid") as i32
    }
    fn assert_ok(&self) {
        assert_eq!(self.get("verdict"), "ok", "verdict of {}", self.raw);
    }
    fn assert_item(&self, k: &str, want: &str) {
        assert_eq!(self.get(k), want, "{k} in {}", self.raw);
    }
}

/// A victim tree. The root is first our child, after restore a child of
/// the engine (this process). Every task of the tree is killed by pid and
/// reaped on drop.
struct Tree {
    test: &'static str,
    root: i32,
    child: Option<Child>,
    log: PathBuf,
    /// Ready line of each process, by role.
    ready: BTreeMap<String, Line>,
}

impl Cx {
    /// Starts `victim_tree LOG MODE ARGS` and waits for the ready lines of
    /// `roles`.
    fn start(&self, s: &Scratch, mode: &str, args: &[&str], roles: &[&str]) -> Tree {
        let child = Command::new(VICTIM)
            .arg(s.log())
            .arg(mode)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start victim");
        let root = child.id() as i32;
        register(self.test, root);
        let mut t = Tree { test: self.test, root, child: Some(child), log: s.log(), ready: BTreeMap::new() };
        let deadline = Instant::now() + ANSWER;
        loop {
            for l in t.lines().into_iter().filter(|l| l.kind == "ready") {
                register(self.test, l.pid());
                t.ready.insert(l.get("role").to_string(), l);
            }
            if roles.iter().all(|r| t.ready.contains_key(*r)) {
                break;
            }
            assert!(Instant::now() < deadline, "tree {mode}: not ready within {ANSWER:?}; log:\n{}", t.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(t.ready.values().any(|l| l.pid() == root), "no ready line of the root");
        assert_eq!(t.ready.len(), roles.len(), "unexpected roles: {:?}", t.ready.keys());
        for l in t.ready.values() {
            for tid in l.get("tids").split(',') {
                register(self.test, tid.parse().unwrap());
            }
        }
        t
    }
}

impl Tree {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn lines(&self) -> Vec<Line> {
        self.log_text().lines().map(Line::parse).collect()
    }

    fn pid(&self, role: &str) -> i32 {
        self.ready.get(role).unwrap_or_else(|| panic!("no role {role}")).pid()
    }

    fn pids(&self) -> Vec<i32> {
        self.ready.values().map(Line::pid).collect()
    }

    /// Waits for a line matching `pred`.
    fn wait_line(&self, what: &str, pred: impl Fn(&Line) -> bool) -> Line {
        let deadline = Instant::now() + ANSWER;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            assert!(Instant::now() < deadline, "no {what} within {ANSWER:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn checks_of(&self, pid: i32) -> Vec<Line> {
        self.lines()
            .into_iter()
            .filter(|l| l.kind == "check" && l.kv.get("pid").map(String::as_str) == Some(&pid.to_string()))
            .collect()
    }

    /// Asks each of `roles` for a check at once; returns the new lines.
    fn check(&self, roles: &[&str]) -> BTreeMap<String, Line> {
        let before: Vec<(String, i32, usize)> =
            roles.iter().map(|r| (r.to_string(), self.pid(r), self.checks_of(self.pid(r)).len())).collect();
        for (_, pid, _) in &before {
            signal(*pid, libc::SIGUSR1);
        }
        let deadline = Instant::now() + ANSWER;
        let mut out = BTreeMap::new();
        for (role, pid, n) in before {
            loop {
                let c = self.checks_of(pid);
                if c.len() > n {
                    out.insert(role, c[n].clone());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{role} ({pid}): no check answer within {ANSWER:?}; log:\n{}",
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        out
    }

    /// Checks every process of the tree and asserts each verdict is ok and
    /// that pid, ppid, pgid, sid and tids are the ones of the ready line.
    fn check_all_same(&self) -> BTreeMap<String, Line> {
        let roles: Vec<&str> = self.ready.keys().map(String::as_str).collect();
        let got = self.check(&roles);
        for (role, c) in &got {
            c.assert_ok();
            let r = &self.ready[role];
            for k in ["pid", "ppid", "pgid", "sid", "tids"] {
                assert_eq!(c.get(k), r.get(k), "{role}: {k} changed: was {} now {}", r.raw, c.raw);
            }
            let st = stat(c.pid()).unwrap_or_else(|| panic!("{role} is gone"));
            assert_eq!(st.ppid.to_string(), r.get("ppid"), "{role}: ppid in /proc");
        }
        got
    }

    /// After a dump that killed the tree: reaps the root and every orphan
    /// (the dead tasks become our children), so the pids are free.
    fn reap_dumped(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The dump may have reaped it already as its tracer: ECHILD then.
            let _ = c.wait();
        }
        reap_all();
        for p in self.pids() {
            wait_gone(p);
        }
    }

    /// The tree is now the restored one.
    fn restored(&mut self) {
        self.child = None;
    }

    fn dump_and_restore(&mut self, s: &Scratch) {
        do_dump(self.root, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        self.reap_dumped();
        do_restore(self.root, &s.images()).unwrap_or_else(|e| panic!("restore: {e}\nlog:\n{}", self.log_text()));
        self.restored();
    }

    /// Kills every live task of the tree (the ones whose session is one of
    /// the tree's) and reaps them.
    fn kill_all(&mut self) {
        let sids: Vec<String> = self.ready.values().map(|l| l.get("sid").to_string()).collect();
        for p in self.pids() {
            if let Some(st) = stat(p) {
                if sids.contains(&st.sid.to_string()) {
                    // SAFETY: kill by pid of a task of this test's tree.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        reap_all();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.kill_all();
        unregister(self.test);
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill by pid of a task this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Fields of /proc/pid/stat.
#[derive(Debug)]
struct Stat {
    state: char,
    ppid: i32,
    pgid: i32,
    sid: i32,
    /// Field 38.
    exit_signal: i32,
}

fn stat(pid: i32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        exit_signal: f.get(35)?.parse().ok()?,
    })
}

/// Every thread of `pid`, from /proc.
fn threads_of(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Asserts every thread of `pid` runs untraced and is not stopped.
fn assert_running_untraced(pid: i32) {
    for tid in threads_of(pid) {
        let path = format!("/proc/{pid}/task/{tid}/status");
        let s = std::fs::read_to_string(&path).unwrap_or_default();
        let f = |k: &str| s.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string())).unwrap_or_default();
        assert_eq!(f("TracerPid:"), "0", "thread {tid} of {pid} is still traced");
        let state = f("State:");
        assert!(!state.starts_with('T') && !state.starts_with('t'), "thread {tid} of {pid} is stopped: {state}");
    }
}

/// Reaps every child of this process until none is left (bounded).
fn reap_all() {
    let deadline = Instant::now() + ANSWER;
    loop {
        let mut st = 0;
        // SAFETY: reaping children of this process; tests run one at a time.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG | libc::__WALL) };
        if r > 0 {
            continue;
        }
        if r < 0 || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `pid` no longer exists.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + ANSWER;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "pid {pid} still exists: {:?}", stat(pid));
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn do_dump(pid: i32, dir: &Path, leave_stopped: bool) -> Result<(), String> {
    let started = std::time::Instant::now();
    let stats = dump(&DumpOptions {
        pid: Pid(pid),
        dir: dir.to_path_buf(),
        leave_stopped,
        shell_job: false,
        evasive_devices: false,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    // Memory time is wall time: the tasks' overlapping copies count once
    // (it was their sum, several times the dump's own time for a tree).
    let took = started.elapsed();
    assert!(stats.memdump <= took, "memdump {:?} > the dump's {took:?}", stats.memdump);
    Ok(())
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

/// 4 processes x 3 threads: every thread keeps its tid, thread-locals,
/// stack and counter, the token ring (mutex + condvar) keeps turning, and
/// pids, ppids, groups and sessions are the ones of before.
#[test]
fn tree_of_four_processes_with_threads() {
    run("tree", 60, |cx| {
        let s = Scratch::new("dr_tree", "tree");
        let roles = ["root", "a", "a1", "b"];
        let mut t = cx.start(&s, "tree", &[], &roles);
        assert_eq!(stat(t.pid("a1")).unwrap().ppid, t.pid("a"));
        assert_eq!(stat(t.pid("b")).unwrap().ppid, t.root);
        t.check_all_same();
        let before: BTreeMap<i32, Vec<i32>> = t.pids().into_iter().map(|p| (p, threads_of(p))).collect();
        t.dump_and_restore(&s);
        for (p, tids) in &before {
            assert_eq!(&threads_of(*p), tids, "threads of {p} after restore");
            assert_running_untraced(*p);
        }
        let got = t.check_all_same();
        for c in got.values() {
            c.assert_item("threads", "3");
            c.assert_item("tls", "true");
            c.assert_item("ring", "true");
        }
        // And again: the restored tree dumps and restores as well.
        std::fs::remove_dir_all(s.images()).unwrap();
        t.dump_and_restore(&s);
        t.check_all_same();
    });
}

/// Zombies (one exited with 7, one killed by SIGTERM, one a grandchild
/// that exited with 3) come back as zombies of the same parents and are
/// reaped with their original status.
#[test]
fn zombies_keep_their_exit_status() {
    run("zombie", 60, |cx| {
        let s = Scratch::new("dr_tree", "zombie");
        let mut t = cx.start(&s, "zombie", &[], &["root", "live"]);
        let root = &t.ready["root"];
        let (z1, z2, z3) = (root.num("z1") as i32, root.num("z2") as i32, root.num("z3") as i32);
        let lz = t.ready["live"].num("lz") as i32;
        let zombies = [(z1, t.root), (z2, t.root), (z3, t.root), (lz, t.pid("live"))];
        let mut before = Vec::new();
        for &(z, parent) in &zombies {
            let st = stat(z).expect("zombie exists");
            assert_eq!((st.state, st.ppid), ('Z', parent), "zombie {z} before the dump");
            before.push((st.pgid, st.sid, st.exit_signal));
        }
        assert_eq!(stat(z1).unwrap().pgid, z1, "z1 leads its own group");
        assert_eq!(stat(z3).unwrap().exit_signal, libc::SIGURG);
        t.dump_and_restore(&s);
        for (&(z, parent), &b) in zombies.iter().zip(&before) {
            let st = stat(z).unwrap_or_else(|| panic!("zombie {z} not restored"));
            assert_eq!((st.state, st.ppid), ('Z', parent), "zombie {z} after restore");
            assert_eq!((st.pgid, st.sid, st.exit_signal), b, "zombie {z}: group, session, exit signal");
        }
        let got = t.check(&["root", "live"]);
        got["root"].assert_ok();
        got["root"].assert_item("z1", "exit:7");
        got["root"].assert_item("z2", &format!("sig:{}", libc::SIGTERM));
        got["root"].assert_item("z3", "exit:5");
        got["live"].assert_ok();
        got["live"].assert_item("lz", "exit:3");
        for &(z, _) in &zombies {
            wait_gone(z);
        }
    });
}

/// A session leader with two process groups: c1 leads a group that c2 (its
/// sibling) and g (its child) belong to; g2, c1's child, is in the root's
/// group; s leads a second session with s1 in it.
#[test]
fn sessions_and_process_groups_survive() {
    run("session", 60, |cx| {
        let s = Scratch::new("dr_tree", "session");
        let roles = ["root", "c1", "c2", "c3", "g", "g2", "s", "s1"];
        let mut t = cx.start(&s, "session", &[], &roles);
        let (root, c1, sess) = (t.root.to_string(), t.pid("c1").to_string(), t.pid("s").to_string());
        let want: [(&str, &str, &str); 8] = [
            ("root", &root, &root),
            ("c1", &c1, &root),
            ("c2", &c1, &root),
            ("g", &c1, &root),
            ("g2", &root, &root),
            ("c3", &root, &root),
            ("s", &sess, &sess),
            ("s1", &sess, &sess),
        ];
        for (role, pgid, sid) in want {
            let r = &t.ready[role];
            assert_eq!((r.get("pgid"), r.get("sid")), (pgid, sid), "{role} before the dump: {}", r.raw);
        }
        t.dump_and_restore(&s);
        let got = t.check_all_same();
        for (role, pgid, sid) in want {
            let st = stat(t.pid(role)).unwrap();
            assert_eq!((st.pgid.to_string().as_str(), st.sid.to_string().as_str()), (pgid, sid), "{role} in /proc");
            assert_eq!(got[role].get("pgid"), pgid);
        }
    });
}

/// The signal that holds `pid` in group-stop, as a tracer sees it (the
/// same its parent's waitid reports): seized, interrupted, let go; the
/// task stays stopped.
fn group_stop_signal(pid: i32) -> i32 {
    // SAFETY: plain ptrace and waitpid calls on a task this test started.
    unsafe {
        assert_eq!(libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0), 0, "seize {pid}");
        assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0), 0, "interrupt {pid}");
        let mut st = 0;
        assert_eq!(libc::waitpid(pid, &mut st, libc::__WALL), pid, "wait for {pid}");
        assert!(libc::WIFSTOPPED(st) && st >> 16 == libc::PTRACE_EVENT_STOP, "{pid}: status {st:#x}");
        assert_eq!(libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0), 0, "detach {pid}");
        libc::WSTOPSIG(st)
    }
}

/// A child stopped by SIGTSTP (every thread) stays stopped after restore,
/// by the same signal (its parent's waitid tells SIGSTOP and SIGTSTP
/// apart), does not run its handler for a SIGUSR1 sent meanwhile, and
/// works after SIGCONT. Its leader and last threads block SIGTSTP (the
/// restore failed: the signal waited in a thread that blocks it).
#[test]
fn stopped_child_stays_stopped_until_sigcont() {
    run("stopped", 60, |cx| {
        let s = Scratch::new("dr_tree", "stopped");
        let mut t = cx.start(&s, "stopped", &[], &["root", "s"]);
        let sp = t.pid("s");
        // s leads a group that is not orphaned: a terminal stop signal stops it.
        signal(sp, libc::SIGTSTP);
        let deadline = Instant::now() + ANSWER;
        while threads_of(sp).iter().any(|&tid| {
            let st = std::fs::read_to_string(format!("/proc/{sp}/task/{tid}/stat")).unwrap_or_default();
            !st.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('T')).unwrap_or(false)
        }) {
            assert!(Instant::now() < deadline, "s never stopped");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(group_stop_signal(sp), libc::SIGTSTP, "stop signal of s before the dump");
        t.dump_and_restore(&s);
        t.check(&["root"])["root"].assert_ok();
        assert_eq!(threads_of(sp).len(), 4, "threads of s");
        for tid in threads_of(sp) {
            let st = std::fs::read_to_string(format!("/proc/{sp}/task/{tid}/status")).unwrap();
            let state = st.lines().find(|l| l.starts_with("State:")).unwrap_or("").to_string();
            assert!(state.contains("T (stopped)"), "thread {tid} of s after restore: {state}");
            assert!(st.lines().any(|l| l == "TracerPid:\t0"), "thread {tid} of s still traced");
        }
        assert_eq!(group_stop_signal(sp), libc::SIGTSTP, "stop signal of s after restore");
        let n = t.checks_of(sp).len();
        signal(sp, libc::SIGUSR1);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(t.checks_of(sp).len(), n, "a stopped task answered");
        assert_eq!(stat(sp).unwrap().state, 'T', "s woke up by itself");
        signal(sp, libc::SIGCONT);
        // The pending SIGUSR1 is handled now.
        let c = t.wait_line("s's check after SIGCONT", |l| l.kind == "check" && l.pid() == sp);
        c.assert_ok();
        assert_running_untraced(sp);
        t.check_all_same();
    });
}

/// Runs the shm victim through a round of checks (child, then parent, then
/// child) and returns the three lines.
fn shm_round(t: &Tree) -> [Line; 3] {
    let a = t.check(&["child"]).remove("child").unwrap();
    let b = t.check(&["parent"]).remove("parent").unwrap();
    let c = t.check(&["child"]).remove("child").unwrap();
    [a, b, c]
}

/// Private memory duplicated by fork (an anonymous private mapping and the
/// heap) stays private after restore: a child's writes are not seen by the
/// parent, nor the other way round.
#[test]
fn private_memory_stays_private_after_restore() {
    run("private", 60, |cx| {
        let s = Scratch::new("dr_tree", "private");
        let mut t = cx.start(&s, "shm", &[], &["parent", "child"]);
        let before = shm_round(&t);
        for l in &before {
            l.assert_item("priv_other", "100");
            l.assert_item("heap_other", "100");
        }
        t.dump_and_restore(&s);
        let after = shm_round(&t);
        for l in &after {
            l.assert_ok();
            l.assert_item("priv_other", "100");
            l.assert_item("heap_other", "100");
        }
        after[0].assert_item("round", "3");
        after[1].assert_item("round", "2");
    });
}

/// MAP_SHARED anonymous memory inherited across fork is one object after
/// restore: what the child writes, the parent sees, and back; an object of
/// which each process maps a part the other does not comes back whole
/// (each part's data is stored once, by the first task that maps it).
#[test]
fn shared_anonymous_memory_is_shared_after_restore() {
    run("shared", 60, |cx| {
        let s = Scratch::new("dr_tree", "shared");
        let mut t = cx.start(&s, "shm", &[], &["parent", "child"]);
        let before = shm_round(&t);
        before[0].assert_item("shm_other", "100");
        before[1].assert_item("shm_other", "1");
        before[2].assert_item("shm_other", "1");
        for (l, other) in before.iter().zip(["100", "1", "1"]) {
            l.assert_item("split_other", other);
            l.assert_item("split_own_ok", "1");
        }
        t.dump_and_restore(&s);
        let after = shm_round(&t);
        // child round 3, parent round 2.
        after[0].assert_item("shm_other", "1");
        after[1].assert_item("shm_other", "3");
        after[2].assert_item("shm_other", "2");
        // The second object: each process maps a page the other does not
        // (both come back with their contents) and one both share.
        for (l, other) in after.iter().zip(["1", "3", "2"]) {
            l.assert_item("split_other", other);
            l.assert_item("split_own_ok", "1");
        }
    });
}

/// A victim that forks short-lived children all the time, dumped several
/// times: each dump either succeeds (and the restored tree goes on forking,
/// every child reaped with status 42, restored zombies included) or fails
/// cleanly with the tree resumed.
#[test]
fn continuously_forking_victim() {
    run("forker", 60, |cx| {
        let s = Scratch::new("dr_tree", "forker");
        let mut t = cx.start(&s, "forker", &[], &["root"]);
        let mut ok = 0;
        let mut failures = Vec::new();
        for round in 0..4 {
            std::thread::sleep(Duration::from_millis(150));
            let dir = s.root.join(format!("images-{round}"));
            match do_dump(t.root, &dir, false) {
                Ok(()) => {
                    t.reap_dumped();
                    do_restore(t.root, &dir).unwrap_or_else(|e| panic!("restore {round}: {e}"));
                    t.restored();
                    ok += 1;
                }
                Err(e) => {
                    eprintln!("dump {round} failed: {e}");
                    failures.push(e);
                }
            }
            assert_running_untraced(t.root);
            let c1 = t.check(&["root"]).remove("root").unwrap();
            c1.assert_ok();
            std::thread::sleep(Duration::from_millis(200));
            let c2 = t.check(&["root"]).remove("root").unwrap();
            c2.assert_ok();
            assert!(c2.num("forks") > c1.num("forks") + 10, "not forking any more: {} / {}", c1.raw, c2.raw);
            assert!(c2.num("reaped") > c1.num("reaped") + 10, "not reaping any more: {} / {}", c1.raw, c2.raw);
        }
        assert!(ok >= 2, "only {ok} of 4 dumps succeeded: {failures:?}");
    });
}

/// Threads in a strict mutex/condvar ping-pong keep alternating after
/// restore; a thread blocked in pthread_join wakes when the joined thread
/// exits after restore (the kernel's clear-child-tid futex wake).
#[test]
fn condvar_ping_pong_and_join_continue() {
    run("pingpong", 60, |cx| {
        let s = Scratch::new("dr_tree", "pingpong");
        let mut t = cx.start(&s, "pingpong", &[], &["pingpong"]);
        let c = t.check(&["pingpong"]).remove("pingpong").unwrap();
        c.assert_ok();
        c.assert_item("joined", "false");
        let tids = threads_of(t.root);
        assert_eq!(tids.len(), 5, "threads");
        t.dump_and_restore(&s);
        assert_eq!(threads_of(t.root), tids, "threads after restore");
        let c = t.check(&["pingpong"]).remove("pingpong").unwrap();
        c.assert_ok();
        c.assert_item("order", "true");
        c.assert_item("joined", "true");
        assert_eq!(threads_of(t.root).len(), 3, "the sleeper and joiner are gone");
    });
}

/// pdeathsig of a child whose parent is in the tree survives, and the
/// child subreaper in the tree still adopts the orphan.
#[test]
fn pdeathsig_and_subreaper_in_the_tree() {
    run("deathsig", 60, |cx| {
        let s = Scratch::new("dr_tree", "deathsig");
        let mut t = cx.start(&s, "deathsig", &[], &["t", "m", "p"]);
        let got = t.check_all_same();
        got["p"].assert_item("pdeathsig", &libc::SIGUSR2.to_string());
        got["t"].assert_item("subreaper", "1");
        t.dump_and_restore(&s);
        let got = t.check_all_same();
        got["p"].assert_item("pdeathsig", &libc::SIGUSR2.to_string());
        got["t"].assert_item("subreaper", "1");
        let (tp, m, p) = (t.pid("t"), t.pid("m"), t.pid("p"));
        signal(m, libc::SIGKILL);
        let r = t.wait_line("t reaping m", |l| l.kind == "reaped" && l.pid() == m);
        r.assert_item("how", &format!("sig:{}", libc::SIGKILL));
        let d = t.wait_line("p's death signal", |l| l.kind == "deathsig");
        assert_eq!(d.pid(), p);
        d.assert_item("ppid", &tp.to_string());
        signal(p, libc::SIGKILL);
        t.wait_line("t reaping p", |l| l.kind == "reaped" && l.pid() == p);
    });
}

/// A grandchild holding a pipe (not supported) fails the dump with a clear
/// error after the root and its child were dumped; every task and thread
/// is resumed untraced and keeps working.
#[test]
fn unsupported_fd_in_a_child_fails_dump_cleanly() {
    run("uffd", 60, |cx| {
        let s = Scratch::new("dr_tree", "uffd");
        let t = cx.start(&s, "holder", &["uffd"], &["root", "a", "a1"]);
        t.check_all_same();
        let err = do_dump(t.root, &s.images(), false).expect_err("dump of a tree with a userfaultfd");
        eprintln!("expected error: {err}");
        assert!(err.contains("userfaultfd") && err.contains(&t.pid("a1").to_string()), "unclear error: {err}");
        for p in t.pids() {
            assert_running_untraced(p);
        }
        t.check_all_same();
        // With -s too: nothing is left stopped.
        let err = do_dump(t.root, &s.root.join("again"), true).expect_err("dump -s of a tree with a userfaultfd");
        assert!(err.contains("userfaultfd"), "unclear error: {err}");
        for p in t.pids() {
            assert_running_untraced(p);
        }
        t.check_all_same();
    });
}

/// One `cloneshare` round, one process at a time: f opens fd 100 and root
/// (same table) sees it and closes it, s (its own table) never sees it;
/// s moves to `cwd`/sub with umask 077 and root (same fs information) is
/// there too while f (its own) is not; s moves back and root with it.
/// Every check also proves the data file at its number with offset 5.
fn cloneshare_round(t: &Tree, cwd: &str) {
    let sub = format!("{cwd}/sub");
    let one = |role: &str, probe: &str, at: &str, umask: &str| {
        let l = t.check(&[role]).remove(role).unwrap();
        l.assert_ok();
        l.assert_item("probe", probe);
        l.assert_item("cwd", at);
        l.assert_item("umask", umask);
        l.assert_item("fd_off", "5");
        let r = &t.ready[role];
        for k in ["pid", "ppid", "pgid", "sid"] {
            assert_eq!(l.get(k), r.get(k), "{role}: {k} changed: was {} now {}", r.raw, l.raw);
        }
    };
    one("f", "none", cwd, "0027");
    one("root", "cloexec", cwd, "0027");
    one("f", "none", cwd, "0027");
    one("s", "none", cwd, "0027");
    one("root", "cloexec", &sub, "0077");
    one("f", "none", cwd, "0027");
    one("s", "none", &sub, "0077");
    one("root", "cloexec", cwd, "0027");
}

/// Whether `a` and `b` share their object of kind `ty` (kcmp).
fn shares(a: i32, b: i32, ty: engine::sys::misc::KcmpType) -> bool {
    engine::sys::misc::kcmp(Pid(a), Pid(b), ty).unwrap() == engine::sys::misc::KcmpOrder::Equal
}

/// A child sharing its parent's descriptor table (CLONE_FILES) and one
/// sharing its fs information (CLONE_FS) come back sharing them: a
/// descriptor one opens the other sees with its flags, a chdir or umask
/// of one is the other's; the data file keeps its number and offset.
#[test]
fn clone_files_and_clone_fs_stay_shared() {
    run("cloneshare", 60, |cx| {
        use engine::sys::misc::KcmpType;
        let s = Scratch::new("dr_tree", "cloneshare");
        let dir = s.data().to_string_lossy().into_owned();
        let mut t = cx.start(&s, "cloneshare", &[&dir], &["root", "f", "s"]);
        let cwd = t.ready["root"].get("cwd").to_string();
        let kinds = |t: &Tree| {
            let (r, f, s) = (t.pid("root"), t.pid("f"), t.pid("s"));
            assert!(shares(r, f, KcmpType::Files) && !shares(r, s, KcmpType::Files), "descriptor tables");
            assert!(shares(r, s, KcmpType::Fs) && !shares(r, f, KcmpType::Fs), "fs information");
        };
        kinds(&t);
        cloneshare_round(&t, &cwd);
        t.dump_and_restore(&s);
        kinds(&t);
        cloneshare_round(&t, &cwd);
        // What the restore made dumps and restores again.
        let again = Scratch::new("dr_tree", "cloneshare-again");
        t.dump_and_restore(&again);
        kinds(&t);
        cloneshare_round(&t, &cwd);
    });
}

/// Two children sharing a descriptor table their parent no longer has
/// (it unshared it): forking cannot rebuild that, the dump says so by
/// name and the tree goes on untouched.
#[test]
fn shared_table_without_the_parent_is_refused() {
    run("cloneshare-siblings", 60, |cx| {
        let s = Scratch::new("dr_tree", "cloneshare-siblings");
        let t = cx.start(&s, "cloneshare-siblings", &[], &["root", "a1", "a2"]);
        t.check_all_same();
        let err = do_dump(t.root, &s.images(), false).expect_err("dump of siblings sharing a table");
        eprintln!("expected error: {err}");
        assert!(
            err.contains("CLONE_FILES")
                && err.contains("neither its parent nor its child")
                && err.contains(&t.pid("a2").to_string()),
            "unclear error: {err}"
        );
        for p in t.pids() {
            assert_running_untraced(p);
        }
        t.check_all_same();
    });
}

/// Checks root, then c, then root again, one after the other: the offset
/// of the file they share moves by one at each check, so each sees the
/// other's step. Returns the three lines.
fn ipc_round(t: &Tree) -> [Line; 3] {
    let a = t.check(&["root"]).remove("root").unwrap();
    let b = t.check(&["c"]).remove("c").unwrap();
    let c = t.check(&["root"]).remove("root").unwrap();
    assert_eq!(b.num("off"), a.num("off") + 1, "c does not share root's offset: {} / {}", a.raw, b.raw);
    assert_eq!(c.num("off"), b.num("off") + 1, "root does not share c's offset: {} / {}", b.raw, c.raw);
    [a, b, c]
}

/// Pipes in both directions with data in flight (one with a larger
/// capacity, one in packet mode), a FIFO opened three ways, a file whose
/// open description root and child share, and a /proc/self file: all come
/// back exactly, nothing lost, duplicated or reordered.
#[test]
fn pipes_fifos_and_shared_files_survive() {
    run("ipc", 60, |cx| {
        let s = Scratch::new("dr_tree", "ipc");
        let dir = s.data().to_string_lossy().into_owned();
        let mut t = cx.start(&s, "ipc", &[&dir], &["root", "c"]);
        t.dump_and_restore(&s);
        let [a, b, _] = ipc_round(&t);
        for l in [&a, &b] {
            l.assert_ok();
            l.assert_item("data", "ok");
        }
        a.assert_item("cap", "262144");
        b.assert_item("nonblock", "true");
        b.assert_item("proc", "true");
        // The unlinked FIFO was made again only long enough to open it.
        let left: Vec<String> = std::fs::read_dir(s.data())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains("gone") || n.contains("crtools"))
            .collect();
        assert!(left.is_empty(), "left in the data directory: {left:?}");
        t.check_all_same();
        // And once more: what the restore made dumps and restores again.
        let again = Scratch::new("dr_tree", "ipc-again");
        t.dump_and_restore(&again);
        ipc_round(&t);
        t.check_all_same();
    });
}

/// A unix stream server with two accepted clients (one bound to a path:
/// the server's getpeername names it after restore) and one waiting in the
/// backlog, data queued both ways; datagrams with their boundaries, their
/// senders' addresses and credentials; an abstract name; a seqpacket pair
/// with records queued and one side shut down; a datagram socketpair; a
/// socket whose file was unlinked; a listener whose file was renamed after
/// bind; the listener's file mode; every socket's SO_PEERCRED and
/// SO_PEERGROUPS.
#[test]
fn unix_sockets_survive_with_their_queues() {
    run("unix", 60, |cx| {
        let s = Scratch::new("dr_tree", "unix");
        let dir = s.data().to_string_lossy().into_owned();
        let roles = ["root", "c1", "c2", "c3"];
        let mut t = cx.start(&s, "unix", &[&dir], &roles);
        t.dump_and_restore(&s);
        let got = t.check(&roles);
        for r in ["root", "c1", "c2"] {
            got[r].assert_ok();
            got[r].assert_item("data", "ok");
        }
        got["c3"].assert_item("peer", "srv");
        got["c3"].assert_item("dgpeer", "dg");
        got["root"].assert_item("c1peer", "true");
        got["root"].assert_item("srvmode", "true");
        got["root"].assert_item("moved", "ok");
        got["c1"].assert_item("names", "true");
        // SO_PEERCRED/SO_PEERGROUPS as the kernel recorded them (c4, gone,
        // had other effective ids and groups).
        got["root"].assert_item("creds", "ok");
        got["c1"].assert_item("creds", "ok");
        t.check_all_same();
        let again = Scratch::new("dr_tree", "unix-again");
        t.dump_and_restore(&again);
        let got = t.check_all_same();
        got["root"].assert_item("creds", "ok");
        got["c1"].assert_item("creds", "ok");
    });
}

/// Without --ext-unix-sk a socket connected outside the tree is refused,
/// naming its peer; the tree runs on. Neither that failed dump nor a dump
/// with -s changes any queue.
#[test]
fn unix_socket_to_the_outside_needs_ext_unix_sk() {
    run("unix_ext", 60, |cx| {
        let s = Scratch::new("dr_tree", "unix_ext");
        let dir = s.data().to_string_lossy().into_owned();
        let roles = ["root", "c1", "c2", "c3"];
        let t = cx.start(&s, "unix", &[&dir], &roles);
        // Dump only c1's subtree... c1 is a leaf: its connection's peer is
        // root's. It does not lead its session: a shell job.
        let err = dump(&DumpOptions { pid: Pid(t.pid("c1")), dir: s.images(), shell_job: true, ..Default::default() })
            .map(|_| ())
            .map_err(|e| e.to_string())
            .expect_err("a socket with its peer outside");
        eprintln!("expected error: {err}");
        assert!(err.contains("outside the dumped tree") && err.contains("--ext-unix-sk"), "unclear error: {err}");
        for p in t.pids() {
            assert_running_untraced(p);
        }
        // A dump with -s reads every queue too, and leaves them as they were.
        do_dump(t.root, &s.root.join("stopped"), true).unwrap_or_else(|e| panic!("dump -s: {e}"));
        for p in t.pids() {
            signal(p, libc::SIGCONT);
        }
        for p in t.pids() {
            let deadline = Instant::now() + ANSWER;
            while stat(p).is_some_and(|st| st.state == 'T') {
                assert!(Instant::now() < deadline, "{p} stays stopped after SIGCONT");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let got = t.check(&roles);
        for r in ["root", "c1", "c2"] {
            got[r].assert_ok();
            got[r].assert_item("data", "ok");
        }
    });
}

/// A three-stage pipeline with 2 MiB in flight in its two pipes (1 MiB
/// each) at dump: after restore the consumer reads all 6 MiB the producer
/// wrote, byte for byte, and sees the end of the stream.
#[test]
fn pipeline_with_megabytes_in_flight() {
    run("pipeline", 90, |cx| {
        let s = Scratch::new("dr_tree", "pipeline");
        let dir = s.data().to_string_lossy().into_owned();
        let roles = ["root", "p", "m", "c"];
        let mut t = cx.start(&s, "pipeline", &[&dir], &roles);
        // Wait for both pipes to fill: m copied its first MiB, p is blocked.
        let deadline = Instant::now() + ANSWER;
        loop {
            let got = t.check(&["p", "m"]);
            if got["m"].num("copied") == 1 << 20 && got["p"].num("written") >= 2 << 20 {
                break;
            }
            assert!(Instant::now() < deadline, "pipes did not fill: {:?}", got);
            std::thread::sleep(Duration::from_millis(20));
        }
        t.dump_and_restore(&s);
        std::fs::write(s.data().join("go"), b"").unwrap();
        let total: u64 = 6 << 20;
        let want = (0..total).fold(0xcbf2_9ce4_8422_2325u64, |h, i| {
            let b = (i.wrapping_mul(7) ^ (i >> 12)) as u8;
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = t.check(&["c"]).remove("c").unwrap();
            if c.get("done") == "true" {
                assert_eq!(c.num("got") as u64, total, "bytes read: {}", c.raw);
                assert_eq!(c.get("sum"), format!("{want:x}"), "stream changed: {}", c.raw);
                break;
            }
            assert!(Instant::now() < deadline, "consumer did not finish: {}", c.raw);
            std::thread::sleep(Duration::from_millis(20));
        }
        t.check_all_same();
    });
}

/// A dump that fails (a userfaultfd in the child) leaves every byte in flight
/// where it was: the pipes were read without consuming them.
#[test]
fn failed_dump_leaves_pipe_data_in_place() {
    run("ipc_fail", 60, |cx| {
        let s = Scratch::new("dr_tree", "ipc_fail");
        let dir = s.data().to_string_lossy().into_owned();
        let t = cx.start(&s, "ipc", &[&dir, "uffd"], &["root", "c"]);
        for leave_stopped in [false, true] {
            let err = do_dump(t.root, &s.root.join(format!("images-{leave_stopped}")), leave_stopped)
                .expect_err("dump of a tree with a userfaultfd");
            assert!(err.contains("userfaultfd") && err.contains(&t.pid("c").to_string()), "unclear error: {err}");
            for p in t.pids() {
                assert_running_untraced(p);
            }
        }
        let [a, b, _] = ipc_round(&t);
        for l in [&a, &b] {
            l.assert_ok();
            l.assert_item("data", "ok");
        }
    });
}

/// Pty pairs in the tree: c's controlling terminal is a pty whose master
/// root holds, with c1's group in the foreground, settings, window size,
/// exclusive mode, input and output queued, /dev/tty open in c; a locked
/// pty and a pty in packet mode with output queued. All come back with the
/// same indices, twice.
#[test]
fn pty_pairs_and_controlling_terminal_survive() {
    run("pty", 60, |cx| {
        let s = Scratch::new("dr_tree", "pty");
        let mut t = cx.start(&s, "pty", &[], &["root", "c", "c1"]);
        let idx = t.ready["root"].get("idx").to_string();
        t.dump_and_restore(&s);
        let got = t.check(&["root", "c", "c1"]);
        for l in got.values() {
            l.assert_ok();
        }
        got["c1"].assert_item("input", "ok");
        for r in ["root", "c"] {
            got[r].assert_item("idx", &idx);
        }
        got["root"].assert_item("data", "ok");
        got["root"].assert_item("pkt", "1");
        got["root"].assert_item("lock", "1");
        let c = &got["c"];
        c.assert_item("sid_ok", "true");
        c.assert_item("fg_ok", "true");
        c.assert_item("devtty", "true");
        c.assert_item("winsize", "40x132");
        c.assert_item("lflag", "0");
        c.assert_item("excl", "1");
        t.check_all_same();
        // Again, from what the restore made (nothing queued now).
        let again = Scratch::new("dr_tree", "pty-again");
        t.dump_and_restore(&again);
        t.check_all_same();
    });
}

/// The session leader with the controlling terminal also maps a memfd:
/// both come back (the engine's ids for the two once collided, and the
/// restore failed with status 106 giving the memfd to TIOCSCTTY: zdtm
/// does not have it, Erlang's shell in a terminal does).
#[test]
fn controlling_terminal_beside_a_mapped_memfd_survives() {
    run("pty_memfd", 60, |cx| {
        let s = Scratch::new("dr_tree", "pty_memfd");
        let mut t = cx.start(&s, "pty", &["memfd"], &["root", "c", "c1"]);
        t.dump_and_restore(&s);
        let got = t.check(&["root", "c", "c1"]);
        for l in got.values() {
            l.assert_ok();
        }
        got["c"].assert_item("sid_ok", "true");
        got["c"].assert_item("fg_ok", "true");
        got["c"].assert_item("devtty", "true");
    });
}

/// A canonical-mode reader's queue (a line, an end of file, a partial
/// line) comes back as it was: the same reads, and the partial line
/// completes with the next newline.
#[test]
fn canonical_input_lines_survive() {
    run("pty_canon", 60, |cx| {
        let s = Scratch::new("dr_tree", "pty_canon");
        let mut t = cx.start(&s, "pty", &["canon"], &["root", "c", "c1"]);
        t.dump_and_restore(&s);
        let got = t.check(&["root", "c", "c1"]);
        for l in got.values() {
            l.assert_ok();
        }
        got["c1"].assert_item("input", "ok");
        got["root"].assert_item("data", "ok");
        got["c"].assert_item("lflag", &format!("{:o}", libc::ICANON));
    });
}

/// The dump takes what is queued in a pty and puts it back at once: after
/// a dump with -s (and SIGCONT) every byte is still there, in order, and
/// the settings are as they were.
#[test]
fn pty_queues_stay_after_dump_s() {
    run("pty_s", 60, |cx| {
        for (variant, lflag) in [("raw", 0), ("canon", libc::ICANON)] {
            let s = Scratch::new("dr_tree", "pty_s");
            let t = cx.start(&s, "pty", &[variant], &["root", "c", "c1"]);
            do_dump(t.root, &s.images(), true).unwrap_or_else(|e| panic!("dump -s: {e}"));
            for p in t.pids() {
                signal(p, libc::SIGCONT);
            }
            let got = t.check(&["root", "c", "c1"]);
            for l in got.values() {
                l.assert_ok();
            }
            got["root"].assert_item("data", "ok");
            got["c1"].assert_item("input", "ok");
            got["c"].assert_item("lflag", &format!("{lflag:o}"));
        }
    });
}

/// A pty index someone else took after the dump fails the restore by name
/// (the pty's path would change under the tree), leaving nothing behind;
/// once it is free again the same images restore.
#[test]
fn pty_index_in_use_fails_restore() {
    run("pty_busy", 90, |cx| {
        let s = Scratch::new("dr_tree", "pty_busy");
        let mut t = cx.start(&s, "pty", &[], &["root", "c", "c1"]);
        let first: u32 = t.ready["root"].get("idx").split(',').next().unwrap().parse().unwrap();
        do_dump(t.root, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        t.reap_dumped();
        // Hold every index up to the pty's first one.
        let mut held = Vec::new();
        loop {
            let m = std::fs::OpenOptions::new().read(true).write(true).open("/dev/ptmx").unwrap();
            let mut n = 0u32;
            // SAFETY: TIOCGPTN writes one int.
            assert_eq!(unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&m), libc::TIOCGPTN, &mut n) }, 0);
            held.push(m);
            if n >= first {
                break;
            }
        }
        let err = do_restore(t.root, &s.images()).expect_err("restore onto a busy pty index");
        assert!(err.contains(&format!("/dev/pts/{first}")) && err.contains("in use"), "unclear error: {err}");
        assert_nothing_left(&t.pids(), "failed restore");
        drop(held);
        do_restore(t.root, &s.images()).unwrap_or_else(|e| panic!("restore: {e}"));
        t.restored();
        let got = t.check(&["root", "c", "c1"]);
        for l in got.values() {
            l.assert_ok();
        }
        got["c1"].assert_item("input", "ok");
    });
}

/// A /dev/tty description two processes share and a pty whose output is
/// stopped (^S) are refused by name, the tree running on.
#[test]
fn shared_dev_tty_and_stopped_output_are_refused() {
    run("pty_refused", 60, |cx| {
        for (variant, what) in [("sharedtty", "/dev/tty"), ("stopped", "stopped")] {
            let s = Scratch::new("dr_tree", "pty_refused");
            let t = cx.start(&s, "pty", &[variant], &["root", "c", "c1"]);
            let err = do_dump(t.root, &s.images(), false).expect_err("dump refused");
            assert!(err.contains(what), "{variant}: unclear error: {err}");
            for p in t.pids() {
                assert_running_untraced(p);
            }
            t.check(&["c"])["c"].assert_ok();
        }
    });
}

/// /dev/console and a virtual console held by a process of the tree are
/// reopened by device number at restore, with their flags.
#[test]
fn console_and_virtual_console_survive() {
    for (name, path) in [("console", "/dev/console"), ("vt", "/dev/tty1")] {
        if std::fs::OpenOptions::new().write(true).open(path).is_err() {
            eprintln!("skipped {path}: cannot be opened here");
            continue;
        }
        run(name, 60, move |cx| {
            let s = Scratch::new("dr_tree", name);
            let mut t = cx.start(&s, "holder", &["file", path], &["root", "a", "a1"]);
            let fd = t.ready["a1"].get("file").to_string();
            t.dump_and_restore(&s);
            t.check_all_same();
            let link = std::fs::read_link(format!("/proc/{}/fd/{fd}", t.pid("a1"))).unwrap();
            assert_eq!(link, Path::new(path));
            let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", t.pid("a1"))).unwrap();
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap_or("").trim().to_string();
            let flags = i32::from_str_radix(&flags, 8).unwrap();
            assert_eq!(flags & (libc::O_ACCMODE | libc::O_APPEND), libc::O_WRONLY | libc::O_APPEND, "flags {flags:o}");
        });
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
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

/// Asserts that no task of `pids` is alive and reaps what is left.
fn assert_nothing_left(pids: &[i32], what: &str) {
    reap_all();
    for &p in pids {
        if let Some(st) = stat(p) {
            panic!("{what}: task {p} is left: {st:?}");
        }
    }
}

/// Restore failures in a child: a corrupted image of a child is refused
/// before anything is created; a grandchild whose restorer cannot reopen
/// its file (made immutable) fails the restore with every task of the tree
/// killed. The intact images then restore.
#[test]
fn restore_failure_in_a_child_leaves_nothing() {
    run("restore_failure", 60, |cx| {
        let s = Scratch::new("dr_tree", "restore_failure");
        let app = s.data().join("app");
        let mut t = cx.start(&s, "holder", &["file", app.to_str().unwrap()], &["root", "a", "a1"]);
        t.check_all_same();
        do_dump(t.root, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        t.reap_dumped();
        let pids = t.pids();
        let (a, a1) = (t.pid("a"), t.pid("a1"));

        let corrupt = s.root.join("corrupt");
        copy_dir(&s.images(), &corrupt);
        let core = corrupt.join(format!("core-{a}.img"));
        let mut bytes = std::fs::read(&core).unwrap();
        let at = bytes.len() - 5;
        bytes[at] ^= 0x40;
        std::fs::write(&core, &bytes).unwrap();
        let err = do_restore(t.root, &corrupt).expect_err("restore of a corrupted child image");
        eprintln!("expected error: {err}");
        assert!(err.contains(&format!("core-{a}.img")), "unclear error: {err}");
        assert_nothing_left(&pids, "corrupted image");

        if let Err(e) = set_immutable(&app, true) {
            eprintln!("skipped the restorer failure: cannot make a file immutable here: {e}");
        } else {
            let r = do_restore(t.root, &s.images());
            set_immutable(&app, false).expect("clear the immutable flag");
            let err = r.expect_err("restore must fail on an immutable file");
            eprintln!("expected error: {err}");
            assert!(err.contains(&a1.to_string()), "the error does not name the task: {err}");
            assert_nothing_left(&pids, "restorer failure in a grandchild");
        }

        do_restore(t.root, &s.images()).unwrap_or_else(|e| panic!("restore of the intact images: {e}"));
        t.restored();
        t.check_all_same();
    });
}

/// The kind-specific fdinfo lines that must come back the same: epoll
/// watches (number, events, data: not the target's inode), inotify watches
/// (wd, mask), a timer's clock and settime flags.
fn fdinfo_view(pid: i32, fd: i32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let mut out = Vec::new();
    for l in text.lines() {
        if l.starts_with("tfd:") {
            out.push(l.split("  pos:").next().unwrap().split_whitespace().collect::<Vec<_>>().join(" "));
            // In the kernel's order: by the target file's address.
            out.sort();
        } else if let Some(rest) = l.strip_prefix("inotify ") {
            let kv: Vec<&str> =
                rest.split_whitespace().filter(|w| w.starts_with("wd:") || w.starts_with("mask:")).collect();
            out.push(kv.join(" "));
        } else if l.starts_with("clockid:")
            || l.starts_with("settime flags:")
            || l.starts_with("flags:")
            || l.starts_with("fanotify ")
        {
            out.push(l.to_string());
            out.sort();
        }
    }
    out.join("; ")
}

/// Event descriptors come back with their state and keep working: a
/// semaphore eventfd still counts down one by one, a counter beyond 32
/// bits, a periodic timerfd still reports the expirations nobody read and
/// keeps firing, an absolute timer keeps its expiration, a signalfd reads
/// the signals that were pending, inotify reports a file created after
/// restore under its old watch descriptor, a sparse sealed memfd is one
/// object shared by both processes (offset included), pidfds reach their
/// tasks; an event loop (epoll in epoll over a pipe, a socket, an eventfd
/// watched under two numbers, one of them closed, and a timerfd) keeps
/// running without losing or repeating a sequence number.
#[test]
fn event_descriptors_survive_and_the_loop_keeps_running() {
    run("events", 90, |cx| {
        let s = Scratch::new("dr_tree", "events");
        let dir = s.data().to_string_lossy().into_owned();
        let mut t = cx.start(&s, "events", &[&dir], &["root", "c"]);
        let views = |t: &Tree| -> Vec<String> {
            let r = &t.ready["root"];
            ["ep3", "ino", "tabs", "talarm"].iter().map(|k| fdinfo_view(t.root, r.num(k) as i32)).collect()
        };
        let before = views(&t);
        assert!(before[0].contains("events: 40000000") || before[0].contains("events: 4000001"), "{}", before[0]);
        // A dump with -s first: it must take nothing (semaphore count,
        // unread ticks, pending signals, memfd offset, queued data).
        do_dump(t.root, &s.root.join("leave-stopped"), true).unwrap_or_else(|e| panic!("dump -s: {e}"));
        for p in t.pids() {
            signal(p, libc::SIGCONT);
        }
        t.dump_and_restore(&s);
        assert_eq!(views(&t), before, "epoll, inotify or timerfd settings changed");
        let root = t.check(&["root"]).remove("root").unwrap();
        eprintln!("{}", root.raw);
        root.assert_ok();
        root.assert_item("sem", "1,1,1,EAGAIN");
        root.assert_item("cnt", &((1u64 << 32) + 5).to_string());
        assert!(root.num("tp1") >= 5, "unread timer ticks lost: {}", root.raw);
        assert!(root.num("tp2") >= 1, "the periodic timer stopped: {}", root.raw);
        let tabs = root.num("tabs");
        assert!((3000..=3600).contains(&tabs), "absolute timer moved: {}", root.raw);
        let talarm = root.num("talarm");
        assert!((3000..=3600).contains(&talarm), "alarm timer moved: {}", root.raw);
        root.assert_item("sfd", "WINCH,RT3:42,RT3:42");
        root.assert_item("sfdep", "0,1");
        root.assert_item("ino", "3:100:after");
        root.assert_item("pidmod", "0");
        root.assert_item("mem", "true");
        root.assert_item("big", "true");
        root.assert_item("futurewrite", "true");
        // Mode 0666 and F_SEAL_EXEC (0x20): as created.
        root.assert_item("noexec", "666,0x20");
        root.assert_item("seqok", "true");
        root.assert_item("moff", "0");
        root.assert_item("mapok", "true");
        root.assert_item("privok", "true");
        let c = t.check(&["c"]).remove("c").unwrap();
        c.assert_ok();
        assert_eq!(c.num("moff"), root.num("moff") + 1, "memfd offset not shared: {} / {}", root.raw, c.raw);
        assert_eq!(c.num("mapseen"), root.num("mapround"), "memfd mapping not shared: {} / {}", root.raw, c.raw);
        c.assert_item("maponly", "true");
        c.assert_item("selfpfd", "ok");
        c.assert_item("selfnb", "true");
        c.assert_item("selfcloexec", "false");
        // The pidfd root opened before forking c is one description in both.
        let fd: i64 = t.ready["c"].num("selfpfd");
        // SAFETY: kcmp of two tasks of this test's tree, no pointers.
        let same = unsafe { libc::syscall(libc::SYS_kcmp, t.root, t.pid("c"), 0, fd, fd) };
        assert_eq!(same, 0, "the shared pidfd was split");
        std::thread::sleep(Duration::from_millis(300));
        let again = t.check(&["root"]).remove("root").unwrap();
        again.assert_ok();
        for k in ["pseq", "useq", "evsum", "tticks"] {
            assert!(again.num(k) > root.num(k), "{k} did not move after restore: {} / {}", root.raw, again.raw);
        }
        assert_eq!(again.num("moff"), c.num("moff") + 1);
        // Once more: what the restore made dumps and restores again.
        let s2 = Scratch::new("dr_tree", "events-again");
        t.dump_and_restore(&s2);
        std::thread::sleep(Duration::from_millis(100));
        let third = t.check(&["root"]).remove("root").unwrap();
        third.assert_ok();
        assert!(third.num("pseq") > again.num("pseq"), "{}", third.raw);
        t.check_all_same();
    });
}

/// A watch on a file that was deleted (still open, so the watch lives on)
/// cannot be made again once the tree is gone: the dump is refused naming
/// the file, and the tree runs on.
#[test]
fn inotify_watch_on_a_deleted_file_is_refused_by_name() {
    run("inotifygone", 60, |cx| {
        let s = Scratch::new("dr_tree", "inotifygone");
        let dir = s.data().to_string_lossy().into_owned();
        let t = cx.start(&s, "holder", &["inotify-gone", &dir], &["root", "a", "a1"]);
        let err = do_dump(t.root, &s.images(), false).expect_err("dump of a watch on a deleted file");
        eprintln!("expected error: {err}");
        assert!(err.contains("inotify") && err.contains("watched") && err.contains("deleted"), "unclear error: {err}");
        for p in t.pids() {
            assert_running_untraced(p);
        }
        t.check_all_same();
    });
}

/// An inotify instance with an event queued cannot be read back without
/// consuming it: the dump is refused by name, and the event is still there
/// for the victim (the tree runs on untouched).
#[test]
fn inotify_with_queued_events_is_refused_by_name() {
    run("inotifyq", 60, |cx| {
        let s = Scratch::new("dr_tree", "inotifyq");
        let dir = s.data().to_string_lossy().into_owned();
        let t = cx.start(&s, "holder", &["inotifyq", &dir], &["root", "a", "a1"]);
        let a1 = t.pid("a1");
        let fd: i32 = t.ready["a1"].get("inotify").parse().unwrap();
        // What is queued, seen through a duplicate of a1's descriptor.
        let queued = || -> i32 {
            // SAFETY: pidfd_open/pidfd_getfd/ioctl(FIONREAD) with a local out
            // value; the duplicate is closed again.
            unsafe {
                let pfd = libc::syscall(libc::SYS_pidfd_open, a1, 0) as i32;
                let dup = libc::syscall(libc::SYS_pidfd_getfd, pfd, fd, 0) as i32;
                let mut n = 0i32;
                libc::ioctl(dup, libc::FIONREAD, &mut n);
                libc::close(dup);
                libc::close(pfd);
                n
            }
        };
        let before = queued();
        assert!(before > 0);
        for leave_stopped in [false, true] {
            let err = do_dump(t.root, &s.root.join(format!("images-{leave_stopped}")), leave_stopped)
                .expect_err("dump of an inotify with queued events");
            eprintln!("expected error: {err}");
            assert!(
                err.contains("inotify") && err.contains("queued") && err.contains(&a1.to_string()),
                "unclear error: {err}"
            );
            for p in t.pids() {
                assert_running_untraced(p);
            }
            assert_eq!(queued(), before, "the queued event was consumed");
        }
        t.check_all_same();
    });
}

/// A pidfd of a task outside the tree cannot be restored: the dump names
/// it and the tree runs on. (One of a task that exited and was reaped
/// comes back: cli test pidfds_of_reaped_children_come_back.)
#[test]
fn pidfds_that_cannot_come_back_are_refused_by_name() {
    run("pidfd_refused", 60, |cx| {
        for (what, want) in [("pidfd-out", "outside the dumped tree")] {
            let s = Scratch::new("dr_tree", what);
            let t = cx.start(&s, "holder", &[what], &["root", "a", "a1"]);
            let err = do_dump(t.root, &s.images(), false).expect_err("dump of an unrestorable pidfd");
            eprintln!("expected error: {err}");
            let fd = t.ready["a1"].get("pidfd");
            assert!(
                err.contains("pidfd")
                    && err.contains(want)
                    && err.contains(&format!("fd {fd}"))
                    && err.contains(&t.pid("a1").to_string()),
                "unclear error: {err}"
            );
            for p in t.pids() {
                assert_running_untraced(p);
            }
            t.check_all_same();
        }
    });
}

/// A fanotify group keeps its flags and its marks (an inode mark with an
/// ignored mask, a mount mark) and reports changes made after restore.
#[test]
fn fanotify_marks_survive() {
    run("fanotify", 60, |cx| {
        let s = Scratch::new("dr_tree", "fanotify");
        let dir = s.data().to_string_lossy().into_owned();
        let m = s.data().join("m");
        std::fs::create_dir_all(&m).unwrap();
        let mp = std::ffi::CString::new(m.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: mounting a tmpfs on our own scratch directory.
        let r = unsafe { libc::mount(c"none".as_ptr(), mp.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) };
        assert_eq!(r, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        struct Umount(std::ffi::CString);
        impl Drop for Umount {
            fn drop(&mut self) {
                // SAFETY: detaching the tmpfs this test mounted.
                unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _umount = Umount(mp);
        let mut t = cx.start(&s, "fanotify", &[&dir], &["root"]);
        let fd = t.ready["root"].num("fan") as i32;
        let before = fdinfo_view(t.root, fd);
        assert!(before.contains("fanotify mnt_id:") && before.contains("ignored_mask:20"), "{before}");
        t.dump_and_restore(&s);
        assert_eq!(fdinfo_view(t.root, fd), before, "fanotify group changed");
        let c = t.check(&["root"]).remove("root").unwrap();
        c.assert_ok();
        c.assert_item("fan", "f:8,x:8");
        drop(t);
    });
}

/// A pidfd of a zombie of the tree comes back referring to the restored
/// zombie: it polls readable and waitid(P_PIDFD) reaps its exit status.
#[test]
fn pidfd_of_a_zombie_reaps_it_after_restore() {
    run("pidzombie", 60, |cx| {
        let s = Scratch::new("dr_tree", "pidzombie");
        let mut t = cx.start(&s, "pidzombie", &[], &["root"]);
        let z: i32 = t.ready["root"].num("z") as i32;
        register(cx.test, z);
        t.dump_and_restore(&s);
        let c = t.check(&["root"]).remove("root").unwrap();
        c.assert_item("zpoll", "1");
        c.assert_item("zstatus", "5");
        c.assert_ok();
    });
}

/// Proportional set size of `pid` in KiB (smaps_rollup): memory shared
/// copy-on-write counts once over all its sharers.
fn pss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A root and 8 children sharing 256 MiB never written since the fork: the
/// pages are stored once (the images hold about 256 MiB, not 2.25 GiB) and
/// shared copy-on-write again after restore (the tree's memory stays near
/// 256 MiB).
#[test]
fn copy_on_write_memory_stays_shared() {
    run("cow", 240, |cx| {
        const MIB: u64 = 256;
        let s = Scratch::new("dr_tree", "cow");
        let roles = ["root", "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
        let mut t = cx.start(&s, "cow", &["8", &MIB.to_string()], &roles);
        let pids: Vec<i32> = roles.iter().map(|r| t.pid(r)).collect();
        let before: u64 = pids.iter().map(|&p| pss_kib(p)).sum();
        t.dump_and_restore(&s);
        let image: u64 = std::fs::read_dir(s.images())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        let after: u64 = pids.iter().map(|&p| pss_kib(p)).sum();
        eprintln!(
            "cow tree: {} MiB of memory before the dump, pages images {} MiB, {} MiB after restore",
            before >> 10,
            image >> 20,
            after >> 10
        );
        assert!(image < (MIB + MIB / 4) << 20, "pages images hold {} MiB for {MIB} MiB shared", image >> 20);
        assert!(
            after < before + (MIB << 10) / 4,
            "restored tree uses {} MiB, {} MiB before",
            after >> 10,
            before >> 10
        );
        let got = t.check(&roles);
        for r in roles {
            got[r].assert_ok();
            got[r].assert_item("cow", "ok");
        }
        // Reading left the pages shared.
        let checked: u64 = pids.iter().map(|&p| pss_kib(p)).sum();
        assert!(checked < before + (MIB << 10) / 4, "after the checks: {} MiB", checked >> 10);
    });
}

/// Removes a SysV segment of a test's victim when the test ends (a
/// segment not marked removed outlives its tree).
struct RemoveShm(i32);

impl Drop for RemoveShm {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID of the victim's segment by id; no pointer.
        unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// child, root, child: each writes its round and reports the other's.
fn sysvshm_round(t: &Tree) -> [Line; 3] {
    let a = t.check(&["child"]).remove("child").unwrap();
    let b = t.check(&["root"]).remove("root").unwrap();
    let c = t.check(&["child"]).remove("child").unwrap();
    [a, b, c]
}

fn assert_sysvshm_state(t: &Tree, l: &Line) {
    l.assert_ok();
    let r = &t.ready["root"];
    l.assert_item("a_id", r.get("a_id"));
    l.assert_item("b_id", r.get("b_id"));
    l.assert_item("a_key", r.get("key"));
    l.assert_item("a_size", "12388");
    l.assert_item("a_mode", "640");
    l.assert_item("a_owner", "1234:4321");
    l.assert_item("a_cuid", "0:0");
    // A: root's, child's inherited one and child's read-only one; B: three
    // VMAs (split by mprotect) in each process.
    l.assert_item("a_nattch", "3");
    l.assert_item("b_nattch", "6");
    l.assert_item("b_key", "0x0");
    l.assert_item("b_dest", "true");
    l.assert_item("maps", "ok");
    l.assert_item("data", "ok");
}

/// SysV shared memory attached by a parent and its child comes back with
/// the same ids, key, mode, owner, creator, contents (holes and the tail
/// past the size included) and attachments (a read-only one, one split by
/// mprotect): nattch is what it was, a segment marked removed is still
/// marked removed, and a write by one process is seen by the other,
/// through the read-only attachment too.
#[test]
fn sysv_shared_memory_is_shared_after_restore() {
    run("sysvshm", 60, |cx| {
        let s = Scratch::new("dr_tree", "sysvshm");
        let mut t = cx.start(&s, "sysvshm", &[], &["root", "child"]);
        let _rm = RemoveShm(t.ready["root"].num("a_id") as i32);
        let before = sysvshm_round(&t);
        for l in &before {
            assert_sysvshm_state(&t, l);
        }
        before[0].assert_item("a_other", "100");
        before[1].assert_item("a_other", "1");
        before[2].assert_item("ro_other", "1");
        t.dump_and_restore(&s);
        let after = sysvshm_round(&t);
        for l in &after {
            assert_sysvshm_state(&t, l);
        }
        // child round 3, root round 2, child round 4.
        after[0].assert_item("a_other", "1");
        after[0].assert_item("b_other", "1");
        after[1].assert_item("a_other", "3");
        after[1].assert_item("b_other", "3");
        after[2].assert_item("a_other", "2");
        after[2].assert_item("b_other", "2");
        after[2].assert_item("ro_other", "2");
        for l in t.check_all_same().values() {
            assert_sysvshm_state(&t, l);
        }
    });
}

/// A SysV segment that a process outside the tree attaches too is refused
/// by name; the tree runs on untouched.
#[test]
fn sysv_segment_attached_outside_the_tree_is_refused() {
    run("sysvshm_outside", 60, |cx| {
        let s = Scratch::new("dr_tree", "sysvshm_outside");
        let t = cx.start(&s, "sysvshm", &[], &["root", "child"]);
        let id = t.ready["root"].num("a_id") as i32;
        let _rm = RemoveShm(id);
        // SAFETY: a read-only attachment of the victim's segment, detached below.
        let at = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
        assert_ne!(at as isize, -1, "shmat");
        let err = do_dump(t.root, &s.images(), false).expect_err("dump refused");
        // SAFETY: our attachment, referenced by nothing.
        unsafe { libc::shmdt(at) };
        assert!(err.contains(&format!("segment {id}")) && err.contains("outside the tree"), "unclear error: {err}");
        for p in t.pids() {
            assert_running_untraced(p);
        }
        for l in sysvshm_round(&t) {
            assert_sysvshm_state(&t, &l);
        }
    });
}
