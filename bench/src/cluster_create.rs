//! bench/cluster-create: time from the API call until every machine of an
//! N-machine cluster answers SSH (a real `ssh … true` with a member's key), for
//! N = 1, 10 and 30, next to the floor measured in the same run: `docker network
//! create` and plain `docker run` of the same image with the same settings, all
//! at once, the key copied in with `docker cp`, waited for in the same way.
//!
//! Usage (as root, dockerd running, image flvpc/debian:12 built):
//!   cargo run --release -p flvpc-bench --bin cluster-create -- [--runs 3] [--sizes 1,10,30] [--flvpc target/release/flvpc]
//! Traffic goes only to 127.0.0.1 and to the containers the benchmark creates.

use anyhow::{bail, Context, Result};
use flvpc_bench::{login, run, Flvpc};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "flvpc/debian:12";
const PORT_BASE: u16 = 25000;
const FLOOR_PORT_BASE: u16 = 26000;

struct Options {
    runs: usize,
    sizes: Vec<usize>,
    flvpc: PathBuf,
}

fn options() -> Result<Options> {
    let mut opts = Options { runs: 3, sizes: vec![1, 10, 30], flvpc: PathBuf::from("target/release/flvpc") };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => opts.runs = args.next().context("--runs N")?.parse()?,
            "--sizes" => {
                opts.sizes =
                    args.next().context("--sizes 1,10,30")?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--flvpc" => opts.flvpc = PathBuf::from(args.next().context("--flvpc PATH")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if !opts.flvpc.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p flvpc) or pass --flvpc PATH",
            opts.flvpc.display()
        );
    }
    Ok(opts)
}

