//! From the command line to engine calls, and from errors to exit codes.
//!
//! Order, as crtools(1) and CRIU users expect it:
//! 1. parse and validate (usage errors: exit 2);
//! 2. refuse options and commands that are not supported yet (exit 3);
//! 3. `--close` the descriptors asked for, before anything opens a file;
//! 4. start logging (`-o` opened here);
//! 5. run the command (failure: exit 1; refused because the tree holds
//!    something this version does not checkpoint or restore exactly, or
//!    an option is needed for it: exit 3).
//!
//! Every failure is printed to stderr as one line, `crtools: error: <what>:
//! <source>: <source>...`, and also logged when the log goes to a file.
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufWriter, Write};

use crate::opts::{self, Command, Options};
use crate::supported;
use engine::objects::ns::Namespaces;

/// Exit status of a command that ran and failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status of a command refused: an option not supported yet, or a
/// tree holding something this version does not checkpoint or restore
/// exactly (or only with an option). Nothing was changed.
pub const EXIT_REFUSED: u8 = 3;

/// Why a command failed.
#[derive(Debug)]
pub enum Error {
    /// not supported yet: {0}
    NotSupported(String),
    /// --close {fd}
    Close {
        /// The descriptor.
        fd: i32,
        /// The reason.
        source: engine::sys::Errno,
    },
    /// Logging could not start (its text is the logger's).
    Log(crate::log::LogError),
    /// required kernel features are missing: {0}
    CheckFailed(String),
    /// `crtools show` failed (its text is the engine's).
    Show(engine::show::ShowError),
    /// writing the output
    Output(io::Error),
    /// A dump or restore failed (its text is the engine's).
    Engine(engine::error::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotSupported(what) => write!(f, "not supported yet: {what}"),
            Error::Engine(e) => write!(f, "{e}"),
            Error::Close { fd, .. } => write!(f, "--close {fd}"),
            Error::Log(e) => write!(f, "{e}"),
            Error::CheckFailed(which) => write!(f, "required kernel features are missing: {which}"),
            Error::Show(e) => write!(f, "{e}"),
            Error::Output(_) => write!(f, "writing the output"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Close { source, .. } => Some(source),
            Error::Output(source) => Some(source),
            Error::Log(e) => e.source(),
            Error::Show(e) => e.source(),
            Error::NotSupported(_) | Error::CheckFailed(_) | Error::Engine(_) => None,
        }
    }
}

/// `err` and its sources, joined with ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let msg = e.to_string();
        // Skip a source whose text its parent already printed.
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = e.source();
    }
    s
}

