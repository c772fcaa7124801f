//! bench/usage-sampler: what the live usage sampler costs. The flvpc server's own CPU
//! time and resident memory over a window with 0 machines (the baseline, same server,
//! same run), then with N running machines (default 30), plus the sampler's round time
//! read from /metrics. dockerd's CPU over the same windows is printed too: work flvpc asks
//! of the engine (inspects, archive uploads) costs there, not in flvpc's own process.
//!
//! Usage (as root, dockerd running, image built):
//!   cargo run --release -p flvpc-bench --bin usage-sampler -- [--machines 30] [--window 60] [--flvpc target/release/flvpc]

use anyhow::{bail, Context, Result};
use flvpc_bench::Flvpc;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields.get(11).context("utime")?.parse::<f64>()? + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// The PID of the process named `dockerd`, if one runs (read from /proc, nothing is signalled).
fn dockerd_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        (comm.trim() == "dockerd").then_some(pid)
    })
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// flvpc's CPU %, its RSS, the median sampler round (ms) and dockerd's CPU % over one window.
async fn window(client: &reqwest::Client, base: &str, pid: u32, secs: u64) -> Result<(f64, f64, f64, f64)> {
    let cpu0 = cpu_seconds(pid)?;
    let dockerd = dockerd_pid();
    let docker0 = dockerd.and_then(|p| cpu_seconds(p).ok());
    let started = Instant::now();
    let mut rounds = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let text = client.get(format!("{base}/metrics")).send().await?.text().await?;
        if let Some(v) = text.lines().find_map(|l| l.strip_prefix("flvpc_usage_sampler_round_microseconds ")) {
            rounds.push(v.trim().parse::<f64>().unwrap_or(0.0) / 1000.0);
        }
    }
    let cpu = (cpu_seconds(pid)? - cpu0) / started.elapsed().as_secs_f64() * 100.0;
    let docker = match (dockerd.and_then(|p| cpu_seconds(p).ok()), docker0) {
        (Some(after), Some(before)) => (after - before) / started.elapsed().as_secs_f64() * 100.0,
        _ => f64::NAN,
    };
    rounds.sort_by(|a, b| a.total_cmp(b));
    let round = rounds.get(rounds.len() / 2).copied().unwrap_or(0.0);
    Ok((cpu, rss_mib(pid), round, docker))
}

#[tokio::main]
async fn main() -> Result<()> {
    let (mut machines, mut secs, mut flvpc) = (30usize, 60u64, PathBuf::from("target/release/flvpc"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--machines" => machines = args.next().context("--machines N")?.parse()?,
            "--window" => secs = args.next().context("--window SECONDS")?.parse()?,
            "--flvpc" => flvpc = PathBuf::from(args.next().context("--flvpc PATH")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path();
    let ssh_listen = format!("127.0.0.1:{}", flvpc_bench::free_port()?);
    let server = Flvpc::start(&flvpc, data, &["--ssh-listen", &ssh_listen]).await?;
    let pid = server.process.0.id();
    let (client, base, token) = (server.client.clone(), server.base.clone(), server.admin.clone());
    let call =
        |method: reqwest::Method, path: &str| client.request(method, format!("{base}{path}")).bearer_auth(&token);

    let (cpu0, rss0, round0, docker0) = window(&client, &base, pid, secs).await?;

    call(reqwest::Method::POST, "/api/v1/namespaces").json(&json!({"name": "samplerbench"})).send().await?;
    let spec =
        format!("machines:\n- count: {machines}\n  spec:\n    name: s%d\n    ignite: {{cpus: 1, memory: 256MB}}\n");
    let r = call(reqwest::Method::PUT, "/api/v1/namespaces/samplerbench/cluster")
        .header("content-type", "application/yaml")
        .body(spec)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("spec: {}", r.text().await?);
    }
    let op: Value =
        call(reqwest::Method::POST, "/api/v1/namespaces/samplerbench/cluster/create").send().await?.json().await?;
    let id = op["operation"].as_str().context("operation")?.to_owned();
    loop {
        let op: Value = call(reqwest::Method::GET, &format!("/api/v1/operations/{id}")).send().await?.json().await?;
        match op["state"].as_str() {
            Some("succeeded") => break,
            Some("failed") => bail!("create failed: {op}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    // Let the machines finish booting before measuring.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (cpu1, rss1, round1, docker1) = window(&client, &base, pid, secs).await?;

    println!("usage-sampler: flvpc serve's own CPU and memory over {secs} s windows; sampler every 5 s");
    println!("{:<22} {:>10} {:>10} {:>16} {:>14}", "", "CPU %", "RSS MiB", "sampler round", "dockerd CPU %");
    println!("{:<22} {:>10.2} {:>10.1} {:>13.1} ms {:>14.2}", "0 machines (baseline)", cpu0, rss0, round0, docker0);
    println!(
        "{:<22} {:>10.2} {:>10.1} {:>13.1} ms {:>14.2}",
        format!("{machines} running machines"),
        cpu1,
        rss1,
        round1,
        docker1
    );
    println!(
        "difference: {:+.2} % of one CPU, {:+.1} MiB (includes the reconciler's 30 s resync of the machines)",
        cpu1 - cpu0,
        rss1 - rss0
    );
    let op: Value =
        call(reqwest::Method::POST, "/api/v1/namespaces/samplerbench/cluster/delete").send().await?.json().await?;
    let id = op["operation"].as_str().context("operation")?.to_owned();
    for _ in 0..240 {
        let op: Value = call(reqwest::Method::GET, &format!("/api/v1/operations/{id}")).send().await?.json().await?;
        if op["state"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
