//! The machine vocabulary on the way out: one view of a machine that every door renders (the
//! API's `MachineOut` is built from it, the panel's table reads it), so a machine's state, SSH
//! commands and use are worded the same everywhere.

use crate::usage::UsageSampler;
use flvpc_model::Observed;
use flvpc_store::{Desired, MachineRecord};

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortView {
    /// Inside the machine.
    pub container_port: u16,
    /// On the host.
    pub host_port: u16,
    /// tcp or udp.
    pub protocol: String,
}

/// Ready-to-copy SSH commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshView {
    /// Through the flvpc SSH gateway.
    pub jump: String,
    /// Through the machine's own host port for 22, if it has one.
    pub direct: Option<String>,
}

/// A machine as a person sees it, with its latest use.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineView {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Container name `<name>.<ns>`.
    pub container: String,
    /// The host the machine lives on.
    pub host: String,
    /// The engine that runs it (`container`, `microvm`).
    pub engine: String,
    /// not_created, creating, running, stopped, error, unknown (its host does not answer), deleting
    /// while it is removed.
    pub state: String,
    /// What it should be: running, stopped, deleted.
    pub desired: Desired,
    /// Address on the namespace network.
    pub ip: Option<String>,
    /// Last error.
    pub error: Option<String>,
    /// Image.
    pub image: String,
    /// docker or microvm.
    pub backend: String,
    /// CPUs (CPU shares).
    pub cpus: u32,
    /// Hard CPU cap in CPUs, if any.
    pub cpu_cap: Option<f64>,
    /// Memory limit.
    pub memory_mb: u64,
    /// Disk size asked for.
    pub disk_gb: u64,
    /// Whether the disk size is a hard limit (a microVM's own disk).
    pub disk_enforced: bool,
    /// Published ports.
    pub ports: Vec<PortView>,
    /// SSH commands.
    pub ssh: SshView,
    /// Latest CPU use in percent of one CPU, while running.
    pub cpu_percent: Option<f64>,
    /// Latest memory use in MB, while running.
    pub memory_used_mb: Option<f64>,
    /// Processes killed for hitting the memory limit (this container's life).
    pub oom_kills: u64,
}

impl MachineView {
    /// The state as a person reads it: a microVM that is `creating` is booting its guest (the
    /// API keeps the one vocabulary; the panel says what happens).
    pub fn state_word(&self) -> &str {
        state_word(&self.state, &self.engine)
    }
}

/// See [`MachineView::state_word`]; the panel's script applies the same rule to live updates.
pub fn state_word<'a>(state: &'a str, engine: &str) -> &'a str {
    if state == "creating" && engine == "microvm" {
        "booting"
    } else {
        state
    }
}

/// Where a person reaches the server, for the SSH commands of a view.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    /// The person's login (the gateway's user).
    pub login: &'a str,
    /// The server's host name as the person reached it.
    pub host: &'a str,
    /// The SSH gateway's port.
    pub ssh_port: u16,
    /// The hosts: a machine on an added host is reached directly at that host's address.
    pub hosts: &'a crate::hosts::Hosts,
}

impl MachineView {
    /// The view of `m` for a person who reaches the server at `reach`, with the latest use.
    pub fn new(m: &MachineRecord, reach: Reach<'_>, usage: &UsageSampler) -> Self {
        let Reach { login, host, ssh_port, hosts } = reach;
        // The local host as the person reached the server; another host at its own address.
        let machine_host = match hosts.address_of(&m.placement.host) {
            Some(address) if m.placement.host.as_str() != flvpc_model::HostName::LOCAL => address.to_string(),
            _ => host.to_owned(),
        };
        let (latest, oom_kills) = usage.latest(m.namespace.as_str(), m.name.as_str());
        let running = m.observed == Observed::Running;
        let ssh_port_host = m
            .ports
            .iter()
            .find(|p| p.container_port == 22 && p.protocol == flvpc_model::spec::Protocol::Tcp)
            .map(|p| p.host_port);
        let state = if m.desired == Desired::Deleted { "deleting".to_owned() } else { m.observed.as_str().to_owned() };
        Self {
            ssh: SshView {
                jump: format!("ssh -J {login}@{host}:{ssh_port} root@{}.{}", m.name, m.namespace),
                direct: ssh_port_host.map(|p| format!("ssh -p {p} root@{machine_host}")),
            },
            // The engine's own naming (injective: `<name>.<ns>`).
            container: flvpc_host::container_name(&m.key()),
            host: m.placement.host.to_string(),
            engine: m.placement.engine.as_str().to_owned(),
            namespace: m.namespace.to_string(),
            name: m.name.to_string(),
            state,
            desired: m.desired,
            ip: m.ip.clone(),
            error: m.error.clone(),
            image: m.image.clone(),
            backend: m.backend.clone(),
            cpus: m.cpus,
            cpu_cap: m.cpu_cap_milli.map(|c| f64::from(c) / 1000.0),
            memory_mb: m.memory_mb,
            disk_gb: m.disk_gb,
            disk_enforced: m.placement.engine == flvpc_model::EngineKind::MicroVm,
            ports: m
                .ports
                .iter()
                .map(|p| PortView {
                    container_port: p.container_port,
                    host_port: p.host_port,
                    protocol: p.protocol.as_str().to_owned(),
                })
                .collect(),
            cpu_percent: latest.filter(|_| running).map(|p| p.cpu_percent),
            memory_used_mb: latest.filter(|_| running).map(|p| p.memory_mb),
            oom_kills,
        }
    }
}

/// Formats ms since the epoch as RFC 3339 (UTC), as every door shows times.
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creating_microvm_reads_as_booting() {
        assert_eq!(state_word("creating", "microvm"), "booting");
        assert_eq!(state_word("creating", "container"), "creating");
        assert_eq!(state_word("running", "microvm"), "running");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
