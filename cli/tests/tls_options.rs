//! mitmdump's TLS options end to end, with a real `flowtap` process, real TLS origins and real
//! clients (curl, and rustls clients that look at the certificate chain flowtap serves):
//! `--certs` serves the given certificate for the names it matches, `client_certs` reaches a
//! server that requires a client certificate, `upstream_cert` copies the server's names into
//! the minted leaf (and `add_upstream_certs_to_client_chain` appends the server's chain),
//! `ssl_verify_upstream_trusted_confdir` trusts a directory of CAs, and the
//! `tls_version_*` bounds hold on both sides, and `key_size` makes a new CA and the served
//! leaves RSA of that size. All keys and certificates are minted at test time.

#![allow(missing_docs)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flowtap_certs::testing::OriginCert;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use support::origin::{Origin, serve_fixed};
use support::scripts::{TempScript, poll};
use support::{Flowtap, WAIT, curl};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test CA of our own, and the leaves it signs (not flowtap's CA).
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
}

/// A leaf: its chain as PEM, key as PEM, and DER.
struct Leaf {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().expect("ring generates P-256 keys");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed CA");
        Pki {
            ca_der: cert.der().clone(),
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().expect("ring generates P-256 keys");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("our CA parses");
        roots
    }
}

impl Leaf {
    /// Writes chain (leaf, then `ca_pem`) and key to `path`, as `--certs` and `client_certs`
    /// read them.
    fn write(&self, path: &Path, ca_pem: &str) -> PathBuf {
        std::fs::write(path, format!("{}{}{}", self.cert_pem, ca_pem, self.key_pem))
            .expect("write the PEM file");
        path.to_path_buf()
    }
}

/// flowtap's CA certificate as a root store, from its confdir.
fn flowtap_roots(flowtap: &Flowtap) -> RootCertStore {
    let pem = std::fs::read(flowtap.confdir().join("flowtap-ca-cert.pem")).expect("CA cert");
    let mut roots = RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.expect("PEM")).expect("CA parses");
    }
    roots
}

/// What a rustls client saw through the proxy.
struct Served {
    chain: Vec<CertificateDer<'static>>,
    response: String,
}

/// CONNECT to `authority` through `proxy`, TLS with SNI `sni` trusting only `roots`, then one
/// GET. Err: the handshake (or anything before the response) failed.
fn tls_via(
    proxy: SocketAddr,
    authority: &str,
    sni: &str,
    roots: RootCertStore,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Served, String> {
    let mut tcp = TcpStream::connect(proxy).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        tcp,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .expect("CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return Err("the proxy closed during CONNECT".into()),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("CONNECT refused: {head}"));
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    let chain = tls
        .conn
        .peer_certificates()
        .expect("a server certificate")
        .to_vec();
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
    )
    .expect("GET");
    let mut response = Vec::new();
    // A server that closes without close_notify ends the read with an error: what arrived
    // before it is the response.
    let _ = tls.read_to_end(&mut response);
    Ok(Served {
        chain,
        response: String::from_utf8_lossy(&response).into_owned(),
    })
}

/// A TLS origin with `config` answering `response` (keep-alive).
fn tls_origin(config: Arc<ServerConfig>, response: &'static [u8]) -> Origin {
    Origin::start(move |tcp| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        serve_fixed(&mut rustls::StreamOwned::new(conn, tcp), response);
    })
}

fn dns_names(der: &CertificateDer<'_>) -> Vec<String> {
    flowtap_certs::inspect(der)
        .expect("the leaf parses")
        .dns_names()
        .into_iter()
        .map(str::to_string)
        .collect()
}

fn trust(cert: &OriginCert) -> String {
    format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    )
}

