//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading the CA, minting certificates or building
/// rustls configurations.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file or directory operation failed; `action` says what was being done.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "reading CA file".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file could not be decoded.
    #[error("decoding PEM in {}: {source}", path.display())]
    Pem {
        /// The file being read.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A CA file lacks its private key or its certificate.
    #[error("CA file {} has no {missing}", path.display())]
    Incomplete {
        /// The file being read.
        path: PathBuf,
        /// "private key" or "certificate".
        missing: &'static str,
    },
    /// The CA's private key has a format or algorithm we cannot sign with.
    #[error("unsupported CA private key in {}: {reason}", path.display())]
    UnsupportedKey {
        /// The file being read.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// A PEM file given as extra trusted roots holds no usable certificate.
    #[error("no usable CA certificate in {}", path.display())]
    NoRoots {
        /// The file being read.
        path: PathBuf,
    },
    /// The host name cannot be put in a certificate (empty, or not ASCII).
    #[error("cannot mint a certificate for host {host:?}: {reason}")]
    InvalidHost {
        /// The host as given.
        host: String,
        /// Why it was rejected.
        reason: String,
    },
    /// rcgen failed to generate a key or a certificate.
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected a key, certificate or configuration.
    #[error("building TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A certificate file (`--certs`, `client_certs`) cannot be used; `reason` says why.
    #[error("certificate file {}: {reason}", path.display())]
    CertFile {
        /// The file being read.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// A `--certs` value is not of the form `[DOMAIN=]FILE`.
    #[error("invalid certs option {0}")]
    CertSpec(String),
    /// A TLS version name or a pair of version bounds cannot be used.
    #[error("TLS versions: {0}")]
    TlsVersion(String),
    /// An RSA key size flowtap cannot use (see [`crate::keys::RSA_BITS`]).
    #[error(
        "RSA key size {0} is not supported: flowtap signs with ring, which takes RSA keys of \
         2048 to 4096 bits"
    )]
    KeySize(u32),
    /// Generating or encoding an RSA key failed.
    #[error("generating RSA key: {0}")]
    RsaKey(String),
    /// A DER certificate could not be parsed.
    #[error("parsing certificate: {0}")]
    Parse(String),
}
