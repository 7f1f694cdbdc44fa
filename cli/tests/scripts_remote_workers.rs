//! Script workers started by hand as separate processes (`flowtap script-host --listen
//! 127.0.0.1:0`), the proxy connected to them with `--script-host ADDR` (repeatable): the
//! workers as a pool. Flows spread over the workers and stay with their client connection's
//! worker; a killed worker's share moves to the others without a failed request, and a worker
//! restarted on its port takes traffic again within 2 s; a proxy whose worker is down starts
//! anyway, applies the failure policy (counted in a line that `-q` shows) and joins the worker
//! when it comes up.

#![allow(missing_docs)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::origin::Origin;
use support::scripts::{
    TempScript, curl_parallel, curl_via, echo_origin, header_value, poll, sigkill, status_of,
};
use support::worker::Worker;
use support::{Curl, Flowtap, free_port, wait_for_port};

/// Tags each request with the pid of the worker that ran the hook and the id of its client
/// connection.
const TAGGER: &str = r#"
import os

def request(flow):
    flow.request.headers["x-worker-pid"] = str(os.getpid())
    flow.request.headers["x-client-conn"] = flow.client_conn.id
"#;

#[test]
fn proxy_uses_two_workers_started_by_hand() {
    let script = TempScript::new("tagger.py", TAGGER);
    let workers = [Worker::start(&script), Worker::start(&script)];
    let pids: BTreeSet<String> = workers.iter().map(|w| w.child.id().to_string()).collect();
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[
        "--script-host",
        &workers[0].addr.to_string(),
        "--script-host",
        &workers[1].addr.to_string(),
    ]);
    // flowtap started no worker of its own.
    assert!(support::scripts::children_of(flowtap.pid()).is_empty());

    let (outs, _) = curl_parallel(proxy, 20, |i| {
        format!("http://127.0.0.1:{}/{i}", origin.port())
    });
    let mut seen = BTreeSet::new();
    for out in &outs {
        assert_eq!(out.code, 0, "{out:?}");
        let pid = header_value(&out.stdout, "x-worker-pid")
            .unwrap_or_else(|| panic!("the script did not run: {out:?}"));
        assert!(pids.contains(&pid), "pid {pid} is not one of {pids:?}");
        seen.insert(pid);
    }
    assert_eq!(seen, pids, "20 flows did not use both workers");
    flowtap.stop();
}

/// The worker pid and client connection id an echoed request carries (None: no script ran).
fn served_by(out: &Curl) -> Option<(String, String)> {
    Some((
        header_value(&out.stdout, "x-worker-pid")?,
        header_value(&out.stdout, "x-client-conn")?,
    ))
}

/// One request through `proxy` on a new connection; it must succeed with status 200.
fn request(proxy: SocketAddr, origin: &Origin, path: &str) -> Curl {
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/{path}", origin.port()),
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(status_of(&out), 200, "{out:?}");
    out
}

#[test]
fn a_client_connection_stays_on_one_worker_and_connections_spread() {
    let script = TempScript::new("tagger.py", TAGGER);
    let workers = [Worker::start(&script), Worker::start(&script)];
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[
        "--script-host",
        &workers[0].addr.to_string(),
        "--script-host",
        &workers[1].addr.to_string(),
    ]);
    // 16 connections at once, each with 4 requests (curl keeps the connection for them).
    let proxy_url = format!("http://{proxy}");
    let children: Vec<Child> = (0..16)
        .map(|c| {
            let urls: Vec<String> = (0..4)
                .map(|r| format!("http://127.0.0.1:{}/{c}/{r}", origin.port()))
                .collect();
            support::curl_command(
                &[
                    &["-x", &proxy_url, "-i"][..],
                    &urls.iter().map(String::as_str).collect::<Vec<_>>(),
                ]
                .concat(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start curl")
        })
        .collect();
    let mut workers_of_connection: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for child in children {
        let output = child.wait_with_output().expect("curl");
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        // The four echoed requests, each with its own tags.
        let pids: Vec<&str> = text
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("x-worker-pid:"))
            .collect();
        let conns: Vec<&str> = text
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("x-client-conn:"))
            .collect();
        assert_eq!((pids.len(), conns.len()), (4, 4), "{text}");
        for (pid, conn) in pids.iter().zip(&conns) {
            let value = |line: &str| {
                line.split_once(':')
                    .map(|(_, v)| v.trim().to_string())
                    .unwrap_or_default()
            };
            workers_of_connection
                .entry(value(conn))
                .or_default()
                .insert(value(pid));
        }
    }
    for (conn, pids) in &workers_of_connection {
        assert_eq!(
            pids.len(),
            1,
            "connection {conn} was served by workers {pids:?}"
        );
    }
    let used: BTreeSet<String> = workers_of_connection.values().flatten().cloned().collect();
    let all: BTreeSet<String> = workers.iter().map(Worker::pid).collect();
    assert_eq!(used, all, "16 connections did not use both workers");
    flowtap.stop();
}

