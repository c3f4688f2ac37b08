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
            .done()
    }
}
