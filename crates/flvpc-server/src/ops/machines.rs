//! Cluster specs, machines and operations: validate, authorize, record the
//! desired state, hand the work to the reconciler, audit.

use super::audited;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::http::StatusCode;
use flvpc_model::quota::{self, HostCaps, Resources};
use flvpc_model::spec::{self, Backend, ClusterSpec, Validated};
use flvpc_model::{Denied, MachineName, NamespaceGrant, NamespaceName, Placement, Principal};
use flvpc_store::{Desired, MachinePlan, MachineRecord, Operation, StoreError, StoredSpec};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

fn namespace(raw: &str) -> ApiResult<NamespaceName> {
    NamespaceName::parse(raw).map_err(|_| ApiError::from(Denied::NotFound))
}

fn spec_error(err: spec::SpecError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", err.to_string())
}

/// What a saved spec expands to.
pub struct SavedSpec {
    /// The canonical YAML.
    pub yaml: String,
    /// The spec.
    pub spec: ClusterSpec,
    /// Machine names it describes.
    pub machines: Vec<String>,
    /// footloose features flvpc does not honour.
    pub warnings: Vec<String>,
}

/// The namespace's cluster spec (members).
pub async fn get_spec(state: &AppState, caller: &Principal, ns: &str) -> ApiResult<Option<StoredSpec>> {
    let ns = namespace(ns)?;
    let grant = caller.namespace_member(&ns)?;
    state.store.get_namespace(&grant).await?;
    Ok(state.store.cluster_spec(&grant).await?)
}

/// Parses a spec in `yaml` or JSON.
pub fn parse(text: &str, yaml: bool) -> ApiResult<ClusterSpec> {
    if yaml {
        spec::parse_yaml(text).map_err(spec_error)
    } else {
        spec::parse_json(text).map_err(spec_error)
    }
}

/// Validates `spec` for `ns`, including what only the server knows: the host ports and addresses
/// the superadmin allows (before anything reaches the database or Docker), images and backends.
async fn validate(state: &AppState, spec: &ClusterSpec, ns: &NamespaceName) -> ApiResult<Validated> {
    let validated = spec.validate(ns).map_err(spec_error)?;
    state.config.publish_rules().check(&validated).map_err(spec_error)?;
    // Each image is checked on the engine the machine will be placed on.
    let mut images: Vec<(Placement, &str)> =
        validated.machines.iter().map(|m| (state.reconciler.placement_for(m.backend), m.image.as_str())).collect();
    images.sort_unstable();
    images.dedup();
    if let Some(vm) = validated.machines.iter().find(|m| m.backend == Backend::MicroVm) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "backend_unavailable",
            format!("{}: the microvm backend is not available on this server yet; use backend: docker", vm.name),
        ));
    }
    for (placement, image) in images {
        let engine = state.reconciler.engines().get(&placement).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "backend_unavailable",
                state.reconciler.engines().missing(&placement),
            )
        })?;
        match engine.image_exists(image).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_image",
                    format!(
                        "image {image:?} is not on this host: build the default one with `flvpc image build`, \
                         or use a local image with systemd and sshd (see `flvpc image list`)"
                    ),
                ))
            }
            Err(err) => return Err(engine_down(err)),
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

fn quota_exceeded(err: quota::Exceeded) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "quota_exceeded", err.to_string())
}

/// A store error as the caller sees it; a refused admission is a 422 like any quota refusal.
fn store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::Exceeded(exceeded) => quota_exceeded(exceeded),
        other => other.into(),
    }
}

/// Refuses, when a spec is saved, one that can never fit the namespace's quota. Only a early
/// answer: the binding check is at create, in the transaction that records the machines.
async fn fits_quota(state: &AppState, grant: &NamespaceGrant, wanted: Resources) -> ApiResult<()> {
    let quota = state.store.quota(grant).await?;
    let mine = state.store.namespace_usage(grant).await?;
    quota::admit(grant.namespace().as_str(), &quota, mine.allocated, mine.allocated.growth_to(wanted))
        .map_err(quota_exceeded)
}

