//! The command line, as in crtools(1), and its validation into [`Options`].
//!
//! - Global options (`-D`, `-o`, `-v`, `--log-pid`, `--close`) are accepted
//!   before and after the command, as CRIU users type both
//!   (`crtools -v 2 dump -t 1` and `crtools dump -v 2 -t 1`).
//! - Every other option belongs to the commands that use it; given to another
//!   command it is a usage error (exit 2), with a hint naming the commands
//!   that do take it.
//! - Checks clap cannot express (show needs `-D` or `-f`) are done in
//!   [`Options::from_cli`] and reported as clap usage errors too.
//!
//! Which options actually work right now is decided by `supported.rs`, not
//! here: this module accepts the whole interface of the manual.
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use engine::show::ShowOptions;
use engine::sys::Pid;

/// crtools: checkpoint/restore in userspace.
#[derive(Parser, Debug)]
#[command(
    name = "crtools",
    version,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true,
    disable_help_subcommand = true,
    // As with CRIU's getopt: a repeated option's last value wins.
    args_override_self = true,
    after_help = "Examples:\n  crtools dump -D checkpoint -t 1234\n  crtools restore -d -D checkpoint -t 1234"
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: CommandArgs,
}

/// Options every command takes, before or after the command.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Base directory of the image files [default for dump and restore: .]
    #[arg(short = 'D', long = "images-dir", value_name = "PATH", global = true)]
    pub images_dir: Option<PathBuf>,

    /// Write log messages to FILE instead of stderr (a relative FILE is
    /// relative to the images directory -D, as in CRIU)
    #[arg(short = 'o', long = "log-file", value_name = "FILE", global = true)]
    pub log_file: Option<PathBuf>,

    /// Log level: 0 errors only, 1 informative (default), 2 debug, 3 and 4 trace
    #[arg(short = 'v', value_name = "NUM", global = true, value_parser = parse_level)]
    pub verbosity: Option<u8>,

    /// Write a separate log file per pid (FILE.<pid> for every process but crtools itself)
    #[arg(long = "log-pid", global = true)]
    pub log_pid: bool,

    /// Close descriptor FD of crtools itself before anything else (repeatable)
    // Not `global`: clap keeps only the deepest occurrences of a global
    // option, so [`command`] copies it into each command and [`parse`]
    // joins the two lists.
    #[arg(long = "close", value_name = "FD", allow_negative_numbers = true, value_parser = parse_fd)]
    pub close: Vec<i32>,
}

/// The commands of crtools(1).
#[derive(Subcommand, Debug)]
pub enum CommandArgs {
    /// Checkpoint a process tree into an images directory
    Dump(DumpArgs),
    /// Dump the memory of a process tree, copied while it runs (it is
    /// frozen only while write tracking is armed), tracking its writes so
    /// that a later dump (--prev-images-dir, --track-mem) only takes the
    /// pages changed since (not restorable by itself)
    #[command(name = "pre-dump")]
    PreDump(PreDumpArgs),
    /// Restore previously checkpointed processes
    Restore(RestoreArgs),
    /// Decode image files and show their contents in readable form
    Show(ShowArgs),
    /// Test whether the kernel supports everything crtools needs
    /// (-v 2: say what each probe checks)
    Check(CheckArgs),
    /// The lazy-pages server a `restore --lazy-pages` starts (not for
    /// users: it reads its plan from stdin and the tasks' userfaultfds
    /// from descriptor 3)
    #[command(name = "lazy-pages-server", hide = true)]
    LazyPagesServer,
}

/// Options dump and restore share.
#[derive(Args, Debug)]
pub struct TreeArgs {
    /// Checkpoint the whole process tree starting from PID
    // Required by dump (see [`command`]); restore takes the root from the
    // images without it, as CRIU does.
    #[arg(short = 't', long = "tree", value_name = "PID", value_parser = parse_pid)]
    pub tree: Option<i32>,

    /// Dump external unix sockets
    #[arg(short = 'x', long = "ext-unix-sk")]
    pub ext_unix_sk: bool,

    /// Checkpoint namespaces, comma separated (repeatable): uts, ipc, mnt, pid, net
    /// (this version dumps uts and ipc; the others are refused, exit 3)
    #[arg(short = 'n', long = "namespaces", value_name = "NS", value_enum, value_delimiter = ',')]
    pub namespaces: Vec<Namespace>,

