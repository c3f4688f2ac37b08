//! Kernel feature probes for `crtools check` (being written).
