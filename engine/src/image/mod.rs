//! Images: the dump directory, the file header, record framing and one
//! module of record types per image kind.
//!
//! - [`kind`]: the kind table ([`ImageKind`], [`KINDS`]); one row per kind.
//! - [`codec`]: header `magic | kind | version | crc`, frames
//!   `len | postcard | crc`, end marker; typed [`ImageReader`]/[`ImageWriter`].
//! - [`dir`]: [`ImageDir`] (writing, inventory last) and [`ImageDirReader`]
//!   (refuses a directory without a valid inventory, verifies every file's
//!   size and checksum before use).
//! - [`pages`]: raw page data ([`PagesWriter`], [`PagesReader`]).
//! - [`describe`]: the [`Node`] presentation tree and its text/JSON renderers.
//! - record types: [`inventory`], [`pstree`], [`core`], [`mm`], [`pagemap`],
//!   [`files`], [`reg_files`].
//!
//! Invariants of every record type: plain data (no pointers, no host
//! addresses of this process), serde-encoded with postcard; enum variants and
//! struct fields are only ever appended, and any incompatible change bumps the
//! kind's version in the table. Bit sets are stored as their raw bits (unknown
//! bits survive a round trip).
pub mod chain;
pub mod codec;
pub mod core;
pub mod crc32c;
pub mod describe;
pub mod dir;
pub mod error;
pub mod events;
pub mod files;
pub mod inet_sk;
pub mod inventory;
pub mod ipc;
pub mod kind;
pub mod mm;
pub mod netlink_sk;
pub mod ns;
pub mod packet_sk;
pub mod pagemap;
pub mod pages;
pub mod pipes;
pub mod pstree;
pub mod raw_sk;
pub mod reg_files;
pub mod signalfd;
pub mod stats;
#[cfg(test)]
pub(crate) mod tests;
pub mod tty;
pub mod unix_sk;

use std::borrow::Cow;

pub use codec::{FrameReader, FrameWriter, ImageReader, ImageWriter};
pub use describe::{Describe, Node, Obj};
pub use dir::{ImageDir, ImageDirReader, RecordFile};
pub use error::{ErrorKind, ImageError, Result};
pub use kind::{kinds, ImageFormat, ImageKind, KindDesc, Layout, DEFAULT_MAX_RECORD, KINDS};
pub use pages::{PagesReader, PagesWriter, PAGE_SIZE};

/// Bytes from the kernel that are usually but not necessarily UTF-8
/// (paths, comm). Shown lossily; stored exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RawStr(pub Vec<u8>);

impl RawStr {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// As an `OsStr` (for opening paths).
    pub fn as_os_str(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(&self.0)
    }
    /// Lossy text.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

impl From<&str> for RawStr {
    fn from(s: &str) -> Self {
        RawStr(s.as_bytes().to_vec())
    }
}

impl From<&std::ffi::OsStr> for RawStr {
    fn from(s: &std::ffi::OsStr) -> Self {
        use std::os::unix::ffi::OsStrExt;
        RawStr(s.as_bytes().to_vec())
    }
}

impl Describe for RawStr {
    fn describe(&self) -> Node {
        Node::Str(self.to_string_lossy().into_owned())
    }
}

/// Implements serde for a `bitflags` type as its raw bits, keeping unknown
/// bits, and `Describe` as its flag names (`@serde`: serde only).
macro_rules! serde_bits {
    (@serde $t:ty: $bits:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.bits(), s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                <$bits as serde::Deserialize>::deserialize(d).map(<$t>::from_bits_retain)
            }
        }
    };
    ($($t:ty: $bits:ty),* $(,)?) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.bits(), s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                <$bits as serde::Deserialize>::deserialize(d).map(<$t>::from_bits_retain)
            }
        }
        impl $crate::image::Describe for $t {
            fn describe(&self) -> $crate::image::Node {
                $crate::image::Node::flags(*self)
            }
        }
    )*};
}
pub(crate) use serde_bits;

/// Kernel signal names, by number (1..=64); real-time ones as SIGRTMIN+n.
pub fn signal_name(sig: u32) -> Cow<'static, str> {
    match i32::try_from(sig) {
        Ok(n @ 1..=64) => Cow::Borrowed(crate::sys::signal::signal_name(n)),
        _ => Cow::Owned(format!("SIG{sig}")),
    }
}

/// A signal number shown by name.
pub fn signal_node(sig: i32) -> Node {
    if (1..=64).contains(&sig) {
        Node::Str(signal_name(sig as u32).into_owned())
    } else {
        Node::I64(sig as i64)
    }
}

/// A kernel signal set (bit n-1 = signal n) shown as signal names.
pub fn sigset_node(mask: u64) -> Node {
    Node::bitmask(mask, |bit| Some(signal_name(bit + 1)))
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Unique temporary directories removed on drop.
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh path under the system temp dir (not created).
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("crtools-test-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            TempDir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
