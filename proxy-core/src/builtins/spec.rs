//! The spec syntax mitmproxy's built-in addons share: `[/flow-filter]/subject/replacement`,
//! where the first character is the separator; Python's escaped strings
//! (`codecs.escape_decode`); and Python's `re.sub` replacement templates (`\1`, `\g<name>`).

use flowtap_flow::Filter;

/// A parsed `[/flow-filter]/subject/replacement`: no filter matches every flow.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) filter: Option<Filter>,
    pub(crate) subject: String,
    pub(crate) replacement: String,
}

impl Spec {
    /// True when the spec applies to `flow` (always, without a filter).
    pub(crate) fn matches(&self, flow: &flowtap_proto::v1::Flow) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(flow))
    }
}

/// mitmproxy's `utils.spec.parse_spec`: two parts (subject, replacement) or three (filter first).
pub(crate) fn parse_spec(option: &str) -> Result<Spec, String> {
    let parts = split(option, 3)?;
    match parts.as_slice() {
        [subject, replacement] => Ok(Spec {
            filter: None,
            subject: subject.to_string(),
            replacement: replacement.to_string(),
        }),
        [filter, subject, replacement] => Ok(Spec {
            filter: Some(parse_filter(filter)?),
            subject: subject.to_string(),
            replacement: replacement.to_string(),
        }),
        _ => Err("Invalid number of parameters (2 or 3 are expected)".into()),
    }
}

/// The text after the separator split on it, at most `max` parts (Python's
/// `rem.split(sep, max - 1)`).
pub(crate) fn split(option: &str, max: usize) -> Result<Vec<&str>, String> {
    let mut chars = option.chars();
    let Some(sep) = chars.next() else {
        return Err("Invalid number of parameters (2 or 3 are expected)".into());
    };
    Ok(chars.as_str().splitn(max, sep).collect())
}

/// A filter expression, with mitmproxy's wording when it does not parse.
pub(crate) fn parse_filter(text: &str) -> Result<Filter, String> {
    Filter::parse(text).map_err(|e| format!("Invalid filter expression: {text:?} ({e})"))
}

/// Python's `codecs.escape_decode`: `\n`, `\t`, `\\`, `\xHH`, octal `\ooo` and the other C
/// escapes become their bytes; an unknown escape stays as written.
pub(crate) fn escaped_str_to_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let c = bytes[i + 1];
        i += 2;
        let simple = match c {
            b'\\' => Some(b'\\'),
            b'\'' => Some(b'\''),
            b'"' => Some(b'"'),
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(11),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
        } else if c == b'\n' {
            // A backslash before a newline continues the line.
        } else if c == b'x' && i + 2 <= bytes.len() && hex2(&bytes[i..i + 2]).is_some() {
            out.push(hex2(&bytes[i..i + 2]).unwrap_or_default());
            i += 2;
        } else if (b'0'..=b'7').contains(&c) {
            let mut value = u32::from(c - b'0');
            let mut taken = 0;
            while taken < 2 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                value = value * 8 + u32::from(bytes[i] - b'0');
                i += 1;
                taken += 1;
            }
            out.push((value & 0xff) as u8);
        } else {
            out.extend_from_slice(&[b'\\', c]);
        }
    }
    out
}

fn hex2(pair: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(pair).ok()?;
    u8::from_str_radix(text, 16).ok()
}

/// One piece of a `re.sub` replacement template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
    Named(String),
}

/// A Python `re.sub` replacement template, checked against its regex.
#[derive(Clone, Debug)]
pub(crate) struct Template(Vec<Piece>);

