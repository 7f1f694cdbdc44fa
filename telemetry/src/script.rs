//! The proxy's side of the script protocol: what the script client records.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `flowtap_hook_calls_total` | counter | `hook`, `outcome` (`ok`, `error`, `timeout`, `unavailable`) |
//! | `flowtap_hook_duration_seconds` | histogram | `hook` |
//! | `flowtap_hook_timeouts_total` | counter | `hook` |
//! | `flowtap_hook_failed_open_total` | counter | `hook` |
//! | `flowtap_hook_failed_closed_total` | counter | `hook` |
//! | `flowtap_script_sessions_up` | gauge | |
//!
//! A hook's series appear with its first call. Each is resolved once per hook into a slot
//! indexed by the hook's number, so recording is a few atomic adds.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

pub use flowtap_proto::v1::Hook;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use crate::registry::{LATENCY_BUCKETS, counter_vec, gauge, histogram_vec};

/// How one hook call ended, as the script client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOutcome {
    /// The worker answered (whatever the script did to the flow).
    Ok,
    /// The script raised, or the worker answered with an error.
    Error,
    /// No answer within the hook timeout.
    TimedOut,
    /// No session could take the call (no worker up, or the session broke during the call).
    Unavailable,
}

impl HookOutcome {
    const ALL: [HookOutcome; 4] = [
        HookOutcome::Ok,
        HookOutcome::Error,
        HookOutcome::TimedOut,
        HookOutcome::Unavailable,
    ];

    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            HookOutcome::Ok => "ok",
            HookOutcome::Error => "error",
            HookOutcome::TimedOut => "timeout",
            HookOutcome::Unavailable => "unavailable",
        }
    }
}

/// The name of a hook as mitmproxy spells it (`request`, `tcp_message`): the `hook` label.
pub fn hook_name(hook: Hook) -> String {
    hook.as_str_name()
        .trim_start_matches("HOOK_")
        .to_ascii_lowercase()
}

/// Records a hook call: counts it under its outcome and records its latency (from sending
/// the call to its answer, or to giving up). A [`HookOutcome::TimedOut`] call also counts in
/// `flowtap_hook_timeouts_total`; no separate call is needed.
pub fn hook_call(hook: Hook, outcome: HookOutcome, latency: Duration) {
    let slot = slot(hook);
    slot.calls[outcome as usize].inc();
    slot.latency.observe(latency.as_secs_f64());
    if outcome == HookOutcome::TimedOut {
        slot.timeouts.inc();
    }
}

/// A failed call of `hook` was let through unchanged (failure policy open).
pub fn failed_open(hook: Hook) {
    slot(hook).failed_open.inc();
}

/// A failed call of `hook` ended its flow with an error response or a kill (failure policy
/// closed).
pub fn failed_closed(hook: Hook) {
    slot(hook).failed_closed.inc();
}

/// Sets how many worker sessions are up (healthy and taking calls).
pub fn set_sessions_up(sessions: usize) {
    METRICS
        .sessions_up
        .set(i64::try_from(sessions).unwrap_or(i64::MAX));
}

/// One more worker session is up.
pub fn session_up() {
    METRICS.sessions_up.inc();
}

/// One worker session fewer is up.
pub fn session_down() {
    METRICS.sessions_up.dec();
}

/// Makes this module's metrics appear in `/metrics` before their first use.
pub fn register() {
    LazyLock::force(&METRICS);
}

/// Hook numbers are below this (script.proto numbers its hooks densely from 0).
const SLOTS: usize = 64;

struct Metrics {
    calls: IntCounterVec,
    latency: HistogramVec,
    timeouts: IntCounterVec,
    failed_open: IntCounterVec,
    failed_closed: IntCounterVec,
    sessions_up: IntGauge,
    /// One per hook number, filled at the hook's first use.
    slots: [OnceLock<Slot>; SLOTS],
    /// Hooks numbered beyond the slots (none today): resolved on every use.
    overflow: OnceLock<Slot>,
}

