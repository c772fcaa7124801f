//! Hosts that run machines besides the server's own (issue 13), and what each one carries.
//!
//! The local host is implicit: named `local`, never a row, so a single-server install has an
//! empty `hosts` table. A host row says how to reach its engine (the endpoint as the operator
//! wrote it, TLS files for tcp engines), the address its published ports are reached at, and
//! whether new machines may go there (`active`) or not (`draining`). Placement of new machines
//! is in `placement.rs`; moving a stopped machine in `moves.rs`.

use crate::{now_ms, Store, StoreError};
use flvpc_model::quota::Resources;
use flvpc_model::{HostName, Login, SuperadminGrant, SystemGrant};
use sqlx::Row;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// Whether new machines may be placed on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Takes new machines.
    Active,
    /// Keeps what it runs, takes no new machine (before it is removed, or for maintenance).
    Draining,
}

impl HostState {
    /// The stored and shown word.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Active => "active",
            HostState::Draining => "draining",
        }
    }

    /// The state a word names; `None` for any other word.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "active" => Some(HostState::Active),
            "draining" => Some(HostState::Draining),
            _ => None,
        }
    }
}

/// The files a tcp engine endpoint is reached with (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTls {
    /// The CA that signed the engine's certificate.
    pub ca: PathBuf,
    /// flvpc's client certificate.
    pub cert: PathBuf,
    /// flvpc's client key.
    pub key: PathBuf,
}

/// A host as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// Its name (never `local`).
    pub name: HostName,
    /// The engine endpoint as the operator wrote it (`unix:///run/docker.sock`, `tcp://10.0.0.2:2376`).
    pub engine: String,
    /// Where people and the gateway reach this host's published ports.
    pub address: IpAddr,
    /// TLS files, for tcp engines.
    pub tls: Option<HostTls>,
    /// Active or draining.
    pub state: HostState,
    /// When it was added (ms since the epoch).
    pub created_at: i64,
    /// Who added it.
    pub created_by: String,
}

/// A host to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHost {
    /// Its name (not `local`, which is the server's own host).
    pub name: HostName,
    /// The engine endpoint as the operator wrote it.
    pub engine: String,
    /// Where its published ports are reached.
    pub address: IpAddr,
    /// TLS files, for tcp engines.
    pub tls: Option<HostTls>,
}

/// What one host carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostLoad {
    /// Machine records placed there, whatever their desired state (a host with any cannot be removed).
    pub machines: u64,
    /// Machines not meant to be deleted (running or stopped): what placement counts.
    pub allocated: Resources,
    /// Machines meant to run.
    pub running: Resources,
}

/// A host row. A row that does not read (a hand edit) is an error naming the host, never a guess.
fn host_from(row: &sqlx::any::AnyRow) -> Result<HostRecord, StoreError> {
    let name: String = row.try_get(0)?;
    let bad = |what: &str, value: &str| {
        StoreError::Invalid(flvpc_model::Invalid::new(
            "host",
            format!("host {name:?} has {what} {value:?} in the database, which this flvpc cannot read"),
        ))
    };
    let address: String = row.try_get(2)?;
    let state: String = row.try_get(6)?;
    let tls = match (
        row.try_get::<Option<String>, _>(3)?,
        row.try_get::<Option<String>, _>(4)?,
        row.try_get::<Option<String>, _>(5)?,
    ) {
        (Some(ca), Some(cert), Some(key)) => {
            Some(HostTls { ca: PathBuf::from(ca), cert: PathBuf::from(cert), key: PathBuf::from(key) })
        }
        _ => None,
    };
    Ok(HostRecord {
        name: HostName::parse(&name)?,
        engine: row.try_get(1)?,
        address: address.parse().map_err(|_| bad("the address", &address))?,
        tls,
        state: HostState::parse(&state).ok_or_else(|| bad("the state", &state))?,
        created_at: row.try_get(7)?,
        created_by: row.try_get(8)?,
    })
}

