//! `mm-<pid>.img`: a task's address space. Head: the `mm_struct` fields of
//! `prctl(PR_SET_MM)`, auxv and exe file, the native AIO contexts; entries:
//! one per VMA in address order, non-overlapping, page aligned (`start < end`).
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::{serde_bits, RawStr};

bitflags::bitflags! {
    /// Protection (`PROT_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Prot: u32 {
        const PROT_READ = 0x1;
        const PROT_WRITE = 0x2;
        const PROT_EXEC = 0x4;
    }
}

bitflags::bitflags! {
    /// Mapping flags (`MAP_*`, x86_64 values).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct MapFlags: u32 {
        const MAP_SHARED = 0x01;
        const MAP_PRIVATE = 0x02;
        /// The map type of droppable memory (Linux 6.11), instead of MAP_PRIVATE.
        const MAP_DROPPABLE = 0x08;
        const MAP_FIXED = 0x10;
        const MAP_ANONYMOUS = 0x20;
        const MAP_32BIT = 0x40;
        const MAP_GROWSDOWN = 0x100;
        const MAP_DENYWRITE = 0x800;
        const MAP_EXECUTABLE = 0x1000;
        const MAP_LOCKED = 0x2000;
        const MAP_NORESERVE = 0x4000;
        const MAP_POPULATE = 0x8000;
        const MAP_NONBLOCK = 0x10000;
        const MAP_STACK = 0x20000;
        const MAP_HUGETLB = 0x40000;
        const MAP_SYNC = 0x80000;
    }
}

bitflags::bitflags! {
    /// Per-VMA state beyond mmap flags (from smaps `VmFlags` and dump decisions),
    /// which restore re-applies with madvise/mlock or acts on.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct VmaStatus: u32 {
        /// An ordinary mapping restore recreates.
        const VMA_REGULAR = 1 << 0;
        /// Contents are in the pagemap.
        const VMA_DUMPED = 1 << 1;
        /// `VM_LOCKED` (mlock).
        const VMA_LOCKED = 1 << 2;
        /// `MADV_DONTFORK`.
        const VMA_DONTFORK = 1 << 3;
        /// `MADV_DONTDUMP`.
        const VMA_DONTDUMP = 1 << 4;
        /// `MADV_WIPEONFORK`.
        const VMA_WIPEONFORK = 1 << 5;
        /// `MADV_MERGEABLE` (KSM).
        const VMA_MERGEABLE = 1 << 6;
        /// `MADV_HUGEPAGE`.
        const VMA_HUGEPAGE = 1 << 7;
        /// `MADV_NOHUGEPAGE`.
        const VMA_NOHUGEPAGE = 1 << 8;
        /// Soft-dirty tracking bit set.
        const VMA_SOFTDIRTY = 1 << 9;
        /// The mapped file was deleted.
        const VMA_FILE_DELETED = 1 << 10;
        /// `VM_ACCOUNT`: charged to the commit limit (smaps `ac`).
        const VMA_ACCOUNTED = 1 << 11;
        /// `VM_MAYWRITE` (smaps `mw`): a shared file mapping whose file was
        /// opened for writing; it may be mprotect'ed writable again.
        const VMA_MAYWRITE = 1 << 12;
        /// `VM_LOCKONFAULT` (smaps `lf`): locked with MLOCK_ONFAULT.
        const VMA_LOCKONFAULT = 1 << 13;
        /// A SysV shared memory VMA attached read-only (SHM_RDONLY: the
        /// kernel left VM_MAYWRITE out, smaps shows no `mw`).
        const VMA_SHM_RDONLY = 1 << 14;
        /// A SysV shared memory VMA attached executable (SHM_EXEC).
        const VMA_SHM_EXEC = 1 << 15;
        /// `MADV_SEQUENTIAL` (smaps `sr`).
        const VMA_SEQUENTIAL = 1 << 16;
        /// `MADV_RANDOM` (smaps `rr`).
        const VMA_RANDOM = 1 << 17;
        /// A private file mapping whose file was opened for writing (its
        /// map_files link is 0600): reopened so at restore.
        const VMA_FILE_WRITE = 1 << 18;
        /// Not restorable by this version.
        const VMA_UNSUPPORTED = 1 << 31;
    }
}
serde_bits!(Prot: u32, MapFlags: u32, VmaStatus: u32, MmFlags: u32);

