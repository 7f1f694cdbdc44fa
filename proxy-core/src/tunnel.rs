//! CONNECT: open the tunnel, then look at the client's first bytes. A TLS ClientHello is
//! intercepted (a leaf certificate minted for the host, the server contacted with the same SNI
//! and ALPN), plain HTTP is served as HTTP, anything else is a raw TCP flow (`tcp`), as is
//! everything to `--tcp-hosts`. Ignored hosts are relayed as bytes, with no flow and no hooks.
//!
//! Hook order (spec 1.9): `http_connect`, `server_connect`, `server_connected`, `http_connected`,
//! then the HTTP hooks of the requests inside the tunnel, or the TCP flow's hooks.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use flowtap_proto::v1::{Connection, Request};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::context::{ClientCtx, Shared};
use crate::error::UpstreamError;
use crate::flow::{self, Target, is_killed, new_http_flow};
use crate::hooks::{Hook, Verdict};
use crate::http::{self, Next};
use crate::http1::{Conn, RequestHead};
use crate::limits::{Activity, idle_bounded};
use crate::mode::ReverseTarget;
use crate::respond::{self, Refusal};
use crate::upstream::{Alpn, Io, PoolKey, Upstream, record_tls};

/// Handles a CONNECT request. Returns true when the tunnel carried intercepted TLS.
pub(crate) async fn connect(
    shared: &std::sync::Arc<Shared>,
    mut conn: Conn<Io>,
    ctx: &mut ClientCtx,
    head: RequestHead,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let authority = String::from_utf8_lossy(&head.target).into_owned();
    let Some((host, port)) = flow::parse_authority(&authority, 443) else {
        let refusal = Refusal::BadRequest(format!("invalid CONNECT target {authority:?}"));
        respond::send_h1(&mut conn, &ctx.client, &refusal).await;
        return false;
    };
    let mut flow = new_http_flow(&ctx.client, connect_request(head, &host, port));
    // `proxyauth` comes before the scripts: without credentials the CONNECT gets 407.
    let authenticated = shared.builtins().is_none_or(|b| b.http_connect(&mut flow));
    if shared.hook(Hook::HttpConnect, &mut flow).await == Verdict::Kill || is_killed(&flow) {
        return false;
    }
    if let Some(response) = flow.response.clone() {
        // A script answered the CONNECT; a non-2xx answer refuses the tunnel.
        let refused = !(200..300).contains(&response.status_code);
        let _ = write_response(&mut conn, &response).await;
        if refused {
            return false;
        }
    }
    let request = flow.request.as_ref().expect("a CONNECT flow has a request");
    let (host, port) = (
        request.host.clone(),
        u16::try_from(request.port).unwrap_or(port),
    );
    let mut server = ctx.unconnected_server();
    // A next proxy `http_connect` chose for the tunnel (`flow.server_conn.via`).
    if let Some(via) = flow.server_conn.as_ref().and_then(|s| s.via.clone()) {
        server.via = Some(via);
    }
    // In upstream mode, as in mitmproxy, the next proxy is asked only when the tunnel needs
    // it: after `tls_clienthello` for TLS, at the first request for HTTP.
    let upstream_mode = ctx.own_via().is_some();
    let tcp = if upstream_mode {
        Ok(None)
    } else {
        eager_tcp(shared, &ctx.client, &host, port, &mut server).await
    };
    let tcp = match tcp {
        Ok(tcp) => tcp,
        Err(e) => {
            flow::set_error(&mut flow, e.to_string());
            shared.hook(Hook::HttpConnectError, &mut flow).await;
            let refusal = Refusal::server(&e);
            respond::send_h1(&mut conn, &ctx.client, &refusal).await;
            return false;
        }
    };
    if flow.response.is_none() {
        if conn
            .io
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        flow.response = Some(established());
    }
    if tcp.is_some() {
        flow.server_conn = Some(server.clone());
    }
    shared.hook(Hook::HttpConnected, &mut flow).await;
    let _authenticated = shared
        .proxyauth()
        .filter(|_| authenticated)
        .map(|auth| auth.tunnel(&ctx.client.id, &flow));
    open_tunnel(shared, conn, ctx, host, port, tcp, server, stop).await
}

