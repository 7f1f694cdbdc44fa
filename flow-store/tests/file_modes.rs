//! The archive and the spool hold credentials, cookies and bodies: what flow-store creates for
//! them is readable by its owner only (directories 0700, files 0600), whatever the umask.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flowtap_flow_store::backend::sqlite::SqliteBackend;
use flowtap_flow_store::spool::Spool;
use flowtap_flow_store::{Config, Store};
use support::http_flow;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn spool_directories_and_segments_are_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("conf/spool");
    let spool = Spool::open(&dir).unwrap();
    spool
        .write(&http_flow("f1", "example.com", "/", 200))
        .unwrap();
    assert_eq!(mode(&root.path().join("conf")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    let segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!segments.is_empty());
    for segment in segments {
        assert_eq!(mode(&segment), 0o600, "{}", segment.display());
    }
}

#[tokio::test]
async fn a_new_sqlite_archive_and_its_journal_are_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("conf/flows.db");
    let store = Store::new(SqliteBackend::open(&path).unwrap(), Config::default());
    store
        .append(vec![http_flow("f1", "example.com", "/", 200)])
        .await
        .unwrap();
    assert_eq!(mode(&root.path().join("conf")), 0o700);
    let files: Vec<_> = std::fs::read_dir(root.path().join("conf"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("flows.db-wal")),
        "{files:?}"
    );
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}
