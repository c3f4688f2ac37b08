//! A real program from Debian's packages through the `crtools` binary:
//! Python 3's asyncio (the epoll event loop, its self-pipe socketpair and
//! signal wakeup descriptor) serving a unix socket, with an eventfd the
//! loop watches and a memfd it holds. State is put in with
//! the program's own client, the server is dumped, killed and restored,
//! and the same client finds the state and the loop's timers still going.
mod common;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");
const PYTHON: &str = "/usr/bin/python3";

const SERVER: &str = r#"
import asyncio, os, sys, mmap, time
state = {}
ticks = 0
ev = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_SEMAPHORE)
mem = os.memfd_create("pystate")
os.write(mem, b"memfd-state")

def on_ev():
    global evreads
    evreads += os.eventfd_read(ev)
evreads = 0

async def ticker():
    global ticks
    while True:
        await asyncio.sleep(0.01)
        ticks += 1

async def handle(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = line.decode().split()
        if cmd[0] == "set":
            state[cmd[1]] = cmd[2]
            out = "ok"
        elif cmd[0] == "get":
            out = state.get(cmd[1], "-")
        elif cmd[0] == "ticks":
            out = str(ticks)
        elif cmd[0] == "kick":
            os.eventfd_write(ev, 1)
            await asyncio.sleep(0.05)
            out = str(evreads)
        elif cmd[0] == "mem":
            out = os.pread(mem, 64, 0).decode()
        else:
            out = "?"
        writer.write((out + "\n").encode())
        await writer.drain()
    writer.close()

async def main():
    loop = asyncio.get_running_loop()
    loop.add_reader(ev, on_ev)
    srv = await asyncio.start_unix_server(handle, path=sys.argv[1])
    asyncio.create_task(ticker())
    open(sys.argv[2], "w").write("ready\n")
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
"#;

const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile("rw")
for cmd in sys.argv[2:]:
    f.write(cmd.replace(":", " ") + "\n")
    f.flush()
    print(f.readline().strip())
"#;

fn crtools(args: &[&str]) -> std::process::Output {
    Command::new(CRTOOLS).args(args).stdin(Stdio::null()).output().expect("run crtools")
}

fn client(dir: &Path, cmds: &[&str]) -> Vec<String> {
    let out = Command::new(PYTHON)
        .arg(dir.join("client.py"))
        .arg(dir.join("srv.sock"))
        .args(cmds)
        .stdin(Stdio::null())
        .output()
        .expect("run the client");
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn kill_reap(pid: i32) {
    // SAFETY: signalling and reaping a process this test started or restored.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

#[test]
fn python_asyncio_unix_server_keeps_its_state_and_loop() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || !Path::new(PYTHON).exists() {
        eprintln!("skipped: needs root and {PYTHON}");
        return;
    }
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir: PathBuf = std::env::temp_dir().join(format!("crtools-cli-asyncio-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("server.py"), SERVER).unwrap();
    std::fs::write(dir.join("client.py"), CLIENT).unwrap();
    let mut cmd = Command::new(PYTHON);
    cmd.arg(dir.join("server.py"))
        .arg(dir.join("srv.sock"))
        .arg(dir.join("ready"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().expect("start the server");
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("ready").exists() {
        assert!(Instant::now() < deadline, "server not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(client(&dir, &["set:k1:v1", "set:k2:v2", "kick"]), ["ok", "ok", "1"]);
    let before: u64 = client(&dir, &["ticks"])[0].parse().unwrap();
    let images = dir.join("images");
    let out = crtools(&["dump", "-D", images.to_str().unwrap(), "-t", &pid.to_string()]);
    if !out.status.success() {
        kill_reap(pid);
        panic!("dump: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = child.wait();
    let out = crtools(&["restore", "-d", "-D", images.to_str().unwrap(), "-t", &pid.to_string()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(100));
    let got = client(&dir, &["get:k1", "get:k2", "ticks", "kick", "mem"]);
    let shown = crtools(&["show", "-D", images.to_str().unwrap()]);
    kill_reap(pid);
    assert_eq!(got[0..2], ["v1", "v2"], "{got:?}");
    let after: u64 = got[2].parse().unwrap();
    assert!(after > before, "the loop's timer stopped: {before} then {after}");
    assert_eq!(got[3], "2", "the eventfd reader after restore: {got:?}");
    assert_eq!(got[4], "memfd-state", "{got:?}");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("EPOLLIN") && text.contains("pystate"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
