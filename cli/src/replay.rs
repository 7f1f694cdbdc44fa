//! `flowtap replay --client FILTER`: client replay of stored flows. The flows matching the
//! filter are read from the archive (the local store, or `--store-addr`), their requests sent
//! again (`is_replay = "request"`, with a backup of the earlier state, as `-C FILE` does), and
//! the replayed flows shown and stored back, replacing the earlier version (same id).

use std::process::ExitCode;
use std::sync::Arc;

use flowtap_flow_store::StoreLocation;
use flowtap_flow_store::client::StoreClient;
use flowtap_grpc::ClientConfig;
use flowtap_proxy_core::{ClientReplay, FlowSink, NoHooks, Sinks};

use crate::options::Options;

/// `flowtap replay` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// Replay the requests of the stored flows matching this filter.
    #[arg(long, value_name = "FILTER", required = true)]
    client: String,
    /// A remote flow-store, e.g. http://127.0.0.1:7070 (default: the local store file).
    #[arg(long, value_name = "URL")]
    store_addr: Option<String>,
    /// The local store: a SQLite file or postgres://... [default: CONFDIR/flows.db]
    #[arg(long, value_name = "STORE")]
    store: Option<StoreLocation>,
}

pub(crate) async fn run(
    args: ReplayArgs,
    options: &Options,
    security: &ClientConfig,
) -> anyhow::Result<ExitCode> {
    if let Err(code) = crate::parse_filter(&args.client)? {
        return Ok(code);
    }
    let local = args
        .store
        .clone()
        .unwrap_or_else(|| StoreLocation::Sqlite(options.confdir.join("flows.db")));
    let (client, archive): (StoreClient, Arc<dyn FlowSink>) = match &args.store_addr {
        Some(endpoint) => (
            StoreClient::connect_with(endpoint, security).await?,
            Arc::new(crate::archive::Archive::start(
                endpoint,
                &options.confdir,
                security,
            )?),
        ),
        None => (
            StoreClient::open(&local).await?,
            Arc::new(crate::archive::LocalArchive::open(&local).await?),
        ),
    };
    let mut ids = Vec::new();
    client
        .list(&args.client, |summary| ids.push(summary.id))
        .await?;
    let sink = Arc::new(Sinks(vec![
        Arc::new(crate::dump::Dumper {
            detail: options.flow_detail,
            showhost: options.showhost,
        }),
        archive,
    ]));
    // A CA created here follows key_size as the proxy's would.
    let ca = Arc::new(flowtap_certs::CertificateAuthority::load_or_create_with(
        &options.confdir,
        options.tls.ca_key(),
    )?);
    let replay = ClientReplay::new(
        crate::proxy_config(options)?,
        ca,
        Arc::new(NoHooks::default()),
        sink.clone(),
    )?;
    for id in &ids {
        let flow = client.flow(id, 0).await?;
        if flow.r#type == "http" && flow.request.is_some() {
            replay.replay(flow).await;
        }
    }
    sink.close();
    tracing::info!("replayed {} flows", ids.len());
    Ok(ExitCode::SUCCESS)
}
