//! Namespace quotas and what namespaces have allocated.

use crate::{Store, StoreError};
use flvpc_model::quota::{Quota, Resources};
use flvpc_model::{NamespaceGrant, NamespaceName, SuperadminGrant, SystemGrant};
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
        let id: i64 = sqlx::query_scalar("SELECT id FROM namespaces WHERE name = $1")
            .bind(ns.as_str())
            .fetch_optional(&mut *tx.tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("namespace {:?}", ns.as_str())))?;
        sqlx::query("DELETE FROM namespace_quotas WHERE namespace_id = $1").bind(id).execute(&mut *tx.tx).await?;
        sqlx::query(
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

    /// A namespace's quota (unlimited when none was set).
    pub async fn quota(&self, grant: &NamespaceGrant) -> Result<Quota, StoreError> {
        self.quota_of(grant.namespace()).await
    }

    /// A namespace's quota, for admission checks.
    pub async fn quota_system(&self, _: &SystemGrant, ns: &NamespaceName) -> Result<Quota, StoreError> {
        self.quota_of(ns).await
    }

    async fn quota_of(&self, ns: &NamespaceName) -> Result<Quota, StoreError> {
        let row = sqlx::query(
            "SELECT q.machines, q.cpus, q.memory_mb, q.disk_gb, q.host_ports FROM namespace_quotas q \
             JOIN namespaces n ON n.id = q.namespace_id WHERE n.name = $1",
        )
        .bind(ns.as_str())
        .fetch_optional(&self.pool)
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

    /// What every namespace has allocated and running, by name (namespaces without machines included).
    pub async fn usage(&self, _: &SystemGrant) -> Result<BTreeMap<NamespaceName, NamespaceUsage>, StoreError> {
        let mut out: BTreeMap<NamespaceName, NamespaceUsage> = BTreeMap::new();
        for name in sqlx::query_scalar::<_, String>("SELECT name FROM namespaces").fetch_all(&self.pool).await? {
            out.insert(NamespaceName::parse(&name)?, NamespaceUsage::default());
        }
        let rows = sqlx::query(
            "SELECT n.name, m.desired, m.cpus, m.memory_mb, m.disk_gb, \
             (SELECT COUNT(*) FROM host_ports h WHERE h.machine_id = m.id) \
             FROM machines m JOIN namespaces n ON n.id = m.namespace_id WHERE m.desired <> 'deleted'",
        )
        .fetch_all(&self.pool)
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
            if row.try_get::<String, _>(1)? == "running" {
                entry.running = entry.running.plus(one);
            }
        }
        Ok(out)
    }
}
