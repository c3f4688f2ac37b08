//! IPv4 and IPv6 sockets (ip(7), ipv6(7), tcp(7), udp(7)): addresses,
//! bind/connect/sendto/recvfrom with inet addresses, the options crtools
//! reads and sets, the queue ioctls (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD),
//! TCP_INFO, the TCP_REPAIR interface (TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ,
//! TCP_REPAIR_OPTIONS, TCP_REPAIR_WINDOW, TCP_TIMESTAMP) used to take a
//! connection apart and build it again, and raw IP sockets with their own
//! headers (raw(7): IPPROTO_RAW, IPV6_HDRINCL) to hand a rebuilt
//! connection the FIN or ACK its peer once sent.
//!
//! # Invariants
//! - [`InetAddr`] holds family, address bytes (IPv4: the first 4), port in
//!   host order, and for IPv6 flow info and scope id; it converts to and
//!   from the kernel's `sockaddr_in`/`sockaddr_in6` exactly.
//! - Options are read and set with their kernel width; byte-array options
//!   (SO_BINDTODEVICE, SO_LINGER, filters) never overrun their buffers.
use super::socket::{AF_INET, AF_INET6};
use super::{retry_eintr, Errno, Result, Sysno};
use linux_raw_sys::net as ln;
use std::os::fd::{AsRawFd, BorrowedFd};

pub const SOL_IP: u32 = 0;
pub const SOL_IPV6: u32 = 41;
pub const SOL_TCP: u32 = 6;
pub const SOL_UDP: u32 = 17;
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;
pub const IPPROTO_UDPLITE: u32 = 136;
/// A raw socket whose packets carry their own IP header (for IPv4 it
/// implies IP_HDRINCL).
pub const IPPROTO_RAW: u32 = 255;
/// IPv6 raw sockets: the packet carries its own IPv6 header.
pub const IPV6_HDRINCL: u32 = 36;
pub const IPPROTO_ICMP: u32 = 1;
pub const IPPROTO_ICMPV6: u32 = 58;
/// IPv4 raw sockets: the packet carries its own IP header.
pub const IP_HDRINCL: u32 = 3;
/// IPv4 raw sockets: take fragments before reassembly.
pub const IP_NODEFRAG: u32 = 22;
/// IPv4 raw ICMP sockets (linux/icmp.h): SOL_RAW's ICMP_FILTER, a 32-bit
/// mask of the ICMP types dropped.
pub const SOL_RAW: u32 = 255;
pub const ICMP_FILTER: u32 = 1;
/// IPv6 raw ICMPv6 sockets (linux/icmpv6.h): the 256-bit type filter.
pub const SOL_ICMPV6: u32 = 58;
pub const ICMPV6_FILTER: u32 = 1;
/// IPv6 raw sockets: offset of the checksum the kernel computes (-1: none).
pub const IPV6_CHECKSUM: u32 = 7;
/// UDP-Lite options (linux/udp.h): checksum coverage of what the socket
/// sends, and the least coverage it takes.
pub const SOL_UDPLITE: u32 = 136;
pub const UDPLITE_SEND_CSCOV: u32 = 10;
pub const UDPLITE_RECV_CSCOV: u32 = 11;
/// Classic BPF ancillary load (linux/filter.h): `ld [SKF_AD_OFF +
/// SKF_AD_MARK]` loads the packet's mark.
pub const SKF_AD_MARK_LOAD: u32 = (-0x1000i32 + 20) as u32;
/// UDP_CORK (linux/udp.h).
pub const UDP_CORK: u32 = 1;
/// FIONREAD: bytes queued for reading (not read yet).
pub const SIOCINQ: usize = 0x541b;
/// TIOCOUTQ: bytes in the send queue (unacknowledged + unsent).
pub const SIOCOUTQ: usize = 0x5411;
/// Bytes in the send queue never sent.
pub const SIOCOUTQNSD: usize = 0x894b;
/// TCP repair queues.
pub const TCP_NO_QUEUE: i32 = 0;
pub const TCP_RECV_QUEUE: i32 = 1;
pub const TCP_SEND_QUEUE: i32 = 2;
/// TCP option kinds for TCP_REPAIR_OPTIONS.
pub const TCPOPT_MSS: u32 = 2;
pub const TCPOPT_WINDOW: u32 = 3;
pub const TCPOPT_SACK_PERM: u32 = 4;
pub const TCPOPT_TIMESTAMP: u32 = 8;
/// tcpi_options bits.
pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
pub const TCPI_OPT_SACK: u8 = 2;
pub const TCPI_OPT_WSCALE: u8 = 4;

