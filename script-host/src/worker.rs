//! The state shared by the gRPC sessions (tokio) and the Python runtime (its own threads).
//!
//! Events go to Python through the [`inbox`], which the runtime's dispatcher threads take from
//! (and which says which thread drives the worker's I/O). Messages come back from Python
//! threads into per-session unbounded channels, so no Python thread ever waits on tokio.
//!
//! Sessions come and go: a standalone worker serves several proxies, and one that ends its
//! session (Done, or its stream closing) takes only that session away. The worker stops when it
//! is told to ([`Worker::drain`]: it refuses new sessions, lets the calls under way finish within
//! a grace period, then runs the scripts' `done` hooks), or, when a proxy spawned it for itself,
//! when that proxy sends Done. It also stops, as failed, when a hook is stuck (`Worker::stuck`,
//! or the `heartbeat` of the Python runtime stopped): the process exits to be replaced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowtap_proto::v1::{self, WorkerMessage, worker_message};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};

mod heartbeat;
mod inbox;

use heartbeat::Heartbeat;
use inbox::Inbox;
pub(crate) use inbox::{Taken, is_barrier};

/// An event for the Python runtime.
#[derive(Debug)]
pub(crate) enum Event {
    /// A session said Hello.
    Hello {
        /// The session.
        session: u64,
        /// The core's own options and their values.
        core_options: Vec<v1::Option>,
        /// `--set` values for options the core does not know.
        deferred: HashMap<String, String>,
    },
    /// The proxy is serving.
    Running {
        /// The session.
        session: u64,
    },
    /// A hook call.
    Hook {
        /// The session.
        session: u64,
        /// The call.
        call: Box<v1::HookCall>,
        /// The call's bodies that came in pieces (their content in the call's flow is absent).
        bodies: Vec<(v1::BodyKind, crate::python::Body)>,
    },
    /// Options changed.
    Configure {
        /// The session.
        session: u64,
        /// The changed options.
        options: Vec<v1::Option>,
    },
    /// The core could not carry out a control message.
    ControlResult {
        /// The session.
        session: u64,
        /// The result.
        result: v1::ControlResult,
    },
    /// Run the scripts' `done` hooks, then finish the host: a spawned worker's proxy sent Done,
    /// or a standalone worker drained ([`Worker::drain`], `session` 0).
    Done {
        /// The session.
        session: u64,
    },
}

/// What a pending hook call needs when its reply comes back.
#[derive(Debug)]
pub(crate) struct PendingCall {
    /// `live` of the flow as sent (mitmproxy's state has no `live`).
    pub(crate) live: bool,
    /// For connection hooks: the subject as sent, whose connections the reply replaces.
    pub(crate) connection_subject: Option<v1::Flow>,
}

type Outbox = mpsc::UnboundedSender<Result<WorkerMessage, tonic::Status>>;

/// The shared state of one script-host process.
#[derive(Debug)]
pub struct Worker {
    inbox: Inbox,
    sessions: Mutex<HashMap<u64, Outbox>>,
    pending: Mutex<HashMap<(u64, u64), PendingCall>>,
    next_session: AtomicU64,
    /// A proxy spawned this worker for itself: its Done ends the worker.
    spawned: bool,
    /// Draining: no new session is taken.
    draining: AtomicBool,
    /// A hook got stuck: the host finished to be replaced.
    stuck: AtomicBool,
    /// When the Python runtime's watchdog last ran.
    heartbeat: Heartbeat,
    finished: watch::Sender<Option<Result<(), String>>>,
}

/// How a [`Worker::drain`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Awaited calls still under way when the grace period ended: they were answered
    /// `timed_out` (the proxy goes on with the flow unchanged).
    pub timed_out: usize,
}

impl Worker {
    /// A worker with no session yet; `spawned`: a proxy started it for itself, and a Done from
    /// a session ends it.
    pub(crate) fn new(spawned: bool) -> Self {
        Self {
            inbox: Inbox::default(),
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            spawned,
            draining: AtomicBool::new(false),
            stuck: AtomicBool::new(false),
            heartbeat: Heartbeat::default(),
            finished: watch::channel(None).0,
        }
    }

