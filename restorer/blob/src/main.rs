//! The restorer blob: the last stage of restore inside each task.
//!
//! Entered at offset 0 with `rdi` = the arena's `PlanHeader` and `rsp` at the
//! top of the arena's stack. This build validates the plan and reports back
//! through an `int3`; the address-space switch and the final rt_sigreturn
//! land with the single-process restore (see the restore pipeline).
//!
//! # Rulebook for code in this blob
//! - It runs while the task's own mappings are being torn down: no std, no
//!   allocation, no reachable panic (the handler is `ud2`), nothing that
//!   reads memory outside the arena and the blob itself.
//! - Soft-float target: the task's FPU/xsave state is never touched here; it
//!   is restored by rt_sigreturn at the very end.
//! - Addresses in statics need a relocation; the engine applies the
//!   R_X86_64_RELATIVE ones before upload and the build refuses any other.
#![no_std]
#![no_main]

use restorer_plan as plan;

core::arch::global_asm!(
    ".section .text.entry,\"ax\",@progbits",
    ".globl __export_restorer_entry",
    "__export_restorer_entry:",
    "    call restorer_main",
    ".globl __export_restorer_trap",
    "__export_restorer_trap:",
    "    int3",
    "    ud2",
);

const EINVAL: i64 = 22;

/// Validates the plan header.
///
/// # Safety
/// `hdr` points at a writable arena at least `size_of::<PlanHeader>()` long.
#[no_mangle]
pub unsafe extern "C" fn restorer_main(hdr: *mut plan::PlanHeader) {
    // SAFETY: guaranteed by the function contract.
    let h = unsafe { &mut *hdr };
    if h.magic != plan::MAGIC || h.version != plan::VERSION {
        h.ret = -EINVAL;
        h.failed_step = 1;
        return;
    }
    h.ret = 0;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: ud2 raises SIGILL, reported by the engine as a restorer crash.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}
