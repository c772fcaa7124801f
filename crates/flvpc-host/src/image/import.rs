//! Packing the root file system into a one-layer image and loading it into Docker under
//! its tag, with an image config written here.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::ImportImageOptionsBuilder;
use futures::StreamExt;
use tokio::process::Command;

use super::recipe::{Recipe, LABEL_RECIPE};
use super::scratch::ScratchDir;
use super::{io_err, spawn_error, ImageError, Phase, Progress};
use crate::docker::DockerEngine;
use crate::engine::LABEL_IMAGE;

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
fn image_config(recipe: &Recipe, diff_id: &str, created: &str) -> serde_json::Value {
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
            "Cmd": recipe.cmd,
            "Env": recipe.env,
            "StopSignal": recipe.stop_signal,
            "ExposedPorts": recipe.exposed_ports.iter().map(|p| ((*p).to_owned(), serde_json::json!({})))
                .collect::<serde_json::Map<_, _>>(),
            "Labels": { LABEL_IMAGE: recipe.name, LABEL_RECIPE: recipe.version }
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created": created, "created_by": format!("flvpc image build {} (debootstrap)", recipe.name) }]
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
pub(super) async fn import(
    engine: &DockerEngine,
    recipe: &Recipe,
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
    let config = serde_json::to_vec(&image_config(recipe, &diff_id, &created))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_config_makes_systemd_stop_cleanly() {
        let config = image_config(&super::super::recipe::DEBIAN12, "ab12", "2026-01-01T00:00:00Z");
        assert_eq!(config["config"]["StopSignal"], "SIGRTMIN+3");
        assert_eq!(config["config"]["Cmd"][0], "/sbin/init");
        assert_eq!(config["config"]["Labels"][LABEL_IMAGE], "debian-12");
        assert_eq!(config["config"]["Labels"][LABEL_RECIPE], super::super::recipe::RECIPE_VERSION);
        assert_eq!(config["config"]["ExposedPorts"]["22/tcp"], serde_json::json!({}));
        assert_eq!(config["rootfs"]["diff_ids"][0], "sha256:ab12");
        assert_eq!(tar_padding(512).len(), 0);
        assert_eq!(tar_padding(513).len(), 511);
        assert_eq!(tar_entry_header("a/layer.tar", 5).expect("header").len(), 512);
    }
}
