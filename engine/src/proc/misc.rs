//! Small per-task files and links: `comm`, `cwd`, `root`, `personality`,
//! `loginuid`, `oom_score_adj`, and the global `/proc/sys/kernel/ns_last_pid`. See
//! proc_pid_comm(5), proc_pid_cwd(5), proc_pid_root(5),
//! proc_pid_personality(5), proc_sys_kernel(5).
//!
//! # Invariants
//! - `comm` is returned as raw bytes without the trailing newline (at most
//!   15 bytes, TASK_COMM_LEN - 1), ready for PR_SET_NAME.
//! - `personality` is `%08x`; `loginuid` is decimal, 4294967295
//!   (AUDIT_UID_UNSET) when never set, and the file is absent without
//!   CONFIG_AUDIT (reported as `None`).
//! - `ns_last_pid` is the last pid handed out in the reader's pid
//!   namespace; writing it (CAP_SYS_ADMIN over that namespace) makes the
//!   next fork get the value + 1, the fallback when clone3 set_tid is
//!   unavailable.

use std::io;

use super::{num, PathTarget, ProcError, Result};
use crate::sys::Pid;

/// `AUDIT_UID_UNSET`: loginuid of a task no login ever set.
pub const AUDIT_UID_UNSET: u32 = u32::MAX;

const NS_LAST_PID: &str = "sys/kernel/ns_last_pid";

/// Strips one trailing newline.
fn chomp(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\n").unwrap_or(b)
}

/// Parses a `comm` file.
pub fn parse_comm(bytes: &[u8]) -> Result<Vec<u8>> {
    let c = chomp(bytes);
    if c.len() > 63 || c.contains(&0) || c.contains(&b'\n') {
        return Err(ProcError::malformed("comm", "not a task name"));
    }
    Ok(c.to_vec())
}

/// Reads `/proc/<pid>/comm`.
pub fn comm(pid: Pid) -> Result<Vec<u8>> {
    let b = super::read_bytes(pid, "comm")?;
    parse_comm(&b).map_err(|e| e.with_pid(pid))
}

/// Reads the `/proc/<pid>/cwd` link.
pub fn cwd(pid: Pid) -> Result<PathTarget> {
    link(pid, "cwd")
}

/// Reads the `/proc/<pid>/root` link.
pub fn root(pid: Pid) -> Result<PathTarget> {
    link(pid, "root")
}

fn link(pid: Pid, name: &str) -> Result<PathTarget> {
    let t = std::fs::read_link(super::pid_path(pid, name)).map_err(|e| ProcError::io(pid, name, e))?;
    Ok(PathTarget::from_os(t.into_os_string()))
}

/// Parses a `personality` file (`%08x`).
pub fn parse_personality(text: &str) -> Result<u32> {
    num::hex_u32("personality", "personality", text.trim())
}

/// Reads `/proc/<pid>/personality` (needs ptrace-attach access).
pub fn personality(pid: Pid) -> Result<u32> {
    let t = super::read_text(pid, "personality")?;
    parse_personality(&t).map_err(|e| e.with_pid(pid))
}

/// Parses a `loginuid` file.
pub fn parse_loginuid(text: &str) -> Result<u32> {
    num::dec_u32("loginuid", "loginuid", text.trim())
}

/// Reads `/proc/<pid>/loginuid`; `Ok(None)` if the kernel has no such file
/// (no CONFIG_AUDIT) while the task exists.
pub fn loginuid(pid: Pid) -> Result<Option<u32>> {
    match super::read_text(pid, "loginuid") {
        Ok(t) => parse_loginuid(&t).map(Some).map_err(|e| e.with_pid(pid)),
        Err(e) if e.is_gone() && super::pid_path(pid, "").exists() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses an `oom_score_adj` file (decimal, -1000..=1000).
pub fn parse_oom_score_adj(text: &str) -> Result<i32> {
    let v = num::dec_i32("oom_score_adj", "oom_score_adj", text.trim())?;
    if !(-1000..=1000).contains(&v) {
        return Err(ProcError::malformed("oom_score_adj", format!("{v} is out of range")));
    }
    Ok(v)
}

/// Reads `/proc/<pid>/oom_score_adj`.
pub fn oom_score_adj(pid: Pid) -> Result<i32> {
    let t = super::read_text(pid, "oom_score_adj")?;
    parse_oom_score_adj(&t).map_err(|e| e.with_pid(pid))
}

/// Parses `ns_last_pid`.
pub fn parse_ns_last_pid(text: &str) -> Result<Pid> {
    num::dec_i32(NS_LAST_PID, "ns_last_pid", text.trim()).map(Pid).map_err(ProcError::into_global)
}

/// Reads `/proc/sys/kernel/ns_last_pid`.
pub fn ns_last_pid() -> Result<Pid> {
    let path = format!("/proc/{NS_LAST_PID}");
    let t = std::fs::read_to_string(path).map_err(|e| ProcError::io_global(NS_LAST_PID, e))?;
    parse_ns_last_pid(&t)
}

/// Writes `/proc/sys/kernel/ns_last_pid`, so that the next task created in
/// the caller's pid namespace gets `last + 1` (racy against other forks: the
/// caller serialises).
pub fn set_ns_last_pid(last: Pid) -> Result<()> {
    let path = format!("/proc/{NS_LAST_PID}");
    std::fs::write(path, last.raw().to_string()).map_err(|e| ProcError::io_global(NS_LAST_PID, e))
}

/// True if the error is EPERM/EACCES (a ptrace-access check failed).
pub fn is_permission_denied(e: &ProcError) -> bool {
    matches!(e.kind(), super::ProcErrorKind::Io(io) if io.kind() == io::ErrorKind::PermissionDenied)
}

/// A descriptor some process other than crtools holds now: (pid, fd) of
/// the first whose link target `link` and whose inode (dev, ino) `hit`
/// accepts. Processes that vanish or deny access while being read are
/// skipped. Costs a readlink per descriptor of the system: for the few
/// objects that may be shared with processes outside a restored tree.
pub fn find_fd_holder(hit: impl Fn(&[u8], u64, u64) -> bool) -> Option<(Pid, i32)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for f in fds.flatten() {
            let Ok(link) = std::fs::read_link(f.path()) else { continue };
            let Ok(md) = std::fs::metadata(f.path()) else { continue };
            if hit(link.as_os_str().as_bytes(), md.dev(), md.ino()) {
                if let Some(fd) = f.file_name().to_str().and_then(|n| n.parse().ok()) {
                    return Some((Pid(pid as i32), fd));
                }
            }
        }
    }
    None
}

