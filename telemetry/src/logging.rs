//! The tracing subscriber every binary installs: text for a terminal, or one JSON object per
//! line for a log pipeline.
//!
//! A JSON line has `timestamp`, `level`, `message`, the event's other fields, and `target`:
//!
//! ```text
//! {"timestamp":"2026-12-03T04:05:06.789Z","level":"INFO","message":"listening on 127.0.0.1:7070","target":"flow_store"}
//! ```

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::time::FormatTime as _;

use crate::TelemetryError;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the process's tracing subscriber, writing to stderr in `format`, with the binary's
/// own `filter`. `show_target` adds the module path to text lines (JSON lines always carry it).
/// Fails if a subscriber was installed already.
pub fn init_logging(
    format: LogFormat,
    filter: EnvFilter,
    show_target: bool,
) -> Result<(), TelemetryError> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(show_target)
            .try_init(),
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .try_init()
        }
    };
    installed.map_err(|e| TelemetryError::Logging(e.to_string()))
}

/// True once [`init_logging`] installed the JSON format: then the scripts' log lines go into
/// this log too (one JSON object each), not to stdout in mitmdump's format.
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Writes a line that must reach stderr whatever the log filter says (an address a caller waits
/// for), in the installed format.
pub(crate) fn announce(message: &str) {
    let line = if JSON.load(Ordering::Relaxed) {
        let mut timestamp = String::new();
        let _ = tracing_subscriber::fmt::time::SystemTime.format_time(
            &mut tracing_subscriber::fmt::format::Writer::new(&mut timestamp),
        );
        serde_json::json!({
            "timestamp": timestamp,
            "level": "INFO",
            "message": message,
            "target": "flowtap_telemetry::server",
        })
        .to_string()
    } else {
        message.to_string()
    };
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
    let _ = stderr.flush();
}
