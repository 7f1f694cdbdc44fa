//! [`Store`]: the archive's behaviour over any [`Backend`].
//!
//! Everything a caller can observe is decided here, once for both backends: how an Append
//! stream becomes write batches, that a flow appears only once complete, query order and
//! cursors, filter evaluation, and how Watch finds new flows (module `watch`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flowtap_proto::v1::{BodyChunk, BodyKind, Flow, FlowPart, FlowSummary, QueryItem, flow_part};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, Stream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::backend::postgres::PostgresBackend;
use crate::backend::sqlite::SqliteBackend;
use crate::backend::{Backend, ScanSpec, StoredFlow};
use crate::row::summary;

mod append;
mod watch;

use crate::{FlowFilter, StoreError};
pub use append::flow_parts;
use append::{Assembler, part};
use watch::Watchers;

/// Where the flows live, as given on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file (`sqlite:PATH` or a plain path).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://...` or `postgresql://...`).
    Postgres(String),
}

impl std::str::FromStr for StoreLocation {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(
            if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                StoreLocation::Postgres(text.to_owned())
            } else {
                StoreLocation::Sqlite(text.strip_prefix("sqlite:").unwrap_or(text).into())
            },
        )
    }
}

impl std::fmt::Display for StoreLocation {
    /// The path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreLocation::Postgres(url) => f.write_str(&crate::backend::postgres::redact(url)),
        }
    }
}

/// Tuning of a [`Store`]. The defaults suit both backends.
#[derive(Debug, Clone)]
pub struct Config {
    /// A write batch is committed once it holds this many complete flows...
    pub batch_max_flows: usize,
    /// ... or this many body bytes, or when the Append stream has nothing more ready.
    pub batch_max_bytes: usize,
    /// Rows read per scan while filtering heads.
    pub scan_batch: usize,
    /// Rows read per scan when the filter needs bodies (each row carries its bodies).
    pub scan_batch_with_bodies: usize,
    /// Bodies read along with a scan when together at most this large; larger ones are read
    /// for one flow at a time.
    pub inline_body_bytes: u64,
    /// The page size of a query that asks for none.
    pub default_page: usize,
    /// Appended flows a slow watcher may fall behind by before it misses some.
    pub watch_capacity: usize,
    /// While someone watches, how often the store looks for flows that other processes
    /// appended (its own appends are seen at once).
    pub watch_poll_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch_max_flows: 1024,
            batch_max_bytes: 4 * 1024 * 1024,
            scan_batch: 2000,
            scan_batch_with_bodies: 16,
            inline_body_bytes: 256 * 1024,
            default_page: 1000,
            watch_capacity: 4096,
            watch_poll_interval: Duration::from_millis(100),
        }
    }
}

/// A write batch on its way to the backend.
struct Writing {
    write: tokio::task::JoinHandle<Result<u64, StoreError>>,
    flows: u64,
}

