//! The flow of a hook reply, read straight from the state dict the runtime sends back.
//!
//! The dict is `Flow.get_state()` as the runtime slimmed it (`flowtap_host.runtime._slim`):
//! parts the scripts left as sent are None and named in `unchanged` (the proxy keeps its own),
//! and a part no script read is still the [`PartState`](super::parts::PartState) it came as.
//! HTTP flows are read field by field into the protobuf flow; the other kinds go through the
//! flow-file state (`flowtap_flow::state`), which is slower but rare. The rules are those of
//! `flowtap_flow::state::from_state`: bytes are accepted for strings and the other way round,
//! ints for floats, and a field of the wrong type is an error naming it.

use bytes::Bytes;
use flowtap_flow::state::{self, FLOW_FORMAT_VERSION};
use flowtap_proto::v1::{
    self, Address, Connection, Flow, Header, Request, Response, ServerSpec, WebSocketData,
    WebSocketMessage,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::convert;
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

/// A field of the wrong type or shape, named by its path (as `flowtap_flow::state` does).
#[derive(Debug)]
enum FieldError {
    At { path: String, message: String },
    Plain(String),
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::At { path, message } => write!(f, "invalid flow state at {path}: {message}"),
            Self::Plain(message) => f.write_str(message),
        }
    }
}

/// A state dict and its path, for errors (built only when one happens).
struct Fields<'py> {
    dict: Bound<'py, PyDict>,
    path: &'static str,
}

impl<'py> Fields<'py> {
    fn error(&self, key: &str, message: impl Into<String>) -> FieldError {
        FieldError::At {
            path: format!("{}.{key}", self.path),
            message: message.into(),
        }
    }

