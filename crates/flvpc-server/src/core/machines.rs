//! Cluster specs, machines and operations: validate, authorize, record the desired state and
//! hand the work to the reconciler ([`super::dispatch`] audits around the acts). The reads of
//! specs, machines and operations are here too.

use super::error::{CoreError, CoreResult};
use super::namespace_or_not_found as namespace;
use super::{Actor, Outcome, SavedSpec};
use crate::state::AppState;
use flvpc_model::quota::{self, HostCaps, Resources};
use flvpc_model::spec::{self, Backend, ClusterSpec, Validated};
use flvpc_model::{NamespaceGrant, NamespaceName, Principal};
use flvpc_store::{Desired, MachinePlan, MachineRecord, Operation, StoreError, StoredSpec};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// The namespace's cluster spec (members).
pub async fn get_spec(state: &AppState, caller: &Principal, ns: &str) -> CoreResult<Option<StoredSpec>> {
    let ns = namespace(ns)?;
    let grant = caller.namespace_member(&ns)?;
    state.store.get_namespace(&grant).await?;
    Ok(state.store.cluster_spec(&grant).await?)
}

/// Parses a spec in `yaml` or JSON.
pub fn parse(text: &str, yaml: bool) -> CoreResult<ClusterSpec> {
    if yaml {
        Ok(spec::parse_yaml(text)?)
    } else {
        Ok(spec::parse_json(text)?)
    }
}

/// Validates `spec` for `ns`, including what only the server knows: the host ports and addresses
/// the superadmin allows (before anything reaches the database or Docker), images and backends.
async fn validate(state: &AppState, spec: &ClusterSpec, ns: &NamespaceName) -> CoreResult<Validated> {
    let validated = spec.validate(ns)?;
    state.config.publish_rules().check(&validated)?;
    // Each image is checked on the engine the machine will be placed on.
    let mut images: Vec<(flvpc_model::Placement, &str)> =
        validated.machines.iter().map(|m| (state.reconciler.placement_for(m.backend), m.image.as_str())).collect();
    images.sort_unstable();
    images.dedup();
    let floor = flvpc_host::vm::VM_MIN_MEMORY_MB;
    if let Some(vm) = validated.machines.iter().find(|m| m.backend == Backend::MicroVm && m.memory_mb < floor) {
        return Err(CoreError::InvalidSpec(format!(
            "{}: a microVM needs at least {floor} MB of memory (its own kernel, systemd and sshd), not {} MB",
            vm.name, vm.memory_mb
        )));
    }
    for (placement, image) in images {
        let engines = state.reconciler.engines();
        let engine =
            engines.get(&placement).ok_or_else(|| CoreError::BackendUnavailable(engines.missing(&placement)))?;
        match engine.image_exists(image).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(CoreError::UnknownImage(format!(
                    "image {image:?} is not on this host: build the default one with `flvpc image build`, \
                     or use a local image with systemd and sshd (see `flvpc image list`)"
                )))
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(validated)
}

/// What a set of desired machines adds up to.
fn plan_resources(machines: &[spec::DesiredMachine]) -> Resources {
    machines.iter().fold(Resources::default(), |sum, m| {
        sum.plus(Resources {
            machines: 1,
            cpus: u64::from(m.cpus),
            memory_mb: m.memory_mb,
            disk_gb: m.disk_gb,
            host_ports: m.ports.len() as u64,
        })
    })
}

/// Refuses, when a spec is saved, one that can never fit the namespace's quota. Only a early
/// answer: the binding check is at create, in the transaction that records the machines.
async fn fits_quota(state: &AppState, grant: &NamespaceGrant, wanted: Resources) -> CoreResult<()> {
    let quota = state.store.quota(grant).await?;
    let mine = state.store.namespace_usage(grant).await?;
    quota::admit(grant.namespace().as_str(), &quota, mine.allocated, mine.allocated.growth_to(wanted))
        .map_err(|exceeded| CoreError::QuotaExceeded(exceeded.to_string()))
}

/// Saves a new cluster spec (namespace admins). Machines change only on `create`.
pub(super) async fn put_spec(
    state: &AppState,
    actor: &Actor,
    ns: &str,
    spec: CoreResult<ClusterSpec>,
) -> CoreResult<Outcome> {
    let ns = namespace(ns)?;
    let principal = actor.principal()?;
    let grant = principal.namespace_admin(&ns)?;
    let member = principal.namespace_member(&ns)?;
    let spec = spec?;
    let validated = validate(state, &spec, &ns).await?;
    // Checked when saved too, so a spec that can never be created is refused early.
    fits_quota(state, &member, plan_resources(&validated.machines)).await?;
    let yaml = spec.to_yaml();
    state.store.save_cluster_spec(&grant, &yaml, principal.login()).await?;
    Ok(Outcome::Spec(SavedSpec {
        yaml,
        spec,
        machines: validated.machines.iter().map(|m| m.name.clone()).collect(),
        warnings: validated.warnings,
    }))
}

/// What applying a spec would do to a namespace's machines, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyPreview {
    /// Machines the spec adds.
    pub create: Vec<String>,
    /// Machines whose settings change: recreated (what is on their disks is lost).
    pub change: Vec<String>,
    /// Machines no longer in the spec: deleted with their disks.
    pub remove: Vec<String>,
    /// Machines left as they are.
    pub keep: Vec<String>,
    /// The spec's warnings.
    pub warnings: Vec<String>,
}