/// The flow archive. Cheap to clone; clones share the backend and the watchers.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    config: Config,
    watchers: Arc<Watchers>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store over the given backend.
    pub fn new(backend: impl Backend, config: Config) -> Store {
        Store {
            backend: Arc::new(backend),
            watchers: Arc::new(Watchers::new(config.watch_capacity)),
            config,
        }
    }

    /// Opens the SQLite file or connects to PostgreSQL, creating the schema if needed.
    pub async fn open(location: &StoreLocation, config: Config) -> Result<Store, StoreError> {
        Ok(match location {
            StoreLocation::Sqlite(path) => {
                let path = path.clone();
                let backend = tokio::task::spawn_blocking(move || SqliteBackend::open(&path))
                    .await
                    .map_err(|_| StoreError::Closed)??;
                Store::new(backend, config)
            }
            StoreLocation::Postgres(url) => {
                Store::new(PostgresBackend::connect(url).await?, config)
            }
        })
    }

    /// Asks the database a cheap question (the last sequence number): succeeds while it
    /// answers. For health checks.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.backend.last_seq().await.map(|_| ())
    }

    /// Stores the flows of an Append stream (head, body chunks, end for each flow) and returns
    /// how many were stored. Each flow becomes visible once its end is committed; a flow
    /// appended again replaces the stored one. Complete flows before a malformed part are kept.
    pub async fn append_parts<S>(&self, parts: S) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<FlowPart, StoreError>> + Unpin,
    {
        let mut parts = parts;
        let mut assembler = Assembler::default();
        // One batch may be written while the next is assembled; batches of one stream are
        // written in order, as a flow's chunks may span them.
        let mut writing = None;
        let input_error = loop {
            // Commit whenever the stream has nothing ready, so one flow at a time still gets
            // through promptly, and a burst is committed in large batches.
            let part = match parts.next().now_or_never() {
                Some(part) => part,
                None => {
                    // A failed write ends the call at once: later batches may continue its
                    // flows, and must not be written without it.
                    self.start_write(&mut assembler, &mut writing).await?;
                    parts.next().await
                }
            };
            let Some(part) = part else { break None };
            if let Err(error) = part.and_then(|part| assembler.push(part)) {
                break Some(error);
            }
            if assembler.batch_flows >= self.config.batch_max_flows
                || assembler.batch_bytes >= self.config.batch_max_bytes
            {
                self.start_write(&mut assembler, &mut writing).await?;
            }
        };
        // Complete flows before a malformed part are kept.
        self.start_write(&mut assembler, &mut writing).await?;
        self.finish_write(&mut assembler, &mut writing).await?;
        if let Some(error) = input_error {
            return Err(error);
        }
        if let Some(pending) = assembler.pending {
            return Err(StoreError::Protocol(format!(
                "the stream ended inside flow {}",
                pending.head.id
            )));
        }
        Ok(assembler.stored)
    }

    /// Stores whole flows (bodies inline), as [`Store::append_parts`] does.
    pub async fn append(&self, flows: Vec<Flow>) -> Result<u64, StoreError> {
        let parts = flows.into_iter().flat_map(flow_parts).map(Ok);
        self.append_parts(futures_util::stream::iter(parts)).await
    }

    /// Starts writing the assembled batch, after the one being written is done.
    async fn start_write(
        &self,
        assembler: &mut Assembler,
        writing: &mut Option<Writing>,
    ) -> Result<(), StoreError> {
        if assembler.batch.is_empty() {
            return Ok(());
        }
        self.finish_write(assembler, writing).await?;
        let batch = std::mem::take(&mut assembler.batch);
        let backend = self.backend.clone();
        *writing = Some(Writing {
            // Spawned, so the write progresses while the stream is read.
            write: tokio::spawn(async move {
                let started = std::time::Instant::now();
                let written = backend.write(batch).await;
                flowtap_telemetry::store::append_latency(started.elapsed());
                written
            }),
            flows: std::mem::take(&mut assembler.batch_flows) as u64,
        });
        assembler.batch_bytes = 0;
        Ok(())
    }

    /// Waits for the batch being written, then counts its flows and tells the watchers.
    async fn finish_write(
        &self,
        assembler: &mut Assembler,
        writing: &mut Option<Writing>,
    ) -> Result<(), StoreError> {
        let Some(done) = writing.take() else {
            return Ok(());
        };
        done.write.await.map_err(|_| StoreError::Closed)??;
        flowtap_telemetry::store::flows_stored(done.flows);
        assembler.stored += done.flows;
        self.watchers.committed();
        Ok(())
    }

    /// One flow with its bodies, held in memory. For large bodies prefer [`Store::flow_parts`].
    pub async fn flow(&self, id: &str) -> Result<Flow, StoreError> {
        let stored = self
            .backend
            .flow(id.to_owned())
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        self.with_bodies(stored.flow).await
    }

    async fn with_bodies(&self, flow: Flow) -> Result<Flow, StoreError> {
        load_bodies(&*self.backend, flow).await
    }

    /// One flow as an Append-style stream: its head, body chunks (each body cut after
    /// `body_limit_bytes` unless that is 0), then the end. Bodies are read lazily.
    pub async fn flow_parts(
        &self,
        id: &str,
        body_limit_bytes: u64,
    ) -> Result<BoxStream<'static, Result<FlowPart, StoreError>>, StoreError> {
        let stored = self
            .backend
            .flow(id.to_owned())
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let head = stored.flow;
        let head_part = futures_util::stream::iter([Ok(part(flow_part::Kind::Head(head.clone())))]);
        let mut bodies = Vec::new();
        if head.request.as_ref().is_some_and(|r| r.content.is_some()) {
            bodies.push(body_parts(
                &*self.backend,
                id,
                BodyKind::Request,
                body_limit_bytes,
            ));
        }
        if head.response.as_ref().is_some_and(|r| r.content.is_some()) {
            bodies.push(body_parts(
                &*self.backend,
                id,
                BodyKind::Response,
                body_limit_bytes,
            ));
        }
        let end = futures_util::stream::iter([Ok(part(flow_part::Kind::End(true)))]);
        Ok(head_part
            .chain(futures_util::stream::iter(bodies).flatten())
            .chain(end)
            .boxed())
    }

    /// The stored flows matching `filter`, oldest first, after the cursor `after` (empty for
    /// the start), at most `limit` (0: the configured default page). Items arrive as found.
    pub fn query(
        &self,
        filter: &str,
        limit: usize,
        after: &str,
    ) -> Result<ReceiverStream<Result<QueryItem, StoreError>>, StoreError> {
        let filter = FlowFilter::parse(filter)?;
        let after_seq = parse_cursor(after)?;
        let limit = if limit == 0 {
            self.config.default_page
        } else {
            limit
        };
        let (sender, receiver) = mpsc::channel(64);
        let store = self.clone();
        tokio::spawn(async move {
            let mut matching = store.matching(filter, after_seq);
            let mut sent = 0;
            while sent < limit {
                let Some(next) = matching.next().await else {
                    break;
                };
                let item = next.map(|stored| QueryItem {
                    summary: Some(summary(
                        &stored.flow,
                        stored.request_size,
                        stored.response_size,
                    )),
                    cursor: stored.seq.to_string(),
                });
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    break;
                }
                sent += 1;
            }
        });
        Ok(ReceiverStream::new(receiver))
    }

    /// Calls `each` with the summary of every flow matching `filter`, oldest first; returns how
    /// many there were.
    pub async fn list(
        &self,
        filter: &str,
        mut each: impl FnMut(FlowSummary),
    ) -> Result<u64, StoreError> {
        let mut matching = self.matching(FlowFilter::parse(filter)?, 0);
        let mut count = 0;
        while let Some(stored) = matching.next().await {
            let stored = stored?;
            each(summary(
                &stored.flow,
                stored.request_size,
                stored.response_size,
            ));
            count += 1;
        }
        Ok(count)
    }

    /// Every stored flow matching `filter`, oldest first, with bodies when `with_bodies` (one
    /// flow's bodies in memory at a time).
    pub fn flows(
        &self,
        filter: &str,
        with_bodies: bool,
    ) -> Result<BoxStream<'static, Result<Flow, StoreError>>, StoreError> {
        let filter = FlowFilter::parse(filter)?;
        let backend = self.backend.clone();
        Ok(self
            .matching(filter, 0)
            .and_then(move |stored| {
                let backend = backend.clone();
                async move {
                    if with_bodies && !stored.bodies_loaded {
                        load_bodies(&*backend, stored.flow).await
                    } else {
                        Ok(stored.flow)
                    }
                }
            })
            .boxed())
    }

    /// The stored flows matching the filter, scanning the table in batches. When the filter
    /// reads bodies, small ones come with the scan (in small batches) and large ones are loaded
    /// one flow at a time and dropped again after matching.
    fn matching(
        &self,
        filter: FlowFilter,
        after_seq: i64,
    ) -> BoxStream<'static, Result<StoredFlow, StoreError>> {
        let needs_bodies = filter.needs_bodies();
        let spec = ScanSpec {
            after_seq,
            limit: if needs_bodies {
                self.config.scan_batch_with_bodies
            } else {
                self.config.scan_batch
            },
            conditions: filter.conditions().to_vec(),
            bodies_up_to_bytes: needs_bodies.then_some(self.config.inline_body_bytes),
        };
        let backend = self.backend.clone();
        futures_util::stream::try_unfold(Some(spec), move |spec| {
            let backend = backend.clone();
            let filter = filter.clone();
            async move {
                let Some(mut spec) = spec else {
                    return Ok::<_, StoreError>(None);
                };
                loop {
                    let rows = backend.scan(spec.clone()).await?;
                    let done = rows.len() < spec.limit;
                    if let Some(last) = rows.last() {
                        spec.after_seq = last.seq;
                    }
                    let mut matched = Vec::new();
                    for row in rows {
                        if row_matches(&*backend, &filter, &row).await? {
                            matched.push(Ok(row));
                        }
                    }
                    if !matched.is_empty() || done {
                        let next = (!done).then_some(spec);
                        return Ok(Some((futures_util::stream::iter(matched), next)));
                    }
                }
            }
        })
        .try_flatten()
        .boxed()
    }

    /// Deletes the flows matching `filter`; returns how many.
    pub async fn delete(&self, filter: &str) -> Result<u64, StoreError> {
        let mut ids = Vec::new();
        let mut matching = self.matching(FlowFilter::parse(filter)?, 0);
        while let Some(stored) = matching.next().await {
            ids.push(stored?.flow.id);
        }
        let mut deleted = 0;
        for chunk in ids.chunks(1000) {
            deleted += self.backend.delete(chunk.to_vec()).await?;
        }
        Ok(deleted)
    }
}

