//! Regular files, directories and device nodes, reopened by path with their
//! flags and position.
//!
//! At restore a regular file must still be the same size it had at dump
//! (CRIU does the same): a file that changed underneath would give the task a
//! different world than it had, so restore refuses it, naming the file.
use super::files::{FdCtx, FdTable};
use crate::error::{Context, Error, Result};
use crate::image::files::{FdinfoEntry, OpenFlags};
use crate::image::reg_files::RegFileEntry;
use crate::image::RawStr;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::restore::plan::PlanBuilder;
use crate::sys::Pid;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

/// Dumps one open file description.
pub fn dump(cx: &FdCtx, pid: Pid, fd: i32, target: &FdTarget, info: &FdInfo, id: u32, out: &mut FdTable) -> Result<()> {
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

/// The plan entry for the first descriptor of an open file description.
pub fn plan(
    _cx: &FdCtx,
    b: &mut PlanBuilder,
    pid: Pid,
    fd: &FdinfoEntry,
    table: &FdTable,
) -> Result<restorer_plan::FileEntry> {
    let reg = table
        .reg
        .iter()
        .find(|r| r.id == fd.id)
        .ok_or_else(|| Error::task(pid, format!("fd {}: file id {} missing from reg-files.img", fd.fd, fd.id)))?;
    let path = reg.path.to_string_lossy();
    let md =
        std::fs::metadata(reg.path.as_os_str()).map_err(|e| Error::task(pid, format!("fd {}: {path}: {e}", fd.fd)))?;
    if md.mode() & S_IFMT != reg.mode & S_IFMT {
        return Err(Error::task(pid, format!("fd {}: {path} is no longer the same type of file", fd.fd)));
    }
    if reg.mode & S_IFMT == S_IFREG && md.size() != reg.size {
        return Err(Error::task(
            pid,
            format!(
                "fd {}: {path} has size {} now, {} at dump: refusing to restore over a changed file",
                fd.fd,
                md.size(),
                reg.size
            ),
        ));
    }
    // Character and block devices keep no position of ours.
    let seekable = matches!(reg.mode & S_IFMT, S_IFREG | S_IFDIR);
    let flags = reg.flags - (OpenFlags::O_CREAT | OpenFlags::O_TRUNC | OpenFlags::O_EXCL | OpenFlags::O_CLOEXEC);
    Ok(restorer_plan::FileEntry {
        fd: fd.fd as i32,
        flags: flags.bits(),
        pos: if seekable { reg.pos } else { u64::MAX },
        path: b.add_str(reg.path.as_bytes()),
        dup_of: u32::MAX,
        cloexec: fd.cloexec as u32,
    })
}
