//! Namespace quotas, what namespaces have allocated, and admission: a change that adds
//! resources is checked against the quota and the host's caps in the transaction that makes it.

use crate::{Dialect, Store, StoreError, WriteTx};
use flvpc_model::quota::{self, HostCaps, Quota, Resources};
use flvpc_model::{NamespaceGrant, NamespaceName, SuperadminGrant};
use sqlx::Row;
use std::collections::BTreeMap;

/// What one namespace has: allocated (every machine it has, running or not) and running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamespaceUsage {
    /// Every machine that exists or is being created.
    pub allocated: Resources,
    /// Machines meant to run.
    pub running: Resources,
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| u64::try_from(v).unwrap_or(0))
}

impl Store {
    /// Sets a namespace's quota (None fields: unlimited).
    pub async fn set_quota(&self, _: &SuperadminGrant, ns: &NamespaceName, quota: &Quota) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = crate::sql::query_scalar(self.dialect, "SELECT id FROM namespaces WHERE name = $1")
            .bind(ns.as_str())
            .fetch_optional(&mut *tx.tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("namespace {:?}", ns.as_str())))?;
        crate::sql::query(self.dialect, "DELETE FROM namespace_quotas WHERE namespace_id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        crate::sql::query(
            self.dialect,
            "INSERT INTO namespace_quotas (namespace_id, machines, cpus, memory_mb, disk_gb, host_ports) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(to_i64(quota.machines))
        .bind(to_i64(quota.cpus))
        .bind(to_i64(quota.memory_mb))
        .bind(to_i64(quota.disk_gb))
        .bind(to_i64(quota.host_ports))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// A namespace's quota (unlimited when none was set), for its members.
    pub async fn quota(&self, grant: &NamespaceGrant) -> Result<Quota, StoreError> {
        let mut conn = self.pool.acquire().await?;
        quota_in(&mut conn, grant.namespace()).await
    }

    /// Any namespace's quota (the superadmin's capacity views).
    pub async fn namespace_quota(&self, _: &SuperadminGrant, ns: &NamespaceName) -> Result<Quota, StoreError> {
        let mut conn = self.pool.acquire().await?;
        quota_in(&mut conn, ns).await
    }

    /// What one namespace has allocated and running, for its members.
    pub async fn namespace_usage(&self, grant: &NamespaceGrant) -> Result<NamespaceUsage, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(usage_in(&mut conn).await?.remove(grant.namespace()).unwrap_or_default())
    }

    /// What every namespace has allocated and running, by name (namespaces without machines
    /// included): the superadmin's capacity views.
    pub async fn usage(&self, _: &SuperadminGrant) -> Result<BTreeMap<NamespaceName, NamespaceUsage>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        usage_in(&mut conn).await
    }

    /// Begins the transaction of a change that must be admitted: it serialises with every other
    /// admitted change (of any namespace), so that what admission reads stays true until the
    /// change commits and two concurrent changes cannot both pass a quota or the host cap.
    /// SQLite: the process's writer lock and `BEGIN IMMEDIATE` (the database's write lock at
    /// once, not at the first write). PostgreSQL: a transaction-scoped advisory lock. MySQL: the
    /// one row of `admission_lock`, `FOR UPDATE` (its named locks, `GET_LOCK`, belong to the
    /// connection and outlive a rolled back transaction). No other statement touches that row,
    /// so, taken first, it joins no deadlock; reads after it see what committed before it
    /// because the session is READ COMMITTED (`dialect.rs`).
    pub(crate) async fn begin_admission(&self) -> Result<WriteTx<'_>, StoreError> {
        match self.dialect {
            Dialect::Sqlite => {
                let guard = self.sqlite_writer.lock().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(WriteTx { tx, _guard: Some(guard), cache: &self.cache })
            }
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                // Selected FROM the function: its result type (void) is one sqlx's Any driver cannot read.
                crate::sql::query(self.dialect, "SELECT 1 FROM pg_advisory_xact_lock($1)")
                    .bind(ADMISSION_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(WriteTx { tx, _guard: None, cache: &self.cache })
            }
            Dialect::Mysql => {
                let mut tx = self.pool.begin().await?;
                crate::sql::query(self.dialect, "SELECT id FROM admission_lock WHERE id = 1 FOR UPDATE")
                    .execute(&mut *tx)
                    .await?;
                Ok(WriteTx { tx, _guard: None, cache: &self.cache })
            }
        }
    }
}

