//! `restore --lazy-pages`: the tree runs before its memory is in place,
//! and what it reads is still exactly what was dumped, through the
//! changes a task makes to its address space while pages wait (fork,
//! MADV_DONTNEED, mremap).
mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");

fn crtools(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(CRTOOLS);
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run crtools")
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("crtools-lazy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn have_python3() -> bool {
    let ok = Command::new("python3").arg("-c").arg("pass").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: no python3");
    }
    ok
}

/// Kills (and reaps, as its subreaper) the restored victim when the test
/// ends, failed assertions included.
struct Victim(i32);

impl Drop for Victim {
    fn drop(&mut self) {
        // SAFETY: killing the process this test restored.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
        wait_gone(self.0);
    }
}

/// One test at a time: a dumped pid must stay free until it is restored.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits until `pid` is gone (reaped by us if it is our child: we are a
/// subreaper), at most 10 s.
fn wait_gone(pid: i32) {
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && t.elapsed() < Duration::from_secs(10) {
        // SAFETY: waitpid on one process of this test, without blocking.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls until `f` gives something, at most `secs` seconds.
fn poll<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t.elapsed() > Duration::from_secs(secs) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A python3 victim: 64 MiB of random data in a private anonymous mapping,
/// with the hash of each MiB. On SIGUSR1 it marks MiB 30 but its first
/// 8 KiB MADV_WIPEONFORK (splitting the VMA inside the server's copy
/// windows) and forks a child that checks every MiB (the marked part
/// must be zeros), empties MiB 5 (MADV_DONTNEED: it must read zeros), moves MiB
/// 10-19 elsewhere with mremap (they must hold their data there), checks
/// the rest, and writes the verdicts to the file named by argv[1].
const VICTIM: &str = r#"
import os, mmap, ctypes, hashlib, signal, time, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
MB = 1 << 20
N = 64
m = mmap.mmap(-1, N * MB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(N):
    m[i * MB:(i + 1) * MB] = os.urandom(MB)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
hashes = [hashlib.sha256(m[i * MB:(i + 1) * MB]).digest() for i in range(N)]
head30 = bytes(m[30 * MB:30 * MB + 8192])
head40 = bytes(m[40 * MB:40 * MB + 8192])
# mremap's target: a free range, reserved with PROT_NONE.
DST = libc.mmap(None, 10 * MB, 0, 0x22, -1, 0)
def good(i):
    return hashlib.sha256(m[i * MB:(i + 1) * MB]).digest() == hashes[i]
def check(sig, frm):
    res = []
    # MiB 30 but its first 8 KiB is wiped in the child (marked after the
    # restore, its pages still waiting): it must read zeros there, the rest
    # as dumped. The mark splits the VMA inside copy windows and chunks.
    m.madvise(18, 30 * MB + 8192, MB - 8192)  # MADV_WIPEONFORK
    pid = os.fork()
    if pid == 0:
        wiped = m[30 * MB + 8192:31 * MB] == bytes(MB - 8192) and m[30 * MB:30 * MB + 8192] == head30
        # The same one level down: the child marks part of MiB 40 (not
        # touched by it yet) and forks; the grandchild reads zeros there.
        m.madvise(18, 40 * MB + 8192, MB - 8192)
        g = os.fork()
        if g == 0:
            os._exit(0 if m[40 * MB + 8192:41 * MB] == bytes(MB - 8192) and m[40 * MB:40 * MB + 8192] == head40 else 1)
        _, gst = os.waitpid(g, 0)
        os._exit(0 if wiped and gst == 0 and all(good(i) for i in range(N) if i != 30) else 1)
    m.madvise(mmap.MADV_DONTNEED, 5 * MB, MB)
    res.append("dontneed-zero" if m[5 * MB:6 * MB] == bytes(MB) else "dontneed-NOT-ZERO")
    moved = libc.mremap(base + 10 * MB, 10 * MB, 10 * MB, 3, DST)
    res.append("mremap-ok" if moved == DST else "mremap-FAILED")
    ok = all(hashlib.sha256(ctypes.string_at(DST + (i - 10) * MB, MB)).digest() == hashes[i] for i in range(10, 20))
    res.append("moved-good" if ok else "moved-BAD")
    res.append("rest-good" if all(good(i) for i in range(N) if i != 5 and not 10 <= i < 20) else "rest-BAD")
    _, st = os.waitpid(pid, 0)
    res.append("child-good" if st == 0 else "child-BAD")
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(" ".join(res) + "\n")
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
signal.signal(signal.SIGUSR1, check)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"#;

/// Starts [`VICTIM`] (verdicts into `verdict`) in a session of its own;
/// returns once it is ready.
fn start_victim(verdict: &Path) -> std::process::Child {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(VICTIM).arg(verdict).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().expect("start python3");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

/// Dumps the victim, restores it with --lazy-pages and the background copy
/// held back for `hold_ms`, asks it to check itself; returns its verdicts
/// and the server's log.
fn lazy_round(tag: &str, hold_ms: u64, detach: bool, pre_dump: bool) -> (String, String) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = scratch(tag);
    let verdict = dir.join("verdict");
    let mut child = start_victim(&verdict);
    let pid = child.id() as i32;
    let pid_s = pid.to_string();
    let img = dir.join("img");
    let img_s = img.to_str().unwrap();
    let mut dump = vec!["dump", "-t", &pid_s, "-D", img_s];
    if pre_dump {
        // Most pages end up in the pre-dump's images: the lazy ones too.
        let pre = dir.join("pre");
        let o = crtools(&["pre-dump", "-t", &pid_s, "-D", pre.to_str().unwrap()], &[]);
        assert!(o.status.success(), "pre-dump: {}", String::from_utf8_lossy(&o.stderr));
        dump.extend(["--prev-images-dir", "../pre", "--track-mem"]);
    }
    let o = crtools(&dump, &[]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    wait_gone(pid);
    let hold = hold_ms.to_string();
    let env = [("CRTOOLS_LAZY_BACKGROUND_AFTER_MS", hold.as_str())];
    let victim = Victim(pid);
    let restorer = if detach {
        let o = crtools(&["restore", "-d", "--lazy-pages", "-v", "2", "-o", "restore.log", "-D", img_s], &env);
        assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
        None
    } else {
        let mut c = Command::new(CRTOOLS);
        c.args(["restore", "--lazy-pages", "-v", "2", "-o", "restore.log", "-D", img_s]).stdin(Stdio::null());
        c.env(env[0].0, env[0].1);
        let r = c.spawn().expect("run crtools restore");
        // The restore runs the tree in the foreground: wait until it does.
        poll(30, || std::fs::read_to_string(img.join("restore.log")).ok().filter(|l| l.contains("restored 1 tasks")))
            .expect("the tree was not restored");
        Some(r)
    };
    if hold_ms > 0 {
        // While pages wait: the server holds none of the tree's files, and
        // a dump of the tree is refused (its missing pages are not in it).
        let server = std::fs::read_to_string(img.join("restore.log"))
            .ok()
            .and_then(|l| l.split("served by pid ").nth(1)?.split_whitespace().next()?.parse::<i32>().ok())
            .expect("the server's pid in the restore log");
        let links = |p: i32| -> Vec<String> {
            std::fs::read_dir(format!("/proc/{p}/fd"))
                .map(|d| d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.to_string_lossy().into_owned())
                .filter(|l| l.starts_with("pipe:") || l.starts_with("socket:"))
                .collect()
        };
        let (mine, its) = (links(pid), links(server));
        assert!(!mine.is_empty(), "the victim holds no pipe");
        assert!(mine.iter().all(|l| !its.contains(l)), "the server holds the tree's {mine:?}: {its:?}");
        let again = dir.join("again");
        let o = crtools(&["dump", "-s", "-t", &pid_s, "-D", again.to_str().unwrap()], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "a dump while pages wait: {err}");
        assert!(err.contains("userfaultfd"), "{err}");
    }
    // SAFETY: signalling the process this test restored.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let got = poll(60, || std::fs::read_to_string(&verdict).ok()).unwrap_or_default();
    let log =
        poll(60, || std::fs::read_to_string(img.join("lazy-pages.log")).ok().filter(|l| l.contains("all in place")))
            .unwrap_or_else(|| std::fs::read_to_string(img.join("lazy-pages.log")).unwrap_or_default());
    // What the server measured, as `crtools show` decodes it.
    let shown = crtools(&["show", "-f", img.join("stats-lazy.img").to_str().unwrap()], &[]);
    let log = format!("{log}\n{}", String::from_utf8_lossy(&shown.stdout));
    drop(victim);
    if let Some(mut r) = restorer {
        let st = r.wait().expect("wait for crtools restore");
        assert_eq!(st.signal(), None, "crtools restore: {st:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    (got, log)
}

use std::os::unix::process::ExitStatusExt;

/// Every event arrives while pages still wait (the background copy is
/// held back 3 s): the child the task forks, the MiB it empties, the MiB
/// it moves all read exactly what they should, and the server follows
/// the fork and ends once every page is in.
#[test]
fn lazy_pages_stay_exact_through_fork_dontneed_and_mremap() {
    if !have_python3() {
        return;
    }
    let (got, log) = lazy_round("events", 3000, true, false);
    assert_eq!(got.trim(), "dontneed-zero mremap-ok moved-good rest-good child-good", "server log:\n{log}");
    assert!(log.contains("all in place") && log.contains("2 forks followed"), "server log:\n{log}");
    assert!(log.contains("complete_time") && log.contains("forks: 2"), "stats-lazy.img:\n{log}");
}

/// Without holding anything back, and with crtools waiting for the root
/// (no -d): the same verdicts, and the server still ends by itself.
#[test]
fn lazy_pages_without_detach_copy_everything_in() {
    if !have_python3() {
        return;
    }
    let (got, log) = lazy_round("nodetach", 0, false, false);
    assert_eq!(got.trim(), "dontneed-zero mremap-ok moved-good rest-good child-good", "server log:\n{log}");
    assert!(log.contains("all in place"), "server log:\n{log}");
}

/// After a pre-dump (the pages in the parent dump's images, only those
/// written since in the final dump's), the lazy VMAs' pages come from
/// both, with the same events while they wait.
#[test]
fn lazy_pages_come_from_the_parent_dump_too() {
    if !have_python3() {
        return;
    }
    let (got, log) = lazy_round("predump", 3000, true, true);
    assert_eq!(got.trim(), "dontneed-zero mremap-ok moved-good rest-good child-good", "server log:\n{log}");
    assert!(log.contains("all in place") && log.contains("2 forks followed"), "server log:\n{log}");
    // The parent's pages were the server's: more than the final dump holds.
    let waits: u64 =
        log.lines().filter_map(|l| l.split("waits for ").nth(1)?.split_whitespace().next()?.parse::<u64>().ok()).sum();
    assert!(waits >= 64 * 1024, "the server waited for {waits} KiB only:\n{log}");
}

/// A tree with no mapping large enough for lazy pages: restored as
/// without the option, and no server is started.
#[test]
fn lazy_pages_with_nothing_lazy_restore_as_usual() {
    let log = sleep_round("nothing", &[]);
    assert!(log.contains("nothing is lazy"), "{log}");
}

/// Every mapping with data lazy (CRTOOLS_LAZY_MIN_KIB=0): a sleep's few
/// pages are all in before the restore ends, and the server, done, must
/// not end before the engine has let the tree go (it was taken for an
/// unexpected task of the tree; zdtm with --lazy-pages).
#[test]
fn lazy_pages_all_in_before_the_restore_ends() {
    let log = sleep_round("early", &[("CRTOOLS_LAZY_MIN_KIB", "0")]);
    assert!(log.contains("left to the server") && !log.contains("nothing is lazy"), "{log}");
}

/// Dumps a sleep and restores it with --lazy-pages (environment `env`):
/// the restore's log. The sleep must come back running.
fn sleep_round(tag: &str, env: &[(&str, &str)]) -> String {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = scratch(tag);
    let mut cmd = Command::new("sleep");
    cmd.arg("100").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().expect("start sleep");
    let pid = child.id() as i32;
    let img = dir.join("img");
    let img_s = img.to_str().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let o = crtools(&["dump", "-t", &pid.to_string(), "-D", img_s], &[]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    wait_gone(pid);
    let o = crtools(&["restore", "-d", "--lazy-pages", "-o", "restore.log", "-D", img_s], env);
    let log = std::fs::read_to_string(img.join("restore.log")).unwrap_or_default();
    let alive = Path::new(&format!("/proc/{pid}")).exists();
    // SAFETY: killing the process this test restored.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_gone(pid);
    assert!(o.status.success(), "restore: {}\n{log}", String::from_utf8_lossy(&o.stderr));
    assert!(alive, "not restored");
    let _ = std::fs::remove_dir_all(&dir);
    log
}

/// Page data that is not what was dumped (one byte flipped in the pages
/// image): the tree runs at once, but the server's check finds it and
/// kills the restored task, saying why.
#[test]
fn lazy_pages_from_a_corrupt_image_kill_the_tree() {
    if !have_python3() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = scratch("corrupt");
    let mut child = start_victim(&dir.join("verdict"));
    let pid = child.id() as i32;
    let img = dir.join("img");
    let img_s = img.to_str().unwrap();
    let o = crtools(&["dump", "-t", &pid.to_string(), "-D", img_s], &[]);
    assert!(o.status.success(), "dump: {}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    wait_gone(pid);
    // The largest pages image, one byte in its middle.
    let pages = std::fs::read_dir(&img)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pages-"))
        .max_by_key(|p| p.metadata().map(|m| m.len()).unwrap_or(0))
        .expect("a pages image");
    let mut data = std::fs::read(&pages).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x5a;
    std::fs::write(&pages, &data).unwrap();
    let o = crtools(&["restore", "-d", "--lazy-pages", "-D", img_s], &[]);
    assert!(o.status.success(), "restore: {}", String::from_utf8_lossy(&o.stderr));
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && t.elapsed() < Duration::from_secs(20) {
        // SAFETY: waitpid on the task this test restored, without blocking.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = !Path::new(&format!("/proc/{pid}")).exists();
    // SAFETY: killing the process this test restored, if it still runs.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_gone(pid);
    let log = std::fs::read_to_string(img.join("lazy-pages.log")).unwrap_or_default();
    assert!(gone, "the task runs on with corrupt pages; server log:\n{log}");
    assert!(log.contains("were killed") && log.contains("checksum"), "server log:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
