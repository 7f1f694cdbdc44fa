//! The `ScriptHost` gRPC service: one `Session` stream per connected core.
//!
//! Inbound messages become [`Event`]s for the Python runtime; the runtime's messages come back on
//! the session's own channel, which is the response stream. A Hello with another protocol
//! version ends the stream with `FAILED_PRECONDITION`.

use std::pin::Pin;
use std::sync::Arc;

use flowtap_proto::v1::{
    CoreMessage, ProtocolVersion, WorkerMessage, core_message, script_host_server::ScriptHost,
    script_host_server::ScriptHostServer,
};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::worker::{Event, Worker};

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
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024)
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
        let (session, rx) = self.worker.open_session();
        let worker = Arc::clone(&self.worker);
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(message)) => {
                        if let Err(status) = dispatch(&worker, session, message) {
                            worker.send_status(session, status);
                            break;
                        }
                    }
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

fn dispatch(worker: &Worker, session: u64, message: CoreMessage) -> Result<(), Status> {
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
        Kind::HookCall(call) => Event::Hook {
            session,
            call: Box::new(call),
        },
        Kind::Configure(configure) => Event::Configure {
            session,
            options: configure.options,
        },
        Kind::ControlResult(result) => Event::ControlResult { session, result },
        Kind::Done(_) => Event::Done { session },
    };
    worker.submit(event);
    Ok(())
}
