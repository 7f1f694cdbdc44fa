//! HTTP/1 on one client connection: read a request, drive its flow through `lifecycle`, forward
//! it, answer the client; then the next request on the same connection. CONNECT requests are
//! handed back to the caller (the client task), which opens the tunnel.

use bytes::Bytes;
use flowtap_flow::spill;
use flowtap_proto::v1::{Connection, Flow, Header, Headers, StreamMode};
use tokio::io::AsyncWriteExt;

use crate::context::{ClientCtx, Shared};
use crate::error::{Http1Error, UpstreamError};
use crate::flow::{self, Target, new_http_flow, request_from_head, response_from_head};
use crate::http1::{
    self, BodyReader, Conn, Framing, RequestHead, buffered_framing, header, header_has_token,
    push_header, response_head_bytes, write_body_end, write_body_piece, write_end_to_end,
    write_full_response,
};
use crate::lifecycle::{self, Step};
use crate::limits::{Activity, idle_bounded};
use crate::respond::{self, Refusal};
use crate::stream::{self, ChunkFilter};
use crate::upstream::{Io, PoolKey, Upstream};
use crate::websocket;

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
            head = next_head(shared, conn) => head,
            _ = shutdown.wait_for(|stop| *stop), if conn.buf.is_empty() => return Next::Close,
        };
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return Next::Close,
            Err(refusal) => {
                respond::send_h1(conn, &ctx.client, &refusal).await;
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

/// Waits for the next request head: the connection's idle deadline applies until its first
/// byte, then the whole head must arrive within `request_head_timeout`. `Ok(None)`: the client
/// closed or stayed idle past its deadline, or the connection broke; nothing is answered.
async fn next_head(shared: &Shared, conn: &mut Conn<Io>) -> Result<Option<RequestHead>, Refusal> {
    if conn.buf.is_empty() {
        match conn.fill().await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    tracing::debug!("closing an idle client connection");
                }
                return Ok(None);
            }
        }
    }
    match tokio::time::timeout(shared.config.request_head_timeout, conn.read_request_head()).await {
        Err(_) => Err(Refusal::HeadTimeout),
        Ok(Ok(head)) => Ok(head),
        Ok(Err(Http1Error::Io(e))) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err(Refusal::HeadTimeout)
        }
        Ok(Err(Http1Error::Io(_) | Http1Error::Truncated)) => Ok(None),
        Ok(Err(e)) => Err(Refusal::client(&e)),
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
    let _closed = crate::context::ClientClosed {
        hooks: std::sync::Arc::clone(&shared.hooks),
        client_id: client.id.clone(),
    };
    // As in mitmproxy, the replay goes the way its flow's listener went (upstream mode's next
    // proxy); a mode that no longer parses replays as regular.
    let mode = crate::mode::ModeSpec::parse(&client.proxy_mode)
        .unwrap_or_else(|_| crate::mode::ModeSpec::regular());
    let mut ctx = ClientCtx {
        client,
        mode: std::sync::Arc::new(mode),
        owned: Vec::new(),
        tunnel: None,
        activity: crate::limits::Activity::new(),
    };
    let step = match lifecycle::requestheaders(shared, &mut flow).await {
        Step::Go => lifecycle::request(shared, &mut flow).await,
        other => other,
    };
    match step {
        Step::Go => {
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
        other => {
            end(shared, &mut conn, &ctx.client, &mut flow, other, false).await;
        }
    }
    let owned = std::mem::take(&mut ctx.owned);
    for up in owned {
        shared.server_closed(&ctx.client, up).await;
    }
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
    let framed = match check_request(&head, ctx.tunnel.as_ref()) {
        Ok(framed) => framed,
        Err(refusal) => {
            respond::send_h1(conn, &ctx.client, &refusal).await;
            return Next::Close;
        }
    };
    let mut flow = new_http_flow(&ctx.client, request_from_head(head, &framed.target));
    if ctx.tunnel.is_none() || (ctx.is_reverse() && !shared.config.keep_host_header) {
        align_host_header(request_mut(&mut flow));
    }
    let Some(live) = shared.live.register(&flow.id) else {
        return http_flow(shared, conn, ctx, &mut flow, framed).await;
    };
    // A script may kill the flow from outside its hooks (a stored flow, another flow's hook,
    // a task): the exchange stops where it is and the client connection is closed.
    tokio::select! {
        next = http_flow(shared, conn, ctx, &mut flow, framed) => next,
        () = live.killed() => {
            let error_hook = !lifecycle::responded(&flow);
            lifecycle::killed(shared, &mut flow, error_hook).await;
            Next::Close
        }
    }
}

