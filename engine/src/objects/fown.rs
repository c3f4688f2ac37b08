//! The signal owner of an open file description: the task or process group
//! that gets SIGIO when the description is in O_ASYNC mode (and SIGURG for
//! a socket's urgent data in any mode), set with F_SETOWN/F_SETOWN_EX, the
//! signal F_SETSIG chose instead of SIGIO, and the uid and euid of the task
//! that set the owner (the kernel sends a signal only if they may signal
//! the owner, see sigio_perm in fs/fcntl.c). This is state of the
//! description, not of one kind: every kind's descriptions go through here.
//!
//! Dump: crtools reads all of it on its own duplicate of the description
//! (F_GETOWN_EX, F_GETSIG, F_GETOWNER_UIDS). An owner outside the tree is
//! refused (its id names nothing after restore). So is O_ASYNC with
//! F_SETSIG: the queued signal carries in si_fd the descriptor number
//! O_ASYNC was turned on through, which would be crtools' own at restore.
//!
//! Restore: F_SETSIG on crtools' copy when the description is made; once
//! every task of the tree exists, F_SETOWN_EX on the copy, from the engine
//! thread running as the dumped uid and euid for that one call (setresuid
//! acts on the calling thread only), and O_ASYNC if the kind left it off.
//!
//! See fcntl(2) (F_SETOWN_EX, F_SETSIG, F_GETOWNER_UIDS).
use super::files::{take_fd, Opened};
use crate::error::{Context, Error, Result};
use crate::image::files::{FownEntry, OpenFlags};
use crate::sys::{fs, misc, Pid};
use std::os::fd::AsFd;

/// F_OWNER_PGRP.
const OWNER_PGRP: u32 = 2;

/// Reads the signal owner of `fd` of `pid` (file object `id`, status
/// `flags`); `tree_tids` are every pid and tid of the tree. Returns the
/// record to keep, if the description has an owner or a signal.
pub fn dump(pid: Pid, fd: i32, id: u32, flags: u32, tree_tids: &[u32]) -> Result<Option<FownEntry>> {
    let flags = OpenFlags::from_bits_retain(flags);
    if flags.contains(OpenFlags::O_PATH) {
        // fcntl refuses all but F_GETFL and the descriptor commands on an
        // O_PATH description (EBADF): it has no owner.
        return Ok(None);
    }
    let async_mode = flags.contains(OpenFlags::O_ASYNC);
    let copy = take_fd(pid, fd)?;
    let what = |op: &str| format!("fd {fd}: {op}");
    let (owner_type, owner) = fs::fcntl_getown_ex(copy.as_fd()).ctx(pid, &what("F_GETOWN_EX"))?;
    let signum = fs::fcntl_getsig(copy.as_fd()).ctx(pid, &what("F_GETSIG"))?;
    if owner == 0 && signum == 0 {
        // O_ASYNC without an owner signals nobody: the flag alone is restored by its kind.
        return Ok(None);
    }
    if async_mode && signum != 0 {
        return Err(Error::refuse(
            pid,
            format!(
                "fd {fd}: O_ASYNC with F_SETSIG signal {signum}: its si_fd would name crtools' descriptor \
                 after restore"
            ),
        ));
    }
    let mut e = FownEntry { id, owner_type, pid: owner, signum, async_mode, ..Default::default() };
    if owner != 0 {
        let in_tree = if owner_type == OWNER_PGRP {
            tree_tids.iter().any(|&t| {
                crate::proc::stat::read(Pid(t as i32)).is_ok_and(|s| s.pid == t as i32 && s.pgrp as u32 == owner)
            })
        } else {
            tree_tids.contains(&owner)
        };
        if !in_tree {
            return Err(Error::refuse(
                pid,
                format!("fd {fd}: its signal owner (F_SETOWN) is {} {owner}, outside the tree", e.type_name()),
            ));
        }
        (e.uid, e.euid) = fs::fcntl_getowner_uids(copy.as_fd()).ctx(pid, &what("F_GETOWNER_UIDS"))?;
    }
    Ok(Some(e))
}

