//! memfd (see memfd_create(2)) held by descriptors: name, size, contents,
//! seals and permission bits, once per memfd (`memfd-data.img`), and every
//! open file description of it with its own access mode, status flags and
//! position (`memfd.img`), so a memfd shared by several processes, or
//! reopened through /proc, comes back as one file.
//!
//! Owner, group and permission bits come back too (a task may reopen its
//! memfd through /proc/self/fd, which checks them).
//!
//! Dump reads the contents through a new read-only description opened by
//! /proc/<pid>/fd/<n> or map_files (never the target's own: its position
//! must not move), skipping holes with SEEK_DATA/SEEK_HOLE, when the images
//! are written (the tree is still frozen): the data goes through one
//! bounded buffer into `pages-0.img`, and comes back the same way. Restore creates the memfd with
//! MFD_ALLOW_SEALING, writes the runs back, makes each description (the
//! first read-write one is memfd_create's own, the others are reopened
//! through /proc) and adds the seals last.
//!
//! A memfd that is mapped (MAP_SHARED or MAP_PRIVATE, with or without a
//! descriptor anywhere) is the same object: [`dump_mapped`] gives its VMAs
//! the memfd's id and reads the memfd through /proc/<pid>/map_files when
//! no descriptor showed it yet. At restore the engine's memfd is inherited
//! by the tree and each such VMA is mapped from /proc/self/fd/<its number>
//! (before the restorer closes the engine's descriptors), so every mapping
//! and descriptor is one file again; a private mapping keeps only its own
//! copied pages in the pages image. Hugetlb memfds are refused.
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Context, Error, Result};
use crate::image::events::{EventImages, MemfdDataEntry, MemfdEntry, MemfdRun, MEMFD_PAGES_ID};
use crate::image::files::OpenFlags;
use crate::image::{kinds, ImageDir, ImageDirReader, ImageKind};
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::fs::{self, OpenFlags as SysFlags, SealFlags, Whence};
use crate::sys::{Errno, Pid};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Buffer for contents: memory use does not grow with a memfd's size.
const CHUNK: usize = 4 << 20;
/// The page size tmpfs reports as st_blksize (hugetlbfs: the huge page size).
const PAGE: i64 = 4096;

/// Dumps one open file description of a memfd.
pub fn dump(
    _cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    let FdTarget::Path(p) = target else { return Err(Error::task(pid, format!("fd {fd}: not a memfd"))) };
    let name = p.path.as_os_str().as_bytes().strip_prefix(b"/memfd:").unwrap_or(b"").to_vec();
    let what = format!("memfd:{}", String::from_utf8_lossy(&name));
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let link = crate::proc::pid_path(pid, &format!("fd/{fd}"));
    let copy = fs::openat(None, &link, SysFlags::O_RDONLY | SysFlags::O_CLOEXEC | SysFlags::O_NOATIME, 0)
        .or_else(|_| fs::openat(None, &link, SysFlags::O_RDONLY | SysFlags::O_CLOEXEC, 0))
        .map_err(|e| Error::task(pid, format!("fd {fd}: {what}: open a copy: {e}")))?;
    let memfd_id = register(pid, &format!("fd {fd}: {what}"), copy.as_fd(), name, out)?;
    out.ev.memfd.push(MemfdEntry { id, memfd_id, flags, pos: info.pos as u64 });
    Ok(())
}

/// The dump's id of the memfd `copy` is a description of; its contents
/// are read the first time it is seen.
fn register(
    pid: Pid,
    what: &str,
    copy: std::os::fd::BorrowedFd<'_>,
    name: Vec<u8>,
    out: &mut FileImages,
) -> Result<u32> {
    let st = fs::fstat(copy).ctx(pid, &format!("{what}: fstat"))?;
    let key = (st.dev, st.ino);
    if let Some(&m) = out.ev.memfd_ids.get(&key) {
        return Ok(m);
    }
    if st.blksize != PAGE {
        return Err(Error::refuse(pid, format!("{what} is a hugetlb memfd: not supported yet")));
    }
    let memfd_id = out.ev.memfd_ids.len() as u32 + 1;
    let seals = fs::fcntl_get_seals(copy).map_err(|e| Error::task(pid, format!("{what}: F_GET_SEALS: {e}")))?.bits();
    // Its data is read when the images are written (the tree is still
    // frozen then), straight into the pages image.
    let src = fs::fcntl_dupfd_cloexec(copy, 0).map_err(|e| Error::task(pid, format!("{what}: dup: {e}")))?;
    out.ev.memfd_src.push((memfd_id, src));
    log::debug!(task = pid.0; "task {pid}: {what}: {} bytes, seals {seals:#x}", st.size);
    out.ev.memfd_ids.insert(key, memfd_id);
    out.ev.memfd_data.push(MemfdDataEntry {
        memfd_id,
        ino: st.ino,
        name: crate::image::RawStr(name),
        size: st.size as u64,
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        seals,
        runs: Vec::new(),
        mapped: false,
    });
    Ok(memfd_id)
}