const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn certs_serves_the_given_certificates_for_the_names_they_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new("users own CA");
    let wildcard = pki.leaf(&["*.custom.test"], ExtendedKeyUsagePurpose::ServerAuth);
    let fallback = pki.leaf(&["fallback.test"], ExtendedKeyUsagePurpose::ServerAuth);
    let wildcard_file = wildcard.write(&dir.path().join("wildcard.pem"), &pki.ca_pem);
    let fallback_file = fallback.write(&dir.path().join("fallback.pem"), &pki.ca_pem);
    // As in mitmproxy, the server's own names are looked up first (upstream_cert): each name
    // gets an origin of its own.
    let www_cert = OriginCert::new(&["www.custom.test"]);
    let www = Origin::tls(&www_cert, HELLO);
    let other_cert = OriginCert::new(&["localhost"]);
    let other = Origin::tls(&other_cert, HELLO);
    let wildcard_spec = format!("*.custom.test={}", wildcard_file.display());
    let fallback_spec = format!("certs={}", fallback_file.display());
    let (flowtap, addr) = Flowtap::start(&[
        "--certs",
        &wildcard_spec,
        "--set",
        &fallback_spec,
        "--set",
        &trust(&www_cert),
        "--set",
        &trust(&other_cert),
    ]);

    // A client that trusts only the user's CA gets the wildcard certificate, with its chain
    // from the file, and the origin's answer through it.
    let authority = format!("127.0.0.1:{}", www.port());
    let served = tls_via(
        addr,
        &authority,
        "www.custom.test",
        pki.roots(),
        rustls::ALL_VERSIONS,
    )
    .expect("the user's certificate is served for www.custom.test");
    assert_eq!(served.chain[0], wildcard.der);
    assert_eq!(served.chain.get(1), Some(&pki.ca_der));
    assert!(served.response.ends_with("hello"), "{}", served.response);

    // Any other name gets the one given without a domain ("*"), whose own name is not the
    // one asked for (so only curl -k takes it).
    let out = curl(&[
        "-x",
        &format!("http://{addr}"),
        "-k",
        "-v",
        &format!("https://localhost:{}/", other.port()),
    ])
    .ok();
    assert_eq!(out.stdout, "hello");
    assert!(
        out.stderr.contains("subject: CN=fallback.test"),
        "{}",
        out.stderr
    );
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn names_certs_does_not_match_get_minted_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new("users own CA");
    let leaf = pki.leaf(&["only.custom.test"], ExtendedKeyUsagePurpose::ServerAuth);
    let file = leaf.write(&dir.path().join("only.pem"), &pki.ca_pem);
    let only_cert = OriginCert::new(&["only.custom.test"]);
    let only = Origin::tls(&only_cert, HELLO);
    let minted_cert = OriginCert::new(&["minted.test"]);
    let minted = Origin::tls(&minted_cert, HELLO);
    let spec = format!("only.custom.test={}", file.display());
    let (flowtap, addr) = Flowtap::start(&[
        "--certs",
        &spec,
        "--set",
        &trust(&only_cert),
        "--set",
        &trust(&minted_cert),
    ]);

    let authority = format!("127.0.0.1:{}", only.port());
    let served = tls_via(
        addr,
        &authority,
        "only.custom.test",
        pki.roots(),
        rustls::ALL_VERSIONS,
    )
    .expect("the user's certificate");
    assert_eq!(served.chain[0], leaf.der);
    let minted = tls_via(
        addr,
        &format!("127.0.0.1:{}", minted.port()),
        "minted.test",
        flowtap_roots(&flowtap),
        rustls::ALL_VERSIONS,
    )
    .expect("a leaf minted by flowtap's CA for another name");
    assert_ne!(minted.chain[0], leaf.der);
    assert!(dns_names(&minted.chain[0]).contains(&"minted.test".to_string()));
    flowtap.stop();
}

