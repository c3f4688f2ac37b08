//! Unit tests of the image layer: codec edge cases, round trips of every
//! record kind, the image directory's safety rules.
use std::fs;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;

use super::codec::{encode_header, FrameWriter, END_MARK, HEADER_LEN};
use super::core::*;
use super::crc32c::crc32c;
use super::files::*;
use super::mm::*;
use super::pagemap::*;
use super::pstree::PstreeEntry;
use super::reg_files::RegFileEntry;
use super::testutil::TempDir;
use super::*;

pub(crate) fn sample_core(tid: u32, leader: bool) -> CoreEntry {
    let mut sigactions = vec![SigAction::default(); NSIG];
    sigactions[1] = SigAction {
        handler: 0x5555_5555_1234,
        flags: SaFlags::SA_SIGINFO | SaFlags::SA_RESTART | SaFlags::SA_RESTORER,
        restorer: 0x7f00_0000_2000,
        mask: 1 << 14,
    };
    sigactions[12].handler = 1;
    let mut si = Siginfo::default();
    si.0[0] = 10;
    CoreEntry {
        tid,
        thread: ThreadCore {
            regs: GpRegs { rip: 0x401000, rsp: 0x7ffc_0000_1000, fs_base: 0x7f00_dead_b000, ..Default::default() },
            xsave: Xsave { xfeatures: 0x7, area: (0..=255u8).cycle().take(1088).collect() },
            sigmask: (1 << 1) | (1 << 14),
            sigaltstack: SigAltStack { sp: 0, flags: SsFlags::SS_DISABLE, size: 0 },
            pending: vec![si.clone()],
            comm: "victim".into(),
            creds: Creds {
                uid: 1000,
                groups: vec![4, 24],
                cap_bnd: (1 << 41) - 1,
                cap_eff: 1 << 21,
                ..Default::default()
            },
            clear_child_tid: 0x7f00_0000_0a10,
            rseq: Some(Rseq { ptr: 0x7f00_0000_0fe0, len: 32, sig: 0x5305_3053 }),
            robust_list: Some(crate::image::core::RobustList { head: 0x7f00_0000_0a20, len: 24 }),
            seccomp: vec![crate::image::core::SeccompFilter { flags: 2, insns: vec![0x20, 0x7fff_0000_0000_0006] }],
            sched: crate::image::core::Sched {
                policy: 3,
                rt_priority: 0,
                nice: 7,
                ioprio: (2 << 13) | 5,
                timerslack_ns: 50_000,
                cpus: vec![0b1011],
            },
            sleep: Some(crate::image::core::RestartSleep {
                clock: 1,
                remaining_ns: 999_000_000,
                rmtp: 0x7ffc_0000_0f00,
            }),
            mempolicy: Some(crate::image::mm::MemPolicy { mode: 3 | 1 << 15, nodes: vec![0b101] }),
        },
        process: leader.then(|| ProcessCore {
            sigactions,
            itimers: Itimers {
                real: Itimer { interval_sec: 1, value_usec: 5, ..Default::default() },
                ..Default::default()
            },
            posix_timers: vec![PosixTimer { id: 0, clock: 1, signo: 14, interval_nsec: 500, ..Default::default() }],
            shared_pending: vec![si],
            rlimits: vec![
                Rlimit { resource: 7, cur: 1024, max: 4096 },
                Rlimit { resource: 3, cur: 8 << 20, max: u64::MAX },
            ],
            personality: 0,
            umask: 0o022,
            prctl: PrctlBits { dumpable: 1, pdeathsig: 9, child_subreaper: false },
            state: TaskState::Zombie,
            exit_status: Some(3),
            cwd: "/home/victim".into(),
            root: "/".into(),
            oom_score_adj: 400,
            coredump_filter: Some(0x33),
            loginuid: Some(1234),
            membarrier: crate::image::core::MembarrierRegs::REGISTER_PRIVATE_EXPEDITED,
            cgroups: vec![crate::image::core::Cgroup {
                hierarchy: 0,
                controllers: String::new(),
                path: "/crtools-test".into(),
            }],
            cwd_removed: Some((0o40751, 1000, 1000)),
            exit_signal: 23,
            stop_signal: 20,
            xcomp_perm: 0xe7 | 1 << 18,
        }),
    }
}

