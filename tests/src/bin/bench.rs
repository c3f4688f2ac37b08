//! `make bench`: dump and restore of a random-memory victim, side by side
//! with this machine's own limits measured in the same run.
//!
//! Usage: `bench CRTOOLS [--old CRTOOLS2] [--mib N]... [--dir LABEL=PATH]...`
//!
//! For each image directory (by default tmpfs and the disk under target/)
//! and size, each round measures, one after the other:
//! - the machine's single-copy limits: process_vm_readv of the victim's
//!   memory into a 4 MiB buffer (alone), and write of as many bytes from a
//!   4 MiB buffer into a file of that directory (alone); the limit is the
//!   slower of the two;
//! - `crtools dump`, timed, with crtools' peak RSS and the frozen time it
//!   recorded in stats-dump.img;
//! - baseline restore: pread of the pages image (all its stripes) into fresh
//!   anonymous memory;
//! - `crtools restore -d`, timed, then the victim checks its memory itself;
//! - the same dump and restore with `--old` (another build, e.g. main's) on
//!   a fresh victim, so both builds are compared in the same run.
//!
//! The best of several rounds is kept for each column. "of limit" is the
//! limit's time divided by crtools' time (1.00: as fast as one copy).
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
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
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

/// The victim's big buffer: its largest anonymous mapping, at most `mib` MiB.
fn victim_buffer(pid: i32, mib: usize) -> (u64, usize) {
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
    (start, ((end - start) as usize).min(mib << 20))
}

/// The machine's single copies of the victim's memory, timed apart:
/// (process_vm_readv into a 4 MiB buffer, write of as many bytes from a
/// 4 MiB buffer into `out`).
fn baseline_dump(pid: i32, mib: usize, out: &Path) -> (f64, f64) {
    let (start, len) = victim_buffer(pid, mib);
    let mut buf = vec![1u8; 4 << 20];
    let t = Instant::now();
    let mut done = 0;
    while done < len {
        let n = buf.len().min(len - done);
        let local = libc::iovec { iov_base: buf.as_mut_ptr() as *mut _, iov_len: n };
        let remote = libc::iovec { iov_base: (start as usize + done) as *mut _, iov_len: n };
        // SAFETY: one local and one remote iovec of n bytes; buf holds n bytes.
        let r = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        assert_eq!(r, n as isize, "process_vm_readv");
        done += n;
    }
    let pvr = t.elapsed().as_secs_f64();
    let mut f = File::create(out).unwrap();
    let t = Instant::now();
    let mut done = 0;
    while done < len {
        let n = buf.len().min(len - done);
        f.write_all(&buf[..n]).unwrap();
        done += n;
    }
    drop(f);
    let wr = t.elapsed().as_secs_f64();
    std::fs::remove_file(out).unwrap();
    (pvr, wr)
}

