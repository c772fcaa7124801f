//! A testbed of extra Docker engines on this machine, for tests of flvpc across several hosts.
//!
//! `Testbed::start(n)` makes, for this test process, a host bridge `fvbr<pid>` with an address
//! `10.215.<k>.1/24` (k chosen from the pid, checked free against `ip -o addr`), `n` network
//! namespaces `fvtb<pid>-<i>` joined to it by veth pairs, and in each an extra dockerd started
//! with `nsenter --net=/run/netns/<ns> -- dockerd …` (not `ip netns exec`, which remounts /sys
//! and hides the cgroup v1 mounts) with its own data root, exec root, socket, pidfile, cgroup
//! parent, bridge address, address pool and config file (its own engine ID), on the storage
//! driver the main engine uses. Engine `i` listens on `10.215.<k>.<10+i>`: each engine is a
//! "host" with an address of its own.
//!
//! Cleanup (explicit [`Testbed::cleanup`], or `Drop` when a test panicked) removes every
//! container and namespace network, makes each engine leave its swarm, stops each dockerd by
//! its PID (SIGTERM, SIGKILL after a deadline), unmounts and removes its roots, removes the
//! cgroup directories it and its containers left, and deletes the namespaces, veths and the
//! bridge. Every program is spawned with an argument list, never through a shell.
//!
//! Shared by `crates/flvpc-host/tests` and `crates/flvpc/tests` (through `#[path]`): it uses
//! only std, tokio and flvpc-host's public API.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flvpc_host::DockerEngine;

/// How long an engine may take to answer after it was started.
const ENGINE_UP: Duration = Duration::from_secs(60);
/// How long an engine may take to stop on SIGTERM (it stops its containers first) before SIGKILL.
const ENGINE_DOWN: Duration = Duration::from_secs(30);
/// The private /16 the testbed's host bridges are cut from (a /24 per testbed).
const BRIDGE_NET: [u8; 2] = [10, 215];
/// Testbeds made by this process so far: two tests of one binary run at once, in one process.
static TESTBEDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// Serialises the choice of a bridge subnet and the bridge's creation within this process.
static NETWORK_SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One extra engine: its network namespace, address, roots and process.
#[derive(Debug)]
struct TestEngine {
    netns: String,
    veth: String,
    addr: Ipv4Addr,
    /// Under /run (short: the exec root holds containerd's socket, whose path is limited).
    exec_root: PathBuf,
    /// Under /var/lib (on disk: images and containers live here).
    data_root: PathBuf,
    socket: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    config: PathBuf,
    cgroup_parent: String,
    /// More dockerd arguments, from the next start on ([`Testbed::set_engine_args`]).
    extra_args: Vec<String>,
    process: Option<Child>,
}

/// Where a testbed engine is: its socket, and the address other engines reach it at.
#[derive(Debug, Clone)]
pub struct EngineAt {
    /// The engine's API socket (on this machine).
    pub socket: PathBuf,
    /// The engine's address on the testbed's bridge.
    pub addr: Ipv4Addr,
}

/// Extra Docker engines in network namespaces of their own (see the module's documentation).
#[derive(Debug)]
pub struct Testbed {
    tag: String,
    bridge: String,
    bridge_addr: Ipv4Addr,
    storage_driver: String,
    engines: Vec<TestEngine>,
    cleaned: bool,
}

