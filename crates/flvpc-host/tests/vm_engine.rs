//! The microVM engine end to end, as root: real Docker, real QEMU (KVM when the probe says
//! it works, TCG otherwise), the real runner program and the real OpenSSH client. Traffic
//! goes only to 127.0.0.1 (the VM's published port) and to the test's own containers.
//!
//! Needs the VM artifacts (built on first use into `FLVPC_TEST_VM_DIR`, default
//! `/var/cache/flvpc-test/vm`, about four minutes), the runner image `flvpc/vm-runner` and
//! `flvpc/debian:12` (each built on first use, a few minutes). Every namespace is random and
//! removed with what it holds, also when the test fails.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::query_parameters::LogsOptionsBuilder;
use flvpc_host::image::{build_debian12, build_vm_runner, BuildOptions, VM_RUNNER_IMAGE};
use flvpc_host::vm::{
    ensure_artifacts, probe_accel, ArtifactOptions, Artifacts, MicroVmConfig, MicroVmEngine, QEMU_OVERHEAD_MIB,
    QEMU_SYSTEM,
};
use flvpc_host::{
    wait_ssh_ready, DockerEngine, Engine, MachineSpec, MachineState, PortMapping, DEFAULT_IMAGE, LABEL_ISOLATION,
};
use flvpc_model::{MachineKey, NamespaceName};
use futures::StreamExt;
use tokio::process::Command;

/// The flvpc instance these tests act as.
const TEST_INSTANCE: &str = "flvpc-host-vm-tests";
/// Under TCG on a shared 2-core host a Debian boot to sshd takes about a minute.
const BOOT: Duration = Duration::from_secs(300);
/// What the engine gives a guest to shut down (its minimum stop timeout, see below).
const STOP: Duration = Duration::from_secs(90);
/// How soon a key written while the VM runs must work.
const KEY_SYNC: Duration = Duration::from_secs(30);

fn artifacts_dir() -> PathBuf {
    std::env::var_os("FLVPC_TEST_VM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/flvpc-test/vm"))
}

async fn docker() -> DockerEngine {
    match DockerEngine::connect().await {
        Ok(e) => e.for_instance(TEST_INSTANCE),
        Err(e) => panic!("these tests need the Docker engine: {e}"),
    }
}

/// The artifacts, the runner image and the machine image, each built if missing.
async fn prerequisites(docker: &DockerEngine) -> Artifacts {
    let opts = ArtifactOptions { dir: artifacts_dir(), mirror: None, force: false };
    let artifacts = match ensure_artifacts(&opts).await {
        Ok(a) => a,
        Err(e) => panic!("cannot build the VM artifacts in {}: {e}", opts.dir.display()),
    };
    let quiet = |_| {};
    let runner = BuildOptions { tag: VM_RUNNER_IMAGE.into(), ..BuildOptions::default() };
    if let Err(e) = build_vm_runner(docker, runner, quiet).await {
        panic!("cannot build {VM_RUNNER_IMAGE}: {e}");
    }
    if let Err(e) = build_debian12(docker, BuildOptions::default(), quiet).await {
        panic!("cannot build {DEFAULT_IMAGE}: {e}");
    }
    artifacts
}

