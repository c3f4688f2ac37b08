//! Victim with inet sockets that checks itself after restore. Every line it
//! reports is appended to LOG; phase 2 starts on SIGUSR1.
//!
//! `victim_inet tcp LOG [cork]`: a TCP server on 127.0.0.1 (a listener
//! with options) and a client child in the tree. The server accepts its
//! child's connection and one from the test (outside the tree); before the
//! dump, each side writes most of a fixed pattern without the other
//! reading, so bytes are in flight both ways (unread, unacknowledged and
//! never sent). On SIGUSR1 every side writes the rest and reads everything
//! the other side writes, checking each byte; the server then accepts one
//! more connection and answers "new". Names and options are compared with
//! what they were. `cork`: the server also holds a corked UDP socket (the
//! dump refuses it, after the connections went into repair mode). The
//! server also holds a connection signed with TCP_MD5SIG keys on both
//! ends (a listener of its own that expects them from 127.0.0.3), with IP
//! options, SO_TIMESTAMP and a window clamp set on it: after the restore
//! it still talks, the listener still refuses an unsigned peer and takes a
//! signed one, and the options are as they were.
//!
//! `victim_inet v6 LOG`: IPv6 listeners (one IPV6_V6ONLY on ::1, one on ::
//! taking v4-mapped connections) and a UDP socket with a datagram queued;
//! on SIGUSR1 it reads the datagram and answers one connection on each.
//!
//! `victim_inet fin LOG`: half-closed TCP connections with bytes queued
//! both ways. Four loopback pairs in the tree, each end in one of the
//! states a connection passes through while it closes: FIN-WAIT-1 with
//! ESTABLISHED, FIN-WAIT-2 with CLOSE-WAIT, FIN-WAIT-2 with LAST-ACK,
//! CLOSING with FIN-WAIT-2 (the end whose FIN must not arrive has more
//! queued than its peer's small receive buffer takes); FIN-WAIT-2 with
//! CLOSE-WAIT again over IPv6, and with LAST-ACK on IPv6 sockets with
//! v4-mapped addresses. And a listener for
//! two connections of the test: on the first the test writes and shuts
//! down (the victim's end is CLOSE-WAIT and writes more than the test
//! reads), on the second the victim writes and shuts down (FIN-WAIT-2)
//! while the test writes. States are awaited through TCP_INFO and logged.
//! On SIGUSR1 every end checks its state is still the same, then each side
//! reads everything to the end of the stream (every byte checked, the end
//! exactly where the writer shut down), writes the rest of its bytes and
//! shuts down where it had not; then every connection must finish closing
//! (state CLOSE on both ends).
//!
//! `victim_inet synsent LOG PORT`: a connection to PORT still opening
//! (SYN-SENT: the test's listener has a full accept queue), and before it
//! a FIN-WAIT-2 / CLOSE-WAIT pair; on SIGUSR1 it waits until it is
//! connected and writes "hi", and the pair finishes its exchange and
//! closes.
//!
//! `victim_inet ended LOG [pending]`: TCP connections that ended and are
//! still held (state CLOSE): two loopback pairs (IPv4, IPv6) where both
//! ends shut down and each left the other's bytes unread, and one end
//! reset by its peer (SO_LINGER 0) with bytes unread and its error read
//! (`pending`: not read, so the dump must refuse it). On SIGUSR1 (after a
//! refused dump, the error first: still ECONNRESET) every end checks it is
//! still CLOSE with the same local name and SO_PEERNAME, getpeername says
//! ENOTCONN, it reads its bytes exactly and then the end of the stream,
//! and a write fails with EPIPE.
//!
//! `victim_inet udp LOG`: a UDP server with datagrams queued from two
//! sockets of its own (one bound, one connected); on SIGUSR1 it reads them
//! back (contents and senders), then echoes three datagrams. It also holds
//! multicast memberships (any source, and source-specific) and checks
//! they still deliver, and a UDP-Lite socket with a datagram queued and
//! its checksum coverage options set.
use std::ffi::CString;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static GO: AtomicBool = AtomicBool::new(false);

/// Bytes the client writes to the server, the server to the client, the
/// test to the server and the server to the test.
pub const C2S: usize = 100_000;
pub const S2C: usize = 200_000;
pub const T2S: usize = 60_000;
pub const S2T: usize = 150_000;
/// What each side keeps for after the restore.
const LATER: usize = 1000;

extern "C" fn on_usr1(_: i32) {
    GO.store(true, Ordering::SeqCst);
}

/// Byte `i` of pattern stream `k` (shared with the tests).
pub fn pattern(k: u8, i: usize) -> u8 {
    ((i * 7 + k as usize * 13 + i / 251) & 0xff) as u8
}

fn log(path: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).expect("open log");
    f.write_all(format!("{line}\n").as_bytes()).expect("write log");
}

fn check(r: i64, what: &str) -> i64 {
    if r < 0 {
        let e = std::io::Error::last_os_error();
        panic!("{what}: {e}");
    }
    r
}

fn setopt(fd: i32, level: i32, name: i32, v: i32) {
    // SAFETY: 4 bytes of v are read.
    check(unsafe { libc::setsockopt(fd, level, name, &v as *const i32 as *const _, 4) } as i64, "setsockopt");
}

fn getopt(fd: i32, level: i32, name: i32) -> i32 {
    let mut v = 0i32;
    let mut l = 4u32;
    // SAFETY: at most 4 bytes are written into v.
    check(unsafe { libc::getsockopt(fd, level, name, &mut v as *mut i32 as *mut _, &mut l) } as i64, "getsockopt");
    v
}

fn sin(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes([127, 0, 0, 1]) },
        sin_zero: [0; 8],
    }
}

fn name_of(fd: i32, peer: bool) -> String {
    // SAFETY: sockaddr_in is plain data.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut l = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: at most l bytes are written into a.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, &mut a as *mut _ as *mut _, &mut l)
        } else {
            libc::getsockname(fd, &mut a as *mut _ as *mut _, &mut l)
        }
    };
    if r < 0 {
        return "none".into();
    }
    let ip = a.sin_addr.s_addr.to_ne_bytes();
    format!("{}.{}.{}.{}:{}", ip[0], ip[1], ip[2], ip[3], u16::from_be(a.sin_port))
}

fn port_of(fd: i32) -> u16 {
    name_of(fd, false).rsplit(':').next().unwrap().parse().unwrap()
}

/// Options and names of a TCP socket, as one comparable string.
fn tcp_opts(fd: i32, with_rcvbuf: bool) -> String {
    let mut lg = libc::linger { l_onoff: 0, l_linger: 0 };
    let mut l = 8u32;
    // SAFETY: at most 8 bytes are written into lg.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &mut lg as *mut _ as *mut _, &mut l) };
    // SAFETY: F_GETFL has no memory arguments.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let mut cc = [0u8; 16];
    let mut cl = 16u32;
    // SAFETY: at most 16 bytes are written into cc.
    unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_CONGESTION, cc.as_mut_ptr() as *mut _, &mut cl) };
    let cc = String::from_utf8_lossy(cc.split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
    format!(
        "name={} peer={} reuseaddr={} nodelay={} keepalive={} idle={} intvl={} cnt={} user_timeout={} linger={}/{} \
         tos={} ttl={} mark={} rcvbuf={} nonblock={} notsent_lowat={} cc={cc}",
        name_of(fd, false),
        name_of(fd, true),
        getopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR),
        getopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY),
        getopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        getopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        getopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        getopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        getopt(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
        lg.l_onoff,
        lg.l_linger,
        getopt(fd, libc::IPPROTO_IP, libc::IP_TOS),
        getopt(fd, libc::IPPROTO_IP, libc::IP_TTL),
        getopt(fd, libc::SOL_SOCKET, libc::SO_MARK),
        // Set by the user it stays; otherwise the kernel tunes it as data flows.
        if with_rcvbuf { getopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF) } else { 0 },
        fl & libc::O_NONBLOCK != 0,
        getopt(fd, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT),
    )
}

