//! Hook dispatch: runs a hook when a script wants it, with the intercept filter's pause around
//! `request` and `response`, and connection hooks with a subject made from the connections.

use flowtap_proto::v1::{Connection, Flow};

use crate::context::Shared;
use crate::flow::{KILLED_MESSAGE, connection_subject, describe, is_killed, set_error};
use crate::hooks::{Hook, Verdict};
use crate::intercept::Release;

impl Shared {
    /// Runs a flow hook if a script wants it. In `request` and `response`, a flow that the
    /// intercept filter matches is marked intercepted first (the scripts see it so and may
    /// resume it); one still intercepted after the hooks waits for a resume or kill.
    pub(crate) async fn hook(&self, hook: Hook, flow: &mut Flow) -> Verdict {
        if matches!(hook, Hook::Request | Hook::Response) && self.intercepts.should_intercept(flow)
        {
            flow.intercepted = true;
        }
        let verdict = if self.hooks.interest().wants(hook) {
            self.hooks.call(hook, flow).await
        } else {
            Verdict::Continue
        };
        if !flow.intercepted || verdict == Verdict::Kill || is_killed(flow) {
            return verdict;
        }
        tracing::info!(
            "intercepted {} (flow {}): it waits until a script resumes or kills it",
            describe(flow),
            flow.id
        );
        let release = self.intercepts.hold(flow).await;
        flow.intercepted = false;
        match release {
            Release::Resume => verdict,
            Release::Kill => {
                set_error(flow, KILLED_MESSAGE);
                Verdict::Kill
            }
        }
    }

    /// `http_connect_upstream`: the CONNECT `request` about to go to a next proxy, as a flow of
    /// its own (not live) from `client`, for the scripts to change. Returns what to send.
    pub(crate) async fn http_connect_upstream(
        &self,
        client: &Connection,
        request: flowtap_proto::v1::Request,
    ) -> flowtap_proto::v1::Request {
        if !self.hooks.interest().wants(Hook::HttpConnectUpstream) {
            return request;
        }
        let mut flow = crate::flow::new_http_flow(client, request.clone());
        flow.live = false;
        self.hooks.call(Hook::HttpConnectUpstream, &mut flow).await;
        flow.request.unwrap_or(request)
    }

    /// Runs a connection hook with a subject made from the connections, if a script wants it.
    /// A server connection that goes through a next proxy is shown as mitmproxy shows it in
    /// the `server_*` hooks: the connection to that proxy (its address, no `via`); a script's
    /// changes to that view (an error, another address or `via`) change the next proxy.
    pub(crate) async fn connection_hook(
        &self,
        hook: Hook,
        client: &Connection,
        server: Option<&mut Connection>,
    ) -> Verdict {
        if !self.hooks.interest().wants(hook) {
            return Verdict::Continue;
        }
        let server_hook = matches!(
            hook,
            Hook::ServerConnect
                | Hook::ServerConnected
                | Hook::ServerConnectError
                | Hook::ServerDisconnected
        );
        let server = match server {
            Some(server) if server_hook && server.via.is_some() => {
                return self.proxy_connection_hook(hook, client, server).await;
            }
            server => server,
        };
        let mut subject = connection_subject(client, server.as_deref());
        let verdict = self.hooks.call(hook, &mut subject).await;
        if let (Some(server), Some(changed)) = (server, subject.server_conn) {
            *server = changed;
        }
        verdict
    }

    /// A `server_*` hook of a connection through a next proxy: the scripts see the connection
    /// to the proxy (its address, no `via`); an error they set, or another address or `via`,
    /// applies to the next proxy.
    async fn proxy_connection_hook(
        &self,
        hook: Hook,
        client: &Connection,
        server: &mut Connection,
    ) -> Verdict {
        let mut view = server.clone();
        if let Some(via) = view.via.take() {
            view.address = via.address;
        }
        let mut subject = connection_subject(client, Some(&view));
        let verdict = self.hooks.call(hook, &mut subject).await;
        if let Some(changed) = subject.server_conn {
            server.error = changed.error;
            if changed.via.is_some() {
                server.via = changed.via;
            } else if changed.address != view.address
                && let Some(via) = server.via.as_mut()
            {
                via.address = changed.address;
            }
        }
        verdict
    }

    /// `tls_clienthello`, with the client's ClientHello (`record`: the TLS record it came in)
    /// and the name it asks for. True when a script set `ignore_connection`: the connection is
    /// then passed through untouched.
    pub(crate) async fn tls_clienthello(
        &self,
        client: &Connection,
        server: Option<&Connection>,
        sni: Option<&str>,
        record: &[u8],
    ) -> bool {
        if !self.hooks.interest().wants(Hook::TlsClienthello) {
            return false;
        }
        let mut subject = connection_subject(client, server);
        if let Some(client) = subject.client_conn.as_mut() {
            client.sni = sni.map(str::to_string);
            client.client_hello =
                bytes::Bytes::copy_from_slice(crate::hello::client_hello_body(record));
        }
        self.hooks.call(Hook::TlsClienthello, &mut subject).await == Verdict::IgnoreConnection
    }
}