    /// Whether a Done from a session ends the worker (a proxy spawned it for itself); otherwise
    /// it ends only that session.
    pub fn ends_with_done(&self) -> bool {
        self.spawned
    }

    /// Whether the worker drains (it takes no new session).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops the worker as a standalone worker stops: refuses new sessions from now on, waits
    /// (up to `grace`) until no awaited hook call is queued or running, answers those still
    /// running after that `timed_out`, then runs the scripts' `done` hooks. Completes once the
    /// host finished (every session's stream has ended then).
    pub async fn drain(&self, grace: Duration) -> Drained {
        self.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        while !self.is_idle() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let timed_out = self.time_out_pending();
        self.submit(Event::Done { session: 0 });
        let _ = self.finished().await;
        Drained { timed_out }
    }

    /// No event waits for Python, no dispatcher runs one, no awaited call waits for its reply.
    fn is_idle(&self) -> bool {
        self.inbox.is_idle() && self.lock_pending().is_empty()
    }

    /// Answers every awaited call still under way `timed_out` (their late replies are dropped);
    /// how many there were.
    fn time_out_pending(&self) -> usize {
        let calls: Vec<(u64, u64)> = self.lock_pending().drain().map(|(key, _)| key).collect();
        for (session, call_id) in &calls {
            self.send(
                Some(*session),
                worker_message::Kind::HookReply(v1::HookReply {
                    call_id: *call_id,
                    verdict: v1::Verdict::Continue as i32,
                    timed_out: true,
                    ..v1::HookReply::default()
                }),
            );
        }
        calls.len()
    }

    /// Hands an event to Python (see [`inbox`]).
    pub(crate) fn submit(&self, event: Event) {
        self.inbox.submit(event);
    }

    /// The next event if one is waiting, for a dispatcher that just finished one (called with
    /// the GIL held, so that a busy worker runs call after call without a thread switch).
    pub(crate) fn try_next(&self) -> Option<Taken> {
        self.inbox.try_next()
    }

    /// The next event, waiting for one; None once the host finished. Called by the runtime's
    /// dispatcher threads with the GIL released; they may drive the I/O meanwhile.
    pub(crate) fn wait_one(&self) -> Option<Taken> {
        self.inbox.wait_one()
    }

    /// Runs the I/O of `runtime`, on which the gRPC server was spawned, until the host
    /// finished: the dispatcher threads drive it while they wait for calls (so that a call
    /// runs on the thread that read it), the calling thread while none can. Call it from a
    /// thread outside any runtime.
    pub fn serve_io(&self, runtime: &Arc<Runtime>) {
        self.inbox.serve_io(runtime);
    }

    /// Opens a session; its messages arrive on the returned receiver. None while the worker
    /// drains.
    #[allow(clippy::type_complexity)]
    pub fn open_session(
        &self,
    ) -> Option<(
        u64,
        mpsc::UnboundedReceiver<Result<WorkerMessage, tonic::Status>>,
    )> {
        let mut sessions = self.lock_sessions();
        // Checked under the sessions lock, so that no session opens after `finish` cleared them.
        if self.is_draining() || self.finished.borrow().is_some() {
            return None;
        }
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        sessions.insert(id, tx);
        flowtap_telemetry::worker::set_sessions_open(sessions.len());
        Some((id, rx))
    }

    /// Whether `session` is open.
    pub(crate) fn is_open(&self, session: u64) -> bool {
        self.lock_sessions().contains_key(&session)
    }

    /// Forgets a session whose stream ended (or that sent Done): its response stream ends, and
    /// replies to its calls still under way are dropped.
    pub fn close_session(&self, session: u64) {
        let mut sessions = self.lock_sessions();
        sessions.remove(&session);
        flowtap_telemetry::worker::set_sessions_open(sessions.len());
        drop(sessions);
        self.lock_pending().retain(|(s, _), _| *s != session);
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Outbox>> {
        self.sessions
            .lock()
            .expect("sessions lock is never poisoned: no code panics while holding it")
    }

    pub(crate) fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), PendingCall>> {
        self.pending
            .lock()
            .expect("pending lock is never poisoned: no code panics while holding it")
    }

