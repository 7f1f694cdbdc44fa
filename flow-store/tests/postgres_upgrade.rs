//! A PostgreSQL database written before bodies could be kept in the flow's row: its flows
//! read back whole, and new flows go in beside them.

mod support;

use bytes::Bytes;
use flowtap_flow_store::backend::postgres::PostgresBackend;
use flowtap_flow_store::{Config, Store};
use prost::Message;
use support::http_flow;

const OLD_SCHEMA: &str = "
CREATE TABLE flows (
    seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    timestamp_created DOUBLE PRECISION NOT NULL, method TEXT NOT NULL, host TEXT NOT NULL,
    url TEXT NOT NULL, status_code INTEGER NOT NULL, content_type TEXT NOT NULL,
    request_size BIGINT NOT NULL, response_size BIGINT NOT NULL, error TEXT NOT NULL,
    client TEXT NOT NULL, head BYTEA NOT NULL);
CREATE TABLE bodies (flow_id TEXT NOT NULL, kind SMALLINT NOT NULL, part INTEGER NOT NULL,
    data BYTEA NOT NULL, PRIMARY KEY (flow_id, kind, part));";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_inline_bodies_is_read_and_extended() {
    let url = support::postgres_database().await;
    let old = http_flow("old", "example.com", "/", 200);
    {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        client.batch_execute(OLD_SCHEMA).await.unwrap();
        let mut head = old.clone();
        head.request.as_mut().unwrap().content = Some(Bytes::new());
        head.response.as_mut().unwrap().content = Some(Bytes::new());
        let request = old.request.as_ref().unwrap().content.clone().unwrap();
        let response = old.response.as_ref().unwrap().content.clone().unwrap();
        client
            .execute(
                "INSERT INTO flows (id, type, timestamp_created, method, host, url, status_code, \
                 content_type, request_size, response_size, error, client, head) \
                 VALUES ('old', 'http', 0, 'GET', '', '', 200, '', $1, $2, '', '', $3)",
                &[
                    &(request.len() as i64),
                    &(response.len() as i64),
                    &head.encode_to_vec(),
                ],
            )
            .await
            .unwrap();
        for (kind, data) in [(1i16, &request), (2, &response)] {
            client
                .execute(
                    "INSERT INTO bodies (flow_id, kind, part, data) VALUES ('old', $1, 0, $2)",
                    &[&kind, &&data[..]],
                )
                .await
                .unwrap();
        }
        drop(client);
        let _ = connection.await;
    }
    let backend = PostgresBackend::connect(&url).await.unwrap();
    let store = Store::new(backend, Config::default());
    assert_eq!(store.flow("old").await.unwrap(), old);
    let new = http_flow("new", "example.com", "/", 200);
    store.append(vec![new.clone()]).await.unwrap();
    assert_eq!(store.flow("new").await.unwrap(), new);
    let mut found = Vec::new();
    store.list("~bs hello", |s| found.push(s.id)).await.unwrap();
    assert_eq!(found, ["old", "new"]);
    // Connecting again finds the columns there.
    PostgresBackend::connect(&url).await.unwrap();
}
