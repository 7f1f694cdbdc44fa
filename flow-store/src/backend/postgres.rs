//! The scaled backend: PostgreSQL through a deadpool connection pool.
//!
//! Each write batch is one transaction of a few set-based statements (`= ANY($1)` deletes and
//! `UNNEST` inserts), so a batch of a thousand flows costs a handful of round trips. Bodies are
//! read back through a portal a few chunks at a time, so a large body never sits whole in the
//! client's buffers.

use std::collections::HashSet;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use flowtap_proto::v1::BodyKind;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    Backend, Condition, FlowRow, ScanSpec, StoredFlow, WriteOp, decode_head, fill_bodies, has_body,
    inline_column,
};
use crate::StoreError;

const SCHEMA: &str = "
SELECT pg_advisory_xact_lock(7402117);
CREATE TABLE IF NOT EXISTS flows (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    timestamp_created DOUBLE PRECISION NOT NULL,
    method TEXT NOT NULL,
    host TEXT NOT NULL,
    url TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    request_size BIGINT NOT NULL,
    response_size BIGINT NOT NULL,
    error TEXT NOT NULL,
    client TEXT NOT NULL,
    head BYTEA NOT NULL,
    request_body BYTEA,
    response_body BYTEA
);
DO $$ BEGIN
    -- Databases from before inline bodies; checked first, as ALTER TABLE locks the table.
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'flows' AND column_name = 'request_body') THEN
        ALTER TABLE flows ADD COLUMN request_body BYTEA, ADD COLUMN response_body BYTEA;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS flows_status_code ON flows (status_code);
CREATE INDEX IF NOT EXISTS flows_timestamp_created ON flows (timestamp_created);
CREATE TABLE IF NOT EXISTS bodies (
    flow_id TEXT NOT NULL,
    kind SMALLINT NOT NULL,
    part INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (flow_id, kind, part)
);
";

const INSERT_FLOWS: &str = "
INSERT INTO flows (id, type, timestamp_created, method, host, url, status_code, content_type,
                   request_size, response_size, error, client, head, request_body, response_body)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[], $6::text[],
                     $7::int4[], $8::text[], $9::int8[], $10::int8[], $11::text[], $12::text[],
                     $13::bytea[], $14::bytea[], $15::bytea[])
ON CONFLICT (id) DO UPDATE SET
    seq = nextval(pg_get_serial_sequence('flows', 'seq')), type = EXCLUDED.type,
    timestamp_created = EXCLUDED.timestamp_created, method = EXCLUDED.method,
    host = EXCLUDED.host, url = EXCLUDED.url, status_code = EXCLUDED.status_code,
    content_type = EXCLUDED.content_type, request_size = EXCLUDED.request_size,
    response_size = EXCLUDED.response_size, error = EXCLUDED.error, client = EXCLUDED.client,
    head = EXCLUDED.head, request_body = EXCLUDED.request_body,
    response_body = EXCLUDED.response_body";

const INSERT_CHUNKS: &str = "
INSERT INTO bodies (flow_id, kind, part, data)
SELECT * FROM UNNEST($1::text[], $2::int2[], $3::int4[], $4::bytea[])
ON CONFLICT (flow_id, kind, part) DO UPDATE SET data = EXCLUDED.data";

/// Serialises the part of write transactions that numbers rows (see [`write_part`]).
const SEQ_LOCK: i64 = 7402118;

/// Chunks fetched per round trip when a body is read.
const BODY_CHUNKS_PER_FETCH: i32 = 4;

