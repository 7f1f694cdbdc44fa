//! WebSocket flows (HTTP/1.1 only): after a `101 Switching Protocols` answering
//! `Upgrade: websocket`, the HTTP flow carries `flow.websocket` and its messages.
//!
//! Hook order (spec 1.5): `response` (already with an empty `flow.websocket`), then
//! `websocket_start`, `websocket_message` for each complete TEXT or BINARY message from either
//! side (reassembled from its fragments; awaited, so a script may change `content` or
//! `drop()` it), and `websocket_end` once the connection closed, with `closed_by_client`,
//! `close_code`, `close_reason` and `timestamp_end` set (and `flow.error` when it was killed
//! or broke). The flow goes to the sinks after `websocket_end`.
//!
//! Frames are parsed only when something reads the messages: a script implementing a
//! WebSocket hook, or a sink that keeps contents. Otherwise (and with `--set websocket=false`)
//! the bytes are relayed as they are. Ping, pong and close frames are relayed, not shown to
//! scripts. When frames are parsed, `permessage-deflate` is removed from the client's offer so
//! that messages travel uncompressed; a server that negotiates an extension anyway is relayed
//! as bytes.
//!
//! - `frame`: the RFC 6455 frame codec and message reassembly.

pub(crate) mod frame;

use bytes::{Bytes, BytesMut};
use flowtap_proto::v1::{Flow, Header, WebSocketData, WebSocketMessage};
use tokio::io::AsyncWriteExt;

use crate::context::Shared;
use crate::flow::{self, KILLED_MESSAGE, is_killed};
use crate::hooks::{Hook, Verdict};
use crate::http1::{Conn, header, header_has_token};
use crate::limits::{Activity, idle_bounded};
use crate::live::{self, HandOver, Injection, Killed, MessageKind};
use crate::upstream::Io;
use frame::{Assembler, Event, Frame, FrameError, Message, Opcode};

/// The WebSocket hooks; a script implementing any of them makes the relay parse frames.
const HOOKS: [Hook; 3] = [
    Hook::WebsocketStart,
    Hook::WebsocketMessage,
    Hook::WebsocketEnd,
];

/// The request asks to become a WebSocket.
pub(crate) fn is_upgrade_request(headers: &[Header]) -> bool {
    header_has_token(headers, "upgrade", "websocket")
}

/// A 101 answer turns this flow into a WebSocket flow (`flow.websocket` is set before the
/// `response` hook): the server switched to `websocket` and the option is on.
pub(crate) fn is_websocket_response(shared: &Shared, headers: &[Header]) -> bool {
    shared.config.websocket && header_has_token(headers, "upgrade", "websocket")
}

/// The relay will read messages, so frames must be parsed.
pub(crate) fn parses_frames(shared: &Shared) -> bool {
    shared.config.websocket && shared.keeps_messages(&HOOKS)
}

/// Removes `permessage-deflate` offers from `Sec-WebSocket-Extensions` (the header goes when
/// nothing is left), so the server cannot negotiate compressed frames the relay cannot read.
pub(crate) fn strip_deflate_offer(headers: &mut Vec<Header>) {
    for h in headers.iter_mut() {
        if !h.name.eq_ignore_ascii_case(b"sec-websocket-extensions") {
            continue;
        }
        let value = String::from_utf8_lossy(&h.value).into_owned();
        let kept: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|offer| {
                let name = offer.split(';').next().unwrap_or_default().trim();
                !offer.is_empty() && !name.eq_ignore_ascii_case("permessage-deflate")
            })
            .collect();
        h.value = Bytes::from(kept.join(", "));
    }
    headers.retain(|h| {
        !(h.name.eq_ignore_ascii_case(b"sec-websocket-extensions") && h.value.is_empty())
    });
}

