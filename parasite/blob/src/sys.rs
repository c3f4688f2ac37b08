//! The blob's only door to the kernel: thin typed calls over `syscalls::raw`.
//! Each returns the kernel's raw result: non-negative on success, `-errno` on
//! failure, as i64.
use parasite_proto as proto;
use syscalls::{raw, Sysno};

pub const EINVAL: i32 = 22;
pub const ENOTCONN: i32 = 107;
pub const SIGKILL: i32 = 9;
pub const SIGSTOP: i32 = 19;
pub const AF_UNIX: i32 = 1;
pub const SOCK_SEQPACKET: i32 = 5;
pub const SOCK_CLOEXEC: i32 = 0o2000000;
pub const PR_GET_PDEATHSIG: i32 = 2;
pub const PR_GET_DUMPABLE: i32 = 3;
pub const PR_GET_SECUREBITS: i32 = 27;
pub const PR_GET_CHILD_SUBREAPER: i32 = 37;
pub const PR_GET_NO_NEW_PRIVS: i32 = 39;
pub const PR_GET_TID_ADDRESS: i32 = 40;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
const MSG_NOSIGNAL: usize = 0x4000;

fn ret(r: usize) -> i64 {
    r as i64
}

pub fn getpid() -> i32 {
    // SAFETY: getpid has no arguments and no side effects.
    unsafe { raw::syscall0(Sysno::getpid as usize) as i32 }
}

pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and no side effects.
    unsafe { raw::syscall0(Sysno::gettid as usize) as i32 }
}

pub fn close(fd: i32) -> i64 {
    // SAFETY: closing a descriptor this blob opened.
    ret(unsafe { raw::syscall1(Sysno::close as usize, fd as usize) })
}

pub fn sigaltstack_get(out: &mut proto::SigAltStackReply) -> i64 {
    // SAFETY: `out` has the layout of the kernel stack_t (asserted in proto).
    ret(unsafe { raw::syscall2(Sysno::sigaltstack as usize, 0, out as *mut _ as usize) })
}

pub fn rt_sigaction_get(sig: i32, out: &mut proto::KSigAction) -> i64 {
    // SAFETY: `out` has the layout of the kernel struct sigaction; act is NULL.
    ret(unsafe {
        raw::syscall4(Sysno::rt_sigaction as usize, sig as usize, 0, out as *mut _ as usize, 8)
    })
}

pub fn getitimer(which: i32, out: &mut proto::ITimerVal) -> i64 {
    // SAFETY: `out` has the layout of struct itimerval.
    ret(unsafe { raw::syscall2(Sysno::getitimer as usize, which as usize, out as *mut _ as usize) })
}

pub fn socket(domain: i32, ty: i32, proto: i32) -> i64 {
    // SAFETY: no pointers involved.
    ret(unsafe { raw::syscall3(Sysno::socket as usize, domain as usize, ty as usize, proto as usize) })
}

#[repr(C)]
struct SockaddrUn {
    family: u16,
    path: [u8; 108],
}

pub fn connect_unix(fd: i32, path: &[u8]) -> i64 {
    let mut sa = SockaddrUn { family: AF_UNIX as u16, path: [0; 108] };
    let n = path.len().min(108);
    sa.path[..n].copy_from_slice(&path[..n]);
    // SAFETY: `sa` is a valid sockaddr_un of the length given.
    ret(unsafe {
        raw::syscall3(Sysno::connect as usize, fd as usize, &sa as *const _ as usize, 2 + n)
    })
}

#[repr(C)]
struct IoVec {
    base: usize,
    len: usize,
}

#[repr(C)]
struct MsgHdr {
    name: usize,
    namelen: u32,
    _pad0: u32,
    iov: *const IoVec,
    iovlen: usize,
    control: *mut u8,
    controllen: usize,
    flags: i32,
    _pad1: u32,
}

#[repr(C, align(8))]
struct CmsgBuf {
    len: usize,
    level: i32,
    ty: i32,
    fds: [i32; proto::MAX_FDS],
}

/// Sends `fds` as one SCM_RIGHTS message; the data bytes are the descriptor
/// numbers so the engine can check what it received.
pub fn send_fds(sock: i32, fds: &[i32]) -> i64 {
    let mut cmsg = CmsgBuf { len: 16 + 4 * fds.len(), level: SOL_SOCKET, ty: SCM_RIGHTS, fds: [0; proto::MAX_FDS] };
    cmsg.fds[..fds.len()].copy_from_slice(fds);
    let iov = IoVec { base: fds.as_ptr() as usize, len: 4 * fds.len() };
    let msg = MsgHdr {
        name: 0,
        namelen: 0,
        _pad0: 0,
        iov: &iov,
        iovlen: 1,
        control: &mut cmsg as *mut CmsgBuf as *mut u8,
        // CMSG_SPACE: the payload rounded up to 8 bytes.
        controllen: (16 + 4 * fds.len() + 7) & !7,
        flags: 0,
        _pad1: 0,
    };
    // SAFETY: msg, iov and cmsg live on this stack frame for the call.
    ret(unsafe { raw::syscall3(Sysno::sendmsg as usize, sock as usize, &msg as *const _ as usize, MSG_NOSIGNAL) })
}

