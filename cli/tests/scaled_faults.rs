//! The scaled layout, as separate processes on one machine, proven under faults (issue 9):
//! two proxies; three script workers behind one host name that resolves to 127.0.0.11-13
//! (each proxy runs in a private mount namespace with its own /etc/hosts, as a Kubernetes
//! headless Service resolves to its pods); two flow-stores on one PostgreSQL; mutual TLS
//! between every client and server.
//!
//! Steady traffic goes through both proxies while the test SIGKILLs a worker, rolls a proxy
//! (SIGTERM, start again), restarts the killed worker, restarts a flow-store and restarts
//! PostgreSQL. It asserts that no request fails except those in flight on the killed worker,
//! that every response served carries the script's change, that the restarted worker takes
//! traffic again within 2 s, that every flow is archived exactly once, and that a client
//! without a valid certificate is refused by every service.
//!
//! Needs root (for the mount namespace), as CI runs; scripts/test installs PostgreSQL.

#![allow(missing_docs)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::flow_store_binary;
use support::origin::Origin;
use support::scaled::{Pki, Postgres, Service, address_after, port_free_on};
use support::scripts::TempScript;
use support::{binary, curl};

const WORKER_NAME: &str = "workers.flowtap.test";
const WORKER_IPS: [&str; 3] = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
const CLIENTS: usize = 4;

/// Names the worker that ran the `response` hook.
const TAGGER: &str = r#"
import os

NAME = os.environ["FLOWTAP_TEST_WORKER"]

def response(flow):
    flow.response.headers["x-worker"] = NAME
"#;

/// What one request through a proxy gave.
#[derive(Clone, Debug)]
struct Outcome {
    id: usize,
    proxy: usize,
    started: Instant,
    ended: Instant,
    /// The status and the `x-worker` header, or why no response came.
    result: Result<(u16, Option<String>), String>,
}

