//! HAR export: `SaveHar.make_har` / `flow_entry` from mitmproxy's `addons/savehar.py`.

use std::collections::HashSet;

use base64::Engine;
use flowtap_proto::v1::{Flow, Header, Request, Response};

use super::isoformat_utc;
use super::json::Json;
use super::text::{self, body_text, decode_query, headers_size, is_mostly_binary};
use crate::model::{RequestExt, ResponseExt, header_value};

/// The HAR document for `flows` as JSON text (4-space indent, like mitmproxy's).
/// Flows that are not HTTP are skipped.
pub fn export_json<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> String {
    export(flows).render_string()
}

/// A HAR document under construction; see [`export_json`].
pub struct HarDocument(Json);

impl HarDocument {
    /// The document as JSON text.
    pub fn render_string(&self) -> String {
        self.0.render()
    }
}

/// Builds the HAR document for `flows` (only HTTP flows become entries).
pub fn export<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> HarDocument {
    let mut servers_seen = HashSet::new();
    let entries = flows
        .into_iter()
        .filter(|f| f.r#type == "http" && f.request.is_some())
        .map(|f| entry_json(f, &mut servers_seen))
        .collect();
    HarDocument(Json::Object(vec![(
        "log",
        Json::Object(vec![
            ("version", Json::str("1.2")),
            (
                "creator",
                Json::Object(vec![
                    ("name", Json::str("flowtap")),
                    ("version", Json::str(env!("CARGO_PKG_VERSION"))),
                    ("comment", Json::str("")),
                ]),
            ),
            ("pages", Json::Array(Vec::new())),
            ("entries", Json::Array(entries)),
        ]),
    )]))
}

/// One HAR entry as JSON text, or None for flows that are not HTTP.
pub fn entry(flow: &Flow) -> Option<String> {
    (flow.r#type == "http" && flow.request.is_some())
        .then(|| entry_json(flow, &mut HashSet::new()).render())
}

fn ms(seconds: f64) -> Json {
    Json::Float(1000.0 * seconds)
}

fn pairs(items: Vec<(String, String)>) -> Json {
    Json::Array(
        items
            .into_iter()
            .map(|(name, value)| {
                Json::Object(vec![("name", Json::Str(name)), ("value", Json::Str(value))])
            })
            .collect(),
    )
}

fn header_pairs(headers: &[Header]) -> Json {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    pairs(
        headers
            .iter()
            .map(|h| (text(&h.name), text(&h.value)))
            .collect(),
    )
}

fn entry_json(flow: &Flow, servers_seen: &mut HashSet<String>) -> Json {
    let default_request = Request::default();
    let request = flow.request.as_ref().unwrap_or(&default_request);
    let timings = timings(flow, request, servers_seen);
    let time = timings
        .iter()
        .fold(Json::Int(0), |acc, (_, v)| match (acc, v) {
            (acc, Json::Float(f)) if *f < 0.0 => acc,
            (Json::Int(a), Json::Int(b)) => Json::Int(a + b),
            (Json::Int(a), Json::Float(b)) => Json::Float(a as f64 + b),
            (Json::Float(a), Json::Int(b)) => Json::Float(a + *b as f64),
            (Json::Float(a), Json::Float(b)) => Json::Float(a + b),
            (acc, _) => acc,
        });
    let method = String::from_utf8_lossy(&request.method).into_owned();
    let url = if method == "CONNECT" {
        format!("https://{}/", request.pretty_url())
    } else {
        request.pretty_url()
    };
    let query = String::from_utf8_lossy(&request.path)
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let mut request_json = vec![
        ("method", Json::Str(method.clone())),
        ("url", Json::Str(url)),
        (
            "httpVersion",
            Json::Str(String::from_utf8_lossy(&request.http_version).into_owned()),
        ),
        ("cookies", pairs(text::request_cookies(&request.headers))),
        ("headers", header_pairs(&request.headers)),
        ("queryString", pairs(decode_query(&query))),
        (
            "headersSize",
            Json::Int(headers_size(&request.headers) as i64),
        ),
        (
            "bodySize",
            Json::Int(request.content.as_ref().map_or(0, |c| c.len()) as i64),
        ),
    ];
    if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
        let body = request
            .decoded_content()
            .map(|c| body_text(&c, &request.headers));
        let content_type = request.header("content-type").unwrap_or_default();
        let params = if content_type
            .to_lowercase()
            .contains("application/x-www-form-urlencoded")
        {
            decode_query(body.as_deref().unwrap_or_default())
        } else {
            Vec::new()
        };
        request_json.push((
            "postData",
            Json::Object(vec![
                ("mimeType", Json::Str(content_type)),
                ("text", body.map_or(Json::Null, Json::Str)),
                ("params", pairs(params)),
            ]),
        ));
    }
    let mut entry = vec![
        (
            "startedDateTime",
            Json::Str(isoformat_utc(request.timestamp_start)),
        ),
        ("time", time),
        ("request", Json::Object(request_json)),
        ("response", response_json(flow)),
        ("cache", Json::Object(Vec::new())),
        ("timings", Json::Object(timings)),
    ];
    if let Some(peer) = flow.server_conn.as_ref().and_then(|s| s.peername.as_ref()) {
        entry.push(("serverIPAddress", Json::Str(peer.host.clone())));
    }
    if let Some(ws) = &flow.websocket {
        let messages = ws
            .messages
            .iter()
            .map(|m| {
                let data = if m.r#type == 1 {
                    String::from_utf8_lossy(&m.content).into_owned()
                } else {
                    base64::engine::general_purpose::STANDARD.encode(&m.content)
                };
                Json::Object(vec![
                    (
                        "type",
                        Json::str(if m.from_client { "send" } else { "receive" }),
                    ),
                    ("time", Json::Float(m.timestamp)),
                    ("opcode", Json::Int(i64::from(m.r#type))),
                    ("data", Json::Str(data)),
                ])
            })
            .collect();
        entry.push(("_resourceType", Json::str("websocket")));
        entry.push(("_webSocketMessages", Json::Array(messages)));
    }
    Json::Object(entry)
}

fn timings(
    flow: &Flow,
    request: &Request,
    servers_seen: &mut HashSet<String>,
) -> Vec<(&'static str, Json)> {
    let (mut connect, mut ssl) = (Json::Float(-1.0), Json::Float(-1.0));
    if let Some(server) = &flow.server_conn
        && !servers_seen.contains(&server.id)
        && let (Some(tcp), start) = (
            server.timestamp_tcp_setup.filter(|t| *t != 0.0),
            server.timestamp_start,
        )
    {
        connect = ms(tcp - start.unwrap_or(tcp));
        if let Some(tls) = server.timestamp_tls_setup.filter(|t| *t != 0.0) {
            ssl = ms(tls - tcp);
        }
        servers_seen.insert(server.id.clone());
    }
    let request_end = request.timestamp_end.filter(|t| *t != 0.0);
    let send = request_end.map_or(Json::Int(0), |end| ms(end - request.timestamp_start));
    let response = flow.response.as_ref();
    let wait = match (response, request_end) {
        (Some(r), Some(end)) => ms(r.timestamp_start - end),
        _ => Json::Int(0),
    };
    let receive = match response.and_then(|r| r.timestamp_end.filter(|t| *t != 0.0).map(|e| (r, e)))
    {
        Some((r, end)) => ms(end - r.timestamp_start),
        None => Json::Int(0),
    };
    vec![
        ("connect", connect),
        ("ssl", ssl),
        ("send", send),
        ("receive", receive),
        ("wait", wait),
    ]
}

fn response_json(flow: &Flow) -> Json {
    let Some(response) = &flow.response else {
        return Json::Object(vec![
            ("status", Json::Int(0)),
            ("statusText", Json::str("")),
            ("httpVersion", Json::str("")),
            ("headers", Json::Array(Vec::new())),
            ("cookies", Json::Array(Vec::new())),
            ("content", Json::Object(Vec::new())),
            ("redirectURL", Json::str("")),
            ("headersSize", Json::Int(-1)),
            ("bodySize", Json::Int(-1)),
            ("_transferSize", Json::Int(0)),
            (
                "_error",
                flow.error
                    .as_ref()
                    .map_or(Json::Null, |e| Json::Str(e.msg.clone())),
            ),
        ]);
    };
    let raw_len = response.content.as_ref().map_or(0, |c| c.len());
    let decoded = response.decoded_content();
    let decoded_len = decoded.as_ref().map_or(0, |c| c.len());
    let mut content = vec![
        ("size", Json::Int(raw_len as i64)),
        (
            "compression",
            Json::Int(decoded_len as i64 - raw_len as i64),
        ),
        (
            "mimeType",
            Json::Str(response.header("Content-Type").unwrap_or_default()),
        ),
    ];
    match decoded.as_deref() {
        Some(body) if is_mostly_binary(body) => {
            content.push((
                "text",
                Json::Str(base64::engine::general_purpose::STANDARD.encode(body)),
            ));
            content.push(("encoding", Json::str("base64")));
        }
        Some(body) => content.push(("text", Json::Str(body_text(body, &response.headers)))),
        None => content.push(("text", Json::str(""))),
    }
    Json::Object(vec![
        ("status", Json::Int(i64::from(response.status_code))),
        (
            "statusText",
            Json::Str(String::from_utf8_lossy(&response.reason).into_owned()),
        ),
        (
            "httpVersion",
            Json::Str(String::from_utf8_lossy(&response.http_version).into_owned()),
        ),
        ("cookies", response_cookies(response)),
        ("headers", header_pairs(&response.headers)),
        ("content", Json::Object(content)),
        (
            "redirectURL",
            Json::Str(header_value(&response.headers, "Location").unwrap_or_default()),
        ),
        (
            "headersSize",
            Json::Int(headers_size(&response.headers) as i64),
        ),
        ("bodySize", Json::Int(raw_len as i64)),
    ])
}

fn response_cookies(response: &Response) -> Json {
    let cookies = text::response_cookies(&response.headers)
        .into_iter()
        .map(|c| {
            let attr = |name: &str| {
                c.attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let mut cookie = vec![
                ("name", Json::Str(c.name.clone())),
                ("value", Json::Str(c.value.clone())),
                (
                    "path",
                    Json::Str(attr("path").unwrap_or_else(|| "/".to_owned())),
                ),
                ("domain", Json::Str(attr("domain").unwrap_or_default())),
                ("httpOnly", Json::Bool(attr("httpOnly").is_some())),
                ("secure", Json::Bool(attr("secure").is_some())),
            ];
            if let Some(same_site) = attr("sameSite") {
                cookie.push(("sameSite", Json::Str(same_site)));
            }
            Json::Object(cookie)
        })
        .collect();
    Json::Array(cookies)
}
