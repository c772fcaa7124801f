//! Machine images: building `flvpc/debian:12` with debootstrap + import, and listing images.
//!
//! No registry is reachable from the hosts flvpc runs on, so images are made locally:
//! debootstrap fetches Debian packages from the apt mirror the host already uses (read at
//! run time from its apt configuration: no mirror name is ever written in this repository),
//! the root file system is adjusted by writing files directly, and the tree is packed with
//! `tar` and streamed into Docker's image load API as a one-layer image whose config we
//! write ourselves (Docker 20.10's `import` cannot set `STOPSIGNAL`). Unlike footloose's images, the result has an empty
//! machine-id and no SSH host keys: each machine makes its own on first boot.
//!
//! One file per concept: `recipe` (what the image holds and how the tree is adjusted),
//! `mirror` (which apt mirror to build from), `debootstrap` (running it, with progress),
//! `import` (packing the tree into a Docker image under its tag), `list` (local images);
//! `scratch` holds the build's temporary directories; `transfer` copies an image between engines. This file holds the build itself
//! and the types the rest of flvpc uses.

mod debootstrap;
mod import;
mod list;
mod mirror;
mod recipe;
mod scratch;
pub mod transfer;
mod vm_runner;

pub use list::{image_exists, list_images};
pub use mirror::{find_apt_mirror_in, mirror_from_deb822, mirror_from_one_line};
pub use recipe::{
    Recipe, DEBIAN12, DEBIAN12_PACKAGES, DEBIAN12_SUITE, LABEL_RECIPE, MASKED_GENERATORS, MASKED_UNITS, RECIPE_VERSION,
};
pub use vm_runner::{build_vm_runner, VM_RUNNER, VM_RUNNER_IMAGE, VM_RUNNER_PACKAGES};

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::docker::DockerEngine;
use crate::engine::{EngineError, DEFAULT_IMAGE};
use debootstrap::debootstrap;
use import::import;
use list::{find_image, recipe_of};
use mirror::usable_mirror;
use scratch::ScratchDir;

/// How to build the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// The image reference to create (default [`DEFAULT_IMAGE`], `flvpc/debian:12`).
    pub tag: String,
    /// The Debian mirror URL; `None` reads it from the host's apt configuration.
    pub mirror: Option<String>,
    /// Rebuild even if the image exists.
    pub force: bool,
    /// Where the temporary root file system is made (needs ~400 MB, must allow device nodes).
    pub work_dir: PathBuf,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self { tag: DEFAULT_IMAGE.to_owned(), mirror: None, force: false, work_dir: std::env::temp_dir() }
    }
}

/// The steps of a build, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Finding the apt mirror.
    ResolvingMirror,
    /// debootstrap fetches the package indices and the packages (done/total = packages).
    Downloading,
    /// debootstrap unpacks and configures packages (done = steps seen, total unknown).
    Installing,
    /// flvpc adjusts the root file system.
    Configuring,
    /// The tree is streamed into Docker (done/total = bytes, total estimated).
    Importing,
    /// Finished (or the image was already there).
    Done,
}

impl Phase {
    /// A short label for progress lines.
    pub fn label(self) -> &'static str {
        match self {
            Phase::ResolvingMirror => "Resolving mirror",
            Phase::Downloading => "Downloading packages",
            Phase::Installing => "Installing packages",
            Phase::Configuring => "Configuring",
            Phase::Importing => "Importing",
            Phase::Done => "Done",
        }
    }
}

/// One progress report of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The current step.
    pub phase: Phase,
    /// Units done in this step, when countable.
    pub done: Option<u64>,
    /// Units in this step, when known.
    pub total: Option<u64>,
    /// A human line (e.g. debootstrap's current package).
    pub message: String,
}

impl Progress {
    fn new(phase: Phase, done: Option<u64>, total: Option<u64>, message: impl Into<String>) -> Self {
        Self { phase, done, total, message: message.into() }
    }
}

/// A local Docker image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `repository:tag`.
    pub tag: String,
    /// The image ID (`sha256:…`).
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    /// True when the image carries the `flvpc.image` label (built by flvpc).
    pub flvpc: bool,
}

/// What went wrong building or listing images. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Talking to Docker failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// debootstrap must run as root.
    #[error("building an image needs root (debootstrap creates device nodes and root-owned files): run it as root")]
    NotRoot,
    /// A program the build needs is not installed.
    #[error("{program} is not installed: {hint}")]
    ProgramMissing {
        /// The program.
        program: &'static str,
        /// How to install it.
        hint: &'static str,
    },
    /// No mirror was given and none was found in the apt configuration.
    #[error(
        "no Debian {suite} mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list: \
         pass one explicitly (e.g. `flvpc image build --mirror URL`)"
    )]
    MirrorNotFound {
        /// The suite looked for.
        suite: &'static str,
    },
    /// The mirror URL is not usable.
    #[error("mirror {0:?} is not a usable URL: give an http://, https:// or file:/ URL without spaces")]
    InvalidMirror(String),
    /// The image reference is not valid.
    #[error("image tag {0:?} is not valid: use repository[:tag] in lowercase, e.g. flvpc/debian:12")]
    InvalidTag(String),
    /// debootstrap failed.
    #[error("debootstrap failed ({status}); its full log was saved to {log}; last lines:\n{tail}")]
    Debootstrap {
        /// Its exit status.
        status: String,
        /// Where its log was copied.
        log: String,
        /// Its last output lines.
        tail: String,
    },
    /// A file system operation of the build failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Streaming the tree into Docker failed.
    #[error("importing the root file system into Docker failed: {0}")]
    Import(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_owned();
    move |source| ImageError::Io { action, path, source }
}

