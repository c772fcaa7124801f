//! The stored cluster spec text of a namespace. Saving a spec changes no machine: that is
//! `apply_cluster`'s work (`machines.rs`).

use crate::machines::namespace_id;
use crate::{now_ms, Store, StoreError};
use flvpc_model::{Login, NamespaceAdminGrant, NamespaceGrant};
use sqlx::Row;

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

impl Store {
    /// The namespace's stored cluster spec, if one was saved.
    pub async fn cluster_spec(&self, grant: &NamespaceGrant) -> Result<Option<StoredSpec>, StoreError> {
        let row = crate::sql::query(
            self.dialect,
            "SELECT c.spec, c.updated_at, c.updated_by FROM cluster_specs c JOIN namespaces n ON n.id = c.namespace_id WHERE n.name = $1",
        )
        .bind(grant.namespace().as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(StoredSpec { spec: r.try_get(0)?, updated_at: r.try_get(1)?, updated_by: r.try_get(2)? }))
            .transpose()
    }

    /// Saves the cluster spec text (already validated by the caller). Machines are untouched until `apply_cluster`.
    pub async fn save_cluster_spec(
        &self,
        grant: &NamespaceAdminGrant,
        spec: &str,
        by: &Login,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let ns_id = namespace_id(&mut tx.tx, grant.namespace()).await?;
        let now = now_ms();
        let updated = crate::sql::query(
            self.dialect,
            "UPDATE cluster_specs SET spec = $1, updated_at = $2, updated_by = $3 WHERE namespace_id = $4",
        )
        .bind(spec)
        .bind(now)
        .bind(by.as_str())
        .bind(ns_id)
        .execute(&mut *tx.tx)
        .await?;
        if updated.rows_affected() == 0 {
            crate::sql::query(
                self.dialect,
                "INSERT INTO cluster_specs (namespace_id, spec, updated_at, updated_by) VALUES ($1, $2, $3, $4)",
            )
            .bind(ns_id)
            .bind(spec)
            .bind(now)
            .bind(by.as_str())
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await
    }
}
