//! The proxy's settings, built by the binaries from flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the proxy behaves. Field names follow mitmproxy's options.
#[derive(Clone, Debug)]
pub struct Config {
    /// The listeners, one per `--mode` (default: one in regular mode), each with its address
    /// (`--listen-host`, `-p`, or the mode's `@PORT`). Two may not share an address.
    pub listeners: Vec<Listener>,
    /// In reverse mode, keep the client's `Host` header instead of the target's
    /// (`keep_host_header`).
    pub keep_host_header: bool,
    /// In upstream mode, `user:password` for the next proxy (`upstream_auth`), sent as
    /// `Proxy-Authorization: Basic`.
    pub upstream_auth: Option<String>,
    /// Who may use the proxy (`proxyauth`: `USER:PASS`, `any` or `@HTPASSWD`): SOCKS5 clients in
    /// the handshake, HTTP clients with 407 (401 in reverse mode) until they send credentials.
    pub proxyauth: Option<String>,
    /// mitmdump's built-in addons (`map_remote`, `modify_headers`, `block_global`, ...).
    pub builtins: crate::builtins::BuiltinOptions,
    /// When a tunnel's server connection is opened (`connection_strategy`).
    pub connection_strategy: ConnectionStrategy,
    /// Name servers (`IP` or `IP:PORT`, port 53 by default) that `--mode dns` sends queries
    /// other than A/AAAA to (`dns_name_servers`); empty: the system's, from
    /// `/etc/resolv.conf`.
    pub dns_name_servers: Vec<String>,
    /// Hosts not to intercept: their CONNECT tunnels are relayed untouched (`--ignore-hosts`).
    pub ignore_hosts: Vec<String>,
    /// The inverse: only these hosts are intercepted (`--allow-hosts`).
    pub allow_hosts: Vec<String>,
    /// CONNECT tunnels to these hosts carry raw TCP flows, without looking for TLS or HTTP
    /// (`--tcp-hosts`). Patterns are searched in `host:port`, as for `ignore_hosts`.
    pub tcp_hosts: Vec<String>,
    /// Handle WebSocket connections as WebSocket flows with their hooks (`websocket`, default
    /// on). Off: after the 101 response the bytes are relayed as they are.
    pub websocket: bool,
    /// The largest WebSocket message the relay reassembles; a bigger one ends the connection
    /// with close code 1009.
    pub websocket_max_message_bytes: u64,
    /// Do not verify server certificates (`-k`, `--ssl-insecure`).
    pub ssl_insecure: bool,
    /// More CA certificates (PEM files) to trust for servers (`ssl_verify_upstream_trusted_ca`).
    pub upstream_trusted_ca: Vec<PathBuf>,
    /// A directory of CA certificates (PEM files) to trust for servers
    /// (`ssl_verify_upstream_trusted_confdir`).
    pub upstream_trusted_confdir: Option<PathBuf>,
    /// The client certificate presented to servers that ask for one (`client_certs`): a PEM
    /// file with chain and key, or a directory of `<server name>.pem` files.
    pub client_certs: Option<PathBuf>,
    /// The TLS versions spoken to servers (`tls_version_server_min` / `_max`). The client
    /// side's bounds are the CA's ([`flowtap_certs::ServeOptions`]).
    pub tls_versions_server: flowtap_certs::VersionBounds,
    /// Minted leaves also name what the server's certificate names (CN, subjectAltNames,
    /// organization) when the server was connected first (`upstream_cert`, default on).
    pub upstream_cert: bool,
    /// The server's certificates are appended to the chain served to the client
    /// (`add_upstream_certs_to_client_chain`).
    pub add_upstream_certs_to_client_chain: bool,
    /// Bodies larger than this are streamed, never held whole (`stream_large_bodies`).
    pub stream_large_bodies_bytes: Option<u64>,
    /// Offer HTTP/2 to clients and servers (`--http2`, default on).
    pub http2: bool,
    /// How long a server connect may take.
    pub connect_timeout: Duration,
    /// How long in-flight flows may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// How long a whole request head may take to arrive once its first byte has
    /// (`request_head_timeout`); a client that is slower gets 408.
    pub request_head_timeout: Duration,
    /// How long a client connection may wait without sending a byte while the proxy reads from
    /// it: between keep-alive requests, before the first one, inside a body, before the first
    /// bytes in a tunnel (`client_idle_timeout`).
    pub client_idle_timeout: Duration,
    /// How long a client's TLS handshake may take (`tls_handshake_timeout`).
    pub tls_handshake_timeout: Duration,
    /// How long a tunnel, WebSocket, raw TCP flow or HTTP/2 connection may carry no byte either
    /// way before it is closed (`tunnel_idle_timeout`).
    pub tunnel_idle_timeout: Duration,
    /// The most client connections served at once; more wait in the listen backlog
    /// (`max_client_connections`). 0: what the descriptor limit allows.
    pub max_client_connections: usize,
    /// Bodies larger than this are refused: a request with 413, a response with 502
    /// (`body_size_limit`, as mitmproxy's). Streamed bodies are not limited.
    pub body_size_limit: Option<u64>,
    /// Where bodies held whole go once they outgrow the heap threshold
    /// ([`flowtap_flow::spill::SPILL_BYTES`]): unlinked 0600 files in this directory (the
    /// binaries give the confdir). `None`: every body stays in memory.
    pub spill_dir: Option<PathBuf>,
    /// Pause flows that match in `request` and `response` until a script resumes or kills them
    /// (`--set intercept=FILTER`; replayed flows are never paused).
    pub intercept: Option<flowtap_flow::Filter>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listeners: vec![Listener {
                spec: crate::mode::ModeSpec::regular(),
                addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            }],
            keep_host_header: false,
            upstream_auth: None,
            proxyauth: None,
            builtins: crate::builtins::BuiltinOptions::default(),
            connection_strategy: ConnectionStrategy::Eager,
            ignore_hosts: Vec::new(),
            dns_name_servers: Vec::new(),
            allow_hosts: Vec::new(),
            tcp_hosts: Vec::new(),
            websocket: true,
            websocket_max_message_bytes: 64 << 20,
            ssl_insecure: false,
            upstream_trusted_ca: Vec::new(),
            upstream_trusted_confdir: None,
            client_certs: None,
            tls_versions_server: flowtap_certs::VersionBounds::default(),
            upstream_cert: true,
            add_upstream_certs_to_client_chain: false,
            stream_large_bodies_bytes: None,
            http2: true,
            connect_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            intercept: None,
            request_head_timeout: Duration::from_secs(30),
            client_idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(15),
            tunnel_idle_timeout: Duration::from_secs(600),
            max_client_connections: 0,
            body_size_limit: None,
            spill_dir: None,
        }
    }
}

