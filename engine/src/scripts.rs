//! `--action-script`: the user's scripts, run at fixed points of a dump or
//! a restore the way CRIU runs them.
//!
//! Each script runs as `/bin/sh -c SCRIPT` with `CRTOOLS_SCRIPT_ACTION`
//! (and the manual's spelling `CRTOOL_SCRIPT_ACTION`) naming the action,
//! `CRTOOLS_IMAGE_DIR` the image directory and, once the tree's root is
//! known, `CRTOOLS_INIT_PID` its pid. A script that fails (exits non-zero
//! or is killed) fails the dump or the restore at that point, as any other
//! failure there: a dump resumes the tree, a restore leaves nothing.
//!
//! Actions: `pre-dump` (before the tree is frozen), `post-dump` (images
//! complete, the tree still frozen, before it is killed or left stopped),
//! `pre-restore` (before anything is created), `post-restore` (every task
//! in place, before the tree runs), `post-resume` (the tree runs).
//! `network-lock` and `network-unlock` belong to a dumped network
//! namespace, which crtools does not dump yet: they are not run.
use crate::error::{Error, Result};
use crate::sys::Pid;
use std::path::{Path, PathBuf};

/// Runs every script of `scripts` for `action`, in order; the first that
/// fails is the error.
pub fn run(scripts: &[PathBuf], action: &str, dir: &Path, root: Option<Pid>) -> Result<()> {
    for s in scripts {
        log::info!("action script {} for {action}", s.display());
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(s)
            .env("CRTOOLS_SCRIPT_ACTION", action)
            .env("CRTOOL_SCRIPT_ACTION", action)
            .env("CRTOOLS_IMAGE_DIR", dir);
        if let Some(p) = root {
            cmd.env("CRTOOLS_INIT_PID", p.0.to_string());
        }
        let status =
            cmd.status().map_err(|e| Error::new(format!("action script {} ({action}): run: {e}", s.display())))?;
        if !status.success() {
            return Err(Error::new(format!("action script {} failed for {action}: {status}", s.display())));
        }
    }
    Ok(())
}
