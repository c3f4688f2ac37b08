//! What the small processes a dump leaves behind have in common: the
//! connection keeper (`crtools-inetlk`, see `inet_sk`) and the memory
//! tracker (`crtools-memtrack`, see `mem_track`). Each is forked with what
//! it hands over and waits on a unix socket for the crtools that takes it
//! (a restore, the next dump). Neither may outlive the dump it belongs to:
//! once that dump's directory no longer holds a complete dump (deleted,
//! withdrawn), it exits, letting go of what it holds (connections close
//! silently in repair mode; a tracked task's write protection ends with
//! its userfaultfd).
//!
//! Everything here runs in the forked child: raw system calls only, no
//! allocation.
use crate::sys::socket::{self as sk, SockFlags};
use crate::sys::Errno;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// How often the child looks whether its dump is still there.
const CHECK_MS: i32 = 2000;

/// Detaches the child: its own session, stdio on `null`, every descriptor
/// in `gaps` closed (0..=2 excepted), named `name`.
pub(crate) fn detach(null: BorrowedFd<'_>, gaps: &[(u32, u32)], name: &[u8]) {
    let _ = crate::sys::misc::setsid();
    for n in 0..3 {
        // SAFETY: 0, 1 and 2 are owned by no Rust value in this child; the
        // results are forgotten so they stay open.
        if let Ok(fd) = unsafe { crate::sys::fs::dup3(null, n, crate::sys::fs::OpenFlags::empty()) } {
            std::mem::forget(fd);
        }
    }
    for &(a, b) in gaps {
        let a = a.max(3);
        if b >= a {
            // SAFETY: nothing in this child uses these descriptors again
            // (the parent's values are never dropped here: exit_group ends it).
            let _ = unsafe { crate::sys::fs::close_range(a, b, crate::sys::fs::CloseRangeFlags::empty()) };
        }
    }
    let _ = crate::sys::misc::set_name(name);
}

/// The next connection on `l`; exits (status 0) once the directory `dir`
/// (opened O_PATH before the fork) holds no inventory any more, or if
/// waiting fails.
pub(crate) fn accept_taker(l: BorrowedFd<'_>, dir: BorrowedFd<'_>) -> OwnedFd {
    loop {
        match crate::sys::event::poll_for(l.as_raw_fd(), crate::sys::event::POLLIN, CHECK_MS) {
            Ok(0) => {
                if !crate::sys::fs::exists_at(dir, c"inventory.img").unwrap_or(true) {
                    crate::sys::misc::exit_group(0);
                }
                continue;
            }
            Ok(_) => {}
            Err(_) => crate::sys::misc::exit_group(1),
        }
        match sk::accept4(l, SockFlags::SOCK_CLOEXEC) {
            Ok((c, _)) => return c,
            Err(Errno::EINTR) | Err(Errno::ECONNABORTED) | Err(Errno::EAGAIN) => continue,
            Err(_) => crate::sys::misc::exit_group(1),
        }
    }
}

/// The image directory `dir` opened O_PATH for [`accept_taker`].
pub(crate) fn open_dir(dir: &std::path::Path) -> std::result::Result<OwnedFd, String> {
    use crate::sys::fs::OpenFlags;
    crate::sys::fs::openat(None, dir, OpenFlags::O_PATH | OpenFlags::O_DIRECTORY | OpenFlags::O_CLOEXEC, 0)
        .map_err(|e| format!("{}: {e}", dir.display()))
}
