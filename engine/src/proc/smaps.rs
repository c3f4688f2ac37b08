//! `/proc/<pid>/smaps` and `/proc/<pid>/smaps_rollup`, see proc_pid_smaps(5).
//!
//! Format (`show_smap()` in fs/proc/task_mmu.c): per VMA, the `maps` line
//! ([`super::maps`]) followed by `Key:   value kB` lines (Size,
//! KernelPageSize, MMUPageSize, Rss, Pss, Pss_Dirty, Shared_Clean,
//! Shared_Dirty, Private_Clean, Private_Dirty, Referenced, Anonymous, KSM,
//! LazyFree, AnonHugePages, ShmemPmdMapped, FilePmdMapped, Shared_Hugetlb,
//! Private_Hugetlb, Swap, SwapPss, Locked), unit-less ones (THPeligible,
//! ProtectionKey) and last `VmFlags: rd wr mr ...` (two-letter mnemonics of
//! `show_smap_vma_flags()`). `smaps_rollup` is one header line ending in
//! `[rollup]` and the summed keys (plus Pss_Anon, Pss_File, Pss_Shmem).
//!
//! # Invariants
//! - A line whose first word ends in `':'` is a field, any other line is a
//!   map line starting a new block; a field before the first block is an
//!   error.
//! - Numeric values are kept as printed: kB for the `kB` lines, plain
//!   numbers otherwise. Non-numeric values (future keys) go to
//!   [`SmapsEntry::text_fields`].
//! - [`VmFlags`] bits are this crate's own numbering, not the kernel's
//!   `VM_*` bits (those vary with config and version); unknown mnemonics are
//!   kept in [`SmapsEntry::unknown_vm_flags`].

use std::collections::BTreeMap;

use bitflags::bitflags;

use super::maps::{self, MapEntry};
use super::{ProcError, Result};
use crate::sys::Pid;

const FILE: &str = "smaps";
const ROLLUP: &str = "smaps_rollup";

