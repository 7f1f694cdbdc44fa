//! Setup errors of the telemetry crate.

use std::net::SocketAddr;

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The metrics address could not be bound.
    #[error("binding the metrics listener on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The metrics server's thread or runtime could not be started.
    #[error("starting the metrics server: {0}")]
    Start(std::io::Error),
    /// A global tracing subscriber was set already.
    #[error("setting up logging: {0}")]
    Logging(String),
}
