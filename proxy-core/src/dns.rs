//! `--mode dns` and `reverse:dns://HOST[:PORT]`: a DNS server on UDP and TCP whose queries are
//! DNS flows for the scripts.
//!
//! A session is a UDP client address ([`serve_client`], from `udp`; it ends after
//! `UDP_TIMEOUT` of quiet or at shutdown) or a TCP connection ([`serve_tcp`], from `client`;
//! messages after their 16-bit length). Each query becomes a flow of type "dns"
//! (`dns_request`); the scripts' `dns_request` hook may answer it (`flow.response =
//! flow.request.succeed([...])` or `.fail(rcode)`). Otherwise: when the flow's
//! `server_conn.address` is set (always in `reverse:dns://`; a script may set it in
//! `--mode dns`, as mitmproxy's resolver does) the query, as the scripts left it, goes to that
//! server over the session's own socket or connection, of the client's transport
//! (`server_connect`, `server_connected` when it opens, `server_disconnected` at the session's
//! end), and the server's answer with the query's id is the response; else `--mode dns`
//! resolves A and AAAA questions with the system resolver and sends other questions to the
//! first name server (`dns_name_servers`, else the system's), as mitmproxy's resolver does; with
//! none known the flow fails. `dns_response` runs on the answer before it goes back; a
//! flow killed in `dns_request` or `dns_response` is not answered. A query that fails (a script
//! set `flow.error`, the server cannot be reached or did not answer before the session ended)
//! gets `dns_error` and, while the client is there, a SERVFAIL answer, as in mitmproxy. The
//! wire format (RFC 1035) is read and written by `wire`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, Bytes};
use flowtap_proto::v1::{Address, Connection, DnsMessage, DnsResourceRecord, Flow};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use crate::config::ConnectionStrategy;
use crate::context::{ClientCtx, Shared};
use crate::flow::{new_id, now, set_error, unconnected_server};
use crate::hooks::{Hook, Verdict};
use crate::http1::Conn;
use crate::mode::{Mode, ModeSpec};
use crate::udp::{ClientSession, MAX_DATAGRAM, UDP_TIMEOUT};
use crate::upstream::Io;

mod wire;

use wire::{pack, parse};

/// Record types the proxy resolves itself.
pub(crate) const TYPE_A: u32 = 1;
pub(crate) const TYPE_AAAA: u32 = 28;
pub(crate) const CLASS_IN: u32 = 1;
/// Response codes.
const SERVFAIL: u32 = 2;
pub(crate) const NXDOMAIN: u32 = 3;
const NOTIMP: u32 = 4;
/// The TTL of answers from the system resolver.
const RESOLVED_TTL: u32 = 60;
/// Queries of one session waiting for the server's answer; more fail at once.
const MAX_PENDING: usize = 256;

/// What woke a session up.
enum Event {
    Query(Bytes),
    Answer(Bytes),
    ServerFailed(std::io::Error),
}

/// Serves the queries of one UDP client session until it ends.
pub(crate) async fn serve_client(session: &mut ClientSession<'_>) {
    let mut dns = DnsSession::new(&session.listener.shared, &session.listener.spec, "udp");
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let idle = tokio::time::sleep(UDP_TIMEOUT);
        let event = tokio::select! {
            _ = session.stop.changed() => break,
            datagram = session.datagrams.recv() => match datagram {
                Some(datagram) => Event::Query(datagram),
                None => break,
            },
            received = from_server(dns.upstream.as_mut(), &mut buf) => match received {
                Ok(message) => Event::Answer(message),
                Err(e) => Event::ServerFailed(e),
            },
            () = idle => break,
        };
        dns.handle(&session.client, event).await;
        for answer in dns.outbox.drain(..) {
            session.send(&answer).await;
        }
    }
    dns.end(&session.client).await;
    for answer in dns.outbox.drain(..) {
        session.send(&answer).await;
    }
}