/// One listener: what it does with its connections and where it listens.
#[derive(Clone, Debug)]
pub struct Listener {
    /// Its `--mode`.
    pub spec: crate::mode::ModeSpec,
    /// Its address (port 0: any free port, see [`crate::Proxy::local_addrs`]).
    pub addr: SocketAddr,
}

impl Listener {
    /// A listener at `addr` in regular mode.
    pub fn regular(addr: SocketAddr) -> Self {
        Listener {
            spec: crate::mode::ModeSpec::regular(),
            addr,
        }
    }
}

impl Config {
    /// A listener in this mode exists.
    pub(crate) fn has_mode(&self, pred: impl Fn(&crate::mode::Mode) -> bool) -> bool {
        self.listeners.iter().any(|l| pred(&l.spec.mode))
    }
}

/// mitmproxy's `connection_strategy`: when a tunnel's server connection is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionStrategy {
    /// At once: a CONNECT (or SOCKS5 request) is answered after the server connected, a TLS
    /// client's handshake waits for the server's (its certificate names, its ALPN choice).
    #[default]
    Eager,
    /// As late as possible: the CONNECT is answered at once, a TLS client is served
    /// HTTP/1.1 with a certificate for the name it asked for, and the server is connected
    /// when the first request goes to it (so server replay works with the server offline).
    Lazy,
}
