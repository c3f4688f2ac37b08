//! The image directory.
//!
//! Writing ([`ImageDir`]): the directory is created 0700 if missing; each
//! image is created 0600 with `O_CREAT|O_EXCL|O_NOFOLLOW` relative to the
//! directory's open descriptor; every finished image's size and CRC-32C are
//! recorded, and [`ImageDir::finish`] writes `inventory.img` last, under a
//! temporary name renamed into place after an fsync, so a crash never leaves
//! a valid-looking inventory.
//!
//! Reading ([`ImageDirReader`]): a directory without `inventory.img` is an
//! incomplete dump and is refused. Every image is opened `O_NOFOLLOW`
//! relative to the directory descriptor, must be a regular file listed in
//! the inventory, and its size and checksum are verified before any record
//! is handed out (page data: lazily, see [`PagesReader`]).
//!
//! Invariants: file names match `[A-Za-z0-9._-]+`, contain no `..` and are
//! never `.`; nothing is ever resolved through a symlink inside the directory.
//! Files are opened through `/proc/self/fd/<dirfd>/<name>`: the magic link
//! resolves to the directory we opened (not to whatever its path names now),
//! and `O_NOFOLLOW` refuses a symlink as the final component. This needs
//! `/proc`, which the tool needs anyway; switch to `openat(2)` once the sys
//! layer has it.
use std::collections::BTreeMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use linux_raw_sys::general::{O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK};

use super::codec::{CrcWriter, DynFrames, FrameReader, ImageReader, ImageWriter};
use super::crc32c::Crc32c;
use super::error::{ErrorKind, ImageError, Result};
use super::inventory::{InventoryEntry, InventoryHead};
use super::kind::{kinds, ImageFormat, ImageKind, Layout};
use super::pages::{PagesReader, PagesWriter};

/// Name of the inventory image.
pub const INVENTORY: &str = "inventory.img";
const INVENTORY_TMP: &str = "inventory.img.tmp";
const MAX_NAME: usize = 255;

/// Checks that `name` is a plain file name of ours.
pub fn validate_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > MAX_NAME {
        return Err("name too long");
    }
    if name.contains('/') {
        return Err("name contains '/'");
    }
    if name.contains("..") || name == "." {
        return Err("name contains '..' or is '.'");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("name has characters outside [A-Za-z0-9._-]");
    }
    Ok(())
}

fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(O_DIRECTORY as i32).open(path)
}

/// The path that opens `name` relative to the directory descriptor `dir`.
fn at(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), name))
}