/// Runs crtools with `args` (program name first); returns the exit status.
pub fn main(args: impl IntoIterator<Item = OsString>) -> u8 {
    let (opts, matches) = match opts::parse(args) {
        Ok(p) => p,
        Err(e) => {
            // Usage errors (2) on stderr, --help and --version (0) on stdout.
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    match run(&opts, &matches) {
        Ok(code) => code,
        Err(e) => {
            let line = error_chain(&e);
            if crate::log::to_file(&opts.log) {
                log::error!("{line}");
            }
            eprintln!("crtools: error: {line}");
            match e {
                Error::NotSupported(_) => EXIT_REFUSED,
                Error::Engine(ref en) if en.refused => EXIT_REFUSED,
                _ => EXIT_FAILED,
            }
        }
    }
}

fn run(opts: &Options, matches: &clap::ArgMatches) -> Result<u8, Error> {
    refuse_unsupported(opts, matches)?;
    if matches!(opts.command, Command::Dump(_) | Command::PreDump(_) | Command::Restore(_)) {
        // Asked to stop, a dump or restore ends as a failure does (the
        // tree resumed, or nothing left behind), not in the middle.
        engine::interrupt::catch_stops().map_err(Error::Engine)?;
    }
    for &fd in &opts.close_fds {
        close_fd(fd).map_err(|source| Error::Close { fd, source })?;
    }
    let created = match &opts.command {
        Command::Dump(d) => Some(&d.images_dir),
        Command::PreDump(d) => Some(&d.images_dir),
        _ => None,
    };
    let mut made = None;
    if let Some(dir) = created {
        // A dump creates its directory; a log file inside it needs it first.
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(Error::Output)?;
            made = Some(dir);
        }
    }
    let r = crate::log::init(&opts.log).map_err(Error::Log).and_then(|()| command(opts));
    if let (Err(_), Some(dir)) = (&r, made) {
        // A failed dump took its images back: the directory it made goes
        // too, unless something (its log) is left in it.
        let _ = std::fs::remove_dir(dir);
    }
    r
}

/// Runs the command, logging set up.
fn command(opts: &Options) -> Result<u8, Error> {
    match &opts.command {
        Command::Check { faults: true, .. } => {
            with_stdout(|out| {
                for f in engine::fault::Fault::all() {
                    writeln!(out, "{:<28} {}", f.name(), f.describe())?;
                }
                Ok(())
            })?;
            Ok(0)
        }
        Command::Check { json, .. } => {
            let report = engine::check::run_checks();
            with_stdout(|out| match (json, opts.log.level) {
                (true, _) => report.render_json(out),
                // -v 2 and up: what each probe checks and why it matters.
                (false, 2..) => report.render_verbose(out),
                (false, _) => report.render(out),
            })?;
            if report.ok() {
                Ok(0)
            } else {
                Err(Error::CheckFailed(report.failed_required().join(", ")))
            }
        }
        Command::Show(show) => {
            let mut out = BufWriter::new(io::stdout().lock());
            let shown = engine::show::show(show, &mut out);
            let flushed = out.flush();
            shown.map_err(Error::Show)?;
            flushed.map_err(Error::Output)?;
            Ok(0)
        }
        Command::Dump(dump) => {
            log::debug!("dump: {dump:?}");
            let o = engine::dump::DumpOptions {
                pid: dump.pid,
                dir: dump.images_dir.clone(),
                leave_stopped: dump.leave_stopped,
                shell_job: dump.shell_job,
                evasive_devices: dump.evasive_devices,
                ext_unix_sk: dump.ext_unix_sk,
                link_remap: dump.link_remap,
                ghost_limit: dump.ghost_limit,
                file_locks: dump.file_locks,
                tcp_established: dump.tcp_established,
                tcp_close: dump.tcp_close,
                skip_in_flight: dump.skip_in_flight,
                action_scripts: dump.action_scripts.clone(),
                parent: dump.prev_images_dir.clone(),
                track_mem: dump.track_mem,
                namespaces: namespaces(&dump.namespaces),
            };
            let stats = engine::dump::dump(&o).map_err(Error::Engine)?;
            log::info!(
                "dump done: {} tasks, {} threads, {} VMAs, {} pages, {} descriptors",
                stats.tasks,
                stats.threads,
                stats.vmas,
                stats.pages,
                stats.fds
            );
            Ok(0)
        }
        Command::PreDump(pre) => {
            log::debug!("pre-dump: {pre:?}");
            let o = engine::dump::PreDumpOptions {
                pid: pre.pid,
                dir: pre.images_dir.clone(),
                parent: pre.prev_images_dir.clone(),
            };
            let stats = engine::dump::pre_dump(&o).map_err(Error::Engine)?;
            log::info!(
                "pre-dump done: {} tasks, {} pages written, {} left to the parent, frozen for {} ms",
                stats.tasks,
                stats.pages,
                stats.pages_skipped_parent,
                stats.frozen.as_millis()
            );
            Ok(0)
        }
        Command::Restore(restore) => {
            log::debug!("restore: {restore:?}");
            let o = engine::restore::RestoreOptions {
                pid: restore.pid,
                dir: restore.images_dir.clone(),
                detach: restore.detached,
                shell_job: restore.shell_job,
                ext_unix_sk: restore.ext_unix_sk,
                inherit_fds: restore.inherit_fds.iter().map(|i| (i.fd, i.key.clone())).collect(),
                file_locks: restore.file_locks,
                tcp_established: restore.tcp_established,
                tcp_close: restore.tcp_close,
                action_scripts: restore.action_scripts.clone(),
                namespaces: (!restore.namespaces.is_empty()).then(|| namespaces(&restore.namespaces)),
                lazy_pages: match restore.lazy_pages {
                    true => Some(lazy_server(&restore.images_dir, opts.log.level)?),
                    false => None,
                },
            };
            let status = engine::restore::restore(&o).map_err(Error::Engine)?;
            Ok(u8::try_from(status).unwrap_or(255))
        }
        Command::LazyPagesServer { images_dir } => {
            engine::restore::lazy::serve(images_dir).map_err(Error::Engine)?;
            Ok(0)
        }
    }
}

/// How `restore --lazy-pages` starts its server: this executable, logging
/// at the same level into lazy-pages.log in the images directory.
fn lazy_server(dir: &std::path::Path, level: u8) -> Result<engine::restore::lazy::ServerCommand, Error> {
    let exe = std::env::current_exe().map_err(Error::Output)?;
    let log = std::path::absolute(dir.join("lazy-pages.log")).map_err(Error::Output)?;
    Ok(engine::restore::lazy::ServerCommand {
        exe,
        args: vec!["-v".into(), level.to_string().into(), "-o".into(), log.into_os_string()],
    })
}

/// "not supported yet" for the options given, then for the command.
fn refuse_unsupported(opts: &Options, matches: &clap::ArgMatches) -> Result<(), Error> {
    let mut cmd = opts::command();
    cmd.build();
    let options = supported::unsupported_options(&cmd, matches);
    if !options.is_empty() {
        return Err(Error::NotSupported(options.join(", ")));
    }
    let name = opts.command.name();
    if !supported::command_supported(name) {
        return Err(Error::NotSupported(name.into()));
    }
    let asked = match &opts.command {
        Command::Dump(d) => namespaces(&d.namespaces),
        Command::Restore(r) => namespaces(&r.namespaces),
        _ => Namespaces::empty(),
    };
    let unsupported = asked - Namespaces::SUPPORTED;
    if !unsupported.is_empty() {
        return Err(Error::NotSupported(format!("-n {}", unsupported.names())));
    }
    Ok(())
}

/// The engine's set of the kinds `-n` named.
fn namespaces(ns: &[opts::Namespace]) -> Namespaces {
    ns.iter().fold(Namespaces::empty(), |all, n| {
        all | match n {
            opts::Namespace::Uts => Namespaces::UTS,
            opts::Namespace::Ipc => Namespaces::IPC,
            opts::Namespace::Mnt => Namespaces::MNT,
            opts::Namespace::Pid => Namespaces::PID,
            opts::Namespace::Net => Namespaces::NET,
        }
    })
}

fn with_stdout(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), Error> {
    let mut out = BufWriter::new(io::stdout().lock());
    f(&mut out).and_then(|()| out.flush()).map_err(Error::Output)
}

/// Closes descriptor `fd` of crtools itself (`--close`); a descriptor that
/// is not open is nothing to close, as in CRIU.
fn close_fd(fd: i32) -> Result<(), engine::sys::Errno> {
    use engine::sys::fs::{close_range, CloseRangeFlags};
    let fd = u32::try_from(fd).map_err(|_| engine::sys::Errno::EBADF)?;
    // SAFETY: the user asked for this descriptor to be closed, and nothing in
    // this process owns it yet: this runs before logging or any command
    // opens a file, and the standard streams are not OwnedFds (std writes to
    // a closed stderr as if it succeeded).
    unsafe { close_range(fd, fd, CloseRangeFlags::empty()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(args: &str) -> u8 {
        main(std::iter::once("crtools").chain(args.split_whitespace()).map(OsString::from))
    }

    fn refused(args: &str) -> String {
        let argv = std::iter::once("crtools").chain(args.split_whitespace());
        let (opts, matches) = opts::parse(argv).unwrap_or_else(|e| panic!("{args}: {}", e.render()));
        match refuse_unsupported(&opts, &matches) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{args}: accepted"),
        }
    }

    #[test]
    fn unsupported_options_refused() {
        assert_eq!(refused("restore -t 1 --veth-pair a=b"), "not supported yet: --veth-pair");
        assert_eq!(refused("restore -t 1 -n pid,uts"), "not supported yet: -n pid");
        assert_eq!(refused("dump -t 1 -n uts,net,mnt"), "not supported yet: -n net,mnt");
        let argv = ["crtools", "-D", "img", "-v", "2", "-o", "x.log", "--log-pid", "show", "-c", "--json"];
        let (opts, matches) = opts::parse(argv).unwrap();
        assert!(refuse_unsupported(&opts, &matches).is_ok());
    }

    #[test]
    fn exit_codes() {
        // No such process: a failure, not a refusal.
        assert_eq!(exit("dump -t 4194303 -s"), 1);
        assert_eq!(exit("dump -t 4194303"), 1);
        assert_eq!(exit("restore -t 1 --veth-pair a=b"), EXIT_REFUSED);
        // Usage errors (2) are checked in opts.rs: clap prints them itself,
        // past the test harness's capture.
    }

    #[test]
    fn error_chain_joins_sources() {
        let e = Error::Close { fd: 5, source: engine::sys::Errno::EBADF };
        assert_eq!(error_chain(&e), format!("--close 5: {}", engine::sys::Errno::EBADF));
        let e = Error::Show(engine::show::ShowError::Other("bad magic".into()));
        assert_eq!(error_chain(&e), "bad magic");
        assert_eq!(error_chain(&Error::NotSupported("dump".into())), "not supported yet: dump");
    }

    #[test]
    fn close_of_a_closed_fd_is_nothing() {
        assert_eq!(close_fd(987_654), Ok(()));
    }
}
