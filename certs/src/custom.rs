//! Certificates the user gives instead of minted leaves (mitmproxy's `certs` option,
//! `--certs [DOMAIN=]FILE`), and the PEM files of certificate chain plus private key they and
//! `client_certs` are read from.
//!
//! Lookup follows mitmproxy's certificate store: an entry answers to the DOMAIN of its spec
//! (`*` when none was given), to its leaf's common name and to every DNS or IP name of its
//! subjectAltNames. A name asked for also matches the wildcard forms of its parents
//! (`www.example.com` matches `*.example.com` and `*.com`); `*` alone matches everything, but
//! only after every more specific name was tried. A later entry for the same name wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{CaError, provider};

/// One `--certs` value: `[DOMAIN=]FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// The name (or wildcard pattern) the certificate is served for; `*` when not given.
    pub domain: String,
    /// The PEM file holding the certificate chain (leaf first) and its private key.
    pub path: PathBuf,
}

impl FromStr for CertSpec {
    type Err = CaError;

    /// Splits at the first `=`, as mitmproxy does; without one the domain is `*`.
    fn from_str(spec: &str) -> Result<Self, CaError> {
        let (domain, path) = match spec.split_once('=') {
            Some((domain, path)) => (domain.trim(), path),
            None => ("*", spec),
        };
        if domain.is_empty() || path.is_empty() {
            return Err(CaError::CertSpec(format!(
                "{spec:?}: expected [DOMAIN=]FILE, e.g. *.example.com=example.pem"
            )));
        }
        Ok(Self {
            domain: domain.to_ascii_lowercase(),
            path: PathBuf::from(path),
        })
    }
}

/// A certificate chain and the private key of its leaf, read from one PEM file.
#[derive(Debug)]
pub struct KeyAndChain {
    /// The certificates in file order; the first is the leaf.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PrivateKeyDer<'static>,
}

impl KeyAndChain {
    /// Reads `path`. Fails when the file cannot be read, holds no certificate or no private
    /// key, or its key is encrypted (flowtap cannot decrypt keys; mitmproxy's
    /// `cert_passphrase` is for that).
    pub fn read(path: &Path) -> Result<Self, CaError> {
        let bad = |reason: String| CaError::CertFile {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|source| CaError::Io {
            action: "reading certificate file",
            path: path.to_path_buf(),
            source,
        })?;
        if is_encrypted(&bytes) {
            return Err(bad(
                "the private key is encrypted, and flowtap cannot decrypt keys (cert_passphrase \
                 is not supported); decrypt it first: openssl pkey -in FILE -out PLAIN.pem, \
                 then append the certificates"
                    .into(),
            ));
        }
        let chain = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("bad PEM: {e}")))?;
        if chain.is_empty() {
            return Err(bad("no certificate (BEGIN CERTIFICATE) in the file".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&bytes)
            .map_err(|e| bad(format!("no usable private key in the file: {e}")))?;
        Ok(Self { chain, key })
    }

    /// The chain and a signing key for it, checked to belong together.
    pub fn certified(&self, path: &Path) -> Result<CertifiedKey, CaError> {
        let bad = |reason: String| CaError::CertFile {
            path: path.to_path_buf(),
            reason,
        };
        let key = provider()
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|e| bad(format!("unsupported private key: {e}")))?;
        let certified = CertifiedKey::new(self.chain.clone(), key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(certified)
            }
            Err(rustls::Error::InconsistentKeys(_)) => Err(bad(
                "the private key does not belong to the first certificate".into(),
            )),
            Err(e) => Err(bad(format!("the first certificate: {e}"))),
        }
    }
}

