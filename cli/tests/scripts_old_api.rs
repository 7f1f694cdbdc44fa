//! Scripts written for mitmproxy 0.11-0.15 (the `(context, flow)` API, `libmproxy` and
//! `netlib` imports, Python 2 source) run through the real `flowtap` with real curl and behave
//! as on the old mitmdump: list-valued headers, the old request/response helpers, `str`
//! bodies, a locally made `HTTPResponse`, the 0.13 streaming modifier, and a script's own
//! replay sent once without re-entering its `request` hook.

#![allow(missing_docs)]

mod support;

use support::Flowtap;
use support::scripts::{TempScript, curl_via, echo_origin, header_value, status_of};

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
