//! What scripts ask of the proxy from outside their hooks ([`crate::CoreControl`]: kill,
//! resume, replay, inject, shutdown), and [`ClientReplay`] for `-C`.

use std::sync::Arc;

use flowtap_certs::CertificateAuthority;
use flowtap_proto::v1::Flow;

use crate::config::Config;
use crate::context::Shared;
use crate::error::SetupError;
use crate::hooks::Hooks;
use crate::http;
use crate::intercept::Release;
use crate::live::{Injection, MessageKind};
use crate::sink::FlowSink;

/// Sends stored requests again (mitmproxy's client replay, `-C`): each flow gets
/// `is_replay = "request"`, a backup of its earlier state, and the hooks `requestheaders`,
/// `request`, `server_connect`, `server_connected`, `responseheaders`, `response`,
/// `server_disconnected` (no client events), then goes to the sinks.
pub struct ClientReplay {
    shared: Arc<Shared>,
}

impl ClientReplay {
    /// Prepares replays with the proxy's settings; nothing listens.
    pub fn new(
        config: Config,
        ca: Arc<CertificateAuthority>,
        hooks: Arc<dyn Hooks>,
        sink: Arc<dyn FlowSink>,
    ) -> Result<Self, SetupError> {
        Ok(Self {
            shared: Arc::new(Shared::new(config, ca, hooks, sink)?),
        })
    }

    /// Replays one HTTP flow and waits for its response (or error).
    pub async fn replay(&self, flow: Flow) {
        http::replay(&self.shared, flow).await;
    }
}

/// What scripts may ask of the proxy outside hooks: shutdown, client replay, resuming a flow
/// paused by the intercept filter, killing any live flow, and injecting messages into live
/// WebSocket and TCP flows.
pub(crate) struct ProxyControl {
    pub(crate) shutdown: tokio::sync::Notify,
    pub(crate) shared: Arc<Shared>,
}

impl ProxyControl {
    /// Injects a message into a live WebSocket, TCP or UDP flow.
    fn inject(
        &self,
        flow_id: &str,
        kind: MessageKind,
        to_client: bool,
        content: bytes::Bytes,
        is_text: bool,
    ) -> Result<(), String> {
        let injection = Injection {
            to_client,
            content,
            is_text,
        };
        self.shared.live.inject(flow_id, kind, injection)
    }
}

impl crate::hooks::CoreControl for ProxyControl {
    fn kill(&self, flow_id: &str) -> Result<(), String> {
        // A flow paused in a hook is released as killed through the hook's own path.
        if self.shared.intercepts.release(flow_id, Release::Kill) || self.shared.live.kill(flow_id)
        {
            return Ok(());
        }
        Err(format!("flow {flow_id} is not live (unknown or finished)"))
    }

    fn resume(&self, flow_id: &str) -> Result<(), String> {
        if self.shared.intercepts.release(flow_id, Release::Resume) {
            Ok(())
        } else {
            Err(format!("flow {flow_id} is not intercepted"))
        }
    }

    fn replay_client(&self, flow: Flow) -> Result<(), String> {
        if flow.r#type != "http" || flow.request.is_none() {
            return Err(format!("flow {} has no HTTP request to replay", flow.id));
        }
        let shared = self.shared.clone();
        tokio::spawn(async move { http::replay(&shared, flow).await });
        Ok(())
    }

    fn inject_websocket(
        &self,
        flow_id: &str,
        to_client: bool,
        content: bytes::Bytes,
        is_text: bool,
    ) -> Result<(), String> {
        self.inject(flow_id, MessageKind::WebSocket, to_client, content, is_text)
    }

    fn inject_tcp(
        &self,
        flow_id: &str,
        to_client: bool,
        content: bytes::Bytes,
    ) -> Result<(), String> {
        self.inject(flow_id, MessageKind::Tcp, to_client, content, false)
    }

    fn inject_udp(
        &self,
        flow_id: &str,
        to_client: bool,
        content: bytes::Bytes,
    ) -> Result<(), String> {
        self.inject(flow_id, MessageKind::Udp, to_client, content, false)
    }

    fn shutdown(&self) {
        self.shutdown.notify_one();
    }
}
