//! `/proc/<pid>/status`, see proc_pid_status(5).
//!
//! Format: one `Key:<TAB>value` per line (`proc_pid_status()` in
//! fs/proc/array.c).
//!
//! # Invariants
//! - Keys the kernel always prints are required: Name, State, Tgid, Pid,
//!   PPid, TracerPid, Uid, Gid, Threads, SigQ, SigPnd, ShdPnd, SigBlk,
//!   SigIgn, SigCgt, CapInh, CapPrm, CapEff, CapBnd, CapAmb.
//! - Keys that depend on config or task kind are optional: Umask (absent for
//!   zombies), the Vm*/Rss* block (absent without an mm), Ngid, NStgid,
//!   NSpid, NSpgid, NSsid (empty without CONFIG_PID_NS), NoNewPrivs, Seccomp,
//!   Seccomp_filters, Speculation_Store_Bypass, Cpus_allowed_list,
//!   Mems_allowed_list, voluntary/nonvoluntary_ctxt_switches.
//! - Every key not parsed into a typed field is kept in [`Status::other`]
//!   with its value trimmed.
//! - Name is escaped by the kernel (control whitespace and backslash are
//!   printed as C escapes); it is kept as printed. Use [`super::misc::comm`]
//!   or stat for the raw bytes.
//!
//! Typed keys: Name, Umask (octal), State, Tgid, Ngid, Pid, PPid, TracerPid,
//! Uid, Gid (real, effective, saved, filesystem), FDSize, Groups, NStgid,
//! NSpid, NSpgid, NSsid (outermost namespace first), Kthread, VmPeak, VmSize,
//! VmLck, VmPin, VmHWM, VmRSS, RssAnon, RssFile, RssShmem, VmData, VmStk,
//! VmExe, VmLib, VmPTE, VmSwap, HugetlbPages (kB), Threads, SigQ
//! (queued/limit), SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt (hex u64), CapInh,
//! CapPrm, CapEff, CapBnd, CapAmb (hex u64), NoNewPrivs, Seccomp,
//! Seccomp_filters, Speculation_Store_Bypass, Cpus_allowed_list,
//! Mems_allowed_list, voluntary_ctxt_switches, nonvoluntary_ctxt_switches.

use std::collections::BTreeMap;

use super::stat::TaskState;
use super::{num, parse_id_list, ProcError, Result};
use crate::sys::Pid;

const FILE: &str = "status";

/// Memory usage lines of `status`, all in kB. A line absent from the file
/// reads as 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmUsage {
    /// VmPeak: peak virtual size.
    pub peak: u64,
    /// VmSize: virtual size.
    pub size: u64,
    /// VmLck: locked memory.
    pub lck: u64,
    /// VmPin: pinned memory.
    pub pin: u64,
    /// VmHWM: peak resident set.
    pub hwm: u64,
    /// VmRSS: resident set.
    pub rss: u64,
    /// RssAnon: resident anonymous memory.
    pub rss_anon: u64,
    /// RssFile: resident file mappings.
    pub rss_file: u64,
    /// RssShmem: resident shared memory.
    pub rss_shmem: u64,
    /// VmData: data + heap + private anonymous.
    pub data: u64,
    /// VmStk: main stack.
    pub stk: u64,
    /// VmExe: text.
    pub exe: u64,
    /// VmLib: shared library code.
    pub lib: u64,
    /// VmPTE: page tables.
    pub pte: u64,
    /// VmSwap: swapped-out anonymous memory.
    pub swap: u64,
    /// HugetlbPages: hugetlb memory.
    pub hugetlb: u64,
}

