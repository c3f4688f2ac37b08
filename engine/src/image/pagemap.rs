//! `pagemap-<pid>.img`: which virtual ranges of a task's memory the pages
//! file `pages-<pages_id>.img` holds. Entries are in file order: the data of
//! every entry with [`PagemapEntry::has_data`] follows the previous one's in
//! the pages file, so the pages-file index of an entry is the sum of
//! `nr_pages` of the data-holding entries before it.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::serde_bits;

bitflags::bitflags! {
    /// Where a range's contents are.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct PagemapFlags: u32 {
        /// The pages are in the parent dump (incremental dumps), not here.
        const PE_PARENT = 1 << 0;
        /// The pages are all zero; no data stored.
        const PE_ZERO = 1 << 1;
        /// The pages are fetched lazily (post-copy); no data stored here.
        const PE_LAZY = 1 << 2;
        /// The pages were present in memory (informational).
        const PE_PRESENT = 1 << 3;
        /// The pages were in swap (informational).
        const PE_SWAPPED = 1 << 4;
        /// A guard region (`MADV_GUARD_INSTALL`): no data, installed again
        /// at restore (format version 2).
        const PE_GUARD = 1 << 5;
        /// Still shared copy-on-write with the ancestor named by the VMA's
        /// `cow_from`: no data here, the ancestor's is used (format version 2).
        const PE_COW = 1 << 6;
    }
}
serde_bits!(PagemapFlags: u32);

/// Head: which pages file goes with this pagemap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagemapHead {
    /// The `<id>` of `pages-<id>.img`.
    pub pages_id: u32,
}

/// One range of pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagemapEntry {
    /// First virtual address, page aligned.
    pub vaddr: u64,
    /// Number of 4 KiB pages.
    pub nr_pages: u32,
    /// Where the contents are.
    pub flags: PagemapFlags,
}

impl PagemapEntry {
    /// True when the range's pages are stored in the pages file.
    pub fn has_data(&self) -> bool {
        !self.flags.intersects(
            PagemapFlags::PE_PARENT
                | PagemapFlags::PE_ZERO
                | PagemapFlags::PE_LAZY
                | PagemapFlags::PE_GUARD
                | PagemapFlags::PE_COW,
        )
    }
}

impl Describe for PagemapHead {
    fn describe(&self) -> Node {
        Obj::new().f("pages_id", self.pages_id).done()
    }
}

impl Describe for PagemapEntry {
    fn describe(&self) -> Node {
        Obj::new().addr("vaddr", self.vaddr).f("nr_pages", self.nr_pages).d("flags", &self.flags).done()
    }
}
