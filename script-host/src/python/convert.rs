//! Values between Rust and Python: tnetstring values, the flows of replies (through
//! `flowtap_flow::state`) and option values. The flow state of a call is built in `parts`.

use bytes::Bytes;
use flowtap_flow::state;
use flowtap_flow::tnetstring::{Dict, Value};
use flowtap_proto::v1::{self, Flow, option_value::Kind};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::parts::{self, Part};

/// A tnetstring value as the Python object `tnetstring.load` would give.
pub(super) fn value_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    value_to_py_in(py, None, value)
}

/// Where `get_state()` gives tuples, so that a state made here compares equal to the state the
/// Python objects give back when nothing changed (the runtime's change test).
#[derive(Clone, Copy)]
enum Shape {
    /// A tuple of tuples: headers, trailers.
    Fields,
    /// A list of rows that are tuples: TCP and WebSocket messages.
    TupleRows,
    /// A tuple: an address.
    Tuple,
    /// `via`: `(scheme, (host, port))`.
    Via,
}

fn shape_of(key: &Value) -> Option<Shape> {
    match key.as_str()? {
        "headers" | "trailers" => Some(Shape::Fields),
        "messages" => Some(Shape::TupleRows),
        "peername" | "sockname" | "address" => Some(Shape::Tuple),
        "via" => Some(Shape::Via),
        _ => None,
    }
}

fn value_to_py_in<'py>(
    py: Python<'py>,
    shape: Option<Shape>,
    value: &Value,
) -> PyResult<Bound<'py, PyAny>> {
    if let (Some(shape), Value::List(items)) = (shape, value) {
        return match shape {
            Shape::Tuple => tuple_of(py, items, None),
            Shape::Via => tuple_of(py, items, Some(Shape::Tuple)),
            Shape::Fields => tuple_of(py, items, Some(Shape::Tuple)),
            Shape::TupleRows => {
                let list = PyList::empty(py);
                for item in items {
                    match item {
                        Value::List(row) => list.append(tuple_of(py, row, None)?)?,
                        other => list.append(value_to_py(py, other)?)?,
                    }
                }
                Ok(list.into_any())
            }
        };
    }
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::Text(s) => PyString::new(py, s).into_any(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Dict(dict) => {
            let out = PyDict::new(py);
            for (k, v) in dict.iter() {
                let value = value_to_py_in(py, shape_of(k), v)?;
                let key = match k {
                    Value::Text(text) => interned(py, text),
                    other => value_to_py(py, other)?,
                };
                // A list cannot be a dict key in Python; mitmproxy's keys were tuples then.
                let key = match key.cast::<PyList>() {
                    Ok(list) => PyTuple::new(py, list.iter())?.into_any(),
                    Err(_) => key,
                };
                out.set_item(key, value)?;
            }
            out.into_any()
        }
    })
}

/// How many distinct dict keys [`interned`] keeps (the state's own keys are about 60; the rest
/// of the room is for metadata keys).
const INTERNED_KEYS: usize = 512;

thread_local! {
    /// The Python strings of dict keys seen before: a flow state has the same keys every time,
    /// and a cached string is neither allocated nor hashed again.
    static KEYS: std::cell::RefCell<std::collections::HashMap<String, Py<PyString>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// `text` as a Python string, cached while the cache has room.
fn interned<'py>(py: Python<'py>, text: &str) -> Bound<'py, PyAny> {
    KEYS.with_borrow_mut(|keys| {
        if let Some(key) = keys.get(text) {
            return key.bind(py).clone().into_any();
        }
        let key = PyString::intern(py, text);
        if keys.len() < INTERNED_KEYS {
            keys.insert(text.to_owned(), key.clone().unbind());
        }
        key.into_any()
    })
}

/// A list as a tuple; `inner` shapes its elements (for `via`).
fn tuple_of<'py>(
    py: Python<'py>,
    items: &[Value],
    inner: Option<Shape>,
) -> PyResult<Bound<'py, PyAny>> {
    let elements = items
        .iter()
        .map(|item| value_to_py_in(py, inner, item))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyTuple::new(py, elements)?.into_any())
}

/// A Python object as a tnetstring value; an error names what cannot be serialized.
pub(super) fn py_to_value(obj: &Bound<'_, PyAny>) -> Result<Value, String> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.cast::<PyInt>().is_ok() {
        return obj
            .extract::<i64>()
            .map(Value::Int)
            .map_err(|_| "an integer does not fit in 64 bits".to_string());
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(Bytes::copy_from_slice(b.as_bytes())));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_str()
            .map(|s| Value::Text(s.to_owned()))
            .map_err(|e| e.to_string());
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list
            .iter()
            .map(|x| py_to_value(&x))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple
            .iter()
            .map(|x| py_to_value(&x))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List);
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut out = Dict::new();
        for (k, v) in dict.iter() {
            out.insert(py_to_value(&k)?, py_to_value(&v)?);
        }
        return Ok(Value::Dict(out));
    }
    let type_name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Err(format!(
        "a {type_name} cannot be serialized into flow state"
    ))
}

