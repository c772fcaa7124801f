//! The SSH gateway: a jump host built in, bound to namespaces and roles.
//!
//! Users authenticate with the public keys they uploaded (no passwords, no
//! Linux accounts on the host). A plain session gets a help text and closes; a
//! `direct-tcpip` channel (what `ssh -J` and `ssh -L` open) to
//! `<machine>.<namespace>` is forwarded to that machine when the user is a
//! member of the namespace and the machine runs. Everything else is refused.
//! Membership and key are checked again for every channel, so a removal takes
//! effect for new channels at once. Logins and forwarded channels are audited.

mod caps;
mod handler;
mod hostkey;
mod read_ahead;
mod relay;

pub use hostkey::{load_or_create_host_key, HostKey};

use crate::state::AppState;
use caps::{Counters, QuietLog, Refusal, UnauthenticatedSlot};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Limits and settings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long a client has to authenticate.
    pub auth_timeout: Duration,
    /// A connection, or a forwarded channel, with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Connections at once, all users together.
    pub max_connections: usize,
    /// Connections at once per user.
    pub max_connections_per_user: usize,
    /// Connections that have not authenticated yet, all addresses together: kept below
    /// `max_connections` so that signed-in users always have room.
    pub max_unauthenticated: usize,
    /// Connections that have not authenticated yet from one address (an IPv6 /64).
    pub max_unauthenticated_per_address: usize,
    /// Channels (forwarded and sessions) open at once on one connection.
    pub max_channels_per_connection: usize,
    /// Forwarded channels open at once per user, across all their connections.
    pub max_forwards_per_user: usize,
    /// How long connecting to a machine may take.
    pub connect_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            auth_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(3600),
            max_connections: 1000,
            max_connections_per_user: 50,
            max_unauthenticated: 200,
            max_unauthenticated_per_address: 10,
            max_channels_per_connection: 64,
            max_forwards_per_user: 256,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl GatewayConfig {
    /// The most file descriptors the gateway can hold at once: a socket per connection and
    /// one per forwarded channel (session channels hold none).
    pub fn max_descriptors(&self) -> u64 {
        let connections = u64::try_from(self.max_connections).unwrap_or(u64::MAX);
        let channels = u64::try_from(self.max_channels_per_connection).unwrap_or(u64::MAX);
        connections.saturating_mul(channels.saturating_add(1))
    }
}

/// What every connection handler shares.
pub(crate) struct Shared {
    pub state: AppState,
    pub config: GatewayConfig,
    pub counters: Arc<Counters>,
}

fn russh_config(host_key: &HostKey, gw: &GatewayConfig) -> russh::server::Config {
    use russh::{cipher, kex, MethodKind, MethodSet, Preferred};
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    russh::server::Config {
        methods,
        keys: vec![host_key.private.clone()],
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        max_auth_attempts: 6,
        inactivity_timeout: Some(gw.idle_timeout),
        keepalive_interval: Some(Duration::from_secs(60)),
        nodelay: true,
        // Bulk relays need a large window; the defaults are tuned for interactive use.
        window_size: 16 * 1024 * 1024,
        maximum_packet_size: 65535,
        preferred: Preferred {
            kex: std::borrow::Cow::Borrowed(&[
                kex::CURVE25519,
                kex::CURVE25519_PRE_RFC_8731,
                kex::MLKEM768X25519_SHA256,
                kex::ECDH_SHA2_NISTP256,
                kex::DH_G14_SHA256,
                kex::EXTENSION_SUPPORT_AS_SERVER,
                kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
            ]),
            // AES-GCM only: a client picks the first cipher of *its* list that the server
            // offers, and OpenSSH lists chacha20-poly1305 and the AES-CTR modes (with a
            // separate MAC) before AES-GCM, so offering any of them would get them chosen.
            // With AES-NI and carry-less multiply (probed at run time by aws-lc), AES-GCM
            // costs the gateway and the client's jump process a fraction of chacha20-poly1305
            // (see bench/README.md, ssh-gateway). Every OpenSSH since 6.2 speaks it.
            cipher: std::borrow::Cow::Borrowed(&[cipher::AES_128_GCM, cipher::AES_256_GCM]),
            ..Preferred::default()
        },
        ..Default::default()
    }
}

