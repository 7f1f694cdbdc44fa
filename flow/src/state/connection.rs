//! `client_conn` / `server_conn` (spec 5.4): dataclass fields in declaration order.

use bytes::Bytes;
use flowtap_proto::v1::{Address, Connection, ServerSpec};

use super::StateError;
use super::fields::{self, Fields};
use crate::tnetstring::{Dict, Value};

/// `connection.Client.get_state()`.
pub(crate) fn client_to_state(conn: &Connection) -> Value {
    let mut d = common_to_state(conn);
    d.set("mitmcert", conn.mitmcert.clone());
    d.set("proxy_mode", conn.proxy_mode.clone());
    Value::Dict(d)
}

/// `connection.Server.get_state()`.
pub(crate) fn server_to_state(conn: &Connection) -> Value {
    let mut d = common_to_state(conn);
    d.set("address", address_to_state(conn.address.as_ref()));
    d.set("timestamp_tcp_setup", conn.timestamp_tcp_setup);
    d.set(
        "via",
        conn.via.as_ref().map_or(Value::Null, |via| {
            Value::List(vec![
                Value::from(via.scheme.clone()),
                address_to_state(via.address.as_ref()),
            ])
        }),
    );
    Value::Dict(d)
}

fn common_to_state(conn: &Connection) -> Dict {
    let mut d = Dict::new();
    d.set("peername", address_to_state(conn.peername.as_ref()));
    d.set("sockname", address_to_state(conn.sockname.as_ref()));
    d.set("id", conn.id.clone());
    d.set("transport_protocol", conn.transport_protocol.clone());
    d.set("error", conn.error.clone());
    d.set("tls", conn.tls);
    d.set("certificate_list", bytes_list(&conn.certificate_list));
    d.set("alpn", conn.alpn.clone());
    d.set("alpn_offers", bytes_list(&conn.alpn_offers));
    d.set("cipher", conn.cipher.clone());
    let ciphers = conn
        .cipher_list
        .iter()
        .cloned()
        .map(Value::Text)
        .collect::<Vec<_>>();
    d.set("cipher_list", Value::List(ciphers));
    d.set("tls_version", conn.tls_version.clone());
    d.set("sni", conn.sni.clone());
    d.set("timestamp_start", conn.timestamp_start);
    d.set("timestamp_end", conn.timestamp_end);
    d.set("timestamp_tls_setup", conn.timestamp_tls_setup);
    d
}

fn bytes_list(items: &[Bytes]) -> Value {
    Value::List(items.iter().cloned().map(Value::Bytes).collect())
}

pub(crate) fn address_to_state(address: Option<&Address>) -> Value {
    address.map_or(Value::Null, |a| {
        Value::List(vec![
            Value::from(a.host.clone()),
            Value::Int(i64::from(a.port)),
        ])
    })
}

/// Reads either connection; client-only and server-only keys are read when present.
pub(crate) fn from_state(f: &Fields<'_>) -> Result<Connection, StateError> {
    let via = match f.get("via") {
        None | Some(Value::Null) => None,
        Some(Value::List(items)) if items.len() == 2 => Some(ServerSpec {
            scheme: fields::as_string(&items[0], "via.scheme")?,
            address: address_from_state(&items[1], "via.address")?,
        }),
        Some(_) => {
            return Err(StateError::new(
                "server_conn.via",
                "expected [scheme, [host, port]]",
            ));
        }
    };
    Ok(Connection {
        id: f.opt_string("id")?.unwrap_or_default(),
        peername: address_opt(f, "peername")?,
        sockname: address_opt(f, "sockname")?,
        transport_protocol: f
            .opt_string("transport_protocol")?
            .unwrap_or_else(|| "tcp".to_owned()),
        error: f.opt_string("error")?,
        tls: f.opt_bool("tls")?.unwrap_or(false),
        certificate_list: bytes_items(f, "certificate_list")?,
        alpn: f.opt_bytes("alpn")?,
        alpn_offers: bytes_items(f, "alpn_offers")?,
        cipher: f.opt_string("cipher")?,
        cipher_list: f
            .list("cipher_list")?
            .iter()
            .enumerate()
            .map(|(i, v)| fields::as_string(v, &f.item_path("cipher_list", i)))
            .collect::<Result<_, _>>()?,
        tls_version: f.opt_string("tls_version")?,
        sni: f.opt_string("sni")?,
        timestamp_start: f.opt_float("timestamp_start")?,
        timestamp_end: f.opt_float("timestamp_end")?,
        timestamp_tls_setup: f.opt_float("timestamp_tls_setup")?,
        mitmcert: f.opt_bytes("mitmcert")?,
        proxy_mode: f.opt_string("proxy_mode")?.unwrap_or_default(),
        address: address_opt(f, "address")?,
        timestamp_tcp_setup: f.opt_float("timestamp_tcp_setup")?,
        via,
        // Not state.
        client_hello: Bytes::new(),
        socks5_auth: None,
    })
}

fn bytes_items(f: &Fields<'_>, key: &str) -> Result<Vec<Bytes>, StateError> {
    f.list(key)?
        .iter()
        .enumerate()
        .map(|(i, v)| fields::as_bytes(v, &f.item_path(key, i)))
        .collect()
}

fn address_opt(f: &Fields<'_>, key: &str) -> Result<Option<Address>, StateError> {
    match f.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => address_from_state(value, key),
    }
}

/// `[host, port]`, or up to four elements for IPv6 (flowinfo and scope id are dropped).
fn address_from_state(value: &Value, path: &str) -> Result<Option<Address>, StateError> {
    match value {
        Value::Null => Ok(None),
        Value::List(items) if (2..=4).contains(&items.len()) => {
            let port = fields::as_int(&items[1], path)?;
            Ok(Some(Address {
                host: fields::as_string(&items[0], path)?,
                port: u32::try_from(port)
                    .map_err(|_| StateError::new(path, format!("port {port} is out of range")))?,
            }))
        }
        _ => Err(StateError::new(path, "expected [host, port]")),
    }
}
