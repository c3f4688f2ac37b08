//! Dump and restore of one process: the memory half.
//!
//! Each test starts `victim_mem` in some mode, dumps it with the engine
//! (which kills it), restores it detached (it becomes our child) and asks it,
//! with SIGUSR1, to check its own state. The victim writes its verdicts to a
//! log file; the tests assert on them. Tests run one at a time (a dumped pid
//! must stay free until its restore) and every wait has a timeout, so a hang
//! fails the test instead of blocking the run.
use engine::dump::{dump, DumpOptions};
use engine::restore::{restore, RestoreOptions};
use engine::sys::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim_mem");
/// Generous: the machine may be loaded, the victims are debug builds.
const TIMEOUT: Duration = Duration::from_secs(120);

/// One test at a time: a dumped pid must stay free until it is restored.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(PartialEq, Eq, Debug)]
enum State {
    Running,
    Dumped,
    Restored,
}

/// A victim under test, its scratch directory and its fate.
struct Case {
    dir: PathBuf,
    log: PathBuf,
    pid: i32,
    child: Option<Child>,
    state: State,
    _serial: MutexGuard<'static, ()>,
}

/// Runs `f` on its own thread and fails the test if it takes longer than
/// [`TIMEOUT`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no result after {TIMEOUT:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "crtools-dr-memory-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

impl Case {
    /// Starts the victim in `mode`; `{dir}` in `args` is the scratch directory.
    /// Returns once the victim logged "ready".
    fn start(mode: &str, args: &[&str]) -> Case {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = scratch_dir();
        let log = dir.join("victim.log");
        let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &dir.to_string_lossy())).collect();
        let child = Command::new(VICTIM).arg(mode).arg(&log).args(&args).spawn().expect("start victim_mem");
        let pid = child.id() as i32;
        let mut c = Case { dir, log, pid, child: Some(child), state: State::Running, _serial: serial };
        let ready = c.wait_line("ready", 1);
        assert_eq!(ready.split_whitespace().nth(1), Some(pid.to_string().as_str()), "ready line {ready:?}");
        c
    }

    fn images(&self) -> PathBuf {
        self.dir.join("images")
    }

    /// Complete lines of the log.
    fn lines(&self) -> Vec<String> {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let complete = match s.rfind('\n') {
            Some(i) => &s[..i],
            None => "",
        };
        complete.lines().map(str::to_string).collect()
    }

    /// The `nth` (1-based) line starting with `word`, waiting for it.
    fn wait_line(&mut self, word: &str, nth: usize) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let found: Vec<String> =
                self.lines().into_iter().filter(|l| l.split_whitespace().next() == Some(word)).collect();
            if let Some(l) = found.get(nth - 1) {
                return l.clone();
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("victim exited ({st}) before {word:?} #{nth}; log: {:?}", self.lines());
                }
            }
            if self.state == State::Restored {
                let mut st = 0;
                // SAFETY: WNOHANG poll of our own child.
                if unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) } == self.pid {
                    self.state = State::Dumped;
                    panic!(
                        "restored victim died (wait status {st:#x}) before {word:?} #{nth}; log: {:?}",
                        self.lines()
                    );
                }
            }
            assert!(Instant::now() < deadline, "no {word:?} #{nth} in the log after {TIMEOUT:?}: {:?}", self.lines());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks the victim to check itself; returns the verdict's details and
    /// fails the test on a bad verdict.
    fn ask(&mut self) -> String {
        let n = self.lines().iter().filter(|l| l.starts_with("verdict ")).count();
        // SAFETY: signals our own victim (a child, running or restored).
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGUSR1) }, 0, "signal the victim");
        let v = self.wait_line("verdict", n + 1);
        let rest = v.strip_prefix("verdict ").unwrap_or(&v);
        assert!(rest.starts_with("ok"), "victim says: {v}");
        rest.trim_start_matches("ok").trim().to_string()
    }

    /// Dumps the victim (killing it) and reaps it.
    fn dump(&mut self) -> engine::dump::DumpStats {
        assert_eq!(self.state, State::Running);
        let opts = DumpOptions {
            pid: Pid(self.pid),
            dir: self.images(),
            leave_stopped: false,
            shell_job: false,
            evasive_devices: false,
            ..Default::default()
        };
        let r = bounded("dump", move || dump(&opts).map_err(|e| e.to_string()));
        // The engine reaped it as its tracer; wait anyway so its pid is free.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.state = State::Dumped;
        r.unwrap_or_else(|e| panic!("dump failed: {e}"))
    }

    /// Restores the victim detached; it becomes our child.
    fn restore(&mut self) {
        assert_eq!(self.state, State::Dumped);
        let opts = RestoreOptions {
            pid: Some(Pid(self.pid)),
            dir: self.images(),
            detach: true,
            shell_job: false,
            ..Default::default()
        };
        let r = bounded("restore", move || restore(&opts).map_err(|e| e.to_string()));
        r.unwrap_or_else(|e| panic!("restore failed: {e}"));
        self.state = State::Restored;
    }

    fn dump_and_restore(&mut self) {
        self.dump();
        self.restore();
    }

    fn maps(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/maps", self.pid)).expect("read maps")
    }

    /// Size of the pages image(s) in bytes.
    fn pages_image_size(&self) -> u64 {
        std::fs::read_dir(self.images())
            .expect("images dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        match self.state {
            State::Running => {
                if let Some(c) = self.child.as_mut() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            State::Restored => {
                // SAFETY: the restored task is our child: kill and reap it by pid.
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                    let mut st = 0;
                    libc::waitpid(self.pid, &mut st, 0);
                }
            }
            State::Dumped => {}
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn root() -> bool {
    crtools_tests::require_root()
}

fn field<'a>(details: &'a str, key: &str) -> &'a str {
    details
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {details:?}"))
}

