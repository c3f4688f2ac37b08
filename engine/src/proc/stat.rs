//! `/proc/<pid>/stat` (and `/proc/<pid>/task/<tid>/stat`), see proc_pid_stat(5).
//!
//! Format (`do_task_stat()` in fs/proc/array.c): `pid (comm) state` then 49
//! space-separated numbers, 52 fields in all on Linux 6.18.
//!
//! # Invariants
//! - `comm` may contain spaces, parentheses and any byte but NUL: it runs
//!   from the first `'('` to the LAST `')'` of the line (the kernel does not
//!   escape it), and the numeric fields are parsed after that `')'`.
//! - All 52 fields must be present; fields a later kernel may append are
//!   ignored. Fields the kernel hides from an unprivileged reader read as 0.
//!
//! Fields read (proc_pid_stat(5) numbering): (1) pid, (2) comm, (3) state,
//! (4) ppid, (5) pgrp, (6) session, (7) tty_nr, (8) tpgid, (9) flags,
//! (10-13) minflt cminflt majflt cmajflt, (14-17) utime stime cutime cstime,
//! (18) priority, (19) nice, (20) num_threads, (21) itrealvalue,
//! (22) starttime, (23) vsize, (24) rss, (25) rsslim, (26) startcode,
//! (27) endcode, (28) startstack, (29) kstkesp, (30) kstkeip, (31-34) signal
//! blocked sigignore sigcatch, (35) wchan, (36-37) nswap cnswap,
//! (38) exit_signal, (39) processor, (40) rt_priority, (41) policy,
//! (42) delayacct_blkio_ticks, (43) guest_time, (44) cguest_time,
//! (45) start_data, (46) end_data, (47) start_brk, (48) arg_start,
//! (49) arg_end, (50) env_start, (51) env_end, (52) exit_code.
//! The mm fields 26-28 and 45-51 are what restore hands to `PR_SET_MM`.

use super::{num, ProcError, Result};
use crate::sys::Pid;

const FILE: &str = "stat";

/// The scheduler state letter of field 3 (`task_state_array` in fs/proc/array.c).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// `R` running or runnable.
    Running,
    /// `S` interruptible sleep.
    Sleeping,
    /// `D` uninterruptible sleep.
    DiskSleep,
    /// `T` stopped by a job-control signal.
    Stopped,
    /// `t` stopped by a tracer (ptrace stop).
    TracingStop,
    /// `X` dead (rarely visible).
    Dead,
    /// `Z` zombie.
    Zombie,
    /// `P` parked (kernel threads).
    Parked,
    /// `I` idle kernel thread.
    Idle,
    /// Any other letter (older or newer kernels: `x`, `K`, `W`).
    Other(char),
}

impl TaskState {
    /// Decodes a state letter.
    pub fn from_char(c: char) -> Self {
        match c {
            'R' => TaskState::Running,
            'S' => TaskState::Sleeping,
            'D' => TaskState::DiskSleep,
            'T' => TaskState::Stopped,
            't' => TaskState::TracingStop,
            'X' => TaskState::Dead,
            'Z' => TaskState::Zombie,
            'P' => TaskState::Parked,
            'I' => TaskState::Idle,
            other => TaskState::Other(other),
        }
    }

    /// The letter the kernel prints.
    pub fn as_char(self) -> char {
        match self {
            TaskState::Running => 'R',
            TaskState::Sleeping => 'S',
            TaskState::DiskSleep => 'D',
            TaskState::Stopped => 'T',
            TaskState::TracingStop => 't',
            TaskState::Dead => 'X',
            TaskState::Zombie => 'Z',
            TaskState::Parked => 'P',
            TaskState::Idle => 'I',
            TaskState::Other(c) => c,
        }
    }
}

