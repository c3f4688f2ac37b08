//! Kernel feature probes for `crtools check`.
//!
//! Interface used by the CLI (kept stable while probes are added):
//! [`run_checks`] runs every probe and returns a [`Report`].
//!
//! # Invariants
//! - Every probe is a `fn() -> Result<String, String>` registered in the one
//!   table [`PROBES`]: `Ok` carries what was found, `Err` why it does not
//!   work (the errno name, its description and what it means there).
//! - A probe leaves the system as it found it: children it starts are
//!   killed by pid and reaped on every path (`util::Child`), values it
//!   writes are the values it read (ns_last_pid), and clear_refs is only
//!   ever written for this process.
//! - Probes issue no raw syscalls: they go through [`crate::sys`], std and
//!   /proc files.
use std::io::Write;

mod events;
mod kernel;
mod mem;
mod net;
mod ns;
mod procfs;
mod ptrace;
mod util;

/// Whether a failing probe makes `crtools check` fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// C/R cannot work without it.
    Required,
    /// Some features are unavailable without it.
    Optional,
}

/// The result of one probe.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Short name, e.g. "ptrace-seize".
    pub name: &'static str,
    /// Required or optional.
    pub need: Need,
    /// `Ok(detail)` when it works, `Err(why)` when not.
    pub result: Result<String, String>,
    /// One line on what the probe checks and why C/R needs it.
    pub about: &'static str,
}

/// All probes of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// In the order they ran.
    pub probes: Vec<Probe>,
}

/// Width of the name column.
const NAME_WIDTH: usize = 24;

impl Report {
    /// True when every required probe passed.
    pub fn ok(&self) -> bool {
        self.probes.iter().all(|p| p.need == Need::Optional || p.result.is_ok())
    }

    /// Names of the required probes that failed, in order.
    pub fn failed_required(&self) -> Vec<&'static str> {
        self.probes.iter().filter(|p| p.need == Need::Required && p.result.is_err()).map(|p| p.name).collect()
    }

    /// Writes one line per probe, then the verdict.
    pub fn render(&self, w: &mut dyn Write) -> std::io::Result<()> {
        self.render_lines(w, false)
    }

    /// Like [`Report::render`], with each probe's description and need on a
    /// second, indented line.
    pub fn render_verbose(&self, w: &mut dyn Write) -> std::io::Result<()> {
        self.render_lines(w, true)
    }

    fn render_lines(&self, w: &mut dyn Write, verbose: bool) -> std::io::Result<()> {
        for p in &self.probes {
            match &p.result {
                Ok(d) => writeln!(w, "{:<NAME_WIDTH$} ok      {d}", p.name)?,
                Err(why) => writeln!(w, "{:<NAME_WIDTH$} {:<7} {why}", p.name, tag(p))?,
            }
            if verbose {
                let need = if p.need == Need::Required { "required" } else { "optional" };
                writeln!(w, "{:<NAME_WIDTH$} {need}: {}", "", p.about)?;
            }
        }
        let failed = self.failed_required();
        if failed.is_empty() {
            writeln!(w, "Looks good.")
        } else {
            writeln!(w, "Required kernel features are missing: {}", failed.join(", "))
        }
    }

    /// Machine-readable form: one JSON object with `ok` and a `probes`
    /// array of `{name, need, status, detail, about}` (status is "ok",
    /// "failed" or "missing").
    pub fn render_json(&self, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(w, "{{\"ok\": {}, \"probes\": [", self.ok())?;
        for (i, p) in self.probes.iter().enumerate() {
            let (status, detail) = match &p.result {
                Ok(d) => ("ok", d.as_str()),
                Err(why) => (if p.need == Need::Required { "failed" } else { "missing" }, why.as_str()),
            };
            let need = if p.need == Need::Required { "required" } else { "optional" };
            let sep = if i + 1 == self.probes.len() { "" } else { "," };
            writeln!(
                w,
                "  {{\"name\": {}, \"need\": \"{need}\", \"status\": \"{status}\", \"detail\": {}, \"about\": {}}}{sep}",
                json_str(p.name),
                json_str(detail),
                json_str(p.about)
            )?;
        }
        writeln!(w, "]}}")
    }
}

