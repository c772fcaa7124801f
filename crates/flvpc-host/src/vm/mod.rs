//! MicroVM machines on QEMU (issue 10): the QEMU command line ([`qemu`]; machine type q35,
//! see [`qemu::MachineType`] for why), the accelerator probe ([`probe`]), the
//! kernel/initrd/base-image artifacts built from Debian packages ([`artifacts`], with the
//! guest's fixed files in [`guest`]), per-VM disks and seeds ([`disk`]), a running VM's life
//! ([`process`]: wait until up or failed with the console's tail, graceful power-down over
//! [`qmp`]), and the engine: [`engine::MicroVmEngine`] runs each VM in a runner container
//! whose PID 1 is [`runner`].
//!
//! Invariant: QEMU and the image tools are spawned with argv lists; user data (host name,
//! SSH keys) reach the guest only as files on a read-only seed disk that a fixed script of
//! the image copies, never as shell text or kernel command line.

pub mod artifacts;
pub mod boot;
pub mod console;
pub mod disk;
pub mod engine;
pub mod guest;
pub mod probe;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod runner;
pub mod tools;

pub use artifacts::{ensure_artifacts, ArtifactOptions, Artifacts, Manifest, VM_RECIPE};
pub use disk::{create_overlay, create_seed, GuestNetwork, MacAddr, Seed};
pub use engine::{MicroVmConfig, MicroVmEngine, LABEL_ENGINE, QEMU_OVERHEAD_MIB, VM_MIN_MEMORY_MB};
pub use guest::kernel_append;
pub use probe::{probe_accel, ProbeReport};
pub use process::{PowerOff, RunningVm, VmError};
pub use qemu::{
    Accel, Disk, DiskFormat, HostForward, MachineType, QemuCommand, QemuError, SerialPort, TapNet, QEMU_SYSTEM,
};
pub use tools::ArtifactError;
