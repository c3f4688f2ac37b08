//! Regular files, directories and device nodes, reopened by path with their
//! flags and position.
//!
//! At restore a regular file must still be the same size it had at dump
//! (CRIU does the same): a file that changed underneath would give the task a
//! different world than it had, so restore refuses it, naming the file.
use super::files::{FdCtx, FileImages, Late, Opened};
use crate::error::{Context, Error, Result};
use crate::image::files::OpenFlags;
use crate::image::reg_files::RegFileEntry;
use crate::image::RawStr;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::Pid;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

/// Dumps one open file description.
pub fn dump(
    cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    let FdTarget::Path(p) = target else {
        return Err(Error::task(pid, format!("fd {fd}: not a path")));
    };
    // stat through the magic link: the open file itself, not the path.
    let md = std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}"))).ctx(pid, &format!("stat fd {fd}"))?;
    let mode = md.mode();
    match mode & S_IFMT {
        S_IFREG | S_IFDIR | S_IFCHR | S_IFBLK => {}
        _ => {
            return Err(Error::task(
                pid,
                format!("fd {fd}: {} (mode {mode:o}): this kind of file is not supported yet", p.path.display()),
            ))
        }
    }
    let is_dev = matches!(mode & S_IFMT, S_IFCHR | S_IFBLK);
    // The path must lead to the same file now, or restore would open another.
    let now = if p.deleted { None } else { std::fs::metadata(&p.path).ok() };
    let same = now.as_ref().map(|n| n.ino() == md.ino() && n.dev() == md.dev()).unwrap_or(false);
    let mut path = p.path.clone();
    if !same {
        if is_dev && cx.evasive_devices {
            // Any node of the same device will do (--evasive-devices).
            path = find_device(mode & S_IFMT, md.rdev()).ok_or_else(|| {
                Error::task(pid, format!("fd {fd}: no other node of device {:#x} under /dev", md.rdev()))
            })?;
            log::info!(task = pid.0; "task {pid}: fd {fd}: {} stands in for {}", path.display(), p.path.display());
        } else if p.deleted {
            return Err(Error::task(
                pid,
                format!(
                    "fd {fd}: {} was deleted{}",
                    p.path.display(),
                    if is_dev { " (a device node: --evasive-devices reopens another node of it)" } else { "" }
                ),
            ));
        } else if now.is_none() {
            return Err(Error::task(pid, format!("fd {fd}: {} cannot be found by its path", p.path.display())));
        } else {
            return Err(Error::task(
                pid,
                format!("fd {fd}: {} now names another file (over-mounted or replaced)", p.path.display()),
            ));
        }
    }
    out.reg.push(RegFileEntry {
        id,
        path: RawStr(path.as_os_str().as_bytes().to_vec()),
        flags: OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC,
        pos: info.pos.max(0) as u64,
        mode,
        size: md.size(),
    });
    Ok(())
}

/// A node under /dev of the device `rdev` (`kind`: S_IFCHR or S_IFBLK).
fn find_device(kind: u32, rdev: u64) -> Option<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, kind: u32, rdev: u64, depth: u32) -> Option<std::path::PathBuf> {
        let mut subdirs = Vec::new();
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let Ok(md) = std::fs::symlink_metadata(e.path()) else { continue };
            if md.mode() & S_IFMT == kind && md.rdev() == rdev {
                return Some(e.path());
            }
            if md.is_dir() && depth > 0 {
                subdirs.push(e.path());
            }
        }
        subdirs.into_iter().find_map(|d| walk(&d, kind, rdev, depth - 1))
    }
    walk(std::path::Path::new("/dev"), kind, rdev, 3)
}

/// Opens every regular file, directory and device of the images, each
/// once, at its position. `/proc` files of the tree's own tasks are left
/// for the tasks to open once the tree exists.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for reg in &images.reg {
        if out.has(reg.id) {
            continue; // --inherit-fd
        }
        let path = reg.path.to_string_lossy();
        let e = |what: String| Error::new(format!("{}: {path}: {what}", cx.who(reg.id)));
        // Character and block devices keep no position of ours.
        let seekable = matches!(reg.mode & S_IFMT, S_IFREG | S_IFDIR);
        let flags = reg.flags - (OpenFlags::O_CREAT | OpenFlags::O_TRUNC | OpenFlags::O_EXCL | OpenFlags::O_CLOEXEC);
        if super::files::is_tree_proc_path(cx, reg.path.as_bytes()) {
            let pos = if seekable { reg.pos } else { u64::MAX };
            out.add_late(reg.id, Late { path: reg.path.as_bytes().to_vec(), flags: flags.bits(), pos });
            continue;
        }
        let md = std::fs::metadata(reg.path.as_os_str()).map_err(|err| e(err.to_string()))?;
        if md.mode() & S_IFMT != reg.mode & S_IFMT {
            return Err(e("is no longer the same type of file".into()));
        }
        if reg.mode & S_IFMT == S_IFREG && md.size() != reg.size {
            return Err(e(format!(
                "has size {} now, {} at dump: refusing to restore over a changed file",
                md.size(),
                reg.size
            )));
        }
        // O_NOCTTY: crtools must not take a terminal as its own.
        let flags = crate::sys::fs::OpenFlags::from_bits_retain(flags.bits()) | crate::sys::fs::OpenFlags::O_NOCTTY;
        let fd =
            crate::sys::fs::openat(None, reg.path.as_os_str(), flags, 0).map_err(|err| e(format!("open: {err}")))?;
        if seekable && !flags.contains(crate::sys::fs::OpenFlags::O_PATH) {
            crate::sys::fs::lseek(fd.as_fd(), reg.pos as i64, crate::sys::fs::Whence::Set)
                .map_err(|err| e(format!("seek to {}: {err}", reg.pos)))?;
        }
        out.add(reg.id, fd);
    }
    Ok(())
}
