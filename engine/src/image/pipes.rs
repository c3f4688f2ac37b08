//! `pipes.img` (open pipe ends), `fifo.img` (open FIFOs) and
//! `pipes-data.img` (what each pipe or FIFO holds: capacity and the bytes
//! in flight, once per pipe, whichever of its ends or openers refer to it).
//!
//! A pipe is known by an id of the dump (`pipe_id`); every open file
//! description of it (a read end, a write end, a FIFO opened read-only,
//! write-only or read-write, a pipe end reopened through /proc) is its own
//! entry with its own id and flags, so descriptors that share one are one
//! entry and descriptors that merely reach the same pipe are two.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;
use super::RawStr;

/// One open file description of a pipe end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeEntry {
    /// File object id (unique across the dump).
    pub id: u32,
    /// The pipe ([`PipeDataEntry::pipe_id`]).
    pub pipe_id: u32,
    /// Status flags and access mode of this description.
    pub flags: OpenFlags,
}

/// One open file description of a FIFO (a named pipe).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoEntry {
    /// File object id (unique across the dump).
    pub id: u32,
    /// The pipe behind the FIFO ([`PipeDataEntry::pipe_id`]).
    pub pipe_id: u32,
    /// Path of the FIFO as the dumped task saw it.
    pub path: RawStr,
    /// Status flags and access mode of this description.
    pub flags: OpenFlags,
    /// `st_mode` at dump (type and permissions).
    pub mode: u32,
    /// The FIFO was unlinked while open: restore makes it again (where it
    /// was, or next to it), opens it and unlinks it.
    pub unlinked: bool,
    /// Owner and group of the FIFO.
    pub owner: (u32, u32),
}

/// What one pipe or FIFO holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeDataEntry {
    /// The pipe's id in this dump.
    pub pipe_id: u32,
    /// Its inode number at dump (for messages).
    pub ino: u64,
    /// Capacity in bytes (F_GETPIPE_SZ).
    pub size: u32,
    /// Packet lengths, in order, when some end of the pipe is in packet
    /// mode (O_DIRECT): each was one buffer and is written back as one.
    /// Empty for a byte stream.
    pub packets: Vec<u32>,
    /// The bytes in flight, oldest first.
    pub data: Vec<u8>,
    /// The ends the dumped tree holds: 1 read, 2 write, 3 both. An end the
    /// tree does not hold was outside it (or closed): restore makes it a
    /// peer that went away, unless `--inherit-fd` plugs one in.
    pub tree_ends: u8,
}

impl Describe for PipeEntry {
    fn describe(&self) -> Node {
        Obj::new().f("id", self.id).f("pipe", self.pipe_id).d("flags", &self.flags).done()
    }
}

impl Describe for FifoEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("id", self.id)
            .f("pipe", self.pipe_id)
            .d("path", &self.path)
            .d("flags", &self.flags)
            .f("mode", super::reg_files::mode_text(self.mode))
            .f("unlinked", self.unlinked)
            .f("owner", format!("{}:{}", self.owner.0, self.owner.1))
            .done()
    }
}

impl Describe for PipeDataEntry {
    fn describe(&self) -> Node {
        let mut o = Obj::new()
            .f("pipe", self.pipe_id)
            .f("ino", self.ino)
            .f("size", Node::Size(self.size as u64))
            .f("bytes", self.data.len() as u64);
        if !self.packets.is_empty() {
            o = o.f("packets", format!("{:?}", self.packets));
        }
        let outside = match self.tree_ends {
            1 => Some("write"),
            2 => Some("read"),
            _ => None,
        };
        o = o.f(
            "tree_ends",
            match self.tree_ends {
                1 => "read",
                2 => "write",
                3 => "both",
                _ => "none",
            },
        );
        if let Some(end) = outside {
            o = o.f(
                "outside",
                format!(
                    "its {end} end is outside the dumped tree (restore --inherit-fd fd[N]:pipe:[{}] plugs one in)",
                    self.ino
                ),
            );
        }
        o.f("data", Node::Bytes(self.data.clone())).done()
    }
}
