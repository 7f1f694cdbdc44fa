//! `flowtap flows`: the stored flows, from the local archive (`confdir/flows.db`, opened in
//! this process) or a remote flow-store (`--store-addr http://host:port`, or `https://` with
//! `--grpc-ca`, `--grpc-cert`/`--grpc-key` and `--grpc-token-file` as the store requires).
//!
//! A thin client: the work is done by `flowtap_flow_store::client::StoreClient`; this module
//! parses arguments and prints. A malformed filter prints the parse error with its position and
//! exits with status 2.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use flowtap_flow::model::pretty_size;
use flowtap_flow_store::client::StoreClient;
use flowtap_flow_store::{FlowFilter, StoreLocation};
use flowtap_grpc::ClientConfig;
use flowtap_proto::v1::{Flow, FlowSummary, Header};

/// How much of each body `show` prints.
const BODY_PREVIEW_BYTES: u64 = 2048;

/// `flowtap flows ...`: list, show, export, import and delete stored flows.
#[derive(Debug, clap::Args)]
pub(crate) struct FlowsArgs {
    /// A remote flow-store: http://HOST:PORT, https://HOST:PORT, or HOST:PORT (TLS when
    /// --grpc-ca or --grpc-cert is given) [default: the local store file]
    #[arg(long, global = true, value_name = "URL")]
    store_addr: Option<String>,
    /// The local store: a SQLite file or postgres://... [default: CONFDIR/flows.db]
    #[arg(long, global = true, value_name = "STORE")]
    store: Option<StoreLocation>,
    #[command(subcommand)]
    command: FlowsCommand,
}

/// The `flowtap flows` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum FlowsCommand {
    /// One line per flow, mitmdump style, oldest first.
    List {
        /// A mitmproxy filter expression (words are joined); all flows when absent.
        filter: Vec<String>,
    },
    /// A flow's request and response: headers and the start of the bodies.
    Show {
        /// The flow id.
        id: String,
    },
    /// Write the matching flows to a file: HAR for *.har, else a mitmproxy flow file.
    Export {
        /// A mitmproxy filter expression (words are joined).
        #[arg(required = true)]
        filter: Vec<String>,
        /// The file to write.
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Store the flows of a mitmproxy flow file or HAR.
    Import {
        /// The file to read.
        file: PathBuf,
    },
    /// Delete the matching flows.
    Delete {
        /// A mitmproxy filter expression (words are joined).
        #[arg(required = true)]
        filter: Vec<String>,
    },
}

/// Runs `flowtap flows`. Exit status 0 on success, 2 for a malformed filter.
pub(crate) async fn run(
    args: FlowsArgs,
    confdir: &Path,
    security: &ClientConfig,
) -> anyhow::Result<ExitCode> {
    let filter = match &args.command {
        FlowsCommand::List { filter }
        | FlowsCommand::Export { filter, .. }
        | FlowsCommand::Delete { filter } => filter.join(" "),
        FlowsCommand::Show { .. } | FlowsCommand::Import { .. } => String::new(),
    };
    // Parsed here, before any store is touched, so local and remote report it alike.
    if let Err(error) = FlowFilter::parse(&filter) {
        eprintln!("flowtap: {error}");
        return Ok(ExitCode::from(2));
    }
    let store = open(&args, confdir, security).await?;
    match args.command {
        FlowsCommand::List { .. } => {
            store
                .list(&filter, |summary| println!("{}", list_line(&summary)))
                .await?;
        }
        FlowsCommand::Show { id } => {
            let flow = store.flow(&id, BODY_PREVIEW_BYTES).await?;
            print!("{}", show(&flow));
        }
        FlowsCommand::Export { output, .. } => {
            store
                .export_file(&filter, &output)
                .await
                .with_context(|| format!("exporting flows to {}", output.display()))?;
        }
        FlowsCommand::Import { file } => {
            let imported = store
                .import_file(&file)
                .await
                .with_context(|| format!("importing {}", file.display()))?;
            eprintln!("imported {imported} flows");
        }
        FlowsCommand::Delete { .. } => {
            let deleted = store.delete(&filter).await?;
            eprintln!("deleted {deleted} flows");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn open(
    args: &FlowsArgs,
    confdir: &Path,
    security: &ClientConfig,
) -> anyhow::Result<StoreClient> {
    if let Some(endpoint) = &args.store_addr {
        return StoreClient::connect_with(endpoint, security)
            .await
            .with_context(|| format!("connecting to flow-store {endpoint}"));
    }
    let location = args
        .store
        .clone()
        .unwrap_or_else(|| StoreLocation::Sqlite(confdir.join("flows.db")));
    StoreClient::open(&location)
        .await
        .with_context(|| format!("opening flow store {location}"))
}

/// `10.0.0.7:51234: GET https://example.com/ HTTP/1.1 << 200 OK 1.2k`
fn list_line(flow: &FlowSummary) -> String {
    let mut line = format!("{}: ", flow.client);
    if flow.method.is_empty() {
        line.push_str(&format!("{} {}", flow.r#type.to_uppercase(), flow.url));
    } else {
        line.push_str(&format!(
            "{} {} {}",
            flow.method, flow.url, flow.http_version
        ));
    }
    if !flow.error.is_empty() {
        line.push_str(&format!(" << {}", flow.error));
    } else if flow.status_code != 0 {
        line.push_str(&format!(
            " << {} {} {}",
            flow.status_code,
            flow.reason,
            pretty_size(flow.response_size)
        ));
    }
    line
}

fn show(flow: &Flow) -> String {
    let mut out = format!("flow {} ({})\n", flow.id, flow.r#type);
    if let Some(request) = &flow.request {
        out.push_str(&format!(
            "\n{} {} {}\n",
            String::from_utf8_lossy(&request.method),
            String::from_utf8_lossy(&request.path),
            String::from_utf8_lossy(&request.http_version)
        ));
        out.push_str(&headers(&request.headers));
        out.push_str(&body(request.content.as_deref()));
    }
    if let Some(response) = &flow.response {
        out.push_str(&format!(
            "\n{} {} {}\n",
            String::from_utf8_lossy(&response.http_version),
            response.status_code,
            String::from_utf8_lossy(&response.reason)
        ));
        out.push_str(&headers(&response.headers));
        out.push_str(&body(response.content.as_deref()));
    }
    if let Some(error) = &flow.error {
        out.push_str(&format!("\nerror: {}\n", error.msg));
    }
    out
}

fn headers(headers: &[Header]) -> String {
    headers
        .iter()
        .map(|h| {
            format!(
                "{}: {}\n",
                String::from_utf8_lossy(&h.name),
                String::from_utf8_lossy(&h.value)
            )
        })
        .collect()
}

fn body(content: Option<&[u8]>) -> String {
    match content {
        None => "\n(body not stored)\n".into(),
        Some([]) => String::new(),
        Some(data) => match std::str::from_utf8(data) {
            Ok(text) => format!("\n{text}\n"),
            Err(_) => format!("\n({} bytes of binary content)\n", data.len()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_read_like_mitmdump() {
        let summary = FlowSummary {
            client: "127.0.0.1:5000".into(),
            method: "GET".into(),
            url: "https://example.com/".into(),
            http_version: "HTTP/1.1".into(),
            status_code: 200,
            reason: "OK".into(),
            response_size: 1234,
            ..FlowSummary::default()
        };
        assert_eq!(
            list_line(&summary),
            "127.0.0.1:5000: GET https://example.com/ HTTP/1.1 << 200 OK 1.2k"
        );
    }
}
