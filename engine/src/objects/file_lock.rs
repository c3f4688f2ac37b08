//! File locks and leases held by the tree: flock(2), POSIX (fcntl F_SETLK)
//! and OFD (F_OFD_SETLK) locks, leases (F_SETLEASE).
//!
//! Without `--file-locks` a task of the tree that holds any of them is
//! refused by name, since a restored tree without its locks would let
//! another process take them. With it ([`collect`]) every lock is recorded
//! with the descriptor it was taken through and taken again at restore by
//! the same task through the same descriptor, once every task exists
//! (`files::open_late`): POSIX locks by their owner, flock and OFD locks
//! and leases (owned by the open file description) once per description.
//! Waiters are not locks: a task blocked in F_SETLKW or flock() blocks
//! again when its system call restarts.
//!
//! Two views, so that no held lock goes unseen:
//! - each descriptor's fdinfo lists the locks held through its open file
//!   description: flock, OFD and leases (owned by the open file), and POSIX
//!   locks owned by the task's descriptor table, on the descriptor they
//!   were taken through ([`refuse_held`]);
//! - `/proc/locks` lists every lock of the system with the pid that took
//!   it; any held (not waiting) lock recorded under a pid of the tree is
//!   refused as well ([`refuse_listed`]), which covers a POSIX lock whose
//!   owner table is not the one fdinfo compares with (a thread that
//!   unshared its descriptor table). It is read by [`read_in_background`]
//!   once the tree is frozen, beside the rest of the dump: the first read
//!   after a quiet while waits for an RCU grace period (about 10 ms).

/// Reads `/proc/locks` in a thread of its own (see the module docs); the
/// tree must be frozen already.
pub fn read_in_background() -> Result<std::thread::JoinHandle<proc::Result<Vec<FileLock>>>> {
    std::thread::Builder::new()
        .name("proc-locks".into())
        .stack_size(64 << 10)
        .spawn(locks::read_all)
        .map_err(|e| Error::new(format!("start a thread to read /proc/locks: {e}")))
}

/// The result of [`read_in_background`].
pub fn join(h: std::thread::JoinHandle<proc::Result<Vec<FileLock>>>) -> Result<Vec<FileLock>> {
    h.join().map_err(|_| Error::new("the /proc/locks reader panicked"))?.ctx_global("read /proc/locks")
}
use crate::error::{Context, Error, Result};
use crate::proc;
use crate::proc::fdinfo::{self, FdTarget};
use crate::proc::locks::{self, FileLock};
use crate::sys::Pid;
use std::os::unix::fs::MetadataExt;

fn target_name(t: &FdTarget) -> String {
    match t {
        FdTarget::Path(p) => p.path.display().to_string(),
        FdTarget::AnonInode(n) => format!("anon_inode:{n}"),
        FdTarget::Pipe(i) => format!("pipe:[{i}]"),
        FdTarget::Socket(i) => format!("socket:[{i}]"),
        FdTarget::Inode { kind, ino } => format!("{kind}:[{ino}]"),
        FdTarget::Other(raw) => String::from_utf8_lossy(raw).into_owned(),
    }
}

fn refusal(pid: Pid, fd: i32, what: &str, lock: &FileLock) -> Error {
    Error::refuse(
        pid,
        format!(
            "fd {fd} ({what}) holds a {}: file locks and leases are dumped only with --file-locks (-l)",
            lock.describe()
        ),
    )
}

/// Refuses `pid` if any of its descriptors holds a lock or a lease.
pub fn refuse_held(pid: Pid) -> Result<()> {
    let list = fdinfo::list_fds(pid).ctx(pid, "list descriptors")?;
    for e in &list {
        let held = match locks::fd_locks(pid, e.fd) {
            Ok(l) => l,
            // Closed since the listing (a task of the tree is frozen, but
            // its descriptor table may be shared with a task that is not).
            Err(err) if err.is_gone() => continue,
            Err(err) => return Err(Error::task(pid, format!("read the locks of fd {}: {err}", e.fd))),
        };
        if let Some(l) = held.iter().find(|l| !l.waiter) {
            return Err(refusal(pid, e.fd, &target_name(&e.target), l));
        }
    }
    Ok(())
}

/// Whether fdinfo lists a lease held through this descriptor (taking a
/// lease sets O_ASYNC, with the taker as the signal owner).
pub fn holds_lease(info: &fdinfo::FdInfo) -> bool {
    info.extra
        .iter()
        .filter(|(k, _)| k == "lock")
        .filter_map(|(_, v)| locks::parse_line(v).ok())
        .any(|l| !l.waiter && l.kind == locks::LockKind::Lease)
}

