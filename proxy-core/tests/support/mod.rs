//! Helpers for the proxy's behaviour tests: the proxy itself on 127.0.0.1:0 with a CA minted
//! into a temporary confdir, origin servers the tests start (a hyper origin speaking HTTP/1.1
//! and HTTP/2, with or without TLS, a raw TCP origin that records request bytes and sends
//! canned response bytes, a WebSocket echo origin and a TCP echo origin), real curl, a rustls
//! client that goes through CONNECT, and a WebSocket client.

#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod connect;
pub mod curl;
pub mod origin;
pub mod proxy;
pub mod websocket;

pub use connect::tls_through_proxy;
pub use curl::{Curl, curl};
pub use origin::{HyperOrigin, RawOrigin};
pub use proxy::TestProxy;

/// A port nothing listens on: bound, then released.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a throw-away port");
    listener.local_addr().expect("local addr").port()
}