fn filter_len(fd: i32) -> i32 {
    let mut n = 0u32;
    // SAFETY: with a length of 0 the kernel only reports the instruction count.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_GET_FILTER, std::ptr::null_mut(), &mut n) };
    n as i32
}

fn nonblock(fd: i32) {
    // SAFETY: fcntl flag calls on our own descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
}

/// One direction of a connection: how much is written or read of a pattern.
struct Flow {
    fd: i32,
    k: u8,
    done: usize,
    total: usize,
}

impl Flow {
    /// Writes what the socket takes, up to `limit`; true when at `limit`.
    fn write(&mut self, limit: usize) -> bool {
        while self.done < limit {
            let n = (limit - self.done).min(16384);
            let chunk: Vec<u8> = (self.done..self.done + n).map(|i| pattern(self.k, i)).collect();
            // SAFETY: chunk.len() bytes of chunk are read.
            let r = unsafe { libc::send(self.fd, chunk.as_ptr() as *const _, chunk.len(), libc::MSG_NOSIGNAL) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    return false;
                }
                panic!("send: {e}");
            }
            self.done += r as usize;
        }
        true
    }

    /// Reads what is there; Err on a wrong byte or an early end.
    fn read(&mut self) -> Result<bool, String> {
        let mut buf = vec![0u8; 65536];
        while self.done < self.total {
            // SAFETY: at most buf.len() bytes are written into buf.
            let r = unsafe { libc::recv(self.fd, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    return Ok(false);
                }
                return Err(format!("recv after {} bytes: {e}", self.done));
            }
            if r == 0 {
                return Err(format!("end of stream after {} of {} bytes", self.done, self.total));
            }
            for (j, &b) in buf[..r as usize].iter().enumerate() {
                let i = self.done + j;
                if i >= self.total || b != pattern(self.k, i) {
                    return Err(format!("stream {} byte {i} is {b}, expected {}", self.k, pattern(self.k, i)));
                }
            }
            self.done += r as usize;
        }
        Ok(true)
    }
}

/// Runs writers and readers until all are complete (or 90 s pass).
fn exchange(w: &mut [Flow], r: &mut [Flow]) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        let mut all = true;
        for f in w.iter_mut() {
            all &= f.write(f.total);
        }
        for f in r.iter_mut() {
            all &= f.read()?;
        }
        if all {
            return Ok(());
        }
        if start.elapsed().as_secs() > 90 {
            let st: Vec<String> = w.iter().chain(r.iter()).map(|f| format!("{}:{}/{}", f.k, f.done, f.total)).collect();
            return Err(format!("timed out: {st:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn wait_go() {
    while !GO.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Adds a TCP_MD5SIG key for the peer `ip` (struct tcp_md5sig).
fn md5_key(fd: i32, ip: [u8; 4], key: &[u8]) {
    let mut b = [0u8; 216];
    b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    b[4..8].copy_from_slice(&ip);
    b[130..132].copy_from_slice(&(key.len() as u16).to_ne_bytes());
    b[136..136 + key.len()].copy_from_slice(key);
    // SAFETY: the kernel reads the 216-byte struct.
    check(
        unsafe { libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, b.as_ptr() as *const _, 216) } as i64,
        "TCP_MD5SIG",
    );
}

fn at(ip: [u8; 4], port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in { sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip) }, ..sin(port) }
}

/// A client from 127.0.0.3, signed with `key` when given; whether it gets
/// connected to `port` within a second (a listener that expects a key
/// drops unsigned SYNs).
fn signed_client(port: u16, key: Option<&[u8]>) -> (i32, bool) {
    let c = tcp_socket();
    let local = at([127, 0, 0, 3], 0);
    // SAFETY: local is a valid sockaddr_in.
    check(unsafe { libc::bind(c, &local as *const _ as *const _, 16) } as i64, "bind 127.0.0.3");
    if let Some(k) = key {
        md5_key(c, [127, 0, 0, 1], k);
    }
    nonblock(c);
    let to = sin(port);
    // SAFETY: to is a valid sockaddr_in.
    unsafe { libc::connect(c, &to as *const _ as *const _, 16) };
    let mut p = libc::pollfd { fd: c, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one pollfd.
    let ready = unsafe { libc::poll(&mut p, 1, 1000) } == 1;
    (c, ready && getopt(c, libc::SOL_SOCKET, libc::SO_ERROR) == 0 && name_of(c, true) != "none")
}

/// The signed connection's options, as one comparable string.
fn signed_opts(fd: i32) -> String {
    let mut o = [0u8; 40];
    let mut l = 40u32;
    // SAFETY: at most 40 bytes are written into o.
    unsafe { libc::getsockopt(fd, libc::IPPROTO_IP, libc::IP_OPTIONS, o.as_mut_ptr() as *mut _, &mut l) };
    format!(
        "name={} peer={} ip_options={:?} timestamp={} window_clamp={}",
        name_of(fd, false),
        name_of(fd, true),
        &o[..l as usize],
        getopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMP),
        getopt(fd, libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP)
    )
}

/// The signed listener, its connection's two ends (client, accepted).
fn signed_pair() -> (i32, i32, i32) {
    let l = tcp_socket();
    md5_key(l, [127, 0, 0, 3], b"listener-key");
    let a = sin(0);
    // SAFETY: a is a valid sockaddr_in.
    check(unsafe { libc::bind(l, &a as *const _ as *const _, 16) } as i64, "bind");
    // SAFETY: plain call.
    check(unsafe { libc::listen(l, 4) } as i64, "listen");
    let (c, ok) = signed_client(port_of(l), Some(b"listener-key"));
    assert!(ok, "the signed client did not connect");
    // SAFETY: accept with no address wanted.
    let s = check(unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) } as i64, "accept") as i32;
    // Record route (7), length 7, pointer 4, room for one address; then NOP NOP EOL.
    let opts = [7u8, 7, 4, 0, 0, 0, 0, 1];
    // SAFETY: the kernel reads 8 bytes.
    check(
        unsafe { libc::setsockopt(c, libc::IPPROTO_IP, libc::IP_OPTIONS, opts.as_ptr() as *const _, 8) } as i64,
        "IP_OPTIONS",
    );
    setopt(c, libc::SOL_SOCKET, libc::SO_TIMESTAMP, 1);
    setopt(c, libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP, 20000);
    nonblock(s);
    (l, c, s)
}

/// After the restore: the signed connection carries bytes both ways, the
/// listener drops an unsigned peer from 127.0.0.3 and takes a signed one.
fn signed_after(l: i32, c: i32, s: i32) -> Result<(), String> {
    let mut w = [Flow { fd: c, k: 5, done: 0, total: 3000 }, Flow { fd: s, k: 6, done: 0, total: 3000 }];
    let mut r = [Flow { fd: s, k: 5, done: 0, total: 3000 }, Flow { fd: c, k: 6, done: 0, total: 3000 }];
    exchange(&mut w, &mut r).map_err(|e| format!("signed connection: {e}"))?;
    let (u, ok) = signed_client(port_of(l), None);
    // SAFETY: our descriptor.
    unsafe { libc::close(u) };
    if ok {
        return Err("the signed listener took an unsigned peer: its TCP_MD5SIG key is gone".into());
    }
    let (k, ok) = signed_client(port_of(l), Some(b"listener-key"));
    // SAFETY: our descriptor.
    unsafe { libc::close(k) };
    if !ok {
        return Err("the signed listener did not take a signed peer".into());
    }
    Ok(())
}

fn tcp_socket() -> i32 {
    // SAFETY: plain socket call.
    check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) } as i64, "socket") as i32
}

