//! Fault injection: named failure points chosen by the `CRTOOLS_FAULT`
//! environment variable, so tests can prove that a dump failing at any
//! step leaves the target running as it was and that a restore failing at
//! any step leaves nothing behind.
//!
//! `CRTOOLS_FAULT` is a comma-separated list of `name` (the first hit of
//! the point fails) or `name:N` (the N-th hit fails, counted from 1 in
//! this process). `crtools check --faults` lists the points.
//!
//! Invariants: unset, every point costs one load of an initialised
//! `OnceLock` and nothing else. [`hit`] only counts with atomics and never
//! allocates once [`init`] ran, so the forked children of a restore may
//! call [`hit_in_child`] (their counters are copies of the parent's at the
//! fork). A restorer-blob point is not counted by the engine: the blob
//! fails when it reaches that step (see `restorer_plan::Plan::fault_step`).
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The failure points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Dump: seizing a task of the tree (each task; threads included).
    DumpSeize,
    /// Dump: each command sent to the parasite.
    DumpParasiteCmd,
    /// Dump: each thread other than the leader, read through the parasite.
    DumpThread,
    /// Dump: each descriptor table of a task, before its files are read.
    DumpFds,
    /// Dump: after the parasite collected a task's state, before the cure.
    DumpInfected,
    /// Dump: not a failure: crtools kills itself (SIGKILL) while the
    /// parasite serves a task, after it collected the task's state; the
    /// parasite must cure the task by itself.
    DumpDieServing,
    /// Dump: not a failure: crtools kills itself (SIGKILL) in the middle
    /// of a system call it runs in a thread other than the served one
    /// (the thread's registers and mask are the call's); the thread must
    /// put both back by itself.
    DumpDieThreadCall,
    /// Dump: the cure of each parasite (it is cured on the error path).
    DumpCure,
    /// Dump: each /proc read of a task after the cure (smaps, cgroups).
    DumpProc,
    /// Dump: each batch of pages read from a task and written.
    DumpPageBatch,
    /// Dump: after the pages of a task were written.
    DumpAfterPages,
    /// Dump: each image file created.
    DumpImageWrite,
    /// Dump: right before the inventory would be written.
    DumpBeforeInventory,
    /// Dump: the inventory is written, right before the tree is killed
    /// (the inventory is taken back and the tree resumed).
    DumpKill,
    /// Dump (`-s`): the inventory is written, right before the tree is
    /// left stopped (the inventory is taken back and the tree resumed).
    DumpLeaveStopped,
    /// Restore: each image opened for reading (the inventory excluded).
    RestoreImageRead,
    /// Restore: after every image was read, before anything is created.
    RestoreImagesRead,
    /// Restore: shared memory and copy-on-write copies created.
    RestoreSharedMemory,
    /// Restore: after the SysV shared memory segments were made again
    /// (before the fork; they are removed again).
    RestoreSysvShm,
    /// Restore: each kind of open file description opened (the kinds of
    /// `objects::files`, in their order).
    RestoreOpenKind,
    /// Restore: after every plan was built, before the first fork.
    RestorePlans,
    /// Restore: each fork of a task (the root's fork is the engine's; each
    /// task counts its own forks on top of its parent's count at its fork).
    RestoreFork,
    /// Restore: behave as if clone3 had no set_tid (use ns_last_pid).
    RestoreNoSetTid,
    /// Restore: each process put into its cgroups at its first stop.
    RestoreCgroup,
    /// Restore: after every task and thread reached its trap, before the
    /// registers are set.
    RestoreAtTraps,
    /// Restore: each created thread, before its registers are set.
    RestoreThread,
    /// Restore: each leader, before its registers are set.
    RestoreLeader,
    /// Restore: right before the tree is released.
    RestoreRelease,
    /// Restore: the restorer blob fails at this step (a `restorer_plan::Step`).
    Blob(u32),
}

