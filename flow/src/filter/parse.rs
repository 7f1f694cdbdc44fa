//! A hand-written parser that accepts exactly what mitmproxy's pyparsing grammar accepts.
//!
//! Where pyparsing backtracks, this does too: a top-level atom that fails ends the implicit
//! "and" list (and leaves text that is then reported), while an operator (`!`, `&`, `|`) must
//! be followed by an operand. A bare `&` or `|` where an atom is expected is a regex, as in
//! mitmproxy (`a & & b` is `a & ~u "&"` and-ed with `b`). The error reported is the one that
//! got furthest into the input.

use super::{Compiled, Expr, FilterError, FilterOptions, Flag, Pattern, RegexOp};

const FLAGS: &[(&str, Flag, &str)] = &[
    ("a", Flag::Asset, "is asset"),
    ("e", Flag::Error, "has error"),
    ("http", Flag::Http, "is an HTTP Flow"),
    ("marked", Flag::Marked, "is marked"),
    ("replay", Flag::Replay, "flow has been replayed"),
    ("replayq", Flag::ReplayClient, "request has been replayed"),
    ("replays", Flag::ReplayServer, "response has been replayed"),
    ("q", Flag::Request, "has no response"),
    ("s", Flag::Response, "has response"),
    ("tcp", Flag::Tcp, "is a TCP Flow"),
    ("udp", Flag::Udp, "is a UDP Flow"),
    ("dns", Flag::Dns, "is a DNS Flow"),
    ("websocket", Flag::WebSocket, "is a Websocket Flow"),
    ("all", Flag::All, "all flows"),
];

const REGEX_OPS: &[(&str, RegexOp, &str)] = &[
    ("b", RegexOp::Body, "body matches"),
    ("bq", RegexOp::BodyRequest, "body request matches"),
    ("bs", RegexOp::BodyResponse, "body response matches"),
    ("t", RegexOp::ContentType, "content type matches"),
    (
        "tq",
        RegexOp::ContentTypeRequest,
        "req. content type matches",
    ),
    (
        "ts",
        RegexOp::ContentTypeResponse,
        "resp. content type matches",
    ),
    ("d", RegexOp::Domain, "domain matches"),
    ("dst", RegexOp::Dst, "destination address matches"),
    ("h", RegexOp::Header, "header matches"),
    ("hq", RegexOp::HeaderRequest, "req. header matches"),
    ("hs", RegexOp::HeaderResponse, "resp. header matches"),
    ("m", RegexOp::Method, "method matches"),
    ("src", RegexOp::Src, "source address matches"),
    ("u", RegexOp::Url, "url matches"),
    ("meta", RegexOp::Meta, "flow metadata matches"),
    ("marker", RegexOp::Marker, "marker matches"),
    ("comment", RegexOp::Comment, "comment matches"),
];

pub(super) fn flag_description(flag: Flag) -> &'static str {
    FLAGS
        .iter()
        .find(|(_, f, _)| *f == flag)
        .map_or("", |(_, _, d)| d)
}

pub(super) fn regex_description(op: RegexOp) -> &'static str {
    REGEX_OPS
        .iter()
        .find(|(_, o, _)| *o == op)
        .map_or("", |(_, _, d)| d)
}

/// pyparsing's default whitespace.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Characters that end a bare regex word.
fn ends_word(c: char) -> bool {
    is_space(c) || matches!(c, '(' | ')' | '~' | '\'' | '"')
}

/// pyparsing's `WordEnd()`: the next character is not a printable ASCII character.
fn at_word_end(c: Option<&char>) -> bool {
    c.is_none_or(|c| !c.is_ascii_graphic())
}

/// Where an argument-less operator (`~q`) may end: pyparsing's `WordEnd()`, or right before
/// `)`, `&` or `|`. mitmproxy 12.3.1 itself rejects `(~q)`, `!(~tcp|~dns)` and `~q&~s`
/// (its `WordEnd()` counts those characters as part of the word), but users write them and
/// nothing mitmproxy accepts has an operator code right before one of them outside quotes
/// (`~` cannot start or continue a bare regex), so accepting them changes the meaning of no
/// expression mitmproxy accepts.
fn at_flag_end(c: Option<&char>) -> bool {
    at_word_end(c) || matches!(c, Some(')' | '&' | '|'))
}

