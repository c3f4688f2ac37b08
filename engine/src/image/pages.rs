//! Raw page data: `pages-<id>.img` holds 4 KiB pages back to back with no
//! header, so page `i` is at file offset `i * 4096` and restore can read
//! pages straight into their final place. The file's checksum lives only in
//! the inventory.
//!
//! Invariants: the file length is a multiple of [`PAGE_SIZE`]; the writer
//! only accepts whole pages and hands them to the kernel in the caller's
//! (large) chunks, without copying, either appended in order or written
//! from several threads into ranges reserved in file order (the checksum of
//! each range is joined to the file's with [`super::crc32c::combine`]); the reader checksums lazily: reads that
//! continue the verified prefix extend a running CRC, and
//! [`PagesReader::verify`] checks the rest, so a restore reading pages in
//! order verifies in the same pass. Callers must call `verify` (or
//! [`super::ImageDirReader::verify`]) before restored tasks run.
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;

use super::crc32c::Crc32c;
use super::dir::Registration;
use super::error::{ErrorKind, ImageError, Result};
use super::inventory::InventoryEntry;

/// Size of one page.
pub const PAGE_SIZE: usize = 4096;

/// Writes page data into an [`super::ImageDir`].
pub struct PagesWriter {
    file: File,
    reg: Registration,
    crc: Crc32c,
    size: u64,
    /// Time spent in write(2) (for `stats-dump.img`).
    pub write_time: std::time::Duration,
}

impl PagesWriter {
    pub(crate) fn new(file: File, reg: Registration) -> Self {
        PagesWriter { file, reg, crc: Crc32c::new(), size: 0, write_time: std::time::Duration::ZERO }
    }

    /// Appends whole pages (`data.len()` a multiple of 4096), one write.
    pub fn write_pages(&mut self, data: &[u8]) -> Result<()> {
        if data.len() & (PAGE_SIZE - 1) != 0 {
            return Err(ImageError::at(self.reg.display(), self.size, ErrorKind::NotPageAligned(data.len() as u64)));
        }
        let t = std::time::Instant::now();
        self.file.write_all(data).map_err(|e| ImageError::at(self.reg.display(), self.size, ErrorKind::Io(e)))?;
        self.write_time += t.elapsed();
        self.crc.update(data);
        self.size += data.len() as u64;
        Ok(())
    }

    /// Reserves the next `len` bytes (whole pages) of the file for data
    /// whose CRC-32C is `crc`, to be written by [`PagesWriter::write_reserved`]
    /// (from any thread, through [`PagesWriter::fd`]); returns their offset.
    /// Reservations are made in file order; the data may land in any order.
    pub fn reserve(&mut self, len: u64, crc: u32) -> Result<u64> {
        if len & (PAGE_SIZE as u64 - 1) != 0 {
            return Err(ImageError::at(self.reg.display(), self.size, ErrorKind::NotPageAligned(len)));
        }
        let off = self.size;
        self.crc = Crc32c::from_value(super::crc32c::combine(self.crc.value(), crc, len));
        self.size += len;
        Ok(off)
    }

    /// Writes `pieces` back to back at `off`, a range [`PagesWriter::reserve`]
    /// returned; `name` for errors.
    pub fn write_reserved(fd: BorrowedFd<'_>, name: &str, pieces: &[&[u8]], off: u64) -> Result<()> {
        crate::sys::fs::pwritev_all(fd, pieces, off)
            .map_err(|e| ImageError::at(name, off, ErrorKind::Io(std::io::Error::from_raw_os_error(e.into_raw()))))
    }

    /// Creates `pages-<id>.img` in the same image directory.
    pub fn sibling(&self, id: u32) -> Result<PagesWriter> {
        self.reg.dir().create_pages(id)
    }

    /// The file, for [`PagesWriter::write_reserved`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Name of the file, for errors.
    pub fn name(&self) -> String {
        self.reg.display().to_string()
    }

    /// Pages written so far (= the page index of the next page).
    pub fn pages_written(&self) -> u64 {
        self.size / PAGE_SIZE as u64
    }

