//! The life of one member, as a task on the I/O thread: reach the worker (spawning it first
//! when this client owns it), hold the session while it lasts, try again with backoff when it
//! is lost or refused, and drain it when told to stop. Also the task that follows the names of
//! `--script-host` and joins and drains members as their addresses come and go.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowtap_proto::v1::Ready;
use tokio::sync::oneshot;

use crate::link::Link;
use crate::pool::{Member, Target};
use crate::resolve::{Names, Resolve, plan};
use crate::{Env, ScriptsError, spawn};

/// The outcome of a member's first attempt, for start-up.
pub(crate) type First = oneshot::Receiver<Result<Ready, ScriptsError>>;

/// Adds a member for `target` and starts its task on the I/O thread.
pub(crate) fn join(env: &Arc<Env>, target: Target) -> First {
    let member = Arc::new(Member::new(target));
    env.pool.add(Arc::clone(&member));
    let (first, outcome) = oneshot::channel();
    let task = env.io.spawn(run(Arc::clone(env), member, first));
    env.track(task);
    outcome
}

async fn run(
    env: Arc<Env>,
    member: Arc<Member>,
    first: oneshot::Sender<Result<Ready, ScriptsError>>,
) {
    let mut first = Some(first);
    let mut stop = member.stop.subscribe();
    let mut backoff = Backoff::new(env.config.reconnect_initial, env.config.reconnect_max);
    // Failed attempts since the member was last up: only the first is worth a warning.
    let mut failures = 0u32;
    loop {
        let attempt = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            attempt = open(&env, &member) => attempt,
        };
        match attempt {
            Ok((link, ready)) if ready.startup_error.is_empty() => {
                // Joined before start-up hears of it: `start` returns with the member up.
                env.joined(&member, &link, &ready);
                match first.take() {
                    Some(first) => {
                        let _ = first.send(Ok(ready.clone()));
                    }
                    None => tracing::info!(worker = %member.name, "script-host worker joined"),
                }
                backoff.reset();
                let stopped = tokio::select! {
                    _ = link.closed() => false,
                    _ = stop.wait_for(|stop| *stop) => true,
                };
                env.left(&member);
                if stopped {
                    drain(&env, &link).await;
                    break;
                }
                tracing::warn!(worker = %member.name, "lost the script-host worker; reconnecting");
                failures = 1;
            }
            Ok((_, ready)) => {
                let error = ScriptsError::Startup {
                    traceback: ready.startup_error,
                };
                match first.take() {
                    Some(first) => {
                        let _ = first.send(Err(error));
                    }
                    None if failures == 0 => tracing::error!(
                        worker = %member.name,
                        "script-host worker failed to load the scripts:\n{error}"
                    ),
                    None => tracing::debug!(worker = %member.name, "{error}"),
                }
                failures += 1;
            }
            Err(error) => {
                match first.take() {
                    Some(first) => {
                        let _ = first.send(Err(error));
                    }
                    None if failures == 0 => {
                        tracing::warn!(worker = %member.name, "{error}; retrying");
                    }
                    None => tracing::debug!(worker = %member.name, "{error}"),
                }
                failures += 1;
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            _ = tokio::time::sleep(backoff.next()) => {}
        }
    }
    env.pool.remove(&member);
}

/// Reaches the member's worker and completes the handshake.
async fn open(env: &Env, member: &Member) -> Result<(Arc<Link>, Ready), ScriptsError> {
    let (control, interest) = (Arc::clone(&env.control), Arc::clone(&env.interest));
    let failure = Arc::clone(&env.failure);
    match &member.target {
        Target::Remote(address) => {
            Link::open(address, None, &env.config, control, interest, failure).await
        }
        Target::Spawned(_) => {
            let (address, child, socket) = spawn::spawn(&env.config).await?;
            Link::open(
                &address,
                Some((child, socket)),
                &env.config,
                control,
                interest,
                failure,
            )
            .await
        }
    }
}

/// Lets the calls already sent finish (within the hook deadline, or [`DRAIN_WITHOUT_DEADLINE`]
/// when hooks have none), then ends the session with Done: a worker this client spawned exits,
/// a shared one ends just this session.
async fn drain(env: &Env, link: &Link) {
    let wait = env.config.hook_timeout.unwrap_or(DRAIN_WITHOUT_DEADLINE);
    let deadline = Instant::now() + wait + Duration::from_millis(200);
    while !link.is_idle() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    link.shutdown(Duration::from_secs(5)).await;
}

/// How long a draining session waits for the calls in flight when hooks have no deadline.
const DRAIN_WITHOUT_DEADLINE: Duration = Duration::from_secs(10);

