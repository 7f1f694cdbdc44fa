//! UDP listeners: `--mode dns` and `reverse:dns://HOST[:PORT]` (each query a DNS flow, served
//! by `dns`) and `reverse:udp://HOST:PORT`, the UDP relay here.
//!
//! Every mode here serves each client address as a session (mitmproxy's UDP "connection"):
//! `client_connected` at its first datagram, `client_disconnected` when it ends after
//! [`UDP_TIMEOUT`] without a datagram either way (mitmproxy's `UDP_TIMEOUT`); at shutdown the
//! session's flow and server hooks still fire but, as in mitmdump, no `client_disconnected`.
//! The next datagram from that address starts a new session.
//!
//! The relay: a session's datagrams form one flow of type "udp" (mitmproxy's `UDPFlow`),
//! relayed through a socket of its own connected to the target. Hook order, as mitmdump 12.3.1
//! fires them (fixtures/mitmproxy-12/udp-reverse.events.txt): `client_connected`, `udp_start`,
//! `server_connect`, `server_connected`, one `udp_message` per datagram either way (awaited:
//! the datagram sent is `flow.messages[-1].content` as the scripts left it; a killed flow ends
//! and sends nothing more), then `udp_end` (or `udp_error` when the server could not be reached
//! or the flow was killed), `server_disconnected`, `client_disconnected`.
//!
//! Bounds: at most `max_client_connections` sessions at once (each may hold a server socket;
//! datagrams from new addresses beyond that are dropped), datagrams of at most
//! [`MAX_DATAGRAM`] bytes, and at most [`CLIENT_QUEUE`] datagrams waiting for a session whose
//! hook is running (more are dropped, as a full socket buffer would).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flowtap_proto::v1::{Connection, Flow, TcpMessage};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::context::Shared;
use crate::flow::{self, KILLED_MESSAGE, connection_subject, is_killed};
use crate::hooks::{Hook, Verdict};
use crate::live::{self, HandOver, MessageKind};
use crate::mode::{Mode, ModeSpec, ReverseTarget};

/// The largest datagram relayed (the largest a UDP header can announce).
pub(crate) const MAX_DATAGRAM: usize = 65535;
/// Datagrams waiting for one session while its hooks run.
const CLIENT_QUEUE: usize = 64;
/// A session ends after this long without a datagram either way (mitmproxy's `UDP_TIMEOUT`).
pub(crate) const UDP_TIMEOUT: Duration = Duration::from_secs(20);

const HOOKS: [Hook; 4] = [
    Hook::UdpStart,
    Hook::UdpMessage,
    Hook::UdpEnd,
    Hook::UdpError,
];

/// Serves the UDP listener `socket` in the mode `spec` (`dns`, `reverse:dns://` or
/// `reverse:udp://`) until `stop` turns true; then lets the client sessions under way end
/// (their end hooks fire) within `shutdown_grace` and returns.
pub(crate) async fn serve(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    spec: Arc<ModeSpec>,
    mut stop: watch::Receiver<bool>,
) {
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let cap = match shared.config.max_client_connections {
        0 => crate::limits::default_max_clients(crate::limits::descriptor_limit()),
        n => n,
    };
    let listener = Arc::new(Listener {
        socket,
        shared,
        spec,
        local,
    });
    let mut clients: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut tasks: JoinSet<SocketAddr> = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut at_cap = false;
    loop {
        let (len, peer) = tokio::select! {
            received = listener.socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!("udp: receive failed: {e}");
                    continue;
                }
            },
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                // A session that ended may have been replaced by a new one for the address.
                if let Ok(peer) = ended
                    && clients.get(&peer).is_some_and(mpsc::Sender::is_closed)
                {
                    clients.remove(&peer);
                }
                continue;
            }
            _ = stop.changed() => break,
        };
        let datagram = Bytes::copy_from_slice(&buf[..len]);
        let datagram = match clients.get(&peer).map(|c| c.try_send(datagram.clone())) {
            Some(Ok(())) => continue,
            Some(Err(TrySendError::Full(_))) => {
                tracing::debug!("udp: dropping a datagram from {peer}: its session is busy");
                continue;
            }
            Some(Err(TrySendError::Closed(datagram))) => datagram,
            None => datagram,
        };
        // Ended sessions leave the map as their tasks are joined (above); a closed one for this
        // address is replaced below.
        if clients.len() >= cap && !clients.contains_key(&peer) {
            if !at_cap {
                tracing::warn!(
                    "{cap} UDP clients served (max_client_connections): datagrams from new clients are dropped until a session ends"
                );
            }
            at_cap = true;
            continue;
        }
        at_cap = false;
        let (sender, receiver) = mpsc::channel(CLIENT_QUEUE);
        // A new channel has room for the first datagram.
        let _ = sender.try_send(datagram);
        clients.insert(peer, sender);
        let listener = listener.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            session(&listener, peer, receiver, stop).await;
            peer
        });
    }
    drop(clients);
    let grace = listener.shared.config.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "{} UDP clients still served after {grace:?}; ending their sessions",
            tasks.len()
        );
        tasks.shutdown().await;
    }
}

