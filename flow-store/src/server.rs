//! The `FlowStore` gRPC service (store.proto) over a [`Store`].
//!
//! Every method is a thin translation: protobuf request in, [`Store`] call, protobuf stream
//! out. Errors become statuses in [`crate::status`].

use std::future::Future;
use std::pin::Pin;

use flowtap_grpc::ServerConfig;
use flowtap_proto::v1::flow_store_server::{FlowStore, FlowStoreServer};
use flowtap_proto::v1::{
    AppendResult, DeleteRequest, DeleteResult, ExportFormat, ExportRequest, FileChunk, FlowPart,
    FlowSummary, GetRequest, ImportResult, QueryItem, QueryRequest, WatchRequest,
};
use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

use crate::files::{self, FileFormat};
use crate::{Store, StoreError};

/// The largest message accepted or sent: heads with many WebSocket or TCP messages are large.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The HTTP/2 flow-control window of a stream, both ways.
pub const WINDOW_BYTES: u32 = 8 * 1024 * 1024;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct FlowStoreService {
    store: Store,
}

impl FlowStoreService {
    /// The service over `store`.
    pub fn new(store: Store) -> FlowStoreService {
        FlowStoreService { store }
    }

    /// The tonic server wrapper, with the message size limits set.
    pub fn into_server(self) -> FlowStoreServer<FlowStoreService> {
        FlowStoreServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Serves the store on `listener` until `shutdown` completes, then finishes the calls in
/// progress and returns. Plain gRPC, no token: for loopback and tests; see [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    store: Store,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with(listener, store, &ServerConfig::default(), shutdown).await
}

/// The reasons [`serve_with`] stops with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS settings could not be used.
    #[error(transparent)]
    Security(#[from] flowtap_grpc::GrpcError),
    /// The server failed.
    #[error("{}", flowtap_grpc::describe(.0))]
    Transport(#[from] tonic::transport::Error),
}

/// [`serve`] with TLS, client certificates and a token as `security` says (the caller checks
/// the listen address with [`ServerConfig::check_listen`] before binding).
/// `grpc.health.v1.Health` is served beside the store (see [`crate::health`]).
pub async fn serve_with(
    listener: TcpListener,
    store: Store,
    security: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = crate::health::Health::start(store.clone());
    let shutdown = async move {
        shutdown.await;
        health.shut_down().await;
    };
    let server = security.apply(tonic::transport::Server::builder())?;
    server
        // Append streams are bulk uploads: HTTP/2's default 64 KiB window would stall each
        // stream every few dozen flows.
        .initial_stream_window_size(Some(WINDOW_BYTES))
        .initial_connection_window_size(Some(2 * WINDOW_BYTES))
        .add_service(health_service)
        .add_service(FlowStoreService::new(store).into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

fn statuses<T, S>(stream: S) -> ResponseStream<T>
where
    S: Stream<Item = Result<T, StoreError>> + Send + 'static,
{
    Box::pin(stream.map(|item| item.map_err(Status::from)))
}

fn requests<T: Send + 'static>(
    stream: Streaming<T>,
) -> impl Stream<Item = Result<T, StoreError>> + Send + Unpin {
    stream.map(|item| item.map_err(StoreError::from))
}

#[tonic::async_trait]
impl FlowStore for FlowStoreService {
    async fn append(
        &self,
        request: Request<Streaming<FlowPart>>,
    ) -> Result<Response<AppendResult>, Status> {
        let stored = self
            .store
            .append_parts(requests(request.into_inner()))
            .await?;
        Ok(Response::new(AppendResult { stored }))
    }

    type GetStream = ResponseStream<FlowPart>;

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<Self::GetStream>, Status> {
        let request = request.into_inner();
        let parts = self
            .store
            .flow_parts(&request.id, request.body_limit_bytes)
            .await?;
        Ok(Response::new(statuses(parts)))
    }

    type QueryStream = ResponseStream<QueryItem>;

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let request = request.into_inner();
        let items = self
            .store
            .query(&request.filter, request.limit as usize, &request.after)?;
        Ok(Response::new(statuses(items)))
    }

    type WatchStream = ResponseStream<FlowSummary>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let summaries = self.store.watch(&request.into_inner().filter).await?;
        Ok(Response::new(Box::pin(summaries.map(Ok))))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResult>, Status> {
        let deleted = self.store.delete(&request.into_inner().filter).await?;
        Ok(Response::new(DeleteResult { deleted }))
    }

    async fn import(
        &self,
        request: Request<Streaming<FileChunk>>,
    ) -> Result<Response<ImportResult>, Status> {
        let chunks = requests(request.into_inner()).map(|chunk| chunk.map(|c| c.data));
        let imported = files::import(&self.store, chunks).await?;
        Ok(Response::new(ImportResult { imported }))
    }

    type ExportStream = ResponseStream<FileChunk>;

    async fn export(
        &self,
        request: Request<ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let request = request.into_inner();
        let format = match request.format() {
            ExportFormat::Har => FileFormat::Har,
            ExportFormat::Mitm | ExportFormat::Unspecified => FileFormat::Mitm,
        };
        let chunks = files::export(&self.store, &request.filter, format)?;
        Ok(Response::new(statuses(
            chunks.map(|chunk| chunk.map(|data| FileChunk { data })),
        )))
    }
}
