//! Terminals: pty pairs of the tree, the session's controlling terminal and
//! its foreground group, /dev/tty, the console and virtual consoles, and a
//! shell job's terminal (`--shell-job`).
//!
//! # Dump
//! Each open description of a terminal is one `tty.img` entry
//! ([`TtyKind`]); each pty pair whose master is in the tree, and the shell
//! job's terminal, is one `tty-info.img` entry, read through the master
//! (taken with pidfd_getfd): TCGETS and TIOCGWINSZ on a master act on its
//! slave, TIOCGSID/TIOCGPGRP on a master work from outside the session.
//! Once every task is seen ([`finish_dump`]): slaves are matched with their
//! masters (a slave without one is an outside terminal: a shell job's, or
//! refused), every task's controlling terminal (`tty_nr`) is recorded and
//! checked, and the data queued in each pty is taken.
//!
//! What the kernel lets us read back of a pty (n_tty, drivers/tty/pty.c):
//! - Output (written to the slave, not yet read from the master): the
//!   master's line discipline is always raw (its termios cannot be changed
//!   from user space: TCSETS on a master sets the slave's), so the bytes
//!   are read from the master and written back through the slave with
//!   OPOST cleared for the time of the write: the master's queue is as it
//!   was. Nothing reads without consuming; a control status byte pending
//!   in packet mode (poll POLLPRI) cannot be put back: refused.
//! - Input (written to the master, not yet read from the slave): in
//!   non-canonical mode FIONREAD counts it, it is read from a slave
//!   description of our own (TIOCGPTPEER) and written back through the
//!   master with input processing turned off (ICANON kept as it was:
//!   changing it resets n_tty's line state), waiting until FIONREAD shows
//!   it again before the settings go back. In canonical mode FIONREAD
//!   counts only complete lines, a read returns one line and cannot be
//!   undone. So lines are read one by one from our own slave description
//!   (an empty read is an end of file typed on an empty line, ^D: a line
//!   FIONREAD does not count), then the partial line (typed, no newline
//!   yet: invisible to FIONREAD and poll) with ICANON off for that read,
//!   and everything goes back by TIOCSTI (the line discipline takes each
//!   byte at once, no driver buffer in between) under settings that only
//!   split lines (newline, VEOL, VEOL2, VEOF; erase, kill, signals, echo
//!   off) with any byte that would act (those, IXON's start and stop)
//!   escaped by the literal-next character: reads return the same lines,
//!   ends of file and partial line as before. What n_tty keeps for echoing erasures (the column of
//!   a tab) and a pending literal-next or ECHOPRT state are reset.
//! - Data written to a master whose slave is not open is discarded by the
//!   kernel when the slave is opened: nothing to keep.
//! - Output stopped by ^S (flow control): the slave polls not writable
//!   (pty_write_room() is 0): refused, as is a master whose reader is
//!   behind by the pty's whole buffer (n_tty's 4095 bytes and the driver's
//!   8 KiB: the slave polls not writable either). Not visible at all: the
//!   echo column n_tty tracks for erasing tabs.
//!
//! # Restore
//! Every pty is made in the engine before the tree: /dev/ptmx is opened
//! until the kernel hands out the dumped index (indices are given lowest
//! first; the masters of lower free indices are held and closed after), so
//! /dev/pts/N, ttyname(3) and utmp entries stay right. If the index is
//! taken by someone else, restore fails naming it. Settings, window size,
//! queued data, packet mode, exclusive mode, lock and the node's owner and
//! mode are applied; each slave description is opened through the master
//! (TIOCGPTPEER). A session leader whose controlling terminal was a pty of
//! the tree gets it with TIOCSCTTY right after setsid, before forking its
//! children; the foreground group is set (TIOCSPGRP, SIGTTOU blocked) by
//! the first task of that group right after it joined it; a task that had
//! given up its controlling terminal gives it up again (TIOCNOTTY). /dev/tty
//! is reopened late, in the task, once the controlling terminal is back.
//! The console and virtual consoles are reopened by device number.
//! A shell job's terminal descriptions are connected to the terminal
//! crtools runs on, with the dumped settings and window size; a job that
//! led its process group leads it again, in crtools' session, and is made
//! the foreground group of crtools' terminal if it was at dump.
use super::files::{FdCtx, FileImages, Late, Opened};
use crate::error::{Context, Error, Result};
use crate::image::files::OpenFlags;
use crate::image::tty::{TtyEntry, TtyInfoEntry, TtyKind};
use crate::image::RawStr;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::fs::{self, OpenFlags as SysFlags};
use crate::sys::tty::{self as st, Termios};
use crate::sys::Pid;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const O_NOCTTY: i32 = 0o400;
const O_NONBLOCK: i32 = 0o4000;

/// The id in [`Opened`] of the engine's own slave description of tty
/// `tty` that session leaders make their controlling terminal with (see
/// [`super::files::EngineIds`]).
fn ctty_id(tty: u32) -> u32 {
    super::files::EngineIds::Ctty.id(tty)
}

/// How long to wait for a pty index that the dumped tree still holds.
const INDEX_WAIT: Duration = Duration::from_secs(3);
/// How long to wait for bytes written into a pty to reach the other side's
/// queue (they are moved by a kernel worker).
const QUEUE_WAIT: Duration = Duration::from_secs(3);

fn major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}

fn minor(rdev: u64) -> u64 {
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}

/// The pty index of a slave device number (136..=143 majors), if it is one.
fn slave_index(rdev: u64) -> Option<u32> {
    match major(rdev) {
        m @ 136..=143 => Some(((m - 136) * 256 + minor(rdev)) as u32),
        _ => None,
    }
}

/// For a character device number: `Some(Ok)` for a terminal this version
/// handles (a pty master or slave, /dev/tty, the console, a virtual
/// console, a serial line as a shell job's terminal), `Some(Err)` for one
/// it does not, `None` for anything else.
pub fn kind_of(rdev: u64) -> Option<std::result::Result<(), &'static str>> {
    match major(rdev) {
        136..=143 | 4 => Some(Ok(())),
        128..=135 => Some(Err("pty master device node")),
        5 if minor(rdev) <= 2 => Some(Ok(())),
        _ => None,
    }
}

