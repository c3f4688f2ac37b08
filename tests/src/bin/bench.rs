//! `make bench`: dump and restore of a random-memory victim, side by side
//! with this machine's own limits measured in the same run.
//!
//! Usage: `bench CRTOOLS [--mib N]... [--dir LABEL=PATH]...`
//!
//! For each image directory (by default tmpfs and the disk under target/):
//! - baseline dump: process_vm_readv of the victim's memory in 4 MiB chunks
//!   written to a file in that directory;
//! - `crtools dump`, timed, with crtools' peak RSS;
//! - baseline restore: pread of the pages image into fresh anonymous memory;
//! - `crtools restore -d`, timed, then the victim checks its memory itself.
//!
//! Ratios are crtools time / baseline time.
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    secs: f64,
    maxrss_kib: i64,
}

fn run_timed(cmd: &mut Command) -> Run {
    let t = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).spawn().expect("spawn");
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4");
    std::mem::forget(child.stdin.take());
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{cmd:?} failed: status {status:#x}");
    let _ = child.try_wait();
    Run { secs, maxrss_kib: ru.ru_maxrss }
}

fn wait_line(log: &Path, pat: &str, timeout: Duration) -> String {
    let t = Instant::now();
    loop {
        if let Ok(f) = File::open(log) {
            for l in BufReader::new(f).lines().map_while(Result::ok) {
                if l.contains(pat) {
                    return l;
                }
            }
        }
        assert!(t.elapsed() < timeout, "no {pat:?} in {} after {timeout:?}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn baseline_dump(pid: i32, mib: usize, out: &Path) -> f64 {
    // The victim's big buffer is its largest anonymous mapping.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let (start, end) = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(5).is_none())
        .filter_map(|l| {
            let r = l.split_whitespace().next()?;
            let (a, b) = r.split_once('-')?;
            Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
        })
        .max_by_key(|(a, b)| b - a)
        .unwrap();
    let len = ((end - start) as usize).min(mib << 20);
    let mut f = File::create(out).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let t = Instant::now();
    let mut done = 0;
    while done < len {
        let n = buf.len().min(len - done);
        let local = libc::iovec { iov_base: buf.as_mut_ptr() as *mut _, iov_len: n };
        let remote = libc::iovec { iov_base: (start as usize + done) as *mut _, iov_len: n };
        // SAFETY: one local and one remote iovec of n bytes; buf holds n bytes.
        let r = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        assert_eq!(r, n as isize, "process_vm_readv");
        f.write_all(&buf[..n]).unwrap();
        done += n;
    }
    drop(f);
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(out).unwrap();
    secs
}

fn baseline_restore(pages: &Path) -> f64 {
    let f = File::open(pages).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let t = Instant::now();
    // SAFETY: a fresh private anonymous mapping of len bytes.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: p is len bytes of writable memory we own.
    let mem = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len) };
    let mut done = 0;
    while done < len {
        let n = f.read_at(&mut mem[done..(done + (64 << 20)).min(len)], done as u64).unwrap();
        assert!(n > 0);
        done += n;
    }
    let secs = t.elapsed().as_secs_f64();
    // SAFETY: unmapping what we mapped; `mem` is not used after.
    unsafe { libc::munmap(p, len) };
    secs
}