/// `connection_strategy=lazy`: tunnels connect their server when they must.
/// The tunnel's server connection, made now; none yet under `connection_strategy=lazy` (the
/// first request that needs it makes it).
async fn eager_tcp(
    shared: &Shared,
    client: &Connection,
    host: &str,
    port: u16,
    server: &mut Connection,
) -> Result<Option<Io>, UpstreamError> {
    if lazy(shared) {
        return Ok(None);
    }
    connect_tcp(shared, client, host, port, server)
        .await
        .map(Some)
}

fn lazy(shared: &Shared) -> bool {
    shared.config.connection_strategy == crate::config::ConnectionStrategy::Lazy
}

/// A tunnel to `host:port` is open (CONNECT answered, or a SOCKS5 request granted): relay it
/// untouched (ignored hosts), as raw TCP (`tcp_hosts`), or look at the client's first bytes and
/// intercept TLS, serve HTTP, or make a TCP flow. Returns true when it carried intercepted TLS.
/// Without a server connection yet (`connection_strategy=lazy`), one is made here when the
/// tunnel needs it before its first request (relays and TCP flows).
#[allow(clippy::too_many_arguments)]
async fn open_tunnel(
    shared: &std::sync::Arc<Shared>,
    mut conn: Conn<Io>,
    ctx: &mut ClientCtx,
    host: String,
    port: u16,
    tcp: Option<Io>,
    mut server: Connection,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let client = ctx.client.clone();
    if !shared.hosts.intercept(&host, port) {
        let Some(tcp) = server_tcp(shared, &client, &host, port, tcp, &mut server).await else {
            return false;
        };
        relay(shared, &ctx.activity, &ctx.client, conn, tcp, server).await;
        return false;
    }
    if shared.hosts.is_tcp(&host, port) {
        let Some(tcp) = server_tcp(shared, &client, &host, port, tcp, &mut server).await else {
            return false;
        };
        crate::tcp::serve(shared, &ctx.client, &ctx.activity, conn, tcp, server).await;
        return false;
    }
    // Peek: what does the client speak inside the tunnel? (Server-first protocols are raw
    // TCP: the wait for the client's first bytes is bounded by the tunnel's idle deadline.)
    conn.idle = Some(shared.config.tunnel_idle_timeout);
    while conn.buf.is_empty() {
        match conn.fill().await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    conn.idle = Some(shared.config.client_idle_timeout);
    let target = Target {
        scheme: "http",
        host: host.clone(),
        port,
        path: Bytes::from_static(b"/"),
    };
    if conn.buf[0] == 0x16 {
        // The name the client asks for may be ignored where the CONNECT target was not: then
        // the tunnel is relayed untouched, the server's own certificate in place.
        let Some(sni) = client_hello_in_time(shared, &mut conn, &ctx.client).await else {
            return false;
        };
        if let Some(sni) = sni
            && !shared.hosts.intercept(&sni, port)
        {
            tracing::debug!(sni = %sni, "not intercepting: the server name is ignored");
            let Some(tcp) = server_tcp(shared, &client, &host, port, tcp, &mut server).await else {
                return false;
            };
            relay(shared, &ctx.activity, &ctx.client, conn, tcp, server).await;
            return false;
        }
        let target = Target {
            scheme: "https",
            ..target
        };
        intercept_tls(shared, conn, ctx, tcp, server, target, stop).await
    } else if looks_like_http(&conn.buf) {
        if let Some(tcp) = tcp {
            let key = PoolKey {
                tls: false,
                host,
                port,
                via: shared
                    .connector
                    .via_for(server.via.as_ref(), None)
                    .ok()
                    .flatten(),
            };
            ctx.owned.push(Upstream::direct(tcp, server, key));
        }
        // Without a server connection yet, the first request makes one.
        ctx.tunnel = Some(target);
        let _ = http::serve(shared, &mut conn, ctx, stop).await;
        false
    } else {
        let Some(tcp) = server_tcp(shared, &client, &host, port, tcp, &mut server).await else {
            return false;
        };
        crate::tcp::serve(shared, &ctx.client, &ctx.activity, conn, tcp, server).await;
        false
    }
}

/// The tunnel's server connection: the one made when the tunnel opened, or (lazily) one made
/// now, with its hooks. None, logged, when the server cannot be reached.
async fn server_tcp(
    shared: &Shared,
    client: &Connection,
    host: &str,
    port: u16,
    tcp: Option<Io>,
    server: &mut Connection,
) -> Option<Io> {
    if tcp.is_some() {
        return tcp;
    }
    match connect_tcp(shared, client, host, port, server).await {
        Ok(tcp) => Some(tcp),
        Err(e) => {
            Refusal::server(&e).log(client);
            None
        }
    }
}

/// A connection to a SOCKS5 listener (RFC 1928; RFC 1929 when `proxyauth` is set): the
/// greeting, the CONNECT request (IPv4, IPv6 or a host name), the server connected with its
/// hooks, then the tunnel as after an HTTP CONNECT. Other commands (BIND, UDP ASSOCIATE) are
/// refused with "command not supported". Returns true when the tunnel carried intercepted TLS.
pub(crate) async fn socks5(
    shared: &std::sync::Arc<Shared>,
    mut conn: Conn<Io>,
    ctx: &mut ClientCtx,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    // Each read waits at most the idle deadline; the handshake as a whole gets what a request
    // head gets, so a client that sends it a byte at a time does not hold the connection.
    let handshake = tokio::time::timeout(
        shared.config.request_head_timeout,
        socks5_handshake(shared, &mut conn, &ctx.client),
    );
    let Ok(Some((host, port))) = handshake.await else {
        return false;
    };
    let mut server = ctx.unconnected_server();
    let tcp = match eager_tcp(shared, &ctx.client, &host, port, &mut server).await {
        Ok(tcp) => tcp,
        Err(e) => {
            Refusal::server(&e).log(&ctx.client);
            // 0x05: connection refused.
            let _ = conn.io.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
            return false;
        }
    };
    if conn
        .io
        .write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
        .is_err()
    {
        return false;
    }
    open_tunnel(shared, conn, ctx, host, port, tcp, server, stop).await
}

/// A connection redirected to a transparent listener: the server it was going to (`original`)
/// connected with its hooks, then the tunnel as after an HTTP CONNECT to it. Returns true when
/// the tunnel carried intercepted TLS.
pub(crate) async fn transparent(
    shared: &std::sync::Arc<Shared>,
    conn: Conn<Io>,
    ctx: &mut ClientCtx,
    original: std::net::SocketAddr,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let (host, port) = (original.ip().to_string(), original.port());
    let mut server = ctx.unconnected_server();
    let tcp = match eager_tcp(shared, &ctx.client, &host, port, &mut server).await {
        Ok(tcp) => tcp,
        Err(e) => {
            Refusal::server(&e).log(&ctx.client);
            return false;
        }
    };
    open_tunnel(shared, conn, ctx, host, port, tcp, server, stop).await
}

/// The SOCKS5 greeting, authentication and request; the target asked for, or None when the
/// client was refused (told so when the protocol has a way to say it) or went away.
async fn socks5_handshake(
    shared: &Shared,
    conn: &mut Conn<Io>,
    client: &Connection,
) -> Option<(String, u16)> {
    let refuse = |why: &str| {
        Refusal::BadRequest(format!("SOCKS5: {why}")).log(client);
        None
    };
    let greeting = take(conn, 2).await?;
    if greeting[0] != 5 {
        return refuse("not a SOCKS5 greeting");
    }
    let methods = take(conn, usize::from(greeting[1])).await?;
    let credentials = shared.proxyauth().map(|auth| auth.validator());
    let method = match credentials {
        Some(_) if methods.contains(&2) => 2,
        None if methods.contains(&0) => 0,
        _ => 0xff,
    };
    conn.io.write_all(&[5, method]).await.ok()?;
    if method == 0xff {
        return refuse("no acceptable authentication method (proxyauth needs username/password)");
    }
    if let Some(validator) = credentials {
        let version = take(conn, 2).await?;
        let user = take(conn, usize::from(version[1])).await?;
        let len = take(conn, 1).await?;
        let password = take(conn, usize::from(len[0])).await?;
        let checked = version[0] == 1 && validator.check(&user, &password);
        let good = shared.socks5_auth(client, &user, &password, checked).await;
        conn.io.write_all(&[1, u8::from(!good)]).await.ok()?;
        if !good {
            return refuse("wrong username or password");
        }
    }
    let request = take(conn, 4).await?;
    if request[0] != 5 {
        return refuse("not a SOCKS5 request");
    }
    if request[1] != 1 {
        // 0x07: command not supported.
        let _ = conn.io.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return refuse("only CONNECT is supported");
    }
    let host = match request[3] {
        1 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&take(conn, 4).await?[..]).ok()?)
            .to_string(),
        4 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&take(conn, 16).await?[..]).ok()?)
            .to_string(),
        3 => {
            let len = take(conn, 1).await?;
            let name = take(conn, usize::from(len[0])).await?;
            match String::from_utf8(name.to_vec()) {
                Ok(name) if !name.is_empty() => name,
                _ => {
                    // 0x08: address type not supported.
                    let _ = conn.io.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]).await;
                    return refuse("the host name is not UTF-8");
                }
            }
        }
        _ => {
            let _ = conn.io.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]).await;
            return refuse("unknown address type");
        }
    };
    let port = take(conn, 2).await?;
    Some((host, u16::from_be_bytes([port[0], port[1]])))
}

