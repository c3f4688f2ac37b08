//! fanotify (see fanotify(7)): the group's init flags and event file
//! flags (fdinfo `fanotify flags:.. event-flags:..`) and every mark with
//! its mask, ignored mask and mark flags: marks on inodes (found again by
//! file handle, like inotify watches), on mounts (by the mount point the
//! dumping task's mountinfo gives the mount id) and on filesystems (by a
//! mount of the device).
//!
//! Events already queued cannot be read back without consuming them: a
//! group with queued events is refused by name. Not visible to crtools:
//! permission events a listener has read but not answered yet (the
//! process that waits for the answer is outside the dump's reach anyway),
//! and marks of other kinds (mount namespaces): refused by name.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::events::{FanotifyEntry, FanotifyMarkEntry};
use crate::image::files::OpenFlags;
use crate::proc::fdinfo::{FanotifyTarget, FdInfo, FdTarget};
use crate::sys::{event, fs, Pid};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_FILESYSTEM: u32 = 0x100;
const FAN_MARK_IGNORE: u32 = 0x400;
/// The mark flags fdinfo shows: FAN_MARK_IGNORED_SURV_MODIFY,
/// FAN_MARK_EVICTABLE, FAN_MARK_IGNORE.
const SHOWN_MFLAGS: u32 = 0x40 | 0x200 | FAN_MARK_IGNORE;

/// Dumps one fanotify group.
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
    let e = |m: String| Error::task(pid, format!("fd {fd}: fanotify: {m}"));
    let refuse = |m: String| Error::refuse(pid, format!("fd {fd}: fanotify: {m}"));
    let f = info.fanotify.as_ref().ok_or_else(|| e("no fanotify lines in its fdinfo".into()))?;
    let copy = super::files::take_fd(pid, fd)?;
    let queued = fs::fionread(copy.as_fd()).map_err(|er| e(format!("FIONREAD: {er}")))?;
    if queued != 0 {
        return Err(refuse(format!(
            "{queued} bytes of events are queued: they cannot be read back without consuming them, \
             so a fanotify group with queued events is not supported"
        )));
    }
    let mut mounts = super::inotify::Mounts::default();
    let mut mountinfo = None;
    let mut marks = Vec::with_capacity(f.marks.len());
    for m in &f.marks {
        if m.mflags & !SHOWN_MFLAGS != 0 {
            return Err(refuse(format!("a mark with flags {:#x} crtools does not know", m.mflags)));
        }
        let (kind, path, handle, sdev) = match &m.target {
            FanotifyTarget::Inode { ino, sdev, fhandle } => {
                let handle = fhandle.as_ref().map(|h| (h.handle_type, h.bytes.clone()));
                let path = handle
                    .as_ref()
                    .and_then(|h| mounts.open(*sdev, h).ok())
                    .and_then(|f| std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok())
                    .ok_or_else(|| {
                        refuse(format!("a mark on inode {ino} of device {sdev:#x} that cannot be found again"))
                    })?;
                (0, path, handle, *sdev)
            }
            FanotifyTarget::Mount { mnt_id } => {
                if mountinfo.is_none() {
                    mountinfo = Some(crate::proc::mountinfo::read(pid).map_err(|er| e(format!("mountinfo: {er}")))?);
                }
                let mi = mountinfo.as_ref().expect("just read");
                let mp = mi
                    .iter()
                    .find(|x| x.id as i32 == *mnt_id)
                    .ok_or_else(|| e(format!("a mark on mount {mnt_id}, which its mountinfo does not list")))?;
                (FAN_MARK_MOUNT, mp.mount_point.clone(), None, 0)
            }
            FanotifyTarget::Superblock { sdev } => {
                let path = mounts
                    .mount_point(event::kdev_to_dev(*sdev))
                    .ok_or_else(|| e(format!("a mark on filesystem {sdev:#x}, which no mount shows")))?;
                (FAN_MARK_FILESYSTEM, path, None, *sdev)
            }
            FanotifyTarget::Other(kv) => {
                return Err(refuse(format!("a mark of a kind crtools does not handle ({kv:?})")))
            }
        };
        marks.push(FanotifyMarkEntry {
            kind,
            mflags: m.mflags,
            mask: m.mask,
            ignored_mask: m.ignored_mask,
            sdev,
            handle,
            path: crate::image::RawStr(path.as_os_str().as_bytes().to_vec()),
        });
    }
    out.ev.fanotify.push(FanotifyEntry { id, flags, init_flags: f.flags, event_flags: f.event_flags, marks });
    Ok(())
}

/// Creates every fanotify group with its marks.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    let mut mounts = super::inotify::Mounts::default();
    for g in &images.ev.fanotify {
        let what = format!("fanotify (file {})", g.id);
        // As given at dump, FAN_CLOEXEC and FAN_NONBLOCK included: fdinfo
        // shows them (the descriptor's own FD_CLOEXEC is set by its task).
        let init = g.init_flags;
        let fd = event::fanotify_init(init, g.event_flags)
            .map_err(|e| Error::new(format!("{what}: fanotify_init({init:#x}, {:#x}): {e}", g.event_flags)))?;
        for m in &g.marks {
            let merr = |s: String| Error::new(format!("{what}: mark on {}: {s}", m.path.to_string_lossy()));
            // An inode mark names its inode through /proc/self/fd (found by
            // handle, the path as fallback); the others name their mount.
            let held = match (m.kind, &m.handle) {
                (0, Some(h)) => mounts.open(m.sdev, h).ok(),
                _ => None,
            };
            let path = match &held {
                Some(f) => format!("/proc/self/fd/{}", f.as_raw_fd()).into_bytes(),
                None => m.path.as_bytes().to_vec(),
            };
            let keep = m.mflags & !FAN_MARK_IGNORE;
            event::fanotify_mark(fd.as_fd(), FAN_MARK_ADD | m.kind | keep, m.mask as u64, &path)
                .map_err(|e| merr(format!("fanotify_mark mask {:#x}: {e}", m.mask)))?;
            if m.ignored_mask != 0 {
                let how = if m.mflags & FAN_MARK_IGNORE != 0 { FAN_MARK_IGNORE } else { FAN_MARK_IGNORED_MASK };
                event::fanotify_mark(fd.as_fd(), FAN_MARK_ADD | m.kind | keep | how, m.ignored_mask as u64, &path)
                    .map_err(|e| merr(format!("fanotify_mark ignored mask {:#x}: {e}", m.ignored_mask)))?;
            }
        }
        fs::fcntl_setfl(fd.as_fd(), fs::OpenFlags::from_bits_retain(g.flags.bits()))
            .map_err(|e| Error::new(format!("{what}: set its flags: {e}")))?;
        out.add(g.id, fd);
    }
    Ok(())
}
