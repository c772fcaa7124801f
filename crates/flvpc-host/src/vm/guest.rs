//! What the VM image carries besides Debian packages: fixed files written into the tree
//! before it becomes the base image. The first-boot script is one of them, so the only
//! shell that ever runs in the guest on flvpc's behalf is this reviewed text; user data
//! arrive as files on the seed disk that it copies, never as code or arguments.

use std::path::Path;

use super::tools::{io, run, ArtifactError};

/// File system label of the root file system (the kernel command line says `root=LABEL=`).
pub const ROOT_LABEL: &str = "flvpc-root";
/// File system label of the per-VM read-only seed disk.
pub const SEED_LABEL: &str = "flvpc-seed";

/// The kernel command line of a normal boot: serial console, root by label (the disk order
/// is not an interface), and any panic ends QEMU (`-no-reboot`) so a failed boot is seen.
/// `no_timer_check`: under TCG on a loaded host the emulated timer can tick too late for the
/// kernel's IO-APIC timer check, which then panics ("IO-APIC + timer doesn't work", seen here
/// while the host compiled); the timer itself works.
pub fn kernel_append() -> Vec<String> {
    ["console=ttyS0", &format!("root=LABEL={ROOT_LABEL}"), "rw", "panic=-1", "reboot=t", "no_timer_check"]
        .map(String::from)
        .to_vec()
}

const FIRST_BOOT_PATH: &str = "usr/local/lib/flvpc/first-boot";

/// Runs at every boot (the seed may change between boots), before sshd.
const FIRST_BOOT_SCRIPT: &str = r#"#!/bin/sh
# flvpc: take this VM's identity from the read-only seed disk the host attached.
# A fixed file of the image: the seed's files are copied, never read as shell code.
set -eu
seed=/dev/disk/by-label/flvpc-seed
mnt=/run/flvpc-seed
i=0
while [ ! -e "$seed" ] && [ "$i" -lt 60 ]; do sleep 1; i=$((i + 1)); done
mkdir -p "$mnt"
mount -t ext4 -o ro,nodev,nosuid,noexec "$seed" "$mnt"
if [ -f "$mnt/hostname" ]; then
    cp "$mnt/hostname" /etc/hostname
    hostname -F /etc/hostname
fi
if [ -f "$mnt/authorized_keys" ]; then
    install -d -m 0700 /root/.ssh
    install -m 0600 "$mnt/authorized_keys" /root/.ssh/authorized_keys
fi
# A VM run by flvpc's runner owns its container's address: the runner wrote it here.
if [ -f "$mnt/network" ]; then
    install -D -m 0644 "$mnt/network" /run/systemd/network/10-flvpc.network
fi
# No systemd-resolved in the image: the resolver is whatever /etc/resolv.conf names.
if [ -f "$mnt/resolv.conf" ]; then
    rm -f /etc/resolv.conf
    install -m 0644 "$mnt/resolv.conf" /etc/resolv.conf
fi
umount "$mnt"
# The base image has no SSH host keys: each VM makes its own, once.
ssh-keygen -A
"#;

const KEYS_SYNC_PATH: &str = "usr/local/lib/flvpc/keys-sync";

/// Port name of the virtio-serial channel that carries root's authorized_keys while the VM
/// runs (the cloud kernel has no 9p; virtio-console is a module udev loads).
pub const KEYS_PORT: &str = "org.flvpc.keys";

/// Keeps root's authorized_keys equal to what the host sends on [`KEYS_PORT`]. The protocol:
/// the guest says `ready` when it opened the port (the host may have written before, which
/// the guest driver drops), the host answers and sends again at every change a frame: the
/// length in decimal on its own line, then that many bytes of authorized_keys. The shell
/// reads only the length, checked to be digits; the keys go through `head -c` into a file,
/// never into a shell variable. EOF (the host side closed) ends the script with a failure, and
/// systemd starts it again; a VM without the port (QEMU started by hand) ends it for good.
const KEYS_SYNC_SCRIPT: &str = r#"#!/bin/bash
# flvpc: root's authorized_keys, live from the host (see the host's vm/guest.rs).
set -u
port=/dev/virtio-ports/org.flvpc.keys
i=0
while [ ! -e "$port" ]; do
    [ "$i" -lt 60 ] || exit 0
    sleep 1
    i=$((i + 1))
