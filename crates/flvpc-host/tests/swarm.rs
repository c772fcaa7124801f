//! Several engines in one Docker Swarm, with the real engines of a testbed (two extra dockerd in
//! network namespaces of their own, see `support/testbed.rs`), as root.
//!
//! Needs the main engine running with `flvpc/debian:12` (copied from it to the testbed's
//! engines). Traffic goes only to the testbed's own namespaces and containers. Timings are
//! printed, never asserted.

#[path = "support/testbed.rs"]
mod testbed;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::InspectNetworkOptions;
use flvpc_host::{copy_image, form_swarm, leave_swarm, Copied, DockerEngine, MachineSpec, MachineState, DEFAULT_IMAGE};
use flvpc_model::{MachineKey, NamespaceName};
use testbed::Testbed;

const INSTANCE: &str = "flvpc-swarm-tests";
/// How long a machine may take to boot and answer on port 22 from another engine.
const REACH: Duration = Duration::from_secs(90);

fn key(ns: &NamespaceName, name: &str) -> MachineKey {
    MachineKey::parse(ns.as_str(), name).expect("machine key")
}

/// Runs `argv` in machine `on` of `engine` (exec API, no shell).
async fn exec(engine: &DockerEngine, on: &MachineKey, argv: &[&str]) -> flvpc_host::ExecOutput {
    engine.exec_machine(on, argv).await.unwrap_or_else(|e| panic!("exec {argv:?} in {on}: {e}"))
}

/// Asks sshd at `target` (a name or an address) for its host keys from machine `from`: key
/// lines on stdout prove that a TCP connection reached sshd and an SSH exchange happened.
async fn keyscan(engine: &DockerEngine, from: &MachineKey, target: &str) -> flvpc_host::ExecOutput {
    exec(engine, from, &["ssh-keyscan", "-T", "3", "-t", "ed25519", target]).await
}

fn reached(out: &flvpc_host::ExecOutput) -> bool {
    out.stdout.lines().any(|l| l.contains("ssh-ed25519"))
}

