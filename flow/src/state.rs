//! `Flow` ⇄ mitmproxy's flow state (`Flow.get_state()`, flow-file format version 21).
//!
//! [`to_state`] builds the dict with the keys in exactly the order `get_state()` inserts them,
//! so that `tnetstring::encode(to_state(from_state(d)?))` reproduces a mitmdump file byte for
//! byte. [`from_state`] expects a version-21 dict: run [`crate::compat::migrate`] first.
//! Readers are lenient where Python's own would be (bytes for str, ints for floats).

use flowtap_proto::v1::{self, Flow};

use crate::tnetstring::{Dict, Value};

mod connection;
mod dns;
mod fields;
mod http;

pub(crate) use fields::Fields;

/// The flow-file format version this crate reads and writes.
pub const FLOW_FORMAT_VERSION: i64 = 21;

/// A state dict that does not describe a valid flow.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid flow state at {path}: {message}")]
pub struct StateError {
    /// Where in the state dict, e.g. `flow.request.port`.
    pub path: String,
    /// What was wrong.
    pub message: String,
}

impl StateError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The state dict of `flow`, as mitmproxy's `get_state()` returns it (format version 21).
pub fn to_state(flow: &Flow) -> Value {
    let mut d = Dict::new();
    d.set("version", FLOW_FORMAT_VERSION);
    d.set("type", flow.r#type.clone());
    d.set("id", flow.id.clone());
    d.set(
        "error",
        flow.error.as_ref().map_or(Value::Null, error_state),
    );
    let default_conn = v1::Connection::default();
    let client = flow.client_conn.as_ref().unwrap_or(&default_conn);
    let server = flow.server_conn.as_ref().unwrap_or(&default_conn);
    d.set("client_conn", connection::client_to_state(client));
    d.set("server_conn", connection::server_to_state(server));
    d.set("intercepted", flow.intercepted);
    d.set("is_replay", flow.is_replay.clone());
    d.set("marked", flow.marked.clone());
    d.set("metadata", metadata_to_state(flow.metadata.as_ref()));
    d.set("comment", flow.comment.clone());
    d.set("timestamp_created", flow.timestamp_created);
    d.set(
        "backup",
        flow.backup.as_deref().map_or(Value::Null, to_state),
    );
    match flow.r#type.as_str() {
        "tcp" | "udp" => {
            let messages = flow.messages.iter().map(tcp_message_state).collect();
            d.set("messages", Value::List(messages));
        }
        "dns" => {
            let request = flow.dns_request.clone().unwrap_or_default();
            d.set("request", dns::to_state(&request));
            d.set(
                "response",
                flow.dns_response
                    .as_ref()
                    .map_or(Value::Null, dns::to_state),
            );
        }
        _ => {
            let request = flow.request.clone().unwrap_or_default();
            d.set("request", http::request_to_state(&request));
            d.set(
                "response",
                flow.response
                    .as_ref()
                    .map_or(Value::Null, http::response_to_state),
            );
            d.set(
                "websocket",
                flow.websocket
                    .as_ref()
                    .map_or(Value::Null, http::websocket_to_state),
            );
        }
    }
    Value::Dict(d)
}

/// The flow described by a version-21 state dict.
///
/// Fails if the version is not 21, the type is unknown, or a field has the wrong type.
pub fn from_state(state: &Value) -> Result<Flow, StateError> {
    let f = Fields::of(state, "flow")?;
    let version = f.int("version")?;
    if version != FLOW_FORMAT_VERSION {
        return Err(StateError::new(
            "flow.version",
            format!("expected {FLOW_FORMAT_VERSION}, found {version} (migrate it first)"),
        ));
    }
    let flow_type = f.string("type")?;
    let mut flow = Flow {
        id: f.string("id")?,
        error: f
            .opt_dict("error")?
            .map(|e| error_from_state(&e))
            .transpose()?,
        client_conn: Some(connection::from_state(&f.dict("client_conn")?)?),
        server_conn: Some(connection::from_state(&f.dict("server_conn")?)?),
        intercepted: f.opt_bool("intercepted")?.unwrap_or(false),
        is_replay: f.opt_string("is_replay")?,
        marked: f.opt_string("marked")?.unwrap_or_default(),
        metadata: f
            .get("metadata")
            .map(metadata_from_state)
            .transpose()?
            .flatten(),
        comment: f.opt_string("comment")?.unwrap_or_default(),
        timestamp_created: f.opt_float("timestamp_created")?.unwrap_or(0.0),
        backup: match f.get("backup") {
            None | Some(Value::Null) => None,
            Some(backup) => Some(Box::new(from_state(backup)?)),
        },
        ..Flow::default()
    };
    match flow_type.as_str() {
        "http" => {
            flow.request = Some(http::request_from_state(&f.dict("request")?)?);
            flow.response = f
                .opt_dict("response")?
                .map(|r| http::response_from_state(&r))
                .transpose()?;
            flow.websocket = f
                .opt_dict("websocket")?
                .map(|w| http::websocket_from_state(&w))
                .transpose()?;
        }
        "tcp" | "udp" => {
            flow.messages = f
                .list("messages")?
                .iter()
                .enumerate()
                .map(|(i, m)| tcp_message_from_state(m, i))
                .collect::<Result<_, _>>()?;
        }
        "dns" => {
            flow.dns_request = Some(dns::from_state(&f.dict("request")?)?);
            flow.dns_response = f
                .opt_dict("response")?
                .map(|r| dns::from_state(&r))
                .transpose()?;
        }
        other => {
            return Err(StateError::new(
                "flow.type",
                format!("unknown flow type {other:?}"),
            ));
        }
    }
    flow.r#type = flow_type;
    Ok(flow)
}

