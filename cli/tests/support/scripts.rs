//! Helpers for the script tests: paths of the examples and fixtures, scripts written at test
//! time, an echo origin (so a test sees what reached the server), the event log of
//! `fixtures/mitmproxy-12/eventlog.py`, and the worker processes of a running `flowtap`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::origin::{Origin, content_length, read_head};
use super::{Curl, Flowtap, Lines, WAIT, curl_command};

/// `examples/NAME` in the repository.
pub fn example(name: &str) -> String {
    repo_path(&format!("examples/{name}"))
}

/// `fixtures/mitmproxy-12/NAME` in the repository.
pub fn fixture(name: &str) -> String {
    repo_path(&format!("fixtures/mitmproxy-12/{name}"))
}

fn repo_path(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    assert!(path.exists(), "{} is missing", path.display());
    path.to_str().expect("utf-8 path").to_string()
}

/// A script written into a temporary directory for one test.
pub struct TempScript {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempScript {
    pub fn new(name: &str, source: &str) -> TempScript {
        let dir = tempfile::tempdir().expect("script dir");
        let path = dir.path().join(name);
        std::fs::write(&path, source).expect("write the script");
        TempScript { dir, path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// A file beside the script (for scripts that leave markers).
    pub fn sibling(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// An origin that answers every request with 200 and a body that is the request as received:
/// its head, a blank line, and its body (keep-alive, Content-Length bodies).
pub fn echo_origin() -> Origin {
    Origin::start(|mut stream| {
        while let Some((head, mut body)) = read_head(&mut stream) {
            let length = content_length(&head);
            if body.len() < length {
                let mut rest = vec![0u8; length - body.len()];
                if stream.read_exact(&mut rest).is_err() {
                    return;
                }
                body.extend_from_slice(&rest);
            }
            let mut echoed = head.into_bytes();
            echoed.extend_from_slice(&body);
            let reply = [
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    echoed.len()
                )
                .into_bytes(),
                echoed,
            ]
            .concat();
            if stream.write_all(&reply).is_err() {
                return;
            }
        }
    })
}

/// An origin like Python's `http.server`: one HTTP/1.0 response per connection, then close.
pub fn http10_origin(body: &'static str) -> Origin {
    Origin::start(move |mut stream| {
        if read_head(&mut stream).is_none() {
            return;
        }
        let reply = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes());
    })
}

/// A response with a body, leaked to get the `'static` bytes `Origin::fixed` wants.
pub fn fixed_response(content_type: &str, body: &str) -> &'static [u8] {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Box::leak(response.into_bytes().into_boxed_slice())
}

/// `curl -x PROXY -i URL` (status line and headers included in stdout).
pub fn curl_via(proxy: SocketAddr, url: &str, extra: &[&str]) -> Curl {
    let proxy = format!("http://{proxy}");
    super::curl(&[&["-x", &proxy, "-i"], extra, &[url]].concat())
}

/// The status code of an `-i` curl output's last response.
pub fn status_of(out: &Curl) -> u16 {
    out.stdout
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"))
}

/// Whether an `-i` curl output (or an echoed request) has the header `name: value`
/// (case-insensitive name).
pub fn has_header(text: &str, name: &str, value: &str) -> bool {
    text.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.trim() == value.trim())
    })
}

/// The value of header `name` in an `-i` output or echoed head.
pub fn header_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Starts `n` curls at once (each `-x PROXY -i ... url(i)`), waits for all; returns their
/// outputs in order and the time from the first start to the last exit.
pub fn curl_parallel(
    proxy: SocketAddr,
    n: usize,
    url: impl Fn(usize) -> String,
) -> (Vec<Curl>, Duration) {
    let proxy = format!("http://{proxy}");
    let started = Instant::now();
    let children: Vec<Child> = (0..n)
        .map(|i| {
            curl_command(&["-x", &proxy, "-i", &url(i)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start curl")
        })
        .collect();
    let outputs: Vec<Curl> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("wait for curl");
            Curl {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        })
        .collect();
    (outputs, started.elapsed())
}

/// Polls `check` (every 20 ms, at most [`WAIT`]) until it returns `Some`.
pub fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text a script wrote to `path`, once it is there and not empty (a script's
/// `open(path, "w")` creates the file before it writes).
pub fn poll_text(what: &str, path: &std::path::Path) -> String {
    poll(what, || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|text| !text.is_empty())
    })
}

