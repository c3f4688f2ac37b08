//! Readers of `/proc/<pid>/...`, see [proc(5)](https://man7.org/linux/man-pages/man5/proc.5.html).
//!
//! # Shape
//! Every submodule has a pure parser over the file's bytes or text (unit
//! tested on samples captured from a real kernel in `testdata/`) and a thin
//! reader taking a [`Pid`]. Readers use `std::fs` only: no raw syscalls here
//! (those live in [`crate::sys`]).
//!
//! # Invariants
//! - Parsers never panic on malformed, truncated or hostile input: they
//!   return a [`ProcError`] naming the file, the line and what was wrong.
//! - Parsers know no pid; readers attach it ([`ProcError::with_pid`]), so
//!   every error that reaches a caller names `/proc/<pid>/<file>`.
//! - Reads are snapshots: a `/proc` view of a running task may be stale the
//!   moment it is returned. Dump reads it while the tree is frozen.
//! - A task that vanished shows up as an I/O error with `ENOENT` or `ESRCH`;
//!   [`ProcError::is_gone`] tells that case apart.
//!
//! Formats are those of Linux 6.18 (x86_64); fields added by later kernels
//! are tolerated where the format allows it (unknown keys are kept, extra
//! trailing fields ignored).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::sys::Pid;

pub mod cgroup;
pub mod fdinfo;
pub mod locks;
pub mod map_files;
pub mod maps;
pub mod misc;
pub mod mountinfo;
pub mod net;
pub mod pagemap;
pub mod smaps;
pub mod stat;
pub mod status;
pub mod sysvipc;
pub mod task;
pub mod timers;

/// What went wrong reading or parsing a `/proc` file.
#[derive(Debug)]
pub enum ProcErrorKind {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The content did not have the expected format.
    Malformed(String),
}

/// An error reading or parsing a `/proc` file: which task, which file, which
/// line (1-based, when known) and what was wrong.
#[derive(Debug)]
pub struct ProcError {
    pid: Option<Pid>,
    file: String,
    global: bool,
    line: Option<usize>,
    kind: ProcErrorKind,
}

impl ProcError {
    /// A format error in `file` (relative to `/proc/<pid>/`), pid unknown yet.
    pub fn malformed(file: impl Into<String>, what: impl Into<String>) -> Self {
        ProcError {
            pid: None,
            file: file.into(),
            global: false,
            line: None,
            kind: ProcErrorKind::Malformed(what.into()),
        }
    }

    /// An I/O error on `/proc/<pid>/<file>`.
    pub fn io(pid: Pid, file: impl Into<String>, err: io::Error) -> Self {
        ProcError { pid: Some(pid), file: file.into(), global: false, line: None, kind: ProcErrorKind::Io(err) }
    }

    /// An I/O error on a file not below a pid directory (`/proc/<file>`).
    pub fn io_global(file: impl Into<String>, err: io::Error) -> Self {
        ProcError { pid: None, file: file.into(), global: true, line: None, kind: ProcErrorKind::Io(err) }
    }

    /// Marks the error as concerning `/proc/<file>` rather than a pid's file.
    pub fn into_global(mut self) -> Self {
        self.global = true;
        self.pid = None;
        self
    }

    /// Attaches the pid whose file this is.
    pub fn with_pid(mut self, pid: Pid) -> Self {
        if !self.global {
            self.pid = Some(pid);
        }
        self
    }

    /// Attaches the (1-based) line number, unless one is already set.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line.get_or_insert(line);
        self
    }

    /// The task whose file this is, when known.
    pub fn pid(&self) -> Option<Pid> {
        self.pid
    }

    /// The file, relative to `/proc/<pid>/` (or to `/proc/` for global files).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 1-based line number, when the error is tied to one line.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// What was wrong.
    pub fn kind(&self) -> &ProcErrorKind {
        &self.kind
    }

    /// True when the file is missing because the task (or thread, or fd)
    /// is gone: `ENOENT` or `ESRCH`.
    pub fn is_gone(&self) -> bool {
        match &self.kind {
            ProcErrorKind::Io(e) => {
                e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3 /* ESRCH */)
            }
            ProcErrorKind::Malformed(_) => false,
        }
    }
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.global, self.pid) {
            (true, _) => write!(f, "/proc/{}", self.file)?,
            (false, Some(pid)) => write!(f, "/proc/{}/{}", pid, self.file)?,
            (false, None) => write!(f, "/proc/<pid>/{}", self.file)?,
        }
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        match &self.kind {
            ProcErrorKind::Io(e) => write!(f, ": {e}"),
            ProcErrorKind::Malformed(what) => write!(f, ": {what}"),
        }
    }
}

