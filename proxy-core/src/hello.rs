//! The server name of a TLS ClientHello, read from the client's first bytes before any TLS
//! library sees them, so that `ignore_hosts` and `allow_hosts` can be matched on the name the
//! client asks for (SNI) as well as on the CONNECT target. Every length is checked against what
//! is there: any input gives a name, "no name", or "not a ClientHello", never a panic.

/// What the first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hello {
    /// A whole ClientHello record, with its server name if it has one.
    Complete(Option<String>),
    /// A ClientHello record has begun; this many bytes in all are needed to see it whole.
    Partial(usize),
    /// Not a TLS handshake record carrying a ClientHello.
    Other,
}

/// Largest record looked at (a TLS record's maximum plaintext plus its header).
pub(crate) const MAX_RECORD: usize = 16_384 + 5;

/// The ClientHello handshake message's body (from the client version on) in the TLS record at
/// the start of `buf`, as mitmproxy's `tls.ClientHello` takes it; empty when it is not there
/// whole.
pub(crate) fn client_hello_body(buf: &[u8]) -> &[u8] {
    let Some(&[kind, a, b, c]) = buf.get(5..9) else {
        return &[];
    };
    if kind != 1 {
        return &[];
    }
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    buf.get(9..9 + len).unwrap_or_default()
}

/// Reads the server name of the ClientHello at the start of `buf`.
pub(crate) fn server_name(buf: &[u8]) -> Hello {
    if buf.len() < 5 {
        return if buf.first().is_none_or(|b| *b == 0x16) {
            Hello::Partial(5)
        } else {
            Hello::Other
        };
    }
    if buf[0] != 0x16 {
        return Hello::Other;
    }
    let record = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if record > MAX_RECORD - 5 {
        return Hello::Other;
    }
    if buf.len() < 5 + record {
        return Hello::Partial(5 + record);
    }
    match parse_client_hello(&buf[5..5 + record]) {
        Some(name) => Hello::Complete(name),
        None => Hello::Other,
    }
}

/// A cursor over a byte slice whose every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// The handshake message in a record: Some(server name or None) for a ClientHello (RFC 8446
/// 4.1.2, RFC 6066 3), None for anything else or anything malformed.
fn parse_client_hello(record: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None;
    }
    let length = r.u24()?;
    let mut r = Reader(r.take(length)?);
    r.take(2 + 32)?; // legacy_version, random
    let session = r.u8()?;
    r.take(session)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let compressions = r.u8()?;
    r.take(compressions)?;
    if r.0.is_empty() {
        return Some(None);
    }
    let extensions = r.u16()?;
    let mut r = Reader(r.take(extensions)?);
    while !r.0.is_empty() {
        let kind = r.u16()?;
        let len = r.u16()?;
        let body = r.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut names = Reader(body);
        let list = names.u16()?;
        let mut names = Reader(names.take(list)?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let len = names.u16()?;
            let name = names.take(len)?;
            if name_type == 0 {
                return Some(std::str::from_utf8(name).ok().map(str::to_ascii_lowercase));
            }
        }
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello record with `sni` (or none).
    fn client_hello(sni: Option<&str>) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(name) = sni {
            let n = name.as_bytes();
            let entry_len = 3 + n.len();
            ext.extend_from_slice(&[0, 0]);
            ext.extend_from_slice(&u16::try_from(2 + entry_len).unwrap().to_be_bytes());
            ext.extend_from_slice(&u16::try_from(entry_len).unwrap().to_be_bytes());
            ext.push(0);
            ext.extend_from_slice(&u16::try_from(n.len()).unwrap().to_be_bytes());
            ext.extend_from_slice(n);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut record = vec![0x16, 3, 1];
        record.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[test]
    fn names_partial_records_and_garbage() {
        let hello = client_hello(Some("Shop.Example"));
        assert_eq!(
            server_name(&hello),
            Hello::Complete(Some("shop.example".into()))
        );
        assert_eq!(server_name(&client_hello(None)), Hello::Complete(None));
        assert_eq!(server_name(&hello[..3]), Hello::Partial(5));
        assert_eq!(server_name(&hello[..10]), Hello::Partial(hello.len()));
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), Hello::Other);
        // Every truncation of the message inside a whole record is refused, not a panic.
        for cut in 5..hello.len() {
            let mut broken = hello[..cut].to_vec();
            let len = u16::try_from(cut - 5).unwrap().to_be_bytes();
            broken[3] = len[0];
            broken[4] = len[1];
            let _ = server_name(&broken);
        }
    }
}
