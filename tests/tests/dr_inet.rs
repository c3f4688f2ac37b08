//! Dump and restore of inet sockets on loopback: a TCP server with a
//! client in the tree and one kept by this test outside it, bytes in
//! flight both ways at dump (`--tcp-established`); half-closed
//! connections in every state with both ends in the tree and with this
//! test as the peer; a UDP server with datagrams queued; refusals by name
//! that leave the tree working.
//!
//! Victims are `victim_inet` trees that check themselves after restore and
//! report through a log file. This process is a child subreaper; tests run
//! one at a time (restore waits for any child); every task is killed by
//! pid and reaped.
use engine::dump::{dump, DumpOptions};
use engine::restore::{restore, RestoreOptions};
use engine::sys::Pid;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim_inet");
const ANSWER: Duration = Duration::from_secs(90);
static SERIAL: Mutex<()> = Mutex::new(());

/// Byte `i` of pattern stream `k` (as the victim has it).
fn pattern(k: u8, i: usize) -> u8 {
    ((i * 7 + k as usize * 13 + i / 251) & 0xff) as u8
}

struct Tree {
    log: std::path::PathBuf,
    pids: Vec<i32>,
}

impl Tree {
    fn start(s: &crtools_tests::Scratch, args: &[&str]) -> Tree {
        let log = s.root.join("victim.log");
        let log_s = log.to_str().unwrap().to_string();
        let mut cmd = Command::new(VICTIM);
        cmd.arg(args[0]).arg(&log_s).args(&args[1..]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start victim");
        let t = Tree { log, pids: vec![child.id() as i32] };
        std::mem::forget(child);
        t
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first log line starting with `prefix`, waiting for it.
    fn wait_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + ANSWER;
        loop {
            if let Some(l) = self.text().lines().find(|l| l.starts_with(prefix)) {
                return l.to_string();
            }
            assert!(Instant::now() < deadline, "no {prefix:?} line; log:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal_all(&self, sig: i32) {
        for &p in &self.pids {
            // SAFETY: signalling a task of this test's tree.
            unsafe { libc::kill(p, sig) };
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.signal_all(libc::SIGKILL);
        reap_all();
    }
}

fn field(line: &str, k: &str) -> String {
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).unwrap_or_default().to_string()
}

fn run(name: &str, body: impl FnOnce() + Send + 'static) {
    if !crtools_tests::require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static SUBREAPER: std::sync::Once = std::sync::Once::new();
    SUBREAPER.call_once(|| {
        // SAFETY: prctl on this process.
        assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    });
    crtools_tests::with_watchdog(name, 300, body, || "see the victim log".into());
}

/// Reaps every child of this process that has ended.
fn reap_all() {
    loop {
        let mut st = 0;
        // SAFETY: reaping children of this process.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG | libc::__WALL) };
        if r <= 0 {
            return;
        }
    }
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + ANSWER;
    while Path::new(&format!("/proc/{pid}")).exists() {
        reap_all();
        assert!(Instant::now() < deadline, "pid {pid} still exists");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn do_dump(pid: i32, dir: &Path, tcp_established: bool) -> Result<(), String> {
    dump(&DumpOptions { pid: Pid(pid), dir: dir.to_path_buf(), tcp_established, ..Default::default() })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn do_restore(pid: i32, dir: &Path, tcp_established: bool) -> Result<(), String> {
    restore(&RestoreOptions {
        pid: Some(Pid(pid)),
        dir: dir.to_path_buf(),
        detach: true,
        tcp_established,
        ..Default::default()
    })
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Asserts every thread of `pid` runs untraced and is not stopped.
fn assert_running_untraced(pid: i32) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let f = |k: &str| s.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string())).unwrap_or_default();
    assert_eq!(f("TracerPid:"), "0", "{pid} is still traced");
    assert!(!f("State:").starts_with('T'), "{pid} is stopped");
}

/// How many crtools-inetlk processes there are.
fn keepers() -> usize {
    // This test process may be the parent of an exited one: reaped first.
    reap_all();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "crtools-inetlk")
        .count()
}

/// The socket inodes of the connections on `port` (either end) that the
/// tree holds in a state a dump keeps in repair mode (established or
/// half-closed), leaving out this test's own ends.
fn connection_inodes(port: u16) -> std::collections::BTreeSet<u64> {
    let own: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    let port = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let held = ["01", "04", "05", "08", "09", "0B"].contains(f.get(3)?);
            let ours = f[1].ends_with(&port) || f[2].ends_with(&port);
            let ino: u64 = f.get(9)?.parse().ok()?;
            (held && ours && ino != 0 && !own.contains(&format!("socket:[{ino}]"))).then_some(ino)
        })
        .collect()
}

/// Reads `n` bytes of pattern `k` from `s`; Err says how far it got.
fn read_pattern(s: &mut TcpStream, k: u8, n: usize) -> Result<(), String> {
    let mut got = vec![0u8; n];
    let mut at = 0;
    while at < n {
        match s.read(&mut got[at..]) {
            Ok(0) => return Err(format!("stream {k}: end after {at} of {n} bytes")),
            Ok(r) => at += r,
            Err(e) => return Err(format!("stream {k}: {e} after {at} of {n} bytes")),
        }
    }
    match got.iter().enumerate().find(|(i, &b)| b != pattern(k, *i)) {
        Some((i, b)) => Err(format!("stream {k}: byte {i} is {b}, expected {}", pattern(k, i))),
        None => Ok(()),
    }
}

/// Starts the TCP tree and brings it to phase 1: the test's own client is
/// connected, has written its bytes, and every side has written its own.
fn tcp_phase1(s: &crtools_tests::Scratch, args: &[&str]) -> (Tree, TcpStream, u16) {
    let mut t = Tree::start(s, args);
    let ready = t.wait_line("ready ");
    let port: u16 = field(&ready, "port").parse().unwrap();
    t.pids.push(field(&ready, "client").parse().unwrap());
    // The server accepts its child's connection first.
    t.wait_line("phase1 role=client");
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the victim");
    c.set_read_timeout(Some(ANSWER)).unwrap();
    let data: Vec<u8> = (0..50_000).map(|i| pattern(2, i)).collect();
    c.write_all(&data).unwrap();
    t.wait_line("phase1 role=server");
    (t, c, port)
}

/// The test's client writes the rest of its bytes (while the tree is down,
/// in the main test: the connection must stay silent, never reset).
fn write_rest(c: &mut TcpStream) {
    let data: Vec<u8> = (50_000..60_000).map(|i| pattern(2, i)).collect();
    c.write_all(&data).unwrap();
}

/// Phase 2: every side completes its writes and checks what it reads; the
/// listener accepts a new connection.
fn tcp_phase2(t: &Tree, mut c: TcpStream, port: u16) {
    t.signal_all(libc::SIGUSR1);
    if let Err(e) = read_pattern(&mut c, 3, 150_000) {
        std::thread::sleep(Duration::from_secs(1));
        let ss = Command::new("ss")
            .args(["-tnoiem", "state", "all", &format!("( sport = :{port} or dport = :{port} )")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        panic!("{e}; log:\n{}\nss:\n{ss}", t.text());
    }
    let mut n = TcpStream::connect(("127.0.0.1", port)).expect("a new connection to the listener");
    n.set_read_timeout(Some(ANSWER)).unwrap();
    let mut s = String::new();
    n.read_to_string(&mut s).unwrap();
    assert_eq!(s, "new\n");
    let srv = t.wait_line("done role=server");
    let cli = t.wait_line("done role=client");
    assert!(srv.ends_with(" ok") && cli.ends_with(" ok"), "{srv}\n{cli}");
}

#[test]
fn tcp_server_with_clients_inside_and_outside_keeps_every_byte() {
    run("tcp", || {
        let s = crtools_tests::Scratch::new("dr_inet", "tcp");
        let (mut t, mut c, port) = tcp_phase1(&s, &["tcp"]);
        let root = t.pids[0];
        do_dump(root, &s.images(), true).unwrap_or_else(|e| panic!("dump: {e}"));
        for &p in &t.pids {
            wait_gone(p);
        }
        // The outside peer sends while the tree is down, and waits a bit:
        // its segments go unanswered (a reset would fail the reads below).
        write_rest(&mut c);
        std::thread::sleep(Duration::from_millis(500));
        assert!(c.take_error().unwrap().is_none(), "the connection got an error while the tree was down");
        assert!(keepers() > 0, "no process holds the dumped connections");
        // What `show` makes of it.
        let mut out = Vec::new();
        engine::show::show(
            &engine::show::ShowOptions { dir: Some(s.images()), file: None, contents: false, json: false },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("ESTABLISHED") && text.contains("LISTEN"), "{text}");
        do_restore(root, &s.images(), true).unwrap_or_else(|e| panic!("restore: {e}\nlog:\n{}", t.text()));
        for &p in &t.pids {
            assert_running_untraced(p);
        }
        tcp_phase2(&t, c, port);
        t.pids.retain(|_| true);
    });
}

#[test]
fn established_connection_is_refused_without_tcp_established() {
    run("tcp_refused", || {
        let s = crtools_tests::Scratch::new("dr_inet", "tcp_refused");
        let (t, mut c, port) = tcp_phase1(&s, &["tcp"]);
        let err = do_dump(t.pids[0], &s.images(), false).expect_err("dump must refuse");
        write_rest(&mut c);
        assert!(
            err.contains("established TCP connection 127.0.0.1:") && err.contains("--tcp-established"),
            "unclear error: {err}"
        );
        for &p in &t.pids {
            assert_running_untraced(p);
        }
        tcp_phase2(&t, c, port);
    });
}

#[test]
fn failed_dump_takes_connections_out_of_repair_mode() {
    run("tcp_cork", || {
        let s = crtools_tests::Scratch::new("dr_inet", "tcp_cork");
        let (t, mut c, port) = tcp_phase1(&s, &["tcp", "cork"]);
        let err = do_dump(t.pids[0], &s.images(), true).expect_err("dump must refuse the corked socket");
        write_rest(&mut c);
        assert!(err.contains("corked"), "unclear error: {err}");
        for &p in &t.pids {
            assert_running_untraced(p);
        }
        // Every byte still flows, options (SO_REUSEADDR too) are as before.
        tcp_phase2(&t, c, port);
    });
}

/// Connections that ended (CLOSE) and are still held come back ended,
/// without --tcp-established: their unread bytes, end of stream, names.
#[test]
fn ended_connections_keep_their_bytes_and_names() {
    run("ended", || {
        let s = crtools_tests::Scratch::new("dr_inet", "ended");
        let t = Tree::start(&s, &["ended"]);
        t.wait_line("phase1 ");
        let root = t.pids[0];
        do_dump(root, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}\nlog:\n{}", t.text()));
        wait_gone(root);
        do_restore(root, &s.images(), false).unwrap_or_else(|e| panic!("restore: {e}\nlog:\n{}", t.text()));
        assert_running_untraced(root);
        t.signal_all(libc::SIGUSR1);
        let done = t.wait_line("done ");
        assert!(done.ends_with(" ok"), "{done}\nlog:\n{}", t.text());
    });
}

/// An ended connection whose error (a reset) the task has not read is
/// refused by name, and the error is still there for the task.
#[test]
fn ended_connection_with_an_unread_error_is_refused() {
    run("ended_pending", || {
        let s = crtools_tests::Scratch::new("dr_inet", "ended_pending");
        let t = Tree::start(&s, &["ended", "pending"]);
        t.wait_line("phase1 ");
        let root = t.pids[0];
        let err = do_dump(root, &s.images(), true).expect_err("dump must refuse the unread error");
        assert!(err.contains("127.0.0.1:") && err.contains("has not read yet"), "unclear error: {err}");
        assert_running_untraced(root);
        t.signal_all(libc::SIGUSR1);
        let done = t.wait_line("done ");
        assert!(done.ends_with(" ok"), "{done}\nlog:\n{}", t.text());
    });
}

/// The connections a dump holds silent are let go once its images are
/// deleted: the keeper does not outlive the dump it belongs to.
#[test]
fn keeper_of_a_deleted_dump_exits() {
    run("keeper_deleted", || {
        let s = crtools_tests::Scratch::new("dr_inet", "keeper_deleted");
        let (t, c, _port) = tcp_phase1(&s, &["tcp"]);
        let before = keepers();
        do_dump(t.pids[0], &s.images(), true).unwrap_or_else(|e| panic!("dump: {e}"));
        let deadline = Instant::now() + ANSWER;
        while keepers() <= before {
            assert!(Instant::now() < deadline, "no process holds the dumped connections");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::remove_dir_all(s.images()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while keepers() > before {
            assert!(Instant::now() < deadline, "the keeper outlived its deleted dump");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(c);
    });
}

/// Sizes the `fin` victim uses (tests/src/bin/victim_inet.rs).
const BIG: usize = 100_000;
const SMALL: usize = 1000;
const MORE: usize = 2000;
const WHILE_DOWN: usize = 10_000;

/// A connection to 127.0.0.1:`port` with the buffer sizes given (set
/// before connect, so the window follows them).
fn connect_with(port: u16, rcvbuf: Option<i32>, sndbuf: Option<i32>) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns until
    // it is given to the TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        for (name, v) in [(libc::SO_RCVBUF, rcvbuf), (libc::SO_SNDBUF, sndbuf)] {
            if let Some(v) = v {
                assert_eq!(libc::setsockopt(fd, libc::SOL_SOCKET, name, &v as *const i32 as *const _, 4), 0);
            }
        }
        let a = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes([127, 0, 0, 1]) },
            sin_zero: [0; 8],
        };
        assert_eq!(libc::connect(fd, &a as *const _ as *const _, 16), 0, "connect to the victim");
        let s = TcpStream::from_raw_fd(fd);
        s.set_read_timeout(Some(ANSWER)).unwrap();
        s
    }
}

fn write_pattern(s: &mut TcpStream, k: u8, from: usize, to: usize) {
    let data: Vec<u8> = (from..to).map(|i| pattern(k, i)).collect();
    s.write_all(&data).unwrap();
}

/// Reads `n` bytes of pattern `k`, then the end of the stream (no more
/// bytes, no reset).
fn read_to_eof(s: &mut TcpStream, k: u8, n: usize) -> Result<(), String> {
    read_pattern(s, k, n)?;
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        Ok(r) => Err(format!("stream {k}: {r} bytes after the {n} expected, not the end")),
        Err(e) => Err(format!("stream {k}: {e} where the end was expected")),
    }
}

