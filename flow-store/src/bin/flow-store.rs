//! `flow-store`: the flow archive service.
//!
//! ```text
//! flow-store --listen 127.0.0.1:7070 [--store sqlite:PATH | --store postgres://user@host/db]
//!            [--tls-cert F --tls-key F [--tls-client-ca F]] [--token-file F] [--insecure-listen]
//! ```
//!
//! Off loopback it requires client certificates or a token (see `flowtap_grpc::ServerArgs`).
//!
//! Prints `listening on ADDR` once it accepts connections, and stops cleanly on Ctrl-C or
//! SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use flowtap_flow_store::{Config, Store, StoreLocation, server};
use flowtap_grpc::ServerArgs;

/// The flowtap flow archive: a gRPC FlowStore service over SQLite or PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "flow-store", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// `sqlite:PATH`, a file path, or `postgres://...` [default: ~/.flowtap/flows.db]
    #[arg(long)]
    store: Option<StoreLocation>,
    /// `--metrics HOST:PORT`: Prometheus metrics and probes (ready while the database answers).
    #[command(flatten)]
    metrics: flowtap_telemetry::MetricsArgs,
    #[command(flatten)]
    log: flowtap_telemetry::LogArgs,
    #[command(flatten)]
    security: ServerArgs,
}

fn default_store() -> StoreLocation {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    StoreLocation::Sqlite(home.join(".flowtap").join("flows.db"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    flowtap_telemetry::init_logging(
        args.log.log_format,
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        true,
    )?;
    flowtap_telemetry::store::register();
    let security = args
        .security
        .config()
        .context("reading the TLS and token files")?;
    security.check_listen(args.listen)?;
    let _metrics = args.metrics.start()?;
    let location = args.store.unwrap_or_else(default_store);
    let store = Store::open(&location, Config::default())
        .await
        .context("starting flow-store")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding flow-store listener on {}", args.listen))?;
    let address = listener
        .local_addr()
        .context("reading the listener address")?;
    println!("listening on {address}");
    server::serve_with(listener, store, &security, shutdown_signal())
        .await
        .context("serving the flow store")?;
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
