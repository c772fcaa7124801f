//! The Docker backend: machines are containers running systemd, one bridge network per namespace.
//!
//! Everything goes through the Docker API (bollard): the local unix socket, or another host's
//! engine by its endpoint (`endpoint.rs`); nothing here runs the `docker` CLI or a shell. Container settings follow ENVIRONMENT.md: no
//! `--privileged`, default capabilities, tmpfs on /run, /run/lock and /tmp, a PID limit, and
//! the cgroup view of [`crate::cgroup`] (read-only everywhere but the machine's own systemd
//! subtrees), which is what systemd needs to boot as PID 1 without reaching the host.
//!
//! An engine handle acts for one flvpc instance: every machine call checks the container's
//! `flvpc.instance` label as well as its namespace and machine labels.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings,
    ExecConfig, HostConfig, HostConfigLogConfig, Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
    PortSummaryTypeEnum, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

use crate::isolation;
use crate::subnets::{self, AddressPool, Ipv4Net};
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use crate::cgroup::CgroupLayout;
use crate::engine::{
    container_name, network_name, Engine, EngineError, MachineDetails, MachineEvents, MachineInfo, MachineSpec,
    MachineState, PortMapping, Protocol, PublishedPort, ISOLATION, LABEL_INSTANCE, LABEL_ISOLATION, LABEL_MACHINE,
    LABEL_NAMESPACE,
};
use flvpc_model::{MachineKey, NamespaceName};

/// Docker API 1.41 allows two networks with the same name when created concurrently, which
/// then makes `flvpc-<ns>` ambiguous. Every engine handle of the process (the container engine
/// and the microVM engine each have one, and create in the same namespace network at once)
/// serialises network creation and removal here (there is one flvpc server per host).
static NETWORK_LOCK: Mutex<()> = Mutex::const_new(());

/// The bridge through which Docker connects containers on overlay networks to the world.
pub const GATEWAY_BRIDGE: &str = "docker_gwbridge";

/// The driver of a namespace network: a local bridge, or an overlay across a swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NetworkDriver {
    Bridge,
    Overlay,
}

impl NetworkDriver {
    fn as_str(self) -> &'static str {
        match self {
            NetworkDriver::Bridge => "bridge",
            NetworkDriver::Overlay => "overlay",
        }
    }
}

/// Where dockerd listens by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The signal that makes systemd as PID 1 shut down cleanly (what `docker stop` must send).
pub const SYSTEMD_STOP_SIGNAL: &str = "SIGRTMIN+3";

/// Default timeout for one API call; long calls (stop, import) set their own.
const API_TIMEOUT_SECS: u64 = 120;
/// How long one subscription to Docker's events lasts before it is renewed.
/// How long a Docker object seen is taken as still there without asking again (see
/// [`RecentlySeen`]): about one reconcile pass, so that one removed behind flvpc's back is
/// noticed by the next pass.
const SEEN_KEPT: Duration = Duration::from_secs(10);

/// Names of Docker objects (networks, images) seen a moment ago, so that one create does not
/// ask Docker the same question twice. Bounded: past 1,024 names it starts afresh.
#[derive(Debug, Default)]
struct RecentlySeen(std::sync::Mutex<HashMap<String, std::time::Instant>>);

impl RecentlySeen {
    fn saw(&self, name: &str) {
        if let Ok(mut seen) = self.0.lock() {
            if seen.len() >= 1024 {
                seen.clear();
            }
            seen.insert(name.to_owned(), std::time::Instant::now());
        }
    }

    fn recently(&self, name: &str) -> bool {
        self.0.lock().ok().and_then(|seen| seen.get(name).map(|at| at.elapsed() < SEEN_KEPT)).unwrap_or(false)
    }

    fn forget(&self, name: &str) {
        if let Ok(mut seen) = self.0.lock() {
            seen.remove(name);
        }
    }
}
const EVENTS_TIMEOUT: Duration = Duration::from_secs(3600);

/// The output of a command run inside a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code (-1 if Docker did not report one).
    pub exit_code: i64,
    /// Everything written to stdout, lossily decoded.
    pub stdout: String,
    /// Everything written to stderr, lossily decoded.
    pub stderr: String,
}

/// A connection to the local Docker engine. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
    socket: String,
    /// Networks `ensure_network` found or made ours, and when: a create right after need not
    /// inspect the network again (issue 9: the create path of one machine). Forgotten after
    /// [`NETWORK_CHECK_KEPT`] and when the network is removed.
    networks_checked: Arc<RecentlySeen>,
    /// Images found a moment ago: admission asks before every create (issue 9, same path).
    images_seen: Arc<RecentlySeen>,
    /// The flvpc instance whose machines this handle manages (`None`: images only).
    instance: Option<String>,
    /// How machines see the host's cgroups.
    cgroups: Arc<CgroupLayout>,
    /// Where namespace networks get their subnets.
    network_pool: AddressPool,
    /// Whether the engine runs on this process's kernel (reached over a unix socket): only then
    /// does flvpc's nftables wall ([`crate::isolation`]) guard its bridges.
    local_kernel: bool,
    /// In a swarm: the manager engine on which namespace networks are made, as attachable
    /// overlays (see [`Self::with_overlay`]); `None`: local bridge networks.
    overlay: Option<Arc<DockerEngine>>,
}

impl std::fmt::Debug for DockerEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerEngine")
            .field("socket", &self.socket)
            .field("instance", &self.instance)
            .field("overlay_manager", &self.overlay.as_ref().map(|m| m.socket.clone()))
            .finish_non_exhaustive()
    }
}

impl DockerEngine {
    /// Connects to dockerd on [`DEFAULT_SOCKET`] and negotiates the API version (the daemon
    /// here speaks 1.41, older than bollard's default).
    pub async fn connect() -> Result<Self, EngineError> {
        Self::connect_at(DEFAULT_SOCKET).await
    }