    /// Add an external action script (repeatable), run with /bin/sh -c;
    /// CRTOOLS_SCRIPT_ACTION (and CRTOOL_SCRIPT_ACTION) tells it the action:
    /// pre-dump, post-dump, pre-restore, post-restore, post-resume
    /// (network-lock and network-unlock come with a dumped network
    /// namespace); CRTOOLS_IMAGE_DIR and CRTOOLS_INIT_PID are set. A script
    /// that fails fails the dump or restore
    #[arg(long = "action-script", value_name = "SCR")]
    pub action_script: Vec<PathBuf>,

    /// Checkpoint/restore established TCP connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,

    /// Drop TCP connections: at dump, they are not checkpointed (the
    /// killed tree closes them); at restore, connections in the images
    /// come back closed (recv gives 0, send EPIPE). As CRIU's --tcp-close
    #[arg(long = "tcp-close")]
    pub tcp_close: bool,

    /// Allow to dump and restore shell jobs (the restored task inherits
    /// session and process group from crtools; one external tty may migrate)
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,

    /// Handle file locks (flock, POSIX, OFD) and leases held by the tree
    #[arg(short = 'l', long = "file-locks")]
    pub file_locks: bool,
}

/// `crtools dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Options shared with restore.
    #[command(flatten)]
    pub tree: TreeArgs,

    /// Leave tasks stopped after checkpoint instead of killing them
    #[arg(short = 's', long = "leave-stopped")]
    pub leave_stopped: bool,

    /// Use any path to a device file if the original one is inaccessible
    #[arg(long = "evasive-devices")]
    pub evasive_devices: bool,

    /// Allow to link unlinked files back when possible (modifies the
    /// file system until restore)
    #[arg(long = "link-remap")]
    pub link_remap: bool,

    /// Largest unlinked file whose contents are copied into the images
    /// (bytes, or with a K, M or G suffix; default 1M)
    #[arg(long = "ghost-limit", value_name = "SIZE", value_parser = parse_size)]
    pub ghost_limit: Option<u64>,

    /// Images of a previous pre-dump, as a path relative to the images
    /// directory (for example ../pre1): pages not written since are left
    /// there (needs --track-mem); restore reads them from there
    #[arg(long = "prev-images-dir", value_name = "DIR")]
    pub prev_images_dir: Option<String>,

    /// Use the write tracking a pre-dump started (userfaultfd write-protect):
    /// with --prev-images-dir, only pages written since are dumped (tracking
    /// is started by pre-dump, not by dump)
    #[arg(long = "track-mem", requires = "prev_images_dir")]
    pub track_mem: bool,

    /// Skip connections waiting in a listener's accept queue, not accepted
    /// yet (their clients find them gone after restore), instead of
    /// refusing the dump. As CRIU's --skip-in-flight
    #[arg(long = "skip-in-flight")]
    pub skip_in_flight: bool,
}

/// `crtools pre-dump`.
#[derive(Args, Debug)]
pub struct PreDumpArgs {
    /// Pre-dump the memory of the whole process tree starting from PID
    #[arg(short = 't', long = "tree", value_name = "PID", value_parser = parse_pid)]
    pub tree: i32,

    /// Images of the previous pre-dump of the chain, as a path relative to
    /// the images directory (for example ../pre1): pages not written since
    /// are left there
    #[arg(long = "prev-images-dir", value_name = "DIR")]
    pub prev_images_dir: Option<String>,

    /// Track the tree's writes after the pre-dump (always done; accepted as
    /// in CRIU)
    #[arg(long = "track-mem")]
    pub track_mem: bool,
}

/// A size with an optional K, M or G suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size (bytes, or with K, M or G)"))?;
    n.checked_mul(mul).ok_or_else(|| format!("'{s}' is too large"))
}

