//! Regular files, directories and device nodes, reopened by path with their
//! flags and position.
//!
//! At restore a regular file must still be the same size it had at dump
//! (CRIU does the same): a file that changed underneath would give the task a
//! different world than it had, so restore refuses it, naming the file. A
//! file open write-only with O_APPEND (a log) is not size-checked: other
//! writers append to logs all the time, and the task only ever appends.
//!
//! Files whose path no longer leads to them:
//! - unlinked for good (no link left): a ghost file. Its contents (holes
//!   stay holes: SEEK_DATA/SEEK_HOLE), mode, owner and times are copied
//!   into the images, up to the ghost limit (`--ghost-limit`, 1 MiB by
//!   default); restore creates it again where it was (or next to it when
//!   that name is taken), opens every description from it and unlinks it.
//! - unlinked from this path but still linked under another name in the
//!   same directory (glibc's sem_open: a temporary name linked as
//!   sem.NAME, then unlinked): opened or mapped by that name.
//! - unlinked from this path but still linked elsewhere (nlink > 0):
//!   with `--link-remap` the dump links the file under a temporary name
//!   next to where it was (a failed dump removes that link again); restore
//!   opens it from there and removes the link once the tree runs. Without
//!   it the dump is refused: a copy would no longer be the file the other
//!   links lead to.
//! - replaced by another file at the same path: the same two cases.
use super::files::{FdCtx, FileImages, Late, Opened};
use crate::error::{Context, Error, Result};
use crate::image::files::OpenFlags;
use crate::image::reg_files::RegFileEntry;
use crate::image::RawStr;
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFLNK: u32 = 0o120000;

/// Dumps one open file description.
pub fn dump(
    cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    if let FdTarget::Inode { kind, ino } = target {
        return dump_namespace(pid, fd, kind, *ino, info, id, out);
    }
    let FdTarget::Path(p) = target else {
        return Err(Error::task(pid, format!("fd {fd}: not a path")));
    };
    // stat through the magic link: the open file itself, not the path.
    let md = std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}"))).ctx(pid, &format!("stat fd {fd}"))?;
    let mode = md.mode();
    let o_path = OpenFlags::from_bits_retain(info.flags).contains(OpenFlags::O_PATH);
    match mode & S_IFMT {
        S_IFREG | S_IFDIR | S_IFCHR | S_IFBLK => {}
        // A symlink itself: only O_PATH|O_NOFOLLOW opens one.
        S_IFLNK if o_path => {}
        _ => {
            return Err(Error::refuse(
                pid,
                format!("fd {fd}: {} (mode {mode:o}): this kind of file is not supported yet", p.path.display()),
            ))
        }
    }
    let is_dev = matches!(mode & S_IFMT, S_IFCHR | S_IFBLK);
    // The path must lead to the same file now, or restore would open another.
    let now = match (p.deleted, mode & S_IFMT) {
        (true, _) => None,
        (false, S_IFLNK) => std::fs::symlink_metadata(&p.path).ok(),
        (false, _) => std::fs::metadata(&p.path).ok(),
    };
    let same = now.as_ref().map(|n| n.ino() == md.ino() && n.dev() == md.dev()).unwrap_or(false);
    let mut path = p.path.clone();
    let (mut ghost, mut remap) = (None, None);
    if !same {
        if is_dev && cx.evasive_devices {
            // Any node of the same device will do (--evasive-devices).
            path = find_device(mode & S_IFMT, md.rdev()).ok_or_else(|| {
                Error::task(pid, format!("fd {fd}: no other node of device {:#x} under /dev", md.rdev()))
            })?;
            log::info!(task = pid.0; "task {pid}: fd {fd}: {} stands in for {}", path.display(), p.path.display());
        } else if is_dev && md.nlink() == 0 {
            // A node of the same device made again where it was, opened
            // and unlinked (--evasive-devices would take another node).
            ghost = Some(ghost_node(pid, fd, &p.path, &md, out));
        } else if mode & S_IFMT == S_IFDIR && md.nlink() == 0 {
            // A removed directory is empty: made again where it was (its
            // parents too if they were removed with it), opened, removed.
            // Made again by its name, it is found again by it: a removed
            // working directory of the same name must be this directory
            // (restore then makes it once for both), not another one.
            let cwd = std::fs::metadata(crate::proc::pid_path(pid, "cwd")).ok();
            let cwd_path = std::fs::read_link(crate::proc::pid_path(pid, "cwd")).ok();
            let cwd_removed = cwd.as_ref().is_some_and(|c| c.nlink() == 0);
            let same_name = cwd_path.as_deref().is_some_and(|c| {
                let c = c.as_os_str().as_bytes();
                c.strip_suffix(b" (deleted)").unwrap_or(c) == p.path.as_os_str().as_bytes()
            });
            let same_dir = cwd.as_ref().is_some_and(|c| c.dev() == md.dev() && c.ino() == md.ino());
            if cwd_removed && same_name != same_dir {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "fd {fd}: the removed directory {} and its removed working directory {}: \
                         two removed directories by one name, or one by two: not supported",
                        p.path.display(),
                        cwd_path.as_deref().unwrap_or(std::path::Path::new("?")).display()
                    ),
                ));
            }
            ghost = Some(ghost_node(pid, fd, &p.path, &md, out));
        } else if mode & S_IFMT == S_IFDIR {
            return Err(Error::refuse(
                pid,
                format!("fd {fd}: the directory {} was replaced: not supported yet", p.path.display()),
            ));
        } else if md.nlink() > 0 && mode & S_IFMT == S_IFREG {
            // Still linked in the same directory under another name (glibc's
            // sem_open links its file there and unlinks the temporary name):
            // opened by that name, it is the same file.
            if let Some(found) = linked_beside(&p.path, &md) {
                log::info!(task = pid.0; "task {pid}: fd {fd}: {} is still linked as {}", p.path.display(), found.display());
                path = found;
            } else if cx.link_remap {
                // Elsewhere: only a link keeps it the same file.
                let src = crate::proc::pid_path(pid, &format!("fd/{fd}"));
                remap = Some(link_remap(pid, &format!("fd {fd}"), &src, &p.path, md.ino(), out)?);
            } else {
                return Err(Error::refuse(
                    pid,
                    format!(
                        "fd {fd}: {} no longer leads to the open file, which is still linked elsewhere: \
                         dump with --link-remap",
                        p.path.display()
                    ),
                ));
            }
        } else if mode & S_IFMT == S_IFLNK && md.nlink() == 0 {
            // A symbolic link opened with O_PATH|O_NOFOLLOW, then removed
            // (zdtm symlink01): made again with its target, opened, removed.
            ghost = Some(ghost_symlink(pid, fd, &p.path, &md, out)?);
        } else if mode & S_IFMT == S_IFREG && shmem_object(&p.path) {
            // Copied as a ghost it would come back as another file than
            // the memory the task maps: writes through one would no longer
            // show through the other.
            return Err(Error::refuse(
                pid,
                format!(
                    "fd {fd}: shared anonymous memory (inode {}, {} (deleted)) opened through \
                     /proc/PID/map_files: not supported yet",
                    md.ino(),
                    p.path.display()
                ),
            ));
        } else if mode & S_IFMT == S_IFREG {
            ghost = Some(ghost_file(cx, pid, fd, &p.path, &md, out)?);
        } else if now.is_none() {
            return Err(Error::task(pid, format!("fd {fd}: {} cannot be found by its path", p.path.display())));
        } else {
            return Err(Error::task(
                pid,
                format!("fd {fd}: {} now names another file (over-mounted or replaced)", p.path.display()),
            ));
        }
    }
    out.reg.push(RegFileEntry {
        id,
        path: RawStr(path.as_os_str().as_bytes().to_vec()),
        flags: OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC,
        pos: info.pos.max(0) as u64,
        mode,
        size: md.size(),
        ghost,
        remap: remap.map(|r: std::path::PathBuf| RawStr(r.as_os_str().as_bytes().to_vec())),
    });
    Ok(())
}

