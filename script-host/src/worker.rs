//! The state shared by the gRPC sessions (tokio) and the Python runtime (its own threads).
//!
//! Events go to Python through the [`inbox`], which the runtime's dispatcher threads take from
//! (and which says which thread drives the worker's I/O). Messages come back from Python
//! threads into per-session unbounded channels, so no Python thread ever waits on tokio.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flowtap_proto::v1::{self, WorkerMessage, worker_message};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};

mod inbox;

use inbox::Inbox;
pub(crate) use inbox::Taken;

/// An event for the Python runtime.
#[derive(Debug)]
pub enum Event {
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
    /// The core is shutting down.
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
    finished: watch::Sender<Option<Result<(), String>>>,
}

impl Worker {
    /// A worker with no session yet.
    pub(crate) fn new() -> Self {
        Self {
            inbox: Inbox::default(),
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            finished: watch::channel(None).0,
        }
    }

    /// Hands an event to Python (see [`inbox`]).
    pub fn submit(&self, event: Event) {
        self.inbox.submit(event);
    }

    /// Whether an observed call that arrived before event `seq` is not yet admitted (see
    /// [`inbox`]).
    pub(crate) fn observed_before(&self, seq: u64) -> bool {
        self.inbox.observed_before(seq)
    }

    /// The host admitted event `seq`.
    pub(crate) fn admitted(&self, seq: u64) {
        self.inbox.admitted(seq);
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

    /// Opens a session; its messages arrive on the returned receiver.
    pub fn open_session(
        &self,
    ) -> (
        u64,
        mpsc::UnboundedReceiver<Result<WorkerMessage, tonic::Status>>,
    ) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut sessions = self.lock_sessions();
        sessions.insert(id, tx);
        flowtap_telemetry::worker::set_sessions_open(sessions.len());
        drop(sessions);
        (id, rx)
    }

    /// Forgets a session whose stream ended.
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

    /// Sends a message to one session; to the oldest open session when `session` is None.
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
        self.lock_sessions().clear();
        self.inbox.stop();
        self.finished.send_replace(Some(outcome));
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