/// `crtools restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Options shared with dump.
    #[command(flatten)]
    pub tree: TreeArgs,

    /// Detach crtools itself once restore is complete
    #[arg(short = 'd', long = "restore-detached")]
    pub restore_detached: bool,

    /// Change the root file system (when run in a mount namespace)
    #[arg(short = 'r', long = "root", value_name = "PATH")]
    pub root: Option<PathBuf>,

    /// Inside and outside names of a veth device (repeatable)
    #[arg(long = "veth-pair", value_name = "IN=OUT", value_parser = parse_veth_pair)]
    pub veth_pair: Vec<VethPair>,

    /// Use crtools' own descriptor N for the dumped file KEY (pipe:[INODE],
    /// socket:[INODE] or a path), as CRIU does (repeatable)
    #[arg(long = "inherit-fd", value_name = "fd[N]:KEY", value_parser = parse_inherit_fd)]
    pub inherit_fd: Vec<InheritFd>,

    /// Let the tree run before its memory is all in place: a server
    /// (crtools itself, in the background, logging to lazy-pages.log in
    /// the images directory) copies the pages of large private anonymous
    /// mappings in on first touch and in the background, then exits
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
}

/// One `--inherit-fd fd[N]:KEY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InheritFd {
    /// crtools' own descriptor.
    pub fd: i32,
    /// What it stands in for: `pipe:[INODE]`, `socket:[INODE]` or a path.
    pub key: String,
}

fn parse_inherit_fd(s: &str) -> Result<InheritFd, String> {
    let err = || "expected fd[N]:KEY (KEY: pipe:[INODE], socket:[INODE] or a path)".to_string();
    let rest = s.strip_prefix("fd[").ok_or_else(err)?;
    let (n, key) = rest.split_once("]:").ok_or_else(err)?;
    let fd: i32 = n.parse().map_err(|_| format!("'{n}' is not a descriptor number"))?;
    if fd < 0 || key.is_empty() {
        return Err(err());
    }
    Ok(InheritFd { fd, key: key.to_string() })
}

/// `crtools show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Show the content of this one image file
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Show dumped page contents in hex
    #[arg(short = 'c')]
    pub contents: bool,

    /// Machine-readable (JSON) output
    #[arg(long = "json")]
    pub json: bool,
}

/// `crtools check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Machine-readable (JSON) output
    #[arg(long = "json")]
    pub json: bool,

    /// List the fault-injection points (names for the CRTOOLS_FAULT
    /// environment variable: NAME or NAME:N for its N-th hit) and exit
    #[arg(long = "faults")]
    pub faults: bool,
}

/// A namespace kind of `-n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Namespace {
    /// Host and domain names.
    Uts,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Mount points.
    Mnt,
    /// Process ids.
    Pid,
    /// Network devices, stacks, ports.
    Net,
}

/// One `--veth-pair IN=OUT`: the device is `inside` in the restored network
/// namespace and `outside` in crtools' own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethPair {
    /// Name inside the restored namespace.
    pub inside: String,
    /// Name outside, in crtools' namespace.
    pub outside: String,
}

/// Logging as the options ask for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// `-v`, 0..=4.
    pub level: u8,
    /// `-o`, already resolved against the images directory.
    pub file: Option<PathBuf>,
    /// `--log-pid`.
    pub per_pid: bool,
}

/// `crtools dump`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpOptions {
    /// `-D` (default ".").
    pub images_dir: PathBuf,
    /// `-t`.
    pub pid: Pid,
    /// `-s`.
    pub leave_stopped: bool,
    /// `-x`.
    pub ext_unix_sk: bool,
    /// `-n`, sorted, without duplicates.
    pub namespaces: Vec<Namespace>,
    /// `--evasive-devices`.
    pub evasive_devices: bool,
    /// `--action-script`, in command line order.
    pub action_scripts: Vec<PathBuf>,
    /// `--link-remap`.
    pub link_remap: bool,
    /// `--ghost-limit`.
    pub ghost_limit: Option<u64>,
    /// `-l`.
    pub file_locks: bool,
    /// `--tcp-established`.
    pub tcp_established: bool,
    /// `--tcp-close`.
    pub tcp_close: bool,
    /// `--skip-in-flight`.
    pub skip_in_flight: bool,
    /// `-j`.
    pub shell_job: bool,
    /// `--prev-images-dir`.
    pub prev_images_dir: Option<String>,
    /// `--track-mem`.
    pub track_mem: bool,
}

/// `crtools pre-dump`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreDumpOptions {
    /// `-D` (default ".").
    pub images_dir: PathBuf,
    /// `-t`.
    pub pid: Pid,
    /// `--prev-images-dir`.
    pub prev_images_dir: Option<String>,
}

