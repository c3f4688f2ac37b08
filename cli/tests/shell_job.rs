//! A shell job under a pty made by the test: refused without --shell-job,
//! dumped with it, and restored with -j onto another terminal, where it
//! still reads its terminal, with its termios settings and window size,
//! leading its own process group in the foreground; and script(1) with a
//! shell on a pty of its own, as a shell job.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");

struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn pty(rows: u16, cols: u16) -> Pty {
    let (mut m, mut s) = (0, 0);
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two descriptors; the winsize is read only.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty");
    // SAFETY: both descriptors are new and ours.
    unsafe {
        libc::fcntl(m, libc::F_SETFL, libc::O_NONBLOCK);
        Pty { master: OwnedFd::from_raw_fd(m), slave: OwnedFd::from_raw_fd(s) }
    }
}

/// `cmd` in a new session whose controlling terminal (and stdio) is `slave`.
fn on_terminal(cmd: &mut Command, slave: RawFd) -> &mut Command {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::ioctl(slave, libc::TIOCSCTTY, 0);
            libc::dup2(slave, 0);
            libc::dup2(slave, 1);
            libc::dup2(slave, 2);
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        })
    }
}

fn read_until(master: &OwnedFd, want: &str, timeout: Duration) -> String {
    let mut got = Vec::new();
    let t = Instant::now();
    while t.elapsed() < timeout {
        let mut buf = [0u8; 256];
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr() as *mut _, buf.len()) };
        if n > 0 {
            got.extend_from_slice(&buf[..n as usize]);
            if String::from_utf8_lossy(&got).contains(want) {
                break;
            }
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn write(master: &OwnedFd, s: &str) {
    // SAFETY: writing a local buffer.
    let n = unsafe { libc::write(master.as_raw_fd(), s.as_ptr() as *const _, s.len()) };
    assert_eq!(n, s.len() as isize);
}

fn termios_of(fd: &OwnedFd) -> libc::termios {
    // SAFETY: zeroed termios is valid; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t
}

fn winsize_of(fd: &OwnedFd) -> (u16, u16) {
    // SAFETY: zeroed winsize is valid; the ioctl fills it.
    let mut w: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut w) }, 0);
    (w.ws_row, w.ws_col)
}

