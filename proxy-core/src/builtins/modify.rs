//! `modify_headers` (headers set or removed in `requestheaders`/`responseheaders`) and
//! `modify_body` (regex replacements in bodies in `request`/`response`), as mitmproxy's
//! `modifyheaders` and `modifybody` addons. A replacement starting with `@` is read from that
//! file each time it is used.

use std::borrow::Cow;
use std::path::Path;

use bytes::Bytes;
use flowtap_proto::v1::{Flow, Header};

use super::spec::{self, Spec};
use super::{BuiltinError, BuiltinOptions, remove_header};

/// A `[/flow-filter]/subject/[@]replacement` spec whose replacement was checked at start.
#[derive(Debug)]
struct ModifySpec {
    spec: Spec,
    /// The header name (unescaped), for `modify_headers`.
    name: Vec<u8>,
}

impl ModifySpec {
    fn parse(option: &str) -> Result<ModifySpec, String> {
        let spec = spec::parse_spec(option)?;
        let parsed = ModifySpec {
            name: spec::escaped_str_to_bytes(&spec.subject),
            spec,
        };
        if let Err(e) = parsed.replacement() {
            return Err(format!(
                "Invalid file path: {} ({e})",
                &parsed.spec.replacement[1..]
            ));
        }
        Ok(parsed)
    }

    /// The replacement's bytes: Python-unescaped, or read from the `@` file.
    fn replacement(&self) -> std::io::Result<Vec<u8>> {
        match self.spec.replacement.strip_prefix('@') {
            Some(path) => std::fs::read(expand_user(path)),
            None => Ok(spec::escaped_str_to_bytes(&self.spec.replacement)),
        }
    }
}

fn expand_user(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => std::path::PathBuf::from(path),
    }
}

#[derive(Debug)]
pub(super) struct Modify {
    headers: Vec<ModifySpec>,
    body: Vec<(ModifySpec, regex::bytes::Regex)>,
}

