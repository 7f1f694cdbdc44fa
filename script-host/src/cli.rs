//! The worker's command line, shared by the `script-host` binary and `flowtap script-host`
//! (the worker `flowtap -s` spawns, so that one binary is enough).
//!
//! ```text
//! script-host -s a.py -s "old.py arg1 arg2" [--listen 127.0.0.1:0 | --listen unix:/path]
//!             [--shutdown-grace SECONDS]
//!             [--tls-cert F --tls-key F [--tls-client-ca F]] [--token-file F] [--insecure-listen]
//! ```
//!
//! On TCP off loopback it requires client certificates or a token (`flowtap_grpc::ServerArgs`);
//! a unix socket takes no TLS (its file mode guards it) but does check a token if given.
//!
//! Prints `script-host listening on ADDR` (the bound address) on stdout once it accepts
//! sessions. Serves `grpc.health.v1.Health` next to the script protocol: SERVING for `""` and
//! `flowtap.v1.ScriptHost` while it takes sessions, NOT_SERVING once it drains.
//!
//! A standalone worker serves any number of proxies; one that sends Done ends only its own
//! session. On SIGTERM or SIGINT the worker drains (see [`ScriptHost::drain`]): NOT_SERVING,
//! new sessions refused, the calls under way get `--shutdown-grace` to finish, then the
//! scripts' `done` hooks run and it exits 0. A worker a proxy spawned (`--exit-with-stdin`)
//! exits when that proxy sends Done, or drains as on SIGTERM when its standard input closes.
//! On every one of these paths Python finalises before the process ends (`done`, atexit
//! handlers, files the scripts left open flushed and closed; see `flowtap_host/finalise.py`).
//!
//! A worker with a hook still running `hook_stuck_timeout` after it arrived (a proxy option the
//! proxy sends in Hello; by default four times `hook_timeout`) exits with [`EXIT_STUCK`], since
//! a Python thread cannot be stopped: a proxy respawns the workers it spawned, and a shared
//! worker is restarted by whatever runs it (Kubernetes restarts the container). A Python
//! runtime that failed otherwise exits 1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use flowtap_proto::v1::script_host_server::ScriptHostServer;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

use crate::{Config, ScriptHost};
use flowtap_transport::UnixConn;

/// The exit status of a worker that stopped because a hook was stuck past
/// `hook_stuck_timeout` (EX_TEMPFAIL: whatever runs it should start it again; a proxy that
/// spawned it does).
pub const EXIT_STUCK: i32 = 75;

/// Ends the process at once with [`EXIT_STUCK`]. Not `std::process::exit`: the C library's
/// exit runs handlers and flushes streams, and a stuck Python thread may hold what they need
/// (the interpreter, a stream's lock), so the exit itself could hang.
pub fn exit_stuck() -> ! {
    use std::io::Write as _;
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process without running anything else; nothing is left to
    // finalise that could be finalised with a stuck interpreter.
    unsafe { libc::_exit(EXIT_STUCK) }
}

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
    /// Announce the address on this descriptor (opened for the worker by the proxy that spawns
    /// it) instead of standard output, which then stays the scripts' own (`print()`).
    #[arg(long, hide = true, value_name = "FD")]
    pub announce_fd: Option<i32>,
    /// On SIGTERM or SIGINT: how long the hook calls under way may take to finish (seconds)
    /// before they are answered timed out and the scripts' `done` hooks run.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub shutdown_grace: f64,
    /// `--metrics HOST:PORT`: Prometheus metrics and probes (ready once sessions are taken).
    #[command(flatten)]
    pub metrics: flowtap_telemetry::MetricsArgs,
    /// Who may open sessions: TLS, client certificates, a token.
    #[command(flatten)]
    pub security: flowtap_grpc::ServerArgs,
}

/// Runs the worker on its own current-thread runtime, then ends the process. The Python
/// dispatcher threads drive that runtime while they wait for calls, so that a call runs on the
/// thread that read it from the socket; the calling thread drives it while none can (see
/// [`ScriptHost::serve_io`]). Call it from a thread that is not inside a tokio runtime.
pub fn main(args: Args) -> anyhow::Result<()> {
    flowtap_telemetry::worker::register();
    let _metrics = args.metrics.start()?;
    let runtime = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(flowtap_spin::before_park)
            .build()
            .context("starting the runtime")?,
    );
    let grace = Duration::try_from_secs_f64(args.shutdown_grace)
        .context("--shutdown-grace takes a number of seconds, 0 or more")?;
    let config = Config {
        scripts: args.scripts,
        venv: std::env::var_os("VIRTUAL_ENV").map(PathBuf::from),
        package_dir: args.python_package_dir,
        spawned: args.exit_with_stdin,
    };
    let host = ScriptHost::start(&config).context("starting the script host")?;
    if args.exit_with_stdin {
        exit_when_stdin_closes(
            args.listen.strip_prefix("unix:").map(PathBuf::from),
            host.clone(),
            runtime.handle().clone(),
            grace,
        );
    }
    let incoming = runtime.block_on(bind(&args.listen))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    runtime.block_on(set_health(&health, ServingStatus::Serving));
    let signals = runtime
        .block_on(async { Signals::new() })
        .context("installing the SIGTERM/SIGINT handlers")?;
    runtime.spawn(drain_on_signal(signals, host.clone(), health, grace));
    // Ready before the address is announced: whoever reads the announcement may probe at once
    // (the listener is bound; sessions queue until the server runs).
    flowtap_telemetry::set_ready(true);
    announce(&incoming.address, args.announce_fd);
    let server = runtime.spawn(serve(
        host.clone(),
        incoming.stream,
        health_service,
        args.security,
    ));
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
    let finished = runtime.block_on(host.finished());
    if host.is_stuck() {
        // Python's threads cannot be stopped: a new process is the way to get them back.
        exit_stuck();
    }
    if let Err(e) = finished {
        tracing::error!("the Python runtime stopped: {e}");
        std::process::exit(1);
    }
    // Python's worker threads are not joined: the process ends here.
    std::process::exit(0)
}

