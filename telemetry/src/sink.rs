//! The proxy's way into the archive (flow-store's `StoreSink`): flows sent, spooled, and the
//! spool's size.
//!
//! | metric | type |
//! |---|---|
//! | `flowtap_sink_flows_sent_total` | counter: flows the store confirmed |
//! | `flowtap_sink_flows_spooled_total` | counter: flows written to the spool |
//! | `flowtap_sink_spool_size_bytes` | gauge |

use std::sync::LazyLock;

use prometheus::{IntCounter, IntGauge};

use crate::registry::{counter, gauge};

/// `flows` were sent to the store and confirmed stored.
pub fn flows_sent(flows: u64) {
    METRICS.sent.inc_by(flows);
}

/// `flows` were written to the spool (the store unreachable, or the queue full).
pub fn flows_spooled(flows: u64) {
    METRICS.spooled.inc_by(flows);
}

/// The spool grew by `bytes` (a record written, or files an earlier process left).
pub fn spool_grew(bytes: u64) {
    METRICS
        .spool_bytes
        .add(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// The spool shrank by `bytes` (a delivered segment removed).
pub fn spool_shrank(bytes: u64) {
    METRICS
        .spool_bytes
        .sub(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// Makes this module's metrics appear in `/metrics` before their first use.
pub fn register() {
    LazyLock::force(&METRICS);
}

struct Metrics {
    sent: IntCounter,
    spooled: IntCounter,
    spool_bytes: IntGauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    sent: counter(
        "flowtap_sink_flows_sent_total",
        "Flows sent to the flow store and confirmed stored.",
    ),
    spooled: counter(
        "flowtap_sink_flows_spooled_total",
        "Flows written to the local spool while the flow store was unreachable or behind.",
    ),
    spool_bytes: gauge(
        "flowtap_sink_spool_size_bytes",
        "Bytes of flows waiting in the local spool.",
    ),
});
