//! The parasite blob.
//!
//! Runs inside a frozen task, on a stack and in a region the engine mapped,
//! one command per entry (see `parasite_proto` for the layout). It answers
//! what only the task itself can read and hands its descriptors to the engine.
//!
//! # Rulebook for code in this blob
//! - No allocation, no std, no panics that can be reached: every failure is a
//!   negative errno written into `Header::ret`. The panic handler is `ud2`
//!   (SIGILL), which the engine tells apart from the `int3` that means done.
//! - Soft-float target: the blob never touches the task's x87/SSE/AVX state.
//! - No red zone: the stack is borrowed from the engine's region.
//! - Statics may hold values (the control socket) but addresses in statics
//!   need a relocation: the engine applies R_X86_64_RELATIVE ones before upload
//!   and the build refuses any other kind.
//! - Every syscall goes through [`sys`]; nothing else issues `syscall`.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use parasite_proto as proto;
use proto::{Cmd, Header};

mod sys;

core::arch::global_asm!(
    ".section .text.entry,\"ax\",@progbits",
    ".globl __export_parasite_entry",
    "__export_parasite_entry:",
    // rdi = &Header, rsp = 16-byte aligned stack top set by the engine.
    "    call parasite_main",
    ".globl __export_parasite_trap",
    "__export_parasite_trap:",
    "    int3",
    "    ud2",
);

// Resumes the task with the registers at rdi (`ResumeRegs`, in pop
// order): the last thing a self-cure does. Flags are popped before rsp and
// the jump reads its target from memory, so every register is the task's
// when its own code runs again; nothing is written below its stack. Two
// copies, each with its own jump slot: the served thread's self-cure
// (`parasite_resume`) and another thread's (`parasite_thread_resume`,
// see below) may run at the same time.
macro_rules! resume_code {
    ($label:literal, $slot:ident) => {
        core::arch::global_asm!(
            ".section .text",
            concat!(".globl ", $label),
            concat!($label, ":"),
            "    mov rax, [rdi + 136]",
            "    mov [rip + {rip}], rax",
            "    mov rsp, rdi",
            "    pop r15",
            "    pop r14",
            "    pop r13",
            "    pop r12",
            "    pop rbp",
            "    pop rbx",
            "    pop r11",
            "    pop r10",
            "    pop r9",
            "    pop r8",
            "    pop rax",
            "    pop rcx",
            "    pop rdx",
            "    pop rsi",
            "    pop rdi",
            "    popfq",
            "    pop rsp",
            "    jmp qword ptr [rip + {rip}]",
            rip = sym $slot,
        );
    };
}
resume_code!("parasite_resume", RESUME_RIP);
resume_code!("parasite_thread_resume", THREAD_RESUME_RIP);

// A system call run by a thread other than the one the parasite serves
// from: the engine points the thread's registers at the `syscall` here and
// takes the thread back at the call's exit (PTRACE_SYSCALL), putting its
// registers back. Only if the engine died before that does the thread go
// on past the `syscall`: it puts back its blocked mask and its registers
// itself from the `ThreadCure` whose address the engine wrote into
// THREAD_CURE_PTR.
core::arch::global_asm!(
    ".section .text",
    ".globl __export_parasite_thread_call",
    "__export_parasite_thread_call:",
    "    syscall",
    "    mov rsi, [rip + {cure}]",
    "    mov edi, 2",
    "    xor edx, edx",
    "    mov r10d, 8",
    "    mov eax, 14",
    "    syscall",
    "    mov rdi, [rip + {cure}]",
    "    add rdi, 8",
    "    jmp parasite_thread_resume",
    cure = sym THREAD_CURE_PTR,
);

/// The address of the current thread call's `ThreadCure` (written by the
/// engine).
#[export_name = "__export_parasite_thread_cure_ptr"]
static THREAD_CURE_PTR: AtomicU64 = AtomicU64::new(0);

/// Where a thread call's own resume jumps.
#[no_mangle]
static THREAD_RESUME_RIP: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn parasite_resume(regs: *const proto::ResumeRegs) -> !;
}

/// Where [`parasite_resume`] jumps (written by it, read by its last jump).
#[no_mangle]
static RESUME_RIP: AtomicU64 = AtomicU64::new(0);