    /// Connects to dockerd on the unix socket at `socket`.
    pub async fn connect_at(socket: &str) -> Result<Self, EngineError> {
        let unreachable =
            |e: BollardError| EngineError::Unreachable { socket: socket.to_owned(), detail: e.to_string() };
        let docker = Docker::connect_with_unix(socket, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(unreachable)?
            .negotiate_version()
            .await
            .map_err(unreachable)?;
        Ok(Self::from_client(docker, socket.to_owned(), true))
    }

    /// A handle on a connected client; `socket` names the engine in errors (a socket path or
    /// a `tcp://` endpoint), `local_kernel` whether it runs on this kernel.
    pub(crate) fn from_client(docker: Docker, socket: String, local_kernel: bool) -> Self {
        Self {
            docker,
            socket,
            networks_checked: Arc::default(),
            images_seen: Arc::default(),
            instance: None,
            cgroups: Arc::new(CgroupLayout::detect()),
            network_pool: AddressPool::DEFAULT,
            local_kernel,
            overlay: None,
        }
    }

    /// The same connection, in a Docker Swarm whose manager is `manager` (formed by
    /// [`crate::swarm::form_swarm`]): namespace networks are attachable overlay networks made on
    /// the manager, so that a namespace's machines on every engine of the swarm share one network
    /// and find each other by name. This engine never creates them: Docker attaches it to the
    /// network when a container on it starts. The manager's own handle takes itself.
    pub fn with_overlay(mut self, manager: Arc<DockerEngine>) -> Self {
        self.overlay = Some(manager);
        self
    }

    /// The engine that holds namespace networks: the swarm's manager in overlay mode, else this one.
    fn network_engine(&self) -> &DockerEngine {
        self.overlay.as_deref().unwrap_or(self)
    }

    /// Whether the engine runs on this process's kernel (it was reached over a unix socket).
    pub fn is_local_kernel(&self) -> bool {
        self.local_kernel
    }

    /// The same connection, cutting namespace networks from `pool` (`--network-pool`).
    pub fn with_network_pool(mut self, pool: AddressPool) -> Self {
        self.network_pool = pool;
        self
    }

    /// The same connection, acting for the flvpc instance `instance`: it creates machines with
    /// that instance's label and touches no container without it.
    pub fn for_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The instance this handle acts for; machine calls need one.
    fn instance(&self) -> Result<&str, EngineError> {
        self.instance.as_deref().filter(|i| !i.is_empty()).ok_or_else(|| {
            EngineError::InvalidSpec("this Docker engine handle has no flvpc instance id: use for_instance()".into())
        })
    }

    /// The bollard client, for the image module of this crate.
    pub(crate) fn client(&self) -> &Docker {
        &self.docker
    }

    /// The socket this engine talks to.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Turns a bollard error into an [`EngineError`]: transport failures mean the daemon is
    /// unreachable; HTTP errors keep Docker's own message.
    pub(crate) fn error(&self, action: impl Into<String>, err: BollardError) -> EngineError {
        match err {
            BollardError::DockerResponseServerError { status_code, message } => {
                EngineError::Docker { action: action.into(), detail: format!("{message} (HTTP {status_code})") }
            }
            BollardError::DockerStreamError { error } => EngineError::Docker { action: action.into(), detail: error },
            BollardError::IOError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::RequestTimeoutError
            | BollardError::HttpClientError { .. }
            | BollardError::HyperResponseError { .. } => self.unreachable(err.to_string()),
            other => EngineError::Docker { action: action.into(), detail: other.to_string() },
        }
    }

    /// The error for an engine that did not answer: a local socket's says to start dockerd, a
    /// remote one's what to check there.
    pub(crate) fn unreachable(&self, detail: String) -> EngineError {
        if self.socket.starts_with("tcp://") {
            EngineError::RemoteUnreachable { endpoint: self.socket.clone(), detail }
        } else {
            EngineError::Unreachable { socket: self.socket.clone(), detail }
        }
    }

    /// Checks that dockerd answers.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.docker.ping().await.map(|_| ()).map_err(|e| self.error("ping", e))
    }

    /// The daemon's version string (e.g. `20.10.24+dfsg1`), for logs and `flvpc doctor`.
    pub async fn server_version(&self) -> Result<String, EngineError> {
        let v = self.docker.version().await.map_err(|e| self.error("read the version", e))?;
        Ok(v.version.unwrap_or_default())
    }

