//! The built-in SSH gateway with the real OpenSSH client (`ssh -J`, `scp`,
//! `ssh -L`) into real machines, and every refusal: other namespaces, raw
//! addresses, the host itself, unknown names, unknown users and keys, removed
//! memberships; the help session, audit records and connection limits.

mod common;

use common::docker::*;
use common::ssh::{client_config, jump};
use common::Backend;
use flvpc_server::gateway::{self, GatewayConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_forwards_members_to_their_machines_and_refuses_everything_else() {
    require_docker();
    let (a, b) = (unique("gwa"), unique("gwb"));
    let _cleanup = DockerCleanup(vec![a.clone(), b.clone()]);
    let server = common::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("dir");
    let host_key = gateway::load_or_create_host_key(dir.path()).expect("host key");
    let again = gateway::load_or_create_host_key(dir.path()).expect("host key again");
    assert_eq!(host_key.fingerprint, again.fingerprint, "the host key persists");
    let config =
        GatewayConfig { auth_timeout: Duration::from_secs(2), max_connections_per_user: 3, ..GatewayConfig::default() };
    let (addr, _task) = gateway::spawn("127.0.0.1:0".parse().expect("addr"), server.state.clone(), config, host_key)
        .await
        .expect("gateway");
    let gw = addr.port();

    let root = server.init_root().await;
    for ns in [&a, &b] {
        assert_eq!(
            server.post("/api/v1/namespaces", &root, serde_json::json!({"name": ns})).await.status,
            StatusCode::CREATED
        );
    }
    let (alice_key, bob_key, carol_key) = (keypair("alice"), keypair("bob"), keypair("carol"));
    let alice = user(&server, &root, "alice", &a, "admin", &alice_key).await;
    let _bob = user(&server, &root, "bob", &a, "user", &bob_key).await;
    let _carol = user(&server, &root, "carol", &b, "admin", &carol_key).await;
    let spec = "machines:\n- count: 1\n  spec:\n    name: n%d\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 1, memory: 256MB}\n";
    assert_eq!(put_spec(&server, &alice, &a, spec).await.status(), StatusCode::OK);
    act(&server, &alice, &format!("/api/v1/namespaces/{a}/cluster/create")).await;
    let machine = machines(&server, &alice, &a).await.remove(0);
    let direct = ssh_port(&machine);
    eventually(Duration::from_secs(60), "sshd in n0", || ssh(&alice_key.private, direct, "true").is_ok()).await;
    let ip = machine["ip"].as_str().expect("ip").to_owned();
    assert_eq!(machine["ssh"]["jump"], format!("ssh -J alice@127.0.0.1:2222 root@n0.{a}"));

    let cfg = |name: &str, key: &KeyPair| client_config(dir.path(), name, &key.private, None);
    let (alice_cfg, bob_cfg, carol_cfg) = (cfg("alice", &alice_key), cfg("bob", &bob_key), cfg("carol", &carol_key));
    let target = format!("n0.{a}");

    // Members of the namespace get in, whatever their role.
    assert_eq!(jump(&alice_cfg, "alice", gw, &target, "hostname").result, Ok("n0".into()));
    assert_eq!(jump(&bob_cfg, "bob", gw, &target, "hostname").result, Ok("n0".into()));

    // scp through the gateway keeps every byte.
    let blob = dir.path().join("blob");
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&blob, &data).expect("write blob");
    let copied = Command::new("scp")
        .arg("-q")
        .arg("-F")
        .arg(&alice_cfg)
        .args(["-J", &format!("alice@127.0.0.1:{gw}")])
        .arg(&blob)
        .arg(format!("root@{target}:/tmp/blob"))
        .status()
        .expect("scp");
    assert!(copied.success());
    let local = Command::new("sha256sum").arg(&blob).output().expect("sha256sum");
    let local = String::from_utf8_lossy(&local.stdout).split_whitespace().next().unwrap_or_default().to_owned();
    let remote = jump(&alice_cfg, "alice", gw, &target, "sha256sum /tmp/blob").result.expect("remote sum");
    assert!(remote.starts_with(&local), "{remote} vs {local}");

    // ssh -L to a port of the machine: here its sshd, whose banner comes back through the tunnel.
    let lport = free_port();
    let mut tunnel = Command::new("ssh")
        .arg("-F")
        .arg(&alice_cfg)
        .args(["-N", "-L", &format!("127.0.0.1:{lport}:{target}:22"), "-p", &gw.to_string(), "alice@127.0.0.1"])
        .stdin(Stdio::null())
        .spawn()
        .expect("ssh -L");
    let mut banner = String::new();
    eventually(Duration::from_secs(15), "the tunnel carries the machine's banner", || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", lport)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let mut buf = [0u8; 7];
        if s.read_exact(&mut buf).is_ok() {
            banner = String::from_utf8_lossy(&buf).into_owned();
        }
        banner == "SSH-2.0"
    })
    .await;
    let _ = tunnel.kill();
    let _ = tunnel.wait();

    // Refused: another namespace, raw addresses, the host, unknown names and ports.
    assert!(jump(&carol_cfg, "carol", gw, &target, "true").result.is_err(), "carol is not a member of {a}");
    for bad in [ip.as_str(), "127.0.0.1", "localhost", &format!("nosuch.{a}"), &format!("n0.{b}"), "n0", "n0.Bad_NS"] {
        assert!(jump(&alice_cfg, "alice", gw, bad, "true").result.is_err(), "{bad} must be refused");
    }
    // Unknown users and unknown keys are refused alike.
    let unknown_user = jump(&alice_cfg, "mallory", gw, &target, "true").result.expect_err("unknown user");
    let wrong_key = jump(&carol_cfg, "alice", gw, &target, "true").result.expect_err("someone else's key");
    assert!(unknown_user.contains("Permission denied") && wrong_key.contains("Permission denied"));
    assert_eq!(unknown_user.replace("mallory", "X"), wrong_key.replace("alice", "X"));

    // A plain login gets help, not a shell.
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&alice_cfg)
        .args(["-p", &gw.to_string(), "alice@127.0.0.1"])
        .output()
        .expect("ssh");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains(&format!("ssh -J alice@127.0.0.1:{gw} root@n0.{a}")), "{help}");
    assert!(help.contains("ProxyJump flvpc-gateway"), "{help}");
    // The ssh-config block names alice's real namespace, not a placeholder.
    assert!(help.contains(&format!("Host *.{a}\r\n")), "{help}");
    assert!(!help.contains("{namespace}"), "{help}");

    // Removing a membership takes effect for the next channel at once.
    let r = server.call(Method::DELETE, &format!("/api/v1/namespaces/{a}/members/bob"), Some(&root), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(jump(&bob_cfg, "bob", gw, &target, "true").result.is_err(), "bob was removed from {a}");

    // At most 3 connections per user. The held connections count once the audit log has their logins.
    let logins = |log: &Value| {
        log.as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["action"] == "gateway.login" && e["outcome"] == "ok" && e["actor"] == "alice")
                    .count()
            })
            .unwrap_or(0)
    };
    let before = logins(&server.get("/api/v1/audit?limit=1000", &root).await.body);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            Command::new("ssh")
                .arg("-F")
                .arg(&alice_cfg)
                .args(["-N", "-p", &gw.to_string(), "alice@127.0.0.1"])
                .stdin(Stdio::null())
                .spawn()
                .expect("ssh -N"),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while logins(&server.get("/api/v1/audit?limit=1000", &root).await.body) < before + 3 {
        assert!(std::time::Instant::now() < deadline, "the 3 held connections did not sign in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(jump(&alice_cfg, "alice", gw, &target, "true").result.is_err(), "a 4th connection is refused");
    for mut child in held {
        let _ = child.kill();
        let _ = child.wait();
    }
    eventually(Duration::from_secs(10), "connections are counted down", || {
        jump(&alice_cfg, "alice", gw, &target, "true").result.is_ok()
    })
    .await;

    // A client that never authenticates is dropped after the auth timeout.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", gw)).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    let _ = idle.read_to_end(&mut sink);
    assert!(started.elapsed() < Duration::from_secs(9), "closed by the server, not by our read timeout");

    // The audit log has the logins (with fingerprints), the refusals and the forwarded bytes.
    let log = server.get("/api/v1/audit?limit=500", &root).await.body;
    let entries = log.as_array().expect("audit");
    let has = |action: &str, outcome: &str, f: &dyn Fn(&Value) -> bool| {
        entries.iter().any(|e| e["action"] == action && e["outcome"] == outcome && f(e))
    };
    assert!(has("gateway.login", "ok", &|e| e["actor"] == "alice"
        && e["detail"].as_str().is_some_and(|d| d.starts_with("SHA256:"))));
    assert!(has("gateway.login", "wrong_credentials", &|e| e["target"] == "mallory"));
    assert!(has("gateway.forward", "refused", &|e| e["target"] == format!("{ip}:22")));
    assert!(has("gateway.forward", "ok", &|e| e["target"] == format!("{target}:22")
        && e["detail"].as_str().is_some_and(|d| d.contains("up=") && d.contains("down=") && d.contains("duration="))));
    assert!(has("gateway.login", "too_many_connections", &|e| e["target"] == "alice"));

    act(&server, &alice, &format!("/api/v1/namespaces/{a}/cluster/delete")).await;
}
