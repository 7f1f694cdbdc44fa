//! The hook call sites' contract: how the flow lifecycle reaches scripts.
//!
//! proxy-core calls [`Hooks::call`] at each point of a flow's life where mitmproxy fires a hook,
//! in mitmproxy's order (docs/hooks.md has the chart). It knows nothing of Python or gRPC: the
//! production implementation is the script-host client of the `flowtap-script-client` crate;
//! with no scripts the proxy uses [`NoHooks`] and makes no call at all.
//!
//! The order for a plain HTTP request through the regular proxy:
//!
//! ```text
//! client_connected, requestheaders, request, server_connect, server_connected,
//! responseheaders, response, server_disconnected, client_disconnected
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use flowtap_proto::v1::Flow;
pub use flowtap_proto::v1::Hook;
use futures_util::future::BoxFuture;

/// What a script wants from one hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookInterest {
    /// Some script implements the hook.
    pub wanted: bool,
    /// The hook needs request/response bodies, so the core buffers and sends them.
    pub needs_body: bool,
    /// The core must wait for the hook's outcome before the flow goes on.
    pub awaited: bool,
}

/// The hooks that the loaded scripts implement: decided at start-up, widened when a reloaded
/// script implements more (never narrowed: a hook no script implements any more costs a call
/// that changes nothing).
pub struct Interest {
    /// Per hook number: [`WANTED`], [`NEEDS_BODY`], [`AWAITED`] bits.
    by_hook: [AtomicU8; HOOK_SLOTS],
}

/// More than the highest hook number of script.proto.
const HOOK_SLOTS: usize = 72;
const WANTED: u8 = 1;
const NEEDS_BODY: u8 = 2;
const AWAITED: u8 = 4;

impl Interest {
    /// Interest in nothing: no hook is ever called.
    pub fn none() -> Self {
        Self {
            by_hook: std::array::from_fn(|_| AtomicU8::new(0)),
        }
    }

    /// Records what the scripts want from `hook`, merging with what was recorded before (one
    /// script needing bodies makes the hook need bodies).
    pub fn add(&mut self, hook: Hook, interest: HookInterest) {
        self.widen(hook, interest);
    }

    /// [`Interest::add`] while the proxy runs: a reloaded script implements `hook`. Calls
    /// already under way are not affected.
    pub fn widen(&self, hook: Hook, interest: HookInterest) {
        let Some(slot) = self.by_hook.get(hook as usize) else {
            return;
        };
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let bits = flag(interest.wanted, WANTED)
            | flag(interest.needs_body, NEEDS_BODY)
            | flag(interest.awaited, AWAITED);
        slot.fetch_or(bits, Ordering::Relaxed);
    }

    /// What the scripts want from `hook`; all false when no script implements it.
    pub fn of(&self, hook: Hook) -> HookInterest {
        let bits = self
            .by_hook
            .get(hook as usize)
            .map_or(0, |b| b.load(Ordering::Relaxed));
        HookInterest {
            wanted: bits & WANTED != 0,
            needs_body: bits & NEEDS_BODY != 0,
            awaited: bits & AWAITED != 0,
        }
    }

    /// True when some script implements `hook`.
    pub fn wants(&self, hook: Hook) -> bool {
        self.of(hook).wanted
    }

    /// True when no script implements any hook.
    pub fn is_empty(&self) -> bool {
        !self
            .by_hook
            .iter()
            .any(|b| b.load(Ordering::Relaxed) & WANTED != 0)
    }

    fn wanted(&self) -> impl Iterator<Item = Hook> + '_ {
        (0..HOOK_SLOTS)
            .filter_map(|n| Hook::try_from(n as i32).ok())
            .filter(|h| self.wants(*h))
    }
}

impl Default for Interest {
    fn default() -> Self {
        Self::none()
    }
}

impl Clone for Interest {
    fn clone(&self) -> Self {
        Self {
            by_hook: std::array::from_fn(|n| {
                AtomicU8::new(self.by_hook[n].load(Ordering::Relaxed))
            }),
        }
    }
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.wanted().map(|h| h.as_str_name()))
            .finish()
    }
}

