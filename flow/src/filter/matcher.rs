//! Evaluating a filter against a flow, operator by operator as `mitmproxy.flowfilter` does.

use flowtap_proto::v1::{Flow, Header};

use super::pyrepr;
use super::{Expr, Flag, Pattern, RegexOp};
use crate::model::{RequestExt, ResponseExt, headers_bytes};

const ASSET_TYPES: &[&str] = &[
    "text/javascript",
    "application/x-javascript",
    "application/javascript",
    "text/css",
    "image/.*",
    "font/.*",
    "application/font.*",
];

pub(super) fn matches(expr: &Expr, flow: &Flow) -> bool {
    match expr {
        Expr::Not(inner) => !matches(inner, flow),
        Expr::And(items) => items.iter().all(|e| matches(e, flow)),
        Expr::Or(items) => items.iter().any(|e| matches(e, flow)),
        Expr::Flag(flag) => flag_matches(*flag, flow),
        Expr::Code(code) => {
            is(flow, "http")
                && flow
                    .response
                    .as_ref()
                    .is_some_and(|r| u64::from(r.status_code) == *code)
        }
        Expr::Regex(op, pattern) => regex_matches(*op, pattern, flow),
    }
}

fn is(flow: &Flow, flow_type: &str) -> bool {
    flow.r#type == flow_type
}

fn is_tcp_or_udp(flow: &Flow) -> bool {
    is(flow, "tcp") || is(flow, "udp")
}

fn has_response(flow: &Flow) -> bool {
    match flow.r#type.as_str() {
        "http" => flow.response.is_some(),
        "dns" => flow.dns_response.is_some(),
        _ => false,
    }
}

fn flag_matches(flag: Flag, flow: &Flow) -> bool {
    let http_or_dns = is(flow, "http") || is(flow, "dns");
    match flag {
        Flag::All => true,
        Flag::Error => flow.error.is_some(),
        Flag::Marked => !flow.marked.is_empty(),
        Flag::Http => is(flow, "http"),
        Flag::Tcp => is(flow, "tcp"),
        Flag::Udp => is(flow, "udp"),
        Flag::Dns => is(flow, "dns"),
        Flag::WebSocket => is(flow, "http") && flow.websocket.is_some(),
        Flag::Request => http_or_dns && !has_response(flow),
        Flag::Response => http_or_dns && has_response(flow),
        Flag::Replay => flow.is_replay.is_some(),
        Flag::ReplayClient => flow.is_replay.as_deref() == Some("request"),
        Flag::ReplayServer => flow.is_replay.as_deref() == Some("response"),
        Flag::Asset => {
            is(flow, "http")
                && flow.response.as_ref().is_some_and(|r| {
                    ASSET_TYPES.iter().any(|t| {
                        // mitmproxy compiles these without IGNORECASE.
                        regex::bytes::Regex::new(t)
                            .is_ok_and(|re| content_type_matches(&r.headers, |v| re.is_match(v)))
                    })
                })
        }
    }
}

fn content_type_matches(headers: &[Header], mut test: impl FnMut(&[u8]) -> bool) -> bool {
    headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case(b"content-type") && test(&h.value))
}

fn regex_matches(op: RegexOp, p: &Pattern, flow: &Flow) -> bool {
    match op {
        RegexOp::Body | RegexOp::BodyRequest | RegexOp::BodyResponse => body_matches(op, p, flow),
        RegexOp::ContentType | RegexOp::ContentTypeRequest | RegexOp::ContentTypeResponse => {
            if !is(flow, "http") {
                return false;
            }
            let ct = |headers: &[Header]| content_type_matches(headers, |v| p.is_match_bytes(v));
            let request = op != RegexOp::ContentTypeResponse
                && flow.request.as_ref().is_some_and(|r| ct(&r.headers));
            let response = op != RegexOp::ContentTypeRequest
                && flow.response.as_ref().is_some_and(|r| ct(&r.headers));
            request || response
        }
        RegexOp::Header | RegexOp::HeaderRequest | RegexOp::HeaderResponse => {
            if !is(flow, "http") {
                return false;
            }
            let request = op != RegexOp::HeaderResponse
                && flow
                    .request
                    .as_ref()
                    .is_some_and(|r| p.is_match_bytes(&headers_bytes(&r.headers)));
            let response = op != RegexOp::HeaderRequest
                && flow
                    .response
                    .as_ref()
                    .is_some_and(|r| p.is_match_bytes(&headers_bytes(&r.headers)));
            request || response
        }
        RegexOp::Method => {
            is(flow, "http")
                && flow
                    .request
                    .as_ref()
                    .is_some_and(|r| p.is_match_bytes(&r.method))
        }
        RegexOp::Domain => {
            is(flow, "http")
                && flow
                    .request
                    .as_ref()
                    .is_some_and(|r| p.is_match_str(&r.host) || p.is_match_str(&r.pretty_host()))
        }
        RegexOp::Url => match flow.r#type.as_str() {
            "http" => flow
                .request
                .as_ref()
                .is_some_and(|r| p.is_match_str(&r.pretty_url())),
            "dns" => flow
                .dns_request
                .as_ref()
                .and_then(|r| r.questions.first())
                .is_some_and(|q| p.is_match_str(&q.name)),
            _ => false,
        },
        RegexOp::Src => flow
            .client_conn
            .as_ref()
            .and_then(|c| c.peername.as_ref())
            .is_some_and(|a| p.is_match_str(&format!("{}:{}", a.host, a.port))),
        RegexOp::Dst => flow
            .server_conn
            .as_ref()
            .and_then(|c| c.address.as_ref())
            .is_some_and(|a| p.is_match_str(&format!("{}:{}", a.host, a.port))),
        RegexOp::Meta => p.is_match_str(&pyrepr::metadata_lines(flow.metadata.as_ref())),
        RegexOp::Marker => p.is_match_str(&flow.marked),
        RegexOp::Comment => p.is_match_str(&flow.comment),
    }
}

fn body_matches(op: RegexOp, p: &Pattern, flow: &Flow) -> bool {
    let want_request = op != RegexOp::BodyResponse;
    let want_response = op != RegexOp::BodyRequest;
    let side = |from_client: bool| {
        if from_client {
            want_request
        } else {
            want_response
        }
    };
    match flow.r#type.as_str() {
        "http" => {
            let request = want_request
                && flow
                    .request
                    .as_ref()
                    .and_then(|r| r.decoded_content())
                    .is_some_and(|c| p.is_match_bytes(&c));
            let response = want_response
                && flow
                    .response
                    .as_ref()
                    .and_then(|r| r.decoded_content())
                    .is_some_and(|c| p.is_match_bytes(&c));
            let websocket = flow.websocket.as_ref().is_some_and(|ws| {
                ws.messages
                    .iter()
                    .any(|m| side(m.from_client) && p.is_match_bytes(&m.content))
            });
            request || response || websocket
        }
        _ if is_tcp_or_udp(flow) => flow
            .messages
            .iter()
            .any(|m| side(m.from_client) && p.is_match_bytes(&m.content)),
        "dns" => {
            let test = |m: Option<&flowtap_proto::v1::DnsMessage>| {
                m.is_some_and(|m| p.is_match_bytes(pyrepr::dns_message_text(m).as_bytes()))
            };
            (want_request && test(flow.dns_request.as_ref()))
                || (want_response && test(flow.dns_response.as_ref()))
        }
        _ => false,
    }
}