fn tcp(logp: &str, cork: bool) {
    // SAFETY: plain socket calls on our own descriptors.
    let l = tcp_socket();
    setopt(l, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
    setopt(l, libc::IPPROTO_IP, libc::IP_FREEBIND, 1);
    setopt(l, libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP, 40000);
    let a = sin(0);
    // SAFETY: a is a valid sockaddr_in.
    check(unsafe { libc::bind(l, &a as *const _ as *const _, 16) } as i64, "bind");
    // SAFETY: plain call.
    check(unsafe { libc::listen(l, 7) } as i64, "listen");
    let port = port_of(l);
    // SAFETY: single-threaded; the child only runs its own code.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: our copy of the listener.
        unsafe { libc::close(l) };
        client(logp, port);
        return;
    }
    let lopts = format!(
        "name={} reuseaddr={} freebind={} window_clamp={}",
        name_of(l, false),
        getopt(l, libc::SOL_SOCKET, libc::SO_REUSEADDR),
        getopt(l, libc::IPPROTO_IP, libc::IP_FREEBIND),
        getopt(l, libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP)
    );
    log(logp, &format!("ready port={port} server={} client={child}", std::process::id()));
    // SAFETY: accept with no address wanted.
    let ca = check(unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) } as i64, "accept") as i32;
    // SAFETY: as above.
    let tb = check(unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) } as i64, "accept") as i32;
    nonblock(ca);
    nonblock(tb);
    // Accept-all classic filter (ret #0xffffffff) on the child's connection.
    let prog = [libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: u32::MAX }];
    let fprog = libc::sock_fprog { len: 1, filter: prog.as_ptr() as *mut _ };
    // SAFETY: the kernel reads the sock_fprog and its one instruction.
    check(
        unsafe {
            libc::setsockopt(
                ca,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &fprog as *const _ as *const _,
                std::mem::size_of::<libc::sock_fprog>() as u32,
            )
        } as i64,
        "SO_ATTACH_FILTER",
    );
    let _corked = cork.then(|| {
        // SAFETY: plain socket call.
        let u = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        setopt(u, libc::IPPROTO_UDP, libc::UDP_CORK, 1);
        u
    });
    let (sl, sc, ss) = signed_pair();
    let before = (tcp_opts(ca, false), tcp_opts(tb, false), filter_len(ca), lopts.clone());
    let signed_before = signed_opts(sc);
    let mut to_c = Flow { fd: ca, k: 1, done: 0, total: S2C };
    let mut to_t = Flow { fd: tb, k: 3, done: 0, total: S2T };
    to_c.write(S2C - LATER);
    to_t.write(S2T - LATER);
    log(logp, &format!("phase1 role=server wrote_c={} wrote_t={}", to_c.done, to_t.done));
    wait_go();
    // Before any traffic: receive buffer tuning moves a connection's window clamp.
    let signed_now = signed_opts(sc);
    let from_c = Flow { fd: ca, k: 0, done: 0, total: C2S };
    let from_t = Flow { fd: tb, k: 2, done: 0, total: T2S };
    let mut res = exchange(&mut [to_c, to_t], &mut [from_c, from_t]);
    if res.is_ok() && signed_before != signed_now {
        res = Err(format!("signed connection's options changed: {signed_before} -> {signed_now}"));
    }
    if res.is_ok() {
        res = signed_after(sl, sc, ss);
    }
    if res.is_ok() {
        // The listener still accepts.
        let mut p = libc::pollfd { fd: l, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd.
        if unsafe { libc::poll(&mut p, 1, 90_000) } != 1 {
            res = Err("no new connection on the listener".into());
        } else {
            // SAFETY: accept with no address wanted.
            let n = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
            // SAFETY: 4 bytes are read.
            unsafe { libc::send(n, b"new\n".as_ptr() as *const _, 4, libc::MSG_NOSIGNAL) };
            // SAFETY: our descriptor.
            unsafe { libc::close(n) };
        }
    }
    let lopts_after = format!(
        "name={} reuseaddr={} freebind={} window_clamp={}",
        name_of(l, false),
        getopt(l, libc::SOL_SOCKET, libc::SO_REUSEADDR),
        getopt(l, libc::IPPROTO_IP, libc::IP_FREEBIND),
        getopt(l, libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP)
    );
    let after = (tcp_opts(ca, false), tcp_opts(tb, false), filter_len(ca), lopts_after);
    if res.is_ok() && before != after {
        res = Err(format!("options changed: {before:?} -> {after:?}"));
    }
    match res {
        Ok(()) => log(logp, "done role=server ok"),
        Err(e) => log(logp, &format!("done role=server FAIL {e}")),
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn client(logp: &str, port: u16) {
    let s = tcp_socket();
    setopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF, 4096);
    setopt(s, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    setopt(s, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    setopt(s, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 77);
    setopt(s, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 11);
    setopt(s, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 5);
    setopt(s, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 12345);
    setopt(s, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, 65536);
    // SAFETY: 4 bytes of "reno" are read.
    unsafe { libc::setsockopt(s, libc::IPPROTO_TCP, libc::TCP_CONGESTION, b"reno".as_ptr() as *const _, 4) };
    setopt(s, libc::IPPROTO_IP, libc::IP_TOS, 0x10);
    setopt(s, libc::IPPROTO_IP, libc::IP_TTL, 33);
    setopt(s, libc::SOL_SOCKET, libc::SO_MARK, 7);
    let lg = libc::linger { l_onoff: 1, l_linger: 3 };
    // SAFETY: 8 bytes of lg are read.
    unsafe { libc::setsockopt(s, libc::SOL_SOCKET, libc::SO_LINGER, &lg as *const _ as *const _, 8) };
    let a = sin(port);
    // SAFETY: a is a valid sockaddr_in.
    check(unsafe { libc::connect(s, &a as *const _ as *const _, 16) } as i64, "connect");
    nonblock(s);
    let before = tcp_opts(s, true);
    let mut out = Flow { fd: s, k: 0, done: 0, total: C2S };
    out.write(C2S - LATER);
    log(logp, &format!("phase1 role=client wrote={}", out.done));
    wait_go();
    let mut inp = Flow { fd: s, k: 1, done: 0, total: S2C };
    let mut res = exchange(std::slice::from_mut(&mut out), std::slice::from_mut(&mut inp));
    let after = tcp_opts(s, true);
    if res.is_ok() && before != after {
        res = Err(format!("options changed: {before} -> {after}"));
    }
    match res {
        Ok(()) => log(logp, "done role=client ok"),
        Err(e) => log(logp, &format!("done role=client FAIL {e}")),
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn udp_socket(port: u16) -> i32 {
    // SAFETY: plain socket call.
    let u = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) } as i64, "socket") as i32;
    let a = sin(port);
    // SAFETY: a is a valid sockaddr_in.
    check(unsafe { libc::bind(u, &a as *const _ as *const _, 16) } as i64, "bind");
    u
}

/// A multicast receiver on the wildcard address (joined to 239.1.2.3 on
/// lo by index, and to 232.1.1.1 from source 127.0.0.1 only) and a sender
/// whose multicast interface is lo's address.
fn multicast_pair() -> (i32, i32) {
    // SAFETY: plain socket calls on our own descriptors, with valid structs.
    unsafe {
        let mc = check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) as i64, "socket") as i32;
        let any = libc::sockaddr_in { sin_addr: libc::in_addr { s_addr: 0 }, ..sin(0) };
        check(libc::bind(mc, &any as *const _ as *const _, 16) as i64, "bind");
        let ip = |a: [u8; 4]| libc::in_addr { s_addr: u32::from_ne_bytes(a) };
        let m = libc::ip_mreqn { imr_multiaddr: ip([239, 1, 2, 3]), imr_address: ip([0; 4]), imr_ifindex: 1 };
        let n = std::mem::size_of_val(&m) as u32;
        check(
            libc::setsockopt(mc, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &m as *const _ as *const _, n) as i64,
            "join",
        );
        let src = libc::ip_mreq_source {
            imr_multiaddr: ip([232, 1, 1, 1]),
            imr_interface: ip([127, 0, 0, 1]),
            imr_sourceaddr: ip([127, 0, 0, 1]),
        };
        let n = std::mem::size_of_val(&src) as u32;
        let r = libc::setsockopt(mc, libc::IPPROTO_IP, libc::IP_ADD_SOURCE_MEMBERSHIP, &src as *const _ as *const _, n);
        check(r as i64, "join source-specific");
        nonblock(mc);
        let ms = check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) as i64, "socket") as i32;
        let lo = ip([127, 0, 0, 1]);
        check(
            libc::setsockopt(ms, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &lo as *const _ as *const _, 4) as i64,
            "IP_MULTICAST_IF",
        );
        (mc, ms)
    }
}