/// The PostgreSQL advisory lock key of admitted changes ("flvpcadm" in ASCII).
const ADMISSION_LOCK: i64 = 0x666c_7670_6361_646d;

/// A namespace's quota, read on `conn` (inside a transaction, or not).
pub(crate) async fn quota_in(conn: &mut sqlx::AnyConnection, ns: &NamespaceName) -> Result<Quota, StoreError> {
    let row = crate::sql::query(
        crate::Dialect::of(conn),
        "SELECT q.machines, q.cpus, q.memory_mb, q.disk_gb, q.host_ports FROM namespace_quotas q \
         JOIN namespaces n ON n.id = q.namespace_id WHERE n.name = $1",
    )
    .bind(ns.as_str())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(Quota::default()) };
    Ok(Quota {
        machines: to_u64(row.try_get(0)?),
        cpus: to_u64(row.try_get(1)?),
        memory_mb: to_u64(row.try_get(2)?),
        disk_gb: to_u64(row.try_get(3)?),
        host_ports: to_u64(row.try_get(4)?),
    })
}

/// What every namespace has allocated and running, read on `conn`.
pub(crate) async fn usage_in(
    conn: &mut sqlx::AnyConnection,
) -> Result<BTreeMap<NamespaceName, NamespaceUsage>, StoreError> {
    let mut out: BTreeMap<NamespaceName, NamespaceUsage> = BTreeMap::new();
    for name in crate::sql::query_scalar::<String>(crate::Dialect::of(conn), "SELECT name FROM namespaces")
        .fetch_all(&mut *conn)
        .await?
    {
        out.insert(NamespaceName::parse(&name)?, NamespaceUsage::default());
    }
    let rows = crate::sql::query(
        crate::Dialect::of(conn),
        "SELECT n.name, m.desired, m.cpus, m.memory_mb, m.disk_gb, \
         (SELECT COUNT(*) FROM host_ports h WHERE h.machine_id = m.id) \
         FROM machines m JOIN namespaces n ON n.id = m.namespace_id WHERE m.desired <> 'deleted'",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let ns = NamespaceName::parse(&row.try_get::<String, _>(0)?)?;
        let one = Resources {
            machines: 1,
            cpus: to_u64(row.try_get(2)?).unwrap_or(0),
            memory_mb: to_u64(row.try_get(3)?).unwrap_or(0),
            disk_gb: to_u64(row.try_get(4)?).unwrap_or(0),
            host_ports: to_u64(row.try_get(5)?).unwrap_or(0),
        };
        let entry = out.entry(ns).or_default();
        entry.allocated = entry.allocated.plus(one);
        if crate::Desired::parse(&row.try_get::<String, _>(1)?) == crate::Desired::Running {
            entry.running = entry.running.plus(one);
        }
    }
    Ok(out)
}

/// Admits, inside an admission transaction, `ns` going to `allocated` (checked against its quota)
/// and to `running` (checked against the host's caps, all namespaces together). Only growth is
/// checked, so a namespace over a lowered quota may still shrink.
pub(crate) async fn admit_in(
    conn: &mut sqlx::AnyConnection,
    ns: &NamespaceName,
    caps: &HostCaps,
    allocated: Option<Resources>,
    running: Option<Resources>,
) -> Result<(), StoreError> {
    let usage = usage_in(&mut *conn).await?;
    let mine = usage.get(ns).copied().unwrap_or_default();
    if let Some(allocated) = allocated {
        let quota = quota_in(&mut *conn, ns).await?;
        quota::admit(ns.as_str(), &quota, mine.allocated, mine.allocated.growth_to(allocated))?;
    }
    if let Some(running) = running {
        let all_running = usage.values().fold(Resources::default(), |sum, u| sum.plus(u.running));
        caps.admit(all_running, mine.running.growth_to(running))?;
    }
    Ok(())
}
