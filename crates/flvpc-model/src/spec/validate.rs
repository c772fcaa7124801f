//! Validation of a [`ClusterSpec`] and its expansion into concrete machines.
//!
//! Every problem is collected (not just the first) and names its path. Footloose features flvpc
//! does not honour are accepted with a warning, so that an existing footloose.yaml still loads.

use super::error::{at, join, shown, Problems, Warnings};
use super::image::check_reference;
use super::size::{parse_disk_gb, parse_memory_mb};
use super::{ClusterSpec, IgniteSpec, MachineGroup, MachineSpec, PortMappingSpec, SpecError};
use crate::{HostName, NamespaceName};
use serde_json::Value;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

/// Image used when a spec names none. footloose requires an image, but its `config create`
/// always writes one; flvpc picks its own systemd+sshd image instead of refusing.
pub const DEFAULT_IMAGE: &str = "flvpc/debian:12";
/// CPUs when `ignite.cpus` is absent or 0 (the footloose fork's default).
pub const DEFAULT_CPUS: u32 = 2;
/// Memory in MiB when `ignite.memory` is absent (the fork's `1GB`).
pub const DEFAULT_MEMORY_MB: u64 = 1024;
/// Disk in GiB when `ignite.diskSize` is absent (the fork's `4GB`).
pub const DEFAULT_DISK_GB: u64 = 4;
/// Most CPUs one machine may ask for.
pub const MAX_CPUS: u32 = 256;
/// Least memory one machine may have, in MiB: below this no systemd boots.
pub const MIN_MEMORY_MB: u64 = 64;
/// Most memory one machine may ask for, in MiB (1 TiB).
pub const MAX_MEMORY_MB: u64 = 1024 * 1024;
/// Most disk one machine may ask for, in GiB.
pub const MAX_DISK_GB: u64 = 16384;
/// Largest `count` of one group.
pub const MAX_MACHINES_PER_GROUP: u64 = 256;
/// Most machines one spec (one namespace) may ask for.
pub const MAX_MACHINES: usize = 1000;
/// Most `portMappings` entries per machine.
pub const MAX_PORT_MAPPINGS: usize = 64;
/// `<namespace>-<name>` is a Docker container name and a DNS label.
const MAX_CONTAINER_NAME: usize = 63;

/// How a machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A systemd container (footloose's `docker`, the default).
    Docker,
    /// A virtual machine (footloose's `ignite`, accepted as a synonym).
    MicroVm,
}

impl Backend {
    /// The canonical spelling: `docker` or `microvm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Docker => "docker",
            Backend::MicroVm => "microvm",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transport protocol of a published port: the one type from the spec down to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    /// TCP (the default, as in Docker and footloose).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
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

/// A port to publish for one concrete machine: the one type from the spec down to the engine.
///
/// In a validated spec, `None` fields are for the server to fill (a host port from its range,
/// its `--publish-address`), and the reconciler always hands the engine both. An engine given
/// `None` by a caller using it directly (a test) lets its runtime pick a port, or binds every
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// Port inside the machine, 1..=65535.
    pub container_port: u16,
    /// Host port, already offset for this machine; `None` means the server allocates one.
    pub host_port: Option<u16>,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// The host address to publish on, as the spec's `address:` asks; `None`: the server's
    /// `--publish-address`. Whether the server allows it is [`super::PublishRules`]' decision.
    pub address: Option<IpAddr>,
}

impl PortMapping {
    /// A TCP mapping of `container_port` to `host_port` (`None`: any free one) on every address.
    pub fn tcp(container_port: u16, host_port: Option<u16>) -> Self {
        Self { container_port, host_port, protocol: Protocol::Tcp, address: None }
    }

    /// The same mapping, bound to `address` only.
    pub fn on(mut self, address: IpAddr) -> Self {
        self.address = Some(address);
        self
    }
}

