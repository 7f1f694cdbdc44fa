//! proxy-core: the intercepting proxy.
//!
//! An explicit forward proxy in mitmproxy's "regular" mode: absolute-form HTTP/1.1 requests and
//! CONNECT tunnels, with TLS interception by a CA of our own (`flowtap-certs`), HTTP/2 where both
//! sides speak it, and hooks at each step of a flow's life for the scripts.
//!
//! Where to start: [`Proxy`] (`bind`, then `serve` with a shutdown future). A connection's life
//! is in `server` (accept, disconnect hooks), `http` (the HTTP/1 request lifecycle and its hook
//! order), `tunnel` (CONNECT, TLS interception, ignored hosts), `h2` (HTTP/2 streams),
//! `websocket` (WebSocket flows after a 101) and `tcp` (raw TCP flows in tunnels).
//!
//! - [`hooks`]: the [`Hooks`] trait the scripts plug into; [`NoHooks`] when there are none.
//! - [`sink`]: [`FlowSink`], where finished flows go (dump output, files, the store).
//! - [`config`]: [`Config`], the proxy's settings.
//! - `http1`: the HTTP/1 codec (heads kept exactly as received, chunked bodies, trailers).
//! - `upstream`: server connections, TLS to servers, the idle pool.
//! - `live`: the live flows scripts may kill or inject messages into from outside their hooks.
//! - `error`: errors and the one place that turns them into responses for clients.

pub mod config;
mod error;
mod flow;
mod h2;
pub mod hooks;
mod http;
mod http1;
mod intercept;
mod live;
mod server;
pub mod sink;
mod stream;
mod tcp;
mod tunnel;
mod upstream;
mod websocket;

pub use config::Config;
pub use error::SetupError;
pub use flow::{KILLED_MESSAGE, is_killed};
pub use hooks::{CoreControl, HookInterest, Hooks, Interest, NoHooks, Verdict};
pub use server::{ClientReplay, Proxy};
pub use sink::{FlowSink, Sinks};
