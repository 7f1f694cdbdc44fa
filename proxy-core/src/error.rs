//! Errors, and the one place that decides how an error becomes a response to the client.

use bytes::Bytes;
use flowtap_proto::v1::{Header, Response};

/// A failure to start the proxy.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The listen address could not be bound.
    #[error("binding proxy listener on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// An `--ignore-hosts` / `--allow-hosts` / `--tcp-hosts` pattern is not a valid regex.
    #[error("invalid host pattern {pattern:?}")]
    HostPattern {
        /// The pattern given.
        pattern: String,
        /// Why it failed.
        source: regex::Error,
    },
    /// The upstream TLS configuration could not be built.
    #[error("upstream TLS: {0}")]
    UpstreamTls(String),
}

/// An HTTP/1 framing or syntax error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Http1Error {
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
    #[error("HTTP head too large")]
    HeadTooLarge,
    #[error("connection closed in the middle of a message")]
    Truncated,
    #[error("server closed the connection before responding")]
    ClosedBeforeResponse,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why a flow could not reach its server or get a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("cannot connect to {host}:{port}: {reason}")]
    ConnectFailed {
        host: String,
        port: u32,
        reason: String,
    },
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{0}")]
    Http(#[from] Http1Error),
    /// A script's stream callable could not filter the body.
    #[error("{0}")]
    Stream(#[from] crate::stream::FilterFailed),
}

/// A response the proxy makes itself to report an error to the client. mitmproxy sends such
/// pages without storing them in the flow; so does flowtap.
pub(crate) fn error_response(status: u16, message: &str) -> Response {
    let body = format!("flowtap: {message}\n");
    Response {
        http_version: Bytes::from_static(b"HTTP/1.1"),
        headers: vec![
            header("content-type", "text/plain; charset=utf-8"),
            header("content-length", &body.len().to_string()),
            header("connection", "close"),
        ],
        content: Some(Bytes::from(body)),
        trailers: None,
        timestamp_start: crate::flow::now(),
        timestamp_end: Some(crate::flow::now()),
        status_code: u32::from(status),
        reason: Bytes::from_static(reason_phrase(status).as_bytes()),
        stream: flowtap_proto::v1::StreamMode::Buffer.into(),
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: Bytes::copy_from_slice(name.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

/// The standard reason phrase of a status code, or "" when unknown.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}
