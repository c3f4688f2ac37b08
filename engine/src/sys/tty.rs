//! Terminal ioctls (tty_ioctl(4), pty(7), ioctl_tty(2)): settings, window
//! size, controlling terminal and foreground group, and the pty master's
//! own state (index, lock, packet mode, the peer slave).
use super::{Pid, Result, Sysno};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const TCGETS: usize = 0x5401;
const TCSETS: usize = 0x5402;
const TIOCSCTTY: usize = 0x540E;
const TIOCGPGRP: usize = 0x540F;
const TIOCSPGRP: usize = 0x5410;
const TIOCGWINSZ: usize = 0x5413;
const TIOCSWINSZ: usize = 0x5414;
const TIOCGSID: usize = 0x5429;
const TIOCNOTTY: usize = 0x5422;
const TIOCPKT: usize = 0x5420;
const TIOCEXCL: usize = 0x540C;
const TIOCNXCL: usize = 0x540D;
const TIOCGETD: usize = 0x5424;
const TIOCOUTQ: usize = 0x5411;
const FIONREAD: usize = 0x541B;
const TIOCGPTN: usize = 0x8004_5430;
const TIOCSPTLCK: usize = 0x4004_5431;
const TIOCGDEV: usize = 0x8004_5432;
const TIOCGPKT: usize = 0x8004_5438;
const TIOCGPTLCK: usize = 0x8004_5439;
const TIOCGEXCL: usize = 0x8004_5440;
const TIOCGPTPEER: usize = 0x5441;
const TIOCSTI: usize = 0x5412;
const POLLIN: i16 = 0x1;
const POLLPRI: i16 = 0x2;
const POLLOUT: i16 = 0x4;
const POLLHUP: i16 = 0x10;

/// Size of the kernel's `struct termios` (TCGETS): four flag words, c_line, 19 c_cc.
pub const TERMIOS_SIZE: usize = 36;

/// Kernel `struct termios` as raw bytes (kept raw: images store it as is).
pub type Termios = [u8; TERMIOS_SIZE];

/// `struct winsize`: rows, columns, x pixels, y pixels.
pub type Winsize = [u16; 4];

/// # Safety
/// `arg` must be what the request expects (a pointer to a buffer of its size, or a value).
unsafe fn ioctl(fd: BorrowedFd<'_>, req: usize, arg: usize) -> Result<usize> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { syscalls::syscall3(Sysno::ioctl, fd.as_raw_fd() as usize, req, arg) }
}

/// TCGETS.
pub fn tcgets(fd: BorrowedFd<'_>) -> Result<Termios> {
    let mut t = [0u8; TERMIOS_SIZE];
    // SAFETY: the kernel writes one struct termios (36 bytes) to `t`.
    unsafe { ioctl(fd, TCGETS, t.as_mut_ptr() as usize) }?;
    Ok(t)
}

/// TCSETS (applied at once, like tcsetattr TCSANOW).
pub fn tcsets(fd: BorrowedFd<'_>, t: &Termios) -> Result<()> {
    // SAFETY: the kernel reads one struct termios from `t`.
    unsafe { ioctl(fd, TCSETS, t.as_ptr() as usize) }.map(drop)
}

/// TIOCGWINSZ.
pub fn get_winsize(fd: BorrowedFd<'_>) -> Result<Winsize> {
    let mut w = [0u16; 4];
    // SAFETY: the kernel writes one struct winsize (8 bytes) to `w`.
    unsafe { ioctl(fd, TIOCGWINSZ, w.as_mut_ptr() as usize) }?;
    Ok(w)
}

/// TIOCSWINSZ.
pub fn set_winsize(fd: BorrowedFd<'_>, w: &Winsize) -> Result<()> {
    // SAFETY: the kernel reads one struct winsize from `w`.
    unsafe { ioctl(fd, TIOCSWINSZ, w.as_ptr() as usize) }.map(drop)
}

/// TIOCSCTTY: make this terminal the caller's controlling terminal.
pub fn set_ctty(fd: BorrowedFd<'_>, steal: bool) -> Result<()> {
    // SAFETY: the argument is a plain integer.
    unsafe { ioctl(fd, TIOCSCTTY, steal as usize) }.map(drop)
}

/// TIOCGPGRP: the terminal's foreground process group.
pub fn get_pgrp(fd: BorrowedFd<'_>) -> Result<Pid> {
    let mut p = 0i32;
    // SAFETY: the kernel writes one pid_t.
    unsafe { ioctl(fd, TIOCGPGRP, &mut p as *mut i32 as usize) }?;
    Ok(Pid(p))
}

/// TIOCSPGRP: set the foreground process group.
pub fn set_pgrp(fd: BorrowedFd<'_>, pgrp: Pid) -> Result<()> {
    // SAFETY: the kernel reads one pid_t.
    unsafe { ioctl(fd, TIOCSPGRP, &pgrp.0 as *const i32 as usize) }.map(drop)
}

