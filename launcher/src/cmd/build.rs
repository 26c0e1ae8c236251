//! `launcher build`: builds the registry and node images from the workspace
//! sources (static binaries with the local cargo, then `FROM scratch` images
//! through the engine API), and prints each image with its size.

use indicatif::{MultiProgress, ProgressDrawTarget};

use crate::images::engine::EngineError;
use crate::images::{self, Images, Service};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub images: Images,
}

impl Args {
    pub async fn run(self) -> anyhow::Result<()> {
        let docker = crate::runtime::engine::connect().await?;
        let progress = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        images::build(&docker, &self.images, &progress).await?;
        for service in Service::ALL {
            let image = self.images.get(service);
            let size = images::image_size(&docker, image).await?.ok_or_else(|| EngineError::BuildFailed {
                image: image.to_owned(),
                message: "it is gone right after being built".into(),
            })?;
            println!("{image}\t{:.1} MB", size as f64 / 1e6);
        }
        Ok(())
    }
}
