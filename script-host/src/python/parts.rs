//! The flow state a hook call hands to Python, built straight from the protobuf flow.
//!
//! The large parts of a flow (its connections, the HTTP request and response) go over unbuilt:
//! a [`PartState`] holds the protobuf message and builds the part's state dict only when asked
//! (`mitmproxy.flow._Part` asks when a script first reads the part). Most hooks read one part
//! or none, so most of a flow is never turned into Python objects, and an unread part comes
//! back in the reply as the very object that was sent (the runtime's change test sees it by
//! identity; [`part_of`] gives the message back to the reply).
//!
//! The dicts have exactly the shape `get_state()` gives (tuples where it has tuples), so that
//! the state as sent is the "before" of the runtime's change test.

use bytes::Bytes;
use flowtap_flow::state;
use flowtap_proto::v1::{self, Address, Connection, Flow, Header, Request, Response};
use pyo3::basic::CompareOp;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use super::convert::value_to_py;

/// A part of a flow as the proxy sent it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Part {
    /// `client_conn`.
    Client(Connection),
    /// `server_conn`.
    Server(Connection),
    /// An HTTP flow's `request`.
    Request(Request),
    /// An HTTP flow's `response`.
    Response(Response),
}

/// The state of one flow part, built into a dict on first use (then kept). To Python it is a
/// read-only mapping equal to that dict; `state()` gives the dict itself.
#[pyclass(module = "flowtap_host", frozen)]
pub(super) struct PartState {
    part: Part,
    /// An HTTP message's body that came in pieces (the message's own `content` is then absent):
    /// the dict's `content` is this very object.
    content: Option<Py<PyBytes>>,
    state: PyOnceLock<Py<PyDict>>,
}

impl PartState {
    fn new(part: Part, content: Option<Py<PyBytes>>) -> Self {
        Self {
            part,
            content,
            state: PyOnceLock::new(),
        }
    }

    fn dict<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyDict>> {
        self.state
            .get_or_try_init(py, || {
                let dict = part_to_py(py, &self.part)?;
                if let Some(content) = &self.content {
                    dict.set_item(intern!(py, "content"), content.bind(py))?;
                }
                Ok(dict.unbind())
            })
            .map(|dict| dict.bind(py))
    }
}

#[pymethods]
impl PartState {
    /// The state dict (the same dict on every call).
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.dict(py).cloned()
    }

    /// An HTTP message's body length without building its state dict (None for connections
    /// and for a message without a body).
    #[getter]
    fn content_length(&self, py: Python<'_>) -> Option<usize> {
        if let Some(content) = &self.content {
            return Some(content.bind(py).as_bytes().len());
        }
        match &self.part {
            Part::Request(r) => r.content.as_ref().map(Bytes::len),
            Part::Response(r) => r.content.as_ref().map(Bytes::len),
            Part::Client(_) | Part::Server(_) => None,
        }
    }

    /// A connection's `id` without building its state dict; None for other parts.
    #[getter]
    fn connection_id(&self) -> Option<String> {
        match &self.part {
            Part::Client(c) | Part::Server(c) => Some(c.id.clone()),
            Part::Request(_) | Part::Response(_) => None,
        }
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.dict(py)?.as_any().get_item(key)
    }

    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.dict(py)?.get_item(key)? {
            Some(value) => value,
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.dict(py)?.call_method0(intern!(py, "keys"))
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.dict(py)?.call_method0(intern!(py, "values"))
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.dict(py)?.call_method0(intern!(py, "items"))
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.dict(py)?.as_any().try_iter().map(Bound::into_any)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.dict(py)?.len())
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.dict(py)?.contains(key)
    }

    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let equal = if let Ok(other) = other.cast::<PartState>() {
            let other = other.get();
            let same_content = match (&self.content, &other.content) {
                (None, None) => true,
                (Some(a), Some(b)) => a.bind(py).as_bytes() == b.bind(py).as_bytes(),
                _ => false,
            };
            self.part == other.part && same_content
        } else if other.is_instance_of::<PyDict>() {
            self.dict(py)?.as_any().eq(other)?
        } else {
            return Ok(py.NotImplemented());
        };
        let result = match op {
            CompareOp::Eq => equal,
            CompareOp::Ne => !equal,
            _ => return Ok(py.NotImplemented()),
        };
        Ok(result.into_pyobject(py)?.to_owned().into_any().unbind())
    }

    // Immutable, so copies may share it; pickled as its dict.
    fn __copy__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __deepcopy__<'py>(slf: PyRef<'py, Self>, _memo: &Bound<'py, PyAny>) -> PyRef<'py, Self> {
        slf
    }

    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyType>, (Bound<'py, PyDict>,))> {
        Ok((py.get_type::<PyDict>(), (self.dict(py)?.copy()?,)))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("PartState({})", self.dict(py)?.repr()?))
    }
}