/// An encrypted PKCS#8 key, or a traditional OpenSSL key with `Proc-Type: 4,ENCRYPTED`.
fn is_encrypted(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

/// The certificates given with `--certs`, by the names they answer to.
#[derive(Debug, Clone, Default)]
pub struct CustomCerts {
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl CustomCerts {
    /// Loads every spec in order (a later one wins a name both claim). Fails on the first
    /// file that cannot be used, naming it.
    pub fn load(specs: &[CertSpec]) -> Result<Self, CaError> {
        let mut certs = Self::default();
        for spec in specs {
            let read = KeyAndChain::read(&spec.path)?;
            let certified = Arc::new(read.certified(&spec.path)?);
            let leaf = crate::inspect(&read.chain[0]).map_err(|e| CaError::CertFile {
                path: spec.path.clone(),
                reason: e.to_string(),
            })?;
            if leaf.is_ca {
                tracing::warn!(
                    "{} is a certificate authority, not a leaf certificate: clients get it as \
                     the server's certificate (is this the file you meant?)",
                    spec.path.display()
                );
            }
            let own_names = leaf
                .common_name
                .iter()
                .cloned()
                .chain(leaf.sans.iter().map(|san| match san {
                    crate::SubjectAltName::Dns(name) => name.clone(),
                    crate::SubjectAltName::Ip(ip) => ip.to_string(),
                }));
            for name in own_names.chain(std::iter::once(spec.domain.clone())) {
                certs
                    .by_name
                    .insert(name.to_ascii_lowercase(), certified.clone());
            }
        }
        Ok(certs)
    }

    /// No certificate was given.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The certificate for the first of `names` (in order, each with its wildcard forms) that
    /// one answers to, else the `*` one, else None.
    pub fn find(&self, names: &[String]) -> Option<Arc<CertifiedKey>> {
        if self.by_name.is_empty() {
            return None;
        }
        names
            .iter()
            .flat_map(|name| asterisk_forms(name))
            .chain(std::iter::once("*".to_string()))
            .find_map(|key| self.by_name.get(&key).cloned())
    }
}

/// `www.example.com` → `www.example.com`, `*.example.com`, `*.com` (not `*` alone, which is
/// tried last). An IP address is only itself.
pub(crate) fn asterisk_forms(name: &str) -> Vec<String> {
    let name = name.to_ascii_lowercase();
    if name.parse::<std::net::IpAddr>().is_ok() {
        return vec![name];
    }
    let parts: Vec<&str> = name.split('.').collect();
    let mut forms = vec![name.clone()];
    forms.extend((1..parts.len()).map(|i| format!("*.{}", parts[i..].join("."))));
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_at_the_first_equals_sign() {
        let plain: CertSpec = "cert.pem".parse().expect("spec");
        assert_eq!(plain.domain, "*");
        assert_eq!(plain.path, PathBuf::from("cert.pem"));
        let named: CertSpec = "*.Example.com=/tmp/a=b.pem".parse().expect("spec");
        assert_eq!(named.domain, "*.example.com");
        assert_eq!(named.path, PathBuf::from("/tmp/a=b.pem"));
        assert!("=cert.pem".parse::<CertSpec>().is_err());
        assert!("example.com=".parse::<CertSpec>().is_err());
        assert!("".parse::<CertSpec>().is_err());
    }

    #[test]
    fn asterisk_forms_walk_up_the_parents() {
        assert_eq!(
            asterisk_forms("WWW.example.com"),
            ["www.example.com", "*.example.com", "*.com"]
        );
        assert_eq!(asterisk_forms("localhost"), ["localhost"]);
        assert_eq!(asterisk_forms("127.0.0.1"), ["127.0.0.1"]);
        assert_eq!(asterisk_forms("::1"), ["::1"]);
    }

    fn store(entries: &[(&str, &str)]) -> (CustomCerts, HashMap<String, Arc<CertifiedKey>>) {
        // A fake signing key is enough to tell entries apart: lookups never sign.
        let mut certs = CustomCerts::default();
        let mut tags = HashMap::new();
        for (name, tag) in entries {
            let entry = tags
                .entry(tag.to_string())
                .or_insert_with(|| {
                    let key = crate::keys::DualKey::generate(crate::KeyType::EcdsaP256)
                        .expect("key")
                        .rustls;
                    Arc::new(CertifiedKey::new(Vec::new(), key))
                })
                .clone();
            certs.by_name.insert(name.to_string(), entry);
        }
        (certs, tags)
    }

    fn found(
        certs: &CustomCerts,
        tags: &HashMap<String, Arc<CertifiedKey>>,
        names: &[&str],
    ) -> Option<String> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let hit = certs.find(&names)?;
        tags.iter()
            .find(|(_, entry)| Arc::ptr_eq(entry, &hit))
            .map(|(tag, _)| tag.clone())
    }

    #[test]
    fn wildcards_match_as_in_mitmproxy() {
        let (certs, tags) = store(&[
            ("*.example.com", "wild"),
            ("api.example.com", "api"),
            ("10.0.0.1", "ip"),
        ]);
        assert_eq!(
            found(&certs, &tags, &["api.example.com"]).as_deref(),
            Some("api")
        );
        assert_eq!(
            found(&certs, &tags, &["www.example.com"]).as_deref(),
            Some("wild")
        );
        assert_eq!(
            found(&certs, &tags, &["a.b.example.com"]).as_deref(),
            Some("wild")
        );
        // The bare domain is not covered by its wildcard.
        assert_eq!(found(&certs, &tags, &["example.com"]), None);
        assert_eq!(found(&certs, &tags, &["10.0.0.1"]).as_deref(), Some("ip"));
        assert_eq!(found(&certs, &tags, &["other.org"]), None);
        // Names are tried in order: the first one that matches anything wins.
        assert_eq!(
            found(&certs, &tags, &["www.example.com", "api.example.com"]).as_deref(),
            Some("wild")
        );
    }

    #[test]
    fn star_matches_everything_but_only_last() {
        let (certs, tags) = store(&[("*", "default"), ("*.example.com", "wild")]);
        assert_eq!(
            found(&certs, &tags, &["other.org"]).as_deref(),
            Some("default")
        );
        assert_eq!(
            found(&certs, &tags, &["127.0.0.1"]).as_deref(),
            Some("default")
        );
        assert_eq!(
            found(&certs, &tags, &["other.org", "www.example.com"]).as_deref(),
            Some("wild")
        );
        assert!(CustomCerts::default().find(&["x".into()]).is_none());
    }
}
