//! The object the Python runtime talks to (`flowtap_host.runtime.Host.bridge`): it takes the
//! worker's events and turns the runtime's replies, controls and logs into protocol messages.

use std::collections::HashMap;
use std::sync::Arc;

use flowtap_proto::v1::{self, Hook, worker_message::Kind};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::{convert, parts, reply};
use crate::worker::{Event, PendingCall, Worker};

/// The bridge between the Python runtime and the worker (see `tests/support.py` for the same
/// interface played by a fake).
#[pyclass(module = "flowtap_host", frozen)]
pub(super) struct Bridge {
    worker: Arc<Worker>,
}

impl Bridge {
    pub(super) fn new(worker: Arc<Worker>) -> Self {
        Self { worker }
    }
}

/// mitmproxy's name of a hook: `HOOK_REQUEST` -> `request`.
pub(super) fn hook_name(hook: Hook) -> String {
    hook.as_str_name()
        .trim_start_matches("HOOK_")
        .to_ascii_lowercase()
}

/// A reply too large for the session (a script made a body over the limit) would fail the whole
/// session, every proxy's flow on it: its changes are dropped instead, with an error the proxy
/// logs, and the flow goes on as it was sent.
fn fit_message_limit(reply: &mut v1::HookReply) {
    use prost::Message as _;
    let size = reply.encoded_len();
    if size <= crate::server::MAX_MESSAGE_BYTES - 1024 {
        return;
    }
    reply.flow = None;
    if reply.verdict == v1::Verdict::Respond as i32 {
        reply.verdict = v1::Verdict::Continue as i32;
    }
    reply.errors.push(v1::ScriptError {
        script: String::new(),
        hook: String::new(),
        traceback: format!(
            "the scripts' changes were dropped: the changed flow is {size} bytes, over the \
             script protocol's limit of {} bytes",
            crate::server::MAX_MESSAGE_BYTES
        ),
    });
}

fn hook_from_name(name: &str) -> Option<Hook> {
    Hook::from_str_name(&format!("HOOK_{}", name.to_ascii_uppercase()))
}

fn is_connection_hook(hook: Hook) -> bool {
    matches!(
        hook,
        Hook::ClientConnected
            | Hook::ClientDisconnected
            | Hook::ServerConnect
            | Hook::ServerConnected
            | Hook::ServerDisconnected
            | Hook::ServerConnectError
            | Hook::TlsClienthello
            | Hook::TlsStartClient
            | Hook::TlsStartServer
            | Hook::TlsEstablishedClient
            | Hook::TlsEstablishedServer
            | Hook::TlsFailedClient
            | Hook::TlsFailedServer
            | Hook::Socks5Auth
    )
}

fn options_to_py<'py>(py: Python<'py>, options: &[v1::Option]) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for option in options {
        out.set_item(
            &option.name,
            convert::option_to_py(py, option.value.as_ref())?,
        )?;
    }
    Ok(out)
}

impl Bridge {
    fn event_to_py<'py>(&self, py: Python<'py>, event: Event) -> PyResult<Bound<'py, PyTuple>> {
        match event {
            Event::Hello {
                session,
                core_options,
                deferred,
            } => {
                let deferred: HashMap<String, String> = deferred;
                (
                    "hello",
                    session,
                    options_to_py(py, &core_options)?,
                    deferred,
                )
                    .into_pyobject(py)
            }
            Event::Running { session } => ("running", session).into_pyobject(py),
            Event::Done { session } => ("done", session).into_pyobject(py),
            Event::Configure { session, options } => {
                ("configure", session, options_to_py(py, &options)?).into_pyobject(py)
            }
            Event::ControlResult { session, result } => {
                ("control_result", session, result.control_id, result.error).into_pyobject(py)
            }
            Event::Hook {
                session,
                call,
                bodies,
            } => self.hook_to_py(py, session, call, bodies),
        }
    }

    fn hook_to_py<'py>(
        &self,
        py: Python<'py>,
        session: u64,
        call: Box<v1::HookCall>,
        bodies: Vec<(v1::BodyKind, super::Body)>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let call = *call;
        let hook = call.hook();
        let flow = call.flow.unwrap_or_default();
        let live = flow.live;
        let (state, connection_subject) = if is_connection_hook(hook) {
            (parts::connection_subject_to_py(py, &flow)?, Some(flow))
        } else {
            (parts::flow_to_py(py, flow, bodies)?, None)
        };
        if !call.observe_only {
            self.worker.lock_pending().insert(
                (session, call.call_id),
                PendingCall {
                    live,
                    connection_subject,
                },
            );
        }
        (
            "hook",
            session,
            call.call_id,
            hook_name(hook),
            state,
            call.deadline_ms,
            call.observe_only,
        )
            .into_pyobject(py)
    }
}

