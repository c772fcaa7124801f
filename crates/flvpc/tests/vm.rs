//! A microVM through the whole server: the real binary serving the API and the SSH gateway,
//! a cluster with one `backend: ignite` machine (a microVM) and one container, and the real
//! OpenSSH client reaching the VM through the gateway (`ssh -J`) and its host port; the
//! container reaches the VM by name, another namespace cannot; the VM's disk limits; its
//! console, the accelerator and `disk_enforced` are shown; flvpc killed with SIGKILL adopts the
//! running VM without rebooting it; stop, start and delete. Real Docker and QEMU (KVM if the
//! probe boots a kernel with it, TCG otherwise); traffic only to 127.0.0.1 and the test's own
//! machines.
//!
//! Needs the VM artifacts (`FLVPC_TEST_VM_DIR`, default `/var/cache/flvpc-test/vm`) and the
//! runner image: both are built through the binary on first use (a few minutes).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{docker, free_port, listens_within, output, Cleanup, Server, BIN};

/// Under TCG on a shared 2-core host a VM reaches sshd in about a minute.
const BOOT: Duration = Duration::from_secs(300);

fn vm_dir() -> PathBuf {
    std::env::var_os("FLVPC_TEST_VM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/flvpc-test/vm"))
}

fn cli(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = output(
        Command::new(BIN).args(args).env("FLVPC_DATA_DIR", data).env("XDG_CONFIG_HOME", data.join("config")),
        stdin,
    );
    assert!(out.status.success(), "flvpc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn serve(data: &Path, port: u16, gateway: u16, log: &Path) -> Server {
    let log = std::fs::File::create(log).expect("server log");
    let server = Server(
        Command::new(BIN)
            .args(["serve", "--plain-http", "--listen", &format!("127.0.0.1:{port}")])
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
    assert!(listens_within(port, 30), "flvpc serve did not start");
    server
}

/// `ssh -F CONFIG ROUTE… -- ARGV…`: (success, stdout, stderr).
fn ssh(config: &Path, route: &[&str], argv: &[&str]) -> (bool, String, String) {
    let out = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(route)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("ssh (openssh-client) is needed");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Through the gateway: `ssh -J admin@127.0.0.1:GATEWAY root@TARGET`.
fn jump(config: &Path, gateway: u16, target: &str, argv: &[&str]) -> (bool, String, String) {
    ssh(config, &["-J", &format!("admin@127.0.0.1:{gateway}"), &format!("root@{target}")], argv)
}

/// Through the machine's own host port: `ssh -p PORT root@127.0.0.1`.
fn direct(config: &Path, port: u16, argv: &[&str]) -> (bool, String, String) {
    ssh(config, &["-p", &port.to_string(), "root@127.0.0.1"], argv)
}

/// `jump`, which must succeed: its standard output.
fn jump_ok(config: &Path, gateway: u16, target: &str, argv: &[&str]) -> String {
    let (ok, out, err) = jump(config, gateway, target, argv);
    assert!(ok, "{argv:?} in {target} failed: {err}");
    out
}

/// Tries `jump` every 2 s until it succeeds, at most `BOOT`.
fn jump_eventually(config: &Path, gateway: u16, target: &str, argv: &[&str], log: &Path) -> String {
    let deadline = Instant::now() + BOOT;
    loop {
        let (ok, out, err) = jump(config, gateway, target, argv);
        if ok {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{argv:?} in {target} through the gateway did not work within {BOOT:?}: {err}\nserver log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1: (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// A panel session of `login` (the `flvpc_session` cookie's value), signed in through /login as a
/// browser does (the login CSRF cookie and field carry the same value).
fn panel_session(port: u16, login: &str, password: &str) -> String {
    use std::io::Read;
    let form = format!("login={login}&password={password}&_csrf=0123456789abcdef0123456789abcdef");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(
        stream,
        "POST /login HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nCookie: flvpc_login_csrf=0123456789abcdef0123456789abcdef\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
        .lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: flvpc_session=").or_else(|| l.strip_prefix("Set-Cookie: flvpc_session="))
        })
        .find_map(|v| v.split(';').next().filter(|v| !v.is_empty()).map(str::to_owned))
        .unwrap_or_else(|| panic!("no panel session for {login}: {answer}"))
}

/// Runs `command` in the browser terminal of `ns/name` (a WebSocket as the panel's page opens it)
/// and returns what the terminal showed once `want` appeared.
fn in_browser_terminal(port: u16, cookie: &str, ns: &str, name: &str, command: &str, want: &str) -> String {
    use tungstenite::client::IntoClientRequest;
    let url = format!("ws://127.0.0.1:{port}/namespaces/{ns}/machines/{name}/terminal/ws");
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("cookie", format!("flvpc_session={cookie}").parse().expect("cookie"));
    request.headers_mut().insert("origin", format!("http://127.0.0.1:{port}").parse().expect("origin"));
    let (mut socket, _) = tungstenite::connect(request).expect("the terminal's handshake");
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_mut() {
        tcp.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    }
    socket.send(tungstenite::Message::Binary(format!("{command}\n").into_bytes().into())).expect("type");
    let mut seen = String::new();
    while !seen.contains(want) {
        match socket.read() {
            Ok(tungstenite::Message::Binary(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(tungstenite::Message::Close(frame)) => panic!("the terminal closed: {frame:?}; saw {seen:?}"),
            Ok(_) => {}
            Err(err) => panic!("the terminal failed ({err}); saw {seen:?}"),
        }
    }
    let _ = socket.close(None);
    seen
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The machines of `ns` as the API gives them (through `flvpc api`).
fn machines(data: &Path, ns: &str) -> Vec<serde_json::Value> {
    let list = json(&cli(data, &["api", &format!("/api/v1/namespaces/{ns}/machines")], None));
    list.as_array().cloned().expect("a list of machines")
}

fn machine<'a>(list: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    list.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no machine {name} in {list:?}"))
}

/// Waits until `name` of `ns` is in `state` (as the API says), at most `BOOT`.
fn wait_state(data: &Path, ns: &str, name: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + BOOT;
    loop {
        let list = machines(data, ns);
        let m = machine(&list, name).clone();
        if m["state"] == state {
            return m;
        }
        assert!(Instant::now() < deadline, "{name} is not {state} within {BOOT:?}: {m}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn docker_id(container: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", container]).trim().to_owned()
}

#[test]
fn a_microvm_cluster_is_reached_through_the_gateway() {
    assert!(Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()), "needs a running dockerd");
    let ns = format!("vmc{}", std::process::id());
    let other = format!("vmo{}", std::process::id());
    let _cleanup = Cleanup(vec![ns.clone(), other.clone()]);
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
    let mut server = serve(data, port, gateway, &log);
    cli(data, &["login", "--server", &url, "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    for name in [&ns, &other] {
        cli(data, &["ns", "create", name], None);
        cli(data, &["ns", "set-member", name, "admin", "--role", "admin"], None);
    }
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

    // The accelerator, as /healthz?detail and the capacity report tell it.
    let (status, health) = http_get(port, "/healthz?detail");
    assert!(status.contains("200"), "{status} {health}");
    let health = json(&health);
    assert_eq!(health["microvm"]["available"], true, "{health}");
    let accel = health["microvm"]["accelerator"].as_str().expect("an accelerator").to_owned();
    assert!(accel == "kvm" || accel == "tcg", "{health}");
    let capacity = json(&cli(data, &["api", "/api/v1/capacity"], None));
    assert_eq!(capacity["microvm"]["accelerator"], accel.as_str(), "{capacity}");
    assert_eq!(http_get(port, "/healthz").1, "ok\n", "the plain answer is unchanged");

    // Another namespace's container, to attack the VM from.
    let stranger = data.join("other.yaml");
    std::fs::write(&stranger, "machines:\n- count: 1\n  spec:\n    name: s%d\n    ignite: {memory: 256MB}\n")
        .expect("spec");
    cli(data, &["cluster", "apply", &other, "-f", stranger.to_str().expect("path")], None);

    // `backend: ignite` of old footloose files, with its kernel (accepted, and unused: VMs boot
    // the artifacts' kernel), beside a container machine.
    let spec = data.join("cluster.yaml");
    std::fs::write(
        &spec,
        "machines:\n- count: 1\n  spec:\n    name: vm%d\n    backend: ignite\n    portMappings:\n    - containerPort: 22\n    \
         ignite: {cpus: 1, memory: 512MB, diskSize: 2GB, kernel: 'weaveworks/ignite-kernel:5.10.51'}\n\
         - count: 1\n  spec:\n    name: c%d\n    ignite: {memory: 256MB}\n",
    )
    .expect("spec");
    let start = Instant::now();
    cli(data, &["cluster", "apply", &ns, "-f", spec.to_str().expect("path")], None);
    eprintln!("apply of a VM and a container ({accel}): {:?}", start.elapsed());
    let listed = cli(data, &["machines", "list", &ns], None);
    assert!(listed.contains("vm0") && listed.contains(" running ") && listed.contains("microvm"), "{listed}");
    let target = format!("vm0.{ns}");
    let hostname = jump_eventually(&config, gateway, &target, &["hostname"], &log);
    eprintln!("create to SSH through the gateway: {:?}", start.elapsed());
    assert_eq!(hostname, "vm0");
    let kernel = jump_ok(&config, gateway, &target, &["uname", "-r"]);
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("host kernel");
    assert!(kernel.ends_with("-cloud-amd64") && kernel != host_kernel.trim(), "the VM's own kernel: {kernel}");

    // The machine objects: engine, enforced disk, the VM's host port.
    let list = machines(data, &ns);
    let (vm0, c0) = (machine(&list, "vm0"), machine(&list, "c0"));
    assert_eq!((vm0["engine"].as_str(), vm0["backend"].as_str()), (Some("microvm"), Some("microvm")), "{vm0}");
    assert_eq!((vm0["disk_enforced"].as_bool(), c0["disk_enforced"].as_bool()), (Some(true), Some(false)));
    assert_eq!(c0["engine"], "container");
    let vm_ip = vm0["ip"].as_str().expect("the VM's address").to_owned();
    let vm_port = vm0["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["container_port"] == 22))
        .and_then(|p| p["host_port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .expect("the VM's host port for 22");
    let (ok, out, err) = direct(&config, vm_port, &["hostname"]);
    assert!(ok && out == "vm0", "SSH through the VM's host port {vm_port}: {err}");

    // The panel's browser terminal reaches the VM as it reaches a container: a root shell in the
    // VM's own kernel, signed in with the server's terminal key (which the VM got with the members').
    let cookie = panel_session(port, "admin", "admin-password");
    let seen = in_browser_terminal(port, &cookie, &ns, "vm0", "echo $(id -un)@$(uname -r)-seen", "-cloud-amd64-seen");
    assert!(seen.contains(&format!("root@{kernel}-seen")), "{seen}");

    // The container of the namespace reaches the VM by name; the other namespace does not.
    let c0 = format!("c0.{ns}");
    let found = jump_eventually(&config, gateway, &c0, &["getent", "hosts", "vm0"], &log);
    assert_eq!(found.split_whitespace().next(), Some(vm_ip.as_str()), "{found}");
    let banner = jump_ok(&config, gateway, &c0, &["timeout 20 bash -c 'exec 3<>/dev/tcp/vm0/22; head -c 8 <&3'"]);
    assert_eq!(banner, "SSH-2.0-");
    let s0 = format!("s0.{other}");
    // The stranger's machine answers (else the probes below would fail for nothing).
    jump_eventually(&config, gateway, &s0, &["true"], &log);
    let (resolved, out, _) = jump(&config, gateway, &s0, &["getent", "hosts", "vm0"]);
    assert!(!resolved, "another namespace resolved vm0: {out}");
    let probe = format!("timeout 5 bash -c 'exec 3<>/dev/tcp/{vm_ip}/22; head -c 8 <&3'");
    let (reached, out, err) = jump(&config, gateway, &s0, &[&probe]);
    assert!(!reached && !out.contains("SSH"), "another namespace reached the VM: {out} {err}");

    // The disk is the spec's 2 GB and a file past it is refused inside the VM.
    let device = jump_ok(&config, gateway, &target, &["blockdev", "--getsize64", "/dev/vda"]);
    assert_eq!(device, (2u64 << 30).to_string());
    let (ok, _, err) = jump(&config, gateway, &target, &["fallocate", "-l", "3G", "/root/past-the-disk"]);
    assert!(!ok && err.contains("No space left"), "a 3 GiB file on a 2 GiB disk: {err}");
    // ext4 keeps what fallocate got before it failed: free it again.
    jump_ok(&config, gateway, &target, &["rm", "-f", "/root/past-the-disk"]);

    // The console: the guest's boot, for the namespace's members (CLI and API).
    let console = cli(data, &["machines", "console", &format!("{ns}/vm0"), "--lines", "400"], None);
    assert!(console.contains("Debian GNU/Linux 12 vm0 ttyS0"), "{console}");
    assert!(!console.contains('\u{1b}'), "the console is plain text");

    // flvpc killed with SIGKILL while the VM runs: started again, it adopts the VM as it is.
    let boot_id = jump_ok(&config, gateway, &target, &["cat", "/proc/sys/kernel/random/boot_id"]);
    let runner = docker_id(&format!("vm0.{ns}"));
    let _ = server.0.kill();
    let _ = server.0.wait();
    let log_after = data.join("serve-after-kill.log");
    server = serve(data, port, gateway, &log_after);
    wait_state(data, &ns, "vm0", "running");
    assert_eq!(docker_id(&format!("vm0.{ns}")), runner, "the VM's runner container was kept");
    let again = jump_eventually(&config, gateway, &target, &["cat", "/proc/sys/kernel/random/boot_id"], &log_after);
    assert_eq!(again, boot_id, "the VM was adopted, not rebooted");

    // Stop, start (a new boot), then delete leaving nothing behind.
    cli(data, &["machines", "stop", &format!("{ns}/vm0")], None);
    wait_state(data, &ns, "vm0", "stopped");
    let stopped = cli(data, &["machines", "console", &format!("{ns}/vm0"), "--lines", "50"], None);
    assert!(stopped.contains("reboot: Power down") || stopped.contains("Power-Off"), "{stopped}");
    cli(data, &["machines", "start", &format!("{ns}/vm0")], None);
    let rebooted = jump_eventually(&config, gateway, &target, &["cat", "/proc/sys/kernel/random/boot_id"], &log_after);
    assert_ne!(rebooted, boot_id, "a start after a stop boots the VM again");

    cli(data, &["cluster", "delete", &ns], None);
    cli(data, &["cluster", "delete", &other], None);
    for name in [&ns, &other] {
        let left = docker(&["ps", "-aq", "--filter", &format!("label=flvpc.namespace={name}")]);
        assert!(left.trim().is_empty(), "containers of {name} left: {left}");
    }
    drop(server);
}