impl Testbed {
    /// Makes the bridge, `n` namespaces and an engine in each, and waits until every engine
    /// answers. Panics with what failed (and the engine's log) otherwise, after cleaning up.
    pub async fn start(n: usize) -> Testbed {
        assert!((1..=20).contains(&n), "a testbed holds 1 to 20 engines");
        let pid = std::process::id();
        let nth = TESTBEDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(nth < 26, "a test process makes at most 26 testbeds");
        // Names of at most 15 characters (interface names): fvtb + pid (≤ 7) + letter + -i.
        let letter = char::from(b'a' + nth as u8);
        let tag = format!("fvtb{pid}{letter}");
        let storage_driver = main_storage_driver();
        let setup = NETWORK_SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let k = free_bridge_subnet(pid + nth * 37);
        let bridge_addr = Ipv4Addr::new(BRIDGE_NET[0], BRIDGE_NET[1], k, 1);
        let mut bed = Testbed {
            bridge: format!("fvbr{pid}{letter}"),
            bridge_addr,
            storage_driver,
            engines: Vec::new(),
            cleaned: false,
            tag: tag.clone(),
        };
        for i in 0..n {
            let name = format!("{tag}-{i}");
            let exec_root = PathBuf::from(format!("/run/{name}"));
            let data_root = PathBuf::from(format!("/var/lib/{name}"));
            bed.engines.push(TestEngine {
                veth: format!("fvh{pid}{letter}-{i}"),
                addr: Ipv4Addr::new(BRIDGE_NET[0], BRIDGE_NET[1], k, 10 + i as u8),
                socket: exec_root.join("docker.sock"),
                pidfile: exec_root.join("docker.pid"),
                log: data_root.join("dockerd.log"),
                config: data_root.join("daemon.json"),
                cgroup_parent: name.clone(),
                netns: name,
                exec_root,
                data_root,
                extra_args: Vec::new(),
                process: None,
            });
        }
        let made = bed.make_network();
        drop(setup);
        if let Err(e) = made {
            bed.cleanup_now();
            panic!("testbed: {e}");
        }
        for i in 0..n {
            if let Err(e) = bed.spawn_engine(i) {
                bed.cleanup_now();
                panic!("testbed: {e}");
            }
        }
        for i in 0..n {
            if let Err(e) = bed.wait_engine(i).await {
                let log = bed.log_tail(i);
                bed.cleanup_now();
                panic!("testbed: {e}\n--- dockerd log ---\n{log}");
            }
        }
        bed
    }

    /// The prefix of every name the testbed gives (namespaces `<tag>-<i>`, roots
    /// `/run/<tag>-<i>` and `/var/lib/<tag>-<i>`, cgroup parents `<tag>-<i>`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The bridge's name (`fvbr…`) and the veths' (`fvh…`): what must be gone after cleanup.
    pub fn link_names(&self) -> Vec<String> {
        let mut names = vec![self.bridge.clone()];
        names.extend(self.engines.iter().map(|e| e.veth.clone()));
        names
    }

    /// More arguments for engine `i`'s dockerd (e.g. a TLS listener), used from its next start
    /// ([`Self::stop_engine`] then [`Self::start_engine`]).
    pub fn set_engine_args(&mut self, i: usize, args: Vec<String>) {
        self.engines[i].extra_args = args;
    }

    /// How many engines there are.
    pub fn len(&self) -> usize {
        self.engines.len()
    }

    /// Engine `i`'s socket and address.
    pub fn engine(&self, i: usize) -> EngineAt {
        let e = &self.engines[i];
        EngineAt { socket: e.socket.clone(), addr: e.addr }
    }

    /// A connection to engine `i` (no flvpc instance set).
    pub async fn connect(&self, i: usize) -> DockerEngine {
        let socket = self.engines[i].socket.to_string_lossy().into_owned();
        match DockerEngine::connect_at(&socket).await {
            Ok(engine) => engine,
            Err(e) => panic!("testbed engine {i}: {e}"),
        }
    }

    /// The address of the host's end of the testbed's bridge.
    pub fn bridge_addr(&self) -> Ipv4Addr {
        self.bridge_addr
    }

    /// Stops engine `i` (SIGTERM, SIGKILL after a deadline) and waits until it is gone. Its
    /// roots stay: [`Self::start_engine`] starts it again with its images, containers and swarm.
    pub async fn stop_engine(&mut self, i: usize) {
        if let Some(mut child) = self.engines[i].process.take() {
            let stopped = tokio::task::spawn_blocking(move || stop_process(&mut child)).await;
            if let Ok(Err(e)) = stopped {
                panic!("testbed: stopping engine {i}: {e}");
            }
        }
    }

