//! The proxy's clients: connections and the responses they get.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `flowtap_client_connections_total` | counter | |
//! | `flowtap_client_connections_open` | gauge | |
//! | `flowtap_responses_total` | counter | `class` (`1xx` … `5xx`, `other`) |

use std::sync::LazyLock;

use prometheus::{IntCounter, IntGauge};

use crate::registry::{counter, counter_vec, gauge};

/// An accepted client connection, counted open until dropped.
#[derive(Debug)]
#[must_use = "the connection counts as open until this is dropped"]
pub struct ClientConnection(());

impl Drop for ClientConnection {
    fn drop(&mut self) {
        METRICS.open.dec();
    }
}

/// Counts an accepted client connection; keep the returned guard for the connection's life.
pub fn client_connection() -> ClientConnection {
    METRICS.accepted.inc();
    METRICS.open.inc();
    ClientConnection(())
}

/// Counts a response sent to a client (by the server, a script, or the proxy itself) under its
/// status class.
pub fn response(status: u16) {
    let class = match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => 5,
    };
    METRICS.responses[class].inc();
}

/// Makes this module's metrics appear in `/metrics` before their first use.
pub fn register() {
    LazyLock::force(&METRICS);
}

struct Metrics {
    accepted: IntCounter,
    open: IntGauge,
    /// `1xx` to `5xx`, then `other`.
    responses: [IntCounter; 6],
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let responses = counter_vec(
        "flowtap_responses_total",
        "Responses sent to clients, by status class.",
        &["class"],
    );
    Metrics {
        accepted: counter(
            "flowtap_client_connections_total",
            "Client connections accepted.",
        ),
        open: gauge(
            "flowtap_client_connections_open",
            "Client connections open.",
        ),
        responses: ["1xx", "2xx", "3xx", "4xx", "5xx", "other"]
            .map(|class| responses.with_label_values(&[class])),
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_and_status_classes() {
        let connection = client_connection();
        response(204);
        response(503);
        response(700);
        let text = crate::encode_text();
        assert!(text.contains("flowtap_client_connections_total 1"));
        assert!(text.contains("flowtap_client_connections_open 1"));
        assert!(text.contains(r#"flowtap_responses_total{class="2xx"} 1"#));
        assert!(text.contains(r#"flowtap_responses_total{class="5xx"} 1"#));
        assert!(text.contains(r#"flowtap_responses_total{class="other"} 1"#));
        drop(connection);
        assert!(crate::encode_text().contains("flowtap_client_connections_open 0"));
    }
}
