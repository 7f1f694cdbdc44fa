//! HTTP/2 inside an intercepted TLS tunnel, when both the client and the server chose `h2`.
//!
//! The client's streams are served with hyper and each becomes a flow with the same hooks as
//! HTTP/1 (`requestheaders`, `request`, `responseheaders`, `response`, or `error`); requests are
//! multiplexed onto one HTTP/2 connection to the server. A killed flow resets its stream.

use std::sync::Arc;

use bytes::Bytes;
use flowtap_flow::spill;
use flowtap_proto::v1::{Connection, Flow, Header, Headers, Request, Response, StreamMode};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Body as _, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::context::{ClientCtx, Shared};
use crate::flow::{self, Target, new_http_flow};
use crate::http1::Conn;
use crate::lifecycle::{self, Step};
use crate::limits::idle_bounded;
use crate::respond::Refusal;
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
    /// The listener's own way to servers (upstream mode's next proxy).
    own_via: Option<crate::upstream::Via>,
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
        own_via: ctx.own_via(),
        sender,
    };
    let service = hyper::service::service_fn(move |req| {
        let stream = stream.clone();
        async move { Ok::<_, std::convert::Infallible>(stream.handle(req).await) }
    });
    let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(conn.io), service);
    // Boxed so that the connection future is checked for `Send` here, with its lifetimes
    // known (rustc cannot prove it through the generic `idle_bounded`).
    let served: std::pin::Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>> =
        Box::pin(served);
    match idle_bounded(&ctx.activity, shared.config.tunnel_idle_timeout, served).await {
        Some(Err(e)) => tracing::debug!("client HTTP/2 connection ended: {e}"),
        Some(Ok(())) => {}
        None => tracing::debug!("closing an idle client HTTP/2 connection"),
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
                let error_hook = !lifecycle::responded(&flow);
                self.end(&mut flow, Step::Kill { error_hook }).await
            }
        }
    }

    /// The hooks and the forwarding of one stream's request, from `requestheaders` on.
    async fn lifecycle(&self, flow: &mut Flow, incoming: Incoming) -> hyper::Response<Body> {
        let shared = &self.shared;
        let step = lifecycle::requestheaders(shared, flow).await;
        if !matches!(step, Step::Go) {
            return self.end(flow, step).await;
        }
        if shared.buffer_request(flow) && stream::request_mode(flow) == StreamMode::Buffer {
            match collect(shared, incoming, shared.config.body_size_limit).await {
                Ok((content, trailers)) => {
                    if let Some(request) = flow.request.as_mut() {
                        request.content = Some(content);
                        request.trailers = trailers;
                        request.timestamp_end = Some(flow::now());
                    }
                }
                Err(Collect::Limit(limit)) => {
                    return self
                        .end(flow, Step::Fail(Refusal::over_body_size_limit(limit)))
                        .await;
                }
                Err(Collect::Read(e)) => {
                    let refusal = Refusal::BadRequest(format!("reading the request body: {e}"));
                    return self.end(flow, Step::Fail(refusal)).await;
                }
                Err(Collect::Unheld(e)) => {
                    return self.end(flow, Step::Fail(Refusal::unheld(&e))).await;
                }
            }
            return match lifecycle::request(shared, flow).await {
                Step::Go => self.forward(flow, None).await,
                other => self.end(flow, other).await,
            };
        }
        let body = match ChunkFilter::request(&shared.hooks, flow) {
            None => incoming.map_err(BoxError::from).boxed(),
            Some(filter) => {
                if let Some(request) = flow.request.as_mut() {
                    request
                        .headers
                        .retain(|h| !h.name.eq_ignore_ascii_case(b"content-length"));
                }
                relayed(incoming, Some(filter)).0
            }
        };
        self.forward(flow, Some(body)).await
    }

    /// Ends a stream's flow whose lifecycle step is not `Go`: a kill resets the stream, a
    /// script's response is answered after its response hooks, a failure with its page.
    async fn end(&self, flow: &mut Flow, step: Step) -> hyper::Response<Body> {
        let step = match step {
            Step::Respond => lifecycle::answered_by_script(&self.shared, flow).await,
            other => other,
        };
        match step {
            Step::Go | Step::Respond => self.finish(flow),
            Step::Kill { error_hook } => {
                lifecycle::killed(&self.shared, flow, error_hook).await;
                // hyper resets the stream when the body errors out.
                let reset = futures_util::stream::iter([Err::<Frame<Bytes>, BoxError>(
                    flow::KILLED_MESSAGE.into(),
                )]);
                hyper::Response::new(BodyExt::boxed(StreamBody::new(reset)))
            }
            Step::Fail(refusal) => {
                lifecycle::failed(&self.shared, flow, &refusal).await;
                refusal.log(&self.client);
                let response = refusal.response();
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
        }
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
        let Some(request) = flow.request.as_ref() else {
            let refusal = Refusal::Upstream("a script removed the request".into());
            return self.end(flow, Step::Fail(refusal)).await;
        };
        let elsewhere = request.host != self.target.host
            || request.port != u32::from(self.target.port)
            || &request.scheme[..] != b"https";
        let response = if elsewhere {
            // A script or map_remote pointed the request at another server.
            match self.send_elsewhere(flow, body).await {
                Ok(r) => r,
                Err(refusal) => return self.end(flow, Step::Fail(refusal)).await,
            }
        } else {
            let outgoing = match build_request(request, body) {
                Ok(r) => r,
                Err(e) => return self.end(flow, Step::Fail(Refusal::Upstream(e))).await,
            };
            let mut sender = self.sender.clone();
            match sender.send_request(outgoing).await {
                Ok(r) => r,
                Err(e) => {
                    let refusal =
                        Refusal::Upstream(format!("HTTP/2 request to server failed: {e}"));
                    return self.end(flow, Step::Fail(refusal)).await;
                }
            }
        };
        if let Some(request) = flow.request.as_mut().filter(|r| r.timestamp_end.is_none()) {
            request.timestamp_end = Some(flow::now());
        }
        // A streamed request fires `request` once the server answered, as over HTTP/1.
        if streamed_request {
            let step = lifecycle::request(&self.shared, flow).await;
            if let Step::Kill { .. } = step {
                return self.end(flow, step).await;
            }
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
        let step = lifecycle::responseheaders(&shared, flow).await;
        if !matches!(step, Step::Go) {
            return self.end(flow, step).await;
        }
        if stream::response_mode(flow) != StreamMode::Buffer {
            return self.stream_response(std::mem::take(flow), incoming);
        }
        if !shared.buffer_response(flow) {
            lifecycle::finished(&shared, flow);
            let Some(response) = flow.response.as_ref() else {
                return self.end(flow, Step::Go).await;
            };
            return to_hyper_response(response, incoming.map_err(BoxError::from).boxed());
        }
        match collect(&shared, incoming, shared.config.body_size_limit).await {
            Ok((content, trailers)) => {
                if let Some(response) = flow.response.as_mut() {
                    response.content = Some(content);
                    response.trailers = trailers;
                    response.timestamp_end = Some(flow::now());
                }
            }
            Err(Collect::Limit(limit)) => {
                let refusal = Refusal::Upstream(format!(
                    "response: {}",
                    Refusal::over_body_size_limit(limit).message()
                ));
                return self.end(flow, Step::Fail(refusal)).await;
            }
            Err(Collect::Read(e)) => {
                let refusal = Refusal::Upstream(format!("reading the response body: {e}"));
                return self.end(flow, Step::Fail(refusal)).await;
            }
            Err(Collect::Unheld(e)) => {
                return self.end(flow, Step::Fail(Refusal::unheld(&e))).await;
            }
        }
        match lifecycle::response(&shared, flow).await {
            Step::Go => self.finish(flow),
            other => self.end(flow, other).await,
        }
    }

    /// Sends a request whose server is no longer the tunnel's over a new HTTP/1.1 connection to
    /// its own server (with `server_connect`/`server_connected`, and `server_disconnected` when
    /// that connection ends after the exchange). One connection per such request.
    async fn send_elsewhere(
        &self,
        flow: &mut Flow,
        body: Option<Body>,
    ) -> Result<hyper::Response<Incoming>, Refusal> {
        let request = flow
            .request
            .as_ref()
            .ok_or_else(|| Refusal::Upstream("a script removed the request".into()))?;
        // A next proxy a script chose for this flow (`flow.server_conn.via`), as on HTTP/1.
        let via = self
            .shared
            .connector
            .via_for(
                flow.server_conn.as_ref().and_then(|s| s.via.as_ref()),
                self.own_via.as_ref(),
            )
            .map_err(|e| Refusal::server(&e))?;
        let key = crate::upstream::PoolKey {
            tls: &request.scheme[..] == b"https",
            host: request.host.clone(),
            port: u16::try_from(request.port).unwrap_or(443),
            via,
        };
        let sni = request.host.clone();
        let up = self
            .shared
            .connect_server(&self.client, flow, &key, &sni)
            .await
            .map_err(|e| Refusal::server(&e))?;
        flow.server_conn = Some(up.info.clone());
        let request = flow
            .request
            .as_ref()
            .ok_or_else(|| Refusal::Upstream("a script removed the request".into()))?;
        let outgoing =
            build_http1_request(request, body, up.proxied.as_ref()).map_err(Refusal::Upstream)?;
        let (mut sender, driver) =
            hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(up.conn.io))
                .await
                .map_err(|e| {
                    Refusal::Upstream(format!("HTTP/1 connection to server failed: {e}"))
                })?;
        let (shared, client, mut info) = (self.shared.clone(), self.client.clone(), up.info);
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::debug!("server HTTP/1 connection ended: {e}");
            }
            if shared
                .hooks
                .interest()
                .wants(crate::hooks::Hook::ServerDisconnected)
            {
                info.timestamp_end = Some(flow::now());
                shared
                    .connection_hook(
                        crate::hooks::Hook::ServerDisconnected,
                        &client,
                        Some(&mut info),
                    )
                    .await;
            }
        });
        let mut response = sender
            .send_request(outgoing)
            .await
            .map_err(|e| Refusal::Upstream(format!("HTTP/1 request to server failed: {e}")))?;
        // HTTP/2 has no connection-specific fields (RFC 9113, 8.2.2).
        let headers = response.headers_mut();
        let named: Vec<HeaderName> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named.iter().chain(&[
            http::header::CONNECTION,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
            http::header::TRANSFER_ENCODING,
            http::header::UPGRADE,
        ]) {
            headers.remove(name);
        }
        Ok(response)
    }

    /// A response a script streams (`flow.response.stream`): the head goes out now, the body
    /// as it arrives (through the script's callable, if any), `response` fires at its end.
    fn stream_response(&self, mut flow: Flow, incoming: Incoming) -> hyper::Response<Body> {
        let filter = ChunkFilter::response(&self.shared.hooks, &flow);
        let length_may_change = filter.is_some();
        let (body, pumped) = relayed(incoming, filter);
        let mut out = match flow.response.as_ref() {
            Some(response) => to_hyper_response(response, body),
            None => hyper::Response::new(body),
        };
        if length_may_change {
            out.headers_mut().remove(http::header::CONTENT_LENGTH);
        }
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = pumped.await.unwrap_or_else(|e| Err(e.to_string()));
            if let Some(response) = flow.response.as_mut() {
                response.timestamp_end = Some(flow::now());
                if let Ok(trailers) = &outcome {
                    response.trailers = trailers.as_ref().map(|t| Headers {
                        fields: headers_from_map(t),
                    });
                }
            }
            if let Err(message) = outcome {
                // The head has gone out: the failure is recorded, the stream was reset.
                let refusal = Refusal::Upstream(message);
                lifecycle::failed(&this.shared, &mut flow, &refusal).await;
                refusal.log(&this.client);
                return;
            }
            match lifecycle::response(&this.shared, &mut flow).await {
                Step::Kill { error_hook } => {
                    lifecycle::killed(&this.shared, &mut flow, error_hook).await;
                }
                // The body has gone out already: a script that removed the response changes
                // nothing.
                _ => lifecycle::finished(&this.shared, &mut flow),
            }
        });
        out
    }

    /// The flow's (buffered) response goes to the client and the flow is complete.
    fn finish(&self, flow: &mut Flow) -> hyper::Response<Body> {
        lifecycle::finished(&self.shared, flow);
        match flow.response.as_ref() {
            Some(response) => to_hyper_response(
                response,
                buffered_body(response.content.clone(), response.trailers.as_ref()),
            ),
            None => {
                let refusal = Refusal::Upstream("the flow has no response to send".into());
                refusal.log(&self.client);
                let response = refusal.response();
                to_hyper_response(&response, buffered_body(response.content.clone(), None))
            }
        }
    }
}