pub use ln::{
    IPV6_FREEBIND, IPV6_TCLASS, IPV6_UNICAST_HOPS, IPV6_V6ONLY, IP_FREEBIND, IP_TOS, IP_TTL, SO_BINDTODEVICE,
    SO_BROADCAST, SO_DONTROUTE, SO_KEEPALIVE, SO_LINGER, SO_LOCK_FILTER, SO_MARK, SO_OOBINLINE, SO_PRIORITY,
    SO_REUSEADDR, SO_REUSEPORT, TCP_CORK, TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_MAXSEG, TCP_NODELAY,
    TCP_QUEUE_SEQ, TCP_REPAIR, TCP_REPAIR_OPTIONS, TCP_REPAIR_QUEUE, TCP_REPAIR_WINDOW, TCP_TIMESTAMP,
    TCP_USER_TIMEOUT,
};

/// An IPv4 or IPv6 socket address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InetAddr {
    /// AF_INET or AF_INET6.
    pub family: u32,
    /// Address bytes in network order (IPv4: the first 4).
    pub addr: [u8; 16],
    /// Port, host order.
    pub port: u16,
    /// IPv6 flow info (network order as the kernel keeps it).
    pub flowinfo: u32,
    /// IPv6 scope id.
    pub scope_id: u32,
}

const SIN_LEN: usize = core::mem::size_of::<ln::sockaddr_in>();
const SIN6_LEN: usize = core::mem::size_of::<ln::sockaddr_in6>();
const _: () = assert!(SIN_LEN == 16 && SIN6_LEN == 28);

impl InetAddr {
    /// An IPv4 address.
    pub fn v4(a: [u8; 4], port: u16) -> InetAddr {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&a);
        InetAddr { family: AF_INET, addr, port, ..Default::default() }
    }

    /// An IPv6 address.
    pub fn v6(a: [u8; 16], port: u16) -> InetAddr {
        InetAddr { family: AF_INET6, addr: a, port, ..Default::default() }
    }

    /// Decodes a `sockaddr_in` or `sockaddr_in6` as the kernel wrote it.
    pub fn from_bytes(b: &[u8]) -> Option<InetAddr> {
        let fam = u16::from_ne_bytes([*b.first()?, *b.get(1)?]) as u32;
        let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
        match fam {
            AF_INET if b.len() >= 8 => Some(InetAddr::v4(b[4..8].try_into().ok()?, port)),
            AF_INET6 if b.len() >= 24 => {
                let mut a = InetAddr::v6(b[8..24].try_into().ok()?, port);
                a.flowinfo = u32::from_ne_bytes(b[4..8].try_into().ok()?);
                a.scope_id = b.get(24..28).map_or(0, |s| u32::from_ne_bytes(s.try_into().expect("4 bytes")));
                Some(a)
            }
            _ => None,
        }
    }

    /// The kernel's `sockaddr_in`/`sockaddr_in6` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(SIN6_LEN);
        b.extend_from_slice(&(self.family as u16).to_ne_bytes());
        b.extend_from_slice(&self.port.to_be_bytes());
        if self.family == AF_INET6 {
            b.extend_from_slice(&self.flowinfo.to_ne_bytes());
            b.extend_from_slice(&self.addr);
            b.extend_from_slice(&self.scope_id.to_ne_bytes());
        } else {
            b.extend_from_slice(&self.addr[..4]);
            b.extend_from_slice(&[0; 8]);
        }
        b
    }

    /// The address without its port.
    pub fn ip_text(&self) -> String {
        if self.family == AF_INET6 {
            std::net::Ipv6Addr::from(self.addr).to_string()
        } else {
            std::net::Ipv4Addr::new(self.addr[0], self.addr[1], self.addr[2], self.addr[3]).to_string()
        }
    }

    /// Whether the address is the wildcard (0.0.0.0 / ::).
    pub fn is_any(&self) -> bool {
        self.addr.iter().all(|&c| c == 0)
    }
}

impl std::fmt::Display for InetAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.family == AF_INET6 {
            write!(f, "[{}]:{}", self.ip_text(), self.port)
        } else {
            write!(f, "{}:{}", self.ip_text(), self.port)
        }
    }
}

fn fd_arg(fd: BorrowedFd<'_>) -> usize {
    fd.as_raw_fd() as usize
}

/// bind(fd, addr).
pub fn bind(fd: BorrowedFd<'_>, addr: &InetAddr) -> Result<()> {
    let b = addr.to_bytes();
    // SAFETY: the kernel reads b.len() bytes of the sockaddr.
    unsafe { syscalls::syscall3(Sysno::bind, fd_arg(fd), b.as_ptr() as usize, b.len()) }.map(drop)
}

