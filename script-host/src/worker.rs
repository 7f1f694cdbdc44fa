//! The state shared by the gRPC sessions (tokio) and the Python runtime (its own threads).
//!
//! Events go to Python through an inbox that the runtime's dispatcher threads take from.
//! Waking a thread and handing it the GIL costs more than a no-op hook, so under load one
//! dispatcher (the "leader") takes the next event as soon as it finished a call, without releasing
//! the GIL ([`Worker::try_next`]), and an arriving event wakes no thread while some dispatcher
//! is busy. A hook that blocks (a `time.sleep`, a lock) must not hold up other flows, so one
//! idle dispatcher, the sentinel, takes an event that has waited [`STALE`] behind a busy one: a
//! blocked leader delays other flows by at most about that much. The sentinel sleeps until an
//! event arrives while a dispatcher is busy (so a lone call wakes only the thread that runs it),
//! then checks every [`STALE`] while any is busy. When no dispatcher is busy, an event wakes one
//! idle thread at once.
//!
//! Messages come back from Python threads into per-session unbounded channels, so no Python
//! thread ever waits on tokio.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use flowtap_proto::v1::{self, WorkerMessage, worker_message};
use tokio::sync::{mpsc, watch};

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

/// How long an event may wait for a busy dispatcher before an idle one takes it.
pub(crate) const STALE: Duration = Duration::from_millis(1);

thread_local! {
    /// True while this dispatcher thread runs an event it took (it counts in `Inbox::active`).
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// The events waiting for Python, and what the dispatcher threads are doing.
#[derive(Debug, Default)]
struct Inbox {
    queue: VecDeque<(Instant, Event)>,
    /// Dispatchers running an event (they take the next one when done).
    active: usize,
    /// Dispatchers waiting on `arrived`.
    idle: usize,
    /// Whether an idle dispatcher has the sentinel role (waits on `sentinel`).
    sentinel: bool,
    /// The sentinel waits without a timeout (nothing is busy).
    sentinel_asleep: bool,
}

/// The shared state of one script-host process.
#[derive(Debug)]
pub struct Worker {
    inbox: Mutex<Inbox>,
    arrived: Condvar,
    sentinel: Condvar,
    stopped: AtomicBool,
    sessions: Mutex<HashMap<u64, Outbox>>,
    pending: Mutex<HashMap<(u64, u64), PendingCall>>,
    next_session: AtomicU64,
    finished: watch::Sender<Option<Result<(), String>>>,
}

impl Worker {
    /// A worker with no session yet.
    pub(crate) fn new() -> Self {
        Self {
            inbox: Mutex::new(Inbox::default()),
            arrived: Condvar::new(),
            sentinel: Condvar::new(),
            stopped: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            finished: watch::channel(None).0,
        }
    }

    fn lock_inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox
            .lock()
            .expect("inbox lock is never poisoned: no code panics while holding it")
    }

    /// Hands an event to Python. Wakes a dispatcher only when none is busy (a busy one takes
    /// it next, or the sentinel does once it is stale).
    pub fn submit(&self, event: Event) {
        let mut inbox = self.lock_inbox();
        inbox.queue.push_back((Instant::now(), event));
        if inbox.active == 0 {
            if inbox.idle > 0 {
                self.arrived.notify_one();
            } else {
                self.sentinel.notify_one();
            }
        } else if !inbox.sentinel && inbox.idle > 0 {
            // Nobody watches for a blocked leader: make an idle thread the sentinel.
            self.arrived.notify_one();
        } else if inbox.sentinel_asleep {
            // The event waits behind a busy dispatcher: the sentinel times it from now.
            self.sentinel.notify_one();
        }
    }

    /// The next event if one is waiting, for a dispatcher that just finished one (called with
    /// the GIL held, so that a busy worker runs call after call without a thread switch).
    pub(crate) fn try_next(&self) -> Option<Event> {
        if !ACTIVE.get() {
            return None;
        }
        let mut inbox = self.lock_inbox();
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        inbox.queue.pop_front().map(|(_, event)| event)
    }

    /// The next event, waiting for one; None once the host finished. Called by the runtime's
    /// dispatcher threads with the GIL released.
    pub(crate) fn wait_one(&self) -> Option<Event> {
        let mut inbox = self.lock_inbox();
        if ACTIVE.replace(false) {
            inbox.active -= 1;
        }
        let mut sentinel = false;
        loop {
            if self.stopped.load(Ordering::Acquire) {
                if sentinel {
                    inbox.sentinel = false;
                }
                return None;
            }
            let take = match inbox.queue.front() {
                Some((at, _)) => inbox.active == 0 || at.elapsed() >= STALE,
                None => false,
            };
            if take {
                let Some((_, event)) = inbox.queue.pop_front() else {
                    unreachable!("the queue has a front")
                };
                inbox.active += 1;
                ACTIVE.set(true);
                if sentinel {
                    // Hand the role on: someone must watch while this thread is busy.
                    inbox.sentinel = false;
                    if inbox.idle > 0 {
                        self.arrived.notify_one();
                    }
                }
                return Some(event);
            }
            if !inbox.sentinel {
                inbox.sentinel = true;
                sentinel = true;
            }
            if sentinel {
                if inbox.active > 0 || !inbox.queue.is_empty() {
                    let wait = inbox
                        .queue
                        .front()
                        .map_or(STALE, |(at, _)| STALE.saturating_sub(at.elapsed()))
                        .max(Duration::from_micros(50));
                    inbox = self
                        .sentinel
                        .wait_timeout(inbox, wait)
                        .expect("inbox lock is never poisoned: no code panics while holding it")
                        .0;
                } else {
                    inbox.sentinel_asleep = true;
                    inbox = self
                        .sentinel
                        .wait(inbox)
                        .expect("inbox lock is never poisoned: no code panics while holding it");
                    inbox.sentinel_asleep = false;
                }
            } else {
                inbox.idle += 1;
                inbox = self
                    .arrived
                    .wait(inbox)
                    .expect("inbox lock is never poisoned: no code panics while holding it");
                inbox.idle -= 1;
            }
        }
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
        self.lock_sessions().insert(id, tx);
        (id, rx)
    }

    /// Forgets a session whose stream ended.
    pub fn close_session(&self, session: u64) {
        self.lock_sessions().remove(&session);
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
        {
            let _inbox = self.lock_inbox();
            self.stopped.store(true, Ordering::Release);
        }
        self.arrived.notify_all();
        self.sentinel.notify_all();
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
