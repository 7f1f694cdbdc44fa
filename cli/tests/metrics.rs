//! What an operator scrapes and probes, from the real `flowtap` binary started with
//! `--metrics 127.0.0.1:0`: `/metrics` parses as Prometheus text and its counters move with
//! real curl requests through the proxy; `/healthz` and `/readyz` answer; a script worker
//! (`flowtap script-host --metrics`) is ready once it takes sessions and counts them; with
//! `--log-format json` every stderr line of the proxy and its worker is a JSON object.

#![allow(missing_docs)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Instant;

use flowtap_telemetry::testing::{Scrape, get, listening_address, parse_text};
use support::origin::Origin;
use support::scripts::{TempScript, curl_via, fixed_response, status_of};
use support::{Flowtap, Lines, WAIT, binary, free_port};

/// The metrics address announced on stderr.
fn metrics_address(lines: &Lines) -> SocketAddr {
    // A line read while waiting for another one is only in `all`.
    if let Some(address) = lines.all().iter().find_map(|l| listening_address(l)) {
        return address;
    }
    let line = lines.wait_for("announcing the metrics address", |l| {
        listening_address(l).is_some()
    });
    listening_address(&line).expect("checked above")
}

fn scrape(address: SocketAddr) -> Scrape {
    let answer = get(address, "/metrics").expect("GET /metrics");
    assert_eq!(answer.status, 200);
    parse_text(&answer.body).unwrap_or_else(|e| panic!("{e}\n{}", answer.body))
}

/// Scrapes until `done` holds for the scrape; panics with the last one after [`WAIT`].
fn scrape_until(address: SocketAddr, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let scrape = scrape(address);
        if done(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "no scrape with {what} within {WAIT:?}; last: {:?}",
            scrape.samples
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn status(address: SocketAddr, path: &str) -> u16 {
    get(address, path)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .status
}

fn wait_ready(address: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while status(address, "/readyz") != 200 {
        assert!(Instant::now() < deadline, "/readyz never answered 200");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn counters_move_with_requests_through_the_proxy() {
    let ok = Origin::fixed(fixed_response("text/plain", "ok"));
    let unavailable =
        Origin::fixed(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    let (flowtap, proxy) = Flowtap::start(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_address(&flowtap.stderr);
    assert_eq!(status(metrics, "/healthz"), 200);
    wait_ready(metrics);
    assert_eq!(status(metrics, "/nothing"), 404);

    let before = scrape(metrics);
    assert_eq!(
        before.value("flowtap_client_connections_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        before.value("flowtap_responses_total", &[("class", "2xx")]),
        Some(0.0)
    );

    for _ in 0..3 {
        let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", ok.port()), &[]).ok();
        assert_eq!(status_of(&out), 200);
    }
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/", unavailable.port()),
        &[],
    )
    .ok();
    assert_eq!(status_of(&out), 503);
    // Nothing listens there: the proxy answers 502 itself.
    let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", free_port()), &[]).ok();
    assert_eq!(status_of(&out), 502);

    let after = scrape_until(metrics, "5 connections, all closed", |s| {
        s.value("flowtap_client_connections_total", &[]) == Some(5.0)
            && s.value("flowtap_client_connections_open", &[]) == Some(0.0)
    });
    assert_eq!(
        after.value("flowtap_responses_total", &[("class", "2xx")]),
        Some(3.0)
    );
    assert_eq!(
        after.value("flowtap_responses_total", &[("class", "5xx")]),
        Some(2.0)
    );
    assert_eq!(
        after
            .types
            .get("flowtap_responses_total")
            .map(String::as_str),
        Some("counter")
    );
    let (exit, _) = flowtap.stop();
    assert!(exit.success());
}

/// A child process killed when dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker started by hand (`flowtap script-host`), with its metrics; returns it, its stderr
/// and the address it takes sessions on.
fn start_worker(script: &TempScript, extra: &[&str]) -> (ChildGuard, Lines, String) {
    let mut child = Command::new(binary())
        .args(["script-host", "-s", script.arg(), "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("FLOWTAP_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flowtap script-host");
    let stderr = Lines::collect(child.stderr.take().expect("piped"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the worker's listen line");
    let address = line
        .trim()
        .strip_prefix("script-host listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (ChildGuard(child), stderr, address)
}

#[test]
fn a_worker_is_ready_once_it_takes_sessions_and_counts_them() {
    let script = TempScript::new(
        "mark.py",
        "def response(flow):\n    flow.response.headers['x-marked'] = '1'\n",
    );
    let (_worker, stderr, address) = start_worker(&script, &["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_address(&stderr);
    assert_eq!(status(metrics, "/healthz"), 200);
    assert_eq!(status(metrics, "/readyz"), 200, "ready once it listens");
    assert_eq!(
        scrape(metrics).value("flowtap_worker_sessions_open", &[]),
        Some(0.0)
    );

    let ok = Origin::fixed(fixed_response("text/plain", "ok"));
    let (flowtap, proxy) = Flowtap::start(&["--script-host", &address, "--metrics", "127.0.0.1:0"]);
    let proxy_metrics = metrics_address(&flowtap.stderr);
    scrape_until(metrics, "one session open", |s| {
        s.value("flowtap_worker_sessions_open", &[]) == Some(1.0)
    });
    scrape_until(proxy_metrics, "the proxy's session up", |s| {
        s.value("flowtap_script_sessions_up", &[]) == Some(1.0)
    });
    let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", ok.port()), &[]).ok();
    assert!(out.stdout.contains("x-marked: 1"), "{}", out.stdout);
    // The proxy's script client counts the hook call and its latency.
    let after = scrape_until(proxy_metrics, "one response hook call", |s| {
        s.value(
            "flowtap_hook_calls_total",
            &[("hook", "response"), ("outcome", "ok")],
        ) == Some(1.0)
    });
    assert_eq!(
        after.value(
            "flowtap_hook_duration_seconds_count",
            &[("hook", "response")]
        ),
        Some(1.0)
    );
    drop(flowtap);
}

#[test]
fn json_logs_from_the_proxy_and_its_worker_are_one_object_per_line() {
    let script = TempScript::new(
        "say.py",
        "import logging\n\ndef request(flow):\n    logging.info('saw %s', flow.request.path)\n",
    );
    let ok = Origin::fixed(fixed_response("text/plain", "ok"));
    let flowtap = Flowtap::spawn(&[
        "-p",
        "0",
        "-v",
        "--log-format",
        "json",
        "--metrics",
        "127.0.0.1:0",
        "-s",
        script.arg(),
    ]);
    let line = flowtap
        .stderr
        .wait_for("saying where the proxy listens", |l| {
            l.contains("listening at ")
        });
    let proxy: SocketAddr = line
        .split("listening at ")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    metrics_address(&flowtap.stderr);
    curl_via(proxy, &format!("http://127.0.0.1:{}/json", ok.port()), &[]).ok();
    flowtap
        .stderr
        .wait_for("with the script's log", |l| l.contains("saw /json"));
    let mut flowtap = flowtap;
    flowtap.terminate();
    assert!(flowtap.wait_exit(WAIT).success());
    flowtap
        .stderr
        .wait_for("saying it shuts down", |l| l.contains("shutting down"));
    let stderr = flowtap.stderr.all();
    assert!(stderr.len() >= 4, "{stderr:?}");
    for line in &stderr {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        assert!(
            value.get("message").is_some_and(|m| m.is_string()),
            "{line:?} has no message"
        );
    }
}
