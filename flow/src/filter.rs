//! mitmproxy's filter language (`mitmproxy.flowfilter`, spec section 6).
//!
//! ```
//! use flowtap_flow::Filter;
//! let filter = Filter::parse("~m GET & ~c 200 | ~tcp").unwrap();
//! assert_eq!(filter.to_string(), "(method matches /GET/i and response code is 200) or is a TCP Flow");
//! ```
//!
//! The grammar is mitmproxy's, quirks included: an operator code with an argument must be
//! followed by whitespace or the end (`~h(a)` is an error), atoms written side by side are
//! and-ed only at the top level, and a bare regex means `~u regex`. One deliberate extension:
//! an argument-less operator may also end right before `)`, `&` or `|`, so `(~q)` and
//! `!(~tcp|~dns)` parse here though mitmproxy 12.3.1 rejects them; every expression mitmproxy
//! accepts means the same here. Regexes use Rust's `regex`
//! crate, so look-around and back-references (Python `re` features) are not available.

use std::fmt;

mod matcher;
mod parse;
mod pyrepr;

pub(crate) use pyrepr::py_bytes_repr;

/// A filter expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter expression at char {position}: {message}")]
pub struct FilterError {
    /// Position in the expression, in characters from 0.
    pub position: usize,
    /// What was expected or wrong.
    pub message: String,
}

/// How regexes in a filter are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterOptions {
    /// Case-sensitive matching (mitmproxy's `MITMPROXY_CASE_SENSITIVE_FILTERS=1`).
    pub case_sensitive: bool,
}

/// A parsed filter: the expression tree plus the text it came from.
#[derive(Debug, Clone)]
pub struct Filter {
    pattern: String,
    root: Expr,
}

/// A node of the filter expression tree.
#[derive(Debug, Clone)]
pub enum Expr {
    /// `!expr`.
    Not(Box<Expr>),
    /// `a & b & …`, or atoms written side by side at the top level.
    And(Vec<Expr>),
    /// `a | b | …`.
    Or(Vec<Expr>),
    /// An operator without argument, such as `~q`.
    Flag(Flag),
    /// An operator with a regex argument; a bare regex is [`RegexOp::Url`].
    Regex(RegexOp, Pattern),
    /// `~c N`.
    Code(u64),
}

/// Operators that take no argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `~a`: the response is an asset (JavaScript, CSS, image, font).
    Asset,
    /// `~e`: the flow has an error.
    Error,
    /// `~http`.
    Http,
    /// `~marked`.
    Marked,
    /// `~replay`.
    Replay,
    /// `~replayq`.
    ReplayClient,
    /// `~replays`.
    ReplayServer,
    /// `~q`: a request with no response.
    Request,
    /// `~s`: there is a response.
    Response,
    /// `~tcp`.
    Tcp,
    /// `~udp`.
    Udp,
    /// `~dns`.
    Dns,
    /// `~websocket`.
    WebSocket,
    /// `~all`.
    All,
}

/// Operators that take a regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegexOp {
    /// `~b`.
    Body,
    /// `~bq`.
    BodyRequest,
    /// `~bs`.
    BodyResponse,
    /// `~t`.
    ContentType,
    /// `~tq`.
    ContentTypeRequest,
    /// `~ts`.
    ContentTypeResponse,
    /// `~d`.
    Domain,
    /// `~dst`.
    Dst,
    /// `~h`.
    Header,
    /// `~hq`.
    HeaderRequest,
    /// `~hs`.
    HeaderResponse,
    /// `~m`.
    Method,
    /// `~src`.
    Src,
    /// `~u`, and a bare regex.
    Url,
    /// `~meta`.
    Meta,
    /// `~marker`.
    Marker,
    /// `~comment`.
    Comment,
}