/// A readable name for a tty number as /proc/pid/stat prints it (`tty_nr`).
pub fn tty_nr_name(nr: i32) -> String {
    let nr = nr as u32 as u64;
    let (maj, min) = ((nr >> 8) & 0xff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
    match maj {
        136..=143 => format!("/dev/pts/{}", (maj - 136) * 256 + min),
        4 if min < 64 => format!("/dev/tty{min}"),
        4 => format!("/dev/ttyS{}", min - 64),
        5 if min == 1 => "/dev/console".into(),
        _ => format!("tty {maj}:{min}"),
    }
}

/// Dump-only state: which task and fd showed each description.
#[derive(Debug, Default)]
pub struct DumpState {
    owners: BTreeMap<u32, (Pid, i32)>,
}

/// Dumps one open terminal description.
pub fn dump(
    _cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    let FdTarget::Path(p) = target else {
        return Err(Error::task(pid, format!("fd {fd}: not a path")));
    };
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let link = crate::proc::pid_path(pid, &format!("fd/{fd}"));
    let rdev = std::fs::metadata(&link).ctx(pid, &format!("stat fd {fd}"))?.rdev();
    let dup = super::files::take_fd(pid, fd)?;
    if (136..=143).contains(&major(rdev)) && st::tcgets(dup.as_fd()) == Err(crate::sys::Errno::EIO) {
        // A pty slave hung up (its master closed): nothing of it can be
        // read, and nothing is left to read; its like is made at restore.
        out.tty_dump.owners.insert(id, (pid, fd));
        out.tty.push(TtyEntry {
            id,
            kind: TtyKind::HungUp,
            tty: 0,
            path: RawStr(p.path.as_os_str().as_bytes().to_vec()),
            flags,
            rdev,
            real_rdev: rdev,
            termios: Vec::new(),
            winsize: [0; 4],
        });
        return Ok(());
    }
    let e = |what: &str, err: crate::sys::Errno| {
        if err == crate::sys::Errno::EIO {
            // A terminal hung up (its master closed, or vhangup): every
            // request but close fails; nothing of it can be read.
            return Error::refuse(
                pid,
                format!(
                    "fd {fd}: {}: the terminal was hung up (its master side closed): not supported",
                    p.path.display()
                ),
            );
        }
        Error::task(pid, format!("fd {fd}: {}: {what}: {err}", p.path.display()))
    };
    let mut entry = TtyEntry {
        id,
        kind: TtyKind::External,
        tty: 0,
        path: RawStr(p.path.as_os_str().as_bytes().to_vec()),
        flags,
        rdev,
        real_rdev: st::get_dev(dup.as_fd()).map_err(|err| e("TIOCGDEV", err))?,
        termios: st::tcgets(dup.as_fd()).map_err(|err| e("TCGETS", err))?.to_vec(),
        winsize: st::get_winsize(dup.as_fd()).map_err(|err| e("TIOCGWINSZ", err))?,
    };
    entry.kind = match (major(rdev), minor(rdev)) {
        (5, 2) => {
            let index = st::get_ptn(dup.as_fd()).map_err(|err| e("TIOCGPTN", err))?;
            if out.tty_info.iter().any(|t| t.index == Some(index)) {
                // Opening /dev/ptmx always makes a new pty: one description per master.
                return Err(Error::refuse(pid, format!("fd {fd}: a second open description of pty master {index}")));
            }
            let tty = out.tty_info.len() as u32 + 1;
            out.tty_info.push(dump_pty(pid, fd, dup.as_fd(), index, tty)?);
            entry.tty = tty;
            TtyKind::PtyMaster
        }
        (5, 0) => TtyKind::DevTty,
        (5, 1) => TtyKind::Console,
        (4, m) if m < 64 => TtyKind::Vt,
        (136..=143, _) => TtyKind::PtySlave,
        _ => TtyKind::External,
    };
    out.tty_dump.owners.insert(id, (pid, fd));
    out.tty.push(entry);
    Ok(())
}

/// The state of a pty pair, read through its master (all but the queues,
/// taken by [`finish_dump`]).
fn dump_pty(pid: Pid, fd: i32, master: BorrowedFd<'_>, index: u32, tty: u32) -> Result<TtyInfoEntry> {
    let e = |what: &str, err: crate::sys::Errno| {
        Error::task(pid, format!("fd {fd}: pty master of /dev/pts/{index}: {what}: {err}"))
    };
    let ldisc = st::get_ldisc(master).map_err(|err| e("TIOCGETD", err))?;
    if ldisc != 0 {
        return Err(Error::refuse(
            pid,
            format!("fd {fd}: pty master of /dev/pts/{index} has line discipline {ldisc}: only N_TTY is supported"),
        ));
    }
    let node = std::fs::metadata(format!("/dev/pts/{index}"))
        .map_err(|err| Error::task(pid, format!("fd {fd}: stat /dev/pts/{index}: {err}")))?;
    Ok(TtyInfoEntry {
        tty,
        index: Some(index),
        termios: st::tcgets(master).map_err(|err| e("TCGETS", err))?.to_vec(),
        winsize: st::get_winsize(master).map_err(|err| e("TIOCGWINSZ", err))?,
        packet: st::get_pkt(master).map_err(|err| e("TIOCGPKT", err))?,
        locked: st::get_ptlck(master).map_err(|err| e("TIOCGPTLCK", err))?,
        exclusive: false,
        slave_closed: false,
        mode: node.mode() & 0o7777,
        uid: node.uid(),
        gid: node.gid(),
        // ENOTTY: no session has it as controlling terminal.
        sid: st::get_sid(master).map(|p| p.0 as u32).unwrap_or(0),
        pgrp: st::get_pgrp(master).map(|p| p.0.max(0) as u32).unwrap_or(0),
        ctty_of: Vec::new(),
        input: Vec::new(),
        input_lines: Vec::new(),
        output: Vec::new(),
    })
}

/// Per live task: (pid, sid, pgid, tty_nr, tpgid).
type TaskTtyStat = (Pid, u32, u32, u64, i32);

/// Resolves what only the whole tree tells: which slaves have their
/// master in the tree, every task's controlling terminal, the sessions
/// and foreground groups of the ptys, /dev/tty; then takes the data queued
/// in each pty. Refuses by name anything that would not come back exactly.
pub fn finish_dump(cx: &FdCtx, out: &mut FileImages, pids: &[Pid]) -> Result<()> {
    let root = pids[0];
    let mut stats: Vec<TaskTtyStat> = Vec::with_capacity(pids.len());
    let mut live = Vec::with_capacity(pids.len());
    for &pid in pids {
        let s = crate::proc::stat::read(pid).ctx(pid, "read stat")?;
        if matches!(s.state, crate::proc::stat::TaskState::Zombie | crate::proc::stat::TaskState::Dead) {
            // A zombie's descriptors are gone; its terminal does not matter.
            continue;
        }
        live.push(pid);
        stats.push((pid, s.session as u32, s.pgrp as u32, s.tty_nr as u32 as u64, s.tpgid));
    }
    let in_tree = |p: u32| pids.contains(&Pid(p as i32));
    let tree_pty = |imgs: &FileImages, rdev: u64| {
        slave_index(rdev).and_then(|i| imgs.tty_info.iter().position(|t| t.index == Some(i)))
    };
    // The shell job's terminal: the root's controlling terminal (any
    // outside terminal is taken for it when the root has none).
    let job_tty = stats.first().map(|s| s.3).unwrap_or(0);
    let is_job_tty = |rdev: u64| cx.shell_job && (job_tty == 0 || rdev == job_tty);
    let owner = |imgs: &FileImages, id: u32| imgs.tty_dump.owners.get(&id).copied().unwrap_or((root, -1));

    // Descriptions.
    for i in 0..out.tty.len() {
        let e = &out.tty[i];
        let (pid, fd) = owner(out, e.id);
        let path = e.path.to_string_lossy();
        let outside = || {
            let hint = if cx.shell_job {
                format!("and not the shell job's terminal {}: not supported", tty_nr_name(job_tty as i32))
            } else {
                "dump it as a shell job (--shell-job)".to_string()
            };
            Error::refuse(pid, format!("fd {fd} is the terminal {path}, which is outside the dumped tree: {hint}"))
        };
        let kind = match e.kind {
            TtyKind::PtySlave => match tree_pty(out, e.rdev) {
                Some(t) => {
                    let tty = out.tty_info[t].tty;
                    out.tty[i].tty = tty;
                    TtyKind::PtySlave
                }
                None if is_job_tty(e.rdev) => TtyKind::External,
                None => return Err(outside()),
            },
            TtyKind::Vt | TtyKind::Console if cx.shell_job && e.real_rdev == job_tty => TtyKind::External,
            TtyKind::External if !is_job_tty(e.real_rdev) => return Err(outside()),
            TtyKind::DevTty => {
                let task_tty = stats.iter().find(|s| s.0 == pid).map(|s| s.3).unwrap_or(0);
                if task_tty == 0 || task_tty != e.real_rdev {
                    return Err(Error::refuse(
                        pid,
                        format!(
                            "fd {fd}: /dev/tty opened on {}, which is not the task's controlling terminal now: not supported",
                            tty_nr_name(e.real_rdev as i32)
                        ),
                    ));
                }
                check_dev_tty_unshared(pid, fd, &live)?;
                TtyKind::DevTty
            }
            k => k,
        };
        out.tty[i].kind = kind;
    }

    // Controlling terminals.
    let mut external: Option<TtyInfoEntry> = None;
    for &(pid, sid, _, tty_nr, tpgid) in &stats {
        if tty_nr == 0 {
            continue;
        }
        // A task gets its terminal from its parent at restore (or, as a
        // session leader, takes it): a parent in the same session that gave
        // it up after the fork cannot hand it down.
        let ppid = crate::proc::stat::read(pid).map(|s| s.ppid).unwrap_or(0);
        if let Some(parent) = stats.iter().find(|s| s.0 .0 == ppid) {
            if sid != pid.0 as u32 && parent.1 == sid && parent.3 == 0 {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "has the controlling terminal {} that its parent {ppid} gave up: not supported",
                        tty_nr_name(tty_nr as i32)
                    ),
                ));
            }
        }
        if let Some(t) = tree_pty(out, tty_nr) {
            let info = &mut out.tty_info[t];
            if info.sid != sid {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "its controlling terminal /dev/pts/{} belongs to session {} and it is in session {sid}",
                        info.index.unwrap_or(0),
                        info.sid
                    ),
                ));
            }
            info.ctty_of.push(pid.0 as u32);
        } else if in_tree(sid) && !(cx.shell_job && sid == root.0 as u32) {
            return Err(Error::refuse(
                pid,
                format!(
                    "the controlling terminal {} of its session {sid} (dumped) is not a pty of the tree: not supported",
                    tty_nr_name(tty_nr as i32)
                ),
            ));
        } else if cx.shell_job {
            let ext = external.get_or_insert_with(|| TtyInfoEntry {
                tty: out.tty_info.len() as u32 + 1,
                pgrp: tpgid.max(0) as u32,
                ..Default::default()
            });
            ext.ctty_of.push(pid.0 as u32);
        }
        // Otherwise the early check of the dump refused it already.
    }
    if let Some(ext) = external {
        out.tty_info.push(ext);
    }
    for info in out.tty_info.iter().filter(|t| t.index.is_some() && t.sid != 0) {
        let name = format!("/dev/pts/{}", info.index.unwrap_or(0));
        let (pid, fd) = out
            .tty
            .iter()
            .find(|e| e.kind == TtyKind::PtyMaster && e.tty == info.tty)
            .map(|e| owner(out, e.id))
            .unwrap_or((root, -1));
        if !in_tree(info.sid) {
            return Err(Error::refuse(
                pid,
                format!(
                    "fd {fd}: the pty {name} is the controlling terminal of session {}, whose leader is not dumped",
                    info.sid
                ),
            ));
        }
        if info.pgrp != 0 && !stats.iter().any(|s| s.2 == info.pgrp && s.1 == info.sid) {
            return Err(Error::refuse(
                pid,
                format!("fd {fd}: the foreground process group {} of {name} has no task in the dumped tree", info.pgrp),
            ));
        }
    }

    // Queued data: read from the master (and a slave of our own), put back.
    for t in 0..out.tty_info.len() {
        let Some(index) = out.tty_info[t].index else { continue };
        let tty = out.tty_info[t].tty;
        let Some(m) = out.tty.iter().find(|e| e.kind == TtyKind::PtyMaster && e.tty == tty) else { continue };
        let (pid, fd) = owner(out, m.id);
        let slave_open = out.tty.iter().any(|e| e.kind == TtyKind::PtySlave && e.tty == tty);
        let master = super::files::take_fd(pid, fd)?;
        let info = &mut out.tty_info[t];
        take_queues(master.as_fd(), info, slave_open).map_err(|e| {
            let what = |m: &str| format!("fd {fd}: pty master of /dev/pts/{index}: {m}");
            match e {
                QueueError::Refuse(m) => Error::refuse(pid, what(&m)),
                QueueError::Fail(m) => Error::task(pid, what(&m)),
            }
        })?;
        if !info.input.is_empty() || !info.output.is_empty() {
            log::debug!(task = pid.0; "task {pid}: /dev/pts/{index}: {} bytes of input, {} of output queued", info.input.len(), info.output.len());
        }
    }
    Ok(())
}

