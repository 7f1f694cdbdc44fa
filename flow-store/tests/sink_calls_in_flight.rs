//! A StoreSink keeps several Append calls in flight: every flow is still stored once, and a
//! flow pushed twice is stored as pushed last.

mod support;

use std::time::Duration;

use flowtap_flow_store::{SinkConfig, StoreSink};
use support::http_flow;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_pushed_again_while_in_flight_is_stored_as_pushed_last() {
    let (_db_dir, store) = support::sqlite_store();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(flowtap_flow_store::server::serve(
        listener,
        store.clone(),
        std::future::pending(),
    ));
    let spool = tempfile::tempdir().unwrap();
    let mut config = SinkConfig::new(format!("http://{address}"), spool.path());
    config.batch_max_flows = 10;
    config.calls_in_flight = 4;
    let sink = StoreSink::start(config).unwrap();

    let ids: Vec<String> = (0..300).map(|i| format!("again-{i:03}")).collect();
    // Each id twice, the second version 30 flows (three batches) after the first: close
    // enough that both are in flight together unless the sink holds the second back.
    for round in 0..10 {
        for version in [200, 404] {
            for id in &ids[round * 30..(round + 1) * 30] {
                sink.push(http_flow(id, "example.com", "/", version))
                    .unwrap();
            }
        }
    }
    tokio::time::timeout(Duration::from_secs(60), sink.flush())
        .await
        .expect("every flow delivered");

    let mut stored = Vec::new();
    store
        .list("", |s| stored.push((s.id, s.status_code)))
        .await
        .unwrap();
    assert_eq!(stored.len(), ids.len(), "each flow stored once");
    let stale: Vec<_> = stored.iter().filter(|(_, code)| *code != 404).collect();
    assert!(stale.is_empty(), "first versions won: {stale:?}");
    sink.close().await;
}
