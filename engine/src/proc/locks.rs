//! File locks and leases: `/proc/locks` and the `lock:` lines of
//! `/proc/<pid>/fdinfo/<fd>`, see proc_locks(5) and fcntl(2), flock(2).
//!
//! Both come from `lock_get_status()` in fs/locks.c, one lock per line:
//!
//! ```text
//! 1: POSIX  ADVISORY  READ 10755 fe:00:10010754 5 14
//! 2: OFDLCK ADVISORY  READ -1 fe:00:10010754 100 EOF
//! 3: FLOCK  ADVISORY  WRITE 10755 fe:00:10010754 0 EOF
//! 4: LEASE  ACTIVE    READ 10893 fe:00:10010962 0 EOF
//! 4: -> FLOCK  ADVISORY  WRITE 10950 fe:00:10011026 0 EOF
//! ```
//!
//! id, `->` for a waiter blocked on the lock above it (`/proc/locks` only),
//! kind (`POSIX`, `OFDLCK`, `ACCESS`, `FLOCK`, `LEASE`, `DELEG`, `UNKNOWN`),
//! one mode word (`ADVISORY`, `*NOINODE*`, `ACTIVE`, `BREAKING`, `BREAKER`,
//! `MANDATORY` on old kernels, `UNKNOWN`), the type (`READ`, `WRITE`,
//! `UNLCK`), the owner's pid (-1 for OFD locks: they belong to an open file
//! description), `major:minor:inode` with the device in hex (or
//! `<none>:0`), then start and end (`EOF`) of the byte range.
//!
//! Which locks fdinfo shows (`show_fd_locks()`): those whose file is this
//! descriptor's open file description and whose owner is either that file
//! (flock, OFD, leases) or the reading task's descriptor table (POSIX locks,
//! listed on the descriptor they were taken through).
//!
//! # Invariants
//! - Parsers never panic; a malformed line is a [`ProcError`] naming it.
//! - Waiters (`->`) are parsed and marked: they hold nothing.

use super::{ProcError, Result};
use crate::sys::Pid;

const FILE: &str = "locks";

/// Who a lock belongs to, as the kernel names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// fcntl F_SETLK/F_SETLKW: owned by the process's descriptor table.
    Posix,
    /// fcntl F_OFD_SETLK: owned by the open file description.
    Ofd,
    /// flock(2): owned by the open file description.
    Flock,
    /// fcntl F_SETLEASE.
    Lease,
    /// An NFS delegation (a lease set by the kernel).
    Deleg,
    /// A transient FL_ACCESS lock (mandatory-locking checks on old kernels).
    Access,
    /// Anything else.
    Unknown,
}

impl LockKind {
    /// The name users know it by.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Posix => "POSIX (fcntl) lock",
            LockKind::Ofd => "OFD lock",
            LockKind::Flock => "flock lock",
            LockKind::Lease => "lease",
            LockKind::Deleg => "delegation",
            LockKind::Access => "access lock",
            LockKind::Unknown => "lock of unknown kind",
        }
    }
}

/// Read, write or neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockType {
    /// F_RDLCK / LOCK_SH.
    Read,
    /// F_WRLCK / LOCK_EX.
    Write,
    /// F_UNLCK (a lease being given up).
    Unlock,
}

/// One line of `/proc/locks` or one `lock:` value of fdinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLock {
    /// The line's ordinal (not stable across reads).
    pub id: u64,
    /// A waiter blocked on a lock, not a holder.
    pub waiter: bool,
    /// Kind.
    pub kind: LockKind,
    /// The mode word (ADVISORY, ACTIVE, BREAKING, ...).
    pub mode: String,
    /// Type.
    pub ty: LockType,
    /// Owner pid as the kernel recorded it (-1 for OFD locks).
    pub pid: i32,
    /// Device of the inode (major, minor), `None` without an inode.
    pub dev: Option<(u32, u32)>,
    /// Inode number, 0 without an inode.
    pub ino: u64,
    /// First byte of the range.
    pub start: i64,
    /// Last byte of the range, `None` for EOF.
    pub end: Option<i64>,
}

impl FileLock {
    /// "WRITE flock lock" style description, with the range of byte-range locks.
    pub fn describe(&self) -> String {
        let ty = match self.ty {
            LockType::Read => "read",
            LockType::Write => "write",
            LockType::Unlock => "unlock",
        };
        match self.kind {
            LockKind::Posix | LockKind::Ofd => {
                let end = self.end.map_or_else(|| "EOF".to_string(), |e| e.to_string());
                format!("{ty} {} on bytes {}..{end}", self.kind.name(), self.start)
            }
            _ => format!("{ty} {}", self.kind.name()),
        }
    }
}

