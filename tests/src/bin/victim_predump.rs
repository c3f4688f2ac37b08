//! Victim program for iterative dumps (pre-dump, then dump on top of it).
//!
//! `victim_predump LOG MIB [refusable]`: a session leader with stdio on
//! /dev/null holding MIB MiB of private anonymous memory: every page but
//! one in ten is filled with a known pattern at start, the others are never
//! touched. Each SIGUSR1 starts the next round: it rewrites 5% of the pages
//! (a different twentieth each round) with that round's pattern and, in
//! round 1, drops a few filled pages with MADV_DONTNEED (they must come back
//! as zero, not as a parent's copy); then it appends "round K". Each SIGUSR2
//! checks every byte of the area against what it wrote and appends
//! "verdict ok pages=N" or "verdict bad WHAT". With `refusable`, round 1
//! also opens a userfaultfd, which a dump refuses.
//! It appends "ready PID ADDR LEN" once set up.
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

const PAGE: usize = 4096;
static ROUND: AtomicU32 = AtomicU32::new(0);
static CHECK: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_usr1(_: i32) {
    ROUND.fetch_add(1, Ordering::SeqCst);
}
extern "C" fn on_usr2(_: i32) {
    CHECK.fetch_add(1, Ordering::SeqCst);
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// First word of page `page` written in round `tag`; the others follow it.
fn seed(tag: u32, page: usize) -> u64 {
    splitmix((tag as u64) << 40 ^ page as u64)
}

fn fill(area: &mut [u64], page: usize, tag: u32) {
    let s = seed(tag, page);
    for (w, x) in area[page * PAGE / 8..(page + 1) * PAGE / 8].iter_mut().enumerate() {
        *x = s ^ w as u64;
    }
}

fn say(log: &mut File, s: &str) {
    let _ = log.write_all(format!("{s}\n").as_bytes());
}

/// Pages rewritten in round `k` (k >= 1): a twentieth, never an untouched one.
fn rewritten(k: u32, page: usize) -> bool {
    page % 20 == (k as usize * 7) % 20 && !untouched(page)
}
fn untouched(page: usize) -> bool {
    page % 10 == 3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let refusable = args.get(3).map(String::as_str) == Some("refusable");
    crtools_tests::detach_from_harness();
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&args[1]).expect("open log");
    // SAFETY: handlers only touch atomics.
    unsafe {
        for (sig, h) in [(libc::SIGUSR1, on_usr1 as *const () as usize), (libc::SIGUSR2, on_usr2 as *const () as usize)]
        {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = h;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let pages = mib * 256;
    let len = pages * PAGE;
    // SAFETY: a fresh private anonymous mapping of our own.
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
    // SAFETY: the mapping is ours, len bytes, u64-aligned.
    let area = unsafe { std::slice::from_raw_parts_mut(p as *mut u64, len / 8) };
    // What each page holds: Some(round of its pattern) or None (zero).
    let mut want: Vec<Option<u32>> = vec![None; pages];
    for (pg, w) in want.iter_mut().enumerate() {
        if !untouched(pg) {
            fill(area, pg, 0);
            *w = Some(0);
        }
    }
    say(&mut log, &format!("ready {} {:#x} {len}", std::process::id(), p as usize));
    let (mut round, mut checks) = (0u32, 0u32);
    let mut keep_pipe = None;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(2));
        if ROUND.load(Ordering::SeqCst) != round {
            round += 1;
            for (pg, w) in want.iter_mut().enumerate() {
                if rewritten(round, pg) {
                    fill(area, pg, round);
                    *w = Some(round);
                }
            }
            if round == 1 {
                for pg in (5..pages).step_by(97).filter(|&pg| !untouched(pg) && !rewritten(1, pg)) {
                    // SAFETY: one page of our own mapping.
                    unsafe { libc::madvise((p as *mut u8).add(pg * PAGE) as *mut _, PAGE, libc::MADV_DONTNEED) };
                    want[pg] = None;
                }
                if refusable {
                    // SAFETY: a plain syscall; the descriptor is ours.
                    let uffd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) } as i32;
                    assert!(uffd >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
                    keep_pipe = Some([uffd, uffd]);
                }
            }
            say(&mut log, &format!("round {round}"));
        }
        if CHECK.load(Ordering::SeqCst) != checks {
            checks += 1;
            let mut bad = None;
            'pages: for (pg, w) in want.iter().enumerate() {
                let s = w.map(|t| seed(t, pg));
                for (i, &x) in area[pg * PAGE / 8..(pg + 1) * PAGE / 8].iter().enumerate() {
                    let exp = s.map(|s| s ^ i as u64).unwrap_or(0);
                    if x != exp {
                        bad = Some(format!("page {pg} (want round {w:?}) word {i} is {x:#x}, want {exp:#x}"));
                        break 'pages;
                    }
                }
            }
            match bad {
                None => say(&mut log, &format!("verdict ok pages={pages} round={round}")),
                Some(b) => say(&mut log, &format!("verdict bad {b}")),
            }
        }
        let _ = &keep_pipe;
    }
}
