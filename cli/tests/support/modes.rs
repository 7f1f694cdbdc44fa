//! Helpers for the proxy-mode hook-order tests (`modes_hook_order.rs`): the recordings in
//! `fixtures/mitmproxy-12/modes/`, their normalization, and the origins those scenarios need
//! beyond HTTP (a raw TLS echo, a UDP echo, a tiny DNS server), a raw TLS client, a DNS query
//! and a network namespace with an nftables redirect.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;

use flowtap_certs::testing::OriginCert;

use super::WAIT;
use super::origin::Origin;
use super::scripts::{NOT_FIRED_BY_FLOWTAP, fixture, normalize_events};

/// `fixtures/mitmproxy-12/modes/NAME`.
pub fn modes_fixture(name: &str) -> String {
    fixture(&format!("modes/{name}"))
}

/// The recorded lines of `modes/NAME` without the hooks flowtap does not fire, with each
/// `(recorded, actual)` replacement applied (the recording's fixed ports become the test's)
/// and client ports normalized.
pub fn recorded_mode_events(name: &str, replace: &[(&str, &str)]) -> Vec<String> {
    let text = std::fs::read_to_string(modes_fixture(name))
        .unwrap_or_else(|e| panic!("read the recording {name}: {e}"));
    let lines: Vec<String> = text
        .lines()
        .filter(|l| {
            let hook = l.split(':').next().unwrap_or_default();
            !NOT_FIRED_BY_FLOWTAP.contains(&hook)
        })
        .map(str::to_string)
        .collect();
    normalize_mode_events(&lines, replace)
}

/// [`normalize_events`], and client ports of any loopback address (transparent mode's
/// clients come from 127.0.0.3) become `PORT`.
pub fn normalize_mode_events(lines: &[String], replace: &[(&str, &str)]) -> Vec<String> {
    normalize_events(lines, replace)
        .into_iter()
        .map(|line| {
            let Some(start) = line.find("peer=('127.0.0.") else {
                return line;
            };
            let Some(comma) = line[start..].find("', ") else {
                return line;
            };
            let port_at = start + comma + 3;
            match line[port_at..].find(')') {
                Some(end) => format!("{}PORT{}", &line[..port_at], &line[port_at + end..]),
                None => line,
            }
        })
        .collect()
}

/// Asserts two event logs are equal, printing both in full when not.
pub fn assert_same_events(got: &[String], want: &[String]) {
    assert_eq!(
        got,
        want,
        "\ngot:\n{}\n\nwant:\n{}\n",
        got.join("\n"),
        want.join("\n")
    );
}

/// A raw TLS origin (certificate `cert`) that answers each chunk with `ECHO ` + the chunk,
/// and answers the client's close_notify with its own.
pub fn tls_tcp_echo_origin(cert: &OriginCert) -> Origin {
    let config = cert.server_config(&[]);
    Origin::start(move |tcp| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 4096];
        while let Ok(n) = tls.read(&mut buf) {
            if n == 0 {
                break;
            }
            let reply = [&b"ECHO "[..], &buf[..n]].concat();
            if tls.write_all(&reply).is_err() {
                return;
            }
        }
        tls.conn.send_close_notify();
        let _ = tls.flush();
    })
}

/// A TLS client connection to `addr` asking for `name`, trusting only the PEM CA at `ca`.
pub fn tls_client(
    addr: SocketAddr,
    name: &str,
    ca: &std::path::Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read the CA file") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("the CA certificate parses");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("a name");
    let conn = rustls::ClientConnection::new(Arc::new(config), server_name).expect("a TLS client");
    let tcp = TcpStream::connect(addr).expect("connect to the proxy");
    tcp.set_read_timeout(Some(WAIT)).expect("read timeout");
    rustls::StreamOwned::new(conn, tcp)
}

/// A UDP origin on 127.0.0.1:0 that answers each datagram with `answer(datagram)`.
pub fn udp_origin(answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the UDP origin");
    let addr = socket.local_addr().expect("UDP origin addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&answer(&buf[..n]), peer);
        }
    });
    addr
}

/// A UDP echo origin: `ECHO ` + each datagram.
pub fn udp_echo_origin() -> SocketAddr {
    udp_origin(|datagram| [&b"ECHO "[..], datagram].concat())
}