/// The child processes of `pid` (flowtap's script workers), from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return children;
    };
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        children.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    children.sort_unstable();
    children.dedup();
    children
}

/// Sends SIGKILL to `pid`.
pub fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {pid} failed");
}

impl Flowtap {
    /// Starts `flowtap -p 0 ARGS` with extra environment variables and waits until it listens.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> (Flowtap, SocketAddr) {
        let flowtap = Flowtap::spawn_with_env(&[&["-p", "0"], args].concat(), env);
        let addr = flowtap.listening_at();
        (flowtap, addr)
    }

    /// Starts `flowtap ARGS --set confdir=<temp dir>` with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Flowtap {
        Flowtap::spawn_inner(args, env)
    }

    /// Runs `flowtap ARGS --set confdir=<temp dir>` to the end (at most [`WAIT`]); returns
    /// the exit code, stdout and stderr.
    pub fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut flowtap = Flowtap::spawn_inner(args, env);
        let status = flowtap.wait_exit(WAIT);
        let stdout = flowtap.stdout.wait_closed();
        let stderr = flowtap.stderr.wait_closed();
        (
            status.code().unwrap_or(-1),
            stdout.join("\n"),
            stderr.join("\n"),
        )
    }

    /// The pids of the script workers (flowtap's child processes), once there are `n`.
    pub fn workers(&self, n: usize) -> Vec<u32> {
        poll("the script workers to run", || {
            let children = children_of(self.pid());
            (children.len() == n).then_some(children)
        })
    }
}

impl Lines {
    /// Waits until the stream ends (the process exited); returns every line.
    pub fn wait_closed(&self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return self.all(),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stream still open after {WAIT:?}: {:?}", self.all())
                }
            }
        }
    }

    /// Whether any line so far contains `text`.
    pub fn contains(&self, text: &str) -> bool {
        self.all().iter().any(|l| l.contains(text))
    }
}

/// The file `eventlog.py` appends to (`EVENTLOG`), in a temporary directory.
pub struct EventLog {
    dir: tempfile::TempDir,
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog {
            dir: tempfile::tempdir().expect("event log dir"),
        }
    }

    pub fn path(&self) -> String {
        self.dir
            .path()
            .join("events.txt")
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }

    /// The environment that points eventlog.py at this file.
    pub fn env(&self) -> (&'static str, String) {
        ("EVENTLOG", self.path())
    }

    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until a line starting with `prefix` was written.
    pub fn wait_for(&self, prefix: &str) {
        poll(&format!("an event log line {prefix:?}"), || {
            self.lines()
                .iter()
                .any(|l| l.starts_with(prefix))
                .then_some(())
        });
    }
}

/// Hooks mitmdump fires and flowtap does not (its layers are not scriptable here).
pub const NOT_FIRED_BY_FLOWTAP: [&str; 1] = ["next_layer"];

/// The recorded event lines of `fixtures/mitmproxy-12/NAME`, without the hooks flowtap does
/// not fire.
pub fn recorded_events(name: &str) -> Vec<String> {
    std::fs::read_to_string(fixture(name))
        .expect("read the recorded events")
        .lines()
        .filter(|l| {
            let hook = l.split(':').next().unwrap_or_default();
            !NOT_FIRED_BY_FLOWTAP.contains(&hook)
        })
        .map(str::to_string)
        .collect()
}

/// Makes event lines comparable across runs: client ports become `PORT`, the number of
/// options goes (mitmproxy has 95, flowtap its own set), and each `(from, to)` replacement
/// is applied (origin ports of the recording become the test's).
pub fn normalize_events(lines: &[String], replace: &[(&str, &str)]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let mut line = line.clone();
            for (from, to) in replace {
                line = line.replace(from, to);
            }
            if line.starts_with("configure: ") && line.ends_with(" options") {
                line = "configure: N options".to_string();
            }
            if let Some(start) = line.find("peer=('127.0.0.1', ") {
                let rest = &line[start + "peer=('127.0.0.1', ".len()..];
                if let Some(end) = rest.find(')') {
                    line = format!("{}peer=('127.0.0.1', PORT{}", &line[..start], &rest[end..]);
                }
            }
            line
        })
        .collect()
}

/// A TCP connect to `addr` that succeeds (used to see a started worker is reachable).
pub fn reachable(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).is_ok()
}