/// The message of a [`PartState`] sent back unread. A response comes without its body: the
/// proxy keeps its own body when the reply has none.
pub(super) fn part_of(obj: &Bound<'_, PyAny>) -> Option<Part> {
    let part = obj.cast::<PartState>().ok()?;
    Some(match &part.get().part {
        Part::Request(request) => Part::Request(Request {
            content: None,
            ..request.clone()
        }),
        Part::Response(response) => Part::Response(Response {
            content: None,
            ..response.clone()
        }),
        other => other.clone(),
    })
}

fn part_to_py<'py>(py: Python<'py>, part: &Part) -> PyResult<Bound<'py, PyDict>> {
    match part {
        Part::Client(conn) => connection_to_py(py, conn, true),
        Part::Server(conn) => connection_to_py(py, conn, false),
        Part::Request(request) => request_to_py(py, request),
        Part::Response(response) => response_to_py(py, response),
    }
}

/// The state dict of a flow for a flow hook, with `live` added (mitmproxy's state lacks it).
/// Its connections and HTTP messages are [`PartState`]s.
/// `bodies` are the call's bodies that came in pieces.
pub(super) fn flow_to_py(
    py: Python<'_>,
    mut flow: Flow,
    bodies: Vec<(v1::BodyKind, super::Body)>,
) -> PyResult<Bound<'_, PyDict>> {
    let mut request_body = None;
    let mut response_body = None;
    for (kind, body) in bodies {
        match kind {
            v1::BodyKind::Request => request_body = Some(body.into_bytes()),
            v1::BodyKind::Response => response_body = Some(body.into_bytes()),
            v1::BodyKind::Unspecified => {}
        }
    }
    let d = PyDict::new(py);
    d.set_item(intern!(py, "version"), state::FLOW_FORMAT_VERSION)?;
    d.set_item(intern!(py, "type"), &flow.r#type)?;
    d.set_item(intern!(py, "id"), &flow.id)?;
    let error = match &flow.error {
        Some(error) => error_to_py(py, error)?.into_any(),
        None => py.None().into_bound(py),
    };
    d.set_item(intern!(py, "error"), error)?;
    let client = flow.client_conn.take().unwrap_or_default();
    let server = flow.server_conn.take().unwrap_or_default();
    d.set_item(
        intern!(py, "client_conn"),
        lazy(py, Part::Client(client), None)?,
    )?;
    d.set_item(
        intern!(py, "server_conn"),
        lazy(py, Part::Server(server), None)?,
    )?;
    d.set_item(intern!(py, "intercepted"), flow.intercepted)?;
    d.set_item(intern!(py, "is_replay"), &flow.is_replay)?;
    d.set_item(intern!(py, "marked"), &flow.marked)?;
    let metadata = state::metadata_to_state(flow.metadata.as_ref());
    d.set_item(intern!(py, "metadata"), value_to_py(py, &metadata)?)?;
    d.set_item(intern!(py, "comment"), &flow.comment)?;
    d.set_item(intern!(py, "timestamp_created"), flow.timestamp_created)?;
    let backup = match flow.backup.as_deref() {
        Some(backup) => value_to_py(py, &state::to_state(backup))?,
        None => py.None().into_bound(py),
    };
    d.set_item(intern!(py, "backup"), backup)?;
    match flow.r#type.as_str() {
        "tcp" | "udp" => {
            let messages = PyList::empty(py);
            for m in &flow.messages {
                messages.append((m.from_client, bytes(py, &m.content), m.timestamp))?;
            }
            d.set_item(intern!(py, "messages"), messages)?;
        }
        "dns" => dns_to_py(py, &d, &mut flow)?,
        _ => {
            let request = flow.request.take().unwrap_or_default();
            let request = lazy(py, Part::Request(request), request_body)?;
            d.set_item(intern!(py, "request"), request)?;
            let response = match flow.response.take() {
                Some(response) => lazy(py, Part::Response(response), response_body)?.into_any(),
                None => py.None().into_bound(py),
            };
            d.set_item(intern!(py, "response"), response)?;
            let websocket = match &flow.websocket {
                Some(websocket) => websocket_to_py(py, websocket)?.into_any(),
                None => py.None().into_bound(py),
            };
            d.set_item(intern!(py, "websocket"), websocket)?;
        }
    }
    d.set_item(intern!(py, "live"), flow.live)?;
    Ok(d)
}

