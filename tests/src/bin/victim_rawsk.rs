//! Victim with raw, ping and packet sockets that checks itself after
//! restore. Every line it reports is appended to LOG; phase 2 starts on
//! SIGUSR1.
//!
//! `victim_rawsk all LOG`: a raw ICMP socket bound to 127.0.0.1 with an
//! ICMP_FILTER passing echo replies only; a raw ICMPv6 socket with an
//! ICMPV6_FILTER passing echo replies only; a raw IPv4 socket of protocol
//! 253 with IP_HDRINCL, bound and connected; a raw IPv6 socket of protocol
//! 253 with IPV6_CHECKSUM, connected to ::1; a ping socket bound to
//! 127.0.0.1 (its echo identifier chosen by the kernel), a ping IPv6 socket
//! connected to ::1; a packet socket bound to lo for protocol 0x88b5 with
//! a classic filter, PACKET_AUXDATA, PACKET_IGNORE_OUTGOING, TPACKET_V2
//! and a promiscuous membership on lo, and an unbound SOCK_DGRAM packet
//! socket. Each has SO_RCVTIMEO set. It logs `ready`; on SIGUSR1 each
//! socket's names and options must be what they were, the ICMP sockets
//! get an echo reply from 127.0.0.1 / ::1, lo must still be promiscuous,
//! and after `packet-wait` the packet socket must receive the frame the
//! test sends (payload `crtools-frame`).
//!
//! `victim_rawsk queued LOG`: a raw IPv4 socket of protocol 253 with a
//! packet of its own queued (the dump refuses it); on SIGUSR1 it reads the
//! packet, which must still be there.
//!
//! `victim_rawsk ring LOG` / `fanout LOG`: a packet socket with a
//! PACKET_RX_RING / in a PACKET_FANOUT group (refused); on SIGUSR1 it
//! checks the socket is as it was.
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static GO: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: i32) {
    GO.store(true, Ordering::SeqCst);
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

fn socket(family: i32, ty: i32, proto: i32) -> i32 {
    // SAFETY: plain syscall.
    check(unsafe { libc::socket(family, ty, proto) } as i64, "socket") as i32
}

fn setopt_bytes(fd: i32, level: i32, name: i32, v: &[u8]) {
    // SAFETY: v.len() bytes of v are read.
    check(unsafe { libc::setsockopt(fd, level, name, v.as_ptr() as *const _, v.len() as u32) } as i64, "setsockopt");
}

fn setopt(fd: i32, level: i32, name: i32, v: i32) {
    setopt_bytes(fd, level, name, &v.to_ne_bytes());
}

/// getsockopt as bytes ("-" when the kernel refuses it).
fn getopt_hex(fd: i32, level: i32, name: i32, max: usize) -> String {
    let mut b = vec![0u8; max];
    let mut l = max as u32;
    // SAFETY: at most l bytes are written into b.
    if unsafe { libc::getsockopt(fd, level, name, b.as_mut_ptr() as *mut _, &mut l) } < 0 {
        return "-".into();
    }
    b[..l as usize].iter().map(|x| format!("{x:02x}")).collect()
}

fn addr4(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&port.to_be_bytes());
    b[4..8].copy_from_slice(&ip);
    b
}

fn lo6() -> [u8; 16] {
    let mut a = [0u8; 16];
    a[15] = 1;
    a
}

fn addr6(ip: [u8; 16], port: u16) -> Vec<u8> {
    let mut b = vec![0u8; 28];
    b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&port.to_be_bytes());
    b[8..24].copy_from_slice(&ip);
    b
}

fn bind(fd: i32, a: &[u8]) {
    // SAFETY: the kernel reads a.len() bytes of the address.
    check(unsafe { libc::bind(fd, a.as_ptr() as *const _, a.len() as u32) } as i64, "bind");
}

fn connect(fd: i32, a: &[u8]) {
    // SAFETY: the kernel reads a.len() bytes of the address.
    check(unsafe { libc::connect(fd, a.as_ptr() as *const _, a.len() as u32) } as i64, "connect");
}

