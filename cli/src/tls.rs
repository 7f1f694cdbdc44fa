//! mitmdump's TLS options (`certs`, `cert_passphrase`, `client_certs`, `upstream_cert`,
//! `add_upstream_certs_to_client_chain`, `ssl_verify_upstream_trusted_confdir`, the four
//! `tls_version_*` bounds, `key_size`), parsed from `--set` and the `--certs` /
//! `--cert-passphrase` flags, and applied to the proxy's config and CA. docs/tls.md says what
//! each does and where flowtap differs.

use std::path::PathBuf;

use anyhow::{Context, bail};
use flowtap_certs::{CertSpec, CertificateAuthority, KeyType, TlsVersion, VersionBounds};
use flowtap_proto::v1::option_value::Kind;

use crate::options::{expand_tilde, parse_bool};

/// mitmproxy's default `key_size`: the RSA key size of the CA it creates. flowtap reports it
/// to scripts but, unless `key_size` is set, creates ECDSA P-256 keys (docs/tls.md).
pub(crate) const DEFAULT_KEY_SIZE: u32 = 2048;

/// The TLS options flowtap acts on, with mitmproxy's names and defaults.
#[derive(Clone, Debug)]
pub(crate) struct TlsOptions {
    /// `certs`: `[DOMAIN=]FILE` specs, served instead of minted leaves.
    pub(crate) certs: Vec<CertSpec>,
    /// `cert_passphrase`: accepted, but encrypted keys are refused (docs/tls.md).
    pub(crate) cert_passphrase: Option<String>,
    /// `client_certs`: a PEM file, or a directory of `<server name>.pem` files.
    pub(crate) client_certs: Option<PathBuf>,
    /// `upstream_cert` (default on).
    pub(crate) upstream_cert: bool,
    /// `add_upstream_certs_to_client_chain`.
    pub(crate) add_upstream_certs_to_client_chain: bool,
    /// `ssl_verify_upstream_trusted_confdir`.
    pub(crate) trusted_confdir: Option<PathBuf>,
    /// `tls_version_client_min` / `_max`.
    pub(crate) client_versions: VersionBounds,
    /// `tls_version_server_min` / `_max`.
    pub(crate) server_versions: VersionBounds,
    /// `key_size`, when set: the RSA key size of a CA created on this start and of the leaf
    /// key. Unset: ECDSA P-256 (docs/tls.md).
    pub(crate) key_size: Option<u32>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            certs: Vec::new(),
            cert_passphrase: None,
            client_certs: None,
            upstream_cert: true,
            add_upstream_certs_to_client_chain: false,
            trusted_confdir: None,
            client_versions: VersionBounds::default(),
            server_versions: VersionBounds::default(),
            key_size: None,
        }
    }
}

impl TlsOptions {
    /// Applies `--set name[=value]` when `name` is one of these options; None otherwise.
    pub(crate) fn set(&mut self, name: &str, value: Option<&str>) -> Option<anyhow::Result<()>> {
        let optional_path = |value: Option<&str>| {
            value
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(expand_tilde)
        };
        let result = match name {
            "certs" => self.add_cert(value),
            "cert_passphrase" => {
                self.cert_passphrase = value.filter(|v| !v.is_empty()).map(str::to_string);
                Ok(())
            }
            "client_certs" => {
                self.client_certs = optional_path(value);
                Ok(())
            }
            "ssl_verify_upstream_trusted_confdir" => {
                self.trusted_confdir = optional_path(value);
                Ok(())
            }
            "upstream_cert" => {
                parse_bool(name, value, self.upstream_cert).map(|v| self.upstream_cert = v)
            }
            "add_upstream_certs_to_client_chain" => {
                parse_bool(name, value, self.add_upstream_certs_to_client_chain)
                    .map(|v| self.add_upstream_certs_to_client_chain = v)
            }
            "tls_version_client_min" => version(name, value).map(|v| self.client_versions.min = v),
            "tls_version_client_max" => version(name, value).map(|v| self.client_versions.max = v),
            "tls_version_server_min" => version(name, value).map(|v| self.server_versions.min = v),
            "tls_version_server_max" => version(name, value).map(|v| self.server_versions.max = v),
            "key_size" => key_size(value).map(|bits| self.key_size = Some(bits)),
            _ => return None,
        };
        Some(result)
    }

