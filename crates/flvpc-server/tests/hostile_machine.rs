//! A hostile tenant inside a machine, with the real Docker engine and the real OpenSSH client.
//!
//! A member with the `user` role is root in every machine of their namespace (that is the
//! product). From there they try to reach the host and the other tenants: the host's cgroups
//! (their own limits, another tenant's freezer, the devices controller), host devices, /proc and
//! /sys, mounts, a fork bomb; and they plant a key that must not survive the next resync.
//! Every attempt must fail and the machine must keep working. A second test makes two namespaces
//! whose names collided under the old `<ns>-<name>` container names and checks both run and
//! delete cleanly.
//!
//! Needs dockerd and the image flvpc/debian:12 (`scripts/dev.sh test` provides both).

mod common;

use common::docker::*;
use common::Backend;
use flvpc_server::reconcile::engine::ReconnectingDocker;
use flvpc_server::Config;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const PIDS_LIMIT: u32 = 256;

async fn server_with_pid_limit() -> common::TestServer {
    let config = Config {
        data_dir: std::env::temp_dir(),
        max_body_bytes: 64 * 1024,
        port_range: common::own_port_range(),
        machine_pids_limit: Some(PIDS_LIMIT),
        ..Config::default()
    };
    // Each test server acts as its own flvpc instance on the shared engine.
    let engine = Arc::new(ReconnectingDocker::new(unique("hostile-instance-")));
    common::start_with(Backend::Sqlite, config, engine).await
}

/// A spec with one machine named `<prefix>0`.
fn one_machine(prefix: &str) -> String {
    format!(
        "machines:\n- count: 1\n  spec:\n    name: {prefix}%d\n    image: flvpc/debian:12\n    portMappings:\n    - containerPort: 22\n    ignite: {{cpus: 1, memory: 256MB}}\n"
    )
}

