//! What every request handler shares.

use crate::metrics::Metrics;
use crate::throttle::LoginThrottle;
use flvpc_store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of a running server (from `flvpc serve` flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the panel and API listen.
    pub listen: SocketAddr,
    /// Where state lives.
    pub data_dir: PathBuf,
    /// How long a panel session or API login lasts.
    pub session_ttl: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Mark cookies `Secure` (set when flvpc sits behind TLS).
    pub secure_cookies: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5555)),
            data_dir: PathBuf::from("./data"),
            session_ttl: Duration::from_secs(12 * 3600),
            max_body_bytes: 1024 * 1024,
            secure_cookies: false,
        }
    }
}

/// Shared state: cheap to clone, one per server.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
pub struct Inner {
    /// The database.
    pub store: Store,
    /// Settings.
    pub config: Config,
    /// Failed-login throttling.
    pub throttle: LoginThrottle,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// When the server started.
    pub started: std::time::Instant,
}

impl AppState {
    /// State around an open store.
    pub fn new(store: Store, config: Config) -> Self {
        Self::with_throttle(store, config, LoginThrottle::default())
    }

    /// State with a custom throttle (tests use small limits).
    pub fn with_throttle(store: Store, config: Config, throttle: LoginThrottle) -> Self {
        Self(Arc::new(Inner {
            store,
            config,
            throttle,
            metrics: Metrics::default(),
            started: std::time::Instant::now(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
