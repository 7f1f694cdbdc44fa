//! WebSocket and raw TCP peers on std threads, written by hand (RFC 6455 frames): an echo
//! origin that records the messages it got, a client that upgrades through the proxy, and a
//! TCP origin that echoes each chunk.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use super::WAIT;
use super::origin::{Origin, read_head};

pub const TEXT: u8 = 1;
pub const BINARY: u8 = 2;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

/// The RFC 6455 example key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// One frame, payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The bytes of one frame, masked with `mask` when given.
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

/// Reads one frame; None at end of stream (or on a read error).
pub fn read_frame(stream: &mut impl Read) -> Option<Frame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    let masked = head[1] & 0x80 != 0;
    if masked {
        stream.read_exact(&mut key).ok()?;
    }
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some(Frame {
        fin: head[0] & 0x80 != 0,
        opcode: head[0] & 0x0f,
        payload,
    })
}

/// A WebSocket origin: answers the upgrade, echoes every message as `echo: ` + message,
/// answers pings and closes, and records the messages it received (text lossy).
pub struct WsOrigin {
    pub origin: Origin,
    received: Arc<Mutex<Vec<String>>>,
}

impl WsOrigin {
    pub fn start() -> WsOrigin {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let origin = Origin::start(move |mut stream| {
            if read_head(&mut stream).is_none() {
                return;
            }
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
            );
            if stream.write_all(answer.as_bytes()).is_err() {
                return;
            }
            while let Some(frame) = read_frame(&mut stream) {
                let reply = match frame.opcode {
                    PING => encode(true, PONG, &frame.payload, None),
                    CLOSE => {
                        let _ = stream.write_all(&encode(true, CLOSE, &frame.payload, None));
                        return;
                    }
                    TEXT | BINARY => {
                        log.lock().expect("origin lock").push(frame.text());
                        let echoed = [&b"echo: "[..], &frame.payload].concat();
                        encode(true, frame.opcode, &echoed, None)
                    }
                    _ => continue,
                };
                if stream.write_all(&reply).is_err() {
                    return;
                }
            }
        });
        WsOrigin { origin, received }
    }

    pub fn port(&self) -> u16 {
        self.origin.port()
    }

    /// The messages received so far.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().expect("origin lock").clone()
    }
}

/// A client upgraded to WebSocket through the proxy.
pub struct WsClient {
    pub stream: TcpStream,
}

impl WsClient {
    /// Connects to `proxy` and upgrades `ws://127.0.0.1:PORT/path`; panics unless the answer
    /// is 101.
    pub fn connect(proxy: SocketAddr, port: u16, path: &str) -> WsClient {
        let mut stream = TcpStream::connect(proxy).expect("connect to the proxy");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let request = format!(
            "GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .expect("send the upgrade");
        // Byte by byte, so that no frame after the head is consumed.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).expect("read the 101"), 1, "{head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        WsClient { stream }
    }

    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        let frame = encode(true, opcode, payload, Some([0xa1, 0xb2, 0xc3, 0xd4]));
        self.stream.write_all(&frame).expect("send a frame");
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(TEXT, text.as_bytes());
    }

    /// The next frame; panics at end of stream.
    pub fn frame(&mut self) -> Frame {
        read_frame(&mut self.stream).expect("a frame before the end of the stream")
    }

    /// The text of the next frame.
    pub fn text(&mut self) -> String {
        self.frame().text()
    }

    /// Sends close(1000, `reason`) and reads the close that answers it.
    pub fn close(&mut self, reason: &str) -> Frame {
        let payload = [&1000u16.to_be_bytes()[..], reason.as_bytes()].concat();
        self.send(CLOSE, &payload);
        loop {
            let frame = self.frame();
            if frame.opcode == CLOSE {
                return frame;
            }
        }
    }

    /// True when the connection ended (EOF or reset) within [`WAIT`].
    pub fn ended(&mut self) -> bool {
        read_frame(&mut self.stream).is_none()
    }
}

/// A raw TCP origin that answers each chunk with `ECHO ` + the chunk.
pub fn tcp_echo_origin() -> Origin {
    Origin::start(|mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                return;
            }
            let reply = [&b"ECHO "[..], &buf[..n]].concat();
            if stream.write_all(&reply).is_err() {
                return;
            }
        }
    })
}

/// Opens `CONNECT host:port` through the proxy; returns the tunnel once it is established.
pub fn tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).expect("connect to the proxy");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("read"), 1, "{head:?}");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Sends `chunk` and reads until `want.len()` bytes came back; asserts they are `want`.
pub fn exchange(stream: &mut TcpStream, chunk: &[u8], want: &[u8]) {
    stream.write_all(chunk).expect("send");
    let mut got = vec![0u8; want.len()];
    stream.read_exact(&mut got).expect("read the answer");
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}