impl RegexOp {
    /// True for operators that match raw bytes (bodies, headers, method, content type).
    pub fn is_binary(self) -> bool {
        use RegexOp::*;
        matches!(
            self,
            Body | BodyRequest
                | BodyResponse
                | ContentType
                | ContentTypeRequest
                | ContentTypeResponse
                | Header
                | HeaderRequest
                | HeaderResponse
                | Method
        )
    }

    fn multi_line(self) -> bool {
        use RegexOp::*;
        matches!(
            self,
            Header | HeaderRequest | HeaderResponse | Meta | Comment
        )
    }

    fn dot_all(self) -> bool {
        matches!(
            self,
            RegexOp::Body | RegexOp::BodyRequest | RegexOp::BodyResponse
        )
    }
}

/// A compiled regex with the source text it was written as.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    case_insensitive: bool,
    compiled: Compiled,
}

#[derive(Debug, Clone)]
enum Compiled {
    /// Matched against text (URLs, hosts, addresses, metadata, markers, comments).
    Text(regex::Regex),
    /// Matched against raw bytes (bodies, headers, method, content types).
    Binary(regex::bytes::Regex),
}

impl Pattern {
    /// The regex as written in the filter (after unquoting).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True if the regex ignores case (mitmproxy's default).
    pub fn is_case_insensitive(&self) -> bool {
        self.case_insensitive
    }

    pub(crate) fn is_match_str(&self, text: &str) -> bool {
        match &self.compiled {
            Compiled::Text(re) => re.is_match(text),
            Compiled::Binary(re) => re.is_match(text.as_bytes()),
        }
    }

    pub(crate) fn is_match_bytes(&self, data: &[u8]) -> bool {
        match &self.compiled {
            Compiled::Binary(re) => re.is_match(data),
            Compiled::Text(re) => re.is_match(&String::from_utf8_lossy(data)),
        }
    }
}

impl Filter {
    /// Parses a filter expression with mitmproxy's defaults (case-insensitive).
    pub fn parse(expression: &str) -> Result<Filter, FilterError> {
        Self::parse_with(expression, FilterOptions::default())
    }

    /// Parses a filter expression with explicit options.
    pub fn parse_with(expression: &str, options: FilterOptions) -> Result<Filter, FilterError> {
        let root = parse::parse(expression, options)?;
        Ok(Filter {
            pattern: expression.to_owned(),
            root,
        })
    }

    /// True if `flow` matches. Operators that do not apply to the flow's type are false.
    pub fn matches(&self, flow: &flowtap_proto::v1::Flow) -> bool {
        matcher::matches(&self.root, flow)
    }

    /// The expression text this filter was parsed from.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The expression tree.
    pub fn expr(&self) -> &Expr {
        &self.root
    }
}

impl fmt::Display for Filter {
    /// The same description mitmproxy's `str(flowfilter.parse(...))` gives.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn parenthesized(e: &Expr) -> String {
            match e {
                Expr::And(_) | Expr::Or(_) => format!("({e})"),
                _ => e.to_string(),
            }
        }
        let join = |items: &[Expr], sep: &str| {
            items
                .iter()
                .map(parenthesized)
                .collect::<Vec<_>>()
                .join(sep)
        };
        match self {
            Expr::Not(inner) => write!(f, "not {}", parenthesized(inner)),
            Expr::And(items) => f.write_str(&join(items, " and ")),
            Expr::Or(items) => f.write_str(&join(items, " or ")),
            Expr::Code(code) => write!(f, "response code is {code}"),
            Expr::Flag(flag) => f.write_str(parse::flag_description(*flag)),
            Expr::Regex(op, pattern) => {
                let mut flags = String::new();
                if pattern.case_insensitive {
                    flags.push('i');
                }
                if op.multi_line() {
                    flags.push('m');
                }
                if op.dot_all() {
                    flags.push('s');
                }
                write!(
                    f,
                    "{} /{}/{flags}",
                    parse::regex_description(*op),
                    pattern.source()
                )
            }
        }
    }
}
