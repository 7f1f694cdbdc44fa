//! The flowtap process under a crowd of idle clients and a script that breaks its flow: it
//! raises its descriptor limit so 2,000 idle connections under a soft limit of 1024 do not stop
//! it from serving, and a script that removes the response gets the client a 502 that names the
//! hook, logged, instead of a bare close.

#![allow(missing_docs)]

mod support;

use std::net::TcpStream;
use std::process::{Command, Stdio};

use support::origin::Origin;
use support::{Flowtap, Lines, curl, wait_for_port};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// The soft and hard "Max open files" of a process, from /proc.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn two_thousand_idle_clients_under_a_1024_soft_limit_do_not_stop_a_normal_request() {
    let origin = Origin::fixed(OK);
    let (_, hard) = open_files_limits(std::process::id());
    assert!(
        hard >= 5000,
        "this test needs a hard descriptor limit of at least 5000, the machine has {hard}"
    );
    // The test itself holds 2,000 sockets.
    let raised = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status()
        .expect("run prlimit");
    assert!(raised.success());

    let confdir = tempfile::tempdir().expect("confdir");
    let port = support::free_port();
    let mut child = Command::new("prlimit")
        .args([
            "--nofile=1024:".to_string() + &hard.to_string(),
            "--".into(),
        ])
        .arg(support::binary())
        .args(["-p", &port.to_string(), "-q"])
        .args(["--set", &format!("confdir={}", confdir.path().display())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flowtap under prlimit");
    let stderr = Lines::collect(child.stderr.take().expect("piped"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(addr);
    let (soft, _) = open_files_limits(child.id());
    assert_eq!(
        soft, hard,
        "flowtap raised its soft limit to the hard limit"
    );

    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(TcpStream::connect(addr).expect("an idle connection"));
    }
    let url = format!("http://127.0.0.1:{}/", origin.port());
    let out = curl(&["-x", &format!("http://{addr}"), "-m", "20", &url]).ok();
    assert_eq!(out.stdout, "ok");
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
    let log = stderr.all().join("\n");
    assert!(!log.contains("accept failed"), "{log}");
}

#[test]
fn a_script_that_removes_the_response_gets_the_client_a_502_naming_the_hook() {
    let origin = Origin::fixed(OK);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("drop_response.py");
    std::fs::write(&script, "def response(flow):\n    flow.response = None\n").expect("script");
    let (flowtap, addr) = Flowtap::start(&["-s", script.to_str().expect("utf-8 path")]);
    let url = format!("http://127.0.0.1:{}/gone", origin.port());
    let out = curl(&[
        "-x",
        &format!("http://{addr}"),
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    let text = out.stdout;
    assert!(text.ends_with("\n502"), "{text}");
    assert!(
        text.contains("removed the response in `response`"),
        "{text}"
    );
    flowtap
        .stderr
        .wait_for("the refusal logged with the client", |l| {
            l.contains("502") && l.contains("removed the response") && l.contains("127.0.0.1:")
        });
    // The proxy goes on serving.
    let out = curl(&["-x", &format!("http://{addr}"), "-w", "%{http_code}", &url]);
    assert!(out.stdout.ends_with("502"));
    flowtap.stop();
}
