//! cgroup membership: every process goes back into the cgroup it was in,
//! in cgroup v2 and in each mounted v1 hierarchy.
//!
//! Dump records the leader's `/proc/<pid>/cgroup`; a thread in another
//! cgroup than its process (threaded cgroups) is refused by name.
//!
//! Restore writes each new process into `cgroup.procs` of its cgroup, found
//! under the hierarchy's mount in crtools' mountinfo, at the process's
//! first stop: before it forks its children (they inherit it) and before
//! its restorer maps any memory (charged to the right cgroup). A
//! hierarchy already right (it inherited crtools' own) is left alone. A
//! cgroup that no longer exists fails the restore by name: creating
//! cgroups with their settings is containers work, not done here.
//!
//! Paths are relative to the cgroup namespace root, which is crtools' own
//! (tasks in another cgroup namespace are refused, see [`super::ns`]).
use crate::error::{Context, Error, Result};
use crate::image::core::Cgroup;
use crate::image::RawStr;
use crate::proc;
use crate::proc::cgroup::CgroupLine;
use crate::proc::mountinfo::Mount;
use crate::sys::Pid;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn name(controllers: &str) -> String {
    if controllers.is_empty() {
        "cgroup v2".into()
    } else {
        format!("cgroup v1 hierarchy {controllers}")
    }
}

/// The cgroups of process `pid`; every thread in `tids` must share them.
pub fn dump(pid: Pid, tids: &[Pid]) -> Result<Vec<Cgroup>> {
    let lines = proc::cgroup::read(pid).ctx(pid, "read its cgroups")?;
    for &tid in tids.iter().filter(|&&t| t != pid) {
        let theirs = proc::cgroup::read_thread(pid, tid).ctx(pid, &format!("read the cgroups of thread {tid}"))?;
        if let Some(t) = theirs.iter().find(|t| !lines.contains(t)) {
            let own = lines.iter().find(|l| same_hierarchy(l, &t.controllers));
            return Err(Error::refuse(
                pid,
                format!(
                    "thread {tid} is in cgroup {} of {}, its process in {}: threads in other cgroups than \
                     their process (threaded cgroups) are not restored yet",
                    t.path.display(),
                    name(&t.controllers),
                    own.map_or_else(|| "none".to_string(), |o| o.path.display().to_string())
                ),
            ));
        }
    }
    Ok(lines
        .into_iter()
        .map(|l| Cgroup {
            hierarchy: l.hierarchy,
            controllers: l.controllers,
            path: RawStr(l.path.as_os_str().as_bytes().to_vec()),
        })
        .collect())
}

/// The same hierarchy: v2 with v2, v1 by its set of controllers.
fn same_hierarchy(line: &CgroupLine, controllers: &str) -> bool {
    let set = |s: &str| {
        let mut v: Vec<String> = s.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect();
        v.sort();
        v
    };
    if controllers.is_empty() {
        return line.is_v2();
    }
    !line.is_v2() && set(&line.controllers) == set(controllers)
}

/// crtools' cgroup mounts (read once per restore).
#[derive(Debug, Default)]
pub struct Mounts(Vec<Mount>);

impl Mounts {
    /// Reads crtools' own mountinfo.
    pub fn read() -> Result<Mounts> {
        let me = Pid(std::process::id() as i32);
        let all = proc::mountinfo::read(me).ctx_global("read mountinfo")?;
        Ok(Mounts::from_list(all))
    }

    /// Keeps the cgroup mounts of `all`.
    pub fn from_list(all: Vec<Mount>) -> Mounts {
        Mounts(all.into_iter().filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2").collect())
    }

    /// The directory of cgroup `path` of the hierarchy with `controllers`,
    /// under the first mount of that hierarchy that shows it.
    pub fn dir_of(&self, controllers: &str, path: &Path) -> Option<PathBuf> {
        self.0.iter().find_map(|m| {
            let fits = if controllers.is_empty() {
                m.fstype == "cgroup2"
            } else {
                m.fstype == "cgroup" && controllers.split(',').all(|c| m.super_option_list().any(|o| o == c))
            };
            let rel = path.strip_prefix(&m.root).ok()?;
            fits.then(|| m.mount_point.join(rel))
        })
    }
}

/// Puts process `pid` (just created, stopped) into the cgroups `want`.
pub fn restore(pid: Pid, want: &[Cgroup], mounts: &Mounts) -> Result<()> {
    if want.is_empty() {
        return Ok(());
    }
    let now = proc::cgroup::read(pid).ctx(pid, "read its cgroups")?;
    for c in want {
        let path = Path::new(std::ffi::OsStr::from_bytes(c.path.as_bytes()));
        let what = || format!("cgroup {} of {}", path.display(), name(&c.controllers));
        let Some(cur) = now.iter().find(|l| same_hierarchy(l, &c.controllers)) else {
            return Err(Error::task(pid, format!("{}: this hierarchy does not exist here", what())));
        };
        if cur.path == path {
            continue;
        }
        let dir = mounts
            .dir_of(&c.controllers, path)
            .ok_or_else(|| Error::task(pid, format!("{}: the hierarchy is not mounted here", what())))?;
        if !dir.is_dir() {
            return Err(Error::refuse(
                pid,
                format!("{} no longer exists ({}): creating cgroups is not supported yet", what(), dir.display()),
            ));
        }
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.0.to_string())
            .map_err(|e| Error::task(pid, format!("move into {}: write {}: {e}", what(), procs.display())))?;
        log::debug!(task = pid.0; "task {pid}: moved into {}", what());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Mounts {
        Mounts::from_list(proc::mountinfo::parse(include_str!("../proc/testdata/mountinfo.hybrid")).unwrap())
    }

    #[test]
    fn cgroup_dirs_in_a_hybrid_layout() {
        let m = mounts();
        assert_eq!(m.0.len(), 10);
        assert_eq!(m.dir_of("", Path::new("/a/b")), Some(PathBuf::from("/sys/fs/cgroup/unified/a/b")));
        assert_eq!(m.dir_of("memory", Path::new("/x")), Some(PathBuf::from("/sys/fs/cgroup/memory/x")));
        assert_eq!(m.dir_of("name=systemd", Path::new("/")), Some(PathBuf::from("/sys/fs/cgroup/systemd")));
        assert_eq!(m.dir_of("cpu,cpuacct", Path::new("/")), None);
        assert_eq!(m.dir_of("rdma", Path::new("/")), None);
    }

    #[test]
    fn hierarchies_match_by_controllers() {
        let l = proc::cgroup::parse(b"2:cpuacct,cpu:/a\n0::/b\n").unwrap();
        assert!(same_hierarchy(&l[0], "cpu,cpuacct"));
        assert!(!same_hierarchy(&l[0], "cpu"));
        assert!(!same_hierarchy(&l[0], ""));
        assert!(same_hierarchy(&l[1], ""));
        assert!(!same_hierarchy(&l[1], "memory"));
    }

    #[test]
    fn own_cgroups_round_trip() {
        let me = Pid(std::process::id() as i32);
        let c = dump(me, &[me]).unwrap();
        assert!(!c.is_empty());
        // Already where it should be: nothing to write.
        restore(me, &c, &Mounts::default()).unwrap();
        let gone = Cgroup { path: RawStr::from("/crtools-no-such-cgroup"), ..c[0].clone() };
        let e = restore(me, &[gone], &mounts()).unwrap_err().to_string();
        assert!(e.contains("/crtools-no-such-cgroup"), "{e}");
    }
}
