//! mitmproxy's convenience accessors on the flow model: `url`, `pretty_url`, `pretty_host`,
//! header lookup, decoded bodies and the pieces of mitmdump's one-line summaries.
//!
//! They are extension traits on the prost types, so `use flowtap_flow::model::*` gives
//! `flow.request.as_ref().map(|r| r.pretty_url())`.

use std::borrow::Cow;

use flowtap_proto::v1::{Address, Flow, Header, Request, Response};

use crate::content;

/// The value of header `name` (case-insensitive); several fields are joined with `", "`, as
/// mitmproxy's `Headers.get` does. Invalid UTF-8 is replaced.
pub fn header_value(headers: &[Header], name: &str) -> Option<String> {
    let values: Vec<Cow<'_, str>> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| String::from_utf8_lossy(&h.value))
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// `bytes(headers)`: `Name: value\r\n` per field in original case and order (empty if none).
pub fn headers_bytes(headers: &[Header]) -> Vec<u8> {
    let mut out = Vec::new();
    for h in headers {
        out.extend_from_slice(&h.name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// mitmproxy's `human.pretty_size`: `24b`, `1.5k`, `120k`, `3.0m`.
pub fn pretty_size(size: u64) -> String {
    if size < 1024 {
        return format!("{size}b");
    }
    let mut s = size as f64;
    for suffix in ["k", "m", "g", "t"] {
        s /= 1024.0;
        if s < 99.95 {
            return format!("{s:.1}{suffix}");
        }
        if s < 1024.0 || suffix == "t" {
            return format!("{s:.0}{suffix}");
        }
    }
    format!("{s:.0}t")
}

/// `host:port`, with brackets around IPv6 hosts (mitmproxy's `human.format_address`).
pub fn format_address(address: &Address) -> String {
    let host = address
        .host
        .strip_prefix("::ffff:")
        .filter(|h| h.contains('.'));
    match host {
        Some(v4) => format!("{v4}:{}", address.port),
        None if address.host.contains(':') => format!("[{}]:{}", address.host, address.port),
        None => format!("{}:{}", address.host, address.port),
    }
}

fn default_port(scheme: &str) -> Option<u32> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `url.unparse`: the port is left out when it is the scheme's default.
fn unparse(scheme: &str, host: &str, port: u32, path: &str) -> String {
    if default_port(scheme) == Some(port) {
        format!("{scheme}://{host}{path}")
    } else {
        format!("{scheme}://{host}:{port}{path}")
    }
}

/// `url.parse_authority(authority, check=False)`: host (without IPv6 brackets) and port.
fn parse_authority(authority: &str) -> (String, Option<u32>) {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']'))) =>
        {
            match port.parse::<u32>() {
                Ok(p) if p <= 65535 => (host, Some(p)),
                _ => return (authority.to_owned(), None),
            }
        }
        _ if authority.contains(':') && !authority.starts_with('[') => {
            return (authority.to_owned(), None);
        }
        _ => (authority, None),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (host.to_owned(), port)
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// mitmproxy's `http.Request` properties.
pub trait RequestExt {
    /// The first value of header `name` (case-insensitive), fields joined with `", "`.
    fn header(&self, name: &str) -> Option<String>;
    /// True for `HTTP/2.0`.
    fn is_http2(&self) -> bool;
    /// True for `HTTP/3`.
    fn is_http3(&self) -> bool;
    /// `authority` (CONNECT), `absolute` (an authority is set) or `relative`.
    fn first_line_format(&self) -> &'static str;
    /// The Host header for HTTP/1, the `:authority` (or Host) for HTTP/2 and 3.
    fn host_header(&self) -> Option<String>;
    /// `scheme://host[:port]path` built from the request's own host and port.
    fn url(&self) -> String;
    /// Like `host`, preferring the Host header / authority.
    fn pretty_host(&self) -> String;
    /// Like [`RequestExt::url`] but with the host (and port) from the Host header.
    fn pretty_url(&self) -> String;
    /// The body with its Content-Encoding removed, or raw if that fails; None if not stored.
    fn decoded_content(&self) -> Option<Cow<'_, [u8]>>;
}

impl RequestExt for Request {
    fn header(&self, name: &str) -> Option<String> {
        header_value(&self.headers, name)
    }

    fn is_http2(&self) -> bool {
        &self.http_version[..] == b"HTTP/2.0"
    }

    fn is_http3(&self) -> bool {
        &self.http_version[..] == b"HTTP/3"
    }

    fn first_line_format(&self) -> &'static str {
        if &self.method[..] == b"CONNECT" {
            "authority"
        } else if !self.authority.is_empty() {
            "absolute"
        } else {
            "relative"
        }
    }

    fn host_header(&self) -> Option<String> {
        if (self.is_http2() || self.is_http3()) && !self.authority.is_empty() {
            return Some(text(&self.authority).into_owned());
        }
        self.header("Host")
    }

    fn url(&self) -> String {
        if self.first_line_format() == "authority" {
            return format!("{}:{}", self.host, self.port);
        }
        let path = if &self.path[..] == b"*" {
            "".into()
        } else {
            text(&self.path)
        };
        unparse(&text(&self.scheme), &self.host, self.port, &path)
    }

    fn pretty_host(&self) -> String {
        match self.host_header().filter(|h| !h.is_empty()) {
            Some(authority) => parse_authority(&authority).0,
            None => self.host.clone(),
        }
    }

    fn pretty_url(&self) -> String {
        if self.first_line_format() == "authority" {
            return text(&self.authority).into_owned();
        }
        let Some(host_header) = self.host_header().filter(|h| !h.is_empty()) else {
            return self.url();
        };
        let (host, port) = parse_authority(&host_header);
        let scheme = text(&self.scheme);
        let port = port.or_else(|| default_port(&scheme)).unwrap_or(443);
        let path = if &self.path[..] == b"*" {
            "".into()
        } else {
            text(&self.path)
        };
        unparse(&scheme, &host, port, &path)
    }

    fn decoded_content(&self) -> Option<Cow<'_, [u8]>> {
        let raw = self.content.as_deref()?;
        Some(content::decode_lenient(
            raw,
            self.header("content-encoding").as_deref(),
        ))
    }
}

