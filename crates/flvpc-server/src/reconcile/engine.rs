//! An [`Engine`] that connects to Docker when first needed and again after a
//! failure, so that flvpc serves its panel even while dockerd is down and picks
//! the engine up when it comes back.

use async_trait::async_trait;
use flvpc_host::subnets::AddressPool;
use flvpc_host::{DockerEngine, Engine, EngineError, MachineDetails, MachineEvents, MachineInfo, MachineSpec};
use flvpc_model::{MachineKey, NamespaceName};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The Docker engine, connected lazily, acting for one flvpc instance.
pub struct ReconnectingDocker {
    instance: String,
    network_pool: AddressPool,
    current: Mutex<Option<Arc<DockerEngine>>>,
}

impl ReconnectingDocker {
    /// An engine for the flvpc instance `instance` (its machines only).
    pub fn new(instance: impl Into<String>) -> Self {
        Self { instance: instance.into(), network_pool: AddressPool::DEFAULT, current: Mutex::new(None) }
    }

    /// The same engine, cutting namespace networks from `pool`.
    pub fn with_network_pool(mut self, pool: AddressPool) -> Self {
        self.network_pool = pool;
        self
    }

    async fn get(&self) -> Result<Arc<DockerEngine>, EngineError> {
        let mut current = self.current.lock().await;
        if let Some(engine) = current.as_ref() {
            return Ok(engine.clone());
        }
        let engine = Arc::new(
            DockerEngine::connect().await?.for_instance(self.instance.clone()).with_network_pool(self.network_pool),
        );
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
    async fn console(&self, key: &MachineKey, lines: usize) -> Result<String, EngineError> {
        let r = self.get().await?.journal_tail(key, lines).await;
        self.check(r).await
    }
}
