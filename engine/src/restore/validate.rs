//! Refusing images that would make a restore act outside its remit, before
//! anything is created: the images are input, perhaps hostile.
//!
//! - pids and tids: positive, at most `kernel.pid_max`, each once;
//! - memory: VMAs page aligned, non-empty, below TASK_SIZE, in order and
//!   disjoint; page ranges aligned, inside a VMA, without overflow;
//! - credentials and capabilities: a restore never grants more than its
//!   caller holds. Without CAP_SETUID (CAP_SETGID) every uid (gid) of the
//!   images must be one of the caller's own; capabilities (permitted,
//!   effective, inheritable, ambient) must be held by the caller
//!   (effective set), and the bounding set may only be smaller.
//!
//! The kernel would refuse most of these later too (setresuid, capset),
//! but halfway through a restore, with part of the tree created: this
//! module says so first, by name.
use super::TaskImages;
use crate::error::{Error, Result};
use crate::image::core::Creds;
use crate::sys::Pid;

const PAGE: u64 = 4096;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// What the caller (crtools itself) holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// Real, effective, saved uid.
    pub uids: [u32; 3],
    /// Real, effective, saved gid.
    pub gids: [u32; 3],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capabilities.
    pub cap_eff: u64,
    /// Bounding set.
    pub cap_bnd: u64,
}

impl Caller {
    /// The calling process, from /proc/self/status.
    pub fn current() -> Result<Caller> {
        let text = std::fs::read_to_string("/proc/self/status")
            .map_err(|e| Error::new(format!("read /proc/self/status: {e}")))?;
        Ok(Caller::parse(&text))
    }

    fn parse(text: &str) -> Caller {
        let mut c = Caller::default();
        for l in text.lines() {
            let Some((k, v)) = l.split_once(':') else { continue };
            let nums = || v.split_whitespace().filter_map(|n| n.parse::<u32>().ok()).collect::<Vec<_>>();
            let hex = || u64::from_str_radix(v.trim(), 16).unwrap_or(0);
            match k {
                "Uid" => c.uids.iter_mut().zip(nums()).for_each(|(d, s)| *d = s),
                "Gid" => c.gids.iter_mut().zip(nums()).for_each(|(d, s)| *d = s),
                "Groups" => c.groups = nums(),
                "CapEff" => c.cap_eff = hex(),
                "CapBnd" => c.cap_bnd = hex(),
                _ => {}
            }
        }
        c
    }

    fn has(&self, cap: u32) -> bool {
        self.cap_eff & (1 << cap) != 0
    }
}

/// Why `creds` (of thread `tid`) would grant more than `caller` holds.
pub fn check_creds(caller: &Caller, creds: &Creds) -> std::result::Result<(), String> {
    if !caller.has(CAP_SETUID) {
        for (what, id) in [("uid", creds.uid), ("euid", creds.euid), ("suid", creds.suid), ("fsuid", creds.fsuid)] {
            if !caller.uids.contains(&id) {
                return Err(format!("the images claim {what} {id}, which crtools (uids {:?}) cannot set", caller.uids));
            }
        }
    }
    if !caller.has(CAP_SETGID) {
        for (what, id) in [("gid", creds.gid), ("egid", creds.egid), ("sgid", creds.sgid), ("fsgid", creds.fsgid)] {
            if !caller.gids.contains(&id) {
                return Err(format!("the images claim {what} {id}, which crtools (gids {:?}) cannot set", caller.gids));
            }
        }
        let mut mine = caller.groups.clone();
        mine.sort_unstable();
        let mut theirs = creds.groups.clone();
        theirs.sort_unstable();
        if mine != theirs {
            return Err(format!("the images claim groups {:?}, crtools has {:?}", creds.groups, caller.groups));
        }
    }
    let claimed = creds.cap_prm | creds.cap_eff | creds.cap_inh | creds.cap_amb;
    let extra = claimed & !caller.cap_eff;
    if extra != 0 {
        return Err(format!("the images claim capabilities {extra:#x} that crtools does not hold"));
    }
    let extra = creds.cap_bnd & !caller.cap_bnd;
    if extra != 0 {
        return Err(format!("the images claim a bounding set with {extra:#x}, outside crtools' own"));
    }
    Ok(())
}