/// Binds the UDP socket of a listener at `addr` and, `with_tcp`, a TCP listener on the same
/// port (the DNS modes). With port 0 the TCP port is the one the UDP socket got; when another
/// socket holds that TCP port, both are bound afresh (a few times).
pub(crate) async fn bind(
    addr: SocketAddr,
    with_tcp: bool,
) -> std::io::Result<(Arc<UdpSocket>, Option<TcpListener>)> {
    let mut attempts = 0;
    loop {
        let udp = UdpSocket::bind(addr).await?;
        if !with_tcp {
            return Ok((Arc::new(udp), None));
        }
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((Arc::new(udp), Some(tcp))),
            Err(e) if addr.port() == 0 && attempts < 8 => {
                tracing::debug!(
                    "udp: the TCP port beside {:?} is taken ({e}); binding again",
                    udp.local_addr()
                );
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What every session of one UDP listener shares.
pub(crate) struct Listener {
    socket: Arc<UdpSocket>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) spec: Arc<ModeSpec>,
    local: SocketAddr,
}

/// One client address's session, as mitmproxy's UDP "connection": its datagrams, the way back
/// to it, its `client_conn`.
pub(crate) struct ClientSession<'a> {
    pub(crate) listener: &'a Listener,
    pub(crate) peer: SocketAddr,
    pub(crate) client: Connection,
    /// The datagrams from the client, in order.
    pub(crate) datagrams: mpsc::Receiver<Bytes>,
    /// Turns true at shutdown.
    pub(crate) stop: watch::Receiver<bool>,
}

impl ClientSession<'_> {
    /// Sends a datagram to the client. UDP promises no delivery, so a failure is only logged.
    pub(crate) async fn send(&self, datagram: &[u8]) {
        if let Err(e) = self.listener.socket.send_to(datagram, self.peer).await {
            tracing::debug!("udp: sending to {} failed: {e}", self.peer);
        }
    }
}

/// `client_connected`, the mode's work until the session ends (idle for [`UDP_TIMEOUT`], or
/// shutdown), then `client_disconnected`.
async fn session(
    listener: &Listener,
    peer: SocketAddr,
    datagrams: mpsc::Receiver<Bytes>,
    stop: watch::Receiver<bool>,
) {
    let shared = &*listener.shared;
    let mut client = flow::client_connection(peer, listener.local);
    client.transport_protocol = "udp".into();
    client.proxy_mode = listener.spec.full.clone();
    if let Some(error) = shared.blocked_client(peer.ip()) {
        client.error = Some(error.to_string());
    }
    if shared.hooks.interest().wants(Hook::ClientConnected) {
        let mut subject = connection_subject(&client, None);
        shared.hooks.call(Hook::ClientConnected, &mut subject).await;
        if let Some(changed) = subject.client_conn {
            client = changed;
        }
    }
    let mut session = ClientSession {
        listener,
        peer,
        client,
        datagrams,
        stop,
    };
    if session.client.error.is_none() {
        match &listener.spec.mode {
            Mode::Reverse(target) if target.scheme == "udp" => {
                UdpFlow::run(&mut session, target).await;
            }
            _ => crate::dns::serve_client(&mut session).await,
        }
    }
    let mut client = session.client;
    client.timestamp_end = Some(flow::now());
    // A session ended by shutdown gets no `client_disconnected`, as in mitmdump 12.3.1 (it
    // cancels UDP connections as it stops; fixtures/mitmproxy-12/modes/reverse-udp.events.txt).
    if !*session.stop.borrow() {
        shared
            .connection_hook(Hook::ClientDisconnected, &client, None)
            .await;
    }
    shared.hooks.client_closed(&client.id);
}

