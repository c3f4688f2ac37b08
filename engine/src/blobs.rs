//! The parasite and restorer blobs, built and flattened by `build.rs`.
//!
//! Each blob is one flat position-independent image: entry at offset 0, an
//! `int3` at `TRAP` that marks "command done", and a list of 64-bit words that
//! hold offsets into the blob and need the load base added
//! (R_X86_64_RELATIVE; the build refuses any other relocation).

/// The parasite blob (see `parasite_proto` for its protocol).
pub mod parasite {
    include!(concat!(env!("OUT_DIR"), "/parasite_blob.rs"));
}

/// The restorer blob (see `restorer_plan` for its arena).
pub mod restorer {
    include!(concat!(env!("OUT_DIR"), "/restorer_blob.rs"));
}

/// A blob ready to be copied to `base` in some address space.
pub struct Loaded {
    /// Bytes to write at `base`, `mem_size` long (.bss included, zeroed).
    pub bytes: Vec<u8>,
}

/// Relocates `image` for load address `base`.
///
/// Each entry of `relocs` is the offset of a little-endian u64 that holds an
/// offset into the blob; the result holds `base + offset` there.
pub fn relocate(image: &[u8], mem_size: usize, relocs: &[usize], base: u64) -> Loaded {
    let mut bytes = vec![0u8; mem_size.max(image.len())];
    bytes[..image.len()].copy_from_slice(image);
    for &off in relocs {
        let word = u64::from_le_bytes(bytes[off..off + 8].try_into().expect("8 bytes"));
        bytes[off..off + 8].copy_from_slice(&(word.wrapping_add(base)).to_le_bytes());
    }
    Loaded { bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Entry offsets are fixed by the linker scripts.
    const _: () = assert!(parasite::ENTRY == 0 && restorer::ENTRY == 0);
    const _: () = assert!(parasite::MEM_SIZE < 1 << 20, "parasite unexpectedly large");

    #[test]
    fn parasite_blob_is_sane() {
        assert_eq!(parasite::IMAGE[parasite::TRAP], 0xcc, "int3 at the trap offset");
        assert!(parasite::MEM_SIZE >= parasite::IMAGE.len());
        for &r in parasite::RELOCS {
            assert!(r + 8 <= parasite::IMAGE.len());
        }
    }

    #[test]
    fn restorer_blob_is_sane() {
        assert_eq!(restorer::IMAGE[restorer::TRAP], 0xcc);
    }

    #[test]
    fn relocation_adds_base() {
        let mut img = vec![0u8; 24];
        img[8..16].copy_from_slice(&0x40u64.to_le_bytes());
        let l = relocate(&img, 32, &[8], 0x7f00_0000_0000);
        assert_eq!(l.bytes.len(), 32);
        assert_eq!(u64::from_le_bytes(l.bytes[8..16].try_into().unwrap()), 0x7f00_0000_0040);
        assert_eq!(&l.bytes[..8], &[0; 8]);
    }
}
