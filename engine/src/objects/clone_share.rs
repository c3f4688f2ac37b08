//! Kernel objects that processes of the tree share without being threads
//! of one another: an address space (clone CLONE_VM without CLONE_THREAD,
//! e.g. a vfork child and its parent), a descriptor table (CLONE_FILES),
//! fs information (root, cwd, umask: CLONE_FS) or a signal handler table
//! (CLONE_SIGHAND).
//!
//! Detected with kcmp(2), which orders the kernel objects of two tasks: the
//! processes are sorted by each object and neighbours compared, so a tree
//! of n processes costs O(n log n) kcmp calls per kind.
//!
//! A descriptor table or fs information shared by processes is restored
//! ([`sharing`]): the processes sharing one form a group, recorded in the
//! pstree image as the pid of the group's first process (its *owner*, the
//! one whose parent is not in the group). Restore forks every other member
//! with CLONE_FILES / CLONE_FS from its parent, so a group must be a
//! subtree: each member but the owner has its parent in the group. Other
//! layouts (siblings that inherited a table from an ancestor that since
//! unshared or exec'd it) cannot be rebuilt by forking and are refused by
//! name, as are shared address spaces and signal handler tables.
//!
//! The other way round, a thread that unshared its descriptor table or fs
//! information (unshare(CLONE_FILES / CLONE_FS)) would come back sharing
//! its process's: refused too ([`refuse_unshared_threads`]).
//!
//! A thread waiting in vfork for its child shares its address space with
//! it and cannot even be frozen (it sleeps uninterruptibly until the child
//! execs or exits): that is looked for before the tree is seized
//! ([`refuse_vfork_waiters`]).
//!
//! Not checked: KCMP_IO and KCMP_SYSVSEM (tasks without an I/O context or
//! SysV undo list compare equal through their null pointers).
use crate::error::{Context, Error, Result};
use crate::image::pstree::PstreeEntry;
use crate::proc;
use crate::sys::misc::{kcmp, KcmpOrder, KcmpType};
use crate::sys::Pid;

/// The kinds checked: (kcmp type, what is shared, clone flag).
const SHARED: [(KcmpType, &str, &str); 4] = [
    (KcmpType::Vm, "address space", "CLONE_VM"),
    (KcmpType::Files, "descriptor table", "CLONE_FILES"),
    (KcmpType::Fs, "fs information (root, cwd, umask)", "CLONE_FS"),
    (KcmpType::Sighand, "signal handler table", "CLONE_SIGHAND"),
];

/// Who shares what, from [`sharing`]: for each process that shares its
/// descriptor table or fs information with others, the owner of the group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sharing {
    /// pid -> owner of its descriptor table group.
    pub files: std::collections::BTreeMap<Pid, Pid>,
    /// pid -> owner of its fs information group.
    pub fs: std::collections::BTreeMap<Pid, Pid>,
}

impl Sharing {
    /// The owner of `pid`'s descriptor table group (0: a table of its own).
    pub fn files_of(&self, pid: Pid) -> u32 {
        self.files.get(&pid).map_or(0, |o| o.0 as u32)
    }

    /// The owner of `pid`'s fs information group (0: its own).
    pub fn fs_of(&self, pid: Pid) -> u32 {
        self.fs.get(&pid).map_or(0, |o| o.0 as u32)
    }
}

/// Sorts `pids` by their object of kind `ty` and returns the runs of
/// processes sharing one (each run in `pids` order, two or more long).
fn groups(pids: &[Pid], ty: KcmpType, what: &str) -> Result<Vec<Vec<Pid>>> {
    let mut failed = None;
    let mut order = pids.to_vec();
    order.sort_by(|&a, &b| match kcmp(a, b, ty) {
        Ok(KcmpOrder::Less) => std::cmp::Ordering::Less,
        Ok(KcmpOrder::Greater) => std::cmp::Ordering::Greater,
        Ok(KcmpOrder::Equal) => std::cmp::Ordering::Equal,
        Ok(KcmpOrder::Unordered) | Err(_) => {
            failed.get_or_insert((a, b));
            std::cmp::Ordering::Equal
        }
    });
    if let Some((a, b)) = failed {
        let e = kcmp(a, b, ty).err().map_or_else(|| "unordered".to_string(), |e| e.to_string());
        return Err(Error::task(a, format!("kcmp of its {what} with task {b}: {e}")));
    }
    let mut out: Vec<Vec<Pid>> = Vec::new();
    let mut run: Vec<Pid> = Vec::new();
    for &p in &order {
        if let Some(&q) = run.last() {
            if kcmp(q, p, ty).map_err(|e| Error::task(q, format!("kcmp with task {p}: {e}")))? == KcmpOrder::Equal {
                run.push(p);
                continue;
            }
            if run.len() > 1 {
                out.push(std::mem::take(&mut run));
            } else {
                run.clear();
            }
        }
        run.push(p);
    }
    if run.len() > 1 {
        out.push(run);
    }
    for g in out.iter_mut() {
        g.sort_by_key(|p| pids.iter().position(|q| q == p));
    }
    Ok(out)
}

