//! `/proc/<pid>/maps`, see proc_pid_maps(5).
//!
//! Line format (`show_map_vma()` in fs/proc/task_mmu.c):
//! `start-end perms offset major:minor inode<pad>path`, with start, end and
//! offset in hex, major:minor in hex, inode in decimal, then spaces up to a
//! column and the path (nothing for anonymous memory).
//!
//! # Invariants
//! - Parsed from raw bytes: a path is kept byte for byte ([`PathBuf`] built
//!   from the bytes, not necessarily UTF-8). The kernel escapes `\n` in
//!   paths as `\012` and nothing else, so such a path is kept escaped.
//! - A trailing `" (deleted)"` is stripped from the path and recorded in
//!   [`MapEntry::deleted`].
//! - `start < end`, both page aligned (checked).
//! - [`MapKind`] classifies the path: kernel pseudo-paths (`[heap]`,
//!   `[stack]`, `[vdso]`, `[vvar]`, `[vvar_vclock]`, `[vsyscall]`,
//!   `[uprobes]`), named anonymous memory (`[anon:name]`,
//!   `[anon_shmem:name]`, from `PR_SET_VMA_ANON_NAME`), shared anonymous
//!   memory (`/dev/zero (deleted)` on the shmem device), hugetlb anonymous
//!   memory (`/anon_hugepage (deleted)`), memfd (`/memfd:name (deleted)`),
//!   SysV shm (`/SYSV<key in 8 hex digits> (deleted)`), native AIO rings
//!   (`/[aio] (deleted)`, io_setup(2)), anon inodes (`anon_inode:...`),
//!   anonymous memory (empty path) and plain files.
//!
//! The same line format heads every block of `smaps` ([`super::smaps`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use bitflags::bitflags;

use super::{ProcError, Result, DELETED_SUFFIX};
use crate::sys::Pid;

const FILE: &str = "maps";

/// Page size of the x86_64 kernels we run on.
pub const PAGE_SIZE: u64 = 4096;

bitflags! {
    /// The `rwxp`/`rwxs` column.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MapPerms: u8 {
        /// `r`: PROT_READ.
        const READ = 1;
        /// `w`: PROT_WRITE.
        const WRITE = 2;
        /// `x`: PROT_EXEC.
        const EXEC = 4;
        /// `s` (rather than `p`): a shared mapping (VM_MAYSHARE).
        const SHARED = 8;
    }
}

impl MapPerms {
    /// Parses the four-character perms column.
    pub fn parse(s: &[u8]) -> Option<Self> {
        let [r, w, x, p] = <[u8; 4]>::try_from(s).ok()?;
        let mut out = MapPerms::empty();
        match r {
            b'r' => out |= MapPerms::READ,
            b'-' => {}
            _ => return None,
        }
        match w {
            b'w' => out |= MapPerms::WRITE,
            b'-' => {}
            _ => return None,
        }
        match x {
            b'x' => out |= MapPerms::EXEC,
            b'-' => {}
            _ => return None,
        }
        match p {
            b's' => out |= MapPerms::SHARED,
            b'p' => {}
            _ => return None,
        }
        Some(out)
    }

    /// Readable.
    pub fn read(self) -> bool {
        self.contains(MapPerms::READ)
    }
    /// Writable.
    pub fn write(self) -> bool {
        self.contains(MapPerms::WRITE)
    }
    /// Executable.
    pub fn exec(self) -> bool {
        self.contains(MapPerms::EXEC)
    }
    /// Shared (`s`) rather than private (`p`).
    pub fn shared(self) -> bool {
        self.contains(MapPerms::SHARED)
    }
}

