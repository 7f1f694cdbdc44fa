//! The script client's settings.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use flowtap_proto::v1;

/// What a hook call that failed (timeout, crashed or unreachable worker) does to its flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The flow goes on unmodified; the failure is logged (mitmproxy's behaviour for errors).
    #[default]
    Open,
    /// The client gets a 504 (timeout) or 502 (crashed, unreachable) naming the cause.
    Closed,
}

impl std::str::FromStr for FailurePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            other => Err(format!(
                "script_failure must be open or closed, not {other:?}"
            )),
        }
    }
}

/// How to run the scripts.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `-s` values in load order (`"x.py"` or `"x.py arg1 arg2"` for old-API scripts).
    pub scripts: Vec<String>,
    /// Worker processes to spawn (each has its own interpreter and GIL); ignored when
    /// `addresses` is not empty.
    pub workers: usize,
    /// Running workers to connect to instead of spawning (`--script-host ADDR`, repeatable):
    /// `HOST:PORT` (every address the name resolves to, re-resolved every `resolve_interval`)
    /// or `unix:PATH`. They are not started or stopped by this client; a lost session is
    /// retried.
    pub addresses: Vec<String>,
    /// How often the names in `addresses` are resolved again: new addresses are joined,
    /// vanished ones drained.
    pub resolve_interval: Duration,
    /// The first wait before a lost or refused session is tried again; it doubles (with
    /// jitter) up to `reconnect_max`.
    pub reconnect_initial: Duration,
    /// The longest wait between two attempts to reach a worker.
    pub reconnect_max: Duration,
    /// At most one log line per this interval counts the flows that went on without their
    /// scripts (fail open).
    pub failed_open_log_interval: Duration,
    /// The `script-host` binary; by default the one next to the current executable (or one
    /// directory up, for test binaries in `target/*/deps`).
    pub binary: Option<PathBuf>,
    /// Arguments put before the worker's own, e.g. `["script-host"]` when `binary` is a
    /// program that runs the worker as a subcommand.
    pub binary_args: Vec<String>,
    /// The deadline of one hook call; None: no deadline (mitmdump's behaviour: a hook takes the
    /// time it takes). Operators of shared deployments set one.
    pub hook_timeout: Option<Duration>,
    /// How long after it arrived a hook call that is still running counts as stuck, see
    /// [`Config::stuck_timeout`]. With a `hook_timeout`, one stuck call makes its worker exit
    /// to be replaced (a Python thread cannot be stopped); without one, only a worker whose
    /// hook threads are all stuck does. None: four times `hook_timeout`, or
    /// [`STUCK_WITHOUT_DEADLINE`]; zero: never. Workers learn it in Hello, as the core option
    /// `hook_stuck_timeout`.
    pub hook_stuck_timeout: Option<Duration>,
    /// What a failed call does to its flow, for scripts without an entry in `failure_by_script`.
    pub failure: FailurePolicy,
    /// Per-script policies, keyed by the script's path as given in `scripts` (without
    /// arguments). A hook call fails closed if any script implementing that hook is closed.
    pub failure_by_script: HashMap<String, FailurePolicy>,
    /// `--set name=value` pairs for options the proxy does not know (scripts may register
    /// them). Repeated values of a sequence option are joined with newlines.
    pub deferred: HashMap<String, String>,
    /// The proxy's own options, shown to scripts as `ctx.options`.
    pub core_options: Vec<v1::Option>,
    /// How long a worker may take to start and load its scripts.
    pub startup_timeout: Duration,
    /// TLS and token towards the workers at `addresses` (`--grpc-ca`, `--grpc-cert`,
    /// `--grpc-key`, `--grpc-token-file`); spawned workers on a unix socket need none.
    pub grpc: flowtap_grpc::ClientConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            scripts: Vec::new(),
            workers: 1,
            addresses: Vec::new(),
            resolve_interval: Duration::from_secs(2),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(1),
            failed_open_log_interval: Duration::from_secs(5),
            binary: None,
            binary_args: Vec::new(),
            hook_timeout: None,
            hook_stuck_timeout: None,
            failure: FailurePolicy::Open,
            failure_by_script: HashMap::new(),
            deferred: HashMap::new(),
            core_options: Vec::new(),
            startup_timeout: Duration::from_secs(60),
            grpc: flowtap_grpc::ClientConfig::default(),
        }
    }
}

/// `hook_stuck_timeout` as a multiple of `hook_timeout`, when it is not set.
const STUCK_FACTOR: u32 = 4;

/// `hook_stuck_timeout` when neither it nor `hook_timeout` is set: a worker whose hook threads
/// have all been busy with the same calls this long is replaced.
pub const STUCK_WITHOUT_DEADLINE: Duration = Duration::from_secs(60);

/// How long a run-time Configure may take when hooks have no deadline.
const CONFIGURE_WITHOUT_DEADLINE: Duration = Duration::from_secs(30);

impl Config {
    /// `hook_stuck_timeout`, or four times `hook_timeout` when it is not set, or
    /// [`STUCK_WITHOUT_DEADLINE`] when neither is (zero: never).
    pub fn stuck_timeout(&self) -> Duration {
        self.hook_stuck_timeout.unwrap_or(match self.hook_timeout {
            Some(hook_timeout) => hook_timeout * STUCK_FACTOR,
            None => STUCK_WITHOUT_DEADLINE,
        })
    }

    /// How long the scripts' `configure` hooks may take at run time.
    pub(crate) fn configure_timeout(&self) -> Duration {
        self.hook_timeout.unwrap_or(CONFIGURE_WITHOUT_DEADLINE)
    }

    /// The proxy's options as the workers are told them in Hello: `core_options` and
    /// `hook_stuck_timeout` (seconds), which the worker's watchdog reads.
    pub(crate) fn hello_options(&self) -> Vec<v1::Option> {
        let mut options = self.core_options.clone();
        if !options.iter().any(|o| o.name == "hook_stuck_timeout") {
            options.push(v1::Option {
                name: "hook_stuck_timeout".into(),
                value: Some(v1::OptionValue {
                    kind: Some(v1::option_value::Kind::Float(
                        self.stuck_timeout().as_secs_f64(),
                    )),
                }),
            });
        }
        options
    }

    /// The binary to spawn.
    pub(crate) fn binary_path(&self) -> Result<PathBuf, String> {
        if let Some(binary) = &self.binary {
            return Ok(binary.clone());
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut dir = exe.parent();
        for _ in 0..2 {
            let Some(d) = dir else { break };
            let candidate = d.join("script-host");
            if candidate.is_file() {
                return Ok(candidate);
            }
            dir = d.parent();
        }
        Err(format!(
            "no script-host binary next to {} (build it with `cargo build -p flowtap-script-host`)",
            exe.display()
        ))
    }
}