impl Modify {
    pub(super) fn new(options: &BuiltinOptions) -> Result<Modify, BuiltinError> {
        let headers = options
            .modify_headers
            .iter()
            .map(|option| {
                ModifySpec::parse(option).map_err(|e| {
                    BuiltinError(format!("Cannot parse modify_headers option {option}: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        let body = options
            .modify_body
            .iter()
            .map(|option| {
                parse_body(option).map_err(|e| {
                    BuiltinError(format!("Cannot parse modify_body option {option}: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Modify { headers, body })
    }

    pub(super) fn is_idle(&self) -> bool {
        self.headers.is_empty() && self.body.is_empty()
    }

    pub(super) fn body_is_idle(&self) -> bool {
        self.body.is_empty()
    }

    pub(super) fn request_headers(&self, flow: &mut Flow) {
        let matches = self.matches(flow);
        if let Some(request) = flow.request.as_mut() {
            self.apply_headers(&matches, &mut request.headers);
        }
    }

    pub(super) fn response_headers(&self, flow: &mut Flow) {
        let matches = self.matches(flow);
        if let Some(response) = flow.response.as_mut() {
            self.apply_headers(&matches, &mut response.headers);
        }
    }

    /// Which header specs apply, decided on the flow before any of them changes it.
    fn matches(&self, flow: &Flow) -> Vec<bool> {
        self.headers.iter().map(|m| m.spec.matches(flow)).collect()
    }

    /// All matching names are removed first, then the non-empty values added at the end.
    fn apply_headers(&self, matches: &[bool], headers: &mut Vec<Header>) {
        let chosen = || {
            self.headers
                .iter()
                .zip(matches)
                .filter(|(_, m)| **m)
                .map(|(s, _)| s)
        };
        for spec in chosen() {
            remove_header(headers, &spec.name);
        }
        for spec in chosen() {
            match spec.replacement() {
                Ok(value) if !value.is_empty() => headers.push(Header {
                    name: Bytes::copy_from_slice(&spec.name),
                    value: Bytes::from(value),
                }),
                Ok(_) => {}
                Err(e) => tracing::warn!("Could not read replacement file: {e}"),
            }
        }
    }

    pub(super) fn request_body(&self, flow: &mut Flow) {
        self.apply_body(flow, false);
    }

    pub(super) fn response_body(&self, flow: &mut Flow) {
        self.apply_body(flow, true);
    }

    fn apply_body(&self, flow: &mut Flow, response: bool) {
        for (spec, regex) in &self.body {
            if !spec.spec.matches(flow) {
                continue;
            }
            let replacement = match spec.replacement() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("Could not read replacement file: {e}");
                    continue;
                }
            };
            let (headers, content) = match (response, flow.response.as_mut()) {
                (true, Some(r)) => (&mut r.headers, &mut r.content),
                (true, None) => return,
                (false, _) => match flow.request.as_mut() {
                    Some(r) => (&mut r.headers, &mut r.content),
                    None => return,
                },
            };
            replace_in_body(headers, content, regex, &replacement);
        }
    }
}

fn parse_body(option: &str) -> Result<(ModifySpec, regex::bytes::Regex), String> {
    let spec = ModifySpec::parse(option)?;
    // Python's bytes patterns: `.` matches newlines (re.DOTALL) and any byte.
    let subject = &spec.spec.subject;
    let regex = regex::bytes::Regex::new(&format!("(?s-u){subject}"))
        .or_else(|_| regex::bytes::Regex::new(&format!("(?s){subject}")))
        .map_err(|e| format!("Invalid regular expression {subject:?} ({e})"))?;
    Ok((spec, regex))
}

/// `message.content = re.sub(regex, lambda _: replacement, message.content)`: the decoded body
/// is searched; a changed body is encoded again with its `Content-Encoding` (gzip, deflate),
/// or, for encodings the proxy does not write (br, zstd), kept decoded without the header.
/// A streamed body (absent) is left alone, as in mitmproxy.
fn replace_in_body(
    headers: &mut Vec<Header>,
    content: &mut Option<Bytes>,
    regex: &regex::bytes::Regex,
    replacement: &[u8],
) {
    let Some(raw) = content.as_ref() else {
        return;
    };
    let encoding = flowtap_flow::model::header_value(headers, "content-encoding")
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity");
    let decoded: Cow<'_, [u8]> = match &encoding {
        None => Cow::Borrowed(&raw[..]),
        Some(e) => match flowtap_flow::content::decode(raw, e) {
            Ok(d) => d,
            Err(err) => {
                tracing::warn!("modify_body: cannot decode the {e} body: {err}");
                return;
            }
        },
    };
    if !regex.is_match(&decoded) {
        return;
    }
    let replaced = regex
        .replace_all(&decoded, regex::bytes::NoExpand(replacement))
        .into_owned();
    let body = match encoding.map(|e| (encode(&replaced, &e), e)) {
        None => replaced,
        Some((Some(encoded), _)) => encoded,
        Some((None, _)) => {
            remove_header(headers, b"content-encoding");
            replaced
        }
    };
    // As mitmproxy's content setter: a Content-Length header follows the new body.
    let chunked = flowtap_flow::model::header_value(headers, "transfer-encoding").is_some();
    if !chunked
        && headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(b"content-length"))
    {
        super::set_header(
            headers,
            b"content-length",
            body.len().to_string().as_bytes(),
        );
    }
    *content = Some(Bytes::from(body));
}

/// gzip and deflate (zlib) as mitmproxy's `encoding.encode` writes them; None for others.
fn encode(data: &[u8], encoding: &str) -> Option<Vec<u8>> {
    use std::io::Write as _;
    match encoding {
        "gzip" | "x-gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).ok()?;
            e.finish().ok()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).ok()?;
            e.finish().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn header_specs_remove_then_add() {
        let options = BuiltinOptions {
            modify_headers: vec!["/X-A/new".into(), "/x-b/".into(), "/X-C/\\x41".into()],
            ..Default::default()
        };
        let m = Modify::new(&options).unwrap();
        let mut headers = vec![h("x-a", "1"), h("X-B", "2"), h("keep", "3"), h("X-A", "4")];
        m.apply_headers(&[true, true, true], &mut headers);
        let got: Vec<_> = headers
            .iter()
            .map(|h| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&h.name),
                    String::from_utf8_lossy(&h.value)
                )
            })
            .collect();
        assert_eq!(got, ["keep=3", "X-A=new", "X-C=A"]);
    }

    #[test]
    fn bodies_are_replaced_through_their_encoding() {
        let (_, regex) = parse_body("/wor.d/there").unwrap();
        let mut headers = vec![h("Content-Encoding", "gzip")];
        let mut content = Some(Bytes::from(encode(b"hello\nworld", "gzip").unwrap()));
        replace_in_body(&mut headers, &mut content, &regex, b"there");
        let body = flowtap_flow::content::decode(content.as_ref().unwrap(), "gzip").unwrap();
        assert_eq!(&body[..], b"hello\nthere");
        let (_, dotall) = parse_body("/o.w/X").unwrap();
        let mut plain = Some(Bytes::from_static(b"hello\nworld"));
        replace_in_body(&mut Vec::new(), &mut plain, &dotall, b"$0");
        assert_eq!(plain.as_deref(), Some(&b"hell$0orld"[..]));
    }

    #[test]
    fn a_missing_replacement_file_is_a_startup_error() {
        let err = ModifySpec::parse("|x|@/no/such/file").unwrap_err();
        assert!(
            err.starts_with("Invalid file path: /no/such/file ("),
            "{err}"
        );
    }
}
