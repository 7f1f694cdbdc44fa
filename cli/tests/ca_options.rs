//! Where the CA comes from: created in `--set confdir=DIR` on first start, or an existing
//! mitmproxy CA with `--use-mitmproxy-ca PATH`. Either way curl trusting that CA gets through
//! to an HTTPS origin.

#![allow(missing_docs)]

mod support;

use std::os::unix::fs::PermissionsExt;

use flowtap_certs::testing::OriginCert;
use support::origin::Origin;
use support::{Flowtap, curl, openssl_mitmproxy_ca};

const HELLO_TLS: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello tls";

fn https_through(
    proxy: std::net::SocketAddr,
    origin: &Origin,
    cacert: &std::path::Path,
) -> support::Curl {
    let url = format!("https://localhost:{}/secure", origin.port());
    curl(&[
        "-x",
        &format!("http://{proxy}"),
        "--cacert",
        cacert.to_str().expect("path"),
        "-v",
        &url,
    ])
}

#[test]
fn confdir_gets_a_ca_that_curl_can_trust() {
    let cert = OriginCert::new(&["localhost"]);
    let origin = Origin::tls(&cert, HELLO_TLS);
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (flowtap, addr) = Flowtap::start(&["--set", &trust]);

    let key_file = flowtap.confdir().join("flowtap-ca.pem");
    let mode = std::fs::metadata(&key_file)
        .expect("flowtap-ca.pem created")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let cacert = flowtap.confdir().join("flowtap-ca-cert.pem");
    let out = https_through(addr, &origin, &cacert).ok();
    assert_eq!(out.stdout, "hello tls");
    flowtap.stdout.wait_for("for the HTTPS flow", |l| {
        l.contains("GET https://localhost:") && l.ends_with("<< 200 OK 9b")
    });
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn an_openssl_made_mitmproxy_ca_can_be_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_file, ca_cert) = openssl_mitmproxy_ca(dir.path());
    let cert = OriginCert::new(&["localhost"]);
    let origin = Origin::tls(&cert, HELLO_TLS);
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (flowtap, addr) = Flowtap::start(&[
        "--use-mitmproxy-ca",
        ca_file.to_str().expect("path"),
        "--set",
        &trust,
    ]);

    let out = https_through(addr, &origin, &ca_cert).ok();
    assert_eq!(out.stdout, "hello tls");
    assert!(
        out.stderr.contains("issuer: CN=mitmproxy; O=mitmproxy"),
        "{}",
        out.stderr
    );
    // flowtap's own CA was not created: the mitmproxy one was used.
    assert!(!flowtap.confdir().join("flowtap-ca.pem").exists());
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
}
