//! Connecting tonic clients to a unix socket.

use std::path::PathBuf;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;

use crate::UnixConn;

/// Connects tonic to the unix socket at its path, whatever the URI says.
#[derive(Clone, Debug)]
pub struct UnixConnector(pub PathBuf);

impl tower_service::Service<http::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<UnixConn>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(hyper_util::rt::TokioIo::new(UnixConn::new(stream)?))
        })
    }
}

/// A channel to the gRPC server listening on the unix socket at `path`. Must run inside the
/// runtime that will serve the channel's connection.
pub async fn unix_channel(
    path: impl Into<PathBuf>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_static("http://script-host")
        .connect_with_connector(UnixConnector(path.into()))
        .await
}
