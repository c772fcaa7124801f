//! How people reach their machines, shown by every door: the `~/.ssh/config` blocks for the SSH
//! gateway, and the server's host name as the client sees it. Kept out of the doors (API, panel,
//! gateway) so that none of them imports another.

use crate::core::CoreResult;
use crate::state::AppState;
use axum::http::{header, HeaderMap};

/// Where this process reaches TCP port `port` of machine `m`. With one host, at the machine's
/// own address on its namespace network (the host's bridge is routable from here). With several
/// hosts, namespace networks are overlays, which no host routes into: the machine is reached
/// through its published host port at its host's address (or the address the port is published on).
pub fn machine_socket(
    state: &AppState,
    m: &flvpc_store::MachineRecord,
    port: u16,
) -> Result<std::net::SocketAddr, String> {
    if !state.hosts.multi() {
        let ip: std::net::IpAddr =
            m.ip.as_deref()
                .and_then(|ip| ip.parse().ok())
                .ok_or_else(|| "the machine has no address yet".to_owned())?;
        return Ok(std::net::SocketAddr::new(ip, port));
    }
    let published = m
        .ports
        .iter()
        .find(|p| p.container_port == port && p.protocol == flvpc_model::spec::Protocol::Tcp)
        .ok_or_else(|| {
            format!(
                "machine {} runs on host {}, reached through its published ports, and port {port} is not \
                 published: add a portMappings entry with containerPort: {port} to its spec and apply it",
                m.name, m.placement.host
            )
        })?;
    let address = published
        .address
        .filter(|a| !a.is_unspecified())
        .or_else(|| state.hosts.address_of(&m.placement.host))
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    Ok(std::net::SocketAddr::new(address, published.host_port))
}

/// The host name people use to reach this server, from the request (for SSH commands).
pub fn server_host(headers: &HeaderMap) -> String {
    let raw = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let plain = host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    if host.is_empty() || !plain {
        "SERVER".to_owned()
    } else {
        host.to_owned()
    }
}

/// The ssh-config text for `principal` (API and panel).
pub async fn ssh_config_for(state: &AppState, principal: &flvpc_model::Principal, host: &str) -> CoreResult<String> {
    let namespaces: Vec<String> = crate::core::visible_namespaces(state, principal)
        .await?
        .into_iter()
        .filter(|(ns, _)| principal.role_in(&ns.name).is_some())
        .map(|(ns, _)| ns.name.to_string())
        .collect();
    Ok(ssh_config_text(
        principal.login().as_str(),
        host,
        state.config.ssh_port,
        state.config.ssh_host_key.as_ref(),
        &namespaces,
    ))
}

/// The ~/.ssh/config blocks that reach `login`'s machines through the gateway at `host:port`.
pub fn ssh_config_text(
    login: &str,
    host: &str,
    port: u16,
    host_key: Option<&(String, String)>,
    namespaces: &[String],
) -> String {
    let mut text = String::new();
    if let Some((fingerprint, public)) = host_key {
        text.push_str(&format!("# flvpc SSH gateway {host}:{port}, host key {fingerprint}\n"));
        text.push_str(&format!("# for ~/.ssh/known_hosts: [{host}]:{port} {public}\n"));
    }
    text.push_str(&format!("Host flvpc-gateway\n    HostName {host}\n    Port {port}\n    User {login}\n"));
    for ns in namespaces {
        text.push_str(&format!("\n# ssh <machine>.{ns}\nHost *.{ns}\n    User root\n    ProxyJump flvpc-gateway\n"));
    }
    text
}