/// Flows in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresBackend {
    pool: Pool,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend").finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user@host:port/db`), creating the schema if needed.
    pub async fn connect(url: &str) -> Result<PostgresBackend, StoreError> {
        let open_error = |message: String| StoreError::Open {
            location: redact(url),
            message,
        };
        let config: tokio_postgres::Config = url.parse().map_err(|e| open_error(format!("{e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| open_error(e.to_string()))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| open_error(crate::error::pool_message(&e)))?;
        let transaction = client.transaction().await?;
        transaction
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| open_error(crate::error::postgres_message(&e)))?;
        transaction.commit().await?;
        Ok(PostgresBackend { pool })
    }
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Splits a batch where an id is begun again after an earlier op on it, so that inside each
/// part the ops can run grouped by kind (all deletes, then all chunks, then all rows).
fn split_batch(batch: Vec<WriteOp>) -> Vec<Vec<WriteOp>> {
    let mut parts = vec![Vec::new()];
    let mut seen = HashSet::new();
    for op in batch {
        let id = match &op {
            WriteOp::Begin { id } | WriteOp::Chunk { id, .. } => id.clone(),
            WriteOp::Finish(row) => row.id.clone(),
        };
        if matches!(op, WriteOp::Begin { .. }) && seen.contains(&id) {
            parts.push(Vec::new());
            seen.clear();
        }
        seen.insert(id);
        parts.last_mut().expect("parts starts non-empty").push(op);
    }
    parts
}

/// Runs one part of a batch; returns how many flows its Begins removed.
///
/// Before the first rows of a transaction are inserted it takes [`SEQ_LOCK`] until it ends,
/// so transactions that number rows commit one after another, in the order of their
/// sequence numbers. Without it a transaction could commit after a later-numbered one, and a
/// reader that had seen that one (a watcher polling for `seq` above the last it saw) would
/// never see it. Bodies, the bulk of a batch, are written before the lock is taken.
async fn write_part(
    transaction: &tokio_postgres::Transaction<'_>,
    part: Vec<WriteOp>,
    numbering: &mut bool,
) -> Result<u64, StoreError> {
    let mut begun = Vec::new();
    let (mut chunk_ids, mut kinds, mut parts, mut data) = (vec![], vec![], vec![], vec![]);
    let mut rows: Vec<FlowRow> = Vec::new();
    for op in part {
        match op {
            WriteOp::Begin { id } => begun.push(id),
            WriteOp::Chunk {
                id,
                kind,
                part,
                data: chunk,
            } => {
                chunk_ids.push(id);
                kinds.push(kind as i16);
                parts.push(part as i32);
                data.push(chunk);
            }
            WriteOp::Finish(row) => rows.push(*row),
        }
    }
    let mut removed = 0;
    if !begun.is_empty() {
        removed = transaction
            .execute("DELETE FROM flows WHERE id = ANY($1)", &[&begun])
            .await?;
        transaction
            .execute("DELETE FROM bodies WHERE flow_id = ANY($1)", &[&begun])
            .await?;
    }
    if !chunk_ids.is_empty() {
        let data: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
        transaction
            .execute(INSERT_CHUNKS, &[&chunk_ids, &kinds, &parts, &data])
            .await?;
        // Sent: a body held on disk gives its pages back (flowtap_flow::spill).
        data.iter()
            .for_each(|chunk| flowtap_flow::spill::release(chunk));
    }
    if !rows.is_empty() {
        if !*numbering {
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&SEQ_LOCK])
                .await?;
            *numbering = true;
        }
        insert_rows(transaction, &rows).await?;
    }
    Ok(removed)
}

