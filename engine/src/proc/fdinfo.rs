//! `/proc/<pid>/fdinfo/<fd>` and the `/proc/<pid>/fd/` links, see
//! proc_pid_fdinfo(5) and proc_pid_fd(5).
//!
//! fdinfo format (`seq_show()` in fs/proc/fd.c, then the file's
//! `show_fdinfo`): `pos:\t%lli`, `flags:\t0%o`, `mnt_id:\t%d`, `ino:\t%lu`,
//! then kind-specific lines:
//! - eventfd: `eventfd-count: %16llx`, `eventfd-id: %d`, `eventfd-semaphore: %d`;
//! - epoll, one per target: `tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x`;
//! - inotify, one per watch: `inotify wd:%x ino:%lx sdev:%x mask:%x
//!   ignored_mask:%x fhandle-bytes:%x fhandle-type:%x f_handle:<hex>` (the
//!   fhandle part is missing when the filesystem cannot encode one);
//! - fanotify: `fanotify flags:%x event-flags:%x`, then per mark
//!   `fanotify ino:%lx sdev:%x mflags:%x mask:%x ignored_mask:%x <fhandle>`
//!   (inode), `fanotify mnt_id:%x mflags:..` (mount) or
//!   `fanotify sdev:%x mflags:..` (superblock);
//! - timerfd: `clockid: %d`, `ticks: %llu`, `settime flags: 0%o`,
//!   `it_value: (%llu, %llu)`, `it_interval: (%llu, %llu)`;
//! - signalfd: `sigmask:\t%016llx`;
//! - anything else (`scm_fds:`, `tty-index:`, `lock:`, pidfd `Pid:`, ...)
//!   is kept as a key/value pair in [`FdInfo::extra`].
//!
//! # Invariants
//! - `pos` and `flags` are required; `mnt_id` (Linux 3.15+) and `ino`
//!   (5.14+) are optional, for older kernels.
//! - Every line not parsed into a typed field is in [`FdInfo::extra`], in
//!   file order, split at its first `':'` with the value trimmed.
//! - Link targets are kept byte for byte; `" (deleted)"` is split off paths.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::{num, PathTarget, ProcError, Result};
use crate::sys::Pid;

const FILE: &str = "fdinfo";

/// `eventfd-*` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventfdInfo {
    /// The counter.
    pub count: u64,
    /// eventfd-id (the context's id), when printed.
    pub id: Option<u32>,
    /// EFD_SEMAPHORE, when printed.
    pub semaphore: Option<bool>,
}

/// One `tfd:` line of an epoll instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpollTarget {
    /// The target fd number in the owner's table at EPOLL_CTL_ADD time.
    pub tfd: i32,
    /// The registered events (EPOLLIN | EPOLLET | ...).
    pub events: u32,
    /// The user data.
    pub data: u64,
    /// The target file's position.
    pub pos: Option<i64>,
    /// The target file's inode.
    pub ino: Option<u64>,
    /// The target file's device.
    pub sdev: Option<u32>,
}

/// A file handle printed for inotify and fanotify marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHandle {
    /// fhandle-type.
    pub handle_type: i32,
    /// f_handle bytes (fhandle-bytes of them).
    pub bytes: Vec<u8>,
}

/// One `inotify` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InotifyWatch {
    /// Watch descriptor.
    pub wd: i32,
    /// Watched inode.
    pub ino: u64,
    /// Its device (kernel encoding).
    pub sdev: u32,
    /// Event mask.
    pub mask: u32,
    /// Ignored mask.
    pub ignored_mask: u32,
    /// Handle to reopen the inode, when the filesystem gave one.
    pub fhandle: Option<FileHandle>,
}

/// What a fanotify mark is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FanotifyTarget {
    /// An inode mark.
    Inode {
        /// Inode.
        ino: u64,
        /// Device.
        sdev: u32,
        /// Handle, when printed.
        fhandle: Option<FileHandle>,
    },
    /// A mount mark.
    Mount {
        /// Mount id.
        mnt_id: i32,
    },
    /// A superblock (filesystem) mark.
    Superblock {
        /// Device.
        sdev: u32,
    },
    /// A kind this crate does not know (mount-namespace marks, ...): the
    /// raw key/value pairs except mflags, mask and ignored_mask.
    Other(Vec<(String, String)>),
}

