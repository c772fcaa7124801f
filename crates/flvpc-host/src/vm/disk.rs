//! Per-VM disks: a qcow2 overlay of the shared base image (writes stay in the VM's file,
//! its virtual size is the VM's disk limit) and a small read-only seed disk carrying the
//! VM's host name and root's authorized_keys as plain files.

use std::path::{Path, PathBuf};

use super::artifacts::Artifacts;
use super::guest::SEED_LABEL;
use super::tools::{io, run, ArtifactError};

/// Creates `disk`, a qcow2 overlay of `artifacts.base` of `size_bytes` (at least the base's
/// size, at most 16 TiB). The base is referenced by absolute path.
pub async fn create_overlay(artifacts: &Artifacts, disk: &Path, size_bytes: u64) -> Result<(), ArtifactError> {
    let min = artifacts.manifest.base_virtual_bytes;
    if size_bytes < min || size_bytes > 16 << 40 {
        return Err(ArtifactError::Invalid(format!(
            "a VM disk must be between {} MiB (the base image) and 16 TiB; {size_bytes} bytes asked",
            min.div_ceil(1 << 20)
        )));
    }
    let base = std::fs::canonicalize(&artifacts.base).map_err(io("find", &artifacts.base))?;
    let args: Vec<std::ffi::OsString> = vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-b".into(),
        base.into_os_string(),
        "-F".into(),
        "qcow2".into(),
        disk.as_os_str().to_owned(),
        size_bytes.to_string().into(),
    ];
    run("qemu-img", "qemu-utils", &args).await.map(drop)
}

/// A VM's identity as the seed disk carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The host name (one DNS label: a-z, 0-9, '-', at most 63).
    pub hostname: String,
    /// root's authorized_keys, one OpenSSH public key per line.
    pub authorized_keys: String,
}

impl Seed {
    /// Checks both values; errors say which value and what is allowed.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        let h = &self.hostname;
        let label_ok = (1..=63).contains(&h.len())
            && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !h.starts_with('-')
            && !h.ends_with('-');
        if !label_ok {
            return Err(ArtifactError::Invalid(format!(
                "host name {h:?} is not valid: use 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'"
            )));
        }
        for line in self.authorized_keys.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let (kind, blob) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let kind_ok = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
            let blob_ok = !blob.is_empty() && blob.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
            if !kind_ok || !blob_ok || line.chars().any(|c| c.is_control() && c != '\t') {
                return Err(ArtifactError::Invalid(format!(
                    "authorized key line {line:?} is not an OpenSSH public key (\"ssh-ed25519 AAAA… comment\")"
                )));
            }
        }
        Ok(())
    }
}

/// Writes `seed` as a small ext4 image `image` (labelled for the guest's first-boot unit).
pub async fn create_seed(seed: &Seed, image: &Path) -> Result<(), ArtifactError> {
    seed.validate()?;
    let dir = tempfile::tempdir().map_err(io("create a directory in", std::env::temp_dir()))?;
    let write = |name: &str, text: String| -> Result<PathBuf, ArtifactError> {
        let path = dir.path().join(name);
        std::fs::write(&path, text).map_err(io("write", &path))?;
        Ok(path)
    };
    write("hostname", format!("{}\n", seed.hostname))?;
    write("authorized_keys", seed.authorized_keys.clone())?;
    let args: Vec<std::ffi::OsString> = vec![
        "-q".into(),
        "-F".into(),
        "-t".into(),
        "ext4".into(),
        "-O".into(),
        "^has_journal".into(),
        "-L".into(),
        SEED_LABEL.into(),
        "-d".into(),
        dir.path().as_os_str().to_owned(),
        image.as_os_str().to_owned(),
        "4M".into(),
    ];
    run("mkfs.ext4", "e2fsprogs", &args).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(hostname: &str, keys: &str) -> Seed {
        Seed { hostname: hostname.into(), authorized_keys: keys.into() }
    }

    #[test]
    fn seed_values_are_checked() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB+x/y= me@laptop\n";
        assert!(seed("vm-1", key).validate().is_ok());
        assert!(seed("vm-1", "").validate().is_ok());
        for bad in ["", "-a", "a-", "UPPER", "a.b", "a b", &"x".repeat(64)] {
            assert!(seed(bad, key).validate().is_err(), "{bad:?}");
        }
        for bad in ["command=\"rm -rf /\" ssh-ed25519 AAAA", "ssh-ed25519", "ssh-ed25519 AA$(x)", "hello world"] {
            assert!(seed("vm", bad).validate().is_err(), "{bad:?}");
        }
    }
}
