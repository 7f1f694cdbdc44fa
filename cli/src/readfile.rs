//! `-r FILE`: flows read from a file go through the scripts in mitmproxy's event order
//! (spec section 8), one at a time in file order, and then to the sinks (`-w`, the output).
//!
//! Per flow, HTTP: `requestheaders`, `request`, then `responseheaders`, `response` if there is a
//! response, then `websocket_start`, one `websocket_message` per message, `websocket_end` if
//! it was a WebSocket, else `error` if it failed. TCP: `tcp_start`, one `tcp_message` per
//! message, then `tcp_error` or `tcp_end`; UDP the same with `udp_*`. DNS: `dns_request`, `dns_response`, `dns_error`.
//! Message lists are emptied and refilled one message per hook, so the current message is
//! always the last, as it is live.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::Context;
use flowtap_flow::{Filter, FlowReader};
use flowtap_proto::v1::Flow;
use flowtap_proxy_core::hooks::Hook;
use flowtap_proxy_core::{FlowSink, Hooks};

/// What reading a file came to.
pub(crate) struct ReadSummary {
    pub(crate) loaded: usize,
    /// The file was cut short or corrupt here; the flows before it were processed.
    pub(crate) error: Option<String>,
}

/// Reads `path` (`-` for stdin), replaying each flow matching `filter` through `hooks`, then
/// handing it to `sink`.
pub(crate) async fn read_file(
    path: &Path,
    filter: Option<&Filter>,
    hooks: &dyn Hooks,
    sink: &dyn FlowSink,
) -> anyhow::Result<ReadSummary> {
    let input: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("opening flow file {}", path.display()))?)
    };
    let mut reader = FlowReader::new(BufReader::new(input));
    let mut loaded = 0;
    let mut error = None;
    // Reading is blocking but short per flow; a file is read by one task in order anyway.
    for item in reader.by_ref() {
        match item {
            Ok(mut flow) => {
                loaded += 1;
                if filter.is_some_and(|f| !f.matches(&flow)) {
                    continue;
                }
                flow.live = false;
                replay_events(hooks, &mut flow).await;
                sink.flow_finished(&flow);
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(ReadSummary { loaded, error })
}

/// Fires the hooks mitmproxy fires for a flow loaded from a file.
pub(crate) async fn replay_events(hooks: &dyn Hooks, flow: &mut Flow) {
    let call = async |hook: Hook, flow: &mut Flow| {
        if hooks.interest().wants(hook) {
            hooks.call(hook, flow).await;
        }
    };
    match flow.r#type.as_str() {
        "http" => {
            if flow.request.is_some() {
                call(Hook::Requestheaders, flow).await;
                call(Hook::Request, flow).await;
            }
            if flow.response.is_some() {
                call(Hook::Responseheaders, flow).await;
                call(Hook::Response, flow).await;
            }
            if let Some(mut websocket) = flow.websocket.take() {
                let messages = std::mem::take(&mut websocket.messages);
                flow.websocket = Some(websocket);
                call(Hook::WebsocketStart, flow).await;
                for message in messages {
                    if let Some(ws) = flow.websocket.as_mut() {
                        ws.messages.push(message);
                    }
                    call(Hook::WebsocketMessage, flow).await;
                }
                call(Hook::WebsocketEnd, flow).await;
            } else if flow.error.is_some() {
                call(Hook::Error, flow).await;
            }
        }
        "tcp" | "udp" => {
            let [start, each, end, error] = if flow.r#type == "tcp" {
                [
                    Hook::TcpStart,
                    Hook::TcpMessage,
                    Hook::TcpEnd,
                    Hook::TcpError,
                ]
            } else {
                [
                    Hook::UdpStart,
                    Hook::UdpMessage,
                    Hook::UdpEnd,
                    Hook::UdpError,
                ]
            };
            let messages = std::mem::take(&mut flow.messages);
            call(start, flow).await;
            for message in messages {
                flow.messages.push(message);
                call(each, flow).await;
            }
            let last = if flow.error.is_some() { error } else { end };
            call(last, flow).await;
        }
        "dns" => {
            call(Hook::DnsRequest, flow).await;
            if flow.dns_response.is_some() {
                call(Hook::DnsResponse, flow).await;
            }
            if flow.error.is_some() {
                call(Hook::DnsError, flow).await;
            }
        }
        _ => {}
    }
}
