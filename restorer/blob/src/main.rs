//! The restorer blob: the last stage of restore inside each task.
//!
//! Entered at offset 0 with `rdi` = the [`plan::Plan`] and `rsp` at the top
//! of the region's stack. It turns the forked engine process into the dumped
//! task: unmaps everything but its own region and the vDSO areas, moves the
//! vDSO areas back, maps every VMA, reads page data straight into place,
//! reopens files and restores the in-task state. Registers, the xsave state
//! and the final signal mask are set by the engine through ptrace once the
//! blob stops on its `int3` (see `restorer_plan`).
//!
//! # Rulebook for code in this blob
//! - It runs while the address space is being torn down: no std, no
//!   allocation, no reachable panic (the handler is `ud2`), nothing that
//!   reads memory outside its region after the unmap step.
//! - Soft-float target: the task's FPU state is never touched here.
//! - No addresses in statics: only the plan pointer the engine passes.
//! - Every failure returns to the entry stub with `failure.ret < 0` and the
//!   step and detail set, so the engine can name it.
#![no_std]
#![no_main]

use plan::{Plan, Step};
use restorer_plan as plan;

mod sys;

core::arch::global_asm!(
    ".section .text.entry,\"ax\",@progbits",
    ".globl __export_restorer_entry",
    "__export_restorer_entry:",
    "    call restorer_main",
    ".globl __export_restorer_trap",
    "__export_restorer_trap:",
    "    int3",
    "    ud2",
    // clone3(args = rdi, size = rsi) for a thread: the parent returns the
    // new tid; the new thread, on its own stack in the region, runs
    // f(arg) (rcx, rdx; kept in the callee-saved r13, r12) and then stops
    // on the trap below, where the engine gives it its registers (a task's
    // thread); the pages helper exits inside f instead.
    ".text",
    ".globl restorer_clone",
    "restorer_clone:",
    "    push r12",
    "    push r13",
    "    mov r12, rdx",
    "    mov r13, rcx",
    "    mov eax, 435",
    "    syscall",
    "    test rax, rax",
    "    jz 2f",
    "    pop r13",
    "    pop r12",
    "    ret",
    "2:",
    // The new thread, on its own 16-byte aligned stack.
    "    mov rdi, r12",
    "    call r13",
    ".globl __export_restorer_thread_trap",
    "__export_restorer_thread_trap:",
    "    int3",
    "    ud2",
);

extern "C" {
    /// See the assembly above.
    fn restorer_clone(args: *const u64, size: usize, arg: u64, f: unsafe extern "C" fn(u64)) -> i64;
}

/// The pages helper's work: the runs of the odd stripes, into place; then
/// it exits.
///
/// # Safety
/// `p` is the task's plan; the task's own thread reads only the other
/// runs and waits for this thread to exit before touching the plan's
/// helper fields.
unsafe extern "C" fn restorer_pages_helper(p: u64) {
    // SAFETY: guaranteed by the function contract.
    let plan = unsafe { &mut *(p as *mut Plan) };
    let cx = Ctx { base: p, plan };
    let runs: &[plan::PageRun] = cx.table(cx.plan.runs);
    if let Err((ret, at)) = read_runs(cx.plan, runs, true) {
        cx.plan.pages_helper_ret = ret;
        cx.plan.pages_helper_detail = at;
    }
    // This thread alone (exit, not exit_group): the kernel clears
    // pages_helper_running and wakes the task's thread.
    sys::exit_thread(0)
}

/// First code of a created thread: its own credentials.
///
/// # Safety
/// `entry` is this thread's entry in the plan's thread table.
unsafe extern "C" fn restorer_thread_main(entry: u64) {
    // SAFETY: guaranteed by the function contract; only this thread writes it.
    let e = unsafe { &mut *(entry as *mut plan::ThreadEntry) };
    // Its own policy, whatever it inherited from the thread that made it.
    let p = e.mempolicy;
    let r = sys::set_mempolicy(p.mode, &p.nodes);
    if r < 0 {
        e.failed_step = plan::THREAD_MEMPOLICY_STEP;
        e.ret = r;
        return;
    }
    match apply_creds(&e.creds) {
        Ok(()) => e.ret = 0,
        Err((step, ret)) => {
            e.failed_step = step;
            e.ret = ret;
        }
    }
}

const PAGE: u64 = 4096;
const SIGKILL: usize = 9;
const SIGSTOP: usize = 19;
const SIGTRAP: usize = 5;
const PR_SET_NAME: u32 = 15;
const PR_SET_DUMPABLE: u32 = 4;
const PR_SET_MDWE: u32 = 65;
const PR_SET_PDEATHSIG: u32 = 1;
const PR_SET_CHILD_SUBREAPER: u32 = 36;
const PR_SET_NO_NEW_PRIVS: u32 = 38;
const PR_SET_MM: u32 = 35;
const PR_SET_MM_MAP: u64 = 14;
const PR_TIMER_CREATE_RESTORE_IDS: u32 = 77;
const MADV_DONTFORK: i32 = 10;
const MADV_WIPEONFORK: i32 = 18;
const MADV_HUGEPAGE: i32 = 14;
const MADV_NOHUGEPAGE: i32 = 15;
const MADV_DONTDUMP: i32 = 16;
const MADV_MERGEABLE: i32 = 12;
const MADV_SEQUENTIAL: i32 = 2;
const MADV_RANDOM: i32 = 1;
const MADV_GUARD_INSTALL: i32 = 102;
const MLOCK_ONFAULT: u32 = 1;
const MCL_FUTURE: u32 = 2;
const MCL_ONFAULT: u32 = 4;
const PR_SET_THP_DISABLE: u32 = 41;
const PR_GET_THP_DISABLE: u32 = 42;
const PR_SET_MEMORY_MERGE: u32 = 67;

struct Fail;

struct Ctx<'a> {
    plan: &'a mut Plan,
    base: u64,
}

impl Ctx<'_> {
    /// Records step `s`; fails it if the engine asked for that (fault injection).
    fn step(&mut self, s: Step) -> Result<(), Fail> {
        self.plan.failure.step = s as u32;
        self.plan.failure.detail = 0;
        if self.plan.fault_step == s as u32 {
            self.plan.failure.ret = -sys::ECANCELED;
            return Err(Fail);
        }
        Ok(())
    }
    /// Checks a raw result; on error records it with `detail`.
    fn ck(&mut self, r: i64, detail: u64) -> Result<i64, Fail> {
        if r < 0 && r > -4096 {
            self.plan.failure.ret = r;
            self.plan.failure.detail = detail;
            Err(Fail)
        } else {
            Ok(r)
        }
    }
    fn at<T>(&self, off: u64) -> *const T {
        (self.base + off) as *const T
    }
    fn str(&self, s: plan::Str) -> *const u8 {
        self.at(s.off)
    }
    fn table<T>(&self, t: plan::Table) -> &'static [T] {
        if t.nr == 0 {
            return &[];
        }
        // SAFETY: the engine laid out `nr` entries of T at base + off inside
        // the plan, which lives in the region the blob never unmaps.
        unsafe { core::slice::from_raw_parts(self.at::<T>(t.off), t.nr as usize) }
    }
}

