//! Connections to servers: TCP and TLS connects, and a pool of idle HTTP/1 connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flowtap_proto::v1::{Address, Connection, Header, Request, ServerSpec};
use futures_util::FutureExt;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::UpstreamError;
use crate::flow::{address, now};
use crate::http1::Conn;

/// A byte stream of either kind: plain TCP or TLS over TCP.
pub(crate) trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

/// A boxed byte stream; the one type connections are handled as.
pub(crate) type Io = Box<dyn IoStream>;

/// What identifies interchangeable server connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The HTTP proxy the connection goes through: upstream mode's next proxy, or one a
    /// script chose for the flow (`flow.server_conn.via`); None: straight to the server.
    pub(crate) via: Option<Via>,
}

/// A next proxy: upstream mode's, or one a script chose with
/// `flow.server_conn.via = ("http", (host, port))`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Via {
    /// `https://`: the connection to the proxy is TLS.
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Via {
    /// The proxy as `server_conn.via` records it.
    pub(crate) fn spec(&self) -> ServerSpec {
        ServerSpec {
            scheme: if self.tls { "https" } else { "http" }.into(),
            address: Some(Address {
                host: self.host.clone(),
                port: u32::from(self.port),
            }),
        }
    }

    /// Upstream mode's next proxy; None in the other modes.
    pub(crate) fn of_mode(mode: &crate::mode::Mode) -> Option<Via> {
        match mode {
            crate::mode::Mode::Upstream(next) => Some(Via {
                tls: next.tls,
                host: next.host.clone(),
                port: next.port,
            }),
            _ => None,
        }
    }
}

/// An open connection to a server.
pub(crate) struct Upstream {
    pub(crate) conn: Conn<Io>,
    pub(crate) info: Connection,
    pub(crate) key: PoolKey,
    /// ALPN agreed HTTP/2.
    pub(crate) h2: bool,
    /// A connection to the next proxy (upstream mode) that takes absolute-form requests.
    pub(crate) proxied: Option<Proxied>,
}

/// How requests go over a connection to the next proxy.
#[derive(Clone, Debug)]
pub(crate) struct Proxied {
    /// The `Proxy-Authorization` value to send, from `upstream_auth`.
    pub(crate) authorization: Option<Bytes>,
}

/// A next proxy as the connector uses it.
#[derive(Clone)]
pub(crate) struct NextProxy {
    pub(crate) via: Via,
    /// `Basic base64(user:password)` from `upstream_auth`.
    pub(crate) authorization: Option<Bytes>,
}

/// What a TLS client offers in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// `http/1.1`.
    Http1,
    /// `h2`, then `http/1.1`.
    H2,
    /// Nothing: the connection carries no HTTP (a `tls://` reverse target).
    None,
}

/// Makes server connections.
pub(crate) struct Connector {
    pub(crate) tls_h1: Arc<ClientConfig>,
    pub(crate) tls_h2: Arc<ClientConfig>,
    pub(crate) tls_raw: Arc<ClientConfig>,
    /// What `tls_h1` and `tls_h2` were built from; a client certificate's configs add to it.
    pub(crate) server_tls: flowtap_certs::UpstreamTls,
    /// `client_certs`: a file, or a directory of `<server name>.pem` files.
    pub(crate) client_certs: Option<std::path::PathBuf>,
    pub(crate) connect_timeout: Duration,
    /// `Basic base64(user:password)` from `upstream_auth`, for every next proxy.
    pub(crate) upstream_auth: Option<Bytes>,
}