/// pread of the pages images `pages` (a task's stripes), one after the
/// other, into one fresh anonymous mapping of their total length.
fn baseline_restore(pages: &[PathBuf]) -> f64 {
    let files: Vec<File> = pages.iter().map(|p| File::open(p).unwrap()).collect();
    let len: usize = files.iter().map(|f| f.metadata().unwrap().len() as usize).sum();
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
    let mut at = 0;
    for f in &files {
        let end = at + f.metadata().unwrap().len() as usize;
        let mut done = 0;
        while at + done < end {
            let n = f.read_at(&mut mem[at + done..(at + done + (64 << 20)).min(end)], done as u64).unwrap();
            assert!(n > 0);
            done += n;
        }
        at = end;
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

/// One crtools build's dump and restore of a fresh `mib` MiB victim:
/// (dump s, restore s, dump RSS KiB, restore RSS KiB, frozen us, pages
/// image path's size), and the restore baseline when `baseline` is set.
struct Measured {
    dump: f64,
    rest: f64,
    rss: (i64, i64),
    frozen_us: u64,
    bytes: f64,
    limits: Option<(f64, f64, f64)>,
}

/// A fresh `work` directory and a ticker victim of `mib` MiB logging into
/// it, once it is ready: the victim and its log.
fn start_ticker(victim: &Path, work: &Path, mib: usize) -> (std::process::Child, PathBuf) {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).unwrap();
    let log = work.join("victim.log");
    let v = Command::new(victim)
        .arg("ticker")
        .arg(&log)
        .arg(mib.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start victim");
    wait_line(&log, "ready", Duration::from_secs(120));
    (v, log)
}

fn one_build(crtools: &Path, victim: &Path, base: &Path, mib: usize, baseline: bool) -> Measured {
    let work = base.join(format!("crtools-bench-{}-{mib}", std::process::id()));
    let (mut v, log) = start_ticker(victim, &work, mib);
    let pid = v.id() as i32;

    let copies = baseline.then(|| baseline_dump(pid, mib, &work.join("baseline.bin")));
    let img = work.join("img");
    let d = run_timed(Command::new(crtools).arg("dump").arg("-D").arg(&img).arg("-t").arg(pid.to_string()));
    v.wait().unwrap();
    // The victim's pages image: every stripe of it.
    let pages: Vec<PathBuf> = std::fs::read_dir(&img)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pages-"))
        .collect();
    assert!(!pages.is_empty(), "no pages image in {}", img.display());
    let bytes: f64 = pages.iter().map(|p| p.metadata().unwrap().len() as f64).sum();
    let frozen_us = frozen_time(crtools, &img);
    let base_rest = baseline.then(|| {
        let out = Command::new(std::env::current_exe().unwrap())
            .arg("--baseline-restore")
            .args(&pages)
            .output()
            .expect("baseline restore");
        String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().expect("baseline seconds")
    });
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
    let limits = copies.zip(base_rest).map(|((pvr, wr), rest)| (pvr, wr, rest));
    Measured { dump: d.secs, rest: r.secs, rss: (d.maxrss_kib, r.maxrss_kib), frozen_us, bytes, limits }
}

/// `restore --lazy-pages` of a `mib` MiB victim, against the plain restore
/// of the same images: (plain restore s, lazy restore s (the tree runs),
/// s until the lazy-pages server had every page in). The victim checks
/// its memory after each.
fn lazy_restore(crtools: &Path, victim: &Path, base: &Path, mib: usize) -> (f64, f64, f64) {
    let work = base.join(format!("crtools-bench-lazy-{}-{mib}", std::process::id()));
    let (mut v, log) = start_ticker(victim, &work, mib);
    let pid = v.id() as i32;
    let img = work.join("img");
    run_timed(Command::new(crtools).arg("dump").arg("-D").arg(&img).arg("-t").arg(pid.to_string()));
    v.wait().unwrap();
    let mut times = Vec::new();
    // (The victim keeps its log open: it stays, and each verdict is a new line.)
    let statuses = || std::fs::read_to_string(&log).map(|s| s.matches("status").count()).unwrap_or(0);
    for lazy in [false, true] {
        let before = statuses();
        let mut cmd = Command::new(crtools);
        cmd.arg("restore").arg("-d").arg("-D").arg(&img).arg("-t").arg(pid.to_string());
        if lazy {
            cmd.arg("--lazy-pages");
        }
        let t = Instant::now();
        let r = run_timed(&mut cmd);
        if lazy {
            wait_line_every(&img.join("lazy-pages.log"), "all in place", Duration::from_secs(120));
            times.push(t.elapsed().as_secs_f64());
        }
        times.push(r.secs);
        // SAFETY: signalling the restored victim by its pid.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
        let t = Instant::now();
        while statuses() == before {
            assert!(t.elapsed() < Duration::from_secs(120), "no verdict from the victim (lazy: {lazy})");
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let verdict = text.lines().rfind(|l| l.contains("status")).unwrap_or("").to_string();
        // SAFETY: killing and reaping the restored victim (our child via subreaper).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        assert!(verdict.contains("mem=ok"), "victim after restore (lazy: {lazy}): {verdict}");
        reap_all();
    }
    let _ = std::fs::remove_dir_all(&work);
    (times[0], times[2], times[1])
}

/// Like [`wait_line`], looking every millisecond (for timings).
fn wait_line_every(log: &Path, pat: &str, timeout: Duration) {
    let t = Instant::now();
    while !std::fs::read_to_string(log).is_ok_and(|s| s.contains(pat)) {
        assert!(t.elapsed() < timeout, "no {pat:?} in {} after {timeout:?}", log.display());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// frozen_time (microseconds) from a dump's stats-dump.img.
fn frozen_time(crtools: &Path, img: &Path) -> u64 {
    let out = Command::new(crtools)
        .arg("show")
        .arg("--json")
        .arg("-f")
        .arg(img.join("stats-dump.img"))
        .output()
        .expect("crtools show");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("\"frozen_time\":")
        .nth(1)
        .and_then(|r| r.trim_start_matches('"').split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Best wall time of `crtools check` over several runs, in seconds.
fn check_time(crtools: &Path) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(crtools).arg("check").output().expect("crtools check");
            let s = t.elapsed().as_secs_f64();
            assert!(out.status.success(), "crtools check failed");
            s
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The restore baseline runs in its own process: its 1 GiB peak must not
    // become the peak RSS that exec reports for crtools spawned after it.
    if args.get(1).map(String::as_str) == Some("--baseline-restore") {
        let pages: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
        println!("{}", baseline_restore(&pages));
        return;
    }
    let usage = "usage: bench CRTOOLS [--old CRTOOLS2] [--mib N]... [--dir LABEL=PATH]... [--lazy-only]";
    let crtools = PathBuf::from(args.get(1).expect(usage));
    let mut sizes = Vec::new();
    let mut dirs = Vec::new();
    let mut old: Option<PathBuf> = None;
    let mut lazy_only = false;
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--mib" => sizes.push(args[i + 1].parse::<usize>().expect("--mib N")),
            "--old" => old = Some(PathBuf::from(&args[i + 1])),
            "--lazy-only" => {
                lazy_only = true;
                i += 1;
                continue;
            }
            "--dir" => {
                let (l, p) = args[i + 1].split_once('=').expect("--dir LABEL=PATH");
                dirs.push((l.to_string(), PathBuf::from(p)));
            }
            a => panic!("unknown argument {a}; {usage}"),
        }
        i += 2;
    }
    if sizes.is_empty() {
        sizes = vec![1, 256, 1024];
    }
    if dirs.is_empty() {
        dirs.push(("tmpfs".into(), PathBuf::from("/dev/shm")));
        dirs.push(("disk".into(), std::env::current_dir().unwrap().join("target")));
    }
    let victim = std::env::current_exe().unwrap().with_file_name("victim");
    // Restored victims are re-parented to us, so we can reap them.
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    if lazy_only {
        print_lazy(&crtools, &victim, &dirs);
        return;
    }
    let old_hdr = if old.is_some() { format!(" {:>7} {:>6}", "old s", "of lim") } else { String::new() };
    println!(
        "{:<5} {:>5} | {:>6} {:>6} {:>6} | {:>7} {:>6} {:>6}{old_hdr} | {:>7} {:>6}{old_hdr} | {:>8} {:>8} {:>9}",
        "where",
        "MiB",
        "pvr s",
        "write s",
        "pread s",
        "dump s",
        "of lim",
        "GB/s",
        "rest. s",
        "of lim",
        "dump RSS",
        "rest RSS",
        "frozen ms"
    );
    for (label, base) in &dirs {
        for &mib in &sizes {
            // Best of REPS rounds, each measuring everything side by side:
            // this machine is shared and noisy.
            let inf = f64::MAX;
            let (mut pvr, mut wr, mut pread, mut d, mut r, mut od, mut or) = (inf, inf, inf, inf, inf, inf, inf);
            let (mut bytes, mut rss, mut frozen, mut ofrozen) = (0f64, (0i64, 0i64), u64::MAX, u64::MAX);
            for _ in 0..REPS {
                let m = one_build(&crtools, &victim, base, mib, true);
                let (p, w, b) = m.limits.expect("baseline");
                (pvr, wr, pread) = (pvr.min(p), wr.min(w), pread.min(b));
                (d, r) = (d.min(m.dump), r.min(m.rest));
                bytes = m.bytes;
                rss = (rss.0.max(m.rss.0), rss.1.max(m.rss.1));
                frozen = frozen.min(m.frozen_us);
                if let Some(o) = &old {
                    let m = one_build(o, &victim, base, mib, false);
                    (od, or) = (od.min(m.dump), or.min(m.rest));
                    ofrozen = ofrozen.min(m.frozen_us);
                }
            }
            let limit = pvr.max(wr);
            let (old_d, old_r) = if old.is_some() {
                (format!(" {od:>7.3} {:>6.2}", limit / od), format!(" {or:>7.3} {:>6.2}", pread / or))
            } else {
                Default::default()
            };
            let old_f = if old.is_some() { format!(" (old {:.1})", ofrozen as f64 / 1e3) } else { String::new() };
            println!(
                "{label:<5} {mib:>5} | {pvr:>6.3} {wr:>6.3} {pread:>6.3} | {d:>7.3} {:>6.2} {:>6.2}{old_d} | {r:>7.3} {:>6.2}{old_r} | {:>4} MiB {:>4} MiB {:>9.1}{old_f}",
                limit / d,
                bytes / d / 1e9,
                pread / r,
                rss.0 / 1024,
                rss.1 / 1024,
                frozen as f64 / 1e3,
            );
        }
    }

    // A tree of 16 processes x 4 threads x 64 MiB against one process with
    // the same 1 GiB, side by side.
    println!();
    let old_hdr = if old.is_some() { format!(" {:>8} {:>6}", "old", "ratio") } else { String::new() };
    println!(
        "{:<6} {:>22} | {:>8} {:>8} {:>6}{old_hdr} | {:>8} {:>8} {:>6}{old_hdr}",
        "where", "victim", "dump s", "1 proc", "ratio", "rest. s", "1 proc", "ratio"
    );
    for (label, base) in &dirs {
        let work = base.join(format!("crtools-bench-tree-{}", std::process::id()));
        let one: Vec<String> = ["ticker", "1024"].iter().map(|s| s.to_string()).collect();
        let tree: Vec<String> = ["forest", "16", "4", "64"].iter().map(|s| s.to_string()).collect();
        let pair = |bin: &Path| {
            let (d1, r1) = dump_restore(bin, &victim, &work, &one, 1);
            let (dt, rt) = dump_restore(bin, &victim, &work, &tree, 16);
            (dt.secs, d1.secs, rt.secs, r1.secs)
        };
        let (dt, d1, rt, r1) = pair(&crtools);
        let (old_d, old_r) = match &old {
            Some(o) => {
                let (odt, od1, ort, or1) = pair(o);
                (format!(" {odt:>8.3} {:>6.2}", odt / od1), format!(" {ort:>8.3} {:>6.2}", ort / or1))
            }
            None => Default::default(),
        };
        println!(
            "{label:<6} {:>22} | {dt:>8.3} {d1:>8.3} {:>6.2}{old_d} | {rt:>8.3} {r1:>8.3} {:>6.2}{old_r}",
            "16 procs x 4 thr x 64M",
            dt / d1,
            rt / r1
        );
    }
    println!();
    print_lazy(&crtools, &victim, &dirs);
    println!();
    let c = check_time(&crtools);
    match &old {
        Some(o) => println!("crtools check: {:.1} ms (old {:.1} ms)", c * 1e3, check_time(o) * 1e3),
        None => println!("crtools check: {:.1} ms", c * 1e3),
    }
}

/// `restore --lazy-pages` of 1 GiB, best of [`REPS`], per directory.
fn print_lazy(crtools: &Path, victim: &Path, dirs: &[(String, PathBuf)]) {
    // Lazy pages: how soon the tree runs, and how soon every page is in.
    for (label, base) in dirs {
        let mib = 1024;
        let (mut plain, mut running, mut complete) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..REPS {
            let (p, r, c) = lazy_restore(crtools, victim, base, mib);
            (plain, running, complete) = (plain.min(p), running.min(r), complete.min(c));
        }
        println!(
            "{label:<6} {mib} MiB restore --lazy-pages: runs after {:.1} ms, every page in after {:.1} ms (plain \
             restore {:.1} ms)",
            running * 1e3,
            complete * 1e3,
            plain * 1e3
        );
    }
}
