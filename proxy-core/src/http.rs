//! The HTTP/1 flow lifecycle on one client connection: read a request, run the hooks, forward
//! it, run the response hooks, answer the client; then the next request on the same connection.
//!
//! Hook order (mitmproxy 12, spec 1.9): `requestheaders`, `request`, [`server_connect`,
//! `server_connected` when a new server connection is needed], `responseheaders`, `response`;
//! or `error` when the flow fails. A response set by a script in `requestheaders` or `request`
//! skips the server but still goes through `responseheaders` and `response`.

use bytes::{Bytes, BytesMut};
use flowtap_proto::v1::{Connection, Flow, Header, Headers, Response, StreamMode};
use tokio::io::AsyncWriteExt;

use crate::error::{Http1Error, UpstreamError, error_response};
use crate::flow::{self, Target, is_killed, new_http_flow, request_from_head, response_from_head};
use crate::hooks::{Hook, Verdict};
use crate::http1::{
    self, BodyReader, Conn, Framing, RequestHead, header, header_has_token, push_header,
    write_body_end, write_body_piece, write_end_to_end,
};
use crate::server::Shared;
use crate::stream::{self, ChunkFilter};
use crate::upstream::{Io, PoolKey, Upstream};
use crate::websocket;

/// The state of one client connection that outlives a single request.
pub(crate) struct ClientCtx {
    /// The client connection as flows record it.
    pub(crate) client: Connection,
    /// Server connections this client connection has used and may use again.
    pub(crate) owned: Vec<Upstream>,
    /// Inside a CONNECT tunnel: where origin-form requests go.
    pub(crate) tunnel: Option<Target>,
}

/// What the connection loop does after a request.
pub(crate) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the client connection.
    Close,
    /// The request was a CONNECT: the caller sets up the tunnel.
    Connect(RequestHead),
    /// The connection was upgraded (e.g. WebSocket) and has been relayed to its end.
    Upgraded,
}

/// Serves HTTP/1 requests on `conn` until the client closes, an error ends the connection, or
/// a CONNECT arrives (returned to the caller).
pub(crate) async fn serve(
    shared: &Shared,
    conn: &mut Conn<Io>,
    ctx: &mut ClientCtx,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Next {
    loop {
        let head = tokio::select! {
            head = conn.read_request_head() => head,
            _ = shutdown.wait_for(|stop| *stop), if conn.buf.is_empty() => return Next::Close,
        };
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return Next::Close,
            Err(Http1Error::Io(_) | Http1Error::Truncated) => return Next::Close,
            Err(e) => {
                tracing::info!(client = ?ctx.client.peername, "bad request: {e}");
                let _ = write_error(conn, 400, &e.to_string()).await;
                return Next::Close;
            }
        };
        if head.method.eq_ignore_ascii_case(b"CONNECT") && ctx.tunnel.is_none() {
            return Next::Connect(head);
        }
        match exchange(shared, conn, ctx, head).await {
            Next::KeepAlive if !*shutdown.borrow() => continue,
            Next::KeepAlive => return Next::Close,
            other => return other,
        }
    }
}