/// The kinds of namespace a descriptor may be open on (nsfs link names).
pub fn namespace_kind(kind: &str) -> bool {
    matches!(kind, "net" | "uts" | "ipc" | "pid" | "mnt" | "user" | "cgroup" | "time")
}

/// A descriptor open on a namespace (/proc/PID/ns/KIND): the tree lives in
/// crtools' namespaces, and one of those is opened again through the
/// engine's /proc/self/ns; another namespace is refused by name.
fn dump_namespace(pid: Pid, fd: i32, kind: &str, ino: u64, info: &FdInfo, id: u32, out: &mut FileImages) -> Result<()> {
    let path = format!("/proc/self/ns/{kind}");
    let own = std::fs::metadata(&path).map_err(|e| Error::task(pid, format!("fd {fd}: stat {path}: {e}")))?;
    let md = std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}"))).ctx(pid, &format!("stat fd {fd}"))?;
    if md.ino() != ino || md.dev() != own.dev() || md.ino() != own.ino() {
        return Err(Error::refuse(
            pid,
            format!("fd {fd}: {kind}:[{ino}], a {kind} namespace other than the tree's: not supported"),
        ));
    }
    out.reg.push(RegFileEntry {
        id,
        path: RawStr(path.into_bytes()),
        flags: OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC,
        pos: 0,
        mode: md.mode(),
        size: md.size(),
        ghost: None,
        remap: None,
    });
    Ok(())
}

/// True for the names the kernel gives the files of shared anonymous
/// memory (MAP_SHARED|MAP_ANONYMOUS, /dev/zero) and of System V segments: a
/// regular file so named is one of those objects, never a file of a file
/// system (there /dev/zero is a device node).
fn shmem_object(path: &std::path::Path) -> bool {
    let b = path.as_os_str().as_bytes();
    b == b"/dev/zero" || (b.len() == 13 && b.starts_with(b"/SYSV") && b[5..].iter().all(u8::is_ascii_hexdigit))
}

