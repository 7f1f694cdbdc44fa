//! Converters from format version 11 (mitmproxy 6.x) up to 21.

use bytes::Bytes;

use super::{Migrator, Step, Version, rename, sub, sub_opt};
use crate::tnetstring::{Dict, Value};

const DUPLICATED_NOTE: &str = "This WebSocket flow has been migrated from an old file format version and may appear duplicated.";

pub(super) fn convert(m: &mut Migrator, version: Version, mut d: Dict) -> Result<Dict, Step> {
    let Version::Int(v) = version else {
        return Err(Step::Unsupported);
    };
    match v {
        11 => d = v11_12(m, d)?,
        12 => {
            let marked = d.get("marked").is_some_and(Value::is_truthy);
            d.set("marked", if marked { ":default:" } else { "" });
        }
        13 => v13_14(&mut d),
        14 => {
            if let Some(ws) = sub_opt(&mut d, "websocket")
                && let Some(Value::List(messages)) = ws.get_mut("messages")
            {
                for message in messages {
                    if let Value::List(fields) = message {
                        fields.push(Value::Bool(false));
                    }
                }
            }
        }
        15 => {
            let source = if d.contains_key("request") {
                "request"
            } else {
                "client_conn"
            };
            let start = sub(&mut d, source)?.get("timestamp_start").cloned();
            d.set("timestamp_created", start.unwrap_or(Value::Null));
        }
        16 => {
            d.remove("mode");
        }
        17 => sub(&mut d, "client_conn")?.set("proxy_mode", "regular"),
        18 => v18_19(&mut d)?,
        19 => {
            sub(&mut d, "client_conn")?.remove("state");
            sub(&mut d, "server_conn")?.remove("state");
        }
        20 => {
            for key in ["client_conn", "server_conn"] {
                let conn = sub(&mut d, key)?;
                if conn.get("tls_version").and_then(Value::as_str) == Some("QUIC") {
                    conn.set("tls_version", "QUICv1");
                }
            }
        }
        _ => return Err(Step::Unsupported),
    }
    d.set("version", v + 1);
    Ok(d)
}

/// Old WebSocketFlow records are merged into their handshake HTTP flow.
fn v11_12(m: &mut Migrator, d: Dict) -> Result<Dict, Step> {
    let metadata = d.get("metadata").and_then(Value::as_dict);
    let id = d
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if metadata.is_some_and(|md| md.contains_key("websocket")) {
        m.websocket_handshakes.insert(id, Value::Dict(d.clone()));
    }
    let handshake_id = metadata
        .and_then(|md| md.get("websocket_handshake"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(handshake_id) = handshake_id else {
        let mut d = d;
        d.set("websocket", Value::Null);
        return Ok(d);
    };
    let ws_flow = d;
    let mut data = match m.websocket_handshakes.remove(&handshake_id) {
        Some(Value::Dict(handshake)) => handshake,
        _ => placeholder_handshake(&ws_flow),
    };
    sub(&mut data, "metadata")?.set("duplicated", DUPLICATED_NOTE);
    let closed_by_client = ws_flow.get("close_sender").and_then(Value::as_str) == Some("client");
    let timestamp_end = sub_opt(&mut data, "server_conn")
        .and_then(|s| s.get("timestamp_end").cloned())
        .unwrap_or(Value::Null);
    let mut ws = Dict::new();
    let field = |key: &str| ws_flow.get(key).cloned().unwrap_or(Value::Null);
    ws.set("messages", field("messages"));
    ws.set("closed_by_client", closed_by_client);
    ws.set("close_code", field("close_code"));
    ws.set("close_reason", field("close_reason"));
    ws.set("timestamp_end", timestamp_end);
    data.set("websocket", ws);
    Ok(data)
}

/// What mitmproxy substitutes when a WebSocket flow's handshake is not in the file.
fn placeholder_handshake(ws_flow: &Dict) -> Dict {
    let field = |key: &str| ws_flow.get(key).cloned().unwrap_or(Value::Null);
    let mut request = Dict::new();
    request.set("authority", Bytes::new());
    request.set("content", Value::Null);
    request.set("headers", Value::List(Vec::new()));
    request.set("host", Bytes::from_static(b"unknown"));
    request.set("http_version", Bytes::from_static(b"HTTP/1.1"));
    request.set("method", Bytes::from_static(b"GET"));
    request.set("path", Bytes::from_static(b"/"));
    request.set("port", 80i64);
    request.set("scheme", Bytes::from_static(b"http"));
    request.set("timestamp_end", 0i64);
    request.set("timestamp_start", 0i64);
    request.set("trailers", Value::Null);
    let mut d = Dict::new();
    d.set("client_conn", field("client_conn"));
    d.set("error", field("error"));
    d.set("id", field("id"));
    d.set("intercepted", field("intercepted"));
    d.set("is_replay", field("is_replay"));
    d.set("marked", field("marked"));
    d.set("metadata", Dict::new());
    d.set("mode", "transparent");
    d.set("request", request);
    d.set("response", Value::Null);
    d.set("server_conn", field("server_conn"));
    d.set("type", "http");
    d.set("version", 12i64);
    d
}

fn v13_14(d: &mut Dict) {
    d.set("comment", "");
    let request_end = sub_opt(d, "request")
        .and_then(|r| r.get("timestamp_end").cloned())
        .unwrap_or(Value::Null);
    if let Some(response) = sub_opt(d, "response")
        && response.get("timestamp_start").is_none_or(Value::is_null)
    {
        let end = match &request_end {
            Value::Float(f) => Value::Float(f + 1.0),
            Value::Int(i) => Value::Int(i + 1),
            _ => Value::Null,
        };
        response.set("timestamp_start", request_end);
        response.set("timestamp_end", end);
    }
}

fn v18_19(d: &mut Dict) -> Result<(), Step> {
    let client = sub(d, "client_conn")?;
    rename(client, "address", "peername");
    if client.get("timestamp_start").is_none_or(Value::is_null) {
        client.set("timestamp_start", 0.0);
    }
    client.remove("tls_extensions");
    let server = sub(d, "server_conn")?;
    rename(server, "ip_address", "peername");
    rename(server, "source_address", "sockname");
    rename(server, "via2", "via");
    for key in ["client_conn", "server_conn"] {
        let conn = sub(d, key)?;
        conn.remove("tls_established");
        rename(conn, "cipher_name", "cipher");
        if !conn.contains_key("transport_protocol") {
            conn.set("transport_protocol", "tcp");
        }
        for name in ["peername", "sockname", "address"] {
            if let Some(Value::List(items)) = conn.get_mut(name)
                && let Some(Value::Bytes(host)) = items.first()
            {
                items[0] = Value::Text(String::from_utf8_lossy(host).into_owned());
            }
        }
    }
    let server = sub(d, "server_conn")?;
    if server.get("sni") == Some(&Value::Bool(true)) {
        let host = server
            .get("address")
            .and_then(Value::as_list)
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or(Value::Null);
        server.set("sni", host);
    }
    Ok(())
}