/// What saving `text` (YAML) and applying it to `ns` would create, change and remove, without
/// saving or doing anything (namespace admins). Validated exactly as a save and a create are.
pub async fn preview(state: &AppState, caller: &Principal, ns: &str, text: &str) -> CoreResult<ApplyPreview> {
    let name = namespace(ns)?;
    caller.namespace_admin(&name)?;
    let spec = parse(text, true)?;
    let validated = validate(state, &spec, &name).await?;
    let existing = list(state, caller, ns).await?;
    let alive = |m: &&MachineRecord| m.desired != Desired::Deleted;
    let mut preview = ApplyPreview { warnings: validated.warnings.clone(), ..ApplyPreview::default() };
    for m in &validated.machines {
        match existing.iter().filter(alive).find(|r| r.name.as_str() == m.name) {
            None => preview.create.push(m.name.clone()),
            Some(r) if r.spec_hash != spec_hash(m) => preview.change.push(m.name.clone()),
            Some(_) => preview.keep.push(m.name.clone()),
        }
    }
    for r in existing.iter().filter(alive) {
        if !validated.machines.iter().any(|m| m.name == r.name.as_str()) {
            preview.remove.push(r.name.to_string());
        }
    }
    Ok(preview)
}

/// A digest of what a container is created with; a change means a new container.
fn spec_hash(m: &spec::DesiredMachine) -> String {
    let mut text =
        format!("{}|{}|{}|{:?}|{}|{}", m.image, m.backend.as_str(), m.cpus, m.cpu_cap_milli, m.memory_mb, m.disk_gb);
    for p in &m.ports {
        text.push_str(&format!("|{}:{:?}/{}", p.container_port, p.host_port, p.protocol.as_str()));
        // Only when named, so that the digest of every machine made before addresses were
        // honoured stays the same (no needless re-creation on upgrade).
        if let Some(address) = p.address {
            text.push_str(&format!("@{address}"));
        }
    }
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The check a host port must pass besides the database's own (given to the store when ports are
/// reserved, at apply and at a move): never one of the server's own ports, even when the range
/// covers them; on this host, nothing may listen on it now. Another host's ports cannot be tried
/// from here: its engine checks them when the machine is created there (a clash is then the
/// machine's error).
pub(super) fn host_port_check(
    state: &AppState,
) -> impl Fn(&flvpc_model::HostName, Option<IpAddr>, u16, spec::Protocol) -> bool + Sync {
    let default_address = state.config.publish_address;
    let rules = state.config.publish_rules();
    move |host, address, port, protocol| {
        rules.reserved_for(port).is_none()
            && (host.as_str() != flvpc_model::HostName::LOCAL
                || port_is_free(address.unwrap_or(default_address), port, protocol.as_str()))
    }
}

/// Whether nothing on the host listens on `port` at `address` right now.
fn port_is_free(address: std::net::IpAddr, port: u16, protocol: &str) -> bool {
    let addr = SocketAddr::new(address, port);
    if protocol == "udp" {
        UdpSocket::bind(addr).is_ok()
    } else {
        TcpListener::bind(addr).is_ok()
    }
}

/// Creates the machines of the saved spec that are missing, changes those whose
/// settings changed and removes those no longer in it (namespace admins).
pub(super) async fn create(state: &AppState, actor: &Actor, ns: &str) -> CoreResult<Outcome> {
    let ns = namespace(ns)?;
    let principal = actor.principal()?;
    let grant = principal.namespace_admin(&ns)?;
    let member = principal.namespace_member(&ns)?;
    let stored = state.store.cluster_spec(&member).await?.ok_or(CoreError::NoSpec)?;
    let spec = parse(&stored.spec, true)?;
    let validated = validate(state, &spec, &ns).await?;
    let plans: Vec<MachinePlan> = validated
        .machines
        .iter()
        .map(|m| {
            // Validated with the spec; checked again where it becomes a typed name.
            let name = flvpc_model::MachineName::parse(&m.name).map_err(|e| CoreError::InvalidSpec(e.to_string()))?;
            Ok(MachinePlan {
                name,
                image: m.image.clone(),
                backend: m.backend,
                placement: state.reconciler.placement_for(m.backend),
                pin: m.host.clone(),
                // The group's name pattern (`node%d`): placement spreads a group over the hosts.
                group: spec.machines.get(m.group).map(|g| g.spec.name.clone()).unwrap_or_default(),
                cpus: m.cpus,
                cpu_cap_milli: m.cpu_cap_milli,
                memory_mb: m.memory_mb,
                disk_gb: m.disk_gb,
                spec_hash: spec_hash(m),
                ports: m.ports.clone(),
            })
        })
        .collect::<CoreResult<_>>()?;
    let is_free = host_port_check(state);
    let mut caps = state.config.host_caps();
    let candidates = state.hosts.candidates(&caps);
    if !candidates.is_empty() && (caps.cpu_ratio.is_some() || caps.memory_ratio.is_some()) {
        // Several hosts: the caps in total are over all of them; each host's own are checked
        // where the machine is placed.
        caps.capacity = candidates.iter().fold(flvpc_model::quota::HostCapacity::default(), |sum, c| {
            flvpc_model::quota::HostCapacity {
                cpus: sum.cpus + c.caps.capacity.cpus,
                memory_mb: sum.memory_mb + c.caps.capacity.memory_mb,
            }
        });
    }
    let holders = principal.superadmin().ok();
    let op = state
        .store
        .apply_cluster(
            &grant,
            &plans,
            // No candidates (one host): every new machine goes where its plan says.
            &candidates,
            &caps,
            state.config.port_range,
            &is_free,
            holders.as_ref(),
            principal.login(),
        )
        .await?;
    state.reconciler.enqueue_operation(&op);
    Ok(Outcome::Operation(op))
}

/// Sets the desired state of all machines (start/stop: members; delete: admins); `kind` is the
/// action's audit name, which the operation is named after.
pub(super) async fn set_cluster(
    state: &AppState,
    actor: &Actor,
    ns: &str,
    desired: Desired,
    kind: &str,
) -> CoreResult<Outcome> {
    let ns = namespace(ns)?;
    let principal = actor.principal()?;
    let grant = principal.namespace_member(&ns)?;
    if desired == Desired::Deleted {
        principal.namespace_admin(&ns)?;
    }
    state.store.get_namespace(&grant).await?;
    let by = principal.login();
    let caps = state.config.host_caps();
    let op = state.store.set_desired(&grant, None, desired, &caps, kind, by).await?;
    state.reconciler.enqueue_operation(&op);
    Ok(Outcome::Operation(op))
}

/// What to do to one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MachineAction {
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// Restart it.
    Restart,
}