/// The next `n` bytes from the client (bounded by the connection's idle deadline), or None
/// when it closes first.
async fn take(conn: &mut Conn<Io>, n: usize) -> Option<Bytes> {
    while conn.buf.len() < n {
        match conn.fill().await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some(conn.buf.split_to(n).freeze())
}

/// A connection to a reverse proxy's listener: everything goes to `reverse`, as mitmproxy's
/// reverse modes stack their layers. A `tcp://` target gets every connection as a TCP flow,
/// without waiting for the client (the server may speak first). Otherwise the client's first
/// byte tells whether it speaks TLS; if so its TLS is intercepted with a certificate for the
/// name it asked for. The server side speaks TLS for `https://` and `tls://` targets. Inside,
/// `http://` and `https://` targets carry HTTP, `tls://` a TCP flow. Returns true when the
/// client's TLS was taken on.
pub(crate) async fn reverse(
    shared: &std::sync::Arc<Shared>,
    mut conn: Conn<Io>,
    ctx: &mut ClientCtx,
    reverse: &ReverseTarget,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let client = ctx.client.clone();
    let (host, port) = (reverse.host.clone(), reverse.port);
    let mut server = ctx.unconnected_server();
    if reverse.scheme == "tcp" {
        let Some(tcp) = server_tcp(shared, &client, &host, port, None, &mut server).await else {
            return false;
        };
        crate::tcp::serve(shared, &ctx.client, &ctx.activity, conn, tcp, server).await;
        return false;
    }
    let target = Target {
        scheme: reverse.scheme,
        host: host.clone(),
        port,
        path: Bytes::from_static(b"/"),
    };
    let first = tokio::select! {
        filled = conn.fill() => filled,
        _ = stop.wait_for(|stop| *stop) => return false,
    };
    if !matches!(first, Ok(n) if n > 0) {
        return false;
    }
    let client_tls = conn.buf[0] == 0x16;
    match (reverse.scheme, client_tls) {
        ("tls", false) => {
            let Some(tcp) = server_tcp(shared, &client, &host, port, None, &mut server).await
            else {
                return false;
            };
            let Ok(tls) = server_tls(shared, &client, tcp, &host, Alpn::None, &mut server).await
            else {
                return false;
            };
            crate::tcp::serve(shared, &client, &ctx.activity, conn, Box::new(tls), server).await;
            false
        }
        ("tls", true) => {
            // The TCP flow inside needs its server at once, whatever `connection_strategy`.
            let Some(tcp) = server_tcp(shared, &client, &host, port, None, &mut server).await
            else {
                return false;
            };
            intercept_tls(shared, conn, ctx, Some(tcp), server, target, stop).await
        }
        (scheme, false) => {
            // As mitmproxy, connect to the server before the first request (unless lazy); a
            // server that cannot be reached now is tried again for the request, which then
            // gets the error.
            if let Ok(Some(tcp)) = eager_tcp(shared, &client, &host, port, &mut server).await {
                let tls = scheme == "https";
                let io: Io = if tls {
                    match server_tls(shared, &client, tcp, &host, Alpn::Http1, &mut server).await {
                        Ok(tls) => Box::new(tls),
                        Err(_) => return false,
                    }
                } else {
                    tcp
                };
                let key = PoolKey {
                    tls,
                    host: host.clone(),
                    port,
                    via: None,
                };
                ctx.owned.push(Upstream::direct(io, server, key));
            }
            ctx.tunnel = Some(target);
            let _ = http::serve(shared, &mut conn, ctx, stop).await;
            false
        }
        // A plain-HTTP server: only the client's side is TLS; the first request connects.
        ("http", true) => intercept_tls(shared, conn, ctx, None, server, target, stop).await,
        (_, true) => {
            let tcp = match eager_tcp(shared, &client, &host, port, &mut server).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    // The client expects TLS: it cannot be told in HTTP.
                    Refusal::server(&e).log(&client);
                    return false;
                }
            };
            intercept_tls(shared, conn, ctx, tcp, server, target, stop).await
        }
    }
}