/// Checks every task's images; `task_size` bounds user addresses.
pub(super) fn check_tasks(tasks: &[TaskImages], task_size: u64) -> Result<()> {
    let caller = Caller::current()?;
    check_tasks_as(tasks, task_size, &caller, crate::proc::pid_max())
}

fn check_tasks_as(tasks: &[TaskImages], task_size: u64, caller: &Caller, pid_max: u64) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for t in tasks {
        let pid = Pid(t.pstree.pid as i32);
        let bad = |why: String| Error::task(pid, format!("refusing the images: {why}"));
        for &tid in &t.pstree.threads {
            if tid == 0 || tid as u64 > pid_max {
                return Err(bad(format!("thread id {tid} is outside 1..={pid_max} (kernel.pid_max)")));
            }
            if !seen.insert(tid) {
                return Err(bad(format!("thread id {tid} appears twice in the tree")));
            }
        }
        let zombie = t.cores[0].process.as_ref().is_some_and(|p| p.state == crate::image::core::TaskState::Zombie);
        for c in t.cores.iter().filter(|_| !zombie) {
            check_creds(caller, &c.thread.creds).map_err(|w| bad(format!("thread {}: {w}", c.tid)))?;
        }
        let mut prev_end = 0u64;
        for v in &t.vmas {
            if v.start % PAGE != 0 || v.end % PAGE != 0 || v.start >= v.end || v.end > task_size {
                return Err(bad(format!("VMA {:#x}-{:#x} is not a valid user range", v.start, v.end)));
            }
            if v.start < prev_end {
                return Err(bad(format!("VMA {:#x}-{:#x} overlaps or is out of order", v.start, v.end)));
            }
            prev_end = v.end;
        }
        crate::image::pagemap::check_stripes(&t.pagemap_head, &t.pagemap).map_err(bad)?;
        for e in &t.pagemap {
            let end = (e.nr_pages as u64).checked_mul(PAGE).and_then(|len| e.vaddr.checked_add(len));
            // A run of pages may span adjacent VMAs: it must be covered.
            let inside = end.is_some_and(|end| {
                let mut cur = e.vaddr;
                for v in &t.vmas {
                    if v.start <= cur && cur < v.end {
                        cur = v.end;
                    }
                }
                e.vaddr % PAGE == 0 && cur >= end
            });
            if !inside {
                return Err(bad(format!(
                    "pages at {:#x} (+{} pages) lie outside every VMA of the task",
                    e.vaddr, e.nr_pages
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32) -> Caller {
        Caller { uids: [uid; 3], gids: [uid; 3], groups: vec![], cap_eff: 0, cap_bnd: !0 >> 23 }
    }

    #[test]
    fn a_non_root_caller_cannot_restore_root_or_capabilities() {
        let me = user(1000);
        let mine = Creds {
            uid: 1000,
            euid: 1000,
            suid: 1000,
            fsuid: 1000,
            gid: 1000,
            egid: 1000,
            sgid: 1000,
            fsgid: 1000,
            cap_bnd: me.cap_bnd,
            ..Default::default()
        };
        assert_eq!(check_creds(&me, &mine), Ok(()));
        let root = Creds { uid: 0, ..mine.clone() };
        assert!(check_creds(&me, &root).unwrap_err().contains("uid 0"));
        let fsroot = Creds { fsuid: 0, ..mine.clone() };
        assert!(check_creds(&me, &fsroot).unwrap_err().contains("fsuid 0"));
        let wheel = Creds { groups: vec![0], ..mine.clone() };
        assert!(check_creds(&me, &wheel).is_err());
        let caps = Creds { cap_eff: 1 << 21, cap_prm: 1 << 21, ..mine.clone() };
        assert!(check_creds(&me, &caps).unwrap_err().contains("capabilities"));
        let amb = Creds { cap_amb: 1, ..mine.clone() };
        assert!(check_creds(&me, &amb).is_err());
        let bnd = Creds { cap_bnd: !0, ..mine };
        assert!(check_creds(&me, &bnd).unwrap_err().contains("bounding"));
    }

    #[test]
    fn root_may_restore_any_ids_but_not_capabilities_it_lacks() {
        let root = Caller { cap_eff: (1 << 41) - 1, cap_bnd: (1 << 41) - 1, ..user(0) };
        let other =
            Creds { uid: 5, euid: 6, suid: 7, fsuid: 8, gid: 9, groups: vec![1, 2], cap_bnd: 1, ..Default::default() };
        assert_eq!(check_creds(&root, &other), Ok(()));
        let no_sys_admin = Caller { cap_eff: root.cap_eff & !(1 << 21), ..root.clone() };
        let admin = Creds { cap_eff: 1 << 21, ..other };
        assert!(check_creds(&no_sys_admin, &admin).is_err());
    }

    fn task(pid: u32, vmas: Vec<(u64, u64)>, pages: Vec<(u64, u32)>) -> TaskImages {
        use crate::image::core::{CoreEntry, ProcessCore};
        use crate::image::mm::Vma;
        use crate::image::pagemap::PagemapEntry;
        TaskImages {
            pstree: crate::image::pstree::PstreeEntry { pid, threads: vec![pid], ..Default::default() },
            cores: vec![CoreEntry { tid: pid, thread: Default::default(), process: Some(ProcessCore::default()) }],
            mm: Default::default(),
            vmas: vmas.into_iter().map(|(start, end)| Vma { start, end, ..Default::default() }).collect(),
            pagemap_head: Default::default(),
            pagemap: pages
                .into_iter()
                .map(|(vaddr, nr_pages)| PagemapEntry { vaddr, nr_pages, ..Default::default() })
                .collect(),
            fds: Vec::new(),
        }
    }

    #[test]
    fn absurd_pids_vmas_and_page_ranges_are_refused() {
        let root = Caller { cap_eff: !0, cap_bnd: !0, ..user(0) };
        let ts = 0x7fff_ffff_f000;
        let ok = |t: TaskImages| check_tasks_as(&[t], ts, &root, 4_194_304).map_err(|e| e.to_string());
        assert!(ok(task(100, vec![(0x1000, 0x3000)], vec![(0x1000, 2)])).is_ok());
        assert!(ok(task(100, vec![(0x1000, 0x3000), (0x3000, 0x5000)], vec![(0x2000, 3)])).is_ok());
        assert!(ok(task(100, vec![(0x1000, 0x3000), (0x4000, 0x5000)], vec![(0x2000, 3)])).is_err());
        assert!(ok(task(0, vec![], vec![])).unwrap_err().contains("outside"));
        assert!(ok(task(5_000_000, vec![], vec![])).unwrap_err().contains("pid_max"));
        assert!(ok(task(100, vec![(0x1000, ts + 0x1000)], vec![])).unwrap_err().contains("valid user range"));
        assert!(ok(task(100, vec![(0x1001, 0x3000)], vec![])).is_err());
        assert!(ok(task(100, vec![(0x3000, 0x3000)], vec![])).is_err());
        assert!(ok(task(100, vec![(0x1000, 0x3000), (0x2000, 0x4000)], vec![])).unwrap_err().contains("overlaps"));
        assert!(ok(task(100, vec![(0x1000, 0x3000)], vec![(0x1000, 3)])).unwrap_err().contains("outside every VMA"));
        assert!(ok(task(100, vec![(0x1000, 0x3000)], vec![(!0xfff, u32::MAX)])).is_err());
        let dup = [task(100, vec![], vec![]), task(100, vec![], vec![])];
        assert!(check_tasks_as(&dup, ts, &root, 1 << 22).unwrap_err().to_string().contains("twice"));
        // Root images, a non-root caller.
        let me = user(1000);
        let err = check_tasks_as(&[task(100, vec![], vec![])], ts, &me, 1 << 22).unwrap_err().to_string();
        assert!(err.contains("uid 0"), "{err}");
    }

    #[test]
    fn caller_parses_proc_status() {
        let c = Caller::parse(
            "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t10\t11\t12\t13\nGroups:\t4 24 \nCapEff:\t0000000000000080\nCapBnd:\t000001ffffffffff\n",
        );
        assert_eq!(c.uids, [1000, 1001, 1002]);
        assert_eq!(c.gids, [10, 11, 12]);
        assert_eq!(c.groups, vec![4, 24]);
        assert!(c.has(CAP_SETUID));
        assert_eq!(c.cap_bnd, 0x1ff_ffff_ffff);
    }
}
