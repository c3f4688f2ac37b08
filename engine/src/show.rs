//! Decoding of any image for `crtools show`.
//!
//! Interface used by the CLI: [`show`] with [`ShowOptions`].
//!
//! `-D dir` shows the inventory, then every image it lists in kind order
//! (each verified against the inventory); `-f file` shows one image, kind
//! taken from its header (works without an inventory; a `pages-<id>.img`
//! file is shown as raw pages). `-c` adds page contents as an
//! address-labelled hex dump (runs of identical lines collapse to `*`).
//! Output is text, or JSON with `json` (one object; hex values and flags as
//! strings). Decoding is streaming: one record (or one 64 KiB chunk of pages)
//! at a time. Invariant: bad input gives an [`ShowError::Image`] naming the
//! file and offset, never a panic.
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::image::codec::{has_magic, DynFrames, FrameReader, RecordPos, ShowStreamError, HEADER_LEN};
use crate::image::describe::{write_json, write_json_str, write_text, Describe, Node};
use crate::image::pagemap::{PagemapEntry, PagemapHead};
use crate::image::{ImageDirReader, ImageError, ImageKind, KindDesc, Layout, PagesReader, PAGE_SIZE};

/// What to show and how.
#[derive(Clone, Debug, Default)]
pub struct ShowOptions {
    /// `-D`: every image of this directory.
    pub dir: Option<PathBuf>,
    /// `-f`: this one image file.
    pub file: Option<PathBuf>,
    /// `-c`: page contents as hex.
    pub contents: bool,
    /// `--json`: machine-readable output.
    pub json: bool,
}

/// Why showing failed.
#[derive(Debug)]
pub enum ShowError {
    /// Neither a directory nor a file was given.
    NothingToShow,
    /// An image is missing, damaged or inconsistent.
    Image(ImageError),
    /// Writing the output failed.
    Output(io::Error),
    /// Any other failure, with its message.
    Other(String),
}

