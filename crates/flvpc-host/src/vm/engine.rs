//! [`MicroVmEngine`]: microVM machines behind the same [`Engine`] trait as containers.
//!
//! Each VM lives in a *runner container* (Ignite's design), created by the Docker engine's own
//! code with the machine's usual name, labels (namespace, machine, instance, isolation),
//! namespace network and alias, published ports, restart policy, cgroup parent, CPU shares and
//! PID limit, and changed only where a VM differs:
//!
//! - the image is the runner image ([`crate::image::VM_RUNNER_IMAGE`]: QEMU, no init) and
//!   the entry point the runner program, bind-mounted read-only from the host (see
//!   [`super::runner`]), with the VM's size as one JSON argument;
//! - the memory limit is the VM's memory plus [`QEMU_OVERHEAD_MIB`] for QEMU itself;
//! - devices `/dev/net/tun` (and `/dev/kvm` only when the probe said KVM works), capability
//!   `NET_ADMIN` (the bridge and tap in the container's own network namespace), nothing
//!   else: never privileged, no Docker socket, and no host path but the read-only runner
//!   program and VM artifacts (not even the cgroup binds a container machine's systemd needs);
//! - an anonymous volume `/vm` holds the VM's disk overlay, so removing the machine (which
//!   removes anonymous volumes) removes the disk;
//! - `docker stop` sends SIGTERM, on which the runner powers the guest down over QMP; the
//!   stop timeout is at least [`MicroVmConfig::min_stop_timeout`] (a guest shuts down more
//!   slowly than a container's systemd).
//!
//! Runner containers carry [`LABEL_ENGINE`]` = microvm`; this engine lists and touches no
//! other container. Start, stop, restart, remove, networks and events are the Docker
//! engine's, unchanged.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, DeviceMapping};
use flvpc_model::{MachineKey, NamespaceName};

use super::artifacts::Artifacts;
use super::boot::{BootState, BOOT_FILE, BOOT_FILE_MAX_BYTES};
use super::qemu::Accel;
use super::runner::{RunnerConfig, ARTIFACTS_MOUNT, KEYS_FILE, RUNNER_MOUNT, STATE_DIR};
use crate::docker::DockerEngine;
use crate::engine::{
    container_name, Engine, EngineError, MachineDetails, MachineEvents, MachineInfo, MachineSpec, MachineState,
    DEFAULT_IMAGE,
};
use futures::StreamExt;

/// Label marking a runner container, value [`ENGINE_MICROVM`].
pub const LABEL_ENGINE: &str = "flvpc.engine";
/// The value of [`LABEL_ENGINE`] on runner containers.
pub const ENGINE_MICROVM: &str = "microvm";
/// Label with the image the VM boots (the spec's image; its artifacts are the VM's).
pub const LABEL_VM_IMAGE: &str = "flvpc.vm.image";
/// Label with the accelerator the VM was created for (`kvm` or `tcg`).
pub const LABEL_VM_ACCEL: &str = "flvpc.vm.accel";
/// Label on runners that report their boot in [`BOOT_FILE`] (value `1`); runners made before
/// do not, and are taken as booted.
pub const LABEL_VM_BOOT_FILE: &str = "flvpc.vm.boot-file";

/// How often a booting VM's boot file is read while the engine's events are followed.
const BOOT_POLL: Duration = Duration::from_secs(1);

/// Memory the runner container gets beyond the VM's own: QEMU's code and devices (about
/// 40 MiB resident), its translated-code cache under TCG ([`super::runner::TCG_CACHE_MIB`]),
/// the runner, and the short-lived `qemu-img`/`mkfs` at start. Measured by `tests/vm_engine.rs`.
pub const QEMU_OVERHEAD_MIB: u64 = 192;

/// The least memory a VM gets: Debian's kernel, systemd and sshd do not boot in less.
pub const VM_MIN_MEMORY_MB: u64 = 256;

/// How the engine makes runner containers.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroVmConfig {
    /// The runner image (normally [`crate::image::VM_RUNNER_IMAGE`]).
    pub runner_image: String,
    /// The runner program on the host, mounted read-only: the flvpc binary (with
    /// `runner_args = ["vm-runner"]`) or `flvpc-vm-runner`.
    pub runner_program: PathBuf,
    /// Arguments before the runner configuration.
    pub runner_args: Vec<String>,
    /// The VM artifacts (kernel, initrd, base image), mounted read-only.
    pub artifacts_dir: PathBuf,
    /// The accelerator the probe found.
    pub accel: Accel,
    /// The disk size in bytes of a new VM whose spec names none (at least the base image's).
    pub disk_bytes: u64,
    /// The least time a VM gets to shut down when stopped or restarted.
    pub min_stop_timeout: Duration,
    /// How long a VM has from QEMU's start until its guest answers SSH; after that it is
    /// stopped and reported failed with its console's last lines.
    pub boot_deadline: Duration,
}

