//! End to end with the real Docker engine and the real OpenSSH client: clusters
//! are defined and created through the API, members log in with their keys,
//! namespaces are isolated, key and membership changes reach running machines,
//! and stop/start/delete leave nothing behind.
//!
//! Needs dockerd and the image flvpc/debian:12 (`scripts/dev.sh test` starts the
//! one and builds the other).

mod common;

use common::docker::*;
use common::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_lifecycle_keys_and_isolation() {
    require_docker();
    let (a, b) = (unique("e2ea"), unique("e2eb"));
    let _cleanup = DockerCleanup(vec![a.clone(), b.clone()]);
    let server = common::start(Backend::Sqlite).await;
    let root = server.init_root().await;
    for ns in [&a, &b] {
        assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": ns})).await.status, StatusCode::CREATED);
    }
    let (alice_key, bob_key, carol_key, dave_key) =
        (keypair("alice"), keypair("bob"), keypair("carol"), keypair("dave"));
    let alice = user(&server, &root, "alice", &a, "admin", &alice_key).await;
    let bob = user(&server, &root, "bob", &a, "user", &bob_key).await;
    let carol = user(&server, &root, "carol", &b, "admin", &carol_key).await;

    // A namespace user may not define the cluster; an unknown image is refused up front.
    let spec = "machines:\n- count: 3\n  spec:\n    name: node%d\n    image: flvpc/debian:12\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 1, memory: 256MB}\n";
    assert_eq!(put_spec(&server, &bob, &a, spec).await.status(), StatusCode::FORBIDDEN);
    let bad = put_spec(&server, &alice, &a, &spec.replace("flvpc/debian:12", "nosuch/image:1")).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.expect("body").contains("flvpc image build"));
    let saved = put_spec(&server, &alice, &a, spec).await;
    assert_eq!(saved.status(), StatusCode::OK);
    let saved: Value = saved.json().await.expect("json");
    assert_eq!(saved["machines"], json!(["node0", "node1", "node2"]));

    // Create: all three machines run and answer SSH with alice's and bob's keys.
    let op = act(&server, &alice, &format!("/api/v1/namespaces/{a}/cluster/create")).await;
    assert_eq!(op["progress"], json!({"done": 3, "total": 3}));
    let list = machines(&server, &alice, &a).await;
    assert_eq!(list.len(), 3);
    for m in &list {
        assert_eq!(m["state"], "running", "{m}");
        assert_eq!(m["container"], format!("{}.{a}", m["name"].as_str().expect("name")));
        let port = ssh_port(m);
        let name = m["name"].as_str().expect("name").to_owned();
        let mut last = String::new();
        eventually(Duration::from_secs(60), "sshd answers with alice's key", || {
            match ssh(&alice_key.private, port, "hostname") {
                Ok(host) => host == name,
                Err(e) => {
                    last = e;
                    false
                }
            }
        })
        .await;
        assert_eq!(ssh(&bob_key.private, port, "hostname"), Ok(name.clone()), "{last}");
        assert!(ssh(&carol_key.private, port, "true").is_err(), "carol is not a member of {a}");
        assert_eq!(m["ssh"]["direct"], format!("ssh -p {port} root@127.0.0.1"));
    }
    let node0_port = ssh_port(&list[0]);
    let node0_ip = list[0]["ip"].as_str().expect("ip").to_owned();
    // Machines of a namespace reach each other by name.
    let resolved = ssh(&alice_key.private, node0_port, "getent hosts node1").expect("getent");
    assert!(resolved.contains("node1"), "{resolved}");
    assert!(ssh(&alice_key.private, node0_port, "ping -c1 -W2 node2").is_ok());
    // Live usage: after a few samples each machine has points, and /metrics exports them.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let metrics = server.get(&format!("/api/v1/namespaces/{a}/machines/node0/metrics"), &bob).await;
        assert_eq!(metrics.status, StatusCode::OK, "{:?}", metrics.body);
        let points = metrics.body["points"].as_array().cloned().unwrap_or_default();
        if points.len() >= 2 {
            let last = points.last().expect("point");
            assert!(last["memory_mb"].as_f64().is_some_and(|m| m > 1.0 && m <= 256.0), "{last}");
            assert!(last["cpu_percent"].as_f64().is_some_and(|c| c >= 0.0), "{last}");
            assert!(last["t"].as_i64().is_some(), "{last}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no usage samples: {:?}", metrics.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Per-machine series name tenants: only the superadmin's token (or the scrape token) sees them.
    let exported = metrics_as(&server, &root).await;
    assert!(
        exported.contains(&format!("flvpc_machine_memory_bytes{{namespace=\"{a}\",machine=\"node0\"}}")),
        "{exported}"
    );
    let listed = machines(&server, &bob, &a).await;
    assert!(listed[0]["memory_used_mb"].as_f64().is_some(), "{}", listed[0]);

    // Every machine has its own machine-id.
    let ids: std::collections::HashSet<String> =
        list.iter().map(|m| ssh(&alice_key.private, ssh_port(m), "cat /etc/machine-id").expect("machine-id")).collect();
    assert_eq!(ids.len(), 3);

    // Another namespace's machine cannot reach this one.
    let spec_b = "machines:\n- count: 1\n  spec:\n    name: web%d\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 1, memory: 256MB}\n";
    assert_eq!(put_spec(&server, &carol, &b, spec_b).await.status(), StatusCode::OK);
    act(&server, &carol, &format!("/api/v1/namespaces/{b}/cluster/create")).await;
    let web0 = machines(&server, &carol, &b).await.remove(0);
    let web0_port = ssh_port(&web0);
    eventually(Duration::from_secs(60), "web0 answers SSH", || ssh(&carol_key.private, web0_port, "true").is_ok())
        .await;
    assert!(
        ssh(&carol_key.private, web0_port, &format!("ping -c1 -W2 {node0_ip}")).is_err(),
        "namespaces are isolated"
    );
    assert!(ssh(&carol_key.private, web0_port, "getent hosts node0").is_err());

    // A host port held by another namespace is refused, naming the port but not the other
    // namespace or its machine (carol is a namespace admin, not the superadmin).
    let clash = format!(
        "machines:\n- count: 1\n  spec:\n    name: x%d\n    portMappings:\n    - containerPort: 22\n      hostPort: {node0_port}\n"
    );
    assert_eq!(put_spec(&server, &carol, &b, &clash).await.status(), StatusCode::OK);
    let r = server.call(Method::POST, &format!("/api/v1/namespaces/{b}/cluster/create"), Some(&carol), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    let message = r.body["error"]["message"].as_str().expect("message");
    assert!(message.contains(&node0_port.to_string()), "{message}");
    assert!(message.contains("another namespace's machine"), "{message}");
    assert!(!message.contains(&a) && !message.contains("node0"), "names another tenant: {message}");
    assert_eq!(machines(&server, &carol, &b).await.len(), 1, "nothing half-created");

    // Keys: removing bob's key locks him out within seconds; a new member gets in; removal locks them out.
    assert_eq!(
        server.call(Method::DELETE, "/api/v1/keys/laptop", Some(&bob), None).await.status,
        StatusCode::NO_CONTENT
    );
    eventually(Duration::from_secs(15), "bob's removed key stops working", || {
        ssh(&bob_key.private, node0_port, "true").is_err()
    })
    .await;
    assert!(ssh(&alice_key.private, node0_port, "true").is_ok(), "alice still gets in");
    let _dave = user(&server, &root, "dave", &a, "user", &dave_key).await;
    eventually(Duration::from_secs(15), "a new member's key works", || {
        ssh(&dave_key.private, node0_port, "true").is_ok()
    })
    .await;
    let r = server.call(Method::DELETE, &format!("/api/v1/namespaces/{a}/members/dave"), Some(&root), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(15), "a removed member is locked out", || {
        ssh(&dave_key.private, node0_port, "true").is_err()
    })
    .await;
    let authorized = ssh(&alice_key.private, node0_port, "cat /root/.ssh/authorized_keys").expect("read keys");
    assert!(authorized.contains(&alice_key.public) && !authorized.contains(&dave_key.public), "{authorized}");

    // A namespace user may stop and start, not delete.
    let r = server.call(Method::POST, &format!("/api/v1/namespaces/{a}/cluster/delete"), Some(&bob), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    act(&server, &bob, &format!("/api/v1/namespaces/{a}/cluster/stop")).await;
    assert!(machines(&server, &alice, &a).await.iter().all(|m| m["state"] == "stopped"));
    assert!(ssh(&alice_key.private, node0_port, "true").is_err());
    act(&server, &bob, &format!("/api/v1/namespaces/{a}/machines/node0/start")).await;
    eventually(Duration::from_secs(60), "node0 is back", || ssh(&alice_key.private, node0_port, "true").is_ok()).await;
    let uptime_before = ssh(&alice_key.private, node0_port, "cat /proc/1/stat | cut -d' ' -f22").expect("stat");
    act(&server, &bob, &format!("/api/v1/namespaces/{a}/machines/node0/restart")).await;
    eventually(Duration::from_secs(60), "node0 restarted", || {
        ssh(&alice_key.private, node0_port, "cat /proc/1/stat | cut -d' ' -f22").is_ok_and(|t| t != uptime_before)
    })
    .await;

    // Delete leaves nothing behind: no containers, no network, no ports.
    act(&server, &alice, &format!("/api/v1/namespaces/{a}/cluster/delete")).await;
    assert!(machines(&server, &alice, &a).await.is_empty());
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=flvpc.namespace={a}")])
        .output()
        .expect("docker ps");
    assert!(left.stdout.is_empty(), "containers left: {}", String::from_utf8_lossy(&left.stdout));
    let network = Command::new("docker").args(["network", "inspect", &format!("flvpc-{a}")]).output().expect("docker");
    assert!(!network.status.success(), "the namespace network is removed");
    // The ports are free again: B may now take node0's old port.
    let r = server.call(Method::POST, &format!("/api/v1/namespaces/{b}/cluster/create"), Some(&carol), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_operation(&server, &carol, r.body["operation"].as_str().expect("id")).await;

    // Deleting a namespace removes its machines first.
    let r = server.call(Method::DELETE, &format!("/api/v1/namespaces/{b}"), Some(&root), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=flvpc.namespace={b}")])
        .output()
        .expect("docker ps");
    assert!(left.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_over_its_memory_limit_is_killed_by_the_kernel_and_shown_as_such() {
    require_docker();
    let ns = unique("oom");
    let _cleanup = DockerCleanup(vec![ns.clone()]);
    let server = common::start(Backend::Sqlite).await;
    let root = server.init_root().await;
    assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": ns})).await.status, StatusCode::CREATED);
    let key = keypair("ann");
    let ann = user(&server, &root, "ann", &ns, "admin", &key).await;
    let spec = "machines:\n- count: 1\n  spec:\n    name: small%d\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 1, cpuCap: 0.5, memory: 96MB}\n";
    assert_eq!(put_spec(&server, &ann, &ns, spec).await.status(), StatusCode::OK);
    act(&server, &ann, &format!("/api/v1/namespaces/{ns}/cluster/create")).await;
    let machine = machines(&server, &ann, &ns).await.remove(0);
    assert_eq!(machine["cpu_cap"], 0.5);
    // The caps are the kernel's, set by the engine: a hard CPU cap and a memory limit without extra swap.
    let inspect = std::process::Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}",
            &format!("small0.{ns}"),
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), "500000000 100663296 100663296");
    let port = ssh_port(&machine);
    eventually(Duration::from_secs(60), "sshd in small0", || ssh(&key.private, port, "true").is_ok()).await;
    // `tail` of an endless line keeps it all in memory until the kernel kills it.
    let killed = ssh(&key.private, port, "tail /dev/zero");
    assert!(killed.is_err(), "tail must not finish: {killed:?}");

    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let m = machines(&server, &ann, &ns).await.remove(0);
        if m["oom_kills"].as_u64().is_some_and(|k| k >= 1) {
            assert_eq!(m["state"], "running", "the machine itself survives: only the process was killed");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no OOM kill shown: {m}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // /metrics shows it once the sampler has two samples of the machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let line = loop {
        let exported = metrics_as(&server, &root).await;
        if let Some(line) = exported.lines().find(|l| l.starts_with("flvpc_machine_oom_kills_total") && l.contains(&ns))
        {
            break line.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no oom series for {ns} in:\n{exported}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(!line.ends_with(" 0"), "{line}");
    assert!(ssh(&key.private, port, "true").is_ok(), "still reachable after the kill");
    act(&server, &ann, &format!("/api/v1/namespaces/{ns}/cluster/delete")).await;
}

/// The text of /metrics as seen with `token` (per-machine series need the superadmin's).
async fn metrics_as(server: &common::TestServer, token: &str) -> String {
    let response = reqwest::Client::new().get(format!("{}/metrics", server.base)).bearer_auth(token).send().await;
    response.expect("metrics").text().await.expect("text")
}
