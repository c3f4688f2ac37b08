//! Probes of what event descriptors need: TFD_IOC_SET_TICKS and
//! INOTIFY_IOC_SETNEXTWD (CONFIG_CHECKPOINT_RESTORE), kcmp KCMP_EPOLL_TFD
//! and pidfd_getfd.
use super::util::errno_why;
use crate::sys::event::{self, EpollEvent, Itimerspec};
use crate::sys::misc::{self, KcmpEpollSlot, KcmpOrder, Timespec};
use crate::sys::{fs, pidfd, Errno};
use std::os::fd::{AsFd, AsRawFd};

const CR: &[(Errno, &str)] = &[(Errno::ENOTTY, "kernel without CONFIG_CHECKPOINT_RESTORE")];

/// Unread timer ticks set back, a chosen inotify watch number, an epoll
/// watch matched to its file, a descriptor duplicated from a task.
pub fn probe_event_fds() -> Result<String, String> {
    let t =
        event::timerfd_create(1, fs::OpenFlags::O_CLOEXEC.bits()).map_err(|e| errno_why("timerfd_create", e, &[]))?;
    let hour = Timespec { sec: 3600, nsec: 0 };
    event::timerfd_settime(t.as_fd(), 0, &Itimerspec { interval: hour, value: hour })
        .map_err(|e| errno_why("timerfd_settime", e, &[]))?;
    event::timerfd_set_ticks(t.as_fd(), 3).map_err(|e| errno_why("TFD_IOC_SET_TICKS", e, CR))?;
    let mut b = [0u8; 8];
    fs::read(t.as_fd(), &mut b).map_err(|e| errno_why("read a timerfd", e, &[]))?;
    if u64::from_ne_bytes(b) != 3 {
        return Err(format!("TFD_IOC_SET_TICKS 3, read {}", u64::from_ne_bytes(b)));
    }
    let i = event::inotify_init1(fs::OpenFlags::O_CLOEXEC.bits()).map_err(|e| errno_why("inotify_init1", e, &[]))?;
    event::inotify_set_next_wd(i.as_fd(), 7).map_err(|e| errno_why("INOTIFY_IOC_SETNEXTWD", e, CR))?;
    let wd = event::inotify_add_watch(i.as_fd(), b"/", 0x100).map_err(|e| errno_why("inotify_add_watch", e, &[]))?;
    if wd != 7 {
        return Err(format!("INOTIFY_IOC_SETNEXTWD 7, got watch {wd}"));
    }
    let ep = event::epoll_create1(event::EPOLL_CLOEXEC).map_err(|e| errno_why("epoll_create1", e, &[]))?;
    event::epoll_ctl_add(ep.as_fd(), t.as_raw_fd(), &EpollEvent { events: 1, data: 0 })
        .map_err(|e| errno_why("epoll_ctl", e, &[]))?;
    let me = misc::getpid();
    let slot = KcmpEpollSlot { efd: ep.as_raw_fd() as u32, tfd: t.as_raw_fd() as u32, toff: 0 };
    let same =
        misc::kcmp_epoll_tfd(me, t.as_raw_fd(), me, &slot).map_err(|e| errno_why("kcmp KCMP_EPOLL_TFD", e, &[]))?;
    if same != KcmpOrder::Equal {
        return Err(format!("KCMP_EPOLL_TFD of a watched file says {same:?}"));
    }
    let p = pidfd::pidfd_open(me, pidfd::PidfdFlags::empty()).map_err(|e| errno_why("pidfd_open", e, &[]))?;
    pidfd::pidfd_getfd(p.as_fd(), t.as_raw_fd()).map_err(|e| errno_why("pidfd_getfd", e, &[]))?;
    Ok("TFD_IOC_SET_TICKS, INOTIFY_IOC_SETNEXTWD, KCMP_EPOLL_TFD, pidfd_getfd".to_string())
}
