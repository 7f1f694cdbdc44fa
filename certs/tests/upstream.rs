//! Client configs for connecting to real servers: default roots, extra roots, insecure mode.

mod support;

use std::sync::Arc;

use flowtap_certs::testing::OriginCert;
use flowtap_certs::{CaError, UpstreamTls, client_config};
use support::{alpn, handshake};

#[tokio::test]
async fn default_config_rejects_a_self_signed_origin() {
    let origin = OriginCert::new(&["localhost"]);
    let client = client_config(&UpstreamTls::default()).expect("client config");
    let err = handshake(origin.server_config(&[]), client, "localhost")
        .await
        .expect_err("untrusted origin");
    assert!(
        err.contains("invalid peer certificate") && err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[tokio::test]
async fn insecure_config_accepts_a_self_signed_origin() {
    let origin = OriginCert::new(&["localhost", "127.0.0.1"]);
    let options = UpstreamTls {
        insecure: true,
        ..UpstreamTls::default()
    };
    let client = client_config(&options).expect("client config");
    // Even a name the certificate does not hold is accepted.
    for name in ["localhost", "127.0.0.1", "not-in-the-cert.example"] {
        let done = handshake(origin.server_config(&[]), client.clone(), name)
            .await
            .expect(name);
        assert_eq!(&done.peer_chain[0], origin.leaf_der());
    }
}

#[tokio::test]
async fn extra_roots_are_trusted_in_addition_to_the_defaults() {
    let origin = OriginCert::new(&["localhost"]);
    let options = UpstreamTls {
        extra_roots: vec![origin.ca_path().to_path_buf()],
        ..UpstreamTls::default()
    };
    let client = client_config(&options).expect("client config");
    handshake(origin.server_config(&[]), client.clone(), "localhost")
        .await
        .expect("trusted through extra root");
    let err = handshake(origin.server_config(&[]), client, "other.example")
        .await
        .expect_err("name still checked");
    assert!(err.contains("not valid for name"), "{err}");
    assert!(
        !client_config(&UpstreamTls::default())
            .expect("default")
            .alpn_protocols
            .iter()
            .any(|p| p == b"h2"),
        "defaults offer no ALPN"
    );
}

#[tokio::test]
async fn alpn_h2_is_negotiated_upstream() {
    let origin = OriginCert::new(&["localhost"]);
    let options = UpstreamTls {
        extra_roots: vec![origin.ca_path().to_path_buf()],
        alpn: alpn(&[b"h2", b"http/1.1"]),
        ..UpstreamTls::default()
    };
    let client = client_config(&options).expect("client config");
    let server = origin.server_config(&alpn(&[b"h2", b"http/1.1"]));
    let done = handshake(server, client, "localhost").await.expect("h2");
    assert_eq!(done.alpn.as_deref(), Some(&b"h2"[..]));
}

#[test]
fn configs_are_shared_per_options() {
    let options = UpstreamTls {
        alpn: alpn(&[b"http/1.1"]),
        ..UpstreamTls::default()
    };
    let a = client_config(&options).expect("config");
    let equal = UpstreamTls {
        alpn: alpn(&[b"http/1.1"]),
        ..UpstreamTls::default()
    };
    let b = client_config(&equal).expect("config again");
    assert!(Arc::ptr_eq(&a, &b));
    let insecure = client_config(&UpstreamTls {
        insecure: true,
        ..options
    })
    .expect("insecure");
    assert!(!Arc::ptr_eq(&a, &insecure));
}

#[test]
fn unusable_extra_root_files_are_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").expect("write");
    let err = client_config(&UpstreamTls {
        extra_roots: vec![empty],
        ..UpstreamTls::default()
    })
    .expect_err("no roots");
    assert!(matches!(err, CaError::NoRoots { .. }), "{err:?}");

    let missing = tmp.path().join("missing.pem");
    let err = client_config(&UpstreamTls {
        extra_roots: vec![missing],
        ..UpstreamTls::default()
    })
    .expect_err("missing file");
    assert!(matches!(err, CaError::Io { .. }), "{err:?}");
}

#[tokio::test]
async fn origin_cert_client_config_trusts_only_its_ca() {
    let origin = OriginCert::new(&["127.0.0.1"]);
    let other = OriginCert::new(&["127.0.0.1"]);
    handshake(
        origin.server_config(&[]),
        origin.client_config(&[]),
        "127.0.0.1",
    )
    .await
    .expect("own CA");
    let err = handshake(
        other.server_config(&[]),
        origin.client_config(&[]),
        "127.0.0.1",
    )
    .await
    .expect_err("other CA");
    assert!(err.contains("UnknownIssuer"), "{err}");
    let path = origin.ca_path().to_path_buf();
    assert_eq!(
        std::fs::read_to_string(&path).expect("ca file"),
        origin.ca_pem()
    );
    drop(origin);
    assert!(!path.exists(), "temp CA removed on drop");
}
