//! `pagemap-<pid>.img`: which virtual ranges of a task's memory the pages
//! files hold. A task's pages may be striped over several files, written
//! side by side at dump: `pages-<pages_id>.img` (stripe 0) and one
//! `pages-<id>.img` per id of the head's `stripes` (stripe 1, 2, ...).
//! Entries are in file order within their stripe: the data of every entry
//! with [`PagemapEntry::has_data`] follows the previous one's of the same
//! stripe, so its offset in that file is the sum of the lengths of the
//! data-holding entries of that stripe before it ([`data_offsets`]).
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

/// Most stripes a task's pages are written in.
pub const MAX_STRIPES: usize = 8;

/// Head: which pages files go with this pagemap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagemapHead {
    /// The `<id>` of `pages-<id>.img`, stripe 0.
    pub pages_id: u32,
    /// The ids of the further stripes' pages images, stripe 1 first
    /// (format version 3).
    pub stripes: Vec<u32>,
}

impl PagemapHead {
    /// The pages image id of `stripe`, if the head has it.
    pub fn stripe_id(&self, stripe: u8) -> Option<u32> {
        match stripe {
            0 => Some(self.pages_id),
            k => self.stripes.get(k as usize - 1).copied(),
        }
    }

    /// Every pages image id, stripe 0 first.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.pages_id).chain(self.stripes.iter().copied())
    }
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
    /// Which stripe's pages image holds the data (see [`PagemapHead`]);
    /// 0 for entries without data (format version 3).
    pub stripe: u8,
}

impl PagemapEntry {
    /// An entry of stripe 0 (the only stripe of entries without data).
    pub fn new(vaddr: u64, nr_pages: u32, flags: PagemapFlags) -> Self {
        PagemapEntry { vaddr, nr_pages, flags, stripe: 0 }
    }

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

/// The id of stripe `k`'s pages image of a task whose pages image is
/// `pages-<pages_id>.img` (a pid: below 2^22, `PID_MAX_LIMIT`), as a dump
/// names it; a restore follows the head's `stripes`.
pub fn stripe_image_id(pages_id: u32, k: u8) -> u32 {
    pages_id.wrapping_add((k as u32) << 22)
}

/// Checks that `head` has at most [`MAX_STRIPES`] stripes and that every
/// entry names one of them (entries without data: stripe 0); the error
/// names the first entry that does not.
pub fn check_stripes(head: &PagemapHead, entries: &[PagemapEntry]) -> Result<(), String> {
    if head.stripes.len() >= MAX_STRIPES {
        return Err(format!("the pages image has {} stripes", head.stripes.len() + 1));
    }
    match entries.iter().find(|e| head.stripe_id(e.stripe).is_none() || (e.stripe != 0 && !e.has_data())) {
        Some(e) => Err(format!("pages at {:#x} are in stripe {}, which the pages image lacks", e.vaddr, e.stripe)),
        None => Ok(()),
    }
}

/// The data-holding entries of a pagemap with the offset of each one's
/// data in its stripe's pages image, in pagemap order.
pub fn data_offsets(entries: &[PagemapEntry]) -> impl Iterator<Item = (&PagemapEntry, u64)> {
    let mut next = [0u64; MAX_STRIPES];
    entries.iter().filter(|e| e.has_data()).map(move |e| {
        let at = &mut next[(e.stripe as usize).min(MAX_STRIPES - 1)];
        let off = *at;
        *at += e.nr_pages as u64 * 4096;
        (e, off)
    })
}

impl Describe for PagemapHead {
    fn describe(&self) -> Node {
        let mut o = Obj::new().f("pages_id", self.pages_id);
        if !self.stripes.is_empty() {
            o = o.f("stripes", Node::Array(self.stripes.iter().map(|&t| t.into()).collect()));
        }
        o.done()
    }
}

impl Describe for PagemapEntry {
    fn describe(&self) -> Node {
        let mut o = Obj::new().addr("vaddr", self.vaddr).f("nr_pages", self.nr_pages).d("flags", &self.flags);
        if self.stripe != 0 {
            o = o.f("stripe", self.stripe);
        }
        o.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_are_checked_and_offsets_counted_per_stripe() {
        let head = PagemapHead { pages_id: 7, stripes: vec![stripe_image_id(7, 1)] };
        let mut a = PagemapEntry::new(0x1000, 2, PagemapFlags::PE_PRESENT);
        let mut b = PagemapEntry::new(0x9000, 1, PagemapFlags::PE_PRESENT);
        b.stripe = 1;
        let c = PagemapEntry::new(0x3000, 3, PagemapFlags::PE_PRESENT);
        assert_eq!(check_stripes(&head, &[a, b, c]), Ok(()));
        let offs: Vec<(u64, u64)> = data_offsets(&[a, b, c]).map(|(e, o)| (e.vaddr, o)).collect();
        assert_eq!(offs, vec![(0x1000, 0), (0x9000, 0), (0x3000, 0x2000)]);
        a.stripe = 2;
        assert!(check_stripes(&head, &[a]).unwrap_err().contains("stripe 2"));
        let mut z = PagemapEntry::new(0x5000, 1, PagemapFlags::PE_ZERO);
        z.stripe = 1;
        assert!(check_stripes(&head, &[z]).is_err());
    }
}