fn lazy(
    py: Python<'_>,
    part: Part,
    content: Option<Py<PyBytes>>,
) -> PyResult<Bound<'_, PartState>> {
    Bound::new(py, PartState::new(part, content))
}

/// A DNS flow's `request` and `response`, through the flow-file state (not a hot path).
fn dns_to_py(py: Python<'_>, d: &Bound<'_, PyDict>, flow: &mut Flow) -> PyResult<()> {
    let messages = Flow {
        r#type: "dns".into(),
        dns_request: flow.dns_request.take(),
        dns_response: flow.dns_response.take(),
        ..Flow::default()
    };
    let full = state::to_state(&messages);
    for name in ["request", "response"] {
        let value = full.as_dict().and_then(|dict| dict.get(name));
        match value {
            Some(value) => d.set_item(name, value_to_py(py, value)?)?,
            None => d.set_item(name, py.None())?,
        }
    }
    Ok(())
}

/// The subject of a connection hook: `{"id", "client_conn", "server_conn"}`, each connection
/// as its state dict or None.
pub(super) fn connection_subject_to_py<'py>(
    py: Python<'py>,
    flow: &Flow,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item(intern!(py, "id"), &flow.id)?;
    let client = match &flow.client_conn {
        Some(conn) => connection_to_py(py, conn, true)?.into_any(),
        None => py.None().into_bound(py),
    };
    out.set_item(intern!(py, "client_conn"), client)?;
    let server = match &flow.server_conn {
        Some(conn) => connection_to_py(py, conn, false)?.into_any(),
        None => py.None().into_bound(py),
    };
    out.set_item(intern!(py, "server_conn"), server)?;
    // `tls_clienthello`: the ClientHello (not part of the connection's state).
    if let Some(client) = flow
        .client_conn
        .as_ref()
        .filter(|c| !c.client_hello.is_empty())
    {
        out.set_item(intern!(py, "client_hello"), bytes(py, &client.client_hello))?;
    }
    // `socks5_auth`: the credentials and `proxyauth`'s verdict (not part of the state either).
    if let Some(auth) = flow
        .client_conn
        .as_ref()
        .and_then(|c| c.socks5_auth.as_ref())
    {
        let data = (&auth.username, &auth.password, auth.valid);
        out.set_item(intern!(py, "socks5_auth"), data)?;
    }
    Ok(out)
}

