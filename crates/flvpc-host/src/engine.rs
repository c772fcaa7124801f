//! What a reconciler needs from a machine engine, as a trait, plus the types it speaks.
//!
//! The reconciler in another crate is written against [`Engine`] so that its unit tests can
//! run on [`crate::fake::FakeEngine`] while production uses [`crate::docker::DockerEngine`].
//! Machines are always addressed by their [`MachineKey`]; the container name is an
//! implementation detail of the Docker backend (see [`container_name`]), and injective.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use flvpc_model::{MachineKey, NamespaceName};

/// Label carrying the namespace of a machine container and of a namespace network.
pub const LABEL_NAMESPACE: &str = "flvpc.namespace";
/// Label carrying the machine name (the host name) of a machine container.
pub const LABEL_MACHINE: &str = "flvpc.machine";
/// Label naming the flvpc instance (database) that made a container: an engine handle acts
/// only on containers carrying its own instance, so two flvpc servers can share one engine.
pub const LABEL_INSTANCE: &str = "flvpc.instance";
/// Label recording which isolation a machine container was created with ([`ISOLATION`]).
/// Containers made by an older flvpc lack it: their cgroup controllers are writable from inside.
pub const LABEL_ISOLATION: &str = "flvpc.isolation";
/// The isolation this version gives machines: own cgroup parent, read-only controllers, PID limit.
pub const ISOLATION: &str = "cgroup-delegated-1";
/// Label set on images built by flvpc (value: which recipe, e.g. `debian-12`).
pub const LABEL_IMAGE: &str = "flvpc.image";
/// The machine image built by `flvpc image build`.
pub const DEFAULT_IMAGE: &str = "flvpc/debian:12";

/// The Docker container name of a machine: `<name>.<ns>`, injective (see
/// [`MachineKey::object_name`]) and the same as its address through the SSH gateway.
/// (CONTRACT.md's `<ns>-<name>` let two namespaces' machines collide.)
pub fn container_name(key: &MachineKey) -> String {
    key.object_name()
}

/// The Docker network of a namespace: `flvpc-<ns>` (CONTRACT.md); injective, since the
/// prefix is fixed.
pub fn network_name(namespace: &NamespaceName) -> String {
    format!("flvpc-{namespace}")
}

// A published port is the model's type, from the spec down to the engine: one `Protocol`, one
// `PortMapping` (a `host_port` of `None` lets Docker pick one; an `address` of `None` binds every
// host address).
pub use flvpc_model::spec::{PortMapping, Protocol};

/// Everything needed to create one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    /// Which machine: its namespace also selects the network `flvpc-<ns>`; its name is the
    /// host name and network alias.
    pub key: MachineKey,
    /// A local image with systemd as `/sbin/init` and sshd (e.g. [`DEFAULT_IMAGE`]).
    pub image: String,
    /// CPUs promised to the machine. Becomes CPU shares (1024 per CPU): a weight under
    /// contention, not a cap, which is the original's "competition mode" overcommit.
    pub cpus: u32,
    /// Optional hard cap in CPUs (fractions allowed), enforced with `NanoCpus`.
    pub cpu_cap: Option<f64>,
    /// Hard memory limit in MiB; swap is limited to the same value (no extra swap).
    pub memory_mb: u64,
    /// Most processes (and threads) the machine may have at once; `None` means no limit,
    /// which lets one machine's fork bomb exhaust the host's PIDs.
    pub pids_limit: Option<u32>,
    /// Ports published on the host.
    pub ports: Vec<PortMapping>,
    /// The machine's disk in GiB where the engine gives machines a disk of their own (microVMs);
    /// the container engine ignores it. `None`: the engine's default.
    pub disk_gb: Option<u64>,
    /// Extra labels; the keys flvpc sets itself (namespace, machine, instance) are refused.
    pub labels: BTreeMap<String, String>,
}

impl MachineSpec {
    /// A spec with 1 CPU, 1024 MiB, no cap, no PID limit, no ports, the engine's disk and no extra labels.
    pub fn new(key: MachineKey, image: impl Into<String>) -> Self {
        Self {
            key,
            image: image.into(),
            cpus: 1,
            cpu_cap: None,
            memory_mb: 1024,
            pids_limit: None,
            ports: Vec::new(),
            disk_gb: None,
            labels: BTreeMap::new(),
        }
    }

