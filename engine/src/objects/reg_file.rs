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
pub fn dump(
    _cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FdTable,
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
    // The path must lead to the same file now, or restore would open another.
    let now = std::fs::metadata(&p.path)
        .map_err(|e| Error::task(pid, format!("fd {fd}: {} cannot be found by its path: {e}", p.path.display())))?;
    if now.ino() != md.ino() || now.dev() != md.dev() {
        return Err(Error::task(
            pid,
            format!("fd {fd}: {} now names another file (over-mounted or replaced)", p.path.display()),
        ));
    }
    out.reg.push(RegFileEntry {
        id,
        path: RawStr(p.path.as_os_str().as_bytes().to_vec()),
        flags: OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC,
        pos: info.pos.max(0) as u64,
        mode,
        size: md.size(),
    });
    Ok(())
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