/// Refuses a /dev/tty description that another task shares: it is
/// reopened in each task at restore, which would split it.
fn check_dev_tty_unshared(pid: Pid, fd: i32, pids: &[Pid]) -> Result<()> {
    use crate::sys::misc::{kcmp_file, KcmpOrder};
    for &other in pids.iter().filter(|&&p| p != pid) {
        for e in crate::proc::fdinfo::list_fds(other).ctx(other, "list descriptors")? {
            let FdTarget::Path(p) = &e.target else { continue };
            if p.path.as_os_str().as_bytes() == b"/dev/tty"
                && kcmp_file(pid, fd, other, e.fd).ctx(pid, "kcmp")? == KcmpOrder::Equal
            {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "fd {fd}: its open /dev/tty is shared with task {other} (fd {}): \
                         a /dev/tty description shared between tasks is not supported yet",
                        e.fd
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn termios_of(v: &[u8]) -> std::result::Result<Termios, String> {
    v.try_into().map_err(|_| format!("termios of {} bytes", v.len()))
}

fn flag(t: &Termios, word: usize) -> u32 {
    u32::from_ne_bytes(t[word * 4..word * 4 + 4].try_into().expect("4 bytes"))
}

fn set_flag(t: &mut Termios, word: usize, v: u32) {
    t[word * 4..word * 4 + 4].copy_from_slice(&v.to_ne_bytes());
}

const C_IFLAG: usize = 0;
const C_OFLAG: usize = 1;
const C_LFLAG: usize = 3;
const ICANON: u32 = 0o2;
const EXTPROC: u32 = 0o200000;
const IXON: u32 = 0o2000;
const IXANY: u32 = 0o4000;
const OPOST: u32 = 0o1;

const IEXTEN: u32 = 0o100000;
/// Offset of `c_cc` in the kernel's struct termios.
const C_CC: usize = 17;
const VERASE: usize = 2;
const VKILL: usize = 3;
const VEOF: usize = 4;
const VSTART: usize = 8;
const VSTOP: usize = 9;
const VEOL: usize = 11;
const VREPRINT: usize = 12;
const VDISCARD: usize = 13;
const VWERASE: usize = 14;
const VLNEXT: usize = 15;
const VEOL2: usize = 16;

fn cc(t: &Termios, i: usize) -> u8 {
    t[C_CC + i]
}

/// The bytes that end a line in canonical mode (0 is a disabled one).
fn line_ends(t: &Termios) -> Vec<u8> {
    let mut v = vec![b'\n'];
    if cc(t, VEOL) != 0 {
        v.push(cc(t, VEOL));
    }
    if cc(t, VEOL2) != 0 && flag(t, C_LFLAG) & IEXTEN != 0 {
        v.push(cc(t, VEOL2));
    }
    v
}

/// In canonical mode (and not EXTPROC): input is kept as lines.
fn canonical(t: &Termios) -> bool {
    flag(t, C_LFLAG) & (ICANON | EXTPROC) == ICANON
}

/// `t` with input and output processing turned off: bytes written to the
/// master are queued for the slave as they are (no echo, signals, CR/NL
/// mapping, stripping, parity marks), bytes written to the slave reach the
/// master as they are (no OPOST). ICANON and EXTPROC stay (changing them
/// resets n_tty's line state); IXON/IXANY stay (turning IXON off restarts
/// output stopped by ^S).
fn neutral(t: &Termios) -> Termios {
    let mut n = *t;
    set_flag(&mut n, C_IFLAG, flag(t, C_IFLAG) & (IXON | IXANY));
    set_flag(&mut n, C_OFLAG, flag(t, C_OFLAG) & !OPOST);
    set_flag(&mut n, C_LFLAG, flag(t, C_LFLAG) & (ICANON | EXTPROC));
    n
}

/// [`neutral`] for canonical mode: what is put into the input is only
/// split into lines (by newline, VEOL, VEOL2 and VEOF), never edited:
/// erase, kill, word erase, reprint and discard characters are disabled
/// (0 never matches: n_tty clears it from its map of special characters);
/// IEXTEN is on with `esc` as the literal-next character, which puts any
/// byte in as data. IXON and the start and stop characters stay: a pty
/// master in packet mode gets a status byte when they change.
fn neutral_canon(t: &Termios, esc: u8) -> Termios {
    let mut n = neutral(t);
    set_flag(&mut n, C_LFLAG, flag(t, C_LFLAG) & (ICANON | EXTPROC) | IEXTEN);
    for i in [VERASE, VKILL, VWERASE, VREPRINT, VDISCARD] {
        n[C_CC + i] = 0;
    }
    n[C_CC + VLNEXT] = esc;
    n
}

/// The bytes that act on their own under [`neutral_canon`], and the
/// literal-next character to use there (the task's own when it is free).
fn canon_specials(t: &Termios) -> (Vec<u8>, u8) {
    let mut sp = vec![b'\n'];
    sp.extend([cc(t, VEOF), cc(t, VEOL), cc(t, VEOL2)].into_iter().filter(|&c| c != 0));
    if flag(t, C_IFLAG) & IXON != 0 {
        sp.extend([cc(t, VSTART), cc(t, VSTOP)].into_iter().filter(|&c| c != 0));
    }
    let esc = [cc(t, VLNEXT), 0x16].into_iter().chain(1..=255).find(|&c| c != 0 && !sp.contains(&c)).unwrap_or(0x16);
    sp.push(esc);
    (sp, esc)
}

/// Reads every complete line and then the partial one queued for a
/// canonical-mode reader of `slave` (our own non-blocking description):
/// returns the bytes as reads return them and where each line ends. The
/// partial line is read with ICANON off (n_tty then forgets where lines
/// end: only the partial one is left); the caller puts everything back
/// with [`put_back`], which sets the settings again.
fn drain_lines(
    master: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
    t: &Termios,
) -> (Vec<u8>, Vec<(u32, bool)>, Option<String>) {
    let ends = line_ends(t);
    let (mut input, mut lines) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 8192];
    // One read returns one line; an empty one is an end of file (^D).
    loop {
        match fs::read(slave, &mut buf) {
            Ok(n) => {
                input.extend_from_slice(&buf[..n]);
                let eof = n == 0 || !ends.contains(&buf[n - 1]);
                lines.push((input.len() as u32, eof));
            }
            Err(crate::sys::Errno::EAGAIN) => break,
            Err(e) => return (input, lines, Some(format!("read an input line: {e}"))),
        }
    }
    let mut raw = *t;
    set_flag(&mut raw, C_LFLAG, flag(t, C_LFLAG) & !ICANON);
    if let Err(e) = st::tcsets(master, &raw) {
        return (input, lines, Some(format!("TCSETS: {e}")));
    }
    match drain(slave, false, false) {
        Ok(partial) => {
            input.extend_from_slice(&partial);
            (input, lines, None)
        }
        Err(e) => (input, lines, Some(e)),
    }
}

/// Reads every byte queued for the reader of `fd` (a master: poll says
/// when it is empty; a slave of our own: non-blocking until EAGAIN). In
/// packet mode each read starts with a status byte, 0 for data.
fn drain(fd: BorrowedFd<'_>, master: bool, packet: bool) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        if master && !st::poll_now(fd).map_err(|e| format!("poll: {e}"))?.input {
            break;
        }
        let n = match fs::read(fd, &mut buf) {
            Ok(0) | Err(crate::sys::Errno::EAGAIN) | Err(crate::sys::Errno::EIO) => break,
            Ok(n) => n,
            Err(e) => return Err(format!("read the queued data: {e}")),
        };
        if packet {
            if buf[0] != 0 {
                return Err(format!("read a packet-mode status byte {:#x} instead of data", buf[0]));
            }
            out.extend_from_slice(&buf[1..n]);
        } else {
            out.extend_from_slice(&buf[..n]);
        }
    }
    Ok(out)
}

/// Waits until FIONREAD on `fd` reaches `want`.
fn wait_queued(fd: BorrowedFd<'_>, want: usize, what: &str) -> std::result::Result<(), String> {
    // n_tty holds at most 4095 bytes; the rest stays in the driver's
    // buffer (up to 64 KiB) until the reader makes room.
    let want = want.min(4000);
    let deadline = Instant::now() + QUEUE_WAIT;
    loop {
        let n = st::inq(fd).map_err(|e| format!("FIONREAD: {e}"))?;
        if n >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: only {n} of {want} bytes arrived"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes all of `data`, waiting a little whenever the pty has no room
/// (its buffers take what they held before, so room comes).
fn write_patiently(fd: BorrowedFd<'_>, mut data: &[u8], what: &str) -> std::result::Result<(), String> {
    let deadline = Instant::now() + QUEUE_WAIT;
    while !data.is_empty() {
        match fs::write(fd, data) {
            Ok(0) => return Err(format!("write the {what} back: no progress")),
            Ok(n) => data = &data[n..],
            Err(crate::sys::Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(format!("write the {what} back: {e} ({} bytes left)", data.len())),
        }
    }
    Ok(())
}

/// Writes `output` (for the master's reader) through `slave` and `input`
/// (for the slave's reader) into the slave's input, with processing turned
/// off meanwhile, then sets `termios`. In canonical mode the input goes in
/// by TIOCSTI (processed at once, so lines, ends of file at `eofs` and a
/// partial line come back as they were); otherwise it is written to the
/// master and waited for.
fn put_back(
    master: BorrowedFd<'_>,
    slave: Option<BorrowedFd<'_>>,
    termios: &Termios,
    input: &[u8],
    lines: &[(u32, bool)],
    output: &[u8],
) -> std::result::Result<(), String> {
    let canon = canonical(termios);
    if input.is_empty() && lines.is_empty() && output.is_empty() {
        return st::tcsets(master, termios).map_err(|e| format!("TCSETS: {e}"));
    }
    let (specials, esc) = canon_specials(termios);
    let n = if canon { neutral_canon(termios, esc) } else { neutral(termios) };
    st::tcsets(master, &n).map_err(|e| format!("TCSETS: {e}"))?;
    let r = (|| {
        if !output.is_empty() {
            let s = slave.ok_or("output queued but no slave open")?;
            let before = st::inq(master).map_err(|e| format!("FIONREAD: {e}"))?;
            write_patiently(s, output, "output")?;
            wait_queued(master, before + output.len(), "output")?;
        }
        if canon && !(input.is_empty() && lines.is_empty()) {
            let s = slave.ok_or("input queued but no slave open")?;
            let sti = |b: u8| st::sti(s, b).map_err(|e| format!("put the input back (TIOCSTI): {e}"));
            // Data bytes that would act go in behind the literal-next character.
            let data = |bytes: &[u8]| {
                bytes.iter().try_for_each(|&b| {
                    if specials.contains(&b) {
                        sti(esc)?;
                    }
                    sti(b)
                })
            };
            let mut at = 0usize;
            for &(end, eof) in lines {
                let end = (end as usize).clamp(at, input.len());
                if eof {
                    data(&input[at..end])?;
                    match cc(termios, VEOF) {
                        0 => return Err("a line ended by VEOF, which is disabled".to_string()),
                        c => sti(c)?,
                    }
                } else if end > at {
                    data(&input[at..end - 1])?;
                    sti(input[end - 1])?;
                }
                at = end;
            }
            data(&input[at..])?;
        } else if !input.is_empty() {
            let s = slave.ok_or("input queued but no slave open")?;
            write_patiently(master, input, "input")?;
            wait_queued(s, input.len(), "input")?;
        }
        Ok(())
    })();
    let back = st::tcsets(master, termios).map_err(|e| format!("TCSETS: {e}"));
    r.and(back)
}

/// Takes the data queued in a pty both ways and puts it back at once (the
/// tree is frozen: nobody sees it missing). `slave_open`: a slave
/// description of the tree keeps the slave open, so one of our own can be
/// opened and closed without hanging the master up.
/// Why the queues of a pty could not be taken.
enum QueueError {
    /// A state this version does not restore exactly.
    Refuse(String),
    /// Something failed.
    Fail(String),
}

impl From<String> for QueueError {
    fn from(s: String) -> Self {
        QueueError::Fail(s)
    }
}

fn take_queues(
    master: BorrowedFd<'_>,
    info: &mut TtyInfoEntry,
    slave_open: bool,
) -> std::result::Result<(), QueueError> {
    let termios = termios_of(&info.termios)?;
    let ready = st::poll_now(master).map_err(|e| format!("poll: {e}"))?;
    if info.packet && ready.status {
        return Err(QueueError::Refuse(
            "a packet-mode control status byte is pending for its reader: it cannot be put back".into(),
        ));
    }
    if !slave_open {
        // Without an open slave, what is written to the master is dropped
        // when the slave is opened; what the slave wrote is in the master.
        info.slave_closed = ready.hangup;
        if ready.input {
            return Err(QueueError::Refuse(
                "data is queued for the master's reader but no slave of the tree is open".into(),
            ));
        }
        return Ok(());
    }
    if info.locked {
        st::set_ptlck(master, false).map_err(|e| format!("TIOCSPTLCK: {e}"))?;
    }
    let peer =
        st::open_peer(master, (SysFlags::O_RDWR | SysFlags::O_NONBLOCK | SysFlags::O_CLOEXEC).bits() | O_NOCTTY as u32);
    if info.locked {
        st::set_ptlck(master, true).map_err(|e| format!("TIOCSPTLCK: {e}"))?;
    }
    let slave = peer.map_err(|e| format!("open the slave (TIOCGPTPEER): {e}"))?;
    let pts = std::fs::metadata("/dev/pts").map_err(|e| format!("stat /dev/pts: {e}"))?;
    let md = fs::fstat(slave.as_fd()).map_err(|e| format!("fstat the slave: {e}"))?;
    if md.dev != pts.dev() {
        return Err(QueueError::Refuse(
            "the pty belongs to another devpts instance than /dev/pts: not supported".into(),
        ));
    }
    info.exclusive = st::get_excl(slave.as_fd()).map_err(|e| format!("TIOCGEXCL: {e}"))?;
    let queued_in = st::inq(slave.as_fd()).map_err(|e| format!("FIONREAD on the slave: {e}"))?;
    if queued_in > 0 && flag(&termios, C_LFLAG) & (ICANON | EXTPROC) == (ICANON | EXTPROC) {
        return Err(QueueError::Refuse(format!(
            "{queued_in} bytes of input are queued in canonical EXTPROC mode: not supported"
        )));
    }
    let slave_ready = st::poll_now(slave.as_fd()).map_err(|e| format!("poll the slave: {e}"))?;
    if !slave_ready.output {
        // pty_write_room() is 0 when output is stopped, or when the master's
        // buffers are full; either way nothing could be put back.
        return Err(QueueError::Refuse(if ready.input {
            "the slave cannot be written: its output is stopped (^S) or the master's reader is a whole \
             buffer behind"
                .into()
        } else {
            "its output is stopped (^S, flow control): not supported".into()
        }));
    }
    let output = drain(master, true, info.packet)?;
    let (input, lines, err) = if canonical(&termios) {
        // Always: a partial line is visible to nothing but a read.
        drain_lines(master, slave.as_fd(), &termios)
    } else {
        match drain(slave.as_fd(), false, false) {
            Ok(v) => (v, Vec::new(), None),
            Err(e) => (Vec::new(), Vec::new(), Some(e)),
        }
    };
    let back = put_back(master, Some(slave.as_fd()), &termios, &input, &lines, &output)
        .map_err(|e| format!("put the queued data back: {e}"));
    if let Some(e) = err {
        return Err(QueueError::Fail(e));
    }
    back?;
    info.input = input;
    info.input_lines = lines;
    info.output = output;
    Ok(())
}

/// Opens /dev/ptmx until the kernel hands out `index`; masters of other
/// indices go to `extras` (closed by the caller once every pty is made).
fn open_ptmx_index(index: u32, extras: &mut Vec<OwnedFd>) -> Result<OwnedFd> {
    let deadline = Instant::now() + INDEX_WAIT;
    loop {
        let m = fs::openat(
            None,
            "/dev/ptmx",
            SysFlags::O_RDWR | SysFlags::O_CLOEXEC | SysFlags::from_bits_retain(O_NOCTTY as u32),
            0,
        )
        .map_err(|e| Error::new(format!("/dev/pts/{index}: open /dev/ptmx: {e}")))?;
        let got = st::get_ptn(m.as_fd()).map_err(|e| Error::new(format!("/dev/pts/{index}: TIOCGPTN: {e}")))?;
        if got == index {
            return Ok(m);
        }
        if got < index {
            extras.push(m);
            continue;
        }
        // Indices are handed out lowest first: `index` is taken.
        drop(m);
        if Instant::now() > deadline {
            return Err(Error::new(format!(
                "pty index {index} (/dev/pts/{index}) is in use by another process: the pty cannot get its index back"
            )));
        }
        extras.clear();
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_flags(flags: OpenFlags) -> SysFlags {
    let f = flags - (OpenFlags::O_CREAT | OpenFlags::O_TRUNC | OpenFlags::O_EXCL | OpenFlags::O_CLOEXEC);
    SysFlags::from_bits_retain(f.bits())
}

/// Opens the terminals of the images: every pty pair with its state and
/// descriptions, the console and virtual consoles, /dev/tty (late), and
/// crtools' own terminal for a shell job's descriptions.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    let mut ptys: Vec<&TtyInfoEntry> = images.tty_info.iter().filter(|t| t.index.is_some()).collect();
    ptys.sort_by_key(|t| t.index);
    let mut extras = Vec::new();
    for info in ptys {
        open_pty(info, images, out, &mut extras)?;
    }
    drop(extras);
    open_hung_up(images, out)?;
    for t in &images.tty {
        if out.has(t.id) {
            continue; // --inherit-fd
        }
        let who = || cx.who(t.id);
        match t.kind {
            TtyKind::PtyMaster | TtyKind::PtySlave | TtyKind::HungUp => {}
            TtyKind::DevTty => out.add_late(
                t.id,
                Late {
                    path: b"/dev/tty".to_vec(),
                    flags: status_flags(t.flags).bits() | O_NOCTTY as u32,
                    pos: u64::MAX,
                    pidfd: None,
                },
            ),
            TtyKind::Console | TtyKind::Vt => {
                let path = device_path(t).ok_or_else(|| {
                    Error::refuse_global(format!(
                        "{}: {} (device {}:{}) does not exist here",
                        who(),
                        t.path.to_string_lossy(),
                        major(t.rdev),
                        minor(t.rdev)
                    ))
                })?;
                let fd =
                    fs::openat(None, &path, status_flags(t.flags) | SysFlags::from_bits_retain(O_NOCTTY as u32), 0)
                        .map_err(|e| Error::new(format!("{}: open {}: {e}", who(), path.display())))?;
                out.add(t.id, fd);
            }
            TtyKind::External => {
                let Some(path) = &cx.tty_path else {
                    return Err(Error::refuse_global(format!(
                        "{} is a shell job's terminal ({}): restore with --shell-job from a terminal",
                        who(),
                        t.path.to_string_lossy()
                    )));
                };
                let fd = fs::openat(None, path, status_flags(t.flags) | SysFlags::from_bits_retain(O_NOCTTY as u32), 0)
                    .map_err(|e| Error::new(format!("{}: open the terminal {}: {e}", who(), path.display())))?;
                out.add(t.id, fd);
            }
        }
    }
    // The shell job's terminal, for the job to become its foreground group.
    if let (Some(ext), Some(path)) = (images.tty_info.iter().find(|t| t.index.is_none()), &cx.tty_path) {
        if let Ok(fd) = fs::openat(
            None,
            path,
            SysFlags::O_RDWR | SysFlags::O_CLOEXEC | SysFlags::from_bits_retain(O_NOCTTY as u32),
            0,
        ) {
            out.add(ctty_id(ext.tty), fd);
        }
    }
    Ok(())
}

/// Makes the hung-up pty slaves again: for each dead pty (by index), a new
/// pair with that index if it is free (any other if not), its
/// descriptions opened on the slave, then the master closed, which hangs
/// them up.
fn open_hung_up(images: &FileImages, out: &mut Opened) -> Result<()> {
    let mut by_index: BTreeMap<u32, Vec<&TtyEntry>> = BTreeMap::new();
    for t in images.tty.iter().filter(|t| t.kind == TtyKind::HungUp && !out.has(t.id)) {
        let index = slave_index(t.rdev).unwrap_or(u32::MAX);
        by_index.entry(index).or_default().push(t);
    }
    for (index, descs) in by_index {
        let live = images.tty_info.iter().any(|t| t.index == Some(index));
        let mut extras = Vec::new();
        let same = if live { None } else { open_ptmx_index(index, &mut extras).ok() };
        drop(extras);
        let master = match same {
            Some(m) => m,
            None => {
                log::info!("hung-up /dev/pts/{index}: index taken, made on another");
                fs::openat(
                    None,
                    "/dev/ptmx",
                    SysFlags::O_RDWR | SysFlags::O_CLOEXEC | SysFlags::from_bits_retain(O_NOCTTY as u32),
                    0,
                )
                .map_err(|e| Error::new(format!("hung-up /dev/pts/{index}: open /dev/ptmx: {e}")))?
            }
        };
        let e = |what: &str, err: crate::sys::Errno| Error::new(format!("hung-up /dev/pts/{index}: {what}: {err}"));
        st::set_ptlck(master.as_fd(), false).map_err(|err| e("TIOCSPTLCK", err))?;
        let mut made = Vec::with_capacity(descs.len());
        for d in &descs {
            let access = d.flags & (OpenFlags::O_WRONLY | OpenFlags::O_RDWR);
            let fd = st::open_peer(master.as_fd(), access.bits() | (SysFlags::O_CLOEXEC.bits() | O_NOCTTY as u32))
                .map_err(|err| e("TIOCGPTPEER", err))?;
            fs::fcntl_setfl(fd.as_fd(), status_flags(d.flags)).map_err(|err| e("F_SETFL", err))?;
            made.push((d.id, fd));
        }
        // Closing the master hangs the slave's descriptions up.
        drop(master);
        for (id, fd) in made {
            if st::tcgets(fd.as_fd()) != Err(crate::sys::Errno::EIO) {
                return Err(Error::new(format!("hung-up /dev/pts/{index}: still answers after its master closed")));
            }
            out.add(id, fd);
        }
    }
    Ok(())
}

/// The node of a console or virtual console: the dumped path if it is
/// still that device, else its usual name.
fn device_path(t: &TtyEntry) -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let dumped = PathBuf::from(std::ffi::OsStr::from_bytes(&t.path.0));
    let usual = match (major(t.rdev), minor(t.rdev)) {
        (5, 1) => PathBuf::from("/dev/console"),
        (_, m) => PathBuf::from(format!("/dev/tty{m}")),
    };
    [dumped, usual]
        .into_iter()
        .find(|p| std::fs::metadata(p).map(|m| m.file_type().is_char_device() && m.rdev() == t.rdev).unwrap_or(false))
}

/// Makes one pty pair as it was dumped, with its descriptions.
fn open_pty(info: &TtyInfoEntry, images: &FileImages, out: &mut Opened, extras: &mut Vec<OwnedFd>) -> Result<()> {
    let index = info.index.unwrap_or(0);
    let name = format!("/dev/pts/{index}");
    let e = |what: &str, err: crate::sys::Errno| Error::new(format!("{name}: {what}: {err}"));
    let termios = termios_of(&info.termios).map_err(|w| Error::new(format!("tty-info.img: {name}: {w}")))?;
    let master = open_ptmx_index(index, extras)?;
    let descs: Vec<&TtyEntry> = images.tty.iter().filter(|t| t.tty == info.tty).collect();
    let slaves: Vec<&&TtyEntry> = descs.iter().filter(|t| t.kind == TtyKind::PtySlave).collect();
    // A slave opened and closed again leaves the master hung up (reads
    // fail with EIO), as it was at dump when `slave_closed`.
    let need_slave =
        !slaves.is_empty() || info.sid != 0 || info.slave_closed || !info.input.is_empty() || !info.output.is_empty();
    st::set_ptlck(master.as_fd(), false).map_err(|err| e("TIOCSPTLCK", err))?;
    let rw = (SysFlags::O_RDWR | SysFlags::O_CLOEXEC).bits() | O_NOCTTY as u32;
    let slave =
        if need_slave { Some(st::open_peer(master.as_fd(), rw).map_err(|err| e("TIOCGPTPEER", err))?) } else { None };
    st::set_winsize(master.as_fd(), &info.winsize).map_err(|err| e("TIOCSWINSZ", err))?;
    put_back(master.as_fd(), slave.as_ref().map(|s| s.as_fd()), &termios, &info.input, &info.input_lines, &info.output)
        .map_err(|w| Error::new(format!("{name}: {w}")))?;
    let path = std::path::Path::new(&name);
    std::os::unix::fs::chown(path, Some(info.uid), Some(info.gid))
        .map_err(|err| Error::new(format!("{name}: chown: {err}")))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(info.mode))
        .map_err(|err| Error::new(format!("{name}: chmod: {err}")))?;
    for d in &descs {
        if out.has(d.id) {
            continue; // --inherit-fd
        }
        let fd = match d.kind {
            TtyKind::PtyMaster => master.try_clone().map_err(|err| Error::new(format!("{name}: dup: {err}")))?,
            _ => {
                let access = d.flags & (OpenFlags::O_WRONLY | OpenFlags::O_RDWR);
                st::open_peer(master.as_fd(), access.bits() | (SysFlags::O_CLOEXEC.bits() | O_NOCTTY as u32))
                    .map_err(|err| e("TIOCGPTPEER", err))?
            }
        };
        fs::fcntl_setfl(fd.as_fd(), status_flags(d.flags)).map_err(|err| e("F_SETFL", err))?;
        out.add(d.id, fd);
    }
    if info.sid != 0 {
        let c = st::open_peer(master.as_fd(), rw).map_err(|err| e("TIOCGPTPEER", err))?;
        out.add(ctty_id(info.tty), c);
    }
    st::set_pkt(master.as_fd(), info.packet).map_err(|err| e("TIOCPKT", err))?;
    if let (true, Some(s)) = (info.exclusive, &slave) {
        st::set_excl(s.as_fd(), true).map_err(|err| e("TIOCEXCL", err))?;
    }
    if info.locked {
        st::set_ptlck(master.as_fd(), true).map_err(|err| e("TIOCSPTLCK", err))?;
    }
    log::debug!("{name}: made, {} descriptions", descs.len());
    Ok(())
}

/// What a task does about terminals in crtools' code, before its restorer
/// runs (descriptor numbers inherited from the engine; -1: nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskTty {
    /// TIOCSCTTY on this after setsid (a session leader).
    pub set_ctty: RawFd,
    /// TIOCNOTTY on this (a task that had given up the terminal its
    /// parent has).
    pub notty: RawFd,
    /// TIOCSPGRP on this to its own group, once it is in it.
    pub fg: RawFd,
    /// The group to make the foreground one.
    pub fg_pgid: i32,
    /// A failure of TIOCSPGRP is ignored (the shell job's terminal may not
    /// be crtools' controlling terminal).
    pub fg_optional: bool,
}

impl Default for TaskTty {
    fn default() -> Self {
        TaskTty { set_ctty: -1, notty: -1, fg: -1, fg_pgid: 0, fg_optional: false }
    }
}

/// One task for [`plan_tasks`].
pub struct TaskIds {
    /// Pid.
    pub pid: u32,
    /// Parent (0: crtools).
    pub ppid: u32,
    /// Session at dump.
    pub sid: u32,
    /// Process group at dump.
    pub pgid: u32,
    /// A zombie: does nothing.
    pub zombie: bool,
}

/// Decides every task's [`TaskTty`]; `order` is the creation order
/// (parents first), `shell_job` whether the root joins crtools' session.
pub fn plan_tasks(
    images: &FileImages,
    tasks: &[TaskIds],
    order: &[usize],
    opened: &Opened,
    shell_job: bool,
) -> Result<Vec<TaskTty>> {
    let mut out = vec![TaskTty::default(); tasks.len()];
    if images.tty_info.is_empty() {
        return Ok(out);
    }
    let fd_of = |tty: u32| opened.raw(ctty_id(tty));
    // Which terminal each task has as controlling one at dump.
    let mut ctty: BTreeMap<u32, u32> = BTreeMap::new();
    for info in &images.tty_info {
        for &p in &info.ctty_of {
            ctty.insert(p, info.tty);
        }
    }
    // Which terminal each task has after its own step (`None`: none).
    let mut have: BTreeMap<u32, Option<u32>> = BTreeMap::new();
    let ext = images.tty_info.iter().find(|t| t.index.is_none()).map(|t| t.tty);
    for (k, &i) in order.iter().enumerate() {
        let t = &tasks[i];
        let pid = Pid(t.pid as i32);
        if t.zombie {
            continue;
        }
        let want = ctty.get(&t.pid).copied();
        let inherited = if k == 0 {
            // The root inherits crtools' terminal: the shell job's.
            if shell_job {
                ext
            } else {
                None
            }
        } else {
            have.get(&t.ppid).copied().flatten()
        };
        let leader = t.sid == t.pid && !(shell_job && k == 0);
        let now = if leader {
            if let Some(tty) = want {
                out[i].set_ctty =
                    fd_of(tty).ok_or_else(|| Error::task(pid, "its controlling terminal was not opened"))?;
            }
            want
        } else {
            match (inherited, want) {
                (Some(a), Some(b)) if a == b => Some(a),
                (Some(a), None) => match fd_of(a) {
                    Some(fd) => {
                        out[i].notty = fd;
                        None
                    }
                    None if Some(a) == ext => {
                        return Err(Error::refuse(pid, "had given up the shell job's terminal: not supported"))
                    }
                    None => return Err(Error::task(pid, "its parent's controlling terminal was not opened")),
                },
                (None, None) => None,
                (_, Some(_)) => {
                    return Err(Error::refuse(
                        pid,
                        "has a controlling terminal its parent had given up before forking it: not supported",
                    ))
                }
            }
        };
        have.insert(t.pid, now);
    }
    // The foreground group: set by its first task, right after joining it.
    for info in &images.tty_info {
        if info.pgrp == 0 {
            continue;
        }
        let Some(fd) = fd_of(info.tty) else { continue };
        if info.index.is_none() {
            // The shell job: only its root may lead its own group.
            let root = &tasks[order[0]];
            if shell_job && root.pgid == root.pid && info.pgrp == root.pgid {
                let o = &mut out[order[0]];
                (o.fg, o.fg_pgid, o.fg_optional) = (fd, root.pgid as i32, true);
            }
            continue;
        }
        let first = order.iter().copied().find(|&i| {
            let t = &tasks[i];
            !t.zombie && t.pgid == info.pgrp && t.sid == info.sid
        });
        let Some(i) = first else {
            return Err(Error::new(format!(
                "the foreground group {} of /dev/pts/{} has no live task",
                info.pgrp,
                info.index.unwrap_or(0)
            )));
        };
        let o = &mut out[i];
        (o.fg, o.fg_pgid) = (fd, info.pgrp as i32);
    }
    Ok(out)
}

/// The terminal crtools runs on: the first of stdin, stdout, stderr that is one.
pub fn own_terminal() -> Option<PathBuf> {
    (0..3).find_map(|fd| {
        // SAFETY: 0..3 stay open for the whole run; we only borrow them here.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if st::is_tty(b) {
            std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
        } else {
            None
        }
    })
}

/// crtools' own terminal while a shell job is restored on it: the job's
/// dumped settings are applied, and put back as they were if the restore
/// fails (a failed restore must not leave the caller's terminal in the
/// job's raw mode). Its window size is the terminal's, not the job's: the
/// window may have been resized since, and the job is told with SIGWINCH.
pub struct JobTerminal {
    file: std::fs::File,
    before: Termios,
    dumped_winsize: st::Winsize,
    done: bool,
}

impl JobTerminal {
    /// Applies the dumped settings of the shell job's terminal (if the
    /// images have one) to crtools' terminal `path`.
    pub fn apply(path: &std::path::Path, ttys: &[TtyEntry]) -> Result<Option<JobTerminal>> {
        let Some(t) = ttys.iter().find(|t| t.kind == TtyKind::External) else { return Ok(None) };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(O_NOCTTY | O_NONBLOCK)
            .open(path)
            .ctx_global(&format!("open {}", path.display()))?;
        let termios = termios_of(&t.termios).map_err(|w| Error::new(format!("tty.img: {w}")))?;
        let before = st::tcgets(file.as_fd()).ctx_global("TCGETS")?;
        st::tcsets(file.as_fd(), &termios).ctx_global("TCSETS")?;
        Ok(Some(JobTerminal { file, before, dumped_winsize: t.winsize, done: false }))
    }

    /// The job runs again: if the window size is not the one it knew, its
    /// foreground group (when it is one of `pgids`, the restored tree's)
    /// gets SIGWINCH, as the kernel sends on a resize. Sent once the
    /// group's leader sleeps again (at most 200 ms), so that the read or
    /// select it was dumped in is interrupted by it as by a resize; sent
    /// earlier, the handler would run first and the call sleep on.
    pub fn tell_resize(&self, pgids: &[i32]) {
        let Ok(now) = st::get_winsize(self.file.as_fd()) else { return };
        if now[..2] == self.dumped_winsize[..2] {
            return;
        }
        let Ok(fg) = st::get_pgrp(self.file.as_fd()) else { return };
        if !pgids.contains(&fg.0) {
            return;
        }
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            match crate::proc::stat::read(fg) {
                Ok(s) if s.state != crate::proc::stat::TaskState::Running => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => break,
            }
        }
        // Debug: the job runs on this terminal, where the log goes.
        log::debug!(
            "the terminal is {}x{} now, {}x{} at dump: SIGWINCH to group {}",
            now[1],
            now[0],
            self.dumped_winsize[1],
            self.dumped_winsize[0],
            fg.0
        );
        let _ = crate::sys::signal::kill(Pid(-fg.0), crate::sys::signal::SIGWINCH);
    }

    /// The job runs again: its settings stay.
    pub fn keep(mut self) {
        self.done = true;
    }
}

