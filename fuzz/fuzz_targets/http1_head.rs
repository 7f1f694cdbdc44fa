//! Fuzz target: the HTTP/1 request head as a client sends it (proxy-core's codec, read a few
//! bytes at a time, then the checks the proxy makes before anything goes upstream: target and
//! framing).
//!
//! What must hold for any input: no panic; a head the proxy would serve took no more bytes than
//! the input holds, and ends with the blank line that ends every head.
#![no_main]

use flowtap_proxy_core::fuzzing::{HeadOutcome, request_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let HeadOutcome::Served { consumed } = request_head(data) {
        assert!(consumed <= data.len(), "a head longer than its input");
        let head = &data[..consumed];
        assert!(
            head.ends_with(b"\n"),
            "a served head ends with its blank line: {head:?}"
        );
    }
});
