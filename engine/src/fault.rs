//! Fault injection: named failure points chosen by the `CRTOOLS_FAULT`
//! environment variable (a comma-separated list of names), so tests can
//! prove that a dump failing at step N leaves the target running and that
//! a restore failing at step N leaves nothing behind.
//!
//! Unset, every point is a no-op costing one relaxed load.
use std::sync::OnceLock;

/// The failure points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Dump: after the parasite collected a task's state, before the cure.
    DumpInfected,
    /// Dump: after the pages of a task were written.
    DumpAfterPages,
    /// Dump: right before the inventory would be written.
    DumpBeforeInventory,
    /// Restore: behave as if clone3 had no set_tid (use ns_last_pid).
    RestoreNoSetTid,
    /// Restore: after every task and thread reached its trap, before the
    /// registers are set.
    RestoreAtTraps,
}

impl Fault {
    /// The name used in `CRTOOLS_FAULT`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::DumpInfected => "dump-infected",
            Fault::DumpAfterPages => "dump-after-pages",
            Fault::DumpBeforeInventory => "dump-before-inventory",
            Fault::RestoreNoSetTid => "restore-no-set-tid",
            Fault::RestoreAtTraps => "restore-at-traps",
        }
    }

    const ALL: [Fault; 5] = [
        Fault::DumpInfected,
        Fault::DumpAfterPages,
        Fault::DumpBeforeInventory,
        Fault::RestoreNoSetTid,
        Fault::RestoreAtTraps,
    ];
}

fn active() -> &'static [Fault] {
    static ACTIVE: OnceLock<Vec<Fault>> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        let v = std::env::var("CRTOOLS_FAULT").unwrap_or_default();
        parse(&v)
    })
}

/// The faults named in `spec` (unknown names are ignored with a warning).
pub fn parse(spec: &str) -> Vec<Fault> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|n| {
            let f = Fault::ALL.iter().copied().find(|f| f.name() == n);
            if f.is_none() {
                log::warn!("CRTOOLS_FAULT: unknown failure point {n:?}");
            }
            f
        })
        .collect()
}

/// True when failure point `f` is armed (call before any fork: the answer
/// is computed once).
pub fn hit(f: Fault) -> bool {
    let on = active().contains(&f);
    if on {
        log::warn!("fault injection: {}", f.name());
    }
    on
}

/// [`hit`] as an error for the pipelines.
pub fn check(f: Fault) -> crate::error::Result<()> {
    if hit(f) {
        return Err(crate::error::Error::new(format!("injected fault {}", f.name())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(parse("dump-infected, restore-at-traps,bogus"), vec![Fault::DumpInfected, Fault::RestoreAtTraps]);
        assert!(parse("").is_empty());
        for f in Fault::ALL {
            assert_eq!(parse(f.name()), vec![f]);
        }
    }
}
