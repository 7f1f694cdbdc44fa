//! Typed reads of the fields of a Python state dict, with errors that name the field the way
//! `flowtap_flow::state` names it (the path is formatted only when there is an error).
//!
//! The rules are the state parser's: bytes are accepted for strings and the other way round,
//! ints (and bools) for integers, ints for floats, ints for bools; lists and tuples alike.

use bytes::Bytes;
use flowtap_proto::v1::{self, Address, Header};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// A field of the wrong type or shape, named by its path (as `flowtap_flow::state` does).
#[derive(Debug)]
pub(super) enum FieldError {
    /// A field of the state dict.
    At {
        /// Where, e.g. `flow.request.port`.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// Anything else (said in full).
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
pub(super) struct Fields<'py> {
    pub(super) dict: Bound<'py, PyDict>,
    pub(super) path: &'static str,
}

impl<'py> Fields<'py> {
    pub(super) fn error(&self, key: &str, message: impl Into<String>) -> FieldError {
        FieldError::At {
            path: format!("{}.{key}", self.path),
            message: message.into(),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<Bound<'py, PyAny>> {
        self.dict.get_item(key).ok().flatten()
    }

    /// None for a missing key or a None value.
    pub(super) fn optional(&self, key: &str) -> Option<Bound<'py, PyAny>> {
        self.get(key).filter(|v| !v.is_none())
    }

    pub(super) fn required(&self, key: &str) -> Result<Bound<'py, PyAny>, FieldError> {
        self.get(key).ok_or_else(|| self.error(key, "missing"))
    }

    pub(super) fn nested(
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

    pub(super) fn opt_dict(&self, key: &'static str) -> Result<Option<Fields<'py>>, FieldError> {
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

    pub(super) fn string(&self, key: &str) -> Result<String, FieldError> {
        self.read(key, as_string)
    }

    pub(super) fn opt_string(&self, key: &str) -> Result<Option<String>, FieldError> {
        self.read_opt(key, as_string)
    }

    pub(super) fn bytes(&self, key: &str) -> Result<Bytes, FieldError> {
        self.read(key, as_bytes)
    }

    pub(super) fn opt_bytes(&self, key: &str) -> Result<Option<Bytes>, FieldError> {
        self.read_opt(key, as_bytes)
    }

    pub(super) fn int(&self, key: &str) -> Result<i64, FieldError> {
        self.read(key, as_int)
    }

    pub(super) fn uint(&self, key: &str) -> Result<u32, FieldError> {
        let i = self.int(key)?;
        u32::try_from(i).map_err(|_| self.error(key, format!("{i} is out of range")))
    }

    pub(super) fn opt_uint(&self, key: &str) -> Result<Option<u32>, FieldError> {
        match self.read_opt(key, as_int)? {
            None => Ok(None),
            Some(i) => u32::try_from(i)
                .map(Some)
                .map_err(|_| self.error(key, format!("{i} is out of range"))),
        }
    }

    pub(super) fn opt_float(&self, key: &str) -> Result<Option<f64>, FieldError> {
        self.read_opt(key, as_float)
    }

    pub(super) fn opt_bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        self.read_opt(key, as_bool)
    }

    /// The items of a list (or tuple); a missing key or None gives none.
    pub(super) fn items<T>(
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

    pub(super) fn headers(&self, key: &str) -> Result<Vec<Header>, FieldError> {
        self.items(key, |pair| match list_items(pair).as_deref() {
            Some([name, value]) => Ok(Header {
                name: as_bytes(name)?,
                value: as_bytes(value)?,
            }),
            _ => Err("expected [name, value]"),
        })
    }

    pub(super) fn trailers(&self) -> Result<Option<v1::Headers>, FieldError> {
        match self.optional("trailers") {
            None => Ok(None),
            Some(_) => Ok(Some(v1::Headers {
                fields: self.headers("trailers")?,
            })),
        }
    }

    /// `[host, port]`, or up to four elements for IPv6 (flowinfo and scope id are dropped).
    pub(super) fn address(&self, key: &str) -> Result<Option<Address>, FieldError> {
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

pub(super) fn address_of(value: &Bound<'_, PyAny>) -> Result<Option<Address>, String> {
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
pub(super) fn list_items<'py>(value: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = value.cast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    }
}

pub(super) fn as_string(value: &Bound<'_, PyAny>) -> Result<String, &'static str> {
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

pub(super) fn as_bytes(value: &Bound<'_, PyAny>) -> Result<Bytes, &'static str> {
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

pub(super) fn as_int(value: &Bound<'_, PyAny>) -> Result<i64, &'static str> {
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

pub(super) fn as_float(value: &Bound<'_, PyAny>) -> Result<f64, &'static str> {
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

pub(super) fn as_bool(value: &Bound<'_, PyAny>) -> Result<bool, &'static str> {
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
