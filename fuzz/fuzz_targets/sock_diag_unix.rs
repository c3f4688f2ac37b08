// sock diag: the unix, inet and packet message parsers must return, never
// panic, on any input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = std::hint::black_box((
        engine::sys::sock_diag::parse_unix(data),
        engine::sys::sock_diag::parse_inet(data),
        engine::sys::sock_diag::parse_packet(data),
    ));
});
