//! Listing the local images usable for machines.

use bollard::query_parameters::ListImagesOptionsBuilder;

use super::recipe::LABEL_RECIPE;
use super::{parse_tag, ImageError, ImageInfo};
use crate::docker::DockerEngine;
use crate::engine::LABEL_IMAGE;

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

pub(super) async fn find_image(engine: &DockerEngine, reference: &str) -> Result<Option<ImageInfo>, ImageError> {
    let wanted = match parse_tag(reference) {
        Ok((repo, tag)) => format!("{repo}:{tag}"),
        Err(_) => reference.to_owned(),
    };
    Ok(list_images(engine).await?.into_iter().find(|i| i.tag == wanted))
}

/// The recipe version an image was built with (its [`LABEL_RECIPE`]), if it has one.
pub(super) async fn recipe_of(engine: &DockerEngine, reference: &str) -> Result<Option<String>, ImageError> {
    let image = engine
        .client()
        .inspect_image(reference)
        .await
        .map_err(|e| engine.error(format!("inspect image {reference:?}"), e))?;
    Ok(image.config.and_then(|c| c.labels).and_then(|mut labels| labels.remove(LABEL_RECIPE)))
}
