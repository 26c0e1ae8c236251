//! What a person sees: prefixed, coloured log lines and a progress bar on
//! stderr (through one `MultiProgress`, so lines never tear the bar), and
//! the summary on stdout. `launcher logs` prints its lines on stdout, where
//! they are its result.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use console::{Color, Style};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use node::events::{Event, Record};
use registry::events::{Event as RegistryEvent, Record as RegistryRecord};
use serde_json::Value;

use crate::etcd_log::EtcdRecord;
use crate::mesh::Mesh;
use crate::stream::Line;

const PALETTE: [Color; 6] = [Color::Cyan, Color::Green, Color::Yellow, Color::Magenta, Color::Blue, Color::Red];

pub struct Ui {
    multi: MultiProgress,
    /// indicatif draws nothing, not even `println`, when stderr is not a terminal.
    terminal: bool,
    quiet: bool,
    width: usize,
    /// Log lines go to stdout (`launcher logs`), not stderr.
    lines_to_stdout: bool,
    styles: Mutex<HashMap<String, Style>>,
    bar: ProgressBar,
}

impl Ui {
    /// `sources` are the names that prefix log lines, to align them.
    pub fn new(quiet: bool, sources: &[String]) -> Ui {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bar = multi.add(ProgressBar::hidden());
        let terminal = console::Term::stderr().is_term();
        let width = sources.iter().map(String::len).max().unwrap_or(0);
        Ui { multi, terminal, quiet, width, lines_to_stdout: false, styles: Mutex::default(), bar }
    }

    /// For `launcher logs`: every line on stdout, and no progress.
    pub fn for_logs(sources: &[String]) -> Ui {
        Ui { lines_to_stdout: true, ..Ui::new(false, sources) }
    }

    pub fn multi(&self) -> &MultiProgress {
        &self.multi
    }

    /// A message from the launcher itself.
    pub fn note(&self, text: &str) {
        self.print(text);
    }

    fn print(&self, text: &str) {
        log(&self.multi, text);
    }

    /// Whether log lines are shown; when not, they need not be rendered.
    pub fn shows_lines(&self) -> bool {
        !self.quiet
    }

    /// A line logged by `source`, as `source | text`, unless quiet. Only
    /// writing to stdout can fail (a reader that went away).
    pub fn line(&self, source: &str, text: &str) -> std::io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        let style = {
            let mut styles = wire::lock(&self.styles);
            let next = PALETTE[styles.len() % PALETTE.len()];
            let style = Style::new().fg(next);
            let style = if self.lines_to_stdout { style.for_stdout() } else { style.for_stderr() };
            styles.entry(source.to_owned()).or_insert(style).clone()
        };
        let line = format!("{} {text}", style.apply_to(format!("{source:<width$} |", width = self.width)));
        if self.lines_to_stdout {
            return wire::cli::print(&(line + "\n"));
        }
        self.print(&line);
        Ok(())
    }

    /// Shows greetings done over greetings expected, once the total is known.
    pub fn progress(&self, mesh: &Mesh) {
        let Some(expected) = mesh.expected() else { return };
        if self.bar.is_hidden() && self.terminal && !self.quiet {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("greetings {bar:40.cyan/blue} {pos}/{len} {elapsed}")
                .expect("the template is valid");
            self.bar.set_style(style);
        }
        self.bar.set_length(expected);
        self.bar.set_position(mesh.received().min(expected));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// An event a log line carries, read through its emitter's own types.
// A node's record has more fields than the registry's; one lives for one
// line, so boxing it would cost an allocation per line and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    Node(Record),
    Registry(RegistryRecord),
    Etcd(EtcdRecord),
}

/// The event a log line carries, if any, by who logged it: a registry
/// (`registry`, or a replica, `registry-2`), an etcd member (`etcd-1`), or
/// a node.
pub fn record(line: &Line) -> Option<Logged> {
    let source = line.source.as_str();
    if source == "registry" || source.starts_with("registry-") {
        RegistryRecord::parse(&line.text).map(Logged::Registry)
    } else if source.starts_with("etcd-") {
        EtcdRecord::parse(&line.text).map(Logged::Etcd)
    } else {
        Record::parse(&line.text).map(Logged::Node)
    }
}

/// A log line in words, given the event it carries.
pub fn render(line: &Line, record: Option<&Logged>) -> String {
    match record {
        Some(Logged::Node(record)) => describe(record),
        Some(Logged::Registry(record)) => describe_registry(record),
        Some(Logged::Etcd(record)) => record.msg.clone(),
        None => match serde_json::from_str::<Value>(&line.text) {
            Ok(value) => describe_json(&value),
            Err(_) => line.text.clone(),
        },
    }
}

