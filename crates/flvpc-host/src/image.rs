//! Machine images: building `flvpc/debian:12` with debootstrap + import, and listing images.
//!
//! No registry is reachable from the hosts flvpc runs on, so images are made locally:
//! debootstrap fetches Debian packages from the apt mirror the host already uses (read at
//! run time from its apt configuration: no mirror name is ever written in this repository),
//! the root file system is adjusted by writing files directly, and the tree is packed with
//! `tar` and streamed into Docker's image load API as a one-layer image whose config we
//! write ourselves (Docker 20.10's `import` cannot set `STOPSIGNAL`). Unlike footloose's images, the result has an empty
//! machine-id and no SSH host keys: each machine makes its own on first boot.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{ImportImageOptionsBuilder, ListImagesOptionsBuilder};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::docker::DockerEngine;
use crate::engine::{EngineError, DEFAULT_IMAGE, LABEL_IMAGE};

/// The Debian release of the `debian-12` recipe.
pub const DEBIAN12_SUITE: &str = "bookworm";

/// Packages added to debootstrap's `minbase`: systemd as init, sshd, and the few tools
/// people expect on a server (ip, ping, ps, sudo, an editor, CA certificates for apt/https).
pub const DEBIAN12_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "iproute2",
    "iputils-ping",
    "netbase",
    "ca-certificates",
    "procps",
    "less",
    "nano",
];

/// Units masked in the image because they need a kernel, devices or a console a container
/// does not have, or would only waste the machine's CPU. The first four are footloose's;
/// footloose also masks `systemd-tmpfiles-setup.service`, which is kept here because on
/// systemd 252 it works unprivileged and creates directories services expect.
pub const MASKED_UNITS: &[&str] = &[
    // footloose's list
    "dev-hugepages.mount",
    "sys-fs-fuse-connections.mount",
    "systemd-update-utmp.service",
    "console-getty.service",
    // kernel file systems Docker already set up (or that need CAP_SYS_ADMIN)
    "dev-mqueue.mount",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-remount-fs.service",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    // no devices to manage
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-hwdb-update.service",
    // no consoles to log in on: machines are reached by SSH
    "getty.target",
    "getty@tty1.service",
    "serial-getty@.service",
    "getty-static.service",
    // would prompt on a console on the first boot (the machine-id is empty on purpose)
    "systemd-firstboot.service",
    "systemd-journald-audit.socket",
    // background jobs that would run in every machine at the same time
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "fstrim.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
];

/// The unit that gives every machine its own SSH host keys on its first boot.
///
/// Only Ed25519 and ECDSA keys (a few milliseconds each). RSA-3072 takes about a second of
/// CPU per machine, which on a 2-core host serialises the creation of many machines; every
/// SSH client of the last decade speaks Ed25519 or ECDSA, and `ssh-keygen -A` inside a
/// machine adds an RSA key for the odd one that does not.
const HOSTKEYS_UNIT_NAME: &str = "flvpc-ssh-host-keys.service";
const HOSTKEYS_UNIT: &str = "\
# Written by flvpc: the image has no SSH host keys, so that two machines never share one.
[Unit]
Description=Generate this machine's own SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=-/usr/bin/ssh-keygen -q -t ecdsa -N \"\" -f /etc/ssh/ssh_host_ecdsa_key
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target ssh.service
";

const SSHD_DROP_IN: &str = "\
# Written by flvpc: root logs in with the keys flvpc manages, never with a password.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
# The keys made on first boot (see flvpc-ssh-host-keys.service); no RSA key by default.
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
";

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

