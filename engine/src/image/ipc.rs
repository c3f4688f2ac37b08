//! `ipc-shm.img`: the SysV shared memory segments the tree attached, one
//! entry each (by shmid), with their data in `pages-<SYSV_SHM_PAGES_ID>.img`
//! (holes left out). The VMAs that attach a segment are `sysv-shm` VMAs of
//! the mm images, naming it by `shmid`.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};

/// The pages image holding every segment's data (no task has this pid).
pub const SYSV_SHM_PAGES_ID: u32 = u32::MAX;

/// Identity, owner and mode of one SysV IPC object: a segment's here, a
/// message queue's or semaphore set's in `ipcns.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcPermEntry {
    /// Its id, made again at restore.
    pub id: i32,
    /// Its key (0: IPC_PRIVATE, or a segment marked for removal: the
    /// kernel forgets the key then).
    pub key: i32,
    /// Permission bits (the low 9 bits of the object's mode).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    pub gid: u32,
    /// Creator.
    pub cuid: u32,
    pub cgid: u32,
}

impl IpcPermEntry {
    /// Its fields for `show`, the id under `id_name`.
    pub fn fields(&self, id_name: &'static str) -> Obj {
        Obj::new()
            .f(id_name, Node::I64(self.id.into()))
            .f("key", Node::hex(self.key as u32 as u64))
            .f("mode", format!("{:04o}", self.mode))
            .f("uid", self.uid)
            .f("gid", self.gid)
            .f("cuid", self.cuid)
            .f("cgid", self.cgid)
    }
}

/// One segment. (`perm` first: a nested struct adds nothing to postcard's
/// encoding, so the records read as they did when its fields stood here.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmSegEntry {
    /// Its id (shmid), key, owner, creator and mode.
    pub perm: IpcPermEntry,
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
        self.perm
            .fields("shmid")
            .f("size", Node::Size(self.size))
            .f("nattch", self.nattch)
            .f("removed", self.removed)
            .f("locked", self.locked)
            .f("runs", Node::Array(runs))
            .done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The segment records of images written before `perm` was a struct of
    /// its own read the same: postcard gives a nested struct no framing.
    #[test]
    fn a_segment_encodes_as_its_fields_in_a_row() {
        let e = ShmSegEntry {
            perm: IpcPermEntry { id: 32769, key: 0x1234, mode: 0o640, uid: 1, gid: 2, cuid: 3, cgid: 4 },
            size: 8192,
            nattch: 2,
            removed: false,
            locked: true,
            runs: vec![ShmRun { offset: 0, len: 4096, pages_off: 0 }],
        };
        #[derive(Serialize)]
        struct Flat(i32, i32, u32, u32, u32, u32, u32, u64, u64, bool, bool, Vec<ShmRun>);
        let flat = Flat(32769, 0x1234, 0o640, 1, 2, 3, 4, 8192, 2, false, true, e.runs.clone());
        assert_eq!(postcard::to_allocvec(&e).unwrap(), postcard::to_allocvec(&flat).unwrap());
    }
}
