//! `--store-addr URL`: finished flows go to a flow-store service through a bounded, batching
//! queue that spools to `confdir/spool` while the store is unreachable (flowtap-flow-store's
//! [`StoreSink`]). Pushing never waits for the network.

use std::path::Path;
use std::sync::Mutex;

use flowtap_flow_store::{SinkConfig, StoreSink};
use flowtap_proto::v1::Flow;
use flowtap_proxy_core::FlowSink;

/// The flow archive as a sink of the proxy.
pub(crate) struct Archive {
    sink: Mutex<Option<StoreSink>>,
}

impl Archive {
    /// Starts sending flows to the flow-store at `endpoint`. Call inside the tokio runtime.
    pub(crate) fn start(endpoint: &str, confdir: &Path) -> anyhow::Result<Self> {
        let config = SinkConfig::new(endpoint, confdir.join("spool"));
        let sink = StoreSink::start(config)?;
        Ok(Self {
            sink: Mutex::new(Some(sink)),
        })
    }
}

impl FlowSink for Archive {
    fn needs_bodies(&self) -> bool {
        true
    }

    fn flow_finished(&self, flow: &Flow) {
        if let Some(sink) = self.sink.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && let Err(e) = sink.push(flow.clone())
        {
            tracing::error!(flow = %flow.id, "flow not archived: {e}");
        }
    }

    fn close(&self) {
        let Some(sink) = self.sink.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        // Delivers what is queued (the rest stays spooled for the next start).
        let closing = async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), sink.close()).await;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => tokio::task::block_in_place(|| handle.block_on(closing)),
            Err(_) => tracing::warn!("flows still queued for the store stay in the spool"),
        }
    }
}
