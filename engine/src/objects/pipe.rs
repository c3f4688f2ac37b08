//! Pipes (see pipe(7)): each open file description of an end is one
//! `pipes.img` entry; the pipe itself (capacity, bytes in flight) is one
//! `pipes-data.img` entry shared with FIFOs ([`super::fifo`]), which are
//! pipes with a name.
//!
//! Dump reads the bytes in flight without consuming them: tee(2) links the
//! pipe's buffers into a pipe of our own, which is read in packet mode
//! (O_DIRECT: one read per buffer), so buffer boundaries are known. The
//! target's pipe is left exactly as it was, whether the dump succeeds or
//! not. Restore creates the pipe once in the engine with its capacity,
//! writes the bytes back (one buffer per packet where an end of the pipe
//! is in packet mode), and makes each description: the pipe's own read and
//! write ends for the first of each kind, reopened through /proc for any
//! other. A pipe a process outside the tree still holds at restore (the
//! other end of a harness's pipe: the tree's stdin or stdout) is the same
//! pipe again: its descriptions are opened on it through that process's
//! /proc entry, and nothing is written back (what was in flight is still
//! there or was read since). An end whose peer was outside the dumped tree
//! and is gone comes back as an end whose peer went away (readers see the
//! data, then EOF; writers get EPIPE).
use super::files::{FdCtx, FileImages, Opened};
use crate::error::{Context, Error, Result};
use crate::image::files::OpenFlags;
use crate::image::pipes::{PipeDataEntry, PipeEntry};
use crate::proc::fdinfo::{FdInfo, FdTarget};
use crate::sys::fs::{self, OpenFlags as SysFlags};
use crate::sys::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// The largest pipe buffer a read in packet mode returns (a page; larger
/// to be safe against compound pages).
const MAX_PACKET: usize = 64 * 1024;

/// Dumps one open file description of a pipe end.
pub fn dump(
    _cx: &FdCtx,
    pid: Pid,
    fd: i32,
    target: &FdTarget,
    info: &FdInfo,
    id: u32,
    out: &mut FileImages,
) -> Result<()> {
    let FdTarget::Pipe(ino) = *target else {
        return Err(Error::task(pid, format!("fd {fd}: not a pipe")));
    };
    let flags = OpenFlags::from_bits_retain(info.flags) - OpenFlags::O_CLOEXEC;
    let md = std::fs::metadata(crate::proc::pid_path(pid, &format!("fd/{fd}"))).ctx(pid, &format!("stat fd {fd}"))?;
    let pipe_id = pipe_id_for(out, pid, fd, flags, (md.dev(), ino), &format!("pipe:[{ino}]"))?;
    out.pipes.push(PipeEntry { id, pipe_id, flags });
    Ok(())
}

/// Records which ends of each pipe the tree holds (for `crtools show` and
/// `--inherit-fd`).
pub fn finish_dump(images: &mut FileImages) {
    for d in images.pipe_data.iter_mut() {
        let mut ends = 0u8;
        let pipe_flags = images.pipes.iter().filter(|p| p.pipe_id == d.pipe_id).map(|p| p.flags);
        let fifo_flags = images.fifo.iter().filter(|f| f.pipe_id == d.pipe_id).map(|f| f.flags);
        for f in pipe_flags.chain(fifo_flags) {
            ends |= if f.contains(OpenFlags::O_RDWR) {
                3
            } else if f.contains(OpenFlags::O_WRONLY) {
                2
            } else {
                1
            };
        }
        d.tree_ends = ends;
    }
}

/// The dump's id of the pipe (device, inode) behind `fd`; its capacity and
/// data are read the first time the pipe is seen.
pub(super) fn pipe_id_for(
    out: &mut FileImages,
    pid: Pid,
    fd: i32,
    flags: OpenFlags,
    key: (u64, u64),
    what: &str,
) -> Result<u32> {
    if let Some(&id) = out.pipe_ids.get(&key) {
        return Ok(id);
    }
    let id = out.pipe_ids.len() as u32 + 1;
    let mut data = peek(pid, fd, flags, what)?;
    data.pipe_id = id;
    data.ino = key.1;
    log::debug!(task = pid.0; "task {pid}: fd {fd}: {what}: {} bytes in flight, capacity {}", data.data.len(), data.size);
    out.pipe_ids.insert(key, id);
    out.pipe_data.push(data);
    Ok(id)
}

