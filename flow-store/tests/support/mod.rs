//! Shared helpers of the flow-store tests: flows to store, and stores to put them in.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use flowtap_flow_store::backend::postgres::PostgresBackend;
use flowtap_flow_store::backend::sqlite::SqliteBackend;
use flowtap_flow_store::{Config, Store};
use flowtap_proto::v1::{
    Address, Connection, Error, Flow, Header, Headers, Request, Response, Value, ValueDict,
    ValueEntry, WebSocketData, WebSocketMessage, value,
};

pub fn header(name: &str, value: &str) -> Header {
    Header {
        name: Bytes::copy_from_slice(name.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::Text(s.into())),
    }
}

fn connection(id: &str, host: &str, port: u32) -> Connection {
    Connection {
        id: id.into(),
        peername: Some(Address {
            host: host.into(),
            port,
        }),
        sockname: Some(Address {
            host: "127.0.0.1".into(),
            port: 8080,
        }),
        transport_protocol: "tcp".into(),
        error: None,
        tls: true,
        certificate_list: vec![Bytes::from_static(
            b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )],
        alpn: Some(Bytes::from_static(b"h2")),
        alpn_offers: vec![Bytes::from_static(b"h2"), Bytes::from_static(b"http/1.1")],
        cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        cipher_list: vec!["TLS_AES_128_GCM_SHA256".into()],
        tls_version: Some("TLSv1.3".into()),
        sni: Some("example.com".into()),
        timestamp_start: Some(1_700_000_000.5),
        timestamp_end: Some(1_700_000_002.25),
        timestamp_tls_setup: Some(1_700_000_000.75),
        mitmcert: None,
        proxy_mode: "regular".into(),
        address: Some(Address {
            host: "example.com".into(),
            port: 443,
        }),
        timestamp_tcp_setup: Some(1_700_000_000.6),
        via: None,
        client_hello: Bytes::new(),
        socks5_auth: None,
    }
}

/// An HTTP flow with every field set: `GET https://{host}{path}` answered with `status`.
pub fn http_flow(id: &str, host: &str, path: &str, status: u32) -> Flow {
    Flow {
        id: id.into(),
        r#type: "http".into(),
        error: None,
        client_conn: Some(connection("client-1", "10.0.0.7", 51234)),
        server_conn: Some(connection("server-1", "93.184.216.34", 443)),
        intercepted: false,
        is_replay: None,
        marked: ":default:".into(),
        metadata: Some(ValueDict {
            entries: vec![ValueEntry {
                key: Some(text("note")),
                value: Some(text("kept")),
            }],
        }),
        comment: "a comment".into(),
        timestamp_created: 1_700_000_000.0,
        backup: None,
        live: false,
        request: Some(Request {
            http_version: Bytes::from_static(b"HTTP/1.1"),
            headers: vec![
                header("Host", host),
                header("Accept", "*/*"),
                header("X-Dup", "1"),
                header("x-dup", "2"),
            ],
            content: Some(Bytes::from_static(b"request body")),
            trailers: Some(Headers {
                fields: vec![header("X-Trailer", "t")],
            }),
            timestamp_start: 1_700_000_001.0,
            timestamp_end: Some(1_700_000_001.1),
            host: host.into(),
            port: 443,
            method: Bytes::from_static(b"GET"),
            scheme: Bytes::from_static(b"https"),
            authority: Bytes::new(),
            path: Bytes::copy_from_slice(path.as_bytes()),
            stream: flowtap_proto::v1::StreamMode::Buffer.into(),
        }),
        response: Some(Response {
            http_version: Bytes::from_static(b"HTTP/1.1"),
            headers: vec![header("Content-Type", "text/html; charset=utf-8")],
            content: Some(Bytes::from_static(b"<html>hello</html>")),
            trailers: None,
            timestamp_start: 1_700_000_001.5,
            timestamp_end: Some(1_700_000_001.9),
            status_code: status,
            reason: Bytes::from_static(b"OK"),
            stream: flowtap_proto::v1::StreamMode::Buffer.into(),
        }),
        websocket: Some(WebSocketData {
            messages: vec![WebSocketMessage {
                r#type: 1,
                from_client: true,
                content: Bytes::from_static(b"ping"),
                timestamp: 1_700_000_001.7,
                dropped: false,
                injected: false,
            }],
            closed_by_client: Some(true),
            close_code: Some(1000),
            close_reason: Some("bye".into()),
            timestamp_end: Some(1_700_000_002.0),
        }),
        messages: vec![],
        dns_request: None,
        dns_response: None,
    }
}

