//! Sockets: socket(2), socketpair(2), bind(2), connect(2), listen(2),
//! accept4(2), sendmsg(2)/recvmsg(2) with SCM_RIGHTS (unix(7), cmsg(3)),
//! getsockopt(2)/setsockopt(2) (socket(7), tcp(7)), getsockname(2),
//! getpeername(2).
//!
//! # Invariants
//! - Socket options are split into one typed function per option.
//! - [`UnixAddr`] always holds a well-formed `sockaddr_un` and the length the
//!   kernel must be given (or gave back): the length distinguishes pathname,
//!   abstract (leading NUL) and unnamed addresses.
//! - [`recv_fds`] never leaks descriptors: every received one is wrapped in an
//!   `OwnedFd` before any error is returned, and it is requested with
//!   MSG_CMSG_CLOEXEC. Truncated control data or payload is an error (EMSGSIZE).
//! - Sends use MSG_NOSIGNAL: a dead peer is EPIPE, never SIGPIPE.
use super::{retry_eintr, Errno, Result, Sysno};
use linux_raw_sys::net as ln;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const AF_UNIX: u32 = ln::AF_UNIX;
pub const AF_INET: u32 = ln::AF_INET;
pub const AF_INET6: u32 = ln::AF_INET6;
pub const AF_NETLINK: u32 = ln::AF_NETLINK;
pub const AF_PACKET: u32 = ln::AF_PACKET;
pub const SOL_SOCKET: u32 = ln::SOL_SOCKET;
pub const SOL_TCP: u32 = ln::SOL_TCP;
pub const IPPROTO_TCP: u32 = ln::IPPROTO_TCP as u32;
pub const SCM_RIGHTS: u32 = ln::SCM_RIGHTS;
/// Most descriptors one SCM_RIGHTS message may carry (SCM_MAX_FD).
pub const SCM_MAX_FD: usize = 253;

/// A socket type (`SOCK_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockType(pub u32);

impl SockType {
    pub const SOCK_STREAM: SockType = SockType(ln::SOCK_STREAM);
    pub const SOCK_DGRAM: SockType = SockType(ln::SOCK_DGRAM);
    pub const SOCK_RAW: SockType = SockType(ln::SOCK_RAW);
    pub const SOCK_SEQPACKET: SockType = SockType(ln::SOCK_SEQPACKET);
}

bitflags::bitflags! {
    /// Flags or-ed into the type of socket/socketpair and given to accept4.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SockFlags: u32 {
        /// Equal to O_CLOEXEC.
        const SOCK_CLOEXEC = linux_raw_sys::general::O_CLOEXEC;
        /// Equal to O_NONBLOCK.
        const SOCK_NONBLOCK = linux_raw_sys::general::O_NONBLOCK;
    }
}

bitflags::bitflags! {
    /// `MSG_*` flags for send/recv.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MsgFlags: u32 {
        const MSG_PEEK = ln::MSG_PEEK;
        const MSG_CTRUNC = ln::MSG_CTRUNC;
        const MSG_TRUNC = ln::MSG_TRUNC;
        const MSG_DONTWAIT = ln::MSG_DONTWAIT;
        const MSG_EOR = ln::MSG_EOR;
        const MSG_WAITALL = ln::MSG_WAITALL;
        const MSG_NOSIGNAL = ln::MSG_NOSIGNAL;
        const MSG_CMSG_CLOEXEC = ln::MSG_CMSG_CLOEXEC;
        const _ = !0;
    }
}

fn owned(r: usize) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

fn fd_arg(fd: BorrowedFd<'_>) -> usize {
    fd.as_raw_fd() as usize
}

/// socket(domain, type | flags, protocol).
pub fn socket(domain: u32, ty: SockType, flags: SockFlags, protocol: u32) -> Result<OwnedFd> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall3(Sysno::socket, domain as usize, (ty.0 | flags.bits()) as usize, protocol as usize) }
        .map(owned)
}

/// socketpair(domain, type | flags, protocol).
pub fn socketpair(domain: u32, ty: SockType, flags: SockFlags, protocol: u32) -> Result<(OwnedFd, OwnedFd)> {
    let mut sv = [-1i32; 2];
    // SAFETY: the kernel writes two ints into sv.
    unsafe {
        syscalls::syscall4(
            Sysno::socketpair,
            domain as usize,
            (ty.0 | flags.bits()) as usize,
            protocol as usize,
            sv.as_mut_ptr() as usize,
        )
    }?;
    Ok((owned(sv[0] as usize), owned(sv[1] as usize)))
}

const SUN_PATH_OFF: usize = core::mem::offset_of!(ln::sockaddr_un, sun_path);
const SUN_PATH_LEN: usize = 108;
const _: () = assert!(SUN_PATH_OFF == 2 && core::mem::size_of::<ln::sockaddr_un>() == 110);

/// A unix socket address: pathname, abstract or unnamed.
#[derive(Clone, Copy)]
pub struct UnixAddr {
    raw: ln::sockaddr_un,
    len: u32,
}

impl UnixAddr {
    fn empty() -> UnixAddr {
        UnixAddr { raw: ln::sockaddr_un { sun_family: AF_UNIX as u16, sun_path: [0; SUN_PATH_LEN] }, len: 2 }
    }

    /// A pathname address (at most 108 bytes, no NUL inside).
    pub fn new(path: impl AsRef<Path>) -> Result<UnixAddr> {
        let b = path.as_ref().as_os_str().as_bytes();
        if b.is_empty() || b.len() > SUN_PATH_LEN || b.contains(&0) {
            return Err(Errno::EINVAL);
        }
        let mut a = UnixAddr::empty();
        for (d, s) in a.raw.sun_path.iter_mut().zip(b) {
            *d = *s as _;
        }
        // Count the terminating NUL when it fits, as the kernel does on getsockname.
        a.len = (SUN_PATH_OFF + b.len() + usize::from(b.len() < SUN_PATH_LEN)) as u32;
        Ok(a)
    }

    /// An abstract address: `name` without the leading NUL (at most 107 bytes,
    /// NULs allowed: every byte counts).
    pub fn new_abstract(name: &[u8]) -> Result<UnixAddr> {
        if name.len() > SUN_PATH_LEN - 1 {
            return Err(Errno::EINVAL);
        }
        let mut a = UnixAddr::empty();
        for (d, s) in a.raw.sun_path[1..].iter_mut().zip(name) {
            *d = *s as _;
        }
        a.len = (SUN_PATH_OFF + 1 + name.len()) as u32;
        Ok(a)
    }

