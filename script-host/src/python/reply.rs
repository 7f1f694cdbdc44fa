//! The flow of a hook reply, read straight from the state dict the runtime sends back.
//!
//! The dict is `Flow.get_state()` as the runtime slimmed it (`flowtap_host.runtime._slim`):
//! parts the scripts left as sent are None and named in `unchanged` (the proxy keeps its own),
//! and a part no script read is still the [`PartState`](super::parts::PartState) it came as.
//! HTTP flows are read field by field into the protobuf flow; the other kinds go through the
//! flow-file state (`flowtap_flow::state`), which is slower but rare. The fields are read by the
//! state parser's rules ([`fields`](super::fields)).

use flowtap_flow::state::{self, FLOW_FORMAT_VERSION};
use flowtap_proto::v1::{
    self, Connection, Flow, Request, Response, ServerSpec, StreamMode, WebSocketData,
    WebSocketMessage,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::convert;
use super::fields::{
    FieldError, Fields, address_of, as_bool, as_bytes, as_float, as_int, as_string, list_items,
};
use super::parts::{self, Part};

/// The flow of a reply to a flow hook (see the module documentation); `live` as sent.
pub(super) fn flow_from_py(obj: &Bound<'_, PyAny>, live: bool) -> Result<Flow, String> {
    let dict = obj
        .cast::<PyDict>()
        .map_err(|_| "a flow state must be a dict".to_string())?;
    let f = Fields {
        dict: dict.clone(),
        path: "flow",
    };
    let is_http = f
        .get("type")
        .is_some_and(|t| t.extract::<String>().is_ok_and(|t| t == "http"));
    if !is_http {
        return convert::flow_from_py(obj, live);
    }
    http_flow(&f, live).map_err(|e| e.to_string())
}

fn http_flow(f: &Fields<'_>, live: bool) -> Result<Flow, FieldError> {
    let version = f.int("version")?;
    if version != state::FLOW_FORMAT_VERSION {
        return Err(f.error(
            "version",
            format!("expected {FLOW_FORMAT_VERSION}, found {version} (migrate it first)"),
        ));
    }
    let unchanged = match f.optional("unchanged") {
        Some(names) => list_items(&names)
            .ok_or_else(|| f.error("unchanged", "expected a list"))?
            .iter()
            .filter_map(|name| name.extract::<String>().ok())
            .collect(),
        None => Vec::new(),
    };
    let kept = |name: &str| unchanged.iter().any(|n| n == name);
    let mut flow = Flow {
        r#type: f.string("type")?,
        id: f.string("id")?,
        error: f
            .opt_dict("error")?
            .map(|e| {
                Ok::<_, FieldError>(v1::Error {
                    msg: e.string("msg")?,
                    timestamp: e.opt_float("timestamp")?.unwrap_or(0.0),
                })
            })
            .transpose()?,
        intercepted: f.opt_bool("intercepted")?.unwrap_or(false),
        is_replay: f.opt_string("is_replay")?,
        marked: f.opt_string("marked")?.unwrap_or_default(),
        metadata: metadata(f)?,
        comment: f.opt_string("comment")?.unwrap_or_default(),
        timestamp_created: f.opt_float("timestamp_created")?.unwrap_or(0.0),
        backup: backup(f)?,
        live,
        ..Flow::default()
    };
    if !kept("client_conn") {
        flow.client_conn = Some(part_or(f, "client_conn", |c| connection(&c))?);
    }
    if !kept("server_conn") {
        flow.server_conn = Some(part_or(f, "server_conn", |c| connection(&c))?);
    }
    if !kept("request") {
        flow.request = Some(part_or(f, "request", |r| request(&r))?);
    }
    flow.response = match f.optional("response") {
        None => None,
        Some(value) => Some(match parts::part_of(&value) {
            Some(Part::Response(response)) => response,
            Some(_) => return Err(f.error("response", "expected a response")),
            None => response(&f.nested(&value, "response")?)?,
        }),
    };
    flow.websocket = f
        .opt_dict("websocket")?
        .map(|w| websocket(&w))
        .transpose()?;
    Ok(flow)
}

/// A part that may have come back unread: taken from its `PartState`, else read by `read`.
fn part_or<T>(
    f: &Fields<'_>,
    key: &'static str,
    read: impl FnOnce(Fields<'_>) -> Result<T, FieldError>,
) -> Result<T, FieldError>
where
    T: FromPart,
{
    let value = f.required(key)?;
    if let Some(part) = parts::part_of(&value) {
        return T::from_part(part).ok_or_else(|| f.error(key, "a part of another kind"));
    }
    read(f.nested(&value, key)?)
}

trait FromPart: Sized {
    fn from_part(part: Part) -> Option<Self>;
}

impl FromPart for Connection {
    fn from_part(part: Part) -> Option<Self> {
        match part {
            Part::Client(conn) | Part::Server(conn) => Some(conn),
            _ => None,
        }
    }
}

impl FromPart for Request {
    fn from_part(part: Part) -> Option<Self> {
        match part {
            Part::Request(request) => Some(request),
            _ => None,
        }
    }
}

fn metadata(f: &Fields<'_>) -> Result<Option<v1::ValueDict>, FieldError> {
    let Some(value) = f.optional("metadata") else {
        return Ok(None);
    };
    if !value.is_instance_of::<PyDict>() {
        return Err(f.error("metadata", "expected a dict"));
    }
    let value = convert::py_to_value(&value).map_err(FieldError::Plain)?;
    Ok(match state::value_to_proto(&value).kind {
        Some(v1::value::Kind::Dict(dict)) => Some(dict),
        _ => None,
    })
}

fn backup(f: &Fields<'_>) -> Result<Option<Box<Flow>>, FieldError> {
    let Some(value) = f.optional("backup") else {
        return Ok(None);
    };
    let value = convert::py_to_value(&value).map_err(FieldError::Plain)?;
    let flow = state::from_state(&value).map_err(|e| FieldError::Plain(e.to_string()))?;
    Ok(Some(Box::new(flow)))
}

/// The subject of a connection hook after the scripts: `sent` with the connections it has
/// replaced by those the scripts give back (None in `obj` keeps the one sent).
pub(super) fn connection_subject_from_py(
    obj: &Bound<'_, PyAny>,
    sent: &Flow,
) -> Result<Flow, String> {
    let dict = obj
        .cast::<PyDict>()
        .map_err(|_| "a connection hook's subject must be a dict".to_string())?;
    let f = Fields {
        dict: dict.clone(),
        path: "flow",
    };
    let mut flow = sent.clone();
    for (key, slot) in [
        ("client_conn", &mut flow.client_conn),
        ("server_conn", &mut flow.server_conn),
    ] {
        if slot.is_some()
            && let Some(conn) = f.optional(key)
        {
            *slot = Some(
                connection(&f.nested(&conn, key).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(flow)
}

fn connection(f: &Fields<'_>) -> Result<Connection, FieldError> {
    let via = match f.optional("via") {
        None => None,
        Some(value) => match list_items(&value).as_deref() {
            Some([scheme, address]) => Some(ServerSpec {
                scheme: as_string(scheme).map_err(|m| f.error("via", m))?,
                address: address_of(address).map_err(|m| f.error("via", m))?,
            }),
            _ => return Err(f.error("via", "expected [scheme, [host, port]]")),
        },
    };
    Ok(Connection {
        id: f.opt_string("id")?.unwrap_or_default(),
        peername: f.address("peername")?,
        sockname: f.address("sockname")?,
        transport_protocol: f
            .opt_string("transport_protocol")?
            .unwrap_or_else(|| "tcp".to_owned()),
        error: f.opt_string("error")?,
        tls: f.opt_bool("tls")?.unwrap_or(false),
        certificate_list: f.items("certificate_list", as_bytes)?,
        alpn: f.opt_bytes("alpn")?,
        alpn_offers: f.items("alpn_offers", as_bytes)?,
        cipher: f.opt_string("cipher")?,
        cipher_list: f.items("cipher_list", as_string)?,
        tls_version: f.opt_string("tls_version")?,
        sni: f.opt_string("sni")?,
        timestamp_start: f.opt_float("timestamp_start")?,
        timestamp_end: f.opt_float("timestamp_end")?,
        timestamp_tls_setup: f.opt_float("timestamp_tls_setup")?,
        mitmcert: f.opt_bytes("mitmcert")?,
        proxy_mode: f.opt_string("proxy_mode")?.unwrap_or_default(),
        address: f.address("address")?,
        timestamp_tcp_setup: f.opt_float("timestamp_tcp_setup")?,
        via,
        // Not state.
        client_hello: bytes::Bytes::new(),
        socks5_auth: None,
    })
}

fn request(f: &Fields<'_>) -> Result<Request, FieldError> {
    Ok(Request {
        http_version: f.bytes("http_version")?,
        headers: f.headers("headers")?,
        content: f.opt_bytes("content")?,
        trailers: f.trailers()?,
        timestamp_start: f.opt_float("timestamp_start")?.unwrap_or(0.0),
        timestamp_end: f.opt_float("timestamp_end")?,
        host: f.string("host")?,
        port: f.uint("port")?,
        method: f.bytes("method")?,
        scheme: f.bytes("scheme")?,
        authority: f.opt_bytes("authority")?.unwrap_or_default(),
        path: f.bytes("path")?,
        // The stream mode travels in HookReply.stream, not in the state.
        stream: StreamMode::Buffer.into(),
    })
}

fn response(f: &Fields<'_>) -> Result<Response, FieldError> {
    Ok(Response {
        http_version: f.bytes("http_version")?,
        headers: f.headers("headers")?,
        content: f.opt_bytes("content")?,
        trailers: f.trailers()?,
        timestamp_start: f.opt_float("timestamp_start")?.unwrap_or(0.0),
        timestamp_end: f.opt_float("timestamp_end")?,
        status_code: f.uint("status_code")?,
        reason: f.opt_bytes("reason")?.unwrap_or_default(),
        stream: StreamMode::Buffer.into(),
    })
}

fn websocket(f: &Fields<'_>) -> Result<WebSocketData, FieldError> {
    let messages = f.items("messages", |m| {
        let items = list_items(m)
            .filter(|items| items.len() >= 4)
            .ok_or("expected [type, from_client, content, timestamp, ...]")?;
        let flag = |i: usize| items.get(i).map(as_bool).transpose();
        Ok(WebSocketMessage {
            r#type: u32::try_from(as_int(&items[0])?).unwrap_or(2),
            from_client: as_bool(&items[1])?,
            content: as_bytes(&items[2])?,
            timestamp: as_float(&items[3])?,
            dropped: flag(4)?.unwrap_or(false),
            injected: flag(5)?.unwrap_or(false),
        })
    })?;
    Ok(WebSocketData {
        messages,
        closed_by_client: f.opt_bool("closed_by_client")?,
        close_code: f.opt_uint("close_code")?,
        close_reason: f.opt_string("close_reason")?,
        timestamp_end: f.opt_float("timestamp_end")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::parts::tests::http_flow;
    use bytes::Bytes;
    use flowtap_flow::tnetstring::Value;

    /// The flow-file state of `flow` as Python dicts, as `Flow.get_state()` gives it.
    fn state_of<'py>(py: Python<'py>, flow: &Flow) -> Bound<'py, PyDict> {
        let state = convert::value_to_py(py, &state::to_state(flow)).expect("converts");
        state.cast_into::<PyDict>().expect("a dict")
    }

    #[test]
    fn an_http_state_reads_as_the_state_parser_reads_it() {
        Python::attach(|py| {
            let flow = http_flow();
            let back = flow_from_py(state_of(py, &flow).as_any(), true).expect("reads");
            let mut parsed = state::from_state(&state::to_state(&flow)).expect("parses");
            parsed.live = true;
            assert_eq!(back, parsed);
            assert_eq!(back.request, flow.request);
            assert_eq!(back.response, flow.response);
            assert_eq!(back.websocket, flow.websocket);
        });
    }

    #[test]
    fn left_out_and_unread_parts() {
        Python::attach(|py| {
            let flow = http_flow();
            let state = parts::flow_to_py(py, flow.clone(), Vec::new()).expect("converts");
            state.set_item("client_conn", py.None()).expect("set");
            state.set_item("request", py.None()).expect("set");
            state
                .set_item("unchanged", vec!["client_conn", "request"])
                .expect("set");
            let back = flow_from_py(state.as_any(), false).expect("reads");
            assert_eq!(back.client_conn, None);
            assert_eq!(back.request, None);
            assert_eq!(back.server_conn, flow.server_conn);
            let response = flow.response.expect("response");
            assert_eq!(back.response, Some(response));
            assert!(!back.live);
        });
    }

    #[test]
    fn errors_name_the_field_as_the_state_parser_does() {
        Python::attach(|py| {
            let flow = http_flow();
            let state = state_of(py, &flow);
            let response = state
                .get_item("response")
                .expect("get")
                .expect("response")
                .cast_into::<PyDict>()
                .expect("a dict");
            response.set_item("status_code", "200").expect("set");
            let direct = flow_from_py(state.as_any(), true).expect_err("fails");
            let parsed = state::from_state(&convert::py_to_value(state.as_any()).expect("value"))
                .expect_err("fails");
            assert_eq!(direct, parsed.to_string());
            assert_eq!(
                direct,
                "invalid flow state at flow.response.status_code: expected an integer"
            );
        });
    }

    #[test]
    fn lenient_types_as_the_state_parser() {
        Python::attach(|py| {
            let flow = http_flow();
            let state = state_of(py, &flow);
            let request = state
                .get_item("request")
                .expect("get")
                .expect("request")
                .cast_into::<PyDict>()
                .expect("a dict");
            request
                .set_item("host", pyo3::types::PyBytes::new(py, b"bytes.example"))
                .expect("set");
            request.set_item("path", "/as-str").expect("set");
            request.set_item("timestamp_start", 7).expect("set");
            request.set_item("port", 8080.0).expect("set");
            let direct = flow_from_py(state.as_any(), true).expect("reads");
            let parsed = state::from_state(&convert::py_to_value(state.as_any()).expect("value"))
                .expect("parses");
            assert_eq!(direct.request, parsed.request);
            assert_eq!(direct.request.expect("request").host, "bytes.example");
        });
    }

    #[test]
    fn other_flow_kinds_go_through_the_flow_file_state() {
        Python::attach(|py| {
            let flow = Flow {
                id: "t".into(),
                r#type: "tcp".into(),
                client_conn: Some(v1::Connection::default()),
                server_conn: Some(v1::Connection::default()),
                messages: vec![v1::TcpMessage {
                    from_client: true,
                    content: Bytes::from_static(b"x"),
                    timestamp: 1.0,
                }],
                ..Flow::default()
            };
            let mut value = state::to_state(&flow);
            if let Value::Dict(dict) = &mut value {
                dict.set("comment", "changed");
            }
            let state = convert::value_to_py(py, &value).expect("converts");
            let back = flow_from_py(&state, false).expect("reads");
            assert_eq!(back.comment, "changed");
            assert_eq!(back.messages, flow.messages);
        });
    }
}
