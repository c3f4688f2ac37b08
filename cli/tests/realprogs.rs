//! Real programs from Debian through the `crtools` binary, as a user runs
//! them: each is started from a private directory on a port of its own,
//! given state through its own client or protocol, dumped (`crtools dump
//! -t PID -D DIR`), killed, restored with `crtools restore -d -D DIR` (no
//! `-t`: the root comes from the images) and asked for the same state
//! again. Each test skips with a message when its program is not
//! installed (.ci/run installs them).
mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CRTOOLS: &str = env!("CARGO_BIN_EXE_crtools");
const DEADLINE: Duration = Duration::from_secs(20);

fn crtools(args: &[&str]) -> Output {
    Command::new(CRTOOLS).args(args).stdin(Stdio::null()).output().expect("run crtools")
}

/// Whether `prog` is installed (found in PATH or the sbin directories).
fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file());
    found
}

/// Root and every program of `progs`, or a message saying what is missing.
fn ready(progs: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return false;
    }
    if let Some(p) = progs.iter().find(|p| which(p).is_none()) {
        eprintln!("skipped: {p} is not installed (.ci/run installs it)");
        return false;
    }
    // SAFETY: prctl with integer arguments; restored tasks re-parent to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    true
}

/// A private directory for one test.
fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("crtools-real-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A TCP port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A UDP port nothing is bound to now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `cmd` in its own session with stdio on /dev/null; returns its pid.
fn start(cmd: &mut Command) -> i32 {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    common::detached(cmd);
    cmd.spawn().expect("start the program").id() as i32
}

/// Waits, without connecting (a probe connection would leave the server
/// a connection to close), until /proc/net/`table` lists a socket on
/// 127.0.0.1:`port` in state `st` (TCP 0A: LISTEN; UDP 07: bound).
fn wait_socket(table: &str, port: u16, st: &str) {
    let want = format!("0100007F:{port:04X}");
    let t = Instant::now();
    loop {
        let s = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
        if s.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&st)
        }) {
            return;
        }
        assert!(t.elapsed() < DEADLINE, "nothing on 127.0.0.1:{port} in /proc/net/{table}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_listen(port: u16) {
    wait_socket("tcp", port, "0A");
}

/// Polls `f` until it returns Some, up to the deadline.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(pid: i32) {
    // SAFETY: signalling a process this test started or restored.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Kills every task of the tree of `pid` and reaps them (they are ours,
/// or become ours as their parents die: we are a subreaper). Only these
/// pids: waiting for any child would take the status of another test's
/// client from under it.
fn kill_tree(pid: i32) {
    let tree = tree_of(pid);
    for &p in &tree {
        kill(p);
    }
    for p in tree {
        wait_gone(p);
    }
}

fn wait_gone(pid: i32) {
    poll(&format!("{pid} to be gone"), || {
        // SAFETY: reaping this pid only, without blocking.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
}

/// `crtools dump -t pid -D dir extra...`; the tree is gone afterwards.
fn dump(pid: i32, dir: &Path, extra: &[&str]) {
    let img = dir.join("img");
    let mut args = vec!["dump", "-t"];
    let p = pid.to_string();
    args.push(&p);
    args.extend(["-D", img.to_str().unwrap()]);
    args.extend(extra);
    let tree = tree_of(pid);
    if !extra.contains(&"--tcp-established") {
        // A client of the test that just hung up leaves the server's end
        // in CLOSE-WAIT until the server reads the end of it and closes
        // it: a live connection, which the dump rightly refuses without
        // --tcp-established. Dumped once the server has closed them.
        poll("the tree to close connections its clients ended", || {
            (!tree.iter().any(|&p| holds_close_wait(p))).then_some(())
        });
    }
    let out = crtools(&args);
    if !out.status.success() {
        kill_tree(pid);
        panic!("dump of {pid}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Its children re-parent to us as it dies: reap them all, or their
    // zombies hold the pids the restore needs.
    for p in tree {
        wait_gone(p);
    }
}

/// `pid` and its descendants.
/// Whether `pid` holds a TCP connection in CLOSE-WAIT.
fn holds_close_wait(pid: i32) -> bool {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|t| {
        std::fs::read_to_string(t).unwrap_or_default().lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(3) == Some(&"08") && f.get(9).is_some_and(|i| inodes.contains(*i))
        })
    })
}

fn tree_of(pid: i32) -> Vec<i32> {
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let mut all = vec![pid];
    for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
        all.extend(tree_of(k));
    }
    all
}

/// `crtools restore -d -D dir extra...`, as a user runs it (no -t).
fn restore(dir: &Path, extra: &[&str]) {
    let img = dir.join("img");
    let mut args = vec!["restore", "-d", "-D", img.to_str().unwrap()];
    args.extend(extra);
    let out = crtools(&args);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
}

