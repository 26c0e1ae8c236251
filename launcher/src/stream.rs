//! Log lines from the mesh's members, merged into one channel.

use bollard::container::LogOutput;
use bollard::query_parameters::{LogsOptions, LogsOptionsBuilder};
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

/// Which of a member's log lines to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// From its start; with `follow`, then the new ones until it ends.
    All { follow: bool },
    /// From the second `since` (Unix time) on, until it ends.
    Since(i64),
}

impl Reading {
    fn options(self) -> LogsOptions {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true);
        match self {
            Reading::All { follow } => options.follow(follow).tail("all"),
            Reading::Since(since) => options.follow(true).since(since as i32),
        }
        .build()
    }
}

/// Forwards a container's log lines to `lines`.
pub fn follow_container(
    docker: Docker,
    container: String,
    source: String,
    reading: Reading,
    lines: mpsc::Sender<Line>,
) {
    tokio::spawn(async move {
        let logs = docker.logs(&container, Some(reading.options()));
        forward(logs, source, lines).await;
    });
}

/// Forwards the log lines of every task of a swarm service to `lines`;
/// when following, also those of tasks that start later, until the
/// service is removed.
pub fn follow_service(docker: Docker, service: String, source: String, reading: Reading, lines: mpsc::Sender<Line>) {
    tokio::spawn(async move {
        let logs = docker.service_logs(&service, Some(reading.options()));
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
