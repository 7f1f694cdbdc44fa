//! The events waiting for Python, the dispatcher threads that take them, and who drives the
//! worker's I/O.
//!
//! Handing an event from one thread to another costs a wake-up each way, more than a no-op
//! hook. So:
//!
//! - **A lone call runs on the thread that read it.** When the host serves on its own
//!   current-thread runtime ([`Inbox::serve_io`]), an idle dispatcher drives that runtime itself
//!   (it holds the driver token and sits in `block_on`). A call that arrives while no
//!   dispatcher is busy is handed to that driver: it leaves `block_on`, runs the hook, and on its
//!   way back drives again, which writes the reply. No other thread wakes up.
//! - **Under load one dispatcher (the leader) takes the next event as soon as it finished a
//!   call**, without releasing the GIL ([`Inbox::try_next`]), and an arriving event wakes no
//!   thread while some dispatcher is busy.
//! - **A blocking hook (a `time.sleep`, a lock) holds up no other flow for long.** While a
//!   driver runs a hook nobody reads the sockets; the I/O thread (the one that called
//!   [`Inbox::serve_io`]) takes the driver token once that has lasted [`STALE`]. It checks every
//!   [`STALE`] while calls come and go, and sleeps once none came for that long (then the next
//!   call wakes it). It hands the token back as soon as a dispatcher is idle and none is busy.
//!   Events queued behind a busy dispatcher are taken by one idle dispatcher, the sentinel,
//!   once they waited [`STALE`]: it sleeps until an event waits behind a busy one (so a lone
//!   call wakes no sentinel), then checks every [`STALE`] while any is busy. Whoever takes a
//!   queued event while more wait makes sure some idle dispatcher watches them (hands the
//!   sentinel role on, or wakes one), and no dispatcher takes the driver token while events
//!   wait (a driver takes none of them): otherwise 20 sleeping hooks ran four at a time.
//!
//! Events are numbered as they arrive ([`Taken`]), each with the number of the last barrier (an
//! observed hook call, or Running) before it: threads take them in that order but may reach Python in another, and
//! the Python runtime's scheduler (`flowtap_host/order.py`, the one owner of the ordering rules)
//! puts them back in the order that matters. The inbox decides nothing about order.
//!
//! Without [`Inbox::serve_io`] (the service added to a caller's own runtime) events arrive from
//! that runtime's threads and wake an idle dispatcher, the sentinel rules unchanged.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use super::Event;

/// An event, its number in the order of arrival (from 0, no gaps), and the number of the last
/// barrier (see [`is_barrier`]) that arrived before it (None if none did).
pub(crate) type Taken = (u64, Option<u64>, Event);

/// Whether the calls after `event` must wait until the host admitted it: an observed hook call
/// (the proxy went on without its reply) or Running (hook calls wait for the `running` hooks).
pub(crate) fn is_barrier(event: &Event) -> bool {
    match event {
        Event::Hook { call, .. } => call.observe_only,
        Event::Running { .. } => true,
        _ => false,
    }
}

/// How long an event may wait for a busy dispatcher before an idle one takes it, and how long
/// the I/O may go undriven while a driver runs a hook.
pub(crate) const STALE: Duration = Duration::from_millis(1);