/// A parsed `status` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Name (escaped as the kernel prints it).
    pub name: String,
    /// Umask, absent for zombies.
    pub umask: Option<u32>,
    /// State letter.
    pub state: TaskState,
    /// Tgid.
    pub tgid: i32,
    /// Ngid (NUMA group), when printed.
    pub ngid: Option<i32>,
    /// Pid.
    pub pid: i32,
    /// PPid.
    pub ppid: i32,
    /// TracerPid, 0 if untraced.
    pub tracer_pid: i32,
    /// Uid: real, effective, saved set, filesystem.
    pub uid: [u32; 4],
    /// Gid: real, effective, saved set, filesystem.
    pub gid: [u32; 4],
    /// FDSize: allocated fd table slots.
    pub fd_size: Option<u64>,
    /// Groups: supplementary groups.
    pub groups: Vec<u32>,
    /// NStgid: tgid in each pid namespace, outermost first.
    pub ns_tgid: Vec<i32>,
    /// NSpid: pid in each pid namespace, outermost first.
    pub ns_pid: Vec<i32>,
    /// NSpgid: process group in each pid namespace.
    pub ns_pgid: Vec<i32>,
    /// NSsid: session in each pid namespace.
    pub ns_sid: Vec<i32>,
    /// Kthread: the task is a kernel thread (Linux 6.9+).
    pub kthread: Option<bool>,
    /// The Vm*/Rss* block, absent for tasks without an mm.
    pub vm: Option<VmUsage>,
    /// Threads.
    pub threads: u64,
    /// SigQ: (queued signals, RLIMIT_SIGPENDING).
    pub sig_queued: (u64, u64),
    /// SigPnd: thread-pending signals.
    pub sig_pnd: u64,
    /// ShdPnd: process-shared pending signals.
    pub shd_pnd: u64,
    /// SigBlk: blocked signals.
    pub sig_blk: u64,
    /// SigIgn: ignored signals.
    pub sig_ign: u64,
    /// SigCgt: caught signals.
    pub sig_cgt: u64,
    /// CapInh.
    pub cap_inh: u64,
    /// CapPrm.
    pub cap_prm: u64,
    /// CapEff.
    pub cap_eff: u64,
    /// CapBnd.
    pub cap_bnd: u64,
    /// CapAmb.
    pub cap_amb: u64,
    /// NoNewPrivs.
    pub no_new_privs: Option<bool>,
    /// Seccomp mode: 0 off, 1 strict, 2 filter.
    pub seccomp: Option<u32>,
    /// Seccomp_filters: number of attached filters.
    pub seccomp_filters: Option<u32>,
    /// Speculation_Store_Bypass, as text ("thread vulnerable", ...).
    pub speculation_store_bypass: Option<String>,
    /// Cpus_allowed_list, expanded.
    pub cpus_allowed: Option<Vec<u32>>,
    /// Mems_allowed_list, expanded.
    pub mems_allowed: Option<Vec<u32>>,
    /// voluntary_ctxt_switches.
    pub voluntary_ctxt_switches: Option<u64>,
    /// nonvoluntary_ctxt_switches.
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// Every other key, value trimmed.
    pub other: BTreeMap<String, String>,
}

fn ids<T: std::str::FromStr>(key: &str, v: &str) -> Result<Vec<T>> {
    v.split_ascii_whitespace()
        .map(|x| x.parse::<T>().map_err(|_| ProcError::malformed(FILE, format!("field {key}: bad id {x:?}"))))
        .collect()
}

fn four_ids(key: &str, v: &str) -> Result<[u32; 4]> {
    let l: Vec<u32> = ids(key, v)?;
    <[u32; 4]>::try_from(l).map_err(|_| ProcError::malformed(FILE, format!("field {key}: want 4 ids, got {v:?}")))
}

fn kb(key: &str, v: &str) -> Result<u64> {
    let n = v.strip_suffix("kB").map(str::trim_end).unwrap_or(v);
    num::dec_u64(FILE, key, n)
}

fn flag(key: &str, v: &str) -> Result<bool> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(ProcError::malformed(FILE, format!("field {key}: want 0 or 1, got {v:?}"))),
    }
}

