//! timerfd (see timerfd_create(2)): clock, absolute or relative, interval,
//! time left, TFD_TIMER_CANCEL_ON_SET and the expirations not read yet,
//! from fdinfo (`clockid`, `ticks`, `settime flags`) and timerfd_gettime
//! on the engine's copy of the description (pidfd_getfd): a periodic timer
//! that expired counts its later expirations only when read or queried,
//! and timerfd_gettime does that counting (as a read does before consuming
//! them) without consuming anything, so the target reads the same count
//! and sees the same schedule whether the dump succeeds or not.
//!
//! Restore creates the timer in the engine and arms it only once the whole
//! tree exists (deferred), so a relative timer loses no time to the
//! restore itself: it has the time left it had at dump (the clock is
//! stopped while the tree is down). An absolute timer keeps its absolute
//! expiration (`now at dump + time left`): a periodic one that expired
//! while the tree was down counts those expirations, as the kernel would
//! have. The unread expirations are put back with TFD_IOC_SET_TICKS after
//! arming (arming clears them), which also wakes up pollers.
//!
//! Not visible to crtools: whether a TFD_TIMER_CANCEL_ON_SET timer was
//! already cancelled by a clock change that nobody read yet (its read
//! would fail with ECANCELED); such a timer comes back not cancelled.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Error, Result};
use crate::image::events::{clock_name, TimerfdEntry};
use crate::image::files::OpenFlags;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::event::{self, Itimerspec};
use crate::sys::misc::{clock_gettime, ClockId, Timespec};
use crate::sys::{fs, Pid};
use std::os::fd::AsFd;

const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;
const CLOCK_BOOTTIME: i32 = 7;
const CLOCK_REALTIME_ALARM: i32 = 8;
const CLOCK_BOOTTIME_ALARM: i32 = 9;

/// Dumps one timerfd.
pub fn dump(
    _cx: &FdCtx,
    pid: Pid,
    fd: i32,
    _target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    if info.timerfd.is_none() {
        return Err(Error::task(pid, format!("fd {fd}: timerfd without its fdinfo lines")));
    }
    // A periodic timer that expired counts its further expirations only
    // when read or queried: fdinfo alone says one tick and no time left.
    // timerfd_gettime on the same description does that counting (what a
    // read does before it consumes them) and gives the exact time left.
    let copy = super::files::take_fd(pid, fd)?;
    let cur =
        event::timerfd_gettime(copy.as_fd()).map_err(|e| Error::task(pid, format!("fd {fd}: timerfd_gettime: {e}")))?;
    let info = crate::proc::fdinfo::read(pid, fd).map_err(|e| Error::task(pid, format!("fd {fd}: {e}")))?;
    let t = info.timerfd.ok_or_else(|| Error::task(pid, format!("fd {fd}: timerfd without its fdinfo lines")))?;
    if !matches!(
        t.clockid,
        CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME | CLOCK_REALTIME_ALARM | CLOCK_BOOTTIME_ALARM
    ) {
        return Err(Error::refuse(pid, format!("fd {fd}: timerfd on clock {} is not supported", t.clockid)));
    }
    let known = event::TFD_TIMER_ABSTIME | event::TFD_TIMER_CANCEL_ON_SET;
    if t.settime_flags & !known != 0 {
        return Err(Error::refuse(pid, format!("fd {fd}: timerfd with unknown settime flags {:#o}", t.settime_flags)));
    }
    // The alarm clocks read like their base clocks.
    let base = match t.clockid {
        CLOCK_REALTIME_ALARM => CLOCK_REALTIME,
        CLOCK_BOOTTIME_ALARM => CLOCK_BOOTTIME,
        c => c,
    };
    let now = clock_gettime(ClockId(base as u32))
        .map_err(|e| Error::task(pid, format!("fd {fd}: read {}: {e}", clock_name(base))))?;
    let mut value = (cur.value.sec, cur.value.nsec);
    let interval = (cur.interval.sec, cur.interval.nsec);
    // A periodic timer is always armed; fdinfo rounds a due expiration
    // that the timer has not handled yet down to zero.
    if value == (0, 0) && interval != (0, 0) {
        value = (0, 1);
    }
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    log::debug!(task = pid.0; "task {pid}: fd {fd}: timerfd {} ticks={} value={value:?} interval={interval:?}", clock_name(t.clockid), t.ticks);
    out.ev.timerfd.push(TimerfdEntry {
        id,
        flags,
        clockid: t.clockid,
        settime_flags: t.settime_flags,
        ticks: t.ticks,
        value,
        interval,
        now: (now.sec, now.nsec),
    });
    Ok(())
}

