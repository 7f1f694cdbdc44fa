//! Origin servers on std threads, for the end-to-end tests of the `flowtap` binary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use flowtap_certs::testing::OriginCert;

/// An origin on 127.0.0.1:0 that runs `handle` for each connection on its own thread.
pub struct Origin {
    pub addr: SocketAddr,
}

impl Origin {
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the origin");
        let addr = listener.local_addr().expect("origin addr");
        let handle = Arc::new(handle);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let handle = handle.clone();
                std::thread::spawn(move || handle(stream));
            }
        });
        Origin { addr }
    }

    /// Answers every request on every connection with `response` (keep-alive).
    pub fn fixed(response: &'static [u8]) -> Origin {
        Origin::start(move |mut stream| serve_fixed(&mut stream, response))
    }

    /// A TLS origin for `localhost` answering every request with `response`; the proxy must
    /// trust `cert.ca_path()`.
    pub fn tls(cert: &OriginCert, response: &'static [u8]) -> Origin {
        let config = cert.server_config(&[b"http/1.1".to_vec()]);
        Origin::start(move |tcp| {
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            serve_fixed(&mut tls, response);
        })
    }

    /// A TLS origin (HTTP/1.1) that answers each request with its own head as the body, so a
    /// test sees what the server got.
    #[allow(dead_code)]
    pub fn tls_echo(cert: &OriginCert) -> Origin {
        let config = cert.server_config(&[b"http/1.1".to_vec()]);
        Origin::start(move |tcp| {
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            echo_heads(&mut rustls::StreamOwned::new(conn, tcp));
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Reads requests (head and Content-Length body) and answers each with `response`.
pub fn serve_fixed(stream: &mut (impl Read + Write), response: &[u8]) {
    while let Some((head, mut rest)) = read_head(stream) {
        let length = content_length(&head);
        if rest.len() < length {
            let mut body = vec![0u8; length - rest.len()];
            if stream.read_exact(&mut body).is_err() {
                return;
            }
            rest.extend_from_slice(&body);
        }
        if stream
            .write_all(response)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Reads one request or response head. Returns it with any bytes read past it; `None` at end
/// of stream.
pub fn read_head(stream: &mut impl Read) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The Content-Length of a head (0 when absent).
pub fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Answers each request with its own head as the body.
#[allow(dead_code)]
pub fn echo_heads(stream: &mut (impl Read + Write)) {
    while let Some((head, _)) = read_head(stream) {
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{head}",
            head.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