impl Connector {
    /// The next proxy of a flow whose server connection names `via` (a script's
    /// `flow.server_conn.via`), else `own`, the listener's (upstream mode's next proxy).
    /// `http://` and `https://` next proxies are built; another scheme is an error naming it.
    pub(crate) fn via_for(
        &self,
        via: Option<&ServerSpec>,
        own: Option<&Via>,
    ) -> Result<Option<Via>, UpstreamError> {
        let Some((spec, address)) = via.and_then(|spec| Some((spec, spec.address.as_ref()?)))
        else {
            return Ok(own.cloned());
        };
        let refused = |reason: String| UpstreamError::ConnectFailed {
            host: address.host.clone(),
            port: address.port,
            reason,
        };
        let tls = match &spec.scheme[..] {
            "http" => false,
            "https" => true,
            other => {
                return Err(refused(format!(
                    "flow.server_conn.via: only http:// and https:// next proxies are supported, not {other}://"
                )));
            }
        };
        let port = u16::try_from(address.port)
            .map_err(|_| refused("flow.server_conn.via: the port is out of range".into()))?;
        Ok(Some(Via {
            tls,
            host: address.host.clone(),
            port,
        }))
    }

    /// The next proxy connections for `via` go through, with `upstream_auth`'s credentials
    /// (as mitmproxy sends them to any next proxy).
    fn next_for(&self, via: Option<&Via>) -> Option<NextProxy> {
        via.map(|via| NextProxy {
            via: via.clone(),
            authorization: self.upstream_auth.clone(),
        })
    }

    /// A byte stream to the next proxy: TCP, with TLS for an `https://` one (verified as any
    /// server, by its host name). `info` gets the TCP addresses.
    async fn to_proxy(&self, next: &NextProxy, info: &mut Connection) -> Result<Io, UpstreamError> {
        let tcp = self.tcp(&next.via.host, next.via.port, info).await?;
        if !next.via.tls {
            return Ok(Box::new(tcp));
        }
        // The handshake with the proxy is not the flow's: its details stay out of `info`.
        let mut proxy_info = Connection::default();
        let tls = self
            .tls(tcp, &next.via.host, Alpn::Http1, &mut proxy_info)
            .await?;
        Ok(Box::new(tls))
    }

    /// Opens a TCP connection to `host:port`, filling in `info`'s address fields.
    pub(crate) async fn tcp(
        &self,
        host: &str,
        port: u16,
        info: &mut Connection,
    ) -> Result<TcpStream, UpstreamError> {
        info.address = Some(Address {
            host: host.to_string(),
            port: u32::from(port),
        });
        info.timestamp_start = Some(now());
        let failed = |reason: String| UpstreamError::ConnectFailed {
            host: host.to_string(),
            port: u32::from(port),
            reason,
        };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| failed("connect timed out".into()))?
            .map_err(|e| failed(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        info.timestamp_tcp_setup = Some(now());
        info.peername = stream.peer_addr().ok().map(address);
        info.sockname = stream.local_addr().ok().map(address);
        Ok(stream)
    }

    /// Runs a TLS handshake over `stream` with SNI `sni`, offering `alpn`. Records the TLS
    /// details in `info`.
    pub(crate) async fn tls<S: IoStream>(
        &self,
        stream: S,
        sni: &str,
        alpn: Alpn,
        info: &mut Connection,
    ) -> Result<tokio_rustls::client::TlsStream<S>, UpstreamError> {
        let failed = |reason: String| UpstreamError::Tls {
            host: sni.to_string(),
            reason,
        };
        let config = self
            .client_config(sni, alpn)
            .map_err(|e| failed(e.to_string()))?;
        let config = &config;
        let name = ServerName::try_from(sni.to_string()).map_err(|e| failed(e.to_string()))?;
        info.tls = true;
        info.alpn_offers = config
            .alpn_protocols
            .iter()
            .map(|p| Bytes::from(p.clone()))
            .collect();
        // Like curl, send no SNI for an IP literal; rustls does that by itself.
        if !matches!(name, ServerName::IpAddress(_)) {
            info.sni = Some(sni.to_string());
        }
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| failed(self.with_version_bounds(e.to_string())))?;
        record_tls(info, tls.get_ref().1);
        Ok(tls)
    }

