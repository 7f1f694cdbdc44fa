//! The sink's Append call, over flows it keeps.
//!
//! The generated client takes the `FlowPart`s of a call by value and encodes each as it is
//! sent, so a batch that the sink must still hold for the spool (should the call fail) would
//! have to be cloned flow by flow. Instead [`encode`] writes the heads of a batch once, into a
//! shared buffer, from the flows the sink keeps, and refers to their bodies; [`append`] hands
//! these parts to the stream through a codec that copies them out as they are sent. On the
//! wire they are the same `FlowPart` messages.

use bytes::{BufMut, Bytes, BytesMut};
use flowtap_grpc::Channel;
use flowtap_proto::v1::{AppendResult, BodyChunk, BodyKind, Flow, FlowPart, flow_part};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Request, Status};

use crate::StoreError;
use crate::backend::CHUNK_BYTES;
use crate::server::MAX_MESSAGE_BYTES;

/// One `FlowPart` of an Append call.
#[derive(Debug, Clone)]
pub(super) enum Part {
    /// A part encoded already (a head, an end).
    Encoded(Bytes),
    /// A body chunk, encoded as it is sent (the data is copied once, into the stream).
    Body(BodyChunk),
}

/// The parts of a batch: for each flow its head, body chunks and end.
pub(super) type Parts = Vec<Part>;

/// The encoded end part (field 3, `true`).
const END: &[u8] = &[0x18, 0x01];

/// Room taken at a time in the buffer the heads are encoded into.
const HEAD_BUFFER_BYTES: usize = 256 * 1024;

/// The Append parts of `flows`, as [`crate::flow_parts`] would make them. The flows are left
/// as they were (their bodies are taken out while the head is encoded).
pub(super) fn encode(flows: &mut [Flow]) -> Parts {
    let mut parts = Vec::with_capacity(flows.len() * 4);
    let mut buffer = BytesMut::new();
    for flow in flows {
        let request = take_body(flow.request.as_mut().map(|r| &mut r.content));
        let response = take_body(flow.response.as_mut().map(|r| &mut r.content));
        let head = part(flow_part::Kind::Head(std::mem::take(flow)));
        if buffer.capacity() < HEAD_BUFFER_BYTES / 4 {
            buffer.reserve(HEAD_BUFFER_BYTES);
        }
        // Grows the buffer if need be (a head larger than the room left).
        head.encode_raw(&mut buffer);
        parts.push(Part::Encoded(buffer.split().freeze()));
        let Some(flow_part::Kind::Head(head)) = head.kind else {
            unreachable!("the head part was made just above");
        };
        *flow = head;
        for (kind, body) in [
            (BodyKind::Request, &request),
            (BodyKind::Response, &response),
        ] {
            let Some(body) = body else { continue };
            for offset in (0..body.len()).step_by(CHUNK_BYTES) {
                parts.push(Part::Body(BodyChunk {
                    kind: kind as i32,
                    data: body.slice(offset..body.len().min(offset + CHUNK_BYTES)),
                }));
            }
        }
        parts.push(Part::Encoded(Bytes::from_static(END)));
        restore_body(flow.request.as_mut().map(|r| &mut r.content), request);
        restore_body(flow.response.as_mut().map(|r| &mut r.content), response);
    }
    parts
}

fn part(kind: flow_part::Kind) -> FlowPart {
    FlowPart { kind: Some(kind) }
}

/// Takes a present body out, leaving it present and empty (as a head carries it).
fn take_body(content: Option<&mut Option<Bytes>>) -> Option<Bytes> {
    content.and_then(|content| content.as_mut().map(std::mem::take))
}

fn restore_body(content: Option<&mut Option<Bytes>>, body: Option<Bytes>) {
    if let (Some(content), Some(body)) = (content, body) {
        *content = Some(body);
    }
}

/// Sends the parts as one Append call; returns how many flows the store reports stored.
pub(super) async fn append(channel: Channel, parts: Parts) -> Result<u64, StoreError> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    grpc.ready().await.map_err(|e| {
        Status::unavailable(format!(
            "flow store not ready: {}",
            flowtap_grpc::describe(&e)
        ))
    })?;
    let path = PathAndQuery::from_static("/flowtap.v1.FlowStore/Append");
    let request = Request::new(tokio_stream::iter(parts));
    let response = grpc.client_streaming(request, path, Encoded).await?;
    Ok(response.into_inner().stored)
}

/// Sends [`Part`]s; decodes the `AppendResult`.
#[derive(Debug, Clone, Copy, Default)]
struct Encoded;

/// Larger frames than tonic's default 32 KiB: an Append call is a bulk upload.
fn buffer_settings() -> BufferSettings {
    BufferSettings::new(64 * 1024, 256 * 1024)
}

impl Codec for Encoded {
    type Encode = Part;
    type Decode = AppendResult;
    type Encoder = Encoded;
    type Decoder = Encoded;

    fn encoder(&mut self) -> Encoded {
        Encoded
    }

    fn decoder(&mut self) -> Encoded {
        Encoded
    }
}

impl Encoder for Encoded {
    type Item = Part;
    type Error = Status;

    fn encode(&mut self, item: Part, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Part::Encoded(bytes) => dst.put(bytes),
            Part::Body(chunk) => {
                let data = chunk.data.clone();
                part(flow_part::Kind::Body(chunk)).encode_raw(dst);
                // Copied into the stream: a body held on disk gives its pages back.
                flowtap_flow::spill::release(&data);
            }
        }
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

impl Decoder for Encoded {
    type Item = AppendResult;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<AppendResult>, Status> {
        AppendResult::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding the Append result: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(id: &str, request: Option<&'static [u8]>, response: Option<usize>) -> Flow {
        Flow {
            id: id.into(),
            request: Some(flowtap_proto::v1::Request {
                content: request.map(Bytes::from_static),
                method: Bytes::from_static(b"POST"),
                ..Default::default()
            }),
            response: Some(flowtap_proto::v1::Response {
                content: response.map(|n| Bytes::from(vec![7; n])),
                status_code: 200,
                ..Default::default()
            }),
            ..Flow::default()
        }
    }

    #[test]
    fn parts_are_those_of_flow_parts_and_the_flows_are_kept() {
        let mut flows = vec![
            flow("a", Some(b"request"), Some(CHUNK_BYTES * 2 + 3)),
            flow("b", None, Some(0)),
        ];
        let kept = flows.clone();
        let parts = encode(&mut flows);
        assert_eq!(flows, kept, "the flows are left as they were");
        let expected: Vec<FlowPart> = kept.into_iter().flat_map(crate::flow_parts).collect();
        let decoded: Vec<FlowPart> = parts
            .into_iter()
            .map(|p| match p {
                Part::Encoded(bytes) => FlowPart::decode(bytes).unwrap(),
                Part::Body(chunk) => part(flow_part::Kind::Body(chunk)),
            })
            .collect();
        assert_eq!(decoded, expected);
    }
}
