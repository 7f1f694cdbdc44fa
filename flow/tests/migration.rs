//! Old flow-state dicts, built by hand from the converter table (spec 5.8), migrate to valid
//! version-21 flows with exactly the keys mitmproxy's `set_state` expects.

mod support;

use std::collections::BTreeSet;

use bytes::Bytes;
use flowtap_flow::compat::{Migrator, migrate};
use flowtap_flow::state::{from_state, to_state};
use flowtap_flow::tnetstring::Value;
use support::old_flows::{b, dict, v7_flow};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_dict()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect()
}

/// The migrated dict has exactly the keys `get_state()` produces, at every level.
fn assert_exact_schema(migrated: &Value) {
    let flow = from_state(migrated).unwrap();
    let canonical = to_state(&flow);
    // `backup` is optional in `set_state` (popped with a default); old versions have none.
    let mut migrated_keys = keys(migrated);
    migrated_keys.insert("backup".to_owned());
    assert_eq!(migrated_keys, keys(&canonical));
    for key in ["client_conn", "server_conn", "request", "response"] {
        let (a, b) = (
            migrated.as_dict().unwrap().get(key),
            canonical.as_dict().unwrap().get(key),
        );
        if let (Some(a @ Value::Dict(_)), Some(b)) = (a, b) {
            assert_eq!(keys(a), keys(b), "{key}");
        }
    }
}

