//! TLS client configs for the connection from flowtap to the real server.
//!
//! By default the server must present a certificate chaining to the system roots
//! (`/etc/ssl/certs/ca-certificates.crt` when present) or to the Mozilla roots bundled in
//! `webpki-roots`, plus any extra roots the user trusts (mitmproxy's
//! `ssl_verify_upstream_trusted_ca`) and the CA certificates in a directory
//! (`ssl_verify_upstream_trusted_confdir`). `insecure` is mitmproxy's `--ssl-insecure` (`-k`).
//! A client certificate (`client_certs`) is presented to servers that ask for one, and the TLS
//! versions offered stay within `tls_version_server_min` / `_max`.

mod insecure;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{CaError, provider};

/// Where Debian and its derivatives keep the system trust store as one PEM bundle.
pub const SYSTEM_ROOTS_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How to verify servers, and what to offer them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// Accept any server certificate (mitmproxy's `ssl_insecure`). Handshake signatures are
    /// still checked, so the connection is encrypted to whoever holds the presented key.
    pub insecure: bool,
    /// PEM files of CA certificates to trust in addition to the default roots.
    pub extra_roots: Vec<PathBuf>,
    /// A directory whose files hold CA certificates (PEM) to trust in addition to the default
    /// roots (mitmproxy's `ssl_verify_upstream_trusted_confdir`; OpenSSL's hashed links
    /// such as `/etc/ssl/certs` work too).
    pub trusted_dir: Option<PathBuf>,
    /// A PEM file with the certificate chain and private key to present when a server asks
    /// for a client certificate; see [`client_cert_for`].
    pub client_cert: Option<PathBuf>,
    /// The TLS versions to offer.
    pub versions: crate::VersionBounds,
    /// ALPN protocols to offer, in order of preference (e.g. `h2`, `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
}

/// The client certificate for a server named `server_name` under mitmproxy's `client_certs`:
/// the file itself when `client_certs` is a file, else `<client_certs>/<server_name>.pem` when
/// that file exists, else None (no certificate is offered).
pub fn client_cert_for(client_certs: &Path, server_name: &str) -> Option<PathBuf> {
    if client_certs.is_file() {
        return Some(client_certs.to_path_buf());
    }
    let candidate = client_certs.join(format!("{server_name}.pem"));
    // A server name with a path separator would leave the directory.
    (!server_name.contains('/') && candidate.is_file()).then_some(candidate)
}

/// The client config for `options`, built once per distinct options value and then shared.
///
/// Extra root files are read when a given options value is first seen; later changes to
/// those files need a new process. Fails if an extra root file cannot be read or holds no
/// usable certificate.
pub fn client_config(options: &UpstreamTls) -> Result<Arc<ClientConfig>, CaError> {
    static CONFIGS: OnceLock<Mutex<HashMap<UpstreamTls, Arc<ClientConfig>>>> = OnceLock::new();
    let configs = CONFIGS.get_or_init(Default::default);
    let cached = configs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(options)
        .cloned();
    if let Some(config) = cached {
        return Ok(config);
    }
    let config = Arc::new(build(options)?);
    let mut configs = configs.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(configs.entry(options.clone()).or_insert(config).clone())
}

fn build(options: &UpstreamTls) -> Result<ClientConfig, CaError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&options.versions.rustls_versions()?)?;
    let builder = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAnyCertificate::new()))
    } else {
        let mut roots = default_roots().clone();
        for path in &options.extra_roots {
            add_roots_from(&mut roots, path)?;
        }
        if let Some(dir) = &options.trusted_dir {
            add_roots_from_dir(&mut roots, dir)?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &options.client_cert {
        Some(path) => {
            let read = crate::KeyAndChain::read(path)?;
            // Checks that the key matches the certificate before a server sees it.
            read.certified(path)?;
            builder
                .with_client_auth_cert(read.chain, read.key)
                .map_err(|e| CaError::CertFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn.clone();
    Ok(config)
}

/// Adds the certificates of every file in `dir` (following links; files that hold no PEM
/// certificate, such as CRLs, are skipped). A directory with none is an error, since the user
/// asked for it to be trusted.
fn add_roots_from_dir(roots: &mut RootCertStore, dir: &Path) -> Result<(), CaError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CaError::Io {
        action: "reading trusted CA directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut added = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let certs = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok);
        added += roots.add_parsable_certificates(certs).0;
    }
    if added == 0 {
        return Err(CaError::NoRoots {
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// System roots plus webpki-roots, loaded once per process.
fn default_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Ok(bytes) = std::fs::read(SYSTEM_ROOTS_FILE) {
            let certs = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok);
            let (added, ignored) = roots.add_parsable_certificates(certs);
            tracing::debug!(
                added,
                ignored,
                "loaded system roots from {SYSTEM_ROOTS_FILE}"
            );
        }
        roots
    })
}

/// Adds every certificate of a PEM file to `roots`; a file with none is an error, since the
/// user asked for it to be trusted.
fn add_roots_from(roots: &mut RootCertStore, path: &Path) -> Result<(), CaError> {
    let bytes = std::fs::read(path).map_err(|source| CaError::Io {
        action: "reading trusted CA file",
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CaError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(CaError::NoRoots {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}
