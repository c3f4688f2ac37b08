//! The restore pipeline (orchestration only).
//!
//! 1. Read and validate every image (inventory checksums, pids, the vDSO
//!    layout, files that must still be the same) before touching the system.
//! 2. Build the restorer's plan and pick a region for blob, plan and stack
//!    that overlaps neither crtools' mappings nor the task's.
//! 3. clone3 with set_tid = the dumped pid (retrying while the old task is
//!    still being reaped); the child waits until the engine has seized it,
//!    maps the region, copies the blob and the plan there and jumps in.
//! 4. The blob rebuilds the task and stops on its trap; the engine checks the
//!    report, sets registers, xsave state and signal mask through ptrace,
//!    unmaps the region with a remote syscall and lets the task go.
//!
//! Any failure kills the child: nothing half-restored is left running
//! (PTRACE_O_EXITKILL covers crtools itself dying on the way).
pub mod plan;

use crate::blobs;
use crate::error::{Context, Error, Result};
use crate::image::core::CoreEntry;
use crate::image::files::{FdinfoEntry, FileEntry};
use crate::image::mm::{MmEntry, Vma, VmaKind};
use crate::image::pagemap::{PagemapEntry, PagemapHead};
use crate::image::pstree::PstreeEntry;
use crate::image::reg_files::RegFileEntry;
use crate::image::{kinds, ImageDirReader};
use crate::infect::Tracee;
use crate::objects::{files, mm, task};
use crate::proc;
use crate::sys::clone::{clone3, CloneArgs, CloneFlags, CloneResult};
use crate::sys::ptrace::{self, UserRegs, NT_X86_XSTATE};
use crate::sys::wait::{self, WaitStatus};
use crate::sys::{Errno, Pid, Sysno};
use plan::PlanBuilder;
use restorer_plan as rp;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PAGE: u64 = 4096;
/// Highest user address + 1 with 4-level page tables.
const TASK_SIZE: u64 = 0x7fff_ffff_f000;
/// Lowest address we would put the region at.
const MIN_REGION_ADDR: u64 = 0x1000_0000;
/// How long to wait for a dumped pid to become free.
const PID_WAIT: Duration = Duration::from_secs(10);
const SIGTRAP: usize = 5;

/// What `crtools restore` was asked to do.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Root task to restore (`-t`).
    pub pid: Pid,
    /// Image directory (`-D`).
    pub dir: PathBuf,
    /// `-d`: return once the task runs instead of waiting for it.
    pub detach: bool,
}

/// Everything read from the images for one task.
struct TaskImages {
    pstree: PstreeEntry,
    core: CoreEntry,
    mm: MmEntry,
    vmas: Vec<Vma>,
    pagemap_head: PagemapHead,
    pagemap: Vec<PagemapEntry>,
    fds: files::FdTable,
}

fn read_images(dir: &ImageDirReader, pid: Pid) -> Result<TaskImages> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: crate::image::ImageError| Error::task(pid, format!("{what}: {err}"))
    };
    let (_, tree): ((), Vec<PstreeEntry>) =
        dir.open_image::<kinds::Pstree>(None).map_err(e("pstree"))?.collect_entries().map_err(e("pstree"))?;
    let pids: Vec<u32> = tree.iter().map(|t| t.pid).collect();
    let Some(pstree) = tree.iter().find(|t| t.pid == pid.0 as u32).cloned() else {
        return Err(Error::new(format!("pid {pid} is not in the images (they hold {pids:?})")));
    };
    if tree.len() > 1 {
        return Err(Error::new(format!(
            "the images hold a tree of {} tasks: restoring trees is not supported yet",
            tree.len()
        )));
    }
    if pstree.threads.len() > 1 {
        return Err(Error::task(pid, "multi-threaded restore is not supported yet"));
    }
    let id = Some(pid.0 as u32);
    let (core, ()) = dir
        .open_image::<kinds::Core>(id)
        .map_err(e("core"))?
        .collect_entries()
        .map(|(h, _)| (h, ()))
        .map_err(e("core"))?;
    let (mm, vmas) = dir.open_image::<kinds::Mm>(id).map_err(e("mm"))?.collect_entries().map_err(e("mm"))?;
    let (pagemap_head, pagemap) =
        dir.open_image::<kinds::Pagemap>(id).map_err(e("pagemap"))?.collect_entries().map_err(e("pagemap"))?;
    let (_, fdinfo): ((), Vec<FdinfoEntry>) =
        dir.open_image::<kinds::Fdinfo>(id).map_err(e("fdinfo"))?.collect_entries().map_err(e("fdinfo"))?;
    let (_, files_list): ((), Vec<FileEntry>) =
        dir.open_image::<kinds::Files>(None).map_err(e("files"))?.collect_entries().map_err(e("files"))?;
    let (_, reg): ((), Vec<RegFileEntry>) =
        dir.open_image::<kinds::RegFiles>(None).map_err(e("reg-files"))?.collect_entries().map_err(e("reg-files"))?;
    if core.tid != pid.0 as u32 || core.process.is_none() {
        return Err(Error::task(pid, "core image does not describe this thread-group leader"));
    }
    Ok(TaskImages {
        pstree,
        core,
        mm,
        vmas,
        pagemap_head,
        pagemap,
        fds: files::FdTable { fds: fdinfo, files: files_list, reg },
    })
}

