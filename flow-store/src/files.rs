//! Import and export of mitmproxy flow files (`.mitm`, tnetstring, format 21) and HAR.
//!
//! The codecs are `flowtap-flow`'s and are synchronous, so each runs on a blocking thread fed
//! by channels: an import reads the file as its chunks arrive and stores flows in batches as
//! they are decoded; an export writes flows as they are read from the store. Neither holds the
//! whole file, and a bad record stops an import after the flows before it were stored.

use std::io::{Read, Write};
use std::path::Path;

use bytes::Bytes;
use flowtap_flow::{FlowReader, FlowWriter, har};
use flowtap_proto::v1::Flow;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{Store, StoreError};

/// Flows stored per write during an import.
const IMPORT_BATCH: usize = 256;
/// Bytes per chunk of an exported file.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

/// The file formats of import and export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// mitmproxy's flow file (tnetstring).
    Mitm,
    /// HTTP Archive 1.2, as mitmproxy's `savehar` writes it.
    Har,
}

impl FileFormat {
    /// HAR for a `.har` file name, else a mitmproxy flow file.
    pub fn from_path(path: &Path) -> FileFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("har") => FileFormat::Har,
            _ => FileFormat::Mitm,
        }
    }
}

/// Stores the flows of a flow file (or HAR) arriving in chunks; returns how many. On a bad
/// record the flows before it stay stored and the error names its byte offset.
pub async fn import<S>(store: &Store, chunks: S) -> Result<u64, StoreError>
where
    S: Stream<Item = Result<Bytes, StoreError>> + Send + Unpin + 'static,
{
    let (chunk_sender, chunk_receiver) = mpsc::channel(4);
    let (flow_sender, mut flows) = mpsc::channel::<Result<Flow, (u64, String)>>(IMPORT_BATCH);
    let forward = tokio::spawn(async move {
        let mut chunks = chunks;
        while let Some(chunk) = chunks.next().await {
            if chunk_sender.send(chunk).await.is_err() {
                break;
            }
        }
    });
    tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            chunks: chunk_receiver,
            current: Bytes::new(),
        };
        let result = read_flows(reader, &mut |flow| {
            flow_sender.blocking_send(Ok(flow)).is_ok()
        });
        if let Err(error) = result {
            let _ = flow_sender.blocking_send(Err(error));
        }
    });
    let mut imported = 0;
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut failure = None;
    while let Some(next) = flows.recv().await {
        match next {
            Ok(flow) => batch.push(flow),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
        if batch.len() == IMPORT_BATCH || flows.is_empty() {
            imported += store.append(std::mem::take(&mut batch)).await?;
        }
    }
    imported += store.append(batch).await?;
    forward.abort();
    match failure {
        Some((offset, message)) => Err(StoreError::Import {
            offset,
            message,
            imported,
        }),
        None => Ok(imported),
    }
}

/// [`import`] of a local file.
pub async fn import_file(store: &Store, path: &Path) -> Result<u64, StoreError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
    import(store, file_chunks(file, path)).await
}

/// A file as a stream of chunks.
pub fn file_chunks(
    file: tokio::fs::File,
    path: &Path,
) -> BoxStream<'static, Result<Bytes, StoreError>> {
    let path = path.display().to_string();
    futures_util::stream::try_unfold(file, move |mut file| {
        let path = path.clone();
        async move {
            let mut buffer = vec![0; EXPORT_CHUNK_BYTES];
            let read = file
                .read(&mut buffer)
                .await
                .map_err(|e| StoreError::io(format!("reading {path}"), e))?;
            buffer.truncate(read);
            Ok((read > 0).then(|| (Bytes::from(buffer), file)))
        }
    })
    .boxed()
}

