//! mitmdump's built-in addons, run in the proxy without Python: `map_remote`, `map_local`,
//! `modify_headers`, `modify_body`, `anticache`, `anticomp`, `stickycookie`, `stickyauth`,
//! `proxyauth`, `block_global`, `block_private`, `block_list` and (in reverse mode)
//! `upstream_auth`, with mitmproxy's option names, spec syntax and semantics.
//!
//! Where a reader starts: [`BuiltinOptions`] (the options as given, part of the proxy's
//! `Config`), then [`Builtins`], which the flow lifecycle calls at mitmproxy's points. mitmproxy
//! runs its addons in one chain (`mitmproxy/addons/__init__.py`): `block`, `blocklist`,
//! `anticache`, `anticomp` and `proxyauth` come before the scripts, `map_remote`, `map_local`,
//! `modify_body`, `modify_headers`, `stickyauth` and `stickycookie` after them. So scripts see
//! a request after anticache/anticomp/proxyauth and before map_remote, and a response before
//! modify_headers/modify_body change it.
//!
//! Modules, one per addon family: `spec` (the `[/filter]/subject/replacement` syntax, Python
//! escapes and replacement templates), `block` (`block_global`, `block_private`, `block_list`),
//! `map` (`map_remote`, `map_local`), `modify` (`modify_headers`, `modify_body`), `sticky`
//! (`stickycookie`, `stickyauth`), `proxyauth`, and `anticache`/`anticomp` here.

mod block;
mod map;
mod modify;
mod proxyauth;
mod spec;
mod sticky;

use bytes::Bytes;
use flowtap_proto::v1::value::Kind;
use flowtap_proto::v1::{Flow, Header, Response, Value, ValueEntry};

pub use block::is_global;
pub(crate) use proxyauth::ProxyAuth;
pub use proxyauth::Validator;

/// The built-in addons' options as mitmdump takes them (`--set NAME=VALUE` or its flags).
/// Sequences hold one spec per entry. Empty and false mean the addon is off; `block_global`
/// is on by default, as in mitmproxy.
#[derive(Clone, Debug)]
pub struct BuiltinOptions {
    /// `map_remote`: `[/flow-filter]/url-regex/replacement`.
    pub map_remote: Vec<String>,
    /// `map_local`: `[/flow-filter]/url-regex/file-or-directory-path`.
    pub map_local: Vec<String>,
    /// `modify_headers`: `[/flow-filter]/header-name/[@]header-value`.
    pub modify_headers: Vec<String>,
    /// `modify_body`: `[/flow-filter]/regex/[@]replacement`.
    pub modify_body: Vec<String>,
    /// `anticache`: strip `If-Modified-Since` and `If-None-Match` from requests.
    pub anticache: bool,
    /// `anticomp`: ask servers for uncompressed responses (`Accept-Encoding: identity`).
    pub anticomp: bool,
    /// `stickycookie`: a filter; matching requests get the cookies servers set earlier.
    pub stickycookie: Option<String>,
    /// `stickyauth`: a filter; matching requests get the `Authorization` last seen for the host.
    pub stickyauth: Option<String>,
    /// `block_global`: refuse client connections from public addresses (default on).
    pub block_global: bool,
    /// `block_private`: refuse client connections from private addresses.
    pub block_private: bool,
    /// `block_list`: `/flow-filter/status-code`; 444 closes the connection without a response.
    pub block_list: Vec<String>,
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        Self {
            map_remote: Vec::new(),
            map_local: Vec::new(),
            modify_headers: Vec::new(),
            modify_body: Vec::new(),
            anticache: false,
            anticomp: false,
            stickycookie: None,
            stickyauth: None,
            block_global: true,
            block_private: false,
            block_list: Vec::new(),
        }
    }
}

/// An option value a built-in addon cannot use; the message is mitmdump's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuiltinError(pub String);

/// The built-in addons with their parsed specs and their state (the sticky jars).
#[derive(Debug)]
pub struct Builtins {
    anticache: bool,
    anticomp: bool,
    block: block::Block,
    map: map::Map,
    modify: modify::Modify,
    sticky: sticky::Sticky,
    proxyauth: Option<proxyauth::ProxyAuth>,
    /// In reverse mode, `upstream_auth` as the `Authorization` of every request.
    reverse_auth: Option<Bytes>,
}

