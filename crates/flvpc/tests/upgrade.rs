//! Upgrading in place (issue 12, item 5): a data dir written by the previous tagged version is
//! served by this one after the binary is replaced and restarted. Everything the old version
//! stored is still there and usable (people, passwords, tokens, keys, roles, quotas, specs, the
//! audit log), and its running machine is adopted, not recreated.
//!
//! The previous version is a real build of the previous git tag: `scripts/dev.sh test` builds it
//! once (`build_previous_release`) and names it in FLVPC_TEST_PREVIOUS_BINARY. Real Docker.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{docker, free_port, listens_within, output, Cleanup, Server, BIN};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDFCd3WiyV0cjkbcL4fkBnxL/+5jSvIR+NDKLL/ooUXw bob@laptop";

fn previous_binary() -> (String, String) {
    let binary = std::env::var("FLVPC_TEST_PREVIOUS_BINARY").unwrap_or_else(|_| {
        panic!(
            "FLVPC_TEST_PREVIOUS_BINARY is not set: the upgrade test needs the previous tagged version's \
             binary, which `bash scripts/dev.sh test` builds once from git and names there"
        )
    });
    assert!(Path::new(&binary).is_file(), "{binary} (FLVPC_TEST_PREVIOUS_BINARY) does not exist");
    let version = std::env::var("FLVPC_TEST_PREVIOUS_VERSION").unwrap_or_else(|_| "the previous version".into());
    (binary, version)
}

