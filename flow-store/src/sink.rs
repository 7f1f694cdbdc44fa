//! [`StoreSink`]: how finished flows travel from the proxy to the flow-store service.
//!
//! [`StoreSink::push`] never waits: the flow goes into a bounded queue, or straight to the
//! [`Spool`] on local disk when the queue is full. A worker task takes flows from the queue in
//! batches and sends each batch as one Append stream, keeping up to
//! [`SinkConfig::calls_in_flight`] streams going at once so that the store commits one batch
//! while the next ones travel. A batch leaves the sink's hands (and [`StoreSink::pending`])
//! only when the store confirms it; a flow whose id is still in flight waits for that call, so
//! two versions of a flow are stored in the order pushed. When the store cannot be reached the
//! failed batches, and every flow after them, go to the spool; the worker tries again every
//! [`SinkConfig::retry_interval`] and delivers the spool, oldest first, before new flows. A
//! spooled flow may be sent twice (the store's answer was lost); the store keeps it once, as
//! Append is idempotent by flow id.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flowtap_grpc::{Channel, ClientConfig};
use flowtap_proto::v1::Flow;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::StoreError;
use crate::spool::{SegmentReader, Spool, remove_segment};

mod append;

/// Settings of a [`StoreSink`].
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The flow-store address, e.g. `http://127.0.0.1:7070` (or `https://`, or `host:port`:
    /// see [`flowtap_grpc::client`]).
    pub endpoint: String,
    /// The CA, client certificate and token used towards the store (default: none).
    pub security: ClientConfig,
    /// Where flows wait while the store is unreachable (e.g. `confdir/spool`).
    pub spool_dir: PathBuf,
    /// Flows the in-memory queue holds before [`StoreSink::push`] spools instead.
    pub queue_capacity: usize,
    /// The most flows sent in one Append stream.
    pub batch_max_flows: usize,
    /// The most body bytes sent in one Append stream (a single larger flow is sent alone).
    pub batch_max_bytes: usize,
    /// Append streams sent before the first of them is confirmed: the next batches travel
    /// and are decoded while the store commits the earlier ones.
    pub calls_in_flight: usize,
    /// How long to wait before trying an unreachable store again.
    pub retry_interval: Duration,
    /// How long one Append call may take before it counts as failed.
    pub request_timeout: Duration,
}

impl SinkConfig {
    /// The defaults for a store at `endpoint`, spooling to `spool_dir`.
    pub fn new(endpoint: impl Into<String>, spool_dir: impl Into<PathBuf>) -> SinkConfig {
        SinkConfig {
            endpoint: endpoint.into(),
            security: ClientConfig::default(),
            spool_dir: spool_dir.into(),
            queue_capacity: 4096,
            batch_max_flows: 512,
            batch_max_bytes: 4 * 1024 * 1024,
            calls_in_flight: 4,
            retry_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
        }
    }
}

struct Shared {
    spool: Spool,
    /// Flows pushed by this sink and not yet confirmed stored.
    pending: watch::Sender<u64>,
    /// Signalled when `push` spools a flow.
    spooled: Notify,
    /// Set when the spool may hold flows, so the worker looks at the disk only then.
    spool_dirty: AtomicBool,
    /// Set by [`StoreSink::close`].
    closing: watch::Sender<bool>,
}

impl Shared {
    fn spool(&self, flow: &Flow) -> Result<(), StoreError> {
        self.spool.write(flow)?;
        flowtap_telemetry::sink::flows_spooled(1);
        self.spool_dirty.store(true, Ordering::Release);
        Ok(())
    }
}

/// The proxy's way into the flow archive. Create it inside a tokio runtime.
pub struct StoreSink {
    queue: mpsc::Sender<Flow>,
    shared: Arc<Shared>,
    worker: JoinHandle<()>,
}

impl std::fmt::Debug for StoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSink").finish_non_exhaustive()
    }
}

