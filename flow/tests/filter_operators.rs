//! One test per filter operator over the mitmdump fixtures, then precedence, grouping and
//! parse errors. The same expressions are cross-checked against mitmproxy itself in
//! `mitmproxy_roundtrip.rs`.

mod support;

use std::io::Write;

use bytes::Bytes;
use flowtap_flow::{Filter, FilterError, filter::FilterOptions};
use flowtap_proto::v1::{Flow, Header};
use support::load;

/// Named flows: one of each kind the fixtures hold.
fn flows() -> Vec<(&'static str, Flow)> {
    let mut reply_and_kill = load("reply-and-kill.mitm");
    let killed = reply_and_kill.pop().unwrap();
    let reply = reply_and_kill.pop().unwrap();
    vec![
        ("get200", load("http-get-200.mitm").remove(0)),
        ("get404", load("http-get-404.mitm").remove(0)),
        ("post", load("http-post-body.mitm").remove(0)),
        ("https", load("https-get.mitm").remove(0)),
        ("refused", load("http-conn-refused.mitm").remove(0)),
        ("ws", load("websocket.mitm").remove(0)),
        ("tcp", load("tcp-raw.mitm").remove(0)),
        ("dns", load("dns-query.mitm").remove(0)),
        ("scripted", load("script-modified.mitm").remove(0)),
        (
            "replayed",
            load("http-post-body.client-replayed.mitm").remove(0),
        ),
        ("reply", reply),
        ("killed", killed),
    ]
}

fn matching(expr: &str) -> Vec<&'static str> {
    let filter = Filter::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
    flows()
        .into_iter()
        .filter(|(_, f)| filter.matches(f))
        .map(|(name, _)| name)
        .collect()
}

const HTTP: [&str; 10] = [
    "get200", "get404", "post", "https", "refused", "ws", "scripted", "replayed", "reply", "killed",
];

#[test]
fn all() {
    assert_eq!(matching("~all").len(), 12);
}

#[test]
fn asset() {
    assert!(matching("~a").is_empty());
    let mut flow = load("http-get-200.mitm").remove(0);
    flow.response.as_mut().unwrap().headers.push(Header {
        name: Bytes::from_static(b"content-type"),
        value: Bytes::from_static(b"image/png"),
    });
    assert!(Filter::parse("~a").unwrap().matches(&flow));
}

#[test]
fn error() {
    assert_eq!(matching("~e"), ["refused", "killed"]);
}

#[test]
fn flow_types() {
    assert_eq!(matching("~http"), HTTP);
    assert_eq!(matching("~tcp"), ["tcp"]);
    assert!(matching("~udp").is_empty());
    assert_eq!(matching("~dns"), ["dns"]);
    assert_eq!(matching("~websocket"), ["ws"]);
}

#[test]
fn marked_and_marker() {
    assert_eq!(matching("~marked"), ["scripted"]);
    assert_eq!(matching("~marker star"), ["scripted"]);
    assert!(matching("~marker default").is_empty());
}

#[test]
fn replays() {
    assert_eq!(matching("~replay"), ["replayed"]);
    assert_eq!(matching("~replayq"), ["replayed"]);
    assert!(matching("~replays").is_empty());
}

#[test]
fn request_and_response() {
    assert_eq!(matching("~q"), ["refused", "killed"]);
    assert_eq!(matching("~s").len(), 9);
    assert!(!matching("!~s").contains(&"get200"));
    assert!(
        matching("!~s").contains(&"tcp"),
        "type-restricted operators are false for tcp"
    );
}

#[test]
fn body() {
    assert_eq!(matching("~b ECHO"), ["ws", "tcp"]);
    assert_eq!(matching("~b 'hello from'"), ["get200", "scripted"]);
    assert_eq!(matching("~bq mitm"), ["post", "replayed"]);
    assert_eq!(matching("~bs echo"), ["ws", "tcp"]);
    assert_eq!(matching("~bq 'second line'"), ["tcp"]);
    assert_eq!(matching("~bs 127.0.0.1"), ["dns"]);
}

#[test]
fn body_is_content_decoded() {
    let mut flow = load("http-get-200.mitm").remove(0);
    let response = flow.response.as_mut().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"compressed secret").unwrap();
    response.content = Some(Bytes::from(gz.finish().unwrap()));
    response.headers.push(Header {
        name: Bytes::from_static(b"Content-Encoding"),
        value: Bytes::from_static(b"gzip"),
    });
    assert!(
        Filter::parse("~bs 'compressed secret'")
            .unwrap()
            .matches(&flow)
    );
}

#[test]
fn content_type() {
    assert_eq!(matching("~t text/plain"), ["get200", "scripted", "reply"]);
    assert_eq!(matching("~tq json"), ["post", "replayed"]);
    assert_eq!(matching("~ts html"), ["get404"]);
}

#[test]
fn domain_src_dst() {
    assert_eq!(matching("~d 127.0.0.1"), HTTP);
    assert_eq!(matching("~dst :18443"), ["https"]);
    assert_eq!(matching("~src 127.0.0.1:59220"), ["get200", "scripted"]);
}

#[test]
fn headers() {
    assert_eq!(matching("~hq Proxy-Connection").len(), 8);
    assert_eq!(matching("~hs '^Sec-WebSocket-Accept'"), ["ws"]);
    assert_eq!(matching("~h 'x-added: 1'"), ["scripted"]);
}

#[test]
fn method_and_code() {
    assert_eq!(matching("~m post"), ["post", "replayed"]);
    assert_eq!(matching("~c 404"), ["get404"]);
    assert_eq!(matching("~c 418"), ["reply"]);
}