/// `binary serve` on the data dir, its machines' ports in a range of this test's own.
fn serve(binary: &str, data: &Path, port: u16, extra: &[&str]) -> Server {
    let server = Server(
        Command::new(binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--port-range", "24400-24449"])
            .args(["--publish-address", "127.0.0.1", "--ssh-listen", &format!("127.0.0.1:{}", free_port())])
            .args(extra)
            .env("FLVPC_DATA_DIR", data)
            .env_remove("FLVPC_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flvpc serve"),
    );
    assert!(listens_within(port, 60), "{binary} serve did not start");
    server
}

/// Stops a server the way systemd does before an upgrade: SIGTERM, then wait.
fn stop(mut server: Server) {
    let pid = server.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.0.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "flvpc did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The API of one server, as one bearer token.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn login(http: &reqwest::Client, base: &str, login: &str, password: &str) -> Api {
        let http = http.clone();
        let r = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), StatusCode::OK, "{login} signs in");
        let token = r.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_owned();
        Api { base: base.to_owned(), token, http }
    }

    fn with_token(&self, token: &str) -> Api {
        Api { base: self.base.clone(), token: token.to_owned(), http: self.http.clone() }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.expect("request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    async fn must(&self, method: Method, path: &str, body: Value, want: StatusCode) -> Value {
        let (status, answer) = self.call(method.clone(), path, Some(body)).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        answer
    }

    /// Runs an operation and waits for it to succeed.
    async fn operate(&self, path: &str) {
        let (status, started) = self.call(Method::POST, path, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {started}");
        let id = started["operation"].as_str().expect("operation id").to_owned();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let op = self.get(&format!("/api/v1/operations/{id}")).await;
            match op["state"].as_str() {
                Some("succeeded") => return,
                Some("failed") => panic!("{path} failed: {op}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "{path} did not finish: {op}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn container_of(ns: &str) -> (String, String) {
    let id = docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("label=flvpc.namespace={ns}")]);
    let id = id.trim().to_owned();
    assert_eq!(id.split_whitespace().count(), 1, "one machine container: {id:?}");
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]).trim().to_owned();
    (id, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_previous_version_is_migrated_and_its_machines_adopted() {
    let (previous, version) = previous_binary();
    assert!(Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()), "needs a running dockerd");
    let ns = format!("upg{}", std::process::id());
    let _cleanup = Cleanup(vec![ns.clone()]);
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let plain = reqwest::Client::new();

    // The previous version sets everything up, with its own binary.
    let init = output(
        Command::new(&previous)
            .args(["admin", "init", "--login", "admin", "--password-stdin"])
            .env("FLVPC_DATA_DIR", &data)
            .env_remove("FLVPC_DATABASE_URL"),
        Some("admin-password\n"),
    );
    assert!(init.status.success(), "{version} admin init: {}", String::from_utf8_lossy(&init.stderr));
    let old = serve(&previous, &data, port, &[]);
    let admin = Api::login(&plain, &base, "admin", "admin-password").await;
    admin
        .must(Method::POST, "/api/v1/users", json!({"login": "bob", "password": "bob-password-1"}), StatusCode::CREATED)
        .await;
    admin.must(Method::POST, "/api/v1/namespaces", json!({"name": ns}), StatusCode::CREATED).await;
    admin
        .must(
            Method::PUT,
            &format!("/api/v1/namespaces/{ns}/members/bob"),
            json!({"role": "admin"}),
            StatusCode::CREATED,
        )
        .await;
    let quota = json!({"machines": 3, "cpus": 4, "memory_mb": 4096, "disk_gb": null, "host_ports": 5});
    admin.must(Method::PUT, &format!("/api/v1/namespaces/{ns}/quota"), quota.clone(), StatusCode::OK).await;
    let bob = Api::login(&plain, &base, "bob", "bob-password-1").await;
    bob.must(Method::POST, "/api/v1/keys", json!({"name": "laptop", "public_key": KEY}), StatusCode::CREATED).await;
    let ci = bob.must(Method::POST, "/api/v1/tokens", json!({"name": "ci"}), StatusCode::CREATED).await;
    let ci_token = ci["token"].as_str().expect("token secret").to_owned();
    let spec = json!({"machines": [{"count": 1, "spec": {
        "name": "node%d", "image": "flvpc/debian:12",
        "portMappings": [{"containerPort": 22}],
        "ignite": {"cpus": 1, "memory": "256MB"}}}]});
    bob.must(Method::PUT, &format!("/api/v1/namespaces/{ns}/cluster"), spec, StatusCode::OK).await;
    bob.operate(&format!("/api/v1/namespaces/{ns}/cluster/create")).await;
    let machine_before = bob.get(&format!("/api/v1/namespaces/{ns}/machines")).await;
    assert_eq!(machine_before[0]["state"], "running", "{machine_before}");
    let (container, started) = container_of(&ns);
    let audit_before = admin.get("/api/v1/audit").await;
    let audit_before = audit_before.as_array().expect("audit rows").clone();
    assert!(audit_before.iter().any(|r| r["action"] == "cluster.create"), "{audit_before:?}");
    stop(old);

    // The binary is replaced; the same data dir, address and flags. This version serves HTTPS
    // unless asked for plain HTTP: it makes its self-signed certificate in the old data dir.
    let _new = serve(BIN, &data, port, &[]);
    let cert = std::fs::read(data.join("tls/cert.pem")).expect("the certificate made at the upgrade");
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&cert).expect("PEM")])
        .build()
        .expect("client");
    let base = format!("https://127.0.0.1:{port}");
    let admin = Api::login(&https, &base, "admin", "admin-password").await;
    let bob = Api::login(&https, &base, "bob", "bob-password-1").await;
    // A token made by the previous version still authenticates.
    let me = bob.with_token(&ci_token).get("/api/v1/me").await;
    assert_eq!(me["login"], "bob", "{me}");
    let keys = bob.get("/api/v1/keys").await;
    assert_eq!(keys[0]["name"], "laptop", "{keys}");
    let members = admin.get(&format!("/api/v1/namespaces/{ns}/members")).await;
    assert!(
        members.as_array().expect("members").iter().any(|m| m["login"] == "bob" && m["role"] == "admin"),
        "{members}"
    );
    let resources = admin.get(&format!("/api/v1/namespaces/{ns}/resources")).await;
    assert_eq!(resources["quota"]["machines"], 3, "{resources}");
    assert_eq!(resources["quota"]["memory_mb"], 4096, "{resources}");
    let saved = bob.get(&format!("/api/v1/namespaces/{ns}/cluster")).await;
    assert!(saved.to_string().contains("node%d"), "the saved spec: {saved}");
    // Every audit row written before the upgrade is still there, and new ones follow.
    let audit_after = admin.get("/api/v1/audit?limit=500").await;
    let audit_after = audit_after.as_array().expect("audit rows");
    for row in &audit_before {
        assert!(
            audit_after.iter().any(|r| r["action"] == row["action"] && r["at"] == row["at"]),
            "audit row lost in the upgrade: {row}"
        );
    }

    // The machine: adopted as it runs. Long enough for the reconciler's first pass to have acted.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = bob.get(&format!("/api/v1/namespaces/{ns}/machines")).await;
        if listed[0]["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the machine is not running after the upgrade: {listed}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(container_of(&ns), (container.clone(), started.clone()), "the same container, never restarted");
    // And this version can operate on it: a restart through the new API.
    bob.operate(&format!("/api/v1/namespaces/{ns}/machines/node0/restart")).await;
    let (after_restart, restarted) = container_of(&ns);
    assert_eq!(after_restart, container, "restarted in place");
    assert_ne!(restarted, started, "really restarted");
    bob.operate(&format!("/api/v1/namespaces/{ns}/cluster/delete")).await;
}