/// One fanotify mark line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FanotifyMark {
    /// Target of the mark.
    pub target: FanotifyTarget,
    /// Mark flags.
    pub mflags: u32,
    /// Event mask.
    pub mask: u32,
    /// Ignored mask.
    pub ignored_mask: u32,
}

/// The `fanotify` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FanotifyInfo {
    /// fanotify_init flags.
    pub flags: u32,
    /// fanotify_init event_f_flags.
    pub event_flags: u32,
    /// Marks.
    pub marks: Vec<FanotifyMark>,
}

/// A `(sec, nsec)` pair of a timerfd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeSpec {
    /// Seconds.
    pub sec: u64,
    /// Nanoseconds.
    pub nsec: u64,
}

/// The timerfd lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerfdInfo {
    /// Clock id.
    pub clockid: i32,
    /// Expirations not yet read.
    pub ticks: u64,
    /// timerfd_settime flags (TFD_TIMER_ABSTIME ...).
    pub settime_flags: u32,
    /// Time to the next expiration (relative, as timerfd_gettime).
    pub it_value: TimeSpec,
    /// Interval.
    pub it_interval: TimeSpec,
}

/// A parsed fdinfo file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdInfo {
    /// File position.
    pub pos: i64,
    /// Open flags (`O_*`, including O_CLOEXEC as the kernel reports it).
    pub flags: u32,
    /// Mount id of the file.
    pub mnt_id: Option<i32>,
    /// Inode number.
    pub ino: Option<u64>,
    /// eventfd lines.
    pub eventfd: Option<EventfdInfo>,
    /// epoll targets.
    pub epoll_targets: Vec<EpollTarget>,
    /// inotify watches.
    pub inotify_watches: Vec<InotifyWatch>,
    /// fanotify state.
    pub fanotify: Option<FanotifyInfo>,
    /// timerfd state.
    pub timerfd: Option<TimerfdInfo>,
    /// signalfd mask.
    pub signalfd_mask: Option<u64>,
    /// Every other line as (key, value), in file order.
    pub extra: Vec<(String, String)>,
}

impl FdInfo {
    /// The first [`FdInfo::extra`] value with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Splits `tag k1:v1 k2: v2 ...` into pairs; a bare word is allowed only
/// first (the tag, skipped).
fn kv_tokens(line: &str) -> Result<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut it = line.split_ascii_whitespace().enumerate().peekable();
    while let Some((i, tok)) = it.next() {
        if let Some(key) = tok.strip_suffix(':') {
            let (_, v) = it.next().ok_or_else(|| ProcError::malformed(FILE, format!("key {key} without value")))?;
            out.push((key, v));
        } else if let Some((k, v)) = tok.split_once(':') {
            out.push((k, v));
        } else if i != 0 {
            return Err(ProcError::malformed(FILE, format!("stray word {tok:?}")));
        }
    }
    Ok(out)
}

struct Kv<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Kv<'a> {
    fn opt(&self, k: &str) -> Option<&'a str> {
        self.0.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
    }
    fn req(&self, k: &str) -> Result<&'a str> {
        self.opt(k).ok_or_else(|| ProcError::malformed(FILE, format!("missing {k}")))
    }
    fn hex32(&self, k: &str) -> Result<u32> {
        num::hex_u32(FILE, k, self.req(k)?)
    }
    fn hex64(&self, k: &str) -> Result<u64> {
        num::hex_u64(FILE, k, self.req(k)?)
    }
    fn fhandle(&self) -> Result<Option<FileHandle>> {
        let Some(nbytes) = self.opt("fhandle-bytes") else { return Ok(None) };
        let n = num::hex_u32(FILE, "fhandle-bytes", nbytes)? as usize;
        let handle_type = num::hex_u32(FILE, "fhandle-type", self.req("fhandle-type")?)? as i32;
        let hex = self.opt("f_handle").unwrap_or("");
        if hex.len() != 2 * n || !hex.is_ascii() {
            return Err(ProcError::malformed(FILE, format!("f_handle {hex:?} is not {n} bytes")));
        }
        let bytes = (0..n)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<core::result::Result<Vec<u8>, _>>()
            .map_err(|_| ProcError::malformed(FILE, format!("f_handle {hex:?} is not hex")))?;
        Ok(Some(FileHandle { handle_type, bytes }))
    }
}