/// Links the file `src` leads to (`what` of `pid`: a descriptor's or a
/// mapping's magic link; unlinked from `path`, linked elsewhere) under a
/// temporary name next to `path`; the name is recorded so a failed dump
/// removes it. A file the task holds twice is linked once.
fn link_remap(
    pid: Pid,
    what: &str,
    src: &std::path::Path,
    path: &std::path::Path,
    ino: u64,
    out: &mut FileImages,
) -> Result<std::path::PathBuf> {
    use crate::sys::fs::{linkat, AtFlags};
    // Next to where it was; if that directory was removed too, in the
    // nearest one above it that is still there.
    let mut dir = path.parent().unwrap_or(std::path::Path::new("/"));
    while !dir.is_dir() {
        dir = dir.parent().unwrap_or(std::path::Path::new("/"));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let remap = dir.join(format!(".{name}.crtools-link-remap.{ino}.{}", pid.0));
    if out.remaps.contains(&remap) {
        return Ok(remap);
    }
    linkat(None, src, None, &remap, AtFlags::AT_SYMLINK_FOLLOW).map_err(|e| {
        Error::task(pid, format!("{what}: {}: link it back as {}: {e}", path.display(), remap.display()))
    })?;
    log::info!(task = pid.0; "task {pid}: {what}: {} linked back as {} (--link-remap)", path.display(), remap.display());
    out.remaps.push(remap.clone());
    Ok(remap)
}

/// Another name of the file `md` (unlinked from `path`, still linked) in
/// the directory `path` was in, if it has one there.
fn linked_beside(path: &std::path::Path, md: &std::fs::Metadata) -> Option<std::path::PathBuf> {
    let dir = path.parent()?;
    std::fs::read_dir(dir).ok()?.take(1 << 20).flatten().find_map(|e| {
        let m = std::fs::symlink_metadata(e.path()).ok()?;
        (m.ino() == md.ino() && m.dev() == md.dev()).then(|| e.path())
    })
}

/// Records the unlinked device node or removed directory behind `fd` of
/// `pid` as a ghost file (no data: the device is the same, the directory
/// empty) and returns its ghost id.
fn ghost_node(pid: Pid, fd: i32, path: &std::path::Path, md: &std::fs::Metadata, out: &mut FileImages) -> u32 {
    use crate::image::reg_files::GhostFileEntry;
    if let Some(&g) = out.ghost_ids.get(&(md.dev(), md.ino())) {
        return g;
    }
    let g = out.ghosts.len() as u32 + 1;
    out.ghosts.push(GhostFileEntry {
        id: g,
        path: RawStr(path.as_os_str().as_bytes().to_vec()),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size: 0,
        atime: (md.atime(), md.atime_nsec()),
        mtime: (md.mtime(), md.mtime_nsec()),
        rdev: md.rdev(),
        mapped: false,
    });
    out.ghost_ids.insert((md.dev(), md.ino()), g);
    log::info!(task = pid.0; "task {pid}: fd {fd}: the unlinked node {} (mode {:o}) kept as ghost {g}", path.display(), md.mode());
    g
}

/// Records the removed symbolic link behind `fd` of `pid` as a ghost whose
/// data is its target (read through the descriptor itself: readlinkat of
/// an O_PATH descriptor with an empty path).
fn ghost_symlink(
    pid: Pid,
    fd: i32,
    path: &std::path::Path,
    md: &std::fs::Metadata,
    out: &mut FileImages,
) -> Result<u32> {
    use crate::image::reg_files::GhostDataEntry;
    if let Some(&g) = out.ghost_ids.get(&(md.dev(), md.ino())) {
        return Ok(g);
    }
    let own = super::files::take_fd(pid, fd)?;
    let target = crate::sys::fs::readlinkat(Some(own.as_fd()), "")
        .map_err(|e| Error::task(pid, format!("fd {fd}: read the removed symbolic link {}: {e}", path.display())))?;
    let target = std::os::unix::ffi::OsStringExt::into_vec(target.into_os_string());
    let g = ghost_node(pid, fd, path, md, out);
    if let Some(e) = out.ghosts.iter_mut().find(|e| e.id == g) {
        e.size = target.len() as u64;
    }
    out.ghost_data.push(GhostDataEntry { ghost: g, offset: 0, data: target });
    Ok(g)
}

/// Whether `remap` is a name [`link_remap`] gives a file dumped from
/// `path`: `.<name>.crtools-link-remap.<ino>.<pid>` in the same directory
/// (a restore removes it afterwards: hostile images must not name any
/// other file).
fn is_link_remap_name(remap: &std::path::Path, path: &std::path::Path) -> bool {
    let (Some(name), Some(orig)) = (remap.file_name().and_then(|n| n.to_str()), path.file_name()) else {
        return false;
    };
    let prefix = format!(".{}.crtools-link-remap.", orig.to_string_lossy());
    let Some(rest) = name.strip_prefix(&prefix) else { return false };
    let nums: Vec<&str> = rest.split('.').collect();
    // Next to the file, or in a directory above it (its own was removed).
    remap.parent().is_some_and(|d| path.parent().is_some_and(|p| p.starts_with(d)))
        && remap.is_absolute()
        && !remap.components().any(|c| matches!(c, std::path::Component::ParentDir))
        && nums.len() == 2
        && nums.iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Copies the unlinked regular file behind `fd` of `pid` into the images
/// once (a ghost file) and returns its ghost id.
fn ghost_file(
    cx: &FdCtx,
    pid: Pid,
    fd: i32,
    path: &std::path::Path,
    md: &std::fs::Metadata,
    out: &mut FileImages,
) -> Result<u32> {
    if let Some(&g) = out.ghost_ids.get(&(md.dev(), md.ino())) {
        return Ok(g);
    }
    let what = format!("fd {fd}: the unlinked file {}", path.display());
    // Made again where it was at restore: not on a read-only mount.
    if path.parent().is_some_and(crate::sys::fs::on_read_only_fs) {
        return Err(Error::refuse(
            pid,
            format!("{what} lies on a read-only file system, where restore could not make it again: not supported"),
        ));
    }
    // A description of our own: the task's offset stays where it is.
    let f = std::fs::File::open(crate::proc::pid_path(pid, &format!("fd/{fd}")))
        .map_err(|err| Error::task(pid, format!("{what}: open: {err}")))?;
    copy_ghost(cx, pid, &what, &f, path, md, out)
}

/// The id of the mapping object of ghost file `g` (the engine's descriptor
/// that restored tasks map it through).
pub fn ghost_mapping_id(g: u32) -> u32 {
    super::files::EngineIds::GhostMapping.id(g)
}

/// Ids of the file entries of mappings linked back (`--link-remap`): no
/// descriptor has them, and the ids of descriptions stay below.
const REMAP_MAPPING: u32 = 0x2000_0000;

fn remap_mapping_id(n: u32) -> u32 {
    REMAP_MAPPING | n
}

/// Gives every mapping of an unlinked file (VmaKind::GhostFile) of `pid`
/// its ghost file (`shmid`), copying the file through /proc/<pid>/map_files
/// if no descriptor showed it yet.
pub fn dump_mapped_ghosts(
    cx: &FdCtx,
    pid: Pid,
    vmas: &mut [crate::image::mm::Vma],
    out: &mut FileImages,
) -> Result<()> {
    use crate::image::mm::VmaKind;
    for v in vmas.iter_mut().filter(|v| v.kind == VmaKind::GhostFile) {
        let path = std::path::PathBuf::from(v.path.as_ref().map(|p| p.as_os_str().to_owned()).unwrap_or_default());
        let what = format!("VMA {:#x}-{:#x}: the unlinked file {}", v.start, v.end, path.display());
        let f = crate::proc::map_files::open(pid, v.start, v.end)
            .map_err(|e| Error::task(pid, format!("{what}: open its map_files entry: {e}")))?;
        let md = f.metadata().map_err(|e| Error::task(pid, format!("{what}: stat: {e}")))?;
        if md.mode() & S_IFMT != S_IFREG {
            return Err(Error::refuse(pid, format!("{what}: not a regular file (mode {:o})", md.mode())));
        }
        if md.nlink() > 0 {
            // Still linked: a copy would no longer be the file its other
            // links lead to (a POSIX named semaphore: glibc's sem_open maps
            // a temporary file, links it as sem.NAME and unlinks the
            // temporary name; its users would stop seeing each other).
            match linked_beside(&path, &md) {
                Some(found) => {
                    log::info!(task = pid.0; "task {pid}: {what} is still linked as {}", found.display());
                    v.kind = VmaKind::File;
                    v.path = Some(RawStr(found.as_os_str().as_bytes().to_vec()));
                    continue;
                }
                None if cx.link_remap => {
                    // Linked back next to where it was and mapped by that
                    // name; a file entry of its own (no descriptor has it)
                    // has the restore check the name and remove it once the
                    // tree runs.
                    let src = std::path::PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
                    let remap = link_remap(pid, &what, &src, &path, md.ino(), out)?;
                    let name = RawStr(remap.as_os_str().as_bytes().to_vec());
                    if !out.reg.iter().any(|r| r.remap.as_ref() == Some(&name)) {
                        let id = remap_mapping_id(out.reg.iter().filter(|r| r.id & REMAP_MAPPING != 0).count() as u32);
                        out.reg.push(RegFileEntry {
                            id,
                            path: RawStr(path.as_os_str().as_bytes().to_vec()),
                            flags: OpenFlags::empty(),
                            pos: 0,
                            mode: md.mode(),
                            size: md.size(),
                            ghost: None,
                            remap: Some(name.clone()),
                        });
                    }
                    v.kind = VmaKind::File;
                    v.path = Some(name);
                    continue;
                }
                None => {
                    return Err(Error::refuse(
                        pid,
                        format!(
                            "{what} is still linked elsewhere ({} links), not in its directory: dump with \
                             --link-remap to map it again through a name linked back next to it",
                            md.nlink()
                        ),
                    ))
                }
            }
        }
        let g = match out.ghost_ids.get(&(md.dev(), md.ino())) {
            Some(&g) => g,
            None => copy_ghost(cx, pid, &what, &f, &path, &md, out)?,
        };
        if let Some(gh) = out.ghosts.iter_mut().find(|x| x.id == g) {
            gh.mapped = true;
        }
        v.shmid = g as u64;
        // Its path is the ghost's at restore, not this one.
        v.path = None;
    }
    Ok(())
}

/// Copies the unlinked regular file `f` into the images once (a ghost
/// file) and returns its ghost id.
fn copy_ghost(
    cx: &FdCtx,
    pid: Pid,
    what: &str,
    f: &std::fs::File,
    path: &std::path::Path,
    md: &std::fs::Metadata,
    out: &mut FileImages,
) -> Result<u32> {
    use crate::image::reg_files::{GhostDataEntry, GhostFileEntry};
    use crate::sys::fs::{lseek, pread_full, Whence};
    let e = |m: String| Error::task(pid, format!("{what}: {m}"));
    let size = md.size();
    // Find the data runs; holes stay holes.
    let mut runs = Vec::new();
    let mut at = 0u64;
    while at < size {
        let start = match lseek(f.as_fd(), at as i64, Whence::Data) {
            Ok(s) => s,
            Err(crate::sys::Errno::ENXIO) => break,
            Err(err) => return Err(e(format!("SEEK_DATA: {err}"))),
        };
        let end = lseek(f.as_fd(), start as i64, Whence::Hole).map_err(|err| e(format!("SEEK_HOLE: {err}")))?.min(size);
        if end > start {
            runs.push((start, end));
        }
        at = end.max(start + 1);
    }
    let data: u64 = runs.iter().map(|(a, b)| b - a).sum();
    if data > cx.ghost_limit {
        // Refused (not failed): a limit the user sets, named.
        return Err(Error::refuse(
            pid,
            format!(
                "{what}: holds {data} bytes of data, more than the ghost file limit of {} (--ghost-limit)",
                cx.ghost_limit
            ),
        ));
    }
    let g = out.ghosts.len() as u32 + 1;
    const CHUNK: u64 = 1 << 20;
    for (start, end) in runs {
        let mut off = start;
        while off < end {
            let n = CHUNK.min(end - off) as usize;
            let mut buf = vec![0u8; n];
            let got = pread_full(f.as_fd(), &mut buf, off).map_err(|err| e(format!("read: {err}")))?;
            buf.truncate(got);
            out.ghost_data.push(GhostDataEntry { ghost: g, offset: off, data: buf });
            off += n as u64;
        }
    }
    out.ghosts.push(GhostFileEntry {
        id: g,
        path: RawStr(path.as_os_str().as_bytes().to_vec()),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size,
        atime: (md.atime(), md.atime_nsec()),
        mtime: (md.mtime(), md.mtime_nsec()),
        rdev: 0,
        mapped: false,
    });
    out.ghost_ids.insert((md.dev(), md.ino()), g);
    log::info!(task = pid.0; "task {pid}: {what}: {data} bytes copied as ghost file {g}");
    Ok(g)
}

/// A node under /dev of the device `rdev` (`kind`: S_IFCHR or S_IFBLK).
fn find_device(kind: u32, rdev: u64) -> Option<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, kind: u32, rdev: u64, depth: u32) -> Option<std::path::PathBuf> {
        let mut subdirs = Vec::new();
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let Ok(md) = std::fs::symlink_metadata(e.path()) else { continue };
            if md.mode() & S_IFMT == kind && md.rdev() == rdev {
                return Some(e.path());
            }
            if md.is_dir() && depth > 0 {
                subdirs.push(e.path());
            }
        }
        subdirs.into_iter().find_map(|d| walk(&d, kind, rdev, depth - 1))
    }
    walk(std::path::Path::new("/dev"), kind, rdev, 3)
}