/// What a mapping maps, from its path column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// Empty path: private (or shared, if perms say so) anonymous memory
    /// that nobody named.
    Anonymous,
    /// A file, see [`MapEntry::path`].
    File,
    /// `[heap]`: the brk area.
    Heap,
    /// `[stack]`: the main thread's stack.
    Stack,
    /// `[vdso]`.
    Vdso,
    /// `[vvar]`: vDSO data pages.
    Vvar,
    /// `[vvar_vclock]`: vDSO clock pages (Linux 6.12+ splits them from `[vvar]`).
    VvarVclock,
    /// `[vsyscall]`: the legacy fixed page, not part of the mm proper.
    Vsyscall,
    /// `[uprobes]`: the uprobes XOL area.
    Uprobes,
    /// `[anon:name]`: private anonymous memory named with PR_SET_VMA_ANON_NAME.
    AnonNamed(Vec<u8>),
    /// `[anon_shmem:name]`: shared anonymous memory named with PR_SET_VMA_ANON_NAME.
    AnonShmemNamed(Vec<u8>),
    /// `/dev/zero (deleted)`: MAP_SHARED|MAP_ANONYMOUS memory (shmem file).
    SharedAnon,
    /// `/anon_hugepage (deleted)`: MAP_ANONYMOUS|MAP_HUGETLB memory.
    AnonHugepage,
    /// `/memfd:name (deleted)`: a memfd, with its name (hugetlb memfds too).
    Memfd(Vec<u8>),
    /// `/SYSVkkkkkkkk (deleted)`: SysV shared memory with its key.
    SysvShm {
        /// The IPC key (0 for IPC_PRIVATE).
        key: u32,
    },
    /// `/[aio] (deleted)`: the ring of a native AIO context (io_setup(2));
    /// its start address is the context id the program holds.
    AioRing,
    /// `anon_inode:...`: a mapping of an anonymous inode (perf, dma-buf, ...),
    /// with the text after the colon.
    AnonInode(Vec<u8>),
    /// Some other `[...]` pseudo-path, kept without the brackets.
    OtherPseudo(Vec<u8>),
}

/// One line of `maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Protection and sharing.
    pub perms: MapPerms,
    /// File offset in bytes (for anonymous memory, the page offset the
    /// kernel uses internally: start >> 12 for shared anon, 0 otherwise).
    pub offset: u64,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Inode number (0 for anonymous memory).
    pub inode: u64,
    /// The path column without `" (deleted)"`; empty for anonymous memory.
    /// Pseudo-paths are kept as printed (`[heap]`).
    pub path: PathBuf,
    /// The kernel appended `" (deleted)"`.
    pub deleted: bool,
    /// Classification of the path.
    pub kind: MapKind,
}

impl MapEntry {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never true for a parsed entry (`start < end` is checked).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Number of pages.
    pub fn pages(&self) -> u64 {
        self.len() / PAGE_SIZE
    }

    /// The vDSO and its data pages (`[vdso]`, `[vvar]`, `[vvar_vclock]`):
    /// restore does not copy them but moves the new kernel's ones into place.
    pub fn is_vdso_area(&self) -> bool {
        matches!(self.kind, MapKind::Vdso | MapKind::Vvar | MapKind::VvarVclock)
    }

    /// `[vsyscall]`: outside the mm, never dumped or restored.
    pub fn is_vsyscall(&self) -> bool {
        self.kind == MapKind::Vsyscall
    }

    /// Memory whose pages live in a shared object (shmem, memfd, SysV, a
    /// shared file mapping): dumped once per object, not per task.
    pub fn is_shared(&self) -> bool {
        self.perms.shared()
    }

    /// Anonymous memory of any flavour (named or not, shared or private,
    /// heap and stack included; memfd and SysV shm excluded).
    pub fn is_anonymous(&self) -> bool {
        matches!(
            self.kind,
            MapKind::Anonymous
                | MapKind::Heap
                | MapKind::Stack
                | MapKind::AnonNamed(_)
                | MapKind::AnonShmemNamed(_)
                | MapKind::SharedAnon
                | MapKind::AnonHugepage
        )
    }

