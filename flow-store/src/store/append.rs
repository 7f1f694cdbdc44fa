//! How an Append stream becomes write batches: [`Assembler`] checks the head / body / end
//! order of each flow and turns it into [`WriteOp`]s (a body of at most [`INLINE_BODY_BYTES`]
//! is held until the end and goes into the flow's row, a larger one into chunks), and
//! [`flow_parts`] is the reverse, a whole flow as the parts of that stream.

use bytes::Bytes;
use flowtap_proto::v1::{BodyChunk, BodyKind, Flow, FlowPart, flow_part};

use crate::StoreError;
use crate::backend::{CHUNK_BYTES, FlowRow, INLINE_BODY_BYTES, WriteOp};

pub(super) fn part(kind: flow_part::Kind) -> FlowPart {
    FlowPart { kind: Some(kind) }
}

/// A whole flow as Append parts: the head (contents cleared, presence kept), the body chunks
/// of at most [`CHUNK_BYTES`], and the end.
pub fn flow_parts(mut flow: Flow) -> Vec<FlowPart> {
    let request = flow
        .request
        .as_mut()
        .and_then(|r| r.content.as_mut().map(std::mem::take));
    let response = flow
        .response
        .as_mut()
        .and_then(|r| r.content.as_mut().map(std::mem::take));
    let mut parts = vec![part(flow_part::Kind::Head(flow))];
    for (kind, body) in [(BodyKind::Request, request), (BodyKind::Response, response)] {
        let Some(body) = body else { continue };
        let mut offset = 0;
        while offset < body.len() {
            let end = (offset + CHUNK_BYTES).min(body.len());
            parts.push(part(flow_part::Kind::Body(BodyChunk {
                kind: kind as i32,
                data: body.slice(offset..end),
            })));
            offset = end;
        }
    }
    parts.push(part(flow_part::Kind::End(true)));
    parts
}

/// The flow being received and the write batch being built.
#[derive(Default)]
pub(super) struct Assembler {
    pub(super) pending: Option<Pending>,
    pub(super) batch: Vec<WriteOp>,
    pub(super) batch_flows: usize,
    pub(super) batch_bytes: usize,
    pub(super) stored: u64,
}

pub(super) struct Pending {
    pub(super) head: Flow,
    /// Per body (request, response): chunks written so far, bytes received, whether it is
    /// kept as chunks, and else what was received of it, for the row.
    parts: [u32; 2],
    sizes: [u64; 2],
    chunked: [bool; 2],
    held: [Vec<Bytes>; 2],
}

impl Pending {
    /// The bodies kept in the row: each present one that is not kept as chunks.
    fn inline_bodies(&mut self) -> [Option<Bytes>; 2] {
        let present = [
            self.head
                .request
                .as_ref()
                .is_some_and(|r| r.content.is_some()),
            self.head
                .response
                .as_ref()
                .is_some_and(|r| r.content.is_some()),
        ];
        [0, 1].map(|index| {
            let held = std::mem::take(&mut self.held[index]);
            (present[index] && !self.chunked[index]).then(|| match <[Bytes; 1]>::try_from(held) {
                Ok([whole]) => whole,
                Err(pieces) => pieces.concat().into(),
            })
        })
    }
}

/// Adds `data` to the batch as chunks of the pending flow's body.
fn push_chunks(
    batch: &mut Vec<WriteOp>,
    pending: &mut Pending,
    kind: BodyKind,
    index: usize,
    data: &Bytes,
) {
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + CHUNK_BYTES).min(data.len());
        batch.push(WriteOp::Chunk {
            id: pending.head.id.clone(),
            kind,
            part: pending.parts[index],
            data: data.slice(offset..end),
        });
        pending.parts[index] += 1;
        offset = end;
    }
}

impl Assembler {
    pub(super) fn push(&mut self, part: FlowPart) -> Result<(), StoreError> {
        match part.kind {
            Some(flow_part::Kind::Head(head)) => self.head(head),
            Some(flow_part::Kind::Body(chunk)) => self.body(&chunk),
            Some(flow_part::Kind::End(_)) => self.end(),
            None => Err(StoreError::Protocol("a part with no kind".into())),
        }
    }

