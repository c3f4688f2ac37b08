//! The tree's IPC namespace (`-n ipc`, ipc_namespaces(7), sysvipc(7)).
//!
//! Dump, on a crtools thread that joined the root's IPC namespace (so every
//! IPC call and /proc/sys and /proc/sysvipc read is that namespace's):
//! its sysctls (limits and the next-id knobs), every message queue with its
//! messages (copied with msgrcv(MSG_COPY): they stay queued), every
//! semaphore set with its values, and every shared memory segment (those
//! the tree attaches as in `sysv_shm`, the others through a short
//! attachment of crtools' own). POSIX message queues cannot be read
//! without taking their messages: a namespace holding any is refused by
//! name (they are listed from an mqueue mount made on a thread of its own
//! mount namespace, which nothing else sees).
//!
//! Restore: the root is made in a new IPC namespace and, on a thread that
//! joined it before any task runs, the sysctls are set, then each queue and
//! set is made again with its id (kernel.msg_next_id / sem_next_id), key
//! and creator (a thread with the creator's ids, as for segments), filled,
//! and given its owner and mode; segments are made by `sysv_shm` on that
//! thread too. The next-id knobs get their dumped values last.
//!
//! Known differences: semaphore undo adjustments (SEM_UNDO) of the tasks,
//! which the kernel shows nowhere, are not restored; the times and last
//! pids of the objects (msg_stime, sem_otime, shm_lpid, ...) are those of
//! the restore.
use crate::error::{Context, Error, Result};
use crate::image::ipc::IpcPermEntry;
use crate::image::ns::{IpcNsHead, IpcObject, MsgQueueEntry, SemSetEntry};
use crate::sys::clone::CloneFlags;
use crate::sys::ipc::{self, IpcPerm};
use crate::sys::{Errno, Pid};

/// The namespace's sysctls under /proc/sys, restored in this order.
const SYSCTLS: &[&str] = &[
    "kernel/shmmax",
    "kernel/shmall",
    "kernel/shmmni",
    "kernel/shm_rmid_forced",
    "kernel/msgmax",
    "kernel/msgmnb",
    "kernel/msgmni",
    "kernel/sem",
    "fs/mqueue/queues_max",
    "fs/mqueue/msg_max",
    "fs/mqueue/msgsize_max",
    "fs/mqueue/msg_default",
    "fs/mqueue/msgsize_default",
];

/// Set last: the restore itself uses them to make objects with their ids.
const NEXT_IDS: &[&str] = &["kernel/msg_next_id", "kernel/sem_next_id", "kernel/shm_next_id"];

fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/{name}")
}

fn perm_entry(id: i32, p: &IpcPerm) -> IpcPermEntry {
    IpcPermEntry { id, key: p.key, mode: p.mode & 0o777, uid: p.uid, gid: p.gid, cuid: p.cuid, cgid: p.cgid }
}

/// Runs `f` on a thread in the IPC namespace of `pid`.
pub fn in_ipc_ns<T: Send>(pid: Pid, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    super::ns::in_ns(pid, "ipc", CloneFlags::CLONE_NEWIPC, f)
}