    /// Whether the image exists locally.
    pub async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        // Only a found image is remembered: one made a moment ago is seen at once, and one
        // removed within the moment fails the create with `ImageNotFound`, which says what to do.
        if self.images_seen.recently(image) {
            return Ok(true);
        }
        match self.docker.inspect_image(image).await {
            Ok(_) => {
                self.images_seen.saw(image);
                Ok(true)
            }
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(self.error(format!("inspect image {image:?}"), e)),
        }
    }

    /// Creates the bridge network `flvpc-<ns>` (label `flvpc.namespace=<ns>`) if it is missing.
    /// Docker isolates user-defined bridges from each other, which is what keeps namespaces
    /// apart; its embedded DNS resolves the network aliases, which is how machines of one
    /// namespace find each other by name.
    pub async fn ensure_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        let name = network_name(namespace);
        let ensured = match &self.overlay {
            None => self.ensure_network_named(&name, namespace).await,
            Some(manager) => self.ensure_overlay_network(manager, &name, namespace).await,
        };
        if ensured.is_ok() {
            self.networks_checked.saw(&name);
        }
        ensured
    }

    async fn ensure_network_named(&self, name: &str, namespace: &NamespaceName) -> Result<(), EngineError> {
        let _serialised = NETWORK_LOCK.lock().await;
        let network = match self.inspect_network(name).await? {
            Some(network) => network,
            None => {
                self.create_network_in_pool(name, namespace, NetworkDriver::Bridge).await?;
                self.inspect_network(name)
                    .await?
                    .ok_or_else(|| EngineError::NetworkNotFound { network: name.to_owned() })?
            }
        };
        let labels = network.labels.clone().unwrap_or_default();
        if labels.get(LABEL_NAMESPACE).map(String::as_str) != Some(namespace.as_str()) {
            return Err(EngineError::NotOurs { object: name.to_owned() });
        }
        // Before any machine is attached: flvpc's own wall (see isolation.rs), also around a
        // network made by an earlier version.
        if !self.local_kernel {
            // Another machine's bridge: out of this kernel's wall (see ARCHITECTURE.md).
            return Ok(());
        }
        isolation::protect(&[bridge_name(network.id.as_deref(), network.options.as_ref())]).await
    }

    /// [`Self::ensure_network`] in a swarm: the namespace network is an attachable overlay made on
    /// the manager (from the manager's pool, checked against the manager's networks).
    async fn ensure_overlay_network(
        &self,
        manager: &DockerEngine,
        name: &str,
        namespace: &NamespaceName,
    ) -> Result<(), EngineError> {
        let _serialised = NETWORK_LOCK.lock().await;
        let network = match manager.inspect_network(name).await? {
            Some(network) => network,
            None => {
                manager.create_network_in_pool(name, namespace, NetworkDriver::Overlay).await?;
                manager
                    .inspect_network(name)
                    .await?
                    .ok_or_else(|| EngineError::NetworkNotFound { network: name.to_owned() })?
            }
        };
        let labels = network.labels.clone().unwrap_or_default();
        if labels.get(LABEL_NAMESPACE).map(String::as_str) != Some(namespace.as_str()) {
            return Err(EngineError::NotOurs { object: name.to_owned() });
        }
        // Scope, not driver: the manager names the driver only once its allocator has run, a
        // moment after the create.
        if network.scope.as_deref() != Some("swarm") {
            return Err(EngineError::Docker {
                action: format!("use network {name:?} across the swarm"),
                detail: format!(
                    "it is a {} network of the manager's own, made before its hosts formed a swarm: remove \
                     the namespace's machines on the manager, then the network, and create them again",
                    network.driver.as_deref().filter(|d| !d.is_empty()).unwrap_or("local")
                ),
            });
        }
        self.protect_gateway_bridge().await
    }

    /// In a swarm, a machine on an overlay reaches the world through the engine's
    /// `docker_gwbridge`, on which the machines of every namespace have a port. Docker sets
    /// `icc=false` on it; flvpc's wall also keeps its ports from talking to each other, so
    /// that isolation does not rest on Docker's rules alone (which have windows, see
    /// isolation.rs). Only this kernel's bridges can be walled: an engine on another machine
    /// is left to Docker's rules there.
    async fn protect_gateway_bridge(&self) -> Result<(), EngineError> {
        if self.overlay.is_some() && self.local_kernel {
            isolation::protect_ports_apart(&[GATEWAY_BRIDGE.to_owned()]).await?;
        }
        Ok(())
    }

    /// Creates the namespace network on a free /24 of the pool. A network of that name made
    /// meanwhile by someone else is left for the caller to check.
    async fn create_network_in_pool(
        &self,
        name: &str,
        namespace: &NamespaceName,
        driver: NetworkDriver,
    ) -> Result<(), EngineError> {
        let name = name.to_owned();
        // Subnets Docker refused as overlapping since we listed (another process took it).
        let mut refused = Vec::new();
        loop {
            let mut taken = self.subnets_in_use().await?;
            taken.extend(refused.iter().copied());
            let subnet = self.network_pool.first_free(&taken).ok_or_else(|| EngineError::AddressPoolExhausted {
                pool: self.network_pool.to_string(),
                networks: self.network_pool.size(),
            })?;
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some(driver.as_str().into()),
                // Machines on other engines of the swarm join with their own containers (not
                // services), which Docker allows on attachable overlays only. Not encrypted: the
                // IPsec (ESP) that `encrypted` asks for is missing from some kernels (this
                // project's test machines among them), where such an overlay silently drops every
                // packet; traffic between hosts is as private as the network between them.
                attachable: (driver == NetworkDriver::Overlay).then_some(true),
                labels: Some(HashMap::from([(LABEL_NAMESPACE.to_owned(), namespace.to_string())])),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet.to_string()),
                        gateway: Some(subnet.gateway().to_string()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            return match self.docker.create_network(request).await {
                // 409: someone else (another flvpc process, a person) created it meanwhile.
                Ok(_) | Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
                // Another process (a second flvpc on this engine) took that subnet since we listed.
                Err(BollardError::DockerResponseServerError { message, .. })
                    if message.contains("overlaps") && refused.len() < 16 =>
                {
                    refused.push(subnet);
                    continue;
                }
                Err(e) => Err(self.error(format!("create network {name:?} on {subnet}"), e)),
            };
        }
    }

    /// The IPv4 subnets of every Docker network and of the host's routes: a new namespace
    /// network must overlap none of them.
    async fn subnets_in_use(&self) -> Result<Vec<Ipv4Net>, EngineError> {
        let networks = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(|e| self.error("list networks", e))?;
        let mut taken: Vec<Ipv4Net> = networks
            .iter()
            .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
            .flatten()
            .filter_map(|c| c.subnet.as_deref()?.parse().ok())
            .collect();
        taken.extend(subnets::host_routes());
        Ok(taken)
    }

    async fn inspect_network(&self, name: &str) -> Result<Option<bollard::models::NetworkInspect>, EngineError> {
        match self.docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await {
            Ok(net) => Ok(Some(net)),
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(self.error(format!("inspect network {name:?}"), e)),
        }
    }

    async fn network_labels(&self, name: &str) -> Result<Option<HashMap<String, String>>, EngineError> {
        Ok(self.inspect_network(name).await?.map(|net| net.labels.unwrap_or_default()))
    }

    /// Puts the bridges of every namespace network there is (of any flvpc instance, made by any
    /// version) behind flvpc's own wall: run when flvpc connects to the engine, so that machines
    /// adopted after an upgrade or a host reboot are walled off before anything else happens.
    pub async fn protect_existing_networks(&self) -> Result<usize, EngineError> {
        let filters = HashMap::from([("label".to_owned(), vec![LABEL_NAMESPACE.to_owned()])]);
        let options = bollard::query_parameters::ListNetworksOptionsBuilder::new().filters(&filters).build();
        let networks = self.docker.list_networks(Some(options)).await.map_err(|e| self.error("list networks", e))?;
        let bridges: Vec<String> = networks
            .iter()
            .filter(|n| n.driver.as_deref() == Some("bridge"))
            .map(|n| bridge_name(n.id.as_deref(), n.options.as_ref()))
            .collect();
        if self.local_kernel {
            isolation::protect(&bridges).await?;
            self.protect_gateway_bridge().await?;
        }
        Ok(bridges.len())
    }

    async fn check_network_owner(&self, name: &str, namespace: &NamespaceName) -> Result<(), EngineError> {
        match self.network_engine().network_labels(name).await? {
            Some(labels) if labels.get(LABEL_NAMESPACE).map(String::as_str) == Some(namespace.as_str()) => Ok(()),
            Some(_) => Err(EngineError::NotOurs { object: name.to_owned() }),
            None => Err(EngineError::NetworkNotFound { network: name.to_owned() }),
        }
    }

    /// Removes the namespace network. Already gone is fine; refused while any container
    /// (flvpc's or not) is still attached, so that nothing is cut off silently.
    ///
    /// In a swarm the network is removed on the manager: the machines counted are this engine's
    /// and those the manager sees attached; a caller with machines on several engines removes a
    /// namespace network only once none is left on any (a stopped machine elsewhere holds no
    /// endpoint anywhere, and could not start again).
    pub async fn remove_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        let name = network_name(namespace);
        let _serialised = NETWORK_LOCK.lock().await;
        self.networks_checked.forget(&name);
        let holder = self.network_engine();
        let Some(inspected) = holder.inspect_network(&name).await? else { return Ok(()) };
        let labels = inspected.labels.unwrap_or_default();
        if labels.get(LABEL_NAMESPACE).map(String::as_str) != Some(namespace.as_str()) {
            return Err(EngineError::NotOurs { object: name });
        }
        let bridge = bridge_name(inspected.id.as_deref(), inspected.options.as_ref());
        // Stopped machines have no endpoint on the network, so Docker would let the network
        // go and they could never start again: count them too.
        let mut users: Vec<String> =
            self.list_machines(Some(namespace)).await?.into_iter().map(|m| m.container).collect();
        for endpoint in inspected.containers.unwrap_or_default().into_values() {
            if let Some(n) = endpoint.name {
                if !users.contains(&n) {
                    users.push(n);
                }
            }
        }
        if !users.is_empty() {
            users.sort();
            return Err(EngineError::NetworkInUse { network: name, machines: users.join(", ") });
        }
        // Just after the last of many containers went, Docker can still count their endpoints for
        // a moment and answer 403 "has active endpoints": asked again a little later, it lets the
        // network go (seen deleting 200 machines at once). A swarm's manager says the same while a
        // worker's detach has not reached it ("is in use by task"). Bounded: about 5 s in all.
        let mut attempt = 0;
        loop {
            match holder.docker.remove_network(&name).await {
                Err(BollardError::DockerResponseServerError { status_code: 403 | 500, ref message })
                    if (message.contains("active endpoints") || message.contains("in use")) && attempt < 20 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                result => break result,
            }
        }
        .or_else(|e| match e {
            BollardError::DockerResponseServerError { status_code: 404, .. } => Ok(()),
            // A swarm network removed a moment ago can still be listed by the manager, whose
            // removal then answers 500 "not found" (seen deleting a cluster spread over two hosts):
            // gone is what was asked.
            BollardError::DockerResponseServerError { status_code: 500, ref message }
                if self.overlay.is_some() && message.contains("not found") =>
            {
                Ok(())
            }
            e => Err(holder.error(format!("remove network {name:?}"), e)),
        })?;
        if self.overlay.is_some() || !self.local_kernel {
            // An overlay has no bridge in this network namespace, another machine's bridge is not
            // in this kernel: nothing was walled for either.
            return Ok(());
        }
        // The bridge is gone; a later network may get its name (Docker derives it from the id).
        isolation::forget(&bridge).await
    }

    /// Makes the machine's delegated cgroup subtrees (see [`crate::cgroup`]) when the engine runs
    /// on this kernel. An engine on another machine gets the same container definition, and its
    /// Docker makes the missing bind sources (directories, i.e. cgroups) at start; the cap on how
    /// many cgroups a machine may make below them cannot be set from here (ARCHITECTURE.md).
    fn prepare_cgroups(&self, key: &MachineKey) -> std::io::Result<()> {
        if self.local_kernel {
            self.cgroups.prepare(key)
        } else {
            Ok(())
        }
    }

    /// Removes the machine's cgroup subtrees once its container is gone, on this kernel only.
    fn cleanup_cgroups(&self, key: &MachineKey) {
        if self.local_kernel {
            self.cgroups.cleanup_soon(key);
        }
    }

    /// Creates (does not start) the machine container and returns its ID.
    ///
    /// The namespace network must exist ([`Self::ensure_network`]) and the image must be local.
    pub async fn create_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        self.create_machine_with(spec, |_| {}).await
    }

    /// [`Self::create_machine`] with the container definition adjusted by `adjust` before it
    /// goes to Docker: how another engine of this crate (the microVM runner) gets a machine's
    /// name, labels, network, ports, limits and cgroup parent and changes only what differs.
    pub(crate) async fn create_machine_with(
        &self,
        spec: &MachineSpec,
        adjust: impl FnOnce(&mut ContainerCreateBody),
    ) -> Result<String, EngineError> {
        spec.validate()?;
        let instance = self.instance()?;
        let container = spec.container_name();
        let network = network_name(&spec.key.namespace);
        // Docker 20.10 accepts a missing network at create time and only fails at start:
        // check now, so the error comes from the call that can be fixed (unless
        // `ensure_network` checked it a moment ago, as the reconciler's create path does).
        if !self.networks_checked.recently(&network) {
            self.check_network_owner(&network, &spec.key.namespace).await?;
        }
        self.prepare_cgroups(&spec.key).map_err(|e| EngineError::Docker {
            action: format!("prepare the cgroups of {container:?}"),
            detail: format!("{e} (flvpc must run as root on a host with cgroups mounted under /sys/fs/cgroup)"),
        })?;
        let mut body = container_body(spec, &network, instance, &self.cgroups);
        adjust(&mut body);
        let options = CreateContainerOptionsBuilder::new().name(&container).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => {
                for warning in created.warnings {
                    // e.g. "Your kernel does not support swap limit capabilities": worth a log
                    // line, not a failure, since the memory limit itself still applies.
                    tracing::warn!(container, warning, "Docker warning on create");
                }
                Ok(created.id)
            }
            Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => {
                Err(EngineError::MachineExists { container })
            }
            Err(BollardError::DockerResponseServerError { status_code: 404, message }) => {
                if message.contains("network") {
                    Err(EngineError::NetworkNotFound { network })
                } else {
                    Err(EngineError::ImageNotFound { image: spec.image.clone() })
                }
            }
            Err(e) => Err(self.error(format!("create container {container:?}"), e)),
        }
    }

    /// Inspects the machine's container and checks that it carries this machine's labels:
    /// a container that merely has the right name is not ours to start, stop or remove.
    ///
    /// The container is looked up by its name and, failing that, by its labels (machines made
    /// before container names became `<name>.<ns>` are found and adopted that way).
    async fn owned(&self, key: &MachineKey) -> Result<Option<bollard::models::ContainerInspectResponse>, EngineError> {
        let instance = self.instance()?;
        let container = container_name(key);
        let inspected = match self.inspect_container(&container).await? {
            Some(c) => c,
            None => match self.find_by_labels(key, instance).await? {
                Some(id) => match self.inspect_container(&id).await? {
                    Some(c) => c,
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
        };
        let labels = inspected.config.as_ref().and_then(|c| c.labels.as_ref());
        let label = |name: &str| labels.and_then(|l| l.get(name)).map(String::as_str);
        if label(LABEL_NAMESPACE) != Some(key.namespace.as_str())
            || label(LABEL_MACHINE) != Some(key.name.as_str())
            || label(LABEL_INSTANCE) != Some(instance)
        {
            return Err(EngineError::NotOurs { object: container });
        }
        Ok(Some(inspected))
    }

    async fn inspect_container(
        &self,
        container: &str,
    ) -> Result<Option<bollard::models::ContainerInspectResponse>, EngineError> {
        match self.docker.inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>).await
        {
            Ok(c) => Ok(Some(c)),
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(self.error(format!("inspect container {container:?}"), e)),
        }
    }

    /// The ID of this instance's container labelled as machine `key`, whatever its name.
    async fn find_by_labels(&self, key: &MachineKey, instance: &str) -> Result<Option<String>, EngineError> {
        let wanted = [
            format!("{LABEL_NAMESPACE}={}", key.namespace),
            format!("{LABEL_MACHINE}={}", key.name),
            format!("{LABEL_INSTANCE}={instance}"),
        ];
        let filters = HashMap::from([("label", wanted.iter().map(String::as_str).collect::<Vec<_>>())]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let found = self.docker.list_containers(Some(options)).await.map_err(|e| self.error("list containers", e))?;
        Ok(found.into_iter().find_map(|c| c.id))
    }

    async fn require(&self, key: &MachineKey) -> Result<String, EngineError> {
        match self.owned(key).await? {
            Some(c) => Ok(c.id.unwrap_or_else(|| container_name(key))),
            None => Err(EngineError::MachineNotFound { container: container_name(key) }),
        }
    }

    /// Starts the machine; a running machine is left alone.
    pub async fn start_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        let id = self.require(key).await?;
        let container = container_name(key);
        // After a host reboot the machine's delegated cgroups are gone; Docker would make them
        // too, but without the cap on descendants.
        if let Err(err) = self.prepare_cgroups(key) {
            tracing::warn!(container, "cannot prepare the machine's cgroups: {err}");
        }
        self.start_container(&id, container).await
    }

    /// Creates the machine and starts the container just created, by its ID, without looking
    /// it up again (the reconciler's path for a new machine; `create_machine` prepared its
    /// cgroups). Returns the container ID.
    pub async fn create_and_start_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        let id = self.create_machine(spec).await?;
        self.start_container(&id, spec.container_name()).await?;
        Ok(id)
    }

    async fn start_container(&self, id: &str, container: String) -> Result<(), EngineError> {
        match self.docker.start_container(id, None::<bollard::query_parameters::StartContainerOptions>).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(BollardError::DockerResponseServerError { message, .. }) if is_port_conflict(&message) => {
                Err(EngineError::PortUnavailable { container, detail: message })
            }
            Err(e) => Err(self.error(format!("start container {container:?}"), e)),
        }
    }

    /// Stops the machine: SIGRTMIN+3 (systemd's clean shutdown), SIGKILL after `timeout`.
    /// A stopped machine is left alone.
    pub async fn stop_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        let id = self.require(key).await?;
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(secs).build();
        // The HTTP call lasts as long as the shutdown: give it the stop timeout plus slack.
        let docker = self.docker.clone().with_timeout(timeout + Duration::from_secs(API_TIMEOUT_SECS));
        match docker.stop_container(&id, Some(options)).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(self.error(format!("stop container {:?}", container_name(key)), e)),
        }
    }

    /// Restarts the machine (a stopped machine is started).
    pub async fn restart_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        let id = self.require(key).await?;
        let container = container_name(key);
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = RestartContainerOptionsBuilder::new().t(secs).build();
        let docker = self.docker.clone().with_timeout(timeout + Duration::from_secs(API_TIMEOUT_SECS));
        match docker.restart_container(&id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError { message, .. }) if is_port_conflict(&message) => {
                Err(EngineError::PortUnavailable { container, detail: message })
            }
            Err(e) => Err(self.error(format!("restart container {container:?}"), e)),
        }
    }

    /// Removes the machine (killing it if running) with its anonymous volumes. A machine
    /// that does not exist is fine: removal is what the caller wanted.
    pub async fn remove_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        let Some(inspected) = self.owned(key).await? else {
            self.cleanup_cgroups(key);
            return Ok(());
        };
        let id = inspected.id.unwrap_or_else(|| container_name(key));
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.docker.remove_container(&id, Some(options)).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => {}
            // "removal already in progress" from a concurrent remove: same outcome.
            Err(BollardError::DockerResponseServerError { status_code: 409, message })
                if message.contains("already in progress") => {}
            Err(e) => return Err(self.error(format!("remove container {:?}", container_name(key)), e)),
        }
        self.cleanup_cgroups(key);
        Ok(())
    }

    /// Docker's events about this instance's machine containers (start, stop, die, destroy),
    /// as the machines they concern. Ends when the connection does (an error ends it too).
    pub fn machine_events(&self) -> Result<MachineEvents, EngineError> {
        let instance = format!("{LABEL_INSTANCE}={}", self.instance()?);
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("event", ["start", "stop", "die", "destroy"].map(String::from).to_vec()),
            ("label", vec![instance]),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        // A long-lived stream: the API timeout would cut it every two minutes.
        let docker = self.docker.clone().with_timeout(EVENTS_TIMEOUT);
        let events = docker
            .events(Some(options))
            .take_while(|event| {
                if let Err(err) = event {
                    tracing::debug!("Docker's event stream ended: {err}");
                }
                std::future::ready(event.is_ok())
            })
            .filter_map(|event| std::future::ready(event.ok().and_then(|e| event_machine(&e))));
        Ok(events.boxed())
    }

    /// Lists machine containers (those with both flvpc labels), of one namespace or all.
    /// Containers without the labels are never returned, whatever their name.
    pub async fn list_machines(&self, namespace: Option<&NamespaceName>) -> Result<Vec<MachineInfo>, EngineError> {
        let instance = format!("{LABEL_INSTANCE}={}", self.instance()?);
        let filter = match namespace {
            Some(ns) => format!("{LABEL_NAMESPACE}={ns}"),
            None => LABEL_NAMESPACE.to_owned(),
        };
        let filters = HashMap::from([("label", vec![filter.as_str(), instance.as_str()])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let summaries =
            self.docker.list_containers(Some(options)).await.map_err(|e| self.error("list containers", e))?;
        let mut machines: Vec<MachineInfo> = summaries.into_iter().filter_map(machine_from_summary).collect();
        machines.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(machines)
    }

    /// One machine with its configured resources and ports, or `None` if it does not exist.
    pub async fn inspect_machine(&self, key: &MachineKey) -> Result<Option<MachineDetails>, EngineError> {
        Ok(self.owned(key).await?.map(|c| details_from_inspect(key, c)))
    }

    /// Replaces `/root/.ssh/authorized_keys` with `content`, whole, through the Docker archive
    /// API: a tar built in memory with `.ssh/` (0700) and `authorized_keys` (0600), both owned
    /// by root, extracted into `/root`. No process runs in the machine, so it works on created,
    /// running and stopped machines alike, and no key text ever passes through a shell.
    pub async fn write_authorized_keys(&self, key: &MachineKey, content: &str) -> Result<(), EngineError> {
        let id = self.require(key).await?;
        self.upload_authorized_keys(&id, key, content).await
    }

    /// [`Self::write_authorized_keys`] into the container `inspected` names, by its ID, without
    /// inspecting it again: the inspect that produced `inspected` checked its labels, and an ID
    /// names that one container for good (one recreated since under the same name has another
    /// ID, and the upload fails). Saves an inspect per machine and resync (issue 9).
    pub async fn write_authorized_keys_to(&self, inspected: &MachineDetails, content: &str) -> Result<(), EngineError> {
        self.upload_authorized_keys(&inspected.info.id, &inspected.info.key, content).await
    }

    async fn upload_authorized_keys(&self, id: &str, key: &MachineKey, content: &str) -> Result<(), EngineError> {
        let archive = authorized_keys_tar(content);
        self.upload_keys_archive(id, key, "/root", "/root/.ssh/authorized_keys", archive).await
    }

    /// Extracts `archive` (built by [`authorized_keys_tar`] or the like) into `dir` of container
    /// `id`, which is machine `key`'s; `file` names what it writes, for the error. Through the
    /// archive API: no process runs in the container and no key text passes through a shell.
    pub(crate) async fn upload_keys_archive(
        &self,
        id: &str,
        key: &MachineKey,
        dir: &str,
        file: &str,
        archive: std::io::Result<Vec<u8>>,
    ) -> Result<(), EngineError> {
        let container = container_name(key);
        let archive = archive.map_err(|e| EngineError::Docker {
            action: format!("build the archive of {file} for {container:?}"),
            detail: e.to_string(),
        })?;
        let options = UploadToContainerOptionsBuilder::new().path(dir).build();
        self.docker
            .upload_to_container(id, Some(options), bollard::body_full(archive.into()))
            .await
            .map_err(|e| self.error(format!("write {file} in {container:?}"), e))
    }

    /// The file at `path` in container `id` (of machine `key`), through Docker's archive API;
    /// `None` when it does not exist. Refuses a file larger than `max` bytes.
    /// With the file's modification time (seconds since the epoch).
    pub(crate) async fn read_small_file_with_mtime(
        &self,
        id: &str,
        key: &MachineKey,
        path: &str,
        max: usize,
    ) -> Result<Option<(Vec<u8>, i64)>, EngineError> {
        let container = container_name(key);
        let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
        let mut stream = self.docker.download_from_container(id, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => archive.extend_from_slice(&bytes),
                Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
                Err(e) => return Err(self.error(format!("read {path} in {container:?}"), e)),
            }
            // A tar of one file is the file and a few headers.
            if archive.len() > max + 8 * 1024 {
                return Err(EngineError::Docker {
                    action: format!("read {path} in {container:?}"),
                    detail: format!("it is larger than {max} bytes"),
                });
            }
        }
        let mut reader = tar::Archive::new(archive.as_slice());
        let unreadable = |e: std::io::Error| EngineError::Docker {
            action: format!("read {path} in {container:?}"),
            detail: format!("Docker sent an archive that cannot be read: {e}"),
        };
        let mut entries = reader.entries().map_err(unreadable)?;
        let Some(entry) = entries.next() else { return Ok(None) };
        let mut entry = entry.map_err(unreadable)?;
        let mtime = entry.header().mtime().ok().and_then(|m| i64::try_from(m).ok()).unwrap_or(0);
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut entry, max as u64), &mut content)
            .map_err(unreadable)?;
        Ok(Some((content, mtime)))
    }

    /// The last `lines` lines the container of machine `key` printed on the chosen streams
    /// (Docker's log of the container, bounded by the log options of [`container_body`]).
    pub(crate) async fn log_tail(
        &self,
        key: &MachineKey,
        lines: usize,
        stdout: bool,
        stderr: bool,
    ) -> Result<String, EngineError> {
        let id = self.require(key).await?;
        let options = LogsOptionsBuilder::default().stdout(stdout).stderr(stderr).tail(&lines.to_string()).build();
        let mut stream = self.docker.logs(&id, Some(options));
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(format!("read the log of {:?}", container_name(key)), e))?;
            text.extend_from_slice(&chunk.into_bytes());
        }
        Ok(crate::vm::console::last_lines(&String::from_utf8_lossy(&text), lines))
    }

    /// The last `lines` lines of the machine's system journal since its boot (systemd in a
    /// container logs there, not to the container's output): `journalctl` run in the machine,
    /// no shell.
    pub async fn journal_tail(&self, key: &MachineKey, lines: usize) -> Result<String, EngineError> {
        let count = lines.to_string();
        let argv = ["journalctl", "--no-pager", "--quiet", "--boot", "--lines", &count, "--output", "short-iso"];
        let out = self.exec_machine(key, &argv).await?;
        if out.exit_code != 0 {
            return Err(EngineError::Docker {
                action: format!("read the journal of {:?}", container_name(key)),
                detail: format!("journalctl exited with {}: {}", out.exit_code, out.stderr.trim()),
            });
        }
        Ok(crate::vm::console::last_lines(&out.stdout, lines))
    }

    /// Runs `argv` (no shell) as root inside the running machine and collects its output.
    /// Meant for readiness checks and tests (`systemctl is-system-running --wait`).
    pub async fn exec_machine(&self, key: &MachineKey, argv: &[&str]) -> Result<ExecOutput, EngineError> {
        let id = self.require(key).await?;
        let container = container_name(key);
        if argv.is_empty() {
            return Err(EngineError::InvalidSpec("exec needs a program to run".into()));
        }
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(argv.iter().map(|s| (*s).to_owned()).collect()),
            ..Default::default()
        };
        let exec = match self.docker.create_exec(&id, config).await {
            Ok(e) => e,
            Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => {
                return Err(EngineError::NotRunning { container })
            }
            Err(e) => return Err(self.error(format!("exec {argv:?} in {container:?}"), e)),
        };
        let started = self
            .docker
            .start_exec(&exec.id, None::<bollard::exec::StartExecOptions>)
            .await
            .map_err(|e| self.error(format!("exec {argv:?} in {container:?}"), e))?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| self.error(format!("read the output of {argv:?} in {container:?}"), e))? {
                    bollard::container::LogOutput::StdOut { message } => stdout.extend_from_slice(&message),
                    bollard::container::LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                    _ => {}
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| self.error(format!("read the exit code of {argv:?} in {container:?}"), e))?;
        Ok(ExecOutput {
            exit_code: inspected.exit_code.unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

/// One file of a machine's console log (Docker's `max-size`): the last lines are all anybody
/// reads (the panel's console view, a failed boot's message).
const CONSOLE_LOG_FILE_BYTES: &str = "1m";
/// Files of a machine's console log kept by Docker (`max-file`): at most 2 MiB per machine.
const CONSOLE_LOG_FILES: &str = "2";

fn is_port_conflict(message: &str) -> bool {
    message.contains("port is already allocated") || message.contains("address already in use")
}

/// The container definition of a machine (CONTRACT.md "Machines on the host").
/// The machine a container event is about, from the container's labels (Docker copies them
/// into the event's attributes).
fn event_machine(event: &bollard::models::EventMessage) -> Option<MachineKey> {
    let attributes = event.actor.as_ref()?.attributes.as_ref()?;
    MachineKey::parse(attributes.get(LABEL_NAMESPACE)?, attributes.get(LABEL_MACHINE)?).ok()
}

/// The host interface of a bridge network: its `com.docker.network.bridge.name` option, or the
/// name Docker gives it (`br-` and the first 12 digits of the network's id).
fn bridge_name(id: Option<&str>, options: Option<&HashMap<String, String>>) -> String {
    match options.and_then(|o| o.get("com.docker.network.bridge.name")) {
        Some(name) => name.clone(),
        None => format!("br-{}", id.unwrap_or_default().chars().take(12).collect::<String>()),
    }
}

fn container_body(spec: &MachineSpec, network: &str, instance: &str, cgroups: &CgroupLayout) -> ContainerCreateBody {
    let mut labels: HashMap<String, String> = spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.insert(LABEL_NAMESPACE.into(), spec.key.namespace.to_string());
    labels.insert(LABEL_MACHINE.into(), spec.key.name.to_string());
    labels.insert(LABEL_INSTANCE.into(), instance.to_owned());
    labels.insert(LABEL_ISOLATION.into(), ISOLATION.into());

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &spec.ports {
        let key = format!("{}/{}", port.container_port, port.protocol);
        exposed.push(key.clone());
        let binding = PortBinding {
            host_ip: port.address.map(|a| a.to_string()),
            // An empty host port asks Docker for an ephemeral one.
            host_port: Some(port.host_port.map(|p| p.to_string()).unwrap_or_default()),
        };
        bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(binding);
    }

    let memory = i64::try_from(spec.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
    let host_config = HostConfig {
        // Shares are a weight under contention, not a reservation: a machine gets its CPUs'
        // worth when everybody is busy and more when the host is idle ("competition mode").
        cpu_shares: Some(i64::from(spec.cpus) * 1024),
        nano_cpus: spec.cpu_cap.map(|c| (c * 1e9).round() as i64),
        memory: Some(memory),
        // Swap limit equal to memory: no swap on top, so the limit is the limit.
        memory_swap: Some(memory),
        port_bindings: Some(bindings),
        // Machines come back after a host reboot or dockerd restart; one stopped on purpose stays stopped.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        tmpfs: Some(HashMap::from([
            ("/run".to_owned(), String::new()),
            ("/run/lock".to_owned(), String::new()),
            ("/tmp".to_owned(), "rw,exec,nosuid,nodev,mode=1777".to_owned()),
        ])),
        // A fork bomb in one machine must not take the host's PIDs (none by default in Docker).
        pids_limit: spec.pids_limit.map(i64::from),
        // systemd sees the cgroup tree read-only and writes only below the machine's own
        // parent (see crate::cgroup): no write reaches the host's or another machine's cgroups.
        cgroup_parent: cgroups.parent(&spec.key),
        binds: Some(cgroups.binds(&spec.key)),
        network_mode: Some(network.to_owned()),
        privileged: Some(false),
        // Whatever PID 1 prints (a tenant can write to it: root inside may open /proc/1/fd/1)
        // lands in the host's Docker log files: bounded here, whatever the daemon's default,
        // so a machine cannot fill the host's disk through its console.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), CONSOLE_LOG_FILE_BYTES.to_owned()),
                ("max-file".to_owned(), CONSOLE_LOG_FILES.to_owned()),
            ])),
        }),
        ..Default::default()
    };
    let endpoint = EndpointSettings { aliases: Some(vec![spec.key.name.to_string()]), ..Default::default() };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname: Some(spec.key.name.to_string()),
        cmd: Some(vec!["/sbin/init".to_owned()]),
        // systemd reads $container to know it runs in a container (and skips what needs a kernel).
        env: Some(vec!["container=docker".to_owned()]),
        // Set here as well as in the image: any local systemd image can be used as a machine.
        stop_signal: Some(SYSTEMD_STOP_SIGNAL.to_owned()),
        labels: Some(labels),
        exposed_ports: if exposed.is_empty() { None } else { Some(exposed) },
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network.to_owned(), endpoint)])),
        }),
        ..Default::default()
    }
}

