//! How a machine container sees the host's cgroups, so that root in a machine cannot
//! touch anything of the host or of another machine through them.
//!
//! systemd as PID 1 needs `/sys/fs/cgroup` mounted, and on a cgroup v1 (hybrid) host it needs
//! to write its own part of the `name=systemd` and `unified` hierarchies. The footloose recipe
//! (one read-only bind of `/sys/fs/cgroup`) makes only the top tmpfs read-only: every controller
//! mounted below it stays writable, so root in the machine could leave its memory limit, freeze
//! another tenant or open host block devices through the `devices` controller.
//!
//! What flvpc does instead, per machine (verified on Docker 20.10, cgroup v1, kernel 6.x):
//! - the container's cgroups live under a parent of its own, `/flvpc/<m>`, where `<m>` is an
//!   opaque digest of the machine's key (other tenants' names are not spelled out in the
//!   hierarchy that every machine can read);
//! - the whole tree is bound read-only, and each cgroup mount below it again read-only (a bind
//!   of the top does not cover the mounts below it);
//! - only the machine's own parent in the two hierarchies systemd manages (`name=systemd` and
//!   the cgroup v2 `unified` one) is bound read-write: systemd can make its slices and scopes
//!   there and nowhere else. The resource controllers (memory, cpu, pids, devices, freezer, …)
//!   stay read-only everywhere, so the limits Docker set are the limits.
//!
//! On a pure cgroup v2 host, Docker gives each container a private cgroup namespace and mounts
//! only the container's own cgroup; flvpc then adds no binds of its own.

use flvpc_model::MachineKey;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The cgroup hierarchy root on Linux.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The directory, in every hierarchy, that holds flvpc's machine parents.
const FLVPC_DIR: &str = "flvpc";

/// Most cgroups the machine's systemd may create in its delegated `unified` subtree: systemd
/// needs a few dozen; the cap keeps a tenant from making the kernel hold millions.
const MAX_DESCENDANTS: u32 = 4096;

/// How the host mounts its cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1 or hybrid: one mount per hierarchy below `/sys/fs/cgroup`.
    V1 {
        /// The mount points of every cgroup hierarchy below the root.
        mounts: Vec<CgroupMount>,
    },
    /// Pure cgroup v2: `/sys/fs/cgroup` is the unified hierarchy; Docker namespaces it.
    V2,
}

/// One cgroup hierarchy mounted below `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted (e.g. `/sys/fs/cgroup/memory`).
    pub path: PathBuf,
    /// Whether the machine's systemd manages its own part of it: the named `systemd`
    /// hierarchy and the cgroup v2 one of a hybrid host. Resource controllers are never.
    pub delegated: bool,
}

impl CgroupLayout {
    /// Reads the layout from this process's mount table. A host without cgroups mounted
    /// where expected gives an empty v1 layout (no binds but the read-only top).
    pub fn detect() -> Self {
        match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => Self::from_mountinfo(&text),
            Err(err) => {
                tracing::warn!("cannot read /proc/self/mountinfo ({err}): assuming cgroup v1 without controllers");
                CgroupLayout::V1 { mounts: Vec::new() }
            }
        }
    }

    /// Parses `/proc/self/mountinfo` (see proc(5)): field 5 is the mount point, the field after
    /// the `-` separator the file system type, the last one the super options.
    pub fn from_mountinfo(text: &str) -> Self {
        let root = Path::new(CGROUP_ROOT);
        let mut mounts = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
            let (Some(point), Some(fstype), Some(options)) = (fields.get(4), fields.get(sep + 1), fields.last()) else {
                continue;
            };
            let point = Path::new(point);
            let cgroup = *fstype == "cgroup" || *fstype == "cgroup2";
            if point == root && *fstype == "cgroup2" {
                return CgroupLayout::V2;
            }
            if !cgroup || point.parent() != Some(root) {
                continue;
            }
            let delegated = *fstype == "cgroup2" || options.split(',').any(|o| o == "name=systemd");
            if !mounts.iter().any(|m: &CgroupMount| m.path == point) {
                mounts.push(CgroupMount { path: point.to_owned(), delegated });
            }
        }
        mounts.sort_by(|a, b| a.path.cmp(&b.path));
        CgroupLayout::V1 { mounts }
    }

    /// The machine's cgroup parent, as Docker's `CgroupParent` takes it.
    pub fn parent(&self, key: &MachineKey) -> Option<String> {
        match self {
            CgroupLayout::V1 { .. } => Some(format!("/{FLVPC_DIR}/{}", machine_dir(key))),
            CgroupLayout::V2 => None,
        }
    }

    /// The bind mounts (`host:container:mode`) that give the machine its view of the cgroups.
    /// Docker mounts them parents first, so the read-write subtrees land on the read-only tree.
    pub fn binds(&self, key: &MachineKey) -> Vec<String> {
        let CgroupLayout::V1 { mounts } = self else { return Vec::new() };
        let mut binds = vec![format!("{CGROUP_ROOT}:{CGROUP_ROOT}:ro")];
        for mount in mounts {
            let path = mount.path.display();
            binds.push(format!("{path}:{path}:ro"));
        }
        for mount in mounts.iter().filter(|m| m.delegated) {
            let own = own_dir(&mount.path, key);
            let own = own.display();
            binds.push(format!("{own}:{own}:rw"));
        }
        binds
    }

    /// Makes the machine's delegated subtrees (they must exist before the container starts) and
    /// caps how many cgroups the machine may make in them. Idempotent.
    pub fn prepare(&self, key: &MachineKey) -> std::io::Result<()> {
        let CgroupLayout::V1 { mounts } = self else { return Ok(()) };
        for mount in mounts.iter().filter(|m| m.delegated) {
            let own = own_dir(&mount.path, key);
            std::fs::create_dir_all(&own)?;
            let cap = own.join("cgroup.max.descendants");
            if cap.exists() {
                std::fs::write(&cap, MAX_DESCENDANTS.to_string())?;
            }
        }
        Ok(())
    }

    /// Removes what is left of the machine's cgroups in every hierarchy once its container is
    /// gone (the engine removes the container's own cgroup, not the parent flvpc asked for).
    /// Only empty cgroups can be removed, so a cgroup still in use is left alone. Returns
    /// whether nothing is left. Right after a container is removed, its bind mounts of the
    /// delegated subtrees may still exist for a moment (the kernel answers EBUSY), so callers
    /// retry briefly (see [`Self::cleanup_soon`]).
    pub fn cleanup(&self, key: &MachineKey) -> bool {
        let CgroupLayout::V1 { mounts } = self else { return true };
        let mut clean = true;
        for mount in mounts {
            let own = own_dir(&mount.path, key);
            if own.is_dir() {
                remove_empty_tree(&own, 0);
                clean &= !own.exists();
            }
        }
        clean
    }

    /// [`Self::cleanup`] now and, while something is left, again every 100 ms for up to 10 s
    /// in the background.
    pub fn cleanup_soon(self: &std::sync::Arc<Self>, key: &MachineKey) {
        if self.cleanup(key) {
            return;
        }
        let (layout, key) = (self.clone(), key.clone());
        tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if layout.cleanup(&key) {
                    return;
                }
            }
            tracing::warn!("the cgroups of {key} could not be removed (still in use?)");
        });
    }
}

