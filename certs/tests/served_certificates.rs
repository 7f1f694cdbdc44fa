//! What the CA serves besides per-host leaves: the names mitmproxy gives a leaf under
//! `upstream_cert`, `--certs` files read from disk (chain, key, wildcard domains) and the
//! errors for files that cannot be used.

use std::path::Path;

use flowtap_certs::testing::OriginCert;
use flowtap_certs::{
    CaError, CertSpec, CertificateAuthority, CustomCerts, LeafNames, ServeOptions, inspect,
};
use rcgen::{CertificateParams, KeyPair};

/// A self-signed leaf for `names` written with its key to `path`; returns its DER.
fn write_self_signed(path: &Path, names: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate().expect("P-256 key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("params")
        .self_signed(&key)
        .expect("self-signed");
    std::fs::write(path, format!("{}{}", cert.pem(), key.serialize_pem())).expect("write");
    cert.der().to_vec()
}

#[test]
fn leaf_names_follow_mitmproxys_order() {
    let origin = OriginCert::new(&["Up.example", "alt.example", "10.1.2.3"]);
    let names = LeafNames::new("asked.example", Some("10.9.9.9"), Some(origin.leaf_der()));
    assert_eq!(
        names.names(),
        [
            "up.example",
            "alt.example",
            "10.1.2.3",
            "asked.example",
            "10.9.9.9"
        ]
    );
    let plain = LeafNames::new("Asked.example.", Some("asked.example"), None);
    assert_eq!(plain.names(), ["asked.example"]);
    // A server certificate that does not parse adds nothing.
    let broken = LeafNames::new("asked.example", None, Some(b"not DER"));
    assert_eq!(broken.names(), ["asked.example"]);
}

#[test]
fn minted_leaves_carry_every_name_and_the_first_is_the_cn() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(tmp.path()).expect("CA");
    let origin = OriginCert::new(&["up.example", "extra.example"]);
    let names = LeafNames::new("asked.example", None, Some(origin.leaf_der()));
    ca.server_config_for(&names, &[], &[]).expect("config");
    let again = ca
        .server_config_for(&names, &[], &[])
        .expect("cached config");
    assert!(std::sync::Arc::strong_count(&again) >= 2, "cached");
    let leaf = ca
        .leaf_certificate("asked.example")
        .expect("single-name leaf");
    assert_eq!(
        inspect(&leaf).expect("parses").dns_names(),
        ["asked.example"]
    );
}

#[test]
fn certs_files_are_served_by_domain_cn_and_san() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wildcard = tmp.path().join("wildcard.pem");
    let wildcard_der = write_self_signed(&wildcard, &["own-name.example"]);
    let specs: Vec<CertSpec> = [format!("*.wild.example={}", wildcard.display())]
        .iter()
        .map(|s| s.parse().expect("spec"))
        .collect();
    let certs = CustomCerts::load(&specs).expect("load");
    for name in ["a.wild.example", "b.c.wild.example", "own-name.example"] {
        let found = certs.find(&[name.to_string()]).expect(name);
        assert_eq!(found.cert[0].as_ref(), &wildcard_der[..], "{name}");
    }
    assert!(certs.find(&["wild.example".into()]).is_none());

    let ca = CertificateAuthority::load_or_create(&tmp.path().join("ca"))
        .expect("CA")
        .with_serve_options(ServeOptions {
            certs,
            ..ServeOptions::default()
        })
        .expect("serve options");
    ca.server_config_for(&LeafNames::host("x.wild.example"), &[], &[])
        .expect("a config from the file");
}

#[test]
fn unusable_certs_files_are_errors_naming_the_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a.pem");
    write_self_signed(&a, &["a.example"]);
    let b = tmp.path().join("b.pem");
    write_self_signed(&b, &["b.example"]);
    let text = |p: &Path| std::fs::read_to_string(p).expect("read");
    let cert_of = |p: &Path| {
        let t = text(p);
        t[..t.find("-----BEGIN PRIVATE KEY").expect("key")].to_string()
    };
    let key_of = |p: &Path| {
        let t = text(p);
        t[t.find("-----BEGIN PRIVATE KEY").expect("key")..].to_string()
    };
    let load = |name: &str, contents: String| {
        let path = tmp.path().join(name);
        std::fs::write(&path, contents).expect("write");
        let spec: CertSpec = path.display().to_string().parse().expect("spec");
        CustomCerts::load(&[spec]).expect_err(name).to_string()
    };
    let mismatch = load("mismatch.pem", format!("{}{}", cert_of(&a), key_of(&b)));
    assert!(mismatch.contains("does not belong"), "{mismatch}");
    let no_key = load("nokey.pem", cert_of(&a));
    assert!(no_key.contains("no usable private key"), "{no_key}");
    let no_cert = load("nocert.pem", key_of(&a));
    assert!(no_cert.contains("no certificate"), "{no_cert}");
    let encrypted = load(
        "encrypted.pem",
        format!(
            "{}-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            cert_of(&a)
        ),
    );
    assert!(encrypted.contains("encrypted"), "{encrypted}");
    let missing: CertSpec = "/nonexistent/flowtap.pem".parse().expect("spec");
    assert!(matches!(
        CustomCerts::load(&[missing]),
        Err(CaError::Io { .. })
    ));
}
