//! Hostile and damaged image directories: a restore refuses symlinks in
//! the directory and images claiming capabilities crtools does not hold;
//! a dump creates its directory 0700 and its files 0600 and refuses a
//! directory that holds another dump, leaving that dump as it was.
mod common;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");

fn root() -> bool {
    // SAFETY: getuid has no arguments.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: needs root");
        return false;
    }
    true
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("crtools-hostile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Starts `sleep` in its own session and dumps it into `dir` (killed).
fn dumped_sleep(dir: &Path) -> i32 {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut cmd = Command::new("sleep");
    cmd.arg("1000").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(50));
    let out =
        Command::new(CRTOOLS).args(["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "dump: {}", stderr(&out));
    let _ = child.wait();
    pid
}

fn restore(dir: &Path, pid: i32) -> Output {
    Command::new(CRTOOLS).args(["restore", "-d", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]).output().unwrap()
}

fn kill_restored(pid: i32) {
    // SAFETY: killing and reaping the task we restored (we are its subreaper).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

fn assert_free(pid: i32) {
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        // SAFETY: reaping a leftover of ours, by pid.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert!(t.elapsed() < Duration::from_secs(5), "pid {pid} is still in use");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn dump_directory_is_0700_and_images_0600() {
    if !root() {
        return;
    }
    let base = scratch("perm");
    let dir = base.join("new/nested");
    let _pid = dumped_sleep(&dir);
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "{:?} is {m:o}", e.file_name());
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_dump_into_a_directory_holding_a_dump_is_refused_and_leaves_it_intact() {
    if !root() {
        return;
    }
    let base = scratch("twice");
    let dir = base.join("img");
    let first = dumped_sleep(&dir);
    let before: Vec<(String, Vec<u8>)> = {
        let mut v: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    // A second dump of another task into the same directory.
    let mut cmd = Command::new("sleep");
    cmd.arg("1000").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut other = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let out = Command::new(CRTOOLS)
        .args(["dump", "-D", dir.to_str().unwrap(), "-t", &other.id().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("already holds a dump"), "{}", stderr(&out));
    // The other task was not touched and still runs.
    let st = std::fs::read_to_string(format!("/proc/{}/status", other.id())).unwrap();
    assert!(st.contains("TracerPid:\t0"), "{st}");
    let _ = other.kill();
    let _ = other.wait();
    let mut after: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    after.sort();
    assert!(before == after, "the first dump changed");
    // And it still restores.
    let out = restore(&dir, first);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    kill_restored(first);
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn symlinks_in_the_image_directory_are_refused() {
    if !root() {
        return;
    }
    let base = scratch("symlink");
    let dir = base.join("img");
    let pid = dumped_sleep(&dir);
    let outside = base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    for name in [format!("core-{pid}.img"), "pstree.img".to_string(), "inventory.img".to_string()] {
        let img = dir.join(&name);
        let copy = outside.join(&name);
        std::fs::rename(&img, &copy).unwrap();
        std::os::unix::fs::symlink(&copy, &img).unwrap();
        let out = restore(&dir, pid);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(e.contains(&name) && (e.contains("symbolic link") || e.contains("symlink")), "{name}: {e}");
        assert_free(pid);
        std::fs::remove_file(&img).unwrap();
        std::fs::rename(&copy, &img).unwrap();
    }
    // `show` refuses them too.
    let img = dir.join("pstree.img");
    std::fs::rename(&img, outside.join("p")).unwrap();
    std::os::unix::fs::symlink(outside.join("p"), &img).unwrap();
    let out = Command::new(CRTOOLS).args(["show", "-D", dir.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success(), "show followed a symlink");
    let _ = std::fs::remove_dir_all(&base);
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_SYS_MODULE: u32 = 16;

#[test]
fn a_restore_never_grants_capabilities_its_caller_lacks() {
    if !root() {
        return;
    }
    let base = scratch("caps");
    let dir = base.join("img");
    // sleep runs as root with every capability.
    let pid = dumped_sleep(&dir);
    let mut cmd = Command::new(CRTOOLS);
    cmd.args(["restore", "-d", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    // SAFETY: capget/capset on the child itself between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Root gets its bounding set back as permitted at exec: drop it there too.
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_MODULE as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut h = CapHeader { version: 0x2008_0522, pid: 0 };
            let mut d = [CapData::default(); 2];
            if libc::syscall(libc::SYS_capget, &mut h as *mut CapHeader, d.as_mut_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let bit = 1u32 << CAP_SYS_MODULE;
            d[0].effective &= !bit;
            d[0].permitted &= !bit;
            d[0].inheritable &= !bit;
            if libc::syscall(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("capabilities"), "{}", stderr(&out));
    assert_free(pid);
    // With every capability it restores.
    let out = restore(&dir, pid);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    kill_restored(pid);
    let _ = std::fs::remove_dir_all(&base);
}
