//! The restore pipeline (orchestration only): validate every image, recreate
//! the tree with exact pids, restore objects, hand over to the restorer blob.
//! Lands with the single-process restore; until then `crtools restore`
//! refuses with "not supported yet".
pub mod plan;
