//! A rustls client that opens a CONNECT tunnel through the proxy and handshakes inside it, to
//! see exactly which certificate the proxy presents.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A client config trusting only `ca`, offering `alpn`.
pub fn client_trusting(ca: &CertificateDer<'_>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone().into_owned()).expect("the CA parses");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Sends `CONNECT authority` to the proxy and returns the tunnel once the proxy answered
/// 200; the proxy's status line otherwise.
pub async fn connect_tunnel(proxy: SocketAddr, authority: &str) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .expect("write CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte so nothing of the TLS stream that follows is consumed.
    while !head.ends_with(b"\r\n\r\n") {
        let n = tcp
            .read(&mut byte)
            .await
            .expect("read the CONNECT response");
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if head.starts_with("HTTP/1.1 200") {
        Ok(tcp)
    } else {
        Err(head)
    }
}

/// CONNECTs to `authority` through the proxy, then handshakes TLS with `server_name` (a DNS
/// name, or an IP literal for which no SNI is sent) trusting only `ca`. Returns the TLS
/// stream; its peer certificates are what the proxy (or the origin) presented.
pub async fn tls_through_proxy(
    proxy: SocketAddr,
    authority: &str,
    server_name: &str,
    ca: &CertificateDer<'_>,
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = connect_tunnel(proxy, authority).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("a valid server name");
    TlsConnector::from(client_trusting(ca, alpn))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// The leaf certificate a finished handshake presented.
pub fn peer_leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("the server sent certificates")[0]
        .clone()
        .into_owned()
}