async fn insert_rows(
    transaction: &tokio_postgres::Transaction<'_>,
    rows: &[FlowRow],
) -> Result<(), StoreError> {
    fn column<'a, T>(rows: &'a [FlowRow], f: impl Fn(&'a FlowRow) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    let ids = column(rows, |r| r.id.as_str());
    let types = column(rows, |r| r.flow_type.as_str());
    let created = column(rows, |r| r.timestamp_created);
    let methods = column(rows, |r| r.method.as_str());
    let hosts = column(rows, |r| r.host.as_str());
    let urls = column(rows, |r| r.url.as_str());
    let codes = column(rows, |r| r.status_code as i32);
    let content_types = column(rows, |r| r.content_type.as_str());
    let request_sizes = column(rows, |r| r.request_size as i64);
    let response_sizes = column(rows, |r| r.response_size as i64);
    let errors = column(rows, |r| r.error.as_str());
    let clients = column(rows, |r| r.client.as_str());
    let heads = column(rows, |r| r.head.as_slice());
    let request_bodies = column(rows, |r| r.request_body.as_deref());
    let response_bodies = column(rows, |r| r.response_body.as_deref());
    let params: [&(dyn ToSql + Sync); 15] = [
        &ids,
        &types,
        &created,
        &methods,
        &hosts,
        &urls,
        &codes,
        &content_types,
        &request_sizes,
        &response_sizes,
        &errors,
        &clients,
        &heads,
        &request_bodies,
        &response_bodies,
    ];
    transaction.execute(INSERT_FLOWS, &params).await?;
    Ok(())
}

impl PostgresBackend {
    async fn scan(&self, spec: ScanSpec) -> Result<Vec<StoredFlow>, StoreError> {
        let bodies = if spec.bodies_up_to_bytes.is_some() {
            "request_body, response_body"
        } else {
            "NULL::bytea, NULL::bytea"
        };
        let mut sql = format!(
            "SELECT seq, id, head, request_size, response_size, {bodies} FROM flows WHERE seq > $1"
        );
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(spec.after_seq)];
        for condition in &spec.conditions {
            let n = params.len() + 1;
            match condition {
                Condition::StatusCode(code) => {
                    sql.push_str(&format!(" AND status_code = ${n}"));
                    params.push(Box::new(*code as i32));
                }
                Condition::FlowType(flow_type) => {
                    sql.push_str(&format!(" AND type = ${n}"));
                    params.push(Box::new(flow_type.clone()));
                }
                Condition::Contains(column, text) => {
                    sql.push_str(&format!(" AND {} ILIKE ${n} ESCAPE '\\'", column.name()));
                    params.push(Box::new(super::like_pattern(text)));
                }
            }
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", spec.limit));
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(&sql).await?;
        let params: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&statement, &params).await?;
        let mut flows = Vec::with_capacity(rows.len());
        for row in rows {
            let id: &str = row.try_get(1)?;
            let mut flow = decode_head(id, row.try_get(2)?)?;
            let request_size = row.try_get::<_, i64>(3)? as u64;
            let response_size = row.try_get::<_, i64>(4)? as u64;
            let bodies_loaded = StoredFlow::wants_bodies(&spec, request_size, response_size);
            if bodies_loaded {
                let request: Option<&[u8]> = row.try_get(5)?;
                let response: Option<&[u8]> = row.try_get(6)?;
                // An absent body needs no chunks: it counts as found.
                let found = |body: Option<&[u8]>, kind| {
                    body.map(<[u8]>::to_vec)
                        .or_else(|| (!has_body(&flow, kind)).then(Vec::new))
                };
                let request = found(request, BodyKind::Request);
                let response = found(response, BodyKind::Response);
                let (request, response) = load_bodies(&client, id, request, response).await?;
                fill_bodies(&mut flow, request, response);
            }
            flows.push(StoredFlow {
                seq: row.try_get(0)?,
                flow,
                request_size,
                response_size,
                bodies_loaded,
            });
        }
        Ok(flows)
    }
}

type Bodies = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The flow's bodies: those already found (in its row), and the chunks of the others.
async fn load_bodies(
    client: &tokio_postgres::Client,
    id: &str,
    request: Option<Vec<u8>>,
    response: Option<Vec<u8>>,
) -> Result<Bodies, StoreError> {
    if request.is_some() && response.is_some() {
        return Ok((request, response));
    }
    let rows = client
        .query(
            "SELECT kind, data FROM bodies WHERE flow_id = $1 ORDER BY kind, part",
            &[&id],
        )
        .await?;
    let found = [request.is_some(), response.is_some()];
    let (mut request, mut response) = (request, response);
    for row in rows {
        let (target, index) = if row.try_get::<_, i16>(0)? == BodyKind::Request as i16 {
            (&mut request, 0)
        } else {
            (&mut response, 1)
        };
        if !found[index] {
            target
                .get_or_insert_with(Vec::new)
                .extend_from_slice(row.try_get(1)?);
        }
    }
    Ok((request, response))
}