fn connect_request(head: RequestHead, host: &str, port: u16) -> Request {
    Request {
        http_version: head.version,
        headers: head.headers,
        timestamp_start: flow::now(),
        host: host.to_string(),
        port: u32::from(port),
        method: head.method,
        authority: head.target,
        ..Default::default()
    }
}

fn established() -> flowtap_proto::v1::Response {
    flowtap_proto::v1::Response {
        http_version: Bytes::from_static(b"HTTP/1.1"),
        status_code: 200,
        reason: Bytes::from_static(b"Connection established"),
        content: Some(Bytes::new()),
        timestamp_start: flow::now(),
        timestamp_end: Some(flow::now()),
        ..Default::default()
    }
}

async fn write_response(
    conn: &mut Conn<Io>,
    response: &flowtap_proto::v1::Response,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} ", response.status_code).into_bytes();
    out.extend_from_slice(&response.reason);
    out.extend_from_slice(b"\r\n");
    for h in &response.headers {
        crate::http1::push_header(&mut out, &h.name, &h.value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(response.content.as_deref().unwrap_or_default());
    conn.io.write_all(&out).await?;
    conn.io.flush().await
}

/// The eager server connect of a tunnel, with its hooks.
async fn connect_tcp(
    shared: &Shared,
    client: &Connection,
    host: &str,
    port: u16,
    server: &mut Connection,
) -> Result<Io, UpstreamError> {
    server.address = Some(flowtap_proto::v1::Address {
        host: host.to_string(),
        port: u32::from(port),
    });
    shared
        .connection_hook(Hook::ServerConnect, client, Some(server))
        .await;
    if let Some(reason) = server.error.clone() {
        return Err(UpstreamError::ConnectFailed {
            host: host.to_string(),
            port: u32::from(port),
            reason,
        });
    }
    // `server.via`: the listener's next proxy, or one a script chose (in `http_connect` or
    // `server_connect`). As in mitmproxy, the connection to a next proxy is connected (and
    // its hook fired) before the CONNECT goes through it.
    let via = shared.connector.via_for(server.via.as_ref(), None)?;
    let (io, next) = match shared
        .connector
        .open(host, port, via.as_ref(), server)
        .await
    {
        Ok(opened) => opened,
        Err(e) => {
            server.error = Some(e.to_string());
            shared
                .connection_hook(Hook::ServerConnectError, client, Some(server))
                .await;
            return Err(e);
        }
    };
    shared
        .connection_hook(Hook::ServerConnected, client, Some(server))
        .await;
    let Some(next) = next else {
        return Ok(io);
    };
    let prepare = async |request| shared.http_connect_upstream(client, request).await;
    shared
        .connector
        .connect_through(io, host, port, &next, server, prepare)
        .await
        .inspect_err(|e| server.error = Some(e.to_string()))
}

/// Relays bytes both ways until either side closes or the tunnel idles past
/// `tunnel_idle_timeout` (ignored hosts, passthrough), then reports the server connection's
/// end (`server_disconnected`, as mitmproxy does for the connections it relays).
async fn relay(
    shared: &Shared,
    activity: &Activity,
    client: &Connection,
    mut conn: Conn<Io>,
    server: Io,
    mut info: Connection,
) {
    let mut server = Conn::with_buffer(server, bytes::BytesMut::new());
    let copied = crate::http1::splice(&mut conn, &mut server);
    if idle_bounded(activity, shared.config.tunnel_idle_timeout, copied)
        .await
        .is_none()
    {
        tracing::debug!("closing an idle tunnel to an ignored host");
    }
    if shared.hooks.interest().wants(Hook::ServerDisconnected) {
        info.timestamp_end = Some(flow::now());
        shared
            .connection_hook(Hook::ServerDisconnected, client, Some(&mut info))
            .await;
    }
}

/// [`client_hello_name`] within `tls_handshake_timeout`; None (logged) when it is too slow.
async fn client_hello_in_time(
    shared: &Shared,
    conn: &mut Conn<Io>,
    client: &Connection,
) -> Option<Option<String>> {
    let hello = tokio::time::timeout(shared.config.tls_handshake_timeout, client_hello_name(conn));
    let sni = hello.await;
    if sni.is_err() {
        tracing::info!(client = ?client.peername, "the ClientHello did not arrive within tls_handshake_timeout");
    }
    sni.ok()
}

/// Reads until the client's ClientHello record is whole (within the idle deadline and one
/// record's size) and returns the server name it asks for, if any.
async fn client_hello_name(conn: &mut Conn<Io>) -> Option<String> {
    loop {
        match crate::hello::server_name(&conn.buf) {
            crate::hello::Hello::Complete(name) => return name,
            crate::hello::Hello::Other => return None,
            crate::hello::Hello::Partial(_) => {
                if !matches!(conn.fill().await, Ok(n) if n > 0) {
                    return None;
                }
            }
        }
    }
}

/// A request line starts with an upper-case token and a space.
fn looks_like_http(buf: &[u8]) -> bool {
    let token = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    token > 0 && (token == buf.len() || buf[token] == b' ')
}

/// `tls_failed_client`: the client's handshake failed for `why`.
async fn tls_failed_client(
    shared: &Shared,
    client: &Connection,
    server: &mut Connection,
    why: String,
) {
    let failed = Connection {
        error: Some(why),
        ..client.clone()
    };
    shared
        .connection_hook(Hook::TlsFailedClient, &failed, Some(server))
        .await;
}

/// TLS interception: read the ClientHello (`tls_clienthello` may pass the connection through),
/// handshake with the server using the client's SNI and ALPN offers, then finish the client
/// handshake with a minted certificate and the protocol the server chose, so both sides speak
/// the same HTTP version. Without a server connection (`connection_strategy=lazy`, or an
/// `http://` reverse target) the client gets HTTP/1.1 at once and the first request connects
/// the server. `target` is where the requests inside go (its scheme is the server's: `https`,
/// `http` for a plain reverse target, `tls` for a TCP flow inside TLS).
/// Returns true when the client's TLS was taken on (intercepted, or its handshake failed).
async fn intercept_tls(
    shared: &std::sync::Arc<Shared>,
    mut conn: Conn<Io>,
    ctx: &mut ClientCtx,
    tcp: Option<Io>,
    mut server: Connection,
    target: Target,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    if shared.hooks.interest().wants(Hook::TlsClienthello) {
        // The whole ClientHello for the hook (already read when the SNI was matched).
        let Some(sni) = client_hello_in_time(shared, &mut conn, &ctx.client).await else {
            return false;
        };
        let passthrough = shared
            .tls_clienthello(&ctx.client, Some(&server), sni.as_deref(), &conn.buf)
            .await;
        if passthrough {
            tracing::debug!(host = %target.host, "not intercepting: tls_clienthello set ignore_connection");
            let (host, port) = (target.host.clone(), target.port);
            let client = ctx.client.clone();
            let Some(tcp) = server_tcp(shared, &client, &host, port, tcp, &mut server).await else {
                return false;
            };
            // The client spoke TLS (to the server, untouched), as mitmproxy records it.
            ctx.client.tls = true;
            relay(shared, &ctx.activity, &ctx.client, conn, tcp, server).await;
            return false;
        }
    }
    // Upstream mode connects through the next proxy now that the ClientHello is known.
    let tcp = match tcp {
        None if ctx.own_via().is_some() && !lazy(shared) && target.scheme == "https" => {
            let client = ctx.client.clone();
            let (host, port) = (target.host.clone(), target.port);
            match connect_tcp(shared, &client, &host, port, &mut server).await {
                Ok(tcp) => Some(tcp),
                Err(e) => {
                    // The client expects TLS: it cannot be told in HTTP.
                    Refusal::server(&e).log(&client);
                    return false;
                }
            }
        }
        tcp => tcp,
    };
    let prefix = conn.buf.split().freeze();
    let rewind = Rewind {
        prefix,
        inner: conn.io,
    };
    let handshake_timeout = shared.config.tls_handshake_timeout;
    let deadline = tokio::time::Instant::now() + handshake_timeout;
    let acceptor =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), rewind);
    let start = match tokio::time::timeout_at(deadline, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            tracing::warn!(host = %target.host, "client TLS handshake failed: {e}");
            return true;
        }
        Err(_) => {
            tracing::info!(host = %target.host, client = ?ctx.client.peername, "client TLS handshake did not finish within {handshake_timeout:?}");
            return true;
        }
    };
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    // Known from here on, as in mitmproxy (the TLS hooks' `context.client.sni`).
    ctx.client.sni.clone_from(&sni);
    let offers: Vec<Vec<u8>> = hello
        .alpn()
        .map(|i| i.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    let server_name = sni.clone().unwrap_or_else(|| target.host.clone());
    // A reverse proxy's clients name the proxy; its server is the target, by its own name.
    let upstream_name = if ctx.is_reverse() {
        target.host.clone()
    } else {
        server_name.clone()
    };
    let alpn = if target.scheme == "tls" {
        Alpn::None
    } else if shared.config.http2 && offers.iter().any(|p| p == b"h2") {
        Alpn::H2
    } else {
        Alpn::Http1
    };
    let upstream = match tcp {
        Some(tcp) => {
            Some(server_tls(shared, &ctx.client, tcp, &upstream_name, alpn, &mut server).await)
        }
        None => None,
    };
    let server_alpn = match &upstream {
        Some(Ok(tls)) => tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
        _ => None,
    };
    let alpn = match &server_alpn {
        Some(p) if offers.contains(p) => vec![p.clone()],
        _ if alpn != Alpn::None && offers.iter().any(|p| p == b"http/1.1") => {
            vec![b"http/1.1".to_vec()]
        }
        _ => Vec::new(),
    };
    let config = match client_tls_config(shared, &server_name, &target.host, &upstream, &alpn) {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(host = %server_name, "cannot mint a certificate: {e}");
            return true;
        }
    };
    shared
        .connection_hook(Hook::TlsStartClient, &ctx.client, Some(&mut server))
        .await;
    let client_tls = match tokio::time::timeout(handshake_timeout, start.into_stream(config)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(host = %server_name, "client TLS handshake failed: {e}");
            tls_failed_client(shared, &ctx.client, &mut server, e.to_string()).await;
            return true;
        }
        Err(_) => {
            tracing::info!(host = %server_name, client = ?ctx.client.peername, "client TLS handshake did not finish within {handshake_timeout:?}");
            let why = format!("the TLS handshake did not finish within {handshake_timeout:?}");
            tls_failed_client(shared, &ctx.client, &mut server, why).await;
            return true;
        }
    };
    ctx.client.tls = true;
    ctx.client.sni = sni;
    ctx.client.alpn_offers = offers.into_iter().map(Bytes::from).collect();
    record_tls(&mut ctx.client, client_tls.get_ref().1);
    ctx.client.certificate_list.clear();
    shared
        .connection_hook(Hook::TlsEstablishedClient, &ctx.client, Some(&mut server))
        .await;
    let h2 = client_tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut conn = shared.client_conn(Box::new(client_tls));
    if target.scheme == "tls" {
        // A `tls://` reverse target: a TCP flow inside TLS on both sides.
        if let Some(Ok(tls)) = upstream {
            crate::tcp::serve(
                shared,
                &ctx.client,
                &ctx.activity,
                conn,
                Box::new(tls),
                server,
            )
            .await;
        }
        return true;
    }
    let upstream = match upstream {
        Some(Ok(tls)) => tls,
        Some(Err(e)) => {
            // The client is told why, over the TLS connection it just established.
            if !h2 && conn.read_request_head().await.is_ok() {
                respond::send_h1(&mut conn, &ctx.client, &Refusal::server(&e)).await;
            }
            return true;
        }
        None => {
            // Lazy: HTTP/1.1 (the only protocol offered), the first request connects.
            ctx.tunnel = Some(target);
            if let Next::Connect(_) = http::serve(shared, &mut conn, ctx, stop).await {
                tracing::debug!("nested CONNECT refused");
            }
            return true;
        }
    };
    let key = PoolKey {
        tls: true,
        host: target.host.clone(),
        port: target.port,
        // The way the tunnel went (`server.via` as the connector recorded it).
        via: shared
            .connector
            .via_for(server.via.as_ref(), None)
            .ok()
            .flatten(),
    };
    if h2 {
        crate::h2::serve(shared, conn, ctx, Box::new(upstream), server, target).await;
        return true;
    }
    ctx.owned
        .push(Upstream::direct(Box::new(upstream), server, key));
    ctx.tunnel = Some(target);
    if let Next::Connect(_) = http::serve(shared, &mut conn, ctx, stop).await {
        tracing::debug!("nested CONNECT refused");
    }
    true
}