fn name_hex(fd: i32, peer: bool) -> String {
    let mut b = [0u8; 128];
    let mut l = 128u32;
    // SAFETY: at most l bytes are written into b.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, b.as_mut_ptr() as *mut _, &mut l)
        } else {
            libc::getsockname(fd, b.as_mut_ptr() as *mut _, &mut l)
        }
    };
    if r < 0 {
        return "none".into();
    }
    b[..l as usize].iter().map(|x| format!("{x:02x}")).collect()
}

/// Everything the victim compares about a socket before and after.
fn state(fd: i32, extra: &[(i32, i32, usize)]) -> String {
    let mut s = format!(
        "name={} peer={} rcvtimeo={} rcvbuf={} filter={} nonblock={}",
        name_hex(fd, false),
        name_hex(fd, true),
        getopt_hex(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, 16),
        getopt_hex(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 4),
        filter_len(fd),
        // SAFETY: plain fcntl.
        unsafe { libc::fcntl(fd, libc::F_GETFL) } & libc::O_NONBLOCK
    );
    for &(level, name, max) in extra {
        s += &format!(" {level}/{name}={}", getopt_hex(fd, level, name, max));
    }
    s
}

fn filter_len(fd: i32) -> i32 {
    let mut l = 0u32;
    // SAFETY: with a length of 0 only l is written.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_GET_FILTER, std::ptr::null_mut(), &mut l) };
    l as i32
}

fn timeout(fd: i32) {
    let tv = libc::timeval { tv_sec: 5, tv_usec: 250_000 };
    // SAFETY: a timeval is plain data.
    let b = unsafe { std::slice::from_raw_parts(&tv as *const _ as *const u8, std::mem::size_of::<libc::timeval>()) };
    setopt_bytes(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, b);
}

