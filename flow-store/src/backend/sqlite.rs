//! The embedded backend: one SQLite file in WAL mode.
//!
//! All writes go through one dedicated thread that owns the write connection. It takes every
//! batch that is waiting and commits them in one transaction (group commit), so many small
//! Append streams cost one fsync between them. Reads run on the blocking pool with their own
//! connections, which WAL lets proceed while the writer commits. A third thread copies the
//! write-ahead log back into the database file (module `checkpoint`), so the writer only appends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flowtap_proto::v1::BodyKind;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::{
    Backend, Condition, FlowRow, ScanSpec, StoredFlow, WriteOp, decode_head, fill_bodies, has_body,
    inline_column,
};
use crate::StoreError;

mod checkpoint;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    timestamp_created REAL NOT NULL,
    method TEXT NOT NULL,
    host TEXT NOT NULL,
    url TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    request_size INTEGER NOT NULL,
    response_size INTEGER NOT NULL,
    error TEXT NOT NULL,
    client TEXT NOT NULL,
    head BLOB NOT NULL,
    request_body BLOB,
    response_body BLOB
);
CREATE INDEX IF NOT EXISTS flows_status_code ON flows (status_code);
CREATE INDEX IF NOT EXISTS flows_timestamp_created ON flows (timestamp_created);
CREATE TABLE IF NOT EXISTS bodies (
    flow_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    part INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (flow_id, kind, part)
);
";

/// The page size of new database files.
const PAGE_BYTES: i64 = 16 * 1024;

/// Batches waiting for the writer thread are committed together, up to this many.
const GROUP_COMMIT_BATCHES: usize = 64;

type WriteRequest = (Vec<WriteOp>, oneshot::Sender<Result<u64, StoreError>>);

/// Flows in one SQLite file. Cheap to share: clones use the same writer thread.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    path: PathBuf,
    writer: mpsc::Sender<WriteRequest>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file and its schema, and starts the writer
    /// thread. The parent directory is created too.
    pub fn open(path: &Path) -> Result<SqliteBackend, StoreError> {
        let open_error = |message: String| StoreError::Open {
            location: path.display().to_string(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::private::create_dir(parent).map_err(|e| open_error(e.to_string()))?;
        }
        // A new database is created 0600 here, before SQLite would create it with the umask's
        // mode; SQLite gives its -wal and -shm files the database file's mode.
        crate::private::open_append(path).map_err(|e| open_error(e.to_string()))?;
        let mut connection = connect(path).map_err(|e| open_error(e.to_string()))?;
        connection
            .execute_batch(SCHEMA)
            .map_err(|e| open_error(e.to_string()))?;
        add_body_columns(&mut connection).map_err(|e| open_error(e.to_string()))?;
        checkpoint::start(path, &mut connection).map_err(open_error)?;
        let (writer, requests) = mpsc::channel(1024);
        std::thread::Builder::new()
            .name("flow-store-sqlite-writer".into())
            .spawn(move || write_loop(connection, requests))
            .map_err(|e| open_error(format!("starting writer thread: {e}")))?;
        Ok(SqliteBackend {
            path: path.to_owned(),
            writer,
            readers: Arc::default(),
        })
    }

    /// Runs `read` with a reader connection on the blocking pool.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let connection = this.take_reader()?;
            let result = read(&connection);
            this.readers
                .lock()
                .expect("reader pool lock is never held across a panic")
                .push(connection);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        let pooled = self
            .readers
            .lock()
            .expect("reader pool lock is never held across a panic")
            .pop();
        match pooled {
            Some(connection) => Ok(connection),
            None => Ok(connect(&self.path)?),
        }
    }
}

fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    // Only a new, empty file takes it (it must come before WAL mode writes the header). A flow
    // is about 3.5 KiB of rows, bodies and index entries: with 16 KiB pages the writer appends
    // and checkpoints a quarter of the pages (and system calls) it would with 4 KiB ones.
    connection.pragma_update(None, "page_size", PAGE_BYTES)?;
    // WAL: readers never wait for the writer. synchronous=NORMAL: a power cut may lose the last
    // transactions but never corrupts the file, which is SQLite's advice for WAL.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(connection)
}