/// The owner of a sharing group: its one member whose parent is not in
/// the group. `None` when the group is not a subtree (restore could not
/// fork it), with the two members that prove it.
pub fn group_owner(group: &[Pid], parent_of: impl Fn(Pid) -> Option<Pid>) -> std::result::Result<Pid, (Pid, Pid)> {
    let tops: Vec<Pid> =
        group.iter().copied().filter(|&p| parent_of(p).is_none_or(|pp| !group.contains(&pp))).collect();
    match tops.as_slice() {
        [one] => Ok(*one),
        [a, b, ..] => Err((*a, *b)),
        // A cycle: not a tree at all.
        [] => Err((group[0], group[1])),
    }
}

/// Finds the processes of `pids` (the live processes, `parents[i]` the
/// parent of `pids[i]`) that share a descriptor table or fs information,
/// and refuses the tree if two share an address space or signal handler
/// table, or if a sharing group cannot be rebuilt by forking.
pub fn sharing(pids: &[Pid], parents: &[Pid]) -> Result<Sharing> {
    let mut out = Sharing::default();
    if pids.len() < 2 {
        return Ok(out);
    }
    let parent_of = |p: Pid| pids.iter().position(|&q| q == p).map(|i| parents[i]);
    for (ty, what, flag) in SHARED {
        let groups = groups(pids, ty, what)?;
        let map = match ty {
            KcmpType::Files => &mut out.files,
            KcmpType::Fs => &mut out.fs,
            _ => {
                let Some(g) = groups.first() else { continue };
                return Err(Error::refuse(
                    g[0],
                    format!(
                        "shares its {what} with task {} ({flag} without CLONE_THREAD): \
                         processes sharing it are not restored yet",
                        g[1]
                    ),
                ));
            }
        };
        for g in groups {
            if ty == KcmpType::Fs {
                // The owner's chroot would move the paths the other members
                // still open while they are restored (restore refuses too).
                let root = crate::proc::misc::root(g[0]).ctx(g[0], "read its root")?;
                if root.path.as_os_str().as_encoded_bytes() != b"/" {
                    return Err(Error::refuse(
                        g[0],
                        format!(
                            "shares its {what} ({flag}) with task {} and is chrooted to {}: not restored yet",
                            g[1],
                            root.path.display()
                        ),
                    ));
                }
            }
            let owner = group_owner(&g, parent_of).map_err(|(a, b)| {
                Error::refuse(
                    a,
                    format!(
                        "shares its {what} ({flag}) with task {b}, which is neither its parent nor its \
                         child in the sharing: only a parent and the children it created with {flag} \
                         can be recreated sharing it"
                    ),
                )
            })?;
            for p in g {
                map.insert(p, owner);
            }
        }
    }
    Ok(out)
}

/// How a process is recreated for one kind of sharing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// A table (or fs information) of its own.
    #[default]
    Own,
    /// The first of a sharing group: restores the content for all.
    Owner,
    /// Forked by its parent with CLONE_FILES / CLONE_FS; leaves the
    /// content to the owner.
    Member,
}