/// Marks for removal, when dropped, the SysV shared memory segments of
/// user `.0` made (or changed) since `.1` (seconds since the epoch): a
/// killed PostgreSQL leaves its interlock segment behind, and a restored
/// one's creator is crtools (/proc/sysvipc/shm: shmid is the 2nd column,
/// the uid the 8th, ctime the 14th). Its dynamic shared memory files
/// (/dev/shm/PostgreSQL.N) of that user and time go too.
struct ShmOf(u32, i64);

impl Drop for ShmOf {
    fn drop(&mut self) {
        let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
        for l in table.lines().skip(1) {
            let f: Vec<i64> = l.split_whitespace().take(14).filter_map(|v| v.parse().ok()).collect();
            if let [_, id, _, _, _, _, _, uid, _, _, _, _, _, ctime] = f[..] {
                if uid == self.0 as i64 && ctime >= self.1 {
                    // SAFETY: IPC_RMID takes no buffer.
                    unsafe { libc::shmctl(id as i32, libc::IPC_RMID, std::ptr::null_mut()) };
                }
            }
        }
        use std::os::unix::fs::MetadataExt;
        for e in std::fs::read_dir("/dev/shm").into_iter().flatten().flatten() {
            let ours = e.file_name().to_string_lossy().starts_with("PostgreSQL.")
                && e.metadata().is_ok_and(|m| m.uid() == self.0 && m.ctime() >= self.1);
            if ours {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Kills `pid`'s tree and removes `dir` when dropped (also on a failed assert).
struct Cleanup(i32, PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_tree(self.0);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("run a client");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c
}

fn http_get(port: u16, path: &str) -> String {
    let mut c = connect(port);
    write!(c, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

/// (sid, pgid, ppid) of `pid`.
fn ids_of(pid: i32) -> Option<(i32, i32, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(3)?.parse().ok()?, f.get(2)?.parse().ok()?, f.get(1)?.parse().ok()?))
}

/// A daemon started with `start-stop-daemon --background` (it forks, calls
/// setsid, forks again and the middle one exits) under a supervisor that
/// is a subreaper: the daemon's session leader is gone. The supervisor's
/// tree is dumped and restored; the daemon keeps its session, group and
/// parent and still runs.
#[test]
fn start_stop_daemon_double_fork_under_a_subreaper_survives() {
    if !ready(&["start-stop-daemon", "python3"]) {
        return;
    }
    let dir = tmpdir("ssd");
    // A program of its own, so start-stop-daemon finds no other running.
    let prog = dir.join("ssd-daemon");
    std::fs::copy("/bin/sleep", &prog).unwrap();
    let script = format!(
        "import ctypes, os, subprocess, time\n\
         ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n\
         subprocess.run(['start-stop-daemon', '--start', '--background', '--exec', '{}', '--', '600'], check=True)\n\
         while True:\n    time.sleep(1)\n",
        prog.display()
    );
    let pid = start(Command::new("python3").arg("-c").arg(script));
    let _c = Cleanup(pid, dir.clone());
    let daemon = poll("the daemon", || {
        let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        kids.split_whitespace()
            .filter_map(|k| k.parse::<i32>().ok())
            .find(|&k| std::fs::read_link(format!("/proc/{k}/exe")).is_ok_and(|e| e == prog))
    });
    let before = ids_of(daemon).unwrap();
    assert!(before.0 != daemon && before.0 != pid, "not an orphan of a dead session leader: {before:?}");
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    assert_eq!(ids_of(daemon), Some(before), "the daemon's session, group and parent");
    assert_eq!(std::fs::read_link(format!("/proc/{daemon}/exe")).ok(), Some(prog));
}

/// The flock locks /proc/locks lists on inode `ino`.
fn flocks_on(ino: u64) -> usize {
    let s = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    s.lines().filter(|l| l.contains(" FLOCK ") && l.split_whitespace().any(|w| w.ends_with(&format!(":{ino}")))).count()
}

/// OpenJDK: an HTTP server (com.sun.net.httpserver, run from source) on a
/// pool of worker threads, counting requests over a 40 MB array. The JVM
/// maps its hsperfdata file, flocks it and closes it: the lock, held
/// through the mapping alone, is held again after restore (-l), and the
/// count goes on.
#[test]
fn java_http_server_counts_on_and_keeps_its_perfdata_lock() {
    use std::os::unix::fs::MetadataExt;
    if !ready(&["java"]) {
        return;
    }
    let dir = tmpdir("java");
    let port = free_port();
    let src = dir.join("Srv.java");
    std::fs::write(
        &src,
        "import com.sun.net.httpserver.*;\n\
         import java.net.*;\n\
         import java.util.concurrent.atomic.*;\n\
         public class Srv {\n\
           public static void main(String[] a) throws Exception {\n\
             AtomicLong n = new AtomicLong();\n\
             long[] big = new long[5_000_000];\n\
             for (int i = 0; i < big.length; i++) big[i] = i * 31L;\n\
             HttpServer s = HttpServer.create(new InetSocketAddress(\"127.0.0.1\", Integer.parseInt(a[0])), 0);\n\
             s.createContext(\"/\", x -> {\n\
               long sum = 0; for (long v : big) sum += v;\n\
               byte[] b = (\"count=\" + n.incrementAndGet() + \" sum=\" + sum + \"\\n\").getBytes();\n\
               x.sendResponseHeaders(200, b.length); x.getResponseBody().write(b); x.close();\n\
             });\n\
             s.setExecutor(java.util.concurrent.Executors.newFixedThreadPool(4));\n\
             s.start();\n\
           }\n\
         }\n",
    )
    .unwrap();
    let err = std::fs::File::create(dir.join("java.err")).unwrap();
    let mut cmd = Command::new("java");
    cmd.args(["-Xmx256m"]).arg(&src).arg(port.to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
    common::detached(&mut cmd);
    let pid = cmd.spawn().expect("start java").id() as i32;
    let _c = Cleanup(pid, dir.clone());
    poll("java to listen", || {
        let said = std::fs::read_to_string(dir.join("java.err")).unwrap_or_default();
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "java exited: {said}");
        // The JVM's sockets are IPv6 ones (127.0.0.1 as a v4-mapped address).
        let s = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
        s.contains(&format!("0000000000000000FFFF00000100007F:{port:04X} 00000000000000000000000000000000:0000 0A"))
            .then_some(())
    });
    let sum = "sum=387499922500000";
    let first = http_get(port, "/");
    assert!(first.contains("count=1 ") && first.contains(sum), "{first}");
    let perf = PathBuf::from(format!("/tmp/hsperfdata_root/{pid}"));
    let ino = std::fs::metadata(&perf).map(|m| m.ino()).unwrap_or(0);
    assert!(ino != 0 && flocks_on(ino) == 1, "no flock lock on {}", perf.display());
    dump(pid, &dir, &["-l", "--tcp-established"]);
    assert_eq!(flocks_on(ino), 0, "the dumped JVM's lock outlived it");
    restore(&dir, &["-l", "--tcp-established"]);
    assert_eq!(flocks_on(ino), 1, "the restored JVM does not hold its perfdata lock");
    let second = http_get(port, "/");
    assert!(second.contains("count=2 ") && second.contains(sum), "{second}");
}

/// One A query for `name` over UDP; the address of the first answer.
fn dns_a(port: u16, name: &str) -> Option<[u8; 4]> {
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.send_to(&q, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 512];
    let n = s.recv(&mut buf).ok()?;
    let answers = u16::from_be_bytes([buf[6], buf[7]]);
    (answers > 0 && n >= 4).then(|| [buf[n - 4], buf[n - 3], buf[n - 2], buf[n - 1]])
}

/// redis-server with keys set through redis-cli and no client connected.
#[test]
fn redis_keys_survive() {
    if !ready(&["redis-server", "redis-cli"]) {
        return;
    }
    let dir = tmpdir("redis");
    let port = free_port();
    let pid = start(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--port"])
            .arg(port.to_string())
            .arg("--dir")
            .arg(&dir),
    );
    let _c = Cleanup(pid, dir.clone());
    wait_listen(port);
    let cli = |args: &[&str]| run(Command::new("redis-cli").args(["-p", &port.to_string()]).args(args));
    assert_eq!(cli(&["set", "k1", "before-dump"]).trim(), "OK");
    assert_eq!(cli(&["rpush", "list", "a", "b", "c"]).trim(), "3");
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    assert_eq!(cli(&["get", "k1"]).trim(), "before-dump");
    assert_eq!(cli(&["lrange", "list", "0", "-1"]).split_whitespace().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(cli(&["set", "k2", "after"]).trim(), "OK");
    assert_eq!(cli(&["dbsize"]).trim(), "3");
}

/// redis-server with a client connected through the dump
/// (`--tcp-established`): the same connection goes on, with its name.
#[test]
fn redis_keeps_a_connected_client() {
    if !ready(&["redis-server"]) {
        return;
    }
    let dir = tmpdir("redis-conn");
    let port = free_port();
    let pid = start(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--port"])
            .arg(port.to_string())
            .arg("--dir")
            .arg(&dir),
    );
    let _c = Cleanup(pid, dir.clone());
    wait_listen(port);
    let c = connect(port);
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut cmd = |args: &[&str]| -> String {
        let mut m = format!("*{}\r\n", args.len());
        for a in args {
            m += &format!("${}\r\n{a}\r\n", a.len());
        }
        (&c).write_all(m.as_bytes()).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.starts_with('$') && line.trim() != "$-1" {
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        line.trim().to_string()
    };
    assert_eq!(cmd(&["SET", "held", "yes"]), "+OK");
    assert_eq!(cmd(&["CLIENT", "SETNAME", "holder"]), "+OK");
    dump(pid, &dir, &["--tcp-established"]);
    restore(&dir, &["--tcp-established"]);
    assert_eq!(cmd(&["GET", "held"]), "yes");
    assert_eq!(cmd(&["CLIENT", "GETNAME"]), "holder");
}

/// memcached: an item stored through its text protocol is there after restore.
#[test]
fn memcached_item_survives() {
    if !ready(&["memcached"]) {
        return;
    }
    let dir = tmpdir("memcached");
    let port = free_port();
    let pid =
        start(Command::new("memcached").args(["-u", "root", "-l", "127.0.0.1", "-U", "0", "-p"]).arg(port.to_string()));
    let _c = Cleanup(pid, dir.clone());
    wait_listen(port);
    let talk = |req: &str, end: &str| -> String {
        let mut c = connect(port);
        c.write_all(req.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&got).contains(end) {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "memcached closed: {}", String::from_utf8_lossy(&got));
            got.extend(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    assert_eq!(talk("set foo 0 0 3\r\nbar\r\n", "\r\n"), "STORED\r\n");
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    assert_eq!(talk("get foo\r\n", "END\r\n"), "VALUE foo 0 3\r\nbar\r\nEND\r\n");
}

/// nginx, a master and two workers: the master talks to its workers over
/// socketpairs in O_ASYNC mode with itself as the signal owner. After
/// restore it serves a file, and reloads (new workers, told through
/// those channels) on `nginx -s reload`.
#[test]
fn nginx_master_and_workers_serve_and_reload() {
    if !ready(&["nginx"]) {
        return;
    }
    let dir = tmpdir("nginx");
    let port = free_port();
    let d = dir.display();
    std::fs::create_dir_all(dir.join("html")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("html/index.html"), "served by nginx\n").unwrap();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 2; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n\
             fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
             server {{ listen 127.0.0.1:{port}; root {d}/html; }} }}\n"
        ),
    )
    .unwrap();
    let conf = dir.join("nginx.conf");
    let pid = start(Command::new("nginx").arg("-c").arg(&conf).arg("-p").arg(&dir));
    let _c = Cleanup(pid, dir.clone());
    wait_listen(port);
    let workers = |pid: i32| -> Vec<i32> {
        let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let mut w: Vec<i32> = kids.split_whitespace().filter_map(|k| k.parse().ok()).collect();
        w.sort();
        w
    };
    poll("two workers", || (workers(pid).len() == 2).then_some(()));
    assert!(http_get(port, "/").ends_with("served by nginx\n"));
    let before = workers(pid);
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    assert_eq!(workers(pid), before, "the same workers");
    for _ in 0..4 {
        let got = http_get(port, "/");
        assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("served by nginx\n"), "{got}");
    }
    run(Command::new("nginx").arg("-c").arg(&conf).arg("-p").arg(&dir).args(["-s", "reload"]));
    poll("new workers after reload", || {
        let w = workers(pid);
        (w.len() == 2 && w.iter().all(|p| !before.contains(p))).then_some(())
    });
    assert!(http_get(port, "/").ends_with("served by nginx\n"));
}

/// lighttpd serves its files, and one made while it was down.
#[test]
fn lighttpd_serves_after_restore() {
    if !ready(&["lighttpd"]) {
        return;
    }
    let dir = tmpdir("lighttpd");
    let port = free_port();
    std::fs::create_dir_all(dir.join("html")).unwrap();
    std::fs::write(dir.join("html/index.html"), "before\n").unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("lighttpd.conf"),
        format!(
            "server.document-root = \"{d}/html\"\nserver.port = {port}\nserver.bind = \"127.0.0.1\"\n\
             server.errorlog = \"{d}/error.log\"\nindex-file.names = (\"index.html\")\n"
        ),
    )
    .unwrap();
    let pid = start(Command::new("lighttpd").arg("-D").arg("-f").arg(dir.join("lighttpd.conf")));
    let _c = Cleanup(pid, dir.clone());
    wait_listen(port);
    assert!(http_get(port, "/").ends_with("before\n"));
    dump(pid, &dir, &[]);
    // Not index.html: lighttpd keeps the files it served open, and
    // restore refuses a file changed under an open descriptor.
    std::fs::write(dir.join("html/new.html"), "made while it was down\n").unwrap();
    restore(&dir, &[]);
    let got = http_get(port, "/");
    assert!(got.starts_with("HTTP/1.0 200") && got.ends_with("before\n"), "{got}");
    let got = http_get(port, "/new.html");
    assert!(got.starts_with("HTTP/1.0 200") && got.ends_with("made while it was down\n"), "{got}");
}

/// dnsmasq answers a name from its configuration over UDP.
#[test]
fn dnsmasq_answers_after_restore() {
    if !ready(&["dnsmasq"]) {
        return;
    }
    let dir = tmpdir("dnsmasq");
    let port = free_udp_port();
    let pid = start(
        Command::new("dnsmasq")
            .args(["--no-daemon", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts"])
            .args(["--address=/crtools.test/10.1.2.3", "-u", "root"])
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.join("pid").display())),
    );
    let _c = Cleanup(pid, dir.clone());
    wait_socket("udp", port, "07");
    assert_eq!(dns_a(port, "crtools.test"), Some([10, 1, 2, 3]));
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    assert_eq!(dns_a(port, "crtools.test"), Some([10, 1, 2, 3]));
}

/// unbound with a record added at run time through unbound-control (its
/// control socket is a unix socket): the record is answered after
/// restore, and unbound-control still talks to it.
#[test]
fn unbound_keeps_records_added_by_unbound_control() {
    if !ready(&["unbound", "unbound-control"]) {
        return;
    }
    let dir = tmpdir("unbound");
    let port = free_udp_port();
    let d = dir.display();
    let conf = dir.join("unbound.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n interface: 127.0.0.1\n port: {port}\n do-daemonize: no\n username: \"\"\n chroot: \"\"\n\
             \x20directory: \"{d}\"\n pidfile: \"\"\n use-syslog: no\n num-threads: 1\n do-ip6: no\n do-tcp: no\n\
             \x20local-zone: \"crtools.test.\" static\n local-data: \"a.crtools.test. IN A 10.9.8.7\"\n\
             remote-control:\n control-enable: yes\n control-interface: \"{d}/ctl.sock\"\n control-use-cert: no\n"
        ),
    )
    .unwrap();
    let pid = start(Command::new("unbound").arg("-d").arg("-c").arg(&conf));
    let _c = Cleanup(pid, dir.clone());
    wait_socket("udp", port, "07");
    poll("the control socket", || dir.join("ctl.sock").exists().then_some(()));
    let control = |args: &[&str]| run(Command::new("unbound-control").arg("-c").arg(&conf).args(args));
    assert_eq!(control(&["local_data", "b.crtools.test. IN A 1.1.1.1"]).trim(), "ok");
    assert_eq!(dns_a(port, "b.crtools.test"), Some([1, 1, 1, 1]));
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    assert_eq!(dns_a(port, "a.crtools.test"), Some([10, 9, 8, 7]));
    assert_eq!(dns_a(port, "b.crtools.test"), Some([1, 1, 1, 1]), "the record added at run time");
    assert_eq!(control(&["local_data", "c.crtools.test. IN A 2.2.2.2"]).trim(), "ok");
    assert_eq!(dns_a(port, "c.crtools.test"), Some([2, 2, 2, 2]));
}

/// rsyslogd (four threads) takes messages on a unix socket and UDP and
/// writes them to a file, before and after restore.
#[test]
fn rsyslogd_logs_after_restore() {
    if !ready(&["rsyslogd", "logger"]) {
        return;
    }
    let dir = tmpdir("rsyslogd");
    let port = free_udp_port();
    let d = dir.display();
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{d}\")\nmodule(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{d}/log.sock\")\nmodule(load=\"imudp\")\n\
             input(type=\"imudp\" port=\"{port}\" address=\"127.0.0.1\")\n\
             *.* action(type=\"omfile\" file=\"{d}/out.log\")\n"
        ),
    )
    .unwrap();
    let pid = start(Command::new("rsyslogd").arg("-n").arg("-f").arg(&conf).arg("-i").arg(dir.join("pid")));
    let _c = Cleanup(pid, dir.clone());
    wait_socket("udp", port, "07");
    poll("the log socket", || dir.join("log.sock").exists().then_some(()));
    let log = |msg: &str| {
        run(Command::new("logger").arg("-u").arg(dir.join("log.sock")).arg(msg));
        run(Command::new("logger").args(["-d", "-n", "127.0.0.1", "-P", &port.to_string()]).arg(format!("{msg}-udp")));
    };
    let logged = |msg: &str| {
        poll(msg, || {
            let s = std::fs::read_to_string(dir.join("out.log")).unwrap_or_default();
            (s.contains(&format!("{msg}\n")) && s.contains(&format!("{msg}-udp\n"))).then_some(())
        })
    };
    log("before-dump");
    logged("before-dump");
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    log("after-restore");
    logged("after-restore");
}

