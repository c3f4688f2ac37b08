//! `/proc/<pid>/map_files/`, see proc_pid_map_files(5).
//!
//! One symlink per file-backed VMA (including shmem: shared anonymous
//! memory, memfd, SysV shm), named `start-end` in lowercase hex without
//! `0x` and without leading zeros. Opening a link opens the mapped file
//! itself, even if unlinked: dump reads shared memory through it.
//!
//! # Invariants
//! - Listing, readlink and open all need CAP_SYS_ADMIN in the task's user
//!   namespace (we run as root); an EPERM surfaces as an I/O error.
//! - Names are parsed strictly (`start < end`, hex); the listing is sorted.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use super::{PathTarget, ProcError, Result};
use crate::sys::Pid;

const FILE: &str = "map_files";

/// Parses a `start-end` entry name.
pub fn parse_name(name: &str) -> Result<(u64, u64)> {
    let bad = || ProcError::malformed(FILE, format!("bad entry name {:?}", name.chars().take(40).collect::<String>()));
    let (a, b) = name.split_once('-').ok_or_else(bad)?;
    let hex = |s: &str| {
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u64::from_str_radix(s, 16).map_err(|_| bad())
    };
    let (start, end) = (hex(a)?, hex(b)?);
    if start >= end {
        return Err(bad());
    }
    Ok((start, end))
}

/// The entry name for a VMA, as the kernel spells it.
pub fn entry_name(start: u64, end: u64) -> String {
    format!("{start:x}-{end:x}")
}

fn entry_path(pid: Pid, start: u64, end: u64) -> (String, PathBuf) {
    let file = format!("{FILE}/{}", entry_name(start, end));
    let path = super::pid_path(pid, &file);
    (file, path)
}

/// Lists the `(start, end)` of every entry, sorted.
pub fn list(pid: Pid) -> Result<Vec<(u64, u64)>> {
    let rd = std::fs::read_dir(super::pid_path(pid, FILE)).map_err(|e| ProcError::io(pid, FILE, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| ProcError::io(pid, FILE, e))?;
        let name = ent.file_name();
        let name = name.to_str().ok_or_else(|| ProcError::malformed(FILE, "non-UTF-8 entry name").with_pid(pid))?;
        out.push(parse_name(name).map_err(|e| e.with_pid(pid))?);
    }
    out.sort_unstable();
    Ok(out)
}

/// Opens the file mapped at exactly `[start, end)`, read-only.
pub fn open(pid: Pid, start: u64, end: u64) -> Result<File> {
    open_with(pid, start, end, OpenOptions::new().read(true))
}

/// Opens the file mapped at exactly `[start, end)` with the given options
/// (the kernel allows write access only if the VMA's file was opened so).
pub fn open_with(pid: Pid, start: u64, end: u64, opts: &OpenOptions) -> Result<File> {
    let (file, path) = entry_path(pid, start, end);
    opts.open(path).map_err(|e| ProcError::io(pid, file, e))
}

/// Whether the file mapped at exactly `[start, end)` was opened for
/// writing: the link's own mode shows the file's (0600 against 0400).
pub fn writable(pid: Pid, start: u64, end: u64) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let (file, path) = entry_path(pid, start, end);
    let md = std::fs::symlink_metadata(path).map_err(|e| ProcError::io(pid, file, e))?;
    Ok(md.permissions().mode() & 0o200 != 0)
}

/// The link target (path of the mapped file, `" (deleted)"` split off).
pub fn link(pid: Pid, start: u64, end: u64) -> Result<PathTarget> {
    let (file, path) = entry_path(pid, start, end);
    let t = std::fs::read_link(path).map_err(|e| ProcError::io(pid, file, e))?;
    Ok(PathTarget::from_os(t.into_os_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::maps::{self, MapKind};
    use std::io::Read;

    #[test]
    fn names() {
        assert_eq!(parse_name("555953c2e000-555953c2f000").unwrap(), (0x555953c2e000, 0x555953c2f000));
        assert_eq!(entry_name(0x400000, 0x401000), "400000-401000");
        for bad in [
            "",
            "-",
            "1000",
            "1000-",
            "-1000",
            "2000-1000",
            "1000-1000",
            "x-2000",
            "+1-2",
            "1-+2",
            "11111111111111111-2",
        ] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        let entries = list(me).unwrap();
        let m = maps::read(me).unwrap();
        // Our own executable's text mapping is listed and readable: it
        // starts with the ELF magic if it maps offset 0.
        let first_file = m.iter().find(|e| e.kind == MapKind::File && e.offset == 0).unwrap();
        assert!(entries.contains(&(first_file.start, first_file.end)));
        let mut f = open(me, first_file.start, first_file.end).unwrap();
        let mut magic = [0u8; 4];
        f.read_exact(&mut magic).unwrap();
        assert_eq!(&magic, b"\x7fELF");
        let l = link(me, first_file.start, first_file.end).unwrap();
        assert_eq!(l.path, first_file.path);
        let e = open(me, 0x1000, 0x2000).unwrap_err();
        assert!(e.is_gone());
        assert!(e.to_string().contains("/map_files/1000-2000"), "{e}");
    }
}