/// Reads capacity and contents of the pipe behind `fd` of `pid`, leaving
/// the pipe untouched.
fn peek(pid: Pid, fd: i32, flags: OpenFlags, what: &str) -> Result<PipeDataEntry> {
    let e = |step: &str, err: crate::sys::Errno| Error::task(pid, format!("fd {fd}: {what}: {step}: {err}"));
    // A readable description is taken as it is (pidfd_getfd: no open, no
    // reader count change); a write-only one needs a read end, opened
    // through /proc (non-blocking, it never waits for a writer).
    let readable = !flags.contains(OpenFlags::O_WRONLY);
    let r: OwnedFd = if readable {
        super::files::take_fd(pid, fd)?
    } else {
        let link = crate::proc::pid_path(pid, &format!("fd/{fd}"));
        fs::openat(None, &link, SysFlags::O_RDONLY | SysFlags::O_NONBLOCK | SysFlags::O_CLOEXEC, 0)
            .map_err(|err| e("open a read end", err))?
    };
    let size = fs::fcntl_getpipe_sz(r.as_fd()).map_err(|err| e("F_GETPIPE_SZ", err))?;
    let queued = fs::fionread(r.as_fd()).map_err(|err| e("FIONREAD", err))?;
    let mut entry = PipeDataEntry { size: size as u32, ..Default::default() };
    if queued == 0 {
        return Ok(entry);
    }
    let (tr, tw) =
        fs::pipe2(SysFlags::O_CLOEXEC | SysFlags::O_DIRECT | SysFlags::O_NONBLOCK).map_err(|err| e("pipe2", err))?;
    match fs::fcntl_setpipe_sz(tw.as_fd(), size) {
        Ok(got) if got >= size => {}
        Ok(got) => return Err(Error::task(pid, format!("fd {fd}: {what}: a copy pipe holds {got} bytes, not {size}"))),
        Err(err) => {
            return Err(Error::task(
                pid,
                format!("fd {fd}: {what}: its capacity of {size} bytes is more than crtools may give a pipe: {err}"),
            ))
        }
    }
    let n = fs::tee(r.as_fd(), tw.as_fd(), queued, fs::SPLICE_F_NONBLOCK).map_err(|err| e("tee", err))?;
    if n != queued {
        return Err(Error::task(pid, format!("fd {fd}: {what}: tee copied {n} of {queued} bytes in flight")));
    }
    let mut buf = vec![0u8; MAX_PACKET];
    entry.data.reserve(n);
    while entry.data.len() < n {
        let got = fs::read(tr.as_fd(), &mut buf).map_err(|err| e("read the copy", err))?;
        if got == 0 {
            break;
        }
        entry.packets.push(got as u32);
        entry.data.extend_from_slice(&buf[..got]);
    }
    if entry.data.len() != n {
        return Err(Error::task(pid, format!("fd {fd}: {what}: read {} of {n} bytes in flight", entry.data.len())));
    }
    Ok(entry)
}

/// Fills a new pipe's write end `w` with what `d` holds; `packets`: write
/// each buffer as one packet.
pub(super) fn fill(w: BorrowedFd<'_>, d: &PipeDataEntry, packets: bool, what: &str) -> Result<()> {
    let e = |step: &str, err: crate::sys::Errno| Error::new(format!("{what}: {step}: {err}"));
    if d.size != 0 {
        let got = fs::fcntl_setpipe_sz(w, d.size as usize).map_err(|err| e("set its capacity", err))?;
        if got != d.size as usize {
            return Err(Error::new(format!("{what}: capacity {got} instead of {}", d.size)));
        }
    }
    if d.data.is_empty() {
        return Ok(());
    }
    let before = fs::fcntl_getfl(w).map_err(|err| e("F_GETFL", err))?;
    // Never block: the data fits the capacity it came from.
    let mut mode = before | SysFlags::O_NONBLOCK;
    if packets {
        mode |= SysFlags::O_DIRECT;
    }
    fs::fcntl_setfl(w, mode).map_err(|err| e("F_SETFL", err))?;
    if packets && !d.packets.is_empty() {
        let total: u64 = d.packets.iter().map(|&l| l as u64).sum();
        if total != d.data.len() as u64 {
            return Err(Error::new(format!("{what}: packet lengths add up to {total}, not {}", d.data.len())));
        }
        let mut at = 0usize;
        for &len in &d.packets {
            let chunk = &d.data[at..at + len as usize];
            let n = fs::write(w, chunk).map_err(|err| e("write its data back", err))?;
            if n != chunk.len() {
                return Err(Error::new(format!("{what}: short write of a packet ({n} of {})", chunk.len())));
            }
            at += len as usize;
        }
    } else {
        fs::write_all(w, &d.data).map_err(|err| e("write its data back", err))?;
    }
    fs::fcntl_setfl(w, before).map_err(|err| e("F_SETFL", err))?;
    Ok(())
}

