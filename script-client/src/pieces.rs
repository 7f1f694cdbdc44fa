//! Hook-call bodies too large to travel inside their call: sent before it as `CallBody`
//! pieces, so that neither the proxy nor the worker holds a second copy of a large body to
//! encode or decode one message (see `CallBody` in script.proto).

use bytes::Bytes;
use flowtap_proto::v1::{BodyKind, CallBody, CoreMessage, HookCall, core_message};

/// Bodies larger than this go in pieces; it is also the size of a piece.
pub(crate) const PIECE_BYTES: usize = 1024 * 1024;

/// Takes the bodies that go in pieces out of `call`'s flow, listing them in the call's
/// `chunked_bodies`.
pub(crate) fn take_large(call: &mut HookCall) -> Vec<(BodyKind, Bytes)> {
    let Some(flow) = call.flow.as_mut() else {
        return Vec::new();
    };
    let request = flow.request.as_mut().map(|r| &mut r.content);
    let response = flow.response.as_mut().map(|r| &mut r.content);
    let mut large = Vec::new();
    for (kind, content) in [(BodyKind::Request, request), (BodyKind::Response, response)] {
        if let Some(content) = content
            && content.as_ref().is_some_and(|c| c.len() > PIECE_BYTES)
            && let Some(body) = content.take()
        {
            call.chunked_bodies.push(kind as i32);
            large.push((kind, body));
        }
    }
    large
}

/// The `CallBody` messages of call `call_id` for `bodies`, in order.
pub(crate) fn messages(
    call_id: u64,
    bodies: Vec<(BodyKind, Bytes)>,
) -> impl Iterator<Item = CoreMessage> {
    bodies.into_iter().flat_map(move |(kind, body)| {
        let total = body.len() as u64;
        flowtap_flow::spill::slices(&body)
            .map(|data| CoreMessage {
                kind: Some(core_message::Kind::CallBody(CallBody {
                    call_id,
                    kind: kind as i32,
                    total,
                    data,
                })),
            })
            .collect::<Vec<_>>()
    })
}

/// The data of a `CallBody` message, whose pages the outbound stream gives back once the
/// message is encoded (see `flowtap_flow::spill::release`).
pub(crate) fn data_of(message: &CoreMessage) -> Option<Bytes> {
    match &message.kind {
        Some(core_message::Kind::CallBody(piece)) => Some(piece.data.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtap_proto::v1::{Flow, Request, Response};

    #[test]
    fn only_large_bodies_go_in_pieces_and_they_add_up() {
        let large = Bytes::from(vec![3u8; PIECE_BYTES * 2 + 5]);
        let mut call = HookCall {
            flow: Some(Flow {
                request: Some(Request {
                    content: Some(Bytes::from_static(b"small")),
                    ..Request::default()
                }),
                response: Some(Response {
                    content: Some(large.clone()),
                    ..Response::default()
                }),
                ..Flow::default()
            }),
            ..HookCall::default()
        };
        let bodies = take_large(&mut call);
        let flow = call.flow.as_ref().unwrap();
        assert_eq!(
            flow.request.as_ref().unwrap().content.as_deref(),
            Some(&b"small"[..])
        );
        assert_eq!(flow.response.as_ref().unwrap().content, None);
        assert_eq!(call.chunked_bodies, vec![BodyKind::Response as i32]);
        let pieces: Vec<CallBody> = messages(7, bodies)
            .map(|m| match m.kind {
                Some(core_message::Kind::CallBody(b)) => b,
                other => panic!("not a piece: {other:?}"),
            })
            .collect();
        assert_eq!(pieces.len(), 3);
        assert!(
            pieces
                .iter()
                .all(|p| p.call_id == 7 && p.total == large.len() as u64)
        );
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.data.to_vec()).collect();
        assert_eq!(joined, large.to_vec());
    }
}
