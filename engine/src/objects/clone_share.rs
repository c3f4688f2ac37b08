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
//! Not checked: KCMP_IO and KCMP_SYSVSEM (tasks without an I/O context or
//! SysV undo list compare equal through their null pointers).
use crate::error::{Error, Result};
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
                return Err(Error::task(
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
