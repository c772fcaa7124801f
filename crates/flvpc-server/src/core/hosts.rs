//! The hosts as the superadmin manages them (issue 13): add, drain or activate, remove, and move a
//! stopped machine between hosts; and the hosts list every door shows.

use super::{namespace_or_not_found, Actor, CoreError, CoreResult, Outcome};
use crate::hosts::{HostView, Hosts};
use crate::state::AppState;
use flvpc_host::EngineTls;
use flvpc_model::{EngineEndpoint, HostName, Principal};
use flvpc_store::{HostLoad, HostState, HostTls, NewHost};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// A host with what it carries, for the superadmin.
#[derive(Debug, Clone)]
pub struct HostReport {
    /// The host and what is known of it.
    pub view: HostView,
    /// Its machines and what they are allocated.
    pub load: HostLoad,
}

/// Every host with its load (superadmin only).
pub async fn list(state: &AppState, caller: &Principal) -> CoreResult<Vec<HostReport>> {
    let grant = caller.superadmin()?;
    let loads: BTreeMap<HostName, HostLoad> = state.store.host_machine_counts(&grant).await?;
    Ok(state
        .hosts
        .list()
        .into_iter()
        .map(|view| {
            let load = loads.get(&view.name).copied().unwrap_or_default();
            HostReport { view, load }
        })
        .collect())
}

/// A host name from a request that names an existing host: one that cannot exist is not found.
fn host_name(name: &str) -> CoreResult<HostName> {
    HostName::parse(name)
        .map_err(|_| CoreError::NotFound(format!("host {:?}", name.chars().take(64).collect::<String>())))
}

pub(super) async fn add(
    state: &AppState,
    actor: &Actor,
    name: &str,
    engine: &str,
    address: &str,
    tls: Option<&[String; 3]>,
) -> CoreResult<Outcome> {
    let grant = actor.principal()?.superadmin()?;
    let name = HostName::parse(name)?;
    if name.as_str() == HostName::LOCAL {
        return Err(CoreError::Conflict("`local` is this server's own host, always there: pick another name".into()));
    }
    let endpoint = EngineEndpoint::parse(engine)?;
    let address: IpAddr = address.parse().map_err(|_| {
        CoreError::Invalid(format!(
            "address: {:?} is not an IP address (give the address people and the gateway reach this host's \
             published ports at)",
            address.chars().take(64).collect::<String>()
        ))
    })?;
    if address.is_unspecified() || address.is_multicast() {
        return Err(CoreError::Invalid(format!("address: {address} is not the address of one host")));
    }
    let tls = tls.map(|[ca, cert, key]| EngineTls {
        ca: PathBuf::from(ca),
        cert: PathBuf::from(cert),
        key: PathBuf::from(key),
    });
    endpoint.check_transport(tls.is_some())?;
    // Only a host whose engine answers is recorded: a typo is said now, not as machines that
    // never start.
    let info = Hosts::check_new(&endpoint, tls.as_ref())
        .await
        .map_err(|why| CoreError::EngineUnavailable(format!("host {name} was not added: {why}")))?;
    tracing::info!("adding host {name}: {endpoint}, Docker {}, {} CPUs", info.engine_version, info.cpus);
    let new = NewHost {
        name,
        engine: endpoint.to_string(),
        address,
        tls: tls.map(|t| HostTls { ca: t.ca, cert: t.cert, key: t.key }),
    };
    state.store.add_host(&grant, &new, actor.principal()?.login()).await?;
    state.hosts.reload().await;
    state.reconciler.resync_soon();
    Ok(Outcome::Done)
}

pub(super) async fn set_state(state: &AppState, actor: &Actor, name: &str, wanted: &str) -> CoreResult<Outcome> {
    let grant = actor.principal()?.superadmin()?;
    let wanted = HostState::parse(wanted).ok_or_else(|| {
        CoreError::Invalid(format!(
            "state: {:?} is neither active nor draining",
            wanted.chars().take(32).collect::<String>()
        ))
    })?;
    let name = host_name(name)?;
    if name.as_str() == HostName::LOCAL {
        return Err(CoreError::Conflict(
            "`local` is this server's own host and always takes machines; pin groups elsewhere with spec.host".into(),
        ));
    }
    state.store.set_host_state(&grant, &name, wanted).await?;
    state.hosts.reload().await;
    Ok(Outcome::Done)
}

pub(super) async fn remove(state: &AppState, actor: &Actor, name: &str) -> CoreResult<Outcome> {
    let grant = actor.principal()?.superadmin()?;
    let name = host_name(name)?;
    if name.as_str() == HostName::LOCAL {
        return Err(CoreError::Conflict("`local` is this server's own host and cannot be removed".into()));
    }
    state.store.remove_host(&grant, &name).await?;
    state.hosts.reload().await;
    Ok(Outcome::Done)
}

pub(super) async fn move_machine(
    state: &AppState,
    actor: &Actor,
    ns: &str,
    name: &str,
    host: &str,
) -> CoreResult<Outcome> {
    let principal = actor.principal()?;
    let grant = principal.superadmin()?;
    let ns = namespace_or_not_found(ns)?;
    let name = flvpc_model::MachineName::parse(name).map_err(|_| CoreError::NotFound(format!("machine {name:?}")))?;
    let host = host_name(host)?;
    let key = flvpc_model::MachineKey::new(ns, name);
    let is_free = super::machines::host_port_check(state);
    let op =
        state.store.move_machine(&grant, &key, &host, state.config.port_range, &is_free, principal.login()).await?;
    state.reconciler.enqueue_operation(&op);
    // The old host's container is found and removed by the resync's listing.
    state.reconciler.resync_soon();
    Ok(Outcome::Operation(op))
}
