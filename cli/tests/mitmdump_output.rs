//! flowtap's terminal output against mitmdump 12.3.1's, recorded in `fixtures/mitmdump-12.3.1`
//! (README.txt there says how): the real binary, real CPython scripts, real curl.
//!
//! - A script's log lines at every level, through `logging` and `ctx.log`, and a hook's
//!   exception: on stdout, line for line as mitmdump prints them at the default verbosity,
//!   `-v`, `-q` and `--set termlog_verbosity=warn`, in order with `print()` and before the flow
//!   line; the exception reported once, and none of it on stderr.
//! - An error logged during start-up (import, load, configure, running) ends flowtap with
//!   status 1 and mitmdump's message; a warning then, or an error later, does not.
//! - Hook deadlines: with no `hook_timeout` a hook that awaits `asyncio.sleep(5)` is waited for,
//!   as mitmdump waits; with one set, the deadline applies.
//! - A shared worker's script lines are printed by the proxy, in the same format.

#![allow(missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::Flowtap;
use support::scripts::{TempScript, curl_via, echo_origin, has_header, header_value, status_of};
use support::worker::Worker;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mitmdump-12.3.1")
}

fn read_fixture(name: &str) -> String {
    let path = fixture_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A copy of `fixtures/mitmdump-12.3.1/scripts/NAME` in a temporary directory (run from there
/// as `-s NAME`, as the recording did, so tracebacks name it the same way).
fn script_copy(name: &str) -> TempScript {
    TempScript::new(name, &read_fixture(&format!("scripts/{name}")))
}

/// `[12:34:56.789] ` at the start of a line becomes `[TIME] `, as in the fixtures.
fn normalise(line: &str) -> String {
    let b = line.as_bytes();
    let stamp = b.len() >= 14
        && b[0] == b'['
        && b[13] == b']'
        && b[1..13].iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == b':',
            8 => *c == b'.',
            _ => c.is_ascii_digit(),
        });
    if stamp {
        format!("[TIME]{}", &line[14..])
    } else {
        line.to_string()
    }
}

/// A flow line (`127.0.0.1:PORT: GET http://...`): where the fixtures' segments end.
fn is_flow_line(line: &str) -> bool {
    line.split_once(": ").is_some_and(|(client, rest)| {
        client
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|c| c.is_ascii_digit()))
            && rest.split(' ').next().is_some_and(|method| {
                !method.is_empty() && method.bytes().all(|c| c.is_ascii_uppercase())
            })
    })
}

/// The lines from the script's BEGIN up to the flow line (or the end).
fn segment(stdout: &[String]) -> (Vec<String>, Option<String>) {
    let lines: Vec<String> = stdout.iter().map(|l| normalise(l)).collect();
    let start = lines
        .iter()
        .position(|l| l == "BEGIN")
        .unwrap_or_else(|| panic!("no BEGIN in {lines:#?}"));
    let end = lines[start..]
        .iter()
        .position(|l| is_flow_line(l))
        .map_or(lines.len(), |i| start + i);
    (lines[start..end].to_vec(), lines.get(end).cloned())
}

/// Runs termlog.py under flowtap with `args`, sends one request, and returns stdout and stderr
/// once it stopped.
fn termlog_run(args: &[&str], quiet: bool) -> (Vec<String>, Vec<String>) {
    let script = script_copy("termlog.py");
    let origin = echo_origin();
    // -q and termlog_verbosity silence flowtap's own log on stderr too; FLOWTAP_LOG keeps the
    // line that says where it listens (it does not change what the scripts' lines show).
    let env: &[(&str, &str)] = &[("FLOWTAP_LOG", "info")];
    let flowtap = Flowtap::spawn_in(
        Some(script.dir.path()),
        &[&["-p", "0", "-s", "termlog.py"][..], args].concat(),
        env,
    );
    let proxy = flowtap.listening_at();
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/termlog", origin.port()),
        &[],
    );
    assert_eq!(status_of(&out), 200, "{out:?}");
    flowtap.stdout.wait_for("with the hook's exception", |l| {
        l == "ValueError: boom in request"
    });
    if !quiet {
        flowtap
            .stdout
            .wait_for("for the flow", |l| l.contains("GET http://127.0.0.1:"));
    }
    let stderr = flowtap.stderr.all();
    let (status, stdout) = flowtap.stop();
    assert!(status.success(), "{status}: {stderr:#?}");
    (stdout, stderr)
}