/// Opens every regular file, directory and device of the images, each
/// once, at its position. `/proc` files of the tree's own tasks are left
/// for the tasks to open once the tree exists. Ghost files are created,
/// opened and unlinked again; link-remap names are removed once the tree
/// runs.
pub fn open(cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    let mut ghost_paths: std::collections::BTreeMap<u32, std::path::PathBuf> = Default::default();
    // Ghosts made with O_TMPFILE: no name to unlink.
    let mut unnamed = std::collections::BTreeSet::new();
    for reg in &images.reg {
        if out.has(reg.id) {
            continue; // --inherit-fd
        }
        let path = reg.path.to_string_lossy();
        let e = |what: String| Error::new(format!("{}: {path}: {what}", cx.who(reg.id)));
        // Character and block devices keep no position of ours.
        let seekable = matches!(reg.mode & S_IFMT, S_IFREG | S_IFDIR);
        let mut flags =
            reg.flags - (OpenFlags::O_CREAT | OpenFlags::O_TRUNC | OpenFlags::O_EXCL | OpenFlags::O_CLOEXEC);
        // An O_TMPFILE file keeps O_TMPFILE (with O_DIRECTORY) in its
        // status flags; opening it again takes neither.
        let tmpfile = reg.flags.contains(OpenFlags::__O_TMPFILE);
        if tmpfile {
            flags -= OpenFlags::__O_TMPFILE | OpenFlags::O_DIRECTORY;
        }
        if super::files::is_tree_proc_path(cx, reg.path.as_bytes()) {
            let pos = if seekable { reg.pos } else { u64::MAX };
            out.add_late(reg.id, Late { path: reg.path.as_bytes().to_vec(), flags: flags.bits(), pos, pidfd: None });
            continue;
        }
        let open_path: std::path::PathBuf = match (reg.ghost, &reg.remap) {
            (Some(g), _) => match ghost_paths.get(&g) {
                Some(p) => p.clone(),
                None if tmpfile => {
                    // Made unnamed again, as O_TMPFILE made it (so that
                    // linkat can still give it a name), and reached
                    // through crtools' own descriptor.
                    let fd = make_tmpfile_ghost(images, g).map_err(e)?;
                    let p = std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                    out.keep(fd);
                    unnamed.insert(g);
                    ghost_paths.insert(g, p.clone());
                    p
                }
                None => {
                    let p = make_ghost(images, g, &mut out.made_parents).map_err(e)?;
                    ghost_paths.insert(g, p.clone());
                    p
                }
            },
            (None, Some(r)) => {
                let p = std::path::PathBuf::from(r.as_os_str());
                // Removed after the restore: only a name link_remap made.
                if !is_link_remap_name(&p, std::path::Path::new(reg.path.as_os_str())) {
                    return Err(e(format!("the images name {} as its link-remap file: refusing", p.display())));
                }
                out.remove_after_restore(p.clone());
                p
            }
            (None, None) => std::path::PathBuf::from(reg.path.as_os_str()),
        };
        let md = if reg.mode & S_IFMT == S_IFLNK {
            std::fs::symlink_metadata(&open_path)
        } else {
            std::fs::metadata(&open_path)
        }
        .map_err(|err| e(err.to_string()))?;
        if md.mode() & S_IFMT != reg.mode & S_IFMT {
            return Err(e("is no longer the same type of file".into()));
        }
        // A log (write-only, appending) is not size-checked: it grows. A
        // file that only grew is no change to a reader (tail -f, a log
        // shipper: read-only, or O_PATH): it reads on from its offset, as
        // it would have had it only been paused. Anything else that
        // changed size is refused: a writer's view of it is
        // no longer the file's.
        let appends = reg.flags.contains(OpenFlags::O_APPEND) && reg.flags.contains(OpenFlags::O_WRONLY);
        let reader =
            !reg.flags.intersects(OpenFlags::O_WRONLY | OpenFlags::O_RDWR) || reg.flags.contains(OpenFlags::O_PATH);
        let grew_under_reader = reader && md.size() > reg.size;
        if grew_under_reader {
            log::debug!("file {}: grew from {} to {} bytes since the dump: read on", reg.id, reg.size, md.size());
        }
        if reg.mode & S_IFMT == S_IFREG && md.size() != reg.size && !appends && !grew_under_reader {
            return Err(e(format!(
                "has size {} now, {} at dump: refusing to restore over a changed file",
                md.size(),
                reg.size
            )));
        }
        // O_NOCTTY: crtools must not take a terminal as its own.
        let flags = crate::sys::fs::OpenFlags::from_bits_retain(flags.bits()) | crate::sys::fs::OpenFlags::O_NOCTTY;
        let fd = crate::sys::fs::openat(None, &open_path, flags, 0).map_err(|err| e(format!("open: {err}")))?;
        // At 0 already (a namespace cannot seek).
        if seekable && reg.pos != 0 && !flags.contains(crate::sys::fs::OpenFlags::O_PATH) {
            crate::sys::fs::lseek(fd.as_fd(), reg.pos as i64, crate::sys::fs::Whence::Set)
                .map_err(|err| e(format!("seek to {}: {err}", reg.pos)))?;
        }
        out.add(reg.id, fd);
    }
    // Mapped ghosts: a descriptor of the engine's for the tasks to map
    // them through (/proc/self/fd), made before they are unlinked.
    for gh in images.ghosts.iter().filter(|g| g.mapped) {
        let p = match ghost_paths.get(&gh.id) {
            Some(p) => p.clone(),
            None => {
                let p = make_ghost(images, gh.id, &mut out.made_parents)
                    .map_err(|m| Error::new(format!("ghost file {}: {m}", gh.id)))?;
                ghost_paths.insert(gh.id, p.clone());
                p
            }
        };
        use crate::sys::fs::OpenFlags as F;
        let fd = crate::sys::fs::openat(None, &p, F::O_RDWR | F::O_CLOEXEC, 0)
            .or_else(|_| crate::sys::fs::openat(None, &p, F::O_RDONLY | F::O_CLOEXEC, 0))
            .map_err(|err| Error::new(format!("ghost file {} ({}): open it for mapping: {err}", gh.id, p.display())))?;
        out.add(ghost_mapping_id(gh.id), fd);
    }
    // Every description is open: the ghosts go (unlinked, as they were),
    // but a directory that is also a removed working directory: it goes
    // with those, once the tree runs.
    for (g, p) in ghost_paths.into_iter().filter(|(g, _)| !unnamed.contains(g)) {
        let dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
        if dir {
            let orig =
                images.ghosts.iter().find(|gh| gh.id == g).map(|gh| std::path::PathBuf::from(gh.path.as_os_str()));
            if let Some(orig) = orig.filter(|o| cx.removed_cwds.contains(o)) {
                out.kept_dirs.insert(orig, p);
                continue;
            }
        }
        let r = if dir { std::fs::remove_dir(&p) } else { std::fs::remove_file(&p) };
        r.map_err(|err| Error::new(format!("ghost file {g}: unlink {}: {err}", p.display())))?;
    }
    Ok(())
}

