//! Helpers shared by the behaviour tests: a real TLS handshake over 127.0.0.1, a client that
//! trusts one CA, and a mitmproxy-style RSA CA made with the openssl command-line tool.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the client saw of a completed handshake.
#[derive(Debug)]
pub struct Handshake {
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// The certificate chain the server presented.
    pub peer_chain: Vec<CertificateDer<'static>>,
}

/// Connects a client with `client` to a server with `server` on 127.0.0.1:0, sending the
/// server name `server_name` (a DNS name or an IP literal), and exchanges one message each
/// way. Returns the client's handshake error as text on failure.
pub async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> Result<Handshake, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = TlsAcceptor::from(server).accept(tcp).await.ok()?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.ok()?;
        tls.write_all(b"pong").await.ok()?;
        tls.shutdown().await.ok()?;
        Some(buf)
    });
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let result = TlsConnector::from(client).connect(name, tcp).await;
    let mut tls = match result {
        Ok(tls) => tls,
        Err(e) => {
            let _ = server_task.await;
            return Err(e.to_string());
        }
    };
    tls.write_all(b"ping").await.expect("client write");
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).await.expect("client read");
    assert_eq!(reply, b"pong");
    assert_eq!(server_task.await.expect("server task"), Some(*b"ping"));
    let (_, conn) = tls.get_ref();
    Ok(Handshake {
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        peer_chain: conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.clone().into_owned())
            .collect(),
    })
}

/// A client config trusting only `ca`, offering `alpn`.
pub fn client_trusting(ca: &CertificateDer<'_>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone().into_owned()).expect("CA parses");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// ALPN lists as the API takes them.
pub fn alpn(protocols: &[&[u8]]) -> Vec<Vec<u8>> {
    protocols.iter().map(|p| p.to_vec()).collect()
}

/// Which private key encoding a generated mitmproxy-style CA file uses.
#[derive(Debug, Clone, Copy)]
pub enum RsaKeyFormat {
    /// `BEGIN RSA PRIVATE KEY`, as mitmproxy writes it.
    Pkcs1,
    /// `BEGIN PRIVATE KEY`.
    Pkcs8,
}

/// Writes `dir/mitmproxy-ca.pem` like mitmproxy's: a 2048-bit RSA key followed by a
/// self-signed CA certificate (CN=mitmproxy, O=mitmproxy), all made by the openssl tool.
pub fn openssl_mitmproxy_ca(dir: &Path, format: RsaKeyFormat) -> PathBuf {
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    // OpenSSL 3 writes PKCS#8 unless asked for the traditional (PKCS#1) form.
    let mut genrsa = vec!["genrsa", "-out", path(&key)];
    if let RsaKeyFormat::Pkcs1 = format {
        genrsa.push("-traditional");
    }
    genrsa.push("2048");
    openssl(&genrsa);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path(&key),
        "-out",
        path(&cert),
        "-days",
        "3650",
        "-subj",
        "/CN=mitmproxy/O=mitmproxy",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "extendedKeyUsage=serverAuth",
    ]);
    let mut contents = std::fs::read_to_string(&key).expect("read key");
    contents.push_str(&std::fs::read_to_string(&cert).expect("read cert"));
    let expected_header = match format {
        RsaKeyFormat::Pkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
        RsaKeyFormat::Pkcs8 => "-----BEGIN PRIVATE KEY-----",
    };
    assert!(contents.starts_with(expected_header), "{contents}");
    let ca = dir.join("mitmproxy-ca.pem");
    std::fs::write(&ca, contents).expect("write mitmproxy-ca.pem");
    std::fs::write(
        dir.join("mitmproxy-ca-cert.pem"),
        std::fs::read(&cert).expect("cert"),
    )
    .expect("write mitmproxy-ca-cert.pem");
    ca
}

/// Runs `openssl verify -CAfile ca leaf` and returns whether it printed OK.
pub fn openssl_verifies(ca_pem: &str, leaf_der: &[u8], dir: &Path) -> bool {
    let ca = dir.join("verify-ca.pem");
    let leaf = dir.join("verify-leaf.pem");
    std::fs::write(&ca, ca_pem).expect("write CA");
    std::fs::write(&leaf, flowtap_certs::inspect::certificate_pem(leaf_der)).expect("write leaf");
    let out = Command::new("openssl")
        .args([
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            path(&ca),
            path(&leaf),
        ])
        .output()
        .expect("run openssl verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    out.status.success() && stdout.trim_end().ends_with(": OK")
}

/// Runs the openssl tool, panicking with its stderr on failure.
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}
