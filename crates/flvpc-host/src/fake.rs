//! An in-memory [`Engine`] that records every call, for unit tests of the reconciler and
//! the server without Docker.
//!
//! It follows the Docker backend's rules where a reconciler could get them wrong: creating
//! needs the namespace network and a known image, names are unique, a network with machines
//! cannot be removed, `stop` of a stopped machine and `remove` of a missing one succeed.
//! Failures can be injected per operation, and the engine can be made "unreachable".

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::engine::{
    check_machine_name, check_namespace, container_name, network_name, Engine, EngineError, MachineDetails,
    MachineInfo, MachineSpec, MachineState, PublishedPort, DEFAULT_IMAGE, LABEL_MACHINE, LABEL_NAMESPACE,
};

/// The operations of [`Engine`], to pick which one an injected failure hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`Engine::ping`]
    Ping,
    /// [`Engine::image_exists`]
    ImageExists,
    /// [`Engine::ensure_network`]
    EnsureNetwork,
    /// [`Engine::remove_network`]
    RemoveNetwork,
    /// [`Engine::create_machine`]
    CreateMachine,
    /// [`Engine::start_machine`]
    StartMachine,
    /// [`Engine::stop_machine`]
    StopMachine,
    /// [`Engine::restart_machine`]
    RestartMachine,
    /// [`Engine::remove_machine`]
    RemoveMachine,
    /// [`Engine::list_machines`]
    ListMachines,
    /// [`Engine::inspect_machine`]
    InspectMachine,
    /// [`Engine::write_authorized_keys`]
    WriteAuthorizedKeys,
}

/// One recorded call, with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `ping()`
    Ping,
    /// `image_exists(image)`
    ImageExists(String),
    /// `ensure_network(namespace)`
    EnsureNetwork(String),
    /// `remove_network(namespace)`
    RemoveNetwork(String),
    /// `create_machine(spec)`
    CreateMachine(MachineSpec),
    /// `start_machine(namespace, name)`
    StartMachine(String, String),
    /// `stop_machine(namespace, name, timeout)`
    StopMachine(String, String, Duration),
    /// `restart_machine(namespace, name, timeout)`
    RestartMachine(String, String, Duration),
    /// `remove_machine(namespace, name)`
    RemoveMachine(String, String),
    /// `list_machines(namespace)`
    ListMachines(Option<String>),
    /// `inspect_machine(namespace, name)`
    InspectMachine(String, String),
    /// `write_authorized_keys(namespace, name, content)`
    WriteAuthorizedKeys(String, String, String),
}

impl Call {
    /// Which operation this call is.
    pub fn op(&self) -> Op {
        match self {
            Call::Ping => Op::Ping,
            Call::ImageExists(_) => Op::ImageExists,
            Call::EnsureNetwork(_) => Op::EnsureNetwork,
            Call::RemoveNetwork(_) => Op::RemoveNetwork,
            Call::CreateMachine(_) => Op::CreateMachine,
            Call::StartMachine(..) => Op::StartMachine,
            Call::StopMachine(..) => Op::StopMachine,
            Call::RestartMachine(..) => Op::RestartMachine,
            Call::RemoveMachine(..) => Op::RemoveMachine,
            Call::ListMachines(_) => Op::ListMachines,
            Call::InspectMachine(..) => Op::InspectMachine,
            Call::WriteAuthorizedKeys(..) => Op::WriteAuthorizedKeys,
        }
    }
}

#[derive(Debug, Clone)]
struct FakeMachine {
    spec: MachineSpec,
    id: String,
    ip: String,
    state: MachineState,
    /// Host ports as bound (ephemeral ones resolved at creation, like a fixed allocation).
    ports: Vec<PublishedPort>,
    authorized_keys: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    images: BTreeSet<String>,
    networks: BTreeSet<String>,
    machines: BTreeMap<(String, String), FakeMachine>,
    calls: Vec<Call>,
    failures: VecDeque<(Op, EngineError)>,
    unreachable: bool,
    next_id: u64,
    next_port: u16,
}

/// The in-memory engine. Thread safe; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct FakeEngine {
    state: Mutex<State>,
}

