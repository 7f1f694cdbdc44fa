//! The DNS wire format (RFC 1035 section 4): messages read from and written to bytes. Names
//! read may be compressed (pointers must point backwards); names written are uncompressed.

use flowtap_proto::v1::{DnsMessage, DnsQuestion, DnsResourceRecord};

/// Why a datagram is not a DNS message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WireError {
    #[error("the message ends early")]
    Truncated,
    #[error("a name is malformed (label type, pointer loop or length)")]
    BadName,
}

/// Reads a DNS message from the wire.
pub(crate) fn parse(buf: &[u8]) -> Result<DnsMessage, WireError> {
    let word = |at: usize| -> Result<u32, WireError> {
        buf.get(at..at + 2)
            .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(WireError::Truncated)
    };
    let flags = word(2)?;
    let counts = [word(4)?, word(6)?, word(8)?, word(10)?];
    let mut message = DnsMessage {
        id: word(0)?,
        query: flags & 0x8000 == 0,
        op_code: (flags >> 11) & 0xF,
        authoritative_answer: flags & 0x0400 != 0,
        truncation: flags & 0x0200 != 0,
        recursion_desired: flags & 0x0100 != 0,
        recursion_available: flags & 0x0080 != 0,
        reserved: (flags >> 4) & 0x7,
        response_code: flags & 0xF,
        ..Default::default()
    };
    let mut at = 12;
    for _ in 0..counts[0] {
        let name = read_name(buf, &mut at)?;
        message.questions.push(DnsQuestion {
            name,
            r#type: word(at)?,
            class: word(at + 2)?,
        });
        at += 4;
    }
    for (count, section) in [
        (counts[1], &mut message.answers),
        (counts[2], &mut message.authorities),
        (counts[3], &mut message.additionals),
    ] {
        for _ in 0..count {
            let name = read_name(buf, &mut at)?;
            let ttl_bytes = buf.get(at + 4..at + 8).ok_or(WireError::Truncated)?;
            let length = word(at + 8)? as usize;
            let data = buf
                .get(at + 10..at + 10 + length)
                .ok_or(WireError::Truncated)?;
            section.push(DnsResourceRecord {
                name,
                r#type: word(at)?,
                class: word(at + 2)?,
                ttl: u32::from_be_bytes([ttl_bytes[0], ttl_bytes[1], ttl_bytes[2], ttl_bytes[3]]),
                data: bytes::Bytes::copy_from_slice(data),
            });
            at += 10 + length;
        }
    }
    Ok(message)
}

/// Reads a (possibly compressed) name at `*at`, moving `*at` past it.
fn read_name(buf: &[u8], at: &mut usize) -> Result<String, WireError> {
    let mut labels: Vec<String> = Vec::new();
    let mut pos = *at;
    let mut jumped = false;
    // Each pointer must go backwards: no loops, and at most as many jumps as bytes.
    let mut limit = pos;
    loop {
        let len = *buf.get(pos).ok_or(WireError::Truncated)? as usize;
        match len & 0xC0 {
            0x00 if len == 0 => {
                if !jumped {
                    *at = pos + 1;
                }
                break;
            }
            0x00 => {
                let label = buf
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(WireError::Truncated)?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                pos += 1 + len;
            }
            0xC0 => {
                let low = *buf.get(pos + 1).ok_or(WireError::Truncated)? as usize;
                let target = ((len & 0x3F) << 8) | low;
                if target >= limit {
                    return Err(WireError::BadName);
                }
                if !jumped {
                    *at = pos + 2;
                    jumped = true;
                }
                limit = target;
                pos = target;
            }
            _ => return Err(WireError::BadName),
        }
    }
    if labels.iter().map(|l| l.len() + 1).sum::<usize>() > 255 {
        return Err(WireError::BadName);
    }
    Ok(labels.join("."))
}

