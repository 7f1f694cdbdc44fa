//! The UDP modes: `reverse:dns://` in front of a DNS server the test runs (queried with a real
//! `dig`; installed by scripts/test), and `reverse:udp://` in front of a UDP echo server, each
//! with a real script on its hooks and `-w` files read back by flowtap's reader and by
//! mitmproxy 12.3.1's own (`scripts/install-mitmproxy`; `FLOWTAP_SKIP_MITMPROXY=1` skips that
//! part, saying so); and each mode's hook order against mitmdump 12.3.1's recording
//! (`fixtures/mitmproxy-12/{udp,dns}-reverse.events.txt`, `fixtures/mitmproxy-12/eventlog.py`).

#![allow(missing_docs)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flowtap_flow::FlowReader;
use flowtap_proto::v1::Flow;
use support::Flowtap;
use support::scripts::{EventLog, TempScript, fixture, normalize_events, recorded_events};

/// The address the test's DNS server gives for every A question.
const ANSWER: [u8; 4] = [192, 0, 2, 7];

/// A UDP server in a thread of its own; counts the datagrams it answered.
struct UdpServer {
    addr: SocketAddr,
    answered: Arc<AtomicUsize>,
}

impl UdpServer {
    /// Answers each datagram with `reply(datagram)` (nothing when None).
    fn start(reply: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static) -> UdpServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the test's UDP server");
        let addr = socket.local_addr().expect("its address");
        let answered = Arc::new(AtomicUsize::new(0));
        let count = answered.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while let Ok((len, peer)) = socket.recv_from(&mut buf) {
                if let Some(answer) = reply(&buf[..len]) {
                    let _ = socket.send_to(&answer, peer);
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        UdpServer { addr, answered }
    }

    /// A DNS server answering every query with one A record, [`ANSWER`], TTL 300 (the
    /// question echoed, the answer's name a pointer to it, no EDNS).
    fn dns() -> UdpServer {
        UdpServer::start(dns_answer)
    }
}

/// The answer of [`UdpServer::dns`] to one DNS query (None: not a query it can read).
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += usize::from(query[end]) + 1;
    }
    end += 5; // the root label, type and class
    let mut answer = query.get(..end)?.to_vec();
    answer[2] = 0x81; // QR, RD
    answer[3] = 0x80; // RA, NOERROR
    answer[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    answer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    answer.extend_from_slice(&ANSWER);
    Some(answer)
}

/// The same DNS server over TCP on `listener` (each message after its 16-bit length), a
/// thread per connection; counts the queries it answered.
fn tcp_dns_server(listener: std::net::TcpListener) -> Arc<AtomicUsize> {
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let count = count.clone();
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut len = [0u8; 2];
                while stream.read_exact(&mut len).is_ok() {
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut query).is_err() {
                        return;
                    }
                    let Some(answer) = dns_answer(&query) else {
                        return;
                    };
                    let len = u16::try_from(answer.len()).expect("a short answer");
                    let _ = stream.write_all(&[&len.to_be_bytes()[..], &answer].concat());
                    count.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    answered
}

fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=5", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig (bind9-dnsutils; scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_flows(path: &Path) -> Vec<Flow> {
    let file = std::fs::File::open(path).expect("the -w file");
    let (flows, error) = FlowReader::new(std::io::BufReader::new(file)).read_all();
    assert!(error.is_none(), "{error:?}");
    flows
}

/// mitmproxy 12.3.1's python, or None when `FLOWTAP_SKIP_MITMPROXY=1`.
fn mitmproxy_python() -> Option<PathBuf> {
    if std::env::var("FLOWTAP_SKIP_MITMPROXY").as_deref() == Ok("1") {
        eprintln!("SKIPPED: reading the -w file with mitmproxy (FLOWTAP_SKIP_MITMPROXY=1)");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-mitmproxy");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/install-mitmproxy");
    assert!(out.status.success(), "scripts/install-mitmproxy failed");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let venv = stdout.lines().last().expect("the venv path").trim();
    Some(PathBuf::from(venv).join("bin/python"))
}

