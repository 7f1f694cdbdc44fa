//! HTTP/2 inside an intercepted TLS tunnel, when both the client and the server chose `h2`.
//!
//! The client's streams are served with hyper and each becomes a flow with the same hooks as
//! HTTP/1 (`requestheaders`, `request`, `responseheaders`, `response`, or `error`); requests are
//! multiplexed onto one HTTP/2 connection to the server. A killed flow resets its stream.

use std::sync::Arc;

use bytes::Bytes;
use flowtap_proto::v1::{Connection, Flow, Header, Headers, Request, Response, StreamMode};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::error::error_response;
use crate::flow::{self, Target, is_killed, new_http_flow};
use crate::hooks::{Hook, Verdict};
use crate::http::ClientCtx;
use crate::http1::Conn;
use crate::server::Shared;
use crate::stream::{self, ChunkFilter};
use crate::upstream::Io;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// Everything one request handler needs, cloned per stream.
#[derive(Clone)]
struct Stream {
    shared: Arc<Shared>,
    client: Connection,
    server: Connection,
    target: Target,
    sender: hyper::client::conn::http2::SendRequest<Body>,
}

/// Serves the client's HTTP/2 connection until it closes.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    conn: Conn<Io>,
    ctx: &mut ClientCtx,
    upstream: Io,
    server: Connection,
    target: Target,
) {
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Body>(TokioIo::new(upstream))
        .await;
    let (sender, driver) = match handshake {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(host = %target.host, "HTTP/2 handshake with server failed: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        if let Err(e) = driver.await {
            tracing::debug!("server HTTP/2 connection ended: {e}");
        }
    });
    let stream = Stream {
        shared: shared.clone(),
        client: ctx.client.clone(),
        server,
        target,
        sender,
    };
    let service = hyper::service::service_fn(move |req| {
        let stream = stream.clone();
        async move { Ok::<_, std::convert::Infallible>(stream.handle(req).await) }
    });
    let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(conn.io), service)
        .await;
    if let Err(e) = served {
        tracing::debug!("client HTTP/2 connection ended: {e}");
    }
}

impl Stream {
    async fn handle(self, req: hyper::Request<Incoming>) -> hyper::Response<Body> {
        let (parts, incoming) = req.into_parts();
        let request = self.request_from_parts(&parts);
        let mut flow = new_http_flow(&self.client, request);
        flow.server_conn = Some(self.server.clone());
        let Some(live) = self.shared.live.register(&flow.id) else {
            return self.lifecycle(&mut flow, incoming).await;
        };
        // Killed from outside its hooks, the flow's stream is reset.
        tokio::select! {
            response = self.lifecycle(&mut flow, incoming) => response,
            () = live.killed() => {
                let responded = flow.response.as_ref().is_some_and(|r| r.timestamp_end.is_some());
                self.killed(&mut flow, !responded).await
            }
        }
    }

    /// The hooks and the forwarding of one stream's request, from `requestheaders` on.
    async fn lifecycle(&self, flow: &mut Flow, incoming: Incoming) -> hyper::Response<Body> {
        let shared = &self.shared;
        if killed_by(&shared.hook(Hook::Requestheaders, flow).await, flow) {
            return self.killed(flow, true).await;
        }
        let mut body = Some(incoming);
        if shared.buffer_request(flow) && stream::request_mode(flow) == StreamMode::Buffer {
            let Some(incoming) = body.take() else {
                unreachable!("the body is taken once")
            };
            match collect(incoming).await {
                Ok((content, trailers)) => {
                    let request = flow.request.as_mut().expect("an HTTP flow has a request");
                    request.content = Some(content);
                    request.trailers = trailers;
                    request.timestamp_end = Some(flow::now());
                }
                Err(e) => {
                    return self
                        .failed(flow, 400, &format!("reading the request body: {e}"))
                        .await;
                }
            }
            let verdict = shared.hook(Hook::Request, flow).await;
            if killed_by(&verdict, flow) {
                return self.killed(flow, true).await;
            }
            if verdict == Verdict::Respond || flow.response.is_some() {
                return self.respond(flow).await;
            }
        }
        let body = body.map(|incoming| match ChunkFilter::request(&shared.hooks, flow) {
            None => incoming.map_err(BoxError::from).boxed(),
            Some(filter) => {
                let request = flow.request.as_mut().expect("an HTTP flow has a request");
                request
                    .headers
                    .retain(|h| !h.name.eq_ignore_ascii_case(b"content-length"));
                relayed(incoming, Some(filter)).0
            }
        });
        self.forward(flow, body).await
    }