/// What the request head says about its target, its body and the connection.
struct Framed {
    target: Target,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// Checks a request head before anything of it goes anywhere: a target the proxy can serve,
/// unambiguous framing, a `Host` header that agrees with an absolute-form target.
fn check_request(head: &RequestHead, tunnel: Option<&Target>) -> Result<Framed, Refusal> {
    let Some(target) = request_target(head, tunnel) else {
        let form = String::from_utf8_lossy(&head.target).into_owned();
        return Err(Refusal::BadRequest(format!(
            "invalid request target {form:?} (expected absolute form)"
        )));
    };
    let hosts = head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"host"))
        .count();
    if hosts > 1 {
        return Err(Refusal::BadRequest("more than one Host header".into()));
    }
    let framing =
        http1::request_framing(&head.version, &head.headers).map_err(|e| Refusal::client(&e))?;
    Ok(Framed {
        target,
        framing,
        keep_alive: client_keep_alive(head),
        expect_continue: header_has_token(&head.headers, "expect", "100-continue"),
    })
}

/// The flow's hooks and its forwarding, from `requestheaders` on.
async fn http_flow(
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
        ..
    } = framed;
    if shared.too_large(framing) {
        request_mut(flow).stream = StreamMode::Pass.into();
    }
    let step = lifecycle::requestheaders(shared, flow).await;
    if !matches!(step, Step::Go) {
        return end(shared, conn, &ctx.client, flow, step, keep_alive).await;
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
    if !buffer && framing != Framing::Empty {
        let body = Body::Streaming(body, ChunkFilter::request(&shared.hooks, flow));
        return forward(shared, conn, ctx, flow, body, keep_alive).await;
    }
    match read_whole(shared, conn, &mut body, shared.config.body_size_limit).await {
        Ok((content, trailers)) => {
            let request = request_mut(flow);
            request.content = Some(content);
            request.trailers = trailers.map(|fields| Headers { fields });
            request.timestamp_end = Some(flow::now());
        }
        Err(BodyError::Refused(refusal)) => {
            lifecycle::failed(shared, flow, &refusal).await;
            respond::send_h1(conn, &ctx.client, &refusal).await;
            return Next::Close;
        }
        Err(BodyError::Read(Http1Error::Io(_) | Http1Error::Truncated)) => {
            // The client left mid-body: nothing to answer.
            lifecycle::failed(
                shared,
                flow,
                &Refusal::BadRequest("client disconnected".into()),
            )
            .await;
            return Next::Close;
        }
        Err(BodyError::Read(e)) => {
            let refusal = Refusal::client(&e);
            lifecycle::failed(shared, flow, &refusal).await;
            respond::send_h1(conn, &ctx.client, &refusal).await;
            return Next::Close;
        }
    }
    match lifecycle::request(shared, flow).await {
        Step::Go => forward(shared, conn, ctx, flow, Body::Buffered, keep_alive).await,
        other => end(shared, conn, &ctx.client, flow, other, keep_alive).await,
    }
}