/// The restorer steps that are failure points: (step, name suffix).
/// Steps every live task runs; the optional ones (rseq, PR_SET_MM_MAP,
/// loginuid) are left out because a test victim may not reach them.
const BLOB_STEPS: [(restorer_plan::Step, &str); 18] = {
    use restorer_plan::Step::*;
    [
        (Signals, "signals"),
        (Session, "session"),
        (Unmap, "unmap"),
        (Vdso, "vdso"),
        (Personality, "personality"),
        (MapVma, "map-vma"),
        (ReadPages, "read-pages"),
        (Protect, "protect"),
        (Aio, "aio"),
        (Files, "files"),
        (Cwd, "cwd"),
        (SigActions, "sigactions"),
        (ITimers, "itimers"),
        (PosixTimers, "posix-timers"),
        (Rlimits, "rlimits"),
        (Prctl, "prctl"),
        (AltStack, "altstack"),
        (Creds, "creds"),
    ]
};

/// Engine points, in pipeline order.
const ENGINE: [Fault; 28] = [
    Fault::DumpSeize,
    Fault::DumpParasiteCmd,
    Fault::DumpThread,
    Fault::DumpFds,
    Fault::DumpInfected,
    Fault::DumpDieServing,
    Fault::DumpDieThreadCall,
    Fault::DumpCure,
    Fault::DumpProc,
    Fault::DumpPageBatch,
    Fault::DumpAfterPages,
    Fault::DumpImageWrite,
    Fault::DumpBeforeInventory,
    Fault::DumpKill,
    Fault::DumpLeaveStopped,
    Fault::RestoreImageRead,
    Fault::RestoreImagesRead,
    Fault::RestoreSharedMemory,
    Fault::RestoreSysvShm,
    Fault::RestoreOpenKind,
    Fault::RestorePlans,
    Fault::RestoreFork,
    Fault::RestoreNoSetTid,
    Fault::RestoreCgroup,
    Fault::RestoreAtTraps,
    Fault::RestoreThread,
    Fault::RestoreLeader,
    Fault::RestoreRelease,
];

