//! Decoding: from a stream one value at a time, or from a byte slice.

use std::io::Read;

use bytes::Bytes;

use super::{MAX_LENGTH_DIGITS, TnetstringError, Value, read_exact_at};

/// Reads one value from `reader`, which is positioned at stream offset `offset` (used only in
/// error messages).
///
/// Returns `Ok(None)` at a clean end of stream (no byte at all). It reads the length digits one
/// byte at a time and then exactly the payload and tag, so it never reads past the value.
pub fn read_value<R: Read>(reader: &mut R, offset: u64) -> Result<Option<Value>, TnetstringError> {
    let mut length: usize = 0;
    let mut digits = 0usize;
    let mut pos = offset;
    loop {
        let mut byte = [0u8; 1];
        let n = read_byte(reader, &mut byte, pos)?;
        if n == 0 {
            if digits == 0 {
                return Ok(None);
            }
            return Err(TnetstringError::Truncated {
                offset: pos,
                message: "the stream ended inside a length prefix".to_owned(),
            });
        }
        match byte[0] {
            b':' if digits > 0 => break,
            b'0'..=b'9' if digits < MAX_LENGTH_DIGITS => {
                length = length * 10 + usize::from(byte[0] - b'0');
                digits += 1;
            }
            b'0'..=b'9' => return Err(invalid(pos, "length prefix longer than 12 digits")),
            other => {
                return Err(invalid(
                    pos,
                    format!("expected a length digit or ':', found byte 0x{other:02x}"),
                ));
            }
        }
        pos += 1;
    }
    let payload_offset = pos + 1;
    let mut data = read_exact_at(reader, length + 1, payload_offset)?;
    let tag = data.pop().unwrap_or(b'\0');
    parse_payload(&Bytes::from(data), tag, payload_offset, 0).map(Some)
}

fn read_byte<R: Read>(
    reader: &mut R,
    byte: &mut [u8; 1],
    pos: u64,
) -> Result<usize, TnetstringError> {
    loop {
        match reader.read(byte) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(TnetstringError::Io {
                    offset: pos,
                    source,
                });
            }
        }
    }
}

/// Decodes the value at the start of `data`; returns it and the number of bytes it used.
pub fn decode(data: &[u8]) -> Result<(Value, usize), TnetstringError> {
    decode_at(&Bytes::copy_from_slice(data), 0, 0)
}

/// How deep lists and dicts may nest. mitmproxy's flow states nest about six levels; the
/// bound keeps a crafted file (`]` inside `]` a hundred thousand times) from overflowing the
/// stack: it is an error instead.
pub(crate) const MAX_DEPTH: usize = 64;

/// Decodes the value at the start of `data`, a container's item at nesting `depth`.
fn decode_at(data: &Bytes, base: u64, depth: usize) -> Result<(Value, usize), TnetstringError> {
    let colon = data
        .iter()
        .take(MAX_LENGTH_DIGITS + 1)
        .position(|b| *b == b':')
        .ok_or_else(|| {
            if data.len() <= MAX_LENGTH_DIGITS && data.iter().all(u8::is_ascii_digit) {
                TnetstringError::Truncated {
                    offset: base + data.len() as u64,
                    message: "the data ended inside a length prefix".to_owned(),
                }
            } else {
                invalid(base, "missing or invalid length prefix")
            }
        })?;
    let digits = &data[..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid(base, "missing or invalid length prefix"));
    }
    let length: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(base, "invalid length prefix"))?;
    let start = colon + 1;
    let end = start + length;
    if end >= data.len() {
        return Err(TnetstringError::Truncated {
            offset: base + data.len() as u64,
            message: format!("a value of {length} bytes does not fit in its container"),
        });
    }
    let value = parse_payload(
        &data.slice(start..end),
        data[end],
        base + start as u64,
        depth,
    )?;
    Ok((value, end + 1))
}

