//! Host ports of machines: a table whose primary key (host, port, protocol) makes handing out
//! one port twice on one host impossible, and the reservation of a machine's ports when its spec
//! is applied. Every check and allocation looks only at the ports of the machine's own host: the
//! same number may be published on two hosts.

use crate::machines::MachinePlan;
use crate::StoreError;
use flvpc_model::spec::{PortMapping, Protocol};
use flvpc_model::{HostName, NamespaceName, SuperadminGrant};
use sqlx::Row;
use std::collections::HashSet;
use std::net::IpAddr;

/// A host port requested for a machine: the spec's own port mapping (a `host_port` of `None` is
/// allocated from the range; an `address` of `None` is the server's `--publish-address`).
pub type PortRequest = PortMapping;

/// A published host port of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRecord {
    /// Port inside the machine.
    pub container_port: u16,
    /// Port on the host.
    pub host_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address it is published on, when the spec named one; `None`: the server's
    /// `--publish-address`.
    pub address: Option<IpAddr>,
}

/// An inclusive range of host ports to allocate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

/// Whether a host port is free outside the database: `(host, address, port, protocol)` (only
/// the caller knows how to look at a host's own listeners).
pub type IsFree = dyn Fn(&HostName, Option<IpAddr>, u16, Protocol) -> bool + Sync;

/// The protocol a stored word names. Only `tcp` and `udp` are ever written; anything else would be
/// a hand edit, read as TCP (the default of Docker and footloose).
pub(crate) fn protocol(word: &str) -> Protocol {
    if word == Protocol::Udp.as_str() {
        Protocol::Udp
    } else {
        Protocol::Tcp
    }
}

/// The ports every machine of `host` holds, to check and allocate against.
pub(crate) async fn taken_ports(
    tx: &mut sqlx::AnyConnection,
    host: &HostName,
) -> Result<HashSet<(u16, Protocol)>, StoreError> {
    crate::sql::query(crate::Dialect::of(tx), "SELECT host_port, protocol FROM host_ports WHERE host = $1")
        .bind(host.as_str())
        .fetch_all(tx)
        .await?
        .iter()
        .map(|r| Ok((u16::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0), protocol(&r.try_get::<String, _>(1)?))))
        .collect()
}

/// What a reservation needs besides the machine: the namespace, the ports held on each host
/// (read once per host, updated as ports are given out), the range, the host's own check, and
/// who may be named in a refusal.
pub(crate) struct Reservation<'a> {
    pub ns: &'a NamespaceName,
    pub taken: std::collections::HashMap<HostName, HashSet<(u16, Protocol)>>,
    pub range: PortRange,
    pub is_free: &'a IsFree,
    pub holders: Option<&'a SuperadminGrant>,
}

/// A port a machine holds, as stored.
pub(crate) struct HeldPort {
    pub host_port: u16,
    pub protocol: Protocol,
    pub container_port: u16,
    /// The host address it is published on, as written; `None`: the server's `--publish-address`.
    pub address: Option<String>,
}

/// The ports machine `machine_id` holds now, lowest first (read by a re-apply and by a move).
pub(crate) async fn held_ports(tx: &mut sqlx::AnyConnection, machine_id: i64) -> Result<Vec<HeldPort>, StoreError> {
    crate::sql::query(
        crate::Dialect::of(tx),
        "SELECT host_port, protocol, container_port, address FROM host_ports WHERE machine_id = $1 ORDER BY host_port",
    )
    .bind(machine_id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| {
        Ok(HeldPort {
            host_port: u16::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
            protocol: protocol(&r.try_get::<String, _>(1)?),
            container_port: u16::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
            address: r.try_get::<Option<String>, _>(3)?,
        })
    })
    .collect()
}