/// `<root>/flvpc/<m>`: the machine's parent in one hierarchy.
fn own_dir(mount: &Path, key: &MachineKey) -> PathBuf {
    mount.join(FLVPC_DIR).join(machine_dir(key))
}

/// The machine's directory name: a digest of its key, so that names are not readable by the
/// other machines (which can list the hierarchy), and always a valid cgroup name.
pub fn machine_dir(key: &MachineKey) -> String {
    let digest = Sha256::digest(key.object_name().as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("m-{hex}")
}

/// Removes a cgroup directory and the cgroups below it, deepest first (cgroup directories are
/// removed with rmdir; their files are not real files). Depth-bounded.
fn remove_empty_tree(dir: &Path, depth: usize) {
    if depth < 16 {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.filter_map(Result::ok) {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_empty_tree(&entry.path(), depth + 1);
                }
            }
        }
    }
    if let Err(err) = std::fs::remove_dir(dir) {
        tracing::debug!("cannot remove cgroup {}: {err}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 24 0:26 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
33 31 0:28 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
34 31 0:29 / /sys/fs/cgroup/devices rw,relatime shared:12 - cgroup cgroup rw,devices
35 31 0:30 / /sys/fs/cgroup/systemd rw,relatime shared:13 - cgroup cgroup rw,name=systemd
36 31 0:31 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw
";

    fn key() -> MachineKey {
        MachineKey::parse("team1", "node0").expect("key")
    }

    #[test]
    fn a_hybrid_host_gets_read_only_controllers_and_its_own_systemd_subtrees() {
        let layout = CgroupLayout::from_mountinfo(HYBRID);
        let dir = machine_dir(&key());
        assert_eq!(layout.parent(&key()), Some(format!("/flvpc/{dir}")));
        assert_eq!(
            layout.binds(&key()),
            vec![
                "/sys/fs/cgroup:/sys/fs/cgroup:ro".to_owned(),
                "/sys/fs/cgroup/cpu:/sys/fs/cgroup/cpu:ro".to_owned(),
                "/sys/fs/cgroup/devices:/sys/fs/cgroup/devices:ro".to_owned(),
                "/sys/fs/cgroup/memory:/sys/fs/cgroup/memory:ro".to_owned(),
                "/sys/fs/cgroup/systemd:/sys/fs/cgroup/systemd:ro".to_owned(),
                "/sys/fs/cgroup/unified:/sys/fs/cgroup/unified:ro".to_owned(),
                format!("/sys/fs/cgroup/systemd/flvpc/{dir}:/sys/fs/cgroup/systemd/flvpc/{dir}:rw"),
                format!("/sys/fs/cgroup/unified/flvpc/{dir}:/sys/fs/cgroup/unified/flvpc/{dir}:rw"),
            ]
        );
    }

    #[test]
    fn no_resource_controller_is_ever_writable() {
        let layout = CgroupLayout::from_mountinfo(HYBRID);
        for bind in layout.binds(&key()) {
            if bind.ends_with(":rw") {
                assert!(
                    bind.starts_with("/sys/fs/cgroup/systemd/flvpc/")
                        || bind.starts_with("/sys/fs/cgroup/unified/flvpc/"),
                    "{bind}"
                );
            }
        }
    }

    #[test]
    fn a_pure_v2_host_adds_nothing() {
        let text = "31 24 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        let layout = CgroupLayout::from_mountinfo(text);
        assert_eq!(layout, CgroupLayout::V2);
        assert!(layout.binds(&key()).is_empty());
        assert_eq!(layout.parent(&key()), None);
    }

    #[test]
    fn machine_dirs_are_opaque_and_distinct() {
        let a = machine_dir(&MachineKey::parse("sx", "b-node0").expect("key"));
        let b = machine_dir(&MachineKey::parse("sx-b", "node0").expect("key"));
        assert_ne!(a, b);
        assert!(!a.contains("sx") && a.starts_with("m-") && a.len() == 22, "{a}");
    }
}
