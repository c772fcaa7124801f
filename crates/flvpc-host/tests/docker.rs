//! End-to-end tests against the real Docker engine, as root.
//!
//! They need dockerd running (`dockerd >/var/log/dockerd.log 2>&1 &`) and fail with a clear
//! message when it is not. The image `flvpc/debian:12` is built on first use if missing
//! (about two minutes; set `FLVPC_TEST_REQUIRE_IMAGE=1` to fail instead, e.g. in a CI step
//! that built it before). Every test works in its own random namespace and removes what it
//! created, also when it fails. Traffic goes only to 127.0.0.1 and the test's own containers.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use flvpc_host::{
    build_debian12, wait_ssh_ready, BuildOptions, DockerEngine, EngineError, MachineSpec, MachineState, Phase,
    PortMapping, DEFAULT_IMAGE,
};
use flvpc_model::{MachineKey, NamespaceName};
use tokio::process::Command;
use tokio::sync::{OnceCell, RwLock};

/// The timing test takes this exclusively so that its numbers are not disturbed by the
/// other tests, which share it.
static MACHINE_LOAD: RwLock<()> = RwLock::const_new(());
static IMAGE_READY: OnceCell<Result<Option<Duration>, String>> = OnceCell::const_new();

const BOOT: Duration = Duration::from_secs(90);

async fn engine() -> DockerEngine {
    match DockerEngine::connect().await {
        Ok(e) => e.for_instance(TEST_INSTANCE),
        Err(e) => panic!("these tests need the Docker engine: {e}"),
    }
}

/// Builds the image if it is missing (once per test process). Returns how long the build
/// took, or `None` if the image was already there.
async fn ensure_image() -> Option<Duration> {
    let result = IMAGE_READY
        .get_or_init(|| async {
            let engine = engine().await;
            match engine.image_exists(DEFAULT_IMAGE).await {
                Ok(true) => return Ok(None),
                Ok(false) => {}
                Err(e) => return Err(e.to_string()),
            }
            if std::env::var("FLVPC_TEST_REQUIRE_IMAGE").is_ok_and(|v| v == "1") {
                return Err(format!(
                    "image {DEFAULT_IMAGE} is not present and FLVPC_TEST_REQUIRE_IMAGE=1: build it with \
                     `flvpc image build` or run these tests without that variable"
                ));
            }
            eprintln!("image {DEFAULT_IMAGE} is missing: building it now (about two minutes)");
            let start = Instant::now();
            let mut last_phase = None;
            let mut last_done = 0;
            build_debian12(&engine, BuildOptions::default(), |p| {
                let step = p.done.unwrap_or(0);
                if last_phase != Some(p.phase) || step >= last_done + 25 || p.phase == Phase::Done {
                    eprintln!(
                        "  [{:>5.1}s] {}: {}/{} {}",
                        start.elapsed().as_secs_f64(),
                        p.phase.label(),
                        p.done.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                        p.total.map(|d| d.to_string()).unwrap_or_else(|| "?".into()),
                        p.message
                    );
                    last_phase = Some(p.phase);
                    last_done = step;
                }
            })
            .await
            .map(|_| Some(start.elapsed()))
            .map_err(|e| format!("building {DEFAULT_IMAGE} failed: {e}"))
        })
        .await;
    match result {
        Ok(built) => *built,
        Err(e) => panic!("{e}"),
    }
}

/// A random namespace whose machines and network are removed when it goes out of scope,
/// including when the test panics.
struct TestNs {
    name: String,
    extra_containers: Vec<String>,
}

