//! A plain gRPC client of a remote flow-store, for the cli.
//!
//! [`RemoteStore`] offers the same operations as [`crate::Store`] over the wire, and
//! [`StoreClient`] is either of them, so the `flowtap flows` command reads the same whether the
//! store is in process or remote.

use std::path::Path;

use bytes::Bytes;
use flowtap_grpc::{Channel, ClientConfig};
use flowtap_proto::v1::flow_store_client::FlowStoreClient;
use flowtap_proto::v1::{
    BodyKind, DeleteRequest, ExportFormat, ExportRequest, FileChunk, Flow, FlowSummary, GetRequest,
    QueryRequest, flow_part,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::files::{FileFormat, file_chunks};
use crate::server::MAX_MESSAGE_BYTES;
use crate::{Config, Store, StoreError, StoreLocation, files};

/// A connected client.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    client: FlowStoreClient<Channel>,
}

impl RemoteStore {
    /// Connects to `endpoint` (`http://host:port`) with plain gRPC and no token.
    pub async fn connect(endpoint: &str) -> Result<RemoteStore, StoreError> {
        Self::connect_with(endpoint, &ClientConfig::default()).await
    }

    /// Connects to `endpoint` (`http://host:port`, `https://host:port`, or `host:port`: see
    /// [`flowtap_grpc::client`]) with the CA, client certificate and token of `security`. A
    /// failed handshake says why (expired certificate, unknown CA, refused client certificate).
    pub async fn connect_with(
        endpoint: &str,
        security: &ClientConfig,
    ) -> Result<RemoteStore, StoreError> {
        let open_error = |message: String| StoreError::Open {
            location: endpoint.to_owned(),
            message,
        };
        let channel = security
            .dial(endpoint)
            .map_err(|e| open_error(e.to_string()))?
            .map_endpoint(|e| {
                e.initial_stream_window_size(crate::server::WINDOW_BYTES)
                    .initial_connection_window_size(2 * crate::server::WINDOW_BYTES)
            })
            .connect()
            .await
            .map_err(|e| open_error(flowtap_grpc::describe(&e)))?;
        Ok(RemoteStore {
            client: FlowStoreClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    /// The raw generated client, for calls this type does not wrap (Append, Watch).
    pub fn client(&self) -> FlowStoreClient<Channel> {
        self.client.clone()
    }

    /// Every flow matching `filter`, oldest first, fetched page by page; `each` is called for
    /// each summary as it arrives.
    pub async fn list(
        &self,
        filter: &str,
        mut each: impl FnMut(FlowSummary),
    ) -> Result<u64, StoreError> {
        let mut client = self.client.clone();
        let (mut after, mut count) = (String::new(), 0);
        loop {
            let request = QueryRequest {
                filter: filter.to_owned(),
                limit: 1000,
                after: after.clone(),
            };
            let mut items = client.query(request).await?.into_inner();
            let mut page = 0;
            while let Some(item) = items.next().await {
                let item = item?;
                after = item.cursor;
                each(item.summary.unwrap_or_default());
                page += 1;
            }
            count += page;
            if page < 1000 {
                return Ok(count);
            }
        }
    }

    /// One flow with its bodies (each cut after `body_limit_bytes` unless 0).
    pub async fn flow(&self, id: &str, body_limit_bytes: u64) -> Result<Flow, StoreError> {
        let request = GetRequest {
            id: id.to_owned(),
            body_limit_bytes,
        };
        let mut parts = self.client.clone().get(request).await?.into_inner();
        let mut flow = None::<Flow>;
        let (mut request_body, mut response_body) = (Vec::new(), Vec::new());
        while let Some(part) = parts.next().await {
            collect_part(part?, &mut flow, &mut request_body, &mut response_body);
        }
        finish_flow(id, flow, request_body, response_body)
    }

    /// Deletes the flows matching `filter`; returns how many.
    pub async fn delete(&self, filter: &str) -> Result<u64, StoreError> {
        let request = DeleteRequest {
            filter: filter.to_owned(),
        };
        Ok(self
            .client
            .clone()
            .delete(request)
            .await?
            .into_inner()
            .deleted)
    }

    /// Imports a local flow file or HAR; returns how many flows were stored.
    pub async fn import_file(&self, path: &Path) -> Result<u64, StoreError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        // A read error ends the upload early; the server then reports a truncated file.
        let chunks = file_chunks(file, path)
            .take_while(|chunk| futures_util::future::ready(chunk.is_ok()))
            .map(|chunk| FileChunk {
                data: chunk.unwrap_or_else(|_| Bytes::new()),
            });
        Ok(self
            .client
            .clone()
            .import(chunks)
            .await?
            .into_inner()
            .imported)
    }

    /// Exports the flows matching `filter` into a local file (HAR for `.har`, else a mitmproxy
    /// flow file); returns the bytes written.
    pub async fn export_file(&self, filter: &str, path: &Path) -> Result<u64, StoreError> {
        let format = match FileFormat::from_path(path) {
            FileFormat::Har => ExportFormat::Har,
            FileFormat::Mitm => ExportFormat::Mitm,
        };
        let request = ExportRequest {
            filter: filter.to_owned(),
            format: format as i32,
        };
        let mut chunks = self.client.clone().export(request).await?.into_inner();
        let action = || format!("writing {}", path.display());
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| StoreError::io(action(), e))?;
        let mut written = 0;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            file.write_all(&chunk.data)
                .await
                .map_err(|e| StoreError::io(action(), e))?;
            written += chunk.data.len() as u64;
        }
        file.flush()
            .await
            .map_err(|e| StoreError::io(action(), e))?;
        Ok(written)
    }
}

