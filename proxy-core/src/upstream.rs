//! Connections to servers: TCP and TLS connects, and a pool of idle HTTP/1 connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flowtap_proto::v1::{Address, Connection, ServerSpec};
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
    /// An HTTP proxy a script chose for this flow (`flow.server_conn.via`) other than the
    /// listener's own way there (direct, or upstream mode's next proxy): None for that way.
    pub(crate) via: Option<Via>,
}

/// A next proxy a script chose with `flow.server_conn.via = ("http", (host, port))`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Via {
    pub(crate) host: String,
    pub(crate) port: u16,
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

/// The next proxy of upstream mode (or one a script chose), as the connector uses it.
#[derive(Clone)]
pub(crate) struct NextProxy {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Basic base64(user:password)` from `upstream_auth`.
    pub(crate) authorization: Option<Bytes>,
}

impl NextProxy {
    /// The proxy as `server_conn.via` records it.
    fn spec(&self) -> ServerSpec {
        ServerSpec {
            scheme: "http".into(),
            address: Some(Address {
                host: self.host.clone(),
                port: u32::from(self.port),
            }),
        }
    }
}

/// Makes server connections.
pub(crate) struct Connector {
    pub(crate) tls_h1: Arc<ClientConfig>,
    pub(crate) tls_h2: Arc<ClientConfig>,
    /// What `tls_h1` and `tls_h2` were built from; a client certificate's configs add to it.
    pub(crate) server_tls: flowtap_certs::UpstreamTls,
    /// `client_certs`: a file, or a directory of `<server name>.pem` files.
    pub(crate) client_certs: Option<std::path::PathBuf>,
    pub(crate) connect_timeout: Duration,
    /// Upstream mode: every server connection goes through this proxy.
    pub(crate) next_proxy: Option<NextProxy>,
}

impl Connector {
    /// The pool key's `via` for a flow whose server connection names `via` (a script's
    /// `flow.server_conn.via`): None when it names no proxy or the listener's own next proxy.
    /// Only `http://` next proxies are built; another scheme is an error naming it.
    pub(crate) fn via_for(&self, via: Option<&ServerSpec>) -> Result<Option<Via>, UpstreamError> {
        let Some(spec) = via else {
            return Ok(None);
        };
        let Some(address) = &spec.address else {
            return Ok(None);
        };
        let refused = |reason: String| UpstreamError::ConnectFailed {
            host: address.host.clone(),
            port: address.port,
            reason,
        };
        if spec.scheme != "http" {
            return Err(refused(format!(
                "flow.server_conn.via: only http:// next proxies are supported, not {}://",
                spec.scheme
            )));
        }
        let port = u16::try_from(address.port)
            .map_err(|_| refused("flow.server_conn.via: the port is out of range".into()))?;
        let via = Via {
            host: address.host.clone(),
            port,
        };
        let own = self
            .next_proxy
            .as_ref()
            .is_some_and(|next| next.host == via.host && next.port == via.port);
        Ok((!own).then_some(via))
    }