pub fn brk0() -> u64 {
    // SAFETY: brk(0) only reports the current break.
    unsafe { raw::syscall1(Sysno::brk as usize, 0) as u64 }
}

pub fn prctl(op: i32, arg: u64) -> i64 {
    // SAFETY: the GET operations used here write at most one word through `arg`.
    ret(unsafe { raw::syscall5(Sysno::prctl as usize, op as usize, arg as usize, 0, 0, 0) })
}

pub fn personality(p: u32) -> i64 {
    // SAFETY: 0xffffffff only queries.
    ret(unsafe { raw::syscall1(Sysno::personality as usize, p as usize) })
}

pub fn timer_gettime(id: i32, out: &mut [i64; 4]) -> i64 {
    // SAFETY: `out` has the layout of struct itimerspec.
    ret(unsafe { raw::syscall2(Sysno::timer_gettime as usize, id as usize, out.as_mut_ptr() as usize) })
}

/// get_mempolicy(mode, nodes, 1024 nodes, addr, flags).
pub fn get_mempolicy(mode: &mut i32, nodes: &mut [u64; 16], addr: u64, flags: usize) -> i64 {
    // SAFETY: the kernel writes an int to `mode` and 1024 bits to `nodes`.
    ret(unsafe {
        raw::syscall5(
            Sysno::get_mempolicy as usize,
            mode as *mut i32 as usize,
            nodes.as_mut_ptr() as usize,
            16 * 64,
            addr as usize,
            flags,
        )
    })
}

pub fn timer_getoverrun(id: i32) -> i64 {
    // SAFETY: no memory arguments.
    ret(unsafe { raw::syscall1(Sysno::timer_getoverrun as usize, id as usize) })
}

pub const EINTR: i64 = 4;
pub const SIGTRAP: i32 = 5;
const SIG_SETMASK: usize = 2;
const PR_SET_VMA: usize = 0x5356_4d41;
const PR_SET_VMA_ANON_NAME: usize = 0;

/// recv(2) of one message into `buf`.
pub fn recv(fd: i32, buf: *mut u8, len: usize) -> i64 {
    // SAFETY: the caller gives `len` writable bytes at `buf`.
    ret(unsafe { raw::syscall6(Sysno::recvfrom as usize, fd as usize, buf as usize, len, 0, 0, 0) })
}

/// send(2) of one message, without SIGPIPE (the engine may be gone: a
/// SIGPIPE queued here would reach the task once cured).
pub fn send(fd: i32, buf: *const u8, len: usize) -> i64 {
    // SAFETY: the caller gives `len` readable bytes at `buf`.
    ret(unsafe { raw::syscall6(Sysno::sendto as usize, fd as usize, buf as usize, len, MSG_NOSIGNAL, 0, 0) })
}

/// rt_sigprocmask(SIG_SETMASK, mask, NULL).
pub fn set_sigmask(mask: &u64) -> i64 {
    // SAFETY: the kernel reads 8 bytes of `mask`.
    ret(unsafe { raw::syscall4(Sysno::rt_sigprocmask as usize, SIG_SETMASK, mask as *const u64 as usize, 0, 8) })
}

/// rt_sigaction(sig, act, NULL).
pub fn rt_sigaction_set(sig: i32, act: &proto::KSigAction) -> i64 {
    // SAFETY: `act` has the layout of the kernel struct sigaction.
    ret(unsafe { raw::syscall4(Sysno::rt_sigaction as usize, sig as usize, act as *const _ as usize, 0, 8) })
}

/// Queues `sig` with `info` on the thread `tid` (rt_tgsigqueueinfo) or,
/// with `tid` < 0, on the process (rt_sigqueueinfo).
pub fn queue_signal(tgid: i32, tid: i32, sig: i32, info: &[u8; 128]) -> i64 {
    let i = info.as_ptr() as usize;
    // SAFETY: the kernel reads the 128-byte siginfo.
    ret(unsafe {
        if tid < 0 {
            raw::syscall3(Sysno::rt_sigqueueinfo as usize, tgid as usize, sig as usize, i)
        } else {
            raw::syscall4(Sysno::rt_tgsigqueueinfo as usize, tgid as usize, tid as usize, sig as usize, i)
        }
    })
}

/// Names the anonymous mapping `addr..addr+len` (PR_SET_VMA_ANON_NAME).
pub fn name_anon(addr: u64, len: u64, name: &[u8]) -> i64 {
    // SAFETY: `name` is NUL-terminated; the kernel only reads it.
    ret(unsafe {
        raw::syscall5(Sysno::prctl as usize, PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr as usize, len as usize, name.as_ptr() as usize)
    })
}

/// Any system call, with raw arguments (the engine's remote syscalls).
///
/// # Safety
/// The arguments are the engine's: pointers among them point into the
/// task as the engine intends.
pub unsafe fn syscall6(nr: u64, a: &[u64; 6]) -> i64 {
    // SAFETY: the caller's contract.
    ret(unsafe {
        raw::syscall6(nr as usize, a[0] as usize, a[1] as usize, a[2] as usize, a[3] as usize, a[4] as usize, a[5] as usize)
    })
}