/// Exponential backoff with jitter: each wait is a random time between half and all of the
/// current step, which doubles up to the cap.
struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            step: initial,
        }
    }

    fn reset(&mut self) {
        self.step = self.initial;
    }

    fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        step.mul_f64(0.5 + jitter() / 2.0)
    }
}

/// A random number in [0, 1) (from the standard library's randomly keyed hasher).
fn jitter() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Follows the names of `--script-host`: resolves them every `resolve_interval`, joins new
/// addresses and drains vanished ones, until the client stops.
pub(crate) async fn follow(env: Arc<Env>, mut names: Names, resolver: Arc<dyn Resolve>) {
    let mut stopping = env.stopping.subscribe();
    loop {
        let resolved = tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => return,
            resolved = async {
                tokio::time::sleep(env.config.resolve_interval).await;
                names.resolve(resolver.as_ref()).await
            } => resolved,
        };
        let (wanted, failures) = resolved;
        for (name, error) in failures {
            tracing::debug!("resolving {name}: {error}; keeping its last addresses");
        }
        let members = env.pool.members();
        let current: BTreeSet<String> = members
            .iter()
            .filter(|member| !member.is_draining())
            .filter_map(|member| match &member.target {
                Target::Remote(address) => Some(address.clone()),
                Target::Spawned(_) => None,
            })
            .collect();
        let plan = plan(&current, &wanted);
        for address in plan.join {
            tracing::info!(worker = %address, "a new script-host worker address; joining it");
            drop(join(&env, Target::Remote(address)));
        }
        for address in plan.drain {
            for member in &members {
                if member.target == Target::Remote(address.clone()) && !member.is_draining() {
                    tracing::info!(worker = %address, "script-host worker address gone; draining it");
                    member.drain();
                    env.pool.forget_member(member);
                }
            }
        }
        env.pool.refresh();
    }
}

#[cfg(test)]
mod tests {
    use futures_util::future::BoxFuture;
    use tokio::sync::mpsc;

    use super::*;
    use crate::Config;

    /// Answers each resolution with the next list the test sends (waiting for it).
    struct Steps(tokio::sync::Mutex<mpsc::UnboundedReceiver<Vec<String>>>);

    impl Resolve for Steps {
        fn resolve<'a>(&'a self, _: &'a str) -> BoxFuture<'a, std::io::Result<Vec<String>>> {
            Box::pin(async move {
                self.0
                    .lock()
                    .await
                    .recv()
                    .await
                    .ok_or_else(|| std::io::Error::other("no more answers"))
            })
        }
    }

    /// Waits (at most 10 s) until the pool's members are exactly `addresses`.
    async fn until_members(env: &Env, addresses: &[&str]) {
        let wanted: BTreeSet<String> = addresses.iter().map(|a| a.to_string()).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now: BTreeSet<String> = env
                .pool
                .members()
                .iter()
                .map(|member| member.name.clone())
                .collect();
            if now == wanted {
                return;
            }
            assert!(Instant::now() < deadline, "members {now:?}, not {wanted:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The loop that follows the names, with a resolver the test drives and addresses where
    /// no worker listens (the members keep retrying): new addresses become members, vanished
    /// ones are drained and leave, a failed lookup changes nothing.
    #[tokio::test]
    async fn following_a_name_joins_new_addresses_and_drains_vanished_ones() {
        let env = Env::for_test(Config {
            addresses: vec!["workers:9000".into()],
            resolve_interval: Duration::from_millis(5),
            ..Config::default()
        });
        let (answers, rx) = mpsc::unbounded_channel();
        let names = Names::new(env.config.addresses.clone());
        let task = tokio::spawn(follow(
            Arc::clone(&env),
            names,
            Arc::new(Steps(tokio::sync::Mutex::new(rx))),
        ));
        let a = "unix:/nonexistent/flowtap-a.sock";
        let b = "unix:/nonexistent/flowtap-b.sock";
        let c = "unix:/nonexistent/flowtap-c.sock";
        answers.send(vec![a.into(), b.into()]).expect("send");
        until_members(&env, &[a, b]).await;
        answers.send(vec![b.into(), c.into()]).expect("send");
        until_members(&env, &[b, c]).await;
        answers.send(vec![]).expect("send");
        answers.send(vec![c.into(), b.into()]).expect("send");
        until_members(&env, &[b, c]).await;

        env.stopping.send_replace(true);
        task.await.expect("the loop ends when the client stops");
        for member in env.pool.members() {
            member.drain();
        }
        until_members(&env, &[]).await;
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..6).map(|_| backoff.next()).collect();
        let steps = [100, 200, 400, 800, 1000, 1000];
        for (wait, step) in waits.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(
                *wait >= step / 2 && *wait <= step,
                "{wait:?} for step {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(100));
    }
}