/// Dumps and restores a victim started with `args`, returns (dump, restore)
/// runs; `procs` processes must report mem=ok after restore.
fn dump_restore(crtools: &Path, victim: &Path, work: &Path, args: &[String], procs: usize) -> (Run, Run) {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).unwrap();
    let log = work.join("victim.log");
    let mut v = Command::new(victim)
        .args(&args[..1])
        .arg(&log)
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start victim");
    let pid = v.id() as i32;
    wait_line(&log, "ready", Duration::from_secs(300));
    let img = work.join("img");
    let d = run_timed(Command::new(crtools).arg("dump").arg("-D").arg(&img).arg("-t").arg(pid.to_string()));
    v.wait().unwrap();
    reap_all();
    let r =
        run_timed(Command::new(crtools).arg("restore").arg("-d").arg("-D").arg(&img).arg("-t").arg(pid.to_string()));
    // SAFETY: signalling the restored tree (its root leads its process group).
    unsafe { libc::kill(-pid, libc::SIGUSR1) };
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let done: Vec<&str> = text.lines().filter(|l| l.starts_with("status")).collect();
        if done.len() >= procs {
            assert!(done.iter().all(|l| l.contains("mem=ok")), "victims after restore: {done:?}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(300), "only {} of {procs} verdicts", done.len());
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: killing the restored tree we created.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    reap_all();
    let _ = std::fs::remove_dir_all(work);
    (d, r)
}

/// Reaps every child and re-parented orphan that is already dead or dying.
fn reap_all() {
    let t = Instant::now();
    loop {
        // SAFETY: waitpid on any child; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL) };
        if r < 0 || t.elapsed() > Duration::from_secs(10) {
            return;
        }
        if r == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Rounds per measurement; the best of them is reported.
const REPS: usize = 3;

/// One side-by-side round: [dump, pvr+write, restore, pread] seconds.
struct Round {
    times: [f64; 4],
    bytes: f64,
    rss: (i64, i64),
}

fn one_round(crtools: &Path, victim: &Path, base: &Path, mib: usize) -> Round {
    let work = base.join(format!("crtools-bench-{}-{mib}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let log = work.join("victim.log");
    let mut v = Command::new(victim)
        .arg("ticker")
        .arg(&log)
        .arg(mib.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start victim");
    let pid = v.id() as i32;
    wait_line(&log, "ready", Duration::from_secs(120));

    let base_dump = baseline_dump(pid, mib, &work.join("baseline.bin"));
    let img = work.join("img");
    let d = run_timed(Command::new(crtools).arg("dump").arg("-D").arg(&img).arg("-t").arg(pid.to_string()));
    v.wait().unwrap();
    let pages = std::fs::read_dir(&img)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("pages-"))
        .unwrap();
    let bytes = pages.metadata().unwrap().len() as f64;
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--baseline-restore")
        .arg(&pages)
        .output()
        .expect("baseline restore");
    let base_rest: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("baseline seconds");
    let r =
        run_timed(Command::new(crtools).arg("restore").arg("-d").arg("-D").arg(&img).arg("-t").arg(pid.to_string()));
    // SAFETY: signalling the restored victim by its pid.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let verdict = wait_line(&log, "status", Duration::from_secs(120));
    // SAFETY: killing and reaping the restored victim (our child via subreaper).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    assert!(verdict.contains("mem=ok"), "victim after restore: {verdict}");
    let _ = std::fs::remove_dir_all(&work);
    Round { times: [d.secs, base_dump, r.secs, base_rest], bytes, rss: (d.maxrss_kib, r.maxrss_kib) }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The restore baseline runs in its own process: its 1 GiB peak must not
    // become the peak RSS that exec reports for crtools spawned after it.
    if args.get(1).map(String::as_str) == Some("--baseline-restore") {
        println!("{}", baseline_restore(Path::new(&args[2])));
        return;
    }
    let crtools = PathBuf::from(args.get(1).expect("usage: bench CRTOOLS [--mib N]... [--dir LABEL=PATH]..."));
    let mut sizes = Vec::new();
    let mut dirs = Vec::new();
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--mib" => sizes.push(args[i + 1].parse::<usize>().expect("--mib N")),
            "--dir" => {
                let (l, p) = args[i + 1].split_once('=').expect("--dir LABEL=PATH");
                dirs.push((l.to_string(), PathBuf::from(p)));
            }
            a => panic!("unknown argument {a}"),
        }
        i += 2;
    }
    if sizes.is_empty() {
        sizes = vec![256, 1024];
    }
    if dirs.is_empty() {
        dirs.push(("tmpfs".into(), PathBuf::from("/dev/shm")));
        dirs.push(("disk".into(), std::env::current_dir().unwrap().join("target")));
    }
    let victim = std::env::current_exe().unwrap().with_file_name("victim");
    // Restored victims are re-parented to us, so we can reap them.
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    println!(
        "{:<6} {:>6} | {:>8} {:>8} {:>6} {:>7} | {:>8} {:>8} {:>6} | {:>9} {:>9}",
        "where", "MiB", "dump s", "pvr+wr s", "ratio", "GB/s", "rest. s", "pread s", "ratio", "dump RSS", "rest. RSS"
    );
    for (label, base) in &dirs {
        for &mib in &sizes {
            // Best of REPS rounds, each measuring everything side by side:
            // this machine is shared and noisy.
            let mut best = [f64::MAX; 4];
            let (mut bytes, mut rss) = (0f64, (0i64, 0i64));
            for _ in 0..REPS {
                let m = one_round(&crtools, &victim, base, mib);
                for (b, v) in best.iter_mut().zip(m.times) {
                    *b = b.min(v);
                }
                bytes = m.bytes;
                rss = (rss.0.max(m.rss.0), rss.1.max(m.rss.1));
            }
            let [d, base_dump, r, base_rest] = best;
            println!(
                "{label:<6} {mib:>6} | {:>8.3} {:>8.3} {:>6.2} {:>7.2} | {:>8.3} {:>8.3} {:>6.2} | {:>6} MiB {:>6} MiB",
                d,
                base_dump,
                d / base_dump,
                bytes / d / 1e9,
                r,
                base_rest,
                r / base_rest,
                rss.0 / 1024,
                rss.1 / 1024
            );
        }
    }

    // A tree of 16 processes x 4 threads x 64 MiB against one process with
    // the same 1 GiB, side by side.
    println!();
    println!(
        "{:<6} {:>22} | {:>8} {:>8} {:>6} | {:>8} {:>8} {:>6}",
        "where", "victim", "dump s", "1 proc", "ratio", "rest. s", "1 proc", "ratio"
    );
    for (label, base) in &dirs {
        let work = base.join(format!("crtools-bench-tree-{}", std::process::id()));
        let one: Vec<String> = ["ticker", "1024"].iter().map(|s| s.to_string()).collect();
        let (d1, r1) = dump_restore(&crtools, &victim, &work, &one, 1);
        let tree: Vec<String> = ["forest", "16", "4", "64"].iter().map(|s| s.to_string()).collect();
        let (dt, rt) = dump_restore(&crtools, &victim, &work, &tree, 16);
        println!(
            "{label:<6} {:>22} | {:>8.3} {:>8.3} {:>6.2} | {:>8.3} {:>8.3} {:>6.2}",
            "16 procs x 4 thr x 64M",
            dt.secs,
            d1.secs,
            dt.secs / d1.secs,
            rt.secs,
            r1.secs,
            rt.secs / r1.secs
        );
    }
}