impl Builtins {
    /// Parses every spec, as mitmproxy's `configure` does: the first bad one is the error.
    /// `config.proxyauth` decides who may use the proxy, and each flow's listener mode how its
    /// client is asked for credentials (as a proxy in regular and upstream mode: 407 and
    /// `Proxy-Authorization`; as a server in reverse mode: 401 and `Authorization`; in the
    /// SOCKS5 handshake). `config.upstream_auth` must be `USER:PASS`; on reverse listeners it
    /// becomes every request's `Authorization`.
    pub fn new(config: &crate::Config) -> Result<Builtins, BuiltinError> {
        let options = &config.builtins;
        let reverse = config.has_mode(|m| matches!(m, crate::mode::Mode::Reverse(_)));
        let asks_http = config.has_mode(|m| !matches!(m, crate::mode::Mode::Socks5));
        let proxyauth = config.proxyauth.as_deref();
        let upstream_auth = config
            .upstream_auth
            .as_deref()
            .map(|auth| {
                if auth.find(':').is_some_and(|i| i > 0) {
                    Ok(crate::context::basic_auth(auth))
                } else {
                    Err(BuiltinError(format!(
                        "Invalid upstream auth specification: {auth}"
                    )))
                }
            })
            .transpose()?;
        Ok(Builtins {
            reverse_auth: upstream_auth.filter(|_| reverse),
            anticache: options.anticache,
            anticomp: options.anticomp,
            block: block::Block::new(options)?,
            map: map::Map::new(options)?,
            modify: modify::Modify::new(options)?,
            sticky: sticky::Sticky::new(options)?,
            proxyauth: proxyauth
                .map(|spec| proxyauth::ProxyAuth::new(spec, asks_http))
                .transpose()?,
        })
    }

    /// True when no addon acts on flows: the lifecycle then skips them altogether.
    /// (`block_global` and `block_private` act on connections and do not count here.)
    pub fn is_idle(&self) -> bool {
        !self.anticache
            && !self.anticomp
            && self.block.is_idle()
            && self.map.is_idle()
            && self.modify.is_idle()
            && self.sticky.is_idle()
            && self.proxyauth.as_ref().is_none_or(|auth| !auth.asks_http())
            && self.reverse_auth.is_none()
    }

    /// An addon acts in `request`, before the request goes to the server: the request body is
    /// then held in memory (as mitmproxy holds every body it does not stream), so that
    /// `request` runs before anything is sent.
    pub(crate) fn acts_in_request(&self) -> bool {
        self.anticache
            || self.anticomp
            || !self.block.is_idle()
            || !self.map.is_idle()
            || !self.modify.body_is_idle()
            || !self.sticky.is_idle()
    }

    /// The response body must be held in memory before `response`.
    pub(crate) fn needs_response_body(&self) -> bool {
        !self.modify.body_is_idle()
    }

    /// `client_connected`, before the scripts: `block_global`/`block_private`. Returns the
    /// connection's error when it is refused.
    pub(crate) fn client_connected(&self, peer: std::net::IpAddr) -> Option<&'static str> {
        self.block.client_connected(peer)
    }

    /// The proxy-authentication check, when `proxyauth` is set.
    pub(crate) fn proxyauth(&self) -> Option<&proxyauth::ProxyAuth> {
        self.proxyauth.as_ref()
    }

    /// `http_connect`, before the scripts: `proxyauth` answers 407 without valid credentials.
    /// Returns true when the CONNECT was authenticated (the tunnel's requests then are too).
    pub(crate) fn http_connect(&self, flow: &mut Flow) -> bool {
        match &self.proxyauth {
            Some(auth) if auth.asks_http() => auth.authenticate(flow),
            _ => true,
        }
    }

    /// `requestheaders`, before the scripts: `proxyauth` (requests in an authenticated tunnel
    /// or SOCKS5 connection pass; replays are not checked).
    pub(crate) fn requestheaders_before(&self, flow: &mut Flow) {
        if let Some(auth) = &self.proxyauth
            && auth.asks_http()
            && flow.is_replay.is_none()
        {
            auth.authenticate(flow);
        }
    }

    /// `requestheaders`, after the scripts: `modify_headers`, then `upstream_auth` in reverse
    /// mode.
    pub(crate) fn requestheaders_after(&self, flow: &mut Flow) {
        if flow.response.is_none() && flow.error.is_none() && flow.live {
            self.modify.request_headers(flow);
        }
        let reverse = || {
            flow.client_conn
                .as_ref()
                .is_some_and(|c| crate::mode::kind(&c.proxy_mode) == "reverse")
        };
        if let Some(auth) = &self.reverse_auth
            && reverse()
            && let Some(request) = flow.request.as_mut()
        {
            set_header(&mut request.headers, b"Authorization", auth);
        }
    }

    /// `request`, before the scripts: `block_list`, `anticache`, `anticomp`.
    pub(crate) fn request_before(&self, flow: &mut Flow) {
        self.block.request(flow);
        if let Some(request) = flow.request.as_mut() {
            if self.anticache {
                remove_header(&mut request.headers, b"if-modified-since");
                remove_header(&mut request.headers, b"if-none-match");
            }
            if self.anticomp {
                set_header(&mut request.headers, b"accept-encoding", b"identity");
            }
        }
    }

    /// `request`, after the scripts: `map_remote`, `map_local`, `modify_body`, `stickyauth`,
    /// `stickycookie`.
    pub(crate) fn request_after(&self, flow: &mut Flow) {
        self.map.request(flow);
        if flow.response.is_none() && flow.error.is_none() && flow.live {
            self.modify.request_body(flow);
        }
        self.sticky.request(flow);
    }

    /// `responseheaders`, after the scripts: `modify_headers`.
    pub(crate) fn responseheaders_after(&self, flow: &mut Flow) {
        if flow.error.is_none() && flow.live {
            self.modify.response_headers(flow);
        }
    }

    /// `response`, after the scripts: `modify_body`, `stickycookie`.
    pub(crate) fn response_after(&self, flow: &mut Flow) {
        if flow.error.is_none() && flow.live {
            self.modify.response_body(flow);
        }
        self.sticky.response(flow);
    }
}