/// Why a body could not be collected.
enum Collect {
    Read(hyper::Error),
    Limit(u64),
    /// The spill file failed.
    Unheld(std::io::Error),
}

/// Reads a whole body (a single frame is kept as it came; a large body goes to a spill file,
/// see `http::read_whole`), refusing one larger than `limit`.
async fn collect(
    shared: &Shared,
    mut incoming: Incoming,
    limit: Option<u64>,
) -> Result<(Bytes, Option<Headers>), Collect> {
    let announced = incoming.size_hint().exact().unwrap_or(0);
    let mut content = spill::Collector::new(shared.config.spill_dir.as_deref(), announced);
    let mut trailers = None;
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(Collect::Read)?;
        match frame.into_data() {
            Ok(data) => {
                if let Some(limit) = limit.filter(|l| (content.len() + data.len()) as u64 > *l) {
                    return Err(Collect::Limit(limit));
                }
                content.push_owned(data).map_err(Collect::Unheld)?;
            }
            Err(frame) => {
                trailers = frame.into_trailers().ok().map(|t| Headers {
                    fields: headers_from_map(&t),
                });
            }
        }
    }
    Ok((content.finish().map_err(Collect::Unheld)?, trailers))
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
    if spill::is_spilled(&content) {
        return spilled_body(&content, trailers);
    }
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

