//! The script protocol end to end: the real `script-host` binary, real script files, a real
//! tonic client.

mod support;

use flowtap_proto::v1::{Hook, Verdict, control, core_message};
use support::{Host, header_value, http_flow, with_response};

#[tokio::test]
async fn chain_runs_in_load_order_and_changes_come_back() {
    let host = Host::start(&[
        (
            "first.py",
            "class Sub:\n    def request(self, flow):\n        flow.request.headers['x-order'] += ',sub'\n\
             def request(flow):\n    flow.request.headers['x-order'] = 'first'\naddons = [Sub()]\n",
        ),
        (
            "second.py",
            "def request(flow):\n    flow.request.headers['x-order'] += ',second'\n",
        ),
    ])
    .await;
    let mut session = host.session().await;
    let ready = session.hello(&[]).await;
    assert_eq!(ready.startup_error, "");
    assert_eq!(ready.scripts.len(), 2);
    let spec = &ready.scripts[0].hooks[0];
    assert_eq!(
        (spec.hook(), spec.needs_body, spec.awaited),
        (Hook::Request, true, true)
    );

    let reply = session.call(Hook::Request, http_flow("/")).await;
    assert_eq!(reply.verdict(), Verdict::Continue);
    let request = reply.flow.expect("changed flow").request.expect("request");
    assert_eq!(
        header_value(&request.headers, "x-order").as_deref(),
        Some("first,sub,second")
    );
    // Fields the script did not touch come back as they were sent.
    assert_eq!(
        header_value(&request.headers, "accept").as_deref(),
        Some("*/*")
    );
    assert_eq!(&request.path[..], b"/");
}

#[tokio::test]
async fn unchanged_flow_is_not_sent_back() {
    let host = Host::start(&[("noop.py", "def request(flow):\n    pass\n")]).await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    let reply = session.call(Hook::Request, http_flow("/")).await;
    assert_eq!(reply.verdict(), Verdict::Continue);
    assert!(reply.flow.is_none());
}

const REPLY_PY: &str = "\
from mitmproxy import http
def request(flow):
    if flow.request.path == '/reply':
        flow.response = http.Response.make(418, b'teapot', {'Content-Type': 'text/plain'})
    if flow.request.path == '/kill':
        flow.kill()
";

#[tokio::test]
async fn response_made_in_request_is_respond_and_kill_is_kill() {
    let host = Host::start(&[("reply.py", REPLY_PY)]).await;
    let mut session = host.session().await;
    session.hello(&[]).await;

    let reply = session.call(Hook::Request, http_flow("/reply")).await;
    assert_eq!(reply.verdict(), Verdict::Respond);
    let response = reply.flow.expect("flow").response.expect("response");
    assert_eq!(response.status_code, 418);
    assert_eq!(&response.reason[..], b"I'm a teapot");
    assert_eq!(response.content.as_deref(), Some(&b"teapot"[..]));

    let reply = session.call(Hook::Request, http_flow("/kill")).await;
    assert_eq!(reply.verdict(), Verdict::Kill);
    let error = reply.flow.expect("flow").error.expect("error");
    assert_eq!(error.msg, "Connection killed.");
}

#[tokio::test]
async fn intercepted_flow_is_resumed_by_a_later_task() {
    let host = Host::start(&[(
        "hold.py",
        "import asyncio\n\
         async def request(flow):\n    flow.intercept()\n    asyncio.get_running_loop().call_later(0.2, flow.resume)\n",
    )])
    .await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    let flow = http_flow("/");
    let id = flow.id.clone();
    let reply = session.call(Hook::Request, flow).await;
    assert_eq!(reply.verdict(), Verdict::Intercept);
    let control = session.control().await;
    assert_eq!(control.kind, Some(control::Kind::Resume(id)));
}

#[tokio::test]
async fn exception_gives_traceback_and_leaves_flow_unmodified_by_that_script() {
    let host = Host::start(&[(
        "broken.py",
        "def response(flow):\n    flow.response.headers['x-half'] = 'done'\n    raise RuntimeError('boom from script')\n",
    )])
    .await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    let reply = session
        .call(Hook::Response, with_response(http_flow("/"), "body"))
        .await;
    assert_eq!(reply.verdict(), Verdict::Continue);
    assert_eq!(reply.errors.len(), 1);
    let error = &reply.errors[0];
    assert!(error.script.ends_with("broken.py"), "{error:?}");
    assert_eq!(error.hook, "response");
    assert!(
        error.traceback.contains("RuntimeError: boom from script"),
        "{}",
        error.traceback
    );
    assert!(
        error.traceback.contains("broken.py\", line 3"),
        "{}",
        error.traceback
    );
    // The log got it too, with the traceback.
    session.hello(&[]).await; // a round trip that flushes the log records before it
    assert!(
        session.log_text().contains("boom from script"),
        "{}",
        session.log_text()
    );
}

#[tokio::test]
async fn syntax_error_is_a_startup_error() {
    let host = Host::start(&[("bad.py", "def request(flow)\n    pass\n")]).await;
    let mut session = host.session().await;
    let ready = session.hello(&[]).await;
    assert!(
        ready.startup_error.contains("SyntaxError"),
        "{}",
        ready.startup_error
    );
    assert!(
        ready.startup_error.contains("bad.py"),
        "{}",
        ready.startup_error
    );
}