/// Restores the task described by `p`.
///
/// # Safety
/// `p` points at a plan the engine built, inside the blob's region.
#[no_mangle]
pub unsafe extern "C" fn restorer_main(p: *mut Plan) {
    // SAFETY: guaranteed by the function contract.
    let plan = unsafe { &mut *p };
    plan.failure = plan::Failure { magic: plan::MAGIC, step: Step::Validate as u32, ret: 0, detail: 0 };
    if plan.magic != plan::MAGIC || plan.version != plan::VERSION {
        plan.failure.ret = -sys::EINVAL;
        return;
    }
    let mut cx = Ctx { base: p as u64, plan };
    if run(&mut cx).is_ok() {
        cx.plan.failure.ret = 0;
        cx.plan.failure.step = Step::Finish as u32;
    }
}

fn run(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::Signals)?;
    // Everything stays blocked until the engine sets the final mask, except
    // SIGTRAP: a blocked SIGTRAP would reset its handler when we trap.
    let r = sys::rt_sigprocmask_set(!(1u64 << (SIGTRAP - 1)));
    cx.ck(r, 0)?;
    if cx.plan.cur_rseq_ptr != 0 {
        // The engine's own rseq area is about to be unmapped.
        let r = sys::rseq(cx.plan.cur_rseq_ptr, cx.plan.cur_rseq_len, sys::RSEQ_FLAG_UNREGISTER, cx.plan.cur_rseq_sig);
        cx.ck(r, cx.plan.cur_rseq_ptr)?;
    }

    cx.step(Step::Session)?;
    if cx.plan.flags & plan::F_SETSID != 0 {
        let r = sys::setsid();
        cx.ck(r, 0)?;
    } else if cx.plan.flags & plan::F_SETPGID != 0 {
        let r = sys::setpgid(0, cx.plan.pgid);
        cx.ck(r, cx.plan.pgid as u64)?;
    }

    // By the task itself (the kernel refuses anyone else), while /proc is
    // still reachable (before chroot) and before its threads exist (they
    // inherit it) and its credentials drop.
    loginuid(cx)?;

    unmap_all(cx)?;
    move_vdso(cx)?;

    cx.step(Step::Personality)?;
    let r = sys::personality(cx.plan.personality);
    cx.ck(r, cx.plan.personality as u64)?;

    map_vmas(cx)?;
    zap(cx)?;
    mempolicies(cx)?;
    read_pages(cx)?;
    lazy_pages(cx)?;
    protect_vmas(cx)?;
    guards(cx)?;
    // Before the files (its /dev/null descriptor is closed again) and the
    // chroot (which may hide /dev/null); the contexts belong to the address
    // space, which the threads created later share.
    aio(cx)?;
    reopen_files(cx)?;

    // The executable's path is as the engine's root sees it: opened before
    // the chroot, for PR_SET_MM_MAP below.
    let mut exe_fd: i64 = -1;
    if cx.plan.flags & plan::F_MM_MAP != 0 && cx.plan.exe.off != 0 {
        cx.step(Step::MmMap)?;
        exe_fd = sys::open(cx.str(cx.plan.exe), sys::O_RDONLY);
        cx.ck(exe_fd, 1)?;
    }

    cx.step(Step::Cwd)?;
    // A task sharing its parent's fs information leaves it to the group's first.
    let own_fs = cx.plan.flags & plan::F_SHARED_FS == 0;
    // Both paths are as the engine's root sees them: chdir first, then
    // chroot, which leaves the working directory where it is.
    if own_fs && cx.plan.cwd.off != 0 {
        let r = sys::chdir(cx.str(cx.plan.cwd));
        cx.ck(r, 0)?;
    }
    if own_fs && cx.plan.root.off != 0 {
        let r = sys::chroot(cx.str(cx.plan.root));
        cx.ck(r, 1)?;
    }

    cx.step(Step::SigActions)?;
    for sig in 1..=plan::NSIG {
        // SIGTRAP's action is put back by the engine after the final trap.
        if sig == SIGKILL || sig == SIGSTOP || sig == SIGTRAP || cx.plan.sigactions_valid & (1 << (sig - 1)) == 0 {
            continue;
        }
        let act = &cx.plan.sigactions[sig - 1] as *const plan::SigAction as *const u8;
        let r = sys::rt_sigaction(sig as i32, act);
        cx.ck(r, sig as u64)?;
    }

    cx.step(Step::ITimers)?;
    for which in 0..3 {
        let it = &cx.plan.itimers[which] as *const plan::ITimer as *const u8;
        let r = sys::setitimer(which as i32, it);
        cx.ck(r, which as u64)?;
    }


    cx.step(Step::Rlimits)?;
    for res in 0..plan::NLIMITS {
        if cx.plan.rlimits_valid & (1 << res) == 0 {
            continue;
        }
        let rl = &cx.plan.rlimits[res] as *const plan::Rlimit as *const u8;
        let r = sys::prlimit(res as u32, rl);
        cx.ck(r, res as u64)?;
    }
    // Within the task's own RLIMIT_MEMLOCK, with the credentials it has
    // now (set last): what was locked at dump fitted them.
    mlock(cx)?;
    mm_flags(cx)?;

    cx.step(Step::Prctl)?;
    if cx.plan.xcomp_req != 0 {
        // The dynamic xsave feature (AMX) the process was permitted, before
        // any of its threads exists and its registers are set.
        const ARCH_REQ_XCOMP_PERM: u64 = 0x1023;
        let r = sys::arch_prctl(ARCH_REQ_XCOMP_PERM, cx.plan.xcomp_req as u64);
        cx.ck(r, ARCH_REQ_XCOMP_PERM)?;
    }
    if own_fs {
        let r = sys::umask(cx.plan.umask);
        cx.ck(r, 0)?;
    }
    let comm = cx.plan.comm.as_ptr() as u64;
    let r = sys::prctl(PR_SET_NAME, comm, 0, 0, 0);
    cx.ck(r, 1)?;
    if cx.plan.flags & plan::F_CHILD_SUBREAPER != 0 {
        let r = sys::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        cx.ck(r, 3)?;
    }
    if cx.plan.flags & plan::F_NO_NEW_PRIVS != 0 {
        let r = sys::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        cx.ck(r, 4)?;
    }

    if cx.plan.flags & plan::F_MM_MAP != 0 {
        cx.step(Step::MmMap)?;
        cx.plan.mm.exe_fd = exe_fd as u32;
        cx.plan.mm.auxv = cx.base + cx.plan.auxv.off;
        cx.plan.mm.auxv_size = (cx.plan.auxv.nr * 8) as u32;
        let mm = &cx.plan.mm as *const plan::MmMap as u64;
        let r = sys::prctl(PR_SET_MM, PR_SET_MM_MAP, mm, core::mem::size_of::<plan::MmMap>() as u64, 0);
        if exe_fd >= 0 {
            sys::close(exe_fd as i32);
        }
        cx.ck(r, 2)?;
    }

    cx.step(Step::AltStack)?;
    let ss = [cx.plan.altstack_sp, cx.plan.altstack_flags as u64, cx.plan.altstack_size];
    let r = sys::sigaltstack(ss.as_ptr() as *const u8);
    cx.ck(r, 0)?;
    sys::set_tid_address(cx.plan.clear_child_tid);

    if cx.plan.flags & plan::F_RSEQ != 0 {
        cx.step(Step::Rseq)?;
        let r = sys::rseq(cx.plan.rseq_ptr, cx.plan.rseq_len, 0, cx.plan.rseq_sig);
        cx.ck(r, cx.plan.rseq_ptr)?;
    }

    if cx.plan.robust_head != 0 {
        cx.step(Step::RobustList)?;
        let r = sys::set_robust_list(cx.plan.robust_head, cx.plan.robust_len);
        cx.ck(r, cx.plan.robust_head)?;
    }

    membarrier(cx)?;
    pending_signals(cx)?;
    // Threads share everything but their registers, which the engine sets.
    // Credentials are per thread: the engine sets the other threads' own.
    create_threads(cx)?;
    // After the threads: a timer may signal one of them (SIGEV_THREAD_ID,
    // as glibc's SIGEV_THREAD timers do), which must exist to be named.
    // Signals stay blocked until the engine sets the final masks.
    posix_timers(cx)?;
    // Before the credentials drop what installing needs (CAP_SYS_ADMIN
    // when the task has no no_new_privs), after the threads so that TSYNC
    // gives them the same filters. The engine traces the tree with the
    // filters suspended until it lets it go.
    seccomp(cx)?;
    creds(cx)?;
    // After the credentials: changing them clears the parent-death signal
    // (a task of another uid lost it: zdtm pdeath_sig).
    let r = sys::prctl(PR_SET_PDEATHSIG, cx.plan.pdeathsig as u64, 0, 0, 0);
    cx.ck(r, 2)?;

    if cx.plan.mdwe != 0 {
        // Last of the mappings' business: it forbids what came before.
        cx.step(Step::Mdwe)?;
        let r = sys::prctl(PR_SET_MDWE, cx.plan.mdwe as u64, 0, 0, 0);
        cx.ck(r, 0)?;
    }

    cx.step(Step::Finish)?;
    // Dumpable last: with 0 the engine still holds ptrace, nothing else needs /proc.
    let r = sys::prctl(PR_SET_DUMPABLE, cx.plan.dumpable as u64, 0, 0, 0);
    cx.ck(r, 0)?;
    if cx.plan.flags & plan::F_KEEP_HELPERS == 0 {
        let r = sys::close_range(cx.plan.helper_fd_min as u32, u32::MAX);
        cx.ck(r, 0)?;
    }
    Ok(())
}

