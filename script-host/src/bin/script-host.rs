//! `script-host`: serves the script protocol for the `-s` scripts given (see
//! [`flowtap_script_host::cli`]).

use clap::Parser;

/// Runs mitmproxy-style Python scripts for flowtap's proxy.
#[derive(Parser, Debug)]
#[command(name = "script-host", version)]
struct Cli {
    #[command(flatten)]
    args: flowtap_script_host::cli::Args,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    flowtap_script_host::cli::main(Cli::parse().args)
}