fn engine_down(err: flvpc_host::EngineError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable", err.to_string())
}

/// Saves a new cluster spec (namespace admins). Machines change only on `create`.
pub async fn put_spec(
    state: &AppState,
    caller: &Caller,
    ns: &str,
    spec: ApiResult<ClusterSpec>,
) -> ApiResult<SavedSpec> {
    let shown: String = ns.chars().take(64).collect();
    let result = async {
        let ns = namespace(ns)?;
        let grant = caller.principal().namespace_admin(&ns)?;
        let member = caller.principal().namespace_member(&ns)?;
        let spec = spec?;
        let validated = validate(state, &spec, &ns).await?;
        // Checked when saved too, so a spec that can never be created is refused early.
        fits_quota(state, &member, plan_resources(&validated.machines)).await?;
        let yaml = spec.to_yaml();
        state.store.save_cluster_spec(&grant, &yaml, caller.principal().login()).await?;
        Ok(SavedSpec {
            yaml,
            spec,
            machines: validated.machines.iter().map(|m| m.name.clone()).collect(),
            warnings: validated.warnings,
        })
    }
    .await;
    audited(state, caller, "cluster.spec", &shown, Some(&shown), None, result).await
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
pub async fn create(state: &AppState, caller: &Caller, ns: &str) -> ApiResult<Operation> {
    let shown: String = ns.chars().take(64).collect();
    let result = async {
        let ns = namespace(ns)?;
        let grant = caller.principal().namespace_admin(&ns)?;
        let member = caller.principal().namespace_member(&ns)?;
        let stored = state.store.cluster_spec(&member).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no_spec",
                "this namespace has no cluster spec yet: PUT one to /api/v1/namespaces/{ns}/cluster first",
            )
        })?;
        let spec = parse(&stored.spec, true)?;
        let validated = validate(state, &spec, &ns).await?;
        let plans: Vec<MachinePlan> = validated
            .machines
            .iter()
            .map(|m| {
                // Validated with the spec; checked again where it becomes a typed name.
                let name = MachineName::parse(&m.name)
                    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", e.to_string()))?;
                Ok(MachinePlan {
                    name,
                    image: m.image.clone(),
                    backend: m.backend,
                    placement: state.reconciler.placement_for(m.backend),
                    cpus: m.cpus,
                    cpu_cap_milli: m.cpu_cap_milli,
                    memory_mb: m.memory_mb,
                    disk_gb: m.disk_gb,
                    spec_hash: spec_hash(m),
                    ports: m.ports.clone(),
                })
            })
            .collect::<ApiResult<_>>()?;
        let default_address = state.config.publish_address;
        let rules = state.config.publish_rules();
        // The server's own ports are never handed out, even when the range covers them.
        let is_free = move |address: Option<IpAddr>, port: u16, protocol: spec::Protocol| {
            rules.reserved_for(port).is_none()
                && port_is_free(address.unwrap_or(default_address), port, protocol.as_str())
        };
        let holders = caller.principal().superadmin().ok();
        let op = state
            .store
            .apply_cluster(
                &grant,
                &plans,
                &state.config.host_caps(),
                state.config.port_range,
                &is_free,
                holders.as_ref(),
                caller.principal().login(),
            )
            .await
            .map_err(store_error)?;
        state.reconciler.enqueue_operation(&op);
        Ok(op)
    }
    .await;
    let detail = result.as_ref().ok().map(|op| op.id.clone());
    audited(state, caller, "cluster.create", &shown, Some(&shown), detail, result).await
}