/// The engine's descriptor of a mapped memfd, in [`Opened`] under this id
/// (see [`super::files::EngineIds`]).
pub fn mapping_id(memfd_id: u32) -> u32 {
    super::files::EngineIds::MemfdMapping.id(memfd_id)
}

/// Gives every memfd VMA of `pid` its memfd's id (`shmid`), dumping the
/// memfd through /proc/<pid>/map_files if no descriptor showed it yet.
pub fn dump_mapped(pid: Pid, vmas: &mut [crate::image::mm::Vma], out: &mut FileImages) -> Result<()> {
    use crate::image::mm::VmaKind;
    for v in vmas.iter_mut().filter(|v| v.kind == VmaKind::Memfd) {
        let what = format!(
            "VMA {:#x}-{:#x} ({})",
            v.start,
            v.end,
            v.path.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
        );
        let f = crate::proc::map_files::open(pid, v.start, v.end)
            .map_err(|e| Error::task(pid, format!("{what}: open its map_files entry: {e}")))?;
        let name =
            v.path.as_ref().map(|p| p.as_bytes()).unwrap_or(b"").strip_prefix(b"/memfd:").unwrap_or(b"").to_vec();
        let id = register(pid, &what, f.as_fd(), name, out)?;
        if let Some(d) = out.ev.memfd_data.iter_mut().find(|d| d.memfd_id == id) {
            d.mapped = true;
        }
        v.shmid = id as u64;
    }
    Ok(())
}

/// Writes memfd-data.img, streaming each memfd's data (holes left out,
/// found with SEEK_DATA/SEEK_HOLE) into pages-0.img through one bounded
/// buffer.
pub fn write_images(img: &ImageDir, ev: &EventImages) -> Result<()> {
    let w = |e: crate::image::ImageError| Error::new(format!("write memfd images: {e}"));
    let page = PAGE as u64;
    let mut pages = None;
    let mut entries = Vec::with_capacity(ev.memfd_data.len());
    let mut buf = Vec::new();
    for d in &ev.memfd_data {
        let mut d = d.clone();
        let Some((_, src)) = ev.memfd_src.iter().find(|(id, _)| *id == d.memfd_id) else {
            entries.push(d);
            continue;
        };
        let what = format!("memfd:{} (inode {})", d.name.to_string_lossy(), d.ino);
        let err = |step: &str, e: Errno| Error::new(format!("{what}: {step}: {e}"));
        let end = d.size.div_ceil(page) * page;
        let mut off = 0u64;
        while off < end {
            let start = match fs::lseek(src.as_fd(), off as i64, Whence::Data) {
                Ok(s) => s & !(page - 1),
                Err(Errno::ENXIO) => break,
                Err(e) => return Err(err("SEEK_DATA", e)),
            };
            let hole = fs::lseek(src.as_fd(), start as i64, Whence::Hole).map_err(|e| err("SEEK_HOLE", e))?;
            let stop = hole.div_ceil(page).saturating_mul(page).min(end);
            if start >= stop {
                break;
            }
            let p = match pages.as_mut() {
                Some(p) => p,
                None => pages.insert(img.create_pages(MEMFD_PAGES_ID).map_err(w)?),
            };
            d.runs.push(MemfdRun { offset: start, len: stop - start, pages_off: p.pages_written() * page });
            buf.resize(CHUNK, 0);
            let mut at = start;
            while at < stop {
                let n = ((stop - at) as usize).min(CHUNK);
                let got = fs::pread_full(src.as_fd(), &mut buf[..n], at).map_err(|e| err("read", e))?;
                // Past the end of the memfd: zeros, to a whole page.
                buf[got..n].fill(0);
                p.write_pages(&buf[..n]).map_err(w)?;
                at += n as u64;
            }
            off = stop;
        }
        entries.push(d);
    }
    if let Some(p) = pages {
        p.finish().map_err(w)?;
    }
    let mut f = img.create_image::<kinds::MemfdData>(None, &()).map_err(w)?;
    for e in &entries {
        f.write(e).map_err(w)?;
    }
    f.finish().map(drop).map_err(w)
}

/// The pages image of the memfds' data, when the dump has one.
pub fn open_pages(dir: &ImageDirReader) -> Result<Option<OwnedFd>> {
    if !dir.contains(ImageKind::Pages, Some(MEMFD_PAGES_ID)) {
        return Ok(None);
    }
    let p = dir.open_pages(MEMFD_PAGES_ID).map_err(|e| Error::new(format!("memfd data: {e}")))?;
    Ok(Some(p.fd().try_clone_to_owned().map_err(|e| Error::new(format!("memfd data: dup: {e}")))?))
}

