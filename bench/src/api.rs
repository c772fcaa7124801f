//! bench/api: latency of the read API under concurrent clients, at two scales, next to a floor
//! measured against the same server in the same run (`/healthz`: no credentials, no SQL but a
//! ping; and `/api/v1/me`: the authenticated floor, the per-request principal load).
//!
//! 1. 1,000 machines in the database (default 10 namespaces of 100), all desired `stopped` and
//!    never created, so the engine carries nothing: the list path is what is measured. The
//!    namespaces, the member and the cluster specs are made through the API; the machine records
//!    (with one published port each) are inserted with the `sqlite3` program into the server's
//!    database, as the records a `cluster/create` followed by `cluster/stop` leaves behind before the
//!    reconciler created anything.
//! 2. 200 running machines in one namespace, created through the API (`cluster/create`) and
//!    booted: the same requests while the reconciler, the usage sampler and the machines run.
//!
//! A load generator in this process: N clients (tokio tasks with keep-alive connections) share a
//! fixed number of requests per endpoint; each request's latency is recorded and p50/p90/p99 and
//! requests per second printed, with each p99 as a ratio to the `/api/v1/me` floor.
//!
//! Usage (as root, dockerd running, image built, `sqlite3` installed):
//!   cargo run --release -p flvpc-bench --bin api -- [--scale db|running|both] [--db-machines 1000]
//!     [--namespaces 10] [--running 200] [--clients 20] [--requests 4000] [--flvpc target/release/flvpc]
//! Traffic goes only to 127.0.0.1 (the machines are created by the server under test).

use anyhow::{bail, Context, Result};
use flvpc_bench::{login, run, Flvpc};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    db: bool,
    running: bool,
    db_machines: usize,
    namespaces: usize,
    running_machines: usize,
    clients: usize,
    requests: usize,
    flvpc: PathBuf,
}

