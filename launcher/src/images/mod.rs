//! The registry and node images: present, pulled, or built from the workspace.
//!
//! Each image is `FROM scratch` with one statically linked binary (static
//! glibc: `-C target-feature=+crt-static` with an explicit `--target`, so no
//! musl target is needed).
//!
//! - [`ensure`]: used by `up`; present images are used, missing ones pulled,
//!   and built from the workspace when pulling fails.
//! - [`build`]: `launcher build`; static binaries with cargo, then one image
//!   build per service through the engine API (no base image, no BuildKit).
//!
//! # Layout
//! - [`binaries`]: the registry and node binaries built by cargo, static (for
//!   the images) or native (for `up --runtime local`).
//! - [`pull`]: pulling an image, with a progress bar per layer.
//! - [`credentials`]: an image registry's credentials, from the Docker
//!   configuration, for `launcher push` and swarm services.
//! - [`engine`]: building an image through the engine API from a binary and
//!   the runtime stage of its Dockerfile.
//! - [`service`]: the two images, the programs they ship, and whether an
//!   image is present.
//! - [`etcd`]: the etcd image of a project with registry replicas: an
//!   official one, or one built here from an etcd binary and the libraries
//!   it needs, through [`engine`] as ours are.

pub mod binaries;
pub mod credentials;
pub mod engine;
pub mod etcd;
pub mod pull;
pub mod service;

pub use engine::{ASSIGNER_CONTAINER_PORT, CONTAINER_PORT, HTTP_CONTAINER_PORT};
pub use service::{image_size, ImageError, Images, Service};

use std::path::Path;

use bollard::Docker;
use indicatif::MultiProgress;
use wire::Chain;

use crate::ui;
use binaries::BinaryKind;

/// Makes sure both images exist: present ones are used, missing ones are
/// pulled, and if pulling fails and the workspace sources are at hand,
/// built locally.
pub async fn ensure(docker: &Docker, images: &Images, progress: &MultiProgress) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for service in Service::ALL {
        let image = images.get(service);
        if image_size(docker, image).await?.is_some() {
            continue;
        }
        match pull::pull(docker, image, progress).await {
            Ok(()) if image_size(docker, image).await?.is_some() => {}
            Ok(()) => missing.push((service, "the pull ended but the image is still not there".to_owned())),
            // The message says the pull failed already: keep only why.
            Err(error) => missing.push((service, Chain(&error.source).to_string())),
        }
    }
    let Some((first, reason)) = missing.first() else { return Ok(()) };
    let Some(root) = binaries::workspace_root() else {
        let image = images.get(*first).to_owned();
        return Err(ImageError::Missing { image, service: first.name(), reason: reason.clone() }.into());
    };
    for (service, reason) in &missing {
        ui::log(
            progress,
            &format!(
                "{} is not present and pulling it failed ({reason}); building it from the workspace at {}",
                images.get(*service),
                root.display()
            ),
        );
    }
    let services: Vec<Service> = missing.iter().map(|(service, _)| *service).collect();
    build_services(docker, images, &services, &root, progress).await?;
    Ok(())
}

/// Builds both images from the workspace sources, with no base image.
pub async fn build(docker: &Docker, images: &Images, progress: &MultiProgress) -> anyhow::Result<()> {
    let root = binaries::workspace_root().ok_or(binaries::BinaryError::NoWorkspace)?;
    build_services(docker, images, &Service::ALL, &root, progress).await?;
    Ok(())
}

async fn build_services(
    docker: &Docker,
    images: &Images,
    services: &[Service],
    root: &Path,
    progress: &MultiProgress,
) -> anyhow::Result<()> {
    let dir = binaries::cargo_build(root, BinaryKind::Static, progress).await?;
    for &service in services {
        engine::build_service_image(docker, service, images.get(service), &dir.join(service.name()), progress).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_image_error_says_how_to_build_it() {
        let error = ImageError::Missing {
            image: "hit6-mesh/node:0.1.0".into(),
            service: "node",
            reason: "no such host".into(),
        };
        let text = error.to_string();
        assert!(text.contains("hit6-mesh/node:0.1.0 is not present and pulling it failed (no such host)"), "{text}");
        assert!(text.contains("launcher build --node-image hit6-mesh/node:0.1.0"), "{text}");
        assert!(text.contains("docker build -f docker/node.Dockerfile -t hit6-mesh/node:0.1.0 ."), "{text}");
    }
}
