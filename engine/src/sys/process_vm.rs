//! process_vm_readv(2) / process_vm_writev(2): bulk copies between this
//! process and another one, many ranges per call.
use super::{Pid, Result, Sysno};

/// Kernel `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IoVec {
    /// Start address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The kernel's per-call iovec limit (UIO_MAXIOV).
pub const IOV_MAX: usize = 1024;

/// Copies the remote ranges `remote` of `pid` into `local`, in order.
/// Returns the bytes copied; a short count means a remote range failed
/// part way (the kernel stops at the first unreadable page).
pub fn read(pid: Pid, local: &mut [u8], remote: &[IoVec]) -> Result<usize> {
    let liov = IoVec { base: local.as_mut_ptr() as u64, len: local.len() as u64 };
    let n = remote.len().min(IOV_MAX);
    // SAFETY: the kernel writes at most local.len() bytes into `local`; the
    // remote iovecs name memory of the other process only.
    unsafe {
        syscalls::syscall6(
            Sysno::process_vm_readv,
            pid.0 as usize,
            &liov as *const IoVec as usize,
            1,
            remote.as_ptr() as usize,
            n,
            0,
        )
    }
}

/// Reads `len` bytes at `addr` of `pid`.
pub fn read_vec(pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = read(pid, &mut buf, &[IoVec { base: addr, len: len as u64 }])?;
    buf.truncate(n);
    Ok(buf)
}

/// Copies `local` into the remote ranges `remote` of `pid`, in order.
/// Writing changes the other process's memory: the caller owns that.
pub fn write(pid: Pid, local: &[u8], remote: &[IoVec]) -> Result<usize> {
    let liov = IoVec { base: local.as_ptr() as u64, len: local.len() as u64 };
    let n = remote.len().min(IOV_MAX);
    // SAFETY: the kernel only reads `local` in this process.
    unsafe {
        syscalls::syscall6(
            Sysno::process_vm_writev,
            pid.0 as usize,
            &liov as *const IoVec as usize,
            1,
            remote.as_ptr() as usize,
            n,
            0,
        )
    }
}

/// Writes all of `data` at `addr` of `pid`, or fails.
pub fn write_all(pid: Pid, addr: u64, data: &[u8]) -> Result<()> {
    let mut done = 0;
    while done < data.len() {
        let n = write(pid, &data[done..], &[IoVec { base: addr + done as u64, len: (data.len() - done) as u64 }])?;
        if n == 0 {
            return Err(super::Errno::EFAULT);
        }
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iovec_matches_libc() {
        assert_eq!(core::mem::size_of::<IoVec>(), core::mem::size_of::<libc::iovec>());
    }

    #[test]
    fn reads_own_memory() {
        let src: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let me = Pid(std::process::id() as i32);
        let got = read_vec(me, src.as_ptr() as u64, src.len()).unwrap();
        assert_eq!(got, src);
        let mut dst = vec![0u8; 100];
        write_all(me, dst.as_mut_ptr() as u64, &src[..100]).unwrap();
        assert_eq!(&dst[..], &src[..100]);
    }
}