/// One concrete machine the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMachine {
    /// Hostname: the group's `name` with `%d` replaced by `index`. A DNS label; the container is
    /// `<namespace>-<name>`, at most 63 characters.
    pub name: String,
    /// Position of the group in `machines:` (0-based).
    pub group: usize,
    /// Position of the machine within its group (0-based), the value of `%d`.
    pub index: usize,
    /// Docker image reference.
    pub image: String,
    /// How the machine runs.
    pub backend: Backend,
    /// Virtual CPUs, 1..=256 (whole CPUs, as ignite takes them). Docker machines get them as
    /// CPU shares: a weight under contention, not a limit.
    pub cpus: u32,
    /// A hard CPU cap in thousandths of a CPU (`ignite.cpuCap: 1.5` is 1500); `None`: no cap.
    pub cpu_cap_milli: Option<u32>,
    /// Memory in MiB (the spec's `MB` and `GB` are binary units, as in ignite and Docker).
    pub memory_mb: u64,
    /// Disk size in GiB.
    pub disk_gb: u64,
    /// Kernel image for the microvm backend; `None` for docker or when the spec names none.
    pub kernel: Option<String>,
    /// Published ports, in spec order.
    pub ports: Vec<PortMapping>,
    /// The host the spec pins the machine to (`spec.host`); `None`: flvpc places it.
    pub host: Option<HostName>,
}

/// A valid spec, expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Every machine, in file order (group by group, index by index).
    pub machines: Vec<DesiredMachine>,
    /// Human-readable notes about accepted but ignored settings, each starting with its path.
    pub warnings: Vec<String>,
}

impl ClusterSpec {
    /// Checks the whole spec for `namespace` and expands its groups into machines.
    ///
    /// Host ports follow footloose: the base `hostPort` of a mapping is offset by the machine's
    /// position in the *whole file* (all groups, in order, counting from 0), not only within its
    /// group. Groups A (count 2, hostPort 2222) then B (count 1, hostPort 9122) give A's machines
    /// 2222 and 2223 and B's machine 9124.
    ///
    /// Returns every problem found, each with its path, or the machines with warnings.
    pub fn validate(&self, namespace: &NamespaceName) -> Result<Validated, SpecError> {
        let mut v =
            Validator { namespace: namespace.as_str(), problems: Problems::default(), warnings: Warnings::default() };
        v.check_cluster(self);
        let plans: Vec<GroupPlan> =
            self.machines.iter().enumerate().map(|(group, spec)| v.check_group(group, spec)).collect();
        let machines = v.expand(&plans);
        let Validator { problems, warnings, .. } = v;
        problems.finish(Validated { machines, warnings: warnings.into_vec() })
    }
}

/// A name pattern split around its single `%d`.
struct Template {
    prefix: String,
    suffix: String,
}

impl Template {
    fn render(&self, index: usize) -> String {
        format!("{}{index}{}", self.prefix, self.suffix)
    }
}

/// A checked port mapping of a group; `mapping` is its position in `portMappings`.
struct PortPlan {
    mapping: usize,
    container_port: u16,
    base: Option<u16>,
    protocol: Protocol,
    address: Option<IpAddr>,
}

/// What a group expands to. Fields hold defaults where the spec was invalid; the machines are
/// then never returned, because validation fails.
struct GroupPlan {
    /// `None` when the count is out of range.
    count: Option<usize>,
    /// `None` when the name pattern is invalid.
    template: Option<Template>,
    image: String,
    backend: Backend,
    cpus: u32,
    cpu_cap_milli: Option<u32>,
    memory_mb: u64,
    disk_gb: u64,
    kernel: Option<String>,
    ports: Vec<PortPlan>,
    host: Option<HostName>,
}

struct Validator<'a> {
    namespace: &'a str,
    problems: Problems,
    warnings: Warnings,
}

