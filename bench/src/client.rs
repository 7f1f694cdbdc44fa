//! The load generator's HTTP/1.1 client: what to request ([`Target`]) and one keep-alive
//! connection ([`Connection`]).
//!
//! Written by hand rather than with hyper's client so that the three paths of a benchmark
//! (direct, absolute-form through a proxy, CONNECT + TLS through a proxy) cost the client
//! the same and stay cheap: the request bytes are built once, a response is parsed with
//! httparse and its body is counted and dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a request or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or proxy address cannot be used (not http(s), not loopback, malformed).
    #[error("bad target: {0}")]
    BadTarget(String),
    /// The CA file could not be read or holds no certificate.
    #[error("reading CA file {path}: {reason}")]
    CaFile {
        /// The file given.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A socket or TLS error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The proxy refused the CONNECT request.
    #[error("CONNECT answered {0}")]
    ConnectRefused(u16),
    /// The response was not `200`.
    #[error("status {0}")]
    Status(u16),
    /// The peer sent something that is not HTTP/1.1 or closed mid-message.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

/// Whether a scheme is plain HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

/// What every request of a run goes to, and how.
pub struct Target {
    scheme: Scheme,
    origin: SocketAddr,
    authority: String,
    proxy: Option<SocketAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    new_connection_per_request: bool,
    request: Vec<u8>,
    connect_request: Vec<u8>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("proxy", &self.proxy)
            .field(
                "new_connection_per_request",
                &self.new_connection_per_request,
            )
            .finish_non_exhaustive()
    }
}

