//! eventfd (see eventfd(2)): the counter and EFD_SEMAPHORE, read from
//! fdinfo (`eventfd-count`, `eventfd-semaphore`), so the dump reads
//! nothing from the descriptor itself. Restore creates the eventfd with
//! the same mode and writes the counter back (a write adds; the new
//! counter starts at zero).
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::events::EventfdEntry;
use crate::image::files::OpenFlags;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::event;
use crate::sys::fs;
use crate::sys::Pid;
use std::os::fd::AsFd;

/// Dumps one eventfd.
pub fn dump(
    _cx: &FdCtx,
    pid: Pid,
    fd: i32,
    _target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    let e =
        info.eventfd.ok_or_else(|| Error::task(pid, format!("fd {fd}: eventfd without eventfd-count in fdinfo")))?;
    let semaphore = e.semaphore.ok_or_else(|| {
        Error::refuse(pid, format!("fd {fd}: this kernel does not show whether the eventfd is in EFD_SEMAPHORE mode"))
    })?;
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    out.ev.eventfd.push(EventfdEntry { id, flags, count: e.count, semaphore });
    Ok(())
}

/// Creates every eventfd of the images with its counter.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for e in &images.ev.eventfd {
        let what = format!("eventfd (file {})", e.id);
        let err = |step: &str, er: crate::sys::Errno| Error::new(format!("{what}: {step}: {er}"));
        let mode = if e.semaphore { event::EFD_SEMAPHORE } else { 0 };
        let fd = event::eventfd(0, mode | event::EFD_CLOEXEC).map_err(|er| err("eventfd2", er))?;
        if e.count != 0 {
            let n = fs::write(fd.as_fd(), &e.count.to_ne_bytes()).map_err(|er| err("set its counter", er))?;
            if n != 8 {
                return Err(Error::new(format!("{what}: short write of its counter")));
            }
        }
        fs::fcntl_setfl(fd.as_fd(), fs::OpenFlags::from_bits_retain(e.flags.bits()))
            .map_err(|er| err("set its flags", er))?;
        out.add(e.id, fd);
    }
    Ok(())
}