impl Validator<'_> {
    fn check_cluster(&mut self, spec: &ClusterSpec) {
        if let Some(cluster) = &spec.cluster {
            if let Some(name) = cluster.name.as_deref().filter(|n| !n.is_empty()) {
                if name != self.namespace {
                    self.problems.error(
                        "cluster.name",
                        format!(
                            "is {} but the namespace is {}; they must be equal (or leave cluster.name out)",
                            shown(name),
                            shown(self.namespace)
                        ),
                    );
                }
            }
            if cluster.private_key.as_deref().is_some_and(|k| !k.is_empty()) {
                self.warnings.warn(
                    "cluster.privateKey",
                    "ignored: machines accept the SSH keys that the namespace's members uploaded",
                );
            }
            self.unknown_keys("cluster", &cluster.unknown);
        }
        self.unknown_keys("", &spec.unknown);
        if spec.machines.is_empty() {
            self.warnings.warn("machines", "is empty: this spec runs no machines");
        }
    }

    fn check_group(&mut self, group: usize, spec: &MachineGroup) -> GroupPlan {
        let path = at("machines", group);
        let count = if spec.count > MAX_MACHINES_PER_GROUP {
            self.problems.error(
                &join(&path, "count"),
                format!("is {}; a group has at most {MAX_MACHINES_PER_GROUP} machines", spec.count),
            );
            None
        } else {
            if spec.count == 0 {
                self.warnings.warn(&join(&path, "count"), "is 0 or missing: this group creates no machines");
            }
            usize::try_from(spec.count).ok()
        };
        for key in spec.unknown.keys() {
            let misplaced = ["backend", "ignite"].into_iter().find(|k| key.eq_ignore_ascii_case(k));
            match misplaced {
                // footloose's own README puts these here, where footloose does not read them.
                Some(field) => self.warnings.warn(
                    &join(&path, key),
                    format!("ignored, as footloose ignores it here; to use it, move it to {path}.spec.{field}"),
                ),
                None => self.warnings.warn(&join(&path, key), "unknown key; ignored"),
            }
        }

        let path = join(&path, "spec");
        let machine = &spec.spec;
        let template = self.check_name(&path, &machine.name, count);
        let image = self.check_image(&path, machine.image.as_deref());
        let backend = self.check_backend(&path, machine.backend.as_deref());
        let (cpus, memory_mb, disk_gb, kernel) = self.check_resources(&path, machine.ignite.as_ref(), backend);
        let cpu_cap_milli = self.check_cpu_cap(&path, machine.ignite.as_ref());
        let ports = self.check_ports(&path, &machine.port_mappings);
        let host = self.check_host(&path, machine.host.as_deref());
        self.check_unhonoured(&path, machine);
        self.unknown_keys(&path, &machine.unknown);
        GroupPlan { count, template, image, backend, cpus, cpu_cap_milli, memory_mb, disk_gb, kernel, ports, host }
    }

    /// `spec.host`: a host name by the namespace rule (whether that host exists and takes
    /// machines is the server's to say at apply time).
    fn check_host(&mut self, path: &str, host: Option<&str>) -> Option<HostName> {
        let host = host.filter(|h| !h.is_empty())?;
        match HostName::parse(host) {
            Ok(host) => Some(host),
            Err(_) => {
                self.problems.error(
                    &join(path, "host"),
                    format!(
                        "is {}, not a host name (lowercase letters, digits and '-', starting with a letter, \
                         at most 31 characters: `flvpc host list` shows them)",
                        shown(host)
                    ),
                );
                None
            }
        }
    }

    fn check_name(&mut self, path: &str, name: &str, count: Option<usize>) -> Option<Template> {
        let path = join(path, "name");
        let template = match parse_template(name) {
            Ok(template) => template,
            Err(message) => {
                self.problems.error(&path, message);
                return None;
            }
        };
        // Digits are valid anywhere in a label, so the first name decides for all of them.
        if let Err(message) = check_label(name, &template.render(0)) {
            self.problems.error(&path, message);
            return None;
        }
        // Names only grow with the index, so the last machine has the longest container name.
        let last = count.unwrap_or(1).max(1) - 1;
        let longest = template.render(last);
        let container = format!("{}-{longest}", self.namespace);
        if container.len() > MAX_CONTAINER_NAME {
            self.problems.error(
                &path,
                format!(
                    "gives {} for machine {last}, so its container name {} is {} characters; at most \
                     {MAX_CONTAINER_NAME} are allowed (`<namespace>-<name>` must fit a DNS label)",
                    shown(&longest),
                    shown(&container),
                    container.len()
                ),
            );
            // Not expanded: a hostile 200 KB pattern times 1000 machines would be 200 MB of names.
            return None;
        }
        Some(template)
    }

    fn check_image(&mut self, path: &str, image: Option<&str>) -> String {
        match image.filter(|i| !i.is_empty()) {
            None => DEFAULT_IMAGE.to_owned(),
            Some(image) => {
                if let Err(message) = check_reference(image) {
                    self.problems.error(
                        &join(path, "image"),
                        format!("{} is not a valid image reference: it {message}", shown(image)),
                    );
                }
                image.to_owned()
            }
        }
    }

    fn check_backend(&mut self, path: &str, backend: Option<&str>) -> Backend {
        let Some(backend) = backend.filter(|b| !b.is_empty()) else {
            // footloose: an empty backend behaves as docker.
            return Backend::Docker;
        };
        match backend.to_ascii_lowercase().as_str() {
            "docker" => Backend::Docker,
            "microvm" | "ignite" => Backend::MicroVm,
            _ => {
                self.problems.error(
                    &join(path, "backend"),
                    format!("is {}; accepted values: docker, microvm, ignite (same as microvm)", shown(backend)),
                );
                Backend::Docker
            }
        }
    }

    /// `ignite.cpuCap`: a hard cap of at least a thousandth of a CPU and at most [`MAX_CPUS`].
    fn check_cpu_cap(&mut self, path: &str, ignite: Option<&IgniteSpec>) -> Option<u32> {
        let cap = ignite?.cpu_cap?;
        let milli = (cap * 1000.0).round();
        if milli < 1.0 || milli > f64::from(MAX_CPUS) * 1000.0 {
            self.problems.error(
                &join(&join(path, "ignite"), "cpuCap"),
                format!("must be between 0.001 and {MAX_CPUS} CPUs (it is {cap})"),
            );
            return None;
        }
        Some(milli as u32)
    }

    /// The `ignite:` block: cpus, memory in MiB, disk in GiB, kernel.
    fn check_resources(
        &mut self,
        path: &str,
        ignite: Option<&IgniteSpec>,
        backend: Backend,
    ) -> (u32, u64, u64, Option<String>) {
        let Some(ignite) = ignite else {
            return (DEFAULT_CPUS, DEFAULT_MEMORY_MB, DEFAULT_DISK_GB, None);
        };
        let path = join(path, "ignite");
        let cpus = match ignite.cpus {
            None => DEFAULT_CPUS,
            Some(0) => {
                self.warnings
                    .warn(&join(&path, "cpus"), format!("0 means the default, {DEFAULT_CPUS} CPUs (as in footloose)"));
                DEFAULT_CPUS
            }
            Some(n) => match u32::try_from(n) {
                Ok(n) if n <= MAX_CPUS => n,
                _ => {
                    self.problems.error(&join(&path, "cpus"), format!("must be at most {MAX_CPUS} (it is {n})"));
                    DEFAULT_CPUS
                }
            },
        };
        let memory_mb = match ignite.memory.as_deref().filter(|m| !m.is_empty()) {
            None => DEFAULT_MEMORY_MB,
            Some(memory) => parse_memory_mb(memory, MIN_MEMORY_MB, MAX_MEMORY_MB).unwrap_or_else(|message| {
                self.problems.error(&join(&path, "memory"), format!("{} {message}", shown(memory)));
                DEFAULT_MEMORY_MB
            }),
        };
        let disk_gb = match ignite.disk_size.as_deref().filter(|d| !d.is_empty()) {
            None => DEFAULT_DISK_GB,
            Some(disk) => parse_disk_gb(disk, MAX_DISK_GB).unwrap_or_else(|message| {
                self.problems.error(&join(&path, "diskSize"), format!("{} {message}", shown(disk)));
                DEFAULT_DISK_GB
            }),
        };
        let kernel = match ignite.kernel.as_deref().filter(|k| !k.is_empty()) {
            None => None,
            Some(kernel) => {
                let kernel_path = join(&path, "kernel");
                // Checked even when ignored: it is still text that may be shown or switched on later.
                if let Err(message) = check_reference(kernel) {
                    self.problems.error(
                        &kernel_path,
                        format!("{} is not a valid kernel image reference: it {message}", shown(kernel)),
                    );
                }
                match backend {
                    Backend::MicroVm => {
                        self.warnings.warn(
                            &kernel_path,
                            "recorded, not used: microVMs boot the kernel of flvpc's VM image (Debian 12's cloud kernel)",
                        );
                        Some(kernel.to_owned())
                    }
                    Backend::Docker => {
                        self.warnings
                            .warn(&kernel_path, "ignored by the docker backend: containers run on the host's kernel");
                        None
                    }
                }
            }
        };
        if !ignite.copy_files.is_empty() {
            self.warnings.warn(&join(&path, "copyFiles"), "ignored: flvpc does not copy host files into machines");
        }
        self.unknown_keys(&path, &ignite.unknown);
        (cpus, memory_mb, disk_gb, kernel)
    }

    fn check_ports(&mut self, path: &str, mappings: &[PortMappingSpec]) -> Vec<PortPlan> {
        let path = join(path, "portMappings");
        if mappings.len() > MAX_PORT_MAPPINGS {
            self.problems
                .error(&path, format!("has {} entries; a machine has at most {MAX_PORT_MAPPINGS}", mappings.len()));
            return Vec::new();
        }
        let mut plans = Vec::with_capacity(mappings.len());
        let mut seen: HashMap<(u16, Protocol), usize> = HashMap::new();
        for (mapping, spec) in mappings.iter().enumerate() {
            let path = at(&path, mapping);
            let protocol = match spec.protocol.as_deref().filter(|p| !p.is_empty()) {
                None => Protocol::Tcp,
                Some(p) if p.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
                Some(p) if p.eq_ignore_ascii_case("udp") => Protocol::Udp,
                Some(p) => {
                    self.problems
                        .error(&join(&path, "protocol"), format!("is {}; accepted values: tcp, udp", shown(p)));
                    Protocol::Tcp
                }
            };
            let container_port = spec.container_port;
            if container_port == 0 {
                self.problems.error(
                    &join(&path, "containerPort"),
                    "is missing or 0; it must be the port inside the machine, 1 to 65535",
                );
            } else {
                match seen.entry((container_port, protocol)) {
                    Entry::Occupied(first) => self.problems.error(
                        &join(&path, "containerPort"),
                        format!(
                            "{container_port}/{protocol} is already mapped by portMappings[{}]; a machine port is \
                             published once",
                            first.get()
                        ),
                    ),
                    Entry::Vacant(slot) => {
                        slot.insert(mapping);
                    }
                }
            }
            // Honoured: the port is published on this address (if the server allows it, which
            // only the server knows; see PublishRules).
            let address = match spec.address.as_deref().filter(|a| !a.is_empty()) {
                None => None,
                Some(address) => match address.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        self.problems.error(
                            &join(&path, "address"),
                            format!("{} is not an IP address (e.g. 127.0.0.1)", shown(address)),
                        );
                        None
                    }
                },
            };
            self.unknown_keys(&path, &spec.unknown);
            // footloose: hostPort 0 means "any free port".
            let base = spec.host_port.filter(|p| *p != 0);
            plans.push(PortPlan { mapping, container_port, base, protocol, address });
        }
        plans
    }

    /// footloose settings accepted so that existing files load, but not acted on.
    fn check_unhonoured(&mut self, path: &str, spec: &MachineSpec) {
        let mut warn = |key: &str, message: &str| self.warnings.warn(&join(path, key), message);
        if spec.privileged {
            warn("privileged", "ignored: flvpc never runs machines privileged");
        }
        if !spec.volumes.is_empty() {
            warn("volumes", "ignored: flvpc mounts no host paths or volumes into machines");
        }
        if !spec.networks.is_empty() {
            warn("networks", "ignored: a namespace's machines share their own network and reach each other by name");
        }
        if spec.cmd.as_deref().is_some_and(|c| !c.is_empty() && c != "/sbin/init") {
            warn("cmd", "ignored: machines always boot the image's init (systemd)");
        }
        if spec.public_key.as_deref().is_some_and(|k| !k.is_empty()) {
            warn("publicKey", "ignored: machines accept the SSH keys that the namespace's members uploaded");
        }
        if !spec.extra_args.is_empty() {
            warn("extraArgs", "ignored: flvpc passes no extra arguments to Docker");
        }
    }

    fn unknown_keys(&mut self, path: &str, unknown: &BTreeMap<String, Value>) {
        for key in unknown.keys() {
            self.warnings.warn(&join(path, key), "unknown key; ignored");
        }
    }

    /// Numbers the machines across the whole file, checks names and host ports between groups,
    /// and builds the machines.
    fn expand(&mut self, plans: &[GroupPlan]) -> Vec<DesiredMachine> {
        // With a count out of range the numbering of every later machine would be wrong, so
        // cross-group checks would only add misleading errors.
        let Some(counts) = plans.iter().map(|p| p.count).collect::<Option<Vec<usize>>>() else {
            return Vec::new();
        };
        let total: usize = counts.iter().sum();
        if total > MAX_MACHINES {
            self.problems.error(
                "machines",
                format!("ask for {total} machines in total; a namespace has at most {MAX_MACHINES}"),
            );
            return Vec::new();
        }

        let mut machines = Vec::with_capacity(total);
        let mut names: HashMap<String, (usize, usize)> = HashMap::new();
        let mut ports: HashMap<(u16, Protocol), (usize, usize, String)> = HashMap::new();
        // One error per clashing pair of groups / per mapping, with a count of the rest, so that
        // two identical groups of 256 machines give one line, not 256.
        let mut name_clashes: BTreeMap<(usize, usize), (String, usize)> = BTreeMap::new();
        let mut port_problems: BTreeMap<(usize, usize), (String, usize)> = BTreeMap::new();

        // footloose's port offset: the machine's position among all machines of the file.
        let mut position = 0usize;
        for (group, (plan, &count)) in plans.iter().zip(&counts).enumerate() {
            for index in 0..count {
                let offset = position;
                position += 1;
                let name = plan.template.as_ref().map(|t| t.render(index));
                let label = match &name {
                    Some(name) => shown(name),
                    None => format!("machine {index} of machines[{group}]"),
                };
                if let Some(name) = &name {
                    match names.entry(name.clone()) {
                        Entry::Occupied(other) => {
                            let (other_group, other_index) = *other.get();
                            note(
                                &mut name_clashes,
                                (group, other_group),
                                format!(
                                    "gives {label} (index {index}), which machines[{other_group}].spec.name also \
                                     gives (index {other_index}); machine names must be unique"
                                ),
                            );
                        }
                        Entry::Vacant(slot) => {
                            slot.insert((group, index));
                        }
                    }
                }
                let mut machine_ports = Vec::with_capacity(plan.ports.len());
                for port in &plan.ports {
                    let host_port = port.base.and_then(|base| {
                        let wanted = usize::from(base) + offset;
                        let Ok(host_port) = u16::try_from(wanted) else {
                            note(
                                &mut port_problems,
                                (group, port.mapping),
                                format!(
                                    "{label} would get host port {wanted} ({base} + {offset}, its position among \
                                     all machines of the file, as in footloose); host ports end at 65535"
                                ),
                            );
                            return None;
                        };
                        match ports.entry((host_port, port.protocol)) {
                            Entry::Occupied(owner) => {
                                let (owner_group, owner_mapping, owner_label) = owner.get();
                                note(
                                    &mut port_problems,
                                    (group, port.mapping),
                                    format!(
                                        "{label} would get host port {host_port}/{}, which {owner_label} already \
                                         gets from machines[{owner_group}].spec.portMappings[{owner_mapping}]; a \
                                         host port can be used once",
                                        port.protocol
                                    ),
                                );
                            }
                            Entry::Vacant(slot) => {
                                slot.insert((group, port.mapping, label.clone()));
                            }
                        }
                        Some(host_port)
                    });
                    machine_ports.push(PortMapping {
                        container_port: port.container_port,
                        host_port,
                        protocol: port.protocol,
                        address: port.address,
                    });
                }
                if let Some(name) = name {
                    machines.push(DesiredMachine {
                        name,
                        group,
                        index,
                        image: plan.image.clone(),
                        backend: plan.backend,
                        cpus: plan.cpus,
                        cpu_cap_milli: plan.cpu_cap_milli,
                        memory_mb: plan.memory_mb,
                        disk_gb: plan.disk_gb,
                        kernel: plan.kernel.clone(),
                        ports: machine_ports,
                        host: plan.host.clone(),
                    });
                }
            }
        }

        for ((group, _), (message, more)) in name_clashes {
            let path = format!("machines[{group}].spec.name");
            self.problems.error(&path, with_more(message, more, "names"));
        }
        for ((group, mapping), (message, more)) in port_problems {
            let path = format!("machines[{group}].spec.portMappings[{mapping}].hostPort");
            self.problems.error(&path, with_more(message, more, "machines"));
        }
        machines
    }
}