/// A flow that failed: an error and no response.
pub fn failed_flow(id: &str, host: &str) -> Flow {
    let mut flow = http_flow(id, host, "/", 0);
    flow.response = None;
    flow.websocket = None;
    flow.error = Some(Error {
        msg: "Connection refused".into(),
        timestamp: 1_700_000_003.0,
    });
    flow
}

/// A store in a fresh SQLite file; the directory lives as long as the returned guard.
pub fn sqlite_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteBackend::open(&dir.path().join("flows.db")).expect("open sqlite");
    (dir, Store::new(backend, Config::default()))
}

/// The URL of a PostgreSQL server for this test binary: FLOWTAP_TEST_POSTGRES_URL, or a
/// server started with scripts/pg-test-server, which stops it when this process exits.
pub fn postgres_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("FLOWTAP_TEST_POSTGRES_URL") {
            return url;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-test-server");
        let output = std::process::Command::new(script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running scripts/pg-test-server");
        assert!(output.status.success(), "scripts/pg-test-server failed");
        String::from_utf8(output.stdout)
            .expect("a UTF-8 URL")
            .trim()
            .to_owned()
    })
}

/// A fresh, empty database on the test server.
pub async fn postgres_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = postgres_url();
    let name = format!(
        "flowtap_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test PostgreSQL server");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("creating a test database");
    drop(client);
    let _ = connection.await;
    let (prefix, _) = base.rsplit_once('/').expect("a URL with a database");
    format!("{prefix}/{name}")
}

/// A store in a fresh PostgreSQL database.
pub async fn postgres_store() -> Store {
    let url = postgres_database().await;
    let backend = PostgresBackend::connect(&url)
        .await
        .expect("connect postgres");
    Store::new(backend, Config::default())
}

/// A `flow-store` process (the crate's binary), killed when dropped.
pub struct StoreProcess {
    pub child: std::process::Child,
    /// The address it listens on, `host:port`.
    pub address: String,
}

impl StoreProcess {
    /// Starts `flow-store --listen LISTEN --store STORE` and waits for its listen line.
    pub fn start(listen: &str, store: &str) -> StoreProcess {
        StoreProcess::start_with(listen, store, &[])
    }

    /// [`StoreProcess::start`] with more arguments (`--tls-cert ...`).
    pub fn start_with(listen: &str, store: &str, extra: &[&str]) -> StoreProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flow-store"))
            .args(["--listen", listen, "--store", store])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting flow-store");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the listen line");
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        StoreProcess { child, address }
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL flow-store");
        self.child.wait().expect("waiting for flow-store");
    }
}

impl Drop for StoreProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fixtures recorded from mitmdump 12 (`fixtures/mitmproxy-12` in the repository).
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mitmproxy-12")
}

/// Every `*.mitm` fixture, sorted.
pub fn mitm_fixtures() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("the mitmproxy-12 fixtures are beside the checkout")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mitm"))
        .collect();
    files.sort();
    files
}

/// The flows of a flow file, each id once (the last wins), in order of last appearance.
pub fn read_unique(data: &[u8]) -> Vec<Flow> {
    let flows = flowtap_flow::flowfile::read_flows(data).expect("a valid flow file");
    let mut unique: Vec<Flow> = Vec::new();
    for flow in flows {
        unique.retain(|f| f.id != flow.id);
        unique.push(flow);
    }
    unique
}