/// connect(fd, addr) (blocking sockets wait for the handshake).
pub fn connect(fd: BorrowedFd<'_>, addr: &InetAddr) -> Result<()> {
    let b = addr.to_bytes();
    // SAFETY: the kernel reads b.len() bytes of the sockaddr.
    retry_eintr(|| unsafe { syscalls::syscall3(Sysno::connect, fd_arg(fd), b.as_ptr() as usize, b.len()) }).map(drop)
}

/// connect(fd, AF_UNSPEC): dissolves a UDP association.
pub fn disconnect(fd: BorrowedFd<'_>) -> Result<()> {
    let b = [0u8; 16];
    // SAFETY: the kernel reads 16 bytes (family AF_UNSPEC).
    unsafe { syscalls::syscall3(Sysno::connect, fd_arg(fd), b.as_ptr() as usize, b.len()) }.map(drop)
}

/// sendto(fd, data, flags | MSG_NOSIGNAL, to) (None: the connected peer).
pub fn send_to(fd: BorrowedFd<'_>, data: &[u8], flags: u32, to: Option<&InetAddr>) -> Result<usize> {
    let b = to.map(|a| a.to_bytes()).unwrap_or_default();
    let (p, l) = if b.is_empty() { (0, 0) } else { (b.as_ptr() as usize, b.len()) };
    let f = (flags | ln::MSG_NOSIGNAL) as usize;
    // SAFETY: the kernel reads data.len() bytes of data and l bytes of the address.
    retry_eintr(|| unsafe {
        syscalls::syscall6(Sysno::sendto, fd_arg(fd), data.as_ptr() as usize, data.len(), f, p, l)
    })
}

/// recvfrom(fd, buf, flags): the length (with MSG_TRUNC the datagram's
/// real length) and the sender's address when the kernel gives one.
pub fn recv_from(fd: BorrowedFd<'_>, buf: &mut [u8], flags: u32) -> Result<(usize, Option<InetAddr>)> {
    let mut st = [0u8; 128];
    let mut len: u32 = 128;
    // SAFETY: the kernel writes at most buf.len() bytes into buf and at most
    // len bytes into st, and updates len.
    let n = retry_eintr(|| unsafe {
        syscalls::syscall6(
            Sysno::recvfrom,
            fd_arg(fd),
            buf.as_mut_ptr() as usize,
            buf.len(),
            flags as usize,
            st.as_mut_ptr() as usize,
            &mut len as *mut u32 as usize,
        )
    })?;
    let from = if len >= 2 { InetAddr::from_bytes(&st[..(len as usize).min(128)]) } else { None };
    Ok((n, from))
}

/// getsockname of an inet socket.
pub fn local_addr(fd: BorrowedFd<'_>) -> Result<InetAddr> {
    let a = super::socket::getsockname(fd)?;
    InetAddr::from_bytes(a.as_bytes()).ok_or(Errno::EAFNOSUPPORT)
}

/// getpeername of an inet socket (ENOTCONN when not connected).
pub fn peer_addr(fd: BorrowedFd<'_>) -> Result<InetAddr> {
    let a = super::socket::getpeername(fd)?;
    InetAddr::from_bytes(a.as_bytes()).ok_or(Errno::EAFNOSUPPORT)
}

/// The peer's address as SO_PEERNAME reads it: unlike getpeername, also
/// of a connection that has ended (state CLOSE); ENOTCONN if it never had
/// one or was disconnected.
pub fn so_peername(fd: BorrowedFd<'_>, family: u32) -> Result<InetAddr> {
    const SO_PEERNAME: u32 = 28;
    let mut b = [0u8; 28];
    // The kernel wants room for no more than the address it has.
    let len = if family == AF_INET6 { 28 } else { 16 };
    let n = get_opt_bytes(fd, super::socket::SOL_SOCKET, SO_PEERNAME, &mut b[..len])?;
    InetAddr::from_bytes(&b[..n.min(len)]).ok_or(Errno::EAFNOSUPPORT)
}

/// getsockopt into `buf`; returns the length the kernel reported.
pub fn get_opt_bytes(fd: BorrowedFd<'_>, level: u32, name: u32, buf: &mut [u8]) -> Result<usize> {
    let mut l = buf.len() as u32;
    // SAFETY: the kernel writes at most l = buf.len() bytes into buf and updates l.
    unsafe {
        syscalls::syscall5(
            Sysno::getsockopt,
            fd_arg(fd),
            level as usize,
            name as usize,
            buf.as_mut_ptr() as usize,
            &mut l as *mut u32 as usize,
        )
    }?;
    Ok(l as usize)
}

