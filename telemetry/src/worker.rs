//! A script-host worker: its sessions.
//!
//! | metric | type |
//! |---|---|
//! | `flowtap_worker_sessions_open` | gauge: proxy sessions open on this worker |

use std::sync::LazyLock;

use prometheus::IntGauge;

use crate::registry::gauge;

/// Sets how many proxy sessions are open on this worker.
pub fn set_sessions_open(sessions: usize) {
    SESSIONS.set(i64::try_from(sessions).unwrap_or(i64::MAX));
}

/// Makes this module's metrics appear in `/metrics` before their first use.
pub fn register() {
    LazyLock::force(&SESSIONS);
}

static SESSIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "flowtap_worker_sessions_open",
        "Proxy sessions open on this script worker.",
    )
});