/// Adds the inline body columns to a database created before they existed.
fn add_body_columns(connection: &mut Connection) -> Result<(), rusqlite::Error> {
    // IMMEDIATE: another process opening the same file waits, then finds the columns.
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let present: i64 = transaction.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('flows') WHERE name = 'request_body'",
        [],
        |row| row.get(0),
    )?;
    if present == 0 {
        transaction.execute_batch(
            "ALTER TABLE flows ADD COLUMN request_body BLOB;
             ALTER TABLE flows ADD COLUMN response_body BLOB;",
        )?;
    }
    transaction.commit()
}

fn write_loop(mut connection: Connection, mut requests: mpsc::Receiver<WriteRequest>) {
    while let Some(first) = requests.blocking_recv() {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_BATCHES {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        if group.len() > 1
            && let Ok(removed) = write_batches(&mut connection, group.iter().map(|(b, _)| b))
        {
            for ((_, reply), removed) in group.into_iter().zip(removed) {
                let _ = reply.send(Ok(removed));
            }
            continue;
        }
        // Alone, or the group failed: one transaction each, so one bad batch fails alone.
        for (batch, reply) in group {
            let result = write_batches(&mut connection, [&batch]);
            let _ = reply.send(result.map(|removed| removed[0]));
        }
    }
}

/// Runs batches in one transaction; returns, per batch, how many flows its Begins removed.
fn write_batches<'a>(
    connection: &mut Connection,
    batches: impl IntoIterator<Item = &'a Vec<WriteOp>>,
) -> Result<Vec<u64>, StoreError> {
    let transaction = connection.transaction()?;
    let mut removed = Vec::new();
    for batch in batches {
        let mut count = 0;
        for op in batch {
            count += apply(&transaction, op)?;
        }
        removed.push(count);
    }
    transaction.commit()?;
    Ok(removed)
}

fn apply(connection: &Connection, op: &WriteOp) -> Result<u64, StoreError> {
    let mut removed = 0;
    match op {
        WriteOp::Begin { id } => {
            removed = connection
                .prepare_cached("DELETE FROM flows WHERE id = ?1")?
                .execute([id])? as u64;
            connection
                .prepare_cached("DELETE FROM bodies WHERE flow_id = ?1")?
                .execute([id])?;
        }
        WriteOp::Chunk {
            id,
            kind,
            part,
            data,
        } => {
            connection
                .prepare_cached("INSERT OR REPLACE INTO bodies (flow_id, kind, part, data) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![id, *kind as i32, part, &data[..]])?;
            // Written: a body held on disk gives its pages back (flowtap_flow::spill).
            flowtap_flow::spill::release(data);
        }
        WriteOp::Finish(row) => insert_row(connection, row)?,
    }
    Ok(removed)
}

fn insert_row(connection: &Connection, row: &FlowRow) -> Result<(), StoreError> {
    // REPLACE deletes a row with the same id and inserts a new one with the next seq.
    connection
        .prepare_cached(
            "INSERT OR REPLACE INTO flows (id, type, timestamp_created, method, host, url, \
             status_code, content_type, request_size, response_size, error, client, head, \
             request_body, response_body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            row.id,
            row.flow_type,
            row.timestamp_created,
            row.method,
            row.host,
            row.url,
            row.status_code,
            row.content_type,
            row.request_size as i64,
            row.response_size as i64,
            row.error,
            row.client,
            row.head,
            row.request_body.as_deref(),
            row.response_body.as_deref(),
        ])?;
    Ok(())
}

