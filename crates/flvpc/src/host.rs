//! `flvpc host …`: the hosts that run machines (superadmin), through the API.

use crate::client::{call, call_as, segment};
use clap::Subcommand;
use flvpc_server::api::wire::HostEntryOut;
use serde_json::json;
use std::path::PathBuf;

/// `flvpc host …`.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List the hosts: state, health, engine version, size and machines.
    List,
    /// Add a host by its Docker engine; the engine must answer. With the first added host the
    /// hosts form a Docker Swarm (start `flvpc serve` with --host-address).
    Add {
        /// The host's name (lowercase letters, digits, '-').
        name: String,
        /// Its Docker engine: unix:///path/to/docker.sock or tcp://IP:PORT.
        #[arg(long)]
        engine: String,
        /// The IP address people and the gateway reach its published ports at.
        #[arg(long)]
        address: String,
        /// For a tcp engine: the CA of the engine's certificate (PEM file on the server).
        #[arg(long, requires_all = ["tls_cert", "tls_key"])]
        tls_ca: Option<PathBuf>,
        /// flvpc's client certificate (PEM file on the server).
        #[arg(long, requires_all = ["tls_ca", "tls_key"])]
        tls_cert: Option<PathBuf>,
        /// The client certificate's key (PEM file on the server).
        #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
        tls_key: Option<PathBuf>,
    },
    /// Stop placing new machines on a host; what it runs stays (its stopped machines can be moved).
    Drain { name: String },
    /// Place new machines on a drained host again.
    Activate { name: String },
    /// Remove a host that holds no machine.
    Remove { name: String },
}

/// Runs `command` against the stored server.
pub async fn run(command: &HostCommand) -> anyhow::Result<()> {
    match command {
        HostCommand::List => {
            let hosts: Vec<HostEntryOut> = call_as(reqwest::Method::GET, "/api/v1/hosts", None).await?;
            println!(
                "{:<14} {:<9} {:<11} {:<16} {:<10} {:>5} {:>9} {:>8}  ENGINE",
                "NAME", "STATE", "HEALTH", "ADDRESS", "DOCKER", "CPUS", "MEMORY", "MACHINES"
            );
            for h in &hosts {
                let health = if h.reachable { "ok" } else { "unreachable" };
                println!(
                    "{:<14} {:<9} {:<11} {:<16} {:<10} {:>5} {:>8}M {:>8}  {}",
                    h.name,
                    h.state,
                    health,
                    h.address.as_deref().unwrap_or("-"),
                    h.engine_version.as_deref().unwrap_or("-"),
                    h.cpus.map_or("-".to_owned(), |c| c.to_string()),
                    h.memory_mb.map_or("-".to_owned(), |m| m.to_string()),
                    h.machines,
                    h.engine
                );
                if let Some(detail) = &h.detail {
                    println!("    {detail}");
                }
            }
            Ok(())
        }
        HostCommand::Add { name, engine, address, tls_ca, tls_cert, tls_key } => {
            let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
            let body = json!({
                "name": name,
                "engine": engine,
                "address": address,
                "tls_ca": path(tls_ca),
                "tls_cert": path(tls_cert),
                "tls_key": path(tls_key),
            });
            let host: HostEntryOut = call_as(reqwest::Method::POST, "/api/v1/hosts", Some(body)).await?;
            println!(
                "host {} added: Docker {}, {} CPUs, {} MiB",
                host.name,
                host.engine_version.as_deref().unwrap_or("?"),
                host.cpus.unwrap_or(0),
                host.memory_mb.unwrap_or(0)
            );
            Ok(())
        }
        HostCommand::Drain { name } => set_state(name, "draining").await,
        HostCommand::Activate { name } => set_state(name, "active").await,
        HostCommand::Remove { name } => {
            call(reqwest::Method::DELETE, &format!("/api/v1/hosts/{}", segment(name)?), None).await?;
            println!("host {name} removed");
            Ok(())
        }
    }
}

async fn set_state(name: &str, state: &str) -> anyhow::Result<()> {
    let path = format!("/api/v1/hosts/{}/state", segment(name)?);
    call(reqwest::Method::PUT, &path, Some(json!({ "state": state }))).await?;
    println!("host {name} is {state}");
    Ok(())
}
