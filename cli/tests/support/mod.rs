//! Helpers for the `flowtap` command's end-to-end tests: the binary started as a separate
//! process, origin servers on std threads (plain, and TLS with a certificate minted at test
//! time), and real curl.

#![allow(dead_code, unreachable_pub)]

pub mod modes;
pub mod origin;
pub mod scaled;
pub mod scripts;
pub mod websocket;
pub mod worker;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single wait in these tests may take before it counts as a failure.
pub const WAIT: Duration = Duration::from_secs(30);

/// Lines a child process wrote, collected by a reader thread, with a channel announcing each.
pub struct Lines {
    all: Arc<Mutex<Vec<String>>>,
    rx: Receiver<String>,
}

impl Lines {
    pub fn collect(pipe: impl std::io::Read + Send + 'static) -> Lines {
        let all = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel();
        let kept = all.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                kept.lock().expect("lines lock").push(line.clone());
                let _ = tx.send(line);
            }
        });
        Lines { all, rx }
    }

    /// Waits (at most [`WAIT`]) for a line matching `matches`, and returns it.
    pub fn wait_for(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line {what} within {WAIT:?}; got {:?}", self.all())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("stream closed without a line {what}; got {:?}", self.all())
                }
            }
        }
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.all.lock().expect("lines lock").clone()
    }
}

/// A running `flowtap` process.
pub struct Flowtap {
    pub child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
    pub confdir: tempfile::TempDir,
}

/// The `flowtap` binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_flowtap")
}

/// The `flow-store` binary built beside `flowtap` (`cargo build --workspace --bins`).
pub fn flow_store_binary() -> PathBuf {
    let path = Path::new(binary()).with_file_name("flow-store");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

impl Flowtap {
    /// Starts `flowtap ARGS --set confdir=<temp dir>` without waiting for it.
    pub fn spawn(args: &[&str]) -> Flowtap {
        Flowtap::spawn_inner(args, &[])
    }

    fn spawn_inner(args: &[&str], env: &[(&str, &str)]) -> Flowtap {
        Flowtap::spawn_in(None, args, env)
    }

    /// Starts `flowtap ARGS --set confdir=<temp dir>` in directory `dir` (the current one when
    /// None) with extra environment variables, without waiting for it.
    pub fn spawn_in(dir: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Flowtap {
        let confdir = tempfile::tempdir().expect("confdir");
        let confdir_arg = format!("confdir={}", confdir.path().display());
        let mut command = Command::new(binary());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command
            .args(args)
            .args(["--set", &confdir_arg])
            .env_remove("FLOWTAP_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flowtap");
        let stdout = Lines::collect(child.stdout.take().expect("piped"));
        let stderr = Lines::collect(child.stderr.take().expect("piped"));
        Flowtap {
            child,
            stdout,
            stderr,
            confdir,
        }
    }

    /// Starts `flowtap -p 0 ARGS` and waits for its "listening at" log line; returns the
    /// process and the address it listens on.
    pub fn start(args: &[&str]) -> (Flowtap, SocketAddr) {
        let flowtap = Flowtap::spawn(&[&["-p", "0"], args].concat());
        let addr = flowtap.listening_at();
        (flowtap, addr)
    }

    /// Waits for the "proxy listening at ADDR" line and parses ADDR.
    pub fn listening_at(&self) -> SocketAddr {
        let line = self.stderr.wait_for("saying where the proxy listens", |l| {
            l.contains("listening at ")
        });
        let addr = line
            .rsplit("listening at ")
            .next()
            .expect("an address")
            .trim();
        addr.parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (at most `limit`) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "flowtap did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(mut self) -> (ExitStatus, Vec<String>) {
        self.terminate();
        let status = self.wait_exit(WAIT);
        // The reader threads see end of stream once the process has gone.
        let _ = self.stdout.rx.recv_timeout(Duration::from_millis(200));
        (status, self.stdout.all())
    }

    /// The process's peak resident set size in bytes (VmHWM).
    pub fn peak_rss_bytes(&self) -> u64 {
        peak_rss_of(self.pid())
    }

    pub fn confdir(&self) -> &Path {
        self.confdir.path()
    }
}

impl Drop for Flowtap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's peak resident set size in bytes (VmHWM).
#[allow(dead_code)]
pub fn peak_rss_of(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("a VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// Waits (bounded) until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on: bound, then released.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a throw-away port");
    listener.local_addr().expect("local addr").port()
}

/// What a curl run produced.
#[derive(Debug)]
pub struct Curl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A curl command with proxy variables from the environment removed.
pub fn curl_command(args: &[&str]) -> Command {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "120"]).args(args);
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs `curl -sS ARGS...` to the end.
pub fn curl(args: &[&str]) -> Curl {
    let output = curl_command(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run curl ({e}): these tests need curl on PATH (apt-get install curl)")
        });
    Curl {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Curl {
    /// Panics with curl's output unless it exited 0.
    pub fn ok(self) -> Curl {
        assert_eq!(
            self.code, 0,
            "curl failed: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        self
    }
}

/// Runs the `openssl` command line tool, panicking on failure.
pub fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A mitmproxy-style CA made by the openssl CLI: an RSA key (PKCS#1) followed by a self-signed
/// CA certificate in `dir/mitmproxy-ca.pem`, and the certificate alone in
/// `dir/mitmproxy-ca-cert.pem`. Returns both paths.
pub fn openssl_mitmproxy_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("key.pem");
    let cert = dir.join("mitmproxy-ca-cert.pem");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    openssl(&["genrsa", "-traditional", "-out", &path(&key), "2048"]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &path(&key),
        "-out",
        &path(&cert),
        "-days",
        "3650",
        "-subj",
        "/CN=mitmproxy/O=mitmproxy",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    let mut contents = std::fs::read_to_string(&key).expect("read key");
    contents.push_str(&std::fs::read_to_string(&cert).expect("read cert"));
    let ca = dir.join("mitmproxy-ca.pem");
    std::fs::write(&ca, contents).expect("write mitmproxy-ca.pem");
    (ca, cert)
}