    /// From the `sun_path` bytes images store ([`UnixAddr::path_bytes`]):
    /// empty is unnamed, a leading NUL abstract, anything else a pathname.
    pub fn from_path_bytes(b: &[u8]) -> Result<UnixAddr> {
        match b {
            [] => Ok(UnixAddr::empty()),
            [0, rest @ ..] => UnixAddr::new_abstract(rest),
            _ => UnixAddr::new(Path::new(std::ffi::OsStr::from_bytes(b))),
        }
    }

    /// The unnamed address (only a family; what an unbound socket reports).
    pub fn unnamed() -> UnixAddr {
        UnixAddr::empty()
    }

    /// Builds from what the kernel returned: `len` bytes of `raw`.
    pub fn from_raw(raw: ln::sockaddr_un, len: u32) -> Result<UnixAddr> {
        if (len as usize) < SUN_PATH_OFF || len as usize > core::mem::size_of::<ln::sockaddr_un>() {
            return Err(Errno::EINVAL);
        }
        if raw.sun_family != AF_UNIX as u16 {
            return Err(Errno::EAFNOSUPPORT);
        }
        Ok(UnixAddr { raw, len })
    }

    /// The socklen to hand the kernel.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the address is unnamed (no path bytes at all).
    pub fn is_empty(&self) -> bool {
        self.is_unnamed()
    }

    /// The `sun_path` bytes covered by the length (abstract: leading NUL
    /// included; pathname: trailing NUL stripped). This is what images store.
    pub fn path_bytes(&self) -> &[u8] {
        let n = self.len as usize - SUN_PATH_OFF;
        // SAFETY: c_char and u8 have the same size and alignment; n <= 108.
        let all: &[u8] = unsafe { core::slice::from_raw_parts(self.raw.sun_path.as_ptr() as *const u8, n) };
        if all.first() == Some(&0) {
            all
        } else {
            let end = all.iter().position(|&c| c == 0).unwrap_or(all.len());
            &all[..end]
        }
    }

    /// Whether the address is unnamed.
    pub fn is_unnamed(&self) -> bool {
        self.len as usize == SUN_PATH_OFF
    }

    /// The pathname, if this is a pathname address.
    pub fn path(&self) -> Option<&Path> {
        let b = self.path_bytes();
        if b.is_empty() || b[0] == 0 {
            None
        } else {
            Some(Path::new(std::ffi::OsStr::from_bytes(b)))
        }
    }

    /// The abstract name (without the leading NUL), if abstract.
    pub fn abstract_name(&self) -> Option<&[u8]> {
        match self.path_bytes() {
            [0, rest @ ..] => Some(rest),
            _ => None,
        }
    }

    /// The raw `sockaddr_un`.
    pub fn as_raw(&self) -> &ln::sockaddr_un {
        &self.raw
    }
}

impl core::fmt::Debug for UnixAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let Some(p) = self.path() {
            write!(f, "UnixAddr({:?})", p)
        } else if let Some(a) = self.abstract_name() {
            write!(f, "UnixAddr(@{:?})", String::from_utf8_lossy(a))
        } else {
            write!(f, "UnixAddr(unnamed)")
        }
    }
}

impl PartialEq for UnixAddr {
    fn eq(&self, o: &UnixAddr) -> bool {
        self.path_bytes() == o.path_bytes()
    }
}
impl Eq for UnixAddr {}

/// Any socket address as the kernel returned it (up to 128 bytes).
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: [u8; 128],
    len: u32,
}

impl SockAddr {
    /// sa_family.
    pub fn family(&self) -> u32 {
        if self.len < 2 {
            return 0;
        }
        u16::from_ne_bytes([self.storage[0], self.storage[1]]) as u32
    }
    /// The address bytes (family included), `len` of them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.storage[..(self.len as usize).min(128)]
    }
    /// As a unix address, when the family is AF_UNIX.
    pub fn as_unix(&self) -> Option<UnixAddr> {
        if self.family() != AF_UNIX {
            return None;
        }
        let mut raw = UnixAddr::empty().raw;
        let n = self.as_bytes().len().min(110);
        for (i, d) in raw.sun_path.iter_mut().enumerate().take(n.saturating_sub(2)) {
            *d = self.storage[2 + i] as _;
        }
        UnixAddr::from_raw(raw, n as u32).ok()
    }
}

impl core::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SockAddr {{ family: {}, bytes: {:?} }}", self.family(), self.as_bytes())
    }
}

/// bind(fd, addr).
pub fn bind(fd: BorrowedFd<'_>, addr: &UnixAddr) -> Result<()> {
    // SAFETY: the kernel reads addr.len bytes of the sockaddr_un.
    unsafe { syscalls::syscall3(Sysno::bind, fd_arg(fd), &addr.raw as *const _ as usize, addr.len as usize) }.map(drop)
}

/// connect(fd, addr).
pub fn connect(fd: BorrowedFd<'_>, addr: &UnixAddr) -> Result<()> {
    // SAFETY: the kernel reads addr.len bytes of the sockaddr_un.
    retry_eintr(|| unsafe {
        syscalls::syscall3(Sysno::connect, fd_arg(fd), &addr.raw as *const _ as usize, addr.len as usize)
    })
    .map(drop)
}

/// listen(fd, backlog).
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall2(Sysno::listen, fd_arg(fd), backlog as usize) }.map(drop)
}

/// accept4(fd, flags) on a unix socket: the connection and the peer's address.
pub fn accept4(fd: BorrowedFd<'_>, flags: SockFlags) -> Result<(OwnedFd, UnixAddr)> {
    let mut raw = UnixAddr::empty().raw;
    let mut len = core::mem::size_of::<ln::sockaddr_un>() as u32;
    // SAFETY: the kernel writes at most `len` bytes into raw and updates len.
    let c = retry_eintr(|| unsafe {
        syscalls::syscall4(
            Sysno::accept4,
            fd_arg(fd),
            &mut raw as *mut _ as usize,
            &mut len as *mut u32 as usize,
            flags.bits() as usize,
        )
    })
    .map(owned)?;
    let len = len.min(core::mem::size_of::<ln::sockaddr_un>() as u32);
    Ok((c, UnixAddr::from_raw(raw, len)?))
}

fn name_call(nr: Sysno, fd: BorrowedFd<'_>) -> Result<SockAddr> {
    let mut a = SockAddr { storage: [0; 128], len: 128 };
    // SAFETY: the kernel writes at most a.len bytes into storage and updates a.len.
    unsafe { syscalls::syscall3(nr, fd_arg(fd), a.storage.as_mut_ptr() as usize, &mut a.len as *mut u32 as usize) }?;
    a.len = a.len.min(128);
    Ok(a)
}