/// mitmproxy's `http.Response` properties.
pub trait ResponseExt {
    /// The first value of header `name` (case-insensitive), fields joined with `", "`.
    fn header(&self, name: &str) -> Option<String>;
    /// The body with its Content-Encoding removed, or raw if that fails; None if not stored.
    fn decoded_content(&self) -> Option<Cow<'_, [u8]>>;
    /// mitmdump's response summary: `200 OK 24b` (or `(content missing)` for the size).
    fn summary(&self) -> String;
}

impl ResponseExt for Response {
    fn header(&self, name: &str) -> Option<String> {
        header_value(&self.headers, name)
    }

    fn decoded_content(&self) -> Option<Cow<'_, [u8]>> {
        let raw = self.content.as_deref()?;
        Some(content::decode_lenient(
            raw,
            self.header("content-encoding").as_deref(),
        ))
    }

    fn summary(&self) -> String {
        let size = match &self.content {
            Some(content) => pretty_size(content.len() as u64),
            None => "(content missing)".to_owned(),
        };
        format!("{} {} {}", self.status_code, text(&self.reason), size)
    }
}

/// Flow-level helpers.
pub trait FlowExt {
    /// `GET https://example.com/path` for HTTP flows (method and `url`), None otherwise.
    fn request_line(&self) -> Option<String>;
    /// mitmdump's prefix: `[replay]` for client replays, else the client's `host:port`.
    fn client_label(&self) -> String;
    /// One line as mitmdump prints it at flow detail 1:
    /// `127.0.0.1:59220: GET http://127.0.0.1:18081/hello.txt` followed by ` << 200 OK 24b`
    /// when there is a response, or ` << <error message>` when it failed.
    fn summary_line(&self) -> String;
}

impl FlowExt for Flow {
    fn request_line(&self) -> Option<String> {
        let request = self.request.as_ref().filter(|_| self.r#type == "http")?;
        Some(format!("{} {}", text(&request.method), request.url()))
    }

    fn client_label(&self) -> String {
        if self.is_replay.as_deref() == Some("request") {
            return "[replay]".to_owned();
        }
        self.client_conn
            .as_ref()
            .and_then(|c| c.peername.as_ref())
            .map(format_address)
            .unwrap_or_default()
    }

    fn summary_line(&self) -> String {
        let what = match self.r#type.as_str() {
            "http" => self.request_line().unwrap_or_default(),
            "dns" => {
                let question = self.dns_request.as_ref().and_then(|r| r.questions.first());
                format!("DNS {}", question.map(|q| q.name.as_str()).unwrap_or("?"))
            }
            other => {
                let server = self.server_conn.as_ref().and_then(|s| s.address.as_ref());
                format!(
                    "{other} -> {}",
                    server.map(format_address).unwrap_or_default()
                )
            }
        };
        let outcome = match (&self.response, &self.error) {
            (Some(response), _) if self.r#type == "http" => format!(" << {}", response.summary()),
            (_, Some(error)) => format!(" << {}", error.msg),
            _ => String::new(),
        };
        format!("{}: {what}{outcome}", self.client_label())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn request(host_header: Option<&str>) -> Request {
        Request {
            http_version: Bytes::from_static(b"HTTP/1.1"),
            headers: host_header
                .map(|h| Header {
                    name: Bytes::from_static(b"Host"),
                    value: Bytes::from(h.to_owned()),
                })
                .into_iter()
                .collect(),
            host: "10.0.0.1".to_owned(),
            port: 443,
            method: Bytes::from_static(b"GET"),
            scheme: Bytes::from_static(b"https"),
            path: Bytes::from_static(b"/a?b=1"),
            ..Request::default()
        }
    }

    #[test]
    fn url_and_pretty_url() {
        let r = request(Some("example.com:8443"));
        assert_eq!(r.url(), "https://10.0.0.1/a?b=1");
        assert_eq!(r.pretty_url(), "https://example.com:8443/a?b=1");
        assert_eq!(r.pretty_host(), "example.com");
        let r = request(None);
        assert_eq!(r.pretty_url(), "https://10.0.0.1/a?b=1");
        assert_eq!(r.pretty_host(), "10.0.0.1");
        assert_eq!(request(Some("[::1]:80")).pretty_host(), "::1");
    }

    #[test]
    fn sizes_like_mitmproxy() {
        assert_eq!(pretty_size(24), "24b");
        assert_eq!(pretty_size(1536), "1.5k");
        assert_eq!(pretty_size(200 * 1024), "200k");
        assert_eq!(pretty_size(3 * 1024 * 1024), "3.0m");
    }
}