/// The flow of a reply to a flow hook, through the flow-file state (for flows other than HTTP,
/// see `reply`). The runtime leaves out what the scripts did not change
/// (`unchanged` names the parts, see `flowtap_host.runtime._slim`): those come back as None,
/// which the proxy reads as "keep yours". A part no script read comes back as the
/// [`PartState`](super::parts::PartState) that was sent, and is taken from it as it is.
pub(super) fn flow_from_py(obj: &Bound<'_, PyAny>, live: bool) -> Result<Flow, String> {
    let dict = obj
        .cast::<PyDict>()
        .map_err(|_| "a flow state must be a dict".to_string())?;
    let mut state = Dict::new();
    let mut unread = Vec::new();
    for (k, v) in dict.iter() {
        let key = py_to_value(&k)?;
        match parts::part_of(&v) {
            Some(part) => {
                // The state parser wants the part: a placeholder, replaced below.
                let placeholder = key
                    .as_str()
                    .and_then(|name| dict_get(placeholder_state(), name))
                    .cloned()
                    .unwrap_or(Value::Null);
                state.insert(key, placeholder);
                unread.push(part);
            }
            None => state.insert(key, py_to_value(&v)?),
        }
    }
    let mut unchanged = Vec::new();
    if let Some(Value::List(names)) = state.remove("unchanged") {
        for name in names {
            let Some(name) = name.as_str().map(str::to_owned) else {
                continue;
            };
            // The state parser wants these parts: a placeholder, dropped below.
            if matches!(name.as_str(), "client_conn" | "server_conn" | "request")
                && let Some(placeholder) = dict_get(placeholder_state(), &name)
            {
                state.set(&name, placeholder.clone());
            }
            unchanged.push(name);
        }
    }
    let mut flow = state::from_state(&Value::Dict(state)).map_err(|e| e.to_string())?;
    for part in unread {
        match part {
            Part::Client(conn) => flow.client_conn = Some(conn),
            Part::Server(conn) => flow.server_conn = Some(conn),
            Part::Request(request) => flow.request = Some(request),
            Part::Response(response) => flow.response = Some(response),
        }
    }
    for name in &unchanged {
        match name.as_str() {
            "client_conn" => flow.client_conn = None,
            "server_conn" => flow.server_conn = None,
            "request" => flow.request = None,
            _ => {}
        }
    }
    flow.live = live;
    Ok(flow)
}

/// The state of an empty HTTP flow (its connections and request stand in for left-out ones).
fn placeholder_state() -> &'static Value {
    static STATE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    STATE.get_or_init(|| {
        state::to_state(&Flow {
            r#type: "http".into(),
            request: Some(v1::Request::default()),
            ..Flow::default()
        })
    })
}

fn dict_get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_dict().and_then(|d| d.get(key))
}

/// An option value as the Python value of its type.
pub(super) fn option_to_py<'py>(
    py: Python<'py>,
    value: Option<&v1::OptionValue>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value.and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::Null(_)) => py.None().into_bound(py),
        Some(Kind::Bool(b)) => PyBool::new(py, *b).to_owned().into_any(),
        Some(Kind::Int(i)) => i.into_pyobject(py)?.into_any(),
        Some(Kind::Float(f)) => PyFloat::new(py, *f).into_any(),
        Some(Kind::Text(s)) => PyString::new(py, s).into_any(),
        Some(Kind::List(list)) => PyList::new(py, &list.items)?.into_any(),
    })
}

/// A Python option value (None, bool, int, float, str, list of str) as an `OptionValue`.
pub(super) fn option_from_py(obj: &Bound<'_, PyAny>) -> v1::OptionValue {
    let kind = if obj.is_none() {
        Kind::Null(true)
    } else if let Ok(b) = obj.cast::<PyBool>() {
        Kind::Bool(b.is_true())
    } else if let Ok(i) = obj.extract::<i64>() {
        Kind::Int(i)
    } else if let Ok(f) = obj.extract::<f64>() {
        Kind::Float(f)
    } else if let Ok(s) = obj.extract::<String>() {
        Kind::Text(s)
    } else if let Ok(items) = obj.extract::<Vec<String>>() {
        Kind::List(v1::StringList { items })
    } else {
        Kind::Text(obj.str().map(|s| s.to_string()).unwrap_or_default())
    };
    v1::OptionValue { kind: Some(kind) }
}