fn tag(p: &Probe) -> &'static str {
    match (&p.result, p.need) {
        (Ok(_), _) => "ok",
        (Err(_), Need::Required) => "FAILED",
        (Err(_), Need::Optional) => "missing",
    }
}

/// A JSON string literal for `s`.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One row of the probe table.
pub struct ProbeDef {
    /// Short name, e.g. "ptrace-seize".
    pub name: &'static str,
    /// Required or optional.
    pub need: Need,
    /// The probe.
    pub run: fn() -> Result<String, String>,
    /// One line on what it checks and why C/R needs it.
    pub about: &'static str,
}

use Need::{Optional, Required};

/// Every probe, in the order they run and print.
pub const PROBES: &[ProbeDef] = &[
    ProbeDef {
        name: "ptrace-seize",
        need: Required,
        run: ptrace::probe_ptrace_seize,
        about: "PTRACE_SEIZE + PTRACE_INTERRUPT stop a task without a SIGSTOP (freezing the tree)",
    },
    ProbeDef {
        name: "ptrace-sigmask",
        need: Required,
        run: ptrace::probe_ptrace_sigmask,
        about: "PTRACE_GETSIGMASK/SETSIGMASK read and restore blocked signals",
    },
    ProbeDef {
        name: "ptrace-peeksiginfo",
        need: Required,
        run: ptrace::probe_ptrace_peeksiginfo,
        about: "PTRACE_PEEKSIGINFO reads pending signals without dequeuing them",
    },
    ProbeDef {
        name: "ptrace-regset-xstate",
        need: Required,
        run: ptrace::probe_regset_xstate,
        about: "PTRACE_GETREGSET NT_X86_XSTATE reads the FPU/SSE/AVX state (xsave area)",
    },
    ProbeDef {
        name: "process_vm_readv",
        need: Required,
        run: ptrace::probe_process_vm_readv,
        about: "process_vm_readv copies another task's pages in bulk (memory dump)",
    },
    ProbeDef {
        name: "map_files",
        need: Required,
        run: ptrace::probe_map_files,
        about: "/proc/<pid>/map_files entries open the file or shared memory behind a mapping",
    },
    ProbeDef {
        name: "proc-children",
        need: Required,
        run: ptrace::probe_proc_children,
        about: "/proc/<pid>/task/<tid>/children lists a task's children (tree walk at dump)",
    },
    ProbeDef {
        name: "pagemap",
        need: Required,
        run: mem::probe_pagemap,
        about: "/proc/<pid>/pagemap tells present and swapped pages from holes",
    },
    ProbeDef {
        name: "clone3-set_tid",
        need: Required,
        run: ns::probe_clone3_set_tid,
        about: "clone3 with set_tid creates a task with a chosen pid (exact pids at restore)",
    },
    ProbeDef {
        name: "kcmp",
        need: Required,
        run: kernel::probe_kcmp,
        about: "kcmp tells which tasks share files, mm, fs, ... so each object is dumped once",
    },
    ProbeDef {
        name: "memfd",
        need: Required,
        run: kernel::probe_memfd,
        about: "memfd_create recreates memfds and backs restored shared anonymous memory",
    },
    ProbeDef {
        name: "prctl-set-mm",
        need: Required,
        run: kernel::probe_prctl_set_mm,
        about: "PR_SET_MM_MAP (its size query): the restorer sets brk, stack, args, env, auxv, exe",
    },
    ProbeDef {
        name: "ns_last_pid",
        need: Required,
        run: procfs::probe_ns_last_pid,
        about: "/proc/sys/kernel/ns_last_pid can be set (pid fallback without clone3 set_tid)",
    },
    ProbeDef {
        name: "vdso-layout",
        need: Required,
        run: mem::probe_vdso_layout,
        about: "the [vdso]/[vvar] areas the restorer must place where the dumped task had them",
    },
    ProbeDef {
        name: "pidfd",
        need: Required,
        run: ptrace::probe_pidfd,
        about: "pidfd_open + pidfd_send_signal: signals that cannot hit a recycled pid",
    },
    ProbeDef {
        name: "fdinfo-mnt_id",
        need: Optional,
        run: procfs::probe_fdinfo_mnt_id,
        about: "/proc/<pid>/fdinfo shows mnt_id, to find the mount of an open file",
    },
    ProbeDef {
        name: "openat2",
        need: Optional,
        run: procfs::probe_openat2,
        about: "openat2 with RESOLVE_* confines path walks (image directory, restored roots)",
    },
    ProbeDef {
        name: "userfaultfd",
        need: Optional,
        run: kernel::probe_userfaultfd,
        about: "userfaultfd: lazy restore (pages fetched on first touch)",
    },
    ProbeDef {
        name: "uffd-wp",
        need: Optional,
        run: kernel::probe_uffd_wp,
        about: "userfaultfd write-protect with WP_ASYNC: dirty tracking without soft-dirty",
    },
    ProbeDef {
        name: "pagemap-scan",
        need: Optional,
        run: kernel::probe_pagemap_scan,
        about: "PAGEMAP_SCAN ioctl: finds present, swapped and zero pages in one call per range",
    },
    ProbeDef {
        name: "memfd-hugetlb",
        need: Optional,
        run: kernel::probe_memfd_hugetlb,
        about: "memfd_create MFD_HUGETLB: memfds backed by huge pages",
    },
    ProbeDef {
        name: "event-fds",
        need: Optional,
        run: events::probe_event_fds,
        about: "timer ticks and inotify watch numbers set back, epoll watches matched (event descriptors)",
    },
    ProbeDef {
        name: "zero-page",
        need: Optional,
        run: mem::probe_zero_page,
        about: "the zero page's PFN in pagemap, so pages mapping it are dumped as holes",
    },
    ProbeDef {
        name: "guard-regions",
        need: Optional,
        run: mem::probe_guard_regions,
        about: "MADV_GUARD_INSTALL guard regions and the pagemap bit that shows them (dumped and installed again)",
    },
    ProbeDef {
        name: "soft-dirty",
        need: Optional,
        run: mem::probe_soft_dirty,
        about: "soft-dirty pagemap bit (clear_refs 4): not used (pre-dumps track writes with userfaultfd)",
    },
    ProbeDef {
        name: "uffd-wp-tracking",
        need: Optional,
        run: mem::probe_uffd_wp_tracking,
        about: "userfaultfd async write-protect (WP_ASYNC, WP_UNPOPULATED) and PAGEMAP_SCAN: pre-dump write tracking",
    },
    ProbeDef {
        name: "ptrace-group-stop",
        need: Optional,
        run: ptrace::probe_ptrace_group_stop,
        about: "group-stops of seized tasks and PTRACE_LISTEN (dumping stopped tasks as stopped)",
    },
    ProbeDef {
        name: "mdwe",
        need: Optional,
        run: mem::probe_mdwe,
        about: "PR_GET_MDWE reads a task's memory-deny-write-execute flags (dumped and set again)",
    },
    ProbeDef {
        name: "rseq",
        need: Optional,
        run: ptrace::probe_rseq,
        about: "PTRACE_GET_RSEQ_CONFIGURATION reads a task's rseq registration",
    },
    ProbeDef {
        name: "seccomp-suspend",
        need: Optional,
        run: ptrace::probe_seccomp_suspend,
        about: "PTRACE_O_SUSPEND_SECCOMP lets the parasite run in a seccomp-filtered task",
    },
    ProbeDef {
        name: "seccomp-get-filter",
        need: Optional,
        run: ptrace::probe_seccomp_get_filter,
        about: "PTRACE_SECCOMP_GET_FILTER dumps a task's seccomp filters",
    },
    ProbeDef {
        name: "pidfd-getfd",
        need: Optional,
        run: ptrace::probe_pidfd_getfd,
        about: "pidfd_getfd copies a task's descriptor without the parasite",
    },
    ProbeDef {
        name: "tcp-repair",
        need: Optional,
        run: net::probe_tcp_repair,
        about: "TCP_REPAIR mode: dump and restore established TCP connections",
    },
    ProbeDef {
        name: "sock-diag",
        need: Optional,
        run: net::probe_sock_diag,
        about: "NETLINK_SOCK_DIAG (unix_diag, inet_diag): socket state and peers at dump",
    },
    ProbeDef {
        name: "tcp-md5-diag",
        need: Optional,
        run: net::probe_tcp_md5_diag,
        about: "inet_diag lists TCP_MD5SIG keys: sockets with keys are dumped with them",
    },
    ProbeDef {
        name: "packet-diag",
        need: Optional,
        run: net::probe_packet_diag,
        about: "packet_diag: packet sockets' memberships, rings and fanout at dump",
    },
    ProbeDef {
        name: "sysv-shm-next-id",
        need: Optional,
        run: mem::probe_sysv_shm_next_id,
        about: "kernel.shm_next_id: SysV shared memory segments come back with their ids",
    },
    ProbeDef {
        name: "sysv-msg-copy",
        need: Optional,
        run: mem::probe_sysv_msg_copy,
        about: "msgrcv(MSG_COPY): -n ipc copies queued messages without taking them",
    },
    ProbeDef {
        name: "ns-uts",
        need: Optional,
        run: ns::probe_ns_uts,
        about: "uts namespaces (hostname and domain name): unshare in a child, setns back",
    },
    ProbeDef {
        name: "ns-ipc",
        need: Optional,
        run: ns::probe_ns_ipc,
        about: "ipc namespaces (SysV IPC and POSIX message queues): unshare in a child, setns back",
    },
    ProbeDef {
        name: "ns-mnt",
        need: Optional,
        run: ns::probe_ns_mnt,
        about: "mnt namespaces (mount tables): unshare in a child, setns back",
    },
    ProbeDef {
        name: "ns-pid",
        need: Optional,
        run: ns::probe_ns_pid,
        about: "pid namespaces (pid numbering (nested pid trees)): unshare in a child, setns back",
    },
    ProbeDef {
        name: "ns-net",
        need: Optional,
        run: ns::probe_ns_net,
        about: "net namespaces (network stacks): unshare in a child, setns back",
    },
    ProbeDef {
        name: "ns-user",
        need: Optional,
        run: ns::probe_ns_user,
        about: "user namespaces (uid/gid mappings and capabilities): unshare in a child",
    },
    ProbeDef {
        name: "ns-cgroup",
        need: Optional,
        run: ns::probe_ns_cgroup,
        about: "cgroup namespaces (cgroup root views): unshare in a child, setns back",
    },
    ProbeDef {
        name: "ns-time",
        need: Optional,
        run: ns::probe_ns_time,
        about: "time namespaces (CLOCK_MONOTONIC/BOOTTIME offsets): unshare in a child, setns back",
    },
    ProbeDef {
        name: "loginuid",
        need: Optional,
        run: procfs::probe_loginuid,
        about: "/proc/<pid>/loginuid, the audit login uid restored per task",
    },
    ProbeDef {
        name: "cgroups",
        need: Optional,
        run: procfs::probe_cgroups,
        about: "the cgroup hierarchies (v1 controllers, v2) a dump of cgroup membership meets",
    },
    ProbeDef {
        name: "cap_last_cap",
        need: Optional,
        run: procfs::probe_cap_last_cap,
        about: "/proc/sys/kernel/cap_last_cap: the highest capability of this kernel",
    },
    ProbeDef {
        name: "capabilities",
        need: Optional,
        run: procfs::probe_capabilities,
        about: "the effective capabilities of crtools that dump and restore rely on",
    },
    ProbeDef {
        name: "pty",
        need: Optional,
        run: kernel::probe_pty,
        about: "ptys: TIOCGPTN, TIOCGPKT, TIOCGPTLCK, TIOCGPTPEER, TIOCGDEV, TIOCGEXCL read a pty's state, TIOCSTI puts input back",
    },
];

