//! `flvpc image build` and `flvpc image list`: machine images on this host.

use crate::progress::{Progress, Update};
use anyhow::Context;
use clap::Subcommand;
use flvpc_host::{BuildOptions, DockerEngine, Phase, DEFAULT_IMAGE};

/// `flvpc image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the default machine image flvpc/debian:12 (systemd + sshd) with debootstrap, or the
    /// microVM runner image flvpc/vm-runner (QEMU); idempotent.
    Build {
        /// Which image: debian-12 (machines) or vm-runner (what runs a microVM in its container).
        #[arg(default_value = "debian-12", value_parser = ["debian-12", "vm-runner", "debian-12-vm"])]
        which: String,
        /// For debian-12-vm: where the VM artifacts go (kernel, initrd, base image), default `vm` in the data dir.
        #[arg(long, env = "FLVPC_VM_DIR")]
        vm_dir: Option<std::path::PathBuf>,
        /// Debian mirror URL (default: the one in this host's apt configuration).
        #[arg(long, env = "FLVPC_MIRROR")]
        mirror: Option<String>,
        /// Rebuild even if the image exists.
        #[arg(long)]
        force: bool,
    },
    /// List local images usable for machines.
    List,
}

/// Runs an image command.
pub async fn run(command: &ImageCommand, data_dir: &std::path::Path) -> anyhow::Result<()> {
    if let ImageCommand::Build { which, mirror, force, vm_dir } = command {
        if which == "debian-12-vm" {
            let dir = vm_dir.clone().unwrap_or_else(|| data_dir.join("vm"));
            eprintln!("VM artifacts in {} (built with debootstrap if missing: about four minutes)", dir.display());
            let started = std::time::Instant::now();
            let opts = flvpc_host::vm::ArtifactOptions { dir, mirror: mirror.clone(), force: *force };
            let artifacts = flvpc_host::vm::ensure_artifacts(&opts).await.context("the VM artifacts build failed")?;
            println!(
                "VM artifacts ready in {} (kernel {}, {:.0} s)",
                artifacts.dir.display(),
                artifacts.manifest.kernel_version,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
    }
    let engine = DockerEngine::connect().await?;
    match command {
        ImageCommand::Build { which, mirror, force, vm_dir: _ } => {
            let options = BuildOptions { mirror: mirror.clone(), force: *force, ..BuildOptions::default() };
            let started = std::time::Instant::now();
            let mut progress = Progress::on_stderr();
            let recipe = match which.as_str() {
                "vm-runner" => &flvpc_host::image::VM_RUNNER,
                _ => &flvpc_host::image::DEBIAN12,
            };
            let options = BuildOptions { tag: recipe.tag.to_owned(), ..options };
            let info = flvpc_host::image::build_image(&engine, recipe, options, |p| {
                progress.update(Update {
                    step: p.phase.label(),
                    done: p.done,
                    total: p.total,
                    status: "",
                    detail: &p.message,
                });
                if p.phase == Phase::Done {
                    progress.finish();
                }
            })
            .await
            .context("the image build failed")?;
            println!("{} ready ({} MB, {:.0} s)", info.tag, info.size / 1_000_000, started.elapsed().as_secs_f64());
        }
        ImageCommand::List => {
            let images = flvpc_host::list_images(&engine).await?;
            println!("{:<40} {:>8}  BUILT BY", "IMAGE", "SIZE");
            for image in images {
                let by = if image.flvpc { "flvpc" } else { "" };
                let default = if image.tag == DEFAULT_IMAGE { " (default)" } else { "" };
                println!("{:<40} {:>6}MB  {by}{default}", image.tag, image.size / 1_000_000);
            }
        }
    }
    Ok(())
}
