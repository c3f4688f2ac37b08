//! File header and record framing.
//!
//! Layout of a records image (all integers little endian):
//! ```text
//! header   magic "CRTOOLS\0" (8) | kind u32 | version u32 | crc32c(previous 16 bytes) u32
//! record   len u32 | len bytes of postcard | crc32c(bytes) u32     (first record: the head)
//! ...
//! end      0xffffffff u32 | record count u32 | crc32c(previous 8 bytes) u32
//! ```
//! Invariants: a reader never allocates more than the bytes actually present
//! (or the kind's record limit, whichever is smaller); it rejects a length above
//! the limit before reading, a truncated frame, a bad checksum, a record that
//! decodes without using all its bytes, a missing or damaged end marker, and
//! any byte after the end marker. Writers stream records and buffer only one.
use std::io::{self, Read, Write};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::crc32c::{crc32c, Crc32c};
use super::describe::{Describe, Node};
use super::error::{ErrorKind, ImageError, Result};
use super::kind::{ImageFormat, ImageKind, KindDesc, Layout};

/// The 8 bytes every records image starts with.
pub const MAGIC: [u8; 8] = *b"CRTOOLS\0";
/// Length of the file header.
pub const HEADER_LEN: usize = 20;
/// Frame length value that marks the end of the image.
pub const END_MARK: u32 = 0xffff_ffff;

/// Encodes the header of `kind` at its current version.
pub fn encode_header(kind: ImageKind) -> [u8; HEADER_LEN] {
    let d = kind.desc();
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&d.number.to_le_bytes());
    h[12..16].copy_from_slice(&d.version.to_le_bytes());
    let c = crc32c(&h[..16]);
    h[16..].copy_from_slice(&c.to_le_bytes());
    h
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// True when `b` starts with the image magic.
pub fn has_magic(b: &[u8]) -> bool {
    b.len() >= MAGIC.len() && b[..MAGIC.len()] == MAGIC
}

/// Validates a header; returns its kind's row.
pub fn parse_header(file: &str, h: &[u8]) -> Result<&'static KindDesc> {
    if h.len() < HEADER_LEN {
        return Err(ImageError::at(file, h.len() as u64, ErrorKind::TruncatedHeader));
    }
    if !has_magic(h) {
        return Err(ImageError::at(file, 0, ErrorKind::BadMagic));
    }
    if crc32c(&h[..16]) != le32(&h[16..20]) {
        return Err(ImageError::at(file, 16, ErrorKind::HeaderChecksum));
    }
    let number = le32(&h[8..12]);
    let kind = ImageKind::from_number(number).ok_or_else(|| ImageError::at(file, 8, ErrorKind::UnknownKind(number)))?;
    let d = kind.desc();
    if d.layout != Layout::Records {
        return Err(ImageError::at(
            file,
            8,
            ErrorKind::Invalid(format!("{} images are raw data and have no header", d.name)),
        ));
    }
    let version = le32(&h[12..16]);
    if version != d.version {
        return Err(ImageError::at(
            file,
            12,
            ErrorKind::UnknownVersion { kind: d.name, version, supported: d.version },
        ));
    }
    Ok(d)
}

/// Reads until `buf` is full or EOF; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Decodes one record, requiring every byte to be used.
pub fn decode<T: DeserializeOwned>(file: &str, offset: u64, bytes: &[u8]) -> Result<T> {
    let (v, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| ImageError::at(file, offset, ErrorKind::Decode(e)))?;
    if !rest.is_empty() {
        return Err(ImageError::at(file, offset, ErrorKind::RecordTrailingBytes(rest.len())));
    }
    Ok(v)
}

/// Reads the frames of one records image, untyped.
pub struct FrameReader<R> {
    r: R,
    file: String,
    desc: &'static KindDesc,
    max: u32,
    offset: u64,
    count: u32,
    done: bool,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Reads and validates the header. `file` names the source in errors.
    pub fn new(mut r: R, file: impl Into<String>) -> Result<Self> {
        let file = file.into();
        let mut h = [0u8; HEADER_LEN];
        let n = read_full(&mut r, &mut h).map_err(|e| ImageError::io(&file, e))?;
        let desc = parse_header(&file, &h[..n])?;
        Ok(FrameReader {
            r,
            file,
            desc,
            max: desc.max_record,
            offset: HEADER_LEN as u64,
            count: 0,
            done: false,
            buf: Vec::new(),
        })
    }