/// sshd listening (no connection): after restore it greets a client.
#[test]
fn sshd_listening_greets_after_restore() {
    if !ready(&["sshd", "ssh-keygen"]) {
        return;
    }
    let dir = tmpdir("sshd");
    let port = free_port();
    let key = dir.join("hostkey");
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key));
    // sshd wants its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let pid = start(
        Command::new(which("sshd").unwrap())
            .args(["-D", "-o", "ListenAddress=127.0.0.1", "-p", &port.to_string(), "-h"])
            .arg(&key)
            .arg("-o")
            .arg(format!("PidFile={}", dir.join("pid").display())),
    );
    let _c = Cleanup(pid, dir.clone());
    wait_listen(port);
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    let mut c = connect(port);
    let mut line = String::new();
    BufReader::new(&mut c).read_line(&mut line).unwrap();
    assert!(line.starts_with("SSH-2.0-OpenSSH"), "{line:?}");
}

/// A screen session with a shell in it: a variable set through `screen
/// -X stuff` before the dump is still set in the restored shell.
#[test]
fn screen_session_and_its_shell_survive() {
    if !ready(&["screen"]) {
        return;
    }
    let dir = tmpdir("screen");
    let sockdir = dir.join("sock");
    std::fs::create_dir_all(&sockdir).unwrap();
    std::fs::set_permissions(&sockdir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let screen = |args: &[&str]| Command::new("screen").env("SCREENDIR", &sockdir).args(args).output().unwrap();
    let pid = start(Command::new("screen").env("SCREENDIR", &sockdir).args(["-D", "-m", "-S", "crt", "sh"]));
    let _c = Cleanup(pid, dir.clone());
    let out1 = dir.join("o1");
    let out2 = dir.join("o2");
    // The shell's first command can be lost while it starts: send until it runs.
    poll("the shell in screen", || {
        screen(&["-S", "crt", "-X", "stuff", &format!("V=before-dump; echo set-\\$V > {}\\n", out1.display())]);
        std::thread::sleep(Duration::from_millis(50));
        std::fs::read_to_string(&out1).ok().filter(|s| s == "set-before-dump\n")
    });
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    assert!(String::from_utf8_lossy(&screen(&["-ls"]).stdout).contains(&format!("{pid}.crt")));
    screen(&["-S", "crt", "-X", "stuff", &format!("echo after-\\$V > {}\\n", out2.display())]);
    let got = poll("the restored shell's answer", || std::fs::read_to_string(&out2).ok().filter(|s| s.ends_with('\n')));
    assert_eq!(got, "after-before-dump\n");
}

/// A python3 process in signal-driven I/O mode: a FIFO in O_ASYNC mode
/// with the process as its signal owner (F_SETOWN). After restore,
/// writing into the FIFO still sends it SIGIO, and a socket's owner set
/// without O_ASYNC (for SIGURG) is its own again.
#[test]
fn signal_driven_io_owner_survives() {
    if !ready(&["python3"]) {
        return;
    }
    let dir = tmpdir("sigio");
    let fifo = dir.join("fifo");
    let d = dir.display();
    let script = format!(
        "import ctypes, fcntl, os, signal, socket, time\n\
         got = []\n\
         def on_io(s, f):\n\
         \x20   try:\n\
         \x20       got.append(os.read(fd, 100))\n\
         \x20   except BlockingIOError:\n\
         \x20       return\n\
         \x20   open('{d}/got', 'w').write(repr(got))\n\
         def owner(f):\n\
         \x20   o = (ctypes.c_int * 2)()\n\
         \x20   assert libc.fcntl(f, 16, o) == 0\n\
         \x20   return '%d:%d' % (o[0], o[1])\n\
         libc = ctypes.CDLL(None)\n\
         signal.signal(signal.SIGIO, on_io)\n\
         os.mkfifo('{d}/fifo')\n\
         fd = os.open('{d}/fifo', os.O_RDWR | os.O_NONBLOCK)\n\
         fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())\n\
         fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', 0))\n\
         fcntl.fcntl(s.fileno(), fcntl.F_SETOWN, -os.getpgrp())\n\
         open('{d}/ready', 'w').write('%d %d' % (fd, s.fileno()))\n\
         while True:\n\
         \x20   time.sleep(1)\n\
         \x20   if os.path.exists('{d}/check'):\n\
         \x20       open('{d}/owners', 'w').write('%s %s' % (owner(fd), owner(s.fileno())))\n\
         \x20       os.unlink('{d}/check')\n"
    );
    let pid = start(Command::new("python3").arg("-c").arg(script));
    let _c = Cleanup(pid, dir.clone());
    poll("python ready", || dir.join("ready").exists().then_some(()));
    let write_fifo = |msg: &str| {
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        f.write_all(msg.as_bytes()).unwrap();
    };
    write_fifo("one");
    poll("SIGIO before the dump", || {
        std::fs::read_to_string(dir.join("got")).ok().filter(|s| s.contains("one")).map(drop)
    });
    dump(pid, &dir, &[]);
    let shown = crtools(&["show", "-D", dir.join("img").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains(&format!("owner: process {pid}")) && text.contains("async: true"), "{text}");
    assert!(text.contains(&format!("owner: process group {pid}")), "{text}");
    restore(&dir, &[]);
    write_fifo("two");
    let got =
        poll("SIGIO after restore", || std::fs::read_to_string(dir.join("got")).ok().filter(|s| s.contains("two")));
    assert_eq!(got, "[b'one', b'two']");
    std::fs::write(dir.join("check"), "").unwrap();
    let owners = poll("owners", || std::fs::read_to_string(dir.join("owners")).ok().filter(|s| !s.is_empty()));
    // F_GETOWN_EX: (F_OWNER_PID, pid) for the FIFO, (F_OWNER_PGRP, pgid) for the socket.
    assert_eq!(owners, format!("1:{pid} 2:{pid}"), "F_GETOWN_EX of the FIFO and the socket");
}

/// The directory of PostgreSQL's server programs (postgres, initdb), any version.
fn postgres_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("postgres").is_file() && b.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// uid and gid of a user from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let pw = std::fs::read_to_string("/etc/passwd").ok()?;
    let f: Vec<&str> = pw.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.first() == Some(&name))?;
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// PostgreSQL: a postmaster with its five background processes, all
/// sharing the buffer pool (MAP_SHARED anonymous memory and a SysV
/// segment), a latch pipe each, the listening TCP and unix sockets. A psql
/// client holds a TCP connection with a transaction open through the dump
/// (`--tcp-established`): its backend is part of the tree. After restore
/// the transaction commits on that connection, and new clients (unix
/// socket and TCP, each served by a newly forked backend) see the data.
#[test]
fn postgres_transaction_survives() {
    use std::os::unix::process::CommandExt;
    let Some(bin) = postgres_bin() else {
        eprintln!("skipped: PostgreSQL is not installed (.ci/run installs it)");
        return;
    };
    if !ready(&["psql"]) {
        return;
    }
    let Some((uid, gid)) = user_ids("postgres") else {
        eprintln!("skipped: no postgres user");
        return;
    };
    let dir = tmpdir("postgres");
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    let data = dir.join("data");
    let as_pg = |c: &mut Command| {
        c.uid(uid).gid(gid).env("HOME", &dir).env_remove("PGDATA");
    };
    let mut init = Command::new(bin.join("initdb"));
    init.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
    as_pg(&mut init);
    run(&mut init);
    let port = free_port();
    let mut server = Command::new(bin.join("postgres"));
    server.arg("-D").arg(&data).arg("-p").arg(port.to_string()).arg("-k").arg(&dir).args([
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
    ]);
    as_pg(&mut server);
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let pid = start(&mut server);
    let _c = Cleanup(pid, dir.clone());
    // Dropped first: its SysV segments go with it.
    let _shm = ShmOf(uid, since);
    wait_listen(port);
    let sql = |host: &str, q: &str| -> String {
        run(Command::new("psql").args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-U",
            "postgres",
            "-p",
            &port.to_string(),
            "-h",
            host,
            "-c",
            q,
        ]))
    };
    let sock_dir = dir.to_str().unwrap().to_string();
    // The server may still be starting up behind its listening socket.
    poll("postgres to accept queries", || {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-U", "postgres", "-h", &sock_dir, "-p", &port.to_string(), "-c", "select 1"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1").then_some(())
    });
    sql(&sock_dir, "create table t (a int primary key, b text); insert into t select g, 'row ' || g from generate_series(1, 1000) g;");

    // A client with an open transaction, over TCP.
    let mut client = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-U",
            "postgres",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to = client.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = client.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
            let _ = tx.send(l);
        }
    });
    let mut ask = |q: &str| -> String {
        writeln!(to, "{q}").unwrap();
        to.flush().unwrap();
        rx.recv_timeout(DEADLINE).unwrap_or_else(|e| panic!("psql gave no answer to {q:?}: {e}"))
    };
    assert_eq!(ask("begin; insert into t values (1001, 'in flight') returning a;"), "1001");
    assert_eq!(ask("select count(*) from t;"), "1001");
    // Not committed: other clients do not see it yet.
    assert_eq!(sql(&sock_dir, "select count(*) from t").trim(), "1000");

    dump(pid, &dir, &["--tcp-established"]);
    restore(&dir, &["--tcp-established"]);

    assert_eq!(sql(&sock_dir, "select count(*) from t").trim(), "1000");
    assert_eq!(ask("select b from t where a = 1001;"), "in flight");
    assert_eq!(ask("commit; select count(*) from t;"), "1001");
    assert_eq!(sql("127.0.0.1", "select count(*), sum(a) from t").trim(), "1001|501501");
    assert_eq!(sql(&sock_dir, "insert into t values (1002, 'after') returning a").trim(), "1002");
    drop(to);
    let _ = client.wait();
}

