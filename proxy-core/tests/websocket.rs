//! WebSocket flows through the proxy with a hand-written client and origin: messages both
//! ways, fragments reassembled, control frames relayed, close codes recorded, the saved flow,
//! and malformed frames from either side.

#![allow(missing_docs)]

mod support;

use std::sync::Arc;

use flowtap_proto::v1::Flow;
use flowtap_proxy_core::{Config, NoHooks};
use support::TestProxy;
use support::websocket::{
    BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, WsClient, WsOrigin, close_payload,
};

/// A proxy whose sink records contents (as `-w` does), so frames are parsed.
async fn recording_proxy(config: Config) -> TestProxy {
    TestProxy::start_with(config, Arc::new(NoHooks::default()), true).await
}

async fn saved_flow(proxy: &TestProxy) -> Flow {
    let flows = proxy.sink.wait_flows(1).await;
    assert_eq!(flows.len(), 1, "one flow saved: {flows:?}");
    flows.into_iter().next().expect("one flow")
}

/// (type, from_client, content) of each recorded message.
fn messages(flow: &Flow) -> Vec<(u32, bool, Vec<u8>)> {
    flow.websocket
        .as_ref()
        .expect("a WebSocket flow")
        .messages
        .iter()
        .map(|m| (m.r#type, m.from_client, m.content.to_vec()))
        .collect()
}

#[tokio::test]
async fn messages_go_both_ways_and_the_flow_is_saved_at_the_end() {
    let origin = WsOrigin::start().await;
    let proxy = recording_proxy(Config::default()).await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/chat").await;
    assert!(
        client.response.starts_with("HTTP/1.1 101 "),
        "{}",
        client.response
    );

    client.send_text("hello websocket").await;
    let echo = client.frame().await;
    assert_eq!(
        (echo.opcode, &echo.payload[..]),
        (TEXT, &b"echo: hello websocket"[..])
    );
    assert!(!echo.masked, "frames to the client are not masked");
    client.send(true, BINARY, b"\x00\x01binary").await;
    let echo = client.frame().await;
    assert_eq!(
        (echo.opcode, &echo.payload[..]),
        (BINARY, &b"echo: \x00\x01binary"[..])
    );
    assert!(
        proxy.sink.flows().is_empty(),
        "a WebSocket flow is saved when it ends, not at the 101 response"
    );

    client.send(true, CLOSE, &close_payload(1000, "bye")).await;
    let close = client.frame().await;
    assert_eq!(close.close(), (1000, "bye".to_string()));
    assert!(client.at_end().await);

    let flow = saved_flow(&proxy).await;
    assert_eq!(flow.response.as_ref().map(|r| r.status_code), Some(101));
    assert_eq!(
        messages(&flow),
        vec![
            (1, true, b"hello websocket".to_vec()),
            (1, false, b"echo: hello websocket".to_vec()),
            (2, true, b"\x00\x01binary".to_vec()),
            (2, false, b"echo: \x00\x01binary".to_vec()),
        ]
    );
    let websocket = flow.websocket.as_ref().expect("a WebSocket flow");
    assert_eq!(websocket.closed_by_client, Some(true));
    assert_eq!(websocket.close_code, Some(1000));
    assert_eq!(websocket.close_reason.as_deref(), Some("bye"));
    assert!(websocket.timestamp_end.is_some());
    assert!(flow.error.is_none(), "{:?}", flow.error);
    assert!(!flow.live);

    let frames = origin.frames();
    assert!(
        frames.iter().all(|f| f.masked),
        "frames to the server are masked"
    );
    let handshake = &origin.handshakes()[0];
    assert!(
        !handshake
            .to_ascii_lowercase()
            .contains("permessage-deflate"),
        "the deflate offer is removed so messages stay readable: {handshake}"
    );
}

#[tokio::test]
async fn fragments_are_reassembled_and_control_frames_relayed() {
    let origin = WsOrigin::start().await;
    let proxy = recording_proxy(Config::default()).await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/").await;

    // A fragmented message from the client with a ping between its fragments.
    client.send(false, TEXT, b"frag").await;
    client.send(true, PING, b"are you there").await;
    client.send(false, CONTINUATION, b"ment").await;
    client.send(true, CONTINUATION, b"ed").await;
    let pong = client.frame().await;
    assert_eq!(
        (pong.opcode, &pong.payload[..]),
        (PONG, &b"are you there"[..])
    );
    let echo = client.frame().await;
    assert_eq!(&echo.payload[..], b"echo: fragmented");

    // A fragmented message from the server, a ping between; the client answers the ping.
    client.send_text("fragments please").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let frame = client.frame().await;
        got.push((frame.fin, frame.opcode, frame.payload));
    }
    assert_eq!(
        got,
        vec![
            (true, PING, b"mid".to_vec()),
            (false, TEXT, b"one".to_vec()),
            (false, CONTINUATION, b"two".to_vec()),
            (true, CONTINUATION, b"three".to_vec()),
        ],
        "the ping goes on at once; the message keeps its fragments"
    );
    client.send(true, PONG, b"mid").await;
    client.send(true, CLOSE, &close_payload(1000, "")).await;
    assert_eq!(client.frame().await.opcode, CLOSE);

    let flow = saved_flow(&proxy).await;
    assert_eq!(
        messages(&flow),
        vec![
            (1, true, b"fragmented".to_vec()),
            (1, false, b"echo: fragmented".to_vec()),
            (1, true, b"fragments please".to_vec()),
            (1, false, b"onetwothree".to_vec()),
        ],
        "control frames are not messages"
    );
    let frames: Vec<(bool, u8, Vec<u8>)> = origin
        .frames()
        .into_iter()
        .map(|f| (f.fin, f.opcode, f.payload))
        .collect();
    assert_eq!(
        &frames[..4],
        &[
            (true, PING, b"are you there".to_vec()),
            (false, TEXT, b"frag".to_vec()),
            (false, CONTINUATION, b"ment".to_vec()),
            (true, CONTINUATION, b"ed".to_vec()),
        ]
    );
    assert!(frames.contains(&(true, PONG, b"mid".to_vec())));
}

#[tokio::test]
async fn a_close_from_the_server_is_recorded_as_such() {
    let origin = WsOrigin::start().await;
    let proxy = recording_proxy(Config::default()).await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/").await;
    client.send_text("ping me").await;
    let ping = client.frame().await;
    assert_eq!(
        (ping.opcode, &ping.payload[..]),
        (PING, &b"are you there"[..])
    );
    client.send(true, PONG, b"are you there").await;
    client.send_text("close please").await;
    let close = client.frame().await;
    assert_eq!(close.close(), (4000, "server says bye".to_string()));
    client.send(true, CLOSE, &close.payload).await;
    assert!(client.at_end().await);

    let flow = saved_flow(&proxy).await;
    let websocket = flow.websocket.as_ref().expect("a WebSocket flow");
    assert_eq!(websocket.closed_by_client, Some(false));
    assert_eq!(websocket.close_code, Some(4000));
    assert_eq!(websocket.close_reason.as_deref(), Some("server says bye"));
    assert!(origin.frames().iter().any(|f| f.opcode == PONG));
}

#[tokio::test]
async fn an_unmasked_client_frame_ends_the_flow_with_a_protocol_error() {
    let origin = WsOrigin::start().await;
    let proxy = recording_proxy(Config::default()).await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/").await;
    use tokio::io::AsyncWriteExt as _;
    let unmasked = support::websocket::encode(true, TEXT, b"no mask", None);
    client.stream.write_all(&unmasked).await.expect("send");
    let close = client.frame().await;
    assert_eq!(close.close().0, 1002);
    assert!(client.at_end().await);

    let flow = saved_flow(&proxy).await;
    let error = flow.error.as_ref().expect("the flow failed").msg.clone();
    assert_eq!(
        error,
        "WebSocket protocol error from the client: unmasked frame from the client"
    );
    assert_eq!(
        flow.websocket.as_ref().and_then(|w| w.close_code),
        Some(1002)
    );
}

#[tokio::test]
async fn a_bad_frame_from_the_server_ends_the_flow_with_a_protocol_error() {
    let origin = WsOrigin::start().await;
    let proxy = recording_proxy(Config::default()).await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/").await;
    client.send_text("bad frame please").await;
    let close = client.frame().await;
    assert_eq!(close.close().0, 1002);
    assert!(client.at_end().await);
    let flow = saved_flow(&proxy).await;
    let error = flow.error.as_ref().expect("the flow failed").msg.clone();
    assert_eq!(
        error,
        "WebSocket protocol error from the server: unknown opcode 0x3"
    );
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_with_1009() {
    let origin = WsOrigin::start().await;
    let proxy = recording_proxy(Config {
        websocket_max_message_bytes: 1000,
        ..Config::default()
    })
    .await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/").await;
    client.send(false, BINARY, &[7; 600]).await;
    client.send(true, CONTINUATION, &[7; 600]).await;
    let close = client.frame().await;
    assert_eq!(close.close().0, 1009);
    let flow = saved_flow(&proxy).await;
    let error = flow.error.as_ref().expect("the flow failed").msg.clone();
    assert!(error.contains("message larger than 1000 bytes"), "{error}");
    assert!(
        origin.frames().iter().all(|f| f.opcode == CLOSE),
        "no fragment of the big message reached the server"
    );
}

#[tokio::test]
async fn without_scripts_or_recording_the_bytes_are_relayed_as_they_are() {
    let origin = WsOrigin::start().await;
    let proxy = TestProxy::start(Config::default()).await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/").await;
    client.send_text("hi").await;
    assert_eq!(&client.frame().await.payload[..], b"echo: hi");
    client.send(true, CLOSE, &close_payload(1000, "")).await;
    assert_eq!(client.frame().await.opcode, CLOSE);
    assert!(client.at_end().await);
    // A byte relay ends when both sides closed.
    drop(client);
    let flow = saved_flow(&proxy).await;
    let websocket = flow.websocket.as_ref().expect("still a WebSocket flow");
    assert!(
        websocket.messages.is_empty(),
        "nothing parsed, nothing kept"
    );
    assert!(websocket.timestamp_end.is_some());
    assert!(
        origin.handshakes()[0].contains("permessage-deflate"),
        "a byte relay leaves the offer alone"
    );
}

#[tokio::test]
async fn with_the_websocket_option_off_the_flow_has_no_websocket_part() {
    let origin = WsOrigin::start().await;
    let proxy = recording_proxy(Config {
        websocket: false,
        ..Config::default()
    })
    .await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/").await;
    client.send_text("hi").await;
    assert_eq!(&client.frame().await.payload[..], b"echo: hi");
    drop(client);
    let flow = saved_flow(&proxy).await;
    assert!(flow.websocket.is_none());
    assert_eq!(flow.response.as_ref().map(|r| r.status_code), Some(101));
}