pub(super) fn parse(input: &str, options: FilterOptions) -> Result<Expr, FilterError> {
    let mut parser = Parser {
        chars: input.chars().collect(),
        pos: 0,
        options,
        furthest: None,
        depth: 0,
    };
    if parser.chars.is_empty() {
        return Err(FilterError {
            position: 0,
            message: "empty filter expression".to_owned(),
        });
    }
    let mut items = Vec::new();
    loop {
        let start = parser.pos;
        match parser.or() {
            Ok(expr) => items.push(expr),
            Err(()) => {
                parser.pos = start;
                break;
            }
        }
    }
    parser.skip_space();
    if items.is_empty() || parser.pos < parser.chars.len() {
        let pos = parser.pos;
        let found = parser.describe(pos);
        let _: Parsed<()> = parser.fail(pos, format!("expected end of expression, found {found}"));
        return Err(parser.furthest.unwrap_or(FilterError {
            position: pos,
            message: "invalid filter expression".to_owned(),
        }));
    }
    Ok(if items.len() == 1 {
        items.remove(0)
    } else {
        Expr::And(items)
    })
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    options: FilterOptions,
    furthest: Option<FilterError>,
    /// How many `!` and `(` enclose the current position.
    depth: usize,
}

/// How deep `!` and `(` may nest. Real filters nest a few levels; the bound keeps a crafted one
/// (`!` or `(` a hundred thousand times, sent to flow-store's Query) from overflowing the
/// stack: it is a parse error instead.
pub(super) const MAX_DEPTH: usize = 100;

type Parsed<T> = Result<T, ()>;

