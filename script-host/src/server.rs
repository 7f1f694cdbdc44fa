//! The `ScriptHost` gRPC service: one `Session` stream per connected core.
//!
//! Inbound messages become [`Event`]s for the Python runtime; the runtime's messages come back on
//! the session's own channel, which is the response stream. A Hello with another protocol
//! version ends the stream with `FAILED_PRECONDITION`; a session opened while the worker drains
//! is refused with `UNAVAILABLE`.
//!
//! Done (or the stream ending) closes that session only, unless a proxy spawned this worker for
//! itself ([`Worker::ends_with_done`]): then Done runs the scripts' `done` hooks and ends the
//! worker.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use flowtap_proto::v1::{
    self, CoreMessage, ProtocolVersion, WorkerMessage, core_message,
    script_host_server::ScriptHost, script_host_server::ScriptHostServer,
};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::python::Body;
use crate::worker::{Event, Worker};

/// The largest message a session takes or sends (the proxy's limit too). A hook reply that
/// would be larger is sent without the scripts' changes (see `python::bridge`).
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The gRPC service of one script-host process.
#[derive(Clone, Debug)]
pub struct ScriptHostService {
    worker: Arc<Worker>,
}

impl ScriptHostService {
    pub(crate) fn new(worker: Arc<Worker>) -> Self {
        Self { worker }
    }

    /// The service wrapped for a tonic router.
    pub fn into_server(self) -> ScriptHostServer<Self> {
        ScriptHostServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<WorkerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl ScriptHost for ScriptHostService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<CoreMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let Some((session, rx)) = self.worker.open_session() else {
            return Err(Status::unavailable(
                "this script-host worker is shutting down and takes no new sessions",
            ));
        };
        let worker = Arc::clone(&self.worker);
        tokio::spawn(async move {
            let mut pieces = Pieces::default();
            loop {
                match inbound.message().await {
                    Ok(Some(message)) => match dispatch(&worker, session, &mut pieces, message) {
                        Ok(Next::Read) => {}
                        Ok(Next::Close) => break,
                        Err(status) => {
                            worker.send_status(session, status);
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(session, %status, "session stream failed");
                        break;
                    }
                }
            }
            worker.close_session(session);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}

/// What the session does after a message.
enum Next {
    /// Reads the next one.
    Read,
    /// Ends (a standalone worker's session sent Done).
    Close,
}

/// The bodies of hook calls arriving in pieces (`CallBody`), by call and kind, until their call.
#[derive(Default)]
struct Pieces {
    bodies: HashMap<(u64, i32), Body>,
    /// The bytes announced by the bodies being assembled.
    announced: u64,
}

/// The most bytes of bodies assembled at once on one session: one call's request and response
/// at their largest (the core sends a call's pieces right before the call).
const MAX_BYTES_IN_PIECES: u64 = 2 * crate::python::MAX_BODY_BYTES;

/// The most calls with bodies in pieces under way at once on one session (the core sends a
/// call's pieces right before it, so there is one at a time from a well-behaved core).
const MAX_CALLS_IN_PIECES: usize = 64;

impl Pieces {
    fn add(&mut self, piece: &v1::CallBody) -> Result<(), Status> {
        let key = (piece.call_id, piece.kind);
        if !self.bodies.contains_key(&key) {
            if self.bodies.len() >= MAX_CALLS_IN_PIECES {
                return Err(Status::resource_exhausted(
                    "too many hook-call bodies under way in pieces",
                ));
            }
            if self.announced.saturating_add(piece.total) > MAX_BYTES_IN_PIECES {
                return Err(Status::resource_exhausted(
                    "hook-call bodies under way in pieces exceed what one call may carry",
                ));
            }
            let body = Body::allocate(piece.total).map_err(Status::invalid_argument)?;
            self.announced += piece.total;
            self.bodies.insert(key, body);
        }
        let body = self
            .bodies
            .get_mut(&key)
            .expect("inserted above when it was missing");
        if body.total() != piece.total {
            return Err(Status::invalid_argument(
                "the pieces of one body announce different lengths",
            ));
        }
        body.write(&piece.data).map_err(Status::invalid_argument)
    }

    /// The whole bodies `call` lists as sent in pieces.
    fn take(&mut self, call: &v1::HookCall) -> Result<Vec<(v1::BodyKind, Body)>, Status> {
        let mut bodies = Vec::with_capacity(call.chunked_bodies.len());
        for &kind in &call.chunked_bodies {
            let body = self
                .bodies
                .remove(&(call.call_id, kind))
                .inspect(|body| self.announced -= body.total())
                .filter(Body::is_complete)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "hook call {}: a body listed as sent in pieces did not arrive whole",
                        call.call_id
                    ))
                })?;
            let kind = v1::BodyKind::try_from(kind)
                .map_err(|_| Status::invalid_argument("unknown body kind"))?;
            bodies.push((kind, body));
        }
        Ok(bodies)
    }
}

fn dispatch(
    worker: &Worker,
    session: u64,
    pieces: &mut Pieces,
    message: CoreMessage,
) -> Result<Next, Status> {
    use core_message::Kind;
    let Some(kind) = message.kind else {
        return Err(Status::invalid_argument("empty CoreMessage"));
    };
    let event = match kind {
        Kind::Hello(hello) => {
            if hello.protocol_version() != ProtocolVersion::ProtocolVersion1 {
                return Err(Status::failed_precondition(format!(
                    "protocol version {} is not supported (this worker speaks 1)",
                    hello.protocol_version
                )));
            }
            Event::Hello {
                session,
                core_options: hello.core_options,
                deferred: hello.deferred,
            }
        }
        Kind::Running(_) => Event::Running { session },
        Kind::CallBody(piece) => {
            pieces.add(&piece)?;
            return Ok(Next::Read);
        }
        Kind::HookCall(call) => Event::Hook {
            session,
            bodies: pieces.take(&call)?,
            call: Box::new(call),
        },
        Kind::Configure(configure) => Event::Configure {
            session,
            options: configure.options,
        },
        Kind::ControlResult(result) => Event::ControlResult { session, result },
        Kind::Done(_) if worker.ends_with_done() => Event::Done { session },
        Kind::Done(_) => {
            tracing::debug!(session, "the session ended with Done; the worker goes on");
            return Ok(Next::Close);
        }
    };
    worker.submit(event);
    Ok(Next::Read)
}
