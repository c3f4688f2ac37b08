//! A task's descriptor table and the registry of descriptor kinds.
//!
//! Dump: every fd from /proc/pid/fd is classified by [`classify`] and handed
//! to the module of its kind; descriptors that share one open file
//! description (dup, fork) are found with kcmp(KCMP_FILE) and get one id.
//! A kind without a module makes the dump fail, naming pid, fd and kind.
//!
//! Restore: each kind's module adds its descriptors to the plan.
use crate::error::{Context, Error, Result};
use crate::image::files::{FdKind, FdinfoEntry, FileEntry, OpenFlags};
use crate::image::reg_files::RegFileEntry;
use crate::image::tty::TtyEntry;
use crate::proc::fdinfo::{self, FdTarget};
use crate::restore::plan::PlanBuilder;
use crate::sys::misc::{kcmp_file, KcmpOrder};
use crate::sys::Pid;

/// Everything the descriptor images hold for one task.
#[derive(Debug, Default)]
pub struct FdTable {
    /// fdinfo-<pid>.img entries.
    pub fds: Vec<FdinfoEntry>,
    /// files.img entries.
    pub files: Vec<FileEntry>,
    /// reg-files.img entries.
    pub reg: Vec<RegFileEntry>,
    /// tty.img entries.
    pub tty: Vec<TtyEntry>,
}

/// What the options of the run say about descriptors.
#[derive(Clone, Debug, Default)]
pub struct FdCtx {
    /// `--shell-job`: a terminal from outside the tree may be dumped, and is
    /// reconnected to crtools' own terminal at restore.
    pub shell_job: bool,
    /// At restore with `--shell-job`: the terminal crtools runs on.
    pub tty_path: Option<std::path::PathBuf>,
    /// `--evasive-devices`: a device node that is gone may be replaced by
    /// any other node of the same device.
    pub evasive_devices: bool,
}

/// Dumps one open file description (the first fd that refers to it).
pub type DumpFn = fn(
    cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    info: &fdinfo::FdInfo,
    id: u32,
    out: &mut FdTable,
) -> Result<()>;
/// The plan entry of the first descriptor of an open file description.
pub type PlanFn = fn(
    cx: &FdCtx,
    b: &mut PlanBuilder,
    pid: Pid,
    fd: &FdinfoEntry,
    table: &FdTable,
) -> Result<restorer_plan::FileEntry>;

/// A kind of descriptor this version can checkpoint.
pub struct KindOps {
    /// The image kind of its objects.
    pub kind: FdKind,
    /// Dump side.
    pub dump: DumpFn,
    /// Restore side.
    pub plan: PlanFn,
}

/// The registry: one row per supported descriptor kind.
pub static KINDS: &[KindOps] = &[
    KindOps { kind: FdKind::Reg, dump: super::reg_file::dump, plan: super::reg_file::plan },
    KindOps { kind: FdKind::Tty, dump: super::tty::dump, plan: super::tty::plan },
];

/// Which kind a descriptor is, or why it is not supported.
pub fn classify(pid: Pid, fd: i32, target: &FdTarget) -> std::result::Result<FdKind, String> {
    match target {
        FdTarget::Path(p) if p.deleted && !is_device(pid, fd) => Err(format!("unlinked file {}", p.path.display())),
        FdTarget::Path(p) if p.path.starts_with("/memfd:") => Err("memfd".into()),
        FdTarget::Path(p) => {
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}")))
                .map_err(|e| format!("{}: {e}", p.path.display()))?;
            let is_chr = md.mode() & 0o170000 == 0o020000;
            match super::tty::kind_of(md.rdev()) {
                Some(Ok(())) if is_chr => Ok(FdKind::Tty),
                Some(Err(what)) if is_chr => Err(format!("{what} {}", p.path.display())),
                _ => Ok(FdKind::Reg),
            }
        }
        FdTarget::Pipe(ino) => Err(format!("pipe:[{ino}]")),
        FdTarget::Socket(ino) => Err(format!("socket:[{ino}]")),
        FdTarget::AnonInode(n) => Err(format!("anon_inode:{n}")),
        FdTarget::Inode { kind, ino } => Err(format!("{kind}:[{ino}]")),
        FdTarget::Other(raw) => Err(String::from_utf8_lossy(raw).into_owned()),
    }
}

fn is_device(pid: Pid, fd: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}")))
        .map(|m| matches!(m.mode() & 0o170000, 0o020000 | 0o060000))
        .unwrap_or(false)
}

