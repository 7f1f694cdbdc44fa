//! The one behaviour suite of the archive, run against SQLite and against a real PostgreSQL
//! server (started by the test itself unless FLOWTAP_TEST_POSTGRES_URL names one).

mod support;

use bytes::Bytes;
use flowtap_flow::Filter;
use flowtap_flow_store::backend::{CHUNK_BYTES, INLINE_BODY_BYTES};
use flowtap_flow_store::files::{self, FileFormat};
use flowtap_flow_store::{Store, StoreError, flow_parts};
use flowtap_proto::v1::{BodyChunk, BodyKind, FlowPart, flow_part};
use futures_util::StreamExt;
use support::{failed_flow, header, http_flow};

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
                small_bodies_in_the_row_and_large_ones_in_chunks,
                re_append_replaces_and_stores_once,
                query_pages_with_cursors,
                delete_removes_flows_and_bodies,
                watch_sees_new_flows,
                malformed_append_keeps_complete_flows,
                unknown_id_is_not_found,
                filters_select_what_mitmproxy_would,
                filtered_queries_page,
                body_filters_read_stored_bodies,
                delete_by_filter,
                watch_filters_per_watcher,
                fixtures_import_and_export_unchanged,
                har_export_loads_back,
                corrupt_import_keeps_flows_before_the_damage,
                domain_and_code_over_100k_flows_under_a_second,
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
        if let Some(flow_part::Kind::Body(chunk)) = part.unwrap().kind
            && chunk.kind == BodyKind::Response as i32
        {
            response += chunk.data.len();
        }
    }
    assert_eq!(response, 1000);
}

/// The parts of a flow with each body sent in chunks of `piece` bytes.
fn parts_in_pieces(
    flow: &flowtap_proto::v1::Flow,
    piece: usize,
) -> Vec<Result<FlowPart, StoreError>> {
    let mut parts = Vec::new();
    for part in flow_parts(flow.clone()) {
        match part.kind {
            Some(flow_part::Kind::Body(chunk)) => {
                for data in chunk.data.chunks(piece) {
                    parts.push(Ok(FlowPart {
                        kind: Some(flow_part::Kind::Body(BodyChunk {
                            kind: chunk.kind,
                            data: Bytes::copy_from_slice(data),
                        })),
                    }));
                }
            }
            _ => parts.push(Ok(part)),
        }
    }
    parts
}

async fn small_bodies_in_the_row_and_large_ones_in_chunks(store: &Store) {
    let with_bodies = |id: &str, request: usize, response: usize| {
        let mut flow = http_flow(id, "example.com", "/", 200);
        flow.request.as_mut().unwrap().content = Some(large_body(request));
        flow.response.as_mut().unwrap().content = Some(large_body(response));
        flow
    };
    // At the limit and just past it; then bodies sent in small pieces, one staying under the
    // limit and one crossing it after some pieces were held; then an empty body.
    let edge = with_bodies("edge", INLINE_BODY_BYTES, INLINE_BODY_BYTES + 1);
    let pieces = with_bodies("pieces", INLINE_BODY_BYTES - 10, 3 * INLINE_BODY_BYTES);
    let empty = with_bodies("empty", 0, 100);
    store
        .append(vec![edge.clone(), empty.clone()])
        .await
        .unwrap();
    let parts = parts_in_pieces(&pieces, 1000);
    let stored = store
        .append_parts(futures_util::stream::iter(parts))
        .await
        .unwrap();
    assert_eq!(stored, 1);
    for flow in [&edge, &pieces, &empty] {
        assert_eq!(&store.flow(&flow.id).await.unwrap(), flow, "{}", flow.id);
    }
    // A body filter reads both kinds; a body limit cuts both.
    let needle_flow = |id: &str, body: &'static [u8]| {
        let mut flow = http_flow(id, "example.com", "/", 200);
        flow.response.as_mut().unwrap().content = Some(Bytes::from_static(body));
        flow
    };
    let mut large_needle = large_body(INLINE_BODY_BYTES * 2).to_vec();
    large_needle.extend_from_slice(b"needle");
    let mut large = needle_flow("needle-large", b"");
    large.response.as_mut().unwrap().content = Some(large_needle.into());
    store
        .append(vec![needle_flow("needle-small", b"a needle"), large])
        .await
        .unwrap();
    assert_eq!(
        ids(store, "~bs needle").await,
        ["needle-small", "needle-large"]
    );
    let mut parts = store.flow_parts("edge", 100).await.unwrap();
    let mut bodies = [0, 0];
    while let Some(part) = parts.next().await {
        if let Some(flow_part::Kind::Body(chunk)) = part.unwrap().kind {
            bodies[(chunk.kind == BodyKind::Response as i32) as usize] += chunk.data.len();
        }
    }
    assert_eq!(bodies, [100, 100]);
    // Appended again with the sizes swapped: no chunk of the old version is left over.
    let swapped = with_bodies("edge", INLINE_BODY_BYTES + 1, 10);
    store.append(vec![swapped.clone()]).await.unwrap();
    assert_eq!(store.flow("edge").await.unwrap(), swapped);
    let swapped_back = with_bodies("edge", 10, INLINE_BODY_BYTES * 3);
    store.append(vec![swapped_back.clone()]).await.unwrap();
    assert_eq!(store.flow("edge").await.unwrap(), swapped_back);
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
    let mut watch = store.watch("").await.unwrap();
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