/// Makes another open file description of the pipe behind `fd` with
/// `flags` (reopened through /proc, never blocking).
pub(super) fn reopen(fd: BorrowedFd<'_>, flags: OpenFlags, what: &str) -> Result<OwnedFd> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let access = flags & (OpenFlags::O_WRONLY | OpenFlags::O_RDWR);
    let f = fs::openat(
        None,
        &link,
        SysFlags::from_bits_retain(access.bits()) | SysFlags::O_NONBLOCK | SysFlags::O_CLOEXEC,
        0,
    )
    .map_err(|err| Error::new(format!("{what}: open another description: {err}")))?;
    Ok(f)
}

/// Sets a description's status flags (O_NONBLOCK, O_DIRECT, ...).
pub(super) fn set_flags(fd: BorrowedFd<'_>, flags: OpenFlags, what: &str) -> Result<()> {
    fs::fcntl_setfl(fd, SysFlags::from_bits_retain(flags.bits()))
        .map_err(|err| Error::new(format!("{what}: set flags {flags:?}: {err}")))
}

/// The pipe itself, when a process outside the tree still holds it (the
/// other end of a pipe a harness gave the tree, its stdin or stdout): each
/// description is opened again on that same pipe through the holder's
/// /proc entry, and nothing is written into it, since what was in flight
/// at dump is still there or was read since by that process. Pipe inodes
/// are not reused within a boot, so the same number is the same pipe.
/// False when no process holds it (a new pipe is made).
fn reattach(d: &PipeDataEntry, descs: &[&PipeEntry], what: &str, out: &mut Opened) -> Result<bool> {
    let want = format!("pipe:[{}]", d.ino);
    let Some((pid, fd)) = crate::proc::misc::find_fd_holder(|link, _, _| link == want.as_bytes()) else {
        return Ok(false);
    };
    let link = format!("/proc/{}/fd/{fd}", pid.0);
    for p in descs {
        let access = p.flags & (OpenFlags::O_WRONLY | OpenFlags::O_RDWR);
        let f = fs::openat(
            None,
            &link,
            SysFlags::from_bits_retain(access.bits()) | SysFlags::O_NONBLOCK | SysFlags::O_CLOEXEC,
            0,
        )
        .map_err(|err| Error::new(format!("{what}: open it again through process {pid}, which holds it: {err}")))?;
        set_flags(f.as_fd(), p.flags, what)?;
        out.add(p.id, f);
    }
    log::info!("{what}: process {pid} outside the tree still holds it: the tree gets the same pipe back");
    Ok(true)
}

/// Creates every pipe of the images with its data, and each description of
/// its ends.
pub fn open(_cx: &FdCtx, images: &FileImages, out: &mut Opened) -> Result<()> {
    for d in &images.pipe_data {
        // (Descriptions given with --inherit-fd are left alone.)
        let descs: Vec<&PipeEntry> = images.pipes.iter().filter(|p| p.pipe_id == d.pipe_id && !out.has(p.id)).collect();
        if descs.is_empty() {
            continue;
        }
        let what = format!("pipe:[{}]", d.ino);
        if d.tree_ends != 3 && reattach(d, &descs, &what, out)? {
            continue;
        }
        let (r, w) = fs::pipe2(SysFlags::O_CLOEXEC).map_err(|e| Error::new(format!("{what}: pipe2: {e}")))?;
        let packets = descs.iter().any(|p| p.flags.contains(OpenFlags::O_DIRECT));
        fill(w.as_fd(), d, packets, &what)?;
        let (mut first_r, mut first_w) = (true, true);
        for p in descs {
            let write_only = p.flags.contains(OpenFlags::O_WRONLY);
            let read_only = !p.flags.intersects(OpenFlags::O_WRONLY | OpenFlags::O_RDWR);
            let fd = if read_only && first_r {
                first_r = false;
                r.try_clone().map_err(|e| Error::new(format!("{what}: dup: {e}")))?
            } else if write_only && first_w {
                first_w = false;
                w.try_clone().map_err(|e| Error::new(format!("{what}: dup: {e}")))?
            } else {
                reopen(r.as_fd(), p.flags, &what)?
            };
            set_flags(fd.as_fd(), p.flags, &what)?;
            out.add(p.id, fd);
        }
    }
    Ok(())
}
