//! What a reconciler needs from a machine engine, as a trait, plus the types it speaks.
//!
//! The reconciler in another crate is written against [`Engine`] so that its unit tests can
//! run on [`crate::fake::FakeEngine`] while production uses [`crate::docker::DockerEngine`].
//! Machines are always addressed by `(namespace, name)`; the container name `<ns>-<name>` is
//! an implementation detail of the Docker backend (see [`container_name`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

/// Label carrying the namespace of a machine container and of a namespace network.
pub const LABEL_NAMESPACE: &str = "flvpc.namespace";
/// Label carrying the machine name (the host name) of a machine container.
pub const LABEL_MACHINE: &str = "flvpc.machine";
/// Label set on images built by flvpc (value: which recipe, e.g. `debian-12`).
pub const LABEL_IMAGE: &str = "flvpc.image";
/// The machine image built by `flvpc image build`.
pub const DEFAULT_IMAGE: &str = "flvpc/debian:12";

/// The Docker container name of a machine: `<ns>-<name>` (CONTRACT.md).
pub fn container_name(namespace: &str, name: &str) -> String {
    format!("{namespace}-{name}")
}

/// The Docker network of a namespace: `flvpc-<ns>` (CONTRACT.md).
pub fn network_name(namespace: &str) -> String {
    format!("flvpc-{namespace}")
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    /// TCP (the default, as in Docker and footloose).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The lowercase name Docker uses (`tcp`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One port of a machine published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// The port inside the machine (22 for sshd).
    pub container_port: u16,
    /// The port on the host; 0 lets Docker pick an ephemeral port.
    pub host_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address to bind (`--publish-address`); `None` binds every address.
    pub publish_address: Option<IpAddr>,
}

impl PortMapping {
    /// A TCP mapping of `container_port` to `host_port` on every host address.
    pub fn tcp(container_port: u16, host_port: u16) -> Self {
        Self { container_port, host_port, protocol: Protocol::Tcp, publish_address: None }
    }

    /// The same mapping, bound to `address` only.
    pub fn on(mut self, address: IpAddr) -> Self {
        self.publish_address = Some(address);
        self
    }
}

/// Everything needed to create one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    /// The namespace (`^[a-z][a-z0-9-]{0,30}$`); also selects the network `flvpc-<ns>`.
    pub namespace: String,
    /// The machine name, used as host name and network alias (1–63 of `a-z 0-9 -`).
    pub name: String,
    /// A local image with systemd as `/sbin/init` and sshd (e.g. [`DEFAULT_IMAGE`]).
    pub image: String,
    /// CPUs promised to the machine. Becomes CPU shares (1024 per CPU): a weight under
    /// contention, not a cap, which is the original's "competition mode" overcommit.
    pub cpus: u32,
    /// Optional hard cap in CPUs (fractions allowed), enforced with `NanoCpus`.
    pub cpu_cap: Option<f64>,
    /// Hard memory limit in MiB; swap is limited to the same value (no extra swap).
    pub memory_mb: u64,
    /// Ports published on the host.
    pub ports: Vec<PortMapping>,
    /// Extra labels; keys starting with `flvpc.namespace`/`flvpc.machine` are refused.
    pub labels: BTreeMap<String, String>,
}