/// The `reverse:udp://` relay of one client session: one UDP flow.
struct UdpFlow {
    flow: Flow,
    server: UdpSocket,
    /// Messages are kept and shown to `udp_message` (a script implements a UDP hook, or a sink
    /// keeps contents); else datagrams are relayed as they are.
    messages: bool,
}

impl UdpFlow {
    /// The flow from the session's first datagram to its end hooks: `udp_start`, the server
    /// socket, the messages, `udp_end` or `udp_error`, `server_disconnected`.
    async fn run(session: &mut ClientSession<'_>, target: &ReverseTarget) {
        let shared = &*session.listener.shared;
        let mut server_conn = flow::unconnected_server();
        server_conn.transport_protocol = "udp".into();
        // Known from the start, as mitmproxy's reverse mode sets it before the UDP layer.
        server_conn.address = Some(flowtap_proto::v1::Address {
            host: target.host.clone(),
            port: u32::from(target.port),
        });
        let mut flow = flow::new_stream_flow("udp", session.client.clone(), server_conn);
        let registered = shared.live.register(&flow.id);
        let messages = shared.keeps_messages(&HOOKS);
        let handed = shared
            .live
            .hand_over(&flow.id, messages.then_some(MessageKind::Udp));
        shared.hook(Hook::UdpStart, &mut flow).await;
        let mut server = flow.server_conn.take().unwrap_or_default();
        let connected = connect(
            shared,
            &session.client,
            &mut server,
            |host, port| async move {
                let socket = connected_socket(&host, port).await?;
                let (peer, local) = (socket.peer_addr().ok(), socket.local_addr().ok());
                Ok((socket, peer, local))
            },
        )
        .await;
        flow.server_conn = Some(server);
        match connected {
            Ok(socket) => {
                let mut relay = UdpFlow {
                    flow,
                    server: socket,
                    messages,
                };
                relay.relay(session, handed).await;
                flow = relay.flow;
            }
            Err(reason) => flow::set_error(&mut flow, reason),
        }
        shared.live.finish(&flow.id);
        let hook = if flow.error.is_some() {
            Hook::UdpError
        } else {
            Hook::UdpEnd
        };
        shared.hook(hook, &mut flow).await;
        flow.live = false;
        shared.sink.flow_finished(&flow);
        drop(registered);
        let mut server = flow.server_conn.unwrap_or_default();
        if server.timestamp_start.is_some() {
            server.timestamp_end = Some(flow::now());
            shared
                .connection_hook(Hook::ServerDisconnected, &session.client, Some(&mut server))
                .await;
        }
    }

