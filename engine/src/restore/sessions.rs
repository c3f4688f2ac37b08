//! Sessions and process groups of the restored tree: which task calls
//! setsid or setpgid (before forking its children, who inherit both), and
//! which groups whose leader is gone need a helper to exist.
use super::TaskImages;
use crate::error::{Context, Error, Result};
use crate::image::pstree::PstreeEntry;
use crate::sys::Pid;
use std::collections::{BTreeMap, BTreeSet};

/// How a task gets its session and process group, done in crtools' code
/// before it forks its children (they inherit both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Session {
    /// Same session and group as its parent (or, for the root, as crtools).
    Inherit,
    /// setsid(): a session leader.
    SetSid,
    /// setpgid(0, pgid): 0 makes it a group leader.
    SetPgid(i32),
}

/// How the tree's sessions and groups are made again.
#[derive(Debug, Default)]
pub(super) struct SessionPlan {
    /// Each task's [`Session`] step.
    pub sessions: Vec<Session>,
    /// Group helpers as (parent, pgid): see [`plan_sessions`].
    pub helpers: Vec<(usize, u32)>,
    /// Tasks their parent forks before its own session step: they stay in
    /// the session the parent had before it called setsid (a child forked
    /// before its parent's setsid).
    pub early: Vec<bool>,
    /// Session helpers as (parent, sid, the tasks it forks): a session whose
    /// leader is gone, with members a subreaper of the tree adopted (their
    /// parent). The parent forks a helper with the leader's pid, which
    /// calls setsid, forks those members and exits: they go to the parent
    /// (made a subreaper for it), in the session and group they had.
    pub session_helpers: Vec<(usize, u32, Vec<usize>)>,
}

/// Decides every task's [`Session`], refusing layouts that cannot be rebuilt.
/// `order` is the creation order (parents before children).
///
/// A process group whose leader is gone (not in the images) gets a helper:
/// a process with the group's id, forked by the first member's parent,
/// that makes the group and waits; it is killed and reaped by that parent
/// before the tree runs.
pub(super) fn plan_sessions(tasks: &[TaskImages], order: &[usize], shell_job: bool) -> Result<SessionPlan> {
    let entries: Vec<&PstreeEntry> = tasks.iter().map(|t| &t.pstree).collect();
    plan_entries(&entries, order, shell_job)
}

/// Whether restore could rebuild the sessions and process groups of the
/// tree `entries` (in dump order: parents before children): checked by the
/// dump, so that a tree restore would refuse is refused before it is
/// killed.
pub fn check_restorable(entries: &[PstreeEntry], shell_job: bool) -> Result<()> {
    let refs: Vec<&PstreeEntry> = entries.iter().collect();
    let order: Vec<usize> = (0..refs.len()).collect();
    let plan = plan_entries(&refs, &order, shell_job)?;
    // A session helper takes its leader's pid: a leader still alive outside
    // the tree keeps it.
    for (_, sid, members) in &plan.session_helpers {
        if crate::proc::stat::read(Pid(*sid as i32)).is_ok() {
            let m = Pid(entries[members[0]].pid as i32);
            return Err(Error::task(
                m,
                format!("is in session {sid}, whose leader is alive outside the tree: dump its leader too"),
            ));
        }
    }
    Ok(())
}

