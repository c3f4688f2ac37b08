//! Event and special descriptors: eventfd(2), epoll_create1(2) and
//! epoll_ctl(2), timerfd_create(2) with timerfd_settime and
//! the TFD_IOC_SET_TICKS ioctl (CONFIG_CHECKPOINT_RESTORE), inotify_init1(2)
//! and inotify_add_watch(2) with the INOTIFY_IOC_SETNEXTWD ioctl,
//! open_by_handle_at(2).
//!
//! # Invariants
//! - One typed function per ioctl; kernel constant names are kept.
//! - Every function returns a new [`OwnedFd`] or acts on borrowed ones.
use super::{Result, Sysno};
use crate::sys::misc::Timespec;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn owned(r: usize) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

fn fd_arg(fd: BorrowedFd<'_>) -> usize {
    fd.as_raw_fd() as usize
}

/// `_IOW(ty, nr, size)` of asm-generic/ioctl.h.
const fn iow(ty: u8, nr: u8, size: usize) -> usize {
    (1 << 30) | (size << 16) | ((ty as usize) << 8) | nr as usize
}

/// TFD_IOC_SET_TICKS: `_IOW('T', 0, u64)`.
pub const TFD_IOC_SET_TICKS: usize = iow(b'T', 0, 8);
/// INOTIFY_IOC_SETNEXTWD: `_IOW('I', 0, __s32)`.
pub const INOTIFY_IOC_SETNEXTWD: usize = iow(b'I', 0, 4);

/// EFD_SEMAPHORE.
pub const EFD_SEMAPHORE: u32 = 1;
/// EFD_CLOEXEC (= O_CLOEXEC).
pub const EFD_CLOEXEC: u32 = 0o2000000;

/// eventfd2(initval, flags).
pub fn eventfd(initval: u32, flags: u32) -> Result<OwnedFd> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall2(Sysno::eventfd2, initval as usize, flags as usize) }.map(owned)
}

/// EPOLL_CLOEXEC.
pub const EPOLL_CLOEXEC: u32 = 0o2000000;
/// EPOLL_CTL_ADD.
pub const EPOLL_CTL_ADD: u32 = 1;

/// Kernel `struct epoll_event` (packed on x86_64).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EpollEvent {
    /// EPOLLIN | EPOLLET | ...
    pub events: u32,
    /// User data.
    pub data: u64,
}
const _: () = assert!(core::mem::size_of::<EpollEvent>() == 12);

/// epoll_create1(flags).
pub fn epoll_create1(flags: u32) -> Result<OwnedFd> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall1(Sysno::epoll_create1, flags as usize) }.map(owned)
}

/// epoll_ctl(epfd, EPOLL_CTL_ADD, fd, ev) with a raw target number: the
/// epoll item is keyed by the number as well as the file it names now.
pub fn epoll_ctl_add(epfd: BorrowedFd<'_>, fd: RawFd, ev: &EpollEvent) -> Result<()> {
    // SAFETY: the kernel reads one epoll_event.
    unsafe {
        syscalls::syscall4(
            Sysno::epoll_ctl,
            fd_arg(epfd),
            EPOLL_CTL_ADD as usize,
            fd as usize,
            ev as *const EpollEvent as usize,
        )
    }
    .map(drop)
}

/// epoll_wait(epfd, events, 0): what is ready now, without waiting.
pub fn epoll_wait_now(epfd: BorrowedFd<'_>, out: &mut [EpollEvent]) -> Result<usize> {
    // SAFETY: the kernel writes at most out.len() events into `out`.
    unsafe {
        syscalls::syscall4(
            Sysno::epoll_wait,
            fd_arg(epfd),
            out.as_mut_ptr() as usize,
            out.len().min(i32::MAX as usize),
            0,
        )
    }
}

/// poll(2) of one raw descriptor number, without waiting: the events of
/// `events` it has now.
pub fn poll_now(fd: RawFd, events: u16) -> Result<u16> {
    poll_for(fd, events, 0)
}

/// POLLIN.
pub const POLLIN: u16 = 1;
/// POLLERR: a pending error, or a socket's error queue is not empty.
pub const POLLERR: u16 = 8;

