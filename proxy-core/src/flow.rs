//! Building the flow model as traffic arrives: ids, timestamps, connections, requests.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flowtap_proto::v1::{Address, Connection, Error, Flow, Request, Response};

use crate::http1::{RequestHead, ResponseHead};

/// mitmproxy's `Error.KILLED_MESSAGE`.
pub const KILLED_MESSAGE: &str = "Connection killed.";

/// Seconds since the Unix epoch, as mitmproxy's timestamps.
pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A fresh uuid4 string. The random bits come from a per-thread generator seeded once from
/// the OS, not a system call per id (two ids are taken per request).
pub(crate) fn new_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8].try_into().expect("a uuid has 16 bytes"),
        ));
    }
    // SplitMix64: fast, and each 64-bit output is a bijection of the state, so ids from one
    // thread never repeat within 2^64 draws; seeds differ per thread.
    let next = || {
        STATE.with(|state| {
            let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(s);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&next().to_le_bytes());
    bytes[8..].copy_from_slice(&next().to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub(crate) fn address(addr: SocketAddr) -> Address {
    Address {
        host: addr.ip().to_string(),
        port: u32::from(addr.port()),
    }
}

/// The client side of a new connection.
pub(crate) fn client_connection(peer: SocketAddr, local: SocketAddr) -> Connection {
    Connection {
        id: new_id(),
        peername: Some(address(peer)),
        sockname: Some(address(local)),
        transport_protocol: "tcp".into(),
        timestamp_start: Some(now()),
        proxy_mode: "regular".into(),
        ..Default::default()
    }
}

/// A server connection not yet made: only an id, as mitmproxy's `Server` before connecting.
pub(crate) fn unconnected_server() -> Connection {
    Connection {
        id: new_id(),
        transport_protocol: "tcp".into(),
        ..Default::default()
    }
}

/// A new live TCP or UDP flow (`kind`) between `client` and `server`.
pub(crate) fn new_stream_flow(kind: &str, client: Connection, server: Connection) -> Flow {
    Flow {
        id: new_id(),
        r#type: kind.into(),
        client_conn: Some(client),
        server_conn: Some(server),
        timestamp_created: now(),
        live: true,
        ..Default::default()
    }
}

/// A new HTTP flow for a request from `client`.
pub(crate) fn new_http_flow(client: &Connection, request: Request) -> Flow {
    Flow {
        id: new_id(),
        r#type: "http".into(),
        client_conn: Some(client.clone()),
        server_conn: Some(unconnected_server()),
        timestamp_created: now(),
        live: true,
        request: Some(request),
        ..Default::default()
    }
}

/// A subject for connection hooks: the client connection's id, the client and (optionally) the
/// server.
pub(crate) fn connection_subject(client: &Connection, server: Option<&Connection>) -> Flow {
    Flow {
        // The client connection's id for server hooks too: the worker runs the calls of one id
        // in order, so `server_disconnected` and `client_disconnected` (both observed, sent
        // back to back) reach the scripts in the proxy's order, on the same worker.
        id: client.id.clone(),
        client_conn: Some(client.clone()),
        server_conn: server.cloned(),
        ..Default::default()
    }
}

/// Marks `flow` as failed with `msg`.
pub(crate) fn set_error(flow: &mut Flow, msg: impl Into<String>) {
    flow.error = Some(Error {
        msg: msg.into(),
        timestamp: now(),
    });
}

/// True when a script killed the flow.
pub fn is_killed(flow: &Flow) -> bool {
    flow.error.as_ref().is_some_and(|e| e.msg == KILLED_MESSAGE)
}

/// `host` or `host:port` as a `Host` header or an absolute URL writes it: an IPv6 address in
/// brackets, the port left out when it is the scheme's default.
pub(crate) fn authority(scheme: &str, host: &str, port: u16) -> String {
    let default = if scheme == "https" { 443 } else { 80 };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == default {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// `GET http://host/path` for a log line (the flow's type for flows without a request).
pub(crate) fn describe(flow: &Flow) -> String {
    use flowtap_flow::RequestExt as _;
    match &flow.request {
        Some(request) => format!(
            "{} {}",
            String::from_utf8_lossy(&request.method),
            request.pretty_url()
        ),
        None => format!("{} flow", flow.r#type),
    }
}

/// Where a request goes, parsed from its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) scheme: &'static str,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: Bytes,
}

/// Parses an absolute-form target (`http://host:port/path`).
pub(crate) fn parse_absolute(target: &[u8]) -> Option<Target> {
    let text = std::str::from_utf8(target).ok()?;
    let (scheme, rest, default_port) = if let Some(r) = strip_prefix_ci(text, "http://") {
        ("http", r, 80)
    } else if let Some(r) = strip_prefix_ci(text, "https://") {
        ("https", r, 443)
    } else {
        return None;
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let (host, port) = parse_authority(authority, default_port)?;
    let path = if path.is_empty() {
        Bytes::from_static(b"/")
    } else if path.starts_with('?') {
        Bytes::from(format!("/{path}"))
    } else {
        Bytes::copy_from_slice(path.as_bytes())
    };
    Some(Target {
        scheme,
        host,
        port,
        path,
    })
}

/// `text` after an ASCII `prefix` matched without regard to case. Compared as bytes: the text
/// may hold a multi-byte character where the prefix would end (then it does not match).
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.as_bytes().get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix.as_bytes()) {
        return None;
    }
    text.get(prefix.len()..)
}

/// Parses `host[:port]` (IPv6 literals in brackets); userinfo is not allowed.
pub(crate) fn parse_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let port = match &rest[end + 1..] {
            "" => default_port,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Some((host.to_ascii_lowercase(), port.parse().ok()?))
        }
        Some(_) => None,
        None => Some((authority.to_ascii_lowercase(), default_port)),
    }
}

/// The request part of a flow, from a head read off the wire.
pub(crate) fn request_from_head(head: RequestHead, target: &Target) -> Request {
    Request {
        http_version: head.version,
        headers: head.headers,
        content: None,
        trailers: None,
        timestamp_start: now(),
        timestamp_end: None,
        host: target.host.clone(),
        port: u32::from(target.port),
        method: head.method,
        scheme: Bytes::from_static(target.scheme.as_bytes()),
        // mitmproxy clears the authority of absolute-form HTTP/1 requests in regular mode.
        authority: Bytes::new(),
        path: target.path.clone(),
        stream: flowtap_proto::v1::StreamMode::Buffer.into(),
    }
}

/// The response part of a flow, from a head read off the wire.
pub(crate) fn response_from_head(head: ResponseHead) -> Response {
    Response {
        http_version: head.version,
        headers: head.headers,
        content: None,
        trailers: None,
        timestamp_start: now(),
        timestamp_end: None,
        status_code: u32::from(head.status),
        reason: head.reason,
        stream: flowtap_proto::v1::StreamMode::Buffer.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid4_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        let id = uuid::Uuid::parse_str(ids.iter().next().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4);
    }

    #[test]
    fn absolute_targets() {
        let t = parse_absolute(b"http://Example.com:8080/a?b=c").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port, &t.path[..]),
            ("http", "example.com", 8080, &b"/a?b=c"[..])
        );
        let t = parse_absolute(b"https://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 443));
        let t = parse_absolute(b"http://h?q").unwrap();
        assert_eq!(&t.path[..], b"/?q");
        assert!(parse_absolute(b"/relative").is_none());
        assert!(parse_absolute(b"http://user@h/").is_none());
        assert!(parse_absolute(b"http://h:99999/").is_none());
        assert!(parse_absolute("/abcde\u{e9}".as_bytes()).is_none());
        assert!(parse_absolute("http:/\u{e9}/".as_bytes()).is_none());
        assert_eq!(
            parse_absolute(b"HTTPS://h/").map(|t| t.scheme),
            Some("https")
        );
    }
}