    fn get(&self, key: &str) -> Option<Bound<'py, PyAny>> {
        self.dict.get_item(key).ok().flatten()
    }

    /// None for a missing key or a None value.
    fn optional(&self, key: &str) -> Option<Bound<'py, PyAny>> {
        self.get(key).filter(|v| !v.is_none())
    }

    fn required(&self, key: &str) -> Result<Bound<'py, PyAny>, FieldError> {
        self.get(key).ok_or_else(|| self.error(key, "missing"))
    }

    fn nested(
        &self,
        value: &Bound<'py, PyAny>,
        key: &'static str,
    ) -> Result<Fields<'py>, FieldError> {
        let dict = value
            .cast::<PyDict>()
            .map_err(|_| self.error(key, "expected a dict"))?;
        Ok(Fields {
            dict: dict.clone(),
            path: nested_path(self.path, key),
        })
    }

    fn opt_dict(&self, key: &'static str) -> Result<Option<Fields<'py>>, FieldError> {
        self.optional(key).map(|v| self.nested(&v, key)).transpose()
    }

    fn read<T>(
        &self,
        key: &str,
        convert: impl FnOnce(&Bound<'py, PyAny>) -> Result<T, &'static str>,
    ) -> Result<T, FieldError> {
        convert(&self.required(key)?).map_err(|m| self.error(key, m))
    }

    fn read_opt<T>(
        &self,
        key: &str,
        convert: impl FnOnce(&Bound<'py, PyAny>) -> Result<T, &'static str>,
    ) -> Result<Option<T>, FieldError> {
        self.optional(key)
            .map(|v| convert(&v).map_err(|m| self.error(key, m)))
            .transpose()
    }

    fn string(&self, key: &str) -> Result<String, FieldError> {
        self.read(key, as_string)
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, FieldError> {
        self.read_opt(key, as_string)
    }

    fn bytes(&self, key: &str) -> Result<Bytes, FieldError> {
        self.read(key, as_bytes)
    }

    fn opt_bytes(&self, key: &str) -> Result<Option<Bytes>, FieldError> {
        self.read_opt(key, as_bytes)
    }

    fn int(&self, key: &str) -> Result<i64, FieldError> {
        self.read(key, as_int)
    }

    fn uint(&self, key: &str) -> Result<u32, FieldError> {
        let i = self.int(key)?;
        u32::try_from(i).map_err(|_| self.error(key, format!("{i} is out of range")))
    }

    fn opt_uint(&self, key: &str) -> Result<Option<u32>, FieldError> {
        match self.read_opt(key, as_int)? {
            None => Ok(None),
            Some(i) => u32::try_from(i)
                .map(Some)
                .map_err(|_| self.error(key, format!("{i} is out of range"))),
        }
    }

    fn opt_float(&self, key: &str) -> Result<Option<f64>, FieldError> {
        self.read_opt(key, as_float)
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        self.read_opt(key, as_bool)
    }

    /// The items of a list (or tuple); a missing key or None gives none.
    fn items<T>(
        &self,
        key: &str,
        mut convert: impl FnMut(&Bound<'py, PyAny>) -> Result<T, &'static str>,
    ) -> Result<Vec<T>, FieldError> {
        let Some(value) = self.optional(key) else {
            return Ok(Vec::new());
        };
        let items = list_items(&value).ok_or_else(|| self.error(key, "expected a list"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| convert(item).map_err(|m| self.error(&format!("{key}[{i}]"), m)))
            .collect()
    }

    fn headers(&self, key: &str) -> Result<Vec<Header>, FieldError> {
        self.items(key, |pair| match list_items(pair).as_deref() {
            Some([name, value]) => Ok(Header {
                name: as_bytes(name)?,
                value: as_bytes(value)?,
            }),
            _ => Err("expected [name, value]"),
        })
    }

    fn trailers(&self) -> Result<Option<v1::Headers>, FieldError> {
        match self.optional("trailers") {
            None => Ok(None),
            Some(_) => Ok(Some(v1::Headers {
                fields: self.headers("trailers")?,
            })),
        }
    }

    /// `[host, port]`, or up to four elements for IPv6 (flowinfo and scope id are dropped).
    fn address(&self, key: &str) -> Result<Option<Address>, FieldError> {
        match self.optional(key) {
            None => Ok(None),
            Some(value) => address_of(&value).map_err(|m| self.error(key, m)),
        }
    }
}

fn nested_path(parent: &str, key: &'static str) -> &'static str {
    match (parent, key) {
        ("flow", "error") => "flow.error",
        ("flow", "client_conn") => "flow.client_conn",
        ("flow", "server_conn") => "flow.server_conn",
        ("flow", "request") => "flow.request",
        ("flow", "response") => "flow.response",
        ("flow", "websocket") => "flow.websocket",
        _ => key,
    }
}

fn address_of(value: &Bound<'_, PyAny>) -> Result<Option<Address>, String> {
    if value.is_none() {
        return Ok(None);
    }
    match list_items(value) {
        Some(items) if (2..=4).contains(&items.len()) => {
            let port = as_int(&items[1])?;
            Ok(Some(Address {
                host: as_string(&items[0])?,
                port: u32::try_from(port).map_err(|_| format!("port {port} is out of range"))?,
            }))
        }
        _ => Err("expected [host, port]".into()),
    }
}

/// The items of a list or tuple.
fn list_items<'py>(value: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = value.cast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    }
}

fn as_string(value: &Bound<'_, PyAny>) -> Result<String, &'static str> {
    if let Ok(s) = value.cast::<PyString>() {
        return s
            .to_str()
            .map(str::to_owned)
            .map_err(|_| "expected a string");
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        // Old files wrote strings as bytes; Python decodes them with backslashreplace.
        return Ok(String::from_utf8_lossy(b.as_bytes()).into_owned());
    }
    Err("expected a string")
}

fn as_bytes(value: &Bound<'_, PyAny>) -> Result<Bytes, &'static str> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return s
            .to_str()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .map_err(|_| "expected bytes");
    }
    Err("expected bytes")
}

fn as_int(value: &Bound<'_, PyAny>) -> Result<i64, &'static str> {
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(i64::from(b.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        return value.extract::<i64>().map_err(|_| "expected an integer");
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        let f = f.value();
        if f.fract() == 0.0 {
            return Ok(f as i64);
        }
    }
    Err("expected an integer")
}

fn as_float(value: &Bound<'_, PyAny>) -> Result<f64, &'static str> {
    if let Ok(f) = value.cast::<PyFloat>() {
        return Ok(f.value());
    }
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        return value
            .extract::<i64>()
            .map(|i| i as f64)
            .map_err(|_| "expected a float");
    }
    Err("expected a float")
}

fn as_bool(value: &Bound<'_, PyAny>) -> Result<bool, &'static str> {
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(b.is_true());
    }
    if value.is_instance_of::<PyInt>() {
        return value
            .extract::<i64>()
            .map(|i| i != 0)
            .map_err(|_| "expected a bool");
    }
    Err("expected a bool")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::parts::tests::http_flow;
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
            let state = parts::flow_to_py(py, flow.clone()).expect("converts");
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