    /// True if `addr` lies inside the mapping.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

fn classify(path: &[u8], deleted: bool, dev_major: u32) -> MapKind {
    if path.is_empty() {
        return MapKind::Anonymous;
    }
    if let Some(inner) = path.strip_prefix(b"[").and_then(|p| p.strip_suffix(b"]")) {
        return match inner {
            b"heap" => MapKind::Heap,
            b"stack" => MapKind::Stack,
            b"vdso" => MapKind::Vdso,
            b"vvar" => MapKind::Vvar,
            b"vvar_vclock" => MapKind::VvarVclock,
            b"vsyscall" => MapKind::Vsyscall,
            b"uprobes" => MapKind::Uprobes,
            _ => {
                if let Some(n) = inner.strip_prefix(b"anon:") {
                    MapKind::AnonNamed(n.to_vec())
                } else if let Some(n) = inner.strip_prefix(b"anon_shmem:") {
                    MapKind::AnonShmemNamed(n.to_vec())
                } else {
                    MapKind::OtherPseudo(inner.to_vec())
                }
            }
        };
    }
    if let Some(n) = path.strip_prefix(b"anon_inode:") {
        return MapKind::AnonInode(n.to_vec());
    }
    // Internal shmem/hugetlbfs files are unlinked and live on an
    // unnamed device (major 0); a real /dev/zero or /SYSV... file would not.
    if deleted && dev_major == 0 {
        if path == b"/dev/zero" {
            return MapKind::SharedAnon;
        }
        if path == b"/anon_hugepage" {
            return MapKind::AnonHugepage;
        }
        // fs/aio.c names the ring's file "[aio]" on its internal mount.
        if path == b"/[aio]" {
            return MapKind::AioRing;
        }
        if let Some(n) = path.strip_prefix(b"/memfd:") {
            return MapKind::Memfd(n.to_vec());
        }
        if let Some(k) = path.strip_prefix(b"/SYSV") {
            if k.len() == 8 {
                if let Some(key) = std::str::from_utf8(k).ok().and_then(|s| u32::from_str_radix(s, 16).ok()) {
                    return MapKind::SysvShm { key };
                }
            }
        }
    }
    MapKind::File
}

/// Splits off the next single-space separated field.
fn field<'a>(rest: &mut &'a [u8], name: &str) -> Result<&'a [u8]> {
    let s = *rest;
    if s.is_empty() {
        return Err(ProcError::malformed(FILE, format!("truncated before {name}")));
    }
    match s.iter().position(|&b| b == b' ') {
        Some(i) => {
            *rest = &s[i + 1..];
            Ok(&s[..i])
        }
        None => {
            *rest = &s[s.len()..];
            Ok(s)
        }
    }
}

fn hex(b: &[u8], name: &str) -> Result<u64> {
    let bad = || ProcError::malformed(FILE, format!("bad {name} {:?}", String::from_utf8_lossy(&b[..b.len().min(40)])));
    if b.is_empty() || b.len() > 16 {
        return Err(bad());
    }
    let s = std::str::from_utf8(b).map_err(|_| bad())?;
    if s.starts_with('+') {
        return Err(bad());
    }
    u64::from_str_radix(s, 16).map_err(|_| bad())
}

/// Parses one `maps` line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<MapEntry> {
    let mut rest = line;
    let range = field(&mut rest, "range")?;
    let perms_b = field(&mut rest, "perms")?;
    let offset_b = field(&mut rest, "offset")?;
    let dev_b = field(&mut rest, "device")?;
    let inode_b = field(&mut rest, "inode")?;

    let dash =
        range.iter().position(|&b| b == b'-').ok_or_else(|| ProcError::malformed(FILE, "address range without '-'"))?;
    let start = hex(&range[..dash], "start address")?;
    let end = hex(&range[dash + 1..], "end address")?;
    if start >= end || !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) {
        return Err(ProcError::malformed(FILE, format!("bad range {start:#x}-{end:#x}")));
    }
    let perms = MapPerms::parse(perms_b)
        .ok_or_else(|| ProcError::malformed(FILE, format!("bad perms {:?}", String::from_utf8_lossy(perms_b))))?;
    let offset = hex(offset_b, "offset")?;
    let colon =
        dev_b.iter().position(|&b| b == b':').ok_or_else(|| ProcError::malformed(FILE, "device without ':'"))?;
    let dev_major = u32::try_from(hex(&dev_b[..colon], "device major")?)
        .map_err(|_| ProcError::malformed(FILE, "device major too large"))?;
    let dev_minor = u32::try_from(hex(&dev_b[colon + 1..], "device minor")?)
        .map_err(|_| ProcError::malformed(FILE, "device minor too large"))?;
    let inode =
        std::str::from_utf8(inode_b)
            .ok()
            .filter(|s| !s.starts_with('+'))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ProcError::malformed(FILE, format!("bad inode {:?}", String::from_utf8_lossy(inode_b))))?;

    // The path starts after the padding; kernel paths never begin with a space.
    let start_of_path = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let raw_path = &rest[start_of_path..];
    let (path, deleted) = match raw_path.strip_suffix(DELETED_SUFFIX) {
        Some(p) => (p, true),
        None => (raw_path, false),
    };
    let kind = classify(path, deleted, dev_major);
    Ok(MapEntry {
        start,
        end,
        perms,
        offset,
        dev_major,
        dev_minor,
        inode,
        path: PathBuf::from(OsStr::from_bytes(path)),
        deleted,
        kind,
    })
}

