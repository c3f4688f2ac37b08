//! `reg-files.img`: regular file objects, referenced by id from fdinfo
//! entries (and VMAs' exe/mapped files where needed).
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;
use super::RawStr;

/// One open regular file (an open file description).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegFileEntry {
    /// File object id (unique across the dump).
    pub id: u32,
    /// Path as seen in the dumped task's mount namespace.
    pub path: RawStr,
    /// Open flags (`O_*`, from fdinfo).
    pub flags: OpenFlags,
    /// File position.
    pub pos: u64,
    /// `st_mode` at dump time.
    pub mode: u32,
    /// File size at dump time (to detect a changed file at restore).
    pub size: u64,
    /// The file was unlinked: its contents are ghost file `ghost` of
    /// `ghost-files.img`, recreated at restore and unlinked again.
    pub ghost: Option<u32>,
    /// `--link-remap`: the file had been unlinked from `path` but still had
    /// other links; dump linked it under this name, which restore opens and
    /// then removes.
    pub remap: Option<RawStr>,
}

/// A ghost file: an unlinked regular file still open in the tree, whose
/// contents the dump copied (`ghost-data.img` holds the bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostFileEntry {
    /// Ghost id (unique across the dump).
    pub id: u32,
    /// Path it had before it was unlinked.
    pub path: RawStr,
    /// `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size (a hole may end it).
    pub size: u64,
    /// Access and modification times: (seconds, nanoseconds).
    pub atime: (i64, i64),
    /// Modification time.
    pub mtime: (i64, i64),
    /// A device node's device number (`st_rdev`); 0 for a regular file.
    pub rdev: u64,
    /// Mapped by a task (VmaKind::GhostFile): restore keeps a descriptor of
    /// it for the tasks to map it through.
    pub mapped: bool,
}

/// A run of data of a ghost file (holes are not stored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostDataEntry {
    /// Ghost id.
    pub ghost: u32,
    /// Offset in the file.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Describe for GhostFileEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("id", self.id)
            .d("path", &self.path)
            .f("mode", mode_text(self.mode))
            .f("uid", self.uid)
            .f("gid", self.gid)
            .f("size", Node::Size(self.size))
            .f("atime", format!("{}.{:09}", self.atime.0, self.atime.1))
            .f("mtime", format!("{}.{:09}", self.mtime.0, self.mtime.1))
            .f("rdev", Node::hex(self.rdev))
            .f("mapped", self.mapped)
            .done()
    }
}

impl Describe for GhostDataEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("ghost", self.ghost)
            .f("offset", self.offset)
            .f("bytes", Node::Size(self.data.len() as u64))
            .f("data", Node::Bytes(self.data.clone()))
            .done()
    }
}

/// `st_mode` as text: file type letter and permission bits, like `ls -l`.
pub fn mode_text(mode: u32) -> String {
    let t = match mode & 0o170000 {
        0o100000 => '-',
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '?',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    format!("{s} (0{:o})", mode)
}

impl Describe for RegFileEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("id", self.id)
            .d("path", &self.path)
            .d("flags", &self.flags)
            .f("pos", self.pos)
            .f("mode", mode_text(self.mode))
            .f("size", Node::Size(self.size))
            .f("ghost", self.ghost.map_or(Node::Null, |g| Node::U64(g as u64)))
            .d("remap", &self.remap)
            .done()
    }
}