/// TIOCGSID: the session the terminal controls.
pub fn get_sid(fd: BorrowedFd<'_>) -> Result<Pid> {
    let mut p = 0i32;
    // SAFETY: the kernel writes one pid_t.
    unsafe { ioctl(fd, TIOCGSID, &mut p as *mut i32 as usize) }?;
    Ok(Pid(p))
}

/// Reads one `int` with a `_IOR(.., int)` request.
fn get_int(fd: BorrowedFd<'_>, req: usize) -> Result<i32> {
    let mut v = 0i32;
    // SAFETY: every caller passes a request that writes one int.
    unsafe { ioctl(fd, req, &mut v as *mut i32 as usize) }?;
    Ok(v)
}

/// TIOCNOTTY: give up the controlling terminal (a session leader gives it
/// up for its whole session; anyone else only for itself).
pub fn notty(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: no argument.
    unsafe { ioctl(fd, TIOCNOTTY, 0) }.map(drop)
}

/// TIOCGPTN: the index N of a pty master (its slave is /dev/pts/N).
pub fn get_ptn(master: BorrowedFd<'_>) -> Result<u32> {
    get_int(master, TIOCGPTN).map(|v| v as u32)
}

/// TIOCGPTLCK: whether the slave of a pty master is locked.
pub fn get_ptlck(master: BorrowedFd<'_>) -> Result<bool> {
    get_int(master, TIOCGPTLCK).map(|v| v != 0)
}

/// TIOCSPTLCK: locks (unlockpt(3) unlocks) the slave of a pty master.
pub fn set_ptlck(master: BorrowedFd<'_>, lock: bool) -> Result<()> {
    let v = lock as i32;
    // SAFETY: the kernel reads one int.
    unsafe { ioctl(master, TIOCSPTLCK, &v as *const i32 as usize) }.map(drop)
}

/// TIOCGPKT: whether a pty master is in packet mode.
pub fn get_pkt(master: BorrowedFd<'_>) -> Result<bool> {
    get_int(master, TIOCGPKT).map(|v| v != 0)
}

/// TIOCPKT: sets packet mode of a pty master.
pub fn set_pkt(master: BorrowedFd<'_>, on: bool) -> Result<()> {
    let v = on as i32;
    // SAFETY: the kernel reads one int.
    unsafe { ioctl(master, TIOCPKT, &v as *const i32 as usize) }.map(drop)
}

/// TIOCGEXCL: whether the terminal is in exclusive mode.
pub fn get_excl(fd: BorrowedFd<'_>) -> Result<bool> {
    get_int(fd, TIOCGEXCL).map(|v| v != 0)
}

/// TIOCEXCL / TIOCNXCL: sets exclusive mode.
pub fn set_excl(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    // SAFETY: no argument.
    unsafe { ioctl(fd, if on { TIOCEXCL } else { TIOCNXCL }, 0) }.map(drop)
}

/// TIOCGETD: the line discipline (0 is N_TTY).
pub fn get_ldisc(fd: BorrowedFd<'_>) -> Result<i32> {
    get_int(fd, TIOCGETD)
}

/// TIOCGDEV: the device number (new encoding) of the terminal behind
/// `fd`: the real one behind /dev/tty or /dev/console, the slave's for a
/// pty master.
pub fn get_dev(fd: BorrowedFd<'_>) -> Result<u64> {
    get_int(fd, TIOCGDEV).map(|v| v as u32 as u64)
}

/// FIONREAD (TIOCINQ): bytes a read would get. In canonical mode only
/// complete lines count (n_tty's inq_canon): a partial line is invisible.
pub fn inq(fd: BorrowedFd<'_>) -> Result<usize> {
    get_int(fd, FIONREAD).map(|v| v as usize)
}

/// TIOCOUTQ: bytes written but not yet sent by the driver.
pub fn outq(fd: BorrowedFd<'_>) -> Result<usize> {
    get_int(fd, TIOCOUTQ).map(|v| v as usize)
}

/// TIOCSTI: puts one byte into the terminal's input as if it had been
/// received, processed by the line discipline at once (no driver buffer
/// in between). Needs CAP_SYS_ADMIN unless it is the caller's controlling
/// terminal (and dev.tty.legacy_tiocsti).
pub fn sti(fd: BorrowedFd<'_>, byte: u8) -> Result<()> {
    // SAFETY: the kernel reads one byte.
    unsafe { ioctl(fd, TIOCSTI, &byte as *const u8 as usize) }.map(drop)
}