#[test]
fn url_and_bare_regex() {
    assert_eq!(matching("~u hello.txt"), ["get200", "scripted"]);
    assert_eq!(matching("hello.txt"), ["get200", "scripted"]);
    assert_eq!(matching("~u localhost"), ["dns"]);
    assert_eq!(matching("'secure/path.q=abc'"), ["https"]);
    // Inside quotes a backslash escapes the next character and is removed, as in mitmproxy.
    assert!(matching("'secure/path\\?q'").is_empty());
}

#[test]
fn meta_and_comment() {
    assert_eq!(matching("~meta 'nested'"), ["scripted"]);
    assert_eq!(matching("~comment addhdr"), ["scripted"]);
}

#[test]
fn precedence_not_and_or() {
    // `!` binds tightest, then `&`, then `|`.
    assert_eq!(
        matching("~m GET & ~c 200 | ~tcp"),
        ["get200", "https", "tcp", "scripted"]
    );
    let f = Filter::parse("~q | ~s & ~e").unwrap();
    assert_eq!(
        f.to_string(),
        "has no response or (has response and has error)"
    );
    let f = Filter::parse("!~q & ~http").unwrap();
    assert_eq!(f.to_string(), "not has no response and is an HTTP Flow");
    assert_eq!(matching("!~q & ~http").len(), 8);
}

#[test]
fn grouping_and_implicit_and() {
    assert_eq!(matching("!( ~tcp | ~dns )"), HTTP);
    let f = Filter::parse("~q ~s | ~e").unwrap();
    assert_eq!(
        f.to_string(),
        "has no response and (has response or has error)"
    );
    assert_eq!(matching("~m GET ~c 404"), ["get404"]);
}

#[test]
fn argument_less_operator_may_touch_a_parenthesis_or_an_operator() {
    // mitmproxy 12.3.1 rejects these (see `mitmproxy_roundtrip.rs`); here they mean what the
    // spaced-out spelling means.
    assert_eq!(matching("!(~tcp | ~dns)"), HTTP);
    assert_eq!(matching("!(~tcp|~dns)"), HTTP);
    assert_eq!(matching("(~q)"), matching("( ~q )"));
    assert!(!matching("(~q)").is_empty());
    assert_eq!(matching("(~a)"), matching("~a"));
    assert_eq!(matching("(~marked)"), matching("~marked"));
    assert_eq!(matching("(~replayq)"), ["replayed"]);
    assert_eq!(matching("~q&~http"), matching("~q & ~http"));
    assert_eq!(matching("(~tcp|~dns)"), ["tcp", "dns"]);
    assert_eq!(
        Filter::parse("!(~tcp | ~dns)").unwrap().to_string(),
        "not (is a TCP Flow or is a DNS Flow)"
    );
    // An operator with an argument still needs whitespace: `~h(a)` is not `~h (a)`.
    assert_eq!(parse_error("~h(a)").position, 0);
    assert_eq!(parse_error("(~q))").position, 4);
    assert_eq!(parse_error("~qx").position, 0);
}

#[test]
fn case_sensitivity_is_an_option() {
    assert_eq!(
        matching("~m get"),
        [
            "get200", "get404", "https", "refused", "ws", "scripted", "reply", "killed"
        ]
    );
    let strict = Filter::parse_with(
        "~m get",
        FilterOptions {
            case_sensitive: true,
        },
    )
    .unwrap();
    assert!(flows().iter().all(|(_, f)| !strict.matches(f)));
}

fn parse_error(expr: &str) -> FilterError {
    Filter::parse(expr).expect_err(expr)
}

#[test]
fn parse_errors_carry_positions() {
    assert_eq!(parse_error("").position, 0);
    assert_eq!(parse_error("~x").position, 0);
    assert!(parse_error("~x").message.contains("unknown operator '~x'"));
    assert_eq!(parse_error("~q & ~zz").position, 5);
    assert_eq!(
        parse_error("(~qq)").position,
        1,
        "an operator code must end at whitespace, ')', '&' or '|'"
    );
    assert_eq!(parse_error("( ~q ~s )").position, 5);
    assert_eq!(parse_error("~c abc").position, 3);
    assert_eq!(parse_error("~d 'open").position, 3);
    assert!(parse_error("~d 'open").message.contains("unterminated"));
    assert_eq!(parse_error("~h '('").position, 3);
    assert!(parse_error("~h '('").message.contains("cannot compile"));
    assert_eq!(parse_error("~q &").position, 4);
    assert!(
        parse_error("!")
            .to_string()
            .starts_with("invalid filter expression at char 1")
    );
}

#[test]
fn deep_nesting_is_a_parse_error_not_a_stack_overflow() {
    // A hundred levels of each parse (and match) as usual.
    let hundred_nots = format!("{}~q", "!".repeat(100));
    Filter::parse(&hundred_nots).expect("100 nested '!'");
    assert_eq!(
        matching(&hundred_nots),
        matching("~q"),
        "an even number of '!'"
    );
    let error = Filter::parse(&format!("!{hundred_nots}")).expect_err("101 '!'");
    assert!(
        error.message.contains("more than 100 deep"),
        "{}",
        error.message
    );
    Filter::parse(&format!("{}~q {}", "(".repeat(100), ")".repeat(100))).expect("100 '('");
    for deep in [
        format!("{}~q", "!".repeat(100_000)),
        format!("{}~q{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{}~q", "(!".repeat(60_000)),
    ] {
        let error = Filter::parse(&deep).expect_err("too deep");
        assert!(
            error.message.contains("more than 100 deep"),
            "{}",
            error.message
        );
    }
}
