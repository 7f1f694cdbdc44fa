//! What every flowtap gRPC server and client shares: TLS (rustls with ring) with optional client
//! certificates, a bearer token, and errors that name their cause.
//!
//! flow-store and script-host serve gRPC; `flowtap` dials them (workers, the archive, the
//! `flowtap flows` subcommands). Each binary flattens [`ServerArgs`] or [`ClientArgs`] into its
//! command line, turns them into a [`ServerConfig`] or [`ClientConfig`] (which reads the files),
//! and passes that down to the library that serves or dials:
//!
//! - a server calls [`ServerConfig::check_listen`] before binding, then
//!   [`ServerConfig::apply`] to its `tonic::transport::Server` builder: TLS, client
//!   certificates and the token check ([`TokenLayer`]; `grpc.health.v1.Health` needs no token);
//! - a client calls [`ClientConfig::dial`] for an address, sets its own endpoint options with
//!   [`client::Dial::map_endpoint`], and connects: the [`Channel`] adds the token to each call.
//!   TLS is done by tokio-rustls in `client::dial`, which waits for the server's first bytes so
//!   that a client certificate refused after the TLS 1.3 handshake fails the connect by name.
//!
//! Errors: setup problems (unreadable files, a refused listen address) are [`GrpcError`];
//! connection and call failures are explained by [`describe`] and [`describe_status`], which
//! walk the error's sources and say what happened in words ("the server's certificate has
//! expired", "the server requires a client certificate").
//!
//! Modules: [`server`] (flags, config, TLS), [`token`] (the bearer token both ways),
//! [`client`] (flags, config, endpoints), [`cause`] (error text), [`testing`] (certificates
//! minted for tests).

pub mod cause;
pub mod client;
pub mod server;
pub mod testing;
pub mod token;

pub use cause::{describe, describe_status};
pub use client::{Channel, ClientArgs, ClientConfig};
pub use server::{ServerArgs, ServerConfig};
pub use token::{BearerToken, TokenLayer};

use std::path::PathBuf;

/// A security setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// A certificate, key, CA or token file could not be read.
    #[error("reading {what} {}: {source}", path.display())]
    Read {
        /// What the file is for, e.g. "--tls-cert".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file holds no usable content (an empty token, a PEM file without a certificate).
    #[error("{what} {}: {reason}", path.display())]
    Invalid {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// PEM content that rustls cannot use (a malformed certificate or key, a key that does
    /// not match).
    #[error("{what}: {reason}")]
    Pem {
        /// What the content is for, e.g. "--grpc-cert".
        what: &'static str,
        /// What rustls said.
        reason: String,
    },
    /// A server would accept unauthenticated connections from other machines.
    #[error(
        "refusing to listen on {address} without TLS client certificates or a token: anyone who \
         can reach it could use it. Give --tls-cert/--tls-key with --tls-client-ca, or \
         --token-file, or listen on a loopback address; --insecure-listen allows it anyway"
    )]
    InsecureListen {
        /// The address asked for.
        address: String,
    },
    /// An address to dial does not parse, or its scheme contradicts the settings.
    #[error("gRPC address {address}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// tonic refused the TLS settings (a key it cannot parse, for example).
    #[error("TLS settings: {}", describe(.0))]
    Tls(#[from] tonic::transport::Error),
}

/// Reads a file named by a flag, naming the flag on failure.
pub(crate) fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, GrpcError> {
    std::fs::read(path).map_err(|source| GrpcError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Reads a PEM file and checks that it holds the expected kind of block, so that a key given
/// as a certificate is reported at start-up rather than at the first handshake.
pub(crate) fn read_pem(
    what: &'static str,
    path: &std::path::Path,
    expected: &[&str],
) -> Result<Vec<u8>, GrpcError> {
    let pem = read(what, path)?;
    let text = String::from_utf8_lossy(&pem);
    if !expected
        .iter()
        .any(|label| text.contains(&format!("-----BEGIN {label}-----")))
    {
        return Err(GrpcError::Invalid {
            what,
            path: path.to_owned(),
            reason: format!("no PEM block of type {}", expected.join(" or ")),
        });
    }
    Ok(pem)
}