/// getsockname(fd).
pub fn getsockname(fd: BorrowedFd<'_>) -> Result<SockAddr> {
    name_call(Sysno::getsockname, fd)
}

/// getpeername(fd).
pub fn getpeername(fd: BorrowedFd<'_>) -> Result<SockAddr> {
    name_call(Sysno::getpeername, fd)
}

/// A netlink address: port id and the first 32 multicast groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetlinkAddr {
    /// nl_pid: the port id (0: the kernel, or not bound).
    pub portid: u32,
    /// nl_groups: multicast groups 1..=32 as a bit mask.
    pub groups: u32,
}

impl SockAddr {
    /// As a netlink address, when the family is AF_NETLINK.
    pub fn as_netlink(&self) -> Option<NetlinkAddr> {
        if self.family() != AF_NETLINK || self.len < 12 {
            return None;
        }
        let w = |o: usize| u32::from_ne_bytes(self.storage[o..o + 4].try_into().expect("4 bytes"));
        Some(NetlinkAddr { portid: w(4), groups: w(8) })
    }
}

/// bind(fd, sockaddr_nl).
pub fn bind_netlink(fd: BorrowedFd<'_>, a: &NetlinkAddr) -> Result<()> {
    let mut raw = [0u8; 12];
    raw[0..2].copy_from_slice(&(AF_NETLINK as u16).to_ne_bytes());
    raw[4..8].copy_from_slice(&a.portid.to_ne_bytes());
    raw[8..12].copy_from_slice(&a.groups.to_ne_bytes());
    // SAFETY: the kernel reads the 12 bytes of a sockaddr_nl.
    unsafe { syscalls::syscall3(Sysno::bind, fd_arg(fd), raw.as_ptr() as usize, 12) }.map(drop)
}

/// connect(fd, sockaddr_nl).
pub fn connect_netlink(fd: BorrowedFd<'_>, a: &NetlinkAddr) -> Result<()> {
    let mut raw = [0u8; 12];
    raw[0..2].copy_from_slice(&(AF_NETLINK as u16).to_ne_bytes());
    raw[4..8].copy_from_slice(&a.portid.to_ne_bytes());
    raw[8..12].copy_from_slice(&a.groups.to_ne_bytes());
    // SAFETY: the kernel reads the 12 bytes of a sockaddr_nl.
    unsafe { syscalls::syscall3(Sysno::connect, fd_arg(fd), raw.as_ptr() as usize, 12) }.map(drop)
}

/// A packet socket's address (`struct sockaddr_ll`), as far as crtools
/// keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketAddr {
    /// sll_protocol, host order.
    pub protocol: u16,
    /// sll_ifindex (0: any interface).
    pub ifindex: i32,
}

impl SockAddr {
    /// As a packet socket address, when the family is AF_PACKET.
    pub fn as_packet(&self) -> Option<PacketAddr> {
        if self.family() != AF_PACKET || self.len < 8 {
            return None;
        }
        Some(PacketAddr {
            protocol: u16::from_be_bytes([self.storage[2], self.storage[3]]),
            ifindex: i32::from_ne_bytes(self.storage[4..8].try_into().expect("4 bytes")),
        })
    }
}

/// bind(fd, sockaddr_ll) of a packet socket: its protocol and interface.
pub fn bind_packet(fd: BorrowedFd<'_>, a: &PacketAddr) -> Result<()> {
    let mut raw = [0u8; 20];
    raw[0..2].copy_from_slice(&(AF_PACKET as u16).to_ne_bytes());
    raw[2..4].copy_from_slice(&a.protocol.to_be_bytes());
    raw[4..8].copy_from_slice(&a.ifindex.to_ne_bytes());
    // SAFETY: the kernel reads the 20 bytes of a sockaddr_ll.
    unsafe { syscalls::syscall3(Sysno::bind, fd_arg(fd), raw.as_ptr() as usize, 20) }.map(drop)
}

/// SOL_NETLINK.
pub const SOL_NETLINK: u32 = 270;
/// NETLINK_ADD_MEMBERSHIP.
pub const NETLINK_ADD_MEMBERSHIP: u32 = 1;
/// NETLINK_LIST_MEMBERSHIPS.
pub const NETLINK_LIST_MEMBERSHIPS: u32 = 9;

/// Every multicast group a netlink socket is in (NETLINK_LIST_MEMBERSHIPS).
pub fn netlink_groups(fd: BorrowedFd<'_>) -> Result<Vec<u32>> {
    let mut words = vec![0u32; 32];
    loop {
        let cap = (words.len() * 4) as u32;
        // SAFETY: words has cap writable bytes.
        let got =
            unsafe { getsockopt_raw(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words.as_mut_ptr() as *mut u8, cap) }?;
        if got <= cap {
            let mut out = Vec::new();
            for (i, w) in words.iter().take(got as usize / 4).enumerate() {
                for b in 0..32 {
                    if w & (1 << b) != 0 {
                        out.push(i as u32 * 32 + b + 1);
                    }
                }
            }
            return Ok(out);
        }
        words.resize(got as usize / 4 + 1, 0);
    }
}

/// Joins netlink multicast group `g`.
pub fn netlink_add_membership(fd: BorrowedFd<'_>, g: u32) -> Result<()> {
    setsockopt_int(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g as i32)
}

/// SOL_NETLINK options read and set as an int (NETLINK_PKTINFO, ...).
pub fn get_sol_netlink_int(fd: BorrowedFd<'_>, name: u32) -> Result<i32> {
    getsockopt_int(fd, SOL_NETLINK, name)
}

/// See [`get_sol_netlink_int`].
pub fn set_sol_netlink_int(fd: BorrowedFd<'_>, name: u32, v: i32) -> Result<()> {
    setsockopt_int(fd, SOL_NETLINK, name, v)
}

/// getsockname of a unix socket.
pub fn getsockname_unix(fd: BorrowedFd<'_>) -> Result<UnixAddr> {
    getsockname(fd)?.as_unix().ok_or(Errno::EAFNOSUPPORT)
}

/// getpeername of a unix socket.
pub fn getpeername_unix(fd: BorrowedFd<'_>) -> Result<UnixAddr> {
    getpeername(fd)?.as_unix().ok_or(Errno::EAFNOSUPPORT)
}

