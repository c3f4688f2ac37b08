//! Probes that only read (or write back) /proc files: ns_last_pid,
//! capabilities, fdinfo.
use super::util::{io_why, read_trimmed, status_field};

const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

/// /proc/sys/kernel/ns_last_pid is readable and writable: the value read is
/// written back unchanged (the pid fallback when clone3 set_tid is absent).
pub fn probe_ns_last_pid() -> Result<String, String> {
    let v = read_trimmed(NS_LAST_PID)?;
    let n: i32 = v.parse().map_err(|_| format!("{NS_LAST_PID} holds {v:?}, not a pid"))?;
    std::fs::write(NS_LAST_PID, format!("{n}")).map_err(|e| {
        format!("{} (needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)", io_why("writing ns_last_pid back", &e))
    })?;
    Ok(format!("read {n}, wrote it back"))
}

/// Capability names by number, as far as C/R cares to print them.
const CAP_NAMES: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (2, "CAP_DAC_READ_SEARCH"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (12, "CAP_NET_ADMIN"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
    (24, "CAP_SYS_RESOURCE"),
    (37, "CAP_AUDIT_READ"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
    (40, "CAP_CHECKPOINT_RESTORE"),
];

fn cap_name(n: u32) -> String {
    CAP_NAMES.iter().find(|(c, _)| *c == n).map(|(_, s)| s.to_string()).unwrap_or_else(|| format!("cap {n}"))
}

/// /proc/sys/kernel/cap_last_cap: the highest capability the kernel knows
/// (images store capability sets up to it).
pub fn probe_cap_last_cap() -> Result<String, String> {
    let v = read_trimmed("/proc/sys/kernel/cap_last_cap")?;
    let n: u32 = v.parse().map_err(|_| format!("cap_last_cap holds {v:?}"))?;
    Ok(format!("{n} ({})", cap_name(n)))
}

/// The capabilities dump and restore use, and what is lost without each.
const CR_CAPS: &[(u32, &str)] = &[
    (19, "tracing other users' tasks"),
    (21, "namespaces, PR_SET_MM_MAP, map_files, ns_last_pid"),
    (24, "raising rlimits above the hard limit, single PR_SET_MM fields"),
    (12, "TCP_REPAIR and network namespaces"),
    (7, "restoring other uids"),
    (6, "restoring other gids"),
    (1, "files of other users"),
    (5, "signalling other users' tasks"),
];

/// The effective capabilities of this process that C/R relies on.
pub fn probe_capabilities() -> Result<String, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| io_why("reading /proc/self/status", &e))?;
    let eff = status_field(&status, "CapEff").ok_or("no CapEff in /proc/self/status")?;
    let eff = u64::from_str_radix(&eff, 16).map_err(|_| format!("CapEff {eff:?} is not hex"))?;
    let has = |n: u32| eff & (1u64 << n) != 0;
    let missing: Vec<String> =
        CR_CAPS.iter().filter(|(n, _)| !has(*n)).map(|(n, why)| format!("{} ({why})", cap_name(*n))).collect();
    let cr = if has(40) { ", CAP_CHECKPOINT_RESTORE" } else { "" };
    if missing.is_empty() {
        Ok(format!("CapEff {eff:#x}: all C/R capabilities{cr}"))
    } else {
        Err(format!("CapEff {eff:#x} lacks {}", missing.join(", ")))
    }
}

/// /proc/self/fdinfo shows mnt_id (to find a file's mount at dump).
pub fn probe_fdinfo_mnt_id() -> Result<String, String> {
    let f = std::fs::File::open("/proc/self/maps").map_err(|e| io_why("opening /proc/self/maps", &e))?;
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd()))
        .map_err(|e| io_why("reading /proc/self/fdinfo/<fd>", &e))?;
    let mnt = status_field(&info, "mnt_id").ok_or("fdinfo has no mnt_id line")?;
    let ino = status_field(&info, "ino").map(|_| ", ino").unwrap_or("");
    Ok(format!("pos, flags, mnt_id{ino} present (mnt_id {mnt})"))
}

/// openat2(2) with RESOLVE_* restrictions (safe path walks in image and
/// root directories).
pub fn probe_openat2() -> Result<String, String> {
    use crate::sys::fs::{openat2, OpenFlags, OpenHow, ResolveFlags};
    let how = OpenHow {
        flags: OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY | OpenFlags::O_CLOEXEC,
        mode: 0,
        resolve: ResolveFlags::RESOLVE_NO_MAGICLINKS | ResolveFlags::RESOLVE_NO_SYMLINKS,
    };
    openat2(None, "/proc", &how).map_err(|e| super::util::errno_why("openat2", e, &[]))?;
    // /proc/self is a symlink: RESOLVE_NO_SYMLINKS must refuse it.
    match openat2(None, "/proc/self", &how) {
        Err(e) if e == crate::sys::Errno::ELOOP => {
            Ok("opens, RESOLVE_NO_SYMLINKS refuses /proc/self (ELOOP)".to_string())
        }
        Err(e) => Err(super::util::errno_why("openat2 /proc/self with RESOLVE_NO_SYMLINKS", e, &[])),
        Ok(_) => Err("RESOLVE_NO_SYMLINKS did not refuse the /proc/self symlink".to_string()),
    }
}

/// /proc/self/loginuid (CONFIG_AUDIT): the audit login uid, restored per task.
pub fn probe_loginuid() -> Result<String, String> {
    let v = read_trimmed("/proc/self/loginuid").map_err(|e| format!("{e} (kernel without CONFIG_AUDIT?)"))?;
    let shown = if v == "4294967295" { "unset (-1)".to_string() } else { v };
    Ok(format!("readable, this process: {shown}"))
}

/// The cgroup hierarchies mounted here (v1 controllers, v2 unified), from
/// /proc/self/mounts: what a dump of cgroup membership has to deal with.
pub fn probe_cgroups() -> Result<String, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| io_why("reading /proc/self/mounts", &e))?;
    let mut v1: Vec<String> = Vec::new();
    let mut v2 = false;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.get(2) {
            Some(&"cgroup2") => v2 = true,
            Some(&"cgroup") => {
                let opts = f.get(3).copied().unwrap_or("");
                let ctl: Vec<&str> = opts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro" | "relatime" | "nosuid" | "nodev" | "noexec" | "noatime"))
                    .collect();
                v1.push(ctl.join(","));
            }
            _ => {}
        }
    }
    match (v1.is_empty(), v2) {
        (true, true) => Ok("cgroup v2 (unified)".to_string()),
        (false, true) => Ok(format!("hybrid: cgroup v2 and v1 hierarchies {}", v1.join(" "))),
        (false, false) => Ok(format!("cgroup v1 hierarchies {}", v1.join(" "))),
        (true, false) => Err("no cgroup filesystem is mounted".to_string()),
    }
}
