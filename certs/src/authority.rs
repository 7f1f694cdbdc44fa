//! The certificate authority that intercepted clients trust, and the leaf certificates and
//! server configs it mints per host.
//!
//! The layout of the configuration directory follows mitmproxy (spec section 7.3) with the
//! basename `flowtap`:
//! - `flowtap-ca.pem`: private key and certificate, mode 0600. The file flowtap loads.
//! - `flowtap-ca-cert.pem`: the certificate only. Distribute this one.
//! - `flowtap-ca-cert.cer`: the same bytes, with the extension Android expects.
//!
//! By default a CA created by flowtap uses an **ECDSA P-256** key, and its leaves share one
//! P-256 key per process. With mitmproxy's `key_size`, the CA is created with an RSA key of
//! that size ([`CertificateAuthority::load_or_create_with`]) and leaves are served with an RSA
//! key of that size generated at start ([`CertificateAuthority::with_leaf_key`]). As in
//! mitmproxy, the key type only matters when the CA is created: an existing CA file is used
//! with whatever key it holds. An existing mitmproxy CA (RSA) can be used as is with
//! [`CertificateAuthority::load_mitmproxy`].

mod files;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{Issuer, KeyPair};
use rustls::{ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::CertificateDer;

use crate::cache::BoundedCache;
use crate::custom::CustomCerts;
use crate::keys::{DualKey, KeyType};
use crate::mint::{self, Host};
use crate::{CaError, VersionBounds};

/// File holding the CA private key and certificate, inside the configuration directory.
pub const CA_FILE: &str = "flowtap-ca.pem";
/// File holding the CA certificate only, to install in clients.
pub const CERT_PEM_FILE: &str = "flowtap-ca-cert.pem";
/// The same bytes as [`CERT_PEM_FILE`], with the `.cer` extension Android expects.
pub const CERT_CER_FILE: &str = "flowtap-ca-cert.cer";
/// mitmproxy's CA file name, looked for when [`CertificateAuthority::load_mitmproxy`] is
/// given a directory.
pub const MITMPROXY_CA_FILE: &str = "mitmproxy-ca.pem";
/// How many hosts (and host + ALPN combinations) stay cached; the oldest is evicted first.
pub const CACHE_CAPACITY: usize = 1000;

/// A loaded CA, ready to mint leaves. Cheap to share behind an `Arc`; every method takes
/// `&self` and is safe to call from many threads.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    ca_path: PathBuf,
    cert_pem_path: Option<PathBuf>,
    cert_cer_path: Option<PathBuf>,
    leaves: BoundedCache<LeafNames, CertificateDer<'static>>,
    configs: BoundedCache<(LeafNames, Vec<Vec<u8>>), Arc<ServerConfig>>,
    /// `--certs`: served instead of a minted leaf when one matches.
    custom: CustomCerts,
    /// `tls_version_client_min` / `_max`, as rustls versions.
    client_versions: Vec<&'static SupportedProtocolVersion>,
    /// The key every minted leaf is served with; None: the process-wide P-256 key.
    leaf_key: Option<Arc<DualKey>>,
}

/// What is served to clients besides minted leaves: mitmproxy's `certs` and
/// `tls_version_client_min` / `tls_version_client_max`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Certificates to serve instead of minted leaves, by name.
    pub certs: CustomCerts,
    /// The TLS versions clients may speak.
    pub versions: VersionBounds,
}

/// The names a certificate is served for, in mitmproxy's order: the first is the CN, all are
/// subjectAltNames. Also what `--certs` entries are looked up by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LeafNames {
    names: Vec<String>,
    organization: Option<String>,
}

impl LeafNames {
    /// A certificate for one host (an SNI value or a host the client connected to).
    pub fn host(host: &str) -> Self {
        Self::new(host, None, None)
    }

    /// The names mitmproxy gives a leaf: with `upstream` (the server's leaf, DER, when the
    /// server was connected first and `upstream_cert` is on) its common name, its DNS and IP
    /// subjectAltNames and its organization; then `asked` (the client's SNI, or the host it
    /// connected to); then `server`, the host of the server address. Duplicates are dropped
    /// (names compare case-insensitively). An upstream certificate that does not parse
    /// contributes nothing.
    pub fn new(asked: &str, server: Option<&str>, upstream: Option<&[u8]>) -> Self {
        let mut leaf = Self::default();
        if let Some(summary) = upstream.and_then(|der| crate::inspect(der).ok()) {
            leaf.push(summary.common_name.as_deref());
            for san in &summary.sans {
                match san {
                    crate::SubjectAltName::Dns(name) => leaf.push(Some(name)),
                    crate::SubjectAltName::Ip(ip) => leaf.push(Some(&ip.to_string())),
                }
            }
            leaf.organization = summary.organization;
        }
        leaf.push(Some(asked));
        leaf.push(server);
        leaf
    }