/// The memory-layout fields of `stat` that restore passes to
/// `prctl(PR_SET_MM_MAP)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmLayout {
    /// (26) start of the text segment.
    pub start_code: u64,
    /// (27) end of the text segment.
    pub end_code: u64,
    /// (45) start of initialized and uninitialized (bss) data.
    pub start_data: u64,
    /// (46) end of data.
    pub end_data: u64,
    /// (47) start of the heap (brk base).
    pub start_brk: u64,
    /// (28) start (bottom) of the main stack.
    pub start_stack: u64,
    /// (48) start of the argv strings.
    pub arg_start: u64,
    /// (49) end of the argv strings.
    pub arg_end: u64,
    /// (50) start of the environment strings.
    pub env_start: u64,
    /// (51) end of the environment strings.
    pub env_end: u64,
}

/// `flags` bit of an io_uring kernel thread (PF_IO_WORKER): an SQPOLL
/// ring's iou-sqp or an io-wq iou-wrk worker, listed among the threads of
/// the process that made it.
pub const PF_IO_WORKER: u32 = 0x10;

/// The name of thread `tid` of `pid` if it is an io_uring kernel thread
/// (PF_IO_WORKER), which never stops for a tracer.
pub fn io_worker(pid: Pid, tid: Pid) -> Option<String> {
    let st = read_thread(pid, tid).ok()?;
    (st.flags & PF_IO_WORKER != 0).then(|| String::from_utf8_lossy(&st.comm).into_owned())
}

/// One parsed `stat` line. Field numbers refer to proc_pid_stat(5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// (1) pid (thread id for a task/ file).
    pub pid: i32,
    /// (2) comm, raw bytes between the first `(` and the last `)`.
    pub comm: Vec<u8>,
    /// (3) state letter.
    pub state: TaskState,
    /// (4) parent pid.
    pub ppid: i32,
    /// (5) process group id.
    pub pgrp: i32,
    /// (6) session id.
    pub session: i32,
    /// (7) controlling terminal (encoded device number).
    pub tty_nr: i32,
    /// (8) foreground process group of the terminal, -1 if none.
    pub tpgid: i32,
    /// (9) kernel flags word (`PF_*`).
    pub flags: u32,
    /// (10) minor faults.
    pub minflt: u64,
    /// (11) minor faults of waited-for children.
    pub cminflt: u64,
    /// (12) major faults.
    pub majflt: u64,
    /// (13) major faults of waited-for children.
    pub cmajflt: u64,
    /// (14) user time, clock ticks.
    pub utime: u64,
    /// (15) system time, clock ticks.
    pub stime: u64,
    /// (16) children's user time.
    pub cutime: i64,
    /// (17) children's system time.
    pub cstime: i64,
    /// (18) priority as the kernel prints it.
    pub priority: i64,
    /// (19) nice value.
    pub nice: i64,
    /// (20) number of threads.
    pub num_threads: i64,
    /// (21) obsolete, always 0.
    pub itrealvalue: i64,
    /// (22) start time after boot, clock ticks.
    pub starttime: u64,
    /// (23) virtual memory size in bytes.
    pub vsize: u64,
    /// (24) resident set size in pages.
    pub rss: i64,
    /// (25) soft RSS limit in bytes.
    pub rsslim: u64,
    /// (29) saved stack pointer (0 unless the task is a core-dumping or
    /// traced-and-stopped one and the reader is privileged).
    pub kstkesp: u64,
    /// (30) saved instruction pointer (same caveat).
    pub kstkeip: u64,
    /// (31) pending signals, legacy decimal bitmap (use status for all 64).
    pub signal: u64,
    /// (32) blocked signals, legacy.
    pub blocked: u64,
    /// (33) ignored signals, legacy.
    pub sigignore: u64,
    /// (34) caught signals, legacy.
    pub sigcatch: u64,
    /// (35) 0 or 1 (the kernel no longer prints the address).
    pub wchan: u64,
    /// (36) unused, 0.
    pub nswap: u64,
    /// (37) unused, 0.
    pub cnswap: u64,
    /// (38) signal sent to the parent at exit.
    pub exit_signal: i32,
    /// (39) CPU last run on.
    pub processor: i32,
    /// (40) real-time priority.
    pub rt_priority: u32,
    /// (41) scheduling policy (`SCHED_*`).
    pub policy: u32,
    /// (42) aggregated block I/O delays, clock ticks.
    pub delayacct_blkio_ticks: u64,
    /// (43) guest time, clock ticks.
    pub guest_time: u64,
    /// (44) children's guest time.
    pub cguest_time: i64,
    /// (26-28, 45-51) the mm layout for `PR_SET_MM`.
    pub mm: MmLayout,
    /// (52) exit status as `waitpid` would report it.
    pub exit_code: i32,
}

