//! What a script prints and what it leaves in open files, as on mitmdump: `print()` output
//! reaches flowtap's stdout between the flow lines, in order; a script that writes a line per
//! flow to a file it never closes keeps every line when flowtap stops on SIGINT or SIGTERM
//! (the worker finalises Python: `done`, atexit handlers, open files flushed and closed).

#![allow(missing_docs)]

mod support;

use std::process::Command;

use support::scripts::{TempScript, curl_via, echo_origin, status_of};
use support::{Flowtap, WAIT};

const PRINTS: &str = r#"
def request(flow):
    print("request hook for " + flow.request.path)

def response(flow):
    print("response hook for", flow.request.path, end="")
    print(" (printed in two writes)")
"#;

#[test]
fn print_output_reaches_stdout_in_order_with_the_flow_lines() {
    let origin = echo_origin();
    let script = TempScript::new("prints.py", PRINTS);
    let (flowtap, addr) = Flowtap::start(&["-s", script.arg()]);
    for path in ["/one", "/two"] {
        let url = format!("http://127.0.0.1:{}{path}", origin.port());
        assert_eq!(status_of(&curl_via(addr, &url, &[])), 200);
        flowtap.stdout.wait_for("for the flow", |l| {
            l.contains(&format!("{path} HTTP/1.1 << 200"))
        });
    }
    let lines: Vec<String> = flowtap
        .stdout
        .all()
        .into_iter()
        .map(|l| match l.find("GET ") {
            Some(at) => format!("flow {}", &l[at..].split(' ').nth(1).unwrap_or("")),
            None => l,
        })
        .collect();
    let port = origin.port();
    assert_eq!(
        lines,
        [
            "request hook for /one".to_string(),
            "response hook for /one (printed in two writes)".into(),
            format!("flow http://127.0.0.1:{port}/one"),
            "request hook for /two".into(),
            "response hook for /two (printed in two writes)".into(),
            format!("flow http://127.0.0.1:{port}/two"),
        ]
    );
    let (status, _) = flowtap.stop();
    assert!(status.success());
}

#[test]
fn every_worker_prints_to_stdout() {
    let script = TempScript::new(
        "loaded.py",
        "import os\nprint('loaded in worker', os.getpid())\n",
    );
    let (flowtap, _addr) = Flowtap::start(&["-s", script.arg(), "--set", "script_workers=2"]);
    flowtap.stdout.wait_for("from the first worker", |l| {
        l.starts_with("loaded in worker ")
    });
    flowtap.stdout.wait_for("from the second worker", |l| {
        l.starts_with("loaded in worker ")
    });
    let mut pids: Vec<String> = flowtap
        .stdout
        .all()
        .into_iter()
        .filter(|l| l.starts_with("loaded in worker "))
        .collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let (status, _) = flowtap.stop();
    assert!(status.success());
}

/// An old-API script as mitmproxy 0.13's `flowwriter.py` is: the file is opened in `start`
/// and never closed or flushed.
const WRITER: &str = r#"
def start(context, argv):
    context.out = open(argv[1], "w")

def response(context, flow):
    context.out.write(flow.request.path + "\n")
"#;

fn every_line_kept_after(signal: &str) {
    let origin = echo_origin();
    let script = TempScript::new("writer.py", WRITER);
    let out = script.sibling("flows.txt");
    let spec = format!("{} {}", script.arg(), out.display());
    let (mut flowtap, addr) = Flowtap::start(&["-s", &spec]);
    let paths: Vec<String> = (1..=6).map(|n| format!("/flow{n}")).collect();
    for path in &paths {
        let url = format!("http://127.0.0.1:{}{path}", origin.port());
        assert_eq!(status_of(&curl_via(addr, &url, &[])), 200);
    }
    flowtap.stdout.wait_for("for the sixth flow", |l| {
        l.contains("/flow6 HTTP/1.1 << 200")
    });
    let status = Command::new("kill")
        .args([signal, &flowtap.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = flowtap.wait_exit(WAIT);
    assert_eq!(
        exit.code(),
        Some(0),
        "flowtap exited with {exit} on {signal}"
    );
    let written = std::fs::read_to_string(&out).expect("the script's file exists");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines, paths, "the file after {signal}");
}

#[test]
fn an_open_file_keeps_every_line_after_sigint() {
    every_line_kept_after("-INT");
}

#[test]
fn an_open_file_keeps_every_line_after_sigterm() {
    every_line_kept_after("-TERM");
}