/// Runs the WebSocket part of `flow` until the connection closes, then fires `websocket_end`
/// and hands the flow to the sinks. `client` and `server` may hold bytes read past the
/// handshake.
pub(crate) async fn relay(
    shared: &Shared,
    activity: &Activity,
    client: &mut Conn<Io>,
    server: &mut Conn<Io>,
    flow: &mut Flow,
) {
    let negotiated = flow
        .response
        .as_ref()
        .and_then(|r| header(&r.headers, "sec-websocket-extensions"))
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let parse = parses_frames(shared) && negotiated.is_none();
    if let (Some(extensions), true) = (&negotiated, parses_frames(shared)) {
        tracing::warn!(
            flow = %flow.id,
            "the server negotiated WebSocket extensions ({extensions}); relaying bytes without messages"
        );
    }
    let handed = shared
        .live
        .hand_over(&flow.id, parse.then_some(MessageKind::WebSocket));
    shared.hook(Hook::WebsocketStart, flow).await;
    let idle = shared.config.tunnel_idle_timeout;
    let relayed = if parse {
        let mut relay = Relay {
            shared,
            flow: &mut *flow,
            client: Side::new(client, true, shared.config.websocket_max_message_bytes),
            server: Side::new(server, false, shared.config.websocket_max_message_bytes),
        };
        idle_bounded(activity, idle, relay.run(handed)).await
    } else {
        let kill = handed.kill.as_ref();
        idle_bounded(activity, idle, relay_bytes(client, server, flow, kill)).await
    };
    if relayed.is_none() {
        flow::set_error(
            flow,
            format!("no data either way for {idle:?} (tunnel_idle_timeout)"),
        );
    }
    let websocket = flow.websocket.get_or_insert_with(WebSocketData::default);
    websocket.timestamp_end = Some(flow::now());
    shared.hook(Hook::WebsocketEnd, flow).await;
    flow.live = false;
    shared.sink.flow_finished(flow);
}

/// Copies bytes both ways until either side closes (or the flow is killed).
async fn relay_bytes(
    client: &mut Conn<Io>,
    server: &mut Conn<Io>,
    flow: &mut Flow,
    kill: Option<&Killed>,
) {
    // Bytes already read past the handshake belong to the other side: splice sends them first.
    let copied = crate::http1::splice(client, server);
    tokio::select! {
        _ = copied => {}
        () = live::killed(kill) => flow::set_error(flow, KILLED_MESSAGE),
    }
}

/// One side of the connection as the relay sees it.
struct Side<'c> {
    conn: &'c mut Conn<Io>,
    from_client: bool,
    assembler: Assembler,
    /// This side sent a close frame: what it sends next is ignored.
    close_received: bool,
    /// A close frame went to this side: no more frames may follow.
    close_sent: bool,
}

impl<'c> Side<'c> {
    fn new(conn: &'c mut Conn<Io>, from_client: bool, limit: u64) -> Self {
        Self {
            conn,
            from_client,
            assembler: Assembler::new(limit),
            close_received: false,
            close_sent: false,
        }
    }

    fn name(&self) -> &'static str {
        if self.from_client { "client" } else { "server" }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.conn.io.write_all(bytes).await?;
        self.conn.io.flush().await
    }
}

/// Why the relay stopped.
enum End {
    /// Both sides sent their close frames, or one went away.
    Closed,
    /// Recorded in `flow.error` already.
    Failed,
}

/// The parsing relay of one WebSocket flow.
struct Relay<'a, 'c> {
    shared: &'a Shared,
    flow: &'a mut Flow,
    client: Side<'c>,
    server: Side<'c>,
}