    /// The kind's row.
    pub fn desc(&self) -> &'static KindDesc {
        self.desc
    }

    /// The file name used in errors.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Overrides the record size limit for this reader.
    pub fn set_max_record(&mut self, max: u32) {
        self.max = max.min(END_MARK - 1);
    }

    fn err(&self, offset: u64, kind: ErrorKind) -> ImageError {
        ImageError::at(self.file.clone(), offset, kind)
    }

    fn read_u32s<const N: usize>(&mut self, at: u64) -> Result<Option<[u32; N]>> {
        let mut b = [0u8; 12];
        let want = N * 4;
        let n = read_full(&mut self.r, &mut b[..want]).map_err(|e| self.err(at, ErrorKind::Io(e)))?;
        if n == 0 {
            return Ok(None);
        }
        if n < want {
            return Err(self.err(at, ErrorKind::TruncatedRecord));
        }
        let mut out = [0u32; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = le32(&b[i * 4..]);
        }
        Ok(Some(out))
    }

    /// The next record: its frame offset and bytes; `None` after the end
    /// marker (which is checked, as is the absence of trailing bytes).
    pub fn next_frame(&mut self) -> Result<Option<(u64, &[u8])>> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let Some([len]) = self.read_u32s::<1>(at)? else {
            return Err(self.err(at, ErrorKind::MissingEndMarker));
        };
        if len == END_MARK {
            let tail = self.read_u32s::<2>(at + 4)?;
            let Some([count, crc]) = tail else {
                return Err(self.err(at, ErrorKind::TruncatedRecord));
            };
            let mut m = [0u8; 8];
            m[..4].copy_from_slice(&len.to_le_bytes());
            m[4..].copy_from_slice(&count.to_le_bytes());
            if crc32c(&m) != crc || count != self.count {
                return Err(self.err(at, ErrorKind::BadEndMarker));
            }
            let mut extra = [0u8; 1];
            let n = read_full(&mut self.r, &mut extra).map_err(|e| self.err(at, ErrorKind::Io(e)))?;
            if n != 0 {
                return Err(self.err(at + 12, ErrorKind::TrailingGarbage));
            }
            self.done = true;
            return Ok(None);
        }
        if len > self.max {
            return Err(self.err(at, ErrorKind::RecordTooLarge { len: len as u64, max: self.max }));
        }
        // Grows with the bytes actually read, so a lying length cannot make
        // us allocate more than the file holds.
        self.buf.clear();
        let got =
            (&mut self.r).take(len as u64).read_to_end(&mut self.buf).map_err(|e| self.err(at, ErrorKind::Io(e)))?;
        if got != len as usize {
            return Err(self.err(at, ErrorKind::TruncatedRecord));
        }
        let Some([stored]) = self.read_u32s::<1>(at + 4 + len as u64)? else {
            return Err(self.err(at, ErrorKind::TruncatedRecord));
        };
        let computed = crc32c(&self.buf);
        if stored != computed {
            return Err(self.err(at, ErrorKind::RecordChecksum { stored, computed }));
        }
        self.offset = at + 8 + len as u64;
        self.count += 1;
        Ok(Some((at, &self.buf)))
    }

    /// The next record decoded as `T`; `Ok(None)` at the end.
    pub fn next_record<T: DeserializeOwned>(&mut self) -> Result<Option<(u64, T)>> {
        let at = match self.next_frame()? {
            None => return Ok(None),
            Some((at, _)) => at,
        };
        let v = decode::<T>(&self.file, at, &self.buf)?;
        Ok(Some((at, v)))
    }
}

/// A typed reader: the head, then an iterator of entries.
/// The iterator stops after the first error.
pub struct ImageReader<F: ImageFormat, R> {
    frames: FrameReader<R>,
    head: F::Head,
    failed: bool,
}

impl<F: ImageFormat, R: Read> ImageReader<F, R> {
    /// Reads the header (which must be of kind `F::KIND`) and the head.
    pub fn new(r: R, file: impl Into<String>) -> Result<Self> {
        let mut frames = FrameReader::new(r, file)?;
        let found = frames.desc();
        if found.kind != F::KIND {
            return Err(ImageError::at(
                frames.file(),
                8,
                ErrorKind::WrongKind { expected: F::KIND.name(), found: found.name },
            ));
        }
        let at = frames.offset;
        let head = match frames.next_record::<F::Head>()? {
            Some((_, h)) => h,
            None => {
                return Err(ImageError::at(frames.file(), at, ErrorKind::Invalid("image has no head record".into())))
            }
        };
        Ok(ImageReader { frames, head, failed: false })
    }

    /// The head record.
    pub fn head(&self) -> &F::Head {
        &self.head
    }

    /// All entries, or the first error.
    pub fn collect_entries(self) -> Result<(F::Head, Vec<F::Entry>)> {
        let mut v = Vec::new();
        let mut me = self;
        while let Some(e) = me.next_entry()? {
            v.push(e);
        }
        Ok((me.head, v))
    }

    /// The next entry, `Ok(None)` after the end marker.
    pub fn next_entry(&mut self) -> Result<Option<F::Entry>> {
        Ok(self.frames.next_record::<F::Entry>()?.map(|(_, e)| e))
    }
}

