//! signalfd (signalfd(2)): dumped from fdinfo (`sigmask:` and the flags),
//! made again in the engine with signalfd4 before the tree is forked. What
//! it reads is the reading task's pending signals, which the task's own
//! restore brings back.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::files::OpenFlags;
use crate::image::signalfd::SignalfdEntry;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::fs::{self, OpenFlags as SysFlags};
use crate::sys::Pid;
use std::os::fd::AsFd;

/// Dumps one signalfd.
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
    let sigmask =
        info.signalfd_mask.ok_or_else(|| Error::task(pid, format!("fd {fd}: signalfd without a sigmask in fdinfo")))?;
    out.signalfd.push(SignalfdEntry { id, flags, sigmask });
    Ok(())
}

/// Makes every signalfd of the images.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for s in &images.signalfd {
        let fd = crate::sys::signal::signalfd(s.sigmask, SysFlags::O_CLOEXEC.bits())
            .map_err(|e| Error::new(format!("{}: signalfd4: {e}", cx.who(s.id))))?;
        let flags = s.flags - OpenFlags::O_CLOEXEC;
        fs::fcntl_setfl(fd.as_fd(), SysFlags::from_bits_retain(flags.bits()))
            .map_err(|e| Error::new(format!("{}: F_SETFL: {e}", cx.who(s.id))))?;
        out.add(s.id, fd);
    }
    Ok(())
}