impl MicroVmConfig {
    /// The defaults: `flvpc vm-runner` of the binary at `flvpc`, the runner image, a 4 GiB
    /// disk, 60 s to shut down.
    pub fn new(flvpc: impl Into<PathBuf>, artifacts_dir: impl Into<PathBuf>, accel: Accel) -> Self {
        Self {
            runner_image: crate::image::VM_RUNNER_IMAGE.to_owned(),
            runner_program: flvpc.into(),
            runner_args: vec!["vm-runner".to_owned()],
            artifacts_dir: artifacts_dir.into(),
            accel,
            disk_bytes: 4 << 30,
            min_stop_timeout: Duration::from_secs(60),
            // TCG boots took 40-70 s here on a loaded 2-CPU host; KVM boots take seconds.
            boot_deadline: Duration::from_secs(match accel {
                Accel::Kvm => 120,
                Accel::Tcg => super::runner::DEFAULT_BOOT_DEADLINE_SECS,
            }),
        }
    }
}

/// The microVM engine (see the module documentation).
#[derive(Clone, Debug)]
pub struct MicroVmEngine {
    docker: DockerEngine,
    config: Arc<MicroVmConfig>,
    boots: Arc<BootWatch>,
}

/// What the engine knows of its VMs' boots (see [`super::boot`]).
#[derive(Debug, Default)]
struct BootWatch {
    /// Final boot states by runner container ID, with the runner's host PID (a restart makes
    /// a new one, and a new boot): read once per boot, not at every inspect.
    settled: Mutex<HashMap<String, (u32, BootState)>>,
    /// Machines last seen booting: looked at again every second while the engine's events
    /// are followed, so the reconciler hears when they are up or failed.
    booting: Mutex<HashSet<MachineKey>>,
}

