//! A task's descriptor table and the registry of descriptor kinds.
//!
//! Dump: every fd from /proc/pid/fd is classified by [`classify`] and handed
//! to the module of its kind, once per open file description: descriptors
//! that share one (dup, fork, SCM_RIGHTS), in one task or several, are found
//! with kcmp(KCMP_FILE) among the descriptions of the same file (device and
//! inode) and get one id. A kind without a module makes the dump fail,
//! naming pid, fd and kind.
//!
//! Restore: sharing is the general case, not a feature of each kind. The
//! engine creates every open file description once, before the tree is
//! forked ([`open_all`]: each kind's `open` builds its objects, pipes with
//! their data, files at their offsets), and moves them above every number
//! the tree uses ([`Opened::place`]). The tree inherits them; each task's
//! restorer dup3()s the ones it owns onto their numbers and closes the
//! rest. A descriptor that shares a description with another task's is
//! thereby the same description again: offsets and status flags stay
//! shared. The only exception are files that cannot exist before the tree
//! does (`/proc/<pid>/...` of a task of the tree): they are opened in the
//! task by the engine once every task is on its final trap ([`open_late`]).
use crate::error::{Context, Error, Result};
use crate::image::files::{FdKind, FdinfoEntry, FileEntry, OpenFlags};
use crate::image::pipes::{FifoEntry, PipeDataEntry, PipeEntry};
use crate::image::reg_files::RegFileEntry;
use crate::image::signalfd::SignalfdEntry;
use crate::image::tty::{TtyEntry, TtyInfoEntry};
use crate::image::unix_sk::UnixSkEntry;
use crate::image::{kinds, ImageDir, ImageDirReader};
use crate::infect::Tracee;
use crate::proc::fdinfo::{self, FdTarget};
use crate::restore::plan::PlanBuilder;
use crate::sys::misc::{kcmp_file, KcmpOrder};
use crate::sys::{Pid, Sysno};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// Every file object of a dump, as the images hold them.
#[derive(Debug, Default)]
pub struct FileImages {
    /// files.img: id and kind of every open file description.
    pub files: Vec<FileEntry>,
    /// reg-files.img.
    pub reg: Vec<RegFileEntry>,
    /// tty.img.
    pub tty: Vec<TtyEntry>,
    /// signalfd.img.
    pub signalfd: Vec<SignalfdEntry>,
    /// fown.img: signal owners of descriptions (written only if any).
    pub fown: Vec<crate::image::files::FownEntry>,
    /// tty-info.img.
    pub tty_info: Vec<TtyInfoEntry>,
    /// Dump only: what the terminal module resolves once the whole tree is seen.
    pub tty_dump: super::tty::DumpState,
    /// pipes.img.
    pub pipes: Vec<PipeEntry>,
    /// fifo.img.
    pub fifo: Vec<FifoEntry>,
    /// pipes-data.img: capacity and data of every pipe and FIFO.
    pub pipe_data: Vec<PipeDataEntry>,
    /// unixsk.img.
    pub unix: Vec<UnixSkEntry>,
    /// netlink-sk.img.
    pub netlink: Vec<crate::image::netlink_sk::NetlinkSkEntry>,
    /// inetsk.img.
    pub inet: Vec<crate::image::inet_sk::InetSkEntry>,
    /// rawsk.img: raw and ping sockets.
    pub raw: Vec<crate::image::raw_sk::RawSkEntry>,
    /// packetsk.img.
    pub packet: Vec<crate::image::packet_sk::PacketSkEntry>,
    /// Dump only: what packet_diag said about every packet socket, by inode.
    pub packet_diag: Option<HashMap<u32, crate::sys::sock_diag::PacketDiag>>,
    /// Dump only: what inet_diag said about every TCP and UDP socket, by inode.
    pub inet_diag: Option<HashMap<u32, crate::sys::sock_diag::InetDiag>>,
    /// Dump only: crtools' copies of the connections it put in repair mode
    /// (`--tcp-established`), switched back if the tree lives on.
    pub inet_repair: Vec<super::inet_sk::Repaired>,
    /// file-locks.img (`--file-locks`).
    pub locks: Vec<crate::image::files::FileLockEntry>,
    /// ghost-files.img: unlinked files copied into the images.
    pub ghosts: Vec<crate::image::reg_files::GhostFileEntry>,
    /// ghost-data.img: their data runs.
    pub ghost_data: Vec<crate::image::reg_files::GhostDataEntry>,
    /// Dump only: ghost ids by (device, inode).
    pub ghost_ids: HashMap<(u64, u64), u32>,
    /// Dump only: link-remap names this dump created (removed if it fails).
    pub remaps: Vec<std::path::PathBuf>,
    /// Dump only: pipe ids by (device, inode) of the pipe.
    pub pipe_ids: HashMap<(u64, u64), u32>,
    /// Dump only: what unix_diag said about every unix socket, read once
    /// the tree is frozen, and who holds each dumped one (task, fd).
    pub unix_diag: Option<HashMap<u32, crate::sys::sock_diag::UnixDiag>>,
    /// Dump only: the task and fd of each dumped unix socket, by inode.
    pub unix_owner: HashMap<u32, (Pid, i32)>,
    /// Dump only: descriptions found in flight in a unix socket's queue
    /// (SCM_RIGHTS), received into crtools, still to be dumped.
    pub inflight: Vec<InFlight>,
    /// Event and special descriptors (eventfd, epoll, signalfd, timerfd,
    /// inotify, pidfd, memfd).
    pub ev: crate::image::events::EventImages,
}

/// A description in flight in a unix socket's queue: the copy crtools
/// received by peeking, and the message whose `fds` get its id.
#[derive(Debug)]
pub struct InFlight {
    /// crtools' copy.
    pub fd: OwnedFd,
    /// Index of the socket in [`FileImages::unix`].
    pub entry: usize,
    /// Index of the message in its queue.
    pub msg: usize,
}

