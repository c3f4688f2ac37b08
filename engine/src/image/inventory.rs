//! `inventory.img`: written last, it lists every other image of the dump with
//! its kind, size and CRC-32C. A directory without a valid inventory is an
//! incomplete dump.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::kind::ImageKind;

/// Head of the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryHead {
    /// Version of the tool that wrote the dump (`CARGO_PKG_VERSION`).
    pub tool_version: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_sec: u64,
    /// Creation time, nanoseconds part.
    pub created_nsec: u32,
    /// Pid of the dumped tree's root task, if a tree was dumped.
    pub root_pid: Option<u32>,
}

/// One image of the dump.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// Its kind.
    pub kind: ImageKind,
    /// Its file name in the directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// CRC-32C of the whole file.
    pub checksum: u32,
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (proleptic Gregorian, UTC).
pub fn utc_text(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

impl Describe for InventoryHead {
    fn describe(&self) -> Node {
        Obj::new()
            .f("tool_version", self.tool_version.as_str())
            .f("created", utc_text(self.created_sec))
            .f("created_sec", self.created_sec)
            .f("created_nsec", self.created_nsec)
            .f("root_pid", self.root_pid)
            .done()
    }
}

impl Describe for InventoryEntry {
    fn describe(&self) -> Node {
        Obj::new()
            .f("kind", self.kind.name())
            .f("name", self.name.as_str())
            .f("size", Node::Size(self.size))
            .f("checksum", Node::hex32(self.checksum))
            .done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_text(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