    /// Sends a message to one session (dropped when it closed meanwhile); to the oldest open
    /// session when `session` is None (a replay that no session asked for: one proxy runs it).
    pub(crate) fn send(&self, session: Option<u64>, kind: worker_message::Kind) {
        let sessions = self.lock_sessions();
        let target = match session {
            Some(id) => sessions.get(&id),
            None => sessions.iter().min_by_key(|(id, _)| **id).map(|(_, tx)| tx),
        };
        if let Some(tx) = target {
            let _ = tx.send(Ok(WorkerMessage { kind: Some(kind) }));
            flowtap_spin::nudge();
        }
    }

    /// Ends a session's response stream with an error status.
    pub(crate) fn send_status(&self, session: u64, status: tonic::Status) {
        if let Some(tx) = self.lock_sessions().remove(&session) {
            let _ = tx.send(Err(status));
        }
    }

    /// Sends a message to every open session.
    pub(crate) fn broadcast(&self, kind: &worker_message::Kind) {
        for tx in self.lock_sessions().values() {
            let _ = tx.send(Ok(WorkerMessage {
                kind: Some(kind.clone()),
            }));
        }
    }

    /// True when some session is open.
    pub(crate) fn has_sessions(&self) -> bool {
        !self.lock_sessions().is_empty()
    }

    /// Marks the host finished; every session stream ends.
    pub(crate) fn finish(&self, outcome: Result<(), String>) {
        let mut sessions = self.lock_sessions();
        sessions.clear();
        self.finished.send_if_modified(|finished| {
            finished.get_or_insert(outcome);
            true
        });
        drop(sessions);
        self.inbox.stop();
    }

    /// A hook is stuck (see `flowtap_host/watchdog.py`): the host finishes as failed and
    /// [`Worker::is_stuck`] says why.
    pub(crate) fn stuck(&self) {
        self.stuck.store(true, Ordering::Release);
        self.finish(Err("a hook is stuck past hook_stuck_timeout".into()));
    }

    /// The Python runtime's watchdog ran; it may stay away `limit` (zero: for ever).
    pub(crate) fn heartbeat(&self, limit: Duration) {
        self.heartbeat.beat(limit);
    }

    /// Starts the thread that ends the host as stuck when the Python runtime's watchdog has
    /// not run for longer than it said it might (a hook holds the GIL; see `heartbeat`).
    pub(crate) fn watch_python(self: &Arc<Self>) -> std::io::Result<()> {
        let worker = Arc::clone(self);
        std::thread::Builder::new()
            .name("python-watch".into())
            .spawn(move || {
                while worker.finished.borrow().is_none() {
                    std::thread::sleep(Duration::from_millis(100));
                    let Some(away) = worker.heartbeat.overdue(Instant::now()) else {
                        continue;
                    };
                    tracing::error!(
                        target: "script",
                        "no Python code has run for {away:.1?} (past hook_stuck_timeout): a hook \
                         holds the interpreter and does not give it back (C code that does not \
                         return, such as a regular expression backtracking on its input). This \
                         worker exits to be replaced."
                    );
                    worker.stuck();
                    // The host's own exit path needs no Python; should it still not end, end it.
                    std::thread::sleep(Duration::from_secs(5));
                    crate::cli::exit_stuck();
                }
            })
            .map(drop)
    }

    /// Whether the host finished because a hook was stuck: the process should exit with
    /// [`crate::cli::EXIT_STUCK`] so that it is replaced.
    pub fn is_stuck(&self) -> bool {
        self.stuck.load(Ordering::Acquire)
    }

    /// Completes once [`Worker::finish`] was called.
    pub async fn finished(&self) -> Result<(), String> {
        let mut rx = self.finished.subscribe();
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome;
            }
            if rx.changed().await.is_err() {
                return Err("the script host stopped".into());
            }
        }
    }
}
