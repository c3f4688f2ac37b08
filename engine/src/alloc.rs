//! A global allocator for the crtools binary: the system allocator with a
//! small cache of freed medium-sized blocks.
//!
//! musl's allocator (mallocng) gives medium-sized blocks back to the kernel
//! as soon as they are free: every 8 KiB scratch buffer of a VMA walk, every
//! parsed smaps table becomes an mmap, page faults and an munmap. While the
//! page workers run, each munmap also interrupts the other cores for a TLB
//! shootdown. Dumping a tree of six processes with 245 VMAs each made 7,000
//! such pairs, a third of the frozen time. Freed blocks of 2 KiB to 256 KiB
//! are kept here instead (rounded up to a power of two, at most
//! [`MAX_CACHED`] bytes in all, so peak memory stays small) and handed out
//! again.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, Ordering};
use std::alloc::System;

/// The smallest and largest cached block (as powers of two).
const MIN_SHIFT: u32 = 11;
const MAX_SHIFT: u32 = 18;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Free blocks kept per size class.
const SLOTS: usize = 16;
/// Bytes kept in all classes together.
pub const MAX_CACHED: usize = 2 << 20;
/// What malloc aligns to on its own; blocks needing more are not cached.
const ALIGN: usize = 16;

struct Cache {
    free: [[usize; SLOTS]; CLASSES],
    count: [usize; CLASSES],
    bytes: usize,
}

/// The system allocator with a bounded cache of freed medium-sized blocks.
pub struct CachingAlloc {
    lock: AtomicBool,
    cache: core::cell::UnsafeCell<Cache>,
}

// SAFETY: `cache` is only touched with `lock` held (see `with`).
unsafe impl Sync for CachingAlloc {}

impl CachingAlloc {
    pub const fn new() -> Self {
        CachingAlloc {
            lock: AtomicBool::new(false),
            cache: core::cell::UnsafeCell::new(Cache { free: [[0; SLOTS]; CLASSES], count: [0; CLASSES], bytes: 0 }),
        }
    }

    /// Runs `f` on the cache if no other thread is using it; None (the
    /// caller goes to the system allocator) if one is. Never waiting keeps
    /// the child of a raw fork that copied a held lock from deadlocking.
    fn with<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> Option<R> {
        if self.lock.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return None;
        }
        // SAFETY: the lock is held: no other reference to the cache exists.
        let r = f(unsafe { &mut *self.cache.get() });
        self.lock.store(false, Ordering::Release);
        Some(r)
    }
}

impl Default for CachingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class of `l` if blocks of its size are cached.
fn class(l: Layout) -> Option<usize> {
    if l.align() > ALIGN || l.size() < (1 << (MIN_SHIFT - 1)) + 1 || l.size() > 1 << MAX_SHIFT {
        return None;
    }
    let shift = usize::BITS - (l.size() - 1).leading_zeros();
    Some((shift.max(MIN_SHIFT) - MIN_SHIFT) as usize)
}

fn class_layout(c: usize) -> Layout {
    // A power of two between 2 KiB and 256 KiB, aligned to 16: always valid.
    Layout::from_size_align(1 << (c as u32 + MIN_SHIFT), ALIGN).unwrap_or(Layout::new::<u8>())
}

