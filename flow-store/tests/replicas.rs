//! Archive replicas: two real `flow-store` processes in front of one PostgreSQL database, with
//! several clients appending at once through both, as many proxies do behind a Kubernetes
//! Service. The same flow sent through both replicas (a proxy re-sending what it spooled while
//! its replica was away) is stored once; each replica's queries and Watch see every
//! replica's appends.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use flowtap_flow_store::client::RemoteStore;
use flowtap_proto::v1::WatchRequest;
use futures_util::StreamExt;
use support::{StoreProcess, http_flow};

const CLIENTS: usize = 4;
const BATCHES: usize = 25;
const BATCH: usize = 20;

/// Appends `flows` through `store` in one Append call; returns how many it stored.
async fn append(store: &RemoteStore, flows: Vec<flowtap_proto::v1::Flow>) -> u64 {
    let parts: Vec<_> = flows
        .into_iter()
        .flat_map(flowtap_flow_store::flow_parts)
        .collect();
    store
        .client()
        .append(tokio_stream::iter(parts))
        .await
        .expect("append through a replica")
        .into_inner()
        .stored
}

async fn ids(store: &RemoteStore) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .list("", |summary| ids.push(summary.id))
        .await
        .expect("list through a replica");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_postgres_store_each_flow_once_and_see_each_other() {
    let database = support::postgres_database().await;
    // The first replica creates the schema; the second finds it.
    let mut first = StoreProcess::start("127.0.0.1:0", &database);
    let mut second = StoreProcess::start("127.0.0.1:0", &database);
    let replicas = [
        RemoteStore::connect(&format!("http://{}", first.address))
            .await
            .expect("connect to the first replica"),
        RemoteStore::connect(&format!("http://{}", second.address))
            .await
            .expect("connect to the second replica"),
    ];
    let watch = replicas[0]
        .client()
        .watch(WatchRequest {
            filter: String::new(),
        })
        .await
        .expect("watch the first replica")
        .into_inner();

    // Each client sends its own flows through one replica, and every fourth batch again
    // through the other one, concurrently with everybody else.
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let replicas = replicas.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..BATCHES {
                let flows: Vec<_> = (0..BATCH)
                    .map(|n| {
                        let id = format!("client{client}-batch{batch}-flow{n}");
                        http_flow(&id, "example.com", &format!("/{id}"), 200)
                    })
                    .collect();
                let home = &replicas[client % 2];
                assert_eq!(append(home, flows.clone()).await, BATCH as u64);
                if batch % 4 == 0 {
                    let other = &replicas[(client + 1) % 2];
                    assert_eq!(append(other, flows).await, BATCH as u64);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("an appending client");
    }

    let total = CLIENTS * BATCHES * BATCH;
    let expected: BTreeSet<String> = (0..CLIENTS)
        .flat_map(|c| {
            (0..BATCHES)
                .flat_map(move |b| (0..BATCH).map(move |n| format!("client{c}-batch{b}-flow{n}")))
        })
        .collect();
    for (index, replica) in replicas.iter().enumerate() {
        let listed = ids(replica).await;
        assert_eq!(listed.len(), total, "replica {index} lists each flow once");
        let distinct: BTreeSet<String> = listed.into_iter().collect();
        assert_eq!(distinct, expected, "replica {index} lists every flow");
    }

    // The watcher on the first replica saw the flows appended through the second one too.
    let mut seen = BTreeSet::new();
    let mut watch = watch.map(|item| item.expect("a watch item").id);
    while seen.len() < total {
        let id = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("a watched flow within 30 s")
            .expect("the watch stream stays open");
        seen.insert(id);
    }
    assert_eq!(
        seen, expected,
        "Watch on one replica sees every replica's appends"
    );
    first.kill();
    second.kill();
}