/// Waits until `from` reaches sshd of `target` by name; returns how long it took.
async fn wait_reach(engine: &DockerEngine, from: &MachineKey, target: &str) -> Duration {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < REACH {
        match engine.exec_machine(from, &["ssh-keyscan", "-T", "3", "-t", "ed25519", target]).await {
            Ok(out) if reached(&out) => return start.elapsed(),
            Ok(out) => last = Some(format!("exit {}: {}", out.exit_code, out.stderr.trim())),
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{from} did not reach sshd of {target} within {REACH:?}: {last:?}");
}

/// The machine's address on its namespace network, once it has one.
async fn machine_ip(engine: &DockerEngine, machine: &MachineKey) -> String {
    let details = engine.inspect_machine(machine).await.expect("inspect").expect("the machine exists");
    details.info.ip.unwrap_or_else(|| panic!("{machine} has no address on its namespace network"))
}

/// A bare API client on a socket, for what flvpc-host does not expose (network and image details).
async fn raw(socket: &std::path::Path) -> bollard::Docker {
    let socket = socket.to_string_lossy();
    bollard::Docker::connect_with_unix(&socket, 120, bollard::API_DEFAULT_VERSION)
        .expect("client")
        .negotiate_version()
        .await
        .unwrap_or_else(|e| panic!("engine at {socket}: {e}"))
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_spans_two_engines_and_no_other_namespace_reaches_it() {
    // Engines 0 and 1 make flvpc's swarm; engine 2 is in a swarm of its own.
    let mut bed = Testbed::start(3).await;
    let (addr0, addr1) = (IpAddr::V4(bed.engine(0).addr), IpAddr::V4(bed.engine(1).addr));

    let (e0, e1) = (bed.connect(0).await, bed.connect(1).await);
    let (raw0, raw1) = (raw(&bed.engine(0).socket).await, raw(&bed.engine(1).socket).await);

    // The engines' hosts, before and after the swarm.
    let info = e0.host_info().await.expect("info");
    assert!(info.cpus > 0 && info.memory_bytes > 0 && !info.engine_version.is_empty(), "{info:?}");
    assert!(info.swarm.is_none(), "a fresh engine is in no swarm: {info:?}");

    let start = Instant::now();
    let formed = form_swarm(&e0, addr0, &[]).await.expect("init");
    let init_time = start.elapsed();
    assert!(formed.initialised && formed.joined.is_empty(), "{formed:?}");
    let start = Instant::now();
    let formed = form_swarm(&e0, addr0, &[(&e1, addr1)]).await.expect("join");
    let join_time = start.elapsed();
    assert!(!formed.initialised && formed.joined == vec![addr1], "{formed:?}");
    let again = form_swarm(&e0, addr0, &[(&e1, addr1)]).await.expect("form again");
    assert!(!again.changed() && again.already_in == vec![addr1], "forming again changes nothing: {again:?}");
    assert_eq!(again.cluster_id, formed.cluster_id);
    let manager_node = e0.host_info().await.expect("info").swarm.expect("the manager is in the swarm");
    assert!(manager_node.manager && manager_node.cluster_id.as_deref() == Some(formed.cluster_id.as_str()));
    let worker_node = e1.host_info().await.expect("info").swarm.expect("the worker is in the swarm");
    assert!(!worker_node.manager && worker_node.node_id != manager_node.node_id, "{worker_node:?}");

    // Refusals: a worker is no manager; an engine of another swarm is not taken from it.
    let refused = form_swarm(&e1, addr1, &[]).await.expect_err("a worker is no manager");
    assert!(refused.to_string().contains("is a worker of a swarm, not a manager"), "{refused}");
    let (e2, addr2) = (bed.connect(2).await, IpAddr::V4(bed.engine(2).addr));
    let other = form_swarm(&e2, addr2, &[]).await.expect("a swarm of its own");
    assert_ne!(other.cluster_id, formed.cluster_id);
    let refused = form_swarm(&e0, addr0, &[(&e1, addr1), (&e2, addr2)]).await.expect_err("another swarm's engine");
    assert!(refused.to_string().contains("is in another swarm than the manager's"), "{refused}");
    assert_eq!(e2.host_info().await.expect("info").swarm.and_then(|n| n.cluster_id), Some(other.cluster_id));

    // Overlay namespace networks, made on the manager whichever engine asks.
    let manager = Arc::new(e0.clone().for_instance(INSTANCE));
    let on0 = e0.clone().for_instance(INSTANCE).with_overlay(manager.clone());
    let on1 = e1.clone().for_instance(INSTANCE).with_overlay(manager.clone());
    let pid = std::process::id();
    let ns_a = NamespaceName::parse(&format!("swa{pid}")).expect("namespace");
    let ns_b = NamespaceName::parse(&format!("swb{pid}")).expect("namespace");
    let start = Instant::now();
    on1.ensure_network(&ns_a).await.expect("overlay of a, asked by the worker");
    let overlay_time = start.elapsed();
    on0.ensure_network(&ns_b).await.expect("overlay of b, asked by the manager");
    on0.ensure_network(&ns_a).await.expect("ensure again");
    on1.ensure_network(&ns_b).await.expect("ensure again");
    for ns in [&ns_a, &ns_b] {
        let name = flvpc_host::network_name(ns);
        // The manager names the driver once its allocator has run, a moment after the create.
        let deadline = Instant::now() + Duration::from_secs(10);
        let net = loop {
            let net = raw0.inspect_network(&name, None::<InspectNetworkOptions>).await.expect("inspect");
            if net.driver.as_deref() == Some("overlay") || Instant::now() > deadline {
                break net;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(net.driver.as_deref(), Some("overlay"), "{name}");
        assert_eq!(net.attachable, Some(true), "{name}");
        assert_eq!(net.scope.as_deref(), Some("swarm"), "{name}");
        let options = net.options.unwrap_or_default();
        assert!(!options.contains_key("encrypted"), "not encrypted (no ESP here): {options:?}");
        let subnet = net.ipam.and_then(|i| i.config).and_then(|c| c.into_iter().next()).and_then(|c| c.subnet);
        assert!(subnet.as_deref().is_some_and(|s| s.starts_with("10.213.") && s.ends_with("/24")), "{subnet:?}");
        // The worker made none of its own: its only copy comes with a container on it.
        let local = raw1.inspect_network(&name, None::<InspectNetworkOptions>).await;
        assert!(local.is_err(), "the worker made no network of its own: {local:?}");
    }

    // Images: streamed from the main engine; a second copy sends nothing.
    let start = Instant::now();
    for i in 0..2 {
        let copied = bed.load_image(i, DEFAULT_IMAGE).await;
        assert!(matches!(copied, Copied::Sent { bytes } if bytes > 1_000_000), "{copied:?}");
    }
    let copy_time = start.elapsed();
    assert_eq!(copy_image(&e0, &e1, DEFAULT_IMAGE).await.expect("copy again"), Copied::AlreadyThere);
    let ours =
        raw(std::path::Path::new("/var/run/docker.sock")).await.inspect_image(DEFAULT_IMAGE).await.expect("main");
    let theirs = raw1.inspect_image(DEFAULT_IMAGE).await.expect("copied image");
    assert_eq!(ours.id, theirs.id, "same image ID on both engines");
    let labels = |i: bollard::models::ImageInspect| i.config.and_then(|c| c.labels).unwrap_or_default();
    let (ours, theirs) = (labels(ours), labels(theirs));
    assert!(ours.contains_key("flvpc.image.recipe") && ours == theirs, "labels kept: {ours:?} vs {theirs:?}");

    // The engines run on this kernel: their docker_gwbridge is in flvpc's wall as a bridge
    // whose ports may not talk to each other (in `bridges`, never in `same_bridge`).
    let nft = |set: &str| {
        let out = std::process::Command::new("nft").args(["list", "set", "inet", "flvpc_isolation", set]).output();
        String::from_utf8_lossy(&out.expect("nft").stdout).into_owned()
    };
    assert!(nft("bridges").contains("\"docker_gwbridge\""), "{}", nft("bridges"));
    assert!(!nft("same_bridge").contains("docker_gwbridge"), "{}", nft("same_bridge"));

    // A machine per namespace per engine, created and started through the API.
    let (a0, a1, b0, b1) = (key(&ns_a, "a0"), key(&ns_a, "a1"), key(&ns_b, "b0"), key(&ns_b, "b1"));
    let start = Instant::now();
    for (engine, machine) in [(&on0, &a0), (&on1, &a1), (&on0, &b0), (&on1, &b1)] {
        engine.create_and_start_machine(&MachineSpec::new(machine.clone(), DEFAULT_IMAGE)).await.expect("machine");
    }
    let first_reach = wait_reach(&on0, &a0, "a1").await;
    let started_to_reach = start.elapsed();
    let back = wait_reach(&on1, &a1, "a0").await;

    // By name: a namespace-mate on the other engine resolves; the other namespace's does not.
    let a1_ip = machine_ip(&on1, &a1).await;
    let resolved = exec(&on0, &a0, &["getent", "hosts", "a1"]).await;
    assert!(resolved.exit_code == 0 && resolved.stdout.starts_with(&format!("{a1_ip} ")), "{resolved:?}");
    let foreign = exec(&on0, &b0, &["getent", "hosts", "a1"]).await;
    assert_ne!(foreign.exit_code, 0, "b0 must not resolve a1: {foreign:?}");

    // By address: neither b0 (other engine) nor b1 (a1's own engine) reaches a1's sshd.
    for (engine, from) in [(&on0, &b0), (&on1, &b1)] {
        let out = keyscan(engine, from, &a1_ip).await;
        assert!(!reached(&out), "{from} reached a1 at {a1_ip}: {out:?}");
    }
    // ... while a0 does, at that same address (the refusals above are isolation, not a dead address).
    assert!(reached(&keyscan(&on0, &a0, &a1_ip).await), "a0 reaches a1 at {a1_ip}");

    println!(
        "engines: 3 up; image copy to both {}; swarm init {}; join {}; overlay create {}; \
         4 machines created+started then a0 reached a1 on the other engine after {} (reach wait {}); \
         a1 reached a0 after {} more",
        seconds(copy_time),
        seconds(init_time),
        seconds(join_time),
        seconds(overlay_time),
        seconds(started_to_reach),
        seconds(first_reach),
        seconds(back),
    );

    // An engine stopped and started again (same roots) brings its machines back.
    bed.stop_engine(1).await;
    assert!(e1.ping().await.is_err(), "engine 1 is down");
    bed.start_engine(1).await;
    let deadline = Instant::now() + REACH;
    loop {
        let state = on1.inspect_machine(&a1).await.expect("inspect").map(|d| d.info.state);
        if state == Some(MachineState::Running) {
            break;
        }
        assert!(Instant::now() < deadline, "a1 did not come back with its engine: {state:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Everything removed: machines, then the overlays on the manager, then the swarm.
    for (engine, machine) in [(&on0, &a0), (&on1, &a1), (&on0, &b0), (&on1, &b1)] {
        engine.remove_machine(machine).await.expect("remove machine");
    }
    on1.remove_network(&ns_a).await.expect("remove a's overlay through the worker");
    on0.remove_network(&ns_b).await.expect("remove b's overlay");
    for ns in [&ns_a, &ns_b] {
        let name = flvpc_host::network_name(ns);
        let gone = raw0.inspect_network(&name, None::<InspectNetworkOptions>).await;
        assert!(gone.is_err(), "{name} is gone from the manager");
    }
    leave_swarm(&e1).await.expect("worker leaves");
    leave_swarm(&e0).await.expect("manager leaves");
    leave_swarm(&e0).await.expect("leaving twice is fine");
    assert!(e0.host_info().await.expect("info").swarm.is_none());

    let (tag, link_names) = (bed.tag().to_owned(), bed.link_names());
    bed.cleanup().await;
    let netns = std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip netns");
    assert!(!String::from_utf8_lossy(&netns.stdout).contains(&tag), "namespaces left");
    for link in link_names {
        assert!(!std::path::Path::new("/sys/class/net").join(&link).exists(), "{link} left");
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").expect("cgroups").flatten() {
        for i in 0..3 {
            let dir = hierarchy.path().join(format!("{tag}-{i}"));
            assert!(!dir.exists(), "{} left", dir.display());
        }
    }
    for root in (0..3).flat_map(|i| [format!("/run/{tag}-{i}"), format!("/var/lib/{tag}-{i}")]) {
        assert!(!std::path::Path::new(&root).exists(), "{root} left");
    }
    // The machines' own cgroup parents (`flvpc/m-<digest>`) go with them, a moment after.
    let deadline = Instant::now() + Duration::from_secs(15);
    for machine in [&a0, &a1, &b0, &b1] {
        let dir = flvpc_host::cgroup::machine_dir(machine);
        let left = || {
            std::fs::read_dir("/sys/fs/cgroup")
                .expect("cgroups")
                .flatten()
                .map(|h| h.path().join("flvpc").join(&dir))
                .find(|d| d.exists())
        };
        while let Some(found) = left() {
            assert!(Instant::now() < deadline, "{} left", found.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