impl FileImages {
    /// Writes every file image.
    pub fn write(&self, img: &ImageDir) -> Result<()> {
        fn one<K: crate::image::ImageFormat<Head = ()>>(img: &ImageDir, items: &[K::Entry]) -> Result<()> {
            let w = |e: crate::image::ImageError| Error::new(format!("write {} image: {e}", K::KIND.name()));
            let mut f = img.create_image::<K>(None, &()).map_err(w)?;
            for e in items {
                f.write(e).map_err(w)?;
            }
            f.finish().map(drop).map_err(w)
        }
        one::<kinds::Files>(img, &self.files)?;
        one::<kinds::RegFiles>(img, &self.reg)?;
        one::<kinds::Tty>(img, &self.tty)?;
        one::<kinds::TtyInfo>(img, &self.tty_info)?;
        one::<kinds::Signalfd>(img, &self.signalfd)?;
        if !self.fown.is_empty() {
            one::<kinds::Fown>(img, &self.fown)?;
        }
        one::<kinds::Pipes>(img, &self.pipes)?;
        one::<kinds::Fifo>(img, &self.fifo)?;
        one::<kinds::PipesData>(img, &self.pipe_data)?;
        one::<kinds::UnixSk>(img, &self.unix)?;
        one::<kinds::NetlinkSk>(img, &self.netlink)?;
        one::<kinds::InetSk>(img, &self.inet)?;
        if !self.raw.is_empty() {
            one::<kinds::RawSk>(img, &self.raw)?;
        }
        if !self.packet.is_empty() {
            one::<kinds::PacketSk>(img, &self.packet)?;
        }
        one::<kinds::FileLocks>(img, &self.locks)?;
        one::<kinds::GhostFiles>(img, &self.ghosts)?;
        one::<kinds::GhostData>(img, &self.ghost_data)?;
        one::<kinds::Eventfd>(img, &self.ev.eventfd)?;
        one::<kinds::Epoll>(img, &self.ev.epoll)?;
        one::<kinds::Timerfd>(img, &self.ev.timerfd)?;
        one::<kinds::Inotify>(img, &self.ev.inotify)?;
        one::<kinds::Pidfd>(img, &self.ev.pidfd)?;
        one::<kinds::Memfd>(img, &self.ev.memfd)?;
        super::memfd::write_images(img, &self.ev)?;
        one::<kinds::Fanotify>(img, &self.ev.fanotify)
    }

    /// Reads every file image (an image of a kind the dump had none of may
    /// be absent).
    pub fn read(dir: &ImageDirReader) -> Result<FileImages> {
        fn one<K: crate::image::ImageFormat<Head = ()>>(dir: &ImageDirReader, required: bool) -> Result<Vec<K::Entry>> {
            if !required && !dir.contains(K::KIND, None) {
                return Ok(Vec::new());
            }
            let e = |err: crate::image::ImageError| Error::new(format!("{}: {err}", K::KIND.name()));
            Ok(dir.open_image::<K>(None).map_err(e)?.collect_entries().map_err(e)?.1)
        }
        Ok(FileImages {
            files: one::<kinds::Files>(dir, true)?,
            reg: one::<kinds::RegFiles>(dir, true)?,
            tty: one::<kinds::Tty>(dir, false)?,
            tty_info: one::<kinds::TtyInfo>(dir, false)?,
            signalfd: one::<kinds::Signalfd>(dir, false)?,
            fown: one::<kinds::Fown>(dir, false)?,
            tty_dump: Default::default(),
            pipes: one::<kinds::Pipes>(dir, false)?,
            fifo: one::<kinds::Fifo>(dir, false)?,
            pipe_data: one::<kinds::PipesData>(dir, false)?,
            unix: one::<kinds::UnixSk>(dir, false)?,
            netlink: one::<kinds::NetlinkSk>(dir, false)?,
            inet: one::<kinds::InetSk>(dir, false)?,
            raw: one::<kinds::RawSk>(dir, false)?,
            packet: one::<kinds::PacketSk>(dir, false)?,
            packet_diag: None,
            inet_diag: None,
            inet_repair: Vec::new(),
            locks: one::<kinds::FileLocks>(dir, false)?,
            ghosts: one::<kinds::GhostFiles>(dir, false)?,
            ghost_data: one::<kinds::GhostData>(dir, false)?,
            ghost_ids: HashMap::new(),
            remaps: Vec::new(),
            pipe_ids: HashMap::new(),
            unix_diag: None,
            unix_owner: HashMap::new(),
            inflight: Vec::new(),
            ev: crate::image::events::EventImages {
                eventfd: one::<kinds::Eventfd>(dir, false)?,
                epoll: one::<kinds::Epoll>(dir, false)?,
                timerfd: one::<kinds::Timerfd>(dir, false)?,
                inotify: one::<kinds::Inotify>(dir, false)?,
                pidfd: one::<kinds::Pidfd>(dir, false)?,
                memfd: one::<kinds::Memfd>(dir, false)?,
                memfd_data: one::<kinds::MemfdData>(dir, false)?,
                memfd_pages: super::memfd::open_pages(dir)?,
                fanotify: one::<kinds::Fanotify>(dir, false)?,
                ..Default::default()
            },
        })
    }

    /// The kind of file object `id`.
    pub fn kind_of(&self, id: u32) -> Option<FdKind> {
        self.files.iter().find(|f| f.id == id).map(|f| f.kind)
    }
}

