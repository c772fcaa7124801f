//! What every request handler shares.

use crate::metrics::Metrics;
use crate::reconcile::engine::ReconnectingDocker;
use crate::reconcile::{self, Reconciler};
use crate::throttle::LoginThrottle;
use flvpc_host::Engine;
use flvpc_model::quota::{HostCapacity, HostCaps};
use flvpc_model::spec::{PortList, PublishRules, ReservedPort};
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
    /// Mark cookies `Secure` (set when flvpc sits behind a proxy that terminates TLS).
    pub secure_cookies: bool,
    /// flvpc serves TLS itself: cookies are `Secure` whatever `secure_cookies` says, and
    /// responses carry `Strict-Transport-Security`.
    pub tls: bool,
    /// Host address machine ports are published on when a mapping names none.
    pub publish_address: IpAddr,
    /// Further addresses a mapping's `address:` may name (`--allow-publish-addresses`).
    pub allow_publish_addresses: Vec<IpAddr>,
    /// Host ports handed out when a spec gives none; explicit ones inside it are allowed too.
    pub port_range: PortRange,
    /// Further host ports a spec may name (`--allow-host-ports`), below 1024 included.
    pub allow_host_ports: PortList,
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
    /// Most processes one machine may run at once (`None`: no limit).
    pub machine_pids_limit: Option<u32>,
    /// A bearer token that may read the per-machine series of /metrics (a scraper's), besides
    /// the superadmin's tokens. Anonymous /metrics shows only aggregate counters.
    pub metrics_token: Option<String>,
    /// Where the microVM engine finds its artifacts and runner (`None`: no microVMs).
    pub vm: Option<reconcile::engines::VmSetup>,
    /// The server's own SSH key for browser terminals (`None`: no terminals; its public line is
    /// then in no machine's authorized_keys). `flvpc serve` makes it once in the data dir.
    pub terminal_key: Option<crate::terminal::TerminalKey>,
    /// Where namespace networks get their /24s (`--network-pool`).
    pub network_pool: flvpc_host::subnets::AddressPool,
    /// The address the other hosts and people reach this server's host at (`--host-address`):
    /// the swarm's advertised address once hosts are added, and the address of this host's
    /// published ports in SSH commands. `None`: one host, and each client's own view of it.
    pub host_address: Option<IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5555)),
            data_dir: PathBuf::from("./data"),
            session_ttl: Duration::from_secs(12 * 3600),
            max_body_bytes: 1024 * 1024,
            secure_cookies: false,
            tls: false,
            publish_address: IpAddr::from([0, 0, 0, 0]),
            allow_publish_addresses: Vec::new(),
            port_range: PortRange { first: 20000, last: 29999 },
            allow_host_ports: PortList::default(),
            ssh_port: 2222,
            ssh_host_key: None,
            overcommit_cpu: None,
            overcommit_memory: None,
            sample_every: Duration::from_secs(5),
            machine_pids_limit: Some(reconcile::DEFAULT_PIDS_LIMIT),
            metrics_token: None,
            vm: None,
            terminal_key: None,
            network_pool: flvpc_host::subnets::AddressPool::DEFAULT,
            host_address: None,
        }
    }
}

impl Config {
    /// Where machines may publish host ports: the range, the allow-lists, and the server's own
    /// ports, which are never allowed.
    pub fn publish_rules(&self) -> PublishRules {
        PublishRules {
            range: (self.port_range.first, self.port_range.last),
            allowed: self.allow_host_ports.clone(),
            reserved: vec![
                ReservedPort { port: self.listen.port(), what: "flvpc's own panel and API port (--listen)".into() },
                ReservedPort { port: self.ssh_port, what: "flvpc's own SSH gateway port (--ssh-listen)".into() },
            ],
            default_address: self.publish_address,
            addresses: self.allow_publish_addresses.clone(),
        }
    }

    /// The host-wide overcommit caps (the host's capacity is read only when a cap is set).
    pub fn host_caps(&self) -> HostCaps {
        let (cpu_ratio, memory_ratio) = (self.overcommit_cpu, self.overcommit_memory);
        if cpu_ratio.is_none() && memory_ratio.is_none() {
            return HostCaps::default();
        }
        let host = flvpc_host::host_capacity();
        HostCaps { capacity: HostCapacity { cpus: host.cpus, memory_mb: host.memory_mb }, cpu_ratio, memory_ratio }
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
    /// Whether microVMs can be made here, with which accelerator.
    pub microvm: reconcile::MicroVmStatus,
    /// The browser terminals open now (their caps).
    pub terminals: crate::terminal::Terminals,
    /// The hosts that run machines, and their engines.
    pub hosts: crate::hosts::Hosts,
}

impl AppState {
    /// State around an open store, driving the local Docker engine.
    pub async fn new(store: Store, config: Config) -> Result<Self, StoreError> {
        Self::with_throttle(store, config, LoginThrottle::default()).await
    }

    /// State with a custom throttle (tests use small limits).
    pub async fn with_throttle(store: Store, config: Config, throttle: LoginThrottle) -> Result<Self, StoreError> {
        // The engine acts only on this database's machines (their instance label).
        let engine =
            Arc::new(ReconnectingDocker::new(store.instance_id().await?).with_network_pool(config.network_pool));
        Self::with_parts(store, config, throttle, engine).await
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
            pids_limit: config.machine_pids_limit,
            terminal_key: config.terminal_key.as_ref().map(|key| key.authorized_keys_line().to_owned()),
            ..reconcile::Settings::default()
        };
        let local = flvpc_model::Placement::new(settings.host.clone(), flvpc_model::EngineKind::Container);
        let mut engines = reconcile::Engines::new().with(local, engine);
        let mut microvm = reconcile::MicroVmStatus {
            detail: "flvpc was started without a VM artifacts directory (--vm-dir)".to_owned(),
            ..Default::default()
        };
        if let Some(vm) = &config.vm {
            let (with_vm, status) =
                engines.with_microvm(settings.host.clone(), &settings.instance, vm, config.network_pool).await;
            engines = with_vm;
            match &status.accelerator {
                Some(accel) => tracing::info!("microVMs: available, accelerator {accel} ({})", status.detail),
                None => tracing::info!("microVMs: not available: {}", status.detail),
            }
            microvm = status;
        }
        let hosts = crate::hosts::Hosts::new(
            store.clone(),
            engines.clone(),
            settings.instance.clone(),
            config.network_pool,
            config.host_address,
        );
        let reconciler = Reconciler::with_engines(store.clone(), engines, settings);
        let usage = Arc::new(crate::usage::UsageSampler::new(reconciler.engines().clone(), config.sample_every));
        Ok(Self(Arc::new(Inner {
            store,
            config,
            throttle,
            metrics: Metrics::default(),
            reconciler,
            usage,
            started: std::time::Instant::now(),
            microvm,
            terminals: crate::terminal::Terminals::default(),
            hosts,
        })))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
