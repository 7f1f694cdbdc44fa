//! The flows that went on without their scripts after one of their hooks failed alone: a hook
//! that was late (its worker may still be running it) or a flow too large for the script
//! protocol. Their later hooks skip the scripts.
//!
//! Why skip them: a late hook still runs in the worker and holds its flow there (the worker
//! runs a flow's hooks one at a time), so the next hook would wait behind it, time out in its
//! place and, with `script_failure=closed`, replace the 504 that named the late hook. A flow
//! too large once stays too large. The failure policy already decided what the flow gets; its
//! other hooks add nothing but a second failure.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// More flows than this held at once (connections that never end) are let go: their later
/// hooks are then sent again, as before this table existed.
const MAX_HELD_FLOWS: usize = 100_000;

/// Flow ids by routing key (client connection), forgotten when the connection ends. Costs the
/// hook path one atomic load while it holds nothing.
#[derive(Default)]
pub(crate) struct Detached {
    by_key: Mutex<HashMap<String, HashSet<String>>>,
    held: AtomicUsize,
}

impl Detached {
    /// `flow_id` (of the client connection `key`) goes on without its scripts from now on.
    pub(crate) fn insert(&self, key: &str, flow_id: &str) {
        let mut by_key = lock(&self.by_key);
        if self.held.load(Ordering::Relaxed) >= MAX_HELD_FLOWS {
            by_key.clear();
            self.held.store(0, Ordering::Relaxed);
        }
        if by_key
            .entry(key.to_string())
            .or_default()
            .insert(flow_id.to_string())
        {
            self.held.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether `flow_id` went on without its scripts.
    pub(crate) fn contains(&self, key: &str, flow_id: &str) -> bool {
        if self.held.load(Ordering::Relaxed) == 0 {
            return false;
        }
        lock(&self.by_key)
            .get(key)
            .is_some_and(|flows| flows.contains(flow_id))
    }

    /// The client connection `key` ended: its flows are forgotten.
    pub(crate) fn forget(&self, key: &str) {
        if self.held.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(flows) = lock(&self.by_key).remove(key) {
            self.held.fetch_sub(flows.len(), Ordering::Relaxed);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("detached-flow lock is never poisoned: no code panics while holding it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_flow_is_remembered_until_its_connection_ends() {
        let detached = Detached::default();
        assert!(!detached.contains("conn-1", "flow-a"));
        detached.insert("conn-1", "flow-a");
        detached.insert("conn-1", "flow-a");
        assert!(detached.contains("conn-1", "flow-a"));
        assert!(!detached.contains("conn-1", "flow-b"));
        assert!(!detached.contains("conn-2", "flow-a"));
        detached.forget("conn-1");
        assert!(!detached.contains("conn-1", "flow-a"));
        assert_eq!(detached.held.load(Ordering::Relaxed), 0);
    }
}