/// What the options of the run say about descriptors.
#[derive(Clone, Debug, Default)]
pub struct FdCtx {
    /// `--shell-job`: a terminal from outside the tree may be dumped, and is
    /// reconnected to crtools' own terminal at restore.
    pub shell_job: bool,
    /// At restore with `--shell-job`: the terminal crtools runs on.
    pub tty_path: Option<std::path::PathBuf>,
    /// `--evasive-devices`: a device node that is gone may be replaced by
    /// any other node of the same device.
    pub evasive_devices: bool,
    /// At restore: every pid and tid of the tree (their /proc entries do
    /// not exist before the tree does).
    pub tree_tids: Vec<u32>,
    /// `--ext-unix-sk`: a unix socket whose peer is outside the tree is
    /// dumped, and reconnected to the peer's address at restore.
    pub ext_unix_sk: bool,
    /// At restore, `--inherit-fd`: (crtools' descriptor, dumped file key).
    pub inherit_fds: Vec<(i32, String)>,
    /// `--link-remap`: unlinked files still linked elsewhere are linked
    /// back under a temporary name until restore.
    pub link_remap: bool,
    /// `--ghost-limit`: the most data an unlinked file may hold to be
    /// copied into the images.
    pub ghost_limit: u64,
    /// `--file-locks`: locks and leases held by the tree are dumped and
    /// taken again at restore.
    pub file_locks: bool,
    /// `--tcp-established`: established TCP connections are dumped in
    /// repair mode and restored with TCP_REPAIR.
    pub tcp_established: bool,
    /// `--tcp-close`: TCP connections are dumped (and, at restore, come
    /// back) as closed sockets (see `inet_sk::close_entry`).
    pub tcp_close: bool,
    /// `--skip-in-flight`: connections waiting in a listener's accept
    /// queue are left out of the dump.
    pub skip_in_flight: bool,
    /// At restore: where the tree's removed working directories were (a
    /// removed directory open as a descriptor by that name is the same
    /// directory: its ghost stays for the working directory).
    pub removed_cwds: Vec<std::path::PathBuf>,
    /// At restore: the image directory (TCP connections held since the
    /// dump are found by it).
    pub images_dir: Option<std::path::PathBuf>,
    /// At restore: the first (task, fd) that holds each file object, to
    /// name it in errors.
    pub owners: HashMap<u32, (Pid, u32)>,
}

impl FdCtx {
    /// "fd N of task P" for file object `id`, as errors name it.
    pub fn who(&self, id: u32) -> String {
        match self.owners.get(&id) {
            Some((pid, fd)) => format!("task {pid}: fd {fd}"),
            None => format!("file {id}"),
        }
    }
}

/// Dumps one open file description (the first fd that refers to it).
pub type DumpFn = fn(
    cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    info: &fdinfo::FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()>;

/// Creates, in the engine, every open file description of the kind that
/// the images hold, and adds each to `out` under its id.
pub type OpenFn = fn(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()>;

/// A kind of descriptor this version can checkpoint.
pub struct KindOps {
    /// The image kind of its objects.
    pub kind: FdKind,
    /// Dump side.
    pub dump: DumpFn,
    /// Restore side.
    pub open: OpenFn,
}

/// The registry: one row per supported descriptor kind.
pub static KINDS: &[KindOps] = &[
    KindOps { kind: FdKind::Reg, dump: super::reg_file::dump, open: super::reg_file::open },
    KindOps { kind: FdKind::Tty, dump: super::tty::dump, open: super::tty::open },
    KindOps { kind: FdKind::Pipe, dump: super::pipe::dump, open: super::pipe::open },
    KindOps { kind: FdKind::Fifo, dump: super::fifo::dump, open: super::fifo::open },
    KindOps { kind: FdKind::Signalfd, dump: super::signalfd::dump, open: super::signalfd::open },
    KindOps { kind: FdKind::UnixSocket, dump: super::unix_sk::dump, open: super::unix_sk::open },
    KindOps { kind: FdKind::NetlinkSocket, dump: super::netlink_sk::dump, open: super::netlink_sk::open },
    KindOps { kind: FdKind::Eventfd, dump: super::eventfd::dump, open: super::eventfd::open },
    KindOps { kind: FdKind::Timerfd, dump: super::timerfd::dump, open: super::timerfd::open },
    KindOps { kind: FdKind::Inotify, dump: super::inotify::dump, open: super::inotify::open },
    KindOps { kind: FdKind::Memfd, dump: super::memfd::dump, open: super::memfd::open },
    KindOps { kind: FdKind::Pidfd, dump: super::pidfd::dump, open: super::pidfd::open },
    KindOps { kind: FdKind::Fanotify, dump: super::fanotify::dump, open: super::fanotify::open },
    KindOps { kind: FdKind::InetSocket, dump: super::inet_sk::dump, open: super::inet_sk::open },
    KindOps { kind: FdKind::RawSocket, dump: super::raw_sk::dump, open: super::raw_sk::open },
    KindOps { kind: FdKind::PacketSocket, dump: super::packet_sk::dump, open: super::packet_sk::open },
    // Last: its watches need every other description opened.
    KindOps { kind: FdKind::Epoll, dump: super::epoll::dump, open: super::epoll::open },
];

const S_IFMT: u32 = 0o170000;
const S_IFIFO: u32 = 0o010000;

/// Which kind a descriptor is, or why it is not supported.
pub fn classify(pid: Pid, fd: i32, target: &FdTarget) -> std::result::Result<FdKind, String> {
    match target {
        FdTarget::Path(p) if p.deleted && p.path.as_os_str().as_encoded_bytes().starts_with(b"/memfd:") => {
            Ok(FdKind::Memfd)
        }
        FdTarget::Path(p) => {
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}")))
                .map_err(|e| format!("{}: {e}", p.path.display()))?;
            let is_chr = md.mode() & S_IFMT == 0o020000;
            if md.mode() & S_IFMT == S_IFIFO {
                return Ok(FdKind::Fifo);
            }
            match super::tty::kind_of(md.rdev()) {
                Some(Ok(())) if is_chr => Ok(FdKind::Tty),
                Some(Err(what)) if is_chr => Err(format!("{what} {}", p.path.display())),
                _ => Ok(FdKind::Reg),
            }
        }
        FdTarget::Pipe(_) => Ok(FdKind::Pipe),
        FdTarget::Socket(ino) => {
            // sockfs names the protocol: UNIX-STREAM, TCP, NETLINK, ...
            let link = crate::proc::pid_path(pid, &format!("fd/{fd}"));
            let proto = crate::sys::fs::getxattr(&link, "system.sockprotoname")
                .map(|b| String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or(&[])).into_owned())
                .unwrap_or_default();
            if proto.starts_with("UNIX") {
                Ok(FdKind::UnixSocket)
            } else if proto == "NETLINK" {
                Ok(FdKind::NetlinkSocket)
            } else if super::inet_sk::handles(&proto) {
                Ok(FdKind::InetSocket)
            } else if super::raw_sk::handles(&proto) {
                Ok(FdKind::RawSocket)
            } else if proto == "PACKET" {
                Ok(FdKind::PacketSocket)
            } else if proto.is_empty() {
                Err(format!("socket:[{ino}]"))
            } else {
                Err(format!("{proto} socket:[{ino}]"))
            }
        }
        FdTarget::AnonInode(n) => match n.as_str() {
            "[eventfd]" => Ok(FdKind::Eventfd),
            "[eventpoll]" => Ok(FdKind::Epoll),
            "[signalfd]" => Ok(FdKind::Signalfd),
            "[timerfd]" => Ok(FdKind::Timerfd),
            "inotify" => Ok(FdKind::Inotify),
            "[pidfd]" => Ok(FdKind::Pidfd),
            "[fanotify]" => Ok(FdKind::Fanotify),
            _ => Err(format!("anon_inode:{n}")),
        },
        // A namespace (nsfs): as a file opened through /proc/self/ns.
        FdTarget::Inode { kind, .. } if super::reg_file::namespace_kind(kind) => Ok(FdKind::Reg),
        FdTarget::Inode { kind, ino } => Err(format!("{kind}:[{ino}]")),
        FdTarget::Other(raw) => Err(String::from_utf8_lossy(raw).into_owned()),
    }
}

