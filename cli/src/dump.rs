//! mitmdump's output: one line per finished flow, more with a higher `--flow-detail`.
//!
//! ```text
//! 127.0.0.1:52044: GET https://example.com/ HTTP/2.0 << 200 OK 1.2k
//! ```

use std::io::Write;

use flowtap_flow::model::{FlowExt, ResponseExt, pretty_size};
use flowtap_proto::v1::{Flow, Header, Response};
use flowtap_proxy_core::FlowSink;

/// Prints flows to stdout.
pub(crate) struct Dumper {
    /// 0: nothing; 1: one line; 2: plus headers; 3: plus bodies cut at 512 lines; 4: whole.
    pub(crate) detail: u8,
    /// `showhost`: URLs with the `Host` header's host (`pretty_url`), else the request's.
    pub(crate) showhost: bool,
}

impl FlowSink for Dumper {
    fn needs_bodies(&self) -> bool {
        self.detail >= 3
    }

    fn flow_finished(&self, flow: &Flow) {
        if self.detail == 0 {
            return;
        }
        let text = render_with(flow, self.detail, self.showhost);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// The text printed for one flow.
#[cfg(test)]
pub(crate) fn render(flow: &Flow, detail: u8) -> String {
    render_with(flow, detail, false)
}

/// The text printed for one flow, the URL as `showhost` says.
pub(crate) fn render_with(flow: &Flow, detail: u8, showhost: bool) -> String {
    let Some(request) = &flow.request else {
        return String::new();
    };
    let Some(mut request_line) = flow.request_line() else {
        return String::new();
    };
    if showhost {
        use flowtap_flow::RequestExt as _;
        request_line = format!(
            "{} {}",
            String::from_utf8_lossy(&request.method),
            request.pretty_url()
        );
    }
    let mut line = format!(
        "{}: {request_line} {}",
        flow.client_label(),
        String::from_utf8_lossy(&request.http_version)
    );
    if detail >= 2 {
        line.push('\n');
        push_headers(&mut line, &request.headers);
        push_body(&mut line, request.content.as_deref(), detail);
    }
    match (&flow.response, &flow.error) {
        (Some(response), _) => {
            let sep = if detail >= 2 { "\n    " } else { " " };
            line.push_str(&format!(
                "{sep}<< {} {} {}",
                response.status_code,
                String::from_utf8_lossy(&response.reason),
                body_size(response)
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

/// The body size: of the stored body, or as announced when the body was streamed.
fn body_size(response: &Response) -> String {
    let size = match &response.content {
        Some(content) => Some(content.len() as u64),
        None => response
            .header("content-length")
            .and_then(|l| l.trim().parse().ok()),
    };
    size.map(pretty_size)
        .unwrap_or_else(|| "(content missing)".into())
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
    let Some(content) = content.filter(|c| !c.is_empty() && detail >= 3) else {
        return;
    };
    let text = String::from_utf8_lossy(content);
    let limit = if detail >= 4 { usize::MAX } else { 512 };
    for line in text.lines().take(limit) {
        out.push_str(&format!("    {line}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtap_flow::FlowReader;

    fn fixture(name: &str) -> Vec<Flow> {
        let path = format!(
            "{}/../fixtures/mitmproxy-12/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let (flows, error) =
            FlowReader::new(std::fs::File::open(path).expect("fixture")).read_all();
        assert!(error.is_none());
        flows
    }

    #[test]
    fn one_line_like_mitmdump() {
        let flows = fixture("http-get-200.mitm");
        assert_eq!(
            render(&flows[0], 1),
            "127.0.0.1:59220: GET http://127.0.0.1:18081/hello.txt HTTP/1.1 << 200 OK 24b\n"
        );
        let refused = fixture("http-conn-refused.mitm");
        assert!(render(&refused[0], 1).contains(" << [Errno 111] Connect call failed"));
    }

    #[test]
    fn streamed_body_size_comes_from_content_length() {
        let mut flow = fixture("http-get-200.mitm").remove(0);
        flow.response.as_mut().expect("a response").content = None;
        assert!(render(&flow, 1).ends_with("<< 200 OK 24b\n"));
    }

    #[test]
    fn detail_two_shows_headers() {
        let flows = fixture("http-get-200.mitm");
        let text = render(&flows[0], 2);
        assert!(text.contains("    User-Agent: curl/7.88.1\n"));
        assert!(text.contains("    Content-Length: 24\n"));
    }
}