#[test]
fn half_closed_connections_keep_their_bytes_and_fins() {
    run("fin", || {
        let s = crtools_tests::Scratch::new("dr_inet", "fin");
        let t = Tree::start(&s, &["fin"]);
        let ready = t.wait_line("ready ");
        let port: u16 = field(&ready, "port").parse().unwrap();
        // The test's first connection: it writes and shuts down at once (the
        // victim's end goes CLOSE-WAIT and writes more than this one reads).
        let mut t1 = connect_with(port, Some(4096), None);
        write_pattern(&mut t1, 50, 0, SMALL);
        t1.shutdown(std::net::Shutdown::Write).unwrap();
        // The second: the victim writes and shuts down (FIN-WAIT-2); this
        // one writes more than the victim reads.
        let mut t2 = connect_with(port, None, Some(1 << 20));
        write_pattern(&mut t2, 61, 0, BIG);
        let phase1 = t.wait_line("phase1 ");
        assert!(phase1.starts_with("phase1 role=fin"), "{phase1}");
        eprintln!("fin victim at dump: {phase1}");
        let root = t.pids[0];
        let conns = connection_inodes(port);
        assert!(conns.len() >= 2, "the victim's connections: {conns:?}");
        do_dump(root, &s.images(), true).unwrap_or_else(|e| panic!("dump: {e}"));
        wait_gone(root);
        // The victim's FIN-WAIT-2 end still takes bytes, after the restore:
        // sent now, they go unanswered (never reset) while the tree is down.
        write_pattern(&mut t2, 61, BIG, BIG + WHILE_DOWN);
        // The keeper names itself once forked: wait for it.
        let deadline = Instant::now() + ANSWER;
        while keepers() == 0 {
            assert!(Instant::now() < deadline, "no process holds the dumped connections");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut out = Vec::new();
        engine::show::show(
            &engine::show::ShowOptions { dir: Some(s.images()), file: None, contents: false, json: false },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&out);
        for st in ["FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "LAST-ACK", "CLOSING", "received; sent, not acknowledged"]
        {
            assert!(text.contains(st), "show does not say {st:?}:\n{text}");
        }
        assert!(t1.take_error().unwrap().is_none() && t2.take_error().unwrap().is_none());
        do_restore(root, &s.images(), true).unwrap_or_else(|e| panic!("restore: {e}\nlog:\n{}", t.text()));
        assert_running_untraced(root);
        // The connections held since the dump are the restored ones: never
        // closed, a segment of t2 sent during the restore could not meet a
        // closed port (and be answered with a reset).
        assert_eq!(connection_inodes(port), conns, "the restored connections are not the held ones");
        t.signal_all(libc::SIGUSR1);
        t2.shutdown(std::net::Shutdown::Write).unwrap();
        let r1 = read_to_eof(&mut t1, 51, BIG + MORE);
        let r2 = read_to_eof(&mut t2, 60, SMALL);
        let done = t.wait_line("done ");
        assert!(r1.is_ok() && r2.is_ok() && done.ends_with(" ok"), "{r1:?} {r2:?}\nlog:\n{}", t.text());
    });
}

/// A connection still opening (SYN-SENT: the peer's accept queue is full,
/// its SYNs are dropped) is dumped with --tcp-established and restored
/// still opening, from the same port with the same initial sequence
/// number, and completes once the peer has room; the half-closed pair
/// beside it finishes its exchange.
#[test]
fn connection_still_opening_survives() {
    run("synsent", || {
        let s = crtools_tests::Scratch::new("dr_inet", "synsent");
        // A listener whose accept queue is full (backlog 0 holds one): the
        // victim's SYN is dropped, it stays SYN-SENT and retries.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // SAFETY: listen again on our own socket, with a backlog of 0.
        assert_eq!(unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 0) }, 0);
        let _first = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let t = Tree::start(&s, &["synsent", &port.to_string()]);
        t.wait_line("ready server=");
        // The local port of the SYN-SENT connection (state 02 in /proc/net/tcp).
        let dst = format!("0100007F:{port:04X}");
        let syn_port = || -> Option<u16> {
            std::fs::read_to_string("/proc/net/tcp").unwrap().lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&dst.as_str()) && f.get(3) == Some(&"02"))
                    .then(|| u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok())?
            })
        };
        let before = syn_port().expect("no SYN-SENT connection");
        let root = t.pids[0];
        do_dump(root, &s.images(), true).unwrap_or_else(|e| panic!("dump: {e}"));
        wait_gone(root);
        do_restore(root, &s.images(), true).unwrap_or_else(|e| panic!("restore: {e}\nlog:\n{}", t.text()));
        assert_running_untraced(root);
        assert_eq!(syn_port(), Some(before), "not opening again from the same port");
        // Room in the queue: the victim's next SYN gets through.
        drop(l.accept().unwrap());
        t.signal_all(libc::SIGUSR1);
        let (mut c, from) = l.accept().unwrap();
        assert_eq!(from.port(), before, "connected from another port");
        c.set_read_timeout(Some(ANSWER)).unwrap();
        let mut got = [0u8; 2];
        c.read_exact(&mut got).unwrap();
        let done = t.wait_line("done ");
        assert!(done.ends_with(" ok"), "{done}");
        assert_eq!(&got, b"hi");
    });
}

