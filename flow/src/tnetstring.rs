//! tnetstring values exactly as mitmproxy's `mitmproxy/io/tnetstring.py` reads and writes them.
//!
//! Every value is `<len>:<payload><tag>`. mitmproxy adds a text tag (`;`) to the original
//! spec, writes dict items in *reverse* insertion order and writes floats in Python's `repr`
//! form; [`encode`] reproduces all three so that a decoded flow file re-encodes byte for byte.

use std::io::Read;

use bytes::Bytes;

mod float;
mod read;

pub use float::python_float_repr;
pub use read::{decode, read_value};

/// The longest length prefix mitmproxy accepts (in digits).
pub(crate) const MAX_LENGTH_DIGITS: usize = 12;

/// A decoded tnetstring value: what Python's `tnetstring.load` returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`: Python's `None`.
    Null,
    /// `!`: `true` or `false`.
    Bool(bool),
    /// `#`: an integer (Python ints are unbounded; flows only need 64 bits).
    Int(i64),
    /// `^`: a float, written in Python `repr` form.
    Float(f64),
    /// `,`: a byte string.
    Bytes(Bytes),
    /// `;`: a UTF-8 string (mitmproxy's extension).
    Text(String),
    /// `]`: a list (Python tuples are written as lists too).
    List(Vec<Value>),
    /// `}`: a dict in insertion order.
    Dict(Dict),
}

impl Value {
    /// Text for `Text`, and for `Bytes` that are valid UTF-8 (old files wrote strings as bytes).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            Value::Bytes(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// The dict, if this is one.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(dict) => Some(dict),
            _ => None,
        }
    }

    /// The dict, mutably, if this is one.
    pub fn as_dict_mut(&mut self) -> Option<&mut Dict> {
        match self {
            Value::Dict(dict) => Some(dict),
            _ => None,
        }
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Python truthiness: `None`, `False`, `0`, `0.0` and empty containers are false.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Bytes(b) => !b.is_empty(),
            Value::Text(t) => !t.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Dict(d) => !d.is_empty(),
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<Option<String>> for Value {
    fn from(text: Option<String>) -> Self {
        text.map_or(Value::Null, Value::Text)
    }
}

impl From<Bytes> for Value {
    fn from(bytes: Bytes) -> Self {
        Value::Bytes(bytes)
    }
}

impl From<Option<Bytes>> for Value {
    fn from(bytes: Option<Bytes>) -> Self {
        bytes.map_or(Value::Null, Value::Bytes)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<Option<f64>> for Value {
    fn from(f: Option<f64>) -> Self {
        f.map_or(Value::Null, Value::Float)
    }
}

impl From<Dict> for Value {
    fn from(dict: Dict) -> Self {
        Value::Dict(dict)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::List(items)
    }
}

/// A dict that keeps insertion order, as Python's does. Keys may be any value.
///
/// Lookups by `&str` match text keys and also byte-string keys with the same bytes, because
/// files older than mitmproxy 0.19 wrote every key as bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dict {
    items: Vec<(Value, Value)>,
}

impl Dict {
    /// An empty dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`. An existing key keeps its position, as in Python.
    pub fn insert(&mut self, key: impl Into<Value>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.items.iter_mut().find(|(k, _)| *k == key) {
            Some(item) => item.1 = value,
            None => self.items.push((key, value)),
        }
    }

    /// Sets a string key, replacing a text or bytes key of the same name in place.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.items.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
            Some(item) => item.1 = value,
            None => self.items.push((Value::from(key), value)),
        }
    }

    /// The value under a string key (text or bytes).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.items
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The value under a string key, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.items
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Removes a string key and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let index = self
            .items
            .iter()
            .position(|(k, _)| k.as_str() == Some(key))?;
        Some(self.items.remove(index).1)
    }

    /// True if the string key is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The items in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &(Value, Value)> {
        self.items.iter()
    }

    /// The items, mutably, in insertion order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut (Value, Value)> {
        self.items.iter_mut()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl FromIterator<(Value, Value)> for Dict {
    fn from_iter<I: IntoIterator<Item = (Value, Value)>>(iter: I) -> Self {
        let mut dict = Dict::new();
        for (k, v) in iter {
            dict.insert(k, v);
        }
        dict
    }
}

