//! Desired machines, their host ports, the stored cluster spec, and operations.
//!
//! The database holds desired state; the reconciler (in flvpc-server) makes the
//! engine match it and writes back what it observed. Host ports live in their
//! own table whose primary key makes handing out one port twice impossible.

use crate::quotas::admit_in;
use crate::{now_ms, Store, StoreError};
use flvpc_model::quota::{HostCaps, Resources};
use flvpc_model::{
    MachineKey, MachineName, NamespaceAdminGrant, NamespaceGrant, NamespaceName, Observed, OperationState, Principal,
    SuperadminGrant, SystemGrant,
};
use sqlx::Row;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

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

/// A host port requested for a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    /// Port inside the machine.
    pub container_port: u16,
    /// The host port asked for; None to allocate one from the range.
    pub host_port: Option<u16>,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// The host address to publish on (already allowed by the server's rules); `None`: the
    /// server's `--publish-address`.
    pub address: Option<IpAddr>,
}

/// A machine as the cluster spec wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachinePlan {
    /// Machine name (validated by the spec).
    pub name: String,
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
    /// A digest of everything that needs a new container when it changes.
    pub spec_hash: String,
    /// Ports to publish.
    pub ports: Vec<PortRequest>,
}

/// A published host port of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRecord {
    /// Port inside the machine.
    pub container_port: u16,
    /// Port on the host.
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The host address it is published on, when the spec named one; `None`: the server's
    /// `--publish-address`.
    pub address: Option<IpAddr>,
}

/// A machine's desired and observed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRecord {
    /// Its namespace.
    pub namespace: NamespaceName,
    /// Its name.
    pub name: String,
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
    /// The machine's typed key; `None` only for a name that was stored without validation
    /// (names are validated when the spec is saved).
    pub fn key(&self) -> Option<MachineKey> {
        MachineName::parse(&self.name).ok().map(|name| MachineKey::new(self.namespace.clone(), name))
    }
}

/// An inclusive range of host ports to allocate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

/// A long-running change, tracked until its machines reach the goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Random id.
    pub id: String,
    /// e.g. `cluster.create`, `machine.restart`.
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The machine, for single-machine operations.
    pub machine: Option<String>,
    /// `apply`, `running`, `stopped`, `deleted` or `restart`.
    pub goal: String,
    /// Machine names it waits for.
    pub targets: Vec<String>,
    /// Where it stands.
    pub state: OperationState,
    /// Targets done.
    pub done: i64,
    /// Targets in all.
    pub total: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// Login of who started it.
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// When it ended.
    pub finished_at: Option<i64>,
}

/// The stored cluster spec text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSpec {
    /// The YAML text.
    pub spec: String,
    /// When it was saved.
    pub updated_at: i64,
    /// Who saved it.
    pub updated_by: String,
}

fn new_operation_id() -> String {
    format!("op-{}", hex::encode(rand::random::<[u8; 8]>()))
}

async fn namespace_id(tx: &mut sqlx::AnyConnection, ns: &NamespaceName) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT id FROM namespaces WHERE name = $1")
        .bind(ns.as_str())
        .fetch_optional(tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("namespace {:?}", ns.as_str())))
}

macro_rules! select_machines {
    ($tail:literal) => {
        concat!(
            "SELECT m.id, n.name, m.name, m.image, m.backend, m.cpus, m.memory_mb, m.disk_gb, m.spec_hash, m.desired, \
             m.observed, m.ip, m.error, m.observed_at, m.cpu_cap_milli, m.restart_op FROM machines m JOIN namespaces n ON n.id = m.namespace_id ",
            $tail
        )
    };
}