/// After the restore: what the sender sends to either group reaches the
/// receiver; a group it never joined does not.
fn multicast_after(mc: i32, ms: i32) -> Result<(), String> {
    let port = port_of(mc);
    for (group, what, joined) in
        [([239, 1, 2, 3], "m-any", true), ([239, 9, 9, 9], "m-none", false), ([232, 1, 1, 1], "m-ssm", true)]
    {
        let to = at(group, port);
        // SAFETY: what.len() bytes and the address are read.
        check(
            unsafe { libc::sendto(ms, what.as_ptr() as *const _, what.len(), 0, &to as *const _ as *const _, 16) }
                as i64,
            "sendto group",
        );
        let mut p = libc::pollfd { fd: mc, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd.
        let got = unsafe { libc::poll(&mut p, 1, if joined { 5000 } else { 300 }) } == 1;
        if got != joined {
            return Err(format!("multicast to {group:?}: received {got}, joined {joined}"));
        }
        if got {
            let mut b = [0u8; 16];
            // SAFETY: at most 16 bytes into b.
            let n = unsafe { libc::recv(mc, b.as_mut_ptr() as *mut _, 16, 0) };
            if n < 0 || &b[..n as usize] != what.as_bytes() {
                return Err(format!("multicast to {group:?}: got {:?}", &b[..n.max(0) as usize]));
            }
        }
    }
    Ok(())
}

const SOL_UDPLITE: i32 = 136;
const UDPLITE_SEND_CSCOV: i32 = 10;
const UDPLITE_RECV_CSCOV: i32 = 11;

/// A UDP-Lite receiver (checksum coverage: sends 20 bytes, takes 12 at
/// least) with a datagram queued from a UDP-Lite sender of its own.
fn udplite_pair() -> (i32, i32) {
    let sock = || {
        // SAFETY: plain socket call.
        let u = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE) } as i64, "socket");
        let a = sin(0);
        // SAFETY: a is a valid sockaddr_in.
        check(unsafe { libc::bind(u as i32, &a as *const _ as *const _, 16) } as i64, "bind");
        u as i32
    };
    let (r, k) = (sock(), sock());
    setopt(r, SOL_UDPLITE, UDPLITE_SEND_CSCOV, 20);
    setopt(r, SOL_UDPLITE, UDPLITE_RECV_CSCOV, 12);
    setopt(k, SOL_UDPLITE, UDPLITE_SEND_CSCOV, 16);
    let to = sin(port_of(r));
    // SAFETY: 5 bytes and the address are read.
    check(
        unsafe { libc::sendto(k, b"lite0".as_ptr() as *const _, 5, 0, &to as *const _ as *const _, 16) } as i64,
        "sendto",
    );
    (r, k)
}

/// After the restore: the queued datagram is there, from its sender; the
/// coverage options are as set; a new one still arrives.
fn udplite_after(r: i32, k: i32) -> Result<(), String> {
    let opts = (
        getopt(r, SOL_UDPLITE, UDPLITE_SEND_CSCOV),
        getopt(r, SOL_UDPLITE, UDPLITE_RECV_CSCOV),
        getopt(k, SOL_UDPLITE, UDPLITE_SEND_CSCOV),
    );
    if opts != (20, 12, 16) {
        return Err(format!("UDP-Lite coverage options are {opts:?}, were (20, 12, 16)"));
    }
    let to = sin(port_of(r));
    // SAFETY: 5 bytes and the address are read.
    unsafe { libc::sendto(k, b"lite1".as_ptr() as *const _, 5, 0, &to as *const _ as *const _, 16) };
    for want in [b"lite0", b"lite1"] {
        let mut p = libc::pollfd { fd: r, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd.
        if unsafe { libc::poll(&mut p, 1, 90_000) } != 1 {
            return Err(format!("UDP-Lite: no {:?}", String::from_utf8_lossy(want)));
        }
        let mut buf = [0u8; 16];
        // SAFETY: sockaddr_in is plain data.
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut l = 16u32;
        // SAFETY: at most 16 bytes into buf and l bytes into a.
        let n = unsafe { libc::recvfrom(r, buf.as_mut_ptr() as *mut _, 16, 0, &mut a as *mut _ as *mut _, &mut l) };
        if n != 5 || &buf[..5] != want || u16::from_be(a.sin_port) != port_of(k) {
            return Err(format!(
                "UDP-Lite: got {:?} from port {}",
                &buf[..n.max(0) as usize],
                u16::from_be(a.sin_port)
            ));
        }
    }
    Ok(())
}

fn udp(logp: &str) {
    let srv = udp_socket(0);
    setopt(srv, libc::SOL_SOCKET, libc::SO_BROADCAST, 1);
    // IP options a server sets to learn its errors and destinations.
    let ip_opts =
        [(libc::IP_RECVERR, 1), (libc::IP_PKTINFO, 1), (libc::IP_MULTICAST_TTL, 7), (libc::IP_MULTICAST_LOOP, 0)];
    for &(o, v) in &ip_opts {
        setopt(srv, libc::IPPROTO_IP, o, v);
    }
    let port = port_of(srv);
    let k = udp_socket(0);
    // SAFETY: plain socket call.
    let k2 = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) } as i64, "socket") as i32;
    let to = sin(port);
    // SAFETY: to is a valid sockaddr_in.
    check(unsafe { libc::connect(k2, &to as *const _ as *const _, 16) } as i64, "connect");
    let msgs: Vec<Vec<u8>> = vec![b"q0".to_vec(), vec![7u8; 3000], b"q2 the last".to_vec()];
    for m in &msgs {
        // SAFETY: m.len() bytes of m and the address are read.
        check(
            unsafe { libc::sendto(k, m.as_ptr() as *const _, m.len(), 0, &to as *const _ as *const _, 16) } as i64,
            "sendto",
        );
    }
    // SAFETY: 2 bytes are read.
    check(unsafe { libc::send(k2, b"c0".as_ptr() as *const _, 2, 0) } as i64, "send");
    let (kname, k2name, k2peer) = (name_of(k, false), name_of(k2, false), name_of(k2, true));
    let (mc, ms) = multicast_pair();
    let (lite, lite_k) = udplite_pair();
    log(logp, &format!("ready port={port} server={}", std::process::id()));
    wait_go();
    let mut res = multicast_after(mc, ms);
    let recv = |fd: i32| -> (Vec<u8>, String) {
        let mut buf = vec![0u8; 65536];
        // SAFETY: sockaddr_in is plain data.
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut l = 16u32;
        // SAFETY: at most buf.len() bytes into buf and l bytes into a.
        let n =
            unsafe { libc::recvfrom(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0, &mut a as *mut _ as *mut _, &mut l) };
        let n = check(n as i64, "recvfrom") as usize;
        let ip = a.sin_addr.s_addr.to_ne_bytes();
        (buf[..n].to_vec(), format!("{}.{}.{}.{}:{}", ip[0], ip[1], ip[2], ip[3], u16::from_be(a.sin_port)))
    };
    let mut want: Vec<(Vec<u8>, String)> = msgs.iter().map(|m| (m.clone(), kname.clone())).collect();
    want.push((b"c0".to_vec(), k2name.clone()));
    for w in &want {
        let got = recv(srv);
        if &got != w {
            res = Err(format!(
                "queued datagram {:?} from {} , expected {:?} from {}",
                got.0.len(),
                got.1,
                w.0.len(),
                w.1
            ));
            break;
        }
    }
    if res.is_ok() && (getopt(srv, libc::SOL_SOCKET, libc::SO_BROADCAST) != 1 || name_of(k2, true) != k2peer) {
        res = Err("SO_BROADCAST or the connected peer changed".into());
    }
    for &(o, v) in &ip_opts {
        let now = getopt(srv, libc::IPPROTO_IP, o);
        if res.is_ok() && now != v {
            res = Err(format!("IP option {o} is {now}, was set to {v}"));
        }
    }
    if res.is_ok() {
        res = udplite_after(lite, lite_k);
    }
    log(logp, &format!("queue {}", if res.is_ok() { "ok" } else { "bad" }));
    if res.is_ok() {
        for _ in 0..3 {
            let (d, from) = recv(srv);
            let (ip, p) = from.rsplit_once(':').unwrap();
            let mut a = sin(p.parse().unwrap());
            let _ = ip;
            a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            // SAFETY: d.len() bytes and the address are read.
            unsafe { libc::sendto(srv, d.as_ptr() as *const _, d.len(), 0, &a as *const _ as *const _, 16) };
        }
    }
    match res {
        Ok(()) => log(logp, "done role=server ok"),
        Err(e) => log(logp, &format!("done role=server FAIL {e}")),
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn sin6(addr: [u8; 16], port: u16) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as u16,
        sin6_port: port.to_be(),
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: addr },
        sin6_scope_id: 0,
    }
}

