//! `--mode`: reverse mode in front of an HTTP and an HTTPS server, with plain and TLS clients
//! (real curl), the `Host` header the server sees, `keep_host_header`, the mode scripts see as
//! `client_conn.proxy_mode`, `@PORT`, a clear refusal for modes flowtap lacks, and `dns` mode
//! (real UDP queries answered by a script and by the system resolver).

#![allow(missing_docs)]

mod support;

use std::io::{Read, Write};

use flowtap_certs::testing::OriginCert;
use support::origin::Origin;
use support::{Flowtap, curl};

fn echo_origin() -> Origin {
    Origin::start(|mut tcp| support::origin::echo_heads(&mut tcp))
}

fn tls_echo_origin(cert: &OriginCert) -> Origin {
    Origin::tls_echo(cert)
}

/// curl to `https://NAME:PORT/PATH` at `addr` (the proxy's listener), trusting flowtap's CA;
/// the body it got.
fn curl_tls_as(flowtap: &Flowtap, name: &str, addr: std::net::SocketAddr, path: &str) -> String {
    let ca = flowtap.confdir().join("flowtap-ca-cert.pem");
    let port = addr.port();
    curl(&[
        "--cacert",
        ca.to_str().expect("utf-8 path"),
        "--resolve",
        &format!("{name}:{port}:{}", addr.ip()),
        &format!("https://{name}:{port}{path}"),
    ])
    .ok()
    .stdout
}

fn host_line(body: &str) -> String {
    body.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("host:"))
        .map(|l| l[5..].trim().to_string())
        .unwrap_or_default()
}

