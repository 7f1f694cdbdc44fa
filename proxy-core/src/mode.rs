//! Proxy modes as mitmproxy 12 spells them (`--mode SPEC`, `SPEC@PORT`, `SPEC@HOST:PORT`): what
//! a listener does with the connections it accepts. One process may have several listeners, each
//! with its own mode ([`crate::config::Listener`]); a client connection records its listener's
//! full spec as `client_conn.proxy_mode`, and what depends on the mode is decided per connection.
//!
//! Built so far: `regular` (an explicit HTTP proxy: absolute-form requests and CONNECT),
//! `reverse:URL` for `http://`, `https://`, `tls://` and `tcp://` targets (every request or
//! connection goes to the target; a TLS client is intercepted with a certificate for the name it
//! asked for), `upstream:URL` for an `http://` or `https://` next proxy (with `upstream_auth`),
//! `socks5` (CONNECT, with `proxyauth`), `transparent` (the original destination of a
//! redirected connection, see `transparent`) and `dns`. `dns`, `reverse:dns://HOST[:PORT]` and
//! `reverse:udp://HOST:PORT` listen on UDP ([`Mode::is_udp`], served by `udp`); the DNS modes
//! take DNS over TCP on the same port too.

use std::fmt;

/// What a listener does with its connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// mitmproxy's regular mode: an explicit HTTP(S) proxy.
    Regular,
    /// mitmproxy's reverse mode: every request goes to one server.
    Reverse(ReverseTarget),
    /// mitmproxy's socks5 mode: a SOCKS5 proxy (CONNECT only; `proxyauth` for a password).
    Socks5,
    /// mitmproxy's upstream mode: a regular proxy whose server connections go through another
    /// HTTP proxy (plain requests in absolute form, everything else through CONNECT).
    Upstream(UpstreamProxy),
    /// mitmproxy's transparent mode (Linux): connections redirected to the listener by the
    /// firewall (nftables/iptables `REDIRECT`) go where the client sent them, the original
    /// destination the kernel kept for the socket; then as after a CONNECT to it.
    Transparent,
    /// mitmproxy's dns mode: a DNS server on UDP whose queries are DNS flows (`dns`).
    Dns,
}

/// The next proxy of upstream mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamProxy {
    /// `https://`: the connection to the next proxy is TLS (verified as any server's).
    pub tls: bool,
    /// Its host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// The server of a reverse proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseTarget {
    /// `http`, `https`, `tls`, `tcp`, `udp` or `dns`: how the proxy talks to the server (`tcp`:
    /// every connection is relayed to it as a TCP flow; `tls`: the same inside TLS on both
    /// sides; `udp`: the datagrams of each client address are relayed as a UDP flow; `dns`: each
    /// query is a DNS flow forwarded to the server).
    pub scheme: &'static str,
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    pub port: u16,
}

impl ReverseTarget {
    /// `host` or `host:port` when the port is not the scheme's default, as a `Host` header.
    pub fn authority(&self) -> String {
        crate::flow::authority(self.scheme, &self.host, self.port)
    }
}

/// A parsed `--mode` value: the mode, where its listener listens if the spec says, and the spec
/// as given (what scripts see as `proxy_mode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeSpec {
    /// The mode.
    pub mode: Mode,
    /// `@PORT` or `@HOST:PORT`: (host if given, port).
    pub listen: Option<(Option<String>, u16)>,
    /// The spec as given.
    pub full: String,
}

/// A `--mode` value that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid proxy mode {spec:?}: {reason}")]
pub struct ModeError {
    spec: String,
    reason: String,
}

impl Mode {
    /// Where a listener for this mode listens when neither its spec nor `listen_port` says, as
    /// in mitmproxy: 1080 for socks5, 53 for DNS (`dns`, `reverse:dns://`), else 8080.
    pub fn default_port(&self) -> u16 {
        match self {
            Mode::Socks5 => 1080,
            Mode::Dns => 53,
            Mode::Reverse(target) if target.scheme == "dns" => 53,
            _ => 8080,
        }
    }