impl Template {
    /// Parses `template` as Python does for `regex`: `\1`..`\99` and `\g<n>`/`\g<name>` are
    /// groups, C escapes are characters, an unknown ASCII-letter escape is an error.
    pub(crate) fn parse(template: &str, regex: &regex::Regex) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                text.push(c);
                continue;
            }
            let Some(next) = chars.next() else {
                return Err("bad escape (end of pattern)".into());
            };
            let group = match next {
                'g' => {
                    if chars.next() != Some('<') {
                        return Err("missing <".into());
                    }
                    let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                    Some(match name.parse::<usize>() {
                        Ok(n) => Piece::Group(n),
                        Err(_) => Piece::Named(name),
                    })
                }
                '0'..='9' => {
                    let mut n = next.to_digit(10).unwrap_or_default() as usize;
                    if let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                        n = n * 10 + d as usize;
                        chars.next();
                    }
                    Some(Piece::Group(n))
                }
                'n' => Some(Piece::Text("\n".into())),
                'r' => Some(Piece::Text("\r".into())),
                't' => Some(Piece::Text("\t".into())),
                'a' => Some(Piece::Text("\x07".into())),
                'b' => Some(Piece::Text("\x08".into())),
                'f' => Some(Piece::Text("\x0c".into())),
                'v' => Some(Piece::Text("\x0b".into())),
                '\\' => Some(Piece::Text("\\".into())),
                c if c.is_ascii_alphabetic() => return Err(format!("bad escape \\{c}")),
                c => Some(Piece::Text(format!("\\{c}"))),
            };
            match group {
                Some(Piece::Text(t)) => text.push_str(&t),
                Some(piece) => {
                    check_group(&piece, regex)?;
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                }
                None => {}
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template(pieces))
    }

    /// The replacement for one match.
    pub(crate) fn expand(&self, caps: &regex::Captures<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(n) => out.push_str(caps.get(*n).map_or("", |m| m.as_str())),
                Piece::Named(name) => out.push_str(caps.name(name).map_or("", |m| m.as_str())),
            }
        }
        out
    }
}

fn check_group(piece: &Piece, regex: &regex::Regex) -> Result<(), String> {
    let ok = match piece {
        Piece::Group(n) => *n < regex.captures_len(),
        Piece::Named(name) => regex.capture_names().any(|n| n == Some(name.as_str())),
        Piece::Text(_) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid group reference {piece:?}"))
    }
}

/// A Python regular expression compiled for Rust's engine, with mitmproxy's wording when it
/// does not compile (Rust lacks look-around and backreferences).
pub(crate) fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| format!("Invalid regular expression {pattern:?} ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_on_their_first_character() {
        let s = parse_spec("|~q|a/b|c").unwrap();
        assert_eq!((s.subject.as_str(), s.replacement.as_str()), ("a/b", "c"));
        assert!(s.filter.is_some());
        let s = parse_spec(":x:y:z:w").unwrap();
        assert_eq!((s.subject.as_str(), s.replacement.as_str()), ("y", "z:w"));
        let s = parse_spec("/a/").unwrap();
        assert!(s.filter.is_none());
        assert_eq!((s.subject.as_str(), s.replacement.as_str()), ("a", ""));
        assert!(parse_spec("/a").is_err());
        assert!(parse_spec("").is_err());
        assert!(parse_spec("/~~bad/a/b").is_err());
    }

    #[test]
    fn escapes_decode_as_python_does() {
        assert_eq!(escaped_str_to_bytes(r"a\nb\x41\\\q\101"), b"a\nbA\\\\qA");
        assert_eq!(escaped_str_to_bytes("plain"), b"plain");
        assert_eq!(escaped_str_to_bytes(r"\xZZ"), b"\\xZZ");
    }

    #[test]
    fn templates_expand_python_group_references() {
        let re = regex(r"(?P<host>[a-z]+)\.(\w+)").unwrap();
        let t = Template::parse(r"\g<host>-\2-\g<0>\n$1", &re).unwrap();
        let caps = re.captures("example.com").unwrap();
        assert_eq!(t.expand(&caps), "example-com-example.com\n$1");
        assert!(Template::parse(r"\3", &re).is_err());
        assert!(Template::parse(r"\q", &re).is_err());
        assert!(Template::parse(r"\g<nope>", &re).is_err());
        assert!(regex("(?<=a)b").is_err());
    }
}