/// Ends a flow whose lifecycle step is not `Go`: a kill closes the connection, a script's
/// response is answered after its response hooks, a failure is answered with its page.
async fn end(
    shared: &Shared,
    conn: &mut Conn<Io>,
    client: &Connection,
    flow: &mut Flow,
    step: Step,
    keep_alive: bool,
) -> Next {
    let step = match step {
        Step::Respond => lifecycle::answered_by_script(shared, flow).await,
        other => other,
    };
    match step {
        Step::Go | Step::Respond => finish_to_client(shared, conn, flow, keep_alive).await,
        Step::Kill { error_hook } => {
            lifecycle::killed(shared, flow, error_hook).await;
            Next::Close
        }
        Step::Fail(refusal) => {
            lifecycle::failed(shared, flow, &refusal).await;
            respond::send_h1(conn, client, &refusal).await;
            Next::Close
        }
    }
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

/// Why a body could not be read whole.
enum BodyError {
    /// The framing broke or the connection did.
    Read(Http1Error),
    /// The body is larger than `body_size_limit`, or could not be held (disk full).
    Refused(Refusal),
}

/// Reads a whole body (into memory, or into a spill file once it is large), refusing one larger
/// than `limit`.
async fn read_whole(
    shared: &Shared,
    conn: &mut Conn<Io>,
    body: &mut BodyReader,
    limit: Option<u64>,
) -> Result<(Bytes, Option<Vec<Header>>), BodyError> {
    let announced = match body.framing() {
        Framing::Length(n) => n,
        _ => 0,
    };
    if let Some(limit) = limit.filter(|l| announced > *l) {
        return Err(BodyError::Refused(Refusal::over_body_size_limit(limit)));
    }
    let mut content = spill::Collector::new(shared.config.spill_dir.as_deref(), announced);
    while let Some(piece) = body.next(conn).await.map_err(BodyError::Read)? {
        if let Some(limit) = limit.filter(|l| (content.len() + piece.len()) as u64 > *l) {
            return Err(BodyError::Refused(Refusal::over_body_size_limit(limit)));
        }
        content
            .push_owned(piece)
            .map_err(|e| BodyError::Refused(Refusal::unheld(&e)))?;
    }
    let content = content
        .finish()
        .map_err(|e| BodyError::Refused(Refusal::unheld(&e)))?;
    Ok((content, body.take_trailers()))
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
    let result = match &flow.response {
        Some(response) => write_full_response(&mut conn.io, response, &method, !keep_alive).await,
        None => Ok(()),
    };
    lifecycle::finished(shared, flow);
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
    // A next proxy the `request` hook chose for this flow (`flow.server_conn.via`).
    let via = shared.connector.via_for(
        flow.server_conn.as_ref().and_then(|s| s.via.as_ref()),
        ctx.own_via().as_ref(),
    );
    let via = match via {
        Ok(via) => via,
        Err(e) => return upstream_failed(shared, conn, &ctx.client, flow, &e).await,
    };
    let (key, sni) = {
        let request = request_mut(flow);
        let key = PoolKey {
            tls: &request.scheme[..] == b"https",
            host: request.host.clone(),
            port: u16::try_from(request.port).unwrap_or(80),
            via,
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
                    Err(e) => return upstream_failed(shared, conn, &ctx.client, flow, &e).await,
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
            Err(e) => return upstream_failed(shared, conn, &ctx.client, flow, &e).await,
        }
    };
    if let Body::Streaming(..) = request_body {
        request_mut(flow).timestamp_end = Some(flow::now());
        // A streamed request fires `request` once the body has gone through.
        let step = lifecycle::request(shared, flow).await;
        if let Step::Kill { .. } = step {
            return end(shared, conn, &ctx.client, flow, step, keep_alive).await;
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
    let Some(request) = flow.request.as_ref() else {
        return Err(UpstreamError::Http(Http1Error::Malformed(
            "a script removed the request".into(),
        )));
    };
    let framing = match body {
        Body::Buffered => buffered_framing(&request.headers, request.content.as_deref(), true),
        // A callable may change the length.
        Body::Streaming(_, Some(_)) => Framing::Chunked,
        Body::Streaming(reader, None) => streaming_framing(reader),
    };
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(&request.method);
    head.push(b' ');
    if up.proxied.is_some() {
        // To the next proxy (upstream mode): the absolute form.
        head.extend_from_slice(&request.scheme);
        head.extend_from_slice(b"://");
        head.extend_from_slice(host_header(request).as_bytes());
    }
    head.extend_from_slice(&request.path);
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if header(&request.headers, "host").is_none() {
        push_header(&mut head, b"Host", host_header(request).as_bytes());
    }
    if let Some(auth) = up.proxied.as_ref().and_then(|p| p.authorization.as_ref()) {
        push_header(&mut head, b"Proxy-Authorization", auth);
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
            while let Some(mut piece) = reader
                .next(client)
                .await
                .map_err(UpstreamError::ClientBody)?
            {
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

/// An absolute-form request's `Host` header is replaced by the target's authority (RFC 9112
/// 3.2.2): the server must not see a different host than the one the request goes to.
fn align_host_header(request: &mut flowtap_proto::v1::Request) {
    let authority = host_header(request);
    if let Some(found) = request
        .headers
        .iter_mut()
        .find(|h| h.name.eq_ignore_ascii_case(b"host"))
        .filter(|h| h.value != authority.as_bytes())
    {
        found.value = Bytes::from(authority);
    }
}

fn host_header(request: &flowtap_proto::v1::Request) -> String {
    let scheme = String::from_utf8_lossy(&request.scheme);
    flow::authority(
        &scheme,
        &request.host,
        u16::try_from(request.port).unwrap_or(0),
    )
}

fn streaming_framing(reader: &BodyReader) -> Framing {
    match reader.framing() {
        Framing::Close => Framing::Chunked,
        other => other,
    }
}

/// The way to the server or back failed: record the error, fire the hooks, answer the client
/// with a page naming the cause (400 when it was the client's streamed body, else 502).
async fn upstream_failed(
    shared: &Shared,
    conn: &mut Conn<Io>,
    client: &Connection,
    flow: &mut Flow,
    error: &UpstreamError,
) -> Next {
    end(
        shared,
        conn,
        client,
        flow,
        Step::Fail(Refusal::server(error)),
        false,
    )
    .await
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
            return upstream_failed(shared, conn, &ctx.client, flow, &UpstreamError::Http(e)).await;
        }
    };
    let mut response = response_from_head(head);
    if shared.too_large(framing) {
        response.stream = StreamMode::Pass.into();
    }
    flow.response = Some(response);
    let step = lifecycle::responseheaders(shared, flow).await;
    if !matches!(step, Step::Go) {
        return end(shared, conn, &ctx.client, flow, step, keep_alive).await;
    }
    let mut body = BodyReader::new(framing);
    let buffer = shared.buffer_response(flow) && stream::response_mode(flow) == StreamMode::Buffer;
    if buffer || framing == Framing::Empty {
        let (content, trailers) = match read_whole(
            shared,
            &mut up.conn,
            &mut body,
            shared.config.body_size_limit,
        )
        .await
        {
            Ok(whole) => whole,
            Err(BodyError::Read(e)) => {
                let error = UpstreamError::Http(e);
                return upstream_failed(shared, conn, &ctx.client, flow, &error).await;
            }
            Err(BodyError::Refused(refusal)) => {
                let refusal = Refusal::Upstream(format!("response: {}", refusal.message()));
                return end(shared, conn, &ctx.client, flow, Step::Fail(refusal), false).await;
            }
        };
        if let Some(response) = flow.response.as_mut() {
            response.content = Some(content);
            response.trailers = trailers.map(|fields| Headers { fields });
            response.timestamp_end = Some(flow::now());
        }
        let step = lifecycle::response(shared, flow).await;
        if !matches!(step, Step::Go) {
            return end(shared, conn, &ctx.client, flow, step, keep_alive).await;
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
    let out = match (keep_alive, &filter) {
        (true, Some(_)) if framing != Framing::Empty => Framing::Chunked,
        (false, Some(_)) if framing != Framing::Empty => Framing::Close,
        (true, _) => streaming_framing(&body),
        (false, _) => framing,
    };
    let close = !keep_alive || out == Framing::Close;
    let Some(response) = flow.response.as_ref() else {
        unreachable!("responseheaders returned Go, so the response is there")
    };
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
    if let Some(response) = flow.response.as_mut() {
        response.timestamp_end = Some(flow::now());
        response.trailers = body.take_trailers().map(|fields| Headers { fields });
    }
    if let Err(e) = result {
        // The head has gone out: the failure is recorded, and the connection closed.
        lifecycle::failed(shared, flow, &Refusal::server(&e)).await;
        Refusal::server(&e).log(&ctx.client);
        return Next::Close;
    }
    let step = lifecycle::response(shared, flow).await;
    if let Step::Kill { error_hook } = step {
        lifecycle::killed(shared, flow, error_hook).await;
        return Next::Close;
    }
    release_server(
        shared,
        ctx,
        up,
        server_keep_alive && framing != Framing::Close,
    )
    .await;
    // The body has gone out already: a script that removed the response changes nothing.
    lifecycle::finished(shared, flow);
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
    let step = lifecycle::responseheaders(shared, flow).await;
    if !matches!(step, Step::Go) {
        return end(shared, conn, &ctx.client, flow, step, false).await;
    }
    if is_websocket {
        flow.websocket = Some(Default::default());
    }
    let step = lifecycle::response(shared, flow).await;
    if !matches!(step, Step::Go) {
        return end(shared, conn, &ctx.client, flow, step, false).await;
    }
    let Some(response) = flow.response.as_ref() else {
        unreachable!("response returned Go, so the response is there")
    };
    let head = response_head_bytes(response, Framing::Empty, false);
    if conn.io.write_all(&head).await.is_err() {
        return Next::Close;
    }
    if flow.websocket.is_some() {
        websocket::relay(shared, &ctx.activity, conn, &mut up.conn, flow).await;
    } else {
        shared.live.finish(&flow.id);
        relay_upgraded(shared, &ctx.activity, conn, &mut up.conn).await;
        lifecycle::finished(shared, flow);
    }
    shared.server_closed(&ctx.client, up).await;
    Next::Upgraded
}

/// Relays bytes both ways between a client and a server (an upgraded connection that is not a
/// WebSocket flow) until either side closes or the client connection idles past
/// `tunnel_idle_timeout`. Bytes already read past the heads go first.
async fn relay_upgraded(
    shared: &Shared,
    activity: &Activity,
    client: &mut Conn<Io>,
    server: &mut Conn<Io>,
) {
    let copied = crate::http1::splice(client, server);
    if idle_bounded(activity, shared.config.tunnel_idle_timeout, copied)
        .await
        .is_none()
    {
        tracing::debug!(
            "closing a relayed connection idle for {:?}",
            shared.config.tunnel_idle_timeout
        );
    }
}
