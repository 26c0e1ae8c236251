//! Pulling an image, with a status line and a progress bar per layer.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{CreateImageInfo, ProgressDetail};
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::ui;

/// A pull that failed: the request, or an error the stream reported.
#[derive(Debug, thiserror::Error)]
#[error("failed to pull the image {image}")]
pub struct PullError {
    pub image: String,
    #[source]
    pub source: BollardError,
}

/// Pulls `image`, with one bar per layer.
pub async fn pull(docker: &Docker, image: &str, progress: &MultiProgress) -> Result<(), PullError> {
    let (name, tag) = split_reference(image);
    let options = CreateImageOptionsBuilder::default().from_image(name).tag(tag).build();
    ui::log_if_hidden(progress, &format!("pulling {image}"));
    let mut bars = PullProgress::new(progress, image);
    let mut stream = docker.create_image(Some(options), None, None);
    let failed = |source| PullError { image: image.to_owned(), source };
    let result = loop {
        match stream.next().await {
            None => break Ok(()),
            Some(Ok(info)) => {
                if let Err(error) = bars.show(info) {
                    break Err(failed(BollardError::DockerStreamError { error }));
                }
            }
            Some(Err(source)) => break Err(failed(source)),
        }
    };
    bars.finish(result.is_ok());
    result
}

/// A pull's bars: a status line, and one bar per layer with a known size.
struct PullProgress<'a> {
    multi: &'a MultiProgress,
    status: ProgressBar,
    layers: HashMap<String, ProgressBar>,
    layer_style: ProgressStyle,
}

impl<'a> PullProgress<'a> {
    fn new(multi: &'a MultiProgress, image: &str) -> Self {
        let layer_style = ProgressStyle::with_template("  {prefix:.dim} [{bar:30}] {bytes}/{total_bytes} {wide_msg}")
            .expect("the template is valid")
            .progress_chars("=> ");
        let status = multi.add(ui::spinner(image.to_owned()).with_message("pulling"));
        PullProgress { multi, status, layers: HashMap::new(), layer_style }
    }

    /// Shows one item of the pull stream, or returns the error it carries.
    fn show(&mut self, info: CreateImageInfo) -> Result<(), String> {
        if let Some(detail) = info.error_detail {
            return Err(detail.message.unwrap_or_else(|| "the daemon reported an error".into()));
        }
        let message = info.status.unwrap_or_default();
        match (info.id, info.progress_detail) {
            (Some(id), Some(ProgressDetail { current: Some(current), total: Some(total) })) if total > 0 => {
                let bar = self.layers.entry(id.clone()).or_insert_with(|| {
                    self.multi.add(ProgressBar::new(total as u64).with_style(self.layer_style.clone()).with_prefix(id))
                });
                bar.set_length(total as u64);
                bar.set_position(current.clamp(0, total) as u64);
                bar.set_message(message);
            }
            (Some(id), _) => match self.layers.get(&id) {
                Some(bar) if message.contains("complete") || message.contains("Already exists") => {
                    bar.set_position(bar.length().unwrap_or(0));
                    bar.set_message(message);
                }
                Some(bar) => bar.set_message(message),
                None => self.status.set_message(format!("{id}: {message}")),
            },
            (None, _) => self.status.set_message(message),
        }
        Ok(())
    }

    fn finish(&self, pulled: bool) {
        for bar in self.layers.values() {
            bar.finish_and_clear();
        }
        if pulled {
            self.status.finish_with_message("pulled");
        } else {
            self.status.finish_and_clear();
        }
    }
}

/// A reference split into what the pull API wants: the name, and a tag or
/// digest (`latest` when there is neither).
pub fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name, digest);
    }
    // A colon after the last slash starts the tag; one before it is a registry port.
    let last_part = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[last_part..].rfind(':') {
        Some(colon) => (&reference[..last_part + colon], &reference[last_part + colon + 1..]),
        None => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references_for_pulling() {
        assert_eq!(split_reference("hit6-mesh/node:0.1.0"), ("hit6-mesh/node", "0.1.0"));
        assert_eq!(split_reference("hit6-mesh/node"), ("hit6-mesh/node", "latest"));
        assert_eq!(split_reference("localhost:5000/node"), ("localhost:5000/node", "latest"));
        assert_eq!(split_reference("localhost:5000/node:dev"), ("localhost:5000/node", "dev"));
        assert_eq!(split_reference("node@sha256:abc"), ("node", "sha256:abc"));
    }

    #[test]
    fn pull_progress_shows_one_bar_per_layer_and_stops_at_errors() {
        let multi = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let mut bars = PullProgress::new(&multi, "hit6-mesh/node:0.1.0");
        let item = |id: Option<&str>, status: &str, progress: Option<(i64, i64)>| CreateImageInfo {
            id: id.map(str::to_owned),
            status: Some(status.to_owned()),
            progress_detail: progress
                .map(|(current, total)| ProgressDetail { current: Some(current), total: Some(total) }),
            ..Default::default()
        };
        bars.show(item(None, "Pulling from hit6-mesh/node", None)).unwrap();
        bars.show(item(Some("a1"), "Pulling fs layer", None)).unwrap();
        bars.show(item(Some("a1"), "Downloading", Some((500, 2000)))).unwrap();
        bars.show(item(Some("b2"), "Downloading", Some((10, 100)))).unwrap();
        assert_eq!(bars.layers.len(), 2);
        assert_eq!((bars.layers["a1"].position(), bars.layers["a1"].length()), (500, Some(2000)));
        bars.show(item(Some("a1"), "Download complete", None)).unwrap();
        assert_eq!(bars.layers["a1"].position(), 2000);
        assert_eq!(bars.layers["a1"].message(), "Download complete");
        assert_eq!(bars.status.message(), "a1: Pulling fs layer");

        let error = CreateImageInfo {
            error_detail: Some(bollard::models::ErrorDetail { code: None, message: Some("manifest unknown".into()) }),
            ..Default::default()
        };
        assert_eq!(bars.show(error), Err("manifest unknown".to_owned()));
        bars.finish(false);
    }
}