/// `crtools restore`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreOptions {
    /// `-D` (default ".").
    pub images_dir: PathBuf,
    /// `-t`; without it, the root the images hold.
    pub pid: Option<Pid>,
    /// `-d`.
    pub detached: bool,
    /// `-x`.
    pub ext_unix_sk: bool,
    /// `-n`, sorted, without duplicates.
    pub namespaces: Vec<Namespace>,
    /// `-r`.
    pub root: Option<PathBuf>,
    /// `--veth-pair`, in command line order.
    pub veth_pairs: Vec<VethPair>,
    /// `--inherit-fd`, in command line order.
    pub inherit_fds: Vec<InheritFd>,
    /// `-l`.
    pub file_locks: bool,
    /// `--action-script`, in command line order.
    pub action_scripts: Vec<PathBuf>,
    /// `--lazy-pages`.
    pub lazy_pages: bool,
    /// `--tcp-established`.
    pub tcp_established: bool,
    /// `--tcp-close`.
    pub tcp_close: bool,
    /// `-j`.
    pub shell_job: bool,
}

/// What to do.
#[derive(Clone, Debug)]
pub enum Command {
    /// `crtools dump`.
    Dump(DumpOptions),
    /// `crtools pre-dump`.
    PreDump(PreDumpOptions),
    /// `crtools restore`.
    Restore(RestoreOptions),
    /// `crtools show`.
    Show(ShowOptions),
    /// `crtools check`.
    Check {
        /// `--json`.
        json: bool,
        /// `--faults`.
        faults: bool,
    },
    /// The lazy-pages server (started by `restore --lazy-pages`).
    LazyPagesServer {
        /// `-D`.
        images_dir: PathBuf,
    },
}

impl Command {
    /// The command's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Dump(_) => "dump",
            Command::PreDump(_) => "pre-dump",
            Command::Restore(_) => "restore",
            Command::Show(_) => "show",
            Command::Check { .. } => "check",
            Command::LazyPagesServer { .. } => "lazy-pages-server",
        }
    }
}

/// The whole command line, validated: what the engine consumes.
#[derive(Clone, Debug)]
pub struct Options {
    /// Descriptors to close first (`--close`).
    pub close_fds: Vec<i32>,
    /// Logging.
    pub log: LogOptions,
    /// The command and its options.
    pub command: Command,
}

/// The images directory dump and restore use without `-D`, as CRIU does.
pub const DEFAULT_IMAGES_DIR: &str = ".";

impl Options {
    /// Validates what clap parsed; errors are usage errors (exit 2).
    pub fn from_cli(cli: Cli) -> Result<Options, clap::Error> {
        let g = cli.global;
        let log = LogOptions {
            level: g.verbosity.unwrap_or(1),
            file: g.log_file.map(|f| resolve_log_file(&f, g.images_dir.as_deref())),
            per_pid: g.log_pid,
        };
        let images_dir = || g.images_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_IMAGES_DIR));
        let command = match cli.command {
            CommandArgs::Dump(d) => Command::Dump(DumpOptions {
                images_dir: images_dir(),
                pid: Pid(d.tree.tree.expect("dump requires --tree")),
                leave_stopped: d.leave_stopped,
                ext_unix_sk: d.tree.ext_unix_sk,
                namespaces: normalize(d.tree.namespaces),
                evasive_devices: d.evasive_devices,
                action_scripts: d.tree.action_script,
                link_remap: d.link_remap,
                ghost_limit: d.ghost_limit,
                file_locks: d.tree.file_locks,
                tcp_established: d.tree.tcp_established,
                tcp_close: d.tree.tcp_close,
                skip_in_flight: d.skip_in_flight,
                shell_job: d.tree.shell_job,
                prev_images_dir: d.prev_images_dir,
                track_mem: d.track_mem,
            }),
            CommandArgs::PreDump(p) => Command::PreDump(PreDumpOptions {
                images_dir: images_dir(),
                pid: Pid(p.tree),
                prev_images_dir: p.prev_images_dir,
            }),
            CommandArgs::Restore(r) => Command::Restore(RestoreOptions {
                images_dir: images_dir(),
                pid: r.tree.tree.map(Pid),
                detached: r.restore_detached,
                ext_unix_sk: r.tree.ext_unix_sk,
                namespaces: normalize(r.tree.namespaces),
                root: r.root,
                veth_pairs: r.veth_pair,
                inherit_fds: r.inherit_fd,
                file_locks: r.tree.file_locks,
                action_scripts: r.tree.action_script,
                lazy_pages: r.lazy_pages,
                tcp_established: r.tree.tcp_established,
                tcp_close: r.tree.tcp_close,
                shell_job: r.tree.shell_job,
            }),
            CommandArgs::Show(s) => {
                if g.images_dir.is_none() && s.file.is_none() {
                    let mut cmd = command();
                    cmd.build();
                    let show = cmd.find_subcommand_mut("show").expect("show is a subcommand");
                    return Err(show.error(ErrorKind::MissingRequiredArgument, "show needs -D <PATH> or -f <FILE>"));
                }
                Command::Show(ShowOptions {
                    dir: g.images_dir.clone(),
                    file: s.file,
                    contents: s.contents,
                    json: s.json,
                })
            }
            CommandArgs::Check(c) => Command::Check { json: c.json, faults: c.faults },
            CommandArgs::LazyPagesServer => Command::LazyPagesServer { images_dir: images_dir() },
        };
        Ok(Options { close_fds: g.close, log, command })
    }
}

