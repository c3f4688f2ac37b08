// Any records image, of every kind: the first byte picks the kind, whose
// valid header is put before the rest (so every kind's decoder is reached
// without guessing magic and checksums); the rest is decoded as
// `crtools show` does. Inputs that start with the magic are taken whole.
#![no_main]
use engine::image::codec::{encode_header, has_magic};
use engine::image::kind::{Layout, KINDS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = std::io::sink();
    if has_magic(data) {
        let _ = engine::show::show_bytes(data, "fuzz.img", false, &mut out);
        return;
    }
    let Some((&k, rest)) = data.split_first() else { return };
    let records: Vec<_> = KINDS.iter().filter(|d| d.layout == Layout::Records).collect();
    let d = records[k as usize % records.len()];
    let mut img = encode_header(d.kind).to_vec();
    img.extend_from_slice(rest);
    let _ = engine::show::show_bytes(&img, "fuzz.img", k & 0x80 != 0, &mut out);
});
