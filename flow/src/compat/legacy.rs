//! Converters from mitmproxy 0.11 (`(0, 11)`) up to format version 11.

use bytes::Bytes;

use super::{Migrator, Step, Version, rename, sub, sub_opt};
use crate::tnetstring::{Dict, Value};

pub(super) fn convert(m: &mut Migrator, version: Version, mut d: Dict) -> Result<Dict, Step> {
    let next = match version {
        Version::Tuple(0, minor @ (11 | 12 | 14)) => tuple(&[0, minor + 1]),
        Version::Tuple(0, 13) => {
            v013_014(&mut d)?;
            tuple(&[0, 14])
        }
        Version::Tuple(0, 15) => {
            v015_016(&mut d);
            tuple(&[0, 16])
        }
        Version::Tuple(0, 16) => {
            sub(&mut d, "server_conn")?.set("peer_address", Value::Null);
            tuple(&[0, 17])
        }
        Version::Tuple(0, 17) => {
            d = convert_unicode(d);
            rename(sub(&mut d, "server_conn")?, "peer_address", "ip_address");
            d.set("marked", false);
            tuple(&[0, 18])
        }
        Version::Tuple(0, 18) => {
            d = convert_unicode(d);
            v018_019(&mut d)?;
            tuple(&[0, 19])
        }
        Version::Tuple(0, 19) => {
            d = convert_unicode(d);
            tuple(&[1, 0, 0])
        }
        Version::Tuple(1, 0) => {
            v100_200(&mut d)?;
            tuple(&[2, 0, 0])
        }
        Version::Tuple(2, 0) => {
            sub(&mut d, "client_conn")?.set("mitmcert", Value::Null);
            server_and_via(&mut d, |conn| conn.set("tls_version", Value::Null))?;
            tuple(&[3, 0, 0])
        }
        Version::Tuple(3, 0) => Value::Int(4),
        Version::Int(4) => {
            v4_5(m, &mut d)?;
            Value::Int(5)
        }
        Version::Int(5) => {
            each_conn(&mut d, |conn| {
                rename(conn, "ssl_established", "tls_established");
                rename(conn, "timestamp_ssl_setup", "timestamp_tls_setup");
            })?;
            Value::Int(6)
        }
        Version::Int(6) => {
            sub(&mut d, "client_conn")?.set("tls_extensions", Value::Null);
            Value::Int(7)
        }
        Version::Int(7) => {
            for key in ["request", "response"] {
                if let Some(message) = sub_opt(&mut d, key) {
                    message.set("trailers", Value::Null);
                }
            }
            Value::Int(8)
        }
        Version::Int(8) => {
            v8_9(&mut d);
            Value::Int(9)
        }
        Version::Int(9) => {
            v9_10(&mut d)?;
            Value::Int(10)
        }
        Version::Int(10) => {
            each_conn(&mut d, v10_11_conn)?;
            Value::Int(11)
        }
        _ => return Err(Step::Unsupported),
    };
    d.set("version", next);
    Ok(d)
}

fn tuple(parts: &[i64]) -> Value {
    Value::List(parts.iter().map(|p| Value::Int(*p)).collect())
}

/// Applies `f` to `client_conn`, `server_conn` and, when it is a dict, `server_conn.via`
/// (the upstream proxy connection, a nested connection dict before format version 19).
fn each_conn(d: &mut Dict, mut f: impl FnMut(&mut Dict)) -> Result<(), Step> {
    f(sub(d, "client_conn")?);
    server_and_via(d, f)
}

fn server_and_via(d: &mut Dict, mut f: impl FnMut(&mut Dict)) -> Result<(), Step> {
    let server = sub(d, "server_conn")?;
    f(server);
    if let Some(via) = sub_opt(server, "via") {
        f(via);
    }
    Ok(())
}

/// `convert_unicode`: every dict key becomes text, and so do `type`, `id`,
/// `request.first_line_format` and `error.msg`.
fn convert_unicode(d: Dict) -> Dict {
    let mut d = keys_to_text(d);
    for key in ["type", "id"] {
        to_text(&mut d, key);
    }
    if let Some(request) = sub_opt(&mut d, "request") {
        to_text(request, "first_line_format");
    }
    if let Some(error) = sub_opt(&mut d, "error") {
        to_text(error, "msg");
    }
    d
}

fn keys_to_text(d: Dict) -> Dict {
    d.into_iter()
        .map(|(k, v)| {
            let k = match k {
                Value::Bytes(b) => Value::Text(String::from_utf8_lossy(&b).into_owned()),
                other => other,
            };
            let v = match v {
                Value::Dict(inner) => Value::Dict(keys_to_text(inner)),
                other => other,
            };
            (k, v)
        })
        .collect()
}

fn to_text(d: &mut Dict, key: &str) {
    if let Some(Value::Bytes(b)) = d.get(key) {
        let text = String::from_utf8_lossy(b).into_owned();
        d.set(key, text);
    }
}

fn v013_014(d: &mut Dict) -> Result<(), Step> {
    let request = sub(d, "request")?;
    rename(request, "form_in", "first_line_format");
    let version = http_version(request.remove("httpversion").as_ref());
    request.set("http_version", version);
    if let Some(response) = sub_opt(d, "response") {
        let version = http_version(response.remove("httpversion").as_ref());
        response.set("http_version", version);
        rename(response, "code", "status_code");
        rename(response, "content", "body");
    }
    let server = sub(d, "server_conn")?;
    server.remove("state");
    server.set("via", Value::Null);
    Ok(())
}

