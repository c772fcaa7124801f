//! Quotas and the host-wide overcommit cap: admission of spec updates, creates and
//! starts, on SQLite and PostgreSQL. Machines live in the recording fake engine
//! here; admission happens before any engine call (tests/machines.rs drives Docker).

mod common;

use common::{Backend, TestServer};
use flvpc_server::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

async fn server(backend: Backend, config: Config) -> TestServer {
    let engine = flvpc_host::FakeEngine::new();
    engine.add_image("flvpc/debian:12");
    common::start_with(backend, config, Arc::new(engine)).await
}

fn spec(count: u32, memory_mb: u32) -> Value {
    json!({"machines": [{"count": count, "spec": {"name": "n%d", "portMappings": [{"containerPort": 22}],
        "ignite": {"cpus": 1, "memory": format!("{memory_mb}MB")}}}]})
}

async fn put_spec(server: &TestServer, token: &str, ns: &str, spec: Value) -> common::Reply {
    server.call(Method::PUT, &format!("/api/v1/namespaces/{ns}/cluster"), Some(token), Some(spec)).await
}

async fn wait(server: &TestServer, token: &str, reply: common::Reply) {
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let id = reply.body["operation"].as_str().expect("op").to_owned();
    for _ in 0..200 {
        let op = server.get(&format!("/api/v1/operations/{id}"), token).await.body;
        if op["state"] == "succeeded" {
            return;
        }
        assert_ne!(op["state"], "failed", "{op}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("operation {id} did not finish");
}

fn assert_quota_error(reply: &common::Reply, words: &[&str]) {
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", reply.body);
    assert_eq!(reply.body["error"]["code"], "quota_exceeded");
    let message = reply.body["error"]["message"].as_str().expect("message");
    for w in words {
        assert!(message.contains(w), "{message:?} lacks {w:?}");
    }
}

async fn namespace_quota_admission(backend: Backend) {
    let server = server(backend, Config::default()).await;
    let root = server.init_root().await;
    let r = server
        .post("/api/v1/namespaces", &root, json!({"name": "qa", "quota": {"machines": 2, "memory_mb": 1024}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // Over the machine quota: refused when saved, naming resource, limit, use and request.
    let r = put_spec(&server, &root, "qa", spec(3, 256)).await;
    assert_quota_error(&r, &["machines", "namespace qa allows 2", "0 are in use", "3 more"]);
    let r = put_spec(&server, &root, "qa", spec(2, 600)).await;
    assert_quota_error(&r, &["memory", "allows 1024 MB", "1200 MB more"]);
    // Exactly at the limit fits.
    assert_eq!(put_spec(&server, &root, "qa", spec(2, 512)).await.status, StatusCode::OK);
    let create = server.call(Method::POST, "/api/v1/namespaces/qa/cluster/create", Some(&root), None).await;
    wait(&server, &root, create).await;

    let capacity = server.get("/api/v1/capacity", &root).await;
    assert_eq!(capacity.status, StatusCode::OK);
    let qa =
        capacity.body["namespaces"].as_array().expect("list").iter().find(|n| n["name"] == "qa").expect("qa").clone();
    assert_eq!(qa["allocated"], json!({"machines": 2, "cpus": 2, "memory_mb": 1024, "disk_gb": 8, "host_ports": 2}));
    assert_eq!(qa["quota"]["machines"], 2);
    assert_eq!(qa["quota"]["cpus"], Value::Null);
    assert_eq!(capacity.body["disk_enforced"], false);

    // The namespace's members read the same numbers through the API (as on its panel page);
    // others are told it does not exist.
    for (login, role) in [("qmember", Some("user")), ("stranger", None)] {
        let r =
            server.post("/api/v1/users", &root, json!({"login": login, "password": common::password_of(login)})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        if let Some(role) = role {
            let path = format!("/api/v1/namespaces/qa/members/{login}");
            let r = server.call(Method::PUT, &path, Some(&root), Some(json!({"role": role}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        }
    }
    let member = server.login("qmember", &common::password_of("qmember")).await;
    let own = server.get("/api/v1/namespaces/qa/resources", &member).await;
    assert_eq!(own.status, StatusCode::OK, "{:?}", own.body);
    assert_eq!(own.body["name"], "qa");
    assert_eq!(own.body["quota"], qa["quota"]);
    assert_eq!(own.body["allocated"], qa["allocated"]);
    assert_eq!(own.body["running"], qa["running"]);
    let stranger = server.login("stranger", &common::password_of("stranger")).await;
    assert_eq!(server.get("/api/v1/namespaces/qa/resources", &stranger).await.status, StatusCode::NOT_FOUND);
    // Names that cannot exist are answered like namespaces one cannot see, never with a crash or 500.
    for hostile in ["..%2F..%2Fetc", "QA", "a%20b", "x%00y", &"n".repeat(300)] {
        let r = server.get(&format!("/api/v1/namespaces/{hostile}/resources"), &member).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{hostile}: {:?}", r.body);
    }

    // A lower quota keeps what exists; the same spec again asks for nothing more and passes;
    // shrinking passes; growing is refused.
    let r = server
        .call(Method::PUT, "/api/v1/namespaces/qa/quota", Some(&root), Some(json!({"machines": 1, "memory_mb": 512})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let again = server.call(Method::POST, "/api/v1/namespaces/qa/cluster/create", Some(&root), None).await;
    wait(&server, &root, again).await;
    assert_eq!(put_spec(&server, &root, "qa", spec(1, 512)).await.status, StatusCode::OK);
    let shrink = server.call(Method::POST, "/api/v1/namespaces/qa/cluster/create", Some(&root), None).await;
    wait(&server, &root, shrink).await;
    let r = put_spec(&server, &root, "qa", spec(2, 256)).await;
    assert_quota_error(&r, &["machines", "allows 1", "1 are in use", "1 more"]);

    // Bad quotas are refused; only the superadmin sets them.
    for bad in [json!({"machines": -1}), json!({"cpus": "2"}), json!({"gpus": 1}), json!({"memory_mb": 1.5})] {
        let r = server.call(Method::PUT, "/api/v1/namespaces/qa/quota", Some(&root), Some(bad.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
    let r = server.post("/api/v1/users", &root, json!({"login": "ann", "password": "ann-password"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = server
        .call(Method::PUT, "/api/v1/namespaces/qa/members/ann", Some(&root), Some(json!({"role": "admin"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let ann = server.login("ann", "ann-password").await;
    let r = server.call(Method::PUT, "/api/v1/namespaces/qa/quota", Some(&ann), Some(json!({"machines": 100}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(server.get("/api/v1/capacity", &ann).await.status, StatusCode::FORBIDDEN);
}

async fn host_overcommit_cap(backend: Backend) {
    // A memory cap of a hundredth of the host: a 2-machine cluster of 1 GB each cannot fit anywhere.
    let config = Config { overcommit_memory: Some(0.01), overcommit_cpu: Some(100.0), ..Config::default() };
    let server = server(backend, config).await;
    let root = server.init_root().await;
    assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": "big"})).await.status, StatusCode::CREATED);
    assert_eq!(
        put_spec(&server, &root, "big", spec(2, 1024)).await.status,
        StatusCode::OK,
        "no quota on the namespace"
    );
    let r = server.call(Method::POST, "/api/v1/namespaces/big/cluster/create", Some(&root), None).await;
    assert_quota_error(&r, &["memory", "the host's overcommit cap", "2048 MB more"]);
    let machines = server.get("/api/v1/namespaces/big/machines", &root).await;
    assert_eq!(machines.body, json!([]), "nothing is half-created");
    let capacity = server.get("/api/v1/capacity", &root).await.body;
    assert_eq!(capacity["overcommit"]["memory"], 0.01);
    assert!(capacity["host"]["cpus"].as_u64().is_some_and(|c| c >= 1));
    assert!(capacity["host"]["disk_gb"].as_u64().is_some_and(|d| d >= 1), "{capacity}");
}

/// A Docker engine that is down: a clear 503 naming dockerd, nothing recorded, and the same
/// request works once the engine is back.
async fn engine_down_is_clear_and_retryable(backend: Backend) {
    let engine = Arc::new(flvpc_host::FakeEngine::new());
    engine.add_image("flvpc/debian:12");
    let server = common::start_with(backend, Config::default(), engine.clone()).await;
    let root = server.init_root().await;
    assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": "down"})).await.status, StatusCode::CREATED);
    engine.set_unreachable(true);
    let health = reqwest::get(format!("{}/healthz", server.base)).await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK, "the panel and API still serve");
    let text = health.text().await.expect("text");
    assert!(text.starts_with("degraded: the machine engine does not answer"), "{text}");
    let r = put_spec(&server, &root, "down", spec(1, 256)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "engine_unavailable");
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains("dockerd")), "{:?}", r.body);
    let stored = server.get("/api/v1/namespaces/down/cluster", &root).await;
    assert_eq!(stored.status, StatusCode::NOT_FOUND, "nothing was saved");
    engine.set_unreachable(false);
    let health = reqwest::get(format!("{}/healthz", server.base)).await.expect("healthz");
    assert_eq!(health.text().await.expect("text"), "ok\n");
    assert_eq!(put_spec(&server, &root, "down", spec(1, 256)).await.status, StatusCode::OK);
    let create = server.call(Method::POST, "/api/v1/namespaces/down/cluster/create", Some(&root), None).await;
    wait(&server, &root, create).await;
    assert_eq!(server.get("/api/v1/namespaces/down/machines", &root).await.body[0]["state"], "running");
}

/// A namespace's machine list carries each machine's own host ports and no other machine's
/// (machines and ports are read in one joined query since issue 9), and a machine without
/// ports lists none; the reconciler's read of one machine sees the same ports.
async fn machine_lists_carry_their_own_ports(backend: Backend) {
    let server = server(backend, Config::default()).await;
    let root = server.init_root().await;
    let two_ports = json!({"machines": [
        {"count": 2, "spec": {"name": "web%d", "portMappings": [{"containerPort": 22}, {"containerPort": 80}],
            "ignite": {"cpus": 1, "memory": "256MB"}}},
        {"count": 1, "spec": {"name": "bare%d", "ignite": {"cpus": 1, "memory": "256MB"}}}]});
    for ns in ["pa", "pb"] {
        assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": ns})).await.status, StatusCode::CREATED);
        assert_eq!(put_spec(&server, &root, ns, two_ports.clone()).await.status, StatusCode::OK);
        let create =
            server.call(Method::POST, &format!("/api/v1/namespaces/{ns}/cluster/create"), Some(&root), None).await;
        wait(&server, &root, create).await;
    }
    let mut seen = std::collections::HashSet::new();
    for ns in ["pa", "pb"] {
        let list = server.get(&format!("/api/v1/namespaces/{ns}/machines"), &root).await;
        assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
        let machines = list.body.as_array().expect("list");
        let names: Vec<&str> = machines.iter().filter_map(|m| m["name"].as_str()).collect();
        assert_eq!(names, ["bare0", "web0", "web1"]);
        assert_eq!(machines[0]["ports"], json!([]), "a machine without ports");
        for m in &machines[1..] {
            let ports = m["ports"].as_array().expect("ports");
            let inside: Vec<u64> = ports.iter().filter_map(|p| p["container_port"].as_u64()).collect();
            let host: Vec<u64> = ports.iter().filter_map(|p| p["host_port"].as_u64()).collect();
            assert_eq!(ports.len(), 2, "{m}");
            assert!(inside.contains(&22) && inside.contains(&80), "{m}");
            assert!(host[0] < host[1], "ports by host port: {m}");
            for port in host {
                assert!(seen.insert(port), "host port {port} listed twice: {m}");
            }
            assert!(m["ssh"]["direct"].as_str().is_some(), "the SSH port gives a direct command: {m}");
        }
        assert_eq!(machines[0]["state"], "running", "the reconciler read the machine and its ports");
    }
    let mine = server.get("/api/v1/namespaces", &root).await.body;
    let listed: Vec<&str> = mine.as_array().expect("list").iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(listed, ["pa", "pb"]);
}

on_both_backends!(
    namespace_quota_admission,
    host_overcommit_cap,
    engine_down_is_clear_and_retryable,
    machine_lists_carry_their_own_ports
);