fn error_to_py<'py>(py: Python<'py>, error: &v1::Error) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "msg"), &error.msg)?;
    d.set_item(intern!(py, "timestamp"), error.timestamp)?;
    Ok(d)
}

/// `connection.Client.get_state()` / `connection.Server.get_state()`: dataclass field order.
fn connection_to_py<'py>(
    py: Python<'py>,
    conn: &Connection,
    client: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(
        intern!(py, "peername"),
        address(py, conn.peername.as_ref())?,
    )?;
    d.set_item(
        intern!(py, "sockname"),
        address(py, conn.sockname.as_ref())?,
    )?;
    d.set_item(intern!(py, "id"), &conn.id)?;
    d.set_item(intern!(py, "transport_protocol"), &conn.transport_protocol)?;
    d.set_item(intern!(py, "error"), &conn.error)?;
    d.set_item(intern!(py, "tls"), conn.tls)?;
    d.set_item(
        intern!(py, "certificate_list"),
        bytes_list(py, &conn.certificate_list)?,
    )?;
    d.set_item(intern!(py, "alpn"), opt_bytes(py, conn.alpn.as_ref()))?;
    d.set_item(
        intern!(py, "alpn_offers"),
        bytes_list(py, &conn.alpn_offers)?,
    )?;
    d.set_item(intern!(py, "cipher"), &conn.cipher)?;
    d.set_item(
        intern!(py, "cipher_list"),
        PyList::new(py, &conn.cipher_list)?,
    )?;
    d.set_item(intern!(py, "tls_version"), &conn.tls_version)?;
    d.set_item(intern!(py, "sni"), &conn.sni)?;
    d.set_item(intern!(py, "timestamp_start"), conn.timestamp_start)?;
    d.set_item(intern!(py, "timestamp_end"), conn.timestamp_end)?;
    d.set_item(intern!(py, "timestamp_tls_setup"), conn.timestamp_tls_setup)?;
    if client {
        d.set_item(
            intern!(py, "mitmcert"),
            opt_bytes(py, conn.mitmcert.as_ref()),
        )?;
        d.set_item(intern!(py, "proxy_mode"), &conn.proxy_mode)?;
    } else {
        d.set_item(intern!(py, "address"), address(py, conn.address.as_ref())?)?;
        d.set_item(intern!(py, "timestamp_tcp_setup"), conn.timestamp_tcp_setup)?;
        let via = match &conn.via {
            Some(via) => PyTuple::new(
                py,
                [
                    PyString::new(py, &via.scheme).into_any(),
                    address(py, via.address.as_ref())?,
                ],
            )?
            .into_any(),
            None => py.None().into_bound(py),
        };
        d.set_item(intern!(py, "via"), via)?;
    }
    Ok(d)
}

/// `http.Request.get_state()`.
fn request_to_py<'py>(py: Python<'py>, r: &Request) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    message_to_py(
        py,
        &d,
        &r.http_version,
        &r.headers,
        r.content.as_ref(),
        r.trailers.as_ref(),
    )?;
    d.set_item(intern!(py, "timestamp_start"), r.timestamp_start)?;
    d.set_item(intern!(py, "timestamp_end"), r.timestamp_end)?;
    d.set_item(intern!(py, "host"), &r.host)?;
    d.set_item(intern!(py, "port"), r.port)?;
    d.set_item(intern!(py, "method"), bytes(py, &r.method))?;
    d.set_item(intern!(py, "scheme"), bytes(py, &r.scheme))?;
    d.set_item(intern!(py, "authority"), bytes(py, &r.authority))?;
    d.set_item(intern!(py, "path"), bytes(py, &r.path))?;
    Ok(d)
}

/// `http.Response.get_state()`.
fn response_to_py<'py>(py: Python<'py>, r: &Response) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    message_to_py(
        py,
        &d,
        &r.http_version,
        &r.headers,
        r.content.as_ref(),
        r.trailers.as_ref(),
    )?;
    d.set_item(intern!(py, "timestamp_start"), r.timestamp_start)?;
    d.set_item(intern!(py, "timestamp_end"), r.timestamp_end)?;
    d.set_item(intern!(py, "status_code"), r.status_code)?;
    d.set_item(intern!(py, "reason"), bytes(py, &r.reason))?;
    Ok(d)
}

