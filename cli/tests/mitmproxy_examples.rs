//! mitmproxy's own example scripts (`examples/addons`, `examples/contrib` of a mitmproxy
//! checkout in `MITMPROXY_SRC`) run end to end through mitmdump 12.3.1 and through this
//! flowtap by `scripts/mitmproxy-examples`, for a handful of representative ones: each must
//! behave the same (what the client got, what the origin saw, the files and output lines the
//! example is about). The whole set is measured by hand and recorded in docs/compatibility.md.

#![allow(missing_docs)]

use std::path::Path;
use std::process::Command;

/// One per kind of thing the examples do: a counter in a response header, a form rewritten
/// on its way to the origin, a command called from a script, WebSocket and raw TCP messages,
/// a flow file read by plain Python, a WSGI app served from the proxy, the whole flow state
/// dumped as JSON, the bound port read from `proxyserver`, a streamed body through a
/// callable, header rewriting over TLS.
const EXAMPLES: [&str; 12] = [
    "http-add-header.py",
    "http-modify-form.py",
    "commands-simple.py",
    "websocket-simple.py",
    "tcp-simple.py",
    "io-read-saved-flows.py",
    "wsgi-flask-app.py",
    "jsondump.py",
    "portfile.py",
    "save_streamed_data.py",
    "sslstrip.py",
    "domain_fronting.py",
];

#[test]
fn representative_examples_behave_as_on_mitmdump() {
    let Ok(src) = std::env::var("MITMPROXY_SRC") else {
        eprintln!(
            "SKIPPED: mitmproxy's examples need a mitmproxy checkout: set MITMPROXY_SRC \
             (PyPI's mitmproxy 12.3.1 is a wheel without examples/)"
        );
        return;
    };
    if std::env::var("FLOWTAP_SKIP_MITMPROXY").as_deref() == Ok("1") {
        eprintln!("SKIPPED: mitmproxy's examples (FLOWTAP_SKIP_MITMPROXY=1)");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli sits in the workspace");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let results = dir.path().join("results.json");
    let output = Command::new("python3")
        .arg(repo.join("scripts/mitmproxy-examples"))
        .arg(&src)
        .arg("--flowtap")
        .arg(env!("CARGO_BIN_EXE_flowtap"))
        .arg("--only")
        .arg(EXAMPLES.join(","))
        .arg("--json")
        .arg(&results)
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&output.stdout);
    let text = std::fs::read_to_string(&results).unwrap_or_else(|e| {
        panic!(
            "no results ({e}):\n{report}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let results: serde_json::Value = serde_json::from_str(&text).expect("the results are JSON");
    for name in EXAMPLES {
        let result = &results[name];
        assert_eq!(
            result["result"], "same",
            "{name}: {result}\nwhole report:\n{report}"
        );
    }
    assert!(output.status.success(), "{report}");
}
