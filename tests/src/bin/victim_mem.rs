//! Victim program for the memory dump/restore tests.
//!
//! `victim_mem MODE LOG [ARGS...]`: becomes a session leader, points stdio
//! at /dev/null, closes every inherited descriptor above 2, sets up the
//! memory state of MODE, appends "ready PID [details]" to LOG and then waits
//! for commands. Each SIGUSR1 asks it to verify its own state and append one
//! line "verdict ok DETAILS" or "verdict bad WHAT" to LOG.
//!
//! Modes:
//! - `counter`: spins incrementing a counter (with a shadow copy); the
//!   verdict carries `count=N` and checks that N never went backwards.
//! - `bigmem MIB`: MIB MiB of pseudo-random words, checked word by word.
//! - `vector`: holds known values in xmm/ymm (and zmm/k with AVX-512),
//!   r8-r15 and MXCSR inside an asm loop that only polls a flag; the
//!   verdict compares what the registers held when the loop ended.
//! - `filemap DIR`: private and shared mappings of files it creates in DIR.
//! - `protect`: RW, read-only, exec, write-only and PROT_NONE regions, some
//!   PROT_NONE pages holding data; checks /proc/self/maps and the data.
//! - `dontneed`: anonymous pages partly dropped with MADV_DONTNEED.
//! - `sparse`: a 1 GiB MAP_NORESERVE reservation with a few pages touched.
//! - `brk`: heap grown with sbrk by an unaligned amount.
//! - `vdso`: clock_gettime through the vDSO against the raw syscall.
//! - `shmem`: MAP_SHARED anonymous memory (one mapping whose head was
//!   unmapped, so its offset is not 0).
//! - `layout DIR`: all of filemap, protect, dontneed, shmem and brk at once.
//! - `mmflags DIR`: per-VMA and per-mm state beyond protections: a shared
//!   mapping of a file opened read-write but mprotect'ed read-only (the
//!   check makes it writable, writes through it, and protects it again),
//!   guard regions (MADV_GUARD_INSTALL), MADV_SEQUENTIAL, MADV_RANDOM,
//!   MADV_WIPEONFORK, MADV_DONTFORK,
//!   mlock and mlock2(MLOCK_ONFAULT), MADV_HUGEPAGE, MADV_NOHUGEPAGE,
//!   MADV_MERGEABLE and PR_SET_THP_DISABLE.
//! - `mlockall`: mlockall(MCL_CURRENT|MCL_FUTURE); the check maps a new
//!   region and finds it locked.
//! - `aio DIR`: native AIO contexts (raw io_setup/io_submit/io_getevents)
//!   reading a file it writes in DIR: a free first slot (its context was
//!   destroyed), a four-page ring whose tail went round the ring with ten
//!   completions left unreaped across its end, and a one-page ring with two
//!   unreaped. The first check only reads the rings' headers; the next one
//!   reaps exactly the pending completions (data, obj, res, res2 and the
//!   bytes read), then every check submits new reads on both contexts and
//!   gets them back. `aio DIR ro`: the same with the big ring made
//!   read-only (mprotect), which a dump refuses.
//! - `hugetlb`: private, private MAP_NORESERVE and shared MAP_HUGETLB
//!   memory in 2 MiB pages, some pages written, some never touched, the
//!   shared one shared with a child; the check verifies page size, VmFlags,
//!   that the untouched pages are still not populated, the contents and
//!   the sharing; a fourth shared mapping, the parent's alone, lost its
//!   first huge page (its object is mapped at an offset). The pool must
//!   hold 11 free 2 MiB pages.
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};

const PAGE: usize = 4096;

/// SIGUSR1s received.
static ASKED: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_usr1(_: i32) {
    ASKED.fetch_add(1, Ordering::SeqCst);
    VEC_STOP.store(1, Ordering::SeqCst);
}

/// A line built on the stack and written with one write(2), so the test
/// never sees half a line and nothing is allocated (the brk mode needs that).
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        let n = b.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        Ok(())
    }
}

fn say(log: &File, args: std::fmt::Arguments) {
    let mut l = Line { buf: [0; 512], len: 0 };
    let _ = l.write_fmt(args);
    l.buf[l.len] = b'\n';
    let mut f = log;
    let _ = f.write_all(&l.buf[..l.len + 1]);
}

macro_rules! say {
    ($log:expr, $($arg:tt)*) => { say($log, format_args!($($arg)*)) };
}

/// The common start: session, descriptors, SIGUSR1 handler, the log.
fn setup(log: &str) -> File {
    crtools_tests::detach_from_harness();
    // SAFETY: plain libc calls; the handler only touches an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    let f = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open log");
    // stderr is /dev/null: panics go to the log, where the test shows them.
    let path = log.to_string();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(f) = std::fs::OpenOptions::new().append(true).open(&path) {
            say!(&f, "panic {info}");
        }
    }));
    f
}