impl IntoIterator for Dict {
    type Item = (Value, Value);
    type IntoIter = std::vec::IntoIter<(Value, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// Why a tnetstring could not be read. Every variant names the byte offset in the stream.
#[derive(Debug, thiserror::Error)]
pub enum TnetstringError {
    /// The bytes are not a valid tnetstring.
    #[error("invalid tnetstring at byte {offset}: {message}")]
    Invalid {
        /// Offset of the offending byte from the start of the stream.
        offset: u64,
        /// What was wrong.
        message: String,
    },
    /// The stream ended inside a value.
    #[error("truncated tnetstring at byte {offset}: {message}")]
    Truncated {
        /// Offset where the data ran out.
        offset: u64,
        /// What was being read.
        message: String,
    },
    /// Reading the underlying stream failed.
    #[error("reading tnetstring at byte {offset}: {source}")]
    Io {
        /// Offset where the read failed.
        offset: u64,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl TnetstringError {
    /// The byte offset the error refers to.
    pub fn offset(&self) -> u64 {
        match self {
            TnetstringError::Invalid { offset, .. }
            | TnetstringError::Truncated { offset, .. }
            | TnetstringError::Io { offset, .. } => *offset,
        }
    }
}

/// Encodes a value exactly as mitmproxy's `tnetstring.dumps` does.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"0:~"),
        Value::Bool(true) => out.extend_from_slice(b"4:true!"),
        Value::Bool(false) => out.extend_from_slice(b"5:false!"),
        Value::Int(i) => write_atom(out, i.to_string().as_bytes(), b'#'),
        Value::Float(f) => write_atom(out, python_float_repr(*f).as_bytes(), b'^'),
        Value::Bytes(b) => write_atom(out, b, b','),
        Value::Text(t) => write_atom(out, t.as_bytes(), b';'),
        Value::List(items) => {
            let mut payload = Vec::new();
            for item in items {
                encode_into(item, &mut payload);
            }
            write_atom(out, &payload, b']');
        }
        Value::Dict(dict) => {
            // mitmproxy builds its output back to front, so the items come out reversed
            // (each key still precedes its value).
            let mut payload = Vec::new();
            for (key, value) in dict.items.iter().rev() {
                encode_into(key, &mut payload);
                encode_into(value, &mut payload);
            }
            write_atom(out, &payload, b'}');
        }
    }
}

fn write_atom(out: &mut Vec<u8>, payload: &[u8], tag: u8) {
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(tag);
}

/// Reads all values of a byte slice, as a convenience for tests and tools.
pub fn decode_all(mut data: &[u8]) -> Result<Vec<Value>, TnetstringError> {
    let mut values = Vec::new();
    let mut offset = 0u64;
    loop {
        let before = data.len();
        match read_value(&mut data, offset)? {
            Some(value) => values.push(value),
            None => return Ok(values),
        }
        offset += (before - data.len()) as u64;
    }
}

/// Reads exactly `len` bytes or reports how far it got.
pub(crate) fn read_exact_at<R: Read>(
    reader: &mut R,
    len: usize,
    offset: u64,
) -> Result<Vec<u8>, TnetstringError> {
    let mut buf = Vec::new();
    let got = reader
        .take(len as u64)
        .read_to_end(&mut buf)
        .map_err(|source| TnetstringError::Io { offset, source })?;
    if got < len {
        return Err(TnetstringError::Truncated {
            offset: offset + got as u64,
            message: format!("expected {len} more bytes, the stream has {got}"),
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_items_are_written_in_reverse() {
        let mut dict = Dict::new();
        dict.insert("a", 1i64);
        dict.insert("b", 2i64);
        assert_eq!(encode(&Value::Dict(dict)), b"16:1:b;1:2#1:a;1:1#}");
    }

    #[test]
    fn lists_keep_order_and_fixed_atoms() {
        let list = Value::List(vec![
            Value::Int(1),
            Value::from("x"),
            Value::Bytes(Bytes::from_static(b"y")),
        ]);
        assert_eq!(encode(&list), b"12:1:1#1:x;1:y,]");
        assert_eq!(encode(&Value::Null), b"0:~");
        assert_eq!(encode(&Value::Bool(true)), b"4:true!");
        assert_eq!(encode(&Value::Bool(false)), b"5:false!");
    }

    #[test]
    fn insert_keeps_position_of_existing_key() {
        let mut dict = Dict::new();
        dict.insert("a", 1i64);
        dict.insert("b", 2i64);
        dict.set("a", 3i64);
        let keys: Vec<_> = dict.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![Value::from("a"), Value::from("b")]);
        assert_eq!(dict.get("a"), Some(&Value::Int(3)));
    }
}
