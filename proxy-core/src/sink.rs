//! Where finished flows go: the dump printer, `-w` files, the flow store.

use std::sync::Arc;

use flowtap_proto::v1::Flow;

/// A consumer of finished flows. Called once per flow when it completes (at `response` or
/// `error`), after the scripts, so it sees their changes. It must not block: an implementation
/// that does I/O queues the flow.
pub trait FlowSink: Send + Sync + 'static {
    /// The sink wants request and response bodies, so the core buffers them (up to
    /// `stream_large_bodies`) even when no script needs them.
    fn needs_bodies(&self) -> bool {
        false
    }

    /// A flow has finished.
    fn flow_finished(&self, flow: &Flow);

    /// The proxy is shutting down: flush what is queued.
    fn close(&self) {}
}

/// Sends every flow to each of several sinks, in order.
#[derive(Default)]
pub struct Sinks(pub Vec<Arc<dyn FlowSink>>);

impl FlowSink for Sinks {
    fn needs_bodies(&self) -> bool {
        self.0.iter().any(|s| s.needs_bodies())
    }

    fn flow_finished(&self, flow: &Flow) {
        for sink in &self.0 {
            sink.flow_finished(flow);
        }
    }

    fn close(&self) {
        for sink in &self.0 {
            sink.close();
        }
    }
}
