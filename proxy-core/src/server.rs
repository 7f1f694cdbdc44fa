//! The listener: accepts client connections and runs each on its own task, with a graceful
//! shutdown that lets in-flight flows finish within a bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use flowtap_certs::CertificateAuthority;
use flowtap_proto::v1::{Connection, Flow};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::error::{SetupError, UpstreamError};
use crate::flow::{self, KILLED_MESSAGE, connection_subject, is_killed, set_error};
use crate::hooks::{Hook, Hooks, Verdict};
use crate::http::{self, ClientCtx, Next};
use crate::http1::{Conn, Framing};
use crate::intercept::{Intercepts, Release};
use crate::live::{Injection, LiveFlows, MessageKind};
use crate::sink::FlowSink;
use crate::tunnel::{self, HostMatcher};
use crate::upstream::{Connector, Io, Pool, PoolKey, Upstream};

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
    sink_bodies: bool,
}

impl Shared {
    /// Prepares upstream TLS and the host patterns.
    fn new(
        config: Config,
        ca: Arc<CertificateAuthority>,
        hooks: Arc<dyn Hooks>,
        sink: Arc<dyn FlowSink>,
    ) -> Result<Self, SetupError> {
        let hosts = HostMatcher::new(&config.ignore_hosts, &config.allow_hosts, &config.tcp_hosts)?;
        let tls = |alpn: Vec<Vec<u8>>| {
            flowtap_certs::client_config(&flowtap_certs::UpstreamTls {
                insecure: config.ssl_insecure,
                extra_roots: config.upstream_trusted_ca.clone(),
                alpn,
            })
            .map_err(|e| SetupError::UpstreamTls(e.to_string()))
        };
        let connector = Connector {
            tls_h1: tls(vec![b"http/1.1".to_vec()])?,
            tls_h2: tls(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
            connect_timeout: config.connect_timeout,
        };
        let sink_bodies = sink.needs_bodies();
        let intercepts = Intercepts::new(config.intercept.clone());
        // Only scripts act on flows from outside: without them nothing registers.
        let live = LiveFlows::new(!hooks.interest().is_empty());
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
            sink_bodies,
        })
    }

    /// Runs `hook` if a script implements it.
    /// Runs a flow hook if a script wants it. In `request` and `response`, a flow that the
    /// intercept filter matches is marked intercepted first (the scripts see it so and may
    /// resume it); one still intercepted after the hooks waits for a resume or kill.
    pub(crate) async fn hook(&self, hook: Hook, flow: &mut Flow) -> Verdict {
        if matches!(hook, Hook::Request | Hook::Response) && self.intercepts.should_intercept(flow)
        {
            flow.intercepted = true;
        }
        let verdict = if self.hooks.interest().wants(hook) {
            self.hooks.call(hook, flow).await
        } else {
            Verdict::Continue
        };
        if !flow.intercepted || verdict == Verdict::Kill || is_killed(flow) {
            return verdict;
        }
        tracing::info!(
            "intercepted {} (flow {}): it waits until a script resumes or kills it",
            describe(flow),
            flow.id
        );
        let release = self.intercepts.hold(flow).await;
        flow.intercepted = false;
        match release {
            Release::Resume => verdict,
            Release::Kill => {
                set_error(flow, KILLED_MESSAGE);
                Verdict::Kill
            }
        }
    }

    /// Runs a connection hook with a subject made from the connections, if a script wants it.
    pub(crate) async fn connection_hook(
        &self,
        hook: Hook,
        client: &Connection,
        server: Option<&mut Connection>,
    ) -> Verdict {
        if !self.hooks.interest().wants(hook) {
            return Verdict::Continue;
        }
        let mut subject = connection_subject(client, server.as_deref());
        let verdict = self.hooks.call(hook, &mut subject).await;
        if let (Some(server), Some(changed)) = (server, subject.server_conn) {
            *server = changed;
        }
        verdict
    }

    /// A sink keeps flows with their contents (`-w`, the store), so WebSocket and TCP
    /// messages are recorded even when no script reads them.
    pub(crate) fn records_contents(&self) -> bool {
        self.sink_bodies
    }

    /// The request body must be held in memory: a script or a sink reads it.
    pub(crate) fn buffer_request(&self, _flow: &Flow) -> bool {
        self.sink_bodies || self.intercepts.active() || self.hooks.interest().wants(Hook::Request)
    }

    /// The response body must be held in memory: a script or a sink reads it.
    pub(crate) fn buffer_response(&self, _flow: &Flow) -> bool {
        self.sink_bodies || self.intercepts.active() || self.hooks.interest().wants(Hook::Response)
    }

    /// The body is announced larger than `stream_large_bodies`, so it is streamed.
    pub(crate) fn too_large(&self, framing: Framing) -> bool {
        match (self.config.stream_large_bodies_bytes, framing) {
            (Some(limit), Framing::Length(n)) => n > limit,
            _ => false,
        }
    }

    /// Opens a new server connection for `flow`, with the `server_connect` and
    /// `server_connected` (or `server_connect_error`) hooks around it.
    pub(crate) async fn connect_server(
        &self,
        client: &Connection,
        flow: &mut Flow,
        key: &PoolKey,
        sni: &str,
    ) -> Result<Upstream, UpstreamError> {
        let mut info = flow::unconnected_server();
        info.address = Some(flowtap_proto::v1::Address {
            host: key.host.clone(),
            port: u32::from(key.port),
        });
        self.connection_hook(Hook::ServerConnect, client, Some(&mut info))
            .await;
        if let Some(error) = info.error.clone() {
            let host = key.host.clone();
            flow.server_conn = Some(info);
            return Err(UpstreamError::ConnectFailed {
                host,
                port: u32::from(key.port),
                reason: error,
            });
        }
        let key = match &info.address {
            Some(a) => PoolKey {
                tls: key.tls,
                host: a.host.clone(),
                port: u16::try_from(a.port).unwrap_or(key.port),
            },
            None => key.clone(),
        };
        match self.connector.connect(&key, sni, false, info).await {
            Ok(mut up) => {
                self.connection_hook(Hook::ServerConnected, client, Some(&mut up.info))
                    .await;
                Ok(up)
            }
            Err((e, mut info)) => {
                info.error = Some(e.to_string());
                self.connection_hook(Hook::ServerConnectError, client, Some(&mut info))
                    .await;
                // mitmproxy records no address for a server it never reached.
                info.address = None;
                info.timestamp_start = None;
                flow.server_conn = Some(info);
                Err(e)
            }
        }
    }

    /// A server connection is done with: closed (with `server_disconnected`) when a script
    /// watches disconnects, else kept in the shared pool.
    pub(crate) async fn server_closed(&self, client: &Connection, mut up: Upstream) {
        if self.hooks.interest().wants(Hook::ServerDisconnected) {
            up.info.timestamp_end = Some(flow::now());
            self.connection_hook(Hook::ServerDisconnected, client, Some(&mut up.info))
                .await;
        }
    }

    /// Returns a still-usable server connection to the shared pool, unless a script watches
    /// server disconnects (then it is closed, as mitmproxy closes it with the client).
    pub(crate) async fn release_owned(&self, client: &Connection, owned: Vec<Upstream>) {
        for up in owned {
            if self.hooks.interest().wants(Hook::ServerDisconnected) || up.h2 {
                self.server_closed(client, up).await;
            } else {
                self.pool.put(up);
            }
        }
    }
}

