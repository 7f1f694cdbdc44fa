//! mitmdump's built-in addons run natively in the proxy: each option changes traffic as in
//! mitmdump (real curl, origins on 127.0.0.1 port 0), takes mitmdump's `--set` name and flag,
//! reaches scripts in `ctx.options`, and a spec that does not parse stops the command with
//! mitmdump's message and status.

#![allow(missing_docs)]

mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use flowtap_certs::testing::OriginCert;
use support::origin::{Origin, content_length, read_head};
use support::scripts::{TempScript, curl_via, echo_origin, has_header, header_value, status_of};
use support::{Flowtap, curl};

/// An origin that answers each request with `extra` headers and the request it got (head and
/// body) as its body.
fn echo_with(extra: &'static str) -> Origin {
    Origin::start(move |mut stream| serve_echo(&mut stream, extra))
}

fn serve_echo(stream: &mut (impl Read + Write), extra: &str) {
    while let Some((head, mut body)) = read_head(stream) {
        let length = content_length(&head);
        if body.len() < length {
            let mut rest = vec![0u8; length - body.len()];
            if stream.read_exact(&mut rest).is_err() {
                return;
            }
            body.extend_from_slice(&rest);
        }
        // A login sets a cookie (for stickycookie).
        let cookie = if head.starts_with("GET /login") {
            "Set-Cookie: session=abc123; Path=/\r\n"
        } else {
            ""
        };
        let mut echoed = head.into_bytes();
        echoed.extend_from_slice(&body);
        let reply = format!(
            "HTTP/1.1 200 OK\r\n{extra}{cookie}Content-Length: {}\r\n\r\n",
            echoed.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() || stream.write_all(&echoed).is_err() {
            return;
        }
    }
}

/// The body of the last response in an `-i` output (after a CONNECT's own answer, if any).
fn body_of(out: &support::Curl) -> &str {
    let last = out.stdout.rfind("\r\nHTTP/").map_or(0, |i| i + 2);
    out.stdout[last..]
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
}

#[test]
fn map_remote_sends_the_request_to_the_mapped_url() {
    let origin = echo_origin();
    let spec = format!("|//nowhere.test/|//127.0.0.1:{}/api/", origin.port());
    let (flowtap, proxy) = Flowtap::start(&["-M", &spec]);
    let out = curl_via(proxy, "http://nowhere.test/items?q=1", &[]).ok();
    assert_eq!(status_of(&out), 200, "{}", out.stdout);
    assert!(
        body_of(&out).starts_with("GET /api/items?q=1 HTTP/1.1"),
        "{}",
        out.stdout
    );
    let host = format!("127.0.0.1:{}", origin.port());
    assert!(has_header(body_of(&out), "host", &host), "{}", out.stdout);
    // Python's group references in the replacement, through --set.
    let spec = format!(
        r"|//(\w+)\.test/(\w+)|//127.0.0.1:{}/\g<2>/\1",
        origin.port()
    );
    let (flowtap2, proxy2) = Flowtap::start(&["--set", &format!("map_remote={spec}")]);
    let out = curl_via(proxy2, "http://shop.test/cart", &[]).ok();
    assert!(
        body_of(&out).starts_with("GET /cart/shop HTTP/1.1"),
        "{}",
        out.stdout
    );
    flowtap.stop();
    flowtap2.stop();
}

#[test]
fn map_local_answers_from_local_files() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("js")).expect("mkdir");
    std::fs::write(dir.path().join("js/app.js"), "console.log(1)").expect("write");
    std::fs::write(dir.path().join("index.html"), "<h1>local</h1>").expect("write");
    let spec = format!("|example.test/static|{}", dir.path().display());
    let (flowtap, proxy) = Flowtap::start(&["--map-local", &spec]);
    // example.test does not resolve: an answer comes from the files.
    let out = curl_via(proxy, "http://example.test/static/js/app.js?v=2", &[]).ok();
    assert_eq!(status_of(&out), 200, "{}", out.stdout);
    assert_eq!(body_of(&out), "console.log(1)");
    assert!(has_header(&out.stdout, "content-type", "text/javascript"));
    assert!(has_header(&out.stdout, "server", "mitmproxy 12.3.1"));
    let out = curl_via(proxy, "http://example.test/static/", &[]).ok();
    assert_eq!(body_of(&out), "<h1>local</h1>");
    let out = curl_via(proxy, "http://example.test/static/missing.css", &[]).ok();
    assert_eq!(status_of(&out), 404, "{}", out.stdout);
    let out = curl_via(
        proxy,
        "http://example.test/static/../../etc/passwd",
        &["--path-as-is"],
    )
    .ok();
    assert_eq!(
        status_of(&out),
        502,
        "a path out of the directory is no candidate: {}",
        out.stdout
    );
    flowtap.stop();
}