#[pymethods]
impl Bridge {
    /// The next event from the proxy as `(number, after, event)`: numbered in the order of
    /// arrival, `after` the number of the last barrier (an observed hook call, or Running) before
    /// it (None if none), so
    /// that the runtime's scheduler (`order.py`) restores the order that matters whichever
    /// thread took them. One already waiting is taken with the GIL held (a busy worker goes
    /// from call to call without a thread switch); else waits for one without holding the
    /// GIL. None once the host finished. An event Python cannot be given becomes
    /// `("error", message, observed)`, so that its number is not lost.
    fn wait_one<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let worker = &self.worker;
        let taken = match worker.try_next() {
            Some(taken) => taken,
            None => match py.detach(|| worker.wait_one()) {
                Some(taken) => taken,
                None => return Ok(None),
            },
        };
        let (seq, after, event) = taken;
        let observed = crate::worker::is_barrier(&event);
        let item = match self.event_to_py(py, event) {
            Ok(item) => item,
            Err(e) => ("error", e.to_string(), observed).into_pyobject(py)?,
        };
        Ok(Some((seq, after, item).into_pyobject(py)?))
    }

    /// The outcome of one hook call (`state` is None when nothing changed). `stream`: after
    /// a `*headers` hook, the message's `stream` as the scripts set it (0 buffer, 1 pass, 2
    /// a callable). `ignore_connection`: after `tls_clienthello`, a script set it.
    /// `socks5_valid`: after `socks5_auth`, `data.valid` as the scripts left it.
    #[pyo3(signature = (session, call_id, verdict, state, errors, timed_out, stream=0, ignore_connection=false, socks5_valid=None))]
    #[allow(clippy::too_many_arguments)]
    fn hook_reply(
        &self,
        session: u64,
        call_id: u64,
        verdict: i32,
        state: Option<Bound<'_, PyAny>>,
        errors: Vec<(String, String, String)>,
        timed_out: bool,
        stream: i32,
        ignore_connection: bool,
        socks5_valid: Option<bool>,
    ) {
        let Some(pending) = self.worker.lock_pending().remove(&(session, call_id)) else {
            return; // the session ended meanwhile
        };
        let mut errors: Vec<v1::ScriptError> = errors
            .into_iter()
            .map(|(script, hook, traceback)| v1::ScriptError {
                script,
                hook,
                traceback,
            })
            .collect();
        let flow = state.and_then(|state| {
            let converted = match &pending.connection_subject {
                Some(sent) => reply::connection_subject_from_py(&state, sent),
                None => reply::flow_from_py(&state, pending.live),
            };
            converted
                .map_err(|e| {
                    errors.push(v1::ScriptError {
                        script: String::new(),
                        hook: String::new(),
                        traceback: format!("the scripts' changes were dropped: {e}"),
                    })
                })
                .ok()
        });
        let mut reply = v1::HookReply {
            call_id,
            verdict,
            flow,
            errors,
            timed_out,
            stream,
            ignore_connection,
            socks5_valid,
        };
        fit_message_limit(&mut reply);
        self.worker.send(Some(session), Kind::HookReply(reply));
    }

    /// The answer to a `stream_chunk` call: what the stream callable made of the chunk.
    fn chunk_reply(&self, session: u64, call_id: u64, is_response: bool, data: Vec<u8>) {
        if self
            .worker
            .lock_pending()
            .remove(&(session, call_id))
            .is_none()
        {
            return; // the session ended meanwhile
        }
        let content = Some(bytes::Bytes::from(data));
        let mut flow = v1::Flow::default();
        if is_response {
            flow.response = Some(v1::Response {
                content,
                ..v1::Response::default()
            });
        } else {
            flow.request = Some(v1::Request {
                content,
                ..v1::Request::default()
            });
        }
        let reply = v1::HookReply {
            call_id,
            verdict: v1::Verdict::Continue as i32,
            flow: Some(flow),
            ..v1::HookReply::default()
        };
        self.worker.send(Some(session), Kind::HookReply(reply));
    }

    /// The answer to Hello: the scripts, their hooks and options, or a start-up error. With
    /// `session` None, after a script was reloaded: to every session, so the cores call the
    /// hooks the new version implements.
    #[allow(clippy::type_complexity)]
    fn ready(
        &self,
        session: Option<u64>,
        infos: Vec<(
            String,
            Vec<(String, bool, bool)>,
            Vec<(String, String, Bound<'_, PyAny>, String, Vec<String>)>,
        )>,
        startup_error: String,
    ) {
        let scripts = infos
            .into_iter()
            .map(|(path, hooks, options)| v1::ScriptInfo {
                path,
                hooks: hooks
                    .into_iter()
                    .filter_map(|(name, needs_body, awaited)| {
                        Some(v1::HookSpec {
                            hook: hook_from_name(&name)? as i32,
                            needs_body,
                            awaited,
                        })
                    })
                    .collect(),
                options: options
                    .into_iter()
                    .map(|(name, typespec, default, help, choices)| v1::OptionSpec {
                        name,
                        typespec,
                        default: Some(convert::option_from_py(&default)),
                        help,
                        choices,
                    })
                    .collect(),
            })
            .collect();
        let ready = v1::Ready {
            protocol_version: v1::ProtocolVersion::ProtocolVersion1 as i32,
            scripts,
            startup_error,
            pid: std::process::id(),
        };
        match session {
            Some(session) => self.worker.send(Some(session), Kind::Ready(ready)),
            None => self.worker.broadcast(&Kind::Ready(ready)),
        }
    }

    /// A control message from a script, to the session of the flow it names. `session` None:
    /// all sessions for `shutdown` and `set_options`, else the oldest open one (and a replay
    /// whose session closed goes there too); a flow's `resume` or `kill` for a closed session
    /// is dropped with its flow.
    #[pyo3(signature = (session, control_id, kind, *payload))]
    fn control(
        &self,
        session: Option<u64>,
        control_id: u64,
        kind: &str,
        payload: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        use v1::control::Kind as C;
        let item = |i: usize| payload.get_item(i);
        let control_kind = match kind {
            "resume" => C::Resume(item(0)?.extract()?),
            "kill" => C::Kill(item(0)?.extract()?),
            "replay" => {
                let flow = reply::flow_from_py(&item(0)?, false)
                    .map_err(pyo3::exceptions::PyValueError::new_err)?;
                C::ReplayClient(flow)
            }
            "inject_websocket" => C::InjectWebsocket(v1::InjectWebSocket {
                flow_id: item(0)?.extract()?,
                to_client: item(1)?.extract()?,
                content: item(2)?.extract::<Vec<u8>>()?.into(),
                is_text: item(3)?.extract()?,
            }),
            "inject_tcp" => C::InjectTcp(v1::InjectTcp {
                flow_id: item(0)?.extract()?,
                to_client: item(1)?.extract()?,
                content: item(2)?.extract::<Vec<u8>>()?.into(),
            }),
            "inject_udp" => C::InjectUdp(v1::InjectUdp {
                flow_id: item(0)?.extract()?,
                to_client: item(1)?.extract()?,
                content: item(2)?.extract::<Vec<u8>>()?.into(),
            }),
            "shutdown" => C::Shutdown(true),
            "set_options" => {
                let values = item(0)?;
                let values = values.cast::<PyDict>()?;
                let options = values
                    .iter()
                    .map(|(k, v)| {
                        Ok(v1::Option {
                            name: k.extract()?,
                            value: Some(convert::option_from_py(&v)),
                        })
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                C::SetOptions(v1::Configure { options })
            }
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "unknown control {other}"
                )));
            }
        };
        let message = Kind::Control(v1::Control {
            control_id,
            kind: Some(control_kind),
        });
        match (session, kind) {
            (None, "shutdown" | "set_options") => self.worker.broadcast(&message),
            // A replay of a flow whose proxy has gone: another proxy runs it.
            (Some(id), "replay") if !self.worker.is_open(id) => self.worker.send(None, message),
            _ => self.worker.send(session, message),
        }
        Ok(())
    }

    /// The outcome of a Configure.
    fn configure_result(&self, session: u64, error: String) {
        self.worker.send(
            Some(session),
            Kind::ConfigureResult(v1::ConfigureResult { error }),
        );
    }

    /// A log record from a script (or the runtime) that the runtime did not print: into this
    /// process's log for a spawned worker with a JSON log (its proxy would log it again) or
    /// when no session is open, else to every session (each proxy prints it).
    fn log(&self, level: String, message: String, script: String) {
        if self.worker.ends_with_done() && flowtap_telemetry::logging::is_json() {
            match level.as_str() {
                "error" => tracing::error!(target: "script", %script, "{message}"),
                "warn" => tracing::warn!(target: "script", %script, "{message}"),
                "debug" => tracing::debug!(target: "script", %script, "{message}"),
                _ => tracing::info!(target: "script", %level, %script, "{message}"),
            }
        } else if self.worker.has_sessions() {
            self.worker.broadcast(&Kind::Log(v1::LogRecord {
                level,
                message,
                script,
            }));
        } else {
            tracing::info!(target: "script", %level, %script, "{message}");
        }
    }

    /// True when the Python runtime prints the scripts' log lines on standard output itself, as
    /// mitmdump does: a spawned worker, unless the log is JSON (then `log` writes them there).
    fn prints_log_lines(&self) -> bool {
        self.worker.ends_with_done() && !flowtap_telemetry::logging::is_json()
    }

    /// A line of the worker's own operational log (a hook that timed out, an internal error):
    /// into this process's log on stderr, not among the scripts' lines.
    fn oplog(&self, level: &str, message: &str) {
        match level {
            "error" => tracing::error!(target: "script_host", "{message}"),
            "warn" => tracing::warn!(target: "script_host", "{message}"),
            "debug" => tracing::debug!(target: "script_host", "{message}"),
            _ => tracing::info!(target: "script_host", "{message}"),
        }
    }

    /// The scripts' `done` hooks ran (the host drained, or a spawned worker's proxy sent
    /// Done): the host stops and every session's stream ends.
    fn finished(&self) {
        self.worker.finish(Ok(()));
    }

    /// The runtime's watchdog ran (every few milliseconds); it may stay away `limit` seconds
    /// (0: for ever) before the worker counts as frozen and exits (see `worker::heartbeat`).
    fn heartbeat(&self, limit: f64) {
        self.worker
            .heartbeat(std::time::Duration::try_from_secs_f64(limit).unwrap_or_default());
    }

    /// A hook is stuck past `hook_stuck_timeout` (`flowtap_host/watchdog.py` says which and
    /// where): the host stops as failed, so that the process exits with
    /// [`crate::cli::EXIT_STUCK`] and is replaced. The sessions' streams end; the proxies
    /// count this worker down until it is back.
    fn stuck(&self, message: &str) {
        tracing::error!(target: "script", "{message}");
        self.worker.stuck();
    }
}