/// A body held on disk, sent in slices whose pages are given back once the next is asked for.
fn spilled_body(content: &Bytes, trailers: Option<&Headers>) -> Body {
    let mut sent: Option<Bytes> = None;
    let data = spill::slices(content)
        .collect::<Vec<_>>()
        .into_iter()
        .map(move |slice| {
            if let Some(earlier) = sent.replace(slice.clone()) {
                spill::release(&earlier);
            }
            Ok(Frame::data(slice))
        });
    let trailers = trailers.map(|t| Ok(Frame::trailers(header_map(&t.fields))));
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
        data.chain(trailers),
    )))
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
    let body =
        body.unwrap_or_else(|| buffered_body(request.content.clone(), request.trailers.as_ref()));
    let mut out = hyper::Request::builder()
        .method(http::Method::from_bytes(&request.method).map_err(|e| e.to_string())?)
        .uri(uri)
        .version(http::Version::HTTP_2)
        .body(body)
        .map_err(|e| e.to_string())?;
    *out.headers_mut() = header_map(&request.headers);
    Ok(out)
}

/// An HTTP/2 request as HTTP/1.1 for another server: origin form with a `Host` header (from
/// the authority), or absolute form with the next proxy's credentials in upstream mode.
fn build_http1_request(
    request: &Request,
    body: Option<Body>,
    proxied: Option<&crate::upstream::Proxied>,
) -> Result<hyper::Request<Body>, String> {
    let scheme = String::from_utf8_lossy(&request.scheme).into_owned();
    let port = u16::try_from(request.port).unwrap_or(443);
    let host = flow::authority(&scheme, &request.host, port);
    let path = String::from_utf8_lossy(&request.path).into_owned();
    let uri = match proxied {
        Some(_) => format!("{scheme}://{host}{path}"),
        None => path,
    };
    let body =
        body.unwrap_or_else(|| buffered_body(request.content.clone(), request.trailers.as_ref()));
    let mut out = hyper::Request::builder()
        .method(http::Method::from_bytes(&request.method).map_err(|e| e.to_string())?)
        .uri(uri)
        .version(http::Version::HTTP_11)
        .body(body)
        .map_err(|e| e.to_string())?;
    let mut headers = header_map(&request.headers);
    if !headers.contains_key(http::header::HOST) {
        let value = HeaderValue::from_str(&host).map_err(|e| e.to_string())?;
        headers.insert(http::header::HOST, value);
    }
    if let Some(auth) = proxied.and_then(|p| p.authorization.as_ref()) {
        let value = HeaderValue::from_bytes(auth).map_err(|e| e.to_string())?;
        headers.insert(http::header::PROXY_AUTHORIZATION, value);
    }
    *out.headers_mut() = headers;
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