// SAFETY: every block handed out comes from `System` with at least the
// size and alignment asked; cached blocks are only handed out once (popped
// under the lock) and are given back to `System` with the layout they were
// allocated with (their class's).
unsafe impl GlobalAlloc for CachingAlloc {
    // Out of line: inlined into every allocation site it made the binary
    // half a megabyte larger.
    #[inline(never)]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        match class(l) {
            Some(c) => {
                let hit = self
                    .with(|k| {
                        (k.count[c] > 0).then(|| {
                            k.count[c] -= 1;
                            k.bytes -= 1 << (c as u32 + MIN_SHIFT);
                            k.free[c][k.count[c]]
                        })
                    })
                    .flatten();
                match hit {
                    Some(p) => p as *mut u8,
                    // SAFETY: a valid, non-zero-sized layout.
                    None => unsafe { System.alloc(class_layout(c)) },
                }
            }
            // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
            None => unsafe { System.alloc(l) },
        }
    }

    /// calloc for what is not cached: the default (alloc, then memset)
    /// would touch every page of a large zeroed buffer that calloc gets
    /// from fresh, already zero mappings (the page workers' 4 MiB windows
    /// are meant to cost only what they use).
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        match class(l) {
            Some(_) => {
                // SAFETY: the caller's layout; the block holds l.size() bytes.
                unsafe {
                    let p = self.alloc(l);
                    if !p.is_null() {
                        core::ptr::write_bytes(p, 0, l.size());
                    }
                    p
                }
            }
            // SAFETY: the caller's layout, as GlobalAlloc::alloc_zeroed requires.
            None => unsafe { System.alloc_zeroed(l) },
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        match class(l) {
            Some(c) => {
                let size = 1usize << (c as u32 + MIN_SHIFT);
                let kept = self.with(|k| {
                    if k.count[c] < SLOTS && k.bytes + size <= MAX_CACHED {
                        k.free[c][k.count[c]] = p as usize;
                        k.count[c] += 1;
                        k.bytes += size;
                        true
                    } else {
                        false
                    }
                });
                if kept != Some(true) {
                    // SAFETY: allocated by System with this class's layout.
                    unsafe { System.dealloc(p, class_layout(c)) }
                }
            }
            // SAFETY: allocated by System with layout `l`.
            None => unsafe { System.dealloc(p, l) },
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let Ok(nl) = Layout::from_size_align(new_size, l.align()) else {
            return core::ptr::null_mut();
        };
        match (class(l), class(nl)) {
            // SAFETY: neither block is one of ours: System's own realloc.
            (None, None) => unsafe { System.realloc(p, l, new_size) },
            (Some(a), Some(b)) if a == b => p,
            _ => {
                // SAFETY: `nl` is valid and non-zero-sized.
                let q = unsafe { self.alloc(nl) };
                if !q.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and
                    // are distinct allocations.
                    unsafe {
                        core::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                        self.dealloc(p, l);
                    }
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_2k_to_256k() {
        let l = |s| Layout::from_size_align(s, 8).unwrap();
        assert_eq!(class(l(1024)), None);
        assert_eq!(class(l(1025)), Some(0));
        assert_eq!(class(l(2048)), Some(0));
        assert_eq!(class(l(2049)), Some(1));
        assert_eq!(class(l(8192)), Some(2));
        assert_eq!(class(l(256 << 10)), Some(CLASSES - 1));
        assert_eq!(class(l((256 << 10) + 1)), None);
        assert_eq!(class(Layout::from_size_align(4096, 4096).unwrap()), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_bounded() {
        let a = CachingAlloc::new();
        let l = Layout::from_size_align(5000, 8).unwrap();
        // SAFETY: every block is used within the size it was allocated with
        // and freed once, with its layout.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            p.write_bytes(0xa5, 5000);
            a.dealloc(p, l);
            let q = a.alloc(l);
            assert_eq!(p, q, "a freed block of the same class comes back");
            // Zeroed allocations are zero even from a used block.
            a.dealloc(q, l);
            let z = a.alloc_zeroed(l);
            assert_eq!(z, p);
            assert!((0..5000).all(|i| *z.add(i) == 0));
            z.write_bytes(0xa5, 5000);
            let q = z;
            // Growing within the class keeps the block and its contents.
            let r = a.realloc(q, l, 8000);
            assert_eq!(r, q);
            assert_eq!(*r.add(4999), 0xa5);
            // Growing past it moves the contents.
            let s = a.realloc(r, Layout::from_size_align(8000, 8).unwrap(), 100_000);
            assert_eq!(*s.add(4999), 0xa5);
            a.dealloc(s, Layout::from_size_align(100_000, 8).unwrap());
            // The cache never holds more than its bound.
            let big = Layout::from_size_align(200 << 10, 8).unwrap();
            let blocks: Vec<_> = (0..SLOTS).map(|_| a.alloc(big)).collect();
            for b in blocks {
                a.dealloc(b, big);
            }
            let cached = a.with(|k| k.bytes).unwrap();
            assert!(cached <= MAX_CACHED, "{cached} bytes cached");
        }
    }
}