/// A client that opens its connection to a regular or upstream listener with TLS, as to an
/// HTTPS proxy (`curl --proxy https://...`, or another proxy's `upstream:https://`): its TLS is
/// taken on with a certificate for the name it asked for (else the listener's address), with
/// HTTP/1.1 inside and the client TLS hooks. None when the handshake fails or is too slow.
pub(crate) async fn proxy_tls(
    shared: &Shared,
    mut conn: Conn<Io>,
    ctx: &mut ClientCtx,
) -> Option<Conn<Io>> {
    let prefix = conn.buf.split().freeze();
    let rewind = Rewind {
        prefix,
        inner: conn.io,
    };
    let local = ctx
        .client
        .sockname
        .as_ref()
        .map(|a| a.host.clone())
        .unwrap_or_default();
    let handshake = async {
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), rewind);
        let start = acceptor.await.map_err(|e| e.to_string())?;
        let hello = start.client_hello();
        let sni = hello.server_name().map(str::to_string);
        let http1 = hello
            .alpn()
            .is_some_and(|mut offers| offers.any(|p| p == b"http/1.1"));
        let alpn = if http1 {
            vec![b"http/1.1".to_vec()]
        } else {
            Vec::new()
        };
        let name = sni.clone().unwrap_or_else(|| local.clone());
        let config =
            client_tls_config(shared, &name, &name, &None, &alpn).map_err(|e| e.to_string())?;
        shared
            .connection_hook(Hook::TlsStartClient, &ctx.client, None)
            .await;
        let tls = start.into_stream(config).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((tls, sni))
    };
    let limit = shared.config.tls_handshake_timeout;
    let failed = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok((tls, sni))) => {
            ctx.client.tls = true;
            ctx.client.sni = sni;
            record_tls(&mut ctx.client, tls.get_ref().1);
            ctx.client.certificate_list.clear();
            shared
                .connection_hook(Hook::TlsEstablishedClient, &ctx.client, None)
                .await;
            return Some(shared.client_conn(Box::new(tls)));
        }
        Ok(Err(e)) => e,
        Err(_) => format!("the TLS handshake did not finish within {limit:?}"),
    };
    tracing::info!(client = ?ctx.client.peername, "TLS from a proxy client failed: {failed}");
    let client = Connection {
        error: Some(failed),
        ..ctx.client.clone()
    };
    shared
        .connection_hook(Hook::TlsFailedClient, &client, None)
        .await;
    None
}

