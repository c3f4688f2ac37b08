// proc locks: the parser must return, never panic, on any input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = std::hint::black_box(std::str::from_utf8(data).ok().map(engine::proc::locks::parse));
});
