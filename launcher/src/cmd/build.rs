//! `launcher build`: builds the registry and node images from the workspace
//! sources (static binaries with the local cargo, then `FROM scratch` images
//! through the engine API), and with `--etcd` the etcd image that `up
//! --registries` would (so that it can be loaded or pushed for other hosts
//! first), and prints each image with its size.

use indicatif::{MultiProgress, ProgressDrawTarget};

use bollard::Docker;

use crate::images::engine::EngineError;
use crate::images::etcd::{self, EtcdArgs};
use crate::images::{self, Images, Service};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub images: Images,
    /// Also make the etcd image of `up --registries`: built from the etcd
    /// binary at hand, or pulled when --etcd-image names one.
    #[arg(long)]
    pub etcd: bool,
    #[command(flatten)]
    pub etcd_args: EtcdArgs,
}

impl Args {
    pub async fn run(self) -> anyhow::Result<()> {
        let docker = crate::runtime::engine::connect().await?;
        let progress = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        images::build(&docker, &self.images, &progress).await?;
        let mut made: Vec<String> = Service::ALL.iter().map(|&service| self.images.get(service).to_owned()).collect();
        if self.etcd {
            let source = self.etcd_args.source().await?;
            etcd::ensure(&docker, &source, &progress).await?;
            made.push(source.image);
        }
        for image in &made {
            println!("{image}\t{:.1} MB", size(&docker, image).await? as f64 / 1e6);
        }
        Ok(())
    }
}

/// The size of an image just made.
async fn size(docker: &Docker, image: &str) -> anyhow::Result<u64> {
    let size = images::image_size(docker, image).await?;
    Ok(size.ok_or_else(|| EngineError::BuildFailed {
        image: image.to_owned(),
        message: "it is gone right after being built".into(),
    })?)
}