/// The TLS handshake with the server over `tcp`, by the name `sni`, with the
/// `tls_start_server` and `tls_established_server` (or `tls_failed_server`) hooks around it.
async fn server_tls(
    shared: &Shared,
    client: &Connection,
    tcp: Io,
    sni: &str,
    alpn: Alpn,
    server: &mut Connection,
) -> Result<tokio_rustls::client::TlsStream<Io>, UpstreamError> {
    shared
        .connection_hook(Hook::TlsStartServer, client, Some(server))
        .await;
    let tls = shared.connector.tls(tcp, sni, alpn, server).await;
    let hook = match &tls {
        Ok(_) => Hook::TlsEstablishedServer,
        Err(e) => {
            tracing::warn!(host = %sni, "{e}");
            server.error = Some(e.to_string());
            Hook::TlsFailedServer
        }
    };
    shared.connection_hook(hook, client, Some(server)).await;
    tls
}

/// The server config the client is served: the certificate for the name it asked for (and,
/// as mitmproxy's, the server's host), with the names of the server's own certificate when it
/// was connected first (`upstream_cert`) and its chain appended when
/// `add_upstream_certs_to_client_chain` says so; a `--certs` certificate where one matches.
fn client_tls_config(
    shared: &Shared,
    asked: &str,
    server_host: &str,
    upstream: &Option<Result<tokio_rustls::client::TlsStream<Io>, UpstreamError>>,
    alpn: &[Vec<u8>],
) -> Result<std::sync::Arc<rustls::ServerConfig>, flowtap_certs::CaError> {
    let server_chain = match upstream {
        Some(Ok(tls)) => tls.get_ref().1.peer_certificates().unwrap_or_default(),
        _ => &[],
    };
    let upstream_leaf = server_chain
        .first()
        .filter(|_| shared.config.upstream_cert)
        .map(|der| der.as_ref());
    let names = flowtap_certs::LeafNames::new(asked, Some(server_host), upstream_leaf);
    let extra: &[rustls_pki_types::CertificateDer<'static>] =
        if shared.config.add_upstream_certs_to_client_chain {
            server_chain
        } else {
            &[]
        };
    shared.ca.server_config_for(&names, alpn, extra)
}

/// A stream that first yields bytes already read from it.
struct Rewind {
    prefix: Bytes,
    inner: Io,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
