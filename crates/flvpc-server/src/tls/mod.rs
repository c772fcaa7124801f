//! TLS for the panel and API: the server's certificate (given as PEM files, or self-signed and
//! kept in the data dir), the listener that terminates TLS in front of the same router as plain
//! HTTP, and the one certificate fingerprint function that `flvpc serve` prints and the CLI pins.
//!
//! The crypto provider is aws-lc-rs: russh already builds it, so TLS adds no second crypto library.

mod files;
pub mod listener;
mod self_signed;

pub use files::load_files;
pub use listener::TlsListener;
pub use self_signed::{load_or_create_self_signed, SanName};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The directory of the data dir that holds the self-signed certificate and its key.
pub const TLS_DIR: &str = "tls";

/// A certificate chain with its private key, checked to belong together, ready to serve.
#[derive(Clone)]
pub struct Identity {
    /// What the listener serves with (TLS 1.2 and 1.3, HTTP/1.1 by ALPN).
    pub config: Arc<rustls::ServerConfig>,
    /// The SHA-256 fingerprint of the leaf certificate ([`fingerprint`]).
    pub fingerprint: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

/// The crypto provider of every TLS config flvpc makes, server and client alike. Named
/// explicitly: with more than one provider compiled in (tests), rustls would pick none by itself.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate's SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it:
/// upper-case hex byte pairs joined by colons (`AA:BB:…`, 95 characters).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// A fingerprint as a person or a script typed it (`AA:BB:…`, lower case, with or without the
/// colons, after `openssl`'s `sha256 Fingerprint=`), in the form [`fingerprint`] makes; None when
/// it is not 32 bytes of hex.
pub fn parse_fingerprint(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text.rsplit_once('=').map_or(text, |(_, value)| value);
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let pairs: Vec<String> = hex.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).to_uppercase()).collect();
    Some(pairs.join(":"))
}

/// The server config for a chain and its key, after checking that the key is one rustls can sign
/// with and that it belongs to the leaf certificate. Errors are sentences about the files named.
fn identity(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<Identity, String> {
    let provider = provider();
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "the TLS key {} cannot be used ({e}): give an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key",
            key_file.display()
        )
    })?;
    let fingerprint = chain.first().map(|leaf| fingerprint(leaf)).unwrap_or_default();
    let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "the TLS key {} does not belong to the certificate {}: give the key the certificate was made for \
                 (the first certificate of the file must be the server's own)",
                key_file.display(),
                cert_file.display()
            ))
        }
        // The provider could not tell the key's public half: nothing to compare, the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(format!(
                "the TLS certificate {} cannot be used with the key {}: {e}",
                cert_file.display(),
                key_file.display()
            ))
        }
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    // axum serves HTTP/1.1 (WebSockets included); offering h2 would promise what it does not speak.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Identity { config: Arc::new(config), fingerprint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_colon_separated_upper_case_sha256() {
        // sha256("abc"), a known value.
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn typed_fingerprints_are_normalised_or_refused() {
        let canonical = fingerprint(b"abc");
        let bare = canonical.replace(':', "").to_lowercase();
        assert_eq!(parse_fingerprint(&bare).as_deref(), Some(canonical.as_str()));
        assert_eq!(
            parse_fingerprint(&format!(" sha256 Fingerprint={canonical}\n")).as_deref(),
            Some(canonical.as_str())
        );
        for bad in ["", "AA:BB", &canonical[3..], &format!("{canonical}:00"), &canonical.replace('B', "G")] {
            assert_eq!(parse_fingerprint(bad), None, "{bad:?}");
        }
    }
}