    /// `--set certs=SPEC` adds one; `--set certs` empties the list (mitmproxy's sequences).
    fn add_cert(&mut self, value: Option<&str>) -> anyhow::Result<()> {
        let Some(spec) = value else {
            self.certs.clear();
            return Ok(());
        };
        let mut spec: CertSpec = spec.parse()?;
        spec.path = expand_tilde(&spec.path.to_string_lossy());
        self.certs.push(spec);
        Ok(())
    }

    /// Checks what can be checked before the proxy starts: version bounds that leave no
    /// version, a trusted directory that is none, a client certificate path that does not
    /// exist.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        for (side, bounds) in self.sides() {
            bounds.rustls_versions().with_context(|| {
                format!(
                    "tls_version_{side}_min={}, tls_version_{side}_max={}",
                    bounds.min, bounds.max
                )
            })?;
        }
        if let Some(dir) = &self.trusted_confdir
            && !dir.is_dir()
        {
            bail!(
                "ssl_verify_upstream_trusted_confdir: {} is not a directory",
                dir.display()
            );
        }
        if let Some(path) = &self.client_certs
            && !path.exists()
        {
            bail!("client_certs: {} does not exist", path.display());
        }
        // A single client certificate file is checked now; a directory's files when a server
        // first needs them (their errors fail that server's handshake).
        if let Some(path) = self.client_certs.as_deref().filter(|p| p.is_file()) {
            flowtap_certs::KeyAndChain::read(path)
                .and_then(|read| read.certified(path).map(drop))
                .context("client_certs")?;
        }
        Ok(())
    }

    /// Logs what is accepted but not honoured: minimum versions older than TLS 1.2.
    pub(crate) fn warn(&self) {
        for (side, bounds) in self.sides() {
            if let Some(warning) = bounds.warning(&format!("tls_version_{side}_min")) {
                tracing::warn!("{warning}");
            }
        }
    }

    /// The key a CA created on this start gets: RSA of `key_size` bits when it is set, else
    /// ECDSA P-256.
    pub(crate) fn ca_key(&self) -> KeyType {
        self.key_size
            .map_or(KeyType::EcdsaP256, |bits| KeyType::Rsa { bits })
    }

    /// `ca` serving its leaves with a fresh RSA key of `key_size` bits when it is set
    /// (generated now); unchanged otherwise (leaves share the process's P-256 key).
    pub(crate) fn with_leaf_key(
        &self,
        ca: CertificateAuthority,
    ) -> anyhow::Result<CertificateAuthority> {
        let Some(bits) = self.key_size else {
            return Ok(ca);
        };
        ca.with_leaf_key(KeyType::Rsa { bits })
            .with_context(|| format!("generating the RSA {bits} leaf key (key_size)"))
    }

    fn sides(&self) -> [(&'static str, VersionBounds); 2] {
        [
            ("client", self.client_versions),
            ("server", self.server_versions),
        ]
    }

    /// What is served to clients: the `--certs` certificates and the client version bounds.
    pub(crate) fn serve_options(&self) -> anyhow::Result<flowtap_certs::ServeOptions> {
        let certs = flowtap_certs::CustomCerts::load(&self.certs).context("loading --certs")?;
        Ok(flowtap_certs::ServeOptions {
            certs,
            versions: self.client_versions,
        })
    }

    /// The values scripts see in `ctx.options`.
    pub(crate) fn for_scripts(&self) -> Vec<(&'static str, Kind)> {
        let path = |p: &Option<PathBuf>| match p {
            Some(p) => Kind::Text(p.to_string_lossy().into_owned()),
            None => Kind::Null(true),
        };
        let text = |v: TlsVersion| Kind::Text(v.name().to_string());
        let certs = self
            .certs
            .iter()
            .map(|spec| format!("{}={}", spec.domain, spec.path.display()))
            .collect();
        vec![
            (
                "certs",
                Kind::List(flowtap_proto::v1::StringList { items: certs }),
            ),
            ("client_certs", path(&self.client_certs)),
            ("upstream_cert", Kind::Bool(self.upstream_cert)),
            (
                "add_upstream_certs_to_client_chain",
                Kind::Bool(self.add_upstream_certs_to_client_chain),
            ),
            (
                "ssl_verify_upstream_trusted_confdir",
                path(&self.trusted_confdir),
            ),
            ("tls_version_client_min", text(self.client_versions.min)),
            ("tls_version_client_max", text(self.client_versions.max)),
            ("tls_version_server_min", text(self.server_versions.min)),
            ("tls_version_server_max", text(self.server_versions.max)),
            (
                "key_size",
                Kind::Int(i64::from(self.key_size.unwrap_or(DEFAULT_KEY_SIZE))),
            ),
        ]
    }
}