    fn request_from_parts(&self, parts: &http::request::Parts) -> Request {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        Request {
            http_version: Bytes::from_static(b"HTTP/2.0"),
            headers: headers_from_map(&parts.headers),
            content: None,
            trailers: None,
            timestamp_start: flow::now(),
            timestamp_end: None,
            host: self.target.host.clone(),
            port: u32::from(self.target.port),
            method: Bytes::copy_from_slice(parts.method.as_str().as_bytes()),
            scheme: Bytes::from_static(b"https"),
            authority: Bytes::from(authority),
            path: Bytes::copy_from_slice(path.as_bytes()),
            stream: StreamMode::Buffer.into(),
        }
    }

    async fn forward(&self, flow: &mut Flow, body: Option<Body>) -> hyper::Response<Body> {
        let streamed_request = body.is_some();
        let request = flow.request.as_ref().expect("an HTTP flow has a request");
        if request.host != self.target.host || request.port != u32::from(self.target.port) {
            let msg = "a script redirected an HTTP/2 request to another server; not supported yet";
            return self.failed(flow, 502, msg).await;
        }
        let outgoing = match build_request(request, body) {
            Ok(r) => r,
            Err(e) => return self.failed(flow, 502, &e).await,
        };
        let mut sender = self.sender.clone();
        let response = match sender.send_request(outgoing).await {
            Ok(r) => r,
            Err(e) => {
                return self
                    .failed(flow, 502, &format!("HTTP/2 request to server failed: {e}"))
                    .await;
            }
        };
        if flow
            .request
            .as_ref()
            .is_some_and(|r| r.timestamp_end.is_none())
        {
            flow.request.as_mut().expect("checked").timestamp_end = Some(flow::now());
        }
        // A streamed request fires `request` once the server answered, as over HTTP/1.
        if streamed_request && killed_by(&self.shared.hook(Hook::Request, flow).await, flow) {
            return self.killed(flow, true).await;
        }
        let (parts, incoming) = response.into_parts();
        flow.response = Some(Response {
            http_version: Bytes::from_static(b"HTTP/2.0"),
            headers: headers_from_map(&parts.headers),
            content: None,
            trailers: None,
            timestamp_start: flow::now(),
            timestamp_end: None,
            status_code: u32::from(parts.status.as_u16()),
            reason: Bytes::new(),
            stream: StreamMode::Buffer.into(),
        });
        let shared = self.shared.clone();
        if killed_by(&shared.hook(Hook::Responseheaders, flow).await, flow) {
            return self.killed(flow, true).await;
        }
        if stream::response_mode(flow) != StreamMode::Buffer {
            return self.stream_response(std::mem::take(flow), incoming);
        }
        if !shared.buffer_response(flow) {
            shared.live.finish(&flow.id);
            flow.live = false;
            shared.sink.flow_finished(flow);
            let response = flow.response.as_ref().expect("set above");
            return to_hyper_response(response, incoming.map_err(BoxError::from).boxed());
        }
        match collect(incoming).await {
            Ok((content, trailers)) => {
                let response = flow.response.as_mut().expect("set above");
                response.content = Some(content);
                response.trailers = trailers;
                response.timestamp_end = Some(flow::now());
            }
            Err(e) => {
                return self
                    .failed(flow, 502, &format!("reading the response body: {e}"))
                    .await;
            }
        }
        if killed_by(&shared.hook(Hook::Response, flow).await, flow) {
            return self.killed(flow, false).await;
        }
        self.finish(flow)
    }