/// A DNS server that answers every query with its question and one A record 192.0.2.1
/// (TTL 60), as the recording's did.
pub fn dns_origin() -> SocketAddr {
    udp_origin(|query| {
        let mut at = 12;
        while at < query.len() && query[at] != 0 {
            at += usize::from(query[at]) + 1;
        }
        let question = &query[12..(at + 5).min(query.len())];
        let mut answer = query[..2].to_vec();
        answer.extend_from_slice(b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00");
        answer.extend_from_slice(question);
        answer.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04");
        answer.extend_from_slice(&[192, 0, 2, 1]);
        answer
    })
}

/// A DNS query (id `id`, recursion desired) for `name`, type A, class IN.
pub fn dns_a_query(id: u16, name: &str) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).expect("a short label"));
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}

/// Sends each datagram to `server` from one socket and returns the answer to each.
pub fn udp_exchange(server: SocketAddr, datagrams: &[&[u8]]) -> Vec<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    socket.set_read_timeout(Some(WAIT)).expect("read timeout");
    datagrams
        .iter()
        .map(|datagram| {
            socket.send_to(datagram, server).expect("send a datagram");
            let mut buf = [0u8; 65536];
            let (n, _) = socket.recv_from(&mut buf).expect("an answer");
            buf[..n].to_vec()
        })
        .collect()
}

/// Runs a command that must succeed.
pub fn run(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves this thread (and what it starts from now on) into a new network namespace with
/// loopback up. Needs root (CAP_SYS_ADMIN).
pub fn enter_network_namespace() {
    // SAFETY: unshare has no memory-safety preconditions; it moves this thread into a new,
    // empty network namespace.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET) failed ({}): this test needs root (CAP_SYS_ADMIN)",
        std::io::Error::last_os_error()
    );
    run("ip", &["link", "set", "lo", "up"]);
}

/// An nftables rule (in the current network namespace) that redirects TCP connections from
/// 127.0.0.3 to any of `ports` to `to_port` on the same host.
pub fn redirect_from_127_0_0_3(ports: &[u16], to_port: u16) {
    run("nft", &["add", "table", "ip", "flowtap"]);
    run(
        "nft",
        &[
            "add",
            "chain",
            "ip",
            "flowtap",
            "out",
            "{ type nat hook output priority -100 ; }",
        ],
    );
    let ports = format!(
        "{{ {} }}",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let to = format!(":{to_port}");
    run(
        "nft",
        &[
            "add",
            "rule",
            "ip",
            "flowtap",
            "out",
            "ip",
            "saddr",
            "127.0.0.3",
            "tcp",
            "dport",
            &ports,
            "redirect",
            "to",
            &to,
        ],
    );
}

/// Hooks a proxy fires when a connection or flow ends (and the `update` after a flow's end):
/// the worker may run those of different subjects in any order.
const ENDINGS: [&str; 6] = [
    "tcp_end",
    "udp_end",
    "update",
    "server_disconnected",
    "client_disconnected",
    "websocket_end",
];

/// Like [`assert_same_events`], except that the block of ending hooks just before `done:`
/// (and any after it: mitmdump ends UDP connections as it shuts down) is compared as a
/// multiset: it must hold the same lines, in any order.
pub fn assert_same_up_to_endings(got: &[String], want: &[String]) {
    let split = |lines: &[String]| -> (Vec<String>, Vec<String>) {
        let done = lines
            .iter()
            .position(|l| l == "done: ")
            .unwrap_or(lines.len());
        let mut start = done;
        while start > 0 {
            let hook = lines[start - 1].split(':').next().unwrap_or_default();
            if !ENDINGS.contains(&hook) {
                break;
            }
            start -= 1;
        }
        let mut tail: Vec<String> = lines[start..].to_vec();
        tail.sort();
        (lines[..start].to_vec(), tail)
    };
    let (got_head, got_tail) = split(got);
    let (want_head, want_tail) = split(want);
    let full = format!("\ngot:\n{}\n\nwant:\n{}\n", got.join("\n"), want.join("\n"));
    assert_eq!(got_head, want_head, "{full}");
    assert_eq!(got_tail, want_tail, "the ending hooks differ: {full}");
}
