//! WAL checkpoints off the writer thread.
//!
//! In WAL mode every commit appends its pages to the `-wal` file, and a checkpoint copies them
//! into the database file. SQLite's automatic checkpoint runs inside the commit that crosses
//! its threshold, on the writer thread, where it took about a quarter of the writer's time
//! under a steady append load. Here a commit past [`WAKE_PAGES`] only wakes a checkpointer
//! thread, which copies the pages with its own connection in PASSIVE mode (it never blocks the
//! writer or the readers) while the writer goes on with the next batch.
//!
//! A passive checkpoint cannot restart the log while the writer keeps appending to it, so the
//! writer itself checkpoints (PASSIVE too, copying only what the checkpointer has not) once
//! the log holds [`BACKSTOP_PAGES`], waiting for the checkpointer to finish first if it is
//! busy; its next transaction then starts the log from the beginning. That bounds the `-wal`
//! file whether or not the checkpointer keeps up. Nothing here fails a commit: the hook runs
//! after the commit, and SQLite would report a hook's error as the commit's.

use std::ffi::c_int;
use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, ErrorCode};

/// Log pages after which a commit wakes the checkpointer (SQLite's default threshold; less in
/// tests, so that they reach the writer's own checkpoint quickly).
const WAKE_PAGES: c_int = if cfg!(test) { 50 } else { 1000 };

/// Log pages after which the writer checkpoints itself.
const BACKSTOP_PAGES: c_int = 4 * WAKE_PAGES;

/// Starts the checkpointer thread of the database at `path` and hooks `writer`'s commits to
/// it. This replaces SQLite's automatic checkpoints on `writer`.
pub(super) fn start(path: &Path, writer: &mut Connection) -> Result<(), String> {
    let checkpointer = super::connect(path).map_err(|e| e.to_string())?;
    // One pending wake-up is enough: a checkpoint copies everything committed before it.
    let (wake, woken) = sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("flow-store-sqlite-checkpoint".into())
        .spawn(move || {
            // Ends when the writer's connection, and with it the hook, is dropped.
            while woken.recv().is_ok() {
                let result = checkpointer.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE);
                if let Err(error) = result {
                    tracing::warn!(%error, "checkpointing the SQLite write-ahead log");
                }
            }
        })
        .map_err(|e| format!("starting checkpoint thread: {e}"))?;
    let hook = move |wal: &mut Wal, pages: c_int| {
        if pages >= BACKSTOP_PAGES {
            backstop(wal);
        } else if pages >= WAKE_PAGES {
            // Full: a wake-up is already pending.
            let _ = wake.try_send(());
        }
        Ok(())
    };
    writer.wal_hook(Some(hook)).map_err(|e| e.to_string())
}

/// How long the writer waits for a busy checkpointer before it lets the log grow on.
const BACKSTOP_WAIT: Duration = Duration::from_secs(10);

/// The writer's own checkpoint. SQLite answers BUSY at once while another connection holds
/// the checkpoint lock (the busy handler is not consulted for it), so this polls; the wait
/// holds back the writer while the checkpointer catches up.
fn backstop(wal: &mut Wal) {
    let deadline = Instant::now() + BACKSTOP_WAIT;
    loop {
        let error = match wal.checkpoint() {
            Ok(()) => return,
            Err(error) => error,
        };
        if error.sqlite_error_code() != Some(ErrorCode::DatabaseBusy) || Instant::now() > deadline {
            tracing::warn!(%error, "checkpointing the SQLite write-ahead log");
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn the_checkpointer_copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.db");
        let mut writer = super::super::connect(&path).unwrap();
        start(&path, &mut writer).unwrap();
        let page: i64 = writer
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap();
        assert_eq!(
            page,
            super::super::PAGE_BYTES,
            "a new file gets the larger pages"
        );
        writer
            .execute_batch("CREATE TABLE t (data BLOB NOT NULL)")
            .unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        // One commit past the wake-up threshold, far below the writer's own checkpoint: only
        // the checkpointer can move these pages into the database file.
        let transaction = writer.transaction().unwrap();
        let blob = vec![1u8; 3 * page as usize];
        for _ in 0..(WAKE_PAGES / 3 + 10) {
            transaction
                .execute("INSERT INTO t (data) VALUES (?1)", [&blob])
                .unwrap();
        }
        transaction.commit().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while size() < before + WAKE_PAGES as u64 * page as u64 {
            assert!(Instant::now() < deadline, "no checkpoint: {} bytes", size());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_log_stays_bounded_under_steady_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.db");
        let mut writer = super::super::connect(&path).unwrap();
        start(&path, &mut writer).unwrap();
        writer
            .execute_batch("CREATE TABLE t (data BLOB NOT NULL)")
            .unwrap();
        let page = super::super::PAGE_BYTES as u64;
        let blob = vec![2u8; 3 * page as usize];
        let wal = path.with_extension("db-wal");
        let mut largest = 0;
        // Ten times the backstop, in commits of about a tenth of the wake-up threshold: the
        // checkpointer is woken over and over while the writer keeps appending.
        for _ in 0..(10 * BACKSTOP_PAGES / 5) {
            let transaction = writer.transaction().unwrap();
            for _ in 0..2 {
                transaction
                    .execute("INSERT INTO t (data) VALUES (?1)", [&blob])
                    .expect("a commit never fails because of checkpoints");
            }
            transaction
                .commit()
                .expect("a commit never fails because of checkpoints");
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        let bound = 2 * BACKSTOP_PAGES as u64 * (page + 24);
        assert!(
            largest <= bound,
            "the log grew to {largest} bytes (bound {bound})"
        );
    }
}