/// Parses one lock line (without a `lock:` prefix).
pub fn parse_line(line: &str) -> Result<FileLock> {
    let bad = |what: &str| ProcError::malformed(FILE, format!("{what} in lock line {line:?}"));
    let mut w = line.split_whitespace().peekable();
    let id =
        w.next().and_then(|s| s.strip_suffix(':')).and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| bad("bad id"))?;
    let waiter = w.peek() == Some(&"->");
    if waiter {
        w.next();
    }
    let kind = match w.next().ok_or_else(|| bad("no kind"))? {
        "POSIX" => LockKind::Posix,
        "OFDLCK" => LockKind::Ofd,
        "FLOCK" => LockKind::Flock,
        "LEASE" => LockKind::Lease,
        "DELEG" => LockKind::Deleg,
        "ACCESS" => LockKind::Access,
        _ => LockKind::Unknown,
    };
    let mode = w.next().ok_or_else(|| bad("no mode"))?.to_string();
    let ty = match w.next().ok_or_else(|| bad("no type"))? {
        "READ" => LockType::Read,
        "WRITE" => LockType::Write,
        "UNLCK" => LockType::Unlock,
        _ => return Err(bad("bad type")),
    };
    let pid = w.next().and_then(|s| s.parse::<i32>().ok()).ok_or_else(|| bad("bad pid"))?;
    let node = w.next().ok_or_else(|| bad("no inode"))?;
    let (dev, ino) = if node.starts_with("<none>") {
        (None, 0)
    } else {
        let mut p = node.split(':');
        let maj = p.next().and_then(|s| u32::from_str_radix(s, 16).ok());
        let min = p.next().and_then(|s| u32::from_str_radix(s, 16).ok());
        let ino = p.next().and_then(|s| s.parse::<u64>().ok());
        match (maj, min, ino, p.next()) {
            (Some(a), Some(b), Some(i), None) => (Some((a, b)), i),
            _ => return Err(bad("bad device:inode")),
        }
    };
    let start = w.next().and_then(|s| s.parse::<i64>().ok()).ok_or_else(|| bad("bad start"))?;
    let end = match w.next().ok_or_else(|| bad("no end"))? {
        "EOF" => None,
        s => Some(s.parse::<i64>().map_err(|_| bad("bad end"))?),
    };
    Ok(FileLock { id, waiter, kind, mode, ty, pid, dev, ino, start, end })
}

/// Parses `/proc/locks`.
pub fn parse(text: &str) -> Result<Vec<FileLock>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l).map_err(|e| e.at_line(i + 1).into_global()))
        .collect()
}

/// Reads `/proc/locks` (every lock of the system, pids as this pid namespace sees them).
pub fn read_all() -> Result<Vec<FileLock>> {
    let t = std::fs::read_to_string("/proc/locks").map_err(|e| ProcError::io_global(FILE, e))?;
    parse(&t)
}

/// The locks fdinfo lists for descriptor `fd` of `pid` (its `lock:` lines).
pub fn fd_locks(pid: Pid, fd: i32) -> Result<Vec<FileLock>> {
    let info = super::fdinfo::read(pid, fd)?;
    info.extra.iter().filter(|(k, _)| k == "lock").map(|(_, v)| parse_line(v).map_err(|e| e.with_pid(pid))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_sample() {
        let all = parse(include_str!("testdata/locks")).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(
            all[0],
            FileLock {
                id: 1,
                waiter: false,
                kind: LockKind::Ofd,
                mode: "ADVISORY".into(),
                ty: LockType::Read,
                pid: -1,
                dev: Some((0xfe, 0)),
                ino: 10010754,
                start: 100,
                end: None,
            }
        );
        assert_eq!((all[1].kind, all[1].pid, all[1].start, all[1].end), (LockKind::Posix, 10755, 5, Some(14)));
        assert_eq!((all[2].kind, all[2].ty), (LockKind::Flock, LockType::Write));
        assert_eq!((all[3].kind, all[3].mode.as_str()), (LockKind::Lease, "ACTIVE"));
        assert!(!all[4].waiter && all[5].waiter);
        assert_eq!((all[5].kind, all[5].pid, all[5].ino), (LockKind::Flock, 10950, 10011026));
        assert_eq!(all[1].describe(), "read POSIX (fcntl) lock on bytes 5..14");
        assert_eq!(all[3].describe(), "read lease");
    }

    #[test]
    fn fdinfo_lock_lines() {
        let info = super::super::fdinfo::parse(include_str!("testdata/fdinfo.flock")).unwrap();
        let locks: Vec<FileLock> =
            info.extra.iter().filter(|(k, _)| k == "lock").map(|(_, v)| parse_line(v).unwrap()).collect();
        assert_eq!(locks.len(), 1);
        assert_eq!((locks[0].kind, locks[0].ty, locks[0].pid), (LockKind::Flock, LockType::Write, 10755));
        let l = parse_line("1: LEASE  BREAKING  UNLCK 7 <none>:0 0 EOF").unwrap();
        assert_eq!((l.kind, l.ty, l.dev, l.ino), (LockKind::Lease, LockType::Unlock, None, 0));
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            "",
            "x: POSIX ADVISORY READ 1 fe:00:1 0 EOF",
            "1: POSIX ADVISORY BOTH 1 fe:00:1 0 EOF",
            "1: POSIX ADVISORY READ x fe:00:1 0 EOF",
            "1: POSIX ADVISORY READ 1 fe:00 0 EOF",
            "1: POSIX ADVISORY READ 1 zz:00:1 0 EOF",
            "1: POSIX ADVISORY READ 1 fe:00:1 0",
            "1: POSIX ADVISORY READ 1 fe:00:1 0 x",
            "1: ->",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse("1: POSIX ADVISORY READ 1 fe:00:1 0 EOF\n2: junk\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
    }
}
