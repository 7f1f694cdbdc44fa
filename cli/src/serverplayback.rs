//! `-S FILE` (mitmproxy's server replay): requests matching a recorded flow are answered with
//! the recorded response, marked `is_replay = "response"`, without contacting the server.
//!
//! Like mitmproxy's `serverplayback` addon it runs after the scripts, in the `request` hook. A
//! request matches when these agree (mitmproxy's `_hash`): scheme, method, path, query
//! parameters (minus `server_replay_ignore_params`), the body (unless
//! `server_replay_ignore_content`; form fields minus `server_replay_ignore_payload_params`),
//! the host (unless `server_replay_ignore_host`), the port (unless `server_replay_ignore_port`)
//! and the headers named in `server_replay_use_headers`. Each recorded response is served once,
//! in order, unless `server_replay_reuse`. Unmatched requests follow `server_replay_extra`:
//! `forward` (the default), `kill`, or a status code answered by the proxy. A served response's
//! dates move forward by its age unless `server_replay_refresh=false`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flowtap_flow::model::RequestExt;
use flowtap_proto::v1::{Flow, Header, Request, Response};
use flowtap_proxy_core::hooks::{Hook, HookInterest, Interest};
use flowtap_proxy_core::{CoreControl, Hooks, Verdict};
use futures_util::future::BoxFuture;

use crate::options::{Options, parse_bool};

/// The `server_replay_*` options.
#[derive(Clone, Debug, Default)]
pub(crate) struct PlaybackOptions {
    pub(crate) extra: String,
    pub(crate) reuse: bool,
    pub(crate) ignore_content: bool,
    pub(crate) ignore_host: bool,
    pub(crate) ignore_port: bool,
    pub(crate) ignore_params: Vec<String>,
    pub(crate) ignore_payload_params: Vec<String>,
    pub(crate) use_headers: Vec<String>,
    /// Shift the dates of a served response by its age (`server_replay_refresh`, default on).
    pub(crate) refresh: bool,
}

impl PlaybackOptions {
    /// Reads the options from `--set` values.
    pub(crate) fn from_options(options: &Options) -> anyhow::Result<Self> {
        let get = |name: &str| options.deferred.get(name).map(String::as_str);
        let flag = |name: &str| -> anyhow::Result<bool> {
            get(name).map_or(Ok(false), |v| {
                parse_bool(name, (!v.is_empty()).then_some(v), false)
            })
        };
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| {
                    v.lines()
                        .map(str::to_string)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut extra = get("server_replay_extra").unwrap_or("forward").to_string();
        if flag("server_replay_kill_extra")? {
            extra = "kill".into();
        }
        if !matches!(extra.as_str(), "forward" | "kill") && extra.parse::<u16>().is_err() {
            anyhow::bail!(
                "option server_replay_extra: expected forward, kill or a status code, got {extra:?}"
            );
        }
        Ok(Self {
            extra,
            reuse: flag("server_replay_reuse")? || flag("server_replay_nopop")?,
            ignore_content: flag("server_replay_ignore_content")?,
            ignore_host: flag("server_replay_ignore_host")?,
            ignore_port: flag("server_replay_ignore_port")?,
            ignore_params: list("server_replay_ignore_params"),
            ignore_payload_params: list("server_replay_ignore_payload_params"),
            use_headers: list("server_replay_use_headers"),
            refresh: get("server_replay_refresh").map_or(Ok(true), |v| {
                parse_bool("server_replay_refresh", (!v.is_empty()).then_some(v), true)
            })?,
        })
    }
}

/// The option names this module reads, so they are not reported as unknown.
pub(crate) const OPTION_NAMES: [&str; 11] = [
    "server_replay_refresh",
    "server_replay_extra",
    "server_replay_kill_extra",
    "server_replay_reuse",
    "server_replay_nopop",
    "server_replay_ignore_content",
    "server_replay_ignore_host",
    "server_replay_ignore_port",
    "server_replay_ignore_params",
    "server_replay_ignore_payload_params",
    "server_replay_use_headers",
];

/// Server replay in front of (after) the scripts.
pub(crate) struct ServerPlayback {
    inner: Arc<dyn Hooks>,
    interest: Interest,
    options: PlaybackOptions,
    recorded: Mutex<HashMap<String, VecDeque<Response>>>,
}

impl ServerPlayback {
    /// Replays the responses of `flows` (HTTP flows with a response) after `inner`'s hooks.
    pub(crate) fn new(inner: Arc<dyn Hooks>, flows: Vec<Flow>, options: PlaybackOptions) -> Self {
        let mut interest = inner.interest().clone();
        interest.add(
            Hook::Request,
            HookInterest {
                wanted: true,
                needs_body: true,
                awaited: true,
            },
        );
        let mut recorded: HashMap<String, VecDeque<Response>> = HashMap::new();
        for flow in flows {
            if let (Some(request), Some(response)) = (&flow.request, flow.response) {
                recorded
                    .entry(match_key(request, &options))
                    .or_default()
                    .push_back(response);
            }
        }
        Self {
            inner,
            interest,
            options,
            recorded: Mutex::new(recorded),
        }
    }