/// A `key_size` value: an integer number of bits that flowtap can make an RSA key of.
fn key_size(value: Option<&str>) -> anyhow::Result<u32> {
    let text = value.unwrap_or_default().trim();
    let bits = text
        .parse::<u32>()
        .with_context(|| format!("option key_size: not a key size in bits: {text:?}"))?;
    KeyType::rsa(bits).with_context(|| format!("option key_size={bits}"))?;
    Ok(bits)
}

fn version(name: &str, value: Option<&str>) -> anyhow::Result<TlsVersion> {
    let value = value.with_context(|| format!("option {name} needs a value"))?;
    value
        .parse()
        .with_context(|| format!("option {name}: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_parse_with_mitmproxys_names() {
        let mut o = TlsOptions::default();
        assert!(o.upstream_cert);
        for spec in [
            ("certs", Some("*.example.com=/tmp/example.pem")),
            ("certs", Some("/tmp/default.pem")),
            ("upstream_cert", Some("false")),
            ("tls_version_client_min", Some("TLS1_3")),
            ("tls_version_server_max", Some("TLS1_2")),
            ("key_size", Some("4096")),
            ("client_certs", Some("/tmp/client.pem")),
        ] {
            o.set(spec.0, spec.1).expect("a TLS option").expect("valid");
        }
        assert_eq!(o.certs.len(), 2);
        assert_eq!(o.certs[0].domain, "*.example.com");
        assert_eq!(o.certs[1].domain, "*");
        assert!(!o.upstream_cert);
        assert_eq!(o.client_versions.min, TlsVersion::Tls1_3);
        assert_eq!(o.server_versions.max, TlsVersion::Tls1_2);
        assert_eq!(o.key_size, Some(4096));
        assert_eq!(o.ca_key(), KeyType::Rsa { bits: 4096 });
        assert_eq!(TlsOptions::default().ca_key(), KeyType::EcdsaP256);
        for bad in ["100", "8192", "-1", ""] {
            let err = o
                .set("key_size", Some(bad))
                .expect("a TLS option")
                .expect_err(bad);
            assert!(format!("{err:#}").contains("key_size"), "{err:#}");
        }
        assert_eq!(o.key_size, Some(4096), "a bad value changes nothing");
        assert!(
            o.set("tls_version_server_min", Some("TLS9"))
                .expect("a TLS option")
                .is_err()
        );
        assert!(
            o.set("key_size", Some("big"))
                .expect("a TLS option")
                .is_err()
        );
        assert!(o.set("flow_detail", Some("1")).is_none());
        o.set("certs", None).expect("a TLS option").expect("valid");
        assert!(o.certs.is_empty());
    }
}