/// `-o FILE`: a relative FILE is relative to the images directory, as in CRIU.
pub fn resolve_log_file(file: &Path, images_dir: Option<&Path>) -> PathBuf {
    match images_dir {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

fn normalize(mut ns: Vec<Namespace>) -> Vec<Namespace> {
    ns.sort();
    ns.dedup();
    ns
}

fn parse_level(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(n) if n <= 4 => Ok(n),
        _ => Err("expected a log level: 0 errors only, 1 informative, 2 debug, 3 or 4 trace".into()),
    }
}

fn parse_fd(s: &str) -> Result<i32, String> {
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Err("a file descriptor is not negative".into()),
        Ok(n) => i32::try_from(n).map_err(|_| "not a file descriptor number".into()),
        Err(_) => Err("expected a file descriptor number".into()),
    }
}

fn parse_pid(s: &str) -> Result<i32, String> {
    match s.parse::<i32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a process id (a positive number)".into()),
    }
}

/// Linux's dev_valid_name() (1..=15 bytes, not "." or "..", no '/', ':' or
/// white space), and no '=' to keep IN=OUT unambiguous.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c == '=' || c.is_whitespace())
}

fn parse_veth_pair(s: &str) -> Result<VethPair, String> {
    let Some((inside, outside)) = s.split_once('=') else {
        return Err("expected IN=OUT (inside name = outside name)".into());
    };
    for name in [inside, outside] {
        if !valid_ifname(name) {
            return Err(format!("'{name}' is not a network device name (1 to 15 bytes, no '/', ':', '=' or blanks)"));
        }
    }
    Ok(VethPair { inside: inside.to_string(), outside: outside.to_string() })
}

/// The clap command of crtools: [`Cli`] plus `--close` in every command.
pub fn command() -> clap::Command {
    // --version names the image formats this build reads and writes.
    static LONG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let long = LONG.get_or_init(|| {
        let formats: Vec<String> = engine::image::KINDS
            .iter()
            .filter(|k| k.layout == engine::image::Layout::Records)
            .map(|k| format!("{} {}", k.name, k.version))
            .collect();
        format!("{}\nimage formats: {}", env!("CARGO_PKG_VERSION"), formats.join(", "))
    });
    let cmd = Cli::command().long_version(long.as_str());
    let close = cmd.get_arguments().find(|a| a.get_id() == "close").cloned().expect("--close is defined");
    cmd.mut_subcommands(|sub| sub.arg(close.clone()))
        .mut_subcommand("dump", |sub| sub.mut_arg("tree", |a| a.required(true)))
        // TreeArgs' texts are written for dump.
        .mut_subcommand("restore", |sub| {
            sub.mut_arg("tree", |a| {
                a.help("Restore the process tree whose root had PID (default: the root the images hold)")
            })
            .mut_arg("ext_unix_sk", |a| a.help("Restore connections to external unix sockets"))
            .mut_arg("namespaces", |a| {
                a.help(
                    "Restore namespaces, comma separated (repeatable): uts, ipc, mnt, pid, net; the images must \
                     hold exactly these (without -n: whatever they hold)",
                )
            })
        })
}

