//! A typed QEMU command line: every value is one argv element (never a shell), and every
//! path that lands inside a QEMU option string (`-drive file=…`, `-chardev …,path=…`) has
//! its commas doubled, which is QEMU's own escape, so a path can never add an option.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The Debian binary that runs x86-64 guests (package `qemu-system-x86`).
pub const QEMU_SYSTEM: &str = "qemu-system-x86_64";

/// How the guest's CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm (fast; needs a working KVM, see [`super::probe`]).
    Kvm,
    /// QEMU's software emulation (slow but works everywhere).
    Tcg,
}

impl Accel {
    /// The name QEMU and people use for it.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The guest CPU model: the host's under KVM; under TCG the richest model QEMU emulates
    /// (the Debian kernel wants x86-64-v1 at least, `max` has it all).
    fn cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }
}

/// The QEMU machine model.
///
/// `Q35` is the default because `microvm` does not boot under TCG with QEMU 7.2 (Debian 12):
/// it has no HPET and no ACPI PM timer, so the kernel cannot calibrate its TSC and hangs
/// right after "Marking TSC unstable" (measured here; the same kernel reaches its root mount
/// in 2 s on q35). `Microvm` (no PCI, no firmware) stays available for KVM hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineType {
    /// A PC with PCI Express and ACPI (SeaBIOS loads the kernel given with `-kernel`).
    Q35,
    /// QEMU's minimal machine: virtio-mmio devices only.
    Microvm,
}

impl MachineType {
    fn name(self) -> &'static str {
        match self {
            MachineType::Q35 => "q35",
            MachineType::Microvm => "microvm",
        }
    }

    /// The virtio transport's device-name suffix on this machine.
    fn virtio(self) -> &'static str {
        match self {
            MachineType::Q35 => "pci",
            MachineType::Microvm => "device",
        }
    }
}

/// A disk image attached as a virtio block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file.
    pub path: PathBuf,
    /// `qcow2` for machine disks, `raw` for small seed disks.
    pub format: DiskFormat,
    /// The guest cannot write it (and QEMU opens the file read-only).
    pub read_only: bool,
}

/// The on-disk format of a [`Disk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// QEMU copy-on-write images (overlays of the base image).
    Qcow2,
    /// Plain bytes.
    Raw,
}

impl DiskFormat {
    fn name(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// A TCP port of the host's loopback forwarded to a guest port through QEMU's user network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    /// Port on 127.0.0.1 of the host.
    pub host_port: u16,
    /// Port in the guest.
    pub guest_port: u16,
}

/// A tap device the VM's network card is plugged into (a runner bridges it to its
/// container's interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapNet {
    /// The tap interface, which must exist (QEMU opens it, `script=no`).
    pub ifname: String,
    /// The card's Ethernet address.
    pub mac: super::disk::MacAddr,
}

/// A virtio-serial port backed by a unix socket QEMU listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPort {
    /// The port's name in the guest (`/dev/virtio-ports/NAME`).
    pub name: String,
    /// The socket on the host side.
    pub socket: PathBuf,
}

/// A VM's QEMU invocation. Build it with [`QemuCommand::new`], set fields, then take
/// [`QemuCommand::argv`] or [`QemuCommand::command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCommand {
    /// The QEMU binary (default [`QEMU_SYSTEM`], found on PATH).
    pub program: PathBuf,
    /// Machine model (default [`MachineType::Q35`]).
    pub machine: MachineType,
    /// CPU accelerator.
    pub accel: Accel,
    /// Virtual CPUs (at least 1).
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The kernel image booted directly (no firmware, no boot loader).
    pub kernel: PathBuf,
    /// The initramfs, if any.
    pub initrd: Option<PathBuf>,
    /// Kernel command line words, joined with spaces.
    pub append: Vec<String>,
    /// Block devices, in order.
    pub disks: Vec<Disk>,
    /// QEMU user network (slirp) with these forwards; `None` gives the guest no network.
    pub user_net: Option<Vec<HostForward>>,
    /// A network card on a tap device (instead of, or with, the user network).
    pub tap: Option<TapNet>,
    /// virtio-serial ports.
    pub serial_ports: Vec<SerialPort>,
    /// Under TCG, the translated-code cache in MiB (QEMU's default reserves 1 GiB, which a
    /// long-running VM fills, and which counts against its container's memory limit).
    pub tcg_cache_mib: Option<u32>,
    /// The guest's serial console (ttyS0) is appended to this file, unless
    /// `console_on_stdout`; QEMU's own messages go beside it (`SERIAL_LOG.qemu-stderr`).
    pub serial_log: PathBuf,
    /// The console goes to QEMU's standard output instead (see [`super::console`]).
    pub console_on_stdout: bool,
    /// A QMP unix socket QEMU listens on (for `system_powerdown`).
    pub qmp_socket: Option<PathBuf>,
}

