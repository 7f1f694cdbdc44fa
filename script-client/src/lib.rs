//! The script client: proxy-core's [`Hooks`] as a client to a pool of `script-host` workers
//! that run the Python scripts.
//!
//! It sits between the proxy (which knows only the `Hooks` and `CoreControl` traits of
//! `flowtap-proxy-core`) and the workers (the `ScriptHost.Session` gRPC stream of
//! `proto/flowtap/v1/script.proto`). A reader starts at [`ScriptClient::start`], then the
//! `member` and `pool` modules.
//!
//! [`ScriptClient::start`] either spawns `Config::workers` `script-host` processes (the binary
//! next to the current executable; restarted when they die, stopped with the client) or
//! follows the `--script-host` names of [`Config::addresses`]: every address a name resolves
//! to is a worker, resolved again every [`Config::resolve_interval`]. Each worker gets one
//! session (Hello → Ready); the scripts' hooks become the [`Interest`]. A script that failed to
//! start gives [`ScriptsError::Startup`] (the command exits 1); a remote worker that is down
//! at start-up does not stop the client, which joins it when it comes up.
//!
//! A flow's calls go to one worker for the life of its client connection (rendezvous hashing
//! over the workers that are up, then an affinity table). An awaited call has a deadline only
//! when [`Config::hook_timeout`] sets one (as in mitmdump, a hook otherwise takes the time it
//! takes); a timeout, a crashed or unreachable worker is handled by the failure policy ([`FailurePolicy`]), counted ([`ScriptClient::stats`]) and, for flows that go
//! on without their scripts, logged at most once per [`Config::failed_open_log_interval`]. A
//! flow whose hook was late, or that is too large for the protocol's 256 MiB messages, gets the
//! policy alone and goes on without its scripts (its later hooks are not sent). A worker with a
//! hook stuck past [`Config::hook_stuck_timeout`] (sent in Hello; without a deadline, once all
//! its hook threads are stuck) exits to be replaced: a spawned one is spawned again, a remote
//! one counted down and rejoined. A
//! lost session is tried again with backoff. Intercept is handled inside `call`: it returns once
//! a script resumed or killed the flow. Scripts' control messages reach the core through the
//! [`CoreControl`] given to [`Hooks::attach`]. The scripts' log lines go to standard output as
//! mitmdump prints them (`termlog`): a spawned worker prints them itself, a shared worker's
//! records are printed here. An error logged before the scripts' `running` hooks finished
//! stops the proxy ([`ScriptClient::startup_failure`]), as mitmdump exits then.
//!
//! - `config`: [`Config`] and [`FailurePolicy`].
//! - `pool`: the members and the routing (rendezvous hashing, affinity).
//! - `member`: one member's life (reach, hold, retry with backoff, drain), and following the
//!   names.
//! - `resolve`: resolving the names and planning joins and drains.
//! - `link`: one session: its stream, pending calls, intercept waiters; the one `connect`.
//! - `spawn`: starting a worker process of our own.
//! - `io`: the thread that carries every session.
//! - `call`: one hook call, from routing to the scripts' changes.
//! - `pieces`: bodies over 1 MiB, sent before their call in pieces.
//! - `detached`: the flows that go on without their scripts after a hook was late or the
//!   flow too large.
//! - `interest`: the hooks the scripts declare and each hook's failure policy.
//! - `policy`: what a failed call does to the flow (502/504 responses).
//! - `stats`: counters for metrics ([`StatsSnapshot`]).
//! - `termlog`: the scripts' log lines on standard output, in mitmdump's format.

mod call;
mod config;
mod detached;
mod interest;
mod io;
mod link;
mod member;
mod pieces;
mod policy;
mod pool;
mod resolve;
mod spawn;
mod stats;
mod termlog;

use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use flowtap_proto::v1::{self, Flow, Hook, Ready};
use flowtap_proxy_core::hooks::{CoreControl, Hooks, Interest, Verdict};
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, FailurePolicy, STUCK_WITHOUT_DEADLINE};
pub use flowtap_proto::v1::ScriptInfo;
pub use stats::{HookCalls, Outcome, StatsSnapshot};

use io::IoThread;
use link::{Control, Link, StartupFailure};
use pool::{Member, Pool, Target};
use stats::Stats;

