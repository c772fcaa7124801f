//! A hostile namespace admin and the host's ports (issue 8): host ports below 1024 and the
//! server's own ports are refused, addresses follow the superadmin's rules and are honoured,
//! a port clash names no other tenant, and concurrent applies cannot together pass the host's
//! cap. Real server (SQLite and PostgreSQL), real Docker engine. And the SSH gateway decides by
//! the API's policy, with the real OpenSSH client.

mod common;

use common::docker::{act, eventually, keypair, require_docker, unique, user, wait_operation, DockerCleanup};
use common::{Backend, Reply, TestServer};
use flvpc_model::spec::PortList;
use flvpc_server::reconcile::engine::ReconnectingDocker;
use flvpc_server::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn server(backend: Backend, config: Config) -> TestServer {
    require_docker();
    common::start_with(backend, config, Arc::new(ReconnectingDocker::new(common::docker::unique("ports-instance-"))))
        .await
}

/// A namespace with an admin of its own; returns the admin's token.
async fn namespace_with_admin(server: &TestServer, root: &str, ns: &str, admin: &str) -> String {
    let r = server.post("/api/v1/namespaces", root, json!({"name": ns})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let password = common::password_of(admin);
    let r = server.post("/api/v1/users", root, json!({"login": admin, "password": password})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let path = format!("/api/v1/namespaces/{ns}/members/{admin}");
    let r = server.call(Method::PUT, &path, Some(root), Some(json!({"role": "admin"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    server.login(admin, &password).await
}

/// One group of `count` machines with one mapping of port 22.
fn spec(name: &str, count: u32, mapping: Value) -> Value {
    let mut port = json!({"containerPort": 22});
    if let (Some(port), Some(extra)) = (port.as_object_mut(), mapping.as_object()) {
        port.extend(extra.clone());
    }
    json!({"machines": [{"count": count, "spec": {"name": format!("{name}%d"), "portMappings": [port],
        "ignite": {"cpus": 1, "memory": "256MB"}}}]})
}

async fn put_spec(server: &TestServer, token: &str, ns: &str, spec: Value) -> Reply {
    server.call(Method::PUT, &format!("/api/v1/namespaces/{ns}/cluster"), Some(token), Some(spec)).await
}

async fn create(server: &TestServer, token: &str, ns: &str) -> Reply {
    server.call(Method::POST, &format!("/api/v1/namespaces/{ns}/cluster/create"), Some(token), None).await
}

/// Deletes a namespace's machines and waits until they are gone, so that the reconciler does
/// not bring them back after the test's Docker clean-up.
async fn delete_machines(server: &TestServer, token: &str, ns: &str) {
    act(server, token, &format!("/api/v1/namespaces/{ns}/cluster/delete")).await;
}

fn message(reply: &Reply) -> &str {
    reply.body["error"]["message"].as_str().unwrap_or_default()
}

fn assert_refused_at(reply: &Reply, path: &str, needle: &str) {
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", reply.body);
    assert_eq!(reply.body["error"]["code"], "invalid_spec", "{:?}", reply.body);
    let text = message(reply);
    assert!(text.contains(&format!("{path}: ")), "no path {path} in {text:?}");
    assert!(text.contains(needle), "{text:?} lacks {needle:?}");
}

/// A port nothing on the host listens on right now, between the test servers' blocks
/// (20000-31999) and the kernel's ephemeral range (32768 and up).
fn free_port_outside_ranges() -> u16 {
    let start = 32000 + u16::try_from(std::process::id() % 700).unwrap_or(0);
    (start..32768)
        .chain(32000..start)
        .find(|p| TcpListener::bind((IpAddr::from([0, 0, 0, 0]), *p)).is_ok())
        .expect("a free port in 32000-32767")
}

/// The container's port bindings as Docker reports them, found by the namespace's label.
fn docker_port_bindings(ns: &str) -> Value {
    let ids = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=flvpc.namespace={ns}")])
        .output()
        .expect("docker ps");
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect();
    assert_eq!(ids.len(), 1, "one container for {ns}: {ids:?}");
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{json .HostConfig.PortBindings}}", &ids[0]])
        .output()
        .expect("docker inspect");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("port bindings JSON")
}

/// Ports below 1024, the server's own ports and ports outside the range and the allow-list are
/// refused with 422 at their field, nothing recorded; an allow-listed port outside the range is
/// accepted, and `address: 127.0.0.1` publishes it on 127.0.0.1 only.
async fn host_ports_follow_the_superadmins_rules(backend: Backend) {
    let allowed = free_port_outside_ranges();
    let range = common::own_port_range();
    let config = Config {
        port_range: range,
        // The server's own ports (5555 from --listen, 2222 from --ssh-listen) are refused even listed.
        allow_host_ports: PortList::parse(&format!("5555,2222,{allowed}")).expect("list"),
        allow_publish_addresses: vec![LOOPBACK],
        ..Config::default()
    };
    let server = server(backend, config).await;
    let root = server.init_root().await;
    let ns = unique("hp");
    let _cleanup = DockerCleanup(vec![ns.clone()]);
    let admin = namespace_with_admin(&server, &root, &ns, "hpadmin").await;

    let path = "machines[0].spec.portMappings[0].hostPort";
    for (port, needle) in [
        (22, "below 1024"),
        (81, "below 1024"),
        (1023, "below 1024"),
        (5555, "flvpc's own panel and API port"),
        (2222, "flvpc's own SSH gateway port"),
        (range.last + 1, "outside the ports this server hands out"),
    ] {
        let r = put_spec(&server, &admin, &ns, spec("n", 1, json!({"hostPort": port}))).await;
        assert_refused_at(&r, path, needle);
        assert!(message(&r).contains(&port.to_string()), "{:?}", r.body);
    }
    // footloose's offsets: the second machine of a group at the range's last port gets last + 1.
    let r = put_spec(&server, &admin, &ns, spec("n", 2, json!({"hostPort": range.last}))).await;
    assert_refused_at(&r, path, &format!("n1 would get host port {}", range.last + 1));
    // The superadmin is held to the same rules: they are the server's, not a role's.
    let r = put_spec(&server, &root, &ns, spec("n", 1, json!({"hostPort": 22}))).await;
    assert_refused_at(&r, path, "below 1024");
    // Nothing was recorded: no spec, no machines, no operation to create any.
    let stored = server.get(&format!("/api/v1/namespaces/{ns}/cluster"), &admin).await;
    assert_eq!(stored.status, StatusCode::NOT_FOUND, "{:?}", stored.body);
    assert_eq!(create(&server, &admin, &ns).await.status, StatusCode::CONFLICT, "no spec to create from");
    assert_eq!(server.get(&format!("/api/v1/namespaces/{ns}/machines"), &admin).await.body, json!([]));

    // Allow-listed, outside the range, on 127.0.0.1: accepted and published there only.
    let r = put_spec(&server, &admin, &ns, spec("n", 1, json!({"hostPort": allowed, "address": "127.0.0.1"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = create(&server, &admin, &ns).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_operation(&server, &admin, r.body["operation"].as_str().expect("operation")).await;
    let listed = server.get(&format!("/api/v1/namespaces/{ns}/machines"), &admin).await.body;
    assert_eq!(listed[0]["ports"][0]["host_port"], allowed, "{listed}");
    let bindings = docker_port_bindings(&ns);
    assert_eq!(bindings["22/tcp"], json!([{"HostIp": "127.0.0.1", "HostPort": allowed.to_string()}]), "{bindings}");
    delete_machines(&server, &admin, &ns).await;
}

/// With only 127.0.0.1 allowed, `address: 0.0.0.0` is refused at its field; 127.0.0.1 passes.
async fn addresses_outside_the_allowed_are_refused(backend: Backend) {
    let config = Config { port_range: common::own_port_range(), publish_address: LOOPBACK, ..Config::default() };
    let server = server(backend, config).await;
    let root = server.init_root().await;
    let ns = unique("ha");
    let admin = namespace_with_admin(&server, &root, &ns, "haadmin").await;
    let path = "machines[0].spec.portMappings[0].address";
    for address in ["0.0.0.0", "::", "10.1.2.3"] {
        let r = put_spec(&server, &admin, &ns, spec("n", 1, json!({"address": address}))).await;
        assert_refused_at(&r, path, "is not an address this server publishes ports on; allowed: 127.0.0.1");
    }
    let stored = server.get(&format!("/api/v1/namespaces/{ns}/cluster"), &admin).await;
    assert_eq!(stored.status, StatusCode::NOT_FOUND, "nothing saved: {:?}", stored.body);
    let r = put_spec(&server, &admin, &ns, spec("n", 1, json!({"address": "127.0.0.1"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// A port clash tells a namespace admin only that another namespace's machine (or a program on
/// the host) holds the port; the superadmin is told which machine.
async fn port_clash_names_no_other_tenant(backend: Backend) {
    let range = common::own_port_range();
    let server = server(backend, Config { port_range: range, ..Config::default() }).await;
    let root = server.init_root().await;
    let (holder_ns, asker_ns) = (unique("hh"), unique("hk"));
    let _cleanup = DockerCleanup(vec![holder_ns.clone(), asker_ns.clone()]);
    let holder = namespace_with_admin(&server, &root, &holder_ns, "holder").await;
    let asker = namespace_with_admin(&server, &root, &asker_ns, "asker").await;

    let held = range.first + 50;
    let r = put_spec(&server, &holder, &holder_ns, spec("secret", 1, json!({"hostPort": held}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = create(&server, &holder, &holder_ns).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_operation(&server, &holder, r.body["operation"].as_str().expect("operation")).await;

    let r = put_spec(&server, &asker, &asker_ns, spec("want", 1, json!({"hostPort": held}))).await;
    assert_eq!(r.status, StatusCode::OK, "a clash is found at create: {:?}", r.body);
    let r = create(&server, &asker, &asker_ns).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    let text = message(&r);
    assert!(
        text.contains(&format!("host port {held}/tcp")) && text.contains("by another namespace's machine"),
        "{text}"
    );
    assert!(!text.contains(&holder_ns) && !text.contains("secret0"), "names another tenant: {text}");
    assert_eq!(server.get(&format!("/api/v1/namespaces/{asker_ns}/machines"), &asker).await.body, json!([]));

    // The superadmin may see the holder.
    let r = create(&server, &root, &asker_ns).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(message(&r).contains(&format!("machine secret0 of namespace {holder_ns}")), "{:?}", r.body);

    // A program on the host holding a port of the range.
    let program_port = range.first + 60;
    let _program = TcpListener::bind((IpAddr::from([0, 0, 0, 0]), program_port)).expect("bind a port of the range");
    let r = put_spec(&server, &asker, &asker_ns, spec("want", 1, json!({"hostPort": program_port}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = create(&server, &asker, &asker_ns).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(message(&r).contains("by a program on the host"), "{:?}", r.body);
    assert_eq!(server.get(&format!("/api/v1/namespaces/{asker_ns}/machines"), &asker).await.body, json!([]));
    delete_machines(&server, &holder, &holder_ns).await;
}

/// N namespaces apply at once; each would fit the host's memory cap alone, only `FITS` fit
/// together: exactly `FITS` creates pass, the others get 422 quota_exceeded, and what is
/// recorded as running stays within the cap.
async fn concurrent_applies_cannot_together_pass_the_host_cap(backend: Backend) {
    const N: usize = 5;
    const FITS: usize = 2;
    const MEMORY_MB: u64 = 256;
    let host_mb = flvpc_host::host_capacity().memory_mb;
    assert!(host_mb > 1024, "the host reports {host_mb} MB");
    // A cap of FITS machines and a half: floor(ratio × host) lands between FITS and FITS + 1 machines.
    let ratio = (FITS as f64 + 0.5) * MEMORY_MB as f64 / host_mb as f64;
    let config = Config { port_range: common::own_port_range(), overcommit_memory: Some(ratio), ..Config::default() };
    let server = server(backend, config).await;
    let root = server.init_root().await;
    let names: Vec<String> = (0..N).map(|_| unique("hc")).collect();
    let _cleanup = DockerCleanup(names.clone());
    for ns in &names {
        assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": ns})).await.status, StatusCode::CREATED);
        let one =
            json!({"machines": [{"count": 1, "spec": {"name": "m%d", "ignite": {"cpus": 1, "memory": "256MB"}}}]});
        let r = put_spec(&server, &root, ns, one).await;
        assert_eq!(r.status, StatusCode::OK, "each fits alone: {:?}", r.body);
    }
    let client = reqwest::Client::new();
    let requests = names.iter().map(|ns| {
        let request =
            client.post(format!("{}/api/v1/namespaces/{ns}/cluster/create", server.base)).bearer_auth(&root).send();
        tokio::spawn(async move {
            let response = request.await.expect("create request");
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        })
    });
    let mut passed = Vec::new();
    let mut refused = Vec::new();
    for (ns, handle) in names.iter().zip(requests.collect::<Vec<_>>()) {
        let (status, body) = handle.await.expect("request task");
        match status {
            StatusCode::ACCEPTED => passed.push((ns.clone(), body["operation"].as_str().expect("op").to_owned())),
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
                assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("overcommit cap")), "{body}");
                refused.push(ns.clone());
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((passed.len(), refused.len()), (FITS, N - FITS), "exactly {FITS} of {N} concurrent applies fit");
    let running =
        |capacity: &Value| (capacity["running"]["machines"].clone(), capacity["running"]["memory_mb"].clone());
    let capacity = server.get("/api/v1/capacity", &root).await.body;
    assert_eq!(running(&capacity), (json!(FITS), json!(FITS as u64 * MEMORY_MB)), "{capacity}");
    for (_, id) in &passed {
        wait_operation(&server, &root, id).await;
    }

    // Stopping frees room that a refused namespace may now take; starting or restarting the
    // stopped machine is then refused, and leaves it stopped.
    let (stopped, open) = (&passed[0].0, &refused[0]);
    act(&server, &root, &format!("/api/v1/namespaces/{stopped}/cluster/stop")).await;
    act(&server, &root, &format!("/api/v1/namespaces/{open}/cluster/create")).await;
    for action in ["start", "restart"] {
        let path = format!("/api/v1/namespaces/{stopped}/machines/m0/{action}");
        let r = server.call(Method::POST, &path, Some(&root), None).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{action}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "quota_exceeded", "{:?}", r.body);
    }
    let listed = server.get(&format!("/api/v1/namespaces/{stopped}/machines"), &root).await.body;
    assert_eq!(listed[0]["desired"], "stopped", "{listed}");
    let capacity = server.get("/api/v1/capacity", &root).await.body;
    assert_eq!(running(&capacity), (json!(FITS), json!(FITS as u64 * MEMORY_MB)), "{capacity}");
    for ns in &names {
        delete_machines(&server, &root, ns).await;
    }
}

on_both_backends!(
    host_ports_follow_the_superadmins_rules,
    addresses_outside_the_allowed_are_refused,
    port_clash_names_no_other_tenant,
    concurrent_applies_cannot_together_pass_the_host_cap,
);

/// `ssh -J login@127.0.0.1:gw root@target command` with only `key`, trusting throwaway host keys.
fn jump(key: &Path, login: &str, gw: u16, target: &str, command: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("dir");
    let config = common::ssh::client_config(dir.path(), login, key, None);
    common::ssh::jump(&config, login, gw, target, command).result
}

/// The gateway asks the same policy as the API: a member's channel is forwarded, a member of
/// another namespace's is refused by the gateway, the superadmin's is forwarded (as the API lets
/// the superadmin into every namespace) but sshd in the machine still refuses a key that is not
/// a member's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_decides_by_the_apis_policy() {
    use flvpc_server::gateway::{self, GatewayConfig};
    require_docker();
    let server = common::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("dir");
    let host_key = gateway::load_or_create_host_key(dir.path()).expect("host key");
    let listen = "127.0.0.1:0".parse().expect("addr");
    let (addr, _gateway) =
        gateway::spawn(listen, server.state.clone(), GatewayConfig::default(), host_key).await.expect("gateway");
    let gw = addr.port();
    let root = server.init_root().await;
    let (ns, other_ns) = (unique("hg"), unique("hg"));
    let _cleanup = DockerCleanup(vec![ns.clone(), other_ns.clone()]);
    for name in [&ns, &other_ns] {
        assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": name})).await.status, StatusCode::CREATED);
    }
    let (member_key, other_key, root_key) = (keypair("member"), keypair("other"), keypair("root"));
    let member = user(&server, &root, "member", &ns, "admin", &member_key).await;
    let _other = user(&server, &root, "other", &other_ns, "admin", &other_key).await;
    let r = server.post("/api/v1/keys", &root, json!({"name": "laptop", "public_key": root_key.public})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let one = json!({"machines": [{"count": 1, "spec": {"name": "n%d", "ignite": {"cpus": 1, "memory": "256MB"}}}]});
    assert_eq!(put_spec(&server, &member, &ns, one).await.status, StatusCode::OK);
    act(&server, &member, &format!("/api/v1/namespaces/{ns}/cluster/create")).await;
    let target = format!("n0.{ns}");

    eventually(Duration::from_secs(90), "the member reaches n0 through the gateway", || {
        jump(&member_key.private, "member", gw, &target, "hostname").is_ok_and(|h| h == "n0")
    })
    .await;
    let refused = jump(&other_key.private, "other", gw, &target, "true").expect_err("not a member");
    // OpenSSH reports a refused jump channel as a failed stdio forward.
    assert!(refused.contains("stdio forwarding failed"), "the gateway refuses: {refused}");
    let denied = jump(&root_key.private, "root", gw, &target, "true").expect_err("sshd refuses root's key");
    assert!(
        !denied.contains("stdio forwarding failed") && denied.contains("Permission denied"),
        "the gateway forwards the superadmin, the machine's sshd refuses the key: {denied}"
    );
    delete_machines(&server, &member, &ns).await;
}