/// crtools' controlling terminal while it waits in the foreground for a
/// restored shell job: the shell that runs crtools sees crtools, not the
/// job, so crtools passes the job's stops and continues on to it.
pub struct JobControl {
    file: std::fs::File,
}

impl JobControl {
    /// Opens `path` if it is crtools' controlling terminal.
    pub fn open(path: &std::path::Path) -> Option<JobControl> {
        let file =
            std::fs::OpenOptions::new().read(true).write(true).custom_flags(O_NOCTTY | O_NONBLOCK).open(path).ok()?;
        let sid = st::get_sid(file.as_fd()).ok()?;
        (crate::sys::misc::getsid(Pid(0)).ok()? == sid).then_some(JobControl { file })
    }

    /// The job's `root` stopped by `sig` (Ctrl-Z): crtools takes the
    /// terminal back for its own group and stops the same way, so its
    /// shell has the terminal again. Once continued (fg or bg), crtools
    /// hands the terminal back to the job if it has it, and continues it.
    pub fn job_stopped(&self, root: Pid, sig: i32) {
        use crate::sys::signal::{self as sg, SigSet, SigmaskHow};
        let (Ok(me), Ok(job)) = (crate::sys::misc::getpgid(Pid(0)), crate::sys::misc::getpgid(root)) else {
            return;
        };
        // Changing the foreground from the background raises SIGTTOU.
        let mut ttou = SigSet::empty();
        ttou.add(sg::SIGTTOU);
        let set_fg = |pgrp: Pid| {
            let old = sg::sigprocmask(SigmaskHow::Block, Some(&ttou));
            let r = st::set_pgrp(self.file.as_fd(), pgrp);
            if let Ok(old) = old {
                let _ = sg::sigprocmask(SigmaskHow::SetMask, Some(&old));
            }
            r
        };
        if st::get_pgrp(self.file.as_fd()).ok() == Some(job) {
            let _ = set_fg(me);
        }
        let stop = if matches!(sig, sg::SIGTSTP | sg::SIGTTIN | sg::SIGTTOU) { sg::SIGTSTP } else { sg::SIGSTOP };
        log::info!("the job {} stopped ({}): crtools stops too", job.0, sg::signal_name(sig));
        let _ = sg::kill(crate::sys::misc::getpid(), stop);
        // Continued.
        if st::get_pgrp(self.file.as_fd()).ok() == Some(me) {
            let _ = set_fg(job);
        }
        log::info!("crtools continued: the job {} too", job.0);
        let _ = sg::kill(Pid(-job.0), sg::SIGCONT);
    }
}

