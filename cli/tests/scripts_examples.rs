//! Every script in `examples/` loaded with `flowtap -s`, with real curl through the proxy; each
//! test checks the effect where a user sees it: in the client's response or in the request the
//! origin received (the echo origin sends the request back as its body).

#![allow(missing_docs)]

mod support;

use support::origin::Origin;
use support::scripts::{
    curl_parallel, curl_via, echo_origin, example, fixed_response, has_header, header_value,
    status_of,
};
use support::{Flowtap, free_port};

#[test]
fn add_header_adds_a_response_header() {
    let origin = Origin::fixed(fixed_response("text/plain", "plain"));
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("add_header.py")]);
    let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", origin.port()), &[]).ok();
    assert_eq!(status_of(&out), 200);
    assert!(has_header(&out.stdout, "x-flowtap", "added"), "{out:?}");
    assert!(out.stdout.ends_with("plain"), "{out:?}");
    flowtap.stop();
}

#[test]
fn reply_from_proxy_answers_without_a_server() {
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("reply_from_proxy.py")]);
    // Nothing listens on this port: only the proxy can answer.
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/hello", free_port()),
        &[],
    )
    .ok();
    assert_eq!(status_of(&out), 200, "{out:?}");
    assert!(out.stdout.ends_with("Hello from the proxy\n"), "{out:?}");
    assert!(has_header(&out.stdout, "content-type", "text/plain"));
    // Other paths reach the origin.
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/other", origin.port()),
        &[],
    )
    .ok();
    assert!(out.stdout.contains("GET /other HTTP/1.1"), "{out:?}");
    flowtap.stop();
}

#[test]
fn block_host_refuses_listed_hosts() {
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("block_host.py")]);
    // The default list: blocked.example (never resolved: the script answers first).
    let out = curl_via(proxy, "http://blocked.example/page", &[]).ok();
    assert_eq!(status_of(&out), 403, "{out:?}");
    assert!(
        out.stdout.ends_with("blocked.example is blocked\n"),
        "{out:?}"
    );
    let url = format!("http://127.0.0.1:{}/free", origin.port());
    let out = curl_via(proxy, &url, &[]).ok();
    assert_eq!(status_of(&out), 200, "{out:?}");
    flowtap.stop();

    // The option set on the command line replaces the list.
    let (flowtap, proxy) = Flowtap::start(&[
        "-s",
        &example("block_host.py"),
        "--set",
        "blocked_hosts=127.0.0.1",
    ]);
    let out = curl_via(proxy, &url, &[]).ok();
    assert_eq!(status_of(&out), 403, "{out:?}");
    assert!(out.stdout.ends_with("127.0.0.1 is blocked\n"), "{out:?}");
    flowtap.stop();
}

#[test]
fn query_param_is_changed_before_the_origin() {
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("query_param.py")]);
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/search?lang=de&q=x", origin.port()),
        &[],
    )
    .ok();
    assert!(
        out.stdout.contains("GET /search?lang=en&q=x HTTP/1.1"),
        "the origin saw: {}",
        out.stdout
    );
    // Without the parameter the request is untouched.
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/search?q=y", origin.port()),
        &[],
    )
    .ok();
    assert!(out.stdout.contains("GET /search?q=y HTTP/1.1"), "{out:?}");
    flowtap.stop();
}

#[test]
fn rewrite_body_replaces_words_in_text() {
    let origin = Origin::fixed(fixed_response("text/plain", "I like bananas"));
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("rewrite_body.py")]);
    let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", origin.port()), &[]).ok();
    assert!(out.stdout.ends_with("\r\n\r\nI like apples"), "{out:?}");
    assert!(has_header(&out.stdout, "content-length", "13"), "{out:?}");
    let image = Origin::fixed(fixed_response("image/png", "bananas"));
    let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", image.port()), &[]).ok();
    assert!(out.stdout.ends_with("\r\n\r\nbananas"), "{out:?}");
    flowtap.stop();
}

#[test]
fn count_requests_keeps_state_across_requests() {
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("count_requests.py")]);
    for n in 1..=3 {
        let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", origin.port()), &[]).ok();
        assert_eq!(
            header_value(&out.stdout, "x-request-count"),
            Some(n.to_string()),
            "the origin saw: {}",
            out.stdout
        );
    }
    // The script's logging reaches flowtap's stdout, as mitmdump prints it.
    let line = flowtap
        .stdout
        .wait_for("with the script's log record", |l| {
            l.contains("We've seen 3 flows")
        });
    assert!(
        line.starts_with('[') && line.ends_with("] We've seen 3 flows"),
        "{line}"
    );
    flowtap.stop();
}

