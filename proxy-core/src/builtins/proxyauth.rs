//! `proxyauth`: clients must authenticate (mitmproxy's `proxyauth` addon). `USER:PASS`, `any`
//! (any credentials, as long as there are some) or `@PATH` (an Apache htpasswd file with
//! bcrypt or `{SHA}` entries). In regular and upstream mode the client is asked as a proxy
//! asks (407, `Proxy-Authenticate`, `Proxy-Authorization`), in reverse mode as a server does
//! (401, `WWW-Authenticate`, `Authorization`); SOCKS5 clients authenticate in the handshake
//! (RFC 1929). A CONNECT that authenticated lets every request in its tunnel through, and the
//! credentials header is removed before the request goes on.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use bytes::Bytes;
use flowtap_proto::v1::value::Kind;
use flowtap_proto::v1::{Flow, Value, ValueList};

use super::{BuiltinError, make_response, remove_header, set_metadata};

const REALM: &str = "mitmproxy";

/// Who may use the proxy.
#[derive(Debug)]
pub enum Validator {
    /// `USER:PASS`: one user, compared in constant time.
    SingleUser {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// `any`: every user and password.
    Any,
    /// `@PATH`: the users of an htpasswd file and their password hashes.
    Htpasswd(HashMap<String, String>),
}

impl Validator {
    /// Parses a `proxyauth` value; the errors are mitmdump's.
    pub fn parse(spec: &str) -> Result<Validator, BuiltinError> {
        if spec == "any" {
            Ok(Validator::Any)
        } else if let Some(path) = spec.strip_prefix('@') {
            let path = match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
                _ => std::path::PathBuf::from(path),
            };
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| parse_htpasswd(&text).ok())
                .map(Validator::Htpasswd)
                .ok_or_else(|| {
                    BuiltinError(format!("Could not open htpasswd file: {}", path.display()))
                })
        } else if spec.starts_with("ldap") {
            Err(BuiltinError(
                "LDAP proxy authentication (proxyauth=ldap[s]:...) is not built in flowtap".into(),
            ))
        } else if spec.contains(':') {
            match spec.split(':').collect::<Vec<_>>().as_slice() {
                [user, password] => Ok(Validator::SingleUser {
                    user: user.to_string(),
                    password: password.to_string(),
                }),
                _ => Err(BuiltinError(
                    "Invalid single-user auth specification.".into(),
                )),
            }
        } else {
            Err(BuiltinError("Invalid proxyauth specification.".into()))
        }
    }

    /// True when `user` may use the proxy with `password`.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        match self {
            Validator::Any => true,
            Validator::SingleUser {
                user: u,
                password: p,
            } => bool::from(u.as_bytes().ct_eq(user) & p.as_bytes().ct_eq(password)),
            Validator::Htpasswd(users) => {
                let Some(hash) = std::str::from_utf8(user).ok().and_then(|u| users.get(u)) else {
                    return false;
                };
                check_hash(hash, password)
            }
        }
    }
}

/// The lines of an htpasswd file: `user:hash`, `#` comments and blank lines skipped; only
/// bcrypt and `{SHA}` hashes, as mitmproxy reads them.
fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':').filter(|(u, _)| !u.is_empty()) else {
            return Err(format!("Malformed htpasswd line: {line:?}"));
        };
        if !hash.starts_with("{SHA}")
            && !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p))
        {
            return Err(format!("Unsupported htpasswd format for user {user:?}"));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    Ok(users)
}

fn check_hash(hash: &str, password: &[u8]) -> bool {
    let hash = hash.split(':').next().unwrap_or_default();
    if let Some(expected) = hash.strip_prefix("{SHA}") {
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password);
        let given = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            expected.as_bytes(),
        ))
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

/// The check on HTTP requests and CONNECTs.
/// Which way a flow's client is asked depends on its listener's mode
/// (`client_conn.proxy_mode`), as in mitmproxy.
#[derive(Debug)]
pub(crate) struct ProxyAuth {
    validator: Validator,
    /// Some listener takes HTTP (is not SOCKS5).
    asks_http: bool,
    /// Client connections whose CONNECT authenticated, with the credentials.
    tunnels: Mutex<HashMap<String, (String, String)>>,
}

impl ProxyAuth {
    /// `asks_http`: some listener is not in SOCKS5 mode.
    pub(super) fn new(spec: &str, asks_http: bool) -> Result<ProxyAuth, BuiltinError> {
        Ok(ProxyAuth {
            validator: Validator::parse(spec)?,
            asks_http,
            tunnels: Mutex::new(HashMap::new()),
        })
    }

    /// HTTP requests and CONNECTs may be asked for credentials (some listener is not SOCKS5).
    pub(crate) fn asks_http(&self) -> bool {
        self.asks_http
    }

