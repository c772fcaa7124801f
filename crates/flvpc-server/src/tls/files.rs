//! A certificate chain and key given as PEM files (`--tls-cert`, `--tls-key`), read and checked
//! before anything listens, each failure one sentence naming the file and the fix.

use super::Identity;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// Reads the chain (the server's certificate first, then its intermediates) and its private key
/// (PKCS#8, RSA or EC), and checks that they belong together.
pub fn load_files(cert_file: &Path, key_file: &Path) -> Result<Identity, String> {
    let cert_pem = read(cert_file, "certificate", "--tls-cert")?;
    let key_pem = read(key_file, "key", "--tls-key")?;
    let chain = certificates(&cert_pem, cert_file)?;
    let key = private_key(&key_pem, key_file)?;
    super::identity(chain, key, cert_file, key_file)
}

fn read(path: &Path, what: &str, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the TLS {what} {} ({e}): give a readable PEM file with {flag} (flvpc's user must be able to \
             read it)",
            path.display()
        )
    })
}

fn certificates(pem_text: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem_text).collect::<Result<Vec<_>, _>>().map_err(|e| {
        format!("the TLS certificate {} is not valid PEM ({e}): give the PEM file itself", path.display())
    })?;
    if chain.is_empty() {
        let swapped = if PrivateKeyDer::from_pem_slice(pem_text).is_ok() {
            "it holds a private key: are --tls-cert and --tls-key swapped? "
        } else {
            ""
        };
        return Err(format!(
            "the TLS certificate {} holds no certificate (no -----BEGIN CERTIFICATE----- block): {swapped}--tls-cert \
             takes the server's certificate in PEM, followed by its chain",
            path.display()
        ));
    }
    Ok(chain)
}

fn private_key(pem_text: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    match PrivateKeyDer::from_pem_slice(pem_text) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let text = String::from_utf8_lossy(pem_text);
            let hint = if text.contains("ENCRYPTED PRIVATE KEY") {
                "it is encrypted: flvpc needs it unencrypted (openssl pkey -in KEY -out PLAIN), readable by flvpc's \
                 user only"
            } else if text.contains("BEGIN CERTIFICATE") {
                "it holds a certificate: are --tls-cert and --tls-key swapped?"
            } else {
                "--tls-key takes the certificate's private key in PEM (PKCS#8, RSA or EC)"
            };
            Err(format!("the TLS key {} holds no private key: {hint}", path.display()))
        }
        Err(e) => Err(format!("the TLS key {} is not valid PEM ({e}): give the PEM file itself", path.display())),
    }
}