fn checksum(b: &[u8]) -> u16 {
    let mut s = 0u32;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An ICMP (v4: type 8) or ICMPv6 (type 128) echo request.
fn echo(ty: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"crtools-echo");
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn send_to(fd: i32, m: &[u8], to: Option<&[u8]>) -> Result<(), String> {
    let (p, l) = to.map_or((std::ptr::null(), 0), |a| (a.as_ptr(), a.len() as u32));
    // SAFETY: the kernel reads m and the address.
    let r = unsafe { libc::sendto(fd, m.as_ptr() as *const _, m.len(), 0, p as *const _, l) };
    if r < 0 {
        return Err(format!("sendto: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Receives until an echo reply of type `ty` with `seq` (and `id`, when
/// given) arrives; `skip_ip`: raw IPv4 sockets get the IP header.
fn await_reply(fd: i32, ty: u8, id: Option<u16>, seq: u16, skip_ip: bool) -> Result<(), String> {
    let mut b = [0u8; 2048];
    for _ in 0..100 {
        // SAFETY: at most b.len() bytes are written into b.
        let n = unsafe { libc::recv(fd, b.as_mut_ptr() as *mut _, b.len(), 0) };
        if n < 0 {
            return Err(format!("recv: {}", std::io::Error::last_os_error()));
        }
        let mut m = &b[..n as usize];
        if skip_ip {
            let ihl = ((m[0] & 0xf) * 4) as usize;
            m = &m[ihl..];
        }
        if m.len() >= 8
            && m[0] == ty
            && u16::from_be_bytes([m[6], m[7]]) == seq
            && id.is_none_or(|id| u16::from_be_bytes([m[4], m[5]]) == id)
        {
            return if m.ends_with(b"crtools-echo") { Ok(()) } else { Err("an echo reply without our data".into()) };
        }
    }
    Err("no echo reply among 100 messages".into())
}

fn wait_go() {
    while !GO.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

const ETH_P_TEST: u16 = 0x88b5;
const SOL_PACKET: i32 = 263;
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_AUXDATA: i32 = 8;
const PACKET_VERSION: i32 = 10;
const PACKET_RX_RING: i32 = 5;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const PACKET_FANOUT: i32 = 18;
const PACKET_OPTS: &[(i32, i32, usize)] =
    &[(SOL_PACKET, PACKET_AUXDATA, 4), (SOL_PACKET, PACKET_VERSION, 4), (SOL_PACKET, PACKET_IGNORE_OUTGOING, 4)];

fn lo_index() -> i32 {
    std::fs::read_to_string("/sys/class/net/lo/ifindex").unwrap().trim().parse().unwrap()
}

fn lo_promisc() -> bool {
    let f = std::fs::read_to_string("/sys/class/net/lo/flags").unwrap();
    u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).unwrap() & 0x100 != 0
}

fn bind_ll(fd: i32, proto: u16, ifindex: i32) {
    let mut a = vec![0u8; 20];
    a[0..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
    a[2..4].copy_from_slice(&proto.to_be_bytes());
    a[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    bind(fd, &a);
}

/// `ldh [12]; jeq #0x88b5; ret #0xffff; ret #0`.
fn attach_ethertype_filter(fd: i32) {
    let prog: [libc::sock_filter; 4] = [
        libc::sock_filter { code: 0x28, jt: 0, jf: 0, k: 12 },
        libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: ETH_P_TEST as u32 },
        libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0xffff },
        libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 },
    ];
    let f = libc::sock_fprog { len: 4, filter: prog.as_ptr() as *mut _ };
    // SAFETY: the kernel reads the sock_fprog and its 4 instructions.
    let b = unsafe { std::slice::from_raw_parts(&f as *const _ as *const u8, std::mem::size_of::<libc::sock_fprog>()) };
    setopt_bytes(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, b);
}

/// (level, option, longest value) of an option a victim compares.
type Opt = (i32, i32, usize);

fn all(logp: &str) {
    let mut socks: Vec<(&str, i32, Vec<Opt>)> = Vec::new();
    // Raw ICMP: echo replies only.
    let icmp = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
    setopt(icmp, 255, 1, !1i32); // SOL_RAW, ICMP_FILTER: all but type 0 blocked
    bind(icmp, &addr4([127, 0, 0, 1], 0));
    socks.push(("icmp", icmp, vec![(255, 1, 4)]));
    // Raw ICMPv6: echo replies (129) only.
    let icmp6 = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
    let mut f6 = [0xffu8; 32];
    f6[129 / 8] &= !(1 << (129 % 8));
    setopt_bytes(icmp6, 58, 1, &f6); // SOL_ICMPV6, ICMPV6_FILTER
    socks.push(("icmp6", icmp6, vec![(58, 1, 32)]));
    // Raw IPv4 protocol 253 with IP_HDRINCL, bound and connected.
    let r4 = socket(libc::AF_INET, libc::SOCK_RAW, 253);
    setopt(r4, libc::IPPROTO_IP, libc::IP_HDRINCL, 1);
    setopt(r4, libc::IPPROTO_IP, libc::IP_TOS, 0x10);
    bind(r4, &addr4([127, 0, 0, 1], 0));
    connect(r4, &addr4([127, 0, 0, 2], 0));
    socks.push(("raw4", r4, vec![(0, libc::IP_HDRINCL, 4), (0, libc::IP_TOS, 4)]));
    // Raw IPv6 protocol 253 with IPV6_CHECKSUM, connected.
    let r6 = socket(libc::AF_INET6, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 253);
    setopt(r6, libc::IPPROTO_IPV6, 7, 2); // IPV6_CHECKSUM at offset 2
    connect(r6, &addr6(lo6(), 0));
    socks.push(("raw6", r6, vec![(libc::IPPROTO_IPV6, 7, 4)]));
    // Raw IPv4 of protocol TCP (no TCP options of its own), with a
    // receive buffer set and its lock taken off again (SO_BUF_LOCK).
    let rt = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP);
    setopt(rt, libc::SOL_SOCKET, libc::SO_RCVBUF, 300_000);
    setopt(rt, libc::SOL_SOCKET, 72, 0); // SO_BUF_LOCK
    socks.push(("rawtcp", rt, vec![(libc::SOL_SOCKET, libc::SO_RCVBUF, 4), (libc::SOL_SOCKET, 72, 4)]));
    // Ping sockets.
    let p4 = socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP);
    bind(p4, &addr4([127, 0, 0, 1], 0));
    socks.push(("ping4", p4, vec![(0, libc::IP_TTL, 4)]));
    // Neither bound nor connected: no echo identifier yet, not in
    // /proc/net/icmp.
    let pu = socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP);
    setopt(pu, libc::IPPROTO_IP, libc::IP_TTL, 44);
    socks.push(("ping4-unbound", pu, vec![(0, libc::IP_TTL, 4)]));
    let p6 = socket(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6);
    setopt(p6, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 33);
    connect(p6, &addr6(lo6(), 0));
    socks.push(("ping6", p6, vec![(libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 4)]));
    // Packet sockets.
    let pk = socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
    attach_ethertype_filter(pk);
    setopt(pk, SOL_PACKET, PACKET_AUXDATA, 1);
    setopt(pk, SOL_PACKET, PACKET_VERSION, 1);
    setopt(pk, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
    let mut mr = [0u8; 16];
    mr[0..4].copy_from_slice(&lo_index().to_ne_bytes());
    mr[4..6].copy_from_slice(&1u16.to_ne_bytes()); // PACKET_MR_PROMISC
    setopt_bytes(pk, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr);
    bind_ll(pk, ETH_P_TEST, lo_index());
    socks.push(("packet", pk, PACKET_OPTS.to_vec()));
    let pd = socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0);
    socks.push(("packet-dgram", pd, PACKET_OPTS.to_vec()));
    for &(_, fd, _) in &socks {
        timeout(fd);
    }
    // The ping socket gets its identifier now, and must keep it.
    let before: Vec<String> = socks.iter().map(|(_, fd, x)| state(*fd, x)).collect();
    for ((n, _, _), b) in socks.iter().zip(&before) {
        log(logp, &format!("before {n} {b}"));
    }
    log(logp, &format!("ready promisc={}", lo_promisc()));
    wait_go();
    let r = (|| -> Result<(), String> {
        for ((n, fd, x), b) in socks.iter().zip(&before) {
            let now = state(*fd, x);
            if &now != b {
                return Err(format!("{n}: was {b}, is {now}"));
            }
        }
        if !lo_promisc() {
            return Err("lo is not promiscuous any more".into());
        }
        send_to(icmp, &echo(8, 0x4352, 1), Some(&addr4([127, 0, 0, 1], 0)))?;
        await_reply(icmp, 0, Some(0x4352), 1, true).map_err(|e| format!("icmp: {e}"))?;
        send_to(icmp6, &echo(128, 0x4353, 2), Some(&addr6(lo6(), 0)))?;
        await_reply(icmp6, 129, Some(0x4353), 2, false).map_err(|e| format!("icmp6: {e}"))?;
        send_to(p4, &echo(8, 0, 3), Some(&addr4([127, 0, 0, 1], 0)))?;
        await_reply(p4, 0, None, 3, false).map_err(|e| format!("ping4: {e}"))?;
        send_to(p6, &echo(128, 0, 4), None)?;
        await_reply(p6, 129, None, 4, false).map_err(|e| format!("ping6: {e}"))?;
        log(logp, "packet-wait");
        let mut b = [0u8; 2048];
        // SAFETY: at most b.len() bytes are written into b.
        let n = unsafe { libc::recv(pk, b.as_mut_ptr() as *mut _, b.len(), 0) };
        if n < 0 {
            return Err(format!("packet recv: {}", std::io::Error::last_os_error()));
        }
        let f = &b[..n as usize];
        if f.len() < 14 || u16::from_be_bytes([f[12], f[13]]) != ETH_P_TEST || !f[14..].starts_with(b"crtools-frame") {
            return Err(format!("packet: an unexpected frame of {} bytes", f.len()));
        }
        Ok(())
    })();
    match r {
        Ok(()) => log(logp, "done ok"),
        Err(e) => log(logp, &format!("done FAIL {e}")),
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// A socket the dump refuses; on SIGUSR1 it checks it is as it was.
fn refused(logp: &str, kind: &str) {
    let fd;
    let mut before = String::new();
    match kind {
        "queued" => {
            fd = socket(libc::AF_INET, libc::SOCK_RAW, 253);
            bind(fd, &addr4([127, 0, 0, 1], 0));
            send_to(fd, b"crtools-queued", Some(&addr4([127, 0, 0, 1], 0))).unwrap();
        }
        "ring" => {
            fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            // struct tpacket_req: block size, block count, frame size, frame count.
            let req: [u32; 4] = [4096, 4, 2048, 8];
            // SAFETY: 16 bytes of plain data.
            let b = unsafe { std::slice::from_raw_parts(req.as_ptr() as *const u8, 16) };
            setopt_bytes(fd, SOL_PACKET, PACKET_RX_RING, b);
            before = state(fd, PACKET_OPTS);
        }
        "spkt" => {
            // The obsolete SOCK_PACKET (10), bound to lo by name.
            fd = socket(libc::AF_PACKET, 10, (ETH_P_TEST).to_be() as i32);
            // SAFETY: a sockaddr is plain data; all zero is valid.
            let mut a: libc::sockaddr = unsafe { std::mem::zeroed() };
            a.sa_family = libc::AF_PACKET as u16;
            a.sa_data[0] = b'l' as libc::c_char;
            a.sa_data[1] = b'o' as libc::c_char;
            // SAFETY: a is a plain sockaddr of the size given.
            let r = unsafe { libc::bind(fd, &a, std::mem::size_of::<libc::sockaddr>() as u32) };
            assert_eq!(r, 0, "bind SOCK_PACKET to lo");
            before = name_hex(fd, false);
        }
        _ => {
            fd = socket(libc::AF_PACKET, libc::SOCK_RAW, (ETH_P_TEST).to_be() as i32);
            bind_ll(fd, ETH_P_TEST, lo_index());
            // Group 4242, PACKET_FANOUT_HASH.
            setopt(fd, SOL_PACKET, PACKET_FANOUT, 4242);
            before = state(fd, &[(SOL_PACKET, PACKET_FANOUT, 4)]);
        }
    }
    log(logp, "ready");
    wait_go();
    let r = match kind {
        "queued" => {
            let mut b = [0u8; 256];
            // SAFETY: at most b.len() bytes are written into b.
            let n = unsafe { libc::recv(fd, b.as_mut_ptr() as *mut _, b.len(), libc::MSG_DONTWAIT) };
            if n > 20 && b[20..n as usize] == *b"crtools-queued" {
                Ok(())
            } else {
                Err(format!("the queued packet is gone ({n})"))
            }
        }
        "ring" => (state(fd, PACKET_OPTS) == before).then_some(()).ok_or("changed".to_string()),
        "spkt" => (name_hex(fd, false) == before).then_some(()).ok_or("changed".to_string()),
        _ => (state(fd, &[(SOL_PACKET, PACKET_FANOUT, 4)]) == before).then_some(()).ok_or("changed".to_string()),
    };
    match r {
        Ok(()) => log(logp, "done ok"),
        Err(e) => log(logp, &format!("done FAIL {e}")),
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
    match args.get(1).map(String::as_str) {
        Some("all") => all(&logp),
        Some(k @ ("queued" | "ring" | "fanout" | "spkt")) => refused(&logp, k),
        _ => panic!("usage: victim_rawsk all|queued|ring|fanout|spkt LOG"),
    }
}
