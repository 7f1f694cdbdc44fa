//! The TLS hooks with real curl, a real TLS origin and a real Python script: `tls_clienthello`
//! sees the ClientHello (SNI, ALPN) and passes a connection through with `ignore_connection`,
//! so the client gets the server's own certificate; an intercepted connection reports
//! `tls_established_server` and `tls_established_client`; a client that refuses flowtap's
//! certificate is reported by `tls_failed_client`. (Their order against mitmdump's recording
//! is checked in scripts_hook_order.rs.)

#![allow(missing_docs)]

mod support;

use flowtap_certs::testing::OriginCert;
use support::origin::Origin;
use support::scripts::{TempScript, fixed_response, poll};
use support::{Flowtap, curl};

const SCRIPT: &str = r#"
import pathlib

LOG = pathlib.Path(__file__).with_name("tls.log")

def log(line):
    with LOG.open("a") as f:
        f.write(line + "\n")

def tls_clienthello(data):
    hello = data.client_hello
    log(f"clienthello sni={hello.sni} alpn={hello.alpn_protocols} client_sni={data.context.client.sni}")
    if hello.sni == "passthrough.test":
        data.ignore_connection = True

def tls_established_server(data):
    log(f"established_server sni={data.conn.sni} version={data.conn.tls_version}")

def tls_established_client(data):
    log(f"established_client sni={data.conn.sni} version={data.conn.tls_version}")

def tls_failed_client(data):
    log(f"failed_client sni={data.context.client.sni} error={bool(data.conn.error)}")
"#;

fn lines(script: &TempScript) -> Vec<String> {
    std::fs::read_to_string(script.sibling("tls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn tls_hooks_see_the_handshakes_and_pass_a_connection_through() {
    let cert = OriginCert::new(&["passthrough.test", "intercepted.test"]);
    let origin = Origin::tls(&cert, fixed_response("text/plain", "from the origin"));
    let port = origin.port();
    let script = TempScript::new("tls_hooks.py", SCRIPT);
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let (flowtap, addr) = Flowtap::start(&["-s", script.arg(), "--set", &trust]);
    let proxy = format!("http://{addr}");
    let origin_ca = cert.ca_path().to_str().expect("utf-8").to_string();
    let flowtap_ca = flowtap.confdir().join("flowtap-ca-cert.pem");
    let flowtap_ca = flowtap_ca.to_str().expect("utf-8");
    // curl names the server in its ClientHello; the CONNECT goes to 127.0.0.1.
    let fetch = |name: &str, ca: &str| {
        curl(&[
            "-x",
            &proxy,
            "--connect-to",
            &format!("{name}:443:127.0.0.1:{port}"),
            "--cacert",
            ca,
            &format!("https://{name}/"),
        ])
    };

    // Passed through: the client verifies the origin's own certificate.
    let out = fetch("passthrough.test", &origin_ca).ok();
    assert_eq!(out.stdout, "from the origin");
    // Intercepted: the client gets flowtap's certificate.
    let out = fetch("intercepted.test", flowtap_ca).ok();
    assert_eq!(out.stdout, "from the origin");
    // Intercepted, but the client trusts only the origin's CA: its handshake fails.
    let out = fetch("intercepted.test", &origin_ca);
    assert_eq!(out.code, 60, "{}", out.stderr);

    let seen = poll("the failed client handshake to be reported", || {
        let seen = lines(&script);
        seen.iter()
            .any(|l| l.starts_with("failed_client"))
            .then_some(seen)
    });
    let count = |prefix: &str| seen.iter().filter(|l| l.starts_with(prefix)).count();
    assert!(
        seen.contains(&"clienthello sni=passthrough.test alpn=[b'h2', b'http/1.1'] client_sni=passthrough.test".to_string()),
        "{seen:#?}"
    );
    assert_eq!(count("clienthello sni=intercepted.test"), 2, "{seen:#?}");
    assert_eq!(
        count("established_server sni=intercepted.test"),
        2,
        "{seen:#?}"
    );
    assert_eq!(
        count("established_client sni=intercepted.test"),
        1,
        "{seen:#?}"
    );
    assert!(
        seen.contains(&"failed_client sni=intercepted.test error=True".to_string()),
        "{seen:#?}"
    );
    // Nothing of the passed-through connection went through the TLS handshakes.
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with("established") && l.contains("passthrough.test")),
        "{seen:#?}"
    );
    let (status, stdout) = flowtap.stop();
    assert!(status.success(), "{status}");
    // One flow: the intercepted request (by the CONNECT's address, as mitmdump prints it
    // without showhost); nothing of the passed-through one.
    let flows: Vec<&String> = stdout
        .iter()
        .filter(|l| l.contains(" GET https://"))
        .collect();
    assert_eq!(flows.len(), 1, "{stdout:#?}");
    assert!(
        flows[0].contains(&format!("GET https://127.0.0.1:{port}/")),
        "{flows:?}"
    );
}
