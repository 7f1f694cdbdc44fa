//! Shared helpers for flowtap-flow's behaviour tests.
#![allow(dead_code, unreachable_pub)]

pub mod old_flows;

use std::path::PathBuf;

use flowtap_flow::FlowReader;
use flowtap_proto::v1::Flow;

/// `fixtures/mitmproxy-12` in the repository.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mitmproxy-12")
}

/// Every `*.mitm` fixture, sorted by name.
pub fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("the mitmproxy-12 fixtures are in the repository")
        .map(|e| e.expect("readable fixtures dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "mitm"))
        .collect();
    files.sort();
    files
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).expect("fixture exists")
}

/// All flows of a fixture; panics on any read error.
pub fn load(name: &str) -> Vec<Flow> {
    FlowReader::new(&fixture_bytes(name)[..])
        .collect::<Result<Vec<_>, _>>()
        .expect("fixture loads")
}
