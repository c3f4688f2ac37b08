//! Builds the restorer's arena (see `restorer_plan`): the fixed [`Plan`]
//! followed by tables and strings, all referenced by offsets from the plan.
use restorer_plan::{Plan, Str, Table};
use std::mem::size_of;

/// An arena under construction.
pub struct PlanBuilder {
    /// The fixed part; tables are appended after it.
    pub plan: Box<Plan>,
    tail: Vec<u8>,
}

impl Default for PlanBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PlanBuilder {
    /// An empty plan with magic and version set.
    pub fn new() -> PlanBuilder {
        // SAFETY: Plan is repr(C) plain data (integers and arrays of them);
        // all-zero is a valid value of every field.
        let mut plan: Box<Plan> = Box::new(unsafe { std::mem::zeroed() });
        plan.magic = restorer_plan::MAGIC;
        plan.version = restorer_plan::VERSION;
        PlanBuilder { plan, tail: Vec::new() }
    }

    fn align(&mut self) {
        while !(size_of::<Plan>() + self.tail.len()).is_multiple_of(16) {
            self.tail.push(0);
        }
    }

    /// Offset (from the plan) where the next table starts.
    fn next_off(&self) -> u64 {
        (size_of::<Plan>() + self.tail.len()) as u64
    }

    /// Appends `items` and returns their table reference.
    pub fn add_table<T: Copy>(&mut self, items: &[T]) -> Table {
        self.align();
        let off = self.next_off();
        // SAFETY: T is one of the plan's plain-data repr(C) types (or a
        // primitive/array of them); its bytes are what the blob reads.
        let bytes = unsafe { std::slice::from_raw_parts(items.as_ptr() as *const u8, std::mem::size_of_val(items)) };
        self.tail.extend_from_slice(bytes);
        Table { off, nr: items.len() as u64 }
    }

    /// Appends a NUL-terminated copy of `s`.
    pub fn add_str(&mut self, s: &[u8]) -> Str {
        let off = self.next_off();
        self.tail.extend_from_slice(s);
        self.tail.push(0);
        Str { off }
    }

    /// Total arena size so far.
    pub fn size(&self) -> usize {
        size_of::<Plan>() + self.tail.len()
    }

    /// The arena bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.align();
        self.plan.size = self.size() as u64;
        let mut out = Vec::with_capacity(self.size());
        // SAFETY: Plan is plain data; copying its bytes is what the blob expects.
        let head = unsafe { std::slice::from_raw_parts(&*self.plan as *const Plan as *const u8, size_of::<Plan>()) };
        out.extend_from_slice(head);
        out.extend_from_slice(&self.tail);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mm_map_is_the_kernels_prctl_mm_map() {
        use core::mem::{offset_of, size_of};
        use linux_raw_sys::prctl::prctl_mm_map as K;
        use restorer_plan::MmMap as M;
        assert_eq!(size_of::<M>(), size_of::<K>());
        assert_eq!(offset_of!(M, env_end), offset_of!(K, env_end));
        assert_eq!(offset_of!(M, auxv), offset_of!(K, auxv));
        assert_eq!(offset_of!(M, auxv_size), offset_of!(K, auxv_size));
        assert_eq!(offset_of!(M, exe_fd), offset_of!(K, exe_fd));
    }

    #[test]
    fn tables_and_strings_are_offsets_from_the_plan() {
        let mut b = PlanBuilder::new();
        let t = b.add_table(&[1u64, 2, 3]);
        let s = b.add_str(b"/tmp/x");
        let bytes = b.finish();
        assert_eq!(t.off as usize % 16, 0);
        assert_eq!(t.nr, 3);
        let at = t.off as usize;
        assert_eq!(u64::from_ne_bytes(bytes[at + 8..at + 16].try_into().unwrap()), 2);
        assert_eq!(&bytes[s.off as usize..s.off as usize + 7], b"/tmp/x\0");
        let size = u64::from_ne_bytes(bytes[8..16].try_into().unwrap());
        assert_eq!(size as usize, bytes.len());
    }
}
