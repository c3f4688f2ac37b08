//! `stats-dump.img`, `stats-restore.img` and `stats-lazy.img`: what a
//! dump, a restore and a restore's lazy-pages server measured, in microseconds (CRIU's field names). They are written next to
//! the images once the run is over, outside the inventory (a dump's
//! frozen time is only known after the tree was killed or left stopped);
//! `crtools show` decodes them with the dump.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};

/// What a dump measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpStatsEntry {
    /// From the first seize to the moment the tree was killed, left stopped
    /// or resumed: how long the tasks could not run.
    pub frozen_time: u64,
    /// Reading and writing memory pages.
    pub memdump_time: u64,
    /// The part of it spent writing pages out.
    pub memwrite_time: u64,
    /// Pages of the VMAs that hold data, looked at.
    pub pages_scanned: u64,
    /// Pages not written because a parent dump has them (pre-dump).
    pub pages_skipped_parent: u64,
    /// Pages written.
    pub pages_written: u64,
    /// Whole dump, start to end.
    pub total_time: u64,
    /// Processes and threads dumped.
    pub tasks: u32,
    /// Threads dumped.
    pub threads: u32,
}

/// What a restore measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreStatsEntry {
    /// Reading and checking the images, building the plans.
    pub prepare_time: u64,
    /// From the first fork until every task was on its final trap.
    pub forking_time: u64,
    /// Whole restore until the tree runs.
    pub restore_time: u64,
    /// Pages restored.
    pub pages_restored: u64,
}

/// What the lazy-pages server of `restore --lazy-pages` measured, written
/// when the last page is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyStatsEntry {
    /// From the server's start (before the tree was made) until every
    /// page was in.
    pub complete_time: u64,
    /// Faults answered.
    pub faults: u64,
    /// Pages copied in on faults.
    pub pages_on_fault: u64,
    /// Pages copied in the background.
    pub pages_background: u64,
    /// Zero pages given (touched pages the images do not hold).
    pub zero_pages: u64,
    /// Forks of the restored tasks followed while pages waited.
    pub forks: u64,
}

impl Describe for LazyStatsEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("complete_time", us(self.complete_time))
            .f("faults", self.faults)
            .f("pages_on_fault", self.pages_on_fault)
            .f("pages_background", self.pages_background)
            .f("zero_pages", self.zero_pages)
            .f("forks", self.forks)
            .done()
    }
}

fn us(v: u64) -> Node {
    Node::Str(format!("{v} us"))
}

impl Describe for DumpStatsEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("frozen_time", us(self.frozen_time))
            .f("memdump_time", us(self.memdump_time))
            .f("memwrite_time", us(self.memwrite_time))
            .f("pages_scanned", self.pages_scanned)
            .f("pages_skipped_parent", self.pages_skipped_parent)
            .f("pages_written", self.pages_written)
            .f("total_time", us(self.total_time))
            .f("tasks", self.tasks)
            .f("threads", self.threads)
            .done()
    }
}

impl Describe for RestoreStatsEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("prepare_time", us(self.prepare_time))
            .f("forking_time", us(self.forking_time))
            .f("restore_time", us(self.restore_time))
            .f("pages_restored", self.pages_restored)
            .done()
    }
}
