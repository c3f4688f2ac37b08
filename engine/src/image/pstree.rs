//! `pstree.img`: the process tree, one entry per task (thread group), parents
//! before children. Pids are as seen in the dumped tree's pid namespace.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};

/// One task of the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PstreeEntry {
    /// Thread-group id.
    pub pid: u32,
    /// Parent's pid (0 for the root).
    pub ppid: u32,
    /// Process group.
    pub pgid: u32,
    /// Session.
    pub sid: u32,
    /// Thread ids, the leader first.
    pub threads: Vec<u32>,
    /// 0, or the pid of the process whose descriptor table this one shares
    /// (CLONE_FILES): the first of the group, itself included.
    pub files_with: u32,
    /// 0, or the pid of the process whose fs information (root, cwd,
    /// umask) this one shares (CLONE_FS), as for `files_with`.
    pub fs_with: u32,
}

impl Describe for PstreeEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("pid", self.pid)
            .f("ppid", self.ppid)
            .f("pgid", self.pgid)
            .f("sid", self.sid)
            .f("threads", Node::Array(self.threads.iter().map(|&t| t.into()).collect()))
            .f("files_with", self.files_with)
            .f("fs_with", self.fs_with)
            .done()
    }
}