/// The vDSO areas of this process, in address order: a forked child has
/// them at the same place.
fn own_vdso() -> Result<Vec<(VmaKind, u64, u64)>> {
    let me = Pid(std::process::id() as i32);
    let maps = proc::maps::read(me).ctx_global("read own maps")?;
    Ok(maps
        .iter()
        .filter_map(|m| {
            let k = match m.kind {
                proc::maps::MapKind::Vdso => VmaKind::Vdso,
                proc::maps::MapKind::Vvar => VmaKind::Vvar,
                proc::maps::MapKind::VvarVclock => VmaKind::VvarVclock,
                _ => return None,
            };
            Some((k, m.start, m.end - m.start))
        })
        .collect())
}

/// Picks the highest free range of `size` bytes, avoiding `busy` ranges.
fn pick_region(mut busy: Vec<(u64, u64)>, size: u64) -> Option<u64> {
    busy.sort();
    let mut top = TASK_SIZE;
    for &(s, e) in busy.iter().rev() {
        if e <= top && top - e >= size + 2 * PAGE {
            let start = (top - size - PAGE) & !(PAGE - 1);
            if start >= MIN_REGION_ADDR {
                return Some(start);
            }
        }
        top = top.min(s);
    }
    if top >= MIN_REGION_ADDR + size + PAGE {
        return Some((top - size - PAGE) & !(PAGE - 1));
    }
    None
}

/// Session and process-group part of the plan.
fn plan_session(b: &mut PlanBuilder, t: &PstreeEntry) -> Result<()> {
    let pid = Pid(t.pid as i32);
    let my_sid = crate::sys::misc::getsid(Pid(0)).ctx_global("getsid")?.0 as u32;
    let my_pgid = crate::sys::misc::getpgid(Pid(0)).ctx_global("getpgid")?.0 as u32;
    if t.sid == t.pid {
        if t.pgid != t.pid {
            return Err(Error::task(pid, "session leader outside its own process group"));
        }
        b.plan.flags |= rp::F_SETSID;
    } else if t.sid == my_sid {
        if t.pgid == t.pid {
            b.plan.flags |= rp::F_SETPGID;
            b.plan.pgid = 0;
        } else if t.pgid != my_pgid {
            b.plan.flags |= rp::F_SETPGID;
            b.plan.pgid = t.pgid as i32;
        }
    } else {
        return Err(Error::task(
            pid,
            format!(
                "was in session {} (process group {}), which is not part of the images; \
                 restore from that session, or dump a session leader",
                t.sid, t.pgid
            ),
        ));
    }
    Ok(())
}

