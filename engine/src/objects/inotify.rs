//! inotify (see inotify(7)): every watch with its mask and its watch
//! descriptor number, from fdinfo (`inotify wd:.. ino:.. sdev:.. mask:..
//! f_handle:..`).
//!
//! The watched inode is found again by its file handle (open_by_handle_at
//! on a mount of its device), the path it had at dump as the fallback. The
//! restore asks for each watch's number with INOTIFY_IOC_SETNEXTWD before
//! adding it, and fails if the kernel gives another.
//!
//! Events already queued cannot be read back without consuming them: an
//! instance with queued events is refused by name. Not visible to
//! crtools: the instance's next-wd cursor after watches were removed (the
//! next new watch may get a lower number than it would have).
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::events::{InotifyEntry, InotifyWatchEntry};
use crate::image::files::OpenFlags;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::{event, fs, Errno, Pid};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

/// Flags that only matter when a watch is added (lookup and merge modes):
/// IN_DONT_FOLLOW would stop the lookup of /proc/self/fd/N itself.
const ADD_ONLY: u32 = 0x0200_0000 | 0x2000_0000 | 0x1000_0000;

/// A mount of each device, to resolve file handles on.
#[derive(Default)]
pub(super) struct Mounts(HashMap<u64, Option<OwnedFd>>);

impl Mounts {
    /// Where a mount of device `dev` (stat encoding) is.
    pub(super) fn mount_point(&self, dev: u64) -> Option<std::path::PathBuf> {
        let me = crate::sys::misc::getpid();
        crate::proc::mountinfo::read(me).ok()?.into_iter().find_map(|m| {
            use std::os::unix::fs::MetadataExt;
            (std::fs::metadata(&m.mount_point).ok()?.dev() == dev).then_some(m.mount_point)
        })
    }

    fn of(&mut self, dev: u64) -> Option<std::os::fd::BorrowedFd<'_>> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.0.entry(dev) {
            let me = crate::sys::misc::getpid();
            let found = crate::proc::mountinfo::read(me).ok().and_then(|ms| {
                ms.iter().find_map(|m| {
                    let md = std::fs::metadata(&m.mount_point).ok()?;
                    use std::os::unix::fs::MetadataExt;
                    (md.dev() == dev).then(|| {
                        // Not O_PATH: open_by_handle_at takes no O_PATH mount descriptor.
                        let fl = fs::OpenFlags::O_RDONLY | fs::OpenFlags::O_DIRECTORY | fs::OpenFlags::O_CLOEXEC;
                        fs::openat(None, &m.mount_point, fl, 0).ok()
                    })?
                })
            });
            slot.insert(found);
        }
        self.0.get(&dev).and_then(|f| f.as_ref().map(|f| f.as_fd()))
    }

    /// Opens the inode a handle names (O_PATH).
    pub(super) fn open(&mut self, kdev: u32, handle: &(i32, Vec<u8>)) -> std::result::Result<OwnedFd, Errno> {
        let m = self.of(event::kdev_to_dev(kdev)).ok_or(Errno::ENODEV)?;
        event::open_by_handle_at(m, handle.0, &handle.1, (fs::OpenFlags::O_PATH | fs::OpenFlags::O_CLOEXEC).bits())
    }
}

/// Dumps one inotify instance.
pub fn dump(
    _cx: &FdCtx,
    pid: Pid,
    fd: i32,
    _target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let e = |m: String| Error::task(pid, format!("fd {fd}: inotify: {m}"));
    let refuse = |m: String| Error::refuse(pid, format!("fd {fd}: inotify: {m}"));
    let copy = super::files::take_fd(pid, fd)?;
    let queued = fs::fionread(copy.as_fd()).map_err(|er| e(format!("FIONREAD: {er}")))?;
    if queued != 0 {
        return Err(refuse(format!(
            "{queued} bytes of events are queued: they cannot be read back without consuming them, \
             so an inotify instance with queued events is not supported"
        )));
    }
    let mut mounts = Mounts::default();
    let mut watches = Vec::with_capacity(info.inotify_watches.len());
    for w in &info.inotify_watches {
        let handle = w.fhandle.as_ref().map(|h| (h.handle_type, h.bytes.clone()));
        let found = handle.as_ref().and_then(|h| mounts.open(w.sdev, h).ok());
        // A watched inode that was deleted lives only as long as the watch:
        // gone with the tree, nothing could be watched again.
        if let Some(f) = &found {
            if std::fs::metadata(format!("/proc/self/fd/{}", f.as_raw_fd())).is_ok_and(|m| m.nlink() == 0) {
                let p = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap_or_default();
                return Err(refuse(format!(
                    "watch {} on {}, which was deleted: the inode is gone with the tree, so the watch \
                     cannot be made again; not supported",
                    w.wd,
                    p.display()
                )));
            }
        }
        let path = found.and_then(|f| std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok());
        let Some(path) = path else {
            return Err(refuse(format!(
                "watch {} on inode {} of device {:#x}: the inode cannot be found again by handle \
                 (filesystem without file handles, or the file is gone)",
                w.wd, w.ino, w.sdev
            )));
        };
        watches.push(InotifyWatchEntry {
            wd: w.wd,
            mask: w.mask,
            sdev: w.sdev,
            ino: w.ino,
            handle,
            path: crate::image::RawStr(path.as_os_str().as_bytes().to_vec()),
        });
    }
    watches.sort_by_key(|w| w.wd);
    out.ev.inotify.push(InotifyEntry { id, flags, watches });
    Ok(())
}

/// Creates every inotify instance with its watches.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    let mut mounts = Mounts::default();
    for i in &images.ev.inotify {
        let what = format!("inotify (file {})", i.id);
        let fd = event::inotify_init1(fs::OpenFlags::O_CLOEXEC.bits())
            .map_err(|e| Error::new(format!("{what}: inotify_init1: {e}")))?;
        for w in &i.watches {
            let werr = |m: String| Error::new(format!("{what}: watch {} ({}): {m}", w.wd, w.path.to_string_lossy()));
            let target = match w.handle.as_ref().map(|h| mounts.open(w.sdev, h)) {
                Some(Ok(f)) => f,
                _ => fs::openat(None, w.path.as_os_str(), fs::OpenFlags::O_PATH | fs::OpenFlags::O_CLOEXEC, 0)
                    .map_err(|e| werr(format!("neither its handle nor its path opens: {e}")))?,
            };
            event::inotify_set_next_wd(fd.as_fd(), w.wd).map_err(|e| werr(format!("INOTIFY_IOC_SETNEXTWD: {e}")))?;
            let link = format!("/proc/self/fd/{}", target.as_raw_fd());
            let got = event::inotify_add_watch(fd.as_fd(), link.as_bytes(), w.mask & !ADD_ONLY)
                .map_err(|e| werr(format!("inotify_add_watch: {e}")))?;
            if got != w.wd {
                return Err(werr(format!("the kernel gave watch descriptor {got}")));
            }
        }
        fs::fcntl_setfl(fd.as_fd(), fs::OpenFlags::from_bits_retain(i.flags.bits()))
            .map_err(|e| Error::new(format!("{what}: set its flags: {e}")))?;
        out.add(i.id, fd);
    }
    Ok(())
}