impl Parser {
    fn peek(&self) -> Option<&char> {
        self.chars.get(self.pos)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|c| is_space(*c)) {
            self.pos += 1;
        }
    }

    fn describe(&self, pos: usize) -> String {
        match self.chars.get(pos) {
            Some(c) => format!("'{c}'"),
            None => "end of expression".to_owned(),
        }
    }

    /// Records a failure; the one furthest into the input is reported.
    fn fail<T>(&mut self, position: usize, message: impl Into<String>) -> Parsed<T> {
        if self.furthest.as_ref().is_none_or(|f| position > f.position) {
            self.furthest = Some(FilterError {
                position,
                message: message.into(),
            });
        }
        Err(())
    }

    fn or(&mut self) -> Parsed<Expr> {
        self.binary('|', Self::and, Expr::Or)
    }

    fn and(&mut self) -> Parsed<Expr> {
        self.binary('&', Self::not, Expr::And)
    }

    fn binary(
        &mut self,
        op: char,
        operand: fn(&mut Self) -> Parsed<Expr>,
        make: fn(Vec<Expr>) -> Expr,
    ) -> Parsed<Expr> {
        let mut items = vec![operand(self)?];
        loop {
            let before = self.pos;
            self.skip_space();
            if self.peek() != Some(&op) {
                self.pos = before;
                break;
            }
            self.pos += 1;
            // An operator must be followed by an operand: pyparsing does not backtrack here.
            items.push(operand(self)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            make(items)
        })
    }

    fn not(&mut self) -> Parsed<Expr> {
        let start = self.pos;
        self.skip_space();
        if self.peek() == Some(&'!') {
            self.pos += 1;
            let inner = self.nested(Self::not)?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.pos = start;
        self.primary()
    }

    /// Runs `parse` one nesting level deeper, failing past [`MAX_DEPTH`].
    fn nested(&mut self, parse: fn(&mut Self) -> Parsed<Expr>) -> Parsed<Expr> {
        if self.depth >= MAX_DEPTH {
            let pos = self.pos;
            return self.fail(
                pos,
                format!("the expression nests '!' and '(' more than {MAX_DEPTH} deep"),
            );
        }
        self.depth += 1;
        let parsed = parse(self);
        self.depth -= 1;
        parsed
    }

    fn primary(&mut self) -> Parsed<Expr> {
        let start = self.pos;
        self.skip_space();
        if self.peek() == Some(&'(') {
            self.pos += 1;
            let inner = self.nested(Self::or);
            self.skip_space();
            if inner.is_ok() && self.peek() == Some(&')') {
                self.pos += 1;
                return inner;
            }
            if inner.is_ok() {
                let pos = self.pos;
                let found = self.describe(pos);
                self.fail::<()>(
                    pos,
                    format!("unbalanced parentheses: expected ')' or an operator, found {found}"),
                )?;
            }
            self.pos = start;
            return Err(());
        }
        self.atom()
    }

    fn atom(&mut self) -> Parsed<Expr> {
        self.skip_space();
        let start = self.pos;
        match self.peek() {
            None => self.fail(
                start,
                "expected a filter expression, found end of expression",
            ),
            Some('~') => self.operator(),
            Some(')') => self.fail(start, "unexpected ')'"),
            Some(_) => {
                let (source, at) = self.regex_argument()?;
                Ok(Expr::Regex(
                    RegexOp::Url,
                    self.compile(RegexOp::Url, source, at)?,
                ))
            }
        }
    }

    fn operator(&mut self) -> Parsed<Expr> {
        let start = self.pos;
        let rest: String = self.chars[start + 1..].iter().collect();
        let code_len_until = |code: &str, ends: fn(Option<&char>) -> bool| {
            let after = self.chars.get(start + 1 + code.chars().count());
            (rest.starts_with(code) && ends(after)).then(|| code.chars().count())
        };
        let code_len = |code: &str| code_len_until(code, at_word_end);
        if let Some((len, flag)) = FLAGS
            .iter()
            .find_map(|(c, f, _)| code_len_until(c, at_flag_end).map(|l| (l, *f)))
        {
            self.pos = start + 1 + len;
            return Ok(Expr::Flag(flag));
        }
        if let Some((len, op)) = REGEX_OPS
            .iter()
            .find_map(|(c, o, _)| code_len(c).map(|l| (l, *o)))
        {
            self.pos = start + 1 + len;
            let (source, at) = self.regex_argument()?;
            return Ok(Expr::Regex(op, self.compile(op, source, at)?));
        }
        if let Some(len) = code_len("c") {
            self.pos = start + 1 + len;
            self.skip_space();
            let digits_start = self.pos;
            while self.peek().is_some_and(char::is_ascii_digit) {
                self.pos += 1;
            }
            if self.pos == digits_start {
                let found = self.describe(digits_start);
                return self.fail(
                    digits_start,
                    format!("~c expects a status code, found {found}"),
                );
            }
            let digits: String = self.chars[digits_start..self.pos].iter().collect();
            return match digits.parse() {
                Ok(code) => Ok(Expr::Code(code)),
                Err(_) => self.fail(digits_start, "status code out of range"),
            };
        }
        let word: String = rest.chars().take_while(|c| c.is_ascii_graphic()).collect();
        self.fail(start, format!("unknown operator '~{word}'"))
    }

    /// A bare word or a quoted string; returns the regex text and where it started.
    fn regex_argument(&mut self) -> Parsed<(String, usize)> {
        self.skip_space();
        let start = self.pos;
        match self.peek().copied() {
            Some(quote @ ('"' | '\'')) => self.quoted(quote),
            Some(c) if !ends_word(c) => {
                while self.peek().is_some_and(|c| !ends_word(*c)) {
                    self.pos += 1;
                }
                Ok((self.chars[start..self.pos].iter().collect(), start))
            }
            _ => {
                let found = self.describe(start);
                self.fail(
                    start,
                    format!("expected a regular expression, found {found}"),
                )
            }
        }
    }

    /// pyparsing's `QuotedString(q, esc_char="\\")`: `\x` is `x`, and `\t \n \r \f` are the
    /// whitespace they name.
    fn quoted(&mut self, quote: char) -> Parsed<(String, usize)> {
        let start = self.pos;
        let mut out = String::new();
        let mut i = start + 1;
        while let Some(&c) = self.chars.get(i) {
            match c {
                '\\' => {
                    let Some(&next) = self.chars.get(i + 1) else {
                        break;
                    };
                    out.push(match next {
                        't' => '\t',
                        'n' => '\n',
                        'r' => '\r',
                        'f' => '\x0c',
                        other => other,
                    });
                    i += 2;
                }
                '\n' => break,
                c if c == quote => {
                    self.pos = i + 1;
                    return Ok((out, start));
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        self.fail(start, format!("unterminated {quote}-quoted string"))
    }

    fn compile(&mut self, op: RegexOp, source: String, at: usize) -> Parsed<Pattern> {
        let case_insensitive = !self.options.case_sensitive;
        let compiled = if op.is_binary() {
            let build = |unicode| {
                regex::bytes::RegexBuilder::new(&source)
                    .case_insensitive(case_insensitive)
                    .multi_line(op.multi_line())
                    .dot_matches_new_line(op.dot_all())
                    .unicode(unicode)
                    .build()
            };
            // Python compiles these as bytes patterns: no Unicode classes, ASCII-only case
            // folding. Fall back to Unicode mode for patterns the byte mode rejects.
            build(false).or_else(|_| build(true)).map(Compiled::Binary)
        } else {
            regex::RegexBuilder::new(&source)
                .case_insensitive(case_insensitive)
                .multi_line(op.multi_line())
                .build()
                .map(Compiled::Text)
        };
        match compiled {
            Ok(compiled) => Ok(Pattern {
                source,
                case_insensitive,
                compiled,
            }),
            Err(e) => {
                let first_line = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                self.fail(
                    at,
                    format!("cannot compile regular expression: {first_line}"),
                )
            }
        }
    }
}
