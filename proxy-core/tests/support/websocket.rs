//! WebSocket peers written by hand for the tests (RFC 6455 frames, independent of the proxy's
//! codec): an origin that answers the upgrade and echoes messages, a client that upgrades
//! through the proxy, and a raw TCP echo origin for CONNECT tunnels.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TEXT: u8 = 1;
pub const BINARY: u8 = 2;
pub const CONTINUATION: u8 = 0;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

/// The RFC 6455 example key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// One frame as it was on the wire (payload unmasked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsFrame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl WsFrame {
    /// The (code, reason) of a close frame.
    pub fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (
            code,
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        )
    }
}

/// The bytes of one frame; masked with `mask` when given.
pub fn encode(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(mask_bit | payload.len() as u8);
    } else if payload.len() <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A close frame's payload.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Reads one frame; None at a clean end of stream before it.
pub async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Option<WsFrame>> {
    let mut head = [0u8; 2];
    match stream.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = match head[1] & 0x7f {
        126 => u64::from(stream.read_u16().await?),
        127 => stream.read_u64().await?,
        n => u64::from(n),
    };
    let masked = head[1] & 0x80 != 0;
    let mut key = [0u8; 4];
    if masked {
        stream.read_exact(&mut key).await?;
    }
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(Some(WsFrame {
        fin: head[0] & 0x80 != 0,
        opcode: head[0] & 0x0f,
        masked,
        payload,
    }))
}

/// Reads an HTTP head byte by byte (nothing after it is consumed).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// What a [`WsOrigin`] saw.
#[derive(Default)]
struct Seen {
    handshakes: Vec<String>,
    frames: Vec<WsFrame>,
}

/// A WebSocket origin on 127.0.0.1:0. It answers every upgrade with 101, echoes each message
/// as `echo: ` + the message, answers pings with pongs and a close with the same close. Some
/// messages are commands:
///
/// - `fragments please`: sends the text `onetwothree` in three frames, a ping `mid` between;
/// - `ping me`: sends a ping `are you there`;
/// - `bad frame please`: sends a frame with the reserved opcode 3;
/// - `close please`: sends close 4000 `server says bye`.
pub struct WsOrigin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl WsOrigin {
    pub async fn start() -> WsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the WebSocket origin");
        let addr = listener.local_addr().expect("origin addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let served = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve_ws(tcp, served.clone()));
            }
        });
        WsOrigin { addr, seen }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The upgrade requests received, as text.
    pub fn handshakes(&self) -> Vec<String> {
        self.seen.lock().expect("origin lock").handshakes.clone()
    }

    /// Every frame received, in order.
    pub fn frames(&self) -> Vec<WsFrame> {
        self.seen.lock().expect("origin lock").frames.clone()
    }
}

async fn serve_ws(mut tcp: TcpStream, seen: Arc<Mutex<Seen>>) {
    let Ok(head) = read_head(&mut tcp).await else {
        return;
    };
    seen.lock().expect("origin lock").handshakes.push(head);
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    );
    if tcp.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let mut message: Option<(u8, Vec<u8>)> = None;
    let mut closing = false;
    while let Ok(Some(frame)) = read_frame(&mut tcp).await {
        seen.lock().expect("origin lock").frames.push(frame.clone());
        let reply = match frame.opcode {
            PING => encode(true, PONG, &frame.payload, None),
            CLOSE if closing => return,
            CLOSE => {
                let _ = tcp
                    .write_all(&encode(true, CLOSE, &frame.payload, None))
                    .await;
                return;
            }
            TEXT | BINARY | CONTINUATION => {
                let (opcode, content) = message.get_or_insert((frame.opcode, Vec::new()));
                content.extend_from_slice(&frame.payload);
                if !frame.fin {
                    continue;
                }
                let (opcode, content) = (*opcode, std::mem::take(content));
                message = None;
                closing |= content == b"close please";
                command_reply(opcode, &content)
            }
            _ => continue,
        };
        if tcp.write_all(&reply).await.is_err() {
            return;
        }
    }
}

fn command_reply(opcode: u8, content: &[u8]) -> Vec<u8> {
    match content {
        b"fragments please" => [
            encode(false, TEXT, b"one", None),
            encode(true, PING, b"mid", None),
            encode(false, CONTINUATION, b"two", None),
            encode(true, CONTINUATION, b"three", None),
        ]
        .concat(),
        b"ping me" => encode(true, PING, b"are you there", None),
        b"bad frame please" => vec![0x83, 0x00],
        b"close please" => encode(true, CLOSE, &close_payload(4000, "server says bye"), None),
        _ => encode(true, opcode, &[b"echo: ", content].concat(), None),
    }
}

/// A client that upgrades to WebSocket through the proxy (absolute-form GET).
pub struct WsClient {
    pub stream: TcpStream,
    /// The proxy's answer to the upgrade request.
    pub response: String,
}

impl WsClient {
    /// Connects to `proxy` and upgrades `ws://127.0.0.1:PORT/path`, offering
    /// permessage-deflate as browsers do.
    pub async fn connect(proxy: SocketAddr, origin_port: u16, path: &str) -> WsClient {
        let mut stream = TcpStream::connect(proxy)
            .await
            .expect("connect to the proxy");
        let request = format!(
            "GET http://127.0.0.1:{origin_port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the upgrade");
        let response = read_head(&mut stream).await.expect("read the 101");
        WsClient { stream, response }
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let frame = encode(fin, opcode, payload, Some([0x12, 0x34, 0x56, 0x78]));
        self.stream.write_all(&frame).await.expect("send a frame");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(true, TEXT, text.as_bytes()).await;
    }

    /// The next frame; panics at end of stream.
    pub async fn frame(&mut self) -> WsFrame {
        read_frame(&mut self.stream)
            .await
            .expect("read a frame")
            .expect("a frame before the end of the stream")
    }

    /// True when the proxy closed the connection (nothing more to read).
    pub async fn at_end(&mut self) -> bool {
        matches!(read_frame(&mut self.stream).await, Ok(None) | Err(_))
    }
}

/// A raw TCP origin that answers every chunk it reads with `ECHO ` + the chunk.
pub async fn tcp_echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the TCP origin");
    let addr = listener.local_addr().expect("origin addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let reply = [b"ECHO ", &buf[..n]].concat();
                    if tcp.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
