//! Copying an image from one engine to another: `docker save | docker load` through the API.
//!
//! flvpc never pulls (no registry is assumed): a host that joins gets the images it runs from
//! an engine that has them. The export is streamed into the import as it arrives: no temporary
//! file, and no more in memory than the chunks in flight between the two connections. The image
//! archive holds the image's configuration, so its labels (the recipe version among them)
//! arrive with it, and its ID is the same on both engines.

use futures::StreamExt;

use crate::docker::DockerEngine;
use crate::engine::EngineError;

/// What [`copy_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The target already had the image with the same ID: nothing was sent.
    AlreadyThere,
    /// The image was sent; this many bytes of archive.
    Sent {
        /// Size of the archive streamed.
        bytes: u64,
    },
}

/// Copies `image` (a reference such as `flvpc/debian:12`) from `from` to `to`; a no-op when `to`
/// already has that reference with the same image ID.
pub async fn copy_image(from: &DockerEngine, to: &DockerEngine, image: &str) -> Result<Copied, EngineError> {
    let source_id = image_id(from, image).await?.ok_or_else(|| EngineError::ImageNotFound { image: image.into() })?;
    if image_id(to, image).await?.as_deref() == Some(source_id.as_str()) {
        return Ok(Copied::AlreadyThere);
    }
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = sent.clone();
    let export = from.client().export_image(image).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            counted.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        chunk
    });
    let options = bollard::query_parameters::ImportImageOptionsBuilder::default().quiet(true).build();
    // A load of a few hundred MB outlasts the ordinary API timeout.
    let target = to.client().clone().with_timeout(std::time::Duration::from_secs(3600));
    let mut progress = target.import_image_stream(options, export, None);
    while let Some(step) = progress.next().await {
        let step = step.map_err(|e| to.error(format!("load image {image:?} from {}", from.socket()), e))?;
        if let Some(error) = step.error_detail.and_then(|d| d.message) {
            return Err(EngineError::Docker {
                action: format!("load image {image:?} from {}", from.socket()),
                detail: error,
            });
        }
    }
    match image_id(to, image).await? {
        Some(id) if id == source_id => Ok(Copied::Sent { bytes: sent.load(std::sync::atomic::Ordering::Relaxed) }),
        other => Err(EngineError::Docker {
            action: format!("load image {image:?} from {}", from.socket()),
            detail: format!("the target has {other:?} under that name afterwards, not {source_id}"),
        }),
    }
}

async fn image_id(engine: &DockerEngine, image: &str) -> Result<Option<String>, EngineError> {
    match engine.client().inspect_image(image).await {
        Ok(inspected) => Ok(inspected.id),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(engine.error(format!("inspect image {image:?}"), e)),
    }
}
