//! MicroVM machines on QEMU (issue 10), the groundwork below the reconciler: the QEMU
//! command line ([`qemu`]; machine type q35, see [`qemu::MachineType`] for why), the
//! accelerator probe ([`probe`]), the kernel/initrd/base-image artifacts built from Debian
//! packages ([`artifacts`], with the guest's fixed files in [`guest`]), per-VM disks and
//! seeds ([`disk`]), and a running VM's life ([`process`]: wait until up or failed with the
//! console's tail, graceful power-down over [`qmp`]). Nothing here is wired to an engine yet.
//!
//! Invariant: QEMU and the image tools are spawned with argv lists; user data (host name,
//! SSH keys) reach the guest only as files on a read-only seed disk that a fixed script of
//! the image copies, never as shell text or kernel command line.

pub mod artifacts;
pub mod disk;
pub mod guest;
pub mod probe;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod tools;

pub use artifacts::{ensure_artifacts, ArtifactOptions, Artifacts, Manifest, VM_RECIPE};
pub use disk::{create_overlay, create_seed, Seed};
pub use guest::kernel_append;
pub use probe::{probe_accel, ProbeReport};
pub use process::{PowerOff, RunningVm, VmError};
pub use qemu::{Accel, Disk, DiskFormat, HostForward, MachineType, QemuCommand, QemuError, QEMU_SYSTEM};
pub use tools::ArtifactError;
