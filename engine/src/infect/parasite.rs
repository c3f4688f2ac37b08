//! The parasite: loaded into a seized task, it runs commands in the task's
//! own context (see `parasite_proto` for the region layout and commands).
//!
//! Life cycle: [`Parasite::infect`] → commands → [`Parasite::cure`]. The
//! infection connects the control socket and starts the blob's loop
//! ([`proto::Cmd::Daemon`]): commands then go over the socket with the task
//! running (its stops handled while we wait), ptrace reads happen with the
//! loop interrupted ([`Parasite::with_task_stopped`]), and the cure takes the
//! task back with PTRACE_INTERRUPT before anything else. If crtools dies,
//! its end of the socket closes and the blob cures the task itself. While
//! infected, every signal but SIGTRAP is blocked in the task: blocking
//! SIGTRAP would make the kernel reset its handler when the blob's `int3`
//! fires (force_sig_info), changing the task's sigaction behind its back.
//!
//! A SIGTRAP the task has blocked and queued is therefore dequeued (and
//! would be discarded) as soon as the parasite runs, and a queued SIGTRAP
//! absorbs our own int3's (a standard signal is queued once). So the queues
//! are read before the first trap, a foreign SIGTRAP stop is taken off the
//! task (`Tracee::run_until_trap`), and at cure, with every signal blocked
//! and without traps (PTRACE_SYSCALL), each SIGTRAP is queued again with its
//! own siginfo, per thread or process-wide as it was.
use super::{inject, InfectError, QueuedTraps, Result, Tracee};
use crate::blobs;
use crate::sys::process_vm;
use crate::sys::ptrace::{self, SigInfo, UserRegs};
use crate::sys::socket::{self, SockFlags, SockType, UnixAddr};
use crate::sys::Sysno;
use parasite_proto as proto;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

const PAGE: usize = 4096;
const SIGTRAP: u64 = 5;
const PROT_RX: u64 = 0x1 | 0x4;
const PROT_RW: u64 = 0x1 | 0x2;
const MAP_PRIVATE_ANON: u64 = 0x02 | 0x20;

fn page_up(n: usize) -> usize {
    (n + PAGE - 1) & !(PAGE - 1)
}

/// Offsets inside the remote region.
#[derive(Clone, Copy, Debug)]
struct Layout {
    args: usize,
    cure: usize,
    stack_top: usize,
    size: usize,
}

impl Layout {
    fn new() -> Layout {
        let args = page_up(blobs::parasite::MEM_SIZE);
        let cure = args + page_up(proto::ARGS_SIZE);
        let stack = cure + page_up(proto::CURE_SIZE);
        let size = stack + proto::STACK_SIZE;
        Layout { args, cure, stack_top: size - 64, size }
    }
}

/// Registers that resume the task as the kernel would after a stop with
/// `r`: an interrupted system call is set up to restart (no handler runs
/// in between), -ERESTART_RESTARTBLOCK through restart_syscall.
pub(crate) fn resume_regs(r: &UserRegs) -> proto::ResumeRegs {
    const ERESTARTSYS: i64 = 512;
    const ERESTARTNOINTR: i64 = 513;
    const ERESTARTNOHAND: i64 = 514;
    const ERESTART_RESTARTBLOCK: i64 = 516;
    const NR_RESTART_SYSCALL: u64 = 219;
    let (mut rax, mut rip) = (r.rax, r.rip);
    if (r.orig_rax as i64) >= 0 {
        match -(r.rax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => (rax, rip) = (r.orig_rax, r.rip - 2),
            ERESTART_RESTARTBLOCK => (rax, rip) = (NR_RESTART_SYSCALL, r.rip - 2),
            _ => {}
        }
    }
    proto::ResumeRegs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.rbp,
        rbx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rflags: r.eflags,
        rsp: r.rsp,
        rip,
    }
}

/// A task with the parasite loaded.
pub struct Parasite<'t> {
    tracee: &'t mut Tracee,
    orig_regs: UserRegs,
    orig_mask: u64,
    base: u64,
    layout: Layout,
    /// Engine end of the control socket, once [`Parasite::receive_fds`] opened it.
    channel: Option<OwnedFd>,
    /// The task's descriptor number of its end, while open.
    task_sock: Option<i32>,
    /// SIGTRAP was SIG_IGN before we came (our traps made it SIG_DFL).
    sigtrap_ignored: bool,
    /// SIGTRAP's flags and mask as read by [`Parasite::sigactions`].
    sigtrap_action: Option<proto::KSigAction>,
    /// The thread's and the process's queued signals before infection.
    orig_pending: (Vec<SigInfo>, Vec<SigInfo>),
    /// The blob serves commands from the control socket ([`proto::Cmd::Daemon`]).
    daemon: bool,
    cured: bool,
}

