//! Fuzz target: proxy-core's chunked body decoder, read a few bytes at a time.
//!
//! What must hold for any input: no panic; a body that decodes is never longer than its input
//! (chunk data comes from the input, framing only removes bytes), and no chunk size line grows
//! the buffer past its limit (an endless one is refused: the decoder returns, it does not wait).
#![no_main]

use flowtap_proxy_core::fuzzing::chunked_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((body, trailers)) = chunked_body(data) {
        assert!(body.len() <= data.len(), "a body longer than its input");
        assert!(trailers <= data.len() / 2, "more trailers than input lines");
    }
});