    /// The TLS client config for a server named `sni`: the shared one, or with `client_certs`
    /// one presenting the certificate for that server (built once per certificate file).
    fn client_config(
        &self,
        sni: &str,
        alpn: Alpn,
    ) -> Result<Arc<ClientConfig>, flowtap_certs::CaError> {
        let shared = match alpn {
            Alpn::Http1 => &self.tls_h1,
            Alpn::H2 => &self.tls_h2,
            Alpn::None => &self.tls_raw,
        };
        let Some(file) = self
            .client_certs
            .as_deref()
            .and_then(|certs| flowtap_certs::client_cert_for(certs, sni))
        else {
            return Ok(shared.clone());
        };
        flowtap_certs::client_config(&flowtap_certs::UpstreamTls {
            client_cert: Some(file),
            alpn: shared.alpn_protocols.clone(),
            ..self.server_tls.clone()
        })
    }

    /// A failed handshake's reason, naming the version bounds when they are not the defaults
    /// (a server that speaks none of the versions allowed fails with a bare protocol alert).
    fn with_version_bounds(&self, reason: String) -> String {
        let bounds = self.server_tls.versions;
        if bounds.is_default() {
            return reason;
        }
        format!(
            "{reason} (tls_version_server_min={}, tls_version_server_max={})",
            bounds.min, bounds.max
        )
    }

    /// A byte stream to `host:port`: a TCP connection, or through a next proxy (upstream mode's
    /// or one a script chose) a CONNECT tunnel. `info` records the server as the flow sees it
    /// (its address is `host:port` either way; `via` the next proxy).
    pub(crate) async fn tunnel(
        &self,
        host: &str,
        port: u16,
        via: Option<&Via>,
        info: &mut Connection,
        prepare: impl AsyncFnOnce(Request) -> Request,
    ) -> Result<Io, UpstreamError> {
        let (io, next) = self.open(host, port, via, info).await?;
        match next {
            None => Ok(io),
            Some(next) => {
                self.connect_through(io, host, port, &next, info, prepare)
                    .await
            }
        }
    }

    /// The first step of [`Connector::tunnel`]: a byte stream to `host:port` itself, or to the
    /// next proxy `via` leads to (returned too), not yet asked for the tunnel.
    pub(crate) async fn open(
        &self,
        host: &str,
        port: u16,
        via: Option<&Via>,
        info: &mut Connection,
    ) -> Result<(Io, Option<NextProxy>), UpstreamError> {
        match self.next_for(via) {
            None => Ok((Box::new(self.tcp(host, port, info).await?), None)),
            Some(next) => Ok((self.to_proxy(&next, info).await?, Some(next))),
        }
    }

