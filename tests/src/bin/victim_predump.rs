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
//! Three pages are guard regions (MADV_GUARD_INSTALL) from the start; the
//! check finds them guards still (pagemap bit 58). A small second area,
//! written at start, is half rewritten and made PROT_NONE in round 2 (a
//! tracked VMA the final dump cannot read with process_vm_readv); the check
//! reads it back.
//! It appends "ready PID ADDR LEN" once set up.
//!
//! `victim_predump LOG MIB churn`: a thread rewrites the area without
//! pause, page after page, sweep after sweep, while it is dumped (a
//! pre-dump copies pages while the task runs). Every word of page P holds
//! (sweep << 32 | P); before rewriting a page the thread checks that it
//! holds the previous sweep's value, so a page restored stale (an older
//! sweep's copy) or torn (words of two sweeps) is caught on the next sweep
//! after a restore. Each sweep also unmaps a 1 MiB area of its own and
//! maps it again at the same address (a VMA gone and back while its pages
//! are read), after checking it the same way. The main thread appends
//! "t MS pages N" (wall clock in ms, pages written so far) every 20 ms, the
//! writer's throughput. SIGUSR2: once two more sweeps are done, "verdict
//! ok sweeps=K" or "verdict bad WHAT".
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
    page % 20 == (k as usize * 7) % 20 && !untouched(page) && !guarded(page)
}
/// Pages made guard regions (MADV_GUARD_INSTALL) before the first
/// pre-dump: never read or written, checked through pagemap (bit 58).
fn guarded(page: usize) -> bool {
    page == 13 || page == 23 || page == 24
}

/// Whether page `pg` at `addr` is a guard region, by /proc/self/pagemap.
fn is_guard(addr: usize) -> bool {
    use std::os::unix::fs::FileExt;
    let f = File::open("/proc/self/pagemap").expect("open pagemap");
    let mut e = [0u8; 8];
    f.read_exact_at(&mut e, (addr / PAGE * 8) as u64).expect("read pagemap");
    u64::from_le_bytes(e) >> 58 & 1 == 1
}

fn untouched(page: usize) -> bool {
    page % 10 == 3
}

