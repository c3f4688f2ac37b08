//! The restorer's only door to the kernel. Each call returns the raw kernel
//! result as i64: non-negative on success, `-errno` on failure.
use syscalls::{raw, Sysno};

macro_rules! sc {
    ($nr:ident) => {
        // SAFETY: see the caller's contract; arguments are plain values or
        // pointers into the blob's region.
        unsafe { raw::syscall0(Sysno::$nr as usize) as i64 }
    };
    ($nr:ident, $($a:expr),+) => {
        sc!(@n $nr; $($a),+)
    };
    (@n $nr:ident; $a:expr) => {
        // SAFETY: see the caller's contract.
        unsafe { raw::syscall1(Sysno::$nr as usize, $a as usize) as i64 }
    };
    (@n $nr:ident; $a:expr, $b:expr) => {
        // SAFETY: see the caller's contract.
        unsafe { raw::syscall2(Sysno::$nr as usize, $a as usize, $b as usize) as i64 }
    };
    (@n $nr:ident; $a:expr, $b:expr, $c:expr) => {
        // SAFETY: see the caller's contract.
        unsafe { raw::syscall3(Sysno::$nr as usize, $a as usize, $b as usize, $c as usize) as i64 }
    };
    (@n $nr:ident; $a:expr, $b:expr, $c:expr, $d:expr) => {
        // SAFETY: see the caller's contract.
        unsafe { raw::syscall4(Sysno::$nr as usize, $a as usize, $b as usize, $c as usize, $d as usize) as i64 }
    };
    (@n $nr:ident; $a:expr, $b:expr, $c:expr, $d:expr, $e:expr) => {
        // SAFETY: see the caller's contract.
        unsafe {
            raw::syscall5(Sysno::$nr as usize, $a as usize, $b as usize, $c as usize, $d as usize, $e as usize) as i64
        }
    };
    (@n $nr:ident; $a:expr, $b:expr, $c:expr, $d:expr, $e:expr, $f:expr) => {
        // SAFETY: see the caller's contract.
        unsafe {
            raw::syscall6(
                Sysno::$nr as usize,
                $a as usize,
                $b as usize,
                $c as usize,
                $d as usize,
                $e as usize,
                $f as usize,
            ) as i64
        }
    };
}

pub const EINVAL: i64 = 22;
pub const EIO: i64 = 5;
pub const ECANCELED: i64 = 125;
pub const EPERM: i64 = 1;
pub const EAGAIN: i64 = 11;

pub const PROT_READ: u32 = 1;
pub const PROT_WRITE: u32 = 2;
pub const MAP_SHARED: u32 = 0x01;
pub const MAP_PRIVATE: u32 = 0x02;
pub const MAP_DROPPABLE: u32 = 0x08;
pub const MAP_FIXED: u32 = 0x10;
pub const MAP_ANONYMOUS: u32 = 0x20;
pub const MREMAP_MAYMOVE: u32 = 1;
pub const MREMAP_FIXED: u32 = 2;
pub const O_RDONLY: u32 = 0;
pub const O_WRONLY: u32 = 1;
pub const O_CLOEXEC: u32 = 0o2000000;
pub const O_NONBLOCK: u32 = 0o4000;
pub const AT_FDCWD: i32 = -100;
pub const SIG_SETMASK: i32 = 2;
pub const RSEQ_FLAG_UNREGISTER: u32 = 1;

