//! Python's `str()` / `repr()` of metadata values and of DNS messages, which `~meta` and
//! `~b` (for DNS flows) match against.

use std::net::{Ipv4Addr, Ipv6Addr};

use flowtap_proto::v1::{DnsMessage, DnsResourceRecord, ValueDict};

use crate::state::value_from_proto;
use crate::tnetstring::{Value, python_float_repr};

/// `"\n".join(f"{key}: {value}" for key, value in flow.metadata.items())`.
pub(super) fn metadata_lines(metadata: Option<&ValueDict>) -> String {
    let Some(metadata) = metadata else {
        return String::new();
    };
    metadata
        .entries
        .iter()
        .map(|e| {
            let key = e.key.as_ref().map_or(Value::Null, value_from_proto);
            let value = e.value.as_ref().map_or(Value::Null, value_from_proto);
            format!("{}: {}", py_str(&key), py_str(&value))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Python's `str(value)`: text as is, everything else as `repr`.
pub(crate) fn py_str(value: &Value) -> String {
    match value {
        Value::Text(t) => t.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr(value)`.
pub(crate) fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => python_float_repr(*f),
        Value::Text(t) => quote(t.chars().map(u32::from), ""),
        Value::Bytes(b) => quote(b.iter().map(|b| u32::from(*b)), "b"),
        Value::List(items) => {
            let items: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Dict(dict) => {
            let items: Vec<String> = dict
                .iter()
                .map(|(k, v)| format!("{}: {}", py_repr(k), py_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Python's `repr(bytes)`: `b'...'`.
pub(crate) fn py_bytes_repr(data: &[u8]) -> String {
    quote(data.iter().map(|b| u32::from(*b)), "b")
}

/// Quotes like Python: single quotes unless the text has `'` and no `"`.
fn quote(chars: impl Iterator<Item = u32> + Clone, prefix: &str) -> String {
    let has_single = chars.clone().any(|c| c == u32::from('\''));
    let has_double = chars.clone().any(|c| c == u32::from('"'));
    let q = if has_single && !has_double { '"' } else { '\'' };
    let bytes_mode = !prefix.is_empty();
    let mut out = format!("{prefix}{q}");
    for c in chars {
        match char::from_u32(c) {
            Some('\\') => out.push_str("\\\\"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some(ch) if ch == q => {
                out.push('\\');
                out.push(ch);
            }
            Some(ch) if c < 0x20 || c == 0x7f || (bytes_mode && c >= 0x80) => {
                out.push_str(&format!("\\x{:02x}", u32::from(ch)));
            }
            Some(ch) => out.push(ch),
            None => out.push('\u{fffd}'),
        }
    }
    out.push(q);
    out
}

/// `str(DNSMessage)`: questions and records, one per line, joined with `\r\n`.
pub(super) fn dns_message_text(message: &DnsMessage) -> String {
    let questions = message.questions.iter().map(|q| q.name.clone());
    let records = message
        .answers
        .iter()
        .chain(&message.authorities)
        .chain(&message.additionals)
        .map(record_text);
    questions.chain(records).collect::<Vec<_>>().join("\r\n")
}

/// `str(ResourceRecord)`: the record data rendered by type, else hex.
fn record_text(record: &DnsResourceRecord) -> String {
    let data = &record.data[..];
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    let rendered = match record.r#type {
        1 => <[u8; 4]>::try_from(data)
            .ok()
            .map(|a| Ipv4Addr::from(a).to_string()),
        28 => <[u8; 16]>::try_from(data)
            .ok()
            .map(|a| Ipv6Addr::from(a).to_string()),
        2 | 5 | 12 => domain_name(data),
        16 => std::str::from_utf8(data).ok().map(str::to_owned),
        _ => Some(format!("0x{hex}")),
    };
    rendered.unwrap_or_else(|| format!("0x{hex} (invalid {} data)", type_name(record.r#type)))
}

fn type_name(t: u32) -> String {
    match t {
        1 => "A".to_owned(),
        2 => "NS".to_owned(),
        5 => "CNAME".to_owned(),
        12 => "PTR".to_owned(),
        16 => "TXT".to_owned(),
        28 => "AAAA".to_owned(),
        other => format!("TYPE({other})"),
    }
}

/// An uncompressed domain name in wire format.
fn domain_name(mut data: &[u8]) -> Option<String> {
    let mut labels = Vec::new();
    loop {
        let (&len, rest) = data.split_first()?;
        if len == 0 {
            return Some(labels.join("."));
        }
        if len >= 0xC0 || rest.len() < usize::from(len) {
            return None;
        }
        labels.push(String::from_utf8_lossy(&rest[..usize::from(len)]).into_owned());
        data = &rest[usize::from(len)..];
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::tnetstring::Dict;

    #[test]
    fn reprs_like_python() {
        let mut d = Dict::new();
        d.set(
            "nested",
            Value::List(vec![
                Value::Int(1),
                Value::Float(2.5),
                Value::from("s"),
                Value::Bytes(Bytes::from_static(b"b\x00'")),
                Value::Null,
                Value::Bool(true),
            ]),
        );
        assert_eq!(
            py_str(&Value::Dict(d)),
            r#"{'nested': [1, 2.5, 's', b"b\x00'", None, True]}"#
        );
        assert_eq!(py_str(&Value::from("plain")), "plain");
    }
}