/// What the churn writer found wrong first, if anything.
static BAD: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
static SWEEPS: AtomicU32 = AtomicU32::new(0);
static WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Checks that page `pg` of the area at `base` (a page of this process
/// that only the calling thread touches) holds `want` in every word,
/// records the first mismatch, then fills it with `next`.
fn churn_page(base: usize, what: &str, pg: usize, want: u64, next: u64) {
    // SAFETY: per the contract above, a mapped page nobody else accesses.
    let words = unsafe { std::slice::from_raw_parts_mut((base + pg * PAGE) as *mut u64, PAGE / 8) };
    if let Some(i) = words.iter().position(|&w| w != want) {
        let mut bad = BAD.lock().unwrap();
        if bad.is_none() {
            *bad = Some(format!("{what} page {pg} word {i} is {:#x}, want {want:#x}", words[i]));
        }
    }
    for w in words.iter_mut() {
        *w = next;
    }
}

fn map_at(addr: usize, len: usize) -> *mut libc::c_void {
    let fixed = if addr == 0 { 0 } else { libc::MAP_FIXED };
    // SAFETY: a private anonymous mapping; at a fixed address only over
    // our own side area.
    let p = unsafe {
        libc::mmap(
            addr as *mut _,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p
}

fn churn(mut log: File, mib: usize) -> ! {
    let pages = mib * 256;
    let area = map_at(0, pages * PAGE) as usize;
    // The side area: 1 MiB, with a guard page of PROT_NONE before it so
    // that it never merges with anything.
    const SIDE: usize = 256;
    let guard = map_at(0, (SIDE + 1) * PAGE) as usize;
    // SAFETY: the first page of our own mapping.
    unsafe { libc::mprotect(guard as *mut _, PAGE, libc::PROT_NONE) };
    let side = guard + PAGE;
    std::thread::spawn(move || {
        let word = |sweep: u32, pg: usize| (sweep as u64) << 32 | pg as u64;
        let mut sweep = 0u32;
        loop {
            let prev = |pg| if sweep == 0 { 0 } else { word(sweep, pg) };
            for pg in 0..pages {
                churn_page(area, "area", pg, prev(pg), word(sweep + 1, pg));
                WRITTEN.fetch_add(1, Ordering::Relaxed);
            }
            for pg in 0..SIDE {
                churn_page(side, "side", pg, prev(pg), prev(pg));
            }
            // Gone and back: a fresh VMA, then this sweep's contents.
            // SAFETY: our own side area.
            unsafe { libc::munmap(side as *mut _, SIDE * PAGE) };
            map_at(side, SIDE * PAGE);
            for pg in 0..SIDE {
                churn_page(side, "side", pg, 0, word(sweep + 1, pg));
            }
            sweep += 1;
            SWEEPS.store(sweep, Ordering::SeqCst);
        }
    });
    say(&mut log, &format!("ready {} {area:#x} {}", std::process::id(), pages * PAGE));
    let mut checks = 0;
    let mut asked: Option<u32> = None;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        say(&mut log, &format!("t {ms} pages {}", WRITTEN.load(Ordering::Relaxed)));
        if CHECK.load(Ordering::SeqCst) != checks {
            checks += 1;
            asked = Some(SWEEPS.load(Ordering::SeqCst));
        }
        let done = SWEEPS.load(Ordering::SeqCst);
        if asked.is_some_and(|a| done >= a + 2) {
            asked = None;
            match BAD.lock().unwrap().clone() {
                None => say(&mut log, &format!("verdict ok sweeps={done}")),
                Some(b) => say(&mut log, &format!("verdict bad {b}")),
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let refusable = args.get(3).map(String::as_str) == Some("refusable");
    crtools_tests::detach_from_harness();
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&args[1]).expect("open log");
    if args.get(3).map(String::as_str) == Some("churn") {
        // SAFETY: the handler only touches an atomic.
        unsafe { libc::signal(libc::SIGUSR2, on_usr2 as *const () as usize) };
        churn(log, mib);
    }
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
    // Guard regions, inside the tracked area (a kernel without them
    // leaves the pages untouched and zero).
    let mut guards = false;
    for pg in (0..pages).filter(|&pg| guarded(pg)) {
        const MADV_GUARD_INSTALL: i32 = 102;
        // SAFETY: one never-touched page of our own mapping.
        guards = unsafe { libc::madvise((p as *mut u8).add(pg * PAGE) as *mut _, PAGE, MADV_GUARD_INSTALL) } == 0;
    }
    // A small area, tracked from the first pre-dump and made PROT_NONE in
    // round 2: the final dump reads it through /proc/pid/mem.
    const SMALL: usize = 16;
    // Holes on both sides: a VMA of its own.
    let small = map_at(0, (SMALL + 2) * PAGE) as usize + PAGE;
    // SAFETY: the first and last page of our own fresh mapping.
    unsafe {
        libc::munmap((small - PAGE) as *mut _, PAGE);
        libc::munmap((small + SMALL * PAGE) as *mut _, PAGE);
    }
    // SAFETY: our own fresh mapping, SMALL pages.
    let small_words = unsafe { std::slice::from_raw_parts_mut(small as *mut u64, SMALL * PAGE / 8) };
    for pg in 0..SMALL {
        fill(small_words, pg, 77);
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
            if round == 2 {
                // Written (the final dump must read it), then unreadable.
                for pg in 0..SMALL / 2 {
                    fill(small_words, pg, 78);
                }
                // SAFETY: our own small area.
                unsafe { libc::mprotect(small as *mut _, SMALL * PAGE, libc::PROT_NONE) };
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
                if guarded(pg) && guards {
                    if !is_guard(p as usize + pg * PAGE) {
                        bad = Some(format!("page {pg} is no guard region"));
                        break 'pages;
                    }
                    continue;
                }
                let s = w.map(|t| seed(t, pg));
                for (i, &x) in area[pg * PAGE / 8..(pg + 1) * PAGE / 8].iter().enumerate() {
                    let exp = s.map(|s| s ^ i as u64).unwrap_or(0);
                    if x != exp {
                        bad = Some(format!("page {pg} (want round {w:?}) word {i} is {x:#x}, want {exp:#x}"));
                        break 'pages;
                    }
                }
            }
            // SAFETY: our own small area, readable again for the check.
            unsafe { libc::mprotect(small as *mut _, SMALL * PAGE, libc::PROT_READ) };
            for pg in 0..SMALL {
                let s = seed(if round >= 2 && pg < SMALL / 2 { 78 } else { 77 }, pg);
                let words = &small_words[pg * PAGE / 8..(pg + 1) * PAGE / 8];
                if bad.is_none() && words.iter().enumerate().any(|(i, &x)| x != s ^ i as u64) {
                    bad = Some(format!("small area page {pg} differs"));
                }
            }
            if round >= 2 {
                // SAFETY: as above.
                unsafe { libc::mprotect(small as *mut _, SMALL * PAGE, libc::PROT_NONE) };
            }
            match bad {
                None => say(&mut log, &format!("verdict ok pages={pages} round={round}")),
                Some(b) => say(&mut log, &format!("verdict bad {b}")),
            }
        }
        let _ = &keep_pipe;
    }
}
