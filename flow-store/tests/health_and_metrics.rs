//! flow-store as an operator's tools see it: the real binary with `--metrics 127.0.0.1:0`, on a
//! private PostgreSQL server that the test stops and starts again. Python's standard gRPC health
//! client (grpcio-health-checking, installed by `scripts/install-grpc-health`) sees SERVING,
//! NOT_SERVING within seconds of PostgreSQL going away, and SERVING once it is back; `/readyz`
//! follows; `/metrics` parses as Prometheus text and counts the flows a real `StoreSink`
//! appends, and the sink's spool fills while the database is down and empties once it is back.
//! With `--log-format json` every stderr line is a JSON object with a message.

#![allow(missing_docs)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use flowtap_flow_store::{SinkConfig, StoreSink};
use flowtap_telemetry::testing::{Scrape, get, listening_address, parse_text};

const WAIT: Duration = Duration::from_secs(30);

/// How soon a change of the database's state must show in the health status: the check runs
/// every 2 s and gives up after 1.5 s.
const HEALTH_LAG: Duration = Duration::from_secs(10);

/// A private PostgreSQL server (scripts/pg-test-server) that this test may stop and start.
struct Postgres {
    url: String,
    port: u16,
    dir: PathBuf,
}

impl Postgres {
    fn start() -> Postgres {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-test-server");
        let output = Command::new(script)
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/pg-test-server");
        assert!(output.status.success(), "scripts/pg-test-server failed");
        let url = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        // The script records the server's directory under this name.
        let state_dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
        let record = Path::new(&state_dir).join(format!("flowtap-pg-test-{port}"));
        let dir = std::fs::read_to_string(&record).expect("the server's record");
        Postgres {
            url,
            port,
            dir: PathBuf::from(dir.trim()),
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl";
        let data = self.dir.join("data");
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", pg_ctl]);
            c
        } else {
            Command::new(pg_ctl)
        };
        let status = command
            .args(["-D", data.to_str().unwrap(), "-w", "-t", "30"])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("running pg_ctl");
        assert!(status.success(), "pg_ctl {args:?} failed");
    }

    fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }

    /// Starts the server again, on the same port and data, as scripts/pg-test-server does.
    fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.pg_ctl(&["-l", log.to_str().unwrap(), "start", "-o", &options]);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A `flow-store` process with its stderr lines collected.
struct FlowStore {
    child: Child,
    grpc: String,
    metrics: SocketAddr,
    stderr: Receiver<String>,
}