/// The control socket opened by [`Cmd::Init`], or -1.
static CTL_SOCK: AtomicI32 = AtomicI32::new(-1);

/// Runs the command in `hdr`; called only from the entry stub.
///
/// # Safety
/// `hdr` points at the args area of the region the engine mapped, at least
/// [`proto::ARGS_SIZE`] bytes, writable.
#[no_mangle]
pub unsafe extern "C" fn parasite_main(hdr: *mut Header) {
    // SAFETY: the engine guarantees the args area (see the function contract).
    let h = unsafe { &mut *hdr };
    if h.magic != proto::MAGIC {
        h.ret = -(sys::EINVAL as i64);
        return;
    }
    // SAFETY: the payload lies inside the args area, PAYLOAD_OFFSET past hdr.
    let payload = unsafe { (hdr as *mut u8).add(proto::PAYLOAD_OFFSET) };
    h.failed_step = 0;
    h.ret = match Cmd::from_raw(h.cmd) {
        // SAFETY: each payload type fits in the args area (asserted in proto).
        Some(cmd) => unsafe { run(cmd, payload, &mut h.failed_step) },
        None => -(sys::EINVAL as i64),
    };
}

/// Executes one command; returns 0/positive on success or a negative errno.
///
/// # Safety
/// `payload` is valid for the payload struct of `cmd`.
unsafe fn run(cmd: Cmd, payload: *mut u8, step: &mut u32) -> i64 {
    match cmd {
        Cmd::Init => {
            // SAFETY: caller contract.
            let args = unsafe { &*(payload as *const proto::InitArgs) };
            init(args, step)
        }
        Cmd::GetPid => {
            // SAFETY: caller contract.
            let r = unsafe { &mut *(payload as *mut proto::PidReply) };
            r.pid = sys::getpid();
            r.tid = sys::gettid();
            0
        }
        Cmd::SigAltStack => {
            // SAFETY: caller contract.
            let r = unsafe { &mut *(payload as *mut proto::SigAltStackReply) };
            sys::sigaltstack_get(r)
        }
        Cmd::SigActions => {
            // SAFETY: caller contract.
            let r = unsafe { &mut *(payload as *mut proto::SigActionsReply) };
            sigactions(r, step)
        }
        Cmd::ITimers => {
            // SAFETY: caller contract.
            let r = unsafe { &mut *(payload as *mut proto::ITimersReply) };
            for (which, t) in r.timers.iter_mut().enumerate() {
                let ret = sys::getitimer(which as i32, t);
                if ret < 0 {
                    *step = which as u32 + 1;
                    return ret;
                }
            }
            0
        }
        Cmd::SendFds => {
            // SAFETY: caller contract.
            let args = unsafe { &*(payload as *const proto::SendFdsArgs) };
            send_fds(args)
        }
        Cmd::Misc => {
            // SAFETY: caller contract.
            let r = unsafe { &mut *(payload as *mut proto::MiscReply) };
            misc(r, step)
        }
        Cmd::Timers => {
            // SAFETY: caller contract; args and reply share the payload, the
            // ids are copied out before any reply is written.
            let args = unsafe { *(payload as *const proto::TimersArgs) };
            // SAFETY: as above.
            let r = unsafe { &mut *(payload as *mut proto::TimersReply) };
            timers(&args, r, step)
        }
        Cmd::Daemon => {
            // SAFETY: caller contract; the header is at PAYLOAD_OFFSET before it.
            let args = unsafe { *(payload as *const proto::DaemonArgs) };
            // SAFETY: as above: the args area starts PAYLOAD_OFFSET before.
            unsafe { daemon(payload.sub(proto::PAYLOAD_OFFSET), &args) }
        }
        Cmd::Syscall => {
            // SAFETY: caller contract.
            let a = unsafe { *(payload as *const proto::SyscallArgs) };
            // SAFETY: the engine's remote syscall, with its own arguments.
            unsafe { sys::syscall6(a.nr, &a.args) }
        }
        Cmd::MemPolicy => {
            // SAFETY: caller contract; args and reply share the payload, the
            // addresses are copied out before any reply is written.
            let args = unsafe { *(payload as *const proto::MemPolicyArgs) };
            // SAFETY: as above.
            let r = unsafe { &mut *(payload as *mut proto::MemPolicyReply) };
            mempolicies(&args, r, step)
        }
        Cmd::Fini => {
            let fd = CTL_SOCK.swap(-1, Ordering::Relaxed);
            if fd >= 0 {
                sys::close(fd)
            } else {
                0
            }
        }
    }
}