#[test]
fn reverse_mode_sends_every_request_to_an_http_target_with_its_host() {
    let origin = echo_origin();
    let target = format!("reverse:http://127.0.0.1:{}", origin.port());
    let (flowtap, addr) = Flowtap::start(&["--mode", &target]);
    let out = curl(&[&format!("http://{addr}/some/path?q=1")]).ok();
    assert!(
        out.stdout.starts_with("GET /some/path?q=1 HTTP/1.1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        host_line(&out.stdout),
        format!("127.0.0.1:{}", origin.port())
    );
    flowtap.stop();
}

#[test]
fn keep_host_header_passes_the_clients_host_through() {
    let origin = echo_origin();
    let target = format!("reverse:http://127.0.0.1:{}", origin.port());
    let (flowtap, addr) = Flowtap::start(&["--mode", &target, "--set", "keep_host_header=true"]);
    let out = curl(&["-H", "Host: www.example.test", &format!("http://{addr}/")]).ok();
    assert_eq!(host_line(&out.stdout), "www.example.test");
    flowtap.stop();
}

#[test]
fn reverse_mode_to_an_https_target_takes_plain_and_tls_clients() {
    let cert = OriginCert::new(&["localhost"]);
    let origin = tls_echo_origin(&cert);
    let target = format!("reverse:https://localhost:{}", origin.port());
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (flowtap, addr) = Flowtap::start(&["--mode", &target, "--set", &trust]);

    // A plain client: the proxy speaks TLS to the server.
    let out = curl(&[&format!("http://{addr}/plain")]).ok();
    assert!(
        out.stdout.starts_with("GET /plain HTTP/1.1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        host_line(&out.stdout),
        format!("localhost:{}", origin.port())
    );

    // A TLS client that asks for its own name gets a certificate for it from flowtap's CA.
    let body = curl_tls_as(&flowtap, "shop.example.test", addr, "/tls");
    assert!(body.starts_with("GET /tls HTTP/1.1"), "{body}");
    assert_eq!(host_line(&body), format!("localhost:{}", origin.port()));
    flowtap.stop();
}

#[test]
fn scripts_see_the_listeners_mode_and_at_port_chooses_the_port() {
    let origin = echo_origin();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("mode.py");
    std::fs::write(
        &script,
        "def response(flow):\n    flow.response.headers['x-mode'] = flow.client_conn.proxy_mode.full_spec\n",
    )
    .expect("script");
    let port = support::free_port();
    let spec = format!("reverse:http://127.0.0.1:{}@{port}", origin.port());
    let flowtap = Flowtap::spawn(&["--mode", &spec, "-s", script.to_str().expect("utf-8")]);
    let addr = flowtap.listening_at();
    assert_eq!(addr.port(), port);
    let out = curl(&["-D", "-", "-o", "/dev/null", &format!("http://{addr}/")]).ok();
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains(&format!("x-mode: {spec}")),
        "{}",
        out.stdout
    );
    flowtap.stop();
}

/// A script that prints, at each TCP flow's start, whether each side speaks TLS.
fn tls_sides_script(dir: &std::path::Path) -> String {
    let script = dir.join("tcp_tls.py");
    std::fs::write(
        &script,
        "def tcp_start(flow):\n    print('TCP START', flow.client_conn.tls_established, flow.server_conn.tls_established)\n",
    )
    .expect("script");
    script.to_str().expect("utf-8").to_string()
}

#[test]
fn reverse_mode_to_a_tls_target_relays_a_tcp_flow_inside_tls_on_both_sides() {
    let cert = OriginCert::new(&["localhost"]);
    let origin = tls_echo_origin(&cert);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = tls_sides_script(dir.path());
    let target = format!("reverse:tls://localhost:{}", origin.port());
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (flowtap, addr) = Flowtap::start(&["--mode", &target, "--set", &trust, "-s", &script]);
    // A TLS client: its TLS is taken on, the bytes inside go to the server inside TLS.
    let body = curl_tls_as(&flowtap, "db.example.test", addr, "/inside-tls");
    assert!(body.starts_with("GET /inside-tls HTTP/1.1"), "{body}");
    flowtap
        .stdout
        .wait_for("a TCP flow with TLS on both sides", |l| {
            l.contains("TCP START True True")
        });
    // A plain client: the proxy alone speaks TLS, to the server.
    let out = curl(&[&format!("http://{addr}/plain-client")]).ok();
    assert!(
        out.stdout.starts_with("GET /plain-client HTTP/1.1"),
        "{}",
        out.stdout
    );
    flowtap
        .stdout
        .wait_for("a TCP flow with TLS to the server only", |l| {
            l.contains("TCP START False True")
        });
    flowtap.stop();
}

#[test]
fn reverse_mode_to_an_http_target_takes_tls_clients_and_speaks_plain_http_to_the_server() {
    let origin = echo_origin();
    let target = format!("reverse:http://127.0.0.1:{}", origin.port());
    let (flowtap, addr) = Flowtap::start(&["--mode", &target]);
    let body = curl_tls_as(&flowtap, "site.example.test", addr, "/over-tls");
    assert!(body.starts_with("GET /over-tls HTTP/1.1"), "{body}");
    flowtap.stdout.wait_for("the flow line, sent as http", |l| {
        l.contains("GET") && l.contains("http://127.0.0.1:") && l.contains("/over-tls")
    });
    flowtap.stop();
}

#[test]
fn clients_may_speak_tls_to_the_proxy_and_upstream_https_chains_through_it() {
    let origin = echo_origin();
    let (second, second_addr) = Flowtap::start(&[]);
    let second_ca = second.confdir().join("flowtap-ca-cert.pem");
    // curl to an HTTPS proxy: TLS to the proxy itself, plain HTTP inside.
    let url = format!("http://127.0.0.1:{}/via-https-proxy", origin.port());
    let out = curl(&[
        "-x",
        &format!("https://127.0.0.1:{}", second_addr.port()),
        "--proxy-cacert",
        second_ca.to_str().expect("utf-8 path"),
        &url,
    ])
    .ok();
    assert!(
        out.stdout.starts_with("GET /via-https-proxy HTTP/1.1"),
        "{}",
        out.stdout
    );
    // A flowtap in upstream mode to it: the next proxy is verified as a server is.
    let upstream = format!("upstream:https://127.0.0.1:{}", second_addr.port());
    let trust = format!("ssl_verify_upstream_trusted_ca={}", second_ca.display());
    let (first, first_addr) = Flowtap::start(&["--mode", &upstream, "--set", &trust]);
    let url = format!("http://127.0.0.1:{}/chained-over-tls", origin.port());
    let out = curl(&["-x", &format!("http://{first_addr}"), &url]).ok();
    assert!(
        out.stdout.starts_with("GET /chained-over-tls HTTP/1.1"),
        "{}",
        out.stdout
    );
    second.stdout.wait_for("the next proxy's flow line", |l| {
        l.contains("GET") && l.contains("/chained-over-tls")
    });
    // Without trust in the next proxy's certificate, nothing goes through it.
    let (untrusting, untrusting_addr) = Flowtap::start(&["--mode", &upstream]);
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &format!("http://{untrusting_addr}"),
        &url,
    ]);
    assert_eq!(out.stdout.trim(), "502");
    untrusting.stop();
    first.stop();
    second.stop();
}

