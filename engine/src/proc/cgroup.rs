//! `/proc/<pid>/cgroup` and `/proc/<pid>/task/<tid>/cgroup`, see cgroups(7).
//!
//! One line per hierarchy: `hierarchy-id:controller-list:path`. cgroup v2
//! is the line `0::/path`; each mounted v1 hierarchy has its own id and its
//! comma-separated controllers (`4:memory:/a`, `2:cpu,cpuacct:/`), named
//! hierarchies show `name=...` (`1:name=systemd:/user.slice`). Paths are
//! relative to the reader's cgroup namespace root and may contain `:`.
//!
//! # Invariants
//! - Paths are kept as raw bytes; everything after the second `:` is the path.
//! - Hierarchy ids are not stable across boots: compare hierarchies by
//!   their controller list.

use std::path::PathBuf;

use super::{ProcError, Result};
use crate::sys::Pid;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

const FILE: &str = "cgroup";

/// One line of a cgroup file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLine {
    /// Hierarchy id (0 for cgroup v2).
    pub hierarchy: u32,
    /// Controller list as printed ("" for v2, "cpu,cpuacct", "name=systemd").
    pub controllers: String,
    /// Path from the cgroup namespace root, starting with `/`.
    pub path: PathBuf,
}

impl CgroupLine {
    /// True for the cgroup v2 line.
    pub fn is_v2(&self) -> bool {
        self.hierarchy == 0 && self.controllers.is_empty()
    }
}

/// Parses a cgroup file.
pub fn parse(bytes: &[u8]) -> Result<Vec<CgroupLine>> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| {
            ProcError::malformed(FILE, format!("{what} in {:?}", String::from_utf8_lossy(line))).at_line(i + 1)
        };
        let mut parts = line.splitn(3, |&b| b == b':');
        let id = parts.next().and_then(|s| std::str::from_utf8(s).ok()).and_then(|s| s.parse::<u32>().ok());
        let ctl = parts.next().and_then(|s| std::str::from_utf8(s).ok());
        let path = parts.next();
        match (id, ctl, path) {
            (Some(hierarchy), Some(ctl), Some(path)) if path.first() == Some(&b'/') => out.push(CgroupLine {
                hierarchy,
                controllers: ctl.to_string(),
                path: PathBuf::from(OsStr::from_bytes(path)),
            }),
            (None, ..) => return Err(bad("bad hierarchy id")),
            _ => return Err(bad("bad line")),
        }
    }
    Ok(out)
}

/// Reads `/proc/<pid>/cgroup`.
pub fn read(pid: Pid) -> Result<Vec<CgroupLine>> {
    let b = super::read_bytes(pid, FILE)?;
    parse(&b).map_err(|e| e.with_pid(pid))
}

/// Reads `/proc/<pid>/task/<tid>/cgroup`.
pub fn read_thread(pid: Pid, tid: Pid) -> Result<Vec<CgroupLine>> {
    let file = format!("task/{}/cgroup", tid.raw());
    let b = super::read_bytes(pid, &file)?;
    parse(&b).map_err(|e| e.with_pid(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_sample() {
        let l = parse(include_bytes!("testdata/cgroup.hybrid")).unwrap();
        assert_eq!(l.len(), 10);
        assert_eq!(l[0].hierarchy, 9);
        assert_eq!(l[0].controllers, "name=systemd");
        assert_eq!(l[5].controllers, "memory");
        assert_eq!(l[5].path, PathBuf::from("/process_api/4fd01457b2f10294288a68d9f9182357"));
        assert!(l[9].is_v2());
        assert_eq!(l[9].path, PathBuf::from("/"));
        assert!(!l[5].is_v2());
    }

    #[test]
    fn odd_lines() {
        let l = parse(b"0::/a:b/c d\n2:cpu,cpuacct:/\n").unwrap();
        assert_eq!(l[0].path, PathBuf::from("/a:b/c d"));
        assert_eq!(l[1].controllers, "cpu,cpuacct");
        for bad in [&b"x::/\n"[..], b"0:/\n", b"0::relative\n", b"::/\n"] {
            assert!(parse(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"0::/\n1::/\nzz\n").unwrap_err().line(), Some(3));
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        let l = read(me).unwrap();
        assert!(!l.is_empty());
        assert_eq!(read_thread(me, me).unwrap(), l);
    }
}
