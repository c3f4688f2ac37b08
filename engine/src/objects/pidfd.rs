//! pidfd (see pidfd_open(2)) of a task of the tree: its task (fdinfo
//! `Pid:`) and status flags (O_NONBLOCK = PIDFD_NONBLOCK, O_EXCL =
//! PIDFD_THREAD). A pidfd cannot exist before its task does, so it is
//! opened late, in its task, by pidfd_open once the whole tree exists
//! ([`super::files::open_late`]). A pidfd of a task that has exited and been
//! reaped (fdinfo `Pid: -1`) names no pid any more: the engine makes one of
//! a helper process that exits at once, one helper per dead task (pidfds of
//! the same dead task share its pidfs inode). A pidfd of a task outside the
//! tree is refused by name.
use super::files::{FdCtx, FileImages, Late, Opened};
use crate::error::{Error, Result};
use crate::image::events::PidfdEntry;
use crate::image::files::OpenFlags;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::Pid;

/// One pidfd per entry of `descs` (with its flags), all of one process
/// that has exited and been reaped: a helper forked to exit at once.
fn of_a_dead_task(descs: &[&PidfdEntry]) -> Result<Vec<std::os::fd::OwnedFd>> {
    use crate::sys::clone::CloneResult;
    use crate::sys::pidfd::{pidfd_open, PidfdFlags};
    // SAFETY: the child only exits.
    let child = match unsafe { crate::sys::clone::fork() } {
        Ok(CloneResult::Child) => crate::sys::misc::exit_group(0),
        Ok(CloneResult::Parent { child, .. }) => child,
        Err(e) => return Err(Error::new(format!("pidfd of a reaped task: fork a helper: {e}"))),
    };
    // Opened while it is there (running, or a zombie), then reaped.
    let fds: crate::sys::Result<Vec<_>> =
        descs.iter().map(|p| pidfd_open(child, PidfdFlags::from_bits_retain((p.flags & OPEN_FLAGS).bits()))).collect();
    let _ = crate::sys::wait::wait4(child, crate::sys::wait::WALL);
    fds.map_err(|e| Error::new(format!("pidfd of a reaped task: pidfd_open of a helper: {e}")))
}

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
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let extra = flags - OPEN_FLAGS - OpenFlags::O_RDWR;
    if !extra.is_empty() {
        return Err(refuse(format!("status flags {extra:?} cannot be restored")));
    }
    if of <= 0 {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}")))
            .map_err(|err| e(format!("stat: {err}")))?;
        out.ev.pidfd.push(PidfdEntry { id, flags, pid: 0, dead: md.ino().max(1) });
        return Ok(());
    }
    if !cx.tree_tids.contains(&(of as u32)) {
        return Err(refuse(format!("refers to task {of}, which is outside the dumped tree")));
    }
    out.ev.pidfd.push(PidfdEntry { id, flags, pid: of as u32, dead: 0 });
    Ok(())
}

/// Registers every pidfd of a live task to be opened late, in its task;
/// makes those of reaped tasks.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    let mut dead: std::collections::BTreeMap<u64, Vec<&PidfdEntry>> = Default::default();
    for p in images.ev.pidfd.iter().filter(|p| p.pid == 0) {
        if p.dead == 0 {
            return Err(Error::new(format!("pidfd {}: neither a task nor a dead one in the images", p.id)));
        }
        dead.entry(p.dead).or_default().push(p);
    }
    for descs in dead.values() {
        for (p, fd) in descs.iter().zip(of_a_dead_task(descs)?) {
            out.add(p.id, fd);
        }
    }
    for p in images.ev.pidfd.iter().filter(|p| p.pid != 0) {
        out.add_late(
            p.id,
            Late { path: Vec::new(), flags: (p.flags & OPEN_FLAGS).bits(), pos: u64::MAX, pidfd: Some(p.pid) },
        );
    }
    Ok(())
}
