//! `--set name=value` options, typed as mitmproxy types them, split into the ones flowtap
//! knows and the ones left for scripts to register (mitmproxy's deferred options).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use flowtap_proto::v1::{self, option_value::Kind};

/// The options flowtap itself understands, with mitmproxy's names and defaults.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) confdir: PathBuf,
    pub(crate) listen_host: String,
    /// None: each mode's default port (8080; 1080 for socks5, 53 for dns), as in mitmproxy.
    pub(crate) listen_port: Option<u16>,
    pub(crate) flow_detail: u8,
    pub(crate) termlog_verbosity: String,
    pub(crate) ssl_insecure: bool,
    pub(crate) ssl_verify_upstream_trusted_ca: Vec<PathBuf>,
    pub(crate) stream_large_bodies: Option<u64>,
    pub(crate) http2: bool,
    pub(crate) ignore_hosts: Vec<String>,
    /// Name servers for the dns mode's queries other than A/AAAA (`dns_name_servers`).
    pub(crate) dns_name_servers: Vec<String>,
    pub(crate) allow_hosts: Vec<String>,
    /// Hosts whose tunnels carry raw TCP flows (`tcp_hosts`, `--tcp-hosts`).
    pub(crate) tcp_hosts: Vec<String>,
    /// WebSocket connections become WebSocket flows (`websocket`).
    pub(crate) websocket: bool,
    pub(crate) shutdown_grace: Duration,
    /// The deadline of one hook call (`hook_timeout`, seconds); None (unset, or 0): no
    /// deadline, as in mitmdump.
    pub(crate) hook_timeout: Option<Duration>,
    /// How long a hook call may run before it counts as stuck (`hook_stuck_timeout`, seconds;
    /// default four times `hook_timeout`, or 60 without one; 0: never). With a deadline one
    /// stuck call gets its worker replaced; without one, all of its hook threads stuck do.
    pub(crate) hook_stuck_timeout: Option<Duration>,
    /// What a failed hook call does to its flow (`script_failure=open|closed`).
    pub(crate) script_failure: String,
    /// Worker processes to run the scripts in (`script_workers`).
    pub(crate) script_workers: usize,
    /// With `-r`, keep serving after the file was read.
    pub(crate) keepserving: bool,
    /// `--mode` / `--set mode=SPEC` (mitmproxy's syntax; empty: regular).
    pub(crate) mode: Vec<String>,
    /// In reverse mode, keep the client's `Host` header (`keep_host_header`).
    pub(crate) keep_host_header: bool,
    /// In upstream mode, `user:password` for the next proxy (`upstream_auth`).
    pub(crate) upstream_auth: Option<String>,
    /// Who may use the proxy (`proxyauth`: `USER:PASS`, `any`, `@HTPASSWD`).
    pub(crate) proxyauth: Option<String>,
    /// mitmdump's built-in addons (`map_remote`, `modify_headers`, `anticache`, ...).
    pub(crate) builtins: flowtap_proxy_core::builtins::BuiltinOptions,
    /// Show URLs with the `Host` header's host in the flow output (`showhost`).
    pub(crate) showhost: bool,
    /// When a tunnel's server connection is opened (`connection_strategy`: `eager` or
    /// `lazy`).
    pub(crate) connection_strategy: String,
    /// Client replay requests in flight at once: 1, or -1 for no limit
    /// (`client_replay_concurrency`, as mitmproxy allows).
    pub(crate) client_replay_concurrency: i64,
    /// Client deadlines (`request_head_timeout`, `client_idle_timeout`,
    /// `tls_handshake_timeout`, `tunnel_idle_timeout`, seconds), as the proxy's config has them.
    pub(crate) request_head_timeout: Duration,
    pub(crate) client_idle_timeout: Duration,
    pub(crate) tls_handshake_timeout: Duration,
    pub(crate) tunnel_idle_timeout: Duration,
    /// Client connections served at once (`max_client_connections`; 0: from the descriptor
    /// limit).
    pub(crate) max_client_connections: usize,
    /// Larger bodies are refused (`body_size_limit`, mitmproxy's size syntax).
    pub(crate) body_size_limit: Option<u64>,
    /// The TLS options (`certs`, `client_certs`, `upstream_cert`, `tls_version_*`, ...).
    pub(crate) tls: crate::tls::TlsOptions,
    /// Values for options no part of flowtap knows: offered to scripts.
    pub(crate) deferred: BTreeMap<String, String>,
}