    /// The next proxy connections for `via` go through: the one a script chose (with
    /// `upstream_auth`'s credentials, as mitmproxy sends them to any next proxy), else the
    /// listener's own, else none.
    fn next_for(&self, via: Option<&Via>) -> Option<NextProxy> {
        match via {
            Some(via) => Some(NextProxy {
                host: via.host.clone(),
                port: via.port,
                authorization: self
                    .next_proxy
                    .as_ref()
                    .and_then(|next| next.authorization.clone()),
            }),
            None => self.next_proxy.clone(),
        }
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

    /// Runs a TLS handshake over `stream` with SNI `sni`, offering HTTP/2 when `offer_h2`.
    /// Records the TLS details in `info`.
    pub(crate) async fn tls(
        &self,
        stream: TcpStream,
        sni: &str,
        offer_h2: bool,
        info: &mut Connection,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
        let failed = |reason: String| UpstreamError::Tls {
            host: sni.to_string(),
            reason,
        };
        let config = self
            .client_config(sni, offer_h2)
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
        offer_h2: bool,
    ) -> Result<Arc<ClientConfig>, flowtap_certs::CaError> {
        let shared = if offer_h2 { &self.tls_h2 } else { &self.tls_h1 };
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

    /// A byte stream to `host:port`: a TCP connection, or in upstream mode (or with a `via`
    /// a script chose) a CONNECT tunnel through the next proxy. `info` records the server as
    /// the flow sees it (its address is `host:port` either way; `via` the next proxy).
    pub(crate) async fn tunnel(
        &self,
        host: &str,
        port: u16,
        via: Option<&Via>,
        info: &mut Connection,
    ) -> Result<TcpStream, UpstreamError> {
        let Some(next) = self.next_for(via) else {
            return self.tcp(host, port, info).await;
        };
        let next = &next;
        let tcp = self.tcp(&next.host, next.port, info).await?;
        let failed = |reason: String| UpstreamError::ConnectFailed {
            host: host.to_string(),
            port: u32::from(port),
            reason,
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request =
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
        if let Some(auth) = &next.authorization {
            crate::http1::push_header(&mut request, b"Proxy-Authorization", auth);
        }
        request.extend_from_slice(b"\r\n");
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
                next.host, next.port
            ))
        })?
        .map_err(|e| {
            failed(format!(
                "through the upstream proxy {}:{}: {e}",
                next.host, next.port
            ))
        })?;
        if !(200..300).contains(&answered.status) {
            return Err(failed(format!(
                "the upstream proxy {}:{} answered CONNECT with {} {}",
                next.host,
                next.port,
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
        info.via = Some(next.spec());
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
    ) -> Result<Upstream, (UpstreamError, Connection)> {
        let proxied = match self.next_for(key.via.as_ref()) {
            Some(next) if !key.tls => Some(next),
            _ => None,
        };
        let tcp = match &proxied {
            Some(next) => {
                let tcp = self.tcp(&next.host, next.port, &mut info).await;
                // The flow's server is the origin; the next proxy is only the way there.
                info.address = Some(Address {
                    host: key.host.clone(),
                    port: u32::from(key.port),
                });
                info.via = Some(next.spec());
                tcp
            }
            None => {
                self.tunnel(&key.host, key.port, key.via.as_ref(), &mut info)
                    .await
            }
        };
        let tcp = match tcp {
            Ok(tcp) => tcp,
            Err(e) => return Err((e, info)),
        };
        let (io, h2): (Io, bool) = if key.tls {
            match self.tls(tcp, sni, offer_h2, &mut info).await {
                Ok(tls) => {
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    (Box::new(tls), h2)
                }
                Err(e) => return Err((e, info)),
            }
        } else {
            (Box::new(tcp), false)
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

    fn connector(next_proxy: Option<NextProxy>) -> Connector {
        let tls = flowtap_certs::client_config(&flowtap_certs::UpstreamTls {
            alpn: vec![b"http/1.1".to_vec()],
            ..Default::default()
        })
        .expect("client TLS config");
        Connector {
            tls_h1: tls.clone(),
            tls_h2: tls,
            server_tls: flowtap_certs::UpstreamTls::default(),
            client_certs: None,
            connect_timeout: Duration::from_secs(1),
            next_proxy,
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
    fn via_names_another_proxy_or_the_listeners_own_way() {
        let upstream = connector(Some(NextProxy {
            host: "proxy.corp".into(),
            port: 3128,
            authorization: Some(Bytes::from_static(b"Basic dXNlcjpwYXNz")),
        }));
        assert_eq!(upstream.via_for(None).ok(), Some(None));
        // Upstream mode's own next proxy is the listener's way: pooled with the rest.
        assert_eq!(
            upstream
                .via_for(Some(&spec("http", "proxy.corp", 3128)))
                .ok(),
            Some(None)
        );
        let other = upstream
            .via_for(Some(&spec("http", "localhost", 8082)))
            .expect("an http next proxy")
            .expect("another proxy");
        assert_eq!((other.host.as_str(), other.port), ("localhost", 8082));
        // `upstream_auth` goes to the chosen proxy too.
        let next = upstream.next_for(Some(&other)).expect("a next proxy");
        assert_eq!(
            next.authorization.as_deref(),
            Some(&b"Basic dXNlcjpwYXNz"[..])
        );
        assert!(
            upstream
                .via_for(Some(&spec("https", "localhost", 8082)))
                .is_err()
        );
        assert!(
            upstream
                .via_for(Some(&spec("http", "localhost", 70_000)))
                .is_err()
        );

        let regular = connector(None);
        assert!(regular.next_for(None).is_none());
        let via = regular
            .via_for(Some(&spec("http", "127.0.0.1", 8080)))
            .expect("an http next proxy");
        assert_eq!(
            via,
            Some(Via {
                host: "127.0.0.1".into(),
                port: 8080
            })
        );
    }
}
