//! bench/vm-boot: time from the API call until every VM of an N-machine `backend: microvm`
//! cluster answers a real `ssh root@127.0.0.1 -p PORT true` with a member's key, for N = 1
//! and 3, next to the floor measured in the same run, interleaved: a plain
//! `qemu-system-x86_64` per VM booting the same kernel, initrd and base image (a qcow2 overlay
//! of the same size, the same seed disk with the host name and the key, the same CPUs, memory,
//! accelerator and translated-code cache), user-mode networking with a host forward to 22
//! instead of the runner's tap, N at once, waited for in the same way. Both clocks include
//! making the overlay and the seed disk (the runner makes them after its container started).
//! Then the cluster is deleted (until the operation succeeded) and the floor's QEMUs killed.
//!
//! With N = 1, after the VM answered SSH and idled for [`IDLE`], the resident memory of its
//! QEMU and of the runner (the runner container's PID 1, found with `docker inspect`), and of
//! the floor's QEMU after the same idle time.
//!
//! Usage (as root, dockerd running, runner image and VM artifacts built):
//!   cargo run --release -p flvpc-bench --bin vm-boot -- [--runs 3] [--sizes 1,3]
//!     [--flvpc target/release/flvpc] [--vm-dir /var/cache/flvpc-test/vm]
//! Traffic goes only to 127.0.0.1. Everything it makes (the namespace's containers and
//! network, QEMU processes, temporary files) is removed at the end, also after an error or
//! Ctrl-C.

use anyhow::{anyhow, bail, Context, Result};
use flvpc_bench::{load_average, login, median, run, secs, Flvpc};
use flvpc_host::vm::{
    create_overlay, create_seed, kernel_append, probe_accel, Accel, Artifacts, Disk, DiskFormat, HostForward,
    MicroVmConfig, QemuCommand, RunningVm, Seed, QEMU_SYSTEM,
};
use flvpc_model::MachineKey;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What every VM gets, on both sides.
const CPUS: u32 = 1;
const MEMORY_MIB: u32 = 512;
/// A run's bound: under TCG on a busy 2-core host one Debian boot takes about a minute,
/// three at once up to a few.
const BOOT_DEADLINE: Duration = Duration::from_secs(600);
/// How long a booted VM idles before its memory is read.
const IDLE: Duration = Duration::from_secs(10);
/// Between SSH probes: boots take tens of seconds, and every probe costs the guest CPU.
const POLL: Duration = Duration::from_millis(250);
/// Where flvpc's host ports are looked for (inside `flvpc serve`'s default port range).
const PORT_SEARCH: std::ops::Range<u16> = 25100..29900;
const DEFAULT_VM_DIR: &str = "/var/cache/flvpc-test/vm";
/// The line `flvpc serve` logs when the microVM engine is registered, and when it is not.
const AVAILABLE: &str = "microVMs: available, accelerator ";
const NOT_AVAILABLE: &str = "microVMs: not available: ";

struct Options {
    runs: usize,
    sizes: Vec<usize>,
    flvpc: PathBuf,
    vm_dir: PathBuf,
}

fn options() -> Result<Options> {
    let mut opts = Options {
        runs: 3,
        sizes: vec![1, 3],
        flvpc: PathBuf::from("target/release/flvpc"),
        vm_dir: PathBuf::from(DEFAULT_VM_DIR),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => opts.runs = args.next().context("--runs N")?.parse().context("--runs takes a number")?,
            "--sizes" => {
                opts.sizes = args
                    .next()
                    .context("--sizes 1,3")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--sizes takes numbers separated by commas, e.g. 1,3")?
            }
            "--flvpc" => opts.flvpc = PathBuf::from(args.next().context("--flvpc PATH")?),
            "--vm-dir" => opts.vm_dir = PathBuf::from(args.next().context("--vm-dir DIR")?),
            other => bail!("unknown argument {other:?} (known: --runs, --sizes, --flvpc, --vm-dir)"),
        }
    }
    if opts.runs == 0 || opts.sizes.is_empty() || opts.sizes.iter().any(|&n| n == 0 || n > 20) {
        bail!("--runs must be at least 1 and every size in --sizes between 1 and 20");
    }
    if !opts.flvpc.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p flvpc) or pass --flvpc PATH",
            opts.flvpc.display()
        );
    }
    Ok(opts)
}

