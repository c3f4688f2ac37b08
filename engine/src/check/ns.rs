//! Namespace probes: for each kind, a short-lived child unshares it and
//! joins our own namespace of that kind again (setns), then execs `true`.
//! Nothing changes for this process: the child has its own copy.
use super::util::{errno_why, io_why, read_trimmed};
use crate::sys::clone::{setns, unshare, CloneFlags};
use crate::sys::Errno;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// How a child step failed.
enum Step {
    Unshare,
    Setns,
}

/// Runs `true` in a child that first unshares `flag` and then, when
/// `back` is given, setns()es into that namespace file. Returns the errno
/// of the failing step.
fn child_run(flag: CloneFlags, back: Option<std::fs::File>, step: Step) -> Result<(), Errno> {
    let prog = if std::path::Path::new("/bin/true").exists() { "/bin/true" } else { "true" };
    let mut cmd = Command::new(prog);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before execve and only
    // makes raw syscalls (unshare, setns) through the sys layer; building an
    // io::Error from an errno does not allocate. No locks, no heap.
    unsafe {
        cmd.pre_exec(move || {
            unshare(flag).map_err(std::io::Error::from)?;
            if let (Step::Setns, Some(f)) = (&step, &back) {
                setns(f.as_fd(), flag).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| Errno::new(e.raw_os_error().unwrap_or(Errno::EIO.into_raw())))?;
    // The child execs `true` and exits at once; reap it.
    let _ = child.wait();
    Ok(())
}

/// One namespace kind: its /proc/self/ns name and clone flag.
fn probe_ns(kind: &str, flag: CloneFlags, setns_back: bool) -> Result<String, String> {
    let path = format!("/proc/self/ns/{kind}");
    let id = std::fs::read_link(&path).map_err(|e| io_why(&format!("readlink {path}"), &e))?;
    let what = format!("unshare(CLONE_NEW{})", kind.to_uppercase());
    let hints: &[(Errno, &str)] = &[
        (Errno::EINVAL, "kernel built without this namespace kind"),
        (Errno::EPERM, "needs CAP_SYS_ADMIN (or user namespaces are restricted)"),
        (Errno::ENOSPC, "the per-user limit in /proc/sys/user/max_*_namespaces is reached"),
    ];
    child_run(flag, None, Step::Unshare).map_err(|e| errno_why(&what, e, hints))?;
    let mut detail = format!("{} unshares", id.display());
    if setns_back {
        let f = std::fs::File::open(&path).map_err(|e| io_why(&format!("opening {path}"), &e))?;
        child_run(flag, Some(f), Step::Setns)
            .map_err(|e| errno_why(&format!("{what} then setns back to {}", id.display()), e, &[]))?;
        detail.push_str(" and setns back");
    }
    Ok(detail)
}

pub fn probe_ns_uts() -> Result<String, String> {
    probe_ns("uts", CloneFlags::CLONE_NEWUTS, true)
}

pub fn probe_ns_ipc() -> Result<String, String> {
    probe_ns("ipc", CloneFlags::CLONE_NEWIPC, true)
}

pub fn probe_ns_mnt() -> Result<String, String> {
    probe_ns("mnt", CloneFlags::CLONE_NEWNS, true)
}

pub fn probe_ns_pid() -> Result<String, String> {
    probe_ns("pid", CloneFlags::CLONE_NEWPID, true)
}

pub fn probe_ns_net() -> Result<String, String> {
    probe_ns("net", CloneFlags::CLONE_NEWNET, true)
}

/// A child in a new user namespace has no capabilities in ours, so it
/// cannot setns back; unshare alone is checked.
pub fn probe_ns_user() -> Result<String, String> {
    let mut s = probe_ns("user", CloneFlags::CLONE_NEWUSER, false)?;
    if let Ok(max) = read_trimmed("/proc/sys/user/max_user_namespaces") {
        s.push_str(&format!(" (max_user_namespaces {max})"));
    }
    Ok(s)
}

pub fn probe_ns_cgroup() -> Result<String, String> {
    probe_ns("cgroup", CloneFlags::CLONE_NEWCGROUP, true)
}

/// Time namespaces also need /proc/<pid>/timens_offsets to restore the
/// clock offsets.
pub fn probe_ns_time() -> Result<String, String> {
    let s = probe_ns("time", CloneFlags::CLONE_NEWTIME, true)?;
    read_trimmed("/proc/self/timens_offsets").map(|_| format!("{s}, timens_offsets readable"))
}

/// clone3 with set_tid: a child gets a chosen free pid (how restore
/// recreates exact pids). The child only spins until the parent has seen
/// its pid and kills it.
pub fn probe_clone3_set_tid() -> Result<String, String> {
    use crate::sys::clone::{clone3, CloneArgs, CloneResult};
    use crate::sys::signal::{kill, SIGKILL};
    use crate::sys::wait::{self, WaitStatus};
    use crate::sys::Pid;
    let pid_max: i32 =
        read_trimmed("/proc/sys/kernel/pid_max")?.parse().map_err(|_| "pid_max is not a number".to_string())?;
    // High pids are rarely in use; spread by our own pid so parallel runs
    // try different ones.
    let base = (pid_max - 3000 - (std::process::id() as i32 % 997)).max(301);
    for want in base..base + 50 {
        if std::path::Path::new(&format!("/proc/{want}")).exists() {
            continue;
        }
        let tids = [Pid(want)];
        let args = CloneArgs::new(CloneFlags::empty()).set_tid(&tids);
        // SAFETY: the child does nothing but spin in user space (no
        // allocation, no locks, no syscalls) until the parent kills it.
        match unsafe { clone3(&args) } {
            Ok(CloneResult::Child) => loop {
                std::hint::spin_loop();
            },
            Ok(CloneResult::Parent { child, .. }) => {
                let killed = kill(child, SIGKILL);
                let status = wait::wait_pid(child);
                killed.map_err(|e| errno_why("kill of the set_tid child", e, &[]))?;
                if child != Pid(want) {
                    return Err(format!("clone3 set_tid {want} gave the child pid {child}"));
                }
                return match status {
                    Ok(WaitStatus::Signaled(9, _)) => Ok(format!("child created with the chosen pid {want}")),
                    Ok(other) => Err(format!("the set_tid child ended with {other:?}")),
                    Err(e) => Err(errno_why("wait4 for the set_tid child", e, &[])),
                };
            }
            Err(Errno::EEXIST) => continue,
            Err(e) => {
                return Err(errno_why(
                    "clone3 with set_tid",
                    e,
                    &[
                        (Errno::EPERM, "set_tid needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE over the pid namespace"),
                        (Errno::E2BIG, "kernel older than 5.5: clone_args has no set_tid"),
                        (Errno::ENOSYS, "kernel without clone3 (or clone3 filtered by seccomp)"),
                    ],
                ))
            }
        }
    }
    Err(format!("no free pid in {base}..{} for set_tid", base + 50))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_errno_reaches_the_parent() {
        // setns with a uts namespace file but the net type is refused.
        let uts = std::fs::File::open("/proc/self/ns/uts").unwrap();
        assert_eq!(child_run(CloneFlags::CLONE_NEWNET, Some(uts), Step::Setns), Err(Errno::EINVAL));
        // A flag unshare does not take (CLONE_PIDFD) fails in the child.
        assert_eq!(child_run(CloneFlags::CLONE_PIDFD, None, Step::Unshare), Err(Errno::EINVAL));
    }
}
