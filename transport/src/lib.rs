//! The unix-socket transport of the script protocol, used by both ends: the proxy's script
//! client (`flowtap-script-client`) connects with [`unix_channel`], the worker
//! (`flowtap-script-host`) serves accepted streams wrapped in [`UnixConn`].
//!
//! Where to start: [`UnixConn`], a unix stream registered with epoll for readability only (the
//! module documentation of `unix` says why).
//!
//! - `unix`: [`UnixConn`], the stream, with tonic's `Connected` for servers.
//! - `connector`: [`UnixConnector`], tonic's connector for `unix:PATH` addresses, and
//!   [`unix_channel`].

mod connector;
mod unix;

pub use connector::{UnixConnector, unix_channel};
pub use unix::UnixConn;
