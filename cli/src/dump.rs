//! mitmdump's output: one line per finished flow, more with a higher `--flow-detail`.
//!
//! ```text
//! 127.0.0.1:52044: GET https://example.com/ HTTP/2.0 << 200 OK 1.2k
//! ```

use std::io::Write;

use flowtap_proto::v1::{Flow, Header};
use flowtap_proxy_core::FlowSink;

/// Prints flows to stdout.
pub(crate) struct Dumper {
    /// 0: nothing; 1: one line; 2: plus headers; 3: plus bodies cut at 512 lines; 4: whole.
    pub(crate) detail: u8,
}

impl FlowSink for Dumper {
    fn needs_bodies(&self) -> bool {
        self.detail >= 3
    }

    fn flow_finished(&self, flow: &Flow) {
        if self.detail == 0 {
            return;
        }
        let text = render(flow, self.detail);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// The text printed for one flow.
pub(crate) fn render(flow: &Flow, detail: u8) -> String {
    let Some(request) = &flow.request else { return String::new() };
    let client = flow
        .client_conn
        .as_ref()
        .and_then(|c| c.peername.as_ref())
        .map(|a| format!("{}:{}", a.host, a.port))
        .unwrap_or_default();
    let mut line = format!(
        "{client}: {} {} {}",
        String::from_utf8_lossy(&request.method),
        url(request),
        String::from_utf8_lossy(&request.http_version)
    );
    if detail >= 2 {
        line.push('\n');
        push_headers(&mut line, &request.headers);
        push_body(&mut line, request.content.as_deref(), detail);
    }
    match (&flow.response, &flow.error) {
        (Some(response), _) => {
            let size = response.content.as_ref().map(|c| c.len()).unwrap_or(0);
            let sep = if detail >= 2 { "\n    " } else { " " };
            line.push_str(&format!(
                "{sep}<< {} {} {}",
                response.status_code,
                String::from_utf8_lossy(&response.reason),
                pretty_size(size as u64)
            ));
            if detail >= 2 {
                line.push('\n');
                push_headers(&mut line, &response.headers);
                push_body(&mut line, response.content.as_deref(), detail);
            }
        }
        (None, Some(error)) => line.push_str(&format!(" << {}", error.msg)),
        (None, None) => {}
    }
    line.push('\n');
    line
}

/// The request URL as mitmproxy prints it: the port only when not the scheme's default.
fn url(request: &flowtap_proto::v1::Request) -> String {
    let scheme = String::from_utf8_lossy(&request.scheme);
    let default = if scheme == "https" { 443 } else { 80 };
    let host = if request.host.contains(':') { format!("[{}]", request.host) } else { request.host.clone() };
    let port = if request.port == default { String::new() } else { format!(":{}", request.port) };
    format!("{scheme}://{host}{port}{}", String::from_utf8_lossy(&request.path))
}

fn push_headers(out: &mut String, headers: &[Header]) {
    for h in headers {
        out.push_str(&format!(
            "    {}: {}\n",
            String::from_utf8_lossy(&h.name),
            String::from_utf8_lossy(&h.value)
        ));
    }
}

fn push_body(out: &mut String, content: Option<&[u8]>, detail: u8) {
    let Some(content) = content.filter(|c| !c.is_empty() && detail >= 3) else { return };
    let text = String::from_utf8_lossy(content);
    let limit = if detail >= 4 { usize::MAX } else { 512 };
    for line in text.lines().take(limit) {
        out.push_str(&format!("    {line}\n"));
    }
}

/// mitmproxy's `human.pretty_size`: 24b, 1.21k, 3m.
pub(crate) fn pretty_size(size: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("b", 1 << 10), ("k", 1 << 20), ("m", 1 << 30), ("g", 1 << 40)];
    for (suffix, limit) in UNITS {
        if size >= limit {
            continue;
        }
        let value = size as f64 / (limit / 1024) as f64;
        let rounded = (value * 100.0).round() / 100.0;
        return if rounded.fract() == 0.0 {
            format!("{}{suffix}", rounded as u64)
        } else {
            format!("{rounded}{suffix}")
        };
    }
    format!("{size}b")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_mitmproxy() {
        assert_eq!(pretty_size(24), "24b");
        assert_eq!(pretty_size(1234), "1.21k");
        assert_eq!(pretty_size(2048), "2k");
        assert_eq!(pretty_size(3 << 20), "3m");
    }
}
