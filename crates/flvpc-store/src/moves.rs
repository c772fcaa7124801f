//! Moving a stopped machine to another host: its record names the new host and its host ports
//! are held again there, in one admitted transaction.

use crate::hosts::HostState;
use crate::operations::{insert_operation, Operation};
use crate::ports::{held_ports, taken_ports, HeldPort, IsFree, PortRange};
use crate::{now_ms, Store, StoreError};
use flvpc_model::{HostName, Login, MachineKey, SuperadminGrant};
use sqlx::Row;
use std::net::IpAddr;

impl Store {
    /// Moves a stopped machine to host `to`: its record names the new host, it reads as not
    /// created there (the reconciler makes it, stopped, and removes it from the old host), and
    /// its host ports are held again on the new host: the same numbers where they are free
    /// there, new ones from `range` otherwise. Only a machine meant to be stopped moves
    /// (Conflict otherwise: stop it first); `to` is `local` or an active host. Returns the
    /// operation that tracks it (kind `machine.move`, goal `stopped`).
    pub async fn move_machine(
        &self,
        _: &SuperadminGrant,
        key: &MachineKey,
        to: &HostName,
        range: PortRange,
        is_free: &IsFree,
        by: &Login,
    ) -> Result<Operation, StoreError> {
        let mut tx = self.begin_admission().await?;
        if to.as_str() != HostName::LOCAL {
            let state: Option<String> =
                crate::sql::query_scalar(self.dialect, "SELECT state FROM hosts WHERE name = $1")
                    .bind(to.as_str())
                    .fetch_optional(&mut *tx.tx)
                    .await?;
            match state.as_deref().and_then(HostState::parse) {
                Some(HostState::Active) => {}
                Some(HostState::Draining) => {
                    return Err(StoreError::Conflict(format!(
                        "host {to} is draining and takes no machine: make it active first, or pick another host"
                    )))
                }
                None => return Err(StoreError::NotFound(format!("host {:?}", to.as_str()))),
            }
        }
        let row = crate::sql::query(
            self.dialect,
            "SELECT m.id, m.desired, m.host FROM machines m JOIN namespaces n ON n.id = m.namespace_id \
             WHERE n.name = $1 AND m.name = $2",
        )
        .bind(key.namespace.as_str())
        .bind(key.name.as_str())
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("machine {key}")))?;
        let (id, desired, from): (i64, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if crate::Desired::parse(&desired) != crate::Desired::Stopped {
            return Err(StoreError::Conflict(format!(
                "machine {key} is {desired}, and only a stopped machine moves: stop it first"
            )));
        }
        if from == to.as_str() {
            return Err(StoreError::Conflict(format!("machine {key} is on host {to} already")));
        }
        move_ports(&mut tx.tx, id, to, range, is_free).await?;
        crate::sql::query(
            self.dialect,
            "UPDATE machines SET host = $1, observed = 'not_created', ip = NULL, error = NULL, updated_at = $2 \
             WHERE id = $3",
        )
        .bind(to.as_str())
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        let op = insert_operation(
            &mut tx.tx,
            "machine.move",
            &key.namespace,
            Some(&key.name),
            crate::Desired::Stopped.as_str(),
            vec![key.name.clone()],
            by,
        )
        .await?;
        tx.commit().await?;
        Ok(op)
    }
}

/// Holds machine `id`'s ports again on host `to`: each keeps its number when nothing on `to`
/// holds it and `is_free` agrees, or gets the first free one of `range`.
async fn move_ports(
    tx: &mut sqlx::AnyConnection,
    id: i64,
    to: &HostName,
    range: PortRange,
    is_free: &IsFree,
) -> Result<(), StoreError> {
    let dialect = crate::Dialect::of(tx);
    let held = held_ports(&mut *tx, id).await?;
    crate::sql::query(dialect, "DELETE FROM host_ports WHERE machine_id = $1").bind(id).execute(&mut *tx).await?;
    let mut taken = taken_ports(&mut *tx, to).await?;
    for HeldPort { host_port: port, protocol: proto, container_port, address } in held {
        let ip: Option<IpAddr> = address.as_deref().and_then(|a| a.parse().ok());
        let port = if !taken.contains(&(port, proto)) && is_free(to, ip, port, proto) {
            port
        } else {
            (range.first..=range.last)
                .find(|p| !taken.contains(&(*p, proto)) && is_free(to, ip, *p, proto))
                .ok_or_else(|| {
                    StoreError::Conflict(format!(
                        "no free host port left in {}-{} on host {to} for port {container_port}/{proto}: free one \
                         there, or move the machine to another host",
                        range.first, range.last
                    ))
                })?
        };
        taken.insert((port, proto));
        crate::sql::query(
            dialect,
            "INSERT INTO host_ports (host, host_port, protocol, machine_id, container_port, address) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(to.as_str())
        .bind(i64::from(port))
        .bind(proto.as_str())
        .bind(id)
        .bind(i64::from(container_port))
        .bind(address)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::unique(e, || format!("host port {port}/{proto} on host {to} was taken meanwhile; try again"))
        })?;
    }
    Ok(())
}
