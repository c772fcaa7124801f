//! The VM artifacts: a kernel, its initrd and a qcow2 base image, built from Debian
//! packages without installing anything on the host and without mounting anything:
//! debootstrap makes a tree with the container recipe's packages plus the cloud kernel
//! (initramfs-tools builds the initrd inside the tree), the kernel and initrd are copied out
//! of its /boot, `mkfs.ext4 -d` turns the tree into a raw file system and `qemu-img convert`
//! into the base image. The directory holds a manifest and is built once, reused while its
//! recipe is current, and replaced atomically (built beside it, then renamed).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::guest::{prepare_tree, ROOT_LABEL};
use super::tools::{io, run, ArtifactError};
use crate::image::{find_apt_mirror_in, DEBIAN12_PACKAGES, DEBIAN12_SUITE};

/// Bump when anything that goes into the artifacts changes: a directory with another
/// recipe is rebuilt.
pub const VM_RECIPE: &str = "debian-12-vm/4";

/// Packages added to the container recipe's: the kernel (its dependencies bring
/// initramfs-tools, which makes the initrd) and udev (the guest has real devices; the seed
/// disk is found by label).
pub const VM_EXTRA_PACKAGES: &[&str] = &["linux-image-cloud-amd64", "udev"];

const MANIFEST: &str = "manifest.json";
const KERNEL: &str = "vmlinuz";
const INITRD: &str = "initrd.img";
const BASE: &str = "base.qcow2";
const MIB: u64 = 1024 * 1024;

/// The artifacts' description, `manifest.json` in their directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`VM_RECIPE`] when built.
    pub recipe: String,
    /// The kernel's release (`uname -r` in the guest).
    pub kernel_version: String,
    /// Size of the kernel file in bytes.
    pub kernel_bytes: u64,
    /// Size of the initrd file in bytes.
    pub initrd_bytes: u64,
    /// The base image's virtual disk size in bytes (the smallest a VM disk can be).
    pub base_virtual_bytes: u64,
    /// The base image's file size in bytes.
    pub base_file_bytes: u64,
    /// Unique per build (empty in manifests written before it existed): a VM's disk is an
    /// overlay of exactly this build's base image.
    #[serde(default)]
    pub build_id: String,
}

impl Manifest {
    /// What a VM's disk overlay depends on: another build of the base, even of the same recipe
    /// and size, holds other blocks, and an overlay over it reads garbage.
    pub fn base_identity(&self) -> String {
        format!("{} {} {} {}", self.recipe, self.build_id, self.base_file_bytes, self.base_virtual_bytes)
    }
}

/// Built artifacts and where they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    /// The directory.
    pub dir: PathBuf,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: PathBuf,
    /// The qcow2 base image (never written: VMs get overlays).
    pub base: PathBuf,
    /// What the manifest says.
    pub manifest: Manifest,
}

/// Where and how to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactOptions {
    /// The artifacts directory (its parent must exist; the build happens beside it).
    pub dir: PathBuf,
    /// The Debian mirror URL; `None` reads it from the host's apt configuration.
    pub mirror: Option<String>,
    /// Rebuild even when the directory is current.
    pub force: bool,
}

impl Artifacts {
    /// The artifacts in `dir` if they are complete and of the current recipe.
    pub fn current(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
        let manifest: Manifest = serde_json::from_str(&text).ok()?;
        let size = |name: &str| std::fs::metadata(dir.join(name)).ok().map(|m| m.len());
        let complete = manifest.recipe == VM_RECIPE
            && size(KERNEL) == Some(manifest.kernel_bytes)
            && size(INITRD) == Some(manifest.initrd_bytes)
            && size(BASE) == Some(manifest.base_file_bytes);
        complete.then(|| Self {
            dir: dir.to_owned(),
            kernel: dir.join(KERNEL),
            initrd: dir.join(INITRD),
            base: dir.join(BASE),
            manifest,
        })
    }
}