/// Parses the content of a `status` file.
pub fn parse(text: &str) -> Result<Status> {
    let mut name = None;
    let mut umask = None;
    let mut state = None;
    let mut tgid = None;
    let mut ngid = None;
    let mut pid = None;
    let mut ppid = None;
    let mut tracer_pid = None;
    let mut uid = None;
    let mut gid = None;
    let mut fd_size = None;
    let mut groups = Vec::new();
    let (mut ns_tgid, mut ns_pid, mut ns_pgid, mut ns_sid) = (vec![], vec![], vec![], vec![]);
    let mut kthread = None;
    let mut vm: Option<VmUsage> = None;
    let mut threads = None;
    let mut sig_queued = None;
    let mut sigs: [Option<u64>; 5] = [None; 5];
    let mut caps: [Option<u64>; 5] = [None; 5];
    let mut no_new_privs = None;
    let mut seccomp = None;
    let mut seccomp_filters = None;
    let mut ssb = None;
    let mut cpus_allowed = None;
    let mut mems_allowed = None;
    let mut vcs = None;
    let mut nvcs = None;
    let mut other = BTreeMap::new();

    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        if line.is_empty() {
            continue;
        }
        let (key, raw) =
            line.split_once(':').ok_or_else(|| ProcError::malformed(FILE, "line without ':'").at_line(lineno))?;
        let v = raw.trim();
        let r: Result<()> = (|| {
            match key {
                // Name is the one value whose inner whitespace matters; the
                // kernel prints exactly one tab before it.
                "Name" => name = Some(raw.strip_prefix('\t').unwrap_or(raw).to_string()),
                "Umask" => umask = Some(num::oct_u32(FILE, key, v)?),
                "State" => {
                    let mut c = v.chars();
                    let s = c.next().ok_or_else(|| ProcError::malformed(FILE, "field State: empty"))?;
                    if !matches!(c.next(), None | Some(' ')) {
                        return Err(ProcError::malformed(FILE, format!("field State: bad {v:?}")));
                    }
                    state = Some(TaskState::from_char(s));
                }
                "Tgid" => tgid = Some(num::dec_i32(FILE, key, v)?),
                "Ngid" => ngid = Some(num::dec_i32(FILE, key, v)?),
                "Pid" => pid = Some(num::dec_i32(FILE, key, v)?),
                "PPid" => ppid = Some(num::dec_i32(FILE, key, v)?),
                "TracerPid" => tracer_pid = Some(num::dec_i32(FILE, key, v)?),
                "Uid" => uid = Some(four_ids(key, v)?),
                "Gid" => gid = Some(four_ids(key, v)?),
                "FDSize" => fd_size = Some(num::dec_u64(FILE, key, v)?),
                "Groups" => groups = ids(key, v)?,
                "NStgid" => ns_tgid = ids(key, v)?,
                "NSpid" => ns_pid = ids(key, v)?,
                "NSpgid" => ns_pgid = ids(key, v)?,
                "NSsid" => ns_sid = ids(key, v)?,
                "Kthread" => kthread = Some(flag(key, v)?),
                "VmPeak" | "VmSize" | "VmLck" | "VmPin" | "VmHWM" | "VmRSS" | "RssAnon" | "RssFile" | "RssShmem"
                | "VmData" | "VmStk" | "VmExe" | "VmLib" | "VmPTE" | "VmSwap" | "HugetlbPages" => {
                    let n = kb(key, v)?;
                    let u = vm.get_or_insert_with(VmUsage::default);
                    let slot = match key {
                        "VmPeak" => &mut u.peak,
                        "VmSize" => &mut u.size,
                        "VmLck" => &mut u.lck,
                        "VmPin" => &mut u.pin,
                        "VmHWM" => &mut u.hwm,
                        "VmRSS" => &mut u.rss,
                        "RssAnon" => &mut u.rss_anon,
                        "RssFile" => &mut u.rss_file,
                        "RssShmem" => &mut u.rss_shmem,
                        "VmData" => &mut u.data,
                        "VmStk" => &mut u.stk,
                        "VmExe" => &mut u.exe,
                        "VmLib" => &mut u.lib,
                        "VmPTE" => &mut u.pte,
                        "VmSwap" => &mut u.swap,
                        _ => &mut u.hugetlb,
                    };
                    *slot = n;
                }
                "Threads" => threads = Some(num::dec_u64(FILE, key, v)?),
                "SigQ" => {
                    let (a, b) = v
                        .split_once('/')
                        .ok_or_else(|| ProcError::malformed(FILE, format!("field SigQ: want n/limit, got {v:?}")))?;
                    sig_queued = Some((num::dec_u64(FILE, key, a)?, num::dec_u64(FILE, key, b)?));
                }
                "SigPnd" | "ShdPnd" | "SigBlk" | "SigIgn" | "SigCgt" => {
                    let i =
                        ["SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"].iter().position(|k| *k == key).unwrap_or(0);
                    sigs[i] = Some(num::hex_u64(FILE, key, v)?);
                }
                "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => {
                    let i =
                        ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"].iter().position(|k| *k == key).unwrap_or(0);
                    caps[i] = Some(num::hex_u64(FILE, key, v)?);
                }
                "NoNewPrivs" => no_new_privs = Some(flag(key, v)?),
                "Seccomp" => seccomp = Some(num::dec_u32(FILE, key, v)?),
                "Seccomp_filters" => seccomp_filters = Some(num::dec_u32(FILE, key, v)?),
                "Speculation_Store_Bypass" => ssb = Some(v.to_string()),
                "Cpus_allowed_list" => {
                    cpus_allowed = Some(
                        parse_id_list(v)
                            .map_err(|w| ProcError::malformed(FILE, format!("field Cpus_allowed_list: {w}")))?,
                    )
                }
                "Mems_allowed_list" => {
                    mems_allowed = Some(
                        parse_id_list(v)
                            .map_err(|w| ProcError::malformed(FILE, format!("field Mems_allowed_list: {w}")))?,
                    )
                }
                "voluntary_ctxt_switches" => vcs = Some(num::dec_u64(FILE, key, v)?),
                "nonvoluntary_ctxt_switches" => nvcs = Some(num::dec_u64(FILE, key, v)?),
                _ => {
                    other.insert(key.to_string(), v.to_string());
                }
            }
            Ok(())
        })();
        r.map_err(|e| e.at_line(lineno))?;
    }

    fn need<T>(v: Option<T>, key: &str) -> Result<T> {
        v.ok_or_else(|| ProcError::malformed(FILE, format!("missing key {key}")))
    }
    let [sig_pnd, shd_pnd, sig_blk, sig_ign, sig_cgt] = sigs;
    let [cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb] = caps;
    Ok(Status {
        name: need(name, "Name")?,
        umask,
        state: need(state, "State")?,
        tgid: need(tgid, "Tgid")?,
        ngid,
        pid: need(pid, "Pid")?,
        ppid: need(ppid, "PPid")?,
        tracer_pid: need(tracer_pid, "TracerPid")?,
        uid: need(uid, "Uid")?,
        gid: need(gid, "Gid")?,
        fd_size,
        groups,
        ns_tgid,
        ns_pid,
        ns_pgid,
        ns_sid,
        kthread,
        vm,
        threads: need(threads, "Threads")?,
        sig_queued: need(sig_queued, "SigQ")?,
        sig_pnd: need(sig_pnd, "SigPnd")?,
        shd_pnd: need(shd_pnd, "ShdPnd")?,
        sig_blk: need(sig_blk, "SigBlk")?,
        sig_ign: need(sig_ign, "SigIgn")?,
        sig_cgt: need(sig_cgt, "SigCgt")?,
        cap_inh: need(cap_inh, "CapInh")?,
        cap_prm: need(cap_prm, "CapPrm")?,
        cap_eff: need(cap_eff, "CapEff")?,
        cap_bnd: need(cap_bnd, "CapBnd")?,
        cap_amb: need(cap_amb, "CapAmb")?,
        no_new_privs,
        seccomp,
        seccomp_filters,
        speculation_store_bypass: ssb,
        cpus_allowed,
        mems_allowed,
        voluntary_ctxt_switches: vcs,
        nonvoluntary_ctxt_switches: nvcs,
        other,
    })
}

