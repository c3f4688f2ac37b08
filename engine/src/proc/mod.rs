//! Readers of /proc/<pid>/... (being written).
