//! Terminal ioctls (tty_ioctl(4)): settings, window size, controlling
//! terminal and foreground group.
use super::{Pid, Result, Sysno};
use std::os::fd::{AsRawFd, BorrowedFd};

const TCGETS: usize = 0x5401;
const TCSETS: usize = 0x5402;
const TIOCSCTTY: usize = 0x540E;
const TIOCGPGRP: usize = 0x540F;
const TIOCSPGRP: usize = 0x5410;
const TIOCGWINSZ: usize = 0x5413;
const TIOCSWINSZ: usize = 0x5414;
const TIOCGSID: usize = 0x5429;

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
    }

    #[test]
    fn a_file_is_not_a_tty() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsFd;
        assert!(!is_tty(f.as_fd()));
    }
}