/// Creates every memfd of the images with its contents, and each open
/// file description of it.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for d in &images.ev.memfd_data {
        let descs: Vec<&MemfdEntry> = images.ev.memfd.iter().filter(|m| m.memfd_id == d.memfd_id).collect();
        if descs.is_empty() && !d.mapped {
            continue;
        }
        let what = format!("memfd:{} (inode {} at dump)", d.name.to_string_lossy(), d.ino);
        let err = |step: &str, e: Errno| Error::new(format!("{what}: {step}: {e}"));
        let name =
            std::str::from_utf8(d.name.as_bytes()).map_err(|_| Error::new(format!("{what}: name is not UTF-8")))?;
        use crate::sys::misc::MemfdFlags as Mfd;
        let base = Mfd::MFD_CLOEXEC | Mfd::MFD_ALLOW_SEALING;
        // Executable or not as it was, whatever vm.memfd_noexec says
        // (kernels before 6.3 know neither flag: plain then).
        let exec = if d.seals & SealFlags::F_SEAL_EXEC.bits() != 0 { Mfd::MFD_NOEXEC_SEAL } else { Mfd::MFD_EXEC };
        let m = match crate::sys::misc::memfd_create(name, base | exec) {
            Err(Errno::EINVAL) => crate::sys::misc::memfd_create(name, base),
            r => r,
        }
        .map_err(|e| err("memfd_create", e))?;
        fs::ftruncate(m.as_fd(), d.size).map_err(|e| err("set its size", e))?;
        if !d.runs.is_empty() {
            let pages = images.ev.memfd_pages.as_ref().ok_or_else(|| Error::new(format!("{what}: no pages image")))?;
            let mut buf = vec![0u8; CHUNK];
            for r in &d.runs {
                // Never past the size: a write there would grow the memfd.
                let end = (r.offset + r.len).min(d.size);
                let mut at = r.offset;
                while at < end {
                    let n = ((end - at) as usize).min(CHUNK);
                    let got = fs::pread_full(pages.as_fd(), &mut buf[..n], r.pages_off + (at - r.offset))
                        .map_err(|e| err("read its data", e))?;
                    if got != n {
                        return Err(Error::new(format!("{what}: the pages image is short")));
                    }
                    fs::pwrite_all(m.as_fd(), &buf[..n], at).map_err(|e| err("write its contents", e))?;
                    at += n as u64;
                }
            }
        }

        fs::fchown(m.as_fd(), d.uid, d.gid).map_err(|e| err("set its owner", e))?;
        fs::fchmod(m.as_fd(), d.mode & 0o7777).map_err(|e| err("set its mode", e))?;
        let mut first_rw = true;
        for p in descs {
            let rw = p.flags.contains(OpenFlags::O_RDWR);
            let fd: OwnedFd = if rw && first_rw {
                first_rw = false;
                m.try_clone().map_err(|e| Error::new(format!("{what}: dup: {e}")))?
            } else {
                let link = format!("/proc/self/fd/{}", m.as_raw_fd());
                let access = p.flags & (OpenFlags::O_WRONLY | OpenFlags::O_RDWR);
                fs::openat(None, &link, SysFlags::from_bits_retain(access.bits()) | SysFlags::O_CLOEXEC, 0)
                    .map_err(|e| err("open another description", e))?
            };
            let status = p.flags - (OpenFlags::O_WRONLY | OpenFlags::O_RDWR);
            fs::fcntl_setfl(fd.as_fd(), SysFlags::from_bits_retain(status.bits()))
                .map_err(|e| err("set its flags", e))?;
            fs::lseek(fd.as_fd(), p.pos as i64, Whence::Set).map_err(|e| err("set its position", e))?;
            out.add(p.id, fd);
        }
        if d.mapped {
            let keep = m.try_clone().map_err(|e| Error::new(format!("{what}: dup: {e}")))?;
            out.add(mapping_id(d.memfd_id), keep);
        }
        let seals = SealFlags::from_bits_retain(d.seals);
        if d.seals != 0 && d.mapped {
            // Once the tree has mapped it: a mapping made before
            // F_SEAL_FUTURE_WRITE stays writable, one made after cannot be.
            out.defer(Box::new(move |_| {
                fs::fcntl_add_seals(m.as_fd(), seals)
                    .map_err(|e| Error::new(format!("{what}: add its seals once mapped: {e}")))
            }));
        } else if d.seals != 0 {
            fs::fcntl_add_seals(m.as_fd(), seals).map_err(|e| err("add its seals", e))?;
        }
    }
    Ok(())
}