impl Stat {
    /// `comm` as text (invalid UTF-8 replaced).
    pub fn comm_lossy(&self) -> String {
        String::from_utf8_lossy(&self.comm).into_owned()
    }
}

/// Parses the content of a `stat` file.
pub fn parse(bytes: &[u8]) -> Result<Stat> {
    let open = bytes.iter().position(|&b| b == b'(').ok_or_else(|| ProcError::malformed(FILE, "no '(' before comm"))?;
    let close =
        bytes.iter().rposition(|&b| b == b')').ok_or_else(|| ProcError::malformed(FILE, "no ')' after comm"))?;
    if close < open {
        return Err(ProcError::malformed(FILE, "')' before '('"));
    }
    let head = std::str::from_utf8(&bytes[..open]).map_err(|_| ProcError::malformed(FILE, "pid is not ASCII"))?;
    let pid = num::dec_i32(FILE, "pid", head.trim_end())?;
    let comm = bytes[open + 1..close].to_vec();
    let tail = std::str::from_utf8(&bytes[close + 1..])
        .map_err(|_| ProcError::malformed(FILE, "fields after comm are not ASCII"))?;
    let mut f = Fields { it: tail.split_ascii_whitespace(), n: 2 };

    let state_s = f.next("state")?;
    let mut chars = state_s.chars();
    let state = match (chars.next(), chars.next()) {
        (Some(c), None) => TaskState::from_char(c),
        _ => return Err(ProcError::malformed(FILE, format!("field state: bad {state_s:?}"))),
    };
    let ppid = f.i32("ppid")?;
    let pgrp = f.i32("pgrp")?;
    let session = f.i32("session")?;
    let tty_nr = f.i32("tty_nr")?;
    let tpgid = f.i32("tpgid")?;
    let flags = f.u32("flags")?;
    let minflt = f.u64("minflt")?;
    let cminflt = f.u64("cminflt")?;
    let majflt = f.u64("majflt")?;
    let cmajflt = f.u64("cmajflt")?;
    let utime = f.u64("utime")?;
    let stime = f.u64("stime")?;
    let cutime = f.i64("cutime")?;
    let cstime = f.i64("cstime")?;
    let priority = f.i64("priority")?;
    let nice = f.i64("nice")?;
    let num_threads = f.i64("num_threads")?;
    let itrealvalue = f.i64("itrealvalue")?;
    let starttime = f.u64("starttime")?;
    let vsize = f.u64("vsize")?;
    let rss = f.i64("rss")?;
    let rsslim = f.u64("rsslim")?;
    let start_code = f.u64("startcode")?;
    let end_code = f.u64("endcode")?;
    let start_stack = f.u64("startstack")?;
    let kstkesp = f.u64("kstkesp")?;
    let kstkeip = f.u64("kstkeip")?;
    let signal = f.u64("signal")?;
    let blocked = f.u64("blocked")?;
    let sigignore = f.u64("sigignore")?;
    let sigcatch = f.u64("sigcatch")?;
    let wchan = f.u64("wchan")?;
    let nswap = f.u64("nswap")?;
    let cnswap = f.u64("cnswap")?;
    let exit_signal = f.i32("exit_signal")?;
    let processor = f.i32("processor")?;
    let rt_priority = f.u32("rt_priority")?;
    let policy = f.u32("policy")?;
    let delayacct_blkio_ticks = f.u64("delayacct_blkio_ticks")?;
    let guest_time = f.u64("guest_time")?;
    let cguest_time = f.i64("cguest_time")?;
    let start_data = f.u64("start_data")?;
    let end_data = f.u64("end_data")?;
    let start_brk = f.u64("start_brk")?;
    let arg_start = f.u64("arg_start")?;
    let arg_end = f.u64("arg_end")?;
    let env_start = f.u64("env_start")?;
    let env_end = f.u64("env_end")?;
    let exit_code = f.i32("exit_code")?;

    Ok(Stat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
        session,
        tty_nr,
        tpgid,
        flags,
        minflt,
        cminflt,
        majflt,
        cmajflt,
        utime,
        stime,
        cutime,
        cstime,
        priority,
        nice,
        num_threads,
        itrealvalue,
        starttime,
        vsize,
        rss,
        rsslim,
        kstkesp,
        kstkeip,
        signal,
        blocked,
        sigignore,
        sigcatch,
        wchan,
        nswap,
        cnswap,
        exit_signal,
        processor,
        rt_priority,
        policy,
        delayacct_blkio_ticks,
        guest_time,
        cguest_time,
        mm: MmLayout {
            start_code,
            end_code,
            start_data,
            end_data,
            start_brk,
            start_stack,
            arg_start,
            arg_end,
            env_start,
            env_end,
        },
        exit_code,
    })
}