/// The file behind a description: its kind, device and inode.
type FileKey = (FdKind, u64, u64);

/// The file objects of the whole dump, across tasks.
#[derive(Default)]
pub struct DumpFiles {
    next_id: u32,
    /// Descriptions dumped so far by the file behind them (kind, device,
    /// inode): the (pid, fd) that first showed each, and its id.
    seen: HashMap<FileKey, Vec<(Pid, i32, u32)>>,
    /// The images being built.
    pub images: FileImages,
    /// crtools' copies of descriptions that were in flight, kept open so
    /// `seen` stays valid.
    held: Vec<OwnedFd>,
    /// The images are complete: keep the link-remap names.
    committed: bool,
}

impl DumpFiles {
    /// The dump succeeded: what it linked back stays until restore.
    pub fn commit(&mut self) {
        self.committed = true;
    }

    /// The tree lives on (`-s`): connections in repair mode leave it.
    pub fn release_repair(&mut self) {
        super::inet_sk::repair_off(&mut self.images.inet_repair);
    }
}

impl Drop for DumpFiles {
    /// A failed dump takes back the links it made (`--link-remap`).
    fn drop(&mut self) {
        if !self.committed {
            // Before the tree is resumed (it is dropped after this).
            super::inet_sk::repair_off(&mut self.images.inet_repair);
            for p in &self.images.remaps {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// crtools' own duplicate of descriptor `fd` of `pid` (pidfd_getfd: the
/// same open file description, taken without opening anything), to read
/// its state while the tree is frozen.
pub fn take_fd(pid: Pid, fd: i32) -> Result<OwnedFd> {
    let pidfd = crate::sys::pidfd::pidfd_open(pid, crate::sys::pidfd::PidfdFlags::empty())
        .ctx(pid, &format!("fd {fd}: pidfd_open"))?;
    crate::sys::pidfd::pidfd_getfd(pidfd.as_fd(), fd).ctx(pid, &format!("fd {fd}: pidfd_getfd"))
}

/// Dumps the descriptor table of `pid`, leaving out `skip` (the parasite's
/// socket); returns its fdinfo entries.
pub fn dump(cx: &FdCtx, pid: Pid, skip: Option<i32>, all: &mut DumpFiles) -> Result<Vec<FdinfoEntry>> {
    let list = fdinfo::list_fds(pid).ctx(pid, "list descriptors")?;
    let mut out = Vec::with_capacity(list.len());
    for e in list.iter().filter(|e| Some(e.fd) != skip) {
        let (id, kind, info) = dump_one(cx, pid, e.fd, &e.target, all)?;
        if cx.file_locks {
            super::file_lock::collect(pid, e.fd, id, &info, &mut all.images.locks)?;
        }
        let flags = OpenFlags::from_bits_retain(info.flags);
        let cloexec = flags.contains(OpenFlags::O_CLOEXEC);
        let flags = flags - OpenFlags::O_CLOEXEC;
        out.push(FdinfoEntry { fd: e.fd as u32, flags, cloexec, kind, id });
        dump_inflight(cx, all)?;
    }
    Ok(out)
}

/// The id of the open file description behind `fd` of `pid`, dumping it
/// the first time it is seen.
fn dump_one(
    cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    all: &mut DumpFiles,
) -> Result<(u32, FdKind, fdinfo::FdInfo)> {
    use std::os::unix::fs::MetadataExt;
    let kind = classify(pid, fd, target)
        .map_err(|what| Error::refuse(pid, format!("fd {fd}: {what}: this kind of descriptor is not supported yet")))?;
    let info = fdinfo::read(pid, fd).ctx(pid, &format!("read fdinfo of fd {fd}"))?;
    let md = std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}"))).ctx(pid, &format!("stat fd {fd}"))?;
    let key = (kind, md.dev(), md.ino());
    for &(opid, ofd, id) in all.seen.get(&key).map(|v| v.as_slice()).unwrap_or(&[]) {
        if kcmp_file(opid, ofd, pid, fd).ctx(pid, "kcmp")? == KcmpOrder::Equal {
            return Ok((id, kind, info));
        }
    }
    all.next_id += 1;
    let id = all.next_id;
    let ops = KINDS
        .iter()
        .find(|k| k.kind == kind)
        .ok_or_else(|| Error::refuse(pid, format!("fd {fd}: {} descriptors are not supported yet", kind.name())))?;
    // The signal owner is the description's, whatever its kind. A lease
    // dumped with --file-locks sets it again when the same task takes it.
    let lease = cx.file_locks && super::file_lock::holds_lease(&info);
    if !lease {
        if let Some(f) = super::fown::dump(pid, fd, id, info.flags, &cx.tree_tids)? {
            all.images.fown.push(f);
        }
    }
    (ops.dump)(cx, pid, fd, target, &info, id, &mut all.images)?;
    all.images.files.push(FileEntry { id, kind });
    all.seen.entry(key).or_default().push((pid, fd, id));
    Ok((id, kind, info))
}

/// Dumps the descriptions found in flight in unix socket queues (which may
/// hold more in flight in turn). crtools keeps its copies until the dump
/// ends, so later tasks' descriptors are matched against them.
fn dump_inflight(cx: &FdCtx, all: &mut DumpFiles) -> Result<()> {
    let me = crate::sys::misc::getpid();
    while !all.images.inflight.is_empty() {
        let batch = std::mem::take(&mut all.images.inflight);
        for f in batch {
            let raw = f.fd.as_raw_fd();
            let link = std::fs::read_link(format!("/proc/self/fd/{raw}"))
                .map_err(|e| Error::new(format!("a descriptor in flight: {e}")))?;
            use std::os::unix::ffi::OsStrExt;
            let target = fdinfo::parse_fd_target(link.as_os_str().as_bytes());
            let (id, _, _) = dump_one(cx, me, raw, &target, all).map_err(|e| Error {
                msg: format!("a descriptor in flight in a unix socket's queue: {e}"),
                pid: None,
                refused: e.refused,
            })?;
            all.images.unix[f.entry].queue[f.msg].fds.push(id);
            all.held.push(f.fd);
        }
    }
    Ok(())
}

/// Completes the file images once every task is dumped (what needs the
/// whole tree: which unix socket peers are outside it).
pub fn finish_dump(cx: &FdCtx, all: &mut DumpFiles) -> Result<()> {
    super::pipe::finish_dump(&mut all.images);
    super::unix_sk::finish_dump(cx, &mut all.images)?;
    let cands: Vec<super::epoll::Candidate> = all
        .seen
        .iter()
        .flat_map(|(&(kind, dev, ino), v)| {
            v.iter().map(move |&(pid, fd, id)| super::epoll::Candidate { kind, dev, ino, pid, fd, id })
        })
        .collect();
    super::epoll::finish_dump(&mut all.images, &cands)
}

/// A file that is opened in its task once the whole tree exists.
#[derive(Clone, Debug)]
pub struct Late {
    /// Path to open.
    pub path: Vec<u8>,
    /// open(2) flags.
    pub flags: u32,
    /// Position to seek to (u64::MAX: none).
    pub pos: u64,
    /// Not a path: a pidfd of this task of the tree (pidfd_open with
    /// `flags`).
    pub pidfd: Option<u32>,
}

/// Work a kind leaves for when every task of the tree exists (on its
/// final trap, not yet released): it runs in the engine on the engine's
/// copies of the descriptions, which the tree shares.
pub type Deferred = Box<dyn FnOnce(&Opened) -> Result<()>>;

/// The ids in [`Opened`] of descriptions the engine opens for itself, not
/// for a descriptor of the dump: each kind in a space of its own, above
/// every file id of a dump (and of the `--link-remap` mapping entries at
/// 0x2000_0000). Two kinds sharing a space once gave a session leader's
/// controlling terminal and a mapped memfd the same id: one replaced the
/// other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineIds {
    /// A mapped unlinked file, by ghost id.
    GhostMapping,
    /// A controlling terminal, by tty id.
    Ctty,
    /// A mapped memfd, by memfd id.
    MemfdMapping,
}

impl EngineIds {
    /// The id of object `n` of this kind (`n` below 0x2000_0000, as every
    /// id a dump gives).
    pub fn id(self, n: u32) -> u32 {
        debug_assert!(n < 0x2000_0000, "object id {n:#x} outside its space");
        let space: u32 = match self {
            EngineIds::GhostMapping => 0x4000_0000,
            EngineIds::Ctty => 0x8000_0000,
            EngineIds::MemfdMapping => 0xC000_0000,
        };
        space | (n & 0x1fff_ffff)
    }
}

/// The engine's copy of every open file description, by id.
#[derive(Default)]
pub struct Opened {
    fds: BTreeMap<u32, OwnedFd>,
    late: BTreeMap<u32, Late>,
    /// Objects kept open until the tree runs (a FIFO's holder).
    keep: Vec<OwnedFd>,
    deferred: Vec<Deferred>,
    /// Removed once the tree runs.
    remove: Vec<std::path::PathBuf>,
    /// The locks the tasks take again (`--file-locks`).
    locks: Vec<crate::image::files::FileLockEntry>,
    /// Removed directories made again above ghost files (see
    /// [`make_missing_parents`]): the restore takes them into a
    /// [`MadeDirs`].
    pub made_parents: Vec<std::path::PathBuf>,
    /// Ghost directories kept for a removed working directory of the same
    /// name: where each was, where it was made (removed once the tree runs,
    /// with the working directories).
    pub kept_dirs: std::collections::HashMap<std::path::PathBuf, std::path::PathBuf>,
    /// Epoll watches on descriptions opened late (pidfds), added in a
    /// task once those exist ([`super::epoll::add_late`]).
    pub(crate) late_epoll: Vec<super::epoll::LateWatch>,
}

/// Makes the directories above `path` that are missing (removed since the
/// dump, with what the tree still holds inside them), top down, each
/// recorded in `made` to be removed again (bottom up).
pub fn make_missing_parents(
    path: &std::path::Path,
    made: &mut Vec<std::path::PathBuf>,
) -> std::result::Result<(), String> {
    let mut missing = Vec::new();
    let mut at = path.parent();
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        std::fs::create_dir(&d).map_err(|e| format!("make the removed directory {} again: {e}", d.display()))?;
        made.push(d);
    }
    Ok(())
}

/// Directories made for a restore only (see [`make_missing_parents`]),
/// removed bottom up when dropped.
#[derive(Debug, Default)]
pub struct MadeDirs(pub Vec<std::path::PathBuf>);

impl Drop for MadeDirs {
    fn drop(&mut self) {
        for d in self.0.drain(..).rev() {
            if let Err(e) = std::fs::remove_dir(&d) {
                log::warn!("remove the directory {} made for the restore: {e}", d.display());
            }
        }
    }
}

impl Opened {
    /// The flock lock task `pid` holds through its file mapping at
    /// `start` (taken again by that mapping), if any.
    pub fn mapping_lock(&self, pid: Pid, start: u64) -> Option<&crate::image::files::FileLockEntry> {
        self.mapping_locks(pid).find(|l| l.vma == start)
    }

