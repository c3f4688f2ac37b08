//! pidfd (see pidfd_open(2)) of a task of the tree: its task (fdinfo
//! `Pid:`) and status flags (O_NONBLOCK = PIDFD_NONBLOCK, O_EXCL =
//! PIDFD_THREAD). A pidfd cannot exist before its task does, so it is
//! opened late, in its task, by pidfd_open once the whole tree exists
//! ([`super::files::open_late`]). A pidfd of a task outside the tree, or of
//! one that has exited and been reaped, is refused by name.
use super::files::{FdCtx, FileImages, Late, Opened};
use crate::error::{Error, Result};
use crate::image::events::PidfdEntry;
use crate::image::files::OpenFlags;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::Pid;

/// The status flags pidfd_open takes back.
const OPEN_FLAGS: OpenFlags = OpenFlags::O_NONBLOCK.union(OpenFlags::O_EXCL);

/// Dumps one pidfd.
pub fn dump(
    cx: &FdCtx,
    pid: Pid,
    fd: i32,
    _target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    let e = |m: String| Error::task(pid, format!("fd {fd}: pidfd: {m}"));
    let refuse = |m: String| Error::refuse(pid, format!("fd {fd}: pidfd: {m}"));
    let of: i64 = info
        .get("Pid")
        .ok_or_else(|| e("no Pid: line in its fdinfo".into()))?
        .parse()
        .map_err(|_| e("bad Pid: line in its fdinfo".into()))?;
    if of <= 0 {
        return Err(refuse("its task has exited and been reaped: such a pidfd cannot be restored".into()));
    }
    if !cx.tree_tids.contains(&(of as u32)) {
        return Err(refuse(format!("refers to task {of}, which is outside the dumped tree")));
    }
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let extra = flags - OPEN_FLAGS - OpenFlags::O_RDWR;
    if !extra.is_empty() {
        return Err(refuse(format!("status flags {extra:?} cannot be restored")));
    }
    out.ev.pidfd.push(PidfdEntry { id, flags, pid: of as u32 });
    Ok(())
}

/// Registers every pidfd to be opened late, in its task.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for p in &images.ev.pidfd {
        out.add_late(
            p.id,
            Late { path: Vec::new(), flags: (p.flags & OPEN_FLAGS).bits(), pos: u64::MAX, pidfd: Some(p.pid) },
        );
    }
    Ok(())
}
