//! An [`Engine`] that connects to Docker when first needed and again after a
//! failure, so that flvpc serves its panel even while dockerd is down and picks
//! the engine up when it comes back. The local engine is found as Docker's own tools find it
//! (`DOCKER_HOST`, else the usual socket); an added host's engine by its endpoint. In a
//! swarm (several hosts), namespace networks are overlays made on the manager's engine.

use async_trait::async_trait;
use flvpc_host::subnets::AddressPool;
use flvpc_host::{
    DockerEngine, Engine, EngineError, EngineTls, MachineDetails, MachineEvents, MachineInfo, MachineSpec,
};
use flvpc_model::EngineEndpoint;
use flvpc_model::{MachineKey, NamespaceName};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Where the engine is: the local one, or an added host's endpoint.
#[derive(Debug, Clone)]
enum Target {
    Local,
    Endpoint(EngineEndpoint, Option<EngineTls>),
}

/// The local engine as `DOCKER_HOST` names it (`unix://…`, or `tcp://` on loopback), as Docker's
/// own tools find it; `None`: the usual socket.
fn local_endpoint() -> Result<Option<EngineEndpoint>, EngineError> {
    match std::env::var("DOCKER_HOST") {
        Ok(value) if !value.is_empty() => EngineEndpoint::parse(&value)
            .map(Some)
            .map_err(|e| EngineError::InvalidEndpoint { detail: format!("DOCKER_HOST: {e}") }),
        _ => Ok(None),
    }
}

/// Which networks the engine makes: bridges of its own (one host), or overlays on a swarm.
#[derive(Clone)]
enum Networks {
    Bridges,
    /// This engine is the swarm's manager: it makes the overlays itself.
    SwarmManager,
    /// Another engine is the manager.
    SwarmWorker(Arc<ReconnectingDocker>),
}

/// The Docker engine, connected lazily, acting for one flvpc instance.
pub struct ReconnectingDocker {
    instance: String,
    network_pool: AddressPool,
    target: Target,
    networks: Networks,
    current: Mutex<Option<Arc<DockerEngine>>>,
}

impl ReconnectingDocker {
    /// The local engine for the flvpc instance `instance` (its machines only).
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            network_pool: AddressPool::DEFAULT,
            target: Target::Local,
            networks: Networks::Bridges,
            current: Mutex::new(None),
        }
    }

    /// The engine at `endpoint` (an added host), with TLS client files for a remote one.
    pub fn at(instance: impl Into<String>, endpoint: EngineEndpoint, tls: Option<EngineTls>) -> Self {
        Self { target: Target::Endpoint(endpoint, tls), ..Self::new(instance) }
    }

    /// The same engine, cutting namespace networks from `pool`.
    pub fn with_network_pool(mut self, pool: AddressPool) -> Self {
        self.network_pool = pool;
        self
    }

    /// The same engine as the manager of a swarm: it makes namespace networks as overlays.
    pub fn as_swarm_manager(mut self) -> Self {
        self.networks = Networks::SwarmManager;
        self
    }

    /// The same engine in the swarm whose manager is `manager`: namespace networks are overlays
    /// made there, which this engine attaches its machines to.
    pub fn in_swarm_of(mut self, manager: Arc<ReconnectingDocker>) -> Self {
        self.networks = Networks::SwarmWorker(manager);
        self
    }

    /// The connected engine (connecting first if needed), for swarm formation and host facts.
    pub async fn connected(&self) -> Result<Arc<DockerEngine>, EngineError> {
        self.get().await
    }

    async fn connect(&self) -> Result<DockerEngine, EngineError> {
        let engine = match &self.target {
            Target::Local => match local_endpoint()? {
                Some(endpoint) => DockerEngine::connect_to(&endpoint, None).await?,
                None => DockerEngine::connect().await?,
            },
            Target::Endpoint(endpoint, tls) => DockerEngine::connect_to(endpoint, tls.as_ref()).await?,
        };
        let engine = engine.for_instance(self.instance.clone()).with_network_pool(self.network_pool);
        Ok(match &self.networks {
            Networks::Bridges => engine,
            Networks::SwarmManager => {
                let manager = Arc::new(engine.clone());
                engine.with_overlay(manager)
            }
            Networks::SwarmWorker(manager) => {
                let manager = Box::pin(manager.get()).await?;
                engine.with_overlay(manager)
            }
        })
    }

    async fn get(&self) -> Result<Arc<DockerEngine>, EngineError> {
        let mut current = self.current.lock().await;
        if let Some(engine) = current.as_ref() {
            return Ok(engine.clone());
        }
        let engine = Arc::new(self.connect().await?);
        // Namespace networks made before this process (adopted machines) get flvpc's own wall
        // before anything else happens. Without it only Docker's rules stand: say so loudly.
        match engine.protect_existing_networks().await {
            Ok(count) => tracing::debug!("{count} namespace networks walled off"),
            Err(e) => tracing::error!("{e}"),
        }
        *current = Some(engine.clone());
        Ok(engine)
    }

    /// Drops the connection after a transport failure so the next call reconnects.
    async fn check<T>(&self, result: Result<T, EngineError>) -> Result<T, EngineError> {
        if let Err(err) = &result {
            if err.is_transient() {
                *self.current.lock().await = None;
            }
        }
        result
    }
}