/// One command on a unix stream socket (haproxy's runtime API style): the
/// whole answer, up to the server closing the connection.
fn unix_ask(path: &Path, cmd: &str) -> String {
    let mut c =
        std::os::unix::net::UnixStream::connect(path).unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.write_all(format!("{cmd}\n").as_bytes()).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

/// haproxy with two threads answers HTTP and keeps what was set through
/// its admin socket, whose file it bound under a temporary name and
/// renamed into place: after restore the socket answers at its path.
#[test]
fn haproxy_keeps_runtime_settings() {
    if !ready(&["haproxy"]) {
        return;
    }
    let dir = tmpdir("haproxy");
    let port = free_port();
    let admin = dir.join("admin.sock");
    std::fs::write(
        dir.join("haproxy.cfg"),
        format!(
            "global\n  nbthread 2\n  stats socket {} mode 600 level admin\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n\
             frontend f\n  bind 127.0.0.1:{port}\n  \
             http-request return status 200 content-type text/plain string \"haproxy-ok\\n\"\n",
            admin.display()
        ),
    )
    .unwrap();
    let pid = start(Command::new("haproxy").arg("-f").arg(dir.join("haproxy.cfg")).arg("-db"));
    let _c = Cleanup(pid, dir.clone());
    wait_listen(port);
    poll("the admin socket", || admin.exists().then_some(()));
    unix_ask(&admin, "set maxconn global 1234");
    assert!(unix_ask(&admin, "show info").contains("\nMaxconn: 1234\n"));
    assert!(http_get(port, "/").ends_with("haproxy-ok\n"));
    dump(pid, &dir, &[]);
    restore(&dir, &[]);
    let info = unix_ask(&admin, "show info");
    assert!(info.contains("\nMaxconn: 1234\n"), "{info}");
    assert!(info.contains(&format!("\nPid: {pid}\n")), "{info}");
    for _ in 0..3 {
        let got = http_get(port, "/");
        assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("haproxy-ok\n"), "{got}");
    }
}