/// `true` when something on 127.0.0.1:`port` greets like an SSH server within 2 s. A published
/// port or a QEMU host forward accepts connections before the guest listens, so a connect
/// alone proves nothing; this costs far less than starting `ssh` on every poll.
async fn ssh_banner(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.ok()?;
        // Said back so that sshd does not log a dropped pre-auth connection as an error.
        let _ = stream.write_all(b"SSH-2.0-flvpc-bench\r\n").await;
        Some(&buf == b"SSH-")
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Some(true)))
}

/// Runs `argv` as root over a real `ssh` on 127.0.0.1:`port` with `key`; its stdout if it
/// succeeded within 60 s (a TCG guest does its part of the key exchange slowly).
async fn ssh(key: &Path, port: u16, argv: &[&str]) -> Option<String> {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-i")
        .arg(key)
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "-p"])
        .arg(port.to_string())
        .args(["root@127.0.0.1", "--"])
        .args(argv)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        _ => None,
    }
}

/// One probe: the banner first, then a real `ssh … true`.
async fn ssh_answers(key: &Path, port: u16) -> bool {
    ssh_banner(port).await && ssh(key, port, &["true"]).await.is_some()
}

/// Checks that the VM on `port` is the one named `hostname` (its seed disk reached it).
async fn check_hostname(key: &Path, port: u16, hostname: &str) -> Result<()> {
    let said = ssh(key, port, &["hostname"]).await.unwrap_or_default();
    if said != hostname {
        bail!("the VM on port {port} says its host name is {said:?}, expected {hostname:?}");
    }
    Ok(())
}

/// Resident memory of a process in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// The children of `parent` whose command name starts with `prefix` (from /proc/*/stat).
fn children_named(parent: u32, prefix: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // "PID (COMM) STATE PPID …": the name may hold spaces and parentheses, so split
            // at the last ')'.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { return false };
            let comm = &stat[open + 1..close];
            let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
            ppid == Some(parent) && comm.starts_with(prefix)
        })
        .collect()
}

/// Resident memory of one flvpc VM: its QEMU and the runner (KiB).
#[derive(Clone, Copy)]
struct VmRss {
    qemu: u64,
    runner: u64,
}

/// The runner container's PID 1 (the runner) and its QEMU child, and their RSS.
fn runner_rss(container: &str) -> Result<VmRss> {
    let pid: u32 = run(Command::new("docker").args(["inspect", "-f", "{{.State.Pid}}", container]))?
        .trim()
        .parse()
        .with_context(|| format!("docker inspect gave no PID for {container}"))?;
    let qemu = match children_named(pid, "qemu")[..] {
        [qemu] => qemu,
        ref other => bail!("the runner {pid} of {container} has {} QEMU children, expected 1", other.len()),
    };
    let read = |pid| rss_kib(pid).with_context(|| format!("cannot read the memory of process {pid}"));
    Ok(VmRss { qemu: read(qemu)?, runner: read(pid)? })
}

/// One flvpc run.
struct FlvpcRun {
    /// From the POST until every VM answered SSH.
    create: Duration,
    /// From the POST until the create operation succeeded (runner containers started).
    operation: Duration,
    /// From the POST of the delete until its operation succeeded.
    delete: Duration,
    rss: Option<VmRss>,
}

/// N consecutive free host ports on 127.0.0.1 (flvpc gives `hostPort` to the first machine
/// of a group and the next ports to the others).
fn consecutive_free_ports(n: usize) -> Result<u16> {
    let n = u16::try_from(n)?;
    let mut base = PORT_SEARCH.start;
    while base + n < PORT_SEARCH.end {
        let held: Vec<_> = (base..base + n).map_while(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok()).collect();
        if held.len() == usize::from(n) {
            return Ok(base);
        }
        base += n + 1;
    }
    bail!("no {n} consecutive free ports between {} and {}", PORT_SEARCH.start, PORT_SEARCH.end)
}