    fn push(&mut self, name: Option<&str>) {
        let Some(name) = name else { return };
        let name = name
            .trim()
            .trim_end_matches('.')
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !name.is_empty() && !self.names.contains(&name) {
            self.names.push(name);
        }
    }

    /// The names, CN first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The organization copied from the server's certificate, if any.
    pub fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("ca_path", &self.ca_path)
            .field("cached_leaves", &self.leaves.len())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads the CA from `confdir/flowtap-ca.pem`, creating it with an ECDSA P-256 key on
    /// first start. The same as [`load_or_create_with`](Self::load_or_create_with) and
    /// [`KeyType::EcdsaP256`].
    pub fn load_or_create(confdir: &Path) -> Result<Self, CaError> {
        Self::load_or_create_with(confdir, KeyType::EcdsaP256)
    }

    /// Loads the CA from `confdir/flowtap-ca.pem`, creating it with a `key` key on first
    /// start (mitmproxy's `key_size` makes it RSA). An existing CA is loaded as it is,
    /// whatever its key type.
    ///
    /// On first start `confdir` is created with mode 0700 if missing, the key file is written
    /// with mode 0600, and the certificate-only files are written next to it. Later
    /// starts rewrite the certificate-only files if they are missing or out of date. Fails if the directory or the
    /// files cannot be created, or if an existing CA file cannot be parsed; an unreadable CA
    /// is never replaced silently.
    pub fn load_or_create_with(confdir: &Path, key: KeyType) -> Result<Self, CaError> {
        files::ensure_private_dir(confdir)?;
        let ca_path = confdir.join(CA_FILE);
        if !ca_path.exists() {
            let created = create_ca_file(&ca_path, key)?;
            if created {
                tracing::info!(path = %ca_path.display(), key = %key, "created a new CA");
            }
        }
        let ca = Self::from_file(&ca_path)?;
        files::warn_if_shared(&ca_path);
        let cert_pem_path = confdir.join(CERT_PEM_FILE);
        let cert_cer_path = confdir.join(CERT_CER_FILE);
        files::sync_public_file(&cert_pem_path, ca.cert_pem.as_bytes())?;
        files::sync_public_file(&cert_cer_path, ca.cert_pem.as_bytes())?;
        Ok(Self {
            cert_pem_path: Some(cert_pem_path),
            cert_cer_path: Some(cert_cer_path),
            ..ca
        })
    }

    /// Uses an existing mitmproxy CA: `path` is `mitmproxy-ca.pem` (an RSA key as PKCS#1 or
    /// PKCS#8, plus the certificate) or the directory holding it. Nothing is written.
    ///
    /// Clients that already trust mitmproxy's CA then trust flowtap's leaves, which are signed
    /// with that RSA key (SHA-256). The certificate-only paths point at mitmproxy's
    /// `mitmproxy-ca-cert.pem` / `.cer` when they exist beside it.
    pub fn load_mitmproxy(path: &Path) -> Result<Self, CaError> {
        let file = if path.is_dir() {
            path.join(MITMPROXY_CA_FILE)
        } else {
            path.to_path_buf()
        };
        let ca = Self::from_file(&file)?;
        files::warn_if_shared(&file);
        let sibling = |name: &str| {
            let candidate = file.with_file_name(name);
            candidate.exists().then_some(candidate)
        };
        Ok(Self {
            cert_pem_path: sibling("mitmproxy-ca-cert.pem"),
            cert_cer_path: sibling("mitmproxy-ca-cert.cer"),
            ..ca
        })
    }

    /// Loads any PEM file holding a CA private key and its certificate.
    fn from_file(path: &Path) -> Result<Self, CaError> {
        let files::CaFile { key, cert } = files::read_ca_file(path)?;
        let issuer = Issuer::from_ca_cert_der(&cert, key)?;
        Ok(Self {
            issuer,
            cert_pem: mint::certificate_pem(&cert),
            cert_der: cert,
            ca_path: path.to_path_buf(),
            cert_pem_path: None,
            cert_cer_path: None,
            leaves: BoundedCache::new(CACHE_CAPACITY),
            configs: BoundedCache::new(CACHE_CAPACITY),
            custom: CustomCerts::default(),
            client_versions: rustls::DEFAULT_VERSIONS.to_vec(),
            leaf_key: None,
        })
    }

    /// This CA serving every minted leaf with one fresh key of type `key`, generated now (for
    /// RSA, this takes up to seconds). Without this call leaves share the process-wide ECDSA
    /// P-256 key. Leaves and configs minted before are dropped.
    pub fn with_leaf_key(self, key: KeyType) -> Result<Self, CaError> {
        let leaf_key = DualKey::generate(key)?;
        Ok(Self {
            leaf_key: Some(Arc::new(leaf_key)),
            leaves: BoundedCache::new(CACHE_CAPACITY),
            configs: BoundedCache::new(CACHE_CAPACITY),
            ..self
        })
    }

    /// The key pair minted leaves are served with.
    fn leaf_key(&self) -> Result<&DualKey, CaError> {
        match &self.leaf_key {
            Some(key) => Ok(key),
            None => mint::leaf_key(),
        }
    }

