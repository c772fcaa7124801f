//! The SSH gateway: a jump host built in, bound to namespaces and roles.
//!
//! Users authenticate with the public keys they uploaded (no passwords, no
//! Linux accounts on the host). A plain session gets a help text and closes; a
//! `direct-tcpip` channel (what `ssh -J` and `ssh -L` open) to
//! `<machine>.<namespace>` is forwarded to that machine when the user is a
//! member of the namespace and the machine runs. Everything else is refused.
//! Membership and key are checked again for every channel, so a removal takes
//! effect for new channels at once. Logins and forwarded channels are audited.

mod handler;
mod hostkey;

pub use hostkey::{load_or_create_host_key, HostKey};

use crate::state::AppState;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Limits and settings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long a client has to authenticate.
    pub auth_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Connections at once, all users together.
    pub max_connections: usize,
    /// Connections at once per user.
    pub max_connections_per_user: usize,
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
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Connection counts, shared by all connections.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    total: AtomicUsize,
    per_user: Mutex<HashMap<i64, usize>>,
}

impl Counters {
    fn try_enter(&self, max: usize) -> bool {
        self.total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    fn leave(&self) {
        self.total.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn try_enter_user(&self, user: i64, max: usize) -> bool {
        let mut map = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(user).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    pub(crate) fn leave_user(&self, user: i64) {
        let mut map = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&user);
            }
        }
    }
}

/// What every connection handler shares.
pub(crate) struct Shared {
    pub state: AppState,
    pub config: GatewayConfig,
    pub counters: Counters,
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
            cipher: std::borrow::Cow::Borrowed(&[
                cipher::AES_128_GCM,
                cipher::AES_256_GCM,
                cipher::CHACHA20_POLY1305,
                cipher::AES_256_CTR,
            ]),
            ..Preferred::default()
        },
        ..Default::default()
    }
}

/// The ~/.ssh/config blocks that reach `login`'s machines through the gateway at `host:port`.
pub fn ssh_config_text(
    login: &str,
    host: &str,
    port: u16,
    host_key: Option<&(String, String)>,
    namespaces: &[String],
) -> String {
    let mut text = String::new();
    if let Some((fingerprint, public)) = host_key {
        text.push_str(&format!("# flvpc SSH gateway {host}:{port}, host key {fingerprint}\n"));
        text.push_str(&format!("# for ~/.ssh/known_hosts: [{host}]:{port} {public}\n"));
    }
    text.push_str(&format!("Host flvpc-gateway\n    HostName {host}\n    Port {port}\n    User {login}\n"));
    for ns in namespaces {
        text.push_str(&format!("\n# ssh <machine>.{ns}\nHost *.{ns}\n    User root\n    ProxyJump flvpc-gateway\n"));
    }
    text
}

/// Serves the gateway on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: GatewayConfig,
    host_key: HostKey,
) -> std::io::Result<()> {
    let russh_config = Arc::new(russh_config(&host_key, &config));
    let shared = Arc::new(Shared { state, config, counters: Counters::default() });
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!("gateway: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over the cap, a connection is closed before any handshake: it costs nothing to hold.
        if !shared.counters.try_enter(shared.config.max_connections) {
            tracing::warn!("gateway: refusing {peer}: {} connections already", shared.config.max_connections);
            drop(socket);
            continue;
        }
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        let russh_config = russh_config.clone();
        tokio::spawn(async move {
            serve_connection(shared.clone(), russh_config, socket, peer).await;
            shared.counters.leave();
        });
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let authenticated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let local = socket.local_addr().ok();
    let handler = handler::Connection::new(shared.clone(), peer, local, authenticated.clone());
    let auth_timeout = shared.config.auth_timeout;
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
