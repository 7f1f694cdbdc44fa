//! Counters of the script client, for metrics: sessions, failures, and hook calls by outcome.
//!
//! Plain atomics, bumped on the hook path without a lock; [`Stats::snapshot`] reads them. The
//! flows that went on without their scripts are also counted once per flow (a flow fails each
//! of its hooks while no worker is connected) and reported in a rate-limited log line.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flowtap_proto::v1::Hook;

/// More than the highest hook number of script.proto.
const HOOK_SLOTS: usize = 64;

/// How a hook call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The scripts answered (observed calls count here once sent).
    Ok,
    /// The scripts answered, and a script raised (the traceback was logged).
    Error,
    /// The deadline passed.
    Timeout,
    /// The worker's session ended while the call was in flight.
    Crashed,
    /// No worker was connected.
    Unreachable,
}

impl Outcome {
    /// Every outcome, in the order of [`Outcome::name`].
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Timeout,
        Outcome::Crashed,
        Outcome::Unreachable,
    ];

    /// The outcome as the Prometheus metrics label it (`flowtap_hook_calls_total`).
    fn metric(self) -> flowtap_telemetry::script::HookOutcome {
        use flowtap_telemetry::script::HookOutcome;
        match self {
            Outcome::Ok => HookOutcome::Ok,
            Outcome::Error => HookOutcome::Error,
            Outcome::Timeout => HookOutcome::TimedOut,
            Outcome::Crashed | Outcome::Unreachable => HookOutcome::Unavailable,
        }
    }

    /// The outcome as a metric label: `ok`, `error`, `timeout`, `crashed`, `unreachable`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Crashed => "crashed",
            Outcome::Unreachable => "unreachable",
        }
    }
}

/// Calls of one hook that ended one way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookCalls {
    /// The hook.
    pub hook: Hook,
    /// How the calls ended.
    pub outcome: Outcome,
    /// How many.
    pub calls: u64,
    /// Their summed time from the call to its outcome (awaited calls only; an observed call
    /// adds nothing).
    pub total_latency: Duration,
}

/// The counters at one moment (each counter only grows, except `sessions_up`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Worker sessions open and past their handshake now.
    pub sessions_up: u64,
    /// Hook calls that failed and let their flow go on unmodified (policy open).
    pub failed_open: u64,
    /// Flows that went on without their scripts: each counted once, however many of its hook
    /// calls failed open.
    pub failed_open_flows: u64,
    /// Hook calls that failed and ended their flow (a 502/504 response, or a kill).
    pub failed_closed: u64,
    /// Hook calls past their deadline (also counted in `failed_open` or `failed_closed`).
    pub timed_out: u64,
    /// Calls per hook and outcome; only the pairs that happened.
    pub hook_calls: Vec<HookCalls>,
}

/// The counters (see the module documentation).
pub(crate) struct Stats {
    sessions_up: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
    timed_out: AtomicU64,
    /// Per hook number and outcome: calls and summed latency in nanoseconds.
    calls: [[AtomicU64; 5]; HOOK_SLOTS],
    nanos: [[AtomicU64; 5]; HOOK_SLOTS],
    flows: FailedFlows,
    report: Mutex<Report>,
    report_interval: Duration,
}

/// The rate-limited log line: when it was last written and what it has not reported yet.
struct Report {
    last: Option<Instant>,
    unreported: u64,
    cause: &'static str,
}

