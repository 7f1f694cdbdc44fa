//! One client connection, from accept to close: the `client_connected` hook, HTTP/1 until a
//! CONNECT, the tunnel, and the disconnect hooks however the connection ends.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::context::{ClientClosed, ClientCtx, Shared};
use crate::flow::{self, connection_subject};
use crate::hooks::Hook;
use crate::http::{self, Next};
use crate::limits::{Activity, Tracked};
use crate::mode::{Mode, ModeSpec};
use crate::tunnel;
use crate::upstream::Io;

/// Serves one client connection until it closes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mode: Arc<ModeSpec>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _open = flowtap_telemetry::proxy::client_connection();
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let original =
        (mode.mode == Mode::Transparent).then(|| crate::transparent::original_destination(&stream));
    let activity = Activity::new();
    let mut client = flow::client_connection(peer, local);
    client.proxy_mode = mode.full.clone();
    let mut ctx = ClientCtx {
        client,
        mode: mode.clone(),
        owned: Vec::new(),
        tunnel: None,
        activity: activity.clone(),
    };
    let _closed = ClientClosed {
        hooks: Arc::clone(&shared.hooks),
        client_id: ctx.client.id.clone(),
    };
    // `block_global`/`block_private` come before the scripts, as in mitmproxy's chain.
    if let Some(error) = shared.blocked_client(peer.ip()) {
        ctx.client.error = Some(error.to_string());
    }
    if shared.hooks.interest().wants(Hook::ClientConnected) {
        let mut subject = connection_subject(&ctx.client, None);
        shared.hooks.call(Hook::ClientConnected, &mut subject).await;
        if let Some(client) = subject.client_conn {
            ctx.client = client;
        }
    }
    if ctx.client.error.is_some() {
        return disconnected(&shared, &mut ctx, false).await;
    }
    let io: Io = Box::new(Tracked::new(stream, activity));
    let mut conn = shared.client_conn(io);
    let mut tls_tunnel = false;
    match &mode.mode {
        Mode::Regular | Mode::Upstream(_) => {
            // A client may speak TLS to the proxy itself (an HTTPS proxy). One that sends
            // nothing within `client_idle_timeout`, or closes, is done with.
            if !matches!(conn.fill().await, Ok(n) if n > 0) {
                return disconnected(&shared, &mut ctx, false).await;
            }
            if conn.buf[0] == 0x16 {
                match tunnel::proxy_tls(&shared, conn, &mut ctx).await {
                    Some(tls) => conn = tls,
                    None => return disconnected(&shared, &mut ctx, true).await,
                }
            }
            if let Next::Connect(head) = http::serve(&shared, &mut conn, &mut ctx, &mut stop).await
            {
                tls_tunnel = tunnel::connect(&shared, conn, &mut ctx, head, &mut stop).await;
            }
        }
        Mode::Socks5 => {
            tls_tunnel = tunnel::socks5(&shared, conn, &mut ctx, &mut stop).await;
        }
        Mode::Reverse(target) if target.scheme == "dns" => {
            crate::dns::serve_tcp(&shared, conn, &mut ctx, &mut stop).await;
        }
        Mode::Reverse(target) => {
            let target = target.clone();
            tls_tunnel = tunnel::reverse(&shared, conn, &mut ctx, &target, &mut stop).await;
        }
        Mode::Transparent => match original {
            Some(Ok(original)) => {
                tls_tunnel =
                    tunnel::transparent(&shared, conn, &mut ctx, original, &mut stop).await;
            }
            Some(Err(e)) => crate::respond::Refusal::BadRequest(format!(
                "transparent mode failure: the original destination is unknown ({e}); was the \
                 connection redirected to this port by the firewall?"
            ))
            .log(&ctx.client),
            None => {}
        },
        // DNS over TCP; the queries over UDP are served by `udp`.
        Mode::Dns => crate::dns::serve_tcp(&shared, conn, &mut ctx, &mut stop).await,
    }
    disconnected(&shared, &mut ctx, tls_tunnel).await;
}

/// The client connection closed: release its server connections and fire the disconnect
/// hooks in mitmproxy's order: a server connection the server already closed is reported
/// first, the client next, then the server connections still open (which close with it). For
/// TLS tunnels (`client_first`) mitmproxy reports the client first in any case.
async fn disconnected(shared: &Shared, ctx: &mut ClientCtx, client_first: bool) {
    let owned = std::mem::take(&mut ctx.owned);
    ctx.client.timestamp_end = Some(flow::now());
    let (mut closed, mut open) = (Vec::new(), Vec::new());
    for mut up in owned {
        if !client_first && up.closed_by_server() {
            closed.push(up);
        } else {
            open.push(up);
        }
    }
    shared.release_owned(&ctx.client, closed).await;
    shared
        .connection_hook(Hook::ClientDisconnected, &ctx.client, None)
        .await;
    shared.release_owned(&ctx.client, open).await;
}
