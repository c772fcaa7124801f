//! The microVM runner image: what runs a VM inside its runner container (see
//! `crate::vm::engine`). QEMU and its image tool, `ip` for the bridge, `mkfs.ext4` for the
//! seed disk; no init, no sshd: the runner program (bind-mounted read-only from the host)
//! is the container's only process besides QEMU. Built like `flvpc/debian:12`, by
//! debootstrap from the host's apt mirror, never pulled.

use std::path::Path;

use super::recipe::Recipe;
use super::{build_image, BuildOptions, ImageError, ImageInfo, Progress};
use crate::docker::DockerEngine;

/// The runner image's tag.
pub const VM_RUNNER_IMAGE: &str = "flvpc/vm-runner:1";

/// Packages added to `minbase`. Debootstrap installs no Recommends, so QEMU comes without
/// its GUI and audio modules.
pub const VM_RUNNER_PACKAGES: &[&str] = &["qemu-system-x86", "qemu-utils", "iproute2", "e2fsprogs"];

/// The runner image's recipe.
pub const VM_RUNNER: Recipe = Recipe {
    name: "vm-runner",
    version: "1",
    tag: VM_RUNNER_IMAGE,
    packages: VM_RUNNER_PACKAGES,
    configure: configure_runner,
    // The engine names the runner program at create time; the image has no command of its own.
    cmd: &[],
    env: &["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    // The runner powers the VM down over QMP on SIGTERM.
    stop_signal: "SIGTERM",
    exposed_ports: &["22/tcp"],
};

/// Nothing to adjust: the tree runs no init and no service.
fn configure_runner(_root: &Path) -> Result<(), ImageError> {
    Ok(())
}

/// Builds [`VM_RUNNER_IMAGE`] (or `opts.tag`) unless an image of this recipe is there (a few
/// minutes: debootstrap of QEMU and its libraries).
pub async fn build_vm_runner(
    engine: &DockerEngine,
    mut opts: BuildOptions,
    progress: impl FnMut(Progress) + Send,
) -> Result<ImageInfo, ImageError> {
    if opts.tag == crate::engine::DEFAULT_IMAGE {
        opts.tag = VM_RUNNER_IMAGE.to_owned();
    }
    build_image(engine, &VM_RUNNER, opts, progress).await
}