fn path_text(path: &std::path::Path) -> Result<String, StoreError> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        StoreError::Invalid(flvpc_model::Invalid::new(
            "tls",
            format!("{} is not valid UTF-8: name the TLS files with UTF-8 paths", path.display()),
        ))
    })
}

/// Counts as u64 from a stored integer (negative ones, a hand edit, as 0).
fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Every recorded host, by name (the local host is not among them).
    pub async fn hosts(&self, _: &SystemGrant) -> Result<Vec<HostRecord>, StoreError> {
        let rows = crate::sql::query(
            self.dialect,
            "SELECT name, engine, address, tls_ca, tls_cert, tls_key, state, created_at, created_by FROM hosts \
             ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(host_from).collect()
    }

    /// One recorded host (`None` for `local` and for names not recorded).
    pub async fn host(&self, _: &SystemGrant, name: &HostName) -> Result<Option<HostRecord>, StoreError> {
        let row = crate::sql::query(
            self.dialect,
            "SELECT name, engine, address, tls_ca, tls_cert, tls_key, state, created_at, created_by FROM hosts \
             WHERE name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(host_from).transpose()
    }

    /// Records a new host, active.
    pub async fn add_host(&self, _: &SuperadminGrant, host: &NewHost, by: &Login) -> Result<HostRecord, StoreError> {
        if host.name.as_str() == HostName::LOCAL {
            return Err(StoreError::Conflict(
                "host name \"local\" is the server's own host, which is always there: pick another name".into(),
            ));
        }
        let tls = match &host.tls {
            Some(t) => Some((path_text(&t.ca)?, path_text(&t.cert)?, path_text(&t.key)?)),
            None => None,
        };
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        crate::sql::query(
            self.dialect,
            "INSERT INTO hosts (name, engine, address, tls_ca, tls_cert, tls_key, state, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(host.name.as_str())
        .bind(&host.engine)
        .bind(host.address.to_string())
        .bind(tls.as_ref().map(|t| t.0.clone()))
        .bind(tls.as_ref().map(|t| t.1.clone()))
        .bind(tls.as_ref().map(|t| t.2.clone()))
        .bind(HostState::Active.as_str())
        .bind(now)
        .bind(by.as_str())
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| {
            StoreError::unique(e, || {
                format!("host {:?} already exists: pick another name, or remove that host first", host.name.as_str())
            })
        })?;
        tx.commit().await?;
        Ok(HostRecord {
            name: host.name.clone(),
            engine: host.engine.clone(),
            address: host.address,
            tls: host.tls.clone(),
            state: HostState::Active,
            created_at: now,
            created_by: by.to_string(),
        })
    }

    /// Makes a host take new machines again, or stop taking them.
    pub async fn set_host_state(
        &self,
        _: &SuperadminGrant,
        name: &HostName,
        state: HostState,
    ) -> Result<(), StoreError> {
        // Serialised with applies, which read the active hosts in their admission transaction.
        let mut tx = self.begin_admission().await?;
        let changed = crate::sql::query(self.dialect, "UPDATE hosts SET state = $1 WHERE name = $2")
            .bind(state.as_str())
            .bind(name.as_str())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        // MySQL counts changed rows, not matched ones: an unchanged state is checked for separately.
        if changed == 0 && !host_exists(&mut tx.tx, name).await? {
            return Err(StoreError::NotFound(format!("host {:?}", name.as_str())));
        }
        tx.commit().await
    }

    /// Forgets a host. Refused while any machine record names it (even one being deleted), so
    /// that no machine is left on a host nobody reconciles.
    pub async fn remove_host(&self, _: &SuperadminGrant, name: &HostName) -> Result<(), StoreError> {
        let mut tx = self.begin_admission().await?;
        let machines: i64 = crate::sql::query_scalar(self.dialect, "SELECT COUNT(*) FROM machines WHERE host = $1")
            .bind(name.as_str())
            .fetch_one(&mut *tx.tx)
            .await?;
        if !host_exists(&mut tx.tx, name).await? {
            return Err(StoreError::NotFound(format!("host {:?}", name.as_str())));
        }
        if machines > 0 {
            return Err(StoreError::Conflict(format!(
                "host {} still has {machines} machine{}: delete them or move them to another host first \
                 (set it draining so that no new machine goes there)",
                name,
                if machines == 1 { "" } else { "s" }
            )));
        }
        crate::sql::query(self.dialect, "DELETE FROM hosts WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// What each host carries, by name: every host that has machine records, `local` included
    /// (a host without machines is absent).
    pub async fn host_machine_counts(&self, _: &SuperadminGrant) -> Result<BTreeMap<HostName, HostLoad>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        host_loads(&mut conn).await
    }
}

async fn host_exists(tx: &mut sqlx::AnyConnection, name: &HostName) -> Result<bool, StoreError> {
    let found: Option<String> =
        crate::sql::query_scalar(crate::Dialect::of(tx), "SELECT name FROM hosts WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(tx)
            .await?;
    Ok(found.is_some())
}

/// The candidates that are still `local` or an active host, read in the apply's transaction (the
/// caller listed them before it began; `remove_host` and `set_host_state` may have run since).
pub(crate) async fn still_active(
    conn: &mut sqlx::AnyConnection,
    candidates: &[crate::HostCandidate],
) -> Result<Vec<crate::HostCandidate>, StoreError> {
    let active: Vec<String> =
        crate::sql::query_scalar(crate::Dialect::of(conn), "SELECT name FROM hosts WHERE state = $1")
            .bind(HostState::Active.as_str())
            .fetch_all(&mut *conn)
            .await?;
    Ok(candidates
        .iter()
        .filter(|c| c.host.as_str() == HostName::LOCAL || active.iter().any(|a| a == c.host.as_str()))
        .cloned()
        .collect())
}

/// What each host carries, read on `conn`.
async fn host_loads(conn: &mut sqlx::AnyConnection) -> Result<BTreeMap<HostName, HostLoad>, StoreError> {
    loads(conn, None).await
}

/// What each host has allocated by the machines of namespaces other than `ns_id`, read in an
/// apply's admission transaction (placement adds the namespace's own machines as planned).
pub(crate) async fn host_loads_except(
    conn: &mut sqlx::AnyConnection,
    ns_id: i64,
) -> Result<BTreeMap<HostName, Resources>, StoreError> {
    Ok(loads(conn, Some(ns_id)).await?.into_iter().map(|(host, load)| (host, load.allocated)).collect())
}

async fn loads(
    conn: &mut sqlx::AnyConnection,
    except_ns: Option<i64>,
) -> Result<BTreeMap<HostName, HostLoad>, StoreError> {
    let rows = crate::sql::query(
        crate::Dialect::of(conn),
        "SELECT host, desired, cpus, memory_mb, disk_gb, \
         (SELECT COUNT(*) FROM host_ports h WHERE h.machine_id = m.id), namespace_id FROM machines m",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<HostName, HostLoad> = BTreeMap::new();
    for row in rows {
        if except_ns.is_some() && except_ns == Some(row.try_get::<i64, _>(6)?) {
            continue;
        }
        let host: String = row.try_get(0)?;
        let Ok(host) = HostName::parse(&host) else {
            // Only validated names are written; a hand edit is counted nowhere rather than failing every view.
            tracing::error!("a machine row names host {host:?}, which is not a host name; left out of the host loads");
            continue;
        };
        let one = Resources {
            machines: 1,
            cpus: count(row.try_get(2)?),
            memory_mb: count(row.try_get(3)?),
            disk_gb: count(row.try_get(4)?),
            host_ports: count(row.try_get(5)?),
        };
        let load = out.entry(host).or_default();
        load.machines += 1;
        match crate::Desired::parse(&row.try_get::<String, _>(1)?) {
            crate::Desired::Running => {
                load.allocated = load.allocated.plus(one);
                load.running = load.running.plus(one);
            }
            crate::Desired::Stopped => load.allocated = load.allocated.plus(one),
            crate::Desired::Deleted => {}
        }
    }
    Ok(out)
}
