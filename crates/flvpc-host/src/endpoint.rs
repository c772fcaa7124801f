//! Connecting to a Docker engine by its [`EngineEndpoint`]: a unix socket on this machine, or
//! `tcp://IP:PORT` with TLS client certificates (plain TCP on loopback only).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use flvpc_model::EngineEndpoint;

use crate::docker::DockerEngine;
use crate::engine::EngineError;

/// How long the first exchange with an engine may take: a host that does not answer is said
/// at once, not after the two minutes an ordinary API call may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Seconds one API call may take on a connection made here (as [`DockerEngine::connect`]'s).
const API_TIMEOUT_SECS: u64 = 120;

/// The TLS files of a remote engine (PEM): the CA that signed the engine's certificate, and the
/// client certificate and key flvpc presents (the engine runs with `--tlsverify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineTls {
    /// The CA certificate the engine's server certificate must chain to.
    pub ca: PathBuf,
    /// flvpc's client certificate.
    pub cert: PathBuf,
    /// The client certificate's private key.
    pub key: PathBuf,
}

impl EngineTls {
    /// Checks that each file is a readable regular file, so that a wrong path is said by name
    /// before any connection (bollard reads the key only during the handshake).
    pub fn check(&self) -> Result<(), EngineError> {
        for (what, path) in [("--tls-ca", &self.ca), ("--tls-cert", &self.cert), ("--tls-key", &self.key)] {
            check_file(what, path)?;
        }
        Ok(())
    }
}

fn check_file(what: &str, path: &Path) -> Result<(), EngineError> {
    let refused = |why: String| EngineError::InvalidEndpoint { detail: format!("{what} {}: {why}", path.display()) };
    let meta = std::fs::metadata(path).map_err(|e| refused(e.to_string()))?;
    if !meta.is_file() {
        return Err(refused("is not a file (give the PEM file itself)".into()));
    }
    std::fs::File::open(path).map_err(|e| refused(format!("cannot be read: {e}")))?;
    Ok(())
}

impl DockerEngine {
    /// Connects to the engine at `endpoint` and negotiates the API version within
    /// [`CONNECT_TIMEOUT`]. `tls` is required for TCP beyond loopback and refused for a unix
    /// socket ([`EngineEndpoint::check_transport`]); TCP on loopback without it is plain HTTP.
    /// [`DockerEngine::connect`] stays the way to the local engine.
    pub async fn connect_to(endpoint: &EngineEndpoint, tls: Option<&EngineTls>) -> Result<Self, EngineError> {
        endpoint
            .check_transport(tls.is_some())
            .map_err(|refused| EngineError::InvalidEndpoint { detail: refused.message })?;
        if let Some(tls) = tls {
            tls.check()?;
        }
        let name = endpoint.to_string();
        let (client, local) = match (endpoint, tls) {
            (EngineEndpoint::Unix(path), _) => {
                (Docker::connect_with_unix(path, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION), true)
            }
            (EngineEndpoint::Tcp(addr), Some(tls)) => (
                Docker::connect_with_ssl(
                    &addr.to_string(),
                    &tls.key,
                    &tls.cert,
                    &tls.ca,
                    API_TIMEOUT_SECS,
                    bollard::API_DEFAULT_VERSION,
                ),
                false,
            ),
            (EngineEndpoint::Tcp(addr), None) => {
                (Docker::connect_with_http(&addr.to_string(), API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION), false)
            }
        };
        // A handle exists before the first exchange, so that its errors are said the way every
        // later call's are (a socket to start dockerd on, or an endpoint to check).
        let client = client.map_err(|e| match e {
            // A unix socket that is not there is a dockerd that is not running (it removes its
            // socket when it stops): a host that went away, which may come back.
            bollard::errors::Error::SocketNotFoundError(_) => {
                EngineError::Unreachable { socket: name.clone(), detail: e.to_string() }
            }
            e => EngineError::InvalidEndpoint { detail: format!("{name}: {e}") },
        })?;
        let handle = DockerEngine::from_client(client.clone(), name.clone(), local);
        let negotiated = match tokio::time::timeout(CONNECT_TIMEOUT, client.negotiate_version()).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(handle.unreachable(e.to_string())),
            Err(_) => return Err(handle.unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        };
        Ok(DockerEngine::from_client(negotiated, name, local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_tcp_beyond_loopback_is_refused_before_connecting() {
        let endpoint = EngineEndpoint::parse("tcp://192.0.2.7:2376").expect("endpoint");
        let err = DockerEngine::connect_to(&endpoint, None).await.expect_err("refused");
        assert!(matches!(err, EngineError::InvalidEndpoint { .. }), "{err}");
        assert!(err.to_string().contains("never plain TCP beyond loopback"), "{err}");
    }

    #[tokio::test]
    async fn missing_tls_files_are_named() {
        let endpoint = EngineEndpoint::parse("tcp://192.0.2.7:2376").expect("endpoint");
        let tls =
            EngineTls { ca: "/nonexistent/ca.pem".into(), cert: "/etc".into(), key: "/nonexistent/key.pem".into() };
        let err = DockerEngine::connect_to(&endpoint, Some(&tls)).await.expect_err("refused");
        assert!(err.to_string().contains("--tls-ca /nonexistent/ca.pem"), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_on_loopback_is_said_fast_with_the_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let endpoint = EngineEndpoint::parse(&format!("tcp://127.0.0.1:{port}")).expect("endpoint");
        let started = std::time::Instant::now();
        let err = DockerEngine::connect_to(&endpoint, None).await.expect_err("nothing listens");
        assert!(matches!(err, EngineError::RemoteUnreachable { .. }), "{err}");
        assert!(err.to_string().contains(&format!("Docker engine at tcp://127.0.0.1:{port} did not answer")), "{err}");
        assert!(err.is_transient());
        // Not a speed assertion: the bound is the connect timeout itself, which must apply.
        assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_silent_engine_is_given_up_after_the_connect_timeout() {
        // Accepts and never answers: the negotiation must not wait for the API timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let held = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                kept.push(socket);
            }
        });
        let endpoint = EngineEndpoint::parse(&format!("tcp://127.0.0.1:{port}")).expect("endpoint");
        let err = DockerEngine::connect_to(&endpoint, None).await.expect_err("no answer");
        assert!(err.to_string().contains("no answer within"), "{err}");
        held.abort();
    }
}
