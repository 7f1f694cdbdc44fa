//! The archive itself (flow-store's `Store`): flows stored and how long writes take.
//!
//! | metric | type |
//! |---|---|
//! | `flowtap_store_flows_stored_total` | counter |
//! | `flowtap_store_append_duration_seconds` | histogram: one batch write, to its commit |

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, IntCounter};

use crate::registry::{LATENCY_BUCKETS, counter, histogram};

/// `flows` were committed to the database.
pub fn flows_stored(flows: u64) {
    METRICS.stored.inc_by(flows);
}

/// One batch of appended flows took `latency` to write and commit.
pub fn append_latency(latency: Duration) {
    METRICS.append.observe(latency.as_secs_f64());
}

/// Makes this module's metrics appear in `/metrics` before their first use.
pub fn register() {
    LazyLock::force(&METRICS);
}

struct Metrics {
    stored: IntCounter,
    append: Histogram,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    stored: counter(
        "flowtap_store_flows_stored_total",
        "Flows committed to the archive's database.",
    ),
    append: histogram(
        "flowtap_store_append_duration_seconds",
        "Time to write and commit one batch of appended flows.",
        LATENCY_BUCKETS,
    ),
});