#[test]
fn modify_headers_sets_and_removes_headers_both_ways() {
    let origin = echo_with("X-Origin: original\r\nX-Keep: 1\r\n");
    let (flowtap, proxy) = Flowtap::start(&[
        "-H",
        "/~q/X-Added/yes",
        "-H",
        "|~q|User-Agent|",
        "--set",
        "modify_headers=/~s/X-Origin/replaced",
    ]);
    let url = format!("http://127.0.0.1:{}/h", origin.port());
    let out = curl_via(proxy, &url, &[]).ok();
    let echoed = body_of(&out);
    assert!(has_header(echoed, "x-added", "yes"), "{echoed}");
    assert!(header_value(echoed, "user-agent").is_none(), "{echoed}");
    assert!(
        has_header(&out.stdout, "x-origin", "replaced"),
        "{}",
        out.stdout
    );
    assert!(has_header(&out.stdout, "x-keep", "1"));
    flowtap.stop();
}

#[test]
fn modify_body_replaces_in_request_and_response_bodies() {
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-B", "/~q/secret/XXXX", "-B", "/~s/world/there"]);
    let url = format!("http://127.0.0.1:{}/b", origin.port());
    let out = curl_via(proxy, &url, &["--data-binary", "hello world secret"]).ok();
    let body = body_of(&out);
    assert!(body.ends_with("hello there XXXX"), "{body}");
    // The echoed request's length still agrees with what the origin read.
    assert!(has_header(body, "content-length", "16"), "{body}");

    // A gzip response is replaced in its decoded text and sent gzip again.
    let gzipped = gzip(b"hello world, gzip");
    let origin = Origin::start(move |mut stream| {
        while read_head(&mut stream).is_some() {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                gzipped.len()
            );
            if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&gzipped).is_err() {
                return;
            }
        }
    });
    let url = format!("http://127.0.0.1:{}/gz", origin.port());
    let out = curl_via(proxy, &url, &["--compressed"]).ok();
    assert_eq!(body_of(&out), "hello there, gzip");
    assert!(has_header(&out.stdout, "content-encoding", "gzip"));
    flowtap.stop();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run gzip");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(data)
        .expect("feed gzip");
    child.wait_with_output().expect("gzip output").stdout
}

#[test]
fn anticache_and_anticomp_change_the_request_headers() {
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["--anticache", "--set", "anticomp=true"]);
    let url = format!("http://127.0.0.1:{}/c", origin.port());
    let out = curl_via(
        proxy,
        &url,
        &[
            "-H",
            "If-None-Match: \"v1\"",
            "-H",
            "If-Modified-Since: Wed, 21 Oct 2015 07:28:00 GMT",
            "-H",
            "Accept-Encoding: gzip, br",
        ],
    )
    .ok();
    let echoed = body_of(&out);
    assert!(header_value(echoed, "if-none-match").is_none(), "{echoed}");
    assert!(
        header_value(echoed, "if-modified-since").is_none(),
        "{echoed}"
    );
    assert!(
        has_header(echoed, "accept-encoding", "identity"),
        "{echoed}"
    );
    flowtap.stop();

    // Off by default: the headers pass.
    let (flowtap, proxy) = Flowtap::start(&[]);
    let out = curl_via(proxy, &url, &["-H", "If-None-Match: \"v1\""]).ok();
    assert!(has_header(body_of(&out), "if-none-match", "\"v1\""));
    flowtap.stop();
}

#[test]
fn stickycookie_adds_the_cookies_a_server_set() {
    let origin = echo_with("");
    let (flowtap, proxy) = Flowtap::start(&["--stickycookie", "~d 127.0.0.1"]);
    let base = format!("http://127.0.0.1:{}", origin.port());
    let out = curl_via(proxy, &format!("{base}/login"), &[]).ok();
    assert!(has_header(
        &out.stdout,
        "set-cookie",
        "session=abc123; Path=/"
    ));
    let out = curl_via(proxy, &format!("{base}/page"), &[]).ok();
    assert!(
        has_header(body_of(&out), "cookie", "session=abc123"),
        "the next request carries the cookie: {}",
        out.stdout
    );
    flowtap.stop();
}