/// A bound proxy, ready to serve.
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Binds the listener and prepares upstream TLS. Nothing is served until [`Proxy::serve`].
    pub async fn bind(
        config: Config,
        ca: Arc<CertificateAuthority>,
        hooks: Arc<dyn Hooks>,
        sink: Arc<dyn FlowSink>,
    ) -> Result<Self, SetupError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SetupError::Bind {
                    addr: config.listen.to_string(),
                    source,
                })?;
        let shared = Shared::new(config, ca, hooks, sink)?;
        Ok(Self {
            listener,
            shared: Arc::new(shared),
        })
    }

    /// The address the proxy listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves clients until `shutdown` completes (or a script asks for shutdown); then stops
    /// accepting, lets each connection finish the flow it is in (within `shutdown_grace`) and
    /// returns. The scripts are attached (their `running` hooks fire) before the first accept.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let control = Arc::new(ProxyControl {
            shutdown: Default::default(),
            shared: self.shared.clone(),
        });
        self.shared.hooks.attach(control.clone());
        let shutdown = async {
            tokio::select! {
                _ = shutdown => {}
                _ = control.shutdown.notified() => tracing::info!("a script asked for shutdown"),
            }
        };
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = self.shared.clone();
                        let stop = stop_rx.clone();
                        tasks.spawn(async move { serve_client(shared, stream, peer, stop).await });
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = &mut shutdown => break,
            }
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        let grace = self.shared.config.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                "{} connections still open after {grace:?}; closing them",
                tasks.len()
            );
            tasks.shutdown().await;
        }
        self.shared.sink.close();
    }
}

/// Sends stored requests again (mitmproxy's client replay, `-C`): each flow gets
/// `is_replay = "request"`, a backup of its earlier state, and the hooks `requestheaders`,
/// `request`, `server_connect`, `server_connected`, `responseheaders`, `response`,
/// `server_disconnected` (no client events), then goes to the sinks.
pub struct ClientReplay {
    shared: Arc<Shared>,
}

impl ClientReplay {
    /// Prepares replays with the proxy's settings; nothing listens.
    pub fn new(
        config: Config,
        ca: Arc<CertificateAuthority>,
        hooks: Arc<dyn Hooks>,
        sink: Arc<dyn FlowSink>,
    ) -> Result<Self, SetupError> {
        Ok(Self {
            shared: Arc::new(Shared::new(config, ca, hooks, sink)?),
        })
    }

