//! `/proc/<pid>/mountinfo`, see proc_pid_mountinfo(5).
//!
//! One mount per line: `id parent major:minor root mount-point options
//! [optional fields...] - fstype source super-options`. Paths escape space,
//! tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
//!
//! # Invariants
//! - Paths are unescaped into raw bytes; the optional fields (any number,
//!   ended by a lone `-`) are skipped.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::{ProcError, Result};
use crate::sys::Pid;

const FILE: &str = "mountinfo";

/// One mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Mount id.
    pub id: u32,
    /// Parent mount id.
    pub parent: u32,
    /// Directory of the filesystem mounted here (`/` for the whole of it).
    pub root: PathBuf,
    /// Where it is mounted, relative to the reader's root.
    pub mount_point: PathBuf,
    /// Filesystem type (`cgroup`, `cgroup2`, `ext4`...).
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Per-superblock options, comma separated.
    pub super_options: String,
}

impl Mount {
    /// The super options as a list.
    pub fn super_option_list(&self) -> impl Iterator<Item = &str> {
        self.super_options.split(',')
    }
}

/// Undoes the kernel's octal escapes (`\040`).
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Parses a mountinfo file.
pub fn parse(text: &str) -> Result<Vec<Mount>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| ProcError::malformed(FILE, format!("{what} in {line:?}")).at_line(i + 1);
        let mut w = line.split(' ');
        let id = w.next().and_then(|s| s.parse::<u32>().ok()).ok_or_else(|| bad("bad mount id"))?;
        let parent = w.next().and_then(|s| s.parse::<u32>().ok()).ok_or_else(|| bad("bad parent id"))?;
        let _dev = w.next().ok_or_else(|| bad("no device"))?;
        let root = w.next().ok_or_else(|| bad("no root"))?;
        let mount_point = w.next().ok_or_else(|| bad("no mount point"))?;
        let _opts = w.next().ok_or_else(|| bad("no options"))?;
        // Optional fields up to the separator.
        loop {
            match w.next() {
                Some("-") => break,
                Some(_) => continue,
                None => return Err(bad("no separator")),
            }
        }
        let fstype = w.next().ok_or_else(|| bad("no fstype"))?;
        let source = w.next().ok_or_else(|| bad("no source"))?;
        let super_options = w.next().ok_or_else(|| bad("no super options"))?;
        out.push(Mount {
            id,
            parent,
            root: unescape(root),
            mount_point: unescape(mount_point),
            fstype: fstype.to_string(),
            source: source.to_string(),
            super_options: super_options.to_string(),
        });
    }
    Ok(out)
}

/// Reads `/proc/<pid>/mountinfo`.
pub fn read(pid: Pid) -> Result<Vec<Mount>> {
    let t = super::read_text(pid, FILE)?;
    parse(&t).map_err(|e| e.with_pid(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_cgroup_sample() {
        let m = parse(include_str!("testdata/mountinfo.hybrid")).unwrap();
        assert_eq!(m.len(), 19);
        let v2: Vec<&Mount> = m.iter().filter(|m| m.fstype == "cgroup2").collect();
        assert_eq!(v2.len(), 1);
        assert_eq!(v2[0].mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(v2[0].root, PathBuf::from("/"));
        let mem = m.iter().find(|m| m.fstype == "cgroup" && m.super_option_list().any(|o| o == "memory")).unwrap();
        assert_eq!(mem.mount_point, PathBuf::from("/sys/fs/cgroup/memory"));
        let sd = m.iter().find(|m| m.super_option_list().any(|o| o == "name=systemd")).unwrap();
        assert_eq!(sd.mount_point, PathBuf::from("/sys/fs/cgroup/systemd"));
    }

    #[test]
    fn escapes_and_optional_fields() {
        let m =
            parse("36 35 98:0 /mnt\\0401 /a\\134b rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n")
                .unwrap();
        assert_eq!(m[0].root, PathBuf::from("/mnt 1"));
        assert_eq!(m[0].mount_point, PathBuf::from("/a\\b"));
        assert_eq!((m[0].fstype.as_str(), m[0].source.as_str()), ("ext3", "/dev/root"));
        assert_eq!(m[0].super_options, "rw,errors=continue");
        assert!(parse("36 35 98:0 / /a rw shared:7 ext3 /dev/root rw\n").is_err());
        assert!(parse("x 35 98:0 / /a rw - ext3 /dev/root rw\n").is_err());
        assert_eq!(unescape("\\"), PathBuf::from("\\"));
        assert_eq!(unescape("a\\04"), PathBuf::from("a\\04"));
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        assert!(read(me).unwrap().iter().any(|m| m.mount_point == std::path::Path::new("/")));
    }
}
