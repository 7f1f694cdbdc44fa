//! Scripts written for mitmproxy 0.11-0.15 (the `(context, flow)` API, `libmproxy` and
//! `netlib` imports, Python 2 source) run through the real `flowtap` with real curl and behave
//! as on the old mitmdump: list-valued headers, the old request/response helpers, `str`
//! bodies, a locally made `HTTPResponse`, the 0.13 streaming modifier, and a script's own
//! replay sent once without re-entering its `request` hook.

#![allow(missing_docs)]

mod support;

use flowtap_certs::testing::OriginCert;
use support::Flowtap;
use support::origin::Origin;
use support::scripts::{TempScript, curl_via, echo_origin, header_value, http10_origin, status_of};
use support::websocket::{WsClient, WsOrigin};

/// Python 2 source, as 0.11's examples were written (print statements, cStringIO).
const PYTHON2: &str = r#"
import cStringIO
from libmproxy.protocol.http import decoded, HTTPResponse
from netlib.odict import ODictCaseless


def start(context, argv):
    context.old, context.new = argv[1], argv[2]
    print "started with", argv[1:]


def request(context, flow):
    if flow.request.pretty_host(hostheader=True).endswith("local.test"):
        flow.reply(HTTPResponse([1, 1], 200, "OK",
                                ODictCaseless([["Content-Type", "text/plain"]]), "made here"))
        return
    q = flow.request.get_query()
    q["added"] = ["yes"]
    flow.request.set_query(q)
    flow.request.headers["x-first-host"] = [flow.request.headers["host"][0]]


def response(context, flow):
    missing = flow.response.headers["x-missing"]
    with decoded(flow.response):
        flow.response.content = flow.response.content.replace(context.old, context.new)
    buf = cStringIO.StringIO()
    buf.write(flow.response.content)
    flow.response.headers["x-missing-was"] = [repr(list(missing))]
    flow.response.headers["x-status"] = ["%d %s" % (flow.response.code, flow.response.msg)]
    flow.response.headers["x-buffered"] = [str(len(buf.getvalue()))]
    print "response for", flow.request.path
"#;

#[test]
fn a_python2_script_of_the_011_era_runs_as_on_the_old_mitmdump() {
    let origin = echo_origin();
    let script = TempScript::new("old011.py", PYTHON2);
    let spec = format!("{} foo bar", script.arg());
    let (flowtap, addr) = Flowtap::start(&["-s", &spec]);
    // The worker's own notice: in flowtap's log on stderr, not among the script's lines.
    let translated: Vec<String> = flowtap
        .stderr
        .all()
        .into_iter()
        .filter(|l| l.contains("translated") || l.contains("fixer") || l.contains("grammar"))
        .collect();
    assert_eq!(translated.len(), 1, "one log line says so: {translated:?}");
    assert!(translated[0].contains("old011.py is Python 2 source: translated to Python 3"));

    let url = format!("http://127.0.0.1:{}/foo?a=1", origin.port());
    let out = curl_via(addr, &url, &[]);
    assert_eq!(status_of(&out), 200, "{out:?}");
    // The echoed request: query extended, the Host header's first value copied.
    assert!(
        out.stdout.contains("GET /bar?a=1&added=yes"),
        "{}",
        out.stdout
    );
    let host = format!("127.0.0.1:{}", origin.port());
    assert_eq!(
        header_value(&out.stdout, "x-first-host").as_deref(),
        Some(&*host)
    );
    assert_eq!(
        header_value(&out.stdout, "x-missing-was").as_deref(),
        Some("[]")
    );
    assert_eq!(
        header_value(&out.stdout, "x-status").as_deref(),
        Some("200 OK")
    );
    let body = out
        .stdout
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert_eq!(
        header_value(&out.stdout, "x-buffered"),
        Some(body.len().to_string())
    );

    let local = curl_via(addr, "http://local.test/", &[]);
    assert_eq!(status_of(&local), 200);
    assert!(local.stdout.ends_with("made here"), "{}", local.stdout);

    flowtap.stdout.wait_for("printed by the script", |l| {
        l == "response for /foo?a=1&added=yes"
    });
    assert!(
        flowtap
            .stdout
            .all()
            .contains(&"started with ['foo', 'bar']".to_string())
    );
    let (status, _) = flowtap.stop();
    assert!(status.success());
}

/// 0.13's `stream_modify.py` and `dup_and_replay.py` in one script; the request hook writes
/// each path it sees to a file.
const STREAM_AND_REPLAY: &str = r#"
def modify(chunks):
    for prefix, content, suffix in chunks:
        yield prefix, content.replace("foo", "bar"), suffix