#[test]
fn counter_keeps_counting() {
    if !root() {
        return;
    }
    let mut c = Case::start("counter", &[]);
    let before: u64 = field(&c.ask(), "count").parse().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    c.dump_and_restore();
    let after: u64 = field(&c.ask(), "count").parse().unwrap();
    assert!(after > before, "count after restore {after} <= {before} before the dump");
    std::thread::sleep(Duration::from_millis(100));
    let later: u64 = field(&c.ask(), "count").parse().unwrap();
    assert!(later > after, "count stuck at {after} after restore (then {later})");
    assert_eq!(c.lines().iter().filter(|l| l.starts_with("ready")).count(), 1, "the victim started over");
}

fn bigmem(mib: usize) {
    let mut c = Case::start("bigmem", &[&mib.to_string()]);
    c.ask();
    let stats = c.dump();
    assert!(stats.pages >= (mib as u64) << 8, "only {} pages dumped for {mib} MiB", stats.pages);
    c.restore();
    let d = c.ask();
    assert_eq!(field(&d, "words"), ((mib << 20) / 8).to_string());
}

#[test]
fn memory_16mib_survives() {
    if !root() {
        return;
    }
    bigmem(16);
}

/// 256 MiB, as the issue asks: a few seconds in debug builds.
#[test]
fn memory_256mib_survives() {
    if !root() {
        return;
    }
    bigmem(256);
}

#[test]
fn vector_registers_survive() {
    if !root() {
        return;
    }
    let mut c = Case::start("vector", &[]);
    let ready = c.wait_line("ready", 1);
    let regs = ready.split_whitespace().nth(2).unwrap_or("").to_string();
    if is_x86_feature_detected!("avx512f") {
        assert_eq!(regs, "zmm0-31,k1-7");
    } else if is_x86_feature_detected!("avx") {
        assert_eq!(regs, "ymm0-15");
    }
    // One round before the dump shows the check itself works.
    let first = c.ask();
    assert_eq!(field(&first, "round"), "1");
    std::thread::sleep(Duration::from_millis(200));
    c.dump_and_restore();
    let d = c.ask();
    assert_eq!(field(&d, "round"), "2", "{d}");
    assert_eq!(field(&d, "regs"), regs);
    let it: u64 = field(&d, "iterations").parse().unwrap();
    assert!(it > 0, "{d}");
}

