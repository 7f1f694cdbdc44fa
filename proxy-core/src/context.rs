//! The connection context: what every connection task shares ([`Shared`]) and what one client
//! connection carries from request to request ([`ClientCtx`]). Data only; what is done with it
//! lives in the modules that do it (`dispatch` runs hooks, `servers` opens server connections,
//! `lifecycle` drives a flow, `respond` answers errors).

use std::sync::Arc;

use flowtap_certs::CertificateAuthority;
use flowtap_proto::v1::{Connection, Flow};

use crate::builtins::Builtins;
use crate::config::Config;
use crate::error::SetupError;
use crate::flow::Target;
use crate::hooks::{Hook, Hooks};
use crate::hosts::HostMatcher;
use crate::http1::{Conn, Framing};
use crate::intercept::Intercepts;
use crate::limits::Activity;
use crate::live::LiveFlows;
use crate::mode::{Mode, ModeSpec};
use crate::sink::FlowSink;
use crate::upstream::{Connector, Io, Pool, Upstream, Via};

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) hooks: Arc<dyn Hooks>,
    pub(crate) sink: Arc<dyn FlowSink>,
    pub(crate) ca: Arc<CertificateAuthority>,
    pub(crate) connector: Connector,
    pub(crate) pool: Pool,
    pub(crate) hosts: HostMatcher,
    pub(crate) intercepts: Intercepts,
    /// Live flows that scripts may kill or inject into from outside their hooks.
    pub(crate) live: LiveFlows,
    /// mitmdump's built-in addons; `builtins_active` is false when none acts on flows.
    builtins: Builtins,
    builtins_active: bool,
    /// A built-in addon acts in `request` (the request body is then buffered).
    builtins_in_request: bool,
    sink_bodies: bool,
}

impl Shared {
    /// Prepares upstream TLS and the host patterns.
    pub(crate) fn new(
        config: Config,
        ca: Arc<CertificateAuthority>,
        hooks: Arc<dyn Hooks>,
        sink: Arc<dyn FlowSink>,
    ) -> Result<Self, SetupError> {
        let hosts = HostMatcher::new(&config.ignore_hosts, &config.allow_hosts, &config.tcp_hosts)?;
        let server_tls = flowtap_certs::UpstreamTls {
            insecure: config.ssl_insecure,
            extra_roots: config.upstream_trusted_ca.clone(),
            trusted_dir: config.upstream_trusted_confdir.clone(),
            versions: config.tls_versions_server,
            ..Default::default()
        };
        let tls = |alpn: Vec<Vec<u8>>| {
            flowtap_certs::client_config(&flowtap_certs::UpstreamTls {
                alpn,
                ..server_tls.clone()
            })
            .map_err(|e| SetupError::UpstreamTls(e.to_string()))
        };
        let connector = Connector {
            tls_h1: tls(vec![b"http/1.1".to_vec()])?,
            tls_h2: tls(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
            tls_raw: tls(Vec::new())?,
            server_tls: server_tls.clone(),
            client_certs: config.client_certs.clone(),
            connect_timeout: config.connect_timeout,
            upstream_auth: config.upstream_auth.as_deref().map(basic_auth),
        };
        let sink_bodies = sink.needs_bodies();
        let intercepts = Intercepts::new(config.intercept.clone());
        // Only scripts act on flows from outside: without them nothing registers.
        let live = LiveFlows::new(!hooks.interest().is_empty());
        let builtins = Builtins::new(&config)?;
        let builtins_active = !builtins.is_idle();
        let builtins_in_request = builtins_active && builtins.acts_in_request();
        Ok(Shared {
            config,
            hooks,
            sink,
            ca,
            connector,
            pool: Pool::default(),
            hosts,
            intercepts,
            live,
            builtins,
            builtins_active,
            builtins_in_request,
            sink_bodies,
        })
    }

    /// The built-in addons that act on flows, or None when no option asks for one (the flow
    /// lifecycle then pays one branch per hook).
    pub(crate) fn builtins(&self) -> Option<&Builtins> {
        self.builtins_active.then_some(&self.builtins)
    }

    /// `block_global`/`block_private`: the error of a client connection that is refused.
    pub(crate) fn blocked_client(&self, peer: std::net::IpAddr) -> Option<&'static str> {
        self.builtins.client_connected(peer)
    }

