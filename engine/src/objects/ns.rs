//! Namespaces. With `-n uts` the tree's UTS namespace is dumped (its host
//! and domain names, `utsns.img`), with `-n ipc` its IPC namespace
//! (`ipcns.img`, see `ipc_ns`); the restore makes the root in a new
//! namespace of each kind the images hold and gives it what it held before
//! any task runs ([`NsImages`]). The kinds of `-n` not dumped yet are
//! refused.
//! A task in any other namespace than the reference one is refused by name,
//! since it would come back different: the reference is the root's for a
//! dumped kind (nested namespaces are not dumped), crtools' for the others.
//! So is a task whose children would be born in another namespace than its
//! own.
//!
//! `/proc/<pid>/ns/<kind>` is the task's own namespace;
//! `ns/pid_for_children` and `ns/time_for_children` are where its next
//! children go: they differ after unshare(CLONE_NEWPID) or
//! unshare(CLONE_NEWTIME) (or setns on them), see namespaces(7). The
//! pid_for_children link cannot be read until the first child exists in the
//! new namespace (the namespace has no init yet): that is refused too.
use crate::error::{Context, Error, Result};
use crate::image::ipc::ShmSegEntry;
use crate::image::ns::{IpcNsHead, IpcObject, UtsNsEntry};
use crate::image::{kinds, ImageDir, ImageDirReader, ImageKind, RawStr};
use crate::proc;
use crate::sys::clone::CloneFlags;
use crate::sys::Pid;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

bitflags::bitflags! {
    /// The namespace kinds of `-n`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Namespaces: u32 {
        const UTS = 1;
        const IPC = 1 << 1;
        const MNT = 1 << 2;
        const PID = 1 << 3;
        const NET = 1 << 4;
    }
}

impl Namespaces {
    /// The kind named as under /proc/<pid>/ns, if `-n` can name it.
    fn of(kind: &str) -> Option<Namespaces> {
        Some(match kind {
            "uts" => Namespaces::UTS,
            "ipc" => Namespaces::IPC,
            "mnt" => Namespaces::MNT,
            "pid" => Namespaces::PID,
            "net" => Namespaces::NET,
            _ => return None,
        })
    }

    /// The kinds this version dumps and restores.
    pub const SUPPORTED: Namespaces = Namespaces::UTS.union(Namespaces::IPC);

    /// "uts,ipc": the kinds as `-n` takes them.
    pub fn names(self) -> String {
        KINDS
            .iter()
            .filter(|k| Namespaces::of(k).is_some_and(|f| self.contains(f)))
            .copied()
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Every namespace kind, as named under /proc/<pid>/ns.
const KINDS: [&str; 8] = ["net", "ipc", "uts", "mnt", "pid", "user", "cgroup", "time"];

/// Kinds with a separate namespace for children, and the unshare flag that makes them differ.
const FOR_CHILDREN: [(&str, &str); 2] = [("pid", "CLONE_NEWPID"), ("time", "CLONE_NEWTIME")];

fn id(path: std::path::PathBuf) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

/// Refuses `pid` (a live task of the tree of `root`) unless it is in the
/// root's namespace of every kind of `dumped` and in crtools' own of every
/// other kind, and its future children would be too.
pub fn refuse_foreign(pid: Pid, root: Pid, dumped: Namespaces) -> Result<()> {
    for kind in KINDS {
        let with_root = Namespaces::of(kind).is_some_and(|f| dumped.contains(f));
        let reference = if with_root {
            proc::pid_path(root, &format!("ns/{kind}"))
        } else {
            format!("/proc/self/ns/{kind}").into()
        };
        let theirs = id(proc::pid_path(pid, &format!("ns/{kind}")));
        if let (Ok(a), Ok(b)) = (id(reference), theirs) {
            if a != b {
                let why = if with_root {
                    format!("than the root of the tree ({root}): nested {kind} namespaces are not supported")
                } else if Namespaces::of(kind).is_some_and(|f| Namespaces::SUPPORTED.contains(f)) {
                    format!("than crtools: dump it with -n {kind}")
                } else {
                    format!("than crtools: dumping {kind} namespaces is not supported yet")
                };
                return Err(Error::refuse(pid, format!("is in another {kind} namespace ({kind}:[{}]) {why}", b.1)));
            }
        }
    }
    for (kind, flag) in FOR_CHILDREN {
        let Ok(own) = id(proc::pid_path(pid, &format!("ns/{kind}"))) else { continue };
        let children = id(proc::pid_path(pid, &format!("ns/{kind}_for_children")));
        let other = match children {
            Ok(c) if c == own => continue,
            Ok(c) => format!("{kind}:[{}]", c.1),
            // Only a pid namespace without its first process reads as missing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("a new {kind} namespace"),
            Err(_) => continue,
        };
        return Err(Error::refuse(
            pid,
            format!(
                "its children would be born in {other}, not in its own {kind} namespace ({kind}:[{}]): \
                 it called unshare({flag}); namespaces for children are not restored yet",
                own.1
            ),
        ));
    }
    Ok(())
}

/// Runs `f` on a thread of crtools' that joined `pid`'s namespace of kind
/// `kind` (`flag`): what it reads or sets is that namespace's. The thread
/// ends with `f`, and with it its place in that namespace.
pub(crate) fn in_ns<T: Send>(
    pid: Pid,
    kind: &str,
    flag: CloneFlags,
    f: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let ns = std::fs::File::open(proc::pid_path(pid, &format!("ns/{kind}")))
        .ctx(pid, &format!("open its {kind} namespace"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::sys::clone::setns(ns.as_fd(), flag).ctx(pid, &format!("join its {kind} namespace"))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::task(pid, format!("the thread in its {kind} namespace panicked"))))
    })
}

