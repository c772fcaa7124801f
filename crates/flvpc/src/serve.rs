//! `flvpc serve`: the control plane.

use anyhow::Context;
use clap::Args;
use flvpc_host::subnets::AddressPool;
use flvpc_model::spec::PortList;
use flvpc_server::gateway::GatewayConfig;
use flvpc_server::{AppState, Config};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Flags of `flvpc serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the web panel and REST API.
    #[arg(long, env = "FLVPC_LISTEN", default_value = "0.0.0.0:5555")]
    listen: SocketAddr,
    /// Hours a panel session or API login lasts.
    #[arg(long, env = "FLVPC_SESSION_HOURS", default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=24 * 90))]
    session_hours: u64,
    /// Mark session cookies Secure with --plain-http behind a proxy that terminates TLS (with
    /// TLS served by flvpc itself they always are).
    #[arg(long, env = "FLVPC_SECURE_COOKIES")]
    secure_cookies: bool,
    /// The panel and API's TLS certificate: a PEM file, the server's certificate first, then its
    /// chain. Without it (and --tls-key), flvpc makes a self-signed one in the data dir's tls/.
    #[arg(long, env = "FLVPC_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key: a PEM file (PKCS#8, RSA or EC), unencrypted.
    #[arg(long, env = "FLVPC_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Further names of the self-signed certificate besides the host's name, localhost, 127.0.0.1
    /// and ::1, comma-separated host names or IP addresses (used when it is first made).
    #[arg(long, env = "FLVPC_TLS_SAN", value_delimiter = ',', value_parser = parse_san)]
    tls_san: Vec<flvpc_server::tls::SanName>,
    /// Serve plain HTTP instead of HTTPS: only behind a reverse proxy that terminates TLS (then
    /// add --secure-cookies), since passwords and tokens would otherwise cross the network in clear.
    #[arg(long, env = "FLVPC_PLAIN_HTTP")]
    plain_http: bool,
    /// Address of the SSH gateway (the jump host to the machines).
    #[arg(long, env = "FLVPC_SSH_LISTEN", default_value = "0.0.0.0:2222")]
    ssh_listen: SocketAddr,
    /// Seconds a gateway client has to authenticate.
    #[arg(long, env = "FLVPC_SSH_AUTH_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    ssh_auth_timeout: u64,
    /// Seconds without traffic after which a gateway connection, or a forwarded channel, is closed.
    #[arg(long, env = "FLVPC_SSH_IDLE_TIMEOUT", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(10..=7 * 86400))]
    ssh_idle_timeout: u64,
    /// Gateway connections at once, all users together.
    #[arg(long, env = "FLVPC_SSH_MAX_CONNECTIONS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    ssh_max_connections: u64,
    /// Gateway connections at once per user.
    #[arg(long, env = "FLVPC_SSH_MAX_CONNECTIONS_PER_USER", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    ssh_max_connections_per_user: u64,
    /// Gateway connections still authenticating, all addresses together (default: a fifth of
    /// --ssh-max-connections), so that signed-in users always have room.
    #[arg(long, env = "FLVPC_SSH_MAX_UNAUTHENTICATED", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    ssh_max_unauthenticated: Option<u64>,
    /// Gateway connections still authenticating from one address (an IPv6 /64).
    #[arg(long, env = "FLVPC_SSH_MAX_UNAUTHENTICATED_PER_ADDRESS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    ssh_max_unauthenticated_per_address: u64,
    /// Channels (forwarded and sessions) open at once on one gateway connection.
    #[arg(long, env = "FLVPC_SSH_MAX_CHANNELS_PER_CONNECTION", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    ssh_max_channels_per_connection: u64,
    /// Forwarded channels open at once per user, over all their gateway connections.
    #[arg(long, env = "FLVPC_SSH_MAX_FORWARDS_PER_USER", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    ssh_max_forwards_per_user: u64,
    /// Cap the CPUs of all running machines at R × the host's CPUs (default: no cap, as in the original).
    #[arg(long, env = "FLVPC_OVERCOMMIT_CPU", value_parser = parse_ratio)]
    overcommit_cpu: Option<f64>,
    /// Cap the memory of all running machines at R × the host's memory (default: no cap).
    #[arg(long, env = "FLVPC_OVERCOMMIT_MEMORY", value_parser = parse_ratio)]
    overcommit_memory: Option<f64>,
    /// Host address that machines' ports are published on when a mapping names no address.
    #[arg(long, env = "FLVPC_PUBLISH_ADDRESS", default_value = "0.0.0.0")]
    publish_address: std::net::IpAddr,
    /// Further host addresses a spec's `address:` may name, comma-separated (e.g. 127.0.0.1,10.0.0.5).
    #[arg(long, env = "FLVPC_ALLOW_PUBLISH_ADDRESSES", value_delimiter = ',', value_parser = parse_address)]
    allow_publish_addresses: Vec<std::net::IpAddr>,
    /// Host ports handed out to machines whose spec gives no hostPort, as FIRST-LAST; a spec may
    /// also name ports inside it.
    #[arg(long, env = "FLVPC_PORT_RANGE", default_value = "20000-29999", value_parser = parse_port_range)]
    port_range: flvpc_store::PortRange,
    /// Most processes (and threads) one machine may run at once; 0 for no limit (then one
    /// machine's fork bomb can exhaust the host's PIDs).
    #[arg(long, env = "FLVPC_MACHINE_PIDS_LIMIT", default_value_t = 4096, value_parser = parse_pids_limit)]
    machine_pids_limit: u32,
    /// Further host ports a spec may name, e.g. 80,443,8000-8099 (ports below 1024 only this way).
    #[arg(long, env = "FLVPC_ALLOW_HOST_PORTS", value_parser = parse_port_list)]
    allow_host_ports: Option<PortList>,
    /// A token a metrics scraper sends (Authorization: Bearer) to read the per-machine series
    /// of /metrics; without it only the superadmin's token does. Anonymous /metrics has aggregates only.
    #[arg(long, env = "FLVPC_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Where the microVM artifacts are (kernel, initrd, base image: `flvpc image build debian-12-vm`),
    /// default `vm` in the data dir. MicroVMs are offered when they and the runner image exist.
    #[arg(long, env = "FLVPC_VM_DIR")]
    vm_dir: Option<PathBuf>,
    /// The IPv4 range namespace networks are cut from, a /24 each (between a /8 and a /24), skipping
    /// subnets other Docker networks or host routes use. Networks made before keep their subnet.
    #[arg(long, env = "FLVPC_NETWORK_POOL", default_value_t = AddressPool::DEFAULT)]
    network_pool: AddressPool,
    /// The IP address the other hosts (`flvpc host add`) and people reach this server's host at: the
    /// Docker Swarm of the hosts is advertised on it, and SSH commands of machines on this host name
    /// it. Needed once hosts are added.
    #[arg(long, env = "FLVPC_HOST_ADDRESS")]
    host_address: Option<std::net::IpAddr>,
    /// Log lines as text (for people) or JSON objects, one a line (for the journal and log shippers).
    #[arg(long, env = "FLVPC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The least severe lines logged. FLVPC_LOG, when set, is a finer filter that replaces it
    /// (e.g. `info,flvpc_server::gateway=debug`).
    #[arg(long, env = "FLVPC_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (today's format).
    Text,
    /// One JSON object a line: time, level, message, fields, and the request span's id.
    Json,
}

/// The least severe level logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Starts logging to standard output, as before (systemd hands it to the journal), as the flags say.
fn init_logging(args: &ServeArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLVPC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(args.log_level.directive()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => builder.init(),
        // Flattened: a request line's fields sit next to its message; the span carries the id to inner lines.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
}

fn parse_san(value: &str) -> Result<flvpc_server::tls::SanName, String> {
    flvpc_server::tls::SanName::parse(value)
}

/// How the panel and API are served, decided from the flags before anything listens.
enum Transport {
    Plain,
    /// HTTPS; `self_signed` tells whether flvpc made the certificate (then clients pin it).
    Tls {
        identity: flvpc_server::tls::Identity,
        self_signed: bool,
    },
}

/// Reads the given certificate and key, or the self-signed pair of the data dir (made on first
/// start); every problem is one sentence naming the file and what to do.
fn transport(data_dir: &Path, args: &ServeArgs) -> anyhow::Result<Transport> {
    use flvpc_server::tls;
    match (&args.tls_cert, &args.tls_key, args.plain_http) {
        (Some(_), _, true) | (_, Some(_), true) => anyhow::bail!(
            "--plain-http and --tls-cert/--tls-key contradict each other: give the certificate and key for HTTPS, or              --plain-http alone behind a TLS proxy"
        ),
        (None, None, true) => Ok(Transport::Plain),
        (Some(cert), None, false) => anyhow::bail!(
            "--tls-cert {} was given without --tls-key: give both (the certificate chain and its private key, PEM),              or neither for a self-signed certificate",
            cert.display()
        ),
        (None, Some(key), false) => anyhow::bail!(
            "--tls-key {} was given without --tls-cert: give both (the certificate chain and its private key, PEM),              or neither for a self-signed certificate",
            key.display()
        ),
        (Some(cert), Some(key), false) => {
            Ok(Transport::Tls { identity: tls::load_files(cert, key).map_err(anyhow::Error::msg)?, self_signed: false })
        }
        (None, None, false) => {
            let host = flvpc_host::host_name();
            let (identity, _made) = tls::load_or_create_self_signed(data_dir, host.as_deref(), &args.tls_san)
                .map_err(anyhow::Error::msg)?;
            Ok(Transport::Tls { identity, self_signed: true })
        }
    }
}

/// The URL people open: the listen address, or the host's name when it listens on every address.
fn panel_url(scheme: &str, local: SocketAddr) -> String {
    let host = match local.ip() {
        ip if ip.is_unspecified() => flvpc_host::host_name().unwrap_or_else(|| "localhost".to_owned()),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("{scheme}://{host}:{}", local.port())
}

fn parse_pids_limit(value: &str) -> Result<u32, String> {
    let limit: u32 = value.trim().parse().map_err(|_| format!("{value:?} is not a number, e.g. 4096"))?;
    if limit != 0 && !(64..=4_194_304).contains(&limit) {
        return Err("the PID limit must be 0 (no limit) or between 64 and 4194304 (systemd alone needs dozens)".into());
    }
    Ok(limit)
}

fn parse_address(value: &str) -> Result<std::net::IpAddr, String> {
    value.trim().parse().map_err(|_| format!("{value:?} is not an IP address, e.g. 127.0.0.1"))
}

fn parse_port_list(value: &str) -> Result<PortList, String> {
    PortList::parse(value).map_err(|e| format!("{e}; expected e.g. 80,443,8000-8099"))
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

/// The gateway's limits from the flags.
fn gateway_config(args: &ServeArgs) -> anyhow::Result<GatewayConfig> {
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let max_connections = size(args.ssh_max_connections);
    let max_unauthenticated = match args.ssh_max_unauthenticated {
        Some(n) if size(n) > max_connections => anyhow::bail!(
            "--ssh-max-unauthenticated ({n}) is more than --ssh-max-connections ({max_connections}): \
             lower it, ideally well below, so that signed-in users always have room"
        ),
        Some(n) => size(n),
        None => (max_connections / 5).max(1),
    };
    Ok(GatewayConfig {
        auth_timeout: Duration::from_secs(args.ssh_auth_timeout),
        idle_timeout: Duration::from_secs(args.ssh_idle_timeout),
        max_connections,
        max_connections_per_user: size(args.ssh_max_connections_per_user),
        max_unauthenticated,
        max_unauthenticated_per_address: size(args.ssh_max_unauthenticated_per_address),
        max_channels_per_connection: size(args.ssh_max_channels_per_connection),
        max_forwards_per_user: size(args.ssh_max_forwards_per_user),
        ..GatewayConfig::default()
    })
}

/// Open files kept for everything but the gateway: the API's connections, the database,
/// the Docker socket, logs.
const FD_MARGIN: u64 = 1024;

/// A warning when the gateway's caps allow more open files than the process may have:
/// past that, accept() fails and the API and logins go down with the gateway.
fn fd_limit_warning(gateway: &GatewayConfig, soft_limit: u64) -> Option<String> {
    let need = gateway.max_descriptors().saturating_add(FD_MARGIN);
    (need > soft_limit).then(|| {
        format!(
            "the SSH gateway's caps allow {need} open files (--ssh-max-connections {} x (1 + \
             --ssh-max-channels-per-connection {}) + {FD_MARGIN} for the rest) but this process may open only \
             {soft_limit}: lower those flags, or raise the hard limit (LimitNOFILE= in the systemd unit, \
             `ulimit -Hn` in the shell that starts flvpc)",
            gateway.max_connections, gateway.max_channels_per_connection
        )
    })
}

/// Opens the database, binds the listener and serves until SIGINT/SIGTERM.
pub async fn run(data_dir: &Path, database_url: &str, args: &ServeArgs) -> anyhow::Result<()> {
    init_logging(args);
    flvpc_store::private_dir(data_dir)?;
    let gateway = gateway_config(args)?;
    // Before anything listens (the gateway included): a bad certificate stops the start here.
    let transport = transport(data_dir, args)?;
    let soft_before = flvpc_host::fd_limit().map(|l| l.soft).ok();
    match flvpc_host::raise_fd_limit() {
        Ok(limit) => {
            if soft_before.is_some_and(|before| before < limit.soft) {
                tracing::info!("open-file limit raised to {} (the hard limit)", limit.soft);
            }
            if let Some(warning) = fd_limit_warning(&gateway, limit.soft) {
                tracing::warn!("{warning}");
            }
        }
        Err(err) => tracing::warn!("{err}; the SSH gateway may run out of open files under load"),
    }
    let store = flvpc_store::Store::open(database_url).await?;
    for warning in flvpc_host::host_limit_warnings() {
        tracing::warn!("{warning}");
    }
    if !store.superadmin_exists().await? {
        tracing::warn!("no superadmin yet: run `flvpc admin init --login admin --password-stdin` on this host");
    }
    let host_key = flvpc_server::gateway::load_or_create_host_key(data_dir).map_err(anyhow::Error::msg)?;
    // The panel's browser terminal signs in to machines with this key (appended to their keys).
    let terminal_key = flvpc_server::terminal::TerminalKey::load_or_create(data_dir).map_err(anyhow::Error::msg)?;
    let config = Config {
        listen: args.listen,
        data_dir: data_dir.to_path_buf(),
        session_ttl: Duration::from_secs(args.session_hours * 3600),
        secure_cookies: args.secure_cookies,
        tls: matches!(transport, Transport::Tls { .. }),
        publish_address: args.publish_address,
        allow_publish_addresses: args.allow_publish_addresses.clone(),
        port_range: args.port_range,
        allow_host_ports: args.allow_host_ports.clone().unwrap_or_default(),
        ssh_port: args.ssh_listen.port(),
        overcommit_cpu: args.overcommit_cpu,
        overcommit_memory: args.overcommit_memory,
        ssh_host_key: Some((host_key.fingerprint.clone(), host_key.public.clone())),
        machine_pids_limit: (args.machine_pids_limit > 0).then_some(args.machine_pids_limit),
        metrics_token: args.metrics_token.clone().filter(|t| !t.is_empty()),
        terminal_key: Some(terminal_key),
        network_pool: args.network_pool,
        host_address: args.host_address,
        vm: Some(flvpc_server::reconcile::VmSetup {
            artifacts_dir: args.vm_dir.clone().unwrap_or_else(|| data_dir.join("vm")),
            // The runner is this very binary (`flvpc vm-runner`), mounted read-only into runner containers.
            runner_program: std::env::current_exe().context("cannot find the flvpc binary for the VM runner")?,
            runner_args: vec!["vm-runner".to_owned()],
        }),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}: is another flvpc (or program) using it?", args.listen))?;
    let local = listener.local_addr()?;
    let listener = match transport {
        Transport::Plain => {
            tracing::warn!(
                "serving plain HTTP (--plain-http): passwords and tokens cross the network in clear; use it only \
                 behind a reverse proxy that terminates TLS (with --secure-cookies)"
            );
            tracing::info!("flvpc panel and API on {}", panel_url("http", local));
            flvpc_server::Listener::Plain(listener)
        }
        Transport::Tls { identity, self_signed } => {
            let url = panel_url("https", local);
            let fingerprint = &identity.fingerprint;
            if self_signed {
                tracing::info!(
                    "flvpc panel and API on {url} with the self-signed certificate in {}, SHA-256 fingerprint \
                     {fingerprint} (clients: flvpc login {url} --fingerprint {fingerprint})",
                    data_dir.join(flvpc_server::tls::TLS_DIR).display()
                );
            } else {
                tracing::info!("flvpc panel and API on {url}, certificate SHA-256 fingerprint {fingerprint}");
            }
            flvpc_server::Listener::Tls(listener, identity.config)
        }
    };
    let state = AppState::new(store, config).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).expect("flags parse").serve
    }

    #[test]
    fn gateway_flags_reach_the_config_with_their_defaults() {
        let config = gateway_config(&parse(&[])).expect("defaults are valid");
        assert_eq!(config.max_connections, 1000);
        assert_eq!(config.max_unauthenticated, 200, "a fifth of the connections");
        assert_eq!(config.max_unauthenticated_per_address, 10);
        assert_eq!(config.max_channels_per_connection, 64);
        assert_eq!(config.max_forwards_per_user, 256);
        let config = gateway_config(&parse(&[
            "--ssh-max-connections",
            "50",
            "--ssh-max-unauthenticated",
            "20",
            "--ssh-max-unauthenticated-per-address",
            "3",
            "--ssh-max-channels-per-connection",
            "8",
            "--ssh-max-forwards-per-user",
            "16",
            "--ssh-idle-timeout",
            "60",
        ]))
        .expect("valid");
        assert_eq!(
            (config.max_unauthenticated, config.max_unauthenticated_per_address, config.max_channels_per_connection),
            (20, 3, 8)
        );
        assert_eq!((config.max_forwards_per_user, config.idle_timeout), (16, Duration::from_secs(60)));
    }

    #[test]
    fn more_unauthenticated_than_connections_is_refused_with_the_fix() {
        let args = parse(&["--ssh-max-connections", "10", "--ssh-max-unauthenticated", "11"]);
        let err = gateway_config(&args).expect_err("refused").to_string();
        assert!(err.contains("--ssh-max-unauthenticated (11)") && err.contains("lower it"), "{err}");
        for flag in ["--ssh-max-channels-per-connection", "--ssh-max-unauthenticated-per-address"] {
            assert!(Cli::try_parse_from(["serve", flag, "0"]).is_err(), "{flag} 0 would let nothing in");
        }
    }

    #[test]
    fn https_is_the_default_and_plain_http_only_when_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = parse(&["--tls-san", "vpc.example,10.0.0.5"]);
        assert_eq!(args.tls_san.len(), 2);
        match transport(dir.path(), &args).expect("self-signed") {
            Transport::Tls { self_signed, identity } => assert!(self_signed && identity.fingerprint.len() == 95),
            Transport::Plain => panic!("plain HTTP without --plain-http"),
        }
        assert!(dir.path().join("tls/cert.pem").exists());
        assert!(matches!(transport(dir.path(), &parse(&["--plain-http"])).expect("plain"), Transport::Plain));
        assert!(Cli::try_parse_from(["serve", "--tls-san", "not a name"]).is_err());
    }

    #[test]
    fn half_or_contradictory_tls_flags_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("temp dir");
        let refusal = |flags: &[&str]| match transport(dir.path(), &parse(flags)) {
            Ok(_) => panic!("{flags:?} accepted"),
            Err(err) => err.to_string(),
        };
        assert!(refusal(&["--tls-cert", "/c.pem"]).contains("without --tls-key: give both"));
        assert!(refusal(&["--tls-key", "/k.pem"]).contains("without --tls-cert: give both"));
        let both = refusal(&["--plain-http", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"]);
        assert!(both.contains("contradict"), "{both}");
        assert!(!dir.path().join("tls").exists(), "no certificate made for refused flags");
    }

    #[test]
    fn the_panel_url_names_the_host_when_listening_everywhere() {
        assert_eq!(panel_url("https", "127.0.0.1:5555".parse().expect("addr")), "https://127.0.0.1:5555");
        assert_eq!(panel_url("https", "[::1]:5555".parse().expect("addr")), "https://[::1]:5555");
        let everywhere = panel_url("https", "0.0.0.0:5555".parse().expect("addr"));
        assert!(!everywhere.contains("0.0.0.0") && everywhere.ends_with(":5555"), "{everywhere}");
    }

    #[test]
    fn the_fd_warning_names_the_flags_and_the_limit() {
        let config = gateway_config(&parse(&[])).expect("defaults");
        // 1000 x (1 + 64) + 1024
        assert_eq!(fd_limit_warning(&config, 66_024), None);
        let warning = fd_limit_warning(&config, 66_023).expect("a warning");
        assert!(warning.contains("66024") && warning.contains("66023"), "{warning}");
        assert!(warning.contains("--ssh-max-connections 1000") && warning.contains("LimitNOFILE="), "{warning}");
    }
}