/// setsockopt with `val` bytes.
pub fn set_opt_bytes(fd: BorrowedFd<'_>, level: u32, name: u32, val: &[u8]) -> Result<()> {
    // SAFETY: the kernel reads val.len() bytes of val.
    unsafe {
        syscalls::syscall5(
            Sysno::setsockopt,
            fd_arg(fd),
            level as usize,
            name as usize,
            val.as_ptr() as usize,
            val.len(),
        )
    }
    .map(drop)
}

/// An int option.
pub fn get_opt_int(fd: BorrowedFd<'_>, level: u32, name: u32) -> Result<i32> {
    let mut b = [0u8; 4];
    get_opt_bytes(fd, level, name, &mut b)?;
    Ok(i32::from_ne_bytes(b))
}

/// An int option.
pub fn set_opt_int(fd: BorrowedFd<'_>, level: u32, name: u32, v: i32) -> Result<()> {
    set_opt_bytes(fd, level, name, &v.to_ne_bytes())
}

/// SO_LINGER: Some(seconds) when lingering is on.
pub fn get_linger(fd: BorrowedFd<'_>) -> Result<Option<i32>> {
    let mut b = [0u8; 8];
    get_opt_bytes(fd, super::socket::SOL_SOCKET, SO_LINGER, &mut b)?;
    let on = i32::from_ne_bytes(b[0..4].try_into().expect("4 bytes"));
    Ok((on != 0).then(|| i32::from_ne_bytes(b[4..8].try_into().expect("4 bytes"))))
}

/// SO_LINGER on with `secs`, or off.
pub fn set_linger(fd: BorrowedFd<'_>, secs: Option<i32>) -> Result<()> {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&(secs.is_some() as i32).to_ne_bytes());
    b[4..8].copy_from_slice(&secs.unwrap_or(0).to_ne_bytes());
    set_opt_bytes(fd, super::socket::SOL_SOCKET, SO_LINGER, &b)
}

/// SO_BINDTODEVICE: the interface name (empty: none).
pub fn get_bound_device(fd: BorrowedFd<'_>) -> Result<Vec<u8>> {
    let mut b = [0u8; 16];
    let n = get_opt_bytes(fd, super::socket::SOL_SOCKET, SO_BINDTODEVICE, &mut b)?;
    let name = &b[..n.min(16)];
    Ok(name.split(|&c| c == 0).next().unwrap_or(&[]).to_vec())
}

/// One classic BPF instruction (`struct sock_filter`): code, jt, jf, k.
pub type SockFilter = (u16, u8, u8, u32);

/// SO_GET_FILTER: the classic filter attached with SO_ATTACH_FILTER (empty:
/// none). EACCES for an eBPF program, which cannot be read back.
pub fn get_filter(fd: BorrowedFd<'_>) -> Result<Vec<SockFilter>> {
    // The "length" of SO_GET_FILTER counts instructions, not bytes: 0 asks
    // how many there are.
    let mut count: u32 = 0;
    // SAFETY: with a length of 0 the kernel writes nothing to optval, only
    // the instruction count into count.
    unsafe {
        syscalls::syscall5(
            Sysno::getsockopt,
            fd_arg(fd),
            super::socket::SOL_SOCKET as usize,
            ln::SO_GET_FILTER as usize,
            0,
            &mut count as *mut u32 as usize,
        )
    }?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut raw = vec![0u8; count as usize * 8];
    let mut l = count;
    // SAFETY: raw holds count instructions of 8 bytes; the kernel copies
    // at most l = count of them and updates l.
    unsafe {
        syscalls::syscall5(
            Sysno::getsockopt,
            fd_arg(fd),
            super::socket::SOL_SOCKET as usize,
            ln::SO_GET_FILTER as usize,
            raw.as_mut_ptr() as usize,
            &mut l as *mut u32 as usize,
        )
    }?;
    let n = (l as usize).min(count as usize);
    Ok(raw[..n * 8]
        .chunks_exact(8)
        .map(|c| {
            (u16::from_ne_bytes([c[0], c[1]]), c[2], c[3], u32::from_ne_bytes(c[4..8].try_into().expect("4 bytes")))
        })
        .collect())
}

