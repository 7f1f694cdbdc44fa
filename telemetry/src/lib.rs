//! flowtap-telemetry: what flowtap's services tell an operator about themselves.
//!
//! Every binary (`flowtap`, `flow-store`, `script-host`) flattens [`MetricsArgs`] and
//! [`LogArgs`] into its command line. `--metrics HOST:PORT` starts a [`MetricsServer`] on its
//! own thread, serving `/metrics` (Prometheus text format 0.0.4), `/healthz` (200 while the
//! process runs) and `/readyz` (200 while the binary says it is [ready](set_ready), 503
//! otherwise). `--log-format json` makes [`init_logging`] write one JSON object per line.
//!
//! The libraries record into one process-wide registry through the functions of the modules
//! below. Recording is an atomic add on a handle resolved once (no lock, no allocation), so it
//! is cheap enough for the hook round trip (tens of microseconds). Each module's metrics appear
//! in `/metrics` once the module is first used, or once the binary calls its `register`.
//!
//! A reader starts at [`script`] (what the proxy's script client records), then [`server`].
//!
//! - [`script`]: hook calls by hook and outcome, their latency, failure-policy outcomes,
//!   worker sessions up (the proxy's side of the script protocol).
//! - [`proxy`]: client connections and responses by status class.
//! - [`sink`]: flows sent to and spooled for the flow store, and the spool's size.
//! - [`store`]: flows stored and how long their writes take.
//! - [`worker`]: sessions open in a script-host worker.
//! - [`server`]: the HTTP endpoint; [`readiness`]: what `/readyz` answers.
//! - [`logging`]: the tracing subscriber, text or JSON.
//! - [`args`]: the clap flags.
//! - [`testing`]: a strict parser of the text format, for the services' tests.

pub mod args;
mod error;
pub mod logging;
pub mod proxy;
pub mod readiness;
mod registry;
pub mod script;
pub mod server;
pub mod sink;
pub mod store;
pub mod testing;
pub mod worker;

pub use args::{LogArgs, MetricsArgs};
pub use error::TelemetryError;
pub use logging::{LogFormat, init_logging};
pub use readiness::{is_ready, set_ready};
pub use registry::{TEXT_CONTENT_TYPE, encode_text};
pub use server::{LISTENING_PHRASE, MetricsServer};