/// Steady traffic: `CLIENTS` threads sending one request per new connection through the
/// proxies in rotation, each to its own path `/req/ID`.
struct Traffic {
    rotation: Arc<Mutex<Vec<(usize, SocketAddr)>>>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(proxies: Vec<(usize, SocketAddr)>, origin: SocketAddr) -> Traffic {
        let rotation = Arc::new(Mutex::new(proxies));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicUsize::new(0));
        let threads = (0..CLIENTS)
            .map(|_| {
                let (rotation, outcomes, stop, next) = (
                    rotation.clone(),
                    outcomes.clone(),
                    stop.clone(),
                    next.clone(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        let (proxy, addr) = {
                            let rotation = rotation.lock().expect("rotation");
                            rotation[id % rotation.len()]
                        };
                        let started = Instant::now();
                        let result = request(addr, origin, id);
                        let outcome = Outcome {
                            id,
                            proxy,
                            started,
                            ended: Instant::now(),
                            result,
                        };
                        outcomes.lock().expect("outcomes").push(outcome);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Traffic {
            rotation,
            outcomes,
            stop,
            threads,
        }
    }

    fn set_rotation(&self, proxies: Vec<(usize, SocketAddr)>) {
        *self.rotation.lock().expect("rotation") = proxies;
    }

    fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().expect("outcomes").clone()
    }

    /// Waits (bounded) until no request that started before now is still under way.
    fn settle(&self) {
        let now = Instant::now();
        let seen = self.outcomes().len();
        let deadline = now + Duration::from_secs(30);
        while Instant::now() < deadline {
            let outcomes = self.outcomes();
            if outcomes.len() >= seen + CLIENTS && outcomes[seen..].iter().all(|o| o.started > now)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("traffic thread");
        }
        self.outcomes.lock().expect("outcomes").clone()
    }
}

/// One `GET http://ORIGIN/req/ID` through `proxy` on a new connection.
fn request(
    proxy: SocketAddr,
    origin: SocketAddr,
    id: usize,
) -> Result<(u16, Option<String>), String> {
    let mut stream = TcpStream::connect_timeout(&proxy, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "GET http://{origin}/req/{id} HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    Ok((status, support::scripts::header_value(&text, "x-worker")))
}

/// The parts of the layout and how to start each again.
struct Layout {
    pki: Pki,
    script: TempScript,
    worker_port: u16,
    hosts: tempfile::NamedTempFile,
    pg: Postgres,
}

impl Layout {
    fn worker(&self, index: usize) -> Service {
        let name = format!("w{}", index + 1);
        let listen = format!("{}:{}", WORKER_IPS[index], self.worker_port);
        let mut command = Command::new(binary());
        command
            .args(["script-host", "-s", self.script.arg(), "--listen", &listen])
            .args(self.pki.server_args())
            .env("FLOWTAP_TEST_WORKER", &name);
        let worker = Service::spawn(&name, command);
        worker.wait_for_line("script-host listening on ");
        worker
    }

    fn store(&self, name: &str, listen: &str) -> (Service, SocketAddr) {
        let mut command = Command::new(flow_store_binary());
        command
            .args(["--listen", listen, "--store", &self.pg.url])
            .args(self.pki.server_args());
        let store = Service::spawn(name, command);
        let line = store.wait_for_line("listening on ");
        let addr = address_after(&line, "listening on ");
        (store, addr)
    }

    /// A proxy in a private mount namespace whose /etc/hosts resolves the worker name to the
    /// three worker addresses.
    fn proxy(
        &self,
        name: &str,
        port: u16,
        store: SocketAddr,
        confdir: &std::path::Path,
    ) -> (Service, SocketAddr) {
        let mut command = Command::new("unshare");
        command
            .args(["-m", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
            .arg(self.hosts.path())
            .arg(binary())
            .args(["-p", &port.to_string(), "--flow-detail", "0"])
            .args(["--set", &format!("confdir={}", confdir.display())])
            .args(["--set", "script_failure=closed", "--set", "hook_timeout=5"])
            .args([
                "--script-host",
                &format!("{WORKER_NAME}:{}", self.worker_port),
                "--store-addr",
                &format!("https://{store}"),
            ])
            .args(self.pki.client_args());
        let proxy = Service::spawn(name, command);
        let line = proxy.wait_for_line("listening at ");
        let addr = address_after(&line, "listening at ");
        (proxy, addr)
    }

    /// The request ids archived, with how often each is there (`flowtap flows list` against
    /// `store`).
    fn archived(&self, store: SocketAddr) -> BTreeMap<usize, usize> {
        let output = Command::new(binary())
            .args(["flows", "--store-addr", &format!("https://{store}")])
            .args(self.pki.client_args())
            .args(["list", "~u /req/"])
            .output()
            .expect("run flowtap flows list");
        assert!(
            output.status.success(),
            "flowtap flows list failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut counts = BTreeMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let id = line
                .split_whitespace()
                .find_map(|word| word.rsplit_once("/req/").map(|(_, id)| id.to_string()))
                .and_then(|id| id.parse::<usize>().ok());
            if let Some(id) = id {
                *counts.entry(id).or_insert(0) += 1;
            }
        }
        counts
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The first response served by `worker` that started after `since`, if any.
fn first_served_by(outcomes: &[Outcome], worker: &str, since: Instant) -> Option<Instant> {
    outcomes
        .iter()
        .filter(|o| o.started >= since)
        .filter(|o| matches!(&o.result, Ok((200, Some(w))) if w == worker))
        .map(|o| o.ended)
        .min()
}

#[test]
fn the_scaled_layout_survives_killed_and_restarted_services() {
    assert!(
        is_root(),
        "this test runs proxies in private mount namespaces (unshare -m): run it as root, as CI does"
    );
    // The workers' certificate names the host name only, as in Kubernetes, where pod IPs
    // change: the proxies check it for the name they resolved, not for the address.
    let pki = Pki::new(&[WORKER_NAME, "localhost", "127.0.0.1"]);
    let mut hosts = tempfile::NamedTempFile::new().expect("hosts file");
    let mut text = String::from("127.0.0.1 localhost\n");
    for ip in WORKER_IPS {
        text.push_str(&format!("{ip} {WORKER_NAME}\n"));
    }
    hosts
        .write_all(text.as_bytes())
        .expect("write the hosts file");
    let layout = Layout {
        pki,
        script: TempScript::new("tagger.py", TAGGER),
        worker_port: port_free_on(&WORKER_IPS),
        hosts,
        pg: Postgres::start(),
    };
    let origin = Origin::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");

    let mut workers: Vec<Service> = (0..3).map(|i| layout.worker(i)).collect();
    let (mut store_a, store_a_addr) = layout.store("store-a", "127.0.0.1:0");
    let (_store_b, store_b_addr) = layout.store("store-b", "127.0.0.1:0");
    let confdirs = [
        tempfile::tempdir().expect("confdir"),
        tempfile::tempdir().expect("confdir"),
    ];
    let (mut proxy_a, proxy_a_addr) = layout.proxy("proxy-a", 0, store_a_addr, confdirs[0].path());
    let (mut proxy_b, proxy_b_addr) = layout.proxy("proxy-b", 0, store_b_addr, confdirs[1].path());
    let both = vec![(0, proxy_a_addr), (1, proxy_b_addr)];
    let traffic = Traffic::start(both.clone(), origin.addr);

    // Both proxies spread flows over all three workers.
    let warm = Instant::now();
    for proxy in 0..2 {
        for worker in ["w1", "w2", "w3"] {
            support::scripts::poll(&format!("proxy {proxy} to use worker {worker}"), || {
                traffic
                    .outcomes()
                    .iter()
                    .any(|o| {
                        o.proxy == proxy && matches!(&o.result, Ok((200, Some(w))) if w == worker)
                    })
                    .then_some(())
            });
        }
    }
    eprintln!("all workers in use after {:?}", warm.elapsed());

    // A worker dies.
    std::thread::sleep(Duration::from_millis(500));
    let killed_at = Instant::now();
    workers[0].kill();
    std::thread::sleep(Duration::from_millis(1500));

    // A rolling update of proxy A: out of rotation, SIGTERM (in-flight requests finish),
    // started again on the same port with the same confdir (and spool), back in rotation.
    traffic.set_rotation(vec![(1, proxy_b_addr)]);
    let status = proxy_a.terminate();
    assert!(status.success(), "proxy A exited with {status} on SIGTERM");
    let (restarted, addr) = layout.proxy(
        "proxy-a",
        proxy_a_addr.port(),
        store_a_addr,
        confdirs[0].path(),
    );
    proxy_a = restarted;
    assert_eq!(addr, proxy_a_addr);
    traffic.set_rotation(both);

    // The killed worker comes back on its address: it takes traffic again within 2 s.
    workers[0] = layout.worker(0);
    let back_at = Instant::now();
    let served = support::scripts::poll("the restarted worker to take traffic", || {
        first_served_by(&traffic.outcomes(), "w1", back_at)
    });
    let rejoin = served.duration_since(back_at);
    eprintln!("the restarted worker served again after {rejoin:?}");
    assert!(
        rejoin <= Duration::from_secs(2),
        "the restarted worker took {rejoin:?} to take traffic again"
    );

    // A flow-store restarts; then PostgreSQL does.
    let status = store_a.terminate();
    assert!(
        status.success(),
        "flow-store exited with {status} on SIGTERM"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (restarted, _) = layout.store("store-a", &store_a_addr.to_string());
    store_a = restarted;
    std::thread::sleep(Duration::from_millis(500));
    layout.pg.pause();
    std::thread::sleep(Duration::from_secs(2));
    layout.pg.resume();
    std::thread::sleep(Duration::from_secs(1));
    traffic.settle();
    let outcomes = traffic.stop();

    // No request failed except those in flight on the killed worker; every response carries
    // the script's change.
    let grace = Duration::from_millis(500);
    let mut failed_in_flight = 0;
    for outcome in &outcomes {
        let in_flight_at_kill = outcome.started <= killed_at + grace && outcome.ended >= killed_at;
        match &outcome.result {
            Ok((200, Some(_))) => {}
            other if in_flight_at_kill => {
                failed_in_flight += 1;
                eprintln!(
                    "request {} in flight on the killed worker: {other:?}",
                    outcome.id
                );
            }
            other => panic!(
                "request {} through proxy {} failed outside a kill: {other:?} (started {:?} after the kill)",
                outcome.id,
                outcome.proxy,
                outcome.started.checked_duration_since(killed_at)
            ),
        }
    }
    let answered: BTreeSet<usize> = outcomes
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.id)
        .collect();
    eprintln!(
        "{} requests, {} answered, {failed_in_flight} failed in flight on the killed worker",
        outcomes.len(),
        answered.len()
    );
    assert!(
        answered.len() > 500,
        "too little traffic: {}",
        answered.len()
    );

    // Every answered flow is archived exactly once: both stores see every replica's appends.
    let deadline = Instant::now() + Duration::from_secs(60);
    let archived = loop {
        let archived = layout.archived(store_b_addr);
        if answered.iter().all(|id| archived.contains_key(id)) || Instant::now() > deadline {
            break archived;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let missing: Vec<&usize> = answered
        .iter()
        .filter(|id| !archived.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} flows never archived: {missing:?}",
        missing.len()
    );
    let twice: Vec<(&usize, &usize)> = archived.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "flows archived more than once: {twice:?}");
    assert_eq!(
        layout.archived(store_a_addr),
        archived,
        "both stores list the same flows"
    );

    // A client without a valid certificate is refused by every service; with one it gets in.
    // (service URL, curl's --resolve for it)
    let mut services: Vec<(String, Option<String>)> = WORKER_IPS
        .iter()
        .map(|ip| {
            let port = layout.worker_port;
            (
                format!("https://{WORKER_NAME}:{port}/"),
                Some(format!("{WORKER_NAME}:{port}:{ip}")),
            )
        })
        .collect();
    services.push((format!("https://{store_a_addr}/"), None));
    services.push((format!("https://{store_b_addr}/"), None));
    let ca = layout.pki.path("ca.pem");
    for (url, resolve) in &services {
        let mut base = vec!["--http2", "--max-time", "10", "--cacert", &ca];
        if let Some(resolve) = resolve {
            base.extend(["--resolve", resolve]);
        }
        let service = resolve.as_deref().unwrap_or(url);
        let none = curl(&[&base[..], &[url.as_str()]].concat());
        assert_ne!(
            none.code, 0,
            "{service} let in a client without a certificate"
        );
        let rogue = curl(
            &[
                &base[..],
                &[
                    "--cert",
                    &layout.pki.path("rogue.pem"),
                    "--key",
                    &layout.pki.path("rogue.key"),
                    url,
                ],
            ]
            .concat(),
        );
        assert_ne!(
            rogue.code, 0,
            "{service} let in a client with another CA's certificate"
        );
        let valid = curl(
            &[
                &base[..],
                &[
                    "--cert",
                    &layout.pki.path("client.pem"),
                    "--key",
                    &layout.pki.path("client.key"),
                    url,
                ],
            ]
            .concat(),
        );
        assert_eq!(
            valid.code, 0,
            "{service} refused a valid client certificate: {}",
            valid.stderr
        );
    }

    for proxy in [&mut proxy_a, &mut proxy_b] {
        let status = proxy.terminate();
        assert!(status.success(), "{} exited with {status}", proxy.name);
    }
    drop(store_a);
}