pub fn rt_sigprocmask_set(mask: u64) -> i64 {
    let m = mask;
    sc!(rt_sigprocmask, SIG_SETMASK, &m as *const u64, 0, 8)
}
pub fn setsid() -> i64 {
    sc!(setsid)
}
pub fn setpgid(pid: i32, pgid: i32) -> i64 {
    sc!(setpgid, pid, pgid)
}
pub fn munmap(addr: u64, len: u64) -> i64 {
    sc!(munmap, addr, len)
}
/// shmat(2): the attachment's address.
pub fn shmat(id: i32, addr: u64, flags: i32) -> i64 {
    sc!(shmat, id as i64, addr, flags as i64)
}
pub const SHM_RDONLY: i32 = 0o10000;
pub const SHM_EXEC: i32 = 0o100000;
pub fn mremap_fixed(from: u64, len: u64, to: u64) -> i64 {
    sc!(mremap, from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to)
}
pub fn io_setup(nr_events: u32, ctx: *mut u64) -> i64 {
    sc!(io_setup, nr_events, ctx)
}
pub fn io_submit(ctx: u64, nr: usize, iocbs: *const u64) -> i64 {
    sc!(io_submit, ctx, nr, iocbs)
}
pub fn io_destroy(ctx: u64) -> i64 {
    sc!(io_destroy, ctx)
}
pub fn mmap(addr: u64, len: u64, prot: u32, flags: u32, fd: i32, off: u64) -> i64 {
    sc!(mmap, addr, len, prot, flags, fd as i64, off)
}
pub fn mprotect(addr: u64, len: u64, prot: u32) -> i64 {
    sc!(mprotect, addr, len, prot)
}
pub fn madvise(addr: u64, len: u64, advice: i32) -> i64 {
    sc!(madvise, addr, len, advice)
}
pub fn mlock2(addr: u64, len: u64, flags: u32) -> i64 {
    sc!(mlock2, addr, len, flags)
}
pub fn mlockall(flags: u32) -> i64 {
    sc!(mlockall, flags)
}
pub fn personality(p: u32) -> i64 {
    sc!(personality, p)
}
/// set_mempolicy(mode, nodes, 1024 nodes); MPOL_DEFAULT takes no mask.
pub fn set_mempolicy(mode: i32, nodes: &[u64; 16]) -> i64 {
    let (mask, max) = if mode == 0 { (0, 0) } else { (nodes.as_ptr() as usize, 16 * 64) };
    sc!(set_mempolicy, mode, mask, max)
}
/// mbind(start, len, mode, nodes, 1024 nodes, 0).
pub fn mbind(start: u64, len: u64, mode: i32, nodes: &[u64; 16]) -> i64 {
    sc!(mbind, start, len, mode, nodes.as_ptr(), 16 * 64, 0)
}
/// # Safety-relevant: `path` must be NUL-terminated.
pub fn open(path: *const u8, flags: u32) -> i64 {
    sc!(openat, AT_FDCWD as i64, path, flags | O_CLOEXEC, 0)
}
pub fn write(fd: i32, buf: *const u8, len: usize) -> i64 {
    sc!(write, fd, buf, len)
}
pub fn membarrier(cmd: u32, flags: u32) -> i64 {
    sc!(membarrier, cmd, flags, 0)
}
pub fn close(fd: i32) -> i64 {
    sc!(close, fd)
}
pub fn flock(fd: i32, op: u32) -> i64 {
    sc!(flock, fd, op)
}
pub fn arch_prctl(code: u64, arg: u64) -> i64 {
    sc!(arch_prctl, code, arg)
}
pub fn close_range(first: u32, last: u32) -> i64 {
    sc!(close_range, first, last, 0)
}
pub fn dup3(old: i32, new: i32, flags: u32) -> i64 {
    sc!(dup3, old, new, flags)
}
/// exit(2): ends the calling thread only.
pub fn exit_thread(code: i32) -> ! {
    sc!(exit, code);
    loop {
        core::hint::spin_loop();
    }
}
/// FUTEX_WAIT (shared: CLONE_CHILD_CLEARTID wakes it so) while `*word == val`.
pub fn futex_wait(word: *const u32, val: u32) -> i64 {
    sc!(futex, word, 0, val, 0, 0, 0)
}
pub fn userfaultfd(flags: u32) -> i64 {
    sc!(userfaultfd, flags)
}
pub fn ioctl(fd: i32, req: u64, arg: u64) -> i64 {
    sc!(ioctl, fd, req, arg)
}
/// sendmsg(2) of `data` with one descriptor (SCM_RIGHTS).
pub fn send_fd(sock: i32, data: &[u8], fd: i32) -> i64 {
    // struct cmsghdr (len, level, type) and one int, padded to 8 bytes.
    let cmsg: [u64; 3] = [20, 1 | (1 << 32), fd as u32 as u64];
    let iov = [data.as_ptr() as u64, data.len() as u64];
    // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
    let msg: [u64; 7] = [0, 0, iov.as_ptr() as u64, 1, cmsg.as_ptr() as u64, 24, 0];
    sc!(sendmsg, sock, msg.as_ptr(), 0)
}
pub fn pread(fd: i32, buf: u64, len: u64, off: u64) -> i64 {
    sc!(pread64, fd, buf, len, off)
}
pub fn chdir(path: *const u8) -> i64 {
    sc!(chdir, path)
}
pub fn chroot(path: *const u8) -> i64 {
    sc!(chroot, path)
}
pub fn rt_sigaction(sig: i32, act: *const u8) -> i64 {
    sc!(rt_sigaction, sig, act, 0, 8)
}
pub fn setitimer(which: i32, val: *const u8) -> i64 {
    sc!(setitimer, which, val, 0)
}
pub fn timer_create(clock: i32, sev: *const u8, id: *mut i32) -> i64 {
    sc!(timer_create, clock, sev, id)
}
pub fn timer_settime(id: i32, spec: *const u8) -> i64 {
    sc!(timer_settime, id, 0, spec, 0)
}
pub fn prlimit(res: u32, rl: *const u8) -> i64 {
    sc!(prlimit64, 0, res, rl, 0)
}
pub fn umask(m: u32) -> i64 {
    sc!(umask, m)
}
pub fn prctl(op: u32, a: u64, b: u64, c: u64, d: u64) -> i64 {
    sc!(prctl, op, a, b, c, d)
}
pub fn sigaltstack(ss: *const u8) -> i64 {
    sc!(sigaltstack, ss, 0)
}
pub fn set_tid_address(p: u64) -> i64 {
    sc!(set_tid_address, p)
}
pub fn seccomp(op: u64, flags: u64, args: u64) -> i64 {
    sc!(seccomp, op, flags, args)
}
pub fn set_robust_list(head: u64, len: u64) -> i64 {
    sc!(set_robust_list, head, len)
}
pub fn rseq(ptr: u64, len: u32, flags: u32, sig: u32) -> i64 {
    sc!(rseq, ptr, len, flags, sig)
}
pub fn rt_sigqueueinfo(pid: i32, sig: i32, info: *const u8) -> i64 {
    sc!(rt_sigqueueinfo, pid, sig, info)
}
pub fn rt_tgsigqueueinfo(pid: i32, tid: i32, sig: i32, info: *const u8) -> i64 {
    sc!(rt_tgsigqueueinfo, pid, tid, sig, info)
}
pub fn setgroups(n: u32, list: *const u32) -> i64 {
    sc!(setgroups, n, list)
}
pub fn setresgid(r: u32, e: u32, s: u32) -> i64 {
    sc!(setresgid, r, e, s)
}
/// Returns the previous fsuid (never fails; an invalid id changes nothing).
pub fn setfsuid(id: u32) -> i64 {
    sc!(setfsuid, id)
}
/// Returns the previous fsgid (never fails; an invalid id changes nothing).
pub fn setfsgid(id: u32) -> i64 {
    sc!(setfsgid, id)
}
pub fn setresuid(r: u32, e: u32, s: u32) -> i64 {
    sc!(setresuid, r, e, s)
}
pub fn capset(hdr: *const u8, data: *const u8) -> i64 {
    sc!(capset, hdr, data)
}
