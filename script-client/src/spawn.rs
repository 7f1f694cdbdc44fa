//! Workers this client starts itself: the `script-host` process on a unix socket of its own.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Config, ScriptsError};

/// The unix socket of a worker this client spawned, removed when its session goes (a worker
/// removes it itself when it ends normally, not when it is killed).
pub(crate) struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A unix socket path for a worker this process spawns: in the temporary directory, unique
/// per process and spawn.
fn socket_path() -> PathBuf {
    static SPAWNED: AtomicU64 = AtomicU64::new(0);
    let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("flowtap-script-{}-{n}.sock", std::process::id()))
}

/// Spawns `script-host` on a unix socket (cheaper per message than loopback TCP) and reads the
/// address it announces.
pub(crate) async fn spawn(
    config: &Config,
) -> Result<(String, Child, Option<SocketFile>), ScriptsError> {
    let binary = config.binary_path().map_err(|reason| ScriptsError::Spawn {
        binary: "script-host".into(),
        reason,
    })?;
    let spawn_error = |reason: String| ScriptsError::Spawn {
        binary: binary.display().to_string(),
        reason,
    };
    let socket = socket_path();
    let mut command = Command::new(&binary);
    command.args(&config.binary_args);
    for spec in &config.scripts {
        command.arg("-s").arg(spec);
    }
    command
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        // The worker exits when this pipe closes: when the proxy goes, however it goes.
        .arg("--exit-with-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| spawn_error(e.to_string()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| spawn_error("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(config.startup_timeout, lines.next_line())
        .await
        .map_err(|_| spawn_error("it did not announce its address in time".into()))?
        .map_err(|e| spawn_error(e.to_string()))?
        .ok_or_else(|| spawn_error("it exited before announcing its address".into()))?;
    let address = line
        .strip_prefix("script-host listening on ")
        .ok_or_else(|| spawn_error(format!("unexpected output: {line}")))?
        .to_string();
    // Keep reading so the worker never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let socket = address
        .strip_prefix("unix:")
        .map(|path| SocketFile(PathBuf::from(path)));
    Ok((address, child, socket))
}
