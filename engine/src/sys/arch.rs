//! The x86_64 pieces that need assembly.

/// Switches to `stack` and jumps to `entry` with `arg` in rdi. Used by a
/// forked child to enter the restorer blob; never returns.
///
/// # Safety
/// `entry` must be the entry of a blob mapped executable in this process,
/// `stack` the 16-byte aligned top of a writable stack that stays mapped,
/// and the blob must never return through the abandoned Rust frames.
pub unsafe fn jump_to_blob(entry: u64, arg: u64, stack: u64) -> ! {
    // SAFETY: the caller's contract; the blob's entry stub is a `call`, so
    // entering with rsp 16-byte aligned keeps the ABI alignment.
    unsafe {
        core::arch::asm!(
            "mov rsp, {stack}",
            "xor ebp, ebp",
            "jmp {entry}",
            stack = in(reg) stack,
            entry = in(reg) entry,
            in("rdi") arg,
            options(noreturn)
        )
    }
}
