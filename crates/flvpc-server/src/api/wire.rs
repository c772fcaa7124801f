//! JSON shapes of the REST API (docs/api.md). Wire types live here, at the
//! boundary; the model and store know nothing of them.

use flvpc_store::{ApiToken, AuditEntry, Member, Namespace, SshKey, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::core::view::rfc3339;

/// `POST /api/v1/auth/login`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The login.
    pub login: String,
    /// The password.
    pub password: String,
}

/// A bearer token for the API.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// A namespace and the caller's role in it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceRole {
    /// Namespace name.
    pub name: String,
    /// `admin` or `user` (the superadmin is `admin` everywhere).
    #[schema(value_type = super::rules::Role)]
    pub role: String,
}

/// `GET /api/v1/me`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// Your login.
    pub login: String,
    /// Whether you are the superadmin.
    pub superadmin: bool,
    /// Your memberships.
    pub namespaces: Vec<NamespaceRole>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The new user's login (the SSH user name at the gateway).
    #[schema(value_type = super::rules::Login)]
    pub login: String,
    /// At least 8 characters, at most 1024 bytes, no control characters.
    #[schema(value_type = super::rules::NewPassword)]
    pub password: String,
}

/// A user as the superadmin sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserOut {
    /// Login.
    pub login: String,
    /// Whether this is the superadmin.
    pub superadmin: bool,
    /// When the account was made (RFC 3339).
    pub created_at: String,
    /// Memberships.
    pub namespaces: Vec<NamespaceRole>,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            login: u.login.to_string(),
            superadmin: u.superadmin,
            created_at: rfc3339(u.created_at),
            namespaces: u
                .namespaces
                .into_iter()
                .map(|(n, r)| NamespaceRole { name: n.to_string(), role: r.to_string() })
                .collect(),
        }
    }
}

/// `PUT /api/v1/users/{login}/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The new password.
    #[schema(value_type = super::rules::NewPassword)]
    pub password: String,
    /// Your current password (not needed when the superadmin resets someone else's).
    pub current_password: Option<String>,
}

/// `POST /api/v1/namespaces`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNamespace {
    /// The namespace's name (part of its machines' host names).
    #[schema(value_type = super::rules::NamespaceName)]
    pub name: String,
    /// Limits; absent or null fields are unlimited.
    pub quota: Option<QuotaBody>,
}

/// A namespace's quota; null means unlimited (`PUT /api/v1/namespaces/{ns}/quota`). Amounts are
/// whole numbers written without a decimal point (`2`, not `2.0`); amounts past 2^63 - 1 count as unlimited.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    /// Machines.
    #[serde(default)]
    #[schema(maximum = 18446744073709551615_u64)]
    pub machines: Option<u64>,
    /// CPUs (CPU shares are a weight, so this bounds what is promised, not what is used).
    #[serde(default)]
    #[schema(maximum = 18446744073709551615_u64)]
    pub cpus: Option<u64>,
    /// Memory in MB.
    #[serde(default)]
    #[schema(maximum = 18446744073709551615_u64)]
    pub memory_mb: Option<u64>,
    /// Disk in GB (recorded and counted; see capacity for whether the storage driver enforces it).
    #[serde(default)]
    #[schema(maximum = 18446744073709551615_u64)]
    pub disk_gb: Option<u64>,
    /// Published host ports.
    #[serde(default)]
    #[schema(maximum = 18446744073709551615_u64)]
    pub host_ports: Option<u64>,
}

impl From<QuotaBody> for flvpc_model::quota::Quota {
    fn from(q: QuotaBody) -> Self {
        Self {
            machines: q.machines,
            cpus: q.cpus,
            memory_mb: q.memory_mb,
            disk_gb: q.disk_gb,
            host_ports: q.host_ports,
        }
    }
}

impl From<flvpc_model::quota::Quota> for QuotaBody {
    fn from(q: flvpc_model::quota::Quota) -> Self {
        Self {
            machines: q.machines,
            cpus: q.cpus,
            memory_mb: q.memory_mb,
            disk_gb: q.disk_gb,
            host_ports: q.host_ports,
        }
    }
}

/// Amounts of resources.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct ResourcesOut {
    /// Machines.
    pub machines: u64,
    /// CPUs.
    pub cpus: u64,
    /// Memory in MB.
    pub memory_mb: u64,
    /// Disk in GB.
    pub disk_gb: u64,
    /// Host ports.
    pub host_ports: u64,
}

