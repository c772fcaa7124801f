//! Namespaces and memberships.

use crate::{now_ms, Store, StoreError};
use flvpc_model::{Login, NamespaceGrant, NamespaceName, Principal, Role, SuperadminGrant};
use sqlx::Row;

/// A namespace: a team's own cluster, network and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Its name.
    pub name: NamespaceName,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
    /// How many members it has.
    pub members: i64,
}

/// A member of a namespace and their role there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's login.
    pub login: Login,
    /// Their role in this namespace.
    pub role: Role,
}

/// A namespace query: its columns, then `$tail`. A macro so the SQL stays a literal.
macro_rules! select_namespaces {
    ($tail:literal) => {
        concat!(
            "SELECT n.name, n.created_at, (SELECT COUNT(*) FROM memberships m WHERE m.namespace_id = n.id) FROM namespaces n ",
            $tail
        )
    };
}

fn namespace_from(row: sqlx::any::AnyRow) -> Result<Namespace, StoreError> {
    Ok(Namespace {
        name: NamespaceName::parse(&row.try_get::<String, _>(0)?)?,
        created_at: row.try_get(1)?,
        members: row.try_get(2)?,
    })
}

impl Store {
    /// Creates an empty namespace.
    pub async fn create_namespace(&self, _: &SuperadminGrant, name: &NamespaceName) -> Result<Namespace, StoreError> {
        let created_at = now_ms();
        let mut tx = self.begin_write().await?;
        crate::sql::query(self.dialect, "INSERT INTO namespaces (name, created_at) VALUES ($1, $2)")
            .bind(name.as_str())
            .bind(created_at)
            .execute(&mut *tx.tx)
            .await
            .map_err(|e| StoreError::unique(e, || format!("a namespace named {:?} already exists", name.as_str())))?;
        tx.commit().await?;
        Ok(Namespace { name: name.clone(), created_at, members: 0 })
    }

    /// Every namespace, by name.
    pub async fn list_namespaces(&self, _: &SuperadminGrant) -> Result<Vec<Namespace>, StoreError> {
        let rows = crate::sql::query(self.dialect, select_namespaces!("ORDER BY n.name")).fetch_all(&self.pool).await?;
        rows.into_iter().map(namespace_from).collect()
    }

    /// The namespaces the caller is a member of, by name, with their role in each. One query,
    /// where reading the principal's memberships one by one cost a query each on every
    /// `/api/v1/me` and namespace list (issue 9). Only namespaces the principal, read for this
    /// request, names are returned, with the role it holds there.
    pub async fn member_namespaces(&self, caller: &Principal) -> Result<Vec<(Namespace, Role)>, StoreError> {
        let rows = crate::sql::query(
            self.dialect,
            select_namespaces!("JOIN memberships mine ON mine.namespace_id = n.id WHERE mine.user_id = $1"),
        )
        .bind(caller.user_id())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let namespace = namespace_from(row)?;
            if let Some(role) = caller.memberships().get(&namespace.name) {
                out.push((namespace, *role));
            }
        }
        // By name, as the principal's memberships are, whatever the database's collation.
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }

    /// One namespace the caller may see.
    pub async fn get_namespace(&self, grant: &NamespaceGrant) -> Result<Namespace, StoreError> {
        let row = crate::sql::query(self.dialect, select_namespaces!("WHERE n.name = $1"))
            .bind(grant.namespace().as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("namespace {:?}", grant.namespace().as_str())))?;
        namespace_from(row)
    }

    /// Deletes a namespace and its memberships. (Its machines, network and ports
    /// are removed by the reconciler before this is called.)
    pub async fn delete_namespace(&self, _: &SuperadminGrant, name: &NamespaceName) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = crate::sql::query_scalar(self.dialect, "SELECT id FROM namespaces WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *tx.tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("namespace {:?}", name.as_str())))?;
        crate::sql::query(self.dialect, "DELETE FROM memberships WHERE namespace_id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        crate::sql::query(self.dialect, "DELETE FROM namespaces WHERE id = $1").bind(id).execute(&mut *tx.tx).await?;
        tx.commit().await
    }

    /// The members of a namespace, by login.
    pub async fn list_members(&self, grant: &NamespaceGrant) -> Result<Vec<Member>, StoreError> {
        self.get_namespace(grant).await?;
        let rows = crate::sql::query(
            self.dialect,
            "SELECT u.login, m.role FROM memberships m JOIN namespaces n ON n.id = m.namespace_id \
             JOIN users u ON u.id = m.user_id WHERE n.name = $1 ORDER BY u.login",
        )
        .bind(grant.namespace().as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Member {
                    login: Login::parse(&row.try_get::<String, _>(0)?)?,
                    role: Role::parse(&row.try_get::<String, _>(1)?)?,
                })
            })
            .collect()
    }

    /// Gives `login` the role `role` in `ns`, adding or changing the membership.
    /// Returns true when the membership is new.
    pub async fn set_member(
        &self,
        _: &SuperadminGrant,
        ns: &NamespaceName,
        login: &Login,
        role: Role,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let ns_id: i64 = crate::sql::query_scalar(self.dialect, "SELECT id FROM namespaces WHERE name = $1")
            .bind(ns.as_str())
            .fetch_optional(&mut *tx.tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("namespace {:?}", ns.as_str())))?;
        let user_id: i64 = crate::sql::query_scalar(self.dialect, "SELECT id FROM users WHERE login = $1")
            .bind(login.as_str())
            .fetch_optional(&mut *tx.tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {:?}", login.as_str())))?;
        let updated = crate::sql::query(
            self.dialect,
            "UPDATE memberships SET role = $1 WHERE namespace_id = $2 AND user_id = $3",
        )
        .bind(role.as_str())
        .bind(ns_id)
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?;
        let created = updated.rows_affected() == 0;
        if created {
            crate::sql::query(
                self.dialect,
                "INSERT INTO memberships (namespace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(ns_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(now_ms())
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Removes `login` from `ns`.
    pub async fn remove_member(
        &self,
        _: &SuperadminGrant,
        ns: &NamespaceName,
        login: &Login,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = crate::sql::query(
            self.dialect,
            "DELETE FROM memberships WHERE namespace_id = (SELECT id FROM namespaces WHERE name = $1) \
             AND user_id = (SELECT id FROM users WHERE login = $2)",
        )
        .bind(ns.as_str())
        .bind(login.as_str())
        .execute(&mut *tx.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("membership of {:?} in {:?}", login.as_str(), ns.as_str())));
        }
        tx.commit().await
    }
}