fn epoll_line(line: &str) -> Result<EpollTarget> {
    let kv = Kv(kv_tokens(line)?);
    Ok(EpollTarget {
        tfd: num::dec_i32(FILE, "tfd", kv.req("tfd")?)?,
        events: kv.hex32("events")?,
        data: kv.hex64("data")?,
        pos: kv.opt("pos").map(|v| num::dec_i64(FILE, "pos", v)).transpose()?,
        ino: kv.opt("ino").map(|v| num::hex_u64(FILE, "ino", v)).transpose()?,
        sdev: kv.opt("sdev").map(|v| num::hex_u32(FILE, "sdev", v)).transpose()?,
    })
}

fn inotify_line(line: &str) -> Result<InotifyWatch> {
    let kv = Kv(kv_tokens(line)?);
    Ok(InotifyWatch {
        wd: kv.hex32("wd")? as i32,
        ino: kv.hex64("ino")?,
        sdev: kv.hex32("sdev")?,
        mask: kv.hex32("mask")?,
        ignored_mask: kv.hex32("ignored_mask")?,
        fhandle: kv.fhandle()?,
    })
}

fn fanotify_line(line: &str, info: &mut FanotifyInfo) -> Result<()> {
    let kv = Kv(kv_tokens(line)?);
    if kv.opt("event-flags").is_some() {
        info.flags = kv.hex32("flags")?;
        info.event_flags = kv.hex32("event-flags")?;
        return Ok(());
    }
    let target = if kv.opt("ino").is_some() {
        FanotifyTarget::Inode { ino: kv.hex64("ino")?, sdev: kv.hex32("sdev")?, fhandle: kv.fhandle()? }
    } else if kv.opt("mnt_id").is_some() {
        FanotifyTarget::Mount { mnt_id: kv.hex32("mnt_id")? as i32 }
    } else if kv.opt("sdev").is_some() {
        FanotifyTarget::Superblock { sdev: kv.hex32("sdev")? }
    } else {
        FanotifyTarget::Other(
            kv.0.iter()
                .filter(|(k, _)| !matches!(*k, "mflags" | "mask" | "ignored_mask"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    info.marks.push(FanotifyMark {
        target,
        mflags: kv.hex32("mflags")?,
        mask: kv.hex32("mask")?,
        ignored_mask: kv.hex32("ignored_mask")?,
    });
    Ok(())
}

fn timespec(key: &str, v: &str) -> Result<TimeSpec> {
    let inner = v
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .and_then(|s| s.split_once(','))
        .ok_or_else(|| ProcError::malformed(FILE, format!("field {key}: want (sec, nsec), got {v:?}")))?;
    Ok(TimeSpec { sec: num::dec_u64(FILE, key, inner.0.trim())?, nsec: num::dec_u64(FILE, key, inner.1.trim())? })
}

/// Parses an fdinfo file.
pub fn parse(text: &str) -> Result<FdInfo> {
    let mut pos = None;
    let mut flags = None;
    let mut mnt_id = None;
    let mut ino = None;
    let mut epoll_targets = Vec::new();
    let mut inotify_watches = Vec::new();
    let mut fanotify: Option<FanotifyInfo> = None;
    let mut extra: Vec<(String, String)> = Vec::new();

    for (i, line) in text.lines().enumerate() {
        let at = |e: ProcError| e.at_line(i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("tfd:") {
            epoll_targets.push(epoll_line(line).map_err(at)?);
            continue;
        }
        if line.starts_with("inotify ") {
            inotify_watches.push(inotify_line(line).map_err(at)?);
            continue;
        }
        if line.starts_with("fanotify ") {
            fanotify_line(line, fanotify.get_or_insert_with(FanotifyInfo::default)).map_err(at)?;
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| at(ProcError::malformed(FILE, "line without ':'")))?;
        let v = v.trim();
        match k {
            "pos" => pos = Some(num::dec_i64(FILE, k, v).map_err(at)?),
            "flags" => flags = Some(num::oct_u32(FILE, k, v).map_err(at)?),
            "mnt_id" => mnt_id = Some(num::dec_i32(FILE, k, v).map_err(at)?),
            "ino" => ino = Some(num::dec_u64(FILE, k, v).map_err(at)?),
            _ => extra.push((k.to_string(), v.to_string())),
        }
    }

    let get = |k: &str| extra.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let eventfd = match get("eventfd-count") {
        None => None,
        Some(c) => Some(EventfdInfo {
            count: num::hex_u64(FILE, "eventfd-count", c)?,
            id: get("eventfd-id").map(|v| num::dec_u32(FILE, "eventfd-id", v)).transpose()?,
            semaphore: get("eventfd-semaphore")
                .map(|v| match v {
                    "0" => Ok(false),
                    "1" => Ok(true),
                    _ => Err(ProcError::malformed(FILE, format!("field eventfd-semaphore: bad {v:?}"))),
                })
                .transpose()?,
        }),
    };
    let timerfd = match get("clockid") {
        None => None,
        Some(c) => {
            let req = |k: &str| get(k).ok_or_else(|| ProcError::malformed(FILE, format!("timerfd: missing {k}")));
            Some(TimerfdInfo {
                clockid: num::dec_i32(FILE, "clockid", c)?,
                ticks: num::dec_u64(FILE, "ticks", req("ticks")?)?,
                settime_flags: num::oct_u32(FILE, "settime flags", req("settime flags")?)?,
                it_value: timespec("it_value", req("it_value")?)?,
                it_interval: timespec("it_interval", req("it_interval")?)?,
            })
        }
    };
    let signalfd_mask = get("sigmask").map(|v| num::hex_u64(FILE, "sigmask", v)).transpose()?;

    Ok(FdInfo {
        pos: pos.ok_or_else(|| ProcError::malformed(FILE, "missing pos"))?,
        flags: flags.ok_or_else(|| ProcError::malformed(FILE, "missing flags"))?,
        mnt_id,
        ino,
        eventfd,
        epoll_targets,
        inotify_watches,
        fanotify,
        timerfd,
        signalfd_mask,
        extra,
    })
}

/// Reads `/proc/<pid>/fdinfo/<fd>`.
pub fn read(pid: Pid, fd: i32) -> Result<FdInfo> {
    let file = format!("fdinfo/{fd}");
    let text = super::read_text(pid, &file)?;
    parse(&text).map_err(|e| {
        let mut e = e.with_pid(pid);
        e.file = file;
        e
    })
}

/// What a `/proc/<pid>/fd/<n>` link points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FdTarget {
    /// A path (regular file, directory, device, fifo, memfd `/memfd:x`, ...).
    Path(PathTarget),
    /// `pipe:[ino]`.
    Pipe(u64),
    /// `socket:[ino]`.
    Socket(u64),
    /// `anon_inode:<name>`: the name as printed (`[eventfd]`, `[eventpoll]`,
    /// `[timerfd]`, `[signalfd]`, `inotify`, `[fanotify]`, `[pidfd]`, ...).
    AnonInode(String),
    /// Another `<kind>:[ino]` (namespace files `net:[4026531840]`, ...).
    Inode {
        /// The text before `:[`.
        kind: String,
        /// The inode number.
        ino: u64,
    },
    /// Anything else, raw.
    Other(Vec<u8>),
}

/// Classifies a raw link target.
pub fn parse_fd_target(raw: &[u8]) -> FdTarget {
    if raw.first() == Some(&b'/') {
        return FdTarget::Path(PathTarget::from_bytes(raw));
    }
    let Ok(s) = std::str::from_utf8(raw) else { return FdTarget::Other(raw.to_vec()) };
    if let Some(name) = s.strip_prefix("anon_inode:") {
        return FdTarget::AnonInode(name.to_string());
    }
    if let Some((kind, rest)) = s.split_once(":[") {
        if let Some(ino) = rest.strip_suffix(']').and_then(|n| n.parse::<u64>().ok()) {
            return match kind {
                "pipe" => FdTarget::Pipe(ino),
                "socket" => FdTarget::Socket(ino),
                _ => FdTarget::Inode { kind: kind.to_string(), ino },
            };
        }
    }
    FdTarget::Other(raw.to_vec())
}

/// One open descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdEntry {
    /// The fd number.
    pub fd: i32,
    /// Its link target.
    pub target: FdTarget,
}

/// Reads the `/proc/<pid>/fd/<fd>` link.
pub fn fd_target(pid: Pid, fd: i32) -> Result<FdTarget> {
    let file = format!("fd/{fd}");
    let link = std::fs::read_link(super::pid_path(pid, &file)).map_err(|e| ProcError::io(pid, file, e))?;
    Ok(parse_fd_target(link.as_os_str().as_bytes()))
}

/// Lists `/proc/<pid>/fd/`, sorted by fd. A descriptor closed between the
/// listing and its readlink is left out.
pub fn list_fds(pid: Pid) -> Result<Vec<FdEntry>> {
    let rd = std::fs::read_dir(super::pid_path(pid, "fd")).map_err(|e| ProcError::io(pid, "fd", e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| ProcError::io(pid, "fd", e))?;
        let name = ent.file_name();
        let fd = parse_fd_name(name.as_os_str()).map_err(|e| e.with_pid(pid))?;
        match fd_target(pid, fd) {
            Ok(target) => out.push(FdEntry { fd, target }),
            Err(e) if e.is_gone() => continue,
            Err(e) => return Err(e),
        }
    }
    out.sort_by_key(|e| e.fd);
    Ok(out)
}

fn parse_fd_name(name: &OsStr) -> Result<i32> {
    name.to_str()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|&n| n >= 0)
        .ok_or_else(|| ProcError::malformed("fd", format!("bad fd name {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample(name: &str) -> FdInfo {
        let text = match name {
            "eventfd" => include_str!("testdata/fdinfo.eventfd"),
            "epoll" => include_str!("testdata/fdinfo.epoll"),
            "inotify" => include_str!("testdata/fdinfo.inotify"),
            "fanotify" => include_str!("testdata/fdinfo.fanotify"),
            "timerfd" => include_str!("testdata/fdinfo.timerfd"),
            "signalfd" => include_str!("testdata/fdinfo.signalfd"),
            "pipe" => include_str!("testdata/fdinfo.pipe"),
            "socket" => include_str!("testdata/fdinfo.socket"),
            "memfd" => include_str!("testdata/fdinfo.memfd"),
            "pidfd" => include_str!("testdata/fdinfo.pidfd"),
            "eventfd-semaphore" => include_str!("testdata/fdinfo.eventfd-semaphore"),
            "epoll-many" => include_str!("testdata/fdinfo.epoll-many"),
            "timerfd-abs" => include_str!("testdata/fdinfo.timerfd-abs"),
            _ => unreachable!(),
        };
        parse(text).unwrap()
    }

    #[test]
    fn captured_common() {
        let p = sample("pipe");
        assert_eq!((p.pos, p.flags, p.mnt_id, p.ino), (0, 0, Some(16), Some(6818)));
        assert!(p.extra.is_empty());
        let s = sample("socket");
        assert_eq!(s.flags, 0o2);
        assert_eq!(s.get("scm_fds"), Some("0"));
        let m = sample("memfd");
        assert_eq!(m.flags, 0o100002);
        assert_eq!(m.mnt_id, Some(0));
    }

    #[test]
    fn captured_eventfd() {
        let e = sample("eventfd");
        assert_eq!(e.flags, 0o4002);
        assert_eq!(e.eventfd, Some(EventfdInfo { count: 5, id: Some(1), semaphore: Some(false) }));
    }

    #[test]
    fn captured_epoll() {
        let e = sample("epoll");
        assert_eq!(
            e.epoll_targets,
            vec![EpollTarget {
                tfd: 3,
                events: 0x80000019,
                data: 0x1122334455667788,
                pos: Some(0),
                ino: Some(0x414),
                sdev: Some(0x10)
            }]
        );
    }

    #[test]
    fn captured_event_kinds_of_linux_6_18() {
        // A pidfd: its task in Pid:, nothing typed.
        let p = sample("pidfd");
        assert_eq!((p.flags, p.get("Pid"), p.get("NSpid")), (0o2000002, Some("5926"), Some("5926")));
        assert_eq!(p.eventfd, None);
        let e = sample("eventfd-semaphore");
        assert_eq!(e.eventfd, Some(EventfdInfo { count: 3, id: Some(1), semaphore: Some(true) }));
        // A fired one-shot item (no events left), an exclusive one under a
        // second number of the same eventfd, an edge-triggered pipe.
        let ep = sample("epoll-many");
        type Line = (i32, u32, u64, Option<u64>, Option<u32>);
        let got: Vec<Line> = ep.epoll_targets.iter().map(|t| (t.tfd, t.events, t.data, t.ino, t.sdev)).collect();
        assert_eq!(
            got,
            vec![
                (4, 0x4000_0000, 4, Some(0x40e), Some(0x10)),
                (8, 0x1000_001c, 0x7fc4_0000_0008, Some(0x40e), Some(0x10)),
                (5, 0x8000_0019, 5, Some(0x32ea5), Some(0xf)),
            ]
        );
        // An absolute CLOCK_REALTIME timer with TFD_TIMER_CANCEL_ON_SET that
        // expired 186 times unread.
        let t = sample("timerfd-abs").timerfd.unwrap();
        assert_eq!((t.clockid, t.ticks, t.settime_flags), (0, 186, 3));
        assert_eq!(t.it_value, TimeSpec { sec: 0, nsec: 2348465 });
        assert_eq!(t.it_interval, TimeSpec { sec: 0, nsec: 10_000_000 });
    }

    #[test]
    fn captured_inotify() {
        let i = sample("inotify");
        assert_eq!(i.inotify_watches.len(), 1);
        let w = &i.inotify_watches[0];
        assert_eq!((w.wd, w.ino, w.sdev, w.mask, w.ignored_mask), (1, 0x3c4a7, 0xfe00000, 0x300, 0));
        let fh = w.fhandle.as_ref().unwrap();
        assert_eq!(fh.handle_type, 1);
        assert_eq!(fh.bytes, vec![0xa7, 0xc4, 0x03, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn captured_fanotify() {
        let f = sample("fanotify").fanotify.unwrap();
        assert_eq!((f.flags, f.event_flags), (0, 0x8000));
        assert_eq!(f.marks.len(), 1);
        let m = &f.marks[0];
        assert_eq!((m.mflags, m.mask, m.ignored_mask), (0, 0x28, 0));
        match &m.target {
            FanotifyTarget::Inode { ino, sdev, fhandle } => {
                assert_eq!((*ino, *sdev), (0x3c4a7, 0xfe00000));
                assert_eq!(fhandle.as_ref().unwrap().bytes.len(), 8);
            }
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn hand_made_fanotify_marks() {
        let text = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1044\n\
fanotify flags:10 event-flags:0\n\
fanotify mnt_id:1c mflags:0 mask:3b ignored_mask:0\n\
fanotify sdev:800001 mflags:1 mask:8 ignored_mask:2\n\
fanotify mnt_ns:4026531841 mflags:0 mask:1000000 ignored_mask:0\n\
fanotify ino:12 sdev:800001 mflags:0 mask:1 ignored_mask:0 \n";
        let f = parse(text).unwrap().fanotify.unwrap();
        assert_eq!(f.flags, 0x10);
        assert_eq!(f.marks[0].target, FanotifyTarget::Mount { mnt_id: 0x1c });
        assert_eq!(f.marks[1].target, FanotifyTarget::Superblock { sdev: 0x800001 });
        assert_eq!(f.marks[1].ignored_mask, 2);
        assert_eq!(f.marks[2].target, FanotifyTarget::Other(vec![("mnt_ns".to_string(), "4026531841".to_string())]));
        assert_eq!(f.marks[3].target, FanotifyTarget::Inode { ino: 0x12, sdev: 0x800001, fhandle: None });
    }

    #[test]
    fn captured_timerfd_signalfd() {
        let t = sample("timerfd").timerfd.unwrap();
        assert_eq!(t.clockid, 1);
        assert_eq!(t.ticks, 0);
        assert_eq!(t.settime_flags, 0);
        assert_eq!(t.it_value, TimeSpec { sec: 83, nsec: 630411850 });
        assert_eq!(t.it_interval, TimeSpec { sec: 3, nsec: 250000000 });
        // SIGUSR1 (10) and SIGTERM (15).
        assert_eq!(sample("signalfd").signalfd_mask, Some((1 << 9) | (1 << 14)));
    }

    #[test]
    fn hand_made_inotify_without_handle_and_old_kernel() {
        // No fhandle (filesystem without export ops), several watches, no ino: line.
        let text = "pos:\t0\nflags:\t04000\nmnt_id:\t17\n\
inotify wd:2 ino:10 sdev:5 mask:fff ignored_mask:0 \n\
inotify wd:ffffffff ino:11 sdev:5 mask:1 ignored_mask:0 fhandle-bytes:4 fhandle-type:81 f_handle:0a0b0c0d\n";
        let i = parse(text).unwrap();
        assert_eq!(i.ino, None);
        assert_eq!(i.inotify_watches[0].fhandle, None);
        assert_eq!(i.inotify_watches[1].wd, -1);
        assert_eq!(i.inotify_watches[1].fhandle.as_ref().unwrap().handle_type, 0x81);
        assert_eq!(i.inotify_watches[1].fhandle.as_ref().unwrap().bytes, vec![10, 11, 12, 13]);
    }

    #[test]
    fn hand_made_misc() {
        let text = "pos:\t-1\nflags:\t02000002\nmnt_id:\t15\nino:\t9\nlock:\t1: POSIX  ADVISORY  WRITE 123 fe:00:456 0 EOF\nPid:\t42\nNSpid:\t42\n";
        let f = parse(text).unwrap();
        assert_eq!(f.pos, -1);
        assert_eq!(f.flags, 0o2000002);
        assert_eq!(f.get("lock"), Some("1: POSIX  ADVISORY  WRITE 123 fe:00:456 0 EOF"));
        assert_eq!(f.get("Pid"), Some("42"));
        assert_eq!(f.eventfd, None);
        assert_eq!(f.timerfd, None);
    }

    #[test]
    fn malformed_is_error() {
        let cases = [
            "",
            "flags:\t02\n",
            "pos:\t0\n",
            "pos:\tx\nflags:\t02\n",
            "pos:\t0\nflags:\t08\n",
            "pos:\t0\nflags:\t02\nno colon here\n",
            "pos:\t0\nflags:\t02\ntfd: 3 events: zz data: 1\n",
            "pos:\t0\nflags:\t02\ntfd: 3 events: 19\n",
            "pos:\t0\nflags:\t02\ntfd: 3 events:\n",
            "pos:\t0\nflags:\t02\ntfd: 3 stray events: 1 data: 2\n",
            "pos:\t0\nflags:\t02\ninotify wd:1 ino:2 sdev:3 mask:4\n",
            "pos:\t0\nflags:\t02\ninotify wd:1 ino:2 sdev:3 mask:4 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4\n",
            "pos:\t0\nflags:\t02\ninotify wd:1 ino:2 sdev:3 mask:4 ignored_mask:0 fhandle-bytes:1 fhandle-type:1 f_handle:zz\n",
            "pos:\t0\nflags:\t02\ninotify wd:1 ino:2 sdev:3 mask:4 ignored_mask:0 fhandle-bytes:1 fhandle-type:1 f_handle:\u{e9}\n",
            "pos:\t0\nflags:\t02\nfanotify flags:x event-flags:0\n",
            "pos:\t0\nflags:\t02\nfanotify mnt_id:1 mask:3b ignored_mask:0\n",
            "pos:\t0\nflags:\t02\neventfd-count: zz\n",
            "pos:\t0\nflags:\t02\neventfd-count: 1\neventfd-semaphore: 2\n",
            "pos:\t0\nflags:\t02\nclockid: 1\nticks: 0\n",
            "pos:\t0\nflags:\t02\nclockid: 1\nticks: 0\nsettime flags: 00\nit_value: (1 2)\nit_interval: (0, 0)\n",
            "pos:\t0\nflags:\t02\nclockid: 1\nticks: 0\nsettime flags: 00\nit_value: (1, 2\nit_interval: (0, 0)\n",
            "pos:\t0\nflags:\t02\nsigmask:\tzz\n",
        ];
        for c in cases {
            assert!(parse(c).is_err(), "{c:?}");
        }
        let e = parse("pos:\t0\nflags:\t02\nmnt_id:\tx\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        let full = include_str!("testdata/fdinfo.timerfd");
        for cut in 0..full.len() {
            let _ = parse(&full[..cut]);
        }
    }

    #[test]
    fn fd_targets() {
        assert_eq!(parse_fd_target(b"pipe:[6818]"), FdTarget::Pipe(6818));
        assert_eq!(parse_fd_target(b"socket:[6819]"), FdTarget::Socket(6819));
        assert_eq!(parse_fd_target(b"anon_inode:[eventfd]"), FdTarget::AnonInode("[eventfd]".into()));
        assert_eq!(parse_fd_target(b"anon_inode:inotify"), FdTarget::AnonInode("inotify".into()));
        assert_eq!(parse_fd_target(b"net:[4026531840]"), FdTarget::Inode { kind: "net".into(), ino: 4026531840 });
        assert_eq!(
            parse_fd_target(b"/tmp/file with spaces (deleted)"),
            FdTarget::Path(PathTarget { path: PathBuf::from("/tmp/file with spaces"), deleted: true })
        );
        assert_eq!(
            parse_fd_target(b"/memfd:my memfd (deleted)"),
            FdTarget::Path(PathTarget { path: PathBuf::from("/memfd:my memfd"), deleted: true })
        );
        assert_eq!(parse_fd_target(b"pipe:[x]"), FdTarget::Other(b"pipe:[x]".to_vec()));
        assert_eq!(parse_fd_target(b"\xff"), FdTarget::Other(vec![0xff]));
        assert_eq!(parse_fd_target(b""), FdTarget::Other(vec![]));
        assert!(parse_fd_name(OsStr::new("12")).is_ok());
        assert!(parse_fd_name(OsStr::new("-1")).is_err());
        assert!(parse_fd_name(OsStr::new("+1")).is_err());
    }

    #[test]
    fn live_self() {
        use std::os::fd::AsRawFd;
        let me = Pid(std::process::id() as i32);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fds = list_fds(me).unwrap();
        let e = fds.iter().find(|e| e.fd == a.as_raw_fd()).unwrap();
        let FdTarget::Socket(ino) = e.target else { panic!("{:?}", e.target) };
        let info = read(me, a.as_raw_fd()).unwrap();
        assert_eq!(info.ino, Some(ino));
        assert_ne!(info.flags & 0o2000000, 0, "std opens with O_CLOEXEC");
        let err = read(me, 1 << 30).unwrap_err();
        assert!(err.is_gone());
        assert!(err.to_string().contains("/fdinfo/1073741824"), "{err}");
    }
}