macro_rules! vm_flags {
    ($( $(#[doc = $doc:tt])* $name:ident = $bit:expr, $mn:literal, $acc:ident; )*) => {
        bitflags! {
            /// The `VmFlags:` set of an smaps block.
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
            pub struct VmFlags: u64 {
                $( $(#[doc = $doc])* const $name = 1 << $bit; )*
            }
        }

        impl VmFlags {
            /// Mnemonic table, in kernel print order.
            pub const MNEMONICS: &'static [(&'static str, VmFlags)] = &[
                $( ($mn, VmFlags::$name), )*
            ];
            $(
                $(#[doc = $doc])*
                pub fn $acc(self) -> bool {
                    self.contains(VmFlags::$name)
                }
            )*
        }
    };
}

vm_flags! {
    /// `rd`: readable.
    RD = 0, "rd", rd;
    /// `wr`: writable.
    WR = 1, "wr", wr;
    /// `ex`: executable.
    EX = 2, "ex", ex;
    /// `sh`: shared.
    SH = 3, "sh", sh;
    /// `mr`: may read.
    MR = 4, "mr", mr;
    /// `mw`: may write.
    MW = 5, "mw", mw;
    /// `me`: may execute.
    ME = 6, "me", me;
    /// `ms`: may share.
    MS = 7, "ms", ms;
    /// `gd`: stack segment grows down.
    GD = 8, "gd", gd;
    /// `pf`: pure PFN range.
    PF = 9, "pf", pf;
    /// `dw`: disabled write to the mapped file (kernels before 5.14).
    DW = 10, "dw", dw;
    /// `lo`: pages are locked in memory.
    LO = 11, "lo", lo;
    /// `io`: memory-mapped I/O area.
    IO = 12, "io", io;
    /// `sr`: sequential read advise.
    SR = 13, "sr", sr;
    /// `rr`: random read advise.
    RR = 14, "rr", rr;
    /// `dc`: do not copy area on fork.
    DC = 15, "dc", dc;
    /// `de`: do not expand area on remapping.
    DE = 16, "de", de;
    /// `ac`: area is accountable.
    AC = 17, "ac", ac;
    /// `nr`: swap space is not reserved.
    NR = 18, "nr", nr;
    /// `ht`: area uses huge TLB pages.
    HT = 19, "ht", ht;
    /// `sf`: synchronous page fault.
    SF = 20, "sf", sf;
    /// `ar`: architecture specific flag.
    AR = 21, "ar", ar;
    /// `wf`: wipe on fork.
    WF = 22, "wf", wf;
    /// `dd`: do not include area into core dump.
    DD = 23, "dd", dd;
    /// `sd`: soft-dirty flag.
    SD = 24, "sd", sd;
    /// `mm`: mixed map area.
    MM = 25, "mm", mm;
    /// `hg`: huge page advise.
    HG = 26, "hg", hg;
    /// `nh`: no-huge page advise.
    NH = 27, "nh", nh;
    /// `mg`: mergeable advise (KSM).
    MG = 28, "mg", mg;
    /// `um`: userfaultfd missing tracking.
    UM = 29, "um", um;
    /// `uw`: userfaultfd wr-protect tracking.
    UW = 30, "uw", uw;
    /// `ss`: shadow stack page.
    SS = 31, "ss", ss;
    /// `sl`: sealed (mseal).
    SL = 32, "sl", sl;
    /// `lf`: lock on fault pages.
    LF = 33, "lf", lf;
    /// `ui`: userfaultfd minor fault.
    UI = 34, "ui", ui;
    /// `dp`: droppable (MAP_DROPPABLE).
    DP = 35, "dp", dp;
    /// `bt`: arm64 BTI guarded page.
    BT = 36, "bt", bt;
    /// `mt`: arm64 MTE allocation tags enabled.
    MT = 37, "mt", mt;
    /// `nl`: non-linear mapping (removed in 4.0).
    NL = 38, "nl", nl;
    /// `mp`: MPX-specific VMA (removed in 5.6).
    MP = 39, "mp", mp;
    /// `gu`: guard regions may be installed here (VM_MAYBE_GUARD): set on a
    /// VMA given guards, kept through merges and splits.
    GU = 40, "gu", gu;
}

impl VmFlags {
    /// The flag of a mnemonic.
    pub fn from_mnemonic(m: &str) -> Option<VmFlags> {
        Self::MNEMONICS.iter().find(|(n, _)| *n == m).map(|(_, f)| *f)
    }

    /// Parses the value of a `VmFlags:` line; returns the set and the
    /// mnemonics it did not know.
    pub fn parse(v: &str) -> (VmFlags, Vec<String>) {
        let mut set = VmFlags::empty();
        let mut unknown = Vec::new();
        for m in v.split_ascii_whitespace() {
            match Self::from_mnemonic(m) {
                Some(f) => set |= f,
                None => unknown.push(m.to_string()),
            }
        }
        (set, unknown)
    }
}

/// One VMA of `smaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmapsEntry {
    /// The map line.
    pub map: MapEntry,
    /// Numeric fields as printed (kB for `kB` lines).
    pub fields: BTreeMap<String, u64>,
    /// Fields whose value is not a number.
    pub text_fields: BTreeMap<String, String>,
    /// The `VmFlags:` line (empty if absent).
    pub vm_flags: VmFlags,
    /// Mnemonics of `VmFlags:` this crate does not know.
    pub unknown_vm_flags: Vec<String>,
}

impl SmapsEntry {
    /// A numeric field by key.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.fields.get(key).copied()
    }
    /// `Rss:` in kB.
    pub fn rss_kb(&self) -> Option<u64> {
        self.get("Rss")
    }
    /// `Swap:` in kB.
    pub fn swap_kb(&self) -> Option<u64> {
        self.get("Swap")
    }
    /// `Anonymous:` in kB.
    pub fn anonymous_kb(&self) -> Option<u64> {
        self.get("Anonymous")
    }
    /// `KernelPageSize:` in kB (4 unless hugetlb).
    pub fn kernel_page_size_kb(&self) -> Option<u64> {
        self.get("KernelPageSize")
    }
}

/// The summed `smaps_rollup` of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmapsRollup {
    /// Lowest mapped address.
    pub start: u64,
    /// End of the highest mapping.
    pub end: u64,
    /// Numeric fields as printed (kB).
    pub fields: BTreeMap<String, u64>,
}