/// Records the first problem under `key`, and counts the later ones.
fn note(map: &mut BTreeMap<(usize, usize), (String, usize)>, key: (usize, usize), message: String) {
    map.entry(key).and_modify(|(_, more)| *more += 1).or_insert((message, 0));
}

fn with_more(message: String, more: usize, what: &str) -> String {
    if more == 0 {
        message
    } else {
        format!("{message} (and {more} more {what} of this group)")
    }
}

/// Splits a name pattern around its `%d`. footloose only checks that `%d` occurs; flvpc also
/// refuses other directives, which Go would render as garbage such as `%!s(MISSING)`.
fn parse_template(name: &str) -> Result<Template, String> {
    if name.is_empty() {
        return Err("is missing: a name pattern such as node%d is required".to_owned());
    }
    let mut found = Vec::new();
    let mut rest_start = 0;
    while let Some(offset) = name[rest_start..].find('%') {
        let percent = rest_start + offset;
        if name[percent + 1..].starts_with('d') {
            found.push(percent);
            rest_start = percent + 2;
            continue;
        }
        let mut directive = String::from("%");
        for c in name[percent + 1..].chars().take(6) {
            directive.push(c);
            if c.is_ascii_alphabetic() || c == '%' {
                break;
            }
        }
        return Err(format!(
            "contains {}; the only directive allowed is %d, exactly once (footloose needs the literal %d, so \
             %02d is refused too)",
            shown(&directive)
        ));
    }
    match found.as_slice() {
        [] => Err(format!(
            "{} must contain %d, which becomes the machine's index in its group (node%d gives node0, node1, …)",
            shown(name)
        )),
        [at] => Ok(Template { prefix: name[..*at].to_owned(), suffix: name[at + 2..].to_owned() }),
        many => Err(format!("contains %d {} times; it must appear exactly once", many.len())),
    }
}

/// Checks that a machine name is a DNS label: it becomes the hostname and part of the container name.
fn check_label(pattern: &str, name: &str) -> Result<(), String> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "must be lowercase, because machine names are hostnames ({} gives {}); write {}",
            shown(pattern),
            shown(name),
            shown(&pattern.to_ascii_lowercase())
        ));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(format!(
            "may contain only a-z, 0-9 and '-', because machine names are hostnames; {} is not allowed",
            shown(&bad.to_string())
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "must start and end with a letter or digit, because machine names are hostnames ({} gives {})",
            shown(pattern),
            shown(name)
        ));
    }
    Ok(())
}