impl std::error::Error for ProcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ProcErrorKind::Io(e) => Some(e),
            ProcErrorKind::Malformed(_) => None,
        }
    }
}

/// Result of a `/proc` reader or parser.
pub type Result<T> = core::result::Result<T, ProcError>;

/// A path as the kernel prints it for a link or mapping, with the
/// `" (deleted)"` suffix the kernel appends to unlinked files stripped and
/// recorded.
///
/// The kernel does not escape the suffix, so a file really named
/// `"x (deleted)"` is indistinguishable from an unlinked `"x"`; callers that
/// care check the inode (fstat through the fd or map_files link).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTarget {
    /// The path without the `" (deleted)"` suffix (raw bytes, not necessarily UTF-8).
    pub path: PathBuf,
    /// The kernel marked the file as unlinked.
    pub deleted: bool,
}

/// The suffix the kernel's `d_path()` appends to unlinked dentries.
pub const DELETED_SUFFIX: &[u8] = b" (deleted)";

impl PathTarget {
    /// Splits a raw kernel path into path and `deleted` flag.
    pub fn from_bytes(raw: &[u8]) -> Self {
        match raw.strip_suffix(DELETED_SUFFIX) {
            Some(p) => PathTarget { path: PathBuf::from(OsStr::from_bytes(p)), deleted: true },
            None => PathTarget { path: PathBuf::from(OsStr::from_bytes(raw)), deleted: false },
        }
    }

    /// Same as [`PathTarget::from_bytes`] for an owned link target.
    pub fn from_os(raw: OsString) -> Self {
        let bytes = raw.into_vec();
        if bytes.ends_with(DELETED_SUFFIX) {
            Self::from_bytes(&bytes)
        } else {
            PathTarget { path: PathBuf::from(OsString::from_vec(bytes)), deleted: false }
        }
    }
}

/// Reads a /proc/sys file whole, in one read(2): a sysctl of numbers
/// answers a read at any offset but 0 with nothing, so reading it in
/// pieces (as `read_to_string` does, probing with 32 bytes first) cuts
/// longer values short (kernel.sem: four numbers).
pub fn read_sysctl(path: &str) -> io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let n = f.read(&mut buf)?;
    if n == buf.len() {
        return Err(io::Error::other(format!("{path}: longer than {} bytes", buf.len())));
    }
    buf.truncate(n);
    String::from_utf8(buf).map_err(|_| io::Error::other(format!("{path}: not text")))
}

