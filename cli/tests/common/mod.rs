//! Helpers shared by the crtools binary's tests.
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd` start in a session of its own with no descriptor but its
/// stdio inherited (the test runner's pipes would make it undumpable).
pub fn detached(cmd: &mut Command) -> &mut Command {
    // SAFETY: setsid and close_range are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        })
    }
}
