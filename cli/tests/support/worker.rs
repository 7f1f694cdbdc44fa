//! A script worker started by hand as its own process (`flowtap script-host -s SCRIPT
//! --listen ADDR`), as a Kubernetes pod runs one, for tests of `--script-host`.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::scripts::TempScript;
use super::{Lines, binary};

/// A `flowtap script-host` process and the address it announced.
pub struct Worker {
    pub child: Child,
    pub addr: SocketAddr,
    _stdout: Lines,
}

impl Worker {
    /// A worker on a port of its own choosing.
    pub fn start(script: &TempScript) -> Worker {
        Worker::start_on(script, "127.0.0.1:0")
    }

    /// A worker listening on `listen` (a port given back by a worker that ended, or a free
    /// one).
    pub fn start_on(script: &TempScript, listen: &str) -> Worker {
        let mut child = Command::new(binary())
            .args(["script-host", "-s", script.arg(), "--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start flowtap script-host");
        let stdout = Lines::collect(child.stdout.take().expect("piped"));
        let line = stdout.wait_for("announcing the address", |l| {
            l.starts_with("script-host listening on ")
        });
        let addr = line["script-host listening on ".len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        Worker {
            child,
            addr,
            _stdout: stdout,
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Waits (at most `limit`) for the worker to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
