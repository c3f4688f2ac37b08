//! Event and special descriptors: `eventfd.img`, `epoll.img`,
//! `timerfd.img`, `inotify.img`, `pidfd.img`, one entry
//! per open file description (its file object id), and `memfd.img` (one
//! entry per description) with `memfd-data.img` (one entry per memfd
//! inode: name, size, seals, contents), so that several descriptions of
//! one memfd stay one file.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;
use super::RawStr;
use std::borrow::Cow;

/// One eventfd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventfdEntry {
    /// File object id.
    pub id: u32,
    /// Status flags (O_NONBLOCK).
    pub flags: OpenFlags,
    /// The counter.
    pub count: u64,
    /// EFD_SEMAPHORE.
    pub semaphore: bool,
}

/// One watch of an epoll instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollWatch {
    /// The fd number it was added under (part of the item's key).
    pub tfd: i32,
    /// The file object watched.
    pub target: u32,
    /// Events mask with EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE, EPOLLWAKEUP.
    pub events: u32,
    /// User data.
    pub data: u64,
}

/// One epoll instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollEntry {
    /// File object id.
    pub id: u32,
    /// Status flags.
    pub flags: OpenFlags,
    /// Its watches, in the kernel's order.
    pub watches: Vec<EpollWatch>,
}

/// One timerfd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerfdEntry {
    /// File object id.
    pub id: u32,
    /// Status flags (O_NONBLOCK).
    pub flags: OpenFlags,
    /// Clock (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, ..._ALARM).
    pub clockid: i32,
    /// timerfd_settime flags: TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET.
    pub settime_flags: u32,
    /// Expirations not read yet.
    pub ticks: u64,
    /// Time to the next expiration at dump (seconds, nanoseconds; zero:
    /// disarmed).
    pub value: (i64, i64),
    /// Period (zero: one-shot).
    pub interval: (i64, i64),
    /// The clock's reading at dump, for absolute timers: the expiration is
    /// `now + value` on that clock, whenever the restore happens.
    pub now: (i64, i64),
}

/// One inotify watch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatchEntry {
    /// Watch descriptor (kept at restore).
    pub wd: i32,
    /// Event mask with IN_ONESHOT, IN_EXCL_UNLINK, ...
    pub mask: u32,
    /// The watched inode's device (kernel encoding) and number at dump.
    pub sdev: u32,
    /// Inode number.
    pub ino: u64,
    /// File handle (type, bytes), when the filesystem gave one.
    pub handle: Option<(i32, Vec<u8>)>,
    /// Path found at dump (the fallback when the handle does not open).
    pub path: RawStr,
}

/// One inotify instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyEntry {
    /// File object id.
    pub id: u32,
    /// Status flags (O_NONBLOCK).
    pub flags: OpenFlags,
    /// Its watches, by wd.
    pub watches: Vec<InotifyWatchEntry>,
}

/// One fanotify mark.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanotifyMarkEntry {
    /// 0 (inode), FAN_MARK_MOUNT or FAN_MARK_FILESYSTEM.
    pub kind: u32,
    /// Mark flags (FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE,
    /// FAN_MARK_IGNORE).
    pub mflags: u32,
    /// Event mask.
    pub mask: u32,
    /// Ignored mask.
    pub ignored_mask: u32,
    /// Inode marks: the inode's device (kernel encoding).
    pub sdev: u32,
    /// Inode marks: file handle (type, bytes).
    pub handle: Option<(i32, Vec<u8>)>,
    /// The inode's path, or the mount point.
    pub path: RawStr,
}

/// One fanotify group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanotifyEntry {
    /// File object id.
    pub id: u32,
    /// Status flags (O_NONBLOCK).
    pub flags: OpenFlags,
    /// fanotify_init flags (FAN_CLASS_*, FAN_REPORT_*, ...).
    pub init_flags: u32,
    /// fanotify_init event_f_flags.
    pub event_flags: u32,
    /// Its marks.
    pub marks: Vec<FanotifyMarkEntry>,
}

/// One pidfd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidfdEntry {
    /// File object id.
    pub id: u32,
    /// Status flags (O_NONBLOCK; O_EXCL for PIDFD_THREAD).
    pub flags: OpenFlags,
    /// The task it refers to (a task of the tree); 0 for one that had
    /// exited and been reaped.
    pub pid: u32,
    /// A reaped task's: its pidfs inode at dump, the same for every pidfd of
    /// that task (format 2; 0 for a live task).
    pub dead: u64,
}

