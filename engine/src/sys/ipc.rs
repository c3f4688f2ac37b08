//! SysV IPC: shared memory (shmget(2), shmat(2), shmdt(2), shmctl(2) split
//! per operation: IPC_STAT, IPC_SET, IPC_RMID, SHM_LOCK), message queues
//! (msgget(2), msgctl(2), msgsnd(2), msgrcv(2) with MSG_COPY) and
//! semaphore sets (semget(2), semctl(2)), and the walk of a namespace's
//! objects by index (*_INFO, *_STAT_ANY). See sysvipc(7).
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

/// shmctl(index, SHM_STAT_ANY): the segment at that index of the calling
/// thread's IPC namespace, and its id.
pub fn shm_stat_index(index: i32) -> Result<(i32, ShmidDs)> {
    let mut ds = ShmidDs::default();
    // SAFETY: the kernel writes one shmid64_ds into `ds`.
    let id = unsafe {
        syscalls::syscall3(Sysno::shmctl, index as usize, SHM_STAT_ANY as usize, &mut ds as *mut ShmidDs as usize)
    }?;
    Ok((id as i32, ds))
}

/// The highest index in use by `ctl` (shmctl, msgctl or semctl) with its
/// `*_INFO` command, -1 if none.
fn highest_index(ctl: Sysno, info: i32) -> Result<i32> {
    // Big enough for struct shm_info, msginfo and seminfo.
    let mut buf = [0u64; 16];
    let r = match ctl {
        // SAFETY: the kernel writes at most one info struct (< 128 bytes).
        Sysno::semctl => unsafe { syscalls::syscall4(ctl, 0, 0, info as usize, buf.as_mut_ptr() as usize) },
        // SAFETY: as above.
        _ => unsafe { syscalls::syscall3(ctl, 0, info as usize, buf.as_mut_ptr() as usize) },
    };
    r.map(|r| r as i32)
}

/// The highest shm index in use in the calling thread's IPC namespace.
pub fn shm_highest_index() -> Result<i32> {
    highest_index(Sysno::shmctl, SHM_INFO)
}

/// The highest message queue index in use.
pub fn msg_highest_index() -> Result<i32> {
    highest_index(Sysno::msgctl, MSG_INFO)
}

/// The highest semaphore set index in use.
pub fn sem_highest_index() -> Result<i32> {
    highest_index(Sysno::semctl, SEM_INFO)
}

const SHM_INFO: i32 = 14;
const SHM_STAT_ANY: i32 = 15;
const MSG_STAT_ANY: i32 = 13;
const MSG_INFO: i32 = 12;
const SEM_INFO: i32 = 19;
const SEM_STAT_ANY: i32 = 20;
const GETALL: i32 = 13;
const SETALL: i32 = 17;
/// msgrcv flag: copy the message at an index, leaving it queued.
const MSG_COPY: i32 = 0o40000;
/// msgrcv/msgsnd flag: do not wait.
pub const IPC_NOWAIT: i32 = 0o4000;

/// `struct msqid64_ds` (x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsqidDs {
    pub perm: IpcPerm,
    pub stime: i64,
    pub rtime: i64,
    pub ctime: i64,
    pub cbytes: u64,
    pub qnum: u64,
    pub qbytes: u64,
    pub lspid: i32,
    pub lrpid: i32,
    pub unused4: u64,
    pub unused5: u64,
}

/// `struct semid64_ds` (x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemidDs {
    pub perm: IpcPerm,
    pub otime: i64,
    pub unused1: u64,
    pub ctime: i64,
    pub unused2: u64,
    pub nsems: u64,
    pub unused3: u64,
    pub unused4: u64,
}

const _: () = assert!(core::mem::size_of::<MsqidDs>() == 120);
const _: () = assert!(core::mem::size_of::<SemidDs>() == 104);

/// msgctl(index, MSG_STAT_ANY): the queue at that index, and its id.
pub fn msg_stat_index(index: i32) -> Result<(i32, MsqidDs)> {
    let mut ds = MsqidDs::default();
    // SAFETY: the kernel writes one msqid64_ds into `ds`.
    let id = unsafe {
        syscalls::syscall3(Sysno::msgctl, index as usize, MSG_STAT_ANY as usize, &mut ds as *mut MsqidDs as usize)
    }?;
    Ok((id as i32, ds))
}

/// msgget(key, flags).
pub fn msgget(key: i32, flags: i32) -> Result<i32> {
    // SAFETY: plain values.
    unsafe { syscalls::syscall2(Sysno::msgget, key as usize, flags as usize) }.map(|r| r as i32)
}

/// msgctl(id, IPC_SET): owner, low 9 mode bits and the queue's byte limit.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> Result<()> {
    let ds = MsqidDs { perm: IpcPerm { uid, gid, mode, ..Default::default() }, qbytes, ..Default::default() };
    // SAFETY: the kernel reads one msqid64_ds from `ds`.
    unsafe { syscalls::syscall3(Sysno::msgctl, id as usize, IPC_SET as usize, &ds as *const MsqidDs as usize) }
        .map(drop)
}

