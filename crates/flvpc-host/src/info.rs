//! What an engine says about its host (`docker info`): version, OS, CPUs, memory, and its place
//! in a Docker Swarm.

use bollard::models::LocalNodeState;

use crate::docker::DockerEngine;
use crate::engine::EngineError;

/// A host as its Docker engine describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The engine's version (`20.10.24+dfsg1`).
    pub engine_version: String,
    /// The operating system (`Debian GNU/Linux 12 (bookworm)`).
    pub os: String,
    /// CPUs the engine sees.
    pub cpus: u32,
    /// Memory the engine sees, in bytes.
    pub memory_bytes: u64,
    /// The engine's node in a swarm; `None` when it is in none (or still joining).
    pub swarm: Option<SwarmNode>,
}

/// An engine's node in a Docker Swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmNode {
    /// The node's id in the swarm.
    pub node_id: String,
    /// The swarm's id. Docker tells it to managers only: `None` on a worker.
    pub cluster_id: Option<String>,
    /// Whether the node is a manager (can create swarm networks).
    pub manager: bool,
}

/// The state of an engine in a swarm as Docker says it, with Docker's error if any.
#[derive(Debug, Clone)]
pub(crate) struct SwarmState {
    pub(crate) state: LocalNodeState,
    pub(crate) error: Option<String>,
    pub(crate) info: HostInfo,
}

impl DockerEngine {
    /// The engine's host: `docker info` in a typed form.
    pub async fn host_info(&self) -> Result<HostInfo, EngineError> {
        Ok(self.swarm_state().await?.info)
    }

    /// The engine's swarm state (`inactive`, `pending`, `active`, `error`, `locked`) and host:
    /// what [`crate::swarm`] decides from, in one call.
    pub(crate) async fn swarm_state(&self) -> Result<SwarmState, EngineError> {
        let info = self.client().info().await.map_err(|e| self.error("read the engine's info", e))?;
        let raw = info.swarm.unwrap_or_default();
        let state = raw.local_node_state.unwrap_or(LocalNodeState::INACTIVE);
        let swarm = match (state, raw.node_id.filter(|id| !id.is_empty())) {
            (LocalNodeState::ACTIVE, Some(node_id)) => Some(SwarmNode {
                node_id,
                cluster_id: raw.cluster.and_then(|c| c.id).filter(|id| !id.is_empty()),
                manager: raw.control_available.unwrap_or(false),
            }),
            _ => None,
        };
        Ok(SwarmState {
            state,
            error: raw.error.filter(|e| !e.is_empty()),
            info: HostInfo {
                engine_version: info.server_version.unwrap_or_default(),
                os: info.operating_system.unwrap_or_default(),
                cpus: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
                memory_bytes: info.mem_total.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                swarm,
            },
        })
    }
}
