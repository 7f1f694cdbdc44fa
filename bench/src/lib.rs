//! Benchmark tools for flowtap: a local origin, a load generator that speaks to proxies, and a
//! flow-store benchmark.
//!
//! `bench/run` (the harness) drives the same load at the same origin three ways: direct,
//! through flowtap and through mitmdump, then runs `bench-store` (ingest rate and filter-query
//! time of the flow archive over SQLite and PostgreSQL), and writes `bench/RESULTS.md`. The
//! tools here are deliberately small and bounded: they bind and connect to loopback addresses
//! only, and every run ends after a fixed duration or count.
//!
//! Where to start: `src/bin/bench-load.rs` (the load generator's command line and worker
//! loop), then [`client`] (one HTTP/1.1 connection: direct, absolute-form through a proxy, or
//! CONNECT + TLS through a proxy).
//!
//! Modules:
//! - [`client`]: the target of a run and the HTTP/1.1 client connection.
//! - [`histogram`]: a log-linear latency histogram (about 1.6 % relative precision).

pub mod client;
pub mod histogram;
