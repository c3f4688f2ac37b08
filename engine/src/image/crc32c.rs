//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
//! every header, record and whole image file.
//!
//! Invariants: the tables are computed at compile time by `const fn`; the
//! result equals the iSCSI/ext4/btrfs CRC-32C (check value of "123456789" is
//! 0xE3069283). On CPUs with SSE4.2 the `crc32` instruction computes the
//! same polynomial (several GB/s, so checksumming page data costs little
//! next to reading it); elsewhere slicing-by-8 tables do.

/// Reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ POLY } else { crc >> 1 };
            k += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

/// Streaming CRC-32C state.
#[derive(Clone, Copy, Debug)]
pub struct Crc32c {
    state: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    /// A fresh checksum (of zero bytes).
    pub const fn new() -> Self {
        Crc32c { state: !0 }
    }

    /// A state continuing from a finished checksum `value`.
    pub const fn from_value(value: u32) -> Self {
        Crc32c { state: !value }
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2, checked just above.
            self.state = unsafe { update_sse42(self.state, data) };
            return;
        }
        self.update_tables(data);
    }

    fn update_tables(&mut self, data: &[u8]) {
        let t = &TABLES;
        let mut crc = self.state;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
            let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xff) as usize]
                ^ t[2][((hi >> 8) & 0xff) as usize]
                ^ t[1][((hi >> 16) & 0xff) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            crc = (crc >> 8) ^ t[0][((crc ^ b as u32) & 0xff) as usize];
        }
        self.state = crc;
    }

    /// The checksum of everything fed so far.
    pub const fn value(&self) -> u32 {
        !self.state
    }
}

/// Bytes per lane of the three-lane `crc32` loop over long data.
#[cfg(target_arch = "x86_64")]
const LANE: usize = 4096;

/// Bytes per lane over data shorter than three [`LANE`]s (a page is three
/// lanes of this and a 16-byte tail): the dump checksums page by page.
#[cfg(target_arch = "x86_64")]
const SHORT_LANE: usize = 1360;

/// The operator "append `lane` zero bytes" on the CRC register, as four
/// byte-indexed tables (it is linear over GF(2)): it merges the three
/// lanes. One set per lane length ([`LANE`], [`SHORT_LANE`]).
#[cfg(target_arch = "x86_64")]
fn lane_shift_tables(lane: usize) -> &'static [[u32; 256]; 4] {
    static T: [std::sync::OnceLock<Box<[[u32; 256]; 4]>>; 2] = [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    T[(lane == SHORT_LANE) as usize].get_or_init(|| {
        // Image of each basis bit under the operator (table-driven, exact).
        let zeros = vec![0u8; lane];
        let mut basis = [0u32; 32];
        for (bit, b) in basis.iter_mut().enumerate() {
            let mut c = Crc32c { state: 1u32 << bit };
            c.update_tables(&zeros);
            *b = c.state;
        }
        let mut t = Box::new([[0u32; 256]; 4]);
        for (k, table) in t.iter_mut().enumerate() {
            for (byte, e) in table.iter_mut().enumerate() {
                let v = (byte as u32) << (8 * k);
                *e = (0..32).filter(|b| v & (1 << b) != 0).fold(0, |a, b| a ^ basis[b]);
            }
        }
        t
    })
}

#[cfg(target_arch = "x86_64")]
fn lane_shift(t: &[[u32; 256]; 4], v: u32) -> u32 {
    t[0][(v & 0xff) as usize]
        ^ t[1][((v >> 8) & 0xff) as usize]
        ^ t[2][((v >> 16) & 0xff) as usize]
        ^ t[3][(v >> 24) as usize]
}

/// The `crc32` instruction over `data`: three independent lanes at a time
/// (the instruction's latency is three cycles, its throughput one), merged
/// with [`lane_shift`]; the tail 8 bytes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn update_sse42(state: u32, data: &[u8]) -> u32 {
    use core::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let lane = if data.len() >= 3 * LANE { LANE } else { SHORT_LANE };
    let word = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let mut crc = state;
    let mut blocks = data.chunks_exact(3 * lane);
    if data.len() >= 3 * lane {
        let t = lane_shift_tables(lane);
        for blk in &mut blocks {
            let (a, rest) = blk.split_at(lane);
            let (b, c) = rest.split_at(lane);
            let (mut c0, mut c1, mut c2) = (crc as u64, 0u64, 0u64);
            let mut i = 0;
            while i < lane {
                c0 = _mm_crc32_u64(c0, word(a, i));
                c1 = _mm_crc32_u64(c1, word(b, i));
                c2 = _mm_crc32_u64(c2, word(c, i));
                i += 8;
            }
            let r1 = lane_shift(t, c0 as u32) ^ c1 as u32;
            crc = lane_shift(t, r1) ^ c2 as u32;
        }
    }
    let tail = blocks.remainder();
    let mut c = crc as u64;
    let mut words = tail.chunks_exact(8);
    for w in &mut words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut crc = c as u32;
    for &b in words.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    crc
}

/// Product of two polynomials modulo the CRC polynomial, both in the
/// reflected representation (bit 31 is x^0).
fn mul_mod(a: u32, mut b: u32) -> u32 {
    let mut p = 0u32;
    for i in 0..32 {
        if a & (1u32 << (31 - i)) != 0 {
            p ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// x^(8 * bytes) modulo the CRC polynomial: the operator that appends
/// `bytes` zero bytes, by squaring (x^(2^k) for each set bit of 8 * bytes).
fn zeros_operator(bytes: u64) -> u32 {
    let mut result = 1u32 << 31; // x^0
    let mut sq = 1u32 << 30; // x^1
    let mut n = bytes.checked_mul(8).expect("length fits");
    while n != 0 {
        if n & 1 != 0 {
            result = mul_mod(sq, result);
        }
        sq = mul_mod(sq, sq);
        n >>= 1;
    }
    result
}

/// The checksum of `A` followed by `B` from `crc(A)`, `crc(B)` and
/// `B`'s length: pieces checksummed apart (by parallel writers) are joined
/// in file order without reading them again.
pub fn combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    if len_b == 0 {
        return crc_a;
    }
    mul_mod(zeros_operator(len_b), crc_a) ^ crc_b
}

/// CRC-32C of `data` in one go.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = Crc32c::new();
    c.update(data);
    c.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ POLY } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn instruction_and_tables_agree() {
        let data: Vec<u8> = (0..100_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 4079, 4080, 4096, 12_288, 12_289, 50_000, 100_003] {
            let mut a = Crc32c::new();
            a.update(&data[..cut]);
            a.update(&data[cut..]);
            let mut b = Crc32c::new();
            b.update_tables(&data);
            assert_eq!(a.value(), b.value(), "cut {cut}");
        }
        assert_eq!(bitwise(&data[..1000]), crc32c(&data[..1000]));
        // Page by page, as the dump feeds it (three short lanes a page).
        let mut a = Crc32c::new();
        data.chunks(4096).for_each(|p| a.update(p));
        let mut b = Crc32c::new();
        b.update_tables(&data);
        assert_eq!(a.value(), b.value());
    }

    #[test]
    fn combined_pieces_match_the_whole() {
        let data: Vec<u8> = (0..70_001u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for cut in [0, 1, 8, 4096, 12_289, 70_000, 70_001] {
            let (a, b) = data.split_at(cut);
            assert_eq!(combine(crc32c(a), crc32c(b), b.len() as u64), crc32c(&data), "cut {cut}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn streaming_matches_bitwise() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let mut c = Crc32c::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.value(), bitwise(&data), "split {split}");
        }
    }
}
