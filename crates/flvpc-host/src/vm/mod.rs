//! MicroVM machines on QEMU (issue 10; machine type q35, see [`qemu::MachineType`]), the groundwork below the reconciler: the QEMU
//! command line, the accelerator probe, the kernel/initrd/base-image artifacts built from
//! Debian packages, per-machine disks (qcow2 overlays) and seeds, and a running VM's life
//! (wait until up or failed, graceful power-down). Nothing here is wired to an engine yet.
//!
//! Invariant: QEMU and the image tools are spawned with argv lists; user data (host name,
//! SSH keys) reach the guest only as files on a read-only seed disk that a fixed script in
//! the image copies, never as shell text or kernel command line.

pub mod probe;
pub mod process;
pub mod qemu;
pub mod qmp;

pub use probe::{probe_accel, ProbeReport};
pub use process::{PowerOff, RunningVm, VmError};
pub use qemu::{Accel, Disk, DiskFormat, HostForward, MachineType, QemuCommand, QemuError, QEMU_SYSTEM};