/// Makes ghost device node or (empty) directory `g` where it was (or next
/// to it), with its mode and owner.
fn make_ghost_node(
    gh: &crate::image::reg_files::GhostFileEntry,
    orig: &std::path::Path,
    g: u32,
) -> std::result::Result<std::path::PathBuf, String> {
    use crate::sys::fs;
    let make = |p: &std::path::Path| {
        if gh.mode & S_IFMT == S_IFDIR {
            fs::mkdirat(None, p, 0o700)
        } else {
            fs::mknodat(None, p, (gh.mode & S_IFMT) | 0o600, gh.rdev)
        }
    };
    let path = match make(orig) {
        Ok(()) => orig.to_path_buf(),
        Err(crate::sys::Errno::EEXIST) => {
            let name = orig.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let p = orig.with_file_name(format!(".{name}.crtools-ghost.{g}.{}", std::process::id()));
            make(&p).map_err(|e| format!("make the device node {} again: {e}", p.display()))?;
            p
        }
        Err(e) => return Err(format!("make the device node {} again: {e}", orig.display())),
    };
    use std::os::unix::fs::PermissionsExt;
    let set = std::os::unix::fs::chown(&path, Some(gh.uid), Some(gh.gid))
        .and_then(|_| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(gh.mode & 0o7777)));
    if let Err(e) = set {
        let _ = std::fs::remove_file(&path);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(path)
}

