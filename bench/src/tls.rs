//! bench/tls: what HTTPS costs the panel and API, next to plain HTTP measured in the same run
//! against a second server of the same binary (`--plain-http`), in alternating rounds.
//!
//! 1. A new connection per request (`GET /healthz`, one client at a time): the TCP connect plus,
//!    over HTTPS, the TLS handshake (the self-signed ECDSA certificate flvpc makes). This is what a
//!    script that runs one `curl` per call pays.
//! 2. Kept-alive connections (`GET /api/v1/me` with a bearer token, N clients at once): the
//!    per-request cost once connected, which is what the panel, the CLI and the event streams pay.
//!
//! Each prints the median over rounds of p50/p99 and requests per second, and the HTTPS/plain ratio.
//!
//! Usage (as root): cargo run --release -p flvpc-bench --bin tls -- [--rounds 3] [--fresh 300]
//!   [--clients 20] [--requests 4000] [--flvpc target/release/flvpc]
//! Traffic goes only to 127.0.0.1.

use anyhow::{Context, Result};
use flvpc_bench::{free_port, load_average, median, Flvpc};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    rounds: usize,
    fresh: usize,
    clients: usize,
    requests: usize,
    flvpc: PathBuf,
}

fn options() -> Result<Options> {
    let mut o =
        Options { rounds: 3, fresh: 300, clients: 20, requests: 4000, flvpc: PathBuf::from("target/release/flvpc") };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().with_context(|| format!("{arg} needs a value"))?;
        let number = || value.parse::<usize>().with_context(|| format!("{arg}: {value:?} is not a number"));
        match arg.as_str() {
            "--rounds" => o.rounds = number()?.clamp(1, 20),
            "--fresh" => o.fresh = number()?.clamp(10, 100_000),
            "--clients" => o.clients = number()?.clamp(1, 1000),
            "--requests" => o.requests = number()?.clamp(100, 1_000_000),
            "--flvpc" => o.flvpc = PathBuf::from(value),
            _ => anyhow::bail!("unknown option {arg} (see the comment at the top of bench/src/tls.rs)"),
        }
    }
    Ok(o)
}

/// p50, p99 and requests per second of one measurement.
#[derive(Clone, Copy)]
struct Sample {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn sample(mut latencies: Vec<Duration>, elapsed: Duration) -> Sample {
    latencies.sort();
    let per_second = latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    Sample { p50: percentile(&latencies, 0.5), p99: percentile(&latencies, 0.99), per_second }
}

/// `count` requests one after another, each on a connection of its own. `cert`: the certificate
/// an HTTPS server serves (the only one trusted).
async fn fresh_connections(server: &Flvpc, cert: Option<&Path>, count: usize) -> Result<Sample> {
    // No connection is kept for the next request.
    let pem = cert.map(std::fs::read).transpose()?;
    let mut builder = reqwest::Client::builder().pool_max_idle_per_host(0);
    if let Some(pem) = pem {
        builder = builder.tls_certs_only([reqwest::Certificate::from_pem(&pem)?]);
    }
    let client = builder.build()?;
    let url = format!("{}/healthz", server.base);
    let mut latencies = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        let status = client.get(&url).send().await?.status();
        anyhow::ensure!(status.is_success(), "GET /healthz: {status}");
        latencies.push(t.elapsed());
    }
    Ok(sample(latencies, start.elapsed()))
}

/// `requests` authenticated requests shared by `clients` concurrent tasks on kept-alive connections.
async fn kept_alive(server: &Flvpc, clients: usize, requests: usize) -> Result<Sample> {
    let url = Arc::new(format!("{}/api/v1/me", server.base));
    // Connections are opened before the clock starts: this measures requests, not handshakes.
    for _ in 0..clients {
        server.client.get(url.as_str()).bearer_auth(&server.admin).send().await?.error_for_status()?;
    }
    let per_client = requests / clients;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, token) = (server.client.clone(), url.clone(), server.admin.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                client.get(url.as_str()).bearer_auth(&token).send().await?.error_for_status()?.bytes().await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(sample(all, start.elapsed()))
}

fn summary(samples: &[Sample]) -> Sample {
    Sample {
        p50: median(samples.iter().map(|s| s.p50).collect()),
        p99: median(samples.iter().map(|s| s.p99).collect()),
        per_second: {
            let mut rates: Vec<f64> = samples.iter().map(|s| s.per_second).collect();
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        },
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn report(what: &str, plain: Sample, https: Sample) {
    println!("{what}");
    println!("  plain HTTP (baseline): p50 {}  p99 {}  {:.0} req/s", ms(plain.p50), ms(plain.p99), plain.per_second);
    println!("  HTTPS:                 p50 {}  p99 {}  {:.0} req/s", ms(https.p50), ms(https.p99), https.per_second);
    println!(
        "  ratio HTTPS/plain:     p50 {:.2}x  p99 {:.2}x  throughput {:.2}x",
        https.p50.as_secs_f64() / plain.p50.as_secs_f64().max(1e-9),
        https.p99.as_secs_f64() / plain.p99.as_secs_f64().max(1e-9),
        https.per_second / plain.per_second.max(1e-9)
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = options()?;
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
    let ssh = [format!("127.0.0.1:{}", free_port()?), format!("127.0.0.1:{}", free_port()?)];
    let plain = Flvpc::start(&o.flvpc, dirs.0.path(), &["--ssh-listen", &ssh[0]]).await?;
    let https = Flvpc::start_https(&o.flvpc, dirs.1.path(), &["--ssh-listen", &ssh[1]]).await?;
    let cert = dirs.1.path().join("tls/cert.pem");
    println!("bench/tls: {} rounds, load average before: {}", o.rounds, load_average());
    let (mut fresh, mut alive) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for round in 0..o.rounds {
        // Alternating which goes first, so that neither always runs on a warmer machine.
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for is_https in order {
            let (server, cert) = if is_https { (&https, Some(cert.as_path())) } else { (&plain, None) };
            let f = fresh_connections(server, cert, o.fresh).await?;
            let a = kept_alive(server, o.clients, o.requests).await?;
            if is_https {
                fresh.1.push(f);
                alive.1.push(a);
            } else {
                fresh.0.push(f);
                alive.0.push(a);
            }
        }
    }
    report(
        &format!("1. a new connection per request: GET /healthz x {}, one at a time (median of rounds)", o.fresh),
        summary(&fresh.0),
        summary(&fresh.1),
    );
    report(
        &format!(
            "2. kept-alive connections: GET /api/v1/me x {}, {} clients at once (median of rounds)",
            o.requests, o.clients
        ),
        summary(&alive.0),
        summary(&alive.1),
    );
    println!("load average after: {}", load_average());
    Ok(())
}
