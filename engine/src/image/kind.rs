//! The image kind table: one row per kind of image file, like CRIU's
//! `image-desc.h`. Each row gives the kind's number (stored in the header),
//! file name pattern, format version, record size limit and record types
//! (a head record, then any number of entries). `crtools show` decodes a
//! kind through the row's types and their [`Describe`] impls.
//!
//! Adding a kind = one row here plus its record types (a module next to this
//! one). Invariants: kind numbers and names are unique and never reused;
//! changing a record type incompatibly means bumping the row's version.
use super::codec::{show_records, DynFrames, NodeSink, ShowStreamError};
#[allow(unused_imports)]
use super::describe::Describe;
use super::{
    chain, core, events, files, inet_sk, inventory, ipc, mm, netlink_sk, ns, packet_sk, pagemap, pipes, pstree, raw_sk,
    reg_files, signalfd, stats, tty, unix_sk,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Default limit on one record's encoded length: 16 MiB.
pub const DEFAULT_MAX_RECORD: u32 = 16 << 20;

/// How a kind's file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Header, head record, entry records, end-of-image marker.
    Records,
    /// Raw 4 KiB pages, no header (checksum only in the inventory).
    RawPages,
}

/// One row of the kind table.
#[derive(Debug)]
pub struct KindDesc {
    /// The kind.
    pub kind: ImageKind,
    /// Kind number stored in the file header.
    pub number: u32,
    /// Short name ("core").
    pub name: &'static str,
    /// File name pattern; `<pid>`/`<id>` stands for a decimal u32.
    pub pattern: &'static str,
    /// Format version written and accepted.
    pub version: u32,
    /// Limit on one record's encoded length.
    pub max_record: u32,
    /// File layout.
    pub layout: Layout,
    /// Decoder for `show` (records layout only).
    pub(crate) show: Option<ShowFn>,
}

/// Decodes a records image for `show`, handing each described record to the sink.
pub(crate) type ShowFn = fn(&mut DynFrames, &mut NodeSink<'_>) -> Result<(), ShowStreamError>;

/// Typed view of a records-layout kind: what its head and entries are.
pub trait ImageFormat: 'static {
    /// The kind.
    const KIND: ImageKind;
    /// The first record of every image of this kind.
    type Head: Serialize + DeserializeOwned + Describe;
    /// The records after the head.
    type Entry: Serialize + DeserializeOwned + Describe;
}