impl<F: ImageFormat, R: Read> Iterator for ImageReader<F, R> {
    type Item = Result<F::Entry>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Writes the frames of one records image, untyped.
pub struct FrameWriter<W: Write> {
    w: W,
    file: String,
    max: u32,
    count: u32,
    offset: u64,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    /// Writes the header of `kind`.
    pub fn new(mut w: W, file: impl Into<String>, kind: ImageKind) -> Result<Self> {
        let file = file.into();
        let d = kind.desc();
        if d.layout != Layout::Records {
            return Err(ImageError::new(
                file,
                ErrorKind::Invalid(format!("{} images hold raw pages, not records", d.name)),
            ));
        }
        w.write_all(&encode_header(kind)).map_err(|e| ImageError::io(&file, e))?;
        Ok(FrameWriter { w, file, max: d.max_record, count: 0, offset: HEADER_LEN as u64, buf: Vec::new() })
    }

    /// Encodes and writes one record.
    pub fn write_record<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        let at = self.offset;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let buf = postcard::to_extend(v, buf).map_err(|e| ImageError::at(&self.file, at, ErrorKind::Encode(e)))?;
        let len = buf.len() as u64;
        if len > self.max as u64 {
            self.buf = buf;
            return Err(ImageError::at(&self.file, at, ErrorKind::RecordTooLarge { len, max: self.max }));
        }
        let res = (|| {
            self.w.write_all(&(len as u32).to_le_bytes())?;
            self.w.write_all(&buf)?;
            self.w.write_all(&crc32c(&buf).to_le_bytes())
        })();
        self.buf = buf;
        res.map_err(|e| ImageError::at(&self.file, at, ErrorKind::Io(e)))?;
        self.offset += 8 + len;
        self.count += 1;
        Ok(())
    }

    /// Writes the end marker and flushes; returns the sink.
    pub fn finish(mut self) -> Result<W> {
        let mut m = [0u8; 12];
        m[..4].copy_from_slice(&END_MARK.to_le_bytes());
        m[4..8].copy_from_slice(&self.count.to_le_bytes());
        let c = crc32c(&m[..8]);
        m[8..].copy_from_slice(&c.to_le_bytes());
        let at = self.offset;
        self.w
            .write_all(&m)
            .and_then(|_| self.w.flush())
            .map_err(|e| ImageError::at(&self.file, at, ErrorKind::Io(e)))?;
        Ok(self.w)
    }
}

/// A typed writer: the head is written on creation, then entries.
pub struct ImageWriter<F: ImageFormat, W: Write> {
    frames: FrameWriter<W>,
    _f: PhantomData<F>,
}

impl<F: ImageFormat, W: Write> ImageWriter<F, W> {
    /// Writes the header and `head`.
    pub fn new(w: W, file: impl Into<String>, head: &F::Head) -> Result<Self> {
        let mut frames = FrameWriter::new(w, file, F::KIND)?;
        frames.write_record(head)?;
        Ok(ImageWriter { frames, _f: PhantomData })
    }

    /// Writes one entry.
    pub fn write(&mut self, e: &F::Entry) -> Result<()> {
        self.frames.write_record(e)
    }

    /// Writes the end marker and flushes; returns the sink.
    pub fn finish(self) -> Result<W> {
        self.frames.finish()
    }
}

/// A [`Write`] adapter that checksums and counts everything written.
pub struct CrcWriter<W> {
    inner: W,
    crc: Crc32c,
    size: u64,
}

impl<W: Write> CrcWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        CrcWriter { inner, crc: Crc32c::new(), size: 0 }
    }
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Checksum of the bytes written so far.
    pub fn crc(&self) -> u32 {
        self.crc.value()
    }
    /// The wrapped sink.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
    /// The wrapped sink.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Frame reader over any boxed source, as the show decoders take it.
pub type DynFrames = FrameReader<Box<dyn Read>>;

/// Where a described record sits in its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordPos {
    /// The head record, at this file offset.
    Head(u64),
    /// The n-th entry (from 0), at this file offset.
    Entry(u64, u64),
}

/// Receives the described records of an image.
pub type NodeSink<'a> = dyn FnMut(RecordPos, Node) -> io::Result<()> + 'a;

/// A failure while streaming described records.
#[derive(Debug)]
pub enum ShowStreamError {
    /// The image is bad.
    Image(ImageError),
    /// Writing the output failed.
    Output(io::Error),
}

impl From<ImageError> for ShowStreamError {
    fn from(e: ImageError) -> Self {
        ShowStreamError::Image(e)
    }
}

/// Decodes every record of a `F` image and hands its description to `sink`.
pub(crate) fn show_records<F: ImageFormat>(
    frames: &mut DynFrames,
    sink: &mut NodeSink<'_>,
) -> std::result::Result<(), ShowStreamError> {
    let Some((at, head)) = frames.next_record::<F::Head>()? else {
        return Err(ImageError::at(
            frames.file(),
            HEADER_LEN as u64,
            ErrorKind::Invalid("image has no head record".into()),
        )
        .into());
    };
    sink(RecordPos::Head(at), head.describe()).map_err(ShowStreamError::Output)?;
    let mut i = 0;
    while let Some((at, e)) = frames.next_record::<F::Entry>()? {
        sink(RecordPos::Entry(i, at), e.describe()).map_err(ShowStreamError::Output)?;
        i += 1;
    }
    Ok(())
}