/// Probes whose answer depends on the caller (its credentials, its
/// cgroup, its right to TIOCSTI), run every time; every other probe tests
/// the kernel, whose answer cannot change before a reboot.
const LIVE: &[&str] = &["loginuid", "cgroups", "cap_last_cap", "capabilities", "pty"];

/// Probes that allocate pids on purpose (ns_last_pid, set_tid): run alone,
/// after the others, so no other probe's fork takes their pid.
const ALONE: &[&str] = &["ns_last_pid", "clone3-set_tid"];

/// Where the kernel probes' answers are kept between runs (like CRIU's
/// kdat cache), valid for one boot, one build and one user. Only probes
/// that passed are kept.
const CACHE: &str = "/run/crtools/check.cache";

/// Runs every probe (or takes the kernel probes' answers from the cache
/// of this boot) and returns the report.
pub fn run_checks() -> Report {
    let key = cache_key();
    let cached = key.as_deref().and_then(read_cache);
    let mut probes: Vec<Option<Probe>> = vec![None; PROBES.len()];
    if let Some(c) = &cached {
        for (i, d) in PROBES.iter().enumerate().filter(|(_, d)| !LIVE.contains(&d.name)) {
            if let Some(r) = c.get(d.name) {
                probes[i] = Some(Probe { name: d.name, need: d.need, result: r.clone(), about: d.about });
            }
        }
    }
    let todo: Vec<usize> = (0..PROBES.len()).filter(|&i| probes[i].is_none()).collect();
    let (alone, together): (Vec<usize>, Vec<usize>) = todo.iter().partition(|&&i| ALONE.contains(&PROBES[i].name));
    // The others at once: most of the time is spent waiting for children
    // and namespaces, not computing.
    std::thread::scope(|s| {
        let handles: Vec<_> = together.iter().map(|&i| (i, s.spawn(move || run_one(&PROBES[i])))).collect();
        for (i, h) in handles {
            probes[i] = Some(h.join().unwrap_or_else(|_| {
                let d = &PROBES[i];
                Probe { name: d.name, need: d.need, result: Err("the probe panicked".into()), about: d.about }
            }));
        }
    });
    for i in alone {
        probes[i] = Some(run_one(&PROBES[i]));
    }
    let probes: Vec<Probe> = probes.into_iter().map(|p| p.expect("every probe ran")).collect();
    if let (Some(key), true) = (key, cached.is_none() || !todo.is_empty()) {
        write_cache(&key, &probes);
    }
    Report { probes }
}

