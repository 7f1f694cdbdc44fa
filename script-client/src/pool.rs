//! The workers as a pool: which member a flow's hook calls go to.
//!
//! A call is routed by its key, the flow's client connection id (the flow id when it has no
//! client connection). The first call of a key picks a member by rendezvous hashing over the
//! members that are up (the highest `hash(key, member)` wins), so that a member joining or
//! leaving moves only the keys it wins or won. The pick is remembered in an affinity table
//! until the client connection ends ([`Pool::forget_key`]), so that a connection and its flows
//! stay on one worker even when another joins. Entries of a member that is lost or drained are
//! dropped; their keys pick again.
//!
//! The hot path takes two uncontended read locks: a shard of the affinity table and the
//! member's session.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::link::Link;

/// Where a member's worker is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A running worker at this address (`IP:PORT` as resolved, or `unix:PATH`).
    Remote(String),
    /// Worker number N that this client spawns (and spawns again when it dies).
    Spawned(usize),
}

/// One worker of the pool and its current session (None while it is being reached).
pub(crate) struct Member {
    pub(crate) target: Target,
    /// For log lines: the address, or `worker N`.
    pub(crate) name: String,
    /// The member's fixed part of the rendezvous hash (from its address).
    seed: u64,
    link: RwLock<Option<Arc<Link>>>,
    /// No new calls: the address vanished or the client stops.
    draining: AtomicBool,
    /// Set to true to make the member's task drain and close its session.
    pub(crate) stop: watch::Sender<bool>,
}

impl Member {
    pub(crate) fn new(target: Target) -> Self {
        let name = match &target {
            Target::Remote(address) => address.clone(),
            Target::Spawned(index) => format!("worker {index}"),
        };
        Self {
            seed: stable_hash(&name),
            target,
            name,
            link: RwLock::new(None),
            draining: AtomicBool::new(false),
            stop: watch::channel(false).0,
        }
    }

    /// The session to send new calls on: None while the member is down or draining.
    pub(crate) fn routable(&self) -> Option<Arc<Link>> {
        if self.draining.load(Ordering::Acquire) {
            return None;
        }
        read(&self.link).clone()
    }

    /// The session, draining or not (for `done`, `configure` and shutdown).
    pub(crate) fn link(&self) -> Option<Arc<Link>> {
        read(&self.link).clone()
    }

    pub(crate) fn set_link(&self, link: Option<Arc<Link>>) {
        *write(&self.link) = link;
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Takes the member out of routing and tells its task to drain and close its session.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.stop.send_replace(true);
    }
}

/// Shards of the affinity table, so that connections starting at once rarely wait on each
/// other's writes.
const SHARDS: usize = 16;

/// The members and the affinity table.
pub(crate) struct Pool {
    /// Every member whose task runs, in any state (reaching, up, waiting to retry, draining).
    members: Mutex<Vec<Arc<Member>>>,
    /// The members up and not draining: what new keys pick from.
    up: RwLock<Arc<[Arc<Member>]>>,
    affinity: [RwLock<HashMap<String, Arc<Member>>>; SHARDS],
}

impl Pool {
    pub(crate) fn new() -> Self {
        Self {
            members: Mutex::new(Vec::new()),
            up: RwLock::new(Arc::from(Vec::new())),
            affinity: std::array::from_fn(|_| RwLock::new(HashMap::new())),
        }
    }

    /// The member and session for a call with `key`. `sticky`: remember the pick for the key
    /// (a client connection; [`Pool::forget_key`] ends it). None when no member is up.
    pub(crate) fn route(&self, key: &str, sticky: bool) -> Option<Arc<Link>> {
        let hash = stable_hash(key);
        let shard = self.shard(hash);
        if sticky
            && let Some(member) = read(shard).get(key)
            && let Some(link) = member.routable()
        {
            return Some(link);
        }
        let up = Arc::clone(&read(&self.up));
        // Skipping members that went down or started draining since the last refresh.
        let candidates = up
            .iter()
            .filter_map(|member| member.routable().map(|link| (member, link)));
        let (member, link) = rendezvous(hash, candidates, |(member, _)| member.seed)?;
        if sticky {
            write(shard).insert(key.to_string(), Arc::clone(member));
        }
        Some(link)
    }

    fn shard(&self, key_hash: u64) -> &RwLock<HashMap<String, Arc<Member>>> {
        &self.affinity[(key_hash % SHARDS as u64) as usize]
    }

    /// A client connection ended: its key picks afresh next time.
    pub(crate) fn forget_key(&self, key: &str) {
        let shard = self.shard(stable_hash(key));
        // Most connections end with an entry; a read first keeps the others off the write lock.
        if read(shard).contains_key(key) {
            write(shard).remove(key);
        }
    }

    /// `member` went down or is draining: no key sticks to it any more.
    pub(crate) fn forget_member(&self, member: &Arc<Member>) {
        for shard in &self.affinity {
            write(shard).retain(|_, m| !Arc::ptr_eq(m, member));
        }
    }

    /// Adds a member (its task is about to start).
    pub(crate) fn add(&self, member: Arc<Member>) {
        lock(&self.members).push(member);
    }

    /// Removes a member whose task ended.
    pub(crate) fn remove(&self, member: &Arc<Member>) {
        lock(&self.members).retain(|m| !Arc::ptr_eq(m, member));
        self.refresh();
    }

    /// Every member, in any state.
    pub(crate) fn members(&self) -> Vec<Arc<Member>> {
        lock(&self.members).clone()
    }