fn error_state(error: &v1::Error) -> Value {
    let mut d = Dict::new();
    d.set("msg", error.msg.clone());
    d.set("timestamp", error.timestamp);
    Value::Dict(d)
}

fn error_from_state(f: &Fields<'_>) -> Result<v1::Error, StateError> {
    Ok(v1::Error {
        msg: f.string("msg")?,
        timestamp: f.opt_float("timestamp")?.unwrap_or(0.0),
    })
}

fn tcp_message_state(m: &v1::TcpMessage) -> Value {
    Value::List(vec![
        Value::Bool(m.from_client),
        Value::Bytes(m.content.clone()),
        Value::Float(m.timestamp),
    ])
}

fn tcp_message_from_state(value: &Value, index: usize) -> Result<v1::TcpMessage, StateError> {
    let path = format!("flow.messages[{index}]");
    match value.as_list() {
        Some([from_client, content, timestamp, ..]) => Ok(v1::TcpMessage {
            from_client: fields::as_bool(from_client, &path)?,
            content: fields::as_bytes(content, &path)?,
            timestamp: fields::as_float(timestamp, &path)?,
        }),
        _ => Err(StateError::new(
            path,
            "expected [from_client, content, timestamp]",
        )),
    }
}

/// `flow.metadata` as a state dict.
pub fn metadata_to_state(metadata: Option<&v1::ValueDict>) -> Value {
    let dict = metadata
        .map(|m| {
            m.entries
                .iter()
                .map(|e| {
                    (
                        opt_value_from_proto(e.key.as_ref()),
                        opt_value_from_proto(e.value.as_ref()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Dict(dict)
}

fn metadata_from_state(value: &Value) -> Result<Option<v1::ValueDict>, StateError> {
    match value {
        Value::Null => Ok(None),
        Value::Dict(_) => match value_to_proto(value).kind {
            Some(v1::value::Kind::Dict(dict)) => Ok(Some(dict)),
            _ => Ok(None),
        },
        _ => Err(StateError::new("flow.metadata", "expected a dict")),
    }
}

/// Converts a tnetstring value to the proto `Value` (used for `flow.metadata`).
pub fn value_to_proto(value: &Value) -> v1::Value {
    use v1::value::Kind;
    let kind = match value {
        Value::Null => Kind::Null(true),
        Value::Bool(b) => Kind::Bool(*b),
        Value::Int(i) => Kind::Int(*i),
        Value::Float(f) => Kind::Float(*f),
        Value::Bytes(b) => Kind::Bytes(b.clone()),
        Value::Text(t) => Kind::Text(t.clone()),
        Value::List(items) => Kind::List(v1::ValueList {
            items: items.iter().map(value_to_proto).collect(),
        }),
        Value::Dict(dict) => Kind::Dict(v1::ValueDict {
            entries: dict
                .iter()
                .map(|(k, v)| v1::ValueEntry {
                    key: Some(value_to_proto(k)),
                    value: Some(value_to_proto(v)),
                })
                .collect(),
        }),
    };
    v1::Value { kind: Some(kind) }
}

/// Converts a proto `Value` to a tnetstring value. A `Value` with no kind set becomes `Null`.
pub fn value_from_proto(value: &v1::Value) -> Value {
    use v1::value::Kind;
    match &value.kind {
        None | Some(Kind::Null(_)) => Value::Null,
        Some(Kind::Bool(b)) => Value::Bool(*b),
        Some(Kind::Int(i)) => Value::Int(*i),
        Some(Kind::Float(f)) => Value::Float(*f),
        Some(Kind::Bytes(b)) => Value::Bytes(b.clone()),
        Some(Kind::Text(t)) => Value::Text(t.clone()),
        Some(Kind::List(list)) => Value::List(list.items.iter().map(value_from_proto).collect()),
        Some(Kind::Dict(dict)) => Value::Dict(
            dict.entries
                .iter()
                .map(|e| {
                    (
                        opt_value_from_proto(e.key.as_ref()),
                        opt_value_from_proto(e.value.as_ref()),
                    )
                })
                .collect(),
        ),
    }
}

fn opt_value_from_proto(value: Option<&v1::Value>) -> Value {
    value.map_or(Value::Null, value_from_proto)
}
