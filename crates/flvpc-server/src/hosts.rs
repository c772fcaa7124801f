//! The hosts that run machines (issue 13): the server's own (`local`, always there) and those the
//! superadmin added (`flvpc host add`), each with its own Docker engine.
//!
//! - With no added host nothing changes: the local engine makes bridge networks as it always did.
//! - With added hosts, the engines form a Docker Swarm whose manager is the local engine
//!   (advertised at `--host-address`), and namespace networks are attachable overlays on it, so a
//!   namespace's machines find each other by name on every host.
//! - [`Hosts::run`] keeps the engine registry ([`Engines`]) in step with the `hosts` table, forms
//!   the swarm again when a host was away, and asks every engine what it is (`docker info`) for
//!   the API, the capacity page and placement.
//!
//! Every process serving one database runs this; the swarm steps are idempotent, so two
//! processes forming it at once end in the same swarm.

use crate::reconcile::engine::ReconnectingDocker;
use crate::reconcile::Engines;
use flvpc_host::subnets::AddressPool;
use flvpc_host::{EngineError, EngineTls, HostInfo};
use flvpc_model::quota::{HostCapacity, HostCaps};
use flvpc_model::{EngineEndpoint, EngineKind, HostName, Placement};
use flvpc_store::{HostCandidate, HostRecord, HostState, Store};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often hosts are asked what they are, and the registry checked against the table.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// How long one host may take to say what it is.
const INFO_TIMEOUT: Duration = Duration::from_secs(5);

/// What is known of one host right now.
#[derive(Debug, Clone, Default)]
pub struct HostStatus {
    /// Whether its engine answered at the last check.
    pub reachable: bool,
    /// Why not, or what is wrong with its place in the swarm.
    pub detail: Option<String>,
    /// What its engine said.
    pub info: Option<HostInfo>,
}

/// One host as the doors show it.
#[derive(Debug, Clone)]
pub struct HostView {
    /// Its name (`local`: the server's own).
    pub name: HostName,
    /// The engine endpoint (`DOCKER_HOST` or the usual socket for `local`).
    pub engine: String,
    /// Where its published ports are reached; `None` for `local` without `--host-address`.
    pub address: Option<IpAddr>,
    /// Active or draining (`local` is always active).
    pub state: HostState,
    /// What is known of it now.
    pub status: HostStatus,
}

/// The hosts; cheap to clone.
#[derive(Clone)]
pub struct Hosts(Arc<Inner>);