/// Sleeps until a SIGUSR1 arrives after `seen` of them.
fn wait_asked(seen: &mut u32) {
    loop {
        let n = ASKED.load(Ordering::SeqCst);
        if n != *seen {
            *seen = n;
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Answers every SIGUSR1 with the verdict of `check` (Err = what is wrong).
fn serve(log: &File, mut check: impl FnMut() -> Result<String, String>) -> ! {
    let mut seen = 0;
    loop {
        wait_asked(&mut seen);
        match check() {
            Ok(d) => say!(log, "verdict ok {d}"),
            Err(e) => say!(log, "verdict bad {e}"),
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Anonymous private memory (MAP_FAILED is a panic).
fn map_anon(len: usize, prot: i32, extra: i32) -> *mut u8 {
    // SAFETY: a fresh mapping chosen by the kernel.
    let p =
        unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra, -1, 0) };
    assert_ne!(p, libc::MAP_FAILED, "mmap {len} bytes");
    p as *mut u8
}

fn protect(addr: *mut u8, len: usize, prot: i32) {
    // SAFETY: addr/len lie in a mapping this program made.
    assert_eq!(unsafe { libc::mprotect(addr as *mut _, len, prot) }, 0, "mprotect");
}

/// The words of page `page` of a region tagged `tag`.
fn pattern(tag: u64, page: usize, word: usize) -> u64 {
    splitmix(tag << 40 ^ (page as u64) << 20 ^ word as u64)
}

fn fill_page(p: *mut u8, tag: u64, page: usize) {
    for w in 0..PAGE / 8 {
        // SAFETY: p is a writable page of ours.
        unsafe { (p as *mut u64).add(w).write_volatile(pattern(tag, page, w)) };
    }
}

/// Checks one page against the pattern (None = all zero expected).
fn check_page(p: *const u8, want: Option<(u64, usize)>, what: &str) -> Result<(), String> {
    for w in 0..PAGE / 8 {
        // SAFETY: p is a readable page of ours.
        let got = unsafe { (p as *const u64).add(w).read_volatile() };
        let exp = want.map(|(t, pg)| pattern(t, pg, w)).unwrap_or(0);
        if got != exp {
            return Err(format!("{what}: word {w} at {p:p} is {got:#x}, want {exp:#x}"));
        }
    }
    Ok(())
}

fn check_bytes(got: &[u8], want: &[u8], what: &str) -> Result<(), String> {
    if got != want {
        let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("{what}: first difference at byte {i}"));
    }
    Ok(())
}

fn page_bytes(tag: u64, page: usize) -> Vec<u8> {
    (0..PAGE / 8).flat_map(|w| pattern(tag, page, w).to_ne_bytes()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: victim_mem MODE LOG [ARGS...]");
        std::process::exit(2);
    }
    let mode = args[1].as_str();
    let log = setup(&args[2]);
    let rest = &args[3..];
    let pid = std::process::id();
    match mode {
        "counter" => counter(&log),
        "bigmem" => {
            let mib: usize = rest.first().and_then(|s| s.parse().ok()).unwrap_or(256);
            let check = bigmem(mib);
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "vector" => vector(&log),
        "filemap" => {
            let check = filemap(rest.first().expect("filemap DIR"));
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "protect" => {
            let check = protect_mode();
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "dontneed" => {
            let check = dontneed();
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "sparse" => {
            let check = sparse();
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "brk" => {
            let (start, check) = brk_mode();
            say!(&log, "ready {pid} {start:#x}");
            serve(&log, check)
        }
        "vdso" => {
            let check = vdso();
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "novdso" => {
            let check = novdso();
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "shmem" => {
            let check = shmem();
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "mmflags" => {
            let check = mmflags(rest.first().expect("mmflags DIR"));
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "aio" => {
            let check = aio(rest.first().expect("aio DIR"), rest.get(1).is_some_and(|a| a == "ro"));
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "hugetlb" => {
            let check = hugetlb();
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "mlockall" => {
            let check = mlockall();
            say!(&log, "ready {pid}");
            serve(&log, check)
        }
        "layout" => {
            let dir = rest.first().expect("layout DIR");
            // brk first: the other setups may allocate; its check runs first.
            let (_, mut c0) = brk_mode();
            let mut checks: Vec<Box<dyn FnMut() -> Result<String, String>>> = vec![
                Box::new(filemap(dir)),
                Box::new(protect_mode()),
                Box::new(dontneed()),
                Box::new(shmem()),
                Box::new(sparse()),
            ];
            say!(&log, "ready {pid}");
            serve(&log, move || {
                let mut out = c0()?;
                for c in checks.iter_mut() {
                    out.push(' ');
                    out.push_str(&c()?);
                }
                Ok(out)
            })
        }
        other => {
            say!(&log, "verdict bad unknown mode {other}");
            std::process::exit(2);
        }
    }
}

/// Counts in user space; a verdict reports the count.
fn counter(log: &File) -> ! {
    const KEY: u64 = 0xa5a5_5a5a_f00d_beef;
    let mut count: u64 = 0;
    let mut shadow: u64 = KEY;
    let mut last: u64 = 0;
    let mut seen = 0;
    say!(log, "ready {}", std::process::id());
    loop {
        for _ in 0..(1 << 16) {
            count = std::hint::black_box(count + 1);
            shadow = std::hint::black_box(count ^ KEY);
        }
        let n = ASKED.load(Ordering::Relaxed);
        if n != seen {
            seen = n;
            if shadow != count ^ KEY {
                say!(log, "verdict bad count={count} shadow={shadow:#x}");
            } else if count <= last {
                say!(log, "verdict bad count={count} went back from {last}");
            } else {
                say!(log, "verdict ok count={count}");
            }
            last = count;
        }
    }
}

/// `mib` MiB of pseudo-random words.
fn bigmem(mib: usize) -> impl FnMut() -> Result<String, String> {
    let len = mib << 20;
    let p = map_anon(len, libc::PROT_READ | libc::PROT_WRITE, 0) as *mut u64;
    let words = len / 8;
    for i in 0..words {
        // SAFETY: i < words, inside the mapping.
        unsafe { p.add(i).write(splitmix(i as u64 ^ 0x1234_5678)) };
    }
    move || {
        let mut bad = 0usize;
        let mut first = None;
        for i in 0..words {
            // SAFETY: as above.
            let got = unsafe { p.add(i).read() };
            if got != splitmix(i as u64 ^ 0x1234_5678) {
                bad += 1;
                first.get_or_insert(i);
            }
        }
        match first {
            None => Ok(format!("words={words}")),
            Some(i) => Err(format!("{bad} of {words} words differ, first at word {i} ({:p})", unsafe {
                // SAFETY: address arithmetic only.
                p.add(i)
            })),
        }
    }
}

/// Register values for one round of the vector loop.
#[repr(C, align(64))]
struct VecBuf {
    zmm: [[u64; 8]; 32],
    gpr: [u64; 8],
    k: [u64; 8],
    mxcsr: u32,
    _pad: u32,
    iterations: u64,
}

impl VecBuf {
    fn zeroed() -> Box<VecBuf> {
        // SAFETY: all-zero is a valid VecBuf (plain integers).
        Box::new(unsafe { std::mem::zeroed() })
    }
}

/// Set by the SIGUSR1 handler's effect, polled by the asm loop.
static VEC_STOP: AtomicU32 = AtomicU32::new(0);

/// Holds xmm0-15 (or ymm0-15, or zmm0-31 and k1-k7), r8-r15 and MXCSR in
/// the registers until the stop flag is set, then stores them to `out`.
fn vector(log: &File) -> ! {
    let avx = is_x86_feature_detected!("avx");
    let avx512 = is_x86_feature_detected!("avx512f");
    let what = if avx512 {
        "zmm0-31,k1-7"
    } else if avx {
        "ymm0-15"
    } else {
        "xmm0-15"
    };
    let mut round = 0u64;
    let mut inp = VecBuf::zeroed();
    let mut out = VecBuf::zeroed();
    loop {
        round += 1;
        for (r, z) in inp.zmm.iter_mut().enumerate() {
            for (l, w) in z.iter_mut().enumerate() {
                *w = splitmix(round << 32 ^ (r as u64) << 8 ^ l as u64);
            }
        }
        for (i, g) in inp.gpr.iter_mut().enumerate() {
            *g = splitmix(round << 32 ^ 0xee00 ^ i as u64);
        }
        for (i, k) in inp.k.iter_mut().enumerate() {
            // k0 is not loaded; the others get distinct 16-bit masks.
            *k = if i == 0 { 0 } else { splitmix(round << 32 ^ 0xdd00 ^ i as u64) & 0xffff };
        }
        // Round toward zero, all exceptions masked, DAZ and FTZ set.
        inp.mxcsr = 0x1f80 | 0x6000 | 0x8040;
        if round == 1 {
            say!(log, "ready {} {what}", std::process::id());
        }
        let f = &VEC_STOP as *const AtomicU32 as *const u32;
        // SAFETY: the loops read `inp`, write `out` and poll the flag; every
        // register they touch is declared clobbered.
        unsafe {
            if avx512 {
                spin_avx512(&inp, &mut out, f)
            } else if avx {
                spin_avx(&inp, &mut out, f)
            } else {
                spin_sse(&inp, &mut out, f)
            }
        }
        // Reset before the verdict: the next SIGUSR1 comes after it.
        VEC_STOP.store(0, Ordering::SeqCst);
        let mut err = String::new();
        let (nregs, lanes) = if avx512 {
            (32, 8)
        } else if avx {
            (16, 4)
        } else {
            (16, 2)
        };
        for r in 0..nregs {
            if inp.zmm[r][..lanes] != out.zmm[r][..lanes] {
                let _ = write!(err, "reg{r}: {:x?} != {:x?}; ", &out.zmm[r][..lanes], &inp.zmm[r][..lanes]);
            }
        }
        if inp.gpr != out.gpr {
            let _ = write!(err, "r8-r15: {:x?} != {:x?}; ", out.gpr, inp.gpr);
        }
        if avx512 && inp.k[1..] != out.k[1..] {
            let _ = write!(err, "k1-7: {:x?} != {:x?}; ", &out.k[1..], &inp.k[1..]);
        }
        if out.mxcsr & 0xffbf != inp.mxcsr & 0xffbf {
            // (bit 6, DAZ, is reported as set only where supported)
            let _ = write!(err, "mxcsr {:#x} != {:#x}; ", out.mxcsr, inp.mxcsr);
        }
        if err.is_empty() {
            say!(log, "verdict ok round={round} regs={what} iterations={}", out.iterations);
        } else {
            say!(log, "verdict bad round={round} {err}");
        }
    }
}

/// Polls `[rdx]` with `pause` until it is non-zero, counting in rcx.
macro_rules! poll_loop {
    () => {
        "xor ecx, ecx\n\
         2:\n\
         pause\n\
         inc rcx\n\
         mov eax, dword ptr [rdx]\n\
         test eax, eax\n\
         jz 2b\n"
    };
}

/// GPR, MXCSR and iteration part shared by the three loops (before/after).
macro_rules! gpr_in {
    () => {
        "mov r8, [rdi + 2048]\n mov r9, [rdi + 2056]\n mov r10, [rdi + 2064]\n mov r11, [rdi + 2072]\n\
         mov r12, [rdi + 2080]\n mov r13, [rdi + 2088]\n mov r14, [rdi + 2096]\n mov r15, [rdi + 2104]\n\
         ldmxcsr [rdi + 2176]\n"
    };
}
macro_rules! gpr_out {
    () => {
        "mov [rsi + 2048], r8\n mov [rsi + 2056], r9\n mov [rsi + 2064], r10\n mov [rsi + 2072], r11\n\
         mov [rsi + 2080], r12\n mov [rsi + 2088], r13\n mov [rsi + 2096], r14\n mov [rsi + 2104], r15\n\
         stmxcsr [rsi + 2176]\n mov [rsi + 2184], rcx\n\
         mov dword ptr [rsi + 2180], 0x1f80\n ldmxcsr [rsi + 2180]\n mov dword ptr [rsi + 2180], 0\n"
    };
}

const _: () = {
    assert!(std::mem::offset_of!(VecBuf, gpr) == 2048);
    assert!(std::mem::offset_of!(VecBuf, k) == 2112);
    assert!(std::mem::offset_of!(VecBuf, mxcsr) == 2176);
    assert!(std::mem::offset_of!(VecBuf, iterations) == 2184);
};

/// # Safety
/// `inp`/`out` valid, `flag` a readable u32.
unsafe fn spin_sse(inp: &VecBuf, out: &mut VecBuf, flag: *const u32) {
    // SAFETY: guaranteed by the caller; all touched registers are clobbers.
    unsafe {
        core::arch::asm!(
            "movdqu xmm0, [rdi + 0]", "movdqu xmm1, [rdi + 64]", "movdqu xmm2, [rdi + 128]",
            "movdqu xmm3, [rdi + 192]", "movdqu xmm4, [rdi + 256]", "movdqu xmm5, [rdi + 320]",
            "movdqu xmm6, [rdi + 384]", "movdqu xmm7, [rdi + 448]", "movdqu xmm8, [rdi + 512]",
            "movdqu xmm9, [rdi + 576]", "movdqu xmm10, [rdi + 640]", "movdqu xmm11, [rdi + 704]",
            "movdqu xmm12, [rdi + 768]", "movdqu xmm13, [rdi + 832]", "movdqu xmm14, [rdi + 896]",
            "movdqu xmm15, [rdi + 960]",
            gpr_in!(),
            poll_loop!(),
            "movdqu [rsi + 0], xmm0", "movdqu [rsi + 64], xmm1", "movdqu [rsi + 128], xmm2",
            "movdqu [rsi + 192], xmm3", "movdqu [rsi + 256], xmm4", "movdqu [rsi + 320], xmm5",
            "movdqu [rsi + 384], xmm6", "movdqu [rsi + 448], xmm7", "movdqu [rsi + 512], xmm8",
            "movdqu [rsi + 576], xmm9", "movdqu [rsi + 640], xmm10", "movdqu [rsi + 704], xmm11",
            "movdqu [rsi + 768], xmm12", "movdqu [rsi + 832], xmm13", "movdqu [rsi + 896], xmm14",
            "movdqu [rsi + 960], xmm15",
            gpr_out!(),
            in("rdi") inp as *const VecBuf, in("rsi") out as *mut VecBuf, in("rdx") flag,
            out("rax") _, out("rcx") _, out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
            out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack),
        )
    }
}

/// # Safety
/// As [`spin_sse`]; the CPU has AVX.
#[target_feature(enable = "avx")]
unsafe fn spin_avx(inp: &VecBuf, out: &mut VecBuf, flag: *const u32) {
    // SAFETY: guaranteed by the caller; all touched registers are clobbers.
    unsafe {
        core::arch::asm!(
            "vmovdqu ymm0, [rdi + 0]", "vmovdqu ymm1, [rdi + 64]", "vmovdqu ymm2, [rdi + 128]",
            "vmovdqu ymm3, [rdi + 192]", "vmovdqu ymm4, [rdi + 256]", "vmovdqu ymm5, [rdi + 320]",
            "vmovdqu ymm6, [rdi + 384]", "vmovdqu ymm7, [rdi + 448]", "vmovdqu ymm8, [rdi + 512]",
            "vmovdqu ymm9, [rdi + 576]", "vmovdqu ymm10, [rdi + 640]", "vmovdqu ymm11, [rdi + 704]",
            "vmovdqu ymm12, [rdi + 768]", "vmovdqu ymm13, [rdi + 832]", "vmovdqu ymm14, [rdi + 896]",
            "vmovdqu ymm15, [rdi + 960]",
            gpr_in!(),
            poll_loop!(),
            "vmovdqu [rsi + 0], ymm0", "vmovdqu [rsi + 64], ymm1", "vmovdqu [rsi + 128], ymm2",
            "vmovdqu [rsi + 192], ymm3", "vmovdqu [rsi + 256], ymm4", "vmovdqu [rsi + 320], ymm5",
            "vmovdqu [rsi + 384], ymm6", "vmovdqu [rsi + 448], ymm7", "vmovdqu [rsi + 512], ymm8",
            "vmovdqu [rsi + 576], ymm9", "vmovdqu [rsi + 640], ymm10", "vmovdqu [rsi + 704], ymm11",
            "vmovdqu [rsi + 768], ymm12", "vmovdqu [rsi + 832], ymm13", "vmovdqu [rsi + 896], ymm14",
            "vmovdqu [rsi + 960], ymm15",
            gpr_out!(),
            "vzeroupper",
            in("rdi") inp as *const VecBuf, in("rsi") out as *mut VecBuf, in("rdx") flag,
            out("rax") _, out("rcx") _, out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
            out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        )
    }
}

/// # Safety
/// As [`spin_sse`]; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn spin_avx512(inp: &VecBuf, out: &mut VecBuf, flag: *const u32) {
    // SAFETY: guaranteed by the caller; all touched registers are clobbers.
    unsafe {
        core::arch::asm!(
            "vmovdqu64 zmm0, [rdi + 0]", "vmovdqu64 zmm1, [rdi + 64]", "vmovdqu64 zmm2, [rdi + 128]",
            "vmovdqu64 zmm3, [rdi + 192]", "vmovdqu64 zmm4, [rdi + 256]", "vmovdqu64 zmm5, [rdi + 320]",
            "vmovdqu64 zmm6, [rdi + 384]", "vmovdqu64 zmm7, [rdi + 448]", "vmovdqu64 zmm8, [rdi + 512]",
            "vmovdqu64 zmm9, [rdi + 576]", "vmovdqu64 zmm10, [rdi + 640]", "vmovdqu64 zmm11, [rdi + 704]",
            "vmovdqu64 zmm12, [rdi + 768]", "vmovdqu64 zmm13, [rdi + 832]", "vmovdqu64 zmm14, [rdi + 896]",
            "vmovdqu64 zmm15, [rdi + 960]", "vmovdqu64 zmm16, [rdi + 1024]", "vmovdqu64 zmm17, [rdi + 1088]",
            "vmovdqu64 zmm18, [rdi + 1152]", "vmovdqu64 zmm19, [rdi + 1216]", "vmovdqu64 zmm20, [rdi + 1280]",
            "vmovdqu64 zmm21, [rdi + 1344]", "vmovdqu64 zmm22, [rdi + 1408]", "vmovdqu64 zmm23, [rdi + 1472]",
            "vmovdqu64 zmm24, [rdi + 1536]", "vmovdqu64 zmm25, [rdi + 1600]", "vmovdqu64 zmm26, [rdi + 1664]",
            "vmovdqu64 zmm27, [rdi + 1728]", "vmovdqu64 zmm28, [rdi + 1792]", "vmovdqu64 zmm29, [rdi + 1856]",
            "vmovdqu64 zmm30, [rdi + 1920]", "vmovdqu64 zmm31, [rdi + 1984]",
            "kmovw k1, [rdi + 2120]", "kmovw k2, [rdi + 2128]", "kmovw k3, [rdi + 2136]",
            "kmovw k4, [rdi + 2144]", "kmovw k5, [rdi + 2152]", "kmovw k6, [rdi + 2160]",
            "kmovw k7, [rdi + 2168]",
            gpr_in!(),
            poll_loop!(),
            "vmovdqu64 [rsi + 0], zmm0", "vmovdqu64 [rsi + 64], zmm1", "vmovdqu64 [rsi + 128], zmm2",
            "vmovdqu64 [rsi + 192], zmm3", "vmovdqu64 [rsi + 256], zmm4", "vmovdqu64 [rsi + 320], zmm5",
            "vmovdqu64 [rsi + 384], zmm6", "vmovdqu64 [rsi + 448], zmm7", "vmovdqu64 [rsi + 512], zmm8",
            "vmovdqu64 [rsi + 576], zmm9", "vmovdqu64 [rsi + 640], zmm10", "vmovdqu64 [rsi + 704], zmm11",
            "vmovdqu64 [rsi + 768], zmm12", "vmovdqu64 [rsi + 832], zmm13", "vmovdqu64 [rsi + 896], zmm14",
            "vmovdqu64 [rsi + 960], zmm15", "vmovdqu64 [rsi + 1024], zmm16", "vmovdqu64 [rsi + 1088], zmm17",
            "vmovdqu64 [rsi + 1152], zmm18", "vmovdqu64 [rsi + 1216], zmm19", "vmovdqu64 [rsi + 1280], zmm20",
            "vmovdqu64 [rsi + 1344], zmm21", "vmovdqu64 [rsi + 1408], zmm22", "vmovdqu64 [rsi + 1472], zmm23",
            "vmovdqu64 [rsi + 1536], zmm24", "vmovdqu64 [rsi + 1600], zmm25", "vmovdqu64 [rsi + 1664], zmm26",
            "vmovdqu64 [rsi + 1728], zmm27", "vmovdqu64 [rsi + 1792], zmm28", "vmovdqu64 [rsi + 1856], zmm29",
            "vmovdqu64 [rsi + 1920], zmm30", "vmovdqu64 [rsi + 1984], zmm31",
            "kmovw [rsi + 2120], k1", "kmovw [rsi + 2128], k2", "kmovw [rsi + 2136], k3",
            "kmovw [rsi + 2144], k4", "kmovw [rsi + 2152], k5", "kmovw [rsi + 2160], k6",
            "kmovw [rsi + 2168], k7",
            gpr_out!(),
            "vzeroupper",
            in("rdi") inp as *const VecBuf, in("rsi") out as *mut VecBuf, in("rdx") flag,
            out("rax") _, out("rcx") _, out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
            out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _,
            out("zmm18") _, out("zmm19") _, out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
            out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _, out("zmm28") _, out("zmm29") _,
            out("zmm30") _, out("zmm31") _,
            out("k1") _, out("k2") _, out("k3") _, out("k4") _, out("k5") _, out("k6") _, out("k7") _,
            options(nostack),
        )
    }
}

/// Private and shared mappings of files in `dir`.
///
/// private.dat (16 pages, pattern tag 1) is mapped MAP_PRIVATE read-write
/// twice: whole, and pages 4.. at file offset 4 pages. Pages 1, 5 and 6 of
/// the whole mapping and page 2 of the offset one are overwritten (tag 2),
/// pages 2 and 3 are read (present but still the file's), the rest never
/// touched. shared.dat (8 pages, tag 3) is mapped MAP_SHARED read-write;
/// page 0 is overwritten before the dump (tag 4). Each check also writes
/// page 3 of the shared mapping (tag 5 + check number) and reads it back
/// from the file.
fn filemap(dir: &str) -> impl FnMut() -> Result<String, String> {
    let ppath = format!("{dir}/private.dat");
    let spath = format!("{dir}/shared.dat");
    let mut content = Vec::new();
    for pg in 0..16 {
        content.extend(page_bytes(1, pg));
    }
    std::fs::write(&ppath, &content).expect("write private.dat");
    let mut content = Vec::new();
    for pg in 0..8 {
        content.extend(page_bytes(3, pg));
    }
    std::fs::write(&spath, &content).expect("write shared.dat");
    let pf = File::open(&ppath).expect("open private.dat");
    let sf = std::fs::OpenOptions::new().read(true).write(true).open(&spath).expect("open shared.dat");
    use std::os::fd::AsRawFd;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: fresh mappings of files we own.
    let (whole, part, shared) = unsafe {
        let whole = libc::mmap(std::ptr::null_mut(), 16 * PAGE, rw, libc::MAP_PRIVATE, pf.as_raw_fd(), 0);
        let part = libc::mmap(std::ptr::null_mut(), 12 * PAGE, rw, libc::MAP_PRIVATE, pf.as_raw_fd(), 4 * PAGE as i64);
        let shared = libc::mmap(std::ptr::null_mut(), 8 * PAGE, rw, libc::MAP_SHARED, sf.as_raw_fd(), 0);
        assert!(whole != libc::MAP_FAILED && part != libc::MAP_FAILED && shared != libc::MAP_FAILED);
        (whole as *mut u8, part as *mut u8, shared as *mut u8)
    };
    // The descriptors go: only the mappings hold the files.
    drop(pf);
    drop(sf);
    let at = |base: *mut u8, pg: usize| base.wrapping_add(pg * PAGE);
    for pg in [1, 5, 6] {
        fill_page(at(whole, pg), 2, pg);
    }
    fill_page(at(part, 2), 2, 100);
    let mut sink = 0u64;
    for pg in [2, 3] {
        // SAFETY: reading our own mapping.
        sink ^= unsafe { (at(whole, pg) as *const u64).read_volatile() };
    }
    std::hint::black_box(sink);
    fill_page(at(shared, 0), 4, 0);
    // SAFETY: our mapping.
    unsafe { libc::msync(shared as *mut _, 8 * PAGE, libc::MS_SYNC) };
    let mut checks = 0u64;
    move || {
        for pg in 0..16 {
            let want = if [1, 5, 6].contains(&pg) { (2, pg) } else { (1, pg) };
            check_page(at(whole, pg), Some(want), &format!("private mapping page {pg}"))?;
        }
        for pg in 0..12 {
            let want = if pg == 2 { (2, 100) } else { (1, pg + 4) };
            check_page(at(part, pg), Some(want), &format!("private mapping at offset 4, page {pg}"))?;
        }
        let file = std::fs::read(&ppath).map_err(|e| format!("read private.dat: {e}"))?;
        for pg in 0..16 {
            check_bytes(&file[pg * PAGE..(pg + 1) * PAGE], &page_bytes(1, pg), &format!("private.dat page {pg}"))?;
        }
        for pg in 0..8 {
            let want = match pg {
                0 => (4, 0),
                3 if checks > 0 => (5 + checks - 1, 3),
                _ => (3, pg),
            };
            check_page(at(shared, pg), Some(want), &format!("shared mapping page {pg}"))?;
        }
        checks += 1;
        fill_page(at(shared, 3), 5 + checks - 1, 3);
        // SAFETY: our mapping.
        unsafe { libc::msync(shared as *mut _, 8 * PAGE, libc::MS_SYNC) };
        let f = File::open(&spath).map_err(|e| format!("open shared.dat: {e}"))?;
        let mut page = vec![0u8; PAGE];
        f.read_exact_at(&mut page, 3 * PAGE as u64).map_err(|e| format!("read shared.dat: {e}"))?;
        check_bytes(&page, &page_bytes(5 + checks - 1, 3), "shared.dat page 3 after a write through the mapping")?;
        Ok(format!("filemap checks={checks}"))
    }
}

/// The protection layout: (page, count, prot, holds data).
const PROT_LAYOUT: [(usize, usize, i32, bool); 9] = [
    (0, 2, libc::PROT_READ | libc::PROT_WRITE, true),
    (2, 1, libc::PROT_NONE, false),
    (3, 1, libc::PROT_READ | libc::PROT_WRITE, true),
    (4, 2, libc::PROT_READ, true),
    (6, 1, libc::PROT_NONE, true),
    (7, 1, libc::PROT_READ | libc::PROT_WRITE, true),
    (8, 1, libc::PROT_READ | libc::PROT_EXEC, true),
    (9, 1, libc::PROT_WRITE, true),
    (10, 2, libc::PROT_NONE, false),
];

fn perms_of(prot: i32) -> String {
    let r = if prot & libc::PROT_READ != 0 { 'r' } else { '-' };
    let w = if prot & libc::PROT_WRITE != 0 { 'w' } else { '-' };
    let x = if prot & libc::PROT_EXEC != 0 { 'x' } else { '-' };
    format!("{r}{w}{x}p")
}

/// The lines of /proc/self/maps within `[start, end)`, as "start-end perms".
fn own_maps(start: usize, end: usize) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let range = it.next()?;
            let perms = it.next()?;
            let (s, e) = range.split_once('-')?;
            let s = usize::from_str_radix(s, 16).ok()?;
            let e = usize::from_str_radix(e, 16).ok()?;
            (s < end && e > start).then(|| format!("{:#x}-{:#x} {perms}", s - start, e - start))
        })
        .collect()
}

fn protect_mode() -> impl FnMut() -> Result<String, String> {
    // A guard page on each side keeps neighbours from merging in.
    let pages = 12;
    let outer = map_anon((pages + 2) * PAGE, libc::PROT_NONE, 0);
    let base = outer.wrapping_add(PAGE);
    // SAFETY: replaces the middle of our own reservation.
    let p = unsafe {
        libc::mmap(
            base as *mut _,
            pages * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    assert_eq!(p as *mut u8, base);
    for &(first, n, _, data) in &PROT_LAYOUT {
        if data {
            for pg in first..first + n {
                fill_page(base.wrapping_add(pg * PAGE), 6, pg);
            }
        }
    }
    for &(first, n, prot, _) in &PROT_LAYOUT {
        protect(base.wrapping_add(first * PAGE), n * PAGE, prot);
    }
    let (start, end) = (outer as usize, outer as usize + (pages + 2) * PAGE);
    let mut expect = vec![format!("0x0-{:#x} ---p", PAGE)];
    expect.extend(
        PROT_LAYOUT
            .iter()
            .map(|&(f, n, prot, _)| format!("{:#x}-{:#x} {}", (f + 1) * PAGE, (f + 1 + n) * PAGE, perms_of(prot))),
    );
    // The trailing guard does not merge with the PROT_NONE pages before it:
    // those were writable once, so they are accounted (VM_ACCOUNT).
    expect.push(format!("{:#x}-{:#x} ---p", (pages + 1) * PAGE, (pages + 2) * PAGE));
    let at_setup = own_maps(start, end);
    assert_eq!(at_setup, expect, "protection layout as set up");
    move || {
        let now = own_maps(start, end);
        if now != expect {
            return Err(format!("protections: {now:?}, want {expect:?}"));
        }
        // Read through /proc/self/mem: it ignores protections and leaves them alone.
        let mem = File::open("/proc/self/mem").map_err(|e| format!("open /proc/self/mem: {e}"))?;
        let mut page = vec![0u8; PAGE];
        for &(first, n, prot, data) in &PROT_LAYOUT {
            for pg in first..first + n {
                let a = base as u64 + (pg * PAGE) as u64;
                mem.read_exact_at(&mut page, a).map_err(|e| format!("read page {pg}: {e}"))?;
                let want = if data { page_bytes(6, pg) } else { vec![0u8; PAGE] };
                check_bytes(&page, &want, &format!("page {pg} ({})", perms_of(prot)))?;
            }
        }
        Ok("protect ok".to_string())
    }
}

/// Pages dropped with MADV_DONTNEED.
const DROPPED: [usize; 13] = [0, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 63];

fn dontneed() -> impl FnMut() -> Result<String, String> {
    let n = 64;
    let p = map_anon(n * PAGE, libc::PROT_READ | libc::PROT_WRITE, 0);
    for pg in 0..n {
        fill_page(p.wrapping_add(pg * PAGE), 7, pg);
    }
    for &pg in &DROPPED {
        // SAFETY: our own mapping.
        let r = unsafe { libc::madvise(p.wrapping_add(pg * PAGE) as *mut _, PAGE, libc::MADV_DONTNEED) };
        assert_eq!(r, 0, "madvise");
    }
    move || {
        for pg in 0..n {
            let want = if DROPPED.contains(&pg) { None } else { Some((7, pg)) };
            check_page(p.wrapping_add(pg * PAGE), want, &format!("page {pg}"))?;
        }
        Ok("dontneed ok".to_string())
    }
}

/// Offsets of the touched pages in the 1 GiB reservation.
fn sparse_offsets() -> Vec<usize> {
    (0..12).map(|k| ((k * 89) << 20) + k * 3 * PAGE).collect()
}

fn sparse() -> impl FnMut() -> Result<String, String> {
    let len = 1usize << 30;
    let p = map_anon(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_NORESERVE);
    for (i, &off) in sparse_offsets().iter().enumerate() {
        fill_page(p.wrapping_add(off), 8, i);
    }
    move || {
        for (i, &off) in sparse_offsets().iter().enumerate() {
            check_page(p.wrapping_add(off), Some((8, i)), &format!("touched page at {off:#x}"))?;
            check_page(p.wrapping_add(off + PAGE), None, &format!("untouched page at {:#x}", off + PAGE))?;
        }
        Ok(format!("sparse base={p:p}"))
    }
}

/// Grows the heap with sbrk by an unaligned amount; returns the heap start.
fn brk_mode() -> (usize, Box<dyn FnMut() -> Result<String, String>>) {
    const GROW: usize = 3 * 1024 * 1024 + 12345;
    // malloc shares the break: give it a large top now and forbid trimming,
    // so it does not move the break behind our back later.
    // SAFETY: mallopt and malloc/free of our own blocks.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
        let before = libc::sbrk(0);
        let mut blocks = Vec::new();
        while libc::sbrk(0) == before && blocks.len() < 1024 {
            blocks.push(libc::malloc(64 * 1024));
        }
        for b in blocks {
            libc::free(b);
        }
    }
    // SAFETY: sbrk on the process's own heap; nothing else moves the break
    // between these calls.
    let (start, brk) = unsafe {
        let r = libc::sbrk(GROW as isize);
        assert_ne!(r as isize, -1, "sbrk");
        (r as usize, libc::sbrk(0) as usize)
    };
    assert_eq!(brk, start + GROW);
    let words = GROW / 8;
    for i in 0..words {
        // SAFETY: inside the memory sbrk just gave us.
        unsafe { (start as *mut u64).add(i).write(splitmix(i as u64 ^ 0xb4b4)) };
    }
    let check = move || {
        // The break first, before anything could allocate; from the kernel
        // (glibc's sbrk(0) answers from its cached copy).
        // SAFETY: brk(0) only reads the break.
        let now = unsafe { libc::syscall(libc::SYS_brk, 0usize) } as usize;
        // SAFETY: as above.
        let cached = unsafe { libc::sbrk(0) } as usize;
        if cached != brk {
            return Err(format!("sbrk(0) is {cached:#x}, was {brk:#x}"));
        }
        // SAFETY: grows and shrinks back the break by 64 KiB.
        let grown = unsafe {
            let r = libc::sbrk(65536) as usize;
            if r as isize == -1 {
                Err(*libc::__errno_location())
            } else {
                let p = r as *mut u64;
                for i in 0..8192 {
                    p.add(i).write(i as u64 ^ 0x77);
                }
                let ok = (0..8192).all(|i| p.add(i).read() == i as u64 ^ 0x77);
                let after = libc::sbrk(0) as usize;
                libc::sbrk(-65536);
                Ok((r, after, ok))
            }
        };
        if now != brk {
            return Err(format!("brk is {now:#x}, was {brk:#x}"));
        }
        match grown {
            Err(e) => return Err(format!("sbrk(64 KiB) failed: errno {e}")),
            Ok((r, after, ok)) => {
                if r != brk || after != brk + 65536 || !ok {
                    return Err(format!("sbrk(64 KiB) gave {r:#x}, break then {after:#x}, data ok {ok}"));
                }
            }
        }
        for i in 0..words {
            // SAFETY: as above.
            let got = unsafe { (start as *const u64).add(i).read() };
            if got != splitmix(i as u64 ^ 0xb4b4) {
                return Err(format!("heap word {i} is {got:#x}"));
            }
        }
        Ok(format!("brk={brk:#x}"))
    };
    (start, Box::new(check))
}

fn ts_ns(t: &libc::timespec) -> i128 {
    t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
}

fn clock_libc(clock: libc::clockid_t) -> i128 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(clock, &mut t) };
    ts_ns(&t)
}

fn clock_sys(clock: libc::clockid_t) -> i128 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec; the raw syscall bypasses the vDSO.
    unsafe { libc::syscall(libc::SYS_clock_gettime, clock, &mut t) };
    ts_ns(&t)
}

fn vdso() -> impl FnMut() -> Result<String, String> {
    // SAFETY: getauxval has no preconditions.
    let ehdr = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    assert_ne!(ehdr, 0, "no vDSO");
    let mut last = [clock_libc(libc::CLOCK_MONOTONIC), clock_libc(libc::CLOCK_REALTIME)];
    move || {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        if !maps.lines().any(|l| l.starts_with(&format!("{ehdr:x}-")) && l.ends_with("[vdso]")) {
            return Err(format!("AT_SYSINFO_EHDR {ehdr:#x} is not the [vdso] mapping"));
        }
        let mut out = String::new();
        for (i, (clock, name)) in
            [(libc::CLOCK_MONOTONIC, "monotonic"), (libc::CLOCK_REALTIME, "realtime")].into_iter().enumerate()
        {
            let a = clock_libc(clock);
            let s = clock_sys(clock);
            let b = clock_libc(clock);
            std::thread::sleep(std::time::Duration::from_millis(20));
            let c = clock_libc(clock);
            if a <= last[i] {
                return Err(format!("{name}: {a} ns is not after the last check's {} ns", last[i]));
            }
            if clock == libc::CLOCK_MONOTONIC && !(a <= s && s <= b) {
                return Err(format!("{name}: vDSO {a}, {b} ns do not bracket the syscall's {s} ns"));
            }
            if (a - s).abs() > 1_000_000_000 {
                return Err(format!("{name}: vDSO {a} ns, syscall {s} ns"));
            }
            if c - b < 20_000_000 {
                return Err(format!("{name}: advanced {} ns over a 20 ms sleep", c - b));
            }
            last[i] = c;
            let _ = write!(out, "{name}={} ", c / 1_000_000);
        }
        Ok(out.trim_end().to_string())
    }
}

/// The vDSO and its data areas unmapped (as some sandboxes and zdtm's
/// vdso02 do): nothing of them may come back. No clock is read through the
/// vDSO from here on.
fn novdso() -> impl FnMut() -> Result<String, String> {
    let special = |l: &str| ["[vdso]", "[vvar]", "[vvar_vclock]"].iter().any(|n| l.ends_with(n));
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read maps");
    for l in maps.lines().filter(|l| special(l)) {
        let (s, e) = l.split_whitespace().next().and_then(|r| r.split_once('-')).expect("maps range");
        let (s, e) = (usize::from_str_radix(s, 16).unwrap(), usize::from_str_radix(e, 16).unwrap());
        // SAFETY: the kernel's areas, which nothing of ours uses any more.
        assert_eq!(unsafe { libc::munmap(s as *mut _, e - s) }, 0, "munmap {l}");
    }
    move || {
        let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("read maps: {e}"))?;
        match maps.lines().find(|l| special(l)) {
            Some(l) => Err(format!("mapped again: {l}")),
            None => Ok("novdso".into()),
        }
    }
}

fn shmem() -> impl FnMut() -> Result<String, String> {
    let n = 1024; // 4 MiB
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: fresh shared anonymous mappings.
    let (a, b) = unsafe {
        let a = libc::mmap(std::ptr::null_mut(), n * PAGE, rw, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0);
        let b = libc::mmap(std::ptr::null_mut(), 16 * PAGE, rw, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0);
        assert!(a != libc::MAP_FAILED && b != libc::MAP_FAILED);
        (a as *mut u8, b as *mut u8)
    };
    let holes = |pg: usize| pg % 97 == 5 || (300..340).contains(&pg);
    for pg in (0..n).filter(|&pg| !holes(pg)) {
        fill_page(a.wrapping_add(pg * PAGE), 9, pg);
    }
    for pg in 0..16 {
        fill_page(b.wrapping_add(pg * PAGE), 10, pg);
    }
    // Drop the head of the second one: what is left starts at offset 4 pages.
    // SAFETY: our own mapping.
    assert_eq!(unsafe { libc::munmap(b as *mut _, 4 * PAGE) }, 0);
    // And alias pages 4-7 of it elsewhere (mremap with old size 0): one
    // object, two VMAs, each write visible through both.
    // SAFETY: a new mapping of our own shared pages, placed by the kernel.
    let alias = unsafe { libc::mremap(b.wrapping_add(4 * PAGE) as *mut _, 0, 4 * PAGE, libc::MREMAP_MAYMOVE) };
    assert_ne!(alias, libc::MAP_FAILED, "mremap alias");
    let alias = alias as *mut u64;
    // A private mapping of the first object (pages 16..32 of it), made
    // through map_files: page 2 of it is its own copy, the rest is the
    // object's, and writes do not cross between the two.
    let path = format!("/proc/self/map_files/{:x}-{:x}", a as usize, a as usize + n * PAGE);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open map_files");
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh private mapping of our own object, placed by the kernel.
    let private =
        unsafe { libc::mmap(std::ptr::null_mut(), 16 * PAGE, rw, libc::MAP_PRIVATE, f.as_raw_fd(), 16 * PAGE as i64) };
    assert_ne!(private, libc::MAP_FAILED, "private mapping of shared memory");
    drop(f);
    let private = private as *mut u8;
    fill_page(private.wrapping_add(2 * PAGE), 11, 2);
    let mut checks = 0u64;
    move || {
        check_page(private.wrapping_add(2 * PAGE), Some((11, 2)), "private copy of shared page 18")?;
        for pg in [0usize, 1, 3] {
            check_page(
                private.wrapping_add(pg * PAGE),
                Some((9, 16 + pg)),
                &format!("shared page {} seen privately", 16 + pg),
            )?;
        }
        // SAFETY: our mappings, 16 pages long (private) and n pages (a).
        unsafe {
            let shared = a.wrapping_add(17 * PAGE) as *mut u64;
            shared.add(3).write_volatile(0xbeef_0000 + checks);
            if (private.wrapping_add(PAGE) as *const u64).add(3).read_volatile() != 0xbeef_0000 + checks {
                return Err("a write to shared page 17 is not seen through the private mapping".into());
            }
            shared.add(3).write_volatile(pattern(9, 17, 3));
        }
        check_page(a.wrapping_add(18 * PAGE), Some((9, 18)), "shared page 18 under the private copy")?;
        for pg in 0..n {
            let want = if holes(pg) && checks == 0 { None } else { Some((9, pg)) };
            check_page(a.wrapping_add(pg * PAGE), want, &format!("shared page {pg}"))?;
        }
        for pg in 4..16 {
            check_page(b.wrapping_add(pg * PAGE), Some((10, pg)), &format!("shared page {pg} of the offset mapping"))?;
        }
        // The alias and the mapping share their pages.
        for (pg, w) in [(0usize, 7usize), (1, 9), (3, 511)] {
            let via_b = b.wrapping_add((4 + pg) * PAGE) as *mut u64;
            // SAFETY: both are our mappings, 4 pages long.
            unsafe {
                let a = alias.add(pg * PAGE / 8 + w);
                a.write_volatile(0xdead_0000 + checks);
                if via_b.add(w).read_volatile() != 0xdead_0000 + checks {
                    return Err(format!("alias page {pg}: a write through the alias is not seen in the mapping"));
                }
                via_b.add(w).write_volatile(pattern(10, 4 + pg, w));
                if a.read_volatile() != pattern(10, 4 + pg, w) {
                    return Err(format!("alias page {pg}: a write through the mapping is not seen in the alias"));
                }
            }
        }
        // Writes still work, holes included.
        for pg in (0..n).filter(|&pg| holes(pg)) {
            fill_page(a.wrapping_add(pg * PAGE), 9, pg);
        }
        checks += 1;
        Ok(format!("shmem checks={checks}"))
    }
}

/// The `VmFlags:` mnemonics of the VMA holding `addr` (from /proc/self/smaps).
fn vmflags_at(addr: usize) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut inside = false;
    for l in smaps.lines() {
        if let Some(f) = l.strip_prefix("VmFlags:") {
            if inside {
                return f.split_whitespace().map(str::to_string).collect();
            }
        } else if let Some(range) = l.split_whitespace().next().filter(|w| w.contains('-') && !w.ends_with(':')) {
            let (s, e) = range.split_once('-').unwrap_or(("0", "0"));
            let (s, e) = (usize::from_str_radix(s, 16).unwrap_or(0), usize::from_str_radix(e, 16).unwrap_or(0));
            inside = s <= addr && addr < e;
        }
    }
    Vec::new()
}

fn has_flags(addr: usize, want: &[&str], what: &str) -> Result<(), String> {
    let got = vmflags_at(addr);
    for w in want {
        if !got.iter().any(|g| g == w) {
            return Err(format!("{what}: VmFlags {got:?} lack {w}"));
        }
    }
    Ok(())
}

/// Pagemap bit 58 of our own page at `addr`: a guard region.
fn is_guard(addr: usize) -> Result<bool, String> {
    let f = File::open("/proc/self/pagemap").map_err(|e| format!("open pagemap: {e}"))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, (addr / PAGE * 8) as u64).map_err(|e| format!("read pagemap: {e}"))?;
    Ok(u64::from_ne_bytes(b) & (1 << 58) != 0)
}

const MADV_GUARD_INSTALL: i32 = 102;
const GUARD_PAGES: [usize; 3] = [4, 5, 10];

fn madvise(p: *mut u8, len: usize, advice: i32) -> i32 {
    // SAFETY: p/len lie in a mapping of ours.
    unsafe { libc::madvise(p as *mut _, len, advice) }
}

fn mmflags(dir: &str) -> impl FnMut() -> Result<String, String> {
    use std::os::fd::AsRawFd;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // A shared mapping of a file opened read-write, now read-only.
    let path = format!("{dir}/maywrite.dat");
    let mut content = Vec::new();
    for pg in 0..4 {
        content.extend(page_bytes(20, pg));
    }
    std::fs::write(&path, &content).expect("write maywrite.dat");
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open maywrite.dat");
    // SAFETY: a fresh mapping of a file we own.
    let shared = unsafe { libc::mmap(std::ptr::null_mut(), 4 * PAGE, rw, libc::MAP_SHARED, f.as_raw_fd(), 0) };
    assert_ne!(shared, libc::MAP_FAILED);
    let shared = shared as *mut u8;
    drop(f);
    protect(shared, 4 * PAGE, libc::PROT_READ);

    // Guard regions in the middle of data.
    let guarded = map_anon(16 * PAGE, rw, 0);
    for pg in 0..16 {
        fill_page(guarded.wrapping_add(pg * PAGE), 21, pg);
    }
    let mut guards = true;
    for pg in GUARD_PAGES {
        if madvise(guarded.wrapping_add(pg * PAGE), PAGE, MADV_GUARD_INSTALL) != 0 {
            guards = false;
        }
    }
    // Kept apart by PROT_NONE separators so no two regions merge.
    let sep = || map_anon(PAGE, libc::PROT_NONE, 0);
    let region = |tag: u64, pages: usize, advice: i32| {
        sep();
        let p = map_anon(pages * PAGE, rw, 0);
        for pg in 0..pages {
            fill_page(p.wrapping_add(pg * PAGE), tag, pg);
        }
        if advice >= 0 {
            assert_eq!(madvise(p, pages * PAGE, advice), 0, "madvise {advice}");
        }
        p
    };
    let wipe = region(22, 4, libc::MADV_WIPEONFORK);
    let dontfork = region(23, 4, libc::MADV_DONTFORK);
    let huge = region(24, 4, libc::MADV_HUGEPAGE);
    let nohuge = region(25, 4, libc::MADV_NOHUGEPAGE);
    let merge = region(26, 4, libc::MADV_MERGEABLE);
    let seq = region(40, 2, libc::MADV_SEQUENTIAL);
    let rnd = region(41, 2, libc::MADV_RANDOM);
    let locked = region(27, 8, -1);
    // Droppable memory (MAP_DROPPABLE, Linux 6.11): a map type of its own.
    sep();
    // SAFETY: a fresh mapping chosen by the kernel.
    let droppable = unsafe {
        libc::mmap(std::ptr::null_mut(), 2 * PAGE, rw, 0x08 /* MAP_DROPPABLE */ | libc::MAP_ANONYMOUS, -1, 0)
    };
    let droppable = (droppable != libc::MAP_FAILED).then_some(droppable as *mut u8);
    // SAFETY: our own mapping.
    assert_eq!(unsafe { libc::mlock(locked as *const _, 8 * PAGE) }, 0, "mlock");
    sep();
    let onfault = map_anon(8 * PAGE, rw, 0);
    // SAFETY: our own mapping; MLOCK_ONFAULT = 1.
    assert_eq!(unsafe { libc::mlock2(onfault as *const _, 8 * PAGE, 1) }, 0, "mlock2 MLOCK_ONFAULT");
    for pg in [1, 6] {
        fill_page(onfault.wrapping_add(pg * PAGE), 28, pg);
    }
    sep();
    // SAFETY: plain prctl.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) }, 0, "PR_SET_THP_DISABLE");
    let mut checks = 0u64;
    move || {
        checks += 1;
        // Writable again, and the write reaches the file.
        // SAFETY: our own mapping.
        if unsafe { libc::mprotect(shared as *mut _, 4 * PAGE, rw) } != 0 {
            return Err(format!("mprotect the read-only shared mapping writable: {}", std::io::Error::last_os_error()));
        }
        fill_page(shared.wrapping_add(PAGE), 30 + checks, 1);
        // SAFETY: our own mapping.
        unsafe { libc::msync(shared as *mut _, 4 * PAGE, libc::MS_SYNC) };
        protect(shared, 4 * PAGE, libc::PROT_READ);
        let file = std::fs::read(&path).map_err(|e| format!("read maywrite.dat: {e}"))?;
        check_bytes(&file[PAGE..2 * PAGE], &page_bytes(30 + checks, 1), "maywrite.dat page 1")?;
        check_page(shared, Some((20, 0)), "maywrite page 0")?;

        for pg in 0..16 {
            let a = guarded.wrapping_add(pg * PAGE);
            let g = guards && GUARD_PAGES.contains(&pg);
            if is_guard(a as usize)? != g {
                return Err(format!("page {pg} of the guarded region: guard {}, want {g}", !g));
            }
            if !g {
                check_page(a, Some((21, pg)), &format!("guarded region page {pg}"))?;
            }
        }
        for (p, tag, pages, flags, what) in [
            (wipe, 22, 4, &["wf"][..], "wipeonfork"),
            (dontfork, 23, 4, &["dc"][..], "dontfork"),
            (huge, 24, 4, &["hg"][..], "hugepage"),
            (nohuge, 25, 4, &["nh"][..], "nohugepage"),
            (merge, 26, 4, &["mg"][..], "mergeable"),
            (seq, 40, 2, &["sr"][..], "sequential"),
            (rnd, 41, 2, &["rr"][..], "random"),
            (locked, 27, 8, &["lo"][..], "mlock"),
        ] {
            has_flags(p as usize, flags, what)?;
            for pg in 0..pages {
                check_page(p.wrapping_add(pg * PAGE), Some((tag, pg)), &format!("{what} page {pg}"))?;
            }
        }
        has_flags(onfault as usize, &["lo", "lf"], "mlock2 onfault")?;
        if let Some(d) = droppable {
            has_flags(d as usize, &["dp"], "droppable")?;
        }
        for pg in 0..8 {
            let want = [1, 6].contains(&pg).then_some((28, pg));
            check_page(onfault.wrapping_add(pg * PAGE), want, &format!("onfault page {pg}"))?;
        }
        // SAFETY: plain prctl.
        let thp = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        if thp != 1 {
            return Err(format!("PR_GET_THP_DISABLE is {thp}"));
        }
        Ok(format!("mmflags checks={checks} guards={}", if guards { "yes" } else { "unsupported" }))
    }
}

/// Kernel `struct iocb` (linux/aio_abi.h) on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    lio_opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

/// Kernel `struct io_event`.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const IOCB_CMD_PREAD: u16 = 0;
const AIO_FILE_LEN: usize = 64 * 1024;

/// One read request: where it reads, how much, under which tag.
struct AioReq {
    cb: Box<Iocb>,
    buf: Vec<u8>,
}

fn io_setup(nr: u32) -> u64 {
    let mut ctx = 0u64;
    // SAFETY: io_setup writes the context id into `ctx`.
    let r = unsafe { libc::syscall(libc::SYS_io_setup, nr, &mut ctx as *mut u64) };
    assert_eq!(r, 0, "io_setup({nr}): {}", std::io::Error::last_os_error());
    ctx
}

/// Submits `reqs`, all of them.
fn io_submit(ctx: u64, reqs: &mut [AioReq]) -> Result<(), String> {
    let mut list: Vec<*mut Iocb> = reqs.iter_mut().map(|r| &mut *r.cb as *mut Iocb).collect();
    let mut done = 0;
    while done < list.len() {
        // SAFETY: every iocb and its buffer live in `reqs` until reaped.
        let r = unsafe { libc::syscall(libc::SYS_io_submit, ctx, list.len() - done, list[done..].as_mut_ptr()) };
        if r <= 0 {
            return Err(format!("io_submit: {r} {}", std::io::Error::last_os_error()));
        }
        done += r as usize;
    }
    Ok(())
}

/// io_getevents(ctx, min, max) with a timeout of `ms`.
fn io_getevents(ctx: u64, min: usize, max: usize, ms: i64) -> Result<Vec<IoEvent>, String> {
    let mut ev = vec![IoEvent::default(); max];
    let ts = libc::timespec { tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000 };
    // SAFETY: `ev` has room for `max` events.
    let r =
        unsafe { libc::syscall(libc::SYS_io_getevents, ctx, min, max, ev.as_mut_ptr(), &ts as *const libc::timespec) };
    if r < 0 {
        return Err(format!("io_getevents: {}", std::io::Error::last_os_error()));
    }
    ev.truncate(r as usize);
    Ok(ev)
}

/// The ring header words of context `ctx` (its address): id, nr, head, tail.
fn ring_header(ctx: u64) -> [u32; 4] {
    let p = ctx as *const u32;
    // SAFETY: the context id is the address of its ring, mapped readable.
    unsafe { [p.read_volatile(), p.add(1).read_volatile(), p.add(2).read_volatile(), p.add(3).read_volatile()] }
}

/// The bytes of the test file at `off`.
fn aio_file_bytes(off: usize, len: usize) -> Vec<u8> {
    (off..off + len).map(|i| (splitmix(i as u64 / 8) >> ((i % 8) * 8)) as u8).collect()
}

/// Read requests tagged `tag0..`: request i reads 100 + i bytes at 4096 * (i % 16) + i.
fn aio_reqs(fd: i32, tag0: u64, n: usize) -> Vec<AioReq> {
    (0..n)
        .map(|i| {
            let len = 100 + i;
            let mut buf = vec![0u8; len];
            let cb = Box::new(Iocb {
                data: tag0 + i as u64,
                lio_opcode: IOCB_CMD_PREAD,
                fildes: fd as u32,
                buf: buf.as_mut_ptr() as u64,
                nbytes: len as u64,
                offset: (4096 * (i % 16) + i) as i64,
                ..Default::default()
            });
            AioReq { cb, buf }
        })
        .collect()
}

/// Checks that `ev` are the completions of `reqs`, in order, with their data.
fn check_events(what: &str, ev: &[IoEvent], reqs: &[AioReq]) -> Result<(), String> {
    if ev.len() != reqs.len() {
        return Err(format!("{what}: {} completions, want {}", ev.len(), reqs.len()));
    }
    for (e, r) in ev.iter().zip(reqs) {
        let want = IoEvent { data: r.cb.data, obj: &*r.cb as *const Iocb as u64, res: r.cb.nbytes as i64, res2: 0 };
        if *e != want {
            return Err(format!("{what}: completion {e:?}, want {want:?}"));
        }
        check_bytes(&r.buf, &aio_file_bytes(r.cb.offset as usize, r.buf.len()), what)?;
    }
    Ok(())
}

/// Submits `n` reads on `ctx` and reaps them all (they complete at once).
fn aio_round(ctx: u64, fd: i32, tag0: u64, n: usize, what: &str) -> Result<(), String> {
    let mut reqs = aio_reqs(fd, tag0, n);
    io_submit(ctx, &mut reqs)?;
    let ev = io_getevents(ctx, n, n, 5000)?;
    check_events(what, &ev, &reqs)
}

fn aio(dir: &str, read_only: bool) -> impl FnMut() -> Result<String, String> {
    let path = format!("{dir}/aio.dat");
    std::fs::write(&path, aio_file_bytes(0, AIO_FILE_LEN)).expect("write the aio file");
    let fd = File::open(&path).expect("open the aio file");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    std::mem::forget(fd);
    // Slot 0 is freed again: the others keep slots 1 and 2.
    let gone = io_setup(1);
    let big = io_setup(200);
    let small = io_setup(8);
    // SAFETY: io_destroy of a context of ours with nothing in flight.
    assert_eq!(unsafe { libc::syscall(libc::SYS_io_destroy, gone) }, 0, "io_destroy");
    let nr = ring_header(big)[1] as usize;
    // Round the big ring's tail until it stands 5 slots before the end.
    let mut reaped = 0;
    while reaped + 5 < nr {
        let n = (nr - 5 - reaped).min(50);
        aio_round(big, raw, 1_000_000 + reaped as u64, n, "warm-up").expect("warm-up round");
        reaped += n;
    }
    // Left for after the restore: ten across the ring's end, two in the small ring.
    let mut pend_big = aio_reqs(raw, 0xb16_0000, 10);
    io_submit(big, &mut pend_big).expect("submit the pending reads");
    aio_round(small, raw, 2_000_000, 3, "small warm-up").expect("small warm-up");
    let mut pend_small = aio_reqs(raw, 0x5a11_0000, 2);
    io_submit(small, &mut pend_small).expect("submit the small ring's pending reads");
    let want_big = [1u32, nr as u32, (nr - 5) as u32, 5];
    let want_small = [2u32, ring_header(small)[1], 3, 5];
    if read_only {
        // The kernel writes the ring through its own mapping: it still works.
        protect(big as *mut u8, (32 + 32 * nr).div_ceil(PAGE) * PAGE, libc::PROT_READ);
    }
    let mut checks = 0u32;
    let mut pending = Some((pend_big, pend_small));
    move || {
        checks += 1;
        let (hb, hs) = (ring_header(big), ring_header(small));
        if let Some((pb, ps)) = pending.take() {
            if hb != want_big || hs != want_small {
                pending = Some((pb, ps));
                return Err(format!("ring headers {hb:?} {hs:?}, want {want_big:?} {want_small:?}"));
            }
            if checks == 1 {
                // Before the dump: the rings stay as they are.
                pending = Some((pb, ps));
                return Ok(format!("aio checks={checks} nr={nr} pending=kept"));
            }
            // After the restore: exactly the pending completions, then none.
            let ev = io_getevents(big, 1, 64, 1000)?;
            check_events("big ring's pending", &ev, &pb)?;
            let ev = io_getevents(small, 1, 64, 1000)?;
            check_events("small ring's pending", &ev, &ps)?;
            for (c, w) in [(big, "big"), (small, "small")] {
                let more = io_getevents(c, 0, 64, 0)?;
                if !more.is_empty() {
                    return Err(format!("{w} ring: {} more completions", more.len()));
                }
            }
        }
        // New requests on the same context ids.
        let tag = 3_000_000 + checks as u64 * 1000;
        aio_round(big, raw, tag, 7, "new reads on the big ring")?;
        aio_round(small, raw, tag + 500, 4, "new reads on the small ring")?;
        let (hb, hs) = (ring_header(big), ring_header(small));
        if hb[0] != 1 || hs[0] != 2 || hb[1] as usize != nr {
            return Err(format!("ring ids or sizes changed: {hb:?} {hs:?}"));
        }
        Ok(format!("aio checks={checks} nr={nr} pending=reaped"))
    }
}

fn mlockall() -> impl FnMut() -> Result<String, String> {
    let p = map_anon(16 * PAGE, libc::PROT_READ | libc::PROT_WRITE, 0);
    for pg in 0..16 {
        fill_page(p.wrapping_add(pg * PAGE), 29, pg);
    }
    // SAFETY: plain libc call.
    assert_eq!(unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) }, 0, "mlockall");
    move || {
        has_flags(p as usize, &["lo"], "a region locked by MCL_CURRENT")?;
        for pg in 0..16 {
            check_page(p.wrapping_add(pg * PAGE), Some((29, pg)), &format!("locked page {pg}"))?;
        }
        let fresh = map_anon(PAGE, libc::PROT_READ, 0);
        let r = has_flags(fresh as usize, &["lo"], "a region mapped after mlockall(MCL_FUTURE)");
        // SAFETY: our own mapping, unmapped again.
        unsafe { libc::munmap(fresh as *mut _, PAGE) };
        r?;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let lck = status.lines().find(|l| l.starts_with("VmLck:")).unwrap_or("").to_string();
        let kb: u64 = lck.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        if kb < 64 {
            return Err(format!("{lck}: less than the 64 KiB region"));
        }
        Ok("mlockall ok".to_string())
    }
}

/// A numeric `KEY:` field (kB) of the VMA holding `addr` in /proc/self/smaps.
fn smaps_kb(addr: usize, key: &str) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut inside = false;
    for l in smaps.lines() {
        if let Some(v) = l.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            if inside {
                return v.split_whitespace().next().and_then(|n| n.parse().ok());
            }
        } else if let Some(range) = l.split_whitespace().next().filter(|w| w.contains('-') && !w.ends_with(':')) {
            let (s, e) = range.split_once('-').unwrap_or(("0", "0"));
            let (s, e) = (usize::from_str_radix(s, 16).unwrap_or(0), usize::from_str_radix(e, 16).unwrap_or(0));
            inside = s <= addr && addr < e;
        }
    }
    None
}