fn display(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn open_read_at(dir: &File, dir_path: &Path, name: &str) -> Result<File> {
    let shown = display(dir_path, name);
    validate_name(name).map_err(|w| ImageError::new(&shown, ErrorKind::BadName(w)))?;
    // O_NONBLOCK: a planted fifo must not block us; no effect on regular files.
    let f = OpenOptions::new()
        .read(true)
        .custom_flags((O_NOFOLLOW | O_NONBLOCK) as i32)
        .open(at(dir, name))
        .map_err(|e| ImageError::io(&shown, e))?;
    let md = f.metadata().map_err(|e| ImageError::io(&shown, e))?;
    if !md.is_file() {
        return Err(ImageError::new(shown, ErrorKind::NotRegular));
    }
    Ok(f)
}

/// State of one file being written.
enum Slot {
    Writing,
    Abandoned,
    Done(InventoryEntry),
}

struct State {
    files: BTreeMap<String, Slot>,
    root_pid: Option<u32>,
    /// The inventory is written: the dump is complete.
    finished: bool,
}

pub(crate) struct Inner {
    dir: File,
    path: PathBuf,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only plain data behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A dump that ends without its inventory (it failed) takes back every
/// image it created: nothing half-written is left to mix with the next
/// dump into the same directory (which would otherwise find its names
/// taken).
impl Drop for Inner {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if st.finished {
            return;
        }
        for name in st.files.keys().map(String::as_str).chain([INVENTORY_TMP]) {
            let _ = std::fs::remove_file(at(&self.dir, name));
        }
    }
}

/// A file of the directory being written; registers it on completion.
/// Dropped without [`Registration::complete`], the file is marked abandoned
/// and [`ImageDir::finish`] refuses to write an inventory.
pub(crate) struct Registration {
    inner: Arc<Inner>,
    name: String,
    kind: ImageKind,
    done: bool,
}

impl Registration {
    pub(crate) fn display(&self) -> String {
        display(&self.inner.path, &self.name)
    }

    /// The image directory the file is in.
    pub(crate) fn dir(&self) -> ImageDir {
        ImageDir { inner: self.inner.clone() }
    }

    /// Records the finished file (after it was synced).
    pub(crate) fn complete(mut self, size: u64, checksum: u32) -> InventoryEntry {
        let e = InventoryEntry { kind: self.kind, name: self.name.clone(), size, checksum };
        self.inner.lock().files.insert(self.name.clone(), Slot::Done(e.clone()));
        self.done = true;
        e
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.done {
            self.inner.lock().files.insert(self.name.clone(), Slot::Abandoned);
        }
    }
}

/// An image directory being written. Cheap to share between threads
/// (`&ImageDir` is enough to create images concurrently).
pub struct ImageDir {
    inner: Arc<Inner>,
}

impl ImageDir {
    /// Opens (creating it 0700 if missing) `path` for a new dump. Refuses a
    /// directory that already holds an inventory.
    pub fn create(path: impl AsRef<Path>) -> Result<ImageDir> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ImageError::io(shown, e)),
        }
        let dir = open_dir(&path).map_err(|e| ImageError::io(&shown, e))?;
        match std::fs::symlink_metadata(at(&dir, INVENTORY)) {
            Ok(_) => {
                return Err(ImageError::new(
                    display(&path, INVENTORY),
                    ErrorKind::Invalid("the directory already holds a dump".into()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(shown, e)),
        }
        // Images without an inventory are what a dump killed before it
        // could take them back left: not a dump, removed so that this one
        // does not mix with them (only names of image kinds, never a link).
        if let Ok(entries) = std::fs::read_dir(&path) {
            for name in entries.flatten().filter_map(|e| e.file_name().into_string().ok()) {
                if name == INVENTORY_TMP || ImageKind::parse_file_name(&name).is_some() {
                    log::info!("removing {}: left by a dump that did not finish", display(&path, &name));
                    let _ = std::fs::remove_file(at(&dir, &name));
                }
            }
        }
        let state = State { files: BTreeMap::new(), root_pid: None, finished: false };
        Ok(ImageDir { inner: Arc::new(Inner { dir, path, state: Mutex::new(state) }) })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Records the root pid of the dumped tree in the inventory.
    pub fn set_root_pid(&self, pid: u32) {
        self.inner.lock().root_pid = Some(pid);
    }

    /// Creates `name` for writing and reserves it.
    pub(crate) fn create_file(&self, kind: ImageKind, id: Option<u32>) -> Result<(File, Registration)> {
        let d = kind.desc();
        let name = kind.file_name(id).ok_or_else(|| {
            ImageError::new(
                display(&self.inner.path, d.pattern),
                ErrorKind::Invalid(format!(
                    "{} image names {} an id",
                    d.name,
                    if id.is_some() { "take no" } else { "need" }
                )),
            )
        })?;
        let shown = display(&self.inner.path, &name);
        crate::fault::check_image(crate::fault::Fault::DumpImageWrite, &shown)?;
        validate_name(&name).map_err(|w| ImageError::new(&shown, ErrorKind::BadName(w)))?;
        if kind == ImageKind::Inventory {
            return Err(ImageError::new(shown, ErrorKind::Invalid("the inventory is written by finish()".into())));
        }
        {
            let mut st = self.inner.lock();
            if st.files.contains_key(&name) {
                return Err(ImageError::new(shown, ErrorKind::AlreadyExists));
            }
            st.files.insert(name.clone(), Slot::Writing);
        }
        match create_at(&self.inner.dir, &name) {
            Ok(file) => Ok((file, Registration { inner: self.inner.clone(), name, kind, done: false })),
            Err(e) => {
                // Nothing was created: forget the reservation.
                self.inner.lock().files.remove(&name);
                Err(ImageError::io(shown, e))
            }
        }
    }

    /// Creates a records image of kind `F` (with `id` iff its name has one)
    /// and writes its head.
    pub fn create_image<F: ImageFormat>(&self, id: Option<u32>, head: &F::Head) -> Result<RecordFile<F>> {
        let (file, reg) = self.create_file(F::KIND, id)?;
        let w = BufWriter::with_capacity(64 << 10, CrcWriter::new(file));
        let w = ImageWriter::new(w, reg.display(), head)?;
        Ok(RecordFile { w, reg })
    }

    /// Creates `pages-<id>.img`.
    pub fn create_pages(&self, id: u32) -> Result<PagesWriter> {
        let (file, reg) = self.create_file(ImageKind::Pages, Some(id))?;
        Ok(PagesWriter::new(file, reg))
    }

    /// Writes `inventory.img` listing every finished image. Fails (writing no
    /// inventory) if any image is still open or was dropped unfinished.
    pub fn finish(self) -> Result<Vec<InventoryEntry>> {
        let inner = &self.inner;
        let (entries, root_pid) = {
            let st = inner.lock();
            let open: Vec<&str> = st
                .files
                .iter()
                .filter(|(_, s)| matches!(s, Slot::Writing | Slot::Abandoned))
                .map(|(n, _)| n.as_str())
                .collect();
            if !open.is_empty() {
                return Err(ImageError::new(
                    inner.path.display().to_string(),
                    ErrorKind::Invalid(format!("images not finished: {}", open.join(", "))),
                ));
            }
            let mut v: Vec<InventoryEntry> = st
                .files
                .values()
                .filter_map(|s| match s {
                    Slot::Done(e) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            v.sort_by_key(|e| sort_key(&e.name));
            (v, st.root_pid)
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let head = InventoryHead {
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_sec: now.as_secs(),
            created_nsec: now.subsec_nanos(),
            root_pid,
        };
        let tmp_shown = display(&inner.path, INVENTORY_TMP);
        match std::fs::remove_file(at(&inner.dir, INVENTORY_TMP)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(tmp_shown, e)),
        }
        let file = create_at(&inner.dir, INVENTORY_TMP).map_err(|e| ImageError::io(&tmp_shown, e))?;
        let mut w = ImageWriter::<kinds::Inventory, _>::new(BufWriter::new(file), &tmp_shown, &head)?;
        for e in &entries {
            w.write(e)?;
        }
        let file = w.finish()?.into_inner().map_err(|e| ImageError::io(&tmp_shown, e.into_error()))?;
        file.sync_all().map_err(|e| ImageError::io(&tmp_shown, e))?;
        drop(file);
        std::fs::rename(at(&inner.dir, INVENTORY_TMP), at(&inner.dir, INVENTORY))
            .map_err(|e| ImageError::io(display(&inner.path, INVENTORY), e))?;
        inner.lock().finished = true;
        inner.dir.sync_all().map_err(|e| ImageError::io(inner.path.display().to_string(), e))?;
        Ok(entries)
    }
}

/// Takes back a finished dump (one that failed after writing its
/// inventory): the inventory first, so the directory no longer claims to
/// hold a complete dump, then the images it lists.
pub fn withdraw(path: &Path) -> Result<()> {
    let listed = ImageDirReader::open(path).map(|r| r.images).unwrap_or_default();
    let shown = display(path, INVENTORY);
    let dir = open_dir(path).map_err(|e| ImageError::io(&shown, e))?;
    std::fs::remove_file(at(&dir, INVENTORY)).map_err(|e| ImageError::io(&shown, e))?;
    dir.sync_all().map_err(|e| ImageError::io(&shown, e))?;
    for e in listed.iter().filter(|e| validate_name(&e.name).is_ok()) {
        let _ = std::fs::remove_file(at(&dir, &e.name));
    }
    Ok(())
}

fn create_at(dir: &File, name: &str) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(O_NOFOLLOW as i32).open(at(dir, name))
}

/// Writes a one-record image of kind `F` (no id) next to a dump, outside its
/// inventory: the run's statistics. Replaces an earlier one atomically
/// (written under a temporary name, then renamed), 0600, never through a
/// symlink.
pub fn write_side_image<F: ImageFormat<Entry = ()>>(path: &Path, head: &F::Head) -> Result<()> {
    let name = F::KIND.file_name(None).expect("a side image has no id");
    let shown = display(path, &name);
    let dir = open_dir(path).map_err(|e| ImageError::io(&shown, e))?;
    let tmp = format!("{name}.tmp");
    let _ = std::fs::remove_file(at(&dir, &tmp));
    let file = create_at(&dir, &tmp).map_err(|e| ImageError::io(&shown, e))?;
    let w = ImageWriter::<F, _>::new(BufWriter::new(file), shown.clone(), head)?;
    w.finish()?;
    std::fs::rename(at(&dir, &tmp), at(&dir, &name)).map_err(|e| ImageError::io(&shown, e))
}

/// Order of images: inventory, then by kind number, then by id, then name.
pub fn sort_key(name: &str) -> (u32, u64, String) {
    match ImageKind::parse_file_name(name) {
        Some((k, id)) => (k.desc().number, id.map_or(0, |i| i as u64 + 1), name.to_owned()),
        None => (u32::MAX, 0, name.to_owned()),
    }
}

/// A records image being written into an [`ImageDir`].
pub struct RecordFile<F: ImageFormat> {
    w: ImageWriter<F, BufWriter<CrcWriter<File>>>,
    reg: Registration,
}

impl<F: ImageFormat> RecordFile<F> {
    /// Writes one entry.
    pub fn write(&mut self, e: &F::Entry) -> Result<()> {
        self.w.write(e)
    }

    /// Ends the image and records it for the inventory. Not synced: the
    /// inventory's checksums catch an image a crash left incomplete.
    pub fn finish(self) -> Result<InventoryEntry> {
        let shown = self.reg.display();
        let cw = self.w.finish()?.into_inner().map_err(|e| ImageError::io(&shown, e.into_error()))?;
        Ok(self.reg.complete(cw.size(), cw.crc()))
    }
}

/// A complete dump opened for reading.
pub struct ImageDirReader {
    dir: File,
    path: PathBuf,
    head: InventoryHead,
    images: Vec<InventoryEntry>,
}

impl ImageDirReader {
    /// Opens `path`; refuses it unless it holds a valid `inventory.img`.
    pub fn open(path: impl AsRef<Path>) -> Result<ImageDirReader> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let dir = open_dir(&path).map_err(|e| ImageError::io(&shown, e))?;
        let inv_shown = display(&path, INVENTORY);
        let f = match open_read_at(&dir, &path, INVENTORY) {
            Ok(f) => f,
            Err(ImageError { kind: ErrorKind::Io(e), .. }) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::new(shown, ErrorKind::NoInventory))
            }
            Err(e) => return Err(e),
        };
        let r = ImageReader::<kinds::Inventory, _>::new(BufReader::new(f), &inv_shown)?;
        let (head, images) = r.collect_entries()?;
        let mut seen = std::collections::HashSet::new();
        for e in &images {
            let bad = |why: String| ImageError::new(&inv_shown, ErrorKind::Invalid(why));
            validate_name(&e.name).map_err(|w| bad(format!("lists {:?}: {w}", e.name)))?;
            match ImageKind::parse_file_name(&e.name) {
                Some((k, _)) if k == e.kind && k != ImageKind::Inventory => {}
                _ => return Err(bad(format!("lists {} as a {} image", e.name, e.kind))),
            }
            if !seen.insert(e.name.as_str()) {
                return Err(bad(format!("lists {} twice", e.name)));
            }
        }
        Ok(ImageDirReader { dir, path, head, images })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tool version, time and root pid of the dump.
    pub fn inventory(&self) -> &InventoryHead {
        &self.head
    }

    /// Every image of the dump (inventory excluded), in kind order.
    pub fn images(&self) -> &[InventoryEntry] {
        &self.images
    }

    /// The inventory entry of `name`.
    pub fn entry(&self, name: &str) -> Option<&InventoryEntry> {
        self.images.iter().find(|e| e.name == name)
    }

    /// True if the dump holds the image of `kind` and `id`.
    pub fn contains(&self, kind: ImageKind, id: Option<u32>) -> bool {
        kind.file_name(id).is_some_and(|n| self.entry(&n).is_some())
    }

    pub(crate) fn name_of(&self, kind: ImageKind, id: Option<u32>) -> Result<String> {
        kind.file_name(id).ok_or_else(|| {
            ImageError::new(display(&self.path, kind.desc().pattern), ErrorKind::Invalid("wrong use of an id".into()))
        })
    }

    /// Opens `name` and checks it against its inventory entry (size now,
    /// checksum only if `full`). Returns the file positioned at 0.
    fn open_checked(&self, name: &str, full: bool) -> Result<(File, &InventoryEntry)> {
        let shown = display(&self.path, name);
        crate::fault::check_image(crate::fault::Fault::RestoreImageRead, &shown)?;
        let e = self.entry(name).ok_or_else(|| ImageError::new(&shown, ErrorKind::NotInInventory))?;
        let mut f = open_read_at(&self.dir, &self.path, name)?;
        let size = f.metadata().map_err(|er| ImageError::io(&shown, er))?.len();
        if size != e.size {
            return Err(ImageError::new(shown, ErrorKind::SizeMismatch { expected: e.size, found: size }));
        }
        if full {
            let (n, crc) = checksum_stream(&mut f).map_err(|er| ImageError::io(&shown, er))?;
            if n != e.size {
                return Err(ImageError::new(shown, ErrorKind::SizeMismatch { expected: e.size, found: n }));
            }
            if crc != e.checksum {
                return Err(ImageError::new(shown, ErrorKind::ChecksumMismatch { expected: e.checksum, found: crc }));
            }
            f.seek(SeekFrom::Start(0)).map_err(|er| ImageError::io(&shown, er))?;
        }
        Ok((f, e))
    }

    /// Verifies size and checksum of `name` against the inventory (streaming).
    pub fn verify(&self, name: &str) -> Result<()> {
        self.open_checked(name, true).map(|_| ())
    }

    /// Verifies every image of the dump (restore does this before acting).
    pub fn verify_all(&self) -> Result<()> {
        self.images.iter().try_for_each(|e| self.verify(&e.name))
    }

    /// Opens a records image of kind `F`, verified against the inventory.
    pub fn open_image<F: ImageFormat>(&self, id: Option<u32>) -> Result<ImageReader<F, BufReader<File>>> {
        let name = self.name_of(F::KIND, id)?;
        let (f, _) = self.open_checked(&name, true)?;
        ImageReader::new(BufReader::with_capacity(64 << 10, f), display(&self.path, &name))
    }

    /// Opens any records image by name, untyped, verified against the inventory.
    pub fn open_frames(&self, name: &str) -> Result<DynFrames> {
        let (f, e) = self.open_checked(name, true)?;
        if e.kind.desc().layout != Layout::Records {
            return Err(ImageError::new(
                display(&self.path, name),
                ErrorKind::Invalid("raw pages, not records".into()),
            ));
        }
        let r: Box<dyn Read> = Box::new(BufReader::with_capacity(64 << 10, f));
        FrameReader::new(r, display(&self.path, name))
    }

    /// Opens `pages-<id>.img`. Its size is checked now; its checksum as the
    /// pages are read and completed by [`PagesReader::verify`].
    pub fn open_pages(&self, id: u32) -> Result<PagesReader> {
        let name = self.name_of(ImageKind::Pages, Some(id))?;
        self.open_pages_by_name(&name)
    }

    /// Opens a task's pages image, stripe by stripe (see
    /// [`super::pagemap::PagemapHead`]).
    pub fn open_task_pages(&self, head: &super::pagemap::PagemapHead) -> Result<Vec<PagesReader>> {
        head.ids().map(|id| self.open_pages(id)).collect()
    }

    /// Like [`Self::open_pages`], by file name.
    pub fn open_pages_by_name(&self, name: &str) -> Result<PagesReader> {
        let (f, e) = self.open_checked(name, false)?;
        if e.kind != ImageKind::Pages {
            return Err(ImageError::new(display(&self.path, name), ErrorKind::Invalid("not a pages image".into())));
        }
        PagesReader::new(f, display(&self.path, name), Some(e.checksum))
    }
}

/// Reads `r` to its end; returns its length and CRC-32C.
pub(crate) fn checksum_stream(r: &mut impl Read) -> io::Result<(u64, u32)> {
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = Crc32c::new();
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok((n, crc.value())),
            Ok(k) => {
                crc.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