/// Kernel `struct iovec` for msghdr.
#[repr(C)]
struct IoVec {
    base: usize,
    len: usize,
}

/// Bytes of control buffer for `n` descriptors: CMSG_SPACE(n * 4).
const fn cmsg_space(n: usize) -> usize {
    let hdr = core::mem::size_of::<ln::cmsghdr>();
    hdr + ((n * 4 + 7) & !7)
}

const CMSG_HDR: usize = core::mem::size_of::<ln::cmsghdr>();
const _: () = assert!(CMSG_HDR == 16);

/// send(fd, data, flags | MSG_NOSIGNAL).
pub fn send(fd: BorrowedFd<'_>, data: &[u8], flags: MsgFlags) -> Result<usize> {
    let f = (flags | MsgFlags::MSG_NOSIGNAL).bits() as usize;
    // SAFETY: the kernel reads data.len() bytes from data; no address.
    retry_eintr(|| unsafe {
        syscalls::syscall6(Sysno::sendto, fd_arg(fd), data.as_ptr() as usize, data.len(), f, 0, 0)
    })
}

/// recv(fd, buf, flags).
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> Result<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf; no address.
    retry_eintr(|| unsafe {
        syscalls::syscall6(
            Sysno::recvfrom,
            fd_arg(fd),
            buf.as_mut_ptr() as usize,
            buf.len(),
            flags.bits() as usize,
            0,
            0,
        )
    })
}

/// sendmsg with `data` and, when `fds` is not empty, one SCM_RIGHTS message
/// carrying them (at most [`SCM_MAX_FD`]). Returns the data bytes sent.
pub fn send_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize> {
    sendmsg_unix(sock, data, None, None, fds, MsgFlags::MSG_NOSIGNAL)
}

fn bytemuck_u64(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements; the length covers exactly the words.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) }
}

/// recvmsg into `buf`, accepting up to `max_fds` descriptors (close-on-exec).
/// Returns the data bytes and the descriptors. 0 bytes with no descriptors
/// means the peer closed (for stream sockets). Truncated control data
/// (more descriptors than `max_fds`) or payload gives EMSGSIZE after closing
/// whatever arrived.
pub fn recv_fds(sock: BorrowedFd<'_>, buf: &mut [u8], max_fds: usize) -> Result<(usize, Vec<OwnedFd>)> {
    let max_fds = max_fds.min(SCM_MAX_FD);
    let space = cmsg_space(max_fds.max(1));
    let mut ctl = vec![0u64; space / 8];
    let mut iov = IoVec { base: buf.as_mut_ptr() as usize, len: buf.len() };
    let mut msg = ln::msghdr {
        msg_name: core::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: &mut iov as *mut IoVec as *mut ln::iovec,
        msg_iovlen: 1,
        msg_control: ctl.as_mut_ptr().cast(),
        msg_controllen: if max_fds == 0 { 0 } else { space },
        msg_flags: 0,
    };
    // SAFETY: the kernel writes at most buf.len() bytes into buf and at most
    // msg_controllen bytes into ctl, and updates the msghdr in place.
    let n = retry_eintr(|| unsafe {
        syscalls::syscall3(
            Sysno::recvmsg,
            fd_arg(sock),
            &mut msg as *mut ln::msghdr as usize,
            MsgFlags::MSG_CMSG_CLOEXEC.bits() as usize,
        )
    })?;
    let ctl_len = msg.msg_controllen.min(space);
    let flags = MsgFlags::from_bits_retain(msg.msg_flags);
    let bytes = bytemuck_u64(&mut ctl);
    let mut fds = Vec::new();
    let mut off = 0;
    while off + CMSG_HDR <= ctl_len {
        let len = usize::from_ne_bytes(bytes[off..off + 8].try_into().expect("8 bytes"));
        let level = i32::from_ne_bytes(bytes[off + 8..off + 12].try_into().expect("4 bytes"));
        let ty = i32::from_ne_bytes(bytes[off + 12..off + 16].try_into().expect("4 bytes"));
        if len < CMSG_HDR || off + len > ctl_len {
            break;
        }
        if level == SOL_SOCKET as i32 && ty == SCM_RIGHTS as i32 {
            for c in bytes[off + CMSG_HDR..off + len].chunks_exact(4) {
                let raw = i32::from_ne_bytes(c.try_into().expect("4 bytes"));
                fds.push(owned(raw as usize));
            }
        }
        off += (len + 7) & !7;
    }
    if flags.intersects(MsgFlags::MSG_CTRUNC | MsgFlags::MSG_TRUNC) {
        drop(fds);
        return Err(Errno::EMSGSIZE);
    }
    Ok((n, fds))
}

/// # Safety
/// `val` must point at `len` writable bytes.
unsafe fn getsockopt_raw(fd: BorrowedFd<'_>, level: u32, name: u32, val: *mut u8, len: u32) -> Result<u32> {
    let mut l = len;
    // SAFETY: the kernel writes at most l bytes at val (the caller's contract) and updates l.
    unsafe {
        syscalls::syscall5(
            Sysno::getsockopt,
            fd_arg(fd),
            level as usize,
            name as usize,
            val as usize,
            &mut l as *mut u32 as usize,
        )
    }?;
    Ok(l)
}

/// A socket option read as bytes (at most `max`), e.g. TCP_CONGESTION.
pub fn get_sockopt_bytes(fd: BorrowedFd<'_>, level: u32, name: u32, max: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; max];
    // SAFETY: v has max writable bytes.
    let n = unsafe { getsockopt_raw(fd, level, name, v.as_mut_ptr(), max as u32) }?;
    v.truncate(n as usize);
    Ok(v)
}

/// A socket option read through a buffer the kernel also reads its
/// question from (e.g. MCAST_MSFILTER); returns the length written.
pub fn get_sockopt_inout(fd: BorrowedFd<'_>, level: u32, name: u32, buf: &mut [u8]) -> Result<u32> {
    // SAFETY: buf has buf.len() writable bytes.
    unsafe { getsockopt_raw(fd, level, name, buf.as_mut_ptr(), buf.len() as u32) }
}

/// A socket option set from bytes, e.g. TCP_CONGESTION.
pub fn set_sockopt_bytes(fd: BorrowedFd<'_>, level: u32, name: u32, v: &[u8]) -> Result<()> {
    // SAFETY: the kernel reads v.len() bytes of v.
    unsafe {
        syscalls::syscall5(Sysno::setsockopt, fd_arg(fd), level as usize, name as usize, v.as_ptr() as usize, v.len())
    }
    .map(drop)
}

