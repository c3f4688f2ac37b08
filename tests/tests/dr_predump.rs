//! Iterative dumps: pre-dump twice, dump on top with --track-mem, restore.
//!
//! `victim_predump` rewrites a twentieth of its area between rounds and
//! drops a few pages; after the restore it checks every byte itself (pages
//! written after each round, pages written only before the first pre-dump,
//! pages never touched, dropped pages). The final dump must hold only the
//! pages changed since the last pre-dump. A restore whose parent is missing
//! is refused; a final dump that fails leaves the victim running with no
//! userfaultfd registration ("uw" in smaps).
use engine::dump::{dump, pre_dump, DumpOptions, PreDumpOptions};
use engine::restore::{restore, RestoreOptions};
use engine::sys::Pid;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim_predump");
static SERIAL: Mutex<()> = Mutex::new(());

fn wait_line(log: &Path, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = s.lines().find(|l| l.starts_with(prefix)) {
            if s.contains(&format!("{l}\n")) {
                return l.to_string();
            }
        }
        assert!(Instant::now() < deadline, "no {prefix:?} in the victim's log: {s}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL to the victim, which may be gone already (a failed test).
fn kill_quietly(pid: i32) {
    // SAFETY: a signal to the victim, by pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: a signal to the victim.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid} {sig}");
}

fn uffd_registered(pid: i32) -> bool {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    smaps.lines().filter(|l| l.starts_with("VmFlags:")).any(|l| l.split_whitespace().any(|f| f == "uw"))
}

fn tracker_of(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(dir).unwrap();
    let name = format!("@crtools-memtrack-{}-{}", md.dev(), md.ino());
    std::fs::read_to_string("/proc/net/unix").unwrap_or_default().contains(&name)
}

fn pre(pid: i32, dir: &Path, parent: Option<&str>) -> engine::dump::DumpStats {
    pre_dump(&PreDumpOptions { pid: Pid(pid), dir: dir.to_path_buf(), parent: parent.map(str::to_string) })
        .unwrap_or_else(|e| panic!("pre-dump into {}: {e}", dir.display()))
}

/// The head and records of image `name` of `dir`, of format `F`.
fn read_image<F: engine::image::ImageFormat>(dir: &Path, name: &str) -> (F::Head, Vec<F::Entry>) {
    let f = std::fs::File::open(dir.join(name)).unwrap();
    let r = engine::image::ImageReader::<F, _>::new(std::io::BufReader::new(f), name).unwrap();
    r.collect_entries().unwrap()
}

fn read_stats(dir: &Path) -> engine::image::stats::DumpStatsEntry {
    read_image::<engine::image::kinds::StatsDump>(dir, "stats-dump.img").0
}

/// The final dump of `pid` into `dir` on top of the pre-dump `parent`
/// (relative to `dir`), with --track-mem.
fn final_dump(pid: i32, dir: &Path, parent: &str) -> engine::error::Result<engine::dump::DumpStats> {
    let o = DumpOptions {
        pid: Pid(pid),
        dir: dir.to_path_buf(),
        parent: Some(parent.into()),
        track_mem: true,
        ..Default::default()
    };
    dump(&o)
}

/// Asks the restored victim (a child of the test, as subreaper) for its
/// verdict (SIGUSR2), ends and reaps it, and checks the verdict.
fn restored_verdict_ok(pid: i32, log: &Path) {
    signal(pid, libc::SIGUSR2);
    let v = wait_line(log, "verdict");
    signal(pid, libc::SIGKILL);
    let mut st = 0;
    // SAFETY: the restored victim is our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert!(v.starts_with("verdict ok"), "{v}");
}

/// A started victim (`args` after its log) in scratch directory `tag`,
/// once it said "ready": its scratch, log, process, pid and ready line.
struct Started {
    s: crtools_tests::Scratch,
    log: std::path::PathBuf,
    child: std::process::Child,
    pid: i32,
    ready: String,
}

/// Asks the victim for its verdict on its memory (SIGUSR2), ends it, and
/// checks the verdict.
fn verdict_ok(pid: i32, log: &Path, child: &mut std::process::Child) {
    signal(pid, libc::SIGUSR2);
    let v = wait_line(log, "verdict");
    signal(pid, libc::SIGKILL);
    let _ = child.wait();
    assert!(v.starts_with("verdict ok"), "{v}");
}

fn start_victim(tag: &str, args: &[&str]) -> Started {
    let s = crtools_tests::Scratch::new("predump", tag);
    let log = s.log();
    let child = std::process::Command::new(VICTIM).arg(&log).args(args).spawn().expect("start victim");
    let pid = child.id() as i32;
    let ready = wait_line(&log, "ready");
    Started { s, log, child, pid, ready }
}

#[test]
fn two_pre_dumps_then_a_dump_restore_every_byte() {
    if !crtools_tests::require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Started { s, log, mut child, pid, ready } = start_victim("chain", &["64"]);
    let area_pages = 64 * 256u64;
    let (pre1, pre2, fin) = (s.root.join("pre1"), s.root.join("pre2"), s.root.join("final"));
    crtools_tests::with_watchdog(
        "predump-chain",
        300,
        move || {
            let st1 = pre(pid, &pre1, None);
            assert!(st1.pages >= area_pages * 9 / 10 - 64, "first pre-dump wrote {} pages", st1.pages);
            assert!(tracker_of(&pre1), "no tracker for {}", pre1.display());
            assert!(uffd_registered(pid), "the victim is not registered after the pre-dump");
            signal(pid, libc::SIGUSR1);
            wait_line(&log, "round 1");
            let st2 = pre(pid, &pre2, Some("../pre1"));
            assert!(!tracker_of(&pre1), "the first tracker still runs");
            assert!(st2.pages_skipped_parent >= area_pages * 8 / 10, "second pre-dump: {st2:?}");
            assert!(st2.pages <= area_pages / 10, "second pre-dump wrote {} pages", st2.pages);
            signal(pid, libc::SIGUSR1);
            wait_line(&log, "round 2");
            let st = final_dump(pid, &fin, "../pre2").expect("final dump");
            let _ = child.wait();
            // Only the pages rewritten in round 2 (a twentieth) and a few of
            // the program's own.
            assert!(st.pages <= area_pages / 20 + 400, "final dump wrote {} pages", st.pages);
            assert!(st.pages_skipped_parent >= area_pages * 8 / 10, "final dump: {st:?}");
            let stats = read_stats(&fin);
            assert_eq!((stats.pages_written, stats.pages_skipped_parent), (st.pages, st.pages_skipped_parent));
            // The pages image (its stripes) holds exactly what the stats say.
            let pages_len: u64 = std::fs::read_dir(&fin)
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
                .map(|e| e.metadata().unwrap().len())
                .sum();
            assert_eq!(pages_len, st.pages * 4096);

            // A missing parent is refused before anything is created.
            std::fs::rename(&pre1, pre1.with_extension("moved")).unwrap();
            let ro = RestoreOptions { pid: Some(Pid(pid)), dir: fin.clone(), detach: true, ..Default::default() };
            let e = restore(&ro).expect_err("restore without its grandparent");
            assert!(e.to_string().contains("parent"), "{e}");
            assert!(std::fs::metadata(format!("/proc/{pid}")).is_err(), "a task was left behind");
            std::fs::rename(pre1.with_extension("moved"), &pre1).unwrap();
            // A pre-dump is not restorable by itself.
            let e = restore(&RestoreOptions { dir: pre2.clone(), ..ro.clone() }).expect_err("restore of a pre-dump");
            assert!(e.to_string().contains("pre-dump"), "{e}");

            restore(&ro).expect("restore");
            assert!(!uffd_registered(pid), "restored victim registered");
            restored_verdict_ok(pid, &log);
        },
        move || {
            kill_quietly(pid);
            format!("victim {pid} ({ready})")
        },
    );
}

/// Pre-dumps copy pages while the tree runs: a thread of the victim
/// rewrites every page of its area without pause, and unmaps and maps
/// again a side area every sweep, through two pre-dumps and the final dump.
/// After the restore it checks, sweep by sweep, that no page came back
/// stale (a pre-dump's copy of an older sweep) or torn.
#[test]
fn pages_copied_while_the_victim_writes_come_back_exact() {
    if !crtools_tests::require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Started { s, log, mut child, pid, ready } = start_victim("churn", &["32", "churn"]);
    let (pre1, pre2, fin) = (s.root.join("pre1"), s.root.join("pre2"), s.root.join("final"));
    crtools_tests::with_watchdog(
        "predump-churn",
        300,
        move || {
            let st1 = pre(pid, &pre1, None);
            assert!(st1.pages > 0, "first pre-dump: {st1:?}");
            std::thread::sleep(Duration::from_millis(30));
            pre(pid, &pre2, Some("../pre1"));
            std::thread::sleep(Duration::from_millis(30));
            final_dump(pid, &fin, "../pre2").expect("final dump");
            let _ = child.wait();
            let ro = RestoreOptions { pid: Some(Pid(pid)), dir: fin.clone(), detach: true, ..Default::default() };
            restore(&ro).expect("restore");
            restored_verdict_ok(pid, &log);
        },
        move || {
            kill_quietly(pid);
            format!("victim {pid} ({ready})")
        },
    );
}

/// A task that dies while a pre-dump copies its pages (the tree runs
/// again by then): the pre-dump still completes, stores none of what it
/// could not read, and leaves the task's VMAs out of the chain (the next
/// dump takes them in full).
#[test]
fn a_task_dying_while_its_pages_are_copied_leaves_the_chain_without_them() {
    if !crtools_tests::require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Started { s, mut child, pid, ready, .. } = start_victim("dying", &["512"]);
    let area: u64 = u64::from_str_radix(ready.split_whitespace().nth(2).unwrap().trim_start_matches("0x"), 16).unwrap();
    let area_pages = 512 * 256u64;
    let pre1 = s.root.join("pre1");
    crtools_tests::with_watchdog(
        "predump-dying",
        120,
        move || {
            // Killed the moment the pre-dump lets it run (its tracer goes).
            let killer = std::thread::spawn(move || {
                let tracer = || {
                    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                    st.lines().find_map(|l| l.strip_prefix("TracerPid:")).map(|v| v.trim() != "0").unwrap_or(false)
                };
                let t = Instant::now();
                while !tracer() {
                    assert!(t.elapsed() < Duration::from_secs(60), "the pre-dump never seized the victim");
                    std::thread::sleep(Duration::from_micros(200));
                }
                while tracer() {
                    std::thread::sleep(Duration::from_micros(200));
                }
                signal(pid, libc::SIGKILL);
            });
            let st = pre(pid, &pre1, None);
            killer.join().unwrap();
            let _ = child.wait();
            assert!(st.pages < area_pages / 2, "the copy was not cut short: {st:?}");
            let (_, tasks) = read_image::<engine::image::kinds::Chain>(&pre1, "chain.img");
            let t = tasks.iter().find(|t| t.pid == pid as u32).expect("the task in the chain");
            assert!(
                !t.vmas.iter().any(|&(s, e)| s <= area && area < e),
                "the area it could not read is still tracked: {:?}",
                t.vmas
            );
        },
        move || {
            kill_quietly(pid);
            format!("victim {pid}")
        },
    );
}

#[test]
fn a_failed_final_dump_leaves_the_victim_running_untracked() {
    if !crtools_tests::require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Started { s, log, mut child, pid, .. } = start_victim("failed", &["16", "refusable"]);
    let (pre1, fin) = (s.root.join("pre1"), s.root.join("final"));
    crtools_tests::with_watchdog(
        "predump-failed",
        300,
        move || {
            pre(pid, &pre1, None);
            assert!(uffd_registered(pid));
            // Round 1 opens a userfaultfd: the dump refuses it.
            signal(pid, libc::SIGUSR1);
            wait_line(&log, "round 1");
            let e = final_dump(pid, &fin, "../pre1").expect_err("dump of a userfaultfd");
            assert!(e.refused, "{e}");
            assert!(!uffd_registered(pid), "uw left on the victim after a failed dump");
            assert!(!tracker_of(&pre1), "the tracker still runs");
            // Still running, and its memory as it was.
            verdict_ok(pid, &log, &mut child);
        },
        move || {
            kill_quietly(pid);
            format!("victim {pid}")
        },
    );
}

/// A pre-dump whose images are deleted (no final dump will come) does not
/// leave its write tracking on the victim for ever: the tracker sees its
/// directory hold no dump any more and exits, which ends the tracking.
#[test]
fn a_pre_dump_deleted_lets_its_tracker_go() {
    if !crtools_tests::require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Started { s, log, mut child, pid, .. } = start_victim("deleted", &["16"]);
    let pre1 = s.root.join("pre1");
    crtools_tests::with_watchdog(
        "predump-deleted",
        120,
        move || {
            pre(pid, &pre1, None);
            assert!(uffd_registered(pid) && tracker_of(&pre1), "no tracking after the pre-dump");
            std::fs::remove_dir_all(&pre1).unwrap();
            let t = std::time::Instant::now();
            while uffd_registered(pid) {
                assert!(t.elapsed() < std::time::Duration::from_secs(20), "the tracking outlived its pre-dump");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            verdict_ok(pid, &log, &mut child);
        },
        move || {
            kill_quietly(pid);
            format!("victim {pid}")
        },
    );
}