    /// The second step: asks `next` over `tcp` for a tunnel to `host:port` with a CONNECT
    /// request (`prepare` may change it: `http_connect_upstream`).
    pub(crate) async fn connect_through(
        &self,
        tcp: Io,
        host: &str,
        port: u16,
        next: &NextProxy,
        info: &mut Connection,
        prepare: impl AsyncFnOnce(Request) -> Request,
    ) -> Result<Io, UpstreamError> {
        let failed = |reason: String| UpstreamError::ConnectFailed {
            host: host.to_string(),
            port: u32::from(port),
            reason,
        };
        // The CONNECT request, which `http_connect_upstream` may change before it goes.
        let request = prepare(connect_request(host, port, next.authorization.as_ref())).await;
        let mut head = b"CONNECT ".to_vec();
        head.extend_from_slice(&request.authority);
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for header in &request.headers {
            crate::http1::push_header(&mut head, &header.name, &header.value);
        }
        head.extend_from_slice(b"\r\n");
        let request = head;
        let mut conn = Conn::new(tcp);
        let answered = tokio::time::timeout(self.connect_timeout, async {
            tokio::io::AsyncWriteExt::write_all(&mut conn.io, &request).await?;
            conn.read_response_head()
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .await
        .map_err(|_| {
            failed(format!(
                "the upstream proxy {}:{} did not answer CONNECT in time",
                next.via.host, next.via.port
            ))
        })?
        .map_err(|e| {
            failed(format!(
                "through the upstream proxy {}:{}: {e}",
                next.via.host, next.via.port
            ))
        })?;
        if !(200..300).contains(&answered.status) {
            return Err(failed(format!(
                "the upstream proxy {}:{} answered CONNECT with {} {}",
                next.via.host,
                next.via.port,
                answered.status,
                String::from_utf8_lossy(&answered.reason)
            )));
        }
        if !conn.buf.is_empty() {
            return Err(failed(
                "the upstream proxy sent bytes after its CONNECT answer".into(),
            ));
        }
        info.address = Some(Address {
            host: host.to_string(),
            port: u32::from(port),
        });
        info.via = Some(next.via.spec());
        Ok(conn.io)
    }

    /// A new connection for `key`: TCP (through the next proxy in upstream mode), then TLS when
    /// the key says so. In upstream mode a plain-HTTP key gets a connection to the next proxy
    /// itself, which takes requests in absolute form.
    pub(crate) async fn connect(
        &self,
        key: &PoolKey,
        sni: &str,
        offer_h2: bool,
        mut info: Connection,
        prepare: impl AsyncFnOnce(Request) -> Request,
    ) -> Result<Upstream, (UpstreamError, Connection)> {
        let proxied = match self.next_for(key.via.as_ref()) {
            Some(next) if !key.tls => Some(next),
            _ => None,
        };
        let tcp = match &proxied {
            Some(next) => {
                let tcp = self.to_proxy(next, &mut info).await;
                // The flow's server is the origin; the next proxy is only the way there.
                info.address = Some(Address {
                    host: key.host.clone(),
                    port: u32::from(key.port),
                });
                info.via = Some(next.via.spec());
                tcp
            }
            None => {
                self.tunnel(&key.host, key.port, key.via.as_ref(), &mut info, prepare)
                    .await
            }
        };
        let tcp = match tcp {
            Ok(tcp) => tcp,
            Err(e) => return Err((e, info)),
        };
        let (io, h2): (Io, bool) = if key.tls {
            let alpn = if offer_h2 { Alpn::H2 } else { Alpn::Http1 };
            match self.tls(tcp, sni, alpn, &mut info).await {
                Ok(tls) => {
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    (Box::new(tls), h2)
                }
                Err(e) => return Err((e, info)),
            }
        } else {
            (tcp, false)
        };
        Ok(Upstream {
            conn: Conn::new(io),
            info,
            key: key.clone(),
            h2,
            proxied: proxied.map(|next| Proxied {
                authorization: next.authorization,
            }),
        })
    }
}

/// The CONNECT request for a tunnel to `host:port` through a next proxy, with `Host` and the
/// next proxy's credentials (`upstream_auth`) as its headers.
fn connect_request(host: &str, port: u16, authorization: Option<&Bytes>) -> Request {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut headers = vec![Header {
        name: Bytes::from_static(b"Host"),
        value: Bytes::from(authority.clone()),
    }];
    if let Some(auth) = authorization {
        headers.push(Header {
            name: Bytes::from_static(b"Proxy-Authorization"),
            value: auth.clone(),
        });
    }
    Request {
        http_version: Bytes::from_static(b"HTTP/1.1"),
        method: Bytes::from_static(b"CONNECT"),
        authority: Bytes::from(authority),
        host: host.to_string(),
        port: u32::from(port),
        headers,
        timestamp_start: now(),
        ..Default::default()
    }
}

/// Copies what a finished TLS handshake agreed into a connection record.
pub(crate) fn record_tls<D>(info: &mut Connection, session: &rustls::ConnectionCommon<D>) {
    info.timestamp_tls_setup = Some(now());
    info.alpn = Some(
        session
            .alpn_protocol()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
    );
    info.tls_version = session.protocol_version().map(tls_version_name);
    info.cipher = session
        .negotiated_cipher_suite()
        .map(|s| cipher_name(s.suite()));
    if let Some(certs) = session.peer_certificates() {
        info.certificate_list = certs
            .iter()
            .map(|c| Bytes::from(flowtap_certs::inspect::certificate_pem(c.as_ref())))
            .collect();
    }
}

fn tls_version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

/// OpenSSL's names for the TLS 1.3 suites (what mitmproxy records), rustls' otherwise.
fn cipher_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// Idle HTTP/1 server connections, shared by all client connections.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Upstream>>>,
}

/// Most idle connections kept per server.
const MAX_IDLE_PER_KEY: usize = 64;

impl Pool {
    /// An idle connection for `key` that is still open, if any.
    pub(crate) fn take(&self, key: &PoolKey) -> Option<Upstream> {
        loop {
            let candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.get_mut(key)?.pop()?
            };
            if let Some(up) = still_open(candidate) {
                return Some(up);
            }
        }
    }