impl SmapsRollup {
    /// A numeric field by key.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.fields.get(key).copied()
    }
}

enum Value {
    Num(u64),
    Text(String),
}

/// Splits a field line: `Some((key, value))` if the first word ends in ':'.
fn field_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let first_end = line.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(line.len());
    let first = &line[..first_end];
    let key = first.strip_suffix(b":")?;
    Some((key, &line[first_end..]))
}

fn value(v: &str) -> Value {
    let t = v.trim();
    let n = t.strip_suffix("kB").map(str::trim_end).unwrap_or(t);
    match n.parse::<u64>() {
        Ok(x) if !n.starts_with('+') => Value::Num(x),
        _ => Value::Text(t.to_string()),
    }
}

fn text(b: &[u8], file: &str) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| ProcError::malformed(file, "field line is not UTF-8"))
}

/// Parses a whole `smaps` file.
pub fn parse(bytes: &[u8]) -> Result<Vec<SmapsEntry>> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    for (i, line) in maps::lines(bytes).enumerate() {
        let at = |e: ProcError| {
            let mut e = e.at_line(i + 1);
            e.file = FILE.to_string();
            e
        };
        match field_line(line) {
            Some((key, v)) => {
                let key = text(key, FILE).map_err(at)?;
                let v = text(v, FILE).map_err(at)?;
                let cur = out
                    .last_mut()
                    .ok_or_else(|| at(ProcError::malformed(FILE, format!("field {key} before any map line"))))?;
                if key == "VmFlags" {
                    let (set, unknown) = VmFlags::parse(&v);
                    cur.vm_flags = set;
                    cur.unknown_vm_flags = unknown;
                } else {
                    match value(&v) {
                        Value::Num(n) => {
                            cur.fields.insert(key, n);
                        }
                        Value::Text(t) => {
                            cur.text_fields.insert(key, t);
                        }
                    }
                }
            }
            None => {
                let map = maps::parse_line(line).map_err(at)?;
                maps::check_order(out.last().map(|e| &e.map), &map).map_err(at)?;
                out.push(SmapsEntry {
                    map,
                    fields: BTreeMap::new(),
                    text_fields: BTreeMap::new(),
                    vm_flags: VmFlags::empty(),
                    unknown_vm_flags: Vec::new(),
                });
            }
        }
    }
    Ok(out)
}

/// Parses `smaps_rollup`.
pub fn parse_rollup(bytes: &[u8]) -> Result<SmapsRollup> {
    let mut it = maps::lines(bytes).enumerate();
    let rename = |e: ProcError, line: usize| {
        let mut e = e.at_line(line);
        e.file = ROLLUP.to_string();
        e
    };
    let (_, head) = it.next().ok_or_else(|| ProcError::malformed(ROLLUP, "empty"))?;
    let m = maps::parse_line(head).map_err(|e| rename(e, 1))?;
    if m.path.as_os_str() != "[rollup]" {
        return Err(ProcError::malformed(ROLLUP, "header is not a [rollup] line").at_line(1));
    }
    let mut fields = BTreeMap::new();
    for (i, line) in it {
        let (k, v) =
            field_line(line).ok_or_else(|| ProcError::malformed(ROLLUP, "not a 'Key: value' line").at_line(i + 1))?;
        let k = text(k, ROLLUP).map_err(|e| e.at_line(i + 1))?;
        let v = text(v, ROLLUP).map_err(|e| e.at_line(i + 1))?;
        match value(&v) {
            Value::Num(n) => fields.insert(k, n),
            Value::Text(_) => {
                return Err(ProcError::malformed(ROLLUP, format!("field {k}: not a number")).at_line(i + 1))
            }
        };
    }
    Ok(SmapsRollup { start: m.start, end: m.end, fields })
}