/// A mixed archive: HTTP flows over several hosts and codes, and every fixture.
async fn mixed_archive(store: &Store) -> Vec<flowtap_proto::v1::Flow> {
    let mut flows = Vec::new();
    for i in 0..30u32 {
        let host = ["api.example.com", "cdn.example.org", "Host.TEST"][i as usize % 3];
        let status = [200, 404, 500, 301][i as usize % 4];
        let mut flow = http_flow(
            &format!("mixed-{i:02}"),
            host,
            &format!("/item/{i}?q=x"),
            status,
        );
        if i % 5 == 0 {
            flow.request.as_mut().unwrap().method = Bytes::from_static(b"POST");
        }
        if i % 7 == 0 {
            flow.response
                .as_mut()
                .unwrap()
                .headers
                .push(header("content-type", "application/json"));
        }
        flows.push(flow);
    }
    flows.push(failed_flow("mixed-failed", "api.example.com"));
    store.append(flows).await.unwrap();
    for fixture in support::mitm_fixtures() {
        files::import_file(store, &fixture).await.unwrap();
    }
    let mut all = Vec::new();
    let mut stream = store.flows("", true).unwrap();
    while let Some(flow) = stream.next().await {
        all.push(flow.unwrap());
    }
    all
}

async fn filters_select_what_mitmproxy_would(store: &Store) {
    let all = mixed_archive(store).await;
    assert!(all.len() > 40, "{} flows", all.len());
    let expressions = [
        "~d example.com & ~c 404",
        "~d host.test",
        "~d 127.0.0.1",
        "~c 404",
        "~m POST",
        "~m post ~d cdn",
        "~u /item/1",
        "~u item/\\d",
        "/item/2 & ~c 200",
        "~t json",
        "~ts application/json & ~c 500",
        "~tcp",
        "~dns",
        "~websocket",
        "~http & !~c 200",
        "~e",
        "~q",
        "~c 200 | ~c 301",
        "~h x-dup",
        "~b ECHO",
        "~bs hello",
        "~src 10.0.0.7 & ~d API",
        "~u localhost",
    ];
    for expression in expressions {
        let filter = Filter::parse(expression).unwrap();
        let expected: Vec<_> = all
            .iter()
            .filter(|f| filter.matches(f))
            .map(|f| f.id.clone())
            .collect();
        assert_eq!(
            ids(store, expression).await,
            expected,
            "filter {expression:?}"
        );
    }
    // A few with known answers, so the comparison above is not vacuous.
    assert_eq!(
        ids(store, "~d example.com & ~c 404").await,
        ["mixed-09", "mixed-21"]
    );
    assert!(!ids(store, "~tcp").await.is_empty());
    assert!(!ids(store, "~b ECHO").await.is_empty());
    assert!(matches!(
        store.query("~c", 10, ""),
        Err(StoreError::Filter(_))
    ));
}

async fn filtered_queries_page(store: &Store) {
    let flows: Vec<_> = (0..40)
        .map(|i| {
            http_flow(
                &format!("p-{i:02}"),
                "example.com",
                "/",
                if i % 4 == 0 { 404 } else { 200 },
            )
        })
        .collect();
    store.append(flows).await.unwrap();
    let (mut after, mut seen) = (String::new(), Vec::new());
    loop {
        let mut items = store.query("~c 404", 3, &after).unwrap();
        let mut page = 0;
        while let Some(item) = items.next().await {
            let item = item.unwrap();
            after = item.cursor;
            seen.push(item.summary.unwrap().id);
            page += 1;
        }
        if page < 3 {
            break;
        }
    }
    let expected: Vec<_> = (0..40).step_by(4).map(|i| format!("p-{i:02}")).collect();
    assert_eq!(seen, expected);
}

async fn body_filters_read_stored_bodies(store: &Store) {
    let mut secret = http_flow("secret", "example.com", "/", 200);
    let mut body = large_body(CHUNK_BYTES * 2).to_vec();
    body.extend_from_slice(b"the SECRET word");
    secret.response.as_mut().unwrap().content = Some(body.into());
    store
        .append(vec![secret, http_flow("plain", "example.com", "/", 200)])
        .await
        .unwrap();
    assert_eq!(ids(store, "~bs secret").await, ["secret"]);
    assert_eq!(ids(store, "~bq secret").await, Vec::<String>::new());
    assert_eq!(ids(store, "!~b secret").await, ["plain"]);
}