fn parse_payload(
    payload: &Bytes,
    tag: u8,
    offset: u64,
    depth: usize,
) -> Result<Value, TnetstringError> {
    if matches!(tag, b']' | b'}') && depth >= MAX_DEPTH {
        return Err(invalid(
            offset,
            format!("lists and dicts nested more than {MAX_DEPTH} deep"),
        ));
    }
    let text = || {
        std::str::from_utf8(payload).map_err(|e| {
            invalid(
                offset + e.valid_up_to() as u64,
                "payload is not valid UTF-8",
            )
        })
    };
    Ok(match tag {
        b',' => Value::Bytes(payload.clone()),
        b';' => Value::Text(text()?.to_owned()),
        b'#' => Value::Int(
            text()?
                .trim()
                .parse()
                .map_err(|_| invalid(offset, "not an integer (or larger than 64 bits)"))?,
        ),
        b'^' => Value::Float(
            text()?
                .trim()
                .parse()
                .map_err(|_| invalid(offset, "not a float"))?,
        ),
        b'!' => match &payload[..] {
            b"true" => Value::Bool(true),
            b"false" => Value::Bool(false),
            _ => return Err(invalid(offset, "a boolean must be 'true' or 'false'")),
        },
        b'~' if payload.is_empty() => Value::Null,
        b'~' => return Err(invalid(offset, "a null must have an empty payload")),
        b']' => Value::List(parse_items(payload, offset, depth + 1)?),
        b'}' => {
            let items = parse_items(payload, offset, depth + 1)?;
            if items.len() % 2 != 0 {
                return Err(invalid(offset, "a dict has a key without a value"));
            }
            // Items are on disk in reverse insertion order (see `encode`); restore the order.
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut iter = items.into_iter();
            while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                pairs.push((k, v));
            }
            Value::Dict(pairs.into_iter().rev().collect())
        }
        other => {
            return Err(invalid(
                offset + payload.len() as u64,
                format!("unknown type tag 0x{other:02x}"),
            ));
        }
    })
}

fn parse_items(payload: &Bytes, offset: u64, depth: usize) -> Result<Vec<Value>, TnetstringError> {
    let mut items = Vec::new();
    let mut pos = 0usize;
    while pos < payload.len() {
        let rest = payload.slice(pos..);
        let (value, used) = decode_at(&rest, offset + pos as u64, depth).map_err(|e| match e {
            // Inside a container whose length was complete, running out is corruption.
            TnetstringError::Truncated { offset, message } => {
                TnetstringError::Invalid { offset, message }
            }
            other => other,
        })?;
        items.push(value);
        pos += used;
    }
    Ok(items)
}

fn invalid(offset: u64, message: impl Into<String>) -> TnetstringError {
    TnetstringError::Invalid {
        offset,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Dict, encode};
    use super::*;

    /// `]` inside `]`, `levels` deep.
    fn nested_lists(levels: usize) -> Vec<u8> {
        let mut value = b"0:]".to_vec();
        for _ in 1..levels {
            let mut outer = format!("{}:", value.len()).into_bytes();
            outer.extend_from_slice(&value);
            outer.push(b']');
            value = outer;
        }
        value
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let (value, _) = decode(&nested_lists(MAX_DEPTH)).expect("the deepest allowed");
        assert!(matches!(value, Value::List(_)));
        for levels in [MAX_DEPTH + 1, 10_000] {
            let data = nested_lists(levels);
            let error = decode(&data).expect_err("too deep");
            assert!(error.to_string().contains("nested more than 64"), "{error}");
            let error = read_value(&mut &data[..], 0).expect_err("too deep");
            assert!(error.to_string().contains("nested more than 64"), "{error}");
        }
    }

    #[test]
    fn round_trips_nested_values() {
        let mut dict = Dict::new();
        dict.insert("k", Value::List(vec![Value::Float(1e20), Value::Null]));
        dict.insert(Value::Int(3), Value::Bool(false));
        let value = Value::Dict(dict);
        let bytes = encode(&value);
        assert_eq!(decode(&bytes).unwrap(), (value.clone(), bytes.len()));
        let mut reader = &bytes[..];
        assert_eq!(read_value(&mut reader, 0).unwrap(), Some(value));
        assert_eq!(read_value(&mut reader, 0).unwrap(), None);
    }

    #[test]
    fn never_reads_past_a_value() {
        let data = b"1:a,garbage";
        let mut reader = &data[..];
        read_value(&mut reader, 0).unwrap();
        assert_eq!(reader, b"garbage");
    }

    #[test]
    fn errors_name_offsets() {
        let err = read_value(&mut &b"5:ab"[..], 100).unwrap_err();
        assert!(
            matches!(err, TnetstringError::Truncated { offset: 104, .. }),
            "{err}"
        );
        let err = read_value(&mut &b"1:ax"[..], 0).unwrap_err();
        assert_eq!(err.offset(), 3);
        let err = read_value(&mut &b"1234567890123:"[..], 0).unwrap_err();
        assert!(err.to_string().contains("12 digits"), "{err}");
        let err = read_value(&mut &b"4:abcd!"[..], 0).unwrap_err();
        assert_eq!(err.offset(), 2);
        let err = decode(b"8:1:a,1:b;x").unwrap_err();
        assert!(err.to_string().contains("byte"), "{err}");
    }
}