/// Whether a scanned flow matches, loading its bodies first if the filter needs them and the
/// scan left them out.
async fn row_matches(
    backend: &dyn Backend,
    filter: &FlowFilter,
    row: &StoredFlow,
) -> Result<bool, StoreError> {
    if !filter.needs_bodies() || row.bodies_loaded {
        return Ok(filter.matches(&row.flow));
    }
    let full = load_bodies(backend, row.flow.clone()).await?;
    Ok(filter.matches(&full))
}

/// The flow with its bodies read into `content`.
async fn load_bodies(backend: &dyn Backend, mut flow: Flow) -> Result<Flow, StoreError> {
    let id = flow.id.clone();
    if let Some(request) = flow.request.as_mut().filter(|r| r.content.is_some()) {
        request.content = Some(read_body(backend, &id, BodyKind::Request).await?);
    }
    if let Some(response) = flow.response.as_mut().filter(|r| r.content.is_some()) {
        response.content = Some(read_body(backend, &id, BodyKind::Response).await?);
    }
    Ok(flow)
}

async fn read_body(backend: &dyn Backend, id: &str, kind: BodyKind) -> Result<Bytes, StoreError> {
    let mut chunks = backend.body(id.to_owned(), kind);
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        body.extend_from_slice(&chunk?);
    }
    Ok(body.into())
}

fn parse_cursor(after: &str) -> Result<i64, StoreError> {
    if after.is_empty() {
        return Ok(0);
    }
    after
        .parse()
        .map_err(|_| StoreError::Protocol(format!("invalid cursor {after:?}")))
}

fn body_parts(
    backend: &dyn Backend,
    id: &str,
    kind: BodyKind,
    limit: u64,
) -> BoxStream<'static, Result<FlowPart, StoreError>> {
    let limit = if limit == 0 { u64::MAX } else { limit };
    backend
        .body(id.to_owned(), kind)
        .scan(0u64, move |sent, chunk| {
            let remaining = limit - *sent;
            let item = chunk.map(|mut data| {
                if data.len() as u64 > remaining {
                    data.truncate(remaining as usize);
                }
                *sent += data.len() as u64;
                data
            });
            futures_util::future::ready((remaining > 0).then_some(item))
        })
        .filter(|item| futures_util::future::ready(!matches!(item, Ok(data) if data.is_empty())))
        .map(move |item| {
            item.map(|data| {
                part(flow_part::Kind::Body(BodyChunk {
                    kind: kind as i32,
                    data,
                }))
            })
        })
        .boxed()
}
