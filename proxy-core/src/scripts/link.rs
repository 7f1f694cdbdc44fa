//! One script-host worker: its process (when this client spawned it), its session stream, the
//! calls waiting for replies, and the intercepted flows waiting for a resume or kill.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use flowtap_proto::v1::{
    self, CoreMessage, HookCall, ProtocolVersion, Ready, WorkerMessage, control, core_message,
    script_host_client::ScriptHostClient, worker_message,
};
use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Streaming;

use super::unix::UnixConn;
use super::{Config, ScriptsError};
use crate::hooks::{CoreControl, Interest};

/// How an intercepted flow was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Release {
    /// A script called `flow.resume()`.
    Resume,
    /// A script called `flow.kill()`.
    Kill,
}

/// A hook reply, and for an intercepted flow the wait for its release.
pub(super) struct Reply {
    pub(super) reply: v1::HookReply,
    pub(super) release: Option<oneshot::Receiver<Release>>,
}

type Control = Arc<OnceLock<Arc<dyn CoreControl>>>;
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The session with one worker.
pub(super) struct Link {
    index: usize,
    tx: mpsc::UnboundedSender<CoreMessage>,
    pending: Mutex<HashMap<u64, (String, oneshot::Sender<Reply>)>>,
    intercepts: Mutex<HashMap<String, oneshot::Sender<Release>>>,
    configures: Mutex<VecDeque<oneshot::Sender<String>>>,
    next_id: AtomicU64,
    child: Mutex<Option<Child>>,
    closed: watch::Sender<bool>,
    shutting_down: AtomicBool,
    control: Control,
    /// The client's interest, widened when a reloaded script declares more hooks.
    interest: Arc<Interest>,
    _socket: Option<SocketFile>,
}

/// The unix socket of a worker this client spawned, removed when the link goes (a worker
/// removes it itself when it ends normally, not when it is killed).
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("link locks are never poisoned: no code panics while holding them")
}