fn check_against(fixture: &str, args: &[&str], quiet: bool) {
    let (stdout, stderr) = termlog_run(args, quiet);
    let (got, next) = segment(&stdout);
    let expected: Vec<String> = read_fixture(fixture).lines().map(String::from).collect();
    assert_eq!(
        got, expected,
        "flowtap {args:?} vs mitmdump ({fixture}); stdout {stdout:#?}"
    );
    if quiet {
        assert_eq!(next, None, "-q printed a flow line: {stdout:#?}");
    } else {
        // The flow line comes after everything its hooks printed.
        assert!(
            next.is_some(),
            "no flow line after the script's lines: {stdout:#?}"
        );
    }
    // One report of the exception, and the script's lines are not on stderr.
    let reports = stdout.iter().filter(|l| l.contains("Addon error")).count();
    assert_eq!(reports, 1, "{stdout:#?}");
    for line in &stderr {
        assert!(
            !line.contains("boom in request") && !line.contains("logging info"),
            "a script line on stderr: {line}"
        );
    }
}

#[test]
fn script_log_lines_on_stdout_as_mitmdump_prints_them() {
    check_against("termlog.default.txt", &[], false);
}

#[test]
fn verbose_prints_debug_lines_as_mitmdump_v() {
    check_against("termlog.v.txt", &["-v"], false);
}

#[test]
fn quiet_prints_only_errors_as_mitmdump_q() {
    check_against("termlog.q.txt", &["-q"], true);
}

#[test]
fn termlog_verbosity_warn_as_mitmdump() {
    check_against(
        "termlog.warn.txt",
        &["--set", "termlog_verbosity=warn"],
        false,
    );
}