/// Sets the desired state of all machines (start/stop: members; delete: admins).
pub async fn set_cluster(state: &AppState, caller: &Caller, ns: &str, desired: Desired) -> ApiResult<Operation> {
    let shown: String = ns.chars().take(64).collect();
    let action = match desired {
        Desired::Running => "cluster.start",
        Desired::Stopped => "cluster.stop",
        Desired::Deleted => "cluster.delete",
    };
    let result = async {
        let ns = namespace(ns)?;
        let grant = caller.principal().namespace_member(&ns)?;
        if desired == Desired::Deleted {
            caller.principal().namespace_admin(&ns)?;
        }
        state.store.get_namespace(&grant).await?;
        let by = caller.principal().login();
        let caps = state.config.host_caps();
        let op = state.store.set_desired(&grant, None, desired, &caps, action, by).await.map_err(store_error)?;
        state.reconciler.enqueue_operation(&op);
        Ok(op)
    }
    .await;
    let detail = result.as_ref().ok().map(|op| op.id.clone());
    audited(state, caller, action, &shown, Some(&shown), detail, result).await
}

/// What to do to one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineAction {
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// Restart it.
    Restart,
}

/// Starts, stops or restarts one machine (members).
pub async fn machine_action(
    state: &AppState,
    caller: &Caller,
    ns: &str,
    name: &str,
    action: MachineAction,
) -> ApiResult<Operation> {
    let shown_ns: String = ns.chars().take(64).collect();
    let shown: String = name.chars().take(64).collect();
    let kind = match action {
        MachineAction::Start => "machine.start",
        MachineAction::Stop => "machine.stop",
        MachineAction::Restart => "machine.restart",
    };
    let result = async {
        let ns = namespace(ns)?;
        let grant = caller.principal().namespace_member(&ns)?;
        let name = MachineName::parse(name).map_err(|_| ApiError::not_found(format!("machine {shown:?}")))?;
        let name = &name;
        let by = caller.principal().login();
        // Starting is admitted against the host's caps inside the store's transaction.
        let caps = state.config.host_caps();
        let set = |desired, kind| state.store.set_desired(&grant, Some(name), desired, &caps, kind, by);
        let op = match action {
            MachineAction::Start => set(Desired::Running, kind).await.map_err(store_error)?,
            MachineAction::Stop => set(Desired::Stopped, kind).await.map_err(store_error)?,
            // One admitted transaction: restarting a stopped machine starts it, and a refused
            // restart leaves nothing behind; the request lives in the machine's record.
            MachineAction::Restart => {
                state.store.request_restart(&grant, name, &caps, kind, by).await.map_err(store_error)?
            }
        };
        state.reconciler.enqueue_operation(&op);
        Ok(op)
    }
    .await;
    let detail = result.as_ref().ok().map(|op| op.id.clone());
    audited(state, caller, kind, &format!("{shown_ns}/{shown}"), Some(&shown_ns), detail, result).await
}

/// The machines of a namespace (members).
pub async fn list(state: &AppState, caller: &Principal, ns: &str) -> ApiResult<Vec<MachineRecord>> {
    let ns = namespace(ns)?;
    let grant = caller.namespace_member(&ns)?;
    state.store.get_namespace(&grant).await?;
    Ok(state
        .store
        .machines(&grant)
        .await?
        .into_iter()
        .filter(|m| m.desired != Desired::Deleted || m.observed != flvpc_model::Observed::NotCreated)
        .collect())
}

/// One operation (who started it, or the superadmin).
pub async fn operation(state: &AppState, caller: &Principal, id: &str) -> ApiResult<Operation> {
    Ok(state.store.operation(caller, id).await?)
}

/// Removes every machine of a namespace and waits (bounded) until they are gone,
/// before the namespace itself is deleted.
pub async fn drain_namespace(state: &AppState, caller: &Caller, ns: &NamespaceName) -> ApiResult<()> {
    let grant = caller.principal().namespace_member(ns)?;
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
        .set_desired(&grant, None, Desired::Deleted, &HostCaps::default(), "cluster.delete", caller.principal().login())
        .await?;
    state.reconciler.enqueue_operation(&op);
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if state.store.machines(&grant).await?.is_empty() {
            return Ok(());
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "machines_remain",
        "the namespace's machines could not all be removed yet (is the Docker engine up?); try again",
    ))
}