    fn head(&mut self, mut head: Flow) -> Result<(), StoreError> {
        if let Some(pending) = &self.pending {
            return Err(StoreError::Protocol(format!(
                "a head arrived before the end of flow {}",
                pending.head.id
            )));
        }
        if head.id.is_empty() {
            return Err(StoreError::Protocol("a flow head without an id".into()));
        }
        // Bodies never travel in the head; content left in it is cleared, its presence kept.
        for content in [
            head.request.as_mut().map(|r| &mut r.content),
            head.response.as_mut().map(|r| &mut r.content),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(content) = content.as_mut() {
                *content = Bytes::new();
            }
        }
        self.batch.push(WriteOp::Begin {
            id: head.id.clone(),
        });
        self.pending = Some(Pending {
            head,
            parts: [0; 2],
            sizes: [0; 2],
            chunked: [false; 2],
            held: [Vec::new(), Vec::new()],
        });
        Ok(())
    }

    fn body(&mut self, chunk: &BodyChunk) -> Result<(), StoreError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(StoreError::Protocol("a body chunk outside a flow".into()));
        };
        let (kind, index) = match BodyKind::try_from(chunk.kind) {
            Ok(BodyKind::Request) => (BodyKind::Request, 0),
            Ok(BodyKind::Response) => (BodyKind::Response, 1),
            _ => {
                return Err(StoreError::Protocol(format!(
                    "flow {}: a body chunk of unknown kind {}",
                    pending.head.id, chunk.kind
                )));
            }
        };
        let content = match kind {
            BodyKind::Request => pending.head.request.as_mut().map(|r| &mut r.content),
            _ => pending.head.response.as_mut().map(|r| &mut r.content),
        };
        let Some(content) = content else {
            return Err(StoreError::Protocol(format!(
                "flow {}: a {} body chunk for a flow without one",
                pending.head.id,
                kind.as_str_name()
            )));
        };
        content.get_or_insert_with(Bytes::new);
        let size = pending.sizes[index] + chunk.data.len() as u64;
        if pending.chunked[index] || size > INLINE_BODY_BYTES as u64 {
            // Too large for the row: what was held so far becomes the first chunks.
            for held in std::mem::take(&mut pending.held[index]) {
                push_chunks(&mut self.batch, pending, kind, index, &held);
            }
            pending.chunked[index] = true;
            push_chunks(&mut self.batch, pending, kind, index, &chunk.data);
        } else {
            pending.held[index].push(chunk.data.clone());
        }
        pending.sizes[index] = size;
        self.batch_bytes += chunk.data.len();
        Ok(())
    }

    fn end(&mut self) -> Result<(), StoreError> {
        let Some(mut pending) = self.pending.take() else {
            return Err(StoreError::Protocol("an end outside a flow".into()));
        };
        let [request_size, response_size] = pending.sizes;
        let [request, response] = pending.inline_bodies();
        let row =
            FlowRow::new(&pending.head, request_size, response_size).with_bodies(request, response);
        self.batch_bytes += row.head.len();
        self.batch.push(WriteOp::Finish(Box::new(row)));
        self.batch_flows += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(request: usize, response: usize) -> Flow {
        Flow {
            id: "f".into(),
            request: Some(flowtap_proto::v1::Request {
                content: Some(vec![1; request].into()),
                ..Default::default()
            }),
            response: Some(flowtap_proto::v1::Response {
                content: Some(vec![2; response].into()),
                ..Default::default()
            }),
            ..Flow::default()
        }
    }

    fn assemble(flow: Flow) -> Vec<WriteOp> {
        let mut assembler = Assembler::default();
        for part in flow_parts(flow) {
            assembler.push(part).unwrap();
        }
        assembler.batch
    }

    #[test]
    fn small_bodies_go_into_the_row_and_large_ones_into_chunks() {
        let ops = assemble(flow(INLINE_BODY_BYTES, INLINE_BODY_BYTES + 1));
        let chunks: Vec<_> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Chunk { kind, data, .. } => Some((*kind, data.len())),
                _ => None,
            })
            .collect();
        assert_eq!(chunks, [(BodyKind::Response, INLINE_BODY_BYTES + 1)]);
        let Some(WriteOp::Finish(row)) = ops.last() else {
            panic!("the flow ends with its row: {ops:?}");
        };
        assert_eq!(
            row.request_body.as_ref().map(Bytes::len),
            Some(INLINE_BODY_BYTES)
        );
        assert_eq!(row.response_body, None);
        let limit = INLINE_BODY_BYTES as u64;
        assert_eq!((row.request_size, row.response_size), (limit, limit + 1));
    }
}