/// Runs every probe now, one after the other, ignoring the cache.
pub fn run_checks_uncached() -> Report {
    Report { probes: PROBES.iter().map(run_one).collect() }
}

/// boot id, crtools version, probe table and euid: what the cache is for.
fn cache_key() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let names: Vec<&str> = PROBES.iter().map(|d| d.name).collect();
    let table = crate::image::crc32c::crc32c(names.join(",").as_bytes());
    let euid = crate::sys::misc::getresuid().ok()?.effective;
    Some(format!("crtools-check-cache 1 {} {} {table:08x} {euid}", env!("CARGO_PKG_VERSION"), boot.trim()))
}

type Cached = std::collections::HashMap<String, Result<String, String>>;

/// The cached answers, if the cache is for `key`.
fn read_cache(key: &str) -> Option<Cached> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(CACHE).ok()?;
    // Only a file of ours that nobody else could have written.
    let me = crate::sys::misc::getresuid().ok()?.effective;
    if !md.is_file() || md.uid() != me || md.mode() & 0o022 != 0 {
        return None;
    }
    let text = std::fs::read_to_string(CACHE).ok()?;
    let mut lines = text.lines();
    if lines.next()? != key {
        return None;
    }
    let mut out = Cached::new();
    for l in lines {
        let mut f = l.splitn(3, '\t');
        let (name, ok, msg) = (f.next()?, f.next()?, unescape(f.next()?));
        out.insert(name.to_string(), if ok == "ok" { Ok(msg) } else { Err(msg) });
    }
    Some(out)
}