impl MachineSpec {
    /// A spec with 1 CPU, 1024 MiB, no cap, no ports and no extra labels.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            image: image.into(),
            cpus: 1,
            cpu_cap: None,
            memory_mb: 1024,
            ports: Vec::new(),
            labels: BTreeMap::new(),
        }
    }

    /// The container name `<ns>-<name>`.
    pub fn container_name(&self) -> String {
        container_name(&self.namespace, &self.name)
    }

    /// Checks the names, resources and labels before anything reaches Docker. The domain
    /// crate validates what users type; this is the last line of defence because these
    /// strings become Docker object names and host names.
    pub fn validate(&self) -> Result<(), EngineError> {
        check_namespace(&self.namespace)?;
        check_machine_name(&self.name)?;
        if self.image.trim().is_empty() || self.image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EngineError::InvalidSpec(format!(
                "image {:?} is not a valid image reference (no spaces, not empty)",
                self.image
            )));
        }
        if self.cpus == 0 || self.cpus > 1024 {
            return Err(EngineError::InvalidSpec(format!("cpus must be between 1 and 1024, not {}", self.cpus)));
        }
        if let Some(cap) = self.cpu_cap {
            if !cap.is_finite() || cap <= 0.0 || cap > 1024.0 {
                return Err(EngineError::InvalidSpec(format!("cpu_cap must be between 0 and 1024 CPUs, not {cap}")));
            }
        }
        // Docker refuses limits under 6 MiB; systemd + sshd need far more, but the
        // policy of what is sensible belongs to the quota code, not here.
        if self.memory_mb < 6 || self.memory_mb > 16 * 1024 * 1024 {
            return Err(EngineError::InvalidSpec(format!(
                "memory_mb must be between 6 and 16777216 MiB, not {}",
                self.memory_mb
            )));
        }
        for (i, port) in self.ports.iter().enumerate() {
            if port.container_port == 0 {
                return Err(EngineError::InvalidSpec(format!("ports[{i}].container_port must not be 0")));
            }
            let same =
                self.ports[..i].iter().any(|p| p.container_port == port.container_port && p.protocol == port.protocol);
            if same {
                return Err(EngineError::InvalidSpec(format!(
                    "ports[{i}]: container port {}/{} is published twice",
                    port.container_port, port.protocol
                )));
            }
        }
        for key in self.labels.keys() {
            if key == LABEL_NAMESPACE || key == LABEL_MACHINE {
                return Err(EngineError::InvalidSpec(format!("label {key:?} is set by flvpc itself")));
            }
            if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control() || c == '=') {
                return Err(EngineError::InvalidSpec(format!("label key {key:?} is not valid")));
            }
        }
        Ok(())
    }
}

/// Checks a namespace against the contract's rule (`^[a-z][a-z0-9-]{0,30}$`).
pub fn check_namespace(namespace: &str) -> Result<(), EngineError> {
    flvpc_model::NamespaceName::parse(namespace)
        .map(|_| ())
        .map_err(|e| EngineError::InvalidSpec(format!("namespace {namespace:?}: {}", e.message)))
}

/// Checks a machine name: it becomes a host name (RFC 1123 label) and a DNS alias, so
/// 1–63 of `a-z 0-9 -`, starting with a letter or digit and not ending with `-`.
pub fn check_machine_name(name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidSpec(format!(
            "machine name {name:?} must be 1-63 of a-z 0-9 -, not starting or ending with -"
        )))
    }
}

/// The state of a machine container as Docker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineState {
    /// Created but never started.
    Created,
    /// Running (systemd may still be booting).
    Running,
    /// Being restarted by Docker's restart policy.
    Restarting,
    /// Paused (cgroup freezer).
    Paused,
    /// Stopped (exited), by request or because PID 1 died.
    Stopped,
    /// Being removed.
    Removing,
    /// Dead: Docker failed to stop or remove it; remove it again.
    Dead,
    /// Docker reported a state this version does not know.
    Unknown,
}

