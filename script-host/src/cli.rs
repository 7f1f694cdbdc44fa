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
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use crate::{Config, ScriptHost};
use flowtap_transport::UnixConn;

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
    /// Exit when standard input closes: the proxy that started this worker keeps a pipe to it
    /// open, so a proxy that dies, even by SIGKILL, leaves no worker behind.
    #[arg(long, hide = true)]
    pub exit_with_stdin: bool,
}

/// Runs the worker on its own current-thread runtime, then ends the process. The Python
/// dispatcher threads drive that runtime while they wait for calls, so that a call runs on the
/// thread that read it from the socket; the calling thread drives it while none can (see
/// [`ScriptHost::serve_io`]). Call it from a thread that is not inside a tokio runtime.
pub fn main(args: Args) -> anyhow::Result<()> {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(flowtap_spin::before_park)
            .build()
            .context("starting the runtime")?,
    );
    let config = Config {
        scripts: args.scripts,
        venv: std::env::var_os("VIRTUAL_ENV").map(PathBuf::from),
        package_dir: args.python_package_dir,
    };
    let host = ScriptHost::start(&config).context("starting the script host")?;
    if args.exit_with_stdin {
        exit_when_stdin_closes(args.listen.strip_prefix("unix:").map(PathBuf::from));
    }
    let incoming = runtime.block_on(bind(&args.listen))?;
    announce(&incoming.address);
    let server = runtime.spawn(serve(host.clone(), incoming.stream));
    host.serve_io(&runtime);
    // Graceful shutdown waits for the cores to close their streams; give the last messages a
    // moment to flush, then stop regardless.
    let served =
        runtime.block_on(async { tokio::time::timeout(Duration::from_millis(500), server).await });
    if let Some(path) = args.listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
    }
    if let Ok(Ok(Err(e))) = served {
        return Err(e);
    }
    if let Err(e) = runtime.block_on(host.finished()) {
        tracing::error!("the Python runtime stopped: {e}");
    }
    // Python's worker threads are not joined: the process ends here.
    std::process::exit(0)
}

/// Ends the process once standard input reaches its end (or fails), removing the unix socket.
fn exit_when_stdin_closes(socket: Option<PathBuf>) {
    std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
            tracing::info!("the proxy that started this worker is gone; exiting");
            if let Some(path) = socket {
                let _ = std::fs::remove_file(path);
            }
            std::process::exit(0);
        })
        .ok();
}

/// A bound listener and the address it announces.
struct Incoming {
    address: String,
    stream: Listener,
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

async fn bind(listen: &str) -> anyhow::Result<Incoming> {
    if let Some(path) = listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).with_context(|| format!("binding {path}"))?;
        return Ok(Incoming {
            address: listen.to_string(),
            stream: Listener::Unix(listener),
        });
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener
        .local_addr()
        .context("reading the bound address")?
        .to_string();
    Ok(Incoming {
        address,
        stream: Listener::Tcp(listener),
    })
}

/// Serves the script protocol until a core sends Done. A server that fails stops the host, so
/// that [`ScriptHost::serve_io`] returns.
async fn serve(host: ScriptHost, listener: Listener) -> anyhow::Result<()> {
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(host.service().into_server());
    let finished = {
        let host = host.clone();
        async move {
            let _ = host.finished().await;
        }
    };
    let served = match listener {
        Listener::Unix(listener) => {
            let incoming =
                UnixListenerStream::new(listener).map(|stream| stream.and_then(UnixConn::new));
            router
                .serve_with_incoming_shutdown(incoming, finished)
                .await
                .context("serving on the unix socket")
        }
        Listener::Tcp(listener) => router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), finished)
            .await
            .context("serving on TCP"),
    };
    if let Err(e) = &served {
        host.stop(format!("{e:#}"));
    }
    served
}

fn announce(addr: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "script-host listening on {addr}");
    let _ = out.flush();
}