fn scan(connection: &Connection, spec: &ScanSpec) -> Result<Vec<StoredFlow>, StoreError> {
    let bodies = if spec.bodies_up_to_bytes.is_some() {
        "request_body, response_body"
    } else {
        "NULL, NULL"
    };
    let mut sql = format!(
        "SELECT seq, id, head, request_size, response_size, {bodies} FROM flows WHERE seq > ?"
    );
    let mut values: Vec<rusqlite::types::Value> = vec![spec.after_seq.into()];
    for condition in &spec.conditions {
        match condition {
            Condition::StatusCode(code) => {
                sql.push_str(" AND status_code = ?");
                values.push(i64::from(*code).into());
            }
            Condition::FlowType(flow_type) => {
                sql.push_str(" AND type = ?");
                values.push(flow_type.clone().into());
            }
            Condition::Contains(column, text) => {
                // LIKE ignores ASCII case in SQLite, as the filter does.
                sql.push_str(&format!(" AND {} LIKE ? ESCAPE '\\'", column.name()));
                values.push(super::like_pattern(text).into());
            }
        }
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    values.push((spec.limit as i64).into());
    let mut statement = connection.prepare_cached(&sql)?;
    let mut rows = statement.query(params_from_iter(values))?;
    let mut flows = Vec::new();
    while let Some(row) = rows.next()? {
        let id: String = row.get(1)?;
        let mut flow = decode_head(&id, row.get_ref(2)?.as_blob()?)?;
        let request_size = row.get::<_, i64>(3)? as u64;
        let response_size = row.get::<_, i64>(4)? as u64;
        let bodies_loaded = StoredFlow::wants_bodies(spec, request_size, response_size);
        if bodies_loaded {
            let (request, response): Bodies = (row.get(5)?, row.get(6)?);
            // An absent body needs no chunks: it counts as found.
            let (request, response) = (
                request.or_else(|| (!has_body(&flow, BodyKind::Request)).then(Vec::new)),
                response.or_else(|| (!has_body(&flow, BodyKind::Response)).then(Vec::new)),
            );
            let (request, response) = load_bodies(connection, &id, request, response)?;
            fill_bodies(&mut flow, request, response);
        }
        flows.push(StoredFlow {
            seq: row.get(0)?,
            flow,
            request_size,
            response_size,
            bodies_loaded,
        });
    }
    Ok(flows)
}

type Bodies = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The flow's bodies: those already found (in its row), and the chunks of the others.
fn load_bodies(
    connection: &Connection,
    id: &str,
    request: Option<Vec<u8>>,
    response: Option<Vec<u8>>,
) -> Result<Bodies, StoreError> {
    if request.is_some() && response.is_some() {
        return Ok((request, response));
    }
    let mut statement = connection
        .prepare_cached("SELECT kind, data FROM bodies WHERE flow_id = ?1 ORDER BY kind, part")?;
    let mut rows = statement.query([id])?;
    let found = [request.is_some(), response.is_some()];
    let (mut request, mut response) = (request, response);
    while let Some(row) = rows.next()? {
        let (target, index) = if row.get::<_, i32>(0)? == BodyKind::Request as i32 {
            (&mut request, 0)
        } else {
            (&mut response, 1)
        };
        if !found[index] {
            target
                .get_or_insert_with(Vec::new)
                .extend_from_slice(row.get_ref(1)?.as_blob()?);
        }
    }
    Ok((request, response))
}

impl Backend for SqliteBackend {
    fn write(&self, batch: Vec<WriteOp>) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let (reply, result) = oneshot::channel();
            self.writer
                .send((batch, reply))
                .await
                .map_err(|_| StoreError::Closed)?;
            result.await.map_err(|_| StoreError::Closed)?
        }
        .boxed()
    }

    fn scan(&self, spec: ScanSpec) -> BoxFuture<'_, Result<Vec<StoredFlow>, StoreError>> {
        self.read(move |connection| scan(connection, &spec)).boxed()
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        // One writer at a time and AUTOINCREMENT: sequence numbers are given in commit order.
        self.read(|connection| {
            let last = connection
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM flows")?
                .query_row([], |row| row.get(0))?;
            Ok(last)
        })
        .boxed()
    }

    fn flow(&self, id: String) -> BoxFuture<'_, Result<Option<StoredFlow>, StoreError>> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq, head, request_size, response_size FROM flows WHERE id = ?1",
            )?;
            let mut rows = statement.query([&id])?;
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            Ok(Some(StoredFlow {
                seq: row.get(0)?,
                flow: decode_head(&id, row.get_ref(1)?.as_blob()?)?,
                request_size: row.get::<_, i64>(2)? as u64,
                response_size: row.get::<_, i64>(3)? as u64,
                bodies_loaded: false,
            }))
        })
        .boxed()
    }

    fn body(&self, id: String, kind: BodyKind) -> BoxStream<'static, Result<Bytes, StoreError>> {
        // A small channel: the reader thread stays at most a few chunks ahead of the consumer.
        let (sender, receiver) = mpsc::channel(2);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = this.take_reader().and_then(|connection| {
                let sent = send_body(&connection, &id, kind, &sender);
                this.readers
                    .lock()
                    .expect("reader pool lock is never held across a panic")
                    .push(connection);
                sent
            });
            if let Err(error) = result {
                let _ = sender.blocking_send(Err(error));
            }
        });
        ReceiverStream::new(receiver).boxed()
    }
}

