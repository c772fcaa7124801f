//! Desired machines: what the spec asks for (`MachinePlan`), what is recorded and observed
//! (`MachineRecord`, with its placement), and the changes of desired state.
//!
//! The database holds desired state; the reconciler (in flvpc-server) makes the engine the
//! machine's placement names match it and writes back what it observed. Host ports are in
//! `ports.rs`, operations in `operations.rs`, the spec text in `specs.rs`.

use crate::operations::{insert_operation, Operation};
use crate::placement::{HostCandidate, Hosts};
use crate::ports::{reserve_ports, IsFree, PortRange, PortRecord, PortRequest, Reservation};
use crate::quotas::admit_in;
use crate::{now_ms, Store, StoreError};
use flvpc_model::quota::{HostCaps, Resources};
use flvpc_model::spec::Backend;
use flvpc_model::{
    EngineKind, HostName, Login, MachineKey, MachineName, NamespaceAdminGrant, NamespaceGrant, NamespaceName, Observed,
    Placement, SuperadminGrant, SystemGrant,
};
use sqlx::Row;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a machine should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// Created and running.
    Running,
    /// Created and stopped.
    Stopped,
    /// Gone: container removed, ports freed, record deleted.
    Deleted,
}

impl Desired {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Stopped => "stopped",
            Desired::Deleted => "deleted",
        }
    }

    /// The desired state a stored word names (anything unknown reads as deleted: never run it).
    pub(crate) fn parse(value: &str) -> Self {
        match value {
            "running" => Desired::Running,
            "stopped" => Desired::Stopped,
            _ => Desired::Deleted,
        }
    }
}

/// A machine as the cluster spec wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachinePlan {
    /// Machine name.
    pub name: MachineName,
    /// Image reference.
    pub image: String,
    /// How the spec asks it to run.
    pub backend: Backend,
    /// Where a new machine goes (the host and the engine for `backend`) when `apply_cluster` is
    /// given no host candidates; with candidates, only its engine counts and the host is chosen
    /// there. A machine already recorded keeps the placement it was created with.
    pub placement: Placement,
    /// The host the spec pins this machine to, if any (a new machine only).
    pub pin: Option<HostName>,
    /// The spec's machine group it belongs to: placement spreads a group over the hosts.
    pub group: String,
    /// CPUs.
    pub cpus: u32,
    /// Hard CPU cap in thousandths of a CPU, if any.
    pub cpu_cap_milli: Option<u32>,
    /// Memory limit in MiB.
    pub memory_mb: u64,
    /// Disk size in GiB.
    pub disk_gb: u64,
    /// A digest of everything that needs a new container when it changes.
    pub spec_hash: String,
    /// Ports to publish.
    pub ports: Vec<PortRequest>,
}

/// A machine's desired and observed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRecord {
    /// Its namespace.
    pub namespace: NamespaceName,
    /// Its name.
    pub name: MachineName,
    /// Where it lives: the host and the engine that run it.
    pub placement: Placement,
    /// Image reference.
    pub image: String,
    /// `docker` or `microvm`.
    pub backend: String,
    /// CPUs.
    pub cpus: u32,
    /// Hard CPU cap in thousandths of a CPU, if any.
    pub cpu_cap_milli: Option<u32>,
    /// Memory limit in MiB.
    pub memory_mb: u64,
    /// Disk size in GiB.
    pub disk_gb: u64,
    /// Digest of the creation settings.
    pub spec_hash: String,
    /// What it should be.
    pub desired: Desired,
    /// What the reconciler last saw.
    pub observed: Observed,
    /// Address on the namespace network.
    pub ip: Option<String>,
    /// The last error, if observed is `error`.
    pub error: Option<String>,
    /// When the reconciler last wrote the observed state (ms since the epoch).
    pub observed_at: i64,
    /// Published host ports.
    pub ports: Vec<PortRecord>,
    /// The restart operation waiting for this machine's next (re)start, if one is pending.
    /// Part of the desired state: set with the operation, cleared by the reconciler once the
    /// engine (re)started the machine.
    pub restart_op: Option<String>,
}

