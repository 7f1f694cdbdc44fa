//! A script edited on disk while `flowtap -s` runs is reloaded: the new version's changes reach
//! the client and the origin, including a hook the first version did not implement.

#![allow(missing_docs)]

mod support;

use std::time::{Duration, SystemTime};

use support::Flowtap;
use support::scripts::{TempScript, curl_via, echo_origin, has_header, poll};

/// Version 1 marks requests only: the proxy has no reason to call `response`.
const FIRST: &str = r#"
def request(flow):
    flow.request.headers["x-version"] = "1"
"#;

/// Version 2 marks requests differently and implements `response` too.
const SECOND: &str = r#"
def request(flow):
    flow.request.headers["x-version"] = "2"

def response(flow):
    flow.response.headers["x-reloaded"] = "yes"
"#;

/// Writes `source` over the script with a modification time that differs from the old one
/// even on a coarse-grained file system.
fn rewrite(script: &TempScript, source: &str) {
    std::fs::write(&script.path, source).expect("rewrite the script");
    let later = SystemTime::now() + Duration::from_secs(5);
    let file = std::fs::File::options()
        .write(true)
        .open(&script.path)
        .expect("open the script");
    file.set_modified(later).expect("set the modification time");
}

#[test]
fn an_edited_script_is_reloaded_with_its_new_hooks() {
    let script = TempScript::new("versioned.py", FIRST);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);
    let url = format!("http://127.0.0.1:{}/v", origin.port());

    let first = curl_via(proxy, &url, &[]);
    assert!(
        first.stdout.contains("x-version: 1"),
        "the origin sees version 1's header: {}",
        first.stdout
    );
    assert!(!has_header(&first.stdout, "x-reloaded", "yes"));

    rewrite(&script, SECOND);
    let reloaded = poll("the reloaded script's response hook", || {
        let out = curl_via(proxy, &url, &[]);
        has_header(&out.stdout, "x-reloaded", "yes").then_some(out)
    });
    assert!(
        reloaded.stdout.contains("x-version: 2"),
        "the origin sees version 2's header: {}",
        reloaded.stdout
    );
    assert!(!reloaded.stdout.contains("x-version: 1"));
    drop(flowtap);
}