    /// Starts engine `i` again with the same roots (containers with a restart policy come back)
    /// and waits until it answers.
    pub async fn start_engine(&mut self, i: usize) {
        if self.engines[i].process.is_some() {
            return;
        }
        if let Err(e) = self.spawn_engine(i) {
            panic!("testbed: {e}");
        }
        if let Err(e) = self.wait_engine(i).await {
            panic!("testbed: {e}\n--- dockerd log ---\n{}", self.log_tail(i));
        }
    }

    /// Copies `image` from the main engine (`/var/run/docker.sock`) to engine `i` with
    /// [`flvpc_host::copy_image`] (a no-op when it is there already).
    pub async fn load_image(&self, i: usize, image: &str) -> flvpc_host::Copied {
        let main = DockerEngine::connect().await.unwrap_or_else(|e| panic!("the main engine: {e}"));
        let target = self.connect(i).await;
        flvpc_host::copy_image(&main, &target, image)
            .await
            .unwrap_or_else(|e| panic!("copying {image} to testbed engine {i}: {e}"))
    }

    /// Removes everything the testbed made (see the module's documentation). Also run by `Drop`.
    pub async fn cleanup(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        // The work is synchronous (programs and sleeps): on a blocking thread, by a testbed that
        // takes over this one's parts and cleans up when dropped there.
        let parts = Testbed {
            tag: self.tag.clone(),
            bridge: self.bridge.clone(),
            bridge_addr: self.bridge_addr,
            storage_driver: self.storage_driver.clone(),
            engines: std::mem::take(&mut self.engines),
            cleaned: false,
        };
        let _ = tokio::task::spawn_blocking(move || drop(parts)).await;
    }

