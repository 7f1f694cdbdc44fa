//! Fuzz target: HAR import (`har::import`, what `FlowReader` does with a file starting `{`).
//!
//! What must hold for any input: no panic; the flows of an accepted document export
//! (`har::export_json`) to a document that imports again to as many flows with the same
//! methods and status codes.
//!
//! The round trip drops `Host` request headers first: the export writes
//! `request.pretty_url()`, whose host is the `Host` header's when there is one (mitmproxy's
//! `pretty_url`, which `savehar` writes too), and a document may give any text there
//! (`127.0.0.1:q8081`), which then is no URL to import, in mitmproxy as here. It skips
//! documents with an IPv6 host (any host with a `:`): the URL is written without brackets
//! (`http://::1:8080/`), as mitmproxy 12's `url.hostport` does, and that does not import.
#![no_main]

use flowtap_flow::har;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut flows) = har::import(data) else {
        return;
    };
    if flows
        .iter()
        .filter_map(|f| f.request.as_ref())
        .any(|r| r.host.contains(':'))
    {
        return;
    }
    for request in flows.iter_mut().filter_map(|f| f.request.as_mut()) {
        request
            .headers
            .retain(|h| !h.name.eq_ignore_ascii_case(b"host"));
    }
    let exported = har::export_json(&flows);
    let again = match har::import(exported.as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!("an exported HAR does not import: {e}\n{exported}"),
    };
    assert_eq!(
        again.len(),
        flows.len(),
        "every flow is exported and imported again"
    );
    for (a, b) in flows.iter().zip(&again) {
        let method = |f: &flowtap_proto::v1::Flow| f.request.as_ref().map(|r| r.method.clone());
        let status = |f: &flowtap_proto::v1::Flow| f.response.as_ref().map(|r| r.status_code);
        assert_eq!(method(a), method(b), "the method survives");
        assert_eq!(status(a), status(b), "the status code survives");
    }
});