/// `(1, 1)` → `b"HTTP/1.1"`.
fn http_version(tuple: Option<&Value>) -> Value {
    let parts: Vec<String> = tuple
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .map(|p| match p {
            Value::Int(i) => i.to_string(),
            other => other.as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    Value::Bytes(Bytes::from(format!("HTTP/{}", parts.join("."))))
}

fn v015_016(d: &mut Dict) {
    for key in ["request", "response"] {
        if let Some(message) = sub_opt(d, key)
            && message.contains_key("body")
        {
            rename(message, "body", "content");
        }
    }
    if let Some(response) = sub_opt(d, "response")
        && response.contains_key("msg")
    {
        rename(response, "msg", "reason");
    }
    if let Some(request) = sub_opt(d, "request") {
        request.remove("form_out");
    }
}

fn v018_019(d: &mut Dict) -> Result<(), Step> {
    if let Some(request) = sub_opt(d, "request") {
        request.remove("stickyauth");
        request.remove("stickycookie");
    }
    let client = sub(d, "client_conn")?;
    for key in ["sni", "alpn_proto_negotiated", "cipher_name", "tls_version"] {
        client.set(key, Value::Null);
    }
    server_and_via(d, |conn| conn.set("alpn_proto_negotiated", Value::Null))?;
    d.set("mode", "regular");
    d.set("metadata", Dict::new());
    Ok(())
}

/// Nested `{"address": (host, port)}` objects become plain tuples.
fn v100_200(d: &mut Dict) -> Result<(), Step> {
    fn flatten(conn: &mut Dict, key: &str) {
        let inner = conn
            .get(key)
            .and_then(Value::as_dict)
            .and_then(|a| a.get("address"))
            .cloned();
        if let Some(address) = inner {
            conn.set(key, address);
        }
    }
    flatten(sub(d, "client_conn")?, "address");
    server_and_via(d, |conn| {
        for key in ["address", "source_address", "ip_address"] {
            flatten(conn, key);
        }
    })
}

fn v4_5(m: &mut Migrator, d: &mut Dict) -> Result<(), Step> {
    fn key(conn: &Dict, address: &str) -> String {
        format!("{:?}/{:?}", conn.get("timestamp_start"), conn.get(address))
    }
    fn id_for(ids: &mut std::collections::HashMap<String, String>, key: String) -> String {
        ids.entry(key)
            .or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone()
    }
    let client = sub(d, "client_conn")?;
    let id = id_for(&mut m.client_ids, key(client, "address"));
    client.set("id", id);
    let ids = &mut m.server_ids;
    server_and_via(d, |conn| {
        let id = id_for(ids, key(conn, "source_address"));
        conn.set("id", id);
    })
}

fn v8_9(d: &mut Dict) {
    let mut request_replay = false;
    if let Some(request) = sub_opt(d, "request") {
        request.remove("first_line_format");
        request.set("authority", Bytes::new());
        request_replay = request.remove("is_replay").is_some_and(|v| v.is_truthy());
    }
    let response_replay = sub_opt(d, "response")
        .and_then(|r| r.remove("is_replay"))
        .is_some_and(|v| v.is_truthy());
    let is_replay = if request_replay {
        Value::from("request")
    } else if response_replay {
        Value::from("response")
    } else {
        Value::Null
    };
    d.set("is_replay", is_replay);
}

fn v9_10(d: &mut Dict) -> Result<(), Step> {
    fn conv_conn(conn: &mut Dict) {
        conn.set("state", 0i64);
        conn.set("error", Value::Null);
        let tls = conn
            .get("tls_established")
            .cloned()
            .unwrap_or(Value::Bool(false));
        conn.set("tls", tls);
        let alpn = conn
            .get("alpn_proto_negotiated")
            .cloned()
            .unwrap_or(Value::Null);
        let offers = if alpn.is_truthy() {
            Value::List(vec![alpn])
        } else {
            Value::Null
        };
        conn.set("alpn_offers", offers);
        let cipher = conn.get("cipher_name").cloned().unwrap_or(Value::Null);
        let ciphers = if cipher.is_truthy() {
            Value::List(vec![cipher])
        } else {
            Value::Null
        };
        conn.set("cipher_list", ciphers);
    }
    fn certificate_list(conn: &mut Dict, key: &str) {
        let cert = conn.remove(key).filter(Value::is_truthy);
        conn.set("certificate_list", Value::List(cert.into_iter().collect()));
    }
    let client = sub(d, "client_conn")?;
    client.set(
        "sockname",
        Value::List(vec![Value::from(""), Value::Int(0)]),
    );
    certificate_list(client, "clientcert");
    conv_conn(client);
    server_and_via(d, |conn| {
        certificate_list(conn, "cert");
        conn.set("cipher_name", Value::Null);
        conn.set("via2", Value::Null);
        conv_conn(conn);
    })
}

fn v10_11_conn(conn: &mut Dict) {
    if let Some(Value::Bytes(b)) = conn.get("sni") {
        let sni = String::from_utf8_lossy(b).into_owned();
        conn.set("sni", sni);
    }
    rename(conn, "alpn_proto_negotiated", "alpn");
    for key in ["alpn_offers", "cipher_list"] {
        if !conn.get(key).is_some_and(Value::is_truthy) {
            conn.set(key, Value::List(Vec::new()));
        }
    }
}