    /// Replays one HTTP flow and waits for its response (or error).
    pub async fn replay(&self, flow: Flow) {
        http::replay(&self.shared, flow).await;
    }
}

/// `GET http://host/path` for a log line (the flow id for flows without a request).
fn describe(flow: &Flow) -> String {
    use flowtap_flow::RequestExt as _;
    match &flow.request {
        Some(request) => format!(
            "{} {}",
            String::from_utf8_lossy(&request.method),
            request.pretty_url()
        ),
        None => format!("{} flow", flow.r#type),
    }
}

/// What scripts may ask of the proxy outside hooks: shutdown, client replay, resuming a flow
/// paused by the intercept filter, killing any live flow, and injecting messages into live
/// WebSocket and TCP flows.
struct ProxyControl {
    shutdown: tokio::sync::Notify,
    shared: Arc<Shared>,
}

impl crate::hooks::CoreControl for ProxyControl {
    fn kill(&self, flow_id: &str) -> Result<(), String> {
        // A flow paused in a hook is released as killed through the hook's own path.
        if self.shared.intercepts.release(flow_id, Release::Kill) || self.shared.live.kill(flow_id)
        {
            return Ok(());
        }
        Err(format!("flow {flow_id} is not live (unknown or finished)"))
    }

    fn resume(&self, flow_id: &str) -> Result<(), String> {
        if self.shared.intercepts.release(flow_id, Release::Resume) {
            Ok(())
        } else {
            Err(format!("flow {flow_id} is not intercepted"))
        }
    }

    fn replay_client(&self, flow: Flow) -> Result<(), String> {
        if flow.r#type != "http" || flow.request.is_none() {
            return Err(format!("flow {} has no HTTP request to replay", flow.id));
        }
        let shared = self.shared.clone();
        tokio::spawn(async move { http::replay(&shared, flow).await });
        Ok(())
    }

    fn inject_websocket(
        &self,
        flow_id: &str,
        to_client: bool,
        content: bytes::Bytes,
        is_text: bool,
    ) -> Result<(), String> {
        let injection = Injection {
            to_client,
            content,
            is_text,
        };
        self.shared
            .live
            .inject(flow_id, MessageKind::WebSocket, injection)
    }

    fn inject_tcp(
        &self,
        flow_id: &str,
        to_client: bool,
        content: bytes::Bytes,
    ) -> Result<(), String> {
        let injection = Injection {
            to_client,
            content,
            is_text: false,
        };
        self.shared
            .live
            .inject(flow_id, MessageKind::Tcp, injection)
    }

    fn shutdown(&self) {
        self.shutdown.notify_one();
    }
}

/// One client connection, from accept to close.
async fn serve_client(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _open = flowtap_telemetry::proxy::client_connection();
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let mut ctx = ClientCtx {
        client: flow::client_connection(peer, local),
        owned: Vec::new(),
        tunnel: None,
    };
    let _closed = ClientClosed {
        hooks: Arc::clone(&shared.hooks),
        client_id: ctx.client.id.clone(),
    };
    if shared.hooks.interest().wants(Hook::ClientConnected) {
        let mut subject = connection_subject(&ctx.client, None);
        shared.hooks.call(Hook::ClientConnected, &mut subject).await;
        if let Some(client) = subject.client_conn {
            ctx.client = client;
        }
        if ctx.client.error.is_some() {
            return disconnected(&shared, &mut ctx, false).await;
        }
    }
    let io: Io = Box::new(stream);
    let mut conn = Conn::new(io);
    let mut tls_tunnel = false;
    if let Next::Connect(head) = http::serve(&shared, &mut conn, &mut ctx, &mut stop).await {
        tls_tunnel = tunnel::connect(&shared, conn, &mut ctx, head, &mut stop).await;
    }
    disconnected(&shared, &mut ctx, tls_tunnel).await;
}

/// Tells the hooks that a client connection ended when the connection's task ends, however it
/// ends (every protocol returns through `serve_client`; a task aborted at the end of the
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

/// The client connection closed: release its server connections and fire the disconnect
/// hooks (for TLS tunnels mitmproxy reports the client first).
async fn disconnected(shared: &Shared, ctx: &mut ClientCtx, client_first: bool) {
    let owned = std::mem::take(&mut ctx.owned);
    ctx.client.timestamp_end = Some(flow::now());
    if client_first {
        shared
            .connection_hook(Hook::ClientDisconnected, &ctx.client, None)
            .await;
        shared.release_owned(&ctx.client, owned).await;
    } else {
        shared.release_owned(&ctx.client, owned).await;
        shared
            .connection_hook(Hook::ClientDisconnected, &ctx.client, None)
            .await;
    }
}