fn port6(fd: i32) -> u16 {
    // SAFETY: sockaddr_in6 is plain data.
    let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut l = std::mem::size_of::<libc::sockaddr_in6>() as u32;
    // SAFETY: at most l bytes are written into a.
    check(unsafe { libc::getsockname(fd, &mut a as *mut _ as *mut _, &mut l) } as i64, "getsockname");
    u16::from_be(a.sin6_port)
}

/// IPv6: a listener on ::1 with IPV6_V6ONLY, one on :: taking v4-mapped
/// connections, a UDP socket on ::1 with a datagram queued from another.
fn v6(logp: &str) {
    let mut lo = [0u8; 16];
    lo[15] = 1;
    let sock = |ty: i32| {
        // SAFETY: plain socket call.
        check(unsafe { libc::socket(libc::AF_INET6, ty, 0) } as i64, "socket") as i32
    };
    let bind6 = |fd: i32, a: [u8; 16]| {
        let sa = sin6(a, 0);
        // SAFETY: sa is a valid sockaddr_in6.
        check(unsafe { libc::bind(fd, &sa as *const _ as *const _, 28) } as i64, "bind");
    };
    let only = sock(libc::SOCK_STREAM);
    setopt(only, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1);
    bind6(only, lo);
    let any = sock(libc::SOCK_STREAM);
    setopt(any, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0);
    setopt(any, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, 0x20);
    bind6(any, [0; 16]);
    for l in [only, any] {
        // SAFETY: plain call.
        check(unsafe { libc::listen(l, 3) } as i64, "listen");
    }
    let (u, k) = (sock(libc::SOCK_DGRAM), sock(libc::SOCK_DGRAM));
    bind6(u, lo);
    bind6(k, lo);
    let to = sin6(lo, port6(u));
    // SAFETY: 3 bytes and the address are read.
    check(
        unsafe { libc::sendto(k, b"six".as_ptr() as *const _, 3, 0, &to as *const _ as *const _, 28) } as i64,
        "sendto",
    );
    let opts = |_: ()| {
        format!(
            "v6only={}/{} tclass={}",
            getopt(only, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
            getopt(any, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
            getopt(any, libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
        )
    };
    let before = opts(());
    log(logp, &format!("ready only={} any={} server={}", port6(only), port6(any), std::process::id()));
    wait_go();
    let mut res = Ok(());
    let mut buf = [0u8; 16];
    // SAFETY: sockaddr_in6 is plain data.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut fl = 28u32;
    // SAFETY: at most 16 bytes into buf and fl bytes into from.
    let n = unsafe {
        libc::recvfrom(u, buf.as_mut_ptr() as *mut _, 16, libc::MSG_DONTWAIT, &mut from as *mut _ as *mut _, &mut fl)
    };
    if n != 3 || &buf[..3] != b"six" || u16::from_be(from.sin6_port) != port6(k) {
        res = Err(format!("queued datagram: {n} bytes from port {}", u16::from_be(from.sin6_port)));
    }
    for l in [only, any] {
        // SAFETY: accept with no address wanted.
        let c = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
        // SAFETY: 3 bytes are read.
        unsafe { libc::send(c, b"ok\n".as_ptr() as *const _, 3, libc::MSG_NOSIGNAL) };
        // SAFETY: our descriptor.
        unsafe { libc::close(c) };
    }
    let after = opts(());
    if res.is_ok() && before != after {
        res = Err(format!("options changed: {before} -> {after}"));
    }
    match res {
        Ok(()) => log(logp, "done role=server ok"),
        Err(e) => log(logp, &format!("done role=server FAIL {e}")),
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Bytes of the half-closed connections: the large stream (more than a
/// small receive buffer takes), the small one (fits), and what a side that
/// may still write writes after the restore.
pub const BIG: usize = 100_000;
pub const SMALL: usize = 1000;
pub const MORE: usize = 2000;
/// What the test writes to its FIN-WAIT-2 peer while the tree is down.
pub const WHILE_DOWN: usize = 10_000;

const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_FIN_WAIT1: u8 = 4;
const TCP_FIN_WAIT2: u8 = 5;
const TCP_CLOSE: u8 = 7;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;
const TCP_CLOSING: u8 = 11;

fn tcp_state(fd: i32) -> u8 {
    // SAFETY: tcp_info is plain data.
    let mut i: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut l = std::mem::size_of::<libc::tcp_info>() as u32;
    // SAFETY: at most l bytes are written into i.
    check(
        unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut i as *mut _ as *mut _, &mut l) } as i64,
        "TCP_INFO",
    );
    i.tcpi_state
}

fn queued(fd: i32, req: libc::c_ulong) -> i32 {
    let mut n = 0i32;
    // SAFETY: the kernel writes one int.
    check(unsafe { libc::ioctl(fd, req, &mut n) } as i64, "ioctl");
    n
}

/// Polls until every (end, state) holds, 90 s at most.
fn wait_states(ends: &[(&str, i32, u8)]) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        let wrong: Vec<String> = ends
            .iter()
            .filter(|&&(_, fd, st)| tcp_state(fd) != st)
            .map(|&(n, fd, st)| format!("{n} is {} (want {st})", tcp_state(fd)))
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        if start.elapsed().as_secs() > 90 {
            return Err(format!("timed out waiting for states: {wrong:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn shut_wr(fd: i32) {
    // SAFETY: plain call on our descriptor.
    check(unsafe { libc::shutdown(fd, libc::SHUT_WR) } as i64, "shutdown");
}

fn listener(rcvbuf: Option<i32>) -> i32 {
    let l = tcp_socket();
    if let Some(b) = rcvbuf {
        // Inherited by the accepted ends, before their window is chosen.
        setopt(l, libc::SOL_SOCKET, libc::SO_RCVBUF, b);
    }
    let a = sin(0);
    // SAFETY: a is a valid sockaddr_in.
    check(unsafe { libc::bind(l, &a as *const _ as *const _, 16) } as i64, "bind");
    // SAFETY: plain call.
    check(unsafe { libc::listen(l, 8) } as i64, "listen");
    l
}

fn accept(l: i32) -> i32 {
    // SAFETY: accept with no address wanted.
    check(unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) } as i64, "accept") as i32
}

/// A loopback connection (connecting end, accepted end), both non-blocking
/// with a send buffer that takes everything they write; `small_x` /
/// `small_y`: that end gets a small receive buffer.
fn pair(small_x: bool, small_y: bool) -> (i32, i32) {
    pair_in(Net::V4, small_x, small_y)
}

/// Where a pair connects: IPv4, IPv6 (::1), or IPv6 sockets with
/// v4-mapped addresses (IPv4 on the wire).
#[derive(Clone, Copy, PartialEq)]
enum Net {
    V4,
    V6,
    Mapped,
}

fn pair_in(net: Net, small_x: bool, small_y: bool) -> (i32, i32) {
    if net == Net::V4 {
        let l = listener(small_y.then_some(4096));
        let x = tcp_socket();
        if small_x {
            setopt(x, libc::SOL_SOCKET, libc::SO_RCVBUF, 4096);
        }
        let a = sin(port_of(l));
        // SAFETY: a is a valid sockaddr_in.
        check(unsafe { libc::connect(x, &a as *const _ as *const _, 16) } as i64, "connect");
        return finish_pair(l, x);
    }
    let sock6 = || {
        // SAFETY: plain socket call.
        check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) } as i64, "socket") as i32
    };
    let (mut lo, mut mapped) = ([0u8; 16], [0u8; 16]);
    lo[15] = 1;
    mapped[10..12].copy_from_slice(&[0xff, 0xff]);
    mapped[12..].copy_from_slice(&[127, 0, 0, 1]);
    let l = sock6();
    if small_y {
        setopt(l, libc::SOL_SOCKET, libc::SO_RCVBUF, 4096);
    }
    setopt(l, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0);
    let at = sin6(if net == Net::V6 { lo } else { [0; 16] }, 0);
    // SAFETY: at is a valid sockaddr_in6.
    check(unsafe { libc::bind(l, &at as *const _ as *const _, 28) } as i64, "bind");
    // SAFETY: plain call.
    check(unsafe { libc::listen(l, 8) } as i64, "listen");
    let x = sock6();
    if small_x {
        setopt(x, libc::SOL_SOCKET, libc::SO_RCVBUF, 4096);
    }
    let to = sin6(if net == Net::V6 { lo } else { mapped }, port6(l));
    // SAFETY: to is a valid sockaddr_in6.
    check(unsafe { libc::connect(x, &to as *const _ as *const _, 28) } as i64, "connect");
    finish_pair(l, x)
}

/// Accepts `x`'s connection on `l`, closes `l`, sets both ends up.
fn finish_pair(l: i32, x: i32) -> (i32, i32) {
    let y = accept(l);
    // SAFETY: our descriptor; the connection outlives its listener.
    unsafe { libc::close(l) };
    for fd in [x, y] {
        setopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 1 << 20);
        nonblock(fd);
    }
    (x, y)
}