struct Fields<'a> {
    it: std::str::SplitAsciiWhitespace<'a>,
    n: usize,
}

impl<'a> Fields<'a> {
    fn next(&mut self, name: &str) -> Result<&'a str> {
        self.n += 1;
        let n = self.n;
        self.it.next().ok_or_else(|| ProcError::malformed(FILE, format!("truncated: field ({n}) {name} missing")))
    }
    fn u64(&mut self, name: &str) -> Result<u64> {
        let v = self.next(name)?;
        num::dec_u64(FILE, name, v)
    }
    fn i64(&mut self, name: &str) -> Result<i64> {
        let v = self.next(name)?;
        num::dec_i64(FILE, name, v)
    }
    fn i32(&mut self, name: &str) -> Result<i32> {
        let v = self.next(name)?;
        num::dec_i32(FILE, name, v)
    }
    fn u32(&mut self, name: &str) -> Result<u32> {
        let v = self.next(name)?;
        num::dec_u32(FILE, name, v)
    }
}

/// Reads `/proc/<pid>/stat`.
pub fn read(pid: Pid) -> Result<Stat> {
    let bytes = super::read_bytes(pid, FILE)?;
    parse(&bytes).map_err(|e| e.with_pid(pid))
}

/// Reads `/proc/<pid>/task/<tid>/stat` (one thread's view).
pub fn read_thread(pid: Pid, tid: Pid) -> Result<Stat> {
    let file = format!("task/{}/stat", tid.raw());
    let bytes = super::read_bytes(pid, &file)?;
    parse(&bytes).map_err(|e| {
        let mut e = e.with_pid(pid);
        e.file = file;
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VICTIM: &[u8] = include_bytes!("testdata/victim.stat");
    const SLEEP: &[u8] = include_bytes!("testdata/sleep.stat");
    const THREAD: &[u8] = include_bytes!("testdata/victim-thread.stat");

    #[test]
    fn captured_victim() {
        // comm was set with PR_SET_NAME to "a) b (c".
        let s = parse(VICTIM).unwrap();
        assert_eq!(s.comm, b"a) b (c");
        assert_eq!(s.state, TaskState::Sleeping);
        assert_eq!(s.ppid, 1);
        assert_eq!(s.num_threads, 2);
        assert_eq!(s.tpgid, -1);
        assert_eq!(s.rsslim, u64::MAX);
        assert_eq!(s.exit_signal, 17);
        assert_eq!(s.mm.start_code, 93842145734656);
        assert_eq!(s.mm.end_code, 93842145737009);
        assert_eq!(s.mm.start_stack, 140726325351984);
        assert_eq!(s.mm.start_data, 93842145746384);
        assert_eq!(s.mm.end_data, 93842145747216);
        assert_eq!(s.mm.start_brk, 93842320592896);
        assert_eq!(s.mm.arg_start, 140726325357294);
        assert_eq!(s.mm.arg_end, 140726325357303);
        assert_eq!(s.mm.env_start, 140726325357303);
        assert_eq!(s.mm.env_end, 140726325358575);
        assert_eq!(s.exit_code, 0);
        // SIGHUP, SIGINT, SIGQUIT (shell) and SIGUSR2 ignored.
        assert_eq!(s.sigignore, 2055);
        assert!(s.mm.start_code < s.mm.end_code && s.mm.arg_start <= s.mm.arg_end);
    }

    #[test]
    fn captured_sleep_and_thread() {
        let s = parse(SLEEP).unwrap();
        assert_eq!(s.comm, b"sleep");
        assert_eq!(s.num_threads, 1);
        let t = parse(THREAD).unwrap();
        assert_ne!(t.pid, parse(VICTIM).unwrap().pid);
        assert_eq!(t.num_threads, 2);
        assert_eq!(t.exit_signal, -1);
    }

    #[test]
    fn hard_comm() {
        let line = "77 ((x) ) ))) t 1 2 3 0 -1 4194304 1 2 3 4 5 6 -7 8 20 0 1 0 99 4096 -1 18446744073709551615 1 2 3 4 5 0 0 0 0 0 0 0 17 1 0 0 0 0 0 10 11 12 13 14 15 16 9\n";
        let s = parse(line.as_bytes()).unwrap();
        assert_eq!(s.pid, 77);
        assert_eq!(s.comm, b"(x) ) ))");
        assert_eq!(s.state, TaskState::TracingStop);
        assert_eq!(s.cutime, -7);
        assert_eq!(s.rss, -1);
        assert_eq!(s.exit_code, 9);
        assert_eq!(s.mm.env_end, 16);
        // Empty comm and a comm made of spaces are legal.
        let empty = line.replacen("((x) ) )))", "()", 1);
        assert_eq!(parse(empty.as_bytes()).unwrap().comm, b"");
        // Extra trailing fields from a future kernel are ignored.
        let more = line.replace(" 9\n", " 9 123 456\n");
        assert_eq!(parse(more.as_bytes()).unwrap().exit_code, 9);
        // Non-UTF-8 comm.
        let mut raw = b"5 (\xff\xfe) ".to_vec();
        raw.extend_from_slice(line.split_once(")))").unwrap().1.trim_start().as_bytes());
        assert_eq!(parse(&raw).unwrap().comm, b"\xff\xfe");
        assert_eq!(TaskState::from_char('t').as_char(), 't');
        assert_eq!(TaskState::from_char('K'), TaskState::Other('K'));
    }

    #[test]
    fn malformed_is_error() {
        let good = std::str::from_utf8(VICTIM).unwrap();
        let cases: Vec<String> = vec![
            String::new(),
            "1234".into(),
            "1234 (sleep".into(),
            "x (a) S 1".into(),
            "1 )a( S".into(),
            good[..good.len() / 2].into(),
            good.trim_end().rsplit_once(' ').unwrap().0.into(),
            good.replacen(" S ", " SS ", 1),
            good.replacen(" S 1 ", " S one ", 1),
            good.replacen(" 17 ", " 99999999999 ", 1),
        ];
        for c in &cases {
            let e = parse(c.as_bytes()).expect_err(c);
            assert!(e.to_string().starts_with("/proc/<pid>/stat: "), "{e}");
        }
        for cut in 0..VICTIM.len() - 3 {
            assert!(parse(&VICTIM[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        let s = read(me).unwrap();
        assert_eq!(s.pid, me.raw());
        assert!(s.num_threads >= 1);
        assert!(s.mm.start_code != 0 && s.mm.start_stack != 0);
        let t = read_thread(me, me).unwrap();
        assert_eq!(t.pid, me.raw());
        let e = read_thread(me, Pid(i32::MAX)).unwrap_err();
        assert!(e.is_gone());
        assert!(e.to_string().contains("/task/2147483647/stat"), "{e}");
    }
}
