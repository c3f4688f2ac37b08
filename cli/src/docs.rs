//! The manual page crtools(1) and shell completions, generated from the
//! command line definitions ([`crate::opts::command`]) so they can never
//! disagree with what the binary accepts. `crtools-gen man|bash|zsh`
//! prints them; `make install` installs them.
use clap::{Arg, ArgAction, Command};

/// Escapes text for roff: backslashes, and a leading '.' or '\''.
fn roff(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    s.lines()
        .map(|l| if l.starts_with('.') || l.starts_with('\'') { format!("\\&{l}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The options of `cmd` a user sees (not help/version).
fn visible_args(cmd: &Command) -> Vec<&Arg> {
    cmd.get_arguments().filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version")).collect()
}

fn takes_value(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::Set | ArgAction::Append)
}

/// `-D, --images-dir PATH` for a man page.
fn arg_synopsis(a: &Arg) -> String {
    let mut names = Vec::new();
    if let Some(s) = a.get_short() {
        names.push(format!("\\fB\\-{s}\\fR"));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", roff(l)));
    }
    if names.is_empty() {
        names.push(format!("\\fI{}\\fR", a.get_id()));
    }
    let mut s = names.join(", ");
    if takes_value(a) {
        let v = a.get_value_names().and_then(|v| v.first()).map(|v| v.to_string()).unwrap_or_else(|| "VALUE".into());
        s.push_str(&format!(" \\fI{}\\fR", roff(&v)));
    }
    s
}

fn help_of(a: &Arg) -> String {
    a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default()
}

/// The commands in the manual's order (dump, pre-dump, restore, show, check).
fn subcommands(cmd: &Command) -> Vec<&Command> {
    let mut subs: Vec<&Command> = cmd.get_subcommands().collect();
    let rank =
        |n: &str| ["dump", "pre-dump", "restore", "show", "check"].iter().position(|&x| x == n).unwrap_or(usize::MAX);
    subs.sort_by_key(|s| rank(s.get_name()));
    subs
}

/// The manual page, in roff.
pub fn man(cmd: &Command) -> String {
    let name = cmd.get_name();
    let version = cmd.get_version().unwrap_or("");
    let mut m = String::new();
    m.push_str(&format!(".TH {} 1 \"\" \"{name} {version}\" \"User Commands\"\n", name.to_uppercase()));
    m.push_str(".SH NAME\n");
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let about = about.strip_prefix(&format!("{name}: ")).unwrap_or(&about).to_string();
    m.push_str(&format!("{name} \\- {}\n", roff(&about)));
    m.push_str(".SH SYNOPSIS\n");
    m.push_str(&format!("\\fB{name}\\fR [\\fIoptions\\fR] \\fIcommand\\fR [\\fIcommand options\\fR]\n"));
    m.push_str(".SH DESCRIPTION\n");
    m.push_str(&format!(
        "\\fB{name}\\fR freezes a running process tree, writes everything needed to bring it back \
         (memory, registers, threads, files, pipes, sockets, signals, timers) into a directory of \
         image files, and later restores the tree with the same pids so that it continues as if \
         nothing happened.\n"
    ));
    m.push_str(".SH COMMANDS\n");
    for sub in subcommands(cmd) {
        m.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            sub.get_name(),
            roff(&sub.get_about().map(|a| a.to_string()).unwrap_or_default())
        ));
    }
    m.push_str(".SH GLOBAL OPTIONS\nGiven before or after the command.\n");
    for a in visible_args(cmd) {
        m.push_str(&format!(".TP\n{}\n{}\n", arg_synopsis(a), roff(&help_of(a))));
    }
    for sub in subcommands(cmd) {
        let own: Vec<&Arg> =
            visible_args(sub).into_iter().filter(|a| !a.is_global_set() && a.get_id() != "close").collect();
        if own.is_empty() {
            continue;
        }
        m.push_str(&format!(".SH {} OPTIONS\n", sub.get_name().to_uppercase()));
        for a in own {
            m.push_str(&format!(".TP\n{}\n{}\n", arg_synopsis(a), roff(&help_of(a))));
        }
    }
    m.push_str(".SH EXIT STATUS\n");
    m.push_str(".TP\n0\nSuccess (for \\fBrestore\\fR without \\fB\\-d\\fR: the restored root task's exit status).\n");
    m.push_str(".TP\n1\nThe command failed; the message names the task and the object. A dump that fails leaves every task running as it was; a restore that fails leaves no task behind.\n");
    m.push_str(".TP\n2\nThe command line is wrong.\n");
    m.push_str(".TP\n3\nRefused: an option that is not supported yet, or a tree that holds an object or state this version does not checkpoint or restore exactly, or only with an option (the message names the task, the object and the option); nothing was changed.\n");
    m.push_str(".SH ENVIRONMENT\n.TP\nCRTOOLS_FAULT\nFor tests: a comma-separated list of fault points, each \\fINAME\\fR or \\fINAME\\fR:\\fIN\\fR, that make the first (or \\fIN\\fR-th) pass through that point fail with exit status 1 (\\fBcheck \\-\\-faults\\fR lists them).\n");
    m.push_str(
        ".SH FILES\n.TP\n/run/crtools/check.cache\nThe kernel probes' answers of \\fBcheck\\fR, kept for the boot.\n",
    );
    m.push_str(".SH SEE ALSO\n\\fBcriu\\fR(8)\n");
    m
}

/// Every option a command takes, as the shell types it.
fn words(cmd: &Command) -> Vec<String> {
    let mut w = Vec::new();
    for a in visible_args(cmd) {
        if let Some(s) = a.get_short() {
            w.push(format!("-{s}"));
        }
        if let Some(l) = a.get_long() {
            w.push(format!("--{l}"));
        }
    }
    w
}

/// A bash completion script.
pub fn bash(cmd: &Command) -> String {
    let name = cmd.get_name();
    let subs: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
    let mut s = format!(
        "# bash completion for {name} (generated from its command line definitions)\n\
         _{name}() {{\n    local cur=\"${{COMP_WORDS[COMP_CWORD]}}\" prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\" cmd=\"\" w\n\
         \x20   for w in \"${{COMP_WORDS[@]:1:COMP_CWORD-1}}\"; do\n        case \"$w\" in {}) cmd=\"$w\";; esac\n    done\n\
         \x20   case \"$prev\" in\n        -D|--images-dir|-o|--log-file|-f|--file) COMPREPLY=($(compgen -f -- \"$cur\")); return;;\n\
         \x20       -t|--tree) COMPREPLY=($(compgen -W \"$(ls /proc | grep -E '^[0-9]+$')\" -- \"$cur\")); return;;\n    esac\n\
         \x20   case \"$cmd\" in\n",
        subs.join("|")
    );
    for sub in cmd.get_subcommands() {
        s.push_str(&format!(
            "        {}) COMPREPLY=($(compgen -W \"{}\" -- \"$cur\"));;\n",
            sub.get_name(),
            words(sub).join(" ")
        ));
    }
    s.push_str(&format!(
        "        *) COMPREPLY=($(compgen -W \"{} {}\" -- \"$cur\"));;\n    esac\n}}\ncomplete -F _{name} {name}\n",
        subs.join(" "),
        words(cmd).join(" ")
    ));
    s
}

fn zsh_spec(a: &Arg) -> Vec<String> {
    let help = help_of(a).lines().next().unwrap_or("").replace('\'', "'\\''").replace(['[', ']', ':'], " ");
    let value = if takes_value(a) {
        let v = a.get_value_names().and_then(|v| v.first()).map(|v| v.to_string()).unwrap_or_else(|| "value".into());
        let action = match a.get_id().as_str() {
            "images_dir" => "_files -/",
            "log_file" | "file" => "_files",
            _ => "",
        };
        format!(":{}:{action}", v.to_lowercase())
    } else {
        String::new()
    };
    let repeat = if matches!(a.get_action(), ArgAction::Append) { "*" } else { "" };
    let mut out = Vec::new();
    if let Some(s) = a.get_short() {
        out.push(format!("'{repeat}-{s}[{help}]{value}'"));
    }
    if let Some(l) = a.get_long() {
        out.push(format!("'{repeat}--{l}[{help}]{value}'"));
    }
    out
}

/// A zsh completion script.
pub fn zsh(cmd: &Command) -> String {
    let name = cmd.get_name();
    let mut s =
        format!("#compdef {name}\n# zsh completion for {name} (generated from its command line definitions)\n\n");
    s.push_str(&format!("_{name}() {{\n    local line state\n    _arguments -C \\\n"));
    for a in visible_args(cmd) {
        for spec in zsh_spec(a) {
            s.push_str(&format!("        {spec} \\\n"));
        }
    }
    s.push_str("        '1: :->command' \\\n        '*:: :->args'\n    case $state in\n        command)\n            local -a cmds\n            cmds=(\n");
    for sub in cmd.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let about = about.lines().next().unwrap_or("").replace('\'', "'\\''").replace(':', " ");
        s.push_str(&format!("                '{}:{about}'\n", sub.get_name()));
    }
    s.push_str("            )\n            _describe command cmds;;\n        args)\n            case $line[1] in\n");
    for sub in cmd.get_subcommands() {
        s.push_str(&format!("                {})\n                    _arguments \\\n", sub.get_name()));
        for a in visible_args(sub).into_iter().filter(|a| !a.is_global_set()) {
            for spec in zsh_spec(a) {
                s.push_str(&format!("                        {spec} \\\n"));
            }
        }
        s.push_str("                        ;;\n");
    }
    s.push_str(&format!("            esac;;\n    esac\n}}\n\n_{name} \"$@\"\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option of every command is in the man page and both scripts.
    #[test]
    fn every_option_is_documented_and_completed() {
        let cmd = crate::opts::command();
        let (page, b, z) = (man(&cmd), bash(&cmd), zsh(&cmd));
        for c in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
            for a in visible_args(c) {
                if let Some(l) = a.get_long() {
                    assert!(page.contains(&format!("\\-\\-{}", roff(l))), "man page lacks --{l}");
                    assert!(b.contains(&format!("--{l}")), "bash completion lacks --{l}");
                    assert!(z.contains(&format!("--{l}[")), "zsh completion lacks --{l}");
                }
            }
        }
        for sub in ["dump", "pre-dump", "restore", "show", "check"] {
            assert!(page.contains(&format!("\\fB{sub}\\fR")), "man page lacks the command {sub}");
        }
        assert!(page.starts_with(".TH CRTOOLS 1"));
        assert!(page.contains(".SH EXIT STATUS"));
        assert!(page.contains("CRTOOLS_FAULT"));
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff(".x\nback\\slash -o"), "\\&.x\nback\\eslash \\-o");
    }
}
