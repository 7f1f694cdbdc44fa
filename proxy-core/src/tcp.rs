//! Raw TCP flows: a CONNECT tunnel whose client speaks neither TLS nor HTTP, or whose host
//! matches `--tcp-hosts`, becomes a flow of type "tcp" (spec 1.6).
//!
//! Hook order: (`http_connect` … `http_connected` for the tunnel, then) `tcp_start`, a
//! `tcp_message` for each chunk received from either side (awaited: the chunk forwarded is
//! `flow.messages[-1].content` as the scripts left it), then `tcp_end` when both sides closed or
//! `tcp_error` when the flow failed or was killed; `server_disconnected` follows. The flow goes
//! to the sinks at its end. Chunk boundaries are whatever `read()` returned.
//!
//! With no script implementing a TCP hook and no sink keeping contents, the bytes are relayed
//! as they are and the flow is recorded without messages.

use bytes::Bytes;
use flowtap_proto::v1::{Connection, Flow, TcpMessage};
use tokio::io::AsyncWriteExt;

use crate::context::Shared;
use crate::flow::{self, KILLED_MESSAGE, is_killed};
use crate::hooks::{Hook, Verdict};
use crate::http1::Conn;
use crate::limits::{Activity, idle_bounded};
use crate::live::{self, HandOver, Killed, MessageKind};
use crate::upstream::Io;

const HOOKS: [Hook; 4] = [
    Hook::TcpStart,
    Hook::TcpMessage,
    Hook::TcpEnd,
    Hook::TcpError,
];

/// Runs a TCP flow between `client` (which may hold bytes already read) and `server` until
/// both sides closed, then fires `tcp_end` or `tcp_error` and `server_disconnected`.
pub(crate) async fn serve(
    shared: &Shared,
    client_conn: &Connection,
    activity: &Activity,
    client: Conn<Io>,
    server: Io,
    server_conn: Connection,
) {
    let mut flow = flow::new_stream_flow("tcp", client_conn.clone(), server_conn);
    let registered = shared.live.register(&flow.id);
    let messages = shared.keeps_messages(&HOOKS);
    let handed = shared
        .live
        .hand_over(&flow.id, messages.then_some(MessageKind::Tcp));
    shared.hook(Hook::TcpStart, &mut flow).await;
    let mut server = Conn::new(server);
    let mut client = client;
    let idle = shared.config.tunnel_idle_timeout;
    let relayed = if messages {
        let mut relay = Relay {
            shared,
            flow: &mut flow,
            client: &mut client,
            server: &mut server,
        };
        idle_bounded(activity, idle, relay.run(handed)).await
    } else {
        let kill = handed.kill.as_ref();
        idle_bounded(
            activity,
            idle,
            relay_bytes(&mut client, &mut server, &mut flow, kill),
        )
        .await
    };
    if relayed.is_none() {
        flow::set_error(
            &mut flow,
            format!("no data either way for {idle:?} (tunnel_idle_timeout)"),
        );
    }
    shared.live.finish(&flow.id);
    let hook = if flow.error.is_some() {
        Hook::TcpError
    } else {
        Hook::TcpEnd
    };
    shared.hook(hook, &mut flow).await;
    flow.live = false;
    shared.sink.flow_finished(&flow);
    drop(registered);
    let mut server_conn = flow.server_conn.unwrap_or_default();
    server_conn.timestamp_end = Some(flow::now());
    shared
        .connection_hook(
            Hook::ServerDisconnected,
            client_conn,
            Some(&mut server_conn),
        )
        .await;
}

/// Copies bytes both ways until both sides closed (or the flow is killed).
async fn relay_bytes(
    client: &mut Conn<Io>,
    server: &mut Conn<Io>,
    flow: &mut Flow,
    kill: Option<&Killed>,
) {
    let copied = crate::http1::splice(client, server);
    tokio::select! {
        copied = copied => if let Err(e) = copied {
            flow::set_error(flow, e.to_string());
        },
        () = live::killed(kill) => flow::set_error(flow, KILLED_MESSAGE),
    }
}

/// The relay of one TCP flow that records its messages.
struct Relay<'a> {
    shared: &'a Shared,
    flow: &'a mut Flow,
    client: &'a mut Conn<Io>,
    server: &'a mut Conn<Io>,
}

/// The flow ended; `flow.error` says whether it failed.
struct Ended;

impl Relay<'_> {
    async fn run(&mut self, handed: HandOver) {
        let HandOver {
            kill,
            mut injections,
        } = handed;
        let (mut client_open, mut server_open) = (true, true);
        if !self.client.buf.is_empty() {
            let first = self.client.buf.split().freeze();
            if self.message(true, first).await.is_err() {
                return;
            }
        }
        while client_open || server_open {
            let (from_client, read) = tokio::select! {
                biased;
                () = live::killed(kill.as_ref()) => {
                    flow::set_error(self.flow, KILLED_MESSAGE);
                    return;
                }
                Some(injection) = live::next_injection(&mut injections) => {
                    match self.message(!injection.to_client, injection.content).await {
                        Ok(()) => continue,
                        Err(Ended) => return,
                    }
                }
                read = self.client.fill(), if client_open => (true, read),
                read = self.server.fill(), if server_open => (false, read),
            };
            match read {
                Ok(0) => {
                    // Half-close: the other side learns that no more data comes.
                    let other = if from_client {
                        client_open = false;
                        &mut self.server
                    } else {
                        server_open = false;
                        &mut self.client
                    };
                    let _ = other.io.shutdown().await;
                }
                Ok(_) => {
                    let conn = if from_client {
                        &mut self.client
                    } else {
                        &mut self.server
                    };
                    let chunk = conn.buf.split().freeze();
                    if self.message(from_client, chunk).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let side = if from_client { "client" } else { "server" };
                    flow::set_error(
                        self.flow,
                        format!("TCP connection to the {side} failed: {e}"),
                    );
                    return;
                }
            }
        }
    }

    /// A chunk from one side (or injected): recorded, shown to `tcp_message`, then forwarded
    /// as the scripts left it.
    async fn message(&mut self, from_client: bool, content: Bytes) -> Result<(), Ended> {
        self.flow.messages.push(TcpMessage {
            from_client,
            content,
            timestamp: flow::now(),
        });
        let verdict = self.shared.hook(Hook::TcpMessage, self.flow).await;
        if verdict == Verdict::Kill || is_killed(self.flow) {
            flow::set_error(self.flow, KILLED_MESSAGE);
            return Err(Ended);
        }
        let Some(content) = self.flow.messages.last().map(|m| m.content.clone()) else {
            return Ok(());
        };
        let (to, side) = if from_client {
            (&mut *self.server, "server")
        } else {
            (&mut *self.client, "client")
        };
        let written = async {
            to.io.write_all(&content).await?;
            to.io.flush().await
        };
        if let Err(e) = written.await {
            flow::set_error(
                self.flow,
                format!("TCP connection to the {side} failed: {e}"),
            );
            return Err(Ended);
        }
        Ok(())
    }
}
