//! `--hosts 2` of bench/cluster-create (issue 13): flvpc spreading one cluster over two hosts.
//!
//! Two extra Docker engines in network namespaces of their own (the test-support testbed) stand
//! for two servers. flvpc runs with engine 0 as its local engine (`DOCKER_HOST`, `--host-address`)
//! on SQLite, and engine 1 is added as host `far` (`POST /api/v1/hosts`). Machines are reached as
//! a person outside would: at their host's address and published SSH port, which the machine
//! object's `ssh.direct` names.
//!
//! Teardown order matters: the server is killed before the testbed goes, or its reconciler would
//! recreate what the cleanup removes. [`TwoHosts`] holds them in that order, so a drop on an
//! error does the same as [`TwoHosts::cleanup`].

use anyhow::{bail, Context, Result};
use flvpc_bench::{free_port, login, run, Flvpc, Killed};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::testbed::{EngineAt, Testbed};
use crate::{wait_all_ssh, Times};

/// The name the second host is added under.
const FAR: &str = "far";
/// Host ports flvpc hands out on the testbed engines (outside the one-host run's fixed ports).
const PORT_RANGE: &str = "24700-24799";
/// How long the added host may take to be reachable (it joins a swarm first).
const HOSTS_UP: Duration = Duration::from_secs(120);

/// A flvpc server over two testbed engines, with a bench user who holds the key.
pub struct TwoHosts {
    /// Declared first: dropped (killed) before the testbed is cleaned.
    pub server: Flvpc,
    /// The bench user's token.
    pub user: String,
    /// Where each host's published ports are reached, by host name.
    addresses: BTreeMap<String, String>,
    bed: Testbed,
}

/// How the machines of one cluster were placed: machines per host name.
pub type Placement = BTreeMap<String, usize>;

/// How often a failed `cluster/delete` is asked again before the run fails.
const DELETE_ATTEMPTS: usize = 5;

/// What one two-host run measured besides its times.
pub struct RunNotes {
    /// Machines per host.
    pub placement: Placement,
    /// The failed `cluster/delete` operations before one succeeded, with their errors (flvpc
    /// retries what is left when asked again; the delete time includes them).
    pub delete_failures: Vec<String>,
    /// From the delete operation's success until no engine held a container of the cluster.
    pub delete_settled: Duration,
}

impl TwoHosts {
    /// Starts the testbed, copies `image` into both engines, starts flvpc in `data` on engine 0,
    /// adds engine 1 and waits until both hosts are reachable; then a user `bench` with `public`.
    pub async fn start(binary: &Path, data: &Path, image: &str, public: &str) -> Result<TwoHosts> {
        let started = Instant::now();
        let bed = Testbed::start(2).await;
        for i in 0..2 {
            bed.load_image(i, image).await;
        }
        let (local, far) = (bed.engine(0), bed.engine(1));
        println!(
            "testbed: 2 engines ({} and {}) with {image} in {:.1} s",
            local.addr,
            far.addr,
            started.elapsed().as_secs_f64()
        );
        let addresses = BTreeMap::from([
            // The local host's `ssh.direct` names the address the API was reached at (loopback);
            // its ports are published inside engine 0's namespace, reached at engine 0's address.
            (flvpc_model::HostName::LOCAL.to_owned(), local.addr.to_string()),
            (FAR.to_owned(), far.addr.to_string()),
        ]);
        // Built before anything can fail, so a failure drops the testbed and cleans it up.
        let server = start_server(binary, data, &local).await?;
        let mut two = TwoHosts { server, user: String::new(), addresses, bed };
        two.add_far(&far).await?;
        two.user = crate::bench_user(&two.server, public).await?;
        Ok(two)
    }