/// Unmaps everything but the region and the vDSO areas.
fn unmap_all(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::Unmap)?;
    // Kept: the region, the vDSO areas and the engine's list (inherited objects).
    const MAX_KEEP: usize = plan::MAX_KEEP + 1 + plan::MAX_VDSO;
    let mut keep = [(0u64, 0u64); MAX_KEEP];
    let mut n = 0;
    keep[n] = (cx.plan.region_start, cx.plan.region_end);
    n += 1;
    for i in 0..(cx.plan.nr_vdso as usize).min(plan::MAX_VDSO) {
        let v = cx.plan.vdso[i];
        keep[n] = (v.from, v.from + v.len);
        n += 1;
    }
    let listed: &[[u64; 2]] = cx.table(cx.plan.keep);
    if n + listed.len() > MAX_KEEP {
        cx.plan.failure.ret = -sys::EINVAL;
        cx.plan.failure.detail = listed.len() as u64;
        return Err(Fail);
    }
    for &[s, e] in listed {
        keep[n] = (s, e);
        n += 1;
    }
    // Insertion sort: a few dozen entries at most.
    for i in 1..n {
        let mut j = i;
        while j > 0 && keep[j - 1].0 > keep[j].0 {
            keep.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut cursor = 0u64;
    for &(s, e) in &keep[..n] {
        if s > cursor {
            let r = sys::munmap(cursor, s - cursor);
            cx.ck(r, cursor)?;
        }
        if e > cursor {
            cursor = e;
        }
    }
    if cx.plan.task_size > cursor {
        let r = sys::munmap(cursor, cx.plan.task_size - cursor);
        cx.ck(r, cursor)?;
    }
    Ok(())
}

/// Moves the vDSO areas to where the dumped task had them. All move by the
/// same distance, so going against the direction of travel never lands one
/// area on another that has not moved yet.
fn move_vdso(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::Vdso)?;
    let n = (cx.plan.nr_vdso as usize).min(plan::MAX_VDSO);
    let up = n > 0 && cx.plan.vdso[0].to > cx.plan.vdso[0].from;
    for k in 0..n {
        let i = if up { n - 1 - k } else { k };
        let v = cx.plan.vdso[i];
        if v.from == v.to {
            continue;
        }
        let r = sys::mremap_fixed(v.from, v.len, v.to);
        cx.ck(r, v.from)?;
    }
    Ok(())
}