    /// True when a DNS server (`dns`, `reverse:dns://`): its listener takes DNS over TCP on
    /// the same port as well, as mitmproxy's.
    pub fn is_dns(&self) -> bool {
        match self {
            Mode::Dns => true,
            Mode::Reverse(target) => target.scheme == "dns",
            Mode::Regular | Mode::Socks5 | Mode::Upstream(_) | Mode::Transparent => false,
        }
    }

    /// The listener takes TCP connections: every mode but `reverse:udp://` (the DNS modes on
    /// UDP as well).
    pub fn is_tcp(&self) -> bool {
        !self.is_udp() || self.is_dns()
    }

    /// The listener is a UDP socket: `dns`, `reverse:dns://` (with a TCP one on the same port,
    /// [`Mode::is_dns`]) and `reverse:udp://`.
    pub fn is_udp(&self) -> bool {
        match self {
            Mode::Dns => true,
            Mode::Reverse(target) => matches!(target.scheme, "udp" | "dns"),
            Mode::Regular | Mode::Socks5 | Mode::Upstream(_) | Mode::Transparent => false,
        }
    }
}

impl ModeSpec {
    /// `regular`, listening where the options say.
    pub fn regular() -> Self {
        ModeSpec {
            mode: Mode::Regular,
            listen: None,
            full: "regular".into(),
        }
    }

    /// Parses `regular`, `reverse:URL`, with an optional `@PORT` or `@HOST:PORT`. Modes flowtap
    /// does not have yet are refused with a message that says so.
    pub fn parse(spec: &str) -> Result<Self, ModeError> {
        let fail = |reason: String| ModeError {
            spec: spec.to_string(),
            reason,
        };
        let (body, listen) = match spec.rsplit_once('@') {
            Some((body, at)) => (body, Some(parse_listen(at).map_err(fail)?)),
            None => (spec, None),
        };
        let (kind, data) = match body.split_once(':') {
            Some((kind, data)) => (kind, Some(data)),
            None => (body, None),
        };
        let mode = match (kind, data) {
            ("regular", None) => Mode::Regular,
            ("reverse", Some(url)) => Mode::Reverse(parse_target(url, "https").map_err(fail)?),
            ("reverse", None) => return Err(fail("reverse mode needs a URL: reverse:URL".into())),
            ("upstream", Some(url)) => {
                let target = parse_target(url, "http").map_err(fail)?;
                if !matches!(target.scheme, "http" | "https") {
                    return Err(fail(format!(
                        "invalid upstream proxy scheme {:?} (http or https)",
                        target.scheme
                    )));
                }
                Mode::Upstream(UpstreamProxy {
                    tls: target.scheme == "https",
                    host: target.host,
                    port: target.port,
                })
            }
            ("upstream", None) => {
                return Err(fail(
                    "upstream mode needs a URL: upstream:http://HOST:PORT".into(),
                ));
            }
            ("regular", Some(_)) => return Err(fail("regular mode takes no argument".into())),
            ("socks5", None) => Mode::Socks5,
            ("socks5", Some(_)) => return Err(fail("socks5 mode takes no argument".into())),
            ("transparent", None) => Mode::Transparent,
            ("transparent", Some(_)) => {
                return Err(fail("transparent mode takes no argument".into()));
            }
            ("dns", None) => Mode::Dns,
            ("dns", Some(_)) => return Err(fail("dns mode takes no argument".into())),
            ("wireguard" | "local" | "tun", _) => {
                return Err(fail(format!(
                    "the {kind} mode is not available in flowtap yet (regular, reverse, upstream, socks5, transparent and dns are)"
                )));
            }
            _ => return Err(fail(format!("unknown mode {kind:?}"))),
        };
        Ok(ModeSpec {
            mode,
            listen,
            full: spec.to_string(),
        })
    }
}

/// The kind of mode a `client_conn.proxy_mode` spec names (`regular`, `reverse`, `socks5`...):
/// the word before its first `:` or `@`. For what a flow's mode decides without parsing it.
pub(crate) fn kind(spec: &str) -> &str {
    spec.split([':', '@']).next().unwrap_or(spec)
}