def start(context, argv):
    context.seen = open(argv[1], "w")


def request(context, flow):
    context.seen.write(flow.request.path + "\n")
    context.seen.flush()
    if flow.request.path == "/replay-me":
        f = context.duplicate_flow(flow)
        f.request.path = "/changed"
        context.replay_request(f)


def responseheaders(context, flow):
    flow.response.stream = modify
"#;

#[test]
fn the_013_streaming_modifier_and_a_replay_sent_once() {
    let origin = echo_origin();
    let script = TempScript::new("old013.py", STREAM_AND_REPLAY);
    let seen = script.sibling("seen.txt");
    let spec = format!("{} {}", script.arg(), seen.display());
    let (flowtap, addr) = Flowtap::start(&["-s", &spec]);

    let url = format!("http://127.0.0.1:{}/foo/food", origin.port());
    let out = curl_via(addr, &url, &[]);
    assert!(
        out.stdout.contains("GET /bar/bard HTTP/1.1"),
        "{}",
        out.stdout
    );

    let url = format!("http://127.0.0.1:{}/replay-me", origin.port());
    assert_eq!(status_of(&curl_via(addr, &url, &[])), 200);
    flowtap.stdout.wait_for("for the replayed flow", |l| {
        l.contains("/changed HTTP/1.1 << 200")
    });
    // The replay finished; had it re-entered the request hook, the hook would have written
    // "/changed" before it went upstream.
    let seen = std::fs::read_to_string(&seen).expect("the script's file");
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["/foo/food", "/replay-me"]
    );
    let (status, _) = flowtap.stop();
    assert!(status.success());
}

/// 0.11's `change_upstream_proxy.py` as it shipped, with the alternative proxy's address as
/// its first argument: requests for `localhost` go through that proxy instead of upstream
/// mode's own (for HTTPS through a CONNECT to it and TLS inside).
const CHANGE_UPSTREAM: &str = r#"
from libmproxy.protocol.http import send_connect_request


def start(context, argv):
    host, port = argv[1].rsplit(":", 1)
    context.alternative = (host, int(port))


def request(context, flow):
    if flow.live and flow.request.host == "localhost":
        server_changed = flow.live.change_server(context.alternative, persistent_change=True)
        if flow.request.scheme == "https" and server_changed:
            send_connect_request(flow.live.c.server_conn, flow.request.host, flow.request.port)
            flow.live.c.establish_ssl(server=True)
"#;

#[test]
fn flow_live_change_server_sends_a_flow_through_another_upstream_proxy() {
    // Upstream mode's own next proxy echoes what reaches it (absolute-form requests); the
    // alternative is a second flowtap that forwards (and intercepts TLS), so a request that
    // went its way comes back as the origin saw it and shows in its flow lines.
    let default_next = echo_origin();
    let origin = echo_origin();
    let cert = OriginCert::new(&["localhost"]);
    let tls_origin = Origin::tls_echo(&cert);
    let trust_origin = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (alternative, alternative_addr) = Flowtap::start(&["--set", &trust_origin]);
    let trust_alternative = format!(
        "ssl_verify_upstream_trusted_ca={}",
        alternative.confdir().join("flowtap-ca-cert.pem").display()
    );
    let script = TempScript::new("change_upstream_proxy.py", CHANGE_UPSTREAM);
    let spec = format!("{} {alternative_addr}", script.arg());
    let upstream = format!("upstream:http://127.0.0.1:{}", default_next.port());
    let (flowtap, addr) = Flowtap::start(&[
        "--mode",
        &upstream,
        "--set",
        &trust_alternative,
        "-s",
        &spec,
    ]);

    let url = format!("http://localhost:{}/switched", origin.port());
    let out = curl_via(addr, &url, &[]);
    assert!(
        out.stdout.contains("\r\n\r\nGET /switched HTTP/1.1"),
        "not through the alternative proxy: {}",
        out.stdout
    );
    alternative
        .stdout
        .wait_for("the alternative's flow line", |l| {
            l.contains("GET http://localhost:") && l.contains("/switched")
        });

    let url = format!("http://127.0.0.1:{}/kept", origin.port());
    let out = curl_via(addr, &url, &[]);
    assert!(
        out.stdout.contains(&format!("\r\n\r\nGET {url} HTTP/1.1")),
        "not through upstream mode's own next proxy: {}",
        out.stdout
    );

    let ca = flowtap.confdir().join("flowtap-ca-cert.pem");
    let url = format!("https://localhost:{}/secret", tls_origin.port());
    let out = curl_via(
        addr,
        &url,
        &["--http1.1", "--cacert", ca.to_str().expect("utf-8 path")],
    );
    assert!(
        out.stdout.contains("\r\n\r\nGET /secret HTTP/1.1"),
        "{out:?}"
    );
    alternative
        .stdout
        .wait_for("the alternative's https flow line", |l| {
            l.contains("https://localhost:") && l.contains("/secret")
        });
    flowtap.stop();
    alternative.stop();
}