fn summary_state(state: Option<ContainerSummaryStateEnum>) -> MachineState {
    match state {
        Some(ContainerSummaryStateEnum::CREATED) => MachineState::Created,
        Some(ContainerSummaryStateEnum::RUNNING) => MachineState::Running,
        Some(ContainerSummaryStateEnum::RESTARTING) => MachineState::Restarting,
        Some(ContainerSummaryStateEnum::PAUSED) => MachineState::Paused,
        Some(ContainerSummaryStateEnum::EXITED) => MachineState::Stopped,
        Some(ContainerSummaryStateEnum::REMOVING) => MachineState::Removing,
        Some(ContainerSummaryStateEnum::DEAD) => MachineState::Dead,
        Some(ContainerSummaryStateEnum::STOPPING) => MachineState::Running,
        _ => MachineState::Unknown,
    }
}

fn inspect_state(state: Option<ContainerStateStatusEnum>) -> MachineState {
    match state {
        Some(ContainerStateStatusEnum::CREATED) => MachineState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => MachineState::Running,
        Some(ContainerStateStatusEnum::RESTARTING) => MachineState::Restarting,
        Some(ContainerStateStatusEnum::PAUSED) => MachineState::Paused,
        Some(ContainerStateStatusEnum::EXITED) => MachineState::Stopped,
        Some(ContainerStateStatusEnum::REMOVING) => MachineState::Removing,
        Some(ContainerStateStatusEnum::DEAD) => MachineState::Dead,
        Some(ContainerStateStatusEnum::STOPPING) => MachineState::Running,
        _ => MachineState::Unknown,
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn machine_from_summary(c: ContainerSummary) -> Option<MachineInfo> {
    let labels: BTreeMap<String, String> = c.labels.unwrap_or_default().into_iter().collect();
    // Labels of a container someone else labelled by hand may be anything: only a valid key
    // makes a machine.
    let key = MachineKey::parse(labels.get(LABEL_NAMESPACE)?, labels.get(LABEL_MACHINE)?).ok()?;
    let network = network_name(&key.namespace);
    let ip = c
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(&network))
        .and_then(|e| non_empty(e.ip_address));
    let mut ports: Vec<PublishedPort> = Vec::new();
    for p in c.ports.unwrap_or_default() {
        let Some(host_port) = p.public_port else { continue };
        let protocol = match p.typ {
            Some(PortSummaryTypeEnum::UDP) => Protocol::Udp,
            _ => Protocol::Tcp,
        };
        // Docker lists a binding once per address family (0.0.0.0 and ::); one is enough.
        if ports
            .iter()
            .any(|q| q.container_port == p.private_port && q.host_port == host_port && q.protocol == protocol)
        {
            continue;
        }
        ports.push(PublishedPort { container_port: p.private_port, host_port, protocol, host_ip: non_empty(p.ip) });
    }
    ports.sort_by_key(|p| (p.container_port, p.protocol, p.host_port));
    let container = c
        .names
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_else(|| container_name(&key));
    Some(MachineInfo {
        key,
        container,
        id: c.id.unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        state: summary_state(c.state),
        ip,
        ports,
        labels,
    })
}

fn parse_port_key(key: &str) -> Option<(u16, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some((port.parse().ok()?, protocol))
}

fn details_from_inspect(key: &MachineKey, c: bollard::models::ContainerInspectResponse) -> MachineDetails {
    let config = c.config.unwrap_or_default();
    let host = c.host_config.unwrap_or_default();
    let state = c.state.unwrap_or_default();
    let network = network_name(&key.namespace);
    let settings = c.network_settings.unwrap_or_default();
    let ip = settings.networks.as_ref().and_then(|n| n.get(&network)).and_then(|e| non_empty(e.ip_address.clone()));

    let mut ports = Vec::new();
    for (key, bindings) in settings.ports.unwrap_or_default() {
        let Some((container_port, protocol)) = parse_port_key(&key) else { continue };
        for b in bindings.unwrap_or_default() {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok()) else { continue };
            if !ports.iter().any(|q: &PublishedPort| {
                q.container_port == container_port && q.host_port == host_port && q.protocol == protocol
            }) {
                ports.push(PublishedPort { container_port, host_port, protocol, host_ip: non_empty(b.host_ip) });
            }
        }
    }
    ports.sort_by_key(|p| (p.container_port, p.protocol, p.host_port));

    let mut configured_ports = Vec::new();
    for (key, bindings) in host.port_bindings.unwrap_or_default() {
        let Some((container_port, protocol)) = parse_port_key(&key) else { continue };
        for b in bindings.unwrap_or_default() {
            configured_ports.push(PortMapping {
                container_port,
                host_port: b.host_port.as_deref().and_then(|p| p.parse().ok()).filter(|p| *p != 0),
                protocol,
                address: b.host_ip.as_deref().and_then(|a| a.parse().ok()),
            });
        }
    }
    configured_ports.sort_by_key(|p| (p.container_port, p.protocol, p.host_port));

    let labels: BTreeMap<String, String> = config.labels.unwrap_or_default().into_iter().collect();
    let shares = host.cpu_shares.unwrap_or(0);
    let machine_state = inspect_state(state.status);
    MachineDetails {
        info: MachineInfo {
            key: key.clone(),
            container: c.name.map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_default(),
            id: c.id.unwrap_or_default(),
            image: config.image.unwrap_or_default(),
            state: machine_state,
            ip,
            ports,
            labels,
        },
        hostname: config.hostname.unwrap_or_default(),
        // Shares of 0 mean Docker's default (1024), i.e. one CPU's weight.
        cpus: u32::try_from((shares / 1024).max(1)).unwrap_or(u32::MAX),
        cpu_cap: host.nano_cpus.filter(|n| *n > 0).map(|n| n as f64 / 1e9),
        memory_mb: u64::try_from(host.memory.unwrap_or(0) / (1024 * 1024)).unwrap_or(0),
        configured_ports,
        exit_code: if machine_state == MachineState::Stopped { state.exit_code } else { None },
        pid: state.pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0),
        pids_limit: host.pids_limit.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0),
        error: non_empty(state.error),
        started_at: state
            .started_at
            .as_deref()
            .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
            .map(time::OffsetDateTime::unix_timestamp)
            // Docker says 0001-01-01 for a container never started.
            .filter(|t| *t > 0),
    }
}