/// What the command prints on stderr for a start-up report (see [`ScriptsError::Startup`])
/// before it exits with status 1. `printed`: the errors are on stdout already (workers this
/// process spawned print their scripts' lines themselves): mitmdump's one line, "Error logged
/// during startup, exiting..."; else the whole report.
pub fn exit_message(report: &str, printed: bool) -> String {
    match report.split_once('\n') {
        Some((head, _)) if printed && head.ends_with("logged during startup:") => {
            format!("{}, exiting...", head.trim_end_matches(':'))
        }
        _ => report.to_string(),
    }
}

/// Why the scripts could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ScriptsError {
    /// An error was logged while the scripts started (syntax error, exception in import,
    /// `load` or `configure`, or a script's own error record); the command exits with status 1.
    /// The text is mitmdump's words ("Error logged during startup:") and the lines logged, or
    /// a refusal before any script ran ("flowtap: No such script: x.py"); see
    /// [`exit_message`] for what to print.
    #[error("{traceback}")]
    Startup {
        /// The worker's report.
        traceback: String,
    },
    /// The `script-host` binary could not be found or started.
    #[error("starting script-host {binary}: {reason}")]
    Spawn {
        /// The binary.
        binary: String,
        /// Why.
        reason: String,
    },
    /// A worker could not be reached or broke the protocol during the handshake.
    #[error("script-host worker at {address}: {reason}")]
    Worker {
        /// Its address.
        address: String,
        /// Why.
        reason: String,
    },
}

/// The scripts, as the flow lifecycle sees them: a client to a pool of script-host workers.
pub struct ScriptClient {
    env: Arc<Env>,
    /// Dropped last: its runtime holds the members' tasks and sessions.
    _io: IoThread,
}

/// What the client and its members' tasks share.
pub(crate) struct Env {
    pub(crate) config: Config,
    pub(crate) interest: Arc<Interest>,
    pub(crate) control: Control,
    /// An error logged during the scripts' `running` hooks, reported after the handshake.
    pub(crate) failure: StartupFailure,
    /// Prints the errors a worker reports in replies without having logged them.
    pub(crate) termlog: termlog::Termlog,
    pub(crate) pool: Pool,
    pub(crate) stats: Stats,
    /// Flows whose later hooks skip the scripts (see `detached`).
    pub(crate) detached: detached::Detached,
    /// The I/O thread's runtime, where members' tasks run.
    pub(crate) io: tokio::runtime::Handle,
    /// Each declared hook's failure policy, from the first Ready (None before it).
    policies: RwLock<Option<Vec<(Hook, FailurePolicy)>>>,
    /// The members' tasks, awaited by [`ScriptClient::shutdown`].
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Set when the client stops: no more joining.
    pub(crate) stopping: watch::Sender<bool>,
}

impl std::fmt::Debug for ScriptClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptClient")
            .field("workers", &self.env.pool.members().len())
            .field("interest", &self.env.interest)
            .finish()
    }
}

