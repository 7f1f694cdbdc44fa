//! What a script prints and what it leaves in open files, as on mitmdump: `print()` output
//! reaches flowtap's stdout between the flow lines, in order; a script that writes a line per
//! flow to a file it never closes keeps every line when flowtap stops on SIGINT or SIGTERM
//! (the worker finalises Python: `done`, atexit handlers, open files flushed and closed), and
//! also when flowtap itself is killed (the worker sees its stdin close and drains).

#![allow(missing_docs)]

mod support;

use std::process::Command;

use support::scripts::{TempScript, children_of, curl_via, echo_origin, poll, status_of};
use support::{Flowtap, WAIT};

/// `PYTHONUNBUFFERED` set empty is unset for Python (only a non-empty value counts).
const UNSET_UNBUFFERED: [(&str, &str); 1] = [("PYTHONUNBUFFERED", "")];

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
    // Python left to its defaults (a pipe is block-buffered), whatever the caller's
    // environment says: the worker itself must write each print at once.
    let (flowtap, addr) = Flowtap::start_with_env(&["-s", script.arg()], &UNSET_UNBUFFERED);
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
    let origin = echo_origin();
    let (mut flowtap, addr) = Flowtap::start_with_env(
        &["-s", script.arg(), "--set", "script_workers=2"],
        &UNSET_UNBUFFERED,
    );
    // Serving (a SIGTERM right at start-up can come before flowtap's handler is installed).
    let url = format!("http://127.0.0.1:{}/", origin.port());
    assert_eq!(status_of(&curl_via(addr, &url, &[])), 200);
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
    flowtap.terminate();
    let status = flowtap.wait_exit(WAIT);
    assert!(status.success(), "{status}: {:?}", flowtap.stderr.all());
}

/// An old-API script as mitmproxy 0.13's `flowwriter.py` is: the file is opened in `start`
/// and never closed or flushed.
const WRITER: &str = r#"
def start(context, argv):
    context.out = open(argv[1], "w")

def response(context, flow):
    context.out.write(flow.request.path + "\n")
"#;

/// Runs six flows through the writer script, sends `signal` to flowtap, and returns what the
/// file holds once flowtap and its worker are gone, the paths requested, and flowtap's exit.
fn lines_kept_after(signal: &str) -> (Vec<String>, Vec<String>, std::process::ExitStatus) {
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
    let workers = children_of(flowtap.pid());
    assert!(!workers.is_empty(), "flowtap spawned no worker");
    let status = Command::new("kill")
        .args([signal, &flowtap.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = flowtap.wait_exit(WAIT);
    // A worker whose proxy was killed drains on its own (its stdin closed); a reaped or
    // zombie worker has ended.
    poll("the workers to exit", || {
        workers.iter().all(|pid| gone(*pid)).then_some(())
    });
    let written = std::fs::read_to_string(&out).expect("the script's file exists");
    (written.lines().map(String::from).collect(), paths, exit)
}

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.contains(") Z "),
        Err(_) => true,
    }
}

fn every_line_kept_after(signal: &str) {
    let (lines, paths, exit) = lines_kept_after(signal);
    assert_eq!(
        exit.code(),
        Some(0),
        "flowtap exited with {exit} on {signal}"
    );
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

#[test]
fn an_open_file_keeps_every_line_when_flowtap_is_killed() {
    let (lines, paths, _) = lines_kept_after("-KILL");
    assert_eq!(lines, paths, "the file after SIGKILL to flowtap");
}