/// What the core does with a flow after a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the flow as changed.
    Continue,
    /// A script set `flow.response` (or a fail-closed policy made one): answer the client with
    /// it and make no upstream request.
    Respond,
    /// A script killed the flow: the core sets the error "Connection killed.", fires `error`
    /// (except after `response`) and resets the client connection or stream.
    Kill,
    /// After `tls_clienthello`: a script set `ignore_connection`; the connection is passed
    /// through untouched.
    IgnoreConnection,
}

/// The scripts, as the flow lifecycle sees them.
///
/// An implementation handles its own failures: on a timeout or a crashed worker it applies the
/// script's policy (fail open: [`Verdict::Continue`] with the flow unchanged; fail closed: a 502
/// or 504 response naming the cause, [`Verdict::Respond`]). Intercept is handled inside `call`:
/// it returns only once the flow has been resumed or killed.
pub trait Hooks: Send + Sync + 'static {
    /// The hooks the scripts implement. The core never calls a hook whose interest is not
    /// `wanted`, and sends bodies only where `needs_body`.
    fn interest(&self) -> &Interest;

    /// Runs `hook` for `flow` through every script, in load order. `flow` is changed in place
    /// with the scripts' changes. For connection hooks the flow carries only `id` (the
    /// connection id), `client_conn` and `server_conn`. For hooks whose interest is not
    /// `awaited` the future may complete before the scripts ran; the per-flow order is kept
    /// anyway.
    fn call<'a>(&'a self, hook: Hook, flow: &'a mut Flow) -> BoxFuture<'a, Verdict>;

    /// Gives the scripts a way to act on the proxy outside hooks (resume, kill, replay,
    /// inject). Called once, before traffic.
    fn attach(&self, _control: Arc<dyn CoreControl>) {}

    /// A client connection ended (on every path: HTTP/1, HTTP/2, tunnels, WebSocket and TCP
    /// flows, refused or aborted connections), whatever the scripts' interest. `client_id` is
    /// the id of the connection (`flow.client_conn.id`). Called after `client_disconnected`,
    /// once per connection; an implementation lets go of what it kept for the connection (the
    /// worker its flows stick to). Also called at the end of a replayed flow, with the id of
    /// the client connection it carries.
    fn client_closed(&self, _client_id: &str) {}
}

/// What scripts may ask of the core outside a hook call.
pub trait CoreControl: Send + Sync + 'static {
    /// Kills a live flow; an unknown or finished flow gives an error text.
    fn kill(&self, flow_id: &str) -> Result<(), String>;
    /// Resumes a flow the proxy paused (`--set intercept`); an error text if none waits.
    fn resume(&self, flow_id: &str) -> Result<(), String>;
    /// Sends `flow`'s request again as a new flow marked `is_replay = "request"`.
    fn replay_client(&self, flow: Flow) -> Result<(), String>;
    /// Injects a WebSocket message into a live WebSocket flow.
    fn inject_websocket(
        &self,
        flow_id: &str,
        to_client: bool,
        content: bytes::Bytes,
        is_text: bool,
    ) -> Result<(), String>;
    /// Injects bytes into a live TCP flow.
    fn inject_tcp(
        &self,
        flow_id: &str,
        to_client: bool,
        content: bytes::Bytes,
    ) -> Result<(), String>;
    /// Injects a datagram into a live UDP flow (it goes through `udp_message` first). A core
    /// without UDP flows refuses.
    fn inject_udp(
        &self,
        flow_id: &str,
        _to_client: bool,
        _content: bytes::Bytes,
    ) -> Result<(), String> {
        Err(format!("flow {flow_id} is not a live UDP flow"))
    }
    /// Asks the proxy to shut down gracefully.
    fn shutdown(&self);
}

/// No scripts: every hook is uninteresting and never called.
#[derive(Debug, Default)]
pub struct NoHooks {
    interest: Interest,
}

impl Hooks for NoHooks {
    fn interest(&self) -> &Interest {
        &self.interest
    }

    fn call<'a>(&'a self, _hook: Hook, _flow: &'a mut Flow) -> BoxFuture<'a, Verdict> {
        Box::pin(async { Verdict::Continue })
    }
}