    /// The members up and not draining.
    pub(crate) fn up(&self) -> Arc<[Arc<Member>]> {
        Arc::clone(&read(&self.up))
    }

    /// Recomputes the members that new keys pick from (after a member's state changed).
    pub(crate) fn refresh(&self) {
        let up: Vec<Arc<Member>> = lock(&self.members)
            .iter()
            .filter(|m| m.routable().is_some())
            .cloned()
            .collect();
        *write(&self.up) = Arc::from(up);
    }
}

/// The member with the highest weight for the key with hash `key`: a member joining takes
/// only the keys it now wins, a member leaving gives up only the keys it won.
fn rendezvous<T>(
    key: u64,
    members: impl IntoIterator<Item = T>,
    seed: impl Fn(&T) -> u64,
) -> Option<T> {
    members
        .into_iter()
        .max_by_key(|member| mix(key ^ seed(member).rotate_left(32)))
}

/// A 64-bit finalizer (splitmix64): spreads the combined key and seed over the whole range.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A hash that is the same in every process (SipHash with fixed keys), so that a restarted
/// worker at the same address wins the same keys.
fn stable_hash(text: &str) -> u64 {
    std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(text)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .expect("pool locks are never poisoned: no code panics while holding them")
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .expect("pool locks are never poisoned: no code panics while holding them")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("pool locks are never poisoned: no code panics while holding them")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(key: &str, members: &[&str]) -> String {
        rendezvous(stable_hash(key), members, |m| stable_hash(m))
            .expect("members")
            .to_string()
    }

    #[test]
    fn a_fourth_member_takes_only_the_keys_it_now_wins() {
        let three = ["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"];
        let four = [three[0], three[1], three[2], "10.0.0.4:9000"];
        let keys: Vec<String> = (0..10_000).map(|i| format!("client-{i}")).collect();
        let mut moved = 0;
        for key in &keys {
            let before = pick(key, &three);
            let after = pick(key, &four);
            if before != after {
                assert_eq!(after, four[3], "{key} moved between old members");
                moved += 1;
            }
        }
        // About a quarter of the keys move, all to the new member.
        assert!((2_000..3_000).contains(&moved), "{moved} of 10000 moved");
    }

    #[test]
    fn losing_a_member_moves_only_its_keys_and_spreads_them() {
        let four = ["a:1", "b:1", "c:1", "d:1"];
        let three = ["a:1", "b:1", "c:1"];
        let mut received = HashMap::new();
        for i in 0..10_000 {
            let key = format!("client-{i}");
            let before = pick(&key, &four);
            let after = pick(&key, &three);
            if before == "d:1" {
                *received.entry(after).or_insert(0) += 1;
            } else {
                assert_eq!(before, after, "{key} moved though its member stayed");
            }
        }
        // The lost member's keys spread over all three that remain.
        assert_eq!(received.len(), 3, "{received:?}");
        assert!(received.values().all(|n| *n > 500), "{received:?}");
    }

    #[test]
    fn keys_spread_evenly() {
        let members = ["a:1", "b:1", "c:1"];
        let mut counts = HashMap::new();
        for i in 0..9_000 {
            *counts.entry(pick(&format!("k{i}"), &members)).or_insert(0) += 1;
        }
        assert!(
            counts.values().all(|n| (2_600..3_400).contains(n)),
            "{counts:?}"
        );
    }

    fn up(pool: &Pool, name: &str) -> Arc<Member> {
        let member = Arc::new(Member::new(Target::Remote(name.into())));
        member.set_link(Some(Link::detached(name)));
        pool.add(Arc::clone(&member));
        pool.refresh();
        member
    }

    fn routed(pool: &Pool, key: &str) -> String {
        pool.route(key, true)
            .expect("a member is up")
            .name()
            .to_string()
    }

    #[test]
    fn connections_stay_on_their_member_when_one_joins_and_move_when_theirs_is_lost() {
        let pool = Pool::new();
        assert!(pool.route("k", true).is_none(), "no member: nothing routes");
        let a = up(&pool, "a:1");
        up(&pool, "b:1");
        let keys: Vec<String> = (0..1_000).map(|i| format!("client-{i}")).collect();
        let first: Vec<String> = keys.iter().map(|k| routed(&pool, k)).collect();
        assert!(first.iter().any(|m| m == "a:1") && first.iter().any(|m| m == "b:1"));

        up(&pool, "c:1");
        for (key, member) in keys.iter().zip(&first) {
            assert_eq!(&routed(&pool, key), member, "{key} moved when c joined");
        }
        let fresh: Vec<String> = (0..300)
            .map(|i| routed(&pool, &format!("new-{i}")))
            .collect();
        assert!(fresh.iter().any(|m| m == "c:1"), "new connections use c");

        // a is lost: its connections move, the others stay.
        a.set_link(None);
        pool.refresh();
        pool.forget_member(&a);
        for (key, member) in keys.iter().zip(&first) {
            let now = routed(&pool, key);
            if member == "a:1" {
                assert_ne!(now, "a:1");
            } else {
                assert_eq!(&now, member, "{key} moved though b stayed");
            }
        }

        // A connection that ended picks afresh; a draining member takes no new calls.
        pool.forget_key(&keys[0]);
        assert!(!read(pool.shard(stable_hash(&keys[0]))).contains_key(&keys[0]));
        let members = pool.members();
        for member in &members {
            member.drain();
        }
        assert!(pool.route(&keys[1], true).is_none());
    }
}
