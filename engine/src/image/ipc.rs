//! `ipc-shm.img`: the SysV shared memory segments the tree attached, one
//! entry each (by shmid), with their data in `pages-<SYSV_SHM_PAGES_ID>.img`
//! (holes left out). The VMAs that attach a segment are `sysv-shm` VMAs of
//! the mm images, naming it by `shmid`.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};

/// The pages image holding every segment's data (no task has this pid).
pub const SYSV_SHM_PAGES_ID: u32 = u32::MAX;

/// One segment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmSegEntry {
    /// Its id, made again at restore.
    pub shmid: i32,
    /// Its key (0: IPC_PRIVATE, or marked for removal: the kernel forgets
    /// the key then).
    pub key: i32,
    /// Permission bits (the low 9 bits of `shm_perm.mode`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    pub gid: u32,
    /// Creator.
    pub cuid: u32,
    pub cgid: u32,
    /// Size in bytes as given to shmget.
    pub size: u64,
    /// Attachments at dump (all in the tree).
    pub nattch: u64,
    /// Marked for removal (IPC_RMID while attached; SHM_DEST).
    pub removed: bool,
    /// Locked in memory (SHM_LOCK; SHM_LOCKED).
    pub locked: bool,
    /// Where its data is in the pages image: (offset in the segment,
    /// length, offset in the pages image), page aligned, in order.
    pub runs: Vec<ShmRun>,
}

/// A run of a segment's data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmRun {
    /// Offset in the segment (page aligned).
    pub offset: u64,
    /// Bytes (whole pages; the last may reach past the segment's size,
    /// zero-filled).
    pub len: u64,
    /// Offset in the pages image.
    pub pages_off: u64,
}

impl Describe for ShmSegEntry {
    fn describe(&self) -> Node {
        let runs: Vec<Node> = self
            .runs
            .iter()
            .map(|r| Obj::new().f("offset", r.offset).f("len", Node::Size(r.len)).f("pages_off", r.pages_off).done())
            .collect();
        Obj::new()
            .f("shmid", self.shmid)
            .f("key", Node::hex(self.key as u32 as u64))
            .f("mode", format!("{:04o}", self.mode))
            .f("uid", self.uid)
            .f("gid", self.gid)
            .f("cuid", self.cuid)
            .f("cgid", self.cgid)
            .f("size", Node::Size(self.size))
            .f("nattch", self.nattch)
            .f("removed", self.removed)
            .f("locked", self.locked)
            .f("runs", Node::Array(runs))
            .done()
    }
}