#[test]
fn file_mappings_private_and_shared() {
    if !root() {
        return;
    }
    let mut c = Case::start("filemap", &["{dir}"]);
    assert_eq!(c.ask(), "filemap checks=1");
    c.dump_and_restore();
    assert_eq!(c.ask(), "filemap checks=2");
    // The victim's write after restore reached the file (tag 5 + 1, page 3);
    // the write before the dump is still there (page 0).
    let shared = std::fs::read(c.dir.join("shared.dat")).unwrap();
    assert_eq!(shared.len(), 8 * 4096);
    let private = std::fs::read(c.dir.join("private.dat")).unwrap();
    assert_eq!(private.len(), 16 * 4096);
    assert!(shared[..4096] != shared[4096..8192], "page 0 was rewritten before the dump");
    assert_eq!(c.ask(), "filemap checks=3");
}

#[test]
fn protections_and_prot_none_data() {
    if !root() {
        return;
    }
    let mut c = Case::start("protect", &[]);
    assert_eq!(c.ask(), "protect ok");
    c.dump_and_restore();
    assert_eq!(c.ask(), "protect ok");
}

#[test]
fn madv_dontneed_holes() {
    if !root() {
        return;
    }
    let mut c = Case::start("dontneed", &[]);
    assert_eq!(c.ask(), "dontneed ok");
    c.dump_and_restore();
    assert_eq!(c.ask(), "dontneed ok");
}

#[test]
fn sparse_noreserve_gigabyte() {
    if !root() {
        return;
    }
    let mut c = Case::start("sparse", &[]);
    let d = c.ask();
    let base = u64::from_str_radix(field(&d, "base").trim_start_matches("0x"), 16).unwrap();
    c.dump();
    let size = c.pages_image_size();
    assert!(size < 64 << 20, "pages image is {size} bytes for a dozen touched pages");
    c.restore();
    assert_eq!(c.ask(), d);
    let maps = c.maps();
    let line = maps.lines().find(|l| l.starts_with(&format!("{base:x}-"))).expect("the reservation is mapped");
    let (s, e) = line.split_whitespace().next().unwrap().split_once('-').unwrap();
    let len = u64::from_str_radix(e, 16).unwrap() - u64::from_str_radix(s, 16).unwrap();
    assert_eq!(len, 1 << 30, "{line}");
}

#[test]
fn brk_heap_survives_and_grows() {
    if !root() {
        return;
    }
    let mut c = Case::start("brk", &[]);
    let before = c.ask();
    let maps = c.maps();
    c.dump_and_restore();
    assert_eq!(c.ask(), before);
    let heap =
        |m: &str| m.lines().find(|l| l.ends_with("[heap]")).map(|l| l.split_whitespace().next().unwrap().to_string());
    assert_eq!(heap(&c.maps()), heap(&maps), "the [heap] mapping");
    assert!(heap(&maps).is_some(), "no [heap] in {maps}");
}

#[test]
fn vdso_clocks_advance() {
    if !root() {
        return;
    }
    let mut c = Case::start("vdso", &[]);
    let before = c.ask();
    c.dump_and_restore();
    let after = c.ask();
    for k in ["monotonic", "realtime"] {
        let b: i128 = field(&before, k).parse().unwrap();
        let a: i128 = field(&after, k).parse().unwrap();
        assert!(a > b, "{k}: {a} ms after restore, {b} ms before");
    }
    c.ask();
}

/// A task that unmapped its vDSO areas comes back without them (restore
/// refused it: "vDSO layout differs").
#[test]
fn unmapped_vdso_stays_unmapped() {
    if !root() {
        return;
    }
    let mut c = Case::start("novdso", &[]);
    assert_eq!(c.ask(), "novdso");
    c.dump_and_restore();
    assert_eq!(c.ask(), "novdso");
}

