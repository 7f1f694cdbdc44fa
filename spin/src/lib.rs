//! Spinning before a runtime thread parks, while a hook call or its reply is due soon.
//!
//! On a VM like the ones flowtap is measured on, a thread woken on an idle vCPU waits 11–25 µs
//! or more before it runs: the vCPU halted and the host has to resume it. A hook round trip has
//! such wake-ups at both ends (the worker for the call, the proxy for the reply). So the
//! runtime threads that carry the script protocol (the proxy's `script-io` thread, the worker's
//! driving thread) call [`before_park`] from tokio's `on_thread_park`: for up to
//! [`spin_time`] they watch their unix sockets, yielding the CPU to any other runnable thread
//! between looks, and park only when nothing came. The epoll wait that follows then returns at
//! once instead of sleeping.
//!
//! Spinning needs a second CPU (the peer runs meanwhile): with fewer it is off, and it is off
//! while no unix socket is watched (workers reached over TCP). The cost is CPU time while idle,
//! at most [`spin_time`] per park.
//!
//! `FLOWTAP_SPIN_US` sets the time in microseconds (0 turns spinning off); the default is
//! [`DEFAULT_SPIN`].

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a parking thread spins unless `FLOWTAP_SPIN_US` says otherwise.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// The watched sockets (duplicates of their descriptors), by watch id.
static WATCHED: Mutex<Vec<(u64, UnixStream)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
/// Bumped whenever another thread hands a spinning runtime work: its wake-up would go unseen
/// while the runtime's thread spins.
static NUDGES: AtomicU64 = AtomicU64::new(0);

/// How long a parking thread spins: `FLOWTAP_SPIN_US` microseconds, else [`DEFAULT_SPIN`];
/// zero when this process may use only one CPU.
pub fn spin_time() -> Duration {
    static SPIN: OnceLock<Duration> = OnceLock::new();
    *SPIN.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let configured = std::env::var("FLOWTAP_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map_or(DEFAULT_SPIN, Duration::from_micros);
        if cpus < 2 { Duration::ZERO } else { configured }
    })
}

/// A socket watched while its runtime spins; unwatched when dropped.
#[derive(Debug)]
pub struct Watch(u64);

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut watched) = WATCHED.lock() {
            watched.retain(|(id, _)| *id != self.0);
        }
    }
}

/// Watches `stream` for data (through a duplicate of its descriptor) until the returned
/// [`Watch`] is dropped. None if the descriptor could not be duplicated (nothing is watched).
pub fn watch(stream: &UnixStream) -> Option<Watch> {
    let copy = stream.try_clone().ok()?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    WATCHED.lock().ok()?.push((id, copy));
    Some(Watch(id))
}

/// Says another thread handed a runtime work (a message to send): a spinning thread stops.
pub fn nudge() {
    NUDGES.fetch_add(1, Ordering::Release);
}

/// For tokio's `on_thread_park`: spins until a watched socket has data (or hung up), some
/// thread nudged, or [`spin_time`] passed.
pub fn before_park() {
    spin_for(spin_time());
}

/// Spins for at most `limit` (see [`before_park`]); returns whether something came.
fn spin_for(limit: Duration) -> bool {
    if limit.is_zero() {
        return false;
    }
    let start = Instant::now();
    let nudges = NUDGES.load(Ordering::Acquire);
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        if NUDGES.load(Ordering::Acquire) != nudges {
            return true;
        }
        if let Ok(watched) = WATCHED.lock() {
            if watched.is_empty() {
                return false; // no unix socket (workers over TCP): nothing to look at
            }
            fds.clear();
            fds.extend(watched.iter().map(|(_, stream)| libc::pollfd {
                fd: stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
            // SAFETY: `fds` is an array of `fds.len()` initialised pollfd entries whose
            // descriptors stay open while `watched` is locked; a timeout of 0 never blocks.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
            if ready != 0 {
                return true;
            }
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    // The tests share the global watch list: one test covers every case in turn.
    #[test]
    fn spinning_ends_on_data_on_a_nudge_or_at_the_limit() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        // Nothing watched: no spinning at all (it would return false only after a minute).
        let start = Instant::now();
        assert!(!spin_for(Duration::from_secs(60)));
        assert!(start.elapsed() < Duration::from_secs(30));
        let watch_a = watch(&a).expect("watched");
        // Nothing comes: the limit ends it.
        assert!(!spin_for(Duration::from_millis(5)));
        // Data from another thread ends it.
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.write_all(b"x").expect("write");
            b
        });
        assert!(spin_for(Duration::from_secs(60)));
        let _b = writer.join().expect("writer");
        // A dropped watch is not looked at any more; a nudge ends the spin.
        drop(watch_a);
        let (c, _d) = UnixStream::pair().expect("pair");
        let _watch_c = watch(&c).expect("watched");
        assert!(!spin_for(Duration::from_millis(5)));
        let nudger = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            nudge();
        });
        assert!(spin_for(Duration::from_secs(60)));
        nudger.join().expect("nudger");
    }
}
