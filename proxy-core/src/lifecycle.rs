//! One HTTP flow's life, driven the same way by HTTP/1 (`http`) and HTTP/2 (`h2`): the hooks in
//! mitmproxy's order with what each verdict means, and the three ways a flow ends (finished,
//! killed, failed), each recording the flow, firing the hooks it is owed and handing it to the
//! sinks exactly once. The protocols do the I/O and ask this module what comes next.
//!
//! Hook order (mitmproxy 12, spec 1.9): `requestheaders`, `request`, [`server_connect`,
//! `server_connected` when a new server connection is needed], `responseheaders`, `response`;
//! or `error` when the flow fails. A response set by a script in `requestheaders` or `request`
//! skips the server but still goes through `responseheaders` and `response`.
//!
//! mitmdump's built-in addons (`builtins`) run around the scripts' hooks where mitmproxy's
//! addon chain puts them: proxyauth, block_list, anticache and anticomp before the scripts;
//! map_remote, map_local, modify_headers, modify_body, stickyauth and stickycookie after.

use flowtap_proto::v1::Flow;

use crate::context::Shared;
use crate::flow::{self, is_killed};
use crate::hooks::{Hook, Verdict};
use crate::respond::Refusal;

/// What the flow does after a hook.
#[derive(Debug)]
pub(crate) enum Step {
    /// Go on.
    Go,
    /// A script (or a fail-closed policy) answered: respond without the server.
    Respond,
    /// A script killed the flow; `error_hook` tells whether `error` is still owed (not after
    /// `response`).
    Kill { error_hook: bool },
    /// The flow cannot go on: answer the client with this.
    Fail(Refusal),
}

/// `requestheaders`.
pub(crate) async fn requestheaders(shared: &Shared, flow: &mut Flow) -> Step {
    if let Some(builtins) = shared.builtins() {
        builtins.requestheaders_before(flow);
    }
    match shared.hook(Hook::Requestheaders, flow).await {
        Verdict::Kill => Step::Kill { error_hook: true },
        _ if is_killed(flow) => Step::Kill { error_hook: true },
        // A response made here is answered after `request`, as mitmproxy does.
        _ => {
            if let Some(builtins) = shared.builtins() {
                builtins.requestheaders_after(flow);
            }
            Step::Go
        }
    }
}

/// `request`, once the request body is known (or has been streamed).
pub(crate) async fn request(shared: &Shared, flow: &mut Flow) -> Step {
    if let Some(builtins) = shared.builtins() {
        builtins.request_before(flow);
    }
    let verdict = shared.hook(Hook::Request, flow).await;
    if verdict != Verdict::Kill
        && !is_killed(flow)
        && let Some(builtins) = shared.builtins()
    {
        builtins.request_after(flow);
    }
    if verdict == Verdict::Kill || is_killed(flow) {
        Step::Kill { error_hook: true }
    } else if verdict == Verdict::Respond || flow.response.is_some() {
        Step::Respond
    } else {
        Step::Go
    }
}

/// `responseheaders`, with `flow.response` holding the head.
pub(crate) async fn responseheaders(shared: &Shared, flow: &mut Flow) -> Step {
    let verdict = shared.hook(Hook::Responseheaders, flow).await;
    if verdict == Verdict::Kill || is_killed(flow) {
        Step::Kill { error_hook: true }
    } else {
        if let Some(builtins) = shared.builtins() {
            builtins.responseheaders_after(flow);
        }
        response_still_there(flow, "responseheaders")
    }
}

/// `response`, with the whole response (or its head, when streamed).
pub(crate) async fn response(shared: &Shared, flow: &mut Flow) -> Step {
    let verdict = shared.hook(Hook::Response, flow).await;
    if verdict == Verdict::Kill || is_killed(flow) {
        Step::Kill { error_hook: false }
    } else {
        if let Some(builtins) = shared.builtins() {
            builtins.response_after(flow);
        }
        response_still_there(flow, "response")
    }
}

/// A response a script made: `responseheaders` and `response` still run; no server is
/// contacted. On `Go` the flow's response is ready to send.
pub(crate) async fn answered_by_script(shared: &Shared, flow: &mut Flow) -> Step {
    match responseheaders(shared, flow).await {
        Step::Go => response(shared, flow).await,
        other => other,
    }
}

/// A script that set `flow.response = None` left nothing to send.
fn response_still_there(flow: &Flow, hook: &str) -> Step {
    if flow.response.is_some() {
        Step::Go
    } else {
        Step::Fail(Refusal::Upstream(format!(
            "a script removed the response in `{hook}`; there is nothing to send"
        )))
    }
}

/// The flow ended normally: it is no longer live and goes to the sinks.
pub(crate) fn finished(shared: &Shared, flow: &mut Flow) {
    shared.live.finish(&flow.id);
    flow.live = false;
    shared.sink.flow_finished(flow);
}

/// The flow was killed by a script: record it, fire `error` when owed, hand it to the sinks.
/// The caller then closes the client connection (HTTP/1) or resets the stream (HTTP/2).
pub(crate) async fn killed(shared: &Shared, flow: &mut Flow, error_hook: bool) {
    shared.live.finish(&flow.id);
    flow::set_error(flow, flow::KILLED_MESSAGE);
    flow.live = false;
    if error_hook {
        shared.hook(Hook::Error, flow).await;
    }
    shared.sink.flow_finished(flow);
}

/// The flow failed: record why, fire `error`, hand it to the sinks. The caller then answers
/// the client with the refusal (which logs it).
pub(crate) async fn failed(shared: &Shared, flow: &mut Flow, refusal: &Refusal) {
    shared.live.finish(&flow.id);
    flow::set_error(flow, refusal.message());
    // mitmproxy's `error` hook still sees a live flow here (only a kill ends it before).
    shared.hook(Hook::Error, flow).await;
    flow.live = false;
    shared.sink.flow_finished(flow);
}

/// True when a flow that was killed from outside its hooks had its response complete: it then
/// gets no `error` hook.
pub(crate) fn responded(flow: &Flow) -> bool {
    flow.response
        .as_ref()
        .is_some_and(|r| r.timestamp_end.is_some())
}
