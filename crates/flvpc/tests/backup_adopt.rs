//! A server restored from a backup adopts the machines of the backed-up one: the instance id
//! comes with the backup, so the running container is found by its labels and kept, not
//! recreated. The CLI's token comes along too. Real binary, real Docker.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{docker, free_port, listens_within, output, Cleanup, Server, BIN};

fn serve(data: &Path, port: u16) -> Server {
    let server = Server(
        Command::new(BIN)
            .args(["serve", "--plain-http", "--listen", &format!("127.0.0.1:{port}"), "--port-range", "24300-24399"])
            .args(["--publish-address", "127.0.0.1", "--ssh-listen", &format!("127.0.0.1:{}", free_port())])
            .env("FLVPC_DATA_DIR", data)
            .env_remove("FLVPC_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flvpc serve"),
    );
    assert!(listens_within(port, 30), "flvpc serve did not start");
    server
}

/// Runs the CLI with `data` as data dir and `config` as its config home.
fn cli(data: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let out = output(
        Command::new(BIN)
            .args(args)
            .env("FLVPC_DATA_DIR", data)
            .env_remove("FLVPC_DATABASE_URL")
            .env("XDG_CONFIG_HOME", config),
        stdin,
    );
    assert!(out.status.success(), "flvpc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Waits until `machines list` shows `count` running machines.
fn wait_running(data: &Path, config: &Path, ns: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = cli(data, config, &["machines", "list", ns], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.lines().filter(|l| l.contains(" running ")).count() == count {
            return;
        }
        assert!(Instant::now() < deadline, "machines not running: {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_restored_server_adopts_the_running_machines() {
    assert!(Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()), "needs a running dockerd");
    let ns = format!("bak{}", std::process::id());
    let _cleanup = Cleanup(vec![ns.clone()]);
    let dir = tempfile::tempdir().expect("dir");
    let (data, config) = (dir.path().join("data"), dir.path().join("config"));
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");

    cli(&data, &config, &["admin", "init", "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    let server = serve(&data, port);
    cli(&data, &config, &["login", "--server", &url, "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    cli(&data, &config, &["ns", "create", &ns], None);
    let spec = dir.path().join("cluster.yaml");
    std::fs::write(&spec, "machines:\n- count: 1\n  spec:\n    name: node%d\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 1, memory: 256MB}\n")
        .expect("spec");
    cli(&data, &config, &["cluster", "apply", &ns, "-f", spec.to_str().expect("path"), "--no-wait"], None);
    wait_running(&data, &config, &ns, 1);
    let container = docker(&["ps", "-q", "--no-trunc", "--filter", &format!("label=flvpc.namespace={ns}")]);
    assert_eq!(container.split_whitespace().count(), 1, "{container}");

    let file = dir.path().join("flvpc.backup");
    cli(&data, &config, &["backup", file.to_str().expect("path")], None);
    drop(server);

    // The restored server, on the same address: the stored CLI token is still valid there.
    let restored = dir.path().join("restored");
    cli(&restored, &config, &["restore", file.to_str().expect("path")], None);
    let _server = serve(&restored, port);
    wait_running(&restored, &config, &ns, 1);
    // Give the reconciler's first pass time to act if it were to recreate anything.
    std::thread::sleep(Duration::from_secs(3));
    let after = docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("label=flvpc.namespace={ns}")]);
    assert_eq!(after.trim(), container.trim(), "the same container, adopted, not recreated");
}