/// The handles of one hook, resolved once.
struct Slot {
    calls: [IntCounter; 4],
    latency: Histogram,
    timeouts: IntCounter,
    failed_open: IntCounter,
    failed_closed: IntCounter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    calls: counter_vec(
        "flowtap_hook_calls_total",
        "Hook calls sent to script workers, by hook and outcome.",
        &["hook", "outcome"],
    ),
    latency: histogram_vec(
        "flowtap_hook_duration_seconds",
        "Time from sending a hook call to its answer (or to giving up), by hook.",
        &["hook"],
        LATENCY_BUCKETS,
    ),
    timeouts: counter_vec(
        "flowtap_hook_timeouts_total",
        "Hook calls not answered within the hook timeout, by hook.",
        &["hook"],
    ),
    failed_open: counter_vec(
        "flowtap_hook_failed_open_total",
        "Failed hook calls whose flow went on unchanged (failure policy open), by hook.",
        &["hook"],
    ),
    failed_closed: counter_vec(
        "flowtap_hook_failed_closed_total",
        "Failed hook calls whose flow got an error response or was killed (failure policy \
         closed), by hook.",
        &["hook"],
    ),
    sessions_up: gauge(
        "flowtap_script_sessions_up",
        "Script worker sessions up and taking calls.",
    ),
    slots: std::array::from_fn(|_| OnceLock::new()),
    overflow: OnceLock::new(),
});

fn slot(hook: Hook) -> &'static Slot {
    let metrics = &*METRICS;
    match metrics.slots.get(hook as usize) {
        Some(slot) => slot.get_or_init(|| metrics.resolve(hook)),
        None => metrics.overflow.get_or_init(|| metrics.resolve(hook)),
    }
}

impl Metrics {
    fn resolve(&self, hook: Hook) -> Slot {
        let name = hook_name(hook);
        let one = |vec: &IntCounterVec| vec.with_label_values(&[name.as_str()]);
        Slot {
            calls: HookOutcome::ALL.map(|o| self.calls.with_label_values(&[&name, o.label()])),
            latency: self.latency.with_label_values(&[name.as_str()]),
            timeouts: one(&self.timeouts),
            failed_open: one(&self.failed_open),
            failed_closed: one(&self.failed_closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test -p flowtap-telemetry -- --ignored --nocapture recording_cost`: the time of
    /// one `hook_call`, alone and with a second thread recording the same hook.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn recording_cost() {
        const CALLS: u32 = 1_000_000;
        let run = || {
            let start = std::time::Instant::now();
            for _ in 0..CALLS {
                hook_call(
                    Hook::Requestheaders,
                    HookOutcome::Ok,
                    Duration::from_micros(60),
                );
            }
            start.elapsed() / CALLS
        };
        println!("one thread: {:?} per hook_call", run());
        let other = std::thread::spawn(run);
        let here = run();
        println!(
            "two threads: {here:?} and {:?} per hook_call",
            other.join().unwrap()
        );
    }

    #[test]
    fn a_call_counts_under_its_hook_and_outcome() {
        hook_call(
            Hook::Response,
            HookOutcome::TimedOut,
            Duration::from_millis(3),
        );
        failed_open(Hook::Response);
        let text = crate::encode_text();
        assert!(text.contains(r#"flowtap_hook_calls_total{hook="response",outcome="timeout"} 1"#));
        assert!(text.contains(r#"flowtap_hook_calls_total{hook="response",outcome="ok"} 0"#));
        assert!(text.contains(r#"flowtap_hook_timeouts_total{hook="response"} 1"#));
        assert!(text.contains(r#"flowtap_hook_failed_open_total{hook="response"} 1"#));
        assert!(
            text.contains(r#"flowtap_hook_duration_seconds_bucket{hook="response",le="0.005"} 1"#)
        );
        assert!(
            text.contains(r#"flowtap_hook_duration_seconds_bucket{hook="response",le="0.0025"} 0"#)
        );
    }
}
