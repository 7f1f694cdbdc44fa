//! Security between services, against a real `flow-store` process: TLS with client
//! certificates (certificates minted at test time), a bearer token, and the refusal to listen
//! off loopback unauthenticated. The client is the library `flowtap flows` uses.

mod support;

use std::process::{Command, Stdio};

use flowtap_flow_store::client::RemoteStore;
use flowtap_grpc::ClientConfig;
use flowtap_grpc::testing::{CertFiles, TestPki};
use support::{StoreProcess, http_flow};

fn pem(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A client trusting `ca`, presenting `client` if given.
fn client(ca: &std::path::Path, cert: Option<&CertFiles>) -> ClientConfig {
    ClientConfig {
        ca_pem: Some(pem(ca)),
        identity: cert.map(|c| (pem(&c.cert), pem(&c.key))),
        ..ClientConfig::default()
    }
}

/// Stores one flow and lists it back; the error text (as `flowtap flows` prints it) otherwise.
async fn round_trip(address: &str, config: &ClientConfig) -> Result<u64, String> {
    let remote = RemoteStore::connect_with(address, config)
        .await
        .map_err(|e| e.to_string())?;
    let parts: Vec<_> = flowtap_flow_store::flow_parts(http_flow("f1", "example.com", "/", 200))
        .into_iter()
        .collect();
    remote
        .client()
        .append(tokio_stream::iter(parts))
        .await
        .map_err(|e| flowtap_flow_store::StoreError::Remote(e).to_string())?;
    remote.list("", |_| {}).await.map_err(|e| e.to_string())
}

fn store_args(pki: &TestPki, server: &CertFiles) -> Vec<String> {
    [
        "--tls-cert",
        server.cert.to_str().unwrap(),
        "--tls-key",
        server.key.to_str().unwrap(),
        "--tls-client-ca",
        pki.ca.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn start(dir: &std::path::Path, extra: &[String]) -> StoreProcess {
    let store = format!("sqlite:{}", dir.join("flows.db").display());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    StoreProcess::start_with("127.0.0.1:0", &store, &extra)
}

#[tokio::test]
async fn mutual_tls_admits_the_right_client_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::mint(dir.path());
    let process = start(dir.path(), &store_args(&pki, &pki.server));
    let port = process.address.rsplit(':').next().unwrap().to_owned();
    let https = format!("https://127.0.0.1:{port}");

    let right = client(&pki.ca, Some(&pki.client));
    assert_eq!(round_trip(&https, &right).await, Ok(1));
    // A bare HOST:PORT is TLS when a CA is given; the certificate names localhost too.
    assert_eq!(
        round_trip(&format!("localhost:{port}"), &right).await,
        Ok(1)
    );

    let no_certificate = round_trip(&https, &client(&pki.ca, None))
        .await
        .unwrap_err();
    assert!(
        no_certificate.contains("the server requires a client certificate"),
        "{no_certificate}"
    );

    let other_ca = round_trip(&https, &client(&pki.ca, Some(&pki.other_client)))
        .await
        .unwrap_err();
    assert!(
        other_ca.contains("refused the client certificate: not signed by a CA it trusts"),
        "{other_ca}"
    );

    let wrong_trust = round_trip(&https, &client(&pki.other_ca, Some(&pki.client)))
        .await
        .unwrap_err();
    assert!(wrong_trust.contains("unknown issuer"), "{wrong_trust}");

    // Plain gRPC to a TLS port gets nowhere either.
    assert!(
        round_trip(
            &format!("http://127.0.0.1:{port}"),
            &ClientConfig::default()
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn an_expired_server_certificate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::mint(dir.path());
    let process = start(dir.path(), &store_args(&pki, &pki.expired_server));
    let error = round_trip(
        &format!("https://{}", process.address),
        &client(&pki.ca, Some(&pki.client)),
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("the server's certificate has expired"),
        "{error}"
    );
}

#[tokio::test]
async fn the_token_is_required_and_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "c0rrect-horse\n").unwrap();
    let process = start(
        dir.path(),
        &["--token-file".into(), token_file.display().to_string()],
    );
    let address = format!("http://{}", process.address);
    let with_token = |token: Option<&str>| ClientConfig {
        token: token.map(String::from),
        ..ClientConfig::default()
    };

    let missing = round_trip(&address, &with_token(None)).await.unwrap_err();
    assert!(missing.contains("missing token"), "{missing}");
    let wrong = round_trip(&address, &with_token(Some("c0rrect-hors")))
        .await
        .unwrap_err();
    assert!(wrong.contains("wrong token"), "{wrong}");
    assert_eq!(
        round_trip(&address, &with_token(Some("c0rrect-horse"))).await,
        Ok(1)
    );
}

#[test]
fn an_unauthenticated_store_off_loopback_needs_insecure_listen() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("flows.db").display());
    let refused = Command::new(env!("CARGO_BIN_EXE_flow-store"))
        .args(["--listen", "0.0.0.0:0", "--store", &store])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty(), "it must not start listening");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0") && stderr.contains("--insecure-listen"),
        "{stderr}"
    );

    let process = StoreProcess::start_with("0.0.0.0:0", &store, &["--insecure-listen"]);
    assert!(
        process.address.starts_with("0.0.0.0:"),
        "{}",
        process.address
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_delivers_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::mint(dir.path());
    let process = start(dir.path(), &store_args(&pki, &pki.server));
    let https = format!("https://{}", process.address);
    let security = client(&pki.ca, Some(&pki.client));
    let config = flowtap_flow_store::SinkConfig {
        security: security.clone(),
        ..flowtap_flow_store::SinkConfig::new(&https, dir.path().join("spool"))
    };
    let sink = flowtap_flow_store::StoreSink::start(config).unwrap();
    sink.push(http_flow("sunk", "example.com", "/", 200))
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), sink.flush())
        .await
        .expect("the flow is stored within 30 s");
    let remote = RemoteStore::connect_with(&https, &security).await.unwrap();
    let mut ids = Vec::new();
    remote
        .list("", |summary| ids.push(summary.id))
        .await
        .unwrap();
    assert_eq!(ids, ["sunk"]);
}
