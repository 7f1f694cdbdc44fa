//! Archiving finished flows.
//!
//! - `--store-addr URL`: to a flow-store service, through a bounded, batching queue that spools
//!   to `confdir/spool` while the store is unreachable (flowtap-flow-store's [`StoreSink`]).
//! - `--store [STORE]`: into a store opened in this process (default `confdir/flows.db`), which
//!   `flowtap flows` reads by default. A writer task appends the queued flows in batches.
//!
//! Neither makes the proxy wait.

use std::path::Path;
use std::sync::Mutex;

use flowtap_flow_store::{SinkConfig, Store, StoreLocation, StoreSink};
use flowtap_grpc::ClientConfig;
use flowtap_proto::v1::Flow;
use flowtap_proxy_core::FlowSink;

/// The flow archive as a sink of the proxy.
pub(crate) struct Archive {
    sink: Mutex<Option<StoreSink>>,
}

impl Archive {
    /// Starts sending flows to the flow-store at `endpoint`. Call inside the tokio runtime.
    pub(crate) fn start(
        endpoint: &str,
        confdir: &Path,
        security: &ClientConfig,
    ) -> anyhow::Result<Self> {
        let config = SinkConfig {
            security: security.clone(),
            ..SinkConfig::new(endpoint, confdir.join("spool"))
        };
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

/// The most flows appended to a local store in one batch.
const LOCAL_BATCH: usize = 512;

/// A store opened in this process, fed by a writer task.
pub(crate) struct LocalArchive {
    queue: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Flow>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl LocalArchive {
    /// Opens (or creates) the store at `location`. Call inside the tokio runtime.
    pub(crate) async fn open(location: &StoreLocation) -> anyhow::Result<Self> {
        let store = Store::open(location, flowtap_flow_store::Config::default()).await?;
        // Unbounded so that traffic never waits; the writer drains in batches far faster than
        // a proxy produces flows (tens of thousands per second into SQLite).
        let (queue, mut flows) = tokio::sync::mpsc::unbounded_channel::<Flow>();
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(LOCAL_BATCH);
            while flows.recv_many(&mut batch, LOCAL_BATCH).await > 0 {
                let count = batch.len();
                if let Err(e) = store.append(std::mem::take(&mut batch)).await {
                    tracing::error!("{count} flows not archived: {e}");
                }
            }
        });
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(writer)),
        })
    }
}

impl FlowSink for LocalArchive {
    fn needs_bodies(&self) -> bool {
        true
    }

    fn flow_finished(&self, flow: &Flow) {
        if let Some(queue) = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = queue.send(flow.clone());
        }
    }

    fn close(&self) {
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| {
                let _ = handle.block_on(writer);
            });
        }
    }
}