fn plan_entries(tasks: &[&PstreeEntry], order: &[usize], shell_job: bool) -> Result<SessionPlan> {
    let my_sid = crate::sys::misc::getsid(Pid(0)).ctx_global("getsid")?.0 as u32;
    let my_pgid = crate::sys::misc::getpgid(Pid(0)).ctx_global("getpgid")?.0 as u32;
    let by_pid: BTreeMap<u32, usize> = tasks.iter().enumerate().map(|(i, t)| (t.pid, i)).collect();
    let mut out = vec![Session::Inherit; tasks.len()];
    let mut helpers: Vec<(usize, u32)> = Vec::new();
    let mut created: BTreeSet<u32> = BTreeSet::new();
    // (sid, pgid) each task has once its session step ran, and before it.
    let mut have: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    let mut before: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    let mut early = vec![false; tasks.len()];
    let mut session_helpers: Vec<(usize, u32, Vec<usize>)> = Vec::new();
    for &i in order {
        let t = tasks[i];
        let pid = Pid(t.pid as i32);
        let (mut psid, mut ppgid) = match by_pid.get(&t.ppid) {
            Some(_) => have[&t.ppid],
            None => (my_sid, my_pgid),
        };
        // Forked before its parent called setsid: it kept the session (and
        // group) the parent had then, and is forked before that setsid.
        // A session leader forked so too is seen by its children still in
        // that older session (it forked them before its own setsid).
        if let Some(&p) = by_pid.get(&t.ppid) {
            let pre = before[&t.ppid];
            let older = |sid: u32| out[p] == Session::SetSid && sid == pre.0 && sid != psid;
            let leader_forked_early =
                t.sid == t.pid && tasks.iter().any(|c| c.ppid == t.pid && c.sid != c.pid && older(c.sid));
            if (t.sid != t.pid && older(t.sid)) || leader_forked_early {
                (psid, ppgid) = pre;
                early[i] = true;
            }
        }
        // Adopted by its parent (a subreaper) when its session's leader,
        // not in the tree, left it: a helper makes that session again.
        let mut adopted = false;
        if let (Some(&p), false) = (by_pid.get(&t.ppid), early[i]) {
            if t.sid != psid && t.sid != t.pid && !by_pid.contains_key(&t.sid) {
                match session_helpers.iter_mut().find(|h| h.1 == t.sid) {
                    Some(h) if h.0 == p => h.2.push(i),
                    Some(_) => {
                        return Err(Error::task(
                            pid,
                            format!(
                                "is in session {}, whose leader is gone, under another parent than other members \
                                 of it: not supported",
                                t.sid
                            ),
                        ))
                    }
                    None => session_helpers.push((p, t.sid, vec![i])),
                }
                (psid, ppgid) = (t.sid, t.sid);
                adopted = true;
            }
        }
        before.insert(t.pid, (psid, ppgid));
        let s = if shell_job && i == order[0] {
            // A shell job joins crtools' session; it leads its own group
            // again if it did (job control in the shell that restores it
            // relies on it), or joins crtools' group.
            if t.pgid == t.pid {
                Session::SetPgid(0)
            } else {
                Session::Inherit
            }
        } else if t.sid == t.pid {
            if t.pgid != t.pid {
                return Err(Error::task(pid, "session leader outside its own process group"));
            }
            Session::SetSid
        } else if t.sid != psid {
            return Err(Error::task(
                pid,
                format!(
                    "was in session {} but its parent's is {psid}{}; restore from that session, or dump its leader too",
                    t.sid,
                    if by_pid.contains_key(&t.ppid) { "" } else { " (crtools')" }
                ),
            ));
        } else if t.pgid == ppgid {
            Session::Inherit
        } else if t.pgid == t.pid {
            Session::SetPgid(0)
        } else if created.contains(&t.pgid) || (!by_pid.contains_key(&t.pgid) && t.pgid == my_pgid) {
            Session::SetPgid(t.pgid as i32)
        } else if let (false, Some(&parent), false) =
            (by_pid.contains_key(&t.pgid), by_pid.get(&t.ppid), early[i] || adopted)
        {
            // The group's leader is gone: a helper will make the group.
            if !helpers.iter().any(|h| h.1 == t.pgid) {
                helpers.push((parent, t.pgid));
            }
            created.insert(t.pgid);
            Session::SetPgid(t.pgid as i32)
        } else {
            return Err(Error::task(
                pid,
                format!("process group {} has no leader that is restored before it: not supported yet", t.pgid),
            ));
        };
        out[i] = s;
        created.insert(t.pid);
        have.insert(t.pid, (t.sid, t.pgid));
    }
    Ok(SessionPlan { sessions: out, helpers, early, session_helpers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pid: u32, ppid: u32, pgid: u32, sid: u32) -> PstreeEntry {
        PstreeEntry { pid, ppid, pgid, sid, threads: vec![pid], ..Default::default() }
    }

    fn plan(tree: &[PstreeEntry]) -> Result<SessionPlan> {
        let refs: Vec<&PstreeEntry> = tree.iter().collect();
        let order: Vec<usize> = (0..refs.len()).collect();
        plan_entries(&refs, &order, false)
    }

    #[test]
    fn a_child_forked_before_its_parents_setsid_is_early() {
        // R leads its session; A called setsid after forking B (B kept R's
        // session and group); C was forked after (A's session).
        let tree = [e(100, 1, 100, 100), e(101, 100, 101, 101), e(102, 101, 100, 100), e(103, 101, 101, 101)];
        let p = plan(&tree).unwrap();
        assert_eq!(p.sessions, [Session::SetSid, Session::SetSid, Session::Inherit, Session::Inherit]);
        assert_eq!(p.early, [false, false, true, false]);
        assert!(p.session_helpers.is_empty() && p.helpers.is_empty());
        // A session leader B that A forked early and that forked D early in
        // turn (D in R's session): B is forked before A's setsid too.
        let tree = [e(100, 1, 100, 100), e(101, 100, 101, 101), e(102, 101, 102, 102), e(104, 102, 100, 100)];
        let p = plan(&tree).unwrap();
        assert_eq!(p.early, [false, false, true, true]);
        assert_eq!(p.sessions[2..], [Session::SetSid, Session::Inherit]);
        // B forked early and not a leader: its child D simply inherits.
        let tree = [e(100, 1, 100, 100), e(101, 100, 101, 101), e(102, 101, 100, 100), e(104, 102, 100, 100)];
        assert_eq!(plan(&tree).unwrap().early, [false, false, true, false]);
    }

    #[test]
    fn orphans_of_a_dead_session_leader_get_a_helper() {
        // R (a subreaper) adopted T and U, members of session 150 whose
        // leader (and group leader) is gone; V leads its own group there.
        let tree = [e(100, 1, 100, 100), e(103, 100, 150, 150), e(104, 100, 150, 150), e(105, 100, 105, 150)];
        let p = plan(&tree).unwrap();
        assert_eq!(p.session_helpers, [(0, 150, vec![1, 2, 3])]);
        assert_eq!(p.sessions[1..], [Session::Inherit, Session::Inherit, Session::SetPgid(0)]);
        assert!(p.helpers.is_empty(), "no group helper: the session helper leads group 150");
        // Members of that session under two parents: refused.
        let tree = [e(100, 1, 100, 100), e(101, 100, 101, 101), e(103, 100, 150, 150), e(104, 101, 150, 150)];
        let err = plan(&tree).expect_err("refused").to_string();
        assert!(err.contains("150") && err.contains("another parent"), "{err}");
    }
}
