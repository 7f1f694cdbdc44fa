//! Certificates for flowtap: the CA that intercepted clients trust, the leaf certificates
//! minted for each host, and the rustls configurations for both sides of a proxied connection.
//!
//! `proxy-core` owns one [`CertificateAuthority`] for the life of the process. When a client
//! opens a TLS connection it asks [`CertificateAuthority::server_config`] for the configuration
//! to present for the SNI (or the target host), and [`upstream::client_config`] for the
//! configuration used to connect to the real server. Tests and benchmarks start real TLS origin
//! servers with [`testing::OriginCert`].
//!
//! Start reading at [`authority`]: it follows mitmproxy's layout of the configuration directory
//! (section 7.3 of the mitmproxy spec), with `flowtap` as the basename.
//!
//! Modules:
//! - [`authority`]: load or create the CA, mint leaves, cache server configs.
//! - [`upstream`]: client configs for connecting to servers (roots, `--ssl-insecure`, trusted
//!   CA files and directories, client certificates).
//! - [`custom`]: certificates the user serves instead of minted leaves (`--certs`).
//! - [`versions`]: TLS version bounds with mitmproxy's names.
//! - [`testing`]: throw-away certificates for test origin servers.
//! - [`inspect`](mod@inspect): a readable summary of a DER certificate, for tests and logs.
//!
//! All cryptography goes through ring (rustls' ring provider and rcgen's ring backend);
//! nothing here pulls in aws-lc or OpenSSL.

pub mod authority;
mod cache;
pub mod custom;
mod error;
pub mod inspect;
mod mint;
pub mod testing;
pub mod upstream;
pub mod versions;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use authority::{CertificateAuthority, LeafNames, ServeOptions};
pub use custom::{CertSpec, CustomCerts, KeyAndChain};
pub use error::CaError;
pub use inspect::{CertSummary, SubjectAltName, inspect};
pub use upstream::{UpstreamTls, client_cert_for, client_config};
pub use versions::{TlsVersion, VersionBounds};

/// The ring crypto provider, shared by every config this crate builds.
///
/// Configs are built with an explicit provider so that they work whether or not the process
/// installed a default one.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