/// Client replay: sends a stored flow's request again as a new exchange of the same flow.
pub(crate) async fn replay(shared: &Shared, mut flow: Flow) {
    let mut backup = flow.clone();
    backup.backup = None;
    flow.backup = Some(Box::new(backup));
    flow.is_replay = Some("request".into());
    flow.response = None;
    flow.error = None;
    flow.live = true;
    let request = request_mut(&mut flow);
    request.timestamp_start = flow::now();
    request.content.get_or_insert_with(Bytes::new);
    // The replay has no client: responses go to a pipe that is drained and dropped.
    let (near, mut far) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut scratch = vec![0u8; 16 * 1024];
        while matches!(tokio::io::AsyncReadExt::read(&mut far, &mut scratch).await, Ok(n) if n > 0)
        {
        }
    });
    let mut conn: Conn<Io> = Conn::new(Box::new(near));
    let client = flow.client_conn.clone().unwrap_or_default();
    // The replay's client connection is over when the replay is (it may carry the id of a
    // connection that closed long ago).
    let _closed = crate::server::ClientClosed {
        hooks: std::sync::Arc::clone(&shared.hooks),
        client_id: client.id.clone(),
    };
    let mut ctx = ClientCtx {
        client,
        owned: Vec::new(),
        tunnel: None,
    };
    if shared.hook(Hook::Requestheaders, &mut flow).await == Verdict::Kill || is_killed(&flow) {
        killed(shared, &mut flow, true).await;
        return;
    }
    let verdict = shared.hook(Hook::Request, &mut flow).await;
    if verdict == Verdict::Kill || is_killed(&flow) {
        killed(shared, &mut flow, true).await;
    } else if verdict == Verdict::Respond || flow.response.is_some() {
        respond_from_script(shared, &mut conn, &mut flow, false).await;
    } else {
        forward(
            shared,
            &mut conn,
            &mut ctx,
            &mut flow,
            Body::Buffered,
            false,
        )
        .await;
    }
    let owned = std::mem::take(&mut ctx.owned);
    for up in owned {
        shared.server_closed(&ctx.client, up).await;
    }
}

/// Writes a proxy-made error page and flushes it.
pub(crate) async fn write_error(
    conn: &mut Conn<Io>,
    status: u16,
    msg: &str,
) -> std::io::Result<()> {
    let response = error_response(status, msg);
    write_full_response(conn, &response, b"GET", true).await
}

/// The body of a message: held in the flow, or still on the wire.
enum Body {
    Buffered,
    /// Relayed as it arrives; through the script's callable when there is a filter.
    Streaming(BodyReader, Option<ChunkFilter>),
}

/// One request/response exchange.
async fn exchange(
    shared: &Shared,
    conn: &mut Conn<Io>,
    ctx: &mut ClientCtx,
    head: RequestHead,
) -> Next {
    let Some(target) = request_target(&head, ctx.tunnel.as_ref()) else {
        let form = String::from_utf8_lossy(&head.target).into_owned();
        let _ = write_error(
            conn,
            400,
            &format!("invalid request target {form:?} (expected absolute form)"),
        )
        .await;
        return Next::Close;
    };
    let framing = match http1::request_framing(&head.headers) {
        Ok(f) => f,
        Err(e) => {
            let _ = write_error(conn, 400, &e.to_string()).await;
            return Next::Close;
        }
    };
    let framed = Framed {
        framing,
        keep_alive: client_keep_alive(&head),
        expect_continue: header_has_token(&head.headers, "expect", "100-continue"),
    };
    let mut flow = new_http_flow(&ctx.client, request_from_head(head, &target));
    let Some(live) = shared.live.register(&flow.id) else {
        return lifecycle(shared, conn, ctx, &mut flow, framed).await;
    };
    // A script may kill the flow from outside its hooks (a stored flow, another flow's hook,
    // a task): the exchange stops where it is and the client connection is closed.
    tokio::select! {
        next = lifecycle(shared, conn, ctx, &mut flow, framed) => next,
        () = live.killed() => {
            // Killed once the response was complete, the flow gets no `error` hook.
            let responded = flow.response.as_ref().is_some_and(|r| r.timestamp_end.is_some());
            killed(shared, &mut flow, !responded).await
        }
    }
}

