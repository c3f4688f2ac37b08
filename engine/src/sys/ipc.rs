//! SysV shared memory: shmget(2), shmat(2), shmdt(2), shmctl(2) split per
//! operation (IPC_STAT, IPC_SET, IPC_RMID, SHM_LOCK). See sysvipc(7).
//!
//! # Invariants
//! - x86_64 has no ipc(2) multiplexer and always speaks the IPC_64 layout:
//!   [`ShmidDs`] is `struct shmid64_ds` (asserted against libc in tests).
//! - Attaching and detaching change this process's memory map: [`shmat`]
//!   and [`shmdt`] are `unsafe fn`, like mmap and munmap.
use super::{Result, Sysno};

/// `IPC_PRIVATE`: a key that names no segment.
pub const IPC_PRIVATE: i32 = 0;
/// shmget flag: create the segment.
pub const IPC_CREAT: i32 = 0o1000;
/// shmget flag: fail if the key exists.
pub const IPC_EXCL: i32 = 0o2000;
/// shmget flag: hugetlb pages.
pub const SHM_HUGETLB: i32 = 0o4000;
/// shmat flag: attach read-only.
pub const SHM_RDONLY: i32 = 0o10000;
/// shmat flag: round the address down to SHMLBA.
pub const SHM_RND: i32 = 0o20000;
/// shmat flag: replace mappings in the range.
pub const SHM_REMAP: i32 = 0o40000;
/// shmat flag: executable.
pub const SHM_EXEC: i32 = 0o100000;
/// Mode bit: marked for removal (IPC_RMID while attached).
pub const SHM_DEST: u32 = 0o1000;
/// Mode bit: locked in memory (SHM_LOCK).
pub const SHM_LOCKED: u32 = 0o2000;

const IPC_RMID: i32 = 0;
const IPC_SET: i32 = 1;
const IPC_STAT: i32 = 2;
const SHM_LOCK: i32 = 11;

/// `struct ipc64_perm` (x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcPerm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub mode: u32,
    pub seq: u16,
    pub pad2: u16,
    pub unused1: u64,
    pub unused2: u64,
}

/// `struct shmid64_ds` (x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShmidDs {
    pub perm: IpcPerm,
    pub segsz: u64,
    pub atime: i64,
    pub dtime: i64,
    pub ctime: i64,
    pub cpid: i32,
    pub lpid: i32,
    pub nattch: u64,
    pub unused4: u64,
    pub unused5: u64,
}

const _: () = assert!(core::mem::size_of::<IpcPerm>() == 48);
const _: () = assert!(core::mem::size_of::<ShmidDs>() == 112);
const _: () = assert!(core::mem::offset_of!(ShmidDs, nattch) == 88);

/// shmget(key, size, flags): the segment's id.
pub fn shmget(key: i32, size: u64, flags: i32) -> Result<i32> {
    // SAFETY: plain values; the kernel touches no memory of ours.
    unsafe { syscalls::syscall3(Sysno::shmget, key as usize, size as usize, flags as usize) }.map(|r| r as i32)
}

/// shmat(id, addr, flags): where the segment is attached.
///
/// # Safety
/// With a non-zero `addr` and SHM_REMAP the range is replaced: nothing in
/// it may be referenced by live Rust values. Otherwise the kernel picks or
/// takes a free range; the caller owns the attachment (and must shmdt it).
pub unsafe fn shmat(id: i32, addr: u64, flags: i32) -> Result<u64> {
    // SAFETY: the caller vouches for the range (see above).
    unsafe { syscalls::syscall3(Sysno::shmat, id as usize, addr as usize, flags as usize) }.map(|r| r as u64)
}

/// shmdt(addr).
///
/// # Safety
/// The attachment at `addr` must not be referenced by live Rust values.
pub unsafe fn shmdt(addr: u64) -> Result<()> {
    // SAFETY: the caller guarantees the attachment is not in use.
    unsafe { syscalls::syscall1(Sysno::shmdt, addr as usize) }.map(drop)
}

