//! Exactly one reconciler at a time (issue 13, item 6).
//!
//! Several flvpc processes may serve one PostgreSQL (or MariaDB) database: every one serves the
//! panel, the API and the gateway, but only the holder of the database's leader lease
//! reconciles. The lease is the database's own lock held on a dedicated connection
//! (`flvpc_store::LeaderLease`), so it dies with the process or its connection: a killed leader
//! hands over at the next try of another process, within [`TRY_EVERY`]. With SQLite the lease is
//! a file lock next to the database.
//!
//! Nothing is lost in a handover: desired state and operations are in the database, and the new
//! leader's first resync finishes whatever the old one left. Operations recorded by the other
//! processes reach the leader through the database too ([`Reconciler::pick_up_operations`]).

use crate::reconcile::Reconciler;
use flvpc_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often a process that does not lead tries to take the lease, and how often the leader
/// checks that it still holds it and picks up operations recorded by other processes.
pub const TRY_EVERY: Duration = Duration::from_secs(1);

/// The name of the lease (one per database).
const LEASE: &str = "flvpc-reconciler";

/// Runs `reconciler` while this process holds the database's leader lease; waits for it
/// otherwise. Never returns (abort the task to stop).
pub async fn reconcile_while_leading(store: Arc<Store>, reconciler: Reconciler) {
    reconciler.set_leading(false);
    let mut lease = store.leader_lease(LEASE);
    loop {
        match lease.try_acquire().await {
            Ok(true) => {}
            Ok(false) => {
                tokio::time::sleep(TRY_EVERY).await;
                continue;
            }
            Err(err) => {
                tracing::warn!("cannot ask the database for the reconciler lease (trying again): {err}");
                tokio::time::sleep(TRY_EVERY).await;
                continue;
            }
        }
        tracing::info!("this process now reconciles the machines (it holds the database's leader lease)");
        reconciler.set_leading(true);
        let running = crate::AbortOnDrop(reconciler.start());
        loop {
            tokio::time::sleep(TRY_EVERY).await;
            if !lease.still_held().await {
                break;
            }
            reconciler.pick_up_operations().await;
        }
        // Stop before anything else happens: another process may already be reconciling.
        reconciler.set_leading(false);
        drop(running);
        tracing::warn!("this process lost the leader lease (its database connection ended): it stops reconciling");
        lease = store.leader_lease(LEASE);
    }
}
