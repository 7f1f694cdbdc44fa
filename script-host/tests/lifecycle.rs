//! How a worker lives and stops, with the real `script-host` binary: a standalone worker serves
//! several sessions and a Done ends only the session that sent it; SIGTERM drains it (health
//! NOT_SERVING, new sessions refused, calls under way finish, `done` runs, exit 0); a worker a
//! proxy spawned (`--exit-with-stdin`) still ends with its proxy's Done.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use flowtap_proto::v1::{Hook, core_message, worker_message};
use support::{Host, Session, header_value, http_flow};
use tonic_health::pb::health_check_response::ServingStatus;

/// A script that tags requests, sleeps in `/slow` (after writing `started`), and writes
/// `done.txt` in `done`.
fn script(dir: &Path) -> String {
    let started = dir.join("started");
    let done = dir.join("done.txt");
    format!(
        "import time\n\
         def request(flow):\n\
         \x20   if flow.request.path == '/slow':\n\
         \x20       open({started:?}, 'w').close()\n\
         \x20       time.sleep(1)\n\
         \x20   flow.request.headers['x-seen'] = 'yes'\n\
         def done():\n\
         \x20   with open({done:?}, 'w') as f:\n\
         \x20       f.write('done ran')\n"
    )
}

/// Starts a worker on `script` with `extra` arguments.
async fn start(extra: &[&str]) -> Host {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lifecycle.py");
    std::fs::write(&path, script(dir.path())).expect("write script");
    Host::start_with_args(dir, &[path.display().to_string()], "127.0.0.1:0", extra).await
}

async fn tagged(session: &mut Session, path: &str) {
    let reply = session.call(Hook::Request, http_flow(path)).await;
    assert!(!reply.timed_out, "{path}: timed out");
    let request = reply.flow.expect("changed flow").request.expect("request");
    assert_eq!(
        header_value(&request.headers, "x-seen").as_deref(),
        Some("yes"),
        "{path}"
    );
}

