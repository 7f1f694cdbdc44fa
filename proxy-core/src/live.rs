//! The live flows that scripts may act on from outside their hooks (`flow.kill()` on a stored
//! flow, `inject.websocket`, `inject.tcp`, `inject.udp`): a registry keyed by flow id, holding a
//! kill switch for every live flow and, for WebSocket, TCP and UDP flows, the channel injected
//! messages go through.
//!
//! A flow registers when it starts and is removed when its [`LiveFlow`] guard drops. With no
//! scripts nothing can reach a flow from outside, so nothing registers (see
//! [`LiveFlows::register`]): the registry costs a sharded map insert and remove per flow only
//! when scripts are loaded.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

const SHARDS: usize = 8;

/// A message a script asked to inject into a live WebSocket or TCP flow.
#[derive(Debug)]
pub(crate) struct Injection {
    /// Sent to the client (else to the server).
    pub(crate) to_client: bool,
    pub(crate) content: Bytes,
    /// WebSocket only: a TEXT message (else BINARY).
    pub(crate) is_text: bool,
}

/// What kind of messages a flow takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MessageKind {
    WebSocket,
    Tcp,
    Udp,
}

impl MessageKind {
    fn name(self) -> &'static str {
        match self {
            MessageKind::WebSocket => "WebSocket",
            MessageKind::Tcp => "TCP",
            MessageKind::Udp => "UDP",
        }
    }
}

/// One registered flow: its kill switch and, once it relays messages, their channel.
struct Entry {
    kill: Arc<KillSwitch>,
    messages: Option<(MessageKind, mpsc::UnboundedSender<Injection>)>,
}

/// Set once; wakes everything waiting for it.
#[derive(Default)]
struct KillSwitch {
    killed: AtomicBool,
    /// A relay handles the kill now, or the flow is finishing: the HTTP lifecycle no longer
    /// acts on it.
    handed_over: AtomicBool,
    /// The registry entry is gone already (killed or finishing).
    removed: AtomicBool,
    notify: Notify,
}

