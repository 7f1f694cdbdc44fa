//! mitmproxy's `message.stream`: a body that goes through the proxy as it arrives.
//!
//! A script sets `flow.request.stream` in `requestheaders` or `flow.response.stream` in
//! `responseheaders` to `True` (forward the body unread: [`StreamMode::Pass`]) or to a callable
//! (each chunk goes through it: [`StreamMode::Callback`]); the core sets `Pass` itself before
//! those hooks when the body is announced larger than `stream_large_bodies`. A streamed body is
//! not kept, so the `request` / `response` hook that follows sees no content.

use std::sync::Arc;

use bytes::Bytes;
use flowtap_proto::v1::{Flow, Request, Response, StreamMode};

use crate::hooks::{Hook, Hooks, Verdict};

/// How the request's body goes through.
pub(crate) fn request_mode(flow: &Flow) -> StreamMode {
    flow.request
        .as_ref()
        .map_or(StreamMode::Buffer, Request::stream)
}

/// How the response's body goes through.
pub(crate) fn response_mode(flow: &Flow) -> StreamMode {
    flow.response
        .as_ref()
        .map_or(StreamMode::Buffer, Response::stream)
}

/// A script's stream callable for one message of one flow: every chunk goes to the flow's
/// worker (`HOOK_STREAM_CHUNK`), which answers with what the callable returned.
pub(crate) struct ChunkFilter {
    hooks: Arc<dyn Hooks>,
    flow_id: String,
    response: bool,
}

/// The worker could not filter a chunk (a crash or timeout under the fail-closed policy, or a
/// kill): the body cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FilterFailed(pub(crate) String);

impl ChunkFilter {
    /// The request's filter, if a script streams the request through a callable.
    pub(crate) fn request(hooks: &Arc<dyn Hooks>, flow: &Flow) -> Option<Self> {
        (request_mode(flow) == StreamMode::Callback).then(|| Self::new(hooks, flow, false))
    }

    /// The response's filter, if a script streams the response through a callable.
    pub(crate) fn response(hooks: &Arc<dyn Hooks>, flow: &Flow) -> Option<Self> {
        (response_mode(flow) == StreamMode::Callback).then(|| Self::new(hooks, flow, true))
    }

    fn new(hooks: &Arc<dyn Hooks>, flow: &Flow, response: bool) -> Self {
        Self {
            hooks: hooks.clone(),
            flow_id: flow.id.clone(),
            response,
        }
    }

    /// Runs one chunk through the callable. The empty chunk after the last one lets the
    /// callable flush what it held back.
    pub(crate) async fn apply(&self, chunk: Bytes) -> Result<Bytes, FilterFailed> {
        let mut subject = Flow {
            id: self.flow_id.clone(),
            r#type: "http".into(),
            ..Flow::default()
        };
        let content = Some(chunk);
        let stream = StreamMode::Callback.into();
        if self.response {
            subject.response = Some(Response {
                content,
                stream,
                ..Response::default()
            });
        } else {
            subject.request = Some(Request {
                content,
                stream,
                ..Request::default()
            });
        }
        match self.hooks.call(Hook::StreamChunk, &mut subject).await {
            Verdict::Continue | Verdict::IgnoreConnection => {}
            Verdict::Kill => return Err(FilterFailed("the flow was killed".into())),
            // Only a fail-closed policy answers here: the worker could not run the callable.
            Verdict::Respond => {
                let cause = subject
                    .response
                    .and_then(|r| r.content)
                    .map(|c| String::from_utf8_lossy(&c).into_owned())
                    .unwrap_or_default();
                return Err(FilterFailed(format!("the stream callable failed: {cause}")));
            }
        }
        let content = if self.response {
            subject.response.and_then(|r| r.content)
        } else {
            subject.request.and_then(|r| r.content)
        };
        Ok(content.unwrap_or_default())
    }
}