/// The thread that runs the I/O of every worker session (tonic's connection and stream tasks,
/// the reader of replies, the spawned worker processes) on one current-thread runtime. A hook
/// call then wakes this one thread to send and, with the reply, the caller's task: no other
/// thread of the proxy's runtime takes part in a call.
pub(super) struct IoThread {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for IoThread {
    /// Stops the thread and waits for its runtime to drop its tasks: the links go, and with
    /// them the worker processes this client spawned (killed on drop), before the caller goes
    /// on (a `flowtap` that exits right after must not leave a worker behind).
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl IoThread {
    /// Starts the thread.
    pub(super) fn start() -> Result<Self, ScriptsError> {
        let io_error = |e: std::io::Error| ScriptsError::Spawn {
            binary: "script-host".into(),
            reason: format!("starting the script I/O thread: {e}"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(flowtap_spin::before_park)
            .build()
            .map_err(io_error)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("script-io".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(io_error)?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Link {
    /// Starts or reaches worker `index`, opens its session on the I/O thread and completes
    /// Hello → Ready.
    pub(super) async fn open(
        io: &IoThread,
        config: &Config,
        index: usize,
        control: Control,
        interest: Arc<Interest>,
    ) -> Result<(Arc<Self>, Ready), ScriptsError> {
        let config = config.clone();
        io.handle
            .spawn(async move { Self::open_here(&config, index, control, interest).await })
            .await
            .map_err(|e| ScriptsError::Worker {
                address: format!("worker {index}"),
                reason: format!("the script I/O thread failed: {e}"),
            })?
    }

    async fn open_here(
        config: &Config,
        index: usize,
        control: Control,
        interest: Arc<Interest>,
    ) -> Result<(Arc<Self>, Ready), ScriptsError> {
        let (address, child) = match config.addresses.get(index) {
            Some(address) => (address.clone(), None),
            None => {
                let (address, child) = spawn(config).await?;
                (address, Some(child))
            }
        };
        let socket = child
            .as_ref()
            .and(address.strip_prefix("unix:"))
            .map(|path| SocketFile(PathBuf::from(path)));
        let worker_error = |reason: String| ScriptsError::Worker {
            address: address.clone(),
            reason,
        };
        let channel = connect(&address, &config.grpc)
            .await
            .map_err(|e| worker_error(format!("connecting: {e}")))?;
        let mut client = ScriptHostClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::unbounded_channel::<CoreMessage>();
        let outbound = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|message| (message, rx))
        });
        let mut inbound = client
            .session(outbound)
            .await
            .map_err(|e| {
                worker_error(format!(
                    "opening the session: {}",
                    flowtap_grpc::describe_status(&e)
                ))
            })?
            .into_inner();
        let _ = tx.send(CoreMessage {
            kind: Some(core_message::Kind::Hello(v1::Hello {
                protocol_version: ProtocolVersion::ProtocolVersion1 as i32,
                core_options: config.core_options.clone(),
                deferred: config.deferred.clone(),
            })),
        });
        let ready = tokio::time::timeout(config.startup_timeout, wait_ready(&mut inbound))
            .await
            .map_err(|_| worker_error("no Ready in time".into()))?
            .map_err(worker_error)?;
        let link = Arc::new(Self {
            index,
            tx,
            pending: Mutex::new(HashMap::new()),
            intercepts: Mutex::new(HashMap::new()),
            configures: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            child: Mutex::new(child),
            closed: watch::channel(false).0,
            shutting_down: AtomicBool::new(false),
            control,
            interest,
            _socket: socket,
        });
        tokio::spawn(Arc::clone(&link).read(inbound));
        Ok((link, ready))
    }

    /// Sends a message on the session (dropped if the session ended).
    pub(super) fn send(&self, kind: core_message::Kind) {
        let _ = self.tx.send(CoreMessage { kind: Some(kind) });
        flowtap_spin::nudge();
    }

    /// Sends an awaited call; None if the worker's session ended first.
    pub(super) async fn call(&self, mut call: HookCall) -> Option<Reply> {
        call.call_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let flow_id = call.flow.as_ref().map(|f| f.id.clone()).unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(call.call_id, (flow_id, tx));
        if *self.closed.borrow() {
            lock(&self.pending).remove(&call.call_id);
            return None;
        }
        self.send(core_message::Kind::HookCall(call));
        rx.await.ok()
    }

    /// Sends a call the worker does not answer.
    pub(super) fn observe(&self, mut call: HookCall) {
        call.call_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(core_message::Kind::HookCall(call));
    }

    /// Sends Configure and waits for the scripts' verdict.
    pub(super) async fn configure(
        &self,
        options: Vec<v1::Option>,
        timeout: Duration,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        lock(&self.configures).push_back(tx);
        self.send(core_message::Kind::Configure(v1::Configure { options }));
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(error)) if error.is_empty() => Ok(()),
            Ok(Ok(error)) => Err(error),
            Ok(Err(_)) => Err("the script host ended".into()),
            Err(_) => Err("the script host did not answer in time".into()),
        }
    }

    /// Completes when the session ended.
    pub(super) async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// True once [`Link::shutdown`] started (an end of the session is then expected).
    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Sends Done (the scripts' `done` hooks run) and waits for the worker to end.
    pub(super) async fn shutdown(&self, timeout: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        self.send(core_message::Kind::Done(v1::Done {}));
        let _ = tokio::time::timeout(timeout, self.closed()).await;
        let child = lock(&self.child).take();
        if let Some(mut child) = child
            && tokio::time::timeout(timeout, child.wait()).await.is_err()
        {
            let _ = child.kill().await;
        }
    }

    async fn read(self: Arc<Self>, mut inbound: Streaming<WorkerMessage>) {
        loop {
            match inbound.message().await {
                Ok(Some(message)) => {
                    if let Some(kind) = message.kind {
                        self.handle(kind);
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    if !self.is_shutting_down() {
                        tracing::warn!(worker = self.index, %status, "script-host session failed");
                    }
                    break;
                }
            }
        }
        // Waiting calls see None (their policy applies); intercepted flows are released as
        // killed, since no script can resume them any more.
        lock(&self.pending).clear();
        lock(&self.intercepts).clear();
        lock(&self.configures).clear();
        self.closed.send_replace(true);
    }

    fn handle(&self, kind: worker_message::Kind) {
        match kind {
            worker_message::Kind::HookReply(reply) => self.on_reply(reply),
            worker_message::Kind::Control(control) => {
                let id = control.control_id;
                if let Err(error) = self.on_control(control) {
                    self.send(core_message::Kind::ControlResult(v1::ControlResult {
                        control_id: id,
                        error,
                    }));
                }
            }
            worker_message::Kind::Log(record) => log(&record),
            worker_message::Kind::ConfigureResult(result) => {
                if let Some(tx) = lock(&self.configures).pop_front() {
                    let _ = tx.send(result.error);
                }
            }
            // A script was reloaded (or the worker restarted) and may implement more hooks.
            worker_message::Kind::Ready(ready) => {
                let before = format!("{:?}", self.interest);
                super::declare(&self.interest, &ready.scripts);
                let after = format!("{:?}", self.interest);
                if after != before {
                    tracing::info!(
                        worker = self.index,
                        "scripts reloaded; hooks called now: {after}"
                    );
                }
            }
        }
    }

    fn on_reply(&self, reply: v1::HookReply) {
        let Some((flow_id, tx)) = lock(&self.pending).remove(&reply.call_id) else {
            return; // the caller gave up (deadline)
        };
        // Register the intercept before handing the reply over, so that a resume sent right
        // after the reply finds it.
        let release = (reply.verdict() == v1::Verdict::Intercept).then(|| {
            let (release_tx, release_rx) = oneshot::channel();
            lock(&self.intercepts).insert(flow_id, release_tx);
            release_rx
        });
        let _ = tx.send(Reply { reply, release });
    }

    fn on_control(&self, control: v1::Control) -> Result<(), String> {
        let kind = control.kind.ok_or("empty control message")?;
        let release = |flow_id: &str, how: Release| {
            lock(&self.intercepts)
                .remove(flow_id)
                .map(|tx| tx.send(how).is_ok())
        };
        let core = || {
            self.control
                .get()
                .cloned()
                .ok_or_else(|| "the proxy has not attached control yet".to_string())
        };
        match kind {
            control::Kind::Resume(flow_id) => match release(&flow_id, Release::Resume) {
                Some(_) => Ok(()),
                None => core()?.resume(&flow_id),
            },
            control::Kind::Kill(flow_id) => match release(&flow_id, Release::Kill) {
                Some(_) => Ok(()),
                None => core()?.kill(&flow_id),
            },
            control::Kind::ReplayClient(flow) => core()?.replay_client(flow),
            control::Kind::InjectWebsocket(inject) => core()?.inject_websocket(
                &inject.flow_id,
                inject.to_client,
                inject.content,
                inject.is_text,
            ),
            control::Kind::InjectTcp(inject) => {
                core()?.inject_tcp(&inject.flow_id, inject.to_client, inject.content)
            }
            control::Kind::Shutdown(_) => {
                core()?.shutdown();
                Ok(())
            }
            control::Kind::SetOptions(_) => {
                Err("changing proxy options from scripts is not supported yet".into())
            }
        }
    }
}

async fn wait_ready(inbound: &mut Streaming<WorkerMessage>) -> Result<Ready, String> {
    loop {
        let message = inbound
            .message()
            .await
            .map_err(|e| format!("session failed before Ready: {e}"))?
            .ok_or("session ended before Ready")?;
        match message.kind {
            Some(worker_message::Kind::Ready(ready)) => return Ok(ready),
            Some(worker_message::Kind::Log(record)) => log(&record),
            _ => {}
        }
    }
}

fn log(record: &v1::LogRecord) {
    let (script, message) = (&record.script, &record.message);
    match record.level.as_str() {
        "error" => tracing::error!(target: "script", %script, "{message}"),
        "warn" => tracing::warn!(target: "script", %script, "{message}"),
        "debug" => tracing::debug!(target: "script", %script, "{message}"),
        _ => tracing::info!(target: "script", %script, "{message}"),
    }
}

/// A channel to a worker at `unix:PATH` (plain) or `HOST:PORT`, `http://` or `https://` (TLS
/// as `grpc` says); calls carry `grpc`'s token, if any. The error names the cause (expired
/// certificate, unknown CA, refused client certificate).
async fn connect(
    address: &str,
    grpc: &flowtap_grpc::ClientConfig,
) -> Result<flowtap_grpc::Channel, String> {
    let channel = match address.strip_prefix("unix:") {
        Some(path) => tonic::transport::Endpoint::from_static("http://script-host")
            .connect_with_connector(UnixConnector(PathBuf::from(path)))
            .await
            .map(|c| grpc.channel(c)),
        None => {
            grpc.dial(address)
                .map_err(|e| e.to_string())?
                .map_endpoint(|e| e.tcp_nodelay(true))
                .connect()
                .await
        }
    };
    channel.map_err(|e| flowtap_grpc::describe(&e))
}

/// Connects tonic to a unix socket.
#[derive(Clone, Debug)]
struct UnixConnector(PathBuf);

impl tower_service::Service<http::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<UnixConn>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(hyper_util::rt::TokioIo::new(UnixConn::new(stream)?))
        })
    }
}

