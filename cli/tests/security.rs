//! Security between services, end to end: `flowtap` towards a real `flow-store` and a real
//! `script-host` worker that require client certificates (minted at test time), and what the
//! user reads when the certificate is missing or the server's has expired.

#![allow(missing_docs)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use flowtap_grpc::testing::{CertFiles, TestPki};
use support::scripts::{TempScript, echo_origin, header_value, poll};
use support::{Flowtap, Lines, binary, curl, flow_store_binary};

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp paths")
}

/// The server flags for `server`'s certificate, requiring client certificates of `pki.ca`.
fn mtls_server<'a>(pki: &'a TestPki, server: &'a CertFiles) -> Vec<&'a str> {
    vec![
        "--tls-cert",
        path(&server.cert),
        "--tls-key",
        path(&server.key),
        "--tls-client-ca",
        path(&pki.ca),
    ]
}

/// The client flags trusting `pki.ca` and presenting `pki.client`.
fn mtls_client(pki: &TestPki) -> Vec<&str> {
    vec![
        "--grpc-ca",
        path(&pki.ca),
        "--grpc-cert",
        path(&pki.client.cert),
        "--grpc-key",
        path(&pki.client.key),
    ]
}

/// A process killed when dropped, and the address it announced.
struct Server {
    child: Child,
    address: SocketAddr,
    _stdout: Option<Lines>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_store(dir: &Path, extra: &[&str]) -> Server {
    let store = format!("sqlite:{}", dir.join("flows.db").display());
    let mut child = Command::new(flow_store_binary())
        .args(["--listen", "127.0.0.1:0", "--store", &store])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start flow-store");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read flow-store's address");
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"))
        .parse()
        .expect("an address");
    Server {
        child,
        address,
        _stdout: None,
    }
}

fn start_worker(script: &TempScript, extra: &[&str]) -> Server {
    let mut child = Command::new(binary())
        .args(["script-host", "-s", script.arg(), "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start flowtap script-host");
    let stdout = Lines::collect(child.stdout.take().expect("piped"));
    let line = stdout.wait_for("announcing the address", |l| {
        l.starts_with("script-host listening on ")
    });
    let address = line["script-host listening on ".len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
    Server {
        child,
        address,
        _stdout: Some(stdout),
    }
}

/// Runs `flowtap flows --store-addr ADDRESS CLIENT_FLAGS list`: exit code and stderr.
fn flows_list(address: &str, client: &[&str]) -> (i32, String) {
    let out = Command::new(binary())
        .args(["flows", "--store-addr", address])
        .args(client)
        .arg("list")
        .stdin(Stdio::null())
        .output()
        .expect("run flowtap flows list");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flows_list_over_mutual_tls_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::mint(dir.path());
    let store = start_store(dir.path(), &mtls_server(&pki, &pki.server));
    let https = format!("https://localhost:{}", store.address.port());

    let (code, stderr) = flows_list(&https, &mtls_client(&pki));
    assert_eq!(code, 0, "{stderr}");

    let (code, stderr) = flows_list(&https, &["--grpc-ca", path(&pki.ca)]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("the server requires a client certificate"),
        "{stderr}"
    );

    let expired_dir = tempfile::tempdir().unwrap();
    let expired = start_store(expired_dir.path(), &mtls_server(&pki, &pki.expired_server));
    let (code, stderr) = flows_list(
        &format!("https://127.0.0.1:{}", expired.address.port()),
        &mtls_client(&pki),
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("the server's certificate has expired"),
        "{stderr}"
    );
}

/// Adds a header to every request, so the echo origin shows that the worker ran.
const MARKER: &str = r#"
def request(flow):
    flow.request.headers["x-via-worker"] = "yes"
"#;

/// The `x-via-worker` header the script added to a request through `proxy`, as the echo
/// origin saw it (None: the request went through without the script).
fn through(proxy: std::net::SocketAddr, origin_port: u16) -> Option<String> {
    let out = curl(&[
        "-s",
        "-x",
        &format!("http://{proxy}"),
        &format!("http://127.0.0.1:{origin_port}/"),
    ])
    .ok();
    assert!(out.stdout.contains("GET / HTTP/1.1"), "{out:?}");
    header_value(&out.stdout, "x-via-worker")
}

/// A request through `proxy` reaches the origin, unchanged by the script.
fn assert_passes_without_the_script(proxy: std::net::SocketAddr, origin_port: u16) {
    assert_eq!(through(proxy, origin_port), None);
}

#[test]
fn a_worker_behind_mutual_tls_serves_the_proxy_that_has_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::mint(dir.path());
    let script = TempScript::new("marker.py", MARKER);
    let worker = start_worker(&script, &mtls_server(&pki, &pki.server));
    let worker_address = worker.address.to_string();
    let origin = echo_origin();

    // Trusting the worker but without a client certificate: refused, and the log says why.
    // The proxy serves anyway (a worker that cannot be reached is retried), with the failure
    // policy (open: the flow goes on without the script).
    let (refused, refused_proxy) =
        Flowtap::start(&["--script-host", &worker_address, "--grpc-ca", path(&pki.ca)]);
    poll("a log line naming the worker and the cause", || {
        refused
            .stderr
            .all()
            .iter()
            .any(|l| {
                l.contains(&worker_address)
                    && l.contains("the server requires a client certificate")
            })
            .then_some(())
    });
    assert_passes_without_the_script(refused_proxy, origin.port());
    refused.stop();

    let args = [&["--script-host", &worker_address][..], &mtls_client(&pki)].concat();
    let (flowtap, proxy) = Flowtap::start(&args);
    assert_eq!(through(proxy, origin.port()).as_deref(), Some("yes"));
    flowtap.stop();
}

#[test]
fn a_worker_with_a_token_serves_only_the_proxy_that_sends_it() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "w0rker-t0ken\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "w0rker-t0keN").unwrap();
    let script = TempScript::new("marker.py", MARKER);
    let worker = start_worker(&script, &["--token-file", path(&token)]);
    let worker_address = worker.address.to_string();
    let origin = echo_origin();

    // Refused sessions: the proxy serves without the script and its log names the cause.
    for (flags, cause) in [
        (&[][..], "missing token"),
        (&["--grpc-token-file", path(&wrong)][..], "wrong token"),
    ] {
        let args = [&["--script-host", &worker_address][..], flags].concat();
        let (refused, refused_proxy) = Flowtap::start(&args);
        poll(&format!("a log line saying {cause}"), || {
            refused.stderr.contains(cause).then_some(())
        });
        assert_passes_without_the_script(refused_proxy, origin.port());
        refused.stop();
    }

    let (flowtap, proxy) = Flowtap::start(&[
        "--script-host",
        &worker_address,
        "--grpc-token-file",
        path(&token),
    ]);
    assert_eq!(through(proxy, origin.port()).as_deref(), Some("yes"));
    flowtap.stop();
}