    /// The flock locks task `pid` holds through file mappings.
    pub fn mapping_locks(&self, pid: Pid) -> impl Iterator<Item = &crate::image::files::FileLockEntry> {
        self.locks.iter().filter(move |l| l.vma != 0 && l.pid == pid.0 as u32)
    }

    /// Records the description of `id`.
    pub fn add(&mut self, id: u32, fd: OwnedFd) {
        let earlier = self.fds.insert(id, fd);
        debug_assert!(earlier.is_none(), "two descriptions under id {id:#x}");
    }

    /// Whether `id` has its description already (`--inherit-fd`): a kind
    /// leaves such ids alone.
    pub fn has(&self, id: u32) -> bool {
        self.fds.contains_key(&id) || self.late.contains_key(&id)
    }

    /// Records `id` as opened late, in its task.
    pub fn add_late(&mut self, id: u32, late: Late) {
        self.late.insert(id, late);
    }

    /// Keeps `fd` open in the engine until the tree runs.
    pub fn keep(&mut self, fd: OwnedFd) {
        self.keep.push(fd);
    }

    /// Removes `path` once the restored tree runs ([`Opened::restored`]).
    pub fn remove_after_restore(&mut self, path: std::path::PathBuf) {
        if !self.remove.contains(&path) {
            self.remove.push(path);
        }
    }