/// Shared anonymous memory with holes, an object mapped at an offset and
/// aliased, and a private mapping of an object (its own copied page and
/// the object's pages, writes not crossing) come back the same.
#[test]
fn shared_anonymous_memory() {
    if !root() {
        return;
    }
    let mut c = Case::start("shmem", &[]);
    assert_eq!(c.ask(), "shmem checks=1");
    c.dump_and_restore();
    assert_eq!(c.ask(), "shmem checks=2");
    assert_eq!(c.ask(), "shmem checks=3");
}

/// The fields of a maps line that must survive: range, perms, offset, path.
fn maps_key(maps: &str) -> Vec<String> {
    maps.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f.get(5..).map(|p| p.join(" ")).unwrap_or_default();
            format!("{} {} {} {path}", f[0], f[1], f[2])
        })
        .collect()
}

fn diff(a: &[String], b: &[String]) -> String {
    let mut out = String::new();
    for l in a.iter().filter(|l| !b.contains(l)) {
        out.push_str(&format!("\n  - {l}"));
    }
    for l in b.iter().filter(|l| !a.contains(l)) {
        out.push_str(&format!("\n  + {l}"));
    }
    out
}

/// (range, VmFlags) of every VMA in /proc/pid/smaps, flags sorted; the
/// soft-dirty bit is left out (it says what was written since when), and
/// so is `gu` (VM_MAYBE_GUARD: "guards may be here", a hint for fork that
/// sticks to whatever VMA ever merged with one holding guards).
fn vm_flags(pid: i32) -> Vec<String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let mut out = Vec::new();
    let mut range = String::new();
    for l in smaps.lines() {
        if let Some(f) = l.strip_prefix("VmFlags:") {
            let mut f: Vec<&str> = f.split_whitespace().filter(|&x| x != "sd" && x != "gu").collect();
            f.sort_unstable();
            out.push(format!("{range} {}", f.join(" ")));
        } else if l.split_whitespace().next().is_some_and(|w| w.contains('-') && !w.ends_with(':')) {
            range = l.split_whitespace().next().unwrap_or("").to_string();
        }
    }
    out
}

#[test]
fn vm_flags_identical_after_restore() {
    if !root() {
        return;
    }
    let mut c = Case::start("layout", &["{dir}"]);
    c.ask();
    let before = vm_flags(c.pid);
    c.dump_and_restore();
    let after = vm_flags(c.pid);
    assert!(before == after, "VmFlags differ after restore:{}", diff(&before, &after));
}

#[test]
fn maps_identical_after_restore() {
    if !root() {
        return;
    }
    let mut c = Case::start("layout", &["{dir}"]);
    c.ask();
    let before = c.maps();
    c.dump_and_restore();
    let after = c.maps();
    let (b, a) = (maps_key(&before), maps_key(&after));
    assert!(b == a, "maps differ after restore:{}\nbefore:\n{before}\nafter:\n{after}", diff(&b, &a));
    c.ask();
    assert_eq!(maps_key(&c.maps()), a, "maps changed by the checks");
}

#[test]
fn image_dir_is_cleaned_up() {
    // The helper itself: a case's scratch directory goes with it.
    if !root() {
        return;
    }
    let dir;
    {
        let mut c = Case::start("dontneed", &[]);
        dir = c.dir.clone();
        c.dump();
        assert!(Path::new(&c.images()).join("inventory.img").exists());
    }
    assert!(!dir.exists(), "scratch dir left behind");
}

#[test]
fn mm_flags_guards_mlock_thp() {
    if !root() {
        return;
    }
    let mut c = Case::start("mmflags", &["{dir}"]);
    let first = c.ask();
    assert!(first.starts_with("mmflags checks=1"), "{first}");
    let before = vm_flags(c.pid);
    c.dump_and_restore();
    let after = vm_flags(c.pid);
    assert!(before == after, "VmFlags differ after restore:{}", diff(&before, &after));
    let d = c.ask();
    assert_eq!(d, first.replace("checks=1", "checks=2"));
    assert_eq!(field(&d, "guards"), "yes", "this kernel has MADV_GUARD_INSTALL");
    assert_eq!(c.ask(), first.replace("checks=1", "checks=3"));
}