/// Keeps the kernel probes' answers (best effort: a read-only /run just
/// means no cache).
fn write_cache(key: &str, probes: &[Probe]) {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = std::path::Path::new(CACHE).parent().expect("a directory");
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    let mut text = format!("{key}\n");
    // Only what worked: a failure may be passing (a loaded machine, a
    // module loaded later) and is looked at again next time.
    for p in probes.iter().filter(|p| !LIVE.contains(&p.name) && p.result.is_ok()) {
        let (ok, msg) = match &p.result {
            Ok(m) => ("ok", m),
            Err(m) => ("err", m),
        };
        text.push_str(&format!("{}\t{ok}\t{}\n", p.name, escape(msg)));
    }
    let tmp = format!("{CACHE}.{}", std::process::id());
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(0o400000) // O_NOFOLLOW
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if written.is_err() || std::fs::rename(&tmp, CACHE).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n").replace('\t', "\\t")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// Runs one probe. A panicking probe is reported as failed, not fatal
/// (under panic=abort it still aborts, so probes must not panic).
fn run_one(d: &ProbeDef) -> Probe {
    let result = std::panic::catch_unwind(d.run).unwrap_or_else(|_| Err("the probe panicked".to_string()));
    Probe { name: d.name, need: d.need, result, about: d.about }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_escaping() {
        for m in ["plain", "tab\there", "two\nlines", "back\\slash\\n"] {
            assert_eq!(unescape(&escape(m)), m);
            assert!(!escape(m).contains('\n') && !escape(m).contains('\t'));
        }
    }

    #[test]
    fn cached_and_parallel_runs_agree_with_a_plain_run() {
        let plain = run_checks_uncached();
        let first = run_checks();
        let second = run_checks();
        for r in [&first, &second] {
            assert_eq!(r.probes.len(), plain.probes.len());
            for (a, b) in r.probes.iter().zip(&plain.probes) {
                assert_eq!(a.name, b.name);
                assert_eq!(a.result.is_ok(), b.result.is_ok(), "{}: {:?} vs {:?}", a.name, a.result, b.result);
            }
        }
    }

    fn rendered(r: &Report) -> String {
        let mut out = Vec::new();
        r.render(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn probe(name: &'static str, need: Need, result: Result<&str, &str>) -> Probe {
        Probe { name, need, result: result.map(str::to_string).map_err(str::to_string), about: "test" }
    }

    #[test]
    fn this_machine_passes() {
        let r = run_checks_uncached();
        let text = rendered(&r);
        // Every child a probe started was killed and reaped (zombies would
        // still be listed here).
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        let left = std::fs::read_to_string(format!("/proc/{}/children", me.display())).unwrap();
        assert_eq!(left.trim(), "", "probes left children behind");
        for p in &r.probes {
            if p.need == Need::Required {
                assert!(p.result.is_ok(), "required probe {} failed: {:?}\n{text}", p.name, p.result);
            }
        }
        let sd = r.probes.iter().find(|p| p.name == "soft-dirty").expect("soft-dirty probe");
        assert_eq!(sd.need, Need::Optional);
        let why = sd.result.as_ref().expect_err("this kernel has no CONFIG_MEM_SOFT_DIRTY");
        assert!(why.contains("CONFIG_MEM_SOFT_DIRTY"), "{why}");
        assert!(text.lines().any(|l| l.starts_with("soft-dirty") && l.contains(" missing ")), "{text}");
        assert!(r.ok());
        assert!(text.ends_with("Looks good.\n"), "{text}");
        println!("{text}");
    }

    #[test]
    fn names_are_unique_and_fit() {
        let mut names: Vec<_> = PROBES.iter().map(|d| d.name).collect();
        assert!(names.iter().all(|n| n.len() < NAME_WIDTH));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PROBES.len());
    }

    #[test]
    fn failed_required_is_named() {
        let r = Report {
            probes: vec![
                probe("good", Need::Required, Ok("fine")),
                probe("kcmp", Need::Required, Err("kcmp: ENOSYS (Function not implemented)")),
                probe("extra", Need::Optional, Err("nope")),
            ],
        };
        assert!(!r.ok());
        assert_eq!(r.failed_required(), vec!["kcmp"]);
        let text = rendered(&r);
        assert!(text.lines().any(|l| l.starts_with("kcmp ") && l.contains(" FAILED  kcmp: ENOSYS")), "{text}");
        assert!(text.ends_with("Required kernel features are missing: kcmp\n"), "{text}");
        assert!(!text.contains("Looks good."));
    }

    #[test]
    fn optional_missing_does_not_fail() {
        let r = Report {
            probes: vec![probe("good", Need::Required, Ok("fine")), probe("uffd-wp", Need::Optional, Err("EINVAL"))],
        };
        assert!(r.ok());
        let text = rendered(&r);
        assert!(text.contains("uffd-wp                  missing EINVAL\n"), "{text}");
        assert!(text.ends_with("Looks good.\n"));
    }

    #[test]
    fn json_is_escaped() {
        let r = Report { probes: vec![probe("x", Need::Optional, Err("a \"b\"\n"))] };
        let mut out = Vec::new();
        r.render_json(&mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("{\"ok\": true,"), "{s}");
        assert!(s.contains(r#""status": "missing", "detail": "a \"b\"\n""#), "{s}");
    }

    #[test]
    fn verbose_adds_descriptions() {
        let r = Report { probes: vec![probe("x", Need::Required, Ok("fine"))] };
        let mut out = Vec::new();
        r.render_verbose(&mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("required: test"), "{s}");
    }
}
