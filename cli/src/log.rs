//! The logger behind the `log` crate: `-v`, `-o` and `--log-pid`.
//!
//! A line reads `(00.012345) INFO: message`, the time relative to the start
//! of crtools; with `--log-pid` the writing process's pid comes after the
//! time: `(00.012345)   4321: INFO: message`.
//!
//! Invariants:
//! - Every line is written with one `write` of an unbuffered descriptor, so
//!   nothing sits in a buffer when the engine forks (a buffered line would
//!   be written twice, once by each side of the fork).
//! - With `--log-pid` and `-o FILE`, crtools itself writes `FILE` and every
//!   other process (the engine forks tasks during restore) writes
//!   `FILE.<pid>`. The file is reopened lazily: when the pid that writes a
//!   line is not the pid the file was opened for, `FILE.<pid>` is opened.
//!   Without `--log-pid` forked processes share the inherited descriptor.
//! - Log files are created with mode 0600 and truncated, as CRIU does.
//! - The sink sits behind a mutex: a fork while another thread is writing a
//!   line would leave the child with a locked mutex, so the engine forks only
//!   from a single-threaded crtools (it does: nothing here starts threads).
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::opts::LogOptions;

/// The `log` filter for `-v N`: 0 errors only, 1 informative (warnings and
/// info), 2 debug, 3 and above trace.
pub fn level_filter(v: u8) -> LevelFilter {
    match v {
        0 => LevelFilter::Error,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// One log line, newline included.
pub fn format_line(elapsed: Duration, pid: Option<u32>, level: Level, msg: &fmt::Arguments<'_>) -> String {
    let secs = elapsed.as_secs();
    let micros = elapsed.subsec_micros();
    match pid {
        Some(pid) => format!("({secs:02}.{micros:06}) {pid:>6}: {level}: {msg}\n"),
        None => format!("({secs:02}.{micros:06}) {level}: {msg}\n"),
    }
}

/// The file process `pid` writes: `base` for crtools itself (`main_pid`) or
/// without `--log-pid`, `base.<pid>` for any other process with it.
pub fn file_for_pid(base: &Path, per_pid: bool, main_pid: u32, pid: u32) -> PathBuf {
    if per_pid && pid != main_pid {
        let mut name = base.as_os_str().to_os_string();
        name.push(format!(".{pid}"));
        PathBuf::from(name)
    } else {
        base.to_path_buf()
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

/// Where lines go.
enum Sink {
    Stderr,
    File {
        /// `-o`, resolved.
        base: PathBuf,
        /// The pid `file` was opened for.
        pid: u32,
        /// `None` after a failed reopen: the lines go to stderr then.
        file: Option<File>,
    },
}

struct Logger {
    start: Instant,
    per_pid: bool,
    main_pid: u32,
    sink: Mutex<Sink>,
    /// With `--log-pid`: one file per task the engine logs about (a record
    /// with a `task` key), `FILE.<task>`, like the per-process files of the
    /// processes crtools forks.
    tasks: Mutex<std::collections::HashMap<u32, Option<File>>>,
}

impl Logger {
    /// Writes a line about `task` to `FILE.<task>`; false when there is no
    /// log file (stderr) or it cannot be opened.
    fn write_task_line(&self, task: u32, line: &str) -> bool {
        let base = match &*self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            Sink::File { base, .. } => base.clone(),
            Sink::Stderr => return false,
        };
        let mut files = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let f = files.entry(task).or_insert_with(|| open_log(&file_for_pid(&base, true, u32::MAX, task)).ok());
        match f {
            Some(f) => f.write_all(line.as_bytes()).is_ok(),
            None => false,
        }
    }

    fn write_line(&self, line: &str) {
        let pid = std::process::id();
        // A poisoned lock only means another thread panicked mid-line.
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::Stderr => {
                let _ = io::stderr().write_all(line.as_bytes());
            }
            Sink::File { base, pid: opened_for, file } => {
                if self.per_pid && *opened_for != pid {
                    *file = open_log(&file_for_pid(base, true, self.main_pid, pid)).ok();
                    *opened_for = pid;
                }
                match file {
                    Some(f) => {
                        let _ = f.write_all(line.as_bytes());
                    }
                    None => {
                        let _ = io::stderr().write_all(line.as_bytes());
                    }
                }
            }
        }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let task = record.key_values().get(log::kv::Key::from_str("task")).and_then(|v| v.to_u64());
        if let (true, Some(task)) = (self.per_pid, task) {
            let line = format_line(self.start.elapsed(), Some(task as u32), record.level(), record.args());
            if self.write_task_line(task as u32, &line) {
                return;
            }
        }
        let pid = self.per_pid.then(std::process::id);
        self.write_line(&format_line(self.start.elapsed(), pid, record.level(), record.args()));
    }

    fn flush(&self) {}
}

/// Why the logger could not start.
#[derive(Debug)]
pub enum LogError {
    /// cannot open log file {path}
    Open {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: io::Error,
    },
    /// a logger is already installed
    AlreadySet,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Open { path, .. } => write!(f, "cannot open log file {}", path.display()),
            LogError::AlreadySet => write!(f, "a logger is already installed"),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::Open { source, .. } => Some(source),
            LogError::AlreadySet => None,
        }
    }
}

