//! mitmdump's flags for its options (`-M`, `-H`, `-B`, `--anticache`, `--proxyauth`,
//! `--server-replay-*`, ...), each the same as its `--set`; and the other way round, `--set`
//! values of the options mitmdump also takes as flags (`save_stream_file` is `-w`).

use std::path::PathBuf;

use crate::Cli;

/// mitmdump's flags for the built-in addons and the proxy options it has flags for; each is
/// the same as its `--set` (applied after the `--set` values).
#[derive(clap::Args, Debug, Default)]
pub(crate) struct BuiltinFlags {
    /// Map remote resources to another URL: "[/flow-filter]/url-regex/replacement" (any
    /// separator; repeatable).
    #[arg(short = 'M', long = "map-remote", value_name = "PATTERN")]
    map_remote: Vec<String>,
    /// Map remote resources to a local file: "[/flow-filter]/url-regex/file-or-directory-path".
    #[arg(long = "map-local", value_name = "PATTERN")]
    map_local: Vec<String>,
    /// Replace in bodies: "[/flow-filter]/regex/[@]replacement".
    #[arg(short = 'B', long = "modify-body", value_name = "PATTERN")]
    modify_body: Vec<String>,
    /// Set or remove headers: "[/flow-filter]/header-name/[@]header-value" (empty removes).
    #[arg(short = 'H', long = "modify-headers", value_name = "PATTERN")]
    modify_headers: Vec<String>,
    /// Strip request headers that might make the server answer 304-not-modified.
    #[arg(long = "anticache", overrides_with = "no_anticache")]
    anticache: bool,
    #[arg(long = "no-anticache", hide = true)]
    no_anticache: bool,
    /// Ask servers for uncompressed responses.
    #[arg(long = "anticomp", overrides_with = "no_anticomp")]
    anticomp: bool,
    #[arg(long = "no-anticomp", hide = true)]
    no_anticomp: bool,
    /// Show URLs with the Host header's host in the flow output.
    #[arg(long = "showhost", overrides_with = "no_showhost")]
    showhost: bool,
    #[arg(long = "no-showhost", hide = true)]
    no_showhost: bool,
    /// Sticky cookie filter: matching requests get the cookies servers set earlier.
    #[arg(long = "stickycookie", value_name = "FILTER")]
    stickycookie: Option<String>,
    /// Sticky auth filter: matching requests get the Authorization header last seen for their
    /// host.
    #[arg(long = "stickyauth", value_name = "FILTER")]
    stickyauth: Option<String>,
    /// Require proxy authentication: "USER:PASS", "any" or "@HTPASSWD-FILE".
    #[arg(long = "proxyauth", value_name = "SPEC")]
    proxyauth: Option<String>,
    /// Credentials for the next proxy in upstream mode: USER:PASS.
    #[arg(long = "upstream-auth", value_name = "USER:PASS")]
    upstream_auth: Option<String>,
    /// HTTP/2 towards clients and servers (on by default; --no-http2 turns it off).
    #[arg(long = "http2", overrides_with = "no_http2")]
    http2: bool,
    #[arg(long = "no-http2")]
    no_http2: bool,
    /// Serve this certificate instead of a minted one: "[DOMAIN=]FILE", a PEM file with the
    /// chain (leaf first) and private key; DOMAIN may hold wildcards ("*" when not given).
    /// Repeatable.
    #[arg(long = "certs", value_name = "SPEC")]
    certs: Vec<String>,
    /// Passphrase of encrypted private keys (flowtap refuses encrypted keys: see docs/tls.md).
    #[arg(long = "cert-passphrase", value_name = "PASS")]
    cert_passphrase: Option<String>,
    /// Verify server certificates (the default; undoes -k).
    #[arg(long = "no-ssl-insecure")]
    no_ssl_insecure: bool,
    /// Start the proxy server (the default; undoes -n).
    #[arg(long = "server", hide = true)]
    server: bool,
    /// What requests without a recorded response get in server replay: forward, kill or a
    /// status code.
    #[arg(long = "server-replay-extra", value_name = "forward|kill|STATUS")]
    server_replay_extra: Option<String>,
    /// Kill requests without a recorded response (deprecated: --server-replay-extra kill).
    #[arg(
        long = "server-replay-kill-extra",
        overrides_with = "no_server_replay_kill_extra"
    )]
    server_replay_kill_extra: bool,
    #[arg(long = "no-server-replay-kill-extra", hide = true)]
    no_server_replay_kill_extra: bool,
    /// Serve each recorded response as often as it matches.
    #[arg(
        long = "server-replay-reuse",
        overrides_with = "no_server_replay_reuse"
    )]
    server_replay_reuse: bool,
    #[arg(long = "no-server-replay-reuse", hide = true)]
    no_server_replay_reuse: bool,
    /// Move a replayed response's dates forward by its age (on by default).
    #[arg(
        long = "server-replay-refresh",
        overrides_with = "no_server_replay_refresh"
    )]
    server_replay_refresh: bool,
    #[arg(long = "no-server-replay-refresh")]
    no_server_replay_refresh: bool,
}