#[test]
fn stickyauth_adds_the_authorization_a_host_saw() {
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["--stickyauth", "."]);
    let base = format!("http://127.0.0.1:{}", origin.port());
    curl_via(proxy, &format!("{base}/a"), &["-u", "foo:bar"]).ok();
    let out = curl_via(proxy, &format!("{base}/b"), &[]).ok();
    assert!(
        has_header(body_of(&out), "authorization", "Basic Zm9vOmJhcg=="),
        "{}",
        out.stdout
    );
    flowtap.stop();
}

#[test]
fn proxyauth_asks_http_clients_with_407() {
    let origin = echo_origin();
    let cert = OriginCert::new(&["localhost"]);
    let config = cert.server_config(&[b"http/1.1".to_vec()]);
    let tls_origin = Origin::start(move |tcp| {
        let Ok(conn) = rustls::ServerConnection::new(Arc::clone(&config)) else {
            return;
        };
        serve_echo(&mut rustls::StreamOwned::new(conn, tcp), "");
    });
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (flowtap, proxy) = Flowtap::start(&["--proxyauth", "alice:s3cret", "--set", &trust]);
    let url = format!("http://127.0.0.1:{}/p", origin.port());
    let out = curl_via(proxy, &url, &[]).ok();
    assert_eq!(status_of(&out), 407, "{}", out.stdout);
    assert!(has_header(
        &out.stdout,
        "proxy-authenticate",
        "Basic realm=\"mitmproxy\""
    ));
    let out = curl_via(proxy, &url, &["-U", "alice:wrong"]).ok();
    assert_eq!(status_of(&out), 407);
    let out = curl_via(proxy, &url, &["-U", "alice:s3cret"]).ok();
    assert_eq!(status_of(&out), 200, "{}", out.stdout);
    assert!(
        header_value(body_of(&out), "proxy-authorization").is_none(),
        "the credentials stay with the proxy: {}",
        out.stdout
    );

    // HTTPS: the CONNECT is asked; once it authenticated, its tunnel's requests pass.
    let ca = flowtap.confdir().join("flowtap-ca-cert.pem");
    let ca = ca.to_str().expect("utf-8");
    let url = format!("https://localhost:{}/tls", tls_origin.port());
    let out = curl_via(proxy, &url, &["--cacert", ca]);
    assert_ne!(out.code, 0, "a CONNECT without credentials got through");
    assert!(out.stdout.contains("407"), "{out:?}");
    let out = curl_via(proxy, &url, &["--cacert", ca, "-U", "alice:s3cret"]).ok();
    assert!(
        body_of(&out).starts_with("GET /tls HTTP/1.1"),
        "{}",
        out.stdout
    );
    flowtap.stop();
}

#[test]
fn proxyauth_takes_any_and_htpasswd_files() {
    let origin = echo_origin();
    let url = format!("http://127.0.0.1:{}/", origin.port());
    let (flowtap, proxy) = Flowtap::start(&["--set", "proxyauth=any"]);
    assert_eq!(status_of(&curl_via(proxy, &url, &[]).ok()), 407);
    assert_eq!(
        status_of(&curl_via(proxy, &url, &["-U", "who:ever"]).ok()),
        200
    );
    flowtap.stop();

    // `htpasswd -s`: base64 of the password's SHA-1, made here with openssl.
    let dir = tempfile::tempdir().expect("dir");
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret").expect("write");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl dgst -sha1 -binary {} | openssl base64",
            password.display()
        ))
        .output()
        .expect("run openssl");
    let hash = String::from_utf8(output.stdout).expect("base64");
    let htpasswd = dir.path().join("users");
    std::fs::write(
        &htpasswd,
        format!("# users\nalice:{{SHA}}{}\n", hash.trim()),
    )
    .expect("write");
    let spec = format!("@{}", htpasswd.display());
    let (flowtap, proxy) = Flowtap::start(&["--proxyauth", &spec]);
    assert_eq!(
        status_of(&curl_via(proxy, &url, &["-U", "alice:s3cret"]).ok()),
        200
    );
    assert_eq!(
        status_of(&curl_via(proxy, &url, &["-U", "alice:other"]).ok()),
        407
    );
    assert_eq!(
        status_of(&curl_via(proxy, &url, &["-U", "bob:s3cret"]).ok()),
        407
    );
    flowtap.stop();
}

