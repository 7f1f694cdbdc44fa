//! The FlowStore gRPC service over a real tonic server on 127.0.0.1:0.

mod support;

use bytes::Bytes;
use flowtap_flow_store::client::RemoteStore;
use flowtap_flow_store::{Store, flow_parts, server};
use flowtap_proto::v1::{QueryRequest, WatchRequest};
use futures_util::StreamExt;
use support::http_flow;
use tokio::sync::oneshot;

struct Running {
    remote: RemoteStore,
    store: Store,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let (dir, store) = support::sqlite_store();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, store.clone(), async {
        let _ = stopped.await;
    }));
    let remote = RemoteStore::connect(&format!("http://{address}"))
        .await
        .unwrap();
    Running {
        remote,
        store,
        _stop: stop,
        _dir: dir,
    }
}

#[tokio::test]
async fn append_get_query_delete_over_grpc() {
    let running = start().await;
    let mut flow = http_flow("grpc-1", "example.com", "/", 200);
    let body: Bytes = (0..3 * 1024 * 1024)
        .map(|i| (i % 13) as u8)
        .collect::<Vec<_>>()
        .into();
    flow.request.as_mut().unwrap().content = Some(body);
    let parts: Vec<_> = [flow.clone(), http_flow("grpc-2", "other.example", "/", 404)]
        .into_iter()
        .flat_map(flow_parts)
        .collect();
    let result = running
        .remote
        .client()
        .append(tokio_stream::iter(parts))
        .await
        .unwrap();
    assert_eq!(result.into_inner().stored, 2);

    assert_eq!(running.remote.flow("grpc-1", 0).await.unwrap(), flow);
    let mut listed = Vec::new();
    let count = running
        .remote
        .list("", |s| listed.push(s.id))
        .await
        .unwrap();
    assert_eq!(
        (count, listed),
        (2, vec!["grpc-1".to_owned(), "grpc-2".to_owned()])
    );

    // Paging over the wire.
    let request = QueryRequest {
        filter: String::new(),
        limit: 1,
        after: String::new(),
    };
    let mut page = running
        .remote
        .client()
        .query(request)
        .await
        .unwrap()
        .into_inner();
    let first = page.next().await.unwrap().unwrap();
    assert!(page.next().await.is_none());
    let request = QueryRequest {
        filter: String::new(),
        limit: 1,
        after: first.cursor,
    };
    let mut page = running
        .remote
        .client()
        .query(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.next().await.unwrap().unwrap().summary.unwrap().id,
        "grpc-2"
    );

    assert_eq!(running.remote.delete("").await.unwrap(), 2);
    assert_eq!(running.remote.list("", |_| ()).await.unwrap(), 0);
}

#[tokio::test]
async fn errors_map_to_status_codes() {
    let running = start().await;
    let error = running
        .remote
        .client()
        .get(flowtap_proto::v1::GetRequest {
            id: "missing".into(),
            body_limit_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    let request = QueryRequest {
        filter: String::new(),
        limit: 1,
        after: "bogus".into(),
    };
    let error = running.remote.client().query(request).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    // A body chunk with no head.
    let stray = flow_parts(http_flow("x", "example.com", "/", 200)).remove(1);
    let error = running
        .remote
        .client()
        .append(tokio_stream::iter([stray]))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn watch_streams_new_flows() {
    let running = start().await;
    let mut watch = running
        .remote
        .client()
        .watch(WatchRequest {
            filter: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // The subscription is live once the response headers arrived; append through the store.
    running
        .store
        .append(vec![http_flow("watched", "example.com", "/w", 201)])
        .await
        .unwrap();
    let summary = watch.next().await.unwrap().unwrap();
    assert_eq!((summary.id.as_str(), summary.status_code), ("watched", 201));
}

#[tokio::test]
async fn import_and_export_files_over_grpc() {
    let running = start().await;
    let fixture = support::fixtures_dir().join("all-mixed.mitm");
    let original = std::fs::read(&fixture).unwrap();
    let imported = running.remote.import_file(&fixture).await.unwrap();
    assert_eq!(
        imported as usize,
        flowtap_flow::flowfile::read_flows(&original).unwrap().len()
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mitm");
    running.remote.export_file("", &out).await.unwrap();
    let exported = std::fs::read(&out).unwrap();
    assert_eq!(
        support::read_unique(&exported),
        support::read_unique(&original)
    );

    let har = dir.path().join("out.har");
    running.remote.export_file("~http", &har).await.unwrap();
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
    let http = running.store.list("~http", |_| ()).await.unwrap();
    assert_eq!(
        document["log"]["entries"].as_array().unwrap().len() as u64,
        http
    );
}

#[tokio::test]
async fn a_corrupt_upload_names_the_offset_and_keeps_earlier_flows() {
    let running = start().await;
    let original = std::fs::read(support::fixtures_dir().join("all-mixed.mitm")).unwrap();
    let mut reader = flowtap_flow::FlowReader::new(&original[..]);
    reader.next().unwrap().unwrap();
    let second = reader.offset() as usize;
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.mitm");
    let mut bytes = original[..second].to_vec();
    bytes.extend_from_slice(b"12:#not-a-number");
    std::fs::write(&damaged, bytes).unwrap();

    let error = running.remote.import_file(&damaged).await.unwrap_err();
    let flowtap_flow_store::StoreError::Remote(status) = error else {
        panic!("expected a status, got {error}");
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // The damaged record starts at `second`; its type tag sits 15 bytes in.
    let offset: usize = status
        .message()
        .strip_prefix("reading flow file at byte ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {:?}", status.message()));
    assert_eq!(offset, second + 15, "{}", status.message());
    assert_eq!(running.store.list("", |_| ()).await.unwrap(), 1);
}

#[tokio::test]
async fn deeply_nested_filters_and_uploads_are_refused_and_the_service_lives_on() {
    let running = start().await;
    running
        .remote
        .client()
        .append(tokio_stream::iter(flow_parts(http_flow(
            "kept",
            "example.com",
            "/",
            200,
        ))))
        .await
        .unwrap();
    for filter in ["!".repeat(100_000) + "~q", "(".repeat(100_000) + "~q"] {
        let request = QueryRequest {
            filter,
            limit: 10,
            after: String::new(),
        };
        let error = running.remote.client().query(request).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().contains("more than 100 deep"), "{error}");
    }
    // A flow file whose one record is a list inside a list, 10,000 deep.
    let mut record = b"0:]".to_vec();
    for _ in 1..10_000 {
        let mut outer = format!("{}:", record.len()).into_bytes();
        outer.extend_from_slice(&record);
        outer.push(b']');
        record = outer;
    }
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("nested.mitm");
    std::fs::write(&nested, record).unwrap();
    let error = running.remote.import_file(&nested).await.unwrap_err();
    assert!(error.to_string().contains("nested more than 64"), "{error}");

    let mut ids = Vec::new();
    running
        .remote
        .list("", |summary| ids.push(summary.id))
        .await
        .expect("the service still answers");
    assert_eq!(ids, ["kept"]);
}