impl Default for Options {
    fn default() -> Self {
        let defaults = flowtap_proxy_core::Config::default();
        Self {
            confdir: home().join(".flowtap"),
            listen_host: "127.0.0.1".into(),
            listen_port: None,
            flow_detail: 1,
            termlog_verbosity: "info".into(),
            ssl_insecure: false,
            ssl_verify_upstream_trusted_ca: Vec::new(),
            stream_large_bodies: None,
            http2: true,
            ignore_hosts: Vec::new(),
            dns_name_servers: Vec::new(),
            allow_hosts: Vec::new(),
            tcp_hosts: Vec::new(),
            websocket: true,
            shutdown_grace: Duration::from_secs(5),
            keepserving: false,
            mode: Vec::new(),
            keep_host_header: false,
            upstream_auth: None,
            proxyauth: None,
            builtins: flowtap_proxy_core::builtins::BuiltinOptions::default(),
            showhost: false,
            connection_strategy: "eager".into(),
            client_replay_concurrency: 1,
            request_head_timeout: defaults.request_head_timeout,
            client_idle_timeout: defaults.client_idle_timeout,
            tls_handshake_timeout: defaults.tls_handshake_timeout,
            tunnel_idle_timeout: defaults.tunnel_idle_timeout,
            max_client_connections: defaults.max_client_connections,
            body_size_limit: defaults.body_size_limit,
            hook_timeout: None,
            hook_stuck_timeout: None,
            script_failure: "open".into(),
            script_workers: 1,
            tls: crate::tls::TlsOptions::default(),
            deferred: BTreeMap::new(),
        }
    }
}

/// Options the command reads from the deferred set itself (the rest is for scripts).
pub(crate) const CLI_OPTIONS: [&str; 4] = [
    "save_stream_filter",
    "hardump",
    "intercept",
    "intercept_active",
];

/// mitmdump's options flowtap does not act on (docs/options.md): a `--set` of one is offered to
/// scripts and warned about, since it changes nothing in the proxy.
pub(crate) const NOT_BUILT: [&str; 25] = [
    "ciphers_client",
    "ciphers_server",
    "connect_addr",
    "dns_name_servers",
    "dns_use_hosts_file",
    "dumper_default_contentview",
    "dumper_filter",
    "emudhra",
    "emudhra_old",
    "http_connect_send_host_header",
    "keep_alt_svc_header",
    "normalize_outbound_headers",
    "onboarding",
    "onboarding_host",
    "protobuf_definitions",
    "proxy_debug",
    "rawtcp",
    "readfile_filter",
    "request_client_cert",
    "show_ignored_hosts",
    "store_streamed_bodies",
    "strip_ech",
    "tls_ecdh_curve_client",
    "tls_ecdh_curve_server",
    "udp_hosts",
];

/// The user's home directory (for `~` and the default confdir).
pub(crate) fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Expands a leading `~/`.
pub(crate) fn expand_tilde(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None if path == "~" => home(),
        None => PathBuf::from(path),
    }
}