/// The roles of the processes of `tree` (pstree order) for their
/// descriptor tables and fs information; refuses groups that forking
/// cannot rebuild (hostile or hand-made images: the dump refuses them).
pub fn restore_roles(tree: &[PstreeEntry]) -> Result<Vec<(Role, Role)>> {
    let by_pid: std::collections::BTreeMap<u32, &PstreeEntry> = tree.iter().map(|e| (e.pid, e)).collect();
    let mut roles = vec![(Role::Own, Role::Own); tree.len()];
    type With = fn(&PstreeEntry) -> u32;
    let kinds: [(&str, &str, With); 2] =
        [("descriptor table", "CLONE_FILES", |e| e.files_with), ("fs information", "CLONE_FS", |e| e.fs_with)];
    for (k, (what, flag, with)) in kinds.into_iter().enumerate() {
        for (i, e) in tree.iter().enumerate() {
            let w = with(e);
            if w == 0 {
                continue;
            }
            let pid = Pid(e.pid as i32);
            match by_pid.get(&w) {
                Some(o) if with(o) == w => {}
                _ => return Err(Error::task(pid, format!("shares the {what} of task {w}, which does not lead it"))),
            }
            let role = if e.pid == w {
                Role::Owner
            } else if by_pid.get(&e.ppid).is_some_and(|p| with(p) == w) {
                Role::Member
            } else {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "shares the {what} of task {w} but its parent {} does not: \
                         it cannot be forked with {flag}",
                        e.ppid
                    ),
                ));
            };
            if k == 0 {
                roles[i].0 = role;
            } else {
                roles[i].1 = role;
            }
        }
    }
    Ok(roles)
}

/// Refuses process `pid` if one of its threads `tids` has a descriptor
/// table or fs information of its own: the restorer creates every thread
/// sharing its process's.
pub fn refuse_unshared_threads(pid: Pid, tids: &[Pid]) -> Result<()> {
    for &tid in tids.iter().filter(|&&t| t != pid) {
        for (ty, what, flag) in [SHARED[1], SHARED[2]] {
            let same = kcmp(pid, tid, ty).map_err(|e| Error::task(pid, format!("kcmp with thread {tid}: {e}")))?;
            if same != KcmpOrder::Equal {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "thread {tid} has its own {what} (unshare({flag})), not its process's: \
                         such threads are not restored yet"
                    ),
                ));
            }
        }
    }
    Ok(())
}

const CLONE_VFORK: u64 = 0x4000;
const NR_CLONE: i64 = 56;
const NR_VFORK: i64 = 58;
const NR_CLONE3: i64 = 435;

/// What `/proc/<pid>/task/<tid>/syscall` says about a vfork wait: `Some`
/// with the clone3 argument pointer for clone3 (its flags are in memory),
/// `Some(0)` for vfork or clone with CLONE_VFORK, `None` otherwise.
fn vfork_wait(text: &str) -> Option<u64> {
    let mut w = text.split_whitespace();
    let nr = w.next()?.parse::<i64>().ok()?;
    let arg0 = w.next().and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
    match (nr, arg0) {
        (NR_VFORK, _) => Some(0),
        (NR_CLONE, Some(flags)) if flags & CLONE_VFORK != 0 => Some(0),
        (NR_CLONE3, Some(args)) if args != 0 => Some(args),
        _ => None,
    }
}

/// How long a vfork may take to end (its child execs or exits) before the
/// dump gives up: shells (dash) vfork for every command they run.
const VFORK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits until no thread of the tree of `root` (not seized yet) waits in
/// vfork for a child; refuses the tree when one still does after
/// [`VFORK_PATIENCE`]. Best effort on a running tree: a vfork started after
/// this look is still caught by [`refuse_shared`] if the seize gets that
/// far.
///
/// It also refuses a tree with io_uring kernel threads (an SQPOLL ring's
/// iou-sqp, io-wq's iou-wrk workers): they are listed among a process's
/// threads but never stop for a tracer, so seizing one would hold the
/// tree frozen for ever.
pub fn refuse_vfork_waiters(root: Pid) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        match vfork_waiter(root) {
            Ok(()) => return Ok(()),
            Err((e, false)) => return Err(e),
            Err((e, true)) if start.elapsed() >= VFORK_PATIENCE => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    }
}

