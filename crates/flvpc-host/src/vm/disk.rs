//! Per-VM disks: a qcow2 overlay of the shared base image (writes stay in the VM's file,
//! its virtual size is the VM's disk limit) and a small read-only seed disk carrying the
//! VM's host name and root's authorized_keys as plain files.

use std::net::Ipv4Addr;
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
    /// A static address for the VM's network card (a runner's VM takes over its container's
    /// address); `None` leaves the image's DHCP configuration.
    pub network: Option<GuestNetwork>,
}

/// The VM's IPv4 configuration, written as a systemd-networkd file from typed values only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNetwork {
    /// The network card it applies to.
    pub mac: MacAddr,
    /// The VM's address.
    pub address: Ipv4Addr,
    /// Its prefix length (0..=32).
    pub prefix: u8,
    /// The default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The DNS server, reached on the link (a host route, not through the gateway).
    pub dns: Ipv4Addr,
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Reads `aa:bb:cc:dd:ee:ff`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for b in bytes.iter_mut() {
            let part = parts.next()?;
            if part.len() != 2 {
                return None;
            }
            *b = u8::from_str_radix(part, 16).ok()?;
        }
        parts.next().is_none().then_some(Self(bytes))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl GuestNetwork {
    /// The `.network` file the guest's first-boot script installs.
    pub fn networkd_file(&self) -> String {
        let mut text = format!(
            "# Written by flvpc's VM runner: this VM owns its container's address.\n[Match]\nMACAddress={}\n\n\
             [Network]\nAddress={}/{}\nDNS={}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
            self.mac,
            self.address,
            self.prefix.min(32),
            self.dns
        );
        if let Some(gateway) = self.gateway {
            text.push_str(&format!("Gateway={gateway}\n"));
        }
        text.push_str(&format!("\n[Route]\nDestination={}/32\nScope=link\n", self.dns));
        text
    }
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
        // Comment lines (flvpc's own header) are kept: sshd skips them.
        let keys = self.authorized_keys.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
        if let Some(bad) = self.authorized_keys.lines().find(|l| l.chars().any(|c| c.is_control() && c != '\t')) {
            return Err(ArtifactError::Invalid(format!("authorized_keys line {bad:?} has a control character")));
        }
        for line in keys {
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
    if let Some(network) = &seed.network {
        write("network", network.networkd_file())?;
        write("resolv.conf", format!("nameserver {}\n", network.dns))?;
    }
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
        Seed { hostname: hostname.into(), authorized_keys: keys.into(), network: None }
    }

    #[test]
    fn seed_values_are_checked() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB+x/y= me@laptop\n";
        assert!(seed("vm-1", key).validate().is_ok());
        assert!(seed("vm-1", "").validate().is_ok());
        assert!(seed("vm-1", &format!("# Managed by flvpc\n{key}")).validate().is_ok());
        assert!(seed("vm-1", "# a\u{1b}[2J comment\n").validate().is_err());
        for bad in ["", "-a", "a-", "UPPER", "a.b", "a b", &"x".repeat(64)] {
            assert!(seed(bad, key).validate().is_err(), "{bad:?}");
        }
        for bad in ["command=\"rm -rf /\" ssh-ed25519 AAAA", "ssh-ed25519", "ssh-ed25519 AA$(x)", "hello world"] {
            assert!(seed("vm", bad).validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn network_file_from_typed_values() {
        let mac = MacAddr::parse("02:42:ac:14:00:02").expect("mac");
        assert_eq!(mac.to_string(), "02:42:ac:14:00:02");
        for bad in ["", "02:42:ac:14:00", "02:42:ac:14:00:02:03", "2:42:ac:14:00:02", "zz:42:ac:14:00:02"] {
            assert!(MacAddr::parse(bad).is_none(), "{bad:?}");
        }
        let net = GuestNetwork {
            mac,
            address: Ipv4Addr::new(172, 20, 0, 2),
            prefix: 16,
            gateway: Some(Ipv4Addr::new(172, 20, 0, 1)),
            dns: Ipv4Addr::new(169, 254, 53, 1),
        };
        let text = net.networkd_file();
        for line in [
            "MACAddress=02:42:ac:14:00:02",
            "Address=172.20.0.2/16",
            "Gateway=172.20.0.1",
            "DNS=169.254.53.1",
            "Destination=169.254.53.1/32",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