/// Why a [`QemuCommand`] cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QemuError {
    /// A kernel command line word contains a space or control character, which would split
    /// it into words nobody meant.
    #[error("kernel command line word {0:?} contains whitespace or a control character: pass one word per entry")]
    BadAppendWord(String),
    /// A tap or port name with characters QEMU's option syntax would read otherwise.
    #[error("{0:?} is not a valid interface or port name: use letters, digits, '.', '-' and '_'")]
    BadName(String),
    /// Zero CPUs or memory below what a kernel needs.
    #[error("a VM needs at least 1 CPU and 64 MiB of memory (asked for {cpus} CPUs, {memory_mib} MiB)")]
    TooSmall {
        /// CPUs asked for.
        cpus: u32,
        /// Memory asked for.
        memory_mib: u32,
    },
}

impl QemuCommand {
    /// A VM with one CPU and 512 MiB booting `kernel`, console to `serial_log`, no disk, no
    /// network.
    pub fn new(accel: Accel, kernel: impl Into<PathBuf>, serial_log: impl Into<PathBuf>) -> Self {
        Self {
            program: PathBuf::from(QEMU_SYSTEM),
            machine: MachineType::Q35,
            accel,
            cpus: 1,
            memory_mib: 512,
            kernel: kernel.into(),
            initrd: None,
            append: Vec::new(),
            disks: Vec::new(),
            user_net: None,
            tap: None,
            serial_ports: Vec::new(),
            tcg_cache_mib: None,
            serial_log: serial_log.into(),
            console_on_stdout: false,
            qmp_socket: None,
        }
    }

    /// The argument list (without the program). Both machine types have the ACPI power
    /// button that `system_powerdown` presses.
    pub fn argv(&self) -> Result<Vec<OsString>, QemuError> {
        if self.cpus == 0 || self.memory_mib < 64 {
            return Err(QemuError::TooSmall { cpus: self.cpus, memory_mib: self.memory_mib });
        }
        if let Some(bad) =
            self.append.iter().find(|w| w.is_empty() || w.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(QemuError::BadAppendWord(bad.clone()));
        }
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(OsString::from(s));
        push("-machine");
        match (self.accel, self.tcg_cache_mib) {
            (Accel::Tcg, Some(mib)) => {
                push(self.machine.name());
                push("-accel");
                push(&format!("tcg,tb-size={mib}"));
            }
            _ => push(&format!("{},accel={}", self.machine.name(), self.accel.name())),
        }
        push("-cpu");
        push(self.accel.cpu());
        push("-smp");
        push(&self.cpus.to_string());
        push("-m");
        push(&format!("{}M", self.memory_mib));
        // Nothing from the user's or the distribution's QEMU configuration, no default
        // devices, no window, no monitor on stdio: only what is listed here.
        push("-nodefaults");
        push("-no-user-config");
        push("-display");
        push("none");
        // A guest reboot (or kernel panic with panic=-1) ends the process: the supervisor
        // decides what happens next, and a VM that cannot boot does not loop.
        push("-no-reboot");
        push("-chardev");
        if self.console_on_stdout {
            // signal=off: a ^C in the console is the guest's, never a signal to QEMU.
            push("stdio,id=serial0,signal=off");
        } else {
            a.push(opt("file,id=serial0,path=", &self.serial_log));
        }
        let mut push = |s: &str| a.push(OsString::from(s));
        push("-serial");
        push("chardev:serial0");
        // Entropy for the guest's first sshd key generation.
        let virtio = self.machine.virtio();
        push("-device");
        push(&format!("virtio-rng-{virtio}"));
        push("-kernel");
        a.push(self.kernel.clone().into_os_string());
        if let Some(initrd) = &self.initrd {
            a.push("-initrd".into());
            a.push(initrd.clone().into_os_string());
        }
        if !self.append.is_empty() {
            a.push("-append".into());
            a.push(self.append.join(" ").into());
        }
        for (i, disk) in self.disks.iter().enumerate() {
            a.push("-drive".into());
            let mut drive = opt(&format!("id=disk{i},if=none,format={},file=", disk.format.name()), &disk.path);
            if disk.read_only {
                drive.push(",read-only=on");
            }
            a.push(drive);
            a.push("-device".into());
            a.push(format!("virtio-blk-{virtio},drive=disk{i}").into());
        }
        if let Some(forwards) = &self.user_net {
            let mut netdev = String::from("user,id=net0");
            for f in forwards {
                // Loopback only: a VM port is never published on other interfaces by this.
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host_port, f.guest_port));
            }
            a.push("-netdev".into());
            a.push(netdev.into());
            a.push("-device".into());
            a.push(format!("virtio-net-{virtio},netdev=net0").into());
        }
        if let Some(tap) = &self.tap {
            if tap.ifname.is_empty() || !tap.ifname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(QemuError::BadName(tap.ifname.clone()));
            }
            a.push("-netdev".into());
            a.push(format!("tap,id=net1,ifname={},script=no,downscript=no", tap.ifname).into());
            a.push("-device".into());
            a.push(format!("virtio-net-{virtio},netdev=net1,mac={}", tap.mac).into());
        }
        if !self.serial_ports.is_empty() {
            a.push("-device".into());
            a.push(format!("virtio-serial-{virtio}").into());
        }
        for (i, port) in self.serial_ports.iter().enumerate() {
            if port.name.is_empty() || !port.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                return Err(QemuError::BadName(port.name.clone()));
            }
            a.push("-chardev".into());
            let mut spec = opt(&format!("socket,id=port{i},path="), &port.socket);
            spec.push(",server=on,wait=off");
            a.push(spec);
            a.push("-device".into());
            a.push(format!("virtserialport,chardev=port{i},name={}", port.name).into());
        }
        if let Some(qmp) = &self.qmp_socket {
            a.push("-qmp".into());
            let mut spec = opt("unix:", qmp);
            spec.push(",server=on,wait=off");
            a.push(spec);
        }
        Ok(a)
    }

    /// A ready-to-spawn command (stdin closed, killed if dropped).
    pub fn command(&self) -> Result<tokio::process::Command, QemuError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(self.argv()?).stdin(std::process::Stdio::null()).kill_on_drop(true);
        Ok(cmd)
    }
}