impl Options {
    /// The proxy's own options as scripts see them in `ctx.options` (read-only there: the
    /// proxy does not take changes from scripts).
    pub(crate) fn for_scripts(&self) -> Vec<v1::Option> {
        let text = |s: &str| Kind::Text(s.to_string());
        let list = |items: &[String]| {
            Kind::List(v1::StringList {
                items: items.to_vec(),
            })
        };
        let optional = |value: &Option<String>| match value {
            Some(v) => Kind::Text(v.clone()),
            None => Kind::Null(true),
        };
        let values = [
            (
                "mode",
                list(&if self.mode.is_empty() {
                    vec!["regular".to_string()]
                } else {
                    self.mode.clone()
                }),
            ),
            ("keep_host_header", Kind::Bool(self.keep_host_header)),
            ("map_remote", list(&self.builtins.map_remote)),
            ("map_local", list(&self.builtins.map_local)),
            ("modify_headers", list(&self.builtins.modify_headers)),
            ("modify_body", list(&self.builtins.modify_body)),
            ("anticache", Kind::Bool(self.builtins.anticache)),
            ("anticomp", Kind::Bool(self.builtins.anticomp)),
            ("stickycookie", optional(&self.builtins.stickycookie)),
            ("stickyauth", optional(&self.builtins.stickyauth)),
            ("block_global", Kind::Bool(self.builtins.block_global)),
            ("block_private", Kind::Bool(self.builtins.block_private)),
            ("block_list", list(&self.builtins.block_list)),
            ("showhost", Kind::Bool(self.showhost)),
            ("connection_strategy", text(&self.connection_strategy)),
            (
                "client_replay_concurrency",
                Kind::Int(self.client_replay_concurrency),
            ),
            ("confdir", text(&self.confdir.to_string_lossy())),
            ("listen_host", text(&self.listen_host)),
            (
                "listen_port",
                match self.listen_port {
                    Some(port) => Kind::Int(i64::from(port)),
                    None => Kind::Null(true),
                },
            ),
            ("flow_detail", Kind::Int(i64::from(self.flow_detail))),
            ("termlog_verbosity", text(&self.termlog_verbosity)),
            ("ssl_insecure", Kind::Bool(self.ssl_insecure)),
            ("http2", Kind::Bool(self.http2)),
            (
                "stream_large_bodies",
                match self.stream_large_bodies {
                    Some(bytes) => text(&bytes.to_string()),
                    None => Kind::Null(true),
                },
            ),
            ("ignore_hosts", list(&self.ignore_hosts)),
            ("dns_name_servers", list(&self.dns_name_servers)),
            ("allow_hosts", list(&self.allow_hosts)),
            ("script_failure", text(&self.script_failure)),
            (
                "script_workers",
                Kind::Int(i64::try_from(self.script_workers).unwrap_or(i64::MAX)),
            ),
            (
                "hook_timeout",
                Kind::Float(self.hook_timeout.map_or(0.0, |t| t.as_secs_f64())),
            ),
            (
                "body_size_limit",
                match self.body_size_limit {
                    Some(bytes) => text(&bytes.to_string()),
                    None => Kind::Null(true),
                },
            ),
            (
                "request_head_timeout",
                Kind::Float(self.request_head_timeout.as_secs_f64()),
            ),
            (
                "client_idle_timeout",
                Kind::Float(self.client_idle_timeout.as_secs_f64()),
            ),
            (
                "tls_handshake_timeout",
                Kind::Float(self.tls_handshake_timeout.as_secs_f64()),
            ),
            (
                "tunnel_idle_timeout",
                Kind::Float(self.tunnel_idle_timeout.as_secs_f64()),
            ),
            (
                "max_client_connections",
                Kind::Int(i64::try_from(self.max_client_connections).unwrap_or(i64::MAX)),
            ),
        ];
        values
            .into_iter()
            .chain(self.tls.for_scripts())
            .map(|(name, kind)| v1::Option {
                name: name.to_string(),
                value: Some(v1::OptionValue { kind: Some(kind) }),
            })
            .collect()
    }