/// Runs `code` in mitmproxy's python with the flows of `path` as `flows` (read by
/// `mitmproxy.io.FlowReader`); its stdout.
fn with_mitmproxy(python: &Path, path: &Path, code: &str) -> String {
    let program = format!(
        "import sys\nfrom mitmproxy import io\nwith open(sys.argv[1], 'rb') as f:\n    flows = list(io.FlowReader(f).stream())\n{code}"
    );
    let out = Command::new(python)
        .args(["-c", &program])
        .arg(path)
        .output()
        .expect("run mitmproxy's python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mitmproxy failed to read {path:?}:\n{stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn reverse_dns_mode_forwards_queries_to_its_server() {
    let server = UdpServer::dns();
    let script = TempScript::new(
        "dns_watch.py",
        "import ipaddress\n\
         def dns_request(flow):\n\
         \x20   print('dns_request', flow.request.question.name, flow.client_conn.proxy_mode.full_spec)\n\
         def dns_response(flow):\n\
         \x20   a = flow.response.answers[0]\n\
         \x20   print('dns_response', a.name, ipaddress.ip_address(a.data), a.ttl)\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("dns.mitm");
    let spec = format!("reverse:dns://127.0.0.1:{}", server.addr.port());
    let saved_arg = saved.to_str().expect("utf-8 path");
    let (flowtap, addr) = Flowtap::start(&["--mode", &spec, "-s", script.arg(), "-w", saved_arg]);

    let answer = dig(addr, &["+short", "www.example.test", "A"]);
    assert_eq!(answer.trim(), "192.0.2.7", "dig's answer");
    assert_eq!(
        server.answered.load(Ordering::SeqCst),
        1,
        "the server saw the query"
    );

    let (_, stdout) = flowtap.stop();
    let seen = stdout.join("\n");
    assert!(
        seen.contains(&format!("dns_request www.example.test {spec}")),
        "{seen}"
    );
    assert!(
        seen.contains("dns_response www.example.test 192.0.2.7 300"),
        "{seen}"
    );
    let flows = read_flows(&saved);
    assert_eq!(flows.len(), 1, "{flows:?}");
    let flow = &flows[0];
    assert_eq!(flow.r#type, "dns");
    let request = flow.dns_request.as_ref().expect("the query");
    assert_eq!(request.questions[0].name, "www.example.test");
    let response = flow.dns_response.as_ref().expect("the server's answer");
    assert_eq!(response.answers[0].data.as_ref(), ANSWER);
    let client = flow.client_conn.as_ref().expect("client_conn");
    assert_eq!(
        (
            client.transport_protocol.as_str(),
            client.proxy_mode.as_str()
        ),
        ("udp", spec.as_str())
    );
    let server_conn = flow.server_conn.as_ref().expect("server_conn");
    let address = server_conn.address.as_ref().expect("the server's address");
    assert_eq!(address.port, u32::from(server.addr.port()));

    if let Some(python) = mitmproxy_python() {
        let described = with_mitmproxy(
            &python,
            &saved,
            "f = flows[0]\n\
             print(type(f).__name__, f.request.question.name, f.response.answers[0].data.hex(), \
             f.client_conn.transport_protocol, f.server_conn.address[1])\n",
        );
        assert_eq!(
            described.trim(),
            format!(
                "DNSFlow www.example.test c0000207 udp {}",
                server.addr.port()
            )
        );
    }
}

#[test]
fn reverse_dns_mode_answers_servfail_when_its_server_is_unreachable() {
    // A port that nothing listens on: the kernel refuses the query (ICMP port unreachable).
    let closed = UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
    let port = closed.local_addr().expect("its address").port();
    drop(closed);
    let spec = format!("reverse:dns://127.0.0.1:{port}");
    let script = TempScript::new(
        "dns_error.py",
        "def dns_error(flow):\n\
         \x20   print('dns_error', flow.request.question.name, flow.response is None)\n",
    );
    let (flowtap, addr) = Flowtap::start(&["--mode", &spec, "-s", script.arg()]);
    let answer = dig(addr, &["www.example.test", "A"]);
    assert!(answer.contains("status: SERVFAIL"), "{answer}");
    let (_, stdout) = flowtap.stop();
    let seen = stdout.join("\n");
    assert!(seen.contains("dns_error www.example.test True"), "{seen}");
}

/// `reverse:udp://`: datagrams round-trip through the proxy, a script changes one on the way
/// and each client address is its own flow, saved as mitmproxy writes "udp" flows.
#[test]
fn reverse_udp_mode_relays_datagrams_as_udp_flows() {
    let origin = UdpServer::start(|datagram| Some([b"echo:", datagram].concat()));
    let script = TempScript::new(
        "udp_watch.py",
        "def udp_start(flow):\n\
         \x20   print('udp_start', flow.client_conn.proxy_mode.full_spec)\n\
         def udp_message(flow):\n\
         \x20   m = flow.messages[-1]\n\
         \x20   if m.from_client and m.content == b'change me':\n\
         \x20       m.content = b'changed'\n\
         def udp_end(flow):\n\
         \x20   print('udp_end', len(flow.messages))\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("udp.mitm");
    let spec = format!("reverse:udp://127.0.0.1:{}", origin.addr.port());
    let saved_arg = saved.to_str().expect("utf-8 path");
    let (flowtap, addr) = Flowtap::start(&["--mode", &spec, "-s", script.arg(), "-w", saved_arg]);

    let exchange = |socket: &UdpSocket, send: &[u8]| -> Vec<u8> {
        socket.send_to(send, addr).expect("send a datagram");
        let mut buf = [0u8; 2048];
        let (len, from) = socket.recv_from(&mut buf).expect("a datagram back");
        assert_eq!(from, addr, "the answer comes from the proxy's address");
        buf[..len].to_vec()
    };
    let client = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    assert_eq!(exchange(&client, b"hello"), b"echo:hello");
    assert_eq!(exchange(&client, b"change me"), b"echo:changed");
    let other = UdpSocket::bind("127.0.0.1:0").expect("a second client socket");
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    assert_eq!(exchange(&other, b"two"), b"echo:two");

    // The flows end at shutdown (or after 20 s of quiet): udp_end, then -w.
    let (_, stdout) = flowtap.stop();
    let seen = stdout.join("\n");
    assert_eq!(
        seen.matches(&format!("udp_start {spec}")).count(),
        2,
        "{seen}"
    );
    assert!(seen.contains("udp_end 4"), "{seen}");
    assert!(seen.contains("udp_end 2"), "{seen}");

    let mut flows = read_flows(&saved);
    assert_eq!(flows.len(), 2, "{flows:?}");
    flows.sort_by_key(|f| std::cmp::Reverse(f.messages.len()));
    let first = &flows[0];
    assert_eq!(first.r#type, "udp");
    let messages: Vec<(bool, &[u8])> = first
        .messages
        .iter()
        .map(|m| (m.from_client, m.content.as_ref()))
        .collect();
    assert_eq!(
        messages,
        vec![
            (true, &b"hello"[..]),
            (false, b"echo:hello"),
            (true, b"changed"),
            (false, b"echo:changed"),
        ]
    );
    let client_conn = first.client_conn.as_ref().expect("client_conn");
    assert_eq!(client_conn.transport_protocol, "udp");
    assert_eq!(client_conn.proxy_mode, spec);
    let peer = client_conn.peername.as_ref().expect("peername");
    assert_eq!(
        peer.port,
        u32::from(client.local_addr().expect("address").port())
    );
    let server_conn = first.server_conn.as_ref().expect("server_conn");
    assert_eq!(server_conn.transport_protocol, "udp");
    assert_eq!(
        server_conn.address.as_ref().map(|a| a.port),
        Some(u32::from(origin.addr.port()))
    );
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(origin.answered.load(Ordering::SeqCst), 3);

    if let Some(python) = mitmproxy_python() {
        let described = with_mitmproxy(
            &python,
            &saved,
            "for f in sorted(flows, key=lambda f: -len(f.messages)):\n\
             \x20   print(type(f).__name__, f.client_conn.transport_protocol, f.client_conn.proxy_mode.scheme, \
             f.server_conn.address[1], [(m.from_client, m.content) for m in f.messages])\n\
             import io as stdio\n\
             out = stdio.BytesIO()\n\
             w = io.FlowWriter(out)\n\
             for f in flows:\n\
             \x20   w.add(f)\n\
             print('rewritten byte for byte:', out.getvalue() == open(sys.argv[1], 'rb').read())\n",
        );
        let port = origin.addr.port();
        assert_eq!(
            described,
            format!(
                "UDPFlow udp udp {port} [(True, b'hello'), (False, b'echo:hello'), (True, b'changed'), (False, b'echo:changed')]\n\
                 UDPFlow udp udp {port} [(True, b'two'), (False, b'echo:two')]\n\
                 rewritten byte for byte: True\n"
            )
        );
    }
}

/// Runs flowtap in `mode` with eventlog.py, then `scenario` with the proxy's address and the
/// log; stops flowtap and returns the normalized event lines.
fn record(
    mode: &str,
    replace: &[(&str, &str)],
    scenario: impl FnOnce(SocketAddr, &EventLog),
) -> Vec<String> {
    let log = EventLog::new();
    let (name, value) = log.env();
    let eventlog = fixture("eventlog.py");
    let (flowtap, addr) = Flowtap::start_with_env(
        &["--mode", mode, "-s", eventlog.as_str()],
        &[(name, &value)],
    );
    scenario(addr, &log);
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
    normalize_events(&log.lines(), replace)
}

/// The recording's lines, in order, except that the worker may run the observed end hooks of
/// different subjects (the flow, the server, the client) in any order after the last flow hook.
fn assert_same_order(got: &[String], recorded: &str, replace: &[(&str, &str)]) {
    let want = normalize_events(&recorded_events(recorded), replace);
    let is_end = |l: &&String| {
        ["udp_end:", "server_disconnected:", "client_disconnected:"]
            .iter()
            .any(|p| l.starts_with(p))
    };
    let split = |lines: &[String]| -> (Vec<String>, Vec<String>) {
        let (mut ends, rest): (Vec<&String>, Vec<&String>) = lines.iter().partition(is_end);
        ends.sort();
        (
            rest.into_iter().cloned().collect(),
            ends.into_iter().cloned().collect(),
        )
    };
    let show = |lines: &[String]| lines.join("\n");
    assert_eq!(
        split(got),
        split(&want),
        "\ngot:\n{}\n\nwant:\n{}\n",
        show(got),
        show(&want)
    );
    let first_end = got.iter().position(|l| is_end(&l)).expect("end hooks");
    let last_flow_hook = got
        .iter()
        .rposition(|l| l.starts_with("udp_message:") || l.starts_with("dns_response:"))
        .expect("flow hooks");
    assert!(first_end > last_flow_hook, "{got:?}");
}

#[test]
fn reverse_udp_hook_order_is_mitmdumps() {
    let origin = UdpServer::start(|datagram| Some([b"ECHO ", datagram].concat()));
    let port = origin.addr.port().to_string();
    let replace = [("18185", port.as_str())];
    let got = record(
        &format!("reverse:udp://127.0.0.1:{port}"),
        &replace,
        |addr, log| {
            let client = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("a read timeout");
            for (send, want) in [
                (&b"hello udp"[..], &b"ECHO hello udp"[..]),
                (b"second", b"ECHO second"),
            ] {
                client.send_to(send, addr).expect("send");
                let mut buf = [0u8; 64];
                let (len, _) = client.recv_from(&mut buf).expect("the echo");
                assert_eq!(&buf[..len], want);
            }
            // The fourth message's hook has run once its line is there.
            support::scripts::poll("four udp_message lines", || {
                (log.lines()
                    .iter()
                    .filter(|l| l.starts_with("udp_message:"))
                    .count()
                    == 4)
                    .then_some(())
            });
            // As in the recording, the session ends 20 s after its last datagram.
            log.wait_for("client_disconnected");
        },
    );
    assert_same_order(&got, "udp-reverse.events.txt", &replace);
}

#[test]
fn reverse_dns_hook_order_is_mitmdumps() {
    let server = UdpServer::dns();
    let port = server.addr.port().to_string();
    let replace = [("18186", port.as_str())];
    let got = record(
        &format!("reverse:dns://127.0.0.1:{port}"),
        &replace,
        |addr, log| {
            let answer = dig(addr, &["+short", "www.example.test", "A"]);
            assert_eq!(answer.trim(), "192.0.2.7");
            log.wait_for("dns_response");
            // As in the recording, the session ends 20 s after its last datagram.
            log.wait_for("client_disconnected");
        },
    );
    assert_same_order(&got, "dns-reverse.events.txt", &replace);
}

/// In `--mode dns` a script may send a query to a server of its choosing by setting
/// `flow.server_conn.address` in `dns_request`, as mitmproxy's own resolver does.
#[test]
fn dns_mode_forwards_a_query_where_a_script_points_it() {
    let server = UdpServer::dns();
    let script = TempScript::new(
        "dns_redirect.py",
        &format!(
            "def dns_request(flow):\n\
             \x20   if flow.request.question.name.endswith('.redirected.test'):\n\
             \x20       flow.server_conn.address = ('127.0.0.1', {})\n",
            server.addr.port()
        ),
    );
    let (flowtap, addr) = Flowtap::start(&["--mode", "dns@0", "-s", script.arg()]);
    let answer = dig(addr, &["+short", "www.redirected.test", "A"]);
    assert_eq!(answer.trim(), "192.0.2.7", "dig's answer");
    assert_eq!(server.answered.load(Ordering::SeqCst), 1);
    flowtap.stop();
}

/// DNS over TCP (`dig +tcp`) in `reverse:dns://`: forwarded over TCP to the server, whose
/// connection opens before the first query, in mitmdump 12.3.1's order
/// (fixtures/mitmproxy-12/dns-reverse-tcp.events.txt).
#[test]
fn reverse_dns_mode_takes_dns_over_tcp() {
    // The TCP server beside the UDP one on the same port, as a DNS server has (another test
    // may hold that TCP port: then another pair is tried).
    let (udp, tcp) = (0..20)
        .find_map(|_| {
            let udp = UdpServer::dns();
            let tcp = std::net::TcpListener::bind(udp.addr).ok()?;
            Some((udp, tcp))
        })
        .expect("a port free for both UDP and TCP");
    let answered = tcp_dns_server(tcp);
    let port = udp.addr.port().to_string();
    let replace = [("18186", port.as_str())];
    let got = record(
        &format!("reverse:dns://127.0.0.1:{port}"),
        &replace,
        |addr, log| {
            let answer = dig(addr, &["+tcp", "+short", "www.example.test", "A"]);
            assert_eq!(answer.trim(), "192.0.2.7");
            log.wait_for("client_disconnected");
        },
    );
    assert_eq!(
        answered.load(Ordering::SeqCst),
        1,
        "the TCP server answered"
    );
    assert_eq!(
        udp.answered.load(Ordering::SeqCst),
        0,
        "nothing went over UDP"
    );
    // mitmdump's recording ends before the client's disconnect was logged.
    let want = normalize_events(&recorded_events("dns-reverse-tcp.events.txt"), &replace);
    let got: Vec<String> = got
        .into_iter()
        .filter(|l| !l.starts_with("client_disconnected:"))
        .collect();
    assert_eq!(
        got,
        want,
        "\ngot:\n{}\n\nwant:\n{}\n",
        got.join("\n"),
        want.join("\n")
    );
}

/// `--mode dns` takes DNS over TCP too, on the same port as its UDP.
#[test]
fn dns_mode_takes_dns_over_tcp() {
    let script = TempScript::new(
        "dns_spoof.py",
        "import ipaddress\n\
         from mitmproxy import dns\n\
         def dns_request(flow):\n\
         \x20   q = flow.request.question\n\
         \x20   flow.response = flow.request.succeed([dns.ResourceRecord(\n\
         \x20       q.name, dns.types.A, dns.classes.IN, 60, ipaddress.ip_address('192.0.2.99').packed)])\n\
         \x20   print('dns_request', flow.client_conn.transport_protocol)\n",
    );
    let (flowtap, addr) = Flowtap::start(&["--mode", "dns@0", "-s", script.arg()]);
    let over_tcp = dig(addr, &["+tcp", "+short", "one.test", "A"]);
    assert_eq!(over_tcp.trim(), "192.0.2.99");
    let over_udp = dig(addr, &["+short", "two.test", "A"]);
    assert_eq!(over_udp.trim(), "192.0.2.99");
    let (_, stdout) = flowtap.stop();
    let seen = stdout.join("\n");
    assert!(seen.contains("dns_request tcp"), "{seen}");
    assert!(seen.contains("dns_request udp"), "{seen}");
}

/// `flowtap -r` with a saved UDP flow fires the UDP hooks in mitmdump's order
/// (fixtures/mitmproxy-12/udp-reverse.read-with-script.events.txt) and writes the flow back
/// byte for byte.
#[test]
fn saved_udp_flows_replay_their_hooks_as_mitmdump_does() {
    let log = EventLog::new();
    let (name, value) = log.env();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.mitm");
    let (code, _, stderr) = Flowtap::run(
        &[
            "-n",
            "-r",
            &fixture("udp-reverse.mitm"),
            "-s",
            &fixture("eventlog.py"),
            "-w",
            out.to_str().expect("utf-8 path"),
        ],
        &[(name, &value)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        normalize_events(&log.lines(), &[]),
        normalize_events(
            &recorded_events("udp-reverse.read-with-script.events.txt"),
            &[]
        ),
    );
    let original = std::fs::read(fixture("udp-reverse.mitm")).expect("the fixture");
    assert!(
        std::fs::read(&out).expect("the -w file") == original,
        "rewritten differently"
    );
}

/// `inject.udp` from a script: the datagram goes through `udp_message` (which sees it as from
/// the server) and reaches the client; `flow.kill()` in `udp_message` ends the flow
/// (`udp_error`) and the datagram is not sent on.
#[test]
fn scripts_inject_into_and_kill_udp_flows() {
    let origin = UdpServer::start(|datagram| Some([b"echo:", datagram].concat()));
    let script = TempScript::new(
        "udp_inject.py",
        "from mitmproxy import ctx\n\
         def udp_message(flow):\n\
         \x20   m = flow.messages[-1]\n\
         \x20   print('udp_message', m.from_client, m.content)\n\
         \x20   if m.from_client and m.content == b'inject please':\n\
         \x20       ctx.master.commands.call('inject.udp', flow, True, b'injected')\n\
         \x20   if m.from_client and m.content == b'kill me':\n\
         \x20       flow.kill()\n\
         def udp_error(flow):\n\
         \x20   print('udp_error', flow.error.msg, len(flow.messages))\n",
    );
    let spec = format!("reverse:udp://127.0.0.1:{}", origin.addr.port());
    let (flowtap, addr) = Flowtap::start(&["--mode", &spec, "-s", script.arg()]);
    let client = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    client.send_to(b"inject please", addr).expect("send");
    let mut got = Vec::new();
    for _ in 0..2 {
        let mut buf = [0u8; 64];
        let (len, _) = client.recv_from(&mut buf).expect("a datagram back");
        got.push(buf[..len].to_vec());
    }
    got.sort();
    assert_eq!(
        got,
        vec![b"echo:inject please".to_vec(), b"injected".to_vec()]
    );

    client.send_to(b"kill me", addr).expect("send");
    flowtap
        .stdout
        .wait_for("udp_error", |l| l.starts_with("udp_error"));
    let (_, stdout) = flowtap.stop();
    let seen = stdout.join("\n");
    assert!(seen.contains("udp_message False b'injected'"), "{seen}");
    assert!(seen.contains("udp_error Connection killed. 4"), "{seen}");
    assert_eq!(
        origin.answered.load(Ordering::SeqCst),
        1,
        "the killed datagram never reached the origin"
    );
}

/// At `max_client_connections` UDP clients, datagrams from a new address are dropped (with a
/// warning) while the clients already served go on.
#[test]
fn udp_clients_beyond_the_cap_are_dropped() {
    let origin = UdpServer::start(|datagram| Some([b"echo:", datagram].concat()));
    let spec = format!("reverse:udp://127.0.0.1:{}", origin.addr.port());
    let (flowtap, addr) = Flowtap::start(&["--mode", &spec, "--set", "max_client_connections=2"]);
    let client = || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        socket
    };
    let echo = |socket: &UdpSocket, send: &[u8]| -> std::io::Result<Vec<u8>> {
        socket.send_to(send, addr)?;
        let mut buf = [0u8; 64];
        let (len, _) = socket.recv_from(&mut buf)?;
        Ok(buf[..len].to_vec())
    };
    let (a, b, c) = (client(), client(), client());
    assert_eq!(echo(&a, b"a").expect("a is served"), b"echo:a");
    assert_eq!(echo(&b, b"b").expect("b is served"), b"echo:b");
    c.send_to(b"c", addr).expect("send");
    flowtap.stderr.wait_for("the cap warning", |l| {
        l.contains("UDP clients served (max_client_connections)")
    });
    // The datagram was dropped when the warning was logged: nothing comes back for it.
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("a read timeout");
    assert!(c.recv_from(&mut [0u8; 64]).is_err(), "c was not served");
    assert_eq!(
        echo(&a, b"again").expect("a is still served"),
        b"echo:again"
    );
    assert_eq!(origin.answered.load(Ordering::SeqCst), 3);
    flowtap.stop();
}

/// A UDP mode may share its port with a TCP mode, as in mitmproxy; a DNS mode may not (it
/// listens on TCP too).
#[test]
fn udp_modes_share_a_port_with_tcp_modes_but_dns_takes_both() {
    let port = support::free_port();
    let mut refused = Flowtap::spawn(&[
        "--mode",
        &format!("regular@{port}"),
        "--mode",
        &format!("dns@{port}"),
    ]);
    let status = refused.wait_exit(Duration::from_secs(10));
    assert_ne!(status.code(), Some(0));
    refused.stderr.wait_for("the error", |l| {
        l.contains("Cannot spawn multiple servers on the same address")
    });

    let origin = UdpServer::start(|datagram| Some([b"echo:", datagram].concat()));
    let flowtap = Flowtap::spawn(&[
        "--mode",
        &format!("regular@127.0.0.1:{port}"),
        "--mode",
        &format!(
            "reverse:udp://127.0.0.1:{}@127.0.0.1:{port}",
            origin.addr.port()
        ),
    ]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    // Every listener is bound once the listening lines are logged.
    flowtap.stderr.wait_for("the UDP listener", |l| {
        l.contains("udp://") && l.contains("listening at")
    });
    let client = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    client.send_to(b"hi", addr).expect("send");
    let mut buf = [0u8; 64];
    let (len, _) = client.recv_from(&mut buf).expect("the echo");
    assert_eq!(&buf[..len], b"echo:hi");
    flowtap.stop();
}