/// SO_ATTACH_FILTER with a classic program.
pub fn attach_filter(fd: BorrowedFd<'_>, prog: &[SockFilter]) -> Result<()> {
    let mut raw = Vec::with_capacity(prog.len() * 8);
    for &(code, jt, jf, k) in prog {
        raw.extend_from_slice(&code.to_ne_bytes());
        raw.push(jt);
        raw.push(jf);
        raw.extend_from_slice(&k.to_ne_bytes());
    }
    // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    let mut fprog = [0u8; 16];
    fprog[0..2].copy_from_slice(&(prog.len() as u16).to_ne_bytes());
    fprog[8..16].copy_from_slice(&(raw.as_ptr() as u64).to_ne_bytes());
    // SAFETY: the kernel reads the 16-byte sock_fprog and len * 8 bytes at
    // its pointer, which is raw (alive for the call).
    unsafe {
        syscalls::syscall5(
            Sysno::setsockopt,
            fd_arg(fd),
            super::socket::SOL_SOCKET as usize,
            ln::SO_ATTACH_FILTER as usize,
            fprog.as_ptr() as usize,
            16,
        )
    }
    .map(drop)
}

/// SO_DETACH_FILTER: removes the classic filter (ENOENT: there was none).
pub fn detach_filter(fd: BorrowedFd<'_>) -> Result<()> {
    set_opt_int(fd, super::socket::SOL_SOCKET, ln::SO_DETACH_FILTER, 0)
}

/// ioctl(fd, req, &int): SIOCINQ, SIOCOUTQ, SIOCOUTQNSD.
pub fn queue_ioctl(fd: BorrowedFd<'_>, req: usize) -> Result<u32> {
    let mut v: i32 = 0;
    // SAFETY: these requests write one int at the pointer.
    unsafe { syscalls::syscall3(Sysno::ioctl, fd_arg(fd), req, &mut v as *mut i32 as usize) }?;
    Ok(v as u32)
}

/// The start of `struct tcp_info` (linux/tcp.h) up to tcpi_rcv_mss: what
/// crtools reads. The kernel copies min(len, its size) bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpInfo {
    pub state: u8,
    pub ca_state: u8,
    pub retransmits: u8,
    pub probes: u8,
    pub backoff: u8,
    /// TCPI_OPT_* bits.
    pub options: u8,
    /// snd_wscale (low nibble), rcv_wscale (high nibble).
    pub wscale: u8,
    /// delivery_rate_app_limited and fastopen_client_fail bits.
    pub flags: u8,
    pub rto: u32,
    pub ato: u32,
    pub snd_mss: u32,
    pub rcv_mss: u32,
}
const _: () = assert!(core::mem::size_of::<TcpInfo>() == 24);
const _: () = assert!(core::mem::offset_of!(TcpInfo, snd_mss) == core::mem::offset_of!(ln::tcp_info, tcpi_snd_mss));
const _: () = assert!(core::mem::offset_of!(TcpInfo, options) == core::mem::offset_of!(ln::tcp_info, tcpi_options));

impl TcpInfo {
    /// Send window scale.
    pub fn snd_wscale(&self) -> u8 {
        self.wscale & 0xf
    }
    /// Receive window scale.
    pub fn rcv_wscale(&self) -> u8 {
        self.wscale >> 4
    }
}

/// TCP_INFO's tcpi_segs_in and tcpi_segs_out: segments received and sent
/// since the socket was made (or last disconnected with AF_UNSPEC).
pub fn tcp_segs(fd: BorrowedFd<'_>) -> Result<(u32, u32)> {
    let mut b = [0u8; core::mem::size_of::<ln::tcp_info>()];
    let n = get_opt_bytes(fd, SOL_TCP, ln::TCP_INFO, &mut b)?;
    let at = |off: usize| -> Result<u32> {
        b.get(off..off + 4)
            .filter(|_| off + 4 <= n)
            .map(|v| u32::from_ne_bytes(v.try_into().expect("4 bytes")))
            .ok_or(Errno::EIO)
    };
    Ok((
        at(core::mem::offset_of!(ln::tcp_info, tcpi_segs_in))?,
        at(core::mem::offset_of!(ln::tcp_info, tcpi_segs_out))?,
    ))
}

/// TCP_INFO.
pub fn tcp_info(fd: BorrowedFd<'_>) -> Result<TcpInfo> {
    let mut b = [0u8; 24];
    let n = get_opt_bytes(fd, SOL_TCP, ln::TCP_INFO, &mut b)?;
    if n < 24 {
        return Err(Errno::EIO);
    }
    let w = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    Ok(TcpInfo {
        state: b[0],
        ca_state: b[1],
        retransmits: b[2],
        probes: b[3],
        backoff: b[4],
        options: b[5],
        wscale: b[6],
        flags: b[7],
        rto: w(8),
        ato: w(12),
        snd_mss: w(16),
        rcv_mss: w(20),
    })
}

