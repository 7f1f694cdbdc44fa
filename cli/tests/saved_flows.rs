//! Saved flows with the real binary: `-r` through scripts in mitmproxy's event order, `-r -w`
//! rewriting, `-w` while traffic flows, filters, damaged files, and client replay (`-C`).
//! The expectations come from mitmdump 12.3.1 (`fixtures/mitmproxy-12`).

#![allow(missing_docs)]

mod support;

use std::path::Path;

use flowtap_flow::{FlowReader, FlowWriter};
use flowtap_proto::v1::Flow;
use support::scripts::{EventLog, echo_origin, fixture, normalize_events, recorded_events};
use support::{Flowtap, curl};

fn read_flows(path: &Path) -> Vec<Flow> {
    let file = std::fs::File::open(path).expect("open the flow file");
    let (flows, error) = FlowReader::new(std::io::BufReader::new(file)).read_all();
    assert!(error.is_none(), "{}: {error:?}", path.display());
    flows
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn read_with_script_gives_mitmdumps_event_order() {
    let log = EventLog::new();
    let (name, value) = log.env();
    let (code, _, stderr) = Flowtap::run(
        &[
            "-n",
            "-r",
            &fixture("all-mixed.mitm"),
            "-s",
            &fixture("eventlog.py"),
        ],
        &[(name, &value)],
    );
    assert_eq!(code, 0, "{stderr}");
    // Exactly the recording, including every `update` line; only the option count differs.
    assert_eq!(
        normalize_events(&log.lines(), &[]),
        normalize_events(
            &recorded_events("all-mixed.read-with-script.events.txt"),
            &[]
        ),
    );
}

#[test]
fn read_and_write_rewrites_byte_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.mitm");
    let (code, stdout, stderr) = Flowtap::run(
        &[
            "-n",
            "-r",
            &fixture("http-get-200.mitm"),
            "-w",
            path_arg(&out),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("GET http://127.0.0.1:18081/hello.txt"),
        "{stdout}"
    );
    let written = std::fs::read(&out).expect("read the written file");
    let original = std::fs::read(fixture("http-get-200.mitm")).expect("read the fixture");
    assert!(
        written == original,
        "the rewritten file differs from the fixture"
    );
}

#[test]
fn script_changes_are_saved_like_mitmdump_saves_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.mitm");
    let (code, _, stderr) = Flowtap::run(
        &[
            "-n",
            "-r",
            &fixture("http-get-200.mitm"),
            "-s",
            &fixture("addhdr.py"),
            "-w",
            path_arg(&out),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let got = read_flows(&out);
    let want = read_flows(Path::new(&fixture("script-modified.mitm")));
    assert_eq!(got.len(), 1);
    let (got, want) = (&got[0], &want[0]);
    assert_eq!(got.id, want.id, "-r + -w keeps the flow id");
    assert_eq!(got.comment, want.comment);
    assert_eq!(got.marked, want.marked);
    assert_eq!(got.metadata, want.metadata);
    let headers = |f: &Flow| f.response.as_ref().expect("a response").headers.clone();
    assert_eq!(headers(got), headers(want));
}

#[test]
fn flows_saved_while_proxying_can_be_read_back() {
    let origin = echo_origin();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("live.mitm");
    let (flowtap, proxy) = Flowtap::start(&["-w", path_arg(&out)]);
    let proxy = format!("http://{proxy}");
    for path in ["/one", "/two?x=1"] {
        curl(&[
            "-x",
            &proxy,
            &format!("http://127.0.0.1:{}{path}", origin.port()),
        ])
        .ok();
    }
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");

    let flows = read_flows(&out);
    assert_eq!(flows.len(), 2, "{flows:?}");
    let (code, stdout, stderr) = Flowtap::run(&["-n", "-r", path_arg(&out)], &[]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let port = origin.port();
    assert!(
        lines[0].contains(&format!(
            "GET http://127.0.0.1:{port}/one HTTP/1.1 << 200 OK"
        )),
        "{stdout}"
    );
    assert!(
        lines[1].contains(&format!(
            "GET http://127.0.0.1:{port}/two?x=1 HTTP/1.1 << 200 OK"
        )),
        "{stdout}"
    );

    // A filter selects among them.
    let (code, stdout, _) = Flowtap::run(&["-n", "-r", path_arg(&out), "~m GET & ~u two"], &[]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("/two?x=1"), "{stdout}");
}

#[test]
fn malformed_filter_exits_2_with_the_position() {
    let (code, stdout, stderr) =
        Flowtap::run(&["-n", "-r", &fixture("all-mixed.mitm"), "~q & ~x"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("char 5"), "{stderr}");
    assert!(stderr.contains("~x"), "{stderr}");
}

#[test]
fn truncated_file_reports_the_offset_and_keeps_earlier_flows() {
    let first = std::fs::read(fixture("http-get-200.mitm")).expect("read");
    let all = std::fs::read(fixture("all-mixed.mitm")).expect("read");
    assert!(all.starts_with(&first));
    let cut = first.len() + 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let truncated = dir.path().join("truncated.mitm");
    std::fs::write(&truncated, &all[..cut]).expect("write");

    let (code, stdout, stderr) = Flowtap::run(&["-n", "-r", path_arg(&truncated)], &[]);
    assert_eq!(code, 1, "{stderr}");
    // The flow before the damage was read and shown.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("/hello.txt"), "{stdout}");
    // The error names a byte offset inside the cut flow.
    let offset: usize = stderr
        .split("at byte ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte offset in {stderr}"));
    assert!(
        (first.len()..=cut).contains(&offset),
        "offset {offset} is not in the damaged flow ({}..={cut}): {stderr}",
        first.len()
    );
}

#[test]
fn client_replay_resends_and_records_the_replayed_flow() {
    let origin = echo_origin();
    let dir = tempfile::tempdir().expect("tempdir");
    // The recorded request went to :18082; send it to this test's origin.
    let mut flows = read_flows(Path::new(&fixture("http-post-body.mitm")));
    assert_eq!(flows.len(), 1);
    flows[0].request.as_mut().expect("a request").port = u32::from(origin.port());
    let input = dir.path().join("replay-me.mitm");
    let mut writer = FlowWriter::new(std::fs::File::create(&input).expect("create"));
    writer.add(&flows[0]).expect("write the flow");
    drop(writer);
    let out = dir.path().join("replayed.mitm");

    let log = EventLog::new();
    let (name, value) = log.env();
    let (code, _, stderr) = Flowtap::run(
        &[
            "-n",
            "-C",
            path_arg(&input),
            "-s",
            &fixture("eventlog.py"),
            "-w",
            path_arg(&out),
        ],
        &[(name, &value)],
    );
    assert_eq!(code, 0, "{stderr}");

    let replayed = read_flows(&out);
    assert_eq!(replayed.len(), 1);
    let flow = &replayed[0];
    assert_eq!(flow.id, flows[0].id, "the replayed flow keeps its id");
    assert_eq!(flow.is_replay.as_deref(), Some("request"));
    let backup = flow
        .backup
        .as_ref()
        .expect("a backup of the pre-replay flow");
    assert_eq!(backup.request, flows[0].request);
    // The origin really got the request again: it echoes what it received.
    let response = flow.response.as_ref().expect("a new response");
    assert_eq!(response.status_code, 200);
    let echoed = String::from_utf8_lossy(response.content.as_deref().unwrap_or_default());
    assert!(echoed.starts_with("POST /submit?x=1 HTTP/1.1"), "{echoed}");
    assert!(echoed.ends_with(r#"{"name":"mitm","n":42}"#), "{echoed}");

    // The hooks of mitmdump's client replay; `running` may come anywhere before
    // requestheaders, so it is compared apart.
    let port = origin.port().to_string();
    let replace = [("18082", port.as_str())];
    let got = normalize_events(&log.lines(), &replace);
    let want = normalize_events(
        &recorded_events("http-post-body.client-replay.events.txt"),
        &replace,
    );
    let position =
        |lines: &[String], prefix: &str| lines.iter().position(|l| l.starts_with(prefix));
    let running = position(&got, "running:").expect("a running line");
    let first_request = position(&got, "requestheaders:").expect("a requestheaders line");
    assert!(running < first_request, "{got:#?}");
    let without_running = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| !l.starts_with("running:"))
            .cloned()
            .collect()
    };
    assert_eq!(without_running(&got), without_running(&want));
}

#[test]
fn a_strftime_save_path_opens_a_new_file_when_it_changes() {
    use std::time::{Duration, Instant};
    let origin = echo_origin();
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory per year (created on the way) and a file per second.
    let pattern = dir.path().join("%Y").join("flows-%H%M%S.mitm");
    let (flowtap, proxy) =
        Flowtap::start(&["--set", &format!("save_stream_file={}", path_arg(&pattern))]);
    let proxy = format!("http://{proxy}");
    let url = format!("http://127.0.0.1:{}/rotate", origin.port());
    let files = || -> Vec<std::path::PathBuf> {
        let Ok(years) = std::fs::read_dir(dir.path()) else {
            return Vec::new();
        };
        years
            .flatten()
            .flat_map(|year| {
                std::fs::read_dir(year.path())
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|f| f.path())
            .collect()
    };
    // Requests until the formatted name has changed at least once (about a second).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while files().len() < 2 {
        assert!(Instant::now() < deadline, "no second file: {:?}", files());
        curl(&["-x", &proxy, &url]).ok();
        sent += 1;
    }
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
    let files = files();
    let year = files[0]
        .parent()
        .and_then(|p| p.file_name())
        .expect("year dir");
    assert_eq!(year.len(), 4, "{files:?}");
    let saved: usize = files.iter().map(|f| read_flows(f).len()).sum();
    assert_eq!(saved, sent, "every flow is in one of {files:?}");
}

#[test]
fn client_replay_concurrency_minus_one_has_every_request_in_flight_at_once() {
    use std::io::Write as _;
    use std::sync::{Arc, Condvar, Mutex};
    use support::origin::{Origin, read_head};
    // The origin answers only once both requests have arrived: one at a time, the first would
    // wait for ever (it gives up after 10 s with 504).
    let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
    let origin = Origin::start(move |mut stream| {
        if read_head(&mut stream).is_none() {
            return;
        }
        let (count, changed) = &*arrived;
        let mut count = count.lock().expect("lock");
        *count += 1;
        changed.notify_all();
        let (count, _) = changed
            .wait_timeout_while(count, std::time::Duration::from_secs(10), |n| *n < 2)
            .expect("lock");
        let status = if *count >= 2 {
            "200 OK"
        } else {
            "504 Gateway Timeout"
        };
        drop(count);
        let _ =
            stream.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes());
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut flow = read_flows(Path::new(&fixture("http-post-body.mitm"))).remove(0);
    flow.request.as_mut().expect("a request").port = u32::from(origin.port());
    let input = dir.path().join("two.mitm");
    let mut writer = FlowWriter::new(std::fs::File::create(&input).expect("create"));
    for id in ["a", "b"] {
        let mut copy = flow.clone();
        copy.id = format!("{id}-{}", flow.id);
        writer.add(&copy).expect("write the flow");
    }
    drop(writer);
    let out = dir.path().join("replayed.mitm");
    let (code, _, stderr) = Flowtap::run(
        &[
            "-n",
            "-C",
            path_arg(&input),
            "--set",
            "client_replay_concurrency=-1",
            "-w",
            path_arg(&out),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let replayed = read_flows(&out);
    let statuses: Vec<u32> = replayed
        .iter()
        .filter_map(|f| f.response.as_ref().map(|r| r.status_code))
        .collect();
    assert_eq!(statuses, [200, 200]);

    let (code, _, stderr) = Flowtap::run(
        &[
            "-n",
            "-C",
            path_arg(&input),
            "--set",
            "client_replay_concurrency=4",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Currently the only valid client_replay_concurrency values are -1 and 1."),
        "{stderr}"
    );
}
