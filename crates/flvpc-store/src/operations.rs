//! Operations: a long-running change (a create, a stop, a restart, …) recorded with the desired
//! state it asks for, and its progress as the reconciler computes it from what it observes.

use crate::{now_ms, Store, StoreError};
use flvpc_model::{Login, MachineName, NamespaceGrant, NamespaceName, OperationState, Principal, SystemGrant};
use sqlx::Row;

/// A long-running change, tracked until its machines reach the goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Random id.
    pub id: String,
    /// e.g. `cluster.create`, `machine.restart`.
    pub kind: String,
    /// The namespace.
    pub namespace: NamespaceName,
    /// The machine, for single-machine operations.
    pub machine: Option<MachineName>,
    /// `apply`, `running`, `stopped`, `deleted` or `restart`.
    pub goal: String,
    /// Machines it waits for.
    pub targets: Vec<MachineName>,
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

fn new_operation_id() -> String {
    format!("op-{}", hex::encode(rand::random::<[u8; 8]>()))
}

fn operation_from(row: &sqlx::any::AnyRow) -> Result<Operation, StoreError> {
    let targets: String = row.try_get(5)?;
    let machine: Option<String> = row.try_get(3)?;
    Ok(Operation {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        namespace: NamespaceName::parse(&row.try_get::<String, _>(2)?)?,
        // Written only from validated names; a name that does not parse (a hand edit) is dropped
        // rather than failing every listing of operations.
        machine: machine.and_then(|m| MachineName::parse(&m).ok()),
        goal: row.try_get(4)?,
        targets: targets.split(',').filter_map(|s| MachineName::parse(s).ok()).collect(),
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
        let row = crate::sql::query(self.dialect, select_operations!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(operation_from).transpose()
    }

    /// The latest operations of a namespace, newest first.
    pub async fn namespace_operations(&self, grant: &NamespaceGrant, limit: i64) -> Result<Vec<Operation>, StoreError> {
        let rows = crate::sql::query(
            self.dialect,
            select_operations!("WHERE namespace = $1 ORDER BY created_at DESC LIMIT $2"),
        )
        .bind(grant.namespace().as_str())
        .bind(limit.clamp(1, 100))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operation_from).collect()
    }

    /// Operations not finished yet (after a restart, the reconciler picks them up again).
    pub async fn open_operations(&self, _: &SystemGrant) -> Result<Vec<Operation>, StoreError> {
        let rows = crate::sql::query(
            self.dialect,
            select_operations!("WHERE state IN ('pending', 'running') ORDER BY created_at"),
        )
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
        crate::sql::query(
            self.dialect,
            "UPDATE operations SET state = $1, done = $2, error = $3, finished_at = $4 WHERE id = $5",
        )
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

/// Records a new operation in the transaction that records the change it tracks.
pub(crate) async fn insert_operation(
    tx: &mut sqlx::AnyConnection,
    kind: &str,
    ns: &NamespaceName,
    machine: Option<&MachineName>,
    goal: &str,
    targets: Vec<MachineName>,
    by: &Login,
) -> Result<Operation, StoreError> {
    let op = Operation {
        id: new_operation_id(),
        kind: kind.to_owned(),
        namespace: ns.clone(),
        machine: machine.cloned(),
        goal: goal.to_owned(),
        total: i64::try_from(targets.len()).unwrap_or(i64::MAX),
        targets,
        state: OperationState::Pending,
        done: 0,
        error: None,
        created_by: by.to_string(),
        created_at: now_ms(),
        finished_at: None,
    };
    let targets: Vec<&str> = op.targets.iter().map(MachineName::as_str).collect();
    crate::sql::query(
        crate::Dialect::of(tx),
        "INSERT INTO operations (id, kind, namespace, machine, goal, targets, state, done, total, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&op.id)
    .bind(&op.kind)
    .bind(op.namespace.as_str())
    .bind(op.machine.as_ref().map(MachineName::as_str))
    .bind(&op.goal)
    .bind(targets.join(","))
    .bind(op.state.as_str())
    .bind(op.done)
    .bind(op.total)
    .bind(&op.created_by)
    .bind(op.created_at)
    .execute(tx)
    .await?;
    Ok(op)
}