impl Drop for JobTerminal {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = st::tcsets(self.file.as_fd(), &self.before) {
                log::warn!("put the terminal's settings back: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers() {
        // /dev/pts/3 is 136:3, /dev/ptmx 5:2, /dev/null 1:3.
        assert_eq!(kind_of(136 << 8 | 3), Some(Ok(())));
        assert_eq!(kind_of(5 << 8 | 2), Some(Ok(())));
        assert!(matches!(kind_of(128 << 8 | 2), Some(Err(_))));
        assert_eq!(kind_of(1 << 8 | 3), None);
        assert_eq!(tty_nr_name(136 << 8 | 5), "/dev/pts/5");
        assert_eq!(tty_nr_name(4 << 8 | 1), "/dev/tty1");
        assert_eq!(slave_index(137 << 8 | 4), Some(260));
        assert_eq!(slave_index(4 << 8 | 4), None);
    }

    #[test]
    fn neutral_keeps_line_mode() {
        let mut t = [0u8; 36];
        set_flag(&mut t, C_IFLAG, 0o2400 | 0o400); // IXON | ICRNL
        set_flag(&mut t, C_OFLAG, OPOST | 0o4); // OPOST | ONLCR
        set_flag(&mut t, C_LFLAG, ICANON | 0o10 | 0o1); // ICANON | ECHO | ISIG
        let n = neutral(&t);
        assert_eq!(flag(&n, C_IFLAG), IXON);
        assert_eq!(flag(&n, C_OFLAG), 0o4);
        assert_eq!(flag(&n, C_LFLAG), ICANON);
        assert!(canonical(&t));
    }

