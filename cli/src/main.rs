//! crtools: checkpoint/restore in userspace (see crtools(1)).
//!
//! This binary only turns options into engine calls: [`opts`] parses and
//! validates the command line, [`supported`] refuses what has not landed yet,
//! [`log`] is the logger, [`run`] calls the engine and maps errors to exit
//! codes (0 success, 1 failure, 2 usage error).
#[cfg(test)]
mod docs;
mod log;
mod opts;
mod run;
mod supported;

/// musl's allocator with freed medium-sized blocks kept for reuse (see
/// engine::alloc).
#[global_allocator]
static ALLOC: engine::alloc::CachingAlloc = engine::alloc::CachingAlloc::new();

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(run::main(std::env::args_os()))
}