/// A process that keeps `pid` in use without being a task of that pid:
/// one whose process group or session has that id (its leader is gone, the
/// id lives on while a member does, and clone3 cannot hand it out again).
/// Returns (process, "process group" or "session").
pub fn find_id_holder(pid: Pid) -> Option<(Pid, &'static str)> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(st) = super::stat::read(Pid(p)) else { continue };
        if st.pgrp == pid.0 {
            return Some((Pid(p), "process group"));
        }
        if st.session == pid.0 {
            return Some((Pid(p), "session"));
        }
    }
    None
}

/// A process outside `tree` whose process group or session has one of the
/// ids `led` (groups and sessions led by tasks of the tree): (process, id,
/// "process group" or "session"). One pass over /proc.
pub fn outside_member(
    led: &std::collections::BTreeSet<i32>,
    tree: &std::collections::BTreeSet<i32>,
) -> Option<(Pid, i32, &'static str)> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if tree.contains(&p) {
            continue;
        }
        let Ok(st) = super::stat::read(Pid(p)) else { continue };
        if led.contains(&st.pgrp) {
            return Some((Pid(p), st.pgrp, "process group"));
        }
        if led.contains(&st.session) {
            return Some((Pid(p), st.session, "session"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_comm(b"a) b (c\n").unwrap(), b"a) b (c");
        assert_eq!(parse_comm(b"\xffx\n").unwrap(), b"\xffx");
        assert!(parse_comm(b"a\0b\n").is_err());
        assert!(parse_comm(b"a\nb\n").is_err());
        assert!(parse_comm(&[b'a'; 100]).is_err());
        assert_eq!(parse_personality("00000000\n").unwrap(), 0);
        assert_eq!(parse_personality("00400000\n").unwrap(), 0x0040_0000); // ADDR_NO_RANDOMIZE
        assert!(parse_personality("").is_err());
        assert!(parse_personality("1000000000").is_err());
        assert_eq!(parse_loginuid("4294967295").unwrap(), AUDIT_UID_UNSET);
        assert_eq!(parse_loginuid("1000\n").unwrap(), 1000);
        assert!(parse_loginuid("-1").is_err());
        assert_eq!(parse_ns_last_pid("5793\n").unwrap(), Pid(5793));
        assert_eq!(parse_oom_score_adj("400\n").unwrap(), 400);
        assert_eq!(parse_oom_score_adj("-1000\n").unwrap(), -1000);
        assert!(parse_oom_score_adj("1001").is_err());
        assert!(parse_oom_score_adj("").is_err());
        let e = parse_ns_last_pid("x").unwrap_err();
        assert!(e.to_string().starts_with("/proc/sys/kernel/ns_last_pid: "), "{e}");
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        let c = comm(me).unwrap();
        assert!(!c.is_empty() && c.len() <= 15);
        assert_eq!(cwd(me).unwrap().path, std::env::current_dir().unwrap());
        assert!(!root(me).unwrap().deleted);
        let _ = personality(me).unwrap();
        let _ = loginuid(me).unwrap();
        assert!((-1000..=1000).contains(&oom_score_adj(me).unwrap()));
        assert!(ns_last_pid().unwrap().raw() > 0);
        let e = comm(Pid(i32::MAX)).unwrap_err();
        assert!(e.is_gone() && !is_permission_denied(&e));
        assert!(loginuid(Pid(i32::MAX)).is_err());
    }
}