fn usable_mirror(uri: &str) -> bool {
    (uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:/"))
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Finds the mirror of `suite` in deb822 text (`*.sources`): the first `URIs:` entry of an
/// enabled `Types: deb` stanza whose `Suites:` lists exactly `suite` (so `bookworm-security`
/// and `bookworm-updates` do not count on their own).
pub fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if stanzas.last().is_some_and(|s| !s.is_empty()) {
                stanzas.push(Vec::new());
            }
            continue;
        }
        let Some(stanza) = stanzas.last_mut() else { continue };
        if line.starts_with([' ', '\t']) {
            // A continuation line belongs to the previous field.
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    for stanza in stanzas {
        let field = |name: &str| stanza.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if field("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            continue;
        }
        let is_deb = field("types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let has_suite = field("suites").is_some_and(|s| s.split_whitespace().any(|s| s == suite));
        if !(is_deb && has_suite) {
            continue;
        }
        if let Some(uri) = field("uris").and_then(|u| u.split_whitespace().find(|u| usable_mirror(u))) {
            return Some(uri.to_owned());
        }
    }
    None
}

/// Finds the mirror of `suite` in one-line apt text (`sources.list`): the URI of the first
/// `deb [options] URI suite components…` line with exactly that suite.
pub fn mirror_from_one_line(text: &str, suite: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut tokens = line.split_whitespace();
        if tokens.next() != Some("deb") {
            continue;
        }
        let mut uri = tokens.next();
        // Skip the `[arch=amd64 signed-by=…]` option block, which may contain spaces.
        if uri.is_some_and(|t| t.starts_with('[')) {
            let mut token = uri;
            while let Some(t) = token {
                if t.ends_with(']') {
                    break;
                }
                token = tokens.next();
            }
            uri = tokens.next();
        }
        let (Some(uri), Some(found)) = (uri, tokens.next()) else { continue };
        if found == suite && usable_mirror(uri) {
            return Some(uri.to_owned());
        }
    }
    None
}

/// Reads the mirror of `suite` from the apt configuration under `etc_apt` (normally
/// `/etc/apt`): `sources.list.d/*.sources`, then `sources.list`, then `sources.list.d/*.list`.
pub fn find_apt_mirror_in(etc_apt: &Path, suite: &str) -> Option<String> {
    let mut sources = Vec::new();
    let mut lists = Vec::new();
    if let Ok(dir) = fs::read_dir(etc_apt.join("sources.list.d")) {
        for entry in dir.flatten() {
            let path = entry.path();
            match path.extension().and_then(OsStr::to_str) {
                Some("sources") => sources.push(path),
                Some("list") => lists.push(path),
                _ => {}
            }
        }
    }
    sources.sort();
    lists.sort();
    let read = |p: &Path| fs::read_to_string(p).ok();
    sources
        .iter()
        .filter_map(|p| read(p))
        .find_map(|t| mirror_from_deb822(&t, suite))
        .or_else(|| read(&etc_apt.join("sources.list")).and_then(|t| mirror_from_one_line(&t, suite)))
        .or_else(|| lists.iter().filter_map(|p| read(p)).find_map(|t| mirror_from_one_line(&t, suite)))
}

/// Local images usable for machines: every tagged image (any image with systemd as
/// `/sbin/init` and sshd will do), with those built by flvpc marked. Sorted by tag.
pub async fn list_images(engine: &DockerEngine) -> Result<Vec<ImageInfo>, ImageError> {
    let options = ListImagesOptionsBuilder::new().all(false).build();
    let images = engine.client().list_images(Some(options)).await.map_err(|e| engine.error("list images", e))?;
    let mut out = Vec::new();
    for image in images {
        let flvpc = image.labels.contains_key(LABEL_IMAGE);
        for tag in &image.repo_tags {
            if tag == "<none>:<none>" {
                continue;
            }
            out.push(ImageInfo {
                tag: tag.clone(),
                id: image.id.clone(),
                size: u64::try_from(image.size).unwrap_or(0),
                created: image.created,
                flvpc,
            });
        }
    }
    out.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(out)
}

/// Whether an image with this reference exists locally.
pub async fn image_exists(engine: &DockerEngine, tag: &str) -> Result<bool, ImageError> {
    Ok(engine.image_exists(tag).await?)
}

async fn find_image(engine: &DockerEngine, reference: &str) -> Result<Option<ImageInfo>, ImageError> {
    let wanted = match parse_tag(reference) {
        Ok((repo, tag)) => format!("{repo}:{tag}"),
        Err(_) => reference.to_owned(),
    };
    Ok(list_images(engine).await?.into_iter().find(|i| i.tag == wanted))
}

/// Builds `flvpc/debian:12` (or `opts.tag`) unless it already exists (then returns at once,
/// reporting only [`Phase::Done`]). Needs root, debootstrap, tar and a reachable apt mirror;
/// takes about two minutes on a 2-core machine.
pub async fn build_debian12(
    engine: &DockerEngine,
    opts: BuildOptions,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<ImageInfo, ImageError> {
    let (repo, tag) = parse_tag(&opts.tag)?;
    let reference = format!("{repo}:{tag}");
    let previous = find_image(engine, &reference).await?;
    if let (Some(existing), false) = (&previous, opts.force) {
        progress(Progress::new(Phase::Done, None, None, format!("{reference} is already present")));
        return Ok(existing.clone());
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
    debootstrap(rootfs.path(), &mirror, &opts.work_dir, &mut progress).await?;

    progress(Progress::new(Phase::Configuring, Some(0), Some(1), "masking units, SSH host key unit, empty machine-id"));
    let path = rootfs.path().to_owned();
    tokio::task::spawn_blocking(move || configure_rootfs(&path))
        .await
        .map_err(|e| ImageError::Import(format!("the configuration task failed: {e}")))??;
    progress(Progress::new(Phase::Configuring, Some(1), Some(1), "root file system configured"));

    import(engine, rootfs.path(), &opts.work_dir, &repo, &tag, &mut progress).await?;

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

/// What one debootstrap output line means for progress.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Retrieved(String),
    Installing(String),
    Other,
}

fn classify(line: &str) -> Step {
    let Some(rest) = line.strip_prefix("I: ") else { return Step::Other };
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        // `Validating <package> <version>` follows each package's download; index files
        // (`Retrieving Packages`) have no version and are not counted.
        ["Validating", package, _version] => Step::Retrieved((*package).to_owned()),
        [first, ..] if matches!(*first, "Extracting" | "Unpacking" | "Configuring" | "Installing") => {
            Step::Installing(rest.trim().to_owned())
        }
        _ => Step::Other,
    }
}

fn debootstrap_args(print_debs: bool) -> Vec<String> {
    let mut args = Vec::new();
    if print_debs {
        args.push("--print-debs".to_owned());
    }
    args.push("--variant=minbase".to_owned());
    args.push(format!("--include={}", DEBIAN12_PACKAGES.join(",")));
    args.push(DEBIAN12_SUITE.to_owned());
    args
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

const DEBOOTSTRAP_HINT: &str = "install it with `apt-get install -y --no-install-recommends debootstrap`";

async fn debootstrap(
    target: &Path,
    mirror: &str,
    work_dir: &Path,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<(), ImageError> {
    // debootstrap never prints how many packages it will fetch. `--print-debs` does, at the
    // cost of resolving dependencies again (~9 s of CPU): run it alongside the real run, on
    // the second core, so the total shows up without making the build longer.
    let count_dir = ScratchDir::new(work_dir)?;
    let count_target = count_dir.path().to_owned();
    let mirror_owned = mirror.to_owned();
    let counter = tokio::spawn(async move {
        let _keep = count_dir;
        let out = Command::new("debootstrap")
            .args(debootstrap_args(true))
            .arg(&count_target)
            .arg(&mirror_owned)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .ok()?;
        // Required packages one per line, then the base packages on one line.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let packages: std::collections::BTreeSet<&str> = stdout.split_whitespace().collect();
        (out.status.success() && !packages.is_empty()).then_some(packages.len() as u64)
    });

    let mut child = Command::new("debootstrap")
        .args(debootstrap_args(false))
        .arg(target)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error("debootstrap", DEBOOTSTRAP_HINT))?;

    // stdout and stderr merged line by line, in arrival order.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);

    progress(Progress::new(Phase::Downloading, Some(0), None, "fetching the package indices"));
    let mut counter = Some(counter);
    let mut total: Option<u64> = None;
    let mut retrieved: u64 = 0;
    let mut installed: u64 = 0;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(30);
    while let Some(line) = rx.recv().await {
        if total.is_none() && counter.as_ref().is_some_and(|c| c.is_finished()) {
            if let Some(c) = counter.take() {
                total = c.await.ok().flatten();
            }
        }
        if tail.len() == 30 {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        match classify(&line) {
            Step::Retrieved(package) => {
                retrieved += 1;
                // Never report more done than total, should the two runs disagree.
                let total = total.map(|t| t.max(retrieved));
                progress(Progress::new(Phase::Downloading, Some(retrieved), total, package));
            }
            Step::Installing(what) => {
                installed += 1;
                progress(Progress::new(Phase::Installing, Some(installed), None, what));
            }
            Step::Other => {}
        }
    }
    if let Some(c) = counter {
        c.abort();
    }
    let status = child.wait().await.map_err(io_err("wait for", Path::new("debootstrap")))?;
    if status.success() {
        return Ok(());
    }
    let log = work_dir.join("flvpc-debootstrap.log");
    let saved = fs::copy(target.join("debootstrap/debootstrap.log"), &log).is_ok();
    Err(ImageError::Debootstrap {
        status: status.to_string(),
        log: if saved { log.display().to_string() } else { "(no log: debootstrap stopped before writing one)".into() },
        tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
    })
}

/// Adjusts the debootstrapped tree so that it boots as a container machine. Only writes
/// files and symlinks (what `systemctl mask/enable` would do), so nothing runs in a chroot.
fn configure_rootfs(root: &Path) -> Result<(), ImageError> {
    let systemd_dir = root.join("etc/systemd/system");
    fs::create_dir_all(&systemd_dir).map_err(io_err("create", &systemd_dir))?;

    for unit in MASKED_UNITS {
        replace_with_symlink(Path::new("/dev/null"), &systemd_dir.join(unit))?;
    }
    replace_with_symlink(Path::new("/lib/systemd/system/multi-user.target"), &systemd_dir.join("default.target"))?;

    // Own SSH host keys per machine: none in the image, a oneshot unit before ssh.service.
    let unit_path = systemd_dir.join(HOSTKEYS_UNIT_NAME);
    write_file(&unit_path, HOSTKEYS_UNIT, 0o644)?;
    for wants in ["multi-user.target.wants", "ssh.service.wants"] {
        let dir = systemd_dir.join(wants);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        replace_with_symlink(
            &Path::new("/etc/systemd/system").join(HOSTKEYS_UNIT_NAME),
            &dir.join(HOSTKEYS_UNIT_NAME),
        )?;
    }
    let ssh_dir = root.join("etc/ssh");
    for entry in fs::read_dir(&ssh_dir).map_err(io_err("read", &ssh_dir))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(entry.path()).map_err(io_err("remove", &entry.path()))?;
        }
    }
    let drop_in_dir = ssh_dir.join("sshd_config.d");
    fs::create_dir_all(&drop_in_dir).map_err(io_err("create", &drop_in_dir))?;
    write_file(&drop_in_dir.join("flvpc.conf"), SSHD_DROP_IN, 0o644)?;

    // pam_loginuid must write /proc/self/loginuid, which needs CAP_AUDIT_CONTROL: machines
    // run with Docker's default capabilities, so "required" would end every SSH session.
    let pam = root.join("etc/pam.d/sshd");
    if let Ok(text) = fs::read_to_string(&pam) {
        write_file(&pam, &loginuid_optional(&text), 0o644)?;
    }

    // Empty machine-id: systemd makes one per machine on first boot (and D-Bus follows it).
    write_file(&root.join("etc/machine-id"), "", 0o444)?;
    let dbus_id = root.join("var/lib/dbus/machine-id");
    if dbus_id.parent().is_some_and(Path::exists) {
        replace_with_symlink(Path::new("/etc/machine-id"), &dbus_id)?;
    }

    let root_ssh = root.join("root/.ssh");
    fs::create_dir_all(&root_ssh).map_err(io_err("create", &root_ssh))?;
    fs::set_permissions(&root_ssh, fs::Permissions::from_mode(0o700)).map_err(io_err("chmod", &root_ssh))?;

    // debootstrap copied the build host's name and resolver; Docker provides both per
    // container, so do not ship the builder's.
    write_file(&root.join("etc/hostname"), "localhost\n", 0o644)?;
    write_file(&root.join("etc/resolv.conf"), "", 0o644)?;

    // Package lists and downloaded .debs are ~100 MB that `apt-get update` brings back.
    remove_children(&root.join("var/lib/apt/lists"), |name| name != "lock" && name != "partial")?;
    remove_children(&root.join("var/cache/apt/archives"), |name| name.ends_with(".deb"))?;
    remove_children(&root.join("var/cache/apt"), |name| name.ends_with(".bin"))?;
    Ok(())
}

fn loginuid_optional(pam: &str) -> String {
    let mut out = String::with_capacity(pam.len());
    for line in pam.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() >= 3 && tokens[0] == "session" && tokens[1] == "required" && tokens[2] == "pam_loginuid.so" {
            out.push_str(&line.replacen("required", "optional", 1));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), ImageError> {
    // Remove first: the path may be a symlink into the host (e.g. /etc/resolv.conf).
    let _ = fs::remove_file(path);
    fs::write(path, content).map_err(io_err("write", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

fn replace_with_symlink(target: &Path, link: &Path) -> Result<(), ImageError> {
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).map_err(io_err("remove", link))?;
    }
    symlink(target, link).map_err(io_err("create the symlink", link))
}

fn remove_children(dir: &Path, pick: impl Fn(&str) -> bool) -> Result<(), ImageError> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !pick(&name) {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let result = if is_dir { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        result.map_err(io_err("remove", &path))?;
    }
    Ok(())
}

/// The size `tar -c` will produce for `root`, for the import's progress total: a 512-byte
/// header per entry plus contents rounded up to 512 bytes.
fn tar_size(root: &Path) -> u64 {
    let mut total = 1024; // the two zero blocks that end an archive
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            total += 512;
            let Ok(meta) = entry.metadata() else { continue };
            if meta.file_type().is_dir() {
                stack.push(entry.path());
            } else if meta.file_type().is_file() {
                total += meta.len().div_ceil(512) * 512;
            }
        }
    }
    total
}

/// The image configuration (OCI/Docker image config JSON) of the debian-12 image.
///
/// Written by hand rather than through `docker import --change`, because Docker 20.10's
/// import accepts no `STOPSIGNAL` ("stopsignal is not a valid change command"), and systemd
/// as PID 1 only shuts down cleanly on SIGRTMIN+3.
fn image_config(diff_id: &str, created: &str) -> serde_json::Value {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": {
            "Cmd": ["/sbin/init"],
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "container=docker"
            ],
            "StopSignal": crate::docker::SYSTEMD_STOP_SIGNAL,
            "ExposedPorts": { "22/tcp": {} },
            "Labels": { LABEL_IMAGE: "debian-12" }
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created": created, "created_by": "flvpc image build debian-12 (debootstrap)" }]
    })
}

