//! Fuzz target: the flow-file reader (`FlowReader`: tnetstring, migration of old versions,
//! state dicts, and HAR when the input starts with `{`).
//!
//! What must hold for any input: no panic; every flow read is written back (`encode_flow`) as
//! bytes that read back as exactly one flow that writes the same bytes; the reader's offset
//! never passes the input; the model's accessors, HAR export and a filter of every operator
//! work on every flow read.
#![no_main]

use std::sync::OnceLock;

use flowtap_flow::flowfile::{FlowReader, encode_flow, read_flows};
use flowtap_flow::{Filter, FlowExt};
use libfuzzer_sys::fuzz_target;

/// One filter per operator, so the matcher sees fuzzed flows.
const FILTERS: &[&str] = &[
    "~a | ~e | ~http | ~marked | ~replay | ~replayq | ~replays | ~q | ~s | ~tcp | ~udp | ~dns | ~websocket | ~all",
    "~b x | ~bq x | ~bs x | ~t x | ~tq x | ~ts x | ~d x | ~dst x",
    "~h x | ~hq x | ~hs x | ~m x | ~src x | ~u x | ~meta x | ~marker x | ~comment x | ~c 200",
];

fn filters() -> &'static [Filter] {
    static FILTERS_PARSED: OnceLock<Vec<Filter>> = OnceLock::new();
    FILTERS_PARSED.get_or_init(|| {
        FILTERS
            .iter()
            .map(|f| Filter::parse(f).expect("the built-in filters parse"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut reader = FlowReader::new(data);
    let mut flows = Vec::new();
    for item in reader.by_ref() {
        match item {
            Ok(flow) => flows.push(flow),
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    assert!(
        reader.offset() <= data.len() as u64,
        "offset within the input"
    );
    for flow in &flows {
        let encoded = encode_flow(flow);
        let again = match read_flows(&encoded) {
            Ok(again) => again,
            Err(e) => panic!("a written flow does not read back: {e}\n{flow:?}"),
        };
        assert_eq!(again.len(), 1, "one flow written, one read");
        assert_eq!(encode_flow(&again[0]), encoded, "writing is stable");
        let _ = flow.summary_line();
        let _ = flow.request_line();
        for filter in filters() {
            let _ = filter.matches(flow);
        }
    }
    let _ = flowtap_flow::har::export_json(&flows);
});