/// Records the locks fdinfo lists for `fd` of `pid` (open file
/// description `id`) with `--file-locks`: POSIX locks for this task, the
/// others once per description.
pub fn collect(
    pid: Pid,
    fd: i32,
    id: u32,
    info: &fdinfo::FdInfo,
    out: &mut Vec<crate::image::files::FileLockEntry>,
) -> Result<()> {
    use crate::image::files::FileLockEntry;
    use locks::{LockKind, LockType};
    for (_, v) in info.extra.iter().filter(|(k, _)| k == "lock") {
        let l = locks::parse_line(v).map_err(|e| Error::task(pid, format!("fd {fd}: lock line: {e}")))?;
        if l.waiter {
            continue;
        }
        let kind = match l.kind {
            LockKind::Posix => 0,
            LockKind::Ofd => 1,
            LockKind::Flock => 2,
            LockKind::Lease => 3,
            _ => return Err(Error::refuse(pid, format!("fd {fd} holds a {}: not supported", l.describe()))),
        };
        let write = match l.ty {
            LockType::Read => false,
            LockType::Write => true,
            LockType::Unlock => {
                // Broken by another open: restoring the break in progress
                // (its timeout, the break signal) is not built. Refused:
                // the tree is let go untouched, and a dump once its holder
                // gave the lease up or downgraded it works.
                return Err(Error::refuse(
                    pid,
                    format!("fd {fd}: a lease is being broken: not supported (dump again once it is given up)"),
                ));
            }
        };
        let e = FileLockEntry { pid: pid.0 as u32, fd: fd as u32, id, kind, write, start: l.start, end: l.end, vma: 0 };
        // A description's own lock shows on every descriptor of it.
        let dup = kind != 0
            && out
                .iter()
                .any(|o| o.id == id && o.kind == kind && o.write == write && o.start == e.start && o.end == e.end);
        if !dup {
            out.push(e);
        }
    }
    Ok(())
}

/// With `--file-locks`: every held POSIX lock `/proc/locks` lists under a
/// pid of the tree must be one [`collect`] found (a lock owned by a
/// descriptor table fdinfo does not compare with would be lost). Flock
/// locks and leases it lists under a pid of the tree, on a file, beyond
/// those descriptors of the tree hold: held through a description no
/// descriptor has. One flock lock on a file one task of the tree maps is
/// held through that mapping (a file mapped, locked and closed: the JVM's
/// hsperfdata file) and recorded on it; anything else is refused.
pub fn check_recorded(
    pids: &[Pid],
    recorded: &mut Vec<crate::image::files::FileLockEntry>,
    all: &[FileLock],
) -> Result<()> {
    use std::collections::BTreeMap;
    // A lock's kind (as FileLockEntry has it) and inode (device, number).
    type Key = (u8, (u32, u32), u64);
    // Held through descriptors: how many of each.
    let mut on_fds: BTreeMap<Key, usize> = BTreeMap::new();
    for r in recorded.iter().filter(|r| r.kind >= 2 && r.vma == 0) {
        let m = std::fs::metadata(proc::pid_path(Pid(r.pid as i32), &format!("fd/{}", r.fd)))
            .ctx(Pid(r.pid as i32), &format!("fd {}: stat", r.fd))?;
        *on_fds.entry((r.kind, major_minor(m.dev()), m.ino())).or_default() += 1;
    }
    let mut listed: BTreeMap<Key, Vec<&FileLock>> = BTreeMap::new();
    for l in all.iter().filter(|l| !l.waiter && l.pid > 0 && pids.contains(&Pid(l.pid))) {
        let kind = match l.kind {
            locks::LockKind::Flock => 2,
            locks::LockKind::Lease => 3,
            _ => continue,
        };
        let Some(dev) = l.dev else { continue };
        listed.entry((kind, dev, l.ino)).or_default().push(l);
    }
    for (key, ls) in listed {
        let held = on_fds.get(&key).copied().unwrap_or(0);
        if ls.len() <= held {
            continue;
        }
        let l = ls[0];
        let pid = Pid(l.pid);
        let (maj, min) = key.1;
        let what = format!("{} on inode {maj:x}:{min:x}:{}", l.describe(), l.ino);
        let refuse = |why: &str| Error::refuse(pid, format!("holds a {what} that none of its descriptors shows{why}"));
        if key.0 != 2 || ls.len() > held + 1 {
            return Err(refuse(": not supported"));
        }
        let mapped = mappings_of(pids, key.1, l.ino)?;
        let Some(&(holder, start, ref path)) = mapped.first() else {
            return Err(refuse(
                " nor any file mapping of the tree (its description is in flight in a unix socket, \
                 or held by a process outside the tree): not supported",
            ));
        };
        if mapped.iter().any(|m| m.0 != holder) {
            return Err(refuse(&format!(
                ", held through a mapping of {path} that several processes of the tree share: not supported"
            )));
        }
        log::info!(task = holder.0; "the {what} is held through the mapping of {path} at {start:#x}");
        recorded.push(crate::image::files::FileLockEntry {
            pid: holder.0 as u32,
            kind: 2,
            write: l.ty == locks::LockType::Write,
            vma: start,
            ..Default::default()
        });
    }
    for l in all.iter().filter(|l| !l.waiter && l.pid > 0 && l.kind == locks::LockKind::Posix) {
        let pid = Pid(l.pid);
        if !pids.contains(&pid) {
            continue;
        }
        let found =
            recorded.iter().any(|r| r.kind == 0 && r.pid == pid.0 as u32 && r.start == l.start && r.end == l.end);
        if !found {
            let (maj, min) = l.dev.unwrap_or((0, 0));
            return Err(Error::refuse(
                pid,
                format!(
                    "holds a {} on inode {maj:x}:{min:x}:{} that none of its descriptors shows: not supported",
                    l.describe(),
                    l.ino
                ),
            ));
        }
    }
    Ok(())
}