/// Open file descriptions of the processes dumped before, to find the ones
/// a process shares with another (inherited across fork).
#[derive(Default)]
pub struct CrossSeen {
    list: Vec<(Pid, i32, FdKind)>,
}

/// An open file whose state lives in the file, not in the description:
/// reopening it in each sharer is the same as sharing it.
fn reopen_is_sharing(target: &FdTarget, flags: OpenFlags) -> bool {
    if flags.contains(OpenFlags::O_APPEND) || flags.contains(OpenFlags::O_PATH) {
        return true;
    }
    match target {
        FdTarget::Path(p) => std::fs::metadata(&p.path)
            .map(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_char_device()
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// Dumps the descriptor table of `pid`, leaving out `skip` (the parasite's socket).
pub fn dump(cx: &FdCtx, pid: Pid, skip: Option<i32>, next_id: &mut u32, cross: &mut CrossSeen) -> Result<FdTable> {
    let mut out = FdTable::default();
    let list = fdinfo::list_fds(pid).ctx(pid, "list descriptors")?;
    // (fd, id) of every open file description seen so far.
    let mut seen: Vec<(i32, u32, FdKind)> = Vec::new();
    for e in list.iter().filter(|e| Some(e.fd) != skip) {
        let kind = classify(pid, e.fd, &e.target).map_err(|what| {
            Error::task(pid, format!("fd {}: {what}: this kind of descriptor is not supported yet", e.fd))
        })?;
        let info = fdinfo::read(pid, e.fd).ctx(pid, &format!("read fdinfo of fd {}", e.fd))?;
        let flags = OpenFlags::from_bits_retain(info.flags);
        let cloexec = flags.contains(OpenFlags::O_CLOEXEC);
        let flags = flags - OpenFlags::O_CLOEXEC;
        let mut shared = None;
        for &(other, id, k) in &seen {
            if k == kind && kcmp_file(pid, other, pid, e.fd).ctx(pid, "kcmp")? == KcmpOrder::Equal {
                shared = Some(id);
                break;
            }
        }
        let id = match shared {
            Some(id) => id,
            None => {
                for &(opid, ofd, k) in &cross.list {
                    if k == kind
                        && opid != pid
                        && kcmp_file(opid, ofd, pid, e.fd).ctx(pid, "kcmp")? == KcmpOrder::Equal
                        && !reopen_is_sharing(&e.target, flags)
                    {
                        return Err(Error::task(
                            pid,
                            format!(
                                "fd {} shares its open file (and offset) with fd {ofd} of task {opid}: \
                                 sharing descriptors between processes is not supported yet",
                                e.fd
                            ),
                        ));
                    }
                }
                cross.list.push((pid, e.fd, kind));
                let id = *next_id;
                *next_id += 1;
                let ops = KINDS.iter().find(|k| k.kind == kind).ok_or_else(|| {
                    Error::task(pid, format!("fd {}: {} descriptors are not supported yet", e.fd, kind.name()))
                })?;
                (ops.dump)(cx, pid, e.fd, &e.target, &info, id, &mut out)?;
                out.files.push(FileEntry { id, kind });
                seen.push((e.fd, id, kind));
                id
            }
        };
        out.fds.push(FdinfoEntry { fd: e.fd as u32, flags, cloexec, kind, id });
    }
    Ok(out)
}

/// Adds the descriptor table to the plan.
pub fn plan(cx: &FdCtx, b: &mut PlanBuilder, pid: Pid, table: &FdTable) -> Result<()> {
    let mut entries = Vec::with_capacity(table.fds.len());
    for (i, fd) in table.fds.iter().enumerate() {
        let first = table.fds[..i].iter().position(|o| o.id == fd.id);
        let entry = match first {
            Some(j) => restorer_plan::FileEntry {
                fd: fd.fd as i32,
                flags: 0,
                pos: u64::MAX,
                path: restorer_plan::Str::default(),
                dup_of: j as u32,
                cloexec: fd.cloexec as u32,
            },
            None => match KINDS.iter().find(|k| k.kind == fd.kind) {
                Some(ops) => (ops.plan)(cx, b, pid, fd, table)?,
                None => {
                    return Err(Error::task(
                        pid,
                        format!("fd {}: cannot restore {} descriptors", fd.fd, fd.kind.name()),
                    ))
                }
            },
        };
        entries.push(entry);
    }
    b.plan.files = b.add_table(&entries);
    Ok(())
}