impl StoreSink {
    /// Opens the spool (delivering flows an earlier process left in it) and starts the worker.
    /// Fails only if the endpoint is malformed or the spool directory cannot be used; an
    /// unreachable store is not an error.
    pub fn start(config: SinkConfig) -> Result<StoreSink, StoreError> {
        let dial = config
            .security
            .dial(&config.endpoint)
            .map_err(|e| StoreError::Open {
                location: config.endpoint.clone(),
                message: e.to_string(),
            })?
            .map_endpoint(|e| {
                e.connect_timeout(Duration::from_secs(5))
                    .initial_stream_window_size(crate::server::WINDOW_BYTES)
                    .initial_connection_window_size(2 * crate::server::WINDOW_BYTES)
                    .timeout(config.request_timeout)
            });
        let channel = dial.connect_lazy();
        let spool = Spool::open(&config.spool_dir)?;
        // Flows an earlier process left count as pending, so flush() waits for them too.
        let left_over = spool.left_over_records()?;
        let shared = Arc::new(Shared {
            spool,
            pending: watch::Sender::new(left_over),
            spooled: Notify::new(),
            // An earlier process may have left flows there.
            spool_dirty: AtomicBool::new(true),
            closing: watch::Sender::new(false),
        });
        let (queue, flows) = mpsc::channel(config.queue_capacity.max(1));
        let worker = Worker {
            flows,
            delivered: HashMap::new(),
            closing: shared.closing.subscribe(),
            shared: shared.clone(),
            channel,
            config,
            in_flight: FuturesUnordered::new(),
            sending: HashMap::new(),
            next_call: 0,
            in_flight_ids: HashMap::new(),
            hasher: RandomState::new(),
        };
        Ok(StoreSink {
            queue,
            shared,
            worker: tokio::spawn(worker.run()),
        })
    }

    /// Hands a finished flow (with its bodies) to the archive. Never waits for the store or the
    /// network: when the queue is full the flow is written to the spool file instead. Fails only
    /// if even the spool cannot be written (then the flow is lost, and the error says why).
    pub fn push(&self, flow: Flow) -> Result<(), StoreError> {
        self.shared.pending.send_modify(|n| *n += 1);
        let flow = match self.queue.try_send(flow) {
            Ok(()) => return Ok(()),
            Err(
                mpsc::error::TrySendError::Full(flow) | mpsc::error::TrySendError::Closed(flow),
            ) => flow,
        };
        match self.shared.spool(&flow) {
            Ok(()) => {
                self.shared.spooled.notify_one();
                Ok(())
            }
            Err(error) => {
                self.shared.pending.send_modify(|n| *n -= 1);
                Err(error)
            }
        }
    }

    /// Flows pushed (or left in the spool by an earlier process) and not yet confirmed stored.
    pub fn pending(&self) -> u64 {
        *self.shared.pending.borrow()
    }

    /// Waits until every flow pushed so far, and every flow an earlier process left in the
    /// spool, is stored. Waits as long as the store is down.
    pub async fn flush(&self) {
        let mut pending = self.shared.pending.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = pending.wait_for(|n| *n == 0).await;
    }

    /// Stops taking flows. Whatever is queued or in flight is written to the spool first (an
    /// Append cut short may have been stored; sending it again later is harmless), then one
    /// attempt is made to deliver the spool. Dropping this future early, for example on a
    /// shutdown deadline, loses nothing: undelivered flows stay in the spool for the next start.
    pub async fn close(self) {
        self.shared.closing.send_replace(true);
        drop(self.queue);
        let _ = self.worker.await;
    }
}

/// An Append call in flight: its flows, kept for the spool until the store confirms them.
struct Sending {
    flows: Vec<Flow>,
    /// Hashes of the flow ids (see [`Worker::in_flight_ids`]).
    ids: Vec<u64>,
}

struct Worker {
    flows: mpsc::Receiver<Flow>,
    /// Records at the start of a segment already stored, if an earlier delivery broke off.
    delivered: HashMap<PathBuf, usize>,
    shared: Arc<Shared>,
    channel: Channel,
    config: SinkConfig,
    closing: watch::Receiver<bool>,
    /// The Append calls in flight, each resolving to its number in `sending` and its outcome.
    in_flight: FuturesUnordered<BoxFuture<'static, (u64, Result<u64, StoreError>)>>,
    sending: HashMap<u64, Sending>,
    next_call: u64,
    /// How many flows in flight have an id of each hash. A flow whose id is in flight waits
    /// until that call is over, so two versions of one flow are stored in the order pushed.
    in_flight_ids: HashMap<u64, u32>,
    hasher: RandomState,
}