    /// Applies one `--set name[=value]`.
    pub(crate) fn set(&mut self, spec: &str) -> anyhow::Result<()> {
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v)),
            None => (spec.trim(), None),
        };
        if let Some(result) = self.tls.set(name, value) {
            return result;
        }
        match name {
            "confdir" => self.confdir = expand_tilde(required(name, value)?),
            "listen_host" => self.listen_host = value.unwrap_or_default().to_string(),
            "listen_port" => {
                self.listen_port = match value.map(str::trim).filter(|v| !v.is_empty()) {
                    Some(port) => Some(parse_int(name, port)?),
                    None => None,
                }
            }
            "flow_detail" => self.flow_detail = parse_int(name, required(name, value)?)?,
            "termlog_verbosity" => match required(name, value)? {
                level @ ("error" | "warn" | "info" | "alert" | "debug") => {
                    self.termlog_verbosity = level.to_string()
                }
                other => bail!(
                    "option termlog_verbosity: expected error, warn, info, alert or debug, got \
                     {other:?}"
                ),
            },
            "ssl_insecure" => self.ssl_insecure = parse_bool(name, value, self.ssl_insecure)?,
            "http2" => self.http2 = parse_bool(name, value, self.http2)?,
            "ssl_verify_upstream_trusted_ca" => self
                .ssl_verify_upstream_trusted_ca
                .push(expand_tilde(required(name, value)?)),
            "stream_large_bodies" => {
                self.stream_large_bodies = value.map(parse_size).transpose()?
            }
            "ignore_hosts" => self.ignore_hosts.push(required(name, value)?.to_string()),
            "dns_name_servers" => self
                .dns_name_servers
                .push(required(name, value)?.to_string()),
            "allow_hosts" => self.allow_hosts.push(required(name, value)?.to_string()),
            "tcp_hosts" => self.tcp_hosts.push(required(name, value)?.to_string()),
            "websocket" => self.websocket = parse_bool(name, value, self.websocket)?,
            "shutdown_grace" => {
                self.shutdown_grace =
                    Duration::from_secs_f64(parse_float(name, required(name, value)?)?)
            }
            "hook_timeout" => {
                let seconds = parse_float(name, required(name, value)?)?;
                let timeout = Duration::try_from_secs_f64(seconds)
                    .with_context(|| format!("option {name}: 0 or more seconds"))?;
                self.hook_timeout = (!timeout.is_zero()).then_some(timeout);
            }
            "request_head_timeout" => self.request_head_timeout = parse_seconds(name, value)?,
            "client_idle_timeout" => self.client_idle_timeout = parse_seconds(name, value)?,
            "tls_handshake_timeout" => self.tls_handshake_timeout = parse_seconds(name, value)?,
            "tunnel_idle_timeout" => self.tunnel_idle_timeout = parse_seconds(name, value)?,
            "max_client_connections" => {
                self.max_client_connections = parse_int(name, required(name, value)?)?
            }
            "body_size_limit" => self.body_size_limit = value.map(parse_size).transpose()?,
            "hook_stuck_timeout" => {
                let seconds = parse_float(name, required(name, value)?)?;
                self.hook_stuck_timeout = Some(
                    Duration::try_from_secs_f64(seconds)
                        .with_context(|| format!("option {name}: 0 or more seconds"))?,
                )
            }
            "script_failure" => match required(name, value)? {
                policy @ ("open" | "closed") => self.script_failure = policy.to_string(),
                other => bail!("option script_failure: expected open or closed, got {other:?}"),
            },
            "script_workers" => {
                self.script_workers = parse_int::<usize>(name, required(name, value)?)?.max(1)
            }
            "keepserving" => self.keepserving = parse_bool(name, value, self.keepserving)?,
            "mode" => self.mode.push(required(name, value)?.to_string()),
            // Checked when the proxy is configured, as mitmproxy's addon does.
            "proxyauth" => self.proxyauth = value.filter(|v| !v.is_empty()).map(str::to_string),
            "map_remote" => sequence(&mut self.builtins.map_remote, value),
            "map_local" => sequence(&mut self.builtins.map_local, value),
            "modify_headers" => sequence(&mut self.builtins.modify_headers, value),
            "modify_body" => sequence(&mut self.builtins.modify_body, value),
            "block_list" => sequence(&mut self.builtins.block_list, value),
            "anticache" => {
                self.builtins.anticache = parse_bool(name, value, self.builtins.anticache)?
            }
            "anticomp" => self.builtins.anticomp = parse_bool(name, value, self.builtins.anticomp)?,
            "block_global" => {
                self.builtins.block_global = parse_bool(name, value, self.builtins.block_global)?
            }
            "block_private" => {
                self.builtins.block_private = parse_bool(name, value, self.builtins.block_private)?
            }
            "stickycookie" => {
                self.builtins.stickycookie = value.filter(|v| !v.is_empty()).map(str::to_string)
            }
            "stickyauth" => {
                self.builtins.stickyauth = value.filter(|v| !v.is_empty()).map(str::to_string)
            }
            "showhost" => self.showhost = parse_bool(name, value, self.showhost)?,
            "client_replay_concurrency" => match parse_int(name, required(name, value)?)? {
                n @ (-1 | 1) => self.client_replay_concurrency = n,
                _ => {
                    bail!("Currently the only valid client_replay_concurrency values are -1 and 1.")
                }
            },
            "connection_strategy" => match value.map(str::trim) {
                None | Some("eager") => self.connection_strategy = "eager".into(),
                Some("lazy") => self.connection_strategy = "lazy".into(),
                Some(other) => {
                    bail!("option connection_strategy: expected eager or lazy, got {other:?}")
                }
            },
            "upstream_auth" => {
                self.upstream_auth = value.filter(|v| !v.is_empty()).map(str::to_string)
            }
            "keep_host_header" => {
                self.keep_host_header = parse_bool(name, value, self.keep_host_header)?
            }
            _ => {
                // Repeating `--set name=value` builds a sequence: values joined with newlines.
                let value = value.unwrap_or_default();
                self.deferred
                    .entry(name.to_string())
                    .and_modify(|v| {
                        v.push('\n');
                        v.push_str(value);
                    })
                    .or_insert_with(|| value.to_string());
            }
        }
        Ok(())
    }
}

