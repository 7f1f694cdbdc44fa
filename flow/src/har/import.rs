//! HAR import: each `log.entries[*]` becomes an HTTP flow (mitmproxy's `io/har.py`).

use base64::Engine;
use bytes::Bytes;
use flowtap_proto::v1::{Address, Connection, Flow, Header, Request, Response, StreamMode};
use serde_json::Value as JsonValue;

use super::{HarError, header, parse_iso8601};

/// Parses a HAR document and returns one HTTP flow per entry.
///
/// Bodies are stored decoded and any `Content-Encoding` header is removed, as mitmproxy's
/// reader does (`request.decode()` / `response.decode()`).
pub fn import(data: &[u8]) -> Result<Vec<Flow>, HarError> {
    let doc: JsonValue = serde_json::from_slice(data)?;
    let entries = doc
        .pointer("/log/entries")
        .and_then(JsonValue::as_array)
        .ok_or(HarError::NoEntries)?;
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            entry_to_flow(entry).map_err(|message| HarError::Entry { index, message })
        })
        .collect()
}

/// 999,999,999 days in milliseconds.
const MAX_DURATION_MS: f64 = 999_999_999.0 * 86_400_000.0;

fn field<'a>(v: &'a JsonValue, path: &str) -> Result<&'a JsonValue, String> {
    v.pointer(path).ok_or_else(|| format!("missing {path}"))
}

fn text<'a>(v: &'a JsonValue, path: &str) -> Result<&'a str, String> {
    field(v, path)?
        .as_str()
        .ok_or_else(|| format!("{path} is not a string"))
}

fn headers(v: &JsonValue, path: &str) -> Result<Vec<Header>, String> {
    let list = field(v, path)?
        .as_array()
        .ok_or_else(|| format!("{path} is not a list"))?;
    list.iter()
        .map(|h| {
            let (name, value) = match h {
                JsonValue::Array(pair) if pair.len() >= 2 => (&pair[0], &pair[1]),
                JsonValue::Object(_) => (&h["name"], &h["value"]),
                _ => return Err(format!("{path}: a header is neither a pair nor an object")),
            };
            match (name.as_str(), value.as_str()) {
                (Some(n), Some(v)) => Ok(header(n, v)),
                _ => Err(format!("{path}: header name and value must be strings")),
            }
        })
        .collect()
}

fn http_version(version: &str) -> Bytes {
    Bytes::from_static(match version {
        "http/2.0" | "HTTP/2" => b"HTTP/2",
        "HTTP/3" => b"HTTP/3",
        _ => b"HTTP/1.1",
    })
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn entry_to_flow(entry: &JsonValue) -> Result<Flow, String> {
    let started = text(entry, "/startedDateTime")?;
    let timestamp_start =
        parse_iso8601(started).ok_or_else(|| format!("invalid startedDateTime {started:?}"))?;
    let time_ms = field(entry, "/time")?
        .as_f64()
        .ok_or("time is not a number")?;
    // Python's `timedelta.max` (999,999,999 days): longer is no duration, and it keeps every
    // timing the export computes from the timestamps finite.
    if time_ms.abs() > MAX_DURATION_MS {
        return Err(format!("time {time_ms} ms is longer than 999999999 days"));
    }
    let timestamp_end = timestamp_start + time_ms / 1000.0;
    let url = text(entry, "/request/url")?;
    let (scheme, host, port, path) =
        parse_url(url).ok_or_else(|| format!("invalid URL {url:?}"))?;
    let server_port = if url.starts_with("http://") { 80 } else { 443 };
    let post_text = entry
        .pointer("/request/postData/text")
        .and_then(JsonValue::as_str)
        .unwrap_or_default();
    let mut request = Request {
        http_version: http_version(text(entry, "/request/httpVersion")?),
        headers: headers(entry, "/request/headers")?,
        content: Some(Bytes::from(post_text.to_owned())),
        trailers: None,
        timestamp_start,
        timestamp_end: Some(timestamp_end),
        host,
        port,
        method: Bytes::from(text(entry, "/request/method")?.to_owned()),
        scheme: Bytes::from(scheme),
        authority: Bytes::new(),
        path: Bytes::from(path),
        stream: StreamMode::Buffer.into(),
    };
    request
        .headers
        .retain(|h| !h.name.eq_ignore_ascii_case(b"content-encoding"));
    set_content_length(&mut request.headers, post_text.len());
    let status = field(entry, "/response/status")?
        .as_u64()
        .ok_or("response.status is not an integer")?;
    let status = u32::try_from(status).map_err(|_| "response.status is out of range")?;
    let body = entry
        .pointer("/response/content/text")
        .and_then(JsonValue::as_str)
        .unwrap_or_default();
    let encoding = entry
        .pointer("/response/content/encoding")
        .and_then(JsonValue::as_str);
    let content = if encoding == Some("base64") {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("response body is not base64: {e}"))?
    } else {
        body.as_bytes().to_vec()
    };
    let mut response_headers = headers(entry, "/response/headers")?;
    // `response.decode()` leaves an empty body's headers alone.
    if !content.is_empty() {
        response_headers.retain(|h| !h.name.eq_ignore_ascii_case(b"content-encoding"));
        set_content_length(&mut response_headers, content.len());
    }
    let response = Response {
        http_version: http_version(text(entry, "/response/httpVersion")?),
        headers: response_headers,
        content: Some(Bytes::from(content)),
        trailers: None,
        timestamp_start,
        timestamp_end: Some(timestamp_end),
        status_code: status,
        reason: Bytes::from_static(reason(status).as_bytes()),
        stream: StreamMode::Buffer.into(),
    };
    let local = Address {
        host: "127.0.0.1".to_owned(),
        port: 0,
    };
    let client_conn = Connection {
        id: uuid(),
        peername: Some(local.clone()),
        sockname: Some(local),
        transport_protocol: "tcp".to_owned(),
        timestamp_start: Some(timestamp_start),
        timestamp_end: Some(timestamp_end),
        proxy_mode: "regular".to_owned(),
        ..Connection::default()
    };
    let server_address = entry.get("serverIPAddress").and_then(JsonValue::as_str);
    let server_conn = Connection {
        id: uuid(),
        transport_protocol: "tcp".to_owned(),
        address: server_address.map(|host| Address {
            host: host.to_owned(),
            port: server_port,
        }),
        ..Connection::default()
    };
    Ok(Flow {
        id: uuid(),
        r#type: "http".to_owned(),
        client_conn: Some(client_conn),
        server_conn: Some(server_conn),
        timestamp_created: now(),
        request: Some(request),
        response: Some(response),
        ..Flow::default()
    })
}