impl FakeEngine {
    /// An engine that knows the image [`DEFAULT_IMAGE`] and nothing else.
    pub fn new() -> Self {
        let engine = Self::default();
        engine.add_image(DEFAULT_IMAGE);
        engine
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide the original failure.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `image` known, as if built or loaded.
    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_owned());
    }

    /// Makes every call fail with [`EngineError::Unreachable`] (dockerd down) or work again.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
    }

    /// The next call of `op` fails with `error` (queued: several can be injected).
    pub fn fail_next(&self, op: Op, error: EngineError) {
        self.lock().failures.push_back((op, error));
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Every call so far, forgetting them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    /// The calls that change something (no ping, list, inspect or image check), in order.
    pub fn mutations(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| !matches!(c.op(), Op::Ping | Op::ListMachines | Op::InspectMachine | Op::ImageExists))
            .collect()
    }

    /// The namespaces whose network exists.
    pub fn networks(&self) -> Vec<String> {
        self.lock().networks.iter().cloned().collect()
    }

    /// The current `authorized_keys` of a machine (`None`: never written or no machine).
    pub fn authorized_keys(&self, namespace: &str, name: &str) -> Option<String> {
        self.lock().machines.get(&key(namespace, name)).and_then(|m| m.authorized_keys.clone())
    }

    /// The spec a machine was created with.
    pub fn spec(&self, namespace: &str, name: &str) -> Option<MachineSpec> {
        self.lock().machines.get(&key(namespace, name)).map(|m| m.spec.clone())
    }

    /// Changes a machine's state behind flvpc's back (a crash, `docker stop` by hand, a reboot).
    pub fn set_state(&self, namespace: &str, name: &str, state: MachineState) {
        if let Some(m) = self.lock().machines.get_mut(&key(namespace, name)) {
            m.state = state;
        }
    }

    /// Deletes a machine behind flvpc's back (`docker rm -f` by hand).
    pub fn forget_machine(&self, namespace: &str, name: &str) {
        self.lock().machines.remove(&key(namespace, name));
    }

    /// Records the call, then applies an injected failure or the unreachable switch.
    fn enter(&self, call: Call) -> Result<MutexGuard<'_, State>, EngineError> {
        let mut state = self.lock();
        let op = call.op();
        state.calls.push(call);
        if state.unreachable {
            return Err(EngineError::Unreachable {
                socket: "fake".into(),
                detail: "FakeEngine::set_unreachable(true)".into(),
            });
        }
        if let Some(pos) = state.failures.iter().position(|(o, _)| *o == op) {
            if let Some((_, error)) = state.failures.remove(pos) {
                return Err(error);
            }
        }
        Ok(state)
    }
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_owned(), name.to_owned())
}

fn info(m: &FakeMachine) -> MachineInfo {
    let running = m.state == MachineState::Running;
    let mut labels = m.spec.labels.clone();
    labels.insert(LABEL_NAMESPACE.into(), m.spec.namespace.clone());
    labels.insert(LABEL_MACHINE.into(), m.spec.name.clone());
    MachineInfo {
        namespace: m.spec.namespace.clone(),
        name: m.spec.name.clone(),
        container: m.spec.container_name(),
        id: m.id.clone(),
        image: m.spec.image.clone(),
        state: m.state,
        // Like Docker: address and published ports exist only while running.
        ip: running.then(|| m.ip.clone()),
        ports: if running { m.ports.clone() } else { Vec::new() },
        labels,
    }
}

fn missing(namespace: &str, name: &str) -> EngineError {
    EngineError::MachineNotFound { container: container_name(namespace, name) }
}

#[async_trait]
impl Engine for FakeEngine {
    async fn ping(&self) -> Result<(), EngineError> {
        self.enter(Call::Ping).map(|_| ())
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        let state = self.enter(Call::ImageExists(image.to_owned()))?;
        Ok(state.images.contains(image))
    }

    async fn ensure_network(&self, namespace: &str) -> Result<(), EngineError> {
        let mut state = self.enter(Call::EnsureNetwork(namespace.to_owned()))?;
        check_namespace(namespace)?;
        state.networks.insert(namespace.to_owned());
        Ok(())
    }

