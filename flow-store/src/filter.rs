//! The one place that turns a mitmproxy filter expression into what a query needs: the
//! [`flowtap_flow::Filter`] that decides, the SQL pre-filter conditions that narrow the rows
//! first, and whether bodies must be loaded.
//!
//! A pre-filter condition is only ever *necessary*: every flow the filter matches satisfies
//! it, and the filter itself still decides for every row that passes. So a condition may be
//! loose (a `LIKE '%text%'` on a column holding more than the operator looks at) but never
//! stricter than the operator. Conditions come from the top-level conjunction only (`a & b`);
//! under `!` or `|` nothing is necessary on its own.

use flowtap_flow::filter::{Expr, Flag, Pattern, RegexOp};
use flowtap_flow::{Filter, FilterError};
use flowtap_proto::v1::Flow;

use crate::StoreError;
use crate::backend::{Column, Condition};

/// A parsed filter expression. The empty expression matches every flow.
#[derive(Debug, Clone)]
pub struct FlowFilter {
    filter: Option<Filter>,
    conditions: Vec<Condition>,
    needs_bodies: bool,
}

impl FlowFilter {
    /// Parses a mitmproxy filter expression; an empty or all-blank one matches all flows.
    pub fn parse(expression: &str) -> Result<FlowFilter, StoreError> {
        if expression.trim().is_empty() {
            return Ok(FlowFilter {
                filter: None,
                conditions: Vec::new(),
                needs_bodies: false,
            });
        }
        let filter = Filter::parse(expression).map_err(|e: FilterError| {
            StoreError::Filter(format!("at char {}: {}", e.position, e.message))
        })?;
        let mut conditions = Vec::new();
        necessary(filter.expr(), &mut conditions);
        Ok(FlowFilter {
            needs_bodies: reads_bodies(filter.expr()),
            filter: Some(filter),
            conditions,
        })
    }

    /// Conditions every matching flow's summary row satisfies.
    pub(crate) fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether [`FlowFilter::matches`] looks at bodies, so they must be loaded.
    pub fn needs_bodies(&self) -> bool {
        self.needs_bodies
    }

    /// Whether the flow matches.
    pub fn matches(&self, flow: &Flow) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(flow))
    }
}

fn reads_bodies(expr: &Expr) -> bool {
    match expr {
        Expr::Not(inner) => reads_bodies(inner),
        Expr::And(items) | Expr::Or(items) => items.iter().any(reads_bodies),
        Expr::Regex(op, _) => matches!(
            op,
            RegexOp::Body | RegexOp::BodyRequest | RegexOp::BodyResponse
        ),
        Expr::Flag(_) | Expr::Code(_) => false,
    }
}

/// Adds the conditions that `expr` being true implies.
fn necessary(expr: &Expr, conditions: &mut Vec<Condition>) {
    match expr {
        Expr::And(items) => items.iter().for_each(|item| necessary(item, conditions)),
        Expr::Code(code) => {
            if let Ok(code) = u32::try_from(*code) {
                conditions.push(Condition::StatusCode(code));
            }
        }
        Expr::Flag(flag) => {
            let flow_type = match flag {
                Flag::Tcp => "tcp",
                Flag::Udp => "udp",
                Flag::Dns => "dns",
                Flag::Http => "http",
                _ => return,
            };
            conditions.push(Condition::FlowType(flow_type.into()));
        }
        Expr::Regex(op, pattern) => {
            let column = match op {
                RegexOp::Domain => Column::Host,
                RegexOp::Url => Column::Url,
                RegexOp::Method => Column::Method,
                RegexOp::ContentType
                | RegexOp::ContentTypeRequest
                | RegexOp::ContentTypeResponse => Column::ContentType,
                _ => return,
            };
            for literal in literals(pattern) {
                conditions.push(Condition::Contains(column, literal));
            }
        }
        Expr::Not(_) | Expr::Or(_) => {}
    }
}

/// Texts that every match of the regex contains, if the regex is simple enough to tell: plain
/// characters, escaped punctuation, `.` and anchors. Anything else (classes, groups,
/// alternation, repetition, escapes like `\d`) gives none. Only ASCII texts are returned, as
/// SQL's case-insensitive LIKE folds ASCII only.
fn literals(pattern: &Pattern) -> Vec<String> {
    let mut texts = vec![String::new()];
    let mut chars = pattern.source().chars();
    while let Some(c) = chars.next() {
        match c {
            '|' | '?' | '*' | '+' | '{' | '}' | '[' | ']' | '(' | ')' => return Vec::new(),
            '.' | '^' | '$' => texts.push(String::new()),
            '\\' => match chars.next() {
                Some(escaped) if escaped.is_ascii_punctuation() => {
                    texts.last_mut().expect("never empty").push(escaped);
                }
                _ => return Vec::new(),
            },
            c if c.is_ascii() && !c.is_ascii_control() => {
                texts.last_mut().expect("never empty").push(c);
            }
            _ => return Vec::new(),
        }
    }
    texts.retain(|t| !t.is_empty());
    texts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(expression: &str) -> Vec<Condition> {
        FlowFilter::parse(expression).unwrap().conditions
    }

    #[test]
    fn conjunctions_of_simple_operators_become_conditions() {
        assert_eq!(
            conditions("~d example\\.com & ~c 404"),
            [
                Condition::Contains(Column::Host, "example.com".into()),
                Condition::StatusCode(404)
            ]
        );
        assert_eq!(
            conditions("~m GET ~u ^https://api.x"),
            [
                Condition::Contains(Column::Method, "GET".into()),
                Condition::Contains(Column::Url, "https://api".into()),
                Condition::Contains(Column::Url, "x".into()),
            ]
        );
        assert_eq!(conditions("~tcp"), [Condition::FlowType("tcp".into())]);
    }

    #[test]
    fn anything_not_necessary_gives_no_condition() {
        assert!(conditions("~d a | ~c 404").is_empty());
        assert!(conditions("!~c 404").is_empty());
        assert!(conditions("~d \"(a|b)\"").is_empty());
        assert!(conditions("~u ab*").is_empty());
        assert!(conditions("~u \\d+").is_empty());
        assert!(conditions("~d bücher").is_empty());
        assert!(conditions("~h foo").is_empty());
    }

    #[test]
    fn body_operators_need_bodies() {
        assert!(
            FlowFilter::parse("~c 200 & !~bs secret")
                .unwrap()
                .needs_bodies()
        );
        assert!(
            !FlowFilter::parse("~c 200 & ~h secret")
                .unwrap()
                .needs_bodies()
        );
    }

    #[test]
    fn malformed_filters_name_the_position() {
        let error = FlowFilter::parse("~c 200 & (").unwrap_err().to_string();
        assert!(error.contains("at char"), "{error}");
    }
}