/// Huge page size of the `hugetlb` mode.
const HUGE: usize = 2 << 20;

/// The `hugetlb` mode's regions: (what, huge pages, written pages, flags).
/// The last one is the parent's alone and loses its first huge page
/// (munmap): its object is mapped at an offset.
const HUGE_REGIONS: [(&str, usize, &[usize], i32); 4] = [
    ("private", 3, &[0, 2], libc::MAP_PRIVATE),
    ("noreserve", 2, &[1], libc::MAP_PRIVATE | libc::MAP_NORESERVE),
    ("shared", 4, &[0, 2], libc::MAP_SHARED),
    ("offset", 3, &[2], libc::MAP_SHARED),
];

/// Where region `r` starts now (the offset one lost its first huge page).
fn huge_start(r: usize, base: *mut u8) -> *mut u8 {
    base.wrapping_add(if r == 3 { HUGE } else { 0 })
}

/// Whether 4 KiB page `sub` of huge page `hp` of region `r` is written
/// (the first of the shared one holds the parent-child control words, one
/// of private page 2 stays zero).
fn huge_sub_written(r: usize, hp: usize, sub: usize) -> bool {
    HUGE_REGIONS[r].2.contains(&hp) && !(r == 2 && hp == 0 && sub == 0) && !(r == 0 && hp == 2 && sub == 5)
}

