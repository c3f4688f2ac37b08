//! `signalfd.img`: signalfd file objects (signalfd(2)), referenced by id
//! from fdinfo entries. The signals a signalfd reads are the reading
//! task's own pending ones (restored with the task): only the mask and the
//! flags belong to the object.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;

/// One open signalfd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalfdEntry {
    /// File object id (unique across the dump).
    pub id: u32,
    /// Status flags.
    pub flags: OpenFlags,
    /// The signals it reads (bit `n - 1` for signal `n`).
    pub sigmask: u64,
}

impl Describe for SignalfdEntry {
    fn describe(&self) -> Node {
        Obj::new().f("id", self.id).d("flags", &self.flags).f("sigmask", Node::hex(self.sigmask)).done()
    }
}