/// Settled boot states kept at most: a runner removed outside flvpc leaves its entry, so the
/// map is cleared when it reaches this (then each VM's boot file is read once more).
const SETTLED_MAX: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MicroVmEngine {
    /// An engine making runner containers through `docker` (which must act for an instance,
    /// see [`DockerEngine::for_instance`]).
    pub fn new(docker: DockerEngine, config: MicroVmConfig) -> Self {
        Self { docker, config: Arc::new(config), boots: Arc::default() }
    }

    /// Its configuration.
    pub fn config(&self) -> &MicroVmConfig {
        &self.config
    }

    fn artifacts(&self) -> Result<Artifacts, EngineError> {
        Artifacts::current(&self.config.artifacts_dir).ok_or_else(|| {
            EngineError::InvalidSpec(format!(
                "no current VM artifacts in {}: build them (kernel, initrd and base image of debian-12) before \
                 creating microVMs",
                self.config.artifacts_dir.display()
            ))
        })
    }

    /// `inspected` if it is a runner container, with the VM's memory (not the container's).
    fn vm_details(mut details: MachineDetails) -> Result<MachineDetails, EngineError> {
        if !is_runner(&details.info) {
            return Err(EngineError::NotOurs { object: details.info.container });
        }
        details.memory_mb = details.memory_mb.saturating_sub(QEMU_OVERHEAD_MIB);
        if let Some(image) = details.info.labels.get(LABEL_VM_IMAGE) {
            details.info.image = image.clone();
        }
        Ok(details)
    }

    /// A running runner's details told as the VM's: starting while the guest boots, failed
    /// (with why) when it did not boot.
    async fn with_boot_state(&self, mut details: MachineDetails) -> MachineDetails {
        if details.info.state != MachineState::Running {
            return details;
        }
        let key = details.info.key.clone();
        match self.boot_state(&details).await {
            BootState::Ready => {
                lock(&self.boots.booting).remove(&key);
            }
            BootState::Booting => {
                details.info.state = MachineState::Starting;
                lock(&self.boots.booting).insert(key);
            }
            BootState::Failed(why) => {
                details.info.state = MachineState::Failed;
                details.error = Some(why);
                lock(&self.boots.booting).remove(&key);
            }
        }
        details
    }

    /// The boot state of a running runner: remembered once final, else read from its volume.
    async fn boot_state(&self, details: &MachineDetails) -> BootState {
        // Runners made before the boot file existed never write it: their VMs are up.
        if !details.info.labels.contains_key(LABEL_VM_BOOT_FILE) {
            return BootState::Ready;
        }
        let (id, pid) = (details.info.id.clone(), details.pid.unwrap_or(0));
        if let Some((seen_pid, state)) = lock(&self.boots.settled).get(&id) {
            if *seen_pid == pid {
                return state.clone();
            }
        }
        let path = format!("{STATE_DIR}/{BOOT_FILE}");
        let read = self.docker.read_small_file_with_mtime(&id, &details.info.key, &path, BOOT_FILE_MAX_BYTES).await;
        let state = match read {
            // A file older than this start is the previous boot's: this one has not said yet.
            Ok(Some((text, mtime))) if details.started_at.is_none_or(|s| mtime >= s) => {
                BootState::parse(&String::from_utf8_lossy(&text)).unwrap_or(BootState::Booting)
            }
            Ok(_) => BootState::Booting,
            Err(err) => {
                tracing::debug!("cannot read the boot state of {}: {err}", details.info.key);
                BootState::Booting
            }
        };
        if state.is_final() {
            let mut settled = lock(&self.boots.settled);
            if settled.len() >= SETTLED_MAX {
                settled.clear();
            }
            settled.insert(id, (pid, state.clone()));
        }
        state
    }

    /// Looks at the machines seen booting every second and sends those that are up or
    /// failed (or gone) to `tx`, until its receiver is dropped.
    async fn watch_boots(self, tx: tokio::sync::mpsc::Sender<MachineKey>) {
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(BOOT_POLL) => {}
            }
            let booting: Vec<MachineKey> = lock(&self.boots.booting).iter().cloned().collect();
            for key in booting {
                let still = matches!(
                    self.inspect_machine(&key).await,
                    Ok(Some(ref d)) if d.info.state == MachineState::Starting
                );
                if !still {
                    lock(&self.boots.booting).remove(&key);
                    if tx.send(key).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn upload_keys(&self, id: &str, key: &MachineKey, content: &str) -> Result<(), EngineError> {
        let file = format!("{STATE_DIR}/{KEYS_FILE}");
        self.docker.upload_keys_archive(id, key, STATE_DIR, &file, keys_tar(content)).await
    }
}

/// The runner container's definition changes (see the module documentation).
fn adjust_body(c: &MicroVmConfig, spec: &MachineSpec, runner: &RunnerConfig, body: &mut ContainerCreateBody) {
    body.image = Some(c.runner_image.clone());
    let mut entrypoint = vec![RUNNER_MOUNT.to_owned()];
    entrypoint.extend(c.runner_args.iter().cloned());
    entrypoint.push(serde_json::to_string(runner).unwrap_or_default());
    body.entrypoint = Some(entrypoint);
    body.cmd = None;
    body.env = None;
    body.stop_signal = Some("SIGTERM".to_owned());
    body.volumes = Some(vec![STATE_DIR.to_owned()]);
    let labels = body.labels.get_or_insert_with(HashMap::new);
    labels.insert(LABEL_ENGINE.to_owned(), ENGINE_MICROVM.to_owned());
    labels.insert(LABEL_VM_IMAGE.to_owned(), spec.image.clone());
    labels.insert(LABEL_VM_ACCEL.to_owned(), c.accel.name().to_owned());
    labels.insert(LABEL_VM_BOOT_FILE.to_owned(), "1".to_owned());
    let host = body.host_config.get_or_insert_with(Default::default);
    let memory = i64::try_from((spec.memory_mb + QEMU_OVERHEAD_MIB).saturating_mul(1 << 20)).unwrap_or(i64::MAX);
    host.memory = Some(memory);
    host.memory_swap = Some(memory);
    let mut devices = vec!["/dev/net/tun"];
    if c.accel == Accel::Kvm {
        devices.push("/dev/kvm");
    }
    host.devices = Some(
        devices
            .into_iter()
            .map(|d| DeviceMapping {
                path_on_host: Some(d.to_owned()),
                path_in_container: Some(d.to_owned()),
                cgroup_permissions: Some("rwm".to_owned()),
            })
            .collect(),
    );
    host.cap_add = Some(vec!["NET_ADMIN".to_owned()]);
    host.privileged = Some(false);
    // Only the runner program and the artifacts, read-only; the runner needs no cgroup binds.
    host.binds = Some(vec![
        format!("{}:{RUNNER_MOUNT}:ro", c.runner_program.display()),
        format!("{}:{ARTIFACTS_MOUNT}:ro", c.artifacts_dir.display()),
    ]);
    host.tmpfs = Some(HashMap::from([("/tmp".to_owned(), "rw,nosuid,nodev,mode=1777".to_owned())]));
}

fn is_runner(info: &MachineInfo) -> bool {
    info.labels.get(LABEL_ENGINE).map(String::as_str) == Some(ENGINE_MICROVM)
}

/// The archive the engine extracts into the runner's `/vm`: `authorized_keys`, 0600, root's.
/// The runner reads it at start (seed disk) and while the VM runs (keys channel).
fn keys_tar(content: &str) -> std::io::Result<Vec<u8>> {
    let mtime = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut builder = tar::Builder::new(Vec::new());
    crate::docker::append_private_file(&mut builder, KEYS_FILE, content, mtime)?;
    builder.into_inner()
}

#[async_trait]
impl Engine for MicroVmEngine {
    async fn ping(&self) -> Result<(), EngineError> {
        self.docker.ping().await
    }

    /// VMs boot the debian-12 artifacts: that image exists when they and the runner image do.
    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        Ok(image == DEFAULT_IMAGE
            && Artifacts::current(&self.config.artifacts_dir).is_some()
            && self.docker.image_exists(&self.config.runner_image).await?)
    }

    async fn ensure_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        self.docker.ensure_network(namespace).await
    }

    async fn remove_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        self.docker.remove_network(namespace).await
    }

    async fn create_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        spec.validate()?;
        if spec.memory_mb < VM_MIN_MEMORY_MB {
            return Err(EngineError::InvalidSpec(format!(
                "a microVM needs at least {VM_MIN_MEMORY_MB} MiB of memory, not {}",
                spec.memory_mb
            )));
        }
        let artifacts = self.artifacts()?;
        let runner = RunnerConfig {
            hostname: spec.key.name.to_string(),
            cpus: spec.cpus,
            memory_mib: u32::try_from(spec.memory_mb)
                .map_err(|_| EngineError::InvalidSpec(format!("{} MiB is too much for a VM", spec.memory_mb)))?,
            // The spec's disk, else the default; never smaller than the base image (1 GiB, the
            // spec's least, is larger than it).
            disk_bytes: spec
                .disk_gb
                .map_or(self.config.disk_bytes, |gb| gb << 30)
                .max(artifacts.manifest.base_virtual_bytes),
            accel: self.config.accel.name().to_owned(),
            boot_deadline_secs: self.config.boot_deadline.as_secs().max(1),
        };
        self.docker.create_machine_with(spec, |body| adjust_body(&self.config, spec, &runner, body)).await
    }

    async fn start_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        self.docker.start_machine(key).await
    }

    async fn stop_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        self.docker.stop_machine(key, timeout.max(self.config.min_stop_timeout)).await
    }

    async fn restart_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        self.docker.restart_machine(key, timeout.max(self.config.min_stop_timeout)).await
    }

    async fn remove_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        self.docker.remove_machine(key).await
    }

    async fn list_machines(&self, namespace: Option<&NamespaceName>) -> Result<Vec<MachineInfo>, EngineError> {
        let mut machines = self.docker.list_machines(namespace).await?;
        machines.retain(is_runner);
        for m in &mut machines {
            if let Some(image) = m.labels.get(LABEL_VM_IMAGE) {
                m.image = image.clone();
            }
        }
        Ok(machines)
    }

    async fn inspect_machine(&self, key: &MachineKey) -> Result<Option<MachineDetails>, EngineError> {
        match self.docker.inspect_machine(key).await?.map(Self::vm_details).transpose()? {
            Some(details) => Ok(Some(self.with_boot_state(details).await)),
            None => {
                lock(&self.boots.booting).remove(key);
                Ok(None)
            }
        }
    }

    /// Docker's events, and the machines whose boot ended (up or failed): no Docker event
    /// says that.
    async fn machine_events(&self) -> Result<Option<MachineEvents>, EngineError> {
        let docker = self.docker.machine_events()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(self.clone().watch_boots(tx));
        let boots = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|key| (key, rx)) });
        Ok(Some(futures::stream::select(docker, boots).boxed()))
    }

    /// The guest's serial console: the runner's standard output (its own messages go to its
    /// standard error).
    async fn console(&self, key: &MachineKey, lines: usize) -> Result<String, EngineError> {
        self.docker.log_tail(key, lines, true, false).await
    }

    async fn write_authorized_keys(&self, key: &MachineKey, content: &str) -> Result<(), EngineError> {
        match self.inspect_machine(key).await? {
            Some(details) => self.upload_keys(&details.info.id, key, content).await,
            None => Err(EngineError::MachineNotFound { container: container_name(key) }),
        }
    }

    async fn write_authorized_keys_to(&self, inspected: &MachineDetails, content: &str) -> Result<(), EngineError> {
        if !is_runner(&inspected.info) {
            return Err(EngineError::NotOurs { object: inspected.info.container.clone() });
        }
        self.upload_keys(&inspected.info.id, &inspected.info.key, content).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flvpc_model::spec::PortMapping;
    use std::io::Read;

    fn engine_config(accel: Accel) -> MicroVmConfig {
        MicroVmConfig::new("/usr/bin/flvpc", "/var/lib/flvpc/vm", accel)
    }

    #[test]
    fn runner_container_is_the_machine_container_changed_where_a_vm_differs() {
        let key = MachineKey::parse("team1", "vm0").expect("key");
        let mut spec = MachineSpec::new(key, DEFAULT_IMAGE);
        spec.memory_mb = 512;
        spec.ports = vec![PortMapping::tcp(22, Some(2222))];
        let runner = RunnerConfig {
            hostname: "vm0".into(),
            cpus: 1,
            memory_mib: 512,
            disk_bytes: 1 << 32,
            accel: "tcg".into(),
            boot_deadline_secs: 300,
        };
        let mut body = ContainerCreateBody {
            labels: Some(HashMap::from([("flvpc.namespace".to_owned(), "team1".to_owned())])),
            cmd: Some(vec!["/sbin/init".into()]),
            host_config: Some(bollard::models::HostConfig {
                binds: Some(vec!["/sys/fs/cgroup/systemd/flvpc/m-1:/sys/fs/cgroup/systemd/flvpc/m-1:rw".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        adjust_body(&engine_config(Accel::Tcg), &spec, &runner, &mut body);
        assert_eq!(body.image.as_deref(), Some(crate::image::VM_RUNNER_IMAGE));
        let entry = body.entrypoint.clone().expect("entrypoint");
        assert_eq!(entry[..2], [RUNNER_MOUNT.to_owned(), "vm-runner".to_owned()]);
        let parsed: RunnerConfig = serde_json::from_str(&entry[2]).expect("config argument");
        assert_eq!(parsed, runner);
        assert!(body.cmd.is_none() && body.env.is_none());
        assert_eq!(body.stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(body.volumes, Some(vec![STATE_DIR.to_owned()]));
        let labels = body.labels.as_ref().expect("labels");
        assert_eq!(labels.get(LABEL_ENGINE).map(String::as_str), Some(ENGINE_MICROVM));
        assert_eq!(labels.get("flvpc.namespace").map(String::as_str), Some("team1"), "machine labels kept");
        let host = body.host_config.as_ref().expect("host config");
        assert_eq!(host.memory, Some(((512 + QEMU_OVERHEAD_MIB) << 20) as i64));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_owned()]));
        let devices: Vec<_> = host.devices.iter().flatten().filter_map(|d| d.path_on_host.clone()).collect();
        assert_eq!(devices, ["/dev/net/tun"], "no /dev/kvm under TCG");
        let binds = host.binds.clone().expect("binds");
        assert_eq!(binds, ["/usr/bin/flvpc:/flvpc/runner:ro", "/var/lib/flvpc/vm:/flvpc/artifacts:ro"]);
        assert!(binds.iter().all(|b| b.ends_with(":ro")), "no writable host path");

        adjust_body(&engine_config(Accel::Kvm), &spec, &runner, &mut body);
        let host = body.host_config.as_ref().expect("host config");
        let devices: Vec<_> = host.devices.iter().flatten().filter_map(|d| d.path_on_host.clone()).collect();
        assert_eq!(devices, ["/dev/net/tun", "/dev/kvm"]);
    }

    #[test]
    fn keys_archive_is_one_private_file() {
        let archive = keys_tar("ssh-ed25519 AAAA k\n").expect("tar");
        let mut reader = tar::Archive::new(archive.as_slice());
        let mut entries = reader.entries().expect("entries");
        let mut entry = entries.next().expect("one entry").expect("entry");
        assert_eq!(entry.path().expect("path").to_str(), Some(KEYS_FILE));
        assert_eq!(entry.header().mode().expect("mode"), 0o600);
        let mut body = String::new();
        entry.read_to_string(&mut body).expect("body");
        assert_eq!(body, "ssh-ed25519 AAAA k\n");
        drop(entry);
        assert!(entries.next().is_none());
    }
}