/// Reads a session's stream to its end; true when it ended cleanly (no error status).
async fn ends_cleanly(session: &mut Session) -> bool {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), session.inbound.message())
            .await
            .expect("the stream ends in time");
        match next {
            Ok(Some(message)) => {
                if let Some(worker_message::Kind::Log(log)) = message.kind {
                    session.logs.push(log);
                }
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// Polls until `path` exists, up to `within`.
async fn appears(path: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    path.exists()
}

#[tokio::test]
async fn done_from_one_session_leaves_the_other_sessions_served() {
    let host = start(&[]).await;
    assert_eq!(
        host.health("").await.expect("health of the server"),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        host.health("flowtap.v1.ScriptHost")
            .await
            .expect("health of the script protocol"),
        ServingStatus::Serving as i32
    );
    let mut a = host.session().await;
    let mut b = host.session().await;
    assert_eq!(a.hello(&[]).await.startup_error, "");
    assert_eq!(b.hello(&[]).await.startup_error, "");
    tagged(&mut a, "/a").await;
    tagged(&mut b, "/b1").await;

    a.send(core_message::Kind::Done(Default::default())).await;
    assert!(
        ends_cleanly(&mut a).await,
        "A's stream ends without an error"
    );

    // B goes on with the scripts as they were; `done` did not run.
    tagged(&mut b, "/b2").await;
    tagged(&mut b, "/b3").await;
    assert!(!host.path("done.txt").exists(), "done ran on A's Done");
    // A new proxy is still welcome.
    let mut c = host.session().await;
    assert_eq!(c.hello(&[]).await.startup_error, "");
    tagged(&mut c, "/c").await;
    // B's stream closing (no Done) is the same: C goes on.
    drop(b);
    tagged(&mut c, "/c2").await;
    assert!(!host.path("done.txt").exists());
    assert_eq!(
        host.health("").await.expect("health"),
        ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn sigterm_drains_the_calls_under_way_then_runs_done_and_exits_0() {
    let grace = Duration::from_secs(5);
    let mut host = start(&["--shutdown-grace", "5"]).await;
    let mut session = host.session().await;
    assert_eq!(session.hello(&[]).await.startup_error, "");
    tagged(&mut session, "/warm").await;
    let slow = session
        .send_call(Hook::Request, http_flow("/slow"), 0)
        .await;
    assert!(
        appears(&host.path("started"), Duration::from_secs(10)).await,
        "the slow hook started"
    );
    let signalled = Instant::now();
    host.signal("TERM");

    // Health turns NOT_SERVING while the call is under way.
    let deadline = Instant::now() + Duration::from_millis(800);
    let mut status = None;
    while Instant::now() < deadline {
        status = host.health("flowtap.v1.ScriptHost").await.ok();
        if status == Some(ServingStatus::NotServing as i32) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, Some(ServingStatus::NotServing as i32));
    assert_eq!(
        host.health("").await.ok(),
        Some(ServingStatus::NotServing as i32)
    );
    // A new session is refused with a reason.
    match host.try_session().await {
        Ok(_) => panic!("a session opened while the worker drains"),
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
            assert!(status.message().contains("shutting down"), "{status}");
        }
    }
    assert!(
        !host.path("done.txt").exists(),
        "done ran before the call under way finished"
    );

    // The call under way gets its real reply, then `done` runs and the stream ends.
    let reply = session.reply().await;
    assert_eq!(reply.call_id, slow);
    assert!(!reply.timed_out, "the slow call was answered timed out");
    let request = reply.flow.expect("changed flow").request.expect("request");
    assert_eq!(
        header_value(&request.headers, "x-seen").as_deref(),
        Some("yes")
    );
    assert!(ends_cleanly(&mut session).await);
    let status = tokio::time::timeout(grace, host.child.wait())
        .await
        .expect("the worker exits within the grace period")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < grace,
        "took {:?}",
        signalled.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(host.path("done.txt")).expect("done.txt written by done"),
        "done ran"
    );
}

#[tokio::test]
async fn a_call_past_the_grace_period_is_answered_timed_out() {
    let mut host = start(&["--shutdown-grace", "0.2"]).await;
    let mut session = host.session().await;
    assert_eq!(session.hello(&[]).await.startup_error, "");
    let slow = session
        .send_call(Hook::Request, http_flow("/slow"), 0)
        .await;
    assert!(appears(&host.path("started"), Duration::from_secs(10)).await);
    host.signal("INT");
    let reply = session.reply().await;
    assert_eq!(reply.call_id, slow);
    assert!(reply.timed_out, "answered timed out once the grace ended");
    assert!(reply.flow.is_none());
    let status = tokio::time::timeout(Duration::from_secs(10), host.child.wait())
        .await
        .expect("the worker exits")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    // `done` ran without waiting for the hook still sleeping.
    assert!(host.path("done.txt").exists());
}

#[tokio::test]
async fn sigterm_on_a_worker_without_sessions_exits_0_at_once() {
    let mut host = start(&[]).await;
    let started = Instant::now();
    host.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), host.child.wait())
        .await
        .expect("the worker exits")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    // Nothing to wait for: well within the 10 s default grace.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_second_signal_ends_a_draining_worker_at_once() {
    let mut host = start(&["--shutdown-grace", "30"]).await;
    let mut session = host.session().await;
    assert_eq!(session.hello(&[]).await.startup_error, "");
    session
        .send_call(Hook::Request, http_flow("/slow"), 0)
        .await;
    assert!(appears(&host.path("started"), Duration::from_secs(10)).await);
    host.signal("TERM");
    // Once draining (NOT_SERVING), a second signal does not wait for the grace period.
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.health("").await.ok() != Some(ServingStatus::NotServing as i32) {
        assert!(Instant::now() < deadline, "never NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    host.signal("INT");
    let status = tokio::time::timeout(Duration::from_secs(5), host.child.wait())
        .await
        .expect("the worker exits at once")
        .expect("wait");
    assert_eq!(status.code(), Some(1));
}

#[tokio::test]
async fn a_spawned_worker_ends_with_its_proxys_done() {
    let host = start(&["--exit-with-stdin"]).await;
    let mut session = host.session().await;
    assert_eq!(session.hello(&[]).await.startup_error, "");
    tagged(&mut session, "/").await;
    session
        .send(core_message::Kind::Done(Default::default()))
        .await;
    assert!(ends_cleanly(&mut session).await);
    let mut host = host;
    let status = tokio::time::timeout(Duration::from_secs(20), host.child.wait())
        .await
        .expect("the worker exits after Done")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(host.path("done.txt").exists(), "done ran");
}