/// Restores the task; returns its exit status when not detached.
pub fn restore(opts: &RestoreOptions) -> Result<i32> {
    let pid = opts.pid;
    let dir = ImageDirReader::open(&opts.dir).ctx_global("open images")?;
    dir.verify_all().ctx_global("verify images")?;
    let t = read_images(&dir, pid)?;
    let process = t.core.process.as_ref().expect("checked in read_images");
    use crate::image::core::TaskState;
    if !matches!(process.state, TaskState::Alive | TaskState::Stopped) {
        return Err(Error::task(pid, format!("task state {:?} cannot be restored yet", process.state)));
    }

    // The plan, before touching anything.
    let mut b = PlanBuilder::new();
    plan_session(&mut b, &t.pstree)?;
    task::plan(&mut b, pid, &t.core.thread, process, false)?;
    files::plan(&mut b, pid, &t.fds)?;
    let vdso = own_vdso()?;
    let late_pages = mm::plan(&mut b, pid, &t.mm, &t.vmas, &t.pagemap, &vdso)?;
    let pages = dir.open_pages(t.pagemap_head.pages_id).ctx(pid, "open the pages image")?;
    let max_fd = t.fds.fds.iter().map(|f| f.fd as i32).max().unwrap_or(2).max(2);
    b.plan.helper_fd_min = max_fd + 1;
    b.plan.pages_fd = max_fd + 1;
    b.plan.task_size = TASK_SIZE;

    let blob_len = blobs::restorer::MEM_SIZE as u64;
    let plan_off = (blob_len + PAGE - 1) & !(PAGE - 1);
    let arena_len = (b.size() as u64 + 4095) & !4095;
    let region_size = plan_off + arena_len + 4096 + rp::STACK_SIZE as u64;
    let me = Pid(std::process::id() as i32);
    let mut busy: Vec<(u64, u64)> =
        proc::maps::read(me).ctx_global("read own maps")?.iter().map(|m| (m.start, m.end)).collect();
    busy.extend(t.vmas.iter().map(|v| (v.start, v.end)));
    let region = pick_region(busy, region_size).ok_or_else(|| Error::task(pid, "no free range for the restorer"))?;
    b.plan.region_start = region;
    b.plan.region_end = region + region_size;
    let arena = b.finish();
    let mut image =
        blobs::relocate(blobs::restorer::IMAGE, blobs::restorer::MEM_SIZE, blobs::restorer::RELOCS, region).bytes;
    image.resize(plan_off as usize, 0);
    image.extend_from_slice(&arena);
    let plan_addr = region + plan_off;
    let stack_top = (region + region_size - 64) & !15;
    log::debug!("task {pid}: restorer region {region:#x}-{:#x}, plan {} bytes", region + region_size, arena.len());

    let (go_r, go_w) = crate::sys::fs::pipe2(crate::sys::fs::OpenFlags::O_CLOEXEC).ctx_global("pipe")?;
    let child = spawn(pid, &image, region, region_size, plan_addr, stack_top, &go_r, pages.fd(), b_pages_fd(&arena))?;
    drop(go_r);
    let result = finish(pid, child, &go_w, &t, plan_addr, pages.fd(), &late_pages);
    match result {
        Ok(()) => {}
        Err(e) => {
            let _ = crate::sys::signal::kill(pid, 9);
            let _ = wait::wait4(pid, wait::WALL);
            return Err(e);
        }
    }
    log::info!("task {pid}: restored");
    if opts.detach {
        return Ok(0);
    }
    loop {
        match wait::wait4(pid, 0).ctx(pid, "wait for the restored task")? {
            Some((_, WaitStatus::Exited(c))) => return Ok(c),
            Some((_, WaitStatus::Signaled(s, _))) => return Ok(128 + s),
            _ => continue,
        }
    }
}

fn b_pages_fd(arena: &[u8]) -> i32 {
    // SAFETY: the arena starts with a Plan written by PlanBuilder::finish.
    let p: rp::Plan = unsafe { std::ptr::read_unaligned(arena.as_ptr() as *const rp::Plan) };
    p.pages_fd
}

