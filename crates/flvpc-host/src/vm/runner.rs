//! The VM runner: PID 1 of a microVM's runner container (see [`super::engine`]).
//!
//! It hands the container's network identity to the VM and keeps the VM's life tied to the
//! container's, so that everything Docker does for containers (namespace network and names,
//! published ports, restart policy, labels, cgroup limits) works for the VM unchanged:
//!
//! - the container's `eth0` is bridged to a tap device (`br0`), and the VM's card takes
//!   `eth0`'s Ethernet and IPv4 address (told to the guest through its seed disk), so the
//!   Docker network reaches the VM where it reached the container;
//! - Docker's embedded DNS (127.0.0.11, reachable only inside the container) is relayed to
//!   the VM on a link-local address of the bridge, so the VM resolves its namespace's names;
//! - the VM's disk is a qcow2 overlay in the container's volume (`/vm`), made on first start;
//!   the seed disk (host name, keys, network) is made again at every start;
//! - root's authorized_keys (written into `/vm/authorized_keys` by the engine through
//!   Docker's archive API) reach the running guest over a virtio-serial port within a
//!   second or two (the cloud kernel has no 9p; see [`super::guest`] for the guest side);
//! - SIGTERM (`docker stop`) presses the VM's power button over QMP and waits for the guest
//!   to shut down; Docker's stop timeout kills the container if it does not.
//!
//! Everything is spawned with argv lists; user data (keys) are only ever file contents.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UdpSocket, UnixStream};

use super::artifacts::Artifacts;
use super::boot::{write_state, BootState, BOOT_FILE};
use super::disk::{create_overlay, create_seed, GuestNetwork, MacAddr, Seed};
use super::guest::{kernel_append, KEYS_PORT};
use super::process::{ssh_banner, PowerOff, RunningVm, TAIL_LINES};
use super::qemu::{Accel, Disk, DiskFormat, QemuCommand, SerialPort, TapNet};

/// Where the engine mounts the VM artifacts (read-only) in the runner container.
pub const ARTIFACTS_MOUNT: &str = "/flvpc/artifacts";
/// Where the engine mounts the runner program (read-only).
pub const RUNNER_MOUNT: &str = "/flvpc/runner";
/// The container's volume: disk overlay, keys, console, sockets.
pub const STATE_DIR: &str = "/vm";
/// What the VM's disk overlay was made over ([`super::Manifest::base_identity`]), in [`STATE_DIR`].
pub const BASE_ID_FILE: &str = "base.id";
/// The file the engine writes root's authorized_keys to (in [`STATE_DIR`]).
pub const KEYS_FILE: &str = "authorized_keys";
/// The base name of QEMU's own message file in [`STATE_DIR`] (`serial.log.qemu-stderr`); the
/// guest's console itself goes to the runner's standard output (see [`super::console`]).
pub const SERIAL_LOG: &str = "serial.log";
/// The link-local address of the bridge where the DNS relay listens; the guest reaches it
/// through a host route on its card (it is outside the Docker network's subnet).
pub const DNS_RELAY: Ipv4Addr = Ipv4Addr::new(169, 254, 53, 1);
/// The bridge of the container's `eth0` and the VM's tap.
pub const BRIDGE: &str = "br0";
/// The tap device of the VM's network card.
pub const TAP: &str = "tap0";
/// Docker's embedded DNS server inside a container on a user-defined network.
const DOCKER_DNS: &str = "127.0.0.11:53";
/// The largest authorized_keys sent to the guest (the guest refuses more).
const MAX_KEYS_BYTES: usize = 1 << 20;
/// Unanswered DNS queries relayed at once; more are dropped (the guest retries).
const DNS_IN_FLIGHT: usize = 64;
/// How long the runner waits for the guest to power down after SIGTERM. Docker's stop
/// timeout (given by the caller of `docker stop`) is the real bound: it kills the container.
const POWERDOWN_DEADLINE: Duration = Duration::from_secs(600);
/// Translated-code cache under TCG (see [`QemuCommand::tcg_cache_mib`]).
pub const TCG_CACHE_MIB: u32 = 64;

