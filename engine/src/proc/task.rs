//! Threads and children: `/proc/<pid>/task/` and
//! `/proc/<pid>/task/<tid>/children`, see proc_pid_task(5).
//!
//! `task/` holds one directory per thread, named by its tid. `children`
//! (CONFIG_PROC_CHILDREN) lists, space separated, the pids of the children
//! that this one thread created (a child belongs to the thread that forked
//! it, so a process's children are the union over its threads).
//!
//! # Invariants
//! - Results are sorted and without duplicates.
//! - Only stable while the tree is frozen: on a running tree threads and
//!   children may come and go between two reads. A thread that exits
//!   between listing and reading its `children` is skipped, not an error.

use std::collections::BTreeSet;

use super::{ProcError, Result};
use crate::sys::Pid;

fn parse_pid(file: &str, s: &str) -> Result<Pid> {
    match s.parse::<i32>() {
        Ok(n) if n > 0 && !s.starts_with('+') => Ok(Pid(n)),
        _ => Err(ProcError::malformed(file, format!("bad pid {:?}", s.chars().take(20).collect::<String>()))),
    }
}

/// Parses a `children` file: pids separated by spaces (with a trailing
/// space), possibly empty.
pub fn parse_children(text: &str) -> Result<Vec<Pid>> {
    let mut v = text.split_ascii_whitespace().map(|s| parse_pid("children", s)).collect::<Result<Vec<_>>>()?;
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Parses a list of `task/` directory entry names into tids.
pub fn parse_tids<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Pid>> {
    let mut v = names.into_iter().map(|n| parse_pid("task", n)).collect::<Result<Vec<_>>>()?;
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The thread ids of `pid`, sorted (the thread-group leader is the smallest
/// only if no pid wrap happened; compare with the pid itself).
pub fn threads(pid: Pid) -> Result<Vec<Pid>> {
    let dir = super::pid_path(pid, "task");
    let rd = std::fs::read_dir(&dir).map_err(|e| ProcError::io(pid, "task", e))?;
    let mut names = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| ProcError::io(pid, "task", e))?;
        let name = ent.file_name();
        let name =
            name.to_str().ok_or_else(|| ProcError::malformed("task", "non-UTF-8 entry").with_pid(pid))?.to_string();
        names.push(name);
    }
    parse_tids(names.iter().map(String::as_str)).map_err(|e| e.with_pid(pid))
}

/// The children created by thread `tid` of `pid`.
pub fn thread_children(pid: Pid, tid: Pid) -> Result<Vec<Pid>> {
    let file = format!("task/{}/children", tid.raw());
    let text = super::read_text(pid, &file)?;
    parse_children(&text).map_err(|e| {
        let mut e = e.with_pid(pid);
        e.file = file;
        e
    })
}

/// All children of process `pid`: the union of every thread's `children`.
pub fn children(pid: Pid) -> Result<Vec<Pid>> {
    let mut all = BTreeSet::new();
    for tid in threads(pid)? {
        match thread_children(pid, tid) {
            Ok(c) => all.extend(c),
            // The thread exited after the listing.
            Err(e) if e.is_gone() && tid != pid => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(all.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_lists() {
        assert_eq!(parse_children("5481 5482 ").unwrap(), vec![Pid(5481), Pid(5482)]);
        assert_eq!(parse_children("").unwrap(), vec![]);
        assert_eq!(parse_children("9 3 9\n").unwrap(), vec![Pid(3), Pid(9)]);
        for bad in ["x", "1 -2", "0", "+3", "99999999999", "1,2"] {
            assert!(parse_children(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_tids(["12", "10", "11"]).unwrap(), vec![Pid(10), Pid(11), Pid(12)]);
        assert!(parse_tids(["12", "."]).is_err());
    }

    #[test]
    fn live_self_threads_and_children() {
        let me = Pid(std::process::id() as i32);
        let t = threads(me).unwrap();
        assert!(t.contains(&me));
        // A second thread of ours shows up while it lives.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            tx.send(std::fs::read_link("/proc/thread-self").unwrap()).unwrap();
            let _ = done_rx.recv();
        });
        let link = rx.recv().unwrap();
        let tid: i32 = link.file_name().unwrap().to_str().unwrap().parse().unwrap();
        assert!(threads(me).unwrap().contains(&Pid(tid)));
        done_tx.send(()).unwrap();
        h.join().unwrap();

        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let cpid = Pid(child.id() as i32);
        let c = children(me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(c.unwrap().contains(&cpid));

        let e = threads(Pid(i32::MAX)).unwrap_err();
        assert!(e.is_gone());
    }
}
