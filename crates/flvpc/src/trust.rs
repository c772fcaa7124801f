//! How the CLI trusts an https server: the system's roots (a certificate from a public CA), a
//! private CA's certificate file (`--ca-cert`), or the server's own certificate pinned by its
//! SHA-256 fingerprint (`--fingerprint`, for flvpc's self-signed certificate, as ssh pins a host
//! key). The pin is kept with the token, so every later command checks the same certificate.

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What an https server's certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's root certificates (reqwest's platform verifier).
    System,
    /// A private CA: the certificates of this PEM file are the only roots.
    Ca(PathBuf),
    /// Exactly the certificate with this fingerprint (`AA:BB:…`), whoever signed it.
    Pinned(String),
}

/// An HTTP client that checks the server as `Trust` says, and remembers the fingerprint of the
/// certificate it was shown, for error messages.
pub struct Https {
    /// The client for every request of one command.
    pub client: reqwest::Client,
    seen: Seen,
}

type Seen = Arc<Mutex<Option<String>>>;

impl Https {
    /// A client for `trust`.
    pub fn new(trust: &Trust) -> anyhow::Result<Self> {
        let seen = Seen::default();
        let builder = reqwest::Client::builder();
        let builder = match trust {
            Trust::System => builder,
            Trust::Ca(file) => builder.use_preconfigured_tls(ca_config(file)?),
            Trust::Pinned(expected) => builder.use_preconfigured_tls(pinned_config(Some(expected.clone()), &seen)?),
        };
        Ok(Self { client: builder.build().context("cannot set up the HTTP client")?, seen })
    }

    /// The fingerprint of the certificate the server showed, when this client pinned one.
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().ok().and_then(|seen| seen.clone())
    }
}

/// The fingerprint of the certificate `server` (an https URL) shows, read without trusting it:
/// only `/healthz` is asked, nothing secret is sent.
pub async fn probe_fingerprint(server: &str) -> anyhow::Result<String> {
    let seen = Seen::default();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(pinned_config(None, &seen)?)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("cannot set up the HTTP client")?;
    let answer = client.get(format!("{}/healthz", server.trim_end_matches('/'))).send().await;
    let seen = seen.lock().ok().and_then(|seen| seen.clone());
    match (seen, answer) {
        (Some(fingerprint), _) => Ok(fingerprint),
        (None, Err(err)) => Err(err).with_context(|| format!("cannot reach the flvpc server at {server}")),
        (None, Ok(_)) => bail!("the server at {server} showed no certificate"),
    }
}

/// Whether `err` is a TLS certificate the client did not accept (as opposed to a server that is
/// down or a refused login): the rustls error may sit inside an I/O error, whose `source` skips it.
pub fn certificate_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        // hyper's connector wraps rustls's error in an I/O error, sometimes twice.
        let mut inner: &(dyn std::error::Error + 'static) = err;
        while let Some(wrapped) = inner.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            inner = wrapped;
        }
        if matches!(inner.downcast_ref::<rustls::Error>(), Some(rustls::Error::InvalidCertificate(_))) {
            return true;
        }
        current = err.source();
    }
    false
}

fn ca_config(file: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let pem = std::fs::read(file).with_context(|| {
        format!(
            "cannot read the CA certificate {}: give the PEM file of the CA that signed the server's certificate",
            file.display()
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| anyhow::anyhow!("the CA certificate {} is not valid PEM: {e}", file.display()))?;
        roots.add(cert).with_context(|| format!("the CA certificate {} cannot be used", file.display()))?;
    }
    if roots.is_empty() {
        bail!(
            "{} holds no certificate (no -----BEGIN CERTIFICATE----- block): give the CA's certificate in PEM",
            file.display()
        );
    }
    Ok(rustls::ClientConfig::builder_with_provider(flvpc_server::tls::provider())
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A config that accepts exactly the certificate with fingerprint `expected`, or (`None`, for
/// [`probe_fingerprint`] only) any certificate; the handshake's signature is checked either way,
/// so the server holds the certificate's key.
fn pinned_config(expected: Option<String>, seen: &Seen) -> anyhow::Result<rustls::ClientConfig> {
    let provider = flvpc_server::tls::provider();
    let verifier = Pin { expected, seen: seen.clone(), provider: provider.clone() };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[derive(Debug)]
struct Pin {
    expected: Option<String>,
    seen: Seen,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The pin is the certificate itself: its names and dates were accepted with it at login.
        let fingerprint = flvpc_server::tls::fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fingerprint.clone());
        }
        match &self.expected {
            Some(expected) if *expected != fingerprint => {
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Asks on the terminal whether to trust a certificate nobody vouches for, as ssh does for a new
/// host key. None when there is no terminal to ask on (then the caller says what flag to give).
pub fn ask_on_terminal(server: &str, fingerprint: &str) -> Option<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return None;
    }
    // The password may be arriving on standard input: the answer comes from the terminal itself.
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
    let mut out = tty.try_clone().ok()?;
    let _ = write!(
        out,
        "The certificate of {server} is not signed by an authority this system trusts.\n\
         Its SHA-256 fingerprint is\n  {fingerprint}\n\
         Compare it with the one `flvpc serve` logged at start (or `openssl x509 -in tls/cert.pem -noout \
         -fingerprint -sha256` in the server's data dir).\n\
         Trust this server and remember its certificate (yes/no)? "
    );
    let _ = out.flush();
    let mut answer = String::new();
    std::io::BufReader::new(tty).read_line(&mut answer).ok()?;
    Some(matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_is_found_inside_nested_io_errors() {
        // As hyper's connector reports it: rustls's error in an I/O error in an I/O error.
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert!(certificate_refused(&nested));
        let sentence = anyhow::Error::new(nested).context("the certificate of … is not trusted");
        assert!(certificate_refused(sentence.as_ref()));
        assert!(!certificate_refused(&std::io::Error::other("connection refused")));
        let other_tls = std::io::Error::other(rustls::Error::HandshakeNotComplete);
        assert!(!certificate_refused(&other_tls), "only a refused certificate, not any TLS failure");
    }
}
