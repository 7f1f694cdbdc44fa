//! The one place that turns a mitmproxy filter expression into what a query needs: the
//! [`flowtap_flow::Filter`] that decides, the SQL pre-filter conditions that narrow the rows
//! first, and whether bodies must be loaded.

use flowtap_proto::v1::Flow;

use crate::StoreError;
use crate::backend::Condition;

/// A parsed filter expression. The empty expression matches every flow.
#[derive(Debug, Clone)]
pub struct FlowFilter {
    expression: String,
    conditions: Vec<Condition>,
    needs_bodies: bool,
}

impl FlowFilter {
    /// Parses a mitmproxy filter expression; an empty or all-blank one matches all flows.
    pub fn parse(expression: &str) -> Result<FlowFilter, StoreError> {
        if !expression.trim().is_empty() {
            return Err(StoreError::Filter(format!(
                "filters are not available yet: {expression:?}"
            )));
        }
        Ok(FlowFilter {
            expression: expression.to_owned(),
            conditions: Vec::new(),
            needs_bodies: false,
        })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
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
    pub fn matches(&self, _flow: &Flow) -> bool {
        true
    }
}