/// A unix socket path for a worker this process spawns: in the temporary directory, unique
/// per process and spawn.
fn socket_path() -> PathBuf {
    static SPAWNED: AtomicU64 = AtomicU64::new(0);
    let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("flowtap-script-{}-{n}.sock", std::process::id()))
}

/// Spawns `script-host` on a unix socket (cheaper per message than loopback TCP) and reads the
/// address it announces.
async fn spawn(config: &Config) -> Result<(String, Child), ScriptsError> {
    let binary = config.binary_path().map_err(|reason| ScriptsError::Spawn {
        binary: "script-host".into(),
        reason,
    })?;
    let spawn_error = |reason: String| ScriptsError::Spawn {
        binary: binary.display().to_string(),
        reason,
    };
    let socket = socket_path();
    let mut command = Command::new(&binary);
    command.args(&config.binary_args);
    for spec in &config.scripts {
        command.arg("-s").arg(spec);
    }
    command
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        // The worker exits when this pipe closes: when the proxy goes, however it goes.
        .arg("--exit-with-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| spawn_error(e.to_string()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| spawn_error("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(config.startup_timeout, lines.next_line())
        .await
        .map_err(|_| spawn_error("it did not announce its address in time".into()))?
        .map_err(|e| spawn_error(e.to_string()))?
        .ok_or_else(|| spawn_error("it exited before announcing its address".into()))?;
    let address = line
        .strip_prefix("script-host listening on ")
        .ok_or_else(|| spawn_error(format!("unexpected output: {line}")))?
        .to_string();
    // Keep reading so the worker never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((address, child))
}