/// Gives crtools' copies of the descriptions their signal and, once the
/// tree exists, their owner.
pub fn open(fowns: &[FownEntry], out: &mut Opened) -> Result<()> {
    for f in fowns {
        let fd = out.get(f.id).ok_or_else(|| Error::new(format!("fown.img: file {} was not made", f.id)))?;
        if f.signum != 0 {
            fs::fcntl_setsig(fd, f.signum).map_err(|e| Error::new(format!("file {}: F_SETSIG: {e}", f.id)))?;
        }
    }
    let fowns: Vec<FownEntry> = fowns.iter().filter(|f| f.pid != 0 || f.async_mode).copied().collect();
    if !fowns.is_empty() {
        out.defer(Box::new(move |opened: &Opened| {
            for f in &fowns {
                set_owner(f, opened)?;
            }
            Ok(())
        }));
    }
    Ok(())
}

fn set_owner(f: &FownEntry, opened: &Opened) -> Result<()> {
    let e = |op: &str, err: crate::sys::Errno| Error::new(format!("file {}: {op}: {err}", f.id));
    let fd = opened.get(f.id).ok_or_else(|| Error::new(format!("file {}: not made", f.id)))?;
    if f.pid != 0 {
        as_uids(f.uid, f.euid, || fs::fcntl_setown_ex(fd, f.owner_type, f.pid))
            .map_err(|err| e(&format!("F_SETOWN_EX {} {} as uid {}/{}", f.type_name(), f.pid, f.uid, f.euid), err))?;
    }
    let fl = fs::fcntl_getfl(fd).map_err(|err| e("F_GETFL", err))?;
    if f.async_mode && !fl.contains(fs::OpenFlags::O_ASYNC) {
        fs::fcntl_setfl(fd, fl | fs::OpenFlags::O_ASYNC).map_err(|err| e("F_SETFL O_ASYNC", err))?;
    }
    Ok(())
}

/// Runs `f` with the calling thread's real and effective uid set to
/// `uid`/`euid` (the saved uid kept, to come back), then puts them back.
fn as_uids<T>(
    uid: u32,
    euid: u32,
    f: impl FnOnce() -> std::result::Result<T, crate::sys::Errno>,
) -> std::result::Result<T, crate::sys::Errno> {
    let me = misc::getresuid()?;
    if (me.real, me.effective) == (uid, euid) {
        return f();
    }
    misc::setresuid(Some(uid), Some(euid), None)?;
    let r = f();
    // Allowed: the saved uid is still ours.
    misc::setresuid(Some(me.real), Some(me.effective), Some(me.saved))
        .expect("crtools cannot take its own uids back after setting a signal owner");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root: an owner set through a thread running as another uid
    /// carries that uid, and the thread gets its own uids back.
    #[test]
    fn owner_is_set_with_the_dumped_uids() {
        if misc::getresuid().map(|r| r.effective) != Ok(0) {
            eprintln!("skipped: needs root");
            return;
        }
        // A thread of its own: the uids change for the calling thread only.
        std::thread::spawn(|| {
            let (r, _w) = fs::pipe2(fs::OpenFlags::O_CLOEXEC).unwrap();
            let me = misc::getpid();
            as_uids(1234, 4321, || fs::fcntl_setown_ex(r.as_fd(), 1, me.0 as u32)).unwrap();
            assert_eq!(fs::fcntl_getown_ex(r.as_fd()).unwrap(), (1, me.0 as u32));
            assert_eq!(fs::fcntl_getowner_uids(r.as_fd()).unwrap(), (1234, 4321));
            let back = misc::getresuid().unwrap();
            assert_eq!((back.real, back.effective, back.saved), (0, 0, 0));
        })
        .join()
        .unwrap();
    }
}
