//! The indexed summary of a flow: what the `flows` table keeps beside the encoded head.
//!
//! The columns exist for two readers: list lines ([`FlowSummary`]) and SQL pre-filtering of
//! queries. A pre-filter only needs a column that *contains* what the filter operator looks at,
//! which is why `host` holds every host name the `~d` operator may match against.

use bytes::Bytes;
use flowtap_flow::RequestExt;
use flowtap_proto::v1::{Flow, FlowSummary};
use prost::Message;

/// One row of the `flows` table, ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRow {
    /// The flow id (primary key).
    pub id: String,
    /// "http", "tcp", "udp" or "dns".
    pub flow_type: String,
    /// `flow.timestamp_created`.
    pub timestamp_created: f64,
    /// The request method ("" when there is no request).
    pub method: String,
    /// `request.host` and `request.pretty_host`, separated by a newline.
    pub host: String,
    /// The request URL as mitmproxy prints it.
    pub url: String,
    /// The response status code, 0 when there is no response.
    pub status_code: u32,
    /// Every request and response Content-Type value, each followed by a newline.
    pub content_type: String,
    /// Request body size in bytes.
    pub request_size: u64,
    /// Response body size in bytes.
    pub response_size: u64,
    /// `flow.error.msg`, or "".
    pub error: String,
    /// The client address, "ip:port".
    pub client: String,
    /// The flow with its bodies cleared, protobuf-encoded.
    pub head: Vec<u8>,
    /// The request body when kept in the row (see [`crate::backend::INLINE_BODY_BYTES`]);
    /// None when there is none or it is kept as chunks.
    pub request_body: Option<Bytes>,
    /// The response body when kept in the row, as `request_body`.
    pub response_body: Option<Bytes>,
}

impl FlowRow {
    /// The row for a flow head whose bodies have the given sizes.
    pub fn new(head: &Flow, request_size: u64, response_size: u64) -> FlowRow {
        let request = head.request.as_ref();
        let response = head.response.as_ref();
        // Every Content-Type field: `~t` tests each on its own.
        let mut content_type = String::new();
        let headers = request.map(|r| &r.headers[..]).into_iter();
        for field in headers.chain(response.map(|r| &r.headers[..])).flatten() {
            if field.name.eq_ignore_ascii_case(b"content-type") {
                content_type.push_str(&String::from_utf8_lossy(&field.value));
                content_type.push('\n');
            }
        }
        FlowRow {
            id: head.id.clone(),
            flow_type: head.r#type.clone(),
            timestamp_created: head.timestamp_created,
            method: request
                .map(|r| String::from_utf8_lossy(&r.method).into_owned())
                .unwrap_or_default(),
            host: request.map(hosts).unwrap_or_default(),
            url: url(head),
            status_code: response.map(|r| r.status_code).unwrap_or(0),
            content_type,
            request_size,
            response_size,
            error: head
                .error
                .as_ref()
                .map(|e| e.msg.clone())
                .unwrap_or_default(),
            client: client(head),
            head: head.encode_to_vec(),
            request_body: None,
            response_body: None,
        }
    }

    /// The row with these bodies kept in it.
    pub fn with_bodies(self, request_body: Option<Bytes>, response_body: Option<Bytes>) -> FlowRow {
        FlowRow {
            request_body,
            response_body,
            ..self
        }
    }
}

/// The list-line summary of a flow whose bodies have the given sizes.
pub fn summary(flow: &Flow, request_size: u64, response_size: u64) -> FlowSummary {
    FlowSummary {
        id: flow.id.clone(),
        r#type: flow.r#type.clone(),
        timestamp_created: flow.timestamp_created,
        method: flow
            .request
            .as_ref()
            .map(|r| String::from_utf8_lossy(&r.method).into_owned())
            .unwrap_or_default(),
        url: url(flow),
        status_code: flow.response.as_ref().map_or(0, |r| r.status_code),
        request_size,
        response_size,
        error: flow
            .error
            .as_ref()
            .map(|e| e.msg.clone())
            .unwrap_or_default(),
        client: client(flow),
        http_version: flow
            .request
            .as_ref()
            .map(|r| String::from_utf8_lossy(&r.http_version).into_owned())
            .unwrap_or_default(),
        reason: flow
            .response
            .as_ref()
            .map(|r| String::from_utf8_lossy(&r.reason).into_owned())
            .unwrap_or_default(),
    }
}

fn client(flow: &Flow) -> String {
    flow.client_conn
        .as_ref()
        .and_then(|c| c.peername.as_ref())
        .map(|a| format!("{}:{}", a.host, a.port))
        .unwrap_or_default()
}

fn hosts(request: &flowtap_proto::v1::Request) -> String {
    // `~d` matches `request.host` or `request.pretty_host`; keep both.
    format!("{}\n{}", request.host, request.pretty_host())
}

/// The URL as mitmproxy's `pretty_url` prints it for HTTP flows (what `~u` matches), the first
/// question for DNS flows (likewise), else the server address.
pub(crate) fn url(flow: &Flow) -> String {
    if let Some(request) = &flow.request {
        return request.pretty_url();
    }
    if let Some(question) = flow.dns_request.as_ref().and_then(|d| d.questions.first()) {
        return question.name.clone();
    }
    flow.server_conn
        .as_ref()
        .and_then(|s| s.address.as_ref())
        .map(|a| format!("{}:{}", a.host, a.port))
        .unwrap_or_default()
}
