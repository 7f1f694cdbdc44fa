//! Every mitmdump 12.3.1 fixture loads with all its fields and re-encodes byte for byte.

mod support;

use bytes::Bytes;
use flowtap_flow::flowfile::encode_flow;
use flowtap_flow::model::{FlowExt, RequestExt};
use flowtap_flow::state::{from_state, to_state};
use flowtap_flow::tnetstring::{self, Dict, Value};
use support::{fixture_bytes, fixture_files, load};

#[test]
fn every_fixture_reencodes_byte_identically() {
    let files = fixture_files();
    assert!(
        files.len() >= 12,
        "expected the fixture set, found {files:?}"
    );
    for path in files {
        let original = std::fs::read(&path).unwrap();
        let flows = flowtap_flow::flowfile::read_flows(&original)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!flows.is_empty(), "{}", path.display());
        let rewritten: Vec<u8> = flows.iter().flat_map(encode_flow).collect();
        assert!(
            rewritten == original,
            "{}: re-encoded bytes differ (first difference at {:?})",
            path.display(),
            rewritten.iter().zip(&original).position(|(a, b)| a != b)
        );
    }
}

#[test]
fn state_dicts_round_trip_through_the_model() {
    for path in fixture_files() {
        let values = tnetstring::decode_all(&std::fs::read(&path).unwrap()).unwrap();
        for value in values {
            let flow = from_state(&value).unwrap();
            assert_eq!(to_state(&flow), value, "{}", path.display());
        }
    }
}

#[test]
fn http_get_200_fields_match_mitmproxys_decoding() {
    let flows = load("http-get-200.mitm");
    let flow = &flows[0];
    assert_eq!(flow.id, "c6ba5207-e6ce-4805-bb0e-5492acae549c");
    assert_eq!(flow.r#type, "http");
    assert_eq!(flow.timestamp_created, 1795238398.4272573);
    let client = flow.client_conn.as_ref().unwrap();
    assert_eq!(client.peername.as_ref().unwrap().port, 59220);
    assert_eq!(client.timestamp_start, Some(1795238398.4239657));
    assert_eq!(client.proxy_mode, "regular");
    assert_eq!(client.timestamp_end, None);
    let server = flow.server_conn.as_ref().unwrap();
    assert_eq!(server.address.as_ref().unwrap().port, 18081);
    assert_eq!(server.timestamp_tcp_setup, Some(1795238398.439367));
    assert!(server.via.is_none());
    let request = flow.request.as_ref().unwrap();
    assert_eq!(&request.method[..], b"GET");
    assert_eq!(&request.path[..], b"/hello.txt");
    assert_eq!(request.host, "127.0.0.1");
    assert_eq!(request.headers.len(), 4);
    assert_eq!(&request.headers[3].name[..], b"Proxy-Connection");
    assert_eq!(request.content.as_deref(), Some(&b""[..]));
    assert!(request.trailers.is_none());
    assert_eq!(request.url(), "http://127.0.0.1:18081/hello.txt");
    let response = flow.response.as_ref().unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(&response.http_version[..], b"HTTP/1.0");
    assert_eq!(
        response.content.as_deref(),
        Some(&b"hello from mitm fixture\n"[..])
    );
    assert_eq!(response.timestamp_end, Some(1795238398.448813));
    assert!(flow.websocket.is_none());
    assert_eq!(
        flow.summary_line(),
        "127.0.0.1:59220: GET http://127.0.0.1:18081/hello.txt << 200 OK 24b"
    );
}

#[test]
fn https_flow_has_tls_details() {
    let flow = &load("https-get.mitm")[0];
    let server = flow.server_conn.as_ref().unwrap();
    assert!(server.tls);
    assert_eq!(server.tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(server.sni.as_deref(), Some("127.0.0.1"));
    assert_eq!(server.certificate_list.len(), 1);
    assert!(server.certificate_list[0].starts_with(b"-----BEGIN CERTIFICATE-----"));
    let client = flow.client_conn.as_ref().unwrap();
    assert!(client.tls);
    assert_eq!(client.alpn.as_deref(), Some(&b""[..]));
    assert!(client.mitmcert.is_none());
    assert_eq!(client.cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
    assert_eq!(&flow.request.as_ref().unwrap().scheme[..], b"https");
}

#[test]
fn websocket_tcp_dns_and_error_flows() {
    let ws = &load("websocket.mitm")[0];
    let data = ws.websocket.as_ref().unwrap();
    assert_eq!(data.messages.len(), 4);
    assert_eq!(&data.messages[2].content[..], b"\x00\x01binary");
    assert_eq!(data.messages[2].r#type, 2);
    assert_eq!(data.close_code, Some(1000));
    assert_eq!(data.close_reason.as_deref(), Some("bye"));
    assert_eq!(data.closed_by_client, Some(true));

    let tcp = &load("tcp-raw.mitm")[0];
    assert_eq!(tcp.r#type, "tcp");
    assert_eq!(tcp.messages.len(), 4);
    assert_eq!(&tcp.messages[1].content[..], b"ECHO hello tcp\n");
    assert!(!tcp.messages[1].from_client);

    let dns = &load("dns-query.mitm")[0];
    let response = dns.dns_response.as_ref().unwrap();
    assert_eq!(response.id, 4660);
    assert_eq!(&response.answers[0].data[..], b"\x7f\x00\x00\x01");
    assert_eq!(dns.client_conn.as_ref().unwrap().transport_protocol, "udp");
    assert_eq!(dns.client_conn.as_ref().unwrap().proxy_mode, "dns");

    let refused = &load("http-conn-refused.mitm")[0];
    assert!(refused.response.is_none());
    assert!(
        refused
            .error
            .as_ref()
            .unwrap()
            .msg
            .contains("Connect call failed")
    );
    assert!(refused.server_conn.as_ref().unwrap().address.is_none());
}

#[test]
fn script_metadata_marker_comment_and_backup() {
    let flow = &load("script-modified.mitm")[0];
    assert_eq!(flow.marked, ":star:");
    assert_eq!(flow.comment, "touched by addhdr");
    let metadata = flowtap_flow::state::metadata_to_state(flow.metadata.as_ref());
    let mut nested = Dict::new();
    nested.set(
        "nested",
        Value::List(vec![
            Value::Int(1),
            Value::Float(2.5),
            Value::from("s"),
            Value::Bytes(Bytes::from_static(b"b")),
        ]),
    );
    let mut expected = Dict::new();
    expected.set("k", nested);
    assert_eq!(metadata, Value::Dict(expected));

    let replayed = &load("http-post-body.client-replayed.mitm")[0];
    assert_eq!(replayed.is_replay.as_deref(), Some("request"));
    let backup = replayed
        .backup
        .as_ref()
        .expect("client replay keeps a backup");
    assert_eq!(backup.id, replayed.id);
    assert!(backup.backup.is_none());
    assert!(backup.is_replay.is_none());

    let killed = &load("reply-and-kill.mitm")[1];
    assert_eq!(killed.error.as_ref().unwrap().msg, "Connection killed.");
}

#[test]
fn concatenated_file_holds_all_flows_in_order() {
    let flows = load("all-mixed.mitm");
    let types: Vec<&str> = flows.iter().map(|f| f.r#type.as_str()).collect();
    assert_eq!(types, ["http", "http", "http", "http", "tcp", "dns"]);
    assert_eq!(fixture_bytes("all-mixed.mitm").first(), Some(&b'1'));
    let first = tnetstring::decode(&fixture_bytes("all-mixed.mitm"))
        .unwrap()
        .0;
    assert!(matches!(first, Value::Dict(_)));
}