#[test]
fn proxyauth_in_reverse_mode_asks_as_a_server_with_401() {
    let origin = echo_origin();
    let target = format!("reverse:http://127.0.0.1:{}", origin.port());
    let (flowtap, addr) = Flowtap::start(&["--mode", &target, "--proxyauth", "alice:s3cret"]);
    let out = curl(&["-i", &format!("http://{addr}/r")]).ok();
    assert_eq!(status_of(&out), 401, "{}", out.stdout);
    assert!(has_header(
        &out.stdout,
        "www-authenticate",
        "Basic realm=\"mitmproxy\""
    ));
    let out = curl(&["-i", "-u", "alice:s3cret", &format!("http://{addr}/r")]).ok();
    assert_eq!(status_of(&out), 200);
    assert!(header_value(body_of(&out), "authorization").is_none());
    flowtap.stop();
}

#[test]
fn block_list_answers_or_closes_matching_requests() {
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[
        "--set",
        "block_list=/~u forbidden/403",
        "--set",
        "block_list=:~u gone:444",
    ]);
    let base = format!("http://127.0.0.1:{}", origin.port());
    let out = curl_via(proxy, &format!("{base}/forbidden"), &[]).ok();
    assert_eq!(status_of(&out), 403, "{}", out.stdout);
    assert_eq!(body_of(&out), "");
    assert!(has_header(&out.stdout, "server", "mitmproxy 12.3.1"));
    let out = curl_via(proxy, &format!("{base}/gone"), &[]);
    assert_eq!(out.code, 52, "444 closes without a response: {out:?}");
    assert_eq!(
        status_of(&curl_via(proxy, &format!("{base}/fine"), &[]).ok()),
        200
    );
    flowtap.stop();
}

/// A private, non-loopback address of this machine (clients from loopback are never blocked).
fn private_address() -> Option<String> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback() && !flowtap_proxy_core::builtins::is_global((*a).into()))
        .map(|a| a.to_string())
}

#[test]
fn block_private_refuses_clients_from_private_addresses() {
    let Some(address) = private_address() else {
        eprintln!("skipped: this machine has no private non-loopback IPv4 address");
        return;
    };
    let origin = echo_origin();
    let url = format!("http://127.0.0.1:{}/", origin.port());
    let (flowtap, proxy) = Flowtap::start(&["--listen-host", &address]);
    let out = curl(&[
        "--interface",
        &address,
        "-x",
        &format!("http://{proxy}"),
        &url,
    ])
    .ok();
    assert!(
        out.stdout.starts_with("GET / HTTP/1.1"),
        "allowed by default"
    );
    flowtap.stop();

    let (flowtap, proxy) =
        Flowtap::start(&["--listen-host", &address, "--set", "block_private=true"]);
    let out = curl(&[
        "--interface",
        &address,
        "-x",
        &format!("http://{proxy}"),
        &url,
    ]);
    assert_ne!(out.code, 0, "a private client got through: {out:?}");
    flowtap.stderr.wait_for("the refusal", |l| {
        l.contains(&format!(
            "Client connection from {address} killed by block_private option."
        ))
    });
    flowtap.stop();
}

#[test]
fn showhost_prints_the_host_header_url() {
    let origin = echo_origin();
    let target = format!("reverse:http://127.0.0.1:{}", origin.port());
    let args = ["--mode", &target, "--set", "keep_host_header=true"];
    for (extra, shown) in [
        (None, format!("http://127.0.0.1:{}/s", origin.port())),
        (Some("--showhost"), "http://www.example.test/s".to_string()),
    ] {
        let mut line: Vec<&str> = args.to_vec();
        line.extend(extra);
        let (flowtap, addr) = Flowtap::start(&line);
        curl(&["-H", "Host: www.example.test", &format!("http://{addr}/s")]).ok();
        flowtap
            .stdout
            .wait_for("the flow line", |l| l.contains(&format!("GET {shown} ")));
        flowtap.stop();
    }
}

const OPTIONS_SCRIPT: &str = r#"
from mitmproxy import ctx

