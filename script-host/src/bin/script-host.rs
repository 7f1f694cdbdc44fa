//! `script-host`: serves the script protocol for the `-s` scripts given (see
//! [`flowtap_script_host::cli`]).

use clap::Parser;

/// Runs mitmproxy-style Python scripts for flowtap's proxy.
#[derive(Parser, Debug)]
#[command(name = "script-host", version)]
struct Cli {
    #[command(flatten)]
    args: flowtap_script_host::cli::Args,
    #[command(flatten)]
    log: flowtap_telemetry::LogArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    flowtap_telemetry::init_logging(
        cli.log.log_format,
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        true,
    )?;
    flowtap_script_host::cli::main(cli.args)
}
