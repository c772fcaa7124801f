//! A microVM through the whole server: the real binary serving the API and the SSH gateway,
//! a cluster with one `backend: microvm` machine, and the real OpenSSH client reaching the
//! VM through the gateway (`ssh -J`). Real Docker and QEMU (KVM if the probe boots a kernel
//! with it, TCG otherwise); traffic only to 127.0.0.1 and the test's own machines.
//!
//! Needs the VM artifacts (`FLVPC_TEST_VM_DIR`, default `/var/cache/flvpc-test/vm`) and the
//! runner image: both are built through the binary on first use (a few minutes).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flvpc");
/// Under TCG on a shared 2-core host a VM reaches sshd in about a minute.
const BOOT: Duration = Duration::from_secs(300);

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = docker(&["ps", "-aq", "--filter", &format!("label=flvpc.namespace={}", self.0)]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            docker(&args);
        }
        docker(&["network", "rm", &format!("flvpc-{}", self.0)]);
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

fn vm_dir() -> PathBuf {
    std::env::var_os("FLVPC_TEST_VM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/flvpc-test/vm"))
}

fn cli(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .env("FLVPC_DATA_DIR", data)
        .env("XDG_CONFIG_HOME", data.join("config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flvpc");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "flvpc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn serve(data: &Path, port: u16, gateway: u16, log: &Path) -> Server {
    let log = std::fs::File::create(log).expect("server log");
    let server = Server(
        Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--ssh-listen", &format!("127.0.0.1:{gateway}")])
            .args(["--port-range", "24300-24399", "--publish-address", "127.0.0.1"])
            .arg("--vm-dir")
            .arg(vm_dir())
            .env("FLVPC_DATA_DIR", data)
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start flvpc serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "flvpc serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// `ssh -F CONFIG -J admin@127.0.0.1:GATEWAY root@TARGET ARGV…`: (success, stdout, stderr).
fn jump(config: &Path, gateway: u16, target: &str, argv: &[&str]) -> (bool, String, String) {
    let out = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-J", &format!("admin@127.0.0.1:{gateway}"), &format!("root@{target}"), "--"])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("ssh (openssh-client) is needed");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_microvm_cluster_is_reached_through_the_gateway() {
    assert!(Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()), "needs a running dockerd");
    let ns = format!("vmc{}", std::process::id());
    let _cleanup = Cleanup(ns.clone());
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path();
    // What a VM needs, built through the binary when missing (idempotent, quick when present).
    let vm = vm_dir();
    cli(data, &["image", "build", "debian-12-vm", "--vm-dir", vm.to_str().expect("utf-8 path")], None);
    cli(data, &["image", "build", "vm-runner"], None);

    let (port, gateway) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}");
    let log = data.join("serve.log");
    cli(data, &["admin", "init", "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    let _server = serve(data, port, gateway, &log);
    cli(data, &["login", "--server", &url, "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    cli(data, &["ns", "create", &ns], None);
    cli(data, &["ns", "set-member", &ns, "admin", "--role", "admin"], None);
    let key = data.join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "vm-test", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    cli(data, &["keys", "add", "laptop", key.with_extension("pub").to_str().expect("path")], None);
    let config = data.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking no\n  \
             UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ConnectTimeout 20\n",
            key.display()
        ),
    )
    .expect("ssh config");

    // Too little memory for a VM is refused at admission, before anything is made.
    let small = data.join("small.yaml");
    std::fs::write(
        &small,
        "machines:\n- count: 1\n  spec:\n    name: tiny%d\n    backend: microvm\n    ignite: {memory: 128MB}\n",
    )
    .expect("spec");
    let refused = Command::new(BIN)
        .args(["cluster", "apply", &ns, "-f", small.to_str().expect("path")])
        .env("XDG_CONFIG_HOME", data.join("config"))
        .output()
        .expect("apply");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("at least 256 MB"), "{said}");

    // `backend: ignite` of old footloose files, with its kernel (accepted, and unused: VMs boot
    // the artifacts' kernel).
    let spec = data.join("cluster.yaml");
    std::fs::write(
        &spec,
        "machines:\n- count: 1\n  spec:\n    name: vm%d\n    backend: ignite\n    portMappings:\n    - containerPort: 22\n    \
         ignite: {cpus: 1, memory: 512MB, kernel: 'weaveworks/ignite-kernel:5.10.51'}\n",
    )
    .expect("spec");
    let start = Instant::now();
    cli(data, &["cluster", "apply", &ns, "-f", spec.to_str().expect("path")], None);
    let listed = cli(data, &["machines", "list", &ns], None);
    assert!(listed.contains("vm0") && listed.contains(" running "), "{listed}");
    let target = format!("vm0.{ns}");
    let deadline = Instant::now() + BOOT;
    let hostname = loop {
        let (ok, out, err) = jump(&config, gateway, &target, &["hostname"]);
        if ok {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "no SSH into the VM through the gateway within {BOOT:?}: {err}\nserver log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    eprintln!("create to SSH through the gateway: {:?}", start.elapsed());
    assert_eq!(hostname, "vm0");
    let (_, kernel, _) = jump(&config, gateway, &target, &["uname", "-r"]);
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("host kernel");
    assert!(kernel.ends_with("-cloud-amd64") && kernel != host_kernel.trim(), "the VM's own kernel: {kernel}");
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(server_log.contains("microVMs: available"), "{server_log}");

    cli(data, &["cluster", "delete", &ns], None);
    assert!(docker(&["ps", "-aq", "--filter", &format!("label=flvpc.namespace={ns}")]).trim().is_empty());
}
