//! crtools command line (being written).
fn main() {}