#[test]
fn unusable_tls_options_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new("users own CA");
    let leaf = pki.leaf(&["a.test"], ExtendedKeyUsagePurpose::ServerAuth);
    let other = pki.leaf(&["b.test"], ExtendedKeyUsagePurpose::ServerAuth);
    // The certificate of one leaf with the key of another.
    let mismatched = dir.path().join("mismatched.pem");
    std::fs::write(&mismatched, format!("{}{}", leaf.cert_pem, other.key_pem)).expect("write");
    let encrypted = dir.path().join("encrypted.pem");
    std::fs::write(
        &encrypted,
        format!(
            "{}-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
            leaf.cert_pem
        ),
    )
    .expect("write");
    // Option values that do not parse are usage errors (status 2, as other bad `--set`
    // values); files that cannot be used stop the start (status 1).
    let cases: [(Vec<String>, &str, i32); 7] = [
        (
            vec!["--certs".into(), mismatched.display().to_string()],
            "does not belong",
            1,
        ),
        (
            vec![
                "--certs".into(),
                encrypted.display().to_string(),
                "--cert-passphrase".into(),
                "secret".into(),
            ],
            "encrypted",
            1,
        ),
        (
            vec!["--set".into(), "tls_version_client_max=TLS1_1".into()],
            "leaves no version",
            2,
        ),
        (
            vec!["--set".into(), "tls_version_server_min=TLS1_4".into()],
            "not a TLS version",
            2,
        ),
        // mitmproxy's key_size is an RSA size; ring signs with 2048 to 4096 bits only.
        (
            vec!["--set".into(), "key_size=100".into()],
            "option key_size=100",
            2,
        ),
        (
            vec!["--set".into(), "key_size=8192".into()],
            "option key_size=8192",
            2,
        ),
        (
            vec!["--set".into(), "key_size=big".into()],
            "option key_size: not a key size in bits",
            2,
        ),
    ];
    for (args, expected, code) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut flowtap = Flowtap::spawn(&[&["-p", "0"], &args[..]].concat());
        let status = flowtap.wait_exit(WAIT);
        assert_eq!(status.code(), Some(code), "{args:?}");
        let line = flowtap
            .stderr
            .wait_for(&format!("saying {expected:?}"), |l| l.contains(expected));
        assert!(!line.is_empty());
    }
}

#[test]
fn client_certs_reach_a_server_that_requires_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clients = Pki::new("client CA");
    let client = clients.leaf(&["flowtap-client"], ExtendedKeyUsagePurpose::ClientAuth);
    let certs_dir = dir.path().join("client-certs");
    std::fs::create_dir(&certs_dir).expect("mkdir");
    // Per server name: localhost has one, 127.0.0.1 none.
    client.write(&certs_dir.join("localhost.pem"), &clients.ca_pem);

    let servers = Pki::new("origin CA");
    let server = servers.leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let ca_file = dir.path().join("origin-ca.pem");
    std::fs::write(&ca_file, &servers.ca_pem).expect("write");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(clients.roots()),
        provider(),
    )
    .build()
    .expect("client verifier");
    let key: rustls::pki_types::PrivateKeyDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(server.key_pem.as_bytes())
            .expect("key PEM");
    let config = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server.der.clone()], key)
            .expect("server config"),
    );
    // The origin answers with the subject of the client certificate it verified.
    let origin = Origin::start(move |tcp| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            if tls.conn.complete_io(&mut tls.sock).is_err() {
                return;
            }
        }
        let subject = tls
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| flowtap_certs::inspect(leaf).ok())
            .map(|summary| summary.subject)
            .unwrap_or_default();
        let body = format!("client certificate: {subject}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        serve_fixed(&mut tls, response.as_bytes());
    });
    let client_certs = format!("client_certs={}", certs_dir.display());
    let trusted = format!("ssl_verify_upstream_trusted_ca={}", ca_file.display());
    let (flowtap, addr) = Flowtap::start(&["--set", &client_certs, "--set", &trusted]);
    let cacert = flowtap.confdir().join("flowtap-ca-cert.pem");
    let proxy = format!("http://{addr}");
    let get = |url: &str| {
        curl(&[
            "-x",
            &proxy,
            "--cacert",
            cacert.to_str().expect("path"),
            url,
        ])
    };

    let out = get(&format!("https://localhost:{}/", origin.port())).ok();
    assert_eq!(out.stdout, "client certificate: CN=flowtap-client");
    // No `127.0.0.1.pem`: no certificate is offered, and the origin refuses the handshake.
    let out = get(&format!("https://127.0.0.1:{}/", origin.port()));
    assert!(
        out.stdout.contains("TLS handshake with 127.0.0.1 failed"),
        "{out:?}"
    );
    flowtap.stop();
}

