//! End-to-end tests of the microVM groundwork with real QEMU, real debootstrap and the real
//! OpenSSH client, as root. Traffic goes only to 127.0.0.1 (QEMU's host forwards).
//!
//! The artifacts (kernel, initrd, base image) are built on first use, about four minutes,
//! into `FLVPC_TEST_VM_DIR` (default `/var/cache/flvpc-test/vm`, outside the checkout so that
//! CI runs on fresh clones reuse them while the recipe is current).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flvpc_host::vm::{
    create_overlay, create_seed, ensure_artifacts, kernel_append, probe_accel, Accel, ArtifactOptions, Artifacts, Disk,
    DiskFormat, HostForward, PowerOff, ProbeReport, QemuCommand, RunningVm, Seed, VmError, QEMU_SYSTEM,
};
use tokio::process::Command;
use tokio::sync::{Mutex, OnceCell};

static ARTIFACTS: OnceCell<Artifacts> = OnceCell::const_new();
/// The probe runs once per test process (up to its deadline when KVM does not work): its
/// report and how long the call took, measured around it.
static PROBE: OnceCell<(ProbeReport, Duration)> = OnceCell::const_new();
/// VMs are CPU-heavy under TCG: one test boots at a time (the two-VM test boots its pair together).
static BOOTING: Mutex<()> = Mutex::const_new(());

const PROBE_DEADLINE: Duration = Duration::from_secs(20);
/// Under TCG on a shared 2-core host a Debian boot to sshd takes about a minute.
const BOOT_DEADLINE: Duration = Duration::from_secs(300);
const POWERDOWN_DEADLINE: Duration = Duration::from_secs(90);
const MIB: u64 = 1024 * 1024;

fn artifacts_dir() -> PathBuf {
    std::env::var_os("FLVPC_TEST_VM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/flvpc-test/vm"))
}

async fn artifacts() -> &'static Artifacts {
    ARTIFACTS
        .get_or_init(|| async {
            let opts = ArtifactOptions { dir: artifacts_dir(), mirror: None, force: false };
            match ensure_artifacts(&opts).await {
                Ok(a) => a,
                Err(e) => panic!("cannot build the VM artifacts in {}: {e}", opts.dir.display()),
            }
        })
        .await
}

async fn probe() -> &'static (ProbeReport, Duration) {
    PROBE
        .get_or_init(|| async {
            let kernel = &artifacts().await.kernel;
            let dir = tempfile::tempdir().expect("tempdir");
            let start = Instant::now();
            let report = probe_accel(Path::new(QEMU_SYSTEM), kernel, dir.path(), PROBE_DEADLINE).await;
            (report, start.elapsed())
        })
        .await
}

async fn accel() -> Accel {
    probe().await.0.accel
}

/// A loopback port free a moment ago and never handed out before in this process: QEMU binds it
/// only once it runs, so two VMs started one after the other could otherwise be given the same
/// port by the kernel (seen in CI: the second QEMU's host forwarding then fails).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A VM's files in its own temporary directory.
struct TestVm {
    dir: tempfile::TempDir,
    port: u16,
    vm: RunningVm,
}

async fn start_vm(hostname: &str, public_key: &str, disk_bytes: u64, extra_append: &[&str]) -> TestVm {
    let artifacts = artifacts().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.qcow2");
    create_overlay(artifacts, &disk, disk_bytes).await.expect("create the overlay");
    let seed = dir.path().join("seed.img");
    create_seed(&Seed { hostname: hostname.into(), authorized_keys: public_key.into(), network: None }, &seed)
        .await
        .expect("create the seed disk");
    let port = free_port();
    let mut cmd = QemuCommand::new(accel().await, &artifacts.kernel, dir.path().join("serial.log"));
    cmd.memory_mib = 512;
    cmd.initrd = Some(artifacts.initrd.clone());
    cmd.append = kernel_append();
    cmd.append.extend(extra_append.iter().map(|s| (*s).to_owned()));
    cmd.disks = vec![
        Disk { path: disk, format: DiskFormat::Qcow2, read_only: false },
        Disk { path: seed, format: DiskFormat::Raw, read_only: true },
    ];
    cmd.user_net = Some(vec![HostForward { host_port: port, guest_port: 22 }]);
    cmd.qmp_socket = Some(dir.path().join("qmp.sock"));
    let vm = RunningVm::spawn(&cmd).expect("start QEMU");
    TestVm { dir, port, vm }
}

/// A fresh ed25519 key pair: (private key path, public key text).
async fn keypair(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "flvpc-vm-test", "-f"])
        .arg(&key)
        .output()
        .await
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("read the public key");
    (key, public)
}

