//! An in-memory [`Engine`] that records every call, for unit tests of the reconciler and
//! the server without Docker.
//!
//! It follows the Docker backend's rules where a reconciler could get them wrong: creating
//! needs the namespace network and a known image, names are unique, a network with machines
//! cannot be removed, `stop` of a stopped machine and `remove` of a missing one succeed.
//! Failures can be injected per operation or at the n-th call concerning a namespace, and the
//! engine can be made "unreachable". Containers of another flvpc instance can be planted (the
//! engine never lists or touches them, like `DockerEngine::for_instance`), every call on a
//! machine can be slowed down, and the most calls ever in flight on one machine are counted
//! (to prove the reconciler's one-reconcile-per-machine rule).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::engine::{
    container_name, network_name, Engine, EngineError, MachineDetails, MachineInfo, MachineSpec, MachineState,
    PublishedPort, DEFAULT_IMAGE, LABEL_INSTANCE, LABEL_MACHINE, LABEL_NAMESPACE,
};
use flvpc_model::{MachineKey, NamespaceName};

/// The instance label the fake engine gives its machines.
pub const FAKE_INSTANCE: &str = "fake";

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
    EnsureNetwork(NamespaceName),
    /// `remove_network(namespace)`
    RemoveNetwork(NamespaceName),
    /// `create_machine(spec)`
    CreateMachine(MachineSpec),
    /// `start_machine(key)`
    StartMachine(MachineKey),
    /// `stop_machine(key, timeout)`
    StopMachine(MachineKey, Duration),
    /// `restart_machine(key, timeout)`
    RestartMachine(MachineKey, Duration),
    /// `remove_machine(key)`
    RemoveMachine(MachineKey),
    /// `list_machines(namespace)`
    ListMachines(Option<NamespaceName>),
    /// `inspect_machine(key)`
    InspectMachine(MachineKey),
    /// `write_authorized_keys(key, content)`
    WriteAuthorizedKeys(MachineKey, String),
}

impl Call {
    /// The namespace the call concerns, if any (`list_machines(None)` and `ping` have none).
    pub fn namespace(&self) -> Option<&NamespaceName> {
        match self {
            Call::Ping | Call::ImageExists(_) | Call::ListMachines(None) => None,
            Call::EnsureNetwork(ns) | Call::RemoveNetwork(ns) | Call::ListMachines(Some(ns)) => Some(ns),
            Call::CreateMachine(spec) => Some(&spec.key.namespace),
            Call::StartMachine(key)
            | Call::StopMachine(key, _)
            | Call::RestartMachine(key, _)
            | Call::RemoveMachine(key)
            | Call::InspectMachine(key)
            | Call::WriteAuthorizedKeys(key, _) => Some(&key.namespace),
        }
    }

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
    /// False for a container "made by an older flvpc" (no isolation label).
    isolated: bool,
    /// The flvpc instance label: only [`FAKE_INSTANCE`]'s containers are this engine's own.
    instance: String,
    /// How often it was started or restarted.
    boots: u32,
}

impl FakeMachine {
    fn ours(&self) -> bool {
        self.instance == FAKE_INSTANCE
    }
}

#[derive(Debug, Default)]
struct State {
    images: BTreeSet<String>,
    networks: BTreeSet<NamespaceName>,
    machines: BTreeMap<MachineKey, FakeMachine>,
    calls: Vec<Call>,
    failures: VecDeque<(Op, EngineError)>,
    /// Failures at the n-th call (counted down) concerning a namespace.
    nth_failures: Vec<(NamespaceName, usize, EngineError)>,
    unreachable: bool,
    next_id: u64,
    next_port: u16,
}

/// The in-memory engine. Thread safe; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct FakeEngine {
    state: Mutex<State>,
    /// Calls in flight per machine; a lock of its own, so that it is never taken while `state` is held.
    busy: Mutex<Busy>,
}

#[derive(Debug, Default)]
struct Busy {
    delay: Duration,
    in_flight: HashMap<MachineKey, usize>,
    most: usize,
}

