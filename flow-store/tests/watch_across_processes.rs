//! Watch sees the flows that another process appends to the same database: a real
//! `flow-store` process and this test process each append, and each watches (the process over
//! gRPC, this one through its own [`Store`]), on SQLite and on a real PostgreSQL server.

mod support;

use std::time::Duration;

use flowtap_flow_store::client::RemoteStore;
use flowtap_flow_store::{Config, Store};
use flowtap_proto::v1::{FlowSummary, WatchRequest};
use futures_util::{Stream, StreamExt};
use support::{StoreProcess, http_flow};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let location = format!("sqlite:{}", dir.path().join("flows.db").display());
    watchers_see_both_processes(&location).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    watchers_see_both_processes(&support::postgres_database().await).await;
}

async fn next_id<S>(watch: &mut S) -> String
where
    S: Stream<Item = FlowSummary> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("a watched flow within 30 s")
        .expect("the watch stream stays open")
        .id
}

async fn watchers_see_both_processes(location: &str) {
    let here = Store::open(&location.parse().unwrap(), Config::default())
        .await
        .unwrap();
    let mut process = StoreProcess::start("127.0.0.1:0", location);
    let there = RemoteStore::connect(&format!("http://{}", process.address))
        .await
        .unwrap();
    let append_there = |flows: Vec<_>| {
        let parts: Vec<_> = flows
            .into_iter()
            .flat_map(flowtap_flow_store::flow_parts)
            .collect();
        let mut client = there.client();
        async move {
            let result = client.append(tokio_stream::iter(parts)).await.unwrap();
            result.into_inner().stored
        }
    };
    // Appended before anyone watches: seen by nobody.
    here.append(vec![http_flow("before-here", "example.com", "/", 404)])
        .await
        .unwrap();
    append_there(vec![http_flow("before-there", "example.com", "/", 404)]).await;

    let mut watch_here = here.watch("~c 404").await.unwrap();
    let request = WatchRequest {
        filter: String::new(),
    };
    let watch_there = there.client().watch(request).await.unwrap().into_inner();
    let mut watch_there = watch_there.map(|item| item.expect("a watch item"));

    here.append(vec![http_flow("here-404", "example.com", "/", 404)])
        .await
        .unwrap();
    let stored = append_there(vec![
        http_flow("there-200", "example.com", "/", 200),
        http_flow("there-404", "example.com", "/", 404),
    ])
    .await;
    assert_eq!(stored, 2);

    assert_eq!(next_id(&mut watch_here).await, "here-404");
    assert_eq!(
        next_id(&mut watch_here).await,
        "there-404",
        "the other process's flow"
    );
    for expected in ["here-404", "there-200", "there-404"] {
        assert_eq!(next_id(&mut watch_there).await, expected);
    }
    process.kill();
}