#[test]
fn upstream_cert_copies_the_servers_names_into_the_minted_leaf() {
    let origin_cert = OriginCert::new(&["localhost", "extra-name.test"]);
    let origin = Origin::tls(&origin_cert, HELLO);
    let authority = format!("localhost:{}", origin.port());

    let (flowtap, addr) = Flowtap::start(&["--set", &trust(&origin_cert)]);
    let served = tls_via(
        addr,
        &authority,
        "localhost",
        flowtap_roots(&flowtap),
        rustls::ALL_VERSIONS,
    )
    .expect("a minted leaf");
    let names = dns_names(&served.chain[0]);
    assert!(names.contains(&"extra-name.test".to_string()), "{names:?}");
    assert!(names.contains(&"localhost".to_string()), "{names:?}");
    assert_eq!(served.chain.len(), 2, "leaf and flowtap's CA");
    flowtap.stop();

    let (flowtap, addr) = Flowtap::start(&[
        "--set",
        &trust(&origin_cert),
        "--set",
        "upstream_cert=false",
        "--set",
        "add_upstream_certs_to_client_chain=true",
    ]);
    let served = tls_via(
        addr,
        &authority,
        "localhost",
        flowtap_roots(&flowtap),
        rustls::ALL_VERSIONS,
    )
    .expect("a minted leaf");
    let names = dns_names(&served.chain[0]);
    assert_eq!(names, ["localhost"]);
    // The server's own certificate follows flowtap's chain.
    assert_eq!(served.chain.get(2), Some(origin_cert.leaf_der()));
    assert!(served.response.ends_with("hello"), "{}", served.response);
    flowtap.stop();
}

#[test]
fn trusted_confdir_makes_server_verification_pass() {
    let trusted_cert = OriginCert::new(&["localhost"]);
    let trusted = Origin::tls(&trusted_cert, HELLO);
    let unknown_cert = OriginCert::new(&["localhost"]);
    let unknown = Origin::tls(&unknown_cert, HELLO);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(trusted_cert.ca_path(), dir.path().join("origin-ca.pem")).expect("copy");
    std::fs::write(dir.path().join("README"), "not a certificate\n").expect("write");
    let confdir = format!(
        "ssl_verify_upstream_trusted_confdir={}",
        dir.path().display()
    );
    let (flowtap, addr) = Flowtap::start(&["--set", &confdir]);
    let cacert = flowtap.confdir().join("flowtap-ca-cert.pem");
    let proxy = format!("http://{addr}");
    let get = |port: u16| {
        curl(&[
            "-x",
            &proxy,
            "--cacert",
            cacert.to_str().expect("path"),
            &format!("https://localhost:{port}/"),
        ])
    };
    assert_eq!(get(trusted.port()).ok().stdout, "hello");
    let out = get(unknown.port());
    assert!(
        out.stdout.contains("TLS handshake with localhost failed"),
        "{out:?}"
    );
    flowtap.stop();
}

const VERSION_SCRIPT: &str = r#"
import pathlib

LOG = pathlib.Path(__file__).with_name("tls.log")

def log(line):
    with LOG.open("a") as f:
        f.write(line + "\n")

def tls_established_server(data):
    log(f"established_server version={data.conn.tls_version}")

def tls_failed_server(data):
    log(f"failed_server error={data.conn.error}")

def tls_established_client(data):
    log(f"established_client version={data.conn.tls_version}")

def tls_failed_client(data):
    log(f"failed_client error={data.conn.error}")
