//! The storage backends behind one trait, [`Backend`], with one behaviour.
//!
//! A backend stores rows and chunks; it knows nothing about filters or the append protocol. The
//! rules every caller relies on (idempotent append, pages in sequence order, bodies in chunks)
//! live in [`crate::Store`], so SQLite and PostgreSQL cannot drift apart.
//!
//! Tables, in both backends:
//! - `flows`: one row per flow id; `seq` grows with every append, in commit order (the query
//!   order and cursor, and how Watch finds new rows), the summary columns of [`FlowRow`],
//!   `head`, the protobuf-encoded flow with bodies cleared, and last `request_body` and
//!   `response_body`: each body of at most [`INLINE_BODY_BYTES`], else NULL.
//! - `bodies`: `(flow_id, kind, part) -> data`, the larger request (kind 1) and response (kind 2)
//!   bodies in chunks of at most [`CHUNK_BYTES`].
//!
//! A present body is in exactly one of the two places; an empty one may be in neither. Rows
//! written before the body columns existed have every body in `bodies`.

pub mod postgres;
pub mod sqlite;

use bytes::Bytes;
use flowtap_proto::v1::{BodyKind, Flow};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::StoreError;
pub use crate::row::FlowRow;

/// The largest body chunk stored in one row.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Bodies up to this size are kept in their flow's row instead of as chunks. Most bodies are
/// small, and a column of a row the writer inserts anyway costs far less than a row of its own
/// in `bodies` with its index entry (keyed by the flow id: random, for ids from a proxy). The
/// limit keeps a row with both bodies within one page, so scans of heads stay cheap.
pub const INLINE_BODY_BYTES: usize = 4 * 1024;

/// The `flows` column that keeps a body of this kind inline.
pub(crate) fn inline_column(kind: BodyKind) -> &'static str {
    match kind {
        BodyKind::Response => "response_body",
        _ => "request_body",
    }
}

/// One step of a write batch. A batch runs in one transaction, in order.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// A flow is about to be (re)written: drop its row and its body chunks.
    Begin {
        /// The flow id.
        id: String,
    },
    /// A body chunk of a flow being written, for a body kept as chunks (larger than
    /// [`INLINE_BODY_BYTES`]). `part` numbers the chunks of one body from 0.
    Chunk {
        /// The flow id.
        id: String,
        /// Request or response body.
        kind: BodyKind,
        /// Position of the chunk in its body.
        part: u32,
        /// At most [`CHUNK_BYTES`].
        data: Bytes,
    },
    /// The flow is complete: insert its row, with its small bodies, and the next sequence
    /// number.
    Finish(Box<FlowRow>),
}

/// A necessary condition on the summary columns: rows failing it cannot match the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `status_code` equals the value.
    StatusCode(u32),
    /// `type` equals the value.
    FlowType(String),
    /// The column contains the ASCII text, ignoring ASCII case.
    Contains(Column, String),
}

/// The text columns a [`Condition::Contains`] can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The request method.
    Method,
    /// Request host, authority and Host header.
    Host,
    /// The URL.
    Url,
    /// The Content-Type values.
    ContentType,
}

impl Column {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Column::Method => "method",
            Column::Host => "host",
            Column::Url => "url",
            Column::ContentType => "content_type",
        }
    }
}

/// One batch of a scan over the flows table, in sequence order.
#[derive(Debug, Clone, Default)]
pub struct ScanSpec {
    /// Only rows with a sequence number above this.
    pub after_seq: i64,
    /// At most this many rows.
    pub limit: usize,
    /// All of these must hold.
    pub conditions: Vec<Condition>,
    /// Load the bodies into `request.content` / `response.content` of the flows whose bodies
    /// together are at most this many bytes (larger ones are left for the caller to stream).
    pub bodies_up_to_bytes: Option<u64>,
}

/// A flow as read back: its sequence number, its head (bodies present only when asked for), and
/// the body sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlow {
    /// The position of the flow in append order.
    pub seq: i64,
    /// The flow.
    pub flow: Flow,
    /// Request body size in bytes.
    pub request_size: u64,
    /// Response body size in bytes.
    pub response_size: u64,
    /// Whether `flow` holds its bodies.
    pub bodies_loaded: bool,
}

impl StoredFlow {
    /// Whether a scan with `spec` loads this flow's bodies.
    pub(crate) fn wants_bodies(spec: &ScanSpec, request_size: u64, response_size: u64) -> bool {
        spec.bodies_up_to_bytes
            .is_some_and(|limit| request_size.saturating_add(response_size) <= limit)
    }
}

/// A storage backend: SQLite ([`sqlite::SqliteBackend`]) or PostgreSQL
/// ([`postgres::PostgresBackend`]).
pub trait Backend: Send + Sync + 'static {
    /// Runs the batch in one transaction; returns how many stored flows its
    /// [`WriteOp::Begin`]s removed. On error nothing of the batch is kept.
    fn write(&self, batch: Vec<WriteOp>) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// One batch of flows, oldest first.
    fn scan(&self, spec: ScanSpec) -> BoxFuture<'_, Result<Vec<StoredFlow>, StoreError>>;
    /// The highest sequence number stored (0 for none). Every backend numbers rows in commit
    /// order, so a flow committed after this call returns gets a higher one.
    fn last_seq(&self) -> BoxFuture<'_, Result<i64, StoreError>>;
    /// One flow by id, without bodies.
    fn flow(&self, id: String) -> BoxFuture<'_, Result<Option<StoredFlow>, StoreError>>;
    /// The chunks of one body, in order, read lazily.
    fn body(&self, id: String, kind: BodyKind) -> BoxStream<'static, Result<Bytes, StoreError>>;
    /// Deletes flows and their bodies; returns how many flows existed.
    fn delete(&self, ids: Vec<String>) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.write(ids.into_iter().map(|id| WriteOp::Begin { id }).collect())
    }
}

/// Decodes a stored head.
pub(crate) fn decode_head(id: &str, head: &[u8]) -> Result<Flow, StoreError> {
    prost::Message::decode(head).map_err(|source| StoreError::Corrupt {
        id: id.to_owned(),
        source,
    })
}

/// Whether the flow has a body of this kind (present, maybe empty).
pub(crate) fn has_body(flow: &Flow, kind: BodyKind) -> bool {
    match kind {
        BodyKind::Response => flow.response.as_ref().is_some_and(|r| r.content.is_some()),
        _ => flow.request.as_ref().is_some_and(|r| r.content.is_some()),
    }
}

/// Puts loaded bodies into a head: the body of each present-but-empty `content`.
pub(crate) fn fill_bodies(flow: &mut Flow, request: Option<Vec<u8>>, response: Option<Vec<u8>>) {
    if let (Some(r), Some(body)) = (flow.request.as_mut(), request)
        && r.content.is_some()
    {
        r.content = Some(body.into());
    }
    if let (Some(r), Some(body)) = (flow.response.as_mut(), response)
        && r.content.is_some()
    {
        r.content = Some(body.into());
    }
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`, and wraps it in `%`.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}
