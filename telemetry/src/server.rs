//! The metrics endpoint: `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1.
//!
//! It runs on a thread and runtime of its own, so a busy or single-threaded service runtime
//! (the script-host worker's is driven by Python threads) never delays a scrape or a probe,
//! and a slow scraper never touches the service's threads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::TelemetryError;

/// What the server prints on stderr once it listens, followed by the bound address
/// (`metrics listening on 127.0.0.1:9464`), so that a caller that asked for port 0 learns it.
pub const LISTENING_PHRASE: &str = "metrics listening on";

/// How long a client may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A running metrics endpoint. It serves until the process ends.
#[derive(Debug)]
pub struct MetricsServer {
    address: SocketAddr,
}

impl MetricsServer {
    /// Binds `address` (exactly as given), announces the bound address on stderr (see
    /// [`LISTENING_PHRASE`]) and serves on a thread of its own. Fails if the address cannot be
    /// bound or the thread cannot start.
    pub fn start(address: SocketAddr) -> Result<MetricsServer, TelemetryError> {
        let listener = std::net::TcpListener::bind(address)
            .map_err(|source| TelemetryError::Bind { address, source })?;
        let bound = listener.local_addr().map_err(TelemetryError::Start)?;
        listener
            .set_nonblocking(true)
            .map_err(TelemetryError::Start)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(TelemetryError::Start)?;
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || runtime.block_on(serve(listener)))
            .map_err(TelemetryError::Start)?;
        crate::logging::announce(&format!("{LISTENING_PHRASE} {bound}"));
        Ok(MetricsServer { address: bound })
    }

    /// The bound address (the port chosen when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

async fn serve(listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "the metrics listener could not join its runtime");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, typically: a later accept may succeed.
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            // A client that never finishes its request head does not hold a task forever.
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service_fn(answer));
            if let Err(error) = connection.await {
                tracing::debug!(%error, "metrics endpoint: connection ended");
            }
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD\n".into(),
        ));
    }
    Ok(match request.uri().path() {
        "/metrics" => {
            let mut response = plain(StatusCode::OK, crate::encode_text());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(crate::TEXT_CONTENT_TYPE),
            );
            response
        }
        "/healthz" => plain(StatusCode::OK, "ok\n".into()),
        "/readyz" if crate::is_ready() => plain(StatusCode::OK, "ready\n".into()),
        "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    })
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