fn map_vmas(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::MapVma)?;
    let vmas: &[plan::Vma] = cx.table(cx.plan.vmas);
    for (i, v) in vmas.iter().enumerate() {
        let len = v.end - v.start;
        let fill_prot = if v.flags & plan::VF_FINAL_PROT != 0 { v.prot } else { sys::PROT_READ | sys::PROT_WRITE };
        let fixed = sys::MAP_FIXED | v.map_flags;
        let r = match v.kind {
            k if k == plan::VmaKind::AnonPrivate as u32 && v.shm_addr != 0 => {
                // The engine's copy, still shared copy-on-write with the
                // relatives that share these pages: moved, not copied.
                sys::mremap_fixed(v.shm_addr, len, v.start)
            }
            k if k == plan::VmaKind::AnonPrivate as u32 => {
                // MAP_DROPPABLE (in map_flags) is a map type of its own.
                let ty = if v.map_flags & sys::MAP_DROPPABLE != 0 { 0 } else { sys::MAP_PRIVATE };
                sys::mmap(v.start, len, fill_prot, ty | sys::MAP_ANONYMOUS | fixed, -1, 0)
            }
            k if k == plan::VmaKind::AnonShared as u32 && v.shm_size != 0 => {
                if vmas[..i].iter().any(|w| w.shm_id == v.shm_id) {
                    continue; // mapped with the first VMA of its object
                }
                map_shm_object(cx, vmas, i)?;
                continue;
            }
            k if k == plan::VmaKind::AnonShared as u32 => {
                sys::mmap(v.start, len, fill_prot, sys::MAP_SHARED | sys::MAP_ANONYMOUS | fixed, -1, 0)
            }
            k if k == plan::VmaKind::SysvShm as u32 => {
                if v.flags & plan::VF_SHM_ATTACH == 0 {
                    continue; // inside the attachment of a VMA before it
                }
                // The whole segment, at the dumped address (the address
                // space is empty there: unmap_all), with the dumped flags;
                // mprotect and madvise later split it as it was.
                let mut flags = 0;
                if v.flags & plan::VF_SHM_RDONLY != 0 {
                    flags |= sys::SHM_RDONLY;
                }
                if v.flags & plan::VF_SHM_EXEC != 0 {
                    flags |= sys::SHM_EXEC;
                }
                sys::shmat(v.shm_id as i32, v.start, flags)
            }
            k if k == plan::VmaKind::FilePrivate as u32 || k == plan::VmaKind::FileShared as u32 => {
                let fd = sys::open(cx.str(v.path), v.open_flags);
                cx.ck(fd, v.start)?;
                if v.flags & plan::VF_FLOCK != 0 {
                    // The mapping's description held a flock lock: taken
                    // on the one the mapping keeps (a conflicting holder
                    // fails the restore, EWOULDBLOCK).
                    const LOCK_SH: u32 = 1;
                    const LOCK_EX: u32 = 2;
                    const LOCK_NB: u32 = 4;
                    let op = if v.flags & plan::VF_FLOCK_EX != 0 { LOCK_EX } else { LOCK_SH };
                    let r = sys::flock(fd as i32, op | LOCK_NB);
                    if r < 0 {
                        sys::close(fd as i32);
                        cx.ck(r, v.start)?;
                    }
                }
                let (prot, share) = if k == plan::VmaKind::FilePrivate as u32 {
                    (fill_prot, sys::MAP_PRIVATE)
                } else {
                    (v.prot, sys::MAP_SHARED)
                };
                let r = sys::mmap(v.start, len, prot, share | fixed, fd as i32, v.pgoff);
                sys::close(fd as i32);
                r
            }
            _ => -sys::EINVAL,
        };
        cx.ck(r, v.start)?;
        if r as u64 != v.start {
            cx.plan.failure.ret = -sys::EINVAL;
            cx.plan.failure.detail = v.start;
            return Err(Fail);
        }
    }
    Ok(())
}

/// Creates the shared memory object of `vmas[first]` and maps it into every
/// VMA with the same `shm_id`, each at its own offset. The object is made as
/// a plain MAP_SHARED|MAP_ANONYMOUS mapping of `shm_size` bytes (so it is
/// the same kind of object, `/dev/zero (deleted)`), reopened through
/// /proc/self/map_files and unmapped again.
fn map_shm_object(cx: &mut Ctx, vmas: &[plan::Vma], first: usize) -> Result<(), Fail> {
    const O_RDWR: u32 = 2;
    const MAP_NORESERVE: u32 = 0x4000;
    // MAP_HUGETLB and its MAP_HUGE_* page size (bits 26..32): a hugetlb
    // object is made as one.
    const MAP_HUGE: u32 = 0x40000 | (0x3f << 26);
    let v = vmas[first];
    let rw = sys::PROT_READ | sys::PROT_WRITE;
    // An object shared with other processes is already mapped (inherited).
    let tmp = if v.shm_addr != 0 {
        v.shm_addr as i64
    } else {
        sys::mmap(0, v.shm_size, rw, sys::MAP_SHARED | sys::MAP_ANONYMOUS | (v.map_flags & (MAP_NORESERVE | MAP_HUGE)), -1, 0)
    };
    cx.ck(tmp, v.start)?;
    let tmp = tmp as u64;
    let mut path = [0u8; 64];
    let mut n = 0;
    for &b in b"/proc/self/map_files/" {
        path[n] = b;
        n += 1;
    }
    n = put_hex(&mut path, n, tmp);
    path[n] = b'-';
    n = put_hex(&mut path, n + 1, tmp + v.shm_size);
    path[n] = 0;
    let fd = sys::open(path.as_ptr(), O_RDWR);
    let r = sys::munmap(tmp, v.shm_size);
    cx.ck(fd, v.start)?;
    if let Err(f) = cx.ck(r, tmp) {
        sys::close(fd as i32);
        return Err(f);
    }
    for w in vmas[first..].iter().filter(|w| w.kind == v.kind && w.shm_id == v.shm_id) {
        // A private mapping of the object gets its own copies written
        // over it later; one never writable is mapped as it was.
        let (share, prot) = if w.map_flags & plan::MAP_PRIVATE_SHM != 0 {
            (sys::MAP_PRIVATE, if w.flags & plan::VF_FINAL_PROT != 0 { w.prot } else { rw })
        } else {
            (sys::MAP_SHARED, rw)
        };
        let flags = share | sys::MAP_FIXED | (w.map_flags & !plan::MAP_PRIVATE_SHM);
        let r = sys::mmap(w.start, w.end - w.start, prot, flags, fd as i32, w.pgoff);
        if r as u64 != w.start {
            sys::close(fd as i32);
            cx.plan.failure.ret = if r < 0 { r } else { -sys::EINVAL };
            cx.plan.failure.detail = w.start;
            return Err(Fail);
        }
    }
    sys::close(fd as i32);
    Ok(())
}

/// Writes `x` in lower-case hex without leading zeros at `buf[at..]`;
/// returns the index after the last digit. `buf` has room (paths of at most
/// 16 + 1 + 16 digits after a short prefix).
fn put_hex(buf: &mut [u8; 64], mut at: usize, x: u64) -> usize {
    let digits = if x == 0 { 1 } else { (64 - x.leading_zeros() as usize).div_ceil(4) };
    for i in (0..digits).rev() {
        let d = ((x >> (i * 4)) & 0xf) as u8;
        if at < buf.len() {
            buf[at] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        }
        at += 1;
    }
    at.min(buf.len() - 1)
}

/// The VMAs' NUMA memory policies (mbind) and the thread's own
/// (set_mempolicy, len 0), before the pages are read into place.
fn mempolicies(cx: &mut Ctx) -> Result<(), Fail> {
    let pols: &[plan::MemPolicy] = cx.table(cx.plan.mempolicies);
    if pols.is_empty() {
        return Ok(());
    }
    cx.step(Step::MemPolicy)?;
    for p in pols {
        let r = if p.len == 0 { sys::set_mempolicy(p.mode, &p.nodes) } else { sys::mbind(p.start, p.len, p.mode, &p.nodes) };
        cx.ck(r, p.start)?;
    }
    Ok(())
}