/// Serves DNS over TCP (RFC 1035 4.2.2: each message after its 16-bit length) on one client
/// connection of `--mode dns` or `reverse:dns://`, until the client closes, idles past
/// `client_idle_timeout` or the proxy stops. In reverse mode the server is reached over TCP
/// too, connected before the first query unless `connection_strategy=lazy`, as in mitmproxy.
pub(crate) async fn serve_tcp(
    shared: &Shared,
    mut conn: Conn<Io>,
    ctx: &mut ClientCtx,
    stop: &mut watch::Receiver<bool>,
) {
    let mut dns = DnsSession::new(shared, &ctx.mode, "tcp");
    if dns.server.address.is_some()
        && shared.config.connection_strategy == ConnectionStrategy::Eager
        && dns.open(&ctx.client, dns.server.clone()).await.is_err()
    {
        return;
    }
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let event = tokio::select! {
            _ = stop.changed() => break,
            frame = read_frame(&mut conn) => match frame {
                Ok(Some(message)) => Event::Query(message),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(client = ?ctx.client.peername, "dns over tcp: {e}");
                    break;
                }
            },
            received = from_server(dns.upstream.as_mut(), &mut buf) => match received {
                Ok(message) => Event::Answer(message),
                Err(e) => Event::ServerFailed(e),
            },
        };
        dns.handle(&ctx.client, event).await;
        if flush(&mut conn.io, &mut dns.outbox).await.is_err() {
            break;
        }
    }
    dns.end(&ctx.client).await;
    let _ = flush(&mut conn.io, &mut dns.outbox).await;
}

/// One length-prefixed message (None: the stream ended). Cancel-safe: bytes read stay in
/// `conn.buf`.
async fn read_frame<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
) -> std::io::Result<Option<Bytes>> {
    loop {
        if conn.buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([conn.buf[0], conn.buf[1]]));
            if len == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a DNS message of length zero",
                ));
            }
            if conn.buf.len() >= 2 + len {
                conn.buf.advance(2);
                return Ok(Some(conn.buf.split_to(len).freeze()));
            }
        }
        if conn.fill().await? == 0 {
            return Ok(None);
        }
    }
}

/// Writes `messages` each after its length, and empties it.
async fn flush<W: AsyncWrite + Unpin>(
    io: &mut W,
    messages: &mut Vec<Vec<u8>>,
) -> std::io::Result<()> {
    for message in messages.drain(..) {
        let Ok(len) = u16::try_from(message.len()) else {
            tracing::debug!(
                "dns over tcp: a message of {} bytes is too long to send",
                message.len()
            );
            continue;
        };
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(&message).await?;
    }
    io.flush().await
}

/// The session's way to its server: a connected UDP socket, or a TCP connection for a client
/// that came over TCP.
enum Upstream {
    Udp(UdpSocket),
    Tcp(Conn<TcpStream>),
}

impl Upstream {
    async fn send(&mut self, message: &[u8]) -> std::io::Result<()> {
        match self {
            Upstream::Udp(socket) => socket.send(message).await.map(drop),
            Upstream::Tcp(conn) => flush(&mut conn.io, &mut vec![message.to_vec()]).await,
        }
    }
}

/// A message from the session's server; never, while there is none.
async fn from_server(upstream: Option<&mut Upstream>, buf: &mut [u8]) -> std::io::Result<Bytes> {
    match upstream {
        Some(Upstream::Udp(socket)) => {
            let len = socket.recv(buf).await?;
            Ok(Bytes::copy_from_slice(&buf[..len]))
        }
        Some(Upstream::Tcp(conn)) => read_frame(conn).await?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )
        }),
        None => std::future::pending().await,
    }
}

/// The DNS state of one client session (a UDP client address or a TCP connection).
struct DnsSession<'a> {
    shared: &'a Shared,
    /// "udp" or "tcp": how the client came, and so how the server is reached.
    transport: &'static str,
    /// The session's server connection: the target's address (reverse mode), then what
    /// `server_connect` made of it.
    server: Connection,
    upstream: Option<Upstream>,
    /// Flows whose query went to the server, by query id.
    pending: HashMap<u32, Flow>,
    /// Messages for the client, in order; the transport's loop sends them.
    outbox: Vec<Vec<u8>>,
}