/// A machine query joined with its host ports: one row per port (one with NULL port columns
/// for a machine without), the machine's columns as in `select_machines!`, then the port's
/// from column 16. One query where machines and then their ports took two, and only the ports
/// of the machines read (issue 9: the list's cost grew with every port of the host).
macro_rules! select_machines_with_ports {
    ($tail:literal) => {
        concat!(
            "SELECT m.id, n.name, m.name, m.image, m.backend, m.cpus, m.memory_mb, m.disk_gb, m.spec_hash, m.desired, \
             m.observed, m.ip, m.error, m.observed_at, m.cpu_cap_milli, m.restart_op, \
             p.container_port, p.host_port, p.protocol, p.address FROM machines m \
             JOIN namespaces n ON n.id = m.namespace_id LEFT JOIN host_ports p ON p.machine_id = m.id ",
            $tail
        )
    };
}

/// Machine records from the rows of `select_machines_with_ports!`, ordered so that each
/// machine's rows are next to each other.
fn machines_with_ports(rows: &[sqlx::any::AnyRow]) -> Result<Vec<MachineRecord>, StoreError> {
    let mut machines: Vec<(i64, MachineRecord)> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get(0)?;
        if machines.last().map(|(last, _)| *last) != Some(id) {
            machines.push(machine_from(row)?);
        }
        if row.try_get::<Option<i64>, _>(17)?.is_some() {
            if let Some((_, machine)) = machines.last_mut() {
                machine.ports.push(port_from(row, 16)?);
            }
        }
    }
    Ok(machines.into_iter().map(|(_, m)| m).collect())
}