impl From<flvpc_model::quota::Resources> for ResourcesOut {
    fn from(r: flvpc_model::quota::Resources) -> Self {
        Self {
            machines: r.machines,
            cpus: r.cpus,
            memory_mb: r.memory_mb,
            disk_gb: r.disk_gb,
            host_ports: r.host_ports,
        }
    }
}

/// One namespace in the capacity report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceCapacity {
    /// Name.
    pub name: String,
    /// Its quota (null fields: unlimited).
    pub quota: QuotaBody,
    /// Every machine it has, running or not.
    pub allocated: ResourcesOut,
    /// Machines meant to run.
    pub running: ResourcesOut,
    /// Used right now (latest samples).
    pub used: UsedOut,
}

/// What running machines use right now (the latest samples).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct UsedOut {
    /// CPUs busy (sum of CPU percent / 100).
    pub cpus: f64,
    /// Memory in MB.
    pub memory_mb: f64,
}

/// The host's capacity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HostOut {
    /// CPUs.
    pub cpus: u64,
    /// Memory in MB.
    pub memory_mb: u64,
    /// Size of the file system holding Docker's data, in GB.
    pub disk_gb: u64,
}

/// Host-wide overcommit caps (null: no cap) and the effective ratios now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OvercommitOut {
    /// Cap on running CPUs as a multiple of the host's.
    pub cpu: Option<f64>,
    /// Cap on running memory as a multiple of the host's.
    pub memory: Option<f64>,
    /// Running CPUs / host CPUs.
    pub effective_cpu: f64,
    /// Running memory / host memory.
    pub effective_memory: f64,
}

/// `GET /api/v1/capacity`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CapacityOut {
    /// The host.
    pub host: HostOut,
    /// Caps and ratios.
    pub overcommit: OvercommitOut,
    /// All namespaces together: every machine.
    pub allocated: ResourcesOut,
    /// All namespaces together: machines meant to run.
    pub running: ResourcesOut,
    /// All namespaces together: used right now.
    pub used: UsedOut,
    /// Whether disk sizes are enforced: Docker's overlay2 on this host cannot limit a container's disk.
    /// (A microVM's disk is its own and enforced: see each machine's `disk_enforced`.)
    pub disk_enforced: bool,
    /// Whether microVMs can be made here, and with which accelerator.
    pub microvm: MicroVmOut,
    /// Per namespace.
    pub namespaces: Vec<NamespaceCapacity>,
}

/// Whether microVMs can be made on this server.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MicroVmOut {
    /// The microVM engine is there (VM artifacts and runner image found at start).
    pub available: bool,
    /// `kvm` or `tcg` (software emulation, much slower), probed at start by booting a kernel.
    pub accelerator: Option<String>,
    /// What the probe found, or why microVMs are not available and how to make them so.
    pub detail: String,
}

/// A namespace.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceOut {
    /// Name.
    pub name: String,
    /// The caller's role here.
    #[schema(value_type = super::rules::Role)]
    pub role: String,
    /// Number of members.
    pub members: i64,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

impl NamespaceOut {
    /// The wire form of `ns` seen by someone with `role`.
    pub fn new(ns: Namespace, role: flvpc_model::Role) -> Self {
        Self {
            name: ns.name.to_string(),
            role: role.to_string(),
            members: ns.members,
            created_at: rfc3339(ns.created_at),
        }
    }
}

/// A member of a namespace.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberOut {
    /// Login.
    pub login: String,
    /// `admin` or `user`.
    #[schema(value_type = super::rules::Role)]
    pub role: String,
}

impl From<Member> for MemberOut {
    fn from(m: Member) -> Self {
        Self { login: m.login.to_string(), role: m.role.to_string() }
    }
}

/// `PUT /api/v1/namespaces/{ns}/members/{login}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// `admin` or `user`.
    #[schema(value_type = super::rules::Role)]
    pub role: String,
}

/// `POST /api/v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Unique among your keys.
    #[schema(value_type = super::rules::KeyName)]
    pub name: String,
    /// OpenSSH format, e.g. the contents of `~/.ssh/id_ed25519.pub`: one line `TYPE BASE64 [COMMENT]`
    /// with a real key of type ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa (2048 to 16384 bits),
    /// no authorized_keys options.
    #[schema(min_length = 1, max_length = 16384)]
    pub public_key: String,
}

/// One of your SSH keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyOut {
    /// Name.
    pub name: String,
    /// The key line.
    pub public_key: String,
    /// `SHA256:…`.
    pub fingerprint: String,
    /// When it was added (RFC 3339).
    pub created_at: String,
}

