//! One hook call: routing it to a worker, waiting for the reply within the deadline, applying
//! the scripts' changes, and the failure policy when no reply comes.

use std::time::{Duration, Instant};

use flowtap_proto::v1::{self, Flow, Hook, HookCall};
use flowtap_proxy_core::hooks::{HookInterest, Verdict};
use prost::Message as _;

use crate::link::{Release, Reply};
use crate::policy::{self, Failure};
use crate::stats::Outcome;
use crate::{FailurePolicy, ScriptClient};

/// How long past the hook deadline the client waits for the worker's own timeout reply.
const DEADLINE_GRACE: Duration = Duration::from_millis(200);

/// The largest hook call sent: the session's message limit less room for the message's own
/// framing.
const MAX_CALL_BYTES: usize = crate::link::MAX_MESSAGE_BYTES - 1024;

/// `request` for `HOOK_REQUEST`, as log lines and responses name hooks.
pub(crate) fn hook_name(hook: Hook) -> String {
    hook.as_str_name()
        .trim_start_matches("HOOK_")
        .to_ascii_lowercase()
}

/// The key a call is routed by: the flow's client connection id (sticky while the connection
/// lives), else the flow id (not remembered: nothing would tell when to forget it).
pub(crate) fn routing_key(flow: &Flow) -> (&str, bool) {
    match flow.client_conn.as_ref().filter(|c| !c.id.is_empty()) {
        Some(client) => (&client.id, true),
        None => (&flow.id, false),
    }
}

impl ScriptClient {
    pub(crate) async fn call_inner(&self, hook: Hook, flow: &mut Flow) -> Verdict {
        let interest = if hook == Hook::StreamChunk {
            // Asked for by the script that set a stream callable, not declared.
            HookInterest {
                wanted: true,
                needs_body: true,
                awaited: true,
            }
        } else {
            self.env.interest.of(hook)
        };
        if !interest.wanted {
            return Verdict::Continue;
        }
        let (key, sticky) = routing_key(flow);
        if self.env.detached.contains(key, &flow.id) {
            tracing::debug!(target: "script", flow = %flow.id, hook = %hook_name(hook), "skipped: an earlier hook of this flow failed");
            return Verdict::Continue;
        }
        let Some(link) = self.env.pool.route(key, sticky) else {
            return self.fail(hook, Failure::Unreachable, flow, Duration::ZERO);
        };
        let hook_timeout = self.env.config.hook_timeout;
        let call = HookCall {
            call_id: 0,
            hook: hook as i32,
            flow: Some(flow.clone()),
            // 0: no deadline.
            deadline_ms: hook_timeout.map_or(0, |t| {
                u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
            }),
            observe_only: !interest.awaited,
            chunked_bodies: Vec::new(),
        };
        // Too large to send: tonic would fail the whole session (every flow on it), so only
        // this flow fails.
        if call.encoded_len() > MAX_CALL_BYTES {
            if !interest.awaited {
                tracing::warn!(target: "script", flow = %flow.id, hook = %hook_name(hook), "not sent: {}", Failure::TooLarge.describe());
                return Verdict::Continue;
            }
            return self.fail(hook, Failure::TooLarge, flow, Duration::ZERO);
        }
        if !interest.awaited {
            link.observe(call);
            self.env.stats.call(hook, Outcome::Ok, Duration::ZERO);
            return Verdict::Continue;
        }
        let start = Instant::now();
        let reply = match hook_timeout {
            Some(hook_timeout) => {
                match tokio::time::timeout(hook_timeout + DEADLINE_GRACE, link.call(call)).await {
                    Ok(reply) => reply.ok_or(Failure::Crashed),
                    Err(_) => Err(Failure::Timeout),
                }
            }
            None => link.call(call).await.ok_or(Failure::Crashed),
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(failure) => return self.fail(hook, failure, flow, start.elapsed()),
        };
        self.finish(hook, flow, reply, start).await
    }