async fn send_body(
    pool: Pool,
    id: String,
    kind: BodyKind,
    sender: &mpsc::Sender<Result<Bytes, StoreError>>,
) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let inline = format!("SELECT {} FROM flows WHERE id = $1", inline_column(kind));
    if let Some(row) = client.query_opt(&inline, &[&id]).await?
        && let Some(body) = row.try_get::<_, Option<&[u8]>>(0)?
    {
        let _ = sender.send(Ok(Bytes::copy_from_slice(body))).await;
        return Ok(());
    }
    let transaction = client.transaction().await?;
    let portal = transaction
        .bind(
            "SELECT data FROM bodies WHERE flow_id = $1 AND kind = $2 ORDER BY part",
            &[&id, &(kind as i16)],
        )
        .await?;
    loop {
        let rows = transaction
            .query_portal(&portal, BODY_CHUNKS_PER_FETCH)
            .await?;
        for row in &rows {
            let chunk: &[u8] = row.try_get(0)?;
            if sender
                .send(Ok(Bytes::copy_from_slice(chunk)))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        if rows.len() < BODY_CHUNKS_PER_FETCH as usize {
            return Ok(());
        }
    }
}

impl Backend for PostgresBackend {
    fn write(&self, batch: Vec<WriteOp>) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let (mut removed, mut numbering) = (0, false);
            for part in split_batch(batch) {
                removed += write_part(&transaction, part, &mut numbering).await?;
            }
            transaction.commit().await?;
            Ok(removed)
        }
        .boxed()
    }

    fn scan(&self, spec: ScanSpec) -> BoxFuture<'_, Result<Vec<StoredFlow>, StoreError>> {
        PostgresBackend::scan(self, spec).boxed()
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        async move {
            let client = self.pool.get().await?;
            let row = client
                .query_one("SELECT COALESCE(MAX(seq), 0)::int8 FROM flows", &[])
                .await?;
            Ok(row.try_get(0)?)
        }
        .boxed()
    }

    fn flow(&self, id: String) -> BoxFuture<'_, Result<Option<StoredFlow>, StoreError>> {
        async move {
            let client = self.pool.get().await?;
            let row = client
                .query_opt(
                    "SELECT seq, head, request_size, response_size FROM flows WHERE id = $1",
                    &[&id],
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(StoredFlow {
                seq: row.try_get(0)?,
                flow: decode_head(&id, row.try_get(1)?)?,
                request_size: row.try_get::<_, i64>(2)? as u64,
                response_size: row.try_get::<_, i64>(3)? as u64,
                bodies_loaded: false,
            }))
        }
        .boxed()
    }

    fn body(&self, id: String, kind: BodyKind) -> BoxStream<'static, Result<Bytes, StoreError>> {
        let (sender, receiver) = mpsc::channel(2);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(error) = send_body(pool, id, kind, &sender).await {
                let _ = sender.send(Err(error)).await;
            }
        });
        ReceiverStream::new(receiver).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://flowtap:s3cret@db:5432/flows"),
            "postgres://flowtap@db:5432/flows"
        );
        assert_eq!(redact("postgres://db/flows"), "postgres://db/flows");
    }

    #[test]
    fn a_batch_splits_where_an_id_begins_again() {
        let begin = |id: &str| WriteOp::Begin { id: id.into() };
        let parts = split_batch(vec![begin("a"), begin("b"), begin("a"), begin("c")]);
        let lengths: Vec<_> = parts.iter().map(Vec::len).collect();
        assert_eq!(lengths, [2, 2]);
    }
}