impl<'a> DnsSession<'a> {
    fn new(shared: &'a Shared, spec: &ModeSpec, transport: &'static str) -> Self {
        let mut server = unconnected_server();
        server.transport_protocol = transport.into();
        if let Mode::Reverse(target) = &spec.mode {
            server.address = Some(Address {
                host: target.host.clone(),
                port: u32::from(target.port),
            });
        }
        DnsSession {
            shared,
            transport,
            server,
            upstream: None,
            pending: HashMap::new(),
            outbox: Vec::new(),
        }
    }

    async fn handle(&mut self, client: &Connection, event: Event) {
        match event {
            Event::Query(message) => self.query(client, &message).await,
            Event::Answer(message) => self.answer(client, &message).await,
            Event::ServerFailed(e) => {
                let reason = format!("the DNS server failed: {e}");
                self.fail_pending(client, &reason).await;
                self.disconnect(client).await;
            }
        }
    }

    /// The session ends: queries still waiting fail, the server connection closes.
    async fn end(&mut self, client: &Connection) {
        let reason = "no answer from the DNS server before the client's session ended";
        self.fail_pending(client, reason).await;
        self.disconnect(client).await;
    }

    /// `server_connect` for `server`, the session's socket or connection to it, then
    /// `server_connected` (or `server_connect_error`, and the reason).
    async fn open(&mut self, client: &Connection, mut server: Connection) -> Result<(), String> {
        let connected = if self.transport == "tcp" {
            let timeout = self.shared.config.connect_timeout;
            crate::udp::connect(self.shared, client, &mut server, |host, port| async move {
                let stream =
                    tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
                        .await
                        .map_err(|_| {
                            format!("connecting to {host}:{port} timed out after {timeout:?}")
                        })?
                        .map_err(|e| format!("connecting to {host}:{port} failed: {e}"))?;
                let addrs = (stream.peer_addr().ok(), stream.local_addr().ok());
                Ok((Upstream::Tcp(Conn::new(stream)), addrs.0, addrs.1))
            })
            .await
        } else {
            crate::udp::connect(self.shared, client, &mut server, |host, port| async move {
                let socket = crate::udp::connected_socket(&host, port).await?;
                let addrs = (socket.peer_addr().ok(), socket.local_addr().ok());
                Ok((Upstream::Udp(socket), addrs.0, addrs.1))
            })
            .await
        };
        match connected {
            Ok(upstream) => {
                self.upstream = Some(upstream);
                self.server = server;
                Ok(())
            }
            Err(reason) => {
                self.server.error = server.error;
                Err(reason)
            }
        }
    }