/// TIOCGPTPEER: opens the slave of a pty master with `flags` (open(2)
/// flags), whatever path the slave has in this mount namespace.
pub fn open_peer(master: BorrowedFd<'_>, flags: u32) -> Result<OwnedFd> {
    // SAFETY: the argument is a plain integer; a new descriptor is returned.
    let fd = unsafe { ioctl(master, TIOCGPTPEER, flags as usize) }?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// What poll(2) reports at once (no waiting) for a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// POLLIN: a read would not block.
    pub input: bool,
    /// POLLPRI: a pty master in packet mode has a control status byte
    /// pending (a read would return it).
    pub status: bool,
    /// POLLOUT: a write would not block (a pty slave whose output is
    /// stopped by flow control is not writable).
    pub output: bool,
    /// POLLHUP: the other side is gone (a pty master whose slave was
    /// opened and closed again).
    pub hangup: bool,
}

/// poll(2) on one descriptor with a zero timeout.
pub fn poll_now(fd: BorrowedFd<'_>) -> Result<Ready> {
    #[repr(C)]
    struct PollFd {
        fd: i32,
        events: i16,
        revents: i16,
    }
    let mut p = PollFd { fd: fd.as_raw_fd(), events: POLLIN | POLLPRI | POLLOUT, revents: 0 };
    // SAFETY: the kernel reads and writes one struct pollfd (8 bytes).
    unsafe { syscalls::syscall3(Sysno::poll, &mut p as *mut PollFd as usize, 1, 0) }?;
    Ok(Ready {
        input: p.revents & POLLIN != 0,
        status: p.revents & POLLPRI != 0,
        output: p.revents & POLLOUT != 0,
        hangup: p.revents & POLLHUP != 0,
    })
}

/// True when `fd` is a terminal (TCGETS works on it).
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    tcgets(fd).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_numbers_match_libc() {
        // glibc's termios is larger (32 c_cc, speeds); the kernel's is what TCGETS fills.
        assert_eq!(TERMIOS_SIZE, std::mem::size_of::<linux_raw_sys::general::termios>());
        assert_eq!(std::mem::size_of::<Winsize>(), std::mem::size_of::<libc::winsize>());
        assert_eq!(TCGETS as u64, libc::TCGETS);
        assert_eq!(TIOCGWINSZ as u64, libc::TIOCGWINSZ);
        assert_eq!(TIOCSCTTY as u64, libc::TIOCSCTTY);
        assert_eq!(TIOCGSID as u64, libc::TIOCGSID);
        assert_eq!(TIOCNOTTY as u64, libc::TIOCNOTTY);
        assert_eq!(TIOCSTI as u64, libc::TIOCSTI);
        assert_eq!(TIOCPKT as u64, libc::TIOCPKT);
        assert_eq!(TIOCEXCL as u64, libc::TIOCEXCL);
        assert_eq!(TIOCNXCL as u64, libc::TIOCNXCL);
        assert_eq!(TIOCGETD as u64, libc::TIOCGETD);
        assert_eq!(TIOCOUTQ as u64, libc::TIOCOUTQ);
        assert_eq!(FIONREAD as u64, libc::FIONREAD);
        assert_eq!(TIOCGPTN as u64, libc::TIOCGPTN);
        assert_eq!(TIOCSPTLCK as u64, libc::TIOCSPTLCK);
        assert_eq!(TIOCGDEV as u64, libc::TIOCGDEV);
        assert_eq!(TIOCGPKT as u64, libc::TIOCGPKT);
        assert_eq!(TIOCGPTLCK as u64, libc::TIOCGPTLCK);
        assert_eq!(TIOCGEXCL as u64, libc::TIOCGEXCL);
        assert_eq!(TIOCGPTPEER as u64, libc::TIOCGPTPEER);
        assert_eq!(POLLIN, libc::POLLIN);
        assert_eq!(POLLPRI, libc::POLLPRI);
        assert_eq!(POLLOUT, libc::POLLOUT);
        assert_eq!(POLLHUP, libc::POLLHUP);
    }

    #[test]
    fn pty_master_state() {
        use std::os::fd::AsFd;
        let m = std::fs::OpenOptions::new().read(true).write(true).open("/dev/ptmx").unwrap();
        let n = get_ptn(m.as_fd()).unwrap();
        assert!(get_ptlck(m.as_fd()).unwrap());
        set_ptlck(m.as_fd(), false).unwrap();
        assert!(!get_ptlck(m.as_fd()).unwrap());
        assert!(!get_pkt(m.as_fd()).unwrap());
        set_pkt(m.as_fd(), true).unwrap();
        assert!(get_pkt(m.as_fd()).unwrap());
        let s = open_peer(m.as_fd(), 0o2 | 0o400).unwrap();
        assert_eq!(get_dev(m.as_fd()).unwrap(), get_dev(s.as_fd()).unwrap());
        assert_eq!(get_dev(s.as_fd()).unwrap() & 0xff, (n & 0xff) as u64);
        assert_eq!(get_ldisc(s.as_fd()).unwrap(), 0);
        assert_eq!(inq(s.as_fd()).unwrap(), 0);
        assert!(!poll_now(m.as_fd()).unwrap().input);
    }

    #[test]
    fn a_file_is_not_a_tty() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsFd;
        assert!(!is_tty(f.as_fd()));
    }
}
