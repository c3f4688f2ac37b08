//! crtools engine: everything the tool knows about checkpoint and restore.
//!
//! Layers, bottom up (see DESIGN.md):
//! - [`sys`]: the hand-written syscall layer, the only place that issues raw syscalls;
//! - [`proc`]: readers of `/proc/<pid>/...`;
//! - [`infect`]: seize, freeze, inject syscalls, drive the parasite blob, cure;
//! - [`image`]: the image directory, file header and record framing;
//! - [`objects`]: one module per kernel object kind;
//! - [`dump`] and [`restore`]: the pipelines, orchestration only;
//! - [`check`] and [`show`]: `crtools check` and `crtools show`.
pub mod alloc;
pub mod blobs;
pub mod check;
pub mod dump;
pub mod error;
pub mod fault;
pub mod image;
pub mod infect;
pub mod interrupt;
pub mod objects;
pub mod proc;
pub mod restore;
pub mod scripts;
pub mod show;
pub mod sys;