/// Dumps the namespaces of `taken` (the root's) into `img`, with the tree
/// frozen and every task dumped, and completes `shm`: with the IPC
/// namespace, every segment of it joins the ones the tasks attach.
pub fn dump(root: Pid, taken: Namespaces, img: &ImageDir, shm: &mut super::sysv_shm::ShmDump) -> Result<()> {
    let w = |e: crate::image::ImageError| Error::new(format!("write images: {e}"));
    if taken.contains(Namespaces::UTS) {
        let uts = dump_uts(root)?;
        img.create_image::<kinds::UtsNs>(None, &uts).map_err(w)?.finish().map_err(w)?;
    }
    if !taken.contains(Namespaces::IPC) {
        return shm.finish();
    }
    let (head, objs) = super::ipc_ns::dump(root, shm)?;
    let mut f = img.create_image::<kinds::IpcNs>(None, &head).map_err(w)?;
    for o in &objs {
        f.write(o).map_err(w)?;
    }
    f.finish().map(drop).map_err(w)
}

/// The UTS namespace of `root`.
fn dump_uts(root: Pid) -> Result<UtsNsEntry> {
    let (node, domain) =
        in_ns(root, "uts", CloneFlags::CLONE_NEWUTS, || crate::sys::misc::uts_names().ctx(root, "uname"))?;
    log::info!(task = root.0; "uts namespace: host name {:?}, domain name {:?}",
        String::from_utf8_lossy(&node), String::from_utf8_lossy(&domain));
    Ok(UtsNsEntry { nodename: RawStr(node), domainname: RawStr(domain) })
}

/// Gives the new UTS namespace of `root` (restored) its names.
fn restore_uts(root: Pid, e: &UtsNsEntry) -> Result<()> {
    in_ns(root, "uts", CloneFlags::CLONE_NEWUTS, || {
        crate::sys::misc::sethostname(&e.nodename.0).ctx(root, "sethostname")?;
        crate::sys::misc::setdomainname(&e.domainname.0).ctx(root, "setdomainname")
    })
}

/// The namespaces a dump took, as its images hold them.
#[derive(Default)]
pub struct NsImages {
    uts: Option<UtsNsEntry>,
    ipc: Option<(IpcNsHead, Vec<IpcObject>)>,
}

impl NsImages {
    /// Reads `utsns.img` and `ipcns.img` where present.
    pub fn read(dir: &ImageDirReader) -> Result<NsImages> {
        let e = |what: &'static str| move |err: crate::image::ImageError| Error::new(format!("{what}: {err}"));
        let mut out = NsImages::default();
        if dir.contains(ImageKind::UtsNs, None) {
            out.uts = Some(
                dir.open_image::<kinds::UtsNs>(None).map_err(e("utsns"))?.collect_entries().map_err(e("utsns"))?.0,
            );
        }
        if dir.contains(ImageKind::IpcNs, None) {
            out.ipc =
                Some(dir.open_image::<kinds::IpcNs>(None).map_err(e("ipcns"))?.collect_entries().map_err(e("ipcns"))?);
        }
        Ok(out)
    }

    /// The kinds held.
    pub fn kinds(&self) -> Namespaces {
        let mut k = Namespaces::empty();
        k.set(Namespaces::UTS, self.uts.is_some());
        k.set(Namespaces::IPC, self.ipc.is_some());
        k
    }

    /// Refuses a restore's `-n` that does not name exactly what is held.
    pub fn check_asked(&self, asked: Option<Namespaces>) -> Result<()> {
        let held = self.kinds();
        match asked {
            Some(a) if a != held => Err(Error::new(format!(
                "-n {}: the images hold {}",
                a.names(),
                if held.is_empty() {
                    "no namespace (dumped without -n)".to_string()
                } else {
                    format!("the {} namespaces", held.names())
                }
            ))),
            _ => Ok(()),
        }
    }

    /// The clone flags that make the root in new namespaces of these kinds.
    pub fn clone_flags(&self) -> CloneFlags {
        let mut f = CloneFlags::empty();
        f.set(CloneFlags::CLONE_NEWUTS, self.uts.is_some());
        f.set(CloneFlags::CLONE_NEWIPC, self.ipc.is_some());
        f
    }

    /// With `root` made in its new namespaces and waiting for its go: gives
    /// them what they held. The SysV segments `shm` are made in the new IPC
    /// namespace (returned, bound to it); None when no IPC namespace is held
    /// (the caller made them in its own).
    pub fn restore(
        &self,
        root: Pid,
        dir: &ImageDirReader,
        shm: Vec<ShmSegEntry>,
    ) -> Result<Option<super::sysv_shm::Segments>> {
        if let Some(u) = &self.uts {
            restore_uts(root, u)?;
        }
        let Some((head, objs)) = &self.ipc else { return Ok(None) };
        let made = super::ipc_ns::in_ipc_ns(root, || {
            super::ipc_ns::restore_in_ns(head, objs)?;
            let made = super::sysv_shm::create_all(dir, shm)?;
            super::ipc_ns::finish_in_ns(head)?;
            Ok(made)
        })?;
        Ok(Some(made.in_ns(root)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crtools_itself_passes() {
        let me = Pid(std::process::id() as i32);
        refuse_foreign(me, me, Namespaces::empty()).unwrap();
        refuse_foreign(me, me, Namespaces::all()).unwrap();
    }

    #[test]
    fn names_follow_the_proc_order() {
        assert_eq!((Namespaces::UTS | Namespaces::NET | Namespaces::IPC).names(), "net,ipc,uts");
        assert_eq!(Namespaces::empty().names(), "");
    }
}