/// The archive as the cli uses it: a store opened in this process, or a remote flow-store.
#[derive(Debug, Clone)]
pub enum StoreClient {
    /// A SQLite file or PostgreSQL database opened in process.
    Local(Store),
    /// A flow-store service.
    Remote(RemoteStore),
}

impl StoreClient {
    /// Opens a local store.
    pub async fn open(location: &StoreLocation) -> Result<StoreClient, StoreError> {
        Ok(StoreClient::Local(
            Store::open(location, Config::default()).await?,
        ))
    }

    /// Connects to a flow-store at `endpoint` (`http://host:port`).
    pub async fn connect(endpoint: &str) -> Result<StoreClient, StoreError> {
        Ok(StoreClient::Remote(RemoteStore::connect(endpoint).await?))
    }

    /// Connects to a flow-store at `endpoint` with the TLS and token of `security` (see
    /// [`RemoteStore::connect_with`]).
    pub async fn connect_with(
        endpoint: &str,
        security: &ClientConfig,
    ) -> Result<StoreClient, StoreError> {
        Ok(StoreClient::Remote(
            RemoteStore::connect_with(endpoint, security).await?,
        ))
    }

    /// Calls `each` with the summary of every flow matching `filter`, oldest first.
    pub async fn list(
        &self,
        filter: &str,
        each: impl FnMut(FlowSummary),
    ) -> Result<u64, StoreError> {
        match self {
            StoreClient::Local(store) => store.list(filter, each).await,
            StoreClient::Remote(remote) => remote.list(filter, each).await,
        }
    }

    /// One flow with its bodies (each cut after `body_limit_bytes` unless 0).
    pub async fn flow(&self, id: &str, body_limit_bytes: u64) -> Result<Flow, StoreError> {
        match self {
            StoreClient::Local(store) => {
                let mut parts = store.flow_parts(id, body_limit_bytes).await?;
                let mut flow = None::<Flow>;
                let (mut request_body, mut response_body) = (Vec::new(), Vec::new());
                while let Some(part) = parts.next().await {
                    collect_part(part?, &mut flow, &mut request_body, &mut response_body);
                }
                finish_flow(id, flow, request_body, response_body)
            }
            StoreClient::Remote(remote) => remote.flow(id, body_limit_bytes).await,
        }
    }

    /// Deletes the flows matching `filter`; returns how many.
    pub async fn delete(&self, filter: &str) -> Result<u64, StoreError> {
        match self {
            StoreClient::Local(store) => store.delete(filter).await,
            StoreClient::Remote(remote) => remote.delete(filter).await,
        }
    }

    /// Imports a flow file or HAR; returns how many flows were stored.
    pub async fn import_file(&self, path: &Path) -> Result<u64, StoreError> {
        match self {
            StoreClient::Local(store) => files::import_file(store, path).await,
            StoreClient::Remote(remote) => remote.import_file(path).await,
        }
    }

    /// Exports the flows matching `filter` to a file (HAR for `.har`, else a mitmproxy flow
    /// file); returns the bytes written.
    pub async fn export_file(&self, filter: &str, path: &Path) -> Result<u64, StoreError> {
        match self {
            StoreClient::Local(store) => files::export_file(store, filter, path).await,
            StoreClient::Remote(remote) => remote.export_file(filter, path).await,
        }
    }
}

fn collect_part(
    part: flowtap_proto::v1::FlowPart,
    flow: &mut Option<Flow>,
    request_body: &mut Vec<u8>,
    response_body: &mut Vec<u8>,
) {
    match part.kind {
        Some(flow_part::Kind::Head(head)) => *flow = Some(head),
        Some(flow_part::Kind::Body(chunk)) if chunk.kind == BodyKind::Request as i32 => {
            request_body.extend_from_slice(&chunk.data);
        }
        Some(flow_part::Kind::Body(chunk)) => response_body.extend_from_slice(&chunk.data),
        Some(flow_part::Kind::End(_)) | None => {}
    }
}

fn finish_flow(
    id: &str,
    flow: Option<Flow>,
    request_body: Vec<u8>,
    response_body: Vec<u8>,
) -> Result<Flow, StoreError> {
    let mut flow = flow.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    if let Some(content) = flow.request.as_mut().and_then(|r| r.content.as_mut()) {
        *content = request_body.into();
    }
    if let Some(content) = flow.response.as_mut().and_then(|r| r.content.as_mut()) {
        *content = response_body.into();
    }
    Ok(flow)
}