/// `struct tcp_repair_window`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpRepairWindow {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}
const _: () = assert!(core::mem::size_of::<ln::tcp_repair_window>() == 20);

/// TCP_REPAIR_WINDOW (repair mode only).
pub fn get_repair_window(fd: BorrowedFd<'_>) -> Result<TcpRepairWindow> {
    let mut b = [0u8; 20];
    let n = get_opt_bytes(fd, SOL_TCP, TCP_REPAIR_WINDOW, &mut b)?;
    if n != 20 {
        return Err(Errno::EIO);
    }
    let w = |i: usize| u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    Ok(TcpRepairWindow { snd_wl1: w(0), snd_wnd: w(1), max_window: w(2), rcv_wnd: w(3), rcv_wup: w(4) })
}

/// TCP_REPAIR_WINDOW (repair mode only).
pub fn set_repair_window(fd: BorrowedFd<'_>, w: &TcpRepairWindow) -> Result<()> {
    let mut b = Vec::with_capacity(20);
    for v in [w.snd_wl1, w.snd_wnd, w.max_window, w.rcv_wnd, w.rcv_wup] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    set_opt_bytes(fd, SOL_TCP, TCP_REPAIR_WINDOW, &b)
}

/// TCP_REPAIR_OPTIONS: (option kind, value) pairs (repair mode, after a
/// repair-mode connect, before any data is sent).
pub fn set_repair_options(fd: BorrowedFd<'_>, opts: &[(u32, u32)]) -> Result<()> {
    let mut b = Vec::with_capacity(opts.len() * 8);
    for &(code, val) in opts {
        b.extend_from_slice(&code.to_ne_bytes());
        b.extend_from_slice(&val.to_ne_bytes());
    }
    set_opt_bytes(fd, SOL_TCP, TCP_REPAIR_OPTIONS, &b)
}

/// TCP_MD5SIG_EXT (linux/tcp.h) and its prefix flag.
const TCP_MD5SIG_EXT: u32 = 32;
const TCP_MD5SIG_FLAG_PREFIX: u8 = 1;
/// Longest TCP_MD5SIG key.
pub const TCP_MD5SIG_MAXKEYLEN: usize = 80;

/// Adds a TCP_MD5SIG key for the peers `addr`/`prefixlen` (TCP_MD5SIG_EXT,
/// `struct tcp_md5sig`). An IPv4 key on an IPv6 socket (`sock_family`)
/// is given as a v4-mapped address, as the kernel takes it.
pub fn add_md5_key(fd: BorrowedFd<'_>, sock_family: u32, addr: &InetAddr, prefixlen: u8, key: &[u8]) -> Result<()> {
    if key.len() > TCP_MD5SIG_MAXKEYLEN {
        return Err(Errno::EINVAL);
    }
    let a = if sock_family == AF_INET6 && addr.family == AF_INET {
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&addr.addr[..4]);
        InetAddr::v6(m, 0)
    } else {
        *addr
    };
    // sockaddr_storage (128), flags, prefixlen, keylen (u16), ifindex
    // (i32), key[80].
    let mut b = [0u8; 216];
    let sa = a.to_bytes();
    b[..sa.len()].copy_from_slice(&sa);
    b[128] = TCP_MD5SIG_FLAG_PREFIX;
    b[129] = prefixlen;
    b[130..132].copy_from_slice(&(key.len() as u16).to_ne_bytes());
    b[136..136 + key.len()].copy_from_slice(key);
    super::socket::set_sockopt_bytes(fd, SOL_TCP, TCP_MD5SIG_EXT, &b)
}

/// SO_MEMINFO's option memory (SK_MEMINFO_OPTMEM): what the socket's
/// options hold of the socket's own allocations (filters, MD5 keys,
/// multicast memberships, zerocopy notifications, ...).
pub fn optmem(fd: BorrowedFd<'_>) -> Result<u32> {
    const SO_MEMINFO: u32 = 55;
    const SK_MEMINFO_OPTMEM: usize = 6;
    let b = super::socket::get_sockopt_bytes(fd, super::socket::SOL_SOCKET, SO_MEMINFO, 9 * 4)?;
    let at = SK_MEMINFO_OPTMEM * 4;
    b.get(at..at + 4).map(|v| u32::from_ne_bytes(v.try_into().expect("4 bytes"))).ok_or(Errno::EINVAL)
}

