//! The indexed summary of a flow: what the `flows` table keeps beside the encoded head.
//!
//! The columns exist for two readers: list lines ([`FlowSummary`]) and SQL pre-filtering of
//! queries. A pre-filter only needs a column that *contains* what the filter operator looks at,
//! which is why `host` holds every host name the `~d` operator may match against.

use flowtap_proto::v1::{Flow, FlowSummary, Header};
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
    /// `request.host`, the authority and the Host header, separated by newlines.
    pub host: String,
    /// The request URL as mitmproxy prints it.
    pub url: String,
    /// The response status code, 0 when there is no response.
    pub status_code: u32,
    /// The request and response Content-Type values, separated by newlines.
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
}

impl FlowRow {
    /// The row for a flow head whose bodies have the given sizes.
    pub fn new(head: &Flow, request_size: u64, response_size: u64) -> FlowRow {
        let request = head.request.as_ref();
        let response = head.response.as_ref();
        let mut content_type = String::new();
        for headers in [request.map(|r| &r.headers), response.map(|r| &r.headers)] {
            if let Some(value) = headers.and_then(|h| header(h, "content-type")) {
                content_type.push_str(&value);
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

/// The first value of a header, by case-insensitive name.
pub(crate) fn header(headers: &[Header], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

fn hosts(request: &flowtap_proto::v1::Request) -> String {
    let mut hosts = request.host.clone();
    hosts.push('\n');
    hosts.push_str(&String::from_utf8_lossy(&request.authority));
    if let Some(host) = header(&request.headers, "host") {
        hosts.push('\n');
        hosts.push_str(&host);
    }
    hosts
}

/// The URL as mitmproxy's `pretty_url` prints it for HTTP flows; for DNS the first question.
pub(crate) fn url(flow: &Flow) -> String {
    if let Some(request) = &flow.request {
        let scheme = String::from_utf8_lossy(&request.scheme);
        let path = String::from_utf8_lossy(&request.path);
        if request.method.eq_ignore_ascii_case(b"CONNECT") {
            return format!("{}:{}", request.host, request.port);
        }
        let host = header(&request.headers, "host")
            .or_else(|| {
                (!request.authority.is_empty())
                    .then(|| String::from_utf8_lossy(&request.authority).into_owned())
            })
            .unwrap_or_else(|| request.host.clone());
        let default_port = matches!((&*scheme, request.port), ("http", 80) | ("https", 443));
        let authority = if host.contains(':') || default_port {
            host
        } else {
            format!("{host}:{}", request.port)
        };
        return format!("{scheme}://{authority}{path}");
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