impl MachineRecord {
    /// The machine's typed key.
    pub fn key(&self) -> MachineKey {
        MachineKey::new(self.namespace.clone(), self.name.clone())
    }
}

/// The row id of a namespace, in a transaction.
pub(crate) async fn namespace_id(tx: &mut sqlx::AnyConnection, ns: &NamespaceName) -> Result<i64, StoreError> {
    crate::sql::query_scalar(crate::Dialect::of(tx), "SELECT id FROM namespaces WHERE name = $1")
        .bind(ns.as_str())
        .fetch_optional(tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("namespace {:?}", ns.as_str())))
}

/// A stored placement. Words this version does not know (a newer flvpc's engine, a hand edit)
/// are refused rather than guessed: a machine is never run by an engine it was not placed on.
fn placement_from(host: &str, engine: &str) -> Result<Placement, StoreError> {
    let host = HostName::parse(host)?;
    let engine = EngineKind::parse(engine).ok_or_else(|| {
        flvpc_model::Invalid::new("engine", format!("{engine:?} is not an engine this version of flvpc knows"))
    })?;
    Ok(Placement::new(host, engine))
}

/// The column where `select_machines_with_ports!` puts a port's columns.
const PORT_COLUMN: usize = 18;

/// A machine query joined with its host ports: one row per port (one with NULL port columns
/// for a machine without), the machine's columns (read by `machine_from`), then the port's
/// from [`PORT_COLUMN`]. One query where machines and then their ports took two, and only the
/// ports of the machines read (issue 9: the list's cost grew with every port of the host).
macro_rules! select_machines_with_ports {
    ($tail:literal) => {
        concat!(
            "SELECT m.id, n.name, m.name, m.image, m.backend, m.cpus, m.memory_mb, m.disk_gb, m.spec_hash, m.desired, \
             m.observed, m.ip, m.error, m.observed_at, m.cpu_cap_milli, m.restart_op, m.host, m.engine, \
             p.container_port, p.host_port, p.protocol, p.address FROM machines m \
             JOIN namespaces n ON n.id = m.namespace_id LEFT JOIN host_ports p ON p.machine_id = m.id ",
            $tail
        )
    };
}

/// Machine records from the rows of `select_machines_with_ports!`, ordered so that each
/// machine's rows are next to each other; a machine that does not read is an error in its place.
type Grouped = Vec<(i64, Result<MachineRecord, StoreError>)>;

fn machines_with_ports(rows: &[sqlx::any::AnyRow]) -> Result<Grouped, StoreError> {
    let mut machines: Grouped = Vec::new();
    for row in rows {
        let id: i64 = row.try_get(0)?;
        if machines.last().map(|(last, _)| *last) != Some(id) {
            machines.push((id, machine_from(row).map(|(_, m)| m)));
        }
        if row.try_get::<Option<i64>, _>(PORT_COLUMN + 1)?.is_some() {
            if let Some((_, Ok(machine))) = machines.last_mut() {
                machine.ports.push(port_from(row, PORT_COLUMN)?);
            }
        }
    }
    Ok(machines)
}

/// The machines that read. A row that does not read as a machine (a name or placement written
/// by hand or by a newer flvpc) is left out with an error in the log, rather than hiding every
/// other machine: nothing acts on it, so it is never deleted by mistake either.
fn readable(machines: Grouped) -> Vec<MachineRecord> {
    machines
        .into_iter()
        .filter_map(|(id, machine)| {
            machine
                .map_err(|err| tracing::error!("machine row {id} cannot be read ({err}); left out and left alone"))
                .ok()
        })
        .collect()
}

/// A host port from four columns starting at `at`: container port, host port, protocol, address.
fn port_from(row: &sqlx::any::AnyRow, at: usize) -> Result<PortRecord, StoreError> {
    Ok(PortRecord {
        container_port: u16::try_from(row.try_get::<i64, _>(at)?).unwrap_or(0),
        host_port: u16::try_from(row.try_get::<i64, _>(at + 1)?).unwrap_or(0),
        protocol: crate::ports::protocol(&row.try_get::<String, _>(at + 2)?),
        // Written only from a parsed address; anything else would be a hand edit, and
        // publishing on the default address is the safe reading of it.
        address: row.try_get::<Option<String>, _>(at + 3)?.and_then(|a| a.parse().ok()),
    })
}