/// Populated bytes of the hugetlb object mapped at `addr..addr+len`: the
/// st_blocks of its hugetlbfs file (the kernel adds a huge page's blocks
/// when one enters its page cache), through /proc/self/map_files.
fn object_bytes(addr: usize, len: usize) -> Result<u64, String> {
    let path = format!("/proc/self/map_files/{:x}-{:x}", addr, addr + len);
    let md = std::fs::metadata(&path).map_err(|e| format!("stat {path}: {e}"))?;
    use std::os::unix::fs::MetadataExt;
    Ok(md.blocks() * 512)
}

/// Hugetlb memory state of the region at `addr`: 2 MiB pages, `ht`, and
/// (private) exactly `filled` huge pages populated in this process.
fn huge_state(addr: usize, what: &str, flags: i32, filled: Option<usize>) -> Result<(), String> {
    let kps = smaps_kb(addr, "KernelPageSize");
    if kps != Some(2048) {
        return Err(format!("{what}: KernelPageSize {kps:?} kB, want 2048"));
    }
    let mut want = vec!["ht"];
    if flags & libc::MAP_NORESERVE != 0 {
        want.push("nr");
    }
    if flags & libc::MAP_SHARED != 0 {
        want.push("sh");
    }
    has_flags(addr, &want, what)?;
    if let Some(n) = filled {
        let kb = smaps_kb(addr, "Private_Hugetlb").unwrap_or(0) + smaps_kb(addr, "Shared_Hugetlb").unwrap_or(0);
        if kb != ((n * HUGE) >> 10) as u64 {
            return Err(format!(
                "{what}: {kb} kB of huge pages populated, want {} (untouched pages populated?)",
                n * 2048
            ));
        }
    }
    Ok(())
}

