//! Truncated and corrupt flow files: the error names the byte offset and the flows before the
//! damage are still returned.

mod support;

use flowtap_flow::{FlowReadError, FlowReader};
use support::fixture_bytes;

/// Offsets where each flow of `all-mixed.mitm` starts, plus the end of the file.
fn boundaries(data: &[u8]) -> Vec<u64> {
    let mut reader = FlowReader::new(data);
    let mut offsets = vec![0];
    while let Some(flow) = reader.next() {
        flow.unwrap();
        offsets.push(reader.offset());
    }
    offsets
}

#[test]
fn truncated_file_keeps_earlier_flows_and_names_the_offset() {
    let data = fixture_bytes("all-mixed.mitm");
    let bounds = boundaries(&data);
    assert_eq!(bounds.len(), 7);
    assert_eq!(*bounds.last().unwrap(), data.len() as u64);
    let cut = (bounds[2] + 100) as usize;
    let (flows, error) = FlowReader::new(&data[..cut]).read_all();
    assert_eq!(flows.len(), 2);
    let error = error.expect("a truncated file is an error");
    assert!(
        matches!(error, FlowReadError::Corrupt { flows_read: 2, .. }),
        "{error}"
    );
    assert_eq!(error.offset(), cut as u64);
    assert!(
        error.to_string().contains(&format!("byte {cut}")),
        "{error}"
    );
}

#[test]
fn truncated_inside_a_length_prefix() {
    let data = fixture_bytes("all-mixed.mitm");
    let bounds = boundaries(&data);
    let cut = (bounds[1] + 2) as usize;
    let (flows, error) = FlowReader::new(&data[..cut]).read_all();
    assert_eq!(flows.len(), 1);
    assert_eq!(error.unwrap().offset(), cut as u64);
}

#[test]
fn corrupt_length_prefix_is_reported_where_it_is() {
    let mut data = fixture_bytes("all-mixed.mitm");
    let bounds = boundaries(&data);
    let at = bounds[3] as usize + 1;
    data[at] = b'x';
    let (flows, error) = FlowReader::new(&data[..]).read_all();
    assert_eq!(flows.len(), 3);
    let error = error.unwrap();
    assert_eq!(error.offset(), at as u64);
    assert!(error.to_string().contains("length digit"), "{error}");
}

#[test]
fn corrupt_value_inside_a_flow() {
    let mut data = fixture_bytes("http-get-200.mitm");
    // `...7:version;2:21#}`: make the version's tag unknown.
    let at = data.len() - 2;
    assert_eq!(data[at], b'#');
    data[at] = b'?';
    let error = FlowReader::new(&data[..]).read_all().1.unwrap();
    assert_eq!(error.offset(), at as u64);
    assert!(error.to_string().contains("unknown type tag"), "{error}");
}

#[test]
fn newer_versions_and_non_flows_are_clear_errors() {
    let data = fixture_bytes("http-get-200.mitm");
    let text = String::from_utf8_lossy(&data).into_owned();
    let newer = text.replace("7:version;2:21#}", "7:version;2:22#}");
    let error = FlowReader::new(newer.as_bytes()).read_all().1.unwrap();
    assert!(
        error.to_string().contains("version 22, please update"),
        "{error}"
    );

    let mut two = data.clone();
    two.extend_from_slice(b"5:hello,");
    let (flows, error) = FlowReader::new(&two[..]).read_all();
    assert_eq!(flows.len(), 1);
    let error = error.unwrap();
    assert!(matches!(error, FlowReadError::Migrate { .. }), "{error}");
    assert_eq!(error.offset(), data.len() as u64);
}

#[test]
fn empty_file_and_bom() {
    assert_eq!(FlowReader::new(&b""[..]).read_all().0.len(), 0);
    let mut with_bom = vec![0xEF, 0xBB, 0xBF];
    with_bom.extend(fixture_bytes("tcp-raw.mitm"));
    let (flows, error) = FlowReader::new(&with_bom[..]).read_all();
    assert!(error.is_none());
    assert_eq!(flows[0].r#type, "tcp");
}
