//! Kernel feature probes for `crtools check`.
//!
//! Interface used by the CLI (kept stable while probes are added):
//! [`run_checks`] runs every probe and returns a [`Report`].
use std::io::Write;

/// Whether a failing probe makes `crtools check` fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// C/R cannot work without it.
    Required,
    /// Some features are unavailable without it.
    Optional,
}

/// The result of one probe.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Short name, e.g. "ptrace-seize".
    pub name: &'static str,
    /// Required or optional.
    pub need: Need,
    /// `Ok(detail)` when it works, `Err(why)` when not.
    pub result: Result<String, String>,
}

/// All probes of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// In the order they ran.
    pub probes: Vec<Probe>,
}

impl Report {
    /// True when every required probe passed.
    pub fn ok(&self) -> bool {
        self.probes.iter().all(|p| p.need == Need::Optional || p.result.is_ok())
    }

    /// Writes one line per probe, then the verdict.
    pub fn render(&self, w: &mut dyn Write) -> std::io::Result<()> {
        for p in &self.probes {
            match &p.result {
                Ok(d) => writeln!(w, "{:<24} ok      {d}", p.name)?,
                Err(why) => {
                    let tag = if p.need == Need::Required { "FAILED" } else { "missing" };
                    writeln!(w, "{:<24} {tag:<7} {why}", p.name)?
                }
            }
        }
        let failed: Vec<_> =
            self.probes.iter().filter(|p| p.need == Need::Required && p.result.is_err()).map(|p| p.name).collect();
        if failed.is_empty() {
            writeln!(w, "Looks good.")
        } else {
            writeln!(w, "Required kernel features are missing: {}", failed.join(", "))
        }
    }
}

/// Runs every probe.
pub fn run_checks() -> Report {
    Report::default()
}