/// MCAST_JOIN_GROUP and MCAST_MSFILTER (linux/in.h), and the filter modes.
const MCAST_JOIN_GROUP: u32 = 42;
const MCAST_MSFILTER: u32 = 48;
pub const MCAST_EXCLUDE: u32 = 0;
pub const MCAST_INCLUDE: u32 = 1;
/// `struct group_filter` up to its source list: interface (u32, padded
/// to 8), group (sockaddr_storage), fmode, numsrc.
const GF_HEAD: usize = 144;
const SS_LEN: usize = 128;

fn level_of(group: &InetAddr) -> u32 {
    if group.family == AF_INET6 {
        SOL_IPV6
    } else {
        SOL_IP
    }
}

fn group_filter(ifindex: u32, group: &InetAddr, fmode: u32, sources: &[InetAddr], slots: usize) -> Vec<u8> {
    let mut b = vec![0u8; GF_HEAD + SS_LEN * slots.max(sources.len())];
    b[..4].copy_from_slice(&ifindex.to_ne_bytes());
    let g = group.to_bytes();
    b[8..8 + g.len()].copy_from_slice(&g);
    b[136..140].copy_from_slice(&fmode.to_ne_bytes());
    b[140..144].copy_from_slice(&(slots.max(sources.len()) as u32).to_ne_bytes());
    for (i, src) in sources.iter().enumerate() {
        let a = src.to_bytes();
        b[GF_HEAD + i * SS_LEN..GF_HEAD + i * SS_LEN + a.len()].copy_from_slice(&a);
    }
    b
}

/// The socket's source filter for multicast `group` on interface
/// `ifindex` (MCAST_MSFILTER): (mode, sources); None when the socket is
/// not a member (the kernel answers only for a member).
pub fn mcast_filter(fd: BorrowedFd<'_>, ifindex: u32, group: &InetAddr) -> Option<(u32, Vec<InetAddr>)> {
    let level = level_of(group);
    let mut slots = 0;
    // The first answer gives the count; the list may grow between two
    // reads only if the task runs, and it is frozen.
    for _ in 0..2 {
        let mut b = group_filter(ifindex, group, 0, &[], slots);
        super::socket::get_sockopt_inout(fd, level, MCAST_MSFILTER, &mut b).ok()?;
        let fmode = u32::from_ne_bytes(b[136..140].try_into().expect("4 bytes"));
        let n = u32::from_ne_bytes(b[140..144].try_into().expect("4 bytes")) as usize;
        if n <= slots {
            let sources = (0..n)
                .filter_map(|i| InetAddr::from_bytes(&b[GF_HEAD + i * SS_LEN..GF_HEAD + (i + 1) * SS_LEN]))
                .collect();
            return Some((fmode, sources));
        }
        slots = n;
    }
    None
}

