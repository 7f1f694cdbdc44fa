//! `--set intercept=FILTER` with real curl through the proxy: matching flows are paused before
//! they reach the origin until a script resumes or kills them; others go through.

#![allow(missing_docs)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use support::Flowtap;
use support::origin::{Origin, read_head};
use support::scripts::{TempScript, curl_via, poll_text, status_of};

/// An origin that answers 200 "ok" and records the request line of each request it got.
fn recording_origin() -> (Origin, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let origin = Origin::start(move |mut stream| {
        while let Some((head, _)) = read_head(&mut stream) {
            let line = head.lines().next().unwrap_or_default().to_string();
            log.lock().unwrap().push(line);
            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if stream.write_all(reply).is_err() {
                return;
            }
        }
    });
    (origin, seen)
}

fn reached(seen: &Arc<Mutex<Vec<String>>>, path: &str) -> bool {
    let line = format!("GET {path} HTTP/1.1");
    seen.lock().unwrap().contains(&line)
}

/// The script sees matching flows intercepted in `request`: it lets `/held/auto` go at once,
/// keeps `/held/1` paused, and resumes it when `/release` comes.
const RESUMING_SCRIPT: &str = r#"
held = {}

def request(flow):
    path = flow.request.path
    if flow.intercepted and path == "/held/auto":
        flow.resume()
    elif flow.intercepted:
        held[path] = flow
    elif path == "/release":
        held.pop("/held/1").resume()
"#;

#[test]
fn matching_requests_wait_until_a_script_resumes_them() {
    let (origin, seen) = recording_origin();
    let script = TempScript::new("resume.py", RESUMING_SCRIPT);
    let (flowtap, proxy) =
        Flowtap::start(&["-s", script.arg(), "--set", "intercept=~q & ~u /held"]);
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", origin.port());

    // Not matching: straight through. Resumed inside its own hook: straight through.
    assert_eq!(status_of(&curl_via(proxy, &url("/free"), &[]).ok()), 200);
    assert_eq!(
        status_of(&curl_via(proxy, &url("/held/auto"), &[]).ok()),
        200
    );

    let held_url = url("/held/1");
    let held = thread::spawn(move || curl_via(proxy, &held_url, &[]));
    thread::sleep(Duration::from_millis(800));
    assert!(!held.is_finished(), "an intercepted request was answered");
    assert!(
        !reached(&seen, "/held/1"),
        "an intercepted request reached the origin"
    );

    assert_eq!(status_of(&curl_via(proxy, &url("/release"), &[]).ok()), 200);
    let out = held.join().expect("curl thread").ok();
    assert_eq!(status_of(&out), 200, "{out:?}");
    assert!(out.stdout.ends_with("ok"), "{out:?}");
    assert!(reached(&seen, "/held/1"));
    flowtap.stop();
}

/// No script implements `request`, so the proxy itself keeps the flow; a script that kept the
/// flow object from `requestheaders` kills it when `/kill` comes.
const KILLING_SCRIPT: &str = r#"
held = []

def requestheaders(flow):
    if flow.request.path.startswith("/held"):
        held.append(flow)
    elif flow.request.path == "/kill":
        held.pop().kill()

def error(flow):
    with open(__file__ + ".errors", "a") as f:
        f.write(f"{flow.request.path} {flow.error.msg}\n")
"#;

#[test]
fn a_script_kills_a_flow_the_proxy_holds() {
    let (origin, seen) = recording_origin();
    let script = TempScript::new("kill.py", KILLING_SCRIPT);
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg(), "--set", "intercept=~u /held"]);
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", origin.port());

    let held_url = url("/held/2");
    let held = thread::spawn(move || curl_via(proxy, &held_url, &[]));
    thread::sleep(Duration::from_millis(800));
    assert!(!held.is_finished(), "an intercepted request was answered");

    assert_eq!(status_of(&curl_via(proxy, &url("/kill"), &[]).ok()), 200);
    let out = held.join().expect("curl thread");
    assert_ne!(out.code, 0, "a killed request got an answer: {out:?}");
    assert!(
        !reached(&seen, "/held/2"),
        "a killed request reached the origin"
    );
    let errors = script.sibling("kill.py.errors");
    let text = poll_text("the error hook", &errors);
    assert_eq!(text, "/held/2 Connection killed.\n");
    flowtap.stop();
}

#[test]
fn a_malformed_intercept_filter_exits_2_with_its_position() {
    let (code, _, stderr) = Flowtap::run(&["-n", "--set", "intercept=~u /x & ("], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid filter expression"), "{stderr}");
    assert!(stderr.contains("at char 9"), "{stderr}");
}