#[test]
fn shell_job_moves_to_another_terminal() {
    if Command::new("python3").arg("-c").arg("pass").status().map(|s| !s.success()).unwrap_or(true) {
        eprintln!("skipped: no python3");
        return;
    }
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = std::env::temp_dir().join(format!("crtools-shelljob-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();

    // The job writes each line with one write(2): crtools, restoring it
    // on the same terminal, logs whole lines there too, and python's print
    // writes its pieces one by one.
    let first = pty(33, 111);
    let mut job = on_terminal(
        Command::new("python3").arg("-c").arg(
            "import fcntl, os, signal, struct, sys, termios\n\
             def winch(*_):\n    \
                 r, c = struct.unpack('hh', fcntl.ioctl(0, termios.TIOCGWINSZ, b'xxxx'))\n    \
                 os.write(1, f'winch {r} {c}\\n'.encode())\n\
             signal.signal(signal.SIGWINCH, winch)\n\
             os.system('stty -echo')\n\
             print('ready', flush=True)\n\
             while True:\n    \
                 l = sys.stdin.readline().strip()\n    \
                 os.write(1, f'got {l}\\n'.encode())\n",
        ),
        first.slave.as_raw_fd(),
    )
    .spawn()
    .expect("start the job");
    let pid = job.id() as i32;
    assert!(read_until(&first.master, "ready", Duration::from_secs(10)).contains("ready"));

    // Without --shell-job the terminal is refused, by name, and the job goes on.
    let out = Command::new(CRTOOLS).args(["dump", "-D", d, "-t", &pid.to_string()]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "refused, not failed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/pts/") && err.contains("--shell-job"), "{err}");
    write(&first.master, "one\n");
    assert!(read_until(&first.master, "got one", Duration::from_secs(10)).contains("got one"));

    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(CRTOOLS).args(["dump", "-j", "-D", d, "-t", &pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "dump -j: {}", String::from_utf8_lossy(&out.stderr));
    let _ = job.wait();

    // Another terminal with another size: a restore that fails leaves its
    // settings as they were; one that works applies the dumped settings,
    // keeps the terminal's size and tells the job with SIGWINCH.
    let second = pty(24, 80);
    let failed = on_terminal(
        Command::new(CRTOOLS)
            .args(["restore", "-j", "-D", d, "-t", &pid.to_string()])
            .env("CRTOOLS_FAULT", "restore-fork"),
        second.slave.as_raw_fd(),
    )
    .status()
    .expect("start crtools restore");
    assert!(!failed.success(), "the injected fault did not fail the restore");
    assert_ne!(termios_of(&second.slave).c_lflag & libc::ECHO, 0, "a failed restore left the job's settings");
    let mut restorer = on_terminal(
        Command::new(CRTOOLS).args(["restore", "-j", "-D", d, "-t", &pid.to_string()]),
        second.slave.as_raw_fd(),
    )
    .spawn()
    .expect("start crtools restore");
    let t = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() != "python3").unwrap_or(true) {
        assert!(t.elapsed() < Duration::from_secs(20), "job not restored");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Told of the new size as on a resize: its handler runs and its
    // interrupted read goes on.
    let winch = read_until(&second.master, "winch 24 80", Duration::from_secs(10));
    write(&second.master, "ping\n");
    let got = read_until(&second.master, "got ping", Duration::from_secs(10));
    let size = winsize_of(&second.master);
    let echo = termios_of(&second.slave).c_lflag & libc::ECHO;
    let sid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();

    // SAFETY: killing and reaping the restored job (ours as subreaper) and crtools.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let _ = restorer.wait();
    // SAFETY: as above.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    let _ = std::fs::remove_dir_all(&dir);

    assert!(got.contains("got ping"), "restored job did not answer on its new terminal: {got:?}");
    assert_eq!(size, (24, 80), "the terminal's own window size");
    assert!(winch.contains("winch 24 80"), "the job was not told of the new size: {winch:?}");
    // crtools wrote no informative line over the running job's screen.
    let after = winch.rsplit_once("injected fault restore-fork").map_or(winch.as_str(), |(_, a)| a);
    assert!(
        !after.contains("INFO") && !got.contains("INFO"),
        "crtools logged on the job's terminal: {after:?} {got:?}"
    );
    assert_eq!(echo, 0, "echo stays off as the job set it");
    let fields: Vec<&str> = sid.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    assert_eq!(fields.get(3).copied(), Some(restorer.id().to_string().as_str()), "job joined crtools' session: {sid}");
    // It led its group at dump: it leads it again, in the foreground.
    assert_eq!(fields.get(2).copied(), Some(pid.to_string().as_str()), "job leads its own group: {sid}");
    assert_eq!(fields.get(5).copied(), Some(pid.to_string().as_str()), "job's group is the foreground one: {sid}");
}

/// The pids of the children of `pid`.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Fields of /proc/pid/stat after the command name.
fn stat_fields(pid: i32) -> Vec<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    s.rsplit_once(')').map(|(_, r)| r.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

/// script(1) running sh on a pty of its own, as a shell job (`exec sh`:
/// script runs its command through $SHELL, and dash would fork it): the shell's
/// state (a variable, its directory), the inner pty's settings and size
/// set through the terminal, its index and the shell's session and
/// foreground group survive; the job leads its own group again and is
/// the foreground group of the terminal it is restored on. That terminal
/// is smaller than the one it was dumped on: script is told with SIGWINCH
/// and gives its inner pty the new size, as on a resize.
#[test]
fn script_with_a_shell_survives() {
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = std::env::temp_dir().join(format!("crtools-script-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();

    let first = pty(30, 100);
    let mut job =
        on_terminal(Command::new("script").args(["-q", "-c", "exec sh", "/dev/null"]), first.slave.as_raw_fd())
            .spawn()
            .expect("start script");
    let pid = job.id() as i32;
    write(&first.master, "X=42; cd /tmp; stty -echo cols 99 rows 21; echo T0=$(tty)=; echo RE\"\"ADY\n");
    let got = read_until(&first.master, "READY", Duration::from_secs(10));
    assert!(got.contains("READY"), "the shell under script did not answer: {got:?}");
    let inner = got.rsplit("T0=").next().and_then(|r| r.split('=').next()).unwrap_or("").to_string();
    assert!(inner.starts_with("/dev/pts/"), "{got:?}");
    let sh = children(pid);
    assert_eq!(sh.len(), 1, "script has one child");
    assert!(children(sh[0]).is_empty(), "the shell has no children: {:?}", children(sh[0]));

    // The terminal to restore on, made now: made after the dump, it would
    // take the index of the inner pty, which the restore needs back.
    let second = pty(24, 80);
    let out = Command::new(CRTOOLS).args(["dump", "-j", "-D", d, "-t", &pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "dump -j: {}", String::from_utf8_lossy(&out.stderr));
    let _ = job.wait();
    // SAFETY: reaping the dumped shell, which re-parented to us.
    unsafe { libc::waitpid(sh[0], std::ptr::null_mut(), 0) };

    let mut restorer = on_terminal(
        Command::new(CRTOOLS).args(["restore", "-j", "-D", d, "-t", &pid.to_string()]),
        second.slave.as_raw_fd(),
    )
    .spawn()
    .expect("start crtools restore");
    let t = Instant::now();
    while children(pid).is_empty()
        || !std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().contains("TracerPid:\t0")
    {
        if t.elapsed() > Duration::from_secs(20) {
            let said = read_until(&second.master, "\n", Duration::from_secs(1));
            let _ = restorer.kill();
            panic!("job not restored: {said:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    write(&second.master, "echo V=$X P=$PWD S=$(stty size) T=$(tty)=\n");
    let got = read_until(&second.master, "T=/dev/", Duration::from_secs(10));
    let got = got + &read_until(&second.master, "=\r\n", Duration::from_secs(2));
    let script_stat = stat_fields(pid);
    let sh_stat = stat_fields(sh[0]);

    // SAFETY: killing the restored job (ours as subreaper) and crtools, by pid.
    unsafe {
        libc::kill(sh[0], libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    let _ = restorer.wait();
    // SAFETY: reaping what is ours.
    unsafe { while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {} };
    let _ = std::fs::remove_dir_all(&dir);

    assert!(got.contains(&format!("V=42 P=/tmp S=24 80 T={inner}=")), "restored shell: {got:?}");
    // script: its own group (pgid = pid) in crtools' session, the
    // terminal's foreground group (stat fields: state ppid pgrp session tty_nr tpgid).
    assert_eq!(
        script_stat.get(2).map(String::as_str),
        Some(pid.to_string().as_str()),
        "script leads its group: {script_stat:?}"
    );
    assert_eq!(script_stat.get(3).map(String::as_str), Some(restorer.id().to_string().as_str()), "{script_stat:?}");
    assert_eq!(
        script_stat.get(5).map(String::as_str),
        Some(pid.to_string().as_str()),
        "script is the foreground group: {script_stat:?}"
    );
    // sh: leads its session on the inner pty, its foreground group.
    let sh_s = sh[0].to_string();
    assert_eq!(sh_stat.get(3), Some(&sh_s), "sh leads its session: {sh_stat:?}");
    assert_eq!(sh_stat.get(5), Some(&sh_s), "sh's group is the inner pty's foreground group: {sh_stat:?}");
}

/// sqlite3's shell holding a database open in the middle of a transaction
/// (it holds POSIX locks on the database): refused by name without
/// --file-locks; dumped with -j -l and restored on another terminal, the
/// transaction goes on and commits.
#[test]
fn sqlite3_shell_with_an_open_transaction() {
    if Command::new("sqlite3").arg("-version").stdout(Stdio::null()).status().map(|s| !s.success()).unwrap_or(true) {
        eprintln!("skipped: sqlite3 is not installed (.ci/run installs it)");
        return;
    }
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = std::env::temp_dir().join(format!("crtools-sqlite3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("img");
    let d = img.to_str().unwrap();
    let db = dir.join("t.db");

    let first = pty(30, 100);
    let mut job =
        on_terminal(Command::new("sqlite3").arg(&db), first.slave.as_raw_fd()).spawn().expect("start sqlite3");
    let pid = job.id() as i32;
    assert!(read_until(&first.master, "sqlite>", Duration::from_secs(10)).contains("sqlite>"));
    write(&first.master, "create table t(a); insert into t values(42); begin; insert into t values(43);\n");
    write(&first.master, "select 'N=' || count(*) from t;\n");
    assert!(read_until(&first.master, "N=2", Duration::from_secs(10)).contains("N=2"));

    let out = Command::new(CRTOOLS).args(["dump", "-j", "-D", d, "-t", &pid.to_string()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "refused without --file-locks: {err}");
    assert!(err.contains("t.db") && err.contains("--file-locks"), "{err}");

    let second = pty(24, 80);
    let _ = std::fs::remove_dir_all(&img);
    let out = Command::new(CRTOOLS).args(["dump", "-j", "-l", "-D", d, "-t", &pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "dump -j -l: {}", String::from_utf8_lossy(&out.stderr));
    let _ = job.wait();
    let mut restorer =
        on_terminal(Command::new(CRTOOLS).args(["restore", "-j", "-l", "-D", d]), second.slave.as_raw_fd())
            .spawn()
            .expect("start crtools restore");
    let t = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().contains("TracerPid:\t0") {
        assert!(t.elapsed() < Duration::from_secs(20), "sqlite3 not restored");
        std::thread::sleep(Duration::from_millis(20));
    }
    write(&second.master, "select 'S=' || sum(a) from t;\n");
    let got = read_until(&second.master, "S=85", Duration::from_secs(10));
    write(&second.master, "commit;\n.quit\n");
    let t = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        // SAFETY: reaping the restored sqlite3 (ours as subreaper).
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if t.elapsed() > Duration::from_secs(20) {
            // SAFETY: killing the restored job by pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = restorer.wait();
    let rows = Command::new("sqlite3").arg(&db).arg("select a from t").output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(got.contains("S=85"), "the restored shell: {got:?}");
    assert_eq!(String::from_utf8_lossy(&rows.stdout), "42\n43\n", "the transaction committed after restore");
}

/// A shell job restored in the foreground of an interactive shell (no
/// -d): Ctrl-Z stops the job, and crtools with it, so the shell gets its
/// terminal back (it hung before: crtools went on waiting, the stopped job
/// kept the terminal); fg continues both, the job in the foreground.
#[test]
fn ctrl_z_on_a_restored_job_gives_the_shell_its_terminal() {
    if Command::new("bash").arg("-c").arg("true").status().map(|s| !s.success()).unwrap_or(true) {
        eprintln!("skipped: no bash");
        return;
    }
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = std::env::temp_dir().join(format!("crtools-ctrlz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let first = pty(24, 80);
    let mut job = on_terminal(
        Command::new("sh").arg("-c").arg("stty -echo; echo ready; while read l; do echo \"got $l\"; done"),
        first.slave.as_raw_fd(),
    )
    .spawn()
    .expect("start the job");
    let pid = job.id() as i32;
    assert!(read_until(&first.master, "ready", Duration::from_secs(10)).contains("ready"));
    let out = Command::new(CRTOOLS).args(["dump", "-j", "-D", d, "-t", &pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "dump -j: {}", String::from_utf8_lossy(&out.stderr));
    let _ = job.wait();

    let second = pty(24, 80);
    let mut shell = on_terminal(
        Command::new("bash").args(["--norc", "--noprofile", "-i"]).env("PS1", "PROMPT> ").env("TERM", "dumb"),
        second.slave.as_raw_fd(),
    )
    .spawn()
    .expect("start bash");
    assert!(read_until(&second.master, "PROMPT> ", Duration::from_secs(10)).contains("PROMPT> "));
    write(&second.master, &format!("{CRTOOLS} restore -j -D {d} -t {pid}\n"));
    let t = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() != "sh").unwrap_or(true) {
        assert!(t.elapsed() < Duration::from_secs(20), "job not restored");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    write(&second.master, "ping\n");
    let ping = read_until(&second.master, "got ping", Duration::from_secs(10));
    // Ctrl-Z: the shell says the job (crtools) stopped and prompts again.
    write(&second.master, "\x1a");
    let stopped = read_until(&second.master, "PROMPT> ", Duration::from_secs(10));
    let job_state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    write(&second.master, "fg\n");
    std::thread::sleep(Duration::from_millis(300));
    write(&second.master, "pong\n");
    let pong = read_until(&second.master, "got pong", Duration::from_secs(10));

    // SAFETY: killing the restored job and the shell we started, by pid.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    // crtools ends with its job: the shell prompts again.
    let ended = read_until(&second.master, "PROMPT> ", Duration::from_secs(10));
    // SAFETY: as above.
    unsafe {
        libc::kill(shell.id() as i32, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
    }
    let _ = shell.wait();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(ping.contains("got ping"), "the restored job did not answer: {ping:?}");
    assert!(
        stopped.contains("Stopped") && stopped.contains("PROMPT> "),
        "the shell did not get its terminal back: {stopped:?}"
    );
    let state = job_state.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next());
    assert_eq!(state, Some('T'), "the job is not stopped: {job_state}");
    assert!(pong.contains("got pong"), "fg did not continue the job in the foreground: {pong:?}");
    assert!(ended.contains("PROMPT> "), "crtools did not end with its job: {ended:?}");
}