fn read_pages(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::ReadPages)?;
    let runs: &[plan::PageRun] = cx.table(cx.plan.runs);
    let helped = cx.plan.pages_helper_tid != 0 && start_pages_helper(cx);
    // With a helper, the even stripes only; else every run.
    let mine = if helped { read_runs(cx.plan, runs, false) } else { read_all(cx.plan, runs) };
    if helped {
        // Until the kernel clears the word at the helper's exit.
        loop {
            // SAFETY: a u32 of the plan the kernel writes at the helper's exit.
            let v = unsafe { core::ptr::read_volatile(&cx.plan.pages_helper_running) };
            if v == 0 {
                break;
            }
            sys::futex_wait(&cx.plan.pages_helper_running, v);
        }
        if cx.plan.pages_helper_ret < 0 {
            cx.plan.failure.ret = cx.plan.pages_helper_ret;
            cx.plan.failure.detail = cx.plan.pages_helper_detail;
            return Err(Fail);
        }
    }
    if let Err((ret, at)) = mine {
        cx.plan.failure.ret = ret;
        cx.plan.failure.detail = at;
        return Err(Fail);
    }
    Ok(())
}

/// Starts the pages helper (see [`plan::Plan::pages_helper_tid`]); false,
/// and the tid cleared, if it could not be created.
fn start_pages_helper(cx: &mut Ctx) -> bool {
    // CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM,
    // CLONE_CHILD_CLEARTID, CLONE_UNTRACED (the engine does not see it).
    const FLAGS: u64 = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000 | 0x200000 | 0x800000;
    cx.plan.pages_helper_running = 1;
    cx.plan.pages_helper_ret = 0;
    let tid = [cx.plan.pages_helper_tid];
    let word = &cx.plan.pages_helper_running as *const u32 as u64;
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
    // stack, stack_size, tls, set_tid, set_tid_size, cgroup.
    let args: [u64; 11] =
        [FLAGS, 0, word, 0, 0, cx.plan.pages_helper_stack, plan::THREAD_STACK, 0, tid.as_ptr() as u64, 1, 0];
    let p: *mut Plan = cx.plan;
    // SAFETY: the new thread runs restorer_pages_helper on its own stack
    // inside the region, then exits; `args` and `tid` live until the
    // syscall returns in this thread.
    let r = unsafe { restorer_clone(args.as_ptr(), core::mem::size_of_val(&args), p as u64, restorer_pages_helper) };
    if r <= 0 {
        cx.plan.pages_helper_running = 0;
        cx.plan.pages_helper_tid = 0;
        return false;
    }
    true
}

/// Reads every run into place.
fn read_all(plan: &Plan, runs: &[plan::PageRun]) -> Result<(), (i64, u64)> {
    read_runs(plan, runs, false)?;
    read_runs(plan, runs, true)
}

/// Reads the runs of the odd (`odd`) or even stripes into place; Err: the
/// failed pread's result (negative errno, or -EIO for an image shorter
/// than its pagemap) and the address.
fn read_runs(plan: &Plan, runs: &[plan::PageRun], odd: bool) -> Result<(), (i64, u64)> {
    for run in runs.iter().filter(|r| (r.stripe % 2 == 1) == odd) {
        let fd = plan.pages_fds[run.stripe as usize % plan::MAX_STRIPES];
        let mut done = 0u64;
        while done < run.len {
            let r = sys::pread(fd, run.vaddr + done, run.len - done, run.file_off + done);
            if r < 0 {
                return Err((r, run.vaddr + done));
            }
            if r == 0 {
                // The pages image is shorter than the pagemap says.
                return Err((-sys::EIO, run.vaddr + done));
            }
            done += r as u64;
        }
    }
    Ok(())
}

/// Hands the lazy VMAs to the lazy-pages server: a new userfaultfd
/// (missing mode, with the events that keep the server's view of the
/// address space right: fork, mremap, MADV_DONTNEED/REMOVE, munmap),
/// the ranges registered, the descriptor sent with the pid. From here on
/// a touch of a page not copied in yet waits for the server.
fn lazy_pages(cx: &mut Ctx) -> Result<(), Fail> {
    let lazy: &[[u64; 2]] = cx.table(cx.plan.lazy);
    if lazy.is_empty() {
        return Ok(());
    }
    cx.step(Step::LazyPages)?;
    // O_CLOEXEC | O_NONBLOCK: the server polls it.
    let uffd = sys::userfaultfd(sys::O_CLOEXEC | sys::O_NONBLOCK);
    cx.ck(uffd, 0)?;
    let uffd = uffd as i32;
    let mut api: [u64; 3] = [0xAA, plan::LAZY_UFFD_FEATURES, 0];
    let r = sys::ioctl(uffd, UFFDIO_API, api.as_mut_ptr() as u64);
    cx.ck(r, 1)?;
    for &[s, e] in lazy {
        // struct uffdio_register: range (start, len), mode, ioctls (out).
        let mut reg: [u64; 4] = [s, e - s, UFFDIO_REGISTER_MODE_MISSING, 0];
        let r = sys::ioctl(uffd, UFFDIO_REGISTER, reg.as_mut_ptr() as u64);
        cx.ck(r, s)?;
    }
    let pid = cx.plan.pid.to_ne_bytes();
    let r = sys::send_fd(cx.plan.lazy_sock, &pid, uffd);
    cx.ck(r, 2)?;
    sys::close(uffd);
    Ok(())
}

/// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
const UFFDIO_API: u64 = 0xc018_aa3f;
/// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: u64 = 0xc020_aa00;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

fn protect_vmas(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::Protect)?;
    let vmas: &[plan::Vma] = cx.table(cx.plan.vmas);
    for v in vmas {
        let len = v.end - v.start;
        if v.kind != plan::VmaKind::FileShared as u32
            && v.flags & plan::VF_FINAL_PROT == 0
            && v.prot != sys::PROT_READ | sys::PROT_WRITE
        {
            let r = sys::mprotect(v.start, len, v.prot);
            cx.ck(r, v.start)?;
        }
        for (bit, adv) in [
            (plan::ADV_DONTFORK, MADV_DONTFORK),
            (plan::ADV_WIPEONFORK, MADV_WIPEONFORK),
            (plan::ADV_HUGEPAGE, MADV_HUGEPAGE),
            (plan::ADV_NOHUGEPAGE, MADV_NOHUGEPAGE),
            (plan::ADV_DONTDUMP, MADV_DONTDUMP),
            (plan::ADV_MERGEABLE, MADV_MERGEABLE),
            (plan::ADV_SEQUENTIAL, MADV_SEQUENTIAL),
            (plan::ADV_RANDOM, MADV_RANDOM),
        ] {
            if v.advice & bit != 0 {
                let r = sys::madvise(v.start, len, adv);
                cx.ck(r, v.start)?;
            }
        }
    }
    Ok(())
}