/// Writes a DNS message to the wire (names uncompressed; a label longer than 63 bytes is cut).
pub(crate) fn pack(message: &DnsMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let flags = (u32::from(!message.query) << 15)
        | ((message.op_code & 0xF) << 11)
        | (u32::from(message.authoritative_answer) << 10)
        | (u32::from(message.truncation) << 9)
        | (u32::from(message.recursion_desired) << 8)
        | (u32::from(message.recursion_available) << 7)
        | ((message.reserved & 0x7) << 4)
        | (message.response_code & 0xF);
    let counts = [
        message.questions.len(),
        message.answers.len(),
        message.authorities.len(),
        message.additionals.len(),
    ];
    push_u16(&mut out, message.id);
    push_u16(&mut out, flags);
    for count in counts {
        push_u16(&mut out, u32::try_from(count).unwrap_or(u32::MAX));
    }
    for question in &message.questions {
        push_name(&mut out, &question.name);
        push_u16(&mut out, question.r#type);
        push_u16(&mut out, question.class);
    }
    for record in message
        .answers
        .iter()
        .chain(&message.authorities)
        .chain(&message.additionals)
    {
        push_name(&mut out, &record.name);
        push_u16(&mut out, record.r#type);
        push_u16(&mut out, record.class);
        out.extend_from_slice(&record.ttl.to_be_bytes());
        let data = &record.data[..record.data.len().min(usize::from(u16::MAX))];
        push_u16(&mut out, u32::try_from(data.len()).unwrap_or(0));
        out.extend_from_slice(data);
    }
    out
}

fn push_u16(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&((value & 0xFFFF) as u16).to_be_bytes());
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{CLASS_IN, NXDOMAIN, TYPE_A, TYPE_AAAA};

    fn query(name: &str, qtype: u32) -> DnsMessage {
        DnsMessage {
            id: 0x1234,
            query: true,
            recursion_desired: true,
            questions: vec![DnsQuestion {
                name: name.into(),
                r#type: qtype,
                class: CLASS_IN,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_query_round_trips() {
        let message = query("example.com", TYPE_AAAA);
        let wire = pack(&message);
        assert_eq!(
            &wire[..12],
            &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(parse(&wire), Ok(message));
    }

    #[test]
    fn an_answer_round_trips_with_its_flags() {
        let mut message = query("example.org", TYPE_A);
        message.query = false;
        message.response_code = NXDOMAIN;
        message.recursion_available = true;
        message.answers.push(DnsResourceRecord {
            name: "example.org".into(),
            r#type: TYPE_A,
            class: CLASS_IN,
            ttl: 300,
            data: vec![127, 0, 0, 1].into(),
        });
        assert_eq!(parse(&pack(&message)), Ok(message));
    }

    #[test]
    fn compressed_names_are_followed_and_loops_refused() {
        let mut wire = pack(&query("example.com", TYPE_A));
        // An answer whose name points back at the question's name (offset 12).
        wire[7] = 1;
        wire.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        let message = parse(&wire).expect("a valid message");
        assert_eq!(message.answers[0].name, "example.com");
        assert_eq!(message.answers[0].data.as_ref(), [10, 0, 0, 1]);
        // A pointer to itself.
        let mut looped = pack(&query("a", TYPE_A));
        looped.truncate(12);
        looped.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&looped), Err(WireError::BadName));
    }

    #[test]
    fn short_or_hostile_datagrams_are_errors_not_panics() {
        let wire = pack(&query("example.com", TYPE_A));
        for cut in 0..wire.len() {
            assert!(parse(&wire[..cut]).is_err(), "cut at {cut}");
        }
        let mut counts = wire.clone();
        counts[5] = 0xFF; // 255 questions announced, one present
        assert_eq!(parse(&counts), Err(WireError::Truncated));
        let mut label = wire;
        label[12] = 0x80; // a reserved label type
        assert_eq!(parse(&label), Err(WireError::BadName));
    }
}
