//! Parasite injection on real victims: after curing, maps, registers and the
//! signal mask are exactly as before and the victim keeps working.
use crtools_tests::{maps, Victim};
use engine::infect::{Parasite, Tracee};
use engine::sys::Pid;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

#[test]
fn infect_and_cure_leaves_no_trace() {
    let mut v = Victim::start(VICTIM, &["counter"]);
    let handler = u64::from_str_radix(v.ready[1].trim_start_matches("0x"), 16).unwrap();
    let altstack = u64::from_str_radix(v.ready[2].trim_start_matches("0x"), 16).unwrap();
    let pid = Pid(v.pid());
    std::thread::sleep(std::time::Duration::from_millis(50));

    let mut t = Tracee::seize(pid).expect("seize");
    let maps_before = maps(pid.0);
    let regs_before = t.regs().unwrap();
    let mask_before = t.sigmask().unwrap();
    assert_ne!(mask_before & (1 << (libc::SIGUSR2 - 1)), 0, "victim blocks SIGUSR2");

    {
        let mut p = Parasite::infect(&mut t).expect("infect");
        assert!(maps(pid.0).contains(&format!("{:x}-", p.base())), "parasite region is mapped");

        let ids = p.get_pid().unwrap();
        assert_eq!(ids.pid, pid.0);
        assert_eq!(ids.tid, pid.0);

        let acts = p.sigactions().unwrap();
        let usr1 = acts.actions[libc::SIGUSR1 as usize - 1];
        assert_eq!(usr1.handler, handler);
        assert_ne!(usr1.flags & libc::SA_SIGINFO as u64, 0);
        assert_ne!(usr1.flags & libc::SA_RESTART as u64, 0);
        assert_eq!(usr1.mask, 1 << (libc::SIGUSR2 - 1));
        assert_eq!(acts.valid & (1 << 8), 0, "SIGKILL has no readable action");
        assert_eq!(acts.actions[libc::SIGTERM as usize - 1].handler, 0, "SIGTERM is SIG_DFL");

        let ss = p.sigaltstack().unwrap();
        assert_eq!(ss.sp, altstack);
        assert_eq!(ss.size, 64 * 1024);

        let it = p.itimers().unwrap();
        let real = it.timers[0];
        assert_eq!(real.interval_sec, 500);
        assert!(real.value_sec > 990 && real.value_sec <= 1000, "ITIMER_REAL left: {real:?}");
        assert_eq!(it.timers[1], Default::default());

        let misc = p.misc().unwrap();
        assert_eq!(misc.dumpable, 1);
        assert_eq!(misc.no_new_privs, 0);
        assert!(misc.brk > 0, "{misc:?}");
        assert_eq!(p.posix_timers(&[]).unwrap().len(), 0);
        assert!(p.posix_timers(&[12345]).is_err(), "no such timer");

        // fd 100 is the victim's own executable, opened before "ready".
        let fds = p.receive_fds(&[100, 1]).expect("receive fds");
        assert_eq!(fds.len(), 2);
        let ctl = p.control_fd().expect("control socket open");
        assert!(std::fs::read_link(format!("/proc/{}/fd/{ctl}", pid.0))
            .unwrap()
            .to_string_lossy()
            .starts_with("socket:"));
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::metadata(format!("/proc/self/fd/{}", fds[0].as_raw_fd())).unwrap();
        let theirs = std::fs::metadata(format!("/proc/{}/fd/100", pid.0)).unwrap();
        assert_eq!((ours.dev(), ours.ino()), (theirs.dev(), theirs.ino()));
        drop(fds);

        p.cure().expect("cure");
        assert!(std::fs::read_link(format!("/proc/{}/fd/{ctl}", pid.0)).is_err(), "control socket closed");
    }

    assert_eq!(maps(pid.0), maps_before, "maps identical after cure");
    assert_eq!(t.regs().unwrap(), regs_before, "registers identical after cure");
    assert_eq!(t.sigmask().unwrap(), mask_before, "signal mask identical after cure");
    t.detach().unwrap();

    // The victim keeps counting and its memory is intact.
    v.send("status");
    let first = v.line();
    assert!(first.ends_with("sum=ok"), "{first}");
    std::thread::sleep(std::time::Duration::from_millis(50));
    v.send("status");
    let second = v.line();
    let n = |s: &str| s.split(['=', ' ']).nth(1).unwrap().parse::<u64>().unwrap();
    assert!(n(&second) > n(&first), "{first} -> {second}");
}

#[test]
fn victim_in_nanosleep_resumes_its_sleep() {
    let mut v = Victim::start(VICTIM, &["sleeper", "1500"]);
    let pid = Pid(v.pid());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut t = Tracee::seize(pid).expect("seize");
    let regs = t.regs().unwrap();
    assert_eq!(regs.orig_rax, libc::SYS_clock_nanosleep as u64, "victim sleeps in clock_nanosleep");
    {
        let mut p = Parasite::infect(&mut t).expect("infect");
        assert_eq!(p.get_pid().unwrap().pid, pid.0);
        p.cure().unwrap();
    }
    assert_eq!(t.regs().unwrap(), regs);
    t.detach().unwrap();
    let line = v.line();
    let ms: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(line.ends_with("r=0"), "sleep not cut short: {line}");
    assert!((1500..3000).contains(&ms), "slept the whole time once: {line}");
}

#[test]
fn victim_blocked_in_read_resumes_the_read() {
    let mut v = Victim::start(VICTIM, &["reader"]);
    let pid = Pid(v.pid());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut t = Tracee::seize(pid).expect("seize");
    let regs = t.regs().unwrap();
    assert_eq!(regs.orig_rax, libc::SYS_read as u64, "victim blocked in read");
    {
        let mut p = Parasite::infect(&mut t).expect("infect");
        let _ = p.sigactions().unwrap();
        p.cure().unwrap();
    }
    t.detach().unwrap();
    v.send("ping");
    assert_eq!(v.line(), "got ping");
}

#[test]
fn seize_of_missing_pid_is_a_clear_error() {
    let e = Tracee::seize(Pid(i32::MAX - 1)).err().expect("must fail");
    assert!(e.to_string().contains("PTRACE_SEIZE"), "{e}");
}

/// A SIGSTOP sent while the victim is infected reaches it when released:
/// the parasite's resume takes it off the queue (it cannot be blocked) and
/// the release sends it again.
#[test]
fn sigstop_sent_while_infected_stops_the_victim_once_released() {
    let mut v = Victim::start(VICTIM, &["reader"]);
    let pid = Pid(v.pid());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut t = Tracee::seize(pid).expect("seize");
    {
        let mut p = Parasite::infect(&mut t).expect("infect");
        // SAFETY: kill by pid of our own victim.
        unsafe { libc::kill(pid.0, libc::SIGSTOP) };
        assert_eq!(p.get_pid().unwrap().pid, pid.0);
        p.cure().unwrap();
    }
    assert!(t.stop_deferred(), "the parasite met the SIGSTOP");
    t.detach().unwrap();
    let state = |pid: i32| {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        s.rsplit_once(')').unwrap().1.trim_start().chars().next().unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state(pid.0) != 'T' {
        assert!(std::time::Instant::now() < deadline, "victim never stopped: {}", state(pid.0));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid.0, libc::SIGCONT) };
    v.send("ping");
    assert_eq!(v.line(), "got ping");
}