/// What a VMA maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VmaKind {
    /// Private anonymous memory.
    #[default]
    Anon,
    /// A file mapping (private or shared).
    File,
    /// Shared anonymous memory (dumped once per object).
    SharedAnon,
    /// `[vdso]`.
    Vdso,
    /// `[vvar]`.
    Vvar,
    /// `[vvar_vclock]`.
    VvarVclock,
    /// `[vsyscall]` (fixed, not restored).
    Vsyscall,
    /// `[stack]` of the main thread.
    Stack,
    /// `[heap]`.
    Heap,
    /// A SysV shared memory attachment (`shmid`: the segment, dumped once
    /// in `ipc-shm.img`; `pgoff`: the offset in the segment).
    SysvShm,
    /// memfd mapping.
    Memfd,
    /// A mapping of a file unlinked since: its ghost file (`shmid`: the
    /// ghost id, `reg-files`' ghost files).
    GhostFile,
    /// The ring of a native AIO context (`/[aio]`): its pages (header and
    /// completion events) are dumped like anonymous memory; the context
    /// itself is an [`AioRing`] of the mm head (format version 3).
    AioRing,
}

impl VmaKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            VmaKind::Anon => "anon",
            VmaKind::File => "file",
            VmaKind::SharedAnon => "shared-anon",
            VmaKind::Vdso => "vdso",
            VmaKind::Vvar => "vvar",
            VmaKind::VvarVclock => "vvar_vclock",
            VmaKind::Vsyscall => "vsyscall",
            VmaKind::Stack => "stack",
            VmaKind::Heap => "heap",
            VmaKind::SysvShm => "sysv-shm",
            VmaKind::Memfd => "memfd",
            VmaKind::GhostFile => "ghost-file",
            VmaKind::AioRing => "aio-ring",
        }
    }
}

/// Head of the mm image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmEntry {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// `/proc/<pid>/auxv` as (type, value) words, terminated by AT_NULL.
    pub auxv: Vec<u64>,
    /// `/proc/<pid>/exe` target.
    pub exe_file: Option<RawStr>,
    /// Address-space-wide settings (format version 2).
    pub flags: MmFlags,
    /// `prctl(PR_GET_THP_DISABLE)`: 0, or the value to set again.
    pub thp_disable: u32,
    /// Native AIO contexts (io_setup(2)), in address order (format version 3).
    pub aio: Vec<AioRing>,
    /// `prctl(PR_GET_MDWE)`: memory-deny-write-execute flags (format version 5).
    pub mdwe: u32,
}

/// A native AIO context: its ring's header (`struct aio_ring` in fs/aio.c,
/// which the kernel shares with the program) as it was at dump. The
/// completion events are in the ring's pages, dumped with its VMA.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AioRing {
    /// Start of the ring mapping: the `aio_context_t` the program holds.
    pub addr: u64,
    /// Size of the ring mapping in bytes.
    pub len: u64,
    /// `id`: the context's slot in the address space's table of contexts.
    pub id: u32,
    /// `nr`: completion event slots in the ring.
    pub nr: u32,
    /// `head`: the next event the program reaps (the program writes it).
    pub head: u32,
    /// `tail`: where the kernel writes the next completion.
    pub tail: u32,
    /// `magic` (AIO_RING_MAGIC).
    pub magic: u32,
    /// `compat_features`.
    pub compat_features: u32,
    /// `incompat_features`.
    pub incompat_features: u32,
    /// `header_length`: size of the header, the events follow it.
    pub header_length: u32,
    /// The `nr_events` io_setup(2) is given at restore: the smallest the
    /// program may have asked for that gives a ring of `nr` slots (what it
    /// asked is not kept by the kernel anywhere it shows).
    pub nr_req: u32,
}

impl AioRing {
    /// Completion events waiting to be reaped (between head and tail).
    pub fn pending(&self) -> u32 {
        if self.nr == 0 {
            return 0;
        }
        (self.tail % self.nr + self.nr - self.head % self.nr) % self.nr
    }
}

impl Describe for AioRing {
    fn describe(&self) -> Node {
        Obj::new()
            .addr("addr", self.addr)
            .f("len", Node::Size(self.len))
            .f("id", self.id)
            .f("nr", self.nr)
            .f("head", self.head)
            .f("tail", self.tail)
            .f("pending", self.pending())
            .f("magic", Node::hex(self.magic as u64))
            .f("compat_features", self.compat_features)
            .f("incompat_features", self.incompat_features)
            .f("header_length", self.header_length)
            .f("nr_req", self.nr_req)
            .done()
    }
}

bitflags::bitflags! {
    /// Settings of the whole address space (`mm_struct`), not of one VMA.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct MmFlags: u32 {
        /// `mlockall(MCL_FUTURE)`: new mappings are locked (`def_flags` has VM_LOCKED).
        const MCL_FUTURE = 1 << 0;
        /// With [`MmFlags::MCL_FUTURE`]: `MCL_ONFAULT` (VM_LOCKONFAULT).
        const MCL_ONFAULT = 1 << 1;
        /// `prctl(PR_SET_MEMORY_MERGE)`: KSM merges every mapping.
        const MERGE_ANY = 1 << 2;
    }
}

