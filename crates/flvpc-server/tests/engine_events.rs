//! Docker's events reach the reconciler: a machine stopped behind flvpc's back is reconciled
//! (started again, as its record wants) within seconds, not at the next 30 s resync.
//!
//! Needs dockerd and the image flvpc/debian:12.

mod common;

use common::docker::*;
use common::Backend;
use flvpc_server::events::Event;
use reqwest::StatusCode;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("run docker");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_stopped_behind_flvpcs_back_is_reconciled_within_seconds() {
    require_docker();
    let ns = unique("evt");
    let _cleanup = DockerCleanup(vec![ns.clone()]);
    let server = common::start(Backend::Sqlite).await;
    // The server's first resync ran as it started; the next one is 30 s away.
    let started = Instant::now();
    let root = server.init_root().await;
    assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": ns})).await.status, StatusCode::CREATED);
    let spec = "machines:\n- count: 1\n  spec:\n    name: node%d\n    image: flvpc/debian:12\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 1, memory: 256MB}\n";
    assert_eq!(put_spec(&server, &root, &ns, spec).await.status(), StatusCode::OK);
    act(&server, &root, &format!("/api/v1/namespaces/{ns}/cluster/create")).await;
    let container = format!("node0.{ns}");
    let booted = docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]);

    let mut events = server.state.reconciler.subscribe();
    docker(&["stop", "--time", "1", &container]);
    let stopped = Instant::now();
    // What was said before the stop (the creation's own events) proves nothing.
    while events.try_recv().is_ok() {}
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Ok(Event::Machine { namespace, name, state, .. })
                    if namespace == ns && name == "node0" && state == "running" =>
                {
                    return;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(err) => panic!("the reconciler's events ended: {err}"),
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "node0 was not reconciled within 5 s of being stopped");
    // Not the periodic resync: it has not come round again yet.
    assert!(started.elapsed() < Duration::from_secs(30), "too slow a host to tell the resync apart");
    assert_eq!(docker(&["inspect", "-f", "{{.State.Status}}", &container]), "running");
    assert_ne!(docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]), booted, "started anew");
    let listed = machines(&server, &root, &ns).await;
    assert_eq!(listed[0]["state"], "running", "{listed:?}");
    eprintln!("reconciled {:?} after the stop", stopped.elapsed());

    // Waited for, so that no reconciler work outlives the test and holds the network.
    act(&server, &root, &format!("/api/v1/namespaces/{ns}/cluster/delete")).await;
}
