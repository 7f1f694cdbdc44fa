//! Origin servers started by the tests on 127.0.0.1:0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flowtap_certs::testing::OriginCert;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A request as a [`HyperOrigin`] received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    pub method: String,
    pub path_and_query: String,
    /// Header names lower-cased (hyper normalises them).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct OriginState {
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
}

/// An origin served by hyper (HTTP/1.1 and HTTP/2 on the same port, detected from the
/// preface), plain or TLS. Every response says what the origin saw:
///
/// - status from `?status=NNN` (default 200); `?sleep_ms=N` answers only after N ms;
/// - `X-Origin-Version: HTTP/1.1|HTTP/2.0`, `X-Origin-Method`, two `Set-Cookie` headers;
/// - body `origin: METHOD PATH` followed by the request body, if any.
pub struct HyperOrigin {
    pub addr: SocketAddr,
    /// Its certificate, for a TLS origin (the proxy must trust `cert.ca_path()`).
    pub cert: Option<OriginCert>,
    state: Arc<OriginState>,
}

impl HyperOrigin {
    /// A plain-HTTP origin.
    pub async fn plain() -> HyperOrigin {
        Self::start(None, &[]).await
    }

    /// A TLS origin for `localhost` and `127.0.0.1`, offering `alpn` (e.g. `h2` and
    /// `http/1.1`, or only `http/1.1`).
    pub async fn tls(alpn: &[&[u8]]) -> HyperOrigin {
        let cert = OriginCert::new(&["localhost", "127.0.0.1"]);
        Self::start(Some(cert), alpn).await
    }

    async fn start(cert: Option<OriginCert>, alpn: &[&[u8]]) -> HyperOrigin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the origin");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(OriginState::default());
        let acceptor = cert.as_ref().map(|c| {
            let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
            TlsAcceptor::from(c.server_config(&alpn))
        });
        let served = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                served.connections.fetch_add(1, Ordering::SeqCst);
                let state = served.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                serve_hyper(tls, state).await;
                            }
                        }
                        None => serve_hyper(tcp, state).await,
                    }
                });
            }
        });
        HyperOrigin { addr, cert, state }
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("origin lock").clone()
    }

    /// How many connections the origin accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn serve_hyper<S>(io: S, state: Arc<OriginState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(answer(req, &state).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn answer(
    req: hyper::Request<Incoming>,
    state: &OriginState,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let version = match parts.version {
        hyper::Version::HTTP_2 => "HTTP/2.0",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let status = parts
        .uri
        .query()
        .and_then(|q| q.strip_prefix("status="))
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let seen = Seen {
        version: version.into(),
        method: parts.method.to_string(),
        path_and_query,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    };
    state.seen.lock().expect("origin lock").push(seen);
    if let Some(ms) = parts
        .uri
        .query()
        .and_then(|q| q.strip_prefix("sleep_ms="))
        .and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let mut content = format!("origin: {} {}", parts.method, parts.uri.path()).into_bytes();
    content.extend_from_slice(&body);
    hyper::Response::builder()
        .status(status)
        .header("X-Origin-Version", version)
        .header("X-Origin-Method", parts.method.as_str())
        .header("Set-Cookie", "a=1")
        .header("Set-Cookie", "b=2")
        .header("Content-Type", "text/plain")
        .body(Full::new(Bytes::from(content)))
        .expect("a valid response")
}

/// An origin that speaks HTTP/1.1 by hand: it records each request exactly as the bytes
/// arrived and answers every request with the same canned response bytes. Connections are
/// kept open for further requests until the client closes them.
pub struct RawOrigin {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<AtomicUsize>,
}

impl RawOrigin {
    pub async fn start(response: &[u8]) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the raw origin");
        let addr = listener.local_addr().expect("origin addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let response = Bytes::copy_from_slice(response);
        let (recorded, counted) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (recorded, response) = (recorded.clone(), response.clone());
                tokio::spawn(serve_raw(tcp, recorded, response));
            }
        });
        RawOrigin {
            addr,
            requests,
            connections,
        }
    }

    /// The requests received so far, byte for byte.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().expect("origin lock").clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn serve_raw(mut tcp: TcpStream, recorded: Arc<Mutex<Vec<Vec<u8>>>>, response: Bytes) {
    let mut buf = Vec::new();
    loop {
        let Some(len) = read_request(&mut tcp, &mut buf).await else {
            return;
        };
        let request: Vec<u8> = buf.drain(..len).collect();
        recorded.lock().expect("origin lock").push(request);
        if tcp.write_all(&response).await.is_err() {
            return;
        }
        // An HTTP/1.0 answer closes the connection, as Python's http.server does.
        if response.starts_with(b"HTTP/1.0") {
            return;
        }
    }
}

/// Reads until `buf` holds one whole request; returns its length. `None` at end of stream.
async fn read_request(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(len) = request_len(buf) {
            return Some(len);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The length of the first complete request in `buf`, if there is one (Content-Length or
/// chunked bodies; trailers included).
pub fn request_len(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n", 0)? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return chunked_len(buf, head_end);
    }
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + length).then_some(head_end + length)
}

fn chunked_len(buf: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let line_end = find(buf, b"\r\n", pos)?;
        let line = std::str::from_utf8(&buf[pos..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers (possibly none) end with an empty line.
            if buf.get(pos..pos + 2) == Some(b"\r\n") {
                return Some(pos + 2);
            }
            return find(buf, b"\r\n\r\n", pos).map(|end| end + 4);
        }
        pos += size + 2;
        if pos > buf.len() {
            return None;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}