/// What the engine tells the runner, as one JSON argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerConfig {
    /// The guest's host name (the machine name).
    pub hostname: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The disk's size in bytes (used when the overlay is first made).
    pub disk_bytes: u64,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// How long the guest has from QEMU's start until it answers SSH; then it is reported
    /// failed (see [`super::boot`]). Runner containers made before this field get the default.
    #[serde(default = "default_boot_deadline_secs")]
    pub boot_deadline_secs: u64,
}

/// The boot deadline of a runner whose configuration names none: a TCG boot on a loaded
/// host took up to about 70 s here.
pub const DEFAULT_BOOT_DEADLINE_SECS: u64 = 300;

fn default_boot_deadline_secs() -> u64 {
    DEFAULT_BOOT_DEADLINE_SECS
}

impl RunnerConfig {
    fn accel(&self) -> Result<Accel, String> {
        match self.accel.as_str() {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("accelerator {other:?} is neither kvm nor tcg")),
        }
    }
}

/// The runner's entry point: `args` is the one JSON [`RunnerConfig`]. Returns the process's
/// exit code: 0 when the guest powered off by itself or on SIGTERM, 1 when it had to be
/// killed or failed, 2 for a bad invocation.
pub async fn main(args: Vec<String>) -> i32 {
    let config = match args.as_slice() {
        [json] => match serde_json::from_str::<RunnerConfig>(json) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("flvpc-vm-runner: the configuration is not valid JSON of a runner config: {e}");
                return 2;
            }
        },
        _ => {
            eprintln!(
                "flvpc-vm-runner: expected one argument, the runner configuration as JSON (the engine passes it)"
            );
            return 2;
        }
    };
    let signals = (
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
    );
    let (Ok(mut term), Ok(mut int)) = signals else {
        eprintln!("flvpc-vm-runner: cannot handle SIGTERM and SIGINT");
        return 1;
    };
    match run(&config, &mut term, &mut int).await {
        Ok(code) => code,
        // Exiting would make Docker's restart policy run it again and again: the VM is reported
        // failed with the reason, until it is restarted or removed.
        Err(why) => failed(&Path::new(STATE_DIR).join(BOOT_FILE), &why, &mut term, &mut int).await,
    }
}

