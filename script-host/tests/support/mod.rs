//! Shared helpers: start the real `script-host` binary on real script files and drive its
//! gRPC session with a real tonic client.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flowtap_proto::v1::{
    Address, Connection, Control, CoreMessage, Flow, Header, Hello, Hook, HookCall, HookReply,
    LogRecord, ProtocolVersion, Ready, Request, Response, WorkerMessage, core_message,
    script_host_client::ScriptHostClient, worker_message,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// A running `script-host` process; killed when dropped.
pub struct Host {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// The worker's standard input, kept open (a `--exit-with-stdin` worker exits when it
    /// closes).
    pub stdin: Option<ChildStdin>,
    /// The rest of its standard output after the address (a spawned worker prints its
    /// scripts' log lines there).
    pub stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

/// Writes `scripts` (name, source) into a temporary directory.
pub fn write_scripts(scripts: &[(&str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = scripts
        .iter()
        .map(|(name, source)| {
            let path = dir.path().join(name);
            std::fs::write(&path, source).expect("write script");
            path
        })
        .collect();
    (dir, paths)
}

impl Host {
    /// Starts the binary with `-s` for each spec, listening on `listen`.
    pub async fn start_with(dir: tempfile::TempDir, specs: &[String], listen: &str) -> Host {
        Host::start_with_args(dir, specs, listen, &[]).await
    }

    /// Starts the binary with `-s` for each spec, listening on `listen`, with `extra` arguments.
    pub async fn start_with_args(
        dir: tempfile::TempDir,
        specs: &[String],
        listen: &str,
        extra: &[&str],
    ) -> Host {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_script-host"));
        for spec in specs {
            cmd.arg("-s").arg(spec);
        }
        cmd.arg("--listen")
            .arg(listen)
            .args(extra)
            .env_remove("VIRTUAL_ENV")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn script-host");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("script-host announces its address in time")
            .expect("read stdout")
            .expect("a line on stdout");
        let addr = line
            .strip_prefix("script-host listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Host {
            child,
            addr,
            dir,
            stdin,
            stdout: lines,
        }
    }

    /// Starts the binary on 127.0.0.1:0 with scripts written from sources.
    pub async fn start(scripts: &[(&str, &str)]) -> Host {
        let (dir, paths) = write_scripts(scripts);
        let specs: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        Host::start_with(dir, &specs, "127.0.0.1:0").await
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Opens a session.
    pub async fn session(&self) -> Session {
        self.try_session().await.expect("open session")
    }

    /// A channel to the worker.
    pub async fn channel(&self) -> tonic::transport::Channel {
        if let Some(path) = self.addr.strip_prefix("unix:") {
            let path = path.to_string();
            tonic::transport::Endpoint::try_from("http://[::]:50051")
                .expect("endpoint")
                .connect_with_connector(UnixConnector(path))
                .await
                .expect("connect over unix socket")
        } else {
            tonic::transport::Endpoint::try_from(format!("http://{}", self.addr))
                .expect("endpoint")
                .tcp_nodelay(true)
                .connect()
                .await
                .expect("connect")
        }
    }

    /// Opens a session, or the status the worker refused it with.
    pub async fn try_session(&self) -> Result<Session, tonic::Status> {
        let endpoint = self.channel().await;
        let mut client = ScriptHostClient::new(endpoint);
        let (tx, rx) = mpsc::channel(1024);
        let inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Session {
            tx,
            inbound,
            logs: Vec::new(),
            controls: Vec::new(),
            next_id: AtomicU64::new(1),
        })
    }

    /// The worker's `grpc.health.v1` status for `service`.
    pub async fn health(&self, service: &str) -> Result<i32, tonic::Status> {
        let mut client = tonic_health::pb::health_client::HealthClient::new(self.channel().await);
        let response = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await?;
        Ok(response.into_inner().status)
    }

    /// Sends `signal` (a name `kill` knows: TERM, INT) to the worker.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the worker runs");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Waits for the process to exit (after Done).
    pub async fn wait_exit(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("script-host exits after Done")
            .expect("wait")
    }
}

/// Connects tonic to a unix socket (tonic takes any tower `Service<Uri>`).
#[derive(Clone)]
pub struct UnixConnector(pub String);

type UnixFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = std::io::Result<hyper_util::rt::TokioIo<tokio::net::UnixStream>>,
            > + Send,
    >,
>;

impl tower::Service<http::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = UnixFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            Ok(hyper_util::rt::TokioIo::new(
                tokio::net::UnixStream::connect(path).await?,
            ))
        })
    }
}

/// One session with the worker.
pub struct Session {
    pub tx: mpsc::Sender<CoreMessage>,
    pub inbound: Streaming<WorkerMessage>,
    pub logs: Vec<LogRecord>,
    pub controls: Vec<Control>,
    next_id: AtomicU64,
}