/// Installs the logger. The file of `-o` is opened here, so a bad path is
/// an error before anything is done.
pub fn init(opts: &LogOptions) -> Result<(), LogError> {
    let main_pid = std::process::id();
    let sink = match &opts.file {
        None => Sink::Stderr,
        Some(base) => {
            let file = open_log(base).map_err(|source| LogError::Open { path: base.clone(), source })?;
            Sink::File { base: base.clone(), pid: main_pid, file: Some(file) }
        }
    };
    let logger = Logger {
        start: Instant::now(),
        per_pid: opts.per_pid,
        main_pid,
        sink: Mutex::new(sink),
        tasks: Mutex::new(Default::default()),
    };
    log::set_boxed_logger(Box::new(logger)).map_err(|_| LogError::AlreadySet)?;
    log::set_max_level(level_filter(opts.level));
    Ok(())
}

/// Whether log lines go to a file rather than stderr (then the final error
/// is logged there too, besides its line on stderr).
pub fn to_file(opts: &LogOptions) -> bool {
    opts.file.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let d = Duration::from_micros(12_345);
        assert_eq!(format_line(d, None, Level::Info, &format_args!("dumping {}", 7)), "(00.012345) INFO: dumping 7\n");
        assert_eq!(
            format_line(Duration::from_millis(3_500), Some(4321), Level::Error, &format_args!("boom")),
            "(03.500000)   4321: ERROR: boom\n"
        );
        assert_eq!(
            format_line(Duration::from_secs(125), None, Level::Debug, &format_args!("x")),
            "(125.000000) DEBUG: x\n"
        );
    }

    #[test]
    fn levels() {
        assert_eq!(level_filter(0), LevelFilter::Error);
        assert_eq!(level_filter(1), LevelFilter::Info);
        assert_eq!(level_filter(2), LevelFilter::Debug);
        assert_eq!(level_filter(3), LevelFilter::Trace);
        assert_eq!(level_filter(4), LevelFilter::Trace);
    }

    #[test]
    fn per_pid_file_name() {
        let base = Path::new("img/restore.log");
        assert_eq!(file_for_pid(base, true, 100, 100), PathBuf::from("img/restore.log"));
        assert_eq!(file_for_pid(base, true, 100, 4321), PathBuf::from("img/restore.log.4321"));
        assert_eq!(file_for_pid(base, false, 100, 4321), PathBuf::from("img/restore.log"));
    }

    #[test]
    fn reopens_per_pid() {
        let dir = std::env::temp_dir().join(format!("crtools-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("x.log");
        let logger = Logger {
            start: Instant::now(),
            per_pid: true,
            // Pretend crtools itself was another process: this one is then a
            // "forked" one and must get its own file.
            main_pid: 1,
            sink: Mutex::new(Sink::File { base: base.clone(), pid: 1, file: Some(open_log(&base).unwrap()) }),
            tasks: Mutex::new(Default::default()),
        };
        logger.write_line("child line\n");
        let own = file_for_pid(&base, true, 1, std::process::id());
        assert_eq!(std::fs::read_to_string(&own).unwrap(), "child line\n");
        assert_eq!(std::fs::read_to_string(&base).unwrap(), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