"#;

#[test]
fn tls_version_bounds_hold_on_both_sides() {
    let cert = OriginCert::new(&["localhost"]);
    let both = Origin::tls(&cert, HELLO);
    let tls13_only = tls_origin(
        cert.server_config_versions(&[b"http/1.1".to_vec()], &[&rustls::version::TLS13]),
        HELLO,
    );
    let script = TempScript::new("tls_versions.py", VERSION_SCRIPT);
    let log_lines = || {
        std::fs::read_to_string(script.sibling("tls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (flowtap, addr) = Flowtap::start(&[
        "-s",
        script.arg(),
        "--set",
        &trust(&cert),
        "--set",
        "tls_version_client_min=TLS1_3",
        "--set",
        "tls_version_server_max=TLS1_2",
    ]);
    let cacert = flowtap.confdir().join("flowtap-ca-cert.pem");
    let proxy = format!("http://{addr}");
    let get = |port: u16, extra: &[&str]| {
        let url = format!("https://localhost:{port}/");
        let args = [
            &[
                "-x",
                &proxy,
                "--cacert",
                cacert.to_str().expect("path"),
                "-v",
            ][..],
            extra,
            &[&url[..]],
        ]
        .concat();
        curl(&args)
    };

    // A TLS 1.2 client is refused; a TLS 1.3 one gets through, while the server connection
    // is TLS 1.2.
    let refused = get(both.port(), &["--tls-max", "1.2"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    poll("tls_failed_client for the TLS 1.2 client", || {
        log_lines()
            .iter()
            .any(|l| {
                l.starts_with("failed_client error=") && l.len() > "failed_client error=".len()
            })
            .then_some(())
    });
    let out = get(both.port(), &[]).ok();
    assert_eq!(out.stdout, "hello");
    assert!(
        out.stderr.contains("SSL connection using TLSv1.3"),
        "{}",
        out.stderr
    );
    poll("the server connection's version", || {
        log_lines()
            .contains(&"established_server version=TLSv1.2".to_string())
            .then_some(())
    });

    // An origin that speaks only TLS 1.3 cannot be reached, and the error says why.
    let out = get(tls13_only.port(), &[]);
    assert!(
        out.stdout.contains("tls_version_server_max=TLS1_2"),
        "{out:?}"
    );
    poll("tls_failed_server naming the bound", || {
        log_lines()
            .iter()
            .any(|l| l.starts_with("failed_server") && l.contains("tls_version_server_max=TLS1_2"))
            .then_some(())
    });
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn old_minimum_versions_are_accepted_with_a_warning() {
    let origin_cert = OriginCert::new(&["localhost"]);
    let origin = Origin::tls(&origin_cert, HELLO);
    // The warning comes before the "listening at" line that `start` waits for.
    let (flowtap, addr) = Flowtap::start(&[
        "--set",
        "tls_version_client_min=TLS1",
        "--set",
        &trust(&origin_cert),
    ]);
    let lines = flowtap.stderr.all();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("tls_version_client_min has been set to TLS1")),
        "{lines:?}"
    );
    // TLS 1.2 clients are still served.
    let served = tls_via(
        addr,
        &format!("localhost:{}", origin.port()),
        "localhost",
        flowtap_roots(&flowtap),
        &[&rustls::version::TLS12],
    )
    .expect("a TLS 1.2 client handshake");
    assert!(served.response.ends_with("hello"), "{}", served.response);
    flowtap.stop();
}

/// `openssl x509 -noout -text` of the PEM certificate(s) in `pem` (the first one).
fn openssl_text(dir: &Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write the PEM");
    let output = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .expect("run openssl (these tests need it on PATH)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// curl through `proxy` to `https://localhost:PORT/`, trusting only `ca_pem_file`; returns
/// the body and the PEM of the leaf curl was served (curl's `%{certs}`, OpenSSL backend).
fn curl_leaf(proxy: SocketAddr, port: u16, ca_pem_file: &Path) -> (String, String) {
    const MARK: &str = "\n--certs--\n";
    let out = curl(&[
        "--proxy",
        &format!("http://{proxy}"),
        "--cacert",
        ca_pem_file.to_str().expect("utf-8 path"),
        "-w",
        &format!("{MARK}%{{certs}}"),
        &format!("https://localhost:{port}/"),
    ])
    .ok();
    let (body, certs) = out
        .stdout
        .split_once(MARK)
        .expect("curl wrote the certificates");
    let begin = certs
        .find("-----BEGIN CERTIFICATE-----")
        .expect("the leaf's PEM in curl's %{certs}");
    let end = certs[begin..]
        .find("-----END CERTIFICATE-----")
        .expect("the end of the leaf's PEM")
        + begin
        + "-----END CERTIFICATE-----".len();
    (body.to_string(), format!("{}\n", &certs[begin..end]))
}

#[test]
fn key_size_makes_a_new_ca_and_the_served_leaves_rsa_of_that_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin_cert = OriginCert::new(&["localhost"]);
    let origin = Origin::tls(&origin_cert, HELLO);
    let (mut first, addr) =
        Flowtap::start(&["--set", "key_size=3072", "--set", &trust(&origin_cert)]);
    let confdir = first.confdir().to_path_buf();
    let ca_cert_file = confdir.join("flowtap-ca-cert.pem");

    let (body, leaf) = curl_leaf(addr, origin.port(), &ca_cert_file);
    assert_eq!(body, "hello");
    let leaf_text = openssl_text(dir.path(), "leaf1.pem", &leaf);
    assert!(leaf_text.contains("rsaEncryption"), "{leaf_text}");
    assert!(leaf_text.contains("Public-Key: (3072 bit)"), "{leaf_text}");

    // The CA file: its certificate and its private key are RSA 3072, and only we can read it.
    let ca_file = confdir.join("flowtap-ca.pem");
    let ca_pem = std::fs::read_to_string(&ca_file).expect("read the CA file");
    let ca_text = openssl_text(dir.path(), "ca.pem", &ca_pem);
    assert!(ca_text.contains("Public-Key: (3072 bit)"), "{ca_text}");
    let key = std::process::Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(&ca_file)
        .output()
        .expect("run openssl");
    let key_text = String::from_utf8_lossy(&key.stdout);
    assert!(key_text.contains("Private-Key: (3072 bit"), "{key_text}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ca_file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    first.terminate();
    assert!(first.wait_exit(WAIT).success());

    // A second start on the same confdir without key_size keeps the RSA CA (its certificate
    // is unchanged) and serves leaves under it, with flowtap's default P-256 leaf key.
    let confdir_dir = std::mem::replace(&mut first.confdir, tempfile::tempdir().expect("tempdir"));
    let mut child = std::process::Command::new(support::binary())
        .args(["-p", "0", "--set", &trust(&origin_cert), "--set"])
        .arg(format!("confdir={}", confdir.display()))
        .env_remove("FLOWTAP_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start flowtap again");
    let second = Flowtap {
        stdout: support::Lines::collect(child.stdout.take().expect("piped")),
        stderr: support::Lines::collect(child.stderr.take().expect("piped")),
        child,
        confdir: confdir_dir,
    };
    let addr = second.listening_at();
    assert_eq!(
        std::fs::read_to_string(&ca_file).expect("read the CA file"),
        ca_pem,
        "the CA is kept"
    );
    let (body, leaf) = curl_leaf(addr, origin.port(), &ca_cert_file);
    assert_eq!(body, "hello");
    let leaf_text = openssl_text(dir.path(), "leaf2.pem", &leaf);
    assert!(leaf_text.contains("id-ecPublicKey"), "{leaf_text}");
    assert!(
        leaf_text.contains("sha256WithRSAEncryption"),
        "signed by the RSA CA: {leaf_text}"
    );
    let (status, _) = second.stop();
    assert!(status.success(), "{status}");
}