impl Session {
    pub async fn send(&self, kind: core_message::Kind) {
        self.tx
            .send(CoreMessage { kind: Some(kind) })
            .await
            .expect("session open");
    }

    /// The next message that is not a log record (logs are collected).
    pub async fn next(&mut self) -> worker_message::Kind {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.inbound.message())
                .await
                .expect("a worker message in time")
                .expect("stream ok")
                .expect("stream open");
            match message.kind.expect("message kind") {
                worker_message::Kind::Log(log) => self.logs.push(log),
                other => return other,
            }
        }
    }

    pub async fn hello(&mut self, deferred: &[(&str, &str)]) -> Ready {
        self.send(core_message::Kind::Hello(Hello {
            protocol_version: ProtocolVersion::ProtocolVersion1 as i32,
            core_options: Vec::new(),
            deferred: deferred
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }))
        .await;
        match self.next().await {
            worker_message::Kind::Ready(ready) => ready,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    /// Sends a hook call and returns its call id.
    pub async fn send_call(&self, hook: Hook, flow: Flow, deadline_ms: u32) -> u64 {
        let call_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(core_message::Kind::HookCall(HookCall {
            call_id,
            hook: hook as i32,
            flow: Some(flow),
            deadline_ms,
            observe_only: false,
            chunked_bodies: Vec::new(),
        }))
        .await;
        call_id
    }

    /// The next hook reply (controls are collected).
    pub async fn reply(&mut self) -> HookReply {
        loop {
            match self.next().await {
                worker_message::Kind::HookReply(reply) => return reply,
                worker_message::Kind::Control(control) => self.controls.push(control),
                other => panic!("expected a HookReply, got {other:?}"),
            }
        }
    }

    /// One hook call and its reply.
    pub async fn call(&mut self, hook: Hook, flow: Flow) -> HookReply {
        let call_id = self.send_call(hook, flow, 0).await;
        let reply = self.reply().await;
        assert_eq!(reply.call_id, call_id);
        reply
    }

    /// The next control message.
    pub async fn control(&mut self) -> Control {
        if !self.controls.is_empty() {
            return self.controls.remove(0);
        }
        match self.next().await {
            worker_message::Kind::Control(control) => control,
            other => panic!("expected a Control, got {other:?}"),
        }
    }

    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

static IDS: AtomicU64 = AtomicU64::new(1);

pub fn new_id() -> String {
    let n = IDS.fetch_add(1, Ordering::Relaxed);
    format!(
        "00000000-0000-4000-8000-{:012x}",
        n + u64::from(std::process::id()) * 1_000_000
    )
}

pub fn header(name: &str, value: &str) -> Header {
    Header {
        name: Bytes::copy_from_slice(name.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

pub fn connection(peer: Option<(&str, u32)>) -> Connection {
    Connection {
        id: new_id(),
        peername: peer.map(|(host, port)| Address {
            host: host.into(),
            port,
        }),
        transport_protocol: "tcp".into(),
        proxy_mode: "regular".into(),
        timestamp_start: Some(1_795_238_398.0),
        ..Connection::default()
    }
}

/// A live HTTP flow with a GET request for `path` on example.com.
pub fn http_flow(path: &str) -> Flow {
    Flow {
        id: new_id(),
        r#type: "http".into(),
        live: true,
        timestamp_created: 1_795_238_398.5,
        client_conn: Some(connection(Some(("127.0.0.1", 50000)))),
        server_conn: Some(Connection {
            address: Some(Address {
                host: "example.com".into(),
                port: 80,
            }),
            ..connection(None)
        }),
        request: Some(Request {
            http_version: Bytes::from_static(b"HTTP/1.1"),
            headers: vec![header("Host", "example.com"), header("Accept", "*/*")],
            content: Some(Bytes::new()),
            timestamp_start: 1_795_238_398.5,
            timestamp_end: Some(1_795_238_398.6),
            host: "example.com".into(),
            port: 80,
            method: Bytes::from_static(b"GET"),
            scheme: Bytes::from_static(b"http"),
            authority: Bytes::new(),
            path: Bytes::copy_from_slice(path.as_bytes()),
            ..Request::default()
        }),
        ..Flow::default()
    }
}

/// `flow` with a 200 response carrying `body`.
pub fn with_response(mut flow: Flow, body: &str) -> Flow {
    flow.response = Some(Response {
        http_version: Bytes::from_static(b"HTTP/1.1"),
        headers: vec![header("Content-Type", "text/plain")],
        content: Some(Bytes::copy_from_slice(body.as_bytes())),
        timestamp_start: 1_795_238_399.0,
        timestamp_end: Some(1_795_238_399.1),
        status_code: 200,
        reason: Bytes::from_static(b"OK"),
        ..Response::default()
    });
    flow
}

pub fn header_value(headers: &[Header], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}
