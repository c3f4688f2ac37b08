//! `files.img` (every file object of the dump: id and kind, so restore knows
//! which object image holds it) and `fdinfo-<pid>.img` (a task's descriptor
//! table: which object each fd refers to).
//!
//! Invariant: [`FdKind`] variants are only appended (postcard stores the
//! variant index).
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::serde_bits;

bitflags::bitflags! {
    /// `open(2)` status flags as stored in fdinfo `flags:` (x86_64 values).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct OpenFlags: u32 {
        const O_WRONLY = 0o1;
        const O_RDWR = 0o2;
        const O_CREAT = 0o100;
        const O_EXCL = 0o200;
        const O_NOCTTY = 0o400;
        const O_TRUNC = 0o1000;
        const O_APPEND = 0o2000;
        const O_NONBLOCK = 0o4000;
        const O_DSYNC = 0o10000;
        const O_ASYNC = 0o20000;
        const O_DIRECT = 0o40000;
        const O_LARGEFILE = 0o100000;
        const O_DIRECTORY = 0o200000;
        const O_NOFOLLOW = 0o400000;
        const O_NOATIME = 0o1000000;
        const O_CLOEXEC = 0o2000000;
        const __O_SYNC = 0o4000000;
        const O_PATH = 0o10000000;
        const __O_TMPFILE = 0o20000000;
    }
}
serde_bits!(@serde OpenFlags: u32);

impl Describe for OpenFlags {
    /// Flag names, with `O_RDONLY` spelled out (it is the absence of bits).
    fn describe(&self) -> Node {
        let mut n = Node::flags(*self);
        if let Node::Flags { names, .. } = &mut n {
            if !self.intersects(OpenFlags::O_WRONLY | OpenFlags::O_RDWR) {
                names.insert(0, "O_RDONLY".into());
            }
        }
        n
    }
}

/// What kind of object a descriptor refers to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FdKind {
    /// Regular file or directory (`reg-files.img`).
    #[default]
    Reg,
    /// Pipe.
    Pipe,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    UnixSocket,
    /// IPv4/IPv6 socket.
    InetSocket,
    /// Netlink socket.
    NetlinkSocket,
    /// Packet socket.
    PacketSocket,
    /// eventfd.
    Eventfd,
    /// epoll instance.
    Epoll,
    /// signalfd.
    Signalfd,
    /// timerfd.
    Timerfd,
    /// inotify instance.
    Inotify,
    /// fanotify instance.
    Fanotify,
    /// memfd.
    Memfd,
    /// Terminal.
    Tty,
    /// Namespace file.
    Ns,
    /// Anything this version does not dump.
    Unsupported,
    /// pidfd.
    Pidfd,
    /// IPv4/IPv6 raw or ping socket.
    RawSocket,
}

impl FdKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            FdKind::Reg => "reg",
            FdKind::Pipe => "pipe",
            FdKind::Fifo => "fifo",
            FdKind::UnixSocket => "unix",
            FdKind::InetSocket => "inet",
            FdKind::NetlinkSocket => "netlink",
            FdKind::PacketSocket => "packet",
            FdKind::Eventfd => "eventfd",
            FdKind::Epoll => "epoll",
            FdKind::Signalfd => "signalfd",
            FdKind::Timerfd => "timerfd",
            FdKind::Inotify => "inotify",
            FdKind::Fanotify => "fanotify",
            FdKind::Memfd => "memfd",
            FdKind::Tty => "tty",
            FdKind::Ns => "ns",
            FdKind::Unsupported => "unsupported",
            FdKind::Pidfd => "pidfd",
            FdKind::RawSocket => "raw",
        }
    }
}

impl Describe for FdKind {
    fn describe(&self) -> Node {
        Node::Str(self.name().to_owned())
    }
}

/// One file object of the dump.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Object id, unique across the dump.
    pub id: u32,
    /// Which object image holds it.
    pub kind: FdKind,
}

