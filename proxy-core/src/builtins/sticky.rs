//! `stickycookie` (cookies servers set are added to later matching requests) and `stickyauth`
//! (the last `Authorization` a host saw is added to later matching requests without one), as
//! mitmproxy's `stickycookie` and `stickyauth` addons. Their state lives as long as the proxy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use flowtap_flow::Filter;
use flowtap_proto::v1::Flow;
use flowtap_proto::v1::value::Kind;

use super::{BuiltinError, BuiltinOptions, set_header, set_metadata, spec};

/// Cookies by (domain, port, path), in the order first seen.
type Jar = Vec<((String, u32, String), Vec<(String, String)>)>;

#[derive(Debug)]
pub(super) struct Sticky {
    cookie: Option<Filter>,
    auth: Option<Filter>,
    jar: Mutex<Jar>,
    /// The last `Authorization` value per host.
    hosts: Mutex<HashMap<String, Bytes>>,
}

impl Sticky {
    pub(super) fn new(options: &BuiltinOptions) -> Result<Sticky, BuiltinError> {
        let filter = |text: &Option<String>| {
            text.as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| spec::parse_filter(t).map_err(BuiltinError))
                .transpose()
        };
        Ok(Sticky {
            cookie: filter(&options.stickycookie)?,
            auth: filter(&options.stickyauth)?,
            jar: Mutex::new(Vec::new()),
            hosts: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn is_idle(&self) -> bool {
        self.cookie.is_none() && self.auth.is_none()
    }

    /// `request`: stickyauth, then stickycookie (mitmproxy's order).
    pub(super) fn request(&self, flow: &mut Flow) {
        if let Some(filter) = &self.auth {
            self.auth_request(filter, flow);
        }
        if let Some(filter) = &self.cookie {
            self.cookie_request(filter, flow);
        }
    }

    fn auth_request(&self, filter: &Filter, flow: &mut Flow) {
        let matches = filter.matches(flow);
        let Some(request) = flow.request.as_mut() else {
            return;
        };
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let given = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(b"authorization"));
        if let Some(given) = given {
            hosts.insert(request.host.clone(), given.value.clone());
        } else if matches && let Some(value) = hosts.get(&request.host) {
            set_header(&mut request.headers, b"authorization", value);
        }
    }

    fn cookie_request(&self, filter: &Filter, flow: &mut Flow) {
        if !filter.matches(flow) {
            return;
        }
        let Some(request) = flow.request.as_mut() else {
            return;
        };
        let mut cookies: Vec<(String, String)> = Vec::new();
        {
            let jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
            for ((domain, port, path), entries) in jar.iter() {
                if domain_match(&request.host, domain)
                    && request.port == *port
                    && request.path.starts_with(path.as_bytes())
                {
                    cookies.extend(entries.iter().cloned());
                }
            }
        }
        if cookies.is_empty() {
            return;
        }
        set_header(
            &mut request.headers,
            b"cookie",
            format_cookie_header(&cookies).as_bytes(),
        );
        set_metadata(flow, "stickycookie", Kind::Bool(true));
    }

    /// `response`: the cookies the server set are kept (or, when expired, dropped).
    pub(super) fn response(&self, flow: &mut Flow) {
        if self.cookie.is_none() {
            return;
        }
        let (Some(request), Some(response)) = (&flow.request, &flow.response) else {
            return;
        };
        let mut jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
        for field in response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(b"set-cookie"))
        {
            let Some(cookie) = parse_set_cookie(&String::from_utf8_lossy(&field.value)) else {
                continue;
            };
            let key = (
                cookie.attr("domain").unwrap_or(&request.host).to_string(),
                request.port,
                cookie.attr("path").unwrap_or("/").to_string(),
            );
            if !domain_match(&request.host, &key.0) {
                continue;
            }
            let slot = jar.iter().position(|(k, _)| *k == key);
            if cookie.is_expired() {
                if let Some(i) = slot {
                    jar[i].1.retain(|(name, _)| *name != cookie.name);
                    if jar[i].1.is_empty() {
                        jar.remove(i);
                    }
                }
                continue;
            }
            let i = slot.unwrap_or_else(|| {
                jar.push((key, Vec::new()));
                jar.len() - 1
            });
            let entries = &mut jar[i].1;
            match entries.iter_mut().find(|(name, _)| *name == cookie.name) {
                Some(entry) => entry.1 = cookie.value,
                None => entries.push((cookie.name, cookie.value)),
            }
        }
    }
}

