//! `flvpc serve`: the control plane.

use anyhow::Context;
use clap::Args;
use flvpc_server::{AppState, Config};
use std::net::SocketAddr;
use std::path::Path;

/// Flags of `flvpc serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the web panel and REST API.
    #[arg(long, env = "FLVPC_LISTEN", default_value = "0.0.0.0:5555")]
    listen: SocketAddr,
    /// Hours a panel session or API login lasts.
    #[arg(long, env = "FLVPC_SESSION_HOURS", default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=24 * 90))]
    session_hours: u64,
    /// Mark session cookies Secure (when flvpc is served behind TLS).
    #[arg(long, env = "FLVPC_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Address of the SSH gateway (the jump host to the machines).
    #[arg(long, env = "FLVPC_SSH_LISTEN", default_value = "0.0.0.0:2222")]
    ssh_listen: SocketAddr,
    /// Seconds a gateway client has to authenticate.
    #[arg(long, env = "FLVPC_SSH_AUTH_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    ssh_auth_timeout: u64,
    /// Seconds without traffic after which a gateway connection is closed.
    #[arg(long, env = "FLVPC_SSH_IDLE_TIMEOUT", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(10..=7 * 86400))]
    ssh_idle_timeout: u64,
    /// Gateway connections at once, all users together.
    #[arg(long, env = "FLVPC_SSH_MAX_CONNECTIONS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    ssh_max_connections: u64,
    /// Gateway connections at once per user.
    #[arg(long, env = "FLVPC_SSH_MAX_CONNECTIONS_PER_USER", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    ssh_max_connections_per_user: u64,
    /// Cap the CPUs of all running machines at R × the host's CPUs (default: no cap, as in the original).
    #[arg(long, env = "FLVPC_OVERCOMMIT_CPU", value_parser = parse_ratio)]
    overcommit_cpu: Option<f64>,
    /// Cap the memory of all running machines at R × the host's memory (default: no cap).
    #[arg(long, env = "FLVPC_OVERCOMMIT_MEMORY", value_parser = parse_ratio)]
    overcommit_memory: Option<f64>,
    /// Host address that machines' ports are published on.
    #[arg(long, env = "FLVPC_PUBLISH_ADDRESS", default_value = "0.0.0.0")]
    publish_address: std::net::IpAddr,
    /// Host ports handed out to machines whose spec gives no hostPort, as FIRST-LAST.
    #[arg(long, env = "FLVPC_PORT_RANGE", default_value = "20000-29999", value_parser = parse_port_range)]
    port_range: flvpc_store::PortRange,
    /// A token a metrics scraper sends (Authorization: Bearer) to read the per-machine series
    /// of /metrics; without it only the superadmin's token does. Anonymous /metrics has aggregates only.
    #[arg(long, env = "FLVPC_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
}

fn parse_ratio(value: &str) -> Result<f64, String> {
    let ratio: f64 = value.trim().parse().map_err(|_| format!("{value:?} is not a number, e.g. 1.5"))?;
    if !ratio.is_finite() || ratio <= 0.0 || ratio > 1000.0 {
        return Err("the ratio must be a number above 0 and at most 1000, e.g. 1.5".into());
    }
    Ok(ratio)
}

fn parse_port_range(value: &str) -> Result<flvpc_store::PortRange, String> {
    let (first, last) = value.split_once('-').ok_or("expected FIRST-LAST, e.g. 20000-29999")?;
    let first: u16 = first.trim().parse().map_err(|_| format!("{first:?} is not a port number"))?;
    let last: u16 = last.trim().parse().map_err(|_| format!("{last:?} is not a port number"))?;
    if first == 0 || first > last {
        return Err("the range must be FIRST-LAST with 1 <= FIRST <= LAST <= 65535".into());
    }
    Ok(flvpc_store::PortRange { first, last })
}

/// Opens the database, binds the listener and serves until SIGINT/SIGTERM.
pub async fn run(data_dir: &Path, database_url: &str, args: &ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLVPC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    flvpc_store::private_dir(data_dir)?;
    let store = flvpc_store::Store::open(database_url).await?;
    for warning in flvpc_host::host_limit_warnings() {
        tracing::warn!("{warning}");
    }
    if !store.superadmin_exists().await? {
        tracing::warn!("no superadmin yet: run `flvpc admin init --login admin --password-stdin` on this host");
    }
    let host_key = flvpc_server::gateway::load_or_create_host_key(data_dir).map_err(anyhow::Error::msg)?;
    let config = Config {
        listen: args.listen,
        data_dir: data_dir.to_path_buf(),
        session_ttl: std::time::Duration::from_secs(args.session_hours * 3600),
        secure_cookies: args.secure_cookies,
        publish_address: args.publish_address,
        port_range: args.port_range,
        ssh_port: args.ssh_listen.port(),
        overcommit_cpu: args.overcommit_cpu,
        overcommit_memory: args.overcommit_memory,
        ssh_host_key: Some((host_key.fingerprint.clone(), host_key.public.clone())),
        metrics_token: args.metrics_token.clone().filter(|t| !t.is_empty()),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}: is another flvpc (or program) using it?", args.listen))?;
    tracing::info!("flvpc panel and API on http://{}", listener.local_addr()?);
    let state = AppState::new(store, config).await?;
    let gateway = flvpc_server::gateway::GatewayConfig {
        auth_timeout: std::time::Duration::from_secs(args.ssh_auth_timeout),
        idle_timeout: std::time::Duration::from_secs(args.ssh_idle_timeout),
        max_connections: usize::try_from(args.ssh_max_connections).unwrap_or(usize::MAX),
        max_connections_per_user: usize::try_from(args.ssh_max_connections_per_user).unwrap_or(usize::MAX),
        ..Default::default()
    };
    let fingerprint = host_key.fingerprint.clone();
    let (ssh_addr, _gateway) =
        flvpc_server::gateway::spawn(args.ssh_listen, state.clone(), gateway, host_key).await.with_context(|| {
            format!("cannot listen on {} for the SSH gateway: is another program using it?", args.ssh_listen)
        })?;
    tracing::info!("SSH gateway on {ssh_addr}, host key {fingerprint}");
    flvpc_server::serve(listener, state, shutdown_signal()).await.context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