macro_rules! image_kinds {
    (
        records { $( $(#[$m:meta])* $v:ident = $no:literal, $name:literal, $pat:literal, $ver:literal, $max:expr, $head:ty, $entry:ty; )* }
        raw { $( $(#[$rm:meta])* $rv:ident = $rno:literal, $rname:literal, $rpat:literal; )* }
    ) => {
        /// Every kind of image file.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ImageKind { $( $(#[$m])* $v, )* $( $(#[$rm])* $rv, )* }

        /// The kind table (records kinds, then raw kinds).
        pub static KINDS: &[KindDesc] = &[
            $( KindDesc { kind: ImageKind::$v, number: $no, name: $name, pattern: $pat,
                          version: $ver, max_record: $max, layout: Layout::Records,
                          show: Some(show_records::<kinds::$v>) }, )*
            $( KindDesc { kind: ImageKind::$rv, number: $rno, name: $rname, pattern: $rpat,
                          version: 1, max_record: 0, layout: Layout::RawPages, show: None }, )*
        ];

        /// Marker types naming each records-layout kind for typed reading and writing.
        pub mod kinds {
            use super::*;
            $( $(#[$m])* pub struct $v;
               impl ImageFormat for $v {
                   const KIND: ImageKind = ImageKind::$v;
                   type Head = $head;
                   type Entry = $entry;
               } )*
        }
    };
}

image_kinds! {
    records {
        //  kind      no  name         file name pattern     ver max record          head                      entry
        /// Written last: lists every other image with its size and checksum.
        Inventory = 1, "inventory", "inventory.img",      1, DEFAULT_MAX_RECORD, inventory::InventoryHead, inventory::InventoryEntry;
        /// The process tree: one entry per task.
        Pstree    = 2, "pstree",    "pstree.img",         2, DEFAULT_MAX_RECORD, (),                       pstree::PstreeEntry;
        /// Per-thread CPU and signal state (process-wide state in the leader's).
        Core      = 3, "core",      "core-<pid>.img",     12, DEFAULT_MAX_RECORD, core::CoreEntry,          ();
        /// Address space layout: mm fields, then one entry per VMA.
        Mm        = 4, "mm",        "mm-<pid>.img",       6, DEFAULT_MAX_RECORD, mm::MmEntry,              mm::Vma;
        /// Which address ranges the pages file holds, in file order.
        Pagemap   = 5, "pagemap",   "pagemap-<pid>.img",  3, DEFAULT_MAX_RECORD, pagemap::PagemapHead,     pagemap::PagemapEntry;
        /// Every file object of the dump (id and kind), shared by all tasks.
        Files     = 7, "files",     "files.img",          1, DEFAULT_MAX_RECORD, (),                       files::FileEntry;
        /// A task's file descriptor table.
        Fdinfo    = 8, "fdinfo",    "fdinfo-<pid>.img",   1, DEFAULT_MAX_RECORD, (),                       files::FdinfoEntry;
        /// Regular file objects.
        RegFiles  = 9, "reg-files", "reg-files.img",      2, DEFAULT_MAX_RECORD, (),                       reg_files::RegFileEntry;
        /// Open terminal descriptions.
        Tty       = 10, "tty",      "tty.img",            2, DEFAULT_MAX_RECORD, (),                       tty::TtyEntry;
        Pipes     = 11, "pipes",    "pipes.img",          1, DEFAULT_MAX_RECORD, (),                       pipes::PipeEntry;
        Fifo      = 12, "fifo",     "fifo.img",           2, DEFAULT_MAX_RECORD, (),                       pipes::FifoEntry;
        PipesData = 13, "pipes-data", "pipes-data.img",   1, DEFAULT_MAX_RECORD, (),                       pipes::PipeDataEntry;
        UnixSk    = 14, "unixsk",   "unixsk.img",         3, DEFAULT_MAX_RECORD, (),                       unix_sk::UnixSkEntry;
        GhostFiles = 15, "ghost-files", "ghost-files.img", 2, DEFAULT_MAX_RECORD, (),                      reg_files::GhostFileEntry;
        GhostData = 16, "ghost-data", "ghost-data.img",   1, DEFAULT_MAX_RECORD, (),                       reg_files::GhostDataEntry;
        FileLocks = 17, "file-locks", "file-locks.img",   2, DEFAULT_MAX_RECORD, (),                       files::FileLockEntry;
        StatsDump = 18, "stats-dump", "stats-dump.img",   1, 4096,               stats::DumpStatsEntry,    ();
        StatsRestore = 19, "stats-restore", "stats-restore.img", 1, 4096,        stats::RestoreStatsEntry, ();
        /// What the lazy-pages server of `restore --lazy-pages` measured.
        StatsLazy = 23, "stats-lazy", "stats-lazy.img",   1, 4096,               stats::LazyStatsEntry,    ();
        /// Terminals: pty pairs of the tree and a shell job's terminal.
        TtyInfo   = 20, "tty-info", "tty-info.img",       1, DEFAULT_MAX_RECORD, (),                       tty::TtyInfoEntry;
        /// signalfd objects.
        Signalfd  = 21, "signalfd", "signalfd.img",       1, DEFAULT_MAX_RECORD, (),                       signalfd::SignalfdEntry;
        /// Signal owners of open file descriptions (F_SETOWN_EX, F_SETSIG).
        Fown      = 22, "fown",     "fown.img",           1, DEFAULT_MAX_RECORD, (),                       files::FownEntry;
        // Event and special descriptors (objects/eventfd.rs ... pidfd.rs).
        Eventfd   = 40, "eventfd",  "eventfd.img",        1, DEFAULT_MAX_RECORD, (),                       events::EventfdEntry;
        Epoll     = 41, "epoll",    "epoll.img",          1, DEFAULT_MAX_RECORD, (),                       events::EpollEntry;
        Timerfd   = 43, "timerfd",  "timerfd.img",        1, DEFAULT_MAX_RECORD, (),                       events::TimerfdEntry;
        Inotify   = 44, "inotify",  "inotify.img",        1, DEFAULT_MAX_RECORD, (),                       events::InotifyEntry;
        Pidfd     = 45, "pidfd",    "pidfd.img",          2, DEFAULT_MAX_RECORD, (),                       events::PidfdEntry;
        Memfd     = 46, "memfd",    "memfd.img",          1, DEFAULT_MAX_RECORD, (),                       events::MemfdEntry;
        MemfdData = 47, "memfd-data", "memfd-data.img",   1, DEFAULT_MAX_RECORD, (),                       events::MemfdDataEntry;
        Fanotify  = 48, "fanotify", "fanotify.img",       1, DEFAULT_MAX_RECORD, (),                       events::FanotifyEntry;
        /// SysV shared memory segments the tree attached (data in a pages image).
        IpcShm    = 49, "ipc-shm",  "ipc-shm.img",        1, DEFAULT_MAX_RECORD, (),                       ipc::ShmSegEntry;
        /// IPv4/IPv6 sockets (TCP, UDP).
        InetSk    = 30, "inetsk",   "inetsk.img",         1, 1 << 30,            (),                       inet_sk::InetSkEntry;
        NetlinkSk = 60, "netlink-sk", "netlink-sk.img",   1, DEFAULT_MAX_RECORD, (),                       netlink_sk::NetlinkSkEntry;
        /// IPv4/IPv6 raw and ping sockets.
        RawSk     = 62, "rawsk",    "rawsk.img",          1, DEFAULT_MAX_RECORD, (),                       raw_sk::RawSkEntry;
        /// Packet sockets (AF_PACKET).
        PacketSk  = 63, "packetsk", "packetsk.img",       1, DEFAULT_MAX_RECORD, (),                       packet_sk::PacketSkEntry;
        /// The tree's UTS namespace (`-n uts`).
        UtsNs     = 64, "utsns",    "utsns.img",          1, 4096,               ns::UtsNsEntry,           ();
        /// The tree's IPC namespace (`-n ipc`): sysctls, message queues, semaphore sets.
        IpcNs     = 65, "ipcns",    "ipcns.img",          1, DEFAULT_MAX_RECORD, ns::IpcNsHead,            ns::IpcObject;
        /// Iterative dumps: the parent dump and the tasks whose writes are tracked.
        Chain     = 61, "chain",    "chain.img",          1, DEFAULT_MAX_RECORD, chain::ChainHead,         chain::TrackedTask;
    }
    raw {
        /// Raw page data described by a pagemap image.
        Pages     = 6, "pages",     "pages-<id>.img";
    }
}

impl ImageKind {
    /// This kind's row.
    pub fn desc(self) -> &'static KindDesc {
        // The table holds every variant (the macro builds both from one list).
        KINDS.iter().find(|d| d.kind == self).expect("kind table row")
    }

    /// The row for kind number `n`.
    pub fn from_number(n: u32) -> Option<ImageKind> {
        KINDS.iter().find(|d| d.number == n).map(|d| d.kind)
    }

    /// Short name ("core").
    pub fn name(self) -> &'static str {
        self.desc().name
    }

    /// True when file names of this kind carry a number.
    pub fn has_id(self) -> bool {
        self.desc().pattern.contains('<')
    }

    /// The file name for this kind; `id` is used iff the pattern has one.
    pub fn file_name(self, id: Option<u32>) -> Option<String> {
        let p = self.desc().pattern;
        match (p.find('<'), p.find('>'), id) {
            (Some(a), Some(b), Some(id)) => Some(format!("{}{id}{}", &p[..a], &p[b + 1..])),
            (None, _, None) => Some(p.to_owned()),
            _ => None,
        }
    }

    /// Which kind (and id) a file name belongs to.
    pub fn parse_file_name(name: &str) -> Option<(ImageKind, Option<u32>)> {
        for d in KINDS {
            let p = d.pattern;
            match (p.find('<'), p.find('>')) {
                (Some(a), Some(b)) => {
                    let (pre, post) = (&p[..a], &p[b + 1..]);
                    if let Some(mid) = name.strip_prefix(pre).and_then(|r| r.strip_suffix(post)) {
                        let canonical = !mid.is_empty()
                            && mid.bytes().all(|c| c.is_ascii_digit())
                            && (mid == "0" || !mid.starts_with('0'));
                        if let (true, Ok(id)) = (canonical, mid.parse::<u32>()) {
                            return Some((d.kind, Some(id)));
                        }
                    }
                }
                _ if name == p => return Some((d.kind, None)),
                _ => {}
            }
        }
        None
    }
}

impl serde::Serialize for ImageKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.desc().number)
    }
}

impl<'de> serde::Deserialize<'de> for ImageKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        ImageKind::from_number(n).ok_or_else(|| serde::de::Error::custom(format_args!("unknown image kind {n}")))
    }
}

impl std::fmt::Display for ImageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, a) in KINDS.iter().enumerate() {
            assert_eq!(a.kind.desc().number, a.number);
            for b in &KINDS[i + 1..] {
                assert_ne!(a.number, b.number);
                assert_ne!(a.name, b.name);
                assert_ne!(a.pattern, b.pattern);
            }
            let name = a.kind.file_name(a.kind.has_id().then_some(42)).unwrap();
            assert_eq!(ImageKind::parse_file_name(&name), Some((a.kind, a.kind.has_id().then_some(42))));
        }
        assert_eq!(ImageKind::parse_file_name("core-01.img"), None);
        assert_eq!(ImageKind::parse_file_name("core-.img"), None);
        assert_eq!(ImageKind::parse_file_name("pages-7.img"), Some((ImageKind::Pages, Some(7))));
        assert_eq!(ImageKind::Core.file_name(None), None);
    }
}