impl<'t> Parasite<'t> {
    /// Maps the parasite region in the task and uploads the blob.
    pub fn infect(tracee: &'t mut Tracee) -> Result<Parasite<'t>> {
        // Read before our first trap: a trap resets an ignored SIGTRAP to
        // SIG_DFL, so the task's "ignore" is put back quietly at cure.
        let sigtrap_ignored = crate::proc::status::read(tracee.pid())
            .map(|s| s.sig_ign & (1u64 << (SIGTRAP - 1)) != 0)
            .map_err(|e| InfectError::unexpected(tracee.pid(), "read status", e.to_string()))?;
        let orig_regs = tracee.regs()?;
        super::harm_window(tracee.pid(), true, "parasite");
        let orig_mask = tracee.sigmask()?;
        // Before our first trap: it would take a queued SIGTRAP off the queue.
        let pid = tracee.pid();
        let peek =
            |flags| ptrace::peek_all_siginfo(pid, flags).map_err(|e| InfectError::errno(pid, "PTRACE_PEEKSIGINFO", e));
        let orig_pending = (peek(0)?, peek(ptrace::PEEKSIGINFO_SHARED)?);
        // The region is mapped with every signal blocked and without a trap
        // (PTRACE_SYSCALL): nothing is taken off the queues before there is
        // scratch memory in the task to queue it again from.
        tracee.set_sigmask(u64::MAX)?;
        // Never writable and executable at once (a task under PR_SET_MDWE
        // refuses that): mapped read-execute, the blob written through
        // /proc/pid/mem (as a debugger writes code), then the part the blob
        // writes made read-write.
        let layout = Layout::new();
        let mapped = tracee.remote_syscall_quiet_ok(
            Sysno::mmap,
            [0, layout.size as u64, PROT_RX, MAP_PRIVATE_ANON, u64::MAX, 0],
            "remote mmap of the parasite region",
        );
        let base = match mapped {
            Ok(b) => b,
            Err(e) => {
                let _ = tracee.set_sigmask(orig_mask);
                return Err(e);
            }
        };
        let p = Parasite {
            tracee,
            orig_regs,
            orig_mask,
            base,
            layout,
            channel: None,
            task_sock: None,
            sigtrap_ignored,
            sigtrap_action: None,
            orig_pending,
            daemon: false,
            cured: false,
        };
        let mut p = p;
        let blob = blobs::relocate(blobs::parasite::IMAGE, blobs::parasite::MEM_SIZE, blobs::parasite::RELOCS, base);
        let pid = p.tracee.pid();
        let upload = |e: std::io::Error| {
            InfectError::errno(pid, "upload the parasite blob", crate::sys::Errno::new(e.raw_os_error().unwrap_or(5)))
        };
        {
            use std::os::unix::fs::FileExt;
            let mem =
                std::fs::OpenOptions::new().write(true).open(crate::proc::pid_path(pid, "mem")).map_err(upload)?;
            mem.write_all_at(&blob.bytes, base).map_err(upload)?;
        }
        let data = blobs::parasite::DATA as u64;
        p.tracee.remote_syscall_quiet_ok(
            Sysno::mprotect,
            [base + data, layout.size as u64 - data, PROT_RW, 0, 0, 0],
            "remote mprotect of the parasite's data",
        )?;
        p.tracee.set_sigmask(!(1u64 << (SIGTRAP - 1)))?;
        log::debug!(task = pid.0; "task {pid}: parasite at {:#x} ({} bytes)", base, layout.size);
        p.open_channel()?;
        p.start_daemon()?;
        Ok(p)
    }

    /// What the blob needs to cure the task by itself (see [`proto::CureInfo`]).
    fn cure_info(&self) -> proto::CureInfo {
        let pid = self.tracee.pid();
        let mut c = proto::CureInfo {
            magic: proto::CURE_MAGIC,
            flags: 0,
            mask: self.orig_mask,
            regs: resume_regs(&self.orig_regs),
            sigtrap: proto::KSigAction::default(),
            nr_traps: 0,
            tgid: crate::proc::status::read(pid).map(|s| s.tgid).unwrap_or(pid.0),
            tid: pid.0,
            _pad: 0,
            traps: [proto::QueuedTrap { shared: 0, _pad: 0, info: [0; 128] }; 2],
            base: self.base,
            size: self.layout.size as u64,
        };
        if self.sigtrap_ignored {
            c.flags |= proto::CURE_SIGTRAP_ACTION;
            c.sigtrap = self.sigtrap_action.unwrap_or_default();
            c.sigtrap.handler = 1;
        }
        let traps = QueuedTraps::of(&self.orig_pending.0, &self.orig_pending.1);
        for (si, shared) in [(traps.thread, 0), (traps.shared, 1)] {
            if let Some(si) = si {
                c.traps[c.nr_traps as usize] = proto::QueuedTrap { shared, _pad: 0, info: si.0 };
                c.nr_traps += 1;
            }
        }
        c
    }

    fn write_cure_info(&self) -> Result<()> {
        let pid = self.tracee.pid();
        let info = self.cure_info();
        process_vm::write_all(pid, self.base + self.layout.cure as u64, as_bytes(&info))
            .map_err(|e| InfectError::errno(pid, "write the parasite's cure information", e))
    }

    /// Lets the blob serve commands from the control socket, the task
    /// running: from here on, crtools dying (its end of the socket closes)
    /// makes the blob cure the task by itself.
    fn start_daemon(&mut self) -> Result<()> {
        let pid = self.tracee.pid();
        self.write_cure_info()?;
        let args = proto::DaemonArgs { cure: self.base + self.layout.cure as u64 };
        let hdr = proto::Header { magic: proto::MAGIC, cmd: proto::Cmd::Daemon as u32, ..Default::default() };
        let args_addr = self.base + self.layout.args as u64;
        let mut area = vec![0u8; proto::PAYLOAD_OFFSET + size_of::<proto::DaemonArgs>()];
        area[..size_of::<proto::Header>()].copy_from_slice(as_bytes(&hdr));
        area[proto::PAYLOAD_OFFSET..].copy_from_slice(as_bytes(&args));
        process_vm::write_all(pid, args_addr, &area).map_err(|e| InfectError::errno(pid, "write parasite args", e))?;
        let mut regs = inject::entry_regs(&self.orig_regs, self.base + blobs::parasite::ENTRY as u64);
        regs.rdi = args_addr;
        regs.rsp = (self.base + self.layout.stack_top as u64) & !15;
        self.tracee.set_regs(&regs)?;
        self.tracee.run_free("start the parasite's loop")?;
        self.daemon = true;
        // Alive and serving: a first command answers.
        let me = self.call(proto::Cmd::GetPid, &[], size_of::<proto::PidReply>())?;
        if me.0 < 0 {
            return Err(InfectError::unexpected(pid, "parasite loop", format!("first command failed: {}", me.0)));
        }
        super::harm_window(pid, false, "parasite serving");
        Ok(())
    }

    /// Sends one command over the control socket.
    fn send_command(&mut self, cmd: proto::Cmd, payload: &[u8], reply_len: usize) -> Result<()> {
        let pid = self.tracee.pid();
        let hdr =
            proto::Header { magic: proto::MAGIC, cmd: cmd as u32, ret: 0, failed_step: 0, reply_len: reply_len as u32 };
        if proto::PAYLOAD_OFFSET + payload.len().max(reply_len) > proto::SOCKET_MSG_MAX {
            return Err(InfectError::unexpected(pid, "parasite command", format!("{cmd:?}: message too large")));
        }
        let mut msg = vec![0u8; proto::PAYLOAD_OFFSET + payload.len()];
        msg[..size_of::<proto::Header>()].copy_from_slice(as_bytes(&hdr));
        msg[proto::PAYLOAD_OFFSET..].copy_from_slice(payload);
        let conn = self.channel.as_ref().expect("the loop runs on an open channel");
        socket::send(conn.as_fd(), &msg, socket::MsgFlags::empty())
            .map_err(|e| InfectError::errno(pid, "send a parasite command", e))?;
        Ok(())
    }

    /// Waits until the control socket has a message, handling the task's
    /// stops meanwhile (it runs free), then takes it with `take`.
    fn await_message<T>(
        &mut self,
        step: &'static str,
        mut take: impl FnMut(std::os::fd::BorrowedFd<'_>) -> crate::sys::Result<T>,
    ) -> Result<T> {
        let pid = self.tracee.pid();
        let trap = self.base + blobs::parasite::TRAP as u64 + 1;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let fd = self.channel.as_ref().expect("the loop runs on an open channel").as_raw_fd();
            let ready = crate::sys::event::poll_for(fd, crate::sys::event::POLLIN, 20)
                .map_err(|e| InfectError::errno(pid, step, e))?;
            if ready != 0 {
                let conn = self.channel.as_ref().expect("open");
                return take(conn.as_fd()).map_err(|e| InfectError::errno(pid, step, e));
            }
            self.tracee.poll_running(step, trap)?;
            if std::time::Instant::now() > deadline {
                return Err(InfectError::unexpected(pid, step, "the parasite did not answer within 60 s"));
            }
        }
    }

    /// One command over the control socket: its header's ret and
    /// failed_step, and `reply_len` payload bytes.
    fn call_socket(&mut self, cmd: proto::Cmd, payload: &[u8], reply_len: usize) -> Result<(i64, u32, Vec<u8>)> {
        let pid = self.tracee.pid();
        self.send_command(cmd, payload, reply_len)?;
        let back = self.receive_reply(reply_len)?;
        if back.len() < proto::PAYLOAD_OFFSET + reply_len {
            return Err(InfectError::unexpected(pid, "read parasite reply", "short reply"));
        }
        // SAFETY: Header is plain old data and `back` holds at least its size.
        let h: proto::Header = unsafe { std::ptr::read_unaligned(back.as_ptr() as *const proto::Header) };
        Ok((h.ret, h.failed_step, back[proto::PAYLOAD_OFFSET..proto::PAYLOAD_OFFSET + reply_len].to_vec()))
    }

    fn receive_reply(&mut self, reply_len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; proto::PAYLOAD_OFFSET + reply_len];
        let n =
            self.await_message("read parasite reply", |fd| socket::recv(fd, &mut buf, socket::MsgFlags::empty()))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Runs one syscall in the infected task (every signal but SIGTRAP
    /// blocked, like the commands); returns its raw result.
    pub fn remote_syscall(&mut self, nr: Sysno, args: [u64; 6]) -> Result<i64> {
        // The blob runs it: no code of the task is patched.
        let a = proto::SyscallArgs { nr: nr as u64, args };
        Ok(self.call(proto::Cmd::Syscall, as_bytes(&a), 0)?.0)
    }

    /// Runs `f` (ptrace calls on the task) with the task stopped: the
    /// parasite's loop is interrupted in its wait for a command and runs on
    /// after (crtools dying meanwhile still lets the loop cure the task).
    pub fn with_task_stopped<T>(&mut self, f: impl FnOnce(crate::sys::Pid) -> T) -> Result<T> {
        let pid = self.tracee.pid();
        if !self.daemon {
            return Ok(f(pid));
        }
        let trap = self.base + blobs::parasite::TRAP as u64 + 1;
        self.tracee.interrupt_running("stop the parasite's loop", trap)?;
        let out = f(pid);
        self.tracee.run_free("resume the parasite's loop")?;
        Ok(out)
    }

    /// The infected task.
    pub fn pid(&self) -> crate::sys::Pid {
        self.tracee.pid()
    }

    /// The task's registers as they were before infection.
    pub fn orig_regs(&self) -> UserRegs {
        self.orig_regs
    }

    /// The task's blocked mask as it was before infection.
    pub fn orig_sigmask(&self) -> u64 {
        self.orig_mask
    }

    /// The signals queued for the thread and for the process before
    /// infection (PTRACE_PEEKSIGINFO order): a SIGTRAP among them is off its
    /// queue while the parasite runs and back once it is cured.
    pub fn orig_pending(&self) -> (&[SigInfo], &[SigInfo]) {
        (&self.orig_pending.0, &self.orig_pending.1)
    }

    /// A 4 KiB scratch page inside the parasite region, free for remote
    /// syscalls of any thread of the task (the region is in their shared mm).
    pub fn scratch(&self) -> u64 {
        self.base + (self.layout.args + proto::ARGS_SIZE - 4096) as u64
    }

    /// Where the task's other threads run system calls (see
    /// [`Tracee::thread_syscalls`]).
    pub fn thread_call(&self) -> super::inject::ThreadCall {
        let end = self.base + (self.layout.args + proto::ARGS_SIZE) as u64;
        super::inject::ThreadCall {
            gadget: self.base + blobs::parasite::THREAD_CALL as u64,
            cure_ptr: self.base + blobs::parasite::THREAD_CURE_PTR as u64,
            cure: end - proto::THREAD_CURE_FROM_END as u64,
            scratch: self.scratch(),
        }
    }

    /// Address of the parasite region in the task.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size of the parasite region.
    pub fn size(&self) -> usize {
        self.layout.size
    }

    /// Runs `cmd` with `payload` (bytes copied in before), returns the
    /// header's ret and `reply_len` bytes of payload read back.
    fn call(&mut self, cmd: proto::Cmd, payload: &[u8], reply_len: usize) -> Result<(i64, u32, Vec<u8>)> {
        let pid = self.tracee.pid();
        if cmd != proto::Cmd::Fini {
            if let Some(why) = crate::fault::stop_reason(crate::fault::Fault::DumpParasiteCmd) {
                return Err(InfectError::unexpected(pid, "parasite command", format!("{cmd:?}: {why}")));
            }
        }
        if self.daemon {
            return self.call_socket(cmd, payload, reply_len);
        }
        let hdr = proto::Header { magic: proto::MAGIC, cmd: cmd as u32, ..Default::default() };
        let args_addr = self.base + self.layout.args as u64;
        let mut area = vec![0u8; proto::PAYLOAD_OFFSET + payload.len().max(reply_len)];
        area[..size_of::<proto::Header>()].copy_from_slice(as_bytes(&hdr));
        area[proto::PAYLOAD_OFFSET..proto::PAYLOAD_OFFSET + payload.len()].copy_from_slice(payload);
        process_vm::write_all(pid, args_addr, &area).map_err(|e| InfectError::errno(pid, "write parasite args", e))?;

        let mut regs = inject::entry_regs(&self.orig_regs, self.base + blobs::parasite::ENTRY as u64);
        regs.rdi = args_addr;
        // The stub's `call` pushes the return address: enter 16-byte aligned.
        regs.rsp = (self.base + self.layout.stack_top as u64) & !15;
        self.tracee.set_regs(&regs)?;
        let trap = self.base + blobs::parasite::TRAP as u64 + 1;
        let after = self.tracee.run_until_trap("parasite command", trap)?;
        if after.rip != trap {
            return Err(InfectError::unexpected(
                pid,
                "parasite command",
                format!("{cmd:?} stopped at {:#x}, expected the trap at {trap:#x}", after.rip),
            ));
        }
        let back = process_vm::read_vec(pid, args_addr, proto::PAYLOAD_OFFSET + reply_len)
            .map_err(|e| InfectError::errno(pid, "read parasite reply", e))?;
        if back.len() < proto::PAYLOAD_OFFSET + reply_len {
            return Err(InfectError::unexpected(pid, "read parasite reply", "short read"));
        }
        // SAFETY: Header is plain old data and `back` holds at least its size.
        let h: proto::Header = unsafe { std::ptr::read_unaligned(back.as_ptr() as *const proto::Header) };
        Ok((h.ret, h.failed_step, back[proto::PAYLOAD_OFFSET..].to_vec()))
    }

    fn call_typed<T: Copy>(&mut self, cmd: proto::Cmd, step: &'static str) -> Result<T> {
        let (ret, failed, reply) = self.call(cmd, &[], size_of::<T>())?;
        if ret < 0 {
            let pid = self.tracee.pid();
            log::debug!(task = pid.0; "task {pid}: parasite {cmd:?} failed at step {failed}");
            return Err(InfectError::errno(pid, step, crate::sys::Errno::new(-ret as i32)));
        }
        // SAFETY: T is one of the protocol's repr(C) plain-data structs and
        // `reply` holds size_of::<T>() bytes written by the blob.
        Ok(unsafe { std::ptr::read_unaligned(reply.as_ptr() as *const T) })
    }

    /// getpid() and gettid() as the task sees them.
    pub fn get_pid(&mut self) -> Result<proto::PidReply> {
        self.call_typed(proto::Cmd::GetPid, "parasite getpid")
    }

    /// The task's sigaltstack.
    pub fn sigaltstack(&mut self) -> Result<proto::SigAltStackReply> {
        self.call_typed(proto::Cmd::SigAltStack, "parasite sigaltstack")
    }

    /// The sigaction of every signal.
    pub fn sigactions(&mut self) -> Result<proto::SigActionsReply> {
        let mut r: proto::SigActionsReply = self.call_typed(proto::Cmd::SigActions, "parasite rt_sigaction")?;
        let trap = &mut r.actions[SIGTRAP as usize - 1];
        if self.sigtrap_ignored {
            // Our traps changed only the handler; flags and mask are the task's.
            trap.handler = 1;
        }
        self.sigtrap_action = Some(*trap);
        if self.sigtrap_ignored && self.daemon {
            // A self-cure puts SIGTRAP's own flags and mask back too.
            self.write_cure_info()?;
        }
        Ok(r)
    }

    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
    pub fn itimers(&mut self) -> Result<proto::ITimersReply> {
        self.call_typed(proto::Cmd::ITimers, "parasite getitimer")
    }

    /// brk, tid address, prctl state and personality.
    pub fn misc(&mut self) -> Result<proto::MiscReply> {
        self.call_typed(proto::Cmd::Misc, "parasite prctl/brk")
    }

    /// The NUMA memory policy of each address (get_mempolicy with
    /// MPOL_F_ADDR: the VMA's own, MPOL_DEFAULT when it has none), or of the
    /// leader thread itself for [`proto::THREAD_POLICY`], in order.
    pub fn mempolicies(&mut self, addrs: &[u64]) -> Result<Vec<proto::MemPolicy>> {
        let pid = self.tracee.pid();
        let mut out = Vec::with_capacity(addrs.len());
        for chunk in addrs.chunks(proto::MAX_POLICIES) {
            let mut args = proto::MemPolicyArgs { nr: chunk.len() as u32, _pad: 0, addrs: [0; proto::MAX_POLICIES] };
            args.addrs[..chunk.len()].copy_from_slice(chunk);
            let want = chunk.len() * size_of::<proto::MemPolicy>();
            let (ret, failed, reply) = self.call(proto::Cmd::MemPolicy, as_bytes(&args), want)?;
            if ret < 0 {
                let addr = chunk.get(failed.saturating_sub(1) as usize).copied().unwrap_or(0);
                log::debug!(task = pid.0; "task {pid}: get_mempolicy at {addr:#x} failed");
                return Err(InfectError::errno(pid, "parasite get_mempolicy", crate::sys::Errno::new(-ret as i32)));
            }
            for i in 0..chunk.len() {
                let at = i * size_of::<proto::MemPolicy>();
                // SAFETY: MemPolicy is plain data and `reply` holds `want` bytes.
                out.push(unsafe { std::ptr::read_unaligned(reply[at..].as_ptr() as *const proto::MemPolicy) });
            }
        }
        Ok(out)
    }

    /// timer_gettime/timer_getoverrun for each id, in order.
    pub fn posix_timers(&mut self, ids: &[i32]) -> Result<Vec<proto::TimerState>> {
        let pid = self.tracee.pid();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(proto::MAX_TIMERS) {
            let mut args = proto::TimersArgs { nr: chunk.len() as u32, _pad: 0, ids: [0; proto::MAX_TIMERS] };
            args.ids[..chunk.len()].copy_from_slice(chunk);
            let want = chunk.len() * size_of::<proto::TimerState>();
            let (ret, failed, reply) = self.call(proto::Cmd::Timers, as_bytes(&args), want)?;
            if ret < 0 {
                let id = chunk.get(failed.saturating_sub(1) as usize).copied().unwrap_or(-1);
                log::debug!(task = pid.0; "task {pid}: timer_gettime of timer {id} failed");
                return Err(InfectError::errno(pid, "parasite timer_gettime", crate::sys::Errno::new(-ret as i32)));
            }
            for i in 0..chunk.len() {
                let at = i * size_of::<proto::TimerState>();
                // SAFETY: TimerState is plain data and `reply` holds `want` bytes.
                out.push(unsafe { std::ptr::read_unaligned(reply[at..].as_ptr() as *const proto::TimerState) });
            }
        }
        Ok(out)
    }

    /// The descriptor number the parasite's control socket has in the task
    /// while it is open (skip it when listing the task's descriptors).
    pub fn control_fd(&self) -> Option<i32> {
        self.task_sock
    }

    /// Connects the parasite to a fresh listening socket of the engine.
    fn open_channel(&mut self) -> Result<()> {
        let pid = self.tracee.pid();
        let err = |step| move |e| InfectError::errno(pid, step, e);
        let listener =
            socket::socket(linux_raw_sys::net::AF_UNIX, SockType::SOCK_SEQPACKET, SockFlags::SOCK_CLOEXEC, 0)
                .map_err(err("control socket"))?;
        let nonce =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("crtools-parasite-{}-{}-{nonce:08x}", std::process::id(), pid);
        let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(err("control socket address"))?;
        socket::bind(listener.as_fd(), &addr).map_err(err("bind the control socket"))?;
        socket::listen(listener.as_fd(), 1).map_err(err("listen on the control socket"))?;

        let mut args = proto::InitArgs { addr_len: 0, _pad: 0, addr: [0; 108] };
        let path = addr.path_bytes();
        args.addr[..path.len()].copy_from_slice(path);
        args.addr_len = path.len() as u32;
        let (ret, failed, _) = self.call(proto::Cmd::Init, as_bytes(&args), 0)?;
        if ret < 0 {
            log::debug!(task = pid.0; "task {pid}: parasite Init failed at step {failed}");
            const EMFILE: i64 = 24;
            if ret == -EMFILE {
                // A sandbox (sshd's pre-auth child) may allow no new descriptor.
                let lim = std::fs::read_to_string(crate::proc::pid_path(pid, "limits")).unwrap_or_default();
                let nofile = lim
                    .lines()
                    .find(|l| l.starts_with("Max open files"))
                    .map(|l| l.split_whitespace().collect::<Vec<_>>());
                let n = nofile.as_ref().and_then(|w| w.get(3)).copied().unwrap_or("?");
                return Err(InfectError::unexpected(
                    pid,
                    "parasite connect to the engine",
                    format!("the task may open no new descriptor (EMFILE, RLIMIT_NOFILE {n}): not supported"),
                ));
            }
            return Err(InfectError::errno(pid, "parasite connect to the engine", crate::sys::Errno::new(-ret as i32)));
        }
        self.task_sock = Some(ret as i32);
        let (conn, _) =
            socket::accept4(listener.as_fd(), SockFlags::SOCK_CLOEXEC).map_err(err("accept the parasite"))?;
        self.channel = Some(conn);
        Ok(())
    }

    /// Receives copies of the task's descriptors `fds` over SCM_RIGHTS, in order.
    pub fn receive_fds(&mut self, fds: &[i32]) -> Result<Vec<OwnedFd>> {
        let pid = self.tracee.pid();
        let mut out = Vec::with_capacity(fds.len());
        for chunk in fds.chunks(proto::MAX_FDS) {
            let mut args = proto::SendFdsArgs { nr: chunk.len() as u32, _pad: 0, fds: [0; proto::MAX_FDS] };
            args.fds[..chunk.len()].copy_from_slice(chunk);
            // The loop sends the descriptors, then the answer.
            self.send_command(proto::Cmd::SendFds, as_bytes(&args), 0)?;
            let mut data = [0u8; 4 * proto::MAX_FDS];
            let fetched = self.await_message("receive descriptors from the parasite", |fd| {
                socket::recv_fds(fd, &mut data, chunk.len())
            });
            let back = self.receive_reply(0)?;
            let ret = if back.len() >= size_of::<proto::Header>() {
                // SAFETY: Header is plain old data and `back` holds its size.
                unsafe { std::ptr::read_unaligned(back.as_ptr() as *const proto::Header) }.ret
            } else {
                -(crate::sys::Errno::EIO.into_raw() as i64)
            };
            if ret < 0 {
                return Err(InfectError::errno(
                    pid,
                    "parasite sendmsg of descriptors",
                    crate::sys::Errno::new(-ret as i32),
                ));
            }
            let (n, got) = fetched?;
            let numbers: Vec<i32> =
                data[..n].chunks_exact(4).map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes"))).collect();
            if got.len() != chunk.len() || numbers != chunk {
                return Err(InfectError::unexpected(
                    pid,
                    "receive descriptors from the parasite",
                    format!("asked for {chunk:?}, got {} descriptors for {numbers:?}", got.len()),
                ));
            }
            out.extend(got);
        }
        Ok(out)
    }

    /// Lets the task go as crtools dying would (for tests of the
    /// self-cure): the loop is interrupted, the engine's end of the control
    /// socket closes and the task is detached as it is, not cured. The
    /// blob's loop finds its socket closed and cures the task by itself.
    pub fn abandon(mut self) -> Result<()> {
        let pid = self.tracee.pid();
        if !self.daemon {
            return Err(InfectError::unexpected(pid, "abandon", "the parasite's loop does not run"));
        }
        let trap = self.base + blobs::parasite::TRAP as u64 + 1;
        self.tracee.interrupt_running("stop the parasite's loop", trap)?;
        self.channel = None;
        self.daemon = false;
        self.cured = true;
        self.tracee.let_go()
    }

    /// Unmaps the parasite and puts registers and signal mask back.
    pub fn cure(mut self) -> Result<()> {
        self.cure_inner()
    }

    fn cure_inner(&mut self) -> Result<()> {
        if self.cured {
            return Ok(());
        }
        self.cured = true;
        let pid = self.tracee.pid();
        super::harm_window(pid, true, "parasite cure");
        if self.daemon {
            // Take the task back from its loop (stopped in its recv), then
            // close the task's end of the socket from there: the loop, if
            // it ever ran again, would find it gone and cure the task itself.
            self.daemon = false;
            let trap = self.base + blobs::parasite::TRAP as u64 + 1;
            self.tracee.interrupt_running("stop the parasite's loop", trap)?;
            self.tracee.set_sigmask(u64::MAX)?;
            if let Some(fd) = self.task_sock.take() {
                self.tracee.remote_syscall_quiet_ok(
                    Sysno::close,
                    [fd as u64, 0, 0, 0, 0, 0],
                    "close the parasite's control socket",
                )?;
            }
            self.channel = None;
        } else if self.task_sock.is_some() {
            // Close the task's end first: it is a descriptor of the task's own.
            let fini = self.call(proto::Cmd::Fini, &[], 0);
            self.task_sock = None;
            self.channel = None;
            if let Err(e) = fini {
                log::error!("{e}");
            }
        }
        // Remote syscalls run at the original rip with the original registers,
        // with every signal blocked: no trap from here on, and a SIGTRAP we
        // queue again stays queued.
        self.tracee.set_regs(&self.orig_regs)?;
        self.tracee.set_sigmask(u64::MAX)?;
        let mut ignore = Ok(0);
        if self.sigtrap_ignored {
            // No trap from here on: each would reset the ignored SIGTRAP again.
            let mut act = self.sigtrap_action.unwrap_or_default();
            act.handler = 1;
            let addr = self.scratch();
            ignore = process_vm::write_all(pid, addr, as_bytes(&act))
                .map_err(|e| InfectError::errno(pid, "write the SIGTRAP action", e))
                .and_then(|_| {
                    self.tracee.remote_syscall_quiet_ok(
                        Sysno::rt_sigaction,
                        [SIGTRAP, addr, 0, 8, 0, 0],
                        "put back the ignored SIGTRAP",
                    )
                });
        }
        let traps = QueuedTraps::of(&self.orig_pending.0, &self.orig_pending.1);
        let requeue = self.tracee.put_back_sigtraps(pid, &traps, self.scratch());
        let unmap = self.tracee.remote_syscall_quiet_ok(
            Sysno::munmap,
            [self.base, self.layout.size as u64, 0, 0, 0, 0],
            "remote munmap of the parasite region",
        );
        ignore?;
        requeue?;
        let regs = self.tracee.set_regs(&self.orig_regs);
        let mask = self.tracee.set_sigmask(self.orig_mask);
        if unmap.is_ok() && regs.is_ok() && mask.is_ok() {
            super::harm_window(pid, false, "parasite cure");
        }
        unmap?;
        regs?;
        mask?;
        if crate::fault::hit(crate::fault::Fault::DumpCure) {
            return Err(InfectError::unexpected(pid, "cure", "injected fault dump-cure (after a complete cure)"));
        }
        log::debug!(task = pid.0; "task {pid}: cured");
        Ok(())
    }
}

impl Drop for Parasite<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.cure_inner() {
            log::error!("{e}");
        }
    }
}

fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) plain-data protocol struct without padding that
    // matters (its padding fields are explicit); reading it as bytes is fine.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}