fn ssh_ok(key: &Path, port: u16) -> bool {
    Command::new("ssh")
        .args(["-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
        .arg(port.to_string())
        .args(["root@127.0.0.1", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until every port answers a real SSH login, polling them concurrently.
async fn wait_all_ssh(key: &Path, ports: &[u16], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut tasks = Vec::new();
    for &port in ports {
        let key = key.to_path_buf();
        tasks.push(tokio::task::spawn_blocking(move || {
            while Instant::now() < deadline {
                if ssh_ok(&key, port) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        }));
    }
    for task in tasks {
        if !task.await? {
            bail!("a machine did not answer SSH within {timeout:?}");
        }
    }
    Ok(())
}

/// flvpc: from POST create until every machine answers SSH.
async fn flvpc_once(server: &Flvpc, token: &str, ns: &str, n: usize, key: &Path) -> Result<Duration> {
    let spec = format!(
        "machines:\n- count: {n}\n  spec:\n    name: m%d\n    image: {IMAGE}\n    portMappings:\n    - containerPort: 22\n      hostPort: {PORT_BASE}\n    ignite: {{cpus: 1, memory: 256MB}}\n"
    );
    server.put_spec(token, ns, spec).await?;
    let started = Instant::now();
    let op =
        server.call(token, reqwest::Method::POST, &format!("/api/v1/namespaces/{ns}/cluster/create"), None).await?;
    let ports: Vec<u16> = (0..n).map(|i| PORT_BASE + i as u16).collect();
    wait_all_ssh(key, &ports, Duration::from_secs(300)).await?;
    let elapsed = started.elapsed();
    server.wait_op(token, op["operation"].as_str().context("operation id")?).await?;
    server.act(token, &format!("/api/v1/namespaces/{ns}/cluster/delete")).await?;
    Ok(elapsed)
}

/// The floor: `docker run` of the same image and settings, all at once, key copied in with `docker cp`.
async fn floor_once(n: usize, key: &Path, authorized_keys: &Path) -> Result<Duration> {
    let network = "flvpc-bench-floor";
    let _ = Command::new("docker").args(["network", "rm", network]).output();
    // The network is part of the work (flvpc makes one per namespace), so it is timed too.
    let started = Instant::now();
    run(Command::new("docker").args(["network", "create", network]))?;
    let mut tasks = Vec::new();
    for i in 0..n {
        let authorized_keys = authorized_keys.to_path_buf();
        tasks.push(tokio::task::spawn_blocking(move || -> Result<()> {
            let name = format!("flvpc-bench-floor-{i}");
            let port = FLOOR_PORT_BASE + i as u16;
            run(Command::new("docker").args([
                "run",
                "-d",
                "--name",
                &name,
                "--hostname",
                &format!("m{i}"),
                "--network",
                network,
                "--tmpfs",
                "/run",
                "--tmpfs",
                "/run/lock",
                "--tmpfs",
                "/tmp",
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:ro",
                "--cpu-shares",
                "1024",
                "--memory",
                "256m",
                "--memory-swap",
                "256m",
                "--stop-signal",
                "SIGRTMIN+3",
                "-p",
                &format!("127.0.0.1:{port}:22"),
                IMAGE,
                "/sbin/init",
            ]))?;
            run(Command::new("docker")
                .arg("cp")
                .arg(&authorized_keys)
                .arg(format!("{name}:/root/.ssh/authorized_keys")))?;
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let ports: Vec<u16> = (0..n).map(|i| FLOOR_PORT_BASE + i as u16).collect();
    wait_all_ssh(key, &ports, Duration::from_secs(300)).await?;
    let elapsed = started.elapsed();
    let names: Vec<String> = (0..n).map(|i| format!("flvpc-bench-floor-{i}")).collect();
    run(Command::new("docker").args(["rm", "-f"]).args(&names))?;
    let _ = Command::new("docker").args(["network", "rm", network]).output();
    Ok(elapsed)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let opts = options()?;
    run(Command::new("docker").args(["image", "inspect", IMAGE]))
        .context("build the image first: flvpc image build")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path();
    let key = data.join("id");
    run(Command::new("ssh-keygen").args(["-q", "-N", "", "-t", "ed25519", "-f"]).arg(&key))?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    let authorized_keys = data.join("authorized_keys");
    std::fs::write(&authorized_keys, &public)?;

    let server = Flvpc::start(&opts.flvpc, data, &["--publish-address", "127.0.0.1"]).await?;
    let admin = server.admin.clone();
    use reqwest::Method;
    server
        .call(&admin, Method::POST, "/api/v1/users", Some(json!({"login": "bench", "password": "bench-password"})))
        .await?;
    let user = login(&server.client, &server.base, "bench", "bench-password").await?;
    server
        .call(&user, Method::POST, "/api/v1/keys", Some(json!({"name": "bench", "public_key": public.trim()})))
        .await?;

    println!("cluster-create: API call until every machine answers `ssh root@… true`; runs per size: {}", opts.runs);
    println!("floor: `docker run` of {IMAGE}, same settings, all at once, key via `docker cp`, same SSH wait");
    println!(
        "{:>4}  {:>12}  {:>12}  {:>7}   flvpc runs / floor runs (s)",
        "N", "flvpc median", "floor median", "ratio"
    );
    for &n in &opts.sizes {
        let ns = format!("bench{n}");
        server.call(&admin, Method::POST, "/api/v1/namespaces", Some(json!({"name": ns}))).await?;
        let member = format!("/api/v1/namespaces/{ns}/members/bench");
        server.call(&admin, Method::PUT, &member, Some(json!({"role": "admin"}))).await?;
        let mut ours = Vec::new();
        let mut floor = Vec::new();
        for _ in 0..opts.runs {
            // Interleaved, so both see the same machine noise.
            ours.push(flvpc_once(&server, &user, &ns, n, &key).await?);
            floor.push(floor_once(n, &key, &authorized_keys).await?);
        }
        let (m_ours, m_floor) = (median(ours.clone()), median(floor.clone()));
        let fmt = |v: &[Duration]| v.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>().join(" ");
        println!(
            "{n:>4}  {:>11.2}s  {:>11.2}s  {:>6.2}x   {} / {}",
            m_ours.as_secs_f64(),
            m_floor.as_secs_f64(),
            m_ours.as_secs_f64() / m_floor.as_secs_f64(),
            fmt(&ours),
            fmt(&floor)
        );
        server.call(&admin, Method::DELETE, &format!("/api/v1/namespaces/{ns}"), None).await?;
    }
    Ok(())
}
