//! br and zstd bodies through real scripts in the real `script-host` binary: the codecs built
//! into the worker decode them for `.text` and re-encode what a script assigns, with no Python
//! compression package involved. The test encodes and decodes with the Rust crates.

mod support;

use std::io::Read;

use bytes::Bytes;
use flowtap_proto::v1::{Flow, Hook, HookReply, Response, Verdict};
use support::{Host, header, header_value, http_flow, with_response};

const TEXT: &str = "hello from an encoded body; hello again. ";

/// Rewrites the text and records which Python compression packages got imported (none should).
const REWRITE_PY: &str = "\
import sys
def response(flow):
    flow.response.text = flow.response.text.replace('hello', 'goodbye')
    used = [m for m in ('brotli', 'zstandard') if m in sys.modules]
    flow.response.headers['x-python-packages'] = ','.join(used) or 'none'
";

/// Encodes or decodes a whole body.
type Codec = fn(&[u8]) -> Vec<u8>;

fn brotli_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams::default();
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).expect("brotli encodes");
    out
}

fn brotli_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

fn zstd_encode(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn zstd_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ruzstd::decoding::StreamingDecoder::new(data)
        .expect("a zstd frame")
        .read_to_end(&mut out)
        .expect("valid zstd");
    out
}

/// A flow whose 200 response carries `body` with `Content-Encoding: encoding`.
fn encoded_response(encoding: &str, body: Vec<u8>) -> Flow {
    let mut flow = with_response(http_flow("/"), "");
    let response = flow.response.as_mut().expect("a response");
    response.headers.push(header("Content-Encoding", encoding));
    response
        .headers
        .push(header("Content-Length", &body.len().to_string()));
    response.content = Some(Bytes::from(body));
    flow
}

fn response_of(reply: HookReply) -> Response {
    reply
        .flow
        .expect("a changed flow")
        .response
        .expect("a response")
}

#[tokio::test]
async fn br_and_zstd_text_is_decoded_rewritten_and_reencoded_the_same_way() {
    let host = Host::start(&[("rewrite.py", REWRITE_PY)]).await;
    let mut session = host.session().await;
    assert_eq!(session.hello(&[]).await.startup_error, "");

    let text = TEXT.repeat(200);
    let expected = text.replace("hello", "goodbye");
    let codecs: [(&str, Codec, Codec); 2] = [
        ("br", brotli_encode, brotli_decode),
        ("zstd", zstd_encode, zstd_decode),
    ];
    for (encoding, encode, decode) in codecs {
        let flow = encoded_response(encoding, encode(text.as_bytes()));
        let reply = session.call(Hook::Response, flow).await;
        assert_eq!(reply.verdict(), Verdict::Continue, "{encoding}");
        assert!(reply.errors.is_empty(), "{encoding}: {:?}", reply.errors);

        let response = response_of(reply);
        let body = response.content.expect("the rewritten body");
        assert_eq!(
            header_value(&response.headers, "content-encoding").as_deref(),
            Some(encoding)
        );
        assert_eq!(
            header_value(&response.headers, "content-length"),
            Some(body.len().to_string()),
            "{encoding}"
        );
        assert!(
            body.len() < expected.len() / 10,
            "{encoding} body compressed"
        );
        assert_eq!(String::from_utf8(decode(&body)).unwrap(), expected);
        assert_eq!(
            header_value(&response.headers, "x-python-packages").as_deref(),
            Some("none")
        );
    }
}

#[tokio::test]
async fn encode_switches_a_br_body_to_zstd() {
    let host = Host::start(&[(
        "switch.py",
        "def response(flow):\n    flow.response.encode('zstd')\n",
    )])
    .await;
    let mut session = host.session().await;
    session.hello(&[]).await;

    let text = TEXT.repeat(50);
    let flow = encoded_response("br", brotli_encode(text.as_bytes()));
    let response = response_of(session.call(Hook::Response, flow).await);
    assert_eq!(
        header_value(&response.headers, "content-encoding").as_deref(),
        Some("zstd")
    );
    let body = response.content.expect("the re-encoded body");
    assert_eq!(zstd_decode(&body), text.as_bytes());
}

#[tokio::test]
async fn corrupt_br_body_is_a_clear_value_error_and_the_flow_goes_on() {
    let host = Host::start(&[
        (
            "catch.py",
            "def response(flow):\n    try:\n        flow.response.text\n    except ValueError as e:\n        flow.response.headers['x-decode-error'] = str(e)\n",
        ),
        (
            "strict.py",
            "def response(flow):\n    flow.response.text = flow.response.text.upper()\n",
        ),
    ])
    .await;
    let mut session = host.session().await;
    session.hello(&[]).await;

    let corrupt = b"\x1bthis is not brotli".to_vec();
    let reply = session
        .call(Hook::Response, encoded_response("br", corrupt.clone()))
        .await;
    assert_eq!(reply.verdict(), Verdict::Continue);
    // The script that did not catch it fails with the same message; the chain went on.
    assert_eq!(reply.errors.len(), 1, "{:?}", reply.errors);
    let error = &reply.errors[0];
    assert!(error.script.ends_with("strict.py"), "{error:?}");
    assert!(
        error
            .traceback
            .contains("ValueError: br decoding failed: the body is not valid br data"),
        "{}",
        error.traceback
    );

    let response = response_of(reply);
    let message = header_value(&response.headers, "x-decode-error").expect("caught error");
    assert!(
        message.starts_with("br decoding failed: the body is not valid br data"),
        "{message}"
    );
    // The body is passed on as it came.
    assert!(
        response.content.is_none() || response.content.as_deref() == Some(&corrupt[..]),
        "{:?}",
        response.content
    );
    assert_eq!(
        header_value(&response.headers, "content-encoding").as_deref(),
        Some("br")
    );
}