done
exec 3<>"$port"
printf 'ready\n' >&3
while IFS= read -r len <&3; do
    case "$len" in '' | *[!0-9]*) continue ;; esac
    [ "${#len}" -le 7 ] && [ "$len" -le 1048576 ] || exit 1
    install -d -m 0700 /root/.ssh
    tmp=$(mktemp /root/.ssh/.authorized_keys.XXXXXX)
    head -c "$len" <&3 >"$tmp"
    if [ "$(stat -c %s "$tmp")" = "$len" ]; then
        chmod 0600 "$tmp"
        mv -f "$tmp" /root/.ssh/authorized_keys
    else
        rm -f "$tmp"
    fi
done
# The host closed its side (the runner restarted its connection): open the port again.
exit 1
"#;

const KEYS_SYNC_UNIT: &str = "\
[Unit]
Description=flvpc: root's SSH keys kept in sync with the host
After=flvpc-first-boot.service
# Restarted as often as the host side goes away, never given up on.
StartLimitIntervalSec=0

[Service]
ExecStart=/usr/local/lib/flvpc/keys-sync
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
";

const FIRST_BOOT_UNIT: &str = "\
[Unit]
Description=flvpc: host name, root's SSH keys and SSH host keys from the seed disk
After=local-fs.target systemd-udevd.service
Before=ssh.service systemd-networkd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/lib/flvpc/first-boot

[Install]
WantedBy=multi-user.target
";

/// `x-systemd.growfs`: the base file system is small, the VM's disk is as large as its
/// overlay, and systemd grows the file system to it at boot, so the disk size is the limit.
const FSTAB: &str = "LABEL=flvpc-root / ext4 rw,errors=remount-ro,x-systemd.growfs 0 1\n";

/// DHCP from QEMU's user network (10.0.2.15 today; a bridge later).
const NETWORK: &str = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n";

/// Units that would block a headless boot (systemd-firstboot prompts on the console when
/// the machine id is unset) or waste emulated CPU.
const MASKED: &[&str] =
    &["systemd-firstboot.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer"];

/// Units enabled in the image.
const ENABLED: &[&str] =
    &["systemd-networkd.service", "ssh.service", "flvpc-first-boot.service", "flvpc-keys-sync.service"];

/// Turns a debootstrapped tree into a VM root: the files above, no machine id (systemd
/// makes a new one at each VM's first boot, so two VMs of one base differ), no SSH host keys.
pub async fn prepare_tree(tree: &Path) -> Result<(), ArtifactError> {
    write(tree, "etc/fstab", FSTAB, 0o644)?;
    write(tree, "etc/hostname", "flvpc-vm\n", 0o644)?;
    // "uninitialized" is systemd's documented marker for "a first boot, make one".
    write(tree, "etc/machine-id", "uninitialized\n", 0o444)?;
    remove_if_exists(&tree.join("var/lib/dbus/machine-id"))?;
    write(tree, "etc/systemd/network/80-flvpc-dhcp.network", NETWORK, 0o644)?;
    write(tree, FIRST_BOOT_PATH, FIRST_BOOT_SCRIPT, 0o755)?;
    write(tree, "etc/systemd/system/flvpc-first-boot.service", FIRST_BOOT_UNIT, 0o644)?;
    write(tree, KEYS_SYNC_PATH, KEYS_SYNC_SCRIPT, 0o755)?;
    write(tree, "etc/systemd/system/flvpc-keys-sync.service", KEYS_SYNC_UNIT, 0o644)?;
    let ssh = tree.join("etc/ssh");
    for entry in std::fs::read_dir(&ssh).map_err(io("read", &ssh))? {
        let path = entry.map_err(io("read", &ssh))?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ssh_host_")) {
            remove_if_exists(&path)?;
        }
    }
    let root = tree.as_os_str();
    let mut root_arg = std::ffi::OsString::from("--root=");
    root_arg.push(root);
    let mut args = vec![root_arg.clone(), "enable".into()];
    args.extend(ENABLED.iter().map(|u| (*u).into()));
    run("systemctl", "systemd", &args).await?;
    let mut args = vec![root_arg, "mask".into()];
    args.extend(MASKED.iter().map(|u| (*u).into()));
    run("systemctl", "systemd", &args).await?;
    Ok(())
}

fn write(tree: &Path, rel: &str, text: &str, mode: u32) -> Result<(), ArtifactError> {
    use std::os::unix::fs::PermissionsExt;
    let path = tree.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    remove_if_exists(&path)?;
    std::fs::write(&path, text).map_err(io("write", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io("set the mode of", &path))
}

fn remove_if_exists(path: &Path) -> Result<(), ArtifactError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}
