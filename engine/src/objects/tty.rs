//! Terminals: a shell job's terminal (`--shell-job`).
//!
//! Dump: a descriptor of a terminal outside the dumped tree is refused
//! unless `--shell-job` is given; with it, the terminal's settings (termios)
//! and window size are recorded. Pty masters and terminals whose session
//! is dumped too are not supported yet.
//!
//! Restore: such descriptors are connected to the terminal crtools itself
//! runs on (found on its stdin, stdout or stderr), the dumped settings and
//! window size are applied to it, and the tree joins crtools' session and
//! process group (see the restore pipeline), as the manual says.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Context, Error, Result};
use crate::image::files::OpenFlags;
use crate::image::tty::TtyEntry;
use crate::image::RawStr;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::Pid;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

const O_NOCTTY: i32 = 0o400;
const O_NONBLOCK: i32 = 0o4000;

fn major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}

fn minor(rdev: u64) -> u64 {
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}

/// For a character device number: `Some(Ok)` for a terminal this version
/// handles (a pty slave, a virtual console, a serial line), `Some(Err)` for
/// a terminal it does not (a pty master, /dev/tty, /dev/console), `None`
/// for anything else.
pub fn kind_of(rdev: u64) -> Option<std::result::Result<(), &'static str>> {
    match major(rdev) {
        136..=143 => Some(Ok(())),
        128..=135 => Some(Err("pty master")),
        4 => Some(Ok(())),
        5 if minor(rdev) == 0 => Some(Err("/dev/tty")),
        5 if minor(rdev) == 1 => Some(Err("console")),
        5 if minor(rdev) == 2 => Some(Err("pty master (/dev/ptmx)")),
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
        _ => format!("tty {maj}:{min}"),
    }
}

/// Dumps one open terminal.
pub fn dump(
    cx: &FdCtx,
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
    if !cx.shell_job {
        return Err(Error::refuse(
            pid,
            format!(
                "fd {fd} is the terminal {}, which is outside the dumped tree: dump it as a shell job (--shell-job)",
                p.path.display()
            ),
        ));
    }
    let link = crate::proc::pid_path(pid, &format!("fd/{fd}"));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOCTTY | O_NONBLOCK)
        .open(&link)
        .ctx(pid, &format!("open the terminal of fd {fd}"))?;
    let termios = crate::sys::tty::tcgets(f.as_fd()).ctx(pid, &format!("TCGETS on fd {fd}"))?;
    let winsize = crate::sys::tty::get_winsize(f.as_fd()).ctx(pid, &format!("TIOCGWINSZ on fd {fd}"))?;
    let md = f.metadata().ctx(pid, &format!("stat fd {fd}"))?;
    out.tty.push(TtyEntry {
        id,
        path: RawStr(p.path.as_os_str().as_bytes().to_vec()),
        flags: OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC,
        rdev: md.rdev(),
        external: true,
        termios: termios.to_vec(),
        winsize,
    });
    Ok(())
}

/// Opens crtools' own terminal for each of a shell job's terminal
/// descriptions, with the dumped flags.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for t in &images.tty {
        if out.has(t.id) {
            continue; // --inherit-fd
        }
        let Some(path) = &cx.tty_path else {
            return Err(Error::refuse_global(format!(
                "{} is a shell job's terminal ({}): restore with --shell-job from a terminal",
                cx.who(t.id),
                t.path.to_string_lossy()
            )));
        };
        let flags = t.flags - (OpenFlags::O_CREAT | OpenFlags::O_TRUNC | OpenFlags::O_EXCL | OpenFlags::O_CLOEXEC);
        let flags = crate::sys::fs::OpenFlags::from_bits_retain(flags.bits() | O_NOCTTY as u32);
        let fd = crate::sys::fs::openat(None, path, flags, 0)
            .map_err(|e| Error::new(format!("{}: open the terminal {}: {e}", cx.who(t.id), path.display())))?;
        out.add(t.id, fd);
    }
    Ok(())
}

/// The terminal crtools runs on: the first of stdin, stdout, stderr that is one.
pub fn own_terminal() -> Option<PathBuf> {
    (0..3).find_map(|fd| {
        // SAFETY: 0..3 stay open for the whole run; we only borrow them here.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if crate::sys::tty::is_tty(b) {
            std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
        } else {
            None
        }
    })
}

/// Applies the dumped settings and window size of the shell job's terminal
/// to crtools' terminal.
pub fn apply_settings(path: &std::path::Path, ttys: &[TtyEntry]) -> Result<()> {
    let Some(t) = ttys.iter().find(|t| t.external) else { return Ok(()) };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(O_NOCTTY | O_NONBLOCK)
        .open(path)
        .ctx_global(&format!("open {}", path.display()))?;
    let termios: crate::sys::tty::Termios = t
        .termios
        .as_slice()
        .try_into()
        .map_err(|_| Error::new(format!("tty.img: termios of {} bytes", t.termios.len())))?;
    crate::sys::tty::tcsets(f.as_fd(), &termios).ctx_global("TCSETS")?;
    crate::sys::tty::set_winsize(f.as_fd(), &t.winsize).ctx_global("TIOCSWINSZ")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers() {
        // /dev/pts/3 is 136:3, /dev/ptmx 5:2, /dev/null 1:3.
        assert_eq!(kind_of(136 << 8 | 3), Some(Ok(())));
        assert!(matches!(kind_of(5 << 8 | 2), Some(Err(_))));
        assert_eq!(kind_of(1 << 8 | 3), None);
        assert_eq!(tty_nr_name(136 << 8 | 5), "/dev/pts/5");
        assert_eq!(tty_nr_name(4 << 8 | 1), "/dev/tty1");
    }
}
