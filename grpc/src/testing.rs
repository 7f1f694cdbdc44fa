//! Throw-away certificates for tests: two unrelated CAs and the leaves the security tests need,
//! minted at test time and written as PEM files. Not for production use.
//!
//! Failures here are bugs in the test, so these functions panic instead of returning errors.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM (PKCS#8) private key.
    pub key: PathBuf,
}

/// The files of a test PKI, all in one directory.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA servers and clients trust.
    pub ca: PathBuf,
    /// A second CA that nobody trusts.
    pub other_ca: PathBuf,
    /// A server certificate for `localhost` and `127.0.0.1`, signed by `ca`.
    pub server: CertFiles,
    /// The same names, signed by `ca`, but expired in 2021.
    pub expired_server: CertFiles,
    /// A client certificate signed by `ca`.
    pub client: CertFiles,
    /// A client certificate signed by `other_ca`.
    pub other_client: CertFiles,
}

impl TestPki {
    /// Mints everything into `dir`.
    ///
    /// # Panics
    /// If a key cannot be generated or a file cannot be written.
    pub fn mint(dir: &Path) -> TestPki {
        let (ca, ca_issuer) = mint_ca(dir, "ca", "flowtap test CA");
        let (other_ca, other_issuer) = mint_ca(dir, "other-ca", "flowtap unrelated test CA");
        let server_names = ["localhost", "127.0.0.1"];
        let server = leaf(
            dir,
            "server",
            &server_names,
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca_issuer,
            false,
        );
        let expired_server = leaf(
            dir,
            "expired-server",
            &server_names,
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca_issuer,
            true,
        );
        let client = leaf(
            dir,
            "client",
            &["flowtap-proxy"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca_issuer,
            false,
        );
        let other_client = leaf(
            dir,
            "other-client",
            &["flowtap-proxy"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &other_issuer,
            false,
        );
        TestPki {
            ca,
            other_ca,
            server,
            expired_server,
            client,
            other_client,
        }
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("writing a test PKI file");
    path
}

fn mint_ca(dir: &Path, name: &str, common_name: &str) -> (PathBuf, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("ring generates P-256 keys");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to parse");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signing a test CA");
    let path = write(dir, &format!("{name}.pem"), &cert.pem());
    (path, Issuer::new(params, key))
}

fn leaf(
    dir: &Path,
    name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'static, KeyPair>,
    expired: bool,
) -> CertFiles {
    let key = KeyPair::generate().expect("ring generates P-256 keys");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("valid test names");
    params
        .distinguished_name
        .push(DnType::CommonName, &names[0]);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, issuer).expect("signing a test leaf");
    CertFiles {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
    }
}
