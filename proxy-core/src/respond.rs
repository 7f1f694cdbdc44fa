//! The one place that turns an error into the proxy's own answer to a client: which status a
//! fault gets (400 and 408/413 for the client's, 502 for the server's or a script's), the page
//! that says why, and the log line that names the client. HTTP/1 writes the answer with
//! [`send_h1`]; HTTP/2 converts [`Refusal::response`] into a stream's response. The answers a
//! script's failure policy makes (502/504 naming the hook) come from the script client as a
//! flow response and go out as any script-set response does.

use bytes::Bytes;
use flowtap_proto::v1::{Connection, Header, Response};

use crate::error::{Http1Error, UpstreamError};
use crate::http1::{self, Conn};
use crate::upstream::Io;

/// Why the proxy answers a client itself.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The client's request is malformed, ambiguous or not allowed here (400).
    BadRequest(String),
    /// The client did not send a whole request head in time (408).
    HeadTimeout,
    /// A body is larger than `body_size_limit` (413 for a request).
    TooLarge(String),
    /// The server could not be reached, or answered in a way that cannot be relayed (502).
    Upstream(String),
}

impl Refusal {
    /// A client framing or syntax error.
    pub(crate) fn client(error: &Http1Error) -> Self {
        Refusal::BadRequest(error.to_string())
    }

    /// A body could not be held (its spill file failed: disk full, confdir gone).
    pub(crate) fn unheld(error: &std::io::Error) -> Self {
        Refusal::Upstream(format!("the proxy could not hold the body: {error}"))
    }

    /// A body larger than `body_size_limit`.
    pub(crate) fn over_body_size_limit(limit: u64) -> Self {
        Refusal::TooLarge(format!(
            "the body is larger than body_size_limit ({limit} bytes)"
        ))
    }

    /// A failure on the way to the server or back: the client's own when its streamed
    /// request body broke, else the server's.
    pub(crate) fn server(error: &UpstreamError) -> Self {
        match error {
            UpstreamError::ClientBody(_) => Refusal::BadRequest(error.to_string()),
            _ => Refusal::Upstream(error.to_string()),
        }
    }

    /// The status code the client gets.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::HeadTimeout => 408,
            Refusal::TooLarge(_) => 413,
            Refusal::Upstream(_) => 502,
        }
    }

    /// What went wrong, as the page, the flow's error and the log line say it.
    pub(crate) fn message(&self) -> String {
        match self {
            Refusal::BadRequest(m) | Refusal::TooLarge(m) | Refusal::Upstream(m) => m.clone(),
            Refusal::HeadTimeout => "the request head did not arrive in time".into(),
        }
    }

    /// The page the client gets. mitmproxy sends such pages without storing them in the flow;
    /// so does flowtap.
    pub(crate) fn response(&self) -> Response {
        error_response(self.status(), &self.message())
    }

    /// Logs the refusal once, naming the client.
    pub(crate) fn log(&self, client: &Connection) {
        let who = client
            .peername
            .as_ref()
            .map(|a| format!("{}:{}", a.host, a.port))
            .unwrap_or_else(|| "client".into());
        tracing::info!("{who}: {} {}", self.status(), self.message());
    }
}

/// Logs the refusal and writes its page to an HTTP/1 client (the connection is then closed by
/// the caller: the page says `connection: close`).
pub(crate) async fn send_h1(conn: &mut Conn<Io>, client: &Connection, refusal: &Refusal) {
    refusal.log(client);
    let response = refusal.response();
    let _ = http1::write_full_response(&mut conn.io, &response, b"GET", true).await;
}

/// A response the proxy makes itself to report an error to the client.
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