/// Serves commands from the control socket: each message is a header
/// and payload, answered in place with `reply_len` payload bytes. When the
/// socket closes or fails, the engine is gone (it takes the task back with
/// ptrace before it closes its end): the task is cured from inside.
/// Returns only when it cannot start.
///
/// # Safety
/// `area` is the args area ([`proto::ARGS_SIZE`] writable bytes).
unsafe fn daemon(area: *mut u8, args: &proto::DaemonArgs) -> i64 {
    let sock = CTL_SOCK.load(Ordering::Relaxed);
    // SAFETY: the engine wrote the CureInfo at this address of the region.
    let cure = unsafe { &*(args.cure as *const proto::CureInfo) };
    if sock < 0 || cure.magic != proto::CURE_MAGIC {
        return -(sys::EINVAL as i64);
    }
    loop {
        let n = sys::recv(sock, area, proto::SOCKET_MSG_MAX);
        if n == -sys::EINTR {
            continue;
        }
        if n < core::mem::size_of::<Header>() as i64 {
            self_cure(cure);
        }
        let hdr = area as *mut Header;
        // SAFETY: a whole header was received into the args area.
        let h = unsafe { &mut *hdr };
        let len = (h.reply_len as usize).min(proto::SOCKET_MSG_MAX - proto::PAYLOAD_OFFSET);
        if matches!(Cmd::from_raw(h.cmd), Some(Cmd::Daemon | Cmd::Init)) {
            h.ret = -(sys::EINVAL as i64);
        } else {
            // SAFETY: hdr is the args area, as parasite_main requires.
            unsafe { parasite_main(hdr) };
        }
        if sys::send(sock, area, proto::PAYLOAD_OFFSET + len) < 0 {
            self_cure(cure);
        }
    }
}

/// Cures the task from inside: everything the engine's cure does except
/// unmapping the region, which the code running from it cannot do. With
/// every signal blocked: the control socket is closed, SIGTRAP's action
/// and the SIGTRAPs our traps took are put back, the region is named so
/// it can be told in /proc/pid/maps; then the task's mask and registers.
fn self_cure(cure: &proto::CureInfo) -> ! {
    sys::set_sigmask(&u64::MAX);
    let fd = CTL_SOCK.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        sys::close(fd);
    }
    if cure.flags & proto::CURE_SIGTRAP_ACTION != 0 {
        sys::rt_sigaction_set(sys::SIGTRAP, &cure.sigtrap);
    }
    for t in cure.traps.iter().take(cure.nr_traps as usize) {
        let tid = if t.shared != 0 { -1 } else { cure.tid };
        sys::queue_signal(cure.tgid, tid, sys::SIGTRAP, &t.info);
    }
    sys::name_anon(cure.base, cure.size, b"crtools-parasite-left-by-a-dead-dump\0");
    sys::set_sigmask(&cure.mask);
    // SAFETY: the registers the engine read from the task at infection.
    unsafe { parasite_resume(&cure.regs) }
}

fn init(args: &proto::InitArgs, step: &mut u32) -> i64 {
    if args.addr_len as usize > args.addr.len() {
        return -(sys::EINVAL as i64);
    }
    let fd = sys::socket(sys::AF_UNIX, sys::SOCK_SEQPACKET | sys::SOCK_CLOEXEC, 0);
    if fd < 0 {
        *step = 1;
        return fd;
    }
    let ret = sys::connect_unix(fd as i32, &args.addr[..args.addr_len as usize]);
    if ret < 0 {
        *step = 2;
        sys::close(fd as i32);
        return ret;
    }
    CTL_SOCK.store(fd as i32, Ordering::Relaxed);
    fd
}

