//! flvpc killed in the middle of creating a cluster loses nothing: started again
//! on the same data dir, it finishes the operation, and removes a labelled
//! container of its own that has no record. Real binary, real Docker.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{docker, listens_within, output, Cleanup, Server, BIN};

fn serve(data: &Path, port: u16) -> Server {
    let server = Server(
        Command::new(BIN)
            .args([
                "serve",
                "--plain-http",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--port-range",
                "24200-24299",
                "--publish-address",
                "127.0.0.1",
            ])
            .env("FLVPC_DATA_DIR", data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flvpc serve"),
    );
    assert!(listens_within(port, 30), "flvpc serve did not start");
    server
}

fn cli(data: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let out = output(
        Command::new(BIN).args(args).env("FLVPC_DATA_DIR", data).env("XDG_CONFIG_HOME", data.join("config")),
        stdin,
    );
    assert!(out.status.success(), "flvpc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn ssh_banner(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 8];
    stream.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-2.0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_interrupted_by_a_crash_is_finished_after_restart() {
    assert!(Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()), "needs a running dockerd");
    let ns = format!("rst{}", std::process::id());
    let _cleanup = Cleanup(vec![ns.clone()]);
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
    let url = format!("http://127.0.0.1:{port}");

    cli(data, &["admin", "init", "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    let mut server = serve(data, port);
    cli(data, &["login", "--server", &url, "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    cli(data, &["ns", "create", &ns], None);
    let spec = data.join("cluster.yaml");
    std::fs::write(&spec, "machines:\n- count: 4\n  spec:\n    name: n%d\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 1, memory: 256MB}\n")
        .expect("spec");
    let out = cli(data, &["cluster", "apply", &ns, "-f", spec.to_str().expect("path"), "--no-wait"], None);
    let operation = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(operation.starts_with("op-"), "{operation}");

    // Crash right away: some machines may exist, some not.
    std::thread::sleep(Duration::from_millis(300));
    let _ = server.0.kill();
    let _ = server.0.wait();
    let before = docker(&["ps", "-aq", "--filter", &format!("label=flvpc.namespace={ns}")]);
    eprintln!("containers at the crash: {}", before.split_whitespace().count());

    // A labelled container of this flvpc without a record must go.
    let store =
        flvpc_store::Store::open(&format!("sqlite://{}", data.join("flvpc.db").display())).await.expect("store");
    let instance = store.instance_id().await.expect("instance id");
    store.close().await;
    docker(&[
        "create",
        "--name",
        &format!("{ns}-ghost"),
        "--label",
        &format!("flvpc.namespace={ns}"),
        "--label",
        "flvpc.machine=ghost",
        "--label",
        &format!("flvpc.instance={instance}"),
        "flvpc/debian:12",
    ]);

    let _server = serve(data, port);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = Command::new(BIN)
            .args(["machines", "list", &ns])
            .env("XDG_CONFIG_HOME", data.join("config"))
            .output()
            .expect("list");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let running = text.lines().filter(|l| l.contains(" running ")).count();
        let ghost_gone = docker(&["ps", "-aq", "--filter", &format!("name={ns}-ghost")]).trim().is_empty();
        if running == 4 && ghost_gone {
            break;
        }
        assert!(Instant::now() < deadline, "not recovered: {text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The interrupted operation itself ends as succeeded, and nothing was created twice.
    let token = std::fs::read_to_string(data.join("config/flvpc/config.json")).expect("config");
    let token: serde_json::Value = serde_json::from_str(&token).expect("json");
    let token = token["token"].as_str().expect("token").to_owned();
    let op: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/operations/{operation}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get op")
        .json()
        .await
        .expect("json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut op = op;
    while op["state"] != "succeeded" {
        assert!(Instant::now() < deadline, "operation did not finish: {op}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        op = reqwest::Client::new()
            .get(format!("{url}/api/v1/operations/{operation}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get op")
            .json()
            .await
            .expect("json");
    }
    assert_eq!(op["progress"], serde_json::json!({"done": 4, "total": 4}));
    let containers = docker(&["ps", "-aq", "--filter", &format!("label=flvpc.namespace={ns}")]);
    assert_eq!(containers.split_whitespace().count(), 4, "exactly one container per machine");
    for port in 24200..24204 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ssh_banner(port) {
            assert!(Instant::now() < deadline, "no sshd on {port}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    cli(data, &["cluster", "delete", &ns], None);
    assert!(docker(&["ps", "-aq", "--filter", &format!("label=flvpc.namespace={ns}")]).trim().is_empty());
}