/// The written contents of region `r` at `base`.
fn huge_contents(r: usize, base: *mut u8) -> Result<(), String> {
    let (what, _, written, _) = HUGE_REGIONS[r];
    for &hp in written {
        for sub in 0..HUGE / PAGE {
            if r == 2 && hp == 0 && sub == 0 {
                continue; // the control words
            }
            let want = huge_sub_written(r, hp, sub).then_some((20 + r as u64, hp * 512 + sub));
            check_page(base.wrapping_add(hp * HUGE + sub * PAGE), want, &format!("{what} huge page {hp}.{sub}"))?;
        }
    }
    Ok(())
}

/// Page size, flags and populated huge pages of every region: private
/// ones in this process (smaps), shared ones in their object.
fn populated(bases: &[*mut u8; 4], when: &str) -> Result<(), String> {
    for (r, &(what, n, written, flags)) in HUGE_REGIONS.iter().enumerate() {
        let private = flags & libc::MAP_SHARED == 0;
        let start = huge_start(r, bases[r]);
        huge_state(start as usize, what, flags, private.then_some(written.len()))?;
        if !private {
            let len = n * HUGE - (start as usize - bases[r] as usize);
            let got = object_bytes(start as usize, len)?;
            if got != (written.len() * HUGE) as u64 {
                return Err(format!(
                    "{what}: {got} bytes of the object populated{when}, want {}",
                    written.len() * HUGE
                ));
            }
        }
    }
    Ok(())
}