/// A sequence option: each `--set name=value` adds one entry; `--set name` empties it.
fn sequence(items: &mut Vec<String>, value: Option<&str>) {
    match value {
        Some(v) => items.push(v.to_string()),
        None => items.clear(),
    }
}

fn required<'a>(name: &str, value: Option<&'a str>) -> anyhow::Result<&'a str> {
    value.with_context(|| format!("option {name} needs a value: --set {name}=VALUE"))
}

fn parse_int<T: std::str::FromStr>(name: &str, value: &str) -> anyhow::Result<T> {
    value
        .trim()
        .parse()
        .ok()
        .with_context(|| format!("option {name}: not an integer: {value:?}"))
}

/// A positive number of seconds.
fn parse_seconds(name: &str, value: Option<&str>) -> anyhow::Result<Duration> {
    let seconds = parse_float(name, required(name, value)?)?;
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("option {name}: expected a positive number of seconds"))
}

fn parse_float(name: &str, value: &str) -> anyhow::Result<f64> {
    value
        .trim()
        .parse()
        .ok()
        .with_context(|| format!("option {name}: not a number: {value:?}"))
}

/// mitmproxy's bool syntax: no value or `true` is true, `false` is false, `toggle` flips.
pub(crate) fn parse_bool(name: &str, value: Option<&str>, current: bool) -> anyhow::Result<bool> {
    match value.map(str::trim) {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some("toggle") => Ok(!current),
        Some(other) => bail!("option {name}: expected true, false or toggle, got {other:?}"),
    }
}

/// A size with an optional k/m/g suffix (powers of 1024), as mitmproxy parses it.
pub(crate) fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim().to_ascii_lowercase();
    let (digits, unit) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (&t[..], 1),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .ok()
        .with_context(|| format!("invalid size {text:?}"))?;
    Ok(n * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_bools() {
        assert_eq!(parse_size("1m").unwrap(), 1 << 20);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("2K").unwrap(), 2048);
        assert!(parse_size("lots").is_err());
        assert!(parse_bool("x", None, false).unwrap());
        assert!(!parse_bool("x", Some("toggle"), true).unwrap());
        assert!(parse_bool("x", Some("maybe"), true).is_err());
    }

    #[test]
    fn websocket_and_tcp_hosts_options() {
        let mut o = Options::default();
        assert!(o.websocket);
        o.set("websocket=false").unwrap();
        o.set("tcp_hosts=^a:").unwrap();
        o.set("tcp_hosts=^b:").unwrap();
        assert!(!o.websocket);
        assert_eq!(o.tcp_hosts, vec!["^a:", "^b:"]);
        assert!(o.deferred.is_empty());
    }

    #[test]
    fn unknown_options_are_deferred_for_scripts() {
        let mut o = Options::default();
        o.set("flow_detail=3").unwrap();
        o.set("my_script_option=42").unwrap();
        assert_eq!(o.flow_detail, 3);
        assert_eq!(
            o.deferred.get("my_script_option").map(String::as_str),
            Some("42")
        );
        assert!(o.set("flow_detail=x").is_err());
    }
}