/// One open file description of a memfd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdEntry {
    /// File object id.
    pub id: u32,
    /// The memfd ([`MemfdDataEntry::memfd_id`]).
    pub memfd_id: u32,
    /// Status flags and access mode.
    pub flags: OpenFlags,
    /// File position.
    pub pos: u64,
}

/// One memfd: what every description of it shares.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdDataEntry {
    /// The memfd's id in this dump.
    pub memfd_id: u32,
    /// Inode number at dump (for messages).
    pub ino: u64,
    /// Name given to memfd_create (without the "memfd:" prefix).
    pub name: RawStr,
    /// Size in bytes.
    pub size: u64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// F_GET_SEALS (F_SEAL_SEAL set: sealing was never allowed, or sealed).
    pub seals: u32,
    /// Where its data is in `pages-0.img` ([`MEMFD_PAGES_ID`]); holes are
    /// left out.
    pub runs: Vec<MemfdRun>,
    /// Some task maps it (its VMAs name `memfd_id` as their `shmid`).
    pub mapped: bool,
}

/// The pages image holding every memfd's data: `pages-0.img` (no task has
/// pid 0).
pub const MEMFD_PAGES_ID: u32 = 0;

/// A run of a memfd's data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdRun {
    /// Offset in the memfd (page-aligned).
    pub offset: u64,
    /// Length in bytes (whole pages; the last may reach past the memfd's
    /// size, zero-filled).
    pub len: u64,
    /// Offset in the pages image.
    pub pages_off: u64,
}

/// Names of EPOLL* bits.
fn epoll_events_node(ev: u32) -> Node {
    const NAMES: [(u32, &str); 14] = [
        (0x1, "EPOLLIN"),
        (0x2, "EPOLLPRI"),
        (0x4, "EPOLLOUT"),
        (0x8, "EPOLLERR"),
        (0x10, "EPOLLHUP"),
        (0x20, "EPOLLNVAL"),
        (0x40, "EPOLLRDNORM"),
        (0x80, "EPOLLRDBAND"),
        (0x100, "EPOLLWRNORM"),
        (0x200, "EPOLLWRBAND"),
        (0x2000, "EPOLLRDHUP"),
        (1 << 28, "EPOLLEXCLUSIVE"),
        (1 << 29, "EPOLLWAKEUP"),
        (1 << 30, "EPOLLONESHOT"),
    ];
    Node::bitmask(ev as u64, |bit| {
        if bit == 31 {
            return Some(Cow::Borrowed("EPOLLET"));
        }
        NAMES.iter().find(|(b, _)| *b == 1 << bit).map(|(_, n)| Cow::Borrowed(*n))
    })
}

/// A clock id by name.
pub fn clock_name(id: i32) -> Cow<'static, str> {
    match id {
        0 => "CLOCK_REALTIME".into(),
        1 => "CLOCK_MONOTONIC".into(),
        7 => "CLOCK_BOOTTIME".into(),
        8 => "CLOCK_REALTIME_ALARM".into(),
        9 => "CLOCK_BOOTTIME_ALARM".into(),
        n => format!("clock {n}").into(),
    }
}

fn ts(t: (i64, i64)) -> String {
    format!("{}.{:09}", t.0, t.1)
}

impl Describe for EventfdEntry {
    fn describe(&self) -> Node {
        Obj::new().f("id", self.id).d("flags", &self.flags).f("count", self.count).f("semaphore", self.semaphore).done()
    }
}

impl Describe for EpollWatch {
    fn describe(&self) -> Node {
        Obj::new()
            .f("tfd", self.tfd as i64)
            .f("target", self.target)
            .f("events", epoll_events_node(self.events))
            .f("data", Node::hex(self.data))
            .done()
    }
}

impl Describe for EpollEntry {
    fn describe(&self) -> Node {
        Obj::new().f("id", self.id).d("flags", &self.flags).d("watches", &self.watches).done()
    }
}

impl Describe for TimerfdEntry {
    fn describe(&self) -> Node {
        let sf = Node::bitmask(self.settime_flags as u64, |bit| match bit {
            0 => Some("TFD_TIMER_ABSTIME".into()),
            1 => Some("TFD_TIMER_CANCEL_ON_SET".into()),
            _ => None,
        });
        Obj::new()
            .f("id", self.id)
            .d("flags", &self.flags)
            .f("clock", clock_name(self.clockid).into_owned())
            .f("settime_flags", sf)
            .f("ticks", self.ticks)
            .f("value", ts(self.value))
            .f("interval", ts(self.interval))
            .f("now", ts(self.now))
            .done()
    }
}