#[test]
fn udp_server_keeps_its_queue_and_echoes() {
    run("udp", || {
        let s = crtools_tests::Scratch::new("dr_inet", "udp");
        let t = Tree::start(&s, &["udp"]);
        let ready = t.wait_line("ready ");
        let port: u16 = field(&ready, "port").parse().unwrap();
        let root = t.pids[0];
        do_dump(root, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        wait_gone(root);
        do_restore(root, &s.images(), false).unwrap_or_else(|e| panic!("restore: {e}\nlog:\n{}", t.text()));
        t.signal_all(libc::SIGUSR1);
        let q = t.wait_line("queue ");
        assert_eq!(q, "queue ok", "log:\n{}", t.text());
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(ANSWER)).unwrap();
        for m in ["e0", "echo one", "e2"] {
            u.send_to(m.as_bytes(), ("127.0.0.1", port)).unwrap();
            let mut b = [0u8; 64];
            let (n, _) = u.recv_from(&mut b).unwrap();
            assert_eq!(&b[..n], m.as_bytes());
        }
        let done = t.wait_line("done ");
        assert!(done.ends_with(" ok"), "{done}");
    });
}

#[test]
fn ipv6_listeners_and_v4_mapped_connections_survive() {
    run("v6", || {
        let s = crtools_tests::Scratch::new("dr_inet", "v6");
        let t = Tree::start(&s, &["v6"]);
        let ready = t.wait_line("ready ");
        let only: u16 = field(&ready, "only").parse().unwrap();
        let any: u16 = field(&ready, "any").parse().unwrap();
        let root = t.pids[0];
        do_dump(root, &s.images(), false).unwrap_or_else(|e| panic!("dump: {e}"));
        wait_gone(root);
        do_restore(root, &s.images(), false).unwrap_or_else(|e| panic!("restore: {e}\nlog:\n{}", t.text()));
        // The v6-only listener is not reachable over IPv4; the other one is.
        assert!(TcpStream::connect(("127.0.0.1", only)).is_err(), "IPV6_V6ONLY lost");
        let mut a = TcpStream::connect(("::1", only)).expect("connect to [::1]");
        let mut b = TcpStream::connect(("127.0.0.1", any)).expect("a v4-mapped connection");
        t.signal_all(libc::SIGUSR1);
        for c in [&mut a, &mut b] {
            c.set_read_timeout(Some(ANSWER)).unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).unwrap();
            assert_eq!(got, "ok\n");
        }
        let done = t.wait_line("done ");
        assert!(done.ends_with(" ok"), "{done}");
    });
}
