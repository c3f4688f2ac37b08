//! The dump pipeline (orchestration only): seize the tree, collect each task,
//! infect, dump memory and objects, cure, write the inventory, then kill or
//! leave stopped. Lands with the single-process dump; until then
//! `crtools dump` refuses with "not supported yet".