#[test]
fn mlockall_future() {
    if !root() {
        return;
    }
    let mut c = Case::start("mlockall", &[]);
    assert_eq!(c.ask(), "mlockall ok");
    let before = vm_flags(c.pid);
    c.dump_and_restore();
    let after = vm_flags(c.pid);
    assert!(before == after, "VmFlags differ after restore:{}", diff(&before, &after));
    assert_eq!(c.ask(), "mlockall ok");
}

#[test]
fn aio_contexts_keep_unreaped_completions() {
    if !root() {
        return;
    }
    let mut c = Case::start("aio", &["{dir}"]);
    let first = c.ask();
    assert!(first.starts_with("aio checks=1 ") && first.ends_with("pending=kept"), "{first}");
    let nr = field(&first, "nr").to_string();
    let (maps_before, flags_before) = (maps_key(&c.maps()), vm_flags(c.pid));
    assert_eq!(maps_before.iter().filter(|l| l.ends_with("/[aio] (deleted)")).count(), 2, "{maps_before:?}");
    c.dump();
    // `show` prints both contexts with what is left to reap.
    let mut out = Vec::new();
    engine::show::show(
        &engine::show::ShowOptions { dir: Some(c.images()), file: None, contents: false, json: false },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out);
    for want in ["aio-ring", "pending: 10", "pending: 2", &format!("nr: {nr}"), "magic: 0xa10a10a1"] {
        assert!(text.contains(want), "show lacks {want:?}:\n{text}");
    }
    c.restore();
    let (maps_after, flags_after) = (maps_key(&c.maps()), vm_flags(c.pid));
    assert!(maps_before == maps_after, "maps differ after restore:{}", diff(&maps_before, &maps_after));
    assert!(flags_before == flags_after, "VmFlags differ after restore:{}", diff(&flags_before, &flags_after));
    assert_eq!(c.ask(), format!("aio checks=2 nr={nr} pending=reaped"));
    assert_eq!(c.ask(), format!("aio checks=3 nr={nr} pending=reaped"));
}

#[test]
fn aio_ring_made_read_only_is_refused_untouched() {
    if !root() {
        return;
    }
    let mut c = Case::start("aio", &["{dir}", "ro"]);
    let first = c.ask();
    assert!(first.starts_with("aio checks=1 ") && first.ends_with("pending=kept"), "{first}");
    let maps_before = c.maps();
    let opts = DumpOptions { pid: Pid(c.pid), dir: c.images(), ..Default::default() };
    let err = bounded("dump", move || dump(&opts).map(|_| ()).map_err(|e| e.to_string()))
        .expect_err("a dump of a read-only AIO ring must be refused");
    eprintln!("expected error: {err}");
    for want in [c.pid.to_string().as_str(), "AIO context", "mprotect"] {
        assert!(err.contains(want), "error does not name {want:?}: {err}");
    }
    assert!(!c.images().join("inventory.img").exists(), "a refused dump wrote an inventory");
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    assert!(status.lines().any(|l| l.split_whitespace().eq(["TracerPid:", "0"])), "still traced:\n{status}");
    assert_eq!(c.maps(), maps_before, "maps changed by the refused dump");
    // Untouched: the pending completions are still there, then new ones work.
    let nr = field(&first, "nr").to_string();
    assert_eq!(c.ask(), format!("aio checks=2 nr={nr} pending=reaped"));
}

/// The pool of 2 MiB huge pages, set for one test and put back after it.
struct HugePool {
    old: u64,
}

const HUGE_DIR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