/// Returns the current artifacts in `opts.dir`, building them first if they are missing,
/// incomplete or of an older recipe (a few minutes: debootstrap). Needs root.
pub async fn ensure_artifacts(opts: &ArtifactOptions) -> Result<Artifacts, ArtifactError> {
    if !opts.force {
        if let Some(current) = Artifacts::current(&opts.dir) {
            return Ok(current);
        }
    }
    let mirror = match &opts.mirror {
        Some(m) => m.clone(),
        None => find_apt_mirror_in(Path::new("/etc/apt"), DEBIAN12_SUITE)
            .ok_or(ArtifactError::MirrorNotFound { suite: DEBIAN12_SUITE })?,
    };
    if !usable_mirror(&mirror) {
        return Err(ArtifactError::InvalidMirror(mirror));
    }
    let parent = match opts.dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io("create", &parent))?;
    remove_stale_builds(&parent);
    // Beside the target so that the final rename stays on one file system.
    let scratch = tempfile::Builder::new()
        .prefix(".flvpc-vm-build-")
        .tempdir_in(&parent)
        .map_err(io("create a directory in", &parent))?;
    let tree = scratch.path().join("tree");
    let out = scratch.path().join("out");
    std::fs::create_dir(&out).map_err(io("create", &out))?;
    debootstrap(&tree, &mirror).await?;
    let manifest = pack(&tree, &out).await?;
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| ArtifactError::Layout(e.to_string()))?;
    let manifest_path = out.join(MANIFEST);
    std::fs::write(&manifest_path, json + "\n").map_err(io("write", &manifest_path))?;
    if opts.dir.exists() {
        let old = scratch.path().join("old");
        std::fs::rename(&opts.dir, &old).map_err(io("move away", &opts.dir))?;
    }
    std::fs::rename(&out, &opts.dir).map_err(io("move into place", &opts.dir))?;
    // The scratch directory (tree and any old artifacts) is removed when dropped.
    Artifacts::current(&opts.dir)
        .ok_or_else(|| ArtifactError::Layout(format!("{} is incomplete right after its build", opts.dir.display())))
}

/// A build's scratch directory is removed when the build ends, but not when its process is
/// killed; such a leftover holds a whole Debian tree. A build takes minutes: one untouched
/// for a day is dead. (Best effort: a leftover that cannot be removed costs only space.)
fn remove_stale_builds(parent: &Path) {
    const STALE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let is_build = entry.file_name().to_str().is_some_and(|n| n.starts_with(".flvpc-vm-build-"));
        let age = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
        if is_build && age.is_some_and(|a| a > STALE) {
            let path = entry.path();
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!("cannot remove the abandoned VM build {}: {e}", path.display());
            }
        }
    }
}

fn usable_mirror(uri: &str) -> bool {
    ["http://", "https://", "file:/"].iter().any(|p| uri.starts_with(p))
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn debootstrap_args(tree: &Path, mirror: &str) -> Vec<std::ffi::OsString> {
    let packages: Vec<&str> = DEBIAN12_PACKAGES.iter().chain(VM_EXTRA_PACKAGES).copied().collect();
    vec![
        "--variant=minbase".into(),
        format!("--include={}", packages.join(",")).into(),
        DEBIAN12_SUITE.into(),
        tree.as_os_str().to_owned(),
        mirror.into(),
    ]
}

async fn debootstrap(tree: &Path, mirror: &str) -> Result<(), ArtifactError> {
    run("debootstrap", "debootstrap", debootstrap_args(tree, mirror)).await.map(drop)
}

/// Copies the kernel and initrd out of `tree`, prepares the tree as a VM root and makes
/// the base image in `out`.
pub async fn pack(tree: &Path, out: &Path) -> Result<Manifest, ArtifactError> {
    let boot = tree.join("boot");
    let kernel_version = kernel_version(&boot)?;
    let initrd_src = boot.join(format!("initrd.img-{kernel_version}"));
    if !initrd_src.is_file() {
        return Err(ArtifactError::Layout(format!(
            "{} is missing: initramfs-tools did not run in the tree (is it in the kernel's dependencies?)",
            initrd_src.display()
        )));
    }
    let kernel_bytes = copy(&boot.join(format!("vmlinuz-{kernel_version}")), &out.join(KERNEL))?;
    let initrd_bytes = copy(&initrd_src, &out.join(INITRD))?;
    prepare_tree(tree).await?;

    let used = run("du", "coreutils", [std::ffi::OsStr::new("-s"), "-B1".as_ref(), "-x".as_ref(), tree.as_os_str()])
        .await?
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| ArtifactError::Layout(format!("du printed no size for {}", tree.display())))?;
    let base_virtual_bytes = base_size(used);
    let raw = out.join("root.raw");
    let mut mkfs: Vec<std::ffi::OsString> =
        vec!["-q".into(), "-F".into(), "-t".into(), "ext4".into(), "-L".into(), ROOT_LABEL.into(), "-d".into()];
    mkfs.push(tree.as_os_str().to_owned());
    mkfs.push(raw.as_os_str().to_owned());
    mkfs.push(format!("{}k", base_virtual_bytes / 1024).into());
    run("mkfs.ext4", "e2fsprogs", &mkfs).await?;
    let base = out.join(BASE);
    run(
        "qemu-img",
        "qemu-utils",
        [
            "convert".as_ref(),
            "-f".as_ref(),
            "raw".as_ref(),
            "-O".as_ref(),
            "qcow2".as_ref(),
            raw.as_os_str(),
            base.as_os_str(),
        ],
    )
    .await?;
    std::fs::remove_file(&raw).map_err(io("remove", &raw))?;
    let base_file_bytes = std::fs::metadata(&base).map_err(io("read", &base))?.len();
    Ok(Manifest {
        recipe: VM_RECIPE.to_owned(),
        kernel_version,
        kernel_bytes,
        initrd_bytes,
        base_virtual_bytes,
        base_file_bytes,
        build_id: build_id(),
    })
}

