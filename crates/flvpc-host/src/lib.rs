//! flvpc's access to the host: the Docker engine (machines, networks, images) and the
//! debootstrap image build.
//!
//! Architecture Invariant: this is the only crate that talks to Docker, the kernel or
//! debootstrap. It knows nothing of HTTP or SQL: callers pass plain specs and get plain
//! results. Programs are always spawned with argv lists, never through a shell.
//!
//! - [`engine`]: the [`Engine`] trait a reconciler is written against, and its types.
//! - [`docker`]: [`DockerEngine`], the real implementation (bollard; local bridges or swarm overlays).
//! - [`endpoint`]: connecting to an engine by its endpoint (unix socket, or TCP with TLS).
//! - [`info`]: what an engine says of its host (version, OS, CPUs, memory, swarm node).
//! - [`swarm`]: the hosts' engines in one Docker Swarm, for overlay namespace networks.
//! - [`image`]: building `flvpc/debian:12` and the microVM runner image, listing local images.
//! - [`cgroup`]: how a machine sees the host's cgroups (read-only but its own subtrees).
//! - [`fake`]: [`FakeEngine`], an in-memory recording engine for other crates' unit tests.
//! - [`isolation`]: flvpc's own nftables wall between namespace networks (Docker's has windows).
//! - [`subnets`]: the address pool namespace networks are cut from (`--network-pool`).
//! - [`limits`]: this process's open-file limit (raised at start for the SSH gateway).
//! - [`vm`]: microVMs on QEMU (command line, accelerator probe, artifacts, the runner and
//!   [`vm::MicroVmEngine`], which the server registers when the artifacts and runner image exist).

#![warn(missing_docs)]

pub mod capacity;
pub mod cgroup;
pub mod docker;
pub mod endpoint;
pub mod engine;
pub mod fake;
pub mod image;
pub mod info;
pub mod isolation;
pub mod limits;
pub mod subnets;
pub mod swarm;
pub mod usage;
pub mod vm;

pub use capacity::{host_capacity, host_limit_warnings, host_name, Capacity};
pub use docker::{wait_ssh_ready, DockerEngine, ExecOutput};
pub use endpoint::EngineTls;
pub use engine::{
    container_name, network_name, Engine, EngineError, MachineDetails, MachineEvents, MachineInfo, MachineSpec,
    MachineState, PortMapping, Protocol, PublishedPort, DEFAULT_IMAGE, ISOLATION, LABEL_IMAGE, LABEL_INSTANCE,
    LABEL_ISOLATION, LABEL_MACHINE, LABEL_NAMESPACE,
};
pub use fake::FakeEngine;
pub use image::transfer::{copy_image, Copied};
pub use image::{build_debian12, image_exists, list_images, BuildOptions, ImageError, ImageInfo, Phase, Progress};
pub use info::{HostInfo, SwarmNode};
pub use limits::{fd_limit, raise_fd_limit, FdLimit, LimitError};
pub use swarm::{form_swarm, leave_swarm, SwarmFormed};
pub use usage::{is_container_init, read_usage, ContainerInit, RawUsage};
