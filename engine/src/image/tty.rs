//! `tty.img`: terminal file objects (one per open file description),
//! referenced by id from fdinfo entries; `tty-info.img`: the terminals
//! themselves (one per pty pair of the tree, plus the shell job's terminal),
//! with their settings, the data queued in them and the session they
//! control.
//!
//! A description names its terminal by [`TtyEntry::tty`] (a
//! [`TtyInfoEntry::tty`]); descriptions of the shell job's terminal, of
//! /dev/tty, of the console and of virtual consoles have none (0).
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::files::OpenFlags;
use super::RawStr;

/// What an open terminal description is.
///
/// Invariant: variants are only appended (postcard stores the index).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TtyKind {
    /// A terminal outside the tree (a shell job's, `--shell-job`):
    /// reconnected to crtools' own terminal at restore.
    #[default]
    External,
    /// The master of a pty pair of the tree (/dev/ptmx).
    PtyMaster,
    /// The slave of a pty pair of the tree (/dev/pts/N).
    PtySlave,
    /// /dev/tty: reopened by its task once its controlling terminal is back.
    DevTty,
    /// /dev/console, reopened by device number.
    Console,
    /// A virtual console (/dev/ttyN), reopened by device number.
    Vt,
    /// A pty slave hung up (its master closed): every call but read (end
    /// of file) and close fails. Made again from a new pty whose master is
    /// closed.
    HungUp,
}

impl TtyKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TtyKind::External => "external",
            TtyKind::PtyMaster => "pty-master",
            TtyKind::PtySlave => "pty-slave",
            TtyKind::DevTty => "dev-tty",
            TtyKind::Console => "console",
            TtyKind::Vt => "vt",
            TtyKind::HungUp => "hung-up",
        }
    }
}

/// One open terminal (an open file description).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyEntry {
    /// File object id (unique across the dump).
    pub id: u32,
    /// What it is.
    pub kind: TtyKind,
    /// The terminal ([`TtyInfoEntry::tty`]) of a pty end; 0 otherwise.
    pub tty: u32,
    /// Path at dump time (`/dev/pts/3`).
    pub path: RawStr,
    /// Open flags.
    pub flags: OpenFlags,
    /// Device number of the node (`st_rdev`).
    pub rdev: u64,
    /// The terminal's own device number (TIOCGDEV: the real terminal
    /// behind /dev/tty, the slave behind a master).
    pub real_rdev: u64,
    /// Kernel `struct termios` as TCGETS returns it (36 bytes).
    pub termios: Vec<u8>,
    /// Window size: rows, columns, x pixels, y pixels.
    pub winsize: [u16; 4],
}

/// One terminal: a pty pair of the tree (`index` is set), or the shell
/// job's terminal (none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyInfoEntry {
    /// Terminal id (unique across the dump).
    pub tty: u32,
    /// Pty index (the slave is /dev/pts/N); `None` for the shell job's
    /// terminal.
    pub index: Option<u32>,
    /// Kernel `struct termios` of the slave (36 bytes).
    pub termios: Vec<u8>,
    /// Window size: rows, columns, x pixels, y pixels.
    pub winsize: [u16; 4],
    /// The master is in packet mode (TIOCPKT).
    pub packet: bool,
    /// The slave is locked (TIOCSPTLCK).
    pub locked: bool,
    /// The slave is in exclusive mode (TIOCEXCL).
    pub exclusive: bool,
    /// No slave is open and one was (the master reads EIO, polls POLLHUP).
    pub slave_closed: bool,
    /// The slave node's permission bits, owner and group (grantpt(3)).
    pub mode: u32,
    /// Owner of the slave node.
    pub uid: u32,
    /// Group of the slave node.
    pub gid: u32,
    /// The session it is the controlling terminal of (0: none).
    pub sid: u32,
    /// Its foreground process group (0: none).
    pub pgrp: u32,
    /// The tasks of the tree whose controlling terminal it is.
    pub ctty_of: Vec<u32>,
    /// Bytes written to the master, not yet read from the slave (after
    /// input processing: what reads of the slave return).
    pub input: Vec<u8>,
    /// In canonical mode, each complete line of `input`: its end offset
    /// and whether the end-of-file character ended it (a read returns such
    /// a line without it, nothing for an empty one; other lines end with
    /// their newline, VEOL or VEOL2 byte). Bytes after the last line are a
    /// line not complete yet.
    pub input_lines: Vec<(u32, bool)>,
    /// Bytes written to the slave, not yet read from the master (after
    /// output processing: what a read of the master returns).
    pub output: Vec<u8>,
}

impl Describe for TtyKind {
    fn describe(&self) -> Node {
        Node::Str(self.name().to_owned())
    }
}

fn winsize_text(w: [u16; 4]) -> String {
    format!("{}x{} ({}x{} px)", w[1], w[0], w[2], w[3])
}

impl Describe for TtyEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("id", self.id)
            .d("kind", &self.kind)
            .f("tty", self.tty)
            .d("path", &self.path)
            .d("flags", &self.flags)
            .f("rdev", Node::hex(self.rdev))
            .f("real_rdev", Node::hex(self.real_rdev))
            .f("termios", Node::Bytes(self.termios.clone()))
            .f("winsize", winsize_text(self.winsize))
            .done()
    }
}

impl Describe for TtyInfoEntry {
    fn describe(&self) -> Node {
        let index = match self.index {
            Some(i) => Node::from(i),
            None => Node::Str("external".into()),
        };
        Obj::new()
            .f("tty", self.tty)
            .f("index", index)
            .f("termios", Node::Bytes(self.termios.clone()))
            .f("winsize", winsize_text(self.winsize))
            .f("packet", self.packet)
            .f("locked", self.locked)
            .f("exclusive", self.exclusive)
            .f("slave_closed", self.slave_closed)
            .f("mode", format!("{:o}", self.mode))
            .f("uid", self.uid)
            .f("gid", self.gid)
            .f("sid", self.sid)
            .f("pgrp", self.pgrp)
            .f("ctty_of", Node::Array(self.ctty_of.iter().map(|&p| p.into()).collect()))
            .f("input", Node::Bytes(self.input.clone()))
            .f("input_lines", format!("{:?}", self.input_lines))
            .f("output", Node::Bytes(self.output.clone()))
            .done()
    }
}
