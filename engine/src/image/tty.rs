//! `tty.img`: terminal file objects, referenced by id from fdinfo entries.
//!
//! Only terminals outside the dumped tree exist in this version (a shell
//! job's terminal, `--shell-job`): restore connects their descriptors to the
//! terminal crtools runs on, with the dumped settings applied to it.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;
use super::RawStr;

/// One open terminal (an open file description).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyEntry {
    /// File object id (unique across the dump).
    pub id: u32,
    /// Path at dump time (`/dev/pts/3`).
    pub path: RawStr,
    /// Open flags.
    pub flags: OpenFlags,
    /// Device number (`st_rdev`).
    pub rdev: u64,
    /// The terminal is not part of the dump (a shell job's terminal).
    pub external: bool,
    /// Kernel `struct termios` as TCGETS returns it (36 bytes).
    pub termios: Vec<u8>,
    /// Window size: rows, columns, x pixels, y pixels.
    pub winsize: [u16; 4],
}

impl Describe for TtyEntry {
    fn describe(&self) -> Node {
        let w = self.winsize;
        Obj::new()
            .f("id", self.id)
            .d("path", &self.path)
            .d("flags", &self.flags)
            .f("rdev", Node::hex(self.rdev))
            .f("external", self.external)
            .f("termios", Node::Bytes(self.termios.clone()))
            .f("winsize", format!("{}x{} ({}x{} px)", w[1], w[0], w[2], w[3]))
            .done()
    }
}