/// The first thread found waiting in vfork (worth waiting for: true) or
/// an io_uring kernel thread (false).
fn vfork_waiter(root: Pid) -> std::result::Result<(), (Error, bool)> {
    let mut queue = vec![root];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Ok(tids) = proc::task::threads(pid) else { continue };
        for tid in tids {
            if let Some(name) = proc::stat::io_worker(pid, tid) {
                return Err((
                    Error::refuse(
                        pid,
                        format!("thread {tid} ({name}) is an io_uring kernel thread: io_uring is not supported yet"),
                    ),
                    false,
                ));
            }
            let file = proc::pid_path(pid, &format!("task/{tid}/syscall"));
            let Some(wait) = std::fs::read_to_string(file).ok().as_deref().and_then(vfork_wait) else { continue };
            if wait != 0 {
                // clone3: the flags are the first word of struct clone_args.
                let flags = crate::sys::process_vm::read_vec(pid, wait, 8)
                    .ok()
                    .and_then(|b| b.get(..8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes"))));
                if flags.is_none_or(|f| f & CLONE_VFORK == 0) {
                    continue;
                }
            }
            let children = proc::task::thread_children(pid, tid).unwrap_or_default();
            let children: Vec<String> = children.iter().map(|c| c.to_string()).collect();
            return Err((
                Error::refuse(
                    pid,
                    format!(
                        "thread {tid} waits in vfork for its child {}, which shares its address space \
                         (CLONE_VM|CLONE_VFORK): processes sharing it are not restored yet",
                        children.join(", ")
                    ),
                ),
                true,
            ));
        }
        queue.extend(proc::task::children(pid).unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_owners() {
        // 10 -> 11 -> 12, 10 -> 13.
        let parent = |p: Pid| match p.0 {
            11 | 13 => Some(Pid(10)),
            12 => Some(Pid(11)),
            _ => None,
        };
        assert_eq!(group_owner(&[Pid(10), Pid(11), Pid(12)], parent), Ok(Pid(10)));
        assert_eq!(group_owner(&[Pid(11), Pid(12)], parent), Ok(Pid(11)));
        // Siblings without their parent: not a subtree.
        assert_eq!(group_owner(&[Pid(11), Pid(13)], parent), Err((Pid(11), Pid(13))));
        assert_eq!(group_owner(&[Pid(12), Pid(13)], parent), Err((Pid(12), Pid(13))));
    }

    #[test]
    fn roles_from_the_pstree() {
        let e = |pid, ppid, files_with, fs_with| PstreeEntry { pid, ppid, files_with, fs_with, ..Default::default() };
        let tree = [e(10, 0, 10, 0), e(11, 10, 10, 11), e(12, 11, 0, 11), e(13, 10, 0, 0)];
        let r = restore_roles(&tree).unwrap();
        assert_eq!(r[0], (Role::Owner, Role::Own));
        assert_eq!(r[1], (Role::Member, Role::Owner));
        assert_eq!(r[2], (Role::Own, Role::Member));
        assert_eq!(r[3], (Role::Own, Role::Own));
        // 13 shares 11's table, but its parent 10 does not.
        let tree = [e(10, 0, 0, 0), e(11, 10, 11, 0), e(13, 10, 11, 0)];
        assert!(restore_roles(&tree).unwrap_err().to_string().contains("cannot be forked with CLONE_FILES"));
    }

    #[test]
    fn vfork_waits_from_syscall_samples() {
        let vfork = "56 0x4111 0x55fd137bf050 0x55fd26bae000 0x1 0x21001 0x21001 0x7ffc18a6d858 0x7fbef0840b42";
        assert_eq!(vfork_wait(vfork), Some(0));
        assert_eq!(vfork_wait("58 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7fbe"), Some(0));
        // glibc's fork: clone without CLONE_VFORK.
        assert_eq!(vfork_wait("56 0x1200011 0x0 0x0 0x7f12 0x0 0x0 0x7ffc 0x7fbe"), None);
        assert_eq!(vfork_wait("435 0x7ffc00001000 0x58 0x0 0x0 0x0 0x0 0x7ffc 0x7fbe"), Some(0x7ffc_0000_1000));
        assert_eq!(vfork_wait("230 0x1 0x0 0x7ffc 0x0 0x0 0x0 0x7ffc 0x7fbe"), None);
        assert_eq!(vfork_wait("running"), None);
        assert_eq!(vfork_wait("-1 0x7ffc 0x7fbe"), None);
        assert_eq!(vfork_wait(""), None);
    }
}
