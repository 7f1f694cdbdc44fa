//! HAR export in mitmproxy's `savehar` shape and import back through `FlowReader`.
//! (The exact match with mitmproxy's own output is in `mitmproxy_roundtrip.rs`.)

mod support;

use flowtap_flow::flowfile::read_flows;
use flowtap_flow::har::{export_json, import};
use flowtap_flow::model::RequestExt;
use serde_json::Value;
use support::load;

#[test]
fn export_has_mitmproxys_structure_and_skips_non_http() {
    let flows = load("all-mixed.mitm");
    let har: Value = serde_json::from_str(&export_json(&flows)).unwrap();
    assert_eq!(har["log"]["version"], "1.2");
    assert_eq!(har["log"]["creator"]["name"], "flowtap");
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "tcp and dns flows are skipped");
    let first = &entries[0];
    assert_eq!(first["request"]["url"], "http://127.0.0.1:18081/hello.txt");
    assert_eq!(first["startedDateTime"], "2026-11-21T05:19:58.427032+00:00");
    assert_eq!(
        first["response"]["content"]["text"],
        "hello from mitm fixture\n"
    );
    assert_eq!(first["response"]["content"]["size"], 24);
    assert_eq!(first["serverIPAddress"], "127.0.0.1");
    assert_eq!(entries[2]["response"]["status"], 0);
    assert!(
        entries[2]["response"]["_error"]
            .as_str()
            .unwrap()
            .contains("Connect call failed")
    );
    assert_eq!(entries[3]["_resourceType"], "websocket");
    assert_eq!(entries[3]["_webSocketMessages"][2]["data"], "AAFiaW5hcnk=");
}

#[test]
fn post_data_and_query_strings() {
    let flows = load("http-post-body.mitm");
    let har: Value = serde_json::from_str(&export_json(&flows)).unwrap();
    let request = &har["log"]["entries"][0]["request"];
    assert_eq!(request["postData"]["mimeType"], "application/json");
    assert_eq!(request["postData"]["text"], "{\"name\":\"mitm\",\"n\":42}");
    assert_eq!(request["queryString"][0]["name"], "x");
    assert_eq!(request["queryString"][0]["value"], "1");
}

#[test]
fn exported_har_reads_back_as_http_flows() {
    let flows = load("all-mixed.mitm");
    let json = export_json(&flows);
    let imported = read_flows(json.as_bytes()).unwrap();
    assert_eq!(imported.len(), 4);
    assert_eq!(
        imported,
        import(json.as_bytes())
            .unwrap()
            .into_iter()
            .map(|mut f| {
                // ids and creation times are new on every import
                let i = imported
                    .iter()
                    .position(|g| g.request == f.request)
                    .unwrap();
                f.id.clone_from(&imported[i].id);
                f.timestamp_created = imported[i].timestamp_created;
                f.client_conn.clone_from(&imported[i].client_conn);
                f.server_conn.clone_from(&imported[i].server_conn);
                f
            })
            .collect::<Vec<_>>()
    );
    let request = imported[1].request.as_ref().unwrap();
    assert_eq!(
        request.pretty_url(),
        "https://127.0.0.1:18443/secure/path?q=abc"
    );
    assert_eq!(imported[1].response.as_ref().unwrap().status_code, 200);
    let started = flows[1].request.as_ref().unwrap().timestamp_start;
    assert!((request.timestamp_start - started).abs() < 1e-5);
}

#[test]
fn broken_har_is_an_error() {
    assert!(import(b"{\"log\": {}}").is_err());
    assert!(read_flows(b"{ not json").is_err());
}
