//! Seizing a whole process tree.
//!
//! Top-down and race-free: a task is frozen (every thread seized, the task
//! list re-read until no new thread shows up) before its children are
//! listed, so a frozen parent cannot add children behind our back; a child
//! forked just before its parent froze is already in the list. Zombies are
//! recorded, not seized. Dropping the result resumes every task exactly as
//! it was (each [`Tracee`] detaches on drop).
use super::{InfectError, Result, Tracee};
use crate::proc;
use crate::sys::Pid;
use std::collections::BTreeMap;

/// One seized process.
pub struct SeizedTask {
    /// Thread-group id.
    pub pid: Pid,
    /// Parent pid (as seen from here).
    pub ppid: Pid,
    /// Every thread, the leader first; empty for a zombie.
    pub threads: Vec<Tracee>,
    /// For a zombie: its exit status in wait(2) format.
    pub zombie: Option<i32>,
}

/// A seized tree, parents before children.
pub struct SeizedTree {
    /// Root first.
    pub tasks: Vec<SeizedTask>,
}

impl SeizedTree {
    /// The task with pid `pid`.
    pub fn task(&self, pid: Pid) -> Option<&SeizedTask> {
        self.tasks.iter().find(|t| t.pid == pid)
    }
}

fn gone(e: &InfectError) -> bool {
    e.cause_errno() == Some(crate::sys::Errno::ESRCH)
}

/// Whether thread `tid` of `pid` is gone or dead.
fn thread_exited(pid: Pid, tid: Pid) -> bool {
    match proc::stat::read_thread(pid, tid) {
        Ok(st) => matches!(st.state, proc::stat::TaskState::Zombie | proc::stat::TaskState::Dead),
        Err(e) => e.is_gone(),
    }
}

/// Freezes every thread of `pid`; `None` if the task vanished first.
/// The process tracing `tid` (TracerPid of its status), if any.
fn tracer_of(tid: Pid) -> Option<i32> {
    let st = std::fs::read_to_string(format!("/proc/{}/status", tid.0)).ok()?;
    let t: i32 = st.lines().find_map(|l| l.strip_prefix("TracerPid:"))?.trim().parse().ok()?;
    (t != 0).then_some(t)
}

fn seize_threads(pid: Pid) -> Result<Option<Vec<Tracee>>> {
    let mut seized: BTreeMap<Pid, Tracee> = BTreeMap::new();
    for _round in 0..1000 {
        let tids = match proc::task::threads(pid) {
            Ok(t) => t,
            Err(e) if e.is_gone() && seized.is_empty() => return Ok(None),
            Err(e) => return Err(InfectError::unexpected(pid, "list threads", e.to_string())),
        };
        let mut new = false;
        for tid in tids {
            if seized.contains_key(&tid) {
                continue;
            }
            // Never stops for a tracer: seizing it would wait for ever (the
            // dump refuses these before seizing; one made since is caught here).
            if let Some(name) = proc::stat::io_worker(pid, tid) {
                return Err(InfectError::unexpected(
                    tid,
                    "seize",
                    format!("{name} is an io_uring kernel thread of {pid}: io_uring is not supported yet"),
                ));
            }
            match Tracee::seize_suspending_seccomp(tid) {
                Ok(t) => {
                    seized.insert(tid, t);
                    new = true;
                }
                // A thread that exited between the listing and the seize.
                Err(e) if gone(&e) => continue,
                Err(_) if tid != pid && thread_exited(pid, tid) => {
                    log::debug!("thread {tid} of {pid} exited while being seized");
                    continue;
                }
                // Traced by someone else (a debugger, a tracer in the
                // tree): a task has one tracer only.
                Err(e) if e.cause_errno() == Some(crate::sys::Errno::EPERM) => {
                    if let Some(tracer) = tracer_of(tid) {
                        return Err(InfectError::refused(
                            tid,
                            "seize",
                            format!("it is traced by process {tracer}: a traced task cannot be dumped"),
                        ));
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        if !new {
            let mut v: Vec<Tracee> = Vec::with_capacity(seized.len());
            if let Some(leader) = seized.remove(&pid) {
                v.push(leader);
            } else {
                return Err(InfectError::unexpected(pid, "seize", "the thread-group leader is gone"));
            }
            v.extend(seized.into_values());
            return Ok(Some(v));
        }
    }
    Err(InfectError::unexpected(pid, "seize", "threads keep appearing; giving up"))
}

/// Seizes `root` and all its descendants.
pub fn seize_tree(root: Pid) -> Result<SeizedTree> {
    let mut tasks: Vec<SeizedTask> = Vec::new();
    let mut queue = vec![(root, Pid(0))];
    while let Some((pid, ppid)) = queue.pop() {
        let stat = proc::stat::read(pid).map_err(|e| InfectError::unexpected(pid, "read stat", e.to_string()))?;
        let ppid = if ppid.0 == 0 { Pid(stat.ppid) } else { ppid };
        if matches!(stat.state, proc::stat::TaskState::Zombie | proc::stat::TaskState::Dead) {
            if pid == root {
                return Err(InfectError::unexpected(pid, "seize", "the root task is a zombie"));
            }
            tasks.push(SeizedTask { pid, ppid, threads: Vec::new(), zombie: Some(stat.exit_code) });
            continue;
        }
        if let Some(why) = crate::fault::stop_reason(crate::fault::Fault::DumpSeize) {
            return Err(InfectError::unexpected(pid, "seize", why));
        }
        let threads = match seize_threads(pid) {
            Ok(Some(threads)) => threads,
            Ok(None) if pid != root => continue,
            Ok(None) => return Err(InfectError::unexpected(pid, "seize", "no such task")),
            // A child that exited while we seized it: its parent is frozen,
            // so it is a zombie now (or gone, if its parent ignores SIGCHLD).
            Err(e) if pid != root => match proc::stat::read(pid) {
                Ok(st) if matches!(st.state, proc::stat::TaskState::Zombie | proc::stat::TaskState::Dead) => {
                    log::debug!("task {pid} exited while being seized: recorded as a zombie");
                    tasks.push(SeizedTask { pid, ppid, threads: Vec::new(), zombie: Some(st.exit_code) });
                    continue;
                }
                Err(re) if re.is_gone() => continue,
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        };
        tasks.push(SeizedTask { pid, ppid, threads, zombie: None });
        let children =
            proc::task::children(pid).map_err(|e| InfectError::unexpected(pid, "list children", e.to_string()))?;
        // Reverse so that the stack pops them in pid order.
        for c in children.into_iter().rev() {
            queue.push((c, pid));
        }
    }
    Ok(SeizedTree { tasks })
}