    /// `proxyauth`, when set.
    pub(crate) fn proxyauth(&self) -> Option<&crate::builtins::ProxyAuth> {
        self.builtins.proxyauth()
    }

    /// A flow's messages must be kept: a sink records flows with their contents (`-w`, the
    /// store), or a script implements one of the flow type's `hooks`.
    pub(crate) fn keeps_messages(&self, hooks: &[Hook]) -> bool {
        self.sink_bodies || hooks.iter().any(|h| self.hooks.interest().wants(*h))
    }

    /// The request body must be held in memory: a script or a sink reads it. As in mitmproxy,
    /// a `response` or `error` hook sees the request's content too (jsondump-style scripts
    /// serialise the whole flow there).
    pub(crate) fn buffer_request(&self, _flow: &Flow) -> bool {
        let interest = self.hooks.interest();
        self.sink_bodies
            || self.intercepts.active()
            || self.builtins_in_request
            || [Hook::Request, Hook::Response, Hook::Error]
                .into_iter()
                .any(|hook| interest.wants(hook))
    }

    /// The response body must be held in memory: a script or a sink reads it.
    pub(crate) fn buffer_response(&self, _flow: &Flow) -> bool {
        self.sink_bodies
            || self.intercepts.active()
            || (self.builtins_active && self.builtins.needs_response_body())
            || self.hooks.interest().wants(Hook::Response)
    }

    /// An HTTP/1 connection to a client: its reads wait at most `client_idle_timeout` for a
    /// byte.
    pub(crate) fn client_conn(&self, io: Io) -> Conn<Io> {
        let mut conn = Conn::new(io);
        conn.idle = Some(self.config.client_idle_timeout);
        conn
    }

    /// The body is announced larger than `stream_large_bodies`, so it is streamed.
    pub(crate) fn too_large(&self, framing: Framing) -> bool {
        match (self.config.stream_large_bodies_bytes, framing) {
            (Some(limit), Framing::Length(n)) => n > limit,
            _ => false,
        }
    }
}

/// The state of one client connection that outlives a single request.
pub(crate) struct ClientCtx {
    /// The client connection as flows record it.
    pub(crate) client: Connection,
    /// The mode of the listener that accepted it.
    pub(crate) mode: Arc<ModeSpec>,
    /// Server connections this client connection has used and may use again.
    pub(crate) owned: Vec<Upstream>,
    /// Inside a CONNECT tunnel: where origin-form requests go.
    pub(crate) tunnel: Option<Target>,
    /// When the client connection last carried a byte (for the idle deadline of relays).
    pub(crate) activity: Activity,
}

impl ClientCtx {
    /// The listener's own way to servers: upstream mode's next proxy, else None (direct).
    pub(crate) fn own_via(&self) -> Option<Via> {
        Via::of_mode(&self.mode.mode)
    }

    /// A server connection not yet made, by the listener's own way (`via` is upstream mode's
    /// next proxy, as scripts see it in `server_connect`).
    pub(crate) fn unconnected_server(&self) -> Connection {
        let mut server = crate::flow::unconnected_server();
        server.via = self.own_via().map(|via| via.spec());
        server
    }

    /// The listener is a reverse proxy.
    pub(crate) fn is_reverse(&self) -> bool {
        matches!(self.mode.mode, Mode::Reverse(_))
    }
}

/// Tells the hooks that a client connection ended when the connection's task ends, however it
/// ends (every protocol returns through the client task; a task aborted at the end of the
/// shutdown grace drops this too).
pub(crate) struct ClientClosed {
    pub(crate) hooks: Arc<dyn Hooks>,
    pub(crate) client_id: String,
}

impl Drop for ClientClosed {
    fn drop(&mut self) {
        self.hooks.client_closed(&self.client_id);
    }
}

/// `Basic base64(user:password)`, as `Proxy-Authorization` carries `upstream_auth`.
pub(crate) fn basic_auth(credentials: &str) -> bytes::Bytes {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    format!("Basic {encoded}").into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_is_base64_of_the_credentials() {
        assert_eq!(&super::basic_auth("user:pass")[..], b"Basic dXNlcjpwYXNz");
        assert_eq!(&super::basic_auth("a:b")[..], b"Basic YTpi");
        assert_eq!(&super::basic_auth("ab:")[..], b"Basic YWI6");
        assert_eq!(&super::basic_auth("a:")[..], b"Basic YTo=");
    }
}
