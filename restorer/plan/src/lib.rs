//! The restore plan: what the engine lays out in memory for the restorer blob.
//!
//! The restorer is the last stage of restore inside each task. The engine
//! builds one arena per task, in a region that overlaps none of the task's
//! target mappings, and enters the blob at offset 0 with `rdi` = the arena's
//! [`PlanHeader`]. Every struct here is `#[repr(C)]` and pointer-free: all
//! references are offsets from the arena base, so the arena can be built in
//! the engine and moved into the task unchanged.
//!
//! ```text
//!   arena ──────────► +----------------------------+
//!                     | PlanHeader                 |
//!                     | (offsets and counts of the |
//!                     |  tables that follow)       |
//!                     +----------------------------+
//!                     | tables (VMAs, ...)         |  filled in by the restore
//!                     +----------------------------+  pipeline
//!                     | stack, grows down          |
//!                     +----------------------------+
//! ```
#![no_std]

use core::mem::size_of;

/// Magic in [`PlanHeader::magic`].
pub const MAGIC: u32 = 0x5245_5354; // "REST"
/// Format version of the arena layout; engine and blob are built together,
/// the check catches a blob from another build.
pub const VERSION: u32 = 1;

/// First bytes of the arena.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanHeader {
    /// Must be [`MAGIC`].
    pub magic: u32,
    /// Must be [`VERSION`].
    pub version: u32,
    /// Total arena size in bytes.
    pub size: u64,
    /// Result written by the blob when it cannot go on: negative errno.
    pub ret: i64,
    /// Which step failed (blob specific, 0 when none).
    pub failed_step: u32,
    /// Reserved, zero.
    pub _pad: u32,
}

const _: () = {
    assert!(size_of::<PlanHeader>() == 32);
};