impl Fault {
    /// The name used in `CRTOOLS_FAULT`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::DumpSeize => "dump-seize",
            Fault::DumpParasiteCmd => "dump-parasite-cmd",
            Fault::DumpThread => "dump-thread",
            Fault::DumpFds => "dump-fds",
            Fault::DumpInfected => "dump-infected",
            Fault::DumpDieServing => "dump-die-serving",
            Fault::DumpDieThreadCall => "dump-die-thread-call",
            Fault::DumpCure => "dump-cure",
            Fault::DumpProc => "dump-proc",
            Fault::DumpPageBatch => "dump-page-batch",
            Fault::DumpAfterPages => "dump-after-pages",
            Fault::DumpImageWrite => "dump-image-write",
            Fault::DumpBeforeInventory => "dump-before-inventory",
            Fault::DumpKill => "dump-kill",
            Fault::DumpLeaveStopped => "dump-leave-stopped",
            Fault::RestoreImageRead => "restore-image-read",
            Fault::RestoreImagesRead => "restore-images-read",
            Fault::RestoreSharedMemory => "restore-shared-memory",
            Fault::RestoreSysvShm => "restore-sysv-shm",
            Fault::RestoreOpenKind => "restore-open-kind",
            Fault::RestorePlans => "restore-plans",
            Fault::RestoreFork => "restore-fork",
            Fault::RestoreNoSetTid => "restore-no-set-tid",
            Fault::RestoreCgroup => "restore-cgroup",
            Fault::RestoreAtTraps => "restore-at-traps",
            Fault::RestoreThread => "restore-thread",
            Fault::RestoreLeader => "restore-leader",
            Fault::RestoreRelease => "restore-release",
            Fault::Blob(step) => {
                BLOB_NAMES.iter().find(|(s, _)| *s == step).map(|(_, n)| *n).unwrap_or("restore-blob-unknown")
            }
        }
    }

    /// What the point does, for `crtools check --faults`.
    pub fn describe(self) -> String {
        match self {
            Fault::RestoreNoSetTid => "not a failure: forks through ns_last_pid instead of clone3 set_tid".into(),
            Fault::DumpDieServing => {
                "not a failure: crtools kills itself while the parasite serves (it cures the task itself)".into()
            }
            Fault::DumpDieThreadCall => "not a failure: crtools kills itself in the middle of a system call in \
                                         another thread (the thread puts itself back)"
                .into(),
            Fault::Blob(step) => format!("the restorer blob fails at its step '{}'", restorer_plan::Step::name(step)),
            f => format!("fails {}", f.doc()),
        }
    }

    fn doc(self) -> &'static str {
        match self {
            Fault::DumpSeize => "seizing each task of the tree",
            Fault::DumpParasiteCmd => "each parasite command",
            Fault::DumpThread => "reading each non-leader thread",
            Fault::DumpFds => "each task's descriptor table",
            Fault::DumpInfected => "after the parasite collected a task's state",
            Fault::DumpCure => "each cure (the error path cures)",
            Fault::DumpProc => "each /proc read after the cure",
            Fault::DumpPageBatch => "each batch of pages",
            Fault::DumpAfterPages => "after a task's pages were written",
            Fault::DumpImageWrite => "creating each image file",
            Fault::DumpBeforeInventory => "right before the inventory",
            Fault::DumpKill => "killing the dumped tree (after the inventory: it is taken back)",
            Fault::DumpLeaveStopped => "leaving the tree stopped with -s (after the inventory: it is taken back)",
            Fault::RestoreImageRead => "opening each image",
            Fault::RestoreImagesRead => "after every image was read",
            Fault::RestoreSharedMemory => "creating shared memory",
            Fault::RestoreSysvShm => "after making the SysV shared memory segments again",
            Fault::RestoreOpenKind => "opening each kind of file description",
            Fault::RestorePlans => "after the plans, before the first fork",
            Fault::RestoreFork => "each fork (per line of descent)",
            Fault::RestoreCgroup => "placing each process in its cgroups",
            Fault::RestoreAtTraps => "when every task is on its trap",
            Fault::RestoreThread => "finishing each created thread",
            Fault::RestoreLeader => "finishing each leader",
            Fault::RestoreRelease => "right before the tree is released",
            Fault::RestoreNoSetTid | Fault::DumpDieServing | Fault::DumpDieThreadCall | Fault::Blob(_) => "",
        }
    }

    /// Whether the point belongs to dump (else restore).
    pub fn is_dump(self) -> bool {
        self.name().starts_with("dump-")
    }

    /// Every point: the engine's, then the restorer blob's.
    pub fn all() -> Vec<Fault> {
        ENGINE.iter().copied().chain(BLOB_STEPS.iter().map(|(s, _)| Fault::Blob(*s as u32))).collect()
    }

    fn index(self) -> usize {
        match self {
            Fault::Blob(step) => ENGINE.len() + BLOB_STEPS.iter().position(|(s, _)| *s as u32 == step).unwrap_or(0),
            f => ENGINE.iter().position(|&e| e == f).expect("every engine point is listed"),
        }
    }
}

/// `restore-blob-<suffix>` names, built once (they are `&'static str`).
static BLOB_NAMES: std::sync::LazyLock<Vec<(u32, &'static str)>> = std::sync::LazyLock::new(|| {
    BLOB_STEPS.iter().map(|(s, n)| (*s as u32, &*Box::leak(format!("restore-blob-{n}").into_boxed_str()))).collect()
});

const NPOINTS: usize = ENGINE.len() + BLOB_STEPS.len();

struct Armed {
    /// For each point: 0 unarmed, else the hit that fails.
    at: [u32; NPOINTS],
    hits: [AtomicU32; NPOINTS],
    any: bool,
    /// `CRTOOLS_FAULT_SIGNAL`: instead of failing, the chosen hit sends
    /// this signal to crtools itself, which must then end the way
    /// [`crate::interrupt`] says (0: fail as usual).
    signal: i32,
}

fn armed() -> &'static Armed {
    static ARMED: OnceLock<Armed> = OnceLock::new();
    ARMED.get_or_init(|| {
        let v = std::env::var("CRTOOLS_FAULT").unwrap_or_default();
        let signal = std::env::var("CRTOOLS_FAULT_SIGNAL").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut a = Armed { at: [0; NPOINTS], hits: std::array::from_fn(|_| AtomicU32::new(0)), any: false, signal };
        for (f, n) in parse(&v) {
            a.at[f.index()] = n;
            a.any = true;
        }
        a
    })
}

/// Reads `CRTOOLS_FAULT` (the pipelines call it before any fork).
pub fn init() {
    let _ = armed();
}