    /// Records the file for the inventory. Not synced (like CRIU's images):
    /// the inventory's checksum catches data a crash did not write out.
    pub fn finish(self) -> Result<InventoryEntry> {
        let (size, crc) = (self.size, self.crc.value());
        Ok(self.reg.complete(size, crc))
    }
}

/// Reads page data by page index.
pub struct PagesReader {
    file: File,
    name: String,
    size: u64,
    expected: Option<u32>,
    crc: Crc32c,
    verified_upto: u64,
}

impl PagesReader {
    /// Wraps an open pages file. `expected` is the inventory checksum
    /// (`None` when shown without an inventory: nothing to verify against).
    pub fn new(file: File, name: impl Into<String>, expected: Option<u32>) -> Result<Self> {
        let name = name.into();
        let size = file.metadata().map_err(|e| ImageError::io(&name, e))?.len();
        if size % PAGE_SIZE as u64 != 0 {
            return Err(ImageError::new(name, ErrorKind::NotPageAligned(size)));
        }
        Ok(PagesReader { file, name, size, expected, crc: Crc32c::new(), verified_upto: 0 })
    }

    /// Opens a pages file by path without an inventory (for `show -f`).
    pub fn open_unverified(path: &std::path::Path) -> Result<Self> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|e| ImageError::io(&name, e))?;
        if !f.metadata().map_err(|e| ImageError::io(&name, e))?.is_file() {
            return Err(ImageError::new(name, ErrorKind::NotRegular));
        }
        Self::new(f, name, None)
    }

    /// File name used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of pages in the file.
    pub fn nr_pages(&self) -> u64 {
        self.size / PAGE_SIZE as u64
    }

    /// The file, e.g. to pass to the restorer (which reads it with preadv).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Reads `buf.len() / 4096` pages starting at page `index` into `buf`.
    pub fn read_pages(&mut self, index: u64, buf: &mut [u8]) -> Result<()> {
        if buf.len() & (PAGE_SIZE - 1) != 0 {
            return Err(ImageError::new(&self.name, ErrorKind::NotPageAligned(buf.len() as u64)));
        }
        let count = (buf.len() / PAGE_SIZE) as u64;
        let total = self.nr_pages();
        if index.checked_add(count).is_none_or(|end| end > total) {
            return Err(ImageError::new(&self.name, ErrorKind::PagesOutOfRange { index, count, total }));
        }
        let off = index * PAGE_SIZE as u64;
        self.file.read_exact_at(buf, off).map_err(|e| ImageError::at(&self.name, off, ErrorKind::Io(e)))?;
        if off == self.verified_upto {
            self.crc.update(buf);
            self.verified_upto += buf.len() as u64;
        } else if off < self.verified_upto && off + buf.len() as u64 > self.verified_upto {
            let skip = (self.verified_upto - off) as usize;
            self.crc.update(&buf[skip..]);
            self.verified_upto = off + buf.len() as u64;
        }
        Ok(())
    }

    /// Completes the checksum over the pages not read in order yet and
    /// compares it with the inventory. Without an inventory checksum, only
    /// reads the file through.
    pub fn verify(&mut self) -> Result<()> {
        if self.verified_upto < self.size {
            let name = &self.name;
            self.file.seek(SeekFrom::Start(self.verified_upto)).map_err(|e| ImageError::io(name, e))?;
            let mut buf = vec![0u8; 1 << 20];
            let mut rest = self.size - self.verified_upto;
            while rest > 0 {
                let want = rest.min(buf.len() as u64) as usize;
                let at = self.size - rest;
                self.file.read_exact(&mut buf[..want]).map_err(|e| ImageError::at(name, at, ErrorKind::Io(e)))?;
                self.crc.update(&buf[..want]);
                rest -= want as u64;
            }
            self.verified_upto = self.size;
        }
        match self.expected {
            Some(exp) if exp != self.crc.value() => {
                Err(ImageError::new(&self.name, ErrorKind::ChecksumMismatch { expected: exp, found: self.crc.value() }))
            }
            _ => Ok(()),
        }
    }
}