/// One `Set-Cookie` value: name, value and attributes (names lower-cased; the last of a name
/// wins, as in mitmproxy's `CookieAttrs`).
struct SetCookie {
    name: String,
    value: String,
    attrs: Vec<(String, String)>,
}

impl SetCookie {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// mitmproxy's `is_expired`: `Expires` in the past, else `Max-Age` of 0 or less.
    fn is_expired(&self) -> bool {
        if let Some(expires) = self.attr("expires") {
            return httpdate::parse_http_date(expires).is_ok_and(|t| t <= SystemTime::now());
        }
        match self.attr("max-age").map(|m| m.trim().parse::<i64>()) {
            Some(Ok(seconds)) => seconds <= 0,
            _ => false,
        }
    }
}

fn parse_set_cookie(line: &str) -> Option<SetCookie> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let attrs = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = k.trim().to_ascii_lowercase();
            (!k.is_empty()).then(|| (k, v.trim().to_string()))
        })
        .collect();
    Some(SetCookie {
        name: name.to_string(),
        value: value.trim().trim_matches('"').to_string(),
        attrs,
    })
}

/// `name=value; ...`, a value with special characters quoted (mitmproxy's `_format_pairs`).
fn format_cookie_header(pairs: &[(String, String)]) -> String {
    let special = |v: &str| {
        v.chars()
            .any(|c| "\",;\\".contains(c) || !('\x21'..='\x7e').contains(&c))
    };
    pairs
        .iter()
        .map(|(k, v)| {
            if special(v) {
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
                format!("{k}=\"{escaped}\"")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// mitmproxy's `domain_match`: `http.cookiejar.domain_match(a, b)`, or with `b`'s dots
/// stripped.
fn domain_match(a: &str, b: &str) -> bool {
    cookiejar_domain_match(a, b) || cookiejar_domain_match(a, b.trim_matches('.'))
}

/// RFC 2965 domain matching as Python's `cookiejar.domain_match`.
fn cookiejar_domain_match(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a == b {
        return true;
    }
    if !is_hdn(&a) {
        return false;
    }
    match a.rfind(&b) {
        None | Some(0) => false,
        Some(_) => b.starts_with('.') && is_hdn(&b[1..]),
    }
}

/// A host domain name: not an IP address, not empty, no dot at either end.
fn is_hdn(text: &str) -> bool {
    let ends_in_number = text
        .rsplit_once('.')
        .is_some_and(|(_, last)| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()));
    !ends_in_number && !text.is_empty() && !text.starts_with('.') && !text.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_as_cookiejar_does() {
        assert!(domain_match("www.example.com", ".example.com"));
        // Python's cookiejar wants the leading dot for subdomains.
        assert!(!domain_match("www.example.com", "example.com"));
        assert!(domain_match("example.com", "example.com"));
        assert!(!domain_match("example.com", "other.com"));
        assert!(domain_match("127.0.0.1", "127.0.0.1"));
        assert!(!domain_match("10.0.0.1", ".0.0.1"));
    }

    #[test]
    fn set_cookie_values_and_expiry() {
        let c = parse_set_cookie("SID=abc; Path=/app; Max-Age=0").unwrap();
        assert_eq!((c.name.as_str(), c.value.as_str()), ("SID", "abc"));
        assert_eq!(c.attr("path"), Some("/app"));
        assert!(c.is_expired());
        let c = parse_set_cookie("a=b; Expires=Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert!(c.is_expired());
        assert!(!parse_set_cookie("a=b; Max-Age=100").unwrap().is_expired());
        assert_eq!(
            format_cookie_header(&[("a".into(), "1".into()), ("b".into(), "x y".into())]),
            "a=1; b=\"x y\""
        );
    }
}