impl From<SshKey> for KeyOut {
    fn from(k: SshKey) -> Self {
        Self {
            name: k.name.to_string(),
            public_key: k.public_key,
            fingerprint: k.fingerprint,
            created_at: rfc3339(k.created_at),
        }
    }
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Unique among your tokens.
    #[schema(value_type = super::rules::TokenName)]
    pub name: String,
}

/// A token just made: the secret is shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// Name.
    pub name: String,
    /// The secret: send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// One of your API tokens (never the secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenOut {
    /// Name.
    pub name: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it was last used (RFC 3339), if ever.
    pub last_used_at: Option<String>,
}

impl From<ApiToken> for TokenOut {
    fn from(t: ApiToken) -> Self {
        Self { name: t.name.to_string(), created_at: rfc3339(t.created_at), last_used_at: t.last_used_at.map(rfc3339) }
    }
}

/// One audit record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditOut {
    /// Increasing id (use as `before` to page back).
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: Option<String>,
    /// What, e.g. `user.create`.
    pub action: String,
    /// To what.
    pub target: String,
    /// In which namespace.
    pub namespace: Option<String>,
    /// From which address.
    pub source: Option<String>,
    /// `ok` or the error code.
    pub outcome: String,
    /// Extra detail.
    pub detail: Option<String>,
}

impl From<AuditEntry> for AuditOut {
    fn from(a: AuditEntry) -> Self {
        Self {
            id: a.id,
            at: rfc3339(a.at),
            actor: a.actor,
            action: a.action,
            target: a.target,
            namespace: a.namespace,
            source: a.source,
            outcome: a.outcome,
            detail: a.detail,
        }
    }
}

/// The error body of every failed request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// The result of saving a cluster spec.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SpecSaved {
    /// The machines the spec describes.
    pub machines: Vec<String>,
    /// footloose features flvpc accepts but does not honour.
    pub warnings: Vec<String>,
    /// The spec as stored (canonical YAML).
    pub yaml: String,
}

/// A long-running change was started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OperationStarted {
    /// Its id: poll `GET /api/v1/operations/{id}`.
    pub operation: String,
}

/// Progress counts of an operation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Machines done.
    pub done: i64,
    /// Machines in all.
    pub total: i64,
}

/// An operation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OperationOut {
    /// Id.
    pub id: String,
    /// e.g. `cluster.create`, `machine.restart`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// pending, running, succeeded, failed.
    pub state: String,
    /// Progress.
    pub progress: Progress,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Machines it concerns.
    pub machines: Vec<String>,
    /// Who started it.
    pub created_by: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: Option<String>,
}

impl From<flvpc_store::Operation> for OperationOut {
    fn from(op: flvpc_store::Operation) -> Self {
        Self {
            id: op.id,
            kind: op.kind,
            namespace: op.namespace.to_string(),
            state: op.state.as_str().to_owned(),
            progress: Progress { done: op.done, total: op.total },
            error: op.error,
            machines: op.targets.iter().map(ToString::to_string).collect(),
            created_by: op.created_by,
            created_at: rfc3339(op.created_at),
            finished_at: op.finished_at.map(rfc3339),
        }
    }
}

/// A published port.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PortOut {
    /// Inside the machine.
    pub container_port: u16,
    /// On the host.
    pub host_port: u16,
    /// tcp or udp.
    pub protocol: String,
}

/// Ready-to-copy SSH commands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MachineSsh {
    /// Through the flvpc SSH gateway.
    pub jump: String,
    /// Through the machine's own host port for 22, if it has one.
    pub direct: Option<String>,
}

/// A machine.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MachineOut {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Container name `<name>.<ns>`.
    pub container: String,
    /// not_created, creating (a microVM: until its guest answers SSH), running, stopped, error,
    /// unknown (its host does not answer: not stopped, not recreated elsewhere; adopted when the
    /// host is back), deleting (while it is removed).
    pub state: String,
    /// What it should be: running, stopped, deleted.
    pub desired: String,
    /// Address on the namespace network.
    pub ip: Option<String>,
    /// Last error (a microVM that did not boot: why, with its console's last lines).
    pub error: Option<String>,
    /// Image.
    pub image: String,
    /// The spec's backend: docker or microvm (`ignite` in a spec is microvm).
    pub backend: String,
    /// The host the machine lives on (`local`: this server's host).
    pub host: String,
    /// The kind of engine that runs it on that host: `container` or `microvm`.
    pub engine: String,
    /// CPUs (CPU shares: a weight, overcommit allowed).
    pub cpus: u32,
    /// Hard CPU cap (`ignite.cpuCap`), if any.
    pub cpu_cap: Option<f64>,
    /// Memory limit.
    pub memory_mb: u64,
    /// Disk size asked for.
    pub disk_gb: u64,
    /// Whether `disk_gb` is a hard limit: a microVM's own disk is; a container's is not (Docker's
    /// overlay2 on this host cannot limit it).
    pub disk_enforced: bool,
    /// Published ports.
    pub ports: Vec<PortOut>,
    /// SSH commands.
    pub ssh: MachineSsh,
    /// Latest CPU use in percent of one CPU, while running.
    pub cpu_percent: Option<f64>,
    /// Latest memory use in MB, while running.
    pub memory_used_mb: Option<f64>,
    /// Processes the kernel killed because the machine hit its memory limit (this container's life).
    pub oom_kills: u64,
}