/// Reads `/proc/<pid>/smaps`.
pub fn read(pid: Pid) -> Result<Vec<SmapsEntry>> {
    let bytes = super::read_bytes(pid, FILE)?;
    parse(&bytes).map_err(|e| e.with_pid(pid))
}

/// Reads `/proc/<pid>/smaps_rollup`.
pub fn read_rollup(pid: Pid) -> Result<SmapsRollup> {
    let bytes = super::read_bytes(pid, ROLLUP)?;
    parse_rollup(&bytes).map_err(|e| e.with_pid(pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::maps::MapKind;

    const VICTIM: &[u8] = include_bytes!("testdata/victim.smaps");
    const VICTIM_MAPS: &[u8] = include_bytes!("testdata/victim.maps");
    const SLEEP: &[u8] = include_bytes!("testdata/sleep.smaps");
    const ROLLUP_SAMPLE: &[u8] = include_bytes!("testdata/victim.smaps_rollup");
    const HARD: &[u8] = include_bytes!("testdata/hard.smaps");
    /// victim_mem in `mmflags` mode (Linux 6.18): guards, mlock, mlock2
    /// MLOCK_ONFAULT, KSM, THP advice, wipe-on-fork, dont-fork, and a
    /// read-only shared mapping of a file opened read-write.
    const MMFLAGS: &[u8] = include_bytes!("testdata/mmflags.smaps");

    #[test]
    fn captured_victim() {
        let s = parse(VICTIM).unwrap();
        let m = maps::parse(VICTIM_MAPS).unwrap();
        assert_eq!(s.len(), m.len());
        for (a, b) in s.iter().zip(&m) {
            assert_eq!(&a.map, b);
            assert_eq!(a.get("Size"), Some(b.len() / 1024));
            assert!(a.vm_flags.mr() || a.map.is_vsyscall(), "{:?}", a.map);
            assert_eq!(a.vm_flags.rd(), a.map.perms.read());
            assert_eq!(a.vm_flags.wr(), a.map.perms.write());
            assert_eq!(a.vm_flags.sh(), a.map.perms.shared());
            assert!(a.unknown_vm_flags.is_empty(), "{:?}", a.unknown_vm_flags);
        }
        let stack = s.iter().find(|e| e.map.kind == MapKind::Stack).unwrap();
        assert!(stack.vm_flags.gd() && stack.vm_flags.ac());
        assert_eq!(stack.kernel_page_size_kb(), Some(4));
        assert_eq!(stack.get("THPeligible"), Some(0));
        let vdso = s.iter().find(|e| e.map.kind == MapKind::Vdso).unwrap();
        assert!(vdso.vm_flags.de() && vdso.vm_flags.ex());
        let vvar = s.iter().find(|e| e.map.kind == MapKind::Vvar).unwrap();
        assert!(vvar.vm_flags.pf() || vvar.vm_flags.io() || vvar.vm_flags.mm());
        let shm = s.iter().find(|e| matches!(e.map.kind, MapKind::SysvShm { .. })).unwrap();
        assert!(shm.vm_flags.sh() && shm.vm_flags.ms());
        assert!(shm.rss_kb().unwrap() >= 4);
    }

    #[test]
    fn captured_sleep() {
        let s = parse(SLEEP).unwrap();
        assert!(s.iter().any(|e| e.map.kind == MapKind::Heap || e.map.kind == MapKind::Stack));
        assert!(s.iter().all(|e| e.swap_kb().is_some() && e.anonymous_kb().is_some()));
    }

    #[test]
    fn captured_mmflags() {
        let s = parse(MMFLAGS).unwrap();
        assert_eq!(s.len(), 25);
        assert!(s.iter().all(|e| e.unknown_vm_flags.is_empty()), "every mnemonic is known");
        let with = |f: VmFlags| s.iter().filter(|e| e.vm_flags.contains(f)).count();
        assert_eq!(with(VmFlags::LO), 2);
        assert_eq!(with(VmFlags::LF), 1);
        assert!(s[2].vm_flags.contains(VmFlags::LO | VmFlags::LF));
        assert_eq!(with(VmFlags::GU), 2);
        assert!(s[13].vm_flags.contains(VmFlags::GU | VmFlags::WF));
        assert_eq!((with(VmFlags::DC), with(VmFlags::MG), with(VmFlags::HG)), (1, 1, 1));
        let file = &s[17];
        assert_eq!(file.map.path, std::path::PathBuf::from("/tmp/crtools-sample/maywrite.dat"));
        assert!(file.vm_flags.contains(VmFlags::SH | VmFlags::MW) && !file.vm_flags.contains(VmFlags::WR));
    }

    #[test]
    fn hand_made_flags() {
        let s = parse(HARD).unwrap();
        assert_eq!(s.len(), 2);
        let a = &s[0];
        for (m, f) in VmFlags::MNEMONICS {
            if ["nl", "mp", "bt", "mt", "dp", "lf", "ui", "gu"].contains(m) {
                continue;
            }
            assert!(a.vm_flags.contains(*f), "{m}");
        }
        assert_eq!(a.unknown_vm_flags, vec!["zz".to_string()]);
        assert!(a.vm_flags.rd() && a.vm_flags.sl() && a.vm_flags.ss() && a.vm_flags.uw());
        assert!(!a.vm_flags.lf());
        assert_eq!(a.text_fields.get("FutureText").map(String::as_str), Some("hello world"));
        assert_eq!(a.get("ProtectionKey"), Some(0));
        assert_eq!(s[1].map.kind, MapKind::AnonNamed(b"my name".to_vec()));
        assert_eq!(s[1].vm_flags, VmFlags::RD | VmFlags::WR | VmFlags::MR | VmFlags::MW | VmFlags::ME | VmFlags::AC);
        assert_eq!(VmFlags::from_mnemonic("hg"), Some(VmFlags::HG));
        assert_eq!(VmFlags::from_mnemonic("??"), None);
    }

    #[test]
    fn rollup() {
        let r = parse_rollup(ROLLUP_SAMPLE).unwrap();
        assert_eq!(r.start, 0x555953c2e000);
        assert_eq!(r.end, 0x7ffd66a23000);
        assert_eq!(r.get("Rss"), Some(1664));
        assert_eq!(r.get("Pss_Shmem"), Some(16));
        assert!(parse_rollup(b"").is_err());
        assert!(parse_rollup(b"1000-2000 ---p 00000000 00:00 0 [heap]\n").is_err());
        assert!(parse_rollup(b"1000-2000 ---p 00000000 00:00 0 [rollup]\nRss: x kB\n").is_err());
        assert!(parse_rollup(b"1000-2000 ---p 00000000 00:00 0 [rollup]\nRss 4 kB\n").is_err());
    }

    #[test]
    fn malformed_is_error() {
        assert!(parse(b"Rss: 4 kB\n").is_err());
        assert!(parse(b"1000-2000 r--p 00000000 08:01 5 /x\nRss: 4 kB\nbroken line\n").is_err());
        let e = parse(b"1000-2000 r--p 00000000 08:01 5 /x\nRss: 4 kB\n1000-3000 r--p 0 0:0 0\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("/smaps:"), "{e}");
        assert!(parse(b"1000-2000 r--p 00000000 08:01 5 /x\n\xff: 1\n").is_err());
        for cut in 0..200 {
            // Truncation inside the first block either parses (cut at a line
            // boundary) or errors; it never panics.
            let _ = parse(&VICTIM[..cut]);
        }
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        let s = read(me).unwrap();
        let stack = s.iter().find(|e| e.map.kind == MapKind::Stack).unwrap();
        assert!(stack.vm_flags.gd());
        let r = read_rollup(me).unwrap();
        assert!(r.get("Rss").unwrap() > 0);
    }
}
