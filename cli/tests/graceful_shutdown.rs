//! SIGTERM while a response is still coming: the flow finishes, then the process exits 0
//! within the grace bound.

#![allow(missing_docs)]

mod support;

use std::io::Write;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use support::origin::{Origin, read_head};
use support::{Flowtap, WAIT, curl_command};

#[test]
fn sigterm_lets_the_in_flight_flow_finish() {
    let (mid_tx, mid_rx) = channel::<()>();
    let (release_tx, release_rx) = channel::<()>();
    let (mid_tx, release_rx) = (Mutex::new(mid_tx), Mutex::new(release_rx));
    // Sends half the body, says so, and sends the rest only when the test allows it.
    let origin = Origin::start(move |mut stream| {
        if read_head(&mut stream).is_none() {
            return;
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello");
        let _ = stream.flush();
        let _ = mid_tx.lock().expect("lock").send(());
        let _ = release_rx.lock().expect("lock").recv_timeout(WAIT);
        let _ = stream.write_all(b" world");
    });
    let grace = Duration::from_secs(10);
    let (mut flowtap, addr) =
        Flowtap::start(&["--set", &format!("shutdown_grace={}", grace.as_secs())]);

    let url = format!("http://127.0.0.1:{}/slow", origin.port());
    let client = curl_command(&["-x", &format!("http://{addr}"), &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start curl");
    mid_rx
        .recv_timeout(WAIT)
        .expect("the origin got the request and sent half the response");

    flowtap.terminate();
    let signalled = Instant::now();
    flowtap.stderr.wait_for("saying it is shutting down", |l| {
        l.contains("shutting down")
    });
    assert!(
        flowtap.child.try_wait().expect("try_wait").is_none(),
        "exited with a flow in flight"
    );
    release_tx.send(()).expect("the origin waits");

    let out = client.wait_with_output().expect("curl finishes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world");
    let status = flowtap.wait_exit(grace + Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < grace,
        "took {:?}, the whole grace period",
        signalled.elapsed()
    );
    flowtap.stdout.wait_for("for the finished flow", |l| {
        l.contains("/slow HTTP/1.1 << 200 OK 11b")
    });
}
