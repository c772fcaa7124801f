//! The self-signed certificate `flvpc serve` uses when it is given none: made once into
//! `<data dir>/tls/` (key 0600, directory 0700) and reused at every start, so that the fingerprint
//! clients pinned stays valid.

use super::Identity;
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A name the certificate is valid for: a DNS name or an IP address (`--tls-san`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanName {
    /// A host name, e.g. `vpc.example.org`.
    Dns(String),
    /// An address, e.g. `192.0.2.10`.
    Ip(IpAddr),
}

impl SanName {
    /// A host name (letters, digits and `-` in dot-separated labels) or an IP address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if text.len() <= 253 && text.split('.').all(label_ok) {
            return Ok(Self::Dns(text.to_ascii_lowercase()));
        }
        Err(format!("{text:?} is neither a host name nor an IP address, e.g. vpc.example.org or 192.0.2.10"))
    }

    fn as_server_name(&self) -> Option<ServerName<'static>> {
        match self {
            SanName::Dns(name) => ServerName::try_from(name.clone()).ok(),
            SanName::Ip(ip) => Some(ServerName::from(*ip)),
        }
    }
}

impl std::fmt::Display for SanName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SanName::Dns(name) => f.write_str(name),
            SanName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The names of a new certificate: the host's name, `localhost`, the loopback addresses and `extra`.
fn names(host_name: Option<&str>, extra: &[SanName]) -> Vec<SanName> {
    let mut names = Vec::new();
    if let Some(Ok(host)) = host_name.map(SanName::parse) {
        names.push(host);
    }
    names.push(SanName::Dns("localhost".into()));
    names.push(SanName::Ip(IpAddr::from([127, 0, 0, 1])));
    names.push(SanName::Ip(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)));
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Reads `<data_dir>/tls/cert.pem` and `key.pem`, or makes them on first start. The second value
/// is true when they were made now. A kept certificate that lacks a name of `extra` is still used
/// (its fingerprint is what clients pinned), with a warning saying how to make a new one.
pub fn load_or_create_self_signed(
    data_dir: &Path,
    host_name: Option<&str>,
    extra: &[SanName],
) -> Result<(Identity, bool), String> {
    let dir = data_dir.join(super::TLS_DIR);
    flvpc_store::private_dir(&dir).map_err(|e| e.to_string())?;
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_file.exists() && key_file.exists() {
        let identity = super::load_files(&cert_file, &key_file)?;
        let pem = std::fs::read(&cert_file).map_err(|e| format!("cannot read {}: {e}", cert_file.display()))?;
        warn_about_missing_names(&pem, extra, &dir);
        return Ok((identity, false));
    }
    let names = names(host_name, extra);
    let (cert_pem, key_pem) = generate(&names, host_name.unwrap_or("localhost"))?;
    // The key first and the certificate last, each complete before its rename: a start that dies
    // half-way leaves no certificate, and the next start makes both again.
    write_private(&dir, "key.pem", key_pem.as_bytes(), 0o600)?;
    write_private(&dir, "cert.pem", cert_pem.as_bytes(), 0o644)?;
    let listed: Vec<String> = names.iter().map(ToString::to_string).collect();
    tracing::info!("made a self-signed TLS certificate {} for {}", cert_file.display(), listed.join(", "));
    Ok((super::load_files(&cert_file, &key_file)?, true))
}

/// A new ECDSA P-256 key and a certificate for `names`, valid ten years (the CLI pins the
/// certificate itself, so its dates only matter to browsers, which ask about it anyway).
fn generate(names: &[SanName], host: &str) -> Result<(String, String), String> {
    let failed = |e: rcgen::Error| format!("cannot make a self-signed TLS certificate: {e}");
    let key = KeyPair::generate().map_err(failed)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|name| match name {
            SanName::Dns(dns) => dns.clone().try_into().map(SanType::DnsName),
            SanName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("flvpc {host}"));
    params.distinguished_name.push(DnType::OrganizationName, "flvpc self-signed");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_private(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), String> {
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&partial);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Warns when the kept certificate is not valid for a name asked for with `--tls-san`.
fn warn_about_missing_names(pem_text: &[u8], extra: &[SanName], dir: &Path) {
    use rustls::pki_types::pem::PemObject;
    let Ok(leaf) = CertificateDer::from_pem_slice(pem_text) else { return };
    let Ok(cert) = webpki::EndEntityCert::try_from(&leaf) else { return };
    let missing: Vec<String> = extra
        .iter()
        .filter(|name| name.as_server_name().is_some_and(|n| cert.verify_is_valid_for_subject_name(&n).is_err()))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            "the self-signed certificate in {} was made without {}: it is kept (clients pinned its fingerprint); to \
             make a new one with these names, stop flvpc, remove that directory and start again, then give clients \
             the new fingerprint",
            dir.display(),
            missing.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_host_names_or_addresses() {
        assert_eq!(SanName::parse("VPC.example.org"), Ok(SanName::Dns("vpc.example.org".into())));
        assert_eq!(SanName::parse("::1"), Ok(SanName::Ip(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))));
        for bad in ["", "a..b", "-a.b", "a_b", "a b", "https://x", "x/y"] {
            assert!(SanName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_new_certificate_names_the_host_localhost_loopback_and_extras_once() {
        let extra = [SanName::parse("10.0.0.5").expect("ip"), SanName::parse("localhost").expect("dns")];
        let listed: Vec<String> = names(Some("box1"), &extra).iter().map(ToString::to_string).collect();
        assert_eq!(listed, ["box1", "localhost", "127.0.0.1", "::1", "10.0.0.5"]);
    }

    #[test]
    fn made_once_then_reused_with_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let (made, created) = load_or_create_self_signed(dir.path(), Some("box1"), &[]).expect("made");
        assert!(created);
        let (again, created) = load_or_create_self_signed(dir.path(), Some("box1"), &[]).expect("reused");
        assert!(!created);
        assert_eq!(made.fingerprint, again.fingerprint);
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("tls")), 0o700);
        assert_eq!(mode(&dir.path().join("tls/key.pem")), 0o600);
        let pem = std::fs::read(dir.path().join("tls/cert.pem")).expect("cert");
        use rustls::pki_types::pem::PemObject;
        let leaf = CertificateDer::from_pem_slice(&pem).expect("pem");
        assert_eq!(super::super::fingerprint(&leaf), made.fingerprint);
        let cert = webpki::EndEntityCert::try_from(&leaf).expect("parse");
        for name in ["box1", "localhost", "127.0.0.1", "::1"] {
            let name = SanName::parse(name).expect("name").as_server_name().expect("server name");
            assert!(cert.verify_is_valid_for_subject_name(&name).is_ok(), "{name:?}");
        }
    }
}
