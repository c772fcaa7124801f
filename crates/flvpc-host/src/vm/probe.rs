//! Which accelerator works here: /dev/kvm existing is not enough (under nested
//! virtualisation a guest can die at its first instruction), so the probe really boots the
//! kernel under KVM, with no root file system, until it panics and reboots, which ends QEMU
//! (`-no-reboot`). If that happens before the deadline with the panic on the console, KVM
//! works; anything else (no /dev/kvm, an error, a hang) means TCG. It never hangs: QEMU is
//! killed at the deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use super::process::{tail, RunningVm};
use super::qemu::{Accel, QemuCommand};

/// What the kernel prints when it ran all the way to mounting its root, which the probe
/// withholds: proof that the guest executed its whole early boot.
pub const PROBE_LINE: &str = "Kernel panic";

/// The probe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why, in words (what failed under KVM, or that it booted).
    pub detail: String,
    /// How long the probe took.
    pub took: Duration,
}

/// Probes KVM by booting `kernel` (no initrd) with `qemu` (normally [`super::QEMU_SYSTEM`]),
/// writing its console under `work_dir`, for at most `deadline`.
pub async fn probe_accel(qemu: &Path, kernel: &Path, work_dir: &Path, deadline: Duration) -> ProbeReport {
    let start = Instant::now();
    let (accel, detail) = match kvm_boots(qemu, kernel, work_dir, deadline).await {
        Ok(()) => (Accel::Kvm, "a kernel booted under KVM".to_owned()),
        Err(why) => (Accel::Tcg, why),
    };
    ProbeReport { accel, detail, took: start.elapsed() }
}

async fn kvm_boots(qemu: &Path, kernel: &Path, work_dir: &Path, deadline: Duration) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm cannot be opened: {e}"))?;
    let dir = tempfile::Builder::new()
        .prefix("flvpc-kvm-probe-")
        .tempdir_in(work_dir)
        .map_err(|e| format!("cannot create a directory in {}: {e}", work_dir.display()))?;
    let serial = dir.path().join("serial.log");
    let mut cmd = QemuCommand::new(Accel::Kvm, kernel, &serial);
    cmd.program = qemu.to_owned();
    cmd.memory_mib = 256;
    // No root device: the kernel panics right after its own initialisation; panic=-1
    // reboots at once, reboot=t by triple fault (needs no firmware or ACPI).
    cmd.append = ["console=ttyS0", "panic=-1", "reboot=t", "root=/dev/flvpc-probe-none"].map(String::from).to_vec();
    let mut vm = RunningVm::spawn(&cmd).map_err(|e| e.to_string())?;
    let status = vm.wait_exit(deadline).await.map_err(|_| {
        format!("a kernel did not boot under KVM within {deadline:?}; its console ended with: {}", last_line(&serial))
    })?;
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    if status.success() && console.contains(PROBE_LINE) {
        Ok(())
    } else {
        let qemu_said = tail(&serial.with_file_name("serial.log.qemu-stderr"), 3);
        Err(format!("a kernel did not boot under KVM (QEMU ended with {status}: {qemu_said})"))
    }
}

fn last_line(serial: &Path) -> String {
    let t = tail(serial, 1);
    if t.is_empty() {
        "(nothing)".to_owned()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_qemu_means_tcg_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report =
            probe_accel(Path::new("/nonexistent/qemu"), Path::new("/k"), dir.path(), Duration::from_secs(5)).await;
        assert_eq!(report.accel, Accel::Tcg);
        // Either no usable /dev/kvm here, or QEMU could not be started: both are named.
        assert!(report.detail.contains("/dev/kvm") || report.detail.contains("/nonexistent/qemu"), "{}", report.detail);
    }
}