/// Gives machine `machine_id` the ports `plan` asks for, in the apply's transaction: a port it
/// already holds is kept (so a re-apply moves nothing), an explicit port is checked against every
/// other holder and the host, the rest are allocated from the range.
pub(crate) async fn reserve_ports(
    tx: &mut sqlx::AnyConnection,
    machine_id: i64,
    host: &HostName,
    plan: &MachinePlan,
    r: &mut Reservation<'_>,
) -> Result<(), StoreError> {
    if !r.taken.contains_key(host) {
        let held = taken_ports(&mut *tx, host).await?;
        r.taken.insert(host.clone(), held);
    }
    // This machine's current ports: kept when asked again, so a re-apply moves nothing.
    let held: Vec<(u16, Protocol, u16)> = held_ports(&mut *tx, machine_id)
        .await?
        .into_iter()
        .map(|h| (h.host_port, h.protocol, h.container_port))
        .collect();
    crate::sql::query(crate::Dialect::of(tx), "DELETE FROM host_ports WHERE machine_id = $1")
        .bind(machine_id)
        .execute(&mut *tx)
        .await?;
    let mut taken = r.taken.remove(host).unwrap_or_default();
    for (port, proto, _) in &held {
        taken.remove(&(*port, *proto));
    }
    let reserved = reserve_each(tx, machine_id, host, plan, r, &held, &mut taken).await;
    r.taken.insert(host.clone(), taken);
    reserved
}

/// The body of [`reserve_ports`], with `taken` the ports held on `host` by other machines.
async fn reserve_each(
    tx: &mut sqlx::AnyConnection,
    machine_id: i64,
    host: &HostName,
    plan: &MachinePlan,
    r: &Reservation<'_>,
    held: &[(u16, Protocol, u16)],
    taken: &mut HashSet<(u16, Protocol)>,
) -> Result<(), StoreError> {
    for request in &plan.ports {
        let proto = request.protocol;
        let port = match request.host_port {
            Some(port) => {
                let ours = held.iter().any(|(p, pr, _)| *p == port && *pr == proto);
                if taken.contains(&(port, proto)) {
                    let holder = port_holder(&mut *tx, host, port, proto, r.ns, r.holders).await?;
                    return Err(StoreError::Conflict(format!(
                        "host port {port}/{proto} for {} is already taken ({holder}); pick another, or leave \
                         hostPort out to get a free one",
                        plan.name
                    )));
                }
                if !ours && !(r.is_free)(host, request.address, port, proto) {
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
                    .find(|(p, pr, c)| *c == request.container_port && *pr == proto && !taken.contains(&(*p, proto)))
                    .map(|(p, _, _)| *p);
                match previous {
                    Some(port) => port,
                    None => (r.range.first..=r.range.last)
                        .find(|p| !taken.contains(&(*p, proto)) && (r.is_free)(host, request.address, *p, proto))
                        .ok_or_else(|| {
                            StoreError::Conflict(format!(
                                "no free host port left in {}-{} for {}",
                                r.range.first, r.range.last, plan.name
                            ))
                        })?,
                }
            }
        };
        taken.insert((port, proto));
        crate::sql::query(
            crate::Dialect::of(tx),
            "INSERT INTO host_ports (host, host_port, protocol, machine_id, container_port, address) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(host.as_str())
        .bind(i64::from(port))
        .bind(proto.as_str())
        .bind(machine_id)
        .bind(i64::from(request.container_port))
        .bind(request.address.map(|a| a.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::unique(e, || format!("host port {port}/{proto} was taken meanwhile; try again")))?;
    }
    Ok(())
}

/// Who holds a host port, as the caller may be told: the machine when it is the caller's own
/// namespace or the caller is the superadmin; otherwise only that another namespace holds it,
/// so that a refusal never names another tenant's resources.
async fn port_holder(
    tx: &mut sqlx::AnyConnection,
    host: &HostName,
    port: u16,
    proto: Protocol,
    ns: &NamespaceName,
    holders: Option<&SuperadminGrant>,
) -> Result<String, StoreError> {
    let row = crate::sql::query(
        crate::Dialect::of(tx),
        "SELECT n.name, m.name FROM host_ports h JOIN machines m ON m.id = h.machine_id \
         JOIN namespaces n ON n.id = m.namespace_id WHERE h.host = $1 AND h.host_port = $2 AND h.protocol = $3",
    )
    .bind(host.as_str())
    .bind(i64::from(port))
    .bind(proto.as_str())
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