/// Drops what a task does not share of a copy it moved in.
fn zap(cx: &mut Ctx) -> Result<(), Fail> {
    const MADV_DONTNEED: i32 = 4;
    let zap: &[[u64; 2]] = cx.table(cx.plan.zap);
    for &[s, e] in zap {
        let r = sys::madvise(s, e - s, MADV_DONTNEED);
        cx.ck(r, s)?;
    }
    Ok(())
}

/// Installs the guard regions: after the pages are read (a guard page
/// holds none, and installing zaps whatever is there) and the VMAs are
/// split by their protections and advice (the kernel marks the VMA that
/// gets guards "gu", and the mark sticks through merges and splits);
/// before mlock (the kernel refuses guards in locked VMAs).
fn guards(cx: &mut Ctx) -> Result<(), Fail> {
    let guards: &[[u64; 2]] = cx.table(cx.plan.guards);
    if guards.is_empty() {
        return Ok(());
    }
    cx.step(Step::Guards)?;
    for &[s, e] in guards {
        let r = sys::madvise(s, e - s, MADV_GUARD_INSTALL);
        cx.ck(r, s)?;
    }
    Ok(())
}

/// Locks the VMAs that were locked (MLOCK_ONFAULT where they were so).
fn mlock(cx: &mut Ctx) -> Result<(), Fail> {
    let vmas: &[plan::Vma] = cx.table(cx.plan.vmas);
    if !vmas.iter().any(|v| v.advice & plan::ADV_LOCKED != 0) {
        return Ok(());
    }
    cx.step(Step::Mlock)?;
    for v in vmas.iter().filter(|v| v.advice & plan::ADV_LOCKED != 0) {
        let onfault = v.advice & plan::ADV_LOCKONFAULT != 0;
        let len = v.end - v.start;
        if v.prot == 0 {
            // mlock marks a PROT_NONE VMA locked, then fails to populate it
            // (ENOMEM, like a limit). Lock it on fault first, which checks
            // the limit and populates nothing, then drop MLOCK_ONFAULT: that
            // call's populate error is the only one it can have.
            let r = sys::mlock2(v.start, len, MLOCK_ONFAULT);
            cx.ck(r, v.start)?;
            if !onfault {
                sys::mlock2(v.start, len, 0);
            }
            continue;
        }
        let r = sys::mlock2(v.start, len, if onfault { MLOCK_ONFAULT } else { 0 });
        cx.ck(r, v.start)?;
    }
    Ok(())
}

/// Address-space settings: mlockall(MCL_FUTURE) (the VMAs mapped so far
/// keep their own state), PR_SET_THP_DISABLE, PR_SET_MEMORY_MERGE.
fn mm_flags(cx: &mut Ctx) -> Result<(), Fail> {
    if cx.plan.mm_flags == 0 && cx.plan.thp_disable == 0 {
        return Ok(());
    }
    cx.step(Step::MmFlags)?;
    if cx.plan.mm_flags & plan::MM_MCL_FUTURE != 0 {
        let onfault = if cx.plan.mm_flags & plan::MM_MCL_ONFAULT != 0 { MCL_ONFAULT } else { 0 };
        let r = sys::mlockall(MCL_FUTURE | onfault);
        cx.ck(r, 1)?;
    }
    if cx.plan.thp_disable != 0 {
        // The value PR_GET_THP_DISABLE gave: bit 0 "disabled", the other
        // bits the flags PR_SET_THP_DISABLE takes.
        let v = cx.plan.thp_disable as u64;
        let r = sys::prctl(PR_SET_THP_DISABLE, 1, v & !1, 0, 0);
        cx.ck(r, 2)?;
        let r = sys::prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
        cx.ck(r, 2)?;
        if r as u64 != v {
            cx.plan.failure.ret = -sys::EINVAL;
            cx.plan.failure.detail = 2;
            return Err(Fail);
        }
    }
    if cx.plan.mm_flags & plan::MM_MERGE_ANY != 0 {
        let r = sys::prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0);
        cx.ck(r, 3)?;
    }
    Ok(())
}

fn reopen_files(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::Files)?;
    // The group's first task fills the shared table (the others wait for
    // it before they open anything: see share_go_fd).
    if cx.plan.flags & plan::F_SHARED_FILES != 0 {
        return Ok(());
    }
    let files: &[plan::FileEntry] = cx.table(cx.plan.files);
    // Nothing of the engine's descriptors survives below the helpers; the
    // open file descriptions the engine made for the tree are above them
    // (with their offsets and flags set) and closed at the end.
    if cx.plan.helper_fd_min > 0 {
        let r = sys::close_range(0, cx.plan.helper_fd_min as u32 - 1);
        cx.ck(r, 0)?;
    }
    for f in files {
        let cloexec = if f.cloexec != 0 { sys::O_CLOEXEC } else { 0 };
        let r = sys::dup3(f.src, f.fd, cloexec);
        cx.ck(r, f.fd as u64)?;
    }
    // The table is complete: the tasks sharing it may open and close
    // their own descriptors now without meeting our numbers.
    let go = [0u8; 1];
    for _ in 0..cx.plan.share_go_count {
        let r = sys::write(cx.plan.share_go_fd, go.as_ptr(), 1);
        cx.ck(r, cx.plan.share_go_fd as u64)?;
    }
    Ok(())
}

/// Kernel `struct iocb` (linux/aio_abi.h) on x86_64.
#[repr(C)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    lio_opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}
const _: () = assert!(core::mem::size_of::<Iocb>() == 64);

const IOCB_CMD_PWRITE: u16 = 1;
/// `struct aio_ring` header: 8 u32 words (id, nr, head, tail, magic,
/// compat and incompat features, header length); the events follow.
const AIO_RING_HEADER: u64 = 32;
const AIO_RING_ID: usize = 0;
const AIO_RING_NR: usize = 1;
const AIO_RING_HEAD: usize = 2;
/// `struct io_event`: data, obj, res, res2.
const IO_EVENT: u64 = 32;
/// No-op requests per io_submit while moving a new ring's tail.
const AIO_BATCH: usize = 64;