    /// The container name (see [`container_name`]).
    pub fn container_name(&self) -> String {
        container_name(&self.key)
    }

    /// Checks the names, resources and labels before anything reaches Docker. The domain
    /// crate validates what users type; this is the last line of defence because these
    /// strings become Docker object names and host names.
    pub fn validate(&self) -> Result<(), EngineError> {
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
        if self.disk_gb.is_some_and(|gb| gb == 0 || gb > 16 * 1024) {
            return Err(EngineError::InvalidSpec(format!(
                "disk_gb must be between 1 and 16384, not {:?}",
                self.disk_gb
            )));
        }
        if self.pids_limit.is_some_and(|n| n < 16) {
            return Err(EngineError::InvalidSpec(format!(
                "pids_limit must be at least 16 (systemd and sshd need a few dozen), not {:?}",
                self.pids_limit
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
            if key == LABEL_NAMESPACE || key == LABEL_MACHINE || key == LABEL_INSTANCE || key == LABEL_ISOLATION {
                return Err(EngineError::InvalidSpec(format!("label {key:?} is set by flvpc itself")));
            }
            if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control() || c == '=') {
                return Err(EngineError::InvalidSpec(format!("label key {key:?} is not valid")));
            }
        }
        Ok(())
    }
}

/// Checks a machine name: it becomes a host name (RFC 1123 label) and a DNS alias, so
/// 1–63 of `a-z 0-9 -`, starting with a letter or digit and not ending with `-`.
pub fn check_machine_name(name: &str) -> Result<(), EngineError> {
    flvpc_model::MachineName::parse(name).map(|_| ()).map_err(|_| {
        EngineError::InvalidSpec(format!(
            "machine name {name:?} must be 1-63 of a-z 0-9 -, not starting or ending with -"
        ))
    })
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
    /// Running, but what runs inside is not up yet: a VM whose guest has not answered SSH.
    Starting,
    /// Ended by itself and stays so until restarted: a VM that did not boot. The details'
    /// `error` says why.
    Failed,
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
            MachineState::Starting => "starting",
            MachineState::Failed => "failed",
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
    /// From the `flvpc.namespace` and `flvpc.machine` labels.
    pub key: MachineKey,
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
    /// The PID limit the machine was created with, if any.
    pub pids_limit: Option<u32>,
    /// Docker's own error for the last start, e.g. a port already allocated.
    pub error: Option<String>,
    /// When it was last started (seconds since the epoch), if ever.
    pub started_at: Option<i64>,
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
    /// A Docker engine reached over TCP did not answer, or refused the TLS handshake.
    #[error(
        "Docker engine at {endpoint} did not answer ({detail}): check that dockerd there listens on that \
         address (with --tlsverify unless on loopback) and that the TLS files are the engine's CA, a client \
         certificate it trusts and that certificate's key"
    )]
    RemoteUnreachable {
        /// The endpoint that was tried (`tcp://IP:PORT`).
        endpoint: String,
        /// The underlying error.
        detail: String,
    },
    /// An engine endpoint or its TLS files were refused before any connection was tried.
    #[error("cannot use this Docker engine endpoint: {detail}")]
    InvalidEndpoint {
        /// What is wrong and what to give instead.
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
    /// flvpc's own isolation rules between namespace networks could not be written.
    #[error(
        "cannot wall off namespace networks from each other ({detail}): flvpc needs the nft program \
         (Debian's nftables package) and to run as root"
    )]
    Isolation {
        /// What failed.
        detail: String,
    },
    /// Every subnet of the namespace network pool is taken (by namespaces, other Docker
    /// networks or host routes).
    #[error(
        "no free /24 is left in the namespace network pool {pool} ({networks} networks, some may be taken by \
         other Docker networks or host routes): start flvpc with a larger --network-pool"
    )]
    AddressPoolExhausted {
        /// The pool, as CIDR.
        pool: String,
        /// How many /24s it holds.
        networks: u32,
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
        matches!(self, EngineError::Unreachable { .. } | EngineError::RemoteUnreachable { .. })
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
    async fn ensure_network(&self, namespace: &NamespaceName) -> Result<(), EngineError>;
    /// Removes the namespace's network; fine if it is already gone; refused while machines remain.
    async fn remove_network(&self, namespace: &NamespaceName) -> Result<(), EngineError>;
    /// Creates (does not start) a machine; returns the container ID.
    async fn create_machine(&self, spec: &MachineSpec) -> Result<String, EngineError>;
    /// Starts a machine (no-op when running).
    async fn start_machine(&self, key: &MachineKey) -> Result<(), EngineError>;
    /// Creates a machine and starts it (the reconciler's path for a new machine that should
    /// run); returns the container ID. An engine may start what it just created without looking
    /// it up again. The default creates, then starts by key.
    async fn create_and_start_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        let id = self.create_machine(spec).await?;
        self.start_machine(&spec.key).await?;
        Ok(id)
    }
    /// Stops a machine, killing it after `timeout` (no-op when stopped).
    async fn stop_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError>;
    /// Restarts a machine (starts it when stopped).
    async fn restart_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError>;
    /// Removes a machine and its anonymous volumes, killing it if running; fine if missing.
    async fn remove_machine(&self, key: &MachineKey) -> Result<(), EngineError>;
    /// This instance's machines, optionally of one namespace. Never other containers, and
    /// never another flvpc instance's machines.
    async fn list_machines(&self, namespace: Option<&NamespaceName>) -> Result<Vec<MachineInfo>, EngineError>;
    /// One machine with its resources, or `None` when this instance has no such machine.
    async fn inspect_machine(&self, key: &MachineKey) -> Result<Option<MachineDetails>, EngineError>;
    /// Replaces `/root/.ssh/authorized_keys` with `content` (whole file, 0600, root).
    /// Works on created, running and stopped machines.
    async fn write_authorized_keys(&self, key: &MachineKey, content: &str) -> Result<(), EngineError>;
    /// [`Engine::write_authorized_keys`] for a machine `inspected` by [`Engine::inspect_machine`]
    /// a moment ago (which checked that it is this instance's): an engine may write to that very
    /// container without looking it up again. The default looks it up.
    async fn write_authorized_keys_to(&self, inspected: &MachineDetails, content: &str) -> Result<(), EngineError> {
        self.write_authorized_keys(&inspected.info.key, content).await
    }
    /// The machines of this instance whose containers the engine reports as started, stopped,
    /// dead or removed, so that a change made behind flvpc's back (`docker kill`, a crash) is
    /// reconciled at once instead of at the next resync. The stream ends with the engine's
    /// connection: subscribe again. `None`: this engine reports nothing (the resync still sees
    /// every change, later).
    async fn machine_events(&self) -> Result<Option<MachineEvents>, EngineError> {
        Ok(None)
    }

    /// The last `lines` lines of the machine's console, for the people of its namespace: a
    /// VM's serial console, a container machine's system journal. Its text is the tenant's.
    async fn console(&self, key: &MachineKey, lines: usize) -> Result<String, EngineError> {
        let _ = lines;
        Err(EngineError::NotRunning { container: container_name(key) })
    }

    /// Whether the engine's machines run on this process's kernel, so that their PIDs and cgroups
    /// can be read here (the usage sampler). An engine on another machine says no: a PID it
    /// reports names some unrelated process of this kernel.
    fn on_this_kernel(&self) -> bool {
        true
    }
}