impl ScriptClient {
    /// Starts the workers (or reaches the running ones of `config.addresses`) and completes
    /// the handshake with each. Returns the client and the scripts the first worker loaded
    /// (none when no remote worker was reachable: the client then starts anyway, applies the
    /// failure policy to the HTTP hooks and joins the workers as they come up).
    ///
    /// Fails with [`ScriptsError::Startup`] when a worker reports a script that failed to
    /// start, and with the other errors when a worker of its own cannot be spawned.
    pub async fn start(config: Config) -> Result<(Arc<Self>, Vec<ScriptInfo>), ScriptsError> {
        let stuck = config.stuck_timeout();
        if let Some(hook_timeout) = config.hook_timeout
            && !stuck.is_zero()
            && stuck <= hook_timeout
        {
            tracing::warn!(
                "hook_stuck_timeout ({stuck:?}) is not longer than hook_timeout \
                 ({hook_timeout:?}): a hook that is merely late gets its worker replaced"
            );
        }
        let io = IoThread::start()?;
        let env = Arc::new(Env {
            interest: Arc::new(Interest::none()),
            control: Arc::new(OnceLock::new()),
            failure: Arc::new(OnceLock::new()),
            termlog: termlog::Termlog::from_options(&config.core_options),
            pool: Pool::new(),
            stats: Stats::new(config.failed_open_log_interval),
            detached: detached::Detached::default(),
            io: io.handle.clone(),
            policies: RwLock::new(None),
            tasks: Mutex::new(Vec::new()),
            stopping: watch::channel(false).0,
            config,
        });
        let client = Arc::new(Self { env, _io: io });
        let remote = !client.env.config.addresses.is_empty();
        let firsts = if remote {
            client.follow_names().await
        } else {
            (0..client.env.config.workers.max(1))
                .map(|index| member::join(&client.env, Target::Spawned(index)))
                .collect()
        };
        let mut scripts = None;
        for first in firsts {
            let outcome = first.await.unwrap_or_else(|_| {
                Err(ScriptsError::Spawn {
                    binary: "script-host".into(),
                    reason: "the script I/O thread ended".into(),
                })
            });
            match outcome {
                Ok(ready) => {
                    scripts.get_or_insert(ready.scripts);
                }
                Err(error @ ScriptsError::Startup { .. }) => return client.fail_start(error).await,
                Err(error) if !remote => return client.fail_start(error).await,
                Err(error) => {
                    tracing::warn!("{error}; starting without it (it is joined when it comes up)")
                }
            }
        }
        let scripts = match scripts {
            Some(scripts) => scripts,
            None => {
                tracing::warn!(
                    "no script-host worker is reachable; until one is, the failure policy \
                     (script_failure={}) applies to every flow",
                    match client.env.config.failure {
                        FailurePolicy::Open => "open",
                        FailurePolicy::Closed => "closed",
                    }
                );
                interest::provisional(&client.env.interest);
                Vec::new()
            }
        };
        Ok((client, scripts))
    }

    /// Resolves the names of `config.addresses` once, joins every address, and starts the
    /// task that follows them.
    async fn follow_names(&self) -> Vec<member::First> {
        let mut names = resolve::Names::new(self.env.config.addresses.clone());
        let resolver: Arc<dyn resolve::Resolve> = Arc::new(resolve::SystemResolver);
        let (addresses, failures) = names.resolve(resolver.as_ref()).await;
        for (name, error) in failures {
            tracing::warn!("resolving script-host worker {name}: {error}; trying again");
        }
        let firsts = addresses
            .into_iter()
            .map(|address| member::join(&self.env, Target::Remote(address)))
            .collect();
        let task = self
            .env
            .io
            .spawn(member::follow(Arc::clone(&self.env), names, resolver));
        self.env.track(task);
        firsts
    }

    async fn fail_start<T>(&self, error: ScriptsError) -> Result<T, ScriptsError> {
        self.shutdown().await;
        Err(error)
    }

    /// Ends this client's sessions: each gets Done once its calls in flight finished (within
    /// the hook deadline), so the scripts' `done` hooks run in workers this client spawned (which
    /// then exit) and a shared worker ends just this session. Members still being reached or
    /// waiting to retry stop trying.
    pub async fn shutdown(&self) {
        self.env.stopping.send_replace(true);
        for member in self.env.pool.members() {
            member.drain();
        }
        let tasks = std::mem::take(&mut *lock(&self.env.tasks));
        let bound = self
            .env
            .config
            .hook_timeout
            .unwrap_or(Duration::from_secs(10))
            + Duration::from_secs(11);
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(bound, all).await.is_err() {
            tracing::warn!("script-host sessions still open after {bound:?}; leaving them");
        }
    }

    /// Changes options at run time on every worker that is up; a script's `configure` may
    /// reject the change (the error text of the first worker that did).
    pub async fn configure(&self, options: Vec<v1::Option>) -> Result<(), String> {
        for member in self.env.pool.up().iter() {
            if let Some(link) = member.routable() {
                link.configure(options.clone(), self.env.config.configure_timeout())
                    .await?;
            }
        }
        Ok(())
    }

    /// The report (as in [`ScriptsError::Startup`]) when a worker said an error was logged
    /// during the scripts' `running` hooks: the proxy was told to stop, and the command exits
    /// with status 1, as mitmdump does. None otherwise.
    pub fn startup_failure(&self) -> Option<String> {
        self.env.failure.get().cloned()
    }