struct Inner {
    store: Arc<Store>,
    engines: Engines,
    instance: String,
    network_pool: AddressPool,
    /// The address the other hosts and people reach this host at (`--host-address`).
    local_address: Option<IpAddr>,
    /// The added hosts as last read, and what each engine handle was made for.
    records: Mutex<Vec<HostRecord>>,
    handles: Mutex<BTreeMap<HostName, (String, Arc<ReconnectingDocker>)>>,
    statuses: Mutex<BTreeMap<HostName, HostStatus>>,
    /// Whether the engines were switched to the swarm (some host was added).
    swarm: Mutex<bool>,
    /// One reload at a time (the periodic one and one after a change).
    reload: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(lock(&self.0.records).iter().map(|r| r.name.clone())).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hosts {
    /// The hosts of `store`, registering their engines in `engines`.
    pub fn new(
        store: Arc<Store>,
        engines: Engines,
        instance: String,
        network_pool: AddressPool,
        local_address: Option<IpAddr>,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            engines,
            instance,
            network_pool,
            local_address,
            records: Mutex::default(),
            handles: Mutex::default(),
            statuses: Mutex::default(),
            swarm: Mutex::new(false),
            reload: tokio::sync::Mutex::new(()),
        }))
    }

    /// Reloads, forms the swarm and asks every host what it is, every [`REFRESH_EVERY`], until
    /// the task is aborted.
    pub async fn run(self) {
        loop {
            self.reload().await;
            tokio::time::sleep(REFRESH_EVERY).await;
        }
    }

    /// Brings the registry in step with the `hosts` table, forms the swarm when there are
    /// added hosts, and refreshes every host's status.
    pub async fn reload(&self) {
        let _one = self.0.reload.lock().await;
        let records = match self.0.store.hosts(&flvpc_model::policy::system()).await {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!("cannot read the hosts (keeping the engines as they are): {err}");
                return;
            }
        };
        self.register(&records);
        *lock(&self.0.records) = records;
        let problem = if self.multi() { self.form_swarm().await.err() } else { None };
        self.refresh(problem).await;
    }

    /// Whether there are added hosts (and so a swarm and overlay networks).
    pub fn multi(&self) -> bool {
        !lock(&self.0.records).is_empty()
    }

    /// Makes an engine handle for every host that lacks one (or whose endpoint or network mode
    /// changed) and forgets removed hosts. With no added host the local engine is left exactly
    /// as the server was built with it.
    fn register(&self, records: &[HostRecord]) {
        let multi = !records.is_empty();
        let mut handles = lock(&self.0.handles);
        let switched = std::mem::replace(&mut *lock(&self.0.swarm), multi) != multi;
        let local_key = format!("local swarm={multi}");
        if multi && (switched || !handles.contains_key(&HostName::local())) {
            let manager = Arc::new(
                ReconnectingDocker::new(self.0.instance.clone())
                    .with_network_pool(self.0.network_pool)
                    .as_swarm_manager(),
            );
            self.0.engines.insert(Placement::new(HostName::local(), EngineKind::Container), manager.clone());
            handles.insert(HostName::local(), (local_key, manager));
        }
        let manager = handles.get(&HostName::local()).map(|(_, h)| h.clone());
        for record in records {
            let key = format!("{} {:?}", record.engine, record.tls);
            if handles.get(&record.name).is_some_and(|(k, _)| k == &key) {
                continue;
            }
            let Ok(endpoint) = EngineEndpoint::parse(&record.engine) else {
                tracing::error!("host {}: its engine {:?} does not parse; it is left out", record.name, record.engine);
                continue;
            };
            let tls =
                record.tls.as_ref().map(|t| EngineTls { ca: t.ca.clone(), cert: t.cert.clone(), key: t.key.clone() });
            let mut handle =
                ReconnectingDocker::at(self.0.instance.clone(), endpoint, tls).with_network_pool(self.0.network_pool);
            if let Some(manager) = &manager {
                handle = handle.in_swarm_of(manager.clone());
            }
            let handle = Arc::new(handle);
            self.0.engines.insert(Placement::new(record.name.clone(), EngineKind::Container), handle.clone());
            handles.insert(record.name.clone(), (key, handle));
        }
        let gone: Vec<HostName> = handles
            .keys()
            .filter(|h| h.as_str() != HostName::LOCAL && !records.iter().any(|r| &r.name == *h))
            .cloned()
            .collect();
        for host in gone {
            handles.remove(&host);
            self.0.engines.remove_host(&host);
        }
    }

    /// Puts every answering added host in the local engine's swarm.
    async fn form_swarm(&self) -> Result<(), String> {
        let Some(address) = self.0.local_address else {
            return Err("flvpc needs --host-address (the address the other hosts reach this one at) to form \
                        the swarm of its hosts"
                .to_owned());
        };
        let handles: Vec<(HostName, Arc<ReconnectingDocker>)> =
            lock(&self.0.handles).iter().map(|(h, (_, e))| (h.clone(), e.clone())).collect();
        let records = lock(&self.0.records).clone();
        let Some((_, local)) = handles.iter().find(|(h, _)| h.as_str() == HostName::LOCAL) else {
            return Err("the local engine is not registered".to_owned());
        };
        let manager = local.connected().await.map_err(|e| e.to_string())?;
        let mut workers = Vec::new();
        for record in &records {
            let Some((_, handle)) = handles.iter().find(|(h, _)| h == &record.name) else { continue };
            // A host that does not answer joins when it is back (the next reload).
            if let Ok(engine) = handle.connected().await {
                workers.push((engine, record.address));
            }
        }
        let workers: Vec<(&flvpc_host::DockerEngine, IpAddr)> = workers.iter().map(|(e, a)| (&**e, *a)).collect();
        match flvpc_host::form_swarm(&manager, address, &workers).await {
            Ok(formed) if formed.changed() => {
                tracing::info!(
                    "swarm {}: initialised here: {}, joined: {:?}",
                    formed.cluster_id,
                    formed.initialised,
                    formed.joined
                );
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::warn!("cannot form the swarm of the hosts: {err}");
                Err(err.to_string())
            }
        }
    }

    /// Asks every host's engine what it is.
    async fn refresh(&self, swarm_problem: Option<String>) {
        let handles: Vec<(HostName, Arc<ReconnectingDocker>)> = {
            let handles = lock(&self.0.handles);
            let mut all: Vec<(HostName, Arc<ReconnectingDocker>)> =
                handles.iter().map(|(h, (_, e))| (h.clone(), e.clone())).collect();
            if !handles.contains_key(&HostName::local()) {
                // One host: the local engine as the server was built with it is asked below.
                all.retain(|(h, _)| h.as_str() != HostName::LOCAL);
            }
            all
        };
        let asked = handles.into_iter().map(|(host, handle)| async move {
            let answer = tokio::time::timeout(INFO_TIMEOUT, async {
                let engine = handle.connected().await?;
                engine.host_info().await
            })
            .await;
            let status = match answer {
                Ok(Ok(info)) => HostStatus { reachable: true, detail: None, info: Some(info) },
                Ok(Err(err)) => HostStatus { reachable: false, detail: Some(err.to_string()), info: None },
                Err(_) => HostStatus {
                    reachable: false,
                    detail: Some(format!("its engine did not answer within {} s", INFO_TIMEOUT.as_secs())),
                    info: None,
                },
            };
            (host, status)
        });
        let mut statuses: BTreeMap<HostName, HostStatus> = futures::future::join_all(asked).await.into_iter().collect();
        if let std::collections::btree_map::Entry::Vacant(local) = statuses.entry(HostName::local()) {
            local.insert(self.local_status().await);
        }
        if let (Some(problem), Some(local)) = (swarm_problem, statuses.get_mut(&HostName::local())) {
            local.detail = Some(problem);
        }
        *lock(&self.0.statuses) = statuses;
    }

    /// The local host with one engine: it answers if its container engine pings; its size is
    /// this machine's.
    async fn local_status(&self) -> HostStatus {
        let engine = self.0.engines.get(&Placement::new(HostName::local(), EngineKind::Container));
        let ping = match engine {
            Some(engine) => tokio::time::timeout(INFO_TIMEOUT, engine.ping()).await.unwrap_or_else(|_| {
                Err(EngineError::Docker { action: "ping".into(), detail: "no answer within 5 s".into() })
            }),
            None => Err(EngineError::Docker { action: "ping".into(), detail: "no local engine".into() }),
        };
        let capacity = flvpc_host::host_capacity();
        HostStatus {
            reachable: ping.is_ok(),
            detail: ping.err().map(|e| e.to_string()),
            info: Some(HostInfo {
                engine_version: String::new(),
                os: String::new(),
                cpus: u32::try_from(capacity.cpus).unwrap_or(u32::MAX),
                memory_bytes: capacity.memory_mb.saturating_mul(1024 * 1024),
                swarm: None,
            }),
        }
    }

    /// Every host, `local` first, with what is known of it.
    pub fn list(&self) -> Vec<HostView> {
        let statuses = lock(&self.0.statuses).clone();
        let status = |h: &HostName| statuses.get(h).cloned().unwrap_or_default();
        let local_engine =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| format!("unix://{}", flvpc_host::docker::DEFAULT_SOCKET));
        let mut all = vec![HostView {
            name: HostName::local(),
            engine: local_engine,
            address: self.0.local_address,
            state: HostState::Active,
            status: status(&HostName::local()),
        }];
        for record in lock(&self.0.records).iter() {
            all.push(HostView {
                name: record.name.clone(),
                engine: record.engine.clone(),
                address: Some(record.address),
                state: record.state,
                status: status(&record.name),
            });
        }
        all
    }

    /// The address the published ports of machines on `host` are reached at: an added host's
    /// recorded address, `--host-address` for the local one (`None`: the server's own address
    /// as each client reaches it).
    pub fn address_of(&self, host: &HostName) -> Option<IpAddr> {
        if host.as_str() == HostName::LOCAL {
            return self.0.local_address;
        }
        lock(&self.0.records).iter().find(|r| &r.name == host).map(|r| r.address)
    }

    /// Where new machines may go: with added hosts, every active host whose engine answered,
    /// each with its own capacity under the server's overcommit ratios; with none, nothing (the
    /// plan's own placement, as before hosts).
    ///
    /// No host offers microVMs once hosts are added: their runner containers are made by the
    /// microVM engine's own Docker handle, which joins bridge networks only, and a bridge and an
    /// overlay cannot both be a namespace's network. A VM spec is then refused at apply ("no host
    /// can take …: local has no microvm engine"); VMs already placed keep running.
    pub fn candidates(&self, caps: &HostCaps) -> Vec<HostCandidate> {
        if !self.multi() {
            return Vec::new();
        }
        self.list()
            .into_iter()
            .filter(|h| h.state == HostState::Active && h.status.reachable)
            .map(|h| {
                let info = h.status.info.as_ref();
                let capacity = HostCapacity {
                    cpus: info.map_or(0, |i| u64::from(i.cpus)),
                    memory_mb: info.map_or(0, |i| i.memory_bytes / (1024 * 1024)),
                };
                let engines = vec![EngineKind::Container];
                HostCandidate {
                    host: h.name,
                    engines,
                    caps: HostCaps { capacity, cpu_ratio: caps.cpu_ratio, memory_ratio: caps.memory_ratio },
                }
            })
            .collect()
    }

    /// Checks a host to be added: its endpoint and TLS files, and that its engine answers.
    pub async fn check_new(endpoint: &EngineEndpoint, tls: Option<&EngineTls>) -> Result<HostInfo, String> {
        if let Some(tls) = tls {
            tls.check().map_err(|e| e.to_string())?;
        }
        let engine = tokio::time::timeout(INFO_TIMEOUT * 2, flvpc_host::DockerEngine::connect_to(endpoint, tls))
            .await
            .map_err(|_| format!("the engine at {endpoint} did not answer within 10 s"))?
            .map_err(|e| e.to_string())?;
        engine.host_info().await.map_err(|e| e.to_string())
    }
}