#[tokio::test]
async fn failing_configure_is_a_startup_error_and_set_values_reach_options() {
    let source = "\
from mitmproxy import ctx, exceptions
def load(loader):
    loader.add_option('limit', int, 1, 'A limit.')
def configure(updated):
    if ctx.options.limit < 0:
        raise exceptions.OptionsError('limit must not be negative')
def request(flow):
    flow.request.headers['x-limit'] = str(ctx.options.limit)
";
    let host = Host::start(&[("opt.py", source)]).await;
    let mut session = host.session().await;
    let ready = session.hello(&[("limit", "-5")]).await;
    assert!(
        ready.startup_error.contains("limit must not be negative"),
        "{}",
        ready.startup_error
    );

    let host = Host::start(&[("opt.py", source)]).await;
    let mut session = host.session().await;
    let ready = session.hello(&[("limit", "7")]).await;
    assert_eq!(ready.startup_error, "");
    assert_eq!(ready.scripts[0].options[0].name, "limit");
    let reply = session.call(Hook::Request, http_flow("/")).await;
    let request = reply.flow.expect("flow").request.expect("request");
    assert_eq!(
        header_value(&request.headers, "x-limit").as_deref(),
        Some("7")
    );
}

#[tokio::test]
async fn old_api_script_with_context_and_argv_is_adapted() {
    let (dir, paths) = support::write_scripts(&[(
        "old.py",
        "\
def start(context, argv):
    context.old, context.new = argv[1], argv[2]
def response(context, flow):
    flow.response.content = flow.response.content.replace(context.old.encode(), context.new.encode())
    flow.response.headers['newheader'] = ['foo']
",
    )]);
    let spec = format!("{} bananas apples", paths[0].display());
    let host = Host::start_with(dir, &[spec], "127.0.0.1:0").await;
    let mut session = host.session().await;
    let ready = session.hello(&[]).await;
    assert_eq!(ready.startup_error, "");
    let reply = session
        .call(
            Hook::Response,
            with_response(http_flow("/"), "I like bananas"),
        )
        .await;
    let response = reply.flow.expect("flow").response.expect("response");
    assert_eq!(response.content.as_deref(), Some(&b"I like apples"[..]));
    assert_eq!(
        header_value(&response.headers, "newheader").as_deref(),
        Some("foo")
    );
}

#[tokio::test]
async fn connection_hook_changes_come_back() {
    let host = Host::start(&[(
        "conn.py",
        "def client_connected(client):\n    if client.peername[1] == 666:\n        client.error = 'refused by script'\n",
    )])
    .await;
    let mut session = host.session().await;
    let ready = session.hello(&[]).await;
    assert!(
        ready.scripts[0]
            .hooks
            .iter()
            .any(|h| h.hook() == Hook::ClientConnected && h.awaited)
    );
    let subject = flowtap_proto::v1::Flow {
        id: support::new_id(),
        client_conn: Some(support::connection(Some(("10.0.0.1", 666)))),
        ..Default::default()
    };
    let reply = session.call(Hook::ClientConnected, subject).await;
    let client = reply.flow.expect("flow").client_conn.expect("client");
    assert_eq!(client.error.as_deref(), Some("refused by script"));
    assert_eq!(client.peername.expect("peer").host, "10.0.0.1");
}

#[tokio::test]
async fn done_runs_done_hooks_and_a_spawned_worker_exits() {
    let (dir, paths) = support::write_scripts(&[(
        "bye.py",
        "import logging\ndef done():\n    logging.info('goodbye from done')\n",
    )]);
    let mut host = Host::start_with_args(
        dir,
        &[paths[0].display().to_string()],
        "127.0.0.1:0",
        &["--exit-with-stdin"],
    )
    .await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    session
        .send(core_message::Kind::Done(Default::default()))
        .await;
    // The stream ends after the done hooks ran.
    while let Ok(Some(message)) = session.inbound.message().await {
        if let Some(flowtap_proto::v1::worker_message::Kind::Log(log)) = message.kind {
            session.logs.push(log);
        }
    }
    // A spawned worker prints its scripts' log lines on its (its proxy's) stdout itself, as
    // mitmdump prints them, and sends no LogRecord for them.
    let mut printed = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(std::time::Duration::from_secs(20), host.stdout.next_line()).await
    {
        printed.push(line);
    }
    let line = printed
        .iter()
        .find(|l| l.contains("goodbye from done"))
        .unwrap_or_else(|| panic!("{printed:?}"));
    assert!(
        line.starts_with('[') && line.ends_with("] goodbye from done"),
        "{line}"
    );
    assert!(
        !session.log_text().contains("goodbye"),
        "{}",
        session.log_text()
    );
    assert!(host.wait_exit().await.success());
}

#[tokio::test]
async fn unix_socket_listener_serves_sessions() {
    let (dir, paths) = support::write_scripts(&[(
        "u.py",
        "def request(flow):\n    flow.comment = 'via unix'\n",
    )]);
    let socket = dir.path().join("host.sock");
    let listen = format!("unix:{}", socket.display());
    let host = Host::start_with(dir, &[paths[0].display().to_string()], &listen).await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    let reply = session.call(Hook::Request, http_flow("/")).await;
    assert_eq!(reply.flow.expect("flow").comment, "via unix");
}