/// A build's identity: the time in nanoseconds and the builder's PID (two builds of one host
/// never share both).
fn build_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:x}-{:x}", std::process::id())
}

/// The one kernel release installed in `boot` (`vmlinuz-RELEASE`).
fn kernel_version(boot: &Path) -> Result<String, ArtifactError> {
    let mut versions: Vec<String> = std::fs::read_dir(boot)
        .map_err(io("read", boot))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_owned))
        .collect();
    match versions.len() {
        1 => Ok(versions.remove(0)),
        0 => Err(ArtifactError::Layout(format!(
            "no vmlinuz-* in {}: the kernel package was not installed",
            boot.display()
        ))),
        _ => Err(ArtifactError::Layout(format!("several kernels in {}: {versions:?}", boot.display()))),
    }
}

/// The base file system's size: the tree plus a quarter and 256 MiB of room (journal,
/// inode tables, first-boot files), in whole MiB. VM disks are at least this large; the
/// guest grows the file system to its disk at boot.
fn base_size(used: u64) -> u64 {
    (used + used / 4 + 256 * MIB).div_ceil(MIB) * MIB
}

fn copy(from: &Path, to: &Path) -> Result<u64, ArtifactError> {
    std::fs::copy(from, to).map_err(io("copy", from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_size_leaves_room_in_whole_mib() {
        assert_eq!(base_size(0), 256 * MIB);
        assert_eq!(base_size(400 * MIB), 756 * MIB);
        assert_eq!(base_size(1) % MIB, 0);
    }

    #[test]
    fn debootstrap_gets_the_container_packages_and_the_kernel() {
        let args = debootstrap_args(Path::new("/t"), "http://mirror.invalid/debian");
        let include = args[1].to_str().expect("utf-8");
        assert!(include.contains("openssh-server") && include.contains("linux-image-cloud-amd64"));
        assert_eq!(args[2], "bookworm");
        assert!(
            usable_mirror("http://mirror.invalid/debian") && !usable_mirror("ftp://x") && !usable_mirror("http://a b")
        );
    }

    #[test]
    fn a_directory_without_a_current_manifest_is_not_current() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Artifacts::current(dir.path()), None);
        let m = Manifest {
            recipe: "debian-12-vm/0".into(),
            kernel_version: "6.1".into(),
            kernel_bytes: 1,
            initrd_bytes: 1,
            base_virtual_bytes: 1,
            base_file_bytes: 1,
            build_id: "b1".into(),
        };
        for name in [KERNEL, INITRD, BASE] {
            std::fs::write(dir.path().join(name), "x").expect("write");
        }
        std::fs::write(dir.path().join(MANIFEST), serde_json::to_string(&m).expect("json")).expect("write");
        assert_eq!(Artifacts::current(dir.path()), None, "old recipe");
        let m = Manifest { recipe: VM_RECIPE.into(), ..m };
        std::fs::write(dir.path().join(MANIFEST), serde_json::to_string(&m).expect("json")).expect("write");
        assert_eq!(Artifacts::current(dir.path()).map(|a| a.manifest), Some(m.clone()));
        let rebuilt = Manifest { build_id: "b2".into(), ..m.clone() };
        assert_ne!(rebuilt.base_identity(), m.base_identity(), "another build is another base");
        let old: Manifest = serde_json::from_str(
            r#"{"recipe":"r","kernel_version":"k","kernel_bytes":1,
            "initrd_bytes":1,"base_virtual_bytes":1,"base_file_bytes":1}"#,
        )
        .expect("a manifest written before build ids");
        assert_eq!(old.build_id, "");
    }
}