/// Parses `args` (program name first) into [`Options`].
///
/// Returns the clap error for usage errors and for `--help`/`--version`
/// (whose exit code is 0); the matches are returned too, for
/// `supported.rs`.
pub fn parse<I, T>(args: I) -> Result<(Options, clap::ArgMatches), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::FromArgMatches;
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = command();
    let matches = match cmd.try_get_matches_from_mut(&args) {
        Ok(m) => m,
        Err(mut e) => {
            add_wrong_command_hint(&mut e, &cmd, &args);
            return Err(e);
        }
    };
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    if let Some((_, sub)) = matches.subcommand() {
        cli.global.close.extend(sub.get_many::<i32>("close").into_iter().flatten().copied());
    }
    Ok((Options::from_cli(cli)?, matches))
}

/// For "unexpected argument '-c'" given to dump, adds a tip naming the
/// commands that take `-c`.
fn add_wrong_command_hint(err: &mut clap::Error, cmd: &clap::Command, args: &[OsString]) {
    if err.kind() != ErrorKind::UnknownArgument {
        return;
    }
    let Some(ContextValue::String(given)) = err.get(ContextKind::InvalidArg) else { return };
    let given = given.split_once('=').map_or(given.as_str(), |(a, _)| a).to_string();
    let owners: Vec<&str> = cmd
        .get_subcommands()
        .filter(|sub| {
            sub.get_arguments().any(|a| {
                a.get_short().is_some_and(|s| given == format!("-{s}"))
                    || a.get_long().is_some_and(|l| given == format!("--{l}"))
            })
        })
        .map(|sub| sub.get_name())
        .collect();
    if owners.is_empty() {
        return;
    }
    let tip = match typed_command(cmd, args, &given) {
        Some(c) => format!("'{given}' is not an option of '{c}'; it is used by: {}", owners.join(", ")),
        None => format!("'{given}' is an option of: {} (give it after the command)", owners.join(", ")),
    };
    err.insert(ContextKind::Suggested, ContextValue::StyledStrs(vec![tip.into()]));
}