fn getsockopt_int(fd: BorrowedFd<'_>, level: u32, name: u32) -> Result<i32> {
    let mut v = 0i32;
    // SAFETY: v is 4 writable bytes.
    unsafe { getsockopt_raw(fd, level, name, &mut v as *mut i32 as *mut u8, 4) }?;
    Ok(v)
}

fn setsockopt_int(fd: BorrowedFd<'_>, level: u32, name: u32, v: i32) -> Result<()> {
    // SAFETY: the kernel reads 4 bytes of v.
    unsafe {
        syscalls::syscall5(Sysno::setsockopt, fd_arg(fd), level as usize, name as usize, &v as *const i32 as usize, 4)
    }
    .map(drop)
}

/// SOL_SOCKET options read and set as an int (SO_PASSCRED, SO_PASSSEC,
/// SO_RCVBUF, SO_SNDBUF, SO_PEEK_OFF, SO_RCVLOWAT, ...).
pub fn get_sol_socket_int(fd: BorrowedFd<'_>, name: u32) -> Result<i32> {
    getsockopt_int(fd, SOL_SOCKET, name)
}

/// See [`get_sol_socket_int`].
pub fn set_sol_socket_int(fd: BorrowedFd<'_>, name: u32, v: i32) -> Result<()> {
    setsockopt_int(fd, SOL_SOCKET, name, v)
}

/// SO_RCVTIMEO / SO_SNDTIMEO (old layout: struct timeval) as (sec, usec).
pub fn get_sol_socket_timeval(fd: BorrowedFd<'_>, name: u32) -> Result<(i64, i64)> {
    let mut tv = [0i64; 2];
    // SAFETY: tv is 16 writable bytes.
    unsafe { getsockopt_raw(fd, SOL_SOCKET, name, tv.as_mut_ptr() as *mut u8, 16) }?;
    Ok((tv[0], tv[1]))
}

/// See [`get_sol_socket_timeval`].
pub fn set_sol_socket_timeval(fd: BorrowedFd<'_>, name: u32, tv: (i64, i64)) -> Result<()> {
    let v = [tv.0, tv.1];
    // SAFETY: the kernel reads 16 bytes of v.
    unsafe {
        syscalls::syscall5(Sysno::setsockopt, fd_arg(fd), SOL_SOCKET as usize, name as usize, v.as_ptr() as usize, 16)
    }
    .map(drop)
}

pub use ln::{
    SCM_CREDENTIALS, SHUT_RD, SHUT_RDWR, SHUT_WR, SO_PASSCRED, SO_PASSSEC, SO_PEEK_OFF, SO_RCVBUF, SO_RCVLOWAT,
    SO_RCVTIMEO_OLD as SO_RCVTIMEO, SO_SNDBUF, SO_SNDTIMEO_OLD as SO_SNDTIMEO,
};

/// shutdown(fd, how).
pub fn shutdown(fd: BorrowedFd<'_>, how: u32) -> Result<()> {
    // SAFETY: no memory arguments.
    unsafe { syscalls::syscall2(Sysno::shutdown, fd_arg(fd), how as usize) }.map(drop)
}

/// One message received with [`recv_msg`].
#[derive(Debug)]
pub struct RecvMsg {
    /// Bytes of the message (with MSG_TRUNC: its real length, maybe more
    /// than the buffer held).
    pub len: usize,
    /// msg_flags the kernel returned.
    pub flags: MsgFlags,
    /// The sender's address (datagram sockets; unnamed otherwise).
    pub from: UnixAddr,
    /// Descriptors that came with it (SCM_RIGHTS), close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// Credentials that came with it (SCM_CREDENTIALS).
    pub creds: Option<UCred>,
}

