//! `chain.img`: how a dump relates to the dumps before it (iterative
//! dumps). Present in a pre-dump and in a dump made on top of a parent;
//! absent from a plain dump.
//!
//! The head names the parent by its path relative to this images
//! directory (as `--prev-images-dir` gave it, like CRIU's `parent` link,
//! but recorded instead of a symlink: the tool never follows symlinks in
//! an images directory). Each entry names a task whose writes are tracked
//! from the end of this dump on, and the VMAs whose pages are tracked: the
//! next dump takes from its parent only pages of these VMAs, at the same
//! addresses, that were not written since.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};

/// Head of the chain image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The parent images directory, relative to this one (None: the first
    /// of a chain).
    pub parent: Option<String>,
    /// True for a pre-dump: memory only, not restorable by itself.
    pub pre_dump: bool,
}

/// A task whose writes are tracked after this dump.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedTask {
    /// Its pid.
    pub pid: u32,
    /// Its start time (/proc/pid/stat field 22), against pid reuse.
    pub starttime: u64,
    /// VMAs registered for write tracking: `[start, end)`.
    pub vmas: Vec<(u64, u64)>,
}

impl Describe for ChainHead {
    fn describe(&self) -> Node {
        Obj::new().f("parent", self.parent.as_deref()).f("pre_dump", self.pre_dump).done()
    }
}

impl Describe for TrackedTask {
    fn describe(&self) -> Node {
        let pages: u64 = self.vmas.iter().map(|(s, e)| (e - s) / 4096).sum();
        let ranges: Vec<String> = self.vmas.iter().map(|(s, e)| format!("{s:#x}-{e:#x}")).collect();
        Obj::new()
            .f("pid", self.pid)
            .f("starttime", self.starttime)
            .f("tracked_pages", pages)
            .f("vmas", ranges.join(" "))
            .done()
    }
}