/// Namespaces whose machines and networks are removed when dropped, also on panic.
struct Cleanup {
    namespaces: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let namespaces = std::mem::take(&mut self.namespaces);
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                let Ok(engine) = DockerEngine::connect().await else { return };
                let engine = engine.for_instance(TEST_INSTANCE);
                for ns in namespaces {
                    let ns = NamespaceName::parse(&ns).expect("namespace");
                    if let Ok(machines) = engine.list_machines(Some(&ns)).await {
                        for m in machines {
                            let _ = engine.remove_machine(&m.key).await;
                        }
                    }
                    let _ = engine.remove_network(&ns).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

async fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .await
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(status.success(), "ssh-keygen failed");
    (key.clone(), std::fs::read_to_string(key.with_extension("pub")).expect("read the public key"))
}

/// Runs `argv` as root in the VM through its published port; (success, stdout, stderr).
async fn ssh(key: &Path, port: u16, argv: &[&str]) -> (bool, String, String) {
    let out = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20", "-i"])
        .arg(key)
        .args(["-p", &port.to_string(), "root@127.0.0.1", "--"])
        .args(argv)
        .output()
        .await
        .expect("ssh (openssh-client) is needed");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

async fn ssh_ok(key: &Path, port: u16, argv: &[&str]) -> String {
    let (ok, out, err) = ssh(key, port, argv).await;
    assert!(ok, "{argv:?} failed in the VM on port {port}: {err}");
    out
}

/// The runner container's log (the runner's own lines), for failure messages.
async fn runner_log(container: &str) -> String {
    let Ok(docker) = bollard::Docker::connect_with_unix_defaults() else { return String::new() };
    // The runner's own lines (its standard error): its standard output is the guest's console.
    let options = LogsOptionsBuilder::new().stdout(false).stderr(true).tail("all").build();
    let mut logs = docker.logs(container, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&chunk.to_string());
    }
    text
}

async fn wait_vm_ssh(port: u16, container: &str) {
    let start = Instant::now();
    if let Err(e) = wait_ssh_ready(port, BOOT).await {
        panic!("the VM did not answer SSH: {e}\nrunner log:\n{}", runner_log(container).await);
    }
    eprintln!("{container} answered SSH {:?} after its start", start.elapsed());
}

async fn exec(docker: &DockerEngine, key: &MachineKey, argv: &[&str]) -> flvpc_host::ExecOutput {
    match tokio::time::timeout(BOOT, docker.exec_machine(key, argv)).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("exec {argv:?} in {key}: {e}"),
        Err(_) => panic!("exec {argv:?} in {key} did not finish within {BOOT:?}"),
    }
}

/// A container machine on `key`'s namespace network, running.
async fn container_machine(docker: &DockerEngine, key: &MachineKey) {
    let mut spec = MachineSpec::new(key.clone(), DEFAULT_IMAGE);
    spec.memory_mb = 256;
    docker.create_machine(&spec).await.expect("create a container machine");
    docker.start_machine(key).await.expect("start the container machine");
    // Its systemd is up enough to resolve names once exec works at all.
    exec(docker, key, &["true"]).await;
}

/// The runner container's memory use in MiB (its cgroup, QEMU and the guest's RAM included).
async fn memory_mib(container: &str) -> Option<u64> {
    let docker = bollard::Docker::connect_with_unix_defaults().ok()?;
    let options = bollard::query_parameters::StatsOptionsBuilder::new().stream(false).one_shot(false).build();
    let stats = docker.stats(container, Some(options)).next().await?.ok()?;
    stats.memory_stats?.usage.map(|u| u >> 20)
}

