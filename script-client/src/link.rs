//! The session with one script-host worker: its stream, the calls waiting for replies, the
//! intercepted flows waiting for a resume or kill, and the worker's process when this client
//! spawned it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use flowtap_proto::v1::{
    self, CoreMessage, HookCall, ProtocolVersion, Ready, WorkerMessage, control, core_message,
    script_host_client::ScriptHostClient, worker_message,
};
use flowtap_proxy_core::hooks::{CoreControl, Interest};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Streaming;

use crate::pieces;
use crate::spawn::SocketFile;
use crate::termlog::Termlog;
use crate::{Config, ScriptsError};

/// How an intercepted flow was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// A script called `flow.resume()`.
    Resume,
    /// A script called `flow.kill()`.
    Kill,
}

/// A hook reply, and for an intercepted flow the wait for its release.
pub(crate) struct Reply {
    pub(crate) reply: v1::HookReply,
    pub(crate) release: Option<oneshot::Receiver<Release>>,
}

pub(crate) type Control = Arc<OnceLock<Arc<dyn CoreControl>>>;
/// What a worker said about the scripts' start-up after its handshake: an error was logged
/// before their `running` hooks finished (mitmdump then exits with status 1). Set once.
pub(crate) type StartupFailure = Arc<OnceLock<String>>;
/// The largest message either side of a session sends or takes.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The session with one worker.
pub(crate) struct Link {
    /// The worker's address, for log lines.
    name: String,
    tx: mpsc::UnboundedSender<CoreMessage>,
    pending: Mutex<HashMap<u64, (String, oneshot::Sender<Reply>)>>,
    intercepts: Mutex<HashMap<String, oneshot::Sender<Release>>>,
    configures: Mutex<VecDeque<oneshot::Sender<String>>>,
    next_id: AtomicU64,
    child: Mutex<Option<Child>>,
    closed: watch::Sender<bool>,
    shutting_down: AtomicBool,
    /// Running was sent (once per session).
    running: AtomicBool,
    control: Control,
    /// The client's interest, widened when a reloaded script declares more hooks.
    interest: Arc<Interest>,
    /// Where a start-up failure reported after the handshake goes.
    failure: StartupFailure,
    /// Prints the log records the worker sends (a shared worker's scripts' lines).
    termlog: Termlog,
    _socket: Option<SocketFile>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("link locks are never poisoned: no code panics while holding them")
}