/// What the request head says about its body and the connection.
#[derive(Clone, Copy)]
struct Framed {
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// The hooks and the forwarding of one request, from `requestheaders` on.
async fn lifecycle(
    shared: &Shared,
    conn: &mut Conn<Io>,
    ctx: &mut ClientCtx,
    flow: &mut Flow,
    framed: Framed,
) -> Next {
    let Framed {
        framing,
        keep_alive,
        expect_continue,
    } = framed;
    if shared.too_large(framing) {
        request_mut(flow).stream = StreamMode::Pass.into();
    }
    if shared.hook(Hook::Requestheaders, flow).await == Verdict::Kill || is_killed(flow) {
        return killed(shared, flow, true).await;
    }
    if expect_continue {
        request_mut(flow)
            .headers
            .retain(|h| !h.name.eq_ignore_ascii_case(b"expect"));
        if conn
            .io
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
        {
            return Next::Close;
        }
    }

    let buffer = shared.buffer_request(flow) && stream::request_mode(flow) == StreamMode::Buffer;
    let mut body = BodyReader::new(framing);
    let request_body = if buffer || framing == Framing::Empty {
        match read_whole(conn, &mut body).await {
            Ok((content, trailers)) => {
                let request = request_mut(flow);
                request.content = Some(content);
                request.trailers = trailers.map(|fields| Headers { fields });
                request.timestamp_end = Some(flow::now());
            }
            Err(_) => return Next::Close,
        }
        Body::Buffered
    } else {
        Body::Streaming(body, ChunkFilter::request(&shared.hooks, flow))
    };

    let mut verdict = Verdict::Continue;
    if matches!(request_body, Body::Buffered) {
        verdict = shared.hook(Hook::Request, flow).await;
        if verdict == Verdict::Kill || is_killed(flow) {
            return killed(shared, flow, true).await;
        }
    }
    if verdict == Verdict::Respond || flow.response.is_some() {
        return respond_from_script(shared, conn, flow, keep_alive).await;
    }
    forward(shared, conn, ctx, flow, request_body, keep_alive).await
}

/// Where a request goes: its absolute-form target, or inside a tunnel the tunnel's server.
fn request_target(head: &RequestHead, tunnel: Option<&Target>) -> Option<Target> {
    match tunnel {
        None => flow::parse_absolute(&head.target),
        Some(t) if head.target.starts_with(b"/") || &head.target[..] == b"*" => Some(Target {
            path: head.target.clone(),
            ..t.clone()
        }),
        Some(_) => flow::parse_absolute(&head.target),
    }
}

fn client_keep_alive(head: &RequestHead) -> bool {
    if header_has_token(&head.headers, "connection", "close") {
        return false;
    }
    &head.version[..] != b"HTTP/1.0" || header_has_token(&head.headers, "connection", "keep-alive")
}

fn request_mut(flow: &mut Flow) -> &mut flowtap_proto::v1::Request {
    flow.request.get_or_insert_with(Default::default)
}

/// Reads a whole body into memory.
async fn read_whole(
    conn: &mut Conn<Io>,
    body: &mut BodyReader,
) -> Result<(Bytes, Option<Vec<Header>>), Http1Error> {
    let mut content = BytesMut::new();
    while let Some(piece) = body.next(conn).await? {
        if content.is_empty() {
            content = BytesMut::from(piece);
        } else {
            content.extend_from_slice(&piece);
        }
    }
    Ok((content.freeze(), body.take_trailers()))
}

/// The flow was killed by a script: record it, fire `error` (unless the response hook killed
/// it), hand it to the sinks and close the client connection.
async fn killed(shared: &Shared, flow: &mut Flow, fire_error: bool) -> Next {
    shared.live.finish(&flow.id);
    flow::set_error(flow, flow::KILLED_MESSAGE);
    flow.live = false;
    if fire_error {
        shared.hook(Hook::Error, flow).await;
    }
    shared.sink.flow_finished(flow);
    Next::Close
}

/// A script answered the request: the response hooks still run, no server is contacted.
async fn respond_from_script(
    shared: &Shared,
    conn: &mut Conn<Io>,
    flow: &mut Flow,
    keep_alive: bool,
) -> Next {
    if shared.hook(Hook::Responseheaders, flow).await == Verdict::Kill || is_killed(flow) {
        return killed(shared, flow, true).await;
    }
    if shared.hook(Hook::Response, flow).await == Verdict::Kill || is_killed(flow) {
        return killed(shared, flow, false).await;
    }
    finish_to_client(shared, conn, flow, keep_alive).await
}

/// Writes the flow's (buffered) response to the client and completes the flow.
async fn finish_to_client(
    shared: &Shared,
    conn: &mut Conn<Io>,
    flow: &mut Flow,
    keep_alive: bool,
) -> Next {
    let method = flow
        .request
        .as_ref()
        .map(|r| r.method.clone())
        .unwrap_or_default();
    shared.live.finish(&flow.id);
    let response = flow.response.clone().unwrap_or_default();
    let result = write_full_response(conn, &response, &method, !keep_alive).await;
    flow.live = false;
    shared.sink.flow_finished(flow);
    if result.is_ok() && keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// Sends the request to its server and the server's response back to the client.
async fn forward(
    shared: &Shared,
    conn: &mut Conn<Io>,
    ctx: &mut ClientCtx,
    flow: &mut Flow,
    mut request_body: Body,
    keep_alive: bool,
) -> Next {
    if websocket::is_upgrade_request(&request_mut(flow).headers) && websocket::parses_frames(shared)
    {
        websocket::strip_deflate_offer(&mut request_mut(flow).headers);
    }
    let (key, sni) = {
        let request = flow.request.as_ref().expect("an HTTP flow has a request");
        let key = PoolKey {
            tls: &request.scheme[..] == b"https",
            host: request.host.clone(),
            port: u16::try_from(request.port).unwrap_or(80),
        };
        (key, request.host.clone())
    };
    let mut reused = true;
    let mut attempt = 0;
    let (up, response_head) = loop {
        attempt += 1;
        let mut up = match take_owned(ctx, &key).or_else(|| shared.pool.take(&key)) {
            Some(up) => up,
            None => {
                reused = false;
                match shared.connect_server(&ctx.client, flow, &key, &sni).await {
                    Ok(up) => up,
                    Err(e) => return upstream_failed(shared, conn, flow, &e, 502).await,
                }
            }
        };
        flow.server_conn = Some(up.info.clone());
        match send_request(&mut up, conn, flow, &mut request_body).await {
            Ok(head) => break (up, head),
            // A reused connection the server had closed: try once more on a new one, if the
            // request is still whole in memory.
            Err(UpstreamError::Http(Http1Error::ClosedBeforeResponse | Http1Error::Io(_)))
                if reused && attempt == 1 && matches!(request_body, Body::Buffered) =>
            {
                continue;
            }
            Err(e) => return upstream_failed(shared, conn, flow, &e, 502).await,
        }
    };
    if let Body::Streaming(..) = request_body {
        request_mut(flow).timestamp_end = Some(flow::now());
        // A streamed request fires `request` once the body has gone through.
        if shared.hook(Hook::Request, flow).await == Verdict::Kill || is_killed(flow) {
            return killed(shared, flow, true).await;
        }
    }
    if response_head.status == 101 {
        return upgrade(shared, conn, ctx, up, flow, response_head).await;
    }
    receive_response(shared, conn, ctx, up, flow, response_head, keep_alive).await
}

fn take_owned(ctx: &mut ClientCtx, key: &PoolKey) -> Option<Upstream> {
    let index = ctx.owned.iter().position(|u| &u.key == key && !u.h2)?;
    Some(ctx.owned.swap_remove(index))
}

/// Writes the request to the server and reads the response head (skipping interim responses).
async fn send_request(
    up: &mut Upstream,
    client: &mut Conn<Io>,
    flow: &Flow,
    body: &mut Body,
) -> Result<http1::ResponseHead, UpstreamError> {
    let request = flow.request.as_ref().expect("an HTTP flow has a request");
    let framing = match body {
        Body::Buffered => buffered_framing(&request.headers, request.content.as_deref(), true),
        // A callable may change the length.
        Body::Streaming(_, Some(_)) => Framing::Chunked,
        Body::Streaming(reader, None) => streaming_framing(reader),
    };
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(&request.method);
    head.push(b' ');
    head.extend_from_slice(&request.path);
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if header(&request.headers, "host").is_none() {
        push_header(&mut head, b"Host", host_header(request).as_bytes());
    }
    let upgrade = header(&request.headers, "upgrade").is_some();
    write_end_to_end(&mut head, &request.headers, upgrade, framing);
    head.extend_from_slice(b"\r\n");
    let io = &mut up.conn.io;
    match body {
        Body::Buffered => {
            let content = request.content.as_deref().unwrap_or_default();
            if framing == Framing::Chunked || content.len() > 16 * 1024 {
                io.write_all(&head).await.map_err(Http1Error::Io)?;
                write_body_piece(io, framing, content)
                    .await
                    .map_err(Http1Error::Io)?;
            } else {
                head.extend_from_slice(content);
                io.write_all(&head).await.map_err(Http1Error::Io)?;
            }
            let trailers = request.trailers.as_ref().map(|t| t.fields.as_slice());
            write_body_end(io, framing, trailers)
                .await
                .map_err(Http1Error::Io)?;
        }
        Body::Streaming(reader, filter) => {
            io.write_all(&head).await.map_err(Http1Error::Io)?;
            while let Some(mut piece) = reader.next(client).await? {
                if let Some(filter) = filter {
                    piece = filter.apply(piece).await?;
                }
                write_body_piece(io, framing, &piece)
                    .await
                    .map_err(Http1Error::Io)?;
            }
            if let Some(filter) = filter {
                let tail = filter.apply(Bytes::new()).await?;
                write_body_piece(io, framing, &tail)
                    .await
                    .map_err(Http1Error::Io)?;
            }
            let trailers = reader.take_trailers();
            write_body_end(io, framing, trailers.as_deref())
                .await
                .map_err(Http1Error::Io)?;
        }
    }
    io.flush().await.map_err(Http1Error::Io)?;
    loop {
        let head = up.conn.read_response_head().await?;
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        return Ok(head);
    }
}

fn host_header(request: &flowtap_proto::v1::Request) -> String {
    let default = if &request.scheme[..] == b"https" {
        443
    } else {
        80
    };
    let host = if request.host.contains(':') {
        format!("[{}]", request.host)
    } else {
        request.host.clone()
    };
    if request.port == default {
        host
    } else {
        format!("{host}:{}", request.port)
    }
}

/// The framing for a body held in memory: chunked if the message says so, else a length.
fn buffered_framing(headers: &[Header], content: Option<&[u8]>, is_request: bool) -> Framing {
    let len = content.map_or(0, <[u8]>::len) as u64;
    if header_has_token(headers, "transfer-encoding", "chunked") {
        Framing::Chunked
    } else if len > 0 || header(headers, "content-length").is_some() || !is_request {
        Framing::Length(len)
    } else {
        Framing::Empty
    }
}

fn streaming_framing(reader: &BodyReader) -> Framing {
    match reader.framing() {
        Framing::Close => Framing::Chunked,
        other => other,
    }
}

/// The server could not be reached or answered badly: record the error, fire the hooks,
/// answer the client with an error page naming the cause.
async fn upstream_failed(
    shared: &Shared,
    conn: &mut Conn<Io>,
    flow: &mut Flow,
    error: &UpstreamError,
    status: u16,
) -> Next {
    shared.live.finish(&flow.id);
    let message = error.to_string();
    tracing::info!(flow = %flow.id, "{message}");
    flow::set_error(flow, message.clone());
    // mitmproxy's `error` hook still sees a live flow here (only a kill ends it before).
    shared.hook(Hook::Error, flow).await;
    flow.live = false;
    shared.sink.flow_finished(flow);
    let _ = write_error(conn, status, &message).await;
    Next::Close
}

/// Reads the response, runs its hooks and relays it to the client.
async fn receive_response(
    shared: &Shared,
    conn: &mut Conn<Io>,
    ctx: &mut ClientCtx,
    mut up: Upstream,
    flow: &mut Flow,
    head: http1::ResponseHead,
    keep_alive: bool,
) -> Next {
    let method = flow
        .request
        .as_ref()
        .map(|r| r.method.clone())
        .unwrap_or_default();
    let server_keep_alive =
        !header_has_token(&head.headers, "connection", "close") && &head.version[..] == b"HTTP/1.1";
    let framing = match http1::response_framing(&method, head.status, &head.headers) {
        Ok(f) => f,
        Err(e) => {
            return upstream_failed(shared, conn, flow, &UpstreamError::Http(e), 502).await;
        }
    };
    flow.response = Some(response_from_head(head));
    if shared.too_large(framing) {
        flow.response.as_mut().expect("set above").stream = StreamMode::Pass.into();
    }
    if shared.hook(Hook::Responseheaders, flow).await == Verdict::Kill || is_killed(flow) {
        return killed(shared, flow, true).await;
    }
    let mut body = BodyReader::new(framing);
    let buffer = shared.buffer_response(flow) && stream::response_mode(flow) == StreamMode::Buffer;
    if buffer || framing == Framing::Empty {
        match read_whole(&mut up.conn, &mut body).await {
            Ok((content, trailers)) => {
                let response = flow.response.as_mut().expect("set above");
                response.content = Some(content);
                response.trailers = trailers.map(|fields| Headers { fields });
                response.timestamp_end = Some(flow::now());
            }
            Err(e) => {
                return upstream_failed(shared, conn, flow, &UpstreamError::Http(e), 502).await;
            }
        }
        if shared.hook(Hook::Response, flow).await == Verdict::Kill || is_killed(flow) {
            return killed(shared, flow, false).await;
        }
        release_server(
            shared,
            ctx,
            up,
            server_keep_alive && framing != Framing::Close,
        )
        .await;
        return finish_to_client(shared, conn, flow, keep_alive).await;
    }
    // Streamed: the head goes out now, the body piece by piece, `response` fires at the end.
    let filter = ChunkFilter::response(&shared.hooks, flow);
    let response = flow.response.as_ref().expect("set above");
    let out = match (keep_alive, &filter) {
        (true, Some(_)) if framing != Framing::Empty => Framing::Chunked,
        (false, Some(_)) if framing != Framing::Empty => Framing::Close,
        (true, _) => streaming_framing(&body),
        (false, _) => framing,
    };
    let close = !keep_alive || out == Framing::Close;
    let mut head_bytes = response_head_bytes(response, out, close);
    // A small body already read with the head leaves in the same write: one segment, and
    // one wake-up for the client instead of two.
    let whole_body_buffered = filter.is_none()
        && matches!(out, Framing::Length(n) if out == framing && up.conn.buf.len() as u64 >= n);
    if let (true, Framing::Length(n)) = (whole_body_buffered, out) {
        head_bytes.extend_from_slice(&up.conn.buf.split_to(n as usize));
    }
    if let Err(e) = conn.io.write_all(&head_bytes).await {
        tracing::debug!("client went away: {e}");
        return Next::Close;
    }
    let result = if whole_body_buffered {
        Ok(())
    } else {
        relay_body(&mut up.conn, &mut body, conn, out, filter.as_ref()).await
    };
    let response = flow.response.as_mut().expect("set above");
    response.timestamp_end = Some(flow::now());
    response.trailers = body.take_trailers().map(|fields| Headers { fields });
    if let Err(e) = result {
        return upstream_failed(shared, conn, flow, &e, 502).await;
    }
    if shared.hook(Hook::Response, flow).await == Verdict::Kill || is_killed(flow) {
        return killed(shared, flow, false).await;
    }
    shared.live.finish(&flow.id);
    release_server(
        shared,
        ctx,
        up,
        server_keep_alive && framing != Framing::Close,
    )
    .await;
    flow.live = false;
    shared.sink.flow_finished(flow);
    if close { Next::Close } else { Next::KeepAlive }
}

/// Copies a body from one connection to another, re-framing as `out`, through the script's
/// callable when there is a filter.
async fn relay_body(
    from: &mut Conn<Io>,
    body: &mut BodyReader,
    to: &mut Conn<Io>,
    out: Framing,
    filter: Option<&ChunkFilter>,
) -> Result<(), UpstreamError> {
    let write = |e| UpstreamError::Http(Http1Error::Io(e));
    while let Some(mut piece) = body.next(from).await? {
        if let Some(filter) = filter {
            piece = filter.apply(piece).await?;
        }
        write_body_piece(&mut to.io, out, &piece)
            .await
            .map_err(write)?;
    }
    if let Some(filter) = filter {
        let tail = filter.apply(Bytes::new()).await?;
        write_body_piece(&mut to.io, out, &tail)
            .await
            .map_err(write)?;
    }
    write_body_end(&mut to.io, out, body.trailers_ref())
        .await
        .map_err(write)?;
    to.io.flush().await.map_err(write)?;
    Ok(())
}

/// Keeps a server connection for this client's next request, or closes it.
async fn release_server(shared: &Shared, ctx: &mut ClientCtx, up: Upstream, reusable: bool) {
    if reusable {
        ctx.owned.push(up);
    } else {
        shared.server_closed(&ctx.client, up).await;
    }
}

/// Serialises a response head for the client.
fn response_head_bytes(response: &Response, framing: Framing, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let status = u16::try_from(response.status_code).unwrap_or(500);
    flowtap_telemetry::proxy::response(status);
    out.extend_from_slice(format!("HTTP/1.1 {status} ").as_bytes());
    out.extend_from_slice(&response.reason);
    out.extend_from_slice(b"\r\n");
    // HEAD, 204 and 304 keep the length the server announced.
    write_end_to_end(&mut out, &response.headers, status == 101, framing);
    if close {
        push_header(&mut out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes a response held in memory.
async fn write_full_response(
    conn: &mut Conn<Io>,
    response: &Response,
    method: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let status = u16::try_from(response.status_code).unwrap_or(500);
    let no_body = method.eq_ignore_ascii_case(b"HEAD")
        || (100..200).contains(&status)
        || matches!(status, 204 | 304);
    let framing = if no_body {
        Framing::Empty
    } else {
        buffered_framing(&response.headers, response.content.as_deref(), false)
    };
    let mut out = response_head_bytes(response, framing, close);
    let content = response.content.as_deref().unwrap_or_default();
    if framing == Framing::Chunked {
        conn.io.write_all(&out).await?;
        write_body_piece(&mut conn.io, framing, content).await?;
        let trailers = response.trailers.as_ref().map(|t| t.fields.as_slice());
        write_body_end(&mut conn.io, framing, trailers).await?;
    } else if !no_body {
        out.extend_from_slice(content);
        conn.io.write_all(&out).await?;
    } else {
        conn.io.write_all(&out).await?;
    }
    conn.io.flush().await
}

/// A 101 response: the connection switches protocols. A WebSocket becomes the WebSocket part
/// of this flow (`flow.websocket` is set before `response`); anything else is relayed as bytes.
async fn upgrade(
    shared: &Shared,
    conn: &mut Conn<Io>,
    ctx: &mut ClientCtx,
    mut up: Upstream,
    flow: &mut Flow,
    head: http1::ResponseHead,
) -> Next {
    let mut response = response_from_head(head);
    response.content = Some(Bytes::new());
    response.timestamp_end = Some(flow::now());
    let is_websocket = websocket::is_websocket_response(shared, &response.headers);
    flow.response = Some(response);
    if shared.hook(Hook::Responseheaders, flow).await == Verdict::Kill || is_killed(flow) {
        return killed(shared, flow, true).await;
    }
    if is_websocket {
        flow.websocket = Some(Default::default());
    }
    if shared.hook(Hook::Response, flow).await == Verdict::Kill || is_killed(flow) {
        return killed(shared, flow, false).await;
    }
    let response = flow.response.as_ref().expect("set above");
    let head = response_head_bytes(response, Framing::Empty, false);
    if conn.io.write_all(&head).await.is_err() {
        return Next::Close;
    }
    if flow.websocket.is_some() {
        websocket::relay(shared, conn, &mut up.conn, flow).await;
    } else {
        shared.live.finish(&flow.id);
        relay_upgraded(conn, &mut up.conn).await;
        flow.live = false;
        shared.sink.flow_finished(flow);
    }
    shared.server_closed(&ctx.client, up).await;
    Next::Upgraded
}

/// Relays an upgraded connection that is not a WebSocket flow as bytes.
async fn relay_upgraded(client: &mut Conn<Io>, server: &mut Conn<Io>) {
    // Bytes already read past the heads belong to the other side.
    let pending = server.buf.split();
    if client.io.write_all(&pending).await.is_err() {
        return;
    }
    let pending = client.buf.split();
    if server.io.write_all(&pending).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client.io, &mut server.io).await;
}