/// The names of the POSIX message queues of the calling thread's IPC
/// namespace. The thread takes a mount namespace of its own (unshare
/// CLONE_NEWNS, which a thread may do: it unshares its fs information
/// with it) and mounts that IPC namespace's mqueue file system there, over
/// the temporary directory; it must be a thread that ends afterwards.
fn mqueue_names() -> std::result::Result<Vec<String>, String> {
    use crate::sys::fs::{mount, MountFlags};
    crate::sys::clone::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(None, std::path::Path::new("/"), None, MountFlags::MS_REC | MountFlags::MS_PRIVATE)
        .map_err(|e| format!("make the mounts private: {e}"))?;
    let dir = std::env::temp_dir();
    mount(Some("mqueue"), &dir, Some("mqueue"), MountFlags::empty())
        .map_err(|e| format!("mount mqueue on {}: {e}", dir.display()))?;
    let names = std::fs::read_dir(&dir)
        .map_err(|e| format!("list {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    Ok(names)
}

/// Dumps the IPC namespace of `root` (the tree frozen): its sysctls, queues
/// and semaphore sets; `shm` gets the segments no task attaches.
pub fn dump(root: Pid, shm: &mut super::sysv_shm::ShmDump) -> Result<(IpcNsHead, Vec<IpcObject>)> {
    let queues = in_ipc_ns(root, || {
        // A thread of its own: it leaves its private mount namespace behind.
        std::thread::scope(|s| s.spawn(mqueue_names).join().unwrap_or_else(|_| Err("panicked".into())))
            .map_err(|e| Error::task(root, format!("list the POSIX message queues of its IPC namespace: {e}")))
    })?;
    if let Some(q) = queues.first() {
        return Err(Error::refuse(
            root,
            format!(
                "its IPC namespace holds the POSIX message queue /{q}{}: not supported (its messages cannot be \
                 read without taking them)",
                if queues.len() > 1 { format!(" and {} more", queues.len() - 1) } else { String::new() }
            ),
        ));
    }
    in_ipc_ns(root, || {
        let mut head = IpcNsHead::default();
        for name in SYSCTLS.iter().chain(NEXT_IDS) {
            let v = crate::proc::read_sysctl(&sysctl_path(name)).ctx(root, &format!("read the IPC sysctl {name}"))?;
            head.sysctls.push((name.to_string(), v.trim().to_string()));
        }
        let mut objs = Vec::new();
        let msgmax: usize =
            head.sysctls.iter().find(|(k, _)| k == "kernel/msgmax").and_then(|(_, v)| v.parse().ok()).unwrap_or(8192);
        let mut buf = vec![0u8; msgmax + 8];
        for (id, ds) in by_index(root, "MSG", ipc::msg_highest_index(), ipc::msg_stat_index)? {
            let mut msgs = Vec::with_capacity(ds.qnum as usize);
            for i in 0..ds.qnum {
                let m = ipc::msg_copy(id, i, &mut buf)
                    .map_err(|e| Error::task(root, format!("message queue {id}: copy message {i}: {e}")))?;
                msgs.push(m);
            }
            log::debug!(
                "message queue {id} (key {:#x}): {} messages, {} bytes",
                ds.perm.key as u32,
                ds.qnum,
                ds.cbytes
            );
            objs.push(IpcObject::Msg(MsgQueueEntry { perm: perm_entry(id, &ds.perm), qbytes: ds.qbytes, msgs }));
        }
        for (id, ds) in by_index(root, "SEM", ipc::sem_highest_index(), ipc::sem_stat_index)? {
            let values = ipc::sem_getall(id, ds.nsems as usize)
                .map_err(|e| Error::task(root, format!("semaphore set {id}: GETALL: {e}")))?;
            log::debug!("semaphore set {id} (key {:#x}): {values:?}", ds.perm.key as u32);
            objs.push(IpcObject::Sem(SemSetEntry { perm: perm_entry(id, &ds.perm), values }));
        }
        shm.add_unattached(root)?;
        shm.finish()?;
        Ok((head, objs))
    })
}

/// Every object of one kind of the calling thread's IPC namespace, with
/// its id: the indices up to `highest` (`KIND_INFO`), each read with
/// `stat` (`KIND_STAT_ANY`); an index without an object is skipped.
fn by_index<D>(
    root: Pid,
    kind: &str,
    highest: crate::sys::Result<i32>,
    stat: fn(i32) -> crate::sys::Result<(i32, D)>,
) -> Result<Vec<(i32, D)>> {
    let highest = highest.ctx(root, &format!("{kind}_INFO"))?;
    let mut out = Vec::new();
    for index in 0..=highest {
        match stat(index) {
            Ok(x) => out.push(x),
            Err(Errno::EINVAL) => {}
            Err(e) => return Err(Error::task(root, format!("{kind}_STAT_ANY {index}: {e}"))),
        }
    }
    Ok(out)
}

/// Makes the objects of `ipcns.img` in the (new, empty) IPC namespace of
/// the calling thread: sysctls first, then queues and sets with their ids.
/// The next-id knobs are left to [`finish`].
pub fn restore_in_ns(head: &IpcNsHead, objs: &[IpcObject]) -> Result<()> {
    for (name, value) in head.sysctls.iter().filter(|(k, _)| !NEXT_IDS.contains(&k.as_str())) {
        if !SYSCTLS.contains(&name.as_str()) {
            return Err(Error::new(format!("ipcns.img: {name} is not an IPC sysctl: refusing")));
        }
        std::fs::write(sysctl_path(name), value)
            .map_err(|e| Error::new(format!("set the IPC sysctl {name} to {value}: {e}")))?;
    }
    for o in objs {
        match o {
            IpcObject::Msg(q) => {
                let what = format!("message queue {} (key {:#x})", q.perm.id, q.perm.key as u32);
                let id = make(&q.perm, "kernel/msg_next_id", &what, || {
                    ipc::msgget(q.perm.key, ipc::IPC_CREAT | ipc::IPC_EXCL | 0o600)
                })?;
                // The limit first: the messages may need it (above
                // kernel.msgmnb it takes CAP_SYS_RESOURCE).
                ipc::msg_set(id, q.perm.uid, q.perm.gid, 0o600, q.qbytes)
                    .map_err(|e| Error::new(format!("{what}: IPC_SET msg_qbytes {}: {e}", q.qbytes)))?;
                for (i, (ty, text)) in q.msgs.iter().enumerate() {
                    ipc::msgsnd(id, *ty, text).map_err(|e| Error::new(format!("{what}: queue message {i}: {e}")))?;
                }
                ipc::msg_set(id, q.perm.uid, q.perm.gid, q.perm.mode, q.qbytes)
                    .map_err(|e| Error::new(format!("{what}: IPC_SET: {e}")))?;
            }
            IpcObject::Sem(s) => {
                let what = format!("semaphore set {} (key {:#x})", s.perm.id, s.perm.key as u32);
                let id = make(&s.perm, "kernel/sem_next_id", &what, || {
                    ipc::semget(s.perm.key, s.values.len() as u32, ipc::IPC_CREAT | ipc::IPC_EXCL | 0o600)
                })?;
                ipc::sem_setall(id, &s.values).map_err(|e| Error::new(format!("{what}: SETALL: {e}")))?;
                ipc::sem_set(id, s.perm.uid, s.perm.gid, s.perm.mode)
                    .map_err(|e| Error::new(format!("{what}: IPC_SET: {e}")))?;
            }
        }
    }
    Ok(())
}

/// The next-id knobs as dumped, once every object is made (on a thread in
/// the namespace). -1, nothing armed, is what the kernel leaves after each
/// use (and refuses to be written).
pub fn finish_in_ns(head: &IpcNsHead) -> Result<()> {
    for (name, value) in head.sysctls.iter().filter(|(k, v)| NEXT_IDS.contains(&k.as_str()) && v != "-1") {
        std::fs::write(sysctl_path(name), value)
            .map_err(|e| Error::new(format!("set the IPC sysctl {name} to {value}: {e}")))?;
    }
    Ok(())
}

/// Makes one queue or set under its dumped id (see
/// [`super::sysv_shm::make_with_id`]).
fn make(p: &IpcPermEntry, next_id: &str, what: &str, get: impl Fn() -> crate::sys::Result<i32> + Sync) -> Result<i32> {
    let id = super::sysv_shm::make_with_id(p, next_id, what, || get().map_err(|e| e.to_string()))?;
    if id != p.id {
        return Err(Error::new(format!("{what}: made with id {id}")));
    }
    Ok(id)
}