fn sigactions(r: &mut proto::SigActionsReply, step: &mut u32) -> i64 {
    r.valid = 0;
    for sig in 1..=proto::NSIG {
        let slot = &mut r.actions[sig - 1];
        *slot = proto::KSigAction::default();
        // SIGKILL and SIGSTOP have no action to read.
        if sig == sys::SIGKILL as usize || sig == sys::SIGSTOP as usize {
            continue;
        }
        let ret = sys::rt_sigaction_get(sig as i32, slot);
        if ret < 0 {
            *step = sig as u32;
            return ret;
        }
        r.valid |= 1u64 << (sig - 1);
    }
    0
}

fn misc(r: &mut proto::MiscReply, step: &mut u32) -> i64 {
    r.brk = sys::brk0();
    let mut tid_address = 0u64;
    let steps: [(u32, i64); 6] = [
        (1, sys::prctl(sys::PR_GET_TID_ADDRESS, &mut tid_address as *mut u64 as u64)),
        (2, sys::prctl(sys::PR_GET_PDEATHSIG, &mut r.pdeathsig as *mut i32 as u64)),
        (3, sys::prctl(sys::PR_GET_CHILD_SUBREAPER, &mut r.child_subreaper as *mut i32 as u64)),
        (4, sys::prctl(sys::PR_GET_DUMPABLE, 0)),
        (5, sys::prctl(sys::PR_GET_NO_NEW_PRIVS, 0)),
        (6, sys::prctl(sys::PR_GET_SECUREBITS, 0)),
    ];
    for (i, ret) in steps {
        if ret < 0 {
            *step = i;
            return ret;
        }
        match i {
            4 => r.dumpable = ret as i32,
            5 => r.no_new_privs = ret as i32,
            6 => r.securebits = ret as i32,
            _ => {}
        }
    }
    r.tid_address = tid_address;
    let p = sys::personality(0xffff_ffff);
    if p < 0 {
        *step = 7;
        return p;
    }
    r.personality = p as u32;
    0
}

fn timers(args: &proto::TimersArgs, r: &mut proto::TimersReply, step: &mut u32) -> i64 {
    let nr = args.nr as usize;
    if nr > proto::MAX_TIMERS {
        return -(sys::EINVAL as i64);
    }
    for i in 0..nr {
        let id = args.ids[i];
        let mut spec = [0i64; 4];
        let ret = sys::timer_gettime(id, &mut spec);
        if ret < 0 {
            *step = i as u32 + 1;
            return ret;
        }
        let over = sys::timer_getoverrun(id);
        if over < 0 {
            *step = i as u32 + 1;
            return over;
        }
        r.timers[i] = proto::TimerState {
            interval_sec: spec[0],
            interval_nsec: spec[1],
            value_sec: spec[2],
            value_nsec: spec[3],
            overrun: over,
        };
    }
    0
}

fn mempolicies(args: &proto::MemPolicyArgs, r: &mut proto::MemPolicyReply, step: &mut u32) -> i64 {
    const MPOL_F_ADDR: usize = 1 << 1;
    let nr = args.nr as usize;
    if nr > proto::MAX_POLICIES {
        return -(sys::EINVAL as i64);
    }
    for i in 0..nr {
        let addr = args.addrs[i];
        let (addr, flags) = if addr == proto::THREAD_POLICY { (0, 0) } else { (addr, MPOL_F_ADDR) };
        let mut p = proto::MemPolicy::default();
        let ret = sys::get_mempolicy(&mut p.mode, &mut p.nodes, addr, flags);
        if ret < 0 {
            *step = i as u32 + 1;
            return ret;
        }
        r.policies[i] = p;
    }
    0
}

fn send_fds(args: &proto::SendFdsArgs) -> i64 {
    let sock = CTL_SOCK.load(Ordering::Relaxed);
    if sock < 0 {
        return -(sys::ENOTCONN as i64);
    }
    let nr = args.nr as usize;
    if nr == 0 || nr > proto::MAX_FDS {
        return -(sys::EINVAL as i64);
    }
    sys::send_fds(sock, &args.fds[..nr])
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: ud2 raises SIGILL; the engine reports it as a parasite crash.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}