pub(crate) fn sample_mm() -> (MmEntry, Vec<Vma>) {
    let head = MmEntry {
        start_code: 0x400000,
        end_code: 0x401000,
        brk: 0x60_0000,
        auxv: vec![6, 4096, 0, 0],
        exe_file: Some("/usr/bin/victim".into()),
        flags: crate::image::mm::MmFlags::MCL_FUTURE | crate::image::mm::MmFlags::MERGE_ANY,
        thp_disable: 1,
        aio: vec![crate::image::mm::AioRing {
            addr: 0x7f00_0001_0000,
            len: 4096,
            id: 0,
            nr: 127,
            head: 125,
            tail: 1,
            magic: 0xa10a_10a1,
            compat_features: 1,
            incompat_features: 0,
            header_length: 32,
            nr_req: 62,
        }],
        ..Default::default()
    };
    let vmas = vec![
        Vma {
            start: 0x400000,
            end: 0x401000,
            prot: Prot::PROT_READ | Prot::PROT_EXEC,
            flags: MapFlags::MAP_PRIVATE,
            kind: VmaKind::File,
            status: VmaStatus::VMA_REGULAR,
            path: Some("/usr/bin/victim".into()),
            dev: 0x801,
            inode: 1234,
            ..Default::default()
        },
        Vma {
            start: 0x7f00_0000_0000,
            end: 0x7f00_0000_3000,
            prot: Prot::PROT_READ | Prot::PROT_WRITE,
            flags: MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS,
            kind: VmaKind::Anon,
            status: VmaStatus::VMA_REGULAR | VmaStatus::VMA_DUMPED,
            ..Default::default()
        },
    ];
    (head, vmas)
}

pub(crate) fn sample_pagemap() -> Vec<PagemapEntry> {
    vec![
        PagemapEntry::new(0x7f00_0000_0000, 2, PagemapFlags::PE_PRESENT),
        PagemapEntry::new(0x7f00_0000_2000, 1, PagemapFlags::PE_ZERO),
    ]
}