fn options() -> Result<Options> {
    let mut o = Options {
        db: true,
        running: true,
        db_machines: 1000,
        namespaces: 10,
        running_machines: 200,
        clients: 20,
        requests: 4000,
        flvpc: PathBuf::from("target/release/flvpc"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().with_context(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--scale" => match value("db, running or both")?.as_str() {
                "db" => (o.db, o.running) = (true, false),
                "running" => (o.db, o.running) = (false, true),
                "both" => (o.db, o.running) = (true, true),
                other => bail!("--scale {other:?}: use db, running or both"),
            },
            "--db-machines" => o.db_machines = value("N")?.parse()?,
            "--namespaces" => o.namespaces = value("N")?.parse()?,
            "--running" => o.running_machines = value("N")?.parse()?,
            "--clients" => o.clients = value("N")?.parse()?,
            "--requests" => o.requests = value("N")?.parse()?,
            "--flvpc" => o.flvpc = PathBuf::from(value("PATH")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.clients == 0 || o.requests < o.clients || o.namespaces == 0 || o.db_machines < o.namespaces {
        bail!("need at least 1 client, as many requests as clients, and as many machines as namespaces");
    }
    Ok(o)
}

/// Latencies of one endpoint under load.
struct Measured {
    label: String,
    sorted: Vec<Duration>,
    elapsed: Duration,
    bytes: usize,
}

impl Measured {
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.sorted.len() as f64 * q).ceil() as usize).clamp(1, self.sorted.len()) - 1;
        self.sorted[i]
    }
    fn rps(&self) -> f64 {
        self.sorted.len() as f64 / self.elapsed.as_secs_f64()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `requests` GETs of `path` shared by `clients` concurrent clients, after a short warm-up;
/// every answer must be 200 and is read whole.
async fn load(base: &str, token: &str, path: &str, clients: usize, requests: usize) -> Result<Measured> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let url = Arc::new(format!("{base}{path}"));
    let token = Arc::new(token.to_owned());
    let round = |per_client: usize| {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (client, url, token) = (client.clone(), url.clone(), token.clone());
                tokio::spawn(async move {
                    let mut times = Vec::with_capacity(per_client);
                    let mut bytes = 0;
                    for _ in 0..per_client {
                        let started = Instant::now();
                        let resp = client.get(url.as_str()).bearer_auth(token.as_str()).send().await?;
                        let status = resp.status();
                        let body = resp.bytes().await?;
                        times.push(started.elapsed());
                        if !status.is_success() {
                            bail!("{url}: HTTP {status}: {}", String::from_utf8_lossy(&body));
                        }
                        bytes = body.len();
                    }
                    Ok::<_, anyhow::Error>((times, bytes))
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            let mut bytes = 0;
            for task in tasks {
                let (times, b) = task.await??;
                all.extend(times);
                bytes = b;
            }
            Ok::<_, anyhow::Error>((all, bytes))
        }
    };
    round(5).await?;
    let started = Instant::now();
    let (mut sorted, bytes) = round(requests / clients).await?;
    let elapsed = started.elapsed();
    sorted.sort();
    Ok(Measured { label: path.to_owned(), sorted, elapsed, bytes })
}

fn print_table(title: &str, rows: &[Measured]) {
    println!("\n{title}");
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "GET", "p50 ms", "p90 ms", "p99 ms", "req/s", "p99/floor", "bytes"
    );
    let floor = rows.iter().find(|m| m.label == "/api/v1/me").map(|m| ms(m.quantile(0.99))).unwrap_or(f64::NAN);
    for m in rows {
        println!(
            "{:<44} {:>9.2} {:>9.2} {:>9.2} {:>9.0} {:>9.2}x {:>9}",
            m.label,
            ms(m.quantile(0.5)),
            ms(m.quantile(0.9)),
            ms(m.quantile(0.99)),
            m.rps(),
            ms(m.quantile(0.99)) / floor,
            m.bytes
        );
    }
}

/// The endpoints, floors first.
async fn measure(server: &Flvpc, token: &str, ns: &str, o: &Options) -> Result<Vec<Measured>> {
    let paths = [
        "/healthz".to_owned(),
        "/api/v1/me".to_owned(),
        "/api/v1/namespaces".to_owned(),
        format!("/api/v1/namespaces/{ns}/cluster"),
        format!("/api/v1/namespaces/{ns}/machines"),
    ];
    let mut out = Vec::new();
    for path in paths {
        out.push(load(&server.base, token, &path, o.clients, o.requests).await?);
    }
    Ok(out)
}

/// A user `member` with role `user` in `namespaces`; their bearer token.
async fn member(server: &Flvpc, namespaces: &[String]) -> Result<String> {
    let admin = &server.admin;
    let post = reqwest::Method::POST;
    server.call(admin, post, "/api/v1/users", Some(json!({"login": "member", "password": "member-password"}))).await?;
    for ns in namespaces {
        server.call(admin, reqwest::Method::POST, "/api/v1/namespaces", Some(json!({"name": ns}))).await?;
        let path = format!("/api/v1/namespaces/{ns}/members/member");
        server.call(admin, reqwest::Method::PUT, &path, Some(json!({"role": "user"}))).await?;
    }
    login(&server.client, &server.base, "member", "member-password").await
}

fn spec(count: usize, prefix: &str, port: Option<u16>) -> String {
    let ports =
        port.map(|p| format!("    portMappings:\n    - containerPort: 22\n      hostPort: {p}\n")).unwrap_or_default();
    format!(
        "machines:\n- count: {count}\n  spec:\n    name: {prefix}%d\n{ports}    ignite: {{cpus: 1, memory: 256MB}}\n"
    )
}

/// Inserts `per_ns` stopped, never created machine records (each with host port 22 published)
/// into every namespace, in one transaction of the `sqlite3` program (SQL on its stdin, no shell).
fn seed(db: &Path, namespaces: &[String], per_ns: usize) -> Result<()> {
    let mut sql = String::from("BEGIN;\n");
    let mut port = 20000u32;
    for ns in namespaces {
        // Names are the bench's own ([a-z0-9]), never user input.
        for i in 1..=per_ns {
            sql.push_str(&format!(
                "INSERT INTO machines (namespace_id, name, image, backend, cpus, memory_mb, disk_gb, spec_hash, desired, \
                 observed, observed_at, created_at, updated_at) SELECT id, 'm{i}', 'flvpc/debian:12', 'docker', 1, 256, 0, \
                 'seeded', 'stopped', 'not_created', 0, 0, 0 FROM namespaces WHERE name = '{ns}';\n\
                 INSERT INTO host_ports (host_port, protocol, machine_id, container_port) VALUES ({port}, 'tcp', last_insert_rowid(), 22);\n"
            ));
            port += 1;
        }
    }
    sql.push_str("COMMIT;\n");
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run sqlite3: install it (apt-get install sqlite3)")?;
    child.stdin.take().context("sqlite3 stdin")?.write_all(sql.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() || !out.stderr.is_empty() {
        bail!("seeding the machines failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

async fn db_scale(o: &Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ssh_listen = format!("127.0.0.1:{}", flvpc_bench::free_port()?);
    let server = Flvpc::start(&o.flvpc, dir.path(), &["--ssh-listen", &ssh_listen]).await?;
    let per_ns = o.db_machines / o.namespaces;
    let namespaces: Vec<String> = (0..o.namespaces).map(|i| format!("db{i:02}")).collect();
    let token = member(&server, &namespaces).await?;
    for ns in &namespaces {
        server.put_spec(&server.admin, ns, spec(per_ns, "m", Some(20000))).await?;
    }
    seed(&dir.path().join("flvpc.db"), &namespaces, per_ns)?;
    let listed = server
        .call(&token, reqwest::Method::GET, &format!("/api/v1/namespaces/{}/machines", namespaces[0]), None)
        .await?;
    let n = listed.as_array().map_or(0, Vec::len);
    if n != per_ns {
        bail!("the seeded namespace lists {n} machines, not {per_ns}");
    }
    let rows = measure(&server, &token, &namespaces[0], o).await?;
    print_table(
        &format!(
            "{} machines in the database ({} namespaces of {per_ns}, stopped, never created); {} clients, {} requests each",
            per_ns * o.namespaces,
            o.namespaces,
            o.clients,
            o.requests
        ),
        &rows,
    );
    Ok(())
}

/// Removes every container of the server's instance and the `running` namespace's network
/// (after a failure left some behind).
fn remove_containers(db: &Path) -> Result<()> {
    let instance =
        run(Command::new("sqlite3").arg(db).arg("SELECT value FROM server_settings WHERE key = 'instance_id'"))?;
    let instance = instance.trim();
    if instance.is_empty() || !instance.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Ok(());
    }
    let ids = run(Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=flvpc.instance={instance}")]))?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        run(Command::new("docker").args(["rm", "-f"]).args(&ids))?;
    }
    // The namespace network too, once Docker let go of it (it may lag behind the containers).
    for _ in 0..10 {
        let exists = run(Command::new("docker").args(["network", "inspect", "flvpc-running"])).is_ok();
        if !exists || run(Command::new("docker").args(["network", "rm", "flvpc-running"])).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

async fn running_scale(o: &Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("flvpc.db");
    let result = async {
        let ssh_listen = format!("127.0.0.1:{}", flvpc_bench::free_port()?);
        let server = Flvpc::start(&o.flvpc, dir.path(), &["--ssh-listen", &ssh_listen]).await?;
        let ns = "running".to_owned();
        let token = member(&server, std::slice::from_ref(&ns)).await?;
        server.put_spec(&server.admin, &ns, spec(o.running_machines, "r", None)).await?;
        let started = Instant::now();
        server.act(&server.admin, &format!("/api/v1/namespaces/{ns}/cluster/create")).await?;
        eprintln!(
            "{} machines running after {:.0} s; letting them boot",
            o.running_machines,
            started.elapsed().as_secs_f64()
        );
        // As bench/usage-sampler: measure once the machines' systemd settled.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let rows = measure(&server, &token, &ns, o).await?;
        print_table(
            &format!(
                "{} running machines in one namespace; {} clients, {} requests each",
                o.running_machines, o.clients, o.requests
            ),
            &rows,
        );
        server.act(&server.admin, &format!("/api/v1/namespaces/{ns}/cluster/delete")).await
    }
    .await;
    // Whatever happened above, no container of this run stays.
    if let Err(err) = remove_containers(&db) {
        eprintln!("cleaning up containers failed: {err}");
    }
    result
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = options()?;
    println!(
        "api: GET latency with {} concurrent clients (keep-alive), {} requests per endpoint; floors: /healthz, /api/v1/me",
        o.clients, o.requests
    );
    if o.db {
        db_scale(&o).await?;
    }
    if o.running {
        running_scale(&o).await?;
    }
    Ok(())
}