/// The keys requests and responses share, in `get_state()` order (up to the timestamps).
fn message_to_py(
    py: Python<'_>,
    d: &Bound<'_, PyDict>,
    http_version: &Bytes,
    headers: &[Header],
    content: Option<&Bytes>,
    trailers: Option<&v1::Headers>,
) -> PyResult<()> {
    d.set_item(intern!(py, "http_version"), bytes(py, http_version))?;
    d.set_item(intern!(py, "headers"), fields(py, headers)?)?;
    d.set_item(intern!(py, "content"), opt_bytes(py, content))?;
    let trailers = match trailers {
        Some(trailers) => fields(py, &trailers.fields)?.into_any(),
        None => py.None().into_bound(py),
    };
    d.set_item(intern!(py, "trailers"), trailers)
}

/// `websocket.WebSocketData.get_state()`: messages as tuples.
fn websocket_to_py<'py>(py: Python<'py>, w: &v1::WebSocketData) -> PyResult<Bound<'py, PyDict>> {
    let messages = PyList::empty(py);
    for m in &w.messages {
        messages.append((
            m.r#type,
            m.from_client,
            bytes(py, &m.content),
            m.timestamp,
            m.dropped,
            m.injected,
        ))?;
    }
    let d = PyDict::new(py);
    d.set_item(intern!(py, "messages"), messages)?;
    d.set_item(intern!(py, "closed_by_client"), w.closed_by_client)?;
    d.set_item(intern!(py, "close_code"), w.close_code)?;
    d.set_item(intern!(py, "close_reason"), &w.close_reason)?;
    d.set_item(intern!(py, "timestamp_end"), w.timestamp_end)?;
    Ok(d)
}

/// Header fields as `get_state()` has them: a tuple of `(name, value)` byte tuples.
fn fields<'py>(py: Python<'py>, headers: &[Header]) -> PyResult<Bound<'py, PyTuple>> {
    let pairs = headers
        .iter()
        .map(|h| PyTuple::new(py, [bytes(py, &h.name), bytes(py, &h.value)]))
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, pairs)
}

fn address<'py>(py: Python<'py>, address: Option<&Address>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match address {
        Some(a) => (a.host.as_str(), a.port).into_pyobject(py)?.into_any(),
        None => py.None().into_bound(py),
    })
}

fn bytes<'py>(py: Python<'py>, b: &Bytes) -> Bound<'py, PyBytes> {
    PyBytes::new(py, b)
}

fn opt_bytes<'py>(py: Python<'py>, b: Option<&Bytes>) -> Bound<'py, PyAny> {
    match b {
        Some(b) => PyBytes::new(py, b).into_any(),
        None => py.None().into_bound(py),
    }
}

