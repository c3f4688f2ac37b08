//! `/proc/sysvipc/shm`: every SysV shared memory segment of the reader's
//! IPC namespace (see sysvipc(7), proc_sysvipc(5)). One header line, then
//! one line per segment: key (signed decimal), shmid, perms (octal, with
//! SHM_DEST and SHM_LOCKED), size, cpid, lpid, nattch, uid, gid, cuid,
//! cgid, atime, dtime, ctime, rss, swap.
use super::{ProcError, Result};

const FILE: &str = "sysvipc/shm";

/// One segment as the kernel lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShmSegment {
    /// The key (0: IPC_PRIVATE, or marked for removal).
    pub key: i32,
    pub shmid: i32,
    /// Permission bits with SHM_DEST (0o1000) and SHM_LOCKED (0o2000).
    pub mode: u32,
    pub size: u64,
    pub cpid: i32,
    pub lpid: i32,
    /// Attachments (VMAs mapping it, in every process).
    pub nattch: u64,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<Vec<ShmSegment>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| ProcError::malformed(FILE, format!("{what} in {line:?}")).at_line(i + 1).into_global();
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 11 {
            return Err(bad("too few fields"));
        }
        let n = |k: usize| w[k].parse::<i64>().map_err(|_| bad("bad number"));
        let u = |k: usize| w[k].parse::<u64>().map_err(|_| bad("bad number"));
        let id32 = |k: usize| u(k).and_then(|v| u32::try_from(v).map_err(|_| bad("id out of range")));
        let key = i32::try_from(n(0)?).map_err(|_| bad("key out of range"))?;
        let shmid = i32::try_from(n(1)?).map_err(|_| bad("bad shmid"))?;
        let mode = u32::from_str_radix(w[2], 8).map_err(|_| bad("bad perms"))?;
        out.push(ShmSegment {
            key,
            shmid,
            mode,
            size: u(3)?,
            cpid: n(4)? as i32,
            lpid: n(5)? as i32,
            nattch: u(6)?,
            uid: id32(7)?,
            gid: id32(8)?,
            cuid: id32(9)?,
            cgid: id32(10)?,
        });
    }
    Ok(out)
}

/// Reads `/proc/sysvipc/shm` (crtools' own IPC namespace).
pub fn read_shm() -> Result<Vec<ShmSegment>> {
    let t = std::fs::read_to_string("/proc/sysvipc/shm").map_err(|e| ProcError::io_global(FILE, e))?;
    parse(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample() {
        let s = parse(include_str!("testdata/sysvipc_shm")).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].key, s[0].shmid, s[0].mode, s[0].size, s[0].nattch), (0x1234abcd, 6, 0o644, 10000, 0));
        assert_eq!((s[1].key, s[1].mode, s[1].nattch), (0, 0o1600, 1));
        assert_eq!((s[2].key as u32, s[2].shmid, s[2].mode), (0xdeadbeef, 32769, 0o2660));
        assert_eq!((s[2].uid, s[2].gid, s[2].cuid, s[2].cgid, s[2].nattch), (1000, 1000, 0, 0, 3));
    }

    #[test]
    fn hostile_lines_are_errors() {
        let head = "key shmid perms size cpid lpid nattch uid gid cuid cgid\n";
        for l in ["1 2 3", "x 1 600 4096 1 1 1 0 0 0 0", "1 1 999 4096 1 1 1 0 0 0 0", "1 1 600 4096 1 1 1 -1 0 0 0"] {
            assert!(parse(&format!("{head}{l}\n")).is_err(), "{l}");
        }
        assert!(parse(head).unwrap().is_empty());
    }
}
