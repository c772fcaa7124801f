//! The build's scratch directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{io_err, ImageError};

/// A scratch directory that is removed when done, after unmounting anything debootstrap
/// may have left mounted inside it (it mounts /proc and /sys in the target while it runs,
/// and a killed debootstrap cannot unmount them). Never deletes through a mount point.
pub(super) struct ScratchDir {
    path: Option<PathBuf>,
}

impl ScratchDir {
    pub(super) fn new(parent: &Path) -> Result<Self, ImageError> {
        let dir = tempfile::Builder::new()
            .prefix("flvpc-rootfs-")
            .tempdir_in(parent)
            .map_err(io_err("create a directory in", parent))?;
        Ok(Self { path: Some(dir.keep()) })
    }

    pub(super) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    pub(super) fn cleanup(&mut self) {
        let Some(path) = self.path.take() else { return };
        if !unmount_below(&path) {
            tracing::error!(path = %path.display(), "file systems still mounted below the build directory: leaving it in place");
            return;
        }
        if let Err(e) = fs::remove_dir_all(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove the build directory");
            }
        }
    }
}

impl Drop for ScratchDir {
    /// Only reached on error paths (success cleans up off the async workers first), where
    /// briefly blocking is better than leaving hundreds of MB behind.
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo, whose paths
/// escape spaces and the like as octal `\040`).
fn mounts_below(dir: &Path, mountinfo: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn unescape_mount_path(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts (lazily) whatever is mounted below `dir`; true when nothing is left mounted.
/// Runs from `Drop`, hence the blocking `std::process::Command` (argv, no shell).
fn unmount_below(dir: &Path) -> bool {
    let read = || fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in mounts_below(dir, &read()) {
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(&mount)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    mounts_below(dir, &read()).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 0:5 / /tmp/flvpc-rootfs-x/proc rw - proc proc rw
41 40 0:6 / /tmp/flvpc-rootfs-x/proc/sys/fs/binfmt_misc rw - binfmt_misc x rw
42 22 0:7 / /tmp/flvpc-rootfs-x\\040y/sys rw - sysfs sysfs rw
43 22 0:8 / /tmp/flvpc-rootfs-xy rw - tmpfs t rw
";
        let found = mounts_below(Path::new("/tmp/flvpc-rootfs-x"), info);
        assert_eq!(
            found,
            vec![
                PathBuf::from("/tmp/flvpc-rootfs-x/proc/sys/fs/binfmt_misc"),
                PathBuf::from("/tmp/flvpc-rootfs-x/proc")
            ]
        );
        let spaced = mounts_below(Path::new("/tmp/flvpc-rootfs-x y"), info);
        assert_eq!(spaced, vec![PathBuf::from("/tmp/flvpc-rootfs-x y/sys")]);
    }
}
