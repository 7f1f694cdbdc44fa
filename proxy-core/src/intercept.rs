//! `--set intercept=FILTER`: flows that match are paused in `request` and `response` (before
//! the scripts' hooks run, which see `flow.intercepted == True`) until a script resumes or
//! kills them, as mitmproxy's intercept addon does. A script that resumes a flow inside its own
//! hook lets it go on at once; a flow still intercepted after the hooks waits here, or in the
//! script client when a script's hook returned it intercepted.

use std::collections::HashMap;
use std::sync::Mutex;

use flowtap_flow::Filter;
use flowtap_proto::v1::Flow;
use tokio::sync::oneshot;

/// How a paused flow was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// `flow.resume()`.
    Resume,
    /// `flow.kill()`, or the proxy stopped.
    Kill,
}

/// The intercept filter and the flows paused by the core.
#[derive(Debug, Default)]
pub(crate) struct Intercepts {
    filter: Option<Filter>,
    held: Mutex<HashMap<String, oneshot::Sender<Release>>>,
}

impl Intercepts {
    /// Pauses flows matching `filter` (none when None).
    pub(crate) fn new(filter: Option<Filter>) -> Self {
        Self {
            filter,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// True when intercepting is on (a body the filter may read must then be buffered).
    pub(crate) fn active(&self) -> bool {
        self.filter.is_some()
    }

    /// mitmproxy's rule: the filter matches and the flow is not a replay.
    pub(crate) fn should_intercept(&self, flow: &Flow) -> bool {
        self.filter
            .as_ref()
            .is_some_and(|filter| flow.is_replay.is_none() && filter.matches(flow))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Release>>> {
        self.held
            .lock()
            .expect("intercept lock is never poisoned: no code panics while holding it")
    }

    /// Waits until the flow is resumed or killed. The flow stops waiting here when the future
    /// is dropped (its client went away).
    pub(crate) async fn hold(&self, flow: &Flow) -> Release {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(flow.id.clone(), tx);
        let _waiting = Waiting {
            intercepts: self,
            flow_id: &flow.id,
        };
        rx.await.unwrap_or(Release::Kill)
    }

    /// Releases a paused flow; false when no flow with that id waits here.
    pub(crate) fn release(&self, flow_id: &str, how: Release) -> bool {
        match self.lock().remove(flow_id) {
            Some(tx) => tx.send(how).is_ok(),
            None => false,
        }
    }
}

/// Removes a held flow's entry when its wait ends, however it ends.
struct Waiting<'a> {
    intercepts: &'a Intercepts,
    flow_id: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.intercepts.lock().remove(self.flow_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(path: &str) -> Flow {
        Flow {
            id: format!("id-{path}"),
            r#type: "http".into(),
            request: Some(flowtap_proto::v1::Request {
                path: bytes::Bytes::copy_from_slice(path.as_bytes()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_matching_flows_that_are_not_replays_are_intercepted() {
        let intercepts = Intercepts::new(Some(Filter::parse("~u /held").unwrap()));
        assert!(intercepts.should_intercept(&flow("/held/1")));
        assert!(!intercepts.should_intercept(&flow("/other")));
        let mut replay = flow("/held/2");
        replay.is_replay = Some("request".into());
        assert!(!intercepts.should_intercept(&replay));
        assert!(!Intercepts::new(None).should_intercept(&flow("/held/1")));
    }

    #[tokio::test]
    async fn a_held_flow_waits_for_its_release() {
        let intercepts = std::sync::Arc::new(Intercepts::new(None));
        let held = flow("/held");
        let waiter = {
            let intercepts = intercepts.clone();
            let held = held.clone();
            tokio::spawn(async move { intercepts.hold(&held).await })
        };
        while !intercepts.lock().contains_key(&held.id) {
            tokio::task::yield_now().await;
        }
        assert!(!intercepts.release("unknown", Release::Resume));
        assert!(intercepts.release(&held.id, Release::Kill));
        assert_eq!(waiter.await.unwrap(), Release::Kill);
        assert!(!intercepts.release(&held.id, Release::Resume));
    }
}