/// A host port from four columns starting at `at`: container port, host port, protocol, address.
fn port_from(row: &sqlx::any::AnyRow, at: usize) -> Result<PortRecord, StoreError> {
    Ok(PortRecord {
        container_port: u16::try_from(row.try_get::<i64, _>(at)?).unwrap_or(0),
        host_port: u16::try_from(row.try_get::<i64, _>(at + 1)?).unwrap_or(0),
        protocol: row.try_get(at + 2)?,
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
            name: row.try_get(2)?,
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

fn operation_from(row: &sqlx::any::AnyRow) -> Result<Operation, StoreError> {
    let targets: String = row.try_get(5)?;
    Ok(Operation {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        namespace: row.try_get(2)?,
        machine: row.try_get(3)?,
        goal: row.try_get(4)?,
        targets: targets.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        state: OperationState::parse(&row.try_get::<String, _>(6)?).unwrap_or(OperationState::Running),
        done: row.try_get(7)?,
        total: row.try_get(8)?,
        error: row.try_get(9)?,
        created_by: row.try_get(10)?,
        created_at: row.try_get(11)?,
        finished_at: row.try_get(12)?,
    })
}

macro_rules! select_operations {
    ($tail:literal) => {
        concat!(
            "SELECT id, kind, namespace, machine, goal, targets, state, done, total, error, created_by, created_at, \
             finished_at FROM operations ",
            $tail
        )
    };
}

impl Store {
    /// This database's instance id: it labels every container this flvpc creates, so that
    /// another flvpc (or a test server) on the same Docker engine never adopts or removes them.
    pub async fn instance_id(&self) -> Result<String, StoreError> {
        if let Some(id) = sqlx::query_scalar::<_, String>("SELECT value FROM server_settings WHERE key = 'instance_id'")
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(id);
        }
        let id = hex::encode(rand::random::<[u8; 8]>());
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query("INSERT INTO server_settings (key, value) VALUES ('instance_id', $1)")
            .bind(&id)
            .execute(&mut *tx.tx)
            .await;
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok(id)
            }
            Err(_) => {
                drop(tx);
                Ok(sqlx::query_scalar("SELECT value FROM server_settings WHERE key = 'instance_id'")
                    .fetch_one(&self.pool)
                    .await?)
            }
        }
    }

    async fn attach_ports(&self, mut machines: Vec<(i64, MachineRecord)>) -> Result<Vec<MachineRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT machine_id, container_port, host_port, protocol, address FROM host_ports ORDER BY host_port",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by_machine: BTreeMap<i64, Vec<PortRecord>> = BTreeMap::new();
        for row in rows {
            by_machine.entry(row.try_get(0)?).or_default().push(port_from(&row, 1)?);
        }
        for (id, machine) in &mut machines {
            machine.ports = by_machine.remove(id).unwrap_or_default();
        }
        Ok(machines.into_iter().map(|(_, m)| m).collect())
    }

    /// The namespace's stored cluster spec, if one was saved.
    pub async fn cluster_spec(&self, grant: &NamespaceGrant) -> Result<Option<StoredSpec>, StoreError> {
        let row = sqlx::query(
            "SELECT c.spec, c.updated_at, c.updated_by FROM cluster_specs c JOIN namespaces n ON n.id = c.namespace_id WHERE n.name = $1",
        )
        .bind(grant.namespace().as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(StoredSpec { spec: r.try_get(0)?, updated_at: r.try_get(1)?, updated_by: r.try_get(2)? }))
            .transpose()
    }

    /// Saves the cluster spec text (already validated by the caller). Machines are untouched until `apply_cluster`.
    pub async fn save_cluster_spec(&self, grant: &NamespaceAdminGrant, spec: &str, by: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let ns_id = namespace_id(&mut tx.tx, grant.namespace()).await?;
        let now = now_ms();
        let updated =
            sqlx::query("UPDATE cluster_specs SET spec = $1, updated_at = $2, updated_by = $3 WHERE namespace_id = $4")
                .bind(spec)
                .bind(now)
                .bind(by)
                .bind(ns_id)
                .execute(&mut *tx.tx)
                .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO cluster_specs (namespace_id, spec, updated_at, updated_by) VALUES ($1, $2, $3, $4)",
            )
            .bind(ns_id)
            .bind(spec)
            .bind(now)
            .bind(by)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await
    }

    /// The machines of a namespace, with ports, by name.
    pub async fn machines(&self, grant: &NamespaceGrant) -> Result<Vec<MachineRecord>, StoreError> {
        let rows = sqlx::query(select_machines_with_ports!("WHERE n.name = $1 ORDER BY m.name, p.host_port"))
            .bind(grant.namespace().as_str())
            .fetch_all(&self.pool)
            .await?;
        machines_with_ports(&rows)
    }

    /// Every machine of every namespace (the reconciler's resync).
    pub async fn all_machines(&self, _: &SystemGrant) -> Result<Vec<MachineRecord>, StoreError> {
        let rows = sqlx::query(select_machines!("ORDER BY n.name, m.name")).fetch_all(&self.pool).await?;
        let machines = rows.iter().map(machine_from).collect::<Result<Vec<_>, _>>()?;
        self.attach_ports(machines).await
    }

    /// One machine of the grant's namespace, if it has a record (the SSH gateway's lookup).
    pub async fn namespace_machine(
        &self,
        grant: &NamespaceGrant,
        name: &str,
    ) -> Result<Option<MachineRecord>, StoreError> {
        self.machine_record(grant.namespace(), name).await
    }

    /// One machine, if it has a record (the reconciler).
    pub async fn machine(
        &self,
        _: &SystemGrant,
        ns: &NamespaceName,
        name: &str,
    ) -> Result<Option<MachineRecord>, StoreError> {
        self.machine_record(ns, name).await
    }

    async fn machine_record(&self, ns: &NamespaceName, name: &str) -> Result<Option<MachineRecord>, StoreError> {
        let rows = sqlx::query(select_machines_with_ports!("WHERE n.name = $1 AND m.name = $2 ORDER BY p.host_port"))
            .bind(ns.as_str())
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        Ok(machines_with_ports(&rows)?.pop())
    }

    /// Makes the namespace's machines match `plans`: new ones are added, changed ones
    /// updated, missing ones marked for deletion, host ports reserved (explicit ones
    /// checked against every other holder and `is_free(address, port, protocol)`, the rest
    /// allocated from `range`). All or nothing, and admitted in the same transaction: the
    /// namespace's quota and the host's `caps` are checked against what is recorded when the
    /// change commits ([`StoreError::Exceeded`]). Returns the operation that tracks the work.
    ///
    /// A port clash names the holder only to the superadmin (`holders`); others learn only
    /// that another namespace holds the port.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_cluster(
        &self,
        grant: &NamespaceAdminGrant,
        plans: &[MachinePlan],
        caps: &HostCaps,
        range: PortRange,
        is_free: &(dyn Fn(Option<IpAddr>, u16, &str) -> bool + Sync),
        holders: Option<&SuperadminGrant>,
        by: &str,
    ) -> Result<Operation, StoreError> {
        let ns = grant.namespace();
        let mut tx = self.begin_admission().await?;
        let ns_id = namespace_id(&mut tx.tx, ns).await?;
        let wanted = plan_resources(plans);
        admit_in(&mut tx.tx, ns, caps, Some(wanted), Some(wanted)).await?;
        let now = now_ms();
        let existing: BTreeMap<String, (i64, String)> =
            sqlx::query("SELECT name, id, spec_hash FROM machines WHERE namespace_id = $1")
                .bind(ns_id)
                .fetch_all(&mut *tx.tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, (r.try_get::<i64, _>(1)?, r.try_get::<String, _>(2)?))))
                .collect::<Result<_, StoreError>>()?;
        let mut taken: HashSet<(u16, String)> = sqlx::query("SELECT host_port, protocol FROM host_ports")
            .fetch_all(&mut *tx.tx)
            .await?
            .iter()
            .map(|r| Ok((u16::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0), r.try_get::<String, _>(1)?)))
            .collect::<Result<_, StoreError>>()?;
        let mut targets = Vec::new();
        for plan in plans {
            let machine_id = match existing.get(&plan.name) {
                Some((id, hash)) => {
                    if hash != &plan.spec_hash {
                        sqlx::query(
                            "UPDATE machines SET image = $1, backend = $2, cpus = $3, memory_mb = $4, disk_gb = $5, \
                             spec_hash = $6, desired = 'running', updated_at = $7, cpu_cap_milli = $9 WHERE id = $8",
                        )
                        .bind(&plan.image)
                        .bind(&plan.backend)
                        .bind(i64::from(plan.cpus))
                        .bind(i64::try_from(plan.memory_mb).unwrap_or(i64::MAX))
                        .bind(i64::try_from(plan.disk_gb).unwrap_or(i64::MAX))
                        .bind(&plan.spec_hash)
                        .bind(now)
                        .bind(id)
                        .bind(plan.cpu_cap_milli.map(i64::from))
                        .execute(&mut *tx.tx)
                        .await?;
                    } else {
                        sqlx::query("UPDATE machines SET desired = 'running', updated_at = $1 WHERE id = $2")
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx.tx)
                            .await?;
                    }
                    *id
                }
                None => sqlx::query_scalar(
                    "INSERT INTO machines (namespace_id, name, image, backend, cpus, memory_mb, disk_gb, spec_hash, desired, \
                     observed, created_at, updated_at, cpu_cap_milli) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running', 'not_created', $9, $9, $10) RETURNING id",
                )
                .bind(ns_id)
                .bind(&plan.name)
                .bind(&plan.image)
                .bind(&plan.backend)
                .bind(i64::from(plan.cpus))
                .bind(i64::try_from(plan.memory_mb).unwrap_or(i64::MAX))
                .bind(i64::try_from(plan.disk_gb).unwrap_or(i64::MAX))
                .bind(&plan.spec_hash)
                .bind(now)
                .bind(plan.cpu_cap_milli.map(i64::from))
                .fetch_one(&mut *tx.tx)
                .await?,
            };
            // This machine's current ports: kept when asked again, so a re-apply moves nothing.
            let held: Vec<(u16, String, u16)> =
                sqlx::query("SELECT host_port, protocol, container_port FROM host_ports WHERE machine_id = $1")
                    .bind(machine_id)
                    .fetch_all(&mut *tx.tx)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok((
                            u16::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                            r.try_get::<String, _>(1)?,
                            u16::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                        ))
                    })
                    .collect::<Result<_, StoreError>>()?;
            sqlx::query("DELETE FROM host_ports WHERE machine_id = $1").bind(machine_id).execute(&mut *tx.tx).await?;
            for (port, proto, _) in &held {
                taken.remove(&(*port, proto.clone()));
            }
            for request in &plan.ports {
                let proto = request.protocol.to_owned();
                let port = match request.host_port {
                    Some(port) => {
                        let ours = held.iter().any(|(p, pr, _)| *p == port && *pr == proto);
                        if taken.contains(&(port, proto.clone())) {
                            let holder = port_holder(&mut tx.tx, port, &proto, ns, holders).await?;
                            return Err(StoreError::Conflict(format!(
                                "host port {port}/{proto} for {} is already taken ({holder}); pick another, or leave \
                                 hostPort out to get a free one",
                                plan.name
                            )));
                        }
                        if !ours && !is_free(request.address, port, &proto) {
                            return Err(StoreError::Conflict(format!(
                                "host port {port}/{proto} for {} is already taken (by a program on the host); pick \
                                 another, or leave hostPort out to get a free one",
                                plan.name
                            )));
                        }
                        port
                    }
                    None => {
                        let previous = held
                            .iter()
                            .find(|(p, pr, c)| {
                                *c == request.container_port && *pr == proto && !taken.contains(&(*p, proto.clone()))
                            })
                            .map(|(p, _, _)| *p);
                        match previous {
                            Some(port) => port,
                            None => (range.first..=range.last)
                                .find(|p| !taken.contains(&(*p, proto.clone())) && is_free(request.address, *p, &proto))
                                .ok_or_else(|| {
                                    StoreError::Conflict(format!(
                                        "no free host port left in {}-{} for {}",
                                        range.first, range.last, plan.name
                                    ))
                                })?,
                        }
                    }
                };
                taken.insert((port, proto.clone()));
                sqlx::query(
                    "INSERT INTO host_ports (host_port, protocol, machine_id, container_port, address) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(i64::from(port))
                .bind(&proto)
                .bind(machine_id)
                .bind(i64::from(request.container_port))
                .bind(request.address.map(|a| a.to_string()))
                .execute(&mut *tx.tx)
                .await
                .map_err(|e| {
                    StoreError::unique(e, || format!("host port {port}/{proto} was taken meanwhile; try again"))
                })?;
            }
            targets.push(plan.name.clone());
        }
        for name in existing.keys().filter(|n| !plans.iter().any(|p| &p.name == *n)) {
            sqlx::query(
                "UPDATE machines SET desired = 'deleted', updated_at = $1 WHERE namespace_id = $2 AND name = $3",
            )
            .bind(now)
            .bind(ns_id)
            .bind(name)
            .execute(&mut *tx.tx)
            .await?;
            targets.push(name.clone());
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
        machine: Option<&str>,
        desired: Desired,
        caps: &HostCaps,
        kind: &str,
        by: &str,
    ) -> Result<Operation, StoreError> {
        let ns = grant.namespace();
        let mut tx =
            if desired == Desired::Running { self.begin_admission().await? } else { self.begin_write().await? };
        let ns_id = namespace_id(&mut tx.tx, ns).await?;
        let names: Vec<String> = match machine {
            Some(name) => {
                let found: Option<String> = sqlx::query_scalar(
                    "SELECT name FROM machines WHERE namespace_id = $1 AND name = $2 AND desired <> 'deleted'",
                )
                .bind(ns_id)
                .bind(name)
                .fetch_optional(&mut *tx.tx)
                .await?;
                vec![found.ok_or_else(|| StoreError::NotFound(format!("machine {name:?} in {:?}", ns.as_str())))?]
            }
            None => {
                sqlx::query_scalar(
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
            sqlx::query("UPDATE machines SET desired = $1, updated_at = $2 WHERE namespace_id = $3 AND name = $4")
                .bind(desired.as_str())
                .bind(now_ms())
                .bind(ns_id)
                .bind(name)
                .execute(&mut *tx.tx)
                .await?;
        }
        let op = insert_operation(&mut tx.tx, kind, ns, machine, desired.as_str(), names, by).await?;
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
        machine: &str,
        caps: &HostCaps,
        kind: &str,
        by: &str,
    ) -> Result<Operation, StoreError> {
        let ns = grant.namespace();
        let mut tx = self.begin_admission().await?;
        let ns_id = namespace_id(&mut tx.tx, ns).await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM machines WHERE namespace_id = $1 AND name = $2 AND desired <> 'deleted'",
        )
        .bind(ns_id)
        .bind(machine)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(machine_id) = exists else {
            return Err(StoreError::NotFound(format!("machine {machine:?} in {:?}", ns.as_str())));
        };
        let names = vec![machine.to_owned()];
        let starting = starting_resources(&mut tx.tx, ns_id, &names).await?;
        let running = admitted_running(&mut tx.tx, ns).await?;
        admit_in(&mut tx.tx, ns, caps, None, Some(running.plus(starting))).await?;
        let op = insert_operation(&mut tx.tx, kind, ns, Some(machine), "restart", names, by).await?;
        sqlx::query("UPDATE machines SET desired = 'running', restart_op = $1, updated_at = $2 WHERE id = $3")
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
    pub async fn restart_done(
        &self,
        _: &SystemGrant,
        ns: &NamespaceName,
        name: &str,
        op: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE machines SET restart_op = NULL WHERE name = $1 AND restart_op = $2 \
             AND namespace_id = (SELECT id FROM namespaces WHERE name = $3)",
        )
        .bind(name)
        .bind(op)
        .bind(ns.as_str())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Writes what the reconciler observed about a machine.
    pub async fn set_observed(
        &self,
        _: &SystemGrant,
        ns: &NamespaceName,
        name: &str,
        observed: Observed,
        ip: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE machines SET observed = $1, ip = $2, error = $3, observed_at = $4 WHERE name = $5 \
             AND namespace_id = (SELECT id FROM namespaces WHERE name = $6)",
        )
        .bind(observed.as_str())
        .bind(ip)
        .bind(error)
        .bind(now_ms())
        .bind(name)
        .bind(ns.as_str())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Deletes the record (and so the ports) of a machine whose container is gone, if it is still meant to be deleted.
    pub async fn forget_deleted_machine(
        &self,
        _: &SystemGrant,
        ns: &NamespaceName,
        name: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT m.id FROM machines m JOIN namespaces n ON n.id = m.namespace_id WHERE n.name = $1 AND m.name = $2 AND m.desired = 'deleted'",
        )
        .bind(ns.as_str())
        .bind(name)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if let Some(id) = id {
            sqlx::query("DELETE FROM host_ports WHERE machine_id = $1").bind(id).execute(&mut *tx.tx).await?;
            sqlx::query("DELETE FROM machines WHERE id = $1").bind(id).execute(&mut *tx.tx).await?;
        }
        tx.commit().await
    }

    /// The authorized_keys lines for a namespace's machines: every key of every member, in a stable order.
    pub async fn namespace_keys(&self, _: &SystemGrant, ns: &NamespaceName) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT k.public_key FROM ssh_keys k JOIN memberships m ON m.user_id = k.user_id \
             JOIN namespaces n ON n.id = m.namespace_id WHERE n.name = $1 ORDER BY k.user_id, k.name",
        )
        .bind(ns.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// One operation, for who started it or the superadmin.
    pub async fn operation(&self, caller: &Principal, id: &str) -> Result<Operation, StoreError> {
        let op = self.operation_by_id(id).await?.ok_or_else(|| StoreError::NotFound(format!("operation {id:?}")))?;
        if caller.is_superadmin() || op.created_by == caller.login().as_str() {
            Ok(op)
        } else {
            Err(StoreError::NotFound(format!("operation {id:?}")))
        }
    }

    async fn operation_by_id(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        if id.len() > 64 {
            return Ok(None);
        }
        let row = sqlx::query(select_operations!("WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(operation_from).transpose()
    }

    /// The latest operations of a namespace, newest first.
    pub async fn namespace_operations(&self, grant: &NamespaceGrant, limit: i64) -> Result<Vec<Operation>, StoreError> {
        let rows = sqlx::query(select_operations!("WHERE namespace = $1 ORDER BY created_at DESC LIMIT $2"))
            .bind(grant.namespace().as_str())
            .bind(limit.clamp(1, 100))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(operation_from).collect()
    }

    /// Operations not finished yet (after a restart, the reconciler picks them up again).
    pub async fn open_operations(&self, _: &SystemGrant) -> Result<Vec<Operation>, StoreError> {
        let rows = sqlx::query(select_operations!("WHERE state IN ('pending', 'running') ORDER BY created_at"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(operation_from).collect()
    }

    /// Records an operation's progress, and its end when `state` is succeeded or failed.
    pub async fn update_operation(
        &self,
        _: &SystemGrant,
        id: &str,
        state: OperationState,
        done: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let finished = state.is_finished().then(now_ms);
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE operations SET state = $1, done = $2, error = $3, finished_at = $4 WHERE id = $5")
            .bind(state.as_str())
            .bind(done)
            .bind(error)
            .bind(finished)
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }
}

/// What a set of planned machines adds up to (what the namespace has after the apply: all of
/// them allocated and running).
fn plan_resources(plans: &[MachinePlan]) -> Resources {
    plans.iter().fold(Resources::default(), |sum, p| {
        sum.plus(Resources {
            machines: 1,
            cpus: u64::from(p.cpus),
            memory_mb: p.memory_mb,
            disk_gb: p.disk_gb,
            host_ports: p.ports.len() as u64,
        })
    })
}

/// What the machines `names` add to the namespace's running total when started: those not
/// meant to run yet.
async fn starting_resources(
    tx: &mut sqlx::AnyConnection,
    ns_id: i64,
    names: &[String],
) -> Result<Resources, StoreError> {
    let rows = sqlx::query(
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

/// Who holds a host port, as the caller may be told: the machine when it is the caller's own
/// namespace or the caller is the superadmin; otherwise only that another namespace holds it,
/// so that a refusal never names another tenant's resources.
async fn port_holder(
    tx: &mut sqlx::AnyConnection,
    port: u16,
    proto: &str,
    ns: &NamespaceName,
    holders: Option<&SuperadminGrant>,
) -> Result<String, StoreError> {
    let row = sqlx::query(
        "SELECT n.name, m.name FROM host_ports h JOIN machines m ON m.id = h.machine_id \
         JOIN namespaces n ON n.id = m.namespace_id WHERE h.host_port = $1 AND h.protocol = $2",
    )
    .bind(i64::from(port))
    .bind(proto)
    .fetch_optional(tx)
    .await?;
    let Some(row) = row else { return Ok("by another namespace's machine".into()) };
    let (namespace, machine): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    Ok(if namespace == ns.as_str() {
        format!("by machine {machine} of this namespace")
    } else if holders.is_some() {
        format!("by machine {machine} of namespace {namespace}")
    } else {
        "by another namespace's machine".into()
    })
}

async fn insert_operation(
    tx: &mut sqlx::AnyConnection,
    kind: &str,
    ns: &NamespaceName,
    machine: Option<&str>,
    goal: &str,
    targets: Vec<String>,
    by: &str,
) -> Result<Operation, StoreError> {
    let op = Operation {
        id: new_operation_id(),
        kind: kind.to_owned(),
        namespace: ns.to_string(),
        machine: machine.map(str::to_owned),
        goal: goal.to_owned(),
        total: i64::try_from(targets.len()).unwrap_or(i64::MAX),
        targets,
        state: OperationState::Pending,
        done: 0,
        error: None,
        created_by: by.to_owned(),
        created_at: now_ms(),
        finished_at: None,
    };
    sqlx::query(
        "INSERT INTO operations (id, kind, namespace, machine, goal, targets, state, done, total, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&op.id)
    .bind(&op.kind)
    .bind(&op.namespace)
    .bind(&op.machine)
    .bind(&op.goal)
    .bind(op.targets.join(","))
    .bind(op.state.as_str())
    .bind(op.done)
    .bind(op.total)
    .bind(&op.created_by)
    .bind(op.created_at)
    .execute(tx)
    .await?;
    Ok(op)
}