impl MachineState {
    /// A lowercase word for logs and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Created => "created",
            MachineState::Running => "running",
            MachineState::Restarting => "restarting",
            MachineState::Paused => "paused",
            MachineState::Stopped => "stopped",
            MachineState::Removing => "removing",
            MachineState::Dead => "dead",
            MachineState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MachineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port actually published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublishedPort {
    /// The port inside the machine.
    pub container_port: u16,
    /// The host port.
    pub host_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address it is bound to (`0.0.0.0` for all).
    pub host_ip: Option<String>,
}

/// A machine as found on the engine (read from labels and container state).
#[derive(Debug, Clone, PartialEq)]
pub struct MachineInfo {
    /// From the `flvpc.namespace` label.
    pub namespace: String,
    /// From the `flvpc.machine` label.
    pub name: String,
    /// The container name (without Docker's leading `/`).
    pub container: String,
    /// The container ID.
    pub id: String,
    /// The image reference the container was created from.
    pub image: String,
    /// Docker's state.
    pub state: MachineState,
    /// The IPv4 address on the namespace network, when running.
    pub ip: Option<String>,
    /// Ports published right now. Docker reports them only for running containers, so this
    /// is empty for stopped machines; [`MachineDetails::configured_ports`] has the spec.
    pub ports: Vec<PublishedPort>,
    /// All labels of the container, including the flvpc ones.
    pub labels: BTreeMap<String, String>,
}

/// A machine with the resources and ports it was created with.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineDetails {
    /// What `list_machines` also reports.
    pub info: MachineInfo,
    /// The host name inside the machine.
    pub hostname: String,
    /// CPUs, derived back from CPU shares.
    pub cpus: u32,
    /// The hard CPU cap, if any.
    pub cpu_cap: Option<f64>,
    /// The memory limit in MiB (0 = none).
    pub memory_mb: u64,
    /// The port mappings the container was created with (present even when stopped).
    pub configured_ports: Vec<PortMapping>,
    /// The exit code of PID 1 when stopped.
    pub exit_code: Option<i64>,
    /// The host PID of the machine's PID 1 while it runs (for its network counters).
    pub pid: Option<u32>,
    /// Docker's own error for the last start, e.g. a port already allocated.
    pub error: Option<String>,
}

/// What went wrong talking to the machine engine. Each message says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// dockerd is down or its socket is missing.
    #[error(
        "Docker engine is not reachable at {socket}: is dockerd running? (start it with \
         `dockerd >/var/log/dockerd.log 2>&1 &` and check `docker info`) [{detail}]"
    )]
    Unreachable {
        /// The socket path that was tried.
        socket: String,
        /// The underlying error.
        detail: String,
    },
    /// The image is not present locally (flvpc never pulls).
    #[error(
        "image {image:?} is not present on this host: build it with `flvpc image build` \
         (for flvpc/debian:12) or load it with `docker load`; flvpc never pulls images"
    )]
    ImageNotFound {
        /// The image reference.
        image: String,
    },
    /// No machine container with that name.
    #[error("machine {container:?} does not exist: create it first")]
    MachineNotFound {
        /// The container name.
        container: String,
    },
    /// A container with the machine's name already exists.
    #[error("a container named {container:?} already exists: remove it or choose another machine name")]
    MachineExists {
        /// The container name.
        container: String,
    },
    /// A container or network with flvpc's name exists but carries other labels; flvpc
    /// never touches objects it did not create.
    #[error(
        "{object:?} exists but was not created by flvpc for this machine/namespace (labels differ): \
         flvpc leaves it alone; rename or remove it by hand"
    )]
    NotOurs {
        /// The container or network name.
        object: String,
    },
    /// The namespace network still has machines.
    #[error("network {network:?} still has machines ({machines}): remove the machines first")]
    NetworkInUse {
        /// The network name.
        network: String,
        /// The machines still attached, comma-separated.
        machines: String,
    },
    /// The namespace network does not exist (create it with `ensure_network`).
    #[error("network {network:?} does not exist: call ensure_network for the namespace first")]
    NetworkNotFound {
        /// The network name.
        network: String,
    },
    /// Docker could not bind a host port when starting the machine.
    #[error("machine {container:?} could not publish its ports: {detail}; free the host port or choose another")]
    PortUnavailable {
        /// The container name.
        container: String,
        /// Docker's message.
        detail: String,
    },
    /// The spec was refused before reaching Docker.
    #[error("invalid machine spec: {0}")]
    InvalidSpec(String),
    /// The machine is not running, so nothing can be executed or copied into it.
    #[error("machine {container:?} is not running: start it first")]
    NotRunning {
        /// The container name.
        container: String,
    },
    /// sshd did not answer in time.
    #[error(
        "sshd on 127.0.0.1:{port} did not answer with an SSH-2.0 banner within {waited:?} ({detail}): \
         check the machine's state and `journalctl -u ssh` inside it"
    )]
    SshNotReady {
        /// The host port tried.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The last error seen.
        detail: String,
    },
    /// Any other refusal or failure from Docker.
    #[error("Docker failed to {action}: {detail}")]
    Docker {
        /// What we asked for (e.g. `start container "team1-node0"`).
        action: String,
        /// Docker's message.
        detail: String,
    },
}