    /// One query from the client.
    async fn query(&mut self, client: &Connection, message: &[u8]) {
        let request = match parse(message) {
            Ok(message) if message.query => message,
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(client = ?client.peername, "dns: an unreadable query: {e}");
                return;
            }
        };
        let mut flow = Flow {
            id: new_id(),
            r#type: "dns".into(),
            client_conn: Some(client.clone()),
            server_conn: Some(self.server.clone()),
            timestamp_created: now(),
            live: true,
            dns_request: Some(DnsMessage {
                timestamp: Some(now()),
                ..request
            }),
            ..Default::default()
        };
        if self.shared.hook(Hook::DnsRequest, &mut flow).await == Verdict::Kill {
            return;
        }
        if flow.dns_response.is_some() {
            return self.respond(flow).await;
        }
        if flow.error.is_some() {
            return self.fail(flow).await;
        }
        let request = flow.dns_request.clone().unwrap_or_default();
        let forwarded = flow.server_conn.as_ref().and_then(|s| s.address.as_ref());
        if forwarded.is_some() {
            return self.forward(client, flow, &request).await;
        }
        if !only_address_lookups(&request) {
            // As mitmproxy's resolver: other questions go to the first name server.
            let Some(name_server) = name_server(&self.shared.config.dns_name_servers) else {
                set_error(&mut flow, "Cannot resolve, dns_name_servers unknown.");
                return self.fail(flow).await;
            };
            if let Some(server) = flow.server_conn.as_mut() {
                server.address = Some(name_server);
            }
            return self.forward(client, flow, &request).await;
        }
        flow.dns_response = Some(resolve(&request).await);
        self.respond(flow).await;
    }

    /// The query to the session's server (connected at the first query that needs it), the
    /// flow kept until its answer arrives.
    async fn forward(&mut self, client: &Connection, mut flow: Flow, request: &DnsMessage) {
        if self.upstream.is_none() {
            // As in mitmproxy, a script's change of `flow.server_conn` before the session's
            // server connection opens decides where it goes.
            let server = flow.server_conn.clone().unwrap_or_default();
            if let Err(reason) = self.open(client, server).await {
                flow.server_conn = Some(self.server.clone());
                set_error(&mut flow, reason);
                return self.fail(flow).await;
            }
        }
        flow.server_conn = Some(self.server.clone());
        if self.pending.len() >= MAX_PENDING {
            set_error(
                &mut flow,
                "too many queries awaiting the DNS server's answer",
            );
            return self.fail(flow).await;
        }
        let sent = match self.upstream.as_mut() {
            Some(upstream) => upstream.send(&pack(request)).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        };
        if let Err(e) = sent {
            set_error(
                &mut flow,
                format!("sending the query to the DNS server failed: {e}"),
            );
            return self.fail(flow).await;
        }
        // A query sent again with the same id (a client's retry) replaces the flow before.
        self.pending.insert(request.id, flow);
    }

    /// A message from the server: the answer to the pending query with its id.
    async fn answer(&mut self, client: &Connection, message: &[u8]) {
        let Ok(message) = parse(message) else {
            tracing::debug!(client = ?client.peername, "dns: an unreadable answer from the server");
            return;
        };
        if message.query {
            return;
        }
        let Some(mut flow) = self.pending.remove(&message.id) else {
            return;
        };
        flow.dns_response = Some(DnsMessage {
            timestamp: Some(now()),
            ..message
        });
        self.respond(flow).await;
    }

    /// `dns_response`, then the flow is saved and the response (as the scripts left it) goes
    /// to the client.
    async fn respond(&mut self, mut flow: Flow) {
        if self.shared.hook(Hook::DnsResponse, &mut flow).await == Verdict::Kill {
            return;
        }
        flow.live = false;
        self.shared.sink.flow_finished(&flow);
        // A script may have removed the response: nothing to send then.
        if let Some(response) = &flow.dns_response {
            self.outbox.push(pack(response));
        }
    }

    /// `dns_error`, then SERVFAIL for the client (mitmproxy's answer to a failed query).
    async fn fail(&mut self, mut flow: Flow) {
        if self.shared.hook(Hook::DnsError, &mut flow).await == Verdict::Kill {
            return;
        }
        flow.live = false;
        self.shared.sink.flow_finished(&flow);
        let request = flow.dns_request.clone().unwrap_or_default();
        self.outbox.push(pack(&DnsMessage {
            query: false,
            response_code: SERVFAIL,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            ..request
        }));
    }

    /// Every query still waiting for the server fails with `reason`.
    async fn fail_pending(&mut self, _client: &Connection, reason: &str) {
        let mut pending: Vec<Flow> = self.pending.drain().map(|(_, flow)| flow).collect();
        pending.sort_by(|a, b| a.timestamp_created.total_cmp(&b.timestamp_created));
        for mut flow in pending {
            set_error(&mut flow, reason);
            self.fail(flow).await;
        }
    }

    /// Closes the server socket or connection, if any: `server_disconnected`.
    async fn disconnect(&mut self, client: &Connection) {
        if self.upstream.take().is_some() {
            self.server.timestamp_end = Some(now());
            self.shared
                .connection_hook(Hook::ServerDisconnected, client, Some(&mut self.server))
                .await;
            // The next forwarded query connects again, with a fresh connection.
            let address = self.server.address.take();
            self.server = unconnected_server();
            self.server.transport_protocol = self.transport.into();
            self.server.address = address;
        }
    }
}