/// Removes every field named `name` (mitmproxy's `headers.pop(name, None)` on a multi-dict).
pub(crate) fn remove_header(headers: &mut Vec<Header>, name: &[u8]) {
    headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
}

/// mitmproxy's `headers[name] = value`: the first field keeps its place with the new value,
/// the others go; without one the field is added at the end.
pub(crate) fn set_header(headers: &mut Vec<Header>, name: &[u8], value: &[u8]) {
    let mut seen = false;
    headers.retain_mut(|h| {
        if !h.name.eq_ignore_ascii_case(name) {
            return true;
        }
        if seen {
            return false;
        }
        seen = true;
        h.value = Bytes::copy_from_slice(value);
        true
    });
    if !seen {
        headers.push(Header {
            name: Bytes::copy_from_slice(name),
            value: Bytes::copy_from_slice(value),
        });
    }
}

/// mitmproxy's `Response.make(status, content, headers)`: HTTP/1.1, the status's reason,
/// `content-length` after the given headers.
pub(crate) fn make_response(status: u16, content: Bytes, headers: &[(&str, &str)]) -> Response {
    let now = crate::flow::now();
    let mut fields: Vec<Header> = headers
        .iter()
        .map(|(n, v)| Header {
            name: Bytes::copy_from_slice(n.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect();
    fields.push(Header {
        name: Bytes::from_static(b"content-length"),
        value: Bytes::from(content.len().to_string()),
    });
    Response {
        http_version: Bytes::from_static(b"HTTP/1.1"),
        headers: fields,
        content: Some(content),
        trailers: None,
        timestamp_start: now,
        timestamp_end: Some(now),
        status_code: u32::from(status),
        reason: Bytes::from_static(reason(status).as_bytes()),
        stream: flowtap_proto::v1::StreamMode::Buffer.into(),
    }
}

/// The `Server` header mitmproxy's built-ins put on the responses they make.
pub(crate) const SERVER: &str = "mitmproxy 12.3.1";

/// The reason phrase of the statuses mitmproxy names (`status_codes.RESPONSES`).
fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// `flow.metadata[key] = value`, replacing an earlier value of the key.
pub(crate) fn set_metadata(flow: &mut Flow, key: &str, value: Kind) {
    let entries = &mut flow.metadata.get_or_insert_with(Default::default).entries;
    entries.retain(|e| {
        !matches!(e.key.as_ref().and_then(|k| k.kind.as_ref()), Some(Kind::Text(k)) if k == key)
    });
    entries.push(ValueEntry {
        key: Some(Value {
            kind: Some(Kind::Text(key.to_string())),
        }),
        value: Some(Value { kind: Some(value) }),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn set_header_replaces_the_first_and_drops_the_rest() {
        let mut h = vec![
            header("A", "1"),
            header("Accept-Encoding", "gzip"),
            header("B", "2"),
            header("accept-encoding", "br"),
        ];
        set_header(&mut h, b"accept-encoding", b"identity");
        let names: Vec<_> = h.iter().map(|h| (&h.name[..], &h.value[..])).collect();
        assert_eq!(
            names,
            [
                (&b"A"[..], &b"1"[..]),
                (b"Accept-Encoding", b"identity"),
                (b"B", b"2")
            ]
        );
        set_header(&mut h, b"x-new", b"v");
        assert_eq!(&h[3].name[..], b"x-new");
    }

    #[test]
    fn made_responses_carry_their_length_and_reason() {
        let r = make_response(407, Bytes::from_static(b"abc"), &[("Server", SERVER)]);
        assert_eq!(&r.reason[..], b"Proxy Authentication Required");
        assert_eq!(&r.headers[1].value[..], b"3");
    }
}