/// The command typed on the command line before `stop`, skipping global
/// options' values.
fn typed_command(cmd: &clap::Command, args: &[OsString], stop: &str) -> Option<String> {
    const TAKES_VALUE: &[&str] = &["-D", "--images-dir", "-o", "--log-file", "-v", "--close"];
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == stop || a.starts_with(&format!("{stop}=")) {
            return None;
        } else if TAKES_VALUE.contains(&a.as_ref()) {
            it.next();
        } else if cmd.find_subcommand(a.as_ref()).is_some() {
            return Some(a.into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn inherit_fd_and_ghost_limit_parse() {
        assert_eq!(parse_inherit_fd("fd[3]:pipe:[1234]"), Ok(InheritFd { fd: 3, key: "pipe:[1234]".into() }));
        assert_eq!(parse_inherit_fd("fd[10]:tmp/x").unwrap().key, "tmp/x");
        for bad in ["3:pipe:[1]", "fd[]:x", "fd[-1]:x", "fd[3]", "fd[3]:", "fd[x]:y"] {
            assert!(parse_inherit_fd(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("3g"), Ok(3 << 30));
        assert!(parse_size("M").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    use super::*;

    fn ok(args: &str) -> Options {
        let argv = std::iter::once("crtools").chain(args.split_whitespace());
        match parse(argv) {
            Ok((o, _)) => o,
            Err(e) => panic!("{args}: {}", e.render()),
        }
    }

    fn err(args: &str) -> clap::Error {
        let argv = std::iter::once("crtools").chain(args.split_whitespace());
        match parse(argv) {
            Ok((o, _)) => panic!("{args}: accepted as {o:?}"),
            Err(e) => e,
        }
    }

    fn dump(o: &Options) -> &DumpOptions {
        match &o.command {
            Command::Dump(d) => d,
            c => panic!("not dump: {c:?}"),
        }
    }

    fn restore(o: &Options) -> &RestoreOptions {
        match &o.command {
            Command::Restore(r) => r,
            c => panic!("not restore: {c:?}"),
        }
    }

    #[test]
    fn cli_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn manual_examples() {
        let o = ok("dump -D checkpoint -t 1234");
        let d = dump(&o);
        assert_eq!(d.images_dir, PathBuf::from("checkpoint"));
        assert_eq!(d.pid, Pid(1234));
        assert!(!d.leave_stopped);
        assert_eq!(o.log, LogOptions { level: 1, file: None, per_pid: false });

        let o = ok("restore -d -D checkpoint -t 1234");
        let r = restore(&o);
        assert_eq!(r.images_dir, PathBuf::from("checkpoint"));
        assert_eq!(r.pid, Some(Pid(1234)));
        assert!(r.detached);
    }

    #[test]
    fn images_dir_defaults_to_cwd() {
        assert_eq!(dump(&ok("dump -t 1")).images_dir, PathBuf::from("."));
        assert_eq!(restore(&ok("restore -t 1")).images_dir, PathBuf::from("."));
    }

    #[test]
    fn global_options_before_or_after_the_command() {
        for args in ["-v 2 -D img dump -t 1", "dump -v 2 -D img -t 1", "-v2 dump --images-dir=img -t 1"] {
            let o = ok(args);
            assert_eq!(o.log.level, 2, "{args}");
            assert_eq!(dump(&o).images_dir, PathBuf::from("img"), "{args}");
        }
        let o = ok("--close 7 --log-pid -o log dump -t 1 --close 9 -D img");
        assert_eq!(o.close_fds, vec![7, 9]);
        assert!(o.log.per_pid);
        assert_eq!(o.log.file, Some(PathBuf::from("img/log")));
    }

    #[test]
    fn last_value_wins() {
        assert_eq!(ok("-v 2 -v 3 check").log.level, 3);
        assert_eq!(ok("-v 2 dump -v 0 -t 1").log.level, 0);
        assert_eq!(dump(&ok("-D a -D b dump -t 1 -t 2")).images_dir, PathBuf::from("b"));
        assert_eq!(dump(&ok("-D a -D b dump -t 1 -t 2")).pid, Pid(2));
    }

    #[test]
    fn verbosity_levels() {
        for (args, level) in [("check", 1), ("-v 0 check", 0), ("-v4 check", 4), ("check -v 3", 3), ("-v=2 check", 2)] {
            assert_eq!(ok(args).log.level, level, "{args}");
        }
        for args in ["-v x check", "-v 5 check", "-v -1 check", "check -v"] {
            let e = err(args);
            assert_eq!(e.exit_code(), 2, "{args}");
        }
        assert!(err("-v x check").to_string().contains("log level"));
    }

    #[test]
    fn log_file_relative_to_images_dir() {
        assert_eq!(ok("-o d.log check").log.file, Some(PathBuf::from("d.log")));
        assert_eq!(ok("-o d.log -D img check").log.file, Some(PathBuf::from("img/d.log")));
        assert_eq!(ok("-o /tmp/d.log -D img check").log.file, Some(PathBuf::from("/tmp/d.log")));
    }

    #[test]
    fn veth_pairs() {
        let o = ok("restore -t 1 --veth-pair eth0=veth101 --veth-pair=eth1=veth102");
        assert_eq!(
            restore(&o).veth_pairs,
            vec![
                VethPair { inside: "eth0".into(), outside: "veth101".into() },
                VethPair { inside: "eth1".into(), outside: "veth102".into() },
            ]
        );
        for bad in ["eth0", "=veth0", "eth0=", "eth0=a=b", "eth0=a/b", "eth0=0123456789abcdef", "eth0=.."] {
            let e = err(&format!("restore -t 1 --veth-pair {bad}"));
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn namespaces() {
        let o = ok("dump -t 1 -n uts,ipc -n net,uts");
        assert_eq!(dump(&o).namespaces, vec![Namespace::Uts, Namespace::Ipc, Namespace::Net]);
        let o = ok("restore -t 1 --namespaces mnt,pid");
        assert_eq!(restore(&o).namespaces, vec![Namespace::Mnt, Namespace::Pid]);
        for bad in ["user", "uts,foo", "uts,,ipc", "UTS"] {
            let e = err(&format!("dump -t 1 -n {bad}"));
            assert_eq!(e.kind(), ErrorKind::InvalidValue, "{bad}");
        }
        assert!(err("dump -t 1 -n uts,cgroup").to_string().contains("cgroup"));
    }

    #[test]
    fn tree_is_required_and_positive() {
        assert_eq!(err("dump -D img").kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(restore(&ok("restore -D img")).pid, None, "restore takes the root from the images");
        assert_eq!(restore(&ok("restore -D img -t 7")).pid, Some(Pid(7)));
        assert_eq!(err("dump -t 0").kind(), ErrorKind::ValueValidation);
        assert_eq!(err("dump -t abc").kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn option_of_another_command_is_rejected() {
        for (args, owner) in [
            ("dump -t 1 -c", "show"),
            ("restore -t 1 -f x", "show"),
            ("show -D img -t 1", "pre-dump, dump, restore"),
            ("restore -t 1 --track-mem", "pre-dump, dump"),
            ("dump -t 1 -d", "restore"),
            ("restore -t 1 -s", "dump"),
            ("restore -t 1 --link-remap", "dump"),
            ("dump -t 1 --veth-pair a=b", "restore"),
            ("check -c", "show"),
        ] {
            let e = err(args);
            assert_eq!(e.kind(), ErrorKind::UnknownArgument, "{args}");
            assert_eq!(e.exit_code(), 2, "{args}");
            let text = e.to_string();
            assert!(text.contains(&format!("it is used by: {owner}")), "{args}: {text}");
        }
        // A command option before the command.
        let text = err("-c show -D img").to_string();
        assert!(text.contains("is an option of: show"), "{text}");
    }

    #[test]
    fn iterative_dump_options() {
        let o = ok("pre-dump -D pre2 -t 5 --prev-images-dir ../pre1 --track-mem");
        match &o.command {
            Command::PreDump(p) => {
                assert_eq!((p.pid, p.prev_images_dir.as_deref()), (Pid(5), Some("../pre1")));
                assert_eq!(p.images_dir, PathBuf::from("pre2"));
            }
            c => panic!("{c:?}"),
        }
        let d = ok("dump -D final -t 5 --prev-images-dir ../pre2 --track-mem");
        assert_eq!(dump(&d).prev_images_dir.as_deref(), Some("../pre2"));
        assert!(dump(&d).track_mem);
        assert!(!dump(&ok("dump -t 5")).track_mem);
        // Tracking for a later dump is what pre-dump starts: on dump the
        // option only says to use it, and needs the parent.
        let e = err("dump -t 5 --track-mem");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--prev-images-dir"), "{e}");
    }

    #[test]
    fn show_needs_dir_or_file() {
        let e = err("show");
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(e.exit_code(), 2);
        let o = ok("show -f core.img -c --json");
        match o.command {
            Command::Show(s) => {
                assert_eq!(s.file, Some(PathBuf::from("core.img")));
                assert_eq!(s.dir, None);
                assert!(s.contents && s.json);
            }
            c => panic!("{c:?}"),
        }
        match ok("-D img show").command {
            Command::Show(s) => assert_eq!(s.dir, Some(PathBuf::from("img"))),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn close_refuses_negative() {
        assert_eq!(ok("--close 0 --close=3 check").close_fds, vec![0, 3]);
        for args in ["--close -1 check", "--close=-5 check", "--close x check", "--close 99999999999 check"] {
            let e = err(args);
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{args}");
        }
        assert!(err("--close -1 check").to_string().contains("not negative"));
    }

    #[test]
    fn help_and_version_exit_zero() {
        for args in ["--help", "-h", "dump --help", "-V", "--version", "show -V"] {
            let e = err(args);
            assert_eq!(e.exit_code(), 0, "{args}");
        }
        assert_eq!(err("").exit_code(), 2);
        assert_eq!(err("frobnicate").exit_code(), 2);
    }

    #[test]
    fn per_command_help_lists_only_its_options() {
        let mut cmd = command();
        cmd.build();
        let mut help = |name: &str| cmd.find_subcommand_mut(name).unwrap().render_long_help().to_string();
        let dump_help = help("dump");
        for o in ["--tree", "--leave-stopped", "--images-dir", "--log-file", "--close", "--link-remap"] {
            assert!(dump_help.contains(o), "dump help lacks {o}");
        }
        for o in ["--file <FILE>", "--json", "--restore-detached", "--veth-pair", "--root"] {
            assert!(!dump_help.contains(o), "dump help has {o}");
        }
        let show_help = help("show");
        assert!(show_help.contains("--json") && show_help.contains("--file"));
        assert!(!show_help.contains("--tree"));
        let check_help = help("check");
        assert!(!check_help.contains("--tree") && !check_help.contains("--file"));
    }
}
