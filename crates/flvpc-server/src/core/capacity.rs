//! What the host has, what is promised and what is used: computed once here, for the API's
//! `GET /api/v1/capacity` and a namespace's resources, and for the panel's capacity page and
//! namespace section. The doors only render it.

use super::error::CoreResult;
use crate::state::AppState;
use flvpc_host::Capacity;
use flvpc_model::quota::{Quota, Resources};
use flvpc_model::{NamespaceName, Principal};
use std::collections::HashMap;

/// What running machines use right now (from the usage sampler's latest points).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Used {
    /// CPUs busy (100 % of one CPU is 1.0).
    pub cpus: f64,
    /// Memory in use, in MB.
    pub memory_mb: f64,
}

impl Used {
    fn add(&mut self, other: Used) {
        self.cpus += other.cpus;
        self.memory_mb += other.memory_mb;
    }
}

/// One namespace: its quota, what its machines are promised and what they use.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceResources {
    /// The namespace.
    pub name: NamespaceName,
    /// Its quota (`None` fields are unlimited).
    pub quota: Quota,
    /// Every machine that exists or is being created.
    pub allocated: Resources,
    /// Machines meant to run.
    pub running: Resources,
    /// Used right now.
    pub used: Used,
}

/// The whole host (superadmin).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityReport {
    /// The host's CPUs, memory and Docker disk.
    pub host: Capacity,
    /// `--overcommit-cpu`, if set.
    pub overcommit_cpu: Option<f64>,
    /// `--overcommit-memory`, if set.
    pub overcommit_memory: Option<f64>,
    /// All namespaces' allocations together.
    pub allocated: Resources,
    /// All namespaces' running machines together.
    pub running: Resources,
    /// Used right now, all together.
    pub used: Used,
    /// Whether disk sizes are enforced (overlay2 on ext4 cannot).
    pub disk_enforced: bool,
    /// Whether microVMs can be made, with which accelerator (their disks are enforced).
    pub microvm: crate::reconcile::MicroVmStatus,
    /// Per namespace, in name order.
    pub namespaces: Vec<NamespaceResources>,
}

impl CapacityReport {
    /// CPUs promised to running machines per host CPU.
    pub fn effective_cpu(&self) -> f64 {
        ratio(self.running.cpus, self.host.cpus)
    }

    /// Memory promised to running machines per MB of host memory.
    pub fn effective_memory(&self) -> f64 {
        ratio(self.running.memory_mb, self.host.memory_mb)
    }
}

fn ratio(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        used as f64 / total as f64
    }
}

/// What each namespace's running machines use now, from the sampler.
fn used_by_namespace(state: &AppState) -> HashMap<String, Used> {
    let mut used: HashMap<String, Used> = HashMap::new();
    for ((ns, _), point, _) in state.usage.all_latest() {
        used.entry(ns).or_default().add(Used { cpus: point.cpu_percent / 100.0, memory_mb: point.memory_mb });
    }
    used
}

/// The capacity report (superadmin only).
pub async fn capacity(state: &AppState, principal: &Principal) -> CoreResult<CapacityReport> {
    let grant = principal.superadmin()?;
    let usage = state.store.usage(&grant).await?;
    let used_by = used_by_namespace(state);
    let mut report = CapacityReport {
        host: flvpc_host::host_capacity(),
        overcommit_cpu: state.config.overcommit_cpu,
        overcommit_memory: state.config.overcommit_memory,
        allocated: Resources::default(),
        running: Resources::default(),
        used: Used::default(),
        disk_enforced: false,
        microvm: state.microvm.clone(),
        namespaces: Vec::new(),
    };
    for ns in state.store.list_namespaces(&grant).await? {
        let u = usage.get(&ns.name).copied().unwrap_or_default();
        let used = used_by.get(ns.name.as_str()).copied().unwrap_or_default();
        report.allocated = report.allocated.plus(u.allocated);
        report.running = report.running.plus(u.running);
        report.used.add(used);
        let quota = state.store.namespace_quota(&grant, &ns.name).await?;
        report.namespaces.push(NamespaceResources {
            name: ns.name,
            quota,
            allocated: u.allocated,
            running: u.running,
            used,
        });
    }
    Ok(report)
}

/// One namespace's quota, allocation and use (its members and the superadmin).
pub async fn namespace_resources(state: &AppState, principal: &Principal, ns: &str) -> CoreResult<NamespaceResources> {
    let name = super::namespace_or_not_found(ns)?;
    let grant = principal.namespace_member(&name)?;
    let quota = state.store.quota(&grant).await?;
    let usage = state.store.namespace_usage(&grant).await?;
    let used = used_by_namespace(state).remove(name.as_str()).unwrap_or_default();
    Ok(NamespaceResources { name, quota, allocated: usage.allocated, running: usage.running, used })
}