/// One VMA.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub flags: MapFlags,
    pub kind: VmaKind,
    pub status: VmaStatus,
    /// Mapped file path (file, memfd, sysv shm).
    pub path: Option<RawStr>,
    /// Device of the mapped file (`major:minor` encoded as the kernel's `dev_t`).
    pub dev: u64,
    pub inode: u64,
    /// Offset into the file, in bytes.
    pub pgoff: u64,
    /// Object id for shared memory / file objects (0 when none; for
    /// [`VmaKind::SysvShm`] the segment's shmid, which may be 0).
    pub shmid: u64,
    /// Private anonymous memory still shared copy-on-write with an
    /// ancestor's VMA at the same place: that task's pid (0: none). Its
    /// PE_COW pagemap entries are the shared pages, stored in that task's
    /// pages image only (format version 2).
    pub cow_from: u32,
    /// Hugetlb memory (smaps `ht`): its huge page size in bytes
    /// (`KernelPageSize`, 2 MiB or 1 GiB on x86_64); 0 for ordinary pages.
    /// Page data stays in 4 KiB pagemap units (format version 4).
    pub huge_page_size: u64,
    /// Its own NUMA memory policy (mbind), none for the default (format 6).
    pub mempolicy: Option<MemPolicy>,
}

/// A NUMA memory policy as get_mempolicy(2) reports it and
/// set_mempolicy(2)/mbind(2) take it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemPolicy {
    /// Mode with its flags (MPOL_F_STATIC_NODES, ...).
    pub mode: i32,
    /// Node mask, 64 nodes a word (at most 16 words).
    pub nodes: Vec<u64>,
}

impl Describe for MemPolicy {
    fn describe(&self) -> Node {
        Node::Str(crate::objects::mm::describe_mempolicy(self.mode, &self.nodes))
    }
}

impl Vma {
    /// True for hugetlb memory.
    pub fn is_hugetlb(&self) -> bool {
        self.huge_page_size != 0
    }
}

fn auxv_name(t: u64) -> Option<&'static str> {
    Some(match t {
        0 => "AT_NULL",
        3 => "AT_PHDR",
        4 => "AT_PHENT",
        5 => "AT_PHNUM",
        6 => "AT_PAGESZ",
        7 => "AT_BASE",
        8 => "AT_FLAGS",
        9 => "AT_ENTRY",
        11 => "AT_UID",
        12 => "AT_EUID",
        13 => "AT_GID",
        14 => "AT_EGID",
        15 => "AT_PLATFORM",
        16 => "AT_HWCAP",
        17 => "AT_CLKTCK",
        23 => "AT_SECURE",
        24 => "AT_BASE_PLATFORM",
        25 => "AT_RANDOM",
        26 => "AT_HWCAP2",
        27 => "AT_RSEQ_FEATURE_SIZE",
        28 => "AT_RSEQ_ALIGN",
        31 => "AT_EXECFN",
        33 => "AT_SYSINFO_EHDR",
        51 => "AT_MINSIGSTKSZ",
        _ => return None,
    })
}

impl Describe for MmEntry {
    fn describe(&self) -> Node {
        let auxv = self
            .auxv
            .chunks(2)
            .map(|p| {
                let t = p[0];
                let v = p.get(1).copied().unwrap_or(0);
                let name = auxv_name(t).map_or_else(|| t.to_string(), str::to_owned);
                Obj::new().f("type", name).f("value", Node::hex(v)).done()
            })
            .collect();
        Obj::new()
            .addr("start_code", self.start_code)
            .addr("end_code", self.end_code)
            .addr("start_data", self.start_data)
            .addr("end_data", self.end_data)
            .addr("start_brk", self.start_brk)
            .addr("brk", self.brk)
            .addr("start_stack", self.start_stack)
            .addr("arg_start", self.arg_start)
            .addr("arg_end", self.arg_end)
            .addr("env_start", self.env_start)
            .addr("env_end", self.env_end)
            .d("exe_file", &self.exe_file)
            .d("flags", &self.flags)
            .f("thp_disable", self.thp_disable)
            .f("mdwe", self.mdwe)
            .f("auxv", Node::Array(auxv))
            .f("aio", Node::Array(self.aio.iter().map(Describe::describe).collect()))
            .done()
    }
}

impl Describe for Vma {
    fn describe(&self) -> Node {
        Obj::new()
            .addr("start", self.start)
            .addr("end", self.end)
            .f("size", Node::Size(self.end.saturating_sub(self.start)))
            .d("prot", &self.prot)
            .d("flags", &self.flags)
            .f("kind", self.kind.name())
            .d("status", &self.status)
            .d("path", &self.path)
            .f("dev", format!("{}:{}", (self.dev >> 8) & 0xfff, (self.dev & 0xff) | ((self.dev >> 12) & 0xfff00)))
            .f("inode", self.inode)
            .f("pgoff", Node::hex(self.pgoff))
            .f("shmid", self.shmid)
            .f("cow_from", self.cow_from)
            .f("huge_page_size", Node::Size(self.huge_page_size))
            .d("mempolicy", &self.mempolicy)
            .done()
    }
}