impl BuiltinFlags {
    /// The flags as `--set` values, in mitmdump's names.
    pub(crate) fn as_set(&self) -> Vec<String> {
        let mut set = Vec::new();
        let each = |set: &mut Vec<String>, name: &str, values: &[String]| {
            set.extend(values.iter().map(|v| format!("{name}={v}")));
        };
        each(&mut set, "map_remote", &self.map_remote);
        each(&mut set, "map_local", &self.map_local);
        each(&mut set, "modify_body", &self.modify_body);
        each(&mut set, "modify_headers", &self.modify_headers);
        each(&mut set, "certs", &self.certs);
        for (name, on, off) in [
            ("anticache", self.anticache, self.no_anticache),
            ("anticomp", self.anticomp, self.no_anticomp),
            ("showhost", self.showhost, self.no_showhost),
            ("http2", self.http2, self.no_http2),
            (
                "server_replay_kill_extra",
                self.server_replay_kill_extra,
                self.no_server_replay_kill_extra,
            ),
            (
                "server_replay_reuse",
                self.server_replay_reuse,
                self.no_server_replay_reuse,
            ),
            (
                "server_replay_refresh",
                self.server_replay_refresh,
                self.no_server_replay_refresh,
            ),
        ] {
            if on {
                set.push(format!("{name}=true"));
            } else if off {
                set.push(format!("{name}=false"));
            }
        }
        if self.no_ssl_insecure {
            set.push("ssl_insecure=false".into());
        }
        for (name, value) in [
            ("stickycookie", &self.stickycookie),
            ("stickyauth", &self.stickyauth),
            ("proxyauth", &self.proxyauth),
            ("upstream_auth", &self.upstream_auth),
            ("server_replay_extra", &self.server_replay_extra),
            ("cert_passphrase", &self.cert_passphrase),
        ] {
            if let Some(value) = value {
                set.push(format!("{name}={value}"));
            }
        }
        set
    }
}

/// Options mitmdump also takes as flags (`-w`, `-r`, `-s`, `-C`, `-S`, `-n`) are read from
/// `--set` too, as mitmdump reads them: `--set save_stream_file=out.mitm` is `-w out.mitm`.
pub(crate) fn flag_options_from_set(cli: &mut Cli) {
    let mut rest = Vec::new();
    for spec in std::mem::take(&mut cli.set) {
        let Some((name, value)) = spec.split_once('=') else {
            rest.push(spec);
            continue;
        };
        let value = value.to_string();
        match name.trim() {
            "save_stream_file" => cli.save_stream_file = Some(value).filter(|v| !v.is_empty()),
            "rfile" => cli.rfile = Some(PathBuf::from(value)).filter(|v| !v.as_os_str().is_empty()),
            "scripts" => cli.scripts.push(value),
            "client_replay" => cli.client_replay.push(PathBuf::from(value)),
            "server_replay" => cli.server_replay.push(PathBuf::from(value)),
            "server" => cli.no_server = matches!(value.trim(), "false"),
            _ => rest.push(spec),
        }
    }
    cli.set = rest;
}