/// shmctl(id, IPC_STAT).
pub fn shm_stat(id: i32) -> Result<ShmidDs> {
    let mut ds = ShmidDs::default();
    // SAFETY: the kernel writes one shmid64_ds into `ds`, which is that size.
    unsafe { syscalls::syscall3(Sysno::shmctl, id as usize, IPC_STAT as usize, &mut ds as *mut ShmidDs as usize) }?;
    Ok(ds)
}

/// shmctl(id, IPC_SET): owner uid/gid and the low 9 mode bits.
pub fn shm_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<()> {
    let ds = ShmidDs { perm: IpcPerm { uid, gid, mode, ..Default::default() }, ..Default::default() };
    // SAFETY: the kernel reads one shmid64_ds from `ds`.
    unsafe { syscalls::syscall3(Sysno::shmctl, id as usize, IPC_SET as usize, &ds as *const ShmidDs as usize) }
        .map(drop)
}

/// shmctl(id, IPC_RMID): removed now, or once the last attachment goes.
pub fn shm_rmid(id: i32) -> Result<()> {
    // SAFETY: plain values.
    unsafe { syscalls::syscall3(Sysno::shmctl, id as usize, IPC_RMID as usize, 0) }.map(drop)
}

/// shmctl(id, SHM_LOCK).
pub fn shm_lock(id: i32) -> Result<()> {
    // SAFETY: plain values.
    unsafe { syscalls::syscall3(Sysno::shmctl, id as usize, SHM_LOCK as usize, 0) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_and_constants_match_libc() {
        assert_eq!(size_of::<ShmidDs>(), size_of::<libc::shmid_ds>());
        assert_eq!(offset_of!(ShmidDs, segsz), offset_of!(libc::shmid_ds, shm_segsz));
        assert_eq!(offset_of!(ShmidDs, nattch), offset_of!(libc::shmid_ds, shm_nattch));
        assert_eq!(offset_of!(ShmidDs, cpid), offset_of!(libc::shmid_ds, shm_cpid));
        assert_eq!(IPC_CREAT, libc::IPC_CREAT);
        assert_eq!(IPC_EXCL, libc::IPC_EXCL);
        assert_eq!(SHM_RDONLY, libc::SHM_RDONLY);
        assert_eq!(SHM_EXEC, libc::SHM_EXEC);
        assert_eq!(SHM_HUGETLB, libc::SHM_HUGETLB);
        assert_eq!(SHM_REMAP, libc::SHM_REMAP);
        assert_eq!(IPC_STAT, libc::IPC_STAT);
        assert_eq!(IPC_SET, libc::IPC_SET);
        assert_eq!(IPC_RMID, libc::IPC_RMID);
        assert_eq!(SHM_LOCK, libc::SHM_LOCK);
    }

    #[test]
    fn create_stat_set_remove() {
        let id = match shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0o600) {
            Ok(id) => id,
            Err(e) => {
                eprintln!("skip: shmget: {e}");
                return;
            }
        };
        let st = shm_stat(id).unwrap();
        assert_eq!((st.segsz, st.nattch, st.perm.mode & 0o777), (8192, 0, 0o600));
        shm_set(id, st.perm.uid, st.perm.gid, 0o640).unwrap();
        assert_eq!(shm_stat(id).unwrap().perm.mode & 0o777, 0o640);
        // SAFETY: a fresh range picked by the kernel, detached below.
        let at = unsafe { shmat(id, 0, SHM_RDONLY) }.unwrap();
        assert_eq!(shm_stat(id).unwrap().nattch, 1);
        shm_rmid(id).unwrap();
        assert_ne!(shm_stat(id).unwrap().perm.mode & SHM_DEST, 0);
        // SAFETY: nothing refers to the attachment.
        unsafe { shmdt(at) }.unwrap();
        assert!(shm_stat(id).is_err());
    }
}
