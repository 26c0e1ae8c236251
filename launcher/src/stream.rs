//! Log lines from the mesh's members, merged into one channel.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// The longest line forwarded whole; the mesh's own lines are far shorter.
const MAX_LINE: usize = 64 * 1024;

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
    follow_logs(docker, container, source, options, lines);
}

/// Forwards the log lines of every task of a swarm service, from the start,
/// to `lines`; with `follow`, also those of tasks that start later, until
/// the service is removed.
pub fn follow_service(docker: Docker, service: String, source: String, follow: bool, lines: mpsc::Sender<Line>) {
    let options = LogsOptionsBuilder::default().follow(follow).stdout(true).stderr(true).tail("all").build();
    tokio::spawn(async move {
        let logs = docker.service_logs(&service, Some(options));
        forward(logs, source, lines).await;
    });
}

/// Forwards the log lines of every task of a swarm service from the second
/// `since` (Unix time) on, until the service is removed.
pub fn follow_service_since(docker: Docker, service: String, source: String, since: i64, lines: mpsc::Sender<Line>) {
    let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).since(since as i32).build();
    tokio::spawn(async move {
        let logs = docker.service_logs(&service, Some(options));
        forward(logs, source, lines).await;
    });
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
    follow_logs(docker, container, source, options, lines);
}

fn follow_logs(
    docker: Docker,
    container: String,
    source: String,
    options: bollard::query_parameters::LogsOptions,
    lines: mpsc::Sender<Line>,
) {
    tokio::spawn(async move {
        let logs = docker.logs(&container, Some(options));
        forward(logs, source, lines).await;
    });
}

/// Forwards log output as lines, until the stream or the receiver ends.
async fn forward(
    logs: impl futures::Stream<Item = Result<LogOutput, bollard::errors::Error>>,
    source: String,
    lines: mpsc::Sender<Line>,
) {
    let mut logs = std::pin::pin!(logs);
    let mut pending = Vec::new();
    while let Some(Ok(output)) = logs.next().await {
        let bytes = match output {
            LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } => message,
            LogOutput::StdIn { .. } => continue,
        };
        pending.extend_from_slice(&bytes);
        // A task's output is any program's: past the cap, a line is cut.
        if pending.len() > MAX_LINE && !pending.contains(&b'\n') {
            pending.truncate(MAX_LINE);
            pending.push(b'\n');
        }
        // Docker may split or join lines across messages.
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if lines.send(Line { source: source.clone(), text }).await.is_err() {
                return;
            }
        }
    }
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