    fn pty() -> (OwnedFd, OwnedFd) {
        let m = fs::openat(
            None,
            "/dev/ptmx",
            SysFlags::O_RDWR | SysFlags::O_CLOEXEC | SysFlags::from_bits_retain(O_NOCTTY as u32),
            0,
        )
        .unwrap();
        st::set_ptlck(m.as_fd(), false).unwrap();
        let s = st::open_peer(m.as_fd(), (SysFlags::O_RDWR | SysFlags::O_NONBLOCK).bits() | O_NOCTTY as u32).unwrap();
        (m, s)
    }

    /// Reads one line (one read) from a non-blocking slave: None when none.
    fn read_line(s: BorrowedFd<'_>) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        match fs::read(s, &mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }

    #[test]
    fn canonical_lines_come_back_as_they_were() {
        let (m, s) = pty();
        let t = st::tcgets(m.as_fd()).unwrap();
        assert!(canonical(&t));
        // Lines (one with a NUL, one with an escaped newline: ^V), an end
        // of file on an empty line, a line ended by an end of file, and a
        // partial line with an erased character.
        fs::write_all(m.as_fd(), b"ab\0cd\none\x16\ntwo\n\x04three\x04parX\x7ft").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (input, lines, err) = drain_lines(m.as_fd(), s.as_fd(), &t);
        assert_eq!(err, None);
        assert_eq!(input, b"ab\0cd\none\ntwo\nthreepart");
        assert_eq!(lines, vec![(6, false), (14, false), (14, true), (19, true)]);
        // Whatever the echo put in the master's queue is not ours here.
        let _ = drain(m.as_fd(), true, false);
        put_back(m.as_fd(), Some(s.as_fd()), &t, &input, &lines, &[]).unwrap();
        assert_eq!(st::tcgets(m.as_fd()).unwrap(), t);
        assert!(!st::poll_now(m.as_fd()).unwrap().input, "putting back echoed nothing");
        assert_eq!(read_line(s.as_fd()).unwrap(), b"ab\0cd\n");
        assert_eq!(read_line(s.as_fd()).unwrap(), b"one\ntwo\n");
        assert_eq!(read_line(s.as_fd()).unwrap(), b"");
        assert_eq!(read_line(s.as_fd()).unwrap(), b"three");
        assert_eq!(read_line(s.as_fd()), None, "the partial line is not complete");
        // It is still being edited: an erase removes its last byte.
        fs::write_all(m.as_fd(), b"\x7fs\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(read_line(s.as_fd()).unwrap(), b"pars\n");
    }

    #[test]
    fn queues_come_back_as_they_were() {
        let (m, s) = pty();
        let mut t = st::tcgets(m.as_fd()).unwrap();
        let l = flag(&t, C_LFLAG) & !(ICANON | 0o10);
        set_flag(&mut t, C_LFLAG, l);
        put_back(m.as_fd(), Some(s.as_fd()), &t, b"in\r", &[], b"out\n").unwrap();
        assert_eq!(st::tcgets(m.as_fd()).unwrap(), t);
        let mut buf = [0u8; 64];
        let n = fs::read(s.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"in\r");
        let n = fs::read(m.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"out\n");
    }
}