impl<'c> Relay<'_, 'c> {
    async fn run(&mut self, handed: HandOver) {
        let HandOver {
            kill,
            mut injections,
        } = handed;
        loop {
            for from_client in [true, false] {
                if let Err(End::Closed | End::Failed) = self.drain(from_client).await {
                    return;
                }
            }
            let read = tokio::select! {
                biased;
                () = live::killed(kill.as_ref()) => {
                    flow::set_error(self.flow, KILLED_MESSAGE);
                    return;
                }
                Some(injection) = live::next_injection(&mut injections) => {
                    match self.inject(injection).await {
                        Ok(()) => continue,
                        Err(_) => return,
                    }
                }
                read = self.client.conn.fill() => (true, read),
                read = self.server.conn.fill() => (false, read),
            };
            let (from_client, read) = read;
            let outcome = match read {
                Ok(0) => self.went_away(from_client, None),
                Ok(_) => Ok(()),
                Err(e) => self.went_away(from_client, Some(e)),
            };
            if outcome.is_err() {
                return;
            }
        }
    }

    fn side(&mut self, from_client: bool) -> &mut Side<'c> {
        if from_client {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    /// Handles the whole frames one side has sent so far.
    async fn drain(&mut self, from_client: bool) -> Result<(), End> {
        loop {
            let side = self.side(from_client);
            if side.close_received {
                side.conn.buf.clear();
                return Ok(());
            }
            let frame = match side.assembler.next_frame(&mut side.conn.buf, from_client) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.protocol_error(from_client, &e).await),
            };
            let event = match self.side(from_client).assembler.push(frame) {
                Ok(event) => event,
                Err(e) => return Err(self.protocol_error(from_client, &e).await),
            };
            match event {
                Event::Partial => {}
                Event::Message(message) => self.message(from_client, message, false).await?,
                Event::Control(frame) => self.control(from_client, frame).await?,
            }
        }
    }

    /// A complete message: recorded, shown to the scripts, forwarded unless dropped.
    async fn message(
        &mut self,
        from_client: bool,
        message: Message,
        injected: bool,
    ) -> Result<(), End> {
        let websocket = self
            .flow
            .websocket
            .get_or_insert_with(WebSocketData::default);
        websocket.messages.push(WebSocketMessage {
            r#type: if message.is_text { 1 } else { 2 },
            from_client,
            content: message.content,
            timestamp: flow::now(),
            dropped: false,
            injected,
        });
        let verdict = self.shared.hook(Hook::WebsocketMessage, self.flow).await;
        if verdict == Verdict::Kill || is_killed(self.flow) {
            flow::set_error(self.flow, KILLED_MESSAGE);
            return Err(End::Failed);
        }
        let Some(last) = self.flow.websocket.as_ref().and_then(|w| w.messages.last()) else {
            return Ok(());
        };
        if last.dropped {
            return Ok(());
        }
        let (is_text, content) = (last.r#type == 1, last.content.clone());
        let destination = self.side(!from_client);
        if destination.close_sent {
            return Ok(());
        }
        let mut out = BytesMut::new();
        let to_server = from_client;
        frame::encode_message(&mut out, is_text, &content, &message.fragments, || {
            to_server.then(fresh_mask)
        });
        self.forward(!from_client, &out).await
    }

    /// Ping and pong go to the other side as they came; a close is recorded and relayed.
    async fn control(&mut self, from_client: bool, frame: Frame) -> Result<(), End> {
        if frame.opcode == Opcode::Close {
            let (code, reason) = match frame::parse_close(&frame.payload) {
                Ok(close) => close,
                Err(e) => return Err(self.protocol_error(from_client, &e).await),
            };
            let websocket = self
                .flow
                .websocket
                .get_or_insert_with(WebSocketData::default);
            if websocket.close_code.is_none() {
                websocket.closed_by_client = Some(from_client);
                websocket.close_code = Some(u32::from(code));
                websocket.close_reason = Some(reason);
            }
            self.side(from_client).close_received = true;
        }
        let to_server = from_client;
        let mask = to_server.then(|| frame.mask.unwrap_or_else(fresh_mask));
        if !self.side(!from_client).close_sent {
            let mut out = BytesMut::new();
            frame::encode(&mut out, true, frame.opcode, &frame.payload, mask);
            self.forward(!from_client, &out).await?;
            if frame.opcode == Opcode::Close {
                self.side(!from_client).close_sent = true;
            }
        }
        if self.client.close_received && self.server.close_received {
            return Err(End::Closed);
        }
        Ok(())
    }

    /// A message a script injected: it goes through `websocket_message` like a received one.
    async fn inject(&mut self, injection: Injection) -> Result<(), End> {
        let message = Message {
            is_text: injection.is_text,
            content: injection.content,
            fragments: Vec::new(),
        };
        self.message(!injection.to_client, message, true).await
    }

    async fn forward(&mut self, to_client: bool, bytes: &[u8]) -> Result<(), End> {
        let side = self.side(to_client);
        if let Err(e) = side.write(bytes).await {
            let name = side.name();
            flow::set_error(
                self.flow,
                format!("WebSocket connection to the {name} failed: {e}"),
            );
            return Err(End::Failed);
        }
        Ok(())
    }

    /// One side closed its connection (or it failed). Without a close frame before, the
    /// close is abnormal (code 1006, RFC 6455 7.1.5).
    fn went_away(&mut self, from_client: bool, error: Option<std::io::Error>) -> Result<(), End> {
        let websocket = self
            .flow
            .websocket
            .get_or_insert_with(WebSocketData::default);
        if websocket.close_code.is_none() {
            websocket.closed_by_client = Some(from_client);
            websocket.close_code = Some(1006);
            websocket.close_reason = Some(String::new());
        }
        if let Some(e) = error {
            let name = self.side(from_client).name();
            flow::set_error(
                self.flow,
                format!("WebSocket connection to the {name} failed: {e}"),
            );
            return Err(End::Failed);
        }
        Err(End::Closed)
    }

    /// A side broke the protocol: the error goes on the flow and both sides get a close
    /// frame saying why (1002, 1007 or 1009).
    async fn protocol_error(&mut self, from_client: bool, error: &FrameError) -> End {
        let name = self.side(from_client).name();
        let message = format!("WebSocket protocol error from the {name}: {error}");
        tracing::info!(flow = %self.flow.id, "{message}");
        let payload = frame::close_payload(error.close_code(), &error.to_string());
        for to_client in [true, false] {
            let side = self.side(to_client);
            if side.close_sent {
                continue;
            }
            side.close_sent = true;
            let mut out = BytesMut::new();
            let mask = (!to_client).then(fresh_mask);
            frame::encode(&mut out, true, Opcode::Close, &payload, mask);
            let _ = side.write(&out).await;
        }
        let websocket = self
            .flow
            .websocket
            .get_or_insert_with(WebSocketData::default);
        if websocket.close_code.is_none() {
            websocket.closed_by_client = Some(from_client);
            websocket.close_code = Some(u32::from(error.close_code()));
            websocket.close_reason = Some(error.to_string());
        }
        flow::set_error(self.flow, message);
        End::Failed
    }
}

/// A masking key for a frame the proxy made itself (RFC 6455 5.3: from a strong source of
/// entropy). Frames forwarded unchanged keep the client's key instead.
fn fresh_mask() -> [u8; 4] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> Vec<Header> {
        vec![
            Header {
                name: Bytes::from_static(b"Upgrade"),
                value: Bytes::from_static(b"websocket"),
            },
            Header {
                name: Bytes::from_static(b"Sec-WebSocket-Extensions"),
                value: Bytes::copy_from_slice(value.as_bytes()),
            },
        ]
    }

    #[test]
    fn deflate_offers_are_removed() {
        let mut h = headers("permessage-deflate; client_max_window_bits");
        strip_deflate_offer(&mut h);
        assert_eq!(h.len(), 1, "the header goes when nothing is left");
        let mut h = headers("permessage-deflate, x-other; a=1, PerMessage-Deflate");
        strip_deflate_offer(&mut h);
        assert_eq!(&h[1].value[..], b"x-other; a=1");
        assert!(is_upgrade_request(&h));
    }
}