/// Makes removed symbolic link `g` again where it was (or next to it), with
/// its target and owner.
fn make_ghost_symlink(
    images: &FileImages,
    gh: &crate::image::reg_files::GhostFileEntry,
    orig: &std::path::Path,
    g: u32,
) -> std::result::Result<std::path::PathBuf, String> {
    let mut target = Vec::new();
    for d in images.ghost_data.iter().filter(|d| d.ghost == g) {
        let at = d.offset as usize;
        if at > 4096 || d.data.len() > 4096 {
            return Err(format!("ghost symbolic link {g}: its target is longer than a path"));
        }
        target.resize(target.len().max(at + d.data.len()), 0);
        target[at..at + d.data.len()].copy_from_slice(&d.data);
    }
    let target = std::ffi::OsStr::from_bytes(&target);
    let path = match std::os::unix::fs::symlink(target, orig) {
        Ok(()) => orig.to_path_buf(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let name = orig.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let p = orig.with_file_name(format!(".{name}.crtools-ghost.{g}.{}", std::process::id()));
            std::os::unix::fs::symlink(target, &p)
                .map_err(|e| format!("make the symbolic link {} again: {e}", p.display()))?;
            p
        }
        Err(e) => return Err(format!("make the symbolic link {} again: {e}", orig.display())),
    };
    if let Err(e) = std::os::unix::fs::lchown(&path, Some(gh.uid), Some(gh.gid)) {
        let _ = std::fs::remove_file(&path);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(path)
}

/// Creates ghost file `g` where it was (or next to it when that name is
/// taken), with its contents, mode, owner and times; returns its path.
fn make_ghost(
    images: &FileImages,
    g: u32,
    parents: &mut Vec<std::path::PathBuf>,
) -> std::result::Result<std::path::PathBuf, String> {
    use crate::sys::fs::{self, OpenFlags as F};
    let gh =
        images.ghosts.iter().find(|x| x.id == g).ok_or_else(|| format!("ghost file {g} missing from the images"))?;
    let orig = std::path::PathBuf::from(gh.path.as_os_str());
    // Its directory may have been removed with it: made again for a moment.
    super::files::make_missing_parents(&orig, parents)?;
    if matches!(gh.mode & S_IFMT, S_IFCHR | S_IFBLK | S_IFDIR) {
        return make_ghost_node(gh, &orig, g);
    }
    if gh.mode & S_IFMT == S_IFLNK {
        return make_ghost_symlink(images, gh, &orig, g);
    }
    let create = |p: &std::path::Path| fs::openat(None, p, F::O_WRONLY | F::O_CREAT | F::O_EXCL | F::O_CLOEXEC, 0o600);
    let (path, f) = match create(&orig) {
        Ok(f) => (orig.clone(), f),
        Err(crate::sys::Errno::EEXIST) => {
            let name = orig.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let p = orig.with_file_name(format!(".{name}.crtools-ghost.{g}.{}", std::process::id()));
            let f = create(&p).map_err(|e| format!("create the ghost file {}: {e}", p.display()))?;
            (p, f)
        }
        Err(e) => return Err(format!("create the ghost file {}: {e}", orig.display())),
    };
    if let Err(m) = fill_ghost(images, gh, f.as_fd()) {
        let _ = std::fs::remove_file(&path);
        return Err(format!("ghost file {}: {m}", path.display()));
    }
    Ok(path)
}

/// Ghost file `g`'s contents, size, owner, mode and times, into `f`.
fn fill_ghost(
    images: &FileImages,
    gh: &crate::image::reg_files::GhostFileEntry,
    f: std::os::fd::BorrowedFd<'_>,
) -> std::result::Result<(), String> {
    use crate::sys::fs;
    for d in images.ghost_data.iter().filter(|d| d.ghost == gh.id) {
        fs::pwrite_all(f, &d.data, d.offset).map_err(|e| format!("write: {e}"))?;
    }
    fs::ftruncate(f, gh.size).map_err(|e| format!("truncate: {e}"))?;
    fs::fchown(f, gh.uid, gh.gid).map_err(|e| format!("chown: {e}"))?;
    fs::fchmod(f, gh.mode & 0o7777).map_err(|e| format!("chmod: {e}"))?;
    fs::futimens(f, gh.atime, gh.mtime).map_err(|e| format!("set times: {e}"))
}

/// Ghost file `g` made again with O_TMPFILE in its directory (without
/// O_EXCL: linkat may name it, as the usual O_TMPFILE file), with its
/// contents, mode, owner and times; returns crtools' descriptor of it.
fn make_tmpfile_ghost(images: &FileImages, g: u32) -> std::result::Result<OwnedFd, String> {
    use crate::sys::fs::{self, OpenFlags as F};
    let gh =
        images.ghosts.iter().find(|x| x.id == g).ok_or_else(|| format!("ghost file {g} missing from the images"))?;
    let orig = std::path::PathBuf::from(gh.path.as_os_str());
    let dir = orig.parent().ok_or_else(|| format!("ghost file {g}: {} has no directory", orig.display()))?;
    let f = fs::openat(None, dir, F::O_TMPFILE | F::O_RDWR | F::O_CLOEXEC, 0o600)
        .map_err(|e| format!("an O_TMPFILE file in {}: {e}", dir.display()))?;
    fill_ghost(images, gh, f.as_fd()).map_err(|m| format!("ghost file {g} (O_TMPFILE): {m}"))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::{is_link_remap_name, shmem_object};
    use std::path::Path;

    #[test]
    fn kernel_names_of_shared_memory_objects() {
        for yes in ["/dev/zero", "/SYSV0000002a", "/SYSVdeadbeef"] {
            assert!(shmem_object(Path::new(yes)), "{yes}");
        }
        for no in ["/dev/zero2", "/SYSV", "/SYSV0000002", "/SYSVxyz0002a", "/tmp/dev/zero", "/dev/null"] {
            assert!(!shmem_object(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn only_link_remap_names_are_removed_after_restore() {
        let p = Path::new("/tmp/d/data");
        assert!(is_link_remap_name(Path::new("/tmp/d/.data.crtools-link-remap.123.45"), p));
        // Its directory removed: in one above it.
        assert!(is_link_remap_name(Path::new("/tmp/.data.crtools-link-remap.123.45"), p));
        assert!(is_link_remap_name(Path::new("/.data.crtools-link-remap.123.45"), p));
        for bad in [
            "/tmp/d/sub/.data.crtools-link-remap.123.45",
            "/etc/passwd",
            "/tmp/other/.data.crtools-link-remap.123.45",
            "/tmp/d/.data.crtools-link-remap.123",
            "/tmp/d/.data.crtools-link-remap.1x.45",
            "/tmp/d/.other.crtools-link-remap.123.45",
            "/tmp/d/../d/.data.crtools-link-remap.123.45",
            "tmp/d/.data.crtools-link-remap.123.45",
        ] {
            assert!(!is_link_remap_name(Path::new(bad), p), "{bad}");
        }
    }
}
