//! HTTP `request` / `response` (spec 5.5) and `websocket` (spec 5.6).

use flowtap_proto::v1::{
    Header, Headers, Request, Response, StreamMode, WebSocketData, WebSocketMessage,
};

use super::StateError;
use super::fields::{self, Fields};
use crate::tnetstring::{Dict, Value};

pub(crate) fn request_to_state(r: &Request) -> Value {
    let mut d = Dict::new();
    d.set("http_version", r.http_version.clone());
    d.set("headers", headers_to_state(&r.headers));
    d.set("content", r.content.clone());
    d.set(
        "trailers",
        r.trailers
            .as_ref()
            .map_or(Value::Null, |t| headers_to_state(&t.fields)),
    );
    d.set("timestamp_start", r.timestamp_start);
    d.set("timestamp_end", r.timestamp_end);
    d.set("host", r.host.clone());
    d.set("port", i64::from(r.port));
    d.set("method", r.method.clone());
    d.set("scheme", r.scheme.clone());
    d.set("authority", r.authority.clone());
    d.set("path", r.path.clone());
    Value::Dict(d)
}

pub(crate) fn response_to_state(r: &Response) -> Value {
    let mut d = Dict::new();
    d.set("http_version", r.http_version.clone());
    d.set("headers", headers_to_state(&r.headers));
    d.set("content", r.content.clone());
    d.set(
        "trailers",
        r.trailers
            .as_ref()
            .map_or(Value::Null, |t| headers_to_state(&t.fields)),
    );
    d.set("timestamp_start", r.timestamp_start);
    d.set("timestamp_end", r.timestamp_end);
    d.set("status_code", i64::from(r.status_code));
    d.set("reason", r.reason.clone());
    Value::Dict(d)
}

pub(crate) fn websocket_to_state(w: &WebSocketData) -> Value {
    let messages = w
        .messages
        .iter()
        .map(|m| {
            Value::List(vec![
                Value::Int(i64::from(m.r#type)),
                Value::Bool(m.from_client),
                Value::Bytes(m.content.clone()),
                Value::Float(m.timestamp),
                Value::Bool(m.dropped),
                Value::Bool(m.injected),
            ])
        })
        .collect();
    let mut d = Dict::new();
    d.set("messages", Value::List(messages));
    d.set(
        "closed_by_client",
        w.closed_by_client.map_or(Value::Null, Value::Bool),
    );
    d.set(
        "close_code",
        w.close_code
            .map_or(Value::Null, |c| Value::Int(i64::from(c))),
    );
    d.set("close_reason", w.close_reason.clone());
    d.set("timestamp_end", w.timestamp_end);
    Value::Dict(d)
}

fn headers_to_state(headers: &[Header]) -> Value {
    Value::List(
        headers
            .iter()
            .map(|h| {
                Value::List(vec![
                    Value::Bytes(h.name.clone()),
                    Value::Bytes(h.value.clone()),
                ])
            })
            .collect(),
    )
}

pub(crate) fn request_from_state(f: &Fields<'_>) -> Result<Request, StateError> {
    Ok(Request {
        http_version: f.bytes("http_version")?,
        headers: headers_from_state(f, "headers")?,
        content: f.opt_bytes("content")?,
        trailers: trailers_from_state(f)?,
        timestamp_start: f.opt_float("timestamp_start")?.unwrap_or(0.0),
        timestamp_end: f.opt_float("timestamp_end")?,
        host: f.string("host")?,
        port: f.uint("port")?,
        method: f.bytes("method")?,
        scheme: f.bytes("scheme")?,
        authority: f.opt_bytes("authority")?.unwrap_or_default(),
        path: f.bytes("path")?,
        // Never part of the state: a loaded flow buffers its bodies.
        stream: StreamMode::Buffer.into(),
    })
}

pub(crate) fn response_from_state(f: &Fields<'_>) -> Result<Response, StateError> {
    Ok(Response {
        http_version: f.bytes("http_version")?,
        headers: headers_from_state(f, "headers")?,
        content: f.opt_bytes("content")?,
        trailers: trailers_from_state(f)?,
        timestamp_start: f.opt_float("timestamp_start")?.unwrap_or(0.0),
        timestamp_end: f.opt_float("timestamp_end")?,
        status_code: f.uint("status_code")?,
        reason: f.opt_bytes("reason")?.unwrap_or_default(),
        stream: StreamMode::Buffer.into(),
    })
}

pub(crate) fn websocket_from_state(f: &Fields<'_>) -> Result<WebSocketData, StateError> {
    let messages = f
        .list("messages")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let path = f.item_path("messages", i);
            match m.as_list() {
                Some(items) if items.len() >= 4 => Ok(WebSocketMessage {
                    r#type: u32::try_from(fields::as_int(&items[0], &path)?).unwrap_or(2),
                    from_client: fields::as_bool(&items[1], &path)?,
                    content: fields::as_bytes(&items[2], &path)?,
                    timestamp: fields::as_float(&items[3], &path)?,
                    dropped: items
                        .get(4)
                        .map(|v| fields::as_bool(v, &path))
                        .transpose()?
                        .unwrap_or(false),
                    injected: items
                        .get(5)
                        .map(|v| fields::as_bool(v, &path))
                        .transpose()?
                        .unwrap_or(false),
                }),
                _ => Err(StateError::new(
                    path,
                    "expected [type, from_client, content, timestamp, ...]",
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(WebSocketData {
        messages,
        closed_by_client: f.opt_bool("closed_by_client")?,
        close_code: f.opt_uint("close_code")?,
        close_reason: f.opt_string("close_reason")?,
        timestamp_end: f.opt_float("timestamp_end")?,
    })
}

fn trailers_from_state(f: &Fields<'_>) -> Result<Option<Headers>, StateError> {
    match f.get("trailers") {
        None | Some(Value::Null) => Ok(None),
        Some(_) => Ok(Some(Headers {
            fields: headers_from_state(f, "trailers")?,
        })),
    }
}

fn headers_from_state(f: &Fields<'_>, key: &str) -> Result<Vec<Header>, StateError> {
    f.list(key)?
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            let path = f.item_path(key, i);
            match pair.as_list() {
                Some([name, value]) => Ok(Header {
                    name: fields::as_bytes(name, &path)?,
                    value: fields::as_bytes(value, &path)?,
                }),
                _ => Err(StateError::new(path, "expected [name, value]")),
            }
        })
        .collect()
}