thread_local! {
    /// True while this dispatcher thread runs an event it took (it counts in `State::active`).
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Who holds the driver token (drives the runtime of [`Inbox::serve_io`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    /// Nobody; an idle dispatcher takes it, else the I/O thread.
    Free,
    /// A dispatcher, in `block_on`.
    Dispatcher,
    /// The I/O thread, in `block_on`.
    Io,
    /// The dispatcher that drove runs a call it took since then; it drives again when done.
    Away(Instant),
}

#[derive(Debug)]
struct State {
    queue: VecDeque<(Instant, Taken)>,
    /// The number of the next event to arrive.
    next_seq: u64,
    /// The number of the last barrier that arrived.
    last_observed: Option<u64>,
    /// Dispatchers running an event (they take the next one when done).
    active: usize,
    /// Dispatchers waiting on `arrived`.
    idle: usize,
    /// Whether an idle dispatcher has the sentinel role (waits on `sentinel`).
    sentinel: bool,
    /// The sentinel waits without a timeout (nothing is busy).
    sentinel_asleep: bool,
    stopped: bool,
    driver: Driver,
    /// The event a driving dispatcher is to run (it arrived while none was busy).
    for_driver: Option<Taken>,
    /// Wakes the `block_on` of the driver.
    driver_waker: Option<Waker>,
    /// A dispatcher waits for the I/O thread to hand the token over.
    handover: bool,
    /// A driver left to run a call since the I/O thread last looked.
    recently_away: bool,
    /// The I/O thread waits without a timeout.
    io_asleep: bool,
}

/// The events waiting for Python, and what the dispatcher threads are doing.
#[derive(Debug)]
pub(crate) struct Inbox {
    state: Mutex<State>,
    /// Idle dispatchers wait here.
    arrived: Condvar,
    /// The sentinel waits here.
    sentinel: Condvar,
    /// The I/O thread waits here.
    io: Condvar,
    /// The runtime dispatchers drive, once [`Inbox::serve_io`] runs.
    runtime: OnceLock<Arc<Runtime>>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                next_seq: 0,
                last_observed: None,
                active: 0,
                idle: 0,
                sentinel: false,
                sentinel_asleep: false,
                stopped: false,
                driver: Driver::Free,
                for_driver: None,
                driver_waker: None,
                handover: false,
                recently_away: false,
                io_asleep: false,
            }),
            arrived: Condvar::new(),
            sentinel: Condvar::new(),
            io: Condvar::new(),
            runtime: OnceLock::new(),
        }
    }
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("inbox lock is never poisoned: no code panics while holding it")
    }

    fn wait<'a>(&self, condvar: &Condvar, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        condvar
            .wait(state)
            .expect("inbox lock is never poisoned: no code panics while holding it")
    }

    fn wait_timeout<'a>(
        &self,
        condvar: &Condvar,
        state: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        condvar
            .wait_timeout(state, timeout)
            .expect("inbox lock is never poisoned: no code panics while holding it")
            .0
    }

    /// Hands an event to Python: to the driving dispatcher when none is busy, else into the
    /// queue, waking a dispatcher only when none is busy (a busy one takes it next, or the
    /// sentinel does once it is stale).
    pub(crate) fn submit(&self, event: Event) {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        let after = state.last_observed;
        if is_barrier(&event) {
            state.last_observed = Some(seq);
        }
        let event = (seq, after, event);
        if state.driver == Driver::Dispatcher
            && state.active == 0
            && state.queue.is_empty()
            && state.for_driver.is_none()
            && !state.stopped
        {
            state.for_driver = Some(event);
            state.active += 1;
            let waker = state.driver_waker.take();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
            return;
        }
        state.queue.push_back((Instant::now(), event));
        if state.active == 0 {
            if state.idle > 0 {
                self.arrived.notify_one();
            } else {
                self.sentinel.notify_one();
            }
        } else if !state.sentinel && state.idle > 0 {
            // Nobody watches for a blocked leader: make an idle thread the sentinel.
            self.arrived.notify_one();
        } else if state.sentinel_asleep {
            // The event waits behind a busy dispatcher: the sentinel times it from now.
            self.sentinel.notify_one();
        }
    }

    /// No event waits and no dispatcher runs one.
    pub(crate) fn is_idle(&self) -> bool {
        let state = self.lock();
        state.queue.is_empty() && state.active == 0 && state.for_driver.is_none()
    }

    /// The next event if one is waiting, for a dispatcher that just finished one (called with
    /// the GIL held, so that a busy worker runs call after call without a thread switch).
    pub(crate) fn try_next(&self) -> Option<Taken> {
        if !ACTIVE.get() {
            return None;
        }
        let mut state = self.lock();
        if state.stopped {
            return None;
        }
        state.queue.pop_front().map(|(_, event)| event)
    }

    /// The next event, waiting for one (and driving the I/O meanwhile when the token is free);
    /// None once the host finished. Called by the runtime's dispatcher threads with the GIL
    /// released.
    pub(crate) fn wait_one(&self) -> Option<Taken> {
        let mut state = self.lock();
        if ACTIVE.replace(false) {
            state.active -= 1;
        }
        let mut sentinel = false;
        loop {
            if state.stopped {
                if sentinel {
                    state.sentinel = false;
                }
                return None;
            }
            let take = match state.queue.front() {
                Some((at, _)) => state.active == 0 || at.elapsed() >= STALE,
                None => false,
            };
            if take {
                let Some((_, event)) = state.queue.pop_front() else {
                    unreachable!("the queue has a front")
                };
                state.active += 1;
                ACTIVE.set(true);
                if sentinel {
                    self.hand_on_sentinel(&mut state);
                } else if !state.sentinel && !state.queue.is_empty() && state.idle > 0 {
                    // More events wait and nobody watches them: without this they would wait
                    // for a busy dispatcher to finish (a sleeping hook held them up).
                    self.arrived.notify_one();
                }
                return Some(event);
            }
            if let Some(runtime) = self.runtime.get() {
                // Not while events wait behind busy dispatchers: a driver takes none of them
                // (only a call that arrives while none is busy), so this thread watches them
                // instead (as the sentinel, or idle until one hands the role on); the I/O
                // thread drives meanwhile.
                if matches!(state.driver, Driver::Free | Driver::Away(_)) && state.queue.is_empty()
                {
                    if sentinel {
                        self.hand_on_sentinel(&mut state);
                        sentinel = false;
                    }
                    let (next, event) = self.drive(state, runtime);
                    state = next;
                    if event.is_some() {
                        return event;
                    }
                    continue;
                }
                if state.driver == Driver::Io && state.active == 0 && !state.handover {
                    // Calls should run on the thread that reads them: ask for the token.
                    state.handover = true;
                    if let Some(waker) = state.driver_waker.take() {
                        waker.wake();
                        flowtap_spin::nudge();
                    }
                }
            }
            if !state.sentinel {
                state.sentinel = true;
                sentinel = true;
            }
            if sentinel {
                if state.active > 0 || !state.queue.is_empty() {
                    let wait = state
                        .queue
                        .front()
                        .map_or(STALE, |(at, _)| STALE.saturating_sub(at.elapsed()))
                        .max(Duration::from_micros(50));
                    state = self.wait_timeout(&self.sentinel, state, wait);
                } else {
                    state.sentinel_asleep = true;
                    state = self.wait(&self.sentinel, state);
                    state.sentinel_asleep = false;
                }
            } else {
                state.idle += 1;
                state = self.wait(&self.arrived, state);
                state.idle -= 1;
            }
        }
    }

    /// Gives up the sentinel role: someone must watch while this thread is busy.
    fn hand_on_sentinel(&self, state: &mut State) {
        state.sentinel = false;
        if state.idle > 0 {
            self.arrived.notify_one();
        }
    }

    /// Drives the runtime on this dispatcher until an event is handed to it (then the token is
    /// `Away`: the I/O thread takes over if the call takes long) or the host stopped.
    fn drive<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        runtime: &Runtime,
    ) -> (MutexGuard<'a, State>, Option<Taken>) {
        state.driver = Driver::Dispatcher;
        drop(state);
        let event = runtime.block_on(Handed { inbox: self });
        let mut state = self.lock();
        match event {
            Some(event) => {
                // `submit` counted this thread as active.
                ACTIVE.set(true);
                state.driver = Driver::Away(Instant::now());
                state.recently_away = true;
                if state.io_asleep {
                    self.io.notify_one();
                }
                (state, Some(event))
            }
            None => {
                state.driver = Driver::Free;
                (state, None)
            }
        }
    }

    /// Runs the I/O of `runtime` (where the gRPC server was spawned) until the host finished:
    /// dispatcher threads drive it while they wait for calls; this thread drives it while none
    /// can (at start-up, while every dispatcher is busy, and once a call kept its driver busy
    /// for [`STALE`]). Call it from a thread outside any runtime.
    pub(crate) fn serve_io(&self, runtime: &Arc<Runtime>) {
        let _ = self.runtime.set(Arc::clone(runtime));
        // When the token was offered to a waiting dispatcher (it should take it at once).
        let mut offered: Option<Instant> = None;
        let mut state = self.lock();
        loop {
            if state.stopped {
                return;
            }
            let take = match state.driver {
                Driver::Free => match offered {
                    Some(at) => at.elapsed() >= STALE,
                    None if self.offer(&state) => {
                        offered = Some(Instant::now());
                        false
                    }
                    None => true,
                },
                Driver::Away(since) => since.elapsed() >= STALE,
                Driver::Dispatcher | Driver::Io => false,
            };
            if take {
                state.driver = Driver::Io;
                state.handover = false;
                drop(state);
                runtime.block_on(Released { inbox: self });
                state = self.lock();
                state.driver = Driver::Free;
                state.handover = false;
                offered = self.offer(&state).then(Instant::now);
                continue;
            }
            if state.driver != Driver::Free {
                offered = None;
            }
            // While calls come and go, look every STALE; sleep once none came for that long.
            let recently_away = std::mem::take(&mut state.recently_away);
            let timeout = match state.driver {
                Driver::Away(since) => Some(STALE.saturating_sub(since.elapsed())),
                Driver::Free => Some(STALE),
                _ if recently_away => Some(STALE),
                _ => None,
            };
            state = match timeout {
                Some(timeout) => {
                    self.wait_timeout(&self.io, state, timeout.max(Duration::from_micros(50)))
                }
                None => {
                    state.io_asleep = true;
                    let mut state = self.wait(&self.io, state);
                    state.io_asleep = false;
                    state
                }
            };
        }
    }

    /// Wakes a waiting dispatcher to take the free token; false if none waits.
    fn offer(&self, state: &State) -> bool {
        if state.idle > 0 {
            self.arrived.notify_one();
            true
        } else if state.sentinel {
            self.sentinel.notify_one();
            true
        } else {
            false
        }
    }

    /// Stops every dispatcher and the I/O thread.
    pub(crate) fn stop(&self) {
        let waker = {
            let mut state = self.lock();
            state.stopped = true;
            state.driver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
            flowtap_spin::nudge();
        }
        self.arrived.notify_all();
        self.sentinel.notify_all();
        self.io.notify_all();
    }
}

/// The `block_on` of a driving dispatcher: done when an event was handed to it, or the host
/// stopped.
struct Handed<'a> {
    inbox: &'a Inbox,
}

impl Future for Handed<'_> {
    type Output = Option<Taken>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.inbox.lock();
        if let Some(event) = state.for_driver.take() {
            return Poll::Ready(Some(event));
        }
        if state.stopped {
            return Poll::Ready(None);
        }
        state.driver_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The `block_on` of the I/O thread: done when a dispatcher asks for the token, or the host
/// stopped.
struct Released<'a> {
    inbox: &'a Inbox,
}

impl Future for Released<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.inbox.lock();
        if state.stopped || state.handover || (state.idle > 0 && state.active == 0) {
            return Poll::Ready(());
        }
        state.driver_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
