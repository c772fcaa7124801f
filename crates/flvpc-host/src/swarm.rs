//! Docker Swarm formation: the engines of flvpc's hosts in one swarm, so that a namespace's
//! network can be one attachable overlay across them ([`DockerEngine::with_overlay`]).
//!
//! flvpc uses the swarm for its overlay networks only (no services: their virtual IPs need IPVS,
//! which some kernels lack). [`form_swarm`] is idempotent: it initialises the manager when it is
//! in no swarm, adopts the swarm it is already a manager of (an operator's own), and joins each
//! worker that is not yet in it. An engine in *another* swarm is an error: leaving it would cut
//! off whatever runs there.

use std::net::{IpAddr, SocketAddr};

use bollard::models::{LocalNodeState, SwarmInitRequest, SwarmJoinRequest};
use bollard::query_parameters::LeaveSwarmOptionsBuilder;

use crate::docker::DockerEngine;
use crate::engine::EngineError;

/// The address pool of a swarm flvpc makes: its ingress network and any network made without a
/// subnet are cut from it, in /24s, so that they never take a range of the hosts' LANs (Docker's
/// default, 10.0.0.0/8, overlaps many). Namespace networks get their /24 from flvpc's own pool
/// ([`crate::subnets`]), not from this one.
pub const SWARM_ADDRESS_POOL: &str = "10.214.0.0/16";
/// The size of the networks cut from [`SWARM_ADDRESS_POOL`].
pub const SWARM_SUBNET_SIZE: u32 = 24;
/// The swarm's control port on each engine's address.
pub const SWARM_PORT: u16 = 2377;

/// What [`form_swarm`] did, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmFormed {
    /// The swarm's id.
    pub cluster_id: String,
    /// The manager's node id.
    pub manager_node: String,
    /// Whether the manager was initialised now (false: it already managed this swarm).
    pub initialised: bool,
    /// Workers that joined now, by their address.
    pub joined: Vec<IpAddr>,
    /// Workers that were already in the swarm, by their address.
    pub already_in: Vec<IpAddr>,
}

impl SwarmFormed {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.initialised || !self.joined.is_empty()
    }
}

/// Puts `manager` and `workers` (each with the address the others reach it at) in one swarm
/// whose manager is `manager`, advertised, listening and carrying overlay traffic on
/// `manager_addr`. Idempotent: a second call changes nothing and says so.
pub async fn form_swarm(
    manager: &DockerEngine,
    manager_addr: IpAddr,
    workers: &[(&DockerEngine, IpAddr)],
) -> Result<SwarmFormed, EngineError> {
    let state = manager.swarm_state().await?;
    let initialised = match state.state {
        LocalNodeState::ACTIVE => match &state.info.swarm {
            Some(node) if node.manager => false,
            _ => {
                return Err(failed(
                    manager,
                    "it is a worker of a swarm, not a manager: give flvpc a manager of that swarm, or make \
                     this engine leave it (`docker swarm leave`)",
                ))
            }
        },
        LocalNodeState::INACTIVE | LocalNodeState::EMPTY => {
            init(manager, manager_addr).await?;
            true
        }
        other => return Err(not_settled(manager, other, state.error.as_deref())),
    };
    let swarm = manager.client().inspect_swarm().await.map_err(|e| manager.error("inspect the swarm", e))?;
    let cluster_id = swarm.id.unwrap_or_default();
    let token = swarm
        .join_tokens
        .and_then(|t| t.worker)
        .ok_or_else(|| failed(manager, "the swarm gave no worker join token"))?;
    let manager_node = match manager.host_info().await?.swarm {
        Some(node) => node.node_id,
        None => return Err(failed(manager, "it is not in the swarm it was just put in")),
    };
    let members = node_ids(manager).await?;
    let mut formed = SwarmFormed { cluster_id, manager_node, initialised, joined: Vec::new(), already_in: Vec::new() };
    for (worker, addr) in workers {
        let state = worker.swarm_state().await?;
        match state.state {
            LocalNodeState::INACTIVE | LocalNodeState::EMPTY => {
                join(worker, *addr, manager_addr, &token).await?;
                formed.joined.push(*addr);
            }
            LocalNodeState::ACTIVE => match state.info.swarm {
                Some(node) if members.contains(&node.node_id) => formed.already_in.push(*addr),
                _ => {
                    return Err(failed(
                        worker,
                        &format!(
                            "it is in another swarm than the manager's ({}): make it leave that swarm \
                             (`docker swarm leave`) once nothing there needs it",
                            formed.cluster_id
                        ),
                    ))
                }
            },
            other => return Err(not_settled(worker, other, state.error.as_deref())),
        }
    }
    Ok(formed)
}

/// Makes `engine` leave its swarm (forced: a manager, the last one included, leaves too), for
/// tests and cleanup. In no swarm is fine.
pub async fn leave_swarm(engine: &DockerEngine) -> Result<(), EngineError> {
    let options = LeaveSwarmOptionsBuilder::new().force(true).build();
    match engine.client().leave_swarm(Some(options)).await {
        Ok(()) => Ok(()),
        // 503: "This node is not part of a swarm".
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 503, .. }) => Ok(()),
        Err(e) => Err(engine.error("leave the swarm", e)),
    }
}

async fn init(manager: &DockerEngine, addr: IpAddr) -> Result<(), EngineError> {
    let request = SwarmInitRequest {
        listen_addr: Some(SocketAddr::new(addr, SWARM_PORT).to_string()),
        advertise_addr: Some(addr.to_string()),
        data_path_addr: Some(addr.to_string()),
        default_addr_pool: Some(vec![SWARM_ADDRESS_POOL.to_owned()]),
        subnet_size: Some(SWARM_SUBNET_SIZE),
        ..Default::default()
    };
    manager
        .client()
        .init_swarm(request)
        .await
        .map_err(|e| manager.error(format!("initialise a swarm on {addr}"), e))?;
    Ok(())
}

async fn join(worker: &DockerEngine, addr: IpAddr, manager_addr: IpAddr, token: &str) -> Result<(), EngineError> {
    let request = SwarmJoinRequest {
        listen_addr: Some(SocketAddr::new(addr, SWARM_PORT).to_string()),
        advertise_addr: Some(addr.to_string()),
        data_path_addr: Some(addr.to_string()),
        remote_addrs: Some(vec![SocketAddr::new(manager_addr, SWARM_PORT).to_string()]),
        join_token: Some(token.to_owned()),
    };
    worker
        .client()
        .join_swarm(request)
        .await
        .map_err(|e| worker.error(format!("join the swarm of {manager_addr} from {addr}"), e))
}

/// The ids of the swarm's nodes, as its manager lists them.
async fn node_ids(manager: &DockerEngine) -> Result<Vec<String>, EngineError> {
    let nodes = manager
        .client()
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
        .map_err(|e| manager.error("list the swarm's nodes", e))?;
    Ok(nodes.into_iter().filter_map(|n| n.id).collect())
}

fn failed(engine: &DockerEngine, detail: &str) -> EngineError {
    EngineError::Docker {
        action: format!("use the engine at {} in flvpc's swarm", engine.socket()),
        detail: detail.into(),
    }
}

fn not_settled(engine: &DockerEngine, state: LocalNodeState, error: Option<&str>) -> EngineError {
    let error = error.map(|e| format!(": {e}")).unwrap_or_default();
    failed(
        engine,
        &format!(
            "its swarm state is {state}{error}; wait until it settles, or make it leave (`docker swarm leave \
             --force`) and form the swarm again"
        ),
    )
}