def request(flow):
    o = ctx.options
    flow.request.headers["x-options"] = (
        f"{o.map_remote}|{o.anticache}|{o.block_list}|{o.stickycookie}|{o.block_global}"
    )
"#;

#[test]
fn scripts_see_the_builtin_options() {
    let script = TempScript::new("options.py", OPTIONS_SCRIPT);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[
        "-s",
        script.arg(),
        "-M",
        "|//a.test/|//b.test/",
        "--anticache",
        "--set",
        "block_list=/~u x/404",
    ]);
    let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", origin.port()), &[]).ok();
    assert!(
        body_of(&out).contains("x-options: ['|//a.test/|//b.test/']|True|['/~u x/404']|None|True"),
        "{}",
        out.stdout
    );
    flowtap.stop();
}

#[test]
fn a_spec_that_does_not_parse_stops_the_command_as_in_mitmdump() {
    for (args, message) in [
        (
            vec!["--map-remote", "/a"],
            "Cannot parse map_remote option /a: Invalid number of parameters (2 or 3 are expected)",
        ),
        (
            vec!["-H", "|x"],
            "Cannot parse modify_headers option |x: Invalid number of parameters (2 or 3 are expected)",
        ),
        (
            vec!["--map-local", "/a/b/nonexistent"],
            "Cannot parse map_local option /a/b/nonexistent: Invalid file path: nonexistent (",
        ),
        (
            vec!["--set", "block_list=/~q/abc"],
            "Cannot parse block_list option /~q/abc: Invalid HTTP status code: abc",
        ),
        (
            vec!["--proxyauth", "bad"],
            "Invalid proxyauth specification.",
        ),
        (
            vec!["--stickycookie", "~~bad"],
            "Invalid filter expression: \"~~bad\"",
        ),
        (
            vec!["-B", "/(?<=a)b/c"],
            "Cannot parse modify_body option /(?<=a)b/c: Invalid regular expression",
        ),
    ] {
        let mut flowtap = Flowtap::spawn(&[&["-p", "0"], &args[..]].concat());
        let status = flowtap.wait_exit(Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{args:?}");
        flowtap.stderr.wait_for(message, |l| l.contains(message));
    }
}

#[test]
fn upstream_auth_in_reverse_mode_is_the_requests_authorization() {
    let origin = echo_origin();
    let target = format!("reverse:http://127.0.0.1:{}", origin.port());
    let (flowtap, addr) = Flowtap::start(&["--mode", &target, "--upstream-auth", "svc:t0ken"]);
    let out = curl(&["-i", &format!("http://{addr}/u")]).ok();
    // base64("svc:t0ken")
    assert!(
        has_header(body_of(&out), "authorization", "Basic c3ZjOnQwa2Vu"),
        "{}",
        out.stdout
    );
    flowtap.stop();
    let mut flowtap = Flowtap::spawn(&["-p", "0", "--upstream-auth", "nocolon"]);
    assert_eq!(flowtap.wait_exit(Duration::from_secs(20)).code(), Some(1));
    flowtap.stderr.wait_for("the reason", |l| {
        l.contains("Invalid upstream auth specification: nocolon")
    });
}

/// Records what the script saw: the request after the addons that run before scripts
/// (anticache) and before those that run after (map_remote, modify_headers); the response
/// before modify_body.
const ORDER_SCRIPT: &str = r#"
def request(flow):
    flow.request.headers["x-script-saw"] = (
        f"{flow.request.pretty_url}|{'if-none-match' in flow.request.headers}"
        f"|{'x-added' in flow.request.headers}"
    )

def response(flow):
    flow.response.headers["x-script-body-had-world"] = str(b"world" in flow.response.content)
"#;

#[test]
fn scripts_run_between_the_addons_as_in_mitmproxys_chain() {
    let script = TempScript::new("order.py", ORDER_SCRIPT);
    let origin = echo_origin();
    let map = format!("|//mapped.test/|//127.0.0.1:{}/", origin.port());
    let (flowtap, proxy) = Flowtap::start(&[
        "-s",
        script.arg(),
        "--anticache",
        "-M",
        &map,
        "-H",
        "/~q/X-Added/yes",
        "-B",
        "/~s/world/there",
    ]);
    let out = curl_via(
        proxy,
        "http://mapped.test/o",
        &["-H", "If-None-Match: \"1\"", "--data-binary", "hello world"],
    )
    .ok();
    let echoed = body_of(&out);
    assert!(
        has_header(echoed, "x-script-saw", "http://mapped.test/o|False|True"),
        "anticache ran before the script, map_remote after; modify_headers ran in requestheaders: {echoed}"
    );
    assert!(echoed.ends_with("hello there"), "{echoed}");
    assert!(
        has_header(&out.stdout, "x-script-body-had-world", "True"),
        "modify_body changed the response after the script saw it: {}",
        out.stdout
    );
    flowtap.stop();
}

#[test]
fn a_mitmdump_option_flowtap_lacks_is_warned_about() {
    // The warning comes before the "listening at" line that `start` waits for.
    let (flowtap, _) = Flowtap::start(&["--set", "tls_ecdh_curve_client=prime256v1"]);
    let lines = flowtap.stderr.all();
    assert!(
        lines.iter().any(|l| l
            .contains("option \"tls_ecdh_curve_client\" is mitmdump's but not built in flowtap")),
        "{lines:?}"
    );
    flowtap.stop();
}

/// `https-get.mitm` (recorded by mitmdump) pointed at a port nothing listens on.
fn offline_recording(dir: &std::path::Path) -> (std::path::PathBuf, u16) {
    let file = std::fs::File::open(support::scripts::fixture("https-get.mitm")).expect("fixture");
    let (mut flows, error) =
        flowtap_flow::FlowReader::new(std::io::BufReader::new(file)).read_all();
    assert!(error.is_none());
    let port = support::free_port();
    flows[0].request.as_mut().expect("a request").port = u32::from(port);
    let path = dir.join("offline.mitm");
    let mut writer = flowtap_flow::FlowWriter::new(std::fs::File::create(&path).expect("create"));
    writer.add(&flows[0]).expect("write");
    (path, port)
}

#[test]
fn connection_strategy_lazy_serves_https_replays_with_the_server_offline() {
    let dir = tempfile::tempdir().expect("dir");
    let (recording, port) = offline_recording(dir.path());
    let url = format!("https://127.0.0.1:{port}/secure/path?q=abc");
    for (strategy, served) in [("eager", false), ("lazy", true)] {
        let (flowtap, proxy) = Flowtap::start(&[
            "-S",
            recording.to_str().expect("utf-8"),
            "--set",
            &format!("connection_strategy={strategy}"),
        ]);
        let ca = flowtap.confdir().join("flowtap-ca-cert.pem");
        let out = curl_via(proxy, &url, &["--cacert", ca.to_str().expect("utf-8")]);
        if served {
            let out = out.ok();
            assert_eq!(status_of(&out), 200, "{}", out.stdout);
        } else {
            // Eager: the CONNECT needs the server, which is not there.
            assert!(out.stdout.contains("502"), "{out:?}");
        }
        flowtap.stop();
    }
}

#[test]
fn connection_strategy_lazy_connects_when_the_first_request_goes_out() {
    let cert = OriginCert::new(&["localhost"]);
    let config = cert.server_config(&[b"http/1.1".to_vec()]);
    let tls_origin = Origin::start(move |tcp| {
        let Ok(conn) = rustls::ServerConnection::new(Arc::clone(&config)) else {
            return;
        };
        serve_echo(&mut rustls::StreamOwned::new(conn, tcp), "");
    });
    let plain = echo_origin();
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (flowtap, proxy) = Flowtap::start(&["--set", &trust, "--set", "connection_strategy=lazy"]);
    let ca = flowtap.confdir().join("flowtap-ca-cert.pem");
    let url = format!("https://localhost:{}/lazy", tls_origin.port());
    let out = curl_via(
        proxy,
        &url,
        &["--cacert", ca.to_str().expect("utf-8"), "--http2"],
    )
    .ok();
    assert!(
        body_of(&out).starts_with("GET /lazy HTTP/1.1"),
        "{}",
        out.stdout
    );
    // Plain HTTP inside a CONNECT tunnel too.
    let url = format!("http://127.0.0.1:{}/tunnelled", plain.port());
    let out = curl_via(proxy, &url, &["--proxytunnel"]).ok();
    assert!(
        body_of(&out).starts_with("GET /tunnelled HTTP/1.1"),
        "{}",
        out.stdout
    );
    flowtap.stop();
}
