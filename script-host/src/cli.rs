//! The worker's command line, shared by the `script-host` binary and `flowtap script-host`
//! (the worker `flowtap -s` spawns, so that one binary is enough).
//!
//! ```text
//! script-host -s a.py -s "old.py arg1 arg2" [--listen 127.0.0.1:0 | --listen unix:/path]
//! ```
//!
//! Prints `script-host listening on ADDR` (the bound address) on stdout once it accepts
//! sessions, and exits when a core sends Done.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use crate::{Config, ScriptHost};

/// Runs mitmproxy-style Python scripts for flowtap's proxy.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A script to load; repeat for a chain (load order). `"x.py arg1 arg2"` gives arguments
    /// to old-API scripts.
    #[arg(short = 's', long = "script")]
    pub scripts: Vec<String>,
    /// Where to listen: HOST:PORT (port 0 picks one) or unix:PATH.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Where to extract the embedded Python package (default: under the temporary directory).
    #[arg(long)]
    pub python_package_dir: Option<PathBuf>,
}

/// Runs the worker on its own runtime: one thread serves every session (a hook call crosses
/// from that thread to a Python thread and back, and no other thread takes part), then ends the
/// process. Call it from a thread that is not inside a tokio runtime.
pub fn main(args: Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(args))
}

/// Serves the script protocol until a core sends Done; then ends the process (Python's worker
/// threads are not joined).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config {
        scripts: args.scripts,
        venv: std::env::var_os("VIRTUAL_ENV").map(PathBuf::from),
        package_dir: args.python_package_dir,
    };
    let host = ScriptHost::start(&config).context("starting the script host")?;
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(host.service().into_server());
    let finished = {
        let host = host.clone();
        async move {
            if let Err(e) = host.finished().await {
                tracing::error!("the Python runtime stopped: {e}");
            }
        }
    };
    let serve = async {
        if let Some(path) = args.listen.strip_prefix("unix:") {
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path).with_context(|| format!("binding {path}"))?;
            announce(&args.listen);
            router
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), finished)
                .await
                .context("serving on the unix socket")
        } else {
            let listener = TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("binding {}", args.listen))?;
            announce(
                &listener
                    .local_addr()
                    .context("reading the bound address")?
                    .to_string(),
            );
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), finished)
                .await
                .context("serving on TCP")
        }
    };
    tokio::pin!(serve);
    tokio::select! {
        served = &mut serve => served?,
        _ = host.finished() => {
            // Graceful shutdown waits for the cores to close their streams; give the last
            // messages a moment to flush, then stop regardless.
            let _ = tokio::time::timeout(Duration::from_millis(500), serve).await;
        }
    }
    if let Some(path) = args.listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
    }
    // Python's worker threads are not joined: the process ends here.
    std::process::exit(0)
}

fn announce(addr: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "script-host listening on {addr}");
    let _ = out.flush();
}