/// Every question asks for an IPv4 or IPv6 address (class IN): the proxy resolves those itself.
fn only_address_lookups(request: &DnsMessage) -> bool {
    !request.questions.is_empty()
        && request
            .questions
            .iter()
            .all(|q| q.class == CLASS_IN && matches!(q.r#type, TYPE_A | TYPE_AAAA))
}

/// The first name server of `configured` (`IP` or `IP:PORT`), else of the system's
/// `/etc/resolv.conf` (read once per process, as mitmproxy caches it); port 53 unless given.
fn name_server(configured: &[String]) -> Option<Address> {
    static SYSTEM: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let servers = if configured.is_empty() {
        SYSTEM.get_or_init(|| {
            std::fs::read_to_string("/etc/resolv.conf")
                .map(|text| system_name_servers(&text))
                .unwrap_or_default()
        })
    } else {
        configured
    };
    let first = servers.first()?;
    let (host, port) = match first.parse::<SocketAddr>() {
        Ok(addr) => (addr.ip().to_string(), addr.port()),
        Err(_) => (first.trim_matches(['[', ']']).to_string(), 53),
    };
    Some(Address {
        host,
        port: u32::from(port),
    })
}

/// The `nameserver` lines of a resolv.conf.
fn system_name_servers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .map(|rest| rest.trim().to_string())
        .filter(|server| !server.is_empty())
        .collect()
}

/// The proxy's own answer to A/AAAA questions, through the system resolver (NOTIMP for
/// other types, which `query` sends to a name server instead).
async fn resolve(request: &DnsMessage) -> DnsMessage {
    let mut response = DnsMessage {
        query: false,
        recursion_available: true,
        timestamp: Some(now()),
        ..request.clone()
    };
    response.answers.clear();
    response.authorities.clear();
    response.additionals.clear();
    for question in &request.questions {
        let wanted_v4 = match (question.r#type, question.class) {
            (TYPE_A, CLASS_IN) => true,
            (TYPE_AAAA, CLASS_IN) => false,
            _ => {
                response.response_code = NOTIMP;
                return response;
            }
        };
        let found = tokio::net::lookup_host((question.name.as_str(), 0))
            .await
            .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>());
        let Ok(addrs) = found else {
            response.response_code = NXDOMAIN;
            return response;
        };
        for ip in addrs {
            let data = match ip {
                IpAddr::V4(v4) if wanted_v4 => v4.octets().to_vec(),
                IpAddr::V6(v6) if !wanted_v4 => v6.octets().to_vec(),
                _ => continue,
            };
            response.answers.push(DnsResourceRecord {
                name: question.name.clone(),
                r#type: question.r#type,
                class: question.class,
                ttl: RESOLVED_TTL,
                data: data.into(),
            });
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_configured_or_system_name_server_on_port_53_unless_given() {
        let first = |servers: &[&str]| {
            let servers: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
            name_server(&servers).map(|a| (a.host, a.port))
        };
        assert_eq!(
            first(&["10.0.0.2", "10.0.0.3"]),
            Some(("10.0.0.2".into(), 53))
        );
        assert_eq!(first(&["127.0.0.1:5353"]), Some(("127.0.0.1".into(), 5353)));
        assert_eq!(first(&["[::1]:5353"]), Some(("::1".into(), 5353)));
        assert_eq!(first(&["::1"]), Some(("::1".into(), 53)));
        let conf = "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n";
        assert_eq!(system_name_servers(conf), ["192.0.2.53", "192.0.2.54"]);
    }
}