fn tar_entry_header(path: &str, size: u64) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    );
    header.set_cksum();
    Ok(header.as_bytes().to_vec())
}

fn tar_padding(size: u64) -> Vec<u8> {
    vec![0; ((512 - size % 512) % 512) as usize]
}

/// Packs `root` into one layer and loads it into Docker as `repo:tag`.
///
/// Two steps: `tar` (argv, no shell) writes the layer to a scratch file while its SHA-256
/// (the layer's diff ID, which the config must name) is computed; then a docker-archive
/// (layer, config, manifest) is streamed into the image load API.
async fn import(
    engine: &DockerEngine,
    root: &Path,
    work_dir: &Path,
    repo: &str,
    tag: &str,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<(), ImageError> {
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let root_owned = root.to_owned();
    let estimate = tokio::task::spawn_blocking(move || tar_size(&root_owned)).await.unwrap_or(0);
    // Progress counts bytes twice: once packed into the layer, once sent to Docker.
    let mut total = estimate * 2;
    progress(Progress::new(Phase::Importing, Some(0), Some(total), "packing the root file system"));

    let scratch = ScratchDir::new(work_dir)?;
    let layer_path = scratch.path().join("layer.tar");
    let mut layer = tokio::fs::File::create(&layer_path).await.map_err(io_err("create", &layer_path))?;
    let mut tar = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error("tar", "install it with `apt-get install -y tar`"))?;
    let mut stdout = tar.stdout.take().ok_or_else(|| ImageError::Import("tar has no stdout pipe".into()))?;
    let mut stderr = tar.stderr.take();
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_string(&mut text).await;
        }
        text
    });
    let mut hasher = sha2::Sha256::new();
    let mut layer_len: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    let mut last_report = std::time::Instant::now();
    loop {
        let n = stdout.read(&mut buf).await.map_err(io_err("read the output of", Path::new("tar")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        layer.write_all(&buf[..n]).await.map_err(io_err("write", &layer_path))?;
        layer_len += n as u64;
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = std::time::Instant::now();
            total = total.max(layer_len * 2);
            progress(Progress::new(Phase::Importing, Some(layer_len), Some(total), "packing the root file system"));
        }
    }
    layer.flush().await.map_err(io_err("write", &layer_path))?;
    drop(layer);
    let status = tar.wait().await.map_err(io_err("wait for", Path::new("tar")))?;
    let tar_errors = stderr_task.await.unwrap_or_default();
    if !status.success() {
        return Err(ImageError::Import(format!("tar failed ({status}): {}", tar_errors.trim())));
    }
    let diff_id = format!("{:x}", hasher.finalize());

    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    let config = serde_json::to_vec(&image_config(&diff_id, &created))
        .map_err(|e| ImageError::Import(format!("could not encode the image config: {e}")))?;
    let config_name = format!("{:x}.json", sha2::Sha256::digest(&config));
    let layer_name = format!("{diff_id}/layer.tar");
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [format!("{repo}:{tag}")],
        "Layers": [layer_name],
    }]))
    .map_err(|e| ImageError::Import(format!("could not encode the manifest: {e}")))?;

    let archive_err = |e: std::io::Error| ImageError::Import(format!("could not build the archive headers: {e}"));
    let head = tar_entry_header(&layer_name, layer_len).map_err(archive_err)?;
    let mut tail = tar_padding(layer_len);
    tail.extend(tar_entry_header(&config_name, config.len() as u64).map_err(archive_err)?);
    tail.extend_from_slice(&config);
    tail.extend(tar_padding(config.len() as u64));
    tail.extend(tar_entry_header("manifest.json", manifest.len() as u64).map_err(archive_err)?);
    tail.extend_from_slice(&manifest);
    tail.extend(tar_padding(manifest.len() as u64));
    tail.extend([0u8; 1024]);
    let archive_len = head.len() as u64 + layer_len + tail.len() as u64;
    total = layer_len + archive_len;

    let layer = tokio::fs::File::open(&layer_path).await.map_err(io_err("open", &layer_path))?;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(head)) })
        .chain(tokio_util::io::ReaderStream::with_capacity(layer, 256 * 1024))
        .chain(futures::stream::once(async move { Ok(bytes::Bytes::from(tail)) }))
        .inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
        });
    let options = ImportImageOptionsBuilder::new().quiet(true).build();
    // The whole image goes through one request: allow far more than the default timeout.
    let docker = engine.client().clone().with_timeout(Duration::from_secs(3600));
    let mut responses = docker.import_image(options, bollard::body_try_stream(body), None);
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            item = responses.next() => match item {
                None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let message = match e {
                        BollardError::DockerResponseServerError { message, .. } => message,
                        BollardError::DockerStreamError { error } => error,
                        other => engine.error("load the image", other).to_string(),
                    };
                    return Err(ImageError::Import(message));
                }
            },
            _ = ticker.tick() => {
                let done = layer_len + sent.load(Ordering::Relaxed);
                progress(Progress::new(Phase::Importing, Some(done.min(total)), Some(total), "loading into Docker"));
            }
        }
    }
    drop(scratch);
    progress(Progress::new(Phase::Importing, Some(total), Some(total), "loaded"));
    Ok(())
}