/// `hugetlb`: private, private MAP_NORESERVE and shared MAP_HUGETLB memory
/// in 2 MiB pages, some written, some never touched; a child shares the
/// shared one (it unmaps the private ones) and answers requests through
/// it. A check verifies page size, flags, that untouched pages are still
/// not populated, the contents, and that the child still shares.
fn hugetlb() -> impl FnMut() -> Result<String, String> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut bases = [std::ptr::null_mut::<u8>(); 4];
    for (r, &(what, n, written, flags)) in HUGE_REGIONS.iter().enumerate() {
        // SAFETY: a fresh mapping chosen by the kernel.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                n * HUGE,
                rw,
                flags | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap {what} hugetlb: {}", std::io::Error::last_os_error());
        let p = p as *mut u8;
        for &hp in written {
            for sub in (0..HUGE / PAGE).filter(|&s| huge_sub_written(r, hp, s)) {
                fill_page(p.wrapping_add(hp * HUGE + sub * PAGE), 20 + r as u64, hp * 512 + sub);
            }
        }
        bases[r] = p;
    }
    // SAFETY: the first huge page of our own mapping, never used again.
    assert_eq!(unsafe { libc::munmap(bases[3] as *mut _, HUGE) }, 0, "munmap");
    // Control words in the shared memory: [0] request, [1] answer, [2] the
    // child's verdict (0 ok, else the failing step).
    let ctl = bases[2] as *mut u64;
    // SAFETY: fork in a single-threaded program.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork");
    if child == 0 {
        // SAFETY: our own private mappings, no longer used by the child.
        unsafe {
            libc::munmap(bases[0] as *mut _, 3 * HUGE);
            libc::munmap(bases[1] as *mut _, 2 * HUGE);
            libc::munmap(bases[3].wrapping_add(HUGE) as *mut _, 2 * HUGE);
        }
        let parent = std::os::unix::process::parent_id();
        let mut seen = 0u64;
        loop {
            // SAFETY: the control words are in our shared mapping.
            let req = unsafe { ctl.read_volatile() };
            if req != seen {
                seen = req;
                let verdict = match huge_state(bases[2] as usize, "child shared", libc::MAP_SHARED, None)
                    .and_then(|()| huge_contents(2, bases[2]))
                {
                    Ok(()) => 0,
                    Err(_) => 1,
                };
                // SAFETY: as above.
                unsafe {
                    ctl.add(2).write_volatile(verdict);
                    ctl.add(1).write_volatile(req);
                }
            }
            if std::os::unix::process::parent_id() != parent {
                // SAFETY: leaves the forked child at once.
                unsafe { libc::_exit(0) };
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    let mut checks = 0u64;
    move || {
        // Untouched pages first, before anything could touch them.
        populated(&bases, "")?;
        for (r, &base) in bases.iter().enumerate() {
            huge_contents(r, base)?;
        }
        // The child still shares the memory.
        checks += 1;
        // SAFETY: the control words are in our shared mapping.
        unsafe { ctl.write_volatile(checks) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // SAFETY: as above.
        while unsafe { ctl.add(1).read_volatile() } != checks {
            if std::time::Instant::now() > deadline {
                return Err("the child does not answer through the shared memory".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // SAFETY: as above.
        let verdict = unsafe { ctl.add(2).read_volatile() };
        if verdict != 0 {
            return Err(format!("the child's check failed ({verdict})"));
        }
        // Reading left the untouched pages alone.
        populated(&bases, " after the check")?;
        Ok(format!("hugetlb checks={checks}"))
    }
}
