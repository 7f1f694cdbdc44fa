//! proxy-core: the intercepting proxy.
//!
//! An explicit forward proxy in mitmproxy's "regular" mode: absolute-form HTTP/1.1 requests and
//! CONNECT tunnels, with TLS interception by a CA of our own (`flowtap-certs`), HTTP/2 where both
//! sides speak it, and hooks at each step of a flow's life for the scripts.
//!
//! Where to start: [`Proxy`] (`bind`, then `serve` with a shutdown future).
//!
//! The layers, each using only those above it:
//! - the connection context, `context` (what every connection shares and what one client
//!   connection carries), with `dispatch` (running hooks, the intercept pause), `servers`
//!   (server connections with their hooks) and `respond` (the one place an error becomes the
//!   proxy's own answer: 400/408/413 for the client's faults, 502 for the server's);
//! - `lifecycle`: one HTTP flow's hooks and its three endings (finished, killed, failed), driven
//!   alike by `http` (HTTP/1) and `h2` (HTTP/2);
//! - the protocols: `http`, `h2`, `tunnel` (CONNECT, SOCKS5, reverse and transparent
//!   connections, TLS interception with the TLS hooks, ignored hosts), `websocket` (WebSocket
//!   flows after a 101) and `tcp` (raw TCP flows in tunnels);
//! - `client` (one client connection from accept to close) and `server` (the listener, which only
//!   accepts, at most `max_client_connections` at a time); `control` (what scripts ask from
//!   outside hooks, and [`ClientReplay`]); `udp` (the UDP listeners: `reverse:udp://`, a relay
//!   whose datagrams from one client address are a UDP flow, and the DNS modes) with `dns`
//!   (`--mode dns` and `reverse:dns://`, over UDP and TCP: queries are DNS flows, with the DNS
//!   wire codec).
//!
//! Beside them: [`builtins`] (mitmdump's built-in addons: map_remote, modify_headers,
//! proxyauth, ...; the lifecycle calls them around the scripts' hooks), [`hooks`] (the [`Hooks`] trait the scripts plug into; [`NoHooks`] when there are
//! none), [`sink`] ([`FlowSink`], where finished flows go), [`config`] ([`Config`]), [`mode`] (`--mode`), [`limits`]
//! (client deadlines, the descriptor limit), `http1` (the HTTP/1 codec: heads kept exactly as
//! received, bounded lines, chunked bodies, trailers), `upstream` (server sockets, TLS, the idle
//! pool), `live` (flows scripts may kill or inject into), `hosts` (ignored, allowed and TCP
//! hosts), `hello` (the ClientHello read before any TLS library sees it), `transparent` (the
//! original destination of a redirected connection), `intercept`, `stream` and `error`. Bodies
//! held whole go to disk once large (`flowtap_flow::spill`, `Config::spill_dir`); the writers
//! give their pages back as they stream them out.

pub mod builtins;
mod client;
pub mod config;
mod context;
mod control;
mod dispatch;
mod dns;
mod error;
mod flow;
#[doc(hidden)]
pub mod fuzzing;
mod h2;
mod hello;
pub mod hooks;
mod hosts;
mod http;
mod http1;
mod intercept;
mod lifecycle;
pub mod limits;
mod live;
pub mod mode;
mod respond;
mod server;
mod servers;
pub mod sink;
mod stream;
mod tcp;
mod transparent;
mod tunnel;
mod udp;
mod upstream;
mod websocket;

pub use config::{Config, ConnectionStrategy, Listener};
pub use control::ClientReplay;
pub use error::SetupError;
pub use flow::{KILLED_MESSAGE, is_killed};
pub use hooks::{CoreControl, HookInterest, Hooks, Interest, NoHooks, Verdict};
pub use mode::{Mode, ModeSpec, ReverseTarget, UpstreamProxy};
pub use server::Proxy;
pub use sink::{FlowSink, Sinks};
