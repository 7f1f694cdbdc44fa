//! [`Store::watch`]: the flows appended from now on, by this process or by any other that
//! writes to the same database.
//!
//! Both backends number rows in commit order (`seq`), so one poller per store reads the rows
//! past the last one it has seen and broadcasts them to the store's watchers. It runs only
//! while someone watches: every [`Config::watch_poll_interval`](super::Config), and at once
//! when this process commits a batch. Each watcher skips the rows numbered up to the last one
//! committed when it subscribed, so it sees no flow from before, and none twice.

use std::sync::{Arc, Mutex};

use flowtap_proto::v1::FlowSummary;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Store;
use crate::backend::{ScanSpec, StoredFlow};
use crate::row::summary;
use crate::{FlowFilter, StoreError};

/// What a store's watchers share: the broadcast of new rows and the poller feeding it.
#[derive(Debug)]
pub(super) struct Watchers {
    rows: broadcast::Sender<Arc<StoredFlow>>,
    poller: Mutex<Poller>,
    /// Wakes the poller before its interval is over.
    wake: Notify,
}

#[derive(Debug, Default)]
struct Poller {
    running: bool,
    /// The last row read and broadcast.
    last_seq: i64,
}

impl Watchers {
    pub(super) fn new(capacity: usize) -> Watchers {
        Watchers {
            rows: broadcast::channel(capacity.max(1)).0,
            poller: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// This process committed flows: the poller, if running, reads them now.
    pub(super) fn committed(&self) {
        self.wake.notify_one();
    }

    fn poller(&self) -> std::sync::MutexGuard<'_, Poller> {
        self.poller
            .lock()
            .expect("the poller lock is never held across a panic")
    }
}

impl Store {
    /// Summaries of the flows appended from now on that match `filter`, through this store or
    /// any other process using the same database, in commit order. Flows appended by other
    /// processes arrive within [`Config::watch_poll_interval`](super::Config). A watcher that
    /// falls more than [`Config::watch_capacity`](super::Config) flows behind skips the ones
    /// it missed.
    pub async fn watch(&self, filter: &str) -> Result<ReceiverStream<FlowSummary>, StoreError> {
        let filter = FlowFilter::parse(filter)?;
        // Subscribed first: every row committed after `start` is read, and broadcast, after
        // this point.
        let mut rows = self.watchers.rows.subscribe();
        let start = self.backend.last_seq().await?;
        self.start_poller(start);
        let (sender, receiver) = mpsc::channel(64);
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let row = tokio::select! {
                    row = rows.recv() => row,
                    // The client is gone: unsubscribe now, not at the next matching flow.
                    () = sender.closed() => break,
                };
                let row = match row {
                    Ok(row) => row,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a watcher fell behind and missed flows");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if row.seq <= start || !store.watch_matches(&filter, &row).await {
                    continue;
                }
                let item = summary(&row.flow, row.request_size, row.response_size);
                if sender.send(item).await.is_err() {
                    break;
                }
            }
        });
        Ok(receiver.into())
    }

    /// Starts the poller after `start`, unless it runs (then it is at or before `start`, or it
    /// has read past it since this watcher subscribed).
    fn start_poller(&self, start: i64) {
        let mut poller = self.watchers.poller();
        if poller.running {
            return;
        }
        *poller = Poller {
            running: true,
            last_seq: start,
        };
        tokio::spawn(self.clone().poll());
    }

    /// Reads and broadcasts new rows until nobody watches.
    async fn poll(self) {
        let limit = self.config.scan_batch.max(1);
        loop {
            let after_seq = {
                let mut poller = self.watchers.poller();
                // Decided under the lock: a watcher subscribing now finds the poller running
                // (and is served by it) or stopped (and starts another).
                if self.watchers.rows.receiver_count() == 0 {
                    poller.running = false;
                    return;
                }
                poller.last_seq
            };
            let spec = ScanSpec {
                after_seq,
                limit,
                ..ScanSpec::default()
            };
            let mut more = false;
            match self.backend.scan(spec).await {
                Ok(rows) => {
                    more = rows.len() == limit;
                    if let Some(last) = rows.last() {
                        self.watchers.poller().last_seq = last.seq;
                    }
                    for row in rows {
                        // No watcher left is not an error: the next round stops.
                        let _ = self.watchers.rows.send(Arc::new(row));
                    }
                }
                Err(error) => tracing::warn!(%error, "reading new flows for watchers"),
            }
            if !more {
                tokio::select! {
                    () = tokio::time::sleep(self.config.watch_poll_interval) => {}
                    () = self.watchers.wake.notified() => {}
                }
            }
        }
    }

    async fn watch_matches(&self, filter: &FlowFilter, row: &StoredFlow) -> bool {
        if !filter.needs_bodies() {
            return filter.matches(&row.flow);
        }
        match self.with_bodies(row.flow.clone()).await {
            Ok(full) => filter.matches(&full),
            // Deleted or replaced since: it is no longer the flow that was appended.
            Err(_) => false,
        }
    }
}
