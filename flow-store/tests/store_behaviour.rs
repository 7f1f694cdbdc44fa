//! The one behaviour suite of the archive, run against SQLite and against a real PostgreSQL
//! server (started by the test itself unless FLOWTAP_TEST_POSTGRES_URL names one).

mod support;

use bytes::Bytes;
use flowtap_flow_store::backend::CHUNK_BYTES;
use flowtap_flow_store::{Store, StoreError, flow_parts};
use flowtap_proto::v1::{BodyChunk, BodyKind, FlowPart, flow_part};
use futures_util::StreamExt;
use support::{failed_flow, http_flow};

macro_rules! store_suite {
    ($backend:ident, $open:expr, [$($test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (_guard, store) = $open.await;
                    super::$test(&store).await;
                }
            )*
        }
    };
}

macro_rules! all_behaviours {
    ($backend:ident, $open:expr) => {
        store_suite!(
            $backend,
            $open,
            [
                round_trip_with_all_fields_and_a_large_body,
                body_limit_cuts_streamed_bodies,
                re_append_replaces_and_stores_once,
                query_pages_with_cursors,
                delete_removes_flows_and_bodies,
                watch_sees_new_flows,
                malformed_append_keeps_complete_flows,
                unknown_id_is_not_found,
            ]
        );
    };
}

all_behaviours!(sqlite, async { crate::support::sqlite_store() });
all_behaviours!(postgres, async {
    ((), crate::support::postgres_store().await)
});

