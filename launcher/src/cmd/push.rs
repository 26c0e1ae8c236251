//! `launcher push --to REGISTRY/PREFIX`: tags the registry and node images
//! as `REGISTRY/PREFIX/registry:TAG` and `REGISTRY/PREFIX/node:TAG` and
//! pushes them, with the credentials of the usual Docker configuration, so
//! that every host of a swarm can pull them.

use std::fmt;
use std::str::FromStr;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use futures::StreamExt;

use crate::images::{self, credentials, Images, Service};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to push: a registry and a path in it (`ghcr.io/me/hit6`,
    /// `localhost:5000/hit6`, or `me` on Docker Hub).
    #[arg(long, value_name = "REGISTRY/PREFIX")]
    pub to: Prefix,
    #[command(flatten)]
    pub images: Images,
}

/// A repository prefix that image names can be made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// The name `image` (of `service`) is pushed as: its own tag, under the prefix.
    pub fn target(&self, service: Service, image: &str) -> (String, String) {
        let tag = match image.rsplit_once(':') {
            Some((_, tag)) if !tag.contains('/') => tag,
            _ => "latest",
        };
        (format!("{}/{}", self.0, service.name()), tag.to_owned())
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Prefix {
    type Err = String;

    /// Path components as Docker allows them (lowercase letters and digits,
    /// separated by `.`, `_`, `__` or `-`), after an optional registry host
    /// with a port; no tag or digest, which each image brings.
    fn from_str(text: &str) -> Result<Prefix, String> {
        let refuse = |why: &str| Err(format!("`{text}` isn't a REGISTRY/PREFIX: {why}"));
        let mut parts: Vec<&str> = text.split('/').collect();
        if credentials::names_registry(&format!("{text}/x")) {
            let host = parts.remove(0);
            let valid_host = host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
            if !valid_host || host.starts_with(['.', '-', ':']) {
                return refuse("the registry must be a host name, with a port if need be");
            }
        }
        let component = |part: &&str| {
            let bytes = part.as_bytes();
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        };
        if parts.is_empty() || !parts.iter().all(component) {
            return refuse("give the path in it, each part lowercase letters and digits, separated by `.`, `_` or `-`");
        }
        Ok(Prefix(text.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("failed to tag {image} as {target}")]
    Tag {
        image: String,
        target: String,
        #[source]
        source: BollardError,
    },
    #[error("failed to push {target}: is the registry reachable, and are you logged in to it (`docker login`)?")]
    Push {
        target: String,
        #[source]
        source: BollardError,
    },
}

impl Args {
    pub async fn run(self) -> anyhow::Result<()> {
        let docker = crate::runtime::engine::connect().await?;
        let mut pushed = Vec::new();
        for service in Service::ALL {
            let image = self.images.get(service);
            if images::image_size(&docker, image).await?.is_none() {
                anyhow::bail!("the image {image} is not present: build it first with `launcher build`");
            }
            let (repo, tag) = self.to.target(service, image);
            let target = format!("{repo}:{tag}");
            let options = TagImageOptionsBuilder::default().repo(&repo).tag(&tag).build();
            docker.tag_image(image, Some(options)).await.map_err(|source| PushError::Tag {
                image: image.to_owned(),
                target: target.clone(),
                source,
            })?;
            let credentials = credentials::for_image(&target).await?;
            let options = PushImageOptionsBuilder::default().tag(&tag).build();
            let mut progress = docker.push_image(&repo, Some(options), credentials);
            while let Some(step) = progress.next().await {
                step.map_err(|source| PushError::Push { target: target.clone(), source })?;
            }
            eprintln!("pushed {image} as {target}");
            pushed.push(target);
        }
        wire::cli::print(&format!(
            "launcher up --runtime swarm --registry-image {} --node-image {}\n",
            pushed[0], pushed[1]
        ))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_and_make_each_images_name() {
        let prefix: Prefix = "ghcr.io/me/hit6".parse().unwrap();
        assert_eq!(
            prefix.target(Service::Node, "hit6-mesh/node:0.1.0"),
            ("ghcr.io/me/hit6/node".to_owned(), "0.1.0".to_owned())
        );
        let local: Prefix = "localhost:5000/hit6".parse().unwrap();
        assert_eq!(local.target(Service::Registry, "localhost:5000/x/registry").1, "latest");
        assert!("me".parse::<Prefix>().is_ok(), "a Docker Hub account");
        for bad in ["", "ghcr.io", "ghcr.io/", "ghcr.io/Me", "ghcr.io/me/hit6:1.0", "ghcr.io/me//x", "a b", "-x/y"] {
            let error = bad.parse::<Prefix>().unwrap_err();
            assert!(error.contains("isn't a REGISTRY/PREFIX"), "{bad}: {error}");
        }
    }
}
