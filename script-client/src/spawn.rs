//! Workers this client starts itself: the `script-host` process on a unix socket of its own.
//!
//! A spawned worker writes to the proxy's own standard output, so what its scripts `print()`
//! reaches the console in order with the flow lines, as in mitmdump; it announces its address
//! on a pipe of its own instead (`--announce-fd`). It runs in a process group of its own, so
//! that a Ctrl-C in the terminal reaches only the proxy, which then ends the worker with Done
//! (the scripts' `done` hooks run and Python finalises).

use std::os::fd::{AsRawFd, OwnedFd};
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

/// The descriptor number on which a spawned worker announces its address.
const ANNOUNCE_FD: i32 = 3;

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
    let (announce_rx, announce_tx) =
        std::io::pipe().map_err(|e| spawn_error(format!("creating a pipe: {e}")))?;
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
        .arg("--announce-fd")
        .arg(ANNOUNCE_FD.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true);
    let announce_writer = announce_tx.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec and makes only
    // async-signal-safe calls (dup2, fcntl) on a descriptor the parent keeps open until spawn
    // returned; it allocates nothing.
    unsafe {
        command.pre_exec(move || put_on_fd(announce_writer, ANNOUNCE_FD));
    }
    let child = command.spawn().map_err(|e| spawn_error(e.to_string()))?;
    // The child has its copy: with ours closed, the pipe ends when the worker exits.
    drop(announce_tx);
    let announced = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(announce_rx))
        .map_err(|e| spawn_error(e.to_string()))?;
    let mut lines = BufReader::new(announced).lines();
    let line = tokio::time::timeout(config.startup_timeout, lines.next_line())
        .await
        .map_err(|_| spawn_error("it did not announce its address in time".into()))?
        .map_err(|e| spawn_error(e.to_string()))?
        .ok_or_else(|| spawn_error("it exited before announcing its address".into()))?;
    let address = line
        .strip_prefix("script-host listening on ")
        .ok_or_else(|| spawn_error(format!("unexpected output: {line}")))?
        .to_string();
    let socket = address
        .strip_prefix("unix:")
        .map(|path| SocketFile(PathBuf::from(path)));
    Ok((address, child, socket))
}

/// In a forked child: makes `fd` available as `target` across exec (dup2 clears close-on-exec;
/// when they are already the same descriptor, the flag is cleared by hand).
fn put_on_fd(fd: i32, target: i32) -> std::io::Result<()> {
    // SAFETY: plain descriptor calls on descriptors this process owns; no memory is touched.
    let failed = unsafe {
        if fd == target {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
        } else {
            libc::dup2(fd, target) < 0
        }
    };
    if failed {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
