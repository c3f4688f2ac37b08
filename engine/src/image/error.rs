//! [`ImageError`]: the one error type of the image layer.
//!
//! Every error names the file (or directory) it concerns and, where it makes
//! sense, the byte offset in that file; its `Display` is one line.
use std::fmt;
use std::io;

/// What went wrong, without the file context.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// I/O error: {0}
    Io(io::Error),
    /// The file ends inside the 20-byte header.
    TruncatedHeader,
    /// The file does not start with the crtools magic.
    BadMagic,
    /// The header checksum does not match.
    HeaderChecksum,
    /// The header names a kind this tool does not know.
    UnknownKind(u32),
    /// The header names a format version this tool cannot read.
    UnknownVersion { kind: &'static str, version: u32, supported: u32 },
    /// The file holds another kind of image than the caller asked for.
    WrongKind { expected: &'static str, found: &'static str },
    /// A record is longer than its kind allows.
    RecordTooLarge { len: u64, max: u32 },
    /// The file ends inside a record frame.
    TruncatedRecord,
    /// The file ends before the end-of-image marker.
    MissingEndMarker,
    /// The end-of-image marker is damaged or counts other records.
    BadEndMarker,
    /// A record's checksum does not match its bytes.
    RecordChecksum { stored: u32, computed: u32 },
    /// A record's bytes do not decode as the kind's record type.
    Decode(postcard::Error),
    /// A record decoded but left bytes unused.
    RecordTrailingBytes(usize),
    /// A record could not be encoded.
    Encode(postcard::Error),
    /// Bytes follow the end-of-image marker.
    TrailingGarbage,
    /// The image directory has no inventory (shown specially).
    NoInventory,
    /// A file name that could escape or is not ours.
    BadName(&'static str),
    /// The file is not listed in the inventory.
    NotInInventory,
    /// Size differs from the inventory.
    SizeMismatch { expected: u64, found: u64 },
    /// Whole-file checksum differs from the inventory.
    ChecksumMismatch { expected: u32, found: u32 },
    /// Not a regular file (symlink, fifo, device...).
    NotRegular,
    /// The file already exists or is being written.
    AlreadyExists,
    /// Writers still open (or dropped unfinished) when finishing the directory.
    Unfinished,
    /// Page data not a multiple of 4096 bytes.
    NotPageAligned(u64),
    /// A page read beyond the end of the pages file.
    PagesOutOfRange { index: u64, count: u64, total: u64 },
    /// Anything else, described.
    Invalid(String),
}

/// An image-layer error: the file, maybe an offset, and what was wrong.
#[derive(Debug)]
pub struct ImageError {
    /// File (or, for directory errors, directory) name.
    pub file: String,
    /// Byte offset in the file where the problem was found.
    pub offset: Option<u64>,
    /// What was wrong.
    pub kind: ErrorKind,
}

/// Result of the image layer.
pub type Result<T> = std::result::Result<T, ImageError>;

impl ImageError {
    /// An error about `file` with no offset.
    pub fn new(file: impl Into<String>, kind: ErrorKind) -> Self {
        ImageError { file: file.into(), offset: None, kind }
    }

    /// An error about `file` at byte `offset`.
    pub fn at(file: impl Into<String>, offset: u64, kind: ErrorKind) -> Self {
        ImageError { file: file.into(), offset: Some(offset), kind }
    }

    /// An I/O error about `file`.
    pub fn io(file: impl Into<String>, e: io::Error) -> Self {
        Self::new(file, ErrorKind::Io(e))
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match self {
            Io(e) => write!(f, "{e}"),
            TruncatedHeader => write!(f, "truncated header"),
            BadMagic => write!(f, "bad magic: not a crtools image"),
            HeaderChecksum => write!(f, "header checksum mismatch"),
            UnknownKind(k) => write!(f, "unknown image kind {k}"),
            UnknownVersion { kind, version, supported } => {
                write!(f, "unsupported format version {version} of {kind} image (this tool reads version {supported})")
            }
            WrongKind { expected, found } => {
                write!(f, "expected a {expected} image, found a {found} image")
            }
            RecordTooLarge { len, max } => {
                write!(f, "record length {len} exceeds the limit of {max} bytes")
            }
            TruncatedRecord => write!(f, "truncated record"),
            MissingEndMarker => write!(f, "truncated image: end-of-image marker missing"),
            BadEndMarker => write!(f, "damaged end-of-image marker"),
            RecordChecksum { stored, computed } => {
                write!(f, "record checksum mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})")
            }
            Decode(e) => write!(f, "record does not decode: {e}"),
            RecordTrailingBytes(n) => write!(f, "record has {n} undecoded trailing bytes"),
            Encode(e) => write!(f, "record does not encode: {e}"),
            TrailingGarbage => write!(f, "trailing garbage after the end-of-image marker"),
            NoInventory => write!(f, "no inventory.img"),
            BadName(why) => write!(f, "invalid image file name: {why}"),
            NotInInventory => write!(f, "not listed in inventory.img"),
            SizeMismatch { expected, found } => {
                write!(f, "size {found} differs from the {expected} bytes recorded in inventory.img")
            }
            ChecksumMismatch { expected, found } => write!(
                f,
                "checksum 0x{found:08x} differs from 0x{expected:08x} recorded in inventory.img (modified after dump?)"
            ),
            NotRegular => write!(f, "not a regular file"),
            AlreadyExists => write!(f, "already exists"),
            Unfinished => write!(f, "image writers still open or dropped unfinished"),
            NotPageAligned(n) => write!(f, "page data of {n} bytes is not a multiple of 4096"),
            PagesOutOfRange { index, count, total } => {
                write!(f, "pages {index}..{} out of range (file holds {total} pages)", index + count)
            }
            Invalid(m) => write!(f, "{m}"),
        }
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ErrorKind::NoInventory = self.kind {
            return write!(f, "incomplete dump: no inventory.img in {}", self.file);
        }
        match self.offset {
            Some(o) => write!(f, "{}: offset {o} (0x{o:x}): {}", self.file, self.kind),
            None => write!(f, "{}: {}", self.file, self.kind),
        }
    }
}

impl std::error::Error for ImageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            ErrorKind::Decode(e) | ErrorKind::Encode(e) => Some(e),
            _ => None,
        }
    }
}
