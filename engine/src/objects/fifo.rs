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
    let now = if p.deleted { None } else { std::fs::symlink_metadata(&p.path).ok() };
    match now {
        Some(n) if n.dev() == md.dev() && n.ino() == md.ino() => {}
        Some(_) => return Err(Error::task(pid, format!("fd {fd}: {what} now names another file"))),
        None => {
            return Err(Error::refuse(
                pid,
                format!("fd {fd}: {what} was unlinked: unlinked FIFOs are not supported yet"),
            ))
        }
    }
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    pipe::check_flags(pid, fd, flags, &what)?;
    let pipe_id = pipe::pipe_id_for(out, pid, fd, flags, (md.dev(), md.ino()), &what)?;
    out.fifo.push(FifoEntry {
        id,
        pipe_id,
        path: RawStr(p.path.as_os_str().as_bytes().to_vec()),
        flags,
        mode: md.mode(),
    });
    Ok(())
}

/// Opens every FIFO description of the images, the FIFO's data put back.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for d in &images.pipe_data {
        let descs: Vec<&FifoEntry> = images.fifo.iter().filter(|f| f.pipe_id == d.pipe_id && !out.has(f.id)).collect();
        let Some(first) = descs.first() else { continue };
        let path = first.path.as_os_str();
        let what = format!("FIFO {}", first.path.to_string_lossy());
        let e = |step: &str, err: crate::sys::Errno| Error::new(format!("{what}: {step}: {err}"));
        // Read-write never waits for a peer (fifo(7)).
        let holder = fs::openat(None, path, SysFlags::O_RDWR | SysFlags::O_NONBLOCK | SysFlags::O_CLOEXEC, 0)
            .map_err(|err| e("open", err))?;
        let st = fs::fstat(holder.as_fd()).map_err(|err| e("stat", err))?;
        if st.file_type() != S_IFIFO & S_IFMT {
            return Err(Error::new(format!("{what} is no longer a FIFO")));
        }
        let queued = fs::fionread(holder.as_fd()).map_err(|err| e("FIONREAD", err))?;
        if queued != 0 {
            return Err(Error::new(format!(
                "{what} holds {queued} bytes from another process now: refusing to mix them with the dumped data"
            )));
        }
        let packets = descs.iter().any(|f| f.flags.contains(OpenFlags::O_DIRECT));
        pipe::fill(holder.as_fd(), d, packets, &what)?;
        for f in descs {
            let access = f.flags & (OpenFlags::O_WRONLY | OpenFlags::O_RDWR);
            let fd = fs::openat(
                None,
                f.path.as_os_str(),
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