impl fmt::Display for ModeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

fn parse_listen(at: &str) -> Result<(Option<String>, u16), String> {
    let (host, port) = match at.rsplit_once(':') {
        Some((host, port)) => (Some(host.trim_matches(['[', ']']).to_string()), port),
        None => (None, at),
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("invalid listen port {port:?} after @"))?;
    Ok((host, port))
}

/// `[SCHEME://]HOST[:PORT][/]` as mitmproxy's server specs: `default_scheme` when none is
/// given; http, https and dns have default ports, the others need one. The schemes flowtap
/// does not serve yet are refused with a message that says so.
fn parse_target(url: &str, default_scheme: &str) -> Result<ReverseTarget, String> {
    let (scheme, rest) = url.split_once("://").unwrap_or((default_scheme, url));
    let (scheme, default_port): (&'static str, Option<u16>) = match scheme {
        "http" => ("http", Some(80)),
        "https" => ("https", Some(443)),
        "tls" => ("tls", None),
        "tcp" => ("tcp", None),
        "udp" => ("udp", None),
        "dns" => ("dns", Some(53)),
        "dtls" | "quic" | "http3" => {
            return Err(format!(
                "reverse targets with scheme {scheme:?} are not available in flowtap yet (http, https, tls, tcp, udp and dns are)"
            ));
        }
        other => return Err(format!("invalid server scheme {other:?}")),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("the target has no host".into());
    }
    if authority.contains('/') {
        return Err(format!("the target {url:?} may not have a path"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or("unclosed [ in the target's host")?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("the target has no host".into());
    }
    let port = match (port, default_port) {
        (Some(p), _) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
        (None, Some(port)) => port,
        (None, None) => {
            return Err(format!(
                "a {scheme}:// target needs a port: {scheme}://HOST:PORT"
            ));
        }
    };
    Ok(ReverseTarget {
        scheme,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_as_mitmproxy_spells_them() {
        let spec = ModeSpec::parse("reverse:https://example.com:8443/@9090").unwrap();
        assert_eq!(
            spec.mode,
            Mode::Reverse(ReverseTarget {
                scheme: "https",
                host: "example.com".into(),
                port: 8443
            })
        );
        assert_eq!(spec.listen, Some((None, 9090)));
        assert_eq!(spec.full, "reverse:https://example.com:8443/@9090");
        let spec = ModeSpec::parse("reverse:http://[::1]@127.0.0.1:8081").unwrap();
        assert_eq!(spec.listen, Some((Some("127.0.0.1".into()), 8081)));
        assert!(matches!(spec.mode, Mode::Reverse(ref t) if t.host == "::1" && t.port == 80));
        assert_eq!(ModeSpec::parse("regular").unwrap().mode, Mode::Regular);
        assert_eq!(
            ModeSpec::parse("upstream:http://proxy.corp:3128")
                .unwrap()
                .mode,
            Mode::Upstream(UpstreamProxy {
                tls: false,
                host: "proxy.corp".into(),
                port: 3128
            })
        );
        assert_eq!(
            ModeSpec::parse("upstream:https://proxy.corp").unwrap().mode,
            Mode::Upstream(UpstreamProxy {
                tls: true,
                host: "proxy.corp".into(),
                port: 443
            })
        );
        // As mitmproxy: a reverse target without a scheme is https.
        assert_eq!(
            ModeSpec::parse("reverse:example.com").unwrap().mode,
            Mode::Reverse(ReverseTarget {
                scheme: "https",
                host: "example.com".into(),
                port: 443
            })
        );
        assert_eq!(
            ModeSpec::parse("reverse:tls://10.0.0.1:993").unwrap().mode,
            Mode::Reverse(ReverseTarget {
                scheme: "tls",
                host: "10.0.0.1".into(),
                port: 993
            })
        );
        for bad in [
            "reverse",
            "reverse:ftp://x",
            "reverse:http://x/path",
            "reverse:http://:80",
            "regular@x",
            "upstream:tcp://proxy:3128",
            "upstream",
            "reverse:tcp://db.internal",
            "reverse:tls://db.internal",
            "reverse:udp://x",
            "reverse:dtls://x:443",
            "nonsense",
        ] {
            assert!(ModeSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ModeSpec::parse("socks5@1080").unwrap().mode, Mode::Socks5);
        assert_eq!(
            ModeSpec::parse("reverse:tcp://db.internal:5432")
                .unwrap()
                .mode,
            Mode::Reverse(ReverseTarget {
                scheme: "tcp",
                host: "db.internal".into(),
                port: 5432
            })
        );
        assert_eq!(
            ModeSpec::parse("transparent@127.0.0.1:8080").unwrap().mode,
            Mode::Transparent
        );
        assert!(ModeSpec::parse("transparent:x").is_err());
        assert_eq!(Mode::Socks5.default_port(), 1080);
        assert_eq!(Mode::Dns.default_port(), 53);
        assert_eq!(Mode::Regular.default_port(), 8080);
        let e = ModeSpec::parse("wireguard").unwrap_err().to_string();
        assert!(e.contains("not available in flowtap yet"), "{e}");
    }

    #[test]
    fn kind_is_the_word_before_the_data_or_the_address() {
        assert_eq!(kind("reverse:http://x@8080"), "reverse");
        assert_eq!(kind("socks5@1080"), "socks5");
        assert_eq!(kind("regular"), "regular");
        assert_eq!(kind(""), "");
    }

    #[test]
    fn udp_and_dns_targets_parse_as_mitmproxy_spells_them() {
        let target = |spec: &str| match ModeSpec::parse(spec).unwrap().mode {
            Mode::Reverse(target) => target,
            other => panic!("{spec}: {other:?}"),
        };
        let udp = target("reverse:udp://10.0.0.1:5353");
        assert_eq!(
            (udp.scheme, udp.host.as_str(), udp.port),
            ("udp", "10.0.0.1", 5353)
        );
        let dns = target("reverse:dns://9.9.9.9");
        assert_eq!(
            (dns.scheme, dns.host.as_str(), dns.port),
            ("dns", "9.9.9.9", 53)
        );
        let dns = target("reverse:dns://[::1]:5300/@127.0.0.1:0");
        assert_eq!(
            (dns.scheme, dns.host.as_str(), dns.port),
            ("dns", "::1", 5300)
        );
        let e = ModeSpec::parse("reverse:udp://x").unwrap_err().to_string();
        assert!(e.contains("udp://HOST:PORT"), "{e}");
        for (spec, udp) in [
            ("dns", true),
            ("reverse:dns://1.1.1.1", true),
            ("reverse:udp://h:1", true),
            ("reverse:tcp://h:1", false),
            ("reverse:https://h", false),
            ("regular", false),
            ("socks5", false),
        ] {
            assert_eq!(ModeSpec::parse(spec).unwrap().mode.is_udp(), udp, "{spec}");
        }
        assert!(ModeSpec::parse("reverse:dns://h").unwrap().mode.is_dns());
        assert!(ModeSpec::parse("dns").unwrap().mode.is_tcp());
        assert!(!ModeSpec::parse("reverse:udp://h:1").unwrap().mode.is_tcp());
        assert!(!ModeSpec::parse("reverse:udp://h:53").unwrap().mode.is_dns());
        // A DNS server listens on port 53 unless told otherwise, as in mitmproxy.
        assert_eq!(target("reverse:dns://1.1.1.1").scheme, "dns");
        assert_eq!(
            ModeSpec::parse("reverse:dns://1.1.1.1")
                .unwrap()
                .mode
                .default_port(),
            53
        );
        assert_eq!(
            ModeSpec::parse("reverse:udp://h:1")
                .unwrap()
                .mode
                .default_port(),
            8080
        );
    }

    #[test]
    fn authority_omits_the_default_port() {
        let t = |scheme, port| ReverseTarget {
            scheme,
            host: "h".into(),
            port,
        };
        assert_eq!(t("https", 443).authority(), "h");
        assert_eq!(t("http", 8080).authority(), "h:8080");
    }
}