    /// A response a script streams (`flow.response.stream`): the head goes out now, the body
    /// as it arrives (through the script's callable, if any), `response` fires at its end.
    fn stream_response(&self, mut flow: Flow, incoming: Incoming) -> hyper::Response<Body> {
        let filter = ChunkFilter::response(&self.shared.hooks, &flow);
        let length_may_change = filter.is_some();
        let (body, pumped) = relayed(incoming, filter);
        let response = flow.response.as_ref().expect("set before the hooks");
        let mut out = to_hyper_response(response, body);
        if length_may_change {
            out.headers_mut().remove(http::header::CONTENT_LENGTH);
        }
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = pumped.await.unwrap_or_else(|e| Err(e.to_string()));
            let response = flow.response.as_mut().expect("set before the hooks");
            response.timestamp_end = Some(flow::now());
            match outcome {
                Ok(trailers) => {
                    response.trailers = trailers.map(|t| Headers {
                        fields: headers_from_map(&t),
                    });
                }
                Err(message) => {
                    let _ = this.failed(&mut flow, 502, &message).await;
                    return;
                }
            }
            if killed_by(&this.shared.hook(Hook::Response, &mut flow).await, &flow) {
                let _ = this.killed(&mut flow, false).await;
                return;
            }
            let _ = this.finish(&mut flow);
        });
        out
    }

    async fn respond(&self, flow: &mut Flow) -> hyper::Response<Body> {
        let shared = self.shared.clone();
        if killed_by(&shared.hook(Hook::Responseheaders, flow).await, flow) {
            return self.killed(flow, true).await;
        }
        if killed_by(&shared.hook(Hook::Response, flow).await, flow) {
            return self.killed(flow, false).await;
        }
        self.finish(flow)
    }

    fn finish(&self, flow: &mut Flow) -> hyper::Response<Body> {
        self.shared.live.finish(&flow.id);
        flow.live = false;
        self.shared.sink.flow_finished(flow);
        let response = flow
            .response
            .as_ref()
            .expect("a finished flow has a response");
        to_hyper_response(
            response,
            buffered_body(response.content.clone(), response.trailers.as_ref()),
        )
    }

    async fn failed(&self, flow: &mut Flow, status: u16, message: &str) -> hyper::Response<Body> {
        self.shared.live.finish(&flow.id);
        tracing::info!(flow = %flow.id, "{message}");
        flow::set_error(flow, message);
        self.shared.hook(Hook::Error, flow).await;
        flow.live = false;
        self.shared.sink.flow_finished(flow);
        let response = error_response(status, message);
        let headers: Vec<Header> = response
            .headers
            .iter()
            .filter(|h| !h.name.eq_ignore_ascii_case(b"connection"))
            .cloned()
            .collect();
        let response = Response {
            headers,
            ..response
        };
        to_hyper_response(&response, buffered_body(response.content.clone(), None))
    }

    /// A killed flow resets its stream: hyper does that when the body errors out.
    async fn killed(&self, flow: &mut Flow, fire_error: bool) -> hyper::Response<Body> {
        self.shared.live.finish(&flow.id);
        flow::set_error(flow, flow::KILLED_MESSAGE);
        flow.live = false;
        if fire_error {
            self.shared.hook(Hook::Error, flow).await;
        }
        self.shared.sink.flow_finished(flow);
        let reset = futures_util::stream::iter([Err::<Frame<Bytes>, BoxError>(
            flow::KILLED_MESSAGE.into(),
        )]);
        hyper::Response::new(BodyExt::boxed(StreamBody::new(reset)))
    }
}

fn killed_by(verdict: &Verdict, flow: &Flow) -> bool {
    *verdict == Verdict::Kill || is_killed(flow)
}

async fn collect(incoming: Incoming) -> Result<(Bytes, Option<Headers>), hyper::Error> {
    let collected = incoming.collect().await?;
    let trailers = collected.trailers().map(|t| Headers {
        fields: headers_from_map(t),
    });
    Ok((collected.to_bytes(), trailers))
}

fn headers_from_map(map: &HeaderMap) -> Vec<Header> {
    map.iter()
        .map(|(name, value)| Header {
            name: Bytes::copy_from_slice(name.as_str().as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        })
        .collect()
}

/// Headers that HTTP/2 forbids (RFC 9113 8.2.2) or carries as pseudo-headers.
fn h2_forbidden(name: &[u8]) -> bool {
    const FORBIDDEN: [&[u8]; 7] = [
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"te",
    ];
    FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f)) || name.starts_with(b":")
}