/// What mitmproxy's `Message.content` setter does to the headers: unless there is a
/// Transfer-Encoding, `content-length` is set (first field replaced, others removed, or
/// appended in lower case).
fn set_content_length(headers: &mut Vec<Header>, len: usize) {
    if headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case(b"transfer-encoding"))
    {
        return;
    }
    let value = Bytes::from(len.to_string());
    let is_cl = |h: &Header| h.name.eq_ignore_ascii_case(b"content-length");
    match headers.iter().position(is_cl) {
        Some(first) => {
            headers[first].value = value;
            let mut index = 0;
            headers.retain(|h| {
                index += 1;
                index - 1 == first || !is_cl(h)
            });
        }
        None => headers.push(Header {
            name: Bytes::from_static(b"content-length"),
            value,
        }),
    }
}

/// `scheme://host[:port]/path` → (scheme, host, port, path); the port defaults per scheme
/// and is at most 65535.
fn parse_url(url: &str) -> Option<(String, String, u32, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = path.split('#').next().unwrap_or_default();
    let path = if path.is_empty() {
        "/".to_owned()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            (h, Some(u32::from(p.parse::<u16>().ok()?)))
        }
        _ => (authority, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let scheme = scheme.to_ascii_lowercase();
    let port = port.or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some((scheme, host.to_owned(), port, path))
}

/// The standard reason phrase (`http.status_codes.RESPONSES`), empty when unknown.
fn reason(status: u32) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::{HarError, import, parse_url};

    #[test]
    fn parses_urls() {
        assert_eq!(parse_url("http://[::1]:65536/"), None, "no port past 65535");
        assert_eq!(parse_url("http://h:65535/").map(|u| u.2), Some(65535));
        assert_eq!(
            parse_url("https://example.com/a?b=1"),
            Some(("https".into(), "example.com".into(), 443, "/a?b=1".into()))
        );
        assert_eq!(
            parse_url("http://[::1]:8080"),
            Some(("http".into(), "::1".into(), 8080, "/".into()))
        );
    }

    fn entry_with_time(time: &str) -> String {
        format!(
            r#"{{"log": {{"entries": [{{"startedDateTime": "2026-11-21T05:19:58Z", "time": {time},
            "request": {{"method": "GET", "url": "http://h/", "httpVersion": "HTTP/1.1", "headers": []}},
            "response": {{"status": 200, "httpVersion": "HTTP/1.1", "headers": [], "content": {{}}}}}}]}}}}"#
        )
    }

    /// A `time` past `timedelta.max` is refused: its timings would overflow to infinity in
    /// the export, which then writes `Infinity`, no JSON to import again.
    #[test]
    fn durations_longer_than_timedelta_max_are_refused() {
        assert_eq!(
            import(entry_with_time("86399999913600000").as_bytes())
                .unwrap()
                .len(),
            1
        );
        let refused = import(entry_with_time("1.7976931348623157e308").as_bytes());
        assert!(
            matches!(&refused, Err(HarError::Entry { index: 0, message }) if message.contains("999999999 days")),
            "{refused:?}"
        );
    }
}