fn bytes_list<'py>(py: Python<'py>, items: &[Bytes]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, items.iter().map(|b| PyBytes::new(py, b)))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::python::convert;
    use flowtap_proto::v1::{ServerSpec, TcpMessage, WebSocketMessage};

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    fn address(host: &str, port: u32) -> Option<Address> {
        Some(Address {
            host: host.into(),
            port,
        })
    }

    pub(in crate::python) fn connection(id: &str) -> Connection {
        Connection {
            id: id.into(),
            peername: address("127.0.0.1", 50000),
            sockname: address("::1", 8080),
            transport_protocol: "tcp".into(),
            error: Some("reset".into()),
            tls: true,
            certificate_list: vec![Bytes::from_static(b"DER")],
            alpn: Some(Bytes::from_static(b"h2")),
            alpn_offers: vec![Bytes::from_static(b"h2"), Bytes::from_static(b"http/1.1")],
            cipher: Some("TLS_AES_128_GCM_SHA256".into()),
            cipher_list: vec!["A".into(), "B".into()],
            tls_version: Some("TLSv1.3".into()),
            sni: Some("example.com".into()),
            timestamp_start: Some(1.5),
            timestamp_end: None,
            timestamp_tls_setup: Some(1.75),
            mitmcert: Some(Bytes::from_static(b"PEM")),
            proxy_mode: "regular".into(),
            address: address("example.com", 443),
            timestamp_tcp_setup: Some(1.6),
            via: Some(ServerSpec {
                scheme: "http".into(),
                address: address("upstream", 3128),
            }),
            client_hello: Bytes::new(),
            socks5_auth: None,
        }
    }

    /// An HTTP flow with every kind of field set.
    pub(in crate::python) fn http_flow() -> Flow {
        let metadata = state::value_to_proto(&flowtap_flow::tnetstring::Value::Dict(
            [(
                flowtap_flow::tnetstring::Value::from("k"),
                flowtap_flow::tnetstring::Value::List(vec![1i64.into(), "x".into()]),
            )]
            .into_iter()
            .collect(),
        ));
        let Some(v1::value::Kind::Dict(metadata)) = metadata.kind else {
            unreachable!("a dict value")
        };
        Flow {
            id: "f1".into(),
            r#type: "http".into(),
            error: Some(v1::Error {
                msg: "Connection killed.".into(),
                timestamp: 3.0,
            }),
            client_conn: Some(connection("c")),
            server_conn: Some(Connection {
                via: Some(ServerSpec {
                    scheme: "https".into(),
                    address: None,
                }),
                ..connection("s")
            }),
            intercepted: true,
            is_replay: Some("request".into()),
            marked: ":default:".into(),
            metadata: Some(metadata),
            comment: "hi".into(),
            timestamp_created: 2.0,
            backup: Some(Box::new(Flow {
                id: "f1".into(),
                r#type: "http".into(),
                request: Some(Request::default()),
                ..Flow::default()
            })),
            live: true,
            request: Some(Request {
                http_version: Bytes::from_static(b"HTTP/2.0"),
                headers: vec![header("Host", "example.com"), header("a", "1")],
                content: Some(Bytes::from_static(b"body")),
                trailers: Some(v1::Headers {
                    fields: vec![header("t", "2")],
                }),
                timestamp_start: 1.0,
                timestamp_end: None,
                host: "example.com".into(),
                port: 443,
                method: Bytes::from_static(b"POST"),
                scheme: Bytes::from_static(b"https"),
                authority: Bytes::from_static(b"example.com"),
                path: Bytes::from_static(b"/x?y"),
                stream: v1::StreamMode::Buffer.into(),
            }),
            response: Some(Response {
                http_version: Bytes::from_static(b"HTTP/2.0"),
                headers: vec![header("content-type", "text/plain")],
                content: None,
                trailers: None,
                timestamp_start: 1.25,
                timestamp_end: Some(1.5),
                status_code: 404,
                reason: Bytes::from_static(b"Not Found"),
                stream: v1::StreamMode::Buffer.into(),
            }),
            websocket: Some(v1::WebSocketData {
                messages: vec![WebSocketMessage {
                    r#type: 1,
                    from_client: true,
                    content: Bytes::from_static(b"hello"),
                    timestamp: 4.0,
                    dropped: false,
                    injected: true,
                }],
                closed_by_client: Some(false),
                close_code: Some(1000),
                close_reason: None,
                timestamp_end: Some(5.0),
            }),
            ..Flow::default()
        }
    }

    /// The state built here equals the flow-file state converted as a whole (the way the
    /// worker built it before parts were lazy), part for part.
    fn assert_same_state(flow: Flow) {
        Python::attach(|py| {
            let mut full = state::to_state(&flow);
            if let flowtap_flow::tnetstring::Value::Dict(dict) = &mut full {
                dict.set("live", flow.live);
            }
            let full = convert::value_to_py(py, &full).expect("converts");
            let full = full.cast::<PyDict>().expect("a dict");
            let lazy = flow_to_py(py, flow, Vec::new()).expect("converts");
            assert_eq!(lazy.len(), full.len());
            for (key, value) in lazy.iter() {
                let expected = full.get_item(&key).expect("get").expect("same keys");
                let value = match value.cast::<PartState>() {
                    Ok(part) => part.get().state(py).expect("state").into_any(),
                    Err(_) => value,
                };
                assert!(
                    value.eq(&expected).expect("compares"),
                    "{key}: {value} != {expected}"
                );
                assert_eq!(
                    value.get_type().name().expect("name").to_string(),
                    expected.get_type().name().expect("name").to_string(),
                    "{key}"
                );
            }
        });
    }

    #[test]
    fn http_state_is_the_flow_file_state() {
        assert_same_state(http_flow());
        assert_same_state(Flow {
            r#type: "http".into(),
            ..Flow::default()
        });
    }

    #[test]
    fn tcp_and_dns_states_are_the_flow_file_state() {
        assert_same_state(Flow {
            id: "t".into(),
            r#type: "tcp".into(),
            client_conn: Some(connection("c")),
            messages: vec![TcpMessage {
                from_client: true,
                content: Bytes::from_static(b"x"),
                timestamp: 1.0,
            }],
            ..Flow::default()
        });
        assert_same_state(Flow {
            id: "d".into(),
            r#type: "dns".into(),
            dns_request: Some(v1::DnsMessage {
                id: 7,
                query: true,
                questions: vec![v1::DnsQuestion {
                    name: "example.com".into(),
                    r#type: 1,
                    class: 1,
                }],
                ..v1::DnsMessage::default()
            }),
            ..Flow::default()
        });
    }

    #[test]
    fn parts_sent_back_unread_are_the_parts_sent_without_bodies() {
        Python::attach(|py| {
            let flow = http_flow();
            let state = flow_to_py(py, flow.clone(), Vec::new()).expect("converts");
            state.set_item("comment", "changed").expect("set");
            let back = convert::flow_from_py(state.as_any(), true).expect("parses");
            assert_eq!(back.comment, "changed");
            assert_eq!(back.client_conn, flow.client_conn);
            assert_eq!(back.server_conn, flow.server_conn);
            let request = flow.request.clone().expect("request");
            assert_eq!(
                back.request,
                Some(Request {
                    content: None,
                    ..request
                })
            );
            assert_eq!(back.response, flow.response);
            assert_eq!(back.websocket, flow.websocket);
        });
    }

    #[test]
    fn a_part_is_a_mapping_equal_to_its_state() {
        Python::attach(|py| {
            let state = flow_to_py(py, http_flow(), Vec::new()).expect("converts");
            let request = state.get_item("request").expect("get").expect("request");
            let dict = request.call_method0("state").expect("state");
            assert!(request.eq(&dict).expect("compares"));
            assert!(dict.eq(&request).expect("compares"));
            assert_eq!(
                request
                    .get_item("port")
                    .expect("item")
                    .extract::<u32>()
                    .expect("int"),
                443
            );
            let copied = py
                .import("copy")
                .and_then(|copy| copy.call_method1("deepcopy", (&request,)))
                .expect("deepcopy");
            assert!(copied.is(&request));
            let pickled = py
                .import("pickle")
                .and_then(|pickle| {
                    let data = pickle.call_method1("dumps", (&request,))?;
                    pickle.call_method1("loads", (data,))
                })
                .expect("pickles");
            assert!(pickled.is_instance_of::<PyDict>() && pickled.eq(&dict).expect("compares"));
            let other = state.get_item("response").expect("get").expect("response");
            assert!(!request.eq(&other).expect("compares"));
        });
    }
}