/// Creates the native AIO contexts again, in slot order; placeholders keep
/// the slots that were free and are destroyed at the end.
fn aio(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::Aio)?;
    let n = cx.plan.aio.nr as usize;
    let base = cx.base + cx.plan.aio.off;
    let entry = |i: usize| (base + (i * core::mem::size_of::<plan::AioRing>()) as u64) as *mut plan::AioRing;
    for i in 0..n {
        // SAFETY: the engine laid out `n` entries at `base`, inside the plan
        // and after its fixed part (so not aliased by `cx.plan`).
        let r = unsafe { &mut *entry(i) };
        let mut ctx = 0u64;
        let ret = sys::io_setup(r.nr_req, &mut ctx);
        cx.ck(ret, r.addr)?;
        r.ctx = ctx;
        if r.addr != 0 {
            restore_ring(cx, r)?;
        }
    }
    for i in 0..n {
        // SAFETY: as above.
        let r = unsafe { &*entry(i) };
        if r.addr == 0 {
            let ret = sys::io_destroy(r.ctx);
            cx.ck(ret, r.ctx)?;
        }
    }
    Ok(())
}

/// Bytes of a ring of `nr` event slots (they fill its pages).
fn aio_ring_len(nr: u32) -> u64 {
    (AIO_RING_HEADER + nr as u64 * IO_EVENT).div_ceil(PAGE) * PAGE
}

/// Gives the new context `r.ctx` the dumped ring: tail, events, head and
/// place.
fn restore_ring(cx: &mut Ctx, r: &plan::AioRing) -> Result<(), Fail> {
    let ring = r.ctx as *mut u32;
    // SAFETY: io_setup mapped the ring, header first, read-write at `ctx`.
    let (id, nr) = unsafe { (ring.add(AIO_RING_ID).read_volatile(), ring.add(AIO_RING_NR).read_volatile()) };
    if id != r.id || nr != r.nr || aio_ring_len(nr) != r.len || r.head >= nr || r.tail >= nr {
        cx.plan.failure.ret = plan::AIO_MISMATCH;
        cx.plan.failure.detail = r.addr;
        return Err(Fail);
    }
    let set_head = |h: u32| {
        // SAFETY: as above; the program's side of the ring writes head too.
        unsafe { ring.add(AIO_RING_HEAD).write_volatile(h) }
    };
    // The kernel keeps its own copy of the tail: only completions move it.
    // Writes to /dev/null complete inside io_submit. Going round once more
    // when the tail is behind the head keeps the kernel's count of events
    // in the ring right; the head follows as if the program reaped them.
    let count = if r.tail >= r.head { r.tail as u64 } else { nr as u64 + r.tail as u64 };
    if count > 0 {
        let fd = sys::open(b"/dev/null\0".as_ptr(), sys::O_WRONLY | sys::O_CLOEXEC);
        cx.ck(fd, r.addr)?;
        let byte = 0u8;
        let cb = Iocb {
            data: 0,
            key: 0,
            rw_flags: 0,
            lio_opcode: IOCB_CMD_PWRITE,
            reqprio: 0,
            fildes: fd as u32,
            buf: &byte as *const u8 as u64,
            nbytes: 1,
            offset: 0,
            reserved2: 0,
            flags: 0,
            resfd: 0,
        };
        let list = [&cb as *const Iocb as u64; AIO_BATCH];
        let mut done = 0u64;
        let mut res = 0i64;
        while done < count {
            set_head((done as u32).min(r.head));
            let want = (count - done).min(AIO_BATCH as u64) as usize;
            let got = sys::io_submit(r.ctx, want, list.as_ptr());
            if got <= 0 {
                res = if got == 0 { -sys::EAGAIN } else { got };
                break;
            }
            done += got as u64;
        }
        sys::close(fd as i32);
        if res < 0 {
            cx.plan.failure.ret = res;
            cx.plan.failure.detail = r.addr;
            return Err(Fail);
        }
    }
    // SAFETY: both areas are `r.len` bytes long: the dumped ring's pages,
    // read into an ordinary mapping at `addr`, and the new ring at `ctx`.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (r.addr + AIO_RING_HEADER) as *const u8,
            (r.ctx + AIO_RING_HEADER) as *mut u8,
            (r.len - AIO_RING_HEADER) as usize,
        )
    };
    set_head(r.head);
    // Replaces that mapping; the kernel moves the context's id with it.
    let m = sys::mremap_fixed(r.ctx, r.len, r.addr);
    cx.ck(m, r.addr)?;
    if m as u64 != r.addr {
        cx.plan.failure.ret = -sys::EINVAL;
        cx.plan.failure.detail = r.addr;
        return Err(Fail);
    }
    Ok(())
}

#[repr(C)]
struct SigEvent {
    value: u64,
    signo: i32,
    notify: i32,
    tid: i32,
    _pad: [i32; 11],
}

fn posix_timers(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::PosixTimers)?;
    let timers: &[plan::PosixTimer] = cx.table(cx.plan.timers);
    if timers.is_empty() {
        return Ok(());
    }
    let r = sys::prctl(PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0);
    cx.ck(r, 0)?;
    for t in timers {
        let sev = SigEvent { value: t.value, signo: t.signo, notify: t.notify, tid: t.notify_tid, _pad: [0; 11] };
        let mut id = t.id;
        let r = sys::timer_create(t.clock, &sev as *const SigEvent as *const u8, &mut id);
        cx.ck(r, t.id as u64)?;
        if id != t.id {
            cx.plan.failure.ret = -sys::EINVAL;
            cx.plan.failure.detail = t.id as u64;
            return Err(Fail);
        }
        if t.value_sec != 0 || t.value_nsec != 0 {
            let spec = [t.interval_sec, t.interval_nsec, t.value_sec, t.value_nsec];
            let r = sys::timer_settime(id, spec.as_ptr() as *const u8);
            cx.ck(r, t.id as u64)?;
        }
    }
    let r = sys::prctl(PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
    cx.ck(r, 0)?;
    Ok(())
}

fn pending_signals(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::PendingSignals)?;
    let pid = cx.plan.pid;
    let shared: &[[u8; 128]] = cx.table(cx.plan.sigs_shared);
    // A SIGTRAP would be taken by our own trap: the engine queues it after.
    for si in shared {
        let signo = i32::from_ne_bytes([si[0], si[1], si[2], si[3]]);
        if signo == SIGTRAP as i32 {
            continue;
        }
        let r = sys::rt_sigqueueinfo(pid, signo, si.as_ptr());
        cx.ck(r, signo as u64)?;
    }
    let private: &[[u8; 128]] = cx.table(cx.plan.sigs_private);
    for si in private {
        let signo = i32::from_ne_bytes([si[0], si[1], si[2], si[3]]);
        if signo == SIGTRAP as i32 {
            continue;
        }
        let r = sys::rt_tgsigqueueinfo(pid, pid, signo, si.as_ptr());
        cx.ck(r, signo as u64)?;
    }
    Ok(())
}