/// msgctl(id, IPC_RMID).
pub fn msg_rmid(id: i32) -> Result<()> {
    // SAFETY: plain values.
    unsafe { syscalls::syscall3(Sysno::msgctl, id as usize, IPC_RMID as usize, 0) }.map(drop)
}

/// A copy of the message at `index` of queue `id` (MSG_COPY: it stays
/// queued): its type and text. `buf` must hold a long and the longest text.
pub fn msg_copy(id: i32, index: u64, buf: &mut [u8]) -> Result<(i64, Vec<u8>)> {
    assert!(buf.len() > 8);
    let flags = MSG_COPY | IPC_NOWAIT;
    // SAFETY: the kernel writes a long and at most `buf.len() - 8` bytes.
    let n = unsafe {
        syscalls::syscall5(
            Sysno::msgrcv,
            id as usize,
            buf.as_mut_ptr() as usize,
            buf.len() - 8,
            index as usize,
            flags as usize,
        )
    }?;
    let ty = i64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
    Ok((ty, buf[8..8 + n].to_vec()))
}

/// msgsnd(id, {ty, text}, IPC_NOWAIT).
pub fn msgsnd(id: i32, ty: i64, text: &[u8]) -> Result<()> {
    let mut m = Vec::with_capacity(8 + text.len());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(text);
    // SAFETY: the kernel reads a long and `text.len()` bytes.
    unsafe { syscalls::syscall4(Sysno::msgsnd, id as usize, m.as_ptr() as usize, text.len(), IPC_NOWAIT as usize) }
        .map(drop)
}

/// semctl(index, SEM_STAT_ANY): the set at that index, and its id.
pub fn sem_stat_index(index: i32) -> Result<(i32, SemidDs)> {
    let mut ds = SemidDs::default();
    // SAFETY: the kernel writes one semid64_ds into `ds`.
    let id = unsafe {
        syscalls::syscall4(Sysno::semctl, index as usize, 0, SEM_STAT_ANY as usize, &mut ds as *mut SemidDs as usize)
    }?;
    Ok((id as i32, ds))
}

/// semget(key, nsems, flags).
pub fn semget(key: i32, nsems: u32, flags: i32) -> Result<i32> {
    // SAFETY: plain values.
    unsafe { syscalls::syscall3(Sysno::semget, key as usize, nsems as usize, flags as usize) }.map(|r| r as i32)
}

/// semctl(id, GETALL): the value of every semaphore of the set.
pub fn sem_getall(id: i32, nsems: usize) -> Result<Vec<u16>> {
    let mut v = vec![0u16; nsems];
    // SAFETY: the kernel writes nsems shorts.
    unsafe { syscalls::syscall4(Sysno::semctl, id as usize, 0, GETALL as usize, v.as_mut_ptr() as usize) }?;
    Ok(v)
}

/// semctl(id, SETALL).
pub fn sem_setall(id: i32, values: &[u16]) -> Result<()> {
    // SAFETY: the kernel reads one short per semaphore of the set, which the
    // caller made with `values.len()` of them.
    unsafe { syscalls::syscall4(Sysno::semctl, id as usize, 0, SETALL as usize, values.as_ptr() as usize) }.map(drop)
}

/// semctl(id, IPC_SET): owner and low 9 mode bits.
pub fn sem_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<()> {
    let ds = SemidDs { perm: IpcPerm { uid, gid, mode, ..Default::default() }, ..Default::default() };
    // SAFETY: the kernel reads one semid64_ds from `ds`.
    unsafe { syscalls::syscall4(Sysno::semctl, id as usize, 0, IPC_SET as usize, &ds as *const SemidDs as usize) }
        .map(drop)
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
    fn message_and_semaphore_layouts_match_libc() {
        assert_eq!(size_of::<MsqidDs>(), size_of::<libc::msqid_ds>());
        assert_eq!(offset_of!(MsqidDs, qbytes), offset_of!(libc::msqid_ds, msg_qbytes));
        assert_eq!(offset_of!(MsqidDs, qnum), offset_of!(libc::msqid_ds, msg_qnum));
        assert_eq!(size_of::<SemidDs>(), size_of::<libc::semid_ds>());
        assert_eq!(offset_of!(SemidDs, nsems), offset_of!(libc::semid_ds, sem_nsems));
        assert_eq!((MSG_INFO, SEM_INFO, MSG_STAT_ANY, SEM_STAT_ANY), (libc::MSG_INFO, libc::SEM_INFO, 13, 20));
        assert_eq!((GETALL, SETALL, IPC_NOWAIT), (libc::GETALL, libc::SETALL, libc::IPC_NOWAIT));
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