/// Polls until a flvpc VM answers SSH; on the deadline, an error with its runner's last lines.
async fn flvpc_vm_up(key: PathBuf, port: u16, container: String, deadline: Instant) -> Result<()> {
    loop {
        if ssh_answers(&key, port).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            let logs = Command::new("docker")
                .args(["logs", "--tail", "20", &container])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            bail!("{container} did not answer SSH on port {port} within {BOOT_DEADLINE:?}; the runner said:\n{logs}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// flvpc: from POST create until every VM answers SSH (tried once the operation succeeded,
/// as a person watching the panel would); with N = 1 the idle memory; then delete.
async fn flvpc_once(server: &Flvpc, token: &str, ns: &str, n: usize, key: &Path) -> Result<FlvpcRun> {
    let base = consecutive_free_ports(n)?;
    let spec = format!(
        "machines:\n- count: {n}\n  spec:\n    name: vm%d\n    backend: microvm\n    portMappings:\n    - containerPort: 22\n      hostPort: {base}\n    ignite: {{cpus: {CPUS}, memory: {MEMORY_MIB}MB}}\n"
    );
    server.put_spec(token, ns, spec).await?;
    let started = Instant::now();
    let op =
        server.call(token, reqwest::Method::POST, &format!("/api/v1/namespaces/{ns}/cluster/create"), None).await?;
    server.wait_op(token, op["operation"].as_str().context("operation id")?).await?;
    let operation = started.elapsed();
    let deadline = started + BOOT_DEADLINE;
    // A JoinSet aborts its probes when dropped (an error in one VM, or the run interrupted).
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let container = flvpc_host::engine::container_name(&MachineKey::parse(ns, &format!("vm{i}"))?);
        tasks.spawn(flvpc_vm_up(key.to_owned(), base + i as u16, container, deadline));
    }
    while let Some(up) = tasks.join_next().await {
        up??;
    }
    let create = started.elapsed();
    for i in 0..n {
        check_hostname(key, base + i as u16, &format!("vm{i}")).await?;
    }
    let rss = if n == 1 {
        tokio::time::sleep(IDLE).await;
        Some(runner_rss(&flvpc_host::engine::container_name(&MachineKey::parse(ns, "vm0")?))?)
    } else {
        None
    };
    let started = Instant::now();
    server.act(token, &format!("/api/v1/namespaces/{ns}/cluster/delete")).await?;
    let delete = started.elapsed();
    let left = run(Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=flvpc.namespace={ns}")]))?;
    if !left.trim().is_empty() {
        bail!("the delete operation succeeded but containers of {ns} are left: {}", left.trim());
    }
    Ok(FlvpcRun { create, operation, delete, rss })
}

/// What the floor needs to boot a VM as the runner does.
struct FloorSetup {
    artifacts: Artifacts,
    accel: Accel,
    disk_bytes: u64,
    public_key: String,
}

/// One floor run.
struct FloorRun {
    create: Duration,
    /// Killing the QEMUs and removing their files.
    delete: Duration,
    /// KiB, with N = 1.
    rss: Option<u64>,
}

/// Makes a floor VM's overlay and seed in `dir` and starts its QEMU; its SSH port.
async fn floor_vm(setup: &FloorSetup, dir: &Path, hostname: &str) -> Result<(RunningVm, u16)> {
    let disk = dir.join("disk.qcow2");
    create_overlay(&setup.artifacts, &disk, setup.disk_bytes).await?;
    let seed = dir.join("seed.img");
    let identity = Seed { hostname: hostname.to_owned(), authorized_keys: setup.public_key.clone(), network: None };
    create_seed(&identity, &seed).await?;
    let port = flvpc_bench::free_port()?;
    let mut cmd = QemuCommand::new(setup.accel, &setup.artifacts.kernel, dir.join("serial.log"));
    cmd.cpus = CPUS;
    cmd.memory_mib = MEMORY_MIB;
    cmd.initrd = Some(setup.artifacts.initrd.clone());
    cmd.append = kernel_append();
    cmd.disks = vec![
        Disk { path: disk, format: DiskFormat::Qcow2, read_only: false },
        Disk { path: seed, format: DiskFormat::Raw, read_only: true },
    ];
    cmd.user_net = Some(vec![HostForward { host_port: port, guest_port: 22 }]);
    cmd.qmp_socket = Some(dir.join("qmp.sock"));
    // As the runner sets it: it bounds QEMU's memory under TCG, so the RSS compares too.
    cmd.tcg_cache_mib = Some(flvpc_host::vm::runner::TCG_CACHE_MIB);
    Ok((RunningVm::spawn(&cmd)?, port))
}

/// Polls until a floor VM answers SSH; an error with its console as soon as QEMU ends, or at
/// the deadline. Gives the VM back either way (QEMU is killed when it is dropped).
async fn floor_vm_up(mut vm: RunningVm, key: PathBuf, port: u16, deadline: Instant) -> (RunningVm, Result<()>) {
    loop {
        if let Some(status) = vm.try_exited() {
            let why = anyhow!("a floor QEMU ended ({status}) before SSH answered; console:\n{}", vm.serial_tail(20));
            return (vm, Err(why));
        }
        if ssh_answers(&key, port).await {
            return (vm, Ok(()));
        }
        if Instant::now() > deadline {
            let why =
                anyhow!("a floor VM did not answer SSH within {BOOT_DEADLINE:?}; console:\n{}", vm.serial_tail(20));
            return (vm, Err(why));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The floor: N plain QEMUs at once, from making their disks until each answers SSH.
async fn floor_once(setup: &FloorSetup, work: &Path, n: usize, key: &Path) -> Result<FloorRun> {
    let dir = tempfile::tempdir_in(work)?;
    let started = Instant::now();
    let deadline = started + BOOT_DEADLINE;
    // A JoinSet aborts its tasks when dropped, which drops (kills) the QEMUs they hold.
    let mut tasks = tokio::task::JoinSet::new();
    let mut ports = Vec::new();
    for i in 0..n {
        let vm_dir = dir.path().join(format!("vm{i}"));
        std::fs::create_dir(&vm_dir)?;
        let (vm, port) = floor_vm(setup, &vm_dir, &format!("vm{i}")).await?;
        ports.push(port);
        tasks.spawn(floor_vm_up(vm, key.to_owned(), port, deadline));
    }
    let mut vms = Vec::new();
    while let Some(up) = tasks.join_next().await {
        let (vm, up) = up?;
        vms.push(vm);
        up?;
    }
    let create = started.elapsed();
    for (i, &port) in ports.iter().enumerate() {
        check_hostname(key, port, &format!("vm{i}")).await?;
    }
    let rss = if n == 1 {
        tokio::time::sleep(IDLE).await;
        let pid = vms[0].pid().context("the floor QEMU is gone")?;
        Some(rss_kib(pid).with_context(|| format!("cannot read the memory of QEMU {pid}"))?)
    } else {
        None
    };
    let started = Instant::now();
    for vm in &mut vms {
        vm.kill().await;
    }
    dir.close()?;
    Ok(FloorRun { create, delete: started.elapsed(), rss })
}

/// The accelerator named in the server's log, with the probe's reason; `None` if not (yet) there.
fn logged_accelerator(log: &Path) -> Result<Option<String>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if let Some(line) = text.lines().find(|l| l.contains(NOT_AVAILABLE)) {
        bail!("flvpc offers no microVMs: {}", line.split_once(NOT_AVAILABLE).map_or(line, |(_, why)| why));
    }
    Ok(text.lines().find_map(|l| Some(l.split_once(AVAILABLE)?.1.trim().to_owned())))
}

/// Removes what a run may have left when it ended early: the namespace's containers (with
/// their volumes), its network and its machines' cgroup directories. Runs on drop, after the
/// server was stopped (so that its reconciler does not make them again).
struct Leftovers {
    namespace: String,
    max_machines: usize,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let label = format!("label=flvpc.namespace={}", self.namespace);
        let ids = Command::new("docker").args(["ps", "-aq", "--filter", &label]).output();
        let ids = ids.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            eprintln!("removing {} container(s) left in namespace {}", ids.len(), self.namespace);
            let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).output();
        }
        let network = format!("flvpc-{}", self.namespace);
        let _ = Command::new("docker").args(["network", "rm", &network]).output();
        let layout = flvpc_host::cgroup::CgroupLayout::detect();
        for i in 0..self.max_machines {
            if let Ok(key) = MachineKey::parse(&self.namespace, &format!("vm{i}")) {
                layout.cleanup(&key);
            }
        }
    }
}

/// One line of the table: medians, their ratio, and every run.
fn row(label: &str, ours: &[Duration], floor: &[Duration]) {
    let (m_ours, m_floor) = (median(ours.to_vec()), median(floor.to_vec()));
    println!(
        "{label:>10}  {:>11.2}s  {:>11.2}s  {:>6.2}x   {} / {}",
        m_ours.as_secs_f64(),
        m_floor.as_secs_f64(),
        m_ours.as_secs_f64() / m_floor.as_secs_f64(),
        secs(ours),
        secs(floor)
    );
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The median as [`median`] takes it.
fn median_kib(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    let mid = values.len() / 2;
    match values.len() {
        0 => 0,
        n if n % 2 == 0 => (values[mid - 1] + values[mid]) / 2,
        _ => values[mid],
    }
}

/// The whole benchmark, with everything it starts owned by this future (dropping it kills
/// the server and the floor's QEMUs).
async fn bench(opts: &Options, work: &Path, ns: &str) -> Result<()> {
    let artifacts = Artifacts::current(&opts.vm_dir).with_context(|| {
        format!(
            "no current VM artifacts in {}: build them with `flvpc image build debian-12-vm --vm-dir {}`",
            opts.vm_dir.display(),
            opts.vm_dir.display()
        )
    })?;
    let key = work.join("id");
    run(Command::new("ssh-keygen").args(["-q", "-N", "", "-t", "ed25519", "-C", "vm-boot", "-f"]).arg(&key))?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;

    let data = work.join("data");
    std::fs::create_dir(&data)?;
    let log = work.join("serve.log");
    let vm_dir = opts.vm_dir.to_str().context("--vm-dir must be UTF-8")?;
    let extra = ["--publish-address", "127.0.0.1", "--vm-dir", vm_dir];
    let server = Flvpc::start_logged(&opts.flvpc, &data, &extra, Some(&log)).await?;
    // The server logs the probe's outcome before it answers /healthz, which start waited for.
    let (accel, accel_detail) = match logged_accelerator(&log)? {
        Some(detail) if detail.starts_with("kvm") => (Accel::Kvm, detail),
        Some(detail) if detail.starts_with("tcg") => (Accel::Tcg, detail),
        other => {
            // The log line moved or changed: the floor probes by itself, as the server does.
            let probe = probe_accel(Path::new(QEMU_SYSTEM), &artifacts.kernel, work, Duration::from_secs(20)).await;
            let said = other.unwrap_or_else(|| "unknown".to_owned());
            (
                probe.accel,
                format!("{said} (the server's log did not say; the floor's own probe: {})", probe.accel.name()),
            )
        }
    };
    let admin = server.admin.clone();
    use reqwest::Method;
    server
        .call(&admin, Method::POST, "/api/v1/users", Some(json!({"login": "bench", "password": "bench-password"})))
        .await?;
    let user = login(&server.client, &server.base, "bench", "bench-password").await?;
    server
        .call(&user, Method::POST, "/api/v1/keys", Some(json!({"name": "bench", "public_key": public.trim()})))
        .await?;
    server.call(&admin, Method::POST, "/api/v1/namespaces", Some(json!({"name": ns}))).await?;
    server
        .call(&admin, Method::PUT, &format!("/api/v1/namespaces/{ns}/members/bench"), Some(json!({"role": "admin"})))
        .await?;

    // The disk a VM gets when its spec names none, as the engine sizes it.
    let disk_bytes =
        MicroVmConfig::new(&opts.flvpc, &opts.vm_dir, accel).disk_bytes.max(artifacts.manifest.base_virtual_bytes);
    let setup = FloorSetup { artifacts, accel, disk_bytes, public_key: public };

    println!(
        "vm-boot: API call until every VM answers `ssh root@127.0.0.1 -p PORT true`; runs per size: {}",
        opts.runs
    );
    println!("accelerator: {accel_detail}");
    println!(
        "VMs: {CPUS} CPU, {MEMORY_MIB} MiB, {} MiB disk (qcow2 over the base image), kernel {}",
        disk_bytes >> 20,
        setup.artifacts.manifest.kernel_version
    );
    println!("floor: {QEMU_SYSTEM} per VM, N at once: same kernel, initrd, base, disk size, seed disk, CPUs, memory,");
    println!("  accelerator and TCG cache; user network with a host forward to 22; same SSH wait; both clocks");
    println!(
        "  include making the overlay and the seed. delete: flvpc until the operation succeeded, floor: kill QEMU"
    );
    println!("load average at start: {}", load_average());
    println!(
        "{:>10}  {:>12}  {:>12}  {:>7}   flvpc runs / floor runs (s)",
        "N / step", "flvpc median", "floor median", "ratio"
    );

    let mut flvpc_rss = Vec::new();
    let mut floor_rss = Vec::new();
    for &n in &opts.sizes {
        let mut ours = Vec::new();
        let mut floor = Vec::new();
        for _ in 0..opts.runs {
            // Interleaved, so both see the same host noise (TCG boot times follow the load).
            ours.push(flvpc_once(&server, &user, ns, n, &key).await?);
            floor.push(floor_once(&setup, work, n, &key).await?);
        }
        let ours_create: Vec<_> = ours.iter().map(|r| r.create).collect();
        let floor_create: Vec<_> = floor.iter().map(|r| r.create).collect();
        row(&format!("{n} create"), &ours_create, &floor_create);
        row(
            &format!("{n} delete"),
            &ours.iter().map(|r| r.delete).collect::<Vec<_>>(),
            &floor.iter().map(|r| r.delete).collect::<Vec<_>>(),
        );
        let operations: Vec<_> = ours.iter().map(|r| r.operation).collect();
        println!("{:>10}  flvpc's create operation succeeded (runners started) after {} s", "", secs(&operations));
        flvpc_rss.extend(ours.iter().filter_map(|r| r.rss));
        floor_rss.extend(floor.iter().filter_map(|r| r.rss));
    }
    if !flvpc_rss.is_empty() && !floor_rss.is_empty() {
        let qemu = median_kib(flvpc_rss.iter().map(|r| r.qemu).collect());
        let runner = median_kib(flvpc_rss.iter().map(|r| r.runner).collect());
        let floor = median_kib(floor_rss.clone());
        let list = |v: Vec<u64>| v.into_iter().map(mib).collect::<Vec<_>>().join(" ");
        println!("RSS per idle VM (N = 1, {} s after SSH answered), medians in MiB:", IDLE.as_secs());
        println!(
            "  flvpc: QEMU {} + runner {} = {}   floor QEMU: {}   ratio {:.2}x   (runs: QEMU {}, runner {} / floor {})",
            mib(qemu),
            mib(runner),
            mib(qemu + runner),
            mib(floor),
            (qemu + runner) as f64 / floor as f64,
            list(flvpc_rss.iter().map(|r| r.qemu).collect()),
            list(flvpc_rss.iter().map(|r| r.runner).collect()),
            list(floor_rss)
        );
    }
    server.call(&admin, Method::DELETE, &format!("/api/v1/namespaces/{ns}"), None).await?;
    println!("load average at end: {}", load_average());
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let opts = options()?;
    let runner_image = flvpc_host::image::VM_RUNNER_IMAGE;
    run(Command::new("docker").args(["image", "inspect", runner_image])).with_context(|| {
        format!("the runner image {runner_image} is missing (or dockerd is down): build it with `flvpc image build vm-runner`")
    })?;
    let work = tempfile::Builder::new().prefix("flvpc-vm-boot-").tempdir()?;
    // Unique per run, so that the clean-up's label filter finds only this run's containers.
    let ns = format!("vmboot{}", std::process::id());
    let max_machines = opts.sizes.iter().copied().max().unwrap_or(0);
    // Declared before the benchmark's future: dropped after it (also when unwinding), so
    // after the server is stopped.
    let leftovers = Leftovers { namespace: ns.clone(), max_machines };
    let result = tokio::select! {
        result = bench(&opts, work.path(), &ns) => result,
        _ = interrupted() => Err(anyhow!("interrupted: removing what the run made")),
    };
    drop(leftovers);
    result
}