/// A body of `len` bytes that does not repeat with the chunk size.
fn large_body(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

async fn ids(store: &Store, filter: &str) -> Vec<String> {
    let mut items = store.query(filter, 100_000, "").expect("a valid filter");
    let mut ids = Vec::new();
    while let Some(item) = items.next().await {
        ids.push(item.expect("query item").summary.expect("summary").id);
    }
    ids
}

async fn round_trip_with_all_fields_and_a_large_body(store: &Store) {
    let mut flow = http_flow("flow-large", "example.com", "/big", 200);
    let body = large_body(5 * 1024 * 1024 + 17);
    flow.response.as_mut().unwrap().content = Some(body.clone());
    let failed = failed_flow("flow-failed", "down.example");
    let stored = store
        .append(vec![flow.clone(), failed.clone()])
        .await
        .expect("append");
    assert_eq!(stored, 2);

    assert_eq!(store.flow("flow-large").await.expect("get"), flow);
    assert_eq!(store.flow("flow-failed").await.expect("get"), failed);

    // Streamed back in stored chunks, never one message holding the whole body.
    let mut parts = store.flow_parts("flow-large", 0).await.expect("parts");
    let (mut response, mut chunks) = (Vec::new(), 0);
    let mut kinds = Vec::new();
    while let Some(part) = parts.next().await {
        match part.expect("part").kind.expect("kind") {
            flow_part::Kind::Head(head) => {
                assert_eq!(head.response.unwrap().content, Some(Bytes::new()));
                kinds.push("head");
            }
            flow_part::Kind::Body(chunk) => {
                assert!(chunk.data.len() <= CHUNK_BYTES);
                if chunk.kind == BodyKind::Response as i32 {
                    response.extend_from_slice(&chunk.data);
                    chunks += 1;
                }
            }
            flow_part::Kind::End(_) => kinds.push("end"),
        }
    }
    assert_eq!(kinds, ["head", "end"]);
    assert_eq!(response, body);
    assert!(chunks >= 20, "{chunks} chunks");

    let mut items = store.query("", 10, "").unwrap();
    let first = items.next().await.unwrap().unwrap().summary.unwrap();
    assert_eq!(first.id, "flow-large");
    assert_eq!(first.response_size, body.len() as u64);
    assert_eq!(first.request_size, b"request body".len() as u64);
    assert_eq!(first.status_code, 200);
    assert_eq!(first.method, "GET");
    assert_eq!(first.url, "https://example.com/big");
    assert_eq!(first.client, "10.0.0.7:51234");
}

async fn body_limit_cuts_streamed_bodies(store: &Store) {
    let mut flow = http_flow("flow-cut", "example.com", "/", 200);
    flow.response.as_mut().unwrap().content = Some(large_body(CHUNK_BYTES * 3));
    store.append(vec![flow]).await.unwrap();
    let mut parts = store.flow_parts("flow-cut", 1000).await.unwrap();
    let mut response = 0;
    while let Some(part) = parts.next().await {
        if let Some(flow_part::Kind::Body(chunk)) = part.unwrap().kind {
            if chunk.kind == BodyKind::Response as i32 {
                response += chunk.data.len();
            }
        }
    }
    assert_eq!(response, 1000);
}

async fn re_append_replaces_and_stores_once(store: &Store) {
    let flow = http_flow("flow-again", "example.com", "/", 200);
    store.append(vec![flow.clone()]).await.unwrap();
    store
        .append(vec![http_flow("flow-other", "other.example", "/", 200)])
        .await
        .unwrap();
    let mut changed = flow.clone();
    changed.response.as_mut().unwrap().status_code = 503;
    changed.response.as_mut().unwrap().content = Some(Bytes::from_static(b"changed"));
    // Twice in one stream, and once more in another: still one stored flow.
    store
        .append(vec![changed.clone(), changed.clone()])
        .await
        .unwrap();
    store.append(vec![changed.clone()]).await.unwrap();

    assert_eq!(ids(store, "").await, ["flow-other", "flow-again"]);
    assert_eq!(store.flow("flow-again").await.unwrap(), changed);
}

async fn query_pages_with_cursors(store: &Store) {
    let flows: Vec<_> = (0..25)
        .map(|i| {
            http_flow(
                &format!("page-{i:02}"),
                "example.com",
                &format!("/{i}"),
                200,
            )
        })
        .collect();
    store.append(flows).await.unwrap();
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = Vec::new();
    loop {
        let mut items = store.query("", 10, &after).unwrap();
        let mut page = 0;
        while let Some(item) = items.next().await {
            let item = item.unwrap();
            after = item.cursor;
            seen.push(item.summary.unwrap().id);
            page += 1;
        }
        pages.push(page);
        if page < 10 {
            break;
        }
    }
    assert_eq!(pages, [10, 10, 5]);
    let expected: Vec<_> = (0..25).map(|i| format!("page-{i:02}")).collect();
    assert_eq!(seen, expected);
    assert!(matches!(
        store.query("", 10, "not-a-cursor"),
        Err(StoreError::Protocol(_))
    ));
}

async fn delete_removes_flows_and_bodies(store: &Store) {
    let mut big = http_flow("del-1", "example.com", "/", 200);
    big.request.as_mut().unwrap().content = Some(large_body(CHUNK_BYTES * 2 + 5));
    store
        .append(vec![big, http_flow("del-2", "example.com", "/", 200)])
        .await
        .unwrap();
    assert_eq!(store.delete("").await.unwrap(), 2);
    assert!(ids(store, "").await.is_empty());
    assert!(matches!(
        store.flow("del-1").await,
        Err(StoreError::NotFound(_))
    ));
    // The id can be used again, and gets only its new body.
    let small = http_flow("del-1", "example.com", "/", 200);
    store.append(vec![small.clone()]).await.unwrap();
    assert_eq!(store.flow("del-1").await.unwrap(), small);
}

async fn watch_sees_new_flows(store: &Store) {
    store
        .append(vec![http_flow("before", "example.com", "/", 200)])
        .await
        .unwrap();
    let mut watch = store.watch("").unwrap();
    store
        .append(vec![http_flow("after-1", "example.com", "/", 200)])
        .await
        .unwrap();
    store
        .append(vec![http_flow("after-2", "example.com", "/x", 404)])
        .await
        .unwrap();
    let first = watch.next().await.unwrap();
    let second = watch.next().await.unwrap();
    assert_eq!(
        (first.id.as_str(), second.id.as_str()),
        ("after-1", "after-2")
    );
    assert_eq!(second.status_code, 404);
}

async fn malformed_append_keeps_complete_flows(store: &Store) {
    let good = http_flow("complete", "example.com", "/", 200);
    let mut parts: Vec<Result<FlowPart, StoreError>> =
        flow_parts(good.clone()).into_iter().map(Ok).collect();
    let mut cut = flow_parts(http_flow("cut-off", "example.com", "/", 200));
    cut.pop();
    parts.extend(cut.into_iter().map(Ok));
    // A second head before the end of "cut-off".
    parts.push(Ok(
        flow_parts(http_flow("third", "example.com", "/", 200)).remove(0)
    ));
    let error = store
        .append_parts(futures_util::stream::iter(parts))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Protocol(ref m) if m.contains("cut-off")),
        "{error}"
    );
    assert_eq!(ids(store, "").await, ["complete"]);
    assert_eq!(store.flow("complete").await.unwrap(), good);

    let stray = FlowPart {
        kind: Some(flow_part::Kind::Body(BodyChunk {
            kind: BodyKind::Request as i32,
            data: Bytes::from_static(b"x"),
        })),
    };
    let error = store
        .append_parts(futures_util::stream::iter([Ok(stray)]))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Protocol(_)));
}

async fn unknown_id_is_not_found(store: &Store) {
    assert!(matches!(
        store.flow("nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.flow_parts("nope", 0).await,
        Err(StoreError::NotFound(_))
    ));
}