/// Forks the task with its pid. The child blocks on `go` until the engine
/// has seized it, then enters the restorer.
#[allow(clippy::too_many_arguments)]
fn spawn(
    pid: Pid,
    image: &[u8],
    region: u64,
    region_size: u64,
    plan_addr: u64,
    stack_top: u64,
    go: &OwnedFd,
    pages: BorrowedFd<'_>,
    pages_target: i32,
) -> Result<Tracee> {
    let tids = [pid];
    let deadline = Instant::now() + PID_WAIT;
    let args = CloneArgs::new(CloneFlags::empty()).exit_signal(17).set_tid(&tids);
    loop {
        // SAFETY: the child runs only `child_main`, which makes raw syscalls
        // on memory prepared before the fork and never returns.
        match unsafe { clone3(&args) } {
            Ok(CloneResult::Child) => {
                // SAFETY: see child_main's contract; all inputs were built before the fork.
                unsafe { child_main(image, region, region_size, plan_addr, stack_top, go.as_fd(), pages, pages_target) }
            }
            Ok(CloneResult::Parent { child, .. }) => {
                if child != pid {
                    let _ = crate::sys::signal::kill(child, 9);
                    return Err(Error::task(pid, format!("clone3 gave pid {child}")));
                }
                break;
            }
            Err(Errno::EEXIST) if Instant::now() < deadline => {
                // The dumped task may still be dying or waiting to be reaped.
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Errno::EEXIST) => return Err(Error::task(pid, "pid is in use by another process")),
            Err(e) => return Err(Error::task(pid, format!("clone3 with set_tid: {e}"))),
        }
    }
    let t = Tracee::seize_with(pid, ptrace::PTRACE_O_EXITKILL).ctx(pid, "seize the new task");
    if t.is_err() {
        let _ = crate::sys::signal::kill(pid, 9);
        let _ = wait::wait4(pid, wait::WALL);
    }
    t
}

/// The child's side of [`spawn`].
///
/// # Safety
/// Runs right after clone3 in the child: only raw syscalls on memory built
/// before the fork; never returns.
#[allow(clippy::too_many_arguments)]
unsafe fn child_main(
    image: &[u8],
    region: u64,
    region_size: u64,
    plan_addr: u64,
    stack_top: u64,
    go: BorrowedFd<'_>,
    pages: BorrowedFd<'_>,
    pages_target: i32,
) -> ! {
    use crate::sys::misc::exit_group;
    use crate::sys::mm::{MapFlags, ProtFlags};
    let mut msg = [0u8; 16];
    match crate::sys::fs::read(go, &mut msg) {
        Ok(16) => {}
        _ => exit_group(101),
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces anything.
    let got = unsafe {
        crate::sys::mm::mmap(
            region,
            region_size as usize,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE | ProtFlags::PROT_EXEC,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED_NOREPLACE,
            None,
            0,
        )
    };
    if got != Ok(region) {
        exit_group(102);
    }
    // SAFETY: the region was just mapped, writable, and is image.len() long at least.
    unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), region as *mut u8, image.len()) };
    // The engine's rseq registration, to be dropped before the unmap.
    // SAFETY: plan_addr points at the Plan just copied into the region.
    let plan = unsafe { &mut *(plan_addr as *mut rp::Plan) };
    plan.cur_rseq_ptr = u64::from_ne_bytes(msg[0..8].try_into().unwrap_or([0; 8]));
    plan.cur_rseq_len = u32::from_ne_bytes(msg[8..12].try_into().unwrap_or([0; 4]));
    plan.cur_rseq_sig = u32::from_ne_bytes(msg[12..16].try_into().unwrap_or([0; 4]));
    if pages.as_raw_fd() != pages_target {
        // SAFETY: the target number is above every descriptor the engine uses.
        match unsafe { crate::sys::fs::dup3(pages, pages_target, crate::sys::fs::OpenFlags::empty()) } {
            Ok(fd) => std::mem::forget(fd),
            Err(_) => exit_group(103),
        }
    }
    // SAFETY: blob mapped executable at region, stack inside the region.
    unsafe { crate::sys::arch::jump_to_blob(region + blobs::restorer::ENTRY as u64, plan_addr, stack_top) }
}