impl Target {
    /// A target for `url` (`http://127.0.0.1:PORT/path` or `https://…`; the host must be
    /// a loopback address or `localhost`), optionally through an HTTP proxy on loopback.
    /// HTTPS trusts only the certificates in `ca_file`. With `new_connection_per_request`,
    /// each request opens a new TCP connection (and CONNECT tunnel and full TLS handshake,
    /// without session resumption) and asks the server to close it afterwards.
    pub fn new(
        url: &str,
        proxy: Option<&str>,
        ca_file: Option<&Path>,
        new_connection_per_request: bool,
    ) -> Result<Target, ClientError> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(ClientError::BadTarget(format!(
                "{url}: not http:// or https://"
            )));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let default_port = if scheme == Scheme::Http { 80 } else { 443 };
        let (host, port) = split_host_port(authority, default_port)?;
        let origin = SocketAddr::new(loopback_ip(&host)?, port);
        let proxy = proxy.map(parse_proxy).transpose()?;
        let tls = match scheme {
            Scheme::Http => None,
            Scheme::Https => {
                let ca = ca_file.ok_or_else(|| {
                    ClientError::BadTarget("https:// needs a CA file (--cacert)".into())
                })?;
                let config = client_config(ca, new_connection_per_request)?;
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| ClientError::BadTarget(format!("{host}: not a server name")))?;
                Some((TlsConnector::from(config), name))
            }
        };
        let authority = format!("{host}:{port}");
        let close = if new_connection_per_request {
            "Connection: close\r\n"
        } else {
            ""
        };
        // Absolute form only for plain HTTP through a proxy (RFC 9112 section 3.2.2); in a
        // CONNECT tunnel the request is addressed to the origin as usual.
        let target = if proxy.is_some() && scheme == Scheme::Http {
            format!("http://{authority}{path}")
        } else {
            path.to_string()
        };
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: bench-load\r\nAccept: */*\r\n{close}\r\n"
        )
        .into_bytes();
        let connect_request =
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").into_bytes();
        Ok(Target {
            scheme,
            origin,
            authority,
            proxy,
            tls,
            new_connection_per_request,
            request,
            connect_request,
        })
    }

    /// Whether each request gets a connection of its own.
    pub fn new_connection_per_request(&self) -> bool {
        self.new_connection_per_request
    }

    /// `host:port` of the origin.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Opens a connection ready for requests: TCP to the proxy or origin, then CONNECT and
    /// TLS where the scheme is HTTPS.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let tcp = TcpStream::connect(self.proxy.unwrap_or(self.origin)).await?;
        tcp.set_nodelay(true)?;
        let mut conn = Connection {
            io: Box::new(tcp),
            buf: BytesMut::with_capacity(16 * 1024),
        };
        if self.scheme == Scheme::Https && self.proxy.is_some() {
            conn.io.write_all(&self.connect_request).await?;
            let head = conn.read_head().await?;
            if head.status != 200 {
                return Err(ClientError::ConnectRefused(head.status));
            }
            // A 200 to CONNECT has no body (RFC 9110 section 9.3.6); the tunnel starts here.
            if !conn.buf.is_empty() {
                return Err(ClientError::Malformed("bytes after the CONNECT response"));
            }
        }
        if let Some((connector, name)) = &self.tls {
            let tcp = conn.io;
            let tls = connector.connect(name.clone(), tcp).await?;
            conn.io = Box::new(tls);
        }
        Ok(conn)
    }
}

/// An open HTTP/1.1 connection (plain or TLS) and its read buffer.
pub struct Connection {
    io: Box<dyn Io>,
    buf: BytesMut,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// The outcome of one successful request.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// Body bytes received (after de-chunking).
    pub body_bytes: u64,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A parsed response head.
struct Head {
    status: u16,
    framing: Framing,
    close: bool,
}

enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

impl Connection {
    /// Sends the target's request and reads the whole response. A status other than 200 is
    /// an error (and the connection should then be dropped).
    pub async fn exchange(&mut self, target: &Target) -> Result<Exchange, ClientError> {
        self.io.write_all(&target.request).await?;
        self.io.flush().await?;
        let head = self.read_head().await?;
        let body_bytes = match head.framing {
            Framing::Length(n) => self.skip_exact(n).await?,
            Framing::Chunked => self.skip_chunked().await?,
            Framing::UntilClose => self.skip_to_eof().await?,
        };
        if head.status != 200 {
            return Err(ClientError::Status(head.status));
        }
        Ok(Exchange {
            body_bytes,
            reusable: !head.close && !matches!(head.framing, Framing::UntilClose),
        })
    }

    /// Reads more bytes into the buffer; end of stream is an error here.
    async fn fill(&mut self) -> Result<(), ClientError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(64 * 1024);
        }
        match self.io.read_buf(&mut self.buf).await? {
            0 => Err(ClientError::Malformed("connection closed mid-response")),
            _ => Ok(()),
        }
    }

    async fn read_head(&mut self) -> Result<Head, ClientError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.unwrap_or(0);
                    let head = head_of(status, response.version, response.headers)?;
                    self.buf.advance(len);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(_) => return Err(ClientError::Malformed("unparsable response head")),
            }
        }
    }

    async fn skip_exact(&mut self, n: u64) -> Result<u64, ClientError> {
        let mut left = n;
        loop {
            let take = left.min(self.buf.len() as u64);
            self.buf.advance(take as usize);
            left -= take;
            if left == 0 {
                return Ok(n);
            }
            self.fill().await?;
        }
    }

    async fn skip_chunked(&mut self) -> Result<u64, ClientError> {
        let mut total = 0;
        loop {
            let line = self.read_line().await?;
            let hex = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(hex, 16)
                .map_err(|_| ClientError::Malformed("bad chunk size"))?;
            if size == 0 {
                // Trailer fields, then an empty line (RFC 9112 section 7.1.2).
                while !self.read_line().await?.is_empty() {}
                return Ok(total);
            }
            total += self.skip_exact(size).await?;
            if !self.read_line().await?.is_empty() {
                return Err(ClientError::Malformed("chunk not followed by CRLF"));
            }
        }
    }

    async fn skip_to_eof(&mut self) -> Result<u64, ClientError> {
        let mut total = self.buf.len() as u64;
        self.buf.clear();
        while self.io.read_buf(&mut self.buf).await? != 0 {
            total += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(total)
    }

    /// One line without its CRLF.
    async fn read_line(&mut self) -> Result<String, ClientError> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.advance(i + 2);
                return Ok(line);
            }
            if self.buf.len() > 8192 {
                return Err(ClientError::Malformed("line too long"));
            }
            self.fill().await?;
        }
    }
}

fn head_of(
    status: u16,
    version: Option<u8>,
    headers: &[httparse::Header<'_>],
) -> Result<Head, ClientError> {
    let mut framing = Framing::UntilClose;
    let mut close = version == Some(0);
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(ClientError::Malformed("bad content-length"))?;
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value.to_ascii_lowercase().ends_with(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h.value.eq_ignore_ascii_case(b"close");
        }
    }
    // Responses that never have a body (RFC 9110 section 6.4.1); 1xx are not expected here.
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok(Head {
        status,
        framing,
        close,
    })
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), ClientError> {
    let bad = || ClientError::BadTarget(format!("{authority}: not host[:port]"));
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => default_port,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), port.parse().map_err(|_| bad())?)),
        None => Ok((authority.to_string(), default_port)),
    }
}

/// The address to use for `host`, which must be on loopback: this tool never sends load
/// anywhere else.
fn loopback_ip(host: &str) -> Result<IpAddr, ClientError> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(ip),
        _ => Err(ClientError::BadTarget(format!(
            "{host}: only loopback addresses are allowed"
        ))),
    }
}

fn parse_proxy(proxy: &str) -> Result<SocketAddr, ClientError> {
    let authority = proxy
        .strip_prefix("http://")
        .unwrap_or(proxy)
        .trim_end_matches('/');
    let (host, port) = split_host_port(authority, 8080)?;
    Ok(SocketAddr::new(loopback_ip(&host)?, port))
}

fn client_config(ca_file: &Path, no_resumption: bool) -> Result<Arc<ClientConfig>, ClientError> {
    let ca_error = |reason: String| ClientError::CaFile {
        path: ca_file.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| ca_error(e.to_string()))? {
        let cert = cert.map_err(|e| ca_error(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only: the same wire protocol on all three paths.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if no_resumption {
        // A connection-rate benchmark measures full handshakes.
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(Target::new("http://127.0.0.1:1/", None, None, false).is_ok());
        assert!(Target::new("http://localhost:1/x", Some("127.0.0.1:2"), None, false).is_ok());
        assert!(Target::new("http://10.0.0.1:1/", None, None, false).is_err());
        assert!(Target::new("http://127.0.0.1:1/", Some("192.168.1.1:8080"), None, false).is_err());
        assert!(Target::new("https://127.0.0.1:1/", None, None, false).is_err());
    }

    #[test]
    fn absolute_form_only_for_plain_http_through_a_proxy() {
        let direct = Target::new("http://127.0.0.1:9/a", None, None, false).expect("valid");
        assert!(
            direct
                .request
                .starts_with(b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
        );
        let proxied =
            Target::new("http://127.0.0.1:9/a", Some("127.0.0.1:8"), None, true).expect("valid");
        assert!(
            proxied
                .request
                .starts_with(b"GET http://127.0.0.1:9/a HTTP/1.1\r\n")
        );
        assert!(proxied.request.ends_with(b"Connection: close\r\n\r\n"));
    }

    #[tokio::test]
    async fn reads_length_and_chunked_bodies_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0; 4096];
            let _ = s.read(&mut buf).await.expect("read");
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .await
                .expect("write");
            let _ = s.read(&mut buf).await.expect("read");
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n")
                .await
                .expect("write");
        });
        let target = Target::new(&format!("http://{addr}/"), None, None, false).expect("valid");
        let mut conn = target.connect().await.expect("connect");
        let first = conn.exchange(&target).await.expect("first");
        assert_eq!(first.body_bytes, 5);
        assert!(first.reusable);
        let second = conn.exchange(&target).await.expect("second");
        assert_eq!(second.body_bytes, 5);
        server.await.expect("server");
    }
}