#[test]
fn version_7_migrates_to_a_valid_21_flow() {
    let migrated = migrate(v7_flow()).unwrap();
    assert_eq!(
        migrated.as_dict().unwrap().get("version"),
        Some(&Value::Int(21))
    );
    assert_exact_schema(&migrated);
    let flow = from_state(&migrated).unwrap();
    assert_eq!(flow.marked, ":default:");
    assert_eq!(flow.is_replay.as_deref(), Some("response"));
    assert_eq!(flow.comment, "");
    assert_eq!(flow.timestamp_created, 1500000001.0);
    assert!(flow.websocket.is_none());
    let request = flow.request.as_ref().unwrap();
    assert!(request.trailers.is_none());
    assert_eq!(&request.authority[..], b"");
    assert_eq!(request.host, "example.com");
    let client = flow.client_conn.as_ref().unwrap();
    assert_eq!(client.peername.as_ref().unwrap().port, 50000);
    assert_eq!(client.sockname.as_ref().unwrap().host, "");
    assert!(client.tls);
    assert_eq!(client.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(client.alpn_offers, vec![Bytes::from_static(b"http/1.1")]);
    assert_eq!(
        client.cipher.as_deref(),
        Some("ECDHE-RSA-AES128-GCM-SHA256")
    );
    assert_eq!(client.sni.as_deref(), Some("example.com"));
    assert_eq!(client.proxy_mode, "regular");
    assert_eq!(client.transport_protocol, "tcp");
    let server = flow.server_conn.as_ref().unwrap();
    assert_eq!(server.peername.as_ref().unwrap().host, "93.184.216.34");
    assert_eq!(server.sockname.as_ref().unwrap().port, 40000);
    assert_eq!(server.certificate_list.len(), 1);
    assert!(server.via.is_none());
}

#[test]
fn each_version_between_7_and_21_migrates() {
    // Walk the chain one version at a time and check every intermediate state migrates too.
    let mut state = v7_flow();
    for version in 7..21 {
        let migrated = migrate(state.clone()).unwrap();
        assert_exact_schema(&migrated);
        // Advance `state` by exactly one converter by migrating a copy with a lower target:
        // re-run the chain up to `version + 1` using a fresh migrator on the partial dict.
        state = step(state);
        assert_eq!(
            state.as_dict().unwrap().get("version"),
            Some(&Value::Int(version + 1))
        );
    }
}

/// Applies exactly one converter (by migrating a dict whose migration stops one step later).
fn step(state: Value) -> Value {
    let version = match state.as_dict().unwrap().get("version") {
        Some(Value::Int(v)) => *v,
        other => panic!("{other:?}"),
    };
    flowtap_flow::compat::migrate_to(state, version + 1).unwrap()
}

#[test]
fn version_20_quic_and_12_marked() {
    let v20 = step_until(v7_flow(), 20);
    let mut d = v20.as_dict().unwrap().clone();
    if let Some(Value::Dict(client)) = d.get_mut("client_conn") {
        client.set("tls_version", "QUIC");
    }
    let flow = from_state(&migrate(Value::Dict(d)).unwrap()).unwrap();
    assert_eq!(
        flow.client_conn.unwrap().tls_version.as_deref(),
        Some("QUICv1")
    );
}

fn step_until(mut state: Value, version: i64) -> Value {
    while state.as_dict().unwrap().get("version") != Some(&Value::Int(version)) {
        state = step(state);
    }
    state
}

#[test]
fn version_11_websocket_flows_merge_into_their_handshake() {
    let mut handshake = step_until(v7_flow(), 11).as_dict().unwrap().clone();
    handshake.set("metadata", dict(&[("websocket", Value::Bool(true))]));
    let mut ws = handshake.clone();
    ws.set("id", "ws-1");
    ws.set(
        "metadata",
        dict(&[("websocket_handshake", Value::from("f-1"))]),
    );
    ws.set(
        "messages",
        Value::List(vec![Value::List(vec![
            Value::Int(1),
            Value::Bool(true),
            b("hi"),
            Value::Float(1500000002.0),
        ])]),
    );
    ws.set("close_sender", "client");
    ws.set("close_code", 1000i64);
    ws.set("close_reason", "bye");
    let mut migrator = Migrator::new();
    let first = from_state(&migrator.migrate(Value::Dict(handshake)).unwrap()).unwrap();
    assert!(first.websocket.is_none());
    let merged = from_state(&migrator.migrate(Value::Dict(ws)).unwrap()).unwrap();
    let websocket = merged.websocket.unwrap();
    assert_eq!(merged.id, "f-1");
    assert_eq!(websocket.messages.len(), 1);
    assert!(!websocket.messages[0].injected);
    assert_eq!(websocket.closed_by_client, Some(true));
    assert_eq!(websocket.close_code, Some(1000));
}

#[test]
fn version_4_connections_get_shared_ids() {
    // Version 4: no connection ids yet, `ssl_*` names, no `tls_extensions`.
    let mut d = v7_flow().as_dict().unwrap().clone();
    d.set("version", 4i64);
    for key in ["client_conn", "server_conn"] {
        if let Some(Value::Dict(conn)) = d.get_mut(key) {
            conn.remove("id");
            let established = conn.remove("tls_established").unwrap();
            conn.set("ssl_established", established);
            let setup = conn.remove("timestamp_tls_setup").unwrap();
            conn.set("timestamp_ssl_setup", setup);
            conn.remove("tls_extensions");
        }
    }
    let mut migrator = Migrator::new();
    let a = from_state(&migrator.migrate(Value::Dict(d.clone())).unwrap()).unwrap();
    let b = from_state(&migrator.migrate(Value::Dict(d)).unwrap()).unwrap();
    let id = |f: &flowtap_proto::v1::Flow| f.client_conn.as_ref().unwrap().id.clone();
    assert_eq!(id(&a).len(), 36);
    assert_eq!(id(&a), id(&b), "flows of one connection share its id");
}

#[test]
fn tuple_versions_from_mitmproxy_2() {
    // (2, 0, x): nested `{"address": …}` is already flattened; the 2.0→3.0 converter adds
    // mitmcert and server tls_version, then 3.0→4 switches to integers.
    let mut d = v7_flow().as_dict().unwrap().clone();
    d.set(
        "version",
        Value::List(vec![Value::Int(2), Value::Int(0), Value::Int(2)]),
    );
    for key in ["client_conn", "server_conn"] {
        if let Some(Value::Dict(conn)) = d.get_mut(key) {
            conn.remove("id");
            let established = conn.remove("tls_established").unwrap();
            conn.set("ssl_established", established);
            let setup = conn.remove("timestamp_tls_setup").unwrap();
            conn.set("timestamp_ssl_setup", setup);
            conn.remove("tls_extensions");
            conn.remove("mitmcert");
        }
    }
    let migrated = migrate(Value::Dict(d)).unwrap();
    assert_exact_schema(&migrated);
}