impl From<crate::core::view::MachineView> for MachineOut {
    fn from(m: crate::core::view::MachineView) -> Self {
        Self {
            name: m.name,
            namespace: m.namespace,
            container: m.container,
            host: m.host,
            engine: m.engine,
            state: m.state,
            desired: m.desired.as_str().to_owned(),
            ip: m.ip,
            error: m.error,
            image: m.image,
            backend: m.backend,
            cpus: m.cpus,
            cpu_cap: m.cpu_cap,
            memory_mb: m.memory_mb,
            disk_gb: m.disk_gb,
            disk_enforced: m.disk_enforced,
            ports: m
                .ports
                .into_iter()
                .map(|p| PortOut { container_port: p.container_port, host_port: p.host_port, protocol: p.protocol })
                .collect(),
            ssh: MachineSsh { jump: m.ssh.jump, direct: m.ssh.direct },
            cpu_percent: m.cpu_percent,
            memory_used_mb: m.memory_used_mb,
            oom_kills: m.oom_kills,
        }
    }
}

/// `GET /api/v1/namespaces/{ns}/machines/{name}/console`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsoleOut {
    /// The machine.
    pub machine: String,
    /// The kind of engine that runs it: `container` (the text is its system journal) or
    /// `microvm` (its serial console).
    pub engine: String,
    /// The last lines, oldest first, joined with newlines (at most 256 KiB: the newest are kept).
    /// The machine's own output: show it as text, never as markup.
    pub text: String,
}

/// `GET /api/v1/namespaces/{ns}/machines/{name}/metrics`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsOut {
    /// Samples of the last hour, oldest first.
    pub points: Vec<crate::usage::UsagePoint>,
}

/// A host that runs machines (superadmin): `local` is the server's own; the others were added.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostEntryOut {
    /// Its name (`local`: this server's host).
    pub name: String,
    /// Its Docker engine: `unix:///path` or `tcp://IP:PORT`.
    pub engine: String,
    /// Where its published ports are reached (`null` for `local` without `--host-address`).
    pub address: Option<String>,
    /// `active` (takes new machines) or `draining` (keeps what it runs, takes nothing new).
    pub state: String,
    /// Whether its engine answered at the last check (every 5 s).
    pub reachable: bool,
    /// Why not, or a problem with its place in the swarm.
    pub detail: Option<String>,
    /// The engine's version, when it answered.
    pub engine_version: Option<String>,
    /// CPUs the engine sees.
    pub cpus: Option<u32>,
    /// Memory the engine sees, in MiB.
    pub memory_mb: Option<u64>,
    /// Machine records placed there (any desired state).
    pub machines: u64,
    /// CPUs promised to its machines that are not being deleted.
    pub allocated_cpus: u64,
    /// Memory promised to them, in MiB.
    pub allocated_memory_mb: u64,
    /// Whether microVMs can be made there (the local host only, when the microVM engine runs).
    pub microvm: bool,
    /// The microVM accelerator there (`kvm`, `tcg`), when it has microVMs.
    pub accelerator: Option<String>,
}

/// A host to add.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewHostBody {
    /// Its name: lowercase letters, digits and '-', starting with a letter, at most 31 characters
    /// (not `local`).
    pub name: String,
    /// Its Docker engine: `unix:///absolute/path` or `tcp://IP:PORT` (TLS files required beyond
    /// loopback: never plain TCP across a network).
    pub engine: String,
    /// The IP address people and the gateway reach its published ports at.
    pub address: String,
    /// For a tcp engine: the CA of the engine's certificate (a PEM file on the server).
    #[serde(default)]
    pub tls_ca: Option<String>,
    /// flvpc's client certificate (PEM file on the server).
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// Its key (PEM file on the server).
    #[serde(default)]
    pub tls_key: Option<String>,
}

/// A host's new state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostStateBody {
    /// `active` or `draining`.
    pub state: String,
}

/// Where a stopped machine goes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveBody {
    /// The host's name.
    pub host: String,
}
