//! The script host: a gRPC server that runs mitmproxy-style Python scripts for proxy-core.
//!
//! A `script-host` process embeds CPython (PyO3) and loads the `-s` scripts into it. proxy-core
//! connects and opens one `ScriptHost.Session` stream (see `proto/flowtap/v1/script.proto`):
//! Hello → Ready, Running, then hook calls answered by hook replies, with control and log
//! messages from the scripts at any time, until Done.
//!
//! A standalone worker (`script-host --listen`) serves several proxies at once: a Done ends only
//! the session that sent it. It stops when told to ([`ScriptHost::drain`], on SIGTERM or
//! SIGINT in [`cli`]): it reports NOT_SERVING on `grpc.health.v1.Health`, refuses new sessions,
//! lets the calls under way finish within a grace period, runs the scripts' `done` hooks and
//! ends the remaining streams. A worker that a proxy spawned for itself ([`Config::spawned`])
//! ends with that proxy's Done instead.
//!
//! Where things happen:
//!
//! - [`server`]: the tonic service; turns the session stream into [`worker`] events and back.
//! - [`worker`]: the state shared between tokio and Python: the event inbox (which also says
//!   which thread drives the I/O: a Python dispatcher waiting for calls, so that a call runs on
//!   the thread that read it), the open sessions, draining.
//! - [`cli`]: the command line, the listener, the health service, the signals.
//! - `python` (private): the interpreter (start-up, venv detection, the embedded package), the
//!   bridge object through which the Python runtime takes events and sends replies, and the
//!   conversions between protobuf flows and Python state (a flow's parts reach Python unbuilt).
//!   All PyO3 code lives there; `PyErr` never leaves it.
//! - the unix socket stream of a session comes from `flowtap-transport` (shared with the proxy).
//!
//! The Python side (`python/flowtap_host`, `python/mitmproxy`) does the rest: the addon chain,
//! the ordering of hook calls (`flowtap_host/order.py`, its one owner), the thread pool for sync hooks and the asyncio loop for async ones,
//! and the watchdog (`flowtap_host/watchdog.py`) that answers late calls and ends the worker
//! when a hook is stuck past `hook_stuck_timeout` (a Rust thread, `worker::heartbeat`, does it
//! when a hook holds the GIL for ever); the process then exits with [`cli::EXIT_STUCK`].
//!
//! A reader new to the crate starts at [`ScriptHost::start`] and [`server::ScriptHostService`].

use std::path::PathBuf;
use std::sync::Arc;

pub mod cli;
pub mod server;
pub mod worker;

mod codecs;
mod python;

pub use server::ScriptHostService;
pub use worker::{Drained, Worker};

/// How to start the script host.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The `-s` values in load order: a path, optionally followed by arguments for scripts of
    /// the 0.x era (`"script.py arg1 arg2"`).
    pub scripts: Vec<String>,
    /// A virtualenv to run as (its packages importable), usually `$VIRTUAL_ENV`.
    pub venv: Option<PathBuf>,
    /// Where to extract the embedded Python package; a private directory under the system
    /// temporary directory when absent.
    pub package_dir: Option<PathBuf>,
    /// A proxy started this worker for itself (`--exit-with-stdin`): a Done from a session runs
    /// the scripts' `done` hooks and ends the host. Otherwise a Done ends only its session and
    /// the host stops through [`ScriptHost::drain`].
    pub spawned: bool,
}

/// Errors that stop the script host from starting.
#[derive(Debug, thiserror::Error)]
pub enum ScriptHostError {
    /// The embedded Python package could not be written to disk.
    #[error("writing the embedded Python package to {path}: {source}")]
    Package {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The interpreter could not be started or the runtime not imported.
    #[error("starting Python: {0}")]
    Python(String),
}

/// A running interpreter with the scripts' runtime, ready to serve sessions.
#[derive(Clone, Debug)]
pub struct ScriptHost {
    worker: Arc<Worker>,
}

impl ScriptHost {
    /// Starts CPython on its own thread and the script runtime in it. Scripts are loaded when
    /// the first session says Hello (so that its `--set` values apply).
    pub fn start(config: &Config) -> Result<Self, ScriptHostError> {
        let worker = Arc::new(Worker::new(config.spawned));
        python::start(config, &worker)?;
        worker
            .watch_python()
            .map_err(|e| ScriptHostError::Python(format!("spawning the Python watch: {e}")))?;
        Ok(Self { worker })
    }

    /// The gRPC service for this host, to add to a tonic server.
    pub fn service(&self) -> ScriptHostService {
        ScriptHostService::new(Arc::clone(&self.worker))
    }

    /// Drives the I/O of `runtime`, on which the host's gRPC server was spawned, until the host
    /// finished (see [`Worker::serve_io`]). Without it the service runs on whatever runtime
    /// serves it, and each call wakes a Python thread.
    pub fn serve_io(&self, runtime: &Arc<tokio::runtime::Runtime>) {
        self.worker.serve_io(runtime);
    }

    /// Stops the host as if Python had failed with `reason` (the dispatcher threads and
    /// [`ScriptHost::serve_io`] return).
    pub fn stop(&self, reason: String) {
        self.worker.finish(Err(reason));
    }

    /// Stops the host gracefully (see [`Worker::drain`]): no new sessions, the calls under way
    /// finish within `grace` (those still running then are answered `timed_out`), the scripts'
    /// `done` hooks run, every session's stream ends. Completes once the host finished.
    pub async fn drain(&self, grace: std::time::Duration) -> Drained {
        self.worker.drain(grace).await
    }

    /// Whether the host drains or finished (it takes no new session).
    pub fn is_draining(&self) -> bool {
        self.worker.is_draining()
    }

    /// Whether the host stopped because a hook was stuck past `hook_stuck_timeout` (the
    /// process should then exit with [`cli::EXIT_STUCK`], to be replaced).
    pub fn is_stuck(&self) -> bool {
        self.worker.is_stuck()
    }

    /// Completes when the scripts' `done` hooks ran (the host drained, or the proxy of a
    /// spawned worker sent Done) or Python failed; the error text of a failure.
    pub async fn finished(&self) -> Result<(), String> {
        self.worker.finished().await
    }
}