/// What [`Engine::machine_events`] yields: machines to look at again.
pub type MachineEvents = futures::stream::BoxStream<'static, MachineKey>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let key = MachineKey::parse("team1", "node0").expect("key");
        assert_eq!(container_name(&key), "node0.team1");
        assert_eq!(network_name(&key.namespace), "flvpc-team1");
    }

    #[test]
    fn spec_validation_names_the_problem() {
        let ok = MachineSpec::new(MachineKey::parse("team1", "node0").expect("key"), DEFAULT_IMAGE);
        assert_eq!(ok.validate(), Ok(()));
        let mut bad = ok.clone();
        bad.pids_limit = Some(3);
        assert!(bad.validate().expect_err("pids").to_string().contains("pids_limit"));
        let mut bad = ok.clone();
        bad.labels.insert(LABEL_INSTANCE.into(), "x".into());
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.cpus = 0;
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.disk_gb = Some(0);
        assert!(bad.validate().expect_err("disk").to_string().contains("disk_gb"));
        let mut bad = ok.clone();
        bad.cpu_cap = Some(f64::NAN);
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.labels.insert(LABEL_MACHINE.into(), "x".into());
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.ports = vec![PortMapping::tcp(22, Some(2222)), PortMapping::tcp(22, Some(2223))];
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