/// poll(2) of one raw descriptor number for up to `timeout_ms`: the events
/// it has (of `events`, or an error or hang-up), 0 when the time ran out.
/// A signal ends the wait early, as a timeout.
pub fn poll_for(fd: RawFd, events: u16, timeout_ms: i32) -> Result<u16> {
    // struct pollfd { int fd; short events; short revents; }
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&fd.to_ne_bytes());
    p[4..6].copy_from_slice(&events.to_ne_bytes());
    // SAFETY: the kernel reads and writes one pollfd in `p`.
    match unsafe { syscalls::syscall3(Sysno::poll, p.as_mut_ptr() as usize, 1, timeout_ms as usize) } {
        Ok(_) => Ok(u16::from_ne_bytes([p[6], p[7]])),
        Err(super::Errno::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}

/// TFD_TIMER_ABSTIME.
pub const TFD_TIMER_ABSTIME: u32 = 1;
/// TFD_TIMER_CANCEL_ON_SET.
pub const TFD_TIMER_CANCEL_ON_SET: u32 = 2;

/// Kernel `struct itimerspec` (64-bit time).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerspec {
    /// Period (zero: one-shot).
    pub interval: Timespec,
    /// First expiration (zero: disarm).
    pub value: Timespec,
}
const _: () = assert!(core::mem::size_of::<Itimerspec>() == 32);

/// timerfd_create(clockid, flags).
pub fn timerfd_create(clockid: i32, flags: u32) -> Result<OwnedFd> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall2(Sysno::timerfd_create, clockid as usize, flags as usize) }.map(owned)
}

/// timerfd_settime(fd, flags, new, NULL).
pub fn timerfd_settime(fd: BorrowedFd<'_>, flags: u32, new: &Itimerspec) -> Result<()> {
    // SAFETY: the kernel reads one itimerspec; no old value is asked for.
    unsafe {
        syscalls::syscall4(Sysno::timerfd_settime, fd_arg(fd), flags as usize, new as *const Itimerspec as usize, 0)
    }
    .map(drop)
}

/// timerfd_gettime(fd): time to the next expiration and period. On a
/// periodic timer that expired, the kernel first counts the expirations
/// since into the unread ones (as a read would before consuming them).
pub fn timerfd_gettime(fd: BorrowedFd<'_>) -> Result<Itimerspec> {
    let mut cur = Itimerspec::default();
    // SAFETY: the kernel writes one itimerspec.
    unsafe { syscalls::syscall2(Sysno::timerfd_gettime, fd_arg(fd), &mut cur as *mut Itimerspec as usize) }?;
    Ok(cur)
}

/// ioctl(TFD_IOC_SET_TICKS): sets the expirations not yet read (and wakes
/// up pollers when nonzero).
pub fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> Result<()> {
    // SAFETY: the kernel reads one u64.
    unsafe { syscalls::syscall3(Sysno::ioctl, fd_arg(fd), TFD_IOC_SET_TICKS, &ticks as *const u64 as usize) }.map(drop)
}

/// inotify_init1(flags).
pub fn inotify_init1(flags: u32) -> Result<OwnedFd> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall1(Sysno::inotify_init1, flags as usize) }.map(owned)
}

/// ioctl(INOTIFY_IOC_SETNEXTWD): the next watch gets `wd` if it is free.
pub fn inotify_set_next_wd(fd: BorrowedFd<'_>, wd: i32) -> Result<()> {
    // SAFETY: the argument is passed by value.
    unsafe { syscalls::syscall3(Sysno::ioctl, fd_arg(fd), INOTIFY_IOC_SETNEXTWD, wd as u32 as usize) }.map(drop)
}

/// inotify_add_watch(fd, path, mask): the watch descriptor.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &[u8], mask: u32) -> Result<i32> {
    let p = std::ffi::CString::new(path).map_err(|_| super::Errno::EINVAL)?;
    // SAFETY: the kernel reads the NUL-terminated path.
    unsafe { syscalls::syscall3(Sysno::inotify_add_watch, fd_arg(fd), p.as_ptr() as usize, mask as usize) }
        .map(|r| r as i32)
}

/// fanotify_init(flags, event_f_flags).
pub fn fanotify_init(flags: u32, event_f_flags: u32) -> Result<OwnedFd> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall2(Sysno::fanotify_init, flags as usize, event_f_flags as usize) }.map(owned)
}

/// fanotify_mark(fd, flags, mask, AT_FDCWD, path).
pub fn fanotify_mark(fd: BorrowedFd<'_>, flags: u32, mask: u64, path: &[u8]) -> Result<()> {
    let p = std::ffi::CString::new(path).map_err(|_| super::Errno::EINVAL)?;
    // SAFETY: the kernel reads the NUL-terminated path.
    unsafe {
        syscalls::syscall5(
            Sysno::fanotify_mark,
            fd_arg(fd),
            flags as usize,
            mask as usize,
            -100isize as usize,
            p.as_ptr() as usize,
        )
    }
    .map(drop)
}

/// open_by_handle_at(mount_fd, handle, flags): the file a handle (as
/// name_to_handle_at or fdinfo gave it) names, on the filesystem of
/// `mount_fd`. Needs CAP_DAC_READ_SEARCH.
pub fn open_by_handle_at(mount_fd: BorrowedFd<'_>, handle_type: i32, handle: &[u8], flags: u32) -> Result<OwnedFd> {
    // struct file_handle { u32 handle_bytes; int handle_type; u8 f_handle[]; }
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&handle_type.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: the kernel reads the header and handle_bytes bytes after it,
    // all in `buf`.
    unsafe { syscalls::syscall3(Sysno::open_by_handle_at, fd_arg(mount_fd), buf.as_ptr() as usize, flags as usize) }
        .map(owned)
}