/// The flows matching `filter` as a file of the given format, in chunks.
pub fn export(
    store: &Store,
    filter: &str,
    format: FileFormat,
) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
    let mut flows = store.flows(filter, true)?;
    let (flow_sender, mut flow_receiver) = mpsc::channel::<Flow>(4);
    let (out, chunks) = mpsc::channel(4);
    let errors = out.clone();
    tokio::spawn(async move {
        while let Some(flow) = flows.next().await {
            let sent = match flow {
                Ok(flow) => flow_sender.send(flow).await.is_ok(),
                Err(error) => {
                    let _ = errors.send(Err(error)).await;
                    false
                }
            };
            if !sent {
                break;
            }
        }
    });
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            out: out.clone(),
            buffer: Vec::with_capacity(EXPORT_CHUNK_BYTES),
        };
        let flows = std::iter::from_fn(|| flow_receiver.blocking_recv());
        let result = write_flows(format, &mut writer, flows);
        if let Err(error) = result {
            let _ = out.blocking_send(Err(error));
        }
    });
    Ok(ReceiverStream::new(chunks).boxed())
}

/// [`export`] into a local file, its format chosen by its extension; returns the bytes written.
pub async fn export_file(store: &Store, filter: &str, path: &Path) -> Result<u64, StoreError> {
    use tokio::io::AsyncWriteExt;
    let mut chunks = export(store, filter, FileFormat::from_path(path))?;
    let action = || format!("writing {}", path.display());
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| StoreError::io(action(), e))?;
    let mut written = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        file.write_all(&chunk)
            .await
            .map_err(|e| StoreError::io(action(), e))?;
        written += chunk.len() as u64;
    }
    file.flush()
        .await
        .map_err(|e| StoreError::io(action(), e))?;
    Ok(written)
}

/// Reads flows from a flow file or HAR, calling `each` for every flow until it returns false.
/// On a bad record: its byte offset and what is wrong.
fn read_flows(reader: impl Read, each: &mut dyn FnMut(Flow) -> bool) -> Result<(), (u64, String)> {
    for flow in FlowReader::new(reader) {
        match flow {
            Ok(flow) => {
                if !each(flow) {
                    return Ok(());
                }
            }
            Err(error) => return Err((error.offset(), error.to_string())),
        }
    }
    Ok(())
}

/// Writes flows in the given format. A HAR document is written entry by entry, so no more than
/// one flow is in memory; it lacks only mitmproxy's "connect time once per server" detail.
fn write_flows(
    format: FileFormat,
    writer: &mut ChannelWriter,
    flows: impl Iterator<Item = Flow>,
) -> Result<(), StoreError> {
    let failed = |e: std::io::Error| StoreError::Export(e.to_string());
    match format {
        FileFormat::Mitm => {
            let mut file = FlowWriter::new(&mut *writer);
            for flow in flows {
                file.add(&flow).map_err(failed)?;
            }
        }
        FileFormat::Har => {
            let head = format!(
                "{{\n    \"log\": {{\n        \"version\": \"1.2\",\n        \"creator\": {{\"name\": \"flowtap\", \"version\": \"{}\", \"comment\": \"\"}},\n        \"pages\": [],\n        \"entries\": [",
                env!("CARGO_PKG_VERSION")
            );
            writer.write_all(head.as_bytes()).map_err(failed)?;
            let mut first = true;
            for entry in flows.filter_map(|flow| har::entry(&flow)) {
                let separator = if first { "\n" } else { ",\n" };
                first = false;
                writer.write_all(separator.as_bytes()).map_err(failed)?;
                writer.write_all(entry.as_bytes()).map_err(failed)?;
            }
            writer
                .write_all(b"\n        ]\n    }\n}\n")
                .map_err(failed)?;
        }
    }
    writer.finish().map_err(failed)
}

/// A [`Read`] over chunks arriving on a channel (used on a blocking thread).
struct ChannelReader {
    chunks: mpsc::Receiver<Result<Bytes, StoreError>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(error)) => return Err(std::io::Error::other(error)),
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A [`Write`] that sends fixed-size chunks on a channel (used on a blocking thread).
struct ChannelWriter {
    out: mpsc::Sender<Result<Bytes, StoreError>>,
    buffer: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= EXPORT_CHUNK_BYTES {
            self.finish()?;
        }
        Ok(data.len())
    }

    /// Chunks are sent when full or at [`ChannelWriter::finish`]: the flow writer flushes after
    /// every flow, which would make one small chunk per flow.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChannelWriter {
    /// Sends what is buffered.
    fn finish(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(EXPORT_CHUNK_BYTES),
        ));
        self.out
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "export abandoned"))
    }
}