fn add(a: (i64, i64), b: (i64, i64)) -> Timespec {
    let mut ns = a.1 + b.1;
    let mut s = a.0 + b.0;
    if ns >= 1_000_000_000 {
        ns -= 1_000_000_000;
        s += 1;
    }
    Timespec { sec: s, nsec: ns }
}

/// The settime flags and itimerspec that rearm `t` now.
fn arm_spec(t: &TimerfdEntry) -> (u32, Itimerspec) {
    let interval = Timespec { sec: t.interval.0, nsec: t.interval.1 };
    if t.value == (0, 0) {
        return (0, Itimerspec::default());
    }
    if t.settime_flags & event::TFD_TIMER_ABSTIME != 0 {
        (t.settime_flags, Itimerspec { interval, value: add(t.now, t.value) })
    } else {
        (t.settime_flags, Itimerspec { interval, value: Timespec { sec: t.value.0, nsec: t.value.1 } })
    }
}

/// Creates every timerfd of the images; arms them once the tree exists.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for t in &images.ev.timerfd {
        let what = format!("timerfd (file {}, {})", t.id, clock_name(t.clockid));
        let fd = event::timerfd_create(t.clockid, fs::OpenFlags::O_CLOEXEC.bits())
            .map_err(|e| Error::new(format!("{what}: timerfd_create: {e}")))?;
        fs::fcntl_setfl(fd.as_fd(), fs::OpenFlags::from_bits_retain(t.flags.bits()))
            .map_err(|e| Error::new(format!("{what}: set its flags: {e}")))?;
        let copy = fd.try_clone().map_err(|e| Error::new(format!("{what}: dup: {e}")))?;
        out.add(t.id, fd);
        let t = t.clone();
        out.defer(Box::new(move |_| {
            let (flags, spec) = arm_spec(&t);
            if spec.value != Timespec::default() {
                event::timerfd_settime(copy.as_fd(), flags, &spec)
                    .map_err(|e| Error::new(format!("{what}: timerfd_settime: {e}")))?;
            }
            if t.ticks != 0 {
                event::timerfd_set_ticks(copy.as_fd(), t.ticks)
                    .map_err(|e| Error::new(format!("{what}: TFD_IOC_SET_TICKS: {e}")))?;
            }
            Ok(())
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_timers_keep_their_expiration() {
        let t = TimerfdEntry {
            settime_flags: event::TFD_TIMER_ABSTIME | event::TFD_TIMER_CANCEL_ON_SET,
            value: (2, 600_000_000),
            interval: (1, 0),
            now: (100, 500_000_000),
            ..Default::default()
        };
        let (f, s) = arm_spec(&t);
        assert_eq!(f, 3);
        assert_eq!(s.value, Timespec { sec: 103, nsec: 100_000_000 });
        assert_eq!(s.interval, Timespec { sec: 1, nsec: 0 });
        let rel = TimerfdEntry { value: (2, 5), now: (100, 0), ..Default::default() };
        assert_eq!(
            arm_spec(&rel),
            (0, Itimerspec { interval: Timespec::default(), value: Timespec { sec: 2, nsec: 5 } })
        );
        assert_eq!(arm_spec(&TimerfdEntry::default()).1, Itimerspec::default());
    }
}
