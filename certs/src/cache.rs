//! A small bounded map shared between threads: insertion-ordered, evicting the oldest entry.
//!
//! Used for minted leaves and finished server configs. The lock is held only for a lookup or
//! an insert, never while signing, so concurrent tasks minting for different hosts do not wait
//! on each other.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A thread-safe map holding at most `capacity` entries.
#[derive(Debug)]
pub(crate) struct BoundedCache<K, V> {
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
}

#[derive(Debug)]
struct Inner<K, V> {
    map: HashMap<K, V>,
    // Keys in insertion order; the front is evicted first.
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedCache<K, V> {
    /// An empty cache that keeps at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// The value stored for `key`, if any.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.lock().map.get(key).cloned()
    }

    /// Stores `value` unless another thread stored one for `key` first, and returns the value
    /// that is now cached, so that racing callers all end up with the same value.
    pub(crate) fn insert(&self, key: K, value: V) -> V {
        let mut inner = self.lock();
        if let Some(existing) = inner.map.get(&key) {
            return existing.clone();
        }
        while inner.map.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(oldest) => inner.map.remove(&oldest),
                None => break,
            };
        }
        inner.order.push_back(key.clone());
        inner.map.insert(key, value.clone());
        value
    }

    /// How many entries are cached.
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V>> {
        // Every update leaves the map and the order consistent before it can panic, so a
        // poisoned lock still guards usable data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedCache;

    #[test]
    fn evicts_the_oldest_entry() {
        let cache = BoundedCache::new(2);
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("c", 3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"a"), None);
        assert_eq!(cache.get(&"b"), Some(2));
        assert_eq!(cache.get(&"c"), Some(3));
    }

    #[test]
    fn first_insert_wins() {
        let cache = BoundedCache::new(4);
        assert_eq!(cache.insert("a", 1), 1);
        assert_eq!(cache.insert("a", 2), 1);
        assert_eq!(cache.get(&"a"), Some(1));
    }
}
