//! FIFOs (named pipes, fifo(7)): each open file description is one
//! `fifo.img` entry with its path and flags; the pipe behind it, with its
//! capacity and bytes in flight, is a `pipes-data.img` entry read and
//! written back as for pipes ([`super::pipe`]).
//!
//! Restore opens the FIFO once read-write and non-blocking in the engine
//! (that never waits for a peer), checks it is empty, writes the data
//! back, then opens each description with its own access mode (a FIFO
//! opened read-only or write-only by the tree), always non-blocking so no
//! open waits, and sets its real flags afterwards. The engine's read-write
//! holder stays open until the tree runs, so no data is lost in between.
use super::files::{FdCtx, FileImages, Opened};
use super::pipe;
use crate::error::{Context, Error, Result};
use crate::image::files::OpenFlags;
use crate::image::pipes::FifoEntry;
use crate::image::RawStr;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::fs::{self, OpenFlags as SysFlags};
use crate::sys::Pid;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

const S_IFMT: u32 = 0o170000;
const S_IFIFO: u32 = 0o010000;

/// Dumps one open file description of a FIFO.
pub fn dump(
    _cx: &FdCtx,
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
    let what = format!("FIFO {}", p.path.display());
    let md = std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}"))).ctx(pid, &format!("stat fd {fd}"))?;
    // The path must lead to the same FIFO, or restore would open another.
    // One unlinked for good is made again at restore (and unlinked again);
    // one still linked elsewhere cannot be found by a path.
    let now = if p.deleted { None } else { std::fs::symlink_metadata(&p.path).ok() };
    let unlinked = match now {
        Some(n) if n.dev() == md.dev() && n.ino() == md.ino() => false,
        _ if md.nlink() == 0 => true,
        _ => {
            return Err(Error::refuse(
                pid,
                format!("fd {fd}: {what} no longer leads to the open FIFO, which is still linked elsewhere"),
            ))
        }
    };
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let pipe_id = pipe::pipe_id_for(out, pid, fd, flags, (md.dev(), md.ino()), &what)?;
    out.fifo.push(FifoEntry {
        id,
        pipe_id,
        path: RawStr(p.path.as_os_str().as_bytes().to_vec()),
        flags,
        mode: md.mode(),
        unlinked,
        owner: (md.uid(), md.gid()),
    });
    Ok(())
}

/// Makes an unlinked FIFO again, where it was or next to it when that name
/// is taken, with its mode and owner; returns its path.
fn make_ghost_fifo(f: &FifoEntry) -> std::result::Result<std::path::PathBuf, String> {
    let orig = std::path::PathBuf::from(f.path.as_os_str());
    let make = |p: &std::path::Path| fs::mknodat(None, p, S_IFIFO | 0o600, 0);
    let path = match make(&orig) {
        Ok(()) => orig.clone(),
        Err(crate::sys::Errno::EEXIST) => {
            let name = orig.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let p = orig.with_file_name(format!(".{name}.crtools-ghost-fifo.{}", std::process::id()));
            make(&p).map_err(|e| format!("make the unlinked FIFO again as {}: {e}", p.display()))?;
            p
        }
        Err(e) => return Err(format!("make the unlinked FIFO again: {e}")),
    };
    use std::os::unix::fs::PermissionsExt;
    let set = std::os::unix::fs::chown(&path, Some(f.owner.0), Some(f.owner.1))
        .and_then(|_| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode & 0o7777)));
    if let Err(e) = set {
        let _ = std::fs::remove_file(&path);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(path)
}

/// Opens every FIFO description of the images, the FIFO's data put back.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for d in &images.pipe_data {
        let descs: Vec<&FifoEntry> = images.fifo.iter().filter(|f| f.pipe_id == d.pipe_id && !out.has(f.id)).collect();
        let Some(first) = descs.first() else { continue };
        let what = format!("FIFO {}", first.path.to_string_lossy());
        let e = |step: &str, err: crate::sys::Errno| Error::new(format!("{what}: {step}: {err}"));
        let ghost = if first.unlinked {
            Some(make_ghost_fifo(first).map_err(|m| Error::new(format!("{what}: {m}")))?)
        } else {
            None
        };
        let path_buf = ghost.clone().unwrap_or_else(|| std::path::PathBuf::from(first.path.as_os_str()));
        let path = path_buf.as_os_str();
        // Removes the FIFO made again whatever happens below.
        struct Unlink(Option<std::path::PathBuf>);
        impl Drop for Unlink {
            fn drop(&mut self) {
                if let Some(p) = &self.0 {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        let _unlink = Unlink(ghost);
        // A FIFO a process outside the tree holds open is the same pipe as
        // at dump: what was in flight is still in it or was read since.
        let live = match (!first.unlinked, std::fs::metadata(path)) {
            (true, Ok(md)) => {
                use std::os::unix::fs::MetadataExt;
                let (dev, ino) = (md.dev(), md.ino());
                crate::proc::misc::find_fd_holder(|_, d, i| (d, i) == (dev, ino))
            }
            _ => None,
        };
        // Read-write never waits for a peer (fifo(7)).
        let holder = fs::openat(None, path, SysFlags::O_RDWR | SysFlags::O_NONBLOCK | SysFlags::O_CLOEXEC, 0)
            .map_err(|err| e("open", err))?;
        let st = fs::fstat(holder.as_fd()).map_err(|err| e("stat", err))?;
        if st.file_type() != S_IFIFO & S_IFMT {
            return Err(Error::new(format!("{what} is no longer a FIFO")));
        }
        if let Some((pid, _)) = live {
            log::info!("{what}: process {pid} outside the tree holds it open: the tree gets the same pipe back");
        } else {
            let queued = fs::fionread(holder.as_fd()).map_err(|err| e("FIONREAD", err))?;
            if queued != 0 {
                return Err(Error::new(format!(
                    "{what} holds {queued} bytes from another process now: refusing to mix them with the dumped data"
                )));
            }
            let packets = descs.iter().any(|f| f.flags.contains(OpenFlags::O_DIRECT));
            pipe::fill(holder.as_fd(), d, packets, &what)?;
        }
        for f in descs {
            let access = f.flags & (OpenFlags::O_WRONLY | OpenFlags::O_RDWR);
            let fd = fs::openat(
                None,
                path,
                SysFlags::from_bits_retain(access.bits()) | SysFlags::O_NONBLOCK | SysFlags::O_CLOEXEC,
                0,
            )
            .map_err(|err| e("open", err))?;
            pipe::set_flags(fd.as_fd(), f.flags, &what)?;
            out.add(f.id, fd);
        }
        out.keep(holder);
    }
    Ok(())
}