    /// This CA serving `options`: the `--certs` certificates where they match, and only the
    /// TLS versions within the client bounds. Fails when the bounds leave no version.
    pub fn with_serve_options(self, options: ServeOptions) -> Result<Self, CaError> {
        let client_versions = options.versions.rustls_versions()?;
        Ok(Self {
            custom: options.certs,
            client_versions,
            configs: BoundedCache::new(CACHE_CAPACITY),
            ..self
        })
    }

    /// The rustls server config to present to a client that asked for `host` (its SNI, or the
    /// target host without SNI), offering the `alpn` protocols in that order.
    ///
    /// The leaf (CN and SAN = host; an IP literal becomes an IP SAN) is signed on first use and
    /// cached with the config: later calls for the same host and ALPN return the same `Arc`
    /// without signing. Fails only for a host that cannot be put in a certificate.
    pub fn server_config(
        &self,
        host: &str,
        alpn: &[Vec<u8>],
    ) -> Result<Arc<ServerConfig>, CaError> {
        Host::parse(host)?;
        self.server_config_for(&LeafNames::host(host), alpn, &[])
    }

    /// The rustls server config to present to a client for `leaf`'s names, offering `alpn`:
    /// the first `--certs` certificate matching a name, else a leaf minted for all of them
    /// (names that cannot be put in a certificate are left out). `extra_chain`
    /// (`add_upstream_certs_to_client_chain`) is appended to the chain sent.
    ///
    /// Configs without an extra chain are cached per names and ALPN. Fails when no name can be
    /// put in a certificate.
    pub fn server_config_for(
        &self,
        leaf: &LeafNames,
        alpn: &[Vec<u8>],
        extra_chain: &[CertificateDer<'static>],
    ) -> Result<Arc<ServerConfig>, CaError> {
        let key = (leaf.clone(), alpn.to_vec());
        if extra_chain.is_empty()
            && let Some(config) = self.configs.get(&key)
        {
            return Ok(config);
        }
        let (mut chain, signing_key) = match self.custom.find(leaf.names()) {
            Some(custom) => (custom.cert.clone(), custom.key.clone()),
            None => (
                vec![self.mint(leaf)?, self.cert_der.clone()],
                self.leaf_key()?.rustls.clone(),
            ),
        };
        chain.extend(extra_chain.iter().cloned());
        let config = mint::server_config(chain, signing_key, alpn, &self.client_versions)?;
        if !extra_chain.is_empty() {
            return Ok(config);
        }
        Ok(self.configs.insert(key, config))
    }

    /// The leaf certificate presented for `host` (mitmproxy's `mitmcert`), minted and cached
    /// as for [`server_config`](Self::server_config).
    pub fn leaf_certificate(&self, host: &str) -> Result<CertificateDer<'static>, CaError> {
        Host::parse(host)?;
        self.mint(&LeafNames::host(host))
    }

    /// The minted leaf for `leaf`'s names, cached.
    fn mint(&self, leaf: &LeafNames) -> Result<CertificateDer<'static>, CaError> {
        if let Some(der) = self.leaves.get(leaf) {
            return Ok(der);
        }
        let hosts: Vec<Host> = leaf
            .names()
            .iter()
            .filter_map(|name| match Host::parse(name) {
                Ok(host) => Some(host),
                Err(e) => {
                    tracing::debug!("left out of the minted certificate: {e}");
                    None
                }
            })
            .collect();
        if hosts.is_empty() {
            return Err(CaError::InvalidHost {
                host: leaf.names().join(", "),
                reason: "no name can be put in a certificate".into(),
            });
        }
        let params = mint::leaf_params_with(&hosts, leaf.organization())?;
        let der = params.signed_by(&self.leaf_key()?.rcgen, &self.issuer)?;
        tracing::debug!(names = ?leaf.names(), "minted leaf certificate");
        Ok(self.leaves.insert(leaf.clone(), der.der().clone()))
    }

    /// The CA certificate, PEM encoded (what users install in their trust store).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER encoded.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The file the CA was loaded from (private key and certificate).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The certificate-only PEM file to distribute, if there is one.
    pub fn cert_pem_path(&self) -> Option<&Path> {
        self.cert_pem_path.as_deref()
    }

    /// The certificate-only `.cer` file (same bytes as the PEM), if there is one.
    pub fn cert_cer_path(&self) -> Option<&Path> {
        self.cert_cer_path.as_deref()
    }
}

/// Generates a CA with a `key` key and writes key (PKCS#8) + certificate to `path`. Returns
/// false if a concurrent process created the file first.
fn create_ca_file(path: &Path, key: KeyType) -> Result<bool, CaError> {
    let key = key.generate()?;
    let cert = mint::ca_params("flowtap")?.self_signed(&key)?;
    let contents = format!("{}{}", key.serialize_pem(), cert.pem());
    files::write_private_new(path, contents.as_bytes())
}