/// One descriptor of a task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdinfoEntry {
    /// Descriptor number.
    pub fd: u32,
    /// Status flags of the open file description (fdinfo `flags:`).
    pub flags: OpenFlags,
    /// `FD_CLOEXEC` is set on the descriptor.
    pub cloexec: bool,
    /// Object kind.
    pub kind: FdKind,
    /// Object id (in `files.img` and the kind's image).
    pub id: u32,
}

impl Describe for FileEntry {
    fn describe(&self) -> Node {
        Obj::new().f("id", self.id).d("kind", &self.kind).done()
    }
}

impl Describe for FdinfoEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("fd", self.fd)
            .d("flags", &self.flags)
            .f("cloexec", self.cloexec)
            .d("kind", &self.kind)
            .f("id", self.id)
            .done()
    }
}

/// A file lock or lease held by the tree (`file-locks.img`, `--file-locks`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLockEntry {
    /// The task that takes it again (a POSIX lock's owner; for the others,
    /// the first task holding the description).
    pub pid: u32,
    /// The descriptor it takes it through.
    pub fd: u32,
    /// The open file description (file object id).
    pub id: u32,
    /// 0 POSIX (fcntl F_SETLK), 1 OFD, 2 flock, 3 lease.
    pub kind: u8,
    /// true: write (exclusive), false: read (shared).
    pub write: bool,
    /// First byte (byte-range locks).
    pub start: i64,
    /// Last byte, None: to the end of the file.
    pub end: Option<i64>,
    /// A flock lock held through the description of a file mapping and of
    /// no descriptor (the file was mapped and closed, as the JVM does with
    /// its hsperfdata file): the start of that VMA of `pid`, whose mapping
    /// takes it again (`fd` and `id` unused); 0: held through `fd`
    /// (format version 2).
    pub vma: u64,
}

impl FileLockEntry {
    /// The kind's name.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            0 => "POSIX lock",
            1 => "OFD lock",
            2 => "flock lock",
            3 => "lease",
            _ => "?",
        }
    }
}

impl Describe for FileLockEntry {
    fn describe(&self) -> Node {
        let range = match self.kind {
            0 | 1 => format!("{}..{}", self.start, self.end.map_or_else(|| "EOF".to_string(), |e| e.to_string())),
            _ => "whole file".into(),
        };
        let o = Obj::new().f("pid", self.pid);
        let o = if self.vma != 0 { o.addr("mapping", self.vma) } else { o.f("fd", self.fd).f("id", self.id) };
        o.f("kind", self.kind_name()).f("type", if self.write { "write" } else { "read" }).f("range", range).done()
    }
}

/// The signal owner of an open file description (`fown.img`): who gets
/// SIGIO/SIGURG (F_SETOWN_EX), which signal (F_SETSIG), and the
/// credentials it was set with (F_GETOWNER_UIDS: the kernel checks them
/// against the owner's before each signal). Only descriptions with an
/// owner or a signal have one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FownEntry {
    /// The open file description (file object id).
    pub id: u32,
    /// F_OWNER_TID 0, F_OWNER_PID 1, F_OWNER_PGRP 2.
    pub owner_type: u32,
    /// Owner's thread, process or group id; 0: no owner.
    pub pid: u32,
    /// F_SETSIG signal; 0: SIGIO.
    pub signum: u32,
    /// Real uid of the task that set the owner.
    pub uid: u32,
    /// Its effective uid.
    pub euid: u32,
    /// The description is in O_ASYNC mode.
    pub async_mode: bool,
}

impl FownEntry {
    /// The owner type's name.
    pub fn type_name(&self) -> &'static str {
        match self.owner_type {
            0 => "thread",
            1 => "process",
            2 => "process group",
            _ => "?",
        }
    }
}

impl Describe for FownEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("id", self.id)
            .f("owner", format!("{} {}", self.type_name(), self.pid))
            .f("signum", self.signum)
            .f("uid", self.uid)
            .f("euid", self.euid)
            .f("async", self.async_mode)
            .done()
    }
}
