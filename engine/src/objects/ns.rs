//! Namespaces. Not dumped yet (`-n`): a task in any other namespace than
//! crtools', or one whose children would be born in another namespace than
//! its own, is refused by name, since it would come back different.
//!
//! `/proc/<pid>/ns/<kind>` is the task's own namespace;
//! `ns/pid_for_children` and `ns/time_for_children` are where its next
//! children go: they differ after unshare(CLONE_NEWPID) or
//! unshare(CLONE_NEWTIME) (or setns on them), see namespaces(7). The
//! pid_for_children link cannot be read until the first child exists in the
//! new namespace (the namespace has no init yet): that is refused too.
use crate::error::{Error, Result};
use crate::proc;
use crate::sys::Pid;
use std::os::unix::fs::MetadataExt;

/// Every namespace kind, as named under /proc/<pid>/ns.
const KINDS: [&str; 8] = ["net", "ipc", "uts", "mnt", "pid", "user", "cgroup", "time"];

/// Kinds with a separate namespace for children, and the unshare flag that makes them differ.
const FOR_CHILDREN: [(&str, &str); 2] = [("pid", "CLONE_NEWPID"), ("time", "CLONE_NEWTIME")];

fn id(path: std::path::PathBuf) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

/// Refuses `pid` (a live task) unless it and its future children are all
/// in crtools' own namespaces.
pub fn refuse_foreign(pid: Pid) -> Result<()> {
    for kind in KINDS {
        let ours = id(format!("/proc/self/ns/{kind}").into());
        let theirs = id(proc::pid_path(pid, &format!("ns/{kind}")));
        if let (Ok(a), Ok(b)) = (ours, theirs) {
            if a != b {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "is in another {kind} namespace ({kind}:[{}]) than crtools: \
                         dumping namespaces (-n) is not supported yet",
                        b.1
                    ),
                ));
            }
        }
    }
    for (kind, flag) in FOR_CHILDREN {
        let Ok(own) = id(proc::pid_path(pid, &format!("ns/{kind}"))) else { continue };
        let children = id(proc::pid_path(pid, &format!("ns/{kind}_for_children")));
        let other = match children {
            Ok(c) if c == own => continue,
            Ok(c) => format!("{kind}:[{}]", c.1),
            // Only a pid namespace without its first process reads as missing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("a new {kind} namespace"),
            Err(_) => continue,
        };
        return Err(Error::refuse(
            pid,
            format!(
                "its children would be born in {other}, not in its own {kind} namespace ({kind}:[{}]): \
                 it called unshare({flag}); namespaces for children are not restored yet",
                own.1
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crtools_itself_passes() {
        refuse_foreign(Pid(std::process::id() as i32)).unwrap();
    }
}