/// Once standard input reaches its end (or fails) the worker drains as on SIGTERM (the
/// scripts' `done` hooks run, Python finalises, `main` returns); if that takes longer than the
/// grace period and a little more, the process ends anyway, removing the unix socket.
fn exit_when_stdin_closes(
    socket: Option<PathBuf>,
    host: ScriptHost,
    runtime: tokio::runtime::Handle,
    grace: Duration,
) {
    std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
            tracing::info!("the proxy that started this worker is gone; draining, then exiting");
            runtime.spawn(async move { host.drain(grace).await });
            std::thread::sleep(grace + Duration::from_secs(2));
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

/// SIGTERM and SIGINT, installed before the worker announces itself.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Call inside the runtime.
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// On the first SIGTERM or SIGINT: NOT_SERVING, then drains the host (which ends the process).
/// A second signal ends the process at once (exit status 1).
async fn drain_on_signal(
    mut signals: Signals,
    host: ScriptHost,
    health: HealthReporter,
    grace: Duration,
) {
    let name = tokio::select! {
        _ = signals.term.recv() => "SIGTERM",
        _ = signals.int.recv() => "SIGINT",
    };
    tracing::info!("{name}: draining (grace {grace:?}), then running the scripts' done hooks");
    set_health(&health, ServingStatus::NotServing).await;
    flowtap_telemetry::set_ready(false);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = signals.term.recv() => "SIGTERM",
            _ = signals.int.recv() => "SIGINT",
        };
        tracing::warn!("{name} while draining: exiting without waiting");
        std::process::exit(1);
    });
    let drained = host.drain(grace).await;
    if drained.timed_out > 0 {
        tracing::warn!(
            calls = drained.timed_out,
            "hook calls still running after the grace period were answered timed out"
        );
    }
}

/// The health of the server (`""`) and of the script protocol's service.
async fn set_health(health: &HealthReporter, status: ServingStatus) {
    use tonic::server::NamedService as _;
    health.set_service_status("", status).await;
    health
        .set_service_status(ScriptHostServer::<crate::ScriptHostService>::NAME, status)
        .await;
}

/// Serves the script protocol (and health) until the host finished, with TLS (TCP only) and a
/// token as `security` says (health needs no token); an unauthenticated TCP listener off
/// loopback is refused unless `--insecure-listen`. A server that fails stops the host, so that
/// [`ScriptHost::serve_io`] returns.
async fn serve(
    host: ScriptHost,
    listener: Listener,
    health: HealthServer<impl Health>,
    security: flowtap_grpc::ServerArgs,
) -> anyhow::Result<()> {
    let finished = {
        let host = host.clone();
        async move {
            let _ = host.finished().await;
        }
    };
    let served = async {
        let security = security
            .config()
            .context("reading the TLS and token files")?;
        let server = tonic::transport::Server::builder().tcp_nodelay(true);
        match listener {
            Listener::Unix(listener) => {
                let incoming =
                    UnixListenerStream::new(listener).map(|stream| stream.and_then(UnixConn::new));
                server
                    .layer(security.token_layer())
                    .add_service(health)
                    .add_service(host.service().into_server())
                    .serve_with_incoming_shutdown(incoming, finished)
                    .await
                    .context("serving on the unix socket")
            }
            Listener::Tcp(listener) => {
                security.check_listen(listener.local_addr()?)?;
                security
                    .apply(server)?
                    .add_service(health)
                    .add_service(host.service().into_server())
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), finished)
                    .await
                    .map_err(|e| anyhow::anyhow!("serving on TCP: {}", flowtap_grpc::describe(&e)))
            }
        }
    }
    .await;
    if let Err(e) = &served {
        host.stop(format!("{e:#}"));
    }
    served
}

/// Writes `script-host listening on ADDR` to standard output, or to descriptor `fd` (then
/// closed) when the spawning proxy gave one.
fn announce(addr: &str, fd: Option<i32>) {
    use std::io::Write as _;
    let line = format!("script-host listening on {addr}\n");
    match fd {
        // Descriptors 0-2 are the process's own streams: never take them over.
        Some(fd) if fd > 2 => {
            use std::os::fd::FromRawFd as _;
            // SAFETY: the descriptor was opened for this process by its parent for this one
            // line (`--announce-fd`); nothing else in the process uses it, and the File takes
            // ownership and closes it.
            let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
            let _ = file.write_all(line.as_bytes());
        }
        _ => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}