/// The address of the listener whose start-up line starts with `what` ("SOCKS v5 proxy", ...).
fn listening(flowtap: &Flowtap, what: &str) -> std::net::SocketAddr {
    let line = flowtap
        .stderr
        .wait_for(what, |l| l.contains(what) && l.contains(" listening at "));
    let addr = line.rsplit("listening at ").next().expect("an address");
    addr.trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
}

#[test]
fn one_process_serves_several_modes_each_listener_with_its_own() {
    let origin = echo_origin();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("mode.py");
    std::fs::write(
        &script,
        "def response(flow):\n    flow.response.headers['x-mode'] = flow.client_conn.proxy_mode.full_spec\n",
    )
    .expect("script");
    let reverse = format!("reverse:http://127.0.0.1:{}@127.0.0.1:0", origin.port());
    let flowtap = Flowtap::spawn(&[
        "--mode",
        "regular@0",
        "--mode",
        &reverse,
        "--mode",
        "socks5@0",
        "-s",
        script.to_str().expect("utf-8"),
    ]);
    let regular = listening(&flowtap, "HTTP(S) proxy");
    let reverse_at = listening(&flowtap, "Reverse proxy to http://127.0.0.1");
    let socks5 = listening(&flowtap, "SOCKS v5 proxy");
    assert!(regular != reverse_at && reverse_at != socks5 && regular != socks5);
    let url = format!("http://127.0.0.1:{}/x", origin.port());
    let mode_of = |args: &[&str]| {
        let out = curl(&[&["-s", "-D", "-", "-o", "/dev/null"], args].concat()).ok();
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("x-mode: "))
            .map(|m| m.trim().to_string())
            .unwrap_or_else(|| panic!("no x-mode in {}", out.stdout))
    };
    assert_eq!(
        mode_of(&["-x", &format!("http://{regular}"), &url]),
        "regular@0"
    );
    assert_eq!(mode_of(&[&format!("http://{reverse_at}/y")]), reverse);
    assert_eq!(
        mode_of(&["-x", &format!("socks5h://{socks5}"), &url]),
        "socks5@0"
    );
    // The reverse listener sent its request to its target, the others where they were asked.
    flowtap.stdout.wait_for("the reverse flow's line", |l| {
        l.contains("GET") && l.contains("/y")
    });
    flowtap.stop();
}

