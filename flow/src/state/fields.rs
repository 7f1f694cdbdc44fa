//! Typed access to the fields of a state dict, with errors that name the field.

use bytes::Bytes;

use super::StateError;
use crate::tnetstring::{Dict, Value};

/// A state dict and its path (`flow.request`), for error messages.
pub(crate) struct Fields<'a> {
    dict: &'a Dict,
    path: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn of(value: &'a Value, path: impl Into<String>) -> Result<Self, StateError> {
        let path = path.into();
        match value.as_dict() {
            Some(dict) => Ok(Self { dict, path }),
            None => Err(StateError::new(path, "expected a dict")),
        }
    }

    fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.dict.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Value, StateError> {
        self.dict
            .get(key)
            .ok_or_else(|| StateError::new(self.path(key), "missing"))
    }

    /// `None` for a missing key or a `None` value.
    fn optional(&self, key: &str) -> Option<&'a Value> {
        self.dict.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn dict(&self, key: &str) -> Result<Fields<'a>, StateError> {
        Fields::of(self.required(key)?, self.path(key))
    }

    pub(crate) fn opt_dict(&self, key: &str) -> Result<Option<Fields<'a>>, StateError> {
        self.optional(key)
            .map(|v| Fields::of(v, self.path(key)))
            .transpose()
    }

    pub(crate) fn string(&self, key: &str) -> Result<String, StateError> {
        as_string(self.required(key)?, &self.path(key))
    }

    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<String>, StateError> {
        self.optional(key)
            .map(|v| as_string(v, &self.path(key)))
            .transpose()
    }

    pub(crate) fn bytes(&self, key: &str) -> Result<Bytes, StateError> {
        as_bytes(self.required(key)?, &self.path(key))
    }

    pub(crate) fn opt_bytes(&self, key: &str) -> Result<Option<Bytes>, StateError> {
        self.optional(key)
            .map(|v| as_bytes(v, &self.path(key)))
            .transpose()
    }

    pub(crate) fn int(&self, key: &str) -> Result<i64, StateError> {
        as_int(self.required(key)?, &self.path(key))
    }

    pub(crate) fn opt_int(&self, key: &str) -> Result<Option<i64>, StateError> {
        self.optional(key)
            .map(|v| as_int(v, &self.path(key)))
            .transpose()
    }

    pub(crate) fn uint(&self, key: &str) -> Result<u32, StateError> {
        let i = self.int(key)?;
        u32::try_from(i)
            .map_err(|_| StateError::new(self.path(key), format!("{i} is out of range")))
    }

    pub(crate) fn opt_uint(&self, key: &str) -> Result<Option<u32>, StateError> {
        self.opt_int(key)?
            .map(|i| {
                u32::try_from(i)
                    .map_err(|_| StateError::new(self.path(key), format!("{i} is out of range")))
            })
            .transpose()
    }

    pub(crate) fn opt_float(&self, key: &str) -> Result<Option<f64>, StateError> {
        self.optional(key)
            .map(|v| as_float(v, &self.path(key)))
            .transpose()
    }

    pub(crate) fn bool(&self, key: &str) -> Result<bool, StateError> {
        as_bool(self.required(key)?, &self.path(key))
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, StateError> {
        self.optional(key)
            .map(|v| as_bool(v, &self.path(key)))
            .transpose()
    }

    /// The items of a list; a missing key or `None` gives an empty list.
    pub(crate) fn list(&self, key: &str) -> Result<&'a [Value], StateError> {
        match self.optional(key) {
            None => Ok(&[]),
            Some(Value::List(items)) => Ok(items),
            Some(_) => Err(StateError::new(self.path(key), "expected a list")),
        }
    }

    pub(crate) fn item_path(&self, key: &str, index: usize) -> String {
        format!("{}.{key}[{index}]", self.path)
    }
}

pub(crate) fn as_string(value: &Value, path: &str) -> Result<String, StateError> {
    match value {
        Value::Text(t) => Ok(t.clone()),
        // Old files wrote strings as bytes; Python decodes them with backslashreplace.
        Value::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err(StateError::new(path, "expected a string")),
    }
}

pub(crate) fn as_bytes(value: &Value, path: &str) -> Result<Bytes, StateError> {
    match value {
        Value::Bytes(b) => Ok(b.clone()),
        Value::Text(t) => Ok(Bytes::from(t.clone().into_bytes())),
        _ => Err(StateError::new(path, "expected bytes")),
    }
}

pub(crate) fn as_int(value: &Value, path: &str) -> Result<i64, StateError> {
    match value {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        _ => Err(StateError::new(path, "expected an integer")),
    }
}

pub(crate) fn as_float(value: &Value, path: &str) -> Result<f64, StateError> {
    match value {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        _ => Err(StateError::new(path, "expected a float")),
    }
}

pub(crate) fn as_bool(value: &Value, path: &str) -> Result<bool, StateError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Int(i) => Ok(*i != 0),
        _ => Err(StateError::new(path, "expected a bool")),
    }
}