/// Joins multicast `group` on interface `ifindex` with a source filter:
/// in exclude mode a join (MCAST_JOIN_GROUP) and a block per source
/// (MCAST_BLOCK_SOURCE), in include mode a source-specific join per
/// source (MCAST_JOIN_SOURCE_GROUP): the calls programs make, so the
/// kernel sizes the source list as it did for them.
pub fn mcast_join(fd: BorrowedFd<'_>, ifindex: u32, group: &InetAddr, fmode: u32, sources: &[InetAddr]) -> Result<()> {
    const MCAST_BLOCK_SOURCE: u32 = 43;
    const MCAST_JOIN_SOURCE_GROUP: u32 = 46;
    let level = level_of(group);
    // struct group_req: interface (padded to 8), group; struct
    // group_source_req: the same and a source.
    let req = group_filter(ifindex, group, 0, &[], 0);
    let with_source = |src: &InetAddr| {
        let mut b = req[..136].to_vec();
        let mut a = src.to_bytes();
        a.resize(SS_LEN, 0);
        b.extend_from_slice(&a);
        b
    };
    if fmode == MCAST_INCLUDE {
        if sources.is_empty() {
            return Err(Errno::EINVAL);
        }
        for src in sources {
            super::socket::set_sockopt_bytes(fd, level, MCAST_JOIN_SOURCE_GROUP, &with_source(src))?;
        }
        return Ok(());
    }
    super::socket::set_sockopt_bytes(fd, level, MCAST_JOIN_GROUP, &req[..136])?;
    for src in sources {
        super::socket::set_sockopt_bytes(fd, level, MCAST_BLOCK_SOURCE, &with_source(src))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::socket::{socket, SockFlags, SockType};
    use core::mem::{offset_of, size_of};
    use std::os::fd::AsFd;

    #[test]
    fn layouts_and_constants_match_libc() {
        assert_eq!(SIN_LEN, size_of::<libc::sockaddr_in>());
        assert_eq!(SIN6_LEN, size_of::<libc::sockaddr_in6>());
        assert_eq!(offset_of!(TcpInfo, options), offset_of!(libc::tcp_info, tcpi_options));
        assert_eq!(offset_of!(TcpInfo, wscale), offset_of!(libc::tcp_info, tcpi_snd_rcv_wscale));
        assert_eq!(offset_of!(TcpInfo, rto), offset_of!(libc::tcp_info, tcpi_rto));
        assert_eq!(offset_of!(TcpInfo, snd_mss), offset_of!(libc::tcp_info, tcpi_snd_mss));
        assert_eq!(offset_of!(TcpInfo, rcv_mss), offset_of!(libc::tcp_info, tcpi_rcv_mss));
        assert_eq!(size_of::<TcpRepairWindow>(), 20);
        assert_eq!(SIOCINQ as u64, libc::FIONREAD);
        assert_eq!(SIOCOUTQ as u64, libc::TIOCOUTQ);
        assert_eq!(SOL_IPV6 as i32, libc::SOL_IPV6);
        assert_eq!(SOL_UDP as i32, libc::SOL_UDP);
        assert_eq!(IPPROTO_UDPLITE as i32, libc::IPPROTO_UDPLITE);
        assert_eq!(TCP_REPAIR_WINDOW as i32, libc::TCP_REPAIR_WINDOW);
        assert_eq!(TCP_REPAIR_OPTIONS as i32, libc::TCP_REPAIR_OPTIONS);
        assert_eq!(TCP_QUEUE_SEQ as i32, libc::TCP_QUEUE_SEQ);
        assert_eq!(IPV6_V6ONLY as i32, libc::IPV6_V6ONLY);
        assert_eq!(UDP_CORK as i32, libc::UDP_CORK);
        assert_eq!(IPPROTO_RAW as i32, libc::IPPROTO_RAW);
        assert_eq!(IPV6_HDRINCL as i32, libc::IPV6_HDRINCL);
        assert_eq!(SKF_AD_MARK_LOAD as i32, libc::SKF_AD_OFF + libc::SKF_AD_MARK);
    }

    #[test]
    fn addresses_round_trip() {
        let a = InetAddr::v4([127, 0, 0, 1], 8080);
        let b = a.to_bytes();
        assert_eq!(b.len(), 16);
        assert_eq!(&b[2..4], &8080u16.to_be_bytes());
        assert_eq!(InetAddr::from_bytes(&b), Some(a));
        assert_eq!(a.to_string(), "127.0.0.1:8080");
        let mut l = [0u8; 16];
        l[15] = 1;
        let mut six = InetAddr::v6(l, 443);
        six.scope_id = 3;
        assert_eq!(InetAddr::from_bytes(&six.to_bytes()), Some(six));
        assert_eq!(six.to_string(), "[::1]:443");
        assert_eq!(InetAddr::from_bytes(&[1, 0]), None);
        assert!(InetAddr::v4([0; 4], 0).is_any());
    }

    #[test]
    fn loopback_tcp_info_and_options() {
        let l = socket(AF_INET, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0).unwrap();
        set_opt_int(l.as_fd(), crate::sys::socket::SOL_SOCKET, SO_REUSEADDR, 1).unwrap();
        bind(l.as_fd(), &InetAddr::v4([127, 0, 0, 1], 0)).unwrap();
        crate::sys::socket::listen(l.as_fd(), 4).unwrap();
        let at = local_addr(l.as_fd()).unwrap();
        assert_ne!(at.port, 0);
        assert_eq!(tcp_info(l.as_fd()).unwrap().state, 10);
        let c = socket(AF_INET, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0).unwrap();
        connect(c.as_fd(), &at).unwrap();
        assert_eq!(peer_addr(c.as_fd()).unwrap(), at);
        let i = tcp_info(c.as_fd()).unwrap();
        assert_eq!(i.state, 1);
        assert!(i.snd_mss > 0);
        set_linger(c.as_fd(), Some(7)).unwrap();
        assert_eq!(get_linger(c.as_fd()).unwrap(), Some(7));
        assert_eq!(get_bound_device(c.as_fd()).unwrap(), b"");
        assert_eq!(get_filter(c.as_fd()).unwrap(), vec![]);
        // A filter that accepts everything: ret #-1.
        attach_filter(c.as_fd(), &[(0x06, 0, 0, u32::MAX)]).unwrap();
        assert_eq!(get_filter(c.as_fd()).unwrap(), vec![(0x06, 0, 0, u32::MAX)]);
        send_to(c.as_fd(), b"abc", 0, None).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(queue_ioctl(c.as_fd(), SIOCOUTQ).unwrap(), 0);
    }
}
