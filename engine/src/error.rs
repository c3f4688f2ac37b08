//! The error of the dump and restore pipelines: one clear line that names
//! the task and the step, with the cause from the layer below.
use crate::sys::Pid;

/// A pipeline failure.
#[derive(Debug)]
pub struct Error {
    /// The task concerned, when there is one.
    pub pid: Option<Pid>,
    /// What was being done and why it failed.
    pub msg: String,
    /// A refusal: the tree holds an object or state this version does not
    /// checkpoint or restore exactly (or an option would be needed for
    /// it); nothing was changed. Otherwise something failed.
    pub refused: bool,
}

impl Error {
    /// An error about task `pid`.
    pub fn task(pid: Pid, msg: impl Into<String>) -> Error {
        Error { pid: Some(pid), msg: msg.into(), refused: false }
    }
    /// An error about no task in particular.
    pub fn new(msg: impl Into<String>) -> Error {
        Error { pid: None, msg: msg.into(), refused: false }
    }
    /// A refusal about task `pid` (see [`Error::refused`]).
    pub fn refuse(pid: Pid, msg: impl Into<String>) -> Error {
        Error { pid: Some(pid), msg: msg.into(), refused: true }
    }
    /// A refusal about no task in particular.
    pub fn refuse_global(msg: impl Into<String>) -> Error {
        Error { pid: None, msg: msg.into(), refused: true }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            // Lower layers often name the task already.
            Some(pid) if !self.msg.starts_with("task ") => write!(f, "task {pid}: {}", self.msg),
            _ => write!(f, "{}", self.msg),
        }
    }
}

impl std::error::Error for Error {}

/// Result of the pipelines.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds "what was being done" to any displayable error.
pub trait Context<T> {
    /// Wraps the error as `<what>: <cause>` about task `pid`.
    fn ctx(self, pid: Pid, what: &str) -> Result<T>;
    /// Wraps the error as `<what>: <cause>`.
    fn ctx_global(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, pid: Pid, what: &str) -> Result<T> {
        self.map_err(|e| Error::task(pid, format!("{what}: {e}")))
    }
    fn ctx_global(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::new(format!("{what}: {e}")))
    }
}