/// The tar archive (in memory) that `write_authorized_keys` extracts into `/root`.
fn authorized_keys_tar(content: &str) -> std::io::Result<Vec<u8>> {
    let mtime = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut builder = tar::Builder::new(Vec::new());

    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_path(".ssh/")?;
    dir.set_mode(0o700);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_size(0);
    dir.set_mtime(mtime);
    dir.set_cksum();
    builder.append(&dir, std::io::empty())?;

    append_private_file(&mut builder, ".ssh/authorized_keys", content, mtime)?;
    builder.into_inner()
}

/// Appends `content` to `builder` as a regular file at `path`, mode 0600, owned by root.
pub(crate) fn append_private_file(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    content: &str,
    mtime: u64,
) -> std::io::Result<()> {
    let mut file = tar::Header::new_ustar();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_path(path)?;
    file.set_mode(0o600);
    file.set_uid(0);
    file.set_gid(0);
    file.set_size(content.len() as u64);
    file.set_mtime(mtime);
    file.set_cksum();
    builder.append(&file, content.as_bytes())
}

/// Waits until something on `127.0.0.1:host_port` sends an SSH-2.0 banner and returns that
/// line. docker-proxy accepts connections before sshd listens and then closes them, so
/// "connected" is not enough: only the banner proves sshd is up.
pub async fn wait_ssh_ready(host_port: u16, timeout: Duration) -> Result<String, EngineError> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(3), read_banner(host_port)).await;
        let last = match attempt {
            Ok(Ok(banner)) => return Ok(banner),
            Ok(Err(e)) => e,
            Err(_) => "no banner within 3 s".to_owned(),
        };
        if Instant::now() >= deadline {
            return Err(EngineError::SshNotReady { port: host_port, waited: start.elapsed(), detail: last });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_banner(host_port: u16) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", host_port)).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    // RFC 4253: the server may send other lines before the version line; it ends in CRLF
    // and is at most 255 bytes.
    while buf.len() < 4096 {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before an SSH banner (sshd not listening yet)".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        for line in buf.split(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(line);
            if line.starts_with("SSH-2.0") {
                return Ok(line.trim_end().to_owned());
            }
        }
    }
    Err("no SSH-2.0 line in the first 4096 bytes".into())
}

