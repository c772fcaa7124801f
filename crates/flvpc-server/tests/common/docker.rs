//! Helpers for tests that drive the real Docker engine and OpenSSH client.
#![allow(dead_code)]

use super::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Removes everything Docker holds for the test's namespaces, even when the test fails.
pub struct DockerCleanup(pub Vec<String>);

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for ns in &self.0 {
            let ids = Command::new("docker")
                .args(["ps", "-aq", "--filter", &format!("label=flvpc.namespace={ns}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .unwrap_or_default();
            if !ids.is_empty() {
                let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).output();
            }
            remove_network_when_free(&format!("flvpc-{ns}"));
        }
    }
}

/// Removes a network, waiting for the endpoints of containers just removed to go: a server
/// still reconciling as the test ends can hold one for a moment, and a network left behind
/// takes one of Docker's few default address pools from every later test. Bounded: ~10 s.
fn remove_network_when_free(network: &str) {
    for _ in 0..40 {
        let _ = Command::new("docker").args(["network", "rm", network]).output();
        let exists = Command::new("docker").args(["network", "inspect", network]).output();
        if !exists.is_ok_and(|o| o.status.success()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    eprintln!("warning: network {network} is still there after 10 s");
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 3]>()))
}

pub fn require_docker() {
    let info = Command::new("docker").arg("info").output();
    assert!(
        info.as_ref().is_ok_and(|o| o.status.success()),
        "these tests need a running Docker engine (scripts/dev.sh test starts dockerd)"
    );
    let image = Command::new("docker").args(["image", "inspect", "flvpc/debian:12"]).output();
    assert!(
        image.is_ok_and(|o| o.status.success()),
        "these tests need the image flvpc/debian:12: run `flvpc image build` (scripts/dev.sh test does it)"
    );
}

/// A user's key pair on disk.
pub struct KeyPair {
    _dir: tempfile::TempDir,
    pub private: PathBuf,
    pub public: String,
}

pub fn keypair(comment: &str) -> KeyPair {
    let dir = tempfile::tempdir().expect("dir");
    let private = dir.path().join("id");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", comment, "-f"])
        .arg(&private)
        .status()
        .expect("ssh-keygen");
    assert!(ok.success());
    let public = std::fs::read_to_string(private.with_extension("pub")).expect("pub").trim().to_owned();
    KeyPair { _dir: dir, private, public }
}

/// Runs `command` on a machine through its host port with the real OpenSSH client.
pub fn ssh(key: &Path, port: u16, command: &str) -> Result<String, String> {
    let out = Command::new("ssh")
        .args([
            "-i",
            key.to_str().expect("utf-8 path"),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            "-p",
            &port.to_string(),
            "root@127.0.0.1",
            command,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Polls `check` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

pub async fn wait_operation(server: &TestServer, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let r = server.get(&format!("/api/v1/operations/{id}"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        match r.body["state"].as_str() {
            Some("succeeded") => return r.body,
            Some("failed") => panic!("operation failed: {}", r.body),
            _ => {}
        }
        assert!(Instant::now() < deadline, "operation {id} did not finish: {}", r.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn put_spec(server: &TestServer, token: &str, ns: &str, yaml: &str) -> reqwest::Response {
    server
        .client
        .put(format!("{}/api/v1/namespaces/{ns}/cluster", server.base))
        .bearer_auth(token)
        .header("content-type", "application/yaml")
        .body(yaml.to_owned())
        .send()
        .await
        .expect("put spec")
}

pub async fn act(server: &TestServer, token: &str, path: &str) -> Value {
    let r = server.call(Method::POST, path, Some(token), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{path}: {:?}", r.body);
    let id = r.body["operation"].as_str().expect("operation id").to_owned();
    wait_operation(server, token, &id).await
}

pub async fn machines(server: &TestServer, token: &str, ns: &str) -> Vec<Value> {
    let r = server.get(&format!("/api/v1/namespaces/{ns}/machines"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body.as_array().expect("array").clone()
}

pub fn ssh_port(machine: &Value) -> u16 {
    machine["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["container_port"] == 22))
        .and_then(|p| p["host_port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .expect("a host port for 22")
}

pub async fn user(server: &TestServer, root: &str, login: &str, ns: &str, role: &str, key: &KeyPair) -> String {
    let r = server.post("/api/v1/users", root, json!({"login": login, "password": super::password_of(login)})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = server
        .call(Method::PUT, &format!("/api/v1/namespaces/{ns}/members/{login}"), Some(root), Some(json!({"role": role})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let token = server.login(login, &super::password_of(login)).await;
    let r = server.post("/api/v1/keys", &token, json!({"name": "laptop", "public_key": key.public})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    token
}