fn create_threads(cx: &mut Ctx) -> Result<(), Fail> {
    cx.step(Step::Threads)?;
    let threads: &[plan::ThreadEntry] = cx.table(cx.plan.threads);
    let base = cx.base + cx.plan.threads.off;
    // CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM
    const FLAGS: u64 = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000;
    for (i, t) in threads.iter().enumerate() {
        let tid = [t.tid];
        let entry = base + (i * core::mem::size_of::<plan::ThreadEntry>()) as u64;
        // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
        // stack, stack_size, tls, set_tid, set_tid_size, cgroup.
        let args: [u64; 11] =
            [FLAGS, 0, 0, 0, 0, t.stack, plan::THREAD_STACK, 0, tid.as_ptr() as u64, 1, 0];
        // SAFETY: the new thread starts on its own stack inside the region and
        // only executes the trap in the assembly stub; `args` and `tid` live
        // until the syscall returns in this thread.
        let r = unsafe { restorer_clone(args.as_ptr(), core::mem::size_of_val(&args), entry, restorer_thread_main) };
        cx.ck(r, t.tid as u64)?;
        if r != t.tid as i64 {
            cx.plan.failure.ret = -sys::EINVAL;
            cx.plan.failure.detail = r as u64;
            return Err(Fail);
        }
    }
    Ok(())
}

fn loginuid(cx: &mut Ctx) -> Result<(), Fail> {
    if cx.plan.loginuid.off == 0 {
        return Ok(());
    }
    cx.step(Step::LoginUid)?;
    let fd = sys::open(b"/proc/self/loginuid\0".as_ptr(), sys::O_WRONLY);
    cx.ck(fd, 0)?;
    let text = cx.str(cx.plan.loginuid);
    let mut len = 0;
    // SAFETY: the engine put a NUL-terminated string of at most 10 digits here.
    while len < 16 && unsafe { *text.add(len) } != 0 {
        len += 1;
    }
    let r = sys::write(fd as i32, text, len);
    sys::close(fd as i32);
    cx.ck(r, 1)?;
    if r as usize != len {
        cx.plan.failure.ret = -sys::EIO;
        return Err(Fail);
    }
    Ok(())
}

/// Registers the address space for the membarrier commands it had.
fn membarrier(cx: &mut Ctx) -> Result<(), Fail> {
    if cx.plan.membarrier == 0 {
        return Ok(());
    }
    cx.step(Step::Membarrier)?;
    // MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, _PRIVATE_EXPEDITED,
    // _PRIVATE_EXPEDITED_SYNC_CORE, _PRIVATE_EXPEDITED_RSEQ.
    for cmd in [1u32 << 2, 1 << 4, 1 << 6, 1 << 8] {
        if cx.plan.membarrier & cmd != 0 {
            let r = sys::membarrier(cmd, 0);
            cx.ck(r, cmd as u64)?;
        }
    }
    Ok(())
}

/// Installs the plan's seccomp filters (see [`plan::Plan::seccomp`]).
fn seccomp(cx: &mut Ctx) -> Result<(), Fail> {
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
    let words: &[u64] = cx.table(cx.plan.seccomp);
    if words.is_empty() {
        return Ok(());
    }
    cx.step(Step::Seccomp)?;
    let mut i = 0;
    while i < words.len() {
        let (flags, len) = (words[i] >> 32, (words[i] & 0xffff_ffff) as usize);
        let insns = words.get(i + 1..i + 1 + len).ok_or(Fail)?;
        // struct sock_fprog: an unsigned short count, then the pointer.
        let prog: [u64; 2] = [len as u64, insns.as_ptr() as u64];
        let r = sys::seccomp(SECCOMP_SET_MODE_FILTER, flags | SECCOMP_FILTER_FLAG_TSYNC, prog.as_ptr() as u64);
        // TSYNC names a thread it could not synchronise by its tid.
        let (r, detail) = if r > 0 { (-1, r as u64) } else { (r, i as u64) };
        cx.ck(r, detail)?;
        i += 1 + len;
    }
    Ok(())
}

fn creds(cx: &mut Ctx) -> Result<(), Fail> {
    if cx.plan.flags & plan::F_CREDS == 0 {
        return Ok(());
    }
    cx.step(Step::Creds)?;
    let c = cx.plan.creds;
    match apply_creds(&c) {
        Ok(()) => Ok(()),
        Err((step, ret)) => {
            cx.plan.failure.ret = ret;
            cx.plan.failure.detail = step as u64;
            Err(Fail)
        }
    }
}

const PR_CAPBSET_DROP: u32 = 24;
const PR_SET_SECUREBITS: u32 = 28;
const PR_CAP_AMBIENT: u32 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;

/// Sets the calling thread's credentials to `c` (they are per thread):
/// identities with the capabilities kept (SECBIT_NO_SETUID_FIXUP), then
/// the bounding set, securebits, the capability sets and the ambient set.
/// On failure: (step, negative errno).
fn apply_creds(c: &plan::Creds) -> Result<(), (u32, i64)> {
    let ck = |step: u32, r: i64| if r < 0 && r > -4096 { Err((step, r)) } else { Ok(()) };
    ck(1, sys::prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0))?;
    ck(2, sys::setgroups(c.ngroups.min(32), c.groups.as_ptr()))?;
    ck(3, sys::setresgid(c.gid[0], c.gid[1], c.gid[2]))?;
    ck(4, sys::setresuid(c.uid[0], c.uid[1], c.uid[2]))?;
    // setresuid/setresgid made the fs ids the effective ones. These calls
    // report the previous id, never an error: ask again (an invalid id
    // changes nothing) to see it took.
    sys::setfsgid(c.fsgid);
    if sys::setfsgid(u32::MAX) != c.fsgid as i64 {
        return Err((9, -sys::EPERM));
    }
    sys::setfsuid(c.fsuid);
    if sys::setfsuid(u32::MAX) != c.fsuid as i64 {
        return Err((10, -sys::EPERM));
    }
    for cap in 0..64u64 {
        if c.cap_bnd & (1 << cap) == 0 {
            let r = sys::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
            // EINVAL: past the kernel's last capability.
            if r == -sys::EINVAL {
                break;
            }
            ck(5, r)?;
        }
    }
    ck(6, sys::prctl(PR_SET_SECUREBITS, c.securebits as u64, 0, 0, 0))?;
    // _LINUX_CAPABILITY_VERSION_3, pid 0; two data words per set.
    let hdr = [0x2008_0522u32, 0];
    let data = [
        c.cap_eff as u32,
        c.cap_prm as u32,
        c.cap_inh as u32,
        (c.cap_eff >> 32) as u32,
        (c.cap_prm >> 32) as u32,
        (c.cap_inh >> 32) as u32,
    ];
    ck(7, sys::capset(hdr.as_ptr() as *const u8, data.as_ptr() as *const u8))?;
    for cap in 0..64u64 {
        if c.cap_amb & (1 << cap) != 0 {
            ck(8, sys::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0))?;
        }
    }
    Ok(())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: ud2 raises SIGILL, reported by the engine as a restorer crash.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

const _: () = assert!(PAGE == 4096);