async fn run(
    config: &RunnerConfig,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Result<i32, String> {
    let accel = config.accel()?;
    let state = Path::new(STATE_DIR);
    let artifacts = Artifacts::current(Path::new(ARTIFACTS_MOUNT)).ok_or_else(|| {
        format!(
            "no current VM artifacts in {ARTIFACTS_MOUNT}: build them on the host (flvpc's VM artifacts directory) \
             and recreate this machine"
        )
    })?;
    let disk = state.join("disk.qcow2");
    let base_id = state.join(BASE_ID_FILE);
    let identity = artifacts.manifest.base_identity();
    if !disk.exists() {
        // Made beside, then renamed: a runner killed while making it leaves no half disk.
        let part = state.join("disk.qcow2.part");
        create_overlay(&artifacts, &part, config.disk_bytes).await.map_err(|e| e.to_string())?;
        std::fs::write(&base_id, &identity).map_err(|e| format!("cannot write {}: {e}", base_id.display()))?;
        std::fs::rename(&part, &disk).map_err(|e| format!("cannot rename {}: {e}", part.display()))?;
        eprintln!("flvpc-vm-runner: made the VM's disk ({} bytes)", config.disk_bytes);
    }
    match std::fs::read_to_string(&base_id) {
        Ok(made_over) if made_over != identity => {
            return Err(format!(
                "this VM's disk was made over another build of the VM artifacts ({made_over}) than the one \
                 there now ({identity}): booting it would corrupt its file system. The artifacts were rebuilt; \
                 recreate this machine (its disk is lost), or put the old build back"
            ))
        }
        Ok(_) => {}
        // A disk made before the check existed: over the artifacts there now, as nothing else was.
        Err(_) => {
            std::fs::write(&base_id, &identity).map_err(|e| format!("cannot write {}: {e}", base_id.display()))?
        }
    }

    let link = read_eth0().await?;
    bridge(&link).await?;
    let relay =
        UdpSocket::bind((DNS_RELAY, 53)).await.map_err(|e| format!("cannot listen for DNS on {DNS_RELAY}:53: {e}"))?;
    tokio::spawn(dns_relay(relay));

    let keys_file = state.join(KEYS_FILE);
    let keys = read_keys(&keys_file);
    let seed = state.join("seed.img");
    let _ = std::fs::remove_file(&seed);
    let network = GuestNetwork {
        mac: link.mac,
        address: link.address,
        prefix: link.prefix,
        gateway: link.gateway,
        dns: DNS_RELAY,
    };
    create_seed(
        &Seed { hostname: config.hostname.clone(), authorized_keys: keys.unwrap_or_default(), network: Some(network) },
        &seed,
    )
    .await
    .map_err(|e| e.to_string())?;

    let keys_socket = state.join("keys.sock");
    let qmp_socket = state.join("qmp.sock");
    for stale in [&keys_socket, &qmp_socket] {
        let _ = std::fs::remove_file(stale);
    }
    let mut cmd = QemuCommand::new(accel, &artifacts.kernel, state.join(SERIAL_LOG));
    // The console goes to the runner's standard output: Docker's bounded log of the runner
    // container (see super::console).
    cmd.console_on_stdout = true;
    cmd.cpus = config.cpus;
    cmd.memory_mib = config.memory_mib;
    cmd.initrd = Some(artifacts.initrd.clone());
    cmd.append = kernel_append();
    cmd.disks = vec![
        Disk { path: disk, format: DiskFormat::Qcow2, read_only: false },
        Disk { path: seed, format: DiskFormat::Raw, read_only: true },
    ];
    cmd.tap = Some(TapNet { ifname: TAP.into(), mac: link.mac });
    cmd.serial_ports = vec![SerialPort { name: KEYS_PORT.into(), socket: keys_socket.clone() }];
    cmd.qmp_socket = Some(qmp_socket);
    cmd.tcg_cache_mib = Some(TCG_CACHE_MIB);
    let boot_file = state.join(BOOT_FILE);
    set_boot_state(&boot_file, &BootState::Booting);
    let mut vm = RunningVm::spawn(&cmd).map_err(|e| e.to_string())?;
    eprintln!(
        "flvpc-vm-runner: started {} ({} CPUs, {} MiB, {}) at {}/{}",
        config.hostname,
        config.cpus,
        config.memory_mib,
        accel.name(),
        link.address,
        link.prefix
    );
    let sync = tokio::spawn(sync_keys(keys_socket, keys_file));

    let deadline = Duration::from_secs(config.boot_deadline_secs);
    let started = Instant::now();
    let boot = wait_for_ssh(SocketAddr::from((link.address, 22)), deadline);
    tokio::pin!(boot);
    let mut booted = false;
    let code = loop {
        tokio::select! {
            status = vm.wait() => {
                let status = status.map_err(|e| format!("cannot wait for QEMU: {e}"))?;
                if booted {
                    eprintln!("flvpc-vm-runner: the VM stopped by itself ({status}); last console lines:\n{}", vm.serial_tail(10));
                    break status.code().unwrap_or(1);
                }
                let why = format!(
                    "the VM stopped while booting ({status}); last console lines:\n{}",
                    vm.serial_tail(TAIL_LINES)
                );
                break failed(&boot_file, &why, term, int).await;
            }
            up = &mut boot, if !booted => {
                if up {
                    booted = true;
                    set_boot_state(&boot_file, &BootState::Ready);
                    eprintln!("flvpc-vm-runner: the VM answers SSH, {:.1} s after its start", started.elapsed().as_secs_f64());
                    continue;
                }
                vm.kill().await;
                let why = format!(
                    "the VM did not answer SSH within {} s of its start (it was stopped; restart the machine to try \
                     again); last console lines:\n{}",
                    deadline.as_secs(),
                    vm.serial_tail(TAIL_LINES)
                );
                break failed(&boot_file, &why, term, int).await;
            }
            _ = term.recv() => break power_down(&mut vm).await,
            _ = int.recv() => break power_down(&mut vm).await,
        }
    };
    sync.abort();
    Ok(code)
}

/// Records the boot state for the engine; a write that fails is said, not fatal (the
/// engine then sees the VM booting until its deadline).
fn set_boot_state(path: &Path, state: &BootState) {
    if let Err(e) = write_state(path, state) {
        eprintln!("flvpc-vm-runner: cannot write {}: {e}", path.display());
    }
}

/// A boot that failed: said in the boot file and the log; then the runner waits to be stopped
/// (exiting would make Docker's restart policy boot it again and again).
async fn failed(
    boot_file: &Path,
    why: &str,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> i32 {
    eprintln!("flvpc-vm-runner: {why}");
    set_boot_state(boot_file, &BootState::Failed(why.to_owned()));
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    0
}

/// `true` once the guest's sshd greets on `address` (tried every second), `false` when
/// `deadline` passed first.
async fn wait_for_ssh(address: SocketAddr, deadline: Duration) -> bool {
    let start = Instant::now();
    loop {
        if ssh_banner(address).await {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn power_down(vm: &mut RunningVm) -> i32 {
    eprintln!("flvpc-vm-runner: stopping: pressing the VM's power button");
    match vm.power_down(POWERDOWN_DEADLINE).await {
        PowerOff::Graceful(status) => {
            eprintln!("flvpc-vm-runner: the VM powered down ({status})");
            0
        }
        PowerOff::Killed(why) => {
            eprintln!("flvpc-vm-runner: the VM was killed: {why}");
            1
        }
    }
}

/// The container's interface as Docker configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    mac: MacAddr,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
}

async fn ip(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run ip (iproute2 is in the runner image): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

async fn read_eth0() -> Result<Link, String> {
    let addr = ip(&["-j", "addr", "show", "dev", "eth0"]).await?;
    let route = ip(&["-j", "route", "show", "default"]).await?;
    parse_link(&addr, &route)
}

/// Reads `ip -j addr show dev eth0` and `ip -j route show default`.
fn parse_link(addr_json: &str, route_json: &str) -> Result<Link, String> {
    let addr: serde_json::Value =
        serde_json::from_str(addr_json).map_err(|e| format!("ip printed no JSON for eth0: {e}"))?;
    let iface = addr.get(0).ok_or("the container has no eth0: is it on its namespace network?")?;
    let mac =
        iface.get("address").and_then(|a| a.as_str()).and_then(MacAddr::parse).ok_or("eth0 has no Ethernet address")?;
    let inet = iface
        .get("addr_info")
        .and_then(|a| a.as_array())
        .and_then(|infos| infos.iter().find(|i| i.get("family").and_then(|f| f.as_str()) == Some("inet")))
        .ok_or("eth0 has no IPv4 address")?;
    let address: Ipv4Addr = inet
        .get("local")
        .and_then(|l| l.as_str())
        .and_then(|l| l.parse().ok())
        .ok_or("eth0's IPv4 address cannot be read")?;
    let prefix = inet
        .get("prefixlen")
        .and_then(|p| p.as_u64())
        .and_then(|p| u8::try_from(p).ok())
        .filter(|p| *p <= 32)
        .ok_or("eth0's prefix length cannot be read")?;
    let routes: serde_json::Value = serde_json::from_str(route_json).unwrap_or(serde_json::Value::Null);
    let gateway = routes
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|r| r.get("gateway").and_then(|g| g.as_str()).and_then(|g| g.parse().ok()));
    Ok(Link { mac, address, prefix, gateway })
}

/// The address `eth0` takes once the VM has its own: the same with one more
/// locally-administered bit, so it stays unique on the network and unicast.
fn runner_mac(vm: MacAddr) -> MacAddr {
    let mut b = vm.0;
    b[0] = (b[0] | 0x02) ^ 0x04;
    MacAddr(b)
}

/// Bridges eth0 and tap0 (the VM's card) in `br0`; the runner keeps only the DNS relay's
/// link-local address and a route to the VM.
async fn bridge(link: &Link) -> Result<(), String> {
    let runner_mac = runner_mac(link.mac).to_string();
    let vm_route = format!("{}/32", link.address);
    let relay = format!("{DNS_RELAY}/32");
    let relay_ip = DNS_RELAY.to_string();
    let steps: [&[&str]; 12] = [
        &["link", "set", "dev", "eth0", "down"],
        &["link", "set", "dev", "eth0", "address", &runner_mac],
        &["addr", "flush", "dev", "eth0"],
        &["link", "add", "name", BRIDGE, "type", "bridge", "forward_delay", "0"],
        &["tuntap", "add", "dev", TAP, "mode", "tap"],
        &["link", "set", "dev", "eth0", "master", BRIDGE],
        &["link", "set", "dev", TAP, "master", BRIDGE],
        &["link", "set", "dev", "eth0", "up"],
        &["link", "set", "dev", TAP, "up"],
        &["link", "set", "dev", BRIDGE, "up"],
        &["addr", "add", &relay, "dev", BRIDGE],
        &["route", "add", &vm_route, "dev", BRIDGE, "src", &relay_ip],
    ];
    for step in steps {
        ip(step).await?;
    }
    Ok(())
}

/// Relays the VM's DNS queries to Docker's embedded DNS, one upstream socket per query.
async fn dns_relay(socket: UdpSocket) {
    let socket = Arc::new(socket);
    let slots = Arc::new(tokio::sync::Semaphore::new(DNS_IN_FLIGHT));
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
        let query = buf[..n].to_vec();
        let socket = Arc::clone(&socket);
        tokio::spawn(async move {
            let _slot = slot;
            let answer = async {
                let up = UdpSocket::bind("127.0.0.1:0").await.ok()?;
                up.connect(DOCKER_DNS).await.ok()?;
                up.send(&query).await.ok()?;
                let mut reply = vec![0u8; 4096];
                let n = up.recv(&mut reply).await.ok()?;
                reply.truncate(n);
                Some(reply)
            };
            if let Ok(Some(reply)) = tokio::time::timeout(Duration::from_secs(5), answer).await {
                let _ = socket.send_to(&reply, from).await;
            }
        });
    }
}

/// The keys file if it is there and holds valid keys (else `None`, with a note).
fn read_keys(path: &Path) -> Option<String> {
    let text = match std::fs::read(path) {
        Ok(bytes) if bytes.len() <= MAX_KEYS_BYTES => String::from_utf8(bytes).ok()?,
        Ok(_) => {
            eprintln!("flvpc-vm-runner: {} is larger than {MAX_KEYS_BYTES} bytes: not used", path.display());
            return None;
        }
        Err(_) => return None,
    };
    let check = Seed { hostname: "check".into(), authorized_keys: text.clone(), network: None };
    match check.validate() {
        Ok(()) => Some(text),
        Err(e) => {
            eprintln!("flvpc-vm-runner: {} is not used: {e}", path.display());
            None
        }
    }
}

/// One frame of the keys channel: the length on its own line, then the bytes.
fn keys_frame(keys: &str) -> Vec<u8> {
    let mut frame = format!("{}\n", keys.len()).into_bytes();
    frame.extend_from_slice(keys.as_bytes());
    frame
}

/// Keeps the guest's authorized_keys equal to `keys_file`: connects to QEMU's end of the
/// keys port, sends the keys whenever the guest says `ready` (it opened its end) and
/// whenever the file changes (checked every second). Runs until aborted.
async fn sync_keys(socket: PathBuf, keys_file: PathBuf) {
    loop {
        let Ok(stream) = UnixStream::connect(&socket).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        eprintln!("flvpc-vm-runner: keys channel connected");
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read.take(1 << 16)).lines();
        let mut sent: Option<String> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(l)) if l.trim() == "ready" => {
                        let keys = read_keys(&keys_file).unwrap_or_default();
                        if write.write_all(&keys_frame(&keys)).await.is_err() {
                            break;
                        }
                        eprintln!("flvpc-vm-runner: the guest's keys agent is ready: sent {} bytes of keys", keys.len());
                        sent = Some(keys);
                    }
                    Ok(Some(_)) => {}
                    other => {
                        eprintln!("flvpc-vm-runner: keys channel closed ({other:?}): connecting again");
                        break;
                    }
                },
                _ = tick.tick() => {
                    // Before the guest said ready, it would drop what is sent: wait for it.
                    let Some(previous) = &sent else { continue };
                    if let Some(keys) = read_keys(&keys_file).filter(|k| k != previous) {
                        if write.write_all(&keys_frame(&keys)).await.is_err() {
                            break;
                        }
                        eprintln!("flvpc-vm-runner: the keys changed: sent {} bytes", keys.len());
                        sent = Some(keys);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_from_ip_json() {
        let addr = r#"[{"ifindex":12,"ifname":"eth0","address":"02:42:ac:14:00:02","addr_info":[
            {"family":"inet","local":"172.20.0.2","prefixlen":16},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        let route = r#"[{"dst":"default","gateway":"172.20.0.1","dev":"eth0"}]"#;
        let link = parse_link(addr, route).expect("link");
        assert_eq!(link.mac.to_string(), "02:42:ac:14:00:02");
        assert_eq!((link.address, link.prefix), (Ipv4Addr::new(172, 20, 0, 2), 16));
        assert_eq!(link.gateway, Some(Ipv4Addr::new(172, 20, 0, 1)));
        assert_eq!(parse_link(addr, "[]").expect("no gateway").gateway, None);
        assert!(parse_link("[]", route).expect_err("no eth0").contains("no eth0"));
        let v6only = r#"[{"ifname":"eth0","address":"02:42:ac:14:00:02","addr_info":[{"family":"inet6"}]}]"#;
        assert!(parse_link(v6only, route).expect_err("no v4").contains("IPv4"));
    }

    #[test]
    fn runner_mac_differs_and_stays_local_unicast() {
        let vm = MacAddr::parse("02:42:ac:14:00:02").expect("mac");
        let runner = runner_mac(vm);
        assert_ne!(runner, vm);
        assert_eq!(runner.0[0] & 0x03, 0x02, "locally administered, unicast");
        assert_eq!(runner.0[1..], vm.0[1..]);
    }

    #[test]
    fn frames_carry_the_length_first() {
        assert_eq!(keys_frame("ssh-ed25519 AAAA x\n"), b"19\nssh-ed25519 AAAA x\n".to_vec());
        assert_eq!(keys_frame(""), b"0\n".to_vec());
    }

    #[test]
    fn config_round_trip_and_accelerators() {
        let c = RunnerConfig {
            hostname: "vm0".into(),
            cpus: 1,
            memory_mib: 512,
            disk_bytes: 1 << 30,
            accel: "tcg".into(),
            boot_deadline_secs: 60,
        };
        let back: RunnerConfig = serde_json::from_str(&serde_json::to_string(&c).expect("json")).expect("parse");
        assert_eq!(back, c);
        // A runner container made before the boot deadline existed keeps working.
        let old: RunnerConfig =
            serde_json::from_str(r#"{"hostname":"vm0","cpus":1,"memory_mib":512,"disk_bytes":1,"accel":"tcg"}"#)
                .expect("an older configuration");
        assert_eq!(old.boot_deadline_secs, DEFAULT_BOOT_DEADLINE_SECS);
        assert_eq!(c.accel(), Ok(Accel::Tcg));
        let bad = RunnerConfig { accel: "xen".into(), ..c };
        assert!(bad.accel().is_err());
    }
}
