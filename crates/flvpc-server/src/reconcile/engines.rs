//! The engines the reconciler can act through, by placement (host, engine kind).
//!
//! Every machine record names its placement; the reconciler looks the engine up here and never
//! assumes there is only one. The local host's container engine, its microVM engine and every
//! added host's engine are entries, not special cases. Hosts come and go while flvpc runs
//! (`flvpc host add`/`remove`), so the map is shared by every clone of the registry and changed in
//! place: the reconciler, the usage sampler and the doors all see the same engines.

use flvpc_host::Engine;
use flvpc_model::{EngineKind, HostName, Placement};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the microVM engine needs from the host (`flvpc serve --vm-dir`): registered only when
/// the VM artifacts and the runner image are there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSetup {
    /// The VM artifacts (kernel, initrd, base image): `flvpc image build debian-12-vm`.
    pub artifacts_dir: PathBuf,
    /// The runner program mounted into runner containers (the flvpc binary itself).
    pub runner_program: PathBuf,
    /// Its arguments before the runner configuration (`vm-runner`).
    pub runner_args: Vec<String>,
}

/// How long the accelerator probe may boot a kernel under KVM before TCG is chosen.
const PROBE_DEADLINE: Duration = Duration::from_secs(20);

/// How to make microVMs available, for error messages (admission and the log at start).
pub const MICROVM_HOWTO: &str = "build the VM artifacts and the runner image with `flvpc image build debian-12-vm` \
     and `flvpc image build vm-runner`, then restart flvpc";

/// Whether microVMs can be made on this server, and with which accelerator: for `/healthz`,
/// the capacity view and the log at start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MicroVmStatus {
    /// Whether the microVM engine is registered.
    pub available: bool,
    /// `kvm` or `tcg`, when available (probed once at start by booting a kernel).
    pub accelerator: Option<String>,
    /// What the probe found, or why microVMs are not available and how to make them so.
    pub detail: String,
}

impl MicroVmStatus {
    fn unavailable(why: String) -> Self {
        Self { available: false, accelerator: None, detail: why }
    }
}

type Map = BTreeMap<Placement, Arc<dyn Engine>>;

/// Placement → engine handle. Cheap to clone; clones share one map.
#[derive(Clone, Default)]
pub struct Engines {
    by_placement: Arc<RwLock<Map>>,
}

impl Engines {
    /// No engine yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        self.by_placement.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.by_placement.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The registry with `engine` acting for the machines placed at `placement` (replacing any
    /// engine registered there before).
    pub fn with(self, placement: Placement, engine: Arc<dyn Engine>) -> Self {
        self.insert(placement, engine);
        self
    }

    /// Registers `engine` for `placement` in every clone of this registry (replacing any before).
    pub fn insert(&self, placement: Placement, engine: Arc<dyn Engine>) {
        self.write().insert(placement, engine);
    }

    /// Forgets every engine of `host` (a host removed); its machines get `missing`'s message.
    pub fn remove_host(&self, host: &HostName) {
        self.write().retain(|placement, _| &placement.host != host);
    }

    /// The hosts that have at least one engine, in order.
    pub fn hosts(&self) -> Vec<HostName> {
        let mut hosts: Vec<HostName> = self.read().keys().map(|p| p.host.clone()).collect();
        hosts.dedup();
        hosts
    }

    /// The registry with the microVM engine of `host` added, if `setup`'s artifacts and the
    /// runner image are there; the accelerator is probed by booting the kernel (KVM if that works,
    /// TCG otherwise). Otherwise the registry unchanged, and the status says why. Its namespace
    /// networks (shared with containers) come from `network_pool`.
    pub async fn with_microvm(
        self,
        host: HostName,
        instance: &str,
        setup: &VmSetup,
        network_pool: flvpc_host::subnets::AddressPool,
    ) -> (Self, MicroVmStatus) {
        use flvpc_host::vm::{probe_accel, Artifacts, MicroVmConfig, MicroVmEngine, QEMU_SYSTEM};
        let Some(artifacts) = Artifacts::current(&setup.artifacts_dir) else {
            let why = format!("no current VM artifacts in {}: {MICROVM_HOWTO}", setup.artifacts_dir.display());
            return (self, MicroVmStatus::unavailable(why));
        };
        let docker = match flvpc_host::DockerEngine::connect().await {
            Ok(d) => d.for_instance(instance).with_network_pool(network_pool),
            Err(e) => return (self, MicroVmStatus::unavailable(e.to_string())),
        };
        match docker.image_exists(flvpc_host::image::VM_RUNNER_IMAGE).await {
            Ok(true) => {}
            Ok(false) => {
                let why =
                    format!("the runner image {} is missing: {MICROVM_HOWTO}", flvpc_host::image::VM_RUNNER_IMAGE);
                return (self, MicroVmStatus::unavailable(why));
            }
            Err(e) => return (self, MicroVmStatus::unavailable(e.to_string())),
        }
        let probe_dir = std::env::temp_dir();
        let probe = probe_accel(std::path::Path::new(QEMU_SYSTEM), &artifacts.kernel, &probe_dir, PROBE_DEADLINE).await;
        let mut config = MicroVmConfig::new(&setup.runner_program, &setup.artifacts_dir, probe.accel);
        config.runner_args = setup.runner_args.clone();
        let engine: Arc<dyn Engine> = Arc::new(MicroVmEngine::new(docker, config));
        let status =
            MicroVmStatus { available: true, accelerator: Some(probe.accel.name().to_owned()), detail: probe.detail };
        (self.with(Placement::new(host, EngineKind::MicroVm), engine), status)
    }

    /// The engine of `placement`, if one is registered.
    pub fn get(&self, placement: &Placement) -> Option<Arc<dyn Engine>> {
        self.read().get(placement).cloned()
    }

    /// Every registered engine with its placement, in a stable order: a snapshot, so no lock is
    /// held while the caller talks to engines.
    pub fn all(&self) -> Vec<(Placement, Arc<dyn Engine>)> {
        self.read().iter().map(|(p, e)| (p.clone(), e.clone())).collect()
    }

    /// Why a machine placed at `placement` cannot be acted on: there is no such engine here.
    pub fn missing(&self, placement: &Placement) -> String {
        let known: Vec<String> = self.read().keys().map(Placement::to_string).collect();
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        let howto = if placement.engine == EngineKind::MicroVm { format!("; {MICROVM_HOWTO}") } else { String::new() };
        format!(
            "no {} engine on host {} (this server has: {known}); the machine is left as it is until that engine \
             is available{howto}",
            placement.engine, placement.host
        )
    }
}

impl fmt::Debug for Engines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.read().keys()).finish()
    }
}