/// Parses a whole `maps` file. Entries must be sorted and not overlap.
pub fn parse(bytes: &[u8]) -> Result<Vec<MapEntry>> {
    let mut out: Vec<MapEntry> = Vec::new();
    for (i, line) in lines(bytes).enumerate() {
        let e = parse_line(line).map_err(|e| e.at_line(i + 1))?;
        check_order(out.last(), &e).map_err(|e| e.at_line(i + 1))?;
        out.push(e);
    }
    Ok(out)
}

pub(crate) fn check_order(prev: Option<&MapEntry>, e: &MapEntry) -> Result<()> {
    match prev {
        Some(p) if p.end > e.start => Err(ProcError::malformed(
            FILE,
            format!("mapping {:#x}-{:#x} overlaps or precedes {:#x}-{:#x}", e.start, e.end, p.start, p.end),
        )),
        _ => Ok(()),
    }
}

/// Non-empty lines of a byte buffer.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// Reads `/proc/<pid>/maps`.
pub fn read(pid: Pid) -> Result<Vec<MapEntry>> {
    let bytes = super::read_bytes(pid, FILE)?;
    parse(&bytes).map_err(|e| e.with_pid(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VICTIM: &[u8] = include_bytes!("testdata/victim.maps");
    const SLEEP: &[u8] = include_bytes!("testdata/sleep.maps");
    const HARD: &[u8] = include_bytes!("testdata/hard.maps");

    fn by_kind<'a>(m: &'a [MapEntry], k: &MapKind) -> Vec<&'a MapEntry> {
        m.iter().filter(|e| &e.kind == k).collect()
    }

    #[test]
    fn captured_victim() {
        let m = parse(VICTIM).unwrap();
        assert_eq!(m.len(), 32);
        let first = &m[0];
        assert_eq!(first.start, 0x555953c2e000);
        assert_eq!(first.end, 0x555953c2f000);
        assert_eq!(first.perms, MapPerms::READ);
        assert_eq!((first.dev_major, first.dev_minor), (0xfe, 0));
        assert_eq!(first.inode, 10010990);
        assert_eq!(first.path, PathBuf::from("/tmp/victim"));
        assert_eq!(first.kind, MapKind::File);
        assert!(m[1].perms.exec() && !m[1].perms.write());
        assert_eq!(by_kind(&m, &MapKind::Heap).len(), 1);
        assert_eq!(by_kind(&m, &MapKind::Stack).len(), 1);
        assert_eq!(by_kind(&m, &MapKind::Vsyscall).len(), 1);
        assert_eq!(m.iter().filter(|e| e.is_vdso_area()).count(), 3);
        assert_eq!(by_kind(&m, &MapKind::VvarVclock).len(), 1);
        assert_eq!(by_kind(&m, &MapKind::SharedAnon).len(), 2);
        assert_eq!(by_kind(&m, &MapKind::SysvShm { key: 0 }).len(), 1);
        let memfd = by_kind(&m, &MapKind::Memfd(b"my memfd".to_vec()));
        assert_eq!(memfd.len(), 1);
        assert!(memfd[0].deleted && memfd[0].perms.shared() && memfd[0].perms.write());
        assert_eq!(memfd[0].path, PathBuf::from("/memfd:my memfd"));
        let del: Vec<_> = m.iter().filter(|e| e.path.as_os_str() == "/tmp/file with spaces").collect();
        assert_eq!(del.len(), 1);
        assert!(del[0].deleted);
        assert_eq!(del[0].kind, MapKind::File);
        assert_eq!(del[0].offset, 0);
        let libc: Vec<_> = m.iter().filter(|e| e.path.ends_with("libc.so.6")).collect();
        assert_eq!(libc.len(), 5);
        assert_eq!(libc[1].offset, 0x26000);
        assert!(by_kind(&m, &MapKind::Anonymous).len() >= 4);
        assert!(m.last().unwrap().is_vsyscall());
    }

    #[test]
    fn captured_sleep() {
        let m = parse(SLEEP).unwrap();
        assert!(m.iter().any(|e| e.kind == MapKind::Stack));
        assert!(m.iter().any(|e| e.kind == MapKind::Vdso));
    }

    #[test]
    fn hand_made_hard_cases() {
        let m = parse(HARD).unwrap();
        let kinds: Vec<MapKind> = m.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                MapKind::File,
                MapKind::File,
                MapKind::AnonNamed(b"my name".to_vec()),
                MapKind::AnonShmemNamed(b"shared one".to_vec()),
                MapKind::AnonNamed(b"".to_vec()),
                MapKind::Memfd(b"with (deleted) inside".to_vec()),
                MapKind::SysvShm { key: 0x12ab },
                MapKind::AnonHugepage,
                MapKind::AioRing,
                MapKind::AnonInode(b"[perf_event]".to_vec()),
                MapKind::File,
                MapKind::File,
                MapKind::Uprobes,
                MapKind::OtherPseudo(b"future".to_vec()),
                MapKind::Vvar,
                MapKind::VvarVclock,
                MapKind::Vdso,
                MapKind::Anonymous,
                MapKind::Stack,
            ]
        );
        assert_eq!(m[0].path, PathBuf::from("/opt/my dir/  two  spaces"));
        assert!(!m[0].deleted);
        assert_eq!(m[1].path, PathBuf::from("/data/f\u{e9}.bin"));
        assert!(m[1].deleted);
        assert_eq!(m[1].offset, 0x7f0000000);
        assert_eq!((m[1].dev_major, m[1].dev_minor), (0x103, 0x1a2b));
        // A file that only looks like memfd/SysV (not deleted, real device) is a file.
        assert_eq!(m[10].path, PathBuf::from("/memfd:not really"));
        assert_eq!(m[11].path, PathBuf::from("/dev/zero"));
        assert!(m[11].deleted);
        assert_eq!((m[8].path.as_os_str(), m[8].deleted, m[8].len()), (std::ffi::OsStr::new("/[aio]"), true, 4096));
        assert_eq!(m[4].path, PathBuf::from("[anon:]"));
        assert!(m[3].is_anonymous() && m[3].is_shared());
        assert!(!m[5].is_anonymous());
        let stack = m.last().unwrap();
        assert!(stack.contains(stack.start) && !stack.contains(stack.end));
        assert_eq!(stack.pages(), 0x21);
    }

    #[test]
    fn non_utf8_path() {
        let e = parse_line(b"1000-2000 r--p 00000000 08:01 5 /a\xffb").unwrap();
        assert_eq!(e.path.as_os_str().as_bytes(), b"/a\xffb");
    }

    #[test]
    fn malformed_is_error() {
        let cases: &[&[u8]] = &[
            b"garbage",
            b"1000-",
            b"1000",
            b"1000-2000",
            b"1000-2000 r--p",
            b"1000-2000 r--p 0",
            b"1000-2000 r--p 0 08:01",
            b"2000-1000 r--p 00000000 08:01 5 /x",
            b"1000-1000 r--p 00000000 08:01 5 /x",
            b"1001-2000 r--p 00000000 08:01 5 /x",
            b"1000-2000 r--x 00000000 08:01 5 /x",
            b"1000-2000 rw-pp 00000000 08:01 5 /x",
            b"1000-2000 r--p 0000000g 08:01 5 /x",
            b"1000-2000 r--p 00000000 0801 5 /x",
            b"1000-2000 r--p 00000000 08:01 -5 /x",
            b"1000-2000 r--p 00000000 08:01 +5 /x",
            b"1000-2000 r--p 00000000 1ffffffff:01 5 /x",
            b"11000000000000000-11000000000001000 r--p 00000000 08:01 5 /x",
            b"+1000-2000 r--p 00000000 08:01 5 /x",
            b"1000-2000 r--p 00000000 08:01 5 /x\n1000-3000 r--p 00000000 08:01 5 /y",
        ];
        for c in cases {
            assert!(parse(c).is_err(), "{:?}", String::from_utf8_lossy(c));
        }
        let e = parse(b"1000-2000 r--p 00000000 08:01 5 /x\nbad\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
        // Every truncation of a line before its inode ends is an error.
        let line = b"7fdef3745000-7fdef3747000 r-xp 00000000 00:00 0";
        for cut in 0..line.len() - 1 {
            assert!(parse_line(&line[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn live_self() {
        let me = Pid(std::process::id() as i32);
        let m = read(me).unwrap();
        assert_eq!(m.iter().filter(|e| e.kind == MapKind::Stack).count(), 1);
        assert!(m.iter().any(|e| e.kind == MapKind::Vdso));
        assert!(m.iter().any(|e| e.kind == MapKind::Vvar));
        let here = live_self as fn() as usize as u64;
        let text = m.iter().find(|e| e.contains(here)).unwrap();
        assert!(text.perms.exec());
        assert_eq!(text.kind, MapKind::File);
    }
}
