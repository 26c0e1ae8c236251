//! Log output shared by the services.
//!
//! Every event that other programs rely on carries a stable `event` field,
//! which shows in both formats: `event=<name>` in text, and
//! `"event":"<name>"` in JSON, one object per line with the fields at the
//! top level. Each service names its events in an enum of its own
//! (`registry::events`, `node::events`) that also parses them back.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stdout at `info`, or at what `RUST_LOG` says.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only help a terminal; in `docker logs` or a file they are noise.
    let ansi = std::io::stdout().is_terminal();
    let subscriber = subscriber(format, filter, std::io::stdout, ansi);
    tracing::subscriber::set_global_default(subscriber).expect("logging is set up once, first thing");
}

/// The subscriber behind [`init`], writing to `writer`.
pub fn subscriber<W>(format: LogFormat, filter: EnvFilter, writer: W, ansi: bool) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => {
            Box::new(builder.json().flatten_event(true).with_current_span(false).with_span_list(false).finish())
        }
    }
}

/// Runs `emit` with JSON logging at `debug` into a buffer, and returns the
/// lines it logged, exactly as a service would write them.
#[cfg(feature = "test-support")]
pub fn capture(emit: impl FnOnce()) -> Vec<String> {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            crate::lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = subscriber(LogFormat::Json, EnvFilter::new("debug"), move || writer.clone(), false);
    tracing::subscriber::with_default(subscriber, emit);
    let text = String::from_utf8(crate::lock(&buffer.0).clone()).expect("logs are UTF-8");
    text.lines().map(str::to_owned).collect()
}

/// Declares a service's log events: an enum whose variants are written with
/// their stable names once, and get `as_str`, `Display` and serde both ways
/// from that one list.
///
/// ```
/// wire::log_events! {
///     /// What a toy service logs.
///     pub enum Event {
///         Started => "started",
///         Stopped => "stopped",
///     }
/// }
/// assert_eq!(Event::Started.as_str(), "started");
/// assert_eq!(serde_json::to_string(&Event::Stopped).unwrap(), "\"stopped\"");
/// ```
#[macro_export]
macro_rules! log_events {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $(#[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// The event's stable name, as its `event` field carries it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
