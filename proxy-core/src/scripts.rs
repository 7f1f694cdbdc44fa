//! The production [`Hooks`]: a gRPC client to `script-host` workers that run the Python scripts.
//!
//! [`ScriptClient::start`] spawns N `script-host` processes (the binary next to the current
//! executable) or connects to given addresses, opens one `ScriptHost.Session` per worker, says
//! Hello and waits for Ready. The scripts' hooks become the [`Interest`]; a script that failed to
//! start gives [`ScriptsError::Startup`] with the Python traceback (the command exits 1).
//!
//! Each flow is routed to one worker for its whole life (a hash of the flow id; connection hooks
//! by connection id). Every awaited call has a deadline ([`Config::hook_timeout`]); a timeout, a
//! crashed or unreachable worker is handled by the failure policy ([`FailurePolicy`]). A crashed
//! worker that this client spawned is restarted. Intercept is handled inside `call`: it returns
//! once a script resumed or killed the flow. Scripts' control messages reach the core through the
//! [`CoreControl`] given to [`Hooks::attach`]; their log records go to `tracing` (target
//! `script`).
//!
//! - `config`: [`Config`] and [`FailurePolicy`].
//! - `link`: one worker: its process, its session stream, pending calls, intercept waiters.
//! - `policy`: what a failed call does to the flow (502/504 responses).
//! - `unix`: the unix socket stream to a spawned worker (no wake-ups for writability).

mod config;
mod link;
mod policy;
mod unix;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use flowtap_proto::v1::{self, Flow, Hook, HookCall, core_message};
use futures_util::future::BoxFuture;

pub use config::{Config, FailurePolicy};
pub use flowtap_proto::v1::ScriptInfo;

use crate::hooks::{CoreControl, HookInterest, Hooks, Interest, Verdict};
use link::{IoThread, Link, Release, Reply};
use policy::Failure;

/// Why the scripts could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ScriptsError {
    /// A script failed at start-up (syntax error, exception in import, `load` or `configure`).
    /// The text is the Python traceback; the command prints it and exits with status 1.
    #[error("{traceback}")]
    Startup {
        /// The Python traceback(s), as the worker reported them.
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

/// The scripts, as the flow lifecycle sees them: a client to N script-host workers.
pub struct ScriptClient {
    config: Config,
    interest: Arc<Interest>,
    /// The failure policy of each hook (closed if any script implementing it is closed).
    policies: Vec<(Hook, FailurePolicy)>,
    slots: Vec<Slot>,
    control: Arc<OnceLock<Arc<dyn CoreControl>>>,
    io: IoThread,
}

impl std::fmt::Debug for ScriptClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptClient")
            .field("workers", &self.slots.len())
            .field("interest", &self.interest)
            .finish()
    }
}

/// One worker position: its current link (None while it is being restarted).
struct Slot {
    link: RwLock<Option<Arc<Link>>>,
}

impl Slot {
    fn current(&self) -> Option<Arc<Link>> {
        self.link
            .read()
            .expect("slot lock is never poisoned: no code panics while holding it")
            .clone()
    }

    fn replace(&self, link: Option<Arc<Link>>) {
        *self
            .link
            .write()
            .expect("slot lock is never poisoned: no code panics while holding it") = link;
    }
}

impl ScriptClient {
    /// Starts (or connects to) the workers and completes the handshake with each. Returns the
    /// client and the scripts the workers loaded.
    pub async fn start(config: Config) -> Result<(Arc<Self>, Vec<ScriptInfo>), ScriptsError> {
        let count = if config.addresses.is_empty() {
            config.workers.max(1)
        } else {
            config.addresses.len()
        };
        let control = Arc::new(OnceLock::new());
        let interest = Arc::new(Interest::none());
        let io = IoThread::start()?;
        let mut slots = Vec::with_capacity(count);
        let mut scripts = Vec::new();
        for index in 0..count {
            let (link, ready) = Link::open(
                &io,
                &config,
                index,
                Arc::clone(&control),
                Arc::clone(&interest),
            )
            .await?;
            if !ready.startup_error.is_empty() {
                return Err(ScriptsError::Startup {
                    traceback: ready.startup_error,
                });
            }
            declare(&interest, &ready.scripts);
            if index == 0 {
                scripts = ready.scripts;
            }
            slots.push(Slot {
                link: RwLock::new(Some(link)),
            });
        }
        let policies = policies_of(&config, &scripts);
        let client = Arc::new(Self {
            config,
            interest,
            policies,
            slots,
            control,
            io,
        });
        for (index, slot) in client.slots.iter().enumerate() {
            if let Some(link) = slot.current() {
                client.watch(index, link);
            }
        }
        Ok((client, scripts))
    }