fn machine_from(row: &sqlx::any::AnyRow) -> Result<(i64, MachineRecord), StoreError> {
    Ok((
        row.try_get(0)?,
        MachineRecord {
            namespace: NamespaceName::parse(&row.try_get::<String, _>(1)?)?,
            name: MachineName::parse(&row.try_get::<String, _>(2)?)?,
            placement: placement_from(&row.try_get::<String, _>(16)?, &row.try_get::<String, _>(17)?)?,
            image: row.try_get(3)?,
            backend: row.try_get(4)?,
            cpus: u32::try_from(row.try_get::<i64, _>(5)?).unwrap_or(0),
            memory_mb: u64::try_from(row.try_get::<i64, _>(6)?).unwrap_or(0),
            disk_gb: u64::try_from(row.try_get::<i64, _>(7)?).unwrap_or(0),
            spec_hash: row.try_get(8)?,
            desired: Desired::parse(&row.try_get::<String, _>(9)?),
            // A word this version does not know (written by a newer flvpc) reads as an error,
            // which the reconciler overwrites with what it sees.
            observed: Observed::parse(&row.try_get::<String, _>(10)?).unwrap_or(Observed::Error),
            ip: row.try_get(11)?,
            error: row.try_get(12)?,
            observed_at: row.try_get(13)?,
            cpu_cap_milli: row.try_get::<Option<i64>, _>(14)?.and_then(|v| u32::try_from(v).ok()),
            ports: Vec::new(),
            restart_op: row.try_get(15)?,
        },
    ))
}

impl Store {
    /// The machines of a namespace, with ports, by name.
    pub async fn machines(&self, grant: &NamespaceGrant) -> Result<Arc<Vec<MachineRecord>>, StoreError> {
        // Every panel page and API list reads this; see `cache.rs` for why an answer kept here
        // is never older than this process's last write.
        let generation = self.cache.generation();
        if let Some(machines) = self.machine_lists.get(grant.namespace(), generation) {
            return Ok(machines);
        }
        let rows = crate::sql::query(
            self.dialect,
            select_machines_with_ports!("WHERE n.name = $1 ORDER BY m.name, p.host_port"),
        )
        .bind(grant.namespace().as_str())
        .fetch_all(&self.pool)
        .await?;
        let machines = Arc::new(readable(machines_with_ports(&rows)?));
        self.machine_lists.put(grant.namespace().clone(), generation, Arc::clone(&machines));
        Ok(machines)
    }

    /// Every machine of every namespace (the reconciler's resync).
    pub async fn all_machines(&self, _: &SystemGrant) -> Result<Vec<MachineRecord>, StoreError> {
        let rows = crate::sql::query(self.dialect, select_machines_with_ports!("ORDER BY n.name, m.name, p.host_port"))
            .fetch_all(&self.pool)
            .await?;
        Ok(readable(machines_with_ports(&rows)?))
    }

    /// One machine of the grant's namespace, if it has a record (the SSH gateway's lookup).
    pub async fn namespace_machine(
        &self,
        grant: &NamespaceGrant,
        name: &MachineName,
    ) -> Result<Option<MachineRecord>, StoreError> {
        self.machine_record(grant.namespace(), name).await
    }

    /// One machine, if it has a record (the reconciler). A record that cannot be read is an
    /// error here, so that the reconciler leaves the machine alone instead of taking it for gone.
    pub async fn machine(&self, _: &SystemGrant, key: &MachineKey) -> Result<Option<MachineRecord>, StoreError> {
        self.machine_record(&key.namespace, &key.name).await
    }

    async fn machine_record(
        &self,
        ns: &NamespaceName,
        name: &MachineName,
    ) -> Result<Option<MachineRecord>, StoreError> {
        let rows = crate::sql::query(
            self.dialect,
            select_machines_with_ports!("WHERE n.name = $1 AND m.name = $2 ORDER BY p.host_port"),
        )
        .bind(ns.as_str())
        .bind(name.as_str())
        .fetch_all(&self.pool)
        .await?;
        machines_with_ports(&rows)?.pop().map(|(_, machine)| machine).transpose()
    }