/// Reads `/proc/<pid>/status`.
pub fn read(pid: Pid) -> Result<Status> {
    let text = super::read_text(pid, FILE)?;
    parse(&text).map_err(|e| e.with_pid(pid))
}

/// Reads `/proc/<pid>/task/<tid>/status` (one thread's view: SigPnd, SigBlk
/// and the capability sets are per thread).
pub fn read_thread(pid: Pid, tid: Pid) -> Result<Status> {
    let file = format!("task/{}/status", tid.raw());
    let text = super::read_text(pid, &file)?;
    parse(&text).map_err(|e| {
        let mut e = e.with_pid(pid);
        e.file = file;
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VICTIM: &str = include_str!("testdata/victim.status");
    const SLEEP: &str = include_str!("testdata/sleep.status");

    #[test]
    fn captured_victim() {
        let s = parse(VICTIM).unwrap();
        assert_eq!(s.name, "a) b (c");
        assert_eq!(s.umask, Some(0o022));
        assert_eq!(s.state, TaskState::Sleeping);
        assert_eq!(s.pid, s.tgid);
        assert_eq!(s.ppid, 1);
        assert_eq!(s.ngid, Some(0));
        assert_eq!(s.uid, [0; 4]);
        assert_eq!(s.fd_size, Some(256));
        assert!(s.groups.is_empty());
        assert_eq!(s.ns_pid, vec![s.pid]);
        assert_eq!(s.ns_tgid, vec![s.pid]);
        assert_eq!(s.ns_pgid.len(), 1);
        assert_eq!(s.ns_sid.len(), 1);
        assert_eq!(s.kthread, Some(false));
        let vm = s.vm.unwrap();
        assert_eq!(vm.size, 10708);
        assert_eq!(vm.stk, 132);
        assert_eq!(vm.rss_shmem, 16);
        assert_eq!(s.threads, 2);
        assert_eq!(s.sig_queued, (3, 96549));
        assert_eq!(s.sig_ign, 0x807);
        assert_eq!(s.sig_cgt, 0x1_0000_0000);
        assert_eq!(s.cap_eff, 0x1fffeffffff);
        assert_eq!(s.cap_amb, 0);
        assert_eq!(s.no_new_privs, Some(false));
        assert_eq!(s.seccomp, Some(0));
        assert_eq!(s.seccomp_filters, Some(0));
        assert_eq!(s.speculation_store_bypass.as_deref(), Some("thread vulnerable"));
        assert_eq!(s.cpus_allowed, Some(vec![0, 1]));
        assert_eq!(s.mems_allowed, Some(vec![0]));
        assert_eq!(s.voluntary_ctxt_switches, Some(1));
        assert_eq!(s.nonvoluntary_ctxt_switches, Some(0));
        assert_eq!(s.other.get("THP_enabled").map(String::as_str), Some("1"));
        assert_eq!(s.other.get("SpeculationIndirectBranch").map(String::as_str), Some("conditional enabled"));
        assert!(s.other.contains_key("Mems_allowed"));
    }

    #[test]
    fn captured_sleep() {
        let s = parse(SLEEP).unwrap();
        assert_eq!(s.name, "sleep");
        assert_eq!(s.threads, 1);
    }

    #[test]
    fn zombie_nested_ns_groups() {
        // A zombie has no Umask and no Vm block; the task lives two pid
        // namespaces deep and has supplementary groups.
        let z = "Name:\tdefunct one\nState:\tZ (zombie)\nTgid:\t300\nNgid:\t0\nPid:\t300\nPPid:\t299\n\
TracerPid:\t0\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nFDSize:\t0\n\
Groups:\t4 24 27 \nNStgid:\t300\t1\nNSpid:\t300\t1\nNSpgid:\t300\t1\nNSsid:\t12\t0\n\
Threads:\t1\nSigQ:\t0/3000\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n\
CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n\
Seccomp_filters:\t3\nFutureKey:\tsomething new\n";
        let s = parse(z).unwrap();
        assert_eq!(s.name, "defunct one");
        assert_eq!(s.state, TaskState::Zombie);
        assert_eq!(s.umask, None);
        assert_eq!(s.vm, None);
        assert_eq!(s.groups, vec![4, 24, 27]);
        assert_eq!(s.ns_pid, vec![300, 1]);
        assert_eq!(s.ns_sid, vec![12, 0]);
        assert_eq!(s.uid, [1000; 4]);
        assert_eq!(s.no_new_privs, Some(true));
        assert_eq!(s.seccomp, Some(2));
        assert_eq!(s.seccomp_filters, Some(3));
        assert_eq!(s.cpus_allowed, None);
        assert_eq!(s.other.get("FutureKey").map(String::as_str), Some("something new"));
    }

    #[test]
    fn malformed_is_error() {
        let cases = [
            String::new(),
            "garbage".to_string(),
            VICTIM.replace("Uid:\t0\t0\t0\t0", "Uid:\t0\t0\t0"),
            VICTIM.replace("SigBlk:\t0000000000000000", "SigBlk:\tzz"),
            VICTIM.replace("SigQ:\t3/96549", "SigQ:\t3"),
            VICTIM.replace("CapEff:\t000001fffeffffff", "CapEff:\t1000001fffeffffff"),
            VICTIM.replace("Cpus_allowed_list:\t0-1", "Cpus_allowed_list:\t1-0"),
            VICTIM.replace("VmStk:\t     132 kB", "VmStk:\t     x kB"),
            VICTIM.replace("NoNewPrivs:\t0", "NoNewPrivs:\t2"),
            VICTIM.replace("State:\tS (sleeping)", "State:\tSS"),
            VICTIM.replace("Umask:\t0022", "Umask:\t0089"),
            VICTIM.replace("Tgid:", "Tgid"),
        ];
        for c in &cases {
            assert!(parse(c).is_err(), "{c}");
        }
        let e = parse(&VICTIM.replace("Pid:\t5478\n", "Pid:\tfive\n")).unwrap_err();
        assert_eq!(e.line(), Some(6));
        for cut in 0..VICTIM.find("CapAmb").unwrap() {
            assert!(parse(&VICTIM[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        let s = read(me).unwrap();
        assert_eq!(s.pid, me.raw());
        assert_eq!(s.tgid, me.raw());
        assert!(s.vm.is_some());
        assert_eq!(read_thread(me, me).unwrap().pid, me.raw());
    }
}