/// Splits `repository[:tag]` and checks it (lowercase repository path, Docker tag grammar).
pub fn parse_tag(reference: &str) -> Result<(String, String), ImageError> {
    let invalid = || ImageError::InvalidTag(reference.to_owned());
    let (repo, tag) = match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    };
    let repo_ok = !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
        });
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    if repo_ok && tag_ok {
        Ok((repo.to_owned(), tag.to_owned()))
    } else {
        Err(invalid())
    }
}

/// Builds `flvpc/debian:12` (or `opts.tag`) unless it already exists, made by this
/// recipe (then returns at once, reporting only [`Phase::Done`]); an image of an older
/// recipe is rebuilt. Needs root, debootstrap, tar and a reachable apt mirror;
/// takes about two minutes on a 2-core machine.
pub async fn build_debian12(
    engine: &DockerEngine,
    opts: BuildOptions,
    progress: impl FnMut(Progress) + Send,
) -> Result<ImageInfo, ImageError> {
    build_image(engine, &DEBIAN12, opts, progress).await
}

/// Builds the image of `recipe` as `opts.tag`, unless an image of the same recipe version
/// is there already (see [`build_debian12`]).
pub async fn build_image(
    engine: &DockerEngine,
    recipe: &Recipe,
    opts: BuildOptions,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<ImageInfo, ImageError> {
    let (repo, tag) = parse_tag(&opts.tag)?;
    let reference = format!("{repo}:{tag}");
    let previous = find_image(engine, &reference).await?;
    if let (Some(existing), false) = (&previous, opts.force) {
        let this = recipe;
        let recipe = recipe_of(engine, &reference).await?;
        if is_current(recipe.as_deref(), this.version) {
            progress(Progress::new(Phase::Done, None, None, format!("{reference} is already present")));
            return Ok(existing.clone());
        }
        let made_by = recipe.map_or("no recipe label".to_owned(), |r| format!("recipe {r}"));
        progress(Progress::new(
            Phase::ResolvingMirror,
            None,
            None,
            format!("{reference} was made by an older recipe ({made_by}, now {}): rebuilding it", this.version),
        ));
    }
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).map_err(io_err("read", Path::new("/proc/self")))?;
    if uid != 0 {
        return Err(ImageError::NotRoot);
    }

    progress(Progress::new(Phase::ResolvingMirror, None, None, "reading the apt configuration"));
    let mirror = match opts.mirror {
        Some(m) => m,
        None => find_apt_mirror_in(Path::new("/etc/apt"), DEBIAN12_SUITE)
            .ok_or(ImageError::MirrorNotFound { suite: DEBIAN12_SUITE })?,
    };
    if !usable_mirror(&mirror) {
        return Err(ImageError::InvalidMirror(mirror));
    }
    progress(Progress::new(Phase::ResolvingMirror, None, None, format!("using {mirror}")));

    fs::create_dir_all(&opts.work_dir).map_err(io_err("create", &opts.work_dir))?;
    let mut rootfs = ScratchDir::new(&opts.work_dir)?;
    debootstrap(rootfs.path(), &mirror, &opts.work_dir, recipe.packages, &mut progress).await?;

    progress(Progress::new(Phase::Configuring, Some(0), Some(1), format!("adjusting the {} tree", recipe.name)));
    let path = rootfs.path().to_owned();
    let configure = recipe.configure;
    tokio::task::spawn_blocking(move || configure(&path))
        .await
        .map_err(|e| ImageError::Import(format!("the configuration task failed: {e}")))??;
    progress(Progress::new(Phase::Configuring, Some(1), Some(1), "root file system configured"));

    import(engine, recipe, rootfs.path(), &opts.work_dir, &repo, &tag, &mut progress).await?;

    // Removing ~10 000 files blocks for a moment: keep it off the async workers.
    let _ = tokio::task::spawn_blocking(move || rootfs.cleanup()).await;

    let info = find_image(engine, &reference)
        .await?
        .ok_or_else(|| ImageError::Import(format!("Docker accepted the import but {reference} is not listed")))?;
    // A forced rebuild leaves the old image untagged: drop it unless machines still use it
    // (Docker refuses then, and that refusal is fine).
    if let Some(old) = previous.filter(|p| p.id != info.id) {
        let _ =
            engine.client().remove_image(&old.id, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
    }
    progress(Progress::new(Phase::Done, None, None, format!("{reference} built ({} MB)", info.size / 1_000_000)));
    Ok(info)
}

/// Whether an image with this recipe label is what the current recipe (`version`) would build.
fn is_current(recipe: Option<&str>, version: &str) -> bool {
    recipe == Some(version)
}

fn spawn_error(program: &'static str, hint: &'static str) -> impl FnOnce(std::io::Error) -> ImageError {
    move |e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ImageError::ProgramMissing { program, hint }
        } else {
            ImageError::Io { action: "start", path: PathBuf::from(program), source: e }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_recipe_is_reused() {
        assert!(is_current(Some(RECIPE_VERSION), RECIPE_VERSION));
        assert!(!is_current(Some("1"), RECIPE_VERSION));
        // Images built before the label existed are the first recipe.
        assert!(!is_current(None, RECIPE_VERSION));
    }

    #[test]
    fn tags() {
        assert_eq!(parse_tag("flvpc/debian:12").expect("ok"), ("flvpc/debian".into(), "12".into()));
        assert_eq!(parse_tag("mine").expect("ok"), ("mine".into(), "latest".into()));
        for bad in ["", "Flvpc/debian:12", "a b:1", "x:", "x:-a", "/x:1", "x//y:1", "x:1;rm"] {
            assert!(parse_tag(bad).is_err(), "{bad:?}");
        }
    }
}
