//! The process-wide registry and the constructors the metric modules share.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// The `Content-Type` of [`encode_text`]'s output: Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Latency buckets for calls that usually take tens of microseconds to milliseconds, up to the
/// hook timeout's range (seconds).
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric registered so far, in the Prometheus text format 0.0.4.
pub fn encode_text() -> String {
    let families = REGISTRY.gather();
    let mut out = Vec::with_capacity(4096);
    // Encoding into a Vec fails only on a malformed family, which the constructors below
    // cannot make; an empty answer is still valid text format.
    if let Err(error) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!(%error, "encoding the metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

fn register<C: Collector + Clone + 'static>(collector: C) -> C {
    REGISTRY
        .register(Box::new(collector.clone()))
        .expect("each metric is registered once (its module's LazyLock), under its own name");
    collector
}

pub(crate) fn counter(name: &str, help: &str) -> IntCounter {
    register(IntCounter::with_opts(Opts::new(name, help)).expect("a valid metric name and help"))
}

pub(crate) fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name and labels"),
    )
}

pub(crate) fn gauge(name: &str, help: &str) -> IntGauge {
    register(IntGauge::with_opts(Opts::new(name, help)).expect("a valid metric name and help"))
}

pub(crate) fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    register(
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
            .expect("a valid metric name and increasing buckets"),
    )
}

pub(crate) fn histogram_vec(
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    register(
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
        .expect("a valid metric name, labels and increasing buckets"),
    )
}
