//! The proxy-to-store path: a StoreSink pushing flows to a real flow-store process that is
//! killed with SIGKILL mid-way and restarted on the same address and store.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use flowtap_flow_store::client::RemoteStore;
use flowtap_flow_store::{SinkConfig, StoreSink};
use support::{StoreProcess, http_flow};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_killed_mid_push_loses_no_flow() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flows.db");
    let sqlite = format!("sqlite:{}", db.display());
    let mut store = StoreProcess::start("127.0.0.1:0", &sqlite);
    let address = store.address.clone();
    let mut config = SinkConfig::new(format!("http://{address}"), dir.path().join("spool"));
    config.queue_capacity = 64;
    config.batch_max_flows = 50;
    config.retry_interval = Duration::from_millis(50);
    config.request_timeout = Duration::from_secs(5);
    let sink = StoreSink::start(config).unwrap();

    let ids: Vec<String> = (0..1000).map(|i| format!("spooled-{i:04}")).collect();
    let flow = |i: usize| {
        let mut flow = http_flow(&ids[i], "example.com", &format!("/{i}"), 200);
        flow.response.as_mut().unwrap().content = Some(vec![b'x'; 1024].into());
        flow
    };
    // The store is up: the first 300 are delivered.
    for i in 0..300 {
        sink.push(flow(i))
            .expect("push never fails while the disk works");
    }
    tokio::time::timeout(Duration::from_secs(60), sink.flush())
        .await
        .expect("the first flows delivered while the store is up");
    // Killed in the middle of the next burst, while the sink is sending batches.
    for i in 300..1000 {
        if i == 450 {
            store.kill();
        }
        sink.push(flow(i))
            .expect("push never fails while the disk works");
    }
    // Nothing pushed after the kill can have been stored yet.
    assert!(sink.pending() >= 550, "pending {}", sink.pending());

    let restarted = StoreProcess::start(&address, &sqlite);
    assert_eq!(restarted.address, address);
    tokio::time::timeout(Duration::from_secs(120), sink.flush())
        .await
        .expect("every flow delivered after the restart");

    let remote = RemoteStore::connect(&format!("http://{address}"))
        .await
        .unwrap();
    let mut stored = Vec::new();
    remote.list("", |s| stored.push(s.id)).await.unwrap();
    let unique: HashSet<_> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), 1000, "each flow stored once");
    assert_eq!(unique, ids.iter().cloned().collect::<HashSet<_>>());
    let flow = remote.flow("spooled-0999", 0).await.unwrap();
    assert_eq!(flow.response.unwrap().content.unwrap().len(), 1024);

    sink.close().await;
    let leftovers = std::fs::read_dir(dir.path().join("spool")).unwrap().count();
    assert_eq!(leftovers, 0, "delivered spool files are removed");
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_spooled_by_a_closed_sink_reach_the_store_from_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    // An address nothing listens on any more.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = SinkConfig::new(format!("http://{gone}"), &spool_dir);
    config.retry_interval = Duration::from_millis(20);
    let sink = StoreSink::start(config).unwrap();
    for i in 0..100 {
        sink.push(http_flow(&format!("later-{i:03}"), "example.com", "/", 200))
            .unwrap();
    }
    sink.close().await;
    let spool = flowtap_flow_store::spool::Spool::open(&spool_dir).unwrap();
    assert_eq!(spool.left_over_records().unwrap(), 100);
    drop(spool);

    // The next start, with the store up: the left-over flows are delivered and flush waits.
    let (_db_dir, store) = support::sqlite_store();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(flowtap_flow_store::server::serve(
        listener,
        store.clone(),
        std::future::pending(),
    ));
    let sink = StoreSink::start(SinkConfig::new(format!("http://{address}"), &spool_dir)).unwrap();
    assert_eq!(sink.pending(), 100);
    tokio::time::timeout(Duration::from_secs(60), sink.flush())
        .await
        .expect("the spool delivered");
    assert_eq!(store.list("", |_| ()).await.unwrap(), 100);
    sink.close().await;
    assert_eq!(std::fs::read_dir(&spool_dir).unwrap().count(), 0);
}
