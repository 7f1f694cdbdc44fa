//! Fuzz target: HAR import (`har::import`, what `FlowReader` does with a file starting `{`).
//!
//! What must hold for any input: no panic; the flows of an accepted document export
//! (`har::export_json`) to a document that imports again to as many flows with the same
//! methods and status codes.
#![no_main]

use flowtap_flow::har;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(flows) = har::import(data) else {
        return;
    };
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