/// A registry event in words: `registered node-3 at 172.18.0.1:8089 in group 2 (2 earlier contacts)`.
pub fn describe_registry(record: &RegistryRecord) -> String {
    let entry = || format!("{} at {}", text(&record.name), text(&record.addr));
    match record.event {
        RegistryEvent::Listening => format!(
            "listening on {}, leases of {}, {} groups",
            text(&record.addr),
            text(&record.ttl),
            record.groups.unwrap_or(0)
        ),
        RegistryEvent::Assigning => format!("the group lab's assigner is listening on {}", text(&record.addr)),
        RegistryEvent::ServingHttp => format!("serving /metrics and /health on {}", text(&record.addr)),
        RegistryEvent::Open => {
            format!("open at {}: anyone who reaches it may join (no join token)", text(&record.addr))
        }
        RegistryEvent::Registered => format!(
            "registered {}{} ({} earlier contacts)",
            entry(),
            record.group.map(|g| format!(" in group {g}")).unwrap_or_default(),
            record.contacts.unwrap_or(0)
        ),
        RegistryEvent::Deregistered => format!("deregistered {}", entry()),
        RegistryEvent::Expired => format!("the lease of {} expired", entry()),
        RegistryEvent::SessionLost => format!("lost the session of {}: it is gone", entry()),
        RegistryEvent::Unauthorized => {
            format!("refused {} without the join token: {}", text(&record.peer), text(&record.reason))
        }
        RegistryEvent::WatcherCutOff => format!("cut off watcher {}: {}", text(&record.peer), text(&record.reason)),
        RegistryEvent::ShuttingDown => "shutting down".to_owned(),
    }
}

/// A node event in words: `greeted node-1 (172.18.0.1:8087)`.
pub fn describe(record: &Record) -> String {
    let peer = || format!("{} ({})", text(&record.peer_name), text(&record.peer_addr));
    match record.event {
        Event::Listening => format!("listening on {}, advertising {}", text(&record.listen), text(&record.addr)),
        Event::ServingHttp => format!("serving /metrics and /health on {}", text(&record.addr)),
        Event::Registered | Event::Reregistered => format!(
            "{}registered as {} at {}{}: {} contacts to greet",
            if record.event == Event::Reregistered { "re-" } else { "" },
            text(&record.name),
            text(&record.addr),
            record.group.map(|g| format!(" in group {g}")).unwrap_or_default(),
            record.to_greet.unwrap_or(0)
        ),
        Event::RegistrationRefused => format!("registration refused: {}", text(&record.error)),
        Event::RegistryUnreachable => {
            format!(
                "registry {} unreachable (attempt {}): {}",
                text(&record.registry),
                record.attempt.unwrap_or(0),
                text(&record.error)
            )
        }
        Event::RegistryMoved => format!(
            "moved from registry {} to {}, {} ms after it failed: {}",
            text(&record.from),
            text(&record.to),
            record.after_ms.unwrap_or(0),
            text(&record.error)
        ),
        Event::Watching => "following the membership".to_owned(),
        Event::PeersJoined => format!("{} joined", record.peers().collect::<Vec<_>>().join(", ")),
        Event::PeerLeft => format!("{} left: {}", peer(), text(&record.reason)),
        Event::GreetingSent => format!("greeted {}", peer()),
        Event::GreetingFailed => format!("failed to greet {}: {}", peer(), text(&record.error)),
        Event::GreetingReceived => format!("greeting from {}", peer()),
        Event::GreetingRejected => format!("refused a greeting from {}: {}", text(&record.from), text(&record.reason)),
        Event::GroupMessageRejected => {
            format!(
                "refused a group {} delivery from {}: {}",
                record.group.unwrap_or(0),
                text(&record.from),
                text(&record.reason)
            )
        }
        Event::GroupMessageReceived => format!(
            "group {} message from {} via {}: {}",
            record.group.unwrap_or(0),
            text(&record.sender),
            text(&record.coordinator),
            text(&record.text)
        ),
        Event::OriginalMemberJoined => {
            format!("{} joined group {} with JOIN (plaintext)", text(&record.from), record.group.unwrap_or(0))
        }
        Event::OriginalMemberLeft => {
            format!("{} left group {}: {}", text(&record.from), record.group.unwrap_or(0), text(&record.reason))
        }
        Event::Deregistered => "deregistered".to_owned(),
    }
}

/// Any other JSON log line: its event or message, then its fields.
pub fn describe_json(line: &Value) -> String {
    let Value::Object(fields) = line else { return line.to_string() };
    let mut out = String::new();
    for key in ["event", "message"] {
        if let Some(Value::String(s)) = fields.get(key) {
            let _ = write!(out, "{s} ");
        }
    }
    for (key, value) in fields {
        if !matches!(key.as_str(), "event" | "message" | "timestamp" | "level" | "target") {
            let value = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            let _ = write!(out, "{key}={value} ");
        }
    }
    out.trim_end().to_owned()
}

fn text(field: &Option<impl std::fmt::Display>) -> &dyn std::fmt::Display {
    match field {
        Some(value) => value,
        None => &"?",
    }
}