    fn make_network(&self) -> Result<(), String> {
        let bridge_cidr = format!("{}/24", self.bridge_addr);
        run("ip", &["link", "add", &self.bridge, "type", "bridge"])?;
        run("ip", &["addr", "add", &bridge_cidr, "dev", &self.bridge])?;
        run("ip", &["link", "set", &self.bridge, "up"])?;
        // Docker sets the FORWARD policy to DROP and bridged frames go through it
        // (br_netfilter): let the engines' hosts talk to each other across the bridge.
        run("iptables", &["-I", "FORWARD", "1", "-i", &self.bridge, "-o", &self.bridge, "-j", "ACCEPT"])?;
        for e in &self.engines {
            let cidr = format!("{}/24", e.addr);
            run("ip", &["netns", "add", &e.netns])?;
            // The namespace's end is made inside it as eth0: no name clash with the host's.
            run("ip", &["link", "add", &e.veth, "type", "veth", "peer", "name", "eth0", "netns", &e.netns])?;
            run("ip", &["link", "set", &e.veth, "master", &self.bridge, "up"])?;
            run("ip", &["-n", &e.netns, "addr", "add", &cidr, "dev", "eth0"])?;
            run("ip", &["-n", &e.netns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &e.netns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn spawn_engine(&mut self, i: usize) -> Result<(), String> {
        let storage_driver = self.storage_driver.clone();
        let e = &mut self.engines[i];
        for dir in [&e.exec_root, &e.data_root] {
            std::fs::create_dir_all(dir).map_err(|err| format!("cannot make {}: {err}", dir.display()))?;
        }
        // Its own key file: engines sharing the main engine's would share its engine ID, and a
        // swarm refuses two nodes with one ID.
        let key = e.data_root.join("key.json");
        let config = format!("{{\"deprecated-key-path\": {:?}}}\n", key.to_string_lossy());
        std::fs::write(&e.config, config).map_err(|err| format!("cannot write {}: {err}", e.config.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&e.log)
            .map_err(|err| format!("cannot open {}: {err}", e.log.display()))?;
        let log_err = log.try_clone().map_err(|err| format!("cannot open {}: {err}", e.log.display()))?;
        let netns = format!("--net=/run/netns/{}", e.netns);
        let host = format!("unix://{}", e.socket.display());
        // Each engine's own addresses, inside its namespace: no clash with the main engine's,
        // and none with flvpc's namespace pool (10.213.0.0/16) or swarm pool (10.214.0.0/16).
        let bip = format!("10.216.{i}.1/24");
        let pool = "base=10.217.0.0/16,size=24";
        let child = Command::new("nsenter")
            .args([netns.as_str(), "--", "dockerd"])
            .arg("--data-root")
            .arg(&e.data_root)
            .arg("--exec-root")
            .arg(&e.exec_root)
            .args(["-H", host.as_str()])
            .arg("--pidfile")
            .arg(&e.pidfile)
            .arg("--config-file")
            .arg(&e.config)
            .args(["--cgroup-parent", e.cgroup_parent.as_str()])
            .args(["--bip", bip.as_str()])
            .args(["--default-address-pool", pool])
            .args(["--storage-driver", storage_driver.as_str()])
            .args(["--log-level", "warn"])
            .args(&e.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|err| format!("cannot start dockerd in {}: {err}", e.netns))?;
        e.process = Some(child);
        Ok(())
    }

    async fn wait_engine(&mut self, i: usize) -> Result<(), String> {
        let socket = self.engines[i].socket.to_string_lossy().into_owned();
        let deadline = Instant::now() + ENGINE_UP;
        let mut last = String::from("not tried");
        while Instant::now() < deadline {
            if let Some(child) = self.engines[i].process.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.engines[i].process = None;
                    return Err(format!("dockerd of engine {i} exited with {status}"));
                }
            }
            match DockerEngine::connect_at(&socket).await {
                Ok(engine) => match engine.ping().await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("engine {i} did not answer within {ENGINE_UP:?}: {last}"))
    }

    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.engines[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The whole cleanup, synchronous (callable from `Drop`). Every step is tried whatever the
    /// earlier ones did; what failed is printed.
    fn cleanup_now(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        let mut machine_cgroups = Vec::new();
        // Containers and networks first, then the swarm (ENVIRONMENT.md's order).
        for e in &self.engines {
            if e.process.is_none() {
                continue;
            }
            let host = format!("unix://{}", e.socket.display());
            let ids = output("docker", &["-H", &host, "ps", "-aq"]).unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["-H", host.as_str(), "inspect", "--format", "{{.HostConfig.CgroupParent}}"];
                args.extend(&ids);
                machine_cgroups.extend(
                    output("docker", &args).unwrap_or_default().lines().filter(|l| !l.is_empty()).map(str::to_owned),
                );
                let mut args = vec!["-H", host.as_str(), "rm", "-f", "-v"];
                args.extend(&ids);
                report(run("docker", &args));
            }
        }
        for e in &self.engines {
            if e.process.is_none() {
                continue;
            }
            let host = format!("unix://{}", e.socket.display());
            for scope in ["local", "swarm"] {
                let scope_filter = format!("scope={scope}");
                let list = ["-H", &host, "network", "ls", "-q", "--filter", "label=flvpc.namespace", "--filter"];
                let networks = output("docker", &[&list[..], &[scope_filter.as_str()]].concat()).unwrap_or_default();
                for network in networks.split_whitespace() {
                    let removed = run("docker", &["-H", &host, "network", "rm", network]);
                    // A swarm's network is the manager's to remove: a worker's refusal is expected.
                    if scope == "local" {
                        report(removed);
                    }
                }
            }
        }
        for e in &self.engines {
            if e.process.is_some() {
                let host = format!("unix://{}", e.socket.display());
                // Not in a swarm is fine: its error is not worth a line.
                let _ = output("docker", &["-H", &host, "swarm", "leave", "--force"]);
            }
        }
        for e in &mut self.engines {
            if let Some(mut child) = e.process.take() {
                report(stop_process(&mut child));
            }
        }
        for e in &self.engines {
            for root in [&e.exec_root, &e.data_root] {
                unmount_under(root);
                if root.exists() {
                    report(std::fs::remove_dir_all(root).map_err(|err| format!("remove {}: {err}", root.display())));
                }
            }
            remove_cgroups(&e.cgroup_parent);
        }
        for parent in &machine_cgroups {
            remove_cgroups(parent);
        }
        for e in &self.engines {
            if Path::new("/run/netns").join(&e.netns).exists() {
                report(run("ip", &["netns", "del", &e.netns]));
            }
            // Gone with its peer's namespace, normally.
            if Path::new("/sys/class/net").join(&e.veth).exists() {
                report(run("ip", &["link", "del", &e.veth]));
            }
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            report(run("ip", &["link", "del", &self.bridge]));
        }
        // Missing when the start failed before it was added: nothing to report then.
        let rule = ["FORWARD", "-i", self.bridge.as_str(), "-o", self.bridge.as_str(), "-j", "ACCEPT"];
        if run("iptables", &[&["-C"], &rule[..]].concat()).is_ok() {
            report(run("iptables", &[&["-D"], &rule[..]].concat()));
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.cleanup_now();
    }
}

/// The storage driver of the main engine (`docker info`), or overlay2 when it cannot be asked.
fn main_storage_driver() -> String {
    output("docker", &["info", "--format", "{{.Driver}}"])
        .ok()
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .unwrap_or_else(|| "overlay2".to_owned())
}

/// A third octet for a bridge: from `seed` (the pid), the next one no interface uses.
fn free_bridge_subnet(seed: u32) -> u8 {
    let addrs = output("ip", &["-o", "-4", "addr"]).unwrap_or_default();
    let start = seed % 250;
    (0..250)
        .map(|step| ((start + step) % 250 + 1) as u8)
        .find(|k| !addrs.contains(&format!(" {}.{}.{k}.", BRIDGE_NET[0], BRIDGE_NET[1])))
        .unwrap_or_else(|| panic!("testbed: every 10.215.x.0/24 is taken on this machine"))
}

fn stop_process(child: &mut Child) -> Result<(), String> {
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    let pid = child.id().to_string();
    let _ = run("kill", &["-TERM", &pid]);
    let deadline = Instant::now() + ENGINE_DOWN;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    child.wait().map(|_| ()).map_err(|e| format!("waiting for dockerd {pid}: {e}"))
}

/// Unmounts (lazily) every mount at or below `root`, deepest first: overlay layers and shm
/// mounts a killed engine left.
fn unmount_under(root: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let prefix = root.to_string_lossy().into_owned();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .map(str::to_owned)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        report(run("umount", &["-l", &point]));
    }
}

/// Removes `/sys/fs/cgroup/<each hierarchy>/<parent>` and what is below it (empty cgroups only:
/// `rmdir`, deepest first). `parent` is a path below the hierarchy's root.
pub fn remove_cgroups(parent: &str) {
    let parent = parent.trim_start_matches('/');
    if parent.is_empty() || parent.split('/').any(|p| p == ".." || p.is_empty()) {
        return;
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for hierarchy in hierarchies.flatten() {
        let dir = hierarchy.path().join(parent);
        if dir.is_dir() {
            remove_cgroup_tree(&dir);
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&child.path());
            }
        }
    }
    // A cgroup is removed with rmdir (its files are the kernel's); retried briefly while the
    // last processes of a stopped container are reaped.
    for _ in 0..20 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("testbed: cannot remove cgroup {}", dir.display());
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    output(program, args).map(|_| ())
}

fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn report(result: Result<(), String>) {
    if let Err(e) = result {
        eprintln!("testbed cleanup: {e}");
    }
}