impl Stats {
    pub(crate) fn new(report_interval: Duration) -> Self {
        let zeros = || std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)));
        Self {
            sessions_up: AtomicU64::new(0),
            failed_open: AtomicU64::new(0),
            failed_closed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            calls: zeros(),
            nanos: zeros(),
            flows: FailedFlows::default(),
            report: Mutex::new(Report {
                last: None,
                unreported: 0,
                cause: "",
            }),
            report_interval,
        }
    }

    /// A call of `hook` ended with `outcome` after `latency`.
    pub(crate) fn call(&self, hook: Hook, outcome: Outcome, latency: Duration) {
        let (Some(calls), Some(nanos)) =
            (self.calls.get(hook as usize), self.nanos.get(hook as usize))
        else {
            return;
        };
        flowtap_telemetry::script::hook_call(hook, outcome.metric(), latency);
        let slot = outcome as usize;
        calls[slot].fetch_add(1, Ordering::Relaxed);
        let nanos_now = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        nanos[slot].fetch_add(nanos_now, Ordering::Relaxed);
    }

    pub(crate) fn session_up(&self) {
        flowtap_telemetry::script::session_up();
        self.sessions_up.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn session_down(&self) {
        flowtap_telemetry::script::session_down();
        self.sessions_up.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn timed_out(&self) {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed_closed(&self) {
        self.failed_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// A call of flow `flow_id` (routed by `key`) failed open because of `cause`. The first such
    /// call of a flow counts the flow and goes into the rate-limited log line.
    pub(crate) fn failed_open(&self, key: &str, flow_id: &str, cause: &'static str) {
        self.failed_open.fetch_add(1, Ordering::Relaxed);
        if !self.flows.record(key, flow_id) {
            return;
        }
        let mut report = lock(&self.report);
        report.unreported += 1;
        report.cause = cause;
        let due = report
            .last
            .is_none_or(|last| last.elapsed() >= self.report_interval);
        if due {
            write_report(&mut report);
        }
    }

    /// Logs the flows not yet reported (a worker joined: the gap is over).
    pub(crate) fn flush_report(&self) {
        let mut report = lock(&self.report);
        if report.unreported > 0 {
            write_report(&mut report);
        }
        report.last = None;
    }

    /// A client connection ended: its flows are no longer remembered as failed.
    pub(crate) fn client_closed(&self, key: &str) {
        self.flows.forget(key);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut hook_calls = Vec::new();
        for (number, (calls, nanos)) in self.calls.iter().zip(&self.nanos).enumerate() {
            let Ok(hook) = Hook::try_from(number as i32) else {
                continue;
            };
            for outcome in Outcome::ALL {
                let count = load(&calls[outcome as usize]);
                if count > 0 {
                    hook_calls.push(HookCalls {
                        hook,
                        outcome,
                        calls: count,
                        total_latency: Duration::from_nanos(load(&nanos[outcome as usize])),
                    });
                }
            }
        }
        StatsSnapshot {
            sessions_up: load(&self.sessions_up),
            failed_open: load(&self.failed_open),
            failed_open_flows: self.flows.counted.load(Ordering::Relaxed),
            failed_closed: load(&self.failed_closed),
            timed_out: load(&self.timed_out),
            hook_calls,
        }
    }
}

/// At error level, so that `-q` shows it: traffic is passing without the scripts.
fn write_report(report: &mut Report) {
    let count = report.unreported;
    let flows = if count == 1 { "flow" } else { "flows" };
    let since = match report.last {
        Some(last) => format!(" in the last {}s", last.elapsed().as_secs()),
        None => String::new(),
    };
    tracing::error!(
        target: "script",
        "{count} {flows} passed without their scripts{since} (script_failure=open): {}",
        report.cause
    );
    report.unreported = 0;
    report.last = Some(Instant::now());
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("stats locks are never poisoned: no code panics while holding them")
}

/// The flows that failed open, by routing key (client connection), so that each is counted
/// once; forgotten when the connection ends. Touched only when a call fails (and, while it
/// holds something, when a connection ends).
#[derive(Default)]
struct FailedFlows {
    by_key: Mutex<HashMap<String, HashSet<String>>>,
    /// Flows held in `by_key`.
    held: AtomicUsize,
    /// Flows counted since the start.
    counted: AtomicU64,
}

/// More flows than this held at once (connections that never end, replays) are let go.
const MAX_HELD_FLOWS: usize = 100_000;

impl FailedFlows {
    /// True the first time `flow_id` is recorded.
    fn record(&self, key: &str, flow_id: &str) -> bool {
        let mut by_key = lock(&self.by_key);
        if self.held.load(Ordering::Relaxed) >= MAX_HELD_FLOWS {
            by_key.clear();
            self.held.store(0, Ordering::Relaxed);
        }
        let new = by_key
            .entry(key.to_string())
            .or_default()
            .insert(flow_id.to_string());
        if new {
            self.held.fetch_add(1, Ordering::Relaxed);
            self.counted.fetch_add(1, Ordering::Relaxed);
        }
        new
    }

    fn forget(&self, key: &str) {
        if self.held.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(flows) = lock(&self.by_key).remove(key) {
            self.held.fetch_sub(flows.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_failing_several_hooks_counts_once() {
        let stats = Stats::new(Duration::from_secs(5));
        stats.failed_open("conn-1", "flow-a", "x");
        stats.failed_open("conn-1", "flow-a", "x");
        stats.failed_open("conn-1", "flow-b", "x");
        stats.call(
            Hook::Request,
            Outcome::Unreachable,
            Duration::from_micros(3),
        );
        stats.call(
            Hook::Request,
            Outcome::Unreachable,
            Duration::from_micros(4),
        );
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.failed_open, 3);
        assert_eq!(snapshot.failed_open_flows, 2);
        assert_eq!(
            snapshot.hook_calls,
            vec![HookCalls {
                hook: Hook::Request,
                outcome: Outcome::Unreachable,
                calls: 2,
                total_latency: Duration::from_micros(7),
            }]
        );
        stats.client_closed("conn-1");
        assert_eq!(stats.flows.held.load(Ordering::Relaxed), 0);
    }
}
