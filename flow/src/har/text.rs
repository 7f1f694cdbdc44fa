//! Body text, query strings, cookies and header sizes as mitmproxy computes them for HAR.

use flowtap_proto::v1::Header;

/// mitmproxy's `strutils.is_mostly_bin` heuristic on the first ~100 bytes.
pub(super) fn is_mostly_binary(data: &[u8]) -> bool {
    if data.is_empty() {
        return false;
    }
    let mut s = data;
    if s.len() > 100 {
        let cut = (100..s.len().min(104))
            .find(|&i| (s[i] >> 6) != 0b10)
            .unwrap_or(100);
        s = &s[..cut];
    }
    let low = s.iter().filter(|&&b| b < 9 || (13 < b && b < 32)).count();
    let high = s.iter().filter(|&&b| b > 126).count();
    let ascii = s.len() - low - high;
    if ascii as f64 / s.len() as f64 > 0.7 {
        return false;
    }
    if (ascii + high) as f64 / s.len() as f64 > 0.95 && std::str::from_utf8(s).is_ok() {
        return false;
    }
    true
}

/// `len(str(headers))`, where `str(Headers)` is `Headers[(b'name', b'value'), …]`.
pub(super) fn headers_size(headers: &[Header]) -> usize {
    use crate::filter::py_bytes_repr;
    let fields: Vec<String> = headers
        .iter()
        .map(|h| format!("({}, {})", py_bytes_repr(&h.name), py_bytes_repr(&h.value)))
        .collect();
    format!("Headers[{}]", fields.join(", ")).chars().count()
}

/// Percent-decoding with `+` as space (`urllib.parse.unquote_plus`).
fn unquote_plus(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url.decode(qs)`: `a=1&b=2` → pairs (blank values kept).
pub(super) fn decode_query(query: &str) -> Vec<(String, String)> {
    query
        .split(['&', ';'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (unquote_plus(k), unquote_plus(v))
        })
        .collect()
}

/// `Cookie` headers → name/value pairs.
pub(super) fn request_cookies(headers: &[Header]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"cookie"))
        .flat_map(|h| {
            String::from_utf8_lossy(&h.value)
                .split(';')
                .filter_map(|pair| {
                    let pair = pair.trim();
                    if pair.is_empty() {
                        return None;
                    }
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    Some((k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One `Set-Cookie` header: name, value and attributes (lower-cased names are not used;
/// mitmproxy keeps the attribute names as written).
pub(super) struct SetCookie {
    pub(super) name: String,
    pub(super) value: String,
    pub(super) attrs: Vec<(String, String)>,
}

pub(super) fn response_cookies(headers: &[Header]) -> Vec<SetCookie> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"set-cookie"))
        .filter_map(|h| {
            let text = String::from_utf8_lossy(&h.value).into_owned();
            let mut parts = text.split(';');
            let first = parts.next()?.trim();
            let (name, value) = first.split_once('=').unwrap_or((first, ""));
            let attrs = parts
                .map(|a| {
                    let a = a.trim();
                    let (k, v) = a.split_once('=').unwrap_or((a, ""));
                    (k.trim().to_owned(), v.trim().to_owned())
                })
                .collect();
            Some(SetCookie {
                name: name.trim().to_owned(),
                value: value.trim().to_owned(),
                attrs,
            })
        })
        .collect()
}

/// `get_text(strict=False)` for a body that is already content-decoded. mitmproxy honours the
/// Content-Type charset; this decodes UTF-8 (lossily) whatever the charset says.
pub(super) fn body_text(content: &[u8], _headers: &[Header]) -> String {
    String::from_utf8_lossy(content).into_owned()
}