    async fn add_far(&self, far: &EngineAt) -> Result<()> {
        let (server, admin) = (&self.server, &self.server.admin);
        let body =
            json!({"name": FAR, "engine": format!("unix://{}", far.socket.display()), "address": far.addr.to_string()});
        server.call(admin, reqwest::Method::POST, "/api/v1/hosts", Some(body)).await.context("adding host far")?;
        let deadline = Instant::now() + HOSTS_UP;
        loop {
            let hosts = server.call(admin, reqwest::Method::GET, "/api/v1/hosts", None).await?;
            let list = hosts.as_array().map(Vec::as_slice).unwrap_or_default();
            if list.len() == 2 && list.iter().all(|h| h["reachable"] == true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the two hosts were not both reachable within {HOSTS_UP:?}: {hosts}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// One cluster of `n` over both hosts: from POST create until every machine answers SSH at
    /// its host's address and published port; then stop and delete. Also where they were placed.
    pub async fn once(&self, ns: &str, n: usize, key: &Path, image: &str) -> Result<(Times, RunNotes)> {
        let (server, token) = (&self.server, self.user.as_str());
        // No hostPort: each gets one from --port-range on the host it is placed on.
        let spec = format!(
            "machines:\n- count: {n}\n  spec:\n    name: m%d\n    image: {image}\n    portMappings:\n    - containerPort: 22\n    ignite: {{cpus: 1, memory: 256MB}}\n"
        );
        server.put_spec(token, ns, spec).await?;
        let started = Instant::now();
        let path = format!("/api/v1/namespaces/{ns}/cluster/create");
        let op = server.call(token, reqwest::Method::POST, &path, None).await?;
        // As the one-host run: SSH is tried once flvpc says the machines run.
        server.wait_op(token, op["operation"].as_str().context("operation id")?).await?;
        let path = format!("/api/v1/namespaces/{ns}/machines");
        let machines = server.call(token, reqwest::Method::GET, &path, None).await?;
        let (targets, placement) = self.targets(&machines)?;
        if targets.len() != n {
            bail!("{n} machines expected, {} listed: {machines}", targets.len());
        }
        wait_all_ssh(key, &targets, Duration::from_secs(300)).await?;
        let create = started.elapsed();
        let started = Instant::now();
        server.act(token, &format!("/api/v1/namespaces/{ns}/cluster/stop")).await?;
        let stop = started.elapsed();
        let started = Instant::now();
        // Until the operation succeeds, as the module's documentation of the one-host run says:
        // a delete across hosts can fail on a race between the hosts (the namespace's overlay
        // network already removed by the other host's side); each failure is reported.
        let mut delete_failures = Vec::new();
        while let Err(e) = server.act(token, &format!("/api/v1/namespaces/{ns}/cluster/delete")).await {
            delete_failures.push(e.to_string());
            if delete_failures.len() >= DELETE_ATTEMPTS {
                bail!("cluster/delete failed {DELETE_ATTEMPTS} times: {delete_failures:?}");
            }
        }
        let delete = started.elapsed();
        let delete_settled = self.check_gone(ns).await?;
        Ok((Times { create, stop, delete }, RunNotes { placement, delete_failures, delete_settled }))
    }

    /// Each machine's SSH address and port (from its host and `ssh.direct`), and the placement.
    fn targets(&self, machines: &Value) -> Result<(Vec<(String, u16)>, Placement)> {
        let mut targets = Vec::new();
        let mut placement = Placement::new();
        for m in machines.as_array().context("a list of machines")? {
            let host = m["host"].as_str().with_context(|| format!("machine without a host: {m}"))?;
            let address = self.addresses.get(host).with_context(|| format!("machine on unknown host {host:?}: {m}"))?;
            let direct = m["ssh"]["direct"].as_str().with_context(|| format!("machine without ssh.direct: {m}"))?;
            targets.push((address.clone(), direct_port(direct).with_context(|| format!("ssh.direct {direct:?}"))?));
            *placement.entry(host.to_owned()).or_default() += 1;
        }
        Ok((targets, placement))
    }

    /// After the timing: no engine still holds a container of `ns` (`<name>.<ns>`), so the delete
    /// measured was a real one. Bounded: a removal may still be settling; how long it took.
    async fn check_gone(&self, ns: &str) -> Result<Duration> {
        let suffix = format!(".{ns}");
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        loop {
            let mut left = Vec::new();
            for i in 0..self.bed.len() {
                let host = format!("unix://{}", self.bed.engine(i).socket.display());
                let names = run(Command::new("docker").args(["-H", &host, "ps", "-a", "--format", "{{.Names}}"]))?;
                left.extend(names.lines().filter(|name| name.ends_with(&suffix)).map(str::to_owned));
            }
            if left.is_empty() {
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                bail!("cluster/delete succeeded but containers of {ns} are left: {left:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the server, then removes everything the testbed made.
    pub async fn cleanup(self) {
        let TwoHosts { server, mut bed, .. } = self;
        drop(server);
        bed.cleanup().await;
    }
}

/// The port of `ssh -p PORT root@HOST`.
fn direct_port(direct: &str) -> Option<u16> {
    let mut words = direct.split_whitespace();
    words.find(|w| *w == "-p")?;
    words.next()?.parse().ok()
}

/// `flvpc serve` on SQLite in `data` with `local` as its local engine and host address, on
/// loopback ports of its own (the one-host server holds the default gateway port).
async fn start_server(binary: &Path, data: &Path, local: &EngineAt) -> Result<Flvpc> {
    let docker_host = format!("unix://{}", local.socket.display());
    let mut init = Command::new(binary)
        .args(["admin", "init", "--login", "admin", "--password-stdin"])
        .env("FLVPC_DATA_DIR", data)
        .env("DOCKER_HOST", &docker_host)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    init.stdin.take().context("stdin")?.write_all(b"admin-password\n")?;
    if !init.wait()?.success() {
        bail!("flvpc admin init failed in {}", data.display());
    }
    let (port, ssh_port) = (free_port()?, free_port()?);
    let log = data.join("serve.log");
    let file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let process = Killed(
        Command::new(binary)
            .args(["serve", "--plain-http", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--ssh-listen", &format!("127.0.0.1:{ssh_port}"), "--port-range", PORT_RANGE])
            .args(["--host-address", &local.addr.to_string()])
            .env("FLVPC_DATA_DIR", data)
            .env("DOCKER_HOST", &docker_host)
            .env("FLVPC_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("flvpc serve on the testbed did not start within 60 s; its log:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin = login(&client, &base, "admin", "admin-password").await?;
    Ok(Flvpc { process, base, client, admin })
}

/// Checks that the testbed's programs are there before anything is made (a clear error, not a
/// panic half-way through the testbed's start).
pub fn check_tools() -> Result<()> {
    for (tool, version) in [("ip", "-V"), ("nsenter", "--version"), ("dockerd", "--version"), ("iptables", "--version")]
    {
        run(Command::new(tool).arg(version))
            .with_context(|| format!("--hosts 2 needs {tool} (and root): install it or run without --hosts"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::direct_port;

    #[test]
    fn direct_port_is_read_from_the_command() {
        assert_eq!(direct_port("ssh -p 24701 root@10.215.3.11"), Some(24701));
        assert_eq!(direct_port("ssh root@10.215.3.11"), None);
        assert_eq!(direct_port("ssh -p x root@h"), None);
    }
}