#[test]
fn option_configure_rejects_a_bad_value_and_applies_a_good_one() {
    let (code, stdout, stderr) = Flowtap::run(
        &[
            "-p",
            "0",
            "-s",
            &example("option_configure.py"),
            "--set",
            "max_body_kb=0",
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    // As mitmdump: the error on stdout, then the reason for exiting on stderr.
    assert!(
        stdout.contains("max_body_kb must be at least 1"),
        "{stdout}"
    );
    assert!(
        stderr.contains("Error logged during startup, exiting..."),
        "{stderr}"
    );

    let body = "x".repeat(3000);
    let origin = Origin::fixed(fixed_response("text/plain", &body));
    let url = format!("http://127.0.0.1:{}/", origin.port());
    let (flowtap, proxy) = Flowtap::start(&[
        "-s",
        &example("option_configure.py"),
        "--set",
        "max_body_kb=1",
    ]);
    let out = curl_via(proxy, &url, &[]).ok();
    assert!(has_header(&out.stdout, "x-truncated", "1"), "{out:?}");
    assert!(
        out.stdout
            .ends_with(&format!("\r\n\r\n{}", "x".repeat(1024)))
    );
    flowtap.stop();

    // Without the option nothing is cut.
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("option_configure.py")]);
    let out = curl_via(proxy, &url, &[]).ok();
    assert!(
        header_value(&out.stdout, "x-truncated").is_none(),
        "{out:?}"
    );
    assert!(out.stdout.ends_with(&format!("\r\n\r\n{body}")));
    flowtap.stop();
}

#[test]
fn async_hook_changes_the_request_and_waits_per_flow() {
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("async_hook.py")]);
    // Ten flows each waiting 0.2 s in the hook: in sequence that is 2 s.
    let (outs, elapsed) = curl_parallel(proxy, 10, |i| {
        format!("http://127.0.0.1:{}/{i}", origin.port())
    });
    for out in &outs {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(has_header(&out.stdout, "x-checked", "async"), "{out:?}");
    }
    assert!(
        elapsed.as_secs_f64() < 1.8,
        "10 async hooks of 0.2 s took {elapsed:?}: they did not overlap"
    );
    flowtap.stop();
}

#[test]
fn concurrent_hook_runs_and_overlaps_even_when_serial() {
    let origin = echo_origin();
    // script_serial=true gives mitmproxy's one-hook-at-a-time; @concurrent opts out of it, as
    // it does in mitmproxy.
    let (flowtap, proxy) = Flowtap::start(&[
        "-s",
        &example("concurrent_hook.py"),
        "--set",
        "script_serial=true",
    ]);
    let (outs, elapsed) = curl_parallel(proxy, 10, |i| {
        format!("http://127.0.0.1:{}/{i}", origin.port())
    });
    for out in &outs {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(has_header(&out.stdout, "x-concurrent", "1"), "{out:?}");
    }
    assert!(
        elapsed.as_secs_f64() < 1.8,
        "10 @concurrent hooks of 0.2 s took {elapsed:?}: they did not overlap"
    );
    flowtap.stop();
}

#[test]
fn old_api_script_gets_its_arguments() {
    let origin = Origin::fixed(fixed_response("text/plain", "bananas and more bananas"));
    let script = format!("{} bananas apples", example("old_api.py"));
    let (flowtap, proxy) = Flowtap::start(&["-s", &script]);
    let out = curl_via(proxy, &format!("http://127.0.0.1:{}/", origin.port()), &[]).ok();
    assert!(
        out.stdout.ends_with("\r\n\r\napples and more apples"),
        "{out:?}"
    );
    // The list-valued header assignment of the old API.
    assert!(has_header(&out.stdout, "newheader", "foo"), "{out:?}");
    flowtap.stop();

    // Without its arguments start() raises: a start-up error.
    let (code, stdout, stderr) = Flowtap::run(&["-p", "0", "-s", &example("old_api.py")], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.contains("Usage: -s"), "{stdout}");
    assert!(stderr.contains("Error logged during startup"), "{stderr}");
}