/// Lets the seized child run the restorer and completes the task.
fn finish(
    pid: Pid,
    mut t: Tracee,
    go: &OwnedFd,
    ti: &TaskImages,
    plan_addr: u64,
    pages: BorrowedFd<'_>,
    late_pages: &[rp::PageRun],
) -> Result<()> {
    let rseq = ptrace::get_rseq_config(pid).unwrap_or_default();
    let mut msg = [0u8; 16];
    msg[0..8].copy_from_slice(&rseq.rseq_abi_pointer.to_ne_bytes());
    msg[8..12].copy_from_slice(&rseq.rseq_abi_size.to_ne_bytes());
    msg[12..16].copy_from_slice(&rseq.signature.to_ne_bytes());
    crate::sys::fs::write_all(go.as_fd(), &msg).ctx(pid, "release the new task")?;
    let regs = t.run_restorer().ctx(pid, "restorer")?;
    let back = crate::sys::process_vm::read_vec(pid, plan_addr, std::mem::size_of::<rp::Plan>())
        .ctx(pid, "read the restorer's report")?;
    // SAFETY: Plan is plain data and `back` holds at least its size (checked by read_vec's length).
    if back.len() < std::mem::size_of::<rp::Plan>() {
        return Err(Error::task(pid, "short read of the restorer's report"));
    }
    // SAFETY: as above.
    let plan: rp::Plan = unsafe { std::ptr::read_unaligned(back.as_ptr() as *const rp::Plan) };
    let trap = plan.region_start + blobs::restorer::TRAP as u64 + 1;
    let f = plan.failure;
    if regs.rip != trap || f.ret < 0 {
        let errno =
            if f.ret < 0 { Errno::new(-f.ret as i32).to_string() } else { format!("stopped at {:#x}", regs.rip) };
        // What the detail is depends on the step.
        let detail = match f.step {
            s if s == rp::Step::Files as u32 => format!("fd {}", f.detail),
            s if s == rp::Step::SigActions as u32 || s == rp::Step::PendingSignals as u32 => {
                format!("signal {}", f.detail)
            }
            s if s == rp::Step::Rlimits as u32 => format!("resource {}", f.detail),
            s if s == rp::Step::PosixTimers as u32 => format!("timer {}", f.detail),
            _ => format!("detail {:#x}", f.detail),
        };
        return Err(Error::task(
            pid,
            format!("restorer failed at step '{}' ({detail}): {errno}", rp::Step::name(f.step)),
        ));
    }
    log::debug!("task {pid}: restorer done");
    mm::write_late_pages(pid, pages, late_pages)?;

    // Registers as dumped (restart states already rewritten at dump).
    let mut target: UserRegs = (&ti.core.thread.regs).into();
    target.orig_rax = u64::MAX;
    t.set_regs(&target).ctx(pid, "PTRACE_SETREGS")?;
    // SIGTRAP's action was left alone by the blob (its trap would have reset it).
    let process = ti.core.process.as_ref().expect("leader");
    if let Some(a) = process.sigactions.get(SIGTRAP - 1) {
        if a.handler != 0 || a.flags.bits() != 0 || a.mask != 0 {
            let act = [a.handler, a.flags.bits(), a.restorer, a.mask];
            let bytes: Vec<u8> = act.iter().flat_map(|w| w.to_ne_bytes()).collect();
            crate::sys::process_vm::write_all(pid, plan_addr, &bytes).ctx(pid, "write SIGTRAP action")?;
            let r = t.remote_syscall_ok(
                Sysno::rt_sigaction,
                [SIGTRAP as u64, plan_addr, 0, 8, 0, 0],
                "restore SIGTRAP action",
            );
            r.ctx(pid, "restore the SIGTRAP action")?;
        }
    }
    t.remote_syscall_ok(
        Sysno::munmap,
        [plan.region_start, plan.region_end - plan.region_start, 0, 0, 0, 0],
        "unmap the restorer",
    )
    .ctx(pid, "unmap the restorer")?;
    ptrace::set_regset(pid, NT_X86_XSTATE, &ti.core.thread.xsave.area).ctx(pid, "PTRACE_SETREGSET NT_X86_XSTATE")?;
    t.set_sigmask(ti.core.thread.sigmask).ctx(pid, "PTRACE_SETSIGMASK")?;
    if process.state == crate::image::core::TaskState::Stopped {
        // It was in group-stop at dump: it waits for SIGCONT again.
        t.detach_stopped().ctx(pid, "detach stopped")?;
    } else {
        t.detach().ctx(pid, "detach")?;
    }
    Ok(())
}