/// `VmRSS` of a process, in kB as /proc says it.
fn rss_kb(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").to_owned()))
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_microvm_is_a_machine_like_any_other() {
    let docker = docker().await;
    let artifacts = prerequisites(&docker).await;
    let probe_dir = tempfile::tempdir().expect("tempdir");
    let probe = probe_accel(Path::new(QEMU_SYSTEM), &artifacts.kernel, probe_dir.path(), Duration::from_secs(20)).await;
    eprintln!("accelerator: {} ({})", probe.accel.name(), probe.detail);
    let mut config = MicroVmConfig::new(env!("CARGO_BIN_EXE_flvpc-vm-runner"), &artifacts.dir, probe.accel);
    config.runner_args.clear();
    config.min_stop_timeout = STOP;
    let vms = MicroVmEngine::new(docker.clone(), config);

    let suffix = format!("{:08x}", rand::random::<u32>());
    let (ns, other_ns) = (format!("vm{suffix}"), format!("vx{suffix}"));
    let _cleanup = Cleanup { namespaces: vec![ns.clone(), other_ns.clone()] };
    let namespace = NamespaceName::parse(&ns).expect("namespace");
    let vm = MachineKey::parse(&ns, "vm0").expect("key");
    let container = vm.object_name();
    vms.ensure_network(&namespace).await.expect("namespace network");

    let port = free_port();
    let mut spec = MachineSpec::new(vm.clone(), DEFAULT_IMAGE);
    spec.memory_mb = 512;
    spec.pids_limit = Some(512);
    spec.disk_gb = Some(2);
    spec.ports = vec![PortMapping::tcp(22, Some(port)).on(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    vms.create_machine(&spec).await.expect("create the VM machine");
    let created = vms.inspect_machine(&vm).await.expect("inspect").expect("the VM machine exists");
    assert_eq!(created.info.state, MachineState::Created);
    assert_eq!(created.memory_mb, 512, "the VM's memory, not its container's");
    assert_eq!(created.info.image, DEFAULT_IMAGE);
    assert!(created.info.labels.contains_key(LABEL_ISOLATION), "the runner has the machines' isolation");
    assert_eq!(vms.list_machines(Some(&namespace)).await.expect("list").len(), 1);

    // The runner container holds what a hostile tenant rules out for machines: not privileged,
    // one added capability, no Docker socket, no writable host path.
    let raw = bollard::Docker::connect_with_unix_defaults().expect("docker");
    let inspected = raw
        .inspect_container(&container, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect("inspect the runner container");
    let host = inspected.host_config.clone().expect("host config");
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_owned()]));
    assert_eq!(host.pids_limit, Some(512), "the machine's PID limit");
    assert!(host.cgroup_parent.as_deref().is_some_and(|p| p.contains("flvpc")), "the machine's cgroup parent");
    for bind in host.binds.clone().unwrap_or_default() {
        assert!(bind.ends_with(":ro") && !bind.contains("docker.sock"), "bind {bind}");
    }
    let volume = inspected
        .mounts
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.destination.as_deref() == Some("/vm"))
        .and_then(|m| m.name)
        .expect("the VM's disk volume");

    let keys = tempfile::tempdir().expect("tempdir");
    let (first, first_pub) = keypair(keys.path(), "first").await;
    let (second, second_pub) = keypair(keys.path(), "second").await;
    vms.write_authorized_keys(&vm, &format!("# Managed by flvpc\n{first_pub}")).await.expect("keys before the start");
    vms.start_machine(&vm).await.expect("start the VM machine");
    // The runner runs at once, the guest boots for a while: the engine says "starting".
    let booting = vms.inspect_machine(&vm).await.expect("inspect").expect("exists");
    assert_eq!(booting.info.state, MachineState::Starting, "a VM is starting until its guest answers SSH");
    wait_vm_ssh(port, &container).await;
    wait_state(&vms, &vm, MachineState::Running).await;

    // Its own kernel and its own systemd, under the machine's name.
    assert_eq!(ssh_ok(&first, port, &["hostname"]).await, "vm0");
    let kernel = ssh_ok(&first, port, &["uname", "-r"]).await;
    assert_eq!(kernel, artifacts.manifest.kernel_version);
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("host kernel");
    assert_ne!(kernel, host_kernel.trim(), "the VM runs its own kernel");
    assert_eq!(ssh_ok(&first, port, &["cat", "/proc/1/comm"]).await, "systemd");
    // The spec's disk is the VM's: its file system was grown to it, and no further.
    let size: u64 = ssh_ok(&first, port, &["df", "-B1", "--output=size", "/"])
        .await
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints a size");
    assert!(size > artifacts.manifest.base_virtual_bytes && size <= 2 << 30, "file system of {size} bytes");
    let running = vms.inspect_machine(&vm).await.expect("inspect").expect("exists");
    assert_eq!(running.info.state, MachineState::Running);
    let vm_ip = running.info.ip.clone().expect("the VM's address on the namespace network");
    assert!(
        ssh_ok(&first, port, &["ip", "-4", "-o", "addr", "show"]).await.contains(&format!("inet {vm_ip}/")),
        "the VM owns its container's address {vm_ip}"
    );

    // A container machine of the namespace reaches the VM by name, and the VM the container.
    let neighbour = MachineKey::parse(&ns, "c0").expect("key");
    container_machine(&docker, &neighbour).await;
    let found = exec(&docker, &neighbour, &["getent", "hosts", "vm0"]).await;
    assert_eq!(found.stdout.split_whitespace().next(), Some(vm_ip.as_str()), "{found:?}");
    let banner =
        exec(&docker, &neighbour, &["timeout", "20", "bash", "-c", "exec 3<>/dev/tcp/vm0/22; head -c 8 <&3"]).await;
    assert_eq!(banner.stdout, "SSH-2.0-", "{banner:?}");
    let neighbour_ip = docker.inspect_machine(&neighbour).await.expect("inspect").and_then(|d| d.info.ip).expect("ip");
    let resolved = ssh_ok(&first, port, &["getent", "hosts", "c0"]).await;
    assert_eq!(resolved.split_whitespace().next(), Some(neighbour_ip.as_str()), "the VM resolves c0: {resolved}");

    if let Some(mib) = memory_mib(&container).await {
        eprintln!("runner container memory: {mib} MiB for a 512 MiB VM (limit {} MiB)", 512 + QEMU_OVERHEAD_MIB);
    }
    let runner_pid = running.pid.expect("the runner's PID");
    let qemu_pid = std::fs::read_to_string(format!("/proc/{runner_pid}/task/{runner_pid}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next().map(str::to_owned));
    let guest_used = ssh_ok(&first, port, &["free", "-m"]).await;
    eprintln!(
        "idle VM: QEMU RSS {} kB, runner RSS {} kB; in the guest:\n{guest_used}",
        qemu_pid.map(|p| rss_kb(&p)).unwrap_or_default(),
        rss_kb(&runner_pid.to_string())
    );

    // The console: the guest's kernel and boot messages, from the runner's standard output.
    let console = vms.console(&vm, 400).await.expect("the VM's console");
    assert!(console.contains("Debian GNU/Linux 12 vm0 ttyS0"), "the console shows the login banner:\n{console}");
    assert!(console.contains("Reached target"), "the console shows systemd booting:\n{console}");
    assert!(!console.contains("flvpc-vm-runner:"), "the runner's own lines are not the console's:\n{console}");

    // The disk is the limit: its block device has the spec's size and a file past it is refused.
    let device: u64 = ssh_ok(&first, port, &["blockdev", "--getsize64", "/dev/vda"]).await.parse().expect("bytes");
    assert_eq!(device, 2 << 30, "the VM's disk is the spec's 2 GiB");
    let (ok, _, err) = ssh(&first, port, &["fallocate", "-l", "3G", "/root/past-the-disk"]).await;
    assert!(!ok && err.contains("No space left"), "a 3 GiB file on a 2 GiB disk: {err}");
    // ext4 keeps what fallocate got before it failed: a full disk would stop the keys agent.
    ssh_ok(&first, port, &["rm", "-f", "/root/past-the-disk"]).await;

    // Keys rewritten while the VM runs take effect within seconds.
    let start = Instant::now();
    vms.write_authorized_keys(&vm, &format!("# Managed by flvpc\n{second_pub}")).await.expect("rewrite the keys");
    wait_key_works(&second, port, &container, "a rewritten key").await;
    eprintln!("a rewritten key worked {:?} after the write", start.elapsed());
    let (ok, _, _) = ssh(&first, port, &["true"]).await;
    assert!(!ok, "the removed key still works");

    // Root in the guest floods its console: what reaches the host's disk stays bounded by the
    // runner container's log options (2 files of 1 MiB), and the VM keeps answering.
    let flood = "head -c 3000000 /dev/zero | tr '\\0' x > /dev/ttyS0";
    let (flooded, _, err) = ssh(&second, port, &[&format!("timeout 240 sh -c \"{flood}\"")]).await;
    assert!(flooded, "the flood could not be written to the console: {err}");
    let logged = container_log_bytes(&container).await;
    eprintln!("after a 3 MB console flood the runner's log files hold {logged} bytes");
    assert!(logged > 512 << 10, "the flood did not reach the log ({logged} bytes): the test proves nothing");
    assert!(logged <= (2 << 20) + (64 << 10), "the console log grew to {logged} bytes, past its bound");
    assert_eq!(ssh_ok(&second, port, &["echo", "alive"]).await, "alive");

    // The keys channel still works after the flood.
    vms.write_authorized_keys(&vm, &format!("# Managed by flvpc\n{first_pub}{second_pub}")).await.expect("keys again");
    wait_key_works(&first, port, &container, "a key written after a console flood").await;

    // Stop powers the guest down within the deadline; the disk keeps what was written.
    ssh_ok(&second, port, &["cp", "/etc/hostname", "/root/kept"]).await;
    ssh_ok(&second, port, &["sync"]).await;
    let start = Instant::now();
    vms.stop_machine(&vm, Duration::from_secs(10)).await.expect("stop the VM machine");
    let stopped = vms.inspect_machine(&vm).await.expect("inspect").expect("exists");
    eprintln!("the VM stopped in {:?}", start.elapsed());
    assert!(start.elapsed() < STOP, "stop took {:?}", start.elapsed());
    assert_eq!(stopped.info.state, MachineState::Stopped);
    let log = runner_log(&container).await;
    assert_eq!(stopped.exit_code, Some(0), "the runner powered the VM down gracefully:\n{log}");
    assert!(log.contains("the VM powered down"), "{log}");

    vms.start_machine(&vm).await.expect("start again");
    wait_vm_ssh(port, &container).await;
    wait_state(&vms, &vm, MachineState::Running).await;
    assert_eq!(ssh_ok(&second, port, &["cat", "/root/kept"]).await, "vm0", "the disk kept its content");

    // Another namespace cannot reach it, by name or by address.
    let other = NamespaceName::parse(&other_ns).expect("namespace");
    docker.ensure_network(&other).await.expect("other network");
    let stranger = MachineKey::parse(&other_ns, "c1").expect("key");
    container_machine(&docker, &stranger).await;
    let lookup = exec(&docker, &stranger, &["getent", "hosts", "vm0"]).await;
    assert_ne!(lookup.exit_code, 0, "another namespace resolved vm0: {lookup:?}");
    let probe = format!("exec 3<>/dev/tcp/{vm_ip}/22; head -c 8 <&3");
    let reach = exec(&docker, &stranger, &["timeout", "5", "bash", "-c", &probe]).await;
    assert!(reach.exit_code != 0 && !reach.stdout.contains("SSH"), "another namespace reached the VM: {reach:?}");

    // A disk made over another build of the artifacts is refused with the reason, not booted
    // into a corrupt file system (and not restarted in a loop).
    vms.stop_machine(&vm, Duration::from_secs(10)).await.expect("stop before the swap");
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let other_build = b"debian-12-vm/4 another-build 1 1";
    header.set_size(other_build.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive.append_data(&mut header, "base.id", &other_build[..]).expect("tar");
    let options = bollard::query_parameters::UploadToContainerOptionsBuilder::new().path("/vm").build();
    raw.upload_to_container(&container, Some(options), bollard::body_full(archive.into_inner().expect("tar").into()))
        .await
        .expect("put another build's identity beside the disk");
    vms.start_machine(&vm).await.expect("start over the other build");
    let refused = wait_state(&vms, &vm, MachineState::Failed).await;
    let why = refused.error.unwrap_or_default();
    assert!(why.contains("another build of the VM artifacts"), "{why}");

    // Remove leaves neither the container nor its disk.
    vms.remove_machine(&vm).await.expect("remove the VM machine");
    assert!(vms.inspect_machine(&vm).await.expect("inspect").is_none());
    let gone = raw.inspect_volume(&volume).await;
    assert!(gone.is_err(), "the VM's disk volume {volume} is left behind");
    vms.remove_machine(&vm).await.expect("removing a removed VM is fine");
}

/// A VM that does not answer SSH within its boot deadline is stopped and reported failed
/// with its console's last lines, and stays so (not booted again and again) until removed.
#[tokio::test]
async fn a_vm_that_does_not_boot_in_time_is_reported_failed_with_its_console() {
    let docker = docker().await;
    let artifacts = prerequisites(&docker).await;
    // Whatever the accelerator, no guest reaches sshd in 2 s.
    let mut config =
        MicroVmConfig::new(env!("CARGO_BIN_EXE_flvpc-vm-runner"), &artifacts.dir, flvpc_host::vm::Accel::Tcg);
    config.runner_args.clear();
    config.boot_deadline = Duration::from_secs(2);
    let vms = MicroVmEngine::new(docker.clone(), config);
    let ns = format!("vf{:08x}", rand::random::<u32>());
    let _cleanup = Cleanup { namespaces: vec![ns.clone()] };
    let namespace = NamespaceName::parse(&ns).expect("namespace");
    let vm = MachineKey::parse(&ns, "slow0").expect("key");
    vms.ensure_network(&namespace).await.expect("namespace network");
    let mut spec = MachineSpec::new(vm.clone(), DEFAULT_IMAGE);
    spec.memory_mb = 256;
    vms.create_and_start_machine(&spec).await.expect("create and start");
    let failed = wait_state(&vms, &vm, MachineState::Failed).await;
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains("did not answer SSH within 2 s"), "{error}");
    assert!(error.contains("last console lines"), "{error}");
    // QEMU is gone: the runner container holds only the runner.
    let pid = failed.pid.expect("the runner still runs, waiting to be stopped");
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    assert!(children.trim().is_empty(), "QEMU still runs under the failed runner: {children}");
    // Still failed a while later: not restarted by Docker's restart policy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = vms.inspect_machine(&vm).await.expect("inspect").expect("exists");
    assert_eq!(later.info.state, MachineState::Failed);
    assert_eq!(later.pid, failed.pid, "the runner was not restarted");
    vms.remove_machine(&vm).await.expect("remove");
    assert!(vms.inspect_machine(&vm).await.expect("inspect").is_none());
}

/// Tries `key` every 500 ms until it logs in, at most [`KEY_SYNC`].
async fn wait_key_works(key: &Path, port: u16, container: &str, what: &str) {
    let start = Instant::now();
    loop {
        let (ok, _, _) = ssh(key, port, &["true"]).await;
        if ok {
            return;
        }
        assert!(
            start.elapsed() < KEY_SYNC,
            "{what} does not work {KEY_SYNC:?} after it was written\n{}",
            runner_log(container).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Inspects `key` every 500 ms until it is in `want` (at most the boot deadline).
async fn wait_state(engine: &MicroVmEngine, key: &MachineKey, want: MachineState) -> flvpc_host::MachineDetails {
    let start = Instant::now();
    loop {
        let details = engine.inspect_machine(key).await.expect("inspect").expect("the machine exists");
        if details.info.state == want {
            eprintln!("{key} was {want} {:?} after the wait began", start.elapsed());
            return details;
        }
        assert!(
            start.elapsed() < BOOT,
            "{key} is {} not {want} after {BOOT:?}\n{}",
            details.info.state,
            runner_log(&details.info.container).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The bytes of the container's Docker log files on the host (rotated ones included).
async fn container_log_bytes(container: &str) -> u64 {
    let docker = bollard::Docker::connect_with_unix_defaults().expect("docker");
    let inspected = docker
        .inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect("inspect the runner");
    let path = PathBuf::from(inspected.log_path.expect("a json-file log path"));
    let dir = path.parent().expect("log dir");
    let name = path.file_name().and_then(|n| n.to_str()).expect("log file name").to_owned();
    std::fs::read_dir(dir)
        .expect("read the container's directory")
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&name)))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
