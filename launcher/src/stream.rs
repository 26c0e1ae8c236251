//! Log lines from the mesh's members, merged into one channel.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// One line logged by a member of the mesh (`registry`, `node-3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub source: String,
    pub text: String,
}

/// Forwards a container's log lines, from its start, to `lines`; with
/// `follow`, until the container stops.
pub fn follow_container(docker: Docker, container: String, source: String, follow: bool, lines: mpsc::Sender<Line>) {
    let options = LogsOptionsBuilder::default().follow(follow).stdout(true).stderr(true).tail("all").build();
    forward(docker, container, source, options, lines);
}

/// Forwards a container's log lines from the second `since` (Unix time) on,
/// until it stops.
pub fn follow_container_since(
    docker: Docker,
    container: String,
    source: String,
    since: i64,
    lines: mpsc::Sender<Line>,
) {
    let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).since(since as i32).build();
    forward(docker, container, source, options, lines);
}

fn forward(
    docker: Docker,
    container: String,
    source: String,
    options: bollard::query_parameters::LogsOptions,
    lines: mpsc::Sender<Line>,
) {
    tokio::spawn(async move {
        let mut stream = docker.logs(&container, Some(options));
        let mut pending = Vec::new();
        while let Some(Ok(output)) = stream.next().await {
            let bytes = match output {
                LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } => {
                    message
                }
                LogOutput::StdIn { .. } => continue,
            };
            pending.extend_from_slice(&bytes);
            // Docker may split or join lines across messages.
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                if lines.send(Line { source: source.clone(), text }).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// Forwards a local process's output lines to `lines`.
pub fn follow_reader(reader: impl AsyncRead + Unpin + Send + 'static, source: String, lines: mpsc::Sender<Line>) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader).lines();
        while let Ok(Some(text)) = reader.next_line().await {
            if lines.send(Line { source: source.clone(), text }).await.is_err() {
                return;
            }
        }
    });
}