impl std::fmt::Display for ShowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShowError::NothingToShow => write!(f, "show needs -D <dir> or -f <file>"),
            ShowError::Image(e) => write!(f, "{e}"),
            ShowError::Output(e) => write!(f, "writing output: {e}"),
            ShowError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ShowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShowError::Image(e) => Some(e),
            ShowError::Output(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ImageError> for ShowError {
    fn from(e: ImageError) -> Self {
        ShowError::Image(e)
    }
}

impl From<io::Error> for ShowError {
    fn from(e: io::Error) -> Self {
        ShowError::Output(e)
    }
}

impl From<ShowStreamError> for ShowError {
    fn from(e: ShowStreamError) -> Self {
        match e {
            ShowStreamError::Image(e) => ShowError::Image(e),
            ShowStreamError::Output(e) => ShowError::Output(e),
        }
    }
}

type Res<T = ()> = Result<T, ShowError>;

/// Decodes the images `opts` names to `out`.
pub fn show(opts: &ShowOptions, out: &mut dyn Write) -> Result<(), ShowError> {
    let mut out = io::BufWriter::new(out);
    match (&opts.dir, &opts.file) {
        (None, None) => return Err(ShowError::NothingToShow),
        // `-D dir -f name`: that one file of the directory.
        (Some(d), Some(f)) if f.is_relative() => show_file(&d.join(f), opts, &mut out)?,
        (_, Some(f)) => show_file(f, opts, &mut out)?,
        (Some(d), None) => show_dir(d, opts, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// Streams one image object (text block or JSON object) to the output.
struct ImageOut<'a> {
    w: &'a mut dyn Write,
    json: bool,
    entries: u64,
    in_entries: bool,
}

impl<'a> ImageOut<'a> {
    /// Starts an image: title line / `{"file":..,"kind":..`.
    fn begin(w: &'a mut dyn Write, json: bool, file: &str, d: &KindDesc) -> io::Result<Self> {
        if json {
            w.write_all(b"{\"file\":")?;
            write_json_str(w, file)?;
            w.write_all(b",\"kind\":")?;
            write_json_str(w, d.name)?;
            if d.layout == Layout::Records {
                write!(w, ",\"version\":{}", d.version)?;
            }
        } else {
            match d.layout {
                Layout::Records => writeln!(w, "== {file}: {} image, format {} ==", d.name, d.version)?,
                Layout::RawPages => writeln!(w, "== {file}: {} (raw page data) ==", d.name)?,
            }
        }
        Ok(ImageOut { w, json, entries: 0, in_entries: false })
    }

    /// A named top-level field (JSON) / `key: value` line (text).
    fn field(&mut self, key: &str, v: &Node) -> io::Result<()> {
        if self.json {
            write!(self.w, ",")?;
            write_json_str(self.w, key)?;
            self.w.write_all(b":")?;
            write_json(self.w, v)
        } else {
            write_text(self.w, &Node::Object(vec![(key.to_owned().into(), v.clone())]), 0)
        }
    }

    fn record(&mut self, pos: RecordPos, node: Node) -> io::Result<()> {
        match pos {
            RecordPos::Head(_) => {
                if self.json {
                    self.w.write_all(b",\"head\":")?;
                    write_json(self.w, &node)?;
                } else if node != Node::Null {
                    write_text(self.w, &node, 0)?;
                }
            }
            RecordPos::Entry(i, _) => {
                if self.json {
                    self.w.write_all(if i == 0 { b",\"entries\":[\n" } else { b",\n" })?;
                    self.in_entries = true;
                    write_json(self.w, &node)?;
                } else {
                    write_entry_text(self.w, i, &node)?;
                }
                self.entries += 1;
            }
        }
        Ok(())
    }

    fn end(self) -> io::Result<()> {
        if self.json {
            if self.in_entries {
                self.w.write_all(b"]")?;
            } else {
                self.w.write_all(b",\"entries\":[]")?;
            }
            self.w.write_all(b"}")
        } else {
            writeln!(self.w)
        }
    }
}

fn write_entry_text(w: &mut dyn Write, i: u64, node: &Node) -> io::Result<()> {
    // One entry as `[i] ...`, via the array renderer with the right index.
    let mut buf = Vec::new();
    write_text(&mut buf, &Node::Array(vec![node.clone()]), 0)?;
    let s = String::from_utf8_lossy(&buf);
    let s = s.strip_prefix("[0]").unwrap_or(&s);
    write!(w, "[{i}]{s}")
}

fn show_dir(path: &Path, opts: &ShowOptions, out: &mut dyn Write) -> Res {
    let dir = ImageDirReader::open(path)?;
    if opts.json {
        out.write_all(b"{\"dir\":")?;
        write_json_str(out, &path.display().to_string())?;
        out.write_all(b",\"images\":[\n")?;
    } else {
        writeln!(out, "dump in {}", path.display())?;
        writeln!(out)?;
    }
    // Inventory first (already parsed and validated by open).
    {
        let inv = ImageKind::Inventory.desc();
        let mut o = ImageOut::begin(out, opts.json, "inventory.img", inv)?;
        o.record(RecordPos::Head(0), dir.inventory().describe())?;
        for (i, e) in dir.images().iter().enumerate() {
            o.record(RecordPos::Entry(i as u64, 0), e.describe())?;
        }
        o.end()?;
    }
    // Which pagemap describes which pages file, as which stripe (heads only).
    let mut pagemap_of: HashMap<u32, (String, u8)> = HashMap::new();
    for e in dir.images().iter().filter(|e| e.kind == ImageKind::Pagemap) {
        let mut fr = dir.open_frames(&e.name)?;
        if let Some((_, h)) = fr.next_record::<PagemapHead>()? {
            for (k, id) in h.ids().enumerate() {
                pagemap_of.insert(id, (e.name.clone(), k as u8));
            }
        }
    }
    let mut images: Vec<_> = dir.images().iter().collect();
    images.sort_by_key(|e| crate::image::dir::sort_key(&e.name));
    for e in images {
        if opts.json {
            out.write_all(b",\n")?;
        }
        match e.kind.desc().layout {
            Layout::Records => {
                let mut fr = dir.open_frames(&e.name)?;
                show_frames(&mut fr, &e.name, opts.json, out)?;
            }
            Layout::RawPages => {
                let id = ImageKind::parse_file_name(&e.name).and_then(|(_, id)| id).unwrap_or(0);
                let mut pages = dir.open_pages_by_name(&e.name)?;
                let pagemap = match pagemap_of.get(&id) {
                    Some((n, k)) => Some((n.clone(), *k, dir.open_frames(n)?)),
                    None => None,
                };
                show_pages(&mut pages, &e.name, pagemap, opts, out)?;
                pages.verify()?;
            }
        }
    }
    // The runs' statistics, written next to the images, outside the inventory.
    for kind in [ImageKind::StatsDump, ImageKind::StatsRestore, ImageKind::StatsLazy] {
        let name = kind.file_name(None).expect("no id");
        let p = path.join(&name);
        if p.is_file() {
            if opts.json {
                out.write_all(b",\n")?;
            }
            let f = File::open(&p).map_err(|e| ImageError::io(p.display().to_string(), e))?;
            let r: Box<dyn Read> = Box::new(BufReader::new(f));
            let mut fr = FrameReader::new(r, p.display().to_string())?;
            show_frames(&mut fr, &name, opts.json, out)?;
        }
    }
    if opts.json {
        out.write_all(b"\n]}\n")?;
    }
    Ok(())
}

/// Shows a records image; `title` names it in the output (errors use the reader's name).
fn show_frames(fr: &mut DynFrames, title: &str, json: bool, out: &mut dyn Write) -> Res {
    let d = fr.desc();
    let decode = d.show.ok_or_else(|| ShowError::Other(format!("{}: {} images have no decoder", fr.file(), d.name)))?;
    let mut o = ImageOut::begin(out, json, title, d)?;
    decode(fr, &mut |pos, node| o.record(pos, node))?;
    o.end()?;
    Ok(())
}

/// Decodes a records image held in memory (`name` labels it in errors),
/// as `crtools show -f` does for a file: for tests and fuzzing.
pub fn show_bytes(bytes: &[u8], name: &str, json: bool, out: &mut dyn Write) -> Result<(), ShowError> {
    let r: Box<dyn Read> = Box::new(io::Cursor::new(bytes.to_vec()));
    let mut fr = FrameReader::new(r, name)?;
    show_frames(&mut fr, name, json, out)
}

fn show_file(path: &Path, opts: &ShowOptions, out: &mut dyn Write) -> Res {
    let shown = path.display().to_string();
    let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some((ImageKind::Pages, _)) = ImageKind::parse_file_name(&base) {
        let mut pages = PagesReader::open_unverified(path)?;
        show_pages(&mut pages, &shown, None, opts, out)?;
        if opts.json {
            out.write_all(b"\n")?;
        }
        return Ok(());
    }
    let f = File::open(path).map_err(|e| ImageError::io(&shown, e))?;
    let mut r = BufReader::new(f);
    // Peek the magic to give a useful hint for a raw pages file under another name.
    let buf = io::BufRead::fill_buf(&mut r).map_err(|e| ImageError::io(&shown, e))?;
    if buf.len() >= HEADER_LEN && !has_magic(buf) {
        return Err(ImageError::at(
            &shown,
            0,
            crate::image::ErrorKind::Invalid(
                "bad magic: not a crtools image (raw page files must be named pages-<id>.img)".into(),
            ),
        )
        .into());
    }
    let r: Box<dyn Read> = Box::new(r);
    let mut fr = FrameReader::new(r, &shown)?;
    show_frames(&mut fr, &shown, opts.json, out)?;
    if opts.json {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Pages file: size and page count; with `-c`, the hex dump, labelled by
/// virtual address when a pagemap is known, by file offset otherwise.
fn show_pages(
    pages: &mut PagesReader,
    title: &str,
    pagemap: Option<(String, u8, DynFrames)>,
    opts: &ShowOptions,
    out: &mut dyn Write,
) -> Res {
    let d = ImageKind::Pages.desc();
    let mut o = ImageOut::begin(out, opts.json, title, d)?;
    o.field("size", &Node::Size(pages.size()))?;
    o.field("pages", &Node::U64(pages.nr_pages()))?;
    if let Some((n, k, _)) = &pagemap {
        o.field("pagemap", &Node::Str(n.clone()))?;
        if *k != 0 {
            o.field("stripe", &Node::U64(*k as u64))?;
        }
    }
    let w = o.w;
    let json = o.json;
    if opts.contents {
        let mut hex = HexOut::new(w, json);
        match pagemap {
            Some((_, stripe, mut fr)) => {
                fr.next_record::<PagemapHead>()?;
                let mut index = 0u64;
                while let Some((_, e)) = fr.next_record::<PagemapEntry>()? {
                    if !e.has_data() {
                        // (Shown once, with the first stripe.)
                        if stripe == 0 {
                            hex.hole(&e)?;
                        }
                        continue;
                    }
                    if e.stripe != stripe {
                        continue;
                    }
                    hex.region(pages, index, e.nr_pages as u64, e.vaddr)?;
                    index += e.nr_pages as u64;
                }
                if index < pages.nr_pages() {
                    hex.note(&format!("{} pages not described by the pagemap", pages.nr_pages() - index))?;
                }
            }
            None => hex.region(pages, 0, pages.nr_pages(), 0)?,
        }
        hex.finish()?;
    }
    if json {
        w.write_all(b"}")?;
    } else {
        writeln!(w)?;
    }
    Ok(())
}

/// The hex dump writer.
struct HexOut<'a> {
    w: &'a mut dyn Write,
    json: bool,
    items: u64,
}

const CHUNK_PAGES: u64 = 16;

impl<'a> HexOut<'a> {
    fn new(w: &'a mut dyn Write, json: bool) -> Self {
        HexOut { w, json, items: 0 }
    }

    fn item_start(&mut self) -> io::Result<()> {
        if self.json {
            self.w.write_all(if self.items == 0 { b",\"contents\":[\n" } else { b",\n" })?;
        }
        self.items += 1;
        Ok(())
    }

    fn hole(&mut self, e: &PagemapEntry) -> io::Result<()> {
        self.item_start()?;
        if self.json {
            write!(self.w, "{{\"vaddr\":\"0x{:016x}\",\"nr_pages\":{},\"flags\":", e.vaddr, e.nr_pages)?;
            write_json(self.w, &e.flags.describe())?;
            self.w.write_all(b"}")
        } else {
            let mut f = Vec::new();
            write_text(&mut f, &e.flags.describe(), 0)?;
            writeln!(
                self.w,
                "0x{:016x}: {} pages, {} (no data stored)",
                e.vaddr,
                e.nr_pages,
                String::from_utf8_lossy(&f).trim()
            )
        }
    }

    fn note(&mut self, s: &str) -> io::Result<()> {
        if self.json {
            self.item_start()?;
            self.w.write_all(b"{\"note\":")?;
            write_json_str(self.w, s)?;
            self.w.write_all(b"}")
        } else {
            writeln!(self.w, "note: {s}")
        }
    }

    /// `count` pages from page `index`, labelled from address `base`.
    fn region(&mut self, pages: &mut PagesReader, index: u64, count: u64, base: u64) -> Res {
        self.item_start()?;
        if self.json {
            write!(self.w, "{{\"vaddr\":\"0x{base:016x}\",\"nr_pages\":{count},\"data\":\"")?;
        }
        let mut buf = vec![0u8; (CHUNK_PAGES as usize) * PAGE_SIZE];
        let mut prev: Option<[u8; 16]> = None;
        let mut starred = false;
        let mut last_addr = base;
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(CHUNK_PAGES);
            let b = &mut buf[..n as usize * PAGE_SIZE];
            pages.read_pages(index + done, b)?;
            if self.json {
                for x in b.iter() {
                    write!(self.w, "{x:02x}")?;
                }
            } else {
                for (li, line) in b.chunks_exact(16).enumerate() {
                    let addr = base + (done * PAGE_SIZE as u64) + li as u64 * 16;
                    let line: [u8; 16] = line.try_into().unwrap_or([0; 16]);
                    last_addr = addr;
                    if prev == Some(line) {
                        if !starred {
                            writeln!(self.w, "*")?;
                            starred = true;
                        }
                        continue;
                    }
                    starred = false;
                    prev = Some(line);
                    hex_line(self.w, addr, &line)?;
                }
            }
            done += n;
        }
        if self.json {
            self.w.write_all(b"\"}")?;
        } else if starred {
            // Show where the collapsed run ends, like hexdump's final offset.
            if let Some(l) = prev {
                hex_line(self.w, last_addr, &l)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> io::Result<()> {
        if self.json {
            if self.items == 0 {
                self.w.write_all(b",\"contents\":[]")
            } else {
                self.w.write_all(b"\n]")
            }
        } else {
            Ok(())
        }
    }
}

fn hex_line(w: &mut dyn Write, addr: u64, line: &[u8; 16]) -> io::Result<()> {
    let mut s = format!("0x{addr:016x}:");
    for (i, x) in line.iter().enumerate() {
        if i == 8 {
            s.push(' ');
        }
        s.push_str(&format!(" {x:02x}"));
    }
    s.push_str("  |");
    s.extend(line.iter().map(|&c| if (0x20..0x7f).contains(&c) { c as char } else { '.' }));
    s.push('|');
    writeln!(w, "{s}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::describe::json_check;
    use crate::image::tests::write_sample_dump;
    use crate::image::testutil::TempDir;

    fn run(opts: &ShowOptions) -> Result<String, ShowError> {
        let mut out = Vec::new();
        show(opts, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn dir_opts(p: &Path, contents: bool, json: bool) -> ShowOptions {
        ShowOptions { dir: Some(p.to_path_buf()), file: None, contents, json }
    }

    #[test]
    fn nothing_to_show() {
        assert!(matches!(run(&ShowOptions::default()), Err(ShowError::NothingToShow)));
    }

    #[test]
    fn dir_text() {
        let t = TempDir::new("show-text");
        write_sample_dump(t.path());
        let s = run(&dir_opts(t.path(), true, false)).unwrap();
        for want in [
            "inventory.img: inventory image",
            "root_pid: 42",
            "PROT_READ|PROT_WRITE",
            "MAP_PRIVATE|MAP_ANONYMOUS",
            "SA_SIGINFO|SA_RESTORER|SA_RESTART",
            "signal: SIGINT",
            "handler: SIG_IGN",
            "sigmask: SIGINT|SIGTERM",
            "rip: 0x0000000000401000",
            "CAP_SYS_ADMIN",
            "RLIMIT_NOFILE",
            "max: unlimited",
            "state: zombie",
            "O_RDWR|O_APPEND",
            "kind: reg",
            "PE_ZERO",
            "0x00007f0000000000: 68 65 6c 6c 6f 2c 20 70  61 67 65 73 21 21 21 0a  |hello, pages!!!.|",
            "0x00007f0000000010: 00 00",
            "*",
            "0x00007f0000001000: ab 00",
            "0x00007f0000002000: 1 pages, PE_ZERO (no data stored)",
            "size: 8192 (8.0 KiB)",
        ] {
            assert!(s.contains(want), "missing {want:?} in:\n{s}");
        }
        // Inventory first, then kind order.
        let pos = |n: &str| s.find(&format!("{n}: ")).unwrap_or_else(|| panic!("{n}"));
        assert!(pos("inventory.img") < pos("pstree.img"));
        assert!(pos("pstree.img") < pos("core-42.img"));
        assert!(pos("core-42.img") < pos("core-43.img"));
        assert!(pos("pagemap-42.img") < pos("pages-1.img"));
        assert!(pos("pages-1.img") < pos("files.img"));
        // Without -c: no hex.
        let s = run(&dir_opts(t.path(), false, false)).unwrap();
        assert!(!s.contains("|hello"), "{s}");
        assert!(s.contains("pages: 2"), "{s}");
    }

    #[test]
    fn dir_json_is_valid() {
        let t = TempDir::new("show-json");
        write_sample_dump(t.path());
        for contents in [false, true] {
            let s = run(&dir_opts(t.path(), contents, true)).unwrap();
            json_check::validate(&s).unwrap_or_else(|e| panic!("{e}:\n{s}"));
            assert!(s.contains(r#""prot":"PROT_READ|PROT_WRITE""#), "{s}");
            assert!(s.contains(r#""path":"/tmp/log \"x\"""#), "{s}");
            assert!(s.contains(r#""kind":"pages","size":8192,"pages":2"#), "{s}");
            assert_eq!(s.contains(r#""data":"68656c6c6f"#), contents);
        }
    }

    #[test]
    fn single_files() {
        let t = TempDir::new("show-file");
        write_sample_dump(t.path());
        // Works without an inventory.
        std::fs::remove_file(t.path().join("inventory.img")).unwrap();
        let file =
            |name: &str, contents, json| ShowOptions { dir: None, file: Some(t.path().join(name)), contents, json };
        let s = run(&file("mm-42.img", false, false)).unwrap();
        assert!(s.contains("mm image, format 6") && s.contains("PROT_READ|PROT_EXEC"), "{s}");
        assert!(s.contains("aio:") && s.contains("pending: 3") && s.contains("nr_req: 62"), "{s}");
        assert!(s.contains("flags: MCL_FUTURE|MERGE_ANY") && s.contains("thp_disable: 1"), "{s}");
        assert!(s.contains("exe_file: /usr/bin/victim") && s.contains("AT_PAGESZ"), "{s}");
        let s = run(&file("core-43.img", false, true)).unwrap();
        json_check::validate(&s).unwrap_or_else(|e| panic!("{e}:\n{s}"));
        assert!(s.contains(r#""process":null"#), "{s}");
        let s = run(&file("pages-1.img", false, false)).unwrap();
        assert!(s.contains("size: 8192 (8.0 KiB)") && s.contains("pages: 2"), "{s}");
        let s = run(&file("pages-1.img", true, false)).unwrap();
        assert!(s.contains("0x0000000000001000: ab 00"), "{s}");
        let s = run(&file("pages-1.img", true, true)).unwrap();
        json_check::validate(&s).unwrap_or_else(|e| panic!("{e}:\n{s}"));
        // -D dir -f name.
        let o =
            ShowOptions { dir: Some(t.path().to_path_buf()), file: Some("pstree.img".into()), ..Default::default() };
        assert!(run(&o).unwrap().contains("threads: [42, 43]"));
        // Without the inventory, -D refuses.
        let e = run(&dir_opts(t.path(), false, false)).unwrap_err();
        assert!(e.to_string().starts_with("incomplete dump: no inventory.img in"), "{e}");
    }

    #[test]
    fn corrupted_input_names_file_and_offset() {
        let t = TempDir::new("show-bad");
        write_sample_dump(t.path());
        let p = t.path().join("fdinfo-42.img");
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len();
        b[n - 14] ^= 0xff; // inside the entry's checksum
        std::fs::write(&p, &b).unwrap();
        let o = ShowOptions { file: Some(p.clone()), ..Default::default() };
        let e = run(&o).unwrap_err().to_string();
        assert!(e.contains("fdinfo-42.img: offset 28") && e.contains("checksum"), "{e}");
        // Via -D: the inventory catches it first.
        let e = run(&dir_opts(t.path(), false, false)).unwrap_err().to_string();
        assert!(e.contains("fdinfo-42.img") && e.contains("inventory"), "{e}");
        // Garbage and empty files.
        std::fs::write(&p, vec![0x55; 100]).unwrap();
        assert!(run(&o).unwrap_err().to_string().contains("bad magic"));
        std::fs::write(&p, b"").unwrap();
        assert!(run(&o).unwrap_err().to_string().contains("truncated header"));
    }
}