    /// The tree runs: remove what was only needed to restore it
    /// (link-remap names).
    pub fn restored(&mut self) {
        for p in std::mem::take(&mut self.remove) {
            if let Err(e) = std::fs::remove_file(&p) {
                log::warn!("remove {}: {e}", p.display());
            }
        }
    }

    /// Runs `f` once the tree exists ([`Opened::complete`]).
    pub fn defer(&mut self, f: Deferred) {
        self.deferred.push(f);
    }

    /// Runs the deferred work, in the order it was added.
    pub fn complete(&mut self) -> Result<()> {
        for f in std::mem::take(&mut self.deferred) {
            f(self)?;
        }
        Ok(())
    }

    /// crtools' copy of the description of `id`.
    pub fn get(&self, id: u32) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.fds.get(&id).map(|f| f.as_fd())
    }

    /// Moves every description to a number of `base` or above, where no
    /// task's own descriptors or helpers are: the tree inherits them there.
    pub fn place(&mut self, base: RawFd) -> Result<()> {
        for (id, fd) in self.fds.iter_mut() {
            if fd.as_raw_fd() >= base {
                continue;
            }
            let high = crate::sys::fs::fcntl_dupfd(fd.as_fd(), base)
                .map_err(|e| Error::new(format!("file {id}: move it above fd {base}: {e}")))?;
            *fd = high;
        }
        Ok(())
    }

    /// Whether `id` is opened late, in its task.
    pub(crate) fn is_late(&self, id: u32) -> bool {
        self.late.contains_key(&id)
    }

    /// The inherited descriptor number of `id`.
    pub fn raw(&self, id: u32) -> Option<RawFd> {
        self.fds.get(&id).map(|f| f.as_raw_fd())
    }
}

/// The file ids `key` of `--inherit-fd` names: `pipe:[INODE]` (every
/// description of that pipe the tree held), `socket:[INODE]`, or a path
/// (with or without its leading '/', as CRIU takes it).
fn inherit_matches(images: &FileImages, key: &str) -> Vec<u32> {
    let ino_of = |prefix: &str| -> Option<u64> { key.strip_prefix(prefix)?.strip_suffix(']')?.parse().ok() };
    if let Some(ino) = ino_of("pipe:[") {
        let pipes: Vec<u32> = images.pipe_data.iter().filter(|d| d.ino == ino).map(|d| d.pipe_id).collect();
        return images.pipes.iter().filter(|p| pipes.contains(&p.pipe_id)).map(|p| p.id).collect();
    }
    if let Some(ino) = ino_of("socket:[") {
        let mut ids: Vec<u32> = images.unix.iter().filter(|u| u.ino as u64 == ino).map(|u| u.id).collect();
        ids.extend(images.inet.iter().filter(|u| u.ino as u64 == ino).map(|u| u.id));
        ids.extend(images.raw.iter().filter(|u| u.ino as u64 == ino).map(|u| u.id));
        ids.extend(images.packet.iter().filter(|u| u.ino as u64 == ino).map(|u| u.id));
        return ids;
    }
    let path = |p: &[u8]| p == key.as_bytes() || p.strip_prefix(b"/") == Some(key.as_bytes());
    let mut ids: Vec<u32> = images.reg.iter().filter(|r| path(r.path.as_bytes())).map(|r| r.id).collect();
    ids.extend(images.fifo.iter().filter(|f| path(f.path.as_bytes())).map(|f| f.id));
    ids
}

