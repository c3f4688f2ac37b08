//! Helpers shared by the probes: errno wording, a child process that is
//! always killed and reaped, small /proc readers.
use crate::sys::wait::{self, WaitStatus};
use crate::sys::{ptrace, Errno, Pid};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One failure line: `<call>: <ERRNO> (<description>)`, plus a hint for the
/// errnos whose meaning depends on the call (`hints`: errno → meaning).
pub fn errno_why(call: &str, e: Errno, hints: &[(Errno, &str)]) -> String {
    let name = e.name().unwrap_or("E?");
    let desc = e.description().unwrap_or("unknown error");
    let mut s = format!("{call}: {name} ({desc})");
    if let Some((_, h)) = hints.iter().find(|(he, _)| *he == e) {
        s.push_str(": ");
        s.push_str(h);
    } else if let Some(h) = generic_hint(e) {
        s.push_str(": ");
        s.push_str(h);
    }
    s
}

/// What an errno usually means when a probe gets it.
fn generic_hint(e: Errno) -> Option<&'static str> {
    Some(match e {
        Errno::ENOSYS => "the kernel lacks this syscall (not built in, or too old)",
        Errno::EINVAL => "the kernel does not know this request or flag",
        Errno::EPERM => "not permitted (missing capability, or blocked by a security module)",
        Errno::EACCES => "access denied",
        Errno::ENOENT => "not present on this kernel",
        Errno::EOPNOTSUPP => "not supported by this kernel configuration",
        Errno::ENOTTY => "the kernel does not know this ioctl",
        _ => return None,
    })
}

/// Failure line for an `std::io::Error` on a /proc or /sys file.
pub fn io_why(what: &str, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_why(what, Errno::new(n), &[]),
        None => format!("{what}: {e}"),
    }
}

/// Hints for ptrace requests.
pub const PTRACE_HINTS: &[(Errno, &str)] = &[
    (Errno::EPERM, "tracing not permitted (needs CAP_SYS_PTRACE; check Yama ptrace_scope and LSMs)"),
    (Errno::EIO, "the kernel does not know this ptrace request"),
    (Errno::EINVAL, "the kernel does not know this ptrace request or option"),
    (Errno::ESRCH, "the tracee is gone or not in a ptrace-stop"),
];

/// A `sleep` child owned by a probe. Dropping it kills it by pid (SIGKILL)
/// and reaps it, whether or not it is traced, so no probe leaves a child
/// behind on any path.
pub struct Child {
    inner: std::process::Child,
    pid: Pid,
}

impl Child {
    /// Starts `sleep 100` with no stdio, and waits until it sleeps (so the
    /// dynamic loader and libc start-up are done: rseq is registered, the
    /// maps are final).
    pub fn spawn() -> Result<Child, String> {
        let prog = if std::path::Path::new("/bin/sleep").exists() { "/bin/sleep" } else { "sleep" };
        let inner = Command::new(prog)
            .arg("100")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io_why("spawning a sleep child", &e))?;
        let child = Child { pid: Pid(inner.id() as i32), inner };
        child.wait_sleeping()?;
        Ok(child)
    }

    /// The child's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Polls /proc/<pid>/stat until the child is in state S (asleep in
    /// nanosleep), for at most two seconds.
    fn wait_sleeping(&self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .map_err(|e| io_why("reading the child's /proc stat", &e))?;
            // The state follows the last ')' (comm may contain anything).
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            if state == Some('S') {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(2) {
                return Err(format!("child {} did not reach sleep (state {state:?})", self.pid));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// PTRACE_SEIZE (with EXITKILL, plus `options`) and PTRACE_INTERRUPT,
    /// then waits for the PTRACE_EVENT_STOP. Returns the stop signal.
    pub fn seize_and_stop(&self, options: u32) -> Result<i32, String> {
        ptrace::seize(self.pid, ptrace::PTRACE_O_EXITKILL | options)
            .map_err(|e| errno_why("PTRACE_SEIZE", e, PTRACE_HINTS))?;
        ptrace::interrupt(self.pid).map_err(|e| errno_why("PTRACE_INTERRUPT", e, PTRACE_HINTS))?;
        match wait::wait_pid(self.pid).map_err(|e| errno_why("wait4", e, &[]))? {
            WaitStatus::Stopped { sig, event } if event == ptrace::PTRACE_EVENT_STOP => Ok(sig),
            other => Err(format!("after PTRACE_INTERRUPT wait4 reported {other:?}, not a PTRACE_EVENT_STOP")),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SIGKILL works on a ptrace-stopped child too; then reap until the
        // exit is seen (a traced child may report stops first).
        let _ = self.inner.kill();
        loop {
            match wait::wait_pid(self.pid) {
                Ok(WaitStatus::Exited(_)) | Ok(WaitStatus::Signaled(..)) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// The mappings of `/proc/<who>/maps` as (start, end, perms, offset, name).
pub struct MapLine {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub name: String,
}

/// Parses `/proc/<who>/maps` (`who` is a pid or "self").
pub fn read_maps(who: &str) -> Result<Vec<MapLine>, String> {
    let text = std::fs::read_to_string(format!("/proc/{who}/maps"))
        .map_err(|e| io_why(&format!("reading /proc/{who}/maps"), &e))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(off)) = (it.next(), it.next(), it.next()) else { continue };
        let _dev = it.next();
        let _ino = it.next();
        let name = it.next().unwrap_or("").trim_start().to_string();
        let Some((s, e)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end), Ok(offset)) =
            (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16), u64::from_str_radix(off, 16))
        else {
            continue;
        };
        out.push(MapLine { start, end, perms: perms.to_string(), offset, name });
    }
    Ok(out)
}

/// A size in the unit that reads best ("16 KiB", "2 MiB", "100 B").
pub fn human_size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// Reads a /proc or /sys file and trims it.
pub fn read_trimmed(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| io_why(&format!("reading {path}"), &e))
}

/// The value of a `Key:\tvalue` line of a /proc status-style file.
pub fn status_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(16384), "16 KiB");
        assert_eq!(human_size(2 << 20), "2 MiB");
        assert_eq!(human_size(100), "100 B");
        assert_eq!(human_size(6000), "6000 B");
    }

    #[test]
    fn errno_lines_name_the_errno() {
        let s = errno_why("kcmp", Errno::ENOSYS, &[]);
        assert!(s.starts_with("kcmp: ENOSYS ("), "{s}");
        assert!(s.contains("lacks this syscall"), "{s}");
        let s = errno_why("PTRACE_SEIZE", Errno::EPERM, PTRACE_HINTS);
        assert!(s.contains("CAP_SYS_PTRACE"), "{s}");
    }

    #[test]
    fn status_fields_parse() {
        let t = "Name:\tsleep\nSeccomp:\t0\nSeccomp_filters:\t2\n";
        assert_eq!(status_field(t, "Seccomp").as_deref(), Some("0"));
        assert_eq!(status_field(t, "Seccomp_filters").as_deref(), Some("2"));
        assert_eq!(status_field(t, "Nope"), None);
    }
}
