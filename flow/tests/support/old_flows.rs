//! Flow-state dicts in old format versions, built by hand from the converter table.

use bytes::Bytes;
use flowtap_flow::tnetstring::{Dict, Value};

pub fn b(s: &str) -> Value {
    Value::Bytes(Bytes::from(s.to_owned()))
}

pub fn addr(host: &str, port: i64) -> Value {
    Value::List(vec![Value::from(host), Value::Int(port)])
}

pub fn dict(items: &[(&str, Value)]) -> Value {
    let mut d = Dict::new();
    for (k, v) in items {
        d.set(k, v.clone());
    }
    Value::Dict(d)
}

/// An HTTP flow as mitmproxy 3.0–5.1 wrote it (format version 7).
pub fn v7_flow() -> Value {
    let client = dict(&[
        ("id", Value::from("c-1")),
        ("address", addr("127.0.0.1", 50000)),
        ("tls_established", Value::Bool(true)),
        ("clientcert", Value::Null),
        ("mitmcert", Value::Null),
        ("timestamp_start", Value::Float(1500000000.5)),
        ("timestamp_tls_setup", Value::Float(1500000000.6)),
        ("timestamp_end", Value::Null),
        ("sni", b("example.com")),
        ("cipher_name", Value::from("ECDHE-RSA-AES128-GCM-SHA256")),
        ("alpn_proto_negotiated", b("http/1.1")),
        ("tls_version", Value::from("TLSv1.2")),
        ("tls_extensions", Value::Null),
    ]);
    let server = dict(&[
        ("id", Value::from("s-1")),
        ("address", addr("example.com", 443)),
        ("ip_address", addr("93.184.216.34", 443)),
        ("source_address", addr("10.0.0.2", 40000)),
        ("tls_established", Value::Bool(true)),
        ("cert", Value::Bytes(real_certificate())),
        ("sni", b("example.com")),
        ("alpn_proto_negotiated", b("http/1.1")),
        ("tls_version", Value::from("TLSv1.2")),
        ("timestamp_start", Value::Float(1500000000.7)),
        ("timestamp_tcp_setup", Value::Float(1500000000.8)),
        ("timestamp_tls_setup", Value::Float(1500000000.9)),
        ("timestamp_end", Value::Null),
        ("via", Value::Null),
    ]);
    let headers = Value::List(vec![Value::List(vec![b("Host"), b("example.com")])]);
    let request = dict(&[
        ("first_line_format", Value::from("relative")),
        ("method", b("GET")),
        ("scheme", b("https")),
        ("host", b("example.com")),
        ("port", Value::Int(443)),
        ("path", b("/old")),
        ("http_version", b("HTTP/1.1")),
        ("headers", headers.clone()),
        ("content", b("")),
        ("timestamp_start", Value::Float(1500000001.0)),
        ("timestamp_end", Value::Float(1500000001.1)),
        ("is_replay", Value::Bool(false)),
    ]);
    let response = dict(&[
        ("http_version", b("HTTP/1.1")),
        ("status_code", Value::Int(200)),
        ("reason", b("OK")),
        ("headers", headers),
        ("content", b("body")),
        ("timestamp_start", Value::Float(1500000001.2)),
        ("timestamp_end", Value::Float(1500000001.3)),
        ("is_replay", Value::Bool(true)),
    ]);
    dict(&[
        ("id", Value::from("f-1")),
        ("error", Value::Null),
        ("client_conn", client),
        ("server_conn", server),
        ("type", Value::from("http")),
        ("intercepted", Value::Bool(false)),
        ("marked", Value::Bool(true)),
        ("metadata", dict(&[])),
        ("mode", Value::from("regular")),
        ("request", request),
        ("response", response),
        ("version", Value::Int(7)),
    ])
}

/// A real PEM certificate (mitmproxy parses certificates when it loads a flow).
fn real_certificate() -> Bytes {
    let flow = super::load("https-get.mitm").remove(0);
    flow.server_conn.expect("server_conn").certificate_list[0].clone()
}