    /// Relays datagrams both ways until the session idles out, the flow is killed or the
    /// proxy stops.
    async fn relay(&mut self, session: &mut ClientSession<'_>, handed: HandOver) {
        let HandOver {
            kill,
            mut injections,
        } = handed;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let idle = tokio::time::sleep(UDP_TIMEOUT);
            let (from_client, content) = tokio::select! {
                biased;
                () = live::killed(kill.as_ref()) => {
                    flow::set_error(&mut self.flow, KILLED_MESSAGE);
                    return;
                }
                // `inject.udp`: as if received, so `udp_message` sees it first (mitmproxy).
                Some(injection) = live::next_injection(&mut injections) => {
                    (!injection.to_client, injection.content)
                }
                _ = session.stop.changed() => return,
                datagram = session.datagrams.recv() => match datagram {
                    Some(datagram) => (true, datagram),
                    None => return,
                },
                received = self.server.recv(&mut buf) => match received {
                    Ok(len) => (false, Bytes::copy_from_slice(&buf[..len])),
                    Err(e) => {
                        // A connected socket learns of ICMP errors (port unreachable).
                        flow::set_error(
                            &mut self.flow,
                            format!("UDP connection to the server failed: {e}"),
                        );
                        return;
                    }
                },
                () = idle => return,
            };
            if self.message(session, from_client, content).await.is_err() {
                return;
            }
        }
    }

    /// A datagram from one side: recorded, shown to `udp_message`, then sent on as the scripts
    /// left it. Err: the flow ends (killed, or the server cannot be written to).
    async fn message(
        &mut self,
        session: &ClientSession<'_>,
        from_client: bool,
        content: Bytes,
    ) -> Result<(), Ended> {
        let shared = &*session.listener.shared;
        let content = if self.messages {
            self.flow.messages.push(TcpMessage {
                from_client,
                content,
                timestamp: flow::now(),
            });
            let verdict = shared.hook(Hook::UdpMessage, &mut self.flow).await;
            if verdict == Verdict::Kill || is_killed(&self.flow) {
                flow::set_error(&mut self.flow, KILLED_MESSAGE);
                return Err(Ended);
            }
            match self.flow.messages.last() {
                Some(message) => message.content.clone(),
                None => return Ok(()),
            }
        } else {
            content
        };
        if !from_client {
            session.send(&content).await;
        } else if let Err(e) = self.server.send(&content).await {
            flow::set_error(
                &mut self.flow,
                format!("UDP connection to the server failed: {e}"),
            );
            return Err(Ended);
        }
        Ok(())
    }
}

/// The flow ended; `flow.error` says whether it failed.
struct Ended;

/// `server_connect` for `server` (whose address is set; the hook may change it or refuse),
/// `open(host, port)` (a socket or connection of the session's own, with its peer and local
/// addresses), then `server_connected` or `server_connect_error` (the reason is returned).
pub(crate) async fn connect<S, Opened>(
    shared: &Shared,
    client: &Connection,
    server: &mut Connection,
    open: impl FnOnce(String, u16) -> Opened,
) -> Result<S, String>
where
    Opened: Future<Output = Result<(S, Option<SocketAddr>, Option<SocketAddr>), String>>,
{
    shared
        .connection_hook(Hook::ServerConnect, client, Some(server))
        .await;
    let result = match (server.error.clone(), server.address.clone()) {
        (Some(reason), _) => Err(reason),
        (None, None) => Err("the server has no address".to_string()),
        (None, Some(address)) => match u16::try_from(address.port) {
            Ok(port) => open(address.host, port).await,
            Err(_) => Err(format!("invalid server port {}", address.port)),
        },
    };
    match result {
        Ok((socket, peer, local)) => {
            server.peername = peer.map(flow::address);
            server.sockname = local.map(flow::address);
            server.timestamp_start = Some(flow::now());
            shared
                .connection_hook(Hook::ServerConnected, client, Some(server))
                .await;
            Ok(socket)
        }
        Err(reason) => {
            server.error = Some(reason.clone());
            shared
                .connection_hook(Hook::ServerConnectError, client, Some(server))
                .await;
            Err(reason)
        }
    }
}

/// A UDP socket on an ephemeral port, connected to `host:port` (its first address).
pub(crate) async fn connected_socket(host: &str, port: u16) -> Result<UdpSocket, String> {
    let unreachable = |e: std::io::Error| format!("cannot reach {host}:{port} over UDP: {e}");
    let address = tokio::net::lookup_host((host, port))
        .await
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let local: SocketAddr = if address.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(unreachable)?;
    socket.connect(address).await.map_err(unreachable)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connected_socket_reaches_its_server_only() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let socket = connected_socket("127.0.0.1", port).await.unwrap();
        socket.send(b"ping").await.unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"ping");
        assert_eq!(from, socket.local_addr().unwrap());
        assert!(connected_socket("no-such-host.invalid", 53).await.is_err());
    }
}