/// A call on a machine in flight; counted down when dropped.
struct InFlight<'a> {
    engine: &'a FakeEngine,
    key: MachineKey,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut busy = self.engine.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = busy.in_flight.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
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

    /// The `n`-th call (0: the next) from now that concerns namespace `ns` fails with `error`.
    /// A test that gives each scenario a namespace of its own can so break any step of it.
    pub fn fail_nth_in(&self, ns: &NamespaceName, n: usize, error: EngineError) {
        self.lock().nth_failures.push((ns.clone(), n, error));
    }

    /// Makes every call on a machine wait `delay` before it acts (while counted as in flight).
    pub fn set_call_delay(&self, delay: Duration) {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).delay = delay;
    }

    /// The most calls ever in flight at once on one machine.
    pub fn most_calls_in_flight_on_one_machine(&self) -> usize {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).most
    }

    /// Plants a container of another flvpc instance named and labelled as machine `key`: this
    /// engine never lists it, refuses to act on it ([`EngineError::NotOurs`]) and cannot create
    /// a machine of the same name, like the Docker backend acting for one instance.
    pub fn add_foreign_machine(&self, key: &MachineKey, instance: &str, state: MachineState) {
        let mut st = self.lock();
        st.next_id += 1;
        let n = st.next_id;
        let machine = FakeMachine {
            spec: MachineSpec::new(key.clone(), DEFAULT_IMAGE),
            id: format!("{n:064x}"),
            ip: "10.255.0.2".into(),
            state,
            ports: Vec::new(),
            authorized_keys: None,
            isolated: true,
            instance: instance.to_owned(),
            boots: 0,
        };
        st.machines.insert(key.clone(), machine);
    }

    /// The state of a container, this instance's or a planted foreign one (`None`: no container).
    pub fn state_of(&self, key: &MachineKey) -> Option<MachineState> {
        self.lock().machines.get(key).map(|m| m.state)
    }

    /// How often a machine was started or restarted (0 when missing).
    pub fn boots(&self, key: &MachineKey) -> u32 {
        self.lock().machines.get(key).map_or(0, |m| m.boots)
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
    pub fn networks(&self) -> Vec<NamespaceName> {
        self.lock().networks.iter().cloned().collect()
    }

    /// The current `authorized_keys` of a machine (`None`: never written or no machine).
    pub fn authorized_keys(&self, key: &MachineKey) -> Option<String> {
        self.lock().machines.get(key).and_then(|m| m.authorized_keys.clone())
    }

    /// Overwrites a machine's `authorized_keys` behind flvpc's back (a member planting a key).
    pub fn plant_authorized_keys(&self, key: &MachineKey, content: &str) {
        if let Some(m) = self.lock().machines.get_mut(key) {
            m.authorized_keys = Some(content.to_owned());
        }
    }

    /// Makes a machine look as if an older flvpc, without cgroup isolation, had created it.
    pub fn made_by_older_flvpc(&self, key: &MachineKey) {
        if let Some(m) = self.lock().machines.get_mut(key) {
            m.isolated = false;
        }
    }

    /// The spec a machine was created with.
    pub fn spec(&self, key: &MachineKey) -> Option<MachineSpec> {
        self.lock().machines.get(key).map(|m| m.spec.clone())
    }

    /// Changes a machine's state behind flvpc's back (a crash, `docker stop` by hand, a reboot).
    pub fn set_state(&self, key: &MachineKey, state: MachineState) {
        if let Some(m) = self.lock().machines.get_mut(key) {
            m.state = state;
        }
    }

    /// Deletes a machine behind flvpc's back (`docker rm -f` by hand).
    pub fn forget_machine(&self, key: &MachineKey) {
        self.lock().machines.remove(key);
    }

    /// Counts a call on `key` as in flight until the result is dropped, after the call delay.
    async fn occupy(&self, key: &MachineKey) -> InFlight<'_> {
        let delay = {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            let n = busy.in_flight.entry(key.clone()).or_default();
            *n += 1;
            let n = *n;
            busy.most = busy.most.max(n);
            busy.delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        InFlight { engine: self, key: key.clone() }
    }

    /// Records the call, then applies an injected failure or the unreachable switch.
    fn enter(&self, call: Call) -> Result<MutexGuard<'_, State>, EngineError> {
        let mut state = self.lock();
        let op = call.op();
        let ns = call.namespace().cloned();
        state.calls.push(call);
        if let Some(ns) = ns {
            let mut hit = None;
            for (i, (scope, n, _)) in state.nth_failures.iter_mut().enumerate() {
                if *scope == ns {
                    if *n == 0 {
                        hit = Some(i);
                        break;
                    }
                    *n -= 1;
                }
            }
            if let Some(i) = hit {
                let (_, _, error) = state.nth_failures.remove(i);
                return Err(error);
            }
        }
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

fn info(m: &FakeMachine) -> MachineInfo {
    let running = m.state == MachineState::Running;
    let mut labels = m.spec.labels.clone();
    labels.insert(LABEL_NAMESPACE.into(), m.spec.key.namespace.to_string());
    labels.insert(LABEL_MACHINE.into(), m.spec.key.name.to_string());
    labels.insert(LABEL_INSTANCE.into(), FAKE_INSTANCE.into());
    if m.isolated {
        labels.insert(crate::engine::LABEL_ISOLATION.into(), crate::engine::ISOLATION.into());
    }
    MachineInfo {
        key: m.spec.key.clone(),
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

fn missing(key: &MachineKey) -> EngineError {
    EngineError::MachineNotFound { container: container_name(key) }
}

/// This instance's machine `key`: `None` when there is no container, an error when the
/// container belongs to another instance (never touched, like the Docker backend).
fn own<'a>(state: &'a mut State, key: &MachineKey) -> Result<Option<&'a mut FakeMachine>, EngineError> {
    match state.machines.get_mut(key) {
        Some(m) if !m.ours() => Err(EngineError::NotOurs { object: container_name(key) }),
        found => Ok(found),
    }
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

    async fn ensure_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        let mut state = self.enter(Call::EnsureNetwork(namespace.clone()))?;
        state.networks.insert(namespace.clone());
        Ok(())
    }

    async fn remove_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        let mut state = self.enter(Call::RemoveNetwork(namespace.clone()))?;
        let users: Vec<String> = state
            .machines
            .values()
            .filter(|m| &m.spec.key.namespace == namespace)
            .map(|m| m.spec.container_name())
            .collect();
        if !users.is_empty() {
            return Err(EngineError::NetworkInUse { network: network_name(namespace), machines: users.join(", ") });
        }
        state.networks.remove(namespace);
        Ok(())
    }

    async fn create_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        let _busy = self.occupy(&spec.key).await;
        let mut state = self.enter(Call::CreateMachine(spec.clone()))?;
        spec.validate()?;
        let k = spec.key.clone();
        // Docker names are global, so a container name must never be shared by two keys.
        let container = spec.container_name();
        if state.machines.contains_key(&k) || state.machines.values().any(|m| m.spec.container_name() == container) {
            return Err(EngineError::MachineExists { container });
        }
        if !state.images.contains(&spec.image) {
            return Err(EngineError::ImageNotFound { image: spec.image.clone() });
        }
        if !state.networks.contains(&spec.key.namespace) {
            return Err(EngineError::NetworkNotFound { network: network_name(&spec.key.namespace) });
        }
        state.next_id += 1;
        let n = state.next_id;
        let mut ports = Vec::new();
        for p in &spec.ports {
            let host_port = match p.host_port {
                Some(port) => port,
                None => {
                    state.next_port = state.next_port.max(32767) + 1;
                    state.next_port
                }
            };
            ports.push(PublishedPort {
                container_port: p.container_port,
                host_port,
                protocol: p.protocol,
                host_ip: Some(p.address.map(|a| a.to_string()).unwrap_or_else(|| "0.0.0.0".into())),
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
            isolated: true,
            instance: FAKE_INSTANCE.into(),
            boots: 0,
        };
        state.machines.insert(k, machine);
        Ok(id)
    }

    async fn start_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        let _busy = self.occupy(key).await;
        let mut state = self.enter(Call::StartMachine(key.clone()))?;
        let m = own(&mut state, key)?.ok_or_else(|| missing(key))?;
        // Like Docker: starting a running container changes nothing.
        if m.state != MachineState::Running {
            m.state = MachineState::Running;
            m.boots += 1;
        }
        Ok(())
    }

    async fn stop_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        let _busy = self.occupy(key).await;
        let mut state = self.enter(Call::StopMachine(key.clone(), timeout))?;
        let m = own(&mut state, key)?.ok_or_else(|| missing(key))?;
        if m.state != MachineState::Created {
            m.state = MachineState::Stopped;
        }
        Ok(())
    }

    async fn restart_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        let _busy = self.occupy(key).await;
        let mut state = self.enter(Call::RestartMachine(key.clone(), timeout))?;
        let m = own(&mut state, key)?.ok_or_else(|| missing(key))?;
        m.state = MachineState::Running;
        m.boots += 1;
        Ok(())
    }

    async fn remove_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        let _busy = self.occupy(key).await;
        let mut state = self.enter(Call::RemoveMachine(key.clone()))?;
        own(&mut state, key)?;
        state.machines.remove(key);
        Ok(())
    }

    async fn list_machines(&self, namespace: Option<&NamespaceName>) -> Result<Vec<MachineInfo>, EngineError> {
        let state = self.enter(Call::ListMachines(namespace.cloned()))?;
        Ok(state
            .machines
            .values()
            .filter(|m| m.ours() && namespace.is_none_or(|ns| &m.spec.key.namespace == ns))
            .map(info)
            .collect())
    }

    async fn inspect_machine(&self, key: &MachineKey) -> Result<Option<MachineDetails>, EngineError> {
        let _busy = self.occupy(key).await;
        let mut state = self.enter(Call::InspectMachine(key.clone()))?;
        Ok(own(&mut state, key)?.map(|m| MachineDetails {
            info: info(m),
            hostname: m.spec.key.name.to_string(),
            cpus: m.spec.cpus,
            cpu_cap: m.spec.cpu_cap,
            memory_mb: m.spec.memory_mb,
            configured_ports: m.spec.ports.clone(),
            exit_code: (m.state == MachineState::Stopped).then_some(0),
            pid: None,
            pids_limit: m.spec.pids_limit,
            error: None,
            started_at: None,
        }))
    }

    async fn write_authorized_keys(&self, key: &MachineKey, content: &str) -> Result<(), EngineError> {
        let _busy = self.occupy(key).await;
        let mut state = self.enter(Call::WriteAuthorizedKeys(key.clone(), content.to_owned()))?;
        let m = own(&mut state, key)?.ok_or_else(|| missing(key))?;
        m.authorized_keys = Some(content.to_owned());
        Ok(())
    }

    /// A fixed text naming the machine (whether or not it exists here: callers of the fake test
    /// who may read a console, not what it says).
    async fn console(&self, key: &MachineKey, lines: usize) -> Result<String, EngineError> {
        Ok(format!("fake console of {} ({lines} lines)", crate::engine::container_name(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PortMapping;
    use std::sync::Arc;

    fn k(ns: &str, name: &str) -> MachineKey {
        MachineKey::parse(ns, name).expect("key")
    }

    fn n(ns: &str) -> NamespaceName {
        NamespaceName::parse(ns).expect("namespace")
    }

    fn spec(ns: &str, name: &str) -> MachineSpec {
        let mut s = MachineSpec::new(k(ns, name), DEFAULT_IMAGE);
        s.ports = vec![PortMapping::tcp(22, None)];
        s
    }

    #[tokio::test]
    async fn lifecycle_follows_docker_rules() {
        let engine = FakeEngine::new();
        let err = engine.create_machine(&spec("team1", "node0")).await.expect_err("no network yet");
        assert!(matches!(err, EngineError::NetworkNotFound { .. }));
        engine.ensure_network(&n("team1")).await.expect("network");
        engine.ensure_network(&n("team1")).await.expect("idempotent");
        engine.create_machine(&spec("team1", "node0")).await.expect("create");
        let err = engine.create_machine(&spec("team1", "node0")).await.expect_err("duplicate");
        assert!(matches!(err, EngineError::MachineExists { .. }));
        let mut other = spec("team1", "node1");
        other.image = "nope:1".into();
        assert!(matches!(engine.create_machine(&other).await.expect_err("image"), EngineError::ImageNotFound { .. }));

        let listed = engine.list_machines(Some(&n("team1"))).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, MachineState::Created);
        assert!(listed[0].ports.is_empty(), "no ports before start");
        engine.start_machine(&k("team1", "node0")).await.expect("start");
        let listed = engine.list_machines(None).await.expect("list");
        assert_eq!(listed[0].state, MachineState::Running);
        assert_eq!(listed[0].ports[0].container_port, 22);
        assert!(listed[0].ip.is_some());

        engine.write_authorized_keys(&k("team1", "node0"), "ssh-ed25519 AAAA a\n").await.expect("keys");
        assert_eq!(engine.authorized_keys(&k("team1", "node0")).as_deref(), Some("ssh-ed25519 AAAA a\n"));

        assert!(matches!(
            engine.remove_network(&n("team1")).await.expect_err("in use"),
            EngineError::NetworkInUse { .. }
        ));
        engine.stop_machine(&k("team1", "node0"), Duration::from_secs(1)).await.expect("stop");
        engine.stop_machine(&k("team1", "node0"), Duration::from_secs(1)).await.expect("stop again");
        engine.remove_machine(&k("team1", "node0")).await.expect("remove");
        engine.remove_machine(&k("team1", "node0")).await.expect("remove again");
        engine.remove_network(&n("team1")).await.expect("network gone");
        assert!(engine.networks().is_empty());
        assert!(engine.list_machines(None).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn failures_and_recording() {
        let engine: Arc<dyn Engine> = Arc::new(FakeEngine::new());
        let fake = FakeEngine::new();
        fake.fail_next(Op::StartMachine, EngineError::PortUnavailable { container: "x".into(), detail: "y".into() });
        fake.ensure_network(&n("a")).await.expect("network");
        fake.create_machine(&spec("a", "m")).await.expect("create");
        assert!(fake.start_machine(&k("a", "m")).await.is_err());
        fake.start_machine(&k("a", "m")).await.expect("second start works");
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