    /// The check SOCKS5 usernames and passwords go through.
    pub(crate) fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Checks the flow's credentials header: valid ones are recorded in
    /// `flow.metadata["proxyauth"]` and the header removed; otherwise the flow gets mitmproxy's
    /// 407 (or 401) page as its response. Requests on a client connection whose CONNECT
    /// authenticated pass with that CONNECT's credentials.
    /// A flow from a SOCKS5 listener passes (its client authenticated in the handshake).
    /// Clients of regular and upstream listeners are asked as a proxy asks (407,
    /// `Proxy-Authorization`), the others as a server does (401, `Authorization`).
    pub(super) fn authenticate(&self, flow: &mut Flow) -> bool {
        let mode = flow
            .client_conn
            .as_ref()
            .map_or("regular", |c| crate::mode::kind(&c.proxy_mode));
        if mode == "socks5" {
            return true;
        }
        let is_proxy = matches!(mode, "regular" | "upstream" | "");
        let client = flow.client_conn.as_ref().map(|c| c.id.clone());
        let tunnel = client.as_ref().and_then(|id| {
            self.tunnels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned()
        });
        if let Some((user, password)) = tunnel {
            record(flow, &user, &password);
            return true;
        }
        let header: &[u8] = if is_proxy {
            b"proxy-authorization"
        } else {
            b"authorization"
        };
        let credentials = flow.request.as_ref().and_then(|r| {
            r.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(header))
                .and_then(|h| parse_basic(&h.value))
        });
        match credentials {
            Some((user, password))
                if self.validator.check(user.as_bytes(), password.as_bytes()) =>
            {
                if let Some(request) = flow.request.as_mut() {
                    remove_header(&mut request.headers, header);
                }
                record(flow, &user, &password);
                true
            }
            _ => {
                flow.response = Some(auth_required(is_proxy));
                false
            }
        }
    }

    /// The CONNECT `flow` of `client_id` authenticated: its tunnel's requests pass, with its
    /// credentials, until the returned guard is dropped (when the tunnel ends).
    pub(crate) fn tunnel(&self, client_id: &str, flow: &Flow) -> TunnelAuth<'_> {
        let credentials = metadata_credentials(flow).unwrap_or_default();
        self.tunnels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client_id.to_string(), credentials);
        TunnelAuth {
            auth: self,
            client_id: client_id.to_string(),
        }
    }
}

/// An authenticated tunnel; dropping it forgets the client connection.
pub(crate) struct TunnelAuth<'a> {
    auth: &'a ProxyAuth,
    client_id: String,
}

impl Drop for TunnelAuth<'_> {
    fn drop(&mut self) {
        self.auth
            .tunnels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.client_id);
    }
}

/// `flow.metadata["proxyauth"] = (user, password)`.
fn record(flow: &mut Flow, user: &str, password: &str) {
    let text = |s: &str| Value {
        kind: Some(Kind::Text(s.to_string())),
    };
    set_metadata(
        flow,
        "proxyauth",
        Kind::List(ValueList {
            items: vec![text(user), text(password)],
        }),
    );
}

fn metadata_credentials(flow: &Flow) -> Option<(String, String)> {
    let entry = flow.metadata.as_ref()?.entries.iter().find(|e| {
        matches!(e.key.as_ref().and_then(|k| k.kind.as_ref()), Some(Kind::Text(k)) if k == "proxyauth")
    })?;
    let Some(Kind::List(list)) = entry.value.as_ref()?.kind.as_ref() else {
        return None;
    };
    match list.items.as_slice() {
        [
            Value {
                kind: Some(Kind::Text(user)),
            },
            Value {
                kind: Some(Kind::Text(password)),
            },
        ] => Some((user.clone(), password.clone())),
        _ => None,
    }
}

/// `Basic base64(user:password)`, as mitmproxy's `parse_http_basic_auth` reads it: two words,
/// the scheme `basic` in any case, exactly one `:` in the decoded text.
fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut words = text.split_whitespace();
    let (scheme, info) = (words.next()?, words.next()?);
    if words.next().is_some() || !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(info)
        .ok()?;
    let decoded = String::from_utf8_lossy(&decoded);
    let mut parts = decoded.split(':');
    let (user, password) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

/// mitmproxy's `make_auth_required_response`.
fn auth_required(is_proxy: bool) -> flowtap_proto::v1::Response {
    let (status, name, reason) = if is_proxy {
        (407, "Proxy-Authenticate", "Proxy Authentication Required")
    } else {
        (401, "WWW-Authenticate", "Unauthorized")
    };
    let page = format!(
        "<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
    );
    let challenge = format!("Basic realm=\"{REALM}\"");
    make_response(status, Bytes::from(page), &[(name, &challenge)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(matches!(Validator::parse("any"), Ok(Validator::Any)));
        assert!(Validator::parse("a:b").unwrap().check(b"a", b"b"));
        assert!(!Validator::parse("a:b").unwrap().check(b"a", b"c"));
        assert_eq!(
            Validator::parse("a:b:c").unwrap_err().0,
            "Invalid single-user auth specification."
        );
        assert_eq!(
            Validator::parse("bad").unwrap_err().0,
            "Invalid proxyauth specification."
        );
        assert!(
            Validator::parse("@/no/such/file")
                .unwrap_err()
                .0
                .starts_with("Could not open htpasswd file: /no/such/file")
        );
    }

    #[test]
    fn htpasswd_sha_and_bcrypt() {
        // `htpasswd -nbs alice secret` and a bcrypt hash of "secret" made at test time.
        let bcrypt = bcrypt::hash("secret", 4).unwrap();
        let text = format!("# users\nalice:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\nbob:{bcrypt}\n");
        let v = Validator::Htpasswd(parse_htpasswd(&text).unwrap());
        assert!(v.check(b"alice", b"secret"));
        assert!(!v.check(b"alice", b"wrong"));
        assert!(v.check(b"bob", b"secret"));
        assert!(!v.check(b"bob", b"Secret"));
        assert!(!v.check(b"carol", b"secret"));
        assert!(parse_htpasswd("carol:$apr1$xyz").is_err());
        assert!(parse_htpasswd("nocolon").is_err());
    }

    #[test]
    fn basic_credentials() {
        assert_eq!(
            parse_basic(b"Basic dXNlcjpwYXNz"),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(
            parse_basic(b"basic dXNlcjpwYXNz"),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(parse_basic(b"Bearer dXNlcjpwYXNz"), None);
        // "a:b:c" has two colons.
        assert_eq!(parse_basic(b"Basic YTpiOmM="), None);
    }
}