/// Starts, stops or restarts one machine (members); `kind` is the action's audit name, which
/// the operation is named after.
pub(super) async fn machine_action(
    state: &AppState,
    actor: &Actor,
    ns: &str,
    name: &str,
    action: MachineAction,
    kind: &str,
) -> CoreResult<Outcome> {
    let ns = namespace(ns)?;
    let principal = actor.principal()?;
    let grant = principal.namespace_member(&ns)?;
    // A name that cannot exist is a machine that is not there, as for any other missing machine.
    let machine = flvpc_model::MachineName::parse(name)
        .map_err(|_| CoreError::NotFound(format!("machine {:?} not found", super::action::shown(name))))?;
    let name = &machine;
    let by = principal.login();
    // Starting is admitted against the host's caps inside the store's transaction.
    let caps = state.config.host_caps();
    let set = |desired| state.store.set_desired(&grant, Some(name), desired, &caps, kind, by);
    let op = match action {
        MachineAction::Start => set(Desired::Running).await?,
        MachineAction::Stop => set(Desired::Stopped).await?,
        // One admitted transaction: restarting a stopped machine starts it, and a refused
        // restart leaves nothing behind; the request lives in the machine's record.
        MachineAction::Restart => state.store.request_restart(&grant, name, &caps, kind, by).await?,
    };
    state.reconciler.enqueue_operation(&op);
    Ok(Outcome::Operation(op))
}

