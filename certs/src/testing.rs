//! Throw-away certificates for tests and benchmarks: not for production use.
//!
//! [`OriginCert`] stands in for a real HTTPS server's certificate: its own self-signed CA
//! (unrelated to flowtap's CA) and a leaf for the hosts the test origin answers to. Tests
//! start a TLS origin server with [`OriginCert::server_config`] and make the proxy trust it by
//! passing [`OriginCert::ca_path`] in [`UpstreamTls::extra_roots`](crate::UpstreamTls).
//!
//! Failures here are bugs in the test, so these functions panic instead of returning errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{Issuer, KeyPair};
use rustls::sign::SigningKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;

use crate::keys::{DualKey, KeyType};
use crate::mint::{self, Host};
use crate::provider;

/// A self-signed test CA and a leaf it signed for some hosts. The CA certificate is also
/// written to a temporary file, removed when this value is dropped.
pub struct OriginCert {
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    leaf_der: CertificateDer<'static>,
    leaf_key: Arc<dyn SigningKey>,
    ca_path: PathBuf,
}

impl std::fmt::Debug for OriginCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginCert")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl OriginCert {
    /// A new CA (`CN=flowtap test origin CA <unique id>`, so distinct instances never look
    /// like the same issuer) and a leaf whose SANs are `hosts` (DNS names or
    /// IP literals); the first host is also the CN.
    ///
    /// # Panics
    /// If `hosts` is empty or holds a name that cannot be put in a certificate, or if the
    /// temporary CA file cannot be written.
    pub fn new(hosts: &[&str]) -> OriginCert {
        assert!(!hosts.is_empty(), "OriginCert::new needs at least one host");
        let hosts: Vec<Host> = hosts
            .iter()
            .map(|h| Host::parse(h).expect("OriginCert::new: hosts must be DNS names or IPs"))
            .collect();
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("ring generates P-256 keys");
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let ca_params =
            mint::ca_params(&format!("flowtap test origin CA {id}")).expect("random serial");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signing a CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = DualKey::generate(KeyType::EcdsaP256).expect("ring generates P-256 keys");
        let leaf = mint::leaf_params(&hosts)
            .expect("random serial")
            .signed_by(&leaf_key.rcgen, &issuer)
            .expect("signing a leaf");
        let ca_pem = ca_cert.pem();
        OriginCert {
            ca_path: write_temp_ca(&id, &ca_pem),
            ca_der: ca_cert.der().clone(),
            ca_pem,
            leaf_der: leaf.der().clone(),
            leaf_key: leaf_key.rustls,
        }
    }

    /// The test CA certificate, PEM encoded.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The test CA certificate, DER encoded.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The leaf certificate the origin presents.
    pub fn leaf_der(&self) -> &CertificateDer<'static> {
        &self.leaf_der
    }

    /// A temporary PEM file holding the CA certificate; valid while `self` lives.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// A server config for a test origin: presents the leaf, offers `alpn`.
    pub fn server_config(&self, alpn: &[Vec<u8>]) -> Arc<ServerConfig> {
        self.server_config_versions(alpn, rustls::DEFAULT_VERSIONS)
    }

    /// A server config for a test origin that speaks only the TLS `versions` (say, an origin
    /// that only speaks TLS 1.3).
    pub fn server_config_versions(
        &self,
        alpn: &[Vec<u8>],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ServerConfig> {
        mint::server_config(
            vec![self.leaf_der.clone()],
            self.leaf_key.clone(),
            alpn,
            versions,
        )
        .expect("ring supports TLS 1.2 and 1.3")
    }

    /// A client config trusting only this test CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[Vec<u8>]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("a CA certificate we just generated parses");
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.to_vec();
        Arc::new(config)
    }
}

impl Drop for OriginCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_path);
    }
}

/// Numbers the instances of this process, for unique CA names and temp file names.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn write_temp_ca(id: &str, pem: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("flowtap-origin-ca-{id}.pem"));
    let mut file = std::fs::File::create(&path).expect("writing the test CA to the temp dir");
    file.write_all(pem.as_bytes())
        .expect("writing the test CA to the temp dir");
    path
}