impl TestNs {
    fn new() -> Self {
        Self { name: format!("t{:08x}", rand::random::<u32>()), extra_containers: Vec::new() }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let ns = self.name.clone();
        let extra = std::mem::take(&mut self.extra_containers);
        // Drop cannot await, and the test's runtime may be shutting down: use a fresh one.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                let Ok(engine) = DockerEngine::connect().await else { return };
                let engine = engine.for_instance(TEST_INSTANCE);
                let docker = bollard::Docker::connect_with_unix_defaults().ok();
                for container in extra {
                    if let Some(d) = &docker {
                        let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
                        let _ = d.remove_container(&container, Some(opts)).await;
                    }
                }
                if let Ok(machines) = engine.list_machines(Some(&n(&ns))).await {
                    for m in machines {
                        let _ = engine.remove_machine(&m.key).await;
                    }
                }
                if let Err(e) = engine.remove_network(&n(&ns)).await {
                    eprintln!("cleanup of namespace {ns}: {e}");
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A host port that was free a moment ago (bound to 127.0.0.1:0 and released).
fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports: every listener is held until all are picked, since the kernel may
/// hand out a port just released again (ten ports picked one by one once held a duplicate).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

/// The flvpc instance these tests act as (the engine only touches containers labelled with it).
const TEST_INSTANCE: &str = "flvpc-host-tests";

fn k(ns: &str, name: &str) -> MachineKey {
    MachineKey::parse(ns, name).expect("valid machine key")
}

fn n(ns: &str) -> NamespaceName {
    NamespaceName::parse(ns).expect("valid namespace")
}

fn machine(ns: &str, name: &str, ssh_port: u16) -> MachineSpec {
    let mut spec = MachineSpec::new(k(ns, name), DEFAULT_IMAGE);
    spec.memory_mb = 512;
    spec.ports = vec![PortMapping::tcp(22, Some(ssh_port)).on(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    spec
}

async fn exec(engine: &DockerEngine, ns: &str, name: &str, argv: &[&str]) -> flvpc_host::ExecOutput {
    match tokio::time::timeout(BOOT, engine.exec_machine(&k(ns, name), argv)).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("exec {argv:?} in {ns}/{name}: {e}"),
        Err(_) => panic!("exec {argv:?} in {ns}/{name} did not finish within {BOOT:?}"),
    }
}

/// Waits until systemd finished booting and returns its verdict (`running` or `degraded`).
async fn system_state(engine: &DockerEngine, ns: &str, name: &str) -> String {
    let out = exec(engine, ns, name, &["systemctl", "is-system-running", "--wait"]).await;
    let state = out.stdout.trim().to_owned();
    if state != "running" {
        let failed = exec(engine, ns, name, &["systemctl", "--failed", "--no-legend", "--plain"]).await;
        eprintln!("{ns}/{name}: system is {state}; failed units:\n{}", failed.stdout);
    }
    state
}

async fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .await
        .expect("run ssh-keygen (apt-get install openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("read public key");
    (key, public)
}

/// Runs `ssh … root@127.0.0.1 <command>` with a stock OpenSSH client; returns (success, stdout).
async fn ssh(key: &Path, port: u16, command: &str) -> (bool, String, String) {
    let out = Command::new("ssh")
        .arg("-i")
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
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
        .arg(port.to_string())
        .arg("root@127.0.0.1")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run ssh (apt-get install openssh-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[tokio::test]
async fn image_build_is_idempotent() {
    let built = ensure_image().await;
    if let Some(took) = built {
        eprintln!("TIMING image build: {:.1} s", took.as_secs_f64());
    }
    let engine = engine().await;
    let before = flvpc_host::list_images(&engine).await.expect("list images");
    let original = before.iter().find(|i| i.tag == DEFAULT_IMAGE).expect("image listed after build").clone();
    assert!(original.flvpc, "the image carries the flvpc.image label");

    let start = Instant::now();
    let mut phases = Vec::new();
    let again = build_debian12(&engine, BuildOptions::default(), |p| phases.push(p.phase)).await.expect("second build");
    let took = start.elapsed();
    assert_eq!(again.id, original.id, "the second call must not rebuild");
    assert_eq!(phases, vec![Phase::Done], "nothing but Done is reported when the image exists");
    assert!(took < Duration::from_secs(5), "the second call took {took:?}");
}

#[tokio::test]
async fn two_machines_boot_with_own_identity_and_real_ssh() {
    ensure_image().await;
    let _shared = MACHINE_LOAD.read().await;
    let engine = engine().await;
    let ns = TestNs::new();
    let keys = tempfile::tempdir().expect("tempdir");
    let (key, public) = keypair(keys.path(), "alice").await;
    let (other_key, other_public) = keypair(keys.path(), "bob").await;

    engine.ensure_network(&n(&ns.name)).await.expect("network");
    engine.ensure_network(&n(&ns.name)).await.expect("ensure_network is idempotent");
    let ports = free_ports(2);
    let (port_a, port_b) = (ports[0], ports[1]);
    let start = Instant::now();
    engine.create_machine(&machine(&ns.name, "node0", port_a)).await.expect("create node0");
    engine.create_machine(&machine(&ns.name, "node1", port_b)).await.expect("create node1");
    // Keys written before the first start: new machines get their keys at creation.
    engine.write_authorized_keys(&k(&ns.name, "node0"), &public).await.expect("keys before start");
    engine.start_machine(&k(&ns.name, "node0")).await.expect("start node0");
    engine.start_machine(&k(&ns.name, "node1")).await.expect("start node1");
    let banner = wait_ssh_ready(port_a, BOOT).await.expect("sshd of node0");
    eprintln!("TIMING 2 machines created, first SSH banner: {:.2} s", start.elapsed().as_secs_f64());
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner}");
    wait_ssh_ready(port_b, BOOT).await.expect("sshd of node1");

    for name in ["node0", "node1"] {
        let state = system_state(&engine, &ns.name, name).await;
        assert!(state == "running" || state == "degraded", "{name}: systemd is {state:?}");
    }

    // Each machine has its own machine-id and its own SSH host keys.
    let id0 = exec(&engine, &ns.name, "node0", &["cat", "/etc/machine-id"]).await.stdout;
    let id1 = exec(&engine, &ns.name, "node1", &["cat", "/etc/machine-id"]).await.stdout;
    assert_eq!(id0.trim().len(), 32, "machine-id of node0: {id0:?}");
    assert_eq!(id1.trim().len(), 32, "machine-id of node1: {id1:?}");
    assert_ne!(id0, id1, "machine-ids must differ");
    let host_key = ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"];
    let hk0 = exec(&engine, &ns.name, "node0", &host_key).await;
    let hk1 = exec(&engine, &ns.name, "node1", &host_key).await;
    assert!(hk0.stdout.starts_with("ssh-ed25519 "), "node0 host key: {hk0:?}");
    assert!(hk1.stdout.starts_with("ssh-ed25519 "), "node1 host key: {hk1:?}");
    assert_ne!(hk0.stdout, hk1.stdout, "SSH host keys must differ between machines");

    // authorized_keys: whole file, 0600 root, in a 0700 root directory.
    let modes =
        exec(&engine, &ns.name, "node0", &["stat", "-c", "%a %U %G", "/root/.ssh", "/root/.ssh/authorized_keys"])
            .await
            .stdout;
    assert_eq!(modes.lines().collect::<Vec<_>>(), vec!["700 root root", "600 root root"]);

    // Real OpenSSH login with the key, then without it.
    let (ok, out, err) = ssh(&key, port_a, "hostname").await;
    assert!(ok, "ssh with alice's key failed: {err}");
    assert_eq!(out, "node0");
    let (ok, _, _) = ssh(&other_key, port_a, "hostname").await;
    assert!(!ok, "bob's key is not authorized yet");
    engine.write_authorized_keys(&k(&ns.name, "node0"), &other_public).await.expect("rewrite keys");
    let (ok, _, _) = ssh(&key, port_a, "hostname").await;
    assert!(!ok, "alice's key was removed: login must fail");
    let (ok, out, err) = ssh(&other_key, port_a, "hostname").await;
    assert!(ok && out == "node0", "bob's key now works: {err}");
    // Running machine, keys added afterwards: no restart needed.
    engine.write_authorized_keys(&k(&ns.name, "node1"), &public).await.expect("keys on a running machine");
    let (ok, out, err) = ssh(&key, port_b, "hostname").await;
    assert!(ok && out == "node1", "ssh into node1: {err}");

    // Machines of one namespace reach each other by name.
    let listed = engine.list_machines(Some(&n(&ns.name))).await.expect("list");
    assert_eq!(listed.iter().map(|m| m.key.name.as_str()).collect::<Vec<_>>(), vec!["node0", "node1"]);
    assert!(listed.iter().all(|m| m.state == MachineState::Running));
    let ip1 = listed[1].ip.clone().expect("node1 has an IP on its network");
    assert_eq!(listed[0].ports.first().map(|p| (p.container_port, p.host_port)), Some((22, port_a)));
    let resolved = exec(&engine, &ns.name, "node0", &["getent", "hosts", "node1"]).await.stdout;
    assert!(resolved.starts_with(&ip1), "node1 resolves to {resolved:?}, expected {ip1}");
    let ping = exec(&engine, &ns.name, "node0", &["ping", "-c1", "-W2", "node1"]).await;
    assert_eq!(ping.exit_code, 0, "node0 pings node1 by name: {ping:?}");

    // Machines come back after a host reboot (unless stopped on purpose), never privileged.
    let docker = bollard::Docker::connect_with_unix_defaults().expect("docker");
    let raw = docker
        .inspect_container(&format!("node0.{}", ns.name), None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect("inspect container");
    let host = raw.host_config.expect("host config");
    assert_eq!(host.restart_policy.and_then(|r| r.name), Some(bollard::models::RestartPolicyNameEnum::UNLESS_STOPPED));
    assert_eq!(host.privileged, Some(false));
    assert_eq!(raw.config.and_then(|c| c.stop_signal).as_deref(), Some("SIGRTMIN+3"));

    let details = engine.inspect_machine(&k(&ns.name, "node0")).await.expect("inspect").expect("exists");
    assert_eq!(details.hostname, "node0");
    assert_eq!(details.memory_mb, 512);
    assert_eq!(details.cpus, 1);
    assert_eq!(details.configured_ports, vec![PortMapping::tcp(22, Some(port_a)).on(IpAddr::V4(Ipv4Addr::LOCALHOST))]);
}

/// Two namespaces, booted: a1 and a2 in the first, b1 in the second; a1's and b1's addresses.
async fn two_namespaces(engine: &DockerEngine) -> (TestNs, TestNs, String, String) {
    let (ns1, ns2) = (TestNs::new(), TestNs::new());
    for ns in [&ns1, &ns2] {
        engine.ensure_network(&n(&ns.name)).await.expect("network");
    }
    for (ns, name) in [(&ns1.name, "a1"), (&ns1.name, "a2"), (&ns2.name, "b1")] {
        engine.create_machine(&machine(ns, name, free_port())).await.expect("create");
        engine.start_machine(&k(ns, name)).await.expect("start");
    }
    // Wait for the network inside the machines to be up (systemd done booting).
    for (ns, name) in [(&ns1.name, "a1"), (&ns1.name, "a2"), (&ns2.name, "b1")] {
        system_state(engine, ns, name).await;
    }
    let ip_of = |list: &[flvpc_host::MachineInfo], name: &str| {
        list.iter().find(|m| m.key.name.as_str() == name).and_then(|m| m.ip.clone()).expect("machine has an IP")
    };
    let a = engine.list_machines(Some(&n(&ns1.name))).await.expect("list ns1");
    let b = engine.list_machines(Some(&n(&ns2.name))).await.expect("list ns2");
    let (a1_ip, b1_ip) = (ip_of(&a, "a1"), ip_of(&b, "b1"));
    (ns1, ns2, a1_ip, b1_ip)
}

#[tokio::test]
async fn namespaces_cannot_reach_each_other() {
    ensure_image().await;
    let _shared = MACHINE_LOAD.read().await;
    let engine = engine().await;
    let (ns1, ns2, a1_ip, b1_ip) = two_namespaces(&engine).await;

    // Control: inside one namespace the same probe works, so a failure below means isolation.
    let same = exec(&engine, &ns1.name, "a2", &["ping", "-c1", "-W1", &a1_ip]).await;
    assert_eq!(same.exit_code, 0, "a2 reaches a1 in its own namespace: {same:?}");

    let cross = exec(&engine, &ns2.name, "b1", &["ping", "-c1", "-W1", &a1_ip]).await;
    assert_ne!(cross.exit_code, 0, "b1 ({}, {b1_ip}) must not reach a1 ({a1_ip}) of another namespace", ns2.name);
    let back = exec(&engine, &ns1.name, "a1", &["ping", "-c1", "-W1", &b1_ip]).await;
    assert_ne!(back.exit_code, 0, "a1 must not reach b1 ({b1_ip})");
    let by_name = exec(&engine, &ns2.name, "b1", &["getent", "hosts", "a1"]).await;
    assert_ne!(by_name.exit_code, 0, "a1's name must not resolve from another namespace: {by_name:?}");
}

#[tokio::test]
async fn stop_start_restart_remove_leave_nothing_behind() {
    ensure_image().await;
    let _shared = MACHINE_LOAD.read().await;
    let engine = engine().await;
    let ns = TestNs::new();
    engine.ensure_network(&n(&ns.name)).await.expect("network");
    let port = free_port();
    let created = Instant::now();
    engine.create_machine(&machine(&ns.name, "solo", port)).await.expect("create");
    let err = engine.create_machine(&machine(&ns.name, "solo", free_port())).await.expect_err("duplicate");
    assert!(matches!(err, EngineError::MachineExists { .. }), "{err}");
    assert_eq!(engine.list_machines(Some(&n(&ns.name))).await.expect("list")[0].state, MachineState::Created);

    engine.start_machine(&k(&ns.name, "solo")).await.expect("start");
    wait_ssh_ready(port, BOOT).await.expect("ssh after start");
    eprintln!("TIMING 1 machine, create+start to SSH banner: {:.2} s", created.elapsed().as_secs_f64());
    engine.start_machine(&k(&ns.name, "solo")).await.expect("start of a running machine is a no-op");
    system_state(&engine, &ns.name, "solo").await;
    let machine_id = exec(&engine, &ns.name, "solo", &["cat", "/etc/machine-id"]).await.stdout;

    let stop = Instant::now();
    engine.stop_machine(&k(&ns.name, "solo"), Duration::from_secs(20)).await.expect("stop");
    eprintln!("TIMING clean stop (SIGRTMIN+3): {:.2} s", stop.elapsed().as_secs_f64());
    engine.stop_machine(&k(&ns.name, "solo"), Duration::from_secs(20)).await.expect("stop is idempotent");
    let stopped = engine.list_machines(Some(&n(&ns.name))).await.expect("list");
    assert_eq!(stopped[0].state, MachineState::Stopped);
    assert!(stopped[0].ports.is_empty() && stopped[0].ip.is_none());
    let details = engine.inspect_machine(&k(&ns.name, "solo")).await.expect("inspect").expect("exists");
    assert_eq!(details.configured_ports[0].host_port, Some(port), "the configured port survives a stop");
    assert!(matches!(
        engine.exec_machine(&k(&ns.name, "solo"), &["true"]).await.expect_err("stopped"),
        EngineError::NotRunning { .. }
    ));

    engine.start_machine(&k(&ns.name, "solo")).await.expect("start again");
    wait_ssh_ready(port, BOOT).await.expect("ssh after restart from stopped");
    let again = exec(&engine, &ns.name, "solo", &["cat", "/etc/machine-id"]).await.stdout;
    assert_eq!(again, machine_id, "the machine keeps its identity across stop/start");
    engine.restart_machine(&k(&ns.name, "solo"), Duration::from_secs(20)).await.expect("restart");
    wait_ssh_ready(port, BOOT).await.expect("ssh after restart");

    let err = engine.remove_network(&n(&ns.name)).await.expect_err("network still used");
    assert!(matches!(err, EngineError::NetworkInUse { .. }), "{err}");
    engine.remove_machine(&k(&ns.name, "solo")).await.expect("remove");
    engine.remove_machine(&k(&ns.name, "solo")).await.expect("remove is idempotent");
    engine.remove_network(&n(&ns.name)).await.expect("remove network");
    engine.remove_network(&n(&ns.name)).await.expect("remove network is idempotent");

    assert!(engine.list_machines(Some(&n(&ns.name))).await.expect("list").is_empty());
    let docker = bollard::Docker::connect_with_unix_defaults().expect("docker");
    let filters = HashMap::from([("name", vec![ns.name.as_str()])]);
    let opts = bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    assert!(docker.list_containers(Some(opts)).await.expect("containers").is_empty(), "no container left");
    let nets = bollard::query_parameters::ListNetworksOptionsBuilder::new().filters(&filters).build();
    assert!(docker.list_networks(Some(nets)).await.expect("networks").is_empty(), "no network left");
    let closed = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(closed.is_err(), "the host port is released");
}

#[tokio::test]
async fn foreign_containers_are_never_listed_or_touched() {
    ensure_image().await;
    let _shared = MACHINE_LOAD.read().await;
    let engine = engine().await;
    let mut ns = TestNs::new();
    let docker = bollard::Docker::connect_with_unix_defaults().expect("docker");
    // One plain container and one that merely has a machine's name: neither has labels. A
    // third carries a machine's labels, but another flvpc instance's.
    let plain = format!("plain.{}", ns.name);
    let lookalike = format!("node9.{}", ns.name);
    let other_instance = format!("node8.{}", ns.name);
    for name in [&plain, &lookalike, &other_instance] {
        ns.extra_containers.push(name.clone());
        let labels = (name == &other_instance).then(|| {
            HashMap::from([
                (flvpc_host::LABEL_NAMESPACE.to_owned(), ns.name.clone()),
                (flvpc_host::LABEL_MACHINE.to_owned(), "node8".to_owned()),
                (flvpc_host::LABEL_INSTANCE.to_owned(), "another-flvpc".to_owned()),
            ])
        });
        let body = ContainerCreateBody {
            image: Some(DEFAULT_IMAGE.to_owned()),
            cmd: Some(vec!["/sbin/init".to_owned()]),
            labels,
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        docker.create_container(Some(opts), body).await.expect("create a plain container");
    }
    engine.ensure_network(&n(&ns.name)).await.expect("network");
    engine.create_machine(&machine(&ns.name, "node0", free_port())).await.expect("create");

    let all: BTreeSet<String> =
        engine.list_machines(None).await.expect("list").into_iter().map(|m| m.container).collect();
    assert!(all.contains(&format!("node0.{}", ns.name)));
    assert!(!all.contains(&plain) && !all.contains(&lookalike), "unlabelled containers are not machines");
    assert!(!all.contains(&other_instance), "another instance's machines are not listed");
    let err = engine.stop_machine(&k(&ns.name, "node8"), Duration::from_secs(1)).await.expect_err("other instance");
    assert!(matches!(err, EngineError::NotOurs { .. }), "{err}");
    assert!(matches!(engine.remove_machine(&k(&ns.name, "node8")).await, Err(EngineError::NotOurs { .. })));
    assert!(matches!(engine.exec_machine(&k(&ns.name, "node8"), &["true"]).await, Err(EngineError::NotOurs { .. })));

    let err = engine.remove_machine(&k(&ns.name, "node9")).await.expect_err("not ours");
    assert!(matches!(err, EngineError::NotOurs { .. }), "{err}");
    assert!(matches!(engine.start_machine(&k(&ns.name, "node9")).await, Err(EngineError::NotOurs { .. })));
    assert!(matches!(engine.write_authorized_keys(&k(&ns.name, "node9"), "x").await, Err(EngineError::NotOurs { .. })));
    let still = docker.inspect_container(&lookalike, None::<bollard::query_parameters::InspectContainerOptions>).await;
    assert!(still.is_ok(), "the look-alike container is left alone");

    let err = engine.create_machine(&machine(&ns.name, "node9", free_port())).await.expect_err("name taken");
    assert!(matches!(err, EngineError::MachineExists { .. }), "{err}");
    let mut missing = machine(&ns.name, "node2", free_port());
    missing.image = "flvpc/does-not-exist:0".into();
    let err = engine.create_machine(&missing).await.expect_err("no such image");
    assert!(matches!(err, EngineError::ImageNotFound { .. }), "{err}");
    let other = TestNs::new();
    let err = engine.create_machine(&machine(&other.name, "node0", free_port())).await.expect_err("no network");
    assert!(matches!(err, EngineError::NetworkNotFound { .. }), "{err}");
}

#[tokio::test]
async fn ten_machines_created_concurrently_all_answer_ssh() {
    ensure_image().await;
    // Alone, so that the timing means something.
    let _exclusive = MACHINE_LOAD.write().await;
    let engine = engine().await;
    let ns = TestNs::new();
    engine.ensure_network(&n(&ns.name)).await.expect("network");
    let ports = free_ports(10);
    let start = Instant::now();
    let tasks = ports.iter().enumerate().map(|(i, port)| {
        let engine = engine.clone();
        let spec = machine(&ns.name, &format!("node{i}"), *port);
        let port = *port;
        async move {
            engine.create_machine(&spec).await.expect("create");
            engine.start_machine(&spec.key).await.expect("start");
            wait_ssh_ready(port, BOOT).await.expect("ssh");
            start.elapsed()
        }
    });
    let times = futures::future::join_all(tasks).await;
    let all = start.elapsed();
    let first = times.iter().min().copied().unwrap_or_default();
    eprintln!(
        "TIMING 10 machines concurrently: first SSH banner after {:.2} s, all after {:.2} s",
        first.as_secs_f64(),
        all.as_secs_f64()
    );
    assert_eq!(engine.list_machines(Some(&n(&ns.name))).await.expect("list").len(), 10);

    let removal = Instant::now();
    let removals = (0..10).map(|i| {
        let engine = engine.clone();
        let ns = ns.name.clone();
        async move { engine.remove_machine(&k(&ns, &format!("node{i}"))).await.expect("remove") }
    });
    futures::future::join_all(removals).await;
    eprintln!("TIMING remove 10 running machines concurrently: {:.2} s", removal.elapsed().as_secs_f64());
}

/// Root in a machine cannot write the host's cgroups (its own limits, another container's
/// freezer, the devices controller), cannot open host devices, and has a PID limit; systemd
/// still boots with sshd running. The server's hostile-tenant suite attacks the same over SSH.
#[tokio::test]
async fn root_in_a_machine_cannot_reach_the_hosts_cgroups() {
    ensure_image().await;
    let _shared = MACHINE_LOAD.read().await;
    let engine = engine().await;
    let ns = TestNs::new();
    engine.ensure_network(&n(&ns.name)).await.expect("network");
    let port = free_port();
    let mut spec = machine(&ns.name, "box", port);
    spec.pids_limit = Some(300);
    engine.create_machine(&spec).await.expect("create");
    engine.start_machine(&spec.key).await.expect("start");
    wait_ssh_ready(port, BOOT).await.expect("sshd answers");
    let state = system_state(&engine, &ns.name, "box").await;
    assert_eq!(state.trim(), "running", "systemd boots with the hardened cgroup view");
    let sshd = exec(&engine, &ns.name, "box", &["systemctl", "is-active", "ssh"]).await;
    assert_eq!(sshd.stdout.trim(), "active");

    let details = engine.inspect_machine(&spec.key).await.expect("inspect").expect("exists");
    assert_eq!(details.pids_limit, Some(300));
    // Each write is tried by root in the machine; every one must fail.
    let attempts: [(&str, &str); 6] = [
        ("join the host's devices root", "echo $$ > /sys/fs/cgroup/devices/tasks"),
        (
            "raise its own memory limit",
            "for f in /sys/fs/cgroup/memory/flvpc/*/*/memory.limit_in_bytes; do echo -1 > $f || exit 1; done",
        ),
        ("freeze the host's containers", "echo FROZEN > /sys/fs/cgroup/freezer/docker/freezer.state"),
        (
            "raise its own PID limit",
            "for f in /sys/fs/cgroup/pids/flvpc/*/*/pids.max; do echo max > $f || exit 1; done",
        ),
        ("make a cgroup at the host's systemd root", "mkdir /sys/fs/cgroup/systemd/escape"),
        ("move itself to the host's unified root", "echo $$ > /sys/fs/cgroup/unified/cgroup.procs"),
    ];
    for (what, script) in attempts {
        let out = exec(&engine, &ns.name, "box", &["bash", "-c", script]).await;
        assert_ne!(out.exit_code, 0, "root in a machine could {what}: {out:?}");
    }
    let out =
        exec(&engine, &ns.name, "box", &["bash", "-c", "mknod /tmp/hostdisk b 8 0 && head -c1 /tmp/hostdisk"]).await;
    assert_ne!(out.exit_code, 0, "a host block device must not be readable: {out:?}");
    // Bounded: at most 400 background sleeps, far over the limit of 300.
    let out = exec(
        &engine,
        &ns.name,
        "box",
        &["bash", "-c", "n=0; for i in $(seq 400); do sleep 30 & n=$((n+1)); done 2>/dev/null; echo $n"],
    )
    .await;
    let pids = exec(&engine, &ns.name, "box", &["bash", "-c", "ls /proc | grep -c '^[0-9]'"]).await;
    let running: u32 = pids.stdout.trim().parse().unwrap_or(u32::MAX);
    assert!(running <= 300, "the PID limit holds: {running} processes ({out:?})");
    engine.remove_machine(&spec.key).await.expect("remove");
    // The machine's own cgroups go with it (bounded wait: the kernel frees them asynchronously).
    let dir = flvpc_host::cgroup::machine_dir(&spec.key);
    let left = || {
        ["systemd", "unified", "memory", "pids"]
            .iter()
            .map(|h| PathBuf::from(format!("/sys/fs/cgroup/{h}/flvpc/{dir}")))
            .filter(|p| p.exists())
            .collect::<Vec<_>>()
    };
    for _ in 0..100 {
        if left().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left().is_empty(), "cgroups left behind: {:?}", left());
}

/// Two engine handles of one process (the container and the microVM engine) ensuring one
/// namespace network at the same moment make one network, not two of the same name (Docker's
/// API 1.41 allows that, and the name is then ambiguous for every later call).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_handles_make_one_network() {
    let ns = NamespaceName::parse(&format!("nw{:08x}", rand::random::<u32>())).expect("namespace");
    let (first, second) = (engine().await, engine().await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (engine, ns) = (if i % 2 == 0 { first.clone() } else { second.clone() }, ns.clone());
        tasks.push(tokio::spawn(async move { engine.ensure_network(&ns).await }));
    }
    for task in tasks {
        task.await.expect("task").expect("ensure the network");
    }
    let raw = bollard::Docker::connect_with_unix_defaults().expect("docker");
    let name = flvpc_host::network_name(&ns);
    let filters = std::collections::HashMap::from([("name".to_owned(), vec![name.clone()])]);
    let options = bollard::query_parameters::ListNetworksOptionsBuilder::new().filters(&filters).build();
    let found = raw.list_networks(Some(options)).await.expect("list networks");
    let same: Vec<_> = found.iter().filter(|n| n.name.as_deref() == Some(name.as_str())).collect();
    first.remove_network(&ns).await.expect("remove the network");
    assert_eq!(same.len(), 1, "networks named {name}: {same:?}");
}

/// Namespace networks are cut from flvpc's own pool, so that a server holds more namespaces than
/// Docker's default pools allow (about 30 networks), skipping a subnet someone else's network
/// already uses; a full pool is refused with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_networks_come_from_flvpcs_pool_beyond_dockers_defaults() {
    use flvpc_host::subnets::{AddressPool, Ipv4Net};
    // Beside the isolation tests on purpose: its 80 network creates and removes are the churn
    // that opens Docker's windows (see namespaces_stay_apart_while_networks_come_and_go).
    let _shared = MACHINE_LOAD.read().await;
    // A pool of this test's own (a random /16 of 10.216–10.231), so that runs side by side do not meet.
    let second = 216 + rand::random::<u8>() % 16;
    let pool: AddressPool = format!("10.{second}.0.0/16").parse().expect("pool");
    let engine = engine().await.with_network_pool(pool);
    let raw = bollard::Docker::connect_with_unix_defaults().expect("docker");
    let foreign = format!("foreign{:08x}", rand::random::<u32>());
    let foreign_subnet = format!("10.{second}.0.0/24");
    raw.create_network(bollard::models::NetworkCreateRequest {
        name: foreign.clone(),
        ipam: Some(bollard::models::Ipam {
            config: Some(vec![bollard::models::IpamConfig {
                subnet: Some(foreign_subnet.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("a network of someone else's in the pool");

    let namespaces: Vec<NamespaceName> =
        (0..40).map(|i| n(&format!("pool{i:02}x{:06x}", rand::random::<u32>() & 0xff_ffff))).collect();
    let mut made = Vec::new();
    let mut failure = None;
    for ns in &namespaces {
        match engine.ensure_network(ns).await {
            Ok(()) => made.push(ns.clone()),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let mut subnets = Vec::new();
    for ns in &made {
        let net = raw
            .inspect_network(&flvpc_host::network_name(ns), None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
            .expect("inspect");
        let subnet = net.ipam.and_then(|i| i.config).and_then(|c| c.into_iter().next()).and_then(|c| c.subnet);
        subnets.push(subnet.unwrap_or_default());
    }
    // The exhausted case: a one-/24 pool whose only subnet is taken.
    let full: AddressPool = foreign_subnet.parse().expect("a /24 pool");
    let exhausted =
        engine.clone().with_network_pool(full).ensure_network(&n(&format!("full{:08x}", rand::random::<u32>()))).await;
    for ns in &made {
        let _ = engine.remove_network(ns).await;
    }
    let _ = raw.remove_network(&foreign).await;

    assert_eq!(failure, None, "made {} of 40 namespace networks", made.len());
    let parsed: Vec<Ipv4Net> = subnets.iter().map(|s| s.parse().expect("a subnet")).collect();
    let pool_net: Ipv4Net = pool.to_string().parse().expect("pool net");
    let foreign_net: Ipv4Net = foreign_subnet.parse().expect("net");
    for (i, subnet) in parsed.iter().enumerate() {
        assert!(pool_net.overlaps(subnet) && subnet.to_string().ends_with("/24"), "{subnet} is a /24 of {pool}");
        assert!(!subnet.overlaps(&foreign_net), "{subnet} overlaps someone else's network");
        assert!(!parsed[..i].contains(subnet), "{subnet} given twice");
    }
    let message = exhausted.expect_err("a full pool").to_string();
    assert!(message.contains("--network-pool"), "{message}");
}

/// Docker rewrites its FORWARD jumps at every network create and remove (delete, then insert):
/// without flvpc's own wall (isolation.rs) a machine that probes all the time reaches another
/// namespace's machines in those windows (12 of 1,500 pings did, measured before the wall). Here
/// b1 pings a1 every 10 ms while 15 namespace networks and 15 foreign ones come and go: none of
/// its 1,500 pings may be answered, while a1's neighbour in its own namespace is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_stay_apart_while_networks_come_and_go() {
    ensure_image().await;
    let _shared = MACHINE_LOAD.read().await;
    let engine = engine().await;
    let (ns1, ns2, a1_ip, _) = two_namespaces(&engine).await;

    let churn = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let raw = bollard::Docker::connect_with_unix_defaults().expect("docker");
            for i in 0..15 {
                let ns = n(&format!("churn{i:02}x{:06x}", rand::random::<u32>() & 0xff_ffff));
                engine.ensure_network(&ns).await.expect("churn network");
                let foreign = format!("foreignchurn{:08x}", rand::random::<u32>());
                let request = bollard::models::NetworkCreateRequest { name: foreign.clone(), ..Default::default() };
                raw.create_network(request).await.expect("a foreign network");
                engine.remove_network(&ns).await.expect("remove churn network");
                raw.remove_network(&foreign).await.expect("remove foreign network");
            }
        })
    };
    let probe = exec(&engine, &ns2.name, "b1", &["ping", "-q", "-c", "1500", "-i", "0.01", "-W", "1", &a1_ip]).await;
    churn.await.expect("churn");
    let neighbour = exec(&engine, &ns1.name, "a2", &["ping", "-c", "3", "-W", "1", &a1_ip]).await;
    assert_eq!(neighbour.exit_code, 0, "a2 reaches a1 in its own namespace: {neighbour:?}");
    assert!(probe.stdout.contains("1500 packets transmitted"), "the probe ran: {probe:?}");
    assert!(probe.stdout.contains(" 0 received"), "b1 reached a1 across namespaces during the churn: {}", probe.stdout);
}