fn header_map(headers: &[Header]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers.iter().filter(|h| !h2_forbidden(&h.name)) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&h.name),
            HeaderValue::from_bytes(&h.value),
        ) {
            map.append(name, value);
        }
    }
    map
}

fn buffered_body(content: Option<Bytes>, trailers: Option<&Headers>) -> Body {
    let content = content.unwrap_or_default();
    match trailers {
        None => Full::new(content).map_err(|never| match never {}).boxed(),
        Some(t) => {
            let frames = [
                Ok(Frame::data(content)),
                Ok(Frame::trailers(header_map(&t.fields))),
            ];
            BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
        }
    }
}

/// How a relayed body ended: its trailers, or why it broke off.
type Relayed = tokio::task::JoinHandle<Result<Option<HeaderMap>, String>>;

/// A body relayed as it arrives, its data through the script's stream callable when there is a
/// filter. When it breaks off, the receiving side sees its stream reset.
fn relayed(incoming: Incoming, filter: Option<ChunkFilter>) -> (Body, Relayed) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let task = tokio::spawn(async move {
        let result = pump(incoming, filter.as_ref(), &tx).await;
        if let Err(e) = &result {
            let _ = tx.send(Err(BoxError::from(e.clone()))).await;
        }
        result
    });
    let frames =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    (BodyExt::boxed(StreamBody::new(frames)), task)
}

async fn pump(
    mut incoming: Incoming,
    filter: Option<&ChunkFilter>,
    tx: &tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
) -> Result<Option<HeaderMap>, String> {
    let gone = || "the receiving side went away".to_string();
    let mut trailers = None;
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
        match frame.into_data() {
            Ok(mut data) => {
                if let Some(filter) = filter {
                    data = filter.apply(data).await.map_err(|e| e.to_string())?;
                }
                if !data.is_empty() {
                    tx.send(Ok(Frame::data(data))).await.map_err(|_| gone())?;
                }
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    if let Some(filter) = filter {
        let tail = filter
            .apply(Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        if !tail.is_empty() {
            tx.send(Ok(Frame::data(tail))).await.map_err(|_| gone())?;
        }
    }
    if let Some(t) = &trailers {
        tx.send(Ok(Frame::trailers(t.clone())))
            .await
            .map_err(|_| gone())?;
    }
    Ok(trailers)
}

fn build_request(request: &Request, body: Option<Body>) -> Result<hyper::Request<Body>, String> {
    let authority = if request.authority.is_empty() {
        let default = if request.port == 443 {
            String::new()
        } else {
            format!(":{}", request.port)
        };
        format!("{}{default}", request.host)
    } else {
        String::from_utf8_lossy(&request.authority).into_owned()
    };
    let uri = format!(
        "https://{authority}{}",
        String::from_utf8_lossy(&request.path)
    );
    let body = match body {
        Some(body) => body,
        None => buffered_body(request.content.clone(), request.trailers.as_ref()),
    };
    let mut out = hyper::Request::builder()
        .method(http::Method::from_bytes(&request.method).map_err(|e| e.to_string())?)
        .uri(uri)
        .version(http::Version::HTTP_2)
        .body(body)
        .map_err(|e| e.to_string())?;
    *out.headers_mut() = header_map(&request.headers);
    Ok(out)
}

fn to_hyper_response(response: &Response, body: Body) -> hyper::Response<Body> {
    let mut out = hyper::Response::new(body);
    flowtap_telemetry::proxy::response(u16::try_from(response.status_code).unwrap_or(502));
    *out.status_mut() =
        http::StatusCode::from_u16(u16::try_from(response.status_code).unwrap_or(502))
            .unwrap_or(http::StatusCode::BAD_GATEWAY);
    let mut headers = header_map(&response.headers);
    if response.content.is_some() {
        // The length is recomputed from the body hyper sends.
        headers.remove(http::header::CONTENT_LENGTH);
    }
    *out.headers_mut() = headers;
    out
}
