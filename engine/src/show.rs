//! Decoding of any image for `crtools show`.
//!
//! Interface used by the CLI: [`show`] with [`ShowOptions`].
use std::io::Write;
use std::path::PathBuf;

/// What to show and how.
#[derive(Clone, Debug, Default)]
pub struct ShowOptions {
    /// `-D`: every image of this directory.
    pub dir: Option<PathBuf>,
    /// `-f`: this one image file.
    pub file: Option<PathBuf>,
    /// `-c`: page contents as hex.
    pub contents: bool,
    /// `--json`: machine-readable output.
    pub json: bool,
}

/// Why showing failed.
#[derive(Debug)]
pub enum ShowError {
    /// Neither a directory nor a file was given.
    NothingToShow,
    /// Any other failure, with its message.
    Other(String),
}

impl std::fmt::Display for ShowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShowError::NothingToShow => write!(f, "show needs -D <dir> or -f <file>"),
            ShowError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ShowError {}

/// Decodes the images `opts` names to `out`.
pub fn show(opts: &ShowOptions, _out: &mut dyn Write) -> Result<(), ShowError> {
    if opts.dir.is_none() && opts.file.is_none() {
        return Err(ShowError::NothingToShow);
    }
    Err(ShowError::Other("show: not implemented yet".into()))
}