impl EngineError {
    /// True when retrying later may succeed without changing anything (engine down).
    pub fn is_transient(&self) -> bool {
        matches!(self, EngineError::Unreachable { .. })
    }
}

/// The operations a reconciler needs. Idempotent where a reconciler would otherwise have
/// to race: `ensure_network` of an existing network, `stop` of a stopped machine, `start`
/// of a running one and `remove` of a missing one all succeed.
///
/// Object safe (via `async_trait`) so that a server can hold an `Arc<dyn Engine>`.
#[async_trait]
pub trait Engine: Send + Sync {
    /// Checks that the engine answers.
    async fn ping(&self) -> Result<(), EngineError>;
    /// Whether an image with this reference exists locally.
    async fn image_exists(&self, image: &str) -> Result<bool, EngineError>;
    /// Creates the namespace's network `flvpc-<ns>` if missing.
    async fn ensure_network(&self, namespace: &str) -> Result<(), EngineError>;
    /// Removes the namespace's network; fine if it is already gone; refused while machines remain.
    async fn remove_network(&self, namespace: &str) -> Result<(), EngineError>;
    /// Creates (does not start) a machine; returns the container ID.
    async fn create_machine(&self, spec: &MachineSpec) -> Result<String, EngineError>;
    /// Starts a machine (no-op when running).
    async fn start_machine(&self, namespace: &str, name: &str) -> Result<(), EngineError>;
    /// Stops a machine, killing it after `timeout` (no-op when stopped).
    async fn stop_machine(&self, namespace: &str, name: &str, timeout: Duration) -> Result<(), EngineError>;
    /// Restarts a machine (starts it when stopped).
    async fn restart_machine(&self, namespace: &str, name: &str, timeout: Duration) -> Result<(), EngineError>;
    /// Removes a machine and its anonymous volumes, killing it if running; fine if missing.
    async fn remove_machine(&self, namespace: &str, name: &str) -> Result<(), EngineError>;
    /// Machines carrying flvpc labels, optionally of one namespace. Never other containers.
    async fn list_machines(&self, namespace: Option<&str>) -> Result<Vec<MachineInfo>, EngineError>;
    /// One machine with its resources, or `None` when there is no such machine.
    async fn inspect_machine(&self, namespace: &str, name: &str) -> Result<Option<MachineDetails>, EngineError>;
    /// Replaces `/root/.ssh/authorized_keys` with `content` (whole file, 0600, root).
    /// Works on created, running and stopped machines.
    async fn write_authorized_keys(&self, namespace: &str, name: &str, content: &str) -> Result<(), EngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(container_name("team1", "node0"), "team1-node0");
        assert_eq!(network_name("team1"), "flvpc-team1");
    }

    #[test]
    fn spec_validation_names_the_problem() {
        let ok = MachineSpec::new("team1", "node0", DEFAULT_IMAGE);
        assert_eq!(ok.validate(), Ok(()));
        let mut bad = ok.clone();
        bad.name = "Node_0".into();
        assert!(bad.validate().expect_err("bad name").to_string().contains("machine name"));
        let mut bad = ok.clone();
        bad.namespace = "1x".into();
        assert!(bad.validate().expect_err("bad ns").to_string().contains("namespace"));
        let mut bad = ok.clone();
        bad.cpus = 0;
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.cpu_cap = Some(f64::NAN);
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.labels.insert(LABEL_MACHINE.into(), "x".into());
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.ports = vec![PortMapping::tcp(22, 2222), PortMapping::tcp(22, 2223)];
        assert!(bad.validate().expect_err("dup").to_string().contains("twice"));
        let mut bad = ok;
        bad.image = "a b".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn machine_names() {
        for good in ["node0", "a", "web-1", "0abc"] {
            assert!(check_machine_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a b", &"x".repeat(64)] {
            assert!(check_machine_name(bad).is_err(), "{bad:?}");
        }
    }
}
