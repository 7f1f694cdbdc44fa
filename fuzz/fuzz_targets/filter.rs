//! Fuzz target: the filter-expression parser (`Filter::parse`, what flow-store's Query, Watch,
//! Delete and Export and the cli's `--filter` take from users).
//!
//! What must hold for any UTF-8 input, with case-insensitive and case-sensitive options: no
//! panic; an accepted filter, written back as filter text from its tree (`render` below,
//! minimal parentheses, every regex quoted), parses again to a filter with the same
//! description (`to_string()`, mitmproxy's `str(filter)`, which shows the whole tree); and it
//! can be matched against the flows of the repository's own fixture files.
#![no_main]

use std::sync::OnceLock;

use flowtap_flow::Filter;
use flowtap_flow::filter::{Expr, FilterOptions, Flag, RegexOp};
use flowtap_flow::flowfile::read_flows;
use flowtap_proto::v1::Flow;
use libfuzzer_sys::fuzz_target;

/// Recorded flows of every type (HTTP, HTTPS, error, WebSocket, TCP, DNS, marked, replayed).
const FIXTURES: &[&[u8]] = &[
    include_bytes!("../../fixtures/mitmproxy-12/all-mixed.mitm"),
    include_bytes!("../../fixtures/mitmproxy-12/http-post-body.mitm"),
    include_bytes!("../../fixtures/mitmproxy-12/http-post-body.client-replayed.mitm"),
    include_bytes!("../../fixtures/mitmproxy-12/reply-and-kill.mitm"),
    include_bytes!("../../fixtures/mitmproxy-12/script-modified.mitm"),
];

fn flows() -> &'static [Flow] {
    static FLOWS: OnceLock<Vec<Flow>> = OnceLock::new();
    FLOWS.get_or_init(|| {
        FIXTURES
            .iter()
            .flat_map(|data| read_flows(data).expect("the fixtures read"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for case_sensitive in [false, true] {
        let options = FilterOptions { case_sensitive };
        let Ok(filter) = Filter::parse_with(text, options) else {
            continue;
        };
        let description = filter.to_string();
        let rendered = render_top(filter.expr());
        match Filter::parse_with(&rendered, options) {
            Ok(again) => assert_eq!(
                again.to_string(),
                description,
                "{text:?} written back as {rendered:?} parses to another filter"
            ),
            Err(e) => panic!("{text:?} written back as {rendered:?} does not parse: {e}"),
        }
        for flow in flows() {
            let _ = filter.matches(flow);
        }
    }
});

/// The top level: `a b` (atoms side by side) is an implicit "and" of "or" expressions.
fn render_top(expr: &Expr) -> String {
    match expr {
        Expr::And(items) => items.iter().map(render_or).collect::<Vec<_>>().join(" "),
        other => render_or(other),
    }
}

fn render_or(expr: &Expr) -> String {
    match expr {
        Expr::Or(items) => items.iter().map(render_and).collect::<Vec<_>>().join(" | "),
        other => render_and(other),
    }
}

fn render_and(expr: &Expr) -> String {
    match expr {
        Expr::And(items) => items.iter().map(render_not).collect::<Vec<_>>().join(" & "),
        other => render_not(other),
    }
}

/// An operand of `!`, `&` or `|`; an operator code must be followed by white space.
fn render_not(expr: &Expr) -> String {
    match expr {
        Expr::Not(inner) => format!("!{}", render_not(inner)),
        Expr::And(_) | Expr::Or(_) => format!("( {} )", render_or(expr)),
        Expr::Flag(flag) => format!("~{}", flag_code(*flag)),
        Expr::Code(code) => format!("~c {code}"),
        Expr::Regex(op, pattern) => format!("~{} {}", regex_code(*op), quote(pattern.source())),
    }
}

/// A double-quoted string the parser reads back as `text` (`\` escapes; a raw newline would
/// end the string).
fn quote(text: &str) -> String {
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn flag_code(flag: Flag) -> &'static str {
    match flag {
        Flag::Asset => "a",
        Flag::Error => "e",
        Flag::Http => "http",
        Flag::Marked => "marked",
        Flag::Replay => "replay",
        Flag::ReplayClient => "replayq",
        Flag::ReplayServer => "replays",
        Flag::Request => "q",
        Flag::Response => "s",
        Flag::Tcp => "tcp",
        Flag::Udp => "udp",
        Flag::Dns => "dns",
        Flag::WebSocket => "websocket",
        Flag::All => "all",
    }
}

fn regex_code(op: RegexOp) -> &'static str {
    match op {
        RegexOp::Body => "b",
        RegexOp::BodyRequest => "bq",
        RegexOp::BodyResponse => "bs",
        RegexOp::ContentType => "t",
        RegexOp::ContentTypeRequest => "tq",
        RegexOp::ContentTypeResponse => "ts",
        RegexOp::Domain => "d",
        RegexOp::Dst => "dst",
        RegexOp::Header => "h",
        RegexOp::HeaderRequest => "hq",
        RegexOp::HeaderResponse => "hs",
        RegexOp::Method => "m",
        RegexOp::Src => "src",
        RegexOp::Url => "u",
        RegexOp::Meta => "meta",
        RegexOp::Marker => "marker",
        RegexOp::Comment => "comment",
    }
}