impl FlowStore {
    fn start(store: &str, extra: &[&str]) -> FlowStore {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flow-store"))
            .args(["--listen", "127.0.0.1:0", "--store", store])
            .args(["--metrics", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting flow-store");
        let (tx, stderr) = channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the listen line");
        let grpc = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let mut seen = Vec::new();
        let metrics = loop {
            let line = stderr
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no metrics address on stderr; got {seen:?}"));
            if let Some(address) = listening_address(&line) {
                seen.push(line);
                break address;
            }
            seen.push(line);
        };
        FlowStore {
            child,
            grpc,
            metrics,
            stderr,
        }
    }

    fn scrape(&self) -> Scrape {
        let answer = get(self.metrics, "/metrics").expect("GET /metrics");
        assert_eq!(answer.status, 200);
        let content_type = answer
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            content_type,
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        parse_text(&answer.body).unwrap_or_else(|e| panic!("{e}\n{}", answer.body))
    }

    fn status(&self, path: &str) -> u16 {
        get(self.metrics, path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .status
    }
}

impl Drop for FlowStore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Python's grpc.health.v1 client, asked one service per line.
struct HealthClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// `tests/support/health_check.py ARGS` in the grpcio-health-checking venv (installed if need be).
fn health_check_py(args: &[&str]) -> Command {
    let install = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/install-grpc-health"
    );
    let output = Command::new(install)
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/install-grpc-health");
    assert!(
        output.status.success(),
        "scripts/install-grpc-health failed"
    );
    let venv = String::from_utf8(output.stdout).unwrap();
    let venv = venv.lines().last().expect("the venv path").trim();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/health_check.py");
    let mut command = Command::new(Path::new(venv).join("bin/python"));
    command.arg(script).args(args);
    command
}

impl HealthClient {
    fn start(address: &str) -> HealthClient {
        let mut child = health_check_py(&[address])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the Python health client");
        HealthClient {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    fn check(&mut self, service: &str) -> String {
        writeln!(self.stdin, "{service}").expect("asking the health client");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("its answer");
        line.trim().to_owned()
    }

    /// Asks until both the server and the FlowStore service report `status`; returns how long
    /// that took. Panics after `limit`.
    fn wait_for(&mut self, status: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let server = self.check("");
            let service = self.check("flowtap.v1.FlowStore");
            if server == status && service == status {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "health did not become {status} within {limit:?} (server {server}, service {service})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for HealthClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real StoreSink in this process, as the proxy runs it, with its own runtime and spool.
struct Sink {
    runtime: tokio::runtime::Runtime,
    sink: Option<StoreSink>,
    _spool: tempfile::TempDir,
}

impl Sink {
    fn start(grpc: &str) -> Sink {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let spool = tempfile::tempdir().unwrap();
        let config = SinkConfig {
            retry_interval: Duration::from_millis(200),
            ..SinkConfig::new(format!("http://{grpc}"), spool.path())
        };
        let sink = runtime.block_on(async { StoreSink::start(config).expect("starting the sink") });
        Sink {
            runtime,
            sink: Some(sink),
            _spool: spool,
        }
    }

    fn push(&self, ids: &[&str]) {
        let sink = self.sink.as_ref().expect("open until dropped");
        for id in ids {
            sink.push(support::http_flow(id, "example.com", "/", 200))
                .expect("pushing a flow");
        }
    }

    /// Waits until every flow pushed is confirmed stored.
    fn flush(&self) {
        let sink = self.sink.as_ref().expect("open until dropped");
        self.runtime.block_on(async {
            tokio::time::timeout(WAIT, sink.flush())
                .await
                .expect("the flows reach the store");
        });
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            self.runtime.block_on(sink.close());
        }
    }
}

/// This process's own metrics (the sink's).
fn ours() -> Scrape {
    parse_text(&flowtap_telemetry::encode_text()).expect("our own metrics parse")
}

fn counter(scrape: &Scrape, name: &str) -> f64 {
    scrape
        .value(name, &[])
        .unwrap_or_else(|| panic!("no {name} in the scrape"))
}

#[test]
fn health_follows_the_database_and_metrics_count_stored_flows() {
    let postgres = Postgres::start();
    let store = FlowStore::start(&postgres.url, &[]);
    assert_eq!(store.status("/healthz"), 200);
    let mut health = HealthClient::start(&store.grpc);
    health.wait_for("SERVING", WAIT);
    assert_eq!(store.status("/readyz"), 200);
    assert_eq!(health.check("no.such.Service"), "ERROR NOT_FOUND");

    let before = store.scrape();
    assert_eq!(counter(&before, "flowtap_store_flows_stored_total"), 0.0);
    let sink = Sink::start(&store.grpc);
    sink.push(&["a", "b", "c"]);
    sink.flush();
    let after = store.scrape();
    assert_eq!(counter(&after, "flowtap_store_flows_stored_total"), 3.0);
    assert!(counter(&after, "flowtap_store_append_duration_seconds_count") >= 1.0);
    assert_eq!(counter(&ours(), "flowtap_sink_flows_sent_total"), 3.0);
    assert_eq!(counter(&ours(), "flowtap_sink_flows_spooled_total"), 0.0);

    postgres.stop();
    let lag = health.wait_for("NOT_SERVING", HEALTH_LAG);
    eprintln!("NOT_SERVING {lag:?} after PostgreSQL stopped");
    assert_eq!(store.status("/readyz"), 503);
    assert_eq!(store.status("/healthz"), 200, "the process still runs");

    // The store refuses the flow while its database is down: the sink spools it.
    sink.push(&["d"]);
    let deadline = Instant::now() + WAIT;
    while counter(&ours(), "flowtap_sink_spool_size_bytes") == 0.0 {
        assert!(Instant::now() < deadline, "the flow was never spooled");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(counter(&ours(), "flowtap_sink_flows_spooled_total") >= 1.0);

    postgres.start_again();
    let lag = health.wait_for("SERVING", HEALTH_LAG);
    eprintln!("SERVING {lag:?} after PostgreSQL started again");
    assert_eq!(store.status("/readyz"), 200);
    sink.flush();
    assert_eq!(counter(&ours(), "flowtap_sink_flows_sent_total"), 4.0);
    assert_eq!(counter(&ours(), "flowtap_sink_spool_size_bytes"), 0.0);
    assert_eq!(
        counter(&store.scrape(), "flowtap_store_flows_stored_total"),
        4.0
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("flows.db").display());
    let mut store = FlowStore::start(&db, &["--log-format", "json"]);
    // The sink's counters live in this process: only the other test may move them.
    wait_ready(&store);
    let status = Command::new("kill")
        .args(["-TERM", &store.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    while store.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "flow-store did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The reader thread ends at the end of the pipe, which the process's exit brings.
    let mut lines = Vec::new();
    while let Ok(line) = store.stderr.recv_timeout(WAIT) {
        lines.push(line);
    }
    assert!(
        lines.iter().any(|l| l.contains("SERVING")),
        "the health change is logged: {lines:?}"
    );
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        assert!(
            value.get("message").is_some_and(|m| m.is_string()),
            "{line:?} has no message"
        );
    }
}

fn wait_ready(store: &FlowStore) {
    let deadline = Instant::now() + WAIT;
    while store.status("/readyz") != 200 {
        assert!(Instant::now() < deadline, "flow-store never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shutdown_reports_not_serving_to_watchers_and_ends_their_streams() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("flows.db").display());
    let mut store = FlowStore::start(&db, &[]);
    wait_ready(&store);
    let mut watcher = health_check_py(&[&store.grpc, "--watch"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the Python health watcher");
    let (tx, statuses) = channel();
    let pipe = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert_eq!(statuses.recv_timeout(WAIT).unwrap(), "SERVING");

    let status = Command::new("kill")
        .args(["-TERM", &store.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(statuses.recv_timeout(WAIT).unwrap(), "NOT_SERVING");
    let end = statuses.recv_timeout(WAIT).unwrap();
    assert!(end.starts_with("END"), "the Watch stream ends: {end:?}");
    let deadline = Instant::now() + WAIT;
    while store.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "flow-store did not stop with a health watcher connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
}