/// The POSIX locks /proc/locks lists as held by `pid`.
fn posix_locks_of(pid: i32) -> usize {
    let me = pid.to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.get(1) == Some(&"POSIX") && w.get(4) == Some(&me.as_str())
        })
        .count()
}

/// MariaDB (12 threads) with InnoDB rows and its data files locked with
/// POSIX locks: dumped and restored with `--file-locks`, a client over the
/// unix socket reads the rows and writes more. Its default native AIO is
/// io_uring, which crtools refuses by name: the server runs with
/// `--innodb-use-native-aio=0`.
#[test]
fn mariadb_rows_survive_with_their_locks() {
    if !ready(&["mariadbd", "mariadb", "mariadb-install-db"]) {
        return;
    }
    let Some((uid, gid)) = user_ids("mysql") else {
        eprintln!("skipped: no mysql user");
        return;
    };
    let dir = tmpdir("mariadb");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
    run(Command::new("mariadb-install-db").arg("--user=mysql").arg(format!("--datadir={}", data.display())));
    let sock = data.join("mysqld.sock");
    let port = free_port();
    let mut server = Command::new(which("mariadbd").unwrap());
    server
        .arg("--no-defaults")
        .arg("--user=mysql")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--pid-file={}", data.join("mysqld.pid").display()))
        .arg("--innodb-use-native-aio=0");
    let pid = start(&mut server);
    let _c = Cleanup(pid, dir.clone());
    wait_listen(port);
    let sql = |q: &str| -> String { run(Command::new("mariadb").arg("-S").arg(&sock).args(["-N", "-B", "-e", q])) };
    poll("mariadb to accept clients", || {
        let out = Command::new("mariadb").arg("-S").arg(&sock).args(["-N", "-B", "-e", "select 1"]).output().ok()?;
        (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1").then_some(())
    });
    sql("create database d; create table d.t (a int primary key, b varchar(20)) engine=innodb; \
         insert into d.t values (1, 'one'), (2, 'two');");
    // The data files are locked: refused without --file-locks, and it runs on.
    let img = dir.join("img");
    let out = crtools(&["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--file-locks"), "{err}");
    assert_eq!(sql("select count(*) from d.t").trim(), "2");
    let _ = std::fs::remove_dir_all(&img);
    let locks_before = posix_locks_of(pid);
    dump(pid, &dir, &["--file-locks"]);
    restore(&dir, &["--file-locks"]);
    assert_eq!(sql("select b from d.t order by a").split_whitespace().collect::<Vec<_>>(), ["one", "two"]);
    sql("insert into d.t values (3, 'three')");
    assert_eq!(sql("select count(*), sum(a) from d.t").trim(), "3\t6");
    // Its locks are held again, by the same process: as many POSIX locks
    // in /proc/locks under its pid as before the dump.
    let held = posix_locks_of(pid);
    assert!(held >= 1 && held == locks_before, "{held} locks held after restore, {locks_before} before");
}