/// One end of a half-closed connection after the restore: what it reads
/// (pattern `rk`, `rtotal` bytes, then the end of the stream) and writes
/// (pattern `wk`, from `wdone` to `wtotal`, then shutdown unless done).
struct End {
    name: &'static str,
    fd: i32,
    rk: u8,
    rdone: usize,
    rtotal: usize,
    eof: bool,
    wk: u8,
    wdone: usize,
    wtotal: usize,
    shut: bool,
}

/// An end that reads `rtotal` bytes of pattern `rk` and then the end of
/// the stream, and writes pattern `wk` from `wdone` to `wtotal`, then
/// shuts down unless `shut` already.
#[allow(clippy::too_many_arguments)]
fn end(name: &'static str, fd: i32, rk: u8, rtotal: usize, wk: u8, wdone: usize, wtotal: usize, shut: bool) -> End {
    End { name, fd, rk, rdone: 0, rtotal, eof: false, wk, wdone, wtotal, shut }
}

impl End {
    /// One round; Ok(true) when everything is read and written.
    fn step(&mut self) -> Result<bool, String> {
        let mut w = Flow { fd: self.fd, k: self.wk, done: self.wdone, total: self.wtotal };
        let wrote = w.write(self.wtotal);
        self.wdone = w.done;
        if wrote && !self.shut {
            shut_wr(self.fd);
            self.shut = true;
        }
        let mut buf = vec![0u8; 65536];
        while !self.eof {
            // SAFETY: at most buf.len() bytes are written into buf.
            let r = unsafe { libc::recv(self.fd, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    break;
                }
                return Err(format!("{}: recv after {} bytes: {e}", self.name, self.rdone));
            }
            if r == 0 {
                if self.rdone != self.rtotal {
                    return Err(format!("{}: end of stream after {} of {} bytes", self.name, self.rdone, self.rtotal));
                }
                self.eof = true;
                break;
            }
            for (j, &b) in buf[..r as usize].iter().enumerate() {
                let i = self.rdone + j;
                if i >= self.rtotal {
                    return Err(format!("{}: byte {i} beyond the end of stream {}", self.name, self.rk));
                }
                if b != pattern(self.rk, i) {
                    return Err(format!(
                        "{}: stream {} byte {i} is {b}, expected {}",
                        self.name,
                        self.rk,
                        pattern(self.rk, i)
                    ));
                }
            }
            self.rdone += r as usize;
        }
        Ok(self.eof && self.shut)
    }
}