    /// Counts a failed call and applies its hook's policy. A flow whose hook was late or that
    /// is too large goes on without its scripts from now on (see `detached`).
    fn fail(&self, hook: Hook, failure: Failure, flow: &mut Flow, latency: Duration) -> Verdict {
        let stats = &self.env.stats;
        let outcome = match failure {
            Failure::Timeout => Outcome::Timeout,
            Failure::Crashed => Outcome::Crashed,
            // Not the worker's fault: counted with the scripts' errors.
            Failure::TooLarge => Outcome::Error,
            Failure::Unreachable => Outcome::Unreachable,
        };
        stats.call(hook, outcome, latency);
        if failure == Failure::Timeout {
            stats.timed_out();
        }
        if matches!(failure, Failure::Timeout | Failure::TooLarge) {
            let (key, _) = routing_key(flow);
            self.env.detached.insert(key, &flow.id);
        }
        let policy = self.env.policy(hook);
        match policy {
            FailurePolicy::Open => {
                flowtap_telemetry::script::failed_open(hook);
                let (key, _) = routing_key(flow);
                stats.failed_open(key, &flow.id, failure.describe());
            }
            FailurePolicy::Closed => {
                flowtap_telemetry::script::failed_closed(hook);
                stats.failed_closed();
            }
        }
        policy::apply(policy, failure, hook, flow)
    }

    async fn finish(&self, hook: Hook, flow: &mut Flow, reply: Reply, start: Instant) -> Verdict {
        let Reply { reply, release } = reply;
        // A script's exception was logged by the worker when it happened (one report per
        // exception); the errors the worker adds itself (a change it could not send back) were
        // not, and are printed here as mitmdump prints a script's error.
        for error in reply.errors.iter().filter(|e| e.script.is_empty()) {
            self.env.termlog.print("error", &error.traceback);
        }
        if reply.timed_out {
            return self.fail(hook, Failure::Timeout, flow, start.elapsed());
        }
        let outcome = if reply.errors.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Error
        };
        self.env.stats.call(hook, outcome, start.elapsed());
        let verdict = reply.verdict();
        let stream = reply.stream();
        let ignore_connection = reply.ignore_connection;
        let socks5_valid = reply.socks5_valid;
        if let Some(changed) = reply.flow {
            apply_changes(flow, changed);
        }
        // `socks5_auth`: the scripts' decision goes back on the subject's credentials.
        if let (Some(valid), Some(auth)) = (
            socks5_valid,
            flow.client_conn
                .as_mut()
                .and_then(|c| c.socks5_auth.as_mut()),
        ) {
            auth.valid = valid;
        }
        let streamed = match hook {
            Hook::Requestheaders => flow.request.as_mut().map(|r| &mut r.stream),
            Hook::Responseheaders => flow.response.as_mut().map(|r| &mut r.stream),
            _ => None,
        };
        if let Some(mode) = streamed
            && stream != v1::StreamMode::Buffer
        {
            *mode = stream.into();
        }
        if ignore_connection && hook == Hook::TlsClienthello {
            return Verdict::IgnoreConnection;
        }
        match verdict {
            v1::Verdict::Respond => Verdict::Respond,
            v1::Verdict::Kill => Verdict::Kill,
            v1::Verdict::Intercept => match release {
                Some(release) => match release.await {
                    Ok(Release::Resume) => {
                        flow.intercepted = false;
                        Verdict::Continue
                    }
                    Ok(Release::Kill) | Err(_) => {
                        flow.intercepted = false;
                        Verdict::Kill
                    }
                },
                None => Verdict::Continue,
            },
            _ => Verdict::Continue,
        }
    }
}

/// Takes the scripts' version of the flow, keeping the core's bodies where the reply has none
/// (bodies travel back only when a script set them), and the core's connections and request
/// where the reply has none (the worker leaves them out when the scripts did not change them).
fn apply_changes(flow: &mut Flow, mut changed: Flow) {
    if changed.client_conn.is_none() {
        changed.client_conn = flow.client_conn.take();
    }
    if changed.server_conn.is_none() {
        changed.server_conn = flow.server_conn.take();
    }
    if changed.request.is_none() {
        changed.request = flow.request.take();
    }
    if let (Some(new), Some(old)) = (changed.request.as_mut(), flow.request.as_ref())
        && new.content.is_none()
    {
        new.content = old.content.clone();
    }
    if let (Some(new), Some(old)) = (changed.response.as_mut(), flow.response.as_ref())
        && new.content.is_none()
    {
        new.content = old.content.clone();
    }
    changed.live = flow.live;
    *flow = changed;
}
