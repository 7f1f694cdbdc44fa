//! `StoreClient`, what `flowtap flows` runs on: the same answers in process and over gRPC.

mod support;

use flowtap_flow_store::client::StoreClient;
use flowtap_flow_store::{Store, StoreLocation, server};

async fn exercise(client: &StoreClient, dir: &std::path::Path) {
    let fixture = support::fixtures_dir().join("http-post-body.mitm");
    assert_eq!(client.import_file(&fixture).await.unwrap(), 1);
    client
        .import_file(&support::fixtures_dir().join("tcp-raw.mitm"))
        .await
        .unwrap();

    let mut lines = Vec::new();
    assert_eq!(client.list("~m POST", |s| lines.push(s)).await.unwrap(), 1);
    let summary = &lines[0];
    assert_eq!(summary.method, "POST");
    assert_eq!(summary.http_version, "HTTP/1.1");
    assert_eq!(summary.reason, "OK");

    // Bodies cut at the preview limit.
    let flow = client.flow(&summary.id, 5).await.unwrap();
    assert_eq!(flow.request.unwrap().content.unwrap(), b"{\"nam"[..]);

    let out = dir.join("posts.mitm");
    client.export_file("~m POST", &out).await.unwrap();
    let exported = flowtap_flow::flowfile::read_flows(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0].id, summary.id);

    assert_eq!(client.delete("~tcp").await.unwrap(), 1);
    assert_eq!(client.list("", |_| ()).await.unwrap(), 1);
}

#[tokio::test]
async fn local_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let location = StoreLocation::Sqlite(dir.path().join("flows.db"));
    let client = StoreClient::open(&location).await.unwrap();
    exercise(&client, dir.path()).await;
}

#[tokio::test]
async fn remote_flow_store() {
    let dir = tempfile::tempdir().unwrap();
    let location: StoreLocation = format!("sqlite:{}", dir.path().join("flows.db").display())
        .parse()
        .unwrap();
    let store = Store::open(&location, Default::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(server::serve(listener, store, std::future::pending()));
    let client = StoreClient::connect(&format!("http://{address}"))
        .await
        .unwrap();
    exercise(&client, dir.path()).await;
}