#[test]
fn a_killed_worker_s_flows_move_and_its_restart_takes_traffic_within_2s() {
    let script = TempScript::new("tagger.py", TAGGER);
    let mut first = Worker::start(&script);
    let second = Worker::start(&script);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[
        "--script-host",
        &first.addr.to_string(),
        "--script-host",
        &second.addr.to_string(),
    ]);
    poll("a flow served by the first worker", || {
        let out = request(proxy, &origin, "before");
        (served_by(&out)?.0 == first.pid()).then_some(())
    });

    sigkill(first.child.id());
    let _ = first.child.wait();
    // Every request succeeds; once the proxy saw the session end, every flow runs the script
    // on the second worker.
    poll("a flow served by the second worker after the kill", || {
        let out = request(proxy, &origin, "after");
        (served_by(&out)?.0 == second.pid()).then_some(())
    });
    for i in 0..20 {
        let out = request(proxy, &origin, &format!("survivor/{i}"));
        let served = served_by(&out).unwrap_or_else(|| panic!("no script ran: {out:?}"));
        assert_eq!(served.0, second.pid(), "{out:?}");
    }

    // The first worker comes back on its port: new connections reach it again within 2 s.
    let restarted = Worker::start_on(&script, &first.addr.to_string());
    let back = Instant::now();
    poll("a flow served by the restarted worker", || {
        let out = request(proxy, &origin, "back");
        let served = served_by(&out).unwrap_or_else(|| panic!("no script ran: {out:?}"));
        (served.0 == restarted.pid()).then_some(())
    });
    let took = back.elapsed();
    eprintln!("the restarted worker took traffic after {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "the restarted worker took {took:?}"
    );
    flowtap.stop();
}

/// A proxy started with `-q` while its only worker is down; waits until it serves.
fn start_without_worker(policy: &str, worker: SocketAddr) -> (Flowtap, SocketAddr) {
    let port = free_port();
    let flowtap = Flowtap::spawn(&[
        "-q",
        "-p",
        &port.to_string(),
        "--script-host",
        &worker.to_string(),
        "--set",
        &format!("script_failure={policy}"),
    ]);
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    wait_for_port(proxy);
    (flowtap, proxy)
}

#[test]
fn with_its_worker_down_the_proxy_fails_open_counting_flows_then_joins_it() {
    let script = TempScript::new("tagger.py", TAGGER);
    let worker_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let origin = echo_origin();
    let (flowtap, proxy) = start_without_worker("open", worker_addr);
    for i in 0..3 {
        let out = request(proxy, &origin, &format!("unscripted/{i}"));
        assert!(served_by(&out).is_none(), "a script ran: {out:?}");
    }
    // Visible with -q: the count of flows that went on without their scripts.
    let line = flowtap
        .stderr
        .wait_for("counting the flows without scripts", |l| {
            l.contains("passed without their scripts")
        });
    assert!(line.contains("1 flow passed"), "{line}");

    let worker = Worker::start_on(&script, &worker_addr.to_string());
    poll("a flow served by the worker once it is up", || {
        let out = request(proxy, &origin, "joined");
        (served_by(&out)?.0 == worker.pid()).then_some(())
    });
    // The flows not reported yet (the other two, and any sent while the worker started) are
    // counted when the worker joins.
    let line = flowtap.stderr.wait_for("the rest of the count", |l| {
        l.contains("flows passed without their scripts")
    });
    let count: u32 = line
        .split(" flows passed")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert!(count >= 2, "{line}");
    assert!(line.contains("ERROR"), "{line}");
    flowtap.stop();
}

#[test]
fn with_its_worker_down_the_proxy_fails_closed_then_joins_it() {
    let script = TempScript::new("tagger.py", TAGGER);
    let worker_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let origin = echo_origin();
    let (flowtap, proxy) = start_without_worker("closed", worker_addr);
    let url = format!("http://127.0.0.1:{}/closed", origin.port());
    let out = curl_via(proxy, &url, &[]);
    assert_eq!(status_of(&out), 502, "{out:?}");
    assert!(out.stdout.contains("script host is unreachable"), "{out:?}");

    let worker = Worker::start_on(&script, &worker_addr.to_string());
    poll("a flow served by the worker once it is up", || {
        let out = curl_via(proxy, &url, &[]);
        (status_of(&out) == 200 && served_by(&out)?.0 == worker.pid()).then_some(())
    });
    flowtap.stop();
}