#[test]
fn proxyauth_asks_each_listeners_clients_as_its_mode_does() {
    let origin = echo_origin();
    let reverse = format!("reverse:http://127.0.0.1:{}@0", origin.port());
    let flowtap = Flowtap::spawn(&[
        "--mode",
        "regular@0",
        "--mode",
        &reverse,
        "--mode",
        "socks5@0",
        "--set",
        "proxyauth=alice:s3cret",
    ]);
    let regular = listening(&flowtap, "HTTP(S) proxy");
    let reverse_at = listening(&flowtap, "Reverse proxy to http://127.0.0.1");
    let socks5 = listening(&flowtap, "SOCKS v5 proxy");
    let url = format!("http://127.0.0.1:{}/auth", origin.port());
    let status = |args: &[&str]| {
        curl(&[&["-s", "-o", "/dev/null", "-w", "%{http_code}"], args].concat())
            .stdout
            .trim()
            .to_string()
    };
    // A proxy asks with 407, a reverse proxy as a server with 401.
    assert_eq!(status(&["-x", &format!("http://{regular}"), &url]), "407");
    assert_eq!(status(&[&format!("http://{reverse_at}/auth")]), "401");
    assert_eq!(
        status(&["-x", &format!("http://alice:s3cret@{regular}"), &url]),
        "200"
    );
    assert_eq!(
        status(&["-u", "alice:s3cret", &format!("http://{reverse_at}/auth")]),
        "200"
    );
    // SOCKS5 clients authenticate in the handshake, and are not asked again in HTTP.
    assert_eq!(
        status(&["-x", &format!("socks5h://alice:s3cret@{socks5}"), &url]),
        "200"
    );
    assert_ne!(
        curl(&["-s", "-x", &format!("socks5h://alice:guess@{socks5}"), &url]).code,
        0
    );
    flowtap.stop();
}

#[test]
fn two_modes_on_one_address_are_refused_as_mitmproxy_refuses_them() {
    let port = support::free_port();
    let mut flowtap = Flowtap::spawn(&[
        "--mode",
        &format!("regular@{port}"),
        "--mode",
        &format!("socks5@{port}"),
    ]);
    let status = flowtap.wait_exit(std::time::Duration::from_secs(10));
    assert_ne!(status.code(), Some(0));
    flowtap.stderr.wait_for("the error", |l| {
        l.contains("Cannot spawn multiple servers on the same address")
    });
}

#[test]
fn modes_flowtap_lacks_are_refused_with_a_clear_error() {
    let mut flowtap = Flowtap::spawn(&["--mode", "wireguard"]);
    let status = flowtap.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    flowtap.stderr.wait_for("the error", |l| {
        l.contains("socks5") && l.contains("not available")
    });
}

#[test]
fn upstream_mode_chains_two_flowtaps_for_http_and_https() {
    let origin = echo_origin();
    let cert = OriginCert::new(&["localhost"]);
    let tls_origin = tls_echo_origin(&cert);
    let trust_origin = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (second, second_addr) = Flowtap::start(&["--set", &trust_origin]);
    let trust_second = format!(
        "ssl_verify_upstream_trusted_ca={}",
        second.confdir().join("flowtap-ca-cert.pem").display()
    );
    let upstream = format!("upstream:http://{second_addr}");
    let (first, first_addr) = Flowtap::start(&["--mode", &upstream, "--set", &trust_second]);

    let url = format!("http://127.0.0.1:{}/chained", origin.port());
    let out = curl(&["-x", &format!("http://{first_addr}"), &url]).ok();
    assert!(
        out.stdout.starts_with("GET /chained HTTP/1.1"),
        "{}",
        out.stdout
    );
    second.stdout.wait_for("the second proxy's flow line", |l| {
        l.contains("GET") && l.contains("/chained")
    });

    let ca = first.confdir().join("flowtap-ca-cert.pem");
    let url = format!("https://localhost:{}/secret", tls_origin.port());
    let out = curl(&[
        "-x",
        &format!("http://{first_addr}"),
        "--cacert",
        ca.to_str().expect("utf-8 path"),
        &url,
    ])
    .ok();
    assert!(
        out.stdout.starts_with("GET /secret HTTP/1.1"),
        "{}",
        out.stdout
    );
    // The second proxy saw the request too: the first one tunnelled through it and it
    // intercepted in turn.
    second
        .stdout
        .wait_for("the second proxy's https flow line", |l| {
            l.contains("https://localhost:") && l.contains("/secret")
        });
    first.stop();
    second.stop();
}