impl KillSwitch {
    fn pull(&self) {
        self.killed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    async fn wait(&self) {
        loop {
            // Created before the flag is read, so a `pull` in between still wakes it.
            let notified = self.notify.notified();
            if self.killed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// The registry of live flows.
pub(crate) struct LiveFlows {
    /// Scripts are loaded; without them nothing registers.
    enabled: bool,
    shards: Vec<Mutex<HashMap<String, Entry>>>,
}

impl LiveFlows {
    /// A registry; when `enabled` is false (no scripts) [`register`](Self::register) does
    /// nothing.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, flow_id: &str) -> MutexGuard<'_, HashMap<String, Entry>> {
        let mut hasher = DefaultHasher::new();
        flow_id.hash(&mut hasher);
        self.shards[(hasher.finish() % SHARDS as u64) as usize]
            .lock()
            .expect("live flow lock is never poisoned: no code panics while holding it")
    }

    /// Registers a flow that has just started; it stays registered until the guard drops or
    /// the flow finishes. None when no scripts are loaded.
    pub(crate) fn register(&self, flow_id: &str) -> Option<LiveFlow<'_>> {
        if !self.enabled {
            return None;
        }
        let kill = Arc::new(KillSwitch::default());
        self.shard(flow_id).insert(
            flow_id.to_string(),
            Entry {
                kill: kill.clone(),
                messages: None,
            },
        );
        Some(LiveFlow {
            flows: self,
            id: flow_id.to_string(),
            kill,
        })
    }

    /// Kills a live flow: its task ends it as killed. False when no such flow is live.
    pub(crate) fn kill(&self, flow_id: &str) -> bool {
        if !self.enabled {
            return false;
        }
        match self.shard(flow_id).remove(flow_id) {
            Some(entry) => {
                entry.kill.removed.store(true, Ordering::Release);
                entry.kill.pull();
                true
            }
            None => false,
        }
    }

    /// The flow is finishing (its error hook or its sinks come next): a kill no longer applies.
    pub(crate) fn finish(&self, flow_id: &str) {
        if !self.enabled {
            return;
        }
        if let Some(entry) = self.shard(flow_id).remove(flow_id) {
            entry.kill.removed.store(true, Ordering::Release);
            entry.kill.handed_over.store(true, Ordering::Release);
        }
    }

    /// A WebSocket or TCP relay takes over the flow: it handles kills itself, and with `kind`
    /// scripts may inject messages of that kind. Nothing when the flow is not registered.
    pub(crate) fn hand_over(&self, flow_id: &str, kind: Option<MessageKind>) -> HandOver {
        let mut handed = HandOver {
            kill: None,
            injections: None,
        };
        if !self.enabled {
            return handed;
        }
        let mut shard = self.shard(flow_id);
        let Some(entry) = shard.get_mut(flow_id) else {
            return handed;
        };
        entry.kill.handed_over.store(true, Ordering::Release);
        handed.kill = Some(Killed(entry.kill.clone()));
        if let Some(kind) = kind {
            let (sender, receiver) = mpsc::unbounded_channel();
            entry.messages = Some((kind, sender));
            handed.injections = Some(receiver);
        }
        handed
    }

    /// Hands `injection` to a live flow of `kind`; an error text when there is none.
    pub(crate) fn inject(
        &self,
        flow_id: &str,
        kind: MessageKind,
        injection: Injection,
    ) -> Result<(), String> {
        let not_live = || format!("flow {flow_id} is not live (unknown or finished)");
        if !self.enabled {
            return Err(not_live());
        }
        let shard = self.shard(flow_id);
        let Some(entry) = shard.get(flow_id) else {
            return Err(not_live());
        };
        match &entry.messages {
            Some((k, sender)) if *k == kind => sender
                .send(injection)
                .map_err(|_| format!("flow {flow_id} has just finished")),
            Some((other, _)) => Err(format!(
                "flow {flow_id} is a {} flow, not a {} flow",
                other.name(),
                kind.name()
            )),
            None => Err(format!(
                "flow {flow_id} does not relay {} messages (an HTTP flow, or a WebSocket \
                 relayed as bytes because no script implements a websocket hook)",
                kind.name()
            )),
        }
    }
}

/// A registered flow, removed from the registry on drop.
pub(crate) struct LiveFlow<'a> {
    flows: &'a LiveFlows,
    id: String,
    kill: Arc<KillSwitch>,
}

impl LiveFlow<'_> {
    /// Completes when a script killed the flow from outside its hooks, unless a relay took
    /// the flow over or it is finishing: the HTTP lifecycle waits on this.
    pub(crate) async fn killed(&self) {
        self.kill.wait().await;
        if self.kill.handed_over.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for LiveFlow<'_> {
    fn drop(&mut self) {
        if !self.kill.removed.load(Ordering::Acquire) {
            self.flows.shard(&self.id).remove(&self.id);
        }
    }
}

/// What a WebSocket or TCP relay holds of its flow's registration.
pub(crate) struct HandOver {
    /// Completes when a script kills the flow.
    pub(crate) kill: Option<Killed>,
    /// Messages scripts inject.
    pub(crate) injections: Option<mpsc::UnboundedReceiver<Injection>>,
}

/// A relay's view of its flow's kill switch.
pub(crate) struct Killed(Arc<KillSwitch>);

/// Waits for a relay's flow to be killed (forever when it cannot be).
pub(crate) async fn killed(kill: Option<&Killed>) {
    match kill {
        Some(Killed(switch)) => switch.wait().await,
        None => std::future::pending().await,
    }
}

/// The next message injected into a relay; never completes without a channel.
pub(crate) async fn next_injection(
    injections: &mut Option<mpsc::UnboundedReceiver<Injection>>,
) -> Option<Injection> {
    match injections {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injection() -> Injection {
        Injection {
            to_client: true,
            content: Bytes::from_static(b"hi"),
            is_text: true,
        }
    }

    #[tokio::test]
    async fn a_kill_reaches_the_registered_flow_once() {
        let flows = LiveFlows::new(true);
        let live = flows.register("a").expect("enabled");
        assert!(!flows.kill("b"));
        assert!(flows.kill("a"));
        live.killed().await;
        assert!(!flows.kill("a"), "a killed flow is no longer live");
    }

    #[test]
    fn nothing_registers_without_scripts() {
        let flows = LiveFlows::new(false);
        assert!(flows.register("a").is_none());
        assert!(!flows.kill("a"));
        assert!(flows.hand_over("a", Some(MessageKind::Tcp)).kill.is_none());
    }

    #[tokio::test]
    async fn injections_reach_only_flows_of_their_kind() {
        let flows = LiveFlows::new(true);
        let live = flows.register("ws").expect("enabled");
        let refused = flows.inject("ws", MessageKind::WebSocket, injection());
        assert!(refused.unwrap_err().contains("does not relay"));
        let mut rx = flows
            .hand_over("ws", Some(MessageKind::WebSocket))
            .injections
            .expect("a kind");
        flows
            .inject("ws", MessageKind::WebSocket, injection())
            .unwrap();
        assert_eq!(&rx.recv().await.unwrap().content[..], b"hi");
        let refused = flows.inject("ws", MessageKind::Tcp, injection());
        assert!(refused.unwrap_err().contains("not a TCP flow"));
        drop(live);
        let refused = flows.inject("ws", MessageKind::WebSocket, injection());
        assert!(refused.unwrap_err().contains("not live"));
    }

    #[tokio::test]
    async fn after_hand_over_only_the_relay_sees_the_kill() {
        let flows = LiveFlows::new(true);
        let live = flows.register("f").expect("enabled");
        let handed = flows.hand_over("f", None);
        assert!(flows.kill("f"));
        killed(handed.kill.as_ref()).await;
        let outer = tokio::time::timeout(std::time::Duration::from_millis(20), live.killed()).await;
        assert!(
            outer.is_err(),
            "the HTTP lifecycle leaves the kill to the relay"
        );
    }

    #[test]
    fn a_finishing_flow_cannot_be_killed() {
        let flows = LiveFlows::new(true);
        let _live = flows.register("f").expect("enabled");
        flows.finish("f");
        assert!(!flows.kill("f"));
    }
}