/// `prefix` followed by `path` with QEMU's option escape (`,` written `,,`).
fn opt(prefix: &str, path: &Path) -> OsString {
    let mut s = OsString::from(prefix);
    let text = path.as_os_str().to_string_lossy();
    if text.contains(',') {
        s.push(text.replace(',', ",,"));
    } else {
        s.push(path.as_os_str());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().expect("utf-8 in tests")).collect()
    }

    fn after<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
        argv.windows(2).filter(|w| w[0] == flag).map(|w| w[1].as_str()).collect()
    }

    #[test]
    fn full_command_line() {
        let mut q = QemuCommand::new(Accel::Tcg, "/k/vmlinuz", "/run/vm/serial.log");
        q.cpus = 2;
        q.memory_mib = 1024;
        q.initrd = Some("/k/initrd.img".into());
        q.append = vec!["console=ttyS0".into(), "root=LABEL=flvpc-root".into()];
        q.disks.push(Disk { path: "/d/disk.qcow2".into(), format: DiskFormat::Qcow2, read_only: false });
        q.disks.push(Disk { path: "/d/seed.img".into(), format: DiskFormat::Raw, read_only: true });
        q.user_net = Some(vec![HostForward { host_port: 2201, guest_port: 22 }]);
        q.qmp_socket = Some("/run/vm/qmp.sock".into());
        let argv = strings(q.argv().expect("valid"));
        assert_eq!(after(&argv, "-machine"), ["q35,accel=tcg"]);
        assert_eq!(after(&argv, "-cpu"), ["max"]);
        assert_eq!(after(&argv, "-smp"), ["2"]);
        assert_eq!(after(&argv, "-m"), ["1024M"]);
        assert_eq!(after(&argv, "-kernel"), ["/k/vmlinuz"]);
        assert_eq!(after(&argv, "-initrd"), ["/k/initrd.img"]);
        assert_eq!(after(&argv, "-append"), ["console=ttyS0 root=LABEL=flvpc-root"]);
        assert_eq!(
            after(&argv, "-drive"),
            [
                "id=disk0,if=none,format=qcow2,file=/d/disk.qcow2",
                "id=disk1,if=none,format=raw,file=/d/seed.img,read-only=on"
            ]
        );
        assert_eq!(
            after(&argv, "-device"),
            [
                "virtio-rng-pci",
                "virtio-blk-pci,drive=disk0",
                "virtio-blk-pci,drive=disk1",
                "virtio-net-pci,netdev=net0"
            ]
        );
        assert_eq!(after(&argv, "-netdev"), ["user,id=net0,hostfwd=tcp:127.0.0.1:2201-:22"]);
        assert_eq!(after(&argv, "-chardev"), ["file,id=serial0,path=/run/vm/serial.log"]);
        assert_eq!(after(&argv, "-qmp"), ["unix:/run/vm/qmp.sock,server=on,wait=off"]);
        assert!(argv.contains(&"-no-reboot".to_owned()) && argv.contains(&"-nodefaults".to_owned()));
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_no_network_means_no_netdev() {
        let mut q = QemuCommand::new(Accel::Kvm, "/k", "/s");
        q.machine = MachineType::Microvm;
        q.user_net = None;
        let argv = strings(q.argv().expect("valid"));
        assert_eq!(after(&argv, "-machine"), ["microvm,accel=kvm"]);
        assert_eq!(after(&argv, "-device"), ["virtio-rng-device"]);
        assert_eq!(after(&argv, "-cpu"), ["host"]);
        assert!(after(&argv, "-netdev").is_empty() && after(&argv, "-append").is_empty());
    }

    #[test]
    fn tap_serial_ports_and_a_bounded_tcg_cache() {
        let mut q = QemuCommand::new(Accel::Tcg, "/k", "/s");
        q.tcg_cache_mib = Some(64);
        q.tap =
            Some(TapNet { ifname: "tap0".into(), mac: crate::vm::MacAddr::parse("02:42:ac:14:00:02").expect("mac") });
        q.serial_ports.push(SerialPort { name: "org.flvpc.keys".into(), socket: "/vm/keys,x.sock".into() });
        let argv = strings(q.argv().expect("valid"));
        assert_eq!(after(&argv, "-machine"), ["q35"]);
        assert_eq!(after(&argv, "-accel"), ["tcg,tb-size=64"]);
        assert_eq!(after(&argv, "-netdev"), ["tap,id=net1,ifname=tap0,script=no,downscript=no"]);
        assert_eq!(
            after(&argv, "-device"),
            [
                "virtio-rng-pci",
                "virtio-net-pci,netdev=net1,mac=02:42:ac:14:00:02",
                "virtio-serial-pci",
                "virtserialport,chardev=port0,name=org.flvpc.keys"
            ]
        );
        assert!(after(&argv, "-chardev").contains(&"socket,id=port0,path=/vm/keys,,x.sock,server=on,wait=off"));
        q.serial_ports[0].name = "a,b".into();
        assert_eq!(q.argv(), Err(QemuError::BadName("a,b".into())));
        q.serial_ports.clear();
        q.tap.as_mut().expect("tap").ifname = "tap0,script=/x".into();
        assert!(q.argv().is_err());
    }

    #[test]
    fn commas_in_paths_cannot_add_options() {
        let mut q = QemuCommand::new(Accel::Tcg, "/k", "/x,append=evil/serial");
        q.disks.push(Disk { path: "/d,readonly=off".into(), format: DiskFormat::Qcow2, read_only: true });
        let argv = strings(q.argv().expect("valid"));
        assert_eq!(after(&argv, "-chardev"), ["file,id=serial0,path=/x,,append=evil/serial"]);
        q.console_on_stdout = true;
        let argv = strings(q.argv().expect("valid"));
        assert_eq!(after(&argv, "-chardev"), ["stdio,id=serial0,signal=off"]);
        assert_eq!(after(&argv, "-drive"), ["id=disk0,if=none,format=qcow2,file=/d,,readonly=off,read-only=on"]);
    }

    #[test]
    fn rejects_words_that_would_split_and_tiny_vms() {
        let mut q = QemuCommand::new(Accel::Tcg, "/k", "/s");
        q.append = vec!["console=ttyS0 init=/bin/sh".into()];
        assert_eq!(q.argv(), Err(QemuError::BadAppendWord("console=ttyS0 init=/bin/sh".into())));
        q.append.clear();
        q.memory_mib = 16;
        assert!(matches!(q.argv(), Err(QemuError::TooSmall { .. })));
    }
}
