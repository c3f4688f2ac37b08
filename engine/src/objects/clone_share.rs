//! Kernel objects that processes of the tree share without being threads
//! of one another: an address space (clone CLONE_VM without CLONE_THREAD,
//! e.g. a vfork child and its parent), a descriptor table (CLONE_FILES),
//! fs information (root, cwd, umask: CLONE_FS) or a signal handler table
//! (CLONE_SIGHAND).
//!
//! Not restored yet: each process is recreated with its own copy, so such
//! a tree is refused by name, naming both processes and what they share.
//! Detected with kcmp(2), which orders the kernel objects of two tasks: the
//! processes are sorted by each object and neighbours compared, so a tree
//! of n processes costs O(n log n) kcmp calls per kind.
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
use crate::error::{Error, Result};
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

/// Refuses the tree if two of `pids` (its live processes) share one of
/// the objects above.
pub fn refuse_shared(pids: &[Pid]) -> Result<()> {
    if pids.len() < 2 {
        return Ok(());
    }
    for (ty, what, flag) in SHARED {
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
        for w in order.windows(2) {
            let (a, b) = (w[0].min(w[1]), w[0].max(w[1]));
            if kcmp(a, b, ty).map_err(|e| Error::task(a, format!("kcmp with task {b}: {e}")))? == KcmpOrder::Equal {
                return Err(Error::refuse(
                    a,
                    format!(
                        "shares its {what} with task {b} ({flag} without CLONE_THREAD): \
                         processes sharing it are not restored yet"
                    ),
                ));
            }
        }
    }
    Ok(())
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
pub fn refuse_vfork_waiters(root: Pid) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        match vfork_waiter(root) {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() >= VFORK_PATIENCE => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    }
}

fn vfork_waiter(root: Pid) -> Result<()> {
    let mut queue = vec![root];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Ok(tids) = proc::task::threads(pid) else { continue };
        for tid in tids {
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
            return Err(Error::refuse(
                pid,
                format!(
                    "thread {tid} waits in vfork for its child {}, which shares its address space \
                     (CLONE_VM|CLONE_VFORK): processes sharing it are not restored yet",
                    children.join(", ")
                ),
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
