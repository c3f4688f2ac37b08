//! Decoding of any image for `crtools show` (being written).