/// recvmsg(fd, buf, flags) on a unix socket, with the sender's address and
/// room for credentials and [`SCM_MAX_FD`] descriptors.
pub fn recv_msg(fd: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> Result<RecvMsg> {
    let space = cmsg_space(SCM_MAX_FD) + CMSG_HDR + 16;
    let mut ctl = vec![0u64; space.div_ceil(8)];
    let mut from = UnixAddr::empty();
    let mut iov = IoVec { base: buf.as_mut_ptr() as usize, len: buf.len() };
    let mut msg = ln::msghdr {
        msg_name: &mut from.raw as *mut ln::sockaddr_un as *mut _,
        msg_namelen: core::mem::size_of::<ln::sockaddr_un>() as i32,
        msg_iov: &mut iov as *mut IoVec as *mut ln::iovec,
        msg_iovlen: 1,
        msg_control: ctl.as_mut_ptr().cast(),
        msg_controllen: ctl.len() * 8,
        msg_flags: 0,
    };
    let f = (flags | MsgFlags::MSG_CMSG_CLOEXEC).bits() as usize;
    // SAFETY: the kernel writes at most buf.len() bytes into buf, the
    // address into `from` and at most msg_controllen bytes into ctl.
    let n = retry_eintr(|| unsafe {
        syscalls::syscall3(Sysno::recvmsg, fd_arg(fd), &mut msg as *mut ln::msghdr as usize, f)
    })?;
    from.len = msg.msg_namelen.clamp(SUN_PATH_OFF as i32, core::mem::size_of::<ln::sockaddr_un>() as i32) as u32;
    let ctl_len = msg.msg_controllen.min(ctl.len() * 8);
    let bytes = bytemuck_u64(&mut ctl);
    let mut out =
        RecvMsg { len: n, flags: MsgFlags::from_bits_retain(msg.msg_flags), from, fds: Vec::new(), creds: None };
    let mut off = 0;
    while off + CMSG_HDR <= ctl_len {
        let len = usize::from_ne_bytes(bytes[off..off + 8].try_into().expect("8 bytes"));
        let level = i32::from_ne_bytes(bytes[off + 8..off + 12].try_into().expect("4 bytes"));
        let ty = i32::from_ne_bytes(bytes[off + 12..off + 16].try_into().expect("4 bytes"));
        if len < CMSG_HDR || off + len > ctl_len {
            break;
        }
        let data = &bytes[off + CMSG_HDR..off + len];
        if level == SOL_SOCKET as i32 && ty == SCM_RIGHTS as i32 {
            for c in data.chunks_exact(4) {
                out.fds.push(owned(i32::from_ne_bytes(c.try_into().expect("4 bytes")) as usize));
            }
        } else if level == SOL_SOCKET as i32 && ty == SCM_CREDENTIALS as i32 && data.len() >= 12 {
            let w = |i: usize| u32::from_ne_bytes(data[i..i + 4].try_into().expect("4 bytes"));
            out.creds = Some(UCred { pid: w(0) as i32, uid: w(4), gid: w(8) });
        }
        off += (len + 7) & !7;
    }
    Ok(out)
}

/// sendmsg(fd, data) to `to` (None: the connected peer), with explicit
/// credentials when `creds` is given and `fds` as SCM_RIGHTS (at most
/// [`SCM_MAX_FD`]). Non-blocking. Returns the bytes sent.
pub fn send_msg(
    fd: BorrowedFd<'_>,
    data: &[u8],
    to: Option<&UnixAddr>,
    creds: Option<&UCred>,
    fds: &[BorrowedFd<'_>],
) -> Result<usize> {
    sendmsg_unix(fd, data, to, creds, fds, MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT)
}

fn sendmsg_unix(
    fd: BorrowedFd<'_>,
    data: &[u8],
    to: Option<&UnixAddr>,
    creds: Option<&UCred>,
    fds: &[BorrowedFd<'_>],
    flags: MsgFlags,
) -> Result<usize> {
    if fds.len() > SCM_MAX_FD {
        return Err(Errno::EINVAL);
    }
    let mut ctl = vec![0u64; (cmsg_space(SCM_MAX_FD) + CMSG_HDR + 16) / 8];
    let mut ctl_len = 0;
    let b = bytemuck_u64(&mut ctl);
    if let Some(c) = creds {
        b[0..8].copy_from_slice(&(CMSG_HDR + 12).to_ne_bytes());
        b[8..12].copy_from_slice(&(SOL_SOCKET as i32).to_ne_bytes());
        b[12..16].copy_from_slice(&(SCM_CREDENTIALS as i32).to_ne_bytes());
        b[16..20].copy_from_slice(&c.pid.to_ne_bytes());
        b[20..24].copy_from_slice(&c.uid.to_ne_bytes());
        b[24..28].copy_from_slice(&c.gid.to_ne_bytes());
        ctl_len = CMSG_HDR + 16;
    }
    if !fds.is_empty() {
        let at = ctl_len;
        b[at..at + 8].copy_from_slice(&(CMSG_HDR + 4 * fds.len()).to_ne_bytes());
        b[at + 8..at + 12].copy_from_slice(&(SOL_SOCKET as i32).to_ne_bytes());
        b[at + 12..at + 16].copy_from_slice(&(SCM_RIGHTS as i32).to_ne_bytes());
        for (i, f) in fds.iter().enumerate() {
            let o = at + CMSG_HDR + 4 * i;
            b[o..o + 4].copy_from_slice(&f.as_raw_fd().to_ne_bytes());
        }
        ctl_len += cmsg_space(fds.len());
    }
    let mut iov = IoVec { base: data.as_ptr() as usize, len: data.len() };
    let msg = ln::msghdr {
        msg_name: to.map_or(core::ptr::null_mut(), |a| &a.raw as *const ln::sockaddr_un as *mut _),
        msg_namelen: to.map_or(0, |a| a.len as i32),
        msg_iov: &mut iov as *mut IoVec as *mut ln::iovec,
        msg_iovlen: 1,
        msg_control: if ctl_len == 0 { core::ptr::null_mut() } else { ctl.as_mut_ptr().cast() },
        msg_controllen: ctl_len,
        msg_flags: 0,
    };
    let f = flags.bits() as usize;
    // SAFETY: the kernel reads the msghdr, the address, data.len() bytes of
    // data and ctl_len bytes of ctl; the descriptors stay open for the call.
    retry_eintr(|| unsafe { syscalls::syscall3(Sysno::sendmsg, fd_arg(fd), &msg as *const ln::msghdr as usize, f) })
}

/// SO_TYPE.
pub fn get_so_type(fd: BorrowedFd<'_>) -> Result<SockType> {
    getsockopt_int(fd, SOL_SOCKET, ln::SO_TYPE).map(|v| SockType(v as u32))
}

/// SO_DOMAIN (AF_*).
pub fn get_so_domain(fd: BorrowedFd<'_>) -> Result<u32> {
    getsockopt_int(fd, SOL_SOCKET, ln::SO_DOMAIN).map(|v| v as u32)
}

/// SO_PROTOCOL.
pub fn get_so_protocol(fd: BorrowedFd<'_>) -> Result<u32> {
    getsockopt_int(fd, SOL_SOCKET, ln::SO_PROTOCOL).map(|v| v as u32)
}

/// SO_RCVBUF (the kernel reports twice the value set: bookkeeping overhead).
pub fn get_so_rcvbuf(fd: BorrowedFd<'_>) -> Result<u32> {
    getsockopt_int(fd, SOL_SOCKET, ln::SO_RCVBUF).map(|v| v as u32)
}

/// SO_RCVBUF, capped by net.core.rmem_max.
pub fn set_so_rcvbuf(fd: BorrowedFd<'_>, size: u32) -> Result<()> {
    setsockopt_int(fd, SOL_SOCKET, ln::SO_RCVBUF, size as i32)
}

/// SO_RCVBUFFORCE (CAP_NET_ADMIN; ignores rmem_max).
pub fn set_so_rcvbufforce(fd: BorrowedFd<'_>, size: u32) -> Result<()> {
    setsockopt_int(fd, SOL_SOCKET, ln::SO_RCVBUFFORCE, size as i32)
}

/// SO_SNDBUF (reported doubled, as SO_RCVBUF).
pub fn get_so_sndbuf(fd: BorrowedFd<'_>) -> Result<u32> {
    getsockopt_int(fd, SOL_SOCKET, ln::SO_SNDBUF).map(|v| v as u32)
}

/// SO_SNDBUF, capped by net.core.wmem_max.
pub fn set_so_sndbuf(fd: BorrowedFd<'_>, size: u32) -> Result<()> {
    setsockopt_int(fd, SOL_SOCKET, ln::SO_SNDBUF, size as i32)
}

/// SO_SNDBUFFORCE (CAP_NET_ADMIN; ignores wmem_max).
pub fn set_so_sndbufforce(fd: BorrowedFd<'_>, size: u32) -> Result<()> {
    setsockopt_int(fd, SOL_SOCKET, ln::SO_SNDBUFFORCE, size as i32)
}

/// SO_PASSCRED.
pub fn get_so_passcred(fd: BorrowedFd<'_>) -> Result<bool> {
    getsockopt_int(fd, SOL_SOCKET, ln::SO_PASSCRED).map(|v| v != 0)
}

/// SO_PASSCRED.
pub fn set_so_passcred(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    setsockopt_int(fd, SOL_SOCKET, ln::SO_PASSCRED, on as i32)
}

/// Peer credentials (`struct ucred`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}
const _: () = assert!(core::mem::size_of::<UCred>() == core::mem::size_of::<ln::ucred>());

/// SO_PEERGROUPS: the supplementary groups of the peer at connect or
/// socketpair time (ENODATA: none recorded).
pub fn get_so_peergroups(fd: BorrowedFd<'_>) -> Result<Vec<u32>> {
    const SO_PEERGROUPS: u32 = 59;
    let mut n = 64usize;
    loop {
        let mut g = vec![0u32; n];
        let mut len = (4 * n) as u32;
        // SAFETY: the kernel writes at most `len` bytes into `g` and the
        // length it needs into `len`.
        let r = unsafe {
            syscalls::syscall5(
                Sysno::getsockopt,
                fd_arg(fd),
                SOL_SOCKET as usize,
                SO_PEERGROUPS as usize,
                g.as_mut_ptr() as usize,
                &mut len as *mut u32 as usize,
            )
        };
        match r {
            Ok(_) => {
                g.truncate(len as usize / 4);
                return Ok(g);
            }
            Err(Errno::ERANGE) if (len as usize) / 4 > n && n < 65536 => n = len as usize / 4,
            Err(e) => return Err(e),
        }
    }
}

/// SO_PEERCRED: the credentials of the peer at connect/socketpair time.
pub fn get_so_peercred(fd: BorrowedFd<'_>) -> Result<UCred> {
    let mut c = UCred::default();
    // SAFETY: c is size_of::<UCred>() writable bytes.
    let n = unsafe { getsockopt_raw(fd, SOL_SOCKET, ln::SO_PEERCRED, &mut c as *mut UCred as *mut u8, 12) }?;
    if n != 12 {
        return Err(Errno::EIO);
    }
    Ok(c)
}

/// TCP_REPAIR mode values (tcp(7); used by checkpoint/restore of TCP).
pub const TCP_REPAIR_ON: i32 = 1;
pub const TCP_REPAIR_OFF: i32 = 0;
/// Leave repair mode without sending a window probe.
pub const TCP_REPAIR_OFF_NO_WP: i32 = -1;

/// setsockopt(IPPROTO_TCP, TCP_REPAIR, mode): needs CAP_NET_ADMIN (EPERM otherwise).
pub fn set_tcp_repair(fd: BorrowedFd<'_>, mode: i32) -> Result<()> {
    setsockopt_int(fd, IPPROTO_TCP, ln::TCP_REPAIR, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use std::os::fd::AsFd;

    #[test]
    fn constants_match_libc() {
        assert_eq!(AF_UNIX as i32, libc::AF_UNIX);
        assert_eq!(AF_INET as i32, libc::AF_INET);
        assert_eq!(AF_INET6 as i32, libc::AF_INET6);
        assert_eq!(AF_NETLINK as i32, libc::AF_NETLINK);
        assert_eq!(SockType::SOCK_STREAM.0 as i32, libc::SOCK_STREAM);
        assert_eq!(SockType::SOCK_DGRAM.0 as i32, libc::SOCK_DGRAM);
        assert_eq!(SockType::SOCK_SEQPACKET.0 as i32, libc::SOCK_SEQPACKET);
        assert_eq!(SockFlags::SOCK_CLOEXEC.bits() as i32, libc::SOCK_CLOEXEC);
        assert_eq!(SockFlags::SOCK_NONBLOCK.bits() as i32, libc::SOCK_NONBLOCK);
        assert_eq!(SOL_SOCKET as i32, libc::SOL_SOCKET);
        assert_eq!(IPPROTO_TCP as i32, libc::IPPROTO_TCP);
        assert_eq!(SCM_RIGHTS as i32, libc::SCM_RIGHTS);
        assert_eq!(ln::SO_TYPE as i32, libc::SO_TYPE);
        assert_eq!(ln::SO_DOMAIN as i32, libc::SO_DOMAIN);
        assert_eq!(ln::SO_PROTOCOL as i32, libc::SO_PROTOCOL);
        assert_eq!(ln::SO_RCVBUF as i32, libc::SO_RCVBUF);
        assert_eq!(ln::SO_SNDBUF as i32, libc::SO_SNDBUF);
        assert_eq!(ln::SO_PASSCRED as i32, libc::SO_PASSCRED);
        assert_eq!(ln::SO_PEERCRED as i32, libc::SO_PEERCRED);
        assert_eq!(ln::TCP_REPAIR as i32, libc::TCP_REPAIR);
        assert_eq!(MsgFlags::MSG_CTRUNC.bits() as i32, libc::MSG_CTRUNC);
        assert_eq!(MsgFlags::MSG_TRUNC.bits() as i32, libc::MSG_TRUNC);
        assert_eq!(MsgFlags::MSG_CMSG_CLOEXEC.bits() as i32, libc::MSG_CMSG_CLOEXEC);
        assert_eq!(MsgFlags::MSG_NOSIGNAL.bits() as i32, libc::MSG_NOSIGNAL);
    }

    #[test]
    fn layouts_match_libc() {
        assert_eq!(size_of::<ln::sockaddr_un>(), size_of::<libc::sockaddr_un>());
        assert_eq!(SUN_PATH_OFF, offset_of!(libc::sockaddr_un, sun_path));
        assert_eq!(size_of::<ln::msghdr>(), size_of::<libc::msghdr>());
        assert_eq!(offset_of!(ln::msghdr, msg_control), offset_of!(libc::msghdr, msg_control));
        assert_eq!(offset_of!(ln::msghdr, msg_flags), offset_of!(libc::msghdr, msg_flags));
        assert_eq!(CMSG_HDR, size_of::<libc::cmsghdr>());
        assert_eq!(size_of::<IoVec>(), size_of::<libc::iovec>());
        assert_eq!(size_of::<UCred>(), size_of::<libc::ucred>());
        assert_eq!(offset_of!(UCred, gid), offset_of!(libc::ucred, gid));
        for n in [1usize, 2, 3, 7, 253] {
            // SAFETY: CMSG_SPACE is a pure computation.
            assert_eq!(cmsg_space(n), unsafe { libc::CMSG_SPACE((4 * n) as u32) } as usize, "n={n}");
        }
    }

    #[test]
    fn unix_addr_forms() {
        let p = UnixAddr::new("/tmp/sock").unwrap();
        assert_eq!(p.len(), 2 + 9 + 1);
        assert_eq!(p.path(), Some(Path::new("/tmp/sock")));
        assert_eq!(p.abstract_name(), None);
        let a = UnixAddr::new_abstract(b"crtools\0x").unwrap();
        assert_eq!(a.len(), 2 + 1 + 9);
        assert_eq!(a.abstract_name(), Some(&b"crtools\0x"[..]));
        assert_eq!(a.path(), None);
        assert!(UnixAddr::unnamed().is_unnamed());
        assert!(UnixAddr::new("a\0b").is_err());
        assert!(UnixAddr::new("x".repeat(109)).is_err());
        assert_eq!(UnixAddr::new("x".repeat(108)).unwrap().len(), 110);
        assert!(UnixAddr::new_abstract(&[1; 108]).is_err());
    }

    #[test]
    fn pass_fds_over_socketpair() {
        let (a, b) = socketpair(AF_UNIX, SockType::SOCK_SEQPACKET, SockFlags::SOCK_CLOEXEC, 0).unwrap();
        assert_eq!(get_so_type(a.as_fd()).unwrap(), SockType::SOCK_SEQPACKET);
        assert_eq!(get_so_domain(a.as_fd()).unwrap(), AF_UNIX);
        assert_eq!(get_so_protocol(a.as_fd()).unwrap(), 0);
        let cred = get_so_peercred(a.as_fd()).unwrap();
        assert_eq!(cred.pid, std::process::id() as i32);
        // SAFETY: getuid has no preconditions.
        assert_eq!(cred.uid, unsafe { libc::getuid() });
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let (r, w) = super::super::fs::pipe2(super::super::fs::OpenFlags::O_CLOEXEC).unwrap();
        assert_eq!(send_fds(a.as_fd(), b"two", &[f.as_fd(), w.as_fd()]).unwrap(), 3);
        let mut buf = [0u8; 16];
        let (n, fds) = recv_fds(b.as_fd(), &mut buf, 4).unwrap();
        assert_eq!(&buf[..n], b"two");
        assert_eq!(fds.len(), 2);
        let s0 = super::super::fs::fstat(fds[0].as_fd()).unwrap();
        let s1 = super::super::fs::fstat(f.as_fd()).unwrap();
        assert_eq!((s0.dev, s0.ino), (s1.dev, s1.ino));
        // The second is our pipe's write end: write through it, read from r.
        super::super::fs::write_all(fds[1].as_fd(), b"!").unwrap();
        let mut one = [0u8; 1];
        assert_eq!(super::super::fs::read(r.as_fd(), &mut one).unwrap(), 1);
        assert!(super::super::fs::fcntl_getfd(fds[0].as_fd()).unwrap().contains(super::super::fs::FdFlags::FD_CLOEXEC));

        // Plain data, no descriptors.
        assert_eq!(send_fds(a.as_fd(), b"none", &[]).unwrap(), 4);
        let (n, fds) = recv_fds(b.as_fd(), &mut buf, 4).unwrap();
        assert_eq!((n, fds.len()), (4, 0));

        // More descriptors than room: MSG_CTRUNC is an error.
        send_fds(a.as_fd(), b"x", &[f.as_fd(), f.as_fd(), f.as_fd()]).unwrap();
        assert_eq!(recv_fds(b.as_fd(), &mut buf, 1).map(drop), Err(Errno::EMSGSIZE));
        // Payload truncation too.
        send(a.as_fd(), &[7u8; 32], MsgFlags::empty()).unwrap();
        assert_eq!(recv_fds(b.as_fd(), &mut buf, 1).map(drop), Err(Errno::EMSGSIZE));

        drop(a);
        let (n, fds) = recv_fds(b.as_fd(), &mut buf, 1).unwrap();
        assert_eq!((n, fds.len()), (0, 0));
    }

    #[test]
    fn abstract_listen_accept_names() {
        let name = format!("crtools-test-{}", std::process::id());
        let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap();
        let l = socket(AF_UNIX, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0).unwrap();
        bind(l.as_fd(), &addr).unwrap();
        listen(l.as_fd(), 4).unwrap();
        assert_eq!(getsockname_unix(l.as_fd()).unwrap(), addr);
        let c = socket(AF_UNIX, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0).unwrap();
        connect(c.as_fd(), &addr).unwrap();
        let (s, peer) = accept4(l.as_fd(), SockFlags::SOCK_CLOEXEC).unwrap();
        assert!(peer.is_unnamed());
        assert_eq!(getpeername_unix(c.as_fd()).unwrap(), addr);
        assert!(getsockname_unix(c.as_fd()).unwrap().is_unnamed());
        assert_eq!(send(c.as_fd(), b"hi", MsgFlags::empty()).unwrap(), 2);
        let mut b = [0u8; 2];
        assert_eq!(recv(s.as_fd(), &mut b, MsgFlags::empty()).unwrap(), 2);
        assert_eq!(&b, b"hi");

        set_so_passcred(s.as_fd(), true).unwrap();
        assert!(get_so_passcred(s.as_fd()).unwrap());
        set_so_sndbuf(s.as_fd(), 65536).unwrap();
        assert!(get_so_sndbuf(s.as_fd()).unwrap() >= 65536);
        set_so_rcvbuf(s.as_fd(), 65536).unwrap();
        assert!(get_so_rcvbuf(s.as_fd()).unwrap() >= 65536);

        // A pathname socket.
        let path = std::env::temp_dir().join(format!("crtools-sock-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let p = socket(AF_UNIX, SockType::SOCK_DGRAM, SockFlags::SOCK_CLOEXEC, 0).unwrap();
        bind(p.as_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        assert_eq!(getsockname_unix(p.as_fd()).unwrap().path(), Some(path.as_path()));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn tcp_repair_probe() {
        let s = socket(AF_INET, SockType::SOCK_STREAM, SockFlags::SOCK_CLOEXEC, 0).unwrap();
        assert_eq!(get_so_protocol(s.as_fd()).unwrap(), IPPROTO_TCP);
        assert!(getsockname(s.as_fd()).unwrap().family() == AF_INET);
        match set_tcp_repair(s.as_fd(), TCP_REPAIR_ON) {
            Ok(()) => set_tcp_repair(s.as_fd(), TCP_REPAIR_OFF).unwrap(),
            Err(Errno::EPERM) => eprintln!("TCP_REPAIR needs CAP_NET_ADMIN; skipped"),
            Err(e) => panic!("TCP_REPAIR: {e}"),
        }
    }
}