/// Creates every open file description of the images in the engine
/// (`--inherit-fd` ones are crtools' own descriptors instead).
pub fn open_all(cx: &FdCtx, images: &FileImages) -> Result<Opened> {
    let mut out = Opened { locks: images.locks.clone(), ..Default::default() };
    for (fd, key) in &cx.inherit_fds {
        let ids = inherit_matches(images, key);
        if ids.is_empty() {
            return Err(Error::new(format!("--inherit-fd fd[{fd}]:{key}: the images hold no such file")));
        }
        // SAFETY: only borrowed for the duplicate; crtools' caller gave it.
        let own = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        for id in ids {
            let dup = crate::sys::fs::fcntl_dupfd_cloexec(own, 3)
                .map_err(|e| Error::new(format!("--inherit-fd fd[{fd}]:{key}: descriptor {fd}: {e}")))?;
            log::info!("{}: {key} is crtools' descriptor {fd} (--inherit-fd)", cx.who(id));
            out.add(id, dup);
        }
    }
    for ops in KINDS {
        crate::fault::check(crate::fault::Fault::RestoreOpenKind)?;
        (ops.open)(cx, images, &mut out)?;
    }
    for f in &images.files {
        if !out.fds.contains_key(&f.id) && !out.late.contains_key(&f.id) {
            return Err(Error::new(format!("file {} ({}) has no record in its image", f.id, f.kind.name())));
        }
    }
    super::fown::open(&images.fown, &mut out)?;
    Ok(out)
}

/// Is `path` under /proc/<pid> of a task of the tree being restored?
pub fn is_tree_proc_path(cx: &FdCtx, path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/proc/") else { return false };
    let num = rest.split(|&c| c == b'/').next().unwrap_or(b"");
    std::str::from_utf8(num).ok().and_then(|s| s.parse::<u32>().ok()).is_some_and(|n| cx.tree_tids.contains(&n))
}

/// The descriptors a task opens late, in plan order, and the locks it
/// takes once every task exists.
#[derive(Debug, Default)]
pub struct LateFiles {
    entries: Vec<LateEntry>,
    /// (lock, `struct flock` in the task's arena).
    locks: Vec<(crate::image::files::FileLockEntry, restorer_plan::Str)>,
}

#[derive(Debug)]
struct LateEntry {
    /// File object id.
    id: u32,
    fd: i32,
    /// An earlier late descriptor of the task sharing this description.
    dup_of: Option<i32>,
    /// The path, in the task's arena.
    path: restorer_plan::Str,
    flags: u32,
    pos: u64,
    cloexec: bool,
    pidfd: Option<u32>,
}

impl LateFiles {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.locks.is_empty()
    }
}

/// `struct flock` (x86_64): l_type, l_whence, l_start, l_len, l_pid.
fn flock_bytes(l: &crate::image::files::FileLockEntry) -> [u8; 32] {
    let mut b = [0u8; 32];
    let ty: i16 = if l.write { 1 } else { 0 }; // F_WRLCK, F_RDLCK
    b[0..2].copy_from_slice(&ty.to_ne_bytes());
    // l_whence = SEEK_SET (0)
    b[8..16].copy_from_slice(&l.start.to_ne_bytes());
    let len = l.end.map_or(0, |e| e - l.start + 1);
    b[16..24].copy_from_slice(&len.to_ne_bytes());
    b
}

/// Adds the descriptor table to the plan; returns the descriptors the task
/// opens late and the locks it takes.
pub fn plan(b: &mut PlanBuilder, pid: Pid, fds: &[FdinfoEntry], opened: &Opened) -> Result<LateFiles> {
    let mut entries = Vec::with_capacity(fds.len());
    let mut late = LateFiles::default();
    for (i, fd) in fds.iter().enumerate() {
        if let Some(src) = opened.raw(fd.id) {
            entries.push(restorer_plan::FileEntry { fd: fd.fd as i32, src, cloexec: fd.cloexec as u32 });
        } else if let Some(l) = opened.late.get(&fd.id) {
            let dup_of = fds[..i].iter().find(|o| o.id == fd.id).map(|o| o.fd as i32);
            let path = b.add_str(&l.path);
            late.entries.push(LateEntry {
                id: fd.id,
                fd: fd.fd as i32,
                dup_of,
                path,
                flags: l.flags,
                pos: l.pos,
                cloexec: fd.cloexec,
                pidfd: l.pidfd,
            });
        } else {
            return Err(Error::task(pid, format!("fd {}: file {} was not restored", fd.fd, fd.id)));
        }
    }
    b.plan.files = b.add_table(&entries);
    for l in opened.locks.iter().filter(|l| l.pid == pid.0 as u32 && l.vma == 0) {
        if !fds.iter().any(|f| f.fd == l.fd && f.id == l.id) {
            return Err(Error::task(
                pid,
                format!("fd {}: its {} is on a descriptor it does not have", l.fd, l.kind_name()),
            ));
        }
        let at = b.add_table(&flock_bytes(l));
        late.locks.push((*l, restorer_plan::Str { off: at.off }));
    }
    Ok(late)
}