/// Runs `argv` as root in the VM through its forwarded SSH port; returns (success, stdout, stderr).
async fn ssh(key: &Path, port: u16, argv: &[&str]) -> (bool, String, String) {
    let out = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20", "-i"])
        .arg(key)
        .args(["-p", &port.to_string(), "root@127.0.0.1", "--"])
        .args(argv)
        .output()
        .await
        .expect("ssh (openssh-client) is needed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

async fn ssh_ok(key: &Path, port: u16, argv: &[&str]) -> String {
    let (ok, out, err) = ssh(key, port, argv).await;
    assert!(ok, "{argv:?} failed in the VM on port {port}: {err}");
    out
}

#[tokio::test]
async fn artifacts_are_complete_and_reused() {
    let a = artifacts().await;
    assert!(a.manifest.kernel_version.ends_with("-cloud-amd64"), "{:?}", a.manifest);
    assert!(a.manifest.kernel_bytes > MIB && a.manifest.initrd_bytes > MIB);
    assert!(a.manifest.base_virtual_bytes >= 256 * MIB && a.manifest.base_file_bytes > 100 * MIB);
    // A second call with the same directory finds them current and builds nothing.
    let start = Instant::now();
    let again = ensure_artifacts(&ArtifactOptions { dir: a.dir.clone(), mirror: None, force: false })
        .await
        .expect("reuse the artifacts");
    assert_eq!(&again, a);
    assert!(start.elapsed() < Duration::from_secs(5), "reusing must not rebuild");
}

#[tokio::test]
async fn probe_answers_within_its_deadline() {
    let (report, elapsed) = probe().await;
    // The deadline plus the time to kill and reap QEMU.
    assert!(*elapsed < PROBE_DEADLINE + Duration::from_secs(10), "{report:?}");
    assert!(report.took <= *elapsed);
    assert!(matches!(report.accel.name(), "kvm" | "tcg"));
    assert!(!report.detail.is_empty());
    eprintln!("accelerator probe: {} in {:?} ({})", report.accel.name(), report.took, report.detail);
}

#[tokio::test]
async fn two_vms_from_one_base_have_their_own_identity_and_disk_limit() {
    let artifacts = artifacts().await;
    let _turn = BOOTING.lock().await;
    let keys = tempfile::tempdir().expect("tempdir");
    let (key, public) = keypair(keys.path()).await;
    let suffix: u32 = rand::random::<u32>() % 100_000;
    let names = [format!("vm-a-{suffix}"), format!("vm-b-{suffix}")];
    // Room for the guest to write 192 MiB beyond the base, then no more.
    let disk_bytes = artifacts.manifest.base_virtual_bytes + 192 * MIB;
    let mut vms = Vec::new();
    for name in &names {
        vms.push(start_vm(name, &public, disk_bytes, &[]).await);
    }
    let start = Instant::now();
    for v in vms.iter_mut() {
        if let Err(e) = v.vm.wait_ssh_banner(v.port, BOOT_DEADLINE).await {
            panic!("a VM did not come up: {e}");
        }
        eprintln!(
            "VM on port {} answered SSH {:?} after both started ({})",
            v.port,
            start.elapsed(),
            accel().await.name()
        );
    }
    let mut ids = Vec::new();
    for (v, name) in vms.iter().zip(&names) {
        assert_eq!(&ssh_ok(&key, v.port, &["hostname"]).await, name);
        let id = ssh_ok(&key, v.port, &["cat", "/etc/machine-id"]).await;
        assert_eq!(id.len(), 32, "machine id {id:?}");
        ids.push(id);
        // The file system was grown to the disk: larger than the base, not larger than the disk.
        let size: u64 = ssh_ok(&key, v.port, &["df", "-B1", "--output=size", "/"])
            .await
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .expect("df prints a size");
        assert!(size > artifacts.manifest.base_virtual_bytes && size <= disk_bytes, "file system size {size}");
    }
    assert_ne!(ids[0], ids[1], "two VMs of one base must have distinct machine ids");
    // Writing past the disk's size fails in the guest (and the other VM is unaffected).
    let (ok, _, err) = ssh(&key, vms[0].port, &["dd", "if=/dev/zero", "of=/root/fill", "bs=1M", "count=512"]).await;
    assert!(!ok && err.contains("No space left on device"), "writing 512 MiB into 192 MiB of room: {err}");
    ssh_ok(&key, vms[1].port, &["dd", "if=/dev/zero", "of=/root/small", "bs=1M", "count=16"]).await;
    for v in vms.iter_mut() {
        let start = Instant::now();
        let pid = v.vm.pid().expect("QEMU runs");
        match v.vm.power_down(POWERDOWN_DEADLINE).await {
            PowerOff::Graceful(status) => assert!(status.success(), "QEMU ended with {status}"),
            PowerOff::Killed(why) => panic!("the VM did not power down gracefully: {why}\n{}", v.vm.serial_tail(30)),
        }
        assert!(start.elapsed() < POWERDOWN_DEADLINE);
        eprintln!("VM on port {} powered down in {:?}", v.port, start.elapsed());
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "QEMU {pid} is gone");
        let serial = std::fs::read_to_string(v.dir.path().join("serial.log")).expect("serial log");
        assert!(serial.contains("reboot: Power down"), "the guest shut down cleanly");
    }
}

#[tokio::test]
async fn a_vm_that_cannot_boot_is_reported_failed_with_its_console() {
    let artifacts = artifacts().await;
    let _turn = BOOTING.lock().await;
    // No disk has this label: the initramfs gives up after rootdelay and, with panic=, reboots,
    // which ends QEMU (-no-reboot).
    let mut v =
        start_vm("vm-broken", "", artifacts.manifest.base_virtual_bytes, &["root=LABEL=flvpc-none", "rootdelay=5"])
            .await;
    let start = Instant::now();
    match v.vm.wait_ssh_banner(v.port, BOOT_DEADLINE).await {
        Err(VmError::Exited { serial_tail, .. }) => {
            assert!(serial_tail.contains("flvpc-none"), "the console names the missing root:\n{serial_tail}")
        }
        Err(other) => panic!("expected the VM to stop by itself, got: {other}"),
        Ok(()) => panic!("a VM without its root file system answered SSH"),
    }
    assert!(start.elapsed() < BOOT_DEADLINE);
    assert!(v.vm.try_exited().is_some());
}