/// What the worker's main loop waits for.
enum Event {
    Sent(u64, Result<u64, StoreError>),
    /// The first flow of the next batch (boxed: a flow is large and the other events small).
    Flow(Option<Box<Flow>>),
    Closing,
}

impl Worker {
    async fn run(mut self) {
        let mut reachable = true;
        loop {
            if !reachable {
                if !self.spool_until_retry().await {
                    return self.shut_down().await;
                }
                reachable = true;
            }
            // Spooled flows are newer than those in flight: they are sent after them.
            if self.shared.spool_dirty.load(Ordering::Acquire) && !self.settle_all().await {
                reachable = false;
                continue;
            }
            if let Err(error) = self.deliver_spool().await {
                tracing::warn!(%error, "flow store unreachable; spooling flows");
                reachable = false;
                continue;
            }
            let mut closing = self.closing.clone();
            let room = self.in_flight.len() < self.config.calls_in_flight.max(1);
            let event = tokio::select! {
                Some((call, result)) = self.in_flight.next() => Event::Sent(call, result),
                flow = self.flows.recv(), if room => Event::Flow(flow.map(Box::new)),
                () = self.shared.spooled.notified() => continue,
                _ = closing.wait_for(|c| *c) => Event::Closing,
            };
            match event {
                Event::Sent(call, result) => {
                    if !self.settle(call, result) {
                        self.settle_all().await;
                        reachable = false;
                    }
                }
                Event::Flow(Some(first)) => {
                    let batch = self.take_batch(*first);
                    if !self.start_call(batch).await {
                        reachable = false;
                    }
                }
                Event::Flow(None) | Event::Closing => {
                    self.abandon_all();
                    return self.shut_down().await;
                }
            }
        }
    }

    /// Starts an Append call for the batch, once no flow of it is in flight. Returns false if
    /// an earlier call failed meanwhile (the batch is then spooled as well).
    async fn start_call(&mut self, mut flows: Vec<Flow>) -> bool {
        let ids: Vec<u64> = flows
            .iter()
            .map(|flow| self.hasher.hash_one(&flow.id))
            .collect();
        if ids.iter().any(|id| self.in_flight_ids.contains_key(id)) && !self.settle_all().await {
            for flow in &flows {
                self.spool(flow);
            }
            return false;
        }
        let parts = append::encode(&mut flows);
        for id in &ids {
            *self.in_flight_ids.entry(*id).or_default() += 1;
        }
        let call = self.next_call;
        self.next_call += 1;
        self.sending.insert(call, Sending { flows, ids });
        let sent = append::append(self.channel.clone(), parts);
        self.in_flight
            .push(Box::pin(async move { (call, sent.await) }));
        true
    }