    /// The counters now: sessions up, failed and timed-out calls, calls per hook and outcome
    /// with their latency. Cheap enough to call on every metrics scrape.
    pub fn stats(&self) -> StatsSnapshot {
        self.env.stats.snapshot()
    }
}

impl Env {
    /// An environment whose members' tasks run on the current runtime, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(config: Config) -> Arc<Self> {
        Arc::new(Env {
            interest: Arc::new(Interest::none()),
            control: Arc::new(OnceLock::new()),
            failure: Arc::new(OnceLock::new()),
            termlog: termlog::Termlog::from_options(&config.core_options),
            pool: Pool::new(),
            stats: Stats::new(config.failed_open_log_interval),
            detached: detached::Detached::default(),
            io: tokio::runtime::Handle::current(),
            policies: RwLock::new(None),
            tasks: Mutex::new(Vec::new()),
            stopping: watch::channel(false).0,
            config,
        })
    }

    /// The failure policy for calls of `hook`: the scripts' (closed if any script implementing
    /// it is closed), else the configured default.
    pub(crate) fn policy(&self, hook: Hook) -> FailurePolicy {
        read(&self.policies)
            .as_ref()
            .and_then(|policies| policies.iter().find(|(h, _)| *h == hook))
            .map_or(self.config.failure, |(_, policy)| *policy)
    }

    /// A member's session completed its handshake: it takes calls from now on.
    pub(crate) fn joined(&self, member: &Arc<Member>, link: &Arc<Link>, ready: &Ready) {
        interest::declare(&self.interest, &ready.scripts);
        {
            let mut policies = write(&self.policies);
            if policies.is_none() {
                *policies = Some(interest::policies_of(&self.config, &ready.scripts));
            }
        }
        member.set_link(Some(Arc::clone(link)));
        self.pool.refresh();
        self.stats.session_up();
        self.stats.flush_report();
        // Attached before this session existed: its scripts' `running` fires now. (Attached
        // later: `attach` sends it, once per session either way.)
        if self.control.get().is_some() {
            link.run();
        }
    }

    /// A member's session ended or is draining: no new calls, no key sticks to it.
    pub(crate) fn left(&self, member: &Arc<Member>) {
        member.set_link(None);
        self.pool.refresh();
        self.pool.forget_member(member);
        self.stats.session_down();
    }

    /// Keeps a task for shutdown (dropping those that ended).
    pub(crate) fn track(&self, task: JoinHandle<()>) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }
}

impl Hooks for ScriptClient {
    fn interest(&self) -> &Interest {
        &self.env.interest
    }

    fn call<'a>(&'a self, hook: Hook, flow: &'a mut Flow) -> BoxFuture<'a, Verdict> {
        Box::pin(self.call_inner(hook, flow))
    }

    fn attach(&self, control: Arc<dyn CoreControl>) {
        if self.env.control.set(control).is_ok() {
            // The proxy attaches once, just before it serves: the scripts' `running` fires.
            for member in self.env.pool.members() {
                if let Some(link) = member.link() {
                    link.run();
                }
            }
        }
    }

    fn client_closed(&self, client_id: &str) {
        self.env.pool.forget_key(client_id);
        self.env.stats.client_closed(client_id);
        self.env.detached.forget(client_id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("client locks are never poisoned: no code panics while holding them")
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .expect("client locks are never poisoned: no code panics while holding them")
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .expect("client locks are never poisoned: no code panics while holding them")
}

#[cfg(test)]
mod tests {
    use super::exit_message;

    #[test]
    fn exit_message_is_mitmdumps_line_when_the_errors_were_printed() {
        let one = "Error logged during startup:\n[12:00:00.000] error in script x.py\nTraceback";
        assert_eq!(
            exit_message(one, true),
            "Error logged during startup, exiting..."
        );
        assert_eq!(exit_message(one, false), one);
        let two = "Errors logged during startup:\n[12:00:00.000] a\n[12:00:00.001] b";
        assert_eq!(
            exit_message(two, true),
            "Errors logged during startup, exiting..."
        );
        let refused = "flowtap: No such script: x.py";
        assert_eq!(exit_message(refused, true), refused);
    }
}
