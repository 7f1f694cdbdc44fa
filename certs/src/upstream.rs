//! TLS client configs for the connection from flowtap to the real server.
//!
//! By default the server must present a certificate chaining to the system roots
//! (`/etc/ssl/certs/ca-certificates.crt` when present) or to the Mozilla roots bundled in
//! `webpki-roots`, plus any extra roots the user trusts (mitmproxy's
//! `ssl_verify_upstream_trusted_ca`). `insecure` is mitmproxy's `--ssl-insecure` (`-k`).

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
    /// ALPN protocols to offer, in order of preference (e.g. `h2`, `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
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
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let mut config = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAnyCertificate::new()))
            .with_no_client_auth()
    } else {
        let mut roots = default_roots().clone();
        for path in &options.extra_roots {
            add_roots_from(&mut roots, path)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = options.alpn.clone();
    Ok(config)
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
