//! Migration of flow-state dicts written by older mitmproxy releases to format version 21
//! (mitmproxy's `io/compat.py`; the converter table is spec section 5.8).
//!
//! Versions are `(0, 11)` … `(0, 19)`, `(1, 0, x)`, `(2, 0, x)`, `(3, 0, x)` and then plain
//! integers 4 … 21. Each converter changes the dict and bumps the version until it is 21.
//! Two converters need state across the flows of one file (connection ids for v4→5, WebSocket
//! handshakes for v11→12), so a [`Migrator`] lives as long as one file is read.

use std::collections::HashMap;

use crate::state::FLOW_FORMAT_VERSION;
use crate::tnetstring::{Dict, Value};

mod legacy;
mod modern;

/// A flow dict that cannot be migrated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompatError {
    /// The dict has no usable `version` key.
    #[error("flow state has no valid version: {0}")]
    NoVersion(String),
    /// A version with no converter: unknown, or newer than this reader.
    #[error("flowtap cannot read files with flow format version {version}{hint}")]
    UnsupportedVersion {
        /// The version as mitmproxy prints it, e.g. `22` or `(0, 10)`.
        version: String,
        /// `", please update flowtap"` for versions newer than 21.
        hint: &'static str,
    },
    /// A converter found the dict in a shape it does not expect.
    #[error("migrating flow from version {version}: {message}")]
    Malformed {
        /// The version being converted from.
        version: String,
        /// What was missing or wrong.
        message: String,
    },
}

/// A flow-format version: an integer (3.0 and later) or a `(major, minor)` tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Version {
    Tuple(i64, i64),
    Int(i64),
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Tuple(a, b) => write!(f, "({a}, {b})"),
            Version::Int(i) => write!(f, "{i}"),
        }
    }
}

/// Migrates the flows of one file; keeps the cross-flow state some converters need.
#[derive(Debug, Default)]
pub struct Migrator {
    pub(crate) client_ids: HashMap<String, String>,
    pub(crate) server_ids: HashMap<String, String>,
    pub(crate) websocket_handshakes: HashMap<String, Value>,
}

impl Migrator {
    /// A migrator with no state, for one file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts `state` step by step to format version 21. A version-21 dict is returned as is.
    pub fn migrate(&mut self, state: Value) -> Result<Value, CompatError> {
        self.migrate_to(state, FLOW_FORMAT_VERSION)
    }

    /// Converts `state` up to the integer version `target` (at most 21); for tests and tools
    /// that need an intermediate version.
    pub fn migrate_to(&mut self, mut state: Value, target: i64) -> Result<Value, CompatError> {
        loop {
            let version = version_of(&state)?;
            if version == Version::Int(target.min(FLOW_FORMAT_VERSION)) {
                return Ok(state);
            }
            let Value::Dict(dict) = state else {
                return Err(CompatError::NoVersion("the flow is not a dict".to_owned()));
            };
            let result = match version {
                Version::Tuple(..) => legacy::convert(self, version, dict),
                Version::Int(v) if v < 11 => legacy::convert(self, version, dict),
                Version::Int(_) => modern::convert(self, version, dict),
            };
            state = Value::Dict(result.map_err(|message| match message {
                Step::Unsupported => unsupported(version),
                Step::Malformed(message) => CompatError::Malformed {
                    version: version.to_string(),
                    message,
                },
            })?);
        }
    }
}

/// Migrates one flow dict with a fresh [`Migrator`].
pub fn migrate(state: Value) -> Result<Value, CompatError> {
    Migrator::new().migrate(state)
}

/// Migrates one flow dict to the integer version `target` with a fresh [`Migrator`].
pub fn migrate_to(state: Value, target: i64) -> Result<Value, CompatError> {
    Migrator::new().migrate_to(state, target)
}

/// Why one converter step failed.
pub(crate) enum Step {
    Unsupported,
    Malformed(String),
}

fn unsupported(version: Version) -> CompatError {
    let newer = matches!(version, Version::Int(v) if v > FLOW_FORMAT_VERSION);
    CompatError::UnsupportedVersion {
        version: version.to_string(),
        hint: if newer { ", please update flowtap" } else { "" },
    }
}

fn version_of(state: &Value) -> Result<Version, CompatError> {
    let dict = state
        .as_dict()
        .ok_or_else(|| CompatError::NoVersion("the flow is not a dict".to_owned()))?;
    match dict.get("version") {
        Some(Value::Int(v)) => Ok(Version::Int(*v)),
        Some(Value::List(items)) if items.len() >= 2 => match (&items[0], &items[1]) {
            (Value::Int(a), Value::Int(b)) => Ok(Version::Tuple(*a, *b)),
            _ => Err(CompatError::NoVersion(
                "version tuple is not numeric".to_owned(),
            )),
        },
        Some(other) => Err(CompatError::NoVersion(format!(
            "unexpected version {other:?}"
        ))),
        None => Err(CompatError::NoVersion("missing 'version' key".to_owned())),
    }
}

/// The dict under `key`, for converters.
pub(crate) fn sub<'a>(d: &'a mut Dict, key: &str) -> Result<&'a mut Dict, Step> {
    d.get_mut(key)
        .and_then(Value::as_dict_mut)
        .ok_or_else(|| Step::Malformed(format!("'{key}' is missing or not a dict")))
}

/// The dict under `key` if it is one (for keys that may be None, like `response`).
pub(crate) fn sub_opt<'a>(d: &'a mut Dict, key: &str) -> Option<&'a mut Dict> {
    d.get_mut(key).and_then(Value::as_dict_mut)
}

/// Moves the value of `from` to `to` (None if `from` is missing), as `d[to] = d.pop(from, None)`.
pub(crate) fn rename(d: &mut Dict, from: &str, to: &str) {
    let value = d.remove(from).unwrap_or(Value::Null);
    d.set(to, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_ask_for_an_update() {
        let mut d = Dict::new();
        d.set("version", 22i64);
        let err = migrate(Value::Dict(d)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flowtap cannot read files with flow format version 22, please update flowtap"
        );
    }

    #[test]
    fn unknown_old_versions_are_named() {
        let mut d = Dict::new();
        d.set("version", Value::List(vec![Value::Int(0), Value::Int(10)]));
        let err = migrate(Value::Dict(d)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flowtap cannot read files with flow format version (0, 10)"
        );
    }
}