    /// Makes the namespace's machines match `plans`: new ones are added (placed on one of the
    /// `candidates`, see `placement.rs`, or as their plan says when there are none), changed
    /// ones updated (keeping their placement), missing ones marked for deletion, host ports
    /// reserved on each machine's host (explicit ones checked against every other holder there and
    /// `is_free(host, address, port, protocol)`, the rest allocated from `range`). All or nothing, and
    /// admitted in the same transaction: the namespace's quota and the host's `caps` are checked
    /// against what is recorded when the change commits ([`StoreError::Exceeded`]). Returns the
    /// operation that tracks the work.
    ///
    /// A port clash names the holder only to the superadmin (`holders`); others learn only
    /// that another namespace holds the port.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_cluster(
        &self,
        grant: &NamespaceAdminGrant,
        plans: &[MachinePlan],
        candidates: &[HostCandidate],
        caps: &HostCaps,
        range: PortRange,
        is_free: &IsFree,
        holders: Option<&SuperadminGrant>,
        by: &Login,
    ) -> Result<Operation, StoreError> {
        let ns = grant.namespace();
        let mut tx = self.begin_admission().await?;
        let ns_id = namespace_id(&mut tx.tx, ns).await?;
        let wanted = plan_resources(plans);
        admit_in(&mut tx.tx, ns, caps, Some(wanted), Some(wanted)).await?;
        let now = now_ms();
        let existing: BTreeMap<String, (i64, String, String)> =
            crate::sql::query(self.dialect, "SELECT name, id, spec_hash, host FROM machines WHERE namespace_id = $1")
                .bind(ns_id)
                .fetch_all(&mut *tx.tx)
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<String, _>(0)?,
                        (r.try_get::<i64, _>(1)?, r.try_get::<String, _>(2)?, r.try_get::<String, _>(3)?),
                    ))
                })
                .collect::<Result<_, StoreError>>()?;
        let mut hosts = placed_so_far(&mut tx.tx, ns_id, plans, &existing).await?;
        // Read in this transaction: a host drained or removed since the caller listed it gets nothing.
        let candidates = match candidates {
            [] => None,
            listed => Some(crate::hosts::still_active(&mut tx.tx, listed).await?),
        };
        let mut reservation = Reservation { ns, taken: Default::default(), range, is_free, holders };
        let mut targets = Vec::new();
        for plan in plans {
            let host = match existing.get(plan.name.as_str()) {
                Some((_, _, host)) => HostName::parse(host)?,
                None => {
                    let host = hosts.choose(
                        plan.name.as_str(),
                        &plan.group,
                        one_machine(plan),
                        &plan.placement,
                        plan.pin.as_ref(),
                        candidates.as_deref(),
                    )?;
                    hosts.add(&host, &plan.group, one_machine(plan));
                    host
                }
            };
            let machine_id = match existing.get(plan.name.as_str()) {
                Some((id, hash, _)) => {
                    if hash != &plan.spec_hash {
                        crate::sql::query(
                            self.dialect,
                            "UPDATE machines SET image = $1, backend = $2, cpus = $3, memory_mb = $4, disk_gb = $5, \
                             spec_hash = $6, desired = 'running', updated_at = $7, cpu_cap_milli = $8 WHERE id = $9",
                        )
                        .bind(&plan.image)
                        .bind(plan.backend.as_str())
                        .bind(i64::from(plan.cpus))
                        .bind(i64::try_from(plan.memory_mb).unwrap_or(i64::MAX))
                        .bind(i64::try_from(plan.disk_gb).unwrap_or(i64::MAX))
                        .bind(&plan.spec_hash)
                        .bind(now)
                        .bind(plan.cpu_cap_milli.map(i64::from))
                        .bind(id)
                        .execute(&mut *tx.tx)
                        .await?;
                    } else {
                        crate::sql::query(self.dialect, "UPDATE machines SET desired = 'running', updated_at = $1 WHERE id = $2")
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx.tx)
                            .await?;
                    }
                    *id
                }
                None => crate::sql::query_scalar(
                    self.dialect,
                    "INSERT INTO machines (namespace_id, name, image, backend, cpus, memory_mb, disk_gb, spec_hash, desired, \
                     observed, created_at, updated_at, cpu_cap_milli, host, engine) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running', 'not_created', $9, $10, $11, $12, $13) RETURNING id",
                )
                .bind(ns_id)
                .bind(plan.name.as_str())
                .bind(&plan.image)
                .bind(plan.backend.as_str())
                .bind(i64::from(plan.cpus))
                .bind(i64::try_from(plan.memory_mb).unwrap_or(i64::MAX))
                .bind(i64::try_from(plan.disk_gb).unwrap_or(i64::MAX))
                .bind(&plan.spec_hash)
                .bind(now)
                .bind(now)
                .bind(plan.cpu_cap_milli.map(i64::from))
                .bind(host.as_str())
                .bind(plan.placement.engine.as_str())
                .fetch_one(&mut *tx.tx)
                .await?,
            };
            reserve_ports(&mut tx.tx, machine_id, &host, plan, &mut reservation).await?;
            targets.push(plan.name.clone());
        }
        for name in existing.keys().filter(|n| !plans.iter().any(|p| p.name.as_str() == n.as_str())) {
            crate::sql::query(
                self.dialect,
                "UPDATE machines SET desired = 'deleted', updated_at = $1 WHERE namespace_id = $2 AND name = $3",
            )
            .bind(now)
            .bind(ns_id)
            .bind(name)
            .execute(&mut *tx.tx)
            .await?;
            // Only validated names are recorded; one that does not parse (a hand edit) is still
            // marked deleted, but not waited for.
            if let Ok(name) = MachineName::parse(name) {
                targets.push(name);
            }
        }
        let op = insert_operation(&mut tx.tx, "cluster.create", ns, None, "apply", targets, by).await?;
        tx.commit().await?;
        Ok(op)
    }

    /// Sets the desired state of one machine or (machine None) all machines of a namespace, and
    /// returns the operation tracking it. Deleting a machine happens only through the spec or `delete`.
    /// Starting is admitted in the same transaction: the machines that go from stopped to
    /// running must fit the host's `caps` ([`StoreError::Exceeded`]).
    pub async fn set_desired(
        &self,
        grant: &NamespaceGrant,
        machine: Option<&MachineName>,
        desired: Desired,
        caps: &HostCaps,
        kind: &str,
        by: &Login,
    ) -> Result<Operation, StoreError> {
        let ns = grant.namespace();
        let mut tx =
            if desired == Desired::Running { self.begin_admission().await? } else { self.begin_write().await? };
        let ns_id = namespace_id(&mut tx.tx, ns).await?;
        let names: Vec<String> = match machine {
            Some(name) => {
                let found: Option<String> = crate::sql::query_scalar(
                    self.dialect,
                    "SELECT name FROM machines WHERE namespace_id = $1 AND name = $2 AND desired <> 'deleted'",
                )
                .bind(ns_id)
                .bind(name.as_str())
                .fetch_optional(&mut *tx.tx)
                .await?;
                vec![found
                    .ok_or_else(|| StoreError::NotFound(format!("machine {:?} in {:?}", name.as_str(), ns.as_str())))?]
            }
            None => {
                crate::sql::query_scalar(
                    self.dialect,
                    "SELECT name FROM machines WHERE namespace_id = $1 AND desired <> 'deleted' ORDER BY name",
                )
                .bind(ns_id)
                .fetch_all(&mut *tx.tx)
                .await?
            }
        };
        if desired == Desired::Running {
            let starting = starting_resources(&mut tx.tx, ns_id, &names).await?;
            let running = admitted_running(&mut tx.tx, ns).await?;
            admit_in(&mut tx.tx, ns, caps, None, Some(running.plus(starting))).await?;
        }
        for name in &names {
            crate::sql::query(
                self.dialect,
                "UPDATE machines SET desired = $1, updated_at = $2 WHERE namespace_id = $3 AND name = $4",
            )
            .bind(desired.as_str())
            .bind(now_ms())
            .bind(ns_id)
            .bind(name)
            .execute(&mut *tx.tx)
            .await?;
        }
        let targets = names.iter().filter_map(|n| MachineName::parse(n).ok()).collect();
        let op = insert_operation(&mut tx.tx, kind, ns, machine, desired.as_str(), targets, by).await?;
        tx.commit().await?;
        Ok(op)
    }

    /// Asks for one machine to be restarted: in one admitted transaction the machine is meant
    /// to run (restarting a stopped machine starts it, so the host's `caps` must admit it,
    /// [`StoreError::Exceeded`]), the restart operation is recorded, and the machine's record
    /// points to it. A refused restart leaves nothing behind; an accepted one survives a
    /// restart of flvpc, because the request is in the record, not in memory.
    pub async fn request_restart(
        &self,
        grant: &NamespaceGrant,
        machine: &MachineName,
        caps: &HostCaps,
        kind: &str,
        by: &Login,
    ) -> Result<Operation, StoreError> {
        let ns = grant.namespace();
        let mut tx = self.begin_admission().await?;
        let ns_id = namespace_id(&mut tx.tx, ns).await?;
        let exists: Option<i64> = crate::sql::query_scalar(
            self.dialect,
            "SELECT id FROM machines WHERE namespace_id = $1 AND name = $2 AND desired <> 'deleted'",
        )
        .bind(ns_id)
        .bind(machine.as_str())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(machine_id) = exists else {
            return Err(StoreError::NotFound(format!("machine {:?} in {:?}", machine.as_str(), ns.as_str())));
        };
        let names = vec![machine.to_string()];
        let starting = starting_resources(&mut tx.tx, ns_id, &names).await?;
        let running = admitted_running(&mut tx.tx, ns).await?;
        admit_in(&mut tx.tx, ns, caps, None, Some(running.plus(starting))).await?;
        let op = insert_operation(&mut tx.tx, kind, ns, Some(machine), "restart", vec![machine.clone()], by).await?;
        crate::sql::query(
            self.dialect,
            "UPDATE machines SET desired = 'running', restart_op = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(&op.id)
        .bind(now_ms())
        .bind(machine_id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(op)
    }

    /// Records that the engine (re)started a machine for the restart operation `op`: the
    /// request is done. A newer request made meanwhile (another id) stays pending.
    pub async fn restart_done(&self, _: &SystemGrant, key: &MachineKey, op: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        crate::sql::query(
            self.dialect,
            "UPDATE machines SET restart_op = NULL WHERE name = $1 AND restart_op = $2 \
             AND namespace_id = (SELECT id FROM namespaces WHERE name = $3)",
        )
        .bind(key.name.as_str())
        .bind(op)
        .bind(key.namespace.as_str())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Writes what the reconciler observed about a machine.
    pub async fn set_observed(
        &self,
        _: &SystemGrant,
        key: &MachineKey,
        observed: Observed,
        ip: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        crate::sql::query(
            self.dialect,
            "UPDATE machines SET observed = $1, ip = $2, error = $3, observed_at = $4 WHERE name = $5 \
             AND namespace_id = (SELECT id FROM namespaces WHERE name = $6)",
        )
        .bind(observed.as_str())
        .bind(ip)
        .bind(error)
        .bind(now_ms())
        .bind(key.name.as_str())
        .bind(key.namespace.as_str())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Deletes the record (and so the ports) of a machine whose container is gone, if it is still meant to be deleted.
    pub async fn forget_deleted_machine(&self, _: &SystemGrant, key: &MachineKey) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = crate::sql::query_scalar(
            self.dialect,
            "SELECT m.id FROM machines m JOIN namespaces n ON n.id = m.namespace_id WHERE n.name = $1 AND m.name = $2 AND m.desired = 'deleted'",
        )
        .bind(key.namespace.as_str())
        .bind(key.name.as_str())
        .fetch_optional(&mut *tx.tx)
        .await?;
        if let Some(id) = id {
            crate::sql::query(self.dialect, "DELETE FROM host_ports WHERE machine_id = $1")
                .bind(id)
                .execute(&mut *tx.tx)
                .await?;
            crate::sql::query(self.dialect, "DELETE FROM machines WHERE id = $1").bind(id).execute(&mut *tx.tx).await?;
        }
        tx.commit().await
    }

    /// The authorized_keys lines for a namespace's machines: every key of every member, in a stable order.
    pub async fn namespace_keys(&self, _: &SystemGrant, ns: &NamespaceName) -> Result<Vec<String>, StoreError> {
        // Read for every machine at every resync: kept between writes like the lists (`cache.rs`),
        // so a key removed is gone from the next pass's answer.
        let generation = self.cache.generation();
        if let Some(keys) = self.namespace_keys.get(ns, generation) {
            return Ok(keys);
        }
        let keys: Vec<String> = crate::sql::query_scalar(
            self.dialect,
            "SELECT k.public_key FROM ssh_keys k JOIN memberships m ON m.user_id = k.user_id \
             JOIN namespaces n ON n.id = m.namespace_id WHERE n.name = $1 ORDER BY k.user_id, k.name",
        )
        .bind(ns.as_str())
        .fetch_all(&self.pool)
        .await?;
        self.namespace_keys.put(ns.clone(), generation, keys.clone());
        Ok(keys)
    }
}

/// One planned machine's resources.
fn one_machine(p: &MachinePlan) -> Resources {
    Resources {
        machines: 1,
        cpus: u64::from(p.cpus),
        memory_mb: p.memory_mb,
        disk_gb: p.disk_gb,
        host_ports: p.ports.len() as u64,
    }
}

/// What each host has allocated before the new machines of an apply are placed: every other
/// namespace's machines as recorded, and this namespace's machines that stay, as planned (so a
/// machine that grows counts as grown, and one about to be deleted not at all).
async fn placed_so_far(
    tx: &mut sqlx::AnyConnection,
    ns_id: i64,
    plans: &[MachinePlan],
    existing: &BTreeMap<String, (i64, String, String)>,
) -> Result<Hosts, StoreError> {
    let mut hosts = Hosts::default();
    for (host, load) in crate::hosts::host_loads_except(tx, ns_id).await? {
        hosts.allocated.insert(host, load);
    }
    for plan in plans {
        if let Some((_, _, host)) = existing.get(plan.name.as_str()) {
            hosts.add(&HostName::parse(host)?, &plan.group, one_machine(plan));
        }
    }
    Ok(hosts)
}

/// What a set of planned machines adds up to (what the namespace has after the apply: all of
/// them allocated and running).
fn plan_resources(plans: &[MachinePlan]) -> Resources {
    plans.iter().fold(Resources::default(), |sum, p| sum.plus(one_machine(p)))
}

/// What the machines `names` add to the namespace's running total when started: those not
/// meant to run yet.
async fn starting_resources(
    tx: &mut sqlx::AnyConnection,
    ns_id: i64,
    names: &[String],
) -> Result<Resources, StoreError> {
    let rows = crate::sql::query(
        crate::Dialect::of(tx),
        "SELECT name, cpus, memory_mb, disk_gb FROM machines WHERE namespace_id = $1 AND desired = 'stopped'",
    )
    .bind(ns_id)
    .fetch_all(tx)
    .await?;
    let mut sum = Resources::default();
    for row in rows {
        if !names.contains(&row.try_get::<String, _>(0)?) {
            continue;
        }
        let get = |i: usize| row.try_get::<i64, _>(i).map(|v| u64::try_from(v).unwrap_or(0));
        sum = sum.plus(Resources { machines: 1, cpus: get(1)?, memory_mb: get(2)?, disk_gb: get(3)?, host_ports: 0 });
    }
    Ok(sum)
}

/// What the namespace runs now, read in the admission transaction.
async fn admitted_running(tx: &mut sqlx::AnyConnection, ns: &NamespaceName) -> Result<Resources, StoreError> {
    Ok(crate::quotas::usage_in(tx).await?.get(ns).map(|u| u.running).unwrap_or_default())
}
