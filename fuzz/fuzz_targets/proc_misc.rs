// proc misc: the parser must return, never panic, on any input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = std::hint::black_box({
        let t = std::str::from_utf8(data).ok();
        (
            engine::proc::misc::parse_comm(data),
            t.map(engine::proc::misc::parse_personality),
            t.map(engine::proc::misc::parse_loginuid),
            t.map(engine::proc::misc::parse_oom_score_adj),
            t.map(engine::proc::misc::parse_ns_last_pid),
            t.map(engine::proc::task::parse_children),
            t.map(engine::proc::map_files::parse_name),
            t.map(engine::proc::parse_id_list),
            t.map(|t| engine::proc::net::parse_joined_groups(t, t)),
            t.map(|t| engine::proc::net::parse_sock_row(t, 1)),
            t.map(engine::proc::sysvipc::parse),
            {
                let mut out = [0u64; 64];
                engine::proc::pagemap::parse_entries(data, &mut out)
            },
        )
    });
});