/// `kernel.pid_max` (2^22, the most it can be, if it cannot be read).
pub fn pid_max() -> u64 {
    read_sysctl("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1 << 22)
}

/// `/proc/<pid>/<file>` as a path.
pub fn pid_path(pid: Pid, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/{}", pid.raw(), file))
}

/// Reads `/proc/<pid>/<file>` whole.
pub(crate) fn read_bytes(pid: Pid, file: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    // /proc files report size 0: std::fs::read would start from a few bytes
    // and double (smaps of a real process is hundreds of KiB: dozens of
    // reads and reallocations, each an mmap and munmap of the allocator).
    let mut f = std::fs::File::open(pid_path(pid, file)).map_err(|e| ProcError::io(pid, file, e))?;
    let mut v = Vec::with_capacity(16 << 10);
    f.read_to_end(&mut v).map_err(|e| ProcError::io(pid, file, e))?;
    Ok(v)
}

/// Reads `/proc/<pid>/<file>` whole as text; invalid UTF-8 is replaced
/// (only used for files whose content the kernel formats as ASCII).
pub(crate) fn read_text(pid: Pid, file: &str) -> Result<String> {
    let bytes = read_bytes(pid, file)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Number parsing with error messages naming the field.
pub(crate) mod num {
    use super::{ProcError, Result};

    fn bad(file: &str, field: &str, value: &str, what: &str) -> ProcError {
        let shown: String = value.chars().take(40).collect();
        ProcError::malformed(file, format!("field {field}: bad {what} {shown:?}"))
    }

    pub(crate) fn dec_u64(file: &str, field: &str, v: &str) -> Result<u64> {
        v.parse::<u64>().map_err(|_| bad(file, field, v, "decimal"))
    }

    pub(crate) fn dec_i64(file: &str, field: &str, v: &str) -> Result<i64> {
        v.parse::<i64>().map_err(|_| bad(file, field, v, "decimal"))
    }

    pub(crate) fn dec_i32(file: &str, field: &str, v: &str) -> Result<i32> {
        v.parse::<i32>().map_err(|_| bad(file, field, v, "decimal"))
    }

    pub(crate) fn dec_u32(file: &str, field: &str, v: &str) -> Result<u32> {
        v.parse::<u32>().map_err(|_| bad(file, field, v, "decimal"))
    }

    /// Hex without `0x` (the kernel's `%x`/`%lx`), `0x` prefix tolerated.
    pub(crate) fn hex_u64(file: &str, field: &str, v: &str) -> Result<u64> {
        let d = v.strip_prefix("0x").unwrap_or(v);
        if d.is_empty() || d.starts_with('+') {
            return Err(bad(file, field, v, "hex"));
        }
        u64::from_str_radix(d, 16).map_err(|_| bad(file, field, v, "hex"))
    }

    pub(crate) fn hex_u32(file: &str, field: &str, v: &str) -> Result<u32> {
        let x = hex_u64(file, field, v)?;
        u32::try_from(x).map_err(|_| bad(file, field, v, "32-bit hex"))
    }

    /// Octal (the kernel's `%o`, usually with a leading 0).
    pub(crate) fn oct_u32(file: &str, field: &str, v: &str) -> Result<u32> {
        if v.is_empty() || v.starts_with('+') {
            return Err(bad(file, field, v, "octal"));
        }
        u32::from_str_radix(v, 8).map_err(|_| bad(file, field, v, "octal"))
    }
}

/// Parses a kernel id list such as `"0-3,5,8-9"` (`Cpus_allowed_list`,
/// `Mems_allowed_list`); an empty string is an empty list. At most
/// [`MAX_LIST_IDS`] ids are expanded, so a hostile range cannot exhaust memory.
pub fn parse_id_list(s: &str) -> core::result::Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(out);
    }
    for part in s.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let lo: u32 = lo.parse().map_err(|_| format!("bad list element {part:?}"))?;
        let hi: u32 = hi.parse().map_err(|_| format!("bad list element {part:?}"))?;
        if hi < lo {
            return Err(format!("reversed range {part:?}"));
        }
        if out.len() as u64 + u64::from(hi - lo) + 1 > MAX_LIST_IDS as u64 {
            return Err(format!("list longer than {MAX_LIST_IDS} ids"));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// Upper bound on the ids [`parse_id_list`] expands.
pub const MAX_LIST_IDS: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_pid_file_line() {
        let e = ProcError::malformed("stat", "no ')'").at_line(1).with_pid(Pid(42));
        assert_eq!(e.to_string(), "/proc/42/stat: line 1: no ')'");
        let e = ProcError::malformed("maps", "x");
        assert_eq!(e.to_string(), "/proc/<pid>/maps: x");
        let e = ProcError::malformed("sys/kernel/ns_last_pid", "empty").into_global().with_pid(Pid(1));
        assert_eq!(e.to_string(), "/proc/sys/kernel/ns_last_pid: empty");
        assert!(!e.is_gone());
        let e = ProcError::io(Pid(7), "stat", io::Error::from(io::ErrorKind::NotFound));
        assert!(e.is_gone());
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn path_target_deleted_suffix() {
        let t = PathTarget::from_bytes(b"/tmp/a b (deleted)");
        assert_eq!(t.path, PathBuf::from("/tmp/a b"));
        assert!(t.deleted);
        let t = PathTarget::from_os(OsString::from("/x (deleted) y"));
        assert!(!t.deleted);
        assert_eq!(t.path, PathBuf::from("/x (deleted) y"));
        let t = PathTarget::from_os(OsString::from("/memfd:m (deleted)"));
        assert!(t.deleted);
        assert_eq!(t.path, PathBuf::from("/memfd:m"));
    }

    #[test]
    fn id_lists() {
        assert_eq!(parse_id_list("0-3,5,8-9").unwrap(), vec![0, 1, 2, 3, 5, 8, 9]);
        assert_eq!(parse_id_list("").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_id_list("7\n").unwrap(), vec![7]);
        assert!(parse_id_list("3-1").is_err());
        assert!(parse_id_list("a").is_err());
        assert!(parse_id_list("1,").is_err());
        assert!(parse_id_list("0-4294967295").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(num::hex_u64("f", "x", "ff").unwrap(), 255);
        assert_eq!(num::hex_u64("f", "x", "0x10").unwrap(), 16);
        assert!(num::hex_u64("f", "x", "").is_err());
        assert!(num::hex_u64("f", "x", "+1").is_err());
        assert!(num::hex_u32("f", "x", "100000000").is_err());
        assert_eq!(num::oct_u32("f", "x", "0100002").unwrap(), 0o100002);
        assert!(num::oct_u32("f", "x", "9").is_err());
    }

    /// Every parser over random mutations (byte flips, cuts, insertions of
    /// format characters) of every sample: errors are fine, panics are not.
    #[test]
    fn parsers_never_panic_on_mutations() {
        let samples: &[&[u8]] = &[
            include_bytes!("testdata/victim.stat"),
            include_bytes!("testdata/victim.status"),
            include_bytes!("testdata/hard.maps"),
            include_bytes!("testdata/hard.smaps"),
            include_bytes!("testdata/victim.smaps_rollup"),
            include_bytes!("testdata/victim.timers"),
            include_bytes!("testdata/fdinfo.epoll"),
            include_bytes!("testdata/fdinfo.eventfd"),
            include_bytes!("testdata/fdinfo.fanotify"),
            include_bytes!("testdata/fdinfo.inotify"),
            include_bytes!("testdata/fdinfo.timerfd"),
            include_bytes!("testdata/fdinfo.signalfd"),
        ];
        const SPICE: &[u8] = b" ():-/\n\t0fF9[]x+,.\xff";
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for s in samples {
            for _ in 0..400 {
                let mut m = s.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    if m.is_empty() {
                        break;
                    }
                    let at = (next() % m.len() as u64) as usize;
                    let c = SPICE[(next() % SPICE.len() as u64) as usize];
                    match next() % 4 {
                        0 => m[at] = c,
                        1 => m.insert(at, c),
                        2 => {
                            m.remove(at);
                        }
                        _ => m.truncate(at),
                    }
                }
                let text = String::from_utf8_lossy(&m);
                let _ = stat::parse(&m);
                let _ = status::parse(&text);
                let _ = maps::parse(&m);
                let _ = smaps::parse(&m);
                let _ = smaps::parse_rollup(&m);
                let _ = timers::parse(&text);
                let _ = fdinfo::parse(&text);
                let _ = fdinfo::parse_fd_target(&m);
                let _ = task::parse_children(&text);
                let _ = map_files::parse_name(&text);
                let _ = misc::parse_comm(&m);
                let _ = misc::parse_personality(&text);
                let _ = parse_id_list(&text);
            }
        }
        let mut out = [0u64; 8];
        let _ = pagemap::parse_entries(&[1, 2, 3, 4, 5, 6, 7, 8, 9], &mut out);
    }
}