    /// Counts a finished call's flows as stored, or spools them. Returns whether it succeeded.
    fn settle(&mut self, call: u64, result: Result<u64, StoreError>) -> bool {
        let sending = self
            .sending
            .remove(&call)
            .expect("every call in flight has its flows in `sending`");
        self.forget_ids(&sending.ids);
        match result {
            Ok(_) => {
                let count = sending.flows.len() as u64;
                flowtap_telemetry::sink::flows_sent(count);
                self.shared.pending.send_modify(|n| *n -= count);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "flows not delivered; spooling them");
                for flow in &sending.flows {
                    self.spool(flow);
                }
                false
            }
        }
    }

    /// Waits for every call in flight to finish. Returns false if one failed, or if the sink
    /// began closing meanwhile (the calls still in flight are then abandoned to the spool).
    async fn settle_all(&mut self) -> bool {
        let mut all_stored = true;
        let mut closing = self.closing.clone();
        while !self.in_flight.is_empty() {
            tokio::select! {
                Some((call, result)) = self.in_flight.next() => {
                    all_stored &= self.settle(call, result);
                }
                _ = closing.wait_for(|c| *c) => {
                    self.abandon_all();
                    return false;
                }
            }
        }
        all_stored
    }

    /// Cancels the calls in flight and spools their flows (a call cut short may have been
    /// stored: sending it again later is harmless).
    fn abandon_all(&mut self) {
        self.in_flight.clear();
        self.in_flight_ids.clear();
        for (_, sending) in std::mem::take(&mut self.sending) {
            for flow in &sending.flows {
                self.spool(flow);
            }
        }
    }

    fn forget_ids(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some(count) = self.in_flight_ids.get_mut(id) {
                *count -= 1;
                if *count == 0 {
                    self.in_flight_ids.remove(id);
                }
            }
        }
    }

    /// Spools everything still queued, then tries once to deliver the spool.
    async fn shut_down(mut self) {
        while let Ok(flow) = self.flows.try_recv() {
            self.spool(&flow);
        }
        if let Err(error) = self.shared.spool.seal() {
            tracing::error!(%error, "sealing the spool");
        }
        let _ = self.deliver_spool().await;
    }

    /// While the store is down: queued flows go to the spool until it is time to retry.
    /// Returns false when the sink is closing.
    async fn spool_until_retry(&mut self) -> bool {
        let retry = tokio::time::sleep(self.config.retry_interval);
        tokio::pin!(retry);
        let mut closing = self.closing.clone();
        loop {
            tokio::select! {
                () = &mut retry => return true,
                _ = closing.wait_for(|c| *c) => return false,
                flow = self.flows.recv() => match flow {
                    Some(flow) => self.spool(&flow),
                    None => return false,
                },
            }
        }
    }

    fn spool(&self, flow: &Flow) {
        if let Err(error) = self.shared.spool(flow) {
            // Nowhere left to keep it: count it as done so flush() does not wait forever.
            tracing::error!(%error, id = %flow.id, "a flow was lost: the spool cannot be written");
            self.shared.pending.send_modify(|n| *n -= 1);
        }
    }

    fn take_batch(&mut self, first: Flow) -> Vec<Flow> {
        let mut bytes = body_bytes(&first);
        let mut batch = vec![first];
        while batch.len() < self.config.batch_max_flows && bytes < self.config.batch_max_bytes {
            match self.flows.try_recv() {
                Ok(flow) => {
                    bytes += body_bytes(&flow);
                    batch.push(flow);
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Delivers every spooled flow, oldest first, deleting each segment once it is stored.
    async fn deliver_spool(&mut self) -> Result<(), StoreError> {
        if !self.shared.spool_dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.deliver_segments().await;
        if result.is_err() {
            self.shared.spool_dirty.store(true, Ordering::Release);
        }
        result
    }

    async fn deliver_segments(&mut self) -> Result<(), StoreError> {
        self.shared.spool.seal()?;
        for segment in self.shared.spool.segments()? {
            let mut reader = SegmentReader::open(&segment.path)?;
            let skip = self.delivered.get(&segment.path).copied().unwrap_or(0);
            for _ in 0..skip {
                reader.next_flow();
            }
            loop {
                let mut batch = Vec::new();
                let mut bytes = 0;
                while batch.len() < self.config.batch_max_flows
                    && bytes < self.config.batch_max_bytes
                {
                    let Some(flow) = reader.next_flow() else {
                        break;
                    };
                    bytes += body_bytes(&flow);
                    batch.push(flow);
                }
                if batch.is_empty() {
                    break;
                }
                let count = batch.len() as u64;
                append::append(self.channel.clone(), append::encode(&mut batch)).await?;
                *self.delivered.entry(segment.path.clone()).or_default() += count as usize;
                flowtap_telemetry::sink::flows_sent(count);
                self.shared.pending.send_modify(|n| *n -= count);
            }
            remove_segment(&segment)?;
            self.delivered.remove(&segment.path);
        }
        Ok(())
    }
}

fn body_bytes(flow: &Flow) -> usize {
    let request = flow.request.as_ref().and_then(|r| r.content.as_ref());
    let response = flow.response.as_ref().and_then(|r| r.content.as_ref());
    request.map_or(0, |c| c.len()) + response.map_or(0, |c| c.len()) + 512
}