/// Prints the summary on stdout, as text or JSON.
pub fn print_summary(mesh: &Mesh, elapsed: Duration, json: bool) -> std::io::Result<()> {
    if json {
        wire::cli::print(&format!("{}\n", summary_json(mesh, elapsed)))
    } else {
        wire::cli::print(&summary(mesh, elapsed))
    }
}

/// The per-node summary table.
pub fn summary(mesh: &Mesh, elapsed: Duration) -> String {
    let nodes = mesh.nodes();
    let mut out = format!("mesh complete: {} nodes, {} greetings in {:.2?}\n", nodes.len(), mesh.received(), elapsed);
    let _ = writeln!(
        out,
        "{:<12} {:>5} {:>9}  {:<22} {:>5} {:>8} {:>6}",
        "NODE", "GROUP", "HOST PORT", "ADVERTISED", "SENT", "RECEIVED", "FAILED"
    );
    for (name, stats) in nodes {
        let port = stats.host_port.map_or("-".to_owned(), |p| p.to_string());
        let group = stats.group.map_or("-".to_owned(), |g| g.to_string());
        let advertised = stats.advertised.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{name:<12} {group:>5} {port:>9}  {advertised:<22} {:>5} {:>8} {:>6}",
            stats.sent, stats.received, stats.failed
        );
    }
    out
}

/// The summary as one JSON object, for scripts and tests.
pub fn summary_json(mesh: &Mesh, elapsed: Duration) -> Value {
    let nodes: Vec<Value> = mesh
        .nodes()
        .iter()
        .map(|(name, stats)| {
            serde_json::json!({
                "name": name,
                "group": stats.group,
                "host_port": stats.host_port,
                "advertised": stats.advertised,
                "sent": stats.sent,
                "received": stats.received,
                "failed": stats.failed,
            })
        })
        .collect();
    serde_json::json!({
        "complete": mesh.is_complete(),
        "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "greetings": mesh.received(),
        "nodes": nodes,
    })
}

/// A spinner for a step whose length is unknown, named by `prefix`.
pub fn spinner(prefix: String) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}")
        .expect("the template is valid");
    let bar = ProgressBar::new_spinner().with_style(style).with_prefix(prefix);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Prints a line above the bars, or to stderr when the bars are hidden
/// (stderr is not a terminal), where `MultiProgress::println` prints nothing.
pub fn log(progress: &MultiProgress, line: &str) {
    if progress.is_hidden() {
        eprintln!("{line}");
    } else {
        let _ = progress.println(line);
    }
}

/// Progress for when no bars are drawn: one line per step.
pub fn log_if_hidden(progress: &MultiProgress, line: &str) {
    if progress.is_hidden() {
        eprintln!("{line}");
    }
}

/// A size in MB (10^6 bytes), as Docker shows image sizes.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Time since `since`, as `4.2s` or `3m07s`.
pub fn elapsed(since: Instant) -> String {
    let seconds = since.elapsed().as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        format!("{}m{:02}s", seconds as u64 / 60, seconds as u64 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_node_events_in_words() {
        let record: Record = serde_json::from_value(serde_json::json!({
            "event": "greeting_sent", "peer_name": "node-1", "peer_addr": "172.18.0.1:8087"
        }))
        .unwrap();
        assert_eq!(describe(&record), "greeted node-1 (172.18.0.1:8087)");
    }

    #[test]
    fn describes_registry_events_in_words() {
        let line = Line { source: "registry".into(), text: registry_line() };
        let logged = record(&line).expect("a registry event");
        assert_eq!(
            render(&line, Some(&logged)),
            "registered node-3 at 172.18.0.1:8089 in group 2 (2 earlier contacts)"
        );
        let from_a_node = Line { source: "node-1".into(), text: registry_line() };
        assert!(matches!(record(&from_a_node), Some(Logged::Node(_))), "lines are read by who logged them");
    }

    /// What the registry logs when a node registers, as it writes it.
    fn registry_line() -> String {
        let entry = registry::protocol::Contact {
            id: "ab-3".into(),
            name: "node-3".into(),
            ip: [172, 18, 0, 1].into(),
            puerto: 8089,
            group: Some(2),
            key: None,
        };
        let lines =
            wire::telemetry::capture(|| registry::events::registered(&entry, registry::protocol::Dialect::Native, 2));
        lines.into_iter().next().expect("one line")
    }

    #[test]
    fn describes_other_json_by_message_and_fields() {
        let line = serde_json::json!({"timestamp":"t","level":"WARN","message":"failed to accept","error":"EMFILE","target":"x"});
        assert_eq!(describe_json(&line), "failed to accept error=EMFILE");
    }

    #[test]
    fn summary_lists_every_node() {
        let mesh = Mesh::new([("node-1".to_owned(), Some(8087)), ("node-2".to_owned(), Some(8088))]);
        let text = summary(&mesh, Duration::from_millis(1500));
        assert!(text.starts_with("mesh complete: 2 nodes, 0 greetings in 1.50s"), "{text}");
        assert!(text.contains("node-1") && text.contains("8088"), "{text}");
    }
}