impl Link {
    /// Opens a session with the worker at `address` (`HOST:PORT` or `unix:PATH`) and completes
    /// Hello → Ready. Runs on the I/O thread. `child` is the worker's process when this client
    /// spawned it (stopped with the link).
    pub(crate) async fn open(
        address: &str,
        child: Option<(Child, Option<SocketFile>)>,
        config: &Config,
        control: Control,
        interest: Arc<Interest>,
        failure: StartupFailure,
    ) -> Result<(Arc<Self>, Ready), ScriptsError> {
        let worker_error = |reason: String| ScriptsError::Worker {
            address: address.to_string(),
            reason,
        };
        let (child, socket) = match child {
            Some((child, socket)) => (Some(child), socket),
            None => (None, None),
        };
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, connect(address, &config.grpc))
            .await
            .map_err(|_| worker_error("connecting: no answer in time".into()))?
            .map_err(|e| worker_error(format!("connecting: {e}")))?;
        let mut client = ScriptHostClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let termlog = Termlog::from_options(&config.core_options);
        let (tx, rx) = mpsc::unbounded_channel::<CoreMessage>();
        // When the next message is asked for, tonic has encoded the one before: a body piece
        // it copied can give its pages back (a body held on disk, see flowtap_flow::spill).
        let outbound = futures_util::stream::unfold(
            (rx, None::<bytes::Bytes>),
            |(mut rx, encoded)| async move {
                let message = rx.recv().await?;
                if let Some(encoded) = encoded {
                    flowtap_flow::spill::release(&encoded);
                }
                let piece = pieces::data_of(&message);
                Some((message, (rx, piece)))
            },
        );
        let handshake = async {
            let mut inbound = client
                .session(outbound)
                .await
                .map_err(|e| format!("opening the session: {}", flowtap_grpc::describe_status(&e)))?
                .into_inner();
            let _ = tx.send(CoreMessage {
                kind: Some(core_message::Kind::Hello(v1::Hello {
                    protocol_version: ProtocolVersion::ProtocolVersion1 as i32,
                    core_options: config.hello_options(),
                    deferred: config.deferred.clone(),
                })),
            });
            let ready = wait_ready(&mut inbound, &termlog).await?;
            Ok::<_, String>((inbound, ready))
        };
        // A peer that accepts and never answers must not hold the member forever.
        let (inbound, ready) = tokio::time::timeout(config.startup_timeout, handshake)
            .await
            .map_err(|_| worker_error("no Ready in time".into()))?
            .map_err(worker_error)?;
        let link = Arc::new(Self {
            name: address.to_string(),
            tx,
            pending: Mutex::new(HashMap::new()),
            intercepts: Mutex::new(HashMap::new()),
            configures: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            child: Mutex::new(child),
            closed: watch::channel(false).0,
            shutting_down: AtomicBool::new(false),
            running: AtomicBool::new(false),
            control,
            interest,
            failure,
            termlog,
            _socket: socket,
        });
        tokio::spawn(Arc::clone(&link).read(inbound));
        Ok((link, ready))
    }

    /// A session with no worker behind it (its messages go nowhere), for unit tests of the
    /// routing.
    #[cfg(test)]
    pub(crate) fn detached(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            tx: mpsc::unbounded_channel().0,
            pending: Mutex::new(HashMap::new()),
            intercepts: Mutex::new(HashMap::new()),
            configures: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            child: Mutex::new(None),
            closed: watch::channel(false).0,
            shutting_down: AtomicBool::new(false),
            running: AtomicBool::new(false),
            control: Arc::new(OnceLock::new()),
            interest: Arc::new(Interest::none()),
            failure: Arc::new(OnceLock::new()),
            termlog: Termlog::from_options(&[]),
            _socket: None,
        })
    }

    /// The worker's address.
    #[cfg(test)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Sends Running (the scripts' `running` hooks fire), once per session.
    pub(crate) fn run(&self) {
        if !self.running.swap(true, Ordering::AcqRel) {
            self.send(core_message::Kind::Running(v1::Running {}));
        }
    }

    /// True when no awaited call waits for its reply and no intercepted flow for its release.
    pub(crate) fn is_idle(&self) -> bool {
        lock(&self.pending).is_empty() && lock(&self.intercepts).is_empty()
    }

    /// Sends a message on the session (dropped if the session ended).
    pub(crate) fn send(&self, kind: core_message::Kind) {
        let _ = self.tx.send(CoreMessage { kind: Some(kind) });
        flowtap_spin::nudge();
    }

    /// Sends an awaited call; None if the worker's session ended first.
    pub(crate) async fn call(&self, mut call: HookCall) -> Option<Reply> {
        call.call_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let large = pieces::take_large(&mut call);
        let flow_id = call.flow.as_ref().map(|f| f.id.clone()).unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(call.call_id, (flow_id, tx));
        if *self.closed.borrow() {
            lock(&self.pending).remove(&call.call_id);
            return None;
        }
        self.send_call(call, large);
        rx.await.ok()
    }

    /// Sends a call the worker does not answer.
    pub(crate) fn observe(&self, mut call: HookCall) {
        call.call_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let large = pieces::take_large(&mut call);
        self.send_call(call, large);
    }

    /// Sends a call after the pieces of its large bodies.
    fn send_call(&self, call: HookCall, large: Vec<(v1::BodyKind, bytes::Bytes)>) {
        for piece in pieces::messages(call.call_id, large) {
            let _ = self.tx.send(piece);
        }
        self.send(core_message::Kind::HookCall(call));
    }

    /// Sends Configure and waits for the scripts' verdict.
    pub(crate) async fn configure(
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
    pub(crate) async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// True once [`Link::shutdown`] started (an end of the session is then expected).
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Sends Done (the scripts' `done` hooks run) and waits for the worker to end.
    pub(crate) async fn shutdown(&self, timeout: Duration) {
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
                        tracing::warn!(worker = %self.name, %status, "script-host session failed");
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
            worker_message::Kind::Log(record) => self.termlog.print(&record.level, &record.message),
            worker_message::Kind::ConfigureResult(result) => {
                if let Some(tx) = lock(&self.configures).pop_front() {
                    let _ = tx.send(result.error);
                }
            }
            // An error was logged before the scripts' `running` hooks finished: the proxy
            // stops, and the command exits with status 1 (as mitmdump's errorcheck).
            worker_message::Kind::Ready(ready) if !ready.startup_error.is_empty() => {
                if self.failure.set(ready.startup_error).is_ok()
                    && let Some(control) = self.control.get()
                {
                    control.shutdown();
                }
            }
            // A script was reloaded (or the worker restarted) and may implement more hooks.
            worker_message::Kind::Ready(ready) => {
                let before = format!("{:?}", self.interest);
                crate::interest::declare(&self.interest, &ready.scripts);
                let after = format!("{:?}", self.interest);
                if after != before {
                    tracing::info!(
                        worker = %self.name,
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
            control::Kind::InjectUdp(inject) => {
                core()?.inject_udp(&inject.flow_id, inject.to_client, inject.content)
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

async fn wait_ready(
    inbound: &mut Streaming<WorkerMessage>,
    termlog: &Termlog,
) -> Result<Ready, String> {
    loop {
        let message = inbound
            .message()
            .await
            .map_err(|e| format!("session failed before Ready: {e}"))?
            .ok_or("session ended before Ready")?;
        match message.kind {
            Some(worker_message::Kind::Ready(ready)) => return Ok(ready),
            Some(worker_message::Kind::Log(record)) => {
                termlog.print(&record.level, &record.message)
            }
            _ => {}
        }
    }
}

/// How long reaching a worker may take (the handshake has `Config::startup_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A channel to a worker at `unix:PATH` (plain) or `HOST:PORT`, `http://` or `https://` (TLS
/// as `grpc` says; a [`crate::resolve::dial_address`] with a name checks the certificate for
/// that name); calls carry `grpc`'s token, if any. The error names the cause (expired
/// certificate, unknown CA, refused client certificate). The one place that connects: must
/// run on the I/O thread, which then serves the channel's connection.
pub(crate) async fn connect(
    address: &str,
    grpc: &flowtap_grpc::ClientConfig,
) -> Result<flowtap_grpc::Channel, String> {
    let (address, name) = crate::resolve::split_dial_address(address);
    let named;
    let grpc = match name {
        Some(name) if grpc.server_name.is_none() => {
            named = flowtap_grpc::ClientConfig {
                server_name: Some(name.to_string()),
                ..grpc.clone()
            };
            &named
        }
        _ => grpc,
    };
    let channel = match address.strip_prefix("unix:") {
        Some(path) => flowtap_transport::unix_channel(path)
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
