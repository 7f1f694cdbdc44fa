//! flow-store: the archive of finished flows, behind the `FlowStore` gRPC service.
//!
//! proxy-core hands every finished flow to a [`StoreSink`], which batches flows into the
//! service's Append stream and spools them to local disk while the service is unreachable. The
//! service ([`server`]) keeps them in SQLite (the embedded default) or PostgreSQL (the scaled
//! deployment) and answers queries written in mitmproxy's filter language. The `flowtap flows`
//! command reads the same archive, in process or over gRPC ([`client`]).
//!
//! A reader new to the crate starts at [`Store`] (what the archive promises) and then
//! [`backend`] (how rows and body chunks are kept).
//!
//! To drive ingest directly (benchmarks), open a store and append whole flows; batching and
//! transactions are the same as behind the gRPC service:
//!
//! ```no_run
//! # async fn ingest(flows: Vec<flowtap_proto::v1::Flow>) -> Result<(), flowtap_flow_store::StoreError> {
//! use flowtap_flow_store::{Config, Store, StoreLocation};
//! let location: StoreLocation = "sqlite:/tmp/flows.db".parse().expect("infallible");
//! let store = Store::open(&location, Config::default()).await?;
//! store.append(flows).await?;
//! # Ok(()) }
//! ```
//!
//! - [`store`]: [`Store`], the behaviour: append assembly, queries, delete, watch.
//! - [`backend`]: the [`Backend`](backend::Backend) trait, with `sqlite` and `postgres`.
//! - [`filter`]: mitmproxy filter expressions as queries (SQL pre-filter + exact match).
//! - [`files`]: import and export of mitmproxy flow files and HAR.
//! - [`server`]: the tonic service and [`server::serve_with`] (TLS, client certificates and a
//!   token from `flowtap_grpc`); [`status`] maps errors to statuses.
//! - [`health`]: `grpc.health.v1.Health`, SERVING while the database answers.
//! - [`sink`]: [`StoreSink`], the proxy's way in, with its [`spool`]. What holds flows on disk
//!   (the SQLite file, the spool) is created owner-only (`private`).
//! - [`client`]: a gRPC client for the cli (TLS and token as `flowtap_grpc` configures).

pub mod backend;
pub mod client;
mod error;
pub mod files;
pub mod filter;
pub mod health;
mod private;
mod row;
pub mod server;
pub mod sink;
pub mod spool;
pub mod status;
pub mod store;

pub use error::StoreError;
pub use filter::FlowFilter;
pub use row::summary;
pub use sink::{SinkConfig, StoreSink};
pub use store::{Config, Store, StoreLocation, flow_parts};