/// The kernel's MAJOR/MINOR of a user-space `dev_t`.
fn major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// The file mappings of the tasks `pids` of inode `ino` on `dev`: (task,
/// start, path), the first of each task.
fn mappings_of(pids: &[Pid], dev: (u32, u32), ino: u64) -> Result<Vec<(Pid, u64, String)>> {
    let mut out = Vec::new();
    for &pid in pids {
        let maps = match proc::maps::read(pid) {
            Ok(m) => m,
            // A thread's pid (pids lists threads too): its process's maps.
            Err(e) if e.is_gone() => continue,
            Err(e) => return Err(Error::task(pid, format!("read maps: {e}"))),
        };
        if let Some(m) = maps.iter().find(|m| m.inode == ino && (m.dev_major, m.dev_minor) == dev) {
            out.push((pid, m.start, m.path.display().to_string()));
        }
    }
    Ok(out)
}

/// The descriptor of `pid` open on the lock's inode, if any.
fn fd_on(pid: Pid, lock: &FileLock) -> Option<(i32, String)> {
    let list = fdinfo::list_fds(pid).ok()?;
    list.iter().find_map(|e| {
        let m = std::fs::metadata(proc::pid_path(pid, &format!("fd/{}", e.fd))).ok()?;
        (Some(major_minor(m.dev())) == lock.dev && m.ino() == lock.ino).then(|| (e.fd, target_name(&e.target)))
    })
}

/// Refuses the tree if `/proc/locks` (`all`) lists a held lock or lease
/// taken by one of `pids` (the processes of the tree).
pub fn refuse_listed(pids: &[Pid], all: &[FileLock]) -> Result<()> {
    for l in all.iter().filter(|l| !l.waiter && l.pid > 0) {
        let pid = Pid(l.pid);
        if !pids.contains(&pid) {
            continue;
        }
        if let Some((fd, what)) = fd_on(pid, l) {
            return Err(refusal(pid, fd, &what, l));
        }
        if let Some((holder, start, path)) =
            l.dev.and_then(|dev| mappings_of(pids, dev, l.ino).ok()).and_then(|m| m.into_iter().next())
        {
            return Err(Error::refuse(
                holder,
                format!(
                    "its mapping of {path} at {start:#x} holds a {}: file locks and leases are dumped only \
                     with --file-locks (-l)",
                    l.describe()
                ),
            ));
        }
        let (maj, min) = l.dev.unwrap_or((0, 0));
        return Err(Error::refuse(
            pid,
            format!(
                "holds a {} on inode {maj:x}:{min:x}:{} (/proc/locks): file locks and leases are dumped \
                 only with --file-locks (-l)",
                l.describe(),
                l.ino
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_t_decoding() {
        // makedev(0xfe, 0) and makedev(259, 70000) as glibc encodes them.
        assert_eq!(major_minor(0xfe00), (0xfe, 0));
        let (maj, min) = (259u64, 70000u64);
        let dev = ((maj & 0xfff) << 8) | ((maj & !0xfff) << 32) | (min & 0xff) | ((min & !0xff) << 12);
        assert_eq!(dev, libc::makedev(259, 70000));
        assert_eq!(major_minor(dev), (259, 70000));
    }

    #[test]
    fn own_flock_is_refused_by_fd_and_path() {
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join(format!("crtools-file-lock-{}", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        let me = Pid(std::process::id() as i32);
        // SAFETY: flock on our own descriptor.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) }, 0);
        let e = refuse_held(me).unwrap_err().to_string();
        assert!(e.contains(&format!("fd {}", f.as_raw_fd())) && e.contains("read flock lock"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        let e = refuse_listed(&[me], &join(read_in_background().unwrap()).unwrap()).unwrap_err().to_string();
        assert!(e.contains("flock"), "{e}");
        drop(f);
        let _ = std::fs::remove_file(&path);
    }
}