#[test]
fn http_connect_upstream_lets_scripts_change_the_connect_the_next_proxy_gets() {
    // The "next proxy" records the CONNECT head it is sent and refuses the tunnel.
    let (heads_tx, heads) = std::sync::mpsc::channel();
    let next = Origin::start(move |mut tcp| {
        if let Some((head, _)) = support::origin::read_head(&mut tcp) {
            let _ = heads_tx.send(head);
        }
        let _ = tcp.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("upstream.py");
    std::fs::write(
        &script,
        "def http_connect_upstream(flow):\n    flow.request.headers['x-tenant'] = 'blue'\n",
    )
    .expect("script");
    let upstream = format!("upstream:http://127.0.0.1:{}", next.port());
    let (flowtap, addr) = Flowtap::start(&[
        "--mode",
        &upstream,
        "--set",
        "upstream_auth=user:pass",
        "-s",
        script.to_str().expect("utf-8"),
    ]);
    let out = curl(&["-x", &format!("http://{addr}"), "https://www.example.test/"]);
    assert_ne!(out.code, 0, "the next proxy refused the tunnel");
    let head = heads
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the next proxy got a CONNECT");
    assert!(
        head.starts_with("CONNECT www.example.test:443 HTTP/1.1"),
        "{head}"
    );
    assert!(head.contains("x-tenant: blue"), "{head}");
    assert!(
        head.contains("Proxy-Authorization: Basic dXNlcjpwYXNz"),
        "{head}"
    );
    flowtap.stop();
}

#[test]
fn upstream_auth_is_sent_to_the_next_proxy() {
    // The "next proxy" here echoes what it is sent: the request in absolute form, with the
    // credentials.
    let next = echo_origin();
    let upstream = format!("upstream:http://127.0.0.1:{}", next.port());
    let (flowtap, addr) =
        Flowtap::start(&["--mode", &upstream, "--set", "upstream_auth=user:pass"]);
    let out = curl(&[
        "-x",
        &format!("http://{addr}"),
        "-H",
        "Proxy-Authorization: Basic client-secret",
        "http://www.example.test/x?y=1",
    ])
    .ok();
    assert!(
        out.stdout
            .starts_with("GET http://www.example.test/x?y=1 HTTP/1.1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Proxy-Authorization: Basic dXNlcjpwYXNz"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("client-secret"),
        "the client's own proxy credentials are not passed on: {}",
        out.stdout
    );
    flowtap.stop();
}

#[test]
fn socks5_mode_serves_curl_for_http_and_https() {
    let origin = echo_origin();
    let cert = OriginCert::new(&["localhost"]);
    let tls_origin = tls_echo_origin(&cert);
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (flowtap, addr) = Flowtap::start(&["--mode", "socks5", "--set", &trust]);
    let proxy = format!("socks5h://{addr}");
    let url = format!("http://127.0.0.1:{}/socks", origin.port());
    let out = curl(&["-x", &proxy, &url]).ok();
    assert!(
        out.stdout.starts_with("GET /socks HTTP/1.1"),
        "{}",
        out.stdout
    );

    let ca = flowtap.confdir().join("flowtap-ca-cert.pem");
    let url = format!("https://localhost:{}/socks-tls", tls_origin.port());
    let out = curl(&["-x", &proxy, "--cacert", ca.to_str().expect("utf-8"), &url]).ok();
    assert!(
        out.stdout.starts_with("GET /socks-tls HTTP/1.1"),
        "{}",
        out.stdout
    );
    flowtap
        .stdout
        .wait_for("the flow line of the intercepted request", |l| {
            l.contains("https://localhost:") && l.contains("/socks-tls")
        });
    flowtap.stop();
}

#[test]
fn socks5_proxyauth_lets_the_right_password_in_and_no_other() {
    let origin = echo_origin();
    let (flowtap, addr) = Flowtap::start(&["--mode", "socks5", "--set", "proxyauth=alice:s3cret"]);
    let url = format!("http://127.0.0.1:{}/auth", origin.port());
    let out = curl(&["-x", &format!("socks5h://alice:s3cret@{addr}"), &url]).ok();
    assert!(
        out.stdout.starts_with("GET /auth HTTP/1.1"),
        "{}",
        out.stdout
    );
    for wrong in ["alice:guess", "bob:s3cret"] {
        let out = curl(&["-x", &format!("socks5h://{wrong}@{addr}"), &url]);
        assert_ne!(out.code, 0, "{wrong} got in: {}", out.stdout);
    }
    let out = curl(&["-x", &format!("socks5h://{addr}"), &url]);
    assert_ne!(out.code, 0, "no credentials got in: {}", out.stdout);
    flowtap.stderr.wait_for("the refusal logged", |l| {
        l.contains("SOCKS5") && l.contains("wrong username or password")
    });
    flowtap.stop();
}

#[test]
fn socks5_auth_lets_scripts_overrule_proxyauth() {
    let origin = echo_origin();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("socks_auth.py");
    std::fs::write(
        &script,
        "def socks5_auth(data):\n    print('SOCKS5 AUTH', data.username, data.valid)\n    if data.username == 'guest':\n        data.valid = True\n    if data.username == 'mallory':\n        data.valid = False\n",
    )
    .expect("script");
    let (flowtap, addr) = Flowtap::start(&[
        "--mode",
        "socks5",
        "--set",
        "proxyauth=mallory:pw",
        "-s",
        script.to_str().expect("utf-8"),
    ]);
    let url = format!("http://127.0.0.1:{}/socks-auth", origin.port());
    // proxyauth refuses guest; the script lets it in.
    let out = curl(&["-x", &format!("socks5h://guest:anything@{addr}"), &url]).ok();
    assert!(
        out.stdout.starts_with("GET /socks-auth HTTP/1.1"),
        "{}",
        out.stdout
    );
    flowtap
        .stdout
        .wait_for("the hook saw proxyauth's verdict", |l| {
            l.contains("SOCKS5 AUTH guest False")
        });
    // proxyauth accepts mallory; the script does not.
    let out = curl(&["-x", &format!("socks5h://mallory:pw@{addr}"), &url]);
    assert_ne!(out.code, 0, "mallory got in: {}", out.stdout);
    flowtap
        .stdout
        .wait_for("the hook saw proxyauth's verdict", |l| {
            l.contains("SOCKS5 AUTH mallory True")
        });
    flowtap.stop();
}

#[test]
fn a_socks5_handshake_sent_byte_by_byte_is_closed_at_the_head_deadline() {
    use std::time::{Duration, Instant};
    let (flowtap, addr) = Flowtap::start(&[
        "--mode",
        "socks5",
        "--set",
        "request_head_timeout=0.5",
        "--set",
        "client_idle_timeout=5",
    ]);
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let start = Instant::now();
    // A greeting that announces 255 methods and sends one every 100 ms.
    let mut reader = tcp.try_clone().expect("clone");
    let dribble = std::thread::spawn(move || {
        let _ = tcp.write_all(&[5, 255]);
        for _ in 0..100 {
            if tcp.write_all(&[0]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut rest = Vec::new();
    let read = reader.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "the proxy held the handshake past 10 s: {read:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop(dribble);
    flowtap.stop();
}

/// Runs a command that must succeed (set-up inside the test's network namespace).
fn run(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Transparent mode in a network namespace of its own (this test's thread and what it
/// starts), so that the firewall rule touches nothing else: nftables redirects connections
/// from 127.0.0.3 to the two origins' ports to flowtap's listener; flowtap reads where each was
/// going from the socket and sends it there: plain HTTP, and TLS intercepted with a
/// certificate for the name the client asked for. Scripts see the mode; a connection made
/// straight to the listener (not redirected) is refused with a log line.
#[test]
fn transparent_mode_sends_redirected_connections_where_they_were_going() {
    // SAFETY: unshare has no memory-safety preconditions; it moves this thread (and the
    // threads and processes it starts from now on) into a new, empty network namespace.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET) failed ({}): this test needs root (CAP_SYS_ADMIN)",
        std::io::Error::last_os_error()
    );
    run("ip", &["link", "set", "lo", "up"]);
    let origin = echo_origin();
    let cert = OriginCert::new(&["localhost"]);
    let tls_origin = tls_echo_origin(&cert);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("mode.py");
    std::fs::write(
        &script,
        "def response(flow):\n    flow.response.headers['x-mode'] = flow.client_conn.proxy_mode.full_spec\n",
    )
    .expect("script");
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (flowtap, addr) = Flowtap::start(&[
        "--mode",
        "transparent",
        "--set",
        &trust,
        "-s",
        script.to_str().expect("utf-8"),
    ]);
    run("nft", &["add", "table", "ip", "flowtap"]);
    run(
        "nft",
        &[
            "add",
            "chain",
            "ip",
            "flowtap",
            "out",
            "{ type nat hook output priority -100 ; }",
        ],
    );
    let ports = format!("{{ {}, {} }}", origin.port(), tls_origin.port());
    let to = format!(":{}", addr.port());
    run(
        "nft",
        &[
            "add",
            "rule",
            "ip",
            "flowtap",
            "out",
            "ip",
            "saddr",
            "127.0.0.3",
            "tcp",
            "dport",
            &ports,
            "redirect",
            "to",
            &to,
        ],
    );

    let out = curl(&[
        "--interface",
        "127.0.0.3",
        "-D",
        "-",
        &format!("http://127.0.0.1:{}/plain", origin.port()),
    ])
    .ok();
    assert!(out.stdout.contains("GET /plain HTTP/1.1"), "{}", out.stdout);
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("x-mode: transparent"),
        "{}",
        out.stdout
    );
    let cacert = flowtap.confdir().join("flowtap-ca-cert.pem");
    let out = curl(&[
        "--interface",
        "127.0.0.3",
        "--cacert",
        cacert.to_str().expect("utf-8"),
        "--resolve",
        &format!("localhost:{}:127.0.0.1", tls_origin.port()),
        "-D",
        "-",
        &format!("https://localhost:{}/secure", tls_origin.port()),
    ])
    .ok();
    assert!(
        out.stdout.contains("GET /secure HTTP/1.1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("x-mode: transparent"),
        "the TLS connection was intercepted: {}",
        out.stdout
    );

    // Not redirected: nobody knows where it was going.
    let direct = curl(&[&format!("http://{addr}/direct")]);
    assert_ne!(direct.code, 0, "{}", direct.stdout);
    flowtap
        .stderr
        .wait_for("the refusal", |l| l.contains("transparent mode failure"));
    let (_, stdout) = flowtap.stop();
    let flows = stdout.join("\n");
    assert!(flows.contains("/plain"), "{flows}");
    // The server is the original destination, an address (as in mitmdump without showhost).
    let secure = format!("GET https://127.0.0.1:{}/secure", tls_origin.port());
    assert!(flows.contains(&secure), "{flows}");
}

/// A DNS query over UDP for `name` (type `qtype`, class IN): the reply's response code and
/// the data of its answers.
fn dns_query(server: std::net::SocketAddr, name: &str, qtype: u16) -> (u8, Vec<Vec<u8>>) {
    let mut query = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).expect("a short label"));
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend_from_slice(&qtype.to_be_bytes());
    query.extend_from_slice(&[0, 1]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a read timeout");
    socket.send_to(&query, server).expect("the query is sent");
    let mut reply = [0u8; 1024];
    let (len, _) = socket.recv_from(&mut reply).expect("an answer");
    let reply = &reply[..len];
    assert_eq!(
        reply[..2],
        [0xAB, 0xCD],
        "the answer carries the query's id"
    );
    assert_eq!(reply[2] & 0x80, 0x80, "the answer is a response");
    // Skip the header and the question (echoed as sent), then read each answer record, whose
    // name is written uncompressed.
    let mut at = query.len();
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    let mut data = Vec::new();
    for _ in 0..answers {
        while reply[at] != 0 {
            at += usize::from(reply[at]) + 1;
        }
        at += 1 + 8;
        let length = usize::from(u16::from_be_bytes([reply[at], reply[at + 1]]));
        data.push(reply[at + 2..at + 2 + length].to_vec());
        at += 2 + length;
    }
    (reply[3] & 0x0F, data)
}

#[test]
fn dns_mode_answers_from_scripts_the_system_resolver_and_the_name_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("dns_spoof.py");
    std::fs::write(
        &script,
        "import ipaddress\n\
         from mitmproxy import dns\n\
         def dns_request(flow):\n\
         \x20   q = flow.request.question\n\
         \x20   if q.name == 'spoofed.test':\n\
         \x20       flow.response = flow.request.succeed([dns.ResourceRecord(\n\
         \x20           q.name, dns.types.AAAA, dns.classes.IN, 60,\n\
         \x20           ipaddress.ip_address('::1').packed)])\n\
         \x20   elif q.name == 'blocked.test':\n\
         \x20       flow.response = flow.request.fail(dns.response_codes.NXDOMAIN)\n\
         def dns_response(flow):\n\
         \x20   print('dns_response', flow.request.question.name, flow.response.response_code)\n",
    )
    .expect("write the script");
    let script = script.to_str().expect("utf-8 path");
    // The name server other types go to: it answers every question with 192.0.2.1.
    let name_server = support::modes::dns_origin();
    let name_servers = format!("dns_name_servers={name_server}");
    let (flowtap, addr) =
        Flowtap::start(&["--mode", "dns@0", "-s", script, "--set", &name_servers]);

    let (rcode, answers) = dns_query(addr, "spoofed.test", 28);
    assert_eq!(rcode, 0);
    let mut loopback_v6 = vec![0u8; 16];
    loopback_v6[15] = 1;
    assert_eq!(answers, vec![loopback_v6]);
    assert_eq!(dns_query(addr, "blocked.test", 1), (3, vec![]));
    // Not answered by the script: the system resolver answers (localhost is in /etc/hosts).
    let (rcode, answers) = dns_query(addr, "localhost", 1);
    assert_eq!(rcode, 0);
    assert!(answers.contains(&vec![127, 0, 0, 1]), "{answers:?}");
    // Types the proxy does not resolve itself go to the name server, as mitmproxy sends them.
    assert_eq!(
        dns_query(addr, "localhost", 16),
        (0, vec![vec![192, 0, 2, 1]])
    );

    let (_, stdout) = flowtap.stop();
    let seen = stdout.join("\n");
    assert!(seen.contains("dns_response spoofed.test 0"), "{seen}");
    assert!(seen.contains("dns_response blocked.test 3"), "{seen}");
}

/// `reverse:tcp://HOST:PORT`: every connection is relayed to the target as a TCP flow (not
/// looked at as HTTP), whose messages scripts see and may change.
#[test]
fn reverse_mode_to_a_tcp_target_relays_tcp_flows() {
    let origin = support::websocket::tcp_echo_origin();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("tcp.py");
    std::fs::write(
        &script,
        "def tcp_message(flow):\n    m = flow.messages[-1]\n    if m.from_client:\n        m.content = m.content.upper()\n",
    )
    .expect("script");
    let target = format!("reverse:tcp://127.0.0.1:{}", origin.port());
    let (flowtap, addr) =
        Flowtap::start(&["--mode", &target, "-s", script.to_str().expect("utf-8")]);
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to flowtap");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    // Looks like HTTP, and is still relayed as bytes.
    stream.write_all(b"get / http/1.1\r\n").expect("send");
    let mut reply = vec![0u8; 64];
    let n = stream.read(&mut reply).expect("the echo");
    assert_eq!(&reply[..n], b"ECHO GET / HTTP/1.1\r\n");
    drop(stream);
    flowtap.stop();
}