    /// Restarts a spawned worker when its session ends unexpectedly.
    fn watch(self: &Arc<Self>, index: usize, link: Arc<Link>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            link.closed().await;
            let Some(client) = weak.upgrade() else { return };
            if link.is_shutting_down() || !client.config.addresses.is_empty() {
                return;
            }
            tracing::warn!(worker = index, "script-host worker died; restarting it");
            client.slots[index].replace(None);
            let mut delay = Duration::from_millis(200);
            loop {
                match Link::open(
                    &client.io,
                    &client.config,
                    index,
                    Arc::clone(&client.control),
                    Arc::clone(&client.interest),
                )
                .await
                {
                    Ok((new, ready)) if ready.startup_error.is_empty() => {
                        if client.control.get().is_some() {
                            new.send(core_message::Kind::Running(v1::Running {}));
                        }
                        client.slots[index].replace(Some(Arc::clone(&new)));
                        client.watch(index, new);
                        return;
                    }
                    Ok((_, ready)) => {
                        tracing::error!(
                            worker = index,
                            "restarted worker failed to load scripts:\n{}",
                            ready.startup_error
                        );
                    }
                    Err(e) => tracing::error!(worker = index, "restarting worker: {e}"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        });
    }

    /// Runs the scripts' `done` hooks and stops the workers this client spawned.
    pub async fn shutdown(&self) {
        for slot in &self.slots {
            if let Some(link) = slot.current() {
                link.shutdown(Duration::from_secs(5)).await;
            }
        }
    }

    /// Changes options at run time; a script's `configure` may reject the change (the error
    /// text of the first worker that did).
    pub async fn configure(&self, options: Vec<v1::Option>) -> Result<(), String> {
        for slot in &self.slots {
            if let Some(link) = slot.current() {
                link.configure(options.clone(), self.config.hook_timeout)
                    .await?;
            }
        }
        Ok(())
    }

    fn route(&self, flow_id: &str) -> &Slot {
        let mut hasher = DefaultHasher::new();
        flow_id.hash(&mut hasher);
        &self.slots[(hasher.finish() % self.slots.len() as u64) as usize]
    }

    /// The failure policy for calls of `hook`.
    fn policy(&self, hook: Hook) -> FailurePolicy {
        self.policies
            .iter()
            .find(|(h, _)| *h == hook)
            .map_or(self.config.failure, |(_, p)| *p)
    }

    async fn call_inner(&self, hook: Hook, flow: &mut Flow) -> Verdict {
        let interest = if hook == Hook::StreamChunk {
            // Asked for by the script that set a stream callable, not declared.
            HookInterest {
                wanted: true,
                needs_body: true,
                awaited: true,
            }
        } else {
            self.interest.of(hook)
        };
        if !interest.wanted {
            return Verdict::Continue;
        }
        let Some(link) = self.route(&flow.id).current() else {
            return policy::apply(self.policy(hook), Failure::Unreachable, hook, flow);
        };
        let call = HookCall {
            call_id: 0,
            hook: hook as i32,
            flow: Some(flow.clone()),
            deadline_ms: u32::try_from(self.config.hook_timeout.as_millis()).unwrap_or(u32::MAX),
            observe_only: !interest.awaited,
        };
        if !interest.awaited {
            link.observe(call);
            return Verdict::Continue;
        }
        let grace = Duration::from_millis(200);
        let reply =
            match tokio::time::timeout(self.config.hook_timeout + grace, link.call(call)).await {
                Ok(Some(reply)) => reply,
                Ok(None) => return policy::apply(self.policy(hook), Failure::Crashed, hook, flow),
                Err(_) => return policy::apply(self.policy(hook), Failure::Timeout, hook, flow),
            };
        self.finish(hook, flow, reply).await
    }

    async fn finish(&self, hook: Hook, flow: &mut Flow, reply: Reply) -> Verdict {
        let Reply { reply, release } = reply;
        for error in &reply.errors {
            tracing::error!(target: "script", script = %error.script, hook = %error.hook, "Addon error:\n{}", error.traceback);
        }
        if reply.timed_out {
            return policy::apply(self.policy(hook), Failure::Timeout, hook, flow);
        }
        let verdict = reply.verdict();
        let stream = reply.stream();
        if let Some(changed) = reply.flow {
            apply_changes(flow, changed);
        }
        let streamed = match hook {
            Hook::Requestheaders => flow.request.as_mut().map(|r| &mut r.stream),
            Hook::Responseheaders => flow.response.as_mut().map(|r| &mut r.stream),
            _ => None,
        };
        if let Some(mode) = streamed
            && stream != v1::StreamMode::Buffer
        {
            *mode = stream.into();
        }
        match verdict {
            v1::Verdict::Respond => Verdict::Respond,
            v1::Verdict::Kill => Verdict::Kill,
            v1::Verdict::Intercept => match release {
                Some(release) => match release.await {
                    Ok(Release::Resume) => {
                        flow.intercepted = false;
                        Verdict::Continue
                    }
                    Ok(Release::Kill) | Err(_) => {
                        flow.intercepted = false;
                        Verdict::Kill
                    }
                },
                None => Verdict::Continue,
            },
            _ => Verdict::Continue,
        }
    }
}

/// Takes the scripts' version of the flow, keeping the core's bodies where the reply has none
/// (bodies travel back only when a script set them), and the core's connections and request
/// where the reply has none (the worker leaves them out when the scripts did not change them).
fn apply_changes(flow: &mut Flow, mut changed: Flow) {
    if changed.client_conn.is_none() {
        changed.client_conn = flow.client_conn.take();
    }
    if changed.server_conn.is_none() {
        changed.server_conn = flow.server_conn.take();
    }
    if changed.request.is_none() {
        changed.request = flow.request.take();
    }
    if let (Some(new), Some(old)) = (changed.request.as_mut(), flow.request.as_ref())
        && new.content.is_none()
    {
        new.content = old.content.clone();
    }
    if let (Some(new), Some(old)) = (changed.response.as_mut(), flow.response.as_ref())
        && new.content.is_none()
    {
        new.content = old.content.clone();
    }
    changed.live = flow.live;
    *flow = changed;
}

/// Each declared hook's policy: closed if any script implementing it is closed.
fn policies_of(config: &Config, scripts: &[ScriptInfo]) -> Vec<(Hook, FailurePolicy)> {
    let mut policies: Vec<(Hook, FailurePolicy)> = Vec::new();
    for script in scripts {
        let policy = config
            .failure_by_script
            .get(&script.path)
            .copied()
            .unwrap_or(config.failure);
        for spec in &script.hooks {
            match policies.iter_mut().find(|(h, _)| *h == spec.hook()) {
                Some((_, existing)) if policy == FailurePolicy::Closed => *existing = policy,
                Some(_) => {}
                None => policies.push((spec.hook(), policy)),
            }
        }
    }
    policies
}

/// Adds the hooks `scripts` declare to `interest`. A WebSocket or TCP flow's end hooks are
/// added (observed) whenever a script implements one of its hooks: the worker lets go of the
/// flow object it keeps for the scripts only at its end.
fn declare(interest: &Interest, scripts: &[ScriptInfo]) {
    let observed = HookInterest {
        wanted: true,
        needs_body: false,
        awaited: false,
    };
    let families: [(&[Hook], &[Hook]); 2] = [
        (
            &[Hook::WebsocketStart, Hook::WebsocketMessage],
            &[Hook::WebsocketEnd],
        ),
        (
            &[Hook::TcpStart, Hook::TcpMessage],
            &[Hook::TcpEnd, Hook::TcpError],
        ),
    ];
    for script in scripts {
        for (hooks, ends) in families {
            if script.hooks.iter().any(|spec| hooks.contains(&spec.hook())) {
                for end in ends {
                    interest.widen(*end, observed);
                }
            }
        }
    }
    for script in scripts {
        for spec in &script.hooks {
            interest.widen(
                spec.hook(),
                HookInterest {
                    wanted: true,
                    needs_body: spec.needs_body,
                    awaited: spec.awaited,
                },
            );
        }
    }
}

impl Hooks for ScriptClient {
    fn interest(&self) -> &Interest {
        &self.interest
    }

    fn call<'a>(&'a self, hook: Hook, flow: &'a mut Flow) -> BoxFuture<'a, Verdict> {
        Box::pin(self.call_inner(hook, flow))
    }

    fn attach(&self, control: Arc<dyn CoreControl>) {
        if self.control.set(control).is_ok() {
            // The proxy attaches once, just before it serves: the scripts' `running` fires.
            for slot in &self.slots {
                if let Some(link) = slot.current() {
                    link.send(core_message::Kind::Running(v1::Running {}));
                }
            }
        }
    }
}