#[test]
fn a_modern_script_chooses_the_next_proxy_with_server_conn_via() {
    let default_next = echo_origin();
    let alternative = http10_origin("the alternative answered");
    let script = TempScript::new(
        "via.py",
        &format!(
            "def request(flow):\n    if flow.request.path == '/other':\n        \
             flow.server_conn.via = ('http', ('127.0.0.1', {}))\n",
            alternative.port()
        ),
    );
    let upstream = format!("upstream:http://127.0.0.1:{}", default_next.port());
    let (flowtap, addr) = Flowtap::start(&["--mode", &upstream, "-s", script.arg()]);
    let out = curl_via(addr, "http://origin.test/other", &[]);
    assert!(
        out.stdout.ends_with("the alternative answered"),
        "{}",
        out.stdout
    );
    let out = curl_via(addr, "http://origin.test/same", &[]);
    assert!(
        out.stdout
            .contains("\r\n\r\nGET http://origin.test/same HTTP/1.1"),
        "{}",
        out.stdout
    );
    flowtap.stop();

    // Regular mode: the flow the script sends `via` a proxy goes there; others go direct.
    let (flowtap, addr) = Flowtap::start(&["-s", script.arg()]);
    let out = curl_via(addr, "http://origin.test/other", &[]);
    assert!(
        out.stdout.ends_with("the alternative answered"),
        "{}",
        out.stdout
    );
    let url = format!("http://127.0.0.1:{}/same", default_next.port());
    let out = curl_via(addr, &url, &[]);
    assert!(
        out.stdout.contains("\r\n\r\nGET /same HTTP/1.1"),
        "{}",
        out.stdout
    );
    flowtap.stop();
}

/// 0.13's `ignore_websocket.py` as it shipped: the old proxy stripped `Connection` and
/// `Upgrade`, so the script let them through, answered the 101 itself and relayed the
/// connection as bytes in its `response` hook, then killed the flow.
const IGNORE_WEBSOCKET: &str = r#"
from libmproxy.protocol.http import HTTPRequest
from libmproxy.protocol.tcp import TCPHandler
from libmproxy.protocol import KILL
from libmproxy.script import concurrent


def start(context, argv):
    HTTPRequest._headers_to_strip_off.remove("Connection")
    HTTPRequest._headers_to_strip_off.remove("Upgrade")


def done(context):
    HTTPRequest._headers_to_strip_off.append("Connection")
    HTTPRequest._headers_to_strip_off.append("Upgrade")


@concurrent
def response(context, flow):
    value = flow.response.headers.get_first("Connection", None)
    if value and value.upper() == "UPGRADE":
        # We need to send the response manually now...
        flow.client_conn.send(flow.response.assemble())
        # ...and then delegate to tcp passthrough.
        TCPHandler(flow.live.c, log=False).handle_messages()
        flow.reply(KILL)
"#;

#[test]
fn the_013_websocket_passthrough_hands_the_upgraded_connection_to_the_relay() {
    let origin = WsOrigin::start();
    let script = TempScript::new("ignore_websocket.py", IGNORE_WEBSOCKET);
    let (flowtap, addr) = Flowtap::start(&["-s", script.arg()]);
    let mut client = WsClient::connect(addr, origin.port(), "/ws");
    client.send_text("through");
    assert_eq!(client.text(), "echo: through");
    assert_eq!(origin.received(), ["through"]);
    client.close("done");
    // A plain request is no upgrade: the script leaves it alone.
    let plain = echo_origin();
    let url = format!("http://127.0.0.1:{}/plain", plain.port());
    assert_eq!(status_of(&curl_via(addr, &url, &[])), 200);
    let errors: Vec<String> = flowtap
        .stderr
        .all()
        .into_iter()
        .filter(|l| l.contains("Error") || l.contains("Traceback"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (status, _) = flowtap.stop();
    assert!(status.success());
}