/// Runs `script` as root in the machine; true when it exited 0.
fn as_root(key: &KeyPair, port: u16, script: &str) -> Result<String, String> {
    ssh(&key.private, port, script)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_role_member_cannot_escape_a_machine() {
    require_docker();
    let (ns, other) = (unique("hx"), unique("hy"));
    let _cleanup = DockerCleanup(vec![ns.clone(), other.clone()]);
    let server = server_with_pid_limit().await;
    let root = server.init_root().await;
    for name in [&ns, &other] {
        assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": name})).await.status, StatusCode::CREATED);
    }
    let (admin_key, mallory_key, victim_key) = (keypair("admin"), keypair("mallory"), keypair("victim"));
    let admin = user(&server, &root, "ann", &ns, "admin", &admin_key).await;
    let _mallory = user(&server, &root, "mallory", &ns, "user", &mallory_key).await;
    let victim = user(&server, &root, "vic", &other, "admin", &victim_key).await;
    let r = put_spec(&server, &admin, &ns, &one_machine("box")).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    assert_eq!(put_spec(&server, &victim, &other, &one_machine("target")).await.status(), StatusCode::OK);
    act(&server, &admin, &format!("/api/v1/namespaces/{ns}/cluster/create")).await;
    act(&server, &victim, &format!("/api/v1/namespaces/{other}/cluster/create")).await;
    let port = ssh_port(&machines(&server, &admin, &ns).await[0]);
    let target_port = ssh_port(&machines(&server, &victim, &other).await[0]);
    eventually(Duration::from_secs(90), "mallory reaches box", || as_root(&mallory_key, port, "true").is_ok()).await;
    eventually(Duration::from_secs(90), "vic reaches target", || as_root(&victim_key, target_port, "true").is_ok())
        .await;
    assert_eq!(as_root(&mallory_key, port, "id -u").as_deref(), Ok("0"), "mallory is root in the machine");

    // Every escape attempt, as root in the machine. Each script exits 0 only if the escape
    // worked (or if it found nothing to attack, which would make the test meaningless).
    let write_any = |glob: &str, value: &str| {
        format!(
            "set -- {glob}; [ -e \"$1\" ] || exit 0; for f; do echo {value} > $f 2>/dev/null && exit 0; done; exit 1"
        )
    };
    // The machine's own cgroup directory name, to attack only the others'.
    let own = "own=$(sed -n 's|^0::/flvpc/\\([^/]*\\)/.*|\\1|p' /proc/self/cgroup)";
    let escapes: Vec<(&str, String)> = vec![
        ("join the host's devices cgroup root", write_any("/sys/fs/cgroup/devices/tasks", "$$")),
        ("allow itself every device", write_any("/sys/fs/cgroup/devices/flvpc/*/*/devices.allow", "a")),
        ("raise its own memory limit", write_any("/sys/fs/cgroup/memory/flvpc/*/*/memory.limit_in_bytes", "-1")),
        ("raise its own PID limit", write_any("/sys/fs/cgroup/pids/flvpc/*/*/pids.max", "max")),
        ("freeze other machines (v1 freezer)", write_any("/sys/fs/cgroup/freezer/flvpc/*/*/freezer.state", "FROZEN")),
        (
            "freeze another machine (cgroup v2)",
            format!(
                "{own}; n=0; for d in /sys/fs/cgroup/unified/flvpc/m-*; do [ \"${{d##*/}}\" = \"$own\" ] && continue; \
                 for f in $d/*/cgroup.freeze; do n=1; echo 1 > $f 2>/dev/null && exit 0; done; done; [ $n = 0 ]"
            ),
        ),
        ("make a cgroup at the host's systemd root", "mkdir /sys/fs/cgroup/systemd/escape".into()),
        ("move itself to the host's unified root", write_any("/sys/fs/cgroup/unified/cgroup.procs", "$$")),
        ("set the host's release agent", write_any("/sys/fs/cgroup/systemd/release_agent", "/tmp/x")),
        ("read a host block device", "mknod /tmp/hostdisk b 8 0 && head -c1 /tmp/hostdisk | grep -q .".into()),
        ("read the host's memory", "head -c1 /dev/mem | grep -q . || head -c1 /proc/kcore | grep -q .".into()),
        ("trigger sysrq on the host", "echo h > /proc/sysrq-trigger".into()),
        ("change a host kernel setting", "echo 1 > /proc/sys/vm/drop_caches".into()),
        ("remount the host's sysfs read-write", "mount -o remount,rw /sys".into()),
        ("mount a new file system", "mount -t tmpfs x /mnt".into()),
    ];
    for (what, script) in &escapes {
        let result = as_root(&mallory_key, port, script);
        assert!(result.is_err(), "root in a machine could {what}: {result:?}");
    }

    // A fork bomb stops at the machine's PID limit (bounded: at most 600 sleepers) and the
    // host, the other tenant and the machine itself keep working.
    let bomb = as_root(
        &mallory_key,
        port,
        "n=0; for i in $(seq 600); do sleep 60 2>/dev/null & n=$((n+1)); done 2>/dev/null; ls /proc | grep -c '^[0-9]'",
    );
    if let Ok(count) = &bomb {
        let count: u32 = count.trim().parse().unwrap_or(u32::MAX);
        assert!(count <= PIDS_LIMIT, "the machine has {count} processes, over its limit of {PIDS_LIMIT}");
    }
    assert!(as_root(&victim_key, target_port, "true").is_ok(), "the other tenant is unaffected");
    assert_eq!(server.call(reqwest::Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    let _ = as_root(&mallory_key, port, "pkill sleep");
    eventually(Duration::from_secs(30), "box answers again after the bomb", || {
        as_root(&mallory_key, port, "true").is_ok()
    })
    .await;
    // The other tenant's machine was never frozen.
    assert_eq!(as_root(&victim_key, target_port, "echo alive").as_deref(), Ok("alive"));

    // A key planted in authorized_keys is gone after the next resync: the file is rewritten
    // from the database even though no member's keys changed.
    let planted = keypair("planted");
    let plant = format!("echo '{}' >> /root/.ssh/authorized_keys", planted.public);
    as_root(&mallory_key, port, &plant).expect("root may edit its own machine's files");
    assert!(as_root(&planted, port, "true").is_ok(), "the planted key works until the resync");
    server.state.reconciler.resync().await;
    eventually(Duration::from_secs(30), "the planted key is removed by the resync", || {
        as_root(&planted, port, "true").is_err()
    })
    .await;
    assert!(as_root(&mallory_key, port, "true").is_ok(), "members' keys are still there");

    act(&server, &admin, &format!("/api/v1/namespaces/{ns}/cluster/delete")).await;
    act(&server, &victim, &format!("/api/v1/namespaces/{other}/cluster/delete")).await;
}

/// `sx` + `b-node0` and `sx-b` + `node0` were one container name (`sx-b-node0`) before; now
/// both machines run, answer SSH, and delete with their namespaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_whose_old_container_names_collided_both_run_and_delete() {
    require_docker();
    let sx = unique("sx");
    let sxb = format!("{sx}-b");
    let _cleanup = DockerCleanup(vec![sx.clone(), sxb.clone()]);
    let server = server_with_pid_limit().await;
    let root = server.init_root().await;
    for name in [&sx, &sxb] {
        assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": name})).await.status, StatusCode::CREATED);
    }
    let key = keypair("both");
    let a = user(&server, &root, "ann", &sx, "admin", &key).await;
    let r = server
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/namespaces/{sxb}/members/ann"),
            Some(&root),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(put_spec(&server, &a, &sx, &one_machine("b-node")).await.status(), StatusCode::OK);
    assert_eq!(put_spec(&server, &a, &sxb, &one_machine("node")).await.status(), StatusCode::OK);
    act(&server, &a, &format!("/api/v1/namespaces/{sx}/cluster/create")).await;
    act(&server, &a, &format!("/api/v1/namespaces/{sxb}/cluster/create")).await;
    let first = machines(&server, &a, &sx).await.remove(0);
    let second = machines(&server, &a, &sxb).await.remove(0);
    assert_eq!(first["state"], "running", "{first}");
    assert_eq!(second["state"], "running", "{second}");
    assert_ne!(first["container"], second["container"]);
    for (machine, host) in [(&first, "b-node0"), (&second, "node0")] {
        let port = ssh_port(machine);
        eventually(Duration::from_secs(90), "sshd answers", || ssh(&key.private, port, "true").is_ok()).await;
        assert_eq!(ssh(&key.private, port, "hostname").as_deref(), Ok(host));
    }
    act(&server, &a, &format!("/api/v1/namespaces/{sxb}/cluster/delete")).await;
    assert_eq!(machines(&server, &a, &sx).await[0]["state"], "running", "deleting one namespace left the other alone");
    act(&server, &a, &format!("/api/v1/namespaces/{sx}/cluster/delete")).await;
    for name in [&sx, &sxb] {
        let r = server.call(reqwest::Method::DELETE, &format!("/api/v1/namespaces/{name}"), Some(&root), None).await;
        assert!(r.status.is_success(), "namespace {name} deletes: {:?}", r.body);
    }
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=flvpc.namespace={sx}")])
        .output()
        .expect("docker ps");
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "no container left");
}

/// A machine created by an older flvpc (before the cgroup isolation) is not silently recreated
/// (the tenant's files would be lost), but it says what to do until it is recreated.
#[tokio::test]
async fn machines_made_without_isolation_say_so() {
    let engine = Arc::new(flvpc_host::FakeEngine::new());
    let config = Config { data_dir: std::env::temp_dir(), port_range: common::own_port_range(), ..Config::default() };
    let server = common::start_with(Backend::Sqlite, config, engine.clone()).await;
    let root = server.init_root().await;
    assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": "old"})).await.status, StatusCode::CREATED);
    let spec = json!({"machines": [{"count": 1, "spec": {"name": "m%d", "ignite": {"cpus": 1, "memory": "256MB"}}}]});
    let r = server.call(reqwest::Method::PUT, "/api/v1/namespaces/old/cluster", Some(&root), Some(spec)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    act(&server, &root, "/api/v1/namespaces/old/cluster/create").await;
    let m = machines(&server, &root, "old").await.remove(0);
    assert!(m["error"].is_null(), "{m}");

    let key = flvpc_model::MachineKey::parse("old", "m0").expect("key");
    engine.made_by_older_flvpc(&key);
    server.state.reconciler.resync().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = machines(&server, &root, "old").await.remove(0);
        if m["error"].as_str().is_some_and(|e| e.contains("older flvpc") && e.contains("recreate")) {
            assert_eq!(m["state"], "running", "the machine keeps running: {m}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no warning on the machine: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(engine.spec(&key).is_some(), "not recreated behind the tenant's back");
}