#[async_trait]
impl Engine for ReconnectingDocker {
    async fn ping(&self) -> Result<(), EngineError> {
        let r = self.get().await?.ping().await;
        self.check(r).await
    }
    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        let r = self.get().await?.image_exists(image).await;
        self.check(r).await
    }
    async fn ensure_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        let r = self.get().await?.ensure_network(namespace).await;
        self.check(r).await
    }
    async fn remove_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        let r = self.get().await?.remove_network(namespace).await;
        self.check(r).await
    }
    async fn create_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        let r = self.get().await?.create_machine(spec).await;
        self.check(r).await
    }
    async fn start_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        let r = self.get().await?.start_machine(key).await;
        self.check(r).await
    }
    async fn create_and_start_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        let r = self.get().await?.create_and_start_machine(spec).await;
        self.check(r).await
    }
    async fn stop_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        let r = self.get().await?.stop_machine(key, timeout).await;
        self.check(r).await
    }
    async fn restart_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        let r = self.get().await?.restart_machine(key, timeout).await;
        self.check(r).await
    }
    async fn remove_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        let r = self.get().await?.remove_machine(key).await;
        self.check(r).await
    }
    async fn list_machines(&self, namespace: Option<&NamespaceName>) -> Result<Vec<MachineInfo>, EngineError> {
        let r = self.get().await?.list_machines(namespace).await;
        self.check(r).await
    }
    async fn inspect_machine(&self, key: &MachineKey) -> Result<Option<MachineDetails>, EngineError> {
        let r = self.get().await?.inspect_machine(key).await;
        self.check(r).await
    }
    async fn write_authorized_keys(&self, key: &MachineKey, content: &str) -> Result<(), EngineError> {
        let r = self.get().await?.write_authorized_keys(key, content).await;
        self.check(r).await
    }
    async fn write_authorized_keys_to(&self, inspected: &MachineDetails, content: &str) -> Result<(), EngineError> {
        let r = self.get().await?.write_authorized_keys_to(inspected, content).await;
        self.check(r).await
    }
    async fn machine_events(&self) -> Result<Option<MachineEvents>, EngineError> {
        let r = self.get().await?.machine_events().map(Some);
        self.check(r).await
    }
    fn on_this_kernel(&self) -> bool {
        // A TCP endpoint is another machine (loopback TCP is this kernel, but flvpc cannot tell
        // a tunnel from a local engine: it assumes another machine and samples nothing).
        !matches!(&self.target, Target::Endpoint(EngineEndpoint::Tcp(_), _))
    }
    async fn console(&self, key: &MachineKey, lines: usize) -> Result<String, EngineError> {
        let r = self.get().await?.journal_tail(key, lines).await;
        self.check(r).await
    }
}