/// Serves the gateway on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: GatewayConfig,
    host_key: HostKey,
) -> std::io::Result<()> {
    let russh_config = Arc::new(russh_config(&host_key, &config));
    let shared = Arc::new(Shared { state, config, counters: Arc::new(Counters::default()) });
    let refusals = QuietLog::new(Duration::from_secs(10));
    let accept_errors = QuietLog::new(Duration::from_secs(10));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, most likely: waiting lets connections end and give some back.
                if let Some(quiet) = accept_errors.allow() {
                    tracing::warn!("gateway: accept failed: {err} ({quiet} more failures not logged)");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over a cap, a connection is closed before any handshake: it costs nothing to hold.
        let (connection_slot, unauthenticated) = match shared.counters.admit(peer.ip(), &shared.config) {
            Ok(slots) => slots,
            Err(refusal) => {
                drop(socket);
                if let Some(quiet) = refusals.allow() {
                    tracing::warn!(
                        "gateway: refusing {peer}: {} ({quiet} more refusals not logged)",
                        explain(refusal, &shared.config)
                    );
                }
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        let russh_config = russh_config.clone();
        tokio::spawn(async move {
            serve_connection(shared, russh_config, socket, peer, unauthenticated).await;
            drop(connection_slot);
        });
    }
}

/// A refusal at accept time, for the log: which cap, and the flag that sets it.
fn explain(refusal: Refusal, config: &GatewayConfig) -> String {
    match refusal {
        Refusal::Full => {
            format!("{} connections already (--ssh-max-connections)", config.max_connections)
        }
        Refusal::TooManyUnauthenticated => {
            format!("{} connections are still authenticating (--ssh-max-unauthenticated)", config.max_unauthenticated)
        }
        Refusal::TooManyFromAddress => format!(
            "{} connections from this address are still authenticating (--ssh-max-unauthenticated-per-address)",
            config.max_unauthenticated_per_address
        ),
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    socket: TcpStream,
    peer: SocketAddr,
    unauthenticated: UnauthenticatedSlot,
) {
    let authenticated = Arc::new(AtomicBool::new(false));
    let local = socket.local_addr().ok();
    let auth_timeout = shared.config.auth_timeout;
    // The watchdog below says goodbye politely at the auth timeout; a client that does not
    // read it or never closes its side is cut off a little later by the socket itself.
    let socket = AuthDeadline::new(socket, auth_timeout + AUTH_GRACE, authenticated.clone());
    let socket = read_ahead::ReadAhead::new(socket);
    let handler = handler::Connection::new(shared.clone(), peer, local, authenticated.clone(), unauthenticated);
    let session = match tokio::time::timeout(auth_timeout, russh::server::run_stream(config, socket, handler)).await {
        Ok(Ok(session)) => session,
        Ok(Err(err)) => {
            tracing::debug!("gateway: handshake with {peer} failed: {err:?}");
            return;
        }
        Err(_) => return,
    };
    let handle = session.handle();
    let watchdog = tokio::spawn(async move {
        tokio::time::sleep(auth_timeout).await;
        if !authenticated.load(Ordering::Acquire) {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "authentication timed out".into(), "en".into())
                .await;
        }
    });
    if let Err(err) = session.await {
        tracing::debug!("gateway: session with {peer} ended: {err:?}");
    }
    watchdog.abort();
}

/// How long after the auth timeout an unauthenticated client's socket is cut off.
const AUTH_GRACE: Duration = Duration::from_secs(5);

/// The client's socket, which fails every read and write after a deadline unless the
/// connection has authenticated by then. russh runs the session in a task of its own and,
/// after a disconnect, waits for the client to close its side; this makes sure a client
/// that never authenticates gives its socket and its places back however it behaves.
struct AuthDeadline {
    inner: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    authenticated: Arc<AtomicBool>,
}

impl AuthDeadline {
    fn new(inner: TcpStream, after: Duration, authenticated: Arc<AtomicBool>) -> Self {
        Self { inner, deadline: Box::pin(tokio::time::sleep(after)), authenticated }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        if !self.authenticated.load(Ordering::Acquire) && self.deadline.as_mut().poll(cx).is_ready() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "authentication timed out"));
        }
        Ok(())
    }
}

impl AsyncRead for AuthDeadline {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Binds the gateway and runs it in the background (for `flvpc serve` and tests).
pub async fn spawn(
    addr: SocketAddr,
    state: AppState,
    config: GatewayConfig,
    host_key: HostKey,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(err) = serve(listener, state, config, host_key).await {
            tracing::error!("the SSH gateway stopped: {err}");
        }
    });
    Ok((local, task))
}
