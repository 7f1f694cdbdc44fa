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

    /// Runs a connection hook with a subject made from the connections, if a script wants it.
    pub(crate) async fn connection_hook(
        &self,
        hook: Hook,
        client: &Connection,
        server: Option<&mut Connection>,
    ) -> Verdict {
        if !self.hooks.interest().wants(hook) {
            return Verdict::Continue;
        }
        let mut subject = connection_subject(client, server.as_deref());
        let verdict = self.hooks.call(hook, &mut subject).await;
        if let (Some(server), Some(changed)) = (server, subject.server_conn) {
            *server = changed;
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