/// A scratch directory that is removed when done, after unmounting anything debootstrap
/// may have left mounted inside it (it mounts /proc and /sys in the target while it runs,
/// and a killed debootstrap cannot unmount them). Never deletes through a mount point.
struct ScratchDir {
    path: Option<PathBuf>,
}

impl ScratchDir {
    fn new(parent: &Path) -> Result<Self, ImageError> {
        let dir = tempfile::Builder::new()
            .prefix("flvpc-rootfs-")
            .tempdir_in(parent)
            .map_err(io_err("create a directory in", parent))?;
        Ok(Self { path: Some(dir.keep()) })
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    fn cleanup(&mut self) {
        let Some(path) = self.path.take() else { return };
        if !unmount_below(&path) {
            tracing::error!(path = %path.display(), "file systems still mounted below the build directory: leaving it in place");
            return;
        }
        if let Err(e) = fs::remove_dir_all(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove the build directory");
            }
        }
    }
}

impl Drop for ScratchDir {
    /// Only reached on error paths (success cleans up off the async workers first), where
    /// briefly blocking is better than leaving hundreds of MB behind.
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo, whose paths
/// escape spaces and the like as octal `\040`).
fn mounts_below(dir: &Path, mountinfo: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn unescape_mount_path(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts (lazily) whatever is mounted below `dir`; true when nothing is left mounted.
/// Runs from `Drop`, hence the blocking `std::process::Command` (argv, no shell).
fn unmount_below(dir: &Path) -> bool {
    let read = || fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in mounts_below(dir, &read()) {
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(&mount)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    mounts_below(dir, &read()).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = "\
Types: deb
# http://snapshot.invalid/archive/debian/20250520T000000Z
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
";

    #[test]
    fn deb822_picks_the_main_suite_not_security() {
        assert_eq!(mirror_from_deb822(SOURCES, "bookworm").as_deref(), Some("http://mirror.invalid/debian"));
        assert_eq!(
            mirror_from_deb822(SOURCES, "bookworm-security").as_deref(),
            Some("http://mirror.invalid/debian-security")
        );
        assert_eq!(mirror_from_deb822(SOURCES, "trixie"), None);
    }

    #[test]
    fn deb822_skips_disabled_source_only_and_reads_continuations() {
        let text = "\
Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm

Enabled: no
Types: deb
URIs: http://off.invalid/debian
Suites: bookworm

Types: deb deb-src
URIs:
 cdrom:/media/
 https://second.invalid/debian
Suites: bookworm
";
        assert_eq!(mirror_from_deb822(text, "bookworm").as_deref(), Some("https://second.invalid/debian"));
    }

    #[test]
    fn security_only_file_has_no_main_mirror() {
        let text = "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n";
        assert_eq!(mirror_from_deb822(text, "bookworm"), None);
    }

    #[test]
    fn one_line_format() {
        let text = "\
# deb http://commented.invalid/debian bookworm main
deb-src http://src.invalid/debian bookworm main
deb http://mirror.invalid/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.invalid/debian bookworm main contrib
deb http://later.invalid/debian bookworm main
";
        assert_eq!(mirror_from_one_line(text, "bookworm").as_deref(), Some("http://mirror.invalid/debian"));
        let spaced = "deb [ arch=amd64 ] http://spaced.invalid/debian bookworm main\n";
        assert_eq!(mirror_from_one_line(spaced, "bookworm").as_deref(), Some("http://spaced.invalid/debian"));
        assert_eq!(mirror_from_one_line("deb cdrom:/x/ bookworm main\n", "bookworm"), None);
    }

    #[test]
    fn apt_dir_prefers_deb822_then_sources_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("sources.list.d")).expect("mkdir");
        fs::write(dir.path().join("sources.list"), "deb http://list.invalid/debian bookworm main\n").expect("write");
        assert_eq!(find_apt_mirror_in(dir.path(), "bookworm").as_deref(), Some("http://list.invalid/debian"));
        fs::write(dir.path().join("sources.list.d/debian.sources"), SOURCES).expect("write");
        assert_eq!(find_apt_mirror_in(dir.path(), "bookworm").as_deref(), Some("http://mirror.invalid/debian"));
        assert_eq!(find_apt_mirror_in(&dir.path().join("missing"), "bookworm"), None);
    }

    #[test]
    fn tags() {
        assert_eq!(parse_tag("flvpc/debian:12").expect("ok"), ("flvpc/debian".into(), "12".into()));
        assert_eq!(parse_tag("mine").expect("ok"), ("mine".into(), "latest".into()));
        for bad in ["", "Flvpc/debian:12", "a b:1", "x:", "x:-a", "/x:1", "x//y:1", "x:1;rm"] {
            assert!(parse_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debootstrap_lines() {
        assert_eq!(classify("I: Validating libacl1 2.3.1-3"), Step::Retrieved("libacl1".into()));
        assert_eq!(classify("I: Retrieving libacl1 2.3.1-3"), Step::Other);
        assert_eq!(classify("I: Validating Packages "), Step::Other);
        assert_eq!(classify("I: Unpacking libc6:amd64..."), Step::Installing("Unpacking libc6:amd64...".into()));
        assert_eq!(
            classify("I: Configuring the base system..."),
            Step::Installing("Configuring the base system...".into())
        );
        assert_eq!(classify("gpgv: Good signature"), Step::Other);
    }

    #[test]
    fn pam_loginuid_becomes_optional_and_nothing_else_changes() {
        let pam = "# comment\nsession    required     pam_loginuid.so\nsession required pam_limits.so\n";
        let out = loginuid_optional(pam);
        assert_eq!(out, "# comment\nsession    optional     pam_loginuid.so\nsession required pam_limits.so\n");
    }

    #[test]
    fn image_config_makes_systemd_stop_cleanly() {
        let config = image_config("ab12", "2026-01-01T00:00:00Z");
        assert_eq!(config["config"]["StopSignal"], "SIGRTMIN+3");
        assert_eq!(config["config"]["Cmd"][0], "/sbin/init");
        assert_eq!(config["config"]["Labels"][LABEL_IMAGE], "debian-12");
        assert_eq!(config["rootfs"]["diff_ids"][0], "sha256:ab12");
        assert_eq!(tar_padding(512).len(), 0);
        assert_eq!(tar_padding(513).len(), 511);
        assert_eq!(tar_entry_header("a/layer.tar", 5).expect("header").len(), 512);
    }

    #[test]
    fn mountinfo_paths() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 0:5 / /tmp/flvpc-rootfs-x/proc rw - proc proc rw
41 40 0:6 / /tmp/flvpc-rootfs-x/proc/sys/fs/binfmt_misc rw - binfmt_misc x rw
42 22 0:7 / /tmp/flvpc-rootfs-x\\040y/sys rw - sysfs sysfs rw
43 22 0:8 / /tmp/flvpc-rootfs-xy rw - tmpfs t rw
";
        let found = mounts_below(Path::new("/tmp/flvpc-rootfs-x"), info);
        assert_eq!(
            found,
            vec![
                PathBuf::from("/tmp/flvpc-rootfs-x/proc/sys/fs/binfmt_misc"),
                PathBuf::from("/tmp/flvpc-rootfs-x/proc")
            ]
        );
        let spaced = mounts_below(Path::new("/tmp/flvpc-rootfs-x y"), info);
        assert_eq!(spaced, vec![PathBuf::from("/tmp/flvpc-rootfs-x y/sys")]);
    }

    #[test]
    fn configure_writes_the_expected_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["etc/ssh", "etc/pam.d", "var/lib/dbus", "var/lib/apt/lists/partial", "var/cache/apt/archives", "root"]
        {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "secret").expect("write");
        fs::write(root.join("etc/ssh/ssh_host_ed25519_key.pub"), "pub").expect("write");
        fs::write(root.join("etc/ssh/sshd_config"), "Include /etc/ssh/sshd_config.d/*.conf\n").expect("write");
        fs::write(root.join("etc/pam.d/sshd"), "session    required     pam_loginuid.so\n").expect("write");
        fs::write(root.join("etc/machine-id"), "0123456789abcdef0123456789abcdef\n").expect("write");
        fs::write(root.join("var/lib/dbus/machine-id"), "0123\n").expect("write");
        fs::write(root.join("var/lib/apt/lists/x_Packages"), "big").expect("write");
        fs::write(root.join("var/lib/apt/lists/lock"), "").expect("write");
        fs::write(root.join("var/cache/apt/archives/a.deb"), "deb").expect("write");

        configure_rootfs(root).expect("configure");

        assert_eq!(fs::read_to_string(root.join("etc/machine-id")).expect("id"), "");
        assert_eq!(fs::read_link(root.join("var/lib/dbus/machine-id")).expect("link"), Path::new("/etc/machine-id"));
        assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(!root.join("etc/ssh/ssh_host_ed25519_key.pub").exists());
        assert!(root.join("etc/ssh/sshd_config").exists());
        let drop_in = fs::read_to_string(root.join("etc/ssh/sshd_config.d/flvpc.conf")).expect("drop-in");
        assert!(drop_in.contains("PermitRootLogin prohibit-password"));
        assert!(fs::read_to_string(root.join("etc/pam.d/sshd")).expect("pam").contains("optional"));
        let masked = fs::read_link(root.join("etc/systemd/system/systemd-udevd.service")).expect("mask");
        assert_eq!(masked, Path::new("/dev/null"));
        assert!(fs::read_link(root.join("etc/systemd/system/ssh.service.wants").join(HOSTKEYS_UNIT_NAME)).is_ok());
        let mode = fs::metadata(root.join("root/.ssh")).expect("ssh dir").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(!root.join("var/lib/apt/lists/x_Packages").exists());
        assert!(root.join("var/lib/apt/lists/lock").exists());
        assert!(root.join("var/lib/apt/lists/partial").exists());
        assert!(!root.join("var/cache/apt/archives/a.deb").exists());
        // Idempotent: a second pass over the same tree succeeds.
        configure_rootfs(root).expect("configure again");
    }
}
