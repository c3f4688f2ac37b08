//! Real network programs through the `crtools` binary: Python's
//! http.server (a listening socket) answers before and after dump and
//! restore; a socat echo server keeps an established connection with
//! `--tcp-established`, and is refused without it.
mod common;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");

fn crtools(args: &[&str]) -> std::process::Output {
    Command::new(CRTOOLS).args(args).stdin(Stdio::null()).output().expect("run crtools")
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("crtools-cli-inet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let r = unsafe { libc::geteuid() } == 0;
    if !r {
        eprintln!("skipped: needs root");
    }
    r
}

fn subreaper() {
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

fn kill_reap(pid: i32) {
    // SAFETY: signalling and reaping a process this test started or restored.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `cmd` detached (own session, stdio on /dev/null).
fn start(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(cmd);
    cmd.spawn().expect("start the program")
}

fn connect(port: u16) -> TcpStream {
    let t = Instant::now();
    loop {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            return c;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut c = connect(port);
    write!(c, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

fn wait_gone(pid: i32) {
    let t = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "{pid} still exists");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn python_http_server_answers_after_restore() {
    if !root() || Command::new("python3").arg("-c").arg("pass").status().map(|s| !s.success()).unwrap_or(true) {
        eprintln!("skipped: no python3");
        return;
    }
    subreaper();
    let dir = tmpdir("http");
    let www = dir.with_extension("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello from before the dump\n").unwrap();
    let port = free_port();
    let mut py = start(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(&www),
    );
    let pid = py.id() as i32;
    let before = http_get(port, "/hello.txt");
    assert!(before.starts_with("HTTP/1.0 200") && before.contains("hello from before"), "{before}");
    // Let the request's thread end.
    std::thread::sleep(Duration::from_millis(300));
    let out = crtools(&["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    if !out.status.success() {
        kill_reap(pid);
        panic!("dump: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = py.wait();
    wait_gone(pid);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the server's port is still open after the dump");
    std::fs::write(www.join("hello.txt"), "hello from after the restore\n").unwrap();
    let out = crtools(&["restore", "-d", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    ok(&out, "restore");
    let after = http_get(port, "/hello.txt");
    let again = http_get(port, "/missing");
    kill_reap(pid);
    assert!(after.starts_with("HTTP/1.0 200") && after.contains("hello from after"), "{after}");
    assert!(again.starts_with("HTTP/1.0 404"), "{again}");
    let shown = crtools(&["show", "-D", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("LISTEN") && text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&www);
}

#[test]
fn socat_echo_keeps_its_connection_with_tcp_established() {
    if !root() || Command::new("socat").arg("-V").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("skipped: no socat");
        return;
    }
    subreaper();
    let dir = tmpdir("socat");
    let port = free_port();
    let mut socat = start(Command::new("socat").arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr")).arg("PIPE"));
    let pid = socat.id() as i32;
    let mut c = connect(port);
    c.write_all(b"one\n").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"one\n");
    // Without the option: refused by name, socat keeps running.
    let out = crtools(&["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "refused, not failed: {err}");
    assert!(err.contains("established TCP connection 127.0.0.1:") && err.contains("--tcp-established"), "{err}");
    c.write_all(b"two\n").unwrap();
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"two\n");
    // Bytes in flight at dump: sent, not echoed yet (socat is frozen).
    let _ = std::fs::remove_dir_all(&dir);
    let out = crtools(&["dump", "--tcp-established", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    if !out.status.success() {
        kill_reap(pid);
        panic!("dump: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = socat.wait();
    wait_gone(pid);
    c.write_all(b"thr\n").unwrap();
    let out = crtools(&["restore", "--tcp-established", "-d", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    if !out.status.success() {
        kill_reap(pid);
        panic!("restore: {}", String::from_utf8_lossy(&out.stderr));
    }
    let r = c.read_exact(&mut b).map(|_| b);
    c.write_all(b"fou\n").unwrap();
    let mut b2 = [0u8; 4];
    let r2 = c.read_exact(&mut b2).map(|_| b2);
    kill_reap(pid);
    assert_eq!(&r.unwrap(), b"thr\n");
    assert_eq!(&r2.unwrap(), b"fou\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCP_MD5SIG key on a socket inet_diag does not list (not bound yet):
/// the key cannot be read back, and the option memory it holds gives it
/// away.
#[test]
fn md5_key_on_an_unlisted_socket_is_refused() {
    refused_and_left_running(
        "md5",
        "s = socket.socket()\n\
         a = struct.pack('HH4s', socket.AF_INET, 0, socket.inet_aton('127.0.0.5')) + bytes(120)\n\
         s.setsockopt(socket.IPPROTO_TCP, 14, a + struct.pack('BBHi', 0, 0, 6, 0) + b'secret' + bytes(74))\n",
        "option memory",
    );
}

/// A TCP connection reset by its peer and still held (state CLOSE, its
/// error not read yet): refused by name (reading SO_ERROR would take the
/// error from the task), not dumped as a fresh socket.
#[test]
fn ended_connection_with_its_error_unread_is_refused() {
    refused_and_left_running(
        "closed",
        "l = socket.socket()\n\
         l.bind(('127.0.0.1', 0))\n\
         l.listen()\n\
         c = socket.create_connection(l.getsockname())\n\
         a, _ = l.accept()\n\
         a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
         a.close()\n\
         while c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != 7: time.sleep(0.01)\n",
        "(ended: CLOSE): holds an error the task has not read yet",
    );
}

/// python3 running `setup` (with socket and struct imported), then
/// sleeping: the dump is refused (exit status 3) with a message containing
/// `expect`, the program runs on, and no inventory is left.
fn refused_and_left_running(name: &str, setup: &str, expect: &str) {
    if !root() || Command::new("python3").arg("-c").arg("pass").status().map(|s| !s.success()).unwrap_or(true) {
        eprintln!("skipped: no python3");
        return;
    }
    subreaper();
    let dir = tmpdir(name);
    let ready = dir.with_extension("ready");
    let _ = std::fs::remove_file(&ready);
    let script = format!("import socket, struct, sys, time\n{setup}open(sys.argv[1], 'w').close()\ntime.sleep(600)\n");
    let mut py = start(Command::new("python3").arg("-c").arg(script).arg(&ready));
    let pid = py.id() as i32;
    let t = Instant::now();
    while !ready.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20) && py.try_wait().ok().flatten().is_none(),
            "python did not set up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = crtools(&["dump", "-D", dir.to_str().unwrap(), "-t", &pid.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = py.try_wait().map(|s| s.is_none()).unwrap_or(false);
    kill_reap(pid);
    let _ = std::fs::remove_file(&ready);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(expect), "{err}");
    assert!(running, "the program did not survive the refused dump");
    let st = state.rsplit(')').next().unwrap_or("").split_whitespace().next().unwrap_or("");
    assert!(st == "S" || st == "R", "the program was left in state {st}");
    assert!(!dir.join("inventory.img").exists(), "a refused dump left an inventory");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A python3 victim holding both ends of a loopback TCP connection and
/// its listener. On SIGUSR1 it writes, for each end, the TCP state,
/// what recv(MSG_DONTWAIT) gives, whether poll says POLLHUP and what send
/// gives, then whether the listener still accepts.
const TCP_CLOSE_VICTIM: &str = r#"
import socket, select, signal, sys, time, errno, struct
signal.signal(signal.SIGPIPE, signal.SIG_IGN)
out = sys.argv[1]
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4)
port = l.getsockname()[1]
c = socket.create_connection(("127.0.0.1", port))
a, _ = l.accept()
c.sendall(b"in flight")
def state(s):
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
def end(s):
    try:
        r = repr(s.recv(16, socket.MSG_DONTWAIT))
    except OSError as e:
        r = errno.errorcode[e.errno]
    p = select.poll(); p.register(s, select.POLLHUP)
    hup = any(ev & select.POLLHUP for _, ev in p.poll(0))
    try:
        s.send(b"x", socket.MSG_DONTWAIT); w = "sent"
    except OSError as e:
        w = errno.errorcode[e.errno]
    return "state=%d recv=%s hup=%s send=%s" % (state(s), r, hup, w)
def check(sig, frm):
    lines = [end(c), end(a)]
    n = socket.create_connection(("127.0.0.1", port)); m, _ = l.accept()
    n.sendall(b"new"); lines.append("listener=" + repr(m.recv(3)))
    open(out + ".tmp", "w").write("\n".join(lines) + "\n")
    import os; os.rename(out + ".tmp", out)
signal.signal(signal.SIGUSR1, check)
print("ready", flush=True)
while True: time.sleep(0.05)
"#;

/// `--tcp-close`, at dump (connections not checkpointed) or at restore
/// (connections in the images come back closed): both ends are closed
/// sockets (TCP_CLOSE, recv gives b'', POLLHUP, send EPIPE), the data in
/// flight is gone, and the listener works on.
fn tcp_close_round(tag: &str, dump_opt: &str, restore_opt: Option<&str>) -> String {
    subreaper();
    let dir = tmpdir(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(TCP_CLOSE_VICTIM).arg(&out).stdin(Stdio::null()).stdout(Stdio::piped());
    cmd.stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().expect("start python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let img = dir.join("img");
    let img_s = img.to_str().unwrap();
    ok(&crtools(&["dump", "-t", &pid.to_string(), "-D", img_s, dump_opt]), "dump");
    let _ = child.wait();
    wait_gone(pid);
    let mut args = vec!["restore", "-d", "-D", img_s];
    args.extend(restore_opt);
    ok(&crtools(&args), "restore");
    // SAFETY: signalling the process this test restored.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let t = Instant::now();
    while !out.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = std::fs::read_to_string(&out).unwrap_or_default();
    kill_reap(pid);
    let _ = std::fs::remove_dir_all(&dir);
    got
}

const CLOSED_BOTH_ENDS: &str = "state=7 recv=b'' hup=True send=EPIPE\n\
                                state=7 recv=b'' hup=True send=EPIPE\n\
                                listener=b'new'\n";

#[test]
fn tcp_close_at_restore_gives_closed_connections() {
    if !root() {
        return;
    }
    assert_eq!(tcp_close_round("tcpclose-r", "--tcp-established", Some("--tcp-close")), CLOSED_BOTH_ENDS);
}

#[test]
fn tcp_close_at_dump_needs_no_tcp_established() {
    if !root() {
        return;
    }
    assert_eq!(tcp_close_round("tcpclose-d", "--tcp-close", None), CLOSED_BOTH_ENDS);
}

/// A connection waiting in the accept queue of the victim's listener is
/// refused by name without `--skip-in-flight`, and left out with it: the
/// restored listener accepts new connections (zdtm
/// socket-tcp-skip-in-flight).
#[test]
fn in_flight_connections_are_skipped_with_skip_in_flight() {
    if !root() {
        return;
    }
    subreaper();
    let dir = tmpdir("inflight");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let script = r#"
import socket, signal, sys, time, os
out = sys.argv[1]
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4); l.setblocking(False)
port = l.getsockname()[1]
c = socket.create_connection(("127.0.0.1", port))
def check(sig, frm):
    c.close()
    n = socket.create_connection(("127.0.0.1", port))
    n.sendall(b"new")
    l.setblocking(True)
    got = []
    for _ in range(2):
        m, _ = l.accept()
        m.settimeout(1)
        try: got.append(m.recv(3))
        except OSError: got.append(b"?")
        if got[-1] == b"new": break
    open(out + ".tmp", "w").write(repr(got[-1]) + "\n"); os.rename(out + ".tmp", out)
signal.signal(signal.SIGUSR1, check)
print("ready", flush=True)
while True: time.sleep(0.05)
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).arg(&out).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    common::detached(&mut cmd);
    let mut child = cmd.spawn().expect("start python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let img = dir.join("img");
    let img_s = img.to_str().unwrap();
    let refused = crtools(&["dump", "-t", &pid.to_string(), "-D", img_s, "--tcp-established"]);
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(refused.status.code(), Some(3), "{err}");
    assert!(err.contains("accept queue") && err.contains("--skip-in-flight"), "{err}");
    let o = crtools(&["dump", "-t", &pid.to_string(), "-D", img_s, "--tcp-established", "--skip-in-flight"]);
    ok(&o, "dump");
    let _ = child.wait();
    wait_gone(pid);
    ok(&crtools(&["restore", "-d", "-D", img_s, "--tcp-established"]), "restore");
    // SAFETY: signalling the process this test restored.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let t = Instant::now();
    while !out.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = std::fs::read_to_string(&out).unwrap_or_default();
    kill_reap(pid);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got, "b'new'\n");
}