#[async_trait]
impl Engine for DockerEngine {
    async fn ping(&self) -> Result<(), EngineError> {
        DockerEngine::ping(self).await
    }
    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        DockerEngine::image_exists(self, image).await
    }
    async fn ensure_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        DockerEngine::ensure_network(self, namespace).await
    }
    async fn remove_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        DockerEngine::remove_network(self, namespace).await
    }
    async fn create_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        DockerEngine::create_machine(self, spec).await
    }
    async fn start_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        DockerEngine::start_machine(self, key).await
    }
    async fn create_and_start_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        DockerEngine::create_and_start_machine(self, spec).await
    }
    async fn stop_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        DockerEngine::stop_machine(self, key, timeout).await
    }
    async fn restart_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        DockerEngine::restart_machine(self, key, timeout).await
    }
    async fn remove_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        DockerEngine::remove_machine(self, key).await
    }
    async fn list_machines(&self, namespace: Option<&NamespaceName>) -> Result<Vec<MachineInfo>, EngineError> {
        DockerEngine::list_machines(self, namespace).await
    }
    async fn inspect_machine(&self, key: &MachineKey) -> Result<Option<MachineDetails>, EngineError> {
        DockerEngine::inspect_machine(self, key).await
    }
    async fn machine_events(&self) -> Result<Option<MachineEvents>, EngineError> {
        DockerEngine::machine_events(self).map(Some)
    }
    async fn write_authorized_keys(&self, key: &MachineKey, content: &str) -> Result<(), EngineError> {
        DockerEngine::write_authorized_keys(self, key, content).await
    }
    async fn write_authorized_keys_to(&self, inspected: &MachineDetails, content: &str) -> Result<(), EngineError> {
        DockerEngine::write_authorized_keys_to(self, inspected, content).await
    }
    async fn console(&self, key: &MachineKey, lines: usize) -> Result<String, EngineError> {
        DockerEngine::journal_tail(self, key, lines).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn container_body_follows_the_contract() {
        let key = MachineKey::parse("team1", "node0").expect("key");
        let mut spec = MachineSpec::new(key.clone(), "flvpc/debian:12");
        spec.pids_limit = Some(512);
        spec.cpus = 2;
        spec.cpu_cap = Some(1.5);
        spec.memory_mb = 512;
        spec.ports =
            vec![PortMapping::tcp(22, Some(2222)).on(IpAddr::V4(Ipv4Addr::LOCALHOST)), PortMapping::tcp(80, None)];
        let cgroups = CgroupLayout::V1 {
            mounts: vec![
                crate::cgroup::CgroupMount { path: "/sys/fs/cgroup/memory".into(), delegated: false },
                crate::cgroup::CgroupMount { path: "/sys/fs/cgroup/systemd".into(), delegated: true },
            ],
        };
        let body = container_body(&spec, "flvpc-team1", "inst-1", &cgroups);
        assert_eq!(body.hostname.as_deref(), Some("node0"));
        assert_eq!(body.cmd, Some(vec!["/sbin/init".to_owned()]));
        let labels = body.labels.as_ref().expect("labels");
        assert_eq!(labels.get(LABEL_NAMESPACE).map(String::as_str), Some("team1"));
        assert_eq!(labels.get(LABEL_MACHINE).map(String::as_str), Some("node0"));
        assert_eq!(labels.get(LABEL_INSTANCE).map(String::as_str), Some("inst-1"));
        assert_eq!(labels.get(LABEL_ISOLATION).map(String::as_str), Some(ISOLATION));
        let host = body.host_config.as_ref().expect("host config");
        assert_eq!(host.privileged, Some(false));
        let logs = host.log_config.as_ref().expect("a bounded console log");
        assert_eq!(logs.typ.as_deref(), Some("json-file"));
        let log_options = logs.config.as_ref().expect("log options");
        assert_eq!(log_options.get("max-size").map(String::as_str), Some("1m"));
        assert_eq!(log_options.get("max-file").map(String::as_str), Some("2"));
        assert_eq!(host.cpu_shares, Some(2048));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(512 * 1024 * 1024));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.network_mode.as_deref(), Some("flvpc-team1"));
        assert_eq!(host.pids_limit, Some(512));
        assert_eq!(host.cgroup_parent, cgroups.parent(&key));
        assert_eq!(host.binds.as_ref(), Some(&cgroups.binds(&key)));
        assert!(host.cap_add.is_none(), "no capability beyond Docker's defaults");
        assert_eq!(host.restart_policy.as_ref().and_then(|r| r.name), Some(RestartPolicyNameEnum::UNLESS_STOPPED));
        let tmpfs = host.tmpfs.as_ref().expect("tmpfs");
        for path in ["/run", "/run/lock", "/tmp"] {
            assert!(tmpfs.contains_key(path), "{path}");
        }
        let bindings = host.port_bindings.as_ref().expect("ports");
        let ssh = bindings.get("22/tcp").and_then(|b| b.as_ref()).expect("22/tcp");
        assert_eq!(ssh[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(ssh[0].host_port.as_deref(), Some("2222"));
        let web = bindings.get("80/tcp").and_then(|b| b.as_ref()).expect("80/tcp");
        assert_eq!(web[0].host_port.as_deref(), Some(""));
        let endpoints = body.networking_config.and_then(|n| n.endpoints_config).expect("endpoints");
        assert_eq!(endpoints.get("flvpc-team1").and_then(|e| e.aliases.clone()), Some(vec!["node0".to_owned()]));
    }

    #[test]
    fn authorized_keys_archive_has_root_owned_private_modes() {
        let archive = authorized_keys_tar("ssh-ed25519 AAAA test\n").expect("tar");
        let mut reader = tar::Archive::new(archive.as_slice());
        let mut seen = Vec::new();
        for entry in reader.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let header = entry.header();
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let (mode, uid, gid) =
                (header.mode().expect("mode"), header.uid().expect("uid"), header.gid().expect("gid"));
            let mut body = String::new();
            entry.read_to_string(&mut body).expect("body");
            seen.push((path, mode, uid, gid, body));
        }
        assert_eq!(seen[0], (".ssh/".to_owned(), 0o700, 0, 0, String::new()));
        assert_eq!(seen[1], (".ssh/authorized_keys".to_owned(), 0o600, 0, 0, "ssh-ed25519 AAAA test\n".to_owned()));
    }

    #[test]
    fn summaries_without_both_labels_are_not_machines() {
        let labelled = |labels: &[(&str, &str)]| ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/node0.team1".into()]),
            labels: Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            state: Some(ContainerSummaryStateEnum::EXITED),
            ..Default::default()
        };
        assert!(machine_from_summary(labelled(&[])).is_none());
        assert!(machine_from_summary(labelled(&[(LABEL_NAMESPACE, "team1")])).is_none());
        assert!(machine_from_summary(labelled(&[(LABEL_NAMESPACE, "Bad NS"), (LABEL_MACHINE, "node0")])).is_none());
        let m =
            machine_from_summary(labelled(&[(LABEL_NAMESPACE, "team1"), (LABEL_MACHINE, "node0")])).expect("a machine");
        assert_eq!(m.key, MachineKey::parse("team1", "node0").expect("key"));
        assert_eq!(m.container, "node0.team1");
        assert_eq!(m.state, MachineState::Stopped);
        assert!(m.ip.is_none() && m.ports.is_empty());
    }

    #[test]
    fn port_keys() {
        assert_eq!(parse_port_key("22/tcp"), Some((22, Protocol::Tcp)));
        assert_eq!(parse_port_key("53/udp"), Some((53, Protocol::Udp)));
        assert_eq!(parse_port_key("1/sctp"), None);
        assert_eq!(parse_port_key("x/tcp"), None);
    }

    #[tokio::test]
    async fn banner_reader_skips_a_closed_proxy_and_reads_the_banner() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // First connection: accepted and closed, like docker-proxy before sshd listens.
            if let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let banner = wait_ssh_ready(port, Duration::from_secs(5)).await.expect("banner");
        assert_eq!(banner, "SSH-2.0-OpenSSH_9.2p1 Debian-2");
    }

    #[tokio::test]
    async fn banner_wait_times_out_with_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let err = wait_ssh_ready(port, Duration::from_millis(300)).await.expect_err("nothing listens");
        assert!(matches!(err, EngineError::SshNotReady { .. }), "{err}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
    }

    #[tokio::test]
    async fn a_missing_socket_says_dockerd_is_not_running() {
        let err = DockerEngine::connect_at("/nonexistent/docker.sock").await.expect_err("no daemon");
        let text = err.to_string();
        assert!(text.starts_with("Docker engine is not reachable at /nonexistent/docker.sock"), "{text}");
        assert!(text.contains("is dockerd running?"), "{text}");
        assert!(err.is_transient());
    }
}