    /// Keeps `up` for reuse (dropped when the pool for its server is full).
    pub(crate) fn put(&self, up: Upstream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(up.key.clone()).or_default();
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(up);
        }
    }
}

impl Upstream {
    /// A connection made outside the pool (a tunnel's own), over HTTP/1, not to a next proxy
    /// that takes absolute-form requests.
    pub(crate) fn direct(io: Io, info: Connection, key: PoolKey) -> Upstream {
        Upstream {
            conn: Conn::new(io),
            info,
            key,
            h2: false,
            proxied: None,
        }
    }

    /// The server closed the connection (an end of stream is waiting to be read). Only looks:
    /// a connection with bytes waiting is not closed.
    pub(crate) fn closed_by_server(&mut self) -> bool {
        self.conn.buf.is_empty() && matches!(self.conn.fill().now_or_never(), Some(Ok(0)))
    }
}

/// An idle connection is usable when reading from it would block: no EOF, no stray bytes.
fn still_open(mut up: Upstream) -> Option<Upstream> {
    if !up.conn.buf.is_empty() {
        return None;
    }
    match up.conn.fill().now_or_never() {
        None => Some(up),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(upstream_auth: Option<Bytes>) -> Connector {
        let tls = flowtap_certs::client_config(&flowtap_certs::UpstreamTls {
            alpn: vec![b"http/1.1".to_vec()],
            ..Default::default()
        })
        .expect("client TLS config");
        Connector {
            tls_h1: tls.clone(),
            tls_h2: tls.clone(),
            tls_raw: tls,
            server_tls: flowtap_certs::UpstreamTls::default(),
            client_certs: None,
            connect_timeout: Duration::from_secs(1),
            upstream_auth,
        }
    }

    fn spec(scheme: &str, host: &str, port: u32) -> ServerSpec {
        ServerSpec {
            scheme: scheme.into(),
            address: Some(Address {
                host: host.into(),
                port,
            }),
        }
    }

    #[test]
    fn via_is_the_scripts_choice_else_the_listeners_own() {
        let own = Via {
            tls: false,
            host: "proxy.corp".into(),
            port: 3128,
        };
        let upstream = connector(Some(Bytes::from_static(b"Basic dXNlcjpwYXNz")));
        assert_eq!(
            upstream.via_for(None, Some(&own)).ok(),
            Some(Some(own.clone()))
        );
        assert_eq!(upstream.via_for(None, None).ok(), Some(None));
        let other = upstream
            .via_for(Some(&spec("https", "localhost", 8082)), Some(&own))
            .expect("an https next proxy")
            .expect("another proxy");
        assert_eq!(
            (other.tls, other.host.as_str(), other.port),
            (true, "localhost", 8082)
        );
        // `upstream_auth` goes to the chosen proxy too.
        let next = upstream.next_for(Some(&other)).expect("a next proxy");
        assert_eq!(
            next.authorization.as_deref(),
            Some(&b"Basic dXNlcjpwYXNz"[..])
        );
        assert_eq!(next.via.spec().scheme, "https");
        assert!(
            upstream
                .via_for(Some(&spec("socks5", "localhost", 8082)), None)
                .is_err()
        );
        assert!(
            upstream
                .via_for(Some(&spec("http", "localhost", 70_000)), None)
                .is_err()
        );
        assert!(upstream.next_for(None).is_none());
    }
}