fn fin(logp: &str) {
    // 1: FIN-WAIT-1 (its bytes and FIN wait for room at its peer) and
    // ESTABLISHED (has not read them; wrote a little it was not read).
    let (x1, y1) = pair(false, true);
    let mut x1w = Flow { fd: x1, k: 10, done: 0, total: BIG };
    assert!(x1w.write(BIG), "the send buffer takes every byte");
    shut_wr(x1);
    let mut y1w = Flow { fd: y1, k: 11, done: 0, total: SMALL };
    assert!(y1w.write(SMALL));
    // 2: FIN-WAIT-2 (its FIN acknowledged) and CLOSE-WAIT (writes more than
    // its peer takes).
    let (x2, y2) = pair(true, false);
    let mut x2w = Flow { fd: x2, k: 20, done: 0, total: SMALL };
    assert!(x2w.write(SMALL));
    shut_wr(x2);
    // 3: FIN-WAIT-2 and LAST-ACK (its bytes and FIN wait for room).
    let (x3, y3) = pair(true, false);
    let mut x3w = Flow { fd: x3, k: 30, done: 0, total: SMALL };
    assert!(x3w.write(SMALL));
    shut_wr(x3);
    // 5, 6: FIN-WAIT-2 and CLOSE-WAIT over IPv6, FIN-WAIT-2 and LAST-ACK
    // with v4-mapped addresses.
    let (x5, y5) = pair_in(Net::V6, true, false);
    let mut x5w = Flow { fd: x5, k: 70, done: 0, total: SMALL };
    assert!(x5w.write(SMALL));
    shut_wr(x5);
    let (x6, y6) = pair_in(Net::Mapped, true, false);
    let mut x6w = Flow { fd: x6, k: 80, done: 0, total: SMALL };
    assert!(x6w.write(SMALL));
    shut_wr(x6);
    // 7: FIN-WAIT-2 and CLOSE-WAIT whose small receive buffer is full: it
    // reads until the FIN is in, so the last bytes and the FIN arrive when
    // the window opens just enough for them.
    let (x7, y7) = pair(false, true);
    let mut x7w = Flow { fd: x7, k: 90, done: 0, total: BIG };
    assert!(x7w.write(BIG));
    shut_wr(x7);
    let mut y7_read = 0;
    let start = std::time::Instant::now();
    while tcp_state(y7) != TCP_CLOSE_WAIT {
        if start.elapsed().as_secs() > 90 {
            log(logp, "phase1 FAIL y7 never saw the FIN");
            return;
        }
        let mut buf = [0u8; 512];
        // SAFETY: at most 512 bytes are written into buf.
        let r = unsafe { libc::recv(y7, buf.as_mut_ptr() as *mut _, 512, 0) };
        for (j, &b) in buf[..r.max(0) as usize].iter().enumerate() {
            assert_eq!(b, pattern(90, y7_read + j), "y7 before the dump");
        }
        y7_read += r.max(0) as usize;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // 4: CLOSING (its bytes and FIN wait for room; its peer's FIN came)
    // and FIN-WAIT-2.
    let (x4, y4) = pair(false, true);
    let mut x4w = Flow { fd: x4, k: 40, done: 0, total: BIG };
    assert!(x4w.write(BIG));
    shut_wr(x4);
    let mut y4w = Flow { fd: y4, k: 41, done: 0, total: SMALL };
    assert!(y4w.write(SMALL));
    let peers_closed = [
        ("y2", y2, TCP_CLOSE_WAIT),
        ("y3", y3, TCP_CLOSE_WAIT),
        ("y5", y5, TCP_CLOSE_WAIT),
        ("y6", y6, TCP_CLOSE_WAIT),
    ];
    if let Err(e) = wait_states(&peers_closed) {
        log(logp, &format!("phase1 FAIL {e}"));
        return;
    }
    let mut y2w = Flow { fd: y2, k: 21, done: 0, total: BIG };
    assert!(y2w.write(BIG));
    let mut y3w = Flow { fd: y3, k: 31, done: 0, total: BIG };
    assert!(y3w.write(BIG));
    shut_wr(y3);
    let mut y5w = Flow { fd: y5, k: 71, done: 0, total: BIG };
    assert!(y5w.write(BIG));
    let mut y6w = Flow { fd: y6, k: 81, done: 0, total: BIG };
    assert!(y6w.write(BIG));
    shut_wr(y6);
    shut_wr(y4);
    // The test's connections: the first one it shuts, the second one we do.
    let l = listener(Some(4096));
    log(logp, &format!("ready port={} server={}", port_of(l), std::process::id()));
    let t1 = accept(l);
    let t2 = accept(l);
    for fd in [t1, t2] {
        setopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 1 << 20);
        nonblock(fd);
    }
    let mut t2w = Flow { fd: t2, k: 60, done: 0, total: SMALL };
    assert!(t2w.write(SMALL));
    shut_wr(t2);
    let states = [
        ("x1", x1, TCP_FIN_WAIT1),
        ("y1", y1, TCP_ESTABLISHED),
        ("x2", x2, TCP_FIN_WAIT2),
        ("y2", y2, TCP_CLOSE_WAIT),
        ("x3", x3, TCP_FIN_WAIT2),
        ("y3", y3, TCP_LAST_ACK),
        ("x4", x4, TCP_CLOSING),
        ("y4", y4, TCP_FIN_WAIT2),
        ("x5", x5, TCP_FIN_WAIT2),
        ("y5", y5, TCP_CLOSE_WAIT),
        ("x6", x6, TCP_FIN_WAIT2),
        ("y6", y6, TCP_LAST_ACK),
        ("x7", x7, TCP_FIN_WAIT2),
        ("y7", y7, TCP_CLOSE_WAIT),
        ("t1", t1, TCP_CLOSE_WAIT),
        ("t2", t2, TCP_FIN_WAIT2),
    ];
    if let Err(e) = wait_states(&states) {
        log(logp, &format!("phase1 FAIL {e}"));
        return;
    }
    let mut t1w = Flow { fd: t1, k: 51, done: 0, total: BIG };
    assert!(t1w.write(BIG));
    // Bytes in flight everywhere: the test's on t2 arrived, the large
    // streams still wait (unsent) at their writers.
    let start = std::time::Instant::now();
    while queued(t2, libc::FIONREAD as libc::c_ulong) == 0 {
        if start.elapsed().as_secs() > 90 {
            log(logp, "phase1 FAIL nothing of the test's bytes arrived on t2");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let unsent: Vec<i32> =
        [x1, y2, y3, x4, y5, y6, t1].iter().map(|&fd| queued(fd, libc::SIOCOUTQNSD as libc::c_ulong)).collect();
    log(
        logp,
        &format!(
            "phase1 role=fin unsent={unsent:?} full_close_wait_queue={}",
            queued(y7, libc::FIONREAD as libc::c_ulong)
        ),
    );
    wait_go();
    let mut res = wait_states(&states).map_err(|e| format!("after the restore: {e}"));
    let mut ends = [
        end("x1", x1, 11, SMALL + MORE, 10, BIG, BIG, true),
        end("y1", y1, 10, BIG, 11, SMALL, SMALL + MORE, false),
        end("x2", x2, 21, BIG + MORE, 20, SMALL, SMALL, true),
        end("y2", y2, 20, SMALL, 21, BIG, BIG + MORE, false),
        end("x3", x3, 31, BIG, 30, SMALL, SMALL, true),
        end("y3", y3, 30, SMALL, 31, BIG, BIG, true),
        end("x4", x4, 41, SMALL, 40, BIG, BIG, true),
        end("y4", y4, 40, BIG, 41, SMALL, SMALL, true),
        end("x5", x5, 71, BIG + MORE, 70, SMALL, SMALL, true),
        end("y5", y5, 70, SMALL, 71, BIG, BIG + MORE, false),
        end("x6", x6, 81, BIG, 80, SMALL, SMALL, true),
        end("y6", y6, 80, SMALL, 81, BIG, BIG, true),
        end("x7", x7, 91, 0, 90, BIG, BIG, true),
        End { rdone: y7_read, ..end("y7", y7, 90, BIG, 91, 0, 0, false) },
        end("t1", t1, 50, SMALL, 51, BIG, BIG + MORE, false),
        end("t2", t2, 61, BIG + WHILE_DOWN, 60, SMALL, SMALL, true),
    ];
    if res.is_ok() {
        res = run_ends(&mut ends);
    }
    match res {
        Ok(()) => log(logp, "done role=fin ok"),
        Err(e) => log(logp, &format!("done role=fin FAIL {e}")),
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Runs `ends` until each has read and written everything, then waits
/// until every connection has finished closing.
fn run_ends(ends: &mut [End]) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        let mut all = true;
        for e in ends.iter_mut() {
            all &= e.step()?;
        }
        if all {
            break;
        }
        if start.elapsed().as_secs() > 90 {
            let st: Vec<String> = ends
                .iter()
                .map(|e| {
                    let eof = if e.eof { "+eof" } else { "" };
                    format!("{}:r{}/{}{eof} w{}/{}", e.name, e.rdone, e.rtotal, e.wdone, e.wtotal)
                })
                .collect();
            return Err(format!("timed out: {st:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Every connection finishes closing: each end's FIN acknowledged, the
    // peer's received.
    let closed: Vec<(&str, i32, u8)> = ends.iter().map(|e| (e.name, e.fd, TCP_CLOSE)).collect();
    wait_states(&closed).map_err(|e| format!("closing: {e}"))
}

fn synsent(logp: &str, port: u16) {
    // Dumped (into repair mode and out again) before the refusal: a
    // FIN-WAIT-2 and CLOSE-WAIT pair that must work on as before.
    let (x, y) = pair(false, false);
    let mut xw = Flow { fd: x, k: 20, done: 0, total: SMALL };
    assert!(xw.write(SMALL));
    shut_wr(x);
    let mut yw = Flow { fd: y, k: 21, done: 0, total: SMALL };
    assert!(yw.write(SMALL));
    if let Err(e) = wait_states(&[("x", x, TCP_FIN_WAIT2), ("y", y, TCP_CLOSE_WAIT)]) {
        log(logp, &format!("ready FAIL {e}"));
        return;
    }
    // The listener's descriptor number, free again, is taken first: the
    // dump reads descriptors in order, and the pair must come before.
    // SAFETY: plain call; the copy of stdin stays open.
    let _held = unsafe { libc::dup(0) };
    let c = tcp_socket();
    assert!(c > x && c > y, "the SYN-SENT socket comes last");
    nonblock(c);
    let a = sin(port);
    // SAFETY: a is a valid sockaddr_in.
    let r = unsafe { libc::connect(c, &a as *const _ as *const _, 16) };
    assert!(r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINPROGRESS));
    if let Err(e) = wait_states(&[("c", c, TCP_SYN_SENT)]) {
        log(logp, &format!("ready FAIL {e}"));
        return;
    }
    log(logp, &format!("ready server={}", std::process::id()));
    wait_go();
    let mut p = libc::pollfd { fd: c, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one pollfd.
    let res = if unsafe { libc::poll(&mut p, 1, 90_000) } != 1 {
        Err("not connected in 90 s".to_string())
    } else if getopt(c, libc::SOL_SOCKET, libc::SO_ERROR) != 0 || tcp_state(c) != TCP_ESTABLISHED {
        Err(format!("connect failed: SO_ERROR {}", getopt(c, libc::SOL_SOCKET, libc::SO_ERROR)))
    } else {
        // SAFETY: 2 bytes are read.
        unsafe { libc::send(c, b"hi".as_ptr() as *const _, 2, libc::MSG_NOSIGNAL) };
        let end = |name, fd, rk, rtotal, wk, wdone, wtotal, shut| End {
            name,
            fd,
            rk,
            rdone: 0,
            rtotal,
            eof: false,
            wk,
            wdone,
            wtotal,
            shut,
        };
        run_ends(&mut [
            end("x", x, 21, SMALL + MORE, 20, SMALL, SMALL, true),
            end("y", y, 20, SMALL, 21, SMALL, SMALL + MORE, false),
        ])
    };
    match res {
        Ok(()) => log(logp, "done role=synsent ok"),
        Err(e) => log(logp, &format!("done role=synsent FAIL {e}")),
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The bytes of the address getsockname (`peer` false) or SO_PEERNAME
/// (`peer` true) gives.
fn addr_bytes(fd: i32, peer: bool) -> Result<Vec<u8>, String> {
    let mut b = [0u8; 128];
    // SO_PEERNAME wants room for no more than the address: its family's.
    let mut l = if addr_family(fd) == libc::AF_INET6 { 28 } else { 16 };
    // SAFETY: at most l bytes are written into b.
    let r = unsafe {
        if peer {
            libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERNAME, b.as_mut_ptr() as *mut _, &mut l)
        } else {
            libc::getsockname(fd, b.as_mut_ptr() as *mut _, &mut l)
        }
    };
    if r < 0 {
        return Err(format!(
            "{}: {}",
            if peer { "SO_PEERNAME" } else { "getsockname" },
            std::io::Error::last_os_error()
        ));
    }
    Ok(b[..l as usize].to_vec())
}

/// Writes `n` bytes of pattern `k` to `fd` (its send buffer takes them).
fn write_pattern_all(fd: i32, k: u8, n: usize) {
    let mut w = Flow { fd, k, done: 0, total: n };
    assert!(w.write(n), "the send buffer takes every byte");
}

fn addr_family(fd: i32) -> i32 {
    getopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// An ended end after the restore: see `ended`.
fn check_ended(name: &str, fd: i32, k: u8, n: usize, names: &(Vec<u8>, Vec<u8>)) -> Result<(), String> {
    let fail = |m: String| format!("{name}: {m}");
    if tcp_state(fd) != TCP_CLOSE {
        return Err(fail(format!("state {} instead of CLOSE", tcp_state(fd))));
    }
    if addr_bytes(fd, false).map_err(fail)? != names.0 {
        return Err(fail("its local name changed".into()));
    }
    if addr_bytes(fd, true).map_err(fail)? != names.1 {
        return Err(fail("its SO_PEERNAME changed".into()));
    }
    let mut a = [0u8; 128];
    let mut l = 128u32;
    // SAFETY: at most l bytes are written into a.
    let r = unsafe { libc::getpeername(fd, a.as_mut_ptr() as *mut _, &mut l) };
    if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOTCONN) {
        return Err(fail("getpeername did not say ENOTCONN".into()));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: at most buf.len() bytes are written into buf.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), libc::MSG_DONTWAIT) };
        if r < 0 {
            return Err(fail(format!("recv after {} bytes: {}", got.len(), std::io::Error::last_os_error())));
        }
        if r == 0 {
            break;
        }
        got.extend_from_slice(&buf[..r as usize]);
    }
    let want: Vec<u8> = (0..n).map(|i| pattern(k, i)).collect();
    if got != want {
        return Err(fail(format!("read {} bytes before the end, not the {n} of stream {k}", got.len())));
    }
    // SAFETY: one byte from a local.
    let r = unsafe { libc::send(fd, b"x".as_ptr() as *const _, 1, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EPIPE) {
        return Err(fail(format!("a write gave {r} ({}), not EPIPE", std::io::Error::last_os_error())));
    }
    Ok(())
}

fn ended(logp: &str, pending: bool) {
    // (name, fd, pattern it reads, bytes of it)
    let mut ends: Vec<(String, i32, u8, usize)> = Vec::new();
    for (i, net) in [(1u8, Net::V4), (2, Net::V6)] {
        let (x, y) = pair_in(net, false, false);
        let (kx, ky) = (100 + i * 10, 101 + i * 10);
        write_pattern_all(x, kx, SMALL);
        write_pattern_all(y, ky, SMALL + i as usize);
        shut_wr(x);
        if let Err(e) = wait_states(&[("y", y, TCP_CLOSE_WAIT)]) {
            log(logp, &format!("phase1 FAIL {e}"));
            return;
        }
        shut_wr(y);
        ends.push((format!("x{i}"), x, ky, SMALL + i as usize));
        ends.push((format!("y{i}"), y, kx, SMALL));
    }
    // Reset by its peer with bytes unread.
    let (x3, y3) = pair(false, false);
    write_pattern_all(y3, 131, SMALL);
    let start = std::time::Instant::now();
    while queued(x3, libc::FIONREAD as libc::c_ulong) < SMALL as i32 {
        if start.elapsed().as_secs() > 90 {
            log(logp, "phase1 FAIL the bytes never arrived at x3");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: the kernel reads one struct linger; then our descriptor is closed.
    unsafe {
        libc::setsockopt(y3, libc::SOL_SOCKET, libc::SO_LINGER, &linger as *const _ as *const _, 8);
        libc::close(y3);
    }
    ends.push(("x3".into(), x3, 131, SMALL));
    let states: Vec<(&str, i32, u8)> = ends.iter().map(|(n, fd, _, _)| (n.as_str(), *fd, TCP_CLOSE)).collect();
    if let Err(e) = wait_states(&states) {
        log(logp, &format!("phase1 FAIL {e}"));
        return;
    }
    if !pending {
        let e = getopt(x3, libc::SOL_SOCKET, libc::SO_ERROR);
        if e != libc::ECONNRESET {
            log(logp, &format!("phase1 FAIL x3's error is {e}, not ECONNRESET"));
            return;
        }
    }
    let mut names = Vec::new();
    for (n, fd, _, _) in &ends {
        match (addr_bytes(*fd, false), addr_bytes(*fd, true)) {
            (Ok(a), Ok(b)) => names.push((a, b)),
            (a, b) => {
                log(logp, &format!("phase1 FAIL {n}: {a:?} {b:?}"));
                return;
            }
        }
    }
    log(logp, &format!("phase1 role=ended pending={pending}"));
    wait_go();
    let mut res = Ok(());
    if pending {
        let e = getopt(x3, libc::SOL_SOCKET, libc::SO_ERROR);
        if e != libc::ECONNRESET {
            res = Err(format!("x3's unread error is {e} now, not ECONNRESET"));
        }
    }
    for ((n, fd, k, len), names) in ends.iter().zip(&names) {
        if res.is_ok() {
            res = check_ended(n, *fd, *k, *len, names);
        }
    }
    match res {
        Ok(()) => log(logp, "done role=ended ok"),
        Err(e) => log(logp, &format!("done role=ended FAIL {e}")),
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    crtools_tests::detach_from_harness();
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
    let logp = args.get(2).cloned().expect("LOG");
    let _ = CString::new(logp.clone());
    match args.get(1).map(String::as_str) {
        Some("tcp") => tcp(&logp, args.get(3).map(String::as_str) == Some("cork")),
        Some("udp") => udp(&logp),
        Some("v6") => v6(&logp),
        Some("fin") => fin(&logp),
        Some("ended") => ended(&logp, args.get(3).map(String::as_str) == Some("pending")),
        Some("synsent") => synsent(&logp, args.get(3).and_then(|p| p.parse().ok()).expect("PORT")),
        _ => panic!("usage: victim_inet tcp|udp|v6|fin LOG [cork] | ended LOG [pending] | synsent LOG PORT"),
    }
}