fn huge_read(f: &str) -> u64 {
    std::fs::read_to_string(format!("{HUGE_DIR}/{f}")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn huge_set(n: u64) {
    let _ = std::fs::write(format!("{HUGE_DIR}/nr_hugepages"), n.to_string());
}

/// Pages a new mapping may still take.
fn huge_available() -> u64 {
    huge_read("free_hugepages").saturating_sub(huge_read("resv_hugepages"))
}

/// Huge page tests change a machine-wide pool: one at a time.
static HUGE_LOCK: Mutex<()> = Mutex::new(());

impl HugePool {
    /// Grows the pool so that `n` more pages are available; None (with a
    /// message) if the kernel cannot give them.
    fn grow(n: u64) -> Option<HugePool> {
        if !Path::new(HUGE_DIR).exists() {
            eprintln!("skipped: this kernel has no 2 MiB huge pages");
            return None;
        }
        let old = huge_read("nr_hugepages");
        let pool = HugePool { old };
        let have = huge_available();
        huge_set(old + n);
        if huge_available() < have + n {
            eprintln!("skipped: the kernel gives only {} of {n} more 2 MiB huge pages", huge_available() - have);
            return None;
        }
        Some(pool)
    }

    /// Shrinks the pool until exactly `n` pages are available (pages in
    /// use by others stay theirs).
    fn leave(&self, n: u64) {
        let nr = huge_read("nr_hugepages");
        let avail = huge_available();
        huge_set(nr + n - avail.min(nr + n));
    }
}

impl Drop for HugePool {
    fn drop(&mut self) {
        huge_set(self.old);
    }
}

/// Waits until `n` huge pages are available (a killed victim's are freed
/// as its address space goes).
fn huge_wait_available(n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while huge_available() < n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Huge pages the `hugetlb` victim takes, and so its restore: 3 reserved
/// (private), 1 written (MAP_NORESERVE), 4 reserved (shared), 3 reserved
/// (the object mapped at an offset).
const HUGETLB_VICTIM_PAGES: u64 = 11;

#[test]
fn hugetlb_private_and_shared() {
    if !root() {
        return;
    }
    let _huge = HUGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_pool) = HugePool::grow(HUGETLB_VICTIM_PAGES) else { return };
    let mut c = Case::start("hugetlb", &[]);
    assert_eq!(c.ask(), "hugetlb checks=1");
    let maps_before = maps_key(&c.maps());
    c.dump();
    assert!(huge_wait_available(HUGETLB_VICTIM_PAGES), "the dumped victim's huge pages were not freed");
    c.restore();
    assert_eq!(maps_key(&c.maps()), maps_before);
    assert_eq!(c.ask(), "hugetlb checks=2");
    assert_eq!(c.ask(), "hugetlb checks=3");
}

#[test]
fn hugetlb_restore_refused_without_enough_huge_pages() {
    if !root() {
        return;
    }
    let _huge = HUGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pool) = HugePool::grow(HUGETLB_VICTIM_PAGES) else { return };
    let mut c = Case::start("hugetlb", &[]);
    assert_eq!(c.ask(), "hugetlb checks=1");
    c.dump();
    assert!(huge_wait_available(HUGETLB_VICTIM_PAGES), "the dumped victim's huge pages were not freed");
    pool.leave(HUGETLB_VICTIM_PAGES - 1);
    let opts = RestoreOptions { pid: Some(Pid(c.pid)), dir: c.images(), detach: true, ..Default::default() };
    let err = bounded("restore", move || restore(&opts).map_err(|e| e.to_string()))
        .expect_err("restore succeeded with too few huge pages");
    let want =
        format!("needs {HUGETLB_VICTIM_PAGES} free huge pages of 2048kB, the pool has {}", HUGETLB_VICTIM_PAGES - 1);
    assert!(err.contains(&want), "{err}");
    // Nothing was made: no task, no page taken.
    // SAFETY: probes a pid with signal 0.
    assert_ne!(unsafe { libc::kill(c.pid, 0) }, 0, "a task with the victim's pid runs");
    assert_eq!(huge_available(), HUGETLB_VICTIM_PAGES - 1);
}
