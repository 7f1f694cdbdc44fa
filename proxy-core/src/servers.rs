//! Server connections as flows see them: opening one with the `server_connect`,
//! `server_connected` / `server_connect_error` hooks around it, and closing or pooling it with
//! `server_disconnected`. The sockets and TLS themselves are in `upstream`.

use flowtap_proto::v1::{Connection, Flow};

use crate::context::Shared;
use crate::error::UpstreamError;
use crate::flow;
use crate::hooks::Hook;
use crate::upstream::{PoolKey, Upstream};

impl Shared {
    /// Opens a new server connection for `flow`, with the `server_connect` and
    /// `server_connected` (or `server_connect_error`) hooks around it.
    pub(crate) async fn connect_server(
        &self,
        client: &Connection,
        flow: &mut Flow,
        key: &PoolKey,
        sni: &str,
    ) -> Result<Upstream, UpstreamError> {
        let mut info = flow::unconnected_server();
        info.via = key.via.as_ref().map(|via| via.spec());
        info.address = Some(flowtap_proto::v1::Address {
            host: key.host.clone(),
            port: u32::from(key.port),
        });
        self.connection_hook(Hook::ServerConnect, client, Some(&mut info))
            .await;
        if let Some(error) = info.error.clone() {
            let host = key.host.clone();
            flow.server_conn = Some(info);
            return Err(UpstreamError::ConnectFailed {
                host,
                port: u32::from(key.port),
                reason: error,
            });
        }
        // `server_connect` may choose the next proxy too.
        let via = match self.connector.via_for(info.via.as_ref(), None) {
            Ok(via) => via,
            Err(e) => {
                flow.server_conn = Some(info);
                return Err(e);
            }
        };
        let key = match &info.address {
            Some(a) => PoolKey {
                tls: key.tls,
                host: a.host.clone(),
                port: u16::try_from(a.port).unwrap_or(key.port),
                via,
            },
            None => PoolKey { via, ..key.clone() },
        };
        let prepare = async |request| self.http_connect_upstream(client, request).await;
        match self
            .connector
            .connect(&key, sni, false, info, prepare)
            .await
        {
            Ok(mut up) => {
                self.connection_hook(Hook::ServerConnected, client, Some(&mut up.info))
                    .await;
                Ok(up)
            }
            Err((e, mut info)) => {
                info.error = Some(e.to_string());
                self.connection_hook(Hook::ServerConnectError, client, Some(&mut info))
                    .await;
                // mitmproxy records no address for a server it never reached.
                info.address = None;
                info.timestamp_start = None;
                flow.server_conn = Some(info);
                Err(e)
            }
        }
    }

    /// A server connection is done with: closed, with `server_disconnected` when a script
    /// watches disconnects.
    pub(crate) async fn server_closed(&self, client: &Connection, mut up: Upstream) {
        if self.hooks.interest().wants(Hook::ServerDisconnected) {
            up.info.timestamp_end = Some(flow::now());
            self.connection_hook(Hook::ServerDisconnected, client, Some(&mut up.info))
                .await;
        }
    }

    /// Returns still-usable server connections to the shared pool, unless a script watches
    /// server disconnects (then they are closed, as mitmproxy closes them with the client).
    pub(crate) async fn release_owned(&self, client: &Connection, owned: Vec<Upstream>) {
        for up in owned {
            if self.hooks.interest().wants(Hook::ServerDisconnected) || up.h2 {
                self.server_closed(client, up).await;
            } else {
                self.pool.put(up);
            }
        }
    }
}