fn send_body(
    connection: &Connection,
    id: &str,
    kind: BodyKind,
    sender: &mpsc::Sender<Result<Bytes, StoreError>>,
) -> Result<(), StoreError> {
    let inline = format!("SELECT {} FROM flows WHERE id = ?1", inline_column(kind));
    let body: Option<Option<Vec<u8>>> = connection
        .prepare_cached(&inline)?
        .query_row([id], |row| row.get(0))
        .optional()?;
    if let Some(Some(body)) = body {
        let _ = sender.blocking_send(Ok(body.into()));
        return Ok(());
    }
    let mut statement = connection
        .prepare_cached("SELECT data FROM bodies WHERE flow_id = ?1 AND kind = ?2 ORDER BY part")?;
    let mut rows = statement.query(params![id, kind as i32])?;
    while let Some(row) = rows.next()? {
        let chunk = Bytes::copy_from_slice(row.get_ref(0)?.as_blob()?);
        if sender.blocking_send(Ok(chunk)).is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use flowtap_proto::v1::{Flow, Request, Response};
    use prost::Message;

    use super::*;
    use crate::{Config, Store};

    /// The schema before bodies could be kept in the flow's row.
    const OLD_SCHEMA: &str = "
        CREATE TABLE flows (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
            timestamp_created REAL NOT NULL, method TEXT NOT NULL, host TEXT NOT NULL,
            url TEXT NOT NULL, status_code INTEGER NOT NULL, content_type TEXT NOT NULL,
            request_size INTEGER NOT NULL, response_size INTEGER NOT NULL, error TEXT NOT NULL,
            client TEXT NOT NULL, head BLOB NOT NULL);
        CREATE TABLE bodies (flow_id TEXT NOT NULL, kind INTEGER NOT NULL, part INTEGER NOT NULL,
            data BLOB NOT NULL, PRIMARY KEY (flow_id, kind, part));";

    fn flow(id: &str, request: &'static [u8], response: &'static [u8]) -> Flow {
        Flow {
            id: id.into(),
            r#type: "http".into(),
            request: Some(Request {
                content: Some(Bytes::from_static(request)),
                ..Default::default()
            }),
            response: Some(Response {
                content: Some(Bytes::from_static(response)),
                status_code: 200,
                ..Default::default()
            }),
            ..Flow::default()
        }
    }

    #[tokio::test]
    async fn a_database_from_before_inline_bodies_is_read_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.db");
        let old = flow("old", b"old request", b"old response");
        {
            let connection = Connection::open(&path).unwrap();
            connection.execute_batch(OLD_SCHEMA).unwrap();
            let mut head = old.clone();
            head.request.as_mut().unwrap().content = Some(Bytes::new());
            head.response.as_mut().unwrap().content = Some(Bytes::new());
            connection
                .execute(
                    "INSERT INTO flows (id, type, timestamp_created, method, host, url, \
                     status_code, content_type, request_size, response_size, error, client, \
                     head) VALUES ('old', 'http', 0, '', '', '', 200, '', 11, 12, '', '', ?1)",
                    [head.encode_to_vec()],
                )
                .unwrap();
            for (kind, data) in [(1, &b"old request"[..]), (2, &b"old response"[..])] {
                connection
                    .execute(
                        "INSERT INTO bodies (flow_id, kind, part, data) VALUES ('old', ?1, 0, ?2)",
                        params![kind, data],
                    )
                    .unwrap();
            }
        }
        let store = Store::new(SqliteBackend::open(&path).unwrap(), Config::default());
        assert_eq!(store.flow("old").await.unwrap(), old);
        let new = flow("new", b"new request", b"new response");
        store.append(vec![new.clone()]).await.unwrap();
        assert_eq!(store.flow("new").await.unwrap(), new);
        let mut found = Vec::new();
        store
            .list("~bs response", |s| found.push(s.id))
            .await
            .unwrap();
        assert_eq!(found, ["old", "new"]);
        // Opening it again finds the columns there.
        drop(store);
        SqliteBackend::open(&path).unwrap();
    }
}