/// One case of startup.txt: the script, mitmdump's exit status, and its stdout and stderr
/// lines (only those that are not mitmdump's own start-up, connection or flow lines).
struct StartupCase {
    script: String,
    status: i32,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

fn startup_cases() -> Vec<StartupCase> {
    let mut cases: Vec<StartupCase> = Vec::new();
    for line in read_fixture("startup.txt").lines() {
        if let Some(script) = line.strip_prefix("== ") {
            cases.push(StartupCase {
                script: script.to_string(),
                status: -1,
                stdout: Vec::new(),
                stderr: Vec::new(),
            });
            continue;
        }
        let case = cases.last_mut().expect("a case before its lines");
        if let Some(status) = line.strip_prefix("exit ") {
            case.status = status.parse().expect("an exit status");
        } else if let Some(out) = line.strip_prefix("stdout ") {
            case.stdout.push(out.to_string());
        } else if let Some(err) = line.strip_prefix("stderr ") {
            case.stderr.push(err.to_string());
        }
    }
    assert!(cases.len() >= 7, "startup.txt has {} cases", cases.len());
    cases
}

#[test]
fn errors_logged_during_start_up_exit_1_as_mitmdump_does() {
    let origin = echo_origin();
    for case in startup_cases() {
        let script = script_copy(&case.script);
        let mut flowtap = Flowtap::spawn_in(
            Some(script.dir.path()),
            &["-p", "0", "-s", &case.script],
            &[],
        );
        // A proxy that comes up gets one request (as the recording sent one), then is
        // stopped unless it exits by itself (an error in `running`).
        let started = Instant::now();
        let status = loop {
            if let Some(status) = flowtap.child.try_wait().expect("try_wait") {
                break status;
            }
            if let Some(line) = flowtap
                .stderr
                .all()
                .iter()
                .find(|l| l.contains("listening at "))
            {
                let proxy = line
                    .rsplit("listening at ")
                    .next()
                    .and_then(|a| a.trim().parse().ok())
                    .expect("an address");
                let _ = curl_via(
                    proxy,
                    &format!("http://127.0.0.1:{}/start-up", origin.port()),
                    &[],
                );
                // Exits by itself when the start-up failed, else keeps serving.
                let until = Instant::now() + Duration::from_secs(3);
                while Instant::now() < until && flowtap.child.try_wait().ok().flatten().is_none() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if flowtap.child.try_wait().ok().flatten().is_none() {
                    flowtap.terminate();
                }
                break flowtap.wait_exit(support::WAIT);
            }
            assert!(
                started.elapsed() < support::WAIT,
                "{}: neither exited nor listened",
                case.script
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout: Vec<String> = flowtap
            .stdout
            .wait_closed()
            .iter()
            .map(|l| normalise(l))
            .filter(|l| !is_flow_line(l))
            .collect();
        let stderr = flowtap.stderr.wait_closed();
        let name = &case.script;
        assert_eq!(
            status.code(),
            Some(case.status),
            "{name}: stdout {stdout:#?} stderr {stderr:#?}"
        );
        assert_eq!(stdout, case.stdout, "{name}: stderr {stderr:#?}");
        for expected in &case.stderr {
            assert!(
                stderr.iter().any(|l| l == expected),
                "{name}: no {expected:?} on stderr: {stderr:#?}"
            );
        }
        if case.stderr.is_empty() {
            assert!(
                !stderr.iter().any(|l| l.contains("logged during startup")),
                "{name}: {stderr:#?}"
            );
        }
    }
}

const SLEEPY: &str = r#"
import asyncio

async def request(flow):
    await asyncio.sleep(5)
    flow.request.headers["x-slept"] = "5"
"#;

#[test]
fn without_hook_timeout_a_hook_awaiting_five_seconds_is_waited_for() {
    let script = TempScript::new("sleepy.py", SLEEPY);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);
    let started = Instant::now();
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/slow", origin.port()),
        &[],
    );
    let took = started.elapsed();
    assert_eq!(status_of(&out), 200, "{out:?}");
    // The origin echoes the request: the hook's change reached it.
    assert!(has_header(&out.stdout, "x-slept", "5"), "{out:?}");
    assert!(took >= Duration::from_secs(5), "{took:?}");
    assert!(
        !flowtap.stderr.contains("timed out") && !flowtap.stdout.contains("timed out"),
        "{:#?}",
        flowtap.stderr.all()
    );
    flowtap.stop();
}

#[test]
fn with_hook_timeout_set_the_deadline_applies() {
    let script = TempScript::new("sleepy.py", SLEEPY);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg(), "--set", "hook_timeout=1"]);
    let started = Instant::now();
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/slow", origin.port()),
        &[],
    );
    let took = started.elapsed();
    // script_failure=open: the flow goes on without the late change, at the deadline.
    assert_eq!(status_of(&out), 200, "{out:?}");
    assert!(header_value(&out.stdout, "x-slept").is_none(), "{out:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    flowtap.stop();
}

#[test]
fn a_shared_workers_script_lines_are_printed_by_the_proxy_on_stdout() {
    let script = TempScript::new(
        "shared.py",
        "import logging\nfrom mitmproxy.log import ALERT\n\ndef request(flow):\n    \
         logging.debug('shared debug')\n    logging.log(ALERT, 'shared alert %s', flow.request.path)\n    \
         logging.error('shared error')\n",
    );
    let worker = Worker::start(&script);
    let origin = echo_origin();
    let address = worker.addr.to_string();
    let (flowtap, proxy) = Flowtap::start(&["--script-host", address.as_str()]);
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/shared", origin.port()),
        &[],
    );
    assert_eq!(status_of(&out), 200, "{out:?}");
    flowtap
        .stdout
        .wait_for("for the flow", |l| l.contains("GET http://127.0.0.1:"));
    let (_, stdout) = flowtap.stop();
    let lines: Vec<String> = stdout.iter().map(|l| normalise(l)).collect();
    let alert = lines
        .iter()
        .position(|l| l == "[TIME] shared alert /shared")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(lines[alert + 1], "[TIME] shared error", "{lines:#?}");
    // Below the default verbosity (info).
    assert!(
        !lines.iter().any(|l| l.contains("shared debug")),
        "{lines:#?}"
    );
}