    async fn remove_network(&self, namespace: &str) -> Result<(), EngineError> {
        let mut state = self.enter(Call::RemoveNetwork(namespace.to_owned()))?;
        check_namespace(namespace)?;
        let users: Vec<String> = state
            .machines
            .values()
            .filter(|m| m.spec.namespace == namespace)
            .map(|m| m.spec.container_name())
            .collect();
        if !users.is_empty() {
            return Err(EngineError::NetworkInUse { network: network_name(namespace), machines: users.join(", ") });
        }
        state.networks.remove(namespace);
        Ok(())
    }

    async fn create_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        let mut state = self.enter(Call::CreateMachine(spec.clone()))?;
        spec.validate()?;
        let k = key(&spec.namespace, &spec.name);
        // Docker names are global: `<ns>-<name>` may collide across namespaces too.
        let container = spec.container_name();
        if state.machines.contains_key(&k) || state.machines.values().any(|m| m.spec.container_name() == container) {
            return Err(EngineError::MachineExists { container });
        }
        if !state.images.contains(&spec.image) {
            return Err(EngineError::ImageNotFound { image: spec.image.clone() });
        }
        if !state.networks.contains(&spec.namespace) {
            return Err(EngineError::NetworkNotFound { network: network_name(&spec.namespace) });
        }
        state.next_id += 1;
        let n = state.next_id;
        let mut ports = Vec::new();
        for p in &spec.ports {
            let host_port = if p.host_port == 0 {
                state.next_port = state.next_port.max(32767) + 1;
                state.next_port
            } else {
                p.host_port
            };
            ports.push(PublishedPort {
                container_port: p.container_port,
                host_port,
                protocol: p.protocol,
                host_ip: Some(p.publish_address.map(|a| a.to_string()).unwrap_or_else(|| "0.0.0.0".into())),
            });
        }
        let id = format!("{n:064x}");
        let machine = FakeMachine {
            spec: spec.clone(),
            id: id.clone(),
            ip: format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, (n & 0xff).max(2)),
            state: MachineState::Created,
            ports,
            authorized_keys: None,
        };
        state.machines.insert(k, machine);
        Ok(id)
    }

    async fn start_machine(&self, namespace: &str, name: &str) -> Result<(), EngineError> {
        let mut state = self.enter(Call::StartMachine(namespace.to_owned(), name.to_owned()))?;
        check_machine_name(name)?;
        let m = state.machines.get_mut(&key(namespace, name)).ok_or_else(|| missing(namespace, name))?;
        m.state = MachineState::Running;
        Ok(())
    }

    async fn stop_machine(&self, namespace: &str, name: &str, timeout: Duration) -> Result<(), EngineError> {
        let mut state = self.enter(Call::StopMachine(namespace.to_owned(), name.to_owned(), timeout))?;
        let m = state.machines.get_mut(&key(namespace, name)).ok_or_else(|| missing(namespace, name))?;
        if m.state != MachineState::Created {
            m.state = MachineState::Stopped;
        }
        Ok(())
    }

    async fn restart_machine(&self, namespace: &str, name: &str, timeout: Duration) -> Result<(), EngineError> {
        let mut state = self.enter(Call::RestartMachine(namespace.to_owned(), name.to_owned(), timeout))?;
        let m = state.machines.get_mut(&key(namespace, name)).ok_or_else(|| missing(namespace, name))?;
        m.state = MachineState::Running;
        Ok(())
    }

    async fn remove_machine(&self, namespace: &str, name: &str) -> Result<(), EngineError> {
        let mut state = self.enter(Call::RemoveMachine(namespace.to_owned(), name.to_owned()))?;
        state.machines.remove(&key(namespace, name));
        Ok(())
    }

    async fn list_machines(&self, namespace: Option<&str>) -> Result<Vec<MachineInfo>, EngineError> {
        let state = self.enter(Call::ListMachines(namespace.map(str::to_owned)))?;
        Ok(state.machines.values().filter(|m| namespace.is_none_or(|ns| m.spec.namespace == ns)).map(info).collect())
    }

    async fn inspect_machine(&self, namespace: &str, name: &str) -> Result<Option<MachineDetails>, EngineError> {
        let state = self.enter(Call::InspectMachine(namespace.to_owned(), name.to_owned()))?;
        Ok(state.machines.get(&key(namespace, name)).map(|m| MachineDetails {
            info: info(m),
            hostname: m.spec.name.clone(),
            cpus: m.spec.cpus,
            cpu_cap: m.spec.cpu_cap,
            memory_mb: m.spec.memory_mb,
            configured_ports: m.spec.ports.clone(),
            exit_code: (m.state == MachineState::Stopped).then_some(0),
            pid: None,
            error: None,
        }))
    }

    async fn write_authorized_keys(&self, namespace: &str, name: &str, content: &str) -> Result<(), EngineError> {
        let mut state =
            self.enter(Call::WriteAuthorizedKeys(namespace.to_owned(), name.to_owned(), content.to_owned()))?;
        let m = state.machines.get_mut(&key(namespace, name)).ok_or_else(|| missing(namespace, name))?;
        m.authorized_keys = Some(content.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PortMapping;
    use std::sync::Arc;

    fn spec(ns: &str, name: &str) -> MachineSpec {
        let mut s = MachineSpec::new(ns, name, DEFAULT_IMAGE);
        s.ports = vec![PortMapping::tcp(22, 0)];
        s
    }

    #[tokio::test]
    async fn lifecycle_follows_docker_rules() {
        let engine = FakeEngine::new();
        let err = engine.create_machine(&spec("team1", "node0")).await.expect_err("no network yet");
        assert!(matches!(err, EngineError::NetworkNotFound { .. }));
        engine.ensure_network("team1").await.expect("network");
        engine.ensure_network("team1").await.expect("idempotent");
        engine.create_machine(&spec("team1", "node0")).await.expect("create");
        let err = engine.create_machine(&spec("team1", "node0")).await.expect_err("duplicate");
        assert!(matches!(err, EngineError::MachineExists { .. }));
        let mut other = spec("team1", "node1");
        other.image = "nope:1".into();
        assert!(matches!(engine.create_machine(&other).await.expect_err("image"), EngineError::ImageNotFound { .. }));

        let listed = engine.list_machines(Some("team1")).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, MachineState::Created);
        assert!(listed[0].ports.is_empty(), "no ports before start");
        engine.start_machine("team1", "node0").await.expect("start");
        let listed = engine.list_machines(None).await.expect("list");
        assert_eq!(listed[0].state, MachineState::Running);
        assert_eq!(listed[0].ports[0].container_port, 22);
        assert!(listed[0].ip.is_some());

        engine.write_authorized_keys("team1", "node0", "ssh-ed25519 AAAA a\n").await.expect("keys");
        assert_eq!(engine.authorized_keys("team1", "node0").as_deref(), Some("ssh-ed25519 AAAA a\n"));

        assert!(matches!(engine.remove_network("team1").await.expect_err("in use"), EngineError::NetworkInUse { .. }));
        engine.stop_machine("team1", "node0", Duration::from_secs(1)).await.expect("stop");
        engine.stop_machine("team1", "node0", Duration::from_secs(1)).await.expect("stop again");
        engine.remove_machine("team1", "node0").await.expect("remove");
        engine.remove_machine("team1", "node0").await.expect("remove again");
        engine.remove_network("team1").await.expect("network gone");
        assert!(engine.networks().is_empty());
        assert!(engine.list_machines(None).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn failures_and_recording() {
        let engine: Arc<dyn Engine> = Arc::new(FakeEngine::new());
        let fake = FakeEngine::new();
        fake.fail_next(Op::StartMachine, EngineError::PortUnavailable { container: "x".into(), detail: "y".into() });
        fake.ensure_network("a").await.expect("network");
        fake.create_machine(&spec("a", "m")).await.expect("create");
        assert!(fake.start_machine("a", "m").await.is_err());
        fake.start_machine("a", "m").await.expect("second start works");
        fake.set_unreachable(true);
        assert!(fake.ping().await.expect_err("down").is_transient());
        fake.set_unreachable(false);
        assert_eq!(
            fake.mutations().iter().map(Call::op).collect::<Vec<_>>(),
            vec![Op::EnsureNetwork, Op::CreateMachine, Op::StartMachine, Op::StartMachine]
        );
        assert_eq!(fake.take_calls().len(), 5);
        assert!(fake.calls().is_empty());
        engine.ping().await.expect("object safe and usable behind dyn");
    }
}
