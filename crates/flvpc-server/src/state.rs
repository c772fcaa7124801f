//! What every request handler shares.

use crate::metrics::Metrics;
use crate::reconcile::engine::ReconnectingDocker;
use crate::reconcile::{self, Reconciler};
use crate::throttle::LoginThrottle;
use flvpc_host::Engine;
use flvpc_store::{PortRange, Store, StoreError};
use std::net::{IpAddr, SocketAddr};
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
    /// Host address machine ports are published on.
    pub publish_address: IpAddr,
    /// Host ports handed out when a spec gives none.
    pub port_range: PortRange,
    /// The SSH gateway's port, shown in SSH commands.
    pub ssh_port: u16,
    /// The gateway's host key: fingerprint and public key line, shown to users.
    pub ssh_host_key: Option<(String, String)>,
    /// Cap on the CPUs of all running machines, as a multiple of the host's (None: no cap).
    pub overcommit_cpu: Option<f64>,
    /// Cap on the memory of all running machines, as a multiple of the host's (None: no cap).
    pub overcommit_memory: Option<f64>,
    /// How often machine usage is sampled.
    pub sample_every: Duration,
    /// A bearer token that may read the per-machine series of /metrics (a scraper's), besides
    /// the superadmin's tokens. Anonymous /metrics shows only aggregate counters.
    pub metrics_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5555)),
            data_dir: PathBuf::from("./data"),
            session_ttl: Duration::from_secs(12 * 3600),
            max_body_bytes: 1024 * 1024,
            secure_cookies: false,
            publish_address: IpAddr::from([0, 0, 0, 0]),
            port_range: PortRange { first: 20000, last: 29999 },
            ssh_port: 2222,
            ssh_host_key: None,
            overcommit_cpu: None,
            overcommit_memory: None,
            sample_every: Duration::from_secs(5),
            metrics_token: None,
        }
    }
}

/// Shared state: cheap to clone, one per server.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
pub struct Inner {
    /// The database.
    pub store: Arc<Store>,
    /// Settings.
    pub config: Config,
    /// Failed-login throttling.
    pub throttle: LoginThrottle,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// Makes the machines match the database.
    pub reconciler: Reconciler,
    /// What running machines use, for the last hour.
    pub usage: Arc<crate::usage::UsageSampler>,
    /// When the server started.
    pub started: std::time::Instant,
}

impl AppState {
    /// State around an open store, driving the local Docker engine.
    pub async fn new(store: Store, config: Config) -> Result<Self, StoreError> {
        Self::with_parts(store, config, LoginThrottle::default(), Arc::new(ReconnectingDocker::default())).await
    }

    /// State with a custom throttle (tests use small limits).
    pub async fn with_throttle(store: Store, config: Config, throttle: LoginThrottle) -> Result<Self, StoreError> {
        Self::with_parts(store, config, throttle, Arc::new(ReconnectingDocker::default())).await
    }

    /// State from all its parts.
    pub async fn with_parts(
        store: Store,
        config: Config,
        throttle: LoginThrottle,
        engine: Arc<dyn Engine>,
    ) -> Result<Self, StoreError> {
        let store = Arc::new(store);
        let settings = reconcile::Settings {
            instance: store.instance_id().await?,
            publish_address: config.publish_address,
            ..reconcile::Settings::default()
        };
        let usage =
            Arc::new(crate::usage::UsageSampler::new(engine.clone(), settings.instance.clone(), config.sample_every));
        let reconciler = Reconciler::new(store.clone(), engine, settings);
        Ok(Self(Arc::new(Inner {
            store,
            config,
            throttle,
            metrics: Metrics::default(),
            reconciler,
            usage,
            started: std::time::Instant::now(),
        })))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
