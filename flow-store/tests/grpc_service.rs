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
