//! Which commands and options work at this moment.
//!
//! The command line accepts every option of the manual, but a capability that
//! has not landed in the engine must not be accepted silently: an option that
//! is given on the command line and marked `false` here makes crtools stop
//! with "not supported yet: <option>" (exit 1) before it does anything.
//!
//! When a capability lands, flip its row: one line per option and command.
//! Rows are keyed by the clap argument id (the field name in `opts.rs`) and
//! the command that takes it; `"*"` marks the global options, which every
//! command takes. A unit test checks that every option of every command has
//! exactly one row, so a new option cannot be added without deciding here.
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// `(command, option id, supported)`.
pub const OPTIONS: &[(&str, &str, bool)] = &[
    // Global options.
    ("*", "images_dir", true),
    ("*", "log_file", true),
    ("*", "verbosity", true),
    ("*", "log_pid", true),
    ("*", "close", true),
    // show
    ("show", "contents", true),
    ("show", "file", true),
    ("show", "json", true),
    // check
    ("check", "json", true),
    ("check", "faults", true),
    // dump
    ("dump", "tree", true),
    ("dump", "leave_stopped", true),
    ("dump", "ext_unix_sk", true),
    ("dump", "namespaces", true),
    ("dump", "evasive_devices", true),
    ("dump", "action_script", true),
    ("dump", "link_remap", true),
    ("dump", "ghost_limit", true),
    ("dump", "tcp_established", true),
    ("dump", "tcp_close", true),
    ("dump", "skip_in_flight", true),
    ("dump", "shell_job", true),
    ("dump", "file_locks", true),
    ("dump", "prev_images_dir", true),
    ("dump", "track_mem", true),
    // pre-dump
    ("pre-dump", "tree", true),
    ("pre-dump", "prev_images_dir", true),
    ("pre-dump", "track_mem", true),
    // restore
    ("restore", "tree", true),
    ("restore", "restore_detached", true),
    ("restore", "ext_unix_sk", true),
    ("restore", "namespaces", true),
    ("restore", "root", false),
    ("restore", "veth_pair", false),
    ("restore", "inherit_fd", true),
    ("restore", "action_script", true),
    ("restore", "tcp_established", true),
    ("restore", "tcp_close", true),
    ("restore", "shell_job", true),
    ("restore", "file_locks", true),
    ("restore", "lazy_pages", true),
];

/// `(command, supported)`.
pub const COMMANDS: &[(&str, bool)] = &[
    ("dump", true),
    ("pre-dump", true),
    ("restore", true),
    ("show", true),
    ("check", true),
    ("lazy-pages-server", true),
];

/// Whether option `id` of command `command` is implemented (unknown: no).
pub fn option_supported(command: &str, id: &str) -> bool {
    OPTIONS.iter().find(|(c, i, _)| (*c == command || *c == "*") && *i == id).is_some_and(|r| r.2)
}

/// Whether `command` is implemented (unknown: no).
pub fn command_supported(command: &str) -> bool {
    COMMANDS.iter().find(|(c, _)| *c == command).is_some_and(|r| r.1)
}

/// The option names given on the command line that are not supported yet,
/// as `-s/--leave-stopped`, in the order of their definition.
///
/// `cmd` is the built top-level command (see [`clap::Command::build`]) and
/// `matches` its matches.
pub fn unsupported_options(cmd: &Command, matches: &ArgMatches) -> Vec<String> {
    fn given(m: &ArgMatches, id: &str) -> bool {
        m.try_contains_id(id).unwrap_or(false) && m.value_source(id) == Some(ValueSource::CommandLine)
    }
    let mut out = Vec::new();
    // The global options: clap propagates those typed after the command up
    // to the top-level matches too.
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if !is_builtin(id) && given(matches, id) && !option_supported("*", id) {
            out.push(display_name(arg));
        }
    }
    if let Some((name, sub_matches)) = matches.subcommand() {
        for arg in cmd.find_subcommand(name).into_iter().flat_map(|s| s.get_arguments()) {
            let id = arg.get_id().as_str();
            if !is_builtin(id) && !arg.is_global_set() && given(sub_matches, id) && !option_supported(name, id) {
                out.push(display_name(arg));
            }
        }
    }
    out.dedup();
    out
}

fn is_builtin(id: &str) -> bool {
    id == "help" || id == "version"
}

/// `-s/--leave-stopped`, `--json` or `-v`.
pub fn display_name(arg: &clap::Arg) -> String {
    match (arg.get_short(), arg.get_long()) {
        (Some(s), Some(l)) => format!("-{s}/--{l}"),
        (Some(s), None) => format!("-{s}"),
        (None, Some(l)) => format!("--{l}"),
        (None, None) => arg.get_id().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_has_exactly_one_row() {
        let mut cmd = crate::opts::command();
        cmd.build();
        let globals: Vec<&str> =
            cmd.get_arguments().map(|a| a.get_id().as_str()).filter(|id| !is_builtin(id)).collect();
        for id in &globals {
            let rows = OPTIONS.iter().filter(|(c, i, _)| *c == "*" && i == id).count();
            assert_eq!(rows, 1, "global option {id} needs exactly one row");
        }
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if is_builtin(id) || globals.contains(&id) {
                    continue;
                }
                let rows = OPTIONS.iter().filter(|(c, i, _)| *i == id && *c == sub.get_name()).count();
                assert_eq!(rows, 1, "option {id} of {} needs exactly one row", sub.get_name());
            }
            assert!(COMMANDS.iter().any(|(c, _)| *c == sub.get_name()), "command {} has no row", sub.get_name());
        }
        // And no stale rows.
        for (c, i, _) in OPTIONS {
            let found = if *c == "*" {
                globals.contains(i)
            } else {
                cmd.find_subcommand(c).is_some_and(|s| s.get_arguments().any(|a| a.get_id() == *i))
            };
            assert!(found, "row ({c}, {i}) names no option");
        }
        for (c, _) in COMMANDS {
            assert!(cmd.find_subcommand(c).is_some(), "row {c} names no command");
        }
    }

    #[test]
    fn current_state() {
        assert!(option_supported("show", "json"));
        assert!(option_supported("dump", "images_dir"));
        assert!(option_supported("dump", "tree"));
        assert!(option_supported("dump", "leave_stopped"));
        assert!(option_supported("restore", "restore_detached"));
        assert!(option_supported("dump", "shell_job"));
        assert!(option_supported("dump", "link_remap"));
        assert!(!option_supported("dump", "no_such_option"));
        assert!(command_supported("dump"));
        assert!(command_supported("restore"));
        assert!(command_supported("show"));
        assert!(command_supported("check"));
    }
}
