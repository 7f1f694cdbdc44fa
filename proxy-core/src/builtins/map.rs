//! `map_remote` (a request's URL rewritten by a regex before it goes out) and `map_local`
//! (requests answered from local files), as mitmproxy's `mapremote` and `maplocal` addons.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use flowtap_flow::RequestExt as _;
use flowtap_proto::v1::Flow;

use super::spec::{self, Spec, Template};
use super::{BuiltinError, BuiltinOptions, SERVER, make_response, set_header};

#[derive(Debug)]
struct Remote {
    spec: Spec,
    regex: regex::Regex,
    template: Template,
}

#[derive(Debug)]
struct Local {
    spec: Spec,
    regex: regex::Regex,
    /// The file or directory, resolved at start as mitmproxy does (it must exist).
    path: PathBuf,
}

#[derive(Debug)]
pub(super) struct Map {
    remote: Vec<Remote>,
    local: Vec<Local>,
}

impl Map {
    pub(super) fn new(options: &BuiltinOptions) -> Result<Map, BuiltinError> {
        let remote = options
            .map_remote
            .iter()
            .map(|option| {
                parse_remote(option).map_err(|e| {
                    BuiltinError(format!("Cannot parse map_remote option {option}: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        let local = options
            .map_local
            .iter()
            .map(|option| {
                parse_local(option).map_err(|e| {
                    BuiltinError(format!("Cannot parse map_local option {option}: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Map { remote, local })
    }

    pub(super) fn is_idle(&self) -> bool {
        self.remote.is_empty() && self.local.is_empty()
    }

    /// `request`: `map_remote` then `map_local`.
    pub(super) fn request(&self, flow: &mut Flow) {
        if flow.response.is_some() || flow.error.is_some() || !flow.live {
            return;
        }
        for remote in &self.remote {
            if remote.spec.matches(flow) {
                map_remote(remote, flow);
            }
        }
        if !self.local.is_empty() {
            self.map_local(flow);
        }
    }

    fn map_local(&self, flow: &mut Flow) {
        let Some(url) = flow.request.as_ref().map(|r| r.pretty_url()) else {
            return;
        };
        let mut all_candidates = Vec::new();
        for local in &self.local {
            if !local.spec.matches(flow) || !local.regex.is_match(&url) {
                continue;
            }
            let candidates = if local.path.is_file() {
                vec![local.path.clone()]
            } else {
                file_candidates(&url, local)
            };
            let found = candidates.iter().find(|c| c.is_file()).cloned();
            all_candidates.extend(candidates);
            let Some(file) = found else { continue };
            // A local file, as mitmproxy reads it: whole, on the flow's task.
            let contents = match std::fs::read(&file) {
                Ok(contents) => contents,
                Err(e) => {
                    tracing::warn!("Could not read file: {e}");
                    continue;
                }
            };
            let mut headers = vec![("Server", SERVER)];
            if let Some(mime) = guess_type(&file) {
                headers.push(("Content-Type", mime));
            }
            flow.response = Some(make_response(200, Bytes::from(contents), &headers));
            return;
        }
        if !all_candidates.is_empty() {
            let names: Vec<String> = all_candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            tracing::info!(
                "None of the local file candidates exist: {}",
                names.join(", ")
            );
            flow.response = Some(make_response(404, Bytes::new(), &[]));
        }
    }
}

fn parse_remote(option: &str) -> Result<Remote, String> {
    let spec = spec::parse_spec(option)?;
    let regex = spec::regex(&spec.subject)?;
    let template = Template::parse(&spec.replacement, &regex)?;
    Ok(Remote {
        spec,
        regex,
        template,
    })
}

fn parse_local(option: &str) -> Result<Local, String> {
    let spec = spec::parse_spec(option)?;
    let regex = spec::regex(&spec.subject)?;
    let given = &spec.replacement;
    let path = std::fs::canonicalize(expand_user(given))
        .map_err(|e| format!("Invalid file path: {given} ({e})"))?;
    Ok(Local { spec, regex, path })
}

/// `~/` at the start means the home directory, as Python's `expanduser`.
fn expand_user(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// `flow.request.url = re.sub(regex, replacement, pretty_url)` when that changes the URL: the
/// scheme, host, port and path follow, and so do the `Host` header and the authority when the
/// request has them.
fn map_remote(remote: &Remote, flow: &mut Flow) {
    let Some(request) = flow.request.as_mut() else {
        return;
    };
    let url = request.pretty_url();
    let new_url = remote
        .regex
        .replace_all(&url, |caps: &regex::Captures<'_>| {
            remote.template.expand(caps)
        });
    if new_url == url {
        return;
    }
    let Some(target) = crate::flow::parse_absolute(new_url.as_bytes()) else {
        tracing::warn!(
            "map_remote: {new_url:?} is not an http or https URL; the request is left as it was"
        );
        return;
    };
    request.scheme = Bytes::from_static(target.scheme.as_bytes());
    request.host = target.host;
    request.port = u32::from(target.port);
    request.path = target.path;
    let hostport = crate::flow::authority(target.scheme, &request.host, target.port);
    if request
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case(b"host"))
    {
        set_header(&mut request.headers, b"Host", hostport.as_bytes());
    }
    if !request.authority.is_empty() {
        request.authority = Bytes::from(hostport);
    }
}

/// The files a URL may map to under a directory spec, best first (mitmproxy's
/// `file_candidates`): the rest of the URL after the match (or the regex's first group),
/// percent-decoded, then `index.html` inside it, then both with unusual characters replaced by
/// `_`. A suffix that would leave the directory gives no candidates.
fn file_candidates(url: &str, local: &Local) -> Vec<PathBuf> {
    let Some(caps) = local.regex.captures(url) else {
        return Vec::new();
    };
    let suffix = if local.regex.captures_len() > 1 {
        caps.get(1).map_or("", |m| m.as_str()).to_string()
    } else {
        let whole = caps.get(0).map_or(url.len(), |m| m.end());
        let rest = &url[whole..];
        rest.split('?')
            .next()
            .unwrap_or("")
            .trim_matches('/')
            .to_string()
    };
    if suffix.is_empty() {
        return vec![local.path.join("index.html")];
    }
    let decoded = percent_decode(&suffix);
    let mut names = vec![decoded.clone(), format!("{decoded}/index.html")];
    let escaped: String = decoded
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=(),/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if escaped != decoded {
        names.push(escaped.clone());
        names.push(format!("{escaped}/index.html"));
    }
    names
        .iter()
        .map(|name| safe_join(&local.path, name))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// `root` joined with an untrusted relative path, or None when the path is absolute or climbs
/// out (werkzeug's `safe_join`).
fn safe_join(root: &Path, untrusted: &str) -> Option<PathBuf> {
    let mut joined = root.to_path_buf();
    for component in Path::new(untrusted).components() {
        match component {
            Component::Normal(part) => joined.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(joined)
}

/// Python's `urllib.parse.unquote`: `%XX` decoded, the bytes read as UTF-8 with replacement.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Python's `mimetypes.guess_type` for the common extensions.
fn guess_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/vnd.microsoft.icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &Path, regex: &str) -> Local {
        parse_local(&format!("|{regex}|{}", dir.display())).unwrap()
    }

    #[test]
    fn candidates_follow_the_url_after_the_match() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let l = local(dir.path(), "example.com/static");
        assert_eq!(
            file_candidates("https://example.com/static/a%20b/c.js?x=1", &l),
            vec![
                root.join("a b/c.js"),
                root.join("a b/c.js/index.html"),
                root.join("a_b/c.js"),
                root.join("a_b/c.js/index.html"),
            ]
        );
        assert_eq!(
            file_candidates("https://example.com/static/", &l),
            vec![root.join("index.html")]
        );
        assert!(file_candidates("https://example.com/static/../../etc/passwd", &l).is_empty());
        let grouped = local(dir.path(), r"example.com/(\w+)");
        assert_eq!(
            file_candidates("https://example.com/abc/def", &grouped)[0],
            root.join("abc")
        );
    }

    #[test]
    fn a_missing_path_is_a_startup_error() {
        let err = parse_local("|x|/definitely/not/here").unwrap_err();
        assert!(
            err.starts_with("Invalid file path: /definitely/not/here ("),
            "{err}"
        );
    }
}
