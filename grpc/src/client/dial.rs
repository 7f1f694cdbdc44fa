//! The TLS connector of the client side, on tokio-rustls rather than tonic's own, so that a
//! refused client certificate is reported as such.
//!
//! In TLS 1.3 a server judges the client's certificate after the client has finished its
//! handshake: the refusal (an alert) arrives with the first bytes read, and HTTP/2 then keeps
//! only "connection closed". So the connector waits for the server's first application bytes
//! (a tonic server sends its HTTP/2 SETTINGS at once) before handing the connection over, and
//! a refusal fails the connect with the alert inside.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long the handshake and the server's first bytes may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials TCP, runs the TLS handshake, and reads the server's first bytes.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// The name to verify instead of the URI's host.
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<Primed<TlsStream<TcpStream>>>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            tokio::time::timeout(HANDSHAKE_TIMEOUT, this.connect(uri))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
        })
    }
}

impl TlsConnector {
    async fn connect(self, uri: http::Uri) -> io::Result<TokioIo<Primed<TlsStream<TcpStream>>>> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let host = uri
            .host()
            .ok_or_else(|| invalid("no host in the address"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let name = match self.server_name {
            Some(name) => name,
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| invalid("the host is not a valid TLS server name"))?,
        };
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        let mut tls = tokio_rustls::TlsConnector::from(self.config)
            .connect(name, tcp)
            .await?;
        let mut first = vec![0u8; 4096];
        let n = tls.read(&mut first).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection right after the TLS handshake",
            ));
        }
        first.truncate(n);
        Ok(TokioIo::new(Primed {
            buffered: first,
            offset: 0,
            stream: tls,
        }))
    }
}

/// A stream whose first bytes were already read: they are read again first.
pub(crate) struct Primed<S> {
    buffered: Vec<u8>,
    offset: usize,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Primed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.offset < self.buffered.len() {
            let rest = &self.buffered[self.offset..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.offset += n;
            if self.offset == self.buffered.len() {
                self.buffered = Vec::new();
                self.offset = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Primed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