impl Describe for InotifyWatchEntry {
    fn describe(&self) -> Node {
        let mut o = Obj::new()
            .f("wd", self.wd as i64)
            .f("mask", Node::hex32(self.mask))
            .f("sdev", Node::hex(self.sdev as u64))
            .f("ino", self.ino);
        if let Some((ty, b)) = &self.handle {
            o = o.f("handle_type", *ty as i64).f("handle", Node::Bytes(b.clone()));
        }
        o.d("path", &self.path).done()
    }
}

impl Describe for InotifyEntry {
    fn describe(&self) -> Node {
        Obj::new().f("id", self.id).d("flags", &self.flags).d("watches", &self.watches).done()
    }
}

impl Describe for FanotifyMarkEntry {
    fn describe(&self) -> Node {
        let kind = match self.kind {
            0 => "inode",
            0x10 => "mount",
            _ => "filesystem",
        };
        Obj::new()
            .f("kind", kind)
            .f("mflags", Node::hex32(self.mflags))
            .f("mask", Node::hex32(self.mask))
            .f("ignored_mask", Node::hex32(self.ignored_mask))
            .d("path", &self.path)
            .done()
    }
}

impl Describe for FanotifyEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("id", self.id)
            .d("flags", &self.flags)
            .f("init_flags", Node::hex32(self.init_flags))
            .f("event_flags", Node::hex32(self.event_flags))
            .d("marks", &self.marks)
            .done()
    }
}

impl Describe for PidfdEntry {
    fn describe(&self) -> Node {
        Obj::new().f("id", self.id).d("flags", &self.flags).f("pid", self.pid).f("dead", self.dead).done()
    }
}

impl Describe for MemfdEntry {
    fn describe(&self) -> Node {
        Obj::new().f("id", self.id).f("memfd", self.memfd_id).d("flags", &self.flags).f("pos", self.pos).done()
    }
}

impl Describe for MemfdDataEntry {
    fn describe(&self) -> Node {
        let seals = Node::bitmask(self.seals as u64, |bit| match bit {
            0 => Some("F_SEAL_SEAL".into()),
            1 => Some("F_SEAL_SHRINK".into()),
            2 => Some("F_SEAL_GROW".into()),
            3 => Some("F_SEAL_WRITE".into()),
            4 => Some("F_SEAL_FUTURE_WRITE".into()),
            5 => Some("F_SEAL_EXEC".into()),
            _ => None,
        });
        let runs: Vec<Node> = self
            .runs
            .iter()
            .map(|r| Obj::new().f("offset", r.offset).f("len", Node::Size(r.len)).f("pages_off", r.pages_off).done())
            .collect();
        Obj::new()
            .f("memfd", self.memfd_id)
            .f("ino", self.ino)
            .d("name", &self.name)
            .f("size", Node::Size(self.size))
            .f("mode", super::reg_files::mode_text(self.mode))
            .f("uid", self.uid)
            .f("gid", self.gid)
            .f("seals", seals)
            .f("mapped", self.mapped)
            .f("runs", Node::Array(runs))
            .done()
    }
}

/// The event and special descriptor images of a dump, as
/// [`crate::objects::files::FileImages`] holds them.
#[derive(Debug, Default)]
pub struct EventImages {
    /// eventfd.img.
    pub eventfd: Vec<EventfdEntry>,
    /// epoll.img.
    pub epoll: Vec<EpollEntry>,
    /// timerfd.img.
    pub timerfd: Vec<TimerfdEntry>,
    /// inotify.img.
    pub inotify: Vec<InotifyEntry>,
    /// pidfd.img.
    pub pidfd: Vec<PidfdEntry>,
    /// memfd.img.
    pub memfd: Vec<MemfdEntry>,
    /// memfd-data.img.
    pub memfd_data: Vec<MemfdDataEntry>,
    /// fanotify.img.
    pub fanotify: Vec<FanotifyEntry>,
    /// Dump only: memfd ids by (device, inode).
    pub memfd_ids: std::collections::HashMap<(u64, u64), u32>,
    /// Dump only: a read-only description of each memfd, by id: its data
    /// is streamed into the pages image when the images are written.
    pub memfd_src: Vec<(u32, std::os::fd::OwnedFd)>,
    /// Restore only: the pages image with the memfds' data.
    pub memfd_pages: Option<std::os::fd::OwnedFd>,
    /// Dump only: each epoll instance's first holder (pid, fd) and its
    /// watches as fdinfo showed them, resolved once every task is dumped.
    pub epoll_pending: Vec<(crate::sys::Pid, i32, u32, Vec<crate::proc::fdinfo::EpollTarget>)>,
}
