//! Several hosts, end to end (issue 13): two extra Docker engines in network namespaces made by
//! this test stand for two servers. flvpc's local engine is the first (`DOCKER_HOST`), the second
//! is added with `flvpc host add`; the control plane is on PostgreSQL. Checked with the real
//! binary, real engines, a real swarm and OpenSSH through the gateway:
//!
//! - the engines form a swarm and a namespace's machines are spread over both hosts, each shown
//!   with its host; they reach each other by name across the hosts (over the overlay network);
//! - another namespace's machine reaches neither of them, nor they it;
//! - a host whose engine stops leaves its machines `unknown` (not stopped, nothing recreated
//!   elsewhere), and when it is back they are adopted (same container);
//! - a second flvpc process on the same database does not reconcile while the first lives, and
//!   takes over within seconds when the first is killed.
//!
//! Everything it made is removed at the end (machines, networks, swarm, engines, namespaces,
//! database), also when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{free_port, listens_within, output, Server, BIN};

#[path = "../../flvpc-host/tests/support/testbed.rs"]
mod testbed;
use testbed::Testbed;

const IMAGE: &str = "flvpc/debian:12";
const PASSWORD: &str = "admin-password";

/// A PostgreSQL database of this test's own, dropped when the test ends.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    fn create() -> Database {
        let admin = std::env::var("FLVPC_TEST_POSTGRES")
            .expect("FLVPC_TEST_POSTGRES: the multi-host test runs its control plane on PostgreSQL");
        let name = format!("flvpc_multihost_{}", std::process::id());
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("admin URL has a database");
        let db = Database { url: format!("{base}/{name}"), admin, name };
        db.psql(&format!("DROP DATABASE IF EXISTS {}", db.name));
        db.psql(&format!("CREATE DATABASE {}", db.name));
        db
    }

    fn psql(&self, statement: &str) {
        let out = Command::new("psql").args([self.admin.as_str(), "-q", "-c", statement]).output().expect("run psql");
        assert!(out.status.success(), "psql {statement}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([self.admin.as_str(), "-q", "-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

/// One flvpc process: its data dir, ports and CLI configuration.
struct Flvpc {
    data: PathBuf,
    port: u16,
    ssh_port: u16,
    server: Option<Server>,
}

impl Flvpc {
    fn start(data: &Path, db: &Database, local_engine: &testbed::EngineAt) -> Flvpc {
        std::fs::create_dir_all(data).expect("data dir");
        let (port, ssh_port) = (free_port(), free_port());
        let child = Command::new(BIN)
            .args([
                "serve",
                "--plain-http",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--ssh-listen",
                &format!("127.0.0.1:{ssh_port}"),
                "--port-range",
                "24700-24799",
                "--database-url",
                &db.url,
                "--host-address",
                &local_engine.addr.to_string(),
            ])
            .env("FLVPC_DATA_DIR", data)
            .env("DOCKER_HOST", format!("unix://{}", local_engine.socket.display()))
            .stdout(Stdio::from(std::fs::File::create(data.join("serve.log")).expect("log file")))
            .stderr(Stdio::from(std::fs::File::create(data.join("serve.err")).expect("log file")))
            .spawn()
            .expect("start flvpc serve");
        let server = Server(child);
        assert!(listens_within(port, 60), "flvpc serve did not start: {}", log_tail(data));
        Flvpc { data: data.to_owned(), port, ssh_port, server: Some(server) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `flvpc ARGS` as the signed-in admin of this process; its standard output.
    fn cli(&self, args: &[&str]) -> String {
        let out = self.try_cli(args);
        assert!(
            out.status.success(),
            "flvpc {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(&self.data)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn try_cli(&self, args: &[&str]) -> std::process::Output {
        output(
            Command::new(BIN)
                .args(args)
                .env("FLVPC_DATA_DIR", &self.data)
                .env("XDG_CONFIG_HOME", self.data.join("config")),
            None,
        )
    }

    fn login(&self) {
        let out = output(
            Command::new(BIN)
                .args(["login", "--server", &self.url(), "--login", "admin", "--password-stdin"])
                .env("XDG_CONFIG_HOME", self.data.join("config")),
            Some(&format!("{PASSWORD}\n")),
        );
        assert!(out.status.success(), "login: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `/healthz?detail` of this process.
    async fn health(&self) -> serde_json::Value {
        let answer = reqwest::get(format!("{}/healthz?detail", self.url())).await.expect("healthz");
        answer.json().await.expect("healthz json")
    }

    fn kill(&mut self) {
        self.server.take();
    }
}

fn log_tail(data: &Path) -> String {
    let log = std::fs::read_to_string(data.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    format!("\n--- serve.log (last lines) ---\n{}", lines[lines.len().saturating_sub(25)..].join("\n"))
}

/// One row of `flvpc machines list`: (name, state, host, ip).
fn machines(flvpc: &Flvpc, ns: &str) -> Vec<(String, String, String, String)> {
    flvpc
        .cli(&["machines", "list", ns])
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells.len() >= 5).then(|| (cells[0].into(), cells[1].into(), cells[3].into(), cells[4].into()))
        })
        .collect()
}

/// Waits until `check` holds for the machines of `ns` (bounded), and returns them.
async fn wait_machines(
    flvpc: &Flvpc,
    ns: &str,
    what: &str,
    seconds: u64,
    check: impl Fn(&[(String, String, String, String)]) -> bool,
) -> Vec<(String, String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let list = machines(flvpc, ns);
        if check(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {list:?}\n{}{}",
            flvpc.cli(&["api", &format!("/api/v1/namespaces/{ns}/machines")]),
            log_tail(&flvpc.data)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `command` in machine `target` (`name.ns`) as root through the gateway with OpenSSH.
fn ssh(flvpc: &Flvpc, key: &Path, target: &str, command: &str) -> std::process::Output {
    let jump = format!(
        "ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -W %h:%p admin@127.0.0.1",
        key.display(),
        flvpc.ssh_port
    );
    Command::new("ssh")
        .args(["-i", &key.to_string_lossy(), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", &format!("ProxyCommand={jump}")])
        .args([&format!("root@{target}"), command])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

/// Runs `command` in `target` until it succeeds (sshd and keys take a moment after a boot).
async fn ssh_ok(flvpc: &Flvpc, key: &Path, target: &str, command: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = ssh(flvpc, key, target, command);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "ssh {target} {command:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(&flvpc.data)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A TCP connect from inside a machine, bounded by `timeout 3`: whether it connected.
fn reaches(flvpc: &Flvpc, key: &Path, from: &str, to: &str) -> bool {
    let probe = format!("timeout 3 bash -c '</dev/tcp/{to}/22' && echo OPEN || echo CLOSED");
    let out = ssh(flvpc, key, from, &probe);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "probe from {from}: {}", String::from_utf8_lossy(&out.stderr));
    text.contains("OPEN")
}

fn container_id(engine: &testbed::EngineAt, name: &str) -> String {
    let out = Command::new("docker")
        .args(["-H", &format!("unix://{}", engine.socket.display()), "inspect", "-f", "{{.Id}}", name])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn machines_span_two_hosts_and_a_second_flvpc_takes_over() {
    let mut bed = Testbed::start(2).await;
    let started = Instant::now();
    for i in 0..2 {
        bed.load_image(i, IMAGE).await;
    }
    eprintln!("testbed: 2 engines with {IMAGE} in {:.1} s", started.elapsed().as_secs_f64());
    let (local, far) = (bed.engine(0), bed.engine(1));
    let db = Database::create();
    let dir = tempfile::tempdir().expect("dir");

    let init = output(
        Command::new(BIN)
            .args(["--database-url", &db.url, "admin", "init", "--login", "admin", "--password-stdin"])
            .env("FLVPC_DATA_DIR", dir.path().join("a")),
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(init.status.success(), "admin init: {}", String::from_utf8_lossy(&init.stderr));
    let mut a = Flvpc::start(&dir.path().join("a"), &db, &local);
    a.login();

    // The second host: its engine must answer, then the hosts form a swarm.
    let added = a.cli(&[
        "host",
        "add",
        "far",
        "--engine",
        &format!("unix://{}", far.socket.display()),
        "--address",
        &far.addr.to_string(),
    ]);
    assert!(added.contains("host far added"), "{added}");
    let refused =
        a.try_cli(&["host", "add", "gone", "--engine", "unix:///nonexistent/docker.sock", "--address", "192.0.2.9"]);
    assert!(!refused.status.success(), "a host whose engine does not answer is not added");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = a.cli(&["host", "list"]);
        let ok = list.lines().filter(|l| l.starts_with("local ") || l.starts_with("far ")).all(|l| l.contains(" ok "));
        if ok && list.contains("far ") && !list.contains("gone") {
            break;
        }
        assert!(Instant::now() < deadline, "hosts not both healthy: {list}{}", log_tail(&a.data));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let swarm = bed.connect(1).await.host_info().await.expect("info of the far engine");
    assert!(swarm.swarm.is_some(), "the far engine joined the swarm");

    // A key, two namespaces with the admin as a member of both.
    let key = dir.path().join("id_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "multihost", "-f", &key.to_string_lossy()])
        .output()
        .expect("ssh-keygen");
    assert!(keygen.status.success());
    a.cli(&["keys", "add", "k", &format!("{}.pub", key.display())]);
    let (blue, red) = (format!("blue{}", std::process::id() % 10000), format!("red{}", std::process::id() % 10000));
    for ns in [&blue, &red] {
        a.cli(&["ns", "create", ns]);
        a.cli(&["ns", "set-member", ns, "admin", "--role", "admin"]);
    }
    let spec = |count: u32| {
        format!(
            "machines:\n- count: {count}\n  spec:\n    name: n%d\n    portMappings:\n    - containerPort: 22\n    ignite: {{cpus: 1, memory: 256MB}}\n"
        )
    };
    let blue_spec = dir.path().join("blue.yaml");
    std::fs::write(&blue_spec, spec(2)).expect("spec");
    let red_spec = dir.path().join("red.yaml");
    std::fs::write(&red_spec, spec(1)).expect("spec");
    let started = Instant::now();
    a.cli(&["cluster", "apply", &blue, "-f", &blue_spec.to_string_lossy()]);
    eprintln!("two machines over two hosts running in {:.1} s", started.elapsed().as_secs_f64());
    a.cli(&["cluster", "apply", &red, "-f", &red_spec.to_string_lossy()]);
    let blue_list =
        wait_machines(&a, &blue, "blue running", 120, |l| l.len() == 2 && l.iter().all(|m| m.1 == "running")).await;
    let hosts: Vec<&str> = blue_list.iter().map(|m| m.2.as_str()).collect();
    assert!(hosts.contains(&"local") && hosts.contains(&"far"), "a group is spread over the hosts: {blue_list:?}");
    let red_list = wait_machines(&a, &red, "red running", 120, |l| l.len() == 1 && l[0].1 == "running").await;
    let on_far = blue_list.iter().find(|m| m.2 == "far").map(|m| m.0.clone()).expect("a machine on far");
    let on_local = blue_list.iter().find(|m| m.2 == "local").map(|m| m.0.clone()).expect("a machine on local");

    // By name, across the hosts, both ways; another namespace is out of reach both ways.
    let from_local = format!("{on_local}.{blue}");
    let from_far = format!("{on_far}.{blue}");
    let resolved = ssh_ok(&a, &key, &from_local, &format!("getent hosts {on_far}")).await;
    assert!(!resolved.trim().is_empty(), "{on_far} resolves on {on_local}");
    assert!(reaches(&a, &key, &from_local, &on_far), "{on_local} (local) reaches {on_far} (far) by name");
    assert!(reaches(&a, &key, &from_far, &on_local), "{on_far} (far) reaches {on_local} (local) by name");
    let red_machine = format!("{}.{red}", red_list[0].0);
    let red_ip = red_list[0].3.clone();
    ssh_ok(&a, &key, &red_machine, "true").await;
    assert!(!reaches(&a, &key, &from_local, &red_ip), "blue on local must not reach red at {red_ip}");
    assert!(!reaches(&a, &key, &from_far, &red_ip), "blue on far must not reach red at {red_ip}");
    for m in &blue_list {
        assert!(!reaches(&a, &key, &red_machine, &m.3), "red must not reach blue's {} at {}", m.0, m.3);
    }

    // The far host goes away: its machine is unknown, not stopped, and nothing is made elsewhere.
    let far_container = format!("{on_far}.{blue}");
    let before = container_id(&far, &far_container);
    assert!(!before.is_empty(), "the far machine's container");
    bed.stop_engine(1).await;
    let list =
        wait_machines(&a, &blue, "far's machine unknown", 90, |l| l.iter().any(|m| m.0 == on_far && m.1 == "unknown"))
            .await;
    assert!(list.iter().any(|m| m.0 == on_local && m.1 == "running"), "local's machine runs on: {list:?}");
    assert_eq!(container_id(&local, &far_container), "", "nothing was made on the local host in its place");
    bed.start_engine(1).await;
    wait_machines(&a, &blue, "far's machine adopted", 120, |l| l.iter().all(|m| m.1 == "running")).await;
    assert_eq!(container_id(&far, &far_container), before, "adopted: the same container, not a new one");

    // A second process on the same database serves but does not reconcile while the first lives.
    let mut b = Flvpc::start(&dir.path().join("b"), &db, &local);
    b.login();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.health().await["reconciling"], true);
    assert_eq!(b.health().await["reconciling"], false, "only one process reconciles");
    a.kill();
    let killed = Instant::now();
    loop {
        if b.health().await["reconciling"] == true {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the second process did not take over{}",
            log_tail(&b.data)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("reconciling handed over {:.1} s after the leader was killed", killed.elapsed().as_secs_f64());
    // It acts: a stop through it is done.
    b.cli(&["machines", "stop", &format!("{blue}/{on_far}")]);
    wait_machines(&b, &blue, "stopped through the new leader", 60, |l| {
        l.iter().any(|m| m.0 == on_far && m.1 == "stopped")
    })
    .await;

    // Everything goes: the clusters, then the hosts' swarm, engines and namespaces.
    for ns in [&blue, &red] {
        b.cli(&["cluster", "delete", ns]);
    }
    for ns in [&blue, &red] {
        wait_machines(&b, ns, "deleted", 120, |l| l.is_empty()).await;
    }
    b.cli(&["host", "remove", "far"]);
    b.kill();
    bed.cleanup().await;
}