/// The points named in `spec` with the hit that fails (unknown names and
/// bad counts are ignored with a warning).
pub fn parse(spec: &str) -> Vec<(Fault, u32)> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|item| {
            let (n, count) = match item.split_once(':') {
                Some((n, c)) => match c.parse::<u32>() {
                    Ok(c) if c > 0 => (n, c),
                    _ => {
                        log::warn!("CRTOOLS_FAULT: bad hit count in {item:?}");
                        return None;
                    }
                },
                None => (item, 1),
            };
            let f = Fault::all().into_iter().find(|f| f.name() == n);
            if f.is_none() {
                log::warn!("CRTOOLS_FAULT: unknown failure point {n:?}");
            }
            f.map(|f| (f, count))
        })
        .collect()
}

fn count(f: Fault) -> bool {
    let a = armed();
    if !a.any {
        return false;
    }
    let i = f.index();
    a.at[i] != 0 && a.hits[i].fetch_add(1, Ordering::Relaxed) + 1 == a.at[i]
}

/// True when this hit of point `f` is the one that fails.
pub fn hit(f: Fault) -> bool {
    let on = count(f);
    if on {
        log::warn!("fault injection: {}", f.name());
    }
    on
}

/// [`hit`] for a forked child: no logging, no allocation.
pub fn hit_in_child(f: Fault) -> bool {
    count(f)
}

/// With `CRTOOLS_FAULT_SIGNAL`, the hit sends the signal to crtools itself
/// and does not fail by itself: true when it is to fail.
fn fails(f: Fault) -> bool {
    if !hit(f) {
        return false;
    }
    let sig = armed().signal;
    if sig == 0 {
        return true;
    }
    log::warn!("fault injection: {} sends {} to crtools", f.name(), crate::sys::signal::signal_name(sig));
    let _ = crate::sys::signal::tgkill(crate::sys::misc::getpid(), crate::sys::misc::gettid(), sig);
    false
}

/// Why a step must stop here: this hit of `f` fails ("injected fault
/// ..."), or a stop signal came ("interrupted by ..."); None to go on.
pub fn stop_reason(f: Fault) -> Option<String> {
    if fails(f) {
        return Some(format!("injected fault {}", f.name()));
    }
    crate::interrupt::received().map(|s| format!("interrupted by {}", crate::sys::signal::signal_name(s)))
}

/// [`hit`] as an error for the pipelines; also where a stop signal
/// received ends the dump or restore ([`crate::interrupt`]).
pub fn check(f: Fault) -> crate::error::Result<()> {
    if fails(f) {
        return Err(crate::error::Error::new(format!("injected fault {}", f.name())));
    }
    crate::interrupt::check()
}

/// [`hit`] as an image error (for the image directory).
pub fn check_image(f: Fault, what: &str) -> crate::image::error::Result<()> {
    let fail = |m: String| Err(crate::image::error::ImageError::new(what, crate::image::error::ErrorKind::Invalid(m)));
    if fails(f) {
        return fail(format!("injected fault {}", f.name()));
    }
    match crate::interrupt::received() {
        Some(sig) => fail(format!("interrupted by {}", crate::sys::signal::signal_name(sig))),
        None => Ok(()),
    }
}

/// The restorer step at which the blobs of this restore fail, or 0.
pub fn blob_step() -> u32 {
    let a = armed();
    BLOB_STEPS.iter().enumerate().find(|(k, _)| a.at[ENGINE.len() + k] != 0).map_or(0, |(_, (s, _))| *s as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(
            parse("dump-infected, restore-at-traps:3,bogus,dump-seize:0"),
            vec![(Fault::DumpInfected, 1), (Fault::RestoreAtTraps, 3)]
        );
        assert!(parse("").is_empty());
        for f in Fault::all() {
            assert_eq!(parse(f.name()), vec![(f, 1)], "{f:?}");
            assert_eq!(parse(&format!("{}:7", f.name())), vec![(f, 7)]);
        }
    }

    #[test]
    fn at_least_25_distinct_points() {
        let all = Fault::all();
        let names: std::collections::BTreeSet<&str> = all.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), all.len());
        assert!(all.len() >= 25);
        for (i, f) in all.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert!(!f.describe().is_empty());
        }
    }
}
