//! Real curl as the client.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What a curl run produced.
#[derive(Debug)]
pub struct Curl {
    /// curl's exit code (0 on success, 35/60 for TLS failures, ...).
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Curl {
    /// stdout as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with curl's output unless it exited 0.
    pub fn ok(self) -> Curl {
        assert_eq!(
            self.code,
            0,
            "curl failed: {}\nstdout: {}",
            self.stderr,
            self.text()
        );
        self
    }
}

/// Runs `curl -sS ARGS...`, feeding `stdin` if given. Proxy variables from the environment are
/// removed so only `-x` decides where requests go.
pub async fn curl_with_stdin(args: &[&str], stdin: Option<Vec<u8>>) -> Curl {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!("cannot run curl ({e}): these tests need curl on PATH (apt-get install curl)")
    });
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
        });
    }
    let output = child.wait_with_output().await.expect("wait for curl");
    Curl {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `curl -sS ARGS...`.
pub async fn curl(args: &[&str]) -> Curl {
    curl_with_stdin(args, None).await
}
