//! The one place that decides what a failed hook call does to its flow.

use bytes::Bytes;
use flowtap_proto::v1::{Flow, Header, Hook, Response};

use flowtap_proxy_core::hooks::Verdict;

use crate::FailurePolicy;

/// Why a hook call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The deadline passed.
    Timeout,
    /// The worker's session ended while the call was in flight.
    Crashed,
    /// No worker to send the call to (none is connected).
    Unreachable,
    /// The call would exceed the script protocol's message size (a body too large for the
    /// scripts to read); it was not sent.
    TooLarge,
}

impl Failure {
    /// The cause, as log lines and responses name it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Failure::Timeout => "the script did not answer in time",
            Failure::Crashed => "the script host crashed",
            Failure::Unreachable => "the script host is unreachable",
            Failure::TooLarge => "the flow is too large for the script host (over 256 MiB)",
        }
    }

    fn status(self) -> (u32, &'static [u8]) {
        match self {
            Failure::Timeout => (504, b"Gateway Timeout"),
            Failure::Crashed | Failure::Unreachable | Failure::TooLarge => (502, b"Bad Gateway"),
        }
    }
}

fn is_http_flow_hook(hook: Hook) -> bool {
    matches!(
        hook,
        Hook::Requestheaders
            | Hook::Request
            | Hook::Responseheaders
            | Hook::Response
            | Hook::HttpConnect
    )
}

/// Applies `policy` to a call of `hook` that failed with `failure`. Open: the flow goes on
/// unchanged. Closed: HTTP flows get a 502/504 response naming the cause (verdict Respond);
/// other subjects are killed.
pub(crate) fn apply(
    policy: FailurePolicy,
    failure: Failure,
    hook: Hook,
    flow: &mut Flow,
) -> Verdict {
    let hook_name = crate::call::hook_name(hook);
    if failure == Failure::Unreachable {
        // While no worker is connected every call fails so: the pool logs a count instead.
        tracing::debug!(target: "script", flow = %flow.id, hook = %hook_name, ?policy, "{}", failure.describe());
    } else {
        tracing::warn!(target: "script", flow = %flow.id, hook = %hook_name, ?policy, "{}", failure.describe());
    }
    match policy {
        FailurePolicy::Open => Verdict::Continue,
        FailurePolicy::Closed if is_http_flow_hook(hook) => {
            flow.response = Some(failure_response(failure, &hook_name));
            Verdict::Respond
        }
        FailurePolicy::Closed => Verdict::Kill,
    }
}

fn failure_response(failure: Failure, hook: &str) -> Response {
    let (status, reason) = failure.status();
    let body = format!("flowtap: {} ({hook} hook).\n", failure.describe());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let header = |name: &str, value: String| Header {
        name: Bytes::copy_from_slice(name.as_bytes()),
        value: Bytes::from(value),
    };
    Response {
        http_version: Bytes::from_static(b"HTTP/1.1"),
        headers: vec![
            header("content-type", "text/plain; charset=utf-8".into()),
            header("content-length", body.len().to_string()),
        ],
        content: Some(Bytes::from(body)),
        timestamp_start: now,
        timestamp_end: Some(now),
        status_code: status,
        reason: Bytes::from_static(reason),
        ..Response::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_policy_answers_http_hooks_with_a_named_cause() {
        let mut flow = Flow::default();
        let verdict = apply(
            FailurePolicy::Closed,
            Failure::Timeout,
            Hook::Request,
            &mut flow,
        );
        assert_eq!(verdict, Verdict::Respond);
        let response = flow.response.expect("response");
        assert_eq!(response.status_code, 504);
        let body =
            String::from_utf8_lossy(response.content.as_deref().unwrap_or_default()).into_owned();
        assert!(
            body.contains("did not answer in time") && body.contains("request hook"),
            "{body}"
        );

        let mut flow = Flow::default();
        assert_eq!(
            apply(
                FailurePolicy::Closed,
                Failure::Crashed,
                Hook::Response,
                &mut flow
            ),
            Verdict::Respond
        );
        assert_eq!(flow.response.expect("response").status_code, 502);
    }

    #[test]
    fn open_policy_leaves_the_flow_alone_and_closed_kills_other_subjects() {
        let mut flow = Flow::default();
        assert_eq!(
            apply(
                FailurePolicy::Open,
                Failure::Crashed,
                Hook::Request,
                &mut flow
            ),
            Verdict::Continue
        );
        assert!(flow.response.is_none());
        assert_eq!(
            apply(
                FailurePolicy::Closed,
                Failure::Timeout,
                Hook::ClientConnected,
                &mut flow
            ),
            Verdict::Kill
        );
    }
}