async fn delete_by_filter(store: &Store) {
    let flows: Vec<_> = (0..10)
        .map(|i| {
            http_flow(
                &format!("d-{i}"),
                "example.com",
                "/",
                if i < 3 { 404 } else { 200 },
            )
        })
        .collect();
    store.append(flows).await.unwrap();
    assert_eq!(store.delete("~c 404").await.unwrap(), 3);
    assert_eq!(ids(store, "~c 404").await.len(), 0);
    assert_eq!(ids(store, "").await.len(), 7);
    assert!(matches!(
        store.delete("~c 404 &").await,
        Err(StoreError::Filter(_))
    ));
    assert_eq!(ids(store, "").await.len(), 7);
}

async fn watch_filters_per_watcher(store: &Store) {
    let mut not_found = store.watch("~c 404").await.unwrap();
    let mut everything = store.watch("").await.unwrap();
    let mut bodies = store.watch("~bs needle").await.unwrap();
    let mut with_needle = http_flow("w-needle", "example.com", "/", 200);
    with_needle.response.as_mut().unwrap().content = Some(Bytes::from_static(b"hay needle hay"));
    store
        .append(vec![http_flow("w-200", "example.com", "/", 200)])
        .await
        .unwrap();
    store
        .append(vec![
            http_flow("w-404", "example.com", "/", 404),
            with_needle,
        ])
        .await
        .unwrap();
    assert_eq!(not_found.next().await.unwrap().id, "w-404");
    assert_eq!(bodies.next().await.unwrap().id, "w-needle");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(everything.next().await.unwrap().id);
    }
    assert_eq!(seen, ["w-200", "w-404", "w-needle"]);
}

async fn fixtures_import_and_export_unchanged(store: &Store) {
    for fixture in support::mitm_fixtures() {
        let original = std::fs::read(&fixture).unwrap();
        let expected = support::read_unique(&original);
        store.delete("").await.unwrap();
        let imported = files::import_file(store, &fixture).await.unwrap();
        assert_eq!(
            imported as usize,
            flowtap_flow::flowfile::read_flows(&original).unwrap().len()
        );

        let mut exported = Vec::new();
        let mut chunks = files::export(store, "", FileFormat::Mitm).unwrap();
        while let Some(chunk) = chunks.next().await {
            exported.extend_from_slice(&chunk.unwrap());
        }
        let reread = flowtap_flow::flowfile::read_flows(&exported).unwrap();
        assert_eq!(reread, expected, "{}", fixture.display());
    }
}

async fn har_export_loads_back(store: &Store) {
    let fixture = support::fixtures_dir().join("all-mixed.mitm");
    files::import_file(store, &fixture).await.unwrap();
    let http = ids(store, "~http").await.len();
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("out.har");
    files::export_file(store, "", &har).await.unwrap();
    let text = std::fs::read_to_string(&har).unwrap();
    let document: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(document["log"]["entries"].as_array().unwrap().len(), http);

    store.delete("").await.unwrap();
    assert_eq!(
        files::import_file(store, &har).await.unwrap() as usize,
        http
    );
    assert_eq!(ids(store, "~http").await.len(), http);
}

async fn corrupt_import_keeps_flows_before_the_damage(store: &Store) {
    let original = std::fs::read(support::fixtures_dir().join("all-mixed.mitm")).unwrap();
    // Where the third flow starts.
    let mut reader = flowtap_flow::FlowReader::new(&original[..]);
    reader.next().unwrap().unwrap();
    reader.next().unwrap().unwrap();
    let third = reader.offset() as usize;
    let mut damaged = original[..third].to_vec();
    damaged.extend_from_slice(b"99999:not a tnetstring");
    let chunks = futures_util::stream::iter(
        damaged
            .chunks(100)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let error = files::import(store, chunks).await.unwrap_err();
    match &error {
        StoreError::Import {
            offset, imported, ..
        } => {
            assert_eq!(*imported, 2);
            assert!(
                *offset >= third as u64,
                "offset {offset}, third flow at {third}"
            );
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(error.to_string().contains("at byte"), "{error}");
    assert_eq!(ids(store, "").await.len(), 2);
}

async fn domain_and_code_over_100k_flows_under_a_second(store: &Store) {
    let template = http_flow("template", "example.com", "/", 200);
    let hosts = [
        "api.example.com",
        "cdn.example.org",
        "www.other.net",
        "static.host.io",
    ];
    for batch in 0..20 {
        let flows: Vec<_> = (0..5000)
            .map(|i| {
                let n = batch * 5000 + i;
                let mut flow = template.clone();
                flow.id = format!("bulk-{n:06}");
                let request = flow.request.as_mut().unwrap();
                request.host = hosts[n % 4].into();
                request.headers[0] = header("Host", hosts[n % 4]);
                request.path = format!("/p/{n}").into();
                flow.response.as_mut().unwrap().status_code = if n % 100 < 4 { 404 } else { 200 };
                flow
            })
            .collect();
        store.append(flows).await.unwrap();
    }
    let started = std::time::Instant::now();
    let found = ids(store, "~d host & ~c 404").await;
    let elapsed = started.elapsed();
    assert_eq!(found.len(), 1000);
    assert!(
        found
            .iter()
            .all(|id| id[5..].parse::<usize>().unwrap() % 4 == 3)
    );
    assert!(
        elapsed < std::time::Duration::from_secs(1),
        "took {elapsed:?}"
    );
}