/// Refuses a late file (a /proc file of the tree, /dev/tty) whose
/// description several tasks share: each task would open its own. (A
/// shared pidfd is taken from its first task with pidfd_getfd instead,
/// see [`open_late`].)
pub fn check_late_sharing(opened: &Opened, tables: &[(Pid, &[FdinfoEntry])]) -> Result<()> {
    let mut owner: BTreeMap<u32, Pid> = BTreeMap::new();
    for &(pid, fds) in tables {
        for fd in fds.iter().filter(|f| opened.late.get(&f.id).is_some_and(|l| l.pidfd.is_none())) {
            match owner.insert(fd.id, pid) {
                Some(other) if other != pid => {
                    return Err(Error::refuse(
                        pid,
                        format!(
                            "fd {}: shares its open file {} with task {other}: \
                             such a file (a /proc file of the tree, /dev/tty) shared between tasks is not supported yet",
                            fd.fd,
                            String::from_utf8_lossy(&opened.late[&fd.id].path)
                        ),
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

const O_CLOEXEC: u64 = 0o2000000;
const F_SETFD: u64 = 2;
const FD_CLOEXEC: u64 = 1;
const AT_FDCWD: i64 = -100;

/// Which task first opened each late description, and under which fd: a
/// later task that shares it takes that very description with
/// pidfd_getfd, so it stays one (offset, flags).
#[derive(Debug, Default)]
pub struct LateSeen(BTreeMap<u32, (Pid, i32)>);

impl LateSeen {
    /// The first task that opened late description `id`, and its fd there.
    pub fn get(&self, id: u32) -> Option<(Pid, i32)> {
        self.0.get(&id).copied()
    }
}

/// Opens a task's late descriptors by remote syscalls, once every task is
/// on its final trap; `arena` is the address of the task's plan (the paths
/// are in it); `seen`: the late descriptions earlier tasks opened.
pub fn open_late(t: &mut Tracee, arena: u64, late: &LateFiles, seen: &mut LateSeen) -> Result<()> {
    let pid = t.pid();
    for e in &late.entries {
        let fd = e.fd;
        let cl = if e.cloexec { O_CLOEXEC } else { 0 };
        if let (None, Some(&(opid, ofd))) = (e.dup_of, seen.0.get(&e.id)) {
            let pfd = t
                .remote_syscall_ok(Sysno::pidfd_open, [opid.0 as u64, 0, 0, 0, 0, 0], "pidfd_open")
                .ctx(pid, &format!("fd {fd}: pidfd_open of task {opid}, which holds its description"))?;
            let got = t.remote_syscall_ok(Sysno::pidfd_getfd, [pfd, ofd as u64, 0, 0, 0, 0], "pidfd_getfd");
            t.remote_syscall_ok(Sysno::close, [pfd, 0, 0, 0, 0, 0], "close a pidfd").ctx(pid, "close")?;
            let got = got.ctx(pid, &format!("fd {fd}: take fd {ofd} of task {opid}"))?;
            if got == fd as u64 {
                // pidfd_getfd sets FD_CLOEXEC.
                let fl = if e.cloexec { FD_CLOEXEC } else { 0 };
                t.remote_syscall_ok(Sysno::fcntl, [got, F_SETFD, fl, 0, 0, 0], "set FD_CLOEXEC")
                    .ctx(pid, &format!("fd {fd}: F_SETFD"))?;
            } else {
                t.remote_syscall_ok(Sysno::dup3, [got, fd as u64, cl, 0, 0, 0], "dup3 a late file")
                    .ctx(pid, &format!("fd {fd}: dup3"))?;
                t.remote_syscall_ok(Sysno::close, [got, 0, 0, 0, 0, 0], "close a late file")
                    .ctx(pid, &format!("fd {fd}: close"))?;
            }
            log::debug!(task = pid.0; "task {pid}: fd {fd} shares fd {ofd} of task {opid}");
            continue;
        }
        seen.0.entry(e.id).or_insert((pid, fd));
        if let Some(src) = e.dup_of {
            t.remote_syscall_ok(Sysno::dup3, [src as u64, fd as u64, cl, 0, 0, 0], "dup3 a late file")
                .ctx(pid, &format!("fd {fd}: dup3 of fd {src}"))?;
            continue;
        }
        let got = match e.pidfd {
            Some(of) => t
                .remote_syscall_ok(Sysno::pidfd_open, [of as u64, e.flags as u64, 0, 0, 0, 0], "pidfd_open")
                .ctx(pid, &format!("fd {fd}: open its pidfd of task {of}"))? as i64,
            None => t
                .remote_syscall_ok(
                    Sysno::openat,
                    [AT_FDCWD as u64, arena + e.path.off, e.flags as u64, 0, 0, 0],
                    "open a /proc file of the tree",
                )
                .ctx(pid, &format!("fd {fd}: open its /proc file"))? as i64,
        };
        if got != fd as i64 {
            t.remote_syscall_ok(Sysno::dup3, [got as u64, fd as u64, cl, 0, 0, 0], "dup3 a late file")
                .ctx(pid, &format!("fd {fd}: dup3"))?;
            t.remote_syscall_ok(Sysno::close, [got as u64, 0, 0, 0, 0, 0], "close a late file")
                .ctx(pid, &format!("fd {fd}: close"))?;
        } else if e.cloexec || e.pidfd.is_some() {
            // pidfd_open always sets FD_CLOEXEC.
            let fl = if e.cloexec { FD_CLOEXEC } else { 0 };
            t.remote_syscall_ok(Sysno::fcntl, [fd as u64, F_SETFD, fl, 0, 0, 0], "set FD_CLOEXEC")
                .ctx(pid, &format!("fd {fd}: FD_CLOEXEC"))?;
        }
        if e.pos != u64::MAX {
            t.remote_syscall_ok(Sysno::lseek, [fd as u64, e.pos, 0, 0, 0, 0], "lseek a late file")
                .ctx(pid, &format!("fd {fd}: lseek"))?;
        }
        log::debug!(task = pid.0; "task {pid}: fd {fd} opened late");
    }
    for (l, st) in &late.locks {
        const LOCK_SH: u64 = 1;
        const LOCK_EX: u64 = 2;
        const LOCK_NB: u64 = 4;
        const F_SETLK: u64 = 6;
        const F_OFD_SETLK: u64 = 37;
        const F_SETLEASE: u64 = 1024;
        let fd = l.fd as u64;
        let what = format!("fd {}: take its {} again", l.fd, l.kind_name());
        let (nr, args) = match l.kind {
            0 => (Sysno::fcntl, [fd, F_SETLK, arena + st.off, 0, 0, 0]),
            1 => (Sysno::fcntl, [fd, F_OFD_SETLK, arena + st.off, 0, 0, 0]),
            2 => (Sysno::flock, [fd, if l.write { LOCK_EX } else { LOCK_SH } | LOCK_NB, 0, 0, 0, 0]),
            _ => (Sysno::fcntl, [fd, F_SETLEASE, l.write as u64, 0, 0, 0]),
        };
        let r = t.remote_syscall(nr, args).ctx(pid, &what)?;
        if r < 0 {
            let e = crate::sys::Errno::new(-r as i32);
            let why = if e == crate::sys::Errno::EAGAIN || e == crate::sys::Errno::EACCES {
                " (another process holds a conflicting lock now)"
            } else {
                ""
            };
            return Err(Error::task(pid, format!("{what}: {e}{why}")));
        }
        log::debug!(task = pid.0; "task {pid}: {what}: done");
    }
    Ok(())
}
