//! Image directory, file header, record framing (being written).