/// The machines of a namespace (members).
pub async fn list(state: &AppState, caller: &Principal, ns: &str) -> CoreResult<MachineList> {
    let ns = namespace(ns)?;
    let grant = caller.namespace_member(&ns)?;
    let machines = state.store.machines(&grant).await?;
    // A namespace with machines exists; only an empty list needs the namespace read to tell
    // an empty namespace from a missing one (a superadmin's grant covers any name).
    if machines.is_empty() {
        state.store.get_namespace(&grant).await?;
    }
    Ok(MachineList(machines))
}

/// A namespace's machines as its members see them: shared with the store's read cache (no copy
/// per request), without the records of machines deleted before they were ever created.
#[derive(Debug, Clone, Default)]
pub struct MachineList(Arc<Vec<MachineRecord>>);

impl MachineList {
    /// The machines, by name.
    pub fn iter(&self) -> impl Iterator<Item = &MachineRecord> {
        self.0.iter().filter(|m| m.desired != Desired::Deleted || m.observed != flvpc_model::Observed::NotCreated)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Whether `other` is this very answer of the store: the store hands out the same answer
    /// until a write, so nothing in the list changed since `other` was read.
    pub fn same_as(&self, other: &MachineList) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Console lines one request may ask for.
pub const CONSOLE_MAX_LINES: usize = 1000;
/// The most console text one answer carries (the newest is kept).
pub const CONSOLE_MAX_BYTES: usize = 256 * 1024;
/// How long reading a console may take before the answer says so.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The last `lines` lines of a machine's console (members): a VM's serial console, a container
/// machine's system journal (which needs it running). The text is the tenant's own output.
/// Returns the kind of engine that runs the machine, and the text.
pub async fn console(
    state: &AppState,
    caller: &Principal,
    ns: &str,
    name: &str,
    lines: usize,
) -> CoreResult<(flvpc_model::EngineKind, String)> {
    let machines = list(state, caller, ns).await?;
    let machine = machines
        .iter()
        .find(|m| m.name.as_str() == name)
        .ok_or_else(|| CoreError::NotFound(format!("machine {name:?}")))?;
    let engines = state.reconciler.engines();
    let engine = engines
        .get(&machine.placement)
        .ok_or_else(|| CoreError::EngineUnavailable(engines.missing(&machine.placement)))?;
    let lines = lines.clamp(1, CONSOLE_MAX_LINES);
    let read = tokio::time::timeout(CONSOLE_TIMEOUT, engine.console(&machine.key(), lines)).await;
    let mut text = match read {
        // Plain text: a serial console carries systemd's colours.
        Ok(Ok(text)) => flvpc_host::vm::console::strip_escapes(&text),
        Ok(Err(flvpc_host::EngineError::NotRunning { .. } | flvpc_host::EngineError::MachineNotFound { .. })) => {
            return Err(CoreError::Conflict(format!(
                "machine {name:?} has no console to read while it is not running: start it first"
            )))
        }
        Ok(Err(err)) => return Err(err.into()),
        Err(_) => {
            return Err(CoreError::EngineUnavailable(format!(
                "the console of {name:?} could not be read within {} s: try again",
                CONSOLE_TIMEOUT.as_secs()
            )))
        }
    };
    if text.len() > CONSOLE_MAX_BYTES {
        let mut cut = text.len() - CONSOLE_MAX_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
    Ok((machine.placement.engine, text))
}

/// One operation (who started it, or the superadmin).
pub async fn operation(state: &AppState, caller: &Principal, id: &str) -> CoreResult<Operation> {
    Ok(state.store.operation(caller, id).await?)
}

/// Removes every machine of a namespace and waits (bounded) until they are gone,
/// before the namespace itself is deleted.
pub(super) async fn drain_namespace(state: &AppState, actor: &Actor, ns: &NamespaceName) -> CoreResult<()> {
    let principal = actor.principal()?;
    let grant = principal.namespace_member(ns)?;
    let machines = match state.store.machines(&grant).await {
        Ok(m) => m,
        Err(StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if machines.is_empty() {
        return Ok(());
    }
    let op = state
        .store
        .set_desired(
            &grant,
            None,
            Desired::Deleted,
            &HostCaps::default(),
            // Named like the cluster delete it is (String::new does not allocate).
            super::Action::DeleteCluster { ns: String::new() }.audit_name(),
            principal.login(),
        )
        .await?;
    state.reconciler.enqueue_operation(&op);
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if state.store.machines(&grant).await?.is_empty() {
            return Ok(());
        }
    }
    Err(CoreError::MachinesRemain)
}