/// dup3(old, new, 0) on raw numbers, for a helper child that puts
/// descriptions at given numbers of its own table (no ownership: `new` is
/// left open for the caller's exit to close).
pub fn dup3_raw(old: RawFd, new: RawFd) -> Result<()> {
    // SAFETY: no memory arguments; the caller owns both numbers' fate.
    unsafe { syscalls::syscall3(Sysno::dup3, old as usize, new as usize, 0) }.map(drop)
}

/// close_range(first, ~0, 0): closes every descriptor from `first` up, for
/// a child about to exec (raw, async-signal-safe).
pub fn close_from_raw(first: RawFd) -> Result<()> {
    // SAFETY: no memory arguments; the caller gives those numbers up.
    unsafe { syscalls::syscall3(Sysno::close_range, first as usize, u32::MAX as usize, 0) }.map(drop)
}

/// A kernel device number (`MKDEV`: major << 20 | minor, as fdinfo prints
/// `sdev`) in the encoding stat(2) gives.
pub fn kdev_to_dev(kdev: u32) -> u64 {
    let (major, minor) = ((kdev >> 20) as u64, (kdev & 0xf_ffff) as u64);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs;
    use std::os::fd::AsFd;

    #[test]
    fn kernel_dev_numbers() {
        // 254:0 (fe00000 in fdinfo) is 0xfe00 in stat; 0:16 is 0x10.
        assert_eq!(kdev_to_dev(0xfe0_0000), 0xfe00);
        assert_eq!(kdev_to_dev(0x10), 0x10);
        assert_eq!(kdev_to_dev((8 << 20) | 0x123), libc::makedev(8, 0x123));
    }

    #[test]
    fn ioctl_numbers() {
        assert_eq!(TFD_IOC_SET_TICKS, 0x4008_5400);
        assert_eq!(INOTIFY_IOC_SETNEXTWD, 0x4004_4900);
    }

    #[test]
    fn eventfd_semaphore_counts_down() {
        let e = eventfd(3, EFD_SEMAPHORE | EFD_CLOEXEC).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(fs::read(e.as_fd(), &mut b).unwrap(), 8);
        assert_eq!(u64::from_ne_bytes(b), 1);
    }

    #[test]
    fn timerfd_ticks_are_set() {
        let t = timerfd_create(1, 0o2000000).unwrap();
        let spec = Itimerspec { interval: Timespec { sec: 100, nsec: 0 }, value: Timespec { sec: 100, nsec: 0 } };
        timerfd_settime(t.as_fd(), 0, &spec).unwrap();
        timerfd_set_ticks(t.as_fd(), 5).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(fs::read(t.as_fd(), &mut b).unwrap(), 8);
        assert_eq!(u64::from_ne_bytes(b), 5);
    }

    #[test]
    fn inotify_next_wd() {
        let i = inotify_init1(0o2000000).unwrap();
        inotify_set_next_wd(i.as_fd(), 41).unwrap();
        assert_eq!(inotify_add_watch(i.as_fd(), b"/", 0x100).unwrap(), 41);
    }

    #[test]
    fn epoll_add_by_number() {
        let ep = epoll_create1(EPOLL_CLOEXEC).unwrap();
        let e = eventfd(1, EFD_CLOEXEC).unwrap();
        epoll_ctl_add(ep.as_fd(), e.as_raw_fd(), &EpollEvent { events: 1, data: 7 }).unwrap();
        let info = crate::proc::fdinfo::read(crate::sys::misc::getpid(), ep.as_raw_fd()).unwrap();
        assert_eq!(info.epoll_targets.len(), 1);
        assert_eq!(info.epoll_targets[0].data, 7);
        assert_eq!(info.epoll_targets[0].tfd, e.as_raw_fd());
    }
}

/// `struct pollfd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PollFd {
    /// The descriptor (negative: ignored).
    pub fd: i32,
    /// Events asked for.
    pub events: u16,
    /// Events returned.
    pub revents: u16,
}

/// POLLHUP.
pub const POLLHUP: u16 = 16;

/// poll(2) of several descriptors for up to `timeout_ms` (-1: no limit);
/// returns how many have events (0 when the time ran out or a signal came).
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> Result<usize> {
    // SAFETY: the kernel reads and writes `fds.len()` pollfds in `fds`.
    match unsafe { syscalls::syscall3(Sysno::poll, fds.as_mut_ptr() as usize, fds.len(), timeout_ms as usize) } {
        Ok(n) => Ok(n),
        Err(super::Errno::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}
