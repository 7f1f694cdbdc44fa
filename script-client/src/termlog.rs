//! The scripts' log lines on standard output, as mitmdump prints them (its `termlog` addon):
//!
//! ```text
//! [12:34:56.789] a line a script logged
//! ```
//!
//! local time to the millisecond, then the message (with a traceback on the lines after it),
//! coloured on a terminal (the time dim cyan; errors red, warnings yellow, alerts magenta).
//! Records below `termlog_verbosity` are left out. A worker the proxy spawned prints its
//! scripts' lines itself (it shares this process's standard output, and its lines stay in order
//! with the scripts' `print()`); this module prints the records a shared worker sends, and the
//! errors the worker reports in a hook's reply without logging them. With `--log-format json`
//! they go into the JSON log on stderr instead (target `script`), one object per record.

use std::io::{IsTerminal, Write};

use flowtap_proto::v1;

/// mitmproxy's levels in rising order: `debug`, `alert` is between info and warn.
fn rank(level: &str) -> u8 {
    match level {
        "debug" => 0,
        "info" => 1,
        "alert" => 2,
        "warn" | "warning" => 3,
        "error" => 4,
        _ => 1,
    }
}

/// Prints log lines at or above a verbosity.
#[derive(Clone, Debug)]
pub(crate) struct Termlog {
    threshold: u8,
    colorize: bool,
    /// `--log-format json`: the lines go into the process's (JSON) log instead, target
    /// `script`, for a log pipeline.
    json: bool,
}

impl Termlog {
    /// At `termlog_verbosity` as the proxy's options give it (info when absent).
    pub(crate) fn from_options(options: &[v1::Option]) -> Self {
        let verbosity = options
            .iter()
            .find(|o| o.name == "termlog_verbosity")
            .and_then(|o| o.value.as_ref()?.kind.as_ref())
            .and_then(|kind| match kind {
                v1::option_value::Kind::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .unwrap_or("info");
        Self {
            threshold: rank(verbosity),
            colorize: std::io::stdout().is_terminal(),
            json: flowtap_telemetry::logging::is_json(),
        }
    }

    /// Prints `message` at `level` ("debug", "info", "alert", "warn", "error") unless it is
    /// below the verbosity.
    pub(crate) fn print(&self, level: &str, message: &str) {
        if rank(level) < self.threshold {
            return;
        }
        if self.json {
            match level {
                "error" => tracing::error!(target: "script", "{message}"),
                "warn" | "warning" => tracing::warn!(target: "script", "{message}"),
                "debug" => tracing::debug!(target: "script", "{message}"),
                _ => tracing::info!(target: "script", %level, "{message}"),
            }
            return;
        }
        let line = format_line(&clock(), level, message, self.colorize);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// One line (and the lines of a multi-line message) as mitmdump's `MitmFormatter` writes it.
pub(crate) fn format_line(time: &str, level: &str, message: &str, colorize: bool) -> String {
    if !colorize {
        return format!("[{time}] {message}\n");
    }
    let color = match level {
        "error" => "\x1b[31m",
        "warn" | "warning" => "\x1b[33m",
        "alert" => "\x1b[35m",
        _ => "",
    };
    format!("\x1b[36m\x1b[2m[{time}]\x1b[0m {color}{message}\x1b[0m\n")
}

/// The local time now as `HH:MM:SS.mmm`.
fn clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = libc::time_t::try_from(now.as_secs()).unwrap_or_default();
    // SAFETY: localtime_r only writes the `tm` it is given; an all-zero `tm` is a valid value
    // of that plain C struct.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&seconds, &mut tm).is_null() {
            return format!("{:02}.{:03}", now.as_secs() % 60, now.subsec_millis());
        }
        tm
    };
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_mitmdump_formats_them() {
        assert_eq!(
            format_line("12:34:56.789", "info", "hello", false),
            "[12:34:56.789] hello\n"
        );
        assert_eq!(
            format_line("12:34:56.789", "error", "Addon error: x\nTraceback", false),
            "[12:34:56.789] Addon error: x\nTraceback\n"
        );
        assert_eq!(
            format_line("12:34:56.789", "warn", "careful", true),
            "\x1b[36m\x1b[2m[12:34:56.789]\x1b[0m \x1b[33mcareful\x1b[0m\n"
        );
        assert_eq!(
            format_line("12:34:56.789", "info", "plain", true),
            "\x1b[36m\x1b[2m[12:34:56.789]\x1b[0m plain\x1b[0m\n"
        );
    }

    #[test]
    fn verbosity_orders_alert_between_info_and_warn() {
        assert!(rank("debug") < rank("info"));
        assert!(rank("info") < rank("alert"));
        assert!(rank("alert") < rank("warn"));
        assert!(rank("warn") < rank("error"));
        let clock = clock();
        assert_eq!(clock.len(), "12:34:56.789".len(), "{clock}");
    }
}