/// Writes a small but complete dump: one task with every image kind.
pub(crate) fn write_sample_dump(path: &std::path::Path) {
    let dir = ImageDir::create(path).unwrap();
    dir.set_root_pid(42);
    let mut w = dir.create_image::<kinds::Pstree>(None, &()).unwrap();
    w.write(&PstreeEntry { pid: 42, ppid: 0, pgid: 42, sid: 42, threads: vec![42, 43], ..Default::default() }).unwrap();
    w.finish().unwrap();
    dir.create_image::<kinds::Core>(Some(42), &sample_core(42, true)).unwrap().finish().unwrap();
    dir.create_image::<kinds::Core>(Some(43), &sample_core(43, false)).unwrap().finish().unwrap();
    let (mm, vmas) = sample_mm();
    let mut w = dir.create_image::<kinds::Mm>(Some(42), &mm).unwrap();
    for v in &vmas {
        w.write(v).unwrap();
    }
    w.finish().unwrap();
    let mut w = dir.create_image::<kinds::Pagemap>(Some(42), &PagemapHead { pages_id: 1, stripes: vec![] }).unwrap();
    for e in sample_pagemap() {
        w.write(&e).unwrap();
    }
    w.finish().unwrap();
    let mut p = dir.create_pages(1).unwrap();
    let mut data = vec![0u8; 2 * PAGE_SIZE];
    data[..16].copy_from_slice(b"hello, pages!!!\n");
    data[PAGE_SIZE] = 0xab;
    p.write_pages(&data).unwrap();
    p.finish().unwrap();
    let mut w = dir.create_image::<kinds::Files>(None, &()).unwrap();
    w.write(&FileEntry { id: 1, kind: FdKind::Reg }).unwrap();
    w.finish().unwrap();
    let mut w = dir.create_image::<kinds::Fdinfo>(Some(42), &()).unwrap();
    w.write(&FdinfoEntry {
        fd: 3,
        flags: OpenFlags::O_RDWR | OpenFlags::O_APPEND,
        cloexec: true,
        kind: FdKind::Reg,
        id: 1,
    })
    .unwrap();
    w.finish().unwrap();
    let mut w = dir.create_image::<kinds::RegFiles>(None, &()).unwrap();
    w.write(&RegFileEntry {
        id: 1,
        path: "/tmp/log \"x\"".into(),
        flags: OpenFlags::O_RDWR,
        pos: 10,
        mode: 0o100644,
        size: 99,
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    dir.finish().unwrap();
}

fn encode<F: ImageFormat>(head: &F::Head, entries: &[F::Entry]) -> Vec<u8> {
    let mut w = ImageWriter::<F, _>::new(Vec::new(), "mem", head).unwrap();
    for e in entries {
        w.write(e).unwrap();
    }
    w.finish().unwrap()
}

fn decode<F: ImageFormat>(bytes: &[u8]) -> Result<(F::Head, Vec<F::Entry>)> {
    ImageReader::<F, _>::new(Cursor::new(bytes.to_vec()), "mem")?.collect_entries()
}

fn err_of<F: ImageFormat>(bytes: &[u8]) -> ImageError {
    match decode::<F>(bytes) {
        Ok(_) => panic!("decoded"),
        Err(e) => e,
    }
}

#[test]
fn round_trip_every_kind_in_memory() {
    let c = sample_core(1, true);
    assert_eq!(decode::<kinds::Core>(&encode::<kinds::Core>(&c, &[])).unwrap(), (c, vec![]));
    let (mm, vmas) = sample_mm();
    assert_eq!(decode::<kinds::Mm>(&encode::<kinds::Mm>(&mm, &vmas)).unwrap(), (mm, vmas));
    let pm = sample_pagemap();
    let h = PagemapHead { pages_id: 9, stripes: vec![4194313] };
    assert_eq!(decode::<kinds::Pagemap>(&encode::<kinds::Pagemap>(&h, &pm)).unwrap(), (h, pm));
    let ps = vec![PstreeEntry { pid: 1, ppid: 0, pgid: 1, sid: 1, threads: vec![1, 2, 3], ..Default::default() }];
    assert_eq!(decode::<kinds::Pstree>(&encode::<kinds::Pstree>(&(), &ps)).unwrap(), ((), ps));
    let f = vec![FileEntry { id: 3, kind: FdKind::Pipe }];
    assert_eq!(decode::<kinds::Files>(&encode::<kinds::Files>(&(), &f)).unwrap(), ((), f));
    let fd = vec![FdinfoEntry {
        fd: 0,
        flags: OpenFlags::from_bits_retain(0x8000_0002),
        cloexec: false,
        kind: FdKind::Tty,
        id: 7,
    }];
    assert_eq!(decode::<kinds::Fdinfo>(&encode::<kinds::Fdinfo>(&(), &fd)).unwrap(), ((), fd));
    let r = vec![RegFileEntry { id: 1, path: RawStr(vec![b'/', 0xff, b'x']), ..Default::default() }];
    assert_eq!(decode::<kinds::RegFiles>(&encode::<kinds::RegFiles>(&(), &r)).unwrap(), ((), r));
    let ih = inventory::InventoryHead { tool_version: "1".into(), created_sec: 5, created_nsec: 6, root_pid: None };
    let ie =
        vec![inventory::InventoryEntry { kind: ImageKind::Pages, name: "pages-1.img".into(), size: 4096, checksum: 7 }];
    assert_eq!(decode::<kinds::Inventory>(&encode::<kinds::Inventory>(&ih, &ie)).unwrap(), (ih, ie));
}

#[test]
fn gp_regs_convert_to_and_from_user_regs() {
    let g = GpRegs { r15: 1, rip: 2, gs: 3, fs_base: 4, ..Default::default() };
    let u = crate::sys::ptrace::UserRegs::from(&g);
    assert_eq!(GpRegs::from(&u), g);
}

fn pstree_bytes() -> Vec<u8> {
    encode::<kinds::Pstree>(
        &(),
        &[PstreeEntry { pid: 1, ..Default::default() }, PstreeEntry { pid: 2, ..Default::default() }],
    )
}

#[test]
fn bad_magic() {
    let mut b = pstree_bytes();
    b[0] = b'X';
    let e = err_of::<kinds::Pstree>(&b);
    assert!(matches!(e.kind, ErrorKind::BadMagic), "{e}");
    assert_eq!(e.to_string(), "mem: offset 0 (0x0): bad magic: not a crtools image");
}

fn reheader(b: &mut [u8], kind: u32, version: u32) {
    b[8..12].copy_from_slice(&kind.to_le_bytes());
    b[12..16].copy_from_slice(&version.to_le_bytes());
    let c = crc32c(&b[..16]);
    b[16..20].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn unknown_kind_and_version() {
    let mut b = pstree_bytes();
    reheader(&mut b, 999, 1);
    let e = err_of::<kinds::Pstree>(&b);
    assert!(matches!(e.kind, ErrorKind::UnknownKind(999)), "{e}");
    assert!(e.to_string().contains("mem") && e.to_string().contains("unknown image kind 999"));
    let mut b = pstree_bytes();
    reheader(&mut b, 2, 7);
    let e = err_of::<kinds::Pstree>(&b);
    assert!(matches!(e.kind, ErrorKind::UnknownVersion { version: 7, .. }), "{e}");
    assert!(e.to_string().contains("version 7 of pstree"), "{e}");
    // A pstree file read as core.
    let e = err_of::<kinds::Core>(&pstree_bytes());
    assert!(matches!(e.kind, ErrorKind::WrongKind { .. }), "{e}");
}

#[test]
fn header_checksum_and_truncated_header() {
    let mut b = pstree_bytes();
    b[16] ^= 1;
    assert!(matches!(err_of::<kinds::Pstree>(&b).kind, ErrorKind::HeaderChecksum));
    for n in [0, 7, 19] {
        let e = err_of::<kinds::Pstree>(&pstree_bytes()[..n]);
        assert!(matches!(e.kind, ErrorKind::TruncatedHeader), "{n}: {e}");
    }
}

#[test]
fn bad_record_checksum() {
    let mut b = pstree_bytes();
    // Second record's payload: header, head frame (8 bytes, empty head), first entry frame.
    let first = HEADER_LEN + 8;
    b[first + 4] ^= 0x40;
    let e = err_of::<kinds::Pstree>(&b);
    assert!(matches!(e.kind, ErrorKind::RecordChecksum { .. }), "{e}");
    assert_eq!(e.offset, Some(first as u64));
}

#[test]
fn truncation_anywhere_is_an_error() {
    let b = pstree_bytes();
    for n in HEADER_LEN..b.len() {
        let e = err_of::<kinds::Pstree>(&b[..n]);
        assert!(matches!(e.kind, ErrorKind::TruncatedRecord | ErrorKind::MissingEndMarker), "cut at {n}: {e}");
    }
}

#[test]
fn absurd_length_fails_without_allocating() {
    for len in [END_MARK - 1, 0x7fff_ffff, (16 << 20) + 1] {
        let mut b = encode_header(ImageKind::Pstree).to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&[0; 16]);
        let e = err_of::<kinds::Pstree>(&b);
        assert!(matches!(e.kind, ErrorKind::RecordTooLarge { .. }), "{e}");
    }
    // 0xffffffff is the end marker: damaged here (no head, wrong crc).
    let mut b = encode_header(ImageKind::Pstree).to_vec();
    b.extend_from_slice(&END_MARK.to_le_bytes());
    b.extend_from_slice(&[0xff; 8]);
    assert!(matches!(err_of::<kinds::Pstree>(&b).kind, ErrorKind::BadEndMarker));
    // Under the limit but longer than the data: truncated, and the buffer
    // only grew to what was there.
    let mut b = encode_header(ImageKind::Pstree).to_vec();
    b.extend_from_slice(&(16u32 << 20).to_le_bytes());
    b.extend_from_slice(&[1; 10]);
    assert!(matches!(err_of::<kinds::Pstree>(&b).kind, ErrorKind::TruncatedRecord));
}

#[test]
fn per_reader_limit() {
    let b = encode::<kinds::Pstree>(&(), &[PstreeEntry { threads: (0..100).collect(), ..Default::default() }]);
    let mut fr = FrameReader::new(Cursor::new(b), "mem").unwrap();
    fr.set_max_record(16);
    assert!(fr.next_frame().unwrap().is_some()); // empty head
    assert!(matches!(fr.next_frame().unwrap_err().kind, ErrorKind::RecordTooLarge { max: 16, .. }));
}

#[test]
fn trailing_garbage() {
    let mut b = pstree_bytes();
    let end = b.len();
    b.extend_from_slice(b"garbage");
    let e = err_of::<kinds::Pstree>(&b);
    assert!(matches!(e.kind, ErrorKind::TrailingGarbage), "{e}");
    assert_eq!(e.offset, Some(end as u64));
}

#[test]
fn record_with_unused_bytes_or_bad_encoding() {
    // An empty-head record that carries a byte.
    let mut w = FrameWriter::new(Vec::new(), "mem", ImageKind::Pstree).unwrap();
    w.write_record(&7u8).unwrap();
    let b = w.finish().unwrap();
    assert!(matches!(err_of::<kinds::Pstree>(&b).kind, ErrorKind::RecordTrailingBytes(1)));
    // A core head that is not a CoreEntry.
    let mut w = FrameWriter::new(Vec::new(), "mem", ImageKind::Core).unwrap();
    w.write_record(&[0xffu8; 3]).unwrap();
    let b = w.finish().unwrap();
    assert!(matches!(err_of::<kinds::Core>(&b).kind, ErrorKind::Decode(_)));
    // Count in the end marker must match.
    let mut b = pstree_bytes();
    let n = b.len();
    b[n - 8..n - 4].copy_from_slice(&9u32.to_le_bytes());
    let c = crc32c(&b[n - 12..n - 4]);
    b[n - 4..].copy_from_slice(&c.to_le_bytes());
    assert!(matches!(err_of::<kinds::Pstree>(&b).kind, ErrorKind::BadEndMarker));
}

#[test]
fn dir_round_trip_and_modes() {
    let t = TempDir::new("rt");
    write_sample_dump(t.path());
    assert_eq!(fs::metadata(t.path()).unwrap().permissions().mode() & 0o777, 0o700);
    for e in fs::read_dir(t.path()).unwrap() {
        let e = e.unwrap();
        assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{:?}", e.file_name());
    }
    let d = ImageDirReader::open(t.path()).unwrap();
    assert_eq!(d.inventory().root_pid, Some(42));
    assert_eq!(d.images().len(), 9);
    assert_eq!(d.images()[0].name, "pstree.img");
    d.verify_all().unwrap();
    let core = d.open_image::<kinds::Core>(Some(42)).unwrap();
    assert_eq!(core.head(), &sample_core(42, true));
    let (mm, vmas) = d.open_image::<kinds::Mm>(Some(42)).unwrap().collect_entries().unwrap();
    assert_eq!((mm, vmas), sample_mm());
    let pm: Vec<_> = d.open_image::<kinds::Pagemap>(Some(42)).unwrap().collect::<Result<_>>().unwrap();
    assert_eq!(pm, sample_pagemap());
    let mut p = d.open_pages(1).unwrap();
    assert_eq!(p.nr_pages(), 2);
    let mut buf = vec![0u8; PAGE_SIZE];
    p.read_pages(1, &mut buf).unwrap();
    assert_eq!(buf[0], 0xab);
    p.read_pages(0, &mut buf).unwrap();
    assert_eq!(&buf[..5], b"hello");
    assert!(matches!(p.read_pages(2, &mut buf).unwrap_err().kind, ErrorKind::PagesOutOfRange { .. }));
    p.verify().unwrap();
    // Nothing more can be added to a finished dump.
    assert!(ImageDir::create(t.path()).is_err());
}

#[test]
fn missing_inventory_refused() {
    let t = TempDir::new("noinv");
    let dir = ImageDir::create(t.path()).unwrap();
    dir.create_image::<kinds::Pstree>(None, &()).unwrap().finish().unwrap();
    drop(dir); // no finish(): a crashed dump
    let e = ImageDirReader::open(t.path()).err().unwrap();
    assert_eq!(e.to_string(), format!("incomplete dump: no inventory.img in {}", t.path().display()));
    // A leftover temp inventory is not an inventory either.
    fs::write(t.path().join("inventory.img.tmp"), b"x").unwrap();
    assert!(matches!(ImageDirReader::open(t.path()).err().unwrap().kind, ErrorKind::NoInventory));
}

#[test]
fn unfinished_writer_blocks_inventory() {
    let t = TempDir::new("unfin");
    let dir = ImageDir::create(t.path()).unwrap();
    let w = dir.create_image::<kinds::Pstree>(None, &()).unwrap();
    drop(w);
    let e = dir.finish().unwrap_err();
    assert!(e.to_string().contains("pstree.img"), "{e}");
    assert!(!t.path().join("inventory.img").exists());
}

#[test]
fn modified_file_detected() {
    let t = TempDir::new("mod");
    write_sample_dump(t.path());
    // Same size, one byte changed (a payload byte of the mm head).
    let p = t.path().join("mm-42.img");
    let mut b = fs::read(&p).unwrap();
    b[30] ^= 1;
    fs::write(&p, &b).unwrap();
    let d = ImageDirReader::open(t.path()).unwrap();
    let e = d.open_image::<kinds::Mm>(Some(42)).err().unwrap();
    assert!(matches!(e.kind, ErrorKind::ChecksumMismatch { .. }), "{e}");
    assert!(e.to_string().contains("mm-42.img"), "{e}");
    // Pages: detected by verify, even after out-of-order reads.
    let p = t.path().join("pages-1.img");
    let mut b = fs::read(&p).unwrap();
    b[PAGE_SIZE + 5] ^= 1;
    fs::write(&p, &b).unwrap();
    let mut pr = d.open_pages(1).unwrap();
    let mut buf = vec![0u8; PAGE_SIZE];
    pr.read_pages(1, &mut buf).unwrap();
    assert!(matches!(pr.verify().unwrap_err().kind, ErrorKind::ChecksumMismatch { .. }));
    // Size change.
    fs::write(t.path().join("files.img"), b"short").unwrap();
    assert!(matches!(d.verify("files.img").unwrap_err().kind, ErrorKind::SizeMismatch { .. }));
}

#[test]
fn bad_names_refused() {
    for n in ["a/b", "..", "x..y", ".", "", "a b", "é"] {
        assert!(dir::validate_name(n).is_err(), "{n:?}");
    }
    for n in ["core-1.img", "pages-0.img", "inventory.img.tmp", "A_b-c.d"] {
        assert!(dir::validate_name(n).is_ok(), "{n:?}");
    }
    let t = TempDir::new("names");
    write_sample_dump(t.path());
    // An inventory naming a file outside the directory is refused.
    let dir_inv = t.path().join("inventory.img");
    let (h, mut entries) = ImageReader::<kinds::Inventory, _>::new(fs::File::open(&dir_inv).unwrap(), "inv")
        .unwrap()
        .collect_entries()
        .unwrap();
    entries[0].name = "../pstree.img".into();
    fs::remove_file(&dir_inv).unwrap();
    fs::write(&dir_inv, encode::<kinds::Inventory>(&h, &entries)).unwrap();
    let e = ImageDirReader::open(t.path()).err().unwrap();
    assert!(e.to_string().contains("../pstree.img"), "{e}");
}

#[test]
fn planted_symlinks_not_followed() {
    let t = TempDir::new("sym");
    let outside = TempDir::new("sym-outside");
    fs::create_dir(outside.path()).unwrap();
    let target = outside.path().join("victim");
    fs::write(&target, b"precious").unwrap();
    let dir = ImageDir::create(t.path()).unwrap();
    std::os::unix::fs::symlink(&target, t.path().join("pstree.img")).unwrap();
    let e = dir.create_image::<kinds::Pstree>(None, &()).err().unwrap();
    assert!(e.to_string().contains("pstree.img"), "{e}");
    assert_eq!(fs::read(&target).unwrap(), b"precious");
    drop(dir);
    fs::remove_file(t.path().join("pstree.img")).unwrap();

    // Reading: replace a listed image by a symlink to a valid copy outside.
    fs::remove_dir_all(t.path()).unwrap();
    write_sample_dump(t.path());
    let copy = outside.path().join("files.img");
    fs::copy(t.path().join("files.img"), &copy).unwrap();
    fs::remove_file(t.path().join("files.img")).unwrap();
    std::os::unix::fs::symlink(&copy, t.path().join("files.img")).unwrap();
    let d = ImageDirReader::open(t.path()).unwrap();
    let e = d.open_image::<kinds::Files>(None).err().unwrap();
    assert!(matches!(&e.kind, ErrorKind::Io(io) if io.raw_os_error() == Some(40)), "{e}"); // ELOOP
                                                                                           // And the inventory itself.
    let inv = t.path().join("inventory.img");
    let inv_copy = outside.path().join("inventory.img");
    fs::copy(&inv, &inv_copy).unwrap();
    fs::remove_file(&inv).unwrap();
    std::os::unix::fs::symlink(&inv_copy, &inv).unwrap();
    assert!(ImageDirReader::open(t.path()).is_err());
}

#[test]
fn pages_writer_rejects_partial_pages_and_wrong_ids() {
    let t = TempDir::new("pw");
    let dir = ImageDir::create(t.path()).unwrap();
    let mut p = dir.create_pages(3).unwrap();
    assert!(matches!(p.write_pages(&[0; 100]).unwrap_err().kind, ErrorKind::NotPageAligned(100)));
    p.write_pages(&vec![7; 3 * PAGE_SIZE]).unwrap();
    assert_eq!(p.pages_written(), 3);
    p.finish().unwrap();
    assert!(dir.create_pages(3).is_err());
    assert!(dir.create_image::<kinds::Core>(None, &CoreEntry::default()).is_err());
    assert!(dir.create_image::<kinds::Pstree>(Some(1), &()).is_err());
    dir.finish().unwrap();
    let d = ImageDirReader::open(t.path()).unwrap();
    let mut r = d.open_pages(3).unwrap();
    let mut buf = vec![0; 3 * PAGE_SIZE];
    r.read_pages(0, &mut buf).unwrap();
    r.verify().unwrap();
}