    /// The recorded response for `request`, if any (removed unless `reuse`).
    fn next_response(&self, request: &Request) -> Option<Response> {
        let key = match_key(request, &self.options);
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        let queue = recorded.get_mut(&key)?;
        if self.options.reuse {
            queue.front().cloned()
        } else {
            queue.pop_front()
        }
    }

    fn replay(&self, flow: &mut Flow) -> Verdict {
        let Some(request) = flow.request.as_ref() else {
            return Verdict::Continue;
        };
        if flow.is_replay.as_deref() == Some("request") || flow.response.is_some() {
            return Verdict::Continue;
        }
        if let Some(mut response) = self.next_response(request) {
            if self.options.refresh {
                refresh(&mut response, SystemTime::now());
            }
            flow.response = Some(response);
            flow.is_replay = Some("response".into());
            return Verdict::Respond;
        }
        match self.options.extra.as_str() {
            "forward" => Verdict::Continue,
            "kill" => Verdict::Kill,
            status => {
                let code: u16 = status.parse().unwrap_or(404);
                flow.response = Some(Response {
                    http_version: Bytes::from_static(b"HTTP/1.1"),
                    headers: vec![Header {
                        name: "content-length".into(),
                        value: "0".into(),
                    }],
                    content: Some(Bytes::new()),
                    status_code: u32::from(code),
                    reason: Bytes::from(http_reason(code)),
                    timestamp_start: request.timestamp_start,
                    ..Default::default()
                });
                Verdict::Respond
            }
        }
    }
}

/// mitmproxy's `Response.refresh`: `Date`, `Expires`, `Last-Modified` and the `Expires` of
/// each `Set-Cookie` move forward by the time since the response was recorded, so a replayed
/// response is as fresh as it was then. Dates that do not parse are left as they are.
fn refresh(response: &mut Response, now: SystemTime) {
    let recorded = UNIX_EPOCH + Duration::from_secs_f64(response.timestamp_start.max(0.0));
    let Ok(delta) = now.duration_since(recorded) else {
        return;
    };
    let shift = |text: &str| {
        httpdate::parse_http_date(text.trim())
            .ok()
            .and_then(|t| t.checked_add(delta))
            .map(httpdate::fmt_http_date)
    };
    for header in &mut response.headers {
        let name = String::from_utf8_lossy(&header.name).to_ascii_lowercase();
        let value = String::from_utf8_lossy(&header.value).into_owned();
        let refreshed = match name.as_str() {
            "date" | "expires" | "last-modified" => shift(&value),
            "set-cookie" => refresh_cookie(&value, &shift),
            _ => None,
        };
        if let Some(new) = refreshed {
            header.value = Bytes::from(new);
        }
    }
}

/// A `Set-Cookie` value with its `Expires` attribute shifted (None when it has none).
fn refresh_cookie(value: &str, shift: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut changed = false;
    let parts: Vec<String> = value
        .split(';')
        .map(|part| match part.split_once('=') {
            Some((name, date)) if name.trim().eq_ignore_ascii_case("expires") => {
                match shift(date) {
                    Some(new) => {
                        changed = true;
                        format!("{name}={new}")
                    }
                    None => part.to_string(),
                }
            }
            _ => part.to_string(),
        })
        .collect();
    changed.then(|| parts.join(";"))
}

fn http_reason(code: u16) -> &'static str {
    match code {
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// mitmproxy's matching key for server replay, as one string.
fn match_key(request: &Request, options: &PlaybackOptions) -> String {
    let path = String::from_utf8_lossy(&request.path);
    let (path, query) = path.split_once('?').unwrap_or((&path, ""));
    let mut key = vec![
        String::from_utf8_lossy(&request.scheme).into_owned(),
        String::from_utf8_lossy(&request.method).into_owned(),
        path.to_string(),
    ];
    if !options.ignore_content {
        key.push(content_key(request, options));
    }
    if !options.ignore_host {
        key.push(request.pretty_host());
    }
    if !options.ignore_port {
        key.push(request.port.to_string());
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !options.ignore_params.iter().any(|p| p == name) {
            key.push(name.to_string());
            key.push(value.to_string());
        }
    }
    for name in &options.use_headers {
        key.push(format!(
            "{name}={}",
            request.header(name).unwrap_or_default()
        ));
    }
    key.join("\0")
}

/// The body's part of the key: url-encoded forms without the ignored payload parameters, else
/// the raw body.
fn content_key(request: &Request, options: &PlaybackOptions) -> String {
    let content = request.content.as_deref().unwrap_or_default();
    let urlencoded = request.header("content-type").is_some_and(|t| {
        t.to_ascii_lowercase()
            .contains("application/x-www-form-urlencoded")
    });
    if urlencoded && !options.ignore_payload_params.is_empty() {
        let text = String::from_utf8_lossy(content);
        return text
            .split('&')
            .filter(|pair| {
                let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
                !options.ignore_payload_params.iter().any(|p| p == name)
            })
            .collect::<Vec<_>>()
            .join("&");
    }
    String::from_utf8_lossy(content).into_owned()
}

impl Hooks for ServerPlayback {
    fn interest(&self) -> &Interest {
        &self.interest
    }

    fn call<'a>(&'a self, hook: Hook, flow: &'a mut Flow) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let mut verdict = Verdict::Continue;
            if self.inner.interest().wants(hook) {
                verdict = self.inner.call(hook, flow).await;
            }
            if hook == Hook::Request && verdict == Verdict::Continue {
                verdict = self.replay(flow);
            }
            verdict
        })
    }

    fn attach(&self, control: Arc<dyn CoreControl>) {
        self.inner.attach(control);
    }

    fn client_closed(&self, client_id: &str) {
        self.inner.client_closed(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtap_proxy_core::NoHooks;

    fn request(path: &str, body: &str) -> Request {
        Request {
            http_version: "HTTP/1.1".into(),
            headers: vec![Header {
                name: "Host".into(),
                value: "example.com".into(),
            }],
            content: Some(Bytes::copy_from_slice(body.as_bytes())),
            host: "example.com".into(),
            port: 80,
            method: "POST".into(),
            scheme: "http".into(),
            path: Bytes::copy_from_slice(path.as_bytes()),
            ..Default::default()
        }
    }

    fn recorded(path: &str, body: &str, status: u32) -> Flow {
        Flow {
            r#type: "http".into(),
            request: Some(request(path, body)),
            response: Some(Response {
                status_code: status,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn playback(flows: Vec<Flow>, options: PlaybackOptions) -> ServerPlayback {
        ServerPlayback::new(Arc::new(NoHooks::default()), flows, options)
    }

    fn live(path: &str, body: &str) -> Flow {
        Flow {
            r#type: "http".into(),
            request: Some(request(path, body)),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn matching_request_gets_the_recorded_response_once() {
        let options = PlaybackOptions {
            extra: "forward".into(),
            ..Default::default()
        };
        let p = playback(vec![recorded("/a?x=1", "b", 201)], options);
        let mut flow = live("/a?x=1", "b");
        assert_eq!(p.call(Hook::Request, &mut flow).await, Verdict::Respond);
        assert_eq!(flow.response.as_ref().map(|r| r.status_code), Some(201));
        assert_eq!(flow.is_replay.as_deref(), Some("response"));
        let mut again = live("/a?x=1", "b");
        assert_eq!(
            p.call(Hook::Request, &mut again).await,
            Verdict::Continue,
            "served once"
        );
        let mut other = live("/a?x=2", "b");
        assert_eq!(p.call(Hook::Request, &mut other).await, Verdict::Continue);
    }

    #[test]
    fn refresh_moves_dates_and_cookie_expiry_by_the_age() {
        let header = |n: &str, v: &str| Header {
            name: Bytes::copy_from_slice(n.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        };
        let recorded = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let mut response = Response {
            timestamp_start: recorded.duration_since(UNIX_EPOCH).unwrap().as_secs_f64(),
            headers: vec![
                header("Date", "Wed, 21 Oct 2015 07:28:00 GMT"),
                header("Last-Modified", "Tue, 20 Oct 2015 07:28:00 GMT"),
                header(
                    "Set-Cookie",
                    "a=1; Expires=Thu, 22 Oct 2015 07:28:00 GMT; Path=/",
                ),
                header("ETag", "\"x\""),
            ],
            ..Default::default()
        };
        refresh(&mut response, recorded + Duration::from_secs(86400));
        let values: Vec<_> = response
            .headers
            .iter()
            .map(|h| String::from_utf8_lossy(&h.value).into_owned())
            .collect();
        assert_eq!(
            values,
            [
                "Thu, 22 Oct 2015 07:28:00 GMT",
                "Wed, 21 Oct 2015 07:28:00 GMT",
                "a=1; Expires=Fri, 23 Oct 2015 07:28:00 GMT; Path=/",
                "\"x\"",
            ]
        );
    }

    #[tokio::test]
    async fn ignore_options_and_extra() {
        let options = PlaybackOptions {
            extra: "404".into(),
            reuse: true,
            ignore_content: true,
            ignore_params: vec!["t".into()],
            ..Default::default()
        };
        let p = playback(vec![recorded("/a?t=1&k=v", "one", 200)], options);
        let mut flow = live("/a?t=2&k=v", "two");
        assert_eq!(p.call(Hook::Request, &mut flow).await, Verdict::Respond);
        assert_eq!(flow.response.as_ref().map(|r| r.status_code), Some(200));
        let mut reused = live("/a?k=v", "three");
        assert_eq!(p.call(Hook::Request, &mut reused).await, Verdict::Respond);
        let mut extra = live("/b", "");
        assert_eq!(p.call(Hook::Request, &mut extra).await, Verdict::Respond);
        assert_eq!(extra.response.as_ref().map(|r| r.status_code), Some(404));
        let kill = PlaybackOptions {
            extra: "kill".into(),
            ..Default::default()
        };
        let mut killed = live("/b", "");
        assert_eq!(
            playback(vec![], kill)
                .call(Hook::Request, &mut killed)
                .await,
            Verdict::Kill
        );
    }
}
